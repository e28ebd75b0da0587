--[[
gateway.keys - cache key templates.

  keys.compile(template, param_set) -> tmpl | nil, err
      Placeholders:  {name}          a route param (":name" in the pattern; {*} = wildcard)
                     {query}         the normalised query string (see gateway.url)
                     {query.NAME}    one query param, decoded ("" when absent)
                     {header.NAME}   a request header, NAME case-insensitive ("" when absent)
                     {method}        GET (HEAD requests use GET keys so they share entries)
                     {path}          the raw request path
                     {auth_hash}     16 hex chars of SHA-256 of the Authorization header, or of
                                     the Cookie header when there is no Authorization, or
                                     "anon" when there is neither
      Anything else in braces, or an unclosed "{", is an error naming the placeholder.
      tmpl.uses = { auth_hash = bool, header = {names}, query = bool, params = {names} }.
  keys.expand(tmpl, ctx) -> string (not yet sanitised)
      ctx = keys.context(req, params, ignored): per-request memo of the pieces above.
  keys.default_key(ctx [, method]) -> "GET:/path" or "GET:/path?normalised-query"
      (method defaults to the request's, HEAD counting as GET)
  keys.sanitize(key) -> key
      Control characters are percent-encoded; a key longer than keys.MAX_KEY (512) bytes
      keeps its first 447 bytes and ends in "#" plus the full SHA-256 (64 hex) of the
      original, so long keys stay unique and prefix invalidation still matches them.
  keys.auth_hash(header) -> string
  keys.DEFAULT_IGNORE      { "utm_*", "fbclid", "gclid" } (a fresh copy each call to
                           keys.default_ignore())
]]
local M = {}

local find, sub, gsub, format, byte, lower, match = string.find, string.sub, string.gsub,
    string.format, string.byte, string.lower, string.match
local concat = table.concat
local type, setmetatable = type, setmetatable
local gw = require "cachegw_helpers"
local url = require "gateway.url"

M.MAX_KEY = 512
local HASH_HEX = 64
local KEEP = M.MAX_KEY - HASH_HEX - 1

function M.default_ignore()
    return { "utm_*", "fbclid", "gclid" }
end

-- Part kinds.
local LIT, PARAM, QUERY, QPARAM, HEADER, METHOD, PATH, AUTH = 1, 2, 3, 4, 5, 6, 7, 8

function M.compile(template, param_set)
    if type(template) ~= "string" then return nil, "key template must be a string" end
    local parts, n = {}, 0
    local uses = { auth_hash = false, header = {}, query = false, params = {} }
    local pos, len = 1, #template
    while pos <= len do
        local open = find(template, "{", pos, true)
        local close_stray = find(template, "}", pos, true)
        if close_stray and (not open or close_stray < open) then
            return nil, "stray '}' in template '" .. template .. "'"
        end
        if not open then
            n = n + 1
            parts[n] = { LIT, sub(template, pos) }
            break
        end
        if open > pos then
            n = n + 1
            parts[n] = { LIT, sub(template, pos, open - 1) }
        end
        local close = find(template, "}", open + 1, true)
        if not close then return nil, "unclosed '{' in template '" .. template .. "'" end
        local name = sub(template, open + 1, close - 1)
        local part
        if name == "query" then
            part = { QUERY }
            uses.query = true
        elseif name == "method" then
            part = { METHOD }
        elseif name == "path" then
            part = { PATH }
        elseif name == "auth_hash" then
            part = { AUTH }
            uses.auth_hash = true
        elseif match(name, "^header%.[%w%-_]+$") then
            local h = lower(sub(name, 8))
            part = { HEADER, h }
            uses.header[#uses.header + 1] = h
        elseif match(name, "^query%.[^{}]+$") then
            part = { QPARAM, sub(name, 7) }
            uses.query = true
        elseif param_set and param_set[name] then
            part = { PARAM, name }
            uses.params[#uses.params + 1] = name
        elseif match(name, "^[%a_][%w_]*$") or name == "*" then
            return nil, "template '" .. template .. "' uses '{" .. name ..
                "}', but the route has no such param"
        else
            return nil, "unknown placeholder '{" .. name .. "}' in template '" .. template .. "'"
        end
        n = n + 1
        parts[n] = part
        pos = close + 1
    end
    return { template = template, parts = parts, n = n, uses = uses }
end

function M.auth_hash(header)
    local a = header["authorization"]
    if a ~= nil and a ~= "" then return gw.hash("authorization\0" .. a) end
    local c = header["cookie"]
    if c ~= nil and c ~= "" then return gw.hash("cookie\0" .. c) end
    return "anon"
end

-- A context memoises what a request's templates need, so several templates (key, tags,
-- invalidations) share one query normalisation and one hash.
local Ctx = {}
Ctx.__index = Ctx

function M.context(req, params, ignored)
    return setmetatable({ req = req, params = params or {}, ignored = ignored }, Ctx)
end

function Ctx:query()
    local q = self.q
    if q == nil then
        q = url.normalize_query(self.req.query_string, self.ignored)
        self.q = q
    end
    return q
end

function Ctx:auth()
    local h = self.h
    if h == nil then
        h = M.auth_hash(self.req.header)
        self.h = h
    end
    return h
end

function Ctx:method()
    local m = self.req.method
    if m == "HEAD" then return "GET" end
    return m
end

function M.expand(tmpl, ctx)
    local parts, n = tmpl.parts, tmpl.n
    if n == 1 and parts[1][1] == LIT then return parts[1][2] end
    local out = {}
    local req = ctx.req
    for i = 1, n do
        local p = parts[i]
        local k = p[1]
        local v
        if k == LIT then
            v = p[2]
        elseif k == PARAM then
            v = ctx.params[p[2]] or ""
        elseif k == QUERY then
            v = ctx:query()
        elseif k == AUTH then
            v = ctx:auth()
        elseif k == HEADER then
            v = req.header[p[2]] or ""
        elseif k == QPARAM then
            v = req.query[p[2]] or ""
        elseif k == METHOD then
            v = ctx:method()
        else
            v = req.path
        end
        out[i] = v
    end
    return concat(out)
end

function M.default_key(ctx, method)
    local q = ctx:query()
    local base = (method or ctx:method()) .. ":" .. ctx.req.path
    if q == "" then return base end
    return base .. "?" .. q
end

local function escape_control(c)
    return format("%%%02X", byte(c))
end

function M.sanitize(key)
    if find(key, "[%c\127]") then key = gsub(key, "[%c\127]", escape_control) end
    if #key > M.MAX_KEY then
        key = sub(key, 1, KEEP) .. "#" .. gw.hash(key, HASH_HEX)
    end
    return key
end

return M
