/*
 * store_l1 - the in-process memory tier: sharded, byte-bounded, LRU, TTL.
 *
 * Maps a key to a cache_object.  The store is split into shards (each with its
 * own mutex, hash table and LRU list) so that workers rarely contend.  The byte
 * bound (sum of cache_object.charge plus per-entry overhead) is enforced per
 * shard (max_bytes / n_shards each); inserting past it evicts least recently
 * used entries of that shard.  An object larger than a shard's budget is
 * refused.  Expiry uses the time passed in by the caller (now_ms, wall clock
 * milliseconds), so tests control time without sleeping: an entry whose
 * cache_object_expires_at_ms() <= now_ms is never returned and is dropped when
 * met.
 *
 * Ownership: store_l1_put takes a new reference of its own (the caller keeps
 * its reference).  store_l1_get returns a new reference the caller must
 * release with cache_object_unref.  Evicted or replaced objects stay valid for
 * whoever still holds a reference.
 * Thread-safety: internally locked (per shard); every function may be called
 * from any thread.
 */
#ifndef CACHEGW_STORE_L1_H
#define CACHEGW_STORE_L1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache_object.h"

struct store_l1;

struct store_l1_stats {
    uint64_t entries;
    uint64_t bytes;
    uint64_t max_bytes;
    uint64_t evictions;
    uint64_t expired;
};

/* max_bytes == 0 disables the tier (every put refused, every get misses).
 * n_shards is rounded up to a power of two (0 means a default of 64). */
int store_l1_create(size_t max_bytes, unsigned n_shards, struct store_l1 **out);
void store_l1_destroy(struct store_l1 *store);

/* Returns a referenced object, or NULL on miss or if useless at now_ms (past
 * cache_object_expires_at_ms, i.e. past ttl and both stale windows).  A stale
 * object inside a window is returned: freshness is the caller's decision.  A hit
 * moves the entry to the most-recently-used end. */
struct cache_object *store_l1_get(struct store_l1 *store, const char *key, size_t key_len,
                                  int64_t now_ms);

/* Inserts or replaces the entry for obj->key.  Returns 0, -E2BIG when the
 * object cannot fit the shard budget (or the tier is disabled), -ENOMEM.
 * Whatever the result, an older entry for the same key is removed: obj
 * supersedes it even when obj itself cannot be kept.  An obj already past
 * cache_object_expires_at_ms() at now_ms is not stored (returns 0). */
int store_l1_put(struct store_l1 *store, struct cache_object *obj, int64_t now_ms);

/* Removes one key.  Returns 1 if an entry was removed, 0 if none. */
int store_l1_delete(struct store_l1 *store, const char *key, size_t key_len);

/* Removes every key starting with prefix (a full walk: the memory tier is
 * bounded, so this is bounded too).  Returns the number removed. */
size_t store_l1_delete_prefix(struct store_l1 *store, const char *prefix, size_t prefix_len);

/* Removes every entry for which match(obj, arg) is true (a full walk, like
 * store_l1_delete_prefix; match runs under a shard lock: it must be quick and
 * must not call into the store).  Returns the number removed. */
size_t store_l1_delete_matching(struct store_l1 *store,
                                bool (*match)(const struct cache_object *obj, void *arg),
                                void *arg);

/* Removes everything.  Returns the number of entries removed. */
size_t store_l1_clear(struct store_l1 *store);

/* Looks at one entry without changing it: no move to the most-recently-used
 * end, no removal when it is past its useful life (it is just not returned),
 * no counter touched.  For the admin API's GET /entries; the request path
 * uses store_l1_get.  Returns a referenced object or NULL. */
struct cache_object *store_l1_peek(struct store_l1 *store, const char *key, size_t key_len,
                                   int64_t now_ms);

/* Where a listing starts, and what store_l1_list sets *cursor to once every
 * shard has been walked. */
#define STORE_L1_LIST_START 0u
#define STORE_L1_LIST_END UINT64_MAX

/* One page of a listing of the entries whose key starts with prefix (any
 * entry when prefix_len is 0) and that are still useful at now_ms, walked
 * shard by shard and bucket by bucket, without changing any entry.  *cursor
 * is STORE_L1_LIST_START for the first page and what the previous call left
 * for the next ones (opaque; STORE_L1_LIST_END when done).  A page holds at
 * most limit entries, except that a bucket is never split: when its matches
 * alone are more than limit they come as one page.  A page walks at most
 * STORE_L1_LIST_WORK buckets, so a page may be empty before the end (like
 * Redis SCAN).  An entry present for the whole listing is returned at least
 * once; a shard's table growing between pages can return an entry twice.
 * Returns 0 with *out a malloc'd array of *n references (the caller unrefs
 * each and frees the array; NULL when *n is 0), or -ENOMEM, -EINVAL (a
 * cursor no call returned). */
#define STORE_L1_LIST_WORK 4096u
int store_l1_list(struct store_l1 *store, uint64_t *cursor, const char *prefix,
                  size_t prefix_len, size_t limit, int64_t now_ms, struct cache_object ***out,
                  size_t *n);

void store_l1_get_stats(struct store_l1 *store, struct store_l1_stats *out);

#endif
