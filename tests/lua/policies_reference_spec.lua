-- What policies/reference.lua does.
local helper = require "helper"

describe("policies/reference.lua", function()
    local set = helper.load_policies()
    local function decide(spec, headers) return helper.decide(set, spec, headers) end

    for _, name in ipairs { "categories", "locations" } do
        it("caches /" .. name .. " for an hour, stale-if-error a day", function()
            local d = decide("GET /" .. name)
            assert.equal(name .. ":", d.key)
            assert.equal(3600, d.ttl)
            assert.equal(86400, d.sie)
            assert.equal("bypass", decide("GET /" .. name, { Cookie = "sid=1" }).action)
        end)
    end
end)

describe("the policy directory as a whole", function()
    -- Counted from the directory, not written down: adding a policy file, as
    -- docs/policies.md says to, must keep this suite green.
    it("loads every policy file as one set without duplicates", function()
        local names = helper.policy_files()
        local set = helper.load_policies()
        assert.equal(#names, #set.files)
        for i, name in ipairs(names) do assert.equal("policies/" .. name, set.files[i]) end
        assert.is_true(#set.routes >= 25)
    end)

    it("includes the example policies this suite describes", function()
        local have = {}
        for _, name in ipairs(helper.policy_files()) do have[name] = true end
        for _, name in ipairs { "jobs.lua", "messaging.lua", "posts.lua", "reference.lua",
                                "users.lua" } do
            assert.is_true(have[name], name)
        end
    end)

    it("covers every route of the example API", function()
        local set = helper.load_policies()
        local api = {
            "GET /users", "POST /users", "GET /users/1", "PUT /users/1", "PATCH /users/1",
            "DELETE /users/1", "GET /users/1/profile", "GET /users/1/posts", "GET /posts",
            "POST /posts", "GET /posts/1", "PUT /posts/1", "PATCH /posts/1", "DELETE /posts/1",
            "GET /feed", "GET /jobs", "POST /jobs", "GET /jobs/stats", "GET /jobs/1",
            "GET /messages", "POST /messages", "GET /conversations", "GET /notifications",
            "GET /categories", "GET /locations",
        }
        for _, spec in ipairs(api) do
            local d = helper.decide(set, spec)
            assert.are_not.equal(0, d.route_id, spec)
        end
    end)
end)
