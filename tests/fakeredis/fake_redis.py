"""A small scripted Redis (RESP2) server on loopback, for tests of hostile Redis behaviour.

Standard library only.  It answers the few commands cachegw sends normally
(AUTH, HELLO, PING, SELECT, GET, SET, DEL, UNLINK, EXISTS, HGETALL, SCAN,
SUBSCRIBE, PUBLISH; EVAL/EVALSHA get an error reply), and, by scenario, in
hostile ways.  The scenario is an attribute, so a test may switch it while
the gateway is connected:

  normal            the commands above, on an in-memory dict
  endless_array     GET -> "*2147483647\\r\\n" then ":1\\r\\n" for as long as the peer reads
  huge_bulk         GET -> "$2147483000\\r\\n" then endless bytes
  partial_stall     GET -> "$100\\r\\nabc" and then nothing more on that connection
  stall             every data command (anything but AUTH/HELLO/PING/SELECT/SUBSCRIBE) is
                    never answered, nor anything after it on that connection: a Redis that
                    answers PING (new connections handshake fine) but stalls GET
  error             every data command -> "-<error_text>" (e.g. "OOM command not allowed...")
  subscribe_refused SUBSCRIBE -> "-NOPERM this user has no permissions to access one of the
                    channels used as arguments"
  wrongpass         AUTH -> "-WRONGPASS invalid username-password pair or user is disabled."
  reset             every data command -> the connection is closed at once

Other controls: kill_clients() closes every connection (what Redis does to the
clients of a user whose password was changed); publish(channel, payload) sends a
pub/sub message to the subscribers (hostile records included); `counts` counts
the commands received by name, and `subscribe_attempts` the SUBSCRIBEs.

Run alone:  python3 fake_redis.py --port 6390 --scenario endless_array
"""

import argparse
import collections
import socket
import threading
import time

HANDSHAKE = {b"AUTH", b"HELLO", b"PING", b"SELECT", b"SUBSCRIBE", b"CLIENT", b"QUIT"}


def bulk(b):
    if b is None:
        return b"$-1\r\n"
    if isinstance(b, str):
        b = b.encode()
    return b"$%d\r\n%s\r\n" % (len(b), b)


def array(items):
    return b"*%d\r\n" % len(items) + b"".join(items)


class _Conn:
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.buf = b""
        self.subscribed = set()
        self.stalled = False
        self.lock = threading.Lock()

    def send(self, data):
        with self.lock:
            self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
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

    def read_command(self):
        line = self._line()
        if not line.startswith(b"*"):
            return line.split()  # inline command
        n = int(line[1:])
        args = []
        for _ in range(n):
            hdr = self._line()
            args.append(self._exact(int(hdr[1:])))
        return args

    def serve(self):
        try:
            while True:
                args = self.read_command()
                if not args:
                    continue
                if self.stalled:
                    continue  # a stalled connection answers nothing more
                self.server._count(args[0].upper())
                if self.handle(args) is False:
                    return
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            self.server._forget(self)
            try:
                self.sock.close()
            except OSError:
                pass

    def stream_forever(self, head, chunk):
        self.send(head)
        try:
            while not self.server.closing:
                self.send(chunk)
        except OSError:
            pass
        return False

    def handle(self, args):
        srv = self.server
        cmd = args[0].upper()
        sc = srv.scenario
        if cmd == b"AUTH":
            if sc == "wrongpass" or (srv.password is not None and args[-1].decode() != srv.password):
                self.send(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
            else:
                self.send(b"+OK\r\n")
            return True
        if cmd == b"PING":
            self.send(b"+PONG\r\n" if not self.subscribed else array([bulk("pong"), bulk("")]))
            return True
        if cmd in (b"SELECT", b"CLIENT"):
            self.send(b"+OK\r\n")
            return True
        if cmd == b"HELLO":
            self.send(b"-ERR unknown command 'HELLO'\r\n")
            return True
        if cmd == b"SUBSCRIBE":
            with srv.mutex:
                srv.subscribe_attempts += 1
            if sc == "subscribe_refused":
                self.send(b"-NOPERM this user has no permissions to access one of the channels "
                          b"used as arguments\r\n")
                return True
            for ch in args[1:]:
                self.subscribed.add(ch)
                self.send(array([bulk("subscribe"), bulk(ch), b":%d\r\n" % len(self.subscribed)]))
            return True
        if cmd == b"QUIT":
            self.send(b"+OK\r\n")
            return False
        # Data commands: the scenario decides.
        if sc == "stall":
            self.stalled = True
            return True
        if sc == "reset":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return False
        if sc == "error":
            self.send(b"-" + srv.error_text.encode() + b"\r\n")
            return True
        if cmd == b"GET":
            if sc == "endless_array":
                return self.stream_forever(b"*2147483647\r\n", b":1\r\n" * 16384)
            if sc == "huge_bulk":
                return self.stream_forever(b"$2147483000\r\n", b"x" * 65536)
            if sc == "partial_stall":
                self.send(b"$100\r\nabc")
                self.stalled = True
                return True
            with srv.mutex:
                self.send(bulk(srv.data.get(args[1])))
            return True
        if cmd == b"SET":
            with srv.mutex:
                srv.data[args[1]] = args[2]
            self.send(b"+OK\r\n")
            return True
        if cmd in (b"DEL", b"UNLINK", b"EXISTS"):
            with srv.mutex:
                n = sum(1 for k in args[1:] if k in srv.data)
                if cmd != b"EXISTS":
                    for k in args[1:]:
                        srv.data.pop(k, None)
            self.send(b":%d\r\n" % n)
            return True
        if cmd == b"HGETALL":
            self.send(b"*0\r\n")
            return True
        if cmd == b"SCAN":
            self.send(array([bulk("0"), b"*0\r\n"]))
            return True
        if cmd == b"PUBLISH":
            n = srv.publish(args[1], args[2])
            self.send(b":%d\r\n" % n)
            return True
        self.send(b"-ERR fake redis: command not supported\r\n")
        return True


class FakeRedis:
    def __init__(self, scenario="normal", port=0, password=None,
                 error_text="OOM command not allowed when used memory > 'maxmemory'."):
        self.scenario = scenario
        self.password = password
        self.error_text = error_text
        self.data = {}
        self.counts = collections.Counter()
        self.subscribe_attempts = 0
        self.mutex = threading.Lock()
        self.conns = set()
        self.closing = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def _accept(self):
        while not self.closing:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            conn = _Conn(self, sock)
            with self.mutex:
                self.conns.add(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def _forget(self, conn):
        with self.mutex:
            self.conns.discard(conn)

    def _count(self, name):
        with self.mutex:
            self.counts[name.decode(errors="replace")] += 1

    def publish(self, channel, payload):
        if isinstance(channel, str):
            channel = channel.encode()
        if isinstance(payload, str):
            payload = payload.encode()
        with self.mutex:
            targets = [c for c in self.conns if channel in c.subscribed]
        for c in targets:
            try:
                c.send(array([bulk("message"), bulk(channel), bulk(payload)]))
            except OSError:
                pass
        return len(targets)

    def subscribers(self):
        with self.mutex:
            return sum(1 for c in self.conns if c.subscribed)

    def kill_clients(self):
        with self.mutex:
            conns = list(self.conns)
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.closing = True
        try:
            self.listener.close()
        except OSError:
            pass
        self.kill_clients()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=6390)
    ap.add_argument("--scenario", default="normal")
    ap.add_argument("--password")
    args = ap.parse_args()
    f = FakeRedis(args.scenario, args.port, args.password)
    print(f"fake redis on 127.0.0.1:{f.port}, scenario {f.scenario}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        f.stop()


if __name__ == "__main__":
    main()
