-- What policies/posts.lua does.
local helper = require "helper"

-- True when some target of a write decision drops key.
local function drops(decision, key)
    for _, t in ipairs(decision.invalidate or {}) do
        if (t.prefix and key:sub(1, #t.key) == t.key) or (not t.prefix and key == t.key) then
            return true
        end
    end
    return false
end

describe("policies/posts.lua", function()
    local set = helper.load_policies()
    local function decide(spec, headers) return helper.decide(set, spec, headers) end

    it("caches the list for 60 s, stale-while-revalidate 30 s, stale-if-error 300 s", function()
        local d = decide("GET /posts?limit=10&offset=0")
        assert.equal("cache", d.action)
        assert.equal("posts:limit=10&offset=0", d.key)
        assert.equal(60, d.ttl)
        assert.equal(30, d.swr)
        assert.equal(300, d.sie)
        assert.equal("posts:", decide("GET /posts").key)
    end)

    it("caches one post for 60 s under post:{id}", function()
        local d = decide("GET /posts/5")
        assert.equal("post:5", d.key)
        assert.equal(60, d.ttl)
    end)

    it("keys the feed on the credential and the user id, and may store private answers",
        function()
            local alice = decide("GET /feed",
                { Authorization = "Bearer alice", ["X-User-Id"] = "1" })
            local bob = decide("GET /feed", { Authorization = "Bearer bob", ["X-User-Id"] = "1" })
            local user2 = decide("GET /feed", { ["X-User-Id"] = "2" })
            assert.equal("cache", alice.action)
            assert.is_true(alice.per_user)
            assert.equal(30, alice.ttl)
            assert.are_not.equal(alice.key, bob.key)
            assert.equal("feed:anon:2:", user2.key)
            assert.truthy(alice.key:match("^feed:%x+:1:$"))
        end)

    it("POST /posts drops lists, per-user lists, feeds and profiles", function()
        local w = decide("POST /posts")
        assert.equal("invalidate", w.action)
        for _, read in ipairs { "GET /posts", "GET /posts?offset=20", "GET /users/3/posts",
                                "GET /users/3/profile" } do
            assert.is_true(drops(w, decide(read).key), read)
        end
        assert.is_true(drops(w, decide("GET /feed", { Cookie = "sid=1" }).key))
        assert.is_false(drops(w, decide("GET /posts/5").key))
        assert.is_false(drops(w, decide("GET /users/3").key))
    end)

    for _, m in ipairs { "PUT", "PATCH", "DELETE" } do
        it(m .. " /posts/:id drops that post and every list", function()
            local w = decide(m .. " /posts/5")
            assert.is_true(drops(w, decide("GET /posts/5").key))
            assert.is_false(drops(w, decide("GET /posts/6").key))
            assert.is_true(drops(w, decide("GET /posts?limit=3").key))
            assert.is_true(drops(w, decide("GET /users/1/posts").key))
            assert.is_true(drops(w, decide("GET /feed", { ["X-User-Id"] = "4" }).key))
            assert.equal(m == "DELETE", drops(w, decide("GET /users/1/profile").key))
        end)
    end
end)
