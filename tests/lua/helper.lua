--[[
tests/lua/helper.lua - shared setup for the busted specs, and for specs of your own
policies (see docs/policies.md, "Testing your policies").

In this checkout, plain `busted` at the repository root runs every spec: the .busted file
there names this helper, lua5.4 and tests/lua.  The long form is

    busted --lua=lua5.4 --helper=tests/lua/helper.lua tests/lua

ctest does the same (ctest -L lua).  A project outside this checkout tests its own policies
with its own specs and this helper:

    cd ~/my-api && busted --lua=lua5.4 --helper=/path/to/cachegw/tests/lua/helper.lua spec

The helper makes `require "gateway.*"` find this checkout's lua/, and `require
"cachegw_helpers"` (the gateway's C helpers: gw.hash, gw.now, gw.log, gw.where) find the
module CMake builds into <build>/lua/cachegw_helpers.so.  Where that module is looked for,
first to last: LUA_CPATH (ctest sets it); CACHEGW_BUILD_DIR/lua; build/lua; then every
build-*/lua of the checkout, most recently built first (so a stale build directory does not
shadow the one just built).

Policy directories are paths as the caller writes them: relative to the working directory
busted runs in (not to this checkout), or absolute; the default is "policies", as the
gateway's POLICIES_DIR default ./policies.  A directory that is missing, or holds no policy
file, is an error: a spec that silently tests nothing is worse than a red one.

It also registers itself as package.loaded.helper, so a spec can say
`local helper = require "helper"`:

  helper.root                      this checkout's root ("" when it is the working dir)
  helper.read(path)                a file's contents (path relative to helper.root)
  helper.policy_files([dir])       sorted names of the policy files in dir, as the gateway
                                   would load them (*.lua, no dot files, no *_spec.lua);
                                   raises if dir is missing or holds none
  helper.load_policies([names], [dir])
                                   loads dir's policy files (all of them by default, as the
                                   gateway does: one set, so duplicates across files are
                                   caught) and returns the set
  helper.load_source(source [, name])
                                   loads one policy from a string (name default
                                   "policies/test.lua")
  helper.load_error(source [, name])
                                   the error loading it raises, or nil
  helper.request("GET /users/42?x=1" [, headers])
                                   a request table as the gateway builds it
  helper.decide(set, "GET /users/42?x=1" [, headers])
                                   set:decide(helper.request(...))
]]
local helper = {}

local source = debug.getinfo(1, "S").source:gsub("^@", "")
local root = source:gsub("tests/lua/helper%.lua$", "")
if root == "./" then root = "" end
helper.root = root

package.path = root .. "lua/?.lua;" .. root .. "lua/?/init.lua;" .. package.path

-- Quotes a string for /bin/sh (io.popen): policy and build paths may hold spaces.
local function shell_quote(str)
    return "'" .. str:gsub("'", "'\\''") .. "'"
end

local function add_cpath(dir)
    package.cpath = package.cpath .. ";" .. dir .. "/?.so"
end
local build = os.getenv("CACHEGW_BUILD_DIR")
if build and build ~= "" then add_cpath(build .. "/lua") end
add_cpath(root .. "build/lua")
do
    -- ls -t: newest first, so the build directory built last wins over stale ones.
    local p = io.popen("ls -dt " .. shell_quote(root ~= "" and root or "./") ..
        "build-*/lua/cachegw_helpers.so 2>/dev/null")
    if p then
        for so in p:lines() do add_cpath((so:gsub("/cachegw_helpers%.so$", ""))) end
        p:close()
    end
end

local ok, err = pcall(require, "cachegw_helpers")
if not ok then
    error("cannot load cachegw_helpers (build it: cmake --build build --target " ..
        "cachegw_helpers, or set LUA_CPATH / CACHEGW_BUILD_DIR): " .. tostring(err), 0)
end

local policy = require "gateway.policy"

function helper.read(path)
    local f = assert(io.open(root .. path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then error("cannot read " .. err, 0) end
    local str = f:read("a")
    f:close()
    return str
end

-- A directory as the caller wrote it; relative paths stay relative to the working
-- directory, which is what io.open and ls resolve them against.
local function policies_dir(dir)
    if dir == nil then return "policies" end
    if type(dir) ~= "string" or dir == "" then
        error("policies directory must be a non-empty path, got " .. tostring(dir), 3)
    end
    return (dir:gsub("(.)/+$", "%1"))
end

function helper.policy_files(dir)
    dir = policies_dir(dir)
    if not os.execute("test -d " .. shell_quote(dir)) then
        error(("policies directory %s not found (relative paths are resolved against the " ..
            "working directory, %s)"):format(dir, os.getenv("PWD") or "."), 0)
    end
    local p = assert(io.popen("ls -1 " .. shell_quote(dir) .. " 2>&1"))
    local lines = {}
    for line in p:lines() do lines[#lines + 1] = line end
    if not p:close() then
        error(("policies directory %s: cannot list it: %s"):format(dir, lines[#lines] or "?"), 0)
    end
    local names = {}
    for _, name in ipairs(lines) do
        if name:match("%.lua$") and not name:match("_spec%.lua$") and not name:match("^%.") then
            names[#names + 1] = name
        end
    end
    if #names == 0 then
        error(("no policy files (*.lua) in %s: nothing to test"):format(dir), 0)
    end
    table.sort(names)
    return names
end

function helper.load_policies(names, dir)
    dir = policies_dir(dir)
    names = names or helper.policy_files(dir)
    if #names == 0 then error("load_policies: empty list of policy files", 2) end
    local files = {}
    for i, name in ipairs(names) do
        files[i] = { name = dir .. "/" .. name, source = read_file(dir .. "/" .. name) }
    end
    return policy.load(files)
end

function helper.load_source(src, name)
    return policy.load({ { name = name or "policies/test.lua", source = src } })
end

function helper.load_error(src, name)
    local ok_, e = pcall(helper.load_source, src, name)
    if ok_ then return nil end
    return e
end

function helper.request(spec, headers)
    local method, target = spec:match("^(%u+)%s+(%S+)$")
    assert(method, "request spec must look like 'GET /path?query'")
    local path, query = target:match("^([^?]*)%??(.*)$")
    local h = {}
    for k, v in pairs(headers or {}) do h[k:lower()] = v end
    return { method = method, path = path, query_string = query ~= "" and query or nil,
             header = h, client_ip = "127.0.0.1" }
end

function helper.decide(set, spec, headers)
    return set:decide(helper.request(spec, headers))
end

package.loaded.helper = helper
return helper
