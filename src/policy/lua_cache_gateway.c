/* lua_cache_gateway.c - the `cache` module's backend inside the gateway: see
 * lua_cache_backend.h.  Reads answer from the memory tier; a miss that must go to Redis
 * yields (lua_host resumes the call with what the I/O loop read), so no worker waits on the
 * network.  Writes go to both tiers through cache_tiers. */
#include <math.h>

#include "cache_tiers.h"
#include "config.h"
#include "gateway.h"
#include "lua_cache_backend.h"
#include "stats.h"

void lua_cache_be_init(lua_State *L, struct mstate *st)
{
    (void)L;
    (void)st;
}

bool lua_cache_be_bound(const struct mstate *st)
{
    return st->ctx.gw != NULL;
}
size_t lua_cache_be_max_value(const struct mstate *st)
{
    return st->ctx.gw->cfg->max_value_bytes;
}
uint64_t lua_cache_be_gen(const struct mstate *st)
{
    return cache_tiers_generation(st->ctx.gw);
}

struct cache_object *lua_cache_be_lookup(struct mstate *st, const char *k, size_t len, int64_t now,
                                         bool remote)
{
    (void)remote; /* the gateway reads Redis by yielding, never here */
    return cache_tiers_get(st->ctx.gw, k, len, now);
}

void lua_cache_be_store(struct mstate *st, struct cache_object *obj)
{
    cache_tiers_store(st->ctx.gw, obj); /* Redis: fire and forget, on the I/O loop */
}

void lua_cache_be_delete(struct mstate *st, const char *k, size_t len)
{
    (void)len;
    cache_tiers_invalidate_key(st->ctx.gw, k);
}

void lua_cache_be_invalidate_prefix(struct mstate *st, const char *p, size_t len)
{
    (void)len;
    cache_tiers_invalidate_prefix(st->ctx.gw, p);
}

void lua_cache_be_push_stats(lua_State *L, struct mstate *st)
{
    struct gateway *gw = st->ctx.gw;
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)STATS_GET(hits));
    lua_setfield(L, -2, "hits");
    lua_pushinteger(L, (lua_Integer)STATS_GET(misses));
    lua_setfield(L, -2, "misses");
    lua_pushnumber(L, round(stats_hit_rate_percent() * 100.0) / 100.0);
    lua_setfield(L, -2, "hit_rate_percent");
    lua_pushboolean(L, gw != NULL && cache_tiers_l2_available(gw));
    lua_setfield(L, -2, "redis_available");
    lua_pushinteger(L, (lua_Integer)(gw ? cache_tiers_memory_entries(gw) : 0));
    lua_setfield(L, -2, "memory_cache_size");
}

/* A memory miss may wait for Redis only in a coroutine the host resumes for this purpose. */
bool lua_cache_be_can_yield(lua_State *L, const struct mstate *st)
{
    return st->ctx.allow_yield && st->ctx.yields_left > 0 && lua_isyieldable(L) &&
           (st->ctx.remote_always || cache_tiers_l2_available(st->ctx.gw));
}
