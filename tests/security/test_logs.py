"""Issue 8, items 15 and 25: what reaches the log and the terminal.

- 15: control bytes in a URL never reach the log as raw bytes (the request is
  refused with 400 anyway); query-string secrets are redacted in the access log.
- 25: configuration errors exit 2 and never echo a secret.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from secharness import CACHEGW_BIN, DEFAULT_POLICY, LUA_DIR, SecTestCase, wait_until

RAW_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")


class LogInjectionTest(SecTestCase):
    """Item 15."""

    def test_control_bytes_in_url_never_reach_the_log(self):
        gw = self.start(env={"ACCESS_LOG": "true", "LOG_LEVEL": "debug"})
        self.refl.on("/log", lambda rec: None)  # the default echo, recorded
        targets = [b"/log\x1b[2J\x1b[Hforged", b"/log?a=\x1b]0;title\x07", b"/log\x08\x08\x08x",
                   b"/log?q=\x7fdel", b"/log\x00nul", b"/log\x0bvt"]
        for t in targets:
            with self.subTest(target=t):
                r, _ = self.raw(gw, b"GET " + t + b" HTTP/1.1\r\nHost: gw.test\r\n\r\n")
                if r is not None:
                    self.assertEqual(r.status, 400, r)
        # An encoded ESC is fine on the wire and must be logged encoded too.
        self.get(gw, "/log%1B%5B2Jenc")
        time.sleep(0.3)
        log = gw.stdout() + gw.stderr()
        bad = RAW_CONTROL.findall(log)
        self.assertEqual(bad, [], f"raw control bytes in the log: {log[-1500:]!r}")
        self.assertEqual(self.refl.count(prefix="/log\x1b"), 0)

    def test_query_secrets_are_redacted_in_the_access_log(self):
        gw = self.start(env={"ACCESS_LOG": "true"})
        secrets = {"access_token": "SECRETAAA111", "token": "SECRETBBB222",
                   "password": "SECRETCCC333", "Access_Token": "SECRETDDD444"}
        for name, value in secrets.items():
            with self.subTest(param=name):
                r = self.get(gw, f"/acc-{name}?x=1&{name}={value}&y=2")
                self.assertEqual(r.status, 200)
        time.sleep(0.3)
        log = (gw.stdout() + gw.stderr()).decode("latin-1")
        for name in secrets:
            self.assertIn(f"/acc-{name}", log, "no access log line for the request")
        for name, value in secrets.items():
            with self.subTest(param=name):
                self.assertNotIn(value, log, f"{name} value logged")
        # Harmless parameters stay readable.
        self.assertRegex(log, r"/acc-token\?x=1&")

    def test_query_secrets_are_redacted_in_debug_decisions(self):
        """LOG_LEVEL=debug logs each decision with its key, and keys hold query values."""
        gw = self.start({"q.lua": 'route "GET /dq" { key = "dq:{query}", ttl = 60 }\n'},
                        env={"LOG_LEVEL": "debug"})
        for target in ("/dq?access_token=SECRETEEE555&x=1", "/dnr?x=2&password=SECRETFFF666"):
            with self.subTest(target=target):
                self.assertEqual(self.get(gw, target).status, 200)
        time.sleep(0.3)
        log = (gw.stdout() + gw.stderr()).decode("latin-1")
        decisions = [ln for ln in log.splitlines() if "decision GET" in ln]
        self.assertEqual(len(decisions), 2, log[-1500:])
        self.assertNotIn("SECRET", log, decisions)
        self.assertIn("key=dq:access_token=***&x=1 ", decisions[0])
        self.assertIn("key=GET:/dnr?password=***&x=2 ", decisions[1])  # sorted


class AbortedUploadLogTest(SecTestCase):
    """Items 13 and 15: a request whose body streams upstream is released after its
    connection is gone (or after libmicrohttpd answered a bad chunk itself); its log
    line must still name its own method and protocol.  They were read from the
    connection's memory pool, freed or reused by then: the access log showed bytes
    like "\\u0090" (a use after free)."""

    def test_access_log_of_aborted_streamed_uploads(self):
        # The uploads end inside their bodies: the upstream sees a truncated body.
        self.allowed_anomalies = ("connection closed inside the body",)
        gw = self.start(env={"ACCESS_LOG": "stdout", "ACCESS_LOG_FORMAT": "json"})
        sent = []
        for i, method in enumerate(("PUT", "POST", "PATCH")):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
                # Over 64 KiB: streamed upstream while it arrives; the client leaves.
                s.sendall(f"{method} /up{i} HTTP/1.1\r\nHost: gw.test\r\n"
                          "Content-Length: 1000000\r\n\r\n".encode() + b"a" * 200000)
                time.sleep(0.3)
            sent.append((method, f"/up{i}"))
        # A chunked body libmicrohttpd refuses itself (bad chunk size) after it started.
        r, _ = self.raw(gw, b"DELETE /bc HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n", check_close=1.0)
        self.assertEqual(r.status if r else None, 400, r)
        sent.append(("DELETE", "/bc"))
        self.sent(len(sent) - 1)

        def logged():
            lines = [json.loads(ln) for ln in gw.stdout().decode().splitlines()
                     if ln.startswith("{")]
            return {d["path"]: d for d in lines}
        wait_until(lambda: all(p in logged() for _, p in sent), timeout=10,
                   what="an access log line for every aborted upload")
        by_path = logged()
        for method, path in sent:
            with self.subTest(path=path):
                self.assertEqual(by_path[path]["method"], method, by_path[path])
                self.assertEqual(by_path[path]["protocol"], "HTTP/1.1", by_path[path])


class ConfigSecretsTest(SecTestCase):
    """Item 25."""

    def run_cachegw(self, args, env=None):
        full = dict(os.environ)
        for k in ("REDIS_URL", "ADMIN_TOKEN"):
            full.pop(k, None)
        # Valid policies, so that exit status 2 can only come from the option under test.
        pdir = tempfile.mkdtemp(prefix="cachegw-sec-pol-")
        self.addCleanup(shutil.rmtree, pdir, True)
        with open(os.path.join(pdir, "default.lua"), "w") as f:
            f.write(DEFAULT_POLICY)
        full.update({"POLICIES_DIR": pdir, "LUA_DIR": LUA_DIR})
        full.update(env or {})
        p = subprocess.run([CACHEGW_BIN] + args, env=full, capture_output=True, timeout=20,
                           cwd="/tmp")
        return p.returncode, p.stdout + p.stderr

    def test_check_passes_without_the_bad_option(self):
        rc, out = self.run_cachegw(["--check"])
        self.assertEqual(rc, 0, out)

    def test_secrets_never_echoed(self):
        cases = [
            (["--admin-token=", "s3cr3t-AAA"], {}),
            (["--admin-token", "", "s3cr3t-AAA"], {}),
            (["--port", "8", "s3cr3t-AAA"], {}),
            ([], {"REDIS_URL": "redis:/:s3cr3t-AAA@host"}),
            ([], {"REDIS_URL": "redis:/user:s3cr3t-AAA@host:6379"}),
            ([], {"REDIS_URL": "rediss//:s3cr3t-AAA@host"}),
            (["--redis-url", "redis:/:s3cr3t-AAA@host"], {}),
            (["--redis-url=redis://:s3cr3t-AAA@host:99999"], {}),
        ]
        for args, env in cases:
            with self.subTest(args=args, env=env):
                rc, out = self.run_cachegw(args + ["--check"], env)
                self.assertEqual(rc, 2, out)
                self.assertNotIn(b"s3cr3t", out)
                self.assertTrue(out.strip(), "no error message at all")
                if env or any("redis" in a for a in args):
                    self.assertIn(b"redis-url", out.lower().replace(b"redis_url", b"redis-url"))


if __name__ == "__main__":
    unittest.main()
