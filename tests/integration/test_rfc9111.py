"""RFC 9111 / 9110 conformance of the shared cache (issue 12), against the real binary.

The upstream is scripted on raw sockets (scripted_upstream.py): each case returns
exactly the status line and header lines it needs (several Cache-Control lines, 1xx
before the final response, a 304 with changed fields), and every assertion says what the
client got and what the upstream saw.  No policies (an empty directory) and
DEFAULT_TTL=0, the way the conformance suites run caches.
"""

import os
import tempfile
import time

from harness import Gateway, GatewayTestCase, request
from scripted_upstream import ScriptedUpstream, conditional, response

EMPTY_POLICIES = tempfile.mkdtemp(prefix="cachegw-no-policies-")


class Rfc9111Case(GatewayTestCase):
    def start(self, env=None, upstream=None):
        self.up = upstream or ScriptedUpstream()
        self.addCleanup(self.up.stop)
        e = {"POLICIES_DIR": EMPTY_POLICIES, "DEFAULT_TTL": "0"}
        e.update(env or {})
        self.gw = self.track(Gateway(self.up.url, env=e))
        return self.gw

    def get(self, path, headers=None, gw=None):
        return (gw or self.gw).get(path, headers=headers)

    def assertServedTwiceWithOneFetch(self, path, status=200):
        a = self.get(path)
        b = self.get(path)
        self.assertEqual(a.status, status)
        self.assertEqual(b.status, status)
        self.assertEqual(b.header("x-cache"), "HIT", f"{path}: {b}")
        self.assertEqual(b.body, a.body)
        self.assertEqual(self.up.count(path), 1)


class FreshnessTest(Rfc9111Case):
    def test_s_maxage_on_one_line_beats_max_age_on_another(self):
        self.start()
        self.up.script("/smax", response(200, [("Cache-Control", "max-age=3600"),
                                               ("Cache-Control", "s-maxage=1")], b"v"))
        self.assertServedTwiceWithOneFetch("/smax")
        time.sleep(1.6)
        r = self.get("/smax")
        self.assertEqual(r.header("x-cache"), "MISS")
        self.assertEqual(self.up.count("/smax"), 2)

    def test_any_understood_final_status_with_explicit_freshness_is_reused(self):
        self.start()
        for status in (204, 299, 301, 302, 303, 307, 308, 400, 404, 405, 410, 414, 499, 500,
                       501, 502, 503, 504, 599):
            body = b"" if status == 204 else f"status {status}".encode()
            path = f"/status/{status}"
            headers = [("Cache-Control", "max-age=60")]
            if 300 <= status < 400:
                headers.append(("Location", "/elsewhere"))
            self.up.script(path, response(status, headers, body))
            with self.subTest(status=status):
                self.assertServedTwiceWithOneFetch(path, status)

    def test_statuses_without_freshness_are_not_stored(self):
        self.start()
        for status in (200, 302, 404, 500):
            path = f"/nofresh/{status}"
            self.up.script(path, response(status, [], b"x"))
            self.get(path)
            r = self.get(path)
            self.assertEqual(r.header("x-cache"), "MISS")
            self.assertEqual(self.up.count(path), 2)

    def test_stale_404_is_revalidated_like_a_200(self):
        self.start()
        self.up.script("/gone", conditional(
            response(404, [("Cache-Control", "max-age=1"), ("ETag", '"g1"')], b"not here"),
            response(304, [("Cache-Control", "max-age=60"), ("ETag", '"g1"')],
                     content_length=False)))
        self.get("/gone")
        time.sleep(1.5)
        r = self.get("/gone")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.body, b"not here")
        seen = self.up.requests("/gone")
        self.assertEqual(len(seen), 2)
        self.assertEqual(seen[1].header("if-none-match"), '"g1"')
        r = self.get("/gone")
        self.assertEqual(r.header("x-cache"), "HIT")
        self.assertEqual(self.up.count("/gone"), 2)

    def test_must_understand_stores_understood_statuses_only(self):
        self.start()
        cc = [("Cache-Control", "must-understand, no-store, max-age=60")]
        self.up.script("/mu/200", response(200, cc, b"ok"))
        self.up.script("/mu/299", response(299, cc, b"unknown"))
        self.assertServedTwiceWithOneFetch("/mu/200")
        self.get("/mu/299")
        self.get("/mu/299")
        self.assertEqual(self.up.count("/mu/299"), 2)
        # Without must-understand, no-store is obeyed.
        self.up.script("/ns", response(200, [("Cache-Control", "no-store, max-age=60")], b"x"))
        self.get("/ns")
        self.get("/ns")
        self.assertEqual(self.up.count("/ns"), 2)


class NoCacheTest(Rfc9111Case):
    def test_response_no_cache_is_stored_and_revalidated_on_every_use(self):
        self.start()
        self.up.script("/nc", conditional(
            response(200, [("Cache-Control", "no-cache, max-age=3600"), ("ETag", '"n1"'),
                           ("Content-Type", "text/plain")], b"one"),
            response(304, [("ETag", '"n1"'), ("Cache-Control", "no-cache, max-age=3600")],
                     content_length=False)))
        first = self.get("/nc")
        self.assertEqual(first.body, b"one")
        for i in range(2):
            r = self.get("/nc")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"one")  # the stored body, after a 304
        seen = self.up.requests("/nc")
        self.assertEqual(len(seen), 3)  # every use went upstream ...
        self.assertIsNone(seen[0].header("if-none-match"))
        self.assertEqual(seen[1].header("if-none-match"), '"n1"')  # ... conditionally
        self.assertEqual(seen[2].header("if-none-match"), '"n1"')

    def test_no_cache_without_validator_is_fetched_in_full(self):
        self.start()
        self.up.script("/nc2", response(200, [("Cache-Control", "no-cache")], b"x"))
        self.get("/nc2")
        self.get("/nc2")
        seen = self.up.requests("/nc2")
        self.assertEqual(len(seen), 2)
        self.assertIsNone(seen[1].header("if-none-match"))


class VaryTest(Rfc9111Case):
    def test_vary_star_on_a_second_line_means_never_reuse(self):
        self.start()
        self.up.script("/vs", response(200, [("Cache-Control", "max-age=60"),
                                             ("Vary", "Accept-Language,"), ("Vary", "*")], b"x"))
        self.up.script("/vs1", response(200, [("Cache-Control", "max-age=60"),
                                              ("Vary", "Accept, *")], b"x"))
        for p in ("/vs", "/vs1"):
            self.get(p)
            r = self.get(p)
            self.assertEqual(r.header("x-cache"), "MISS")
            self.assertEqual(self.up.count(p), 2)


    def test_conditional_requests_carry_the_vary_named_fields(self):
        self.start()
        self.up.script("/vc", conditional(
            response(200, [("Cache-Control", "max-age=1"), ("Vary", "X-Lang"), ("ETag", '"fr1"')],
                     b"bonjour"),
            response(304, [("Cache-Control", "max-age=60"), ("ETag", '"fr1"')],
                     content_length=False)))
        self.get("/vc", headers={"X-Lang": "fr"})
        time.sleep(1.5)
        r = self.get("/vc", headers={"X-Lang": "fr"})
        self.assertEqual(r.body, b"bonjour")
        seen = self.up.requests("/vc")
        self.assertEqual(len(seen), 2)
        self.assertEqual(seen[1].header("if-none-match"), '"fr1"')
        self.assertEqual(seen[1].header("x-lang"), "fr")


class InterimTest(Rfc9111Case):
    def test_1xx_is_never_stored_and_its_fields_never_leak(self):
        self.start()
        self.up.script("/hints", response(
            200, [("Cache-Control", "max-age=60"), ("X-Final", "yes")], b"final",
            interim=[(100, []), (103, [("Link", "</s.css>; rel=preload"),
                                       ("X-Interim", "leaked")])]))
        a = self.get("/hints")
        b = self.get("/hints")
        for r in (a, b):
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"final")
            self.assertEqual(r.header("x-final"), "yes")
            self.assertIsNone(r.header("x-interim"))
            self.assertIsNone(r.header("link"))
        self.assertEqual(b.header("x-cache"), "HIT")
        self.assertEqual(self.up.count("/hints"), 1)


class RefusalTest(Rfc9111Case):
    """The deliberate refusals (docs/design.md invariant 6)."""

    def test_set_cookie_responses_are_never_stored(self):
        self.start()
        self.up.script("/sc", response(200, [("Cache-Control", "public, max-age=60"),
                                             ("Set-Cookie", "s=1")], b"x"))
        a = self.get("/sc")
        b = self.get("/sc")
        self.assertEqual(a.header("set-cookie"), "s=1")  # the client that asked gets it
        self.assertEqual(b.header("x-cache"), "MISS")
        self.assertEqual(self.up.count("/sc"), 2)

    def test_cookie_requests_are_never_answered_from_a_shared_entry(self):
        self.start()
        self.up.script("/ck", response(200, [("Cache-Control", "public, max-age=60")], b"x"))
        self.get("/ck")
        self.assertEqual(self.get("/ck").header("x-cache"), "HIT")
        r = self.get("/ck", headers={"Cookie": "s=1"})
        self.assertEqual(r.header("x-cache"), "BYPASS")
        self.assertEqual(self.up.count("/ck"), 2)
        self.assertEqual(self.up.requests("/ck")[1].header("cookie"), "s=1")


class Merge304Test(Rfc9111Case):
    def script_304(self, path):
        self.up.script(path, conditional(
            response(200, [("Cache-Control", "max-age=1"), ("ETag", '"m1"'), ("X-Version", "1"),
                           ("X-Kept", "k"), ("Content-Type", "text/plain")], b"hello"),
            response(304, [("Cache-Control", "max-age=60"), ("ETag", '"m1"'), ("X-Version", "2")],
                     content_length=False)))

    def check_merged(self, r):
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"hello")
        self.assertEqual(r.header("x-version"), "2")  # updated from the 304
        self.assertEqual(r.header("x-kept"), "k")  # kept: the 304 did not carry it
        self.assertEqual(r.header("content-type"), "text/plain")
        self.assertEqual([v for k, v in r.header_list if k == "x-version"], ["2"])

    def test_304_updates_the_stored_fields(self):
        self.start()
        self.script_304("/m")
        self.get("/m")
        time.sleep(1.5)
        self.check_merged(self.get("/m"))
        r = self.get("/m")
        self.assertEqual(r.header("x-cache"), "HIT")
        self.check_merged(r)
        self.assertEqual(self.up.count("/m"), 2)

    def test_304_updates_the_redis_tier_too(self):
        from redis_servers import RedisServer
        redis = RedisServer("plain")
        self.addCleanup(redis.stop)
        env = {"REDIS_URL": f"redis://127.0.0.1:{redis.port}"}
        self.start(env=env)
        self.script_304("/mr")
        self.get("/mr")
        time.sleep(1.5)
        self.check_merged(self.get("/mr"))
        # A second instance with an empty memory tier reads the merged entry from Redis.
        other = self.track(Gateway(self.up.url, env=dict(env, POLICIES_DIR=EMPTY_POLICIES,
                                                          DEFAULT_TTL="0")))
        r = other.get("/mr")
        self.assertEqual(r.header("x-cache"), "HIT", r)
        self.assertIn("redis", r.header("cache-status"))
        self.check_merged(r)
        self.assertEqual(self.up.count("/mr"), 2)


if __name__ == "__main__":
    import unittest
    unittest.main()
