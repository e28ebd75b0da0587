/* inval_sync.c - see inval_sync.h.
 *
 * Invalidation bookkeeping in Redis (cache entries are under <prefix>c:, see
 * store_redis.h; nothing here can be named by a cache key or a purge):
 *
 *   <prefix>{inv}:seq    hash {epoch, seq}: the global sequence and the id of
 *                        the epoch it belongs to.  Created (epoch = a random id
 *                        from the instance that finds it missing, seq = wall
 *                        ms x 1000) whenever it is missing, so a FLUSHALL or a
 *                        restart without persistence starts a new epoch whose
 *                        sequences are above every earlier one.  The script
 *                        never hands out a sequence at or below the caller's
 *                        current one.
 *   <prefix>{inv}:p      hash prefix -> seq of its last invalidation
 *   <prefix>{inv}:t      hash tag -> seq
 *   <prefix>{inv}:floor  the folded floor (inval_index.h)
 *
 * Published records: "<instance id>:<P|T><epoch>:<seq>:<prefix or tag>".
 * Everything read back (records, floor, sequence, epoch, messages) is
 * validated (inval_index_parse_seq): a malformed or implausible value is
 * refused and logged, never applied.  An instance that sees a new epoch logs
 * it once and clears its memory tier (what it held was checked against
 * sequences of the lost epoch).  An invalidation Redis refuses (an error
 * reply: OOM under noeviction, NOPERM) is kept and replayed like one made
 * while Redis was down. */
#include "inval_sync.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_tiers.h"
#include "inval_index.h"
#include "io_loop.h"
#include "log.h"
#include "redis_pool.h"
#include "stats.h"
#include "store_l1.h"
#include "store_redis.h"

/* Completion tracking for inval_sync_after: every task sent gets the next id;
 * done[] marks finished ids (a ring), low is the lowest unfinished one. */
#define DONE_RING 65536

struct inval_barrier {
    struct gateway *gw;
    inval_sync_done_fn fn;
    void *arg;
    uint64_t target; /* fires once every id <= target finished */
    struct io_timer *timer;
    struct inval_barrier *next;
};

struct inval_sync {
    /* The Redis tier is offered (inval_sync_ready) only while this instance
     * knows every invalidation record: after a records sync that began once
     * the channel was subscribed, and again after each re-subscription's sync.
     * Any thread reads it; the loop thread writes it. */
    atomic_bool ready;
    bool sync_started; /* a records sync was sent since start */
    bool watching; /* sync_watch is armed (while not ready) */
    int64_t waiting_since_ms; /* sync_watch: Redis answers, the records are not read yet */
    int retry_ms; /* the next failed sync is sent again after this (backs off) */
    uint64_t round; /* the current records sync; older answers are ignored */
    struct sync_round *retry;      /* the failed round waiting on retry_timer, or NULL */
    struct io_timer *retry_timer;
    uint64_t folds_persisted; /* folds already written to Redis */
    uint64_t issued; /* ids handed out (the last one) */
    uint64_t low; /* the lowest id not finished yet (issued + 1: none) */
    uint8_t done[DONE_RING];
    struct inval_barrier *barriers;
    /* Invalidations Redis did not take (down, stalled or refusing), replayed in
     * order when it answers again; bounded. */
    struct inval_task *pending_head, *pending_tail;
    size_t pending_n;
};

/* ---- remote invalidations (loop thread) ---- */

static void sync_records(struct gateway *gw);
static void persist_fold(struct gateway *gw);
static void replay_pending(struct gateway *gw);
static void first_sync_task(void *arg);
static void watch_start(struct gateway *gw);

#define INV_SEQ "{inv}:seq"
#define INV_PREFIXES "{inv}:p"
#define INV_TAGS "{inv}:t"
#define INV_FLOOR "{inv}:floor"
#define REFUSAL_LOG_INTERVAL_MS 30000

/* Loop thread only: a warning at most every 30 s per kind of trouble. */
static bool log_now(int64_t *last_ms)
{
    int64_t now = clock_mono_ms();
    if (*last_ms != 0 && now - *last_ms < REFUSAL_LOG_INTERVAL_MS) return false;
    *last_ms = now;
    return true;
}

static int64_t hostile_logged_ms;

static void refuse_value(const char *what, const char *v, size_t len)
{
    if (log_now(&hostile_logged_ms))
        LOG_W("redis: refusing an invalid %s read back from Redis ('%.*s'): not applied", what,
              (int)(len < 40 ? len : 40), v);
    else
        LOG_D("redis: refusing an invalid %s ('%.*s')", what, (int)(len < 40 ? len : 40), v);
}

/* The epoch of a sequence seen in Redis.  A new one means Redis lost its
 * bookkeeping: what the memory tier holds was checked against the old one. */
static void check_epoch(struct gateway *gw, const char *epoch, size_t len)
{
    int rc = inval_index_note_epoch(gw->inval, epoch, len);
    if (rc < 0) {
        refuse_value("invalidation epoch", epoch, len);
    } else if (rc > 0) {
        LOG_W("Redis invalidation bookkeeping was reset (FLUSHALL, or a restart without "
              "persistence): new epoch %.*s; clearing the memory tier",
              (int)len, epoch);
        if (gw->l1) store_l1_clear(gw->l1);
    }
}

static int64_t lower_logged_ms;

/* A sequence from another instance below what this one has seen (it made
 * invalidations locally while Redis was away, or Redis went back): applying
 * it as it is could leave entries filled since then valid, so it counts as
 * "everything up to now". */
static uint64_t at_least_current(struct gateway *gw, uint64_t seq)
{
    uint64_t cur = inval_index_current(gw->inval);
    if (seq > cur) return seq;
    if (log_now(&lower_logged_ms))
        LOG_W("redis: invalidation sequence %llu is not above this instance's %llu: applied as "
              "%llu",
              (unsigned long long)seq, (unsigned long long)cur, (unsigned long long)cur + 1);
    return cur + 1;
}

static void on_remote_invalidation(void *arg, char kind, const char *key, size_t len)
{
    struct gateway *gw = arg;
    if (gw->l1 == NULL) return;
    switch (kind) {
    case INVAL_KEY:
        store_l1_delete(gw->l1, key, len);
        break;
    case INVAL_KEY_PREFIX:
        store_l1_delete_prefix(gw->l1, key, len);
        break;
    case INVAL_PREFIX:
    case INVAL_TAG: {
        /* "<epoch>:<seq>:<prefix or tag>", all untrusted */
        const char *c1 = memchr(key, ':', len);
        const char *c2 = c1 ? memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - key)) : NULL;
        uint64_t seq;
        if (c2 == NULL || !inval_index_epoch_valid(key, (size_t)(c1 - key)) ||
            inval_index_parse_seq(c1 + 1, (size_t)(c2 - c1 - 1), &seq) != 0 ||
            c2 + 1 == key + len) {
            refuse_value("invalidation message", key, len);
            break;
        }
        check_epoch(gw, key, (size_t)(c1 - key));
        seq = at_least_current(gw, seq);
        const char *str = c2 + 1;
        size_t slen = len - (size_t)(c2 + 1 - key);
        /* The record makes the entries unreachable at once; their memory is
         * reclaimed by LRU and by reads that meet them (no walk here). */
        if (kind == INVAL_PREFIX) {
            inval_index_note_prefix(gw->inval, str, slen, seq);
        } else {
            inval_index_note_tag(gw->inval, str, slen, seq);
        }
        persist_fold(gw);
        break;
    }
    case INVAL_RESYNC:
        /* Messages may have been missed while unsubscribed: until the records
         * are read again, an entry in Redis may be one a missed record covers,
         * so the Redis tier is not used (memory and upstream answer). */
        LOG_I("invalidation channel re-established: clearing the memory tier");
        atomic_store(&gw->inval_sync->ready, false);
        watch_start(gw);
        store_l1_clear(gw->l1);
        sync_records(gw);
        replay_pending(gw);
        break;
    case INVAL_SUBSCRIBED:
        /* From now on every record reaches us: a sync that starts now leaves
         * nothing out (docs/design.md, "Invalidation protocol"). */
        sync_records(gw);
        replay_pending(gw);
        break;
    default:
        break;
    }
}

/* ---- invalidation records in Redis (layout at the top) ---- */

static void redis_name(const struct gateway *gw, const char *suffix, char *out, size_t len)
{
    snprintf(out, len, "%s%s", gw->cfg->redis_prefix ? gw->cfg->redis_prefix : "", suffix);
}

/* One records sync: four reads (the sequence's epoch, the prefix and tag
 * records, the floor).  When all four are answered, the instance knows every
 * record made before the sync began and the Redis tier is offered; when one
 * was not (a timeout, a lost connection, a redirect that found no node), the
 * sync is sent again, and until then the Redis tier is not used. */
struct sync_round {
    struct gateway *gw;
    uint64_t id;
    int pending;
    bool failed;
};

#define SYNC_RETRY_MIN_MS 200
#define SYNC_RETRY_MAX_MS 5000

static int64_t sync_refused_logged_ms;

static void sync_retry(void *arg)
{
    struct sync_round *r = arg;
    struct gateway *gw = r->gw;
    uint64_t id = r->id;
    if (gw->inval_sync != NULL && gw->inval_sync->retry == r) gw->inval_sync->retry = NULL;
    free(r);
    if (gw->inval_sync != NULL && gw->inval_sync->round == id) sync_records(gw);
}

/* A part of round r is answered (failed: it was not). */
static void sync_part_done(struct sync_round *r, bool failed)
{
    if (failed) r->failed = true;
    if (--r->pending > 0) return;
    struct inval_sync *is = r->gw->inval_sync;
    if (is == NULL || is->round != r->id) {
        free(r); /* a newer sync replaced it */
        return;
    }
    if (r->failed) {
        if (is->retry_ms < SYNC_RETRY_MIN_MS) is->retry_ms = SYNC_RETRY_MIN_MS;
        LOG_D("redis: the invalidation records sync was not answered: again in %d ms",
              is->retry_ms);
        /* One round waits for its retry at a time; inval_sync_stop frees it when the loop
         * stopped first. */
        if (is->retry != NULL) {
            io_timer_cancel(r->gw->loop, is->retry_timer);
            free(is->retry);
            is->retry = NULL;
        }
        is->retry_timer = io_timer_start(r->gw->loop, (uint64_t)is->retry_ms, sync_retry, r);
        if (is->retry_timer == NULL) free(r);
        else is->retry = r;
        is->retry_ms = is->retry_ms * 2 > SYNC_RETRY_MAX_MS ? SYNC_RETRY_MAX_MS : is->retry_ms * 2;
        return;
    }
    if (!atomic_load(&is->ready))
        LOG_D("redis: invalidation records synced (%zu held): the Redis tier is in use",
              inval_index_records(r->gw->inval));
    is->retry_ms = SYNC_RETRY_MIN_MS;
    atomic_store(&is->ready, true);
    free(r);
}

/* An error reply is an answer (NOPERM, WRONGTYPE: nothing better will come by
 * asking again); it is logged.  No reply (err) is not. */
static bool sync_reply_failed(const redisReply *reply, const char *err, const char *what)
{
    if (err != NULL || reply == NULL) return true;
    if (reply->type == REDIS_REPLY_ERROR && log_now(&sync_refused_logged_ms))
        LOG_W("redis: reading the invalidation %s was refused (%.150s): not applied", what,
              reply->str);
    return false;
}

static void on_records(struct sync_round *r, const redisReply *reply, const char *err, bool tags)
{
    struct gateway *gw = r->gw;
    bool failed = sync_reply_failed(reply, err, tags ? "tag records" : "prefix records");
    if (!failed && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            const redisReply *k = reply->element[i], *v = reply->element[i + 1];
            if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
            uint64_t seq;
            if (inval_index_parse_seq(v->str, v->len, &seq) != 0) {
                refuse_value(tags ? "tag record" : "prefix record", v->str, v->len);
                continue;
            }
            if (tags) inval_index_note_tag(gw->inval, k->str, k->len, seq);
            else inval_index_note_prefix(gw->inval, k->str, k->len, seq);
        }
    }
    sync_part_done(r, failed);
}

static void on_floor(void *arg, const redisReply *reply, const char *err)
{
    struct sync_round *r = arg;
    bool failed = sync_reply_failed(reply, err, "floor");
    uint64_t floor;
    if (!failed && reply->type == REDIS_REPLY_STRING) {
        if (inval_index_parse_seq(reply->str, reply->len, &floor) != 0)
            refuse_value("invalidation floor", reply->str, reply->len);
        else
            inval_index_raise_floor(r->gw->inval, floor);
    }
    sync_part_done(r, failed);
}

/* HMGET {inv}:seq epoch seq: the epoch and the global sequence now. */
static void on_seq_state(void *arg, const redisReply *reply, const char *err)
{
    struct sync_round *r = arg;
    bool failed = sync_reply_failed(reply, err, "sequence");
    if (!failed && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        const redisReply *e = reply->element[0], *q = reply->element[1];
        uint64_t seq;
        if (e->type != REDIS_REPLY_STRING || q->type != REDIS_REPLY_STRING) {
            /* none yet */
        } else if (inval_index_parse_seq(q->str, q->len, &seq) != 0) {
            refuse_value("invalidation sequence", q->str, q->len);
        } else {
            /* The sequence itself only needs to be sane: the records carry
             * what matters, and the script never goes below the caller's
             * current. */
            check_epoch(r->gw, e->str, e->len);
        }
    }
    sync_part_done(r, failed);
}

static void ignore_reply(void *arg, const redisReply *reply, const char *err) {}

/* Loop thread: after this instance folded its records into a floor, the
 * floor replaces the records in Redis too (bounded there as well). */
static void persist_fold(struct gateway *gw)
{
    uint64_t folds = inval_index_folds(gw->inval);
    if (folds == gw->inval_sync->folds_persisted || gw->l2 == NULL) return;
    char floor[32], name[512], p[512], t[512];
    snprintf(floor, sizeof floor, "%llu", (unsigned long long)inval_index_floor(gw->inval));
    redis_name(gw, INV_FLOOR, name, sizeof name);
    redis_name(gw, INV_PREFIXES, p, sizeof p);
    redis_name(gw, INV_TAGS, t, sizeof t);
    /* The floor only ever rises: a Lua script keeps the larger value. */
    const char *argv[] = {"EVAL",
                          "local f = tonumber(redis.call('GET', KEYS[1]) or '0') "
                          "if tonumber(ARGV[1]) > f then redis.call('SET', KEYS[1], ARGV[1]) end "
                          "redis.call('DEL', KEYS[2], KEYS[3]) return 1",
                          "3", name, p, t, floor};
    size_t lens[7];
    for (int i = 0; i < 7; i++) lens[i] = strlen(argv[i]);
    if (redis_pool_command(gw->redis, 7, argv, lens, ignore_reply, NULL) == 0) {
        gw->inval_sync->folds_persisted = folds;
        LOG_W("invalidation records reached %d: folded into a floor (entries filled before "
              "sequence %s are invalid)",
              INVAL_INDEX_MAX_RECORDS, floor);
    }
}

static void on_prefix_records(void *arg, const redisReply *reply, const char *err)
{
    on_records(arg, reply, err, false);
}

static void on_tag_records(void *arg, const redisReply *reply, const char *err)
{
    on_records(arg, reply, err, true);
}

/* One read of round r; one that cannot be sent counts as not answered. */
static void sync_send(struct sync_round *r, int argc, const char **argv, const size_t *lens,
                      redis_reply_fn fn)
{
    r->pending++;
    if (redis_pool_command(r->gw->redis, argc, argv, lens, fn, r) != 0) sync_part_done(r, true);
}

/* Loop thread: loads the records other instances made while we were away (a
 * new round: the answers of an older one still in flight are ignored). */
static void sync_records(struct gateway *gw)
{
    struct sync_round *r = malloc(sizeof *r);
    if (r == NULL) return;
    struct inval_sync *is = gw->inval_sync;
    is->sync_started = true;
    /* pending starts at 1 for the sending itself, so that an answer that
     * comes at once (or a send that fails) cannot finish the round early. */
    *r = (struct sync_round){.gw = gw, .id = ++is->round, .pending = 1};
    char name[512];
    redis_name(gw, INV_SEQ, name, sizeof name);
    const char *hm[4] = {"HMGET", name, "epoch", "seq"};
    size_t hm_lens[4] = {5, strlen(name), 5, 3};
    sync_send(r, 4, hm, hm_lens, on_seq_state);
    const char *argv[2] = {"HGETALL", name};
    size_t lens[2] = {7, 0};
    redis_name(gw, INV_PREFIXES, name, sizeof name);
    lens[1] = strlen(name);
    sync_send(r, 2, argv, lens, on_prefix_records);
    redis_name(gw, INV_TAGS, name, sizeof name);
    lens[1] = strlen(name);
    sync_send(r, 2, argv, lens, on_tag_records);
    const char *get[2] = {"GET", name};
    size_t get_lens[2] = {3, 0};
    redis_name(gw, INV_FLOOR, name, sizeof name);
    get_lens[1] = strlen(name);
    sync_send(r, 2, get, get_lens, on_floor);
    sync_part_done(r, false);
}

/* Loop thread, every 20 ms while the Redis tier is not offered.  The sync
 * normally starts when the channel is first subscribed (INVAL_SUBSCRIBED)
 * and is answered a round trip later.  Two bounds keep a Redis that cannot
 * do either from keeping the tier away for good (as before the sync gated
 * it): when Redis has answered for the connect timeout without the channel
 * coming up (SUBSCRIBE refused, its node away), the records are read without
 * it; when it has answered for the connect timeout plus the command timeout
 * without the records being read (every sync failed: its node is down, or a
 * broken server's replies), the tier is offered anyway, with a warning, and
 * the sync keeps being retried in the background. */
#define SYNC_WATCH_MS 20

static void sync_watch(void *arg)
{
    struct gateway *gw = arg;
    struct inval_sync *is = gw->inval_sync;
    if (is == NULL) return;
    if (atomic_load(&is->ready)) {
        is->watching = false;
        return;
    }
    int64_t now = clock_mono_ms();
    if (!redis_pool_available(gw->redis)) {
        is->waiting_since_ms = 0;
    } else {
        if (is->waiting_since_ms == 0) is->waiting_since_ms = now;
        int64_t waited = now - is->waiting_since_ms;
        const struct config *cfg = gw->cfg;
        int connect_ms = cfg && cfg->redis_connect_timeout_ms > 0 ? cfg->redis_connect_timeout_ms
                                                                  : 2000;
        int op_ms = cfg && cfg->redis_timeout_ms > 0 ? cfg->redis_timeout_ms : 2000;
        if (!is->sync_started && waited >= connect_ms) {
            LOG_W("redis: the invalidation channel is not subscribed %d ms after Redis "
                  "answered: reading the invalidation records without it",
                  connect_ms);
            sync_records(gw);
            replay_pending(gw);
        } else if (waited >= connect_ms + op_ms) {
            LOG_W("redis: the invalidation records could not be read in %d ms: using the Redis "
                  "tier without them (entries another instance invalidated may be served; this "
                  "instance's fills may be refused by the others) until they are",
                  connect_ms + op_ms);
            atomic_store(&is->ready, true);
            is->watching = false;
            return;
        }
    }
    if (io_timer_start(gw->loop, SYNC_WATCH_MS, sync_watch, gw) == NULL) is->watching = false;
}

static void watch_start(struct gateway *gw)
{
    struct inval_sync *is = gw->inval_sync;
    is->waiting_since_ms = 0;
    if (is->watching) return;
    is->watching = true;
    sync_watch(gw);
}

/* ---- invalidation ---- */

struct inval_task {
    struct gateway *gw;
    struct inval_task *next; /* in the pending list */
    uint64_t id;             /* for inval_sync_after; 0: not tracked */
    char kind;               /* enum inval_kind */
    bool drop_l1_after;      /* a raced fill's: the memory tier again once the DEL is done */
    size_t len;
    char key[];
};

enum { MAX_PENDING_INVALIDATIONS = 10000 };

static void retry_pending(void *arg);

static void barrier_fire(struct inval_barrier *b)
{
    if (b->timer) io_timer_cancel(b->gw->loop, b->timer);
    b->fn(b->arg);
    free(b);
}

/* Loop thread: the barriers whose every invalidation finished. */
static void barriers_check(struct gateway *gw)
{
    struct inval_sync *is = gw->inval_sync;
    struct inval_barrier **pp = &is->barriers;
    while (*pp) {
        struct inval_barrier *b = *pp;
        if (b->target < is->low) {
            *pp = b->next;
            barrier_fire(b);
        } else {
            pp = &b->next;
        }
    }
}

/* Loop thread: t is sent now; it gets an id (none if too many are in flight
 * to track: a barrier then does not wait for it). */
static void track_start(struct inval_task *t)
{
    struct inval_sync *is = t->gw->inval_sync;
    if (is->low == 0) is->low = 1;
    if (is->issued + 1 - is->low >= DONE_RING) {
        t->id = 0;
        return;
    }
    t->id = ++is->issued;
    is->done[t->id % DONE_RING] = 0;
}

/* Loop thread: t's outcome is known (taken, refused, deferred, dropped). */
static void track_finish(struct inval_task *t)
{
    struct inval_sync *is = t->gw->inval_sync;
    if (t->id == 0) return;
    is->done[t->id % DONE_RING] = 1;
    t->id = 0;
    while (is->low <= is->issued && is->done[is->low % DONE_RING]) is->low++;
    if (is->barriers) barriers_check(t->gw);
}

/* Loop thread: Redis did not take t; keep it for when Redis is back, so the
 * entries it covers in Redis (and on other instances) are dropped then. */
static void defer(struct inval_task *t)
{
    struct gateway *gw = t->gw;
    track_finish(t);
    if (gw->inval_sync->pending_n >= MAX_PENDING_INVALIDATIONS) {
        struct inval_task *old = gw->inval_sync->pending_head;
        gw->inval_sync->pending_head = old->next;
        if (gw->inval_sync->pending_head == NULL) gw->inval_sync->pending_tail = NULL;
        gw->inval_sync->pending_n--;
        LOG_W("redis down: %d invalidations pending, dropping the oldest ('%s')",
              MAX_PENDING_INVALIDATIONS, old->key);
        free(old);
    }
    t->next = NULL;
    bool was_empty = gw->inval_sync->pending_head == NULL;
    if (gw->inval_sync->pending_tail) gw->inval_sync->pending_tail->next = t;
    else gw->inval_sync->pending_head = t;
    gw->inval_sync->pending_tail = t;
    gw->inval_sync->pending_n++;
    /* Besides the re-subscription after an outage, poll: a timeout without
     * an outage never re-subscribes. */
    if (was_empty) io_timer_start(gw->loop, 1000, retry_pending, gw);
}

/* One round trip assigns the global sequence, records it and tells the other
 * instances: the invalidation is complete when this returns, whatever the
 * number of keys it covers.  KEYS: {inv}:seq, the records hash, the channel.
 * ARGV: prefix or tag, "<instance id>:<kind>", a fresh epoch id, the base of a
 * fresh sequence, the caller's current sequence.  Numbers are formatted with
 * %d: Lua 5.1 would print 1.7e15 as a float. */
static const char SEQUENCED_SCRIPT[] =
    "local st = redis.call('HMGET', KEYS[1], 'epoch', 'seq') "
    "local e, s = st[1], tonumber(st[2]) "
    "if not e or not s then e = ARGV[3] s = tonumber(ARGV[4]) end "
    "local cur = tonumber(ARGV[5]) "
    "if s < cur then s = cur end "
    "s = s + 1 "
    "local ss = string.format('%d', s) "
    "redis.call('HSET', KEYS[1], 'epoch', e, 'seq', ss) "
    "redis.call('HSET', KEYS[2], ARGV[1], ss) "
    "redis.call('PUBLISH', ARGV[6], ARGV[2] .. e .. ':' .. ss .. ':' .. ARGV[1]) "
    "return {e, ss}";

static int64_t refused_logged_ms;

/* ---- the delivery fence (read-your-writes) ----
 *
 * Redis answers PUBLISH (or the script that publishes) before it has written
 * the message to the subscribers: the publisher's reply and the subscribers'
 * messages are all queued, then written one client after the other before
 * Redis next waits for input (beforeSleep), the publisher's first.  On a busy
 * machine Redis can be preempted between those writes (often by the very
 * thread its reply woke) for milliseconds, long enough for our client to read
 * through another instance whose socket does not have the message yet.  A
 * command sent after the reply is read only once that round of writes is
 * over, so its answer means every subscriber's socket has the message.  Only
 * while a write's answer waits (a barrier is armed): one more round trip, to
 * the node of the {inv} slot, where the channel lives on a cluster
 * (docs/design.md, "Read-your-writes"). */
static void fence_done(void *arg, const redisReply *reply, const char *err)
{
    (void)reply;
    (void)err; /* failed or refused: the message was published all the same */
    struct inval_task *t = arg;
    track_finish(t);
    free(t);
}

/* Sends the fence for t (tracked); fence_done finishes it.  Returns 0 or < 0. */
static int fence_send(struct gateway *gw, struct inval_task *t)
{
    char seq_key[512];
    redis_name(gw, INV_SEQ, seq_key, sizeof seq_key);
    const char *argv[] = {"EXISTS", seq_key};
    size_t lens[] = {6, strlen(seq_key)};
    return redis_pool_command(gw->redis, 2, argv, lens, fence_done, t);
}

/* t's invalidation is published: finish it now, or once the fence answered. */
static void finish_published(struct inval_task *t)
{
    struct gateway *gw = t->gw;
    if (t->id != 0 && gw->inval_sync->barriers != NULL && fence_send(gw, t) == 0) return;
    track_finish(t);
    free(t);
}

static void on_sequenced(void *arg, const redisReply *reply, const char *err)
{
    struct inval_task *t = arg;
    struct gateway *gw = t->gw;
    if (err) {
        LOG_W("redis: invalidation of %s '%s' not recorded yet (%s): retried when Redis is back",
              t->kind == INVAL_PREFIX ? "prefix" : "tag", t->key, err);
        defer(t);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        /* OOM under noeviction, NOPERM on EVAL, ...: Redis may take it later. */
        if (log_now(&refused_logged_ms))
            LOG_W("redis: invalidation of %s '%s' refused by Redis (%.150s): applied here, kept "
                  "and retried",
                  t->kind == INVAL_PREFIX ? "prefix" : "tag", t->key, reply->str);
        else
            LOG_D("redis: invalidation refused (%.150s): kept", reply->str);
        defer(t);
        return;
    }
    uint64_t seq = 0;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING ||
        !inval_index_epoch_valid(reply->element[0]->str, reply->element[0]->len) ||
        inval_index_parse_seq(reply->element[1]->str, reply->element[1]->len, &seq) != 0) {
        refuse_value("invalidation script reply", "", 0);
    } else {
        check_epoch(gw, reply->element[0]->str, reply->element[0]->len);
        if (t->kind == INVAL_PREFIX) {
            inval_index_note_prefix(gw->inval, t->key, t->len, seq);
            /* Reclaim the space in the background (SCAN + UNLINK batches). */
            store_redis_delete_prefix(gw->l2, t->key, t->len);
        } else {
            inval_index_note_tag(gw->inval, t->key, t->len, seq);
        }
        persist_fold(gw);
    }
    finish_published(t);
}

/* The PUBLISH of a key invalidation was answered (or failed: the DEL is done,
 * and the other instances' copies expire or are dropped on a resync). */
static void on_key_published(void *arg, int err)
{
    struct inval_task *t = arg;
    if (err != 0) {
        LOG_D("redis: publishing a key invalidation failed: %s", strerror(-err));
        track_finish(t);
        free(t);
        return;
    }
    finish_published(t);
}

/* The DEL of a key invalidation: once Redis took it, the other instances are
 * told; if Redis refused it (NOPERM, ...) or did not answer, it is kept and
 * replayed like the sequenced ones. */
static void on_key_deleted(void *arg, int err)
{
    struct inval_task *t = arg;
    struct gateway *gw = t->gw;
    if (err != 0) {
        if (err == -EIO && log_now(&refused_logged_ms))
            LOG_W("redis: invalidation of a key refused by Redis: applied here, kept and retried");
        else
            LOG_D("redis: invalidation of a key not taken (%s): kept", strerror(-err));
        /* The entry may still be in Redis: a record keeps this instance from
         * reading it back meanwhile (it covers keys starting with this one too:
         * a few extra misses, never a stale answer). */
        inval_index_note_prefix(gw->inval, t->key, t->len, inval_index_next_local(gw->inval));
        defer(t);
        return;
    }
    /* What a read took from Redis before this DEL (the raced fill's value). */
    if (t->drop_l1_after && gw->l1) store_l1_delete(gw->l1, t->key, t->len);
    if (store_redis_publish_invalidation_then(gw->l2, INVAL_KEY, t->key, t->len, on_key_published,
                                              t) != 0) {
        track_finish(t);
        free(t);
    }
}

static void inval_task_run(void *arg)
{
    struct inval_task *t = arg;
    struct gateway *gw = t->gw;
    if (gw->l2 == NULL) {
        free(t);
        return;
    }
    track_start(t);
    if (t->kind == INVAL_KEY) {
        int rc = store_redis_delete_then(gw->l2, t->key, t->len, on_key_deleted, t);
        if (rc == -ENOTCONN) {
            defer(t);
        } else if (rc < 0) {
            LOG_D("redis: invalidation of a key not sent: %s", strerror(-rc));
            track_finish(t);
            free(t);
        }
        return;
    }
    char seq_key[512], rec_key[512], channel[512], tagged[64], epoch[20], base[24], cur[24];
    redis_name(gw, INV_SEQ, seq_key, sizeof seq_key);
    redis_name(gw, t->kind == INVAL_PREFIX ? INV_PREFIXES : INV_TAGS, rec_key, sizeof rec_key);
    redis_name(gw, "invalidate", channel, sizeof channel);
    snprintf(tagged, sizeof tagged, "%s:%c", store_redis_instance_id(gw->l2), t->kind);
    /* Used only if the bookkeeping is missing: a new epoch. */
    snprintf(epoch, sizeof epoch, "%llx%s",
             (unsigned long long)(clock_wall_ms() & 0xffffffffffffULL),
             store_redis_instance_id(gw->l2) + 12);
    snprintf(base, sizeof base, "%llu", (unsigned long long)inval_index_seq_base());
    snprintf(cur, sizeof cur, "%llu", (unsigned long long)inval_index_current(gw->inval));
    /* The channel is an argument, not a key: on a Redis Cluster every key of
     * a script must share one slot (the {inv} tag), and a channel is no key. */
    const char *argv[] = {"EVAL", SEQUENCED_SCRIPT, "2",  seq_key, rec_key, t->key,
                          tagged, epoch,            base, cur,     channel};
    size_t lens[11];
    for (int i = 0; i < 11; i++) lens[i] = i == 5 ? t->len : strlen(argv[i]);
    if (redis_pool_command(gw->redis, 11, argv, lens, on_sequenced, t) != 0) {
        LOG_W("redis unavailable: invalidation of '%s' applied here now, in Redis when it is back",
              t->key);
        defer(t);
    }
}

/* Loop thread: Redis is back: send what it missed, in order. */
static void replay_pending(struct gateway *gw)
{
    struct inval_task *t = gw->inval_sync->pending_head;
    size_t n = gw->inval_sync->pending_n;
    gw->inval_sync->pending_head = gw->inval_sync->pending_tail = NULL;
    gw->inval_sync->pending_n = 0;
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
    if (gw->inval_sync->pending_head == NULL) return;
    if (redis_pool_available(gw->redis)) replay_pending(gw);
    else io_timer_start(gw->loop, 1000, retry_pending, gw);
}

void inval_sync_stop(struct gateway *gw)
{
    if (gw->inval_sync == NULL) return;
    struct inval_task *t = gw->inval_sync->pending_head;
    while (t) {
        struct inval_task *next = t->next;
        free(t);
        t = next;
    }
    while (gw->inval_sync->barriers) {
        struct inval_barrier *b = gw->inval_sync->barriers;
        gw->inval_sync->barriers = b->next;
        free(b); /* the loop has stopped: its timers with it */
    }
    free(gw->inval_sync->retry); /* a failed records sync waiting for its retry */
    free(gw->inval_sync);
    gw->inval_sync = NULL;
}

static void post_invalidation(struct gateway *gw, char kind, const char *key)
{
    if (gw->l2 == NULL) return; /* memory only: nothing else to tell */
    size_t len = strlen(key);
    struct inval_task *t = malloc(sizeof *t + len + 1);
    if (t == NULL) {
        LOG_E("out of memory: invalidation of %s not propagated", key);
        return;
    }
    t->gw = gw;
    t->id = 0;
    t->kind = kind;
    t->drop_l1_after = false;
    t->len = len;
    memcpy(t->key, key, len + 1);
    if (io_loop_post(gw->loop, inval_task_run, t) != 0) free(t);
}

/* Loop thread: one of our fills may have reached Redis after an invalidation
 * of its key (store_redis_on_raced_fill): the key is invalidated again, the
 * memory tier once more after the DEL (a read may have brought the value
 * back meanwhile), and the other instances told (docs/design.md,
 * "Read-your-writes"). */
static void on_raced_fill(void *arg, const char *key, size_t len)
{
    struct gateway *gw = arg;
    struct inval_task *t = malloc(sizeof *t + len + 1);
    if (t == NULL) return;
    t->gw = gw;
    t->next = NULL;
    t->id = 0;
    t->kind = INVAL_KEY;
    t->drop_l1_after = true;
    t->len = len;
    memcpy(t->key, key, len);
    t->key[len] = '\0';
    if (gw->l1) store_l1_delete(gw->l1, key, len);
    inval_task_run(t);
}

void inval_sync_invalidate_key(struct gateway *gw, const char *key)
{
    stats_count_invalidation();
    if (gw->l1) store_l1_delete(gw->l1, key, strlen(key));
    post_invalidation(gw, INVAL_KEY, key);
    LOG_D("invalidated key %s", key);
}

void inval_sync_invalidate_prefix(struct gateway *gw, const char *prefix)
{
    stats_count_invalidation();
    /* Recorded locally first, so this instance's next read already misses. */
    inval_index_note_prefix(gw->inval, prefix, strlen(prefix), inval_index_next_local(gw->inval));
    post_invalidation(gw, INVAL_PREFIX, prefix);
    LOG_D("invalidated prefix %s", prefix);
}

void inval_sync_invalidate_tag(struct gateway *gw, const char *tag)
{
    stats_count_invalidation();
    inval_index_note_tag(gw->inval, tag, strlen(tag), inval_index_next_local(gw->inval));
    post_invalidation(gw, INVAL_TAG, tag);
    LOG_D("invalidated tag %s", tag);
}


static void first_sync_task(void *arg) { watch_start(arg); }

/* ---- read-your-writes barrier ---- */

static void barrier_timeout(void *arg)
{
    struct inval_barrier *b = arg;
    struct inval_sync *is = b->gw->inval_sync;
    b->timer = NULL;
    for (struct inval_barrier **pp = &is->barriers; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    LOG_D("redis: a write's answer waited the Redis timeout for its invalidations");
    barrier_fire(b);
}

/* Loop thread: runs after every invalidation posted before it was sent (the
 * loop runs posted tasks in order), so issued covers them all. */
static void barrier_arm(void *arg)
{
    struct inval_barrier *b = arg;
    struct inval_sync *is = b->gw->inval_sync;
    if (is == NULL || b->gw->l2 == NULL) {
        barrier_fire(b);
        return;
    }
    if (is->low > is->issued) {
        /* Every invalidation is answered already (the writer was held off
         * between issuing them and asking for this barrier): Redis may still
         * be writing the messages to the subscribers.  A fence of its own,
         * tracked like an invalidation, so the usual bound applies. */
        struct inval_task *t = calloc(1, sizeof *t + 1);
        if (t == NULL) {
            barrier_fire(b);
            return;
        }
        t->gw = b->gw;
        track_start(t);
        if (t->id == 0 || fence_send(b->gw, t) != 0) {
            track_finish(t);
            free(t);
            barrier_fire(b);
            return;
        }
    }
    b->target = is->issued;
    int ms = b->gw->cfg && b->gw->cfg->redis_timeout_ms > 0 ? b->gw->cfg->redis_timeout_ms : 2000;
    b->timer = io_timer_start(b->gw->loop, (uint64_t)ms, barrier_timeout, b);
    b->next = is->barriers;
    is->barriers = b;
}

int inval_sync_after(struct gateway *gw, inval_sync_done_fn fn, void *arg)
{
    struct inval_barrier *b = calloc(1, sizeof *b);
    if (b == NULL) return -ENOMEM;
    b->gw = gw;
    b->fn = fn;
    b->arg = arg;
    if (io_loop_post(gw->loop, barrier_arm, b) != 0) {
        free(b);
        return -ENOMEM;
    }
    return 0;
}

bool inval_sync_ready(const struct gateway *gw)
{
    if (gw->l2 == NULL) return true;
    return gw->inval_sync != NULL && atomic_load(&gw->inval_sync->ready);
}

int inval_sync_start(struct gateway *gw)
{
    gw->inval_sync = calloc(1, sizeof *gw->inval_sync);
    if (gw->inval_sync == NULL) return -ENOMEM;
    if (gw->l2 == NULL) return 0;
    store_redis_on_raced_fill(gw->l2, on_raced_fill, gw);
    int rc = store_redis_on_invalidation(gw->l2, on_remote_invalidation, gw);
    if (rc == 0) rc = io_loop_post(gw->loop, first_sync_task, gw);
    return rc;
}
