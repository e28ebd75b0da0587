"""The Debian package, built, extracted and run (issue 11, "Install and package").

setUpClass configures a Release build of its own (PACKAGE_BUILD_DIR, prefix
/usr), builds only the gateway and its man page, runs `cpack -G DEB`, and
extracts the package with `dpkg -x` into a scratch root.  The tests then look
at the package's control data and files, and run the extracted binary from an
empty temporary directory with the settings of the shipped
/etc/default/cachegw: it must find the extracted Lua library by itself (no
LUA_DIR, no checkout path in the binary, the checkout's lua/ not reachable
from its working directory) and serve a MISS then a HIT in front of the
example API.

Environment (set by tests/package.cmake): CACHEGW_SOURCE_DIR,
PACKAGE_BUILD_DIR, CMAKE_COMMAND, CPACK_COMMAND, EXAMPLE_API_BIN.
"""

import glob
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import ExampleAPI, free_port, request, wait_until  # noqa: E402

SOURCE_DIR = os.path.realpath(os.environ.get("CACHEGW_SOURCE_DIR", os.path.join(HERE, "..", "..")))
BUILD_DIR = os.environ.get("PACKAGE_BUILD_DIR", os.path.join(SOURCE_DIR, "build-package"))
CMAKE = os.environ.get("CMAKE_COMMAND", "cmake")
CPACK = os.environ.get("CPACK_COMMAND", "cpack")

# Libraries the binary links, by their Debian 12 package names.
RUNTIME_DEPENDS = ["libbrotli1", "libc6", "libcurl4", "libhiredis0.14", "libjansson4",
                   "liblua5.4-0", "libmicrohttpd12", "libssl3", "zlib1g"]
UNIT = "usr/lib/systemd/system/cachegw.service"


def run(argv, **kw):
    """Runs argv; its output is returned, and shown when it fails."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout[-6000:]}")
    return p.stdout


def env_file(path, root):
    """KEY=VALUE lines of an EnvironmentFile, with /etc and /usr paths moved under root."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition("=")
            if value.startswith(("/etc/", "/usr/")):
                value = root + value
            env[key] = value
    return env


class PackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.monotonic()
        # Release, as a distribution builds it; only what the package holds is
        # built (CMAKE_SKIP_INSTALL_ALL_DEPENDENCY keeps cpack from building
        # every test and benchmark first).
        run([CMAKE, "-S", SOURCE_DIR, "-B", BUILD_DIR, "-DCMAKE_BUILD_TYPE=Release",
             "-DCMAKE_INSTALL_PREFIX=/usr", "-DCACHEGW_SANITIZE=OFF", "-DCACHEGW_WERROR=OFF",
             "-DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON"])
        run([CMAKE, "--build", BUILD_DIR, "-j2", "--target", "cachegw", "cachegw-man"])
        for old in glob.glob(os.path.join(BUILD_DIR, "cachegw_*.deb")):
            os.unlink(old)
        run([CPACK, "-G", "DEB"], cwd=BUILD_DIR)
        debs = glob.glob(os.path.join(BUILD_DIR, "cachegw_*_*.deb"))
        if len(debs) != 1:
            raise AssertionError(f"expected one cachegw_*.deb in {BUILD_DIR}, found {debs}")
        cls.deb = debs[0]
        cls.scratch = tempfile.mkdtemp(prefix="cachegw-pkg-")
        cls.root = os.path.join(cls.scratch, "root")
        run(["dpkg", "-x", cls.deb, cls.root])
        cls.binary = os.path.join(cls.root, "usr/sbin/cachegw")
        print(f"\npackage {os.path.basename(cls.deb)} built and extracted in "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.scratch, ignore_errors=True)

    def workdir(self):
        d = tempfile.mkdtemp(prefix="cwd-", dir=self.scratch)
        return d

    # -- control data ---------------------------------------------------------

    def field(self, name):
        return run(["dpkg-deb", "-f", self.deb, name]).strip()

    def test_depends_on_the_linked_libraries(self):
        depends = [d.split()[0] for d in self.field("Depends").split(", ")]
        self.assertEqual(sorted(depends), sorted(RUNTIME_DEPENDS))
        self.assertEqual(self.field("Package"), "cachegw")
        self.assertEqual(self.field("Architecture"), run(["dpkg", "--print-architecture"]).strip())

    def test_etc_files_are_conffiles(self):
        ctl = os.path.join(self.scratch, "control")
        run(["dpkg-deb", "-e", self.deb, ctl])
        with open(os.path.join(ctl, "conffiles")) as f:
            conffiles = set(f.read().split())
        in_etc = {"/" + os.path.relpath(os.path.join(d, n), self.root)
                  for d, _, names in os.walk(os.path.join(self.root, "etc")) for n in names}
        self.assertIn("/etc/default/cachegw", in_etc)
        self.assertIn("/etc/cachegw/policies/users.lua", in_etc)
        self.assertEqual(conffiles, in_etc)
        for script in ("postinst", "prerm", "postrm"):
            path = os.path.join(ctl, script)
            self.assertTrue(os.access(path, os.X_OK), script)
            run(["sh", "-n", path])

    # -- files ----------------------------------------------------------------

    def test_layout(self):
        for rel in ("usr/sbin/cachegw", "usr/share/cachegw/lua/gateway/policy.lua",
                    "usr/share/cachegw/policies/users.lua", "etc/cachegw/policies/users.lua",
                    "etc/default/cachegw", UNIT, "usr/share/man/man8/cachegw.8.gz"):
            self.assertTrue(os.path.isfile(os.path.join(self.root, rel)), rel)
        shipped = sorted(os.path.basename(p) for p in glob.glob(f"{SOURCE_DIR}/policies/*.lua"))
        for d in ("usr/share/cachegw/policies", "etc/cachegw/policies"):
            self.assertEqual(sorted(os.listdir(os.path.join(self.root, d))), shipped, d)
        # The environment file may hold the Redis password and the admin token.
        self.assertEqual(os.stat(os.path.join(self.root, "etc/default/cachegw")).st_mode & 0o777,
                         0o600)

    def test_binary_has_no_build_paths(self):
        with open(self.binary, "rb") as f:
            data = f.read()
        for path in {SOURCE_DIR, os.path.realpath(BUILD_DIR), "/lua/gateway"}:
            self.assertNotIn(path.encode(), data, f"{path} is compiled into the binary")

    # -- running the extracted gateway ---------------------------------------

    def start(self, env, cwd, port):
        full = {"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": str(port)}
        full.update(env)
        log = open(os.path.join(cwd, "cachegw.log"), "w+")
        proc = subprocess.Popen([self.binary], env=full, cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT)
        self.addCleanup(log.close)
        self.addCleanup(lambda: proc.poll() is None and (proc.kill(), proc.wait()))

        def output():
            log.flush()
            with open(log.name) as f:
                return f.read()

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"cachegw exited {proc.returncode}:\n{output()}")
            return request(port, "GET", "/health", timeout=1).status == 200

        wait_until(ready, timeout=15, what="the extracted cachegw to answer /health")
        return proc, output

    def test_extracted_gateway_serves_miss_then_hit(self):
        api = ExampleAPI()
        self.addCleanup(api.stop)
        env = env_file(os.path.join(self.root, "etc/default/cachegw"), self.root)
        self.assertEqual(env["POLICIES_DIR"], self.root + "/etc/cachegw/policies")
        self.assertNotIn("LUA_DIR", env)
        env["UPSTREAM_URL"] = api.url
        cwd = self.workdir()
        self.assertFalse(os.path.exists(os.path.join(cwd, "lua")))
        port = free_port()
        proc, output = self.start(env, cwd, port)

        first = request(port, "GET", "/users/1")
        second = request(port, "GET", "/users/1")
        self.assertEqual((first.status, first.header("X-Cache")), (200, "MISS"), first)
        self.assertEqual((second.status, second.header("X-Cache")), (200, "HIT"), second)
        self.assertEqual(first.body, second.body)
        n = len(glob.glob(os.path.join(self.root, "etc/cachegw/policies/*.lua")))
        self.assertRegex(output(), rf"policies loaded: \d+ routes in {n} files from "
                                   rf"{re.escape(env['POLICIES_DIR'])}")

        # ExecReload sends SIGHUP: the policies reload and the entry stays.
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "policies reloaded: generation" in output(),
                   what="the SIGHUP reload to be logged")
        self.assertNotIn("policy reload failed", output())
        self.assertEqual(request(port, "GET", "/users/1").header("X-Cache"), "HIT")

        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=20), 0, output())

    def test_missing_library_is_an_error_naming_lua_dir(self):
        # The same binary in a root without share/cachegw/lua.
        bare = os.path.join(self.workdir(), "usr", "sbin")
        os.makedirs(bare)
        shutil.copy2(self.binary, bare)
        policies = os.path.join(self.root, "etc/cachegw/policies")
        for argv in (["--check"], []):
            p = subprocess.run([os.path.join(bare, "cachegw"), "--policies", policies,
                                "--port", str(free_port()), "--host", "127.0.0.1"] + argv,
                               cwd=self.workdir(), env={"PATH": "/usr/bin:/bin"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=20)
            self.assertEqual(p.returncode, 1, p.stdout)
            self.assertIn("LUA_DIR", p.stdout)
            self.assertIn("share/cachegw/lua", p.stdout)
        # LUA_DIR pointing at the extracted library makes the same binary work.
        p = subprocess.run([os.path.join(bare, "cachegw"), "--check", "--policies", policies],
                           cwd=self.workdir(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           env={"LUA_DIR": os.path.join(self.root, "usr/share/cachegw/lua")},
                           text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stdout)
        p = subprocess.run([self.binary, "--check", "--policies", policies, "--lua-dir",
                            self.workdir()], cwd=self.workdir(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=20, env={})
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("LUA_DIR (--lua-dir)", p.stdout)

    def test_environment_file_names_only_real_options(self):
        # Every KEY= in the shipped file, commented examples included, is an option of
        # --help (an administrator uncommenting one must not get a key the gateway ignores),
        # and with the examples uncommented the settings pass --check.
        with open(os.path.join(self.root, "etc/default/cachegw")) as f:
            text = f.read()
        keys = re.findall(r"^#?([A-Z][A-Z0-9_]*)=", text, re.M)
        self.assertGreater(len(keys), 8, text)
        helptext = run([self.binary, "--help"], cwd=self.workdir(), env={})
        options = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", helptext))
        self.assertEqual([k for k in keys if k not in options], [])
        logs = self.workdir()
        example = text.replace("/var/log/cachegw", logs)
        example = re.sub(r"^#([A-Z][A-Z0-9_]*=)", r"\1", example, flags=re.M)
        path = os.path.join(self.workdir(), "cachegw.env")
        with open(path, "w") as f:
            f.write(example)
        env = env_file(path, self.root)
        env = {k: v for k, v in env.items() if v != ""}  # ADMIN_TOKEN= is "unset"
        p = subprocess.run([self.binary, "--check"], env=env, cwd=self.workdir(), text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        self.assertEqual(p.returncode, 0, p.stdout)

    # -- man page -------------------------------------------------------------

    def test_man_page_matches_help(self):
        with gzip.open(os.path.join(self.root, "usr/share/man/man8/cachegw.8.gz"), "rt") as f:
            roff = f.read()
        lint = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=roff, text=True,
                              capture_output=True)
        self.assertEqual((lint.returncode, lint.stderr), (0, ""))
        # The source with font changes and \- undone: rendered text hyphenates words.
        page = re.sub(r"\\f[BIRP]", "", roff).replace("\\-", "-")
        helptext = run([self.binary, "--help"], cwd=self.workdir(), env={})
        flags = re.compile(r"--[a-z][a-z-]+")
        envs = re.compile(r"\b[A-Z][A-Z0-9]+_[A-Z0-9_]+\b|\b(?:HOST|PORT|WORKERS)\b")
        self.assertGreater(len(set(flags.findall(helptext))), 30)
        self.assertEqual(set(flags.findall(page)) - {"--name"},
                         set(flags.findall(helptext)) - {"--name"})
        self.assertEqual(set(envs.findall(page)), set(envs.findall(helptext)))
        version = run([self.binary, "--version"], env={}).split()[-1]
        self.assertIn(f"cachegw {version}", roff.splitlines()[1])

    # -- systemd unit ---------------------------------------------------------

    def unit_text(self):
        with open(os.path.join(self.root, UNIT)) as f:
            return f.read()

    def test_unit_settings(self):
        unit = self.unit_text()
        settings = {}
        for line in unit.splitlines():
            if "=" in line and not line.startswith("#"):
                k, _, v = line.partition("=")
                settings.setdefault(k, []).append(v)
        want = {"ExecStart": "/usr/sbin/cachegw", "ExecReload": "/bin/kill -HUP $MAINPID",
                "EnvironmentFile": "-/etc/default/cachegw", "DynamicUser": "yes",
                "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
                "CapabilityBoundingSet": "", "AmbientCapabilities": "", "Type": "exec"}
        for k, v in want.items():
            self.assertEqual(settings.get(k), [v], k)
        # MAX_CONNECTIONS (16384) plus upstream and Redis connections must fit.
        self.assertGreaterEqual(int(settings["LimitNOFILE"][0]), 16384 + 256 + 10 + 256)

    def verify(self, text):
        """systemd-analyze verify on text, with ExecStart moved to the extracted binary."""
        d = self.workdir()
        path = os.path.join(d, "cachegw.service")
        with open(path, "w") as f:
            f.write(text.replace("ExecStart=/usr/sbin/cachegw", f"ExecStart={self.binary}"))
        env = dict(os.environ, MANPATH=os.path.join(self.root, "usr/share/man"))
        return subprocess.run(["systemd-analyze", "verify", path], cwd=d, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def test_unit_passes_systemd_analyze_verify(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed (apt-get install systemd)")
        unit = self.unit_text()
        p = self.verify(unit)
        self.assertEqual((p.returncode, p.stdout), (0, ""))
        # The check can fail: a bad value is reported (systemd ignores it, so
        # only the output shows it), a missing binary fails verify.
        bad = self.verify(unit.replace("ProtectSystem=strict", "ProtectSystem=stricter"))
        self.assertIn("Failed to parse protect system value", bad.stdout)
        missing = self.verify(unit.replace("ExecStart=/usr/sbin/cachegw",
                                           "ExecStart=/nonexistent/cachegw"))
        self.assertNotEqual(missing.returncode, 0, missing.stdout)
        # The offline security review of the unit rates its exposure low.
        d = self.workdir()
        path = os.path.join(d, "cachegw.service")
        with open(path, "w") as f:
            f.write(unit)
        sec = subprocess.run(["systemd-analyze", "security", "--offline=yes", path], cwd=d,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        m = re.search(r"Overall exposure level for cachegw.service: ([0-9.]+)", sec.stdout)
        self.assertIsNotNone(m, sec.stdout[-2000:])
        self.assertLessEqual(float(m.group(1)), 2.0, sec.stdout)


if __name__ == "__main__":
    unittest.main()
