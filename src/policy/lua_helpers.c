/* lua_helpers.c - see lua_helpers.h. */
#include "lua_helpers.h"

#include <lauxlib.h>
#include <openssl/evp.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "query_norm.h"

/* Registry name of the compiled ignore lists' metatable. */
#define QUERY_IGNORE_MT "cachegw.query_ignore"

static int gw_hash(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer n = luaL_optinteger(L, 2, 16);
    luaL_argcheck(L, n >= 1 && n <= 64, 2, "hex length must be 1..64");

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(s, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
        return luaL_error(L, "gw.hash: SHA-256 failed");
    static const char hex[] = "0123456789abcdef";
    char out[65];
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    lua_pushlstring(L, out, (size_t)n);
    return 1;
}

static int gw_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static int gw_log(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    static const enum log_level map[] = {LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR};
    int lv = luaL_checkoption(L, 1, NULL, levels);
    size_t len;
    const char *msg = luaL_tolstring(L, 2, &len);
    /* The message is copied by log_msg before anything can raise. */
    log_msg(map[lv], "policy: %.*s", (int)(len > 1500 ? 1500 : len), msg);
    return 0;
}

static int gw_where(lua_State *L)
{
    lua_Integer level = luaL_optinteger(L, 1, 1);
    luaL_argcheck(L, level >= 0 && level < 1000, 1, "level out of range");
    luaL_where(L, (int)level);
    return 1;
}

/* gw.query_ignore(list): the list's array part is read raw (no metamethods), so both
 * passes see the same strings.  One userdata holds the struct, its entries and a copy of
 * their bytes: the C side needs nothing else alive, and the memory is the state's. */
static int gw_query_ignore(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t n = 0, n_prefix = 0, bytes = 0;
    for (;; n++) {
        int t = lua_rawgeti(L, 1, (lua_Integer)n + 1);
        if (t == LUA_TNIL) break;
        if (t != LUA_TSTRING)
            return luaL_error(L, "gw.query_ignore: entry %d must be a string, not %s",
                              (int)n + 1, luaL_typename(L, -1));
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        if (len > 0 && s[len - 1] == '*') n_prefix++;
        bytes += len;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    size_t size = sizeof(struct query_ignore) + n * sizeof(struct query_ignore_entry) + bytes;
    struct query_ignore *ign = lua_newuserdatauv(L, size, 0);
    struct query_ignore_entry *entries = (struct query_ignore_entry *)(ign + 1);
    char *copy = (char *)(entries + n);
    ign->exact = entries;
    ign->n_exact = 0;
    ign->prefix = entries + (n - n_prefix);
    ign->n_prefix = 0;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        memcpy(copy, s, len);
        if (len > 0 && s[len - 1] == '*')
            ign->prefix[ign->n_prefix++] = (struct query_ignore_entry){copy, len - 1};
        else
            ign->exact[ign->n_exact++] = (struct query_ignore_entry){copy, len};
        copy += len;
        lua_pop(L, 1);
    }
    query_ignore_sort(ign->exact, ign->n_exact);
    luaL_setmetatable(L, QUERY_IGNORE_MT);
    return 1;
}

/* gw.normalize_query(qs [, ignore]).  Upvalue 1 is this state's struct query_norm (about
 * 12 KiB, kept off the C stack); the call never re-enters Lua while using it. */
static int gw_normalize_query(lua_State *L)
{
    if (lua_isnoneornil(L, 1)) {
        lua_pushliteral(L, "");
        return 1;
    }
    size_t len;
    const char *qs = luaL_checklstring(L, 1, &len);
    const struct query_ignore *ign = NULL;
    if (!lua_isnoneornil(L, 2)) ign = luaL_checkudata(L, 2, QUERY_IGNORE_MT);
    struct query_norm *st = lua_touserdata(L, lua_upvalueindex(1));
    if (query_norm_scan(st, qs, len, ign) != QUERY_NORM_OK) {
        lua_pushliteral(L, QUERY_NORM_TOO_MANY_MSG);
        return lua_error(L);
    }
    char small[1024];
    char *scratch = small;
    if (st->scratch_len > sizeof small) scratch = lua_newuserdatauv(L, st->scratch_len, 0);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, st->out_len);
    query_norm_write(st, scratch, out);
    luaL_pushresultsize(&b, st->out_len);
    return 1;
}

static const luaL_Reg gw_funcs[] = {
    {"hash", gw_hash}, {"now", gw_now}, {"log", gw_log}, {"where", gw_where},
    {"query_ignore", gw_query_ignore}, {NULL, NULL},
};

int lua_helpers_open(lua_State *L)
{
    luaL_newlib(L, gw_funcs);
    if (luaL_newmetatable(L, QUERY_IGNORE_MT)) {
        /* Opaque to policies: getmetatable sees a string, setmetatable refuses. */
        lua_pushliteral(L, "cachegw.protected");
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
    lua_newuserdatauv(L, sizeof(struct query_norm), 0);
    lua_pushcclosure(L, gw_normalize_query, 1);
    lua_setfield(L, -2, "normalize_query");
    return 1;
}

int luaopen_cachegw_helpers(lua_State *L) { return lua_helpers_open(L); }
