/* sandbox.c - see sandbox.h. */
#include "sandbox.h"

#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lualib.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "lua_cache.h"
#include "lua_helpers.h"

/* The count hook runs every HOOK_PERIOD instructions (or per-call budget, if smaller) and
 * reads the clock each time: about 25 ns per thousand instructions. */
#define HOOK_PERIOD 1000
/* Pattern matching (lua_pattern.h): this many matcher steps cost one instruction, and the
 * clock is read every PATTERN_CHECK_STEPS steps. */
#define PATTERN_STEPS_PER_INSTRUCTION 16
#define PATTERN_CHECK_STEPS 4096
/* Allocations at least this large read the clock (see alloc_clock_check). */
#define ALLOC_CLOCK_BYTES ((size_t)64 << 10)

static atomic_uint_fast64_t sandbox_time_kills;

static struct sandbox *sandbox_of(lua_State *L) { return *(struct sandbox **)lua_getextraspace(L); }

int64_t sandbox_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/*
 * Stops the current call: every later instruction of the threads that run policy code
 * raises again (budget_hook), so a pcall inside the policy cannot swallow the kill.
 * Safe from the allocator: lua_sethook may even be called from a signal handler.
 */
static void sandbox_kill(struct sandbox *sb, lua_State *L, enum sandbox_kill why)
{
    if (sb->kill == SANDBOX_KILL_NONE) sb->kill = why;
    if (why == SANDBOX_KILL_TIME) atomic_fetch_add(&sandbox_time_kills, 1);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    if (sb->running != NULL && sb->running != L)
        lua_sethook(sb->running, budget_hook, LUA_MASKCOUNT, 1);
    if (L != sb->L) lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, 1);
}

static void push_kill_message(struct sandbox *sb, lua_State *L)
{
    if (sb->kill == SANDBOX_KILL_TIME)
        lua_pushfstring(L, "time limit exceeded (%d ms)", (int)sb->time_ms);
    else
        lua_pushfstring(L, "instruction budget exceeded (%d instructions)",
                        (int)(sb->budget > INT_MAX ? INT_MAX : sb->budget));
}

/* Large allocations are where slow C library calls (string.rep, table.concat, gsub of a
 * long subject) spend their time without executing instructions: check the clock there. */
static void alloc_clock_check(struct sandbox *sb)
{
    if (!sb->armed || sb->kill != SANDBOX_KILL_NONE || sandbox_mono_ns() < sb->deadline_ns) return;
    sandbox_kill(sb, sb->running != NULL ? sb->running : sb->L, SANDBOX_KILL_TIME);
}

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct sandbox *sb = ud;
    size_t old = ptr != NULL ? osize : 0; /* with ptr NULL, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        sb->mem_used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > sb->mem_limit - sb->mem_used) return NULL;
    if (nsize >= ALLOC_CLOCK_BYTES && nsize > old) alloc_clock_check(sb);
    void *p = realloc(ptr, nsize);
    if (p == NULL) return nsize <= old ? ptr : NULL; /* Lua requires shrinking to succeed */
    sb->mem_used = sb->mem_used - old + nsize;
    return p;
}

/*
 * The count hook, run every hook_period instructions of a budgeted call: it charges them
 * to the budget and looks at the clock.  Once the call is over budget (or time) the hook
 * fires on every instruction and raises, so that an error caught by a pcall inside the
 * policy is raised again at the very next instruction until it leaves the outermost call.
 */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct sandbox *sb = sandbox_of(L);
    if (sb->kill == SANDBOX_KILL_NONE) {
        sb->instr_left -= sb->hook_period;
        if (sb->instr_left > 0 && sandbox_mono_ns() < sb->deadline_ns) return;
        sandbox_kill(sb, L, sb->instr_left > 0 ? SANDBOX_KILL_TIME : SANDBOX_KILL_INSTR);
    }
    /* Level 0 is the Lua function that was running: hooks get no frame of their own. */
    luaL_where(L, 0);
    push_kill_message(sb, L);
    lua_concat(L, 2);
    lua_error(L);
}

/* The pattern matcher's budget: PATTERN_STEPS_PER_INSTRUCTION steps cost one instruction
 * of the call's budget, and the clock is read every PATTERN_CHECK_STEPS steps. */
static void pattern_check(lua_State *L, struct lua_pattern_budget *b)
{
    struct sandbox *sb = b->ud;
    int64_t used = PATTERN_CHECK_STEPS - b->steps_left;
    b->steps_left = PATTERN_CHECK_STEPS;
    if (!sb->armed) return;
    if (sb->kill == SANDBOX_KILL_NONE) {
        sb->instr_left -= used / PATTERN_STEPS_PER_INSTRUCTION;
        if (sb->instr_left > 0 && sandbox_mono_ns() < sb->deadline_ns) return;
        sandbox_kill(sb, L, sb->instr_left > 0 ? SANDBOX_KILL_TIME : SANDBOX_KILL_INSTR);
    }
    luaL_where(L, 1); /* the Lua code that called string.find & co */
    push_kill_message(sb, L);
    lua_pushliteral(L, " in pattern matching");
    lua_concat(L, 3);
    lua_error(L);
}

static void arm_budget(struct sandbox *sb, int64_t instructions, int64_t time_ns, long budget,
                       long time_ms)
{
    sb->kill = SANDBOX_KILL_NONE;
    sb->armed = true;
    sb->budget = budget;
    sb->time_ms = time_ms;
    sb->instr_left = instructions;
    sb->deadline_ns = sandbox_mono_ns() + time_ns;
    sb->pat.steps_left = PATTERN_CHECK_STEPS;
    lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, sb->hook_period);
}

static void disarm_budget(struct sandbox *sb)
{
    sb->armed = false;
    lua_sethook(sb->L, NULL, 0, 0);
}

/* Message handler for every lua_pcall: the message plus a traceback. */
static int msg_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
            msg = lua_tostring(L, -1);
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
        }
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

enum sandbox_result sandbox_call(struct sandbox *sb, lua_CFunction fn, void *ud,
                                     struct sandbox_budget cb, char *err, size_t err_len)
{
    lua_State *L = sb->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, msg_handler);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    arm_budget(sb, cb.instructions, cb.time_ns, cb.budget, cb.time_ms);
    int rc = lua_pcall(L, 1, 0, top + 1);
    bool killed = sb->kill != SANDBOX_KILL_NONE;
    disarm_budget(sb);
    enum sandbox_result res = SANDBOX_OK;
    if (rc != LUA_OK) {
        res = rc == LUA_ERRMEM ? SANDBOX_MEMORY : killed ? SANDBOX_BUDGET : SANDBOX_ERROR;
        const char *msg = lua_tostring(L, -1);
        if (msg == NULL) msg = "(no message)";
        const char *tb = strstr(msg, "\nstack traceback:");
        size_t len = tb ? (size_t)(tb - msg) : strlen(msg);
        if (res == SANDBOX_MEMORY) {
            snprintf(err, err_len, "not enough memory (Lua memory limit %zu bytes)",
                     sb->mem_limit);
        } else if (err_len > 0) {
            snprintf(err, err_len, "%.*s", (int)len, msg);
        }
        if (tb != NULL) LOG_D("lua: %s", msg);
    }
    lua_settop(L, top);
    return res;
}

/* ---- sandbox globals --------------------------------------------------------------------- */

static int ro_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table (field '%s')",
                      luaL_tolstring(L, 2, NULL));
}

/* __pairs of a read-only proxy: iterate the real table without handing it out. */
static int ro_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushnil(L);
    return 1;
}

static int ro_pairs(lua_State *L)
{
    luaL_getmetafield(L, 1, "__index"); /* the real table */
    lua_pushcclosure(L, ro_next, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replaces the table at the top of the stack with a read-only proxy for it. */
static void push_readonly(lua_State *L)
{
    lua_newtable(L);                   /* real proxy */
    lua_createtable(L, 0, 4);          /* real proxy mt */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, SANDBOX_PROTECTED_MARK);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_remove(L, -2);
}

static int safe_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    lua_settop(L, 3);
    int t = luaL_getmetafield(L, 1, "__metatable");
    if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), SANDBOX_PROTECTED_MARK) == 0)
        return luaL_error(L, "attempt to modify a read-only table with rawset");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* setmetatable without __gc: finalizers would run policy code outside any budgeted call. */
static int safe_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in policies");
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

/* load(chunk [, name [, mode [, env]]]): text only, env defaulting to the sandbox's. */
static int safe_load(lua_State *L)
{
    int nargs = lua_gettop(L);
    luaL_checkany(L, 1);
    lua_settop(L, 4);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the original load */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushliteral(L, "t");
    if (nargs >= 4)
        lua_pushvalue(L, 4);
    else
        lua_pushvalue(L, lua_upvalueindex(2)); /* the sandbox's globals */
    lua_call(L, 4, 2);
    if (lua_isnil(L, -2)) return 2; /* nil, message */
    lua_pop(L, 1);
    return 1;
}

/*
 * xpcall(f, handler, ...) that runs the handler after the error has unwound, like
 * pcall(f, ...) followed by handler(err).  Lua calls a real xpcall handler at the point of
 * the error; when that error came from the budget hook, hooks are still disabled there,
 * so a looping handler could never be stopped.  Without the debug library a handler
 * cannot inspect the failing stack anyway, so nothing is lost.
 */
static int safe_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_remove(L, 2);
    lua_insert(L, 1); /* handler, f, args... */
    if (lua_pcall(L, n - 2, LUA_MULTRET, 0) == LUA_OK) {
        lua_pushboolean(L, 1);
        lua_replace(L, 1); /* true, results... */
        return lua_gettop(L);
    }
    lua_call(L, 1, 1); /* handler(err), unprotected: a budget kill propagates */
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

static int safe_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage('%s') is not allowed in policies (only 'count')", opt);
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
    return 1;
}

static int safe_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    log_msg(LOG_INFO, "policy print: %.*s", (int)(len > 1500 ? 1500 : len), s);
    return 0;
}

/*
 * require(name): "cachegw_helpers" is the gw table; "gateway.<x>" loads the set's module
 * source as text in the sandbox's environment, once.  Upvalues: 1 = loaded table,
 * 2 = sandbox globals.
 */
static int safe_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (lua_getfield(L, lua_upvalueindex(1), name) != LUA_TNIL) {
        if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
            return luaL_error(L, "require: loop while loading module '%s'", name);
        return 1;
    }
    lua_pop(L, 1);
    const struct sandbox *sb = sandbox_of(L);
    const struct lua_source *src = NULL;
    for (size_t i = 0; i < sb->n_modules; i++)
        if (strcmp(sb->modules[i].name, name) == 0) src = &sb->modules[i];
    if (src == NULL)
        return luaL_error(L, "module '%s' not found (policies may only require gateway.* "
                             "modules)", name);
    lua_pushboolean(L, 0); /* loading marker */
    lua_setfield(L, lua_upvalueindex(1), name);
    if (luaL_loadbufferx(L, src->text, src->len, src->chunkname, "t") != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setupvalue(L, -2, 1); /* _ENV */
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    } else if (lua_istable(L, -1)) {
        push_readonly(L); /* a policy must not patch a module other files share */
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, lua_upvalueindex(1), name);
    return 1;
}

/*
 * A library function that runs in C for a time proportional to its input without
 * allocating (table.insert into a long array shifts it; utf8.len scans): the count hook
 * and the allocator never see that time, so read the clock when it returns.
 * Upvalue 1: the original function.
 */
static int timed_call(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    struct sandbox *sb = sandbox_of(L);
    if (sb->armed && sb->kill == SANDBOX_KILL_NONE && sandbox_mono_ns() >= sb->deadline_ns)
        sandbox_kill(sb, L, SANDBOX_KILL_TIME);
    return lua_gettop(L);
}

/* Replaces each named function of the library at index lib with a timed_call wrapper. */
static void wrap_timed(lua_State *L, int lib, const char *const *names)
{
    for (; *names; names++) {
        lua_getfield(L, lib, *names);
        lua_pushcclosure(L, timed_call, 1);
        lua_setfield(L, lib, *names);
    }
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 1);
    lua_pop(L, 1);
}

/*
 * Builds the sandbox in a fresh state (protected: every step allocates).  Leaves the
 * sandbox globals proxy in the registry under "cachegw.env" and require's loaded table
 * under "cachegw.loaded".
 */
static int sandbox_setup(lua_State *L)
{
    open_lib(L, LUA_GNAME, luaopen_base);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);

    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    static const char *const removed[] = {"dofile", "loadfile", "warn", "require", NULL};
    for (const char *const *r = removed; *r; r++) {
        lua_pushnil(L);
        lua_setfield(L, g, *r);
    }
    lua_getfield(L, g, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    /* find/match/gmatch/gsub with a step budget (lua_pattern.h); the string metatable's
     * __index is this table, so s:find(...) gets them too. */
    lua_pattern_install(L, &sandbox_of(L)->pat);
    lua_pop(L, 1);
    static const char *const table_timed[] = {"insert", "remove", "move", "sort", NULL};
    static const char *const utf8_timed[] = {"len", "offset", "codepoint", NULL};
    lua_getfield(L, g, LUA_TABLIBNAME);
    wrap_timed(L, lua_gettop(L), table_timed);
    lua_getfield(L, g, LUA_UTF8LIBNAME);
    wrap_timed(L, lua_gettop(L), utf8_timed);
    lua_pop(L, 2);
    /* Hide the string metatable: its __index is the real string table. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushliteral(L, SANDBOX_PROTECTED_MARK);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    lua_pushcfunction(L, safe_rawset);
    lua_setfield(L, g, "rawset");
    lua_getfield(L, g, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setfield(L, g, "setmetatable");
    lua_pushcfunction(L, safe_collectgarbage);
    lua_setfield(L, g, "collectgarbage");
    lua_pushcfunction(L, safe_xpcall);
    lua_setfield(L, g, "xpcall");
    lua_pushcfunction(L, safe_print);
    lua_setfield(L, g, "print");

    /* The proxy policies see as their globals: reads go to an overlay of read-only library
     * tables, then to the real globals; every write raises. */
    lua_createtable(L, 0, 8); /* overlay */
    int overlay = lua_gettop(L);
    static const char *const libs[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                       LUA_UTF8LIBNAME, NULL};
    for (const char *const *l = libs; *l; l++) {
        lua_getfield(L, g, *l);
        push_readonly(L);
        lua_setfield(L, overlay, *l);
    }
    lua_helpers_open(L);
    push_readonly(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, overlay, "gw");
    int gw = lua_gettop(L);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, g);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, overlay);

    lua_newtable(L); /* proxy */
    int proxy = lua_gettop(L);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, overlay);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, SANDBOX_PROTECTED_MARK);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, proxy);
    lua_pushvalue(L, proxy);
    lua_setfield(L, overlay, "_G");

    lua_getfield(L, g, "load");
    lua_pushvalue(L, proxy);
    lua_pushcclosure(L, safe_load, 2);
    lua_setfield(L, g, "load");

    lua_newtable(L); /* loaded modules */
    int loaded = lua_gettop(L);
    lua_pushvalue(L, gw);
    lua_setfield(L, loaded, "cachegw_helpers");
    lua_pushvalue(L, loaded);
    lua_pushvalue(L, proxy);
    lua_pushcclosure(L, safe_require, 2);
    lua_setfield(L, g, "require");

    /* The cache module, opened last: its cache.cached wrapper captures the sandbox's
     * require (for gateway.json). */
    lua_cache_open(L);
    push_readonly(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, overlay, "cache");
    lua_setfield(L, loaded, "cache");

    lua_pushvalue(L, proxy);
    lua_setfield(L, LUA_REGISTRYINDEX, "cachegw.env");
    lua_pushvalue(L, loaded);
    lua_setfield(L, LUA_REGISTRYINDEX, "cachegw.loaded");
    return 0;
}

void sandbox_close(struct sandbox *sb)
{
    if (sb->L == NULL) return;
    /* No finalizers can exist (setmetatable refuses __gc), but keep anything that would
     * run during close on a one-instruction leash anyway. */
    sb->kill = SANDBOX_KILL_INSTR;
    sb->armed = false;
    lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, 1);
    lua_close(sb->L);
    sb->L = NULL;
}

int sandbox_open(struct sandbox *sb, const struct lua_source *modules, size_t n_modules,
                 const struct lua_limits *lim, char *err, size_t err_len)
{
    memset(sb, 0, sizeof *sb);
    sb->mem_limit = lim->memory_bytes;
    sb->modules = modules;
    sb->n_modules = n_modules;
    sb->L = lua_newstate(sandbox_alloc, sb);
    if (sb->L == NULL) {
        snprintf(err, err_len, "cannot create a Lua state (memory limit %zu bytes)",
                 sb->mem_limit);
        return -ENOMEM;
    }
    *(struct sandbox **)lua_getextraspace(sb->L) = sb;
    sb->hook_period = lim->instructions < HOOK_PERIOD ? (int)lim->instructions : HOOK_PERIOD;
    sb->pat.check = pattern_check;
    sb->pat.ud = sb;
    struct sandbox_budget unlimited = {INT64_MAX / 2, INT64_MAX / 4, LONG_MAX, LONG_MAX};
    enum sandbox_result r = sandbox_call(sb, sandbox_setup, NULL, unlimited, err, err_len);
    if (r != SANDBOX_OK) {
        sandbox_close(sb);
        return r == SANDBOX_MEMORY ? -ENOMEM : -EINVAL;
    }
    return 0;
}

void sandbox_hook_thread(struct sandbox *sb, lua_State *co)
{
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, sb->hook_period);
}

int64_t sandbox_seconds_field_ms(lua_State *L, int t, const char *name)
{
    int64_t ms = -1;
    if (lua_getfield(L, t, name) == LUA_TNUMBER) {
        lua_Number s = lua_tonumber(L, -1);
        if (s >= 0 && s < 9.2e15) ms = (int64_t)llround(s * 1000.0);
    }
    lua_pop(L, 1);
    return ms;
}

bool sandbox_bool_field(lua_State *L, int t, const char *name)
{
    lua_getfield(L, t, name);
    bool b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

uint64_t sandbox_time_kill_count(void) { return atomic_load(&sandbox_time_kills); }
