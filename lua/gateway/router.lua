--[[
gateway.router - method + path routing with named params and a trailing wildcard.

  router.compile(pattern) -> pat | nil, err
      pattern: "/users/:id", "/static/*", "/" ...  Segments are literals (compared with
      the raw request path segment), ":name" params (name = [A-Za-z_][A-Za-z0-9_]*, match
      one non-empty segment) or a final "*" (matches the rest of the path, zero or more
      segments, captured as params["*"]).  A trailing "/" is significant.  The pattern must
      start with "/" and may not contain "?" or "#".
      pat = { pattern=, segments = {{kind="lit"|"param"|"wild", value=}...},
              params = {names in order}, param_set = {name=true}, wildcard = bool,
              shape = "/users/:/posts" }   (shape ignores param names: routes with equal
              shapes and overlapping methods are duplicates.)
  router.parse_methods(spec) -> set | nil, err
      "GET", "GET|HEAD", "*" -> { GET = true, HEAD = true } or { ["*"] = true }.
  router.new() -> r
  r:add(methods, pat, value) -> true | nil, existing_value   (nil when a duplicate)
  r:match(method, path) -> value, params, via_get | nil
      The most specific route wins: at the first segment where candidates differ, a
      literal beats a param, which beats the wildcard; among routes of one shape the first
      declared whose method set contains the method wins.  HEAD that matches no route
      declared for HEAD (or "*") falls back to the GET routes (via_get = true).  Param
      values are percent-decoded, except that control characters stay encoded (%0A).
  router.match_one(pat, path) -> params | nil
      Matches one compiled pattern alone (used to recover params for on_response).
  router.param_value(raw) -> decoded value (control characters stay percent-encoded)
]]
local M = {}

local find, sub, match, gsub, format, byte = string.find, string.sub, string.match,
    string.gsub, string.format, string.byte
local concat = table.concat
local setmetatable, ipairs = setmetatable, ipairs
local url = require "gateway.url"
local decode = url.decode

local RESERVED_PARAMS = { query = true, method = true, path = true, auth_hash = true }

-- Splits "/a/b/c" into { "a", "b", "c" }, "/" into {} and "/a/" into { "a", "" }.
local function split(path)
    local segs, n, pos = {}, 0, 2
    if #path == 1 then return segs, 0 end
    while true do
        local s = find(path, "/", pos, true)
        n = n + 1
        if not s then
            segs[n] = sub(path, pos)
            return segs, n
        end
        segs[n] = sub(path, pos, s - 1)
        pos = s + 1
    end
end
M.split = split

function M.compile(pattern)
    if type(pattern) ~= "string" or sub(pattern, 1, 1) ~= "/" then
        return nil, "path pattern must start with '/'"
    end
    if find(pattern, "[?#%s]") then
        return nil, "path pattern must not contain '?', '#' or whitespace"
    end
    local raw, n = split(pattern)
    local pat = { pattern = pattern, segments = {}, params = {}, param_set = {},
                  wildcard = false }
    local shape = {}
    for i = 1, n do
        local seg = raw[i]
        if seg == "*" then
            if i ~= n then return nil, "'*' is only allowed as the last segment" end
            pat.segments[i] = { kind = "wild" }
            pat.wildcard = true
            pat.param_set["*"] = true
            shape[i] = "*"
        elseif sub(seg, 1, 1) == ":" then
            local name = sub(seg, 2)
            if not match(name, "^[%a_][%w_]*$") then
                return nil, "bad param name '" .. seg .. "' (use :name with letters, digits, _)"
            end
            if RESERVED_PARAMS[name] then
                return nil, "param name ':" .. name .. "' is reserved (it is a key placeholder)"
            end
            if pat.param_set[name] then return nil, "duplicate param ':" .. name .. "'" end
            pat.segments[i] = { kind = "param", value = name }
            pat.params[#pat.params + 1] = name
            pat.param_set[name] = true
            shape[i] = ":"
        else
            if find(seg, "*", 1, true) then
                return nil, "'*' must be a whole segment ('/static/*')"
            end
            pat.segments[i] = { kind = "lit", value = seg }
            shape[i] = seg
        end
    end
    pat.shape = "/" .. concat(shape, "/")
    return pat
end

function M.parse_methods(spec)
    local set = {}
    local any = false
    for m in (spec .. "|"):gmatch("([^|]*)|") do
        if m == "*" then
            any = true
        elseif match(m, "^%u+$") then
            set[m] = true
        else
            return nil, "bad method '" .. m .. "' (use upper-case names like GET, GET|HEAD or *)"
        end
    end
    if any then
        if next(set) ~= nil then return nil, "'*' cannot be combined with other methods" end
        return { ["*"] = true }
    end
    return set
end

local function new_node()
    return { lit = {}, param = nil, here = nil, wild = nil }
end

local Router = {}
Router.__index = Router

function M.new()
    -- static: pattern -> entries, for patterns without params or wildcard, so the most
    -- common lookups skip the trie walk.
    return setmetatable({ root = new_node(), static = {} }, Router)
end

local function overlaps(a, b)
    if a["*"] or b["*"] then return true end
    for m in pairs(a) do
        if b[m] then return true end
    end
    return false
end

function Router:add(methods, pat, value)
    local node = self.root
    local segs = pat.segments
    local n = #segs
    local list_name = "here"
    for i = 1, n do
        local seg = segs[i]
        if seg.kind == "lit" then
            local child = node.lit[seg.value]
            if not child then
                child = new_node()
                node.lit[seg.value] = child
            end
            node = child
        elseif seg.kind == "param" then
            if not node.param then node.param = new_node() end
            node = node.param
        else
            list_name = "wild"
        end
    end
    local list = node[list_name]
    if not list then
        list = {}
        node[list_name] = list
    end
    for _, e in ipairs(list) do
        if overlaps(e.methods, methods) then return nil, e.value end
    end
    local e = { methods = methods, pat = pat, value = value }
    list[#list + 1] = e
    if #pat.params == 0 and not pat.wildcard then
        local sl = self.static[pat.pattern]
        if not sl then
            sl = {}
            self.static[pat.pattern] = sl
        end
        sl[#sl + 1] = e
    end
    return true
end

local function pick(list, method)
    if not list then return nil end
    for i = 1, #list do
        local e = list[i]
        local ms = e.methods
        if ms[method] or ms["*"] then return e end
    end
    return nil
end

-- Depth-first, literal before param before wildcard: the first complete match is the most
-- specific one.  Segments are cut from the path as the walk goes (pos is where the current
-- segment starts; pos == len + 2 means every segment is consumed), so no segment table is
-- built.  caps collects param values positionally.
local function walk(node, path, pos, len, method, caps, nc)
    if pos > len + 1 then
        local e = pick(node.here, method)
        if e then return e, nc end
        e = pick(node.wild, method)
        if e then return e, nc, "" end
        return nil
    end
    local slash = find(path, "/", pos, true)
    local seg, nextpos
    if slash then
        seg, nextpos = sub(path, pos, slash - 1), slash + 1
    else
        seg, nextpos = sub(path, pos), len + 2
    end
    local child = node.lit[seg]
    if child then
        local e, ncap, rest = walk(child, path, nextpos, len, method, caps, nc)
        if e then return e, ncap, rest end
    end
    if node.param and seg ~= "" then
        caps[nc + 1] = seg
        local e, ncap, rest = walk(node.param, path, nextpos, len, method, caps, nc + 1)
        if e then return e, ncap, rest end
    end
    local e = pick(node.wild, method)
    if e then return e, nc, sub(path, pos) end
    return nil
end

-- Param values are percent-decoded; control characters that decoding would produce stay
-- encoded, so a param can go into a cache key as is.
local function param_value(raw)
    if not find(raw, "%", 1, true) then return raw end
    local v = decode(raw)
    if find(v, "[\0-\31\127]") then
        v = gsub(v, "[\0-\31\127]", function(c) return format("%%%02X", byte(c)) end)
    end
    return v
end
M.param_value = param_value

local function build_params(pat, caps, rest)
    local params = {}
    local names = pat.params
    for k = 1, #names do
        params[names[k]] = param_value(caps[k])
    end
    if rest then params["*"] = param_value(rest) end
    return params
end

local function walk_from_root(self, method, path)
    local len = #path
    local caps = {}
    local e, _, rest = walk(self.root, path, len == 1 and 3 or 2, len, method, caps, 0)
    if e then return e, caps, rest end
    return nil
end

function Router:match(method, path)
    if type(path) ~= "string" or sub(path, 1, 1) ~= "/" then return nil end
    local sl = self.static[path]
    if sl then
        local e = pick(sl, method)
        if e then return e.value, {}, false end
    end
    local e, caps, rest = walk_from_root(self, method, path)
    local via_get = false
    if not e and method == "HEAD" then
        if sl then
            local g = pick(sl, "GET")
            if g then return g.value, {}, true end
        end
        e, caps, rest = walk_from_root(self, "GET", path)
        via_get = e ~= nil
    end
    if not e then return nil end
    return e.value, build_params(e.pat, caps, rest), via_get
end

function M.match_one(pat, path)
    if type(path) ~= "string" or sub(path, 1, 1) ~= "/" then return nil end
    local segs, n = split(path)
    local psegs = pat.segments
    local np = #psegs
    local caps, nc = {}, 0
    for i = 1, np do
        local ps = psegs[i]
        if ps.kind == "wild" then
            return build_params(pat, caps, i <= n and concat(segs, "/", i, n) or "")
        end
        local seg = segs[i]
        if seg == nil then return nil end
        if ps.kind == "lit" then
            if seg ~= ps.value then return nil end
        else
            if seg == "" then return nil end
            nc = nc + 1
            caps[nc] = seg
        end
    end
    if n ~= np then return nil end
    return build_params(pat, caps, nil)
end


return M
