/*
 * lua_cache - the `cache` module policies see: a small key/value cache over the gateway's own
 * two tiers (memory, then Redis).
 *
 *   cache.get(key)                 -> string or nil
 *   cache.set(key, value, ttl)     -> true          (value a string, ttl seconds >= 0)
 *   cache.delete(key)              -> true
 *   cache.mget({k1, k2, ...})      -> {k = value}   (missing keys absent)
 *   cache.mset({k = v, ...}, ttl)  -> true
 *   cache.invalidate_prefix(p)     -> true
 *   cache.stats()                  -> {hits, misses, hit_rate_percent, redis_available,
 *                                      memory_cache_size} (the /health/cache counters)
 *   cache.cached(prefix, ttl, fn)  -> a memoizing wrapper of fn
 *
 * Values are stored as cache_objects (status 200, body = the value, ttl from the call, the
 * current invalidation generation in meta.gen) under LUA_CACHE_NS .. key, so they never
 * collide with HTTP response entries, and reads honour prefix invalidations.  Misuse raises
 * (luaL_argerror: wrong types, a ttl that is not a non-negative number, a key empty or over
 * LUA_CACHE_MAX_KEY bytes); expected runtime failures return nil, "message" (a value over
 * MAX_VALUE_SIZE, no cache bound).
 *
 * Reads never block a worker on the network (docs/design.md, invariant 1).  get/mget answer from
 * the memory tier at once.  On a miss, when the Redis tier is up and the calling Lua code
 * runs in a yieldable coroutine that the host allowed to yield (lua_cache_ctx.allow_yield),
 * the function yields LUA_CACHE_YIELD_MARK followed by the namespaced keys to read.  The
 * host (lua_host) hands them to its caller, which reads them from Redis on the I/O loop and
 * resumes the coroutine with one value per key (a string, or nil for a miss); the
 * continuation returns them to the policy.  Where a yield is impossible (not yieldable, no
 * yields left for this call, inside on_response) a miss is simply nil.
 *
 * In the gateway the context is bound to the gateway with lua_cache_ctx_bind.  Built with
 * CACHEGW_LUA_CACHE_MODULE (the loadable module `cache` for busted), the module keeps its own
 * memory tier and, when REDIS_URL is a plain redis:// URL, talks to Redis with hiredis's
 * synchronous client (acceptable outside the gateway: busted is not a worker).
 *
 * Ownership: the context lives in a userdata of the Lua state (freed with the state); the
 * gateway it is bound to is borrowed.  Values returned to Lua are copies.
 * Thread-safety: a context is confined to its state's thread; the tiers are internally locked.
 */
#ifndef CACHEGW_LUA_CACHE_H
#define CACHEGW_LUA_CACHE_H

#include <lua.h>
#include <stdbool.h>

#include "cache_key.h"

#define LUA_CACHE_NS CACHE_KEY_KV_NS /* cache_key.h owns the format */
#define LUA_CACHE_MAX_KEY 512
#define LUA_CACHE_MAX_MGET 1024 /* keys per mget / mset */

struct gateway;
struct cache_object;

/* Per-state context, shared by the module's functions. */
struct lua_cache_ctx {
    struct gateway *gw; /* NULL: unbound (validation sandboxes, other threads) */
    bool allow_yield;   /* the host lets the current call yield on a memory miss */
    int yields_left;    /* yields the current call may still make */
    bool remote_always; /* tests: yield on misses as if Redis were up */
};

/* The first value a cache read yields; the namespaced keys follow it. */
extern const char LUA_CACHE_YIELD_MARK[];

/* Pushes the cache table.  Raises on memory errors (call it protected). */
int lua_cache_open(lua_State *L);
/* The context of a state where lua_cache_open ran, or NULL. */
struct lua_cache_ctx *lua_cache_ctx_of(lua_State *L);

/* The loadable-module entry point (`require "cache"`). */
int luaopen_cache(lua_State *L);

#endif
