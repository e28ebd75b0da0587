-- The cache module (src/policy/lua_cache.c) loaded as the `cache` Lua module: the same C code the
-- gateway exposes to policies, with its own memory tier (and Redis when REDIS_URL is set).
local cache = require "cache"

-- Unique keys per run, so a shared Redis (REDIS_URL) never leaks state between runs.
local run = string.format("spec%d%d:", os.time(), math.random(1, 1e9))
local function k(name) return run .. name end

local function sleep(s) os.execute("sleep " .. s) end

describe("cache module", function()
    it("gets what it sets, and nil for unknown keys", function()
        assert.is_true(cache.set(k("a"), "hello", 60))
        assert.equal("hello", cache.get(k("a")))
        assert.is_nil(cache.get(k("never-set")))
    end)

    it("keeps binary values intact", function()
        local v = "a\0b\255\n"
        assert.is_true(cache.set(k("bin"), v, 60))
        assert.equal(v, cache.get(k("bin")))
    end)

    it("forgets values after their ttl", function()
        assert.is_true(cache.set(k("short"), "x", 0.2))
        assert.equal("x", cache.get(k("short")))
        sleep(0.35)
        assert.is_nil(cache.get(k("short")))
    end)

    it("treats ttl 0 as 'do not keep'", function()
        cache.set(k("zero"), "x", 60)
        assert.is_true(cache.set(k("zero"), "y", 0))
        assert.is_nil(cache.get(k("zero")))
    end)

    it("deletes", function()
        cache.set(k("d"), "x", 60)
        assert.is_true(cache.delete(k("d")))
        assert.is_nil(cache.get(k("d")))
    end)

    it("mget returns present keys only; mset stores a table", function()
        assert.is_true(cache.mset({ [k("m1")] = "one", [k("m2")] = "two" }, 60))
        local got = cache.mget({ k("m1"), k("missing"), k("m2") })
        assert.same({ [k("m1")] = "one", [k("m2")] = "two" }, got)
        assert.same({}, cache.mget({}))
    end)

    it("invalidate_prefix drops every key under the prefix, and only those", function()
        cache.set(k("user:1"), "a", 60)
        cache.set(k("user:2"), "b", 60)
        cache.set(k("post:1"), "c", 60)
        assert.is_true(cache.invalidate_prefix(k("user:")))
        assert.is_nil(cache.get(k("user:1")))
        assert.is_nil(cache.get(k("user:2")))
        assert.equal("c", cache.get(k("post:1")))
        -- Values stored after the invalidation are visible again.
        cache.set(k("user:1"), "new", 60)
        assert.equal("new", cache.get(k("user:1")))
    end)

    it("stats has the /health/cache shape", function()
        local s = cache.stats()
        assert.is_number(s.hits)
        assert.is_number(s.misses)
        assert.is_number(s.hit_rate_percent)
        assert.is_boolean(s.redis_available)
        assert.is_number(s.memory_cache_size)
        local before = s.hits
        cache.set(k("st"), "x", 60)
        cache.get(k("st"))
        assert.equal(before + 1, cache.stats().hits)
        assert.is_true(cache.stats().hit_rate_percent > 0)
        assert.is_true(cache.stats().memory_cache_size >= 1)
    end)

    describe("cached", function()
        it("calls fn once per distinct arguments", function()
            local calls = 0
            local f = cache.cached(k("sq"), 60, function(x)
                calls = calls + 1
                return tostring(x * x)
            end)
            assert.equal("16", f(4))
            assert.equal("16", f(4))
            assert.equal(1, calls)
            assert.equal("25", f(5))
            assert.equal(2, calls)
            assert.equal("16", f(4))
            assert.equal(2, calls)
        end)

        it("tells argument types apart and keys tables by content", function()
            local calls = 0
            local f = cache.cached(k("ty"), 60, function(...)
                calls = calls + 1
                return tostring(calls)
            end)
            local a = f(1)
            assert.are_not.equal(a, f("1"))
            assert.equal(2, calls)
            f({ b = 2, a = 1 })
            f({ a = 1, b = 2 })
            assert.equal(3, calls)
            f("x", nil)
            f("x")
            assert.equal(5, calls)
        end)

        it("stores tables as JSON and returns them decoded", function()
            local calls = 0
            local f = cache.cached(k("tbl"), 60, function(id)
                calls = calls + 1
                return { id = id, tags = { "a", "b" } }
            end)
            assert.same({ id = 7, tags = { "a", "b" } }, f(7))
            assert.same({ id = 7, tags = { "a", "b" } }, f(7))
            assert.equal(1, calls)
        end)

        it("does not cache nil results", function()
            local calls = 0
            local f = cache.cached(k("nil"), 60, function()
                calls = calls + 1
                return nil
            end)
            assert.is_nil(f())
            assert.is_nil(f())
            assert.equal(2, calls)
        end)

        it("hashes long argument lists into a bounded key", function()
            local calls = 0
            local f = cache.cached(k("long"), 60, function(s)
                calls = calls + 1
                return #s
            end)
            local big = string.rep("x", 2000)
            assert.equal(2000, f(big))
            assert.equal(2000, f(big))
            assert.equal(1, calls)
        end)

        it("refuses bad arguments", function()
            assert.has_error(function() cache.cached("", 1, print) end)
            assert.has_error(function() cache.cached("p", -1, print) end)
            assert.has_error(function() cache.cached("p", 1, "nope") end)
            local f = cache.cached(k("fnarg"), 60, function() return "x" end)
            assert.has_error(function() f(print) end)
        end)
    end)

    describe("misuse raises", function()
        it("on bad keys", function()
            assert.has_error(function() cache.get(nil) end)
            assert.has_error(function() cache.get(42) end)
            assert.has_error(function() cache.get("") end)
            assert.has_error(function() cache.get(string.rep("k", 513)) end)
            assert.has_error(function() cache.get("a\0b") end)
            assert.has_no_error(function() cache.get(string.rep("k", 512)) end)
            assert.has_error(function() cache.delete({}) end)
            assert.has_error(function() cache.invalidate_prefix("") end)
        end)

        it("on bad values and ttls", function()
            assert.has_error(function() cache.set(k("v"), 42, 10) end)
            assert.has_error(function() cache.set(k("v"), {}, 10) end)
            assert.has_error(function() cache.set(k("v"), "x") end)
            assert.has_error(function() cache.set(k("v"), "x", -1) end)
            assert.has_error(function() cache.set(k("v"), "x", "10") end)
            assert.has_error(function() cache.set(k("v"), "x", 0 / 0) end)
            assert.has_error(function() cache.set(k("v"), "x", math.huge) end)
        end)

        it("on bad mget / mset arguments", function()
            assert.has_error(function() cache.mget("a") end)
            assert.has_error(function() cache.mget({ "a", 2 }) end)
            assert.has_error(function() cache.mset({ [k("x")] = 1 }, 10) end)
            assert.has_error(function() cache.mset({ "v" }, 10) end)
            assert.has_error(function() cache.mset({ [k("x")] = "v" }) end)
            local keys = {}
            for i = 1, 1025 do keys[i] = "k" .. i end
            assert.has_error(function() cache.mget(keys) end)
        end)
    end)

    describe("expected failures return nil and a message", function()
        it("for a value over MAX_VALUE_SIZE", function()
            local ok, err = cache.set(k("huge"), string.rep("x", 2 * 1024 * 1024), 60)
            assert.is_nil(ok)
            assert.matches("too large", err)
            assert.is_nil(cache.get(k("huge")))
            local ok2, err2 = cache.mset({ [k("huge2")] = string.rep("x", 2 * 1024 * 1024),
                                          [k("small")] = "s" }, 60)
            assert.is_nil(ok2)
            assert.matches("too large", err2)
            assert.is_nil(cache.get(k("small"))) -- all or nothing
        end)
    end)
end)
