"""Seeing why a request missed (issue 11): the cache key in Cache-Status for a request that
presents the admin token (or with DEBUG_HEADERS), the decision in the debug log, and the
gateway's own endpoints at configurable paths with a configurable degraded status."""
import os
import unittest

from harness import ExampleAPI, Gateway, GatewayTestCase, free_port, wait_until

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
        # The token never reaches the upstream, and does not change the key.
        echo = gw.get("/headers", headers={"Cachegw-Debug": TOKEN}).json()
        self.assertNotIn("cachegw-debug", {k.lower() for k in echo.get("headers", echo)})

    def test_debug_headers_on_puts_the_key_everywhere(self):
        gw = self.start({"DEBUG_HEADERS": "true"})
        r = gw.get("/posts?b=2&a=1")
        self.assertIn("key=", r.header("cache-status"))
        # Refusals carry it too when a key was made; a bypass without a key does not.
        self.assertNotIn("key=", gw.req("POST", "/posts", body=b"{}").header("cache-status"))

    def test_decisions_are_logged_at_debug(self):
        gw = self.start({"LOG_LEVEL": "debug"})
        gw.get("/users/7")
        gw.req("POST", "/posts", body=b"{}")
        wait_until(lambda: "decision GET /users/7" in gw.output(), what="decision log line")
        line = [l for l in gw.output().splitlines() if "decision GET /users/7" in l][0]
        self.assertIn("route=GET /users/:id", line)
        self.assertIn("key=users:7", line)
        self.assertIn("cacheable", line)
        self.assertIn("decision POST /posts", gw.output())

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
