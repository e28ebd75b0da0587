"""RFC 9111 / 9110 conformance of the shared cache (issue 12), against the real binary.

The upstream is scripted on raw sockets (scripted_upstream.py): each case returns
exactly the status line and header lines it needs (several Cache-Control lines, 1xx
before the final response, a 304 with changed fields), and every assertion says what the
client got and what the upstream saw.  No policies (an empty directory) and
DEFAULT_TTL=0, the way the conformance suites run caches.
"""

import gzip
import json
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
        if "REDIS_URL" in e:
            wait_redis_tier(self.gw)
        return self.gw

    def other_instance(self, env):
        """A second instance on the same Redis, with an empty memory tier, once its Redis
        tier is usable."""
        gw = self.track(Gateway(self.up.url, env=dict(env, POLICIES_DIR=EMPTY_POLICIES,
                                                       DEFAULT_TTL="0")))
        wait_redis_tier(gw)
        return gw

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


def wait_redis_tier(gw):
    """An instance offers its Redis tier only once it has read the invalidation records
    (docs/design.md, Invalidation protocol), some milliseconds after it listens: a request
    before that is answered from memory and the upstream, as a miss.  Wait for it."""
    from harness import wait_until
    wait_until(lambda: gw.health_cache()["backend"] == "redis", timeout=10,
               what="the Redis tier")


def wait_stored_in_redis(redis, key, holding=b""):
    """The first instance writes Redis after answering: wait for the entry (holding these
    bytes, e.g. a merged field) before a second instance looks."""
    from harness import wait_until
    from redis_servers import RedisClient

    def there():
        with RedisClient(redis.port) as c:
            v = c.command("GET", "cachegw:c:" + key)
            return v is not None and holding in v
    wait_until(there, timeout=5, what=f"{key} in Redis")


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


class ExpiresAgeTest(Rfc9111Case):
    """Items 1 and 3: an Expires that is not an HTTP-date, or several Expires lines, mean
    "already expired" (RFC 9111 §5.3); an Age that is not delta-seconds is ignored (§5.1).
    A lenient date parser (curl_getdate, used before) reads every bad form below as the
    same future time and reuses the response."""

    def expires_forms(self):
        import calendar
        # Two days ahead at 08:00:00 UTC: a one-digit hour is meaningful, and every form
        # names the same instant, well in the future.
        t = time.gmtime(time.time() + 2 * 86400)
        when = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 8, 0, 0))
        g = time.gmtime(when)

        def f(fmt):
            return time.strftime(fmt, g)
        good = f("%a, %d %b %Y 08:00:00 GMT")
        bad = {
            "zone": f("%a, %d %b %Y 08:00:00 UTC"),
            "two-digit-year": f("%a, %d %b %y 08:00:00 GMT"),
            "no-comma": f("%a %d %b %Y 08:00:00 GMT"),
            "double-space": f("%a,  %d %b %Y 08:00:00 GMT"),
            "dashes": f("%a, %d-%b-%Y 08:00:00 GMT"),
            "one-digit-hour": f("%a, %d %b %Y 8:00:00 GMT"),
        }
        return good, bad

    def test_an_expires_that_is_not_an_http_date_is_already_expired(self):
        import email.utils
        good, bad = self.expires_forms()
        # Also with a product default TTL: "already expired" is freshness, not its absence.
        for default_ttl in ("0", "300"):
            self.start(env={"DEFAULT_TTL": default_ttl})
            date = [("Date", email.utils.formatdate(time.time(), usegmt=True))]
            self.up.script("/e/good", response(200, date + [("Expires", good)], b"x"))
            self.assertServedTwiceWithOneFetch("/e/good")  # the control: a valid Expires
            scripts = {f"/e/{name}": [("Expires", v)] for name, v in bad.items()}
            scripts["/e/two-lines"] = [("Expires", good), ("Expires", good)]
            for path, headers in scripts.items():
                self.up.script(path, response(200, date + headers, b"x"))
                with self.subTest(path=path, default_ttl=default_ttl):
                    self.get(path)
                    r = self.get(path)
                    self.assertEqual(r.status, 200)
                    self.assertEqual(r.header("x-cache"), "MISS", headers)
                    self.assertEqual(self.up.count(path), 2)
            self.up.stop()
            self.gw.stop()

    def test_an_age_that_is_not_an_integer_is_ignored(self):
        self.start()
        cc = [("Cache-Control", "max-age=60")]
        self.up.script("/a/valid", response(200, cc + [("Age", "30")], b"x"))
        self.up.script("/a/old", response(200, cc + [("Age", "100")], b"x"))
        self.up.script("/a/decimal", response(200, cc + [("Age", "100.5")], b"x"))
        self.up.script("/a/negative", response(200, cc + [("Age", "-100")], b"x"))
        # A valid Age counts: 30 s old on arrival, and 100 s old is stale on arrival.
        self.assertServedTwiceWithOneFetch("/a/valid")
        self.assertGreaterEqual(int(self.get("/a/valid").header("age")), 30)
        self.get("/a/old")
        self.assertEqual(self.get("/a/old").header("x-cache"), "MISS")
        self.assertEqual(self.up.count("/a/old"), 2)
        # "100.5" and "-100" are not Ages: ignored, the response is fresh and young
        # (read as 100 it would be stale on arrival).
        for path in ("/a/decimal", "/a/negative"):
            with self.subTest(path=path):
                self.assertServedTwiceWithOneFetch(path)
                self.assertLess(int(self.get(path).header("age")), 10)


class DateTest(Rfc9111Case):
    def test_the_stored_date_is_served_unchanged(self):
        import email.utils
        self.start()
        date = email.utils.formatdate(time.time() - 1, usegmt=True)
        expires = email.utils.formatdate(time.time() + 600, usegmt=True)
        for path, extra in (("/d", []), ("/d-exp", [("Expires", expires)])):
            cc = [] if extra else [("Cache-Control", "max-age=600")]
            self.up.script(path, response(200, cc + extra + [("Date", date)], b"d"))
            self.get(path)
            time.sleep(1.1)
            r = self.get(path)
            self.assertEqual(r.header("x-cache"), "HIT", r)
            self.assertEqual([v for k, v in r.header_list if k == "date"], [date])


    def test_a_304_without_date_refreshes(self):
        import email.utils
        self.start()
        date = email.utils.formatdate(time.time(), usegmt=True)
        self.up.script("/d304", conditional(
            response(200, [("Cache-Control", "max-age=1"), ("ETag", '"e"'), ("Date", date)], b"d"),
            # max-age=5: the receipt Date has one-second resolution, and a loaded machine
            # made a 2 s refresh stale on arrival once.
            response(304, [("Cache-Control", "max-age=5"), ("ETag", '"e"')],
                     content_length=False)))
        self.get("/d304")
        time.sleep(2.2)  # the stored Date is now older than the 304's max-age
        r = self.get("/d304")
        self.assertEqual(r.body, b"d")
        self.assertIn("stored", r.header("cache-status"))
        self.assertNotEqual(r.header("date"), date)  # the receipt time of the 304
        self.assertEqual(self.get("/d304").header("x-cache"), "HIT")
        self.assertEqual(self.up.count("/d304"), 2)

    def test_a_response_without_date_gets_its_receipt_time(self):
        self.start()
        self.up.script("/nodate", response(200, [("Cache-Control", "max-age=60")], b"d"))
        a = self.get("/nodate")
        time.sleep(1.1)
        b = self.get("/nodate")
        self.assertEqual(b.header("x-cache"), "HIT")
        self.assertEqual(b.header("date"), a.header("date"))


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


    def test_accept_language_is_normalised(self):
        self.start()
        self.up.script("/vl", response(200, [("Cache-Control", "max-age=60"),
                                             ("Vary", "Accept-Language")], b"x"))
        self.get("/vl", headers={"Accept-Language": "en-US, fr;q=0.5"})
        r = self.get("/vl", headers={"Accept-Language": " FR; q=0.5 ,en-us"})
        self.assertEqual(r.header("x-cache"), "HIT")
        r = self.get("/vl", headers={"Accept-Language": "de"})
        self.assertEqual(r.header("x-cache"), "MISS")
        self.assertEqual(self.up.count("/vl"), 2)

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


class PostContentLocationTest(Rfc9111Case):
    def test_post_answer_naming_its_target_serves_a_later_get(self):
        self.start()
        self.up.script("/p", response(200, [("Cache-Control", "max-age=60"),
                                            ("Content-Location", "/p")], b"created"))
        r = self.gw.req("POST", "/p", body=b"x", headers={"Content-Type": "text/plain"})
        self.assertEqual(r.body, b"created")
        g = self.get("/p")
        self.assertEqual(g.header("x-cache"), "HIT")
        self.assertEqual(g.body, b"created")
        self.assertEqual([q.method for q in self.up.requests("/p")], ["POST"])

    def test_over_the_redis_tier(self):
        from redis_servers import RedisServer
        redis = RedisServer("plain")
        self.addCleanup(redis.stop)
        self.start(env={"REDIS_URL": f"redis://127.0.0.1:{redis.port}"})
        self.up.script("/pr", response(200, [("Cache-Control", "max-age=60"),
                                             ("Content-Location", "/pr")], b"created"))
        self.gw.req("POST", "/pr", body=b"x")
        g = self.get("/pr")
        self.assertEqual(g.header("x-cache"), "HIT", g)
        self.assertEqual(g.body, b"created")
        self.assertEqual(self.up.count("/pr"), 1)

    def test_other_post_answers_are_not_stored(self):
        self.start()
        cases = {
            "/p1": [("Cache-Control", "max-age=60"), ("Content-Location", "/elsewhere")],
            "/p2": [("Content-Location", "/p2")],  # no explicit freshness
            "/p3": [("Cache-Control", "max-age=60, no-store"), ("Content-Location", "/p3")],
        }
        for path, headers in cases.items():
            self.up.script(path, response(200, headers, b"created"))
            self.gw.req("POST", path, body=b"x")
            g = self.get(path)
            self.assertEqual(g.header("x-cache"), "MISS", path)
        # A POST with a Cookie: its answer may be the user's own.
        self.up.script("/p4", response(200, [("Cache-Control", "max-age=60"),
                                             ("Content-Location", "/p4")], b"mine"))
        self.gw.req("POST", "/p4", body=b"x", headers={"Cookie": "s=1"})
        self.assertEqual(self.get("/p4").header("x-cache"), "MISS")


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
        wait_stored_in_redis(redis, "GET:/mr", b"max-age=60")  # the merged entry
        # A second instance with an empty memory tier reads the merged entry from Redis.
        other = self.other_instance(env)
        r = other.get("/mr")
        self.assertEqual(r.header("x-cache"), "HIT", r)
        self.assertIn("redis", r.header("cache-status"))
        self.check_merged(r)
        self.assertEqual(self.up.count("/mr"), 2)


class HeuristicTest(Rfc9111Case):
    LM = "Mon, 06 Nov 2023 08:49:37 GMT"  # long before Date: 10 % is capped by HEURISTIC_MAX

    def test_last_modified_heuristic_for_heuristic_statuses_only(self):
        self.start(env={"HEURISTIC_MAX": "1"})
        for status in (200, 404, 301):
            path = f"/h/{status}"
            self.up.script(path, response(status, [("Last-Modified", self.LM),
                                                   ("Location", "/x")], b"h"))
            with self.subTest(status=status):
                self.assertServedTwiceWithOneFetch(path, status)
        # Bounded: after HEURISTIC_MAX (1 s) the 200 is stale again.
        time.sleep(1.3)
        self.get("/h/200")
        self.assertEqual(self.up.count("/h/200"), 2)
        # Not heuristically cacheable: a 302 or 500 with Last-Modified is not stored.
        for status in (302, 500):
            path = f"/h/{status}"
            self.up.script(path, response(status, [("Last-Modified", self.LM),
                                                   ("Location", "/x")], b"h"))
            self.get(path)
            self.get(path)
            self.assertEqual(self.up.count(path), 2)

    def test_heuristic_off_and_default_ttl(self):
        self.start(env={"HEURISTIC_FRACTION": "0"})
        self.up.script("/h0", response(200, [("Last-Modified", self.LM)], b"h"))
        self.get("/h0")
        self.get("/h0")
        self.assertEqual(self.up.count("/h0"), 2)
        self.gw.stop()
        # The product default: after the heuristic, for 200/203 only, also without
        # Last-Modified.
        self.start(env={"DEFAULT_TTL": "60", "HEURISTIC_MAX": "7"}, upstream=self.up)
        self.up.script("/d/lm", response(200, [("Last-Modified", self.LM)], b"h"))
        self.up.script("/d/none", response(200, [], b"h"))
        self.up.script("/d/203", response(203, [], b"h"))
        self.up.script("/d/404", response(404, [], b"h"))
        for path, ttl in (("/d/lm", 7), ("/d/none", 60), ("/d/203", 60)):
            with self.subTest(path=path):
                self.get(path)
                r = self.get(path)
                self.assertEqual(r.header("x-cache"), "HIT")
                left = int(r.header("cache-status").rsplit("ttl=", 1)[1].split(";")[0])
                self.assertTrue(ttl - 2 <= left <= ttl, r.header("cache-status"))
                self.assertEqual(self.up.count(path), 1)
        self.get("/d/404")
        self.get("/d/404")
        self.assertEqual(self.up.count("/d/404"), 2)

    def test_bad_values_stop_start_up(self):
        import subprocess
        from harness import CACHEGW_BIN
        for env in ({"HEURISTIC_FRACTION": "101"}, {"COMPRESS": "zstd"},
                    {"TARGETED_CACHE_CONTROL": "cache-control"}, {"COMPRESS_TYPES": "json"},
                    {"COMPRESS_TYPES": "text/html;q=1"}, {"COMPRESS_MIN_SIZE": "1 parsec"}):
            p = subprocess.run([CACHEGW_BIN, "--check"], env=dict(os.environ, **env,
                               POLICIES_DIR=EMPTY_POLICIES), capture_output=True, text=True)
            self.assertEqual(p.returncode, 2, (env, p.stderr))
            self.assertIn(list(env)[0], p.stderr + p.stdout)


class AuthorizationTest(Rfc9111Case):
    def test_shared_directives_let_an_authorized_answer_be_stored(self):
        self.start()
        auth = {"Authorization": "Bearer alice"}
        for cc in ("public, max-age=60", "s-maxage=60", "max-age=60, must-revalidate"):
            path = "/auth/" + cc.split(",")[0].split("=")[0]
            self.up.script(path, response(200, [("Cache-Control", cc)], b"shared"))
            a = self.get(path, headers=auth)
            self.assertEqual(a.body, b"shared")
            # Stored for others ...
            b = self.get(path)
            self.assertEqual(b.header("x-cache"), "HIT", (cc, b))
            # ... but a request with Authorization is never answered from it.
            c = self.get(path, headers=auth)
            self.assertNotEqual(c.header("x-cache"), "HIT")
            self.assertEqual(self.up.count(path), 2)
            self.assertEqual(self.up.requests(path)[0].header("authorization"), "Bearer alice")

    def test_without_them_nothing_is_stored(self):
        self.start()
        self.up.script("/auth/private", response(200, [("Cache-Control", "max-age=60")], b"mine"))
        self.get("/auth/private", headers={"Authorization": "Bearer alice"})
        r = self.get("/auth/private")
        self.assertEqual(r.header("x-cache"), "MISS")
        self.assertEqual(self.up.count("/auth/private"), 2)

    def test_authorization_with_cookie_is_a_plain_bypass(self):
        self.start()
        self.up.script("/auth/ck", response(200, [("Cache-Control", "public, max-age=60")], b"x"))
        self.get("/auth/ck", headers={"Authorization": "Bearer a", "Cookie": "s=1"})
        self.get("/auth/ck")
        self.assertEqual(self.up.count("/auth/ck"), 2)


class TargetedTest(Rfc9111Case):
    def test_cdn_cache_control_overrides_and_is_not_passed_on(self):
        self.start()
        self.up.script("/t/cdn", response(200, [("Cache-Control", "no-store"),
                                                ("CDN-Cache-Control", "max-age=60"),
                                                ("Surrogate-Control", "max-age=60"),
                                                ("Surrogate-Key", "k1 k2")], b"x"))
        a = self.get("/t/cdn")
        b = self.get("/t/cdn")
        self.assertEqual(b.header("x-cache"), "HIT")
        self.assertEqual(self.up.count("/t/cdn"), 1)
        for r in (a, b):
            self.assertEqual(r.header("cache-control"), "no-store")  # for the client's caches
            self.assertIsNone(r.header("cdn-cache-control"))
            self.assertIsNone(r.header("surrogate-control"))
            self.assertIsNone(r.header("surrogate-key"))
        # no-store in the targeted field wins over Cache-Control.
        self.up.script("/t/ns", response(200, [("Cache-Control", "max-age=60"),
                                               ("CDN-Cache-Control", "no-store")], b"x"))
        self.get("/t/ns")
        self.get("/t/ns")
        self.assertEqual(self.up.count("/t/ns"), 2)

    def test_consumed_fields_never_reach_a_client_on_any_path(self):
        # Not only from a stored entry: uncacheable, bypassed, written and streamed
        # (larger than MAX_VALUE_SIZE) answers go through other steps.
        self.start(env={"MAX_VALUE_SIZE": "4096"})
        fields = [("CDN-Cache-Control", "no-store"), ("Surrogate-Control", "no-store"),
                  ("Surrogate-Key", "k1")]
        self.up.script("/t/any", response(200, fields, b"small"))
        self.up.script("/t/big", response(200, [("Cache-Control", "max-age=60")] + fields,
                                          b"b" * 100000))
        answers = {
            "uncacheable": self.get("/t/any"),
            "cookie bypass": self.get("/t/any", headers={"Cookie": "s=1"}),
            "authorization": self.get("/t/any", headers={"Authorization": "Bearer a"}),
            "post": self.gw.req("POST", "/t/any", body=b"x"),
            "head": self.gw.req("HEAD", "/t/any"),
            "streamed": self.get("/t/big"),
        }
        for what, r in answers.items():
            with self.subTest(what=what):
                self.assertEqual(r.status, 200, r)
                names = [k for k, _ in r.header_list]
                for f, _ in fields:
                    self.assertNotIn(f.lower(), names)
        self.assertEqual(len(answers["streamed"].body), 100000)
        self.assertEqual(self.up.count("/t/any"), 5)  # every answer came from the upstream

    def test_targeted_must_revalidate_rules_stale_use(self):
        self.start()
        self.up.script("/t/mr", response(200, [("Cache-Control", "max-age=60"),
                                               ("CDN-Cache-Control", "max-age=1, must-revalidate")],
                                         b"x"))
        self.get("/t/mr")
        time.sleep(1.4)
        r = self.get("/t/mr", headers={"Cache-Control": "max-stale=60"})
        self.assertEqual(r.header("x-cache"), "MISS")  # not served stale
        self.assertEqual(self.up.count("/t/mr"), 2)

    def test_targeted_private_no_cache_and_invalid(self):
        self.start()
        past = "Thu, 01 Jan 1970 00:00:00 GMT"
        self.up.script("/t/priv", response(200, [("Cache-Control", "max-age=60"),
                                                 ("CDN-Cache-Control", "private")], b"x"))
        self.up.script("/t/nc", conditional(
            response(200, [("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-cache"),
                           ("ETag", '"t1"')], b"x"),
            response(304, [("ETag", '"t1"')], content_length=False)))
        # It overrides Expires too.
        self.up.script("/t/exp", response(200, [("Expires", past),
                                                ("CDN-Cache-Control", "max-age=60")], b"x"))
        # Not a Structured Fields Dictionary (upper case): ignored, Cache-Control decides.
        self.up.script("/t/bad", response(200, [("Cache-Control", "no-store"),
                                                ("CDN-Cache-Control", "Max-Age=60")], b"x"))
        for p in ("/t/priv", "/t/nc", "/t/exp", "/t/bad"):
            self.get(p)
            self.get(p)
        self.assertEqual(self.up.count("/t/priv"), 2)
        seen = self.up.requests("/t/nc")  # stored, and revalidated on its next use
        self.assertEqual(len(seen), 2)
        self.assertEqual(seen[1].header("if-none-match"), '"t1"')
        self.assertEqual(self.up.count("/t/exp"), 1)
        self.assertEqual(self.up.count("/t/bad"), 2)

    def test_own_targeted_field_comes_first(self):
        self.start(env={"TARGETED_CACHE_CONTROL": "Cachegw-Cache-Control"})
        self.up.script("/t/own", response(200, [("CDN-Cache-Control", "no-store"),
                                                ("Cachegw-Cache-Control", "max-age=60")], b"x"))
        a = self.get("/t/own")
        b = self.get("/t/own")
        self.assertEqual(b.header("x-cache"), "HIT")
        for r in (a, b):
            self.assertIsNone(r.header("cachegw-cache-control"))
            self.assertIsNone(r.header("cdn-cache-control"))


class StoredHeadersOverRedisTest(Rfc9111Case):
    """Behaviours that live in stored header fields (Date, the targeted field's directives,
    fields never passed to clients, Vary), read back from Redis by a second instance whose
    memory tier is empty."""

    def test_a_second_instance_serves_what_the_first_stored(self):
        import email.utils
        from redis_servers import RedisServer
        redis = RedisServer("plain")
        self.addCleanup(redis.stop)
        env = {"REDIS_URL": f"redis://127.0.0.1:{redis.port}"}
        self.start(env=env)
        date = email.utils.formatdate(time.time() - 1, usegmt=True)
        self.up.script("/sr/v", response(200, [
            ("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60"),
            ("Surrogate-Key", "k1"), ("Surrogate-Control", "max-age=60"), ("Date", date),
            ("Vary", "X-Lang"), ("X-Kept", "yes")], b"bonjour"))
        self.up.script("/sr/mr", response(200, [
            ("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "max-age=1, must-revalidate")],
            b"mr"))
        self.get("/sr/v", headers={"X-Lang": "fr"})
        self.get("/sr/mr")
        wait_stored_in_redis(redis, "GET:/sr/mr")
        # The Vary'd entry: its marker under the plain key and the variant elsewhere.
        wait_stored_in_redis(redis, "GET:/sr/v")
        from harness import wait_until
        from redis_servers import RedisClient

        def variant_there():
            with RedisClient(redis.port) as c:
                keys = c.command("KEYS", "cachegw:c:*")
                return any(b"bonjour" in (c.command("GET", k) or b"") for k in keys)
        wait_until(variant_there, timeout=5, what="the variant in Redis")

        other = self.other_instance(env)
        r = other.get("/sr/v", headers={"X-Lang": "fr"})
        self.assertEqual(r.header("x-cache"), "HIT", r)
        self.assertIn("redis", r.header("cache-status"))
        self.assertEqual(r.body, b"bonjour")
        self.assertEqual([v for k, v in r.header_list if k == "date"], [date])  # unchanged
        self.assertEqual(r.header("cache-control"), "no-store")
        self.assertEqual(r.header("x-kept"), "yes")
        for k, _ in r.header_list:
            self.assertNotIn(k, ("cdn-cache-control", "surrogate-key", "surrogate-control"))
            self.assertFalse(k.startswith("x-cachegw"), k)
        self.assertEqual(other.get("/sr/v", headers={"X-Lang": "de"}).header("x-cache"), "MISS")
        self.assertEqual(self.up.count("/sr/v"), 2)
        # The targeted must-revalidate came through Redis: once stale (1 s), max-stale
        # does not let the second instance serve it.
        self.assertEqual(other.get("/sr/mr").header("x-cache"), "HIT")
        time.sleep(1.4)
        r = other.get("/sr/mr", headers={"Cache-Control": "max-stale=60"})
        self.assertEqual(r.header("x-cache"), "MISS", r)
        self.assertEqual(self.up.count("/sr/mr"), 2)


BODY = bytes(range(256)) * 4  # 1024 bytes


class RangeTest(Rfc9111Case):
    def setUp(self):
        super().setUp()
        self.start(env={"COMPRESS": ""})
        self.up.script("/r", response(200, [("Cache-Control", "max-age=60"), ("ETag", '"r1"'),
                                            ("Last-Modified", "Tue, 14 Nov 2023 22:13:20 GMT"),
                                            ("Content-Type", "application/octet-stream")], BODY))
        self.get("/r")

    def test_single_open_suffix(self):
        for rng, first, last in (("bytes=0-9", 0, 9), ("bytes=1000-", 1000, 1023),
                                 ("bytes=-24", 1000, 1023), ("bytes=10-5000", 10, 1023)):
            r = self.get("/r", headers={"Range": rng})
            self.assertEqual(r.status, 206, rng)
            self.assertEqual(r.body, BODY[first:last + 1])
            self.assertEqual(r.header("content-range"), f"bytes {first}-{last}/1024")
            self.assertEqual(r.header("x-cache"), "HIT")
        self.assertEqual(self.up.count("/r"), 1)
        self.assertIsNone(self.up.requests("/r")[0].header("range"))

    def test_unsatisfiable_is_416(self):
        r = self.get("/r", headers={"Range": "bytes=2000-"})
        self.assertEqual(r.status, 416)
        self.assertEqual(r.header("content-range"), "bytes */1024")
        self.assertEqual(r.body, b"")

    def test_if_range(self):
        r = self.get("/r", headers={"Range": "bytes=0-1", "If-Range": '"r1"'})
        self.assertEqual(r.status, 206)
        r = self.get("/r", headers={"Range": "bytes=0-1",
                                    "If-Range": "Tue, 14 Nov 2023 22:13:20 GMT"})
        self.assertEqual(r.status, 206)
        for stale in ('"r0"', 'W/"r1"', "Tue, 14 Nov 2023 22:13:21 GMT"):
            r = self.get("/r", headers={"Range": "bytes=0-1", "If-Range": stale})
            self.assertEqual(r.status, 200, stale)
            self.assertEqual(r.body, BODY)

    def test_several_ranges_and_other_units_get_the_whole_response(self):
        for rng in ("bytes=0-1, 5-6", "items=0-1", "bytes=5-1", "bytes=x"):
            r = self.get("/r", headers={"Range": rng})
            self.assertEqual(r.status, 200, rng)
            self.assertEqual(r.body, BODY)


def brotli_ok():
    try:
        import brotli  # noqa: F401
        return True
    except ImportError:
        return False


DOC = json.dumps({"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"]}
                            for i in range(300)]}).encode()


def get_without_accept_encoding(port, path):
    """GET with no Accept-Encoding field at all (http.client always sends "identity"):
    (status, {lower-case name: value}, body).  RFC 9110 §12.5.3 would allow any coding
    here; the gateway sends none (issue 12: never gzip to a client that did not ask)."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


class CompressionTest(Rfc9111Case):
    def script_doc(self, path, extra=()):
        self.up.script(path, response(200, [("Cache-Control", "max-age=60"), ("ETag", '"d1"'),
                                            ("Content-Type", "application/json")] + list(extra),
                                      DOC))

    def test_gzip_and_identity_from_one_entry(self):
        self.start()
        self.script_doc("/c/doc")
        self.get("/c/doc")
        ident = self.get("/c/doc")
        gz = self.get("/c/doc", headers={"Accept-Encoding": "gzip"})
        br = self.get("/c/doc", headers={"Accept-Encoding": "gzip, br"})
        refused = self.get("/c/doc", headers={"Accept-Encoding": "gzip;q=0, br;q=0"})
        self.assertEqual(self.up.count("/c/doc"), 1)
        # Identity for a client that did not ask, with Vary so caches downstream keep apart.
        self.assertEqual(ident.body, DOC)
        self.assertIsNone(ident.header("content-encoding"))
        self.assertIn("Accept-Encoding", ident.header("vary"))
        self.assertEqual(ident.header("etag"), '"d1"')
        self.assertEqual(refused.body, DOC)
        self.assertIsNone(refused.header("content-encoding"))
        # gzip for one that did.
        self.assertEqual(gz.header("content-encoding"), "gzip")
        self.assertEqual(gzip.decompress(gz.body), DOC)
        self.assertLess(len(gz.body), len(DOC) // 3)
        self.assertEqual(gz.header("etag"), '"d1-gzip"')
        self.assertIn("Accept-Encoding", gz.header("vary"))
        self.assertEqual(int(gz.header("content-length")), len(gz.body))
        # br preferred when accepted.
        self.assertEqual(br.header("content-encoding"), "br")
        self.assertEqual(br.header("etag"), '"d1-br"')
        self.assertLess(len(br.body), len(gz.body))
        if brotli_ok():
            import brotli
            self.assertEqual(brotli.decompress(br.body), DOC)
        # No Accept-Encoding at all (curl's default): identity too.
        status, h, body = get_without_accept_encoding(self.gw.port, "/c/doc")
        self.assertEqual((status, h.get("x-cache"), h.get("content-encoding")), (200, "HIT", None))
        self.assertEqual(body, DOC)
        self.assertEqual(self.up.count("/c/doc"), 1)

    def test_coded_etag_revalidates(self):
        self.start()
        self.script_doc("/c/inm")
        gz = self.get("/c/inm", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(gz.header("etag"), '"d1-gzip"')
        r = self.get("/c/inm", headers={"Accept-Encoding": "gzip", "If-None-Match": '"d1-gzip"'})
        self.assertEqual(r.status, 304)
        self.assertEqual(r.header("etag"), '"d1-gzip"')
        self.assertEqual(r.body, b"")
        r = self.get("/c/inm", headers={"If-None-Match": '"d1"'})
        self.assertEqual(r.status, 304)
        self.assertEqual(r.header("etag"), '"d1"')
        self.assertEqual(self.up.count("/c/inm"), 1)

    def test_upstream_encoded_answers_only_reach_clients_that_accept_them(self):
        self.start()
        coded = gzip.compress(DOC)

        def by_accept_encoding(req):
            if "gzip" in (req.header("accept-encoding") or ""):
                return response(200, [("Cache-Control", "max-age=60"), ("Content-Encoding", "gzip"),
                                      ("Content-Type", "application/json")], coded)
            return response(200, [("Cache-Control", "max-age=60"),
                                  ("Content-Type", "application/json")], DOC)
        self.up.script("/c/up", by_accept_encoding)
        a = self.get("/c/up", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(a.header("content-encoding"), "gzip")
        self.assertIn("accept-encoding", a.header("vary").lower())
        b = self.get("/c/up")  # no gzip asked: never the gzip copy
        self.assertIsNone(b.header("content-encoding"))
        self.assertEqual(b.body, DOC)
        c = self.get("/c/up", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(c.header("x-cache"), "HIT")
        self.assertEqual(gzip.decompress(c.body), DOC)
        self.assertEqual(self.up.count("/c/up"), 2)
        status, h, body = get_without_accept_encoding(self.gw.port, "/c/up")
        self.assertEqual((status, h.get("content-encoding")), (200, None))
        self.assertEqual(body, DOC)

    def test_head_names_the_coded_length(self):
        self.start()
        self.script_doc("/c/head")
        gz = self.get("/c/head", headers={"Accept-Encoding": "gzip"})
        h = self.gw.req("HEAD", "/c/head", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(h.status, 200)
        self.assertEqual(h.header("content-encoding"), "gzip")
        self.assertEqual(int(h.header("content-length")), len(gz.body))
        self.assertEqual(h.body, b"")

    def test_not_compressed(self):
        self.start(env={"COMPRESS_MIN_SIZE": "64KiB"})
        self.script_doc("/c/small")
        self.get("/c/small")
        r = self.get("/c/small", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(r.header("x-cache"), "HIT")
        self.assertIsNone(r.header("content-encoding"))
        self.assertEqual(r.body, DOC)

    def test_copies_stay_within_max_value_size(self):
        # The copies' sizes, from an instance without a tight bound.
        self.start()
        self.script_doc("/c/max")
        self.get("/c/max")
        gz = len(self.get("/c/max", headers={"Accept-Encoding": "gzip"}).body)
        br = len(self.get("/c/max", headers={"Accept-Encoding": "br"}).body)
        self.assertTrue(0 < br < gz < len(DOC), (br, gz))
        self.gw.stop()
        # Room for the body and the gzip copy (made first), not the br one: a br client
        # gets gzip.  Room for the body alone: everyone gets identity.  Still stored.
        for room, coding in ((gz + br - 1, "gzip"), (br - 1, None)):
            gw = self.track(Gateway(self.up.url, env={
                "POLICIES_DIR": EMPTY_POLICIES, "DEFAULT_TTL": "0",
                "MAX_VALUE_SIZE": str(len(DOC) + room)}))
            gw.get("/c/max")
            r = gw.get("/c/max", headers={"Accept-Encoding": "gzip, br"})
            with self.subTest(room=room):
                self.assertEqual(r.header("x-cache"), "HIT")
                self.assertEqual(r.header("content-encoding"), coding)
                if coding is None:
                    self.assertEqual(r.body, DOC)
                else:
                    self.assertEqual(gzip.decompress(r.body), DOC)
            gw.stop()
        self.assertEqual(self.up.count("/c/max"), 3)

    def test_no_transform_and_other_types_are_left_alone(self):
        self.start()
        self.script_doc("/c/nt", [("Cache-Control", "no-transform")])
        self.up.script("/c/png", response(200, [("Cache-Control", "max-age=60"),
                                                ("Content-Type", "image/png")], DOC))
        for p in ("/c/nt", "/c/png"):
            self.get(p)
            r = self.get(p, headers={"Accept-Encoding": "gzip"})
            self.assertEqual(r.header("x-cache"), "HIT")
            self.assertIsNone(r.header("content-encoding"), p)
            self.assertEqual(r.body, DOC)

    def test_304_refresh_keeps_the_copies_right(self):
        self.start()
        self.up.script("/c/rv", conditional(
            response(200, [("Cache-Control", "max-age=1"), ("ETag", '"v"'),
                           ("Content-Type", "application/json")], DOC),
            response(304, [("Cache-Control", "max-age=60"), ("ETag", '"v"')],
                     content_length=False)))
        self.get("/c/rv")
        time.sleep(1.4)
        a = self.get("/c/rv")  # revalidated
        b = self.get("/c/rv", headers={"Accept-Encoding": "gzip"})
        self.assertEqual(a.body, DOC)
        self.assertEqual(gzip.decompress(b.body), DOC)
        self.assertEqual(self.up.count("/c/rv"), 2)

    def test_over_the_redis_tier(self):
        from redis_servers import RedisServer
        redis = RedisServer("plain")
        self.addCleanup(redis.stop)
        env = {"REDIS_URL": f"redis://127.0.0.1:{redis.port}"}
        self.start(env=env)
        self.script_doc("/c/redis")
        self.get("/c/redis")
        wait_stored_in_redis(redis, "GET:/c/redis")
        other = self.other_instance(env)
        gz = other.get("/c/redis", headers={"Accept-Encoding": "gzip"})
        self.assertIn("redis", gz.header("cache-status"))
        self.assertEqual(gzip.decompress(gz.body), DOC)
        ident = other.get("/c/redis")
        self.assertEqual(ident.body, DOC)
        r = other.get("/c/redis", headers={"Range": "bytes=0-9", "Accept-Encoding": "gzip"})
        self.assertEqual(r.status, 206)
        self.assertEqual(r.body, DOC[:10])  # ranges are of the identity body
        self.assertEqual(self.up.count("/c/redis"), 1)


if __name__ == "__main__":
    import unittest
    unittest.main()
