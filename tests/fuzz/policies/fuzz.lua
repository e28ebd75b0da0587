-- tests/fuzz/policies/fuzz.lua - routes that make the gateway's Lua library parse
-- everything a client controls: the cookie header (req.cookie), the query
-- (req.query, {query} normalisation), path params and header placeholders.
-- Used by fuzz_lua_request only.

route "GET /c/:id" {
    key = function(req)
        local parts = {}
        for k, v in pairs(req.cookie) do parts[#parts + 1] = k .. "=" .. v end
        for k, v in pairs(req.query) do parts[#parts + 1] = k .. "=" .. v end
        table.sort(parts)
        return "c:" .. req.params.id .. ":" .. table.concat(parts, "&")
    end,
    ttl = 10,
}

route "GET /q/:id" { key = "q:{id}:{query}:{header.x-k}", ttl = 10 }

route "GET /s/:id" { key = "s:{id}:{auth_hash}", ttl = 10 }
