-- JSON encode/decode.
require "helper"
local json = require "gateway.json"

describe("gateway.json", function()
    it("round-trips nested values", function()
        local v = { name = "x", list = { 1, 2.5, "three", true, false }, obj = { a = { b = {} } } }
        local back = json.decode(json.encode(v))
        assert.equal("x", back.name)
        assert.same({ 1, 2.5, "three", true, false }, { table.unpack(back.list) })
        assert.same({}, back.obj.a.b)
    end)

    it("encodes objects with sorted keys, so equal tables encode equally", function()
        assert.equal('{"a":1,"b":[1,2],"c":"x"}', json.encode { c = "x", a = 1, b = { 1, 2 } })
        assert.equal('{"1":"a","3":"b"}', json.encode { [1] = "a", [3] = "b" })
    end)

    it("tells arrays from objects, with a marker for empty arrays", function()
        assert.equal("{}", json.encode {})
        assert.equal("[]", json.encode(json.array {}))
        assert.equal("[[]]", json.encode { json.array() })
        assert.is_true(json.is_array(json.decode("[]")))
        assert.is_false(json.is_array(json.decode("{}")))
    end)

    it("escapes strings", function()
        assert.equal([["a\"b\\c\n\t\u0001\u001f"]], json.encode('a"b\\c\n\t\1\31'))
        assert.equal('"é"', json.encode("é"))
    end)

    it("decodes escapes, \\u and surrogate pairs", function()
        assert.equal('a"b\\c/\n\t', json.decode([["a\"b\\c\/\n\t"]]))
        assert.equal("é", json.decode([["\u00e9"]]))
        assert.equal("😀", json.decode([["\ud83d\ude00"]]))
        assert.equal("\0", json.decode([["\u0000"]]))
    end)

    it("handles numbers", function()
        assert.equal("12", json.encode(12))
        assert.equal("-0.5", json.encode(-0.5))
        assert.equal("3", json.encode(3.0))
        assert.equal(0.1, json.decode(json.encode(0.1)))
        assert.equal(1e300, json.decode(json.encode(1e300)))
        assert.equal("integer", math.type(json.decode("42")))
        assert.equal(-125.0, json.decode("-1.25e2"))
        assert.has_error(function() json.encode(0 / 0) end)
        assert.has_error(function() json.encode(math.huge) end)
    end)

    it("decodes null as json.null so arrays keep their length", function()
        local a = json.decode("[1,null,3]")
        assert.equal(3, #a)
        assert.equal(json.null, a[2])
        assert.equal("[1,null,3]", json.encode(a))
        assert.equal("null", json.encode(nil))
    end)

    it("rejects malformed input with a position", function()
        for _, bad in ipairs { "", "01", "1.", "-", ".5", "[1,]", "{\"a\"}", "{a:1}", "tru",
                               "[1] x", '"\\ud800"', '"a\tb"', '"\\x"', '"abc', "[", "nul" } do
            local ok, err = pcall(json.decode, bad)
            assert.is_false(ok, bad)
            assert.truthy(err:match("^json: .* at byte %d+$"), err)
        end
    end)

    it("refuses cycles, odd keys and odd values", function()
        local t = {}
        t.self = t
        assert.has_error(function() json.encode(t) end, "json: cannot encode a table cycle")
        assert.has_error(function() json.encode { [true] = 1 } end)
        assert.has_error(function() json.encode(print) end)
    end)

    it("bounds nesting depth", function()
        local deep = string.rep("[", 300) .. string.rep("]", 300)
        assert.has_error(function() json.decode(deep) end)
        local ok = pcall(json.decode, string.rep("[", 100) .. string.rep("]", 100))
        assert.is_true(ok)
    end)
end)
