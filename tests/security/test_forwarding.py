"""Issue 8, item 7: forwarding headers a client sends never reach the upstream as sent.

X-Forwarded-Proto is the gateway's own ("http"); X-Forwarded-For is exactly the
client address unless TRUSTED_PROXIES lists the client (then the client's value
is kept and the address appended); X-Forwarded-Host is absent unless
FORWARDED_HOST is set (then exactly that value); Forwarded, X-Forwarded-Port and
the rewrite/override headers are absent.
"""

import unittest

from secharness import SecTestCase

SPOOFED = [
    ("X-Forwarded-Host", "evil.example"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Port", "443"),
    ("X-Forwarded-For", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6;host=evil.example;proto=https"),
    ("X-Original-URL", "/admin"),
    ("X-Rewrite-URL", "/admin"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("x-forwarded-host", "evil2.example"),  # a second spelling, lower case
    ("X-Forwarded-Prefix", "/evil"),
    ("X-Forwarded-Server", "evil.example"),
    ("X-Forwarded-Ssl", "on"),
    ("X-Forwarded-Scheme", "https"),
    ("X-Forwarded-Uri", "/evil"),
    ("X-Real-IP", "6.6.6.7"),
    ("X-Client-IP", "6.6.6.8"),
    ("True-Client-IP", "6.6.6.9"),
    ("X-Original-URI", "/evil"),
    ("X-HTTP-Method", "DELETE"),
    ("X-Method-Override", "DELETE"),
]
STRIPPED = ("forwarded", "x-forwarded-port", "x-original-url", "x-rewrite-url",
            "x-http-method-override", "x-forwarded-prefix", "x-forwarded-server",
            "x-forwarded-ssl", "x-forwarded-scheme", "x-forwarded-uri", "x-real-ip",
            "x-client-ip", "true-client-ip", "x-original-uri", "x-http-method",
            "x-method-override")


class ForwardingHeadersTest(SecTestCase):
    def forwarded(self, gw, path):
        r = self.get(gw, path, SPOOFED)
        self.assertEqual(r.status, 200, r)
        rec = self.refl.last(target=path)
        self.assertIsNotNone(rec)
        for name in STRIPPED:
            self.assertEqual(rec.values(name), [], f"{name} reached the upstream: {rec}")
        self.assertEqual(rec.values("x-forwarded-proto"), ["http"], rec)
        head = rec.raw_head.decode("latin-1").lower()
        self.assertNotIn("evil", head, rec)
        self.assertNotIn("6.6.6.", head.replace("6.6.6.6, 127.0.0.1", ""), rec)
        return rec

    def test_untrusted_client(self):
        gw = self.start()
        for path in ("/fw?shared=1", "/fw?m=post"):
            with self.subTest(path=path):
                rec = self.forwarded(gw, path)
                self.assertEqual(rec.values("x-forwarded-for"), ["127.0.0.1"], rec)
                self.assertEqual(rec.values("x-forwarded-host"), [], rec)
        # The write path (never cached) forwards the same way.
        r = self.get(gw, "/fw-write", SPOOFED, method="POST", body=b"x")
        self.assertEqual(r.status, 200, r)
        rec = self.refl.last(path="/fw-write")
        self.assertEqual(rec.values("x-forwarded-for"), ["127.0.0.1"], rec)
        self.assertEqual(rec.values("x-forwarded-proto"), ["http"], rec)
        self.assertEqual(rec.values("x-forwarded-host"), [], rec)
        for name in STRIPPED:
            self.assertEqual(rec.values(name), [], rec)
        self.assertEqual(rec.method, b"POST")

    def test_trusted_proxy_keeps_its_for_chain(self):
        gw = self.start(env={"TRUSTED_PROXIES": "127.0.0.1"})
        rec = self.forwarded(gw, "/fw-trusted")
        self.assertEqual(rec.values("x-forwarded-for"), ["6.6.6.6, 127.0.0.1"], rec)

    def test_forwarded_host_is_the_configured_one(self):
        gw = self.start(env={"FORWARDED_HOST": "api.example.com"})
        rec = self.forwarded(gw, "/fw-host")
        self.assertEqual(rec.values("x-forwarded-host"), ["api.example.com"], rec)
        self.assertEqual(rec.values("x-forwarded-for"), ["127.0.0.1"], rec)

    def test_client_host_does_not_reach_upstream_unkeyed(self):
        """The Host a client sends must not reach the upstream as X-Forwarded-Host."""
        gw = self.start()
        self.get(gw, "/fw-hosts", host="evil.example")
        rec = self.refl.last(path="/fw-hosts")
        self.assertEqual(rec.values("x-forwarded-host"), [], rec)
        self.assertNotIn(b"evil.example", rec.raw_head, rec)


if __name__ == "__main__":
    unittest.main()
