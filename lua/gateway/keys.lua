--[[
gateway.keys - cache key templates.

  keys.compile(template, param_set) -> tmpl | nil, err
      Placeholders:  {name}          a route param (":name" in the pattern; {*} = wildcard)
                     {query}         the normalised query string (see gateway.url)
                     {query.NAME}    one query param, decoded ("" when absent)
                     {header.NAME}   a request header, NAME case-insensitive ("" when absent)
                     {method}        GET (HEAD requests use GET keys so they share entries)
                     {path}          the raw request path
                     {auth_hash}     16 hex chars of SHA-256 of the credentials: the
                                     Authorization header (present, even empty) and the
                                     Cookie header (non-empty), both when both are sent,
                                     so two sessions sharing an API key never share
                                     entries; "anon" when there is neither
      Anything else in braces, or an unclosed "{", is an error naming the placeholder.
      tmpl.uses = { auth_hash = bool, header = {names}, query = bool, params = {names} }.
      The template is compiled once into a function that builds the key with a single
      concatenation.
  keys.expand(tmpl, req, params, ignored) -> string
      ignored: the query-param ignore predicate for {query} (url.compile_ignore).  Header
      values and decoded query params have control characters percent-encoded; params
      (gateway.router), the path and the normalised query arrive without any (the C host
      encodes control characters in the path and query before Lua sees them).
  keys.default_key(req, ignored [, method]) -> "GET:/path" or "GET:/path?normalised-query"
      (method defaults to the request's, HEAD counting as GET)
  keys.bound(key) -> key
      A key longer than keys.MAX_KEY (512) bytes keeps its first 447 bytes and ends in "#"
      plus the full SHA-256 (64 hex) of the original, so long keys stay unique and prefix
      invalidation still matches them.
  keys.sanitize(key) -> key
      keys.bound after percent-encoding control characters (for keys policy functions
      return).
  keys.auth_hash(header) -> string
  keys.DEFAULT_IGNORE      { "utm_*", "fbclid", "gclid" } (a fresh copy each call to
                           keys.default_ignore())
]]
local M = {}

local find, sub, gsub, format, byte, lower, match = string.find, string.sub, string.gsub,
    string.format, string.byte, string.lower, string.match
local concat = table.concat
local type, load = type, load
local gw = require "cachegw_helpers"
local url = require "gateway.url"

M.MAX_KEY = 512
local HASH_HEX = 64
local KEEP = M.MAX_KEY - HASH_HEX - 1

function M.default_ignore()
    return { "utm_*", "fbclid", "gclid" }
end

local generate -- defined below, once its helpers are

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
    return { template = template, parts = parts, n = n, uses = uses, fn = generate(parts, n) }
end

-- An Authorization header counts even when empty (as in the C rules: the upstream may
-- answer it differently from none); a Cookie header when non-empty.  With both, both are
-- hashed (issue 8, item 11).  The NUL separators keep the inputs unambiguous.
function M.auth_hash(header)
    local a = header["authorization"]
    local c = header["cookie"]
    if c == "" then c = nil end
    if a ~= nil and c ~= nil then return gw.hash("authorization\0" .. a .. "\0cookie\0" .. c) end
    if a ~= nil then return gw.hash("authorization\0" .. a) end
    if c ~= nil then return gw.hash("cookie\0" .. c) end
    return "anon"
end

local function method_of(req)
    local m = req.method
    if m == "HEAD" then return "GET" end
    return m
end

local CONTROL = "[\0-\31\127]"

local function escape_control(c)
    return format("%%%02X", byte(c))
end

-- For request data that may carry control characters (header values, decoded query
-- params).  Params, paths and the normalised query arrive clean (see gateway.router and
-- src/policy/lua_host.c), so they skip this scan.
local function clean(v)
    if find(v, CONTROL) then return (gsub(v, CONTROL, escape_control)) end
    return v
end

-- The helpers generated template code calls, passed in as upvalues.
local function query_param(req, name)
    return clean(req.query[name] or "")
end

local function header_value(req, name)
    return clean(req.header[name] or "")
end

local function normalized_query(req, ignored)
    return url.normalize_query(req.query_string, ignored)
end

local GEN = {
    [LIT] = function(p) return format("%q", (gsub(p[2], CONTROL, escape_control))) end,
    [PARAM] = function(p) return format("(P[%q] or '')", p[2]) end,
    [QUERY] = function() return "Q(R, I)" end,
    [QPARAM] = function(p) return format("QP(R, %q)", p[2]) end,
    [HEADER] = function(p) return format("H(R, %q)", p[2]) end,
    [METHOD] = function() return "M(R)" end,
    [PATH] = function() return "R.path" end,
    [AUTH] = function() return "A(R.header)" end,
}

-- Turns a template's parts into one function(R, P, I) -> string: a single concatenation,
-- generated as Lua text (loaded in text mode) when the policy loads, so expanding a key at
-- request time allocates nothing but the result.
generate = function(parts, n)
    local exprs = {}
    for i = 1, n do
        exprs[i] = GEN[parts[i][1]](parts[i])
    end
    local body = n == 0 and '""' or table.concat(exprs, " .. ")
    local code = "local Q, QP, H, M, A = ...\nreturn function(R, P, I) return " .. body .. " end"
    local chunk = assert(load(code, "=(key template)", "t", {}))
    return chunk(normalized_query, query_param, header_value, method_of, M.auth_hash)
end

function M.expand(tmpl, req, params, ignored)
    return tmpl.fn(req, params or {}, ignored)
end

function M.default_key(req, ignored, method)
    local q = url.normalize_query(req.query_string, ignored)
    local base = (method or method_of(req)) .. ":" .. req.path
    if q == "" then return base end
    return base .. "?" .. q
end

-- Keys from templates only need the length bound; anything else (function results) gets
-- the full treatment.
function M.bound(key)
    if #key > M.MAX_KEY then
        key = sub(key, 1, KEEP) .. "#" .. gw.hash(key, HASH_HEX)
    end
    return key
end

function M.sanitize(key)
    return M.bound(clean(key))
end

return M
