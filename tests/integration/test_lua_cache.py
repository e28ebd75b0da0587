"""The `cache` Lua module against the real binary: policies that compute keys and decisions
with cache.cached / cache.get / cache.set, memory only and with a real redis-server shared by
two instances (a value set by one instance's policy is read by the other's through the
suspend-and-resume path: the worker never waits on Redis).
"""

import os
import shutil
import tempfile
import unittest

from harness import ExampleAPI, Gateway, GatewayTestCase, SOURCE_DIR, wait_until
from redis_servers import RedisServer

LUA_DIR = os.path.join(SOURCE_DIR, "lua")

POLICY = r"""
-- The id part of the key goes through a memoizing wrapper (computed once per id).
local norm = cache.cached("norm", 60, function(id)
    return "u" .. tonumber(id)
end)

route "GET /users/:id" { key = function(req) return "users:" .. norm(req.params.id) end,
                         ttl = 300 }

-- A tiny remote control: /posts?set=NAME&val=V stores a value, ?inv=P invalidates a prefix.
route "GET /posts" {
    key = function(req)
        local q = req.query
        if q.set and q.val then assert(cache.set(q.set, q.val, 60)) end
        if q.inv then cache.invalidate_prefix(q.inv) end
        return "posts:" .. (q.set or "") .. ":" .. (q.val or "") .. ":" .. (q.inv or "")
    end,
    ttl = 60,
}

-- Decisions that depend on values: a single read and a multi-key read.
route "GET /jobs" { bypass = function(req) return cache.get("flag") == "bypass" end, ttl = 300 }
route "GET /categories" {
    bypass = function(req)
        local t = cache.mget({ "m1", "m2", "m3" })
        return t.m1 == "1" and t.m2 == "2" and t.m3 == nil
    end,
    ttl = 300,
}
"""


class LuaCacheTest(GatewayTestCase):
    def policies(self):
        d = tempfile.mkdtemp(prefix="cachegw-cache-policies-")
        with open(os.path.join(d, "cache.lua"), "w") as f:
            f.write(POLICY)
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def gateway(self, api, policies, env=None):
        e = {"POLICIES_DIR": policies, "LUA_DIR": LUA_DIR, "DEFAULT_TTL": "0"}
        e.update(env or {})
        return self.track(Gateway(api.url, env=e))

    def test_memory_only_policy_uses_the_cache_module(self):
        api = self.track(ExampleAPI(latency_ms=0))
        gw = self.gateway(api, self.policies())
        r1 = gw.get("/users/3")
        self.assertEqual(r1.status, 200, r1)
        self.assertEqual(r1.header("x-cache"), "MISS")
        r2 = gw.get("/users/3")
        self.assertEqual(r2.header("x-cache"), "HIT", r2)
        self.assertEqual(r1.body, r2.body)

        self.assertEqual(gw.get("/jobs").header("x-cache"), "MISS")
        self.assertEqual(gw.get("/posts?set=flag&val=bypass").status, 200)
        self.assertEqual(gw.get("/jobs").header("x-cache"), "BYPASS")
        gw.get("/posts?inv=fl")
        self.assertEqual(gw.get("/jobs").header("x-cache"), "HIT")
        self.assertEqual(gw.health_cache()["stats"]["redis_available"], False)
        # No policy errors along the way.
        self.assertNotIn("policy error", gw.output())


class LuaCacheRedisTest(GatewayTestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer("plain")

    @classmethod
    def tearDownClass(cls):
        cls.redis.stop()

    def setUp(self):
        super().setUp()
        self.redis.cmd("FLUSHALL")
        d = tempfile.mkdtemp(prefix="cachegw-cache-policies-")
        with open(os.path.join(d, "cache.lua"), "w") as f:
            f.write(POLICY)
        self.addCleanup(shutil.rmtree, d, True)
        self.api = self.track(ExampleAPI(latency_ms=0))
        env = {"POLICIES_DIR": d, "LUA_DIR": LUA_DIR, "DEFAULT_TTL": "0",
               "REDIS_URL": f"redis://127.0.0.1:{self.redis.port}"}
        self.a = self.track(Gateway(self.api.url, env=env))
        self.b = self.track(Gateway(self.api.url, env=env))
        for gw in (self.a, self.b):
            wait_until(lambda gw=gw: gw.health_cache()["stats"]["redis_available"],
                       what="redis available")

    def test_value_set_by_one_instance_is_read_by_the_other_through_redis(self):
        # Before: B's policy reads the key from Redis (a miss) and does not bypass.
        self.assertEqual(self.b.get("/jobs").header("x-cache"), "MISS")
        self.assertEqual(self.a.get("/posts?set=flag&val=bypass").status, 200)
        wait_until(lambda: self.redis.cmd("EXISTS", "cachegw:c:kv:flag") == 1,
                   what="the value in Redis")
        # B never set it: its memory tier misses, the decision waits for Redis, and the
        # value it finds there makes the route bypass.
        r = self.b.get("/jobs")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("x-cache"), "BYPASS", r)
        # Now in B's memory tier too: still bypassing with Redis gone quiet.
        self.redis.cmd("DEL", "cachegw:c:kv:flag")
        self.assertEqual(self.b.get("/jobs").header("x-cache"), "BYPASS")

    def test_mget_reads_every_miss_from_redis(self):
        self.assertEqual(self.b.get("/categories").header("x-cache"), "MISS")
        self.a.get("/posts?set=m1&val=1")
        self.a.get("/posts?set=m2&val=2")
        wait_until(lambda: self.redis.cmd("EXISTS", "cachegw:c:kv:m1", "cachegw:c:kv:m2") == 2,
                   what="the values in Redis")
        r = self.b.get("/categories")
        self.assertEqual(r.header("x-cache"), "BYPASS", r)

    def test_prefix_invalidation_reaches_the_other_instance(self):
        self.a.get("/posts?set=flag&val=bypass")
        wait_until(lambda: self.redis.cmd("EXISTS", "cachegw:c:kv:flag") == 1,
                   what="the value in Redis")
        self.assertEqual(self.b.get("/jobs").header("x-cache"), "BYPASS")
        self.a.get("/posts?inv=fla")
        wait_until(lambda: self.b.get("/jobs").header("x-cache") != "BYPASS",
                   what="B to drop the invalidated value")

    def test_module_values_never_collide_with_responses(self):
        # A module key that looks like a response key lives under kv: in Redis.
        self.a.get("/posts?set=users:u3&val=not-a-response")
        wait_until(lambda: self.redis.cmd("EXISTS", "cachegw:c:kv:users:u3") == 1,
                   what="the value in Redis")
        r = self.b.get("/users/3")
        self.assertEqual(r.status, 200)
        self.assertNotIn(b"not-a-response", r.body)


if __name__ == "__main__":
    unittest.main()
