/* store_redis.c - see store_redis.h. */
#include "store_redis.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"
#include "redis_sub_watch.h"

#define INSTANCE_ID_LEN 16
#define SCAN_BATCH "1000"

/* Recent fills, for the fill/invalidation race (see "fills that raced" below). */
#define FILL_SLOTS 256
#define FILL_RACE_MS 1000

struct fill_rec {
    uint64_t hash; /* of the cache key; 0: free */
    int64_t sent_ms; /* monotonic */
    bool in_flight; /* SET sent, not answered */
    bool raced; /* an invalidation of the key came while it was in flight */
};

struct inval_rec {
    uint64_t hash; /* of the cache key; 0: free */
    int64_t at_ms; /* wall clock, as cache_meta.stored_at_ms */
};

struct store_redis {
    struct redis_pool *pool;
    struct io_loop *loop;
    char *prefix;
    size_t prefix_len;
    size_t max_value_bytes;
    char instance_id[INSTANCE_ID_LEN + 1];
    char *channel;
    size_t channel_len;
    struct redis_sub *sub;
    store_redis_invalidation_fn on_invalidation;
    void *invalidation_arg;
    bool subscribed_once; /* loop thread: the '+' was delivered */
    /* The subscriber connection's unapplied input, for readers on other
     * threads (store_redis_settle_invalidations). */
    struct redis_sub_watch watch;
    bool watch_ok;
    struct fill_rec fills[FILL_SLOTS];
    struct inval_rec invals[FILL_SLOTS]; /* recent key invalidations, same slots */
    store_redis_raced_fn on_raced;
    void *raced_arg;

    atomic_uint_fast64_t hits, misses, errors, decode_failures, stores, too_big;
    atomic_uint_fast64_t invalidations_sent, invalidations_received;
};

#define COUNT(s, field) atomic_fetch_add_explicit(&(s)->field, 1, memory_order_relaxed)

/* The namespace of cache entries under the prefix (see the header): the
 * bookkeeping lives under "{inv}:", which no entry name can start with. */
#define ENTRY_NS "c:"
#define ENTRY_NS_LEN 2

/* prefix + "c:" + key in a fresh buffer (binary; NUL-terminated for logs). */
static char *full_key(const struct store_redis *s, const char *key, size_t key_len, size_t *out_len)
{
    size_t head = s->prefix_len + ENTRY_NS_LEN;
    char *k = malloc(head + key_len + 1);
    if (k == NULL) return NULL;
    memcpy(k, s->prefix, s->prefix_len);
    memcpy(k + s->prefix_len, ENTRY_NS, ENTRY_NS_LEN);
    if (key_len) memcpy(k + head, key, key_len);
    k[head + key_len] = '\0';
    *out_len = head + key_len;
    return k;
}

static int err_code(const char *err)
{
    return strcmp(err, REDIS_ERR_TIMEOUT) == 0 ? -ETIMEDOUT : -ENOTCONN;
}

/* ---- fire-and-forget commands ---- */

static void counted_reply(void *arg, const redisReply *r, const char *err)
{
    struct store_redis *s = arg;
    if (err != NULL || r->type == REDIS_REPLY_ERROR) {
        COUNT(s, errors);
        LOG_D("redis: command failed: %s", err ? err : r->str);
    }
}

/* ---- fills that raced an invalidation ----
 *
 * A fill's SET is fire and forget on one pooled connection; a key
 * invalidation's DEL (ours, on another connection, or another instance's) can
 * reach Redis first when this loop was held off the CPU between the fill and
 * its SET: the invalidated value is then back in Redis for its whole TTL, and
 * every instance reads it back.  So each SET is remembered for FILL_RACE_MS
 * (by key hash, FILL_SLOTS slots, the newest wins a slot); an invalidation of
 * the key that meets one (a 'k' message from another instance, or our own
 * store_redis_delete_then) hands the key to on_raced (inval_sync invalidates
 * it again: DEL, memory tier, publish), once the SET was answered, and once
 * per SET.  A false match (two keys, one hash) costs one more invalidation;
 * docs/design.md, "Read-your-writes". */

static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = hash_bytes(key, len); /* keyed: clients choose the keys */
    return h ? h : 1;                  /* 0 marks a free slot */
}

struct set_op {
    struct store_redis *s;
    uint64_t hash;
    size_t key_len;
    char key[];
};

static void raced(struct store_redis *s, const char *key, size_t len)
{
    LOG_D("redis: a fill of %.*s may have landed after its invalidation: invalidated again",
          (int)len, key);
    if (s->on_raced) s->on_raced(s->raced_arg, key, len);
}

/* A key invalidation seen here (another instance's message, or our DEL): a
 * fill of the key stored before it is not written any more (store_redis_put),
 * whatever held it up on its way to the loop. */
static void note_invalidation(struct store_redis *s, uint64_t h)
{
    s->invals[h % FILL_SLOTS] = (struct inval_rec){.hash = h, .at_ms = clock_wall_ms()};
}

/* An invalidation of key: a SET of it in flight is undone once answered.  One
 * answered less than FILL_RACE_MS ago is undone at once when the invalidation
 * is another instance's (its DEL ran before its message left: our answered
 * SET may still have come after it); our own DEL is sent after that answer,
 * so it cannot be overtaken. */
static void fill_invalidated(struct store_redis *s, const char *key, size_t len, bool remote)
{
    uint64_t h = key_hash(key, len);
    note_invalidation(s, h);
    struct fill_rec *f = &s->fills[h % FILL_SLOTS];
    if (f->hash != h) return;
    if (f->in_flight) {
        f->raced = true;
        return;
    }
    bool recent = remote && clock_mono_ms() - f->sent_ms < FILL_RACE_MS;
    f->hash = 0;
    if (recent) raced(s, key, len);
}

static void store_reply(void *arg, const redisReply *r, const char *err)
{
    struct set_op *op = arg;
    struct store_redis *s = op->s;
    struct fill_rec *f = &s->fills[op->hash % FILL_SLOTS];
    bool was_raced = false;
    if (f->hash == op->hash && f->in_flight) {
        f->in_flight = false;
        was_raced = f->raced;
        if (was_raced) f->hash = 0;
    }
    if (err != NULL || r->type == REDIS_REPLY_ERROR) {
        COUNT(s, errors);
        LOG_D("redis: SET failed: %s", err ? err : r->str);
    } else {
        COUNT(s, stores);
    }
    /* Even a SET that failed may have been applied (a timeout). */
    if (was_raced) raced(s, op->key, op->key_len);
    free(op);
}

static int simple_key_command(struct store_redis *s, const char *cmd, const char *key,
                              size_t key_len)
{
    size_t fk_len;
    char *fk = full_key(s, key, key_len, &fk_len);
    if (fk == NULL) return -ENOMEM;
    const char *argv[2] = {cmd, fk};
    size_t lens[2] = {strlen(cmd), fk_len};
    int rc = redis_pool_command(s->pool, 2, argv, lens, counted_reply, s);
    free(fk);
    return rc;
}

/* ---- get ---- */

struct get_op {
    struct store_redis *s;
    store_redis_get_fn fn;
    void *arg;
    size_t key_len;
    char key[]; /* the logical key (without prefix) */
};

static void get_reply(void *arg, const redisReply *r, const char *err)
{
    struct get_op *op = arg;
    struct store_redis *s = op->s;
    struct cache_object *obj = NULL;
    int code = 0;
    if (err != NULL) {
        COUNT(s, errors);
        code = err_code(err);
    } else if (r->type == REDIS_REPLY_NIL) {
        COUNT(s, misses);
    } else if (r->type == REDIS_REPLY_STRING) {
        int rc = cache_object_decode(r->str, r->len, &obj);
        if (rc == 0 && (obj->key_len != op->key_len || memcmp(obj->key, op->key, op->key_len))) {
            cache_object_unref(obj);
            obj = NULL;
            rc = -EINVAL;
        }
        if (rc == -EINVAL) {
            /* Never serve it, and do not let it cost a decode per request. */
            COUNT(s, decode_failures);
            COUNT(s, misses);
            /* The key is not logged: a policy may key on a credential. */
            LOG_W("Redis: deleting an undecodable cache value (%zu bytes)", r->len);
            simple_key_command(s, "DEL", op->key, op->key_len);
        } else if (rc < 0) {
            COUNT(s, errors);
            code = rc;
        } else if (clock_wall_ms() >= cache_object_expires_at_ms(obj)) {
            cache_object_unref(obj);
            obj = NULL;
            COUNT(s, misses);
        } else {
            COUNT(s, hits);
        }
    } else {
        /* An error reply (WRONGTYPE, OOM, ...) or a type GET never returns. */
        COUNT(s, errors);
        LOG_D("redis: GET answered %s", r->type == REDIS_REPLY_ERROR ? r->str : "a non-string");
        code = -EIO;
    }
    op->fn(op->arg, obj, code);
    free(op);
}

int store_redis_get(struct store_redis *s, const char *key, size_t key_len, store_redis_get_fn fn,
                    void *arg)
{
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    struct get_op *op = malloc(sizeof *op + key_len + 1);
    size_t fk_len;
    char *fk = full_key(s, key, key_len, &fk_len);
    if (op == NULL || fk == NULL) {
        free(op);
        free(fk);
        return -ENOMEM;
    }
    op->s = s;
    op->fn = fn;
    op->arg = arg;
    op->key_len = key_len;
    memcpy(op->key, key, key_len);
    op->key[key_len] = '\0';
    const char *argv[2] = {"GET", fk};
    size_t lens[2] = {3, fk_len};
    int rc = redis_pool_command(s->pool, 2, argv, lens, get_reply, op);
    free(fk);
    if (rc < 0) free(op);
    return rc;
}

/* ---- put / delete ---- */

int store_redis_put(struct store_redis *s, struct cache_object *obj)
{
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    int64_t ttl = cache_object_expires_at_ms(obj) - clock_wall_ms();
    if (ttl <= 0) return -ESTALE;
    char *val = NULL;
    size_t val_len = 0;
    int rc = cache_object_encode(obj, &val, &val_len);
    if (rc < 0) return rc;
    if (s->max_value_bytes && val_len > s->max_value_bytes) {
        COUNT(s, too_big);
        free(val);
        return -E2BIG;
    }
    uint64_t h = key_hash(obj->key, obj->key_len);
    const struct inval_rec *iv = &s->invals[h % FILL_SLOTS];
    if (iv->hash == h && obj->meta.stored_at_ms <= iv->at_ms) {
        /* Invalidated after it was stored: writing it now would bring the old
         * value back after the invalidation's DEL. */
        free(val);
        return -ECANCELED;
    }
    size_t fk_len;
    char *fk = full_key(s, obj->key, obj->key_len, &fk_len);
    if (fk == NULL) {
        free(val);
        return -ENOMEM;
    }
    struct set_op *op = malloc(sizeof *op + obj->key_len);
    if (op == NULL) {
        free(fk);
        free(val);
        return -ENOMEM;
    }
    op->s = s;
    op->hash = h;
    op->key_len = obj->key_len;
    memcpy(op->key, obj->key, obj->key_len);
    char px[24];
    snprintf(px, sizeof px, "%lld", (long long)ttl);
    const char *argv[5] = {"SET", fk, val, "PX", px};
    size_t lens[5] = {3, fk_len, val_len, 2, strlen(px)};
    rc = redis_pool_command(s->pool, 5, argv, lens, store_reply, op);
    free(fk);
    free(val);
    if (rc != 0) {
        free(op);
        return rc;
    }
    s->fills[op->hash % FILL_SLOTS] =
        (struct fill_rec){.hash = op->hash, .sent_ms = clock_mono_ms(), .in_flight = true};
    return 0;
}

int store_redis_delete(struct store_redis *s, const char *key, size_t key_len)
{
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    return simple_key_command(s, "DEL", key, key_len);
}

struct done_op {
    struct store_redis *s;
    store_redis_done_fn fn;
    void *arg;
};

static void done_reply(void *arg, const redisReply *r, const char *err)
{
    struct done_op *op = arg;
    int code = 0;
    if (err != NULL) {
        COUNT(op->s, errors);
        code = err_code(err);
    } else if (r->type == REDIS_REPLY_ERROR) {
        COUNT(op->s, errors);
        code = -EIO;
    }
    op->fn(op->arg, code);
    free(op);
}

/* DEL of one entry whose reply goes to on_reply(op); op is freed here when the
 * command cannot be sent. */
static int send_del(struct store_redis *s, const char *key, size_t key_len,
                    redis_reply_fn on_reply, void *op)
{
    size_t fk_len;
    char *fk = full_key(s, key, key_len, &fk_len);
    if (fk == NULL) {
        free(op);
        return -ENOMEM;
    }
    const char *argv[2] = {"DEL", fk};
    size_t lens[2] = {3, fk_len};
    int rc = redis_pool_command(s->pool, 2, argv, lens, on_reply, op);
    free(fk);
    if (rc < 0) free(op);
    return rc;
}

int store_redis_delete_then(struct store_redis *s, const char *key, size_t key_len,
                            store_redis_done_fn fn, void *arg)
{
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    struct done_op *op = malloc(sizeof *op);
    if (op == NULL) return -ENOMEM;
    *op = (struct done_op){.s = s, .fn = fn, .arg = arg};
    int rc = send_del(s, key, key_len, done_reply, op);
    if (rc != 0) {
        free(op);
        return rc;
    }
    /* Our own invalidation (inval_sync's key DEL) may overtake our own fill. */
    fill_invalidated(s, key, key_len, false);
    return 0;
}

/* ---- delete by prefix: SCAN + UNLINK ---- */

struct scan_op {
    struct store_redis *s;
    char cursor[32];
    size_t pattern_len;
    char pattern[]; /* escaped prefix + "*" */
};

static int scan_next(struct scan_op *op);

static void scan_reply(void *arg, const redisReply *r, const char *err)
{
    struct scan_op *op = arg;
    struct store_redis *s = op->s;
    if (err != NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
        COUNT(s, errors);
        LOG_D("redis: prefix delete stopped: %s", err ? err
                                                  : r->type == REDIS_REPLY_ERROR
                                                      ? r->str
                                                      : "unexpected SCAN reply");
        free(op);
        return;
    }
    const redisReply *keys = r->element[1];
    if (keys->elements > 0) {
        const char **argv = malloc((keys->elements + 1) * sizeof *argv);
        size_t *lens = malloc((keys->elements + 1) * sizeof *lens);
        if (argv && lens) {
            argv[0] = "UNLINK";
            lens[0] = 6;
            size_t n = 1;
            for (size_t i = 0; i < keys->elements; i++) {
                if (keys->element[i]->type != REDIS_REPLY_STRING) continue;
                argv[n] = keys->element[i]->str;
                lens[n++] = keys->element[i]->len;
            }
            if (n > 1) redis_pool_command(s->pool, (int)n, argv, lens, counted_reply, s);
        }
        free(argv);
        free(lens);
    }
    snprintf(op->cursor, sizeof op->cursor, "%.*s", (int)r->element[0]->len, r->element[0]->str);
    if (strcmp(op->cursor, "0") == 0 || scan_next(op) < 0) free(op);
}

static int scan_next(struct scan_op *op)
{
    const char *argv[6] = {"SCAN", op->cursor, "MATCH", op->pattern, "COUNT", SCAN_BATCH};
    size_t lens[6] = {4, strlen(op->cursor), 5, op->pattern_len, 5, strlen(SCAN_BATCH)};
    return redis_pool_command(op->s->pool, 6, argv, lens, scan_reply, op);
}

int store_redis_delete_prefix(struct store_redis *s, const char *key_prefix, size_t len)
{
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    size_t flen;
    char *full = full_key(s, key_prefix, len, &flen);
    struct scan_op *op = full ? malloc(sizeof *op + 2 * flen + 2) : NULL;
    if (op == NULL) {
        free(full);
        return -ENOMEM;
    }
    op->s = s;
    strcpy(op->cursor, "0");
    size_t n = 0;
    for (size_t i = 0; i < flen; i++) {
        char c = full[i];
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') op->pattern[n++] = '\\';
        op->pattern[n++] = c;
    }
    op->pattern[n++] = '*';
    op->pattern[n] = '\0';
    op->pattern_len = n;
    free(full);
    int rc = scan_next(op);
    if (rc < 0) free(op);
    return rc;
}

/* ---- the admin API: peek, counted delete, scan pages, purge-all ---- */

static void peek_reply(void *arg, const redisReply *r, const char *err)
{
    struct get_op *op = arg;
    struct cache_object *obj = NULL;
    int code = 0;
    if (err != NULL) {
        code = err_code(err);
    } else if (r->type == REDIS_REPLY_STRING) {
        int rc = cache_object_decode(r->str, r->len, &obj);
        if (rc == 0 && (obj->key_len != op->key_len || memcmp(obj->key, op->key, op->key_len))) {
            cache_object_unref(obj);
            obj = NULL;
            rc = -EINVAL;
        }
        if (rc == -EINVAL) code = -EBADMSG;
        else if (rc < 0) code = rc;
    } else if (r->type != REDIS_REPLY_NIL) {
        code = -EIO;
    }
    op->fn(op->arg, obj, code);
    free(op);
}

int store_redis_peek(struct store_redis *s, const char *key, size_t key_len,
                     store_redis_get_fn fn, void *arg)
{
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    struct get_op *op = malloc(sizeof *op + key_len + 1);
    size_t fk_len;
    char *fk = full_key(s, key, key_len, &fk_len);
    if (op == NULL || fk == NULL) {
        free(op);
        free(fk);
        return -ENOMEM;
    }
    *op = (struct get_op){.s = s, .fn = fn, .arg = arg, .key_len = key_len};
    memcpy(op->key, key, key_len);
    op->key[key_len] = '\0';
    const char *argv[2] = {"GET", fk};
    size_t lens[2] = {3, fk_len};
    int rc = redis_pool_command(s->pool, 2, argv, lens, peek_reply, op);
    free(fk);
    if (rc < 0) free(op);
    return rc;
}

struct count_op {
    store_redis_count_fn fn;
    void *arg;
};

static void count_reply(void *arg, const redisReply *r, const char *err)
{
    struct count_op *op = arg;
    if (err != NULL) op->fn(op->arg, 0, err_code(err));
    else if (r->type != REDIS_REPLY_INTEGER) op->fn(op->arg, 0, -EIO);
    else op->fn(op->arg, r->integer, 0);
    free(op);
}

int store_redis_delete_count(struct store_redis *s, const char *key, size_t key_len,
                             store_redis_count_fn fn, void *arg)
{
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    struct count_op *op = malloc(sizeof *op);
    if (op == NULL) return -ENOMEM;
    *op = (struct count_op){.fn = fn, .arg = arg};
    return send_del(s, key, key_len, count_reply, op);
}

/* The SCAN MATCH pattern of every entry under <prefix>c:key_prefix: glob
 * characters of the prefix and of REDIS_PREFIX escaped, then "*".  Returns a
 * malloc'd pattern or NULL. */
static char *entry_pattern(const struct store_redis *s, const char *key_prefix, size_t len,
                           size_t *out_len)
{
    size_t flen;
    char *full = full_key(s, key_prefix, len, &flen);
    char *pat = full ? malloc(2 * flen + 2) : NULL;
    if (pat == NULL) {
        free(full);
        return NULL;
    }
    size_t n = 0;
    for (size_t i = 0; i < flen; i++) {
        char c = full[i];
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') pat[n++] = '\\';
        pat[n++] = c;
    }
    pat[n++] = '*';
    pat[n] = '\0';
    *out_len = n;
    free(full);
    return pat;
}

/* A SCAN reply is [cursor, [names...]]: true when r has that shape. */
static bool scan_reply_ok(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
           r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len < 32 &&
           r->element[1]->type == REDIS_REPLY_ARRAY;
}

struct page_op {
    struct store_redis *s;
    store_redis_scan_fn fn;
    void *arg;
};

static void page_reply(void *arg, const redisReply *r, const char *err)
{
    struct page_op *op = arg;
    struct store_redis *s = op->s;
    if (err != NULL || !scan_reply_ok(r)) {
        op->fn(op->arg, "0", NULL, NULL, 0, err ? err_code(err) : -EIO);
        free(op);
        return;
    }
    const redisReply *names = r->element[1];
    const char **keys = calloc(names->elements + 1, sizeof *keys);
    size_t *lens = calloc(names->elements + 1, sizeof *lens);
    char next[32];
    snprintf(next, sizeof next, "%.*s", (int)r->element[0]->len, r->element[0]->str);
    if (keys == NULL || lens == NULL) {
        op->fn(op->arg, "0", NULL, NULL, 0, -ENOMEM);
    } else {
        size_t n = 0, head = s->prefix_len + ENTRY_NS_LEN;
        for (size_t i = 0; i < names->elements; i++) {
            const redisReply *e = names->element[i];
            /* MATCH guarantees the head; checked anyway, a reply is data. */
            if (e->type != REDIS_REPLY_STRING || e->len < head) continue;
            keys[n] = e->str + head;
            lens[n++] = e->len - head;
        }
        op->fn(op->arg, next, keys, lens, n, 0);
    }
    free(keys);
    free(lens);
    free(op);
}

int store_redis_scan(struct store_redis *s, const char *cursor, const char *key_prefix,
                     size_t len, unsigned count, store_redis_scan_fn fn, void *arg)
{
    size_t clen = strlen(cursor);
    if (clen == 0 || clen > 20 || strspn(cursor, "0123456789") != clen) return -EINVAL;
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    size_t plen;
    char *pattern = entry_pattern(s, key_prefix, len, &plen);
    struct page_op *op = pattern ? malloc(sizeof *op) : NULL;
    if (op == NULL) {
        free(pattern);
        return -ENOMEM;
    }
    *op = (struct page_op){.s = s, .fn = fn, .arg = arg};
    char c[16];
    snprintf(c, sizeof c, "%u", count ? count : 1);
    const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", c};
    size_t lens[6] = {4, clen, 5, plen, 5, strlen(c)};
    int rc = redis_pool_command(s->pool, 6, argv, lens, page_reply, op);
    free(pattern);
    if (rc < 0) free(op);
    return rc;
}

/* Purge-all: one SCAN at a time; each batch's UNLINK is in flight while the
 * next SCAN runs (the pool may send them on different connections), so the
 * walk ends when the cursor is back at "0" and no UNLINK is pending. */
struct purge_all_op {
    struct store_redis *s;
    store_redis_count_fn fn;
    void *arg;
    long long removed;
    int err;
    int pending; /* UNLINKs and the SCAN in flight */
    char cursor[32];
    size_t pattern_len;
    char *pattern;
};

static void purge_all_step(struct purge_all_op *op);

static void purge_all_release(struct purge_all_op *op)
{
    if (--op->pending > 0) return;
    op->fn(op->arg, op->removed, op->err);
    free(op->pattern);
    free(op);
}

static void purge_all_unlinked(void *arg, const redisReply *r, const char *err)
{
    struct purge_all_op *op = arg;
    if (err != NULL || r->type != REDIS_REPLY_INTEGER) {
        COUNT(op->s, errors);
        if (op->err == 0) op->err = err ? err_code(err) : -EIO;
    } else {
        op->removed += r->integer;
    }
    purge_all_release(op);
}

static void purge_all_scanned(void *arg, const redisReply *r, const char *err)
{
    struct purge_all_op *op = arg;
    struct store_redis *s = op->s;
    if (err != NULL || !scan_reply_ok(r)) {
        COUNT(s, errors);
        if (op->err == 0) op->err = err ? err_code(err) : -EIO;
        purge_all_release(op);
        return;
    }
    const redisReply *keys = r->element[1];
    if (keys->elements > 0 && op->err == 0) {
        const char **argv = malloc((keys->elements + 1) * sizeof *argv);
        size_t *lens = malloc((keys->elements + 1) * sizeof *lens);
        size_t n = 1;
        if (argv && lens) {
            argv[0] = "UNLINK";
            lens[0] = 6;
            for (size_t i = 0; i < keys->elements; i++) {
                if (keys->element[i]->type != REDIS_REPLY_STRING) continue;
                argv[n] = keys->element[i]->str;
                lens[n++] = keys->element[i]->len;
            }
        } else {
            op->err = -ENOMEM;
        }
        if (n > 1) {
            op->pending++;
            if (redis_pool_command(s->pool, (int)n, argv, lens, purge_all_unlinked, op) != 0) {
                op->pending--;
                op->err = -ENOTCONN;
            }
        }
        free(argv);
        free(lens);
    }
    snprintf(op->cursor, sizeof op->cursor, "%.*s", (int)r->element[0]->len, r->element[0]->str);
    if (op->err == 0 && strcmp(op->cursor, "0") != 0) purge_all_step(op);
    purge_all_release(op); /* this SCAN */
}

static void purge_all_step(struct purge_all_op *op)
{
    const char *argv[6] = {"SCAN", op->cursor, "MATCH", op->pattern, "COUNT", SCAN_BATCH};
    size_t lens[6] = {4, strlen(op->cursor), 5, op->pattern_len, 5, strlen(SCAN_BATCH)};
    op->pending++;
    if (redis_pool_command(op->s->pool, 6, argv, lens, purge_all_scanned, op) != 0) {
        op->pending--;
        op->err = -ENOTCONN;
    }
}

int store_redis_purge_all(struct store_redis *s, store_redis_count_fn fn, void *arg)
{
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    struct purge_all_op *op = calloc(1, sizeof *op);
    if (op == NULL) return -ENOMEM;
    *op = (struct purge_all_op){.s = s, .fn = fn, .arg = arg, .pending = 1};
    strcpy(op->cursor, "0");
    op->pattern = entry_pattern(s, "", 0, &op->pattern_len);
    if (op->pattern == NULL) {
        free(op);
        return -ENOMEM;
    }
    purge_all_step(op);
    if (op->err != 0 && op->pending == 1) {
        int err = op->err;
        free(op->pattern);
        free(op);
        return err;
    }
    purge_all_release(op); /* the starter's hold */
    return 0;
}

/* ---- invalidation pub/sub ---- */

struct publish_op {
    struct store_redis *s;
    store_redis_done_fn fn;
    void *arg;
};

static void publish_reply(void *arg, const redisReply *r, const char *err)
{
    struct publish_op *op = arg;
    counted_reply(op->s, r, err);
    op->fn(op->arg, err ? err_code(err) : r->type == REDIS_REPLY_ERROR ? -EIO : 0);
    free(op);
}

static int publish(struct store_redis *s, char kind, const char *key, size_t len,
                   store_redis_done_fn fn, void *arg)
{
    if (kind != 'k' && kind != 'p') return -EINVAL;
    if (!redis_pool_available(s->pool)) return -ENOTCONN;
    size_t msg_len = INSTANCE_ID_LEN + 2 + len;
    char *msg = malloc(msg_len);
    if (msg == NULL) return -ENOMEM;
    memcpy(msg, s->instance_id, INSTANCE_ID_LEN);
    msg[INSTANCE_ID_LEN] = ':';
    msg[INSTANCE_ID_LEN + 1] = kind;
    if (len) memcpy(msg + INSTANCE_ID_LEN + 2, key, len);
    const char *argv[3] = {"PUBLISH", s->channel, msg};
    size_t lens[3] = {7, s->channel_len, msg_len};
    struct publish_op *op = NULL;
    if (fn != NULL && (op = malloc(sizeof *op)) == NULL) {
        free(msg);
        return -ENOMEM;
    }
    if (op) *op = (struct publish_op){.s = s, .fn = fn, .arg = arg};
    int rc = op ? redis_pool_command(s->pool, 3, argv, lens, publish_reply, op)
                : redis_pool_command(s->pool, 3, argv, lens, counted_reply, s);
    free(msg);
    if (rc == 0) COUNT(s, invalidations_sent);
    else free(op);
    return rc;
}

int store_redis_publish_invalidation(struct store_redis *s, char kind, const char *key, size_t len)
{
    return publish(s, kind, key, len, NULL, NULL);
}

int store_redis_publish_invalidation_then(struct store_redis *s, char kind, const char *key,
                                          size_t len, store_redis_done_fn fn, void *arg)
{
    if (fn == NULL) return -EINVAL;
    return publish(s, kind, key, len, fn, arg);
}

static void on_message(void *arg, const char *payload, size_t len)
{
    struct store_redis *s = arg;
    if (len < INSTANCE_ID_LEN + 2 || payload[INSTANCE_ID_LEN] != ':') return;
    if (memcmp(payload, s->instance_id, INSTANCE_ID_LEN) == 0) return; /* our own */
    char kind = payload[INSTANCE_ID_LEN + 1];
    /* 'P' and 'T' ("<seq>:<prefix or tag>") are published by inval_sync's
     * sequenced invalidation script. */
    if (kind != 'k' && kind != 'p' && kind != 'P' && kind != 'T') return;
    COUNT(s, invalidations_received);
    const char *key = payload + INSTANCE_ID_LEN + 2;
    size_t key_len = len - INSTANCE_ID_LEN - 2;
    if (s->on_invalidation) s->on_invalidation(s->invalidation_arg, kind, key, key_len);
    if (kind == 'k') fill_invalidated(s, key, key_len, true);
}

static void on_sub_state(void *arg, bool subscribed, bool after_gap)
{
    struct store_redis *s = arg;
    if (!subscribed) return;
    bool first = !s->subscribed_once;
    s->subscribed_once = true;
    if (after_gap) {
        LOG_D("redis: invalidation channel re-subscribed after a gap: telling the owner");
        if (s->on_invalidation) s->on_invalidation(s->invalidation_arg, '*', NULL, 0);
    } else if (first) {
        /* Every message reaches us from now on: the owner reads what was
         * recorded before (inval_sync.c). */
        if (s->on_invalidation) s->on_invalidation(s->invalidation_arg, '+', NULL, 0);
    }
}

int store_redis_on_invalidation(struct store_redis *s, store_redis_invalidation_fn fn, void *arg)
{
    s->on_invalidation = fn;
    s->invalidation_arg = arg;
    if (s->sub != NULL) return 0;
    int rc = redis_pool_subscribe(s->pool, s->channel, s->channel_len, on_message, on_sub_state, s,
                                  &s->sub);
    if (rc == 0 && s->watch_ok) redis_pool_sub_set_watch(s->sub, &s->watch);
    return rc;
}

void store_redis_on_raced_fill(struct store_redis *s, store_redis_raced_fn fn, void *arg)
{
    s->on_raced = fn;
    s->raced_arg = arg;
}

int store_redis_settle_invalidations(struct store_redis *s, int timeout_ms)
{
    if (!s->watch_ok || timeout_ms <= 0) return 0;
    return redis_sub_watch_settle(&s->watch, timeout_ms);
}

void store_redis_settle_stats(struct store_redis *s, uint64_t *waits, uint64_t *timeouts)
{
    *waits = s->watch_ok ? (uint64_t)atomic_load(&s->watch.waits) : 0;
    *timeouts = s->watch_ok ? (uint64_t)atomic_load(&s->watch.timeouts) : 0;
}

/* ---- life cycle ---- */

int store_redis_create(struct redis_pool *pool, struct io_loop *loop, const char *prefix,
                       size_t max_value_bytes, struct store_redis **out)
{
    struct store_redis *s = calloc(1, sizeof *s);
    if (s == NULL) return -ENOMEM;
    if (prefix == NULL) prefix = "";
    s->pool = pool;
    s->loop = loop;
    s->prefix = strdup(prefix);
    s->prefix_len = strlen(prefix);
    s->max_value_bytes = max_value_bytes;
    /* Without it reads are merely as before (no read-your-writes wait). */
    s->watch_ok = redis_sub_watch_init(&s->watch) == 0;
    s->channel_len = s->prefix_len + strlen("invalidate");
    s->channel = malloc(s->channel_len + 1);
    if (s->prefix == NULL || s->channel == NULL) {
        store_redis_destroy(s);
        return -ENOMEM;
    }
    snprintf(s->channel, s->channel_len + 1, "%sinvalidate", prefix);
    /* On a Redis Cluster, pub/sub lives on the master of the {inv} slot, where
     * the sequenced invalidation script publishes too (docs/design.md, "Redis
     * Cluster and Sentinel"). */
    char inv[600];
    int n = snprintf(inv, sizeof inv, "%s{inv}:seq", prefix);
    if (n > 0 && (size_t)n < sizeof inv) redis_pool_set_pubsub_key(pool, inv, (size_t)n);
    uint64_t id;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id)
        id = (uint64_t)clock_mono_ms() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() ^ (uintptr_t)s;
    snprintf(s->instance_id, sizeof s->instance_id, "%016llx", (unsigned long long)id);
    *out = s;
    return 0;
}

void store_redis_destroy(struct store_redis *s)
{
    if (s == NULL) return;
    if (s->sub) redis_pool_unsubscribe(s->pool, s->sub);
    if (s->watch_ok) redis_sub_watch_destroy(&s->watch);
    free(s->prefix);
    free(s->channel);
    free(s);
}

void store_redis_get_stats(const struct store_redis *s, struct store_redis_stats *out)
{
    struct store_redis *m = (struct store_redis *)s;
    out->hits = atomic_load(&m->hits);
    out->misses = atomic_load(&m->misses);
    out->errors = atomic_load(&m->errors);
    out->decode_failures = atomic_load(&m->decode_failures);
    out->stores = atomic_load(&m->stores);
    out->too_big = atomic_load(&m->too_big);
    out->invalidations_sent = atomic_load(&m->invalidations_sent);
    out->invalidations_received = atomic_load(&m->invalidations_received);
}

const char *store_redis_instance_id(const struct store_redis *s) { return s->instance_id; }
