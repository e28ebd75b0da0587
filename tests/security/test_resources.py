"""Issue 8, items 8, 9, 13 and 14: resources a client can tie up.

- 8: slowloris: header-phase connections are closed at the whole-header
  deadline, and at capacity a new client is still served (public and admin).
- 9: 500 query parameters get 414; 2,000 of them leak nothing; SIGTERM is prompt.
- 13: request bodies buffered before the decision are bounded in total; a GET
  with a body is never answered from, nor stored into, the cache.
- 14: a query of 128 parameters costs at most a few times a normal request.

RSS is read from /proc.  Under AddressSanitizer freed memory sits in a
quarantine, so the gateway gets a small one here (ASAN_OPTIONS), or churn would
look like growth.
"""

import os
import select
import socket
import statistics
import time
import unittest

from secharness import RawConn, SecTestCase, exchange, free_port, get_request

ASAN_SMALL_QUARANTINE = {
    "ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""),
                                           "quarantine_size_mb=1",
                                           "thread_local_quarantine_size_kb=64"])),
}


def open_slow(port, n, first=b"GET /slow HTTP/1.1\r\n"):
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.setblocking(False)
            s.send(first)
            socks.append(s)
        except OSError:
            break
    return socks


class SlowlorisTest(SecTestCase):
    """Item 8."""

    def drip(self, socks, seconds, probe):
        """Sends a header line per second on each socket for `seconds`; calls probe()
        about every half second; returns {socket: time it was closed by the server}."""
        t0 = time.monotonic()
        closed = {}
        next_drip = t0 + 1.0
        next_probe = t0 + 0.3
        while time.monotonic() - t0 < seconds:
            now = time.monotonic()
            if now >= next_probe:
                probe(now - t0)
                next_probe = now + 0.5
            if now >= next_drip:
                for s in socks:
                    if s not in closed:
                        try:
                            s.send(b"X-Drip: 1\r\n")
                        except OSError:
                            closed[s] = now - t0
                next_drip = now + 1.0
            live = [s for s in socks if s not in closed]
            r, _, _ = select.select(live, [], [], 0.05) if live else ([], [], [])
            for s in r:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    closed[s] = time.monotonic() - t0
                # A 408 or similar answer is fine: keep reading until the close.
        return closed

    def run_slowloris(self, port, probe_request, n=80, expect_status=200):
        socks = open_slow(port, n)
        self.assertGreaterEqual(len(socks), 64, "could not open the slow connections")
        probes = []

        def probe(at):
            t = time.monotonic()
            try:
                r, _ = exchange(port, probe_request, timeout=3)
                probes.append((at, r.status if r else None, time.monotonic() - t))
            except OSError as exc:
                probes.append((at, repr(exc), time.monotonic() - t))
        try:
            closed = self.drip(socks, 5.0, probe)
        finally:
            for s in socks:
                s.close()
        for at, status, took in probes:
            self.assertEqual(status, expect_status, f"probe at {at:.1f}s: {probes}")
            self.assertLess(took, 1.0, f"probe at {at:.1f}s took {took:.2f}s: {probes}")
        still_open = len(socks) - len(closed)
        self.assertEqual(still_open, 0, f"{still_open} slow connections outlived the deadline")
        late = [t for t in closed.values() if t > 4.0]
        self.assertEqual(late, [], "slow connections closed long after the 2 s header deadline")

    def test_public_listener(self):
        gw = self.start(env={"MAX_CONNECTIONS": "64", "CLIENT_HEADER_TIMEOUT": "2"})
        self.run_slowloris(gw.port, get_request("/health"))

    def test_slow_bodies_at_capacity(self):
        """A client that completes its headers and then drips its body has no deadline
        (an upload may be slow), but at capacity it is evicted like a slow header
        block, oldest first: new clients are still served."""
        gw = self.start(env={"MAX_CONNECTIONS": "64", "CLIENT_HEADER_TIMEOUT": "2"})
        socks = open_slow(gw.port, 80, first=b"POST /slowbody HTTP/1.1\r\nHost: gw.test\r\n"
                                              b"Content-Length: 4000\r\n\r\nb")
        self.assertGreaterEqual(len(socks), 64, "could not open the slow connections")
        self.sent(len(socks))
        probes = []

        def probe(at):
            t = time.monotonic()
            r, _ = exchange(gw.port, get_request("/health"), timeout=3)
            probes.append((at, r.status if r else None, time.monotonic() - t))
        try:
            closed = self.drip(socks, 4.0, probe)
        finally:
            for s in socks:
                s.close()
        for at, status, took in probes:
            self.assertEqual(status, 200, f"probe at {at:.1f}s: {probes}")
            self.assertLess(took, 1.0, f"probe at {at:.1f}s took {took:.2f}s: {probes}")
        still_open = len(socks) - len(closed)
        self.assertLessEqual(still_open, 64, f"{still_open} slow bodies kept past capacity")
        self.assertGreaterEqual(len(closed), len(socks) - 64)
        self.assertEqual(self.refl.count(path="/slowbody"), 0)

    def test_admin_listener(self):
        admin_port = free_port()
        self.start(env={"ADMIN_TOKEN": "sec-token-8", "ADMIN_PORT": admin_port,
                        "CLIENT_HEADER_TIMEOUT": "2"})
        req = get_request("/admin/health", [("Authorization", "Bearer sec-token-8")],
                          host="127.0.0.1")
        r, _ = exchange(admin_port, req)
        self.assertEqual(r.status, 200, r)
        self.run_slowloris(admin_port, req)


class QueryParamLeakTest(SecTestCase):
    """Item 9."""

    def test_500_params_get_414_without_leaking(self):
        gw = self.start(env=dict(ASAN_SMALL_QUARANTINE, SHUTDOWN_TIMEOUT_MS="10000"))
        target = "/many?" + "&".join(f"p{i}=v{i}" for i in range(500))
        data = get_request(target)
        try:
            r, _ = self.raw(gw, data, timeout=3)
        except OSError as exc:
            self.fail(f"no answer to 500 query parameters: {exc!r}")
        self.assertIsNotNone(r, "the connection was closed without an answer")
        self.assertEqual(r.status, 414, r)

        def burst(n):
            for _ in range(n):
                self.raw(gw, data)
        burst(200)  # warm-up: pools, arenas
        rss0 = gw.rss_kib()
        burst(2000)
        growth_mib = (gw.rss_kib() - rss0) / 1024
        print(f"\n[measured] RSS growth over 2,000 requests of 500 params: {growth_mib:.1f} MiB")
        self.assertLess(growth_mib, 4.0, f"RSS grew by {growth_mib:.1f} MiB")
        self.assertEqual(self.refl.count(path="/many"), 0)
        self.assertEqual(self.get(gw, "/health").status, 200)
        rc, secs = gw.stop(timeout=12)
        print(f"[measured] SIGTERM after the burst: exit {rc} in {secs:.2f}s")
        self.assertEqual(rc, 0)
        self.assertLess(secs, 2.0, "shutdown waited for requests that never finished")

    def test_128_params_are_allowed(self):
        gw = self.start()
        target = "/many128?" + "&".join(f"p{i}=v{i}" for i in range(128))
        r = self.get(gw, target)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["target"], target)


class BufferedBodiesTest(SecTestCase):
    """Item 13."""

    POLICY = {"gb.lua": 'route "GET /gb" { key = "gb:{query}", ttl = 60 }\n'}

    def test_total_buffered_bodies_are_bounded(self):
        # These clients abort their uploads, and a gateway that streams bodies upstream
        # (as nginx does with proxy_request_buffering off) then aborts the upstream request
        # inside its body: the head and the framing it sent are still exact.
        self.allowed_anomalies = ("connection closed inside the body",)
        limit_mib = 32
        gw = self.start(self.POLICY, env=dict(ASAN_SMALL_QUARANTINE,
                                              MAX_BUFFERED_BODIES=f"{limit_mib}MiB"))
        self.get(gw, "/health")
        rss0 = gw.rss_kib()
        n, body_len, send_each = 80, 10 * 1024 * 1024 - 1024, 2 * 1024 * 1024
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
            s.sendall(get_request(f"/gb?c={i}")[:-2] + f"Content-Length: {body_len}\r\n\r\n"
                      .encode())
            s.setblocking(False)
            socks.append(s)
        self.sent(n)
        chunk = b"b" * 65536
        sent = {s: 0 for s in socks}
        answered = {}
        deadline = time.monotonic() + 30
        peak = rss0
        while time.monotonic() < deadline:
            live = [s for s in socks if s not in answered and sent[s] < send_each]
            if not live:
                break
            _, w, _ = select.select([], live, [], 0.2)
            for s in w:
                try:
                    sent[s] += s.send(chunk)
                except BlockingIOError:
                    pass
                except OSError:
                    answered[s] = "closed"
            for s in socks:
                if s in answered:
                    continue
                try:
                    data = s.recv(4096)
                    if data:
                        answered[s] = data.split(b"\r\n", 1)[0]
                except BlockingIOError:
                    pass
                except OSError:
                    answered[s] = "closed"
            peak = max(peak, gw.rss_kib())
        time.sleep(0.5)
        peak = max(peak, gw.rss_kib())
        growth = (peak - rss0) / 1024
        total_sent = sum(sent.values()) / (1 << 20)
        statuses = {}
        for v in answered.values():
            statuses[v] = statuses.get(v, 0) + 1
        print(f"\n[measured] {total_sent:.0f} MiB of bodies in flight on {n} connections: "
              f"RSS +{growth:.0f} MiB (bound {limit_mib} MiB); early answers {statuses}")
        for s in socks:
            s.close()
        self.assertTrue(gw.alive())
        self.assertLess(growth, limit_mib + 40, "buffered bodies are not bounded")
        self.assertEqual(self.get(gw, "/health").status, 200)
        # The aborted uploads are over: nothing is in flight, so SIGTERM is prompt.
        time.sleep(0.5)
        rc, secs = gw.stop(timeout=12)
        print(f"[measured] SIGTERM after 80 aborted uploads: exit {rc} in {secs:.2f}s")
        self.assertEqual(rc, 0)
        self.assertLess(secs, 2.0, "shutdown waited for aborted uploads (in-flight count leak?)")

    def test_get_with_body_never_uses_the_cache(self):
        gw = self.start(self.POLICY)
        # Answered from: a stored entry is not served to a GET with a body.
        self.get(gw, "/gb?x=1")
        self.assertEqual(self.get(gw, "/gb?x=1").header("x-cache"), "HIT")
        r = self.get(gw, "/gb?x=1", body=b"q=secret")
        self.assertNotEqual(r.header("x-cache"), "HIT", r)
        self.assertEqual(r.json()["body_len"], 8, r)
        # Stored into: a GET with a body leaves nothing for a plain GET.
        a = self.get(gw, "/gb?x=2", body=b"q=other")
        self.assertEqual(a.status, 200)
        b = self.get(gw, "/gb?x=2")
        self.assertEqual(b.json()["body_len"], 0, "a plain GET got the answer to a GET with a body")
        self.assertEqual(self.refl.count(target="/gb?x=2"), 2)


class QueryCostTest(SecTestCase):
    """Item 14."""

    POLICY = {"q.lua": 'route "GET /qc" { key = "qc:{query}", ttl = 60 }\n'}

    def hit_times(self, gw, targets, n=150):
        """Median hit time of each target, measured interleaved (one of each per round) so that
        a load spike on the shared machine falls on both sides of the ratio."""
        times = {t: [] for t in targets}
        self.sent(len(targets) * (n + 1))
        conns = {t: RawConn(gw.port, timeout=5) for t in targets}
        try:
            for t, c in conns.items():
                c.send(get_request(t))
                c.read_response()
            for _ in range(n):
                for t, c in conns.items():
                    data = get_request(t)
                    t0 = time.perf_counter()
                    c.send(data)
                    r = c.read_response()
                    times[t].append(time.perf_counter() - t0)
                    self.assertEqual(r.header("x-cache"), "HIT")
        finally:
            for c in conns.values():
                c.close()
        return [statistics.median(times[t]) for t in targets]

    def test_128_params_cost_a_few_times_a_normal_request(self):
        gw = self.start(self.POLICY, workers=1)
        # Unsorted, percent-encoded, repeated prefixes: what normalisation has to work on.
        params = [f"k%7E{127 - i:03d}=v%2f{i}" for i in range(128)]
        big = "/qc?" + "&".join(params)
        small = "/qc?page=1"
        self.hit_times(gw, [big, small], 20)  # warm-up
        # Best of up to five rounds: a quadratic normalisation is slow in every round, a noisy
        # neighbour on the shared CI machine is not.
        ratios = []
        for _ in range(5):
            t_big, t_small = self.hit_times(gw, [big, small])
            ratios.append(t_big / t_small)
            print(f"\n[measured] hit with 128 params {t_big * 1e6:.0f} us, with 1 param "
                  f"{t_small * 1e6:.0f} us: {ratios[-1]:.1f}x")
            if ratios[-1] < 4.0:
                break
        self.assertLess(min(ratios), 4.0)


if __name__ == "__main__":
    unittest.main()
