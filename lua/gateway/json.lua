--[[
gateway.json - a small, strict JSON encoder and decoder.

  json.encode(value) -> string
      nil / json.null -> null; booleans; numbers (integers exactly, floats with 17
      significant digits; NaN and infinities raise); strings with every control character,
      '"' and '\' escaped (other bytes, UTF-8 included, pass through); tables: a table whose
      keys are exactly 1..n is an array, any other table an object with string keys (number
      keys are written as strings) in sorted order, so equal tables encode equally (useful in
      cache keys).  An empty table encodes as {} unless marked with json.array(t).  Cycles
      and nesting deeper than 256 raise.
  json.decode(text) -> value
      Strict RFC 8259: one value, optional surrounding whitespace.  Objects become tables,
      arrays become tables marked as arrays (json.is_array), null becomes json.null (so
      arrays keep their length), \uXXXX escapes (surrogate pairs included) become UTF-8.
      Errors raise "json: <what> at byte N".
  json.null        a unique sentinel for JSON null.
  json.array(t)    marks t as an array (returns t); json.is_array(t) tests the mark.
]]
local M = {}

local byte, find, format, gsub, match, sub = string.byte, string.find, string.format,
    string.gsub, string.match, string.sub
local concat, sort = table.concat, table.sort
local type, pairs, tostring, tonumber, error, setmetatable, getmetatable, rawlen =
    type, pairs, tostring, tonumber, error, setmetatable, getmetatable, rawlen
local math_type, huge, floor = math.type, math.huge, math.floor
local utf8_char = utf8.char

local MAX_DEPTH = 256

-- Every policy file and request shares json.null and the array mark, so neither their
-- metatables nor json.null itself may be changeable (issue 8, item 21): __metatable hides
-- the metatables, and json.null refuses writes ("cachegw.protected" also makes the
-- gateway's rawset refuse it).
M.null = setmetatable({}, {
    __tostring = function() return "json.null" end,
    __newindex = function() error("json.null is read-only", 2) end,
    __metatable = "cachegw.protected",
})

-- What getmetatable says of an array: a function, so nobody can store anything in it,
-- and nobody outside this module can hand out the metatable itself.
local ARRAY_MARK = function() end
local ARRAY_MT = { __name = "json.array", __metatable = ARRAY_MARK }

function M.array(t)
    t = t or {}
    if getmetatable(t) == nil then setmetatable(t, ARRAY_MT) end
    return t
end

local function is_array(t)
    return getmetatable(t) == ARRAY_MARK
end
M.is_array = is_array

-- Encoding ---------------------------------------------------------------------------------

local ESCAPES = {
    ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
    ["\r"] = "\\r", ["\t"] = "\\t",
}

local function escape_char(c)
    return ESCAPES[c] or format("\\u%04x", byte(c))
end

local function encode_string(s)
    if find(s, '[%c"\\]') then s = gsub(s, '[%c"\\]', escape_char) end
    return '"' .. s .. '"'
end

local function encode_number(n)
    if n ~= n or n == huge or n == -huge then
        error("json: cannot encode " .. tostring(n), 0)
    end
    if math_type(n) == "integer" then return format("%d", n) end
    if n == floor(n) and n >= -2 ^ 53 and n <= 2 ^ 53 then return format("%.0f", n) end
    return format("%.17g", n)
end

local encode_value

local function array_length(t)
    local n = rawlen(t)
    local count = 0
    for k in pairs(t) do
        if math_type(k) ~= "integer" or k < 1 or k > n then return nil end
        count = count + 1
    end
    if count ~= n then return nil end
    return n
end

local function key_less(a, b)
    return a < b
end

local function encode_table(t, out, depth, seen)
    if seen[t] then error("json: cannot encode a table cycle", 0) end
    if depth > MAX_DEPTH then error("json: nesting too deep", 0) end
    seen[t] = true
    local n = array_length(t)
    if n and (n > 0 or is_array(t)) then
        out[#out + 1] = "["
        for i = 1, n do
            if i > 1 then out[#out + 1] = "," end
            encode_value(t[i], out, depth + 1, seen)
        end
        out[#out + 1] = "]"
    else
        local keys, nk = {}, 0
        for k in pairs(t) do
            local tk = type(k)
            if tk == "number" then
                k = encode_number(k)
            elseif tk ~= "string" then
                error("json: cannot encode a table key of type " .. tk, 0)
            end
            nk = nk + 1
            keys[nk] = k
        end
        sort(keys, key_less)
        out[#out + 1] = "{"
        for i = 1, nk do
            local k = keys[i]
            local v = t[k]
            if v == nil then v = t[tonumber(k)] end
            if i > 1 then out[#out + 1] = "," end
            out[#out + 1] = encode_string(k)
            out[#out + 1] = ":"
            encode_value(v, out, depth + 1, seen)
        end
        out[#out + 1] = "}"
    end
    seen[t] = nil
end

encode_value = function(v, out, depth, seen)
    local tv = type(v)
    if v == nil or v == M.null then
        out[#out + 1] = "null"
    elseif tv == "boolean" then
        out[#out + 1] = v and "true" or "false"
    elseif tv == "number" then
        out[#out + 1] = encode_number(v)
    elseif tv == "string" then
        out[#out + 1] = encode_string(v)
    elseif tv == "table" then
        encode_table(v, out, depth, seen)
    else
        error("json: cannot encode a value of type " .. tv, 0)
    end
end

function M.encode(v)
    local out = {}
    encode_value(v, out, 0, {})
    return concat(out)
end

-- Decoding ---------------------------------------------------------------------------------

local function fail(what, pos)
    error(format("json: %s at byte %d", what, pos), 0)
end

local function skip_ws(s, pos)
    return find(s, "[^ \t\r\n]", pos) or (#s + 1)
end

local decode_value

local UNESCAPES = {
    ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t",
}

local function decode_string(s, pos)
    -- pos is at the opening quote.
    local buf, n = {}, 0
    local i = pos + 1
    while true do
        local j = find(s, '["\\%c]', i)
        if not j then fail("unterminated string", pos) end
        if j > i then
            n = n + 1
            buf[n] = sub(s, i, j - 1)
        end
        local c = sub(s, j, j)
        if c == '"' then
            return concat(buf), j + 1
        elseif c == "\\" then
            local e = sub(s, j + 1, j + 1)
            local simple = UNESCAPES[e]
            if simple then
                n = n + 1
                buf[n] = simple
                i = j + 2
            elseif e == "u" then
                local hex = sub(s, j + 2, j + 5)
                if not find(hex, "^%x%x%x%x$") then fail("bad \\u escape", j) end
                local cp = tonumber(hex, 16)
                i = j + 6
                if cp >= 0xD800 and cp <= 0xDBFF then
                    local lo = sub(s, i, i + 5)
                    if not find(lo, "^\\u[dD][c-fC-F]%x%x$") then
                        fail("unpaired surrogate", j)
                    end
                    cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(sub(lo, 3), 16) - 0xDC00)
                    i = i + 6
                elseif cp >= 0xDC00 and cp <= 0xDFFF then
                    fail("unpaired surrogate", j)
                end
                n = n + 1
                buf[n] = utf8_char(cp)
            else
                fail("bad escape", j)
            end
        else
            fail("control character in string", j)
        end
    end
end

local function decode_number(s, pos)
    -- RFC 8259 grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [-+]? [0-9]+)?
    local p = match(s, "^%-?()", pos)
    local after_int = match(s, "^0()", p) or match(s, "^[1-9]%d*()", p)
    if not after_int then fail("bad number", pos) end
    local after_frac = after_int
    if sub(s, after_int, after_int) == "." then
        after_frac = match(s, "^%.%d+()", after_int)
        if not after_frac then fail("bad number", pos) end
    end
    local after_exp = after_frac
    if find(sub(s, after_frac, after_frac), "^[eE]") then
        after_exp = match(s, "^[eE][-+]?%d+()", after_frac)
        if not after_exp then fail("bad number", pos) end
    end
    local v = tonumber(sub(s, pos, after_exp - 1))
    if v == nil then fail("bad number", pos) end
    return v, after_exp
end

local function decode_array(s, pos, depth)
    local arr, n = M.array({}), 0
    pos = skip_ws(s, pos + 1)
    if sub(s, pos, pos) == "]" then return arr, pos + 1 end
    while true do
        local v
        v, pos = decode_value(s, pos, depth + 1)
        n = n + 1
        arr[n] = v
        pos = skip_ws(s, pos)
        local c = sub(s, pos, pos)
        if c == "]" then return arr, pos + 1 end
        if c ~= "," then fail("expected ',' or ']'", pos) end
        pos = skip_ws(s, pos + 1)
    end
end

local function decode_object(s, pos, depth)
    local obj = {}
    pos = skip_ws(s, pos + 1)
    if sub(s, pos, pos) == "}" then return obj, pos + 1 end
    while true do
        if sub(s, pos, pos) ~= '"' then fail("expected string key", pos) end
        local k
        k, pos = decode_string(s, pos)
        pos = skip_ws(s, pos)
        if sub(s, pos, pos) ~= ":" then fail("expected ':'", pos) end
        local v
        v, pos = decode_value(s, skip_ws(s, pos + 1), depth + 1)
        obj[k] = v
        pos = skip_ws(s, pos)
        local c = sub(s, pos, pos)
        if c == "}" then return obj, pos + 1 end
        if c ~= "," then fail("expected ',' or '}'", pos) end
        pos = skip_ws(s, pos + 1)
    end
end

decode_value = function(s, pos, depth)
    if depth > MAX_DEPTH then fail("nesting too deep", pos) end
    local c = sub(s, pos, pos)
    if c == "{" then return decode_object(s, pos, depth) end
    if c == "[" then return decode_array(s, pos, depth) end
    if c == '"' then return decode_string(s, pos) end
    if c == "-" or find(c, "^%d$") then return decode_number(s, pos) end
    if sub(s, pos, pos + 3) == "true" then return true, pos + 4 end
    if sub(s, pos, pos + 4) == "false" then return false, pos + 5 end
    if sub(s, pos, pos + 3) == "null" then return M.null, pos + 4 end
    if c == "" then fail("unexpected end of input", pos) end
    fail("unexpected character '" .. c .. "'", pos)
end

function M.decode(s)
    if type(s) ~= "string" then error("json: decode expects a string, got " .. type(s), 2) end
    local v, pos = decode_value(s, skip_ws(s, 1), 0)
    pos = skip_ws(s, pos)
    if pos <= #s then fail("trailing characters", pos) end
    return v
end

return M
