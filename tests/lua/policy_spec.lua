-- The policy DSL: validation at load time (each error with file:line) and decisions.
local helper = require "helper"
local policy = require "gateway.policy"

local load_error, load_source, decide = helper.load_error, helper.load_source, helper.decide

describe("gateway.policy", function()
    describe("validation", function()
        local cases = {
            { 'route "GET /users/:id" { key = "users:{id}", tll = 300 }',
              "policies/test.lua:1: unknown field 'tll' in route 'GET /users/:id' " ..
              "(did you mean 'ttl'?)" },
            { '\n\nroute "GET /a" { keey = "a" }',
              "policies/test.lua:3: unknown field 'keey' in route 'GET /a' (did you mean 'key'?)" },
            { 'route "GET /a" { colour = 1 }',
              "policies/test.lua:1: unknown field 'colour' in route 'GET /a'" },
            { 'route "GET /a" { ttl = "60" }',
              "policies/test.lua:1: field 'ttl' in route 'GET /a' must be a number, got string" },
            { 'route "GET /a" { ttl = -1 }',
              "policies/test.lua:1: field 'ttl' in route 'GET /a' must be a non-negative " ..
              "number of seconds, got -1" },
            { 'route "GET /a" { ttl = 1/0 }', "must be a non-negative number of seconds, got inf" },
            { 'route "GET /a" { stale_if_error = 0/0 }',
              "field 'stale_if_error' in route 'GET /a'" },
            { 'route "GET /a" { key = 5 }',
              "policies/test.lua:1: field 'key' in route 'GET /a' must be a string or function, " ..
              "got number" },
            { 'route "GET /a" { bypass = "yes" }', "field 'bypass' in route 'GET /a' must be a " ..
              "boolean or function, got string" },
            { '\nroute "GET /users/:id" {\n  key = "users:{uid}",\n  ttl = 1,\n}',
              "policies/test.lua:2: field 'key' in route 'GET /users/:id': template " ..
              "'users:{uid}' uses '{uid}', but the route has no such param" },
            { 'route "GET /a" { key = "a:{nope.x}" }', "policies/test.lua:1: field 'key' in " ..
              "route 'GET /a': unknown placeholder '{nope.x}' in template 'a:{nope.x}'" },
            { 'route "GET /a" { invalidate = { "a" } }',
              "policies/test.lua:1: field 'invalidate' is not allowed on read route 'GET /a'" },
            { 'route "POST /a" { ttl = 5 }',
              "policies/test.lua:1: field 'ttl' only applies to GET/HEAD routes, not 'POST /a'" },
            { 'route "PUT /u/:id" { invalidate = { "u:{uid}" } }',
              "policies/test.lua:1: field 'invalidate' in route 'PUT /u/:id': " ..
              "template 'u:{uid}' " ..
              "uses '{uid}', but the route has no such param" },
            { 'route "POST /a" { invalidate = { "*" } }',
              "'*' alone would drop every entry" },
            { 'route "POST /a" { invalidate = { 1 } }',
              "policies/test.lua:1: field 'invalidate' in route 'POST /a': entry 1 must be a " ..
              "string, got number" },
            { 'route "GET /a" { }\nroute "GET /b" { }\nroute "GET|HEAD /a" { }',
              "policies/test.lua:3: duplicate route 'GET|HEAD /a' (already declared as " ..
              "'GET /a' at policies/test.lua:1)" },
            { 'route "GET /u/:id" { }\nroute "GET /u/:uid" { }',
              "policies/test.lua:2: duplicate route 'GET /u/:uid'" },
            { 'route "GET /a"\nroute "GET /b" { }',
              "policies/test.lua:1: route 'GET /a' has no options table" },
            { 'route "GET /a" { "x" }', "policies/test.lua:1: route 'GET /a': options must be " ..
              "named fields" },
            { 'route "GET|POST /a" { }', "policies/test.lua:1: route 'GET|POST /a' mixes read " ..
              "(GET/HEAD) and write methods" },
            { 'route "* /a" { }',
              "policies/test.lua:1: route '* /a': a '*' route must set bypass" },
            { 'route "* /a" { bypass = true, ttl = 1 }',
              "policies/test.lua:1: field 'ttl' is not " ..
              "allowed on route '* /a'" },
            { 'route "get /a" { }', "policies/test.lua:1: route 'get /a': bad method 'get'" },
            { 'route "GET users" { }', "policies/test.lua:1: route 'GET users': path pattern " ..
              "must start with '/'" },
            { 'route "GET /a/*/b" { }', "'*' is only allowed as the last segment" },
            { 'route "GET /a" { per_user = true }', "policies/test.lua:1: per_user route " ..
              "'GET /a' needs a key that includes {auth_hash}" },
            { 'route "GET /a" { per_user = true, key = "a:{header.x-user-id}" }',
              "policies/test.lua:1: per_user route 'GET /a': key 'a:{header.x-user-id}' must " ..
              "include {auth_hash}" },
            { 'route "GET /a" { key = "a" ', "policies/test.lua:1: '}' expected near <eof>" },
            { 'local t = nil\nlocal x = t.field', "policies/test.lua:2: attempt to index a nil " ..
              "value (local 't')" },
            { 'route(42)', "policies/test.lua:1: route expects a string" },
        }
        for i, c in ipairs(cases) do
            it("reports case " .. i .. " with file:line: " .. c[2]:sub(1, 60), function()
                local err = load_error(c[1])
                assert.is_string(err)
                assert.truthy(err:find(c[2], 1, true), "got: " .. tostring(err))
                assert.truthy(err:match("^policies/test%.lua:%d+: "), err)
            end)
        end

        it("reports the duplicate across files with both locations", function()
            local ok, err = pcall(policy.load, {
                { name = "policies/a.lua", source = 'route "GET /x" { key = "x" }' },
                { name = "policies/b.lua", source = '\nroute "GET /x" { key = "y" }' },
            })
            assert.is_false(ok)
            assert.equal("policies/b.lua:2: duplicate route 'GET /x' (already declared as " ..
                "'GET /x' at policies/a.lua:1)", err)
        end)

        it("accepts the two-argument form and a bare path (GET)", function()
            local set = load_source('route("GET /a", { key = "a" })\nroute "/b" { key = "b" }')
            assert.equal("a", decide(set, "GET /a").key)
            assert.equal("b", decide(set, "GET /b").key)
        end)
    end)

    describe("decide", function()
        local set = load_source([[
route "GET /users/:id" { key = "users:{id}", ttl = 300, stale_while_revalidate = 5,
                         stale_if_error = 60, tags = { "user:{id}" } }
route "GET /plain/*" { ttl = 10 }
route "GET /feed" { key = "feed:{auth_hash}", ttl = 30 }
route "GET /fn" { key = function(req) return req.query.k and ("fn:" .. req.query.k) end,
                  per_user = true }
route "GET /num" { key = function(req) return 42 end }
route "GET /bad" { key = function(req) return {} end }
route "GET /search" { key = "search:{query.q}", ignore_query = { "debug" },
                      bypass = function(req) return req.header["x-debug"] ~= nil end }
route "GET /cookie" { key = function(req) return "c:" .. tostring(req.cookie.theme) end,
                      per_user = true }
route "* /admin/*" { bypass = true }
route "POST /users" { }
route "PUT /users/:id" { invalidate = { "users:{id}", "list:*" },
                         invalidate_tags = { "user:{id}" } }
route "DELETE /users/:id" {
    invalidate = function(req) return { "users:" .. req.params.id, "x:*" } end }
]])

        it("caches with the expanded key and the route's times", function()
            local d = decide(set, "GET /users/42")
            assert.same({ action = "cache", key = "users:42", ttl = 300, swr = 5, sie = 60,
                          route = "GET /users/:id", route_id = 1, reason = "route",
                          per_user = false, ignore_no_store = false, has_response_hook = false,
                          tags = { "user:42" } }, d)
        end)

        it("answers HEAD with the GET route and key", function()
            local d = decide(set, "HEAD /users/42")
            assert.equal("cache", d.action)
            assert.equal("users:42", d.key)
        end)

        it("uses the default key for a read route without a key", function()
            local d = decide(set, "GET /plain/a/b?z=1&utm_source=q&a=2")
            assert.equal("GET:/plain/a/b?a=2&z=1", d.key)
            assert.equal(10, d.ttl)
        end)

        it("bypasses credentialed requests on shared routes", function()
            for _, h in ipairs { { Authorization = "Bearer x" }, { Cookie = "sid=1" } } do
                local d = decide(set, "GET /users/42", h)
                assert.equal("bypass", d.action)
                assert.equal("credentials", d.reason)
                assert.is_nil(d.key)
            end
            -- an empty header is no credential
            assert.equal("cache", decide(set, "GET /users/42", { cookie = "" }).action)
        end)

        it("caches credentialed requests per user when the key hashes the credential", function()
            local a = decide(set, "GET /feed", { authorization = "Bearer a" })
            local b = decide(set, "GET /feed", { authorization = "Bearer b" })
            local anon = decide(set, "GET /feed")
            assert.equal("cache", a.action)
            assert.is_true(a.per_user)
            assert.are_not.equal(a.key, b.key)
            assert.equal("feed:anon", anon.key)
        end)

        it("runs key functions; nil means bypass, numbers become strings", function()
            assert.equal("fn:1", decide(set, "GET /fn?k=1", { cookie = "s=1" }).key)
            local d = decide(set, "GET /fn")
            assert.equal("bypass", d.action)
            assert.equal("no_key", d.reason)
            assert.equal("42", decide(set, "GET /num").key)
            local ok, err = pcall(decide, set, "GET /bad")
            assert.is_false(ok)
            assert.truthy(err:find("policies/test.lua:8: key function of route 'GET /bad' " ..
                "must return a string, got table", 1, true), err)
        end)

        it("gives functions lazily parsed req.query and req.cookie", function()
            assert.equal("c:dark", decide(set, "GET /cookie", { cookie = "a=1; theme=dark" }).key)
            assert.equal("c:nil", decide(set, "GET /cookie").key)
        end)

        it("honours ignore_query on top of the defaults and bypass functions", function()
            assert.equal("search:x", decide(set, "GET /search?q=x&debug=1&utm_a=1").key)
            local d = decide(set, "GET /search?q=x", { ["X-Debug"] = "1" })
            assert.equal("bypass", d.action)
            assert.equal("bypass", d.reason)
        end)

        it("bypasses every method on a '*' bypass route", function()
            for _, m in ipairs { "GET", "POST", "DELETE" } do
                assert.equal("bypass", decide(set, m .. " /admin/x").action)
            end
        end)

        it("returns invalidations for writes, exact, prefix and tag", function()
            local d = decide(set, "PUT /users/42")
            assert.equal("invalidate", d.action)
            assert.same({ { key = "users:42", prefix = false },
                          { key = "list:", prefix = true },
                          { key = "user:42", prefix = false, tag = true } }, d.invalidate)
            d = decide(set, "DELETE /users/7")
            assert.same({ { key = "users:7", prefix = false }, { key = "x:", prefix = true } },
                d.invalidate)
            d = decide(set, "POST /users")
            assert.equal("bypass", d.action)
            assert.equal("write", d.reason)
        end)

        it("answers 'default' with the default key when no route matches", function()
            local d = decide(set, "GET /nowhere?b=1&a=")
            assert.same({ action = "default", route_id = 0, reason = "no_route",
                          key = "GET:/nowhere?a=&b=1" }, d)
            assert.equal("GET:/nowhere", decide(set, "DELETE /nowhere").key)
            local c = decide(set, "GET /nowhere", { cookie = "x=1" })
            assert.equal("bypass", c.action)
            assert.equal("credentials", c.reason)
            assert.equal("default", decide(set, "POST /nowhere", { cookie = "x=1" }).action)
        end)
    end)

    describe("decide_raw", function()
        local set = load_source([[
route "GET /t/:id" { key = "t:{id}:{query}", ttl = 1, tags = { "t:{id}" } }
route "GET /h" { key = "h:{header.x-a}" }
route "GET /a" { key = "a:{auth_hash}" }
route "GET /f" { key = function() return "f" end }
route "GET /b" { key = "b", bypass = function() return false end }
route "POST /t/:id" { invalidate = { "t:{id}" } }
]])
        local function pure(spec)
            return select(6, set:decide_raw(helper.request(spec)))
        end

        it("returns the decision as values, with the list and the pure flag", function()
            local action, key, id, reason, list, p = set:decide_raw(helper.request("GET /t/1?b&a"))
            assert.same({ "cache", "t:1:a=&b=", 1, "route", { "t:1" }, true },
                { action, key, id, reason, list, p })
        end)

        it("marks decisions that depend on more than method, path, query and credentials",
            function()
                assert.is_true(pure("GET /t/1"))
                assert.is_true(pure("POST /t/1"))
                assert.is_true(pure("GET /nowhere"))
                assert.is_falsy(pure("GET /h"))
                assert.is_falsy(pure("GET /a"))
                assert.is_falsy(pure("GET /f"))
                assert.is_falsy(pure("GET /b"))
            end)
    end)

    describe("on_response", function()
        local set = load_source([[
route "GET /a/:id" { key = "a:{id}", ttl = 60, on_response = function(req, res)
    if res.status ~= 200 then return { store = false } end
    if res.header["x-short"] then return { ttl = 5, tags = { "a" .. req.params.id } } end
end }
route "GET /bad" { key = "b", on_response = function() return { stroe = false } end }
route "GET /bad2" { key = "b2", on_response = function() return { ttl = -1 } end }
route "GET /none" { key = "n" }
]])
        local req = helper.request

        it("turns the hook's answer into a verdict", function()
            local d = decide(set, "GET /a/9")
            assert.is_true(d.has_response_hook)
            assert.same({ store = false }, set:on_response(d.route_id, req("GET /a/9"),
                { status = 500, header = {} }))
            assert.same({ store = true, ttl = 5, tags = { "a9" } }, set:on_response(d.route_id,
                req("GET /a/9"), { status = 200, header = { ["x-short"] = "1" } }))
            assert.is_nil(set:on_response(d.route_id, req("GET /a/9"), { status = 200 }))
        end)

        it("rejects malformed verdicts with the route's file:line", function()
            local ok, err = pcall(set.on_response, set, 2, req("GET /bad"), { status = 200 })
            assert.is_false(ok)
            assert.truthy(err:find("policies/test.lua:5: on_response of route 'GET /bad' " ..
                "returned unknown field 'stroe'", 1, true), err)
            ok, err = pcall(set.on_response, set, 3, req("GET /bad2"), { status = 200 })
            assert.is_false(ok)
            assert.truthy(err:find("ttl must be a non-negative number", 1, true), err)
        end)

        it("returns nil for routes without a hook", function()
            assert.is_nil(set:on_response(4, req("GET /none"), { status = 200 }))
            assert.is_nil(set:on_response(99, req("GET /none"), { status = 200 }))
        end)
    end)

    describe("environments", function()
        it("keeps each file's globals to itself and seals them after loading", function()
            local set = policy.load({
                { name = "policies/a.lua", source = [[
prefix = "a"
route "GET /a" { key = function() return prefix end }
route "GET /w" { key = function() counter = (counter or 0) + 1 return "w" end }
route "GET /r" { key = function() route "GET /late" { } return "r" end }
]] },
                { name = "policies/b.lua", source = [[
route "GET /b" { key = function() return tostring(prefix) end }
]] },
            })
            assert.equal("a", decide(set, "GET /a").key)
            assert.equal("nil", decide(set, "GET /b").key)
            local ok, err = pcall(decide, set, "GET /w")
            assert.is_false(ok)
            assert.truthy(err:find("policies/a.lua:3: policy code may not set global 'counter'",
                1, true), err)
            ok, err = pcall(decide, set, "GET /r")
            assert.is_false(ok)
            assert.truthy(err:find("route() can only be called while policies load", 1, true))
        end)

        it("offers the DSL helpers in every file", function()
            local set = load_source([[
assert(type(route) == "function" and type(json) == "table" and type(cachecontrol) == "table"
       and type(url) == "table" and type(gw.hash) == "function")
route "GET /j" { key = function(req) return "j:" .. json.encode({ q = req.query.q }) end }
]])
            assert.equal('j:{"q":"x"}', decide(set, "GET /j?q=x").key)
        end)

        it("exposes the most recently loaded set through policy.decide", function()
            load_source('route "GET /latest" { key = "latest" }')
            assert.equal("latest", policy.decide(helper.request("GET /latest")).key)
        end)
    end)
end)
