--[[
gateway.policy - the route policy DSL: loading, validation and per-request decisions.

ENTRY POINTS (used by the C host, src/policy/lua_host.c, and by busted specs)

  policy.load(files) -> set
      files: array of { name = "policies/users.lua", source = "<lua text>" }, in load order.
      Each file runs as a text chunk, load(source, "@" .. name, "t", env), in its own
      environment: reads fall through to the DSL (route, upstream, unknown_host, gw, json,
      cachecontrol, url) and the sandbox's read-only globals; globals a file assigns while
      loading stay in that file, and after loading the environment is sealed, so
      request-time code cannot keep state in globals.  Raises "file:line: message" on the
      first invalid route (the line of the route "..." declaration), syntax error or
      runtime error.
  set:decide(req) -> decision
      req = { method = "GET", path = "/users/42", query_string = "a=1" or nil,
              header = { ["lower-case name"] = "value" }, client_ip = "..." }
      The library adds req.params (route params, decoded), and lazily req.query
      (name -> first value, decoded) and req.cookie (name -> value).
      decision = {
        action   = "cache" | "bypass" | "default" | "invalidate",
        key      = "users:42",          -- cache/default: the cache key (sanitised);
                                        -- default on other methods: the key a GET of the
                                        -- same URL has (the RFC 9111 4.4 invalidation target)
        ttl, swr, sie = seconds or nil, -- nil: not set by the policy (upstream headers decide)
        per_user = bool,                -- the key is derived from the request's credentials
        ignore_no_store = bool,
        has_response_hook = bool,       -- call set:on_response after the upstream answers
        tags = { "t1", ... } or nil,
        invalidate = { { key = "posts:", prefix = true, tag = false }, ... } or nil,
        route = "GET /users/:id", route_id = N (0 when no route matched),
        reason = "route" | "bypass" | "credentials" | "no_route" | "no_key" | "write"
               | "invalidate" | "default",
      }
      "default" means no route matched: the C side applies plain RFC 9111 shared-cache
      rules.  A GET/HEAD carrying Authorization or Cookie on a route whose key is not
      per-user (and on no route) is answered "bypass" with reason "credentials".
  set:decide_raw(req) -> action, key, route_id, reason, list, pure
      The same decision as multiple values (no table), for the C host: list is the tags
      (cache) or the invalidate targets (invalidate); the rest is static per route; pure
      says the decision may be reused for the same method, path, query string and presence
      of credentials.
  set:describe() -> { default_ignore, routes = { desc, ... } }
      Every route as plain data, for the C route table (src/policy/route_table.h), which decides
      requests of routes without functions (and unrouted ones) without calling decide_raw.
  set:on_response(route_id, req, res) -> verdict | nil
      res = { status = 200, header = { ... } }.  Only meaningful for routes with
      on_response.  verdict = { store = bool, ttl = seconds or nil, tags = {...} or nil };
      nil means "no opinion" (store as the normal rules allow, keep the ttl).
  set:describe_upstreams()
      the declared upstreams as plain data, for the C side (src/upstream/upstream_config.h).
      decide_raw's action may also be "reject" (unknown_host "reject": a Host no route
      declares; reason "unknown_host"); set:decide then says status = 404.
  set.routes        array of compiled routes in declaration order (route_id = index)
  set.current       name of the route whose code is running (for error reports), or nil
  policy.decide(req), policy.on_response(route_id, req, res)
      the same, on the most recently loaded set.

The DSL itself is documented in docs/policies.md.
]]
local M = {}

local G = _ENV -- the sandbox's read-only globals in the gateway; _G under busted
local type, pairs, ipairs, tostring, error, setmetatable, getmetatable, rawget, rawset, load =
    type, pairs, ipairs, tostring, error, setmetatable, getmetatable, rawget, rawset, load
local find, sub, match, format, gsub, byte, lower = string.find, string.sub, string.match,
    string.format, string.gsub, string.byte, string.lower
local floor, tonumber = math.floor, tonumber
local concat, sort = table.concat, table.sort
local huge = math.huge

local gw = require "cachegw_helpers"
local router = require "gateway.router"
local keys = require "gateway.keys"
local url = require "gateway.url"
local json = require "gateway.json"
local cachecontrol = require "gateway.cachecontrol"

-- The __metatable value of tables policies must not change; the gateway's sandboxed
-- rawset refuses tables whose metatable carries it.
local PROTECTED = "cachegw.protected"

-- Field name -> allowed types, and which kind of route may use it.
local FIELDS = {
    name = { types = { "string" }, on = "all" },
    bypass = { types = { "boolean", "function" }, on = "all" },
    ignore_query = { types = { "table" }, on = "rw" },
    key = { types = { "string", "function" }, on = "read" },
    ttl = { types = { "number" }, on = "read" },
    stale_while_revalidate = { types = { "number" }, on = "read" },
    stale_if_error = { types = { "number" }, on = "read" },
    per_user = { types = { "boolean" }, on = "read" },
    tags = { types = { "table", "function" }, on = "read" },
    on_response = { types = { "function" }, on = "read" },
    ignore_no_store = { types = { "boolean" }, on = "read" },
    invalidate = { types = { "table", "function" }, on = "write" },
    invalidate_tags = { types = { "table", "function" }, on = "write" },
    upstream = { types = { "string" }, on = "all" },
    host = { types = { "string", "table" }, on = "all" },
    idempotent = { types = { "boolean" }, on = "write" },
}

-- Fields of an upstream "name" { ... } declaration: type, and for numbers the range.
local UPSTREAM_FIELDS = {
    servers = { types = { "table" } },
    balance = { types = { "string" } },
    health = { types = { "table" } },
    connect_timeout = { types = { "number" }, min = 0.001, max = 600 },
    timeout = { types = { "number" }, min = 0.001, max = 3600 },
    retries = { types = { "number" }, min = 0, max = 10, int = true },
    max_fails = { types = { "number" }, min = 1, max = 1000, int = true },
    fail_timeout = { types = { "number" }, min = 0.1, max = 3600 },
    fail_on_5xx = { types = { "boolean" } },
    max_connections = { types = { "number" }, min = 1, max = 10000, int = true },
    dns_ttl = { types = { "number" }, min = 0, max = 86400, int = true },
}
local HEALTH_FIELDS = {
    path = { types = { "string" } },
    interval = { types = { "number" }, min = 0.05, max = 3600 },
    timeout = { types = { "number" }, min = 0.01, max = 600 },
    healthy = { types = { "number" }, min = 1, max = 100, int = true },
    unhealthy = { types = { "number" }, min = 1, max = 100, int = true },
}
local BALANCE = { round_robin = true, least_conn = true, hash = true }
-- Defaults, documented in docs/policies.md (Upstreams).
local UPSTREAM_DEFAULTS = {
    balance = "round_robin", retries = 1, max_fails = 3, fail_timeout = 10,
    fail_on_5xx = false, dns_ttl = 60,
}
local HEALTH_DEFAULTS = { interval = 5, timeout = 1, healthy = 2, unhealthy = 3 }
local MAX_SERVERS = 64

local VERDICT_FIELDS = { store = "boolean", ttl = "number", tags = "table" }

local DEFAULT_IGNORED = url.compile_ignore(keys.default_ignore())

-- Helpers ------------------------------------------------------------------------------------

local function fail(where, msg)
    error(where .. msg, 0)
end

local function edit_distance(a, b)
    local prev = {}
    for j = 0, #b do prev[j] = j end
    for i = 1, #a do
        local cur = { [0] = i }
        for j = 1, #b do
            local cost = sub(a, i, i) == sub(b, j, j) and 0 or 1
            local v = prev[j] + 1
            if cur[j - 1] + 1 < v then v = cur[j - 1] + 1 end
            if prev[j - 1] + cost < v then v = prev[j - 1] + cost end
            cur[j] = v
        end
        prev = cur
    end
    return prev[#b]
end

local function suggestion(name, fields)
    local best, best_d
    for f in pairs(fields or FIELDS) do
        local d = edit_distance(name, f)
        if d <= 2 and (best_d == nil or d < best_d or (d == best_d and f < best)) then
            best, best_d = f, d
        end
    end
    return best and (" (did you mean '" .. best .. "'?)") or ""
end

local function sorted_keys(t)
    local ks = {}
    for k in pairs(t) do ks[#ks + 1] = k end
    sort(ks, function(a, b)
        local ta, tb = type(a), type(b)
        if ta ~= tb then return ta < tb end
        if ta == "string" or ta == "number" then return a < b end
        return false
    end)
    return ks
end

local function is_finite_nonneg(n)
    return n == n and n >= 0 and n < huge
end

-- Upstreams and hosts -------------------------------------------------------------------------

-- A Host header (or a route's host) as compared: lower-case, without the port and without
-- a trailing dot.  "[::1]:8080" -> "[::1]".  nil for a missing or empty value.
local function normalize_host(h)
    if type(h) ~= "string" or h == "" then return nil end
    h = lower(h)
    if byte(h, 1) == 91 then -- '['
        local v6 = match(h, "^(%[[^%]]*%])")
        return v6
    end
    local colon = find(h, ":", 1, true)
    if colon then h = sub(h, 1, colon - 1) end
    if byte(h, #h) == 46 then h = sub(h, 1, -2) end
    if h == "" then return nil end
    return h
end
M.normalize_host = normalize_host

local function compile_hosts(where, rname, v)
    local list = type(v) == "string" and { v } or v
    local out, n = {}, 0
    for _ in pairs(list) do n = n + 1 end
    if n == 0 or n ~= #list then
        fail(where, format("field 'host' in route '%s' must be a host name or a list of them",
            rname))
    end
    for i, h in ipairs(list) do
        if type(h) ~= "string" or not match(h, "^[%w%-%.]+$") or find(h, "..", 1, true) then
            fail(where, format("field 'host' in route '%s': entry %d is not a host name " ..
                "(letters, digits, '-' and '.', no port): %s", rname, i, tostring(h)))
        end
        out[#out + 1] = normalize_host(h)
    end
    return out
end

-- "http://host[:port][/prefix]" -> the URL without a trailing slash, or nil, reason.
local function check_server_url(u)
    local scheme, rest = match(u, "^(%a+)://(.*)$")
    if scheme == nil then return nil, "expected http://host[:port]" end
    scheme = lower(scheme)
    if scheme ~= "http" and scheme ~= "https" then
        return nil, "scheme must be http or https"
    end
    local hostport, path = match(rest, "^([^/]*)(.*)$")
    local host, port
    -- The host is split off whole (up to the port's ':') and then checked, so a bad
    -- character is reported as a bad host, not as the start of a bad port.
    if byte(hostport, 1) == 91 then -- "[v6]" or "[v6]:port"
        host, port = match(hostport, "^(%[[^%]]*%])(.*)$")
        if host == nil or not match(host, "^%[[%x:%.]+%]$") then
            return nil, "invalid host '" .. (host or hostport) .. "': an IPv6 address " ..
                "is hex digits, ':' and '.' in brackets"
        end
    else
        host, port = match(hostport, "^([^:]*)(.*)$")
        if host == "" then return nil, "missing host" end
        local at = find(host, "[^%w%-%._]")
        if at then
            local c = sub(host, at, at)
            local what = c == " " and "a space" or (match(c, "%c") or byte(c) > 126) and
                format("byte 0x%02X", byte(c)) or "'" .. c .. "'"
            return nil, format("invalid host '%s': %s is not allowed in a host name " ..
                "(letters, digits, '-', '.' and '_' only)", host, what)
        end
    end
    if port ~= "" then
        local p = match(port, "^:(%d+)$")
        if p == nil or tonumber(p) < 1 or tonumber(p) > 65535 then
            return nil, "bad port '" .. port .. "'"
        end
    end
    if find(path, "[%?#%s%c]") then
        return nil, "a server URL has no query, fragment or spaces"
    end
    while sub(path, -1) == "/" do path = sub(path, 1, -2) end
    return scheme .. "://" .. hostport .. path
end

local function check_fields(where, what, fields, opts)
    for _, k in ipairs(sorted_keys(opts)) do
        local v = opts[k]
        if type(k) ~= "string" then
            fail(where, what .. ": options must be named fields (found a positional value; " ..
                "a missing '='?)")
        end
        local f = fields[k]
        if not f then
            fail(where, "unknown field '" .. k .. "' in " .. what .. suggestion(k, fields))
        end
        local ok = false
        for _, t in ipairs(f.types) do
            if type(v) == t then ok = true end
        end
        if not ok then
            fail(where, format("field '%s' in %s must be a %s, got %s", k, what,
                concat(f.types, " or "), type(v)))
        end
        if f.min and not (v >= f.min and v <= f.max) then
            fail(where, format("field '%s' in %s must be between %s and %s, got %s", k, what,
                tostring(f.min), tostring(f.max), tostring(v)))
        end
        if f.int and v ~= floor(v) then
            fail(where, format("field '%s' in %s must be a whole number, got %s", k, what,
                tostring(v)))
        end
    end
end

local function compile_upstream(set, name, opts, where)
    if type(name) ~= "string" or not match(name, "^[%w_%-%.]+$") then
        fail(where, "upstream expects a name of letters, digits, '_', '-' and '.', such as " ..
            "upstream \"users\" { ... }, got " .. tostring(name))
    end
    local what = "upstream '" .. name .. "'"
    if name == "default" then
        fail(where, "upstream name 'default' is reserved: it is the gateway's UPSTREAM_URL")
    end
    if type(opts) ~= "table" then
        fail(where, what .. " expects an options table { servers = { ... } }, got " ..
            type(opts))
    end
    local prev = set.upstreams[name]
    if prev then
        fail(where, "duplicate upstream '" .. name .. "' (already declared at " ..
            prev.where_at .. ")")
    end
    check_fields(where, what, UPSTREAM_FIELDS, opts)
    if opts.servers == nil then fail(where, what .. " has no servers (servers = { ... })") end
    local n = 0
    for _ in pairs(opts.servers) do n = n + 1 end
    if n == 0 then fail(where, what .. ": the server list is empty") end
    if n ~= #opts.servers then
        fail(where, what .. ": servers must be a list (URL strings or { url = ..., " ..
            "weight = N } tables)")
    end
    if n > MAX_SERVERS then
        fail(where, format("%s: %d servers (at most %d)", what, n, MAX_SERVERS))
    end
    local servers, seen = {}, {}
    for i, sv in ipairs(opts.servers) do
        local u, weight = sv, 1
        if type(sv) == "table" then
            for k in pairs(sv) do
                if k ~= "url" and k ~= "weight" then
                    fail(where, format("%s: server %d: unknown field '%s' (use url, weight)",
                        what, i, tostring(k)))
                end
            end
            u, weight = sv.url, sv.weight
            if weight == nil then weight = 1 end
        end
        if type(u) ~= "string" then
            fail(where, format("%s: server %d must be a URL string or { url = ..., " ..
                "weight = N }, got %s", what, i, type(u)))
        end
        if type(weight) ~= "number" or weight ~= floor(weight) or weight < 1 or
            weight > 100 then
            fail(where, format("%s: server %d (%s): weight must be a whole number from 1 " ..
                "to 100, got %s", what, i, u, tostring(weight)))
        end
        local url_ok, err = check_server_url(u)
        if not url_ok then
            fail(where, format("%s: server %d: bad URL '%s': %s", what, i, u, err))
        end
        if seen[url_ok] then
            fail(where, format("%s: server %d: '%s' is listed twice (use weight)", what, i, u))
        end
        seen[url_ok] = true
        servers[i] = { url = url_ok, weight = weight }
    end
    local balance = opts.balance or UPSTREAM_DEFAULTS.balance
    if not BALANCE[balance] then
        fail(where, format("field 'balance' in %s must be \"round_robin\", \"least_conn\" " ..
            "or \"hash\", got \"%s\"", what, balance))
    end
    local u = {
        name = name, servers = servers, balance = balance, where = where,
        where_at = (gsub(where, ":%s*$", "")),
        connect_timeout = opts.connect_timeout, timeout = opts.timeout,
        max_connections = opts.max_connections,
    }
    for k, v in pairs(UPSTREAM_DEFAULTS) do
        if opts[k] ~= nil then u[k] = opts[k] else u[k] = v end
    end
    u.balance = balance
    if opts.health then
        local hw = what .. " health"
        check_fields(where, hw, HEALTH_FIELDS, opts.health)
        local path = opts.health.path
        if path == nil then fail(where, hw .. ": path is required (e.g. path = \"/healthz\")") end
        if sub(path, 1, 1) ~= "/" or find(path, "[%s%c#]") then
            fail(where, format("%s: path must start with '/' and hold no spaces, got '%s'",
                hw, path))
        end
        local h = { path = path }
        for k, v in pairs(HEALTH_DEFAULTS) do
            if opts.health[k] ~= nil then h[k] = opts.health[k] else h[k] = v end
        end
        if h.timeout > h.interval then
            fail(where, format("%s: timeout (%s) must not exceed interval (%s)", hw,
                tostring(h.timeout), tostring(h.interval)))
        end
        u.health = h
    end
    set.upstreams[name] = u
    set.upstream_list[#set.upstream_list + 1] = u
end

-- An Authorization header is a credential even when empty, as in the C rules (issue 8,
-- item 17): the upstream may well answer "Authorization:" differently from no header.
-- An empty Cookie carries no session.  keys.auth_hash agrees.
local function has_credentials(h)
    if h["authorization"] ~= nil then return true end
    local c = h["cookie"]
    return c ~= nil and c ~= ""
end

-- s without leading and trailing whitespace (%s), in time linear in #s.  Patterns such as
-- "^%s*(.-)%s*$" backtrack quadratically (and worse, combined) on runs of spaces that a
-- client controls (issue 8, item 19).
local function trim(s)
    local i = find(s, "%S")
    if i == nil then return "" end
    local j = #s
    local b = byte(s, j)
    while b == 32 or (b >= 9 and b <= 13) do
        j = j - 1
        b = byte(s, j)
    end
    return sub(s, i, j)
end

-- "a=1; b = 2" -> { a = "1", b = "2" }: pairs split at ";", name and value at the first
-- "=", both trimmed; the first of repeated names wins; pairs without "=" or with an empty
-- name are skipped.  Linear: every byte is looked at a bounded number of times.
local function parse_cookies(s)
    local t = {}
    if type(s) ~= "string" then return t end
    local pos, len = 1, #s
    while pos <= len do
        local semi = find(s, ";", pos, true) or (len + 1)
        local pair = sub(s, pos, semi - 1)
        local eq = find(pair, "=", 1, true)
        if eq then
            local k = trim(sub(pair, 1, eq - 1))
            if k ~= "" and t[k] == nil then t[k] = trim(sub(pair, eq + 1)) end
        end
        pos = semi + 1
    end
    return t
end
M.parse_cookies = parse_cookies

-- req.query, req.cookie and req.params are built on first use.  Every request shares
-- this metatable, so it is hidden (issue 8, item 21): getmetatable(req) returns a string
-- and setmetatable(req, ...) raises.
local REQ_MT = {
    __metatable = "cachegw.request",
    __index = function(t, k)
        local v
        if k == "query" then
            v = url.query_table(rawget(t, "query_string"))
        elseif k == "cookie" then
            local h = rawget(t, "header")
            v = parse_cookies(h and h["cookie"])
        elseif k == "params" then
            v = {}
        else
            return nil
        end
        rawset(t, k, v)
        return v
    end,
}

local function prepare_request(req)
    if getmetatable(req) == nil then setmetatable(req, REQ_MT) end
    if rawget(req, "header") == nil then rawset(req, "header", {}) end
    return req
end

-- Compiling a route --------------------------------------------------------------------------

local function compile_list(where, rname, field, list, param_set, allow_prefix)
    local out = {}
    for i, v in ipairs(list) do
        if type(v) ~= "string" then
            fail(where, format("field '%s' in route '%s': entry %d must be a string, got %s",
                field, rname, i, type(v)))
        end
        local prefix = false
        local text = v
        if allow_prefix and sub(v, -1) == "*" then
            prefix = true
            text = sub(v, 1, -2)
            if text == "" then
                fail(where, format("field '%s' in route '%s': '*' alone would drop every " ..
                    "entry; use a prefix such as 'posts:*'", field, rname))
            end
        end
        local tmpl, err = keys.compile(text, param_set)
        if not tmpl then fail(where, format("field '%s' in route '%s': %s", field, rname, err)) end
        out[#out + 1] = { tmpl = tmpl, prefix = prefix }
    end
    local n = 0
    for _ in pairs(list) do n = n + 1 end
    if n ~= #out then
        fail(where, format("field '%s' in route '%s' must be a list of strings", field, rname))
    end
    return out
end

local function compile_route(set, spec, opts, where)
    if type(spec) ~= "string" then
        fail(where, "route expects a string such as \"GET /users/:id\", got " .. type(spec))
    end
    local mspec, pattern = match(spec, "^%s*(%S+)%s+(%S+)%s*$")
    if not mspec then
        pattern = match(spec, "^%s*(/%S*)%s*$")
        mspec = "GET"
    end
    if not pattern then
        fail(where, "bad route '" .. spec ..
            "' (expected \"METHOD /path\", e.g. \"GET /users/:id\")")
    end
    local methods, merr = router.parse_methods(mspec)
    if not methods then fail(where, "route '" .. spec .. "': " .. merr) end
    local pat, perr = router.compile(pattern)
    if not pat then fail(where, "route '" .. spec .. "': " .. perr) end
    local rname = mspec .. " " .. pattern

    if type(opts) ~= "table" then
        fail(where, "route '" .. rname .. "' expects an options table { ... }, got " .. type(opts))
    end

    local kind
    if methods["*"] then
        kind = "any"
    else
        local reads, writes = 0, 0
        for m in pairs(methods) do
            if m == "GET" or m == "HEAD" then reads = reads + 1 else writes = writes + 1 end
        end
        if reads > 0 and writes > 0 then
            fail(where, "route '" .. rname .. "' mixes read (GET/HEAD) and write methods; " ..
                "declare them as separate routes")
        end
        kind = reads > 0 and "read" or "write"
    end

    for _, k in ipairs(sorted_keys(opts)) do
        local v = opts[k]
        if type(k) ~= "string" then
            fail(where, "route '" .. rname .. "': options must be named fields " ..
                "(found a positional value; a missing '='?)")
        end
        local f = FIELDS[k]
        if not f then
            fail(where, "unknown field '" .. k .. "' in route '" .. rname .. "'" .. suggestion(k))
        end
        local ok = false
        for _, t in ipairs(f.types) do
            if type(v) == t then ok = true end
        end
        if not ok then
            fail(where, format("field '%s' in route '%s' must be a %s, got %s", k, rname,
                concat(f.types, " or "), type(v)))
        end
        if kind == "any" and k ~= "name" and k ~= "bypass" and k ~= "upstream" and
            k ~= "host" then
            fail(where, format("field '%s' is not allowed on route '%s': a '*' route may only " ..
                "set bypass (declare explicit methods to cache or invalidate)", k, rname))
        elseif f.on == "read" and kind == "write" then
            fail(where, format("field '%s' only applies to GET/HEAD routes, not '%s'", k, rname))
        elseif f.on == "write" and kind == "read" then
            fail(where, format("field '%s' is not allowed on read route '%s' (invalidations " ..
                "belong on write routes: POST/PUT/PATCH/DELETE)", k, rname))
        end
        if type(v) == "number" and not is_finite_nonneg(v) then
            fail(where, format("field '%s' in route '%s' must be a non-negative number of " ..
                "seconds, got %s", k, rname, tostring(v)))
        end
    end
    -- The default key (GET:/path?query) names what UPSTREAM_URL answers: a read route that
    -- fetches from another upstream must say under which key its answers are stored, or
    -- two upstreams' answers for one path would share an entry.
    if kind == "read" and opts.upstream ~= nil and opts.upstream ~= "default" and
        opts.key == nil and opts.bypass ~= true then
        fail(where, "route '" .. rname .. "' fetches from upstream '" .. opts.upstream ..
            "': give it a key (the default key GET:/path?query is UPSTREAM_URL's; e.g. key = \"" ..
            opts.upstream .. ":{path}\")")
    end
    if kind == "any" and not opts.bypass then
        fail(where, "route '" .. rname .. "': a '*' route must set bypass (declare explicit " ..
            "methods to cache or invalidate)")
    end

    local r = {
        spec = spec, name = opts.name or rname, where = where, kind = kind,
        methods = methods, pat = pat,
        ttl = opts.ttl, swr = opts.stale_while_revalidate, sie = opts.stale_if_error,
        ignore_no_store = opts.ignore_no_store == true,
        on_response = opts.on_response,
    }
    r.where_at = gsub(where, ":%s*$", "")
    r.upstream = opts.upstream -- checked once every file has loaded (see M.load)
    r.idempotent = opts.idempotent == true
    if opts.host ~= nil then r.hosts = compile_hosts(where, rname, opts.host) end

    if type(opts.bypass) == "function" then
        r.bypass_fn = opts.bypass
    else
        r.bypass = opts.bypass == true
    end

    if opts.ignore_query then
        local extra = keys.default_ignore()
        for i, v in ipairs(opts.ignore_query) do
            if type(v) ~= "string" then
                fail(where, format("field 'ignore_query' in route '%s': entry %d must be a " ..
                    "string", rname, i))
            end
            extra[#extra + 1] = v
        end
        r.ignored = url.compile_ignore(extra)
        r.ignore_list = extra
    else
        r.ignored = DEFAULT_IGNORED
        r.ignore_list = keys.default_ignore()
    end

    local credential_key = false
    if type(opts.key) == "function" then
        r.key_fn = opts.key
    elseif type(opts.key) == "string" then
        local tmpl, err = keys.compile(opts.key, pat.param_set)
        if not tmpl then fail(where, "field 'key' in route '" .. rname .. "': " .. err) end
        r.key_tmpl = tmpl
        if tmpl.uses.auth_hash then credential_key = true end
        for _, h in ipairs(tmpl.uses.header) do
            if h == "authorization" or h == "cookie" then credential_key = true end
        end
    end

    if opts.per_user == true then
        if opts.key == nil then
            fail(where, "per_user route '" .. rname .. "' needs a key that includes {auth_hash}")
        elseif r.key_tmpl and not credential_key then
            fail(where, "per_user route '" .. rname .. "': key '" .. opts.key .. "' must " ..
                "include {auth_hash} (a header such as x-user-id can be forged by the client; " ..
                "key on the credential itself)")
        end
        r.per_user = true
    elseif opts.per_user == false then
        r.per_user = false
    else
        r.per_user = credential_key
    end

    if type(opts.tags) == "function" then
        r.tags_fn = opts.tags
    elseif opts.tags then
        r.tags = compile_list(where, rname, "tags", opts.tags, pat.param_set, false)
    end
    if type(opts.invalidate) == "function" then
        r.invalidate_fn = opts.invalidate
    elseif opts.invalidate then
        r.invalidate = compile_list(where, rname, "invalidate", opts.invalidate, pat.param_set,
            true)
    end
    if type(opts.invalidate_tags) == "function" then
        r.invalidate_tags_fn = opts.invalidate_tags
    elseif opts.invalidate_tags then
        r.invalidate_tags = compile_list(where, rname, "invalidate_tags", opts.invalidate_tags,
            pat.param_set, false)
    end

    -- A route is pure when its decision depends only on the method, path, query string and
    -- whether credentials are present: no functions, no header or credential placeholders.
    -- The C host memoises pure decisions (see decide_raw).
    local pure = not (r.bypass_fn or r.key_fn or r.tags_fn or r.invalidate_fn or
        r.invalidate_tags_fn)
    local function tmpl_pure(t)
        return not t.uses.auth_hash and #t.uses.header == 0
    end
    if r.key_tmpl and not tmpl_pure(r.key_tmpl) then pure = false end
    for _, list in ipairs { r.tags or {}, r.invalidate or {}, r.invalidate_tags or {} } do
        for _, e in ipairs(list) do
            if not tmpl_pure(e.tmpl) then pure = false end
        end
    end
    r.pure = pure

    local routers = { set.router }
    if r.hosts then
        routers = {}
        for _, h in ipairs(r.hosts) do
            local hr = set.host_routers[h]
            if hr == nil then
                hr = router.new()
                set.host_routers[h] = hr
                set.host_list[#set.host_list + 1] = h
            end
            routers[#routers + 1] = hr
        end
    end
    for _, rt in ipairs(routers) do
        local ok, existing = rt:add(methods, pat, r)
        if not ok then
            fail(where, "duplicate route '" .. rname .. "' (already declared as '" ..
                existing.name .. "' at " .. existing.where_at .. ")")
        end
    end
    r.id = #set.routes + 1
    set.routes[r.id] = r
    return r
end

-- Loading ------------------------------------------------------------------------------------

local Set = {}
Set.__index = Set

local last_loaded

-- Builds a file's environment: an empty proxy (so every global write reaches __newindex)
-- over the file's own definitions, the DSL, then the sandbox's globals.
local function file_env(set, name, pending)
    local sealed = false
    local api = {
        gw = gw, json = json, cachecontrol = cachecontrol, url = url,
    }
    setmetatable(api, { __index = G })
    local defs = setmetatable({}, { __index = api })

    function api.route(spec, opts)
        if set.sealed then error("route() can only be called while policies load", 2) end
        local where = gw.where(2)
        if where == "" then where = name .. ": " end
        if type(spec) ~= "string" then
            fail(where, "route expects a string such as \"GET /users/:id\", got " .. type(spec))
        end
        -- Nothing is returned: a compiled route kept by policy code could be changed at
        -- request time, and routes are shared by every request.
        if opts ~= nil then
            compile_route(set, spec, opts, where)
            return
        end
        local p = { spec = spec, where = where }
        pending[#pending + 1] = p
        return function(o)
            p.done = true
            compile_route(set, spec, o, where)
        end
    end

    function api.upstream(uname, opts)
        if set.sealed then error("upstream() can only be called while policies load", 2) end
        local where = gw.where(2)
        if where == "" then where = name .. ": " end
        if opts ~= nil then
            compile_upstream(set, uname, opts, where)
            return
        end
        local p = { spec = uname, where = where, what = "upstream" }
        pending[#pending + 1] = p
        return function(o)
            p.done = true
            compile_upstream(set, uname, o, where)
        end
    end

    -- unknown_host "reject" (404 for a Host no route declares) or "default" (the routes
    -- without a host, then the default upstream): the default.
    function api.unknown_host(mode)
        if set.sealed then error("unknown_host() can only be called while policies load", 2) end
        local where = gw.where(2)
        if where == "" then where = name .. ": " end
        if mode ~= "reject" and mode ~= "default" then
            fail(where, "unknown_host expects \"reject\" or \"default\", got " ..
                tostring(mode))
        end
        if set.unknown_host_at then
            fail(where, "unknown_host is already set (at " .. set.unknown_host_at .. ")")
        end
        set.unknown_host = mode
        set.unknown_host_at = (gsub(where, ":%s*$", ""))
    end

    local env = setmetatable({}, {
        __index = defs,
        __newindex = function(_, k, v)
            if sealed then
                error("policy code may not set global '" .. tostring(k) ..
                    "' while handling a request (use a local)", 2)
            end
            defs[k] = v
        end,
        __metatable = PROTECTED,
    })
    return env, function() sealed = true end
end

function M.load(files)
    if type(files) ~= "table" then error("policy.load expects a list of files", 2) end
    local set = setmetatable({ routes = {}, router = router.new(), files = {},
        upstreams = {}, upstream_list = {}, host_routers = {}, host_list = {},
        unknown_host = "default" }, Set)
    for i, f in ipairs(files) do
        if type(f) ~= "table" or type(f.name) ~= "string" or type(f.source) ~= "string" then
            error("policy.load: file " .. i .. " must be { name = string, source = string }", 2)
        end
        local pending = {}
        local env, seal = file_env(set, f.name, pending)
        local chunk, err = load(f.source, "@" .. f.name, "t", env)
        if not chunk then error(err, 0) end
        chunk()
        for _, p in ipairs(pending) do
            if not p.done then
                local what = p.what or "route"
                fail(p.where, what .. " '" .. tostring(p.spec) .. "' has no options table " ..
                    "(write " .. what .. " \"" .. tostring(p.spec) .. "\" { ... })")
            end
        end
        seal()
        set.files[i] = f.name
    end
    -- Upstreams may be declared in any file, before or after the routes naming them.
    for _, r in ipairs(set.routes) do
        local u = r.upstream
        if u ~= nil and u ~= "default" and set.upstreams[u] == nil then
            local names = {}
            for n in pairs(set.upstreams) do names[#names + 1] = n end
            sort(names)
            fail(r.where, format("route '%s': unknown upstream '%s' (declared: %s)", r.name, u,
                #names > 0 and concat(names, ", ") or "none; upstream \"" .. u ..
                "\" { servers = { ... } } declares one"))
        end
    end
    if set.unknown_host == "reject" and #set.host_list == 0 then
        error(set.unknown_host_at .. ": unknown_host \"reject\" needs routes with a host " ..
            "(every request would be refused)", 0)
    end
    sort(set.host_list)
    set.has_hosts = #set.host_list > 0
    set.sealed = true
    last_loaded = set
    return set
end

-- Deciding -----------------------------------------------------------------------------------

local function call_bypass(r, req)
    if r.bypass then return true end
    if r.bypass_fn then return r.bypass_fn(req) and true or false end
    return false
end

local function expand_list(list, req, params, ignored, out, as_tag)
    for i = 1, #list do
        local e = list[i]
        out[#out + 1] = { key = keys.bound(e.tmpl.fn(req, params, ignored)), prefix = e.prefix,
                          tag = as_tag or nil }
    end
end

local function fn_list(r, what, list, allow_prefix)
    if list == nil then return {} end
    if type(list) ~= "table" then
        error(format("%s%s function of route '%s' must return a list of strings, got %s",
            r.where, what, r.name, type(list)), 0)
    end
    local out = {}
    for i, v in ipairs(list) do
        if type(v) ~= "string" then
            error(format("%s%s function of route '%s' returned a %s at position %d",
                r.where, what, r.name, type(v), i), 0)
        end
        local prefix = allow_prefix and sub(v, -1) == "*"
        if prefix then v = sub(v, 1, -2) end
        out[i] = { key = keys.sanitize(v), prefix = prefix or false }
    end
    return out
end

local function tag_keys(entries)
    local t = {}
    for i = 1, #entries do t[i] = entries[i].key end
    return t
end

local function write_targets(r, req, params)
    local inv = {}
    if r.invalidate then expand_list(r.invalidate, req, params, r.ignored, inv, false) end
    if r.invalidate_fn then
        for _, e in ipairs(fn_list(r, "invalidate", r.invalidate_fn(req), true)) do
            inv[#inv + 1] = e
        end
    end
    if r.invalidate_tags then expand_list(r.invalidate_tags, req, params, r.ignored, inv, true) end
    if r.invalidate_tags_fn then
        for _, e in ipairs(fn_list(r, "invalidate_tags", r.invalidate_tags_fn(req), false)) do
            e.prefix = false
            e.tag = true
            inv[#inv + 1] = e
        end
    end
    return inv
end

--[[
set:decide_raw(req) -> action, key, route_id, reason, list, pure
    The per-request entry point of the C host: the decision without building a table.
    list is the tags (action "cache") or the invalidation targets (action "invalidate"),
    or nil.  Everything else a decision says is static per route (set.routes[route_id]).
    pure is true when the same method, path, query string and presence of credentials
    (a non-empty Authorization or Cookie header) always give the same decision, so the
    caller may reuse it without asking again.
]]
function Set:decide_raw(req)
    if getmetatable(req) == nil then setmetatable(req, REQ_MT) end
    local header = rawget(req, "header")
    if header == nil then
        header = {}
        rawset(req, "header", header)
    end
    local method = req.method
    local r, params
    if self.has_hosts then
        local hr = self.host_routers[normalize_host(header["host"]) or ""]
        if hr ~= nil then
            r, params = hr:match(method, req.path)
        elseif self.unknown_host == "reject" then
            self.current = nil
            return "reject", nil, 0, "unknown_host", nil, true
        end
    end
    if r == nil then r, params = self.router:match(method, req.path) end
    local is_read = method == "GET" or method == "HEAD"

    if r == nil then
        self.current = nil
        local key = keys.bound(keys.default_key(req, DEFAULT_IGNORED, "GET"))
        if is_read and has_credentials(header) then
            return "bypass", key, 0, "credentials", nil, true
        end
        return "default", key, 0, "no_route", nil, true
    end

    rawset(req, "params", params)
    self.current = r.name
    local id = r.id
    local pure = r.pure

    if r.bypass or (r.bypass_fn and r.bypass_fn(req)) then
        return "bypass", nil, id, "bypass", nil, pure
    end

    local kind = r.kind
    if kind == "read" then
        if not r.per_user and has_credentials(header) then
            return "bypass", nil, id, "credentials", nil, pure
        end
        local key
        local kt = r.key_tmpl
        if kt then
            key = keys.bound(kt.fn(req, params, r.ignored))
        elseif r.key_fn then
            key = r.key_fn(req)
            if key == nil or key == false then return "bypass", nil, id, "no_key" end
            local tk = type(key)
            if tk == "number" then
                key = tostring(key)
            elseif tk ~= "string" then
                error(format("%skey function of route '%s' must return a string, got %s",
                    r.where, r.name, tk), 0)
            end
            key = keys.sanitize(key)
        else
            key = keys.bound(keys.default_key(req, r.ignored))
        end
        local tags
        if r.tags then
            local t = {}
            expand_list(r.tags, req, params, r.ignored, t, true)
            tags = tag_keys(t)
        elseif r.tags_fn then
            tags = tag_keys(fn_list(r, "tags", r.tags_fn(req), false))
        end
        return "cache", key, id, "route", tags, pure
    end

    if kind == "write" then
        local inv = write_targets(r, req, params)
        if #inv == 0 then return "bypass", nil, id, "write", nil, pure end
        return "invalidate", nil, id, "invalidate", inv, pure
    end

    -- A '*' route whose bypass function said no: behave as if no route matched, unless it
    -- names another upstream, whose answers the default key must not hold.
    if r.upstream ~= nil and r.upstream ~= "default" then
        return "bypass", nil, id, "bypass", nil, pure
    end
    local key = keys.bound(keys.default_key(req, DEFAULT_IGNORED, "GET"))
    if is_read and has_credentials(header) then
        return "bypass", key, id, "credentials", nil, pure
    end
    return "default", key, id, "default", nil, pure
end

--[[
set:describe() -> { default_ignore = {...}, routes = { desc, ... } }
    Every compiled route as plain data (route_id = index), read once by the C host when a
    set loads to build its route table (src/policy/route_table.h), which decides requests for
    routes without functions exactly as decide_raw does:
      desc = { kind = "read" | "write" | "any", methods = { "GET", ... } or { "*" },
               segments = { { kind = "lit" | "param" | "wild", value = ... }, ... },
               params = { names in order }, fn = bool (bypass, key, tags, invalidate or
               invalidate_tags is a function: Lua decides), bypass = bool, per_user = bool,
               ignore = { query ignore patterns },
               key = tmpl or nil, tags, invalidate, invalidate_tags = { tmpl, ... } or nil,
               hosts = { host, ... } or nil (the route matches on Host), upstream = name or
               nil, idempotent = bool }
    and, beside routes: hosts (every declared host, sorted), unknown_host, and upstreams
    (set:describe_upstreams()).
      tmpl = { prefix = bool, parts = { { k = kind, v = string or nil }, ... } }
    where kind is gateway/keys.lua's part number (1 literal, 2 param, 3 {query},
    4 {query.NAME}, 5 {header.NAME}, 6 {method}, 7 {path}, 8 {auth_hash}).  Fresh tables
    each call: nothing of the set is reachable from the result.
]]
local function describe_tmpl(t, prefix)
    local parts = {}
    for i = 1, t.n do
        local p = t.parts[i]
        parts[i] = { k = p[1], v = p[2] }
    end
    return { prefix = prefix or false, parts = parts }
end

local function describe_list(list)
    if list == nil then return nil end
    local out = {}
    for i, e in ipairs(list) do out[i] = describe_tmpl(e.tmpl, e.prefix) end
    return out
end

local function copy_list(l)
    if l == nil then return nil end
    local out = {}
    for i, v in ipairs(l) do out[i] = v end
    return out
end

function Set:describe()
    local routes = {}
    for id, r in ipairs(self.routes) do
        local methods = {}
        for m in pairs(r.methods) do methods[#methods + 1] = m end
        sort(methods)
        local segments = {}
        for i, seg in ipairs(r.pat.segments) do
            segments[i] = { kind = seg.kind, value = seg.value }
        end
        local params = {}
        for i, name in ipairs(r.pat.params) do params[i] = name end
        local ignore = {}
        for i, v in ipairs(r.ignore_list) do ignore[i] = v end
        routes[id] = {
            kind = r.kind, methods = methods, segments = segments, params = params,
            fn = (r.bypass_fn or r.key_fn or r.tags_fn or r.invalidate_fn or
                r.invalidate_tags_fn) ~= nil,
            bypass = r.bypass == true, per_user = r.per_user == true, ignore = ignore,
            key = r.key_tmpl and describe_tmpl(r.key_tmpl) or nil,
            tags = describe_list(r.tags),
            invalidate = describe_list(r.invalidate),
            invalidate_tags = describe_list(r.invalidate_tags),
            hosts = copy_list(r.hosts), upstream = r.upstream, idempotent = r.idempotent,
        }
    end
    local hosts = {}
    for i, h in ipairs(self.host_list) do hosts[i] = h end
    return { default_ignore = keys.default_ignore(), routes = routes, hosts = hosts,
             unknown_host = self.unknown_host, upstreams = self:describe_upstreams() }
end

--[[
set:describe_upstreams() -> { u, ... } in declaration order, plain data for the C side
    (src/upstream/upstream_config.h): u = { name, balance, servers = { { url, weight } },
    connect_timeout, timeout (seconds or nil: the gateway's), retries, max_fails,
    fail_timeout, fail_on_5xx, max_connections (or nil), dns_ttl,
    health = { path, interval, timeout, healthy, unhealthy } or nil }.
]]
function Set:describe_upstreams()
    local out = {}
    for i, u in ipairs(self.upstream_list) do
        local servers = {}
        for j, sv in ipairs(u.servers) do servers[j] = { url = sv.url, weight = sv.weight } end
        local d = {
            name = u.name, balance = u.balance, servers = servers,
            connect_timeout = u.connect_timeout, timeout = u.timeout, retries = u.retries,
            max_fails = u.max_fails, fail_timeout = u.fail_timeout,
            fail_on_5xx = u.fail_on_5xx, max_connections = u.max_connections,
            dns_ttl = u.dns_ttl,
        }
        if u.health then
            d.health = {}
            for k, v in pairs(u.health) do d.health[k] = v end
        end
        out[i] = d
    end
    return out
end

function Set:decide(req)
    local action, key, id, reason, list = self:decide_raw(req)
    local d = { action = action, key = key, route_id = id, reason = reason }
    local r = self.routes[id]
    if r then
        d.route = r.name
        d.per_user = r.per_user
        d.has_response_hook = r.on_response ~= nil
        d.ignore_no_store = r.ignore_no_store
        d.upstream = r.upstream
        d.idempotent = r.idempotent or nil
    end
    if action == "reject" then d.status = 404 end
    if action == "cache" then
        d.ttl, d.swr, d.sie, d.tags = r.ttl, r.swr, r.sie, list
    elseif action == "invalidate" then
        d.invalidate = list
    end
    return d
end

function Set:on_response(route_id, req, res)
    local r = self.routes[route_id]
    if r == nil or r.on_response == nil then return nil end
    prepare_request(req)
    rawset(req, "params", router.match_one(r.pat, req.path) or {})
    if type(res) ~= "table" then res = {} end
    if res.header == nil then res.header = {} end
    self.current = r.name
    local v = r.on_response(req, res)
    if v == nil then return nil end
    if type(v) ~= "table" then
        error(format("%son_response of route '%s' must return a table or nil, got %s",
            r.where, r.name, type(v)), 0)
    end
    for k, val in pairs(v) do
        local want = VERDICT_FIELDS[k]
        if want == nil then
            error(format("%son_response of route '%s' returned unknown field '%s' " ..
                "(use store, ttl, tags)", r.where, r.name, tostring(k)), 0)
        end
        if type(val) ~= want then
            error(format("%son_response of route '%s': field '%s' must be a %s, got %s",
                r.where, r.name, k, want, type(val)), 0)
        end
    end
    if v.ttl ~= nil and not is_finite_nonneg(v.ttl) then
        error(format("%son_response of route '%s': ttl must be a non-negative number, got %s",
            r.where, r.name, tostring(v.ttl)), 0)
    end
    local out = { store = v.store ~= false, ttl = v.ttl }
    if v.tags then out.tags = tag_keys(fn_list(r, "on_response tags", v.tags, false)) end
    return out
end

function M.decide(req)
    if last_loaded == nil then error("policy.decide: no policy set loaded", 2) end
    return last_loaded:decide(req)
end

function M.on_response(route_id, req, res)
    if last_loaded == nil then error("policy.on_response: no policy set loaded", 2) end
    return last_loaded:on_response(route_id, req, res)
end

return M
