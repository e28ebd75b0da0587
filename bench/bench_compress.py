#!/usr/bin/env python3
"""Compression benchmark (issue 12): hit throughput and bytes on the wire for a 16 KiB JSON
body served from cache as identity, gzip and br, and with compression turned off, side by
side with the issue's anchors, nginx and Varnish:

  nginx proxy_cache + `gzip on` (gzip_types application/json).  nginx caches the upstream's
      identity body and its gzip filter compresses it again on every hit; measured at
      nginx's default gzip_comp_level 1 and at 6 (the level cachegw stores), plus an
      identity client.  proxy_set_header Accept-Encoding "" keeps the upstream's coding out
      of the one cache key, as the usual configuration does.
  nginx static file + `gzip_static on`: gzip_static serves a precompressed <file>.gz that
      lies next to a file on disk; it never applies to proxy_cache entries.  It is measured
      on the same document and its level 6 .gz as the "compressed once, ahead of time"
      bound for nginx, not as a cache.
  Varnish 7.1 with http_gzip_support=on and a VCL that sets beresp.do_gzip for JSON: the
      object is gzipped once when stored (gzip_level 6 by default), gzip clients get that
      copy, identity clients get it gunzipped on every hit (Varnish keeps no identity copy).

Run through bench/run.sh (`bench/run.sh --only compress`, which installs wrk, nginx and
varnish), or alone against a built binary:
    python3 bench/bench_compress.py [--bin build-bench/cachegw] [--rounds 3] [--seconds 5]
        [--no-anchors]

The upstream is a small in-process HTTP server answering one JSON document (max-age=3600,
so every measured request is a hit; the upstream counts its requests to prove it).  Every
case gets its own server, all started first; each server is pinned to CPU 0 and wrk to
CPU 1 (taskset), like bench.py.  Each round runs every case once, in an order rotated by
round, so a busy spell on a shared machine hits every case alike.  Bytes on the wire per
response are wrk's "read" total divided by its request count (status line, headers and any
chunk framing included).  Server CPU per response is the CPU time of the server's whole
process tree (nginx's master and worker, varnishd's manager and cache child) from
/proc/<tid>/schedstat over wrk's request count.
"""

import argparse
import gzip
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import process_tree

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
PATH = "/doc.json"


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


def wait_ready(proc, port, path, what, timeout, logpath=None):
    """Waits until port answers path; a server that exits or stays silent is an error that
    shows its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            get(port, path)
            return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    detail = ""
    if logpath and os.path.exists(logpath):
        with open(logpath, errors="replace") as f:
            detail = "\n" + f.read()[-4000:]
    raise RuntimeError(f"{what} did not answer on port {port} within {timeout} s "
                       f"(exit status {proc.poll()}){detail}")


def start_gateway(binary, up_port, env_extra, tmp, name):
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1",
               UPSTREAM_URL=f"http://127.0.0.1:{up_port}", WORKERS="1", LOG_LEVEL="warn",
               POLICIES_DIR=os.path.join(ROOT, "bench", "no-policies-does-not-exist"),
               DEFAULT_TTL="0")
    env.pop("REDIS_URL", None)
    env.update(env_extra)
    logpath = os.path.join(tmp, f"{name}.log")
    with open(logpath, "wb") as logf:
        p = subprocess.Popen(["taskset", "-c", "0", binary], env=env, stdout=logf,
                             stderr=subprocess.STDOUT)
    wait_ready(p, port, "/health", f"cachegw ({name})", 10, logpath)
    return p, port


NGINX_CONF = """
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/json;
    proxy_cache_path {dir}/cache levels=1:2 keys_zone=c:8m use_temp_path=off;
    gzip on;
    gzip_types application/json;
    gzip_comp_level {level};
    gzip_vary on;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        location = /nginx-ready-probe {{ return 204; }}
        location / {{
{location}
        }}
    }}
}}
"""

NGINX_PROXY = """            proxy_pass http://127.0.0.1:{up};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Accept-Encoding "";
            proxy_cache c;
            proxy_cache_key $request_uri;
            add_header X-Cache $upstream_cache_status;"""

NGINX_STATIC = """            root {dir}/www;
            gzip_static on;
            add_header X-Cache STATIC;"""


def start_nginx(up_port, tmp, name, level, static_body=None):
    """nginx 1.22 with proxy_cache and gzip at `level`; with static_body, a static file
    (and its level 6 .gz next to it) served with gzip_static instead of a cache."""
    d = os.path.join(tmp, name)
    os.makedirs(os.path.join(d, "cache"))
    location = NGINX_PROXY.format(up=up_port)
    if static_body is not None:
        www = os.path.join(d, "www")
        os.makedirs(www)
        with open(os.path.join(www, PATH.lstrip("/")), "wb") as f:
            f.write(static_body)
        with open(os.path.join(www, PATH.lstrip("/") + ".gz"), "wb") as f:
            f.write(gzip.compress(static_body, compresslevel=6))
        location = NGINX_STATIC.format(dir=d)
    port = free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        # As root, nginx's worker would drop to nobody, which cannot write the private
        # (0700) directory holding the cache.
        user = "user root;" if os.geteuid() == 0 else ""
        f.write(NGINX_CONF.format(user=user, dir=d, level=level, port=port,
                                  location=location))
    logpath = os.path.join(d, "error.log")
    with open(os.path.join(d, "stdout.log"), "wb") as logf:
        p = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", conf, "-p", d],
                             stdout=logf, stderr=subprocess.STDOUT)
    wait_ready(p, port, "/nginx-ready-probe", f"nginx ({name})", 20, logpath)
    return p, port


VARNISH_VCL = """vcl 4.1;

backend default {{ .host = "127.0.0.1"; .port = "{up}"; }}

sub vcl_recv {{
    if (req.url == "/varnish-ready-probe") {{
        return (synth(204));
    }}
}}

sub vcl_backend_response {{
    # Compress once, when the object is stored (http_gzip_support=on): gzip clients get
    # the stored copy, identity clients get it gunzipped on delivery.
    if (beresp.http.Content-Type ~ "json") {{
        set beresp.do_gzip = true;
    }}
}}

sub vcl_deliver {{
    if (obj.hits > 0) {{
        set resp.http.X-Cache = "HIT";
    }} else {{
        set resp.http.X-Cache = "MISS";
    }}
}}
"""


def start_varnish(up_port, tmp, name):
    """varnishd 7.1 in the foreground with its own working directory (-n), so it never
    meets a system instance.  As root it drops to Debian's varnish/vcache users (-j unix,
    the default), which is why tmp is world-readable; as another user -j none."""
    d = os.path.join(tmp, name)
    os.makedirs(d)
    vcl = os.path.join(d, "bench.vcl")
    with open(vcl, "w") as f:
        f.write(VARNISH_VCL.format(up=up_port))
    os.chmod(d, 0o755)
    os.chmod(vcl, 0o644)
    port = free_port()
    argv = ["taskset", "-c", "0", "varnishd", "-F", "-a", f"127.0.0.1:{port}", "-f", vcl,
            "-s", "malloc,256m", "-n", os.path.join(d, "work"), "-T", "127.0.0.1:0",
            "-p", "http_gzip_support=on"]
    if os.geteuid() != 0:
        argv += ["-j", "none"]
    logpath = os.path.join(d, "varnishd.log")
    with open(logpath, "wb") as logf:
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT)
    # The VCL is compiled to C and built with cc first: slow on a busy machine.
    wait_ready(p, port, "/varnish-ready-probe", f"varnishd ({name})", 60, logpath)
    return p, port


UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def wrk(port, path, seconds, headers=()):
    argv = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency"]
    for h in headers:
        argv += ["-H", h]
    argv.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        raise RuntimeError("cannot parse wrk output:\n" + out)
    rps = float(m.group(1))
    m = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", out)
    n, read = int(m.group(1)), float(m.group(2)) * UNITS[m.group(3)]
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, "requests": n, "bytes_per_response": read / n if n else 0,
            "p99_ms": p99_ms, "non2xx": int(non2xx.group(1)) if non2xx else 0}


GZ = ("Accept-Encoding: gzip",)
# label, server kind, its options, request headers, the Content-Encoding it must answer with
CACHEGW_CASES = [
    ("cachegw identity (COMPRESS=gzip,br, no Accept-Encoding)", "cachegw", {}, (), "identity"),
    ("cachegw gzip (Accept-Encoding: gzip)", "cachegw", {}, GZ, "gzip"),
    ("cachegw br (Accept-Encoding: gzip, br)", "cachegw", {}, ("Accept-Encoding: gzip, br",),
     "br"),
    ("cachegw compression off (COMPRESS=, Accept-Encoding: gzip)", "cachegw",
     {"COMPRESS": ""}, GZ, "identity"),
]
ANCHOR_CASES = [
    ("nginx proxy_cache identity (gzip on, no Accept-Encoding)", "nginx", {"level": 1}, (),
     "identity"),
    ("nginx proxy_cache gzip, gzip_comp_level 1 (default)", "nginx", {"level": 1}, GZ, "gzip"),
    ("nginx proxy_cache gzip, gzip_comp_level 6", "nginx", {"level": 6}, GZ, "gzip"),
    ("nginx static file + gzip_static (.gz level 6; no cache)", "nginx-static", {"level": 6},
     GZ, "gzip"),
    ("Varnish identity (stored gzip, gunzipped per hit)", "varnish", {}, (), "identity"),
    ("Varnish gzip (do_gzip at store, http_gzip_support=on)", "varnish", {}, GZ, "gzip"),
]




def cpu_ns(pid):
    """(ns on a CPU, ns waiting for one) summed over the threads of pid's process tree
    (/proc schedstat).  The wait is time the server was runnable while another process had
    its CPU."""
    run = wait = 0
    for p in process_tree(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    a, b = f.read().split()[:2]
            except (FileNotFoundError, ProcessLookupError):
                continue
            run, wait = run + int(a), wait + int(b)
    return run, wait


def check_tools(anchors):
    need = ["taskset", "wrk"] + (["nginx", "varnishd"] if anchors else [])
    missing = [t for t in need if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"bench_compress: missing {', '.join(missing)} (bench/run.sh installs "
                         f"wrk, nginx-light and varnish; --no-anchors measures cachegw alone)")


def check_answer(label, r, body, doc, coding):
    """The warm-up hit must be a hit, in the expected coding, and decode to the document."""
    got = r.getheader("Content-Encoding") or "identity"
    if r.status != 200 or got != coding:
        raise RuntimeError(f"{label}: status {r.status}, Content-Encoding {got} (expected 200, "
                           f"{coding}): {r.getheaders()}")
    if r.getheader("X-Cache") not in ("HIT", "STATIC"):
        raise RuntimeError(f"{label}: the second request was not a hit: {r.getheaders()}")
    if coding == "gzip" and gzip.decompress(body) != doc:
        raise RuntimeError(f"{label}: the gzip body does not decode to the document")
    if coding == "identity" and body != doc:
        raise RuntimeError(f"{label}: the identity body is not the document")


def scenario(binary, rounds, seconds, log=print, anchors=True):
    """Every case has its own server, all started first; each round runs the cases in turn
    (interleaved, order rotated by round).  Server CPU per response (schedstat) is reported
    beside req/s: it moves far less with the machine's load."""
    if rounds < 1 or seconds < 1:
        raise ValueError("rounds and seconds must be at least 1")
    check_tools(anchors)
    doc = json_document()
    up = Upstream(doc)
    tmp = tempfile.mkdtemp(prefix="cachegw-bench-compress-")
    os.chmod(tmp, 0o755)  # varnishd's jailed users must reach their working directory
    results = {"body_bytes": len(doc), "cases": {}, "load_start": os.getloadavg(),
               "anchors": anchors, "versions": versions(anchors)}
    procs = []
    try:
        for i, (label, kind, opts, headers, coding) in enumerate(
                CACHEGW_CASES + (ANCHOR_CASES if anchors else [])):
            name = f"case{i}-{kind}"
            if kind == "cachegw":
                p, port = start_gateway(binary, up.port, opts, tmp, name)
            elif kind == "nginx":
                p, port = start_nginx(up.port, tmp, name, opts["level"])
            elif kind == "nginx-static":
                p, port = start_nginx(up.port, tmp, name, opts["level"], static_body=doc)
            else:
                p, port = start_varnish(up.port, tmp, name)
            procs.append(p)
            hdrs = dict(h.split(": ", 1) for h in headers)
            before = up.count
            get(port, PATH, hdrs)
            r, b = get(port, PATH, hdrs)
            check_answer(label, r, b, doc, coding)
            results["cases"][label] = {"server": kind, "coding": coding, "body_on_wire": len(b),
                                       "etag": r.getheader("ETag") or "",
                                       "vary": r.getheader("Vary") or "",
                                       "runs": [], "port": port, "pid": p.pid,
                                       "headers": headers,
                                       "upstream_requests": up.count - before}
        warmed = up.count
        labels = list(results["cases"])
        for i in range(rounds):
            k = i % len(labels)
            for label in labels[k:] + labels[:k]:
                c = results["cases"][label]
                c0, t0 = cpu_ns(c["pid"]), time.monotonic_ns()
                w = wrk(c["port"], PATH, seconds, c["headers"])
                c1, t1 = cpu_ns(c["pid"]), time.monotonic_ns()
                n = w["requests"]
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
            c["server_wait_pct"] = statistics.median(w["server_wait_pct"] for w in runs)
            c["non2xx"] = sum(w["non2xx"] for w in runs)
            del c["pid"], c["port"]
        results["upstream_total"] = up.count
        results["upstream_during_runs"] = up.count - warmed
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        up.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_end"] = os.getloadavg()
    return results


def versions(anchors):
    out = {}
    if anchors:
        for tool, argv in (("nginx", ["nginx", "-v"]), ("varnish", ["varnishd", "-V"])):
            r = subprocess.run(argv, capture_output=True, text=True)
            text = (r.stderr + r.stdout).strip().splitlines()
            out[tool] = text[0] if text else "?"
    return out


def report(res):
    cached = sum(1 for c in res["cases"].values() if c.get("server") != "nginx-static")
    lines = [f"16 KiB JSON body ({res['body_bytes']} bytes), one URL, 64 connections, hits only "
             f"(upstream requests over the whole run: {res.get('upstream_total', '?')}, one per "
             f"caching server ({cached}); during the measured runs: "
             f"{res.get('upstream_during_runs', '?')}). Load average "
             f"{' '.join(f'{x:.2f}' for x in res.get('load_start', []))} at the start, "
             f"{' '.join(f'{x:.2f}' for x in res.get('load_end', []))} at the end."]
    if res.get("versions"):
        lines.append("Anchors: " + "; ".join(res["versions"].values()) + ".")
    lines += ["", "| case | Content-Encoding | ETag | body bytes | bytes/response on the wire | "
              "req/s median (best) | server CPU us/response | p99 ms |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for label, c in res["cases"].items():
        etag = f"`{c['etag']}`" if c.get("etag") else "none"
        lines.append(f"| {label} | {c['coding']} | {etag} | {c['body_on_wire']} | "
                     f"{c['bytes_per_response']:.0f} | {c['rps']:.0f} ({c['rps_best']:.0f}) | "
                     f"{c['cpu_us_per_response']:.1f} | {c['p99_ms']:.2f} |")
    bad = {k: c["non2xx"] for k, c in res["cases"].items() if c.get("non2xx")}
    if bad:
        lines.append(f"\nNon-2xx answers during the runs: {bad}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.environ.get(
        "BENCH_BUILD_DIR", os.path.join(ROOT, "build-bench")), "cachegw"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--no-anchors", action="store_true",
                    help="measure cachegw alone (no nginx, no Varnish)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.rounds < 1 or args.seconds < 1:
        ap.error("--rounds and --seconds must be at least 1")
    if not os.access(args.bin, os.X_OK):
        ap.error(f"--bin: {args.bin} is not an executable (build it: cmake --build <dir> "
                 f"--target cachegw, or run bench/run.sh --only compress)")
    res = scenario(args.bin, args.rounds, args.seconds, log=lambda s: print(s, file=sys.stderr),
                   anchors=not args.no_anchors)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print(report(res))


if __name__ == "__main__":
    main()
