"""Integration tests of the Redis tier against real redis-server instances.

Every class starts its own private servers (tests/integration/redis_servers.py:
free loopback ports, certificates generated with openssl at test time), so a
test may kill, pause or restart its Redis without touching any other test.
The example API's request counter (GET /__stats) proves where an answer came
from.  Measured numbers (switch-over, recovery, coherence delay) are printed
as "MEASURED ..." lines.
"""

import json
import os
import random
import re
import subprocess
import threading
import time
import unittest
import http.client

from harness import (CACHEGW_BIN, ExampleAPI, Gateway, GatewayTestCase, free_port, request,
                     run_concurrently, wait_until)
from redis_servers import ACL_PASS, ACL_USER, PASSWORD, Certs, RedisServer

PREFIX = "cachegw:"
ENTRY = PREFIX + "c:"  # cache entries live under <prefix>c: (store_redis.h)
USERS_TTL_S = 300  # policies/users.lua
PROFILE_TTL_S = 180


def measured(name, value_ms):
    print(f"\nMEASURED {name}: {value_ms:.1f} ms", flush=True)


def x_cache(r):
    return r.header("x-cache")


def from_redis(r):
    return x_cache(r) == "HIT" and "detail=redis" in (r.header("cache-status") or "")


def log_lines(gw):
    return gw.output().splitlines()


def first_index(lines, needle, start=0):
    for i in range(start, len(lines)):
        if needle in lines[i]:
            return i
    return -1


SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "ThreadSanitizer")


class RedisTestCase(GatewayTestCase):
    """Helpers shared by the classes below.  Every gateway a test started must
    exit 0 on SIGTERM without a sanitizer report (ASan/UBSan builds)."""

    api = None

    def tearDown(self):
        problems = []
        for p in self._procs:
            if isinstance(p, Gateway):
                rc = p.stop()
                out = p.output()
                if rc != 0 or any(m in out for m in SANITIZER_MARKS):
                    problems.append(f"cachegw exited {rc}:\n{out[-6000:]}")
        super().tearDown()
        if problems:
            self.fail("\n".join(problems))

    def gateway(self, redis_url, env=None, args=None, **kw):
        e = {"REDIS_URL": redis_url}
        e.update(env or {})
        return self.track(Gateway(self.api.url, env=e, args=args, **kw))

    def wait_backend(self, gw, backend, timeout=10.0):
        wait_until(lambda: gw.health_cache()["backend"] == backend, timeout=timeout,
                   interval=0.01, what=f"/health/cache backend={backend}")

    def wait_log(self, gw, needle, timeout=10.0):
        wait_until(lambda: needle in gw.output(), timeout=timeout, what=f"log line {needle!r}")

    def upstream_delta(self, fn):
        before = self.api.requests()
        result = fn()
        return self.api.requests() - before, result


# --------------------------------------------------------------------------
# The tier itself: sharing between instances, TTLs, corrupt values, coherence.
# --------------------------------------------------------------------------

class RedisTierTest(RedisTestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer("plain")
        cls.api = ExampleAPI()

    @classmethod
    def tearDownClass(cls):
        cls.api.stop()
        cls.redis.cleanup()

    def setUp(self):
        super().setUp()
        self.redis.cmd("FLUSHALL")

    def wait_key(self, key, timeout=5.0):
        wait_until(lambda: self.redis.cmd("EXISTS", key) == 1, timeout=timeout,
                   what=f"{key} in Redis")

    def test_request_cache_control_applies_to_redis_hits_too(self):
        url = self.redis.url()
        a = self.gateway(url)
        b = self.gateway(url)
        self.wait_backend(a, "redis")
        self.wait_backend(b, "redis")
        a.get("/users/6")
        self.wait_key(ENTRY + "users:6")
        # B has the entry only in Redis; the client refuses an unvalidated copy.
        n, r = self.upstream_delta(lambda: b.get("/users/6", headers={"Cache-Control": "no-cache"}))
        self.assertEqual(r.status, 200)
        self.assertEqual(n, 1)
        self.assertNotIn("detail=redis", r.header("cache-status"))

    def test_hit_served_from_redis_by_second_instance_and_after_restart(self):
        url = self.redis.url()
        a = self.gateway(url)
        self.wait_backend(a, "redis")
        n, first = self.upstream_delta(lambda: a.get("/users/5"))
        self.assertEqual(first.status, 200)
        self.assertEqual(x_cache(first), "MISS")
        self.assertEqual(n, 1)
        self.wait_key(ENTRY + "users:5")
        raw = self.redis.cmd("GET", ENTRY + "users:5")
        self.assertTrue(raw.startswith(b"CGWO"), raw[:16])

        # A second instance (its memory tier empty) answers from Redis.
        b = self.gateway(url)
        self.wait_backend(b, "redis")
        n, r = self.upstream_delta(lambda: b.get("/users/5"))
        self.assertEqual(n, 0, "the second instance went upstream")
        self.assertTrue(from_redis(r), r)
        self.assertEqual(r.body, first.body)
        self.assertEqual(r.header("content-type"), first.header("content-type"))
        self.assertEqual(r.header("etag"), first.header("etag"))
        # ... and then from its own memory tier.
        r2 = b.get("/users/5")
        self.assertEqual(x_cache(r2), "HIT")
        self.assertNotIn("detail=redis", r2.header("cache-status"))

        # The first instance restarts: memory empty, Redis still has it.
        a.stop()
        a2 = self.gateway(url)
        self.wait_backend(a2, "redis")
        self.assertEqual(a2.health_cache()["stats"]["memory_cache_size"], 0)
        n, r = self.upstream_delta(lambda: a2.get("/users/5"))
        self.assertEqual(n, 0, "the restarted instance went upstream")
        self.assertTrue(from_redis(r), r)
        self.assertEqual(r.body, first.body)
        self.assertGreaterEqual(int(r.header("age", "0")), 0)
        self.assertEqual(a2.health_cache()["stats"]["memory_cache_size"], 1)

    def test_redis_only_when_memory_tier_disabled(self):
        gw = self.gateway(self.redis.url(), env={"CACHE_MAX_BYTES": "0"})
        self.wait_backend(gw, "redis")
        n, r = self.upstream_delta(lambda: gw.get("/users/9"))
        self.assertEqual((n, x_cache(r)), (1, "MISS"))
        self.wait_key(ENTRY + "users:9")
        n, results = self.upstream_delta(lambda: [gw.get("/users/9") for _ in range(5)])
        self.assertEqual(n, 0)
        for x in results:
            self.assertTrue(from_redis(x), x)
            self.assertEqual(x.body, r.body)
        self.assertEqual(gw.health_cache()["stats"]["memory_cache_size"], 0)

    def test_ttl_honoured_in_redis(self):
        gw = self.gateway(self.redis.url(), env={"DEFAULT_TTL": "2"})
        self.wait_backend(gw, "redis")
        r = gw.get("/users/3")
        self.assertIn(f"ttl={USERS_TTL_S}", r.header("cache-status"))
        gw.get("/users/3/profile")
        gw.get("/noinfo")  # no Cache-Control, no validators: DEFAULT_TTL (2 s)
        self.wait_key(ENTRY + "users:3")
        self.wait_key(ENTRY + "user_profile:3")
        # The Redis write is in the background: wait for it (a 2 s ttl leaves time).
        noinfo = []
        deadline = time.monotonic() + 1.5
        while not noinfo and time.monotonic() < deadline:
            keys = sorted(k.decode() for k in self.redis.cmd("KEYS", "*"))
            noinfo = [k for k in keys if "noinfo" in k]
            if not noinfo:
                time.sleep(0.02)
        self.assertEqual(len(noinfo), 1, keys)

        # Entries with validators (the example API sends ETag and Last-Modified)
        # are kept past their ttl for revalidation, as long again as the ttl
        # (cache_object.h: between 1 minute and 1 day); nothing else extends them.
        for key, ttl in (("users:3", USERS_TTL_S), ("user_profile:3", PROFILE_TTL_S)):
            pttl = self.redis.cmd("PTTL", ENTRY + key)
            expected = 2 * ttl * 1000
            self.assertLessEqual(pttl, expected, key)
            self.assertGreater(pttl, expected - 5000, key)

        # Without validators the key lives exactly the ttl ...
        pttl = self.redis.cmd("PTTL", noinfo[0])
        self.assertGreater(pttl, 0)
        self.assertLessEqual(pttl, 2000)
        # ... and Redis drops it then: a gateway that sees only Redis misses.
        redis_only = self.gateway(self.redis.url(),
                                  env={"CACHE_MAX_BYTES": "0", "DEFAULT_TTL": "2"})
        self.wait_backend(redis_only, "redis")
        self.assertTrue(from_redis(redis_only.get("/noinfo")))
        wait_until(lambda: self.redis.cmd("EXISTS", noinfo[0]) == 0, timeout=4,
                   what="the noinfo key to expire in Redis")
        n, r = self.upstream_delta(lambda: redis_only.get("/noinfo"))
        self.assertEqual((n, x_cache(r)), (1, "MISS"))

        # The freshness lifetime travels with the value: an instance reading
        # it from Redis reports the remaining ttl, not a fresh 300 s.
        time.sleep(1.1)
        r = redis_only.get("/users/3")
        self.assertTrue(from_redis(r), r)
        ttl_left = int(re.search(r"ttl=(-?\d+)", r.header("cache-status")).group(1))
        self.assertLess(ttl_left, USERS_TTL_S)
        self.assertGreater(ttl_left, USERS_TTL_S - 30)
        self.assertGreaterEqual(int(r.header("age")), 1)

    def test_prefix_and_database_number(self):
        gw = self.gateway(self.redis.url(db=3), env={"REDIS_PREFIX": "tenant-b/"})
        self.wait_backend(gw, "redis")
        gw.get("/users/4")
        with self.redis.client() as c:
            c.command("SELECT", "3")
            wait_until(lambda: c.command("EXISTS", "tenant-b/c:users:4") == 1, timeout=5,
                       what="tenant-b/c:users:4 in db 3")
        self.assertEqual(self.redis.cmd("DBSIZE"), 0, "written to db 0")

    def test_corrupt_values_are_misses_never_served(self):
        gw = self.gateway(self.redis.url(), env={"CACHE_MAX_BYTES": "0"})
        self.wait_backend(gw, "redis")
        good7 = gw.get("/users/7")
        self.wait_key(ENTRY + "users:7")
        gw.get("/users/8")
        self.wait_key(ENTRY + "users:8")
        valid7 = self.redis.cmd("GET", ENTRY + "users:7")
        valid8 = self.redis.cmd("GET", ENTRY + "users:8")

        cases = [
            ("garbage", b"this is not a cache object \x00\xff" * 3),
            ("empty", b""),
            ("magic only", b"CGWO"),
            ("truncated", valid7[: len(valid7) // 2]),
            ("one byte short", valid7[:-1]),
            ("flipped length byte", valid7[:6] + bytes([valid7[6] ^ 0xFF]) + valid7[7:]),
            ("trailing bytes", valid7 + b"xyz"),
            # A well-formed value stored under the wrong key (user 8 under
            # users:7) must not be served for /users/7.
            ("another key's value", valid8),
        ]
        for what, value in cases:
            with self.subTest(what):
                self.redis.cmd("SET", ENTRY + "users:7", value)
                n, r = self.upstream_delta(lambda: gw.get("/users/7"))
                self.assertEqual(r.status, 200)
                self.assertEqual(x_cache(r), "MISS", r)
                self.assertEqual(n, 1, "not fetched from the upstream")
                self.assertEqual(r.body, good7.body)
                self.assertEqual(json.loads(r.body)["id"], 7)

                # Afterwards the key is gone or replaced by a valid value; never the corrupt one.
                def settled():
                    v = self.redis.cmd("GET", ENTRY + "users:7")
                    return v is None or (v != value and v.startswith(b"CGWO"))
                wait_until(settled, timeout=5, what=f"{what}: corrupt value removed")
                # Once replaced, Redis serves it again.
                self.wait_key(ENTRY + "users:7")
                n, r = self.upstream_delta(lambda: gw.get("/users/7"))
                self.assertEqual(n, 0)
                self.assertTrue(from_redis(r), r)
                self.assertEqual(r.body, good7.body)

        # A key of the wrong type (a list): GET fails with WRONGTYPE.
        self.redis.cmd("DEL", ENTRY + "users:7")
        self.redis.cmd("RPUSH", ENTRY + "users:7", "a", "b")
        n, r = self.upstream_delta(lambda: gw.get("/users/7"))
        self.assertEqual((r.status, x_cache(r), n), (200, "MISS", 1))
        self.assertEqual(r.body, good7.body)
        self.assertEqual(gw.get("/health").status, 200)
        self.assertNotIn("CGWO", gw.output())

    def test_two_instances_coherence_after_write(self):
        url = self.redis.url()
        a = self.gateway(url)
        b = self.gateway(url)
        self.wait_backend(a, "redis")
        self.wait_backend(b, "redis")
        # Both subscribed to the invalidation channel before the write.
        wait_until(lambda: self.redis.cmd("PUBSUB", "NUMSUB", PREFIX + "invalidate")[1] >= 2,
                   timeout=5, what="both instances subscribed")
        uid = 11
        path = f"/users/{uid}"
        old = a.get(path)
        self.wait_key(ENTRY + f"users:{uid}")
        self.assertTrue(from_redis(b.get(path)))
        self.assertEqual(x_cache(b.get(path)), "HIT")  # now in B's memory tier
        self.assertEqual(x_cache(a.get(path)), "HIT")
        b.get("/users?limit=20")  # a listing, dropped by prefix (users_list:*)
        self.assertEqual(x_cache(b.get("/users?limit=20")), "HIT")

        new_name = f"renamed-{random.randrange(10**9)}"
        conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=5)
        try:
            t0 = time.monotonic()
            w = a.req("PUT", path, headers={"Content-Type": "application/json"},
                      body=json.dumps({"name": new_name}))
            t_put = time.monotonic()
            self.assertEqual(w.status, 200, w)
            deadline = t_put + 5.0
            seen = None
            polls = 0
            while time.monotonic() < deadline:
                r = request(b.port, "GET", path, conn=conn)
                polls += 1
                if json.loads(r.body)["name"] == new_name:
                    seen = time.monotonic()
                    break
            self.assertIsNotNone(seen, "B never served the new value")
        finally:
            conn.close()
        delay_ms = (seen - t_put) * 1000
        measured("coherence delay (PUT answered by A -> B serves the new value)", delay_ms)
        measured("  ... from PUT sent", (seen - t0) * 1000)
        self.assertLess(delay_ms, 500, f"B served the old value for {delay_ms:.0f} ms")
        # A itself never serves the old value after its write.
        self.assertEqual(json.loads(a.get(path).body)["name"], new_name)
        # The prefix invalidation reached B too.
        self.assertIn(new_name, b.get("/users?limit=20").body.decode())
        # And nothing stale came back from Redis into B's memory.
        for _ in range(20):
            self.assertEqual(json.loads(b.get(path).body)["name"], new_name)

    def test_pubsub_connection_killed_then_coherence_again(self):
        url = self.redis.url()
        a = self.gateway(url)
        b = self.gateway(url)
        for g in (a, b):
            self.wait_backend(g, "redis")
        numsub = lambda: self.redis.cmd("PUBSUB", "NUMSUB", PREFIX + "invalidate")[1]
        wait_until(lambda: numsub() >= 2, timeout=5, what="both subscribed")
        b.get("/users/12")
        self.assertEqual(x_cache(b.get("/users/12")), "HIT")
        # The server drops every subscriber (and every other client).
        self.redis.cmd("CLIENT", "KILL", "TYPE", "pubsub")
        self.redis.cmd("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        wait_until(lambda: numsub() >= 2, timeout=10, what="both re-subscribed")
        new_name = f"again-{random.randrange(10**9)}"
        w = a.req("PUT", "/users/12", headers={"Content-Type": "application/json"},
                  body=json.dumps({"name": new_name}))
        self.assertEqual(w.status, 200, w)
        wait_until(lambda: json.loads(b.get("/users/12").body)["name"] == new_name, timeout=2,
                   what="B serving the new value after re-subscribing")
        # Back on Redis once each has read the records again after re-subscribing (the
        # tier waits for them: docs/design.md, "Invalidation protocol").
        for g in (a, b):
            wait_until(lambda: g.health_cache()["backend"] == "redis", timeout=5,
                       what="the Redis tier in use again")
            self.assertEqual(g.health_cache()["backend"], "redis")

    def test_large_value_through_redis(self):
        a = self.gateway(self.redis.url())
        r = a.get("/bytes/900000")
        self.assertEqual((r.status, len(r.body)), (200, 900000))
        self.wait_key(ENTRY + "GET:/bytes/900000")
        b = self.gateway(self.redis.url(), env={"CACHE_MAX_BYTES": "0"})
        self.wait_backend(b, "redis")
        n, results = self.upstream_delta(
            lambda: run_concurrently(8, lambda i: b.get("/bytes/900000")))
        self.assertEqual(n, 0)
        self.assertTrue(any(from_redis(x) for x in results), results)
        for x in results:
            self.assertEqual(x_cache(x), "HIT")
            self.assertEqual(x.body, r.body)
        # Over MAX_VALUE_SIZE: streamed through, stored nowhere.
        r = a.get("/bytes/1100000")
        self.assertEqual((r.status, len(r.body)), (200, 1100000))
        time.sleep(0.2)
        self.assertEqual(self.redis.cmd("EXISTS", ENTRY + "GET:/bytes/1100000"), 0)

    def test_collapsed_requests_read_redis_once_upstream_never(self):
        a = self.gateway(self.redis.url())
        self.wait_backend(a, "redis")
        a.get("/users/13")
        self.wait_key(ENTRY + "users:13")
        b = self.gateway(self.redis.url())
        self.wait_backend(b, "redis")
        n, rs = self.upstream_delta(lambda: run_concurrently(32, lambda i: b.get("/users/13")))
        self.assertEqual(n, 0)
        self.assertTrue(all(x.status == 200 and x_cache(x) == "HIT" for x in rs), rs)
        self.assertEqual(len({x.body for x in rs}), 1)
        # A cold key: one upstream fetch however many ask.
        n, rs = self.upstream_delta(lambda: run_concurrently(32, lambda i: b.get("/users/14")))
        self.assertEqual(n, 1)
        self.assertTrue(all(x.status == 200 for x in rs))

    def test_per_user_entries_do_not_leak_credentials_or_cross_users(self):
        token_a, token_b = "tok-AAA-9f3e1c", "tok-BBB-77d0aa"
        a = self.gateway(self.redis.url())
        self.wait_backend(a, "redis")
        ha = {"Authorization": f"Bearer {token_a}", "X-User-Id": "2"}
        first = a.get("/messages", headers=ha)
        self.assertEqual(first.status, 200)
        wait_until(lambda: len(self.redis.cmd("KEYS", ENTRY + "messages:*")) > 0, timeout=5,
                   what="a messages entry in Redis")
        for k in self.redis.cmd("KEYS", "*"):
            self.assertNotIn(b"tok-", k)
            v = self.redis.cmd("GET", k)
            self.assertNotIn(token_a.encode(), v or b"")
            self.assertNotIn(b"Bearer", v or b"")
        b = self.gateway(self.redis.url(), env={"CACHE_MAX_BYTES": "0"})
        self.wait_backend(b, "redis")
        n, r = self.upstream_delta(lambda: b.get("/messages", headers=ha))
        self.assertEqual(n, 0)
        self.assertTrue(from_redis(r), r)
        # Another credential, same X-User-Id: never the first user's entry.
        hb = {"Authorization": f"Bearer {token_b}", "X-User-Id": "2"}
        n, r = self.upstream_delta(lambda: b.get("/messages", headers=hb))
        self.assertEqual((n, x_cache(r)), (1, "MISS"))
        # No credential at all: not answered from a per-user entry either.
        n, r = self.upstream_delta(lambda: b.get("/messages", headers={"X-User-Id": "2"}))
        self.assertEqual(n, 1)
        self.assertNotEqual(x_cache(r), "HIT")

    def test_redis_refusing_writes_does_not_fail_requests(self):
        gw = self.gateway(self.redis.url(), env={"CACHE_MAX_BYTES": "0"})
        self.wait_backend(gw, "redis")
        self.redis.cmd("CONFIG", "SET", "maxmemory", "1")
        try:
            for i in range(5):
                r = gw.get(f"/users/{60 + i}")
                self.assertEqual((r.status, x_cache(r)), (200, "MISS"))
            self.assertEqual(self.redis.cmd("DBSIZE"), 0)
            h = gw.health_cache()
            self.assertEqual(h["backend"], "redis")
        finally:
            self.redis.cmd("CONFIG", "SET", "maxmemory", "0")
        gw.get("/users/65")
        self.wait_key(ENTRY + "users:65")
        self.assertTrue(from_redis(gw.get("/users/65")))

    def test_secrets_absent_from_debug_logs(self):
        secret = "dbg-Secr3t-44"
        self.redis.cmd("ACL", "SETUSER", "dbg", "on", f">{secret}", "~*", "&*", "+@all")
        try:
            gw = self.gateway(self.redis.url(user="dbg", password=secret),
                              env={"LOG_LEVEL": "debug"})
            self.wait_backend(gw, "redis")
            gw.get("/users/15")
            gw.req("PUT", "/users/15", headers={"Content-Type": "application/json"},
                   body=json.dumps({"bio": "x"}))
            bad = self.gateway(self.redis.url(user="dbg", password=secret + "-nope"),
                               env={"LOG_LEVEL": "debug"})
            self.wait_log(bad, "Using in-memory cache")
            time.sleep(0.5)  # a few reconnect attempts, logged at debug
            for g in (gw, bad):
                self.assertNotIn(secret, g.output())
                self.assertNotIn("Secr3t", g.output())
                self.assertNotIn(secret, g.get("/health/cache").body.decode())
        finally:
            self.redis.cmd("ACL", "DELUSER", "dbg")


# --------------------------------------------------------------------------
# Connection set-up: TLS, ACL users, authentication and certificate failures.
# --------------------------------------------------------------------------

class RedisConnectTest(RedisTestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()
        cls.tls = RedisServer("tls", certs=cls.certs)
        cls.mtls = RedisServer("mtls", certs=cls.certs)
        cls.auth = RedisServer("auth")
        # An ACL user whose password needs percent-encoding in the URL.
        cls.auth.cmd("ACL", "SETUSER", "odd", "on", ">p@ss:w/rd#1%", "~*", "&*", "+@all")
        cls.api = ExampleAPI()

    @classmethod
    def tearDownClass(cls):
        cls.api.stop()
        cls.tls.cleanup()
        cls.mtls.cleanup()
        cls.auth.cleanup()
        cls.certs.cleanup()

    def assert_serves_from_memory(self, gw):
        r = gw.get("/users/1")
        self.assertEqual(r.status, 200)
        self.assertEqual(x_cache(r), "MISS")
        r = gw.get("/users/1")
        self.assertEqual((r.status, x_cache(r)), (200, "HIT"))
        h = gw.health_cache()
        self.assertEqual(h["status"], "degraded")
        self.assertEqual(h["backend"], "memory")
        self.assertIsNone(h["latency_ms"])
        self.assertFalse(h["stats"]["redis_available"])

    def assert_stores_in(self, gw, server, key, host="127.0.0.1"):
        self.wait_backend(gw, "redis")
        gw.get("/users/" + key.split(":")[1])
        with server.client(host=host) as c:
            wait_until(lambda: c.command("EXISTS", ENTRY + key) == 1, timeout=5,
                       what=f"{key} stored")
        h = gw.health_cache()
        self.assertEqual(h["status"], "healthy")
        self.assertIsInstance(h["latency_ms"], float)

    def assert_no_secret(self, gw, secret):
        self.assertNotIn(secret, gw.output())
        self.assertNotIn(secret, gw.get("/health/cache").body.decode())
        self.assertNotIn(secret, gw.get("/metrics").body.decode())

    def test_tls_with_generated_ca(self):
        gw = self.gateway(f"rediss://:{PASSWORD}@localhost:{self.tls.port}",
                          env={"REDIS_TLS_CA_FILE": self.certs.ca})
        self.wait_log(gw, "Redis cache connected successfully (SSL/TLS enabled)")
        self.assert_stores_in(gw, self.tls, "users:21")
        self.assert_no_secret(gw, PASSWORD)
        self.assertNotIn("Redis connection failed", gw.output())

    def test_tls_by_ip_address_in_certificate(self):
        gw = self.gateway(f"rediss://:{PASSWORD}@127.0.0.1:{self.tls.port}",
                          env={"REDIS_TLS_CA_FILE": self.certs.ca})
        self.wait_log(gw, "Redis cache connected successfully (SSL/TLS enabled)")
        self.assert_stores_in(gw, self.tls, "users:22")

    def test_acl_user(self):
        gw = self.gateway(self.auth.url(user=ACL_USER, password=ACL_PASS))
        self.wait_log(gw, "Redis cache connected successfully")
        self.assertNotIn("SSL/TLS", gw.output())
        self.assert_stores_in(gw, self.auth, "users:23")
        self.assert_no_secret(gw, ACL_PASS)

    def test_requirepass_default_user(self):
        gw = self.gateway(self.auth.url(password=PASSWORD))
        self.wait_log(gw, "Redis cache connected successfully")
        self.assert_stores_in(gw, self.auth, "users:24")
        self.assert_no_secret(gw, PASSWORD)

    def test_password_with_reserved_characters_percent_encoded(self):
        gw = self.gateway(f"redis://odd:p%40ss%3Aw%2Frd%231%25@127.0.0.1:{self.auth.port}")
        self.wait_log(gw, "Redis cache connected successfully")
        self.assert_stores_in(gw, self.auth, "users:26")
        self.assert_no_secret(gw, "p@ss:w/rd")
        self.assert_no_secret(gw, "p%40ss")

    def test_mutual_tls_client_certificate(self):
        url = f"rediss://:{PASSWORD}@localhost:{self.mtls.port}"
        without = self.gateway(url, env={"REDIS_TLS_CA_FILE": self.certs.ca})
        self.wait_log(without, "Using in-memory cache")
        self.assertIn("Redis connection failed", without.output())
        self.assert_serves_from_memory(without)
        gw = self.gateway(url, env={"REDIS_TLS_CA_FILE": self.certs.ca,
                                    "REDIS_TLS_CERT_FILE": self.certs.path("client.crt"),
                                    "REDIS_TLS_KEY_FILE": self.certs.path("client.key")})
        self.wait_log(gw, "Redis cache connected successfully (SSL/TLS enabled)")
        self.assert_stores_in(gw, self.mtls, "users:27")

    def test_wrong_password(self):
        for what, url, secret in (
                ("default user", self.auth.url(password="Wr0ng-pa55-Q7"), "Wr0ng-pa55-Q7"),
                ("ACL user", self.auth.url(user=ACL_USER, password="Wr0ng-pa55-Q8"),
                 "Wr0ng-pa55-Q8")):
            with self.subTest(what):
                gw = self.gateway(url)
                self.wait_log(gw, "Using in-memory cache")
                out = gw.output()
                self.assertRegex(out, r"Redis connection failed: .*authentication failed")
                self.assertNotIn("Redis cache connected successfully", out)
                self.assert_serves_from_memory(gw)
                self.assert_no_secret(gw, secret)
                # Still degraded a moment later (it keeps retrying, quietly).
                time.sleep(0.3)
                self.assertEqual(gw.health_cache()["backend"], "memory")
                self.assertEqual(gw.output().count("Redis connection failed"), 1)
                gw.stop()

    def test_missing_password(self):
        gw = self.gateway(self.auth.url())
        self.wait_log(gw, "Using in-memory cache")
        self.assertRegex(gw.output(), r"Redis connection failed: .*authentication")
        self.assert_serves_from_memory(gw)

    def test_wrong_ca(self):
        gw = self.gateway(f"rediss://:{PASSWORD}@localhost:{self.tls.port}",
                          env={"REDIS_TLS_CA_FILE": self.certs.other_ca})
        self.wait_log(gw, "Using in-memory cache")
        out = gw.output()
        self.assertRegex(out, r"Redis connection failed: .*(verif|certificate)")
        self.assertIn("unable to get local issuer certificate", out)
        self.assertNotIn("connected successfully", out)
        self.assert_serves_from_memory(gw)
        self.assert_no_secret(gw, PASSWORD)

    def test_system_ca_store_rejects_private_ca(self):
        gw = self.gateway(f"rediss://:{PASSWORD}@localhost:{self.tls.port}")
        self.wait_log(gw, "Using in-memory cache")
        self.assertRegex(gw.output(), r"Redis connection failed: .*verif")
        self.assert_serves_from_memory(gw)

    def test_hostname_mismatch(self):
        gw = self.gateway(f"rediss://:{PASSWORD}@127.0.0.2:{self.tls.port}",
                          env={"REDIS_TLS_CA_FILE": self.certs.ca})
        self.wait_log(gw, "Using in-memory cache")
        out = gw.output()
        self.assertRegex(out, r"Redis connection failed: .*(hostname|IP address|mismatch)")
        self.assertIn("127.0.0.2", out)
        self.assertNotIn("connected successfully", out)
        self.assert_serves_from_memory(gw)

    def test_insecure_connects_with_wrong_ca_and_warns(self):
        gw = self.gateway(f"rediss://:{PASSWORD}@127.0.0.2:{self.tls.port}",
                          env={"REDIS_TLS_CA_FILE": self.certs.other_ca,
                               "REDIS_TLS_INSECURE": "true"})
        self.wait_log(gw, "Redis cache connected successfully (SSL/TLS enabled)")
        warn = [l for l in log_lines(gw) if "verification" in l and "DISABLED" in l]
        self.assertEqual(len(warn), 1, gw.output())
        self.assertIn("WARN", warn[0])
        self.assert_stores_in(gw, self.tls, "users:25", host="127.0.0.1")

    def test_plain_client_against_tls_port(self):
        gw = self.gateway(f"redis://:{PASSWORD}@127.0.0.1:{self.tls.port}",
                          env={"REDIS_CONNECT_TIMEOUT_MS": "500"})
        self.wait_log(gw, "Using in-memory cache")
        self.assert_serves_from_memory(gw)


class RedisConfigTest(unittest.TestCase):
    def run_gateway(self, url, flag=False):
        argv = [CACHEGW_BIN, "--host", "127.0.0.1", "--port", str(free_port()),
                "--upstream", "http://127.0.0.1:9"]
        env = dict(os.environ)
        env.pop("REDIS_URL", None)
        if flag:
            argv += ["--redis-url", url]
        else:
            env["REDIS_URL"] = url
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)

    def test_malformed_urls_exit_2_one_line_no_password(self):
        secret = "pw-Zx9q-secret"
        cases = [
            f"redis://:{secret}@host:notaport",
            "http://x",
            "redis://",
            f"redis://:{secret}@:6379",
            f"redis://user:{secret}@host:70000",
            f"redis://:{secret}@host:6379/notadb",
            f"rediss://:{secret}@host:0",
            f"http://:{secret}@host:6379",
            f"redis://:{secret}@host:6379?x={secret}",
            f"redis://:{secret}@[::1:6379",
        ]
        for url in cases:
            for flag in (False, True):
                with self.subTest(url=url, flag=flag):
                    p = self.run_gateway(url, flag)
                    self.assertEqual(p.returncode, 2, (p.stdout, p.stderr))
                    out = (p.stdout + p.stderr).strip()
                    self.assertEqual(len(out.splitlines()), 1, out)
                    self.assertIn("redis-url", out.lower())
                    self.assertNotIn(secret, out)
                    self.assertNotIn("Zx9q", out)


# --------------------------------------------------------------------------
# Outages: Redis down at start, killed under load, paused.  Each test starts
# its own server since it kills or pauses it.
# --------------------------------------------------------------------------

class LoadThreads:
    """n threads looping over paths on keep-alive connections until stopped."""

    def __init__(self, port, paths, n=8):
        self.port = port
        self.paths = paths
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.statuses = {}
        self.errors = []
        self.count = 0
        self.slowest = 0.0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(n)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def run(self, i):
        rnd = random.Random(i)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop_flag.is_set():
            path = rnd.choice(self.paths)
            try:
                r = request(self.port, "GET", path, conn=conn)
                status = r.status
                elapsed = r.elapsed
            except Exception as exc:  # noqa: BLE001 - counted as a failure
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                status = f"exception {type(exc).__name__}: {exc}"
                elapsed = 0.0
            with self.lock:
                self.count += 1
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.slowest = max(self.slowest, elapsed)
        conn.close()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)

    def snapshot(self):
        with self.lock:
            return self.count

    def failures(self):
        with self.lock:
            return {k: v for k, v in self.statuses.items()
                    if not (isinstance(k, int) and 200 <= k < 300)}


class RedisOutageTest(RedisTestCase):
    @classmethod
    def setUpClass(cls):
        cls.api = ExampleAPI()

    @classmethod
    def tearDownClass(cls):
        cls.api.stop()

    def setUp(self):
        super().setUp()
        self.servers = []

    def tearDown(self):
        super().tearDown()
        for s in self.servers:
            s.cleanup()

    def server(self, **kw):
        s = RedisServer("plain", **kw)
        self.servers.append(s)
        return s

    def test_down_at_start_then_started(self):
        port = free_port()
        gw = self.gateway(f"redis://127.0.0.1:{port}")
        self.wait_log(gw, "Using in-memory cache")
        self.assertRegex(gw.output(), r"Redis connection failed: connection refused")
        # Serves from the upstream, then from memory.
        n, r = self.upstream_delta(lambda: gw.get("/users/31"))
        self.assertEqual((r.status, x_cache(r), n), (200, "MISS", 1))
        n, r = self.upstream_delta(lambda: gw.get("/users/31"))
        self.assertEqual((r.status, x_cache(r), n), (200, "HIT", 0))
        h = gw.health_cache()
        self.assertEqual((h["status"], h["backend"]), ("degraded", "memory"))
        time.sleep(1.0)  # let the reconnect backoff grow a little

        redis = self.server(port=port)
        t0 = time.monotonic()
        self.wait_backend(gw, "redis", timeout=10)
        measured("switch to Redis after it started (down at start)", (time.monotonic() - t0) * 1000)
        self.wait_log(gw, "Redis cache connected successfully")
        h = gw.health_cache()
        self.assertEqual(h["status"], "healthy")
        self.assertTrue(h["stats"]["redis_available"])
        gw.get("/users/32")
        wait_until(lambda: redis.cmd("EXISTS", ENTRY + "users:32") == 1, timeout=5,
                   what="new entries stored in Redis")
        # A second instance can use what the first stored.
        other = self.gateway(redis.url(), env={"CACHE_MAX_BYTES": "0"})
        self.wait_backend(other, "redis")
        self.assertTrue(from_redis(other.get("/users/32")))

    def test_killed_under_load_then_restarted(self):
        redis = self.server()
        gw = self.gateway(redis.url(), env={"CACHE_MAX_BYTES": "0"})
        self.wait_backend(gw, "redis")
        paths = [f"/users/{i}" for i in range(1, 41)] + \
                [f"/posts?limit=5&offset={i}" for i in range(0, 40, 5)] + ["/fast", "/categories"]
        for p in paths:
            gw.get(p)
        wait_until(lambda: redis.cmd("DBSIZE") >= len(paths), timeout=5, what="warm Redis")
        load = LoadThreads(gw.port, paths, n=8).start()
        try:
            wait_until(lambda: load.snapshot() >= 1000, timeout=30, what="load warm-up")
            hits_before = gw.health_cache()["stats"]["hits"]

            t_kill = time.monotonic()
            redis.kill()
            self.wait_backend(gw, "memory", timeout=10)
            switch_ms = (time.monotonic() - t_kill) * 1000
            measured("fallback switch-over after SIGKILL (backend=memory)", switch_ms)
            n_at_switch = load.snapshot()
            wait_until(lambda: load.snapshot() >= n_at_switch + 1000, timeout=30,
                       what="load during the outage")
            self.assertEqual(gw.health_cache()["status"], "degraded")

            t_restart = time.monotonic()
            redis.restart()  # returns once the new server answers PING
            start_ms = (time.monotonic() - t_restart) * 1000
            self.wait_backend(gw, "redis", timeout=10)
            recovery_ms = (time.monotonic() - t_restart) * 1000
            measured("recovery after restart (backend=redis; includes redis-server start-up of "
                     f"{start_ms:.0f} ms)", recovery_ms)
            n_at_recovery = load.snapshot()
            wait_until(lambda: load.snapshot() >= n_at_recovery + 1000, timeout=30,
                       what="load after recovery")
        finally:
            load.stop()
        print(f"\nMEASURED requests under load: {load.count}, slowest {load.slowest * 1000:.0f} ms",
              flush=True)
        self.assertGreaterEqual(load.count, 3000)
        self.assertEqual(load.failures(), {}, f"non-2xx answers: {load.failures()}")
        self.assertGreater(gw.health_cache()["stats"]["hits"], hits_before)
        self.assertLess(switch_ms, 3000)
        self.assertLess(recovery_ms, 6000)

        lines = log_lines(gw)
        i = first_index(lines, "Redis connection failed")
        self.assertGreaterEqual(i, 0, gw.output())
        j = first_index(lines, "Using in-memory cache", i)
        self.assertEqual(j, i + 1, "'Using in-memory cache' must follow the failure")
        k = first_index(lines, "Redis cache connected successfully", j)
        self.assertGreater(k, j, "no reconnection logged")
        # One outage, one pair of lines (no log flood while it lasted).
        self.assertEqual(gw.output().count("Using in-memory cache"), 1)
        self.assertTrue(gw.alive())
        # Redis is used again: the refilled entries come from it.
        wait_until(lambda: redis.cmd("DBSIZE") > 0, timeout=5, what="Redis refilled")
        self.assertTrue(from_redis(gw.get("/fast")) or from_redis(gw.get("/fast")))

    def test_write_during_outage_reaches_other_instance_after_recovery(self):
        redis = self.server()
        a = self.gateway(redis.url())
        b = self.gateway(redis.url())
        for g in (a, b):
            self.wait_backend(g, "redis")
        a.get("/users/33")
        wait_until(lambda: redis.cmd("EXISTS", ENTRY + "users:33") == 1, timeout=5,
                   what="users:33 in Redis")
        b.get("/users/33")
        self.assertEqual(x_cache(b.get("/users/33")), "HIT")
        redis.kill()
        for g in (a, b):
            self.wait_backend(g, "memory")
        new_name = f"offline-{random.randrange(10**9)}"
        w = a.req("PUT", "/users/33", headers={"Content-Type": "application/json"},
                  body=json.dumps({"name": new_name}))
        self.assertEqual(w.status, 200, w)
        self.assertEqual(json.loads(a.get("/users/33").body)["name"], new_name)
        # B cannot have heard of it; once Redis is back it must not keep the old copy.
        redis.restart()
        for g in (a, b):
            self.wait_backend(g, "redis")
        wait_until(lambda: json.loads(b.get("/users/33").body)["name"] == new_name, timeout=3,
                   what="B dropping what it cached before the outage")

    def test_paused_with_sigstop_then_resumed(self):
        timeout_ms = 500
        redis = self.server()
        env = {"REDIS_TIMEOUT_MS": str(timeout_ms), "REDIS_CONNECT_TIMEOUT_MS": str(timeout_ms)}
        gw = self.gateway(redis.url(), env=dict(env, REDIS_RETRIES="1"))  # the default
        gw0 = self.gateway(redis.url(), env=dict(env, REDIS_RETRIES="0"))
        self.wait_backend(gw, "redis")
        self.wait_backend(gw0, "redis")
        warm = gw.get("/users/41")
        wait_until(lambda: redis.cmd("EXISTS", ENTRY + "users:41") == 1, timeout=5,
                   what="warm key")
        upstream_ms = max(request(self.api.port, "GET", "/users/49").elapsed
                          for _ in range(3)) * 1000
        slack_ms = 400
        redis.pause()
        try:
            # /health/cache answers within the operation timeout, its PING included
            # (the pool does not know yet that Redis is stalled).
            t0 = time.monotonic()
            h = gw0.health_cache()
            health_ms = (time.monotonic() - t0) * 1000
            measured("/health/cache while Redis is paused (its PING times out)", health_ms)
            self.assertLess(health_ms, timeout_ms + slack_ms)
            self.assertIn(h["backend"], ("redis", "memory"))

            # Cached in memory: untouched by the stall.
            r = gw.get("/users/41", timeout=5)
            self.assertEqual((r.status, x_cache(r)), (200, "HIT"))
            self.assertLess(r.elapsed, 0.25)
            self.assertEqual(r.body, warm.body)

            # A cold key: the leader's Redis read times out, then the upstream answers.
            r = gw0.get("/users/42", timeout=10)
            self.assertEqual((r.status, x_cache(r)), (200, "MISS"))
            measured("cold request while Redis is paused, REDIS_RETRIES=0", r.elapsed * 1000)
            self.assertLess(r.elapsed * 1000, timeout_ms + upstream_ms + slack_ms)
            # With the default retry, the read may wait for a second timeout.
            r = gw.get("/users/43", timeout=10)
            self.assertEqual((r.status, x_cache(r)), (200, "MISS"))
            measured("cold request while Redis is paused, REDIS_RETRIES=1", r.elapsed * 1000)
            self.assertLess(r.elapsed * 1000, 2 * timeout_ms + upstream_ms + slack_ms)

            # Concurrent cold requests on many keys.
            rs = run_concurrently(16, lambda i: gw.get(f"/users/{50 + i}", timeout=10))
            self.assertTrue(all(x.status == 200 for x in rs), rs)
            slowest = max(x.elapsed for x in rs)
            measured("slowest of 16 concurrent cold requests while paused", slowest * 1000)
            self.assertLess(slowest * 1000, 2 * timeout_ms + upstream_ms + slack_ms)

            # Within a few timeouts the pool notices and says so.
            for g in (gw, gw0):
                self.wait_backend(g, "memory", timeout=10)
                self.assertEqual(g.health_cache()["status"], "degraded")
                self.wait_log(g, "Using in-memory cache")
                self.assertRegex(g.output(), r"Redis connection failed: .*timeout")
            # Once known down, cold requests no longer wait for Redis.
            r = gw.get("/users/70", timeout=10)
            self.assertEqual(r.status, 200)
            self.assertLess(r.elapsed * 1000, upstream_ms + slack_ms)
            t0 = time.monotonic()
            gw.health_cache()
            self.assertLess(time.monotonic() - t0, 0.25)
        finally:
            redis.resume()
        t0 = time.monotonic()
        self.wait_backend(gw, "redis", timeout=10)
        measured("recovery after SIGCONT (backend=redis)", (time.monotonic() - t0) * 1000)
        self.wait_backend(gw0, "redis", timeout=10)
        gw.get("/users/71")
        wait_until(lambda: redis.cmd("EXISTS", ENTRY + "users:71") == 1, timeout=5,
                   what="stores resumed")
        self.assertTrue(gw.alive() and gw0.alive())


if __name__ == "__main__":
    unittest.main()
