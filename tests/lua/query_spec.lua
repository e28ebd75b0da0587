-- Query strings: canonical form for keys, and the decoded table policies see.
require "helper"
local url = require "gateway.url"
local keys = require "gateway.keys"

local DEFAULT = url.compile_ignore(keys.default_ignore())

describe("gateway.url", function()
    describe("normalize_query", function()
        it("sorts params by name only, keeping the order of repeated names", function()
            -- issue 8, item 17: first-wins upstreams answer a=2&a=1 and a=1&a=2 differently
            assert.equal("a=2&a=1&b=3", url.normalize_query("b=3&a=2&a=1", DEFAULT))
            assert.equal("a=1&a=2&b=3", url.normalize_query("b=3&a=1&a=2", DEFAULT))
            assert.are_not.equal(url.normalize_query("a=1&a=2", DEFAULT),
                url.normalize_query("a=2&a=1", DEFAULT))
            assert.equal("a=1&b=2", url.normalize_query("a=1&b=2", DEFAULT))
            -- stable with many ties, encoded or not
            assert.equal("k=3&k=1&k=2&z=0", url.normalize_query("z=0&k=3&k=1&k=2", DEFAULT))
            assert.equal("k=%20&k=a&z=0", url.normalize_query("z=0&k=%20&k=a", DEFAULT))
        end)

        it("drops utm_*, fbclid and gclid by default", function()
            assert.equal("page=2", url.normalize_query(
                "utm_source=x&page=2&fbclid=abc&gclid=1&utm_campaign=y", DEFAULT))
            assert.equal("", url.normalize_query("utm_source=x", DEFAULT))
            -- a prefix only where the pattern says so
            assert.equal("fbclid2=1", url.normalize_query("fbclid2=1", DEFAULT))
        end)

        it("honours a custom ignore list, matched on decoded names", function()
            local ign = url.compile_ignore { "session", "x_*" }
            assert.equal("a=1", url.normalize_query("session=9&a=1&x_y=2&x%5Fz=3", ign))
        end)

        it("keeps empty params and treats 'a' like 'a='", function()
            assert.equal("a=&b=", url.normalize_query("b&a=", DEFAULT))
            assert.equal("q=", url.normalize_query("q=&&", DEFAULT))
        end)

        it("normalises percent-encoding", function()
            -- unreserved characters are decoded, everything else upper-case %XX
            assert.equal(url.normalize_query("q=%7Euser%41", DEFAULT),
                url.normalize_query("q=~userA", DEFAULT))
            assert.equal("q=caf%C3%A9", url.normalize_query("q=caf%c3%a9", DEFAULT))
            -- without any "%" the components are kept as sent
            assert.equal("q=caf\xc3\xa9", url.normalize_query("q=caf\xc3\xa9", DEFAULT))
            assert.equal("q=caf%C3%A9&r=A", url.normalize_query("q=caf\xc3\xa9&r=%41", DEFAULT))
            assert.equal("n%20m=1", url.normalize_query("n%20m=1", DEFAULT))
            -- malformed escapes are kept (as data), never decoded
            assert.equal("q=%25zz", url.normalize_query("q=%zz", DEFAULT))
        end)

        it("never merges '+' with %20 or %2B", function()
            local plus = url.normalize_query("q=a+b", DEFAULT)
            local space = url.normalize_query("q=a%20b", DEFAULT)
            local encoded_plus = url.normalize_query("q=a%2Bb", DEFAULT)
            assert.equal("q=a+b", plus)
            assert.equal("q=a%20b", space)
            assert.equal("q=a%2Bb", encoded_plus)
        end)

        it("sorts names that prefix each other correctly", function()
            assert.equal("a=2&a-b=0&b=1", url.normalize_query("b=1&a=2&a-b=0", DEFAULT))
            assert.equal("a=2&a=1&a-b=1", url.normalize_query("a-b=1&a=2&a=1", DEFAULT))
            assert.equal("x=b=c", url.normalize_query("x=b=c", DEFAULT))
        end)

        it("answers repeated and long queries the same as the Lua reference", function()
            for i = 1, 1000 do
                local qs = "b=1&a=" .. i
                assert.equal("a=" .. i .. "&b=1", url.normalize_query(qs, DEFAULT))
                assert.equal(url.normalize_query_lua(qs, DEFAULT),
                    url.normalize_query(qs, DEFAULT))
            end
            assert.equal("a=1&b=1", url.normalize_query("b=1&a=1", DEFAULT))
            local long = "z=" .. string.rep("y", 300) .. "&a=1"
            assert.equal("a=1&z=" .. string.rep("y", 300), url.normalize_query(long, DEFAULT))
            assert.equal(url.normalize_query_lua(long, DEFAULT), url.normalize_query(long, DEFAULT))
        end)

        it("accepts a predicate of its own (the reference decides then)", function()
            local function drop_b(name) return name == "b" end
            assert.equal("a=%20&c=1", url.normalize_query("c=1&b=2&a=%20", drop_b))
            assert.equal("a=1&b=2&c=1", url.normalize_query("c=1&b=2&a=1"))
        end)

        it("returns '' for no query", function()
            assert.equal("", url.normalize_query(nil, DEFAULT))
            assert.equal("", url.normalize_query("", DEFAULT))
        end)
    end)

    describe("query_table", function()
        it("decodes names and values and keeps the first value", function()
            local q = url.query_table("q=caf%C3%A9+au+lait&a=1&a=2&empty&x%20y=z")
            assert.equal("café au lait", q.q)
            assert.equal("1", q.a)
            assert.equal("", q.empty)
            assert.equal("z", q["x y"])
        end)
    end)

    it("encodes and decodes", function()
        assert.equal("a%20b%2F~", url.encode("a b/~"))
        assert.equal("a b/~", url.decode("a%20b%2F~"))
        assert.equal("a+b", url.decode("a+b"))
        assert.equal("a b", url.decode("a+b", true))
    end)
end)
