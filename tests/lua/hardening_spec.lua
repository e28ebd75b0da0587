-- Issue 8 (the Lua library's parts): linear parsing of client data (items 14, 19), shared
-- metatables that policies cannot change (item 21), credentials (items 11, 17).
local helper = require "helper"
local url = require "gateway.url"
local keys = require "gateway.keys"
local json = require "gateway.json"
local policy = require "gateway.policy"

local DEFAULT = url.compile_ignore(keys.default_ignore())

-- Seconds of CPU fn() takes.
local function cost(fn)
    local t0 = os.clock()
    fn()
    return os.clock() - t0
end

describe("client data is parsed in linear time", function()
    local spaces = string.rep(" ", 8000)

    it("parses cookies like before", function()
        local c = policy.parse_cookies(" a=1; b = 2 ;c=x=y; ;=z; d; a=3;e= \t; f=\"q\"")
        assert.same({ a = "1", b = "2", c = "x=y", e = "", f = '"q"' }, c)
        assert.same({}, policy.parse_cookies(""))
        assert.same({ sid = "abc" }, policy.parse_cookies("sid=abc"))
    end)

    it("parses cookies made of 8,000+ spaces fast (item 19)", function()
        local hostile = {
            spaces,
            "a=" .. spaces .. "x" .. spaces,
            spaces .. "=" .. spaces,
            "x" .. spaces .. "y=" .. spaces .. "z" .. spaces .. ";",
            string.rep(" ;", 8000) .. "=",
            string.rep("a", 8000) .. spaces .. "=1",
            string.rep(";", 16000) .. "k=v",
        }
        for _, h in ipairs(hostile) do
            local t = cost(function() policy.parse_cookies(h) end)
            assert.is_true(t < 0.05, ("%.3f s for a %d-byte cookie"):format(t, #h))
        end
        assert.same({ a = "x" }, policy.parse_cookies("a=" .. spaces .. "x" .. spaces))
        assert.same({ k = "v" }, policy.parse_cookies(string.rep(";", 16000) .. "k=v"))
    end)

    it("reads req.cookie of a hostile header fast through a policy", function()
        local set = helper.load_source([[
            route "GET /me" { per_user = true, key = function(req)
                return "me:" .. (req.cookie.session or "none") end }
        ]])
        local d
        local t = cost(function()
            d = helper.decide(set, "GET /me", { cookie = "session=" .. spaces .. "s1" .. spaces })
        end)
        assert.equal("me:s1", d.key)
        assert.is_true(t < 0.05)
    end)

    it("parses queries of 8,000+ spaces and separators fast (items 14, 19)", function()
        local hostile = {
            "q=" .. spaces,
            string.rep("&", 16000) .. "a=1",
            string.rep("a&", 200) .. "=",
            "q=" .. string.rep("%20", 4000),
            "q=" .. string.rep("+", 8000),
        }
        for _, qs in ipairs(hostile) do
            local t = cost(function()
                url.normalize_query(qs, DEFAULT)
                url.query_table(qs)
                url.parse_query(qs)
            end)
            assert.is_true(t < 0.05, ("%.3f s for a %d-byte query"):format(t, #qs))
        end
    end)

    it("parses a Cache-Control header of 8,000+ spaces fast", function()
        local cachecontrol = require "gateway.cachecontrol"
        local t = cost(function()
            cachecontrol.parse("max-age" .. spaces .. "=" .. spaces .. "1" .. spaces .. ",")
            cachecontrol.parse(string.rep(" ,", 8000) .. "no-store")
            cachecontrol.parse('private="' .. spaces .. '"')
        end)
        assert.is_true(t < 0.05)
    end)

    it("bounds the parameter count and keeps long queries cheap (item 14)", function()
        local many = {}
        for i = 1, url.MAX_PARAMS + 1 do many[i] = "p" .. i .. "=" .. i end
        local qs = table.concat(many, "&")
        for _, f in ipairs { url.normalize_query, url.query_table, url.parse_query } do
            local ok, err = pcall(f, qs, DEFAULT)
            assert.is_false(ok)
            assert.equal("query string has more than 256 parameters", err)
        end
        -- 128 params (the C side's bound), reversed and percent-encoded: about the cost
        -- of a few short queries, not fifty.
        local list = {}
        for i = 128, 1, -1 do list[#list + 1] = ("n%%%02X%d=v%%20%d"):format(65 + i % 26, i, i) end
        local long = table.concat(list, "&")
        local short = "page=2&sort=name"
        local n = 200
        local t_long = cost(function()
            for i = 1, n do url.normalize_query(long .. "&i=" .. i, DEFAULT) end
        end) / n
        local t_short = cost(function()
            for i = 1, n do url.normalize_query(short .. "&i=" .. i, DEFAULT) end
        end) / n
        print(("\nnormalize_query: 128 encoded params %.1f us, 3 params %.1f us"):format(
            t_long * 1e6, t_short * 1e6))
        assert.is_true(t_long < 0.002)
    end)
end)

describe("shared metatables cannot be changed (item 21)", function()
    it("hides the request metatable", function()
        local set = helper.load_source([[
            route "GET /peek" { key = function(req) return type(getmetatable(req)) end }
            route "GET /swap" { key = function(req)
                local ok = pcall(setmetatable, req, { __index = function() return "x" end })
                return tostring(ok) end }
        ]])
        assert.equal("string", helper.decide(set, "GET /peek").key)
        assert.equal("false", helper.decide(set, "GET /swap").key)
    end)

    it("hides json's metatables and freezes json.null", function()
        local arr = json.array {}
        assert.is_not_table(getmetatable(arr))
        assert.is_true(json.is_array(arr))
        assert.equal("[]", json.encode(arr))
        assert.is_false(pcall(setmetatable, arr, {}))
        assert.is_not_table(getmetatable(json.null))
        assert.is_false(pcall(function() json.null.x = 1 end))
        assert.is_nil(json.null.x)
        assert.equal("null", json.encode(json.null))
        -- a table that merely claims the array mark's name is no array
        assert.is_false(json.is_array(setmetatable({}, { __metatable = "json.array" })))
    end)

    it("keeps one policy file from changing another's decision", function()
        local tamper = [[
            route "GET /tamper" { key = function(req)
                local mt = getmetatable(req)
                if type(mt) == "table" then
                    mt.__index = function(t, k) return { page = "1" } end
                end
                pcall(function() json.null.page = "1" end)
                local arr_mt = getmetatable(json.array {})
                if type(arr_mt) == "table" then arr_mt.__index = { page = "1" } end
                return "t" end }
        ]]
        local jobs = [[
            route "GET /jobs" { key = function(req)
                return "jobs:" .. tostring(req.query.page) .. ":" ..
                    tostring(json.null.page) .. ":" .. tostring(json.array({}).page) end }
        ]]
        local set = policy.load {
            { name = "policies/a.lua", source = tamper },
            { name = "policies/b.lua", source = jobs },
        }
        local before = helper.decide(set, "GET /jobs?page=3").key
        assert.equal("jobs:3:nil:nil", before)
        helper.decide(set, "GET /tamper")
        local req = helper.request("GET /jobs?page=3")
        req.query = nil -- as the gateway builds it: the library fills it on first use
        assert.equal(before, set:decide(req).key)
    end)

    it("does not hand compiled routes to policy code", function()
        local set = helper.load_source([[
            local r = route "GET /a" { key = "a" }
            local s = route("GET /b", { key = "b" })
            route "GET /what" { key = function() return type(r) .. type(s) end }
        ]])
        assert.equal("nilnil", helper.decide(set, "GET /what").key)
    end)
end)

describe("credentials (items 11, 17)", function()
    local set = helper.load_source([[
        route "GET /shared" { key = "shared" }
        route "GET /mine" { key = "mine:{auth_hash}" }
    ]])

    it("counts an empty Authorization as a credential on routes and by default", function()
        local d = helper.decide(set, "GET /shared", { authorization = "" })
        assert.equal("bypass", d.action)
        assert.equal("credentials", d.reason)
        d = helper.decide(set, "GET /elsewhere", { authorization = "" })
        assert.equal("bypass", d.action)
        assert.equal("credentials", d.reason)
        d = helper.decide(set, "GET /mine", { authorization = "" })
        assert.equal("cache", d.action)
        assert.are_not.equal(helper.decide(set, "GET /mine").key, d.key)
    end)

    it("keys per-user routes on both the API key and the session cookie", function()
        local a = helper.decide(set, "GET /mine", { authorization = "Key k", cookie = "s=1" })
        local b = helper.decide(set, "GET /mine", { authorization = "Key k", cookie = "s=2" })
        assert.are_not.equal(a.key, b.key)
    end)
end)
