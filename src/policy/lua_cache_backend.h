/*
 * lua_cache_backend - what the `cache` module's Lua functions (lua_cache.c) need from the
 * tiers behind them.  Two implementations, linked into different builds:
 *
 *   lua_cache_gateway.c  inside the gateway: the gateway's memory tier, Redis through the
 *                        I/O loop (reads that must go to Redis yield), invalidation through
 *                        cache_tiers;
 *   lua_cache_module.c   the loadable module `cache` for busted: its own memory tier and
 *                        invalidation index, and an optional synchronous hiredis connection
 *                        (REDIS_URL, plain redis:// only).
 *
 * Internal to the cache module.  Thread-safety: one lua_State, one thread.
 */
#ifndef CACHEGW_LUA_CACHE_BACKEND_H
#define CACHEGW_LUA_CACHE_BACKEND_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "cache_object.h"
#include "lua_cache.h"

struct lua_cache_be; /* the backend's own state (the module build); NULL in the gateway */

/* The module's per-state context: the userdata every Lua function has as its upvalue. */
struct mstate {
    struct lua_cache_ctx ctx; /* first: lua_cache_ctx_of returns its address */
    /* An object whose body is being copied into Lua: released on the next call (or at close)
     * if the copy raised, so a memory error never leaks it. */
    struct cache_object *held;
    struct lua_cache_be *be;
};

static inline int64_t lua_cache_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sets up st (the userdata at the top of L's stack) for this build; raises on failure. */
void lua_cache_be_init(lua_State *L, struct mstate *st);
/* True when the module may read and write (the gateway: once bound to it). */
bool lua_cache_be_bound(const struct mstate *st);
size_t lua_cache_be_max_value(const struct mstate *st);
/* The invalidation sequence new entries are stamped with. */
uint64_t lua_cache_be_gen(const struct mstate *st);
/* A usable (fresh, not invalidated) entry from the memory tier, or with remote, from a
 * synchronous Redis read where the build has one.  One reference, or NULL. */
struct cache_object *lua_cache_be_lookup(struct mstate *st, const char *k, size_t len, int64_t now,
                                         bool remote);
void lua_cache_be_store(struct mstate *st, struct cache_object *obj);
void lua_cache_be_delete(struct mstate *st, const char *k, size_t len);
void lua_cache_be_invalidate_prefix(struct mstate *st, const char *p, size_t len);
/* Pushes the stats() table. */
void lua_cache_be_push_stats(lua_State *L, struct mstate *st);
/* True when a memory miss may suspend the call to read Redis (the gateway's coroutines). */
bool lua_cache_be_can_yield(lua_State *L, const struct mstate *st);

#endif
