"""The Redis Cluster and Sentinel servers of the ctest fixture 'cluster'
(scripts/redis-cluster-servers.sh, started by tests/redis_cluster.cmake), and
what the tests need to look at them or break them: node roles, slot owners,
kill -9 and restart, and a load runner that records every answer.

Ports: REDIS_CLUSTER_PORT_BASE (default 17100, as the fixture script) plus
  plain cluster +1..+6, TLS cluster +11..+16 (announcing "localhost"),
  sentinel data nodes +21 (master at start) / +22, sentinels +31..+33.
"""

import os
import signal
import subprocess
import threading
import time

from harness import request
from redis_servers import RedisClient

BUILD_DIR = os.environ.get("CACHEGW_BUILD_DIR", "")
CLUSTER_DIR = os.environ.get("REDIS_CLUSTER_DIR") or os.path.join(BUILD_DIR, "redis-cluster")
CERTS = os.path.join(CLUSTER_DIR, "certs")
CA = os.path.join(CERTS, "ca.crt")

BASE = int(os.environ.get("REDIS_CLUSTER_PORT_BASE") or 17100)
PLAIN_PORTS = list(range(BASE + 1, BASE + 7))
TLS_PORTS = list(range(BASE + 11, BASE + 17))
SENTINEL_DATA = [BASE + 21, BASE + 22]
SENTINELS = [BASE + 31, BASE + 32, BASE + 33]
SENTINEL_MASTER = "cachegw-master"


def available():
    return os.path.isfile(os.path.join(CLUSTER_DIR, "redis-c%d.conf" % PLAIN_PORTS[0]))


def client(port, tls=False):
    if tls:
        return RedisClient(port, tls_ca=CA, tls_cert=os.path.join(CERTS, "node.crt"),
                           tls_key=os.path.join(CERTS, "node.key"), server_hostname="localhost")
    return RedisClient(port)


def cmd(port, *args, tls=False):
    with client(port, tls) as c:
        return c.command(*args)


def _s(v):
    return v.decode() if isinstance(v, bytes) else v


def alive(port, tls=False):
    try:
        return _s(cmd(port, "PING", tls=tls)) == "PONG"
    except (OSError, Exception):  # noqa: BLE001 - down is down
        return False


def masters(ports, tls=False):
    """Ports of the nodes that are masters now and answer."""
    out = []
    for p in ports:
        try:
            role = cmd(p, "ROLE", tls=tls)
        except Exception:  # noqa: BLE001
            continue
        if _s(role[0]) == "master":
            out.append(p)
    return out


def node_id(port, tls=False):
    return _s(cmd(port, "CLUSTER", "MYID", tls=tls))


def slot_owner(ports, slot, tls=False):
    """The port that serves slot according to the first node that answers."""
    for p in ports:
        try:
            slots = cmd(p, "CLUSTER", "SLOTS", tls=tls)
        except Exception:  # noqa: BLE001
            continue
        for ent in slots:
            if ent[0] <= slot <= ent[1]:
                return int(ent[2][1])
    return None


def cluster_ok(ports, tls=False):
    for p in ports:
        try:
            info = _s(cmd(p, "CLUSTER", "INFO", tls=tls))
        except Exception:  # noqa: BLE001
            continue
        if "cluster_state:ok" not in info:
            return False
    return True


def pid_of(name):
    with open(os.path.join(CLUSTER_DIR, f"redis-{name}.pid")) as f:
        return int(f.read().strip())


def kill9(name):
    """kill -9 of the node redis-NAME (c<port>, t<port>, s<port>)."""
    os.kill(pid_of(name), signal.SIGKILL)


def restart(name):
    subprocess.run(["redis-server", os.path.join(CLUSTER_DIR, f"redis-{name}.conf")],
                   check=True, stdout=subprocess.DEVNULL)


def keyslot(key):
    """The slot of key (asked of the plain cluster: CLUSTER KEYSLOT)."""
    for p in PLAIN_PORTS:
        try:
            return int(cmd(p, "CLUSTER", "KEYSLOT", key))
        except Exception:  # noqa: BLE001
            continue
    raise RuntimeError("no plain cluster node answers")


class Load:
    """Threads GETting paths through a gateway until stopped; every answer is
    checked by check(path, response) -> bool and counted."""

    def __init__(self, port, paths, check, threads=4):
        self.port = port
        self.paths = paths
        self.check = check
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.total = 0
        self.non_2xx = []
        self.wrong = []
        self.x_cache = {}
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def _run(self, i):
        n = i
        while not self.stop_flag.is_set():
            path = self.paths[n % len(self.paths)]
            n += len(self.threads)
            try:
                r = request(self.port, "GET", path, timeout=10)
            except Exception as exc:  # noqa: BLE001 - a failed request is a finding
                with self.lock:
                    self.total += 1
                    self.non_2xx.append((path, repr(exc)))
                continue
            with self.lock:
                self.total += 1
                xc = r.header("x-cache", "")
                self.x_cache[xc] = self.x_cache.get(xc, 0) + 1
                if not 200 <= r.status < 300:
                    self.non_2xx.append((path, r.status))
                elif not self.check(path, r):
                    self.wrong.append(path)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)

    def summary(self):
        return (f"{self.total} requests, {len(self.non_2xx)} non-2xx, {len(self.wrong)} wrong, "
                f"x-cache {self.x_cache}")


def wait_for(pred, timeout=20.0, interval=0.1, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError("timed out waiting for " + what)
