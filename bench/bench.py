#!/usr/bin/env python3
"""cachegw benchmarks, side by side with nginx proxy_cache and the bare upstream.

Run through bench/run.sh (it installs wrk and nginx, builds a release binary).
Every scenario runs ROUNDS times; the report gives medians, and ratios are
computed from numbers measured in the same run.  The server under test is
pinned to CPU 0 and the load generator to CPU 1 (taskset), as the issue asks.

Scenarios:
  hot       one cached URL (1 KiB body), 64 connections
  manykeys  10,000 cached URLs, random access, 64 connections
  slow      hits on one route while another route's upstream takes 500 ms
  stampede  200 concurrent requests on a cold URL (upstream 200 ms)
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
from benchlib import http_get, log, machine, parse_wrk

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
BUILD = os.environ.get("BENCH_BUILD_DIR", os.path.join(ROOT, "build-bench"))
CACHEGW = os.path.join(BUILD, "cachegw")
EXAMPLE_API = os.path.join(BUILD, "example-api")

def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Free ports, so a stray server on a fixed port can never be measured instead.
API_PORT, GW_PORT, NGINX_PORT = _free_port(), _free_port(), _free_port()


def wait_http(port, path, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if http_get(port, path, timeout=1)[0] < 500:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port}")


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
    proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=bench:64m max_size=1g inactive=10m use_temp_path=off;
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
            proxy_cache_valid 200 60s;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 10s;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""


def start_nginx(servers):
    conf = os.path.join(servers.tmp, "nginx.conf")
    os.makedirs(os.path.join(servers.tmp, "nginx-cache"), exist_ok=True)
    with open(conf, "w") as f:
        # As root, nginx's workers would drop to www-data, which cannot write
        # the private temp dir holding the cache.
        user = "user root;" if os.geteuid() == 0 else ""
        f.write(NGINX_CONF.format(user=user, tmp=servers.tmp, api=API_PORT, port=NGINX_PORT))
    servers.start(["nginx", "-c", conf, "-p", servers.tmp], cpu=0, name="nginx")
    try:
        wait_http(NGINX_PORT, "/fast")
    except RuntimeError:
        for name in ("nginx.log", "nginx-error.log"):
            path = os.path.join(servers.tmp, name)
            if os.path.exists(path):
                log(open(path).read())
        raise


def start_gateway(servers, extra_env=None):
    env = {"PORT": str(GW_PORT), "HOST": "127.0.0.1", "UPSTREAM_URL": f"http://127.0.0.1:{API_PORT}",
           "WORKERS": "1", "LOG_LEVEL": "warn"}
    env.update(extra_env or {})
    servers.start([CACHEGW], cpu=0, env=env, name="cachegw")
    wait_http(GW_PORT, "/health")


def wrk(port, path, seconds, conns=64, script=None, headers=None, cpu=1):
    argv = ["taskset", "-c", str(cpu), "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    for h in headers or []:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    argv.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


MANYKEYS_LUA = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/bytes/1024?k=" .. math.random(1, 10000))
end
"""


def warm_many_keys(port):
    # Ten threads, a thousand keys each, keep-alive connections.
    def warm(start):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for k in range(start, start + 1000):
            c.request("GET", f"/bytes/1024?k={k}")
            c.getresponse().read()
        c.close()
    threads = [threading.Thread(target=warm, args=(1 + 1000 * i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def summarize(runs):
    return {"rps": median_of(runs, "rps"), "p50_ms": median_of(runs, "p50_ms"),
            "p99_ms": median_of(runs, "p99_ms"),
            "non2xx": sum(r["non2xx"] for r in runs), "runs": runs}


def scenario_hits(servers, rounds, seconds, script_path):
    """hot and manykeys: cachegw, nginx, upstream alone, interleaved per round."""
    results = {}
    targets = {"cachegw": GW_PORT, "nginx": NGINX_PORT, "upstream": API_PORT}
    for port in (GW_PORT, NGINX_PORT):
        for _ in range(3):
            http_get(port, "/bytes/1024")
        warm_many_keys(port)
    for name in ("hot", "manykeys"):
        runs = {t: [] for t in targets}
        for i in range(rounds):
            for t, port in targets.items():
                if name == "hot":
                    r = wrk(port, "/bytes/1024", seconds)
                else:
                    r = wrk(port, "/", seconds, script=script_path)
                runs[t].append(r)
                log(f"  {name} round {i + 1} {t}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} ms "
                    f"p99 {r['p99_ms']:.2f} ms non2xx {r['non2xx']}")
        results[name] = {t: summarize(v) for t, v in runs.items()}
    return results


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
    ports = {"with policies": _free_port(), "policies disabled": _free_port()}
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--only", default="hot,slow,stampede,policy")
    ap.add_argument("--json", default=os.path.join(HERE, "last-run.json"))
    args = ap.parse_args()
    only = set(args.only.split(","))
    servers = Servers()
    results = {"machine": machine(), "rounds": args.rounds, "seconds": args.seconds}
    script_path = os.path.join(servers.tmp, "manykeys.lua")
    with open(script_path, "w") as f:
        f.write(MANYKEYS_LUA)
    try:
        servers.start([EXAMPLE_API, "--port", str(API_PORT), "--latency-ms", "0",
                       "--feed-latency-ms", "0"], cpu=0, name="example-api")
        wait_http(API_PORT, "/__stats")
        start_nginx(servers)
        start_gateway(servers)
        if "hot" in only:
            log("hot / many-keys hits (cachegw vs nginx proxy_cache vs upstream alone)")
            results["hits"] = scenario_hits(servers, args.rounds, args.seconds, script_path)
        if "slow" in only:
            log("slow-route experiment")
            results["slow"] = scenario_slow(args.rounds, args.seconds)
        if "policy" in only:
            log("policy evaluation cost and reload time")
            results["policy"] = scenario_policy(servers, args.rounds, args.seconds)
        if "stampede" in only:
            log("stampede")
            results["stampede"] = scenario_stampede(args.rounds)
    finally:
        servers.stop_all()
        shutil.rmtree(servers.tmp, ignore_errors=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print_report(results)


def print_report(res):
    m = res["machine"]
    print(f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}; {m['date']}; "
          f"medians of {res['rounds']} rounds x {res['seconds']} s; server on CPU 0, wrk on CPU 1.\n")
    if "hits" in res:
        for name, title in (("hot", "Hot hit (one URL, 1 KiB)"),
                            ("manykeys", "Many-keys hit (10,000 URLs, random)")):
            r = res["hits"][name]
            print(f"**{title}**, 64 connections\n")
            print("| server | req/s | p50 ms | p99 ms | non-2xx |")
            print("|---|---:|---:|---:|---:|")
            for t in ("cachegw", "nginx", "upstream"):
                x = r[t]
                print(f"| {t} | {x['rps']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | {x['non2xx']} |")
            print(f"\ncachegw / nginx throughput: **{r['cachegw']['rps'] / r['nginx']['rps']:.2f}x**; "
                  f"p99 {r['cachegw']['p99_ms']:.2f} vs {r['nginx']['p99_ms']:.2f} ms\n")
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


if __name__ == "__main__":
    main()
