#!/usr/bin/env python3
"""Redis-tier hits on one standalone node vs the 3-master Redis Cluster (issue 10).

One cachegw (WORKERS=1, CACHE_MAX_BYTES=0 so that every hit reads Redis) in
front of the example API, 10,000 keys of 1 KiB read at random by wrk (64
connections), against:

  standalone       one redis-server (plain), REDIS_MODE=standalone (the plain pool)
  standalone-auto  the same server, REDIS_MODE=auto: the cluster router, which finds
                   one node (the cost of the router itself, same data, same server)
  cluster     the 3 masters + 3 replicas of scripts/redis-cluster-servers.sh
              (plain, ports REDIS_CLUSTER_PORT_BASE + 1..6, default 17101-17106),
              REDIS_MODE=auto (found cluster)

Rounds alternate between the two; the report gives each one's median
throughput and p99 and the cluster's cost.  The machine is shared: compare
within one run.

Usage: python3 bench/bench_cluster.py [--build DIR] [--rounds 3] [--seconds 8]
(DIR holds a release cachegw and example-api; default build-bench.)
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
from benchlib import http_get, parse_wrk, wait_http  # noqa: E402
from redis_servers import free_port  # noqa: E402

NKEYS = 10000
BODY = 1024
SCRIPT = """
math.randomseed(%d)
request = function()
  return wrk.format("GET", "/bytes/%d?k=" .. math.random(1, %d))
end
"""


def gateway(build, api_port, redis_url, mode, log):
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", WORKERS="1", CACHE_MAX_BYTES="0",
               DEFAULT_TTL="3600", REDIS_URL=redis_url, REDIS_MODE=mode, LOG_LEVEL="warn",
               UPSTREAM_URL=f"http://127.0.0.1:{api_port}")
    p = subprocess.Popen([os.path.join(build, "cachegw")], env=env, stdout=log, stderr=log)
    wait_http(port, "/health", timeout=15, ok=lambda status: status == 200)
    return p, port


def warm(port):
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: http_get(port, f"/bytes/{BODY}?k={k}"), range(1, NKEYS + 1)))


def cpu_s(pid):
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(port, pid, seconds, script):
    c0 = cpu_s(pid)
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", "-s", script,
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         check=True).stdout
    r = parse_wrk(out)
    # CPU per request of the gateway: what a busy shared machine distorts least.
    r["cpu_us"] = (cpu_s(pid) - c0) * 1e6 / max(r["requests"], 1)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    a = ap.parse_args()
    base = int(os.environ.get("REDIS_CLUSTER_PORT_BASE") or 17100)
    tmp = tempfile.mkdtemp(prefix="cachegw-bench-cluster-")
    procs = []
    log = open(os.path.join(tmp, "log"), "w")
    cluster_dir = os.path.join(tmp, "cluster")
    try:
        subprocess.run(["sh", os.path.join(ROOT, "scripts", "redis-cluster-servers.sh"), "start",
                        cluster_dir], check=True, stdout=subprocess.DEVNULL)
        rport = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--bind",
                                       "127.0.0.1", "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL))
        api_port = free_port()
        procs.append(subprocess.Popen([os.path.join(a.build, "example-api"), "--port",
                                       str(api_port), "--latency-ms", "0"], stdout=log,
                                      stderr=log))
        wait_http(api_port, "/bytes/16")
        script = os.path.join(tmp, "keys.lua")
        with open(script, "w") as f:
            f.write(SCRIPT % (42, BODY, NKEYS))
        setups = {"standalone": (f"redis://127.0.0.1:{rport}", "standalone"),
                  "standalone-auto": (f"redis://127.0.0.1:{rport}", "auto"),
                  "cluster": ("redis://127.0.0.1:%d,127.0.0.1:%d" % (base + 1, base + 2),
                              "auto")}
        gws = {}
        for name, (url, mode) in setups.items():
            p, port = gateway(a.build, api_port, url, mode, log)
            procs.append(p)
            time.sleep(0.5)
            warm(port)
            gws[name] = (port, p.pid)
        res = {n: [] for n in setups}
        for _ in range(a.rounds):
            for name, (port, pid) in gws.items():
                res[name].append(run_wrk(port, pid, a.seconds, script))
        print(f"Redis-tier hits (memory tier off), {NKEYS:,} random keys of {BODY} B, wrk 64 "
              f"connections, cachegw WORKERS=1; median of {a.rounds} rounds\n")
        print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}\n")
        print("| Redis | req/s | p99 ms | gateway CPU us/request | non-2xx |")
        print("|---|---:|---:|---:|---:|")
        med, cpu = {}, {}
        for name in setups:
            rps = statistics.median(r["rps"] for r in res[name])
            p99 = statistics.median(r["p99_ms"] for r in res[name])
            cpu[name] = statistics.median(r["cpu_us"] for r in res[name])
            errs = sum(r["non2xx"] for r in res[name])
            med[name] = rps
            print(f"| {name} | {rps:,.0f} | {p99:.2f} | {cpu[name]:.1f} | {errs} |")
        print(f"\nthe router in front of the same node (standalone-auto / standalone): "
              f"throughput {med['standalone-auto'] / med['standalone']:.2f}, CPU per request "
              f"{cpu['standalone-auto'] / cpu['standalone']:.2f}; cluster / standalone: "
              f"throughput {med['cluster'] / med['standalone']:.2f}, CPU per request "
              f"{cpu['cluster'] / cpu['standalone']:.2f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["sh", os.path.join(ROOT, "scripts", "redis-cluster-servers.sh"), "stop",
                        cluster_dir], stdout=subprocess.DEVNULL)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
