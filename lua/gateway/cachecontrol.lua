--[[
gateway.cachecontrol - parse a Cache-Control header value (RFC 9111 section 5.2).

  cachecontrol.parse(value) -> table
      value is the field value (several field lines may be joined with ", "), or nil.
      Directive names are lower-cased.  Directives that take delta-seconds (max-age,
      s-maxage, stale-while-revalidate, stale-if-error, min-fresh, and max-stale when it
      has a value) become integers; an unparsable number becomes 0, the conservative
      reading (treat as stale), and a value past 2^31 is capped at 2147483648 as RFC 9111
      section 1.2.2 asks.  "private" and "no-cache" with a field list become an array of
      lower-cased field names; without one, true.  Other directives become true or their
      (unquoted) string value.  The first occurrence of a directive wins.  Whitespace, case
      and quoted strings (with backslash escapes, and commas inside quotes) are tolerated;
      garbage between directives is skipped.

  cachecontrol.max_age(cc, shared) -> seconds or nil
      s-maxage for a shared cache (shared=true), else max-age.
]]
local M = {}

local find, sub, lower, match, gsub = string.find, string.sub, string.lower, string.match,
    string.gsub
local tonumber, floor = tonumber, math.floor

local DELTA = {
    ["max-age"] = true, ["s-maxage"] = true, ["stale-while-revalidate"] = true,
    ["stale-if-error"] = true, ["min-fresh"] = true, ["max-stale"] = true,
}
local FIELD_LIST = { ["private"] = true, ["no-cache"] = true }
local DELTA_MAX = 2147483648

local function delta_seconds(v)
    if not find(v, "^%d+$") then return 0 end
    local n = tonumber(v)
    if n == nil or n > DELTA_MAX then return DELTA_MAX end
    return floor(n)
end

local function field_list(v)
    local list, n = {}, 0
    for name in string.gmatch(v, "[^,%s]+") do
        n = n + 1
        list[n] = lower(name)
    end
    return list
end

function M.parse(value)
    local cc = {}
    if value == nil then return cc end
    local s, pos, len = value, 1, #value
    while pos <= len do
        -- Skip separators and whitespace.
        local a = find(s, "[^,%s]", pos)
        if not a then break end
        local name_end = (find(s, "[=,%s]", a) or (len + 1)) - 1
        local name = lower(sub(s, a, name_end))
        pos = name_end + 1
        -- Optional "= value", allowing spaces around "=".
        local eq = match(s, "^%s*=%s*()", pos)
        local val
        if eq then
            pos = eq
            if sub(s, pos, pos) == '"' then
                local buf, i = {}, pos + 1
                while i <= len do
                    local c = sub(s, i, i)
                    if c == "\\" and i < len then
                        buf[#buf + 1] = sub(s, i + 1, i + 1)
                        i = i + 2
                    elseif c == '"' then
                        i = i + 1
                        break
                    else
                        buf[#buf + 1] = c
                        i = i + 1
                    end
                end
                val = table.concat(buf)
                pos = i
            else
                local e = (find(s, "[,%s]", pos) or (len + 1)) - 1
                val = sub(s, pos, e)
                pos = e + 1
            end
        end
        -- Skip anything up to the next comma (junk such as "max-age=1 2").
        local comma = find(s, ",", pos, true)
        pos = comma and comma + 1 or len + 1
        if name ~= "" and cc[name] == nil then
            if DELTA[name] then
                if val == nil then
                    -- max-stale alone means "any staleness"; the others need a value.
                    if name == "max-stale" then cc[name] = true else cc[name] = 0 end
                else
                    cc[name] = delta_seconds(gsub(val, "^%s+", ""))
                end
            elseif FIELD_LIST[name] and val ~= nil and val ~= "" then
                cc[name] = field_list(val)
            elseif val ~= nil then
                cc[name] = val
            else
                cc[name] = true
            end
        end
    end
    return cc
end

function M.max_age(cc, shared)
    if shared and cc["s-maxage"] ~= nil then return cc["s-maxage"] end
    return cc["max-age"]
end

return M
