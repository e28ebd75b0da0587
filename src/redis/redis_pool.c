/* redis_pool.c - see redis_pool.h.
 *
 * Each connection lives in a slot that owns its reconnect and health timers.
 * Pool-wide state (READY count, availability, the once-per-outage log) changes
 * only in slot_up / slot_down.  Subscriptions are slots too, kept out of the
 * command rotation and out of availability.
 *
 * The struct itself is reference-counted (under a mutex) only because a DNS
 * helper thread may outlive redis_pool_destroy: destroy releases everything
 * else and the last reference frees the struct. */
#include "redis_pool.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "redis_cluster.h"
#include "tls.h"

#define POOL_DEFAULT_SIZE 10
#define POOL_DEFAULT_TIMEOUT_MS 2000
#define POOL_DEFAULT_HEALTH_S 30
#define POOL_DEFAULT_BACKOFF_MIN_MS 100
#define POOL_DEFAULT_BACKOFF_MAX_MS 5000
#define POOL_DEFAULT_MAX_PENDING 1024
#define POOL_DEFAULT_MAX_REPLY (64u * 1024 * 1024)
#define POOL_MAX_OUTPUT_BYTES (64u * 1024 * 1024)
#define POOL_RESOLVE_MIN_INTERVAL_MS 1000
#define POOL_ERR_LOG_INTERVAL_MS 30000
#define POOL_DEFAULT_BREAKER_THRESHOLD 5
#define POOL_DEFAULT_BREAKER_COOLDOWN_MS 1000
#define POOL_DEFAULT_BREAKER_COOLDOWN_MAX_MS 60000
#define POOL_ERR_KINDS (REDIS_CONN_ERR_AUTH + 1)

struct slot {
    struct redis_pool *p;
    struct redis_conn *conn;
    struct redis_sub *sub; /* non-NULL for a subscription's slot */
    bool ready;
    int backoff_ms;
    struct io_timer *reconnect_timer;
    struct io_timer *health_timer;
    bool ping_in_flight;
    int64_t ping_sent_us;
};

struct redis_sub {
    struct slot slot;
    struct redis_csub *csub; /* a router's subscription: nothing else is used */
    char *channel;
    size_t channel_len;
    redis_sub_message_fn on_message;
    redis_sub_state_fn on_state;
    void *arg;
    bool subscribed;
    bool had_gap; /* an attempt failed or a session dropped since the last SUBSCRIBE */
    bool refused; /* the last SUBSCRIBE was refused (logged once until one succeeds) */
    struct redis_sub *next;
};

struct redis_pool {
    struct redis_cluster *cluster; /* a router (redis_cluster.h): every call goes there */
    struct io_loop *loop;
    struct redis_conn_config cfg;
    char *host, *user, *password;
    bool tls;
    SSL_CTX *ssl_ctx;
    bool host_is_ip;

    struct slot *slots;
    int n_slots;
    int rr; /* round-robin cursor */
    int n_ready;
    struct redis_sub *subs;

    int retries;
    int64_t health_interval_ms;
    int backoff_min_ms, backoff_max_ms;
    uint64_t rng;

    bool started, stopped;
    bool ever_connected;
    bool outage_logged; /* "Redis connection failed" was logged for this outage */
    enum redis_conn_error outage_kind; /* the kind of failure that outage log named */

    /* Failures by kind (atomics: read by /metrics); rate-limited logging. */
    atomic_uint_fast64_t errs[POOL_ERR_KINDS];
    int64_t err_logged_ms[POOL_ERR_KINDS];
    uint64_t err_unlogged[POOL_ERR_KINDS];

    /* Circuit breaker (see the header).  State and deadline are atomics
     * because redis_pool_available reads them from any thread. */
    int breaker_threshold; /* <= 0: off */
    int breaker_cooldown_min_ms, breaker_cooldown_max_ms, breaker_cooldown_ms;
    int timeouts_in_row;
    atomic_int breaker; /* enum redis_breaker_state */
    atomic_int_fast64_t breaker_until_ms; /* OPEN: no probe before this */
    atomic_uint_fast64_t breaker_opens;

    atomic_bool available;
    atomic_int connected;
    atomic_int_fast64_t latency_us; /* < 0: never measured */

    /* Resolved addresses: written on the loop thread (or in create), and by
     * resolve_done under lock. */
    pthread_mutex_t lock;
    int refs; /* 1 for the owner + 1 per running resolver */
    bool destroyed; /* under lock */
    bool resolving; /* loop thread */
    int64_t last_resolve_ms;
    struct redis_addr addrs[REDIS_CONN_MAX_ADDRS];
    size_t n_addrs;
    char resolve_err[160];
};

/* One command in flight: kept until its final answer so it can be retried. */
struct pool_op {
    struct redis_pool *p;
    redis_reply_fn fn;
    void *arg;
    char *cmd;
    size_t cmd_len;
    int retries_left;
    bool is_ping;
    bool is_probe; /* the half-open breaker's one command */
    int64_t sent_us;
};

static void slot_connect(struct slot *s);
static void slot_down(struct slot *s, const char *reason, enum redis_conn_error kind);

/* ---- small helpers ---- */

static uint64_t pool_rand(struct redis_pool *p)
{
    /* xorshift64*: jitter only, not security. */
    p->rng ^= p->rng >> 12;
    p->rng ^= p->rng << 25;
    p->rng ^= p->rng >> 27;
    return p->rng * 2685821657736338717ULL;
}

/* Microseconds of the monotonic clock, for round trips shorter than 1 ms. */
static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void pool_unref(struct redis_pool *p)
{
    pthread_mutex_lock(&p->lock);
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&p->lock);
    if (!last) return;
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- DNS ---- */

/* Resolves host:port into addrs.  Returns the count, or 0 with err set. */
static size_t resolve(const char *host, int port, struct redis_addr *addrs, char *err,
                      size_t errlen)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host,
                 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return 0;
    }
    size_t n = 0;
    for (struct addrinfo *ai = res; ai && n < REDIS_CONN_MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof addrs[n].sa) continue;
        memcpy(&addrs[n].sa, ai->ai_addr, ai->ai_addrlen);
        addrs[n].len = ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    if (n == 0) snprintf(err, errlen, "cannot resolve %s: no address", host);
    return n;
}

struct resolve_job {
    struct redis_pool *p;
    struct io_loop *loop;
    char *host;
    int port;
    struct redis_addr addrs[REDIS_CONN_MAX_ADDRS];
    size_t n;
    char err[160];
};

static void resolve_job_free(struct resolve_job *j)
{
    free(j->host);
    free(j);
}

static void resolve_done(void *arg)
{
    struct resolve_job *j = arg;
    struct redis_pool *p = j->p;
    pthread_mutex_lock(&p->lock);
    if (!p->destroyed) {
        p->resolving = false;
        if (!p->stopped) {
            if (j->n > 0) {
                memcpy(p->addrs, j->addrs, j->n * sizeof j->addrs[0]);
                p->n_addrs = j->n;
                p->resolve_err[0] = '\0';
            } else if (p->n_addrs == 0) {
                /* Keep the last good addresses: a resolver hiccup must not
                 * stop us from reconnecting to a server that did not move. */
                memcpy(p->resolve_err, j->err, sizeof p->resolve_err);
            }
            if (j->n > 0)
                LOG_D("redis: resolved %s: %zu address(es)", j->host, j->n);
            else
                LOG_D("redis: %s", j->err);
        }
    }
    pthread_mutex_unlock(&p->lock);
    resolve_job_free(j);
    pool_unref(p);
}

static void *resolve_thread(void *arg)
{
    struct resolve_job *j = arg;
    struct redis_pool *p = j->p;
    j->n = resolve(j->host, j->port, j->addrs, j->err, sizeof j->err);
    /* The loop outlives the pool, not this thread: touch it only while the
     * pool is not destroyed, and keep destroy out while posting. */
    pthread_mutex_lock(&p->lock);
    int rc = p->destroyed ? -ESHUTDOWN : io_loop_post(j->loop, resolve_done, j);
    pthread_mutex_unlock(&p->lock);
    if (rc < 0) {
        resolve_job_free(j);
        pool_unref(p);
    }
    return NULL;
}

/* Starts a background re-resolution of a host name (not for IP literals). */
static void maybe_resolve(struct redis_pool *p)
{
    if (p->host_is_ip || p->resolving || p->stopped) return;
    int64_t now = clock_mono_ms();
    if (p->last_resolve_ms && now - p->last_resolve_ms < POOL_RESOLVE_MIN_INTERVAL_MS) return;
    struct resolve_job *j = calloc(1, sizeof *j);
    if (j == NULL) return;
    j->p = p;
    j->loop = p->loop;
    j->port = p->cfg.port;
    j->host = strdup(p->host);
    if (j->host == NULL) {
        free(j);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->refs++;
    pthread_mutex_unlock(&p->lock);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &attr, resolve_thread, j);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        LOG_D("redis: cannot start a resolver thread: %s", strerror(rc));
        resolve_job_free(j);
        pool_unref(p);
        return;
    }
    p->resolving = true;
    p->last_resolve_ms = now;
}

/* ---- error accounting ---- */

static const char *const ERR_NAMES[POOL_ERR_KINDS] = {
    "failure", "timeout", "protocol error", "refusal", "connection loss", "authentication refusal"};

/* Counts a failure; when log, warns at most once per kind every 30 s. */
static void note_error(struct redis_pool *p, enum redis_conn_error kind, const char *reason,
                       bool log)
{
    if (kind <= REDIS_CONN_ERR_NONE || kind >= POOL_ERR_KINDS) kind = REDIS_CONN_ERR_CLOSED;
    atomic_fetch_add(&p->errs[kind], 1);
    if (!log) return;
    int64_t now = clock_mono_ms();
    if (p->err_logged_ms[kind] && now - p->err_logged_ms[kind] < POOL_ERR_LOG_INTERVAL_MS) {
        p->err_unlogged[kind]++;
        LOG_D("redis: %s: %s", ERR_NAMES[kind], reason);
        return;
    }
    if (p->err_unlogged[kind])
        LOG_W("Redis %s: %s (%llu more since the last report)", ERR_NAMES[kind], reason,
              (unsigned long long)p->err_unlogged[kind]);
    else
        LOG_W("Redis %s: %s", ERR_NAMES[kind], reason);
    p->err_logged_ms[kind] = now;
    p->err_unlogged[kind] = 0;
}

/* ---- circuit breaker ---- */

static int slot_ping(struct slot *s);

static void breaker_open(struct redis_pool *p, bool first)
{
    if (first) {
        p->breaker_cooldown_ms = p->breaker_cooldown_min_ms;
        atomic_fetch_add(&p->breaker_opens, 1);
        LOG_W("Redis circuit breaker open: %d commands timed out in a row; using the memory tier, "
              "probing Redis again in %d ms",
              p->timeouts_in_row, p->breaker_cooldown_ms);
        /* No command reaches Redis while open, so check every connection now:
         * a Redis that is stalled altogether times these PINGs out (an outage,
         * logged as such); one that only stalls commands answers them. */
        for (int i = 0; i < p->n_slots; i++)
            if (p->slots[i].ready) slot_ping(&p->slots[i]);
    } else {
        p->breaker_cooldown_ms = p->breaker_cooldown_ms >= p->breaker_cooldown_max_ms / 2
                                     ? p->breaker_cooldown_max_ms
                                     : p->breaker_cooldown_ms * 2;
        LOG_D("redis: circuit breaker probe failed: open again for %d ms", p->breaker_cooldown_ms);
    }
    atomic_store(&p->breaker_until_ms, clock_mono_ms() + p->breaker_cooldown_ms);
    atomic_store(&p->breaker, REDIS_BREAKER_OPEN);
}

/* A command's connection timed out. */
static void breaker_timeout(struct redis_pool *p)
{
    if (p->breaker_threshold <= 0) return;
    p->timeouts_in_row++;
    if (atomic_load(&p->breaker) == REDIS_BREAKER_CLOSED &&
        p->timeouts_in_row >= p->breaker_threshold)
        breaker_open(p, true);
}

/* Redis answered a command (not a PING: a Redis may answer those and stall
 * everything else). */
static void breaker_answered(struct redis_pool *p)
{
    p->timeouts_in_row = 0;
    if (atomic_load(&p->breaker) == REDIS_BREAKER_CLOSED) return;
    atomic_store(&p->breaker, REDIS_BREAKER_CLOSED);
    LOG_W("Redis circuit breaker closed: commands are answered again");
}

/* ---- health checks ---- */

static void health_fire(void *arg);

static void arm_health(struct slot *s, int64_t delay_ms)
{
    struct redis_pool *p = s->p;
    if (s->health_timer || p->stopped) return;
    s->health_timer = io_timer_start(p->loop, (uint64_t)delay_ms, health_fire, s);
}

static void note_latency(struct redis_pool *p, int64_t sent_us)
{
    atomic_store(&p->latency_us, mono_us() - sent_us);
}

static void health_reply(void *arg, const redisReply *r, const char *err)
{
    struct slot *s = arg;
    s->ping_in_flight = false;
    if (err != NULL) return; /* the connection reports its own failure */
    note_latency(s->p, s->ping_sent_us);
}

static int slot_ping(struct slot *s)
{
    static const char ping[] = "*1\r\n$4\r\nPING\r\n";
    if (s->ping_in_flight) return 0;
    int64_t now = mono_us();
    int rc = redis_conn_command_raw(s->conn, ping, sizeof ping - 1, health_reply, s);
    if (rc == 0) {
        s->ping_in_flight = true;
        s->ping_sent_us = now;
    }
    return rc;
}

static void health_fire(void *arg)
{
    struct slot *s = arg;
    s->health_timer = NULL;
    if (!s->ready) return;
    slot_ping(s);
    arm_health(s, s->p->health_interval_ms);
}

/* ---- slot life cycle ---- */

static void reconnect_fire(void *arg)
{
    struct slot *s = arg;
    s->reconnect_timer = NULL;
    slot_connect(s);
}

static void schedule_reconnect(struct slot *s)
{
    struct redis_pool *p = s->p;
    if (p->stopped || s->reconnect_timer) return;
    if (s->backoff_ms == 0)
        s->backoff_ms = p->backoff_min_ms;
    else
        s->backoff_ms =
            s->backoff_ms >= p->backoff_max_ms / 2 ? p->backoff_max_ms : s->backoff_ms * 2;
    /* Equal jitter: half fixed, half random, so that the connections of this
     * and of other gateway instances do not retry in lockstep. */
    int half = s->backoff_ms / 2;
    int64_t delay = half + (int64_t)(pool_rand(p) % (uint64_t)(half + 1));
    s->reconnect_timer = io_timer_start(p->loop, (uint64_t)delay, reconnect_fire, s);
}

static void sub_send_subscribe(struct redis_sub *sub);

static void slot_up(struct slot *s)
{
    struct redis_pool *p = s->p;
    s->ready = true;
    if (s->sub == NULL) s->backoff_ms = 0; /* a subscription's: once SUBSCRIBE is confirmed */
    s->ping_in_flight = false;
    if (s->sub != NULL) {
        sub_send_subscribe(s->sub);
    } else {
        p->n_ready++;
        atomic_store(&p->connected, p->n_ready);
        atomic_store(&p->available, true);
        if (!p->ever_connected || p->outage_logged) {
            if (p->tls)
                LOG_I("Redis cache connected successfully (SSL/TLS enabled)");
            else
                LOG_I("Redis cache connected successfully");
        }
        p->ever_connected = true;
        p->outage_logged = false;
        /* Redis is back: the slots still waiting out their backoff retry now. */
        for (int i = 0; i < p->n_slots; i++) {
            struct slot *o = &p->slots[i];
            if (o->reconnect_timer) {
                io_timer_cancel(p->loop, o->reconnect_timer);
                o->reconnect_timer = NULL;
                o->backoff_ms = 0;
                slot_connect(o);
            }
        }
    }
    for (struct redis_sub *sub = p->subs; sub; sub = sub->next) {
        if (s->sub == NULL && sub->slot.reconnect_timer && !sub->refused) {
            io_timer_cancel(p->loop, sub->slot.reconnect_timer);
            sub->slot.reconnect_timer = NULL;
            sub->slot.backoff_ms = 0;
            slot_connect(&sub->slot);
        }
    }
    if (!s->ready) return; /* SUBSCRIBE could not be sent */
    if (atomic_load(&p->latency_us) < 0) slot_ping(s);
    /* Spread the health checks of the slots over the interval. */
    int64_t first = p->health_interval_ms / 2 +
                    (int64_t)(pool_rand(p) % (uint64_t)(p->health_interval_ms / 2 + 1));
    arm_health(s, first);
}

/* A connection attempt or session failed (reason), or a subscription broke. */
static void slot_down(struct slot *s, const char *reason, enum redis_conn_error kind)
{
    struct redis_pool *p = s->p;
    bool was_ready = s->ready;
    s->ready = false;
    s->ping_in_flight = false;
    /* A READY connection that timed out: its oldest command passed its
     * deadline (a connect timeout is an outage, not a stall). */
    if (was_ready && kind == REDIS_CONN_ERR_TIMEOUT && s->sub == NULL) breaker_timeout(p);
    if (s->health_timer) {
        io_timer_cancel(p->loop, s->health_timer);
        s->health_timer = NULL;
    }
    if (p->stopped) return;
    /* A subscription's connection that came up only to have its SUBSCRIBE
     * refused keeps backing off (else it retried ~13 times a second). */
    if (was_ready && (s->sub == NULL || s->sub->subscribed)) s->backoff_ms = 0;
    if (s->sub != NULL) {
        struct redis_sub *sub = s->sub;
        bool was_subscribed = sub->subscribed;
        sub->subscribed = false;
        sub->had_gap = true;
        note_error(p, kind, reason, false);
        LOG_D("redis: subscription connection failed: %s", reason);
        if (was_subscribed && sub->on_state) sub->on_state(sub->arg, false, false);
    } else {
        if (was_ready) {
            p->n_ready--;
            atomic_store(&p->connected, p->n_ready);
        }
        if (p->n_ready == 0) {
            atomic_store(&p->available, false);
            note_error(p, kind, reason, false);
            if (!p->outage_logged) {
                LOG_W("Redis connection failed: %s", reason);
                LOG_W("Using in-memory cache");
                p->outage_logged = true;
                p->outage_kind = kind;
            } else if (kind == REDIS_CONN_ERR_AUTH && p->outage_kind != REDIS_CONN_ERR_AUTH) {
                /* Say why it still fails when it becomes an authentication
                 * refusal (WRONGPASS after the server closed the connections:
                 * a rotated password), not only "connection closed". */
                LOG_W("Redis connection failed: %s", reason);
                p->outage_kind = kind;
            } else {
                LOG_D("redis: connection attempt failed: %s", reason);
            }
        } else {
            LOG_D("redis: connection lost (%d of %d still up): %s", p->n_ready, p->n_slots, reason);
            note_error(p, kind, reason, true);
        }
    }
    maybe_resolve(p);
    schedule_reconnect(s);
}

static void on_conn_state(void *arg, struct redis_conn *c, bool up, const char *reason)
{
    struct slot *s = arg;
    if (up)
        slot_up(s);
    else
        slot_down(s, reason, redis_conn_error_kind(c));
}

static void slot_connect(struct slot *s)
{
    struct redis_pool *p = s->p;
    if (p->stopped || redis_conn_get_state(s->conn) != REDIS_CONN_CLOSED) return;
    struct redis_addr addrs[REDIS_CONN_MAX_ADDRS];
    char reason[sizeof p->resolve_err];
    pthread_mutex_lock(&p->lock);
    size_t n = p->n_addrs;
    memcpy(addrs, p->addrs, n * sizeof addrs[0]);
    memcpy(reason, p->resolve_err, sizeof reason);
    pthread_mutex_unlock(&p->lock);
    if (n == 0) {
        slot_down(s, reason[0] ? reason : "no address to connect to", REDIS_CONN_ERR_CLOSED);
        return;
    }
    if (redis_conn_connect(s->conn, addrs, n) < 0)
        slot_down(s, redis_conn_reason(s->conn), redis_conn_error_kind(s->conn));
}

/* ---- subscriptions ---- */

static void sub_on_message(void *arg, const char *channel, size_t channel_len, const char *payload,
                           size_t payload_len)
{
    struct redis_sub *sub = arg;
    if (channel_len != sub->channel_len || memcmp(channel, sub->channel, channel_len) != 0) return;
    if (sub->on_message) sub->on_message(sub->arg, payload, payload_len);
}

static void sub_confirmed(void *arg, const redisReply *r, const char *err)
{
    struct redis_sub *sub = arg;
    if (err != NULL) return; /* the connection reports its own failure */
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "subscribe")) {
        /* SUBSCRIBE refused (an ACL without &channel, say): retry later. */
        char reason[200];
        snprintf(reason, sizeof reason, "SUBSCRIBE refused (%.150s)",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        if (!sub->refused)
            LOG_W("Redis pub/sub: %s; retrying with backoff", reason);
        else
            LOG_D("redis: pub/sub: %s", reason);
        sub->refused = true;
        redis_conn_close(sub->slot.conn, reason);
        slot_down(&sub->slot, reason, REDIS_CONN_ERR_REFUSED);
        return;
    }
    if (sub->refused) LOG_W("Redis pub/sub: subscribed to the invalidation channel");
    bool gap = sub->had_gap;
    sub->subscribed = true;
    sub->had_gap = false;
    sub->refused = false;
    sub->slot.backoff_ms = 0;
    LOG_D("redis: subscribed to %.*s%s", (int)sub->channel_len, sub->channel,
          gap ? " (after a gap)" : "");
    if (sub->on_state) sub->on_state(sub->arg, true, gap);
}

static void sub_send_subscribe(struct redis_sub *sub)
{
    const char *argv[2] = {"SUBSCRIBE", sub->channel};
    size_t lens[2] = {9, sub->channel_len};
    if (redis_conn_command_argv(sub->slot.conn, 2, argv, lens, sub_confirmed, sub) < 0) {
        redis_conn_close(sub->slot.conn, "cannot send SUBSCRIBE");
        slot_down(&sub->slot, "cannot send SUBSCRIBE", REDIS_CONN_ERR_CLOSED);
    }
}

int redis_pool_subscribe(struct redis_pool *p, const char *channel, size_t channel_len,
                         redis_sub_message_fn on_message, redis_sub_state_fn on_state, void *arg,
                         struct redis_sub **out)
{
    if (p->cluster) {
        struct redis_sub *w = calloc(1, sizeof *w);
        if (w == NULL) return -ENOMEM;
        int rc = redis_cluster_subscribe(p->cluster, channel, channel_len, on_message, on_state,
                                         arg, &w->csub);
        if (rc < 0) {
            free(w);
            return rc;
        }
        *out = w;
        return 0;
    }
    if (p->stopped) return -ENOTCONN;
    struct redis_sub *sub = calloc(1, sizeof *sub);
    if (sub == NULL) return -ENOMEM;
    sub->channel = malloc(channel_len + 1);
    if (sub->channel == NULL ||
        redis_conn_create(&p->cfg, on_conn_state, &sub->slot, &sub->slot.conn) < 0) {
        free(sub->channel);
        free(sub);
        return -ENOMEM;
    }
    memcpy(sub->channel, channel, channel_len);
    sub->channel[channel_len] = '\0';
    sub->channel_len = channel_len;
    sub->on_message = on_message;
    sub->on_state = on_state;
    sub->arg = arg;
    sub->slot.p = p;
    sub->slot.sub = sub;
    redis_conn_set_message_handler(sub->slot.conn, sub_on_message, sub);
    sub->next = p->subs;
    p->subs = sub;
    if (p->started) slot_connect(&sub->slot);
    *out = sub;
    return 0;
}

static void slot_release(struct redis_pool *p, struct slot *s)
{
    if (s->reconnect_timer) io_timer_cancel(p->loop, s->reconnect_timer);
    if (s->health_timer) io_timer_cancel(p->loop, s->health_timer);
    s->reconnect_timer = s->health_timer = NULL;
}

void redis_pool_unsubscribe(struct redis_pool *p, struct redis_sub *sub)
{
    if (sub == NULL) return;
    if (p->cluster) {
        redis_cluster_unsubscribe(p->cluster, sub->csub);
        free(sub);
        return;
    }
    for (struct redis_sub **pp = &p->subs; *pp; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    }
    slot_release(p, &sub->slot);
    sub->on_state = NULL;
    sub->on_message = NULL;
    redis_conn_destroy(sub->slot.conn);
    free(sub->channel);
    free(sub);
}

/* ---- commands ---- */

static void op_free(struct pool_op *op)
{
    free(op->cmd);
    free(op);
}

/* The next READY connection after cursor that can take a command, or NULL. */
static struct slot *pick(struct redis_pool *p)
{
    for (int i = 0; i < p->n_slots; i++) {
        struct slot *s = &p->slots[(p->rr + i) % p->n_slots];
        if (!s->ready) continue;
        if (p->cfg.max_pending && redis_conn_pending(s->conn) >= p->cfg.max_pending) continue;
        p->rr = (p->rr + i + 1) % p->n_slots;
        return s;
    }
    return NULL;
}

static void op_done(void *arg, const redisReply *r, const char *err)
{
    struct pool_op *op = arg;
    struct redis_pool *p = op->p;
    if (r != NULL && !op->is_ping) breaker_answered(p);
    /* A cluster's redirects are answers the router follows, not refusals. */
    if (r != NULL && r->type == REDIS_REPLY_ERROR &&
        !(r->str && (strncmp(r->str, "MOVED ", 6) == 0 || strncmp(r->str, "ASK ", 4) == 0 ||
                     strncmp(r->str, "TRYAGAIN", 8) == 0))) {
        char reason[200];
        snprintf(reason, sizeof reason, "error reply: %.150s", r->str ? r->str : "");
        note_error(p, REDIS_CONN_ERR_REFUSED, reason, true);
    }
    if (op->is_probe && r == NULL && !p->stopped) breaker_open(p, false);
    /* The connection that failed is no longer READY (the state callback ran
     * before the pending commands were failed), so pick() finds another.  No
     * retry while the breaker is open: failing fast is its point. */
    while (err != NULL && op->retries_left > 0 && !p->stopped && strcmp(err, "pool stopped") != 0 &&
           atomic_load(&p->breaker) == REDIS_BREAKER_CLOSED) {
        struct slot *s = pick(p);
        if (s == NULL) break;
        op->retries_left--;
        if (redis_conn_command_raw(s->conn, op->cmd, op->cmd_len, op_done, op) == 0) {
            LOG_D("redis: retrying a command after: %s", err);
            return;
        }
    }
    if (op->is_ping && r != NULL && r->type != REDIS_REPLY_ERROR) note_latency(p, op->sent_us);
    if (!op->is_ping) metrics_observe_redis_command((double)(mono_us() - op->sent_us) / 1e6);
    op->fn(op->arg, r, err);
    op_free(op);
}

static void asking_reply(void *arg, const redisReply *r, const char *err) {}

static int submit(struct redis_pool *p, char *cmd, size_t len, bool is_ping, bool asking,
                  redis_reply_fn fn, void *arg)
{
    int rc;
    struct pool_op *op = NULL;
    if (p->stopped || !p->started || p->n_ready == 0) {
        rc = -ENOTCONN;
        goto fail;
    }
    bool probe = false;
    if (!is_ping && atomic_load(&p->breaker) != REDIS_BREAKER_CLOSED) {
        /* Open: fail fast until the cool-down is over, then let one command
         * through as the probe (HALF_OPEN until it is answered). */
        if (atomic_load(&p->breaker) == REDIS_BREAKER_HALF_OPEN ||
            clock_mono_ms() < atomic_load(&p->breaker_until_ms)) {
            rc = -ENOTCONN;
            goto fail;
        }
        probe = true;
    }
    struct slot *s = pick(p);
    if (s == NULL) {
        rc = -ENOBUFS;
        goto fail;
    }
    op = malloc(sizeof *op);
    if (op == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    *op = (struct pool_op){.p = p,
                           .fn = fn,
                           .arg = arg,
                           .cmd = cmd,
                           .cmd_len = len,
                           .retries_left = probe ? 0 : p->retries,
                           .is_ping = is_ping,
                           .is_probe = probe,
                           .sent_us = mono_us()};
    /* ASKING is valid for the next command of the same connection only. */
    if (asking) {
        static const char ask[] = "*1\r\n$6\r\nASKING\r\n";
        op->retries_left = 0;
        rc = redis_conn_command_raw(s->conn, ask, sizeof ask - 1, asking_reply, NULL);
        if (rc < 0) goto fail;
    }
    rc = redis_conn_command_raw(s->conn, cmd, len, op_done, op);
    if (rc < 0) goto fail;
    if (probe) {
        atomic_store(&p->breaker, REDIS_BREAKER_HALF_OPEN);
        LOG_D("redis: circuit breaker half-open: probing with one command");
    }
    return 0;
fail:
    free(op);
    free(cmd);
    return rc;
}

int redis_pool_command(struct redis_pool *p, int argc, const char **argv, const size_t *lens,
                       redis_reply_fn fn, void *arg)
{
    if (p->cluster) return redis_cluster_command(p->cluster, argc, argv, lens, fn, arg);
    if (argc < 1 || argv == NULL || fn == NULL) return -EINVAL;
    if (p->stopped || !p->started || p->n_ready == 0) return -ENOTCONN;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) return -ENOMEM;
    /* hiredis allocates with malloc (0.14 has no allocator hooks), so free()
     * releases it, as redisFreeCommand does. */
    return submit(p, cmd, (size_t)len, false, false, fn, arg);
}

int redis_pool_command_raw(struct redis_pool *p, const char *cmd, size_t len, bool asking,
                           redis_reply_fn fn, void *arg)
{
    if (cmd == NULL || len == 0 || fn == NULL || p->cluster) return -EINVAL;
    if (p->stopped || !p->started || p->n_ready == 0) return -ENOTCONN;
    char *copy = malloc(len);
    if (copy == NULL) return -ENOMEM;
    memcpy(copy, cmd, len);
    return submit(p, copy, len, false, asking, fn, arg);
}

int redis_pool_ping(struct redis_pool *p, redis_reply_fn fn, void *arg)
{
    if (fn == NULL) return -EINVAL;
    if (p->cluster) return redis_cluster_ping(p->cluster, fn, arg);
    if (p->stopped || !p->started || p->n_ready == 0) return -ENOTCONN;
    char *cmd = strdup("*1\r\n$4\r\nPING\r\n");
    if (cmd == NULL) return -ENOMEM;
    return submit(p, cmd, strlen(cmd), true, false, fn, arg);
}

/* ---- life cycle ---- */

static void describe_target(const struct redis_url *u, char *buf, size_t len)
{
    bool v6 = strchr(u->host, ':') != NULL;
    snprintf(buf, len, "%s://%s%s%s%s%s:%d/%d", u->tls ? "rediss" : "redis", u->user ? u->user : "",
             u->user ? "@" : "", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
}

int redis_pool_create(struct io_loop *loop, const struct redis_pool_options *o,
                      struct redis_pool **out, char *err, size_t errlen)
{
    char scratch[8];
    if (err == NULL || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    *out = NULL;
    if (o == NULL || o->url == NULL || o->url->host == NULL || o->url->port < 1 ||
        o->url->port > 65535 || o->url->db < 0) {
        snprintf(err, errlen, "invalid Redis URL");
        return -EINVAL;
    }
    if (o->pool_size < 0 || o->pool_size > 1024 || o->connect_timeout_ms < 0 ||
        o->op_timeout_ms < 0 || o->health_interval_s < 0 || o->reconnect_min_ms < 0 ||
        o->reconnect_max_ms < 0 || o->max_pending < 0) {
        snprintf(err, errlen, "invalid Redis pool options");
        return -EINVAL;
    }
    struct redis_pool *p = calloc(1, sizeof *p);
    if (p == NULL) return -ENOMEM;
    int rc = -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    p->refs = 1;
    p->loop = loop;
    p->tls = o->url->tls;
    if (o->mode != REDIS_POOL_STANDALONE) {
        rc = redis_cluster_create(loop, o, &p->cluster, err, errlen);
        if (rc < 0) goto fail;
        *out = p;
        return 0;
    }
    p->host = strdup(o->url->host);
    p->user = dup_or_null(o->url->user);
    p->password = dup_or_null(o->url->password);
    if (p->host == NULL || (o->url->user && !p->user) || (o->url->password && !p->password))
        goto fail;
    p->host_is_ip = tls_host_is_ip(p->host);
    p->n_slots = o->pool_size ? o->pool_size : POOL_DEFAULT_SIZE;
    p->retries = o->retries > 0 ? o->retries : 0;
    p->health_interval_ms =
        (int64_t)(o->health_interval_s ? o->health_interval_s : POOL_DEFAULT_HEALTH_S) * 1000;
    p->backoff_min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : POOL_DEFAULT_BACKOFF_MIN_MS;
    p->backoff_max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : POOL_DEFAULT_BACKOFF_MAX_MS;
    if (p->backoff_max_ms < p->backoff_min_ms) p->backoff_max_ms = p->backoff_min_ms;
    p->breaker_threshold =
        o->breaker_threshold ? o->breaker_threshold : POOL_DEFAULT_BREAKER_THRESHOLD;
    p->breaker_cooldown_min_ms =
        o->breaker_cooldown_ms > 0 ? o->breaker_cooldown_ms : POOL_DEFAULT_BREAKER_COOLDOWN_MS;
    p->breaker_cooldown_max_ms = o->breaker_cooldown_max_ms > 0
                                     ? o->breaker_cooldown_max_ms
                                     : POOL_DEFAULT_BREAKER_COOLDOWN_MAX_MS;
    if (p->breaker_cooldown_max_ms < p->breaker_cooldown_min_ms)
        p->breaker_cooldown_max_ms = p->breaker_cooldown_min_ms;
    atomic_init(&p->breaker, REDIS_BREAKER_CLOSED);
    atomic_init(&p->breaker_until_ms, 0);
    atomic_init(&p->breaker_opens, 0);
    for (int i = 0; i < POOL_ERR_KINDS; i++) atomic_init(&p->errs[i], 0);
    p->rng = (uint64_t)clock_mono_ms() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)p;
    if (p->rng == 0) p->rng = 0x9e3779b97f4a7c15ULL;
    atomic_init(&p->available, false);
    atomic_init(&p->connected, 0);
    atomic_init(&p->latency_us, -1);

    if (p->tls) {
        struct tls_client_options t = {.ca_file = o->tls_ca_file,
                                       .cert_file = o->tls_cert_file,
                                       .key_file = o->tls_key_file,
                                       .insecure = o->tls_insecure};
        char terr[256];
        rc = tls_client_ctx_create(&t, &p->ssl_ctx, terr, sizeof terr);
        if (rc < 0) {
            snprintf(err, errlen, "Redis TLS: %s", terr);
            goto fail;
        }
        if (o->tls_insecure)
            LOG_W("Redis TLS certificate verification is DISABLED (insecure mode): the "
                  "connection is encrypted but the server is not authenticated");
    }

    p->cfg = (struct redis_conn_config){
        .loop = loop,
        .host = p->host,
        .port = o->url->port,
        .ssl_ctx = p->ssl_ctx,
        .user = p->user,
        .password = p->password,
        .db = o->url->db,
        .connect_timeout_ms =
            o->connect_timeout_ms ? o->connect_timeout_ms : POOL_DEFAULT_TIMEOUT_MS,
        .op_timeout_ms = o->op_timeout_ms ? o->op_timeout_ms : POOL_DEFAULT_TIMEOUT_MS,
        .max_pending = (size_t)(o->max_pending ? o->max_pending : POOL_DEFAULT_MAX_PENDING),
        .max_output_bytes = POOL_MAX_OUTPUT_BYTES,
        .max_reply_bytes = o->max_reply_bytes ? o->max_reply_bytes : POOL_DEFAULT_MAX_REPLY,
    };

    rc = -ENOMEM;
    p->slots = calloc((size_t)p->n_slots, sizeof *p->slots);
    if (p->slots == NULL) goto fail;
    for (int i = 0; i < p->n_slots; i++) {
        p->slots[i].p = p;
        if (redis_conn_create(&p->cfg, on_conn_state, &p->slots[i], &p->slots[i].conn) < 0)
            goto fail;
    }

    p->n_addrs = resolve(p->host, p->cfg.port, p->addrs, p->resolve_err, sizeof p->resolve_err);
    p->last_resolve_ms = clock_mono_ms();

    char target[300];
    describe_target(o->url, target, sizeof target);
    LOG_I("Redis: %s, pool of %d connections%s", target, p->n_slots,
          p->tls ? (o->tls_insecure ? ", TLS (unverified)" : ", TLS") : "");
    *out = p;
    return 0;
fail:
    redis_pool_destroy(p);
    return rc;
}

void redis_pool_start(struct redis_pool *p)
{
    if (p->cluster) {
        redis_cluster_start(p->cluster);
        return;
    }
    if (p->started || p->stopped) return;
    p->started = true;
    for (int i = 0; i < p->n_slots; i++) slot_connect(&p->slots[i]);
    for (struct redis_sub *sub = p->subs; sub; sub = sub->next) slot_connect(&sub->slot);
}

void redis_pool_stop(struct redis_pool *p)
{
    if (p->cluster) {
        redis_cluster_stop(p->cluster);
        return;
    }
    if (p->stopped) return;
    p->stopped = true;
    atomic_store(&p->available, false);
    atomic_store(&p->connected, 0);
    p->n_ready = 0;
    for (int i = 0; i < p->n_slots; i++) {
        slot_release(p, &p->slots[i]);
        p->slots[i].ready = false;
        redis_conn_close(p->slots[i].conn, "pool stopped");
    }
    for (struct redis_sub *sub = p->subs; sub; sub = sub->next) {
        slot_release(p, &sub->slot);
        sub->slot.ready = false;
        sub->subscribed = false;
        redis_conn_close(sub->slot.conn, "pool stopped");
    }
}

void redis_pool_destroy(struct redis_pool *p)
{
    if (p == NULL) return;
    /* First: a resolver thread finishing now must no longer post to the loop. */
    pthread_mutex_lock(&p->lock);
    p->destroyed = true;
    pthread_mutex_unlock(&p->lock);
    redis_cluster_destroy(p->cluster);
    if (p->slots) {
        for (int i = 0; i < p->n_slots; i++) redis_conn_destroy(p->slots[i].conn);
        free(p->slots);
    }
    while (p->subs) {
        struct redis_sub *sub = p->subs;
        p->subs = sub->next;
        redis_conn_destroy(sub->slot.conn);
        free(sub->channel);
        free(sub);
    }
    tls_ctx_free(p->ssl_ctx);
    free(p->host);
    free(p->user);
    if (p->password) {
        memset(p->password, 0, strlen(p->password));
        free(p->password);
    }
    pool_unref(p);
}

bool redis_pool_available(const struct redis_pool *p)
{
    struct redis_pool *m = (struct redis_pool *)p;
    if (m->cluster) return redis_cluster_available(m->cluster);
    if (!atomic_load(&m->available)) return false;
    switch (atomic_load(&m->breaker)) {
    case REDIS_BREAKER_CLOSED: return true;
    case REDIS_BREAKER_OPEN: return clock_mono_ms() >= atomic_load(&m->breaker_until_ms);
    default: return false; /* half-open: the probe is in flight */
    }
}

void redis_pool_get_stats(const struct redis_pool *p, struct redis_pool_stats *out)
{
    struct redis_pool *m = (struct redis_pool *)p;
    if (m->cluster) {
        redis_cluster_get_stats(m->cluster, out);
        return;
    }
    out->err_timeout = atomic_load(&m->errs[REDIS_CONN_ERR_TIMEOUT]);
    out->err_protocol = atomic_load(&m->errs[REDIS_CONN_ERR_PROTOCOL]);
    out->err_refused =
        atomic_load(&m->errs[REDIS_CONN_ERR_REFUSED]) + atomic_load(&m->errs[REDIS_CONN_ERR_AUTH]);
    out->err_closed = atomic_load(&m->errs[REDIS_CONN_ERR_CLOSED]);
    out->breaker_opens = atomic_load(&m->breaker_opens);
    out->breaker = (enum redis_breaker_state)atomic_load(&m->breaker);
}

int redis_pool_connected(const struct redis_pool *p)
{
    if (p->cluster) return redis_cluster_connected(p->cluster);
    return atomic_load(&p->connected);
}

void redis_pool_get_topology(const struct redis_pool *p, struct redis_topology *out)
{
    if (p->cluster) {
        redis_cluster_get_topology(p->cluster, out);
        return;
    }
    memset(out, 0, sizeof *out);
    out->mode = "standalone";
    out->nodes_known = 1;
    out->nodes_up = redis_pool_available(p) ? 1 : 0;
    out->masters = 1;
    out->masters_up = out->nodes_up;
    out->map_age_ms = -1;
}

double redis_pool_last_latency_ms(const struct redis_pool *p)
{
    if (p->cluster) return redis_cluster_last_latency_ms(p->cluster);
    int64_t us = atomic_load(&((struct redis_pool *)p)->latency_us);
    return us < 0 ? -1.0 : (double)us / 1000.0;
}

bool redis_pool_tls(const struct redis_pool *p) { return p->tls; }

void redis_pool_sub_set_state_fn(struct redis_sub *s, redis_sub_state_fn fn) { s->on_state = fn; }

void redis_pool_sub_set_watch(struct redis_sub *s, struct redis_sub_watch *w)
{
    if (s->csub) {
        redis_cluster_sub_set_watch(s->csub, w);
        return;
    }
    redis_conn_set_sub_watch(s->slot.conn, w);
}

void redis_pool_set_pubsub_key(struct redis_pool *p, const char *key, size_t len)
{
    if (p->cluster) redis_cluster_set_pubsub_key(p->cluster, key, len);
}
