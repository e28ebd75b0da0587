-- What policies/users.lua does.  A model for testing your own policies: load the policy
-- directory as the gateway does, then ask for decisions as the gateway would.
local helper = require "helper"

describe("policies/users.lua", function()
    local set = helper.load_policies()
    local function decide(spec, headers) return helper.decide(set, spec, headers) end

    it("caches one user for 300 s under users:{id}", function()
        local d = decide("GET /users/42")
        assert.equal("cache", d.action)
        assert.equal("users:42", d.key)
        assert.equal(300, d.ttl)
    end)

    it("keeps a 404 for 30 s only", function()
        local d = decide("GET /users/999")
        assert.is_true(d.has_response_hook)
        local req = helper.request("GET /users/999")
        assert.same({ store = true, ttl = 30 }, set:on_response(d.route_id, req,
            { status = 404, header = {} }))
        assert.is_nil(set:on_response(d.route_id, req, { status = 200, header = {} }))
    end)

    it("caches the profile for 180 s and the user's posts for 120 s, per page", function()
        local p = decide("GET /users/42/profile")
        assert.equal("user_profile:42", p.key)
        assert.equal(180, p.ttl)
        local a = decide("GET /users/42/posts?limit=5&offset=10")
        local b = decide("GET /users/42/posts?offset=10&limit=5&utm_source=mail")
        assert.equal("posts_user:42:limit=5&offset=10", a.key)
        assert.equal(a.key, b.key)
        assert.equal(120, a.ttl)
    end)

    it("caches the user list for 300 s", function()
        local d = decide("GET /users?offset=20")
        assert.equal("users_list:offset=20", d.key)
        assert.equal(300, d.ttl)
    end)

    it("never serves a credentialed request from these shared entries", function()
        local d = decide("GET /users/42", { Authorization = "Bearer t" })
        assert.equal("bypass", d.action)
        assert.equal("credentials", d.reason)
    end)

    for _, m in ipairs { "PUT", "PATCH", "DELETE" } do
        it(m .. " /users/:id drops that user, their profile and the lists", function()
            local d = decide(m .. " /users/42")
            assert.equal("invalidate", d.action)
            assert.same({ { key = "users:42", prefix = false },
                          { key = "user_profile:42", prefix = false },
                          { key = "users_list:", prefix = true } }, d.invalidate)
        end)
    end

    it("POST /users drops the lists only", function()
        assert.same({ { key = "users_list:", prefix = true } }, decide("POST /users").invalidate)
    end)

    it("invalidates exactly the keys the reads use", function()
        local read = decide("GET /users/7").key
        local prof = decide("GET /users/7/profile").key
        local inv = decide("PUT /users/7").invalidate
        assert.equal(read, inv[1].key)
        assert.equal(prof, inv[2].key)
        local list = decide("GET /users?limit=1").key
        assert.equal(inv[3].key, list:sub(1, #inv[3].key))
    end)
end)
