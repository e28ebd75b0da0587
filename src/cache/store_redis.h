/*
 * store_redis - the shared cache tier (L2): cache_objects stored in Redis under
 * a namespace prefix, plus cross-instance invalidation over pub/sub.
 *
 * Key layout (<prefix> is REDIS_PREFIX, "cachegw:" by default):
 *
 *   <prefix>c:<cache key>   a cache entry (this module; every key, purge and
 *                           prefix delete is mapped under "c:", so none can
 *                           name anything else)
 *   <prefix>{inv}:...       invalidation bookkeeping (cache_tiers.c): never
 *                           reachable from a cache key or a purge prefix, whose
 *                           names always start with "c:"; the {inv} hash tag
 *                           keeps it in one Redis Cluster slot
 *   <prefix>invalidate      the pub/sub channel (not a key)
 *
 * Entries written by the earlier layout (<prefix><cache key>) are never read:
 * they are misses, and expire on their own.
 *
 * Values are cache_object_encode()d and stored with SET <prefix>c:key value PX
 * <ms until cache_object_expires_at_ms>, so Redis drops them when they are no
 * longer useful.  A value that fails to decode (or names another key) is never
 * served: it counts as a miss and a decode failure and is deleted.  A plain
 * DEL, so a valid value written by another instance in the instant between our
 * GET and DEL may be lost too: one extra miss, never a wrong answer.
 *
 * Invalidations are published on the channel prefix+"invalidate" as
 * "<16 hex digits: instance id>:<kind><key bytes>" and received on a dedicated
 * subscriber connection; messages carrying this instance's id are ignored, so
 * only OTHER instances act on them.  When the subscription is re-established
 * after a gap (a failed attempt or a dropped session), messages may have been
 * missed: the callback gets kind '*' (no key), meaning "drop your memory tier".
 * The first confirmation of the subscription (without a gap) gives kind '+'
 * (no key): every message reaches this instance from then on, so records read
 * after it miss nothing (inval_sync.c syncs them then).
 *
 * All operations fail at once (< 0, no callback) when Redis is unavailable, so
 * callers fall back to the memory tier without waiting.
 *
 * Ownership: the store borrows the pool (which must outlive it); store_redis_get
 * hands its callback one reference to the object (or NULL); put borrows obj for
 * the call only.  Life cycle: create -> use on the loop -> redis_pool_stop (fails
 * pending operations, whose callbacks still run) -> store_redis_destroy (loop
 * thread, or after the loop stopped) -> redis_pool_destroy.
 * Thread-safety: confined to the loop thread, except store_redis_get_stats
 * (atomic counters) and store_redis_settle_invalidations (any thread).
 */
#ifndef CACHEGW_STORE_REDIS_H
#define CACHEGW_STORE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "cache_object.h"
#include "io_loop.h"
#include "redis_pool.h"

struct store_redis;

struct store_redis_stats {
    uint64_t hits; /* GETs answered with a valid object */
    uint64_t misses; /* GETs answered nil (or with an unusable value) */
    uint64_t errors; /* operations that failed (timeout, lost connection, error reply) */
    uint64_t decode_failures; /* values that did not decode: deleted, counted as misses too */
    uint64_t stores; /* SETs acknowledged */
    uint64_t too_big; /* puts refused for exceeding max_value_bytes */
    uint64_t invalidations_sent;
    uint64_t invalidations_received; /* from other instances ('*' not counted) */
};

/* prefix is copied ("" allowed).  max_value_bytes bounds an encoded value
 * (0: no bound).  Returns 0 or -ENOMEM. */
int store_redis_create(struct redis_pool *pool, struct io_loop *loop, const char *prefix,
                       size_t max_value_bytes, struct store_redis **out);
void store_redis_destroy(struct store_redis *s);

/* err: 0 (obj is the hit, or NULL for a miss), -ETIMEDOUT, -ENOTCONN (the
 * connection was lost) or -EIO (Redis answered an error). */
typedef void (*store_redis_get_fn)(void *arg, struct cache_object *obj, int err);

/* GET <prefix>c:key.  Returns 0 and later calls fn once on the loop thread, or
 * fails at once without calling fn: -ENOTCONN (Redis unavailable), -ENOBUFS,
 * -ENOMEM. */
int store_redis_get(struct store_redis *s, const char *key, size_t key_len, store_redis_get_fn fn,
                    void *arg);

/* SET <prefix>c:obj->key with a PX of the object's remaining useful life.
 * Fire and forget (the outcome is counted).  Returns 0, -E2BIG (encoded value
 * over max_value_bytes), -ESTALE (already expired), -ECANCELED (a key
 * invalidation seen here since obj was stored: the SET would put the old
 * value back after its DEL; see store_redis_on_raced_fill), -ENOTCONN,
 * -ENOBUFS, -ENOMEM. */
int store_redis_put(struct store_redis *s, struct cache_object *obj);

/* DEL <prefix>c:key.  Fire and forget.  Returns 0 or as above. */
int store_redis_delete(struct store_redis *s, const char *key, size_t key_len);

/* err: 0 (done), -ETIMEDOUT, -ENOTCONN (the connection was lost) or -EIO
 * (Redis refused: an error reply such as NOPERM). */
typedef void (*store_redis_done_fn)(void *arg, int err);
/* DEL <prefix>c:key, then fn once on the loop thread.  Returns 0, or fails at
 * once without calling fn, as above. */
int store_redis_delete_then(struct store_redis *s, const char *key, size_t key_len,
                            store_redis_done_fn fn, void *arg);

/* Deletes every key starting with <prefix>c:key_prefix: SCAN MATCH (glob
 * characters escaped) and UNLINK, batch after batch, in the background.
 * Returns 0 or as above. */
int store_redis_delete_prefix(struct store_redis *s, const char *key_prefix, size_t len);

/* ---- the admin API's reads and purges (admin_server.h) ---- */

/* GET <prefix>c:key for a look at the entry: unlike store_redis_get it counts
 * nothing and deletes nothing (an undecodable value is reported as -EBADMSG
 * and left alone).  fn gets one reference or NULL, err as store_redis_get_fn
 * plus -EBADMSG.  Returns 0 or fails at once as store_redis_get. */
int store_redis_peek(struct store_redis *s, const char *key, size_t key_len,
                     store_redis_get_fn fn, void *arg);

/* DEL <prefix>c:key, then fn once on the loop thread with how many keys Redis
 * removed (0 or 1) and err as store_redis_done_fn.  Returns 0 or fails at once
 * as store_redis_delete. */
typedef void (*store_redis_count_fn)(void *arg, long long removed, int err);
int store_redis_delete_count(struct store_redis *s, const char *key, size_t key_len,
                             store_redis_count_fn fn, void *arg);

/* One page of SCAN <cursor> MATCH <prefix>c:<key_prefix>* COUNT <count>.
 * keys[i] (lens[i]) are cache keys without <prefix>c:, borrowed for the call;
 * next is the cursor to pass for the next page, "0" when the scan is over.
 * err as store_redis_done_fn. */
typedef void (*store_redis_scan_fn)(void *arg, const char *next, const char *const *keys,
                                    const size_t *lens, size_t n, int err);
/* cursor: "0" to start, else what the previous page returned (digits only,
 * -EINVAL otherwise).  Returns 0 and calls fn once, or fails at once. */
int store_redis_scan(struct store_redis *s, const char *cursor, const char *key_prefix,
                     size_t len, unsigned count, store_redis_scan_fn fn, void *arg);

/* Deletes every cache entry (<prefix>c:*: SCAN MATCH COUNT 1000 and UNLINK,
 * batch after batch; never FLUSHDB, and the {inv} bookkeeping stays), then
 * calls fn once on the loop thread with the number of keys UNLINK removed and
 * err (0, or the first failure: the walk stops there).  Returns 0 or fails at
 * once as store_redis_delete. */
int store_redis_purge_all(struct store_redis *s, store_redis_count_fn fn, void *arg);

/* kind: 'k' (exact key), 'p' (key prefix; the empty prefix, sent by purge-all, is every
 * key), 'P' / 'T' (sequenced prefix / tag
 * invalidation, key = "<seq>:<prefix or tag>", published by cache_tiers),
 * '*' (key NULL, len 0: messages may have been missed; drop the whole memory
 * tier), or '+' (key NULL, len 0: subscribed for the first time). */
typedef void (*store_redis_invalidation_fn)(void *arg, char kind, const char *key, size_t key_len);

/* Publishes an invalidation ('k' or 'p') for other instances.  Fire and
 * forget.  Returns 0, -EINVAL, or as above. */
int store_redis_publish_invalidation(struct store_redis *s, char kind, const char *key, size_t len);
/* The same, then fn once on the loop thread with err as store_redis_done_fn
 * (0: Redis took the PUBLISH, so the subscribers have it).  Returns 0, or
 * fails at once without calling fn. */
int store_redis_publish_invalidation_then(struct store_redis *s, char kind, const char *key,
                                          size_t len, store_redis_done_fn fn, void *arg);
/* Subscribes (once; later calls replace fn/arg) and delivers other instances'
 * invalidations to fn on the loop thread.  Loop thread, or before the pool is
 * started.  Returns 0 or -ENOMEM / -ENOTCONN (pool stopped). */
int store_redis_on_invalidation(struct store_redis *s, store_redis_invalidation_fn fn, void *arg);

/* A fill's SET that may have reached Redis after an invalidation of its key
 * (another instance's 'k' message, or our own store_redis_delete_then, met a
 * SET of that key still in flight or sent less than a second ago): fn gets
 * the key once that SET is answered, on the loop thread, so that the owner
 * invalidates it again (docs/design.md, "Read-your-writes").  Loop thread, or
 * before the pool is started. */
typedef void (*store_redis_raced_fn)(void *arg, const char *key, size_t key_len);
void store_redis_on_raced_fill(struct store_redis *s, store_redis_raced_fn fn, void *arg);

/* Read-your-writes across instances (issue 10; docs/design.md,
 * "Read-your-writes"): when invalidations from other instances may have
 * arrived that the loop has not applied yet (bytes unread in the subscriber
 * socket, or the loop in the middle of reading and applying them), waits for
 * the loop to apply them, at most timeout_ms (redis_sub_watch_settle).
 * Returns 0 (nothing pending: one poll() and a few atomic loads), 1 (waited,
 * applied) or 2 (gave up at the bound, or called on the loop thread).  Any
 * thread: the one exception to the loop confinement, with the stats. */
int store_redis_settle_invalidations(struct store_redis *s, int timeout_ms);
/* Any thread: settles that found invalidations pending (waits), and of those the ones
 * that ran to their bound (timeouts), since start. */
void store_redis_settle_stats(struct store_redis *s, uint64_t *waits, uint64_t *timeouts);

void store_redis_get_stats(const struct store_redis *s, struct store_redis_stats *out);
/* This instance's id as it appears in published messages (16 hex digits). */
const char *store_redis_instance_id(const struct store_redis *s);

#endif
