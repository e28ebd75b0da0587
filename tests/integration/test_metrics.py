"""GET /metrics by Prometheus conventions (src/core/metrics.c, src/http/endpoints.c), read with a real
Prometheus parser: prometheus_client.parser from Debian's python3-prometheus-client.

After a known mix of requests (hits, misses, bypasses, a stale answer and an upstream
error) the test checks every family's HELP and TYPE, the label sets (result, tier, the
route's pattern: never a URL), exact counts, that each histogram agrees with its counter,
the build and process metrics, that a scrape does not count itself as an active request,
policy reload counters and timestamp, that a key or URL purge is one invalidation, and,
against a real redis-server, Redis command durations and hits from the Redis tier.
"""

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from prometheus_client.parser import text_string_to_metric_families

from harness import (CACHEGW_BIN, ExampleAPI, Gateway, GatewayTestCase, request, wait_until)
from redis_servers import RedisServer

RESULTS = {"hit", "miss", "bypass", "stale", "error"}
TIERS = {"memory", "redis", "none"}

# Short TTL on users so that a stale entry can be served (stale_if_error) within the test.
POLICY = """
route "GET /users/:id" { key = "users:{id}", ttl = 1, stale_if_error = 60 }
route "GET /posts/:id" { key = "post:{id}", ttl = 60 }
route "POST /users" { invalidate = { "users:*" } }
"""

BROKEN_POLICY = 'route "GET /users/:id" { key = "users:{id}", tll = 1 }\n'

# name (as the parser gives it: counters without _total) -> type
FAMILIES = {
    "cachegw_requests": "counter",
    "cachegw_request_duration_seconds": "histogram",
    "cachegw_route_requests": "counter",
    "cachegw_upstream_duration_seconds": "histogram",
    "cachegw_redis_command_duration_seconds": "histogram",
    "cachegw_policy_reloads": "counter",
    "cachegw_policy_last_reload_success_timestamp_seconds": "gauge",
    "cachegw_build_info": "gauge",
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
    "cachegw_active_requests": "gauge",
    "cachegw_cache_hits": "counter",
    "cachegw_invalidations": "counter",
    "cachegw_upstream_requests": "counter",
}


def scrape(gw):
    r = gw.get("/metrics")
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/plain; version=0.0.4"), r.headers
    return {f.name: f for f in text_string_to_metric_families(r.body.decode())}


def value(fams, family, sample=None, **labels):
    """The value of the one sample of family with exactly these labels (0 if absent)."""
    f = fams[family]
    name = sample or (family + "_total" if f.type == "counter" else family)
    hits = [s.value for s in f.samples if s.name == name and s.labels == labels]
    assert len(hits) <= 1, (family, labels, hits)
    return hits[0] if hits else 0


class MetricsTest(GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="cachegw-metrics-")
        self.policies = os.path.join(self.dir, "policies")
        os.mkdir(self.policies)
        with open(os.path.join(self.policies, "routes.lua"), "w") as f:
            f.write(POLICY)
        self.addCleanup(shutil.rmtree, self.dir, True)

    def start(self, env=None, api=None):
        self.api = api or self.track(ExampleAPI())
        e = {"POLICIES_DIR": self.policies, "DEFAULT_TTL": "60"}
        e.update(env or {})
        self.gw = self.track(Gateway(self.api.url, env=e))
        return self.gw

    def expect(self, method, path, x_cache, status=None, headers=None, body=None):
        r = self.gw.req(method, path, headers=headers, body=body)
        self.assertEqual(r.header("x-cache"), x_cache, (method, path, r))
        if status is not None:
            self.assertEqual(r.status, status, (method, path, r))
        return r

    def test_families_labels_and_counts_after_a_known_mix(self):
        gw = self.start()
        t_start = time.time()
        # bypass: a write (it also invalidates users:*), and a credentialed read.
        self.expect("POST", "/users", "BYPASS", 201, headers={"Content-Type": "application/json"},
                    body=b'{"name": "m", "email": "m@example.com"}')
        self.expect("GET", "/users/1", "BYPASS", 200, headers={"Authorization": "Bearer x"})
        # misses and hits, memory tier.
        self.expect("GET", "/users/1", "MISS", 200)
        self.expect("GET", "/users/1", "HIT", 200)
        self.expect("GET", "/posts/1", "MISS", 200)
        self.expect("GET", "/posts/1", "HIT", 200)
        self.expect("GET", "/posts/1", "HIT", 200)
        # Twenty URLs of one route: one route label, not twenty.
        for i in range(2, 22):
            self.expect("GET", f"/posts/{i}", "MISS", 200)
        # No route matches: default rules, route "none".
        self.expect("GET", "/jobs?page=1", "MISS", 200)
        # The upstream goes away: the expired users:1 is served stale, users:9 fails.
        time.sleep(1.2)
        self.api.stop()
        r = self.expect("GET", "/users/1", "HIT", 200)
        self.assertIn("stale-if-error", r.header("cache-status"))
        self.expect("GET", "/users/9", "MISS", 502)

        fams = scrape(gw)
        for name, typ in FAMILIES.items():
            self.assertIn(name, fams, f"family {name} missing")
            self.assertEqual(fams[name].type, typ, name)
        for f in fams.values():
            # A family without TYPE parses as "unknown", one without HELP has no text.
            self.assertNotIn(f.type, ("unknown", "untyped"), f.name)
            self.assertTrue(f.documentation, f"{f.name} has no HELP")

        # cachegw_requests_total{result, tier}: exactly the reachable label sets.
        req = fams["cachegw_requests"]
        seen = set()
        for s in req.samples:
            self.assertEqual(set(s.labels), {"result", "tier"}, s)
            self.assertIn(s.labels["result"], RESULTS)
            self.assertIn(s.labels["tier"], TIERS)
            cached = s.labels["result"] in ("hit", "stale")
            self.assertEqual(s.labels["tier"] != "none", cached, s)
            seen.add((s.labels["result"], s.labels["tier"]))
        self.assertEqual(len(seen), 7)
        expected = {("hit", "memory"): 3, ("miss", "none"): 23, ("bypass", "none"): 2,
                    ("stale", "memory"): 1, ("error", "none"): 1, ("hit", "redis"): 0,
                    ("stale", "redis"): 0}
        for (res, tier), n in expected.items():
            self.assertEqual(value(fams, "cachegw_requests", result=res, tier=tier), n,
                             (res, tier))

        # The duration histogram, by result: counts agree with the counter, buckets are
        # cumulative and end in +Inf.
        hist = fams["cachegw_request_duration_seconds"]
        for res in RESULTS:
            buckets = [(s.labels["le"], s.value) for s in hist.samples
                       if s.name.endswith("_bucket") and s.labels["result"] == res]
            self.assertGreaterEqual(len(buckets), 10, res)
            self.assertEqual(buckets[-1][0], "+Inf")
            counts = [v for _, v in buckets]
            self.assertEqual(counts, sorted(counts), res)
            total = sum(n for (r_, _), n in expected.items() if r_ == res)
            self.assertEqual(value(fams, "cachegw_request_duration_seconds",
                                   "cachegw_request_duration_seconds_count", result=res), total)
            self.assertEqual(counts[-1], total, res)
        hit_sum = value(fams, "cachegw_request_duration_seconds",
                        "cachegw_request_duration_seconds_sum", result="hit")
        self.assertGreater(hit_sum, 0)
        self.assertLess(hit_sum, 3 * 5.0)

        # Per route: the policies' patterns (and "none"), never a URL.
        routes = {}
        for s in fams["cachegw_route_requests"].samples:
            self.assertEqual(set(s.labels), {"route", "result"}, s)
            routes[(s.labels["route"], s.labels["result"])] = s.value
        self.assertEqual({r for r, _ in routes},
                         {"GET /users/:id", "GET /posts/:id", "POST /users", "none"})
        self.assertEqual(routes[("GET /posts/:id", "miss")], 21)
        self.assertEqual(routes[("GET /posts/:id", "hit")], 2)
        self.assertEqual(routes[("GET /users/:id", "stale")], 1)
        self.assertEqual(routes[("GET /users/:id", "error")], 1)
        self.assertEqual(routes[("GET /users/:id", "bypass")], 1)
        self.assertEqual(routes[("POST /users", "bypass")], 1)
        self.assertEqual(routes[("none", "miss")], 1)
        self.assertEqual(sum(routes.values()), sum(expected.values()))

        # Upstream transfers: every one started, the refused one included.
        up = value(fams, "cachegw_upstream_requests")
        self.assertEqual(up, 2 + 23 + 2)  # bypasses, misses, the stale and failed fetches
        self.assertEqual(value(fams, "cachegw_upstream_duration_seconds",
                               "cachegw_upstream_duration_seconds_count"), up)
        self.assertEqual(value(fams, "cachegw_upstream_duration_seconds",
                               "cachegw_upstream_duration_seconds_bucket", le="+Inf"), up)
        # No Redis: no Redis commands.
        self.assertEqual(value(fams, "cachegw_redis_command_duration_seconds",
                               "cachegw_redis_command_duration_seconds_count"), 0)

        # Build and process metrics.
        version = subprocess.run([CACHEGW_BIN, "--version"], capture_output=True, text=True,
                                 check=True).stdout.split()[-1]
        self.assertEqual(value(fams, "cachegw_build_info", version=version), 1)
        start = value(fams, "process_start_time_seconds")
        self.assertLess(abs(start - t_start), 30, (start, t_start))
        self.assertGreater(value(fams, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(value(fams, "process_open_fds"), 3)
        self.assertGreaterEqual(value(fams, "process_virtual_memory_bytes"),
                                value(fams, "process_resident_memory_bytes"))
        with open(f"/proc/{gw.proc.pid}/limits") as f:
            soft = [l.split()[3] for l in f if l.startswith("Max open files")][0]
        self.assertEqual(value(fams, "process_max_fds"), float(soft))
        self.assertGreater(value(fams, "process_cpu_seconds"), 0)
        # The scrape itself is not an active request (the last request's completion may
        # trail its answer by a moment; a scrape that counted itself would never read 0).
        wait_until(lambda: value(scrape(gw), "cachegw_active_requests") == 0, timeout=3,
                   what="no active request")
        # Nor is a /health or /health/cache answer; the old counters are still there.
        gw.get("/health/cache")
        fams = scrape(gw)
        self.assertEqual(value(fams, "cachegw_active_requests"), 0)
        self.assertEqual(value(fams, "cachegw_cache_hits"), 4)  # stale included
        self.assertEqual(sum(s.value for s in fams["cachegw_requests"].samples),
                         sum(expected.values()), "own endpoints are not requests")

    def test_active_requests_counts_requests_in_flight_not_the_scrape(self):
        api = self.track(ExampleAPI(feed_latency_ms=1500))
        gw = self.start(api=api)
        done = threading.Event()

        def slow():
            request(gw.port, "GET", "/feed", timeout=10)
            done.set()

        t = threading.Thread(target=slow)
        t.start()
        wait_until(lambda: value(scrape(gw), "cachegw_active_requests") == 1, timeout=5,
                   what="the slow request counted as active")
        self.assertFalse(done.is_set())
        t.join(10)
        self.assertEqual(value(scrape(gw), "cachegw_active_requests"), 0)

    def test_policy_reloads_and_last_success_timestamp(self):
        before = time.time()
        gw = self.start()
        fams = scrape(gw)
        t0 = value(fams, "cachegw_policy_last_reload_success_timestamp_seconds")
        self.assertGreaterEqual(t0, before - 1)
        self.assertLessEqual(t0, time.time() + 1)
        self.assertEqual(value(fams, "cachegw_policy_reloads", result="ok"), 0)
        self.assertEqual(value(fams, "cachegw_policy_reloads", result="failed"), 0)

        time.sleep(1.1)  # a later reload has a later timestamp
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: value(scrape(gw), "cachegw_policy_reloads", result="ok") == 1,
                   timeout=5, what="the reload counted")
        t1 = value(scrape(gw), "cachegw_policy_last_reload_success_timestamp_seconds")
        self.assertGreater(t1, t0 + 1)

        with open(os.path.join(self.policies, "broken.lua"), "w") as f:
            f.write(BROKEN_POLICY)
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: value(scrape(gw), "cachegw_policy_reloads", result="failed") == 1,
                   timeout=5, what="the failed reload counted")
        fams = scrape(gw)
        self.assertEqual(value(fams, "cachegw_policy_reloads", result="ok"), 1)
        self.assertEqual(value(fams, "cachegw_policy_last_reload_success_timestamp_seconds"),
                         t1, "a failed reload keeps the last success time")

    def test_a_key_or_url_purge_counts_once(self):
        token = "adm-" + secrets.token_hex(8)
        admin_port = __import__("harness").free_port()
        gw = self.start(env={"ADMIN_TOKEN": token, "ADMIN_PORT": str(admin_port),
                             "ADMIN_HOST": None})
        auth = {"Authorization": "Bearer " + token}
        wait_until(lambda: request(admin_port, "GET", "/admin/health", headers=auth).status
                   == 200, timeout=5, what="the admin listener")
        self.expect("GET", "/posts/1", "MISS")
        n0 = value(scrape(gw), "cachegw_invalidations")
        for path in ("/purge/key?key=post:1", "/purge/url?url=/posts/1",
                     "/purge/prefix?prefix=post:"):
            r = request(admin_port, "POST", path, headers=auth)
            self.assertEqual(r.status, 200, r)
        self.assertEqual(value(scrape(gw), "cachegw_invalidations"), n0 + 3)
        # A route's write still counts each pattern it invalidates.
        self.expect("POST", "/users", "BYPASS", headers={"Content-Type": "application/json"},
                    body=b'{"name": "m", "email": "m@example.com"}')
        self.assertEqual(value(scrape(gw), "cachegw_invalidations"), n0 + 4)


class RedisMetricsTest(GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer("plain")

    @classmethod
    def tearDownClass(cls):
        cls.redis.stop()

    def test_redis_commands_and_hits_from_the_redis_tier(self):
        api = self.track(ExampleAPI())
        prefix = "m" + secrets.token_hex(4) + ":"
        env = {"REDIS_URL": self.redis.url(), "REDIS_PREFIX": prefix}
        a = self.track(Gateway(api.url, env=env))
        b = self.track(Gateway(api.url, env=env))
        wait_until(lambda: a.health_cache()["backend"] == "redis" and
                   b.health_cache()["backend"] == "redis", timeout=10, what="Redis up")
        self.assertEqual(a.get("/users/3").header("x-cache"), "MISS")
        # The store reaches Redis asynchronously; once it is there, b's hit comes from Redis.
        wait_until(lambda: self.redis.cmd("EXISTS", prefix + "c:users:3") == 1, timeout=5,
                   what="the entry in Redis")
        r = b.get("/users/3")
        self.assertEqual(r.header("x-cache"), "HIT", r)
        self.assertIn("detail=redis", r.header("cache-status"))
        # /health/cache (a live PING, suspended meanwhile) is not an active request either.
        # The hit's own completion may trail its answer by a moment: a scrape that counted
        # itself (or the PING) would never read 0.
        wait_until(lambda: value(scrape(b), "cachegw_active_requests") == 0, timeout=3,
                   what="no active request")
        fams = scrape(b)
        self.assertEqual(value(fams, "cachegw_requests", result="hit", tier="redis"), 1)
        self.assertEqual(value(fams, "cachegw_cache_hits_redis"), 1)
        n = value(fams, "cachegw_redis_command_duration_seconds",
                  "cachegw_redis_command_duration_seconds_count")
        self.assertGreater(n, 0)
        self.assertEqual(value(fams, "cachegw_redis_command_duration_seconds",
                               "cachegw_redis_command_duration_seconds_bucket", le="+Inf"), n)
        s = value(fams, "cachegw_redis_command_duration_seconds",
                  "cachegw_redis_command_duration_seconds_sum")
        self.assertGreater(s, 0)
        self.assertLess(s / n, 0.5, "a local Redis answers well under the timeout")
