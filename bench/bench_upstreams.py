"""Named-upstream benchmarks (issue 13): misses spread over 1 vs 3 instances, and the
failover gap when an instance dies, side by side with nginx `upstream {}`.

    python3 bench/bench_upstreams.py [--build build-bench] [--seconds 10] [--latency-ms 2]
                                     [--repeat 3]

Every request is a miss (a bypass route, nginx without a cache), so the balancing path is
what is measured: cachegw decides, picks an instance and forwards; nginx forwards.  The
example API instances simulate `--latency-ms` of database time per request.  failover: wrk
runs for --seconds while one of three instances is killed (SIGKILL) at a third of the run;
the report counts non-2xx answers and socket errors (cachegw with and without active health
checks; nginx with max_fails=1 fail_timeout=10s and its default proxy_next_upstream, which
retries a GET on the next server), and the slowest request (wrk's Max: a request that waited
for a connect timeout shows here).  Every cell is measured --repeat times, each time with
fresh processes; the report gives the median of each figure and every run's values.
"""

import argparse
import json
import os
import re
import statistics
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (free_port, http_get, load_average, log, machine, parse_wrk,  # noqa: E402
                      wait_http)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


class Procs:
    def __init__(self):
        self.procs = []
        self.tmp = tempfile.mkdtemp(prefix="cachegw-bench-upstreams-")

    def start(self, argv, env=None, name="proc"):
        logf = open(os.path.join(self.tmp, name + ".log"), "ab")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                             env=dict(os.environ, **(env or {})))
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_apis(procs, build, n, latency_ms):
    ports = []
    for i in range(n):
        port = free_port()
        procs.start([os.path.join(build, "example-api"), "--port", str(port), "--latency-ms",
                     str(latency_ms)], name=f"api{i}")
        wait_http(port, "/__stats")
        ports.append(port)
    return ports


def start_cachegw(procs, build, ports, health):
    pdir = os.path.join(procs.tmp, "policies")
    os.makedirs(pdir, exist_ok=True)
    servers = ", ".join(f'"http://127.0.0.1:{p}"' for p in ports)
    h = ('health = { path = "/__stats", interval = 0.5, timeout = 0.25, unhealthy = 1 },'
         if health else "")
    with open(os.path.join(pdir, "bench.lua"), "w") as f:
        f.write(f'upstream "api" {{ servers = {{ {servers} }}, max_fails = 1, {h} }}\n'
                'route "GET /users/:id" { upstream = "api", bypass = true }\n')
    port = free_port()
    procs.start([os.path.join(build, "cachegw"), "--host", "127.0.0.1", "--port", str(port),
                 "--upstream", f"http://127.0.0.1:{ports[0]}"],
                env={"POLICIES_DIR": pdir, "LUA_DIR": os.path.join(ROOT, "lua"),
                     "LOG_LEVEL": "warn"}, name="cachegw")
    wait_http(port, "/health")
    return port


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream api {{ {servers} keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://api;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
        }}
    }}
}}
"""


def start_nginx(procs, ports):
    port = free_port()
    ntmp = os.path.join(procs.tmp, "nginx")
    os.makedirs(ntmp, exist_ok=True)
    servers = " ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in ports)
    conf = os.path.join(ntmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(user="user root;" if os.geteuid() == 0 else "", tmp=ntmp,
                                  servers=servers, port=port))
    procs.start(["nginx", "-c", conf, "-p", ntmp], name="nginx")
    wait_http(port, "/users/1")
    return port


def wrk(port, seconds, conns=32, during=None):
    argv = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency",
            f"http://127.0.0.1:{port}/users/1"]
    t = None
    if during is not None:
        t = threading.Thread(target=during)
        t.start()
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    if t is not None:
        t.join()
    r = parse_wrk(out)
    # The thread stats' Latency line: Avg, Stdev, Max.
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\b", out, re.M)
    if m:
        v, unit = float(m.group(1)), m.group(2)
        r["max_ms"] = {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[unit]
    r["timeouts"] = int(re.search(r"timeout (\d+)", r["socket_errors"]).group(1)) \
        if "timeout" in r["socket_errors"] else 0
    return r


def median_of(runs):
    """The median of every numeric figure over the runs, and the runs themselves."""
    out = {"runs": runs}
    for k, v in runs[0].items():
        if isinstance(v, (int, float)):
            out[k] = statistics.median(r.get(k, 0) for r in runs)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--latency-ms", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    report = {"machine": machine(), "load_before": load_average(), "misses": {},
              "failover": {}, "args": vars(args)}

    misses = {}
    for rep in range(args.repeat):
        for n in (1, 3):
            procs = Procs()
            try:
                ports = start_apis(procs, args.build, n, args.latency_ms)
                gw, ng = start_cachegw(procs, args.build, ports, False), start_nginx(procs, ports)
                for name, port in (("cachegw", gw), ("nginx", ng)):
                    wrk(port, 2)  # warm the connections
                    r = wrk(port, args.seconds)
                    misses.setdefault(f"{name} x{n}", []).append(r)
                    log(f"[{rep + 1}/{args.repeat}] misses {name} x{n}: {r['rps']:.0f} req/s, "
                        f"p99 {r['p99_ms']:.2f} ms")
            finally:
                procs.stop_all()
    report["misses"] = {k: median_of(v) for k, v in misses.items()}

    failover = {}
    for rep in range(args.repeat):
        for name, health in (("cachegw passive", False), ("cachegw active", True),
                             ("nginx max_fails=1", None)):
            procs = Procs()
            try:
                ports = start_apis(procs, args.build, 3, args.latency_ms)
                victim = procs.procs[1]
                port = (start_nginx(procs, ports) if health is None
                        else start_cachegw(procs, args.build, ports, health))
                wrk(port, 1)

                def kill():
                    time.sleep(args.seconds / 3)
                    victim.kill()

                r = wrk(port, args.seconds, during=kill)
                failover.setdefault(name, []).append(r)
                log(f"[{rep + 1}/{args.repeat}] failover {name}: {r['requests']} requests, "
                    f"{r['non2xx']} non-2xx, socket errors: {r['socket_errors'] or 'none'}, "
                    f"p99 {r['p99_ms']:.2f} ms, max {r.get('max_ms', 0):.0f} ms")
            finally:
                procs.stop_all()
    report["failover"] = {k: median_of(v) for k, v in failover.items()}
    report["load_after"] = load_average()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
