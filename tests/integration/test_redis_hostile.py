"""A hostile or broken Redis must never take the gateway down (issue 8, items 12, 18, 20, 24).

The real cachegw binary runs against tests/fakeredis/fake_redis.py (a scripted
RESP server that answers in hostile ways on demand) or, where Redis's own
behaviour matters (FLUSHALL, OOM, pub/sub, purges), against a real
redis-server.  Each test shows one attack failing: requests keep being
answered from memory or the upstream within a bounded time, memory stays
bounded, invalidations keep working, and the right log line appears once.
"""

import json
import os
import sys
import time

from harness import ExampleAPI, Gateway, GatewayTestCase, SOURCE_DIR, free_port, request, wait_until
from redis_servers import RedisServer

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "fakeredis"))
from fake_redis import FakeRedis  # noqa: E402


def rss_mib(proc):
    with open(f"/proc/{proc.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def metric(gw, name):
    text = gw.get("/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class FakeRedisTest(GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.api = self.track(ExampleAPI(latency_ms=0))

    def fake(self, scenario="normal", **kw):
        f = FakeRedis(scenario, **kw)
        self.addCleanup(f.stop)
        return f

    def gateway(self, url, **env):
        base = {"REDIS_URL": url, "REDIS_POOL_SIZE": "2", "REDIS_TIMEOUT_MS": "1000"}
        base.update({k: str(v) for k, v in env.items()})
        gw = self.track(Gateway(self.api.url, env=base))
        wait_until(lambda: gw.health_cache()["backend"] == "redis", timeout=10, what="redis")
        return gw

    # Item 18: bounded replies.
    def test_endless_array_and_huge_bulk_replies_are_protocol_errors(self):
        for scenario, why in (("endless_array", "an array of 2147483647 elements"),
                              ("huge_bulk", "a bulk string of more than")):
            with self.subTest(scenario=scenario):
                fake = self.fake(scenario)
                gw = self.gateway(fake.url)
                rss0 = rss_mib(gw)
                t0 = time.monotonic()
                for i in range(6):
                    r = gw.get(f"/users/{10 + i}", timeout=5)
                    self.assertEqual(r.status, 200)
                    self.assertLess(r.elapsed, 2.5, "answered within the op timeout")
                    self.assertEqual(gw.get("/health").status, 200)
                took = time.monotonic() - t0
                growth = rss_mib(gw) - rss0
                print(f"{scenario}: 6 cold requests in {took:.2f} s, RSS +{growth:.1f} MiB, "
                      f"{fake.counts['GET']} GETs hit the hostile server")
                self.assertGreater(fake.counts["GET"], 0, "the hostile reply was really sent")
                self.assertLess(growth, 100)
                log = gw.output()
                self.assertIn(why, log)
                self.assertEqual(log.count("Redis protocol error: "), 1, "warned once")
                wait_until(lambda: metric(gw, 'cachegw_redis_errors_total{kind="protocol"}') >= 1,
                           timeout=5, what="the protocol error counter")
                gw.stop()
                fake.stop()

    # Item 18: a partial reply, then silence: the op timeout still bounds the request.
    def test_partial_reply_then_stall_costs_at_most_the_timeouts(self):
        fake = self.fake("partial_stall")
        gw = self.gateway(fake.url, REDIS_TIMEOUT_MS=300, REDIS_RETRIES=1)
        for i in range(3):
            r = gw.get(f"/users/{20 + i}", timeout=5)
            self.assertEqual(r.status, 200)
            self.assertLess(r.elapsed, 2 * 0.3 + 0.4)
        self.assertGreater(fake.counts["GET"], 0)
        self.assertIn("Redis timeout: timeout (no reply within 300 ms, 127.0.0.1:", gw.output())

    # Item 24: a refused SUBSCRIBE backs off and is logged once.
    def test_refused_subscribe_backs_off(self):
        fake = self.fake("subscribe_refused")
        gw = self.gateway(fake.url)
        time.sleep(3.0)
        attempts = fake.subscribe_attempts
        lines = gw.output().count("SUBSCRIBE refused")
        print(f"refused SUBSCRIBE: {attempts} attempts and {lines} log lines in ~3 s")
        self.assertLessEqual(attempts, 8)  # 100, 200, 400, ... ms (was ~13 a second)
        self.assertEqual(lines, 1)
        self.assertEqual(gw.get("/users/1").status, 200)
        fake.scenario = "normal"  # the ACL is fixed: it subscribes within the capped backoff
        wait_until(lambda: fake.subscribers() == 1, timeout=10, what="the subscription")
        self.assertIn("subscribed to the invalidation channel", gw.output())

    # Item 24: a password rotation says WRONGPASS, not only "connection closed".
    def test_password_rotation_is_reported_as_wrongpass(self):
        fake = self.fake(password="old-pass")
        gw = self.gateway(f"redis://:old-pass@127.0.0.1:{fake.port}")
        fake.password = "new-pass"
        fake.kill_clients()
        wait_until(lambda: "WRONGPASS" in gw.output(), timeout=10, what="the WRONGPASS warning")
        log = gw.output()
        self.assertIn("WARN  Redis connection failed: authentication failed (WRONGPASS", log)
        self.assertNotIn("old-pass", log)
        self.assertEqual(gw.get("/users/2").status, 200)

    # Item 24: PING answered, GET stalled: the breaker opens, then probes its way back.
    def test_breaker_opens_on_stalled_commands_and_closes_when_they_are_answered(self):
        fake = self.fake()
        gw = self.gateway(fake.url, REDIS_TIMEOUT_MS=200, REDIS_RETRIES=1, REDIS_POOL_SIZE=4)
        fake.scenario = "stall"
        times = []
        for i in range(12):
            r = gw.get(f"/users?page={100 + i}", timeout=5)
            self.assertEqual(r.status, 200)
            times.append(r.elapsed)
        print("cold request times with GET stalled: " + ", ".join(f"{t * 1000:.0f}" for t in times))
        self.assertGreater(times[0], 0.18, "the first ones pay the timeout")
        self.assertLess(max(times[-5:]), 0.15, "then the breaker answers from memory/upstream")
        self.assertEqual(gw.output().count("Redis circuit breaker open"), 1)
        h = gw.health_cache()
        self.assertEqual(h["status"], "degraded")
        self.assertIn(h["redis"]["breaker"], ("open", "half-open"))
        self.assertGreaterEqual(h["redis"]["errors"]["timeout"], 5)
        self.assertEqual(metric(gw, "cachegw_redis_breaker_opens_total"), 1)
        fake.scenario = "normal"

        def closed():
            gw.get(f"/users?page={int(time.monotonic() * 1000) % 5000 + 200}", timeout=5)
            return "Redis circuit breaker closed" in gw.output()
        wait_until(closed, timeout=15, interval=0.2, what="the breaker to close")
        wait_until(lambda: gw.health_cache()["status"] == "healthy", timeout=5, what="healthy")
        self.assertEqual(gw.output().count("Redis circuit breaker closed"), 1)
        self.assertEqual(gw.output().count("Redis circuit breaker open"), 1)


class RealRedisTest(GatewayTestCase):
    """Items 12 and 20 against a real redis-server and two instances A and B."""

    def setUp(self):
        super().setUp()
        self.redis = RedisServer("plain")
        self.addCleanup(self.redis.stop)
        self.api = self.track(ExampleAPI(latency_ms=0))

    def pair(self, admin=False):
        env = {"REDIS_URL": self.redis.url(), "REDIS_TIMEOUT_MS": "500"}
        env_a = dict(env)
        if admin:
            self.admin_port = free_port()
            env_a.update({"ADMIN_TOKEN": "t0ken", "ADMIN_PORT": str(self.admin_port)})
        a = self.track(Gateway(self.api.url, env=env_a))
        b = self.track(Gateway(self.api.url, env=env))
        for gw in (a, b):
            wait_until(lambda: gw.health_cache()["backend"] == "redis", timeout=10, what="redis")
        wait_until(lambda: self.redis.cmd("PUBSUB", "NUMSUB", "cachegw:invalidate")[1] >= 2,
                   timeout=5, what="both subscribed")
        return a, b

    def warm(self, b):
        wait_until(lambda: b.get("/users").header("x-cache") == "HIT", timeout=5,
                   what="B to hold /users")

    def invalidate_and_expect_b_to_drop(self, a, b, name, timeout=5):
        r = a.req("PUT", "/users/3", headers={"Content-Type": "application/json"},
                  body=json.dumps({"name": name}).encode())
        self.assertEqual(r.status, 200)
        wait_until(lambda: name in b.get("/users").body.decode(), timeout=timeout,
                   what=f"B to drop /users after the invalidation ({name})")

    # Item 20: FLUSHALL restarts the sequence; other instances still honour it.
    def test_invalidations_keep_working_after_flushall(self):
        a, b = self.pair()
        self.warm(b)
        self.invalidate_and_expect_b_to_drop(a, b, "Before")
        self.redis.cmd("FLUSHALL")
        self.warm(b)
        self.invalidate_and_expect_b_to_drop(a, b, "AfterFlush")
        self.assertEqual(b.output().count("invalidation bookkeeping was reset"), 1)
        self.warm(b)
        self.invalidate_and_expect_b_to_drop(a, b, "AfterFlushAgain")

    # Item 20: a restart without persistence, the same way.
    def test_invalidations_keep_working_after_a_restart_without_persistence(self):
        a, b = self.pair()
        self.warm(b)
        self.invalidate_and_expect_b_to_drop(a, b, "BeforeRestart")
        self.redis.kill()  # no persistence: it comes back empty
        self.redis.restart()
        for gw in (a, b):
            wait_until(lambda: gw.health_cache()["backend"] == "redis", timeout=10, what="redis")
        wait_until(lambda: self.redis.cmd("PUBSUB", "NUMSUB", "cachegw:invalidate")[1] >= 2,
                   timeout=10, what="both subscribed again")
        self.warm(b)
        self.invalidate_and_expect_b_to_drop(a, b, "AfterRestart")

    # Item 20: an invalidation Redis refuses (OOM under noeviction) is kept and replayed.
    def test_refused_invalidation_is_replayed(self):
        a, b = self.pair()
        self.warm(b)
        self.redis.cmd("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.redis.cmd("CONFIG", "SET", "maxmemory", "1")
        try:
            r = a.req("PUT", "/users/3", headers={"Content-Type": "application/json"},
                      body=b'{"name": "Refused"}')
            self.assertEqual(r.status, 200)
            self.assertIn("Refused", a.get("/users").body.decode())  # applied here at once
            time.sleep(0.3)
            self.assertEqual(b.get("/users").header("x-cache"), "HIT")  # B never heard of it
        finally:
            self.redis.cmd("CONFIG", "SET", "maxmemory", "0")
        wait_until(lambda: "Refused" in b.get("/users").body.decode(), timeout=10,
                   what="B to drop its copy after the replay")
        self.assertEqual(a.output().count("refused by Redis (OOM"), 1, "logged once")

    # Item 20: a key invalidation whose DEL Redis refuses (NOPERM) is kept and replayed too.
    def test_refused_key_invalidation_is_replayed(self):
        a, b = self.pair()
        a.get("/users/7")
        wait_until(lambda: b.get("/users/7").header("x-cache") == "HIT", timeout=5,
                   what="B to hold /users/7")
        self.redis.cmd("ACL", "SETUSER", "default", "-del")
        try:
            r = a.req("PUT", "/users/7", headers={"Content-Type": "application/json"},
                      body=b'{"name": "KeyRefused"}')
            self.assertEqual(r.status, 200)
            # A never reads back the entry Redis kept.
            self.assertIn("KeyRefused", a.get("/users/7").body.decode())
            time.sleep(0.3)
            self.assertEqual(b.get("/users/7").header("x-cache"), "HIT")
        finally:
            self.redis.cmd("ACL", "SETUSER", "default", "+del")
        wait_until(lambda: "KeyRefused" in b.get("/users/7").body.decode(), timeout=10,
                   what="B to see the new value after the replay")
        self.assertIn("invalidation of a key refused by Redis", a.output())

    # Item 20: hostile records on the channel and in Redis are refused, never applied.
    def test_hostile_sequences_are_refused(self):
        a, b = self.pair()
        self.warm(b)
        for payload in ("0000000000000000:P-1:users_list:",
                        "0000000000000000:Pabc:-1:users_list:",
                        "0000000000000000:Pabc:18446744073709551615:users_list:",
                        "0000000000000000:Tabc:99999999999999999:grp"):
            self.assertEqual(self.redis.cmd("PUBLISH", "cachegw:invalidate", payload), 2)
        time.sleep(0.3)
        self.assertEqual(b.get("/users").header("x-cache"), "HIT")  # not applied
        # New entries are still invalidated (-1 as 2^64-1 made them immune).
        self.invalidate_and_expect_b_to_drop(a, b, "StillWorks")
        self.warm(b)
        self.invalidate_and_expect_b_to_drop(a, b, "StillWorks2")
        self.assertIn("refusing an invalid invalidation message", b.output())
        self.assertEqual(b.output().count("refusing an invalid"), 1, "warned once")
        # A floor of -1 read back at start-up would stop caching altogether.
        self.redis.cmd("SET", "cachegw:{inv}:floor", "-1")
        c = self.track(Gateway(self.api.url, env={"REDIS_URL": self.redis.url()}))
        wait_until(lambda: "refusing an invalid invalidation floor" in c.output(), timeout=5,
                   what="C to refuse the floor")
        c.get("/users/5")
        self.assertEqual(c.get("/users/5").header("x-cache"), "HIT")

    # Item 12: purges cannot reach the bookkeeping.
    def test_purges_do_not_delete_the_bookkeeping(self):
        a, b = self.pair(admin=True)
        self.warm(b)
        self.invalidate_and_expect_b_to_drop(a, b, "First")
        # More sequences, so that a sequence restarting at 1 would stay below B's.
        for i in range(12):
            a.req("PUT", "/users/4", headers={"Content-Type": "application/json"},
                  body=json.dumps({"name": f"n{i}"}).encode())
        hdr = {"Authorization": "Bearer t0ken", "Content-Type": "application/json"}
        for kind, value in (("prefix", "i"), ("prefix", "in"), ("prefix", "inv"),
                            ("prefix", "{inv}"), ("key", "inv:seq"), ("key", "{inv}:seq")):
            r = request(self.admin_port, "POST", f"/purge/{kind}", headers=hdr,
                        body=json.dumps({kind: value}).encode())
            self.assertEqual(r.status, 200, r.body)
        time.sleep(0.5)  # prefix purges reclaim in the background
        self.warm(b)
        self.invalidate_and_expect_b_to_drop(a, b, "AfterPurges")
        self.assertEqual(self.redis.cmd("EXISTS", "cachegw:{inv}:seq", "cachegw:{inv}:p"), 2)


if __name__ == "__main__":
    import unittest
    unittest.main()
