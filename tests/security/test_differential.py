"""Issue 8, differential check: one client request never becomes two upstream requests.

Every attack of the suite is sent on its own connection to one gateway, after a
benign request has warmed the upstream connection pool.  After each, the
reflector (which parses strictly and counts every request it can frame,
smuggled ones included) must have received at most one request, none if the
gateway refused it, never the smuggled /smuggled request, and nothing a strict
origin would call malformed.  A benign request on the same connection
afterwards (when the gateway kept it open and the attack carried no pipelined
tail) must get its own answer, not a desynchronised one.
"""

import time
import unittest

from secharness import RawConn, SecTestCase, get_request


def head(*lines):
    return b"\r\n".join(lines) + b"\r\n\r\n"


H = b"Host: gw.test"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

ATTACKS = {
    "fragment": head(b"GET /d/posts?utm_source=#&user_id=2 HTTP/1.1", H),
    "variant key in target": head(b"GET /d/vary#vary|accept-language=en HTTP/1.1", H),
    "bare CR in value": head(b"GET /d/a HTTP/1.1", H, b"X-A: a\rX-B: b"),
    "bare CR in name": head(b"GET /d/a HTTP/1.1", H, b"X-\rA: b"),
    "bare CR in method": head(b"GE\rT /d/a HTTP/1.1", H),
    "bare LF line": head(b"GET /d/a HTTP/1.1", H) [:-4] + b"\nX-Bare: lf\r\n\r\n",
    "TE space colon": head(b"POST /d/a HTTP/1.1", H, b"Content-Length: %d" % (5 + len(SMUGGLED)),
                           b"Transfer-Encoding : chunked") + b"0\r\n\r\n" + SMUGGLED,
    "Authorization space colon": head(b"GET /d/a HTTP/1.1", H, b"Authorization : x"),
    "two CL": head(b"POST /d/a HTTP/1.1", H, b"Content-Length: 5", b"Content-Length: 40")
    + b"hello" + SMUGGLED,
    "CL list": head(b"POST /d/a HTTP/1.1", H, b"Content-Length: 5, 40") + b"hello" + SMUGGLED,
    "TE and CL": head(b"POST /d/a HTTP/1.1", H, b"Content-Length: %d" % (5 + len(SMUGGLED)),
                      b"Transfer-Encoding: chunked") + b"0\r\n\r\n" + SMUGGLED,
    "TE chunked then CL smuggle": head(b"POST /d/a HTTP/1.1", H, b"Transfer-Encoding: chunked",
                                       b"Content-Length: 3") + b"0\r\n\r\n" + SMUGGLED,
    "TE in HTTP/1.0": head(b"POST /d/a HTTP/1.0", H, b"Transfer-Encoding: chunked")
    + b"0\r\n\r\n",
    "TE gzip": head(b"POST /d/a HTTP/1.1", H, b"Transfer-Encoding: gzip") + b"abc",
    "TE xchunked": head(b"POST /d/a HTTP/1.1", H, b"Transfer-Encoding: xchunked")
    + b"0\r\n\r\n" + SMUGGLED,
    "obs-fold": head(b"GET /d/a HTTP/1.1", H, b"X-A: 1", b" X-Injected: 2"),
    "obs-fold TE": head(b"POST /d/a HTTP/1.1", H, b"Content-Length: %d" % (5 + len(SMUGGLED)),
                        b"X-A: 1", b" Transfer-Encoding: chunked") + b"0\r\n\r\n" + SMUGGLED,
    "no Host": head(b"GET /d/a HTTP/1.1", b"X-A: 1"),
    "two Host": head(b"GET /d/a HTTP/1.1", H, b"Host: other.test"),
    "lower-case method": head(b"get /d/a HTTP/1.1", H),
    "high bytes in query": head(b"GET /d/a?x=\x80\xff HTTP/1.1", H),
    "NUL in path": head(b"GET /d/a\x00b HTTP/1.1", H),
    "ESC in path": head(b"GET /d/a\x1b[2J HTTP/1.1", H),
    "Connection-named header": head(b"GET /d/feed HTTP/1.1", H, b"X-User-Id: 5",
                                    b"Connection: x-user-id"),
    "spoofed forwarding": head(b"GET /d/fw HTTP/1.1", H, b"X-Forwarded-Host: evil",
                               b"X-Original-URL: /admin", b"X-HTTP-Method-Override: DELETE"),
    "500 params": head(b"GET /d/many?" + b"&".join(b"p%d=1" % i for i in range(500))
                       + b" HTTP/1.1", H),
    "huge max-age": head(b"GET /d/a HTTP/1.1", H, b"Cache-Control: max-age=9999999999999999"),
    "GET with body": head(b"GET /d/a HTTP/1.1", H, b"Content-Length: %d" % len(SMUGGLED))
    + SMUGGLED,
    "Expect over limit": head(b"POST /d/a HTTP/1.1", H, b"Content-Length: 99999999999",
                              b"Expect: 100-continue"),
    "absolute-form": head(b"GET http://evil.test/d/a HTTP/1.1", H),
    "HTTP/1.2": head(b"GET /d/a HTTP/1.2", H),
    "space in target": head(b"GET /d/a b HTTP/1.1", H),
}


class DifferentialTest(SecTestCase):
    def test_one_client_request_is_at_most_one_upstream_request(self):
        gw = self.start(env={"MAX_BODY_SIZE": "1MiB"})
        self.assertEqual(self.get(gw, "/d/warm").status, 200)
        self.assertEqual(self.get(gw, "/d/warm2", method="POST", body=b"x").status, 200)
        for name, data in ATTACKS.items():
            with self.subTest(name):
                if not gw.alive():
                    # Keep checking the rest; tearDown reports the death.
                    gw = self.start(env={"MAX_BODY_SIZE": "1MiB"})
                before = self.refl.count()
                self.sent()
                status = None
                with RawConn(gw.port, timeout=3) as c:
                    c.send(data)
                    try:
                        r = c.read_response(timeout=3)
                        status = r.status
                    except Exception:  # noqa: BLE001 - closed or hung: counted below
                        r = None
                    if r is not None and not c.closed_by_peer(0.2):
                        # The connection is still in sync: a benign request gets its answer.
                        self.sent()
                        try:
                            c.send(get_request("/d/follow?after=" + str(len(name))))
                            f = c.read_response(timeout=3)
                        except Exception:  # noqa: BLE001 - a close here is acceptable
                            f = None
                        if f is not None and SMUGGLED not in data:
                            self.assertEqual(f.status, 200, f)
                            self.assertEqual(f.json()["target"],
                                             "/d/follow?after=" + str(len(name)), f)
                time.sleep(0.15)
                arrived = self.refl.requests()[before:]
                arrived = [a for a in arrived if not a.target_str.startswith("/d/follow")]
                self.assertLessEqual(len(arrived), 1, f"{name}: status {status}, upstream got "
                                                      f"{arrived}")
                self.assertEqual([a for a in arrived if a.path == "/smuggled"], [], arrived)
                if status is not None and 400 <= status < 500 or status == 501:
                    self.assertEqual(arrived, [], f"{name} was refused ({status}) "
                                                  f"but reached the upstream")
                self.assertEqual([a.anomalies for a in arrived if a.anomalies], [], arrived)
        self.assertTrue(gw.alive())
        self.assertEqual(self.refl.count(path="/smuggled"), 0)


if __name__ == "__main__":
    unittest.main()
