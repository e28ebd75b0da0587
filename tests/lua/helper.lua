--[[
tests/lua/helper.lua - shared setup for the busted specs, and for specs of your own
policies (see docs/policies.md, "Testing your policies").

Run from the repository root:

    busted --lua=lua5.4 --helper=tests/lua/helper.lua tests/lua

ctest does the same (ctest -L lua).  The helper makes `require "gateway.*"` find lua/,
and `require "cachegw_helpers"` (the gateway's C helpers: gw.hash, gw.now, gw.log,
gw.where) find the module CMake builds into <build>/lua/cachegw_helpers.so: set LUA_CPATH,
or CACHEGW_BUILD_DIR, or build into build/ or build-*/.

It also registers itself as package.loaded.helper, so a spec can say
`local helper = require "helper"`:

  helper.root                      the repository root ("" when it is the working dir)
  helper.read(path)                a file's contents (path relative to the root)
  helper.policy_files([dir])       sorted names of the policy files in dir (default
                                   "policies"), as the gateway would load them
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

local function add_cpath(dir)
    package.cpath = dir .. "/?.so;" .. package.cpath
end
local build = os.getenv("CACHEGW_BUILD_DIR")
if build then add_cpath(build .. "/lua") end
do
    local p = io.popen('ls -d "' .. (root ~= "" and root or "./") .. '"build*/lua 2>/dev/null')
    if p then
        for dir in p:lines() do package.cpath = package.cpath .. ";" .. dir .. "/?.so" end
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

function helper.policy_files(dir)
    dir = dir or "policies"
    local names = {}
    local p = assert(io.popen('ls -1 "' .. root .. dir .. '" 2>/dev/null'))
    for name in p:lines() do
        if name:match("%.lua$") and not name:match("_spec%.lua$") and not name:match("^%.") then
            names[#names + 1] = name
        end
    end
    p:close()
    table.sort(names)
    return names
end

function helper.load_policies(names, dir)
    dir = dir or "policies"
    names = names or helper.policy_files(dir)
    local files = {}
    for i, name in ipairs(names) do
        files[i] = { name = dir .. "/" .. name, source = helper.read(dir .. "/" .. name) }
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
