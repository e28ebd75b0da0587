"""Lua route policies against the real binary: keys and TTLs per route, write
invalidation, per-user keys, SIGHUP hot reload (good, broken, under load), --check.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from harness import (CACHEGW_BIN, SOURCE_DIR, ExampleAPI, Gateway, GatewayTestCase, request,
                     wait_until)

POLICIES = os.path.join(SOURCE_DIR, "policies")
LUA_DIR = os.path.join(SOURCE_DIR, "lua")

SEED_TTLS = {  # path -> the seed TTL of its route (README, Policies)
    "/users/3": 300,
    "/users/3/profile": 180,
    "/posts": 60,
    "/users/3/posts": 120,
    "/jobs": 300,
    "/jobs/stats": 600,
    "/messages": 30,
    "/conversations": 60,
    "/notifications": 30,
    "/categories": 3600,
    "/locations": 3600,
}


def ttl_of(resp):
    m = re.search(r"ttl=(\d+)", resp.header("cache-status") or "")
    return int(m.group(1)) if m else None


class PolicyTest(GatewayTestCase):
    def start(self, policies_dir=POLICIES, env=None):
        self.api = self.track(ExampleAPI(latency_ms=0))
        e = {"POLICIES_DIR": policies_dir, "LUA_DIR": LUA_DIR, "DEFAULT_TTL": "0"}
        e.update(env or {})
        self.gw = self.track(Gateway(self.api.url, env=e))
        return self.gw

    def copy_policies(self):
        d = tempfile.mkdtemp(prefix="cachegw-policies-")
        for name in os.listdir(POLICIES):
            if name.endswith(".lua"):
                shutil.copy(os.path.join(POLICIES, name), d)
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_seed_ttls_per_route(self):
        gw = self.start()
        for path, ttl in SEED_TTLS.items():
            r = gw.get(path, headers={"X-User-Id": "3"})
            self.assertEqual(r.status, 200, path)
            self.assertEqual(r.header("x-cache"), "MISS", path)
            self.assertIn("stored", r.header("cache-status"), (path, r.header("cache-status")))
            self.assertEqual(ttl_of(r), ttl, path)
            again = gw.get(path, headers={"X-User-Id": "3"})
            self.assertEqual(again.header("x-cache"), "HIT", path)
            self.assertIn(ttl_of(again), (ttl, ttl - 1), path)

    def test_query_is_normalised_in_keys(self):
        gw = self.start()
        before = self.api.requests()
        gw.get("/posts?page=1&limit=5")
        r = gw.get("/posts?limit=5&page=1&utm_source=newsletter")
        self.assertEqual(r.header("x-cache"), "HIT")
        self.assertEqual(self.api.requests() - before, 1)

    def test_writes_invalidate_what_they_should(self):
        gw = self.start()
        gw.get("/users/8")
        gw.get("/users/8/profile")
        gw.get("/users/9")
        gw.get("/posts")
        before = self.api.requests()
        # All cached now.
        for p in ("/users/8", "/users/8/profile", "/users/9", "/posts"):
            self.assertEqual(gw.get(p).header("x-cache"), "HIT", p)
        self.assertEqual(self.api.requests(), before)
        r = gw.req("PUT", "/users/8", headers={"Content-Type": "application/json"},
                   body=b'{"name": "Renamed"}')
        self.assertEqual(r.status, 200)
        fresh = gw.get("/users/8")
        self.assertEqual(fresh.header("x-cache"), "MISS")
        self.assertIn("Renamed", fresh.body.decode())
        self.assertEqual(gw.get("/users/8/profile").header("x-cache"), "MISS")
        # Other users and other routes keep their entries.
        self.assertEqual(gw.get("/users/9").header("x-cache"), "HIT")
        self.assertEqual(gw.get("/posts").header("x-cache"), "HIT")
        # POST /posts invalidates the posts prefix.
        created = gw.req("POST", "/posts", headers={"Content-Type": "application/json"},
                         body=b'{"title": "new", "body": "x", "user_id": 9}')
        self.assertEqual(created.status, 201)
        self.assertEqual(gw.get("/posts").header("x-cache"), "MISS")
        self.assertEqual(self.api.requests() - before, 5)

    def test_failed_write_invalidates_nothing(self):
        gw = self.start()
        gw.get("/users/10")
        r = gw.req("PUT", "/users/100000", body=b'{"name": "x"}')
        self.assertGreaterEqual(r.status, 400)
        self.assertEqual(gw.get("/users/10").header("x-cache"), "HIT")

    def test_per_user_keys_never_cross_users(self):
        gw = self.start()
        alice = {"Authorization": "Bearer alice-token", "X-User-Id": "1"}
        bob = {"Authorization": "Bearer bob-token", "X-User-Id": "2"}
        a1 = gw.get("/notifications", headers=alice)
        b1 = gw.get("/notifications", headers=bob)
        self.assertEqual(a1.header("x-cache"), "MISS")
        self.assertEqual(b1.header("x-cache"), "MISS")
        a2 = gw.get("/notifications", headers=alice)
        b2 = gw.get("/notifications", headers=bob)
        self.assertEqual(a2.header("x-cache"), "HIT")
        self.assertEqual(b2.header("x-cache"), "HIT")
        self.assertEqual(a2.json()["user_id"], 1)
        self.assertEqual(b2.json()["user_id"], 2)
        # Bob claiming Alice's user id with his own token does not get her entry.
        mallory = {"Authorization": "Bearer bob-token", "X-User-Id": "1"}
        self.assertEqual(gw.get("/notifications", headers=mallory).header("x-cache"), "MISS")
        # A shared route never answers a credentialed request from its shared entry.
        gw.get("/users/11")
        r = gw.get("/users/11", headers={"Authorization": "Bearer alice-token"})
        self.assertEqual(r.header("x-cache"), "BYPASS")

    def test_sighup_with_changed_ttl_takes_effect(self):
        d = self.copy_policies()
        gw = self.start(policies_dir=d)
        self.assertEqual(ttl_of(gw.get("/categories")), 3600)
        path = os.path.join(d, "reference.lua")
        with open(path) as f:
            text = f.read()
        self.assertIn("ttl = 3600", text)
        with open(path, "w") as f:
            f.write(text.replace('route "GET /categories" { key = "categories:{query}", ttl = 3600',
                                 'route "GET /categories" { key = "categories_v2:{query}", ttl = 42'))
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: gw.health_cache()["policies"]["reloads"] == 1, what="reload")
        r = gw.get("/categories")
        self.assertEqual(r.header("x-cache"), "MISS")
        self.assertEqual(ttl_of(r), 42)
        self.assertIsNone(gw.health_cache()["policies"]["last_error"])

    def test_sighup_with_syntax_error_keeps_old_policies(self):
        d = self.copy_policies()
        gw = self.start(policies_dir=d)
        gw.get("/users/12")
        with open(os.path.join(d, "users.lua"), "a") as f:
            f.write('\nroute "GET /broken" { key = "x", ttl = 1 \n')
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: gw.health_cache()["policies"]["reload_failures"] == 1, what="failure")
        status = gw.health_cache()["policies"]
        self.assertRegex(status["last_error"], r"users\.lua:\d+:")
        self.assertEqual(status["reloads"], 0)
        self.assertRegex(gw.output(), r"policy reload failed.*users\.lua:\d+:")
        # Still running the old set: the cached entry and its route are intact.
        self.assertEqual(gw.get("/users/12").header("x-cache"), "HIT")
        self.assertEqual(ttl_of(gw.get("/users/13")), 300)

    def test_typo_in_a_field_is_reported_with_file_and_line(self):
        d = self.copy_policies()
        with open(os.path.join(d, "zz_typo.lua"), "w") as f:
            f.write('-- a typo\nroute "GET /typo" { key = "typo", tll = 5 }\n')
        p = subprocess.run([CACHEGW_BIN, "--check", "--policies", d, "--lua-dir", LUA_DIR],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("zz_typo.lua:2:", p.stderr)
        self.assertIn("tll", p.stderr)
        # The gateway refuses to start on them too.
        g = subprocess.run([CACHEGW_BIN, "--policies", d, "--lua-dir", LUA_DIR, "--port", "1"],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(g.returncode, 0)
        self.assertIn("zz_typo.lua:2:", g.stderr)

    def test_check_accepts_the_shipped_policies(self):
        p = subprocess.run([CACHEGW_BIN, "--check", "--policies", POLICIES, "--lua-dir", LUA_DIR],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("policies OK", p.stdout)

    def test_sighup_under_load_loses_no_request(self):
        d = self.copy_policies()
        gw = self.start(policies_dir=d)
        stop = threading.Event()
        statuses = []
        lock = threading.Lock()

        def load(i):
            paths = ["/users/%d" % (i + 1), "/posts", "/categories", "/jobs/stats"]
            n = 0
            while not stop.is_set():
                r = request(gw.port, "GET", paths[n % len(paths)], timeout=10)
                n += 1
                with lock:
                    statuses.append(r.status)

        threads = [threading.Thread(target=load, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for i in range(10):
            time.sleep(0.1)
            gw.send_signal(signal.SIGHUP)
            # Signals that arrive while a reload runs are one reload: wait for each, so a
            # busy machine cannot merge two of them.
            wait_until(lambda: gw.health_cache()["policies"]["reloads"] == i + 1,
                       what="reload %d" % (i + 1))
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(10)
        self.assertGreater(len(statuses), 100)
        self.assertEqual([s for s in statuses if s != 200], [])

    def test_policy_runtime_error_serves_uncached_and_counts(self):
        d = self.copy_policies()
        with open(os.path.join(d, "zz_faulty.lua"), "w") as f:
            f.write('route "GET /echo" { key = function(req) return nil .. "x" end, ttl = 5 }\n'
                    'route "GET /fast" { key = function(req) while true do end end, ttl = 5 }\n')
        gw = self.start(policies_dir=d, env={"LUA_INSTRUCTION_LIMIT": "100000"})
        for path in ("/echo", "/fast"):
            t0 = time.monotonic()
            r = gw.get(path)
            self.assertEqual(r.status, 200, path)
            self.assertEqual(r.header("x-cache"), "BYPASS", path)
            self.assertLess(time.monotonic() - t0, 2.0)
        self.assertGreaterEqual(gw.health_cache()["policies"]["errors"], 2)
        self.assertRegex(gw.output(), r"policy error in route 'GET /echo'.*zz_faulty\.lua:1:")
        self.assertEqual(gw.get("/health").status, 200)
