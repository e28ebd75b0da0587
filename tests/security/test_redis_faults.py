"""Issue 8, item 24: Redis errors and resets are visible and cost the client nothing.

tests/integration/test_redis_hostile.py covers the endless replies, the stall, the
breaker, WRONGPASS and the refused SUBSCRIBE with the scripted fake Redis
(tests/fakeredis); this file covers its two remaining hostile modes: a Redis that
answers every data command with an error (OOM under noeviction), and one that
resets the connection on every data command.  Either way every request is
answered from the upstream at once, the failures are counted by kind in /metrics
(cachegw_redis_errors_total) and in /health/cache, a warning names the cause, and
the Redis tier is used again once Redis behaves.
"""

import os
import sys
import time
import unittest

from secharness import SOURCE_DIR, SecTestCase, wait_until

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "fakeredis"))
from fake_redis import FakeRedis  # noqa: E402

OOM = "OOM command not allowed when used memory > 'maxmemory'."


def redis_errors(gw):
    return gw.get("/health/cache").json()["redis"]["errors"]


def metric(gw, name):
    for line in gw.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class RedisFaultTest(SecTestCase):
    def gateway_on(self, fake):
        gw = self.start(env={"REDIS_URL": fake.url, "REDIS_TIMEOUT_MS": "500",
                             "REDIS_POOL_SIZE": "2"})
        wait_until(lambda: gw.get("/health/cache").json()["backend"] == "redis", timeout=10,
                   what="the Redis tier")
        return gw

    def fake(self):
        f = FakeRedis("normal")
        self.addCleanup(f.stop)
        return f

    def cold_requests(self, gw, prefix, n=5):
        for i in range(n):
            r = self.get(gw, f"/{prefix}{i}")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["target"], f"/{prefix}{i}")
            self.assertLess(r.elapsed, 0.4, f"/{prefix}{i} waited on Redis")

    def test_error_replies_are_counted_and_named(self):
        # Refusing from the first data command on: the only refusals are the OOM ones, so
        # the warning (once per kind every 30 s) must be theirs.
        fake = self.fake()
        fake.error_text = OOM
        fake.scenario = "error"
        gw = self.start(env={"REDIS_URL": fake.url, "REDIS_TIMEOUT_MS": "500",
                             "REDIS_POOL_SIZE": "2"})
        self.cold_requests(gw, "oom")
        wait_until(lambda: redis_errors(gw)["refused"] >= 1, timeout=5,
                   what="the refusals counted")
        self.assertGreaterEqual(metric(gw, 'cachegw_redis_errors_total{kind="refused"}'), 1)
        wait_until(lambda: "WARN  Redis refusal: error reply: OOM command not allowed"
                   in gw.output(), timeout=5, what="a warning naming the OOM refusal")
        # The answers were stored in memory all the same.
        self.assertEqual(self.get(gw, "/oom0").header("x-cache"), "HIT")
        # Redis accepts writes again: the Redis tier is offered and used.
        fake.scenario = "normal"
        wait_until(lambda: gw.get("/health/cache").json()["backend"] == "redis", timeout=15,
                   what="the Redis tier back")

    def test_connection_resets_are_counted_and_recovered_from(self):
        fake = self.fake()
        gw = self.gateway_on(fake)
        fake.scenario = "reset"
        self.cold_requests(gw, "reset")
        wait_until(lambda: redis_errors(gw)["closed"] >= 1, timeout=5, what="a reset counted")
        self.assertGreaterEqual(metric(gw, 'cachegw_redis_errors_total{kind="closed"}'), 1)
        self.assertIn("WARN  Redis connection loss: connection reset by server", gw.output())
        fake.scenario = "normal"
        before = fake.counts["SET"]
        t0 = time.monotonic()

        def used_again():
            self.get(gw, f"/back{int((time.monotonic() - t0) * 10)}")
            return fake.counts["SET"] > before
        wait_until(used_again, timeout=10, interval=0.2, what="the Redis tier to be used again")


if __name__ == "__main__":
    unittest.main()
