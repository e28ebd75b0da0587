"""The purge/admin API (src/http/admin_server.c) against the real binary: a separate
loopback listener that exists only with ADMIN_TOKEN, bearer-token auth, purges by
key, URL, prefix and tag through the real cache, input validation, one log line
per purge, and the token never in the output.
"""

import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from harness import (CACHEGW_BIN, SOURCE_DIR, ExampleAPI, Gateway, GatewayTestCase, free_port,
                     request, wait_until)
from redis_servers import RedisServer


def proc_net_listeners(port):
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on port."""
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, p = fields[1].split(":")
            if int(p, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.append(addr)
    return found


def non_loopback_ip():
    """An address of this host that is not loopback, or None (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks a route
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip



def stop_and_check_sanitizers(test):
    """Stops the test's gateways and fails it if one reported a sanitizer error
    (with a CACHEGW_SANITIZE build): leaks show only at exit."""
    gateways = [p for p in test._procs if isinstance(p, Gateway)]
    for g in gateways:
        g.stop()
    out = "".join(g.output() for g in gateways)
    for marker in ("Sanitizer", "runtime error:"):
        test.assertNotIn(marker, out)

class AdminTest(GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.token = "adm-" + secrets.token_hex(16)
        self.admin_port = free_port()

    def tearDown(self):
        try:
            stop_and_check_sanitizers(self)
        finally:
            super().tearDown()

    def start(self, token=True, env=None):
        self.api = self.track(ExampleAPI(latency_ms=0))
        e = {"ADMIN_PORT": str(self.admin_port), "DEFAULT_TTL": "0",
             "ADMIN_TOKEN": self.token if token else None, "ADMIN_HOST": None}
        e.update(env or {})
        self.gw = self.track(Gateway(self.api.url, env=e))
        if token:
            wait_until(lambda: self.admin("GET", "/admin/health").status == 200,
                       timeout=5, what="the admin listener")
        return self.gw

    def admin(self, method, path, body=None, token="default", headers=None, conn=None):
        h = dict(headers or {})
        if token == "default":
            token = self.token
        if token is not None:
            h["Authorization"] = "Bearer " + token
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        return request(self.admin_port, method, path, headers=h, body=body, conn=conn)

    def purge(self, kind, value):
        r = self.admin("POST", "/purge/" + kind, {kind: value})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-type"), "application/json")
        return r.json()

    def cache(self, *paths):
        """GETs each path until it is a HIT; returns the upstream count after."""
        for p in paths:
            self.gw.get(p)
            self.assertEqual(self.gw.get(p).header("x-cache"), "HIT", p)
        return self.api.requests()

    def x_cache(self, path):
        return self.gw.get(path).header("x-cache")

    # ---- the listener ----

    def test_no_token_means_no_admin_listener(self):
        gw = self.start(token=False)
        self.assertEqual(gw.get("/health").status, 200)
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.admin_port), timeout=2).close()
        self.assertEqual(proc_net_listeners(self.admin_port), [])
        self.assertNotIn("admin API listening", gw.output())

    def test_listener_is_on_loopback_only(self):
        gw = self.start()
        self.assertEqual(self.admin("GET", "/admin/health").json(), {"status": "ok"})
        self.assertRegex(gw.output(), r"admin API listening on http://127\.0\.0\.1:%d"
                         % self.admin_port)
        listeners = proc_net_listeners(self.admin_port)
        if os.path.exists("/proc/net/tcp"):
            self.assertEqual(listeners, ["0100007F"])  # 127.0.0.1, nothing else
        ip = non_loopback_ip()
        if ip is not None:
            with self.assertRaises(ConnectionRefusedError):
                socket.create_connection((ip, self.admin_port), timeout=2).close()
        # The admin API is not on the public port: there the path is just proxied.
        self.cache("/users/21")
        gw.req("POST", "/purge/key", headers={"Authorization": "Bearer " + self.token},
               body=b'{"key": "users:21"}')
        self.assertEqual(self.x_cache("/users/21"), "HIT")

    # ---- authentication ----

    def test_missing_token_is_401_with_challenge(self):
        self.start()
        for headers in ({}, {"Authorization": "Basic YWRtaW46eA=="},
                        {"Authorization": "Bearer"}, {"Authorization": "Bearer   "}):
            r = self.admin("POST", "/purge/key", {"key": "users:1"}, token=None, headers=headers)
            self.assertEqual(r.status, 401, headers)
            self.assertTrue(r.header("www-authenticate", "").startswith("Bearer"), r)
            self.assertIn("error", r.json())
        r = self.admin("GET", "/admin/health", token=None)
        self.assertEqual(r.status, 401)
        # Authentication comes before routing: unknown paths reveal nothing.
        self.assertEqual(self.admin("GET", "/nope", token=None).status, 401)

    def test_wrong_token_is_403_and_purges_nothing(self):
        gw = self.start()
        before = self.cache("/users/5")
        wrong = ["x" + self.token[1:], self.token[:-1], self.token + "x", "nope",
                 self.token.upper()]
        for t in wrong:
            r = self.admin("POST", "/purge/key", {"key": "users:5"}, token=t)
            self.assertEqual(r.status, 403, t)
            self.assertEqual(r.json()["error"], "invalid token")
            self.assertIsNone(r.header("www-authenticate"))
        r = self.admin("POST", "/purge/prefix?prefix=users:", token="nope")
        self.assertEqual(r.status, 403)
        self.assertEqual(self.x_cache("/users/5"), "HIT")
        self.assertEqual(self.api.requests(), before)
        self.assertRegex(gw.output(), r"WARN\s+admin: rejected a request from 127\.0\.0\.1")
        self.assertNotIn("admin purge:", gw.output())
        for t in wrong:
            self.assertNotIn(t, gw.output())

    def test_scheme_is_case_insensitive(self):
        self.start()
        r = self.admin("GET", "/admin/health", token=None,
                       headers={"Authorization": "bearer " + self.token})
        self.assertEqual(r.status, 200)

    # ---- purges ----

    def test_purge_key(self):
        gw = self.start()
        before = self.cache("/users/5", "/users/15")
        # The answer counts what went: the key in memory, no Vary variants.
        self.assertEqual(self.purge("key", "users:5"),
                         {"purged": "key", "key": "users:5", "removed": {"memory": 1},
                          "variants_removed": {"memory": 0}})
        # Gone already: nothing removed the second time.
        self.assertEqual(self.purge("key", "users:5")["removed"], {"memory": 0})
        r = gw.get("/users/5")
        self.assertEqual(r.header("x-cache"), "MISS")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.api.requests(), before + 1)
        self.assertEqual(self.x_cache("/users/5"), "HIT")
        self.assertEqual(self.x_cache("/users/15"), "HIT")  # other keys untouched
        self.assertRegex(gw.output(), r"INFO\s+admin purge: key 'users:5' from 127\.0\.0\.1")

    def test_purge_key_with_query_parameter_and_escapes(self):
        self.start()
        before = self.cache("/users/9", "/users/10")
        r = self.admin("POST", "/purge/key?key=users%3A9")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["key"], "users:9")
        self.assertEqual(r.json()["removed"], {"memory": 1})
        # JSON escapes are decoded before the key is used.
        self.assertEqual(self.purge("key", "users:\u0031\u0030")["key"], "users:10")
        r = self.admin("POST", "/purge/key", '{"key": "users\\u003a10"}')
        self.assertEqual(r.json()["key"], "users:10")
        self.assertEqual(self.x_cache("/users/9"), "MISS")
        self.assertEqual(self.x_cache("/users/10"), "MISS")
        self.assertEqual(self.api.requests(), before + 2)

    def test_purge_url_uses_the_route_policy_key(self):
        gw = self.start()
        before = self.cache("/users/6", "/posts?page=1&limit=5", "/users/16")
        out = self.purge("url", "/users/6")
        self.assertEqual((out["purged"], out["url"], out["key"], out["removed"]),
                         ("url", "/users/6", "users:6", {"memory": 1}))
        self.assertEqual(self.x_cache("/users/6"), "MISS")
        # The policy normalises the query, so any spelling of it purges the entry.
        out = self.purge("url", "/posts?limit=5&page=1&utm_source=x")
        self.assertEqual(out["key"], "posts:limit=5&page=1")
        self.assertEqual(self.x_cache("/posts?page=1&limit=5"), "MISS")
        self.assertEqual(self.x_cache("/users/16"), "HIT")
        self.assertEqual(self.api.requests(), before + 2)
        self.assertRegex(gw.output(),
                         r"INFO\s+admin purge: url '/users/6' \(key 'users:6'\) from 127\.0\.0\.1")
        # As a query parameter (the inner '?' and '&' percent-encoded).
        self.cache("/users/6")
        r = self.admin("POST", "/purge/url?url=%2Fusers%2F6%3Fx%3D1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["key"], "users:6")
        self.assertEqual(self.x_cache("/users/6"), "MISS")

    def test_purge_url_of_a_per_user_route_is_422(self):
        gw = self.start()
        alice = {"Authorization": "Bearer alice-token", "X-User-Id": "1"}
        gw.get("/notifications", headers=alice)
        self.assertEqual(gw.get("/notifications", headers=alice).header("x-cache"), "HIT")
        r = self.admin("POST", "/purge/url", {"url": "/notifications"})
        self.assertEqual(r.status, 422, r)
        self.assertIn("per-user", r.json()["error"])
        self.assertNotIn("admin purge:", gw.output())
        # The prefix reaches every user's entry.
        self.purge("prefix", "notifications:")
        self.assertEqual(gw.get("/notifications", headers=alice).header("x-cache"), "MISS")

    def test_purge_url_without_policies_uses_the_default_key(self):
        self.start(env={"POLICIES_DIR": "/nonexistent/cachegw-policies", "DEFAULT_TTL": "60"})
        before = self.cache("/users/7?a=1")
        out = self.purge("url", "/users/7?a=1")
        self.assertEqual(out["key"], "GET:/users/7?a=1")
        self.assertEqual(self.x_cache("/users/7?a=1"), "MISS")
        self.assertEqual(self.api.requests(), before + 1)

    def test_purges_drop_vary_variants(self):
        gw = self.start()
        fr, de = {"Accept-Language": "fr"}, {"Accept-Language": "de"}

        def cache_both():
            for h in (fr, de):
                gw.get("/vary", headers=h)
                self.assertEqual(gw.get("/vary", headers=h).header("x-cache"), "HIT", h)

        cache_both()
        out = self.purge("url", "/vary")
        self.assertEqual(out["key"], "GET:/vary")  # no route: the default key
        self.assertEqual(gw.get("/vary", headers=fr).header("x-cache"), "MISS")
        self.assertEqual(gw.get("/vary", headers=de).header("x-cache"), "MISS")
        # A key purge drops the variants too: were only the Vary marker dropped,
        # the next fetch would store a new marker and the old "de" variant would
        # be served again.
        cache_both()
        # GET /entries names the variants in cache_key.h's format (SEP is 0x1f).
        r = self.admin("GET", "/entries?key=GET:/vary")
        self.assertEqual(r.status, 200, r)
        variants = sorted(v["key"] for v in r.json()["variants"])
        self.assertEqual(variants, ["GET:/vary\x1fvary\x1faccept-language=de",
                                    "GET:/vary\x1fvary\x1faccept-language=fr"])
        before = self.api.requests()
        out = self.purge("key", "GET:/vary")
        self.assertEqual(out["removed"], {"memory": 1})  # the Vary marker
        self.assertEqual(out["variants_removed"], {"memory": 2})
        self.assertEqual(gw.get("/vary", headers=fr).header("x-cache"), "MISS")
        self.assertEqual(gw.get("/vary", headers=de).header("x-cache"), "MISS")
        self.assertEqual(self.api.requests(), before + 2)

    def test_purge_prefix(self):
        gw = self.start()
        before = self.cache("/users/7", "/users/8", "/posts", "/users/7/profile")
        # users:7 and users:8 were in memory: the walk counts them.
        self.assertEqual(self.purge("prefix", "users:"),
                         {"purged": "prefix", "prefix": "users:", "removed": {"memory": 2}})
        self.assertEqual(self.x_cache("/users/7"), "MISS")
        self.assertEqual(self.x_cache("/users/8"), "MISS")
        self.assertEqual(self.x_cache("/posts"), "HIT")
        self.assertEqual(self.x_cache("/users/7/profile"), "HIT")  # "user_profile:7"
        self.assertEqual(self.api.requests(), before + 2)
        self.assertRegex(gw.output(), r"INFO\s+admin purge: prefix 'users:' from 127\.0\.0\.1")

    def test_purge_tag_answers_and_logs(self):
        gw = self.start(env={"POLICIES_DIR": self.tag_policies()})
        before = self.cache("/users/5", "/users/55", "/posts?x=1")
        # The memory tier's entries with the tag are counted (a walk); the record does the rest.
        self.assertEqual(self.purge("tag", "user-5"),
                         {"purged": "tag", "tag": "user-5", "removed": {"memory": 1}})
        self.assertEqual(self.x_cache("/users/5"), "MISS")
        self.assertEqual(self.x_cache("/users/55"), "HIT")  # "user-55" is another tag
        self.assertEqual(self.purge("tag", "users")["removed"], {"memory": 2})
        self.assertEqual(self.x_cache("/posts?x=1"), "HIT")
        self.assertEqual(self.api.requests(), before + 1)
        r = self.admin("POST", "/purge/tag?tag=user-6")
        self.assertEqual(r.json()["tag"], "user-6")
        self.assertRegex(gw.output(), r"INFO\s+admin purge: tag 'user-5' from 127\.0\.0\.1")
        self.assertRegex(gw.output(), r"INFO\s+admin purge: tag 'user-6' from 127\.0\.0\.1")

    # ---- GET /entries ----

    def counters(self):
        stats = self.gw.health_cache()["stats"]
        return stats["hits"], stats["misses"]

    def test_entry_metadata_without_changing_it(self):
        self.start(env={"POLICIES_DIR": self.tag_policies()})
        before = self.cache("/users/5")
        counters = self.counters()
        t0 = time.time()
        for path in ("/entries?key=users:5", "/entries?url=/users/5%3Futm_source%3Dx"):
            r = self.admin("GET", path)
            self.assertEqual(r.status, 200, r)
            e = r.json()
            self.assertEqual(e["key"], "users:5")
            self.assertEqual(e["tiers"], ["memory"])
            self.assertNotIn("redis", e)
            m = e["memory"]
            self.assertEqual(m["status"], 200)
            self.assertEqual(m["size"], len(self.gw.get("/users/5").body))
            self.assertEqual(m["ttl_s"], 120)
            self.assertTrue(0 < m["ttl_left_s"] <= 120, m)
            self.assertTrue(m["expires_in_s"] >= m["ttl_left_s"], m)
            self.assertTrue(t0 - 10 < m["stored_at"] <= time.time(), m)
            self.assertEqual(m["tags"], ["user-5", "users"])
            self.assertTrue(m["fresh"])
            self.assertFalse(m["invalidated"])
            self.assertEqual(e["variants"], [])
        self.assertEqual(e["url"], "/users/5?utm_source=x")
        # The gets above were HITs: count them, then check the looks counted nothing.
        counters = (counters[0] + 2, counters[1])
        self.assertEqual(self.counters(), counters)
        # A key that is not stored: 404, and no fill from the upstream.
        r = self.admin("GET", "/entries?key=users:77")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json()["tiers"], [])
        self.assertEqual(self.api.requests(), before + 0)
        self.assertEqual(self.x_cache("/users/77"), "MISS")
        # A write's tag invalidation is a record: the entry is held but unreachable, and
        # GET /entries says so.
        r = self.gw.req("PUT", "/users/5", headers={"Content-Type": "application/json"},
                        body=b'{"name": "x"}')
        self.assertEqual(r.status // 100, 2, r)
        self.assertTrue(self.admin("GET", "/entries?key=users:5").json()["memory"]["invalidated"])
        self.assertEqual(self.x_cache("/users/5"), "MISS")

    def tag_policies(self):
        d = tempfile.mkdtemp(prefix="cachegw-admin-policies-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        with open(os.path.join(d, "users.lua"), "w") as f:
            f.write('route "GET /users/:id" { key = "users:{id}", ttl = 120,\n'
                    '  stale_while_revalidate = 5,\n'
                    '  tags = { "user-{id}", "users" } }\n'
                    'route "GET /posts" { key = "posts:{query}", ttl = 60 }\n'
                    'route "PUT /users/:id" { invalidate_tags = { "user-{id}" } }\n')
        return d

    def list_all(self, query, limit):
        """Every page of a listing: the keys in order, and the page sizes."""
        keys, sizes, cursor = [], [], None
        for _ in range(10000):
            q = query + "&limit=%d" % limit + ("&cursor=" + cursor if cursor else "")
            r = self.admin("GET", "/entries?" + q.lstrip("&"))
            self.assertEqual(r.status, 200, r)
            page = r.json()
            self.assertEqual(page["limit"], limit)
            sizes.append(len(page["entries"]))
            keys += [(e["tier"], e["key"]) for e in page["entries"]]
            cursor = page["cursor"]
            if cursor is None:
                return keys, sizes
        self.fail("the listing never ended")

    def test_entries_listing_is_paged_and_bounded(self):
        self.start(env={"POLICIES_DIR": self.tag_policies()})
        paths = ["/users/%d" % i for i in range(1, 13)] + ["/posts?page=1", "/posts?page=2"]
        self.cache(*paths)
        keys, sizes = self.list_all("prefix=users:", 5)
        self.assertEqual(sorted(k for _, k in keys), sorted("users:%d" % i for i in range(1, 13)))
        self.assertEqual(len(keys), 12)  # no duplicates while nothing changes
        self.assertTrue(all(n <= 5 for n in sizes), sizes)
        self.assertEqual({t for t, _ in keys}, {"memory"})
        keys, sizes = self.list_all("", 1)  # a bucket of two is carried, never a page of two
        self.assertEqual(len(keys), 14)
        self.assertEqual(set(sizes[:-1]), {1})
        keys, _ = self.list_all("", 1000)
        self.assertEqual(len(keys), 14)
        # 200 entries in 64 shards of 16 buckets: some buckets hold two, which one-entry
        # pages carry in the cursor.
        for i in range(100, 300):
            self.assertEqual(self.gw.get("/posts?page=%d" % i).status, 200)
        cursor, seen, carried = None, [], 0
        while True:
            page = self.admin("GET", "/entries?prefix=posts:&limit=1"
                              + ("&cursor=" + cursor if cursor else "")).json()
            self.assertLessEqual(len(page["entries"]), 1, page)
            seen += [e["key"] for e in page["entries"]]
            cursor = page["cursor"]
            if cursor is None:
                break
            carried += "." in cursor
        self.assertEqual(len(seen), 202)  # with posts:page=1 and posts:page=2
        self.assertEqual(len(set(seen)), 202)
        self.assertGreater(carried, 0)
        r = self.admin("GET", "/entries")  # defaults: everything, limit 100
        self.assertEqual(r.json()["limit"], 100)
        # 214 entries: a first page of at most 100 (a bucket that would not fit waits for
        # the next page), and more to come.
        self.assertTrue(90 <= len(r.json()["entries"]) <= 100, len(r.json()["entries"]))
        self.assertIsNotNone(r.json()["cursor"])
        r = self.admin("GET", "/entries?prefix=users:3")
        e = [x for x in r.json()["entries"] if x["key"] == "users:3"][0]
        self.assertEqual((e["status"], e["tags"]), (200, ["user-3", "users"]))
        self.assertEqual(self.admin("GET", "/entries?prefix=nothing:").json(),
                         {"entries": [], "limit": 100, "cursor": None})

    def test_entries_bad_input_is_400(self):
        self.start()
        for q, msg in (("cursor=mz", "cursor"), ("cursor=m0.0g", "cursor"), ("cursor=m", "cursor"),
                       ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=abc", "limit"),
                       ("limit=-1", "limit"), ("limit=", "limit"), ("cursor=zz", "cursor"),
                       ("cursor=r5", "cursor"),  # a Redis cursor without a Redis tier
                       ("cursor=mffffffffffffffffff", "cursor"),
                       ("cursor=m1000000000000000", "cursor"),
                       ("key=a&key=b", "more than once"), ("key=a&prefix=b", "one of"),
                       ("key=a&url=/b", "one of"), ("key=", "empty"), ("key=a%01b", "control"),
                       ("key=%FF", "UTF-8"), ("url=users/5", "path-absolute")):
            r = self.admin("GET", "/entries?" + q)
            self.assertEqual(r.status, 400, (q, r))
            self.assertIn(msg, r.json()["error"], q)
        r = self.admin("POST", "/entries?key=a")
        self.assertEqual((r.status, r.header("allow")), (405, "GET, HEAD"))
        self.assertEqual(self.admin("GET", "/entries?key=a", token=None).status, 401)
        alice = {"Authorization": "Bearer alice-token", "X-User-Id": "1"}
        self.gw.get("/notifications", headers=alice)
        r = self.admin("GET", "/entries?url=/notifications")
        self.assertEqual(r.status, 422, r)

    def test_redis_down_is_said_not_hidden(self):
        # A Redis tier that is configured but never answers (nothing listens there).
        self.start(env={"REDIS_URL": "redis://127.0.0.1:%d/0" % free_port(),
                        "REDIS_CONNECT_TIMEOUT_MS": "200"})
        self.cache("/users/5", "/users/6")
        out = self.purge("key", "users:5")
        self.assertEqual(out["removed"], {"memory": 1, "redis": "unavailable"})
        self.assertEqual(out["variants_removed"], {"memory": 0, "redis": "recorded"})
        self.assertEqual(self.purge("prefix", "users:")["removed"],
                         {"memory": 1, "redis": "recorded"})
        self.cache("/users/7")
        e = self.admin("GET", "/entries?key=users:7").json()
        self.assertEqual(e["tiers"], ["memory"])
        self.assertEqual(e["redis_error"], "the Redis tier is unavailable")
        page = self.admin("GET", "/entries?limit=1000").json()
        self.assertEqual(page["cursor"], "r0")  # memory done, Redis next
        r = self.admin("GET", "/entries?limit=1000&cursor=r0")
        self.assertEqual(r.status, 503, r)
        self.assertIn("retry with the same cursor", r.json()["error"])
        r = self.admin("POST", "/purge/all")
        self.assertEqual(r.json()["removed"], {"memory": 1, "redis": "unavailable"})

    # ---- purge-all ----

    def test_purge_all_memory_only(self):
        gw = self.start()
        before = self.cache("/users/1", "/users/2", "/posts")
        r = self.admin("POST", "/purge/all")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"purged": "all", "removed": {"memory": 3}})
        for p in ("/users/1", "/users/2", "/posts"):
            self.assertEqual(self.x_cache(p), "MISS", p)
        self.assertEqual(self.api.requests(), before + 3)
        self.assertEqual(self.admin("POST", "/purge/all", "{}").json()["removed"],
                         {"memory": 3})  # the three just refilled
        self.assertRegex(gw.output(), r"INFO\s+admin purge: all from 127\.0\.0\.1 \(memory: 3")
        r = self.admin("POST", "/purge/all", "not json")
        self.assertEqual(r.status, 400, r)
        self.assertIn("takes no value", r.json()["error"])
        r = self.admin("GET", "/purge/all")
        self.assertEqual((r.status, r.header("allow")), (405, "POST"))

    # ---- bad requests ----

    def test_malformed_requests_are_400_and_purge_nothing(self):
        self.start()
        before = self.cache("/users/3")
        cases = [
            ("/purge/key", "not json"),
            ("/purge/key", "key=users:3"),
            ("/purge/key", '{"key": "users:3"'),
            ("/purge/key", '{"key": "users:3",}'),
            ("/purge/key", '{"key": "users:3"} x'),
            ("/purge/key", '["users:3"]'),
            ("/purge/key", '{"key": "bad \\q escape"}'),
            ("/purge/key", '{"key": "\\ud800"}'),
            ("/purge/key", '{}'),
            ("/purge/key", '{"prefix": "users:"}'),
            ("/purge/key", '{"key": ""}'),
            ("/purge/key", '{"key": null}'),
            ("/purge/key", '{"key": 3}'),
            ("/purge/key", '{"key": "users:3", "key": "users:4"}'),
            ("/purge/key", '{"key": "users:3\\n"}'),
            ("/purge/key", '{"key": "users:\\u0000"}'),
            ("/purge/key", '{"key": "users:3\x01"}'),
            ("/purge/key", json.dumps({"key": "u" * 4097})),
            ("/purge/key", ""),
            ("/purge/key?key=", ""),
            ("/purge/key?key=users:3&key=users:4", ""),
            ("/purge/key?key=users%3A3", '{"key": "users:3"}'),
            ("/purge/key?key=users%0A3", ""),
            ("/purge/prefix", '{"prefix": ""}'),
            ("/purge/tag", '{"tag": "a\\tb"}'),
            ("/purge/url", '{"url": "http://example.com/users/3"}'),
            ("/purge/url", '{"url": "//example.com/users/3"}'),
            ("/purge/url", '{"url": "users/3"}'),
            ("/purge/url", '{"url": "/users/3#frag"}'),
            ("/purge/url", '{"url": "/users/ 3"}'),
        ]
        for path, body in cases:
            r = self.admin("POST", path, body)
            self.assertEqual(r.status, 400, (path, body, r))
            err = r.json()["error"]
            self.assertIsInstance(err, str)
            self.assertTrue(err, (path, body))
        # A 4096-byte key is fine.
        self.assertEqual(self.admin("POST", "/purge/key", {"key": "k" * 4096}).status, 200)
        self.assertEqual(self.x_cache("/users/3"), "HIT")
        self.assertEqual(self.api.requests(), before)

    def test_error_messages_say_what_is_wrong(self):
        self.start()
        self.assertIn("missing field 'key'",
                      self.admin("POST", "/purge/key", '{"k": "x"}').json()["error"])
        self.assertIn("invalid JSON", self.admin("POST", "/purge/key", "{").json()["error"])
        self.assertIn("too long",
                      self.admin("POST", "/purge/key", {"key": "u" * 5000}).json()["error"])
        self.assertIn("control character",
                      self.admin("POST", "/purge/key", {"key": "a\x7fb"}).json()["error"])
        self.assertIn("path-absolute",
                      self.admin("POST", "/purge/url", {"url": "x"}).json()["error"])

    # ---- the JSON library (jansson, src/http/admin_json.c) ----

    def test_strict_json_rules_of_the_library(self):
        """Duplicates anywhere, nesting past 32, invalid UTF-8 (in the body or
        the query parameter) and "\\u0000" are refused with a message saying
        so, and purge nothing."""
        self.start()
        before = self.cache("/users/3")

        def error(path, body):
            r = self.admin("POST", path, body)
            self.assertEqual(r.status, 400, (path, body, r))
            return r.json()["error"]

        # A duplicate name in another member, even a nested one: two parsers
        # keeping different copies would disagree about the request.
        for body in ('{"key": "users:3", "note": 1, "note": 2}',
                     '{"key": "users:3", "x": {"a": 1, "a": 1}}'):
            self.assertIn("more than once", error("/purge/key", body), body)
        deep = '{"key": "users:3", "x": ' + "[" * 32 + "]" * 32 + "}"
        self.assertIn("nested deeper than 32", error("/purge/key", deep))
        self.assertIn("invalid JSON", error("/purge/key", b'{"key": "users:\xff"}'))
        self.assertIn("invalid JSON", error("/purge/key", b'{"key": "users:\xc0\xaf"}'))
        self.assertIn("must be UTF-8", error("/purge/key?key=users%3A%FF", ""))
        # NUL-safe: the value is not cut at the NUL, it is refused for it.
        self.assertIn("control character (byte 6)",
                      error("/purge/key", '{"key": "users:\\u00003"}'))
        # The library's message comes through, cleaned to printable ASCII.
        err = error("/purge/key", b'{"key": \x01}')
        self.assertRegex(err, r"^invalid JSON body: .+ at byte \d+ \(expected")
        self.assertTrue(all(" " <= c < "\x7f" for c in err), err)
        self.assertEqual(self.x_cache("/users/3"), "HIT")
        self.assertEqual(self.api.requests(), before)

        # 31 levels inside the object (32 with it) are fine, as are members
        # the API does not read.
        ok = '{"key": "users:3", "x": ' + "[" * 31 + "]" * 31 + ', "y": null}'
        r = self.admin("POST", "/purge/key", ok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.x_cache("/users/3"), "MISS")

    def test_answers_are_written_as_valid_json(self):
        """Values with quotes, backslashes, non-ASCII and escapes come back
        exactly, in the one-line format the API has always written."""
        self.start()
        value = 'odd "key" \\ é \u2603 \U0001f600 /'
        r = self.admin("POST", "/purge/key", {"key": value})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["key"], value)
        self.assertTrue(r.body.startswith(b'{"purged": "key", "key": "odd \\"key\\" \\\\ '), r)
        self.assertTrue(r.body.endswith(b'}}\n'), r)
        self.assertEqual(r.body.count(b"\n"), 1)
        r = self.admin("POST", "/purge/key", "{}")
        self.assertEqual(r.body, b'{"error": "missing field \'key\' (expected {\\"key\\": '
                                 b'\\"...\\"})", "status": 400}\n')

    def test_body_limit_is_413(self):
        gw = self.start()
        before = self.cache("/users/4")
        big = json.dumps({"key": "users:4", "pad": "p" * (17 * 1024)})
        r = self.admin("POST", "/purge/key", big)
        self.assertEqual(r.status, 413, r)
        self.assertIn("too large", r.json()["error"])
        # Chunked, so the size is only known while reading it.
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            conn.request("POST", "/purge/key", body=iter([big[:8000].encode(),
                                                          big[8000:].encode()]),
                         headers={"Authorization": "Bearer " + self.token},
                         encode_chunked=True)
            resp = conn.getresponse()
            self.assertEqual(resp.status, 413)
            resp.read()
        finally:
            conn.close()
        # Authentication is still checked first.
        self.assertEqual(self.admin("POST", "/purge/key", big, token=None).status, 401)
        self.assertEqual(self.x_cache("/users/4"), "HIT")
        self.assertEqual(self.api.requests(), before)
        self.assertTrue(gw.alive())

    def test_unknown_path_is_404_and_wrong_method_405(self):
        self.start()
        for path in ("/", "/purge", "/purge/", "/purge/keys", "/purge/key/x", "/admin",
                     "/health"):
            r = self.admin("POST", path, {"key": "x"})
            self.assertEqual(r.status, 404, path)
            self.assertIn("error", r.json())
        for method in ("GET", "PUT", "DELETE"):
            r = self.admin(method, "/purge/key?key=users:1")
            self.assertEqual(r.status, 405, method)
            self.assertEqual(r.header("allow"), "POST")
        r = self.admin("POST", "/admin/health")
        self.assertEqual(r.status, 405)
        self.assertIn("GET", r.header("allow"))

    # ---- keep-alive, logging, secrets ----

    def test_keep_alive_is_kept(self):
        self.start()
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            r1 = self.admin("GET", "/admin/health", conn=conn)
            sock = conn.sock
            self.assertIsNotNone(sock)
            r2 = self.admin("POST", "/purge/key", {"key": "users:1"}, conn=conn)
            r3 = self.admin("POST", "/purge/key", "{", conn=conn)
            r4 = self.admin("POST", "/purge/key", {"key": "users:1"}, token="nope", conn=conn)
            self.assertEqual([r1.status, r2.status, r3.status, r4.status], [200, 200, 400, 403])
            for r in (r1, r2, r3, r4):
                self.assertNotEqual((r.header("connection") or "").lower(), "close", r)
            self.assertIs(conn.sock, sock)  # one connection for all four
        finally:
            conn.close()

    def test_one_log_line_per_purge_and_never_the_token(self):
        gw = self.start()
        self.purge("key", "users:1")
        self.purge("prefix", "posts:")
        self.purge("tag", "t1")
        self.purge("url", "/users/2")
        self.admin("POST", "/purge/key", "{")                          # 400: not a purge
        self.admin("POST", "/purge/key", {"key": "users:1"}, token=None)  # 401
        self.admin("GET", "/admin/health")
        out = gw.output()
        lines = [l for l in out.splitlines() if "admin purge:" in l]
        self.assertEqual(len(lines), 4, lines)
        for line, kind in zip(lines, ("key 'users:1'", "prefix 'posts:'", "tag 't1'",
                                      "url '/users/2' (key 'users:2')")):
            self.assertRegex(line, r"^\S+ INFO\s+admin purge: " + re.escape(kind))
        self.assertNotIn(self.token, out)
        self.assertNotIn(self.token[4:], out)

    def test_stop_is_clean_with_the_admin_listener(self):
        gw = self.start()
        self.purge("url", "/users/1")  # the admin thread now owns a Lua host
        self.assertEqual(gw.stop(), 0)
        self.assertIn("stopped cleanly", gw.output())
        self.assertNotIn("Sanitizer", gw.output())  # with a CACHEGW_SANITIZE build
        self.assertNotIn("admin listener:", gw.output())  # no libmicrohttpd complaint
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.admin_port), timeout=2).close()


class AdminRedisTest(GatewayTestCase):
    """With the Redis tier: a purge on one instance reaches Redis and the other
    instances' memory tiers."""

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
        self.token = "adm-" + secrets.token_hex(16)
        self.admin_port = free_port()
        env = {"REDIS_URL": self.redis.url(), "DEFAULT_TTL": "0"}
        self.a = self.track(Gateway(self.api.url, env=dict(env, ADMIN_TOKEN=self.token,
                                                           ADMIN_PORT=str(self.admin_port))))
        self.b = self.track(Gateway(self.api.url, env=dict(env, ADMIN_TOKEN=None)))
        for g in (self.a, self.b):
            wait_until(lambda: g.health_cache()["backend"] == "redis", what="redis backend")
        wait_until(lambda: self.redis.cmd("PUBSUB", "NUMSUB", "cachegw:invalidate")[1] >= 2,
                   timeout=5, what="both instances subscribed")

    def tearDown(self):
        try:
            stop_and_check_sanitizers(self)
        finally:
            super().tearDown()

    def cached_on_both(self, path, key):
        self.a.get(path)
        wait_until(lambda: self.redis.cmd("EXISTS", "cachegw:c:" + key) == 1, timeout=5,
                   what=key + " in Redis")
        self.b.get(path)  # from Redis into B's memory tier
        self.assertEqual(self.b.get(path).header("x-cache"), "HIT")
        self.assertEqual(self.a.get(path).header("x-cache"), "HIT")

    def b_misses(self, path):
        wait_until(lambda: self.b.get(path).header("x-cache") == "MISS", timeout=2,
                   interval=0.005, what="instance B to drop " + path)

    def purge(self, kind, value):
        r = request(self.admin_port, "POST", "/purge/" + kind,
                    headers={"Authorization": "Bearer " + self.token},
                    body=json.dumps({kind: value}).encode())
        self.assertEqual(r.status, 200, r)

    def test_purge_key_reaches_redis_and_other_instances(self):
        self.cached_on_both("/users/31", "users:31")
        self.purge("key", "users:31")
        wait_until(lambda: self.redis.cmd("EXISTS", "cachegw:c:users:31") == 0, timeout=5,
                   what="users:31 deleted from Redis")
        # B's copy goes too (pub/sub), and Redis has no copy to refill it from.
        self.b_misses("/users/31")

    def test_purge_url_and_prefix_reach_other_instances(self):
        self.cached_on_both("/users/32", "users:32")
        self.cached_on_both("/users/33", "users:33")
        self.purge("url", "/users/32")
        self.b_misses("/users/32")
        self.purge("prefix", "users:33")
        self.b_misses("/users/33")
        self.assertNotIn("Sanitizer", self.a.output() + self.b.output())

    def admin(self, method, path, body=None):
        return request(self.admin_port, method, path,
                       headers={"Authorization": "Bearer " + self.token}, body=body)

    def c_keys(self):
        """The cache entries in Redis (test-side only: the gateway never runs KEYS)."""
        return sorted(k.decode() for k in self.redis.cmd("KEYS", "cachegw:c:*"))

    def commandstats(self):
        info = self.redis.cmd("INFO", "commandstats").decode()
        return {m.group(1): int(m.group(2))
                for m in re.finditer(r"cmdstat_(\w+):calls=(\d+)", info)}

    def test_entries_in_both_tiers_and_a_scan_listing(self):
        for i in range(40, 46):
            self.cached_on_both("/users/%d" % i, "users:%d" % i)
        self.redis.cmd("CONFIG", "RESETSTAT")
        r = self.admin("GET", "/entries?key=users:41")
        self.assertEqual(r.status, 200, r)
        e = r.json()
        self.assertEqual(e["tiers"], ["memory", "redis"])
        self.assertEqual(e["redis"]["status"], 200)
        self.assertEqual(e["redis"]["size"], e["memory"]["size"])
        self.assertEqual(e["redis"]["stored_at"], e["memory"]["stored_at"])
        # Only in Redis: B filled it, A's memory never held it.
        self.b.get("/users/47")
        wait_until(lambda: self.redis.cmd("EXISTS", "cachegw:c:users:47") == 1, timeout=5,
                   what="users:47 in Redis")
        e = self.admin("GET", "/entries?key=users:47").json()
        self.assertEqual(e["tiers"], ["redis"])
        # A look is not a read: no LRU, no hit or miss counted, nothing deleted.
        self.assertEqual(self.a.get("/users/47").header("x-cache"), "HIT")
        # Listing: the memory tier's pages, then Redis's (SCAN with MATCH and COUNT).
        seen, cursor, pages = [], None, 0
        while True:
            q = "/entries?prefix=users:4&limit=2" + ("&cursor=" + cursor if cursor else "")
            page = self.admin("GET", q).json()
            self.assertLessEqual(len(page["entries"]), 2, page)
            seen += [(x["tier"], x["key"]) for x in page["entries"]]
            cursor, pages = page["cursor"], pages + 1
            if cursor is None:
                break
        want = ["users:%d" % i for i in range(40, 46)] + ["users:47"]
        self.assertEqual(sorted({k for t, k in seen if t == "redis"}), want)
        self.assertEqual(sorted({k for t, k in seen if t == "memory"}), want)
        self.assertGreater(pages, 3)
        stats = self.commandstats()
        self.assertGreater(stats.get("scan", 0), 0)
        self.assertNotIn("keys", stats)
        # SCAN returns whole hash buckets, so a reply can exceed COUNT: what does not fit
        # the page rides in the cursor, and every page stays within limit.
        args = []
        for i in range(300):
            args += ["cachegw:c:bulk:%d" % i, "x"]
        self.redis.cmd("MSET", *args)
        for limit in (50, 7, 1):
            cursor, keys, carried = "r0", [], 0
            while cursor:
                page = self.admin("GET", "/entries?prefix=bulk:&limit=%d&cursor=%s"
                                  % (limit, cursor)).json()
                self.assertLessEqual(len(page["entries"]), limit, page)
                keys += [x["key"] for x in page["entries"]]
                cursor = page["cursor"]
                carried += bool(cursor and "." in cursor)
            self.assertEqual(sorted(keys), sorted("bulk:%d" % i for i in range(300)), limit)
        # 300 keys in about 512 buckets share some: one-key pages had keys to carry.
        self.assertGreater(carried, 0)
        # The Redis phase refuses a cursor that is not SCAN's.
        for bad in ("r12x", "r", "re", "r0.zz", "r0.abc", "r0..", "rx.00", "r0." + "00" * 2000):
            r = self.admin("GET", "/entries?cursor=" + bad)
            self.assertEqual(r.status, 400, (bad, r))

    def test_purge_answers_count_redis(self):
        self.cached_on_both("/users/34", "users:34")
        r = self.admin("POST", "/purge/key", json.dumps({"key": "users:34"}).encode())
        self.assertEqual(r.json()["removed"], {"memory": 1, "redis": 1})
        self.assertEqual(r.json()["variants_removed"], {"memory": 0, "redis": "recorded"})
        r = self.admin("POST", "/purge/key", json.dumps({"key": "users:34"}).encode())
        self.assertEqual(r.json()["removed"], {"memory": 0, "redis": 0})
        r = self.admin("POST", "/purge/prefix?prefix=users:")
        self.assertEqual(r.json()["removed"], {"memory": 0, "redis": "recorded"})
        self.b_misses("/users/34")

    def test_redis_reads_are_exact_about_odd_values(self):
        # A value that does not decode is reported, and left alone (a look deletes nothing).
        self.redis.cmd("SET", "cachegw:c:bad", "not a cache object")
        e = self.admin("GET", "/entries?key=bad").json()
        self.assertEqual((e["tiers"], e["redis_error"]), ([], "the stored value does not decode"))
        self.assertEqual(self.redis.cmd("EXISTS", "cachegw:c:bad"), 1)
        # Glob characters in a listing prefix match themselves only.
        self.redis.cmd("MSET", "cachegw:c:g*1", "v", "cachegw:c:gx1", "v", "cachegw:c:g?2", "v",
                       "cachegw:c:g[a]", "v", "cachegw:c:ga", "v")
        for prefix, want in (("g*", ["g*1"]), ("g?", ["g?2"]), ("g[a", ["g[a]"]),
                             ("g", ["g*1", "g?2", "g[a]", "ga", "gx1"])):
            q = "/entries?cursor=r0&limit=1000&prefix=" + urllib.parse.quote(prefix, safe="")
            keys = []
            while q:
                page = self.admin("GET", q).json()
                keys += [x["key"] for x in page["entries"]]
                q = page["cursor"] and (q.split("&cursor=")[0] + "&cursor=" + page["cursor"])
            self.assertEqual(sorted(keys), want, prefix)

    def test_purge_all_walks_many_batches(self):
        n = 2500  # SCAN COUNT 1000: several batches, UNLINKs in flight while the walk goes on
        for start in range(0, n, 500):
            args = []
            for i in range(start, start + 500):
                args += ["cachegw:c:junk:%d" % i, "x"]
            self.redis.cmd("MSET", *args)
        self.redis.cmd("SET", "cachegw:{inv}:floor", "1")
        r = self.admin("POST", "/purge/all")
        self.assertEqual(r.json()["removed"], {"memory": 0, "redis": n})
        self.assertEqual(self.c_keys(), [])
        self.assertEqual(self.redis.cmd("GET", "cachegw:{inv}:floor"), b"1")

    def test_purge_all_reaches_redis_and_other_instances(self):
        for i in range(50, 55):
            self.cached_on_both("/users/%d" % i, "users:%d" % i)
        self.purge("tag", "some-tag")  # creates bookkeeping under {inv}
        wait_until(lambda: self.redis.cmd("EXISTS", "cachegw:{inv}:t") == 1, timeout=5,
                   what="the tag record")
        self.redis.cmd("SET", "not-ours", "1")
        self.redis.cmd("CONFIG", "RESETSTAT")
        n = len(self.c_keys())
        self.assertEqual(n, 5)
        r = self.admin("POST", "/purge/all")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"purged": "all", "removed": {"memory": 5, "redis": 5}})
        self.assertEqual(self.c_keys(), [])
        self.assertEqual(self.redis.cmd("EXISTS", "cachegw:{inv}:t"), 1)  # bookkeeping stays
        self.assertEqual(self.redis.cmd("GET", "not-ours"), b"1")
        stats = self.commandstats()
        self.assertIn("unlink", stats)
        self.assertNotIn("flushdb", stats)
        self.assertNotIn("flushall", stats)
        for i in range(50, 55):  # B dropped its memory tier on A's message
            self.b_misses("/users/%d" % i)
        self.assertEqual(self.a.get("/users/50").header("x-cache"), "HIT")  # B refilled Redis
        self.assertNotIn("Sanitizer", self.a.output() + self.b.output())


class CheckDumpTest(unittest.TestCase):
    """cachegw --check --dump: the effective configuration with each value's
    source and secrets masked, then the route table, exit 0."""

    def run_dump(self, args, env=None, cwd=None):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("ADMIN_", "REDIS_"))}
        e.update(env or {})
        return subprocess.run([CACHEGW_BIN, "--check", "--dump"] + args, env=e, cwd=cwd,
                              capture_output=True, text=True, timeout=30)

    def options(self, out):
        """{flag: (value, source)} from the configuration part of the dump."""
        found = {}
        for line in out.splitlines():
            m = re.match(r"--([a-z0-9-]+)\s+(\S+)\s+(.*)  \((default|flag|env|\.env)\)$", line)
            if m:
                found[m.group(1)] = (m.group(3), m.group(4))
        return found

    def routes(self, out):
        return [line for line in out.splitlines() if " decided=" in line]

    def test_configuration_sources_and_masked_secrets(self):
        d = tempfile.mkdtemp(prefix="cachegw-dump-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        token = "tok-" + secrets.token_hex(8)
        with open(os.path.join(d, ".env"), "w") as f:
            f.write("DEFAULT_TTL=45\nADMIN_TOKEN=%s\n" % token)
        r = self.run_dump(["--port", "9123", "--policies", os.path.join(SOURCE_DIR, "policies"),
                           "--upstream", "http://127.0.0.1:3999/api"],
                          env={"REDIS_URL": "redis://app:s3cretpw@127.0.0.1:6390/2",
                               "CACHE_MAX_BYTES": "64MiB"}, cwd=d)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("policies OK", r.stdout)
        opts = self.options(r.stdout)
        self.assertEqual(opts["port"], ("9123", "flag"))
        self.assertEqual(opts["cache-max-bytes"], ("67108864 bytes", "env"))
        self.assertEqual(opts["default-ttl"], ("45s", ".env"))
        self.assertEqual(opts["host"], ("0.0.0.0", "default"))
        self.assertEqual(opts["admin-token"], ("(set, masked)", ".env"))
        self.assertEqual(opts["check"], ("true", "flag"))
        self.assertIn("app:", opts["redis-url"][0])
        self.assertEqual(opts["redis-url"][1], "env")
        self.assertEqual(opts["upstream"], ("http://127.0.0.1:3999/api", "flag"))
        for secret in (token, "s3cretpw"):
            self.assertNotIn(secret, r.stdout + r.stderr)
        # Every option of --help is in the dump.
        helptext = subprocess.run([CACHEGW_BIN, "--help"], capture_output=True, text=True).stdout
        flags = set(re.findall(r"^\s+--([a-z0-9-]+)", helptext, re.M)) - {"help", "version"}
        self.assertEqual(flags - set(opts), set())
        self.assertEqual(len(self.routes(r.stdout)), 25)

    def test_route_table_says_c_or_lua(self):
        d = tempfile.mkdtemp(prefix="cachegw-dump-policies-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        with open(os.path.join(d, "p.lua"), "w") as f:
            f.write('route "GET /a/:id" { key = "a:{id}", ttl = 30, stale_while_revalidate = 5,\n'
                    '  stale_if_error = 60, tags = { "a-{id}" } }\n'
                    'route "GET /b/:id" { key = function(req) return "b:" .. req.params.id end,\n'
                    '  ttl = 10 }\n'
                    'route "GET /me" { key = "me:{auth_hash}", per_user = true, ttl = 5 }\n'
                    'route "PUT /a/:id" { invalidate = { "a:{id}", "list:*" },\n'
                    '  invalidate_tags = { "a-{id}" } }\n')
        r = self.run_dump(["--policies", d])
        self.assertEqual(r.returncode, 0, r.stderr)
        routes = self.routes(r.stdout)
        self.assertEqual(len(routes), 4, r.stdout)
        a, b, me, put = routes
        for field in ("GET /a/:id", "key=a:{id}", "ttl=30s", "swr=5s", "sie=60s", "per_user=no",
                      "tags=a-{id}", "decided=C", "p.lua:1)"):
            self.assertIn(field, a)
        self.assertIn("key=(lua function)", b)
        self.assertIn("decided=Lua", b)
        self.assertIn("per_user=yes", me)
        self.assertIn("invalidate=a:{id},list:*", put)
        self.assertIn("invalidate_tags=a-{id}", put)
        self.assertIn("# routes: 4 (3 decided in C, 1 in Lua)", r.stdout)

    def test_dump_needs_check_and_bad_policies_exit_1(self):
        r = subprocess.run([CACHEGW_BIN, "--dump"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--dump only works with --check", r.stderr)
        d = tempfile.mkdtemp(prefix="cachegw-dump-bad-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        with open(os.path.join(d, "p.lua"), "w") as f:
            f.write('route "GET /x" { tll = 5 }\n')
        r = self.run_dump(["--policies", d])
        self.assertEqual(r.returncode, 1)
        self.assertIn("tll", r.stderr)
        self.assertNotIn("# routes", r.stdout)


if __name__ == "__main__":
    import unittest
    unittest.main()
