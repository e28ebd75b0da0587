/*
 * cache_tiers - the two cache tiers seen as one: the memory tier (store_l1)
 * and, when REDIS_URL is set, the Redis tier (store_redis), plus the
 * invalidation fan-out to other instances.
 *
 * Invalidation functions may be called from any thread: the memory tier is
 * changed at once (so the caller's next read already misses), and the Redis
 * work and the broadcast to other instances are posted to the I/O loop.
 *
 * Thread-safety: as stated per function.
 */
#ifndef CACHEGW_CACHE_TIERS_H
#define CACHEGW_CACHE_TIERS_H

#include <stddef.h>

#include "gateway.h"

/* Drops one key everywhere.  Any thread. */
void cache_tiers_invalidate_key(struct gateway *gw, const char *key);
/* Drops every key that starts with prefix everywhere.  Any thread. */
void cache_tiers_invalidate_prefix(struct gateway *gw, const char *prefix);

#endif
