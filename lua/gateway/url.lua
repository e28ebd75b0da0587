--[[
gateway.url - percent-encoding and query strings.

  url.decode(s [, plus])   percent-decodes s; "%zz" (malformed) stays as is; with plus=true a
                           literal "+" becomes a space (the HTML form convention).
  url.encode(s)            percent-encodes every byte except RFC 3986 unreserved characters
                           (A-Z a-z 0-9 - . _ ~), with upper-case hex digits.
  url.parse_query(qs)      array of { name, value } in order, both decoded ("+" = space);
                           "a" and "a=" both give value "". Empty pairs ("&&") are skipped.
  url.query_table(qs)      name -> first value, decoded; what policies see as req.query.
  url.normalize_query(qs, ignore)
                           the canonical query used in cache keys: each name and value
                           percent-decoded and re-encoded canonically, params whose name
                           matches an ignore pattern dropped ("utm_*" is a prefix, others are
                           exact names), sorted by name then value, joined as "n=v&n=v".
                           Params with an empty value are kept.  A literal "+" is kept as
                           "+" and never merged with "%20" or "%2B": upstreams disagree on
                           what "+" means, and merging would let one spelling poison the
                           cache entry of the other.
]]
local M = {}

local byte, char, format, gsub, find, sub = string.byte, string.char, string.format,
    string.gsub, string.find, string.sub
local tonumber, type = tonumber, type
local sort, concat = table.sort, table.concat

local function hex_to_char(h)
    return char(tonumber(h, 16))
end

local function char_to_hex(c)
    return format("%%%02X", byte(c))
end

function M.decode(s, plus)
    if plus and find(s, "+", 1, true) then s = gsub(s, "%+", " ") end
    if not find(s, "%", 1, true) then return s end
    return (gsub(s, "%%(%x%x)", hex_to_char))
end

function M.encode(s)
    return (gsub(s, "[^A-Za-z0-9%-%._~]", char_to_hex))
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

-- Calls fn(raw_name, raw_value) for each non-empty "name[=value]" pair.
local function each_pair(qs, fn)
    if qs == nil or qs == "" then return end
    local pos, len = 1, #qs
    while pos <= len do
        local amp = find(qs, "&", pos, true) or (len + 1)
        if amp > pos then
            local eq = find(qs, "=", pos, true)
            if eq and eq < amp then
                fn(sub(qs, pos, eq - 1), sub(qs, eq + 1, amp - 1))
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

-- An ignore list is an array of names; a trailing "*" makes a prefix.
-- Returns a predicate name -> boolean.  Compiled once per route.
function M.compile_ignore(list)
    local exact, prefixes, np = {}, {}, 0
    for _, p in ipairs(list or {}) do
        if sub(p, -1) == "*" then
            np = np + 1
            prefixes[np] = sub(p, 1, -2)
        else
            exact[p] = true
        end
    end
    return function(name)
        if exact[name] then return true end
        for i = 1, np do
            local pre = prefixes[i]
            if sub(name, 1, #pre) == pre then return true end
        end
        return false
    end
end

local function pair_less(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
end

function M.normalize_query(qs, ignored)
    if qs == nil or qs == "" then return "" end
    local pairs_, n = {}, 0
    each_pair(qs, function(name, value)
        local cname = canonical(name)
        -- Ignore patterns are matched against the decoded name ("utm%5Fsource" is utm_source).
        if ignored and ignored(M.decode(name, true)) then return end
        n = n + 1
        pairs_[n] = { cname, canonical(value) }
    end)
    if n == 0 then return "" end
    if n > 1 then sort(pairs_, pair_less) end
    local out = {}
    for i = 1, n do
        out[i] = pairs_[i][1] .. "=" .. pairs_[i][2]
    end
    return concat(out, "&")
end

return M
