-- gw.normalize_query (src/policy/query_norm.c) against the pure-Lua reference
-- (url.normalize_query_lua) over a generated corpus, and url.normalize_query's dispatch.
require "helper"
local gw = require "cachegw_helpers"
local url = require "gateway.url"
local keys = require "gateway.keys"

local R = math.random
local concat = table.concat

-- Pieces of names and values: unreserved bytes, well-formed and malformed escapes (both
-- hex cases), '+', '=', '*', spaces, control and high bytes, and the bytes of ignore
-- patterns, so that encoded spellings of ignored names ("utm%5Fx") turn up.
local PIECES = { "a", "b", "z", "A", "0", "9", "-", ".", "_", "~", "utm", "utm_", "x_",
    "fbclid", "gclid", "session", "%41", "%61", "%7e", "%7E", "%5F", "%5f", "%2B", "%2b",
    "%20", "%25", "%zz", "%", "%2", "%g1", "%%41", "+", "++", "=", "==", "*", " ", ",", "/",
    "?", "#", ";", "\0", "\t", "\x7f", "\xc3\xa9", "\xff", "\x80", "%C3%A9", "%c3%a9",
    "%FF", "%00", "%0a", "%3D", "%26", "%2A" }
local PLAIN = {} -- the pieces without '%', for queries on the simple path
for _, p in ipairs(PIECES) do
    if not p:find("%", 1, true) then PLAIN[#PLAIN + 1] = p end
end

local function component(pieces, max)
    local t = {}
    for i = 1, R(0, max) do t[i] = pieces[R(#pieces)] end
    return concat(t)
end

-- Names repeat often (a small pool), so sorting meets ties and prefixes of each other.
local NAME_POOL = { "a", "b", "a-b", "aa", "utm_source", "utm%5Fsource", "utm+x", "utm x",
    "fbclid", "gclid", "fbclid2", "session", "x_y", "x%5Fz", "k%7E1", "k~1", "", "%41",
    "A", "q", "q+", "q%20", "q%2B", "\xc3\xa9", "%C3%A9", "*" }

local function query(nparams, plain)
    local pieces = plain and PLAIN or PIECES
    local parts = {}
    for i = 1, nparams do
        local name
        if R(3) == 1 then
            name = NAME_POOL[R(#NAME_POOL)]
            if plain and name:find("%", 1, true) then name = "p" end
        else
            name = component(pieces, 4)
        end
        local r = R(6)
        if r == 1 then
            parts[i] = name -- "a": value ""
        elseif r == 2 then
            parts[i] = name .. "=" -- "a=": value ""
        else
            parts[i] = name .. "=" .. component(pieces, 5)
        end
        if R(8) == 1 then parts[i] = parts[i] .. "&" end -- an empty pair follows
    end
    local qs = concat(parts, "&")
    if R(10) == 1 then qs = "&" .. qs end
    if R(10) == 1 then qs = qs .. "&&" end
    return qs
end

local IGNORE_LISTS = {
    {},
    keys.default_ignore(),
    { "session", "x_*" },
    { "*" },
    { "", "a", "utm x", "q+", "\xc3\xa9", "k~1" },
    { "utm_*", "utm*", "a*", "fbclid", "fbclid", "zz" },
    { "%41", "A", "utm%5F*", "q%2B" },
}

local function params_count()
    local r = R(20)
    if r <= 12 then return R(0, 8) end
    if r <= 17 then return R(9, 128) end
    return R(240, 300) -- around the bound of 256
end

describe("gw.normalize_query (C) against url.normalize_query_lua", function()
    it("agrees on a generated corpus of 6,000 queries, errors included", function()
        math.randomseed(20240914)
        local compiled = {}
        for i, list in ipairs(IGNORE_LISTS) do
            compiled[i] = { c = gw.query_ignore(list), lua = url.compile_ignore(list) }
        end
        local errors, simple, checked = 0, 0, 0
        for n = 1, 6000 do
            local plain = R(4) == 1
            local qs = query(params_count(), plain)
            local ign = compiled[R(#compiled)]
            local ok_lua, want = pcall(url.normalize_query_lua, qs, ign.lua)
            local ok_c, got = pcall(gw.normalize_query, qs, ign.c)
            if ok_lua ~= ok_c or want ~= got then
                error(("query %d differs: %q\n lua: %s %q\n c:   %s %q"):format(
                    n, qs, tostring(ok_lua), tostring(want), tostring(ok_c), tostring(got)))
            end
            -- The dispatching entry point gives the same answer.
            local ok_d, via = pcall(url.normalize_query, qs, ign.lua)
            assert.equal(ok_lua, ok_d)
            assert.equal(want, via)
            if not ok_lua then errors = errors + 1 end
            if not qs:find("%", 1, true) then simple = simple + 1 end
            checked = checked + 1
        end
        -- The corpus really reaches the error and the simple path.
        assert.is_true(errors > 100, "errors: " .. errors)
        assert.is_true(simple > 1000, "simple: " .. simple)
        assert.equal(6000, checked)
    end)

    it("raises the reference's message past 256 params, counting ignored ones", function()
        local list = {}
        for i = 1, 256 do list[i] = "utm_" .. i .. "=1" end
        local at_bound = concat(list, "&")
        local ign = gw.query_ignore(keys.default_ignore())
        assert.equal("", gw.normalize_query(at_bound, ign))
        assert.equal("", gw.normalize_query(at_bound .. "&&&", ign)) -- empty pairs are free
        local ok, err = pcall(gw.normalize_query, at_bound .. "&a=1", ign)
        assert.is_false(ok)
        assert.equal("query string has more than 256 parameters", err)
        local ok_lua, err_lua = pcall(url.normalize_query_lua, at_bound .. "&a=1",
            url.compile_ignore(keys.default_ignore()))
        assert.is_false(ok_lua)
        assert.equal(err_lua, err)
    end)

    it("matches ignore patterns on the decoded name, '+' as space (not on the simple path)",
        function()
            local ign = gw.query_ignore { "utm x", "s_*" }
            assert.equal("b=%25", gw.normalize_query("utm+x=1&b=%25&s%5Fid=2", ign))
            -- without any '%' the name is matched as sent: "utm+x" is not "utm x"
            assert.equal("b=1&utm+x=1", gw.normalize_query("utm+x=1&b=1&s_id=2", ign))
        end)

    it("keeps '+', '%20' and '%2B' apart and upper-cases escapes", function()
        assert.equal("q=a+b&r=a%20b&s=a%2Bb&t=%C3%A9&u=%25zz",
            gw.normalize_query("u=%zz&t=%c3%a9&s=a%2bb&r=a%20b&q=a+b"))
    end)

    it("refuses bad arguments with a clear error", function()
        assert.equal("", gw.normalize_query(nil))
        assert.equal("", gw.normalize_query(""))
        local ok, err = pcall(gw.normalize_query, "a=1", { "utm_*" })
        assert.is_false(ok)
        assert.matches("cachegw.query_ignore expected", err, 1, true)
        ok, err = pcall(gw.normalize_query, {})
        assert.is_false(ok)
        assert.matches("string expected", err, 1, true)
        ok, err = pcall(gw.query_ignore, { "a", 5 })
        assert.is_false(ok)
        assert.matches("entry 2 must be a string, not number", err, 1, true)
        ok, err = pcall(gw.query_ignore, "utm_*")
        assert.is_false(ok)
        assert.matches("table expected", err, 1, true)
    end)

    it("keeps the ignore object opaque", function()
        local ign = gw.query_ignore { "a" }
        assert.equal("userdata", type(ign))
        assert.is_not_table(getmetatable(ign))
        assert.is_false(pcall(setmetatable, ign, {}))
    end)
end)

describe("url.normalize_query dispatch", function()
    -- A fresh gateway.url over a spy of the helpers, so the test sees which side ran.
    local function load_url_with_spy()
        local calls = { normalize = 0, ignore = 0 }
        local spy = {
            normalize_query = function(...)
                calls.normalize = calls.normalize + 1
                return gw.normalize_query(...)
            end,
            query_ignore = function(...)
                calls.ignore = calls.ignore + 1
                return gw.query_ignore(...)
            end,
        }
        local saved_helpers, saved_url = package.loaded.cachegw_helpers,
            package.loaded["gateway.url"]
        package.loaded.cachegw_helpers, package.loaded["gateway.url"] = spy, nil
        local ok, fresh = pcall(require, "gateway.url")
        package.loaded.cachegw_helpers, package.loaded["gateway.url"] = saved_helpers, saved_url
        assert(ok, fresh)
        return fresh, calls
    end

    it("runs in C for compile_ignore predicates and for no ignore list", function()
        local u, calls = load_url_with_spy()
        local pred = u.compile_ignore(keys.default_ignore())
        assert.equal(1, calls.ignore)
        assert.equal("a=1", u.normalize_query("utm_source=x&a=1", pred))
        assert.equal("a=1&utm_source=x", u.normalize_query("utm_source=x&a=1"))
        assert.equal(2, calls.normalize)
        assert.equal("", u.normalize_query(""))
        assert.equal(2, calls.normalize)
    end)

    it("uses the reference for other predicates and non-string lists", function()
        local u, calls = load_url_with_spy()
        local function odd(name) return #name % 2 == 1 end
        assert.equal("ab=2", u.normalize_query("a=1&ab=2&abc=3", odd))
        -- a number entry never matches (it is not a string key): the reference decides
        local pred = u.compile_ignore { 5, "b" }
        assert.equal(0, calls.ignore)
        assert.equal("5=1", u.normalize_query("5=1&b=2", pred))
        assert.equal(0, calls.normalize)
    end)
end)
