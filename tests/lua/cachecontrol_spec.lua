-- Cache-Control parsing (RFC 9111 section 5.2).
require "helper"
local cc = require "gateway.cachecontrol"

describe("gateway.cachecontrol", function()
    it("parses the common directives", function()
        local t = cc.parse("public, max-age=60, s-maxage=120, stale-while-revalidate=30, " ..
            "stale-if-error=300, must-revalidate")
        assert.same({ public = true, ["max-age"] = 60, ["s-maxage"] = 120,
                      ["stale-while-revalidate"] = 30, ["stale-if-error"] = 300,
                      ["must-revalidate"] = true }, t)
    end)

    it("is tolerant of case and spacing", function()
        local t = cc.parse("  NO-STORE ,Max-Age = 5 ,,  Private ")
        assert.is_true(t["no-store"])
        assert.equal(5, t["max-age"])
        assert.is_true(t.private)
    end)

    it("parses quoted values, field lists and escapes", function()
        local t = cc.parse('private="Set-Cookie, X-Secret", no-cache="x-a", ext="a\\"b,c"')
        assert.same({ "set-cookie", "x-secret" }, t.private)
        assert.same({ "x-a" }, t["no-cache"])
        assert.equal('a"b,c', t.ext)
    end)

    it("keeps the first occurrence and reads bad numbers as 0", function()
        local t = cc.parse("max-age=10, max-age=99, s-maxage=abc, min-fresh=-1")
        assert.equal(10, t["max-age"])
        assert.equal(0, t["s-maxage"])
        assert.equal(0, t["min-fresh"])
        assert.equal(0, cc.parse("max-age")["max-age"])
        assert.equal(7, cc.parse('max-age="7"')["max-age"])
    end)

    it("caps huge delta-seconds at 2^31", function()
        assert.equal(2147483648, cc.parse("max-age=99999999999999999999")["max-age"])
    end)

    it("handles max-stale with and without a value", function()
        assert.is_true(cc.parse("max-stale")["max-stale"])
        assert.equal(30, cc.parse("max-stale=30")["max-stale"])
    end)

    it("returns an empty table for nil or empty input", function()
        assert.same({}, cc.parse(nil))
        assert.same({}, cc.parse(""))
        assert.same({}, cc.parse(" , ,"))
    end)

    it("picks s-maxage for a shared cache", function()
        local t = cc.parse("max-age=10, s-maxage=100")
        assert.equal(100, cc.max_age(t, true))
        assert.equal(10, cc.max_age(t, false))
        assert.equal(10, cc.max_age(cc.parse("max-age=10"), true))
        assert.is_nil(cc.max_age(cc.parse("public"), true))
    end)
end)
