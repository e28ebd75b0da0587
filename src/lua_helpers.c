/* lua_helpers.c - see lua_helpers.h. */
#include "lua_helpers.h"

#include <lauxlib.h>
#include <openssl/evp.h>
#include <string.h>
#include <time.h>

#include "log.h"

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

static const luaL_Reg gw_funcs[] = {
    {"hash", gw_hash}, {"now", gw_now}, {"log", gw_log}, {"where", gw_where}, {NULL, NULL},
};

int lua_helpers_open(lua_State *L)
{
    luaL_newlib(L, gw_funcs);
    return 1;
}

int luaopen_cachegw_helpers(lua_State *L) { return lua_helpers_open(L); }
