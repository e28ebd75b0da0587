/* upstream_set.c - see upstream_set.h. */
#include "upstream_set.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "balancer.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"
#include "upstream_health.h"

struct upstream_instance {
    atomic_int refs;
    char *upstream; /* the group's name (instances are per name and URL) */
    char *url;
    uint64_t id; /* balancer_instance_id */
    struct upstream_health health;
    atomic_llong inflight;
    atomic_ullong requests, failures;
    /* What the newest group holding the instance says (an apply may change it). */
    pthread_mutex_t cfg_lock;
    struct upstream_health_params hp;
    char *probe_path; /* NULL: no active checks */
    int probe_interval_ms, probe_timeout_ms;
    int dns_ttl_s; /* the probes resolve the name as the group's requests do */
    atomic_bool retired; /* no live group holds it: stop probing */
    /* Loop thread only. */
    bool probing; /* a timer or a probe is pending (it holds a reference) */
    struct upstream_registry *reg;
};

struct upstream_group {
    atomic_int refs;
    struct upstream_config cfg; /* owned copy */
    int connect_timeout_ms, timeout_ms;
    struct upstream_instance **inst;
    struct balancer_slot *slots;
    size_t n;
    pthread_mutex_t lock; /* picks */
    uint64_t rotate;
};

struct upstream_registry {
    struct upstream_registry_options o;
    pthread_mutex_t lock; /* groups, probing */
    struct upstream_group **groups;
    size_t n_groups;
    /* The groups the previous apply replaced: a request the previous policy generation
     * decided may still name one the new generation dropped (released on the next apply). */
    struct upstream_group **prev;
    size_t n_prev;
    /* Instances whose probe chain holds a reference, released at destroy (after the loop
     * stopped, no timer of theirs fires any more). */
    struct upstream_instance **probing;
    size_t n_probing, cap_probing;
};

static atomic_ullong upstream_retries;
static struct upstream_registry *_Atomic upstream_global;

/* ---- instances ---------------------------------------------------------------------------- */

static struct upstream_instance *upstream_instance_new(const char *upstream, const char *url,
                                                       struct upstream_registry *reg)
{
    struct upstream_instance *i = calloc(1, sizeof *i);
    if (i == NULL) return NULL;
    i->upstream = strdup(upstream);
    i->url = strdup(url);
    if (i->upstream == NULL || i->url == NULL) {
        free(i->upstream);
        free(i->url);
        free(i);
        return NULL;
    }
    atomic_init(&i->refs, 1);
    i->id = balancer_instance_id(url);
    i->reg = reg;
    upstream_health_init(&i->health);
    pthread_mutex_init(&i->cfg_lock, NULL);
    return i;
}

struct upstream_instance *upstream_instance_ref(struct upstream_instance *i)
{
    atomic_fetch_add(&i->refs, 1);
    return i;
}

void upstream_instance_unref(struct upstream_instance *i)
{
    if (i == NULL || atomic_fetch_sub(&i->refs, 1) != 1) return;
    upstream_health_destroy(&i->health);
    pthread_mutex_destroy(&i->cfg_lock);
    free(i->probe_path);
    free(i->upstream);
    free(i->url);
    free(i);
}

const char *upstream_instance_url(const struct upstream_instance *i) { return i->url; }

/* Takes the group's settings (the newest apply wins for an instance shared across two). */
static int upstream_instance_configure(struct upstream_instance *i, const struct upstream_config *c)
{
    char *path = c->health.path ? strdup(c->health.path) : NULL;
    if (c->health.path != NULL && path == NULL) return -ENOMEM;
    pthread_mutex_lock(&i->cfg_lock);
    i->hp = (struct upstream_health_params){
        .max_fails = c->max_fails > 0 ? c->max_fails : 3,
        .fail_timeout_ms = c->fail_timeout_ms > 0 ? c->fail_timeout_ms : 10000,
        .active = path != NULL,
        .healthy = c->health.healthy > 0 ? c->health.healthy : 2,
        .unhealthy = c->health.unhealthy > 0 ? c->health.unhealthy : 3,
    };
    free(i->probe_path);
    i->probe_path = path;
    i->probe_interval_ms = c->health.interval_ms > 0 ? c->health.interval_ms : 5000;
    i->probe_timeout_ms = c->health.timeout_ms > 0 ? c->health.timeout_ms : 1000;
    i->dns_ttl_s = c->dns_ttl_s;
    pthread_mutex_unlock(&i->cfg_lock);
    return 0;
}

static struct upstream_health_params upstream_instance_params(struct upstream_instance *i)
{
    pthread_mutex_lock(&i->cfg_lock);
    struct upstream_health_params p = i->hp;
    pthread_mutex_unlock(&i->cfg_lock);
    return p;
}

static void upstream_log_change(struct upstream_instance *i, int change, const char *how)
{
    if (change < 0) {
        char why[128];
        pthread_mutex_lock(&i->health.lock);
        snprintf(why, sizeof why, "%s", i->health.reason);
        pthread_mutex_unlock(&i->health.lock);
        LOG_W("upstream %s: instance %s is DOWN (%s: %s)", i->upstream, i->url, how, why);
    } else if (change > 0) {
        LOG_I("upstream %s: instance %s is UP again (%s)", i->upstream, i->url, how);
    }
}

/* ---- active checks (loop thread) ---------------------------------------------------------- */

static void upstream_probe_timer(void *arg);

static void upstream_probe_schedule(struct upstream_instance *i, int delay_ms)
{
    if (io_timer_start(i->reg->o.loop, (uint64_t)delay_ms, upstream_probe_timer, i) == NULL) {
        LOG_E("upstream %s: cannot schedule the health check of %s", i->upstream, i->url);
        i->probing = false; /* the registry still holds the chain's reference */
    }
}

static void upstream_probe_ready(struct upstream_fetch *f)
{
    struct upstream_instance *i = f->arg;
    bool ok = f->error == UPSTREAM_OK && f->status >= 200 && f->status < 400;
    char why[200];
    if (f->error != UPSTREAM_OK)
        snprintf(why, sizeof why, "health check: %s", f->errmsg);
    else
        snprintf(why, sizeof why, "health check answered %d", f->status);
    struct upstream_health_params p = upstream_instance_params(i);
    int change = upstream_health_probe(&i->health, &p, ok, why, clock_mono_ms());
    upstream_log_change(i, change, "active check");
    upstream_fetch_clear(f); /* drops f->instance's reference too */
    free(f);
    pthread_mutex_lock(&i->cfg_lock);
    int interval = i->probe_interval_ms;
    bool active = i->probe_path != NULL;
    pthread_mutex_unlock(&i->cfg_lock);
    if (atomic_load(&i->retired) || !active) {
        i->probing = false;
        return;
    }
    upstream_probe_schedule(i, interval);
}

/* The proxy is going away with this probe in flight (proxy_destroy): free it. */
static void upstream_probe_abandon(struct upstream_fetch *f)
{
    upstream_fetch_clear(f); /* drops f->instance's reference */
    free(f);
}

static void upstream_probe_timer(void *arg)
{
    struct upstream_instance *i = arg;
    pthread_mutex_lock(&i->cfg_lock);
    char *path = i->probe_path ? strdup(i->probe_path) : NULL;
    int timeout = i->probe_timeout_ms;
    int interval = i->probe_interval_ms;
    int dns_ttl_s = i->dns_ttl_s;
    pthread_mutex_unlock(&i->cfg_lock);
    if (atomic_load(&i->retired) || path == NULL) {
        free(path);
        i->probing = false;
        return;
    }
    struct upstream_fetch *f = calloc(1, sizeof *f);
    if (f == NULL) {
        free(path);
        upstream_probe_schedule(i, interval);
        return;
    }
    f->method = "GET";
    f->target = path;
    f->instance = upstream_instance_ref(i);
    f->connect_timeout_ms = timeout;
    f->timeout_ms = timeout;
    f->dns_ttl_s = dns_ttl_s;
    f->on_ready = upstream_probe_ready;
    f->on_abandon = upstream_probe_abandon;
    f->arg = i;
    if (header_list_add(&f->req_headers, "User-Agent", "cachegw-health-check") != 0 ||
        proxy_submit(i->reg->o.proxy, f) != 0) {
        upstream_fetch_clear(f);
        free(f);
        upstream_probe_schedule(i, interval);
    }
}

/* Loop thread: starts an instance's probe chain unless one runs.  arg holds a reference
 * (the chain's, or dropped here when a chain already runs). */
static void upstream_probe_start(void *arg)
{
    struct upstream_instance *i = arg;
    struct upstream_registry *r = i->reg;
    if (i->probing || atomic_load(&i->retired)) {
        upstream_instance_unref(i);
        return;
    }
    pthread_mutex_lock(&r->lock);
    bool known = false;
    for (size_t k = 0; k < r->n_probing; k++) known |= r->probing[k] == i;
    if (!known && r->n_probing == r->cap_probing) {
        size_t cap = r->cap_probing ? r->cap_probing * 2 : 16;
        void *p = realloc(r->probing, cap * sizeof *r->probing);
        if (p != NULL) {
            r->probing = p;
            r->cap_probing = cap;
        }
    }
    if (!known && r->n_probing < r->cap_probing) {
        r->probing[r->n_probing++] = i; /* takes arg's reference */
        known = true;
    } else {
        upstream_instance_unref(i); /* the registry already holds one for the chain */
    }
    pthread_mutex_unlock(&r->lock);
    if (!known) return;
    i->probing = true;
    pthread_mutex_lock(&i->cfg_lock);
    int interval = i->probe_interval_ms;
    pthread_mutex_unlock(&i->cfg_lock);
    /* A random first delay, so instances (and gateways) do not probe in step. */
    unsigned rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) rnd = 0;
    upstream_probe_schedule(i, interval > 1 ? (int)(rnd % (unsigned)interval) : 0);
}

/* ---- groups ------------------------------------------------------------------------------- */

struct upstream_group *upstream_group_ref(struct upstream_group *g)
{
    atomic_fetch_add(&g->refs, 1);
    return g;
}

void upstream_group_unref(struct upstream_group *g)
{
    if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (size_t k = 0; k < g->n; k++) upstream_instance_unref(g->inst[k]);
    free(g->inst);
    free(g->slots);
    pthread_mutex_destroy(&g->lock);
    free(g->cfg.name);
    for (size_t k = 0; k < g->cfg.n_servers; k++) free(g->cfg.servers[k].url);
    free(g->cfg.servers);
    free(g->cfg.health.path);
    free(g);
}

const char *upstream_group_name(const struct upstream_group *g) { return g->cfg.name; }
const struct upstream_config *upstream_group_config(const struct upstream_group *g)
{
    return &g->cfg;
}
int upstream_group_connect_timeout_ms(const struct upstream_group *g)
{
    return g->connect_timeout_ms;
}
int upstream_group_timeout_ms(const struct upstream_group *g) { return g->timeout_ms; }

/* The instance called url in the live groups named name, or NULL.  Registry lock held. */
static struct upstream_instance *upstream_find(struct upstream_registry *r, const char *name,
                                               const char *url)
{
    for (size_t g = 0; g < r->n_groups; g++) {
        if (strcmp(r->groups[g]->cfg.name, name) != 0) continue;
        for (size_t k = 0; k < r->groups[g]->n; k++)
            if (strcmp(r->groups[g]->inst[k]->url, url) == 0) return r->groups[g]->inst[k];
    }
    return NULL;
}

/* Registry lock held (instances are looked up in the live groups). */
static struct upstream_group *upstream_group_build(struct upstream_registry *r,
                                                   const struct upstream_config *c)
{
    struct upstream_group *g = calloc(1, sizeof *g);
    if (g == NULL) return NULL;
    atomic_init(&g->refs, 1);
    pthread_mutex_init(&g->lock, NULL);
    struct upstream_config *copy = upstream_configs_dup(c, 1);
    g->inst = calloc(c->n_servers ? c->n_servers : 1, sizeof *g->inst);
    g->slots = calloc(c->n_servers ? c->n_servers : 1, sizeof *g->slots);
    if (copy == NULL || g->inst == NULL || g->slots == NULL) {
        upstream_configs_free(copy, copy ? 1 : 0);
        upstream_group_unref(g);
        return NULL;
    }
    g->cfg = *copy;
    free(copy); /* the strings now belong to g->cfg */
    g->connect_timeout_ms = c->connect_timeout_ms > 0 ? c->connect_timeout_ms
                                                      : r->o.connect_timeout_ms;
    g->timeout_ms = c->timeout_ms > 0 ? c->timeout_ms : r->o.timeout_ms;
    for (size_t k = 0; k < c->n_servers; k++) {
        struct upstream_instance *i = upstream_find(r, c->name, c->servers[k].url);
        i = i ? upstream_instance_ref(i) : upstream_instance_new(c->name, c->servers[k].url, r);
        if (i == NULL || upstream_instance_configure(i, c) != 0) {
            upstream_instance_unref(i);
            upstream_group_unref(g);
            return NULL;
        }
        g->inst[g->n] = i;
        g->slots[g->n].weight = c->servers[k].weight > 0 ? c->servers[k].weight : 1;
        g->slots[g->n].id = i->id;
        g->n++;
    }
    return g;
}

size_t upstream_group_size(const struct upstream_group *g) { return g->n; }

int upstream_group_max_connections(const struct upstream_group *g)
{
    return g->cfg.max_connections;
}

struct upstream_instance *upstream_group_pick(struct upstream_group *g, const char *key,
                                              struct upstream_instance *const *tried,
                                              size_t n_tried)
{
    if (g->n == 0) return NULL;
    int64_t now = clock_mono_ms();
    int max_conn = g->cfg.max_connections;
    pthread_mutex_lock(&g->lock);
    int pick = -1;
    /* Pass 0: healthy, untried.  1: untried.  2: anything.  Each below the bound: the bound
     * is hard (a request over it waits in the proxy, proxy.h), health and retries are not. */
    for (int pass = 0; pass < 3 && pick < 0; pass++) {
        bool any = false;
        for (size_t k = 0; k < g->n; k++) {
            struct upstream_instance *i = g->inst[k];
            bool was_tried = false;
            for (size_t t = 0; t < n_tried; t++) was_tried |= tried[t] == i;
            g->slots[k].inflight = atomic_load(&i->inflight);
            bool ok = (pass == 2 || !was_tried) &&
                      (max_conn <= 0 || g->slots[k].inflight < max_conn);
            if (ok && pass == 0) {
                struct upstream_health_params p = upstream_instance_params(i);
                ok = upstream_health_eligible(&i->health, &p, now);
            }
            g->slots[k].eligible = ok;
            any |= ok;
        }
        if (!any) continue;
        switch (g->cfg.balance) {
        case UPSTREAM_BALANCE_LEAST_CONN:
            pick = balancer_pick_least_conn(g->slots, g->n, g->rotate++);
            break;
        case UPSTREAM_BALANCE_HASH:
            pick = balancer_pick_hash(g->slots, g->n, key ? key : "", key ? strlen(key) : 0);
            break;
        case UPSTREAM_BALANCE_ROUND_ROBIN:
            pick = balancer_pick_round_robin(g->slots, g->n);
            break;
        }
    }
    if (pick < 0) { /* every instance is at max_connections */
        pthread_mutex_unlock(&g->lock);
        return NULL;
    }
    struct upstream_instance *i = upstream_instance_ref(g->inst[pick]);
    pthread_mutex_unlock(&g->lock);
    atomic_fetch_add(&i->inflight, 1);
    atomic_fetch_add(&i->requests, 1);
    return i;
}

void upstream_instance_done(struct upstream_group *g, struct upstream_instance *i,
                            enum upstream_attempt a, int status, const char *why)
{
    (void)g;
    atomic_fetch_sub(&i->inflight, 1);
    if (a == UPSTREAM_ATTEMPT_ABORTED) return;
    bool ok = a == UPSTREAM_ATTEMPT_OK;
    if (!ok) atomic_fetch_add(&i->failures, 1);
    char buf[64];
    if (why == NULL && status > 0) {
        snprintf(buf, sizeof buf, "HTTP %d", status);
        why = buf;
    }
    struct upstream_health_params p = upstream_instance_params(i);
    int change = upstream_health_report(&i->health, &p, ok, why, clock_mono_ms());
    if (change < 0) {
        char how[64];
        snprintf(how, sizeof how, "%d consecutive failures", p.max_fails);
        upstream_log_change(i, change, how);
    } else {
        upstream_log_change(i, change, "a request succeeded after the cool-down");
    }
}

/* ---- the registry ------------------------------------------------------------------------- */

int upstream_registry_create(const struct upstream_registry_options *o,
                             struct upstream_registry **out)
{
    struct upstream_registry *r = calloc(1, sizeof *r);
    if (r == NULL) return -ENOMEM;
    r->o = *o;
    pthread_mutex_init(&r->lock, NULL);
    *out = r;
    return 0;
}

void upstream_registry_destroy(struct upstream_registry *r)
{
    if (r == NULL) return;
    if (upstream_registry_global() == r) upstream_registry_set_global(NULL);
    for (size_t k = 0; k < r->n_groups; k++) upstream_group_unref(r->groups[k]);
    free(r->groups);
    for (size_t k = 0; k < r->n_prev; k++) upstream_group_unref(r->prev[k]);
    free(r->prev);
    for (size_t k = 0; k < r->n_probing; k++) upstream_instance_unref(r->probing[k]);
    free(r->probing);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static bool upstream_in_groups(struct upstream_group **gs, size_t n,
                               const struct upstream_instance *i)
{
    for (size_t g = 0; g < n; g++)
        for (size_t k = 0; k < gs[g]->n; k++)
            if (gs[g]->inst[k] == i) return true;
    return false;
}

int upstream_registry_apply(struct upstream_registry *r, const struct upstream_config *c,
                            size_t n)
{
    struct upstream_group **fresh = calloc(n ? n : 1, sizeof *fresh);
    if (fresh == NULL) return -ENOMEM;
    pthread_mutex_lock(&r->lock);
    for (size_t k = 0; k < n; k++) {
        if ((fresh[k] = upstream_group_build(r, &c[k])) == NULL) {
            pthread_mutex_unlock(&r->lock);
            for (size_t j = 0; j < k; j++) upstream_group_unref(fresh[j]);
            free(fresh);
            return -ENOMEM;
        }
    }
    struct upstream_group **old = r->groups, **older = r->prev;
    size_t n_old = r->n_groups, n_older = r->n_prev;
    r->groups = fresh;
    r->n_groups = n;
    r->prev = old;
    r->n_prev = n_old;
    /* Instances no live group holds stop being probed (in-flight requests may still hold
     * them; their reports go nowhere that matters). */
    for (size_t g = 0; g < n_old; g++)
        for (size_t k = 0; k < old[g]->n; k++)
            if (!upstream_in_groups(fresh, n, old[g]->inst[k]))
                atomic_store(&old[g]->inst[k]->retired, true);
    pthread_mutex_unlock(&r->lock);
    /* New instances (and ones whose group turned checks on) start probing on the loop. */
    if (r->o.loop != NULL && r->o.proxy != NULL) {
        for (size_t g = 0; g < n; g++) {
            if (fresh[g]->cfg.health.path == NULL) continue;
            for (size_t k = 0; k < fresh[g]->n; k++) {
                struct upstream_instance *i = upstream_instance_ref(fresh[g]->inst[k]);
                if (io_loop_post(r->o.loop, upstream_probe_start, i) != 0)
                    upstream_instance_unref(i);
            }
        }
    }
    for (size_t g = 0; g < n_older; g++) upstream_group_unref(older[g]);
    free(older);
    size_t instances = 0;
    for (size_t g = 0; g < n; g++) instances += fresh[g]->n;
    if (n > 0 || n_old > 0)
        LOG_I("upstreams: %zu named upstream%s, %zu instance%s", n, n == 1 ? "" : "s",
              instances, instances == 1 ? "" : "s");
    return 0;
}

struct upstream_group *upstream_registry_get(struct upstream_registry *r, const char *name)
{
    if (r == NULL || name == NULL || strcmp(name, UPSTREAM_DEFAULT_NAME) == 0) return NULL;
    struct upstream_group *g = NULL;
    pthread_mutex_lock(&r->lock);
    for (size_t k = 0; k < r->n_groups && g == NULL; k++)
        if (strcmp(r->groups[k]->cfg.name, name) == 0) g = upstream_group_ref(r->groups[k]);
    for (size_t k = 0; k < r->n_prev && g == NULL; k++)
        if (strcmp(r->prev[k]->cfg.name, name) == 0) g = upstream_group_ref(r->prev[k]);
    pthread_mutex_unlock(&r->lock);
    return g;
}

uint64_t upstream_retry_count(void) { return atomic_load(&upstream_retries); }
void upstream_count_retry(void) { atomic_fetch_add(&upstream_retries, 1); }

void upstream_registry_set_global(struct upstream_registry *r)
{
    atomic_store(&upstream_global, r);
}
struct upstream_registry *upstream_registry_global(void) { return atomic_load(&upstream_global); }

/* A snapshot of the live groups (references), for the writers. */
static struct upstream_group **upstream_snapshot(struct upstream_registry *r, size_t *n)
{
    pthread_mutex_lock(&r->lock);
    struct upstream_group **gs = calloc(r->n_groups ? r->n_groups : 1, sizeof *gs);
    *n = 0;
    for (size_t k = 0; gs != NULL && k < r->n_groups; k++)
        gs[(*n)++] = upstream_group_ref(r->groups[k]);
    pthread_mutex_unlock(&r->lock);
    return gs;
}

static void upstream_snapshot_free(struct upstream_group **gs, size_t n)
{
    for (size_t k = 0; k < n; k++) upstream_group_unref(gs[k]);
    free(gs);
}

int upstream_registry_write_metrics(struct upstream_registry *r, FILE *out)
{
    int rc = 0;
    if (fprintf(out, "# HELP cachegw_upstream_retries_total Upstream attempts retried on "
                     "another instance.\n# TYPE cachegw_upstream_retries_total counter\n"
                     "cachegw_upstream_retries_total %llu\n",
                (unsigned long long)upstream_retry_count()) < 0)
        return -1;
    if (r == NULL) return 0;
    size_t n;
    struct upstream_group **gs = upstream_snapshot(r, &n);
    if (gs == NULL) return -1;
    static const char *const fams[][3] = {
        {"up", "gauge", "1 when the instance is eligible for traffic, 0 when marked down."},
        {"in_flight", "gauge", "Attempts in flight on the instance."},
        {"requests_total", "counter", "Attempts sent to the instance."},
        {"failures_total", "counter", "Attempts that failed (connect, reset, timeout, 5xx "
                                      "when fail_on_5xx)."},
        {"down_transitions_total", "counter", "Times the instance was marked down."},
        {"up_transitions_total", "counter", "Times the instance came back."},
    };
    for (size_t f = 0; f < sizeof fams / sizeof fams[0] && rc == 0; f++) {
        if (fprintf(out, "# HELP cachegw_upstream_%s %s\n# TYPE cachegw_upstream_%s %s\n",
                    fams[f][0], fams[f][2], fams[f][0], fams[f][1]) < 0)
            rc = -1;
        for (size_t g = 0; g < n && rc == 0; g++) {
            for (size_t k = 0; k < gs[g]->n && rc == 0; k++) {
                struct upstream_instance *i = gs[g]->inst[k];
                char name[256], url[1024];
                metrics_escape_label(i->upstream, name, sizeof name);
                metrics_escape_label(i->url, url, sizeof url);
                pthread_mutex_lock(&i->health.lock);
                unsigned long long downs = i->health.downs, ups = i->health.ups;
                bool down = i->health.down;
                pthread_mutex_unlock(&i->health.lock);
                unsigned long long v = f == 0   ? (unsigned long long)!down
                                       : f == 1 ? (unsigned long long)atomic_load(&i->inflight)
                                       : f == 2 ? (unsigned long long)atomic_load(&i->requests)
                                       : f == 3 ? (unsigned long long)atomic_load(&i->failures)
                                       : f == 4 ? downs
                                                : ups;
                if (fprintf(out, "cachegw_upstream_%s{upstream=\"%s\",instance=\"%s\"} %llu\n",
                            fams[f][0], name, url, v) < 0)
                    rc = -1;
            }
        }
    }
    upstream_snapshot_free(gs, n);
    return rc;
}

/* Writes s as a JSON string. */
static int upstream_json_string(FILE *out, const char *s)
{
    if (fputc('"', out) == EOF) return -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        if (*p == '"' || *p == '\\') rc = fprintf(out, "\\%c", *p);
        else if (*p < 0x20) rc = fprintf(out, "\\u%04x", *p);
        else rc = fputc(*p, out) == EOF ? -1 : 1;
        if (rc < 0) return -1;
    }
    return fputc('"', out) == EOF ? -1 : 0;
}

int upstream_registry_write_json(struct upstream_registry *r, FILE *out)
{
    if (fputc('[', out) == EOF) return -1;
    size_t n = 0;
    struct upstream_group **gs = r ? upstream_snapshot(r, &n) : NULL;
    int rc = 0;
    bool first = true;
    for (size_t g = 0; g < n && rc == 0; g++) {
        for (size_t k = 0; k < gs[g]->n && rc == 0; k++) {
            struct upstream_instance *i = gs[g]->inst[k];
            pthread_mutex_lock(&i->health.lock);
            bool down = i->health.down;
            unsigned long long downs = i->health.downs, ups = i->health.ups;
            char reason[128];
            snprintf(reason, sizeof reason, "%s", down ? i->health.reason : "");
            pthread_mutex_unlock(&i->health.lock);
            if ((!first && fputc(',', out) == EOF) || fputs("{\"upstream\":", out) == EOF ||
                upstream_json_string(out, i->upstream) != 0 || fputs(",\"url\":", out) == EOF ||
                upstream_json_string(out, i->url) != 0 ||
                fprintf(out, ",\"up\":%s,\"in_flight\":%lld,\"downs\":%llu,\"ups\":%llu,"
                             "\"reason\":",
                        down ? "false" : "true", (long long)atomic_load(&i->inflight), downs,
                        ups) < 0 ||
                upstream_json_string(out, reason) != 0 || fputc('}', out) == EOF)
                rc = -1;
            first = false;
        }
    }
    upstream_snapshot_free(gs, n);
    if (rc == 0 && fputc(']', out) == EOF) rc = -1;
    return rc;
}
