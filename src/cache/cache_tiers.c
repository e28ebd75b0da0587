/* cache_tiers.c - see cache_tiers.h.  Invalidation (records, replay, the
 * channel) is inval_sync.c. */
#include "cache_tiers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval_index.h"
#include "inval_sync.h"
#include "io_loop.h"
#include "log.h"
#include "redis_pool.h"
#include "stats.h"
#include "store_l1.h"
#include "store_redis.h"

int cache_tiers_start(struct gateway *gw) { return inval_sync_start(gw); }

void cache_tiers_stop(struct gateway *gw) { inval_sync_stop(gw); }

bool cache_tiers_l2_available(const struct gateway *gw)
{
    /* Not before this instance knows the invalidation records (inval_sync.h). */
    return gw->l2 != NULL && redis_pool_available(gw->redis) && inval_sync_ready(gw);
}

/* ---- the lookup verdict ---- */

/* An entry an invalidation record covers, or a variant older than the marker
 * that led to it, is void: dropped from the tier it came from. */
static bool entry_void(struct gateway *gw, const struct cache_lookup *lk,
                       const struct cache_object *obj)
{
    if (gw->inval && !inval_index_valid(gw->inval, obj)) return true;
    return cache_object_field(obj, CACHE_FIELD_VARY) == NULL &&
           obj->meta.stored_at_ms < lk->marker_stored_at;
}

/* Moves lk from a URL's Vary marker to the request's variant key.  Returns 0,
 * or -1 when the variant key cannot be built (the request keeps the base key,
 * which then misses). */
static int follow_marker(struct cache_lookup *lk, const struct cache_object *marker)
{
    char variant[2048];
    const char *vary = cache_object_field(marker, CACHE_FIELD_VARY);
    lk->marker_stored_at = marker->meta.stored_at_ms;
    if (lk->req_headers == NULL ||
        cache_rules_variant_key(lk->key, vary, lk->req_headers, variant, sizeof variant) != 0)
        return -1;
    char *k = strdup(variant);
    if (k == NULL) return -1;
    free(lk->key);
    lk->key = k;
    return 0;
}

static enum cache_verdict verdict_of(const struct cache_lookup *lk,
                                     const struct cache_object *obj, int64_t now)
{
    if (lk->cc == NULL) return cache_object_is_fresh(obj, now) ? CACHE_FRESH : CACHE_MISS;
    switch (cache_rules_usability(obj, lk->cc, now)) {
    case USE_FRESH: return CACHE_FRESH;
    case USE_STALE_OK: return CACHE_STALE_OK;
    case USE_SWR: return CACHE_STALE_SWR;
    case USE_REVALIDATE:
    default: return CACHE_REVALIDATE;
    }
}

/* A memory-tier read that drops void entries as it meets them. */
static struct cache_object *l1_read(struct gateway *gw, const struct cache_lookup *lk,
                                    int64_t now)
{
    if (gw->l1 == NULL) return NULL;
    size_t len = strlen(lk->key);
    struct cache_object *obj = store_l1_get(gw->l1, lk->key, len, now);
    if (obj && entry_void(gw, lk, obj)) {
        store_l1_delete(gw->l1, lk->key, len);
        cache_object_unref(obj);
        return NULL;
    }
    return obj;
}

static void set_result(struct cache_lookup *lk, struct cache_object *obj, enum cache_tier tier,
                       enum cache_verdict v)
{
    lk->verdict = v;
    lk->obj = obj;
    lk->tier = obj ? tier : CACHE_TIER_NONE;
}

/* ---- read-your-writes: the pending-invalidation check (issue 10) ----
 *
 * Another instance answers a write only once Redis has published its
 * invalidation, so by the time the client's next read reaches us the message
 * is normally in our subscriber socket already, or being applied by the I/O
 * loop.  Before the memory tier is read, a worker waits for that (bounded by
 * SETTLE_MAX_MS and REDIS_TIMEOUT_MS), so it does not serve the entry the
 * message is about to drop.  With nothing pending this is one poll() with a
 * zero timeout and a few atomic loads (docs/design.md, "Read-your-writes").
 * Checked before the lookup rather than after a hit: the same effect, and a
 * hit never has to be looked up twice (a Vary lookup has replaced lk->key). */
#define SETTLE_MAX_MS 5

static void settle_invalidations(struct gateway *gw)
{
    if (gw->l2 == NULL || gw->l1 == NULL) return;
    int ms = SETTLE_MAX_MS;
    if (gw->cfg && gw->cfg->redis_timeout_ms > 0 && gw->cfg->redis_timeout_ms < ms)
        ms = gw->cfg->redis_timeout_ms;
    if (store_redis_settle_invalidations(gw->l2, ms) == 2)
        LOG_D("read-your-writes: the I/O loop did not apply the invalidations it received "
              "within %d ms; reading the memory tier anyway", ms);
}

int cache_tiers_lookup(struct gateway *gw, struct cache_lookup *lk)
{
    settle_invalidations(gw);
    int64_t now = clock_wall_ms();
    lk->gw = gw;
    set_result(lk, NULL, CACHE_TIER_NONE, CACHE_MISS);
    struct cache_object *obj = l1_read(gw, lk, now);
    if (obj && cache_object_field(obj, CACHE_FIELD_VARY) != NULL) {
        int rc = follow_marker(lk, obj);
        cache_object_unref(obj);
        obj = rc == 0 ? l1_read(gw, lk, now) : NULL;
        /* A marker behind a marker is not ours to follow. */
        if (obj && cache_object_field(obj, CACHE_FIELD_VARY) != NULL) {
            cache_object_unref(obj);
            obj = NULL;
        }
    }
    if (obj == NULL) return 0;
    enum cache_verdict v = verdict_of(lk, obj, now);
    if (v == CACHE_MISS) {
        cache_object_unref(obj);
        return 0;
    }
    set_result(lk, obj, CACHE_TIER_MEMORY, v);
    return 0;
}

void cache_tiers_lookup_release(struct cache_lookup *lk)
{
    cache_object_unref(lk->obj);
    lk->obj = NULL;
    free(lk->key);
    lk->key = NULL;
}

struct cache_object *cache_tiers_get(struct gateway *gw, const char *key, size_t len,
                                     int64_t now_ms)
{
    if (gw->l1 == NULL) return NULL;
    struct cache_object *obj = store_l1_get(gw->l1, key, len, now_ms);
    if (obj && (!cache_object_is_fresh(obj, now_ms) ||
                (gw->inval && !inval_index_valid(gw->inval, obj)))) {
        store_l1_delete(gw->l1, key, len);
        cache_object_unref(obj);
        obj = NULL;
    }
    return obj;
}

static int l2_read(struct gateway *gw, const char *key, cache_tiers_get_fn done, void *arg);

/* Loop thread: Redis answered the lookup's key. */
static void lookup_l2_done(void *arg, struct cache_object *obj, int err)
{
    struct cache_lookup *lk = arg;
    struct gateway *gw = lk->gw;
    int64_t now = clock_wall_ms();
    if (obj && entry_void(gw, lk, obj)) {
        cache_tiers_l2_delete(gw, obj->key);
        cache_object_unref(obj);
        obj = NULL;
    }
    if (obj && cache_object_field(obj, CACHE_FIELD_VARY) != NULL) {
        /* A Vary marker from Redis: keep it in memory, then read our variant. */
        if (gw->l1) store_l1_put(gw->l1, obj, now);
        bool again = !lk->followed_in_redis && follow_marker(lk, obj) == 0;
        cache_object_unref(obj);
        lk->followed_in_redis = true;
        if (again && l2_read(gw, lk->key, lookup_l2_done, lk) == 0) return;
        obj = NULL;
    }
    if (obj) {
        enum cache_verdict v = verdict_of(lk, obj, now);
        if (v == CACHE_FRESH || v == CACHE_STALE_OK) {
            if (v == CACHE_FRESH && gw->l1) store_l1_put(gw->l1, obj, now);
            cache_object_unref(lk->obj);
            set_result(lk, obj, CACHE_TIER_REDIS, v);
            obj = NULL;
        } else if (v != CACHE_MISS && lk->obj == NULL) {
            set_result(lk, obj, CACHE_TIER_REDIS, CACHE_REVALIDATE);
            obj = NULL;
        }
        cache_object_unref(obj);
    }
    if (lk->verdict == CACHE_STALE_SWR) lk->verdict = CACHE_REVALIDATE;
    lk->done(lk->arg);
}

int cache_tiers_lookup_redis(struct gateway *gw, struct cache_lookup *lk,
                             void (*done)(void *arg), void *arg)
{
    lk->gw = gw;
    lk->done = done;
    lk->arg = arg;
    lk->followed_in_redis = false;
    return l2_read(gw, lk->key, lookup_l2_done, lk);
}

int cache_tiers_store(struct gateway *gw, struct cache_object *obj)
{
    int rc = gw->l1 ? store_l1_put(gw->l1, obj, clock_wall_ms()) : -1;
    cache_tiers_l2_put(gw, obj);
    return rc;
}

uint64_t cache_tiers_generation(const struct gateway *gw)
{
    return gw->inval ? inval_index_current(gw->inval) : 0;
}

bool cache_tiers_marker_current(struct gateway *gw, const char *base, size_t base_len,
                                const char *vary, int64_t now_ms)
{
    if (gw->l1 == NULL) return false;
    struct cache_object *old = store_l1_get(gw->l1, base, base_len, now_ms);
    const char *old_vary = old ? cache_object_field(old, CACHE_FIELD_VARY) : NULL;
    bool keep = old_vary && strcmp(old_vary, vary) == 0 &&
                (gw->inval == NULL || inval_index_valid(gw->inval, old));
    cache_object_unref(old);
    return keep;
}

size_t cache_tiers_memory_entries(struct gateway *gw)
{
    struct store_l1_stats st = {0};
    if (gw->l1) store_l1_get_stats(gw->l1, &st);
    return (size_t)st.entries;
}

/* ---- reads ---- */

struct get_task {
    struct gateway *gw;
    cache_tiers_get_fn done;
    void *arg;
    size_t key_len;
    char key[];
};

static void get_done(void *arg, struct cache_object *obj, int err)
{
    struct get_task *t = arg;
    t->done(t->arg, obj, err);
    free(t);
}

static void get_task_run(void *arg)
{
    struct get_task *t = arg;
    int rc = store_redis_get(t->gw->l2, t->key, t->key_len, get_done, t);
    if (rc != 0) get_done(t, NULL, rc);
}

static int l2_read(struct gateway *gw, const char *key, cache_tiers_get_fn done, void *arg)
{
    if (!cache_tiers_l2_available(gw)) return -ENOTCONN;
    size_t len = strlen(key);
    struct get_task *t = malloc(sizeof *t + len + 1);
    if (t == NULL) return -ENOMEM;
    t->gw = gw;
    t->done = done;
    t->arg = arg;
    t->key_len = len;
    memcpy(t->key, key, len + 1);
    int rc = io_loop_post(gw->loop, get_task_run, t);
    if (rc != 0) free(t);
    return rc;
}

/* ---- writes ---- */

struct put_task {
    struct gateway *gw;
    struct cache_object *obj;
};

static void put_task_run(void *arg)
{
    struct put_task *t = arg;
    int rc = store_redis_put(t->gw->l2, t->obj);
    if (rc != 0 && rc != -ENOTCONN)
        LOG_D("redis put of %s skipped: %s", t->obj->key, strerror(-rc));
    cache_object_unref(t->obj);
    free(t);
}

void cache_tiers_l2_put(struct gateway *gw, struct cache_object *obj)
{
    if (!cache_tiers_l2_available(gw)) return;
    /* A fill that began before the records were known carries a generation
     * they void: every instance would refuse it, and it would replace a good
     * entry in Redis. */
    if (gw->inval && !inval_index_valid(gw->inval, obj)) return;
    struct put_task *t = malloc(sizeof *t);
    if (t == NULL) return;
    t->gw = gw;
    t->obj = cache_object_ref(obj);
    if (io_loop_post(gw->loop, put_task_run, t) != 0) {
        cache_object_unref(t->obj);
        free(t);
    }
}

/* ---- ping ---- */

struct ping_task {
    struct gateway *gw;
    cache_tiers_ping_fn done;
    void *arg;
    int64_t t0_us;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void ping_reply(void *arg, const redisReply *reply, const char *err)
{
    struct ping_task *t = arg;
    double ms = err ? -1.0 : (double)(now_us() - t->t0_us) / 1000.0;
    t->done(t->arg, ms);
    free(t);
}

static void ping_task_run(void *arg)
{
    struct ping_task *t = arg;
    t->t0_us = now_us();
    if (redis_pool_ping(t->gw->redis, ping_reply, t) != 0) {
        t->done(t->arg, -1.0);
        free(t);
    }
}

int cache_tiers_ping(struct gateway *gw, cache_tiers_ping_fn done, void *arg)
{
    if (gw->redis == NULL) return -ENOTCONN;
    struct ping_task *t = calloc(1, sizeof *t);
    if (t == NULL) return -ENOMEM;
    t->gw = gw;
    t->done = done;
    t->arg = arg;
    int rc = io_loop_post(gw->loop, ping_task_run, t);
    if (rc != 0) free(t);
    return rc;
}


/* ---- invalidation: inval_sync.c ---- */

void cache_tiers_invalidate_key(struct gateway *gw, const char *key)
{
    inval_sync_invalidate_key(gw, key);
}

void cache_tiers_invalidate_prefix(struct gateway *gw, const char *prefix)
{
    inval_sync_invalidate_prefix(gw, prefix);
}

void cache_tiers_invalidate_tag(struct gateway *gw, const char *tag)
{
    inval_sync_invalidate_tag(gw, tag);
}

int cache_tiers_after_invalidations(struct gateway *gw, void (*fn)(void *arg), void *arg)
{
    return inval_sync_after(gw, fn, arg);
}

/* One key to drop from Redis (an invalidated entry met on a read). */
struct l2_delete {
    struct gateway *gw;
    size_t len;
    char key[];
};

/* Loop thread or any: drops one key from Redis only (an invalid entry met on read). */
static void l2_delete_task(void *arg)
{
    struct l2_delete *t = arg;
    if (t->gw->l2) store_redis_delete(t->gw->l2, t->key, t->len);
    free(t);
}

void cache_tiers_l2_delete(struct gateway *gw, const char *key)
{
    if (gw->l2 == NULL) return;
    size_t len = strlen(key);
    struct l2_delete *t = malloc(sizeof *t + len + 1);
    if (t == NULL) return;
    t->gw = gw;
    t->len = len;
    memcpy(t->key, key, len + 1);
    if (io_loop_post(gw->loop, l2_delete_task, t) != 0) free(t);
}

/* ---- the admin API ---- */

/* One admin operation on the loop: what it acts on and whom to tell. */
struct admin_task {
    struct gateway *gw;
    cache_tiers_get_fn get_done;
    cache_tiers_count_fn count_done;
    cache_tiers_scan_fn scan_done;
    void *arg;
    unsigned count;
    char cursor[32];
    size_t key_len;
    char key[];
};

static struct admin_task *admin_task_new(struct gateway *gw, const char *key, void *arg)
{
    size_t len = key ? strlen(key) : 0;
    struct admin_task *t = calloc(1, sizeof *t + len + 1);
    if (t == NULL) return NULL;
    t->gw = gw;
    t->arg = arg;
    t->key_len = len;
    if (len) memcpy(t->key, key, len);
    return t;
}

static int admin_task_post(struct admin_task *t, void (*run)(void *))
{
    int rc = io_loop_post(t->gw->loop, run, t);
    if (rc != 0) free(t);
    return rc;
}

static void peek_done(void *arg, struct cache_object *obj, int err)
{
    struct admin_task *t = arg;
    t->get_done(t->arg, obj, err);
    free(t);
}

static void peek_run(void *arg)
{
    struct admin_task *t = arg;
    int rc = store_redis_peek(t->gw->l2, t->key, t->key_len, peek_done, t);
    if (rc != 0) peek_done(t, NULL, rc);
}

int cache_tiers_l2_peek(struct gateway *gw, const char *key, cache_tiers_get_fn done, void *arg)
{
    if (!cache_tiers_l2_available(gw)) return -ENOTCONN;
    struct admin_task *t = admin_task_new(gw, key, arg);
    if (t == NULL) return -ENOMEM;
    t->get_done = done;
    return admin_task_post(t, peek_run);
}

static void scan_done(void *arg, const char *next, const char *const *keys, const size_t *lens,
                      size_t n, int err)
{
    struct admin_task *t = arg;
    t->scan_done(t->arg, next, keys, lens, n, err);
    free(t);
}

static void scan_run(void *arg)
{
    struct admin_task *t = arg;
    int rc = store_redis_scan(t->gw->l2, t->cursor, t->key, t->key_len, t->count, scan_done, t);
    if (rc != 0) scan_done(t, "0", NULL, NULL, 0, rc);
}

int cache_tiers_l2_scan(struct gateway *gw, const char *cursor, const char *prefix,
                        unsigned count, cache_tiers_scan_fn done, void *arg)
{
    size_t clen = strlen(cursor);
    if (clen == 0 || clen >= 21 || strspn(cursor, "0123456789") != clen) return -EINVAL;
    if (!cache_tiers_l2_available(gw)) return -ENOTCONN;
    struct admin_task *t = admin_task_new(gw, prefix, arg);
    if (t == NULL) return -ENOMEM;
    t->scan_done = done;
    t->count = count;
    memcpy(t->cursor, cursor, clen + 1);
    return admin_task_post(t, scan_run);
}

static void purge_key_deleted(void *arg, long long removed, int err)
{
    struct admin_task *t = arg;
    t->count_done(t->arg, removed, err);
    free(t);
}

static void purge_key_run(void *arg)
{
    struct admin_task *t = arg;
    int rc = store_redis_delete_count(t->gw->l2, t->key, t->key_len, purge_key_deleted, t);
    if (rc != 0) purge_key_deleted(t, 0, rc);
}

int cache_tiers_purge_key(struct gateway *gw, const char *key, size_t *memory,
                          cache_tiers_count_fn done, void *arg)
{
    *memory = gw->l1 ? (size_t)store_l1_delete(gw->l1, key, strlen(key)) : 0;
    if (!cache_tiers_l2_available(gw)) return -ENOTCONN;
    struct admin_task *t = admin_task_new(gw, key, arg);
    if (t == NULL) return -ENOMEM;
    t->count_done = done;
    return admin_task_post(t, purge_key_run);
}

size_t cache_tiers_purge_prefix(struct gateway *gw, const char *prefix)
{
    size_t n = gw->l1 ? store_l1_delete_prefix(gw->l1, prefix, strlen(prefix)) : 0;
    inval_sync_invalidate_prefix(gw, prefix);
    return n;
}

/* True when obj's tag list (space-separated, inval_index.h) holds the tag. */
static bool has_tag(const struct cache_object *obj, void *arg)
{
    const char *tag = arg;
    size_t len = strlen(tag);
    const char *p = cache_object_field(obj, CACHE_FIELD_TAGS);
    while (p != NULL && *p != '\0') {
        size_t n = strcspn(p, " ");
        if (n == len && memcmp(p, tag, len) == 0) return true;
        p += n;
        p += strspn(p, " ");
    }
    return false;
}

size_t cache_tiers_purge_tag(struct gateway *gw, const char *tag)
{
    size_t n = gw->l1 ? store_l1_delete_matching(gw->l1, has_tag, (void *)tag) : 0;
    inval_sync_invalidate_tag(gw, tag);
    return n;
}

static void purge_all_done(void *arg, long long removed, int err)
{
    struct admin_task *t = arg;
    struct gateway *gw = t->gw;
    if (gw->l1) store_l1_clear(gw->l1);
    /* The empty prefix matches every key: each other instance clears its
     * memory tier (inval_sync applies 'p' as store_l1_delete_prefix). */
    int rc = store_redis_publish_invalidation(gw->l2, INVAL_KEY_PREFIX, "", 0);
    if (rc != 0) LOG_W("purge-all: could not tell the other instances (%s)", strerror(-rc));
    t->count_done(t->arg, removed, err);
    free(t);
}

static void purge_all_run(void *arg)
{
    struct admin_task *t = arg;
    int rc = store_redis_purge_all(t->gw->l2, purge_all_done, t);
    if (rc != 0) purge_all_done(t, 0, rc);
}

int cache_tiers_purge_all(struct gateway *gw, size_t *memory, cache_tiers_count_fn done,
                          void *arg)
{
    *memory = gw->l1 ? store_l1_clear(gw->l1) : 0;
    if (!cache_tiers_l2_available(gw)) return -ENOTCONN;
    struct admin_task *t = admin_task_new(gw, NULL, arg);
    if (t == NULL) return -ENOMEM;
    t->count_done = done;
    return admin_task_post(t, purge_all_run);
}

void cache_tiers_read_your_writes_stats(struct gateway *gw, uint64_t *waits, uint64_t *timeouts)
{
    *waits = *timeouts = 0;
    if (gw->l2 != NULL) store_redis_settle_stats(gw->l2, waits, timeouts);
}
