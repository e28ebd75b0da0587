/* lua_cache_gateway.c - the `cache` module's backend inside the gateway: see
 * lua_cache_backend.h.  Reads answer from the memory tier; a miss that must go to Redis
 * yields (lua_host resumes the call with what the I/O loop read), so no worker waits on the
 * network.  Writes go to both tiers through cache_tiers. */
#include <math.h>

#include "cache_tiers.h"
#include "config.h"
#include "gateway.h"
#include "inval_index.h"
#include "lua_cache_backend.h"
#include "stats.h"
#include "store_l1.h"

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
    return inval_index_current(st->ctx.gw->inval);
}

struct cache_object *lua_cache_be_lookup(struct mstate *st, const char *k, size_t len, int64_t now,
                                         bool remote)
{
    (void)remote; /* the gateway reads Redis by yielding, never here */
    struct gateway *gw = st->ctx.gw;
    if (gw->l1 == NULL) return NULL;
    struct cache_object *obj = store_l1_get(gw->l1, k, len, now);
    if (obj && (!cache_object_is_fresh(obj, now) || !inval_index_valid(gw->inval, obj))) {
        store_l1_delete(gw->l1, k, len);
        cache_object_unref(obj);
        obj = NULL;
    }
    return obj;
}

void lua_cache_be_store(struct mstate *st, struct cache_object *obj)
{
    struct gateway *gw = st->ctx.gw;
    if (gw->l1) store_l1_put(gw->l1, obj, lua_cache_now_ms());
    cache_tiers_l2_put(gw, obj); /* fire and forget, on the I/O loop */
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
    struct store_l1_stats l1 = {0};
    if (gw != NULL && gw->l1 != NULL) store_l1_get_stats(gw->l1, &l1);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)STATS_GET(hits));
    lua_setfield(L, -2, "hits");
    lua_pushinteger(L, (lua_Integer)STATS_GET(misses));
    lua_setfield(L, -2, "misses");
    lua_pushnumber(L, round(stats_hit_rate_percent() * 100.0) / 100.0);
    lua_setfield(L, -2, "hit_rate_percent");
    lua_pushboolean(L, gw != NULL && cache_tiers_l2_available(gw));
    lua_setfield(L, -2, "redis_available");
    lua_pushinteger(L, (lua_Integer)l1.entries);
    lua_setfield(L, -2, "memory_cache_size");
}

/* A memory miss may wait for Redis only in a coroutine the host resumes for this purpose. */
bool lua_cache_be_can_yield(lua_State *L, const struct mstate *st)
{
    return st->ctx.allow_yield && st->ctx.yields_left > 0 && lua_isyieldable(L) &&
           (st->ctx.remote_always || cache_tiers_l2_available(st->ctx.gw));
}

struct cache_object *lua_cache_accept(struct gateway *gw, struct cache_object *obj)
{
    if (obj == NULL) return NULL;
    if (!inval_index_valid(gw->inval, obj)) {
        cache_tiers_l2_delete(gw, obj->key);
        cache_object_unref(obj);
        return NULL;
    }
    int64_t now = lua_cache_now_ms();
    if (!cache_object_is_fresh(obj, now)) {
        cache_object_unref(obj);
        return NULL;
    }
    if (gw->l1) store_l1_put(gw->l1, obj, now);
    return obj;
}
