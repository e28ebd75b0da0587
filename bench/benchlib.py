"""Helpers shared by the benchmark scripts (bench.py, bench_redis.py, bench_upstreams.py,
bench_cluster.py)."""

import http.client
import os
import platform
import re
import socket
import sys
import time


def free_port():
    """A free loopback port, so a stray server on a fixed port is never measured instead."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, path, timeout=10, ok=lambda status: status < 500):
    """Waits until port answers path with a status ok() accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok(http_get(port, path, timeout=1)[0]):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not answer {path}")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def http_get(port, path, headers=None, timeout=30):
    """(status, lower-cased headers, body) of one GET on a fresh connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def parse_wrk(out):
    """Throughput, p50/p99 (ms), request and error counts from `wrk --latency`."""
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise RuntimeError("cannot parse wrk output:\n" + out)

    def lat(pct):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
        if m is None:
            raise RuntimeError("cannot parse wrk output:\n" + out)
        v, unit = float(m.group(1)), m.group(2)
        return {"us": v / 1000, "ms": v, "s": v * 1000, "m": v * 60000}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    total = re.search(r"(\d+) requests in", out)
    return {"rps": float(m.group(1)), "p50_ms": lat(50), "p99_ms": lat(99),
            "requests": int(total.group(1)) if total else 0,
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1).strip() if errors else ""}


def load_average():
    """The 1, 5 and 15 minute load averages (as `uptime` shows them), e.g. "1.52 2.10 2.31":
    the machines are shared, so every result notes how busy the machine was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine():
    """CPU model, core count, kernel and time of the run."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def process_tree(pid):
    """pid and its descendants (nginx's master and worker, varnishd's manager and child)."""
    out = [pid]
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                children = f.read().split()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just ended
        for child in children:
            out += process_tree(int(child))
    return out
