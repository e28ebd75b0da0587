"""A scripted upstream on raw sockets: it answers each path with exactly the bytes a test
gives (status line, every header line as written, interim 1xx responses, a 304 with
whatever fields it should carry) and records every request it received, with its header
lines in order, so a test can assert what the upstream saw.  http.server and urllib would
normalise both sides; this does not.

Usage:
    up = ScriptedUpstream()
    up.script("/a", response(200, [("Cache-Control", "max-age=60")], b"body"))
    ... up.requests("/a") -> [Request, ...]
    up.stop()

A path's script is a list of responses used in order; the last one repeats.  A response
may also be a callable taking the Request and returning bytes.
"""

import socket
import threading


def response(status, headers=(), body=b"", reason=None, interim=(), content_length=True):
    """Raw bytes of one HTTP/1.1 response.  interim: (status, headers) pairs sent first
    (1xx).  content_length=False leaves Content-Length out (e.g. a 304)."""
    out = b""
    for st, hs in interim:
        out += f"HTTP/1.1 {st} Interim\r\n".encode()
        for k, v in hs:
            out += f"{k}: {v}\r\n".encode()
        out += b"\r\n"
    out += f"HTTP/1.1 {status} {reason or 'Scripted'}\r\n".encode()
    for k, v in headers:
        out += f"{k}: {v}\r\n".encode()
    if content_length and not any(k.lower() == "content-length" for k, _ in headers):
        out += f"Content-Length: {len(body)}\r\n".encode()
    out += b"\r\n" + body
    return out


def conditional(full, not_modified):
    """A script entry answering not_modified to a request with If-None-Match or
    If-Modified-Since, and full otherwise (an upstream never sends a 304 unasked)."""
    def answer(req):
        if req.header("if-none-match") or req.header("if-modified-since"):
            return not_modified
        return full
    return answer


class Request:
    def __init__(self, method, target, headers, body):
        self.method = method
        self.target = target
        self.path = target.split("?", 1)[0]
        self.headers = headers  # [(lower-case name, value)] in arrival order
        self.body = body

    def header(self, name, default=None):
        vals = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(vals) if vals else default

    def __repr__(self):
        return f"<Request {self.method} {self.target} {self.headers}>"


class ScriptedUpstream:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.scripts = {}
        self.used = {}
        self.log = []
        self.running = True
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def script(self, path, *responses):
        with self.lock:
            self.scripts[path] = list(responses)
            self.used[path] = 0

    def requests(self, path=None):
        with self.lock:
            return [r for r in self.log if path is None or r.path == path]

    def count(self, path):
        return len(self.requests(path))

    def stop(self):
        self.running = False
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            while self.running:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers.append((k.strip().lower(), v.strip()))
                n = 0
                for k, v in headers:
                    if k == "content-length":
                        n = int(v)
                while len(buf) < n:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                req = Request(method, target, headers, body)
                with self.lock:
                    self.log.append(req)
                    script = self.scripts.get(req.path)
                    if script:
                        i = min(self.used[req.path], len(script) - 1)
                        self.used[req.path] += 1
                        out = script[i]
                    else:
                        out = response(404, [("Cache-Control", "no-store")], b"not scripted")
                if callable(out):
                    out = out(req)
                c.sendall(out)
        except OSError:
            return
        finally:
            c.close()
