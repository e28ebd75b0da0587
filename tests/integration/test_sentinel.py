"""Redis Sentinel (issue 10) through the real binary, against the fixture's
master + replica + 3 sentinels (tests/redis_cluster.cmake, cluster_servers.py):
the gateway asks the sentinels for the master, checks ROLE, follows a
SENTINEL FAILOVER made under load with no failed request, and writes to the
new master afterwards (never to the demoted one).
"""

import os
import shutil
import tempfile
import time

import cluster_servers as cs
from harness import ExampleAPI, Gateway, GatewayTestCase, free_port, wait_until

POLICY = 'route "GET /users/:id" { key = "users:{id}", ttl = 300 }\n'
PROBE = "/users/77"
PROBE_KEY = "cachegw:c:users:77"


def current_master():
    addr = cs.cmd(cs.SENTINELS[0], "SENTINEL", "get-master-addr-by-name", cs.SENTINEL_MASTER)
    return int(addr[1])


class SentinelTest(GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.assertTrue(cs.available(), "the redis_cluster fixture is not running in "
                        + cs.CLUSTER_DIR)
        self.policies = tempfile.mkdtemp(prefix="cachegw-sentinel-policies-")
        self.addCleanup(shutil.rmtree, self.policies, ignore_errors=True)
        with open(os.path.join(self.policies, "users.lua"), "w") as f:
            f.write(POLICY)
        self.api = self.track(ExampleAPI(latency_ms=0))

    def gateway(self, **env):
        e = {"REDIS_MODE": "sentinel",
             "REDIS_SENTINELS": ",".join("127.0.0.1:%d" % p for p in cs.SENTINELS),
             "REDIS_SENTINEL_MASTER": cs.SENTINEL_MASTER,
             "REDIS_URL": "redis://placeholder-host-not-used",
             "POLICIES_DIR": self.policies}
        e.update(env)
        return self.track(Gateway(self.api.url, env=e))

    def drop_probe(self):
        """The probe entry must be new to Redis: a run within its 300 s TTL
        left it there (on whichever node is master now; replicas follow)."""
        cs.cmd(current_master(), "DEL", PROBE_KEY)

    def test_failover_under_load(self):
        self.drop_probe()
        self.addCleanup(self.drop_probe)
        old = current_master()
        new = [p for p in cs.SENTINEL_DATA if p != old][0]
        gw = self.gateway(CACHE_MAX_BYTES="0", REDIS_TIMEOUT_MS="500")
        wait_until(lambda: gw.health_cache()["backend"] == "redis", timeout=15,
                   what="the master from the sentinels")
        t = gw.health_cache()["redis"]["topology"]
        self.assertEqual(t["mode"], "sentinel")
        self.assertIn("Redis Sentinel: master 'cachegw-master' is 127.0.0.1:%d" % old, gw.output())
        self.assertIn("confirmed as master (ROLE)", gw.output())
        paths = ["/users/%d" % i for i in range(1, 51)]
        for p in paths:
            gw.get(p)
        wait_until(lambda: gw.get(paths[0]).header("x-cache") == "HIT", what="a Redis hit")
        self.assertGreater(len(cs.cmd(old, "KEYS", "cachegw:c:*")), 0)

        def right(path, r):
            return ('"id":%s,' % path.rsplit("/", 1)[1]).encode() in r.body

        with cs.Load(gw.port, paths, right) as load:
            time.sleep(0.5)
            t0 = time.monotonic()
            self.assertEqual(cs.cmd(cs.SENTINELS[0], "SENTINEL", "FAILOVER", cs.SENTINEL_MASTER),
                             "OK")
            cs.wait_for(lambda: current_master() == new, timeout=30, what="the sentinels' switch")
            t_switch = time.monotonic() - t0
            wait_until(lambda: "127.0.0.1:%d confirmed as master" % new in gw.output(),
                       timeout=10, what="the gateway to follow")
            t_follow = time.monotonic() - t0
            time.sleep(1.0)
        print(f"\n[sentinel] SENTINEL FAILOVER: switched after {t_switch:.2f} s, gateway on the "
              f"new master after {t_follow:.2f} s; {load.summary()}")
        self.assertEqual(load.non_2xx, [], load.summary())
        self.assertEqual(load.wrong, [], load.summary())
        self.assertGreaterEqual(gw.health_cache()["redis"]["topology"]["failovers"], 1)

        # Writes go to the new master: a fresh entry lands there.
        probe = PROBE
        self.assertEqual(gw.get(probe).header("x-cache"), "MISS")
        wait_until(lambda: cs.cmd(new, "EXISTS", PROBE_KEY) == 1,
                   what="the entry on the new master")
        self.assertEqual(cs._s(cs.cmd(new, "ROLE")[0]), "master")
        self.assertEqual(gw.get(probe).header("x-cache"), "HIT")
        # The demoted node is a replica now; nothing was refused for writing to it.
        wait_until(lambda: cs._s(cs.cmd(old, "ROLE")[0]) == "slave", timeout=15,
                   what="the old master to be a replica")
        self.assertNotIn("READONLY", gw.output())

    def test_bad_sentinel_master_name(self):
        gw = self.gateway(REDIS_SENTINEL_MASTER="no-such-master")
        self.assertEqual(gw.get("/users/1").status, 200)
        wait_until(lambda: "no address for master 'no-such-master'" in gw.output(),
                   what="the unknown master logged")
        self.assertEqual(gw.health_cache()["backend"], "memory")

    def test_every_sentinel_down(self):
        gw = self.gateway(REDIS_SENTINELS="127.0.0.1:%d,127.0.0.1:%d" % (free_port(), free_port()))
        self.assertEqual(gw.get("/users/1").header("x-cache"), "MISS")
        self.assertEqual(gw.get("/users/1").header("x-cache"), "HIT")  # memory
        self.assertEqual(gw.health_cache()["backend"], "memory")
        wait_until(lambda: "Redis connection failed" in gw.output(), what="the outage logged")
