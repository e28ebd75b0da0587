"""Private redis-server instances for the integration tests of the Redis tier.

Every test class starts its own servers (plain, TLS, with requirepass and an ACL
user) on free loopback ports, so that a test may kill (SIGKILL), pause (SIGSTOP)
or restart them without disturbing any other test or another build directory.
The servers run in the foreground as children of the test process (not
daemonized): the test holds their pid.

Certificates are generated at test time with the openssl CLI into a temporary
directory (the same layout as scripts/redis-test-servers.sh):

  ca.crt            the root CA clients trust
  int.crt           an intermediate CA (signed by ca.crt) that signed the server leaf
  server.crt/key    leaf + intermediate; SAN DNS:localhost, IP:127.0.0.1 (not 127.0.0.2:
                    connecting to 127.0.0.2 is the hostname-mismatch case)
  other-ca.crt      a CA that signed nothing the server presents (wrong-CA case)
  client.crt/key    a client certificate signed by ca.crt (mutual TLS)

`RedisClient` is a minimal RESP client (plain or TLS, optional AUTH) so that the
tests can inspect and corrupt keys byte for byte without depending on redis-cli.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

PASSWORD = "s3cret-test"
ACL_USER, ACL_PASS = "app", "app-pass"

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free_on(port, hosts=("127.0.0.1", "127.0.0.2")):
    for h in hosts:
        with socket.socket() as s:
            try:
                s.bind((h, port))
            except OSError:
                return False
    return True


def free_port_all(hosts=("127.0.0.1", "127.0.0.2")):
    """A port free on every address in hosts (the TLS server binds two)."""
    for _ in range(50):
        p = free_port(hosts[0])
        if port_free_on(p, hosts):
            return p
    raise RuntimeError("no free port on " + ", ".join(hosts))


# ---------------------------------------------------------------- certificates

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _key_args(name):
    # EC keys: generated in milliseconds (RSA 2048 takes seconds on a busy machine).
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key"]


class Certs:
    """A CA, an intermediate, a server certificate and an unrelated CA, in a temp dir."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cachegw-redis-certs-")
        d = self.dir
        _openssl("req", "-x509", *_key_args("ca"), "-days", "2", "-subj", "/CN=cachegw test CA",
                 "-out", "ca.crt", cwd=d)
        _openssl("req", "-x509", *_key_args("other-ca"), "-days", "2",
                 "-subj", "/CN=cachegw other CA", "-out", "other-ca.crt", cwd=d)
        with open(os.path.join(d, "int.ext"), "w") as f:
            f.write("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                    "keyUsage=critical,keyCertSign,cRLSign\n")
        _openssl("req", *_key_args("int"), "-subj", "/CN=cachegw test intermediate CA",
                 "-out", "int.csr", cwd=d)
        _openssl("x509", "-req", "-in", "int.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "int.ext", "-out", "int.crt", cwd=d)
        with open(os.path.join(d, "server.ext"), "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        _openssl("req", *_key_args("server"), "-subj", "/CN=localhost", "-out", "server.csr",
                 cwd=d)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "int.crt", "-CAkey", "int.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "server.ext",
                 "-out", "server-leaf.crt", cwd=d)
        with open(os.path.join(d, "server.crt"), "wb") as out:
            for part in ("server-leaf.crt", "int.crt"):
                with open(os.path.join(d, part), "rb") as f:
                    out.write(f.read())
        with open(os.path.join(d, "client.ext"), "w") as f:
            f.write("extendedKeyUsage=clientAuth\n")
        _openssl("req", *_key_args("client"), "-subj", "/CN=cachegw test client",
                 "-out", "client.csr", cwd=d)
        _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "client.ext",
                 "-out", "client.crt", cwd=d)
        for k in os.listdir(d):
            if k.endswith(".key"):
                os.chmod(os.path.join(d, k), 0o600)

    def path(self, name):
        return os.path.join(self.dir, name)

    @property
    def ca(self):
        return self.path("ca.crt")

    @property
    def other_ca(self):
        return self.path("other-ca.crt")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- RESP client

class RedisError(Exception):
    pass


class RedisClient:
    """Blocking RESP2 client: enough for GET/SET/PTTL/KEYS/DEL/... in tests."""

    def __init__(self, port, host="127.0.0.1", password=None, user=None, tls_ca=None,
                 tls_cert=None, tls_key=None, server_hostname="localhost", timeout=5.0):
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            if tls_cert:
                ctx.load_cert_chain(tls_cert, tls_key)
            sock = ctx.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        self.buf = b""
        if password is not None:
            if user:
                self.command("AUTH", user, password)
            else:
                self.command("AUTH", password)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("redis closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError(f"unexpected reply {line!r}")

    def command(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, int):
                a = str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(parts))
        r = self._reply()
        if isinstance(r, RedisError):
            raise r
        return r


# ---------------------------------------------------------------- servers

class RedisServer:
    """One foreground redis-server.  kind: "plain", "auth" (requirepass + ACL user),
    "tls" (TLS only, requirepass, listening on 127.0.0.1 and 127.0.0.2) or "mtls"
    (as "tls", and client certificates signed by the CA are required)."""

    def __init__(self, kind="plain", port=None, certs=None, start=True):
        self.kind = kind
        self.certs = certs
        if kind in ("tls", "mtls") and certs is None:
            raise ValueError("a TLS server needs certs")
        self.port = port or (free_port_all() if kind != "plain" and kind != "auth"
                                  else free_port())
        self.dir = tempfile.mkdtemp(prefix=f"cachegw-redis-{kind}-")
        self.logfile = os.path.join(self.dir, "redis.log")
        self.proc = None
        if start:
            self.start()

    @property
    def password(self):
        return PASSWORD if self.kind != "plain" else None

    @property
    def tls(self):
        return self.kind in ("tls", "mtls")

    def argv(self):
        a = [REDIS_SERVER, "--save", "", "--appendonly", "no", "--protected-mode", "no",
             "--daemonize", "no", "--dir", self.dir, "--logfile", self.logfile]
        if self.tls:
            c = self.certs
            a += ["--bind", "127.0.0.1", "127.0.0.2", "--port", "0",
                  "--tls-port", str(self.port),
                  "--tls-cert-file", c.path("server.crt"), "--tls-key-file", c.path("server.key"),
                  "--tls-ca-cert-file", c.ca, "--tls-auth-clients", "yes" if self.kind == "mtls" else "no",
                  "--requirepass", PASSWORD]
        else:
            a += ["--bind", "127.0.0.1", "--port", str(self.port)]
            if self.kind == "auth":
                a += ["--requirepass", PASSWORD,
                      "--user", ACL_USER, "on", f">{ACL_PASS}", "~*", "&*", "+@all"]
        return a

    def start(self, timeout=10.0):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self.proc.returncode}):\n"
                                   + self.log_tail())
            try:
                with self.client(timeout=1.0) as c:
                    if c.command("PING") == "PONG":
                        return self
            except (OSError, RedisError, ssl.SSLError) as exc:
                last = exc
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on {self.port} did not answer PING ({last}):\n"
                           + self.log_tail())

    def log_tail(self, n=3000):
        try:
            with open(self.logfile, "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def client(self, timeout=5.0, host="127.0.0.1"):
        return RedisClient(self.port, host=host, password=self.password,
                           tls_ca=self.certs.ca if self.tls else None,
                           tls_cert=self.certs.path("client.crt") if self.kind == "mtls" else None,
                           tls_key=self.certs.path("client.key") if self.kind == "mtls" else None,
                           timeout=timeout)

    def cmd(self, *args):
        with self.client() as c:
            return c.command(*args)

    # URLs the gateway is given
    def url(self, host="127.0.0.1", user=None, password=None, db=None):
        scheme = "rediss" if self.tls else "redis"
        cred = ""
        if user is not None or password is not None:
            cred = (user or "") + (":" + password if password is not None else "") + "@"
        tail = f"/{db}" if db is not None else ""
        return f"{scheme}://{cred}{host}:{self.port}{tail}"

    # fault injection
    def kill(self):
        """SIGKILL: no shutdown, connections reset."""
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)

    def restart(self):
        """Starts again on the same port (after kill() or stop())."""
        self.start()

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
