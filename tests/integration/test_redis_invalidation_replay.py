"""Invalidations made while Redis cannot take them are replayed when it can.

Instance A and B share a real redis-server.  Redis is paused (SIGSTOP), so A's
invalidation script times out; B, whose subscription never broke, keeps its
memory copy meanwhile (the documented bound).  Once Redis answers again, A
replays what it kept, and B drops the entry without anyone restarting anything.
"""

import time

from harness import ExampleAPI, Gateway, GatewayTestCase, wait_until
from redis_servers import RedisServer


class InvalidationReplayTest(GatewayTestCase):
    def test_prefix_invalidation_made_during_a_stall_reaches_the_other_instance(self):
        redis = RedisServer("plain")
        self.addCleanup(redis.stop)
        api = self.track(ExampleAPI(latency_ms=0))
        env = {"REDIS_URL": redis.url(), "REDIS_TIMEOUT_MS": "300"}
        a = self.track(Gateway(api.url, env=env))
        b = self.track(Gateway(api.url, env=env))
        for gw in (a, b):
            wait_until(lambda: gw.health_cache()["backend"] == "redis", what="redis")
        # GET /users is the users_list:{query} route; PUT /users/:id invalidates users_list:*.
        self.assertEqual(a.get("/users").header("x-cache"), "MISS")
        self.assertEqual(b.get("/users").header("x-cache"), "HIT")
        self.assertEqual(b.get("/users").header("x-cache"), "HIT")

        redis.pause()
        try:
            # A cold read times out on the stalled Redis: A marks it unavailable,
            # so its invalidation below cannot even be sent.
            self.assertEqual(a.get("/users/77", timeout=10).status, 200)
            wait_until(lambda: a.health_cache()["backend"] == "memory", timeout=10,
                       what="A to fall back to memory")
            r = a.req("PUT", "/users/3", headers={"Content-Type": "application/json"},
                      body=b'{"name": "Paused"}')
            self.assertEqual(r.status, 200)
            self.assertIn("Paused", a.get("/users").body.decode())  # A misses at once
            time.sleep(0.3)
            # B never heard of it yet: its copy is the documented staleness bound.
            self.assertEqual(b.get("/users").header("x-cache"), "HIT")
            self.assertIn("in Redis when it is back", a.output())
        finally:
            redis.resume()
        # No restart, no re-subscription on B: only the replay can reach it.
        wait_until(lambda: b.get("/users").header("x-cache") == "MISS", timeout=10,
                   what="B to drop its copy after the replay")
        self.assertIn("replaying", a.output())
        self.assertIn("Paused", b.get("/users").body.decode())
