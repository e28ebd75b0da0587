"""Shared tools of the raw-socket security suite (issue 8).  Standard library only.

- Reflector: an HTTP/1.1 upstream on loopback that records the exact bytes of
  every request it receives and answers as each test scripts it (by path
  prefix).  It parses strictly (RFC 9112 framing) so that it counts requests
  the way a careful origin would: bytes left over after one request are parsed
  as the next one, so a smuggled request shows up as an extra record.  Anything
  a strict origin would refuse is noted in the record's `anomalies` (the suite
  asserts there are none: the gateway must never forward malformed syntax).
- RawConn / exchange: a client that sends exact bytes over a plain socket and
  reads full responses (interim 1xx, status, headers, body by Content-Length,
  chunked or close) and tells whether the server closed the connection.
- Gateway: the real cachegw binary on a free port, with a private POLICIES_DIR,
  its stdout and stderr in separate files, RSS readout, and a stop() that
  reports the exit status and how long SIGTERM took.
- SecTestCase: starts a Reflector per test, stops every gateway at the end and
  fails the test when a gateway crashed, did not exit 0 within a few seconds of
  SIGTERM, or when the reflector saw a malformed request or more requests than
  the test's clients sent (the differential check).

Binaries come from the environment set by tests/security.cmake (CACHEGW_BIN,
CACHEGW_SOURCE_DIR, ...) or the default build directory.
"""

import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import sys
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("CACHEGW_SOURCE_DIR", os.path.abspath(os.path.join(HERE, "..", "..")))
BUILD_DIR = os.environ.get("CACHEGW_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
CACHEGW_BIN = os.environ.get("CACHEGW_BIN", os.path.join(BUILD_DIR, "cachegw"))
LUA_DIR = os.path.join(SOURCE_DIR, "lua")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

TOKEN_RE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
REQUEST_LINE_RE = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP/(\d)\.(\d)$")
STATUS_LINE_RE = re.compile(rb"^HTTP/(\d\.\d) (\d{3})(?: (.*))?$")


# free_port and wait_until are the integration harness's own (one copy for both suites).
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import free_port, wait_until  # noqa: E402,F401  (re-exported to the tests)


# ------------------------------------------------------------------------------ reflector

class Record:
    """One request as the reflector received it."""

    BODY_KEEP = 64 * 1024  # bytes of the body kept (the length is always exact)

    def __init__(self, seq, conn_id):
        self.seq = seq
        self.conn_id = conn_id
        self.raw_head = b""
        self.method = self.target = self.version = None
        self.headers = []  # [(name bytes, value bytes)] exactly as received
        self.body = b""
        self.body_len = 0
        self.anomalies = []
        self.time = time.monotonic()

    @property
    def path(self):
        t = (self.target or b"").decode("latin-1")
        return t.split("?", 1)[0]

    @property
    def target_str(self):
        return (self.target or b"").decode("latin-1")

    def values(self, name):
        """Every value of header `name` (case-insensitive), as str, in order."""
        n = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == n]

    def header(self, name):
        v = self.values(name)
        return None if not v else ", ".join(v)

    def names(self):
        return [k.decode("latin-1").lower() for k, _ in self.headers]

    def as_json(self):
        return {"seq": self.seq, "method": (self.method or b"").decode("latin-1"),
                "target": self.target_str,
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.headers],
                "body_len": self.body_len, "body": self.body[:1024].decode("latin-1")}

    def __repr__(self):
        return f"<Record #{self.seq} {self.raw_head[:300]!r} body_len={self.body_len} " \
               f"anomalies={self.anomalies}>"


class Reply:
    def __init__(self, status=200, headers=None, body=b"", close=False, delay=0.0):
        self.status = status
        self.headers = list(headers or [])
        self.body = body if isinstance(body, bytes) else body.encode()
        self.close = close
        self.delay = delay


def echo(rec, status=200, headers=None, cache_control="max-age=60", extra=None):
    """The default answer: what the reflector received, as JSON (plus `extra` fields)."""
    doc = rec.as_json()
    if extra:
        doc.update(extra)
    h = [("Content-Type", "application/json")]
    if cache_control is not None:
        h.append(("Cache-Control", cache_control))
    h += list(headers or [])
    return Reply(status, h, json.dumps(doc))


class _Incomplete(Exception):
    pass


class Reflector:
    """A scripted, recording HTTP/1.1 origin on 127.0.0.1 (see the module comment)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.records = []
        self.routes = []  # [(prefix, fn(rec) -> Reply)], longest prefix wins
        self.lock = threading.Lock()
        self.conns = []
        self.n_conns = 0
        self.closed = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def on(self, prefix, fn):
        """Answers requests whose path starts with prefix with fn(record) -> Reply."""
        with self.lock:
            self.routes.append((prefix, fn))
            self.routes.sort(key=lambda r: -len(r[0]))

    def requests(self, path=None, prefix=None, target=None):
        with self.lock:
            recs = list(self.records)
        if target is not None:
            recs = [r for r in recs if r.target_str == target]
        if path is not None:
            recs = [r for r in recs if r.path == path]
        if prefix is not None:
            recs = [r for r in recs if r.path.startswith(prefix)]
        return recs

    def count(self, path=None, prefix=None, target=None):
        return len(self.requests(path, prefix, target))

    def last(self, path=None, prefix=None, target=None):
        recs = self.requests(path, prefix, target)
        return recs[-1] if recs else None

    def anomalies(self):
        return [r for r in self.requests() if r.anomalies]

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    # -- internals

    def _accept_loop(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.n_conns += 1
                cid = self.n_conns
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def _new_record(self, cid):
        with self.lock:
            rec = Record(len(self.records) + 1, cid)
            self.records.append(rec)
        return rec

    def _serve(self, c, cid):
        buf = bytearray()
        c.settimeout(60)
        try:
            while not self.closed:
                # The head ends at the first CRLF CRLF.
                while b"\r\n\r\n" not in buf:
                    if len(buf) > 1 << 20:
                        rec = self._new_record(cid)
                        rec.raw_head = bytes(buf[:4096])
                        rec.anomalies.append("head over 1 MiB")
                        return
                    data = c.recv(65536)
                    if not data:
                        if buf.strip(b"\r\n"):
                            rec = self._new_record(cid)
                            rec.raw_head = bytes(buf)
                            rec.anomalies.append("truncated head")
                        return
                    buf += data
                end = buf.index(b"\r\n\r\n")
                head = bytes(buf[:end])
                del buf[:end + 4]
                rec = self._new_record(cid)
                rec.raw_head = head
                keep = self._parse_head(rec, head)
                if keep is None:
                    self._reply(c, rec, Reply(400, [("Content-Type", "text/plain")],
                                              "reflector: bad request", close=True))
                    return
                try:
                    self._read_body(c, rec, buf, keep)
                except _Incomplete as exc:
                    rec.anomalies.append(str(exc))
                    return
                reply = self._answer(rec)
                close = reply.close or (rec.header("connection") or "").lower() == "close" \
                    or rec.version == b"1.0"
                self._reply(c, rec, reply, close)
                if close:
                    return
        except OSError:
            return
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:
                if c in self.conns:
                    self.conns.remove(c)

    def _parse_head(self, rec, head):
        """Fills rec from the head; returns the framing or None when unusable."""
        if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
            rec.anomalies.append("bare CR or LF in head")
        lines = head.split(b"\r\n")
        m = REQUEST_LINE_RE.match(lines[0])
        if not m:
            rec.anomalies.append("bad request line")
            return None
        rec.method, rec.target = m.group(1), m.group(2)
        rec.version = m.group(3) + b"." + m.group(4)
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t"):
                rec.anomalies.append("obs-fold line")
                continue
            if b":" not in line:
                rec.anomalies.append("header line without colon")
                continue
            name, value = line.split(b":", 1)
            if not TOKEN_RE.match(name):
                rec.anomalies.append(f"bad field name {name!r}")
            if any(b < 0x20 and b != 0x09 or b == 0x7f for b in value):
                rec.anomalies.append(f"control byte in value of {name!r}")
            rec.headers.append((name, value.strip(b" \t")))
        te = rec.values("transfer-encoding")
        cl = rec.values("content-length")
        if te and cl:
            rec.anomalies.append("Transfer-Encoding and Content-Length")
        if te:
            codings = [t.strip().lower() for t in ",".join(te).split(",") if t.strip()]
            if codings[-1:] != ["chunked"]:
                rec.anomalies.append("unknown transfer coding")
                return None
            return ("chunked", 0)
        if cl:
            vals = {v.strip() for v in ",".join(cl).split(",")}
            if len(vals) != 1 or not next(iter(vals)).isdigit():
                rec.anomalies.append("bad or differing Content-Length")
                return None
            return ("length", int(next(iter(vals))))
        return ("length", 0)

    def _need(self, c, buf, n):
        while len(buf) < n:
            data = c.recv(1 << 20)
            if not data:
                raise _Incomplete("connection closed inside the body")
            buf += data

    def _take(self, rec, chunk):
        rec.body_len += len(chunk)
        room = Record.BODY_KEEP - len(rec.body)
        if room > 0:
            rec.body += bytes(chunk[:room])

    def _read_body(self, c, rec, buf, framing):
        c.settimeout(10)
        try:
            kind, n = framing
            if kind == "length":
                while n > 0:
                    if not buf:
                        self._need(c, buf, 1)
                    take = min(n, len(buf))
                    self._take(rec, buf[:take])
                    del buf[:take]
                    n -= take
                return
            while True:  # chunked
                while b"\r\n" not in buf:
                    self._need(c, buf, len(buf) + 1)
                end = buf.index(b"\r\n")
                size_line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[:end + 2]
                if not re.fullmatch(rb"[0-9A-Fa-f]+", size_line):
                    raise _Incomplete(f"bad chunk size {size_line!r}")
                size = int(size_line, 16)
                if size == 0:
                    while True:  # trailers
                        while b"\r\n" not in buf:
                            self._need(c, buf, len(buf) + 1)
                        end = buf.index(b"\r\n")
                        line = bytes(buf[:end])
                        del buf[:end + 2]
                        if not line:
                            return
                self._need(c, buf, size + 2)
                self._take(rec, buf[:size])
                if buf[size:size + 2] != b"\r\n":
                    raise _Incomplete("chunk not followed by CRLF")
                del buf[:size + 2]
        except socket.timeout:
            raise _Incomplete("timed out inside the body") from None
        finally:
            c.settimeout(60)

    def _answer(self, rec):
        with self.lock:
            routes = list(self.routes)
        for prefix, fn in routes:
            if rec.path.startswith(prefix):
                r = fn(rec)
                if r is not None:
                    return r
        return echo(rec)

    def _reply(self, c, rec, reply, close=False):
        if reply.delay:
            time.sleep(reply.delay)
        out = [f"HTTP/1.1 {reply.status} X".encode()]
        names = {k.lower() for k, _ in reply.headers}
        for k, v in reply.headers:
            out.append(f"{k}: {v}".encode("latin-1"))
        if "content-length" not in names and "transfer-encoding" not in names:
            out.append(f"Content-Length: {len(reply.body)}".encode())
        if close:
            out.append(b"Connection: close")
        data = b"\r\n".join(out) + b"\r\n\r\n"
        if rec.method != b"HEAD":
            data += reply.body
        c.sendall(data)


# ------------------------------------------------------------------------------ raw client

class RawResponse:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = b""
        self.header_list = []  # [(lower-case name str, value str)]
        self.body = b""
        self.interim = []  # statuses of 1xx responses before this one
        self.elapsed = 0.0

    def values(self, name):
        return [v for k, v in self.header_list if k == name.lower()]

    def header(self, name, default=None):
        v = self.values(name)
        return default if not v else ", ".join(v)

    def json(self):
        return json.loads(self.body.decode("latin-1"))

    def __repr__(self):
        return f"<RawResponse {self.status} {self.header_list} {self.body[:300]!r}>"


class ConnectionClosed(Exception):
    """The server closed (or reset) the connection before a full response."""

    def __init__(self, partial):
        super().__init__(f"connection closed; partial response {partial[:200]!r}")
        self.partial = partial


class RawConn:
    """One client connection speaking exact bytes."""

    def __init__(self, port, timeout=5.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("response timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            raise ConnectionClosed(bytes(self.buf))
        self.buf += data

    def read_response(self, timeout=None, head=False):
        """The next final response (1xx interim responses are collected on it)."""
        t0 = time.monotonic()
        deadline = t0 + (timeout if timeout is not None else self.timeout)
        resp = RawResponse()
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill(deadline)
            end = self.buf.index(b"\r\n\r\n")
            lines = bytes(self.buf[:end]).split(b"\r\n")
            del self.buf[:end + 4]
            m = STATUS_LINE_RE.match(lines[0])
            if not m:
                raise AssertionError(f"bad status line {lines[0]!r}")
            status = int(m.group(2))
            hdrs = []
            for line in lines[1:]:
                k, _, v = line.partition(b":")
                hdrs.append((k.decode("latin-1").strip().lower(), v.decode("latin-1").strip()))
            if 100 <= status < 200 and status != 101:
                resp.interim.append(status)
                continue
            resp.version, resp.status, resp.reason = m.group(1), status, m.group(3) or b""
            resp.header_list = hdrs
            break
        if head or status in (204, 304):
            resp.elapsed = time.monotonic() - t0
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header("content-length")
        if te and "chunked" in te.lower():
            body = bytearray()
            while True:
                while b"\r\n" not in self.buf:
                    self._fill(deadline)
                end = self.buf.index(b"\r\n")
                size = int(bytes(self.buf[:end]).split(b";")[0].strip(), 16)
                del self.buf[:end + 2]
                if size == 0:
                    while True:
                        while b"\r\n" not in self.buf:
                            self._fill(deadline)
                        end = self.buf.index(b"\r\n")
                        line = bytes(self.buf[:end])
                        del self.buf[:end + 2]
                        if not line:
                            break
                    break
                while len(self.buf) < size + 2:
                    self._fill(deadline)
                body += self.buf[:size]
                del self.buf[:size + 2]
            resp.body = bytes(body)
        elif cl is not None:
            n = int(cl.split(",")[0])
            while len(self.buf) < n:
                self._fill(deadline)
            resp.body = bytes(self.buf[:n])
            del self.buf[:n]
        else:
            try:
                while True:
                    self._fill(deadline)
            except ConnectionClosed:
                pass
            resp.body = bytes(self.buf)
            self.buf.clear()
        resp.elapsed = time.monotonic() - t0
        return resp

    def closed_by_peer(self, wait=1.0):
        """True when the server has closed (EOF or reset) within `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return False
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            except OSError:
                return True
            if not data:
                return True
            self.buf += data  # unexpected extra bytes: keep them for the caller


def exchange(port, data, timeout=5.0, head=False, check_close=0.0):
    """Sends data on a new connection and reads one response.

    Returns (response or None when the server closed without answering, closed)
    where closed says whether the server closed the connection after it
    (checked for check_close seconds; False when not checked)."""
    with RawConn(port, timeout=timeout) as c:
        c.send(data)
        try:
            resp = c.read_response(timeout=timeout, head=head)
        except ConnectionClosed:
            return None, True
        closed = c.closed_by_peer(check_close) if check_close else False
        return resp, closed


def get_request(path, headers=None, method="GET", host="gw.test", body=None, version="1.1"):
    """A well-formed request as bytes; headers is a list of (name, value) (str or bytes)."""
    out = [f"{method} {path} HTTP/{version}".encode()]
    if host is not None:
        out.append(b"Host: " + (host.encode() if isinstance(host, str) else host))
    for k, v in headers or []:
        k = k.encode("latin-1") if isinstance(k, str) else k
        v = v.encode("latin-1") if isinstance(v, str) else v
        out.append(k + b": " + v)
    if body is not None:
        out.append(b"Content-Length: " + str(len(body)).encode())
    data = b"\r\n".join(out) + b"\r\n\r\n"
    if body is not None:
        data += body
    return data


# ------------------------------------------------------------------------------ processes

DEFAULT_POLICY = 'route "GET /__sec_default" { key = "sec_default", ttl = 1 }\n'


class Gateway:
    """The real cachegw binary on a free loopback port (see the module comment)."""

    def __init__(self, upstream_url, policies=None, env=None, args=None, workers=2, wait=True):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cachegw-sec-")
        self.policies_dir = os.path.join(self.dir, "policies")
        os.mkdir(self.policies_dir)
        for name, src in (policies or {"default.lua": DEFAULT_POLICY}).items():
            with open(os.path.join(self.policies_dir, name), "w") as f:
                f.write(src)
        full_env = dict(os.environ)
        for k in ("REDIS_URL", "ADMIN_TOKEN", "ACCESS_LOG", "TRUSTED_PROXIES", "FORWARDED_HOST"):
            full_env.pop(k, None)
        full_env.update({"HOST": "127.0.0.1", "PORT": str(self.port),
                         "UPSTREAM_URL": upstream_url, "POLICIES_DIR": self.policies_dir,
                         "LUA_DIR": LUA_DIR, "WORKERS": str(workers), "LOG_LEVEL": "info"})
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = str(v)
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([CACHEGW_BIN] + list(args or []), stdout=out,
                                         stderr=err, env=full_env, cwd=self.dir)
        self.rc = None
        self.stop_seconds = None
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=15.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("cachegw exited at start-up:\n" + self.output())
            r, _ = exchange(self.port, get_request("/health"), timeout=1)
            return r is not None and r.status == 200
        wait_until(ready, timeout=timeout, what="cachegw /health")

    def alive(self):
        return self.proc.poll() is None

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read()

    def stdout(self):
        with open(self.stdout_path, "rb") as f:
            return f.read()

    def output(self):
        return (self.stdout() + self.stderr()).decode(errors="replace")

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self, timeout=10.0):
        """SIGTERM; returns (exit status, seconds it took).  Kills after timeout."""
        if self.rc is not None:
            return self.rc, self.stop_seconds
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stop_seconds = time.monotonic() - t0
        self.rc = self.proc.returncode
        return self.rc, self.stop_seconds

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- requests through the gateway

    def raw(self, data, timeout=5.0, head=False, check_close=0.0):
        return exchange(self.port, data, timeout=timeout, head=head, check_close=check_close)

    def get(self, path, headers=None, timeout=5.0, **kw):
        r, _ = exchange(self.port, get_request(path, headers, **kw), timeout=timeout,
                        head=kw.get("method") == "HEAD")
        if r is None:
            raise AssertionError(f"cachegw closed the connection without answering {path}")
        return r


class RedisServer:
    """A private redis-server on a free port, no persistence, child of the test."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="cachegw-sec-redis-")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ping():
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        wait_until(ping, timeout=10, what="redis-server")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cmd(self, *args):
        """One command; returns the reply (integers, bulk strings and arrays only)."""
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(out)
            f = s.makefile("rb")
            return self._reply(f)

    def _reply(self, f):
        line = f.readline().rstrip(b"\r\n")
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else f.read(n + 2)[:-2]
        if kind == b"*":
            return [self._reply(f) for _ in range(int(rest))]
        raise AssertionError(f"bad RESP reply {line!r}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------ test case

class SecTestCase(unittest.TestCase):
    """Per test: a fresh Reflector; gateways started through start() are stopped and
    checked at the end (see the module comment)."""

    STOP_BOUND_S = 5.0  # SIGTERM must end the gateway within this, with status 0

    def setUp(self):
        self.refl = Reflector()
        self.gateways = []
        self.redis = []
        self.client_requests = 0  # requests the test's clients sent (differential check)

    def start(self, policies=None, env=None, args=None, workers=2, upstream=None):
        gw = Gateway(upstream or self.refl.url, policies, env=env, args=args, workers=workers)
        self.gateways.append(gw)
        return gw

    def start_redis(self):
        r = RedisServer()
        self.redis.append(r)
        return r

    # Client helpers that count what was sent, for the differential check.

    def get(self, gw, path, headers=None, **kw):
        self.client_requests += 1
        return gw.get(path, headers, **kw)

    def raw(self, gw, data, n_requests=1, **kw):
        self.client_requests += n_requests
        return gw.raw(data, **kw)

    def sent(self, n=1):
        """Counts requests a test sent on its own sockets."""
        self.client_requests += n

    def assertNothingForwarded(self, before=0, what=""):
        self.assertEqual(self.refl.count(), before,
                         f"{what}: the upstream received {self.refl.requests()[before:]}")

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None) if outcome else None
        if result is None:
            return False
        return any(t is self for t, _ in result.failures + result.errors)

    def tearDown(self):
        problems = []
        for gw in self.gateways:
            if gw.rc is not None:
                continue  # the test stopped it and checked the exit itself
            was_alive = gw.alive()
            rc, secs = gw.stop(timeout=max(self.STOP_BOUND_S, 8.0))
            if not was_alive:
                problems.append(f"cachegw died during the test (status {rc})")
            elif rc != 0 or secs > self.STOP_BOUND_S:
                problems.append(f"cachegw did not exit 0 within {self.STOP_BOUND_S}s of SIGTERM "
                                f"(status {rc}, {secs:.1f}s)")
        for r in self.redis:
            r.stop()
        self.refl.close()
        allowed = set(getattr(self, "allowed_anomalies", ()))
        bad = [r for r in self.refl.anomalies() if not set(r.anomalies) <= allowed]
        if bad:
            problems.append(f"the upstream received malformed requests: {bad[:3]}")
        if self.client_requests and self.refl.count() > self.client_requests:
            problems.append(f"differential: {self.client_requests} client requests became "
                            f"{self.refl.count()} upstream requests")
        if problems or self._failed():
            for gw in self.gateways:
                print(f"\n----- cachegw log (port {gw.port}) -----\n{gw.output()[-3000:]}")
        for gw in self.gateways:
            gw.cleanup()
        if problems:
            raise AssertionError("; ".join(problems))


def sha(b):
    return hashlib.sha256(b).hexdigest()[:16]
