/*
 * sandbox - the restricted Lua environment policies run in, and its limits.
 *
 * One struct sandbox wraps one lua_State built by sandbox_open: only the base, string,
 * table, math and utf8 libraries; no dofile/loadfile/warn; load() takes text chunks only
 * and defaults to the sandbox's environment; string.dump is gone; collectgarbage only
 * answers "count"; xpcall runs its handler after unwinding; setmetatable refuses __gc;
 * print goes to the log; require loads only the gateway.* modules it was given, plus
 * "cachegw_helpers" (lua_helpers.h) and "cache" (lua_cache.h).  Globals and library tables
 * are read-only proxies (the "cachegw.env" registry entry is the proxy policies see).
 * The limits (lua_host.h explains them for users): a custom allocator caps the state at
 * mem_limit bytes; sandbox_call runs one protected call under an instruction and
 * wall-clock budget enforced by a count hook every hook_period instructions, which, once
 * the call is over budget, fires on every instruction so a pcall in the policy cannot
 * swallow the kill; the pattern functions (lua_pattern.h), large allocations and the
 * O(n) table/utf8 functions charge the same budget or read the clock.
 *
 * This is the mechanism only: what runs in a sandbox (a policy generation's validation
 * load, policy_set.h; a worker's state, lua_host.c) is up to the caller.
 *
 * Ownership: the caller owns the struct (embedded by value: the allocator and the hook
 * find it through the state's extra space, so it must not move while open); the modules
 * passed to sandbox_open are borrowed and must outlive the state.
 * Thread-safety: a sandbox is confined to one thread; the time-kill counter is atomic.
 */
#ifndef CACHEGW_SANDBOX_H
#define CACHEGW_SANDBOX_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lua_host.h" /* struct lua_limits */
#include "lua_pattern.h"

/* The __metatable value marking tables policies must not modify (see gateway/policy.lua). */
#define SANDBOX_PROTECTED_MARK "cachegw.protected"

/* One Lua source of a policy generation. */
struct lua_source {
    char *name;      /* module name "gateway.router", or the policy file's display path */
    char *chunkname; /* "@" + display path */
    char *text;
    size_t len;
};

enum sandbox_kill { SANDBOX_KILL_NONE = 0, SANDBOX_KILL_INSTR, SANDBOX_KILL_TIME };

struct sandbox {
    lua_State *L;
    size_t mem_used, mem_limit;
    enum sandbox_kill kill; /* why the current call was stopped, NONE while it runs */
    bool armed;             /* a budgeted call is running */
    int hook_period;        /* instructions between two runs of the count hook */
    long budget;            /* the current call's instruction budget (for messages) */
    int64_t instr_left;     /* of the current call (or request, across yields) */
    long time_ms;           /* the current call's wall-clock budget (for messages) */
    int64_t deadline_ns;    /* CLOCK_MONOTONIC */
    lua_State *running;     /* the coroutine running policy code, or NULL (then L) */
    struct lua_pattern_budget pat; /* string.find & co charge their work here */
    const struct lua_source *modules; /* what require may load (borrowed) */
    size_t n_modules;
};

enum sandbox_result { SANDBOX_OK = 0, SANDBOX_ERROR, SANDBOX_BUDGET, SANDBOX_MEMORY };

/* What a call may spend: instructions and wall-clock time (with the figures its error
 * messages quote, which for a resumed decision are the whole request's). */
struct sandbox_budget {
    int64_t instructions, time_ns;
    long budget, time_ms;
};

static inline struct sandbox_budget sandbox_budget_of(long instructions, long time_ms)
{
    return (struct sandbox_budget){instructions, (int64_t)time_ms * 1000000, instructions,
                                   time_ms};
}

/* Builds the sandbox in a fresh state capped at lim->memory_bytes.  Returns 0, -ENOMEM or
 * -EINVAL with err filled. */
int sandbox_open(struct sandbox *sb, const struct lua_source *modules, size_t n_modules,
                 const struct lua_limits *lim, char *err, size_t err_len);
/* Closes the state (no policy code can run during the close); idempotent. */
void sandbox_close(struct sandbox *sb);

/*
 * Calls fn(ud) protected, under budget b.  On failure copies the message (without the
 * traceback, which goes to the debug log) into err; memory errors get a fixed message.
 */
enum sandbox_result sandbox_call(struct sandbox *sb, lua_CFunction fn, void *ud,
                                 struct sandbox_budget b, char *err, size_t err_len);

/* Puts a coroutine that runs policy code under the current call's budget hook (the hook
 * is per thread in Lua). */
void sandbox_hook_thread(struct sandbox *sb, lua_State *co);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t sandbox_mono_ns(void);

/* Field readers for policy tables: t[name] as seconds in ms (-1 when absent, negative or
 * not a number), and t[name]'s truth value. */
int64_t sandbox_seconds_field_ms(lua_State *L, int t, const char *name);
bool sandbox_bool_field(lua_State *L, int t, const char *name);

/* Calls stopped by the wall-clock limit, process-wide. */
uint64_t sandbox_time_kill_count(void);

#endif
