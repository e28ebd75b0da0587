"""Named upstreams (issue 13): balancing, Host routing, health, retries, reload, --check.

Real processes: the cachegw binary, several example-API instances on free ports (and, for
the write-safety test, a small socket server that drops a POST mid-body; for connect
timeouts, a loopback listener whose full accept queue drops SYNs).  Instances are
told apart by their own request counters (/__stats, which the example API does not count
itself, and which the active health checks use as their path for the same reason).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import (CACHEGW_BIN, SOURCE_DIR, ExampleAPI, Gateway, GatewayTestCase,
                     free_port, request, run_concurrently, wait_until)


def by_path(api):
    return request(api.port, "GET", "/__stats").json().get("by_path", {})


class UpstreamTestCase(GatewayTestCase):
    def policies(self, text):
        d = tempfile.mkdtemp(prefix="cachegw-upstreams-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        with open(os.path.join(d, "up.lua"), "w") as f:
            f.write(text)
        return d

    def write(self, d, text):
        with open(os.path.join(d, "up.lua"), "w") as f:
            f.write(text)

    def gateway(self, policies_dir, default_url="http://127.0.0.1:9", env=None):
        e = {"POLICIES_DIR": policies_dir, "LUA_DIR": os.path.join(SOURCE_DIR, "lua")}
        e.update(env or {})
        return self.track(Gateway(default_url, env=e))

    def api(self, **kw):
        return self.track(ExampleAPI(**kw))

    def metrics(self, gw):
        return gw.get("/metrics").body.decode()

    def counter(self, gw, family, url):
        m = re.search(r'cachegw_upstream_%s\{upstream="[^"]*",instance="%s"\} (\d+)'
                      % (family, re.escape(url)), self.metrics(gw))
        return int(m.group(1)) if m else None

    def up_value(self, gw, url):
        m = re.search(r'cachegw_upstream_up\{upstream="[^"]*",instance="%s"\} (\d+)'
                      % re.escape(url), self.metrics(gw))
        return int(m.group(1)) if m else None


class BalancingTest(UpstreamTestCase):
    def test_round_robin_follows_weights(self):
        a, b, c = self.api(), self.api(), self.api()
        d = self.policies('''
upstream "users" {
  servers = { "%s", "%s", { url = "%s", weight = 2 } },
}
route "GET /users/:id" { upstream = "users", bypass = true }
''' % (a.url, b.url, c.url))
        gw = self.gateway(d)
        for i in range(200):
            r = gw.get("/users/%d" % (i % 5 + 1))
            self.assertEqual(r.status, 200, r)
        counts = [a.requests(), b.requests(), c.requests()]
        # Smooth weighted round robin is exact over whole cycles: 1:1:2.
        self.assertEqual(counts, [50, 50, 100])

    def test_hash_sends_each_key_to_one_instance(self):
        apis = [self.api() for _ in range(3)]
        d = self.policies('''
upstream "users" { servers = { "%s", "%s", "%s" }, balance = "hash" }
route "GET /users/:id" { upstream = "users", key = "users:{id}", ttl = 0 }
''' % tuple(a.url for a in apis))
        gw = self.gateway(d)
        ids = range(1, 31)
        for _ in range(3):
            for i in ids:
                self.assertEqual(gw.get("/users/%d" % i).status, 200)
        seen = {}
        for n, a in enumerate(apis):
            for path, count in by_path(a).items():
                self.assertNotIn(path, seen, "%s went to two instances" % path)
                seen[path] = n
                self.assertEqual(count, 3, path)
        self.assertEqual(len(seen), 30)
        # Spread: no instance got every key (30 keys over 3 instances).
        self.assertGreater(len(set(seen.values())), 1)

    def test_least_conn_prefers_the_idle_instance(self):
        slow, fast = self.api(latency_ms=400), self.api()
        d = self.policies('''
upstream "u" { servers = { "%s", "%s" }, balance = "least_conn" }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % (slow.url, fast.url))
        gw = self.gateway(d)
        results = []

        def one(i):
            results.append(gw.get("/users/%d" % (i + 1), timeout=10).status)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
            time.sleep(0.03)
        for t in threads:
            t.join()
        self.assertEqual(results, [200] * 12)
        # The slow instance holds its requests longer, so it gets fewer of them.
        self.assertLess(slow.requests(), fast.requests())


class HostRoutingTest(UpstreamTestCase):
    POLICY = '''
upstream "api" { servers = { "%s" } }
upstream "jobs" { servers = { "%s" } }
route "GET /users/:id" { host = "api.example.com", upstream = "api", key = "api:{id}", ttl = 0 }
route "GET /users/:id" { host = "jobs.example.com", upstream = "jobs", key = "jobs:{id}",
                         ttl = 0 }
%s
'''

    def test_two_hosts_two_upstreams_and_unknown_host_404(self):
        api, jobs, default = self.api(), self.api(), self.api()
        d = self.policies(self.POLICY % (api.url, jobs.url, 'unknown_host "reject"'))
        gw = self.gateway(d, default_url=default.url)
        self.assertEqual(gw.get("/users/1", headers={"Host": "API.example.com:8080"}).status,
                         200)
        self.assertEqual(gw.get("/users/2", headers={"Host": "jobs.example.com"}).status, 200)
        r = gw.get("/users/3", headers={"Host": "evil.example.com"})
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json()["error"], "unknown host")
        self.assertIn("detail=unknown-host", r.header("cache-status"))
        self.assertEqual(api.requests(), 1)
        self.assertEqual(jobs.requests(), 1)
        self.assertEqual(default.requests(), 0)

    def test_cached_answers_stay_with_their_host(self):
        """The same path on two hosts, cached: each entry holds its own upstream's answer,
        and a hit for one host never serves the other's."""
        api, jobs = Named("api"), Named("jobs")
        self.addCleanup(api.close)
        self.addCleanup(jobs.close)
        d = self.policies((self.POLICY % (api.url, jobs.url, "")).replace("ttl = 0", "ttl = 60"))
        gw = self.gateway(d)
        for _ in range(3):
            for host in ("api", "jobs"):
                r = gw.get("/users/1", headers={"Host": "%s.example.com" % host})
                self.assertEqual((r.status, r.json()["name"]), (200, host), r)
        self.assertEqual(r.header("x-cache"), "HIT")
        self.assertEqual((api.state["requests"], jobs.state["requests"]), (1, 1))

    def test_unknown_host_goes_to_the_default_upstream(self):
        api, jobs, default = self.api(), self.api(), self.api()
        d = self.policies(self.POLICY % (api.url, jobs.url, ""))
        gw = self.gateway(d, default_url=default.url)
        self.assertEqual(gw.get("/users/3", headers={"Host": "other.example.com"}).status, 200)
        self.assertEqual(default.requests(), 1)
        self.assertEqual(api.requests() + jobs.requests(), 0)


class Load:
    """GETs from a few threads until stopped; records every status (and errors as 0)."""

    def __init__(self, gw, path_fmt="/users/%d", threads=4):
        self.gw, self.path_fmt = gw, path_fmt
        self.statuses = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, n):
        i = 0
        while not self.stop_flag.is_set():
            i += 1
            try:
                s = self.gw.get(self.path_fmt % (i % 7 + 1), timeout=10).status
            except OSError:
                s = 0
            with self.lock:
                self.statuses.append(s)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)
        return self.statuses


class HealthTest(UpstreamTestCase):
    def test_kill_instance_under_20s_of_load_then_active_check_brings_it_back(self):
        """The issue's scenario: 20 s of GET load over three instances; one is kill -9'd
        2 s in and restarted on its port about 8 s later.  Every GET of the 20 s is a 2xx,
        the dead instance gets no attempt once marked down, and the active check (not a
        request) brings it back."""
        apis = [self.api() for _ in range(3)]
        victim = apis[1]
        d = self.policies('''
upstream "users" {
  servers = { "%s", "%s", "%s" },
  max_fails = 2, fail_timeout = 30, retries = 2, connect_timeout = 0.5,
  health = { path = "/__stats", interval = 0.2, timeout = 0.1, healthy = 2, unhealthy = 2 },
}
route "GET /users/:id" { upstream = "users", bypass = true }
''' % tuple(a.url for a in apis))
        gw = self.gateway(d)
        wait_until(lambda: all(self.up_value(gw, a.url) == 1 for a in apis),
                   what="three instances up")
        load = Load(gw)
        began = time.monotonic()
        time.sleep(2.0)
        self.assertGreater(victim.requests(), 0)  # it shared the load before
        victim.proc.kill()  # kill -9
        victim.proc.wait()
        wait_until(lambda: self.up_value(gw, victim.url) == 0, timeout=10,
                   what="the killed instance marked down")
        # Past the threshold it gets no more attempts (probes are not counted as requests),
        # for as long as it stays dead.
        sent = self.counter(gw, "requests_total", victim.url)
        time.sleep(4.0)
        self.assertEqual(self.counter(gw, "requests_total", victim.url), sent)
        health = gw.health_cache()
        inst = [u for u in health.get("upstreams", []) if u["url"] == victim.url]
        self.assertEqual(len(inst), 1, health)
        self.assertFalse(inst[0]["up"])
        self.assertIn("DOWN", gw.output())
        # It comes back on the same port, still under load: the active check notices.
        back = self.track(ExampleAPI(port=victim.port))
        wait_until(lambda: self.up_value(gw, victim.url) == 1, timeout=10,
                   what="the restarted instance back up")
        self.assertIn("is UP again (active check)", gw.output())
        inst = [u for u in gw.health_cache()["upstreams"] if u["url"] == victim.url]
        self.assertEqual((inst[0]["up"], inst[0]["downs"], inst[0]["ups"]), (True, 1, 1), inst)
        time.sleep(max(0.0, 20.0 - (time.monotonic() - began)))
        statuses = load.stop()
        self.assertGreaterEqual(time.monotonic() - began, 20.0)
        self.assertGreater(len(statuses), 200)
        self.assertEqual([s for s in statuses if not 200 <= s < 300], [],
                         "failed GETs while an instance died and came back")
        self.assertGreater(back.requests(), 0)  # the load found it again
        # Each transition is logged once, however many requests and probes saw it.
        log = gw.output()
        self.assertEqual(log.count("instance %s is DOWN" % victim.url), 1, log)
        self.assertEqual(log.count("instance %s is UP again" % victim.url), 1, log)
        m = self.metrics(gw)
        self.assertRegex(m, r'cachegw_upstream_down_transitions_total\{upstream="users",'
                            r'instance="%s"\} 1' % re.escape(victim.url))
        self.assertRegex(m, r'cachegw_upstream_up_transitions_total\{upstream="users",'
                            r'instance="%s"\} 1' % re.escape(victim.url))

    def test_deploy_restarting_every_instance_under_load(self):
        apis = [self.api() for _ in range(3)]
        d = self.policies('''
upstream "users" {
  servers = { "%s", "%s", "%s" },
  max_fails = 1, retries = 2, connect_timeout = 0.5,
  health = { path = "/__stats", interval = 0.1, timeout = 0.1, healthy = 1, unhealthy = 1 },
}
route "GET /users/:id" { upstream = "users", bypass = true }
''' % tuple(a.url for a in apis))
        gw = self.gateway(d)
        wait_until(lambda: all(self.up_value(gw, a.url) == 1 for a in apis),
                   what="three instances up")
        load = Load(gw)
        for a in apis:
            time.sleep(0.5)
            a.proc.kill()
            a.proc.wait()
            time.sleep(0.5)
            self.track(ExampleAPI(port=a.port))
            wait_until(lambda: self.up_value(gw, a.url) == 1, timeout=10,
                       what="%s back" % a.url)
        time.sleep(0.5)
        statuses = load.stop()
        self.assertGreater(len(statuses), 100)
        self.assertEqual([s for s in statuses if not 200 <= s < 300], [],
                         "failed GETs during the deploy")

    def test_passive_threshold_takes_a_killed_instance_out_under_load(self):
        """No active checks: three instances under GET load, one kill -9'd.  After max_fails
        (3) failed attempts it is down and gets no attempt at all; every GET is a 2xx.
        Restarted, it comes back through a request after the cool-down (probation)."""
        apis = [self.api() for _ in range(3)]
        victim = apis[2]
        d = self.policies('''
upstream "users" { servers = { "%s", "%s", "%s" }, max_fails = 3, fail_timeout = 4,
                   retries = 2 }
route "GET /users/:id" { upstream = "users", bypass = true }
''' % tuple(a.url for a in apis))
        gw = self.gateway(d)
        load = Load(gw)
        time.sleep(1.0)
        self.assertGreater(victim.requests(), 0)
        victim.proc.kill()
        victim.proc.wait()
        wait_until(lambda: self.up_value(gw, victim.url) == 0, what="the passive threshold")
        sent = self.counter(gw, "requests_total", victim.url)
        failed = self.counter(gw, "failures_total", victim.url)
        # At least the threshold; more only by attempts already started when it was reached
        # (at most one per load thread).
        self.assertTrue(3 <= failed <= 3 + 4, failed)
        self.assertIn("instance %s is DOWN (3 consecutive failures: Couldn't connect"
                      % victim.url, gw.output())
        time.sleep(2.0)  # within the 4 s cool-down
        self.assertEqual(self.counter(gw, "requests_total", victim.url), sent)
        self.assertEqual(self.up_value(gw, victim.url), 0)
        back = self.track(ExampleAPI(port=victim.port))
        wait_until(lambda: self.up_value(gw, victim.url) == 1, timeout=10,
                   what="back after the cool-down")
        self.assertIn("instance %s is UP again (a request succeeded after the cool-down)"
                      % victim.url, gw.output())
        time.sleep(0.5)
        statuses = load.stop()
        self.assertGreater(len(statuses), 100)
        self.assertEqual([s for s in statuses if not 200 <= s < 300], [],
                         "failed GETs while an instance died and came back")
        self.assertGreater(back.requests(), 0)

    def test_a_total_outage_still_sends_and_shows_the_real_error(self):
        """Every instance down: requests still go out (one instance always stays eligible),
        and the client gets the upstream's real error, not a made-up one."""
        dead = ["http://127.0.0.1:%d" % free_port() for _ in range(2)]
        d = self.policies('''
upstream "gone" { servers = { "%s", "%s" }, max_fails = 1, fail_timeout = 60, retries = 1 }
route "GET /gone/:id" { upstream = "gone", bypass = true }
''' % tuple(dead))
        gw = self.gateway(d)
        r = gw.get("/gone/1")
        self.assertEqual(r.status, 502, r)
        self.assertEqual([self.up_value(gw, u) for u in dead], [0, 0])
        sent = sum(self.counter(gw, "requests_total", u) for u in dead)
        self.assertEqual(sent, 2)  # the first attempt and its retry
        for i in range(3):
            r = gw.get("/gone/%d" % (i + 2))
            self.assertEqual(r.status, 502, r)
            self.assertIn(b"Couldn't connect to server", r.body)
            self.assertIn("detail=upstream-unavailable", r.header("cache-status") or "")
        # Each of the three went out, to both instances (a retry too), though both are down.
        self.assertEqual(sum(self.counter(gw, "requests_total", u) for u in dead), sent + 6)

    def test_timeouts_count_as_failures(self):
        silent = Silent()
        self.addCleanup(silent.close)
        live = self.api()
        d = self.policies('''
upstream "u" { servers = { "%s", "%s" }, max_fails = 2, fail_timeout = 60, timeout = 0.3 }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % (silent.url, live.url))
        gw = self.gateway(d)
        # Round robin: the first and third go to the silent instance and time out (an answer
        # that is late is not retried); the second timeout takes it down.
        statuses = [gw.get("/users/%d" % (i + 1)).status for i in range(4)]
        self.assertEqual(statuses, [504, 200, 504, 200])
        self.assertEqual(self.up_value(gw, silent.url), 0)
        self.assertIn("is DOWN (2 consecutive failures: Timeout was reached)", gw.output())
        sent = self.counter(gw, "requests_total", silent.url)
        for i in range(6):
            self.assertEqual(gw.get("/users/%d" % (i + 1)).status, 200)
        self.assertEqual(self.counter(gw, "requests_total", silent.url), sent)
        self.assertEqual(live.requests(), 2 + 6)

    def test_health_path_answering_500_takes_the_instance_down(self):
        bad = FiveHundred()
        self.addCleanup(bad.close)
        good = self.api()
        d = self.policies('''
upstream "u" { servers = { "%s", "%s" },
  health = { path = "/__stats", interval = 0.1, timeout = 0.1, unhealthy = 2 } }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % (bad.url, good.url))
        gw = self.gateway(d)
        wait_until(lambda: self.up_value(gw, bad.url) == 0, what="instance down by its checks")
        self.assertIn("health check answered 500", gw.output())
        self.assertEqual(self.up_value(gw, good.url), 1)
        before = dict(bad.counts)
        for i in range(10):
            self.assertEqual(gw.get("/users/%d" % (i + 1)).status, 200)
        self.assertEqual(good.requests(), 10)  # none went to the instance that is down
        self.assertEqual({k: v for k, v in bad.counts.items() if k.startswith("/users")},
                         {k: v for k, v in before.items() if k.startswith("/users")})

    def test_fail_on_5xx_counts_server_errors(self):
        bad = FiveHundred()
        self.addCleanup(bad.close)
        d = self.policies('''
upstream "strict" { servers = { "%s" }, max_fails = 2, fail_on_5xx = true }
route "GET /boom" { upstream = "strict", bypass = true }
route "GET /fine" { upstream = "strict", bypass = true }
''' % bad.url)
        gw = self.gateway(d)
        self.assertEqual(gw.get("/boom").status, 500)
        self.assertEqual(gw.get("/fine").status, 200)  # a success resets the count
        self.assertEqual(gw.get("/boom").status, 500)
        self.assertEqual(self.up_value(gw, bad.url), 1)
        self.assertEqual(gw.get("/boom").status, 500)  # 500s are answered, never retried
        self.assertEqual(self.up_value(gw, bad.url), 0)
        self.assertEqual(self.counter(gw, "failures_total", bad.url), 3)
        self.assertEqual(bad.counts.get("/boom"), 3)


class FiveHundred:
    """An instance whose /__stats (the health path the example API answers 200) and /boom
    answer 500, everything else 200."""

    def __init__(self):
        counts = self.counts = {}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                counts[self.path] = counts.get(self.path, 0) + 1
                status = 500 if self.path in ("/__stats", "/boom") else 200
                body = b'{"ok": %s}' % (b"false" if status == 500 else b"true")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class SlowCounter:
    """An instance that answers every request after delay seconds and records how many
    connections were open at once, and how many requests were in progress at once."""

    def __init__(self, delay=0.3):
        lock = threading.Lock()
        st = self.state = {"conns": 0, "max_conns": 0, "active": 0, "max_active": 0,
                           "requests": 0}

        def bump(key, peak, d):
            with lock:
                st[key] += d
                st[peak] = max(st[peak], st[key])

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                bump("conns", "max_conns", 1)
                super().setup()

            def finish(self):
                try:
                    super().finish()
                finally:
                    bump("conns", "max_conns", -1)

            def do_GET(self):
                bump("active", "max_active", 1)
                with lock:
                    st["requests"] += 1
                try:
                    time.sleep(delay)
                    body = b'{"ok": true}'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    bump("active", "max_active", -1)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class ConnectionBoundTest(UpstreamTestCase):
    def slow(self, delay):
        s = SlowCounter(delay)
        self.addCleanup(s.close)
        return s

    def burst(self, gw, n, path="/users/%d"):
        return run_concurrently(n, lambda i: gw.get(path % (i + 1), timeout=15))

    def test_requests_over_the_bound_wait_and_the_instance_never_sees_more(self):
        slow = self.slow(0.3)
        d = self.policies('''
upstream "u" { servers = { "%s" }, max_connections = 2, connect_timeout = 5, timeout = 10 }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % slow.url)
        gw = self.gateway(d)
        began = time.monotonic()
        results = self.burst(gw, 8)
        self.assertEqual([r.status for r in results], [200] * 8, results)
        self.assertEqual(slow.state["requests"], 8)
        # The bound holds at the socket: never more than 2 connections, 2 requests at once,
        # so 8 requests of 0.3 s take at least 4 rounds.
        self.assertLessEqual(slow.state["max_conns"], 2, slow.state)
        self.assertEqual(slow.state["max_active"], 2, slow.state)
        self.assertGreaterEqual(time.monotonic() - began, 1.1)

    def test_without_a_bound_the_same_burst_goes_out_at_once(self):
        # The control for the test above: it would see the burst if the bound did nothing.
        slow = self.slow(0.3)
        d = self.policies('''
upstream "u" { servers = { "%s" }, connect_timeout = 5, timeout = 10 }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % slow.url)
        gw = self.gateway(d)
        results = self.burst(gw, 8)
        self.assertEqual([r.status for r in results], [200] * 8, results)
        self.assertGreater(slow.state["max_active"], 2, slow.state)

    def test_a_full_queue_or_a_wait_past_the_connect_timeout_is_a_clear_503(self):
        slow = self.slow(1.0)
        d = self.policies('''
upstream "u" { servers = { "%s" }, max_connections = 1, connect_timeout = 0.3, timeout = 5 }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % slow.url)
        gw = self.gateway(d)
        # One in flight, four wait (the queue holds 4 x max_connections x instances) and
        # give up after the connect timeout, two find the queue full.
        results = self.burst(gw, 7)
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses, [200] + [503] * 6, results)
        self.assertEqual(slow.state["max_active"], 1, slow.state)
        self.assertLessEqual(slow.state["max_conns"], 1, slow.state)
        busy = [r for r in results if r.status == 503]
        for r in busy:
            self.assertIn("detail=upstream-busy", r.headers.get("cache-status", ""), r)
        log = gw.output()
        self.assertIn("upstream 'u': every instance at max_connections (1): the queue is full",
                      log)
        self.assertIn("upstream 'u': every instance at max_connections (1): no slot within "
                      "the wait", log)
        # Once the slot is free again, requests go through.
        self.assertEqual(gw.get("/users/9", timeout=10).status, 200)


class Silent:
    """Accepts connections and reads, but never answers: a probe to it stays in flight."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class ShutdownTest(UpstreamTestCase):
    def test_stopping_with_a_probe_in_flight_exits_cleanly(self):
        """A probe still waiting for its answer at exit is freed (under the ASan build,
        LeakSanitizer would report it and fail the exit status)."""
        silent = Silent()
        self.addCleanup(silent.close)
        d = self.policies('''
upstream "u" { servers = { "%s" },
  health = { path = "/healthz", interval = 3, timeout = 3 } }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % silent.url)
        gw = self.gateway(d)
        wait_until(lambda: len(silent.conns) > 0, what="a probe in flight")
        time.sleep(0.2)
        self.assertEqual(gw.stop(), 0, gw.output())
        self.assertNotIn("LeakSanitizer", gw.output())
        self.assertIn("stopped cleanly", gw.output())


class Dropper:
    """Accepts connections, reads a request's header block and then up to body_bytes of its
    body, waits delay seconds, and resets the connection (SO_LINGER 0): an instance that dies
    mid-request.  Records each request line and how many body bytes it got."""

    def __init__(self, body_bytes=0, delay=0.0):
        self.body_bytes, self.delay = body_bytes, delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.accepted = 0
        self.request_lines = []
        self.body_received = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self.drop, args=(c,), daemon=True).start()

    def drop(self, c):
        try:
            c.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(1024)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            self.request_lines.append(head.split(b"\r\n", 1)[0].decode())
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            want = min(self.body_bytes, int(m.group(1)) if m else 0)
            while len(body) < want:
                chunk = c.recv(want - len(body))
                if not chunk:
                    break
                body += chunk
            self.body_received.append(len(body))
            time.sleep(self.delay)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


class Blackhole:
    """A loopback address that never answers a SYN, like a host that is down or behind a
    firewall that drops: a socket listening with backlog 0 whose accept queue one connection
    (never accepted) fills; Linux then drops further SYNs, so a connect to it is neither
    accepted nor refused.  (192.0.2.1, TEST-NET, is refused at once in some sandboxes.)"""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        addr = self.sock.getsockname()
        self.url = "http://127.0.0.1:%d" % addr[1]
        self.filler = socket.create_connection(addr, timeout=2)
        # The premise of every test using it: a connect neither succeeds nor is refused.
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            probe.connect(addr)
            raise AssertionError("the blackhole accepted a connection")
        except socket.timeout:
            pass
        finally:
            probe.close()

    def close(self):
        self.filler.close()
        self.sock.close()


class RetryTest(UpstreamTestCase):
    def dropper(self, **kw):
        d = Dropper(**kw)
        self.addCleanup(d.close)
        return d

    def test_post_is_not_retried_but_get_and_idempotent_put_are(self):
        # The dropper reads the headers and 10,000 of the 200,000 body bytes, then resets:
        # the instance dies mid-body.
        dropper = self.dropper(body_bytes=10000)
        live = self.api()
        d = self.policies('''
upstream "u" { servers = { "%s", "%s" }, retries = 1, max_fails = 100 }
route "POST /echo" { upstream = "u" }
route "PUT /echo" { upstream = "u", idempotent = true }
route "GET /echo" { upstream = "u", bypass = true }
''' % (dropper.url, live.url))
        gw = self.gateway(d)
        body = b"x" * 200000
        statuses = []
        for _ in range(4):  # round robin: two of these land on the dropper first
            statuses.append(gw.req("POST", "/echo", body=body,
                                   headers={"Content-Type": "text/plain"}).status)
        self.assertEqual(sorted(statuses), [200, 200, 502, 502], statuses)
        # Each failed POST reached the dropper once, mid-body, and no other instance.
        self.assertEqual(dropper.request_lines, ["POST /echo HTTP/1.1"] * 2)
        self.assertEqual(dropper.accepted, 2)
        for got in dropper.body_received:
            self.assertTrue(10000 <= got < len(body), dropper.body_received)
        self.assertEqual(by_path(live).get("/echo"), 2)
        # A small POST (buffered, not streamed) is not retried either.
        small = [gw.req("POST", "/echo", body=b"z" * 1000).status for _ in range(2)]
        self.assertEqual(sorted(small), [200, 502], small)
        self.assertEqual(dropper.accepted, 3)
        self.assertEqual(by_path(live).get("/echo"), 3)
        for _ in range(4):
            self.assertEqual(gw.req("PUT", "/echo", body=b"y" * 1000).status, 200)
            self.assertEqual(gw.get("/echo").status, 200)
        self.assertEqual(by_path(live).get("/echo"), 3 + 8)
        for _ in range(2):  # HEAD is retried like GET
            self.assertEqual(gw.req("HEAD", "/echo").status, 200)
        self.assertEqual(by_path(live).get("/echo"), 3 + 8 + 2)
        self.assertIn("HEAD /echo HTTP/1.1", dropper.request_lines)
        self.assertGreater(dropper.accepted, 4)  # the PUTs, GETs and a HEAD did try it first
        self.assertRegex(self.metrics(gw), r"cachegw_upstream_retries_total [1-9]")

    def test_retries_are_bounded_per_request(self):
        dead = ["http://127.0.0.1:%d" % free_port() for _ in range(3)]
        live = self.api()
        servers = ", ".join('"%s"' % u for u in dead + [live.url])
        d = self.policies('''
upstream "one" { servers = { %s }, retries = 1, max_fails = 100 }
upstream "three" { servers = { %s }, retries = 3, max_fails = 100 }
route "GET /users/:id" { upstream = "one", bypass = true }
route "GET /jobs/:id" { upstream = "three", bypass = true }
''' % (servers, servers))
        gw = self.gateway(d)
        # Round robin starts at the first instance: two dead ones are tried, then it gives up
        # with the real error.
        r = gw.get("/users/1")
        self.assertEqual(r.status, 502, r)
        tried = [self.counter(gw, "requests_total", u) for u in dead]
        self.assertEqual(sum(tried), 2, tried)
        self.assertEqual(live.requests(), 0)
        # Three retries reach the live instance after the three dead ones.
        self.assertEqual(gw.get("/jobs/1").status, 200)
        self.assertEqual(live.requests(), 1)
        self.assertRegex(self.metrics(gw), r"cachegw_upstream_retries_total 4\b")

    def test_a_retry_only_gets_what_is_left_of_the_timeout(self):
        # Each instance resets 0.3 s after the request.  With timeout = 0.5 the retry has
        # 0.2 s left: it times out on the second instance, and the third is never tried.
        drops = [self.dropper(delay=0.3) for _ in range(3)]
        d = self.policies('''
upstream "u" { servers = { "%s", "%s", "%s" }, retries = 2, max_fails = 100, timeout = 0.5 }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % tuple(x.url for x in drops))
        gw = self.gateway(d)
        r = gw.get("/users/1")
        self.assertEqual(r.status, 504, r)
        self.assertEqual([x.accepted for x in drops], [1, 1, 0])
        self.assertLess(r.elapsed, 0.85, r)  # not 3 x 0.3 s

    def test_a_collapsed_miss_gets_its_leaders_retried_answer(self):
        """Several requests for one cold key collapse onto one fetch; its first attempt goes
        to an instance that resets after 0.5 s, the retry to a live one (0.3 s): every
        waiter gets the retried 200, and each instance saw the key once."""
        dropper = self.dropper(delay=0.5)
        live = self.api(latency_ms=300)
        d = self.policies('''
upstream "u" { servers = { "%s", "%s" }, retries = 1, max_fails = 100 }
route "GET /users/:id" { upstream = "u", key = "u:users:{id}", ttl = 60 }
''' % (dropper.url, live.url))
        gw = self.gateway(d)
        results = run_concurrently(6, lambda i: gw.get("/users/7", timeout=10))
        self.assertEqual([r.status for r in results], [200] * 6, results)
        self.assertEqual(len({r.body for r in results}), 1)
        self.assertEqual(dropper.request_lines, ["GET /users/7 HTTP/1.1"])
        self.assertEqual(by_path(live), {"/users/7": 1})
        collapsed = [r for r in results
                     if "detail=collapsed" in (r.header("cache-status") or "")]
        self.assertGreater(len(collapsed), 0, results)
        self.assertRegex(self.metrics(gw), r"cachegw_upstream_retries_total 1\b")

    def blackhole(self):
        b = Blackhole()
        self.addCleanup(b.close)
        return b

    def test_a_connect_timeout_is_retried_on_another_instance(self):
        """An instance that never answers the SYN: each GET sent to it is retried on the
        live one once connect_timeout (0.3 s) runs out, so it answers 200 within about
        connect_timeout; each timeout counts as a failure, and after max_fails it is down and
        the following GETs are fast."""
        hole, live = self.blackhole(), self.api()
        d = self.policies('''
upstream "u" { servers = { "%s", "%s" }, connect_timeout = 0.3, timeout = 5, retries = 1,
               max_fails = 2, fail_timeout = 60 }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % (hole.url, live.url))
        gw = self.gateway(d)
        slow = []
        for i in range(10):
            r = gw.get("/users/%d" % (i + 1))
            self.assertEqual(r.status, 200, r)
            # Never the 5 s timeout: connect_timeout plus a fast answer (a loaded machine
            # gets 0.5 s of slack).
            self.assertLess(r.elapsed, 0.3 + 0.5, r)
            if r.elapsed >= 0.25:
                slow.append(i)
        # Round robin sends the first and third to the silent instance; the second timeout
        # takes it down, and no later request waits for it.
        self.assertEqual(slow, [0, 2])
        self.assertEqual(self.up_value(gw, hole.url), 0)
        self.assertEqual(self.counter(gw, "requests_total", hole.url), 2)
        self.assertEqual(self.counter(gw, "failures_total", hole.url), 2)
        self.assertIn("is DOWN (2 consecutive failures: Timeout was reached)", gw.output())
        self.assertEqual(live.requests(), 10)
        self.assertRegex(self.metrics(gw), r"cachegw_upstream_retries_total 2\b")

    def test_connect_timeout_retries_stay_within_the_request_timeout(self):
        """Two silent instances before a live one, connect_timeout = 0.4, timeout = 0.6: the
        retry only has the 0.2 s left, times out too, and the request ends with 504 at about
        0.6 s (not 0.8); the live instance is never reached.  With timeout = connect_timeout
        nothing is left for a retry at all."""
        holes = [self.blackhole() for _ in range(2)]
        live = self.api()
        servers = tuple(h.url for h in holes) + (live.url,)
        d = self.policies('''
upstream "u" { servers = { "%s", "%s", "%s" }, connect_timeout = 0.4, timeout = 0.6,
               retries = 2, max_fails = 100 }
upstream "v" { servers = { "%s", "%s", "%s" }, connect_timeout = 0.4, timeout = 0.4,
               retries = 2, max_fails = 100 }
route "GET /users/:id" { upstream = "u", bypass = true }
route "GET /jobs/:id" { upstream = "v", bypass = true }
''' % (servers + servers))
        gw = self.gateway(d)
        r = gw.get("/users/1")
        self.assertEqual(r.status, 504, r)
        self.assertGreaterEqual(r.elapsed, 0.55, r)
        self.assertLess(r.elapsed, 0.75, r)  # not 2 x 0.4 s, nor a third attempt

        def sent(upstream):
            return [int(re.search(r'cachegw_upstream_requests_total\{upstream="%s",'
                                  r'instance="%s"\} (\d+)' % (upstream, re.escape(u)),
                                  self.metrics(gw)).group(1)) for u in servers]

        self.assertEqual(sent("u"), [1, 1, 0])
        self.assertEqual(live.requests(), 0)
        self.assertRegex(self.metrics(gw), r"cachegw_upstream_retries_total 1\b")
        r = gw.get("/jobs/1")
        self.assertEqual(r.status, 504, r)
        self.assertGreaterEqual(r.elapsed, 0.35, r)
        self.assertLess(r.elapsed, 0.7, r)  # not 2 x 0.4 s
        self.assertEqual(sent("v"), [1, 0, 0])
        self.assertEqual(live.requests(), 0)
        self.assertRegex(self.metrics(gw), r"cachegw_upstream_retries_total 1\b")


class Named:
    """An instance that answers every GET with {"name": name} and counts the connections it
    accepted and the requests it answered.  close: answer with Connection: close, so every
    request needs a new connection (and a name lookup, for a gateway that has none cached)."""

    def __init__(self, name, host="127.0.0.1", port=0, close=False):
        lock = threading.Lock()
        st = self.state = {"conns": 0, "requests": 0}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                with lock:
                    st["conns"] += 1
                super().setup()

            def do_GET(self):
                with lock:
                    st["requests"] += 1
                body = b'{"name": "%s"}' % name.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = "http://%s:%d" % (host, self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class PoolTest(UpstreamTestCase):
    def named(self, *args, **kw):
        n = Named(*args, **kw)
        self.addCleanup(n.close)
        return n

    def test_connections_to_an_instance_are_kept_alive(self):
        a, b = self.named("a"), self.named("b")
        d = self.policies('''
upstream "u" { servers = { "%s", "%s" } }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % (a.url, b.url))
        gw = self.gateway(d)
        for i in range(20):
            self.assertEqual(gw.get("/users/%d" % (i + 1)).status, 200)
        self.assertEqual((a.state["requests"], b.state["requests"]), (10, 10))
        # One connection each, reused (at most one more, should the first have been closed).
        self.assertLessEqual(a.state["conns"], 2, a.state)
        self.assertLessEqual(b.state["conns"], 2, b.state)

    def dns_shim(self):
        """Builds dns_shim.c; returns (gateway env, point(addr)) for the name
        svc.cachegw.test, which starts on 127.0.0.1."""
        cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("cc")
        if cc is None:
            self.skipTest("no C compiler to build the getaddrinfo shim")
        tmp = tempfile.mkdtemp(prefix="cachegw-dns-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        shim = os.path.join(tmp, "dns_shim.so")
        subprocess.run([cc, "-shared", "-fPIC", "-o", shim,
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "dns_shim.c"),
                        "-ldl"], check=True)
        hosts = os.path.join(tmp, "hosts")

        def point(addr):
            with open(hosts + ".new", "w") as f:
                f.write("svc.cachegw.test %s\n" % addr)
            os.rename(hosts + ".new", hosts)

        point("127.0.0.1")
        env = {"LD_PRELOAD": shim, "CACHEGW_TEST_HOSTS": hosts,
               # An ASan build wants its runtime first; the shim does not care.
               "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                                ":verify_asan_link_order=0").lstrip(":")}
        self.lookups = hosts + ".lookups"
        return env, point

    def name(self, gw):
        r = gw.get("/users/1")
        self.assertEqual(r.status, 200, r)
        return r.json()["name"]

    def test_a_host_name_is_resolved_again_after_dns_ttl(self):
        """An instance named by a host name moves to another address (a DNS change, made
        with an LD_PRELOAD getaddrinfo reading a hosts file the test rewrites).  With
        dns_ttl = 1 the gateway follows within a few seconds; with the default (60 s) it
        keeps the address it resolved, which shows the TTL is what decides."""
        env, point = self.dns_shim()
        port = free_port()
        self.named("old", "127.0.0.1", port, close=True)
        self.named("new", "127.0.0.2", port, close=True)
        text = '''
upstream "svc" { servers = { "http://svc.cachegw.test:%d" }%s }
route "GET /users/:id" { upstream = "svc", bypass = true }
'''
        short = self.gateway(self.policies(text % (port, ", dns_ttl = 1")), env=env)
        default = self.gateway(self.policies(text % (port, "")), env=env)
        self.assertEqual((self.name(short), self.name(default)), ("old", "old"))
        point("127.0.0.2")
        wait_until(lambda: self.name(short) == "new", timeout=10, what="the new address")
        for _ in range(5):
            self.assertEqual(self.name(short), "new")
            self.assertEqual(self.name(default), "old")
        with open(self.lookups) as f:
            self.assertIn("svc.cachegw.test 127.0.0.2", f.read())

    def test_health_checks_resolve_the_name_on_dns_ttl_too(self):
        """The instance behind the name dies and comes back at another address while no
        request is sent: its probes must follow the name on dns_ttl (not libcurl's default
        60 s), or it would stay down for a minute."""
        env, point = self.dns_shim()
        port = free_port()
        old = Named("old", "127.0.0.1", port, close=True)
        self.addCleanup(old.close)
        d = self.policies('''
upstream "svc" { servers = { "http://svc.cachegw.test:%d" }, dns_ttl = 1,
  health = { path = "/healthz", interval = 0.2, timeout = 0.2, healthy = 1, unhealthy = 1 } }
route "GET /users/:id" { upstream = "svc", bypass = true }
''' % port)
        gw = self.gateway(d, env=env)
        url = "http://svc.cachegw.test:%d" % port
        self.assertEqual(self.name(gw), "old")
        old.close()
        wait_until(lambda: self.up_value(gw, url) == 0, what="down once the old one died")
        self.named("new", "127.0.0.2", port, close=True)
        point("127.0.0.2")
        wait_until(lambda: self.up_value(gw, url) == 1, timeout=10,
                   what="the probes to find the new address")
        self.assertEqual(self.name(gw), "new")


class ReloadTest(UpstreamTestCase):
    def test_sighup_swaps_instances_with_requests_in_flight(self):
        old, new = self.api(latency_ms=600), self.api()
        text = '''
upstream "u" { servers = { "%s" } }
route "GET /users/:id" { upstream = "u", bypass = true }
'''
        d = self.policies(text % old.url)
        gw = self.gateway(d)
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(
            gw.get("/users/%d" % (i + 1), timeout=10).status)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)  # in flight on the old instance
        self.write(d, text % new.url)
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: "policies reloaded" in gw.output(), what="the reload")
        for t in threads:
            t.join()
        self.assertEqual(results, [200] * 4)
        self.assertEqual(old.requests(), 4)
        for i in range(5):
            self.assertEqual(gw.get("/users/%d" % (i + 1)).status, 200)
        self.assertEqual(new.requests(), 5)
        self.assertEqual(old.requests(), 4)

    def test_reload_adding_and_removing_instances_under_load(self):
        a, b, c = self.api(), self.api(), self.api()
        text = '''
upstream "u" { servers = { "%s", "%s" } }
route "GET /users/:id" { upstream = "u", bypass = true }
'''
        d = self.policies(text % (a.url, b.url))
        gw = self.gateway(d)
        load = Load(gw)
        time.sleep(0.5)
        self.write(d, text % (b.url, c.url))
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: "policies reloaded" in gw.output(), what="the reload")
        time.sleep(0.3)
        a_after = a.requests()
        time.sleep(0.7)
        statuses = load.stop()
        self.assertGreater(len(statuses), 50)
        self.assertEqual([s for s in statuses if not 200 <= s < 300], [],
                         "failed GETs across the reload")
        self.assertEqual(a.requests(), a_after)  # removed: no new traffic
        self.assertGreater(c.requests(), 10)     # added: shares the load

    def test_health_state_carries_over_a_reload(self):
        live, extra = self.api(), self.api()
        dead = "http://127.0.0.1:%d" % free_port()
        text = '''
upstream "u" { servers = { %s }, max_fails = 1, fail_timeout = 60 }
route "GET /users/:id" { upstream = "u", bypass = true }
'''
        d = self.policies(text % ('"%s", "%s"' % (live.url, dead)))
        gw = self.gateway(d)
        for i in range(6):
            self.assertEqual(gw.get("/users/%d" % (i + 1)).status, 200)
        self.assertEqual(self.up_value(gw, dead), 0)
        self.write(d, text % ('"%s", "%s", "%s"' % (live.url, dead, extra.url)))
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: "policies reloaded" in gw.output(), what="the reload")
        # The dead instance stayed: still down (same object), still never picked.
        self.assertEqual(self.up_value(gw, dead), 0)
        self.assertEqual(self.counter(gw, "down_transitions_total", dead), 1)
        failures = self.counter(gw, "failures_total", dead)
        for i in range(6):
            self.assertEqual(gw.get("/users/%d" % (i + 1)).status, 200)
        self.assertEqual(self.counter(gw, "failures_total", dead), failures)
        self.assertGreater(extra.requests(), 0)

    def test_removed_instances_stop_being_probed(self):
        a, b = Named("a"), Named("b")
        self.addCleanup(a.close)
        self.addCleanup(b.close)
        text = '''
upstream "u" { servers = { %s },
  health = { path = "/healthz", interval = 0.1, timeout = 0.1 } }
route "GET /users/:id" { upstream = "u", bypass = true }
'''
        d = self.policies(text % ('"%s", "%s"' % (a.url, b.url)))
        gw = self.gateway(d)
        wait_until(lambda: a.state["requests"] >= 3 and b.state["requests"] >= 3,
                   what="both probed")
        self.write(d, text % ('"%s"' % b.url))
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: "policies reloaded" in gw.output(), what="the reload")
        time.sleep(0.3)  # a probe already in flight at the reload may still land
        a_seen, b_seen = a.state["requests"], b.state["requests"]
        time.sleep(1.0)
        self.assertEqual(a.state["requests"], a_seen)
        self.assertGreaterEqual(b.state["requests"], b_seen + 3)  # the one kept still is
        self.assertIsNone(self.up_value(gw, a.url))

    def test_reload_refuses_an_unknown_upstream_and_keeps_the_old_one(self):
        a = self.api()
        d = self.policies('''
upstream "u" { servers = { "%s" } }
route "GET /users/:id" { upstream = "u", bypass = true }
''' % a.url)
        gw = self.gateway(d)
        self.write(d, 'route "GET /users/:id" { upstream = "v", key = "v" }\n')
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: "policy reload failed" in gw.output(), what="the failed reload")
        self.assertIn("up.lua:1: route 'GET /users/:id': unknown upstream 'v'", gw.output())
        self.assertEqual(gw.get("/users/1").status, 200)
        self.assertEqual(a.requests(), 1)


class CheckTest(unittest.TestCase):
    def check(self, text):
        d = tempfile.mkdtemp(prefix="cachegw-upstreams-check-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        with open(os.path.join(d, "up.lua"), "w") as f:
            f.write(text)
        return subprocess.run([CACHEGW_BIN, "--check", "--policies", d, "--upstream",
                               "http://127.0.0.1:9"], capture_output=True, text=True,
                              env=dict(os.environ, LUA_DIR=os.path.join(SOURCE_DIR, "lua")))

    def test_bad_input_is_refused_with_file_and_line(self):
        cases = [
            ('\nroute "GET /a" { upstream = "nope", key = "a" }\n',
             "up.lua:2: route 'GET /a': unknown upstream 'nope'"),
            ('upstream "u" { servers = { "http://ok", "htp://bad" } }\n',
             "up.lua:1: upstream 'u': server 2: bad URL 'htp://bad'"),
            ('upstream "u" { servers = {} }\n', "up.lua:1: upstream 'u': the server list is empty"),
            # The space is in the host, so the message says so (it used to say "bad port").
            ('\n\nupstream "u" { servers = { "http://a b:1" } }\n',
             "up.lua:3: upstream 'u': server 1: bad URL 'http://a b:1': invalid host 'a b': "
             "a space is not allowed in a host name"),
            ('upstream "u" { servers = { { url = "http://a", weight = 0 } } }\n',
             "weight must be a whole number from 1 to 100, got 0"),
        ]
        for text, want in cases:
            r = self.check(text)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(want, r.stderr)
        ok = self.check('upstream "u" { servers = { "http://a:1" } }\n'
                        'route "GET /a" { upstream = "u", key = "a", ttl = 1 }\n')
        self.assertEqual(ok.returncode, 0, ok.stderr)


if __name__ == "__main__":
    unittest.main()
