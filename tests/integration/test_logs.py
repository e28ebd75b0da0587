"""Issue 11, "Logs that tools parse": the access log and the application log.

Real binary, real example API, real sockets.  The access log goes to a file (or
stdout) and each line is parsed the way a log pipeline would: the combined format
with the regex nginx's own documentation gives for it, JSON with json.loads.
"""

import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (CACHEGW_BIN, SOURCE_DIR, ExampleAPI, Gateway, GatewayTestCase, free_port,
                     request, run_concurrently, wait_until)
from redis_servers import RedisServer

# $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
# "$http_referer" "$http_user_agent"
COMBINED = re.compile(
    r'^(?P<addr>\S+) - (?P<user>\S+) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} '
    r'[+-]\d{4})\] "(?P<request>(?:[^"\\]|\\x[0-9A-F]{2})*)" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>(?:[^"\\]|\\x[0-9A-F]{2})*)" "(?P<ua>(?:[^"\\]|\\x[0-9A-F]{2})*)"$')
RAW_CONTROL = re.compile(rb"[\x00-\x09\x0b-\x1f\x7f]")
JSON_FIELDS = {"time", "client", "method", "path", "query", "protocol", "status", "bytes",
               "duration", "cache", "tier", "route", "upstream_time", "request_id", "referer",
               "user_agent"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def raw_request(port, data, timeout=5.0, body=False):
    """Sends bytes as they are; returns the status code (None if the connection closed
    without one), or (status, raw answer) with body=True."""
    buf = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        # Read the whole answer so that the gateway finishes the request.
        s.settimeout(1.0)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
    m = re.match(rb"HTTP/1\.\d (\d{3})", buf)
    status = int(m.group(1)) if m else None
    return (status, buf) if body else status


# A line is written when its request is released, which may be after the client has
# read the answer and sent its next request: tests find lines by content, or wait for
# each line before the next request, never rely on the order of quick requests.


class LogsTestCase(GatewayTestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="cachegw-logs-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.api = self.track(ExampleAPI())
        self.path = os.path.join(self.dir, "access.log")

    def gateway(self, **env):
        env.setdefault("ACCESS_LOG", self.path)
        return self.track(Gateway(self.api.url, env=env))

    def lines(self, path=None, count=None, timeout=5.0):
        """The lines of the access log file, once there are at least count of them."""
        path = path or self.path

        def read():
            if not os.path.exists(path):
                return []
            with open(path, "rb") as f:
                # The harness's readiness probes (GET /health, /health/cache) are logged too.
                return [line for line in f.read().splitlines()
                        if not any(p in line for p in PROBE_MARKS)]
        if count is not None:
            wait_until(lambda: len(read()) >= count, timeout=timeout,
                       what=f"{count} lines in {path}")
        return read()

    def json_lines(self, count=None, path=None):
        return [json.loads(line) for line in self.lines(path, count)]


PROBE_MARKS = (b" /health ", b'"path":"/health"', b" /health/cache ", b'"path":"/health/cache"')


class CombinedFormatTest(LogsTestCase):
    def test_combined_lines_parse_with_nginx_s_regex(self):
        gw = self.gateway()
        r1 = gw.get("/users/1", headers={"Referer": "http://ref.example/page?a=1",
                                         "User-Agent": "TestAgent/1.0 (x)"})
        self.lines(count=1)
        r2 = gw.get("/users/1")
        self.lines(count=2)
        r3 = gw.req("HEAD", "/users/2")
        self.lines(count=3)
        r4 = gw.get("/status/404")
        self.assertEqual((r1.status, r2.status, r3.status), (200, 200, 200))
        lines = self.lines(count=4)
        self.assertEqual(len(lines), 4, lines)
        parsed = []
        for line in lines:
            m = COMBINED.match(line.decode("ascii"))
            self.assertIsNotNone(m, f"not the combined format: {line!r}")
            parsed.append(m.groupdict())
        first = parsed[0]
        self.assertEqual(first["addr"], "127.0.0.1")
        self.assertEqual(first["user"], "-")
        self.assertEqual(first["request"], "GET /users/1 HTTP/1.1")
        self.assertEqual(first["status"], "200")
        self.assertEqual(int(first["bytes"]), len(r1.body))
        self.assertEqual(first["referer"], "http://ref.example/page?a=1")
        self.assertEqual(first["ua"], "TestAgent/1.0 (x)")
        stamp = datetime.datetime.strptime(first["time"], "%d/%b/%Y:%H:%M:%S %z")
        now = datetime.datetime.now(datetime.timezone.utc)
        self.assertLess(abs((now - stamp).total_seconds()), 60)
        # The hit sends the same body; a HEAD sends none; a missing header is "-".
        self.assertEqual(int(parsed[1]["bytes"]), len(r2.body))
        self.assertEqual(parsed[2]["request"], "HEAD /users/2 HTTP/1.1")
        self.assertEqual(parsed[2]["bytes"], "0")
        self.assertEqual(parsed[3]["status"], str(r4.status))
        self.assertEqual(parsed[3]["referer"], "-")

    def test_a_head_refused_by_libmicrohttpd_still_has_a_status(self):
        # libmicrohttpd refuses a header line without a colon itself (400), before the
        # gateway sees the request: the combined line still has three digits there, as
        # nginx writes for a request it could not read (the JSON line says 0).
        gw = self.gateway()
        status = raw_request(gw.port, b"GET /users/1?n=refused HTTP/1.1\r\nHost: t\r\n"
                                      b"no colon here\r\n\r\n")
        self.assertEqual(status, 400)
        gw.get("/users/1?n=after")
        lines = self.lines(count=2)
        self.assertEqual(len(lines), 2, lines)
        parsed = {}
        for line in lines:
            m = COMBINED.match(line.decode("ascii"))
            self.assertIsNotNone(m, f"not the combined format: {line!r}")
            parsed[m.group("request").split()[1]] = m.group("status")
            # The client is named on both lines, the refused one too.
            self.assertEqual(m.group("addr"), "127.0.0.1", line)
        self.assertEqual(parsed, {"/users/1?n=refused": "400", "/users/1?n=after": "200"})

    def test_old_boolean_value_still_logs_to_stderr(self):
        gw = self.gateway(ACCESS_LOG="true")
        gw.get("/users/3?x=1")
        wait_until(lambda: '"GET /users/3?x=1 HTTP/1.1" 200' in gw.output(),
                   what="a combined line on stderr")
        self.assertFalse(os.path.exists(self.path))

    def test_access_log_does_not_depend_on_log_level(self):
        gw = self.gateway(LOG_LEVEL="error")
        gw.get("/users/4")
        self.assertEqual(len(self.lines(count=1)), 1)
        gw2 = self.gateway(ACCESS_LOG="off", LOG_LEVEL="debug")
        gw2.get("/users/5")
        time.sleep(0.3)
        self.assertNotIn("/users/5 HTTP/1.1", gw2.output())


class JsonFormatTest(LogsTestCase):
    def test_every_field_of_the_json_lines(self):
        gw = self.gateway(ACCESS_LOG_FORMAT="json")
        miss = gw.get("/users/1?x=1", headers={"User-Agent": "ua/1"})
        self.lines(count=1)
        hit = gw.get("/users/1?x=1")
        self.lines(count=2)
        bypass = gw.req("POST", "/echo", body=b"hello")
        self.assertEqual((miss.header("x-cache"), hit.header("x-cache"),
                          bypass.header("x-cache")), ("MISS", "HIT", "BYPASS"))
        recs = self.json_lines(count=3)
        for rec in recs:
            self.assertEqual(set(rec), JSON_FIELDS, rec)
            self.assertRegex(rec["time"], r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
            self.assertEqual(rec["client"], "127.0.0.1")
            self.assertEqual(rec["protocol"], "HTTP/1.1")
            self.assertIsInstance(rec["duration"], float)
            self.assertGreaterEqual(rec["duration"], 0.0)
            self.assertLess(rec["duration"], 10.0)
            self.assertRegex(rec["request_id"], HEX32)
        m, h, b = recs
        self.assertEqual((m["method"], m["path"], m["query"]), ("GET", "/users/1", "x=1"))
        self.assertEqual((m["status"], m["bytes"]), (200, len(miss.body)))
        self.assertEqual((m["cache"], m["tier"]), ("MISS", "none"))
        self.assertEqual(m["route"], "GET /users/:id")
        self.assertIsInstance(m["upstream_time"], float)
        self.assertGreater(m["upstream_time"], 0.0)
        self.assertLessEqual(m["upstream_time"], m["duration"])
        self.assertEqual(m["user_agent"], "ua/1")
        self.assertIsNone(m["referer"])
        self.assertEqual((h["cache"], h["tier"], h["route"]), ("HIT", "memory", "GET /users/:id"))
        self.assertIsNone(h["upstream_time"], "a hit is not forwarded")
        self.assertEqual(h["bytes"], len(hit.body))
        self.assertEqual((b["method"], b["path"], b["cache"], b["tier"]),
                         ("POST", "/echo", "BYPASS", "none"))
        self.assertIsInstance(b["upstream_time"], float)
        self.assertEqual(b["bytes"], len(bypass.body))
        self.assertEqual(len({r["request_id"] for r in recs}), 3, "ids must differ")

    def test_json_to_stdout(self):
        gw = self.gateway(ACCESS_LOG="stdout", ACCESS_LOG_FORMAT="json")
        gw.get("/users/6")

        def rec():
            for line in gw.output().splitlines():
                if line.startswith('{"time"') and '"path":"/users/6"' in line:
                    return json.loads(line)
            return None
        wait_until(lambda: rec() is not None, what="a JSON line on stdout")
        self.assertEqual(rec()["status"], 200)

    def test_stdout_and_stderr_are_the_streams_named(self):
        # The harness merges the two streams; here each goes to its own file, so a line on
        # the wrong one is seen.
        for target, other in (("stdout", "stderr"), ("stderr", "stdout"), ("true", "stdout")):
            with self.subTest(ACCESS_LOG=target):
                files = {n: open(os.path.join(self.dir, f"{target}.{n}"), "w+b")
                         for n in ("stdout", "stderr")}
                for f in files.values():
                    self.addCleanup(f.close)
                port = free_port()
                env = dict(os.environ, ACCESS_LOG=target, LOG_LEVEL="info",
                           POLICIES_DIR=os.path.join(SOURCE_DIR, "policies"),
                           LUA_DIR=os.path.join(SOURCE_DIR, "lua"))
                env.pop("REDIS_URL", None)
                proc = subprocess.Popen([CACHEGW_BIN, "--host", "127.0.0.1", "--port", str(port),
                                         "--upstream", self.api.url], env=env,
                                        stdout=files["stdout"], stderr=files["stderr"])
                self.addCleanup(lambda p=proc: p.poll() is None and (p.kill(), p.wait()))

                def read(name):
                    with open(files[name].name, "rb") as f:
                        return f.read()
                wait_until(lambda: request(port, "GET", "/health", timeout=1).status == 200,
                           what="cachegw /health")
                request(port, "GET", "/users/6?stream=" + target)
                line = b'"GET /users/6?stream=' + target.encode() + b' HTTP/1.1" 200 '
                name = "stderr" if target == "true" else target
                wait_until(lambda: line in read(name), what=f"the access line on {name}")
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=15), 0)
                self.assertNotIn(b"/users/6", read(other))
                self.assertIn(b"stopped cleanly", read("stderr"))  # the application log

    def test_lines_from_many_threads_never_interleave(self):
        gw = self.gateway(ACCESS_LOG_FORMAT="json", WORKERS="4")
        n, per = 8, 40

        def worker(i):
            for k in range(per):
                gw.get(f"/users/{k % 5 + 1}?client={i}&k={k}&pad={'p' * 300}")
        run_concurrently(n, worker)
        recs = self.json_lines(count=n * per)  # json.loads fails on a torn line
        self.assertEqual(len(recs), n * per)
        self.assertEqual({r["status"] for r in recs}, {200})


class RedisTierTest(LogsTestCase):
    """tier=redis: a second gateway (empty memory tier) finds the first one's entry."""

    def test_hit_from_redis_says_so(self):
        redis = RedisServer("plain")
        self.addCleanup(redis.cleanup)
        env = {"REDIS_URL": redis.url(), "ACCESS_LOG_FORMAT": "json"}
        first = self.gateway(**env)
        # The Redis tier is offered once the gateway has read the invalidation records.
        wait_until(lambda: first.health_cache()["backend"] == "redis", timeout=10,
                   what="the first gateway on Redis")
        self.assertEqual(first.get("/users/7").header("x-cache"), "MISS")
        wait_until(lambda: redis.cmd("DBSIZE") > 0,
                   what="the entry in Redis")
        second_path = os.path.join(self.dir, "second.log")
        second = self.gateway(ACCESS_LOG=second_path, **env)
        wait_until(lambda: second.health_cache()["backend"] == "redis", timeout=10,
                   what="the second gateway on Redis")
        r = second.get("/users/7")
        self.assertEqual(r.header("x-cache"), "HIT")
        self.assertIn("detail=redis", r.header("cache-status"))
        self.lines(path=second_path, count=1)
        again = second.get("/users/7")
        recs = self.json_lines(count=2, path=second_path)
        self.assertEqual([(x["cache"], x["tier"]) for x in recs],
                         [("HIT", "redis"), ("HIT", "memory")])
        self.assertIsNone(recs[0]["upstream_time"])
        self.assertEqual(recs[0]["bytes"], len(r.body))
        self.assertEqual(again.status, 200)
        self.assertEqual(self.json_lines(count=1)[0]["tier"], "none")


class RedactionTest(LogsTestCase):
    def test_secret_looking_parameters_are_redacted_by_default(self):
        gw = self.gateway(ACCESS_LOG_FORMAT="json")
        gw.get("/users/1?x=1&access_token=S3CR3T1&Password=S3CR3T2&api_key=S3CR3T3&auth=S3CR3T4"
               "&signature=S3CR3T5&secret=S3CR3T6&y=2&token=")
        rec = self.json_lines(count=1)[0]
        self.assertEqual(rec["query"], "x=1&access_token=***&Password=***&api_key=***&auth=***"
                                       "&signature=***&secret=***&y=2&token=***")
        self.assertNotIn(b"S3CR3T", open(self.path, "rb").read())

    def test_the_list_is_configurable(self):
        gw = self.gateway(ACCESS_LOG_REDACT="ssn,Card")
        gw.get("/users/2?ssn=111-22&card_number=4111&token=visible")
        line = self.lines(count=1)[0].decode()
        self.assertIn("?ssn=***&card_number=***&token=visible ", line)

    def test_an_empty_list_redacts_nothing(self):
        gw = self.gateway(ACCESS_LOG_REDACT="")
        gw.get("/users/2?token=visible")
        self.assertIn("/users/2?token=visible ", self.lines(count=1)[0].decode())


class EscapingTest(LogsTestCase):
    HOSTILE_UA = b"evil\x1b[2J\x1b[H\x07\x7f\xff\"q\\ua"

    def hostile_requests(self, gw):
        # Control bytes in the target are refused (400) and still logged, escaped.
        for target in (b"/users/1\x1b[31mred", b"/users/1?q=\x01\x02", b"/users/1\x7f"):
            status = raw_request(gw.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            self.assertIn(status, (400, None))
        # In header values (refused with 400 too, and logged), and an encoded ESC in the path.
        status = raw_request(gw.port, b"GET /users/1 HTTP/1.1\r\nHost: t\r\nUser-Agent: " +
                             self.HOSTILE_UA + b"\r\nReferer: a\"b\r\nConnection: close\r\n\r\n")
        gw.get("/users/1%1B%5B2J")
        self.assertEqual(status, 400)

    def test_combined_escapes_as_nginx_does(self):
        gw = self.gateway()
        self.hostile_requests(gw)
        lines = self.lines(count=5)
        data = b"\n".join(lines)
        self.assertEqual(RAW_CONTROL.findall(data), [], data)
        self.assertTrue(all(b < 0x80 for b in data), "bytes >= 0x80 must be escaped")
        for line in lines:
            self.assertIsNotNone(COMBINED.match(line.decode("ascii")), line)
        text = data.decode("ascii")
        self.assertIn(r'"a\x22b" "evil\x1B[2J\x1B[H\x07\x7F\xFF\x22q\x5Cua"', text)
        self.assertIn("/users/1%1B%5B2J", text)

    def test_json_escapes_and_still_parses(self):
        gw = self.gateway(ACCESS_LOG_FORMAT="json")
        self.hostile_requests(gw)
        lines = self.lines(count=5)
        data = b"\n".join(lines)
        self.assertEqual(RAW_CONTROL.findall(data), [], data)
        recs = [json.loads(line) for line in lines]
        refused = [r for r in recs if r["status"] == 400]
        self.assertGreaterEqual(len(refused), 1)
        ua = [r for r in recs if r["user_agent"] and "evil" in r["user_agent"]]
        # Every byte comes back (non-ASCII as its Latin-1 character).
        self.assertEqual([r["user_agent"] for r in ua], [self.HOSTILE_UA.decode("latin-1")])
        self.assertEqual((ua[0]["referer"], ua[0]["status"]), ('a"b', 400))
        self.assertIn("/users/1\x1b[31mred", [r["path"] for r in refused])


class RequestIdTest(LogsTestCase):
    def echo(self, gw, headers=None):
        r = gw.req("POST", "/echo", headers=headers, body=b"x")
        self.assertEqual(r.status, 200)
        seen = {k.lower(): v for k, v in r.json()["headers"].items()}
        return seen.get("x-request-id")

    def test_taken_from_the_client_and_forwarded(self):
        gw = self.gateway(ACCESS_LOG_FORMAT="json")
        self.assertEqual(self.echo(gw, {"X-Request-Id": "req-1234_abc.DEF:9"}),
                         "req-1234_abc.DEF:9")
        long_ok = "a" * 128
        self.assertEqual(self.echo(gw, {"X-Request-Id": long_ok}), long_ok)
        recs = self.json_lines(count=2)
        self.assertEqual(sorted(r["request_id"] for r in recs), sorted(["req-1234_abc.DEF:9",
                                                                        long_ok]))

    def test_generated_otherwise_and_forwarded(self):
        gw = self.gateway(ACCESS_LOG_FORMAT="json")
        sent = [None, "a" * 129, "has space", 'quote"d', "semi;colon", ""]
        upstream_saw = []
        for value in sent:
            headers = {"X-Request-Id": value} if value is not None else None
            upstream_saw.append(self.echo(gw, headers))
        recs = self.json_lines(count=len(sent))
        for value, saw in zip(sent, upstream_saw):
            with self.subTest(sent=value):
                self.assertRegex(saw or "", HEX32)
        # The log and the upstream agree, and every id is new.
        self.assertEqual(sorted(r["request_id"] for r in recs), sorted(upstream_saw))
        self.assertEqual(len(set(upstream_saw)), len(sent))

    def test_two_ids_are_replaced_by_one(self):
        gw = self.gateway(ACCESS_LOG_FORMAT="json")
        status, answer = raw_request(
            gw.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Request-Id: one\r\n"
            b"X-Request-Id: two\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx", body=True)
        self.assertEqual(status, 200)
        rec = self.json_lines(count=1)[0]
        self.assertRegex(rec["request_id"], HEX32)
        # The upstream saw exactly that one id (its /echo lists a repeated field once
        # per name, so the raw answer shows neither "one" nor "two").
        echoed = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        seen = {k.lower(): v for k, v in echoed["headers"].items()}
        self.assertEqual(seen["x-request-id"], rec["request_id"])


class ReopenTest(LogsTestCase):
    def test_sigusr1_reopens_after_logrotate_renames_the_file(self):
        gw = self.gateway()
        gw.get("/users/1?n=before")
        self.lines(count=1)
        rotated = self.path + ".1"
        os.rename(self.path, rotated)  # logrotate, create mode
        gw.get("/users/1?n=between")  # still the old file, now named .1
        self.lines(path=rotated, count=2)
        self.assertFalse(os.path.exists(self.path))
        gw.send_signal(signal.SIGUSR1)
        wait_until(lambda: os.path.exists(self.path), what="the access log to be recreated")
        gw.get("/users/1?n=after")
        new = self.lines(count=1)
        old = self.lines(path=rotated)
        self.assertEqual(len(new), 1, new)
        self.assertIn(b"n=after", new[0])
        self.assertEqual(len(old), 2, old)
        self.assertIn(b"n=before", old[0])
        self.assertIn(b"n=between", old[1])
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o640)
        self.assertIn("access log reopened", gw.output())
        self.assertTrue(gw.alive())

    def test_reopen_failure_keeps_the_old_file(self):
        sub = os.path.join(self.dir, "sub")
        os.mkdir(sub)
        path = os.path.join(sub, "access.log")
        gw = self.gateway(ACCESS_LOG=path)
        gw.get("/users/1?n=1")
        self.lines(path=path, count=1)
        moved = os.path.join(self.dir, "moved")
        os.rename(sub, moved)  # the directory is gone: the reopen cannot create the file
        gw.send_signal(signal.SIGUSR1)
        wait_until(lambda: "still writing to the old file" in gw.output(), what="the error")
        gw.get("/users/1?n=2")
        self.assertEqual(len(self.lines(path=os.path.join(moved, "access.log"), count=2)), 2)
        self.assertTrue(gw.alive())


class ApplicationLogTest(LogsTestCase):
    def test_log_format_json_lines_parse(self):
        gw = self.gateway(ACCESS_LOG="off", LOG_FORMAT="json", LOG_LEVEL="debug")
        gw.get("/users/1")
        raw_request(gw.port, b"GET /users/1\x1b[2J HTTP/1.1\r\nHost: t\r\n\r\n")
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloading policies" in gw.output(), what="the reload line")
        gw.stop()
        out = gw.output()
        lines = [line for line in out.splitlines() if line.strip()]
        self.assertGreater(len(lines), 3)
        levels = set()
        for line in lines:
            rec = json.loads(line)
            self.assertEqual(set(rec), {"time", "level", "msg"}, line)
            self.assertRegex(rec["time"], r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
            self.assertIn(rec["level"], ("debug", "info", "warn", "error"))
            levels.add(rec["level"])
        self.assertIn("info", levels)
        self.assertIn("debug", levels)
        self.assertTrue(any("stopped cleanly" in json.loads(l)["msg"] for l in lines))


class BadValuesTest(unittest.TestCase):
    def check(self, env):
        full = dict(os.environ)
        full.pop("REDIS_URL", None)
        full.update({"POLICIES_DIR": os.path.join(SOURCE_DIR, "policies"),
                     "LUA_DIR": os.path.join(SOURCE_DIR, "lua")})
        full.update(env)
        return subprocess.run([CACHEGW_BIN, "--check"], env=full, capture_output=True,
                              timeout=30, cwd=tempfile.gettempdir())

    def test_invalid_values_exit_2_naming_the_option(self):
        cases = [({"ACCESS_LOG": "/nonexistent-dir-cachegw/access.log"}, "ACCESS_LOG"),
                 ({"ACCESS_LOG": "stdrr"}, "ACCESS_LOG"),
                 ({"ACCESS_LOG_FORMAT": "xml"}, "ACCESS_LOG_FORMAT"),
                 ({"ACCESS_LOG_REDACT": "token key"}, "ACCESS_LOG_REDACT"),
                 ({"ACCESS_LOG_REDACT": "token,,key"}, "ACCESS_LOG_REDACT"),
                 ({"LOG_FORMAT": "yaml"}, "LOG_FORMAT")]
        for env, name in cases:
            with self.subTest(env=env):
                p = self.check(env)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(name, p.stderr.decode())

    def test_valid_values_pass_the_check(self):
        for env in ({"ACCESS_LOG": "stdout", "ACCESS_LOG_FORMAT": "JSON", "LOG_FORMAT": "json"},
                    {"ACCESS_LOG": "off", "ACCESS_LOG_REDACT": ""},
                    {"ACCESS_LOG": "false"}):
            with self.subTest(env=env):
                p = self.check(env)
                self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main()
