--[[
gateway.url - percent-encoding and query strings.

  url.decode(s [, plus])   percent-decodes s; "%zz" (malformed) stays as is; with plus=true a
                           literal "+" becomes a space (the HTML form convention).
  url.encode(s)            percent-encodes every byte except RFC 3986 unreserved characters
                           (A-Z a-z 0-9 - . _ ~), with upper-case hex digits.
  url.parse_query(qs)      array of { name, value } in order, both decoded ("+" = space);
                           "a" and "a=" both give value "". Empty pairs ("&&") are skipped.
  url.query_table(qs)      name -> first value, decoded; what policies see as req.query.
  url.compile_ignore(list) the ignore predicate of a route: name -> boolean for an array of
                           names, a trailing "*" making a prefix ("utm_*").  When the C
                           helpers are present (the gateway, and cachegw_helpers in the
                           specs) and every entry is a string, a gw.query_ignore object is
                           compiled alongside it, once, so normalize_query runs in C.
  url.normalize_query(qs, ignore)
                           the canonical query used in cache keys: each name and value
                           percent-decoded and re-encoded canonically, params whose name
                           matches an ignore pattern dropped ("utm_*" is a prefix, others are
                           exact names), sorted by name only and stably, so repeated names
                           keep their order ("a=2&a=1" and "a=1&a=2" differ: first-wins
                           upstreams answer them differently), joined as "n=v&n=v".
                           Params with an empty value are kept.  A literal "+" is kept as
                           "+" and never merged with "%20" or "%2B": upstreams disagree on
                           what "+" means, and merging would let one spelling poison the
                           cache entry of the other.  A query without any "%" keeps its
                           components as sent (only sorted and filtered).
                           Runs gw.normalize_query (src/policy/query_norm.c) when the helpers are
                           present and ignore is nil or came from compile_ignore; any other
                           predicate uses the reference below.
  url.normalize_query_lua(qs, ignore)
                           the pure-Lua reference of the same function: the specification
                           the C version is tested against (tests/lua/query_c_spec.lua,
                           tests/unit/test_query_norm.c).  Not memoised.
  url.MAX_PARAMS           256: parse_query, query_table and normalize_query raise
                           "query string has more than 256 parameters" past it.  (The C side
                           answers 414 past MAX_QUERY_PARAMS, 128, before Lua sees them; this
                           bounds the library on its own.)  Everything here is linear in the
                           query's length, plus n log n comparisons of names for sorting.
]]
local M = {}

local char, format, gsub, find, sub = string.char, string.format, string.gsub, string.find,
    string.sub
local tonumber, type = tonumber, type
local sort, concat = table.sort, table.concat

-- gsub with a table is much cheaper than with a function (no Lua call per match).
local HEX_TO_CHAR, CHAR_TO_HEX = {}, {}
for b = 0, 255 do
    local hi, lo = format("%02X", b), format("%02x", b)
    HEX_TO_CHAR[hi] = char(b)
    HEX_TO_CHAR[lo] = char(b)
    HEX_TO_CHAR[sub(hi, 1, 1) .. sub(lo, 2, 2)] = char(b)
    HEX_TO_CHAR[sub(lo, 1, 1) .. sub(hi, 2, 2)] = char(b)
    CHAR_TO_HEX[char(b)] = "%" .. hi
end

function M.decode(s, plus)
    if plus and find(s, "+", 1, true) then s = gsub(s, "%+", " ") end
    if not find(s, "%", 1, true) then return s end
    return (gsub(s, "%%(%x%x)", HEX_TO_CHAR))
end

function M.encode(s)
    return (gsub(s, "[^A-Za-z0-9%-%._~]", CHAR_TO_HEX))
end

-- Canonical form of one query component: decoded then re-encoded, literal "+" kept.
local function canonical(s)
    if not find(s, "[^A-Za-z0-9%-%._~]") then return s end
    if find(s, "+", 1, true) then
        local out, n, pos = {}, 0, 1
        while true do
            local p = find(s, "+", pos, true)
            n = n + 1
            if not p then
                out[n] = M.encode(M.decode(sub(s, pos)))
                break
            end
            out[n] = M.encode(M.decode(sub(s, pos, p - 1)))
            pos = p + 1
        end
        return concat(out, "+")
    end
    return M.encode(M.decode(s))
end

M.MAX_PARAMS = 256
local MAX_PARAMS = M.MAX_PARAMS

local function too_many()
    error("query string has more than " .. MAX_PARAMS .. " parameters", 0)
end

-- Calls fn(raw_name, raw_value) for each non-empty "name[=value]" pair.  The next "=" is
-- remembered across pairs, so "&&&...=" is not rescanned once per pair.
local function each_pair(qs, fn)
    if qs == nil or qs == "" then return end
    local pos, len, n = 1, #qs, 0
    local eq_at = 0 -- the first "=" at or after pos (once looked up), or false: none left
    while pos <= len do
        local amp = find(qs, "&", pos, true) or (len + 1)
        if amp > pos then
            n = n + 1
            if n > MAX_PARAMS then too_many() end
            if eq_at and eq_at < pos then eq_at = find(qs, "=", pos, true) or false end
            if eq_at and eq_at < amp then
                fn(sub(qs, pos, eq_at - 1), sub(qs, eq_at + 1, amp - 1))
            else
                fn(sub(qs, pos, amp - 1), "")
            end
        end
        pos = amp + 1
    end
end

function M.parse_query(qs)
    local list, n = {}, 0
    each_pair(qs, function(name, value)
        n = n + 1
        list[n] = { M.decode(name, true), M.decode(value, true) }
    end)
    return list
end

function M.query_table(qs)
    local t = {}
    each_pair(qs, function(name, value)
        name = M.decode(name, true)
        if t[name] == nil then t[name] = M.decode(value, true) end
    end)
    return t
end

-- The C helpers, when this runs in the gateway or next to cachegw_helpers.so.  Captured
-- once: later changes to the gw table (read-only in the sandbox anyway) change nothing.
local c_normalize, c_ignore
do
    local ok, gw = pcall(require, "cachegw_helpers")
    if ok and type(gw) == "table" and type(gw.normalize_query) == "function"
        and type(gw.query_ignore) == "function" then
        c_normalize, c_ignore = gw.normalize_query, gw.query_ignore
    end
end

-- predicate (from compile_ignore) -> its gw.query_ignore object.  Weak keys: a route's
-- predicate and its object go together.
local C_IGNORE = setmetatable({}, { __mode = "k" })

-- An ignore list is an array of names; a trailing "*" makes a prefix.
-- Returns a predicate name -> boolean.  Compiled once per route.
function M.compile_ignore(list)
    local exact, prefixes, np = {}, {}, 0
    local strings, all_strings = {}, true
    for i, p in ipairs(list or {}) do
        if sub(p, -1) == "*" then
            np = np + 1
            prefixes[np] = sub(p, 1, -2)
        else
            exact[p] = true
        end
        if type(p) == "string" then strings[i] = p else all_strings = false end
    end
    local function ignored(name)
        if exact[name] then return true end
        for i = 1, np do
            local pre = prefixes[i]
            if sub(name, 1, #pre) == pre then return true end
        end
        return false
    end
    -- Only lists of strings: a number entry never matches a (string) name in the
    -- predicate above, so the C object, which compares bytes, would differ from it.
    if c_ignore and all_strings then C_IGNORE[ignored] = c_ignore(strings) end
    return ignored
end

local function normalize(qs, ignored)
    -- Without any "%", components are kept as sent: equal strings mean equal requests, so
    -- that is safe, and it skips canonicalisation for most real queries.  (A component
    -- with no "%" that canonicalisation would change, such as "a,b", only costs a second
    -- entry next to its canonical spelling; distinct requests never share one.)
    local simple = not find(qs, "%", 1, true)
    local items, names, n = {}, {}, 0
    local sorted = true
    local prev_name
    each_pair(qs, function(name, value)
        -- Ignore patterns see the decoded name ("utm%5Fsource" is utm_source).
        if ignored and ignored(simple and name or M.decode(name, true)) then return end
        if not simple then name, value = canonical(name), canonical(value) end
        if n > 0 and name < prev_name then sorted = false end
        n = n + 1
        names[n] = name
        items[n] = name .. "=" .. value
        prev_name = name
    end)
    if n == 0 then return "" end
    if not sorted then
        -- Stable, by name only: the values of a repeated name keep the order they were
        -- sent in (table.sort is not stable, so ties go by position).
        local order = {}
        for i = 1, n do order[i] = i end
        sort(order, function(a, b)
            local na, nb = names[a], names[b]
            if na ~= nb then return na < nb end
            return a < b
        end)
        local out = {}
        for i = 1, n do out[i] = items[order[i]] end
        items = out
    end
    return concat(items, "&")
end

-- The reference, not memoised (the memo of queries up to 200 bytes that normalize_query
-- had went with the move to C: see normalize_query).
function M.normalize_query_lua(qs, ignored)
    if qs == nil or qs == "" then return "" end
    return normalize(qs, ignored)
end

function M.normalize_query(qs, ignored)
    if qs == nil or qs == "" then return "" end
    if c_normalize then
        if ignored == nil then return c_normalize(qs) end
        local ci = C_IGNORE[ignored]
        if ci then return c_normalize(qs, ci) end
    end
    return normalize(qs, ignored)
end

return M
