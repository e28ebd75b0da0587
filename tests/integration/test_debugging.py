"""Seeing why a request missed (issue 11): the cache key in Cache-Status for a request that
presents the admin token (or with DEBUG_HEADERS), the decision in the debug log, and the
gateway's own endpoints at configurable paths with a configurable degraded status."""
import os
import subprocess
import tempfile
import unittest

from harness import (CACHEGW_BIN, SOURCE_DIR, ExampleAPI, Gateway, GatewayTestCase, free_port,
                     wait_until)

TOKEN = "debug-token-0123456789"


class DebuggingTest(GatewayTestCase):
    def start(self, env=None, health="/health"):
        self.api = self.track(ExampleAPI(latency_ms=0))
        e = {"ADMIN_TOKEN": TOKEN, "ADMIN_PORT": str(free_port()), "WORKERS": "2"}
        e.update(env or {})
        self.gw = self.track(Gateway(self.api.url, env=e, wait=False))
        wait_until(lambda: self.gw.get(health, timeout=1).status == 200, what="cachegw health")
        return self.gw

    def test_key_in_cache_status_only_with_the_token(self):
        gw = self.start()
        plain = gw.get("/users/1")
        self.assertNotIn("key=", plain.header("cache-status"))
        wrong = gw.get("/users/1", headers={"Cachegw-Debug": "not-the-token"})
        self.assertNotIn("key=", wrong.header("cache-status"))
        hit = gw.get("/users/1", headers={"Cachegw-Debug": TOKEN})
        self.assertEqual(hit.header("x-cache"), "HIT")
        self.assertIn('key="users:1"', hit.header("cache-status"))
        # The token never reaches the upstream (the hit above: it does not change the key).
        # /echo answers the header names it received; a miss and a bypass both forward.
        for r in (gw.get("/echo?debug=1", headers={"Cachegw-Debug": TOKEN}),
                  gw.req("POST", "/echo", headers={"Cachegw-Debug": TOKEN}, body=b"x")):
            self.assertIn(r.header("x-cache"), ("MISS", "BYPASS"), r)
            forwarded = {k.lower() for k in r.json()["headers"]}
            self.assertIn("x-request-id", forwarded)  # the echo lists what was forwarded
            self.assertNotIn("cachegw-debug", forwarded)

    def test_debug_headers_on_puts_the_key_everywhere(self):
        gw = self.start({"DEBUG_HEADERS": "true"})
        r = gw.get("/posts?b=2&a=1")
        self.assertIn("key=", r.header("cache-status"))
        # Refusals carry it too when a key was made; a bypass without a key does not.
        self.assertNotIn("key=", gw.req("POST", "/posts", body=b"{}").header("cache-status"))

    def test_decisions_are_logged_at_debug(self):
        gw = self.start({"LOG_LEVEL": "debug"})
        gw.get("/users/7")
        gw.get("/users/8", headers={"Cookie": "sid=1"})
        gw.req("POST", "/posts", body=b"{}")
        gw.req("POST", "/echo", body=b"x")  # no route
        gw.get("/echo?a=1")  # no route, the upstream's headers decide
        wait_until(lambda: "decision GET /echo?a=1" in gw.output(), what="decision log lines")

        def line(start):
            found = [l for l in gw.output().splitlines() if "decision " + start + ":" in l]
            self.assertEqual(len(found), 1, (start, gw.output()[-3000:]))
            return found[0].split("decision ", 1)[1]
        # Route, cacheable or bypass, key, reason and TTL (users.lua: ttl = 300).
        self.assertEqual(line("GET /users/7"),
                         "GET /users/7: route=GET /users/:id cacheable key=users:7 reason=route "
                         "ttl=300")
        self.assertEqual(line("GET /users/8"),
                         "GET /users/8: route=GET /users/:id bypass key=- reason=credentials "
                         "ttl=upstream")
        self.assertEqual(line("POST /posts"),
                         "POST /posts: route=POST /posts bypass key=- reason=invalidate "
                         "ttl=upstream")
        self.assertEqual(line("POST /echo"),
                         "POST /echo: route=- bypass key=- reason=method ttl=upstream")
        self.assertEqual(line("GET /echo?a=1"),
                         "GET /echo?a=1: route=- cacheable key=GET:/echo?a=1 reason=no_route "
                         "ttl=upstream")
        # Not at the default level.
        quiet = self.start()
        quiet.get("/users/7")
        self.assertNotIn("decision ", quiet.output())

    def test_own_endpoints_move_and_free_the_upstream_paths(self):
        gw = self.start({"HEALTH_PATH": "/_gw/health", "HEALTH_CACHE_PATH": "/_gw/cache",
                         "METRICS_PATH": ""}, health="/_gw/health")
        self.assertEqual(gw.get("/_gw/health").json(), {"status": "ok"})
        self.assertIn("hit_rate_percent", gw.get("/_gw/cache").json()["stats"])
        # The old paths now reach the upstream (the example API has no /health: 404 from it).
        r = gw.get("/health")
        self.assertIsNotNone(r.header("x-cache"))
        self.assertNotEqual(r.body, b'{"status":"ok"}\n')
        self.assertIsNotNone(gw.get("/metrics").header("x-cache"))

    def test_endpoint_paths_that_could_never_answer_are_refused(self):
        # Each is a path a request can match, or empty; two alike would hide one.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ADMIN_"))}
        env.update(POLICIES_DIR=os.path.join(SOURCE_DIR, "policies"),
                   LUA_DIR=os.path.join(SOURCE_DIR, "lua"))
        cases = [(["--metrics-path", "metrics"], "--metrics-path (METRICS_PATH): 'metrics'"),
                 (["--health-path", "/x?y"], "--health-path (HEALTH_PATH): '/x?y'"),
                 (["--health-cache-path", "/a b"], "--health-cache-path (HEALTH_CACHE_PATH)"),
                 (["--health-cache-path", "/" + "a" * 300], "at most 255 bytes"),
                 (["--metrics-path", "/health"], "'/health' (--health-path serves that path)"),
                 (["--metrics-path", "/_gw", "--health-cache-path", "/_gw"],
                  "--metrics-path (METRICS_PATH): '/_gw' (--health-cache-path serves")]
        for args, want in cases:
            for check in (["--check"], ["--host", "127.0.0.1", "--port", str(free_port())]):
                with self.subTest(args=args, check=check):
                    p = subprocess.run([CACHEGW_BIN] + check + args, env=env,
                                       capture_output=True, text=True, timeout=20,
                                       cwd=tempfile.gettempdir())
                    self.assertEqual(p.returncode, 2, p.stderr)
                    self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
                    self.assertIn("invalid value for --", p.stderr)
                    self.assertIn(want, p.stderr)
        for args in (["--metrics-path", ""], ["--health-path", "", "--health-cache-path", "",
                                              "--metrics-path", ""],
                     ["--metrics-path", "/_gw/metrics", "--health-path", "/_gw/health"]):
            p = subprocess.run([CACHEGW_BIN, "--check"] + args, env=env, capture_output=True,
                               text=True, timeout=20, cwd=tempfile.gettempdir())
            self.assertEqual(p.returncode, 0, (args, p.stderr))

    def test_degraded_status_is_configurable(self):
        dead = free_port()
        gw = self.start({"REDIS_URL": f"redis://127.0.0.1:{dead}",
                         "HEALTH_DEGRADED_STATUS": "503"})
        r = gw.get("/health/cache")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.json()["status"], "degraded")
        self.assertEqual(gw.get("/users/1").status, 200)  # still serving
        gw2 = self.track(Gateway(self.api.url, env={"REDIS_URL": f"redis://127.0.0.1:{dead}"}))
        self.assertEqual(gw2.get("/health/cache").status, 200)  # the default


if __name__ == "__main__":
    unittest.main()
