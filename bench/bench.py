#!/usr/bin/env python3
"""cachegw benchmarks, side by side with nginx proxy_cache and the bare upstream.

Run through bench/run.sh (it installs wrk, nginx and varnish, builds a release binary).
Every scenario runs ROUNDS times; the report gives medians, and ratios are
computed from numbers measured in the same run.  The server under test is
pinned to CPU 0 and the load generator to CPU 1 (taskset), as the issue asks.

Scenarios (--only takes a comma-separated list; "issue9" = hot,keys10k,keys1m,users100k):
  hot        one cached URL (1 KiB body), 64 connections
  keys10k    10,000 distinct URLs (1 KiB bodies), warmed in a random order, then random
             access; no policies loaded ("manykeys" is the old name)
  keys1m     1,000,000 distinct URLs (256-byte bodies), warmed by a wrk walk of the key
             space, then random access; both caches sized to hold all of them
  users100k  the shipped policies (policies/) on /users/:id over 100,000 ids, warmed, then
             random access; nginx keys on the URI with the same TTL (300 s)
  slow       hits on one route while another route's upstream takes 500 ms
  stampede   200 concurrent requests on a cold URL (upstream 200 ms)
  policy     policy evaluation cost on a hot hit, and reload time
  compress   a 16 KiB JSON hit as identity, gzip and br, beside nginx proxy_cache + gzip,
             nginx gzip_static and Varnish http_gzip_support (bench_compress.py)

keys10k, keys1m and users100k each start a fresh gateway and a fresh nginx (cache on tmpfs
when /dev/shm exists), warm both, and count what reached the upstream while each measured
run went on: a number above 0 means the run measured misses too, and is reported.
--profile runs `perf record -e cpu-clock -g` on the gateway for one extra (unmeasured) run
of keys10k and users100k and reports the share of samples in liblua and in memset (where
libmicrohttpd's per-request pool zeroing showed, before the gateway had its own HTTP server).
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import http.client
from benchlib import (free_port, http_get, load_average, log, machine, parse_wrk,
                      process_tree, wait_http)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
BUILD = os.environ.get("BENCH_BUILD_DIR", os.path.join(ROOT, "build-bench"))
CACHEGW = os.path.join(BUILD, "cachegw")
EXAMPLE_API = os.path.join(BUILD, "example-api")

# Free ports, so a stray server on a fixed port can never be measured instead.
API_PORT, GW_PORT, NGINX_PORT = free_port(), free_port(), free_port()


def upstream_requests():
    return json.loads(http_get(API_PORT, "/__stats")[2])["requests"]


class Servers:
    def __init__(self):
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="cachegw-bench-")

    def start(self, argv, cpu=None, env=None, name="proc"):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        logf = open(os.path.join(self.tmp, f"{name}.log"), "wb")
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=e)
        self.procs.append(p)
        return p

    def stop(self, p):
        """Stops one server (SIGTERM, then SIGKILL after 30 s) and forgets it."""
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.procs.remove(p)

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    proxy_cache_path {cache} levels=1:2 keys_zone=bench:{zone} max_size={max_size} inactive={inactive} use_temp_path=off;
    upstream api {{ server 127.0.0.1:{api}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_key $request_uri;
            proxy_cache_valid 200 {valid};{ignore}
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""


def start_nginx(servers, port=None, name="nginx", cache=None, zone="64m", max_size="1g",
                inactive="10m", valid="60s", override_ttl=False):
    """nginx with proxy_cache in a private directory, pinned to CPU 0.

    override_ttl: ignore the upstream's Cache-Control/Expires so that `valid` is the TTL
    (what a cachegw policy's `ttl` does); otherwise the upstream's max-age wins, as in
    cachegw without a policy."""
    port = port or NGINX_PORT
    ntmp = os.path.join(servers.tmp, name)
    os.makedirs(ntmp, exist_ok=True)
    cache = cache or os.path.join(ntmp, "nginx-cache")
    os.makedirs(cache, exist_ok=True)
    conf = os.path.join(ntmp, "nginx.conf")
    ignore = "\n            proxy_ignore_headers Cache-Control Expires;" if override_ttl else ""
    with open(conf, "w") as f:
        # As root, nginx's workers would drop to www-data, which cannot write
        # the private temp dir holding the cache.
        user = "user root;" if os.geteuid() == 0 else ""
        f.write(NGINX_CONF.format(user=user, tmp=ntmp, api=API_PORT, port=port, cache=cache,
                                  zone=zone, max_size=max_size, inactive=inactive, valid=valid,
                                  ignore=ignore))
    proc = servers.start(["nginx", "-c", conf, "-p", ntmp], cpu=0, name=name)
    try:
        wait_http(port, "/fast")
    except RuntimeError:
        for logname in ("nginx.log", "nginx-error.log"):
            path = os.path.join(ntmp, logname)
            if os.path.exists(path):
                log(open(path).read())
        raise
    return proc


def start_gateway(servers, extra_env=None, port=None, name="cachegw"):
    port = port or GW_PORT
    env = {"PORT": str(port), "HOST": "127.0.0.1", "UPSTREAM_URL": f"http://127.0.0.1:{API_PORT}",
           "WORKERS": "1", "LOG_LEVEL": "warn"}
    env.update(extra_env or {})
    proc = servers.start([CACHEGW], cpu=0, env=env, name=name)
    wait_http(port, "/health")
    return proc


def wrk(port, path, seconds, conns=64, script=None, headers=None, cpu=1, script_args=None):
    argv = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    for h in headers or []:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    argv.append(f"http://127.0.0.1:{port}{path}")
    if script_args:
        argv += ["--"] + [str(a) for a in script_args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


WARM_LUA = os.path.join(HERE, "warm.lua")
RANDOM_LUA = os.path.join(HERE, "random_keys.lua")
CREATE_USERS_LUA = os.path.join(HERE, "create_users.lua")


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def summarize(runs):
    out = {"rps": median_of(runs, "rps"), "p50_ms": median_of(runs, "p50_ms"),
           "p99_ms": median_of(runs, "p99_ms"),
           "non2xx": sum(r["non2xx"] for r in runs), "runs": runs}
    if all("server_wait_pct" in r for r in runs):
        out["server_cpu_pct"] = median_of(runs, "server_cpu_pct")
        out["server_wait_pct"] = median_of(runs, "server_wait_pct")
    if all("upstream_during" in r for r in runs):
        out["upstream_during"] = sum(r["upstream_during"] for r in runs)
    return out


def cpu_ns(pid):
    """(ns on a CPU, ns waiting for one) summed over every thread of pid's process tree, from
    /proc/<tid>/schedstat.  The wait is time the server was runnable but another process
    had its CPU: on a quiet machine it stays near 0.  Both are sums over threads, so with
    several busy threads they can pass 100 % of the wall time.  Threads that end during
    the run are not counted (the servers measured keep theirs)."""
    run = wait = 0
    for p in process_tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue  # a process that just ended
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    a, b = f.read().split()[:2]
            except (FileNotFoundError, ProcessLookupError):
                continue  # a thread that just ended
            run, wait = run + int(a), wait + int(b)
    return run, wait


def wrk_measured(port, pid, seconds, path="/", **kw):
    """wrk, plus the server's CPU use and its run-queue wait as % of the run's wall time."""
    c0, t0 = cpu_ns(pid), time.monotonic_ns()
    r = wrk(port, path, seconds, **kw)
    c1, t1 = cpu_ns(pid), time.monotonic_ns()
    r["server_cpu_pct"] = round(100.0 * (c1[0] - c0[0]) / (t1 - t0), 1)
    r["server_wait_pct"] = round(100.0 * (c1[1] - c0[1]) / (t1 - t0), 1)
    return r


def fmt_cpu(r):
    return f"server CPU {r['server_cpu_pct']:.0f} %, waited {r['server_wait_pct']:.0f} %"


def scenario_hot(rounds, seconds, pids):
    """One cached URL: cachegw, nginx, upstream alone, interleaved per round."""
    targets = {"cachegw": GW_PORT, "nginx": NGINX_PORT, "upstream": API_PORT}
    for port in (GW_PORT, NGINX_PORT):
        for _ in range(3):
            http_get(port, "/bytes/1024")
    runs = {t: [] for t in targets}
    for i in range(rounds):
        for t, port in targets.items():
            # The example API's threads live as long as their connection, so their schedstat
            # is gone when the run ends: it is measured without the CPU columns.
            r = (wrk_measured(port, pids[t], seconds, path="/bytes/1024") if t in pids
                 else wrk(port, "/bytes/1024", seconds))
            runs[t].append(r)
            log(f"  hot round {i + 1} {t}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} ms "
                f"p99 {r['p99_ms']:.2f} ms non2xx {r['non2xx']}"
                + (f"; {fmt_cpu(r)}" if "server_cpu_pct" in r else ""))
    return {t: summarize(v) for t, v in runs.items()}


# --- Key-count scenarios (issue 9): keys10k, keys1m, users100k -----------------------------


def gw_metrics(port):
    """The gateway's /metrics as {name: value} (plain names, no labels)."""
    out = {}
    for line in http_get(port, "/metrics")[2].decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            out[parts[0]] = float(parts[1])
    return out


def wrk_until_marker(port, script, args, what, tmp, timeout=900):
    """Runs a wrk script that writes its counts to a marker file when its work is done
    (wrk itself can only stop after a duration), then stops wrk with SIGINT.
    Returns (seconds taken, the marker's numbers)."""
    marker = os.path.join(tmp, f"marker-{port}-{time.monotonic_ns()}")
    argv = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{timeout}s", "-s", script,
            f"http://127.0.0.1:{port}/", "--"] + [str(a) for a in args] + [marker]
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    fields = []
    while len(fields) < 2:
        if p.poll() is not None:
            raise RuntimeError(f"{what}: wrk ended before its walk was done:\n{p.stdout.read()}")
        time.sleep(0.2)
        if os.path.exists(marker):
            with open(marker) as f:
                fields = f.read().split()
    took = time.monotonic() - t0
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=60)
    os.unlink(marker)
    return took, [int(x) for x in fields]


def set_cpus(pids, cpus):
    """Sets the CPU affinity of every thread of every process in the trees of pids."""
    for pid in pids:
        for p in process_tree(pid):
            try:
                tids = os.listdir(f"/proc/{p}/task")
            except FileNotFoundError:
                continue  # a process that just ended
            for tid in tids:
                try:
                    os.sched_setaffinity(int(tid), cpus)
                except ProcessLookupError:
                    pass  # a thread that just ended


def warm(port, prefix, n, tmp, what, seed=1, spread=()):
    """Requests prefix..1 to prefix..n once each, in a shuffled order (bench/warm.lua).
    Warming is a miss per URL, so the processes in `spread` (the servers and the upstream,
    pinned to CPU 0) may use both CPUs meanwhile; they are pinned back to CPU 0 before
    anything is measured."""
    before = upstream_requests()
    set_cpus(spread, {0, 1})
    try:
        took, (ok, bad) = wrk_until_marker(port, WARM_LUA, [prefix, n], what, tmp,
                                           timeout=900)
    finally:
        set_cpus(spread, {0})
    fetched = upstream_requests() - before
    if bad or ok != n:
        raise RuntimeError(f"{what}: warming {n} URLs got {ok} 200s and {bad} other answers")
    log(f"  warmed {what}: {n} URLs in {took:.1f} s ({n / took:.0f}/s), "
        f"{fetched} reached the upstream")
    return {"seconds": round(took, 1), "urls": n, "upstream": fetched}


def measure_random(targets, gw_name, rounds, seconds, n, prefix_of_round, tmp, label,
                   warm_each_round, spread, pids):
    """Median-of-rounds random access over n warmed URLs, servers interleaved (the order is
    reversed every other round).  Each run records how many requests reached the upstream
    while it went on (0 when every answer was a hit) and, for the gateway, its hit counter."""
    runs = {t: [] for t in targets}
    warms = {t: [] for t in targets}
    if not warm_each_round:
        for t, port in targets.items():
            warms[t].append(warm(port, prefix_of_round(0), n, tmp, f"{label} {t}",
                                 spread=spread))
    for i in range(rounds):
        order = list(targets.items())
        if i % 2:
            order.reverse()
        prefix = prefix_of_round(i)
        for t, port in order:
            if warm_each_round:
                warms[t].append(warm(port, prefix, n, tmp, f"{label} round {i + 1} {t}",
                                     seed=i + 1, spread=spread))
            before = upstream_requests()
            m0 = gw_metrics(port) if t == gw_name else None
            r = wrk_measured(port, pids[t], seconds, script=RANDOM_LUA,
                             script_args=[prefix, n])
            r["upstream_during"] = upstream_requests() - before
            if m0 is not None:
                m1 = gw_metrics(port)
                r["gw_hits"] = int(m1["cachegw_cache_hits_total"] - m0["cachegw_cache_hits_total"])
            runs[t].append(r)
            log(f"  {label} round {i + 1} {t}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} ms "
                f"p99 {r['p99_ms']:.2f} ms non2xx {r['non2xx']} "
                f"upstream during run {r['upstream_during']}; {fmt_cpu(r)}")
    return {"servers": {t: summarize(v) for t, v in runs.items()}, "warm": warms}


def parse_perf_dso(report):
    """[(percent, dso)] from `perf report --sort dso --stdio`."""
    out = []
    for line in report.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S.*?)\s*$", line)
        if m:
            out.append((float(m.group(1)), m.group(2)))
    return out


def perf_run(pid, port, seconds, prefix, n, data, callgraph):
    """perf record -e cpu-clock on pid while wrk runs random access; returns wrk's result."""
    perf = subprocess.Popen(["taskset", "-c", "1", "perf", "record", "-e", "cpu-clock"]
                            + callgraph + ["-p", str(pid), "-o", data, "--", "sleep",
                                           str(seconds + 1)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    r = wrk(port, "/", seconds, script=RANDOM_LUA, script_args=[prefix, n])
    err = perf.communicate(timeout=120)[1]
    if perf.returncode != 0 or not os.path.exists(data):
        raise RuntimeError(f"perf record failed:\n{err}")
    return r


def perf_samples(data):
    """The samples of a perf.data file, each a list of its frames (leaf first)."""
    script = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,dso"],
                            capture_output=True, text=True).stdout
    for chunk in script.split("\n\n"):
        frames = [ln.strip() for ln in chunk.splitlines() if ln.strip()]
        if frames:
            yield frames


def top_all(report):
    """Every symbol line of a `perf report --sort dso,sym` text."""
    return [line.strip() for line in report.splitlines() if re.match(r"\s+[\d.]+%", line)]


def profile_gateway(pid, port, seconds, prefix, n, tmp, label):
    """One extra run (not in the medians) under `perf record -e cpu-clock -g` on the
    gateway for `seconds`: the share of samples in each DSO (self; liblua's is the number
    that shows whether Lua ran), the share of samples with any liblua frame on their stack
    (frame-pointer unwinding: a frame of a library built without frame pointers can be
    missed, so the self share is the one to read), and memset's self share, whoever called
    it (libmicrohttpd zeroed its 32 KiB connection pool for every request: 10.8-14.1 % of
    the samples before the gateway had its own HTTP server)."""
    data = os.path.join(tmp, f"perf-{label}.data")
    r = perf_run(pid, port, seconds, prefix, n, data, ["-g"])
    rep = subprocess.run(["perf", "report", "-i", data, "--sort", "dso", "--stdio",
                          "--no-children", "-g", "none"], capture_output=True, text=True).stdout
    dsos = parse_perf_dso(rep)
    syms = subprocess.run(["perf", "report", "-i", data, "--sort", "dso,sym", "--stdio",
                           "--no-children", "-g", "none"], capture_output=True, text=True).stdout
    top = top_all(syms)[:15]
    samples = with_lua = 0
    for frames in perf_samples(data):
        samples += 1
        with_lua += any("liblua" in f for f in frames)
    os.unlink(data)
    memset = sum(float(line.split("%")[0]) for line in top_all(syms) if "memset" in line)
    lua_self = sum(p for p, d in dsos if "liblua" in d)
    out = {"rps": r["rps"], "dso": dsos[:8], "liblua_self_pct": round(lua_self, 2),
           "samples": samples,
           "liblua_on_stack_pct": round(100.0 * with_lua / samples, 2) if samples else None,
           "memset_pct": round(memset, 2),
           "top_symbols": top}
    log(f"  profile {label}: liblua {lua_self:.2f} % of samples (self), "
        f"{out['liblua_on_stack_pct']} % with a liblua frame on the stack, {samples} samples; "
        f"dso: " + ", ".join(f"{d} {p:.1f}%" for p, d in dsos[:5])
        + f"; memset {out['memset_pct']} %")
    return out


def shm_dir(name):
    """A directory for an nginx cache: on tmpfs when there is one (the gateway's tier is in
    memory too, and a million small files would otherwise be written back to disk)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix=f"cachegw-bench-{name}-", dir=base)


def run_keys_scenario(servers, label, rounds, seconds, n, prefix_of_round, gw_env, nginx_opts,
                      warm_each_round, profile):
    """A fresh gateway and a fresh nginx, warmed, measured, stopped."""
    gw_port, ngx_port = free_port(), free_port()
    cache = shm_dir(label)
    res = {"load_before": load_average(), "urls": n, "gateway_env": gw_env,
           "nginx": {k: v for k, v in nginx_opts.items()}, "nginx_cache_dir": cache}
    env = {"LUA_DIR": os.path.join(ROOT, "lua")}
    env.update(gw_env)
    gw = ngx = None
    try:
        gw = start_gateway(servers, env, port=gw_port, name=f"cachegw-{label}")
        ngx = start_nginx(servers, port=ngx_port, name=f"nginx-{label}", cache=cache,
                          **nginx_opts)
        targets = {"cachegw": gw_port, "nginx": ngx_port}
        t0 = time.monotonic()
        res.update(measure_random(targets, "cachegw", rounds, seconds, n, prefix_of_round,
                                  servers.tmp, label, warm_each_round,
                                  spread=[gw.pid, ngx.pid, servers.api.pid],
                                  pids={"cachegw": gw.pid, "nginx": ngx.pid}))
        res["measure_seconds"] = round(time.monotonic() - t0, 1)
        m = gw_metrics(gw_port)
        res["gateway_entries"] = int(m.get("cachegw_memory_cache_entries", 0))
        res["gateway_bytes"] = int(m.get("cachegw_memory_cache_bytes", 0))
        if profile:
            res["profile"] = profile_gateway(gw.pid, gw_port, seconds,
                                             prefix_of_round(rounds - 1), n, servers.tmp, label)
        res["load_after"] = load_average()
    finally:
        for p in (ngx, gw):
            if p is not None:
                servers.stop(p)
        shutil.rmtree(cache, ignore_errors=True)
    return res


def scenario_keys10k(servers, rounds, seconds, profile):
    """10,000 distinct URLs with 1 KiB bodies, no policies.  The upstream says max-age=60
    and both caches honour it, so every round uses its own 10,000 URLs (?r=<round>&k=<i>),
    warmed in a shuffled order just before each server is measured: no entry can expire
    while it is measured."""
    empty = os.path.join(servers.tmp, "no-policies")
    os.makedirs(empty, exist_ok=True)
    return run_keys_scenario(
        servers, "keys10k", rounds, seconds, 10000,
        lambda i: f"/bytes/1024?r={i + 1}&k=",
        {"POLICIES_DIR": empty},
        {"zone": "64m", "max_size": "1g", "inactive": "10m", "valid": "60s"},
        warm_each_round=True, profile=profile)


KEYS1M_POLICY = """-- bench: one declarative route, so that the TTL outlives the warm-up (the example
-- API says max-age=60 on /bytes; nginx gets proxy_ignore_headers + proxy_cache_valid 1h).
route "GET /bytes/:n" { key = "bytes:{n}:{query}", ttl = 3600 }
"""


def scenario_keys1m(servers, rounds, seconds):
    """1,000,000 distinct URLs with 256-byte bodies.  Warming takes minutes, longer than the
    upstream's max-age=60, so both caches get a one-hour TTL: the gateway by a one-route
    policy (no Lua function: a declarative route), nginx by proxy_ignore_headers
    Cache-Control Expires + proxy_cache_valid 200 1h.  Sizes: CACHE_MAX_BYTES=2GiB (an entry
    is charged about 660 bytes, so about 660 MB for all of them, and each of the 64 shards
    gets a 32 MiB budget for its ~15,600); nginx keys_zone 256m (about 8,000 keys per MB)
    and max_size 16g (each cache file takes a 4 KiB page)."""
    pol = os.path.join(servers.tmp, "keys1m-policies")
    os.makedirs(pol, exist_ok=True)
    with open(os.path.join(pol, "bench_bytes.lua"), "w") as f:
        f.write(KEYS1M_POLICY)
    res = run_keys_scenario(
        servers, "keys1m", rounds, seconds, 1000000, lambda i: "/bytes/256?k=",
        {"POLICIES_DIR": pol, "CACHE_MAX_BYTES": "2GiB"},
        {"zone": "256m", "max_size": "16g", "inactive": "2h", "valid": "1h",
         "override_ttl": True},
        warm_each_round=False, profile=False)
    if res["gateway_entries"] < 1000000:
        log(f"  WARNING: the gateway holds {res['gateway_entries']} entries, fewer than 1M")
    return res


USERS_N = 100000


def ensure_users(n):
    """The example API seeds users 1..100; POST /users appends the next id.  Creates users up
    to n (directly on the upstream) unless they exist already."""
    if http_get(API_PORT, f"/users/{n}")[0] == 200:
        return 0
    if http_get(API_PORT, "/users/100")[0] != 200 or http_get(API_PORT, "/users/101")[0] != 404:
        raise RuntimeError("users100k: the example API does not hold exactly its 100 seeded users")
    tmp = tempfile.mkdtemp(prefix="cachegw-bench-users-")
    try:
        took, (created, failed) = wrk_until_marker(API_PORT, CREATE_USERS_LUA, [n - 100],
                                                   "creating users", tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failed or http_get(API_PORT, f"/users/{n}")[0] != 200:
        raise RuntimeError(f"users100k: created {created} users, {failed} failed, "
                           f"/users/{n} still missing")
    log(f"  created {created} users in the example API in {took:.1f} s")
    return created


def scenario_users100k(servers, rounds, seconds, profile):
    """The shipped policies on /users/:id over 100,000 ids (users.lua: key "users:{id}",
    ttl 300, an on_response hook for 404s); nginx keys on $request_uri with the same TTL
    (proxy_ignore_headers Cache-Control Expires + proxy_cache_valid 200 300s).  Both are
    warmed once; the rounds then take far less than the 300 s TTL."""
    ensure_users(USERS_N)
    if rounds * seconds * 2 + 60 > 280:
        log("  WARNING: so many rounds may outlast the 300 s TTL; see 'upstream during run'")
    return run_keys_scenario(
        servers, "users100k", rounds, seconds, USERS_N, lambda i: "/users/",
        {"POLICIES_DIR": os.path.join(ROOT, "policies")},
        {"zone": "64m", "max_size": "2g", "inactive": "10m", "valid": "300s",
         "override_ttl": True},
        warm_each_round=False, profile=profile)


def scenario_slow(rounds, seconds):
    """p99 of hits on /fast alone, then with 32 connections on a 500 ms route."""
    http_get(GW_PORT, "/fast")
    base, loaded = [], []
    for i in range(rounds):
        base.append(wrk(GW_PORT, "/fast", seconds))
        slow = subprocess.Popen(["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds + 4}s", "--latency",
                                 "-H", "Authorization: Bearer slow-load",
                                 f"http://127.0.0.1:{GW_PORT}/slow?delay_ms=500"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(1.5)
        loaded.append(wrk(GW_PORT, "/fast", seconds))
        slow_out = slow.communicate(timeout=seconds + 60)[0]
        slow_r = parse_wrk(slow_out)
        loaded[-1]["slow_rps"] = slow_r["rps"]
        loaded[-1]["slow_p50_ms"] = slow_r["p50_ms"]
        log(f"  slow round {i + 1}: alone p99 {base[-1]['p99_ms']:.2f} ms, "
            f"with slow route p99 {loaded[-1]['p99_ms']:.2f} ms "
            f"(slow route {slow_r['rps']:.0f} req/s, p50 {slow_r['p50_ms']:.0f} ms)")
    return {"alone": summarize(base), "with_slow": summarize(loaded)}


def stampede(port, path, n=200):
    before = upstream_requests()
    lat = [None] * n
    statuses = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.connect()
        barrier.wait()
        t0 = time.monotonic()
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        lat[i] = (time.monotonic() - t0) * 1000
        statuses[i] = r.status
        c.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"upstream_requests": upstream_requests() - before,
            "ok": sum(1 for s in statuses if s == 200),
            "p50_ms": statistics.median(lat), "max_ms": max(lat)}


def scenario_stampede(rounds):
    out = {"cachegw": [], "nginx": []}
    for i in range(rounds):
        for name, port in (("cachegw", GW_PORT), ("nginx", NGINX_PORT)):
            r = stampede(port, f"/users/{(i % 90) + 1}?delay_ms=200&round={i}&t={time.time()}")
            out[name].append(r)
            log(f"  stampede round {i + 1} {name}: upstream {r['upstream_requests']}, "
                f"ok {r['ok']}/200, p50 {r['p50_ms']:.0f} ms, max {r['max_ms']:.0f} ms")
    return out


def scenario_policy(servers, rounds, seconds):
    """Cost of policy evaluation on the hit path, and reload time with 50 routes."""
    import glob
    empty = os.path.join(servers.tmp, "no-policies")
    fifty = os.path.join(servers.tmp, "fifty")
    os.makedirs(empty, exist_ok=True)
    os.makedirs(fifty, exist_ok=True)
    for f in glob.glob(os.path.join(ROOT, "policies", "*.lua")):
        shutil.copy(f, fifty)
    with open(os.path.join(fifty, "zz_generated.lua"), "w") as f:
        for i in range(50 - 25):
            f.write(f'route "GET /gen{i}/:id" {{ key = "gen{i}:{{id}}", ttl = 60 }}\n')
    ports = {"with policies": free_port(), "policies disabled": free_port()}
    for name, port in ports.items():
        env = {"PORT": str(port), "HOST": "127.0.0.1", "UPSTREAM_URL": f"http://127.0.0.1:{API_PORT}",
               "WORKERS": "1", "LOG_LEVEL": "info",
               "POLICIES_DIR": fifty if name == "with policies" else empty,
               "LUA_DIR": os.path.join(ROOT, "lua")}
        servers.start([CACHEGW], cpu=0, env=env, name=name.replace(" ", "-"))
        wait_http(port, "/health")
        http_get(port, "/users/1")
    runs = {n: [] for n in ports}
    for i in range(rounds):
        for name, port in ports.items():
            r = wrk(port, "/users/1", seconds)
            runs[name].append(r)
            log(f"  policy round {i + 1} {name}: {r['rps']:.0f} req/s p99 {r['p99_ms']:.2f} ms")
    out = {n: summarize(v) for n, v in runs.items()}
    # Reload time: SIGHUP the policy instance and read the log line.
    proc = servers.procs[-2]
    logpath = os.path.join(servers.tmp, "with-policies.log")
    times = []
    for _ in range(5):
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)
    with open(logpath) as f:
        for line in f:
            m = re.search(r"policies reloaded: .* (\d+) routes .*\((\d+) ms\)", line)
            if m:
                times.append(int(m.group(2)))
                out["routes"] = int(m.group(1))
    out["reload_ms"] = times
    log(f"  reloads with {out.get('routes')} routes: {times} ms")
    return out


SCENARIOS = ("hot", "keys10k", "keys1m", "users100k", "slow", "policy", "stampede",
             "compress")  # compress: bench_compress.py (issue 12)
ALIASES = {"manykeys": ["keys10k"], "issue9": ["hot", "keys10k", "keys1m", "users100k"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--only", default="hot,keys10k,slow,stampede,policy",
                    help="comma-separated: " + ", ".join(SCENARIOS + tuple(ALIASES)))
    ap.add_argument("--profile", action="store_true",
                    help="perf-record the gateway in keys10k and users100k (one extra run each)")
    ap.add_argument("--json", default=os.path.join(HERE, "last-run.json"))
    ap.add_argument("--report", metavar="JSON",
                    help="print the report of a saved run (a --json file) and exit")
    args = ap.parse_args()
    if args.report:
        with open(args.report) as f:
            print_report(json.load(f))
        return
    only = set()
    for name in args.only.split(","):
        name = name.strip()
        if name in ALIASES:
            only.update(ALIASES[name])
        elif name in SCENARIOS:
            only.add(name)
        else:
            ap.error(f"--only: unknown scenario {name!r} (known: "
                     f"{', '.join(SCENARIOS + tuple(ALIASES))})")
    if args.rounds < 1 or args.seconds < 1:
        ap.error("--rounds and --seconds must be at least 1")
    if args.profile and not shutil.which("perf"):
        ap.error("--profile needs perf (Debian: apt-get install linux-perf)")
    servers = Servers()
    results = {"machine": machine(), "rounds": args.rounds, "seconds": args.seconds,
               "load_start": load_average()}
    try:
        servers.api = servers.start([EXAMPLE_API, "--port", str(API_PORT), "--latency-ms", "0",
                                     "--feed-latency-ms", "0"], cpu=0, name="example-api")
        wait_http(API_PORT, "/__stats")
        if only & {"hot", "slow", "policy", "stampede"}:
            shared = {"nginx": start_nginx(servers).pid, "cachegw": start_gateway(servers).pid}
        if "hot" in only:
            log("hot hit (cachegw vs nginx proxy_cache vs upstream alone)")
            results["hot"] = scenario_hot(args.rounds, args.seconds, shared)
            results["hot"]["load"] = load_average()
        if "keys10k" in only:
            log(f"keys10k: 10,000 URLs, random access (load {load_average()})")
            results["keys10k"] = scenario_keys10k(servers, args.rounds, args.seconds,
                                                  args.profile)
        if "keys1m" in only:
            log(f"keys1m: 1,000,000 URLs, random access (load {load_average()})")
            results["keys1m"] = scenario_keys1m(servers, args.rounds, args.seconds)
        if "users100k" in only:
            log(f"users100k: shipped policies, /users/:id over 100,000 ids "
                f"(load {load_average()})")
            results["users100k"] = scenario_users100k(servers, args.rounds, args.seconds,
                                                      args.profile)
        if "slow" in only:
            log("slow-route experiment")
            results["slow"] = scenario_slow(args.rounds, args.seconds)
        if "policy" in only:
            log("policy evaluation cost and reload time")
            results["policy"] = scenario_policy(servers, args.rounds, args.seconds)
        if "stampede" in only:
            log("stampede")
            results["stampede"] = scenario_stampede(args.rounds)
        if "compress" in only:
            import bench_compress
            log("compress: 16 KiB JSON hits as identity, gzip, br (cachegw, nginx, Varnish)")
            results["compress"] = bench_compress.scenario(CACHEGW, args.rounds, args.seconds,
                                                          log=log)
    finally:
        servers.stop_all()
        shutil.rmtree(servers.tmp, ignore_errors=True)
    results["load_end"] = load_average()
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print_report(results)


KEY_TITLES = {
    "keys10k": "10,000 random URLs (1 KiB bodies, no policies)",
    "keys1m": "1,000,000 random URLs (256-byte bodies, one declarative route with a 1 h TTL)",
    "users100k": "shipped policies, /users/:id over 100,000 ids (TTL 300 s)",
}


def print_keys(name, r, rounds):
    g, n = r["servers"]["cachegw"], r["servers"]["nginx"]
    print(f"**{KEY_TITLES[name]}**, 64 connections; load average before {r['load_before']}, "
          f"after {r.get('load_after', '?')}\n")
    print("| server | req/s | p50 ms | p99 ms | non-2xx | reached upstream while measured "
          "| server CPU % | server run-queue wait % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for t, x in (("cachegw", g), ("nginx", n)):
        print(f"| {t} | {x['rps']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['non2xx']} | "
              f"{x.get('upstream_during', '?')} | {x.get('server_cpu_pct', '?')} | "
              f"{x.get('server_wait_pct', '?')} |")
    print(f"\ncachegw / nginx throughput: **{g['rps'] / n['rps']:.2f}x**; p50 {g['p50_ms']:.2f} vs "
          f"{n['p50_ms']:.2f} ms; p99 {g['p99_ms']:.2f} vs {n['p99_ms']:.2f} ms "
          f"(cachegw p99 / nginx p99 {g['p99_ms'] / n['p99_ms']:.2f})\n")
    if all("server_wait_pct" in x for x in g["runs"] + n["runs"]):
        # Among the rounds whose wait is within 2 points of the server's lowest, the fastest
        # (several rounds often wait ~0 % and still differ: the VM's host is noisy too).
        least = {}
        for t, x in (("cachegw", g), ("nginx", n)):
            low = min(y["server_wait_pct"] for y in x["runs"])
            least[t] = max((y for y in x["runs"] if y["server_wait_pct"] <= low + 2),
                           key=lambda y: y["rps"])
        print("Best of the least-disturbed rounds (run-queue wait within 2 points of the "
              "lowest): " + "; ".join(
            f"{t} {y['rps']:.0f} req/s, p99 {y['p99_ms']:.2f} ms (waited {y['server_wait_pct']:.0f} %)"
            for t, y in least.items())
              + f"; ratio {least['cachegw']['rps'] / least['nginx']['rps']:.2f}x.\n")
    warms = ", ".join(f"{t} {statistics.median(x['seconds'] for x in w)} s"
                      + (f" (median of {len(w)}, one per round)" if len(w) > 1 else "")
                      for t, w in r["warm"].items())
    print(f"Warm-up of {r['urls']:,} URLs: {warms}; gateway memory tier afterwards: "
          f"{r['gateway_entries']:,} entries, {r['gateway_bytes'] / 2**20:.0f} MiB.\n")
    if "profile" in r:
        p = r["profile"]
        print(f"Profile (`perf record -e cpu-clock -g` on the gateway, one extra run at "
              f"{p['rps']:.0f} req/s, {p['samples']} samples): **liblua {p['liblua_self_pct']:.2f} %** "
              f"of samples (self); {p['liblua_on_stack_pct']} % of samples have a liblua frame "
              f"on their stack. By DSO: " + ", ".join(f"{d} {pct:.1f} %" for pct, d in p["dso"][:6])
              + f". memset (self, any caller): {p.get('memset_pct', '?')} % of samples.\n")
        print("Top symbols (self):\n")
        print("```")
        for line in p["top_symbols"][:12]:
            print(line)
        print("```\n")


def print_report(res):
    m = res["machine"]
    print(f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; {m['date']}; "
          f"medians of {res['rounds']} rounds x {res['seconds']} s; server on CPU 0, wrk on CPU 1; "
          f"load average at start {res['load_start']}, at end {res.get('load_end', '?')}.\n")
    if "hot" in res:
        r = res["hot"]
        print(f"**Hot hit (one URL, 1 KiB)**, 64 connections; load average after {r['load']}\n")
        print("| server | req/s | p50 ms | p99 ms | non-2xx | server CPU % "
              "| server run-queue wait % |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for t in ("cachegw", "nginx", "upstream"):
            x = r[t]
            print(f"| {t} | {x['rps']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | "
                  f"{x['non2xx']} | {x.get('server_cpu_pct', '?')} | "
                  f"{x.get('server_wait_pct', '?')} |")
        print(f"\ncachegw / nginx throughput: **{r['cachegw']['rps'] / r['nginx']['rps']:.2f}x**; "
              f"p99 {r['cachegw']['p99_ms']:.2f} vs {r['nginx']['p99_ms']:.2f} ms\n")
    for name in ("keys10k", "keys1m", "users100k"):
        if name in res:
            print_keys(name, res[name], res["rounds"])
    if "slow" in res:
        a, w = res["slow"]["alone"], res["slow"]["with_slow"]
        print("**Slow-route experiment** (hits on /fast, 64 connections; 32 more connections on "
              "a route whose upstream takes 500 ms)\n")
        print("| load | hit req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        print(f"| hits alone | {a['rps']:.0f} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} |")
        print(f"| hits + slow route | {w['rps']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} |")
        print(f"\np99 ratio (with slow / alone): **{w['p99_ms'] / a['p99_ms']:.2f}x** (target <= 2x)\n")
    if "policy" in res:
        p = res["policy"]
        w, d = p["with policies"], p["policies disabled"]
        print(f"**Policy evaluation on the hit path** (hot hit on /users/1, WORKERS=1; "
              f"{p.get('routes')} routes loaded vs none)\n")
        print("| gateway | req/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        print(f"| with policies | {w['rps']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} |")
        print(f"| policies disabled | {d['rps']:.0f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} |")
        print(f"\nthroughput ratio: **{w['rps'] / d['rps']:.2f}x**; reload with {p.get('routes')} "
              f"routes (SIGHUP, compile + validate + swap): {p['reload_ms']} ms\n")
    if "stampede" in res:
        print("**Stampede**: 200 concurrent requests on a cold URL, upstream latency 200 ms\n")
        print("| server | round | reached upstream | 200 OK | p50 ms | max ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for t in ("cachegw", "nginx"):
            for i, r in enumerate(res["stampede"][t]):
                print(f"| {t} | {i + 1} | {r['upstream_requests']} | {r['ok']} | "
                      f"{r['p50_ms']:.0f} | {r['max_ms']:.0f} |")
        print()
    if "compress" in res:
        import bench_compress
        print("**Compression** (issue 12)\n")
        print(bench_compress.report(res["compress"]) + "\n")


if __name__ == "__main__":
    main()
