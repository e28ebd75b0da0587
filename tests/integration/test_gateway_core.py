"""Gateway core: reverse proxy, memory tier, health endpoints, config errors, lifecycle.

Each test starts the real example API and the real cachegw binary on free
loopback ports; the example API's request counter proves what reached it.
"""

import gzip
import http.client
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (CACHEGW_BIN, ExampleAPI, Gateway, GatewayTestCase, request,
                     run_concurrently)

# No route policies in these tests (an empty policies directory): the built-in
# default rules apply.
EMPTY_POLICIES = tempfile.mkdtemp(prefix="cachegw-no-policies-")
CORE_ENV = {"POLICIES_DIR": EMPTY_POLICIES, "DEFAULT_TTL": "60"}


class CoreTest(GatewayTestCase):
    def start(self, env=None, args=None, latency_ms=0):
        self.api = self.track(ExampleAPI(latency_ms=latency_ms))
        e = dict(CORE_ENV)
        e.update(env or {})
        self.gw = self.track(Gateway(self.api.url, env=e, args=args))
        return self.gw

    def test_miss_then_hit_reaches_upstream_once(self):
        gw = self.start()
        before = self.api.requests()
        r1 = gw.get("/users/1")
        r2 = gw.get("/users/1")
        self.assertEqual(r1.status, 200)
        self.assertEqual(r1.header("x-cache"), "MISS")
        self.assertEqual(r2.header("x-cache"), "HIT")
        self.assertEqual(r1.body, r2.body)
        self.assertIn("hit", r2.header("cache-status"))
        self.assertEqual(self.api.requests() - before, 1)
        self.assertEqual(r2.header("content-type"), "application/json")

    def test_query_string_is_part_of_the_key(self):
        gw = self.start()
        a = gw.get("/posts?page=1")
        b = gw.get("/posts?page=2")
        self.assertEqual(a.header("x-cache"), "MISS")
        self.assertEqual(b.header("x-cache"), "MISS")
        self.assertEqual(gw.get("/posts?page=1").header("x-cache"), "HIT")

    def test_age_grows(self):
        gw = self.start()
        gw.get("/fast")
        time.sleep(2.2)
        r = gw.get("/fast")
        self.assertEqual(r.header("x-cache"), "HIT")
        self.assertGreaterEqual(int(r.header("age")), 2)

    def test_head_is_answered_and_shares_the_get_entry(self):
        gw = self.start()
        before = self.api.requests()
        h1 = gw.req("HEAD", "/users/2")
        self.assertEqual(h1.status, 200)
        self.assertEqual(h1.body, b"")
        self.assertEqual(h1.header("x-cache"), "MISS")
        h2 = gw.req("HEAD", "/users/2")
        self.assertEqual(h2.header("x-cache"), "HIT")
        g = gw.get("/users/2")
        self.assertEqual(g.header("x-cache"), "HIT")
        self.assertEqual(int(h2.header("content-length")), len(g.body))
        self.assertEqual(self.api.requests() - before, 1)

    def test_post_is_forwarded_with_body_and_forwarding_headers(self):
        gw = self.start()
        body = b'{"title": "hello", "n": 1}'
        r = gw.req("POST", "/echo?x=1", headers={"Content-Type": "application/json",
                                                 "X-Custom": "yes", "Host": "api.example.com",
                                                 "X-Forwarded-For": "10.1.2.3"}, body=body)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("x-cache"), "BYPASS")
        echo = r.json()
        self.assertEqual(echo["method"], "POST")
        self.assertEqual(echo["path"], "/echo")
        self.assertEqual(echo["query"], "x=1")
        self.assertEqual(echo["body"], body.decode())
        h = echo["headers"]
        self.assertEqual(h["x-custom"], "yes")
        # The client is no trusted proxy: its X-Forwarded-For is replaced, and its
        # Host never reaches the upstream as X-Forwarded-Host (FORWARDED_HOST unset).
        self.assertEqual(h["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(h["x-forwarded-proto"], "http")
        self.assertNotIn("x-forwarded-host", h)
        self.assertIn("cachegw", h["via"])
        # PUT and DELETE go through too, never cached.
        self.assertEqual(gw.req("PUT", "/echo", body=b"x").json()["method"], "PUT")
        self.assertEqual(gw.req("DELETE", "/echo").json()["method"], "DELETE")

    def test_trusted_proxy_keeps_forwarded_for_and_host_is_pinned(self):
        gw = self.start(env={"TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1",
                             "FORWARDED_HOST": "api.example.com"})
        r = gw.req("POST", "/echo", headers={"X-Forwarded-For": "10.1.2.3",
                                             "Host": "evil.example",
                                             "X-Forwarded-Host": "evil.example"}, body=b"x")
        h = r.json()["headers"]
        self.assertEqual(h["x-forwarded-for"], "10.1.2.3, 127.0.0.1")
        self.assertEqual(h["x-forwarded-host"], "api.example.com")

    def test_hop_by_hop_request_headers_are_stripped(self):
        gw = self.start()
        r = gw.req("GET", "/echo", headers={"Connection": "keep-alive, X-Secret",
                                            "X-Secret": "must-not-pass",
                                            "Keep-Alive": "timeout=5",
                                            "TE": "trailers",
                                            "Proxy-Authorization": "Basic abc",
                                            "X-Kept": "1",
                                            "Cookie": "c=1"})
        h = r.json()["headers"]
        for name in ("x-secret", "keep-alive", "te", "proxy-authorization"):
            self.assertNotIn(name, h)
        self.assertEqual(h["x-kept"], "1")
        self.assertNotIn("must-not-pass", str(h))

    def test_hop_by_hop_response_headers_are_stripped(self):
        gw = self.start()
        r = gw.get("/headers?Proxy-Authenticate=Basic&Keep-Alive=timeout%3D5&X-Kept=1"
                   "&Trailer=X-Checksum")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("x-kept"), "1")
        for name in ("proxy-authenticate", "keep-alive", "trailer"):
            self.assertIsNone(r.header(name), name)
        self.assertIsNone(gw.get("/headers?Proxy-Authenticate=Basic&Keep-Alive=timeout%3D5"
                                 "&X-Kept=1&Trailer=X-Checksum").header("proxy-authenticate"))

    def test_upstream_down_gives_502_quickly(self):
        port = socket.socket()
        port.bind(("127.0.0.1", 0))
        dead = port.getsockname()[1]
        port.close()
        gw = self.track(Gateway(f"http://127.0.0.1:{dead}", env=CORE_ENV))
        t0 = time.monotonic()
        r = gw.get("/users/1")
        self.assertEqual(r.status, 502)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(r.json()["error"], "upstream unavailable")
        # And the gateway keeps working.
        self.assertEqual(gw.get("/health").status, 200)

    def test_upstream_slow_gives_504_at_the_timeout(self):
        gw = self.start(args=["--upstream-timeout-ms", "400"])
        t0 = time.monotonic()
        r = gw.get("/slow?delay_ms=3000")
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 504)
        self.assertEqual(r.json()["error"], "upstream timeout")
        self.assertGreaterEqual(elapsed, 0.35)
        self.assertLess(elapsed, 1.5)

    def test_oversized_value_is_passed_through_not_cached(self):
        gw = self.start(args=["--max-value-size", "1000"])
        before = self.api.requests()
        r1 = gw.get("/bytes/5000")
        r2 = gw.get("/bytes/5000")
        self.assertEqual(len(r1.body), 5000)
        self.assertEqual(r1.body, r2.body)
        self.assertEqual(r2.header("x-cache"), "MISS")
        self.assertEqual(self.api.requests() - before, 2)
        small = gw.get("/bytes/500")
        self.assertEqual(gw.get("/bytes/500").header("x-cache"), "HIT")
        self.assertEqual(len(small.body), 500)

    def test_large_response_streams_through_intact(self):
        gw = self.start(args=["--max-value-size", "65536"])
        n = 8 * 1024 * 1024
        r = gw.get(f"/bytes/{n}", timeout=30)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), n)
        expected = (b"abcdefghijklmnopqrstuvwxyz" * (n // 26 + 1))[:n]
        self.assertEqual(r.body, expected)
        self.assertEqual(r.header("x-cache"), "MISS")

    def test_not_stored_no_store_set_cookie_private(self):
        gw = self.start()
        for path in ("/headers?Cache-Control=no-store", "/headers?Set-Cookie=a%3Db",
                     "/headers?Cache-Control=private"):
            before = self.api.requests()
            gw.get(path)
            r = gw.get(path)
            self.assertEqual(r.header("x-cache"), "MISS", path)
            self.assertEqual(self.api.requests() - before, 2, path)

    def test_credentials_bypass_and_never_read_a_shared_entry(self):
        gw = self.start()
        self.assertEqual(gw.get("/users/4").header("x-cache"), "MISS")
        self.assertEqual(gw.get("/users/4").header("x-cache"), "HIT")
        before = self.api.requests()
        for hdr in ({"Authorization": "Bearer alice"}, {"Cookie": "session=bob"}):
            r = gw.get("/users/4", headers=hdr)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("x-cache"), "BYPASS")
        self.assertEqual(self.api.requests() - before, 2)

    def test_health_endpoints(self):
        gw = self.start()
        r = gw.get("/health")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"status": "ok"})
        gw.get("/users/5")
        gw.get("/users/5")
        gw.get("/users/5")
        h = gw.health_cache()
        self.assertTrue({"status", "backend", "latency_ms", "stats"} <= set(h), h)
        self.assertEqual(h["status"], "healthy")
        self.assertEqual(h["backend"], "memory")
        self.assertIn(h["latency_ms"], (None, 0))
        s = h["stats"]
        self.assertEqual(set(s), {"hits", "misses", "hit_rate_percent", "redis_available",
                                  "memory_cache_size"})
        self.assertEqual(s["hits"], 2)
        self.assertEqual(s["misses"], 1)
        self.assertAlmostEqual(s["hit_rate_percent"], 66.67, places=2)
        self.assertIs(s["redis_available"], False)
        self.assertEqual(s["memory_cache_size"], 1)
        m = gw.get("/metrics")
        self.assertIn("cachegw_cache_hits_total 2", m.body.decode())
        # /health is never proxied.
        before = self.api.requests()
        gw.get("/health")
        self.assertEqual(self.api.requests(), before)

    def test_keep_alive_is_kept(self):
        gw = self.start()
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=5)
        try:
            for _ in range(3):
                r = request(gw.port, "GET", "/users/6", conn=conn)
                self.assertEqual(r.status, 200)
                self.assertNotEqual((r.header("connection") or "").lower(), "close")
            r = request(gw.port, "GET", "/health", conn=conn)
            self.assertEqual(r.status, 200)
        finally:
            conn.close()

    def test_request_body_over_limit_is_rejected(self):
        gw = self.start(args=["--max-body-size", "1024"])
        before = self.api.requests()
        r = gw.req("POST", "/echo", body=b"x" * 5000)
        self.assertEqual(r.status, 413)
        self.assertEqual(self.api.requests(), before)
        self.assertEqual(gw.req("POST", "/echo", body=b"x" * 100).status, 200)

    def test_stampede_on_a_cold_key_reaches_upstream_once(self):
        gw = self.start()
        before = self.api.requests()
        results = run_concurrently(200, lambda i: gw.get("/users/7?delay_ms=300", timeout=20))
        self.assertTrue(all(r.status == 200 for r in results))
        self.assertEqual(len({r.body for r in results}), 1)
        self.assertEqual(self.api.requests() - before, 1)

    def test_slow_upstream_does_not_block_hits(self):
        # One worker: if it ever waited on the network, the hit would queue
        # behind the slow requests.
        gw = self.start(env={"WORKERS": "1"})
        gw.get("/fast")
        slow = []
        threads = [threading.Thread(target=lambda: slow.append(
            gw.get("/slow?delay_ms=1500&n=%d" % i, timeout=10).status)) for i in range(8)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        r = gw.get("/fast")
        self.assertEqual(r.header("x-cache"), "HIT")
        self.assertLess(r.elapsed, 0.2)
        for t in threads:
            t.join()
        self.assertEqual(slow, [200] * 8)

    def test_sigterm_drains_in_flight_requests(self):
        gw = self.start()
        result = {}

        def slow():
            result["r"] = gw.get("/slow?delay_ms=800", timeout=10)

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        gw.send_signal(signal.SIGTERM)
        # While it drains, a new connection is closed at once without an answer.
        time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", gw.port), timeout=2) as s:
            s.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
            t0 = time.monotonic()
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            self.assertEqual(data, b"", "a connection opened during the drain was served")
            self.assertLess(time.monotonic() - t0, 1.0)
        t.join(10)
        self.assertEqual(result["r"].status, 200)
        self.assertEqual(gw.wait(10), 0)
        self.assertIn("draining", gw.output())

    def test_sigterm_right_after_start_with_connections_open_exits_0(self):
        # libmicrohttpd 0.9.75 aborted now and then at SIGTERM ("Failed to remove listen FD
        # from epoll set"): its quiesce raced its worker threads.  Stop a busy gateway many
        # times right after it starts; every exit must be clean.
        self.api = self.track(ExampleAPI())
        for i in range(25):
            gw = Gateway(self.api.url, env=dict(CORE_ENV, WORKERS="2"))
            try:
                socks = [socket.create_connection(("127.0.0.1", gw.port), timeout=2)
                         for _ in range(4)]
                for s in socks:
                    s.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
                gw.send_signal(signal.SIGTERM)
                status = gw.wait(10)
                for s in socks:
                    s.close()
                self.assertEqual(status, 0, f"round {i}: exit {status}\n{gw.output()[-2000:]}")
                self.assertNotIn("Fatal error", gw.output())
            finally:
                gw.stop()


class ConfigErrorTest(unittest.TestCase):
    def run_gw(self, *args, env=None):
        import os
        e = dict(os.environ)
        e.pop("REDIS_URL", None)
        e.update(env or {})
        return subprocess.run([CACHEGW_BIN, *args], capture_output=True, text=True, timeout=10,
                              env=e)

    def test_bad_flags_exit_2_with_one_clear_line(self):
        cases = [
            (["--no-such-flag"], "--no-such-flag"),
            (["--port", "70000"], "--port"),
            (["--port", "-1"], "--port"),
            (["--upstream", "ftp://x"], "--upstream"),
            (["--cache-max-bytes", "-5"], "--cache-max-bytes"),
            (["--max-value-size", "12XB"], "--max-value-size"),
            (["--workers", "many"], "--workers"),
            (["--log-level", "loud"], "--log-level"),
        ]
        for args, needle in cases:
            p = self.run_gw(*args)
            self.assertEqual(p.returncode, 2, args)
            lines = [l for l in p.stderr.splitlines() if l.strip()]
            self.assertEqual(len(lines), 1, (args, p.stderr))
            self.assertIn(needle, lines[0])

    def test_bad_trusted_proxies_exit_2(self):
        p = self.run_gw(env={"TRUSTED_PROXIES": "10.0.0.0/99"})
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("TRUSTED_PROXIES", p.stderr)
        p = self.run_gw("--check", env={"TRUSTED_PROXIES": "not-an-ip"})
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_bad_environment_names_the_variable(self):
        p = self.run_gw(env={"PORT": "abc"})
        self.assertEqual(p.returncode, 2)
        self.assertIn("PORT", p.stderr)

    def test_help_and_version(self):
        p = self.run_gw("--help")
        self.assertEqual(p.returncode, 0)
        for name in ("--port", "PORT", "UPSTREAM_URL", "CACHE_MAX_BYTES", "MAX_VALUE_SIZE",
                     "DEFAULT_TTL", "LOG_LEVEL", "WORKERS", "HOST"):
            self.assertIn(name, p.stdout)
        v = self.run_gw("--version")
        self.assertEqual(v.returncode, 0)
        self.assertIn("cachegw", v.stdout)


class SharedHitAnswerTest(GatewayTestCase):
    """From the 8th hit of an object within one second, its answer is built once per
    representation and second and queued again for the next hits (response_writer.c,
    "hits"): what a client gets must still be exactly its own answer."""

    start = CoreTest.start

    def reused(self, gw):
        text = gw.get("/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith("cachegw_cache_hits_reused_answer_total "):
                return int(float(line.split()[1]))
        self.fail("no cachegw_cache_hits_reused_answer_total in /metrics")

    def test_age_and_ttl_move_on_with_the_clock(self):
        gw = self.start()
        gw.get("/users/1")
        # Enough hits within one second that the answer is kept and queued again.
        first = [gw.get("/users/1") for _ in range(20)]
        ages = {r.header("age") for r in first}
        time.sleep(1.2)
        later = gw.get("/users/1")
        self.assertEqual(later.header("x-cache"), "HIT")
        self.assertGreater(int(later.header("age")), min(int(a) for a in ages), later.headers)
        ttl = lambda r: int(r.header("cache-status").split("ttl=")[1].split(";")[0])
        self.assertLess(ttl(later), max(ttl(r) for r in first))
        self.assertGreater(self.reused(gw), 0, "no hit was answered with a kept answer")

    def test_representations_tiers_and_head_do_not_mix(self):
        gw = self.start(env={"COMPRESS": "gzip", "COMPRESS_MIN_SIZE": "64"})
        path = "/users"  # JSON, about 7 KiB
        size = len(gw.get(path).body)
        self.assertGreater(size, 1024)
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        try:
            for i in range(40):
                gz = i % 3 == 1
                head = i % 3 == 2
                r = request(gw.port, "HEAD" if head else "GET", path, conn=conn,
                            headers={"Accept-Encoding": "gzip"} if gz else {})
                self.assertEqual(r.status, 200)
                self.assertEqual(r.header("x-cache"), "HIT", r.headers)
                if gz:
                    self.assertEqual(r.header("content-encoding"), "gzip", i)
                    self.assertEqual(len(gzip.decompress(r.body)), size)
                else:
                    self.assertIsNone(r.header("content-encoding"), i)
                    self.assertEqual(r.header("content-length"), str(size), i)
                    self.assertEqual(len(r.body), 0 if head else size, i)
        finally:
            conn.close()
        self.assertGreater(self.reused(gw), 0, "no hit was answered with a kept answer")

    def test_a_write_ends_the_shared_answer(self):
        gw = self.start()
        for _ in range(20):
            gw.get("/users/3")
        self.assertGreater(self.reused(gw), 0)
        self.assertEqual(gw.get("/users/3").header("x-cache"), "HIT")
        r = gw.req("PUT", "/users/3", headers={"Content-Type": "application/json"},
                   body=b'{"name": "Shared Answer"}')
        self.assertEqual(r.status, 200)
        after = gw.get("/users/3")
        self.assertNotEqual(after.header("x-cache"), "HIT")
        self.assertIn(b"Shared Answer", after.body)
        self.assertIn(b"Shared Answer", gw.get("/users/3").body)

    def test_many_clients_on_one_entry_while_it_is_replaced(self):
        # Connections share the built answer while writes replace the entry under them:
        # every answer is whole and names the user it was asked for.
        gw = self.start(env={"WORKERS": "4"})
        gw.get("/users/4")
        stop = threading.Event()

        def writer():
            n = 0
            while not stop.is_set():
                gw.req("PUT", "/users/4", headers={"Content-Type": "application/json"},
                       body=b'{"name": "Writer %d"}' % n)
                n += 1
                time.sleep(0.01)
        t = threading.Thread(target=writer)
        t.start()
        try:
            def client(i):
                conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
                bad = 0
                try:
                    for _ in range(150):
                        r = request(gw.port, "GET", "/users/4", conn=conn)
                        if r.status != 200 or b'"id":4' not in r.body or \
                                int(r.header("content-length")) != len(r.body):
                            bad += 1
                finally:
                    conn.close()
                return bad
            bad = run_concurrently(8, client)
        finally:
            stop.set()
            t.join()
        self.assertEqual(sum(bad), 0, bad)
        self.assertTrue(gw.alive())


if __name__ == "__main__":
    unittest.main()
