#!/usr/bin/env python3
"""Compression benchmark (issue 12): hit throughput and bytes on the wire for a 16 KiB JSON
body served from cache as identity, gzip and br, and with compression turned off.

Run through bench/run.sh (`bench/run.sh --only compress`), or alone against a built binary:
    python3 bench/bench_compress.py [--bin build-bench/cachegw] [--rounds 3] [--seconds 5]

The upstream is a small in-process HTTP server answering one JSON document (max-age=3600,
so every measured request is a hit; the upstream counts its requests to prove it).  The
gateway is pinned to CPU 0 and wrk to CPU 1 (taskset), like bench.py.  Bytes on the wire
per response are wrk's "read" total divided by its request count (status line and headers
included).
"""

import argparse
import http.client
import http.server
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_document(size=16384):
    """A realistic API answer: a list of user records, cut to exactly size bytes."""
    users, i = [], 0
    while True:
        users.append({"id": i, "name": f"user{i:05d}", "email": f"user{i:05d}@example.com",
                      "active": i % 3 != 0, "roles": ["reader"] + (["admin"] if i % 7 == 0
                                                                     else []),
                      "created": f"2024-0{1 + i % 9}-1{i % 10}T12:{i % 60:02d}:00Z",
                      "score": (i * 7919) % 1000 / 10})
        doc = json.dumps({"users": users}).encode()
        if len(doc) >= size:
            break
        i += 1
    # Trim the last record and pad with spaces inside the object to hit size exactly.
    users.pop()
    doc = json.dumps({"users": users}).encode()
    return doc[:-1] + b" " * (size - len(doc)) + b"}"


class Upstream:
    def __init__(self, body):
        self.count = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.count += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=3600")
                self.send_header("ETag", '"doc-1"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()


def get(port, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def start_gateway(binary, up_port, env_extra):
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1",
               UPSTREAM_URL=f"http://127.0.0.1:{up_port}", WORKERS="1", LOG_LEVEL="warn",
               POLICIES_DIR=os.path.join(ROOT, "bench", "no-policies-does-not-exist"),
               DEFAULT_TTL="0")
    env.pop("REDIS_URL", None)
    env.update(env_extra)
    p = subprocess.Popen(["taskset", "-c", "0", binary], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if get(port, "/health")[0].status == 200:
                return p, port
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("cachegw did not start")


UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def wrk(port, path, seconds, headers=()):
    argv = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    argv.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", out)
    n, read = int(m.group(1)), float(m.group(2)) * UNITS[m.group(3)]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "bytes_per_response": read / n if n else 0, "p99_ms": p99_ms,
            "non2xx": int(non2xx.group(1)) if non2xx else 0}


CASES = [
    # label, gateway env, request headers
    ("identity (COMPRESS=gzip,br, no Accept-Encoding)", {}, ()),
    ("gzip (Accept-Encoding: gzip)", {}, ("Accept-Encoding: gzip",)),
    ("br (Accept-Encoding: gzip, br)", {}, ("Accept-Encoding: gzip, br",)),
    ("compression off (COMPRESS=, Accept-Encoding: gzip)", {"COMPRESS": ""},
     ("Accept-Encoding: gzip",)),
]


def cpu_ns(pid):
    """(ns on a CPU, ns waiting for one) summed over pid's threads (/proc schedstat).  The
    wait is time the server was runnable while another process had its CPU."""
    run = wait = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                a, b = f.read().split()[:2]
        except (FileNotFoundError, ProcessLookupError):
            continue
        run, wait = run + int(a), wait + int(b)
    return run, wait


def scenario(binary, rounds, seconds, log=print):
    """Every case has its own gateway, all started first; each round runs the cases in
    turn (interleaved), so a busy spell on a shared machine hits every case alike.  Server
    CPU per response (schedstat) is reported beside req/s: it moves far less with load."""
    body = json_document()
    up = Upstream(body)
    results = {"body_bytes": len(body), "cases": {}, "load_start": os.getloadavg()}
    gws = []
    try:
        for label, env, headers in CASES:
            p, port = start_gateway(binary, up.port, env)
            gws.append(p)
            hdrs = dict(h.split(": ", 1) for h in headers)
            before = up.count
            get(port, "/doc.json", hdrs)
            r, b = get(port, "/doc.json", hdrs)
            assert r.getheader("X-Cache") == "HIT", r.getheaders()
            results["cases"][label] = {"coding": r.getheader("Content-Encoding") or "identity",
                                       "body_on_wire": len(b), "runs": [], "port": port,
                                       "pid": p.pid, "headers": headers,
                                       "upstream_requests": up.count - before}
        for i in range(rounds):
            for label, c in results["cases"].items():
                c0, t0 = cpu_ns(c["pid"]), time.monotonic_ns()
                w = wrk(c["port"], "/doc.json", seconds, c["headers"])
                c1, t1 = cpu_ns(c["pid"]), time.monotonic_ns()
                n = w["rps"] * (t1 - t0) / 1e9
                w["cpu_us_per_response"] = (c1[0] - c0[0]) / 1000 / n if n else 0
                w["server_wait_pct"] = 100.0 * (c1[1] - c0[1]) / (t1 - t0)
                c["runs"].append(w)
                log(f"  compress {label} round {i + 1}: {w['rps']:.0f} req/s, "
                    f"{w['bytes_per_response']:.0f} B/response, p99 {w['p99_ms']:.2f} ms, "
                    f"server {w['cpu_us_per_response']:.1f} us CPU/response, waited "
                    f"{w['server_wait_pct']:.0f} %, non2xx {w['non2xx']}")
        for c in results["cases"].values():
            runs = c["runs"]
            c["rps"] = statistics.median(w["rps"] for w in runs)
            c["rps_best"] = max(w["rps"] for w in runs)
            c["bytes_per_response"] = statistics.median(w["bytes_per_response"] for w in runs)
            c["p99_ms"] = statistics.median(w["p99_ms"] for w in runs)
            c["cpu_us_per_response"] = statistics.median(w["cpu_us_per_response"] for w in runs)
            c["upstream_requests"] += 0
            del c["pid"], c["port"]
        results["upstream_total"] = up.count
    finally:
        for p in gws:
            p.terminate()
            p.wait(10)
        up.stop()
    results["load_end"] = os.getloadavg()
    return results


def report(res):
    lines = [f"16 KiB JSON body ({res['body_bytes']} bytes), one URL, 64 connections, hits only "
             f"(upstream requests over the whole run: {res.get('upstream_total', '?')}, one per "
             f"gateway). Load average {' '.join(f'{x:.2f}' for x in res.get('load_start', []))}"
             f" at the start, {' '.join(f'{x:.2f}' for x in res.get('load_end', []))} at the end.",
             "", "| case | Content-Encoding | body bytes | bytes/response on the wire | req/s "
             "median (best) | server CPU us/response | p99 ms |", "|---|---|---|---:|---:|---:|---:|"]
    for label, c in res["cases"].items():
        lines.append(f"| {label} | {c['coding']} | {c['body_on_wire']} | "
                     f"{c['bytes_per_response']:.0f} | {c['rps']:.0f} ({c['rps_best']:.0f}) | "
                     f"{c['cpu_us_per_response']:.1f} | {c['p99_ms']:.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.environ.get(
        "BENCH_BUILD_DIR", os.path.join(ROOT, "build-bench")), "cachegw"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    res = scenario(args.bin, args.rounds, args.seconds, log=lambda s: print(s, file=sys.stderr))
    print(report(res))


if __name__ == "__main__":
    main()
