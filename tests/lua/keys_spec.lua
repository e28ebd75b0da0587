-- Key templates, credential hashing and key sanitising.
require "helper"
local keys = require "gateway.keys"
local url = require "gateway.url"
local gw = require "cachegw_helpers"

local function req(t)
    t.header = t.header or {}
    t.method = t.method or "GET"
    t.path = t.path or "/"
    setmetatable(t, { __index = function(r, k)
        if k == "query" then return url.query_table(rawget(r, "query_string")) end
    end })
    return t
end

local function expand(template, r, params, param_set)
    local tmpl = assert(keys.compile(template, param_set or { id = true }))
    return keys.expand(tmpl, r, params or {}, url.compile_ignore(keys.default_ignore()))
end

describe("gateway.keys", function()
    it("expands params and literal text", function()
        assert.equal("users:42", expand("users:{id}", req {}, { id = "42" }))
        assert.equal("static", expand("static", req {}))
        assert.equal("a:42:b:42", expand("a:{id}:b:{id}", req {}, { id = "42" }))
    end)

    it("expands {query} to the normalised query", function()
        assert.equal("posts:a=1&b=2",
            expand("posts:{query}", req { query_string = "b=2&utm_source=x&a=1" }))
        assert.equal("posts:", expand("posts:{query}", req {}))
    end)

    it("expands {query.NAME}, {header.NAME}, {method} and {path}", function()
        local r = req { method = "HEAD", path = "/p/x", query_string = "q=hello+world",
                        header = { ["x-user-id"] = "7" } }
        assert.equal("hello world|7||GET|/p/x",
            expand("{query.q}|{header.X-User-Id}|{header.missing}|{method}|{path}", r))
    end)

    it("hashes the Authorization header and the Cookie for {auth_hash}", function()
        local a = expand("{auth_hash}", req { header = { authorization = "Bearer t" } })
        local c = expand("{auth_hash}", req { header = { cookie = "sid=1" } })
        local both = expand("{auth_hash}",
            req { header = { authorization = "Bearer t", cookie = "sid=1" } })
        local other_session = expand("{auth_hash}",
            req { header = { authorization = "Bearer t", cookie = "sid=2" } })
        assert.equal(16, #a)
        assert.equal(gw.hash("authorization\0Bearer t"), a)
        assert.equal(gw.hash("cookie\0sid=1"), c)
        -- issue 8, item 11: two sessions sharing an API key never share per-user entries
        assert.equal(gw.hash("authorization\0Bearer t\0cookie\0sid=1"), both)
        assert.are_not.equal(a, both)
        assert.are_not.equal(both, other_session)
        -- issue 8, item 17: an empty Authorization is a credential, an empty Cookie is not
        assert.equal(gw.hash("authorization\0"),
            expand("{auth_hash}", req { header = { authorization = "" } }))
        assert.equal("anon", expand("{auth_hash}", req { header = { cookie = "" } }))
        assert.are_not.equal(a, expand("{auth_hash}",
            req { header = { authorization = "Bearer u" } }))
        assert.equal("anon", expand("{auth_hash}", req {}))
    end)

    it("percent-encodes control characters in header values and decoded query params",
        function()
            local r = req { query_string = "q=a%0Ab", header = { ["x-a"] = "1\t2" } }
            assert.equal("a%0Ab|1%092", expand("{query.q}|{header.x-a}", r))
            -- literal text is cleaned when the template compiles
            assert.equal("a%0Ab", expand("a\nb", req {}))
        end)

    it("builds the default key from the path and the normalised query", function()
        local ign = url.compile_ignore(keys.default_ignore())
        assert.equal("GET:/p", keys.default_key(req { path = "/p" }, ign))
        assert.equal("GET:/p?a=1", keys.default_key(req { method = "HEAD", path = "/p",
            query_string = "a=1&utm_x=2" }, ign))
        assert.equal("GET:/p", keys.default_key(req { method = "POST", path = "/p" }, ign, "GET"))
    end)

    it("reports what a template uses", function()
        local t = assert(keys.compile("f:{auth_hash}:{header.x-a}:{query}:{id}", { id = true }))
        assert.is_true(t.uses.auth_hash)
        assert.is_true(t.uses.query)
        assert.same({ "x-a" }, t.uses.header)
        assert.same({ "id" }, t.uses.params)
    end)

    it("rejects unknown placeholders, missing params and bad braces", function()
        local cases = {
            { "users:{uid}",
              "template 'users:{uid}' uses '{uid}', but the route has no such param" },
            { "x:{*}", "uses '{*}', but the route has no such param" },
            { "x:{header.}", "unknown placeholder '{header.}'" },
            { "x:{a b}", "unknown placeholder '{a b}'" },
            { "x:{id", "unclosed '{'" },
            { "x:id}", "stray '}'" },
        }
        for _, c in ipairs(cases) do
            local t, err = keys.compile(c[1], { id = true })
            assert.is_nil(t)
            assert.truthy(err:find(c[2], 1, true), err)
        end
        assert.truthy(keys.compile("s:{*}", { ["*"] = true }))
    end)

    describe("sanitize", function()
        it("percent-encodes control characters", function()
            assert.equal("a%0Ab%00c%7F", keys.sanitize("a\nb\0c\127"))
            assert.equal("plain:key", keys.sanitize("plain:key"))
        end)

        it("bounds length without touching other characters", function()
            assert.equal("a\nb", keys.bound("a\nb"))
            assert.equal(keys.MAX_KEY, #keys.bound(string.rep("k", 1000)))
        end)

        it("hashes keys longer than 512 bytes down, keeping a prefix", function()
            local long1 = "posts:" .. string.rep("x", 600) .. "1"
            local long2 = "posts:" .. string.rep("x", 600) .. "2"
            local k1, k2 = keys.sanitize(long1), keys.sanitize(long2)
            assert.is_true(#k1 <= keys.MAX_KEY)
            assert.are_not.equal(k1, k2)
            assert.equal("posts:", k1:sub(1, 6))
            assert.equal(keys.sanitize(long1), k1)
            local exact = string.rep("y", keys.MAX_KEY)
            assert.equal(exact, keys.sanitize(exact))
        end)
    end)
end)
