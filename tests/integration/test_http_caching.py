"""HTTP caching semantics against the real binary: collapsing, stale-while-revalidate,
stale-if-error, RFC 9111 request/response directives, Vary, conditional requests.

Routes without a policy use the default rules (an empty policies directory), so
the upstream's Cache-Control decides; the example API's /headers route sets any
response header from its query string.
"""

import tempfile
import threading
import time
import urllib.parse

from harness import ExampleAPI, Gateway, GatewayTestCase, run_concurrently

EMPTY_POLICIES = tempfile.mkdtemp(prefix="cachegw-no-policies-")


def headers_path(n, **headers):
    """/headers?... setting the given response headers (n makes the URL unique)."""
    q = [("n", str(n))] + [(k.replace("_", "-"), v) for k, v in headers.items()]
    return "/headers?" + urllib.parse.urlencode(q)


class HttpCachingTest(GatewayTestCase):
    def start(self, env=None, args=None):
        self.api = self.track(ExampleAPI(latency_ms=0))
        e = {"POLICIES_DIR": EMPTY_POLICIES, "DEFAULT_TTL": "0"}
        e.update(env or {})
        self.gw = self.track(Gateway(self.api.url, env=e, args=args))
        return self.gw

    def restart_api(self):
        port = self.api.port
        self.api.stop()
        self.api = self.track(ExampleAPI(latency_ms=0, port=port))

    def test_500_concurrent_requests_on_a_cold_key_make_one_upstream_request(self):
        gw = self.start()
        before = self.api.requests()
        results = run_concurrently(500, lambda i: gw.get("/users/21?delay_ms=300", timeout=30))
        self.assertEqual([r.status for r in results], [200] * 500)
        self.assertEqual(len({r.body for r in results}), 1)
        self.assertIn(b'"id":21', results[0].body)
        self.assertEqual(self.api.requests() - before, 1)

    def test_uncacheable_responses_release_waiters_to_fetch_themselves(self):
        gw = self.start()
        before = self.api.requests()
        path = headers_path(1, Cache_Control="no-store", delay_ms="200")
        results = run_concurrently(20, lambda i: gw.get(path, timeout=30))
        self.assertEqual([r.status for r in results], [200] * 20)
        # Not shareable: every request got its own upstream answer.
        self.assertEqual(self.api.requests() - before, 20)

    def test_stale_while_revalidate_serves_at_once_and_refreshes_once(self):
        gw = self.start()
        path = headers_path(2, Cache_Control="max-age=1, stale-while-revalidate=30")
        first = gw.get(path)
        self.assertEqual(first.header("x-cache"), "MISS")
        time.sleep(1.3)
        before = self.api.requests()
        # The refresh inherits X-Delay-Ms: the upstream takes 600 ms to answer
        # it, and every client is still answered at once from the stale copy.
        slow = {"X-Delay-Ms": "600"}
        results = run_concurrently(20, lambda i: gw.get(path, headers=slow, timeout=10))
        for r in results:
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("x-cache"), "HIT")
            self.assertIn("stale-while-revalidate", r.header("cache-status"))
            self.assertLess(r.elapsed, 0.4)
            self.assertEqual(r.body, first.body)
        time.sleep(0.9)
        self.assertEqual(self.api.requests() - before, 1)  # exactly one background refresh
        fresh = gw.get(path)
        self.assertEqual(fresh.header("x-cache"), "HIT")
        self.assertNotIn("stale", fresh.header("cache-status"))

    def test_stale_if_error_when_upstream_is_down_then_refresh(self):
        gw = self.start(args=["--upstream-connect-timeout-ms", "300"])
        path = headers_path(3, Cache_Control="max-age=1, stale-if-error=60")
        body = gw.get(path).body
        time.sleep(1.3)
        self.api.stop()
        r = gw.get(path)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, body)
        self.assertIn("stale-if-error", r.header("cache-status"))
        self.restart_api()
        r2 = gw.get(path)
        self.assertEqual(r2.status, 200)
        self.assertNotIn("stale-if-error", r2.header("cache-status"))
        self.assertEqual(gw.get(path).header("x-cache"), "HIT")

    def test_stale_if_error_on_upstream_5xx(self):
        # A policy keys both URLs alike, so the second one finds the first's
        # stale entry while its upstream answers 503.
        import os
        d = tempfile.mkdtemp(prefix="cachegw-sie-")
        with open(os.path.join(d, "sie.lua"), "w") as f:
            f.write('route "GET /status/:code" { key = "status-any", ttl = 1, stale_if_error = 60 }\n')
        gw = self.start(env={"POLICIES_DIR": d})
        ok = gw.get("/status/200")
        self.assertEqual(ok.status, 200)
        time.sleep(1.3)
        r = gw.get("/status/503")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, ok.body)
        self.assertIn("stale-if-error", r.header("cache-status"))

    def test_must_revalidate_forbids_stale_if_error(self):
        gw = self.start(args=["--upstream-connect-timeout-ms", "300"])
        path = headers_path(4, Cache_Control="max-age=1, must-revalidate, stale-if-error=60")
        gw.get(path)
        time.sleep(1.3)
        self.api.stop()
        r = gw.get(path)
        self.assertIn(r.status, (502, 504))

    def test_vary_creates_variants_and_vary_star_is_never_stored(self):
        gw = self.start()
        before = self.api.requests()
        fr1 = gw.get("/vary", headers={"Accept-Language": "fr"})
        de1 = gw.get("/vary", headers={"Accept-Language": "de"})
        fr2 = gw.get("/vary", headers={"Accept-Language": "fr"})
        de2 = gw.get("/vary", headers={"Accept-Language": "de"})
        self.assertEqual((fr2.header("x-cache"), de2.header("x-cache")), ("HIT", "HIT"))
        self.assertIn(b"fr", fr2.body)
        self.assertIn(b"de", de2.body)
        self.assertEqual(fr1.body, fr2.body)
        self.assertEqual(de1.body, de2.body)
        self.assertEqual(self.api.requests() - before, 2)
        star = headers_path(5, Vary="*")
        gw.get(star)
        self.assertEqual(gw.get(star).header("x-cache"), "MISS")

    def test_a_write_that_drops_the_key_drops_every_variant(self):
        import os
        d = tempfile.mkdtemp(prefix="cachegw-vary-")
        with open(os.path.join(d, "vary.lua"), "w") as f:
            f.write('route "GET /vary" { key = "vary", ttl = 60 }\n'
                    'route "POST /echo" { invalidate = { "vary" } }\n')
        gw = self.start(env={"POLICIES_DIR": d})
        for lang in ("fr", "de", "fr", "de"):
            gw.get("/vary", headers={"Accept-Language": lang})
        self.assertEqual(gw.get("/vary", headers={"Accept-Language": "de"}).header("x-cache"), "HIT")
        self.assertEqual(gw.req("POST", "/echo", body=b"x").status, 200)
        fr = gw.get("/vary", headers={"Accept-Language": "fr"})
        de = gw.get("/vary", headers={"Accept-Language": "de"})
        self.assertEqual((fr.header("x-cache"), de.header("x-cache")), ("MISS", "MISS"))
        self.assertEqual(gw.get("/vary", headers={"Accept-Language": "fr"}).header("x-cache"), "HIT")
        self.assertEqual(gw.get("/vary", headers={"Accept-Language": "de"}).header("x-cache"), "HIT")

    def test_conditional_requests_get_304_from_cache(self):
        gw = self.start()
        r = gw.get("/users/22")
        etag = r.header("etag")
        self.assertTrue(etag)
        before = self.api.requests()
        nm = gw.get("/users/22", headers={"If-None-Match": etag})
        self.assertEqual(nm.status, 304)
        self.assertEqual(nm.body, b"")
        self.assertEqual(nm.header("x-cache"), "HIT")
        self.assertEqual(nm.header("etag"), etag)
        other = gw.get("/users/22", headers={"If-None-Match": '"something-else"'})
        self.assertEqual(other.status, 200)
        lm = r.header("last-modified")
        if lm:
            ims = gw.get("/users/22", headers={"If-Modified-Since": lm})
            self.assertEqual(ims.status, 304)
        self.assertEqual(self.api.requests(), before)

    def test_stale_entries_are_revalidated_with_a_conditional_request(self):
        gw = self.start()
        # max-age=2, not 1: the upstream's Date has one-second resolution, so an answer
        # can arrive with an apparent age of 1 s, and max-age=1 would be stale on arrival.
        path = headers_path(6, Cache_Control="max-age=2", ETag='"v1"')
        first = gw.get(path)
        self.assertEqual(first.header("etag"), '"v1"')
        time.sleep(2.3)
        before = self.api.requests()
        r = gw.get(path)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, first.body)
        cs = r.header("cache-status")
        self.assertIn("fwd=stale", cs)
        self.assertIn("fwd-status=304", cs)
        self.assertIn("stored", cs)
        self.assertEqual(self.api.requests() - before, 1)
        self.assertEqual(gw.get(path).header("x-cache"), "HIT")

    def test_request_cache_control_directives(self):
        gw = self.start()
        gw.get("/users/23")
        before = self.api.requests()
        self.assertEqual(gw.get("/users/23").header("x-cache"), "HIT")
        r = gw.get("/users/23", headers={"Cache-Control": "no-cache"})
        self.assertEqual(r.status, 200)
        self.assertEqual(self.api.requests() - before, 1)
        r = gw.get("/users/23", headers={"Cache-Control": "max-age=0"})
        self.assertEqual(self.api.requests() - before, 2)
        self.assertEqual(gw.get("/users/23", headers={"Cache-Control": "only-if-cached"}).status, 200)
        miss = gw.get("/users/24", headers={"Cache-Control": "only-if-cached"})
        self.assertEqual(miss.status, 504)
        self.assertEqual(self.api.requests() - before, 2)
        # no-store on the request: the response is not stored.
        gw.get("/users/25", headers={"Cache-Control": "no-store"})
        self.assertEqual(gw.get("/users/25").header("x-cache"), "MISS")

    def test_unsafe_method_invalidates_the_target_uri(self):
        gw = self.start()
        gw.get("/status/200?k=inv")
        self.assertEqual(gw.get("/status/200?k=inv").header("x-cache"), "HIT")
        r = gw.req("POST", "/status/200?k=inv", body=b"{}")
        self.assertEqual(r.status, 200)
        self.assertEqual(gw.get("/status/200?k=inv").header("x-cache"), "MISS")
        # A failed write invalidates nothing.
        gw.get("/status/200?k=keep")
        gw.req("POST", "/status/500?k=keep", body=b"{}")
        self.assertEqual(gw.get("/status/200?k=keep").header("x-cache"), "HIT")

    def test_cache_status_on_every_response(self):
        gw = self.start()
        for r in (gw.get("/users/26"), gw.get("/users/26"),
                  gw.get("/users/26", headers={"Authorization": "Bearer x"}),
                  gw.req("POST", "/echo", body=b"x")):
            self.assertTrue(r.header("cache-status", "").startswith("cachegw;"), r)
