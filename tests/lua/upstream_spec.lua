-- Named upstreams, Host routing and their validation (issue 13; docs/policies.md, Upstreams).
local helper = require "helper"

local load_error, load_source, decide = helper.load_error, helper.load_source, helper.decide

local USERS = [[
upstream "users" {
  servers = { "http://10.0.0.1:8080", "http://10.0.0.2:8080/", { url = "http://u3:8080", weight = 2 } },
  balance = "round_robin",
  health = { path = "/healthz", interval = 5, timeout = 1, healthy = 2, unhealthy = 3 },
  connect_timeout = 0.5, timeout = 10, retries = 2,
}
]]

-- Two files: the route first, its upstream declared in the next file.
local function load_two_files()
    local policy = require "gateway.policy"
    return policy.load {
        { name = "policies/a.lua", source = 'route "GET /x" { upstream = "late", key = "x", ttl = 1 }' },
        { name = "policies/b.lua", source = 'upstream "late" { servers = { "http://l" } }' },
    }
end

describe("upstreams", function()
    describe("declarations", function()
        it("compiles servers, defaults and health into plain data", function()
            local set = load_source(USERS .. 'route "GET /users/:id" { upstream = "users", ' ..
                'key = "users:{id}", ttl = 300 }')
            local u = set:describe_upstreams()
            assert.are.equal(1, #u)
            u = u[1]
            assert.are.equal("users", u.name)
            assert.are.equal("round_robin", u.balance)
            assert.are.same({ { url = "http://10.0.0.1:8080", weight = 1 },
                              { url = "http://10.0.0.2:8080", weight = 1 },
                              { url = "http://u3:8080", weight = 2 } }, u.servers)
            assert.are.equal(0.5, u.connect_timeout)
            assert.are.equal(10, u.timeout)
            assert.are.equal(2, u.retries)
            assert.are.equal(3, u.max_fails)
            assert.are.equal(10, u.fail_timeout)
            assert.is_false(u.fail_on_5xx)
            assert.are.same({ path = "/healthz", interval = 5, timeout = 1, healthy = 2,
                              unhealthy = 3 }, u.health)
        end)

        it("defaults: round robin, one retry, no active health", function()
            local set = load_source('upstream "a" { servers = { "https://a.internal" } }')
            local u = set:describe_upstreams()[1]
            assert.are.equal("round_robin", u.balance)
            assert.are.equal(1, u.retries)
            assert.is_nil(u.health)
            assert.is_nil(u.timeout)
        end)

        it("accepts IPv6 literals, '_' in names and a prefix; only the host is checked",
            function()
                local set = load_source('upstream "a" { servers = { "http://[::1]:8080", ' ..
                    '"http://[fe80::1]", "HTTPS://svc_a.internal-2:443/api/v1/" } }')
                assert.are.same({ { url = "http://[::1]:8080", weight = 1 },
                                  { url = "http://[fe80::1]", weight = 1 },
                                  { url = "https://svc_a.internal-2:443/api/v1", weight = 1 } },
                    set:describe_upstreams()[1].servers)
            end)

        it("lets a route name an upstream declared in a later file", function()
            local routes = load_two_files()
            assert.are.equal("late", decide(routes, "GET /x").upstream)
        end)

        it("carries the route's upstream and idempotent flag in the decision", function()
            local set = load_source(USERS .. [[
route "GET /users/:id" { upstream = "users", key = "users:{id}", ttl = 1 }
route "PUT /users/:id" { upstream = "users", idempotent = true }
route "GET /other" { ttl = 1 }
route "GET /def" { upstream = "default", ttl = 1 }
route "* /any" { upstream = "users", bypass = function() return false end }
]])
            local d = decide(set, "GET /users/7")
            assert.are.equal("users", d.upstream)
            assert.are.equal("cache", d.action)
            local w = decide(set, "PUT /users/7")
            assert.are.equal("users", w.upstream)
            assert.is_true(w.idempotent)
            assert.is_nil(decide(set, "GET /other").upstream)
            assert.are.equal("default", decide(set, "GET /def").upstream)
            assert.is_nil(decide(set, "GET /nowhere").upstream)
            -- A '*' route on another upstream never falls back to the default key.
            local any = decide(set, "DELETE /any")
            assert.are.equal("bypass", any.action)
            assert.are.equal("users", any.upstream)
        end)
    end)

    describe("bad input (file:line)", function()
        local cases = {
            { 'upstream "u" { servers = { "http://x" } }\nroute "GET /a" { upstream = "u", ttl = 1 }',
              "policies/test.lua:2: route 'GET /a' fetches from upstream 'u': give it a key" },
            { 'route "GET /a" { upstream = "userz", key = "a" }',
              "policies/test.lua:1: route 'GET /a': unknown upstream 'userz' (declared: none;" },
            { USERS .. '\nroute "GET /a" { upstream = "user", key = "a" }',
              "policies/test.lua:8: route 'GET /a': unknown upstream 'user' (declared: users)" },
            { 'upstream "a" { servers = {} }',
              "policies/test.lua:1: upstream 'a': the server list is empty" },
            { 'upstream "a" { }', "policies/test.lua:1: upstream 'a' has no servers" },
            { 'upstream "a" { servers = { "htp://x" } }',
              "policies/test.lua:1: upstream 'a': server 1: bad URL 'htp://x': scheme must " ..
              "be http or https" },
            { 'upstream "a" { servers = { "10.0.0.1:80" } }',
              "upstream 'a': server 1: bad URL '10.0.0.1:80': expected http://host[:port]" },
            { 'upstream "a" { servers = { "http://x:99999" } }',
              "upstream 'a': server 1: bad URL 'http://x:99999': bad port ':99999'" },
            -- A bad character in the host is named as such, not as the start of a bad port.
            { 'upstream "a" { servers = { "http://a b:1" } }',
              "policies/test.lua:1: upstream 'a': server 1: bad URL 'http://a b:1': invalid " ..
              "host 'a b': a space is not allowed in a host name (letters, digits, '-', '.' " ..
              "and '_' only)" },
            { 'upstream "a" { servers = { "http://a b/p" } }',
              "bad URL 'http://a b/p': invalid host 'a b': a space is not allowed" },
            { 'upstream "a" { servers = { "http://user@x:80" } }',
              "bad URL 'http://user@x:80': invalid host 'user@x': '@' is not allowed" },
            { 'upstream "a" { servers = { "http://x\ty" } }',
              "invalid host 'x\ty': byte 0x09 is not allowed" },
            { 'upstream "a" { servers = { "http://:80" } }',
              "bad URL 'http://:80': missing host" },
            { 'upstream "a" { servers = { "http://[::1:80" } }',
              "bad URL 'http://[::1:80': invalid host '[::1:80': an IPv6 address is hex " ..
              "digits, ':' and '.' in brackets" },
            { 'upstream "a" { servers = { "http://x:1 " } }',
              "bad URL 'http://x:1 ': bad port ':1 '" },
            { 'upstream "a" { servers = { "http://x/p?q=1" } }',
              "server 1: bad URL 'http://x/p?q=1': a server URL has no query" },
            { 'upstream "a" { servers = { { url = "http://x", weight = 0 } } }',
              "upstream 'a': server 1 (http://x): weight must be a whole number from 1 to " ..
              "100, got 0" },
            { 'upstream "a" { servers = { { url = "http://x", weight = 1.5 } } }',
              "weight must be a whole number from 1 to 100, got 1.5" },
            { 'upstream "a" { servers = { { url = "http://x", wieght = 2 } } }',
              "upstream 'a': server 1: unknown field 'wieght' (use url, weight)" },
            { 'upstream "a" { servers = { "http://x", "http://x/" } }',
              "server 2: 'http://x/' is listed twice (use weight)" },
            { 'upstream "a" { servers = { "http://x" }, balance = "random" }',
              "field 'balance' in upstream 'a' must be \"round_robin\", \"least_conn\" or " ..
              "\"hash\", got \"random\"" },
            { 'upstream "a" { servers = { "http://x" }, retrys = 2 }',
              "unknown field 'retrys' in upstream 'a' (did you mean 'retries'?)" },
            { 'upstream "a" { servers = { "http://x" }, retries = 11 }',
              "field 'retries' in upstream 'a' must be between 0 and 10, got 11" },
            { 'upstream "a" { servers = { "http://x" }, health = { interval = 1 } }',
              "upstream 'a' health: path is required" },
            { 'upstream "a" { servers = { "http://x" }, health = { path = "healthz" } }',
              "upstream 'a' health: path must start with '/'" },
            { 'upstream "a" { servers = { "http://x" }, health = { path = "/h", timeout = 9 } }',
              "upstream 'a' health: timeout (9) must not exceed interval (5)" },
            { 'upstream "default" { servers = { "http://x" } }',
              "upstream name 'default' is reserved" },
            { 'upstream "a" { servers = { "http://x" } }\nupstream "a" { servers = { "http://y" } }',
              "policies/test.lua:2: duplicate upstream 'a' (already declared at " ..
              "policies/test.lua:1)" },
            { 'upstream "a"', "policies/test.lua:1: upstream 'a' has no options table" },
            { 'route "GET /a" { host = "a.example.com:8080" }',
              "field 'host' in route 'GET /a': entry 1 is not a host name" },
            { 'route "GET /a" { host = {} }',
              "field 'host' in route 'GET /a' must be a host name or a list of them" },
            { 'route "GET /a" { idempotent = true }',
              "field 'idempotent' is not allowed on read route 'GET /a'" },
            { 'unknown_host "drop"', "unknown_host expects \"reject\" or \"default\", got drop" },
            { 'unknown_host "reject"', "unknown_host \"reject\" needs routes with a host" },
        }
        for _, c in ipairs(cases) do
            it(c[2], function()
                local err = load_error(c[1])
                assert.is_string(err)
                assert.is_truthy(err:find(c[2], 1, true), err)
            end)
        end
    end)

    describe("Host routing", function()
        local SRC = [[
upstream "api" { servers = { "http://10.0.0.1" } }
upstream "jobs" { servers = { "http://10.0.0.2" } }
route "GET /items/:id" { host = "api.example.com", upstream = "api", key = "api:{id}", ttl = 1 }
route "GET /items/:id" { host = { "jobs.example.com", "JOBS2.example.com" }, upstream = "jobs",
                         key = "jobs:{id}", ttl = 1 }
route "GET /shared" { ttl = 1 }
]]
        it("picks the route of the request's Host (case, port and trailing dot ignored)",
            function()
                local set = load_source(SRC)
                local a = decide(set, "GET /items/1", { host = "API.example.com:8443" })
                assert.are.equal("api", a.upstream)
                assert.are.equal("api:1", a.key)
                local j = decide(set, "GET /items/1", { host = "jobs2.example.com." })
                assert.are.equal("jobs", j.upstream)
                assert.are.equal("jobs:1", j.key)
            end)

        it("falls back to the routes without a host", function()
            local set = load_source(SRC)
            local d = decide(set, "GET /shared", { host = "api.example.com" })
            assert.are.equal("cache", d.action)
            assert.are.equal("GET /shared", d.route)
        end)

        it("unknown hosts: the host-less routes and the default upstream by default", function()
            local set = load_source(SRC)
            local d = decide(set, "GET /items/1", { host = "other.example.com" })
            assert.are.equal("default", d.action)
            assert.is_nil(d.upstream)
            assert.are.equal("cache", decide(set, "GET /shared", { host = "x" }).action)
        end)

        it("unknown hosts: 404 with unknown_host \"reject\"", function()
            local set = load_source(SRC .. 'unknown_host "reject"')
            local d = decide(set, "GET /shared", { host = "other.example.com" })
            assert.are.equal("reject", d.action)
            assert.are.equal(404, d.status)
            assert.are.equal("unknown_host", d.reason)
            assert.are.equal("reject", decide(set, "GET /shared").action) -- no Host at all
            assert.are.equal("cache", decide(set, "GET /shared",
                { host = "api.example.com" }).action)
        end)

        it("the same route on two hosts is no duplicate; twice on one host is", function()
            assert.is_nil(load_error(SRC))
            local err = load_error([[
route "GET /a" { host = "x.example", ttl = 1 }
route "GET /a" { host = "x.example", ttl = 2 }]])
            assert.is_truthy(err:find("policies/test.lua:2: duplicate route 'GET /a'", 1, true))
        end)

        it("describes host routes and hosts for the C route table", function()
            local set = load_source(SRC .. 'unknown_host "reject"')
            local desc = set:describe()
            assert.are.same({ "api.example.com", "jobs.example.com", "jobs2.example.com" },
                desc.hosts)
            assert.are.equal("reject", desc.unknown_host)
            assert.are.same({ "api.example.com" }, desc.routes[1].hosts)
            assert.are.same({ "jobs.example.com", "jobs2.example.com" }, desc.routes[2].hosts)
            assert.is_nil(desc.routes[3].hosts)
            assert.are.equal("api", desc.routes[1].upstream)
        end)
    end)
end)

