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
