/* lua_cache.c - see lua_cache.h.
 *
 * The Lua-facing functions, shared by two builds: the gateway links lua_cache_gateway.c
 * (the gateway's tiers), the loadable module for busted links lua_cache_module.c (its own
 * memory tier and an optional synchronous hiredis connection).  lua_cache_backend.h is the
 * interface between them.
 */
#include "lua_cache.h"

#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_object.h"
#include "log.h"
#include "lua_cache_backend.h"


const char LUA_CACHE_YIELD_MARK[] = "cachegw.cache.yield";

#define NS_LEN (sizeof LUA_CACHE_NS - 1)
#define LUA_CACHE_STR_(x) #x
#define LUA_CACHE_STR(x) LUA_CACHE_STR_(x)
#define CTX_REGISTRY_KEY "cachegw.cache.ctx"
/* Largest ttl in seconds: cache_object refuses durations over 2^52 ms. */
#define MAX_TTL_S 4.5e12
/* Room the Redis encoding adds to a value (header, times, key); values are bounded so that
 * the encoded object still fits MAX_VALUE_SIZE and Redis takes it. */
#define ENCODING_ROOM 128



static struct mstate *state_of(lua_State *L)
{
    struct mstate *st = lua_touserdata(L, lua_upvalueindex(1));
    if (st->held != NULL) {
        cache_object_unref(st->held);
        st->held = NULL;
    }
    return st;
}

/* Pushes obj's body and releases obj, also when the push raises (see mstate.held). */
static void push_body(lua_State *L, struct mstate *st, struct cache_object *obj)
{
    st->held = obj;
    lua_pushlstring(L, obj->body, obj->body_len);
    st->held = NULL;
    cache_object_unref(obj);
}

/* ---- backends: lua_cache_gateway.c or lua_cache_module.c (lua_cache_backend.h) ---- */


/* ---- argument checks (before any allocation) --------------------------------------------- */

/* A key is 1..LUA_CACHE_MAX_KEY bytes without NUL (keys travel as C strings to Redis). */
static bool key_ok(lua_State *L, int i)
{
    size_t len = 0;
    if (lua_type(L, i) != LUA_TSTRING) return false;
    const char *k = lua_tolstring(L, i, &len);
    return len > 0 && len <= LUA_CACHE_MAX_KEY && memchr(k, '\0', len) == NULL;
}

/* Checks arg i is a valid key and writes LUA_CACHE_NS .. key into nk. */
static size_t check_key(lua_State *L, int i, char nk[NS_LEN + LUA_CACHE_MAX_KEY + 1])
{
    luaL_checktype(L, i, LUA_TSTRING);
    size_t len;
    const char *k = lua_tolstring(L, i, &len);
    if (len == 0) luaL_argerror(L, i, "key must not be empty");
    if (len > LUA_CACHE_MAX_KEY)
        luaL_argerror(L, i, "key longer than " LUA_CACHE_STR(LUA_CACHE_MAX_KEY) " bytes");
    if (memchr(k, '\0', len) != NULL) luaL_argerror(L, i, "key contains a NUL byte");
    memcpy(nk, LUA_CACHE_NS, NS_LEN);
    memcpy(nk + NS_LEN, k, len);
    nk[NS_LEN + len] = '\0';
    return NS_LEN + len;
}

static int64_t check_ttl(lua_State *L, int i)
{
    if (lua_type(L, i) != LUA_TNUMBER) luaL_typeerror(L, i, "number (ttl in seconds)");
    lua_Number s = lua_tonumber(L, i);
    if (!(s >= 0)) luaL_argerror(L, i, "ttl must be a non-negative number of seconds");
    if (s > MAX_TTL_S) luaL_argerror(L, i, "ttl too large");
    return (int64_t)llround(s * 1000.0);
}

static int fail(lua_State *L, const char *msg)
{
    lua_pushnil(L);
    lua_pushstring(L, msg);
    return 2;
}

/* ---- the functions ------------------------------------------------------------------------ */

static int get_cont(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    (void)kctx;
    /* Stack: key, value from the resumer (string or nil). */
    if (lua_type(L, 2) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    lua_settop(L, 2);
    return 1;
}

static int c_get(lua_State *L)
{
    struct mstate *st = state_of(L);
    char nk[NS_LEN + LUA_CACHE_MAX_KEY + 1];
    size_t nlen = check_key(L, 1, nk);
    if (!lua_cache_be_bound(st)) {
        lua_pushnil(L);
        return 1;
    }
    struct cache_object *obj = lua_cache_be_lookup(st, nk, nlen, lua_cache_now_ms(), true);
    if (obj != NULL) {
        push_body(L, st, obj);
        return 1;
    }
    if (lua_cache_be_can_yield(L, st)) {
        lua_settop(L, 1);
        lua_pushlightuserdata(L, (void *)LUA_CACHE_YIELD_MARK);
        lua_pushlstring(L, nk, nlen);
        return lua_yieldk(L, 2, 0, get_cont);
    }
    lua_pushnil(L);
    return 1;
}

static int mget_cont(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    (void)kctx;
    /* Stack: keys, result, misses, one value per miss. */
    lua_Integer n = (lua_Integer)lua_rawlen(L, 3);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_type(L, 3 + (int)i) != LUA_TSTRING) continue;
        lua_rawgeti(L, 3, i);
        lua_pushvalue(L, 3 + (int)i);
        lua_rawset(L, 2);
    }
    lua_settop(L, 2);
    return 1;
}

/* Checks that arg 1 is an array of valid keys; returns its length. */
static size_t check_key_list(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = lua_rawlen(L, 1);
    if (n > LUA_CACHE_MAX_MGET)
        luaL_argerror(L, 1, "more than " LUA_CACHE_STR(LUA_CACHE_MAX_MGET) " keys");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i);
        if (!key_ok(L, -1))
            luaL_argerror(L, 1, lua_pushfstring(L, "keys[%d] is not a key (a non-empty string "
                                                   "of at most %d bytes, no NUL)",
                                                (int)i, LUA_CACHE_MAX_KEY));
        lua_pop(L, 1);
    }
    return n;
}

static int c_mget(lua_State *L)
{
    struct mstate *st = state_of(L);
    size_t n = check_key_list(L);
    lua_settop(L, 1);
    lua_createtable(L, 0, (int)n); /* 2: result */
    lua_createtable(L, 0, 0);      /* 3: keys that missed */
    if (!lua_cache_be_bound(st)) {
        lua_settop(L, 2);
        return 1;
    }
    char nk[NS_LEN + LUA_CACHE_MAX_KEY + 1];
    int64_t now = lua_cache_now_ms();
    lua_Integer misses = 0;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i);
        size_t nlen = check_key(L, -1, nk);
        struct cache_object *obj = lua_cache_be_lookup(st, nk, nlen, now, true);
        if (obj != NULL) {
            push_body(L, st, obj);
            lua_rawset(L, 2);
        } else {
            lua_rawseti(L, 3, ++misses);
        }
    }
    if (misses > 0 && lua_cache_be_can_yield(L, st)) {
        luaL_checkstack(L, (int)misses + 1, "cache.mget");
        lua_pushlightuserdata(L, (void *)LUA_CACHE_YIELD_MARK);
        for (lua_Integer i = 1; i <= misses; i++) {
            lua_rawgeti(L, 3, i);
            lua_pushliteral(L, LUA_CACHE_NS);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
        return lua_yieldk(L, (int)misses + 1, 0, mget_cont);
    }
    lua_settop(L, 2);
    return 1;
}

/* Builds the object for a value; NULL when out of memory. */
static struct cache_object *build(struct mstate *st, const char *nk, size_t nlen,
                                  const char *v, size_t vlen, int64_t ttl_ms)
{
    struct cache_meta meta = {
        .stored_at_ms = lua_cache_now_ms(), .ttl_ms = ttl_ms, .gen = lua_cache_be_gen(st)};
    return cache_object_build(nk, nlen, 200, NULL, 0, v, vlen, &meta);
}

static bool value_fits(const struct mstate *st, size_t nlen, size_t vlen)
{
    size_t max = lua_cache_be_max_value(st);
    return max == 0 || vlen + nlen + ENCODING_ROOM <= max;
}

static int too_big(lua_State *L, const struct mstate *st, size_t vlen)
{
    lua_pushnil(L);
    lua_pushfstring(L, "value too large (%I bytes; MAX_VALUE_SIZE is %I bytes, including the "
                       "key and about %d bytes of framing)",
                    (lua_Integer)vlen, (lua_Integer)lua_cache_be_max_value(st), ENCODING_ROOM);
    return 2;
}

static int c_set(lua_State *L)
{
    struct mstate *st = state_of(L);
    char nk[NS_LEN + LUA_CACHE_MAX_KEY + 1];
    size_t nlen = check_key(L, 1, nk);
    luaL_checktype(L, 2, LUA_TSTRING);
    int64_t ttl_ms = check_ttl(L, 3);
    if (!lua_cache_be_bound(st)) return fail(L, "cache not available here");
    size_t vlen;
    const char *v = lua_tolstring(L, 2, &vlen);
    if (!value_fits(st, nlen, vlen)) return too_big(L, st, vlen);
    if (ttl_ms == 0) {
        lua_cache_be_delete(st, nk, nlen); /* a zero lifetime: nothing to keep, drop older copies */
        lua_pushboolean(L, 1);
        return 1;
    }
    struct cache_object *obj = build(st, nk, nlen, v, vlen, ttl_ms);
    if (obj == NULL) return fail(L, "out of memory");
    lua_cache_be_store(st, obj);
    cache_object_unref(obj);
    lua_pushboolean(L, 1);
    return 1;
}

static int c_mset(lua_State *L)
{
    struct mstate *st = state_of(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t ttl_ms = check_ttl(L, 2);
    lua_settop(L, 2);
    /* Check everything first, so a bad entry stores nothing. */
    size_t count = 0, too_large = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        size_t klen = 0, vlen = 0;
        if (!key_ok(L, -2))
            luaL_argerror(L, 1, "every key must be a non-empty string of at most "
                                LUA_CACHE_STR(LUA_CACHE_MAX_KEY) " bytes");
        if (lua_type(L, -1) != LUA_TSTRING) luaL_argerror(L, 1, "every value must be a string");
        if (++count > LUA_CACHE_MAX_MGET)
            luaL_argerror(L, 1, "more than " LUA_CACHE_STR(LUA_CACHE_MAX_MGET) " entries");
        lua_tolstring(L, -2, &klen);
        lua_tolstring(L, -1, &vlen);
        if (lua_cache_be_bound(st) && !value_fits(st, NS_LEN + klen, vlen) && too_large < vlen)
            too_large = vlen;
        lua_pop(L, 1);
    }
    if (!lua_cache_be_bound(st)) return fail(L, "cache not available here");
    if (too_large > 0) return too_big(L, st, too_large);
    char nk[NS_LEN + LUA_CACHE_MAX_KEY + 1];
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        size_t nlen = check_key(L, -2, nk), vlen;
        const char *v = lua_tolstring(L, -1, &vlen);
        if (ttl_ms == 0) {
            lua_cache_be_delete(st, nk, nlen);
        } else {
            struct cache_object *obj = build(st, nk, nlen, v, vlen, ttl_ms);
            if (obj == NULL) return fail(L, "out of memory");
            lua_cache_be_store(st, obj);
            cache_object_unref(obj);
        }
        lua_pop(L, 1);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int c_delete(lua_State *L)
{
    struct mstate *st = state_of(L);
    char nk[NS_LEN + LUA_CACHE_MAX_KEY + 1];
    size_t nlen = check_key(L, 1, nk);
    if (!lua_cache_be_bound(st)) return fail(L, "cache not available here");
    lua_cache_be_delete(st, nk, nlen);
    lua_pushboolean(L, 1);
    return 1;
}

static int c_invalidate_prefix(lua_State *L)
{
    struct mstate *st = state_of(L);
    char nk[NS_LEN + LUA_CACHE_MAX_KEY + 1];
    size_t nlen = check_key(L, 1, nk);
    if (!lua_cache_be_bound(st)) return fail(L, "cache not available here");
    lua_cache_be_invalidate_prefix(st, nk, nlen);
    lua_pushboolean(L, 1);
    return 1;
}

static int c_stats(lua_State *L)
{
    struct mstate *st = state_of(L);
    lua_cache_be_push_stats(L, st);
    return 1;
}

/* Private helper of cache.cached: hex SHA-256 of a string (long argument lists). */
static int c_digest(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(s, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
        return luaL_error(L, "cache.cached: SHA-256 failed");
    static const char hex[] = "0123456789abcdef";
    char out[64];
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    lua_pushlstring(L, out, sizeof out);
    return 1;
}

/*
 * cache.cached's wrapper, in Lua so that cache reads and the wrapped function may both yield
 * (a C function calling fn would need a continuation for each step).  It runs inside the
 * caller's budgeted call.  Stored values carry a one-byte tag: "s" + string, "j" + JSON.
 */
static const char CACHED_LUA[] =
    "local get, set, digest, max_key = ...\n"
    "local type, tostring, select, error, require = type, tostring, select, error, require\n"
    "local format, concat, sort, mtype = string.format, table.concat, table.sort, math.type\n"
    "local json\n"
    "local function ser(v, depth)\n"
    "  local t = type(v)\n"
    "  if t == 'string' then return 's' .. #v .. ':' .. v\n"
    "  elseif t == 'number' then\n"
    "    if mtype(v) == 'integer' then return 'i' .. tostring(v) end\n"
    "    return 'f' .. format('%.17g', v)\n"
    "  elseif t == 'boolean' then return v and 'T' or 'F'\n"
    "  elseif t == 'nil' then return 'N'\n"
    "  elseif t == 'table' then\n"
    "    if depth > 16 then error('cache.cached: argument nested too deeply', 4) end\n"
    "    local parts = {}\n"
    "    for k, x in next, v do parts[#parts + 1] = ser(k, depth + 1) .. '=' .. ser(x, depth + 1) end\n"
    "    sort(parts)\n"
    "    return '{' .. concat(parts, ',') .. '}'\n"
    "  end\n"
    "  error('cache.cached: cannot key on a ' .. t .. ' argument', 4)\n"
    "end\n"
    "return function(prefix, ttl, fn)\n"
    "  return function(...)\n"
    "    local n = select('#', ...)\n"
    "    local parts = {}\n"
    "    for i = 1, n do parts[i] = ser((select(i, ...)), 0) end\n"
    "    local s = concat(parts, ',')\n"
    "    local key = prefix .. ':' .. s\n"
    "    if #key > max_key then key = prefix .. ':#' .. digest(s) end\n"
    "    local v = get(key)\n"
    "    if v ~= nil then\n"
    "      local tag = v:sub(1, 1)\n"
    "      if tag == 's' then return v:sub(2) end\n"
    "      if tag == 'j' then\n"
    "        json = json or require('gateway.json')\n"
    "        local ok, d = pcall(json.decode, v:sub(2))\n"
    "        if ok then return d end\n"
    "      end\n"
    "    end\n"
    "    local r = fn(...)\n"
    "    if r == nil then return nil end\n"
    "    local enc\n"
    "    if type(r) == 'string' then enc = 's' .. r\n"
    "    else json = json or require('gateway.json'); enc = 'j' .. json.encode(r) end\n"
    "    set(key, enc, ttl)\n"
    "    return r\n"
    "  end\n"
    "end\n";

static int c_cached(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    size_t plen;
    lua_tolstring(L, 1, &plen);
    if (plen == 0 || plen > LUA_CACHE_MAX_KEY / 2)
        luaL_argerror(L, 1, "prefix must be a non-empty string of at most 256 bytes");
    check_ttl(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lua_settop(L, 3);
    lua_pushvalue(L, lua_upvalueindex(2)); /* the wrapper factory */
    lua_insert(L, 1);
    lua_call(L, 3, 1);
    return 1;
}


/* Creates the context userdata (upvalue of every function). */
static struct mstate *new_state(lua_State *L)
{
    struct mstate *st = lua_newuserdatauv(L, sizeof *st, 0);
    memset(st, 0, sizeof *st);
    lua_cache_be_init(L, st);
    return st;
}

int lua_cache_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"get", c_get},       {"set", c_set},
        {"delete", c_delete}, {"mget", c_mget},
        {"mset", c_mset},     {"invalidate_prefix", c_invalidate_prefix},
        {"stats", c_stats},   {NULL, NULL},
    };
    lua_createtable(L, 0, 8);
    int t = lua_gettop(L);
    new_state(L);
    int st = lua_gettop(L);
    lua_pushvalue(L, st);
    lua_setfield(L, LUA_REGISTRYINDEX, CTX_REGISTRY_KEY);
    lua_pushvalue(L, t);
    lua_pushvalue(L, st);
    luaL_setfuncs(L, funcs, 1); /* into the table below the upvalue */
    lua_settop(L, st);

    /* cache.cached: the factory chunk gets get, set, digest and the key bound. */
    if (luaL_loadbufferx(L, CACHED_LUA, sizeof CACHED_LUA - 1, "=cache.cached", "t") != LUA_OK)
        lua_error(L);
    lua_getfield(L, t, "get");
    lua_getfield(L, t, "set");
    lua_pushcfunction(L, c_digest);
    lua_pushinteger(L, LUA_CACHE_MAX_KEY);
    lua_call(L, 4, 1); /* the factory */
    lua_pushvalue(L, st);
    lua_insert(L, -2);
    lua_pushcclosure(L, c_cached, 2);
    lua_setfield(L, t, "cached");
    lua_settop(L, t);
    return 1;
}

struct lua_cache_ctx *lua_cache_ctx_of(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, CTX_REGISTRY_KEY);
    struct mstate *st = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return st ? &st->ctx : NULL;
}

int luaopen_cache(lua_State *L) { return lua_cache_open(L); }
