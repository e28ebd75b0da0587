/*
 * stats - the gateway's global counters (atomics), read by /health/cache,
 * /metrics and the Lua cache.stats().
 *
 * Thread-safety: every counter is an atomic; increment from any thread.  The
 * invalidation group (below) is per thread.
 */
#ifndef CACHEGW_STATS_H
#define CACHEGW_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct stats {
    atomic_uint_fast64_t requests;       /* every proxied or cached request */
    atomic_uint_fast64_t hits;           /* answered from cache (L1 or L2) */
    atomic_uint_fast64_t hits_l2;        /* of which from Redis */
    atomic_uint_fast64_t hits_reused;    /* of which answered with an answer kept from an
                                            earlier hit (response_writer.c, "hits") */
    atomic_uint_fast64_t misses;         /* cacheable, went upstream */
    atomic_uint_fast64_t bypasses;       /* not cacheable by request or policy */
    atomic_uint_fast64_t stale_served;   /* stale copies served (SWR / SIE) */
    atomic_uint_fast64_t coalesced;      /* requests that waited on another's fetch */
    atomic_uint_fast64_t stores;         /* responses stored */
    atomic_uint_fast64_t not_stored;     /* cacheable requests whose response was not storable */
    atomic_uint_fast64_t too_big;        /* responses over MAX_VALUE_SIZE (passed through) */
    atomic_uint_fast64_t upstream_requests;
    atomic_uint_fast64_t upstream_errors; /* 502/504 produced by the gateway */
    atomic_uint_fast64_t streamed;       /* responses streamed without buffering */
    atomic_uint_fast64_t invalidations;  /* keys or prefixes invalidated */
    atomic_uint_fast64_t rejected;       /* 4xx produced by the gateway (bad/oversized requests) */
    atomic_uint_fast64_t policy_errors;  /* Lua policy errors (request served uncached) */
};

extern struct stats g_stats;

#define STATS_INC(field) atomic_fetch_add_explicit(&g_stats.field, 1, memory_order_relaxed)
#define STATS_GET(field) ((uint64_t)atomic_load_explicit(&g_stats.field, memory_order_relaxed))

/*
 * Invalidations.  One purge may run several: a key or URL purge drops the key and then
 * the prefix of its Vary variants.  Between begin and end the calling thread's
 * invalidations count once (the first one), so cachegw_invalidations_total counts what
 * was asked for, not how it was carried out.  Groups do not nest.
 */
void stats_invalidation_group_begin(void);
void stats_invalidation_group_end(void);
void stats_count_invalidation(void);

/* hits / (hits + misses) * 100, or 0 when there were none. */
double stats_hit_rate_percent(void);

#endif
