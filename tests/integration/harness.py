"""Integration test harness: real processes, real sockets.

Starts the real `cachegw` binary, the real example API and (when asked) a real
redis-server on free loopback ports, and talks HTTP to them with the standard
library.  Every process is stopped at the end of the test that started it.

Binaries come from the environment (set by ctest) or the default build dir:
CACHEGW_BIN, EXAMPLE_API_BIN, CACHEGW_SOURCE_DIR.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("CACHEGW_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
BUILD_DIR = os.environ.get("CACHEGW_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
CACHEGW_BIN = os.environ.get("CACHEGW_BIN", os.path.join(BUILD_DIR, "cachegw"))
EXAMPLE_API_BIN = os.environ.get("EXAMPLE_API_BIN", os.path.join(BUILD_DIR, "example-api"))


def free_port():
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_exc})")


class Response:
    def __init__(self, status, headers, body, elapsed):
        self.status = status
        self.headers = headers  # lower-case name -> value (last wins), see header_list
        self.header_list = []
        self.body = body
        self.elapsed = elapsed

    def json(self):
        return json.loads(self.body.decode())

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return f"<Response {self.status} {self.headers} {self.body[:200]!r}>"


def request(port, method, path, headers=None, body=None, timeout=10.0, host="127.0.0.1",
            conn=None):
    """One HTTP/1.1 request; returns a Response.  Pass conn to reuse a keep-alive connection."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.monotonic() - t0
        r = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, elapsed)
        r.header_list = [(k.lower(), v) for k, v in resp.getheaders()]
        return r
    finally:
        if own:
            conn.close()


class Process:
    """A child process with its output in a log file (kept for failure reports)."""

    def __init__(self, argv, env=None, name="proc", cwd=None):
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"{name}-", suffix=".log", delete=False)
        full_env = dict(os.environ)
        if env:
            full_env.update({k: str(v) for k, v in env.items() if v is not None})
            for k, v in env.items():
                if v is None:
                    full_env.pop(k, None)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=full_env, cwd=cwd)
        self.log.close()  # the child keeps its own descriptor

    def output(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout=10.0):
        return self.proc.wait(timeout=timeout)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class ExampleAPI(Process):
    def __init__(self, latency_ms=0, feed_latency_ms=None, port=None):
        self.port = port or free_port()
        argv = [EXAMPLE_API_BIN, "--port", str(self.port), "--latency-ms", str(latency_ms)]
        if feed_latency_ms is not None:
            argv += ["--feed-latency-ms", str(feed_latency_ms)]
        super().__init__(argv, name="example-api")
        wait_until(lambda: request(self.port, "GET", "/__stats", timeout=1).status == 200,
                   what="example-api to answer")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def requests(self):
        return request(self.port, "GET", "/__stats").json()["requests"]

    def reset(self):
        request(self.port, "POST", "/__reset")


class Gateway(Process):
    """The real cachegw binary.  env: extra environment; args: extra flags."""

    def __init__(self, upstream_url, env=None, args=None, port=None, wait=True, cwd=None):
        self.port = port or free_port()
        argv = [CACHEGW_BIN, "--host", "127.0.0.1", "--port", str(self.port),
                "--upstream", upstream_url] + list(args or [])
        base_env = {"LOG_LEVEL": "info", "REDIS_URL": None}
        if os.path.isdir(os.path.join(SOURCE_DIR, "policies")):
            base_env.setdefault("POLICIES_DIR", os.path.join(SOURCE_DIR, "policies"))
            base_env.setdefault("LUA_DIR", os.path.join(SOURCE_DIR, "lua"))
        base_env.update(env or {})
        super().__init__(argv, env=base_env, name="cachegw", cwd=cwd)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=10.0):
        def ready():
            if not self.alive():
                raise AssertionError("cachegw exited:\n" + self.output())
            return request(self.port, "GET", "/health", timeout=1).status == 200
        wait_until(ready, timeout=timeout, what="cachegw /health")

    def get(self, path, headers=None, **kw):
        return request(self.port, "GET", path, headers=headers, **kw)

    def req(self, method, path, headers=None, body=None, **kw):
        return request(self.port, method, path, headers=headers, body=body, **kw)

    def health_cache(self):
        return self.get("/health/cache").json()


def run_concurrently(n, fn):
    """Runs fn(i) in n threads started together; returns the results in order."""
    results = [None] * n
    errors = []
    barrier = threading.Barrier(n)

    def worker(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


class GatewayTestCase(unittest.TestCase):
    """Base class: tracks processes and prints their logs when a test fails."""

    def setUp(self):
        self._procs = []

    def track(self, proc):
        self._procs.append(proc)
        return proc

    def tearDown(self):
        failed = False
        outcome = getattr(self, "_outcome", None)
        if outcome is not None:
            result = getattr(outcome, "result", None)
            if result is not None:
                failed = any(t is self for t, _ in result.failures + result.errors)
        for p in reversed(self._procs):
            p.stop()
            if failed:
                print(f"\n----- {p.name} log -----\n{p.output()[-4000:]}")
            try:
                os.unlink(p.log.name)
            except OSError:
                pass
