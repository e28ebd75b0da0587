-- What policies/messaging.lua does: private data, cached per user only.
local helper = require "helper"

describe("policies/messaging.lua", function()
    local set = helper.load_policies()
    local function decide(spec, headers) return helper.decide(set, spec, headers) end

    local routes = { { "/messages", "messages", 30 }, { "/conversations", "conversations", 60 },
                     { "/notifications", "notifications", 30 } }
    for _, r in ipairs(routes) do
        local path, family, ttl = r[1], r[2], r[3]
        it("caches GET " .. path .. " per user for " .. ttl .. " s", function()
            local a = decide("GET " .. path, { Cookie = "sid=a", ["X-User-Id"] = "1" })
            local b = decide("GET " .. path, { Cookie = "sid=b", ["X-User-Id"] = "1" })
            local c = decide("GET " .. path, { ["X-User-Id"] = "2" })
            assert.equal("cache", a.action)
            assert.is_true(a.per_user)
            assert.equal(ttl, a.ttl)
            assert.are_not.equal(a.key, b.key) -- same claimed user, different credentials
            assert.equal(family .. ":anon:2:", c.key)
            assert.truthy(a.key:find("^" .. family .. ":"))
        end)
    end

    it("POST /messages drops every user's messages, conversations and notifications", function()
        assert.same({ { key = "messages:", prefix = true },
                      { key = "conversations:", prefix = true },
                      { key = "notifications:", prefix = true } },
            decide("POST /messages").invalidate)
    end)
end)
