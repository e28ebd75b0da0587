#!/usr/bin/env python3
"""Invalidation at scale: 1,000,000 entries in Redis, a prefix (and a tag)
covering 100,000 of them, invalidated through the gateway.

Measures, with two gateway instances A and B sharing one redis-server:
  - the Redis-side cost of the invalidation (SLOWLOG of the sequenced script),
  - the end-to-end time from A's write returning to B answering MISS,
  - that a sample of covered keys all miss on B and uncovered keys still hit,
  - that the background reclaim (SCAN + UNLINK) frees the covered keys later.
Run via bench/run.sh --only scale, or directly after a build (BENCH_BUILD_DIR).
"""

import http.client
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("BENCH_BUILD_DIR", os.path.join(HERE, "..", "build-bench"))

POLICY = '''
route "GET /scale/:group/:id" { key = "scale:{group}:{id}", ttl = 3600 }
route "POST /echo/prefix" { invalidate = { "scale:hot2:*" } }
route "POST /echo/tag" { invalidate_tags = { "grp-hot" } }
'''


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request(method, path, body=body)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, r.getheader("X-Cache")


def redis(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True, check=True).stdout.strip()


def wait_port(port, path="/health"):
    for _ in range(200):
        try:
            get(port, path)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never answered")


def main(n=1_000_000, every=10, sample=1000, build=None, report=True):
    """Runs the scenario; returns {kind: results}.  build: dir with the binaries."""
    global BUILD
    if build:
        BUILD = build
    tmp = tempfile.mkdtemp(prefix="cachegw-scale-")
    procs = []
    try:
        rport, aport, gwa, gwb = free_port(), free_port(), free_port(), free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--bind",
                                       "127.0.0.1", "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL))
        for _ in range(100):
            try:
                redis(rport, "PING")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        t0 = time.time()
        fill = subprocess.Popen([os.path.join(BUILD, "redis-fill"), "cachegw:c:", str(n), str(every)],
                                stdout=subprocess.PIPE)
        subprocess.run(["redis-cli", "-p", str(rport), "--pipe"], stdin=fill.stdout,
                       stdout=subprocess.DEVNULL, check=True)
        fill.wait()
        keys = int(redis(rport, "DBSIZE"))
        print(f"filled {keys} keys in {time.time() - t0:.1f} s", file=sys.stderr)
        pdir = os.path.join(tmp, "policies")
        os.makedirs(pdir)
        with open(os.path.join(pdir, "scale.lua"), "w") as f:
            f.write(POLICY)
        procs.append(subprocess.Popen([os.path.join(BUILD, "example-api"), "--port", str(aport),
                                       "--latency-ms", "0"], stderr=subprocess.DEVNULL))
        env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{rport}", POLICIES_DIR=pdir,
                   UPSTREAM_URL=f"http://127.0.0.1:{aport}", LOG_LEVEL="warn", HOST="127.0.0.1")
        for port in (gwa, gwb):
            procs.append(subprocess.Popen([os.path.join(BUILD, "cachegw"), "--port", str(port)],
                                          env=env))
            wait_port(port)
        time.sleep(0.5)
        hot = [i for i in range(0, n, every)]
        cold = [i for i in range(n) if i % every]
        rnd = random.Random(7)
        hot_sample = rnd.sample(hot, sample)
        cold_sample = rnd.sample(cold, sample)
        # Before: every sampled entry is a hit (from Redis) on B.
        before = [get(gwb, f"/scale/hot/{i}")[1] for i in hot_sample[:100]]
        assert before.count("HIT") == 100, before
        results = {}
        for kind in ("tag", "prefix"):
            group = "hot" if kind == "tag" else "hot2"
            if kind == "prefix":
                # A second group of 100,000 for the prefix case (the tag case
                # already made "hot" unreachable).
                fill = subprocess.Popen([os.path.join(BUILD, "redis-fill"), "cachegw:c:",
                                         str(n), str(every), "hot2"], stdout=subprocess.PIPE)
                subprocess.run(["redis-cli", "-p", str(rport), "--pipe"], stdin=fill.stdout,
                               stdout=subprocess.DEVNULL, check=True)
                fill.wait()
                before = [get(gwb, f"/scale/hot2/{i}")[1] for i in hot_sample[:100]]
                assert before.count("HIT") == 100, before
            redis(rport, "CONFIG", "SET", "slowlog-log-slower-than", "0")
            redis(rport, "SLOWLOG", "RESET")
            t_write = time.monotonic()
            status, _ = get(gwa, f"/echo/{kind}", method="POST", body=b"{}")
            t_answered = time.monotonic()
            assert status == 200, status
            probe = hot_sample[0]
            while get(gwb, f"/scale/{group}/{probe}")[1] != "MISS":
                time.sleep(0.0005)
            t_seen = time.monotonic()
            slow = redis(rport, "SLOWLOG", "GET", "100000")
            redis(rport, "CONFIG", "SET", "slowlog-log-slower-than", "10000")
            script_us = None
            lines = slow.splitlines()
            for j, line in enumerate(lines):
                if line.strip() == "EVAL" and j >= 2:
                    script_us = int(lines[j - 1])
                    break
            misses = sum(1 for i in hot_sample if get(gwb, f"/scale/{group}/{i}")[1] == "MISS")
            cold_hits = sum(1 for i in cold_sample[:200] if get(gwb, f"/scale/cold/{i}")[1] == "HIT")
            results[kind] = {"write_ms": (t_answered - t_write) * 1000,
                             "seen_on_b_ms": (t_seen - t_write) * 1000,
                             "script_us": script_us, "covered_missed": misses,
                             "sample": sample, "uncovered_hit": cold_hits}
            print(f"{kind}: {results[kind]}", file=sys.stderr)
            if kind == "prefix":
                t_reclaim = time.monotonic()
                while True:
                    left = int(redis(rport, "EVAL",
                                     "return #redis.call('KEYS', ARGV[1])", "0", "cachegw:c:scale:hot2:*"))
                    if left == 0 or time.monotonic() - t_reclaim > 120:
                        break
                    time.sleep(0.5)
                results[kind]["reclaim_s"] = time.monotonic() - t_reclaim
                results[kind]["left_after_reclaim"] = left
                print(f"reclaimed in {results[kind]['reclaim_s']:.1f} s, left {left}",
                      file=sys.stderr)
        if not report:
            return results
        print("| invalidation | covered keys | Redis script | write answered | B misses after | "
              "sample covered missing | uncovered still hit |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for kind, r in results.items():
            print(f"| {kind} | {n // every} of {n} | {r['script_us']} us | {r['write_ms']:.1f} ms | "
                  f"{r['seen_on_b_ms']:.1f} ms | {r['covered_missed']}/{r['sample']} | "
                  f"{r['uncovered_hit']}/200 |")
        if "reclaim_s" in results.get("prefix", {}):
            print(f"\nBackground reclaim of the prefix's keys (SCAN + UNLINK batches): "
                  f"{results['prefix']['reclaim_s']:.1f} s, "
                  f"{results['prefix']['left_after_reclaim']} left.")
        return results
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
