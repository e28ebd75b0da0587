/* cache_tiers.c - see cache_tiers.h. */
#include "cache_tiers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval_index.h"
#include "io_loop.h"
#include "log.h"
#include "redis_pool.h"
#include "stats.h"
#include "store_l1.h"
#include "store_redis.h"

/* ---- remote invalidations (loop thread) ---- */

static void sync_records(struct gateway *gw);
static void persist_fold(struct gateway *gw);
static void replay_pending(struct gateway *gw);

static void on_remote_invalidation(void *arg, char kind, const char *key, size_t len)
{
    struct gateway *gw = arg;
    if (gw->l1 == NULL) return;
    switch (kind) {
    case 'k':
        store_l1_delete(gw->l1, key, len);
        break;
    case 'p':
        store_l1_delete_prefix(gw->l1, key, len);
        break;
    case 'P':
    case 'T': {
        /* "<seq>:<prefix or tag>" */
        const char *colon = memchr(key, ':', len);
        if (colon == NULL) break;
        uint64_t seq = strtoull(key, NULL, 10);
        const char *str = colon + 1;
        size_t slen = len - (size_t)(colon + 1 - key);
        /* The record makes the entries unreachable at once; their memory is
         * reclaimed by LRU and by reads that meet them (no walk here). */
        if (kind == 'P') {
            inval_index_note_prefix(gw->inval, str, slen, seq);
        } else {
            inval_index_note_tag(gw->inval, str, slen, seq);
        }
        persist_fold(gw);
        break;
    }
    case '*':
        /* Messages may have been missed while unsubscribed. */
        LOG_I("invalidation channel re-established: clearing the memory tier");
        store_l1_clear(gw->l1);
        sync_records(gw);
        replay_pending(gw);
        break;
    default:
        break;
    }
}

/* ---- invalidation records in Redis: <prefix>inv:seq, inv:p, inv:t ---- */

static void redis_name(const struct gateway *gw, const char *suffix, char *out, size_t len)
{
    snprintf(out, len, "%s%s", gw->cfg->redis_prefix ? gw->cfg->redis_prefix : "", suffix);
}

static void on_records(void *arg, const redisReply *reply, const char *err, bool tags)
{
    struct gateway *gw = arg;
    if (err || reply == NULL || reply->type != REDIS_REPLY_ARRAY) return;
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *k = reply->element[i], *v = reply->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        uint64_t seq = strtoull(v->str, NULL, 10);
        if (tags) inval_index_note_tag(gw->inval, k->str, k->len, seq);
        else inval_index_note_prefix(gw->inval, k->str, k->len, seq);
    }
}

static void on_floor(void *arg, const redisReply *reply, const char *err)
{
    struct gateway *gw = arg;
    if (err == NULL && reply && reply->type == REDIS_REPLY_STRING)
        inval_index_raise_floor(gw->inval, strtoull(reply->str, NULL, 10));
}

static void ignore_reply(void *arg, const redisReply *reply, const char *err) {}

/* Loop thread: after this instance folded its records into a floor, the
 * floor replaces the records in Redis too (bounded there as well). */
static void persist_fold(struct gateway *gw)
{
    uint64_t folds = inval_index_folds(gw->inval);
    if (folds == gw->inval_folds_persisted || gw->l2 == NULL) return;
    char floor[32], name[512], p[512], t[512];
    snprintf(floor, sizeof floor, "%llu", (unsigned long long)inval_index_floor(gw->inval));
    redis_name(gw, "inv:floor", name, sizeof name);
    redis_name(gw, "inv:p", p, sizeof p);
    redis_name(gw, "inv:t", t, sizeof t);
    /* The floor only ever rises: a Lua script keeps the larger value. */
    const char *argv[] = {"EVAL",
                          "local f = tonumber(redis.call('GET', KEYS[1]) or '0') "
                          "if tonumber(ARGV[1]) > f then redis.call('SET', KEYS[1], ARGV[1]) end "
                          "redis.call('DEL', KEYS[2], KEYS[3]) return 1",
                          "3", name, p, t, floor};
    size_t lens[7];
    for (int i = 0; i < 7; i++) lens[i] = strlen(argv[i]);
    if (redis_pool_command(gw->redis, 7, argv, lens, ignore_reply, NULL) == 0) {
        gw->inval_folds_persisted = folds;
        LOG_W("invalidation records reached %d: folded into a floor (entries filled before "
              "sequence %s are invalid)",
              INVAL_INDEX_MAX_RECORDS, floor);
    }
}

static void on_prefix_records(void *arg, const redisReply *r, const char *err)
{
    on_records(arg, r, err, false);
}

static void on_tag_records(void *arg, const redisReply *r, const char *err)
{
    on_records(arg, r, err, true);
}

/* Loop thread: loads the records other instances made while we were away. */
static void sync_records(struct gateway *gw)
{
    char name[512];
    const char *argv[2] = {"HGETALL", name};
    size_t lens[2] = {7, 0};
    redis_name(gw, "inv:p", name, sizeof name);
    lens[1] = strlen(name);
    redis_pool_command(gw->redis, 2, argv, lens, on_prefix_records, gw);
    redis_name(gw, "inv:t", name, sizeof name);
    lens[1] = strlen(name);
    redis_pool_command(gw->redis, 2, argv, lens, on_tag_records, gw);
    const char *get[2] = {"GET", name};
    size_t get_lens[2] = {3, 0};
    redis_name(gw, "inv:floor", name, sizeof name);
    get_lens[1] = strlen(name);
    redis_pool_command(gw->redis, 2, get, get_lens, on_floor, gw);
}

/* Loop thread: syncs once Redis first answers (then '*' keeps it in sync). */
static void first_sync(void *arg)
{
    struct gateway *gw = arg;
    if (redis_pool_available(gw->redis)) {
        sync_records(gw);
        replay_pending(gw);
        return;
    }
    io_timer_start(gw->loop, 200, first_sync, gw);
}

static void start_task(void *arg) { first_sync(arg); }

int cache_tiers_start(struct gateway *gw)
{
    if (gw->l2 == NULL) return 0;
    int rc = store_redis_on_invalidation(gw->l2, on_remote_invalidation, gw);
    if (rc == 0) rc = io_loop_post(gw->loop, start_task, gw);
    return rc;
}

bool cache_tiers_l2_available(const struct gateway *gw)
{
    return gw->l2 != NULL && redis_pool_available(gw->redis);
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

int cache_tiers_l2_get(struct gateway *gw, const char *key, cache_tiers_get_fn done, void *arg)
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
    if (rc != 0 && rc != -ENOTCONN) LOG_D("redis put of %s skipped: %s", t->obj->key, strerror(-rc));
    cache_object_unref(t->obj);
    free(t);
}

void cache_tiers_l2_put(struct gateway *gw, struct cache_object *obj)
{
    if (!cache_tiers_l2_available(gw)) return;
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

/* ---- invalidation ---- */

struct inval_task {
    struct gateway *gw;
    struct inval_task *next; /* in the pending list */
    char kind;               /* 'k' key, 'P' prefix, 'T' tag */
    size_t len;
    char key[];
};

enum { MAX_PENDING_INVALIDATIONS = 10000 };

static void retry_pending(void *arg);

/* Loop thread: Redis did not take t; keep it for when Redis is back, so the
 * entries it covers in Redis (and on other instances) are dropped then. */
static void defer(struct inval_task *t)
{
    struct gateway *gw = t->gw;
    if (gw->inval_pending_n >= MAX_PENDING_INVALIDATIONS) {
        struct inval_task *old = gw->inval_pending_head;
        gw->inval_pending_head = old->next;
        if (gw->inval_pending_head == NULL) gw->inval_pending_tail = NULL;
        gw->inval_pending_n--;
        LOG_W("redis down: %d invalidations pending, dropping the oldest ('%s')",
              MAX_PENDING_INVALIDATIONS, old->key);
        free(old);
    }
    t->next = NULL;
    bool was_empty = gw->inval_pending_head == NULL;
    if (gw->inval_pending_tail) gw->inval_pending_tail->next = t;
    else gw->inval_pending_head = t;
    gw->inval_pending_tail = t;
    gw->inval_pending_n++;
    /* Besides the re-subscription after an outage, poll: a timeout without
     * an outage never re-subscribes. */
    if (was_empty) io_timer_start(gw->loop, 1000, retry_pending, gw);
}

/* One round trip assigns the global sequence, records it and tells the other
 * instances: the invalidation is complete when this returns, whatever the
 * number of keys it covers. */
static const char SEQUENCED_SCRIPT[] =
    "local s = redis.call('INCR', KEYS[1]) "
    "redis.call('HSET', KEYS[2], ARGV[1], s) "
    "redis.call('PUBLISH', KEYS[3], ARGV[2] .. s .. ':' .. ARGV[1]) "
    "return s";

static void on_sequenced(void *arg, const redisReply *reply, const char *err)
{
    struct inval_task *t = arg;
    struct gateway *gw = t->gw;
    if (err) {
        LOG_W("redis: invalidation of %s '%s' not recorded yet (%s): retried when Redis is back",
              t->kind == 'P' ? "prefix" : "tag", t->key, err);
        defer(t);
        return;
    }
    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        LOG_W("redis: invalidation of %s '%s' refused (%s)", t->kind == 'P' ? "prefix" : "tag",
              t->key, reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "bad reply");
    } else {
        uint64_t seq = (uint64_t)reply->integer;
        if (t->kind == 'P') {
            inval_index_note_prefix(gw->inval, t->key, t->len, seq);
            /* Reclaim the space in the background (SCAN + UNLINK batches). */
            store_redis_delete_prefix(gw->l2, t->key, t->len);
        } else {
            inval_index_note_tag(gw->inval, t->key, t->len, seq);
        }
        persist_fold(gw);
    }
    free(t);
}

static void inval_task_run(void *arg)
{
    struct inval_task *t = arg;
    struct gateway *gw = t->gw;
    if (gw->l2 == NULL) {
        free(t);
        return;
    }
    if (t->kind == 'k') {
        if (store_redis_delete(gw->l2, t->key, t->len) == -ENOTCONN) {
            defer(t);
            return;
        }
        store_redis_publish_invalidation(gw->l2, 'k', t->key, t->len);
        free(t);
        return;
    }
    char seq_key[512], rec_key[512], channel[512], tagged[64];
    redis_name(gw, "inv:seq", seq_key, sizeof seq_key);
    redis_name(gw, t->kind == 'P' ? "inv:p" : "inv:t", rec_key, sizeof rec_key);
    redis_name(gw, "invalidate", channel, sizeof channel);
    snprintf(tagged, sizeof tagged, "%s:%c", store_redis_instance_id(gw->l2), t->kind);
    const char *argv[] = {"EVAL", SEQUENCED_SCRIPT, "3", seq_key, rec_key, channel, t->key, tagged};
    size_t lens[8];
    for (int i = 0; i < 8; i++) lens[i] = i == 6 ? t->len : strlen(argv[i]);
    if (redis_pool_command(gw->redis, 8, argv, lens, on_sequenced, t) != 0) {
        LOG_W("redis unavailable: invalidation of '%s' applied here now, in Redis when it is back",
              t->key);
        defer(t);
    }
}

/* Loop thread: Redis is back: send what it missed, in order. */
static void replay_pending(struct gateway *gw)
{
    struct inval_task *t = gw->inval_pending_head;
    size_t n = gw->inval_pending_n;
    gw->inval_pending_head = gw->inval_pending_tail = NULL;
    gw->inval_pending_n = 0;
    if (n > 0) LOG_I("redis is back: replaying %zu invalidations made while it was down", n);
    while (t) {
        struct inval_task *next = t->next;
        inval_task_run(t); /* defers again if Redis went away meanwhile */
        t = next;
    }
}

static void retry_pending(void *arg)
{
    struct gateway *gw = arg;
    if (gw->inval_pending_head == NULL) return;
    if (redis_pool_available(gw->redis)) replay_pending(gw);
    else io_timer_start(gw->loop, 1000, retry_pending, gw);
}

void cache_tiers_stop(struct gateway *gw)
{
    struct inval_task *t = gw->inval_pending_head;
    while (t) {
        struct inval_task *next = t->next;
        free(t);
        t = next;
    }
    gw->inval_pending_head = gw->inval_pending_tail = NULL;
    gw->inval_pending_n = 0;
}

static void post_invalidation(struct gateway *gw, char kind, const char *key)
{
    size_t len = strlen(key);
    struct inval_task *t = malloc(sizeof *t + len + 1);
    if (t == NULL) {
        LOG_E("out of memory: invalidation of %s not propagated", key);
        return;
    }
    t->gw = gw;
    t->kind = kind;
    t->len = len;
    memcpy(t->key, key, len + 1);
    if (io_loop_post(gw->loop, inval_task_run, t) != 0) free(t);
}

void cache_tiers_invalidate_key(struct gateway *gw, const char *key)
{
    STATS_INC(invalidations);
    if (gw->l1) store_l1_delete(gw->l1, key, strlen(key));
    post_invalidation(gw, 'k', key);
    LOG_D("invalidated key %s", key);
}

void cache_tiers_invalidate_prefix(struct gateway *gw, const char *prefix)
{
    STATS_INC(invalidations);
    /* Recorded locally first, so this instance's next read already misses. */
    inval_index_note_prefix(gw->inval, prefix, strlen(prefix), inval_index_next_local(gw->inval));
    post_invalidation(gw, 'P', prefix);
    LOG_D("invalidated prefix %s", prefix);
}

void cache_tiers_invalidate_tag(struct gateway *gw, const char *tag)
{
    STATS_INC(invalidations);
    inval_index_note_tag(gw->inval, tag, strlen(tag), inval_index_next_local(gw->inval));
    post_invalidation(gw, 'T', tag);
    LOG_D("invalidated tag %s", tag);
}

/* Loop thread or any: drops one key from Redis only (an invalid entry met on read). */
static void l2_delete_task(void *arg)
{
    struct inval_task *t = arg;
    if (t->gw->l2) store_redis_delete(t->gw->l2, t->key, t->len);
    free(t);
}

void cache_tiers_l2_delete(struct gateway *gw, const char *key)
{
    if (gw->l2 == NULL) return;
    size_t len = strlen(key);
    struct inval_task *t = malloc(sizeof *t + len + 1);
    if (t == NULL) return;
    t->gw = gw;
    t->kind = 'k';
    t->len = len;
    memcpy(t->key, key, len + 1);
    if (io_loop_post(gw->loop, l2_delete_task, t) != 0) free(t);
}
