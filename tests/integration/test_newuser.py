"""What a new user tripped over (issue 11), each reproduced against the real thing.

- busted: plain `busted` at the repository root runs the specs (.busted); a project outside
  the checkout tests its own policies with the checkout's helper, from its own directory or
  by absolute path, and an empty or missing policies directory is an error; the reference
  spec counts policies/ instead of hard-coding it.
- scripts/run.sh: SIGTERM to the script stops cachegw and the example API, SIGHUP reloads
  the policies, the script exits with cachegw's status; a taken EXAMPLE_API_PORT stops the
  script with a message instead of fronting the port's owner.
- .env: a key that looks like a typo of an option is warned about with a did-you-mean.
- --check and start-up exit 2 with one line for an invalid value (--host 999.1.1.1,
  --host localhost).
- The gateway's own 502/504 (and other refusals) carry X-Cache and Cache-Status.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time
import unittest

from harness import (BUILD_DIR, CACHEGW_BIN, SOURCE_DIR, ExampleAPI, Gateway, GatewayTestCase,
                     free_port, request, run_concurrently, wait_until)

BUSTED = shutil.which("busted")
HELPER = os.path.join(SOURCE_DIR, "tests", "lua", "helper.lua")
RUN_SH = os.path.join(SOURCE_DIR, "scripts", "run.sh")


def busted_env():
    """The environment a user has: no LUA_PATH/LUA_CPATH from ctest; the build to use."""
    env = {k: v for k, v in os.environ.items() if k not in ("LUA_PATH", "LUA_CPATH")}
    env["CACHEGW_BUILD_DIR"] = BUILD_DIR
    return env


def busted_counts(output):
    m = re.search(r"(\d+) successes? / (\d+) failures? / (\d+) errors? / (\d+) pending", output)
    if m is None:
        raise AssertionError("no busted summary in:\n" + output[-3000:])
    return tuple(int(x) for x in m.groups())


@unittest.skipIf(BUSTED is None, "busted is not installed")
class BustedTest(unittest.TestCase):
    def run_busted(self, args, cwd, timeout=240):
        r = subprocess.run([BUSTED, "--output=plainTerminal"] + args, cwd=cwd, env=busted_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        return r.returncode, r.stdout

    def test_plain_busted_at_the_root_runs_every_spec(self):
        rc, out = self.run_busted([], SOURCE_DIR)
        ok, failures, errors, _ = busted_counts(out)
        self.assertEqual((rc, failures, errors), (0, 0, 0), out[-3000:])
        # Every spec file was found: each one contributes, and there are well over 100.
        self.assertGreater(ok, 100, out[-3000:])

    def project(self):
        """A project outside the checkout, with its own policies and specs."""
        d = tempfile.mkdtemp(prefix="cachegw-user-project-")
        self.addCleanup(shutil.rmtree, d, True)
        os.makedirs(os.path.join(d, "policies"))
        os.makedirs(os.path.join(d, "spec"))
        os.makedirs(os.path.join(d, "empty"))
        with open(os.path.join(d, "policies", "search.lua"), "w") as f:
            f.write('route "GET /search" { key = "search:{query}", ttl = 10 }\n')
        with open(os.path.join(d, "empty", "README"), "w") as f:
            f.write("not a policy\n")
        return d

    def write_spec(self, project, body):
        with open(os.path.join(project, "spec", "search_spec.lua"), "w") as f:
            f.write(textwrap.dedent(body))

    def test_project_outside_the_checkout_tests_its_own_policies(self):
        d = self.project()
        self.write_spec(d, """\
            local helper = require "helper"
            describe("my policies", function()
                it("loads policies/ relative to the working directory", function()
                    local set = helper.load_policies()
                    assert.same({ "policies/search.lua" }, set.files)
                    local dec = helper.decide(set, "GET /search?q=lua")
                    assert.equal("search:q=lua", dec.key)
                    assert.equal(10, dec.ttl)
                end)
                it("loads an absolute directory", function()
                    local dir = os.getenv("PROJECT") .. "/policies"
                    local set = helper.load_policies(nil, dir)
                    assert.same({ dir .. "/search.lua" }, set.files)
                    assert.equal("search:q=x", helper.decide(set, "GET /search?q=x").key)
                end)
                it("refuses a directory without policy files", function()
                    assert.has_error(function() helper.load_policies(nil, "empty") end,
                        nil)
                    local ok, err = pcall(helper.load_policies, nil, "empty")
                    assert.is_false(ok)
                    assert.matches("no policy files", err)
                end)
                it("refuses a missing directory and says where it looked", function()
                    local ok, err = pcall(helper.load_policies, nil, "nope")
                    assert.is_false(ok)
                    assert.matches("policies directory nope", err, 1, true)
                    assert.matches("working directory", err, 1, true)
                end)
            end)
            """)
        env_project = {"PROJECT": d}
        r = subprocess.run([BUSTED, "--output=plainTerminal", "--lua=lua5.4", "--helper=" + HELPER,
                            "spec"], cwd=d, env={**busted_env(), **env_project},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=120)
        self.assertEqual(busted_counts(r.stdout), (4, 0, 0, 0), r.stdout)
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_a_spec_of_the_wrong_policies_fails(self):
        # The same kind of spec against a key the policy does not make: the suite must go
        # red, or the test above could not fail.
        d = self.project()
        self.write_spec(d, """\
            local helper = require "helper"
            it("wrong key", function()
                local set = helper.load_policies()
                assert.equal("other:q=lua", helper.decide(set, "GET /search?q=lua").key)
            end)
            """)
        rc, out = self.run_busted(["--lua=lua5.4", "--helper=" + HELPER, "spec"], d)
        self.assertNotEqual(rc, 0, out)
        self.assertEqual(busted_counts(out)[:2], (0, 1), out)

    def test_reference_spec_accepts_an_added_policy_file(self):
        # A user adds a policy file as docs/policies.md says: the shipped suite stays green.
        d = tempfile.mkdtemp(prefix="cachegw-added-policy-")
        self.addCleanup(shutil.rmtree, d, True)
        shutil.copytree(os.path.join(SOURCE_DIR, "policies"), os.path.join(d, "policies"))
        with open(os.path.join(d, "policies", "search.lua"), "w") as f:
            f.write('route "GET /search" { key = "search:{query}", ttl = 10 }\n')
        spec = os.path.join(SOURCE_DIR, "tests", "lua", "policies_reference_spec.lua")
        rc, out = self.run_busted(["--lua=lua5.4", "--helper=" + HELPER, spec], d)
        ok, failures, errors, _ = busted_counts(out)
        self.assertEqual((rc, failures, errors), (0, 0, 0), out)
        self.assertGreater(ok, 0)


def children(pid):
    """Direct child pids of pid (Linux /proc)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def gone(pid):
    """True once pid has exited and been reaped (or is a zombie nobody owns any more)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


class RunScriptTest(GatewayTestCase):
    def start_script(self, api_port, port, args=()):
        env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", EXAMPLE_API_PORT=str(api_port),
                   BUILD_DIR=BUILD_DIR)
        for k in ("REDIS_URL", "ADMIN_TOKEN", "UPSTREAM_URL", "POLICIES_DIR", "LUA_DIR"):
            env.pop(k, None)
        log = tempfile.NamedTemporaryFile(prefix="run-sh-", suffix=".log", delete=False)
        self.addCleanup(os.unlink, log.name)
        p = subprocess.Popen([RUN_SH] + list(args), env=env, stdout=log, stderr=subprocess.STDOUT,
                             cwd=tempfile.gettempdir())
        log.close()

        def output():
            with open(log.name) as f:
                return f.read()

        def stop():
            if p.poll() is None:
                p.kill()
                p.wait()
        self.addCleanup(stop)
        return p, output

    def test_sigterm_to_the_script_stops_cachegw_and_the_api(self):
        api_port, port = free_port(), free_port()
        p, output = self.start_script(api_port, port)

        def serving():
            if p.poll() is not None:
                raise AssertionError("run.sh exited:\n" + output())
            return request(port, "GET", "/health", timeout=1).status == 200
        wait_until(serving, timeout=240, what="run.sh's gateway")  # may build first
        self.assertEqual(request(port, "GET", "/users/1").header("x-cache"), "MISS")
        self.assertEqual(request(port, "GET", "/users/1").header("x-cache"), "HIT")
        kids = {comm(k): k for k in children(p.pid)}
        self.assertIn("cachegw", kids, kids)
        self.assertIn("example-api", kids, kids)

        # SIGHUP to the script reloads cachegw's policies (and stops nothing).
        p.send_signal(signal.SIGHUP)
        wait_until(lambda: "policies reloaded: generation" in output(), timeout=10,
                   what="the reload SIGHUP asked for")
        self.assertIsNone(p.poll(), output())
        self.assertEqual(request(port, "GET", "/users/1").header("x-cache"), "HIT")

        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=30), 0, output())
        for name, pid in kids.items():
            wait_until(lambda: gone(pid), timeout=5, what=f"{name} ({pid}) to exit")
        self.assertIn("SIGTERM received: draining", output())
        self.assertIn("stopped cleanly", output())
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

    def test_the_script_exits_with_cachegw_s_status(self):
        # An invalid setting: cachegw exits 2, the script stops the example API and says 2.
        api_port, port = free_port(), free_port()
        p, output = self.start_script(api_port, port, ["--host", "localhost"])
        self.assertEqual(p.wait(timeout=240), 2, output())
        self.assertIn("invalid value for --host (HOST): 'localhost'", output())
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", api_port), timeout=1).close()

    def test_taken_api_port_stops_the_script(self):
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        self.addCleanup(squatter.close)
        api_port, port = squatter.getsockname()[1], free_port()
        p, output = self.start_script(api_port, port)
        self.assertEqual(p.wait(timeout=240), 1, output())
        self.assertIn(f"port {api_port} is already in use", output())
        self.assertIn("EXAMPLE_API_PORT", output())
        self.assertNotIn("listening", output())  # neither the API nor cachegw started
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

    def test_api_that_cannot_bind_stops_the_script(self):
        # Bound but not listening: the port looks free to a connect, but the example API
        # cannot take it.  The script must notice its API died, not front the port.
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        self.addCleanup(holder.close)
        api_port, port = holder.getsockname()[1], free_port()
        p, output = self.start_script(api_port, port)
        self.assertEqual(p.wait(timeout=240), 1, output())
        self.assertIn(f"example API could not listen on port {api_port}", output())
        self.assertNotIn("cachegw listening", output())


class ConfigCheckTest(unittest.TestCase):
    def run_gw(self, args, cwd=None, timeout=30):
        env = {k: v for k, v in os.environ.items()
               if k not in ("HOST", "PORT", "REDIS_URL", "ADMIN_TOKEN")}
        env["POLICIES_DIR"] = os.path.join(SOURCE_DIR, "policies")
        env["LUA_DIR"] = os.path.join(SOURCE_DIR, "lua")
        return subprocess.run([CACHEGW_BIN] + args, cwd=cwd or tempfile.gettempdir(), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout)

    def test_check_refuses_hosts_that_are_not_addresses(self):
        for host in ("999.1.1.1", "localhost"):
            r = self.run_gw(["--check", "--host", host])
            self.assertEqual(r.returncode, 2, (host, r.stderr))
            lines = r.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, r.stderr)
            self.assertTrue(lines[0].startswith(f"cachegw: invalid value for --host (HOST): "
                                                f"'{host}'"), lines[0])
            self.assertEqual(r.stdout, "")
        r = self.run_gw(["--check", "--host", "127.0.0.1"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("policies OK", r.stdout)

    def test_startup_exits_2_before_binding(self):
        port = free_port()
        for args in (["--host", "localhost"], ["--admin-host", "999.1.1.1"],
                     ["--forwarded-host", "a b"]):
            r = self.run_gw(args + ["--port", str(port)], timeout=10)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertIn("invalid value for --", r.stderr)

    def test_dotenv_typos_are_warned_with_a_suggestion(self):
        d = tempfile.mkdtemp(prefix="cachegw-dotenv-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, ".env"), "w") as f:
            f.write("REDIS_ULR=redis://:hunter2@127.0.0.1:6379\n"
                    "UPSTREAM=http://127.0.0.1:9\n"
                    "DATABASE_URL=postgres://app\n"
                    "LOG_LEVEL=info\n")
        r = self.run_gw(["--check"], cwd=d)
        self.assertEqual(r.returncode, 0, r.stderr)  # warnings, not errors
        self.assertIn(".env:1: unknown key REDIS_ULR ignored; did you mean REDIS_URL?", r.stderr)
        self.assertIn(".env:2: unknown key UPSTREAM ignored; did you mean UPSTREAM_URL?",
                      r.stderr)
        self.assertNotIn("DATABASE_URL", r.stderr)
        self.assertNotIn("hunter2", r.stderr)
        self.assertEqual(len(re.findall(r"WARN", r.stderr)), 2, r.stderr)


class ErrorHeadersTest(GatewayTestCase):
    """The gateway's own answers carry X-Cache and Cache-Status like every other answer."""

    def assert_error(self, r, status, x_cache, cache_status):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("x-cache"), x_cache, r)
        self.assertEqual(r.header("cache-status"), cache_status, r)
        self.assertNotIn("fwd-status", r.header("cache-status"))  # no upstream answer
        self.assertEqual(r.json()["status"], status)

    def test_502_when_the_upstream_refuses(self):
        dead = free_port()  # nothing listens there
        gw = self.track(Gateway(f"http://127.0.0.1:{dead}"))
        self.assert_error(gw.get("/users/1"), 502, "MISS",
                          "cachegw; fwd=uri-miss; detail=upstream-unavailable")
        self.assert_error(gw.get("/users/1", headers={"Cookie": "sid=1"}), 502, "BYPASS",
                          "cachegw; fwd=request; detail=upstream-unavailable")
        self.assert_error(gw.req("POST", "/posts", body=b"{}",
                                 headers={"Content-Type": "application/json"}),
                          502, "BYPASS", "cachegw; fwd=method; detail=upstream-unavailable")
        # The JSON detail is the upstream library's message, escaped.
        self.assertIn("detail", gw.get("/users/2").json())

    def test_504_when_the_upstream_is_too_slow(self):
        api = self.track(ExampleAPI(latency_ms=1500))
        gw = self.track(Gateway(api.url, env={"UPSTREAM_TIMEOUT_MS": "300"}))
        self.assert_error(gw.get("/users/1"), 504, "MISS",
                          "cachegw; fwd=uri-miss; detail=upstream-timeout")
        # Requests collapsed onto the failed fetch say so.
        rs = run_concurrently(6, lambda i: gw.get("/users/3"))
        for r in rs:
            self.assertEqual((r.status, r.header("x-cache")), (504, "MISS"), r)
            self.assertIn(r.header("cache-status"),
                          ("cachegw; fwd=uri-miss; detail=upstream-timeout",
                           "cachegw; fwd=uri-miss; collapsed; detail=upstream-timeout"), r)

    def test_answers_given_before_any_forward(self):
        api = self.track(ExampleAPI())
        gw = self.track(Gateway(api.url))
        r = gw.get("/users/77", headers={"Cache-Control": "only-if-cached"})
        self.assert_error(r, 504, "MISS", "cachegw; detail=not-cached-only-if-cached")
        r = gw.get("/users/1?a=%zz")
        self.assert_error(r, 400, "BYPASS", "cachegw; detail=bad-request")
        self.assertEqual(api.requests(), 0)


if __name__ == "__main__":
    unittest.main()
