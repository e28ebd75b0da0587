/*
 * cache_tiers - the two cache tiers seen as one: the memory tier (store_l1)
 * and, when REDIS_URL is set, the Redis tier (store_redis).  Invalidation
 * across tiers and instances goes through here to inval_sync.h.
 *
 * Everything here may be called from any thread.  The memory tier is changed
 * at once (so the caller's next read already sees it); Redis work is posted to
 * the I/O loop, because store_redis is confined to it.  A Redis that is down
 * or slow never fails a caller: reads report an error and callers go on to the
 * upstream (docs/design.md, invariant 2).
 *
 * The admin API's looks and counted purges (at the end) are thin entry
 * points over store_l1 and store_redis: a purge-all is the one operation that
 * does not go through inval_sync's records (it deletes, then tells the other
 * instances with a plain 'p' message), so a response whose upstream fetch was
 * in flight when it ran may still be stored afterwards.
 *
 * Ownership: l2_get hands done() one reference (or NULL); l2_put takes its
 * own reference.
 */
#ifndef CACHEGW_CACHE_TIERS_H
#define CACHEGW_CACHE_TIERS_H

#include <stdbool.h>
#include <stddef.h>

#include "cache_object.h"
#include "cache_rules.h"
#include "gateway.h"
#include "headers.h"

/* ---- the one way to read a stored object: the lookup verdict ----
 *
 * "May this stored object be served to this request?" is decided here and
 * nowhere else (docs/design.md, invariant 9), the same way for both tiers and
 * every caller (the request steps, the fetch-and-fill path, the Lua cache
 * module's reads):
 *   - an entry an invalidation record covers is dropped as it is met;
 *   - a Vary marker is followed to this request's variant key (lk->key is
 *     replaced), and a variant stored before the marker is void;
 *   - freshness and the request's Cache-Control (max-age, min-fresh,
 *     max-stale, no-cache) give the verdict; stale-while-revalidate and
 *     max-stale say whether a stale entry may still be served.
 * stale-if-error is decided later, when the upstream has failed
 * (cache_rules_stale_if_error on the REVALIDATE verdict's object).
 *
 * A lookup without request directives (cc == NULL: the Lua cache module's
 * values) is FRESH or MISS. */
enum cache_verdict {
    CACHE_MISS,       /* nothing usable is stored */
    CACHE_FRESH,      /* serve obj */
    CACHE_STALE_OK,   /* stale, but the request accepts it (max-stale): serve obj */
    CACHE_STALE_SWR,  /* stale within stale-while-revalidate: serve obj, refresh it */
    CACHE_REVALIDATE, /* go upstream; obj is the base for validators and stale-if-error */
};

enum cache_tier { CACHE_TIER_NONE, CACHE_TIER_MEMORY, CACHE_TIER_REDIS };

struct cache_lookup {
    /* In: the forwarded request's fields (Vary) and directives (NULL: a plain read). */
    const struct header_list *req_headers;
    const struct request_cc *cc;
    /* In/out: the key (malloc'd, owned by the lookup); after a Vary marker it is
     * the request's variant key. */
    char *key;
    /* Out. */
    enum cache_verdict verdict;
    struct cache_object *obj; /* one reference for every verdict but MISS */
    enum cache_tier tier;     /* where obj came from */
    /* Private. */
    int64_t marker_stored_at; /* variants stored before the marker are void */
    struct gateway *gw;
    void (*done)(void *arg);
    void *arg;
    bool followed_in_redis;
};

/* The memory tier, on the caller's thread: sets verdict, obj and tier.
 * With a Redis tier, first waits (at most 5 ms, or REDIS_TIMEOUT_MS if less)
 * for invalidations other instances published that this one has received
 * but not applied yet (read-your-writes, store_redis_settle_invalidations).
 * Returns 0, or -ENOMEM (verdict MISS). */
int cache_tiers_lookup(struct gateway *gw, struct cache_lookup *lk);

/* Continues a MISS or REVALIDATE verdict in Redis.  Returns 0 and calls
 * done(arg) once on the I/O loop with lk updated (a FRESH or STALE_OK entry
 * from Redis replaces obj and is kept in memory; a stale one is the
 * REVALIDATE base only when memory had none; a stale-while-revalidate entry
 * read from Redis is REVALIDATE: the caller leads the key's flight and fetches
 * it now); or fails at once (-ENOTCONN: no usable Redis tier) leaving lk as it
 * was.  The caller must not touch lk until done runs. */
int cache_tiers_lookup_redis(struct gateway *gw, struct cache_lookup *lk,
                             void (*done)(void *arg), void *arg);

/* Releases obj and key. */
void cache_tiers_lookup_release(struct cache_lookup *lk);

/* A plain read of the memory tier (a Lua cache module value): the object
 * (one reference) when it is fresh and no invalidation covers it, else NULL. */
struct cache_object *cache_tiers_get(struct gateway *gw, const char *key, size_t len,
                                     int64_t now_ms);

/* ---- the one way to write ---- */

/* Stores obj in the memory tier at once and in Redis in the background.
 * Returns 0 when the memory tier took it. */
int cache_tiers_store(struct gateway *gw, struct cache_object *obj);

/* The invalidation sequence now: a fill whose fetch began at this generation
 * is void if an invalidation came in meanwhile (cache_meta.gen). */
uint64_t cache_tiers_generation(const struct gateway *gw);

/* True when base's Vary marker in the memory tier lists exactly vary and no
 * invalidation covers it (the fill then keeps it rather than writing a new
 * one, which would void every variant stored under it). */
bool cache_tiers_marker_current(struct gateway *gw, const char *base, size_t base_len,
                                const char *vary, int64_t now_ms);

/* Memory-tier counters, for the Lua cache module's stats and health output. */
size_t cache_tiers_memory_entries(struct gateway *gw);

/* Wires the Redis tier's cross-instance invalidations into the memory tier.
 * Call once at start-up, after gw->l2 is set and before the loop starts. */
int cache_tiers_start(struct gateway *gw);

/* Loop stopped: frees what is still pending. */
void cache_tiers_stop(struct gateway *gw);

/* True when the Redis tier is configured and currently usable. */
bool cache_tiers_l2_available(const struct gateway *gw);

/* Loop thread: obj is one reference or NULL (miss); err < 0 when Redis failed. */
typedef void (*cache_tiers_get_fn)(void *arg, struct cache_object *obj, int err);

/* Writes obj to Redis only, in the background (fire and forget); callers
 * store through cache_tiers_store. */
void cache_tiers_l2_put(struct gateway *gw, struct cache_object *obj);

/* Loop thread: latency_ms < 0 when the PING failed. */
typedef void (*cache_tiers_ping_fn)(void *arg, double latency_ms);
/* A live PING round trip.  Returns 0 and calls done once on the loop thread,
 * or fails at once. */
int cache_tiers_ping(struct gateway *gw, cache_tiers_ping_fn done, void *arg);

/* Drops one key everywhere (memory, Redis, other instances' memory). */
void cache_tiers_invalidate_key(struct gateway *gw, const char *key);
/* Prefixes and tags are invalidated by record, not by scan (inval_index.h):
 * O(1) whatever the number of keys; space is reclaimed in the background. */
/* Drops every key that starts with prefix everywhere. */
void cache_tiers_invalidate_prefix(struct gateway *gw, const char *prefix);
/* Drops every entry stored with this tag (surrogate key) everywhere. */
void cache_tiers_invalidate_tag(struct gateway *gw, const char *tag);
/* Issue 10, read-your-writes: fn(arg) on the I/O loop once the invalidations
 * issued before this call are recorded and published in Redis (or Redis did
 * not take them), at the latest after REDIS_TIMEOUT_MS; see inval_sync_after.
 * A write's answer waits for it.  Any thread.  Returns 0 or -ENOMEM. */
int cache_tiers_after_invalidations(struct gateway *gw, void (*fn)(void *arg), void *arg);
/* Any thread: memory-tier reads that waited for invalidations already received (waits),
 * and of those the ones that ran to their bound (timeouts); 0 without a Redis tier. */
void cache_tiers_read_your_writes_stats(struct gateway *gw, uint64_t *waits, uint64_t *timeouts);
/* Deletes one key from Redis only (an invalidated entry met on a read). */
void cache_tiers_l2_delete(struct gateway *gw, const char *key);

/* ---- the admin API (admin_server.h): looks without side effects, counted
 * purges.  Callbacks run once on the loop thread; a function that fails at
 * once (-ENOTCONN: no usable Redis tier, -ENOMEM) never calls it. ---- */

/* Reads key from Redis without counting, bumping or deleting anything
 * (store_redis_peek; err -EBADMSG: a value that does not decode). */
int cache_tiers_l2_peek(struct gateway *gw, const char *key, cache_tiers_get_fn done, void *arg);

/* removed: how many keys Redis removed; err < 0 when it failed. */
typedef void (*cache_tiers_count_fn)(void *arg, long long removed, int err);
/* keys: cache keys, borrowed for the call; next: "0" when the walk is over. */
typedef void (*cache_tiers_scan_fn)(void *arg, const char *next, const char *const *keys,
                                    const size_t *lens, size_t n, int err);

/* One page of the Redis tier's cache keys starting with prefix (SCAN MATCH
 * COUNT, store_redis_scan).  -EINVAL: a cursor Redis did not hand out. */
int cache_tiers_l2_scan(struct gateway *gw, const char *cursor, const char *prefix,
                        unsigned count, cache_tiers_scan_fn done, void *arg);

/* Deletes key to count it: from the memory tier at once (*memory: 0 or 1)
 * and, with a usable Redis tier, from Redis (DEL's count goes to done).
 * Other instances are not told: the caller follows with
 * cache_tiers_invalidate_key on its own thread (the one stats.h groups a
 * purge's invalidations on).  Returns 0 (done will run) or -ENOTCONN when
 * there is no usable Redis tier, -ENOMEM. */
int cache_tiers_purge_key(struct gateway *gw, const char *key, size_t *memory,
                          cache_tiers_count_fn done, void *arg);

/* cache_tiers_invalidate_prefix, and the memory tier's matching entries
 * dropped at once by a walk: returns how many (Redis is by record). */
size_t cache_tiers_purge_prefix(struct gateway *gw, const char *prefix);

/* cache_tiers_invalidate_tag, and the memory tier's entries carrying tag
 * dropped at once by a walk: returns how many (Redis is by record). */
size_t cache_tiers_purge_tag(struct gateway *gw, const char *tag);

/* Every cache entry: the memory tier at once (*memory: how many), then in
 * Redis every <prefix>c: key (SCAN + UNLINK, never FLUSHDB; the invalidation
 * bookkeeping stays), then this instance's memory tier again (what a read
 * brought back from Redis meanwhile) and the other instances are told to drop
 * theirs: an INVAL_KEY_PREFIX message with the empty prefix, which every
 * instance applies as store_l1_delete_prefix(""), i.e. everything.  Returns 0
 * (done gets the Redis count) or -ENOTCONN / -ENOMEM as above (memory only). */
int cache_tiers_purge_all(struct gateway *gw, size_t *memory, cache_tiers_count_fn done,
                          void *arg);

#endif
