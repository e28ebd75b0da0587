/* redis_cluster.c - see redis_cluster.h.
 *
 * The node table only grows (nodes[] entries are published before n_nodes is
 * raised, with release/acquire atomics), so the any-thread readers
 * (available, connected, stats, topology) walk it without a lock.  The slot
 * map itself is read and written on the loop thread only. */
#include "redis_cluster.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "redis_slot.h"

#define CLUSTER_TICK_MS 500
#define CLUSTER_REFRESH_IDLE_MS 5000
#define CLUSTER_REFRESH_MIN_MS 100
#define CLUSTER_TRYAGAIN_MS 20
#define CLUSTER_WAIT_POLL_MS 10
#define CLUSTER_SUB_MOVE_MS 1000
#define SENTINEL_QUERY_MS 1000
#define CLUSTER_MAX_SENTINELS 16

struct node {
    char *host;
    int port;
    struct redis_pool *pool;
    atomic_bool master; /* named by the current slot map (or the sentinels) */
};

struct cop;

/* Another address of a node (the IP a TLS node announces beside its name). */
struct alias {
    char *host;
    int port;
    int node;
};

struct redis_csub {
    struct redis_cluster *c;
    char *channel;
    size_t channel_len;
    redis_sub_message_fn on_message;
    redis_sub_state_fn on_state;
    void *arg;
    int node; /* -1: not placed yet */
    struct redis_sub *inner;
    /* Make-before-break move to the pub/sub node (see csub_maintain). */
    int next_node;
    struct redis_sub *next_inner;
    bool next_failed;
    bool subscribed;
    bool moved_gap; /* moved to another node: the next SUBSCRIBE reports a gap */
    struct redis_sub_watch *watch; /* given to every node subscription (redis_sub_watch.h) */
    int64_t down_since_ms;
    struct redis_csub *next;
};

struct redis_cluster {
    struct io_loop *loop;
    struct redis_pool_options opts; /* pointers below are ours */
    struct redis_url url; /* user, password, db, tls of the data nodes */
    char *tls_ca, *tls_cert, *tls_key;
    enum redis_pool_mode mode;
    atomic_bool standalone; /* AUTO (or CLUSTER) found one server without cluster support */
    bool cluster_confirmed; /* INFO cluster said cluster_enabled:1 */

    struct node *nodes[CLUSTER_MAX_NODES];
    atomic_int n_nodes;
    int n_seeds;
    int16_t slots[REDIS_SLOTS]; /* node index, or -1 */
    int16_t next_slots[REDIS_SLOTS]; /* on_slots' scratch */
    struct alias aliases[CLUSTER_MAX_NODES];
    int n_aliases;
    atomic_bool map_known;
    atomic_int masters;
    atomic_int_fast64_t map_loaded_ms; /* 0: never */
    bool refresh_in_flight;
    int64_t last_refresh_ms;
    struct io_timer *throttle_timer;
    struct io_timer *tick_timer;
    struct io_timer *early_timer;
    int64_t early_until_ms;
    int rr;

    /* Sentinel. */
    struct redis_pool *sentinels[CLUSTER_MAX_SENTINELS];
    int n_sentinels;
    char *master_name;
    atomic_int master; /* node index, -1: unknown */
    atomic_bool role_ok; /* ROLE said master since the master was chosen */
    bool role_in_flight, query_in_flight;
    bool unknown_logged; /* "no address for master" said once */
    int64_t last_query_ms;
    struct redis_sub *switch_sub;

    atomic_uint_fast64_t moved, ask, tryagain, refreshes, failovers;
    struct redis_csub *subs;
    int pubsub_slot; /* -1: none set (redis_cluster_set_pubsub_key) */
    struct cop *waiting; /* ops waiting on a timer (redirect target connecting, TRYAGAIN) */
    bool started, stopped;
};

/* ---- nodes ---- */

static int node_find(struct redis_cluster *c, const char *host, int port)
{
    int n = atomic_load(&c->n_nodes);
    for (int i = 0; i < n; i++)
        if (c->nodes[i]->port == port && strcasecmp(c->nodes[i]->host, host) == 0) return i;
    return -1;
}

/* A pool for host:port with the data nodes' credentials and TLS. */
static struct redis_pool *data_pool(struct redis_cluster *c, const char *host, int port, char *err,
                                    size_t errlen)
{
    struct redis_url u = c->url;
    u.host = (char *)host;
    u.port = port;
    u.nodes = NULL;
    u.n_nodes = 0;
    struct redis_pool_options o = c->opts;
    o.mode = REDIS_POOL_STANDALONE;
    o.url = &u;
    struct redis_pool *p = NULL;
    if (redis_pool_create(c->loop, &o, &p, err, errlen) < 0) return NULL;
    return p;
}

/* The index of host:port, created (and started) on first sight; -1 when the
 * table is full or the pool cannot be made.  Loop thread (or create). */
static int node_get(struct redis_cluster *c, const char *host, int port)
{
    int i = node_find(c, host, port);
    if (i >= 0) return i;
    int n = atomic_load(&c->n_nodes);
    if (n >= CLUSTER_MAX_NODES) {
        LOG_W("Redis Cluster: more than %d nodes; ignoring %s:%d", CLUSTER_MAX_NODES, host, port);
        return -1;
    }
    struct node *nd = calloc(1, sizeof *nd);
    char err[300];
    if (nd == NULL || (nd->host = strdup(host)) == NULL) {
        free(nd);
        return -1;
    }
    nd->port = port;
    atomic_init(&nd->master, false);
    nd->pool = data_pool(c, host, port, err, sizeof err);
    if (nd->pool == NULL) {
        LOG_W("Redis Cluster: cannot use node %s:%d: %s", host, port, err);
        free(nd->host);
        free(nd);
        return -1;
    }
    c->nodes[n] = nd;
    atomic_store_explicit(&c->n_nodes, n + 1, memory_order_release);
    if (c->started && !c->stopped) redis_pool_start(nd->pool);
    return n;
}

static bool node_up(const struct redis_cluster *c, int i)
{
    return i >= 0 && i < atomic_load(&((struct redis_cluster *)c)->n_nodes) &&
           redis_pool_available(c->nodes[i]->pool);
}

/* Any node that answers, masters first, round robin; -1 if none. */
static int any_node(struct redis_cluster *c, bool masters_only)
{
    int n = atomic_load(&c->n_nodes);
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < n; k++) {
            int i = (c->rr + k) % n;
            if (pass == 0 && !atomic_load(&c->nodes[i]->master)) continue;
            if (!node_up(c, i)) continue;
            c->rr = i + 1;
            return i;
        }
        if (masters_only) break;
    }
    return -1;
}

static bool is_sentinel(const struct redis_cluster *c) { return c->mode == REDIS_POOL_SENTINEL; }

/* The node a command for slot goes to, or -1. */
static int route(struct redis_cluster *c, int slot)
{
    if (is_sentinel(c)) return atomic_load(&c->role_ok) ? atomic_load(&c->master) : -1;
    if (!atomic_load(&c->map_known)) return any_node(c, false);
    if (slot < 0) return any_node(c, true);
    return c->slots[slot];
}

/* ---- slot map ---- */

static void request_refresh(struct redis_cluster *c);
static void csub_maintain(struct redis_cluster *c);

static void throttle_fire(void *arg)
{
    struct redis_cluster *c = arg;
    c->throttle_timer = NULL;
    request_refresh(c);
}

struct slots_req {
    struct redis_cluster *c;
    int node;
};

static void become_standalone(struct redis_cluster *c, int node, const char *why)
{
    for (int s = 0; s < REDIS_SLOTS; s++) c->slots[s] = (int16_t)node;
    atomic_store(&c->nodes[node]->master, true);
    atomic_store(&c->masters, 1);
    atomic_store(&c->standalone, true);
    atomic_store(&c->map_known, true);
    atomic_store(&c->map_loaded_ms, clock_mono_ms());
    if (c->mode == REDIS_POOL_CLUSTER)
        LOG_W("Redis: REDIS_MODE=cluster but %s:%d is not a cluster (%s): using it as one node",
              c->nodes[node]->host, c->nodes[node]->port, why);
    else
        LOG_I("Redis: %s:%d is a standalone server (%s)", c->nodes[node]->host,
              c->nodes[node]->port, why);
}

/* The "hostname" of a CLUSTER SLOTS node entry's metadata (Redis 7:
 * [ip, port, id, [key, value, ...]]), or NULL. */
static const char *meta_hostname(const redisReply *m)
{
    if (m->elements < 4 || m->element[3]->type != REDIS_REPLY_ARRAY) return NULL;
    const redisReply *kv = m->element[3];
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        if (kv->element[i]->type == REDIS_REPLY_STRING &&
            kv->element[i + 1]->type == REDIS_REPLY_STRING &&
            strcmp(kv->element[i]->str, "hostname") == 0 && kv->element[i + 1]->len > 0)
            return kv->element[i + 1]->str;
    }
    return NULL;
}

static void alias_add(struct redis_cluster *c, const char *host, int port, int node)
{
    for (int i = 0; i < c->n_aliases; i++)
        if (c->aliases[i].port == port && strcasecmp(c->aliases[i].host, host) == 0) {
            c->aliases[i].node = node;
            return;
        }
    if (c->n_aliases == CLUSTER_MAX_NODES) return;
    char *h = strdup(host);
    if (h == NULL) return;
    c->aliases[c->n_aliases++] = (struct alias){.host = h, .port = port, .node = node};
}

static bool int_of(const redisReply *r, long long *v)
{
    if (r->type != REDIS_REPLY_INTEGER) return false;
    *v = r->integer;
    return true;
}

static void on_slots(void *arg, const redisReply *r, const char *err)
{
    struct slots_req *q = arg;
    struct redis_cluster *c = q->c;
    int asked = q->node;
    free(q);
    c->refresh_in_flight = false;
    if (c->stopped || err != NULL) return; /* the next tick asks another node */
    if (r->type == REDIS_REPLY_ERROR) {
        if (!atomic_load(&c->map_known) &&
            (strstr(r->str, "cluster support disabled") != NULL || c->mode == REDIS_POOL_AUTO)) {
            become_standalone(c, asked, r->str);
            return;
        }
        LOG_D("redis: CLUSTER SLOTS refused by %s:%d: %s", c->nodes[asked]->host,
              c->nodes[asked]->port, r->str);
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY) return;
    int16_t *map = c->next_slots;
    for (int s = 0; s < REDIS_SLOTS; s++) map[s] = -1;
    bool used[CLUSTER_MAX_NODES] = {0};
    for (size_t e = 0; e < r->elements; e++) {
        const redisReply *ent = r->element[e];
        long long lo, hi, port;
        if (ent->type != REDIS_REPLY_ARRAY || ent->elements < 3 || !int_of(ent->element[0], &lo) ||
            !int_of(ent->element[1], &hi) || lo < 0 || hi >= REDIS_SLOTS || lo > hi)
            continue;
        const redisReply *m = ent->element[2];
        if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
            m->element[0]->type != REDIS_REPLY_STRING || !int_of(m->element[1], &port) ||
            port < 1 || port > 65535)
            continue;
        /* An empty or "?" endpoint means "the address you reached me at". */
        const char *host = m->element[0]->str;
        if (host[0] == '\0' || strcmp(host, "?") == 0) host = c->nodes[asked]->host;
        /* Over TLS, a node that announces a host name beside its IP endpoint
         * is reached by that name: it is what its certificate carries.  The
         * IP stays an alias, for the redirects that name it. */
        const char *name = c->url.tls ? meta_hostname(m) : NULL;
        int idx;
        if (name != NULL && strcasecmp(name, host) != 0) {
            idx = node_get(c, name, (int)port);
            if (idx >= 0) alias_add(c, host, (int)port, idx);
        } else {
            idx = node_get(c, host, (int)port);
        }
        if (idx < 0) continue;
        used[idx] = true;
        for (long long s = lo; s <= hi; s++) map[s] = (int16_t)idx;
    }
    int n = atomic_load(&c->n_nodes), masters = 0;
    bool changed = false;
    for (int i = 0; i < n; i++) {
        if (used[i]) masters++;
        if (atomic_load(&c->nodes[i]->master) != used[i]) changed = true;
        atomic_store(&c->nodes[i]->master, used[i]);
    }
    bool first = !atomic_load(&c->map_known);
    memcpy(c->slots, map, sizeof c->slots);
    atomic_store(&c->masters, masters);
    atomic_store(&c->map_known, true);
    atomic_store(&c->map_loaded_ms, clock_mono_ms());
    atomic_fetch_add(&c->refreshes, 1);
    csub_maintain(c); /* pub/sub to its node now, not at the next tick */
    if (first) {
        LOG_I("Redis Cluster: slot map loaded from %s:%d: %d masters", c->nodes[asked]->host,
              c->nodes[asked]->port, masters);
    } else if (changed) {
        atomic_fetch_add(&c->failovers, 1);
        char list[512] = "";
        size_t pos = 0;
        for (int i = 0; i < n && pos < sizeof list - 1; i++)
            if (used[i])
                pos += (size_t)snprintf(list + pos, sizeof list - pos, "%s%s:%d", pos ? " " : "",
                                        c->nodes[i]->host, c->nodes[i]->port);
        LOG_W("Redis Cluster: the masters changed: now %d (%s)", masters, list);
    }
}

/* INFO cluster of the first seed that answers: cluster_enabled:1 or not.
 * (Asking CLUSTER SLOTS of a standalone server would be an error reply, which
 * the node pool logs as a refusal.) */
static void on_info(void *arg, const redisReply *r, const char *err)
{
    struct slots_req *q = arg;
    struct redis_cluster *c = q->c;
    int asked = q->node;
    free(q);
    c->refresh_in_flight = false;
    if (c->stopped) return;
    /* AUTO: a seed that does not answer INFO (a timeout, an ACL refusal) is
     * taken for one server, as before this mode existed; a MOVED would still
     * be followed. */
    if (err != NULL || r->type == REDIS_REPLY_ERROR) {
        if (c->mode == REDIS_POOL_AUTO) {
            become_standalone(c, asked, err ? err : r->str);
            return;
        }
        if (err != NULL) return;
    }
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
        if (strstr(r->str, "cluster_enabled:1") != NULL) {
            c->cluster_confirmed = true;
            c->last_refresh_ms = 0;
            request_refresh(c);
        } else {
            become_standalone(c, asked, "INFO cluster: cluster_enabled:0");
        }
        return;
    }
    /* INFO refused (an ACL without it): try CLUSTER SLOTS, whose answer tells too. */
    c->cluster_confirmed = true;
    c->last_refresh_ms = 0;
    request_refresh(c);
}

static void request_refresh(struct redis_cluster *c)
{
    if (c->stopped || !c->started || is_sentinel(c) || atomic_load(&c->standalone) ||
        c->refresh_in_flight)
        return;
    int64_t now = clock_mono_ms();
    if (now - c->last_refresh_ms < CLUSTER_REFRESH_MIN_MS) {
        if (c->throttle_timer == NULL)
            c->throttle_timer = io_timer_start(
                c->loop, (uint64_t)(CLUSTER_REFRESH_MIN_MS - (now - c->last_refresh_ms)),
                throttle_fire, c);
        return;
    }
    int i = any_node(c, false);
    if (i < 0) return;
    struct slots_req *q = malloc(sizeof *q);
    if (q == NULL) return;
    *q = (struct slots_req){.c = c, .node = i};
    static const char cmd[] = "*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n";
    static const char info[] = "*2\r\n$4\r\nINFO\r\n$7\r\ncluster\r\n";
    bool ask_info = !c->cluster_confirmed;
    if (redis_pool_command_raw(c->nodes[i]->pool, ask_info ? info : cmd,
                               ask_info ? sizeof info - 1 : sizeof cmd - 1, false,
                               ask_info ? on_info : on_slots, q) < 0) {
        free(q);
        return;
    }
    c->refresh_in_flight = true;
    c->last_refresh_ms = now;
}

/* ---- sentinel ---- */

static void sentinel_query(struct redis_cluster *c);

static void set_master(struct redis_cluster *c, const char *host, int port, const char *how)
{
    int idx = node_get(c, host, port);
    if (idx < 0) return;
    atomic_store(&c->map_loaded_ms, clock_mono_ms());
    int old = atomic_load(&c->master);
    if (idx == old) return;
    if (old >= 0) {
        atomic_store(&c->nodes[old]->master, false);
        atomic_fetch_add(&c->failovers, 1);
        LOG_W("Redis Sentinel: master '%s' moved from %s:%d to %s:%d (%s)", c->master_name,
              c->nodes[old]->host, c->nodes[old]->port, host, port, how);
    } else {
        LOG_I("Redis Sentinel: master '%s' is %s:%d", c->master_name, host, port);
    }
    atomic_store(&c->role_ok, false);
    atomic_store(&c->nodes[idx]->master, true);
    atomic_store(&c->masters, 1);
    atomic_store(&c->master, idx);
}

static void on_master_addr(void *arg, const redisReply *r, const char *err)
{
    struct redis_cluster *c = arg;
    c->query_in_flight = false;
    if (c->stopped || err != NULL) return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        /* Once until an address comes (the sentinels are asked every second). */
        if (!c->unknown_logged)
            LOG_W("Redis Sentinel: no address for master '%s' (%s); using the memory tier",
                  c->master_name, r->type == REDIS_REPLY_ERROR ? r->str : "unknown master name");
        c->unknown_logged = true;
        return;
    }
    char *end;
    long port = strtol(r->element[1]->str, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) return;
    atomic_fetch_add(&c->refreshes, 1);
    c->unknown_logged = false;
    set_master(c, r->element[0]->str, (int)port, "SENTINEL get-master-addr-by-name");
}

static void sentinel_query(struct redis_cluster *c)
{
    if (c->query_in_flight || c->stopped) return;
    for (int k = 0; k < c->n_sentinels; k++) {
        struct redis_pool *s = c->sentinels[(c->rr + k) % c->n_sentinels];
        if (!redis_pool_available(s)) continue;
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", c->master_name};
        size_t lens[3] = {8, 23, strlen(c->master_name)};
        if (redis_pool_command(s, 3, argv, lens, on_master_addr, c) == 0) {
            c->query_in_flight = true;
            c->last_query_ms = clock_mono_ms();
            c->rr++;
            return;
        }
    }
}

/* "+switch-master <name> <old ip> <old port> <new ip> <new port>" */
static void on_switch_master(void *arg, const char *payload, size_t len)
{
    struct redis_cluster *c = arg;
    char buf[512], name[256], oh[128], nh[128];
    int op, np;
    if (len >= sizeof buf) return;
    memcpy(buf, payload, len);
    buf[len] = '\0';
    if (sscanf(buf, "%255s %127s %d %127s %d", name, oh, &op, nh, &np) != 5) return;
    if (strcmp(name, c->master_name) != 0 || np < 1 || np > 65535) return;
    set_master(c, nh, np, "+switch-master");
}

static void on_switch_state(void *arg, bool subscribed, bool after_gap)
{
    struct redis_cluster *c = arg;
    if (subscribed && after_gap) sentinel_query(c); /* we may have missed a switch */
}

static void on_role(void *arg, const redisReply *r, const char *err)
{
    struct redis_cluster *c = arg;
    c->role_in_flight = false;
    if (c->stopped || err != NULL) return;
    int m = atomic_load(&c->master);
    if (m < 0) return;
    bool master = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  strcmp(r->element[0]->str, "master") == 0;
    if (master && !atomic_load(&c->role_ok)) {
        LOG_I("Redis Sentinel: %s:%d confirmed as master (ROLE)", c->nodes[m]->host,
              c->nodes[m]->port);
    } else if (!master && atomic_load(&c->role_ok)) {
        LOG_W("Redis Sentinel: %s:%d is no longer a master (ROLE): not writing to it; asking the "
              "sentinels",
              c->nodes[m]->host, c->nodes[m]->port);
    }
    atomic_store(&c->role_ok, master);
    if (!master) sentinel_query(c);
}

static void role_check(struct redis_cluster *c)
{
    int m = atomic_load(&c->master);
    if (m < 0 || c->role_in_flight || !node_up(c, m)) {
        if (m >= 0 && !node_up(c, m)) atomic_store(&c->role_ok, false);
        return;
    }
    static const char cmd[] = "*1\r\n$4\r\nROLE\r\n";
    if (redis_pool_command_raw(c->nodes[m]->pool, cmd, sizeof cmd - 1, false, on_role, c) == 0)
        c->role_in_flight = true;
}

/* ---- subscriptions ---- */

static void csub_on_message(void *arg, const char *payload, size_t len)
{
    struct redis_csub *s = arg;
    if (s->on_message) s->on_message(s->arg, payload, len);
}

static void csub_on_state(void *arg, bool subscribed, bool after_gap)
{
    struct redis_csub *s = arg;
    s->subscribed = subscribed;
    if (subscribed) {
        bool gap = after_gap || s->moved_gap;
        s->moved_gap = false;
        if (s->on_state) s->on_state(s->arg, true, gap);
    } else {
        s->down_since_ms = clock_mono_ms();
        if (s->on_state) s->on_state(s->arg, false, false);
    }
}

/* Places s on node i (-1: the best node now).  Returns 0 or < 0. */
/* The node pub/sub should live on: the master of the pub/sub slot when known
 * and up, so that PUBLISH (routed there too) and SUBSCRIBE meet on one node
 * and a message is on its way to the subscribers before PUBLISH answers (as
 * on one server; read-your-writes depends on it).  -1: no preference. */
static int pubsub_node(struct redis_cluster *c)
{
    if (is_sentinel(c)) {
        /* The master: a demoted one still gets the messages, by replication, later. */
        int m = atomic_load(&c->master);
        return atomic_load(&c->role_ok) && node_up(c, m) ? m : -1;
    }
    if (c->pubsub_slot < 0 || !atomic_load(&c->map_known)) return -1;
    int i = c->slots[c->pubsub_slot];
    return node_up(c, i) ? i : -1;
}

static int csub_place(struct redis_csub *s, int i)
{
    struct redis_cluster *c = s->c;
    if (i < 0) i = pubsub_node(c);
    if (i < 0) i = is_sentinel(c) ? atomic_load(&c->master) : any_node(c, false);
    if (i < 0 && !is_sentinel(c) && atomic_load(&c->n_nodes) > 0) i = 0; /* connects at start */
    if (i < 0) return -ENOTCONN;
    int rc = redis_pool_subscribe(c->nodes[i]->pool, s->channel, s->channel_len, csub_on_message,
                                  csub_on_state, s, &s->inner);
    if (rc == 0) {
        s->node = i;
        if (s->watch) redis_pool_sub_set_watch(s->inner, s->watch);
    }
    return rc;
}

static void csub_next_state(void *arg, bool subscribed, bool after_gap)
{
    struct redis_csub *s = arg;
    (void)after_gap;
    if (!subscribed) {
        s->next_failed = true; /* dropped by the next tick (not inside its own callback) */
        return;
    }
    /* The new subscription is live: the old one can go without a gap. */
    struct redis_cluster *c = s->c;
    if (s->inner) redis_pool_unsubscribe(c->nodes[s->node]->pool, s->inner);
    LOG_I("Redis: subscription to %.*s moved to %s:%d", (int)s->channel_len, s->channel,
          c->nodes[s->next_node]->host, c->nodes[s->next_node]->port);
    s->inner = s->next_inner;
    s->node = s->next_node;
    s->next_inner = NULL;
    s->next_node = -1;
    s->subscribed = true;
    /* From now on the new subscription reports to the usual handler. */
    redis_pool_sub_set_state_fn(s->inner, csub_on_state);
}

/* Loop thread (a timer): a subscription whose node stays unsubscribed moves;
 * one that is up on another node than the pub/sub node moves there, the new
 * subscription made before the old one is dropped. */
static void csub_maintain(struct redis_cluster *c)
{
    int64_t now = clock_mono_ms();
    for (struct redis_csub *s = c->subs; s; s = s->next) {
        if (s->next_inner && s->next_failed) {
            redis_pool_unsubscribe(c->nodes[s->next_node]->pool, s->next_inner);
            s->next_inner = NULL;
            s->next_node = -1;
            s->next_failed = false;
        }
        int want = pubsub_node(c);
        if (s->subscribed && s->next_inner == NULL && want >= 0 && want != s->node) {
            s->next_node = want;
            s->next_failed = false;
            if (redis_pool_subscribe(c->nodes[want]->pool, s->channel, s->channel_len,
                                     csub_on_message, csub_next_state, s, &s->next_inner) < 0) {
                s->next_inner = NULL;
                s->next_node = -1;
            } else if (s->watch) {
                redis_pool_sub_set_watch(s->next_inner, s->watch);
            }
            continue;
        }
        /* Not placed yet (sentinel mode before the master was known): at
         * once, and no gap (nothing was missed before the first SUBSCRIBE). */
        if (s->node < 0 && s->inner == NULL) {
            csub_place(s, -1);
            continue;
        }
        if (s->subscribed || now - s->down_since_ms < CLUSTER_SUB_MOVE_MS) continue;
        int target = is_sentinel(c) ? atomic_load(&c->master) : any_node(c, false);
        if (target < 0 || target == s->node || !node_up(c, target)) continue;
        if (s->inner) {
            LOG_W("Redis: moving the subscription to %.*s from %s:%d to %s:%d",
                  (int)s->channel_len, s->channel, c->nodes[s->node]->host,
                  c->nodes[s->node]->port, c->nodes[target]->host, c->nodes[target]->port);
            redis_pool_unsubscribe(c->nodes[s->node]->pool, s->inner);
            s->inner = NULL;
        }
        s->moved_gap = true;
        s->down_since_ms = now;
        if (csub_place(s, target) < 0) s->node = -1;
    }
}

int redis_cluster_subscribe(struct redis_cluster *c, const char *channel, size_t channel_len,
                            redis_sub_message_fn on_message, redis_sub_state_fn on_state,
                            void *arg, struct redis_csub **out)
{
    if (c->stopped) return -ENOTCONN;
    struct redis_csub *s = calloc(1, sizeof *s);
    if (s == NULL || (s->channel = malloc(channel_len + 1)) == NULL) {
        free(s);
        return -ENOMEM;
    }
    memcpy(s->channel, channel, channel_len);
    s->channel[channel_len] = '\0';
    s->channel_len = channel_len;
    s->c = c;
    s->on_message = on_message;
    s->on_state = on_state;
    s->arg = arg;
    s->node = -1;
    s->next_node = -1;
    s->down_since_ms = clock_mono_ms();
    csub_place(s, -1); /* sentinel mode before the master is known: placed by a tick */
    s->next = c->subs;
    c->subs = s;
    *out = s;
    return 0;
}

void redis_cluster_sub_set_watch(struct redis_csub *s, struct redis_sub_watch *w)
{
    s->watch = w;
    if (s->inner) redis_pool_sub_set_watch(s->inner, w);
    if (s->next_inner) redis_pool_sub_set_watch(s->next_inner, w);
}

void redis_cluster_unsubscribe(struct redis_cluster *c, struct redis_csub *s)
{
    if (s == NULL) return;
    for (struct redis_csub **pp = &c->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (s->inner) redis_pool_unsubscribe(c->nodes[s->node]->pool, s->inner);
    if (s->next_inner) redis_pool_unsubscribe(c->nodes[s->next_node]->pool, s->next_inner);
    free(s->channel);
    free(s);
}

/* ---- commands ---- */

struct split;

struct cop {
    struct redis_cluster *c;
    redis_reply_fn fn;
    void *arg;
    char *cmd;
    size_t len;
    int slot;
    int target; /* -1: route by slot */
    bool asking;
    int redirects;
    int64_t wait_until_ms;
    struct io_timer *timer;
    struct cop *wprev, *wnext; /* in c->waiting while a timer is armed */
    struct split *parent;
    size_t part;
    /* SCAN across masters: the rank of the master, -1 if not a SCAN walk. */
    int scan_rank;
};

static void cop_free(struct cop *op)
{
    free(op->cmd);
    free(op);
}

static void split_part_done(struct split *sp, size_t part, const redisReply *r, const char *err);

static void scan_deliver(struct cop *op, const redisReply *r);

/* The final answer of op. */
static void cop_deliver(struct cop *op, const redisReply *r, const char *err)
{
    if (op->parent)
        split_part_done(op->parent, op->part, r, err);
    else if (op->scan_rank >= 0 && r != NULL)
        scan_deliver(op, r);
    else
        op->fn(op->arg, r, err);
    cop_free(op);
}

static void cop_done(void *arg, const redisReply *r, const char *err);
static void cop_wait(struct cop *op, int64_t delay_ms);

/* Sends op to its node.  Returns 0, or < 0 without a callback. */
static int cop_send(struct cop *op)
{
    struct redis_cluster *c = op->c;
    if (c->stopped) return -ENOTCONN;
    /* Redirected before the slot map was known: wait for it (cop_resend polls). */
    if (op->redirects > 0 && op->target < 0 && !atomic_load(&c->map_known) && !is_sentinel(c))
        return -ENOTCONN;
    int i = op->target >= 0 ? op->target : route(c, op->slot);
    if (i < 0) {
        request_refresh(c);
        return -ENOTCONN;
    }
    int rc = redis_pool_command_raw(c->nodes[i]->pool, op->cmd, op->len, op->asking, cop_done, op);
    if (rc == -ENOTCONN && op->target < 0) request_refresh(c); /* its master may be gone */
    return rc;
}

/* A resend after a redirect: the target may still be connecting. */
static void cop_resend(struct cop *op)
{
    int rc = cop_send(op);
    if (rc == 0) return;
    if (rc == -ENOTCONN && !op->c->stopped && clock_mono_ms() < op->wait_until_ms) {
        cop_wait(op, CLUSTER_WAIT_POLL_MS);
        return;
    }
    cop_deliver(op, NULL, rc == -ENOTCONN ? "redirect target unavailable" : "cannot resend");
}

static void cop_timer(void *arg)
{
    struct cop *op = arg;
    struct redis_cluster *c = op->c;
    op->timer = NULL;
    if (op->wprev)
        op->wprev->wnext = op->wnext;
    else
        c->waiting = op->wnext;
    if (op->wnext) op->wnext->wprev = op->wprev;
    op->wprev = op->wnext = NULL;
    cop_resend(op);
}

static void cop_wait(struct cop *op, int64_t delay_ms)
{
    struct redis_cluster *c = op->c;
    op->timer = io_timer_start(c->loop, (uint64_t)delay_ms, cop_timer, op);
    if (op->timer == NULL) {
        cop_deliver(op, NULL, "out of memory");
        return;
    }
    op->wprev = NULL;
    op->wnext = c->waiting;
    if (c->waiting) c->waiting->wprev = op;
    c->waiting = op;
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": the slot and the node. */
static int parse_redirect(const char *s, int *slot, int *node, struct redis_cluster *c)
{
    const char *sp = strchr(s, ' ');
    if (sp == NULL) return -1;
    char *end;
    long sl = strtol(sp + 1, &end, 10);
    if (*end != ' ' || sl < 0 || sl >= REDIS_SLOTS) return -1;
    const char *addr = end + 1;
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr) return -1;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) return -1;
    char host[256];
    size_t hl = (size_t)(colon - addr);
    if (hl >= sizeof host) return -1;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    *slot = (int)sl;
    *node = node_find(c, host, (int)port);
    if (*node < 0)
        for (int i = 0; i < c->n_aliases; i++)
            if (c->aliases[i].port == port && strcasecmp(c->aliases[i].host, host) == 0)
                *node = c->aliases[i].node;
    if (*node >= 0) return 0;
    /* A node not seen yet, before the slot map is known: the map will say
     * how to reach it (over TLS, the address in a redirect may be an IP its
     * certificate does not carry, and the map gives the name). */
    if (!atomic_load(&c->map_known) && !is_sentinel(c)) return 1;
    *node = node_get(c, host, (int)port);
    return *node >= 0 ? 0 : -1;
}

static void cop_done(void *arg, const redisReply *r, const char *err)
{
    struct cop *op = arg;
    struct redis_cluster *c = op->c;
    if (err != NULL) {
        if (!is_sentinel(c)) request_refresh(c);
        cop_deliver(op, NULL, err);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR && r->str != NULL && !c->stopped) {
        bool moved = strncmp(r->str, "MOVED ", 6) == 0, ask = strncmp(r->str, "ASK ", 4) == 0;
        if ((moved || ask) && op->redirects < CLUSTER_MAX_REDIRECTS) {
            int slot, node;
            int pr = parse_redirect(r->str, &slot, &node, c);
            if (pr == 1) {
                /* Wait for the slot map, then go where it says. */
                op->redirects++;
                atomic_fetch_add(moved ? &c->moved : &c->ask, 1);
                op->target = -1;
                op->slot = slot;
                op->asking = false;
                op->wait_until_ms = clock_mono_ms() + c->opts.connect_timeout_ms;
                request_refresh(c);
                cop_wait(op, CLUSTER_WAIT_POLL_MS);
                return;
            }
            if (pr == 0) {
                op->redirects++;
                if (moved) {
                    atomic_fetch_add(&c->moved, 1);
                    c->slots[slot] = (int16_t)node;
                    atomic_store(&c->nodes[node]->master, true);
                    request_refresh(c);
                    op->target = -1;
                    op->slot = slot;
                    op->asking = false;
                } else {
                    atomic_fetch_add(&c->ask, 1);
                    op->target = node;
                    op->asking = true;
                }
                op->wait_until_ms = clock_mono_ms() + c->opts.connect_timeout_ms;
                cop_resend(op);
                return;
            }
        }
        if (strncmp(r->str, "TRYAGAIN", 8) == 0 && op->redirects < CLUSTER_MAX_REDIRECTS) {
            /* A multi-key command during a slot migration: its keys are split
             * between the nodes for a moment. */
            atomic_fetch_add(&c->tryagain, 1);
            op->redirects++;
            op->wait_until_ms = clock_mono_ms() + c->opts.connect_timeout_ms;
            cop_wait(op, CLUSTER_TRYAGAIN_MS);
            return;
        }
        if (strncmp(r->str, "CLUSTERDOWN", 11) == 0) request_refresh(c);
        if (strncmp(r->str, "READONLY", 8) == 0 && is_sentinel(c)) {
            atomic_store(&c->role_ok, false);
            sentinel_query(c);
        }
    }
    cop_deliver(op, r, NULL);
}

static struct cop *cop_new(struct redis_cluster *c, char *cmd, size_t len, int slot,
                           redis_reply_fn fn, void *arg)
{
    struct cop *op = calloc(1, sizeof *op);
    if (op == NULL) return NULL;
    op->c = c;
    op->fn = fn;
    op->arg = arg;
    op->cmd = cmd;
    op->len = len;
    op->slot = slot;
    op->target = -1;
    op->scan_rank = -1;
    return op;
}

/* ---- multi-key commands split by slot ---- */

enum split_kind { SPLIT_SUM, SPLIT_MGET, SPLIT_OK };

struct split {
    redis_reply_fn fn;
    void *arg;
    enum split_kind kind;
    size_t pending;
    long long sum;
    char *error; /* the first failure (transport or error reply) */
    bool transport;
    size_t nkeys;
    size_t *part_first; /* MGET: each part's keys, as indexes into the caller's order */
    size_t *part_count;
    size_t *order; /* concatenated per part */
    redisReply **vals; /* MGET: one per key, in the caller's order */
};

static void split_free(struct split *sp)
{
    if (sp->vals) {
        for (size_t i = 0; i < sp->nkeys; i++) {
            if (sp->vals[i]) free(sp->vals[i]->str);
            free(sp->vals[i]);
        }
    }
    free(sp->vals);
    free(sp->error);
    free(sp->part_first);
    free(sp->part_count);
    free(sp->order);
    free(sp);
}

static void split_finish(struct split *sp)
{
    if (sp->error && sp->transport) {
        sp->fn(sp->arg, NULL, sp->error);
    } else if (sp->error) {
        redisReply e = {.type = REDIS_REPLY_ERROR, .str = sp->error, .len = strlen(sp->error)};
        sp->fn(sp->arg, &e, NULL);
    } else if (sp->kind == SPLIT_SUM) {
        redisReply n = {.type = REDIS_REPLY_INTEGER, .integer = sp->sum};
        sp->fn(sp->arg, &n, NULL);
    } else if (sp->kind == SPLIT_OK) {
        redisReply ok = {.type = REDIS_REPLY_STATUS, .str = (char *)"OK", .len = 2};
        sp->fn(sp->arg, &ok, NULL);
    } else {
        redisReply nil = {.type = REDIS_REPLY_NIL};
        redisReply **els = malloc(sp->nkeys * sizeof *els);
        if (els == NULL) {
            sp->fn(sp->arg, NULL, "out of memory");
        } else {
            for (size_t i = 0; i < sp->nkeys; i++) els[i] = sp->vals[i] ? sp->vals[i] : &nil;
            redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = sp->nkeys, .element = els};
            sp->fn(sp->arg, &arr, NULL);
            free(els);
        }
    }
    split_free(sp);
}

static void split_fail(struct split *sp, const char *msg, bool transport)
{
    if (sp->error) return;
    sp->error = strdup(msg);
    sp->transport = transport;
    if (sp->error == NULL) {
        sp->error = strdup("out of memory");
        sp->transport = true;
    }
}

static void split_part_done(struct split *sp, size_t part, const redisReply *r, const char *err)
{
    if (err != NULL) {
        split_fail(sp, err, true);
    } else if (r->type == REDIS_REPLY_ERROR) {
        split_fail(sp, r->str ? r->str : "error", false);
    } else if (sp->kind == SPLIT_SUM && r->type == REDIS_REPLY_INTEGER) {
        sp->sum += r->integer;
    } else if (sp->kind == SPLIT_MGET && r->type == REDIS_REPLY_ARRAY &&
               r->elements == sp->part_count[part]) {
        for (size_t j = 0; j < r->elements; j++) {
            const redisReply *e = r->element[j];
            if (e->type != REDIS_REPLY_STRING) continue;
            redisReply *v = calloc(1, sizeof *v);
            if (v == NULL || (v->str = malloc(e->len + 1)) == NULL) {
                free(v);
                split_fail(sp, "out of memory", true);
                break;
            }
            memcpy(v->str, e->str, e->len);
            v->str[e->len] = '\0';
            v->len = e->len;
            v->type = REDIS_REPLY_STRING;
            sp->vals[sp->order[sp->part_first[part] + j]] = v;
        }
    } else if (sp->kind != SPLIT_OK) {
        split_fail(sp, "unexpected reply to a split command", true);
    }
    if (--sp->pending == 0) split_finish(sp);
}

/* DEL/UNLINK/EXISTS/TOUCH (argv[1..]) or MGET or MSET (pairs) over several
 * slots: one command per slot, answers combined.  Returns 0 (fn will be
 * called) or < 0 (not). */
static int split_command(struct redis_cluster *c, int argc, const char **argv, const size_t *lens,
                         enum split_kind kind, redis_reply_fn fn, void *arg)
{
    int step = kind == SPLIT_OK ? 2 : 1;
    size_t nkeys = (size_t)(argc - 1) / (size_t)step;
    struct split *sp = calloc(1, sizeof *sp);
    int *slot_of = malloc(nkeys * sizeof *slot_of);
    int *parts = malloc(nkeys * sizeof *parts); /* the distinct slots, in first-seen order */
    if (sp == NULL || slot_of == NULL || parts == NULL) goto oom;
    sp->fn = fn;
    sp->arg = arg;
    sp->kind = kind;
    sp->nkeys = nkeys;
    size_t nparts = 0;
    for (size_t k = 0; k < nkeys; k++) {
        size_t a = 1 + k * (size_t)step;
        slot_of[k] = redis_slot(argv[a], lens[a]);
        size_t p = 0;
        while (p < nparts && parts[p] != slot_of[k]) p++;
        if (p == nparts) parts[nparts++] = slot_of[k];
    }
    sp->part_first = calloc(nparts, sizeof *sp->part_first);
    sp->part_count = calloc(nparts, sizeof *sp->part_count);
    sp->order = malloc(nkeys * sizeof *sp->order);
    if (kind == SPLIT_MGET) sp->vals = calloc(nkeys, sizeof *sp->vals);
    if (!sp->part_first || !sp->part_count || !sp->order || (kind == SPLIT_MGET && !sp->vals))
        goto oom;
    size_t pos = 0;
    for (size_t p = 0; p < nparts; p++) {
        sp->part_first[p] = pos;
        for (size_t k = 0; k < nkeys; k++)
            if (slot_of[k] == parts[p]) sp->order[pos++] = k;
        sp->part_count[p] = pos - sp->part_first[p];
    }
    /* Every part is checked routable before any is sent, so that a failure
     * at once leaves nothing in flight. */
    for (size_t p = 0; p < nparts; p++) {
        int i = route(c, parts[p]);
        if (i < 0 || !node_up(c, i)) {
            request_refresh(c);
            free(slot_of);
            free(parts);
            split_free(sp);
            return -ENOTCONN;
        }
    }
    sp->pending = nparts;
    const char **pargv = malloc((size_t)argc * sizeof *pargv);
    size_t *plens = malloc((size_t)argc * sizeof *plens);
    if (pargv == NULL || plens == NULL) {
        free(pargv);
        free(plens);
        goto oom;
    }
    for (size_t p = 0; p < nparts; p++) {
        int pc = 1;
        pargv[0] = argv[0];
        plens[0] = lens[0];
        for (size_t j = 0; j < sp->part_count[p]; j++) {
            size_t a = 1 + sp->order[sp->part_first[p] + j] * (size_t)step;
            for (int s = 0; s < step; s++) {
                pargv[pc] = argv[a + (size_t)s];
                plens[pc++] = lens[a + (size_t)s];
            }
        }
        char *cmd = NULL;
        int len = redisFormatCommandArgv(&cmd, pc, pargv, plens);
        struct cop *op = len >= 0 ? cop_new(c, cmd, (size_t)len, parts[p], fn, arg) : NULL;
        if (op == NULL) {
            free(cmd);
            split_part_done(sp, p, NULL, "out of memory");
            continue;
        }
        op->parent = sp;
        op->part = p;
        int rc = cop_send(op);
        if (rc < 0) {
            op->parent = NULL;
            cop_free(op);
            split_part_done(sp, p, NULL, "node unavailable");
        }
    }
    free(pargv);
    free(plens);
    free(slot_of);
    free(parts);
    return 0;
oom:
    free(slot_of);
    free(parts);
    if (sp) split_free(sp);
    return -ENOMEM;
}

/* ---- SCAN over every master ---- */

/* The nodes of the slot map, in index order; returns the count. */
static int master_list(struct redis_cluster *c, int *out)
{
    int n = atomic_load(&c->n_nodes), m = 0;
    for (int i = 0; i < n; i++)
        if (atomic_load(&c->nodes[i]->master)) out[m++] = i;
    return m;
}

static void scan_deliver(struct cop *op, const redisReply *r)
{
    struct redis_cluster *c = op->c;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        op->fn(op->arg, r, NULL);
        return;
    }
    int masters[CLUSTER_MAX_NODES];
    int m = master_list(c, masters);
    char cur[40];
    if (strcmp(r->element[0]->str, "0") != 0)
        snprintf(cur, sizeof cur, "9%02d%s", op->scan_rank, r->element[0]->str);
    else if (op->scan_rank + 1 < m)
        snprintf(cur, sizeof cur, "9%02d0", op->scan_rank + 1);
    else
        snprintf(cur, sizeof cur, "0");
    redisReply c0 = {.type = REDIS_REPLY_STRING, .str = cur, .len = strlen(cur)};
    redisReply *els[2] = {&c0, r->element[1]};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = els};
    op->fn(op->arg, &arr, NULL);
}

static int scan_command(struct redis_cluster *c, int argc, const char **argv, const size_t *lens,
                        redis_reply_fn fn, void *arg)
{
    char cur[32];
    if (lens[1] == 0 || lens[1] >= sizeof cur) return -EINVAL;
    memcpy(cur, argv[1], lens[1]);
    cur[lens[1]] = '\0';
    int rank = 0;
    const char *real = "0";
    if (strcmp(cur, "0") != 0) {
        if (cur[0] != '9' || strlen(cur) < 4 || strspn(cur, "0123456789") != strlen(cur))
            return -EINVAL;
        rank = (cur[1] - '0') * 10 + (cur[2] - '0');
        real = cur + 3;
    }
    int masters[CLUSTER_MAX_NODES];
    int m = master_list(c, masters);
    if (rank >= m) return m == 0 ? -ENOTCONN : -EINVAL;
    const char **av = malloc((size_t)argc * sizeof *av);
    size_t *ls = malloc((size_t)argc * sizeof *ls);
    if (av == NULL || ls == NULL) {
        free(av);
        free(ls);
        return -ENOMEM;
    }
    memcpy(av, argv, (size_t)argc * sizeof *av);
    memcpy(ls, lens, (size_t)argc * sizeof *ls);
    av[1] = real;
    ls[1] = strlen(real);
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, av, ls);
    free(av);
    free(ls);
    if (len < 0) return -ENOMEM;
    struct cop *op = cop_new(c, cmd, (size_t)len, REDIS_SLOT_ANY, fn, arg);
    if (op == NULL) {
        free(cmd);
        return -ENOMEM;
    }
    op->target = masters[rank];
    op->scan_rank = rank;
    int rc = cop_send(op);
    if (rc < 0) cop_free(op);
    return rc;
}

static bool cmd_is(const char *a, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(a, name, len) == 0;
}

int redis_cluster_command(struct redis_cluster *c, int argc, const char **argv,
                          const size_t *lens, redis_reply_fn fn, void *arg)
{
    if (argc < 1 || argv == NULL || fn == NULL) return -EINVAL;
    if (c->stopped || !c->started) return -ENOTCONN;
    bool cluster = !is_sentinel(c) && !atomic_load(&c->standalone);
    if (cluster && argc >= 2 && cmd_is(argv[0], lens[0], "SCAN") && atomic_load(&c->map_known))
        return scan_command(c, argc, argv, lens, fn, arg);
    int slot = redis_slot_of_command(argc, argv, lens);
    /* PUBLISH to the pub/sub node; any node when that one is down (the cluster
     * bus carries it to every node, a little later). */
    if (cluster && c->pubsub_slot >= 0 && cmd_is(argv[0], lens[0], "PUBLISH") &&
        atomic_load(&c->map_known) && node_up(c, c->slots[c->pubsub_slot]))
        slot = c->pubsub_slot;
    if (slot == REDIS_SLOT_CROSS && cluster) {
        const char *a = argv[0];
        size_t l = lens[0];
        if (cmd_is(a, l, "DEL") || cmd_is(a, l, "UNLINK") || cmd_is(a, l, "EXISTS") ||
            cmd_is(a, l, "TOUCH"))
            return split_command(c, argc, argv, lens, SPLIT_SUM, fn, arg);
        if (cmd_is(a, l, "MGET")) return split_command(c, argc, argv, lens, SPLIT_MGET, fn, arg);
        if (cmd_is(a, l, "MSET") && argc % 2 == 1)
            return split_command(c, argc, argv, lens, SPLIT_OK, fn, arg);
        LOG_D("redis: a %.*s over several slots cannot run on a cluster", (int)l, a);
        return -EINVAL;
    }
    if (slot == REDIS_SLOT_CROSS) slot = REDIS_SLOT_ANY;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) return -ENOMEM;
    struct cop *op = cop_new(c, cmd, (size_t)len, slot, fn, arg);
    if (op == NULL) {
        free(cmd);
        return -ENOMEM;
    }
    int rc = cop_send(op);
    if (rc < 0) cop_free(op);
    return rc;
}

int redis_cluster_ping(struct redis_cluster *c, redis_reply_fn fn, void *arg)
{
    if (c->stopped || !c->started) return -ENOTCONN;
    int i = is_sentinel(c) ? route(c, 0) : any_node(c, false);
    if (i < 0) return -ENOTCONN;
    return redis_pool_ping(c->nodes[i]->pool, fn, arg);
}

/* ---- periodic work ---- */

static void tick(void *arg)
{
    struct redis_cluster *c = arg;
    c->tick_timer = NULL;
    if (c->stopped) return;
    int64_t now = clock_mono_ms();
    if (is_sentinel(c)) {
        if (now - c->last_query_ms >= SENTINEL_QUERY_MS || atomic_load(&c->master) < 0)
            sentinel_query(c);
        role_check(c);
    } else if (!atomic_load(&c->standalone)) {
        bool down = !atomic_load(&c->map_known);
        int n = atomic_load(&c->n_nodes);
        for (int i = 0; i < n && !down; i++)
            if (atomic_load(&c->nodes[i]->master) && !node_up(c, i)) down = true;
        if (down || now - c->last_refresh_ms >= CLUSTER_REFRESH_IDLE_MS) request_refresh(c);
    }
    csub_maintain(c);
    c->tick_timer = io_timer_start(c->loop, CLUSTER_TICK_MS, tick, c);
}

/* Every subscription is up on the node it should live on. */
static bool subs_settled(struct redis_cluster *c)
{
    int want = -1;
    if (is_sentinel(c))
        want = atomic_load(&c->master);
    else if (c->pubsub_slot >= 0 && atomic_load(&c->map_known))
        want = c->slots[c->pubsub_slot];
    for (struct redis_csub *s = c->subs; s; s = s->next)
        if (!s->subscribed || (want >= 0 && s->node != want)) return false;
    return true;
}

/* A first look as soon as a seed answers, not half a second later; and
 * until the subscriptions sit on their node (read-your-writes from the
 * start), every 20 ms for at most 10 s. */
static void early_tick(void *arg)
{
    struct redis_cluster *c = arg;
    c->early_timer = NULL;
    if (c->stopped || clock_mono_ms() > c->early_until_ms) return;
    bool any = is_sentinel(c) ? c->n_sentinels > 0 && redis_pool_available(c->sentinels[0])
                              : any_node(c, false) >= 0;
    if (any) {
        if (c->tick_timer) io_timer_cancel(c->loop, c->tick_timer);
        tick(c);
        bool done = is_sentinel(c) ? atomic_load(&c->role_ok) : atomic_load(&c->map_known);
        if (done && subs_settled(c)) return;
    }
    c->early_timer = io_timer_start(c->loop, 20, early_tick, c);
}

/* ---- life cycle ---- */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int redis_cluster_create(struct io_loop *loop, const struct redis_pool_options *o,
                         struct redis_cluster **out, char *err, size_t errlen)
{
    *out = NULL;
    struct redis_cluster *c = calloc(1, sizeof *c);
    if (c == NULL) return -ENOMEM;
    c->loop = loop;
    c->mode = o->mode;
    c->opts = *o;
    c->opts.sentinels = NULL;
    c->opts.n_sentinels = 0;
    c->opts.sentinel_master = c->opts.sentinel_password = NULL;
    if (c->opts.connect_timeout_ms == 0) c->opts.connect_timeout_ms = 2000;
    c->url.tls = o->url->tls;
    c->url.db = o->url->db;
    c->url.user = dup_or_null(o->url->user);
    c->url.password = dup_or_null(o->url->password);
    c->tls_ca = dup_or_null(o->tls_ca_file);
    c->tls_cert = dup_or_null(o->tls_cert_file);
    c->tls_key = dup_or_null(o->tls_key_file);
    c->opts.tls_ca_file = c->tls_ca;
    c->opts.tls_cert_file = c->tls_cert;
    c->opts.tls_key_file = c->tls_key;
    atomic_init(&c->master, -1);
    c->pubsub_slot = -1;
    for (int s = 0; s < REDIS_SLOTS; s++) c->slots[s] = -1;
    int rc = -EINVAL;
    if (c->mode == REDIS_POOL_SENTINEL) {
        if (o->n_sentinels == 0 || o->sentinel_master == NULL) {
            snprintf(err, errlen, "sentinel mode needs sentinels and a master name");
            goto fail;
        }
        c->master_name = strdup(o->sentinel_master);
        for (size_t i = 0; i < o->n_sentinels && i < CLUSTER_MAX_SENTINELS; i++) {
            struct redis_url u = {.tls = o->sentinel_tls,
                                  .host = o->sentinels[i].host,
                                  .port = o->sentinels[i].port,
                                  .password = (char *)o->sentinel_password};
            struct redis_pool_options so = c->opts;
            so.mode = REDIS_POOL_STANDALONE;
            so.url = &u;
            so.pool_size = 1;
            so.retries = 0;
            so.breaker_threshold = -1;
            rc = redis_pool_create(loop, &so, &c->sentinels[c->n_sentinels], err, errlen);
            if (rc < 0) goto fail;
            c->n_sentinels++;
        }
        rc = redis_pool_subscribe(c->sentinels[0], "+switch-master", 14, on_switch_master,
                                  on_switch_state, c, &c->switch_sub);
        if (rc < 0) goto fail;
    } else {
        for (size_t i = 0; i < o->url->n_nodes || (i == 0 && o->url->n_nodes == 0); i++) {
            const char *h = o->url->n_nodes ? o->url->nodes[i].host : o->url->host;
            int port = o->url->n_nodes ? o->url->nodes[i].port : o->url->port;
            struct node *nd = calloc(1, sizeof *nd);
            if (nd == NULL || (nd->host = strdup(h)) == NULL) {
                free(nd);
                rc = -ENOMEM;
                goto fail;
            }
            nd->port = port;
            nd->pool = data_pool(c, h, port, err, errlen);
            if (nd->pool == NULL) {
                free(nd->host);
                free(nd);
                rc = -EINVAL;
                goto fail;
            }
            c->nodes[c->n_seeds++] = nd;
            atomic_store(&c->n_nodes, c->n_seeds);
        }
    }
    *out = c;
    return 0;
fail:
    redis_cluster_destroy(c);
    return rc;
}

void redis_cluster_start(struct redis_cluster *c)
{
    if (c->started || c->stopped) return;
    c->started = true;
    int n = atomic_load(&c->n_nodes);
    for (int i = 0; i < n; i++) redis_pool_start(c->nodes[i]->pool);
    for (int i = 0; i < c->n_sentinels; i++) redis_pool_start(c->sentinels[i]);
    c->tick_timer = io_timer_start(c->loop, CLUSTER_TICK_MS, tick, c);
    c->early_until_ms = clock_mono_ms() + 10000;
    c->early_timer = io_timer_start(c->loop, 20, early_tick, c);
}

void redis_cluster_stop(struct redis_cluster *c)
{
    if (c->stopped) return;
    c->stopped = true;
    if (c->tick_timer) io_timer_cancel(c->loop, c->tick_timer);
    if (c->throttle_timer) io_timer_cancel(c->loop, c->throttle_timer);
    if (c->early_timer) io_timer_cancel(c->loop, c->early_timer);
    c->tick_timer = c->throttle_timer = c->early_timer = NULL;
    while (c->waiting) {
        struct cop *op = c->waiting;
        c->waiting = op->wnext;
        io_timer_cancel(c->loop, op->timer);
        cop_deliver(op, NULL, "pool stopped");
    }
    int n = atomic_load(&c->n_nodes);
    for (int i = 0; i < n; i++) redis_pool_stop(c->nodes[i]->pool);
    for (int i = 0; i < c->n_sentinels; i++) redis_pool_stop(c->sentinels[i]);
}

void redis_cluster_destroy(struct redis_cluster *c)
{
    if (c == NULL) return;
    while (c->subs) redis_cluster_unsubscribe(c, c->subs);
    int n = atomic_load(&c->n_nodes);
    for (int i = 0; i < n; i++) {
        redis_pool_destroy(c->nodes[i]->pool);
        free(c->nodes[i]->host);
        free(c->nodes[i]);
    }
    if (c->switch_sub && c->n_sentinels > 0) redis_pool_unsubscribe(c->sentinels[0], c->switch_sub);
    for (int i = 0; i < c->n_sentinels; i++) redis_pool_destroy(c->sentinels[i]);
    for (int i = 0; i < c->n_aliases; i++) free(c->aliases[i].host);
    free(c->master_name);
    free(c->url.user);
    if (c->url.password) {
        memset(c->url.password, 0, strlen(c->url.password));
        free(c->url.password);
    }
    free(c->tls_ca);
    free(c->tls_cert);
    free(c->tls_key);
    free(c);
}

/* ---- any-thread views ---- */

bool redis_cluster_available(const struct redis_cluster *c)
{
    struct redis_cluster *m = (struct redis_cluster *)c;
    if (is_sentinel(m)) {
        int i = atomic_load(&m->master);
        return i >= 0 && atomic_load(&m->role_ok) && node_up(m, i);
    }
    int n = atomic_load_explicit(&m->n_nodes, memory_order_acquire);
    bool known = atomic_load(&m->map_known);
    for (int i = 0; i < n; i++)
        if ((!known || atomic_load(&m->nodes[i]->master)) && node_up(m, i)) return true;
    return false;
}

int redis_cluster_connected(const struct redis_cluster *c)
{
    struct redis_cluster *m = (struct redis_cluster *)c;
    int n = atomic_load_explicit(&m->n_nodes, memory_order_acquire), sum = 0;
    for (int i = 0; i < n; i++) sum += redis_pool_connected(m->nodes[i]->pool);
    return sum;
}

double redis_cluster_last_latency_ms(const struct redis_cluster *c)
{
    struct redis_cluster *m = (struct redis_cluster *)c;
    int n = atomic_load_explicit(&m->n_nodes, memory_order_acquire);
    double best = -1.0;
    for (int i = 0; i < n; i++) {
        if (!atomic_load(&m->nodes[i]->master) && atomic_load(&m->map_known)) continue;
        double l = redis_pool_last_latency_ms(m->nodes[i]->pool);
        if (l > best) best = l; /* the slowest master: what a request may wait for */
    }
    return best;
}

void redis_cluster_get_stats(const struct redis_cluster *c, struct redis_pool_stats *out)
{
    struct redis_cluster *m = (struct redis_cluster *)c;
    memset(out, 0, sizeof *out);
    int n = atomic_load_explicit(&m->n_nodes, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        struct redis_pool_stats s;
        redis_pool_get_stats(m->nodes[i]->pool, &s);
        out->err_timeout += s.err_timeout;
        out->err_protocol += s.err_protocol;
        out->err_refused += s.err_refused;
        out->err_closed += s.err_closed;
        out->breaker_opens += s.breaker_opens;
        bool counts = atomic_load(&m->nodes[i]->master) || !atomic_load(&m->map_known);
        if (counts && s.breaker > out->breaker) out->breaker = s.breaker;
    }
}

void redis_cluster_get_topology(const struct redis_cluster *c, struct redis_topology *out)
{
    struct redis_cluster *m = (struct redis_cluster *)c;
    memset(out, 0, sizeof *out);
    out->mode = is_sentinel(m)                   ? "sentinel"
                : atomic_load(&m->standalone) ? "standalone"
                                              : "cluster";
    int n = atomic_load_explicit(&m->n_nodes, memory_order_acquire);
    out->nodes_known = n;
    for (int i = 0; i < n; i++) {
        if (!node_up(m, i)) continue;
        out->nodes_up++;
        if (atomic_load(&m->nodes[i]->master)) out->masters_up++;
    }
    out->masters = atomic_load(&m->masters);
    int64_t at = atomic_load(&m->map_loaded_ms);
    out->map_age_ms = at ? clock_mono_ms() - at : -1;
    out->moved = atomic_load(&m->moved);
    out->ask = atomic_load(&m->ask);
    out->tryagain = atomic_load(&m->tryagain);
    out->refreshes = atomic_load(&m->refreshes);
    out->failovers = atomic_load(&m->failovers);
}

void redis_cluster_set_pubsub_key(struct redis_cluster *c, const char *key, size_t len)
{
    c->pubsub_slot = redis_slot(key, len);
}
