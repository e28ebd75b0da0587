"""Issue 8, items 10, 19 and 21: hostile or fragile Lua in policies.

- 10: a pathological pattern in a key function must fail the decision within
  about the budget's time (the request is answered uncached) and other routes
  keep their latency, with a single worker.
- 19: a Cookie of thousands of spaces on a route that reads req.cookie is
  answered within a second and /health stays responsive.
- 21: one policy file cannot change another file's cache key through the
  metatables of req, json.array or json.null.
"""

import threading
import time
import unittest

from secharness import SecTestCase, exchange, get_request

PATTERN_POLICY = {"evil.lua": '''
route "GET /evil" {
    key = function(req)
        string.find(string.rep("a", 30000), string.rep("a*", 30) .. "b")
        return "evil"
    end,
    ttl = 60,
}
route "GET /evilq" {
    key = function(req)
        local v = req.query.q or ""
        string.find(v, string.rep("a*", 30) .. "b")
        return "evilq"
    end,
    ttl = 60,
}
route "GET /ok" { key = "ok", ttl = 60 }
'''}

COOKIE_POLICY = {"cookie.lua": '''
route "GET /ck" {
    key = function(req) return "ck:" .. gw.hash(req.header.cookie or "") .. ":" ..
                                (req.cookie.session or "") end,
    per_user = true,
    ttl = 60,
}
'''}

METATABLE_POLICY = {
    "a_jobs.lua": '''
route "GET /jobs" {
    key = function(req) return "jobs:" .. (req.query.page or "1") end,
    ttl = 60,
}
route "GET /jobsj" {
    key = function(req)
        local t = json.array({})
        t[1] = req.query.page or "1"
        return "jobsj:" .. json.encode(t) .. (tostring(json.null) == "json.null" and "" or "!")
    end,
    ttl = 60,
}
''',
    "b_evil.lua": '''
local function tamper(req)
    pcall(function()
        local mt = getmetatable(req)
        if type(mt) == "table" then
            mt.__index = function(t, k)
                if k == "query" then return { page = "1" } end
            end
        end
    end)
    pcall(function()
        local mt = getmetatable(json.array({}))
        if type(mt) == "table" then mt.__newindex = function() end end
    end)
    pcall(function()
        local mt = getmetatable(json.null)
        if type(mt) == "table" then mt.__tostring = function() return "evil" end end
    end)
    pcall(function() setmetatable(req, { __index = function() return { page = "1" } end }) end)
end
tamper({})
route "GET /evil21" {
    key = function(req) tamper(req); return "evil21" end,
    ttl = 60,
}
'''}


class PatternBudgetTest(SecTestCase):
    """Item 10."""

    def test_pathological_pattern_fails_fast_and_other_routes_stay_fast(self):
        gw = self.start(PATTERN_POLICY, workers=1)
        self.assertEqual(self.get(gw, "/ok").status, 200)
        # The query fits the target limit (MAX_HEADER_SIZE, 16 KiB by default).
        for path in ("/evil", "/evilq?q=" + "a" * 12000):
            with self.subTest(path=path):
                t0 = time.monotonic()
                try:
                    r = self.get(gw, path, timeout=5)
                except Exception as exc:  # noqa: BLE001 - a hang is the failure
                    self.fail(f"{path} was not answered within 5 s: {exc!r}")
                took = time.monotonic() - t0
                self.assertLess(took, 1.5, f"{path} took {took:.2f}s")
                self.assertTrue(r.status == 200 or r.status >= 500, r)
                self.assertNotEqual(r.header("x-cache"), "HIT", r)
                t0 = time.monotonic()
                ok = self.get(gw, "/ok", timeout=5)
                self.assertEqual(ok.status, 200)
                self.assertLess(time.monotonic() - t0, 0.5, "the next request was slow")


class CookieParserTest(SecTestCase):
    """Item 19."""

    def test_cookie_of_spaces_is_answered_quickly(self):
        gw = self.start(COOKIE_POLICY, workers=2, env={"SHUTDOWN_TIMEOUT_MS": "3000"})
        # libmicrohttpd trims the ends of a value, so the spaces sit between two cookies.
        cookies = ["a=1;" + " " * 8000 + ";b=2", "a=1;" + " " * 8000 + "x;session=s",
                   "session=x;" + " " * 8000 + "=;c=d"]
        results = {}

        def hit(i, cookie):
            t0 = time.monotonic()
            try:
                r, _ = exchange(gw.port, get_request("/ck", [("Cookie", cookie)]), timeout=8)
            except OSError:
                r = None
            results[i] = (r, time.monotonic() - t0)
        threads = [threading.Thread(target=hit, args=(i, c)) for i, c in enumerate(cookies)]
        self.sent(len(cookies))
        for t in threads:
            t.start()
        for _ in range(3):
            time.sleep(0.3)
            t0 = time.monotonic()
            try:
                h = self.get(gw, "/health", timeout=3)
            except OSError as exc:
                self.fail(f"/health did not answer while cookies parsed: {exc!r}")
            self.assertEqual(h.status, 200)
            self.assertLess(time.monotonic() - t0, 1.0, "/health was slow while cookies parsed")
        for t in threads:
            t.join(10)
        for i, c in enumerate(cookies):
            with self.subTest(cookie=c[:12]):
                r, took = results.get(i, (None, None))
                self.assertIsNotNone(r, "no answer")
                self.assertLess(took, 1.0, f"cookie took {took:.2f}s")
                self.assertTrue(r.status == 200 or r.status >= 500, r)


class MetatableIsolationTest(SecTestCase):
    """Item 21."""

    def test_one_file_cannot_change_another_files_key(self):
        gw = self.start(METATABLE_POLICY, workers=1)
        for path in ("/jobs", "/jobsj"):
            with self.subTest(path=path):
                first = self.get(gw, path + "?page=1")
                self.assertEqual(first.json()["target"], path + "?page=1")
                for _ in range(3):
                    self.assertEqual(self.get(gw, "/evil21").status, 200)
                r = self.get(gw, path + "?page=3")
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["target"], path + "?page=3",
                                 f"{path}?page=3 was answered with another page: {r}")
                self.assertEqual(self.refl.count(target=path + "?page=3"), 1)


if __name__ == "__main__":
    unittest.main()
