-- Route matching: params, wildcards, specificity, methods, HEAD -> GET.
require "helper"
local router = require "gateway.router"

local function build(list)
    local r = router.new()
    for _, spec in ipairs(list) do
        local m, p = spec:match("^(%S+) (%S+)$")
        local pat = assert(router.compile(p))
        assert(r:add(assert(router.parse_methods(m)), pat, spec))
    end
    return r
end

describe("gateway.router", function()
    it("captures named params, percent-decoded", function()
        local r = build { "GET /users/:id", "GET /users/:id/posts/:post" }
        local v, params = r:match("GET", "/users/42")
        assert.equal("GET /users/:id", v)
        assert.same({ id = "42" }, params)
        v, params = r:match("GET", "/users/a%20b/posts/7")
        assert.equal("GET /users/:id/posts/:post", v)
        assert.same({ id = "a b", post = "7" }, params)
    end)

    it("keeps control characters in params percent-encoded", function()
        local r = build { "GET /u/:id" }
        local _, params = r:match("GET", "/u/a%0Ab%2Fc")
        assert.equal("a%0Ab/c", params.id)
    end)

    it("finds literal routes directly and still prefers them for HEAD", function()
        local r = build { "GET /a/b", "GET /a/:x", "HEAD /a/:x" }
        assert.equal("GET /a/b", (r:match("GET", "/a/b")))
        -- a HEAD route beats the GET fallback, even a literal one
        local v, _, via_get = r:match("HEAD", "/a/b")
        assert.equal("HEAD /a/:x", v)
        assert.is_false(via_get)
        local r2 = build { "GET /a/b", "GET /a/:x" }
        v, _, via_get = r2:match("HEAD", "/a/b")
        assert.equal("GET /a/b", v)
        assert.is_true(via_get)
    end)

    it("matches literal segments exactly and treats a trailing slash as significant", function()
        local r = build { "GET /users/:id", "GET /about" }
        assert.is_nil(r:match("GET", "/users/42/"))
        assert.is_nil(r:match("GET", "/users/"))
        assert.is_nil(r:match("GET", "/users//x"))
        assert.is_nil(r:match("GET", "/About"))
        assert.equal("GET /about", (r:match("GET", "/about")))
        assert.is_nil(r:match("GET", "users/42"))
    end)

    it("captures the rest of the path with a trailing wildcard", function()
        local r = build { "GET /static/*" }
        local v, params = r:match("GET", "/static/css/site.css")
        assert.equal("GET /static/*", v)
        assert.equal("css/site.css", params["*"])
        local _, p2 = r:match("GET", "/static")
        assert.equal("", p2["*"])
        local _, p3 = r:match("GET", "/static/")
        assert.equal("", p3["*"])
        assert.is_nil(r:match("GET", "/staticx"))
    end)

    it("prefers literal over param over wildcard, whatever the declaration order", function()
        local r = build { "GET /a/*", "GET /a/:x", "GET /a/me", "GET /a/:x/b", "GET /a/me/*" }
        assert.equal("GET /a/me", (r:match("GET", "/a/me")))
        assert.equal("GET /a/:x", (r:match("GET", "/a/you")))
        assert.equal("GET /a/*", (r:match("GET", "/a/you/c")))
        assert.equal("GET /a/:x/b", (r:match("GET", "/a/you/b")))
        -- The literal branch wins at the first differing segment, and backtracks when it
        -- cannot complete.
        assert.equal("GET /a/me/*", (r:match("GET", "/a/me/b")))
        assert.equal("GET /a/*", (r:match("GET", "/a/")))
    end)

    it("backtracks to a param route when the literal route has another method", function()
        local r = build { "GET /users/me", "PUT /users/:id" }
        assert.equal("PUT /users/:id", (r:match("PUT", "/users/me")))
        assert.is_nil(r:match("DELETE", "/users/me"))
    end)

    it("supports method lists and '*'", function()
        local r = build { "GET|HEAD /x", "* /admin/*", "POST|PUT /y" }
        assert.equal("GET|HEAD /x", (r:match("HEAD", "/x")))
        assert.equal("* /admin/*", (r:match("DELETE", "/admin/users")))
        assert.equal("POST|PUT /y", (r:match("PUT", "/y")))
        assert.is_nil(r:match("GET", "/y"))
    end)

    it("lets HEAD fall back to GET routes, but prefers a route declared for HEAD", function()
        local r = build { "GET /a/:id", "HEAD /a/special" }
        local v, params, via_get = r:match("HEAD", "/a/1")
        assert.equal("GET /a/:id", v)
        assert.equal("1", params.id)
        assert.is_true(via_get)
        v, _, via_get = r:match("HEAD", "/a/special")
        assert.equal("HEAD /a/special", v)
        assert.is_false(via_get)
    end)

    it("uses the first declared route among equal shapes with overlapping methods", function()
        local r = router.new()
        assert.is_true(r:add({ GET = true }, router.compile("/u/:id"), "first"))
        local ok, existing = r:add({ GET = true, HEAD = true }, router.compile("/u/:uid"), "second")
        assert.is_nil(ok)
        assert.equal("first", existing)
        assert.is_true(r:add({ POST = true }, router.compile("/u/:uid"), "post"))
        assert.equal("post", (r:match("POST", "/u/1")))
        assert.equal("first", (r:match("GET", "/u/1")))
    end)

    it("rejects bad patterns and methods", function()
        for _, bad in ipairs { "users", "/a/*/b", "/a/x*", "/a/:", "/a/:1x", "/a/:id/:id",
                               "/a?b=1", "/a b", "/a/:query" } do
            local pat, err = router.compile(bad)
            assert.is_nil(pat, bad)
            assert.is_string(err)
        end
        assert.is_nil(router.parse_methods("get"))
        assert.is_nil(router.parse_methods("GET|*"))
        assert.same({ GET = true, HEAD = true }, router.parse_methods("GET|HEAD"))
    end)

    it("gives patterns a shape that ignores param names", function()
        assert.equal(router.compile("/u/:id/p").shape, router.compile("/u/:uid/p").shape)
        assert.are_not.equal(router.compile("/u/:id").shape, router.compile("/u/*").shape)
    end)

    it("matches a single compiled pattern alone", function()
        local pat = router.compile("/users/:id/posts")
        assert.same({ id = "7" }, router.match_one(pat, "/users/7/posts"))
        assert.is_nil(router.match_one(pat, "/users/7"))
        assert.is_nil(router.match_one(pat, "/users//posts"))
        assert.same({ ["*"] = "a/b" }, router.match_one(router.compile("/s/*"), "/s/a/b"))
    end)
end)
