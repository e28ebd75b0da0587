#!/usr/bin/env python3
"""Benchmarks of the Redis tier.  Run through bench/run-redis.sh (it installs wrk
and redis, builds a release binary into build-bench).

Hit throughput and latency (wrk, 64 connections, 1 KiB body) of one cachegw
(WORKERS=1, pinned to CPU 0; wrk on CPU 1) in three configurations:

  memory      the memory tier only (no REDIS_URL)
  redis       Redis only (CACHE_MAX_BYTES=0), plain TCP
  redis-tls   Redis only (CACHE_MAX_BYTES=0), TLS (rediss://, private CA)

each on a hot URL (one key: concurrent requests collapse onto one Redis read)
and on 10,000 keys read at random (about one Redis GET per request), next to
redis-benchmark -t get (plain and --tls) against the same redis-server for the
raw round-trip floor.  The redis-server (one process, plain port and TLS port)
is pinned to CPU 1 with wrk; redis-benchmark, in the place of the gateway, to
CPU 0.  Every measurement runs ROUNDS times, interleaved, and the report gives
medians: the machine is shared and noisy, compare within one run.

Then the fallback: under wrk load on 10,000 keys (Redis only), redis-server is
killed with SIGKILL; switch-over = time from the kill until /health/cache
says backend=memory; 2 s later it is restarted on the same port; recovery =
time from the restart (process spawn, so redis-server's own start-up is
included) until it says backend=redis again.  wrk's non-2xx count over the
whole run is reported.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
BUILD = os.environ.get("BENCH_BUILD_DIR", os.path.join(ROOT, "build-bench"))
CACHEGW = os.path.join(BUILD, "cachegw")
EXAMPLE_API = os.path.join(BUILD, "example-api")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from redis_servers import Certs, RedisClient, free_port  # noqa: E402
from benchlib import http_get, log, parse_wrk  # noqa: E402
import benchlib  # noqa: E402

NKEYS = 10000
BODY = 1024

POLICY = """
-- bench: /bytes/:n cached for an hour, whatever the upstream's max-age says,
-- so that nothing expires during the run.
route "GET /bytes/:n" { key = "bytes:{n}:{query}", ttl = 3600 }
"""

MANYKEYS_LUA = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/bytes/%d?k=" .. math.random(1, %d))
end
""" % (BODY, NKEYS)


def wait_for(pred, timeout=10, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


class Procs:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def start(self, argv, cpu=None, env=None, name="proc"):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        logf = open(os.path.join(self.tmp, f"{name}.log"), "ab")
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=e)
        logf.close()
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


class Redis:
    """One redis-server on CPU 1 with a plain port and a TLS port."""

    def __init__(self, procs, certs):
        self.procs = procs
        self.certs = certs
        self.port = free_port()
        self.tls_port = free_port()
        self.dir = os.path.join(procs.tmp, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    def start(self):
        c = self.certs
        argv = ["redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no",
                "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
                "--tls-port", str(self.tls_port), "--tls-cert-file", c.path("server.crt"),
                "--tls-key-file", c.path("server.key"), "--tls-ca-cert-file", c.ca,
                "--tls-auth-clients", "no"]
        self.proc = self.procs.start(argv, cpu=1, name="redis")
        wait_for(lambda: self.cmd("PING") == "PONG", what="redis-server")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def cmd(self, *args):
        with RedisClient(self.port, timeout=5) as c:
            return c.command(*args)

    def get_calls(self):
        info = self.cmd("INFO", "commandstats").decode()
        m = re.search(r"cmdstat_get:calls=(\d+)", info)
        return int(m.group(1)) if m else 0


def wrk_argv(port, path, seconds, script=None, conns=64):
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if script:
        argv += ["-s", script]
    return argv + [f"http://127.0.0.1:{port}{path}"]


def wrk(port, path, seconds, script=None):
    out = subprocess.run(wrk_argv(port, path, seconds, script), capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    return parse_wrk(out)


def redis_benchmark(redis, tls, seconds_hint, value_size):
    """redis-benchmark -t get, 64 clients, random keys among NKEYS (pre-filled)."""
    argv = ["taskset", "-c", "0", "redis-benchmark", "-h", "127.0.0.1",
            "-c", "64", "-r", str(NKEYS), "-d", str(value_size), "--csv", "--precision", "3"]
    if tls:
        argv += ["-p", str(redis.tls_port), "--tls", "--cacert", redis.certs.ca,
                 "--sni", "localhost"]
    else:
        argv += ["-p", str(redis.port)]
    n = 200000 if not tls else 100000
    out = subprocess.run(argv + ["-n", str(n), "-t", "get"], capture_output=True, text=True,
                         timeout=300).stdout
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",
    # "p99_latency_ms","max_latency_ms"
    for line in out.splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if f and f[0].startswith("GET"):
            return {"rps": float(f[1]), "p50_ms": float(f[4]), "p99_ms": float(f[6])}
    raise RuntimeError("cannot parse redis-benchmark output:\n" + out)


def start_gateway(procs, api_port, name, env, return_proc=False):
    port = free_port()
    e = {"HOST": "127.0.0.1", "PORT": str(port), "UPSTREAM_URL": f"http://127.0.0.1:{api_port}",
         "WORKERS": "1", "LOG_LEVEL": "info", "POLICIES_DIR": os.path.join(procs.tmp, "policies"),
         "LUA_DIR": os.path.join(ROOT, "lua"), "REDIS_URL": ""}
    e.update(env)
    if not e["REDIS_URL"]:
        del e["REDIS_URL"]
    proc = procs.start([CACHEGW], cpu=0, env=e, name=f"cachegw-{name}")
    wait_for(lambda: http_get(port, "/health", timeout=1)[0] == 200, what=f"cachegw {name}")
    if return_proc:
        return port, proc
    return port


def backend(port):
    return json.loads(http_get(port, "/health/cache", timeout=5)[2])["backend"]


def warm(port, paths, threads=8):
    def run(chunk):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for p in chunk:
            c.request("GET", p)
            c.getresponse().read()
        c.close()
    ts = [threading.Thread(target=run, args=(paths[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def upstream_requests(api_port):
    return json.loads(http_get(api_port, "/__stats")[2])["requests"]


def summarize(runs):
    return {"rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "non2xx": sum(r.get("non2xx", 0) for r in runs),
            "gets_per_request": (statistics.median(r["gets_per_request"] for r in runs)
                                 if all("gets_per_request" in r for r in runs) else None),
            "runs": runs}


def scenario_hits(redis, gws, api_port, rounds, seconds, script):
    hot_path = f"/bytes/{BODY}?k=hot"
    res = {}
    for scen in ("hot", "manykeys"):
        runs = {name: [] for name in gws}
        for i in range(rounds):
            for name, port in gws.items():
                up0 = upstream_requests(api_port)
                g0 = redis.get_calls()
                if scen == "hot":
                    r = wrk(port, hot_path, seconds)
                else:
                    r = wrk(port, "/", seconds, script)
                r["upstream"] = upstream_requests(api_port) - up0
                if name != "memory" and r["requests"]:
                    r["gets_per_request"] = (redis.get_calls() - g0) / r["requests"]
                runs[name].append(r)
                log(f"  {scen} round {i + 1} {name}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                    f"p99 {r['p99_ms']:.2f} ms, non2xx {r['non2xx']}, upstream {r['upstream']}"
                    + (f", Redis GETs/request {r['gets_per_request']:.3f}"
                       if "gets_per_request" in r else ""))
        res[scen] = {name: summarize(v) for name, v in runs.items()}
    return res


def scenario_redis_benchmark(redis, rounds, value_size):
    runs = {"plain": [], "tls": []}
    for i in range(rounds):
        for kind in runs:
            r = redis_benchmark(redis, kind == "tls", 0, value_size)
            runs[kind].append(r)
            log(f"  redis-benchmark round {i + 1} {kind}: {r['rps']:.0f} GET/s, "
                f"p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms")
    return {k: summarize(v) for k, v in runs.items()}


def poll_until(port, want, since, timeout=30):
    """Milliseconds from `since` (time.monotonic()) until /health/cache says backend=want."""
    while time.monotonic() - since < timeout:
        try:
            if backend(port) == want:
                return (time.monotonic() - since) * 1000
        except OSError:
            pass
        time.sleep(0.005)
    return None


def scenario_fallback(procs, redis, api_port, rounds, script):
    out = []
    for i in range(rounds):
        port, gw = start_gateway(procs, api_port, f"fallback{i}",
                                 {"REDIS_URL": f"redis://127.0.0.1:{redis.port}",
                                  "CACHE_MAX_BYTES": "0"}, return_proc=True)
        wait_for(lambda: backend(port) == "redis", what="fallback gateway on Redis")
        seconds = 10
        load = subprocess.Popen(wrk_argv(port, "/", seconds, script), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        time.sleep(3)
        t_kill = time.monotonic()
        redis.kill()
        switch = poll_until(port, "memory", t_kill)
        time.sleep(2)
        t_restart = time.monotonic()
        redis.start()  # returns once the new server answers PING
        started_ms = (time.monotonic() - t_restart) * 1000
        recovery = poll_until(port, "redis", t_restart)
        r = parse_wrk(load.communicate(timeout=seconds + 60)[0])
        # The restart time counts the server's own start-up (until it answers PING).
        rec = {"switch_ms": switch, "recovery_ms": recovery, "redis_start_ms": started_ms,
               "non2xx": r["non2xx"], "requests": r["requests"], "rps": r["rps"],
               "p99_ms": r["p99_ms"], "socket_errors": r["socket_errors"]}
        out.append(rec)
        log(f"  fallback round {i + 1}: switch-over {switch:.1f} ms, recovery {recovery:.1f} ms after "
            f"the restart (redis-server took {started_ms:.0f} ms to answer PING), "
            f"{r['requests']} requests, non2xx {r['non2xx']}, socket errors '{r['socket_errors']}'")
        gw.send_signal(signal.SIGTERM)
        gw.wait(15)
        if switch is None or recovery is None:
            raise RuntimeError("the gateway did not switch over or recover within 30 s")
    return out


def machine():
    ver = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=(\S+)", ver)
    return dict(benchlib.machine(), redis=m.group(1) if m else "?")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--only", default="hits,redis-benchmark,fallback")
    ap.add_argument("--json", default=os.path.join(HERE, "last-run-redis.json"))
    args = ap.parse_args()
    only = set(args.only.split(","))
    tmp = tempfile.mkdtemp(prefix="cachegw-bench-redis-")
    os.makedirs(os.path.join(tmp, "policies"))
    with open(os.path.join(tmp, "policies", "bench.lua"), "w") as f:
        f.write(POLICY)
    script = os.path.join(tmp, "manykeys.lua")
    with open(script, "w") as f:
        f.write(MANYKEYS_LUA)
    procs = Procs(tmp)
    certs = Certs()
    results = {"machine": machine(), "rounds": args.rounds, "seconds": args.seconds}
    try:
        api_port = free_port()
        procs.start([EXAMPLE_API, "--port", str(api_port), "--latency-ms", "0"], name="example-api")
        wait_for(lambda: http_get(api_port, "/__stats", timeout=1)[0] == 200, what="example-api")
        redis = Redis(procs, certs)
        redis.start()
        gws = {
            "memory": start_gateway(procs, api_port, "memory", {}),
            "redis": start_gateway(procs, api_port, "redis",
                                   {"REDIS_URL": f"redis://127.0.0.1:{redis.port}",
                                    "CACHE_MAX_BYTES": "0"}),
            "redis-tls": start_gateway(procs, api_port, "redis-tls",
                                       {"REDIS_URL": f"rediss://localhost:{redis.tls_port}",
                                        "REDIS_TLS_CA_FILE": certs.ca, "CACHE_MAX_BYTES": "0"}),
        }
        for name, port in gws.items():
            if name != "memory":
                wait_for(lambda: backend(port) == "redis", what=f"{name} on Redis")
        paths = [f"/bytes/{BODY}?k={k}" for k in range(1, NKEYS + 1)] + [f"/bytes/{BODY}?k=hot"]
        log("warming: the memory tier, and Redis through the plain gateway")
        warm(gws["memory"], paths)
        warm(gws["redis"], paths)
        wait_for(lambda: redis.cmd("DBSIZE") >= len(paths), timeout=30, what="Redis filled")
        value_size = len(redis.cmd("GET", f"cachegw:c:bytes:{BODY}:k=1")
                         or redis.cmd("GET", redis.cmd("RANDOMKEY")))
        results["value_bytes"] = value_size
        for name, port in gws.items():
            st, h, _ = http_get(port, f"/bytes/{BODY}?k=1")
            if h.get("x-cache") != "HIT":
                raise RuntimeError(f"{name}: warm key not a hit: {h}")
            log(f"  {name}: {h.get('cache-status')}")
        if "hits" in only:
            log(f"hits: {args.rounds} rounds x {args.seconds} s, 64 connections")
            results["hits"] = scenario_hits(redis, gws, api_port, args.rounds, args.seconds, script)
        if "redis-benchmark" in only:
            # The same keyspace size and value size as the gateway's entries.
            subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(redis.port), "-t", "set",
                            "-r", str(NKEYS), "-n", str(4 * NKEYS), "-d", str(value_size), "-q"],
                           capture_output=True, timeout=300)
            log(f"redis-benchmark -t get (64 clients, {NKEYS} keys, {value_size}-byte values)")
            results["redis_benchmark"] = scenario_redis_benchmark(redis, args.rounds, value_size)
        if "fallback" in only:
            log("fallback: SIGKILL of redis-server under load, then restart")
            results["fallback"] = scenario_fallback(procs, redis, api_port, args.rounds, script)
    finally:
        procs.stop_all()
        certs.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print_report(results)


def print_report(res):
    m = res["machine"]
    print(f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, redis-server {m['redis']}; "
          f"{m['date']}; medians of {res['rounds']} rounds x {res['seconds']} s; cachegw "
          f"(WORKERS=1) on CPU 0, wrk and redis-server on CPU 1.\n")
    if "hits" in res:
        print(f"**Hits**, 1 KiB body ({res.get('value_bytes', '?')}-byte value in Redis), "
              "64 connections\n")
        print("| configuration | URLs | req/s | p50 ms | p99 ms | non-2xx | Redis GETs / request |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for scen, label in (("hot", "1 (hot)"), ("manykeys", f"{NKEYS:,} random")):
            for name, title in (("memory", "memory tier only"), ("redis", "Redis only, TCP"),
                                ("redis-tls", "Redis only, TLS")):
                x = res["hits"][scen][name]
                gpr = "-" if x["gets_per_request"] is None else f"{x['gets_per_request']:.3f}"
                print(f"| {title} | {label} | {x['rps']:.0f} | {x['p50_ms']:.2f} | "
                      f"{x['p99_ms']:.2f} | {x['non2xx']} | {gpr} |")
        print()
    if "redis_benchmark" in res:
        print("**redis-benchmark -t get** (64 clients, random keys, same value size; "
              "redis-benchmark on CPU 0, redis-server on CPU 1)\n")
        print("| transport | GET/s | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|")
        for k in ("plain", "tls"):
            x = res["redis_benchmark"][k]
            print(f"| {k} | {x['rps']:.0f} | {x['p50_ms']:.3f} | {x['p99_ms']:.3f} |")
        print()
    if "fallback" in res:
        print("**Fallback** (Redis only, TCP; wrk on 10,000 keys, 64 connections, 10 s; "
              "SIGKILL at 3 s, restart 2 s after the switch)\n")
        print("| round | switch-over ms | recovery ms | of which redis-server start-up ms | "
              "requests | req/s | p99 ms | non-2xx |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for i, r in enumerate(res["fallback"]):
            print(f"| {i + 1} | {r['switch_ms']:.1f} | {r['recovery_ms']:.1f} | "
                  f"{r['redis_start_ms']:.0f} | {r['requests']} | {r['rps']:.0f} | "
                  f"{r['p99_ms']:.2f} | {r['non2xx']} |")
        sw = statistics.median(r["switch_ms"] for r in res["fallback"])
        rc = statistics.median(r["recovery_ms"] for r in res["fallback"])
        print(f"\nMedian switch-over **{sw:.1f} ms** (SIGKILL to /health/cache backend=memory), "
              f"recovery **{rc:.1f} ms** (restart to backend=redis, redis-server start-up "
              "included).\n")


if __name__ == "__main__":
    main()
