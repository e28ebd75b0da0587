-- What policies/jobs.lua does.
local helper = require "helper"

describe("policies/jobs.lua", function()
    local set = helper.load_policies()
    local function decide(spec, headers) return helper.decide(set, spec, headers) end

    it("caches listings for 300 s, per normalised query", function()
        local d = decide("GET /jobs?remote=true&category_id=2")
        assert.equal("jobs:category_id=2&remote=true", d.key)
        assert.equal(300, d.ttl)
        assert.equal(600, d.sie)
    end)

    it("routes /jobs/stats to its own entry (literal beats :id) for 600 s", function()
        local d = decide("GET /jobs/stats")
        assert.equal("jobs_stats", d.key)
        assert.equal(600, d.ttl)
    end)

    it("caches one job for 300 s but never stores a 5xx", function()
        local d = decide("GET /jobs/12")
        assert.equal("job:12", d.key)
        assert.equal(300, d.ttl)
        local req = helper.request("GET /jobs/12")
        assert.same({ store = false }, set:on_response(d.route_id, req, { status = 502 }))
        assert.is_nil(set:on_response(d.route_id, req, { status = 200 }))
    end)

    it("POST /jobs drops every listing and the stats", function()
        local d = decide("POST /jobs")
        assert.same({ { key = "jobs:", prefix = true }, { key = "jobs_stats", prefix = false } },
            d.invalidate)
    end)
end)
