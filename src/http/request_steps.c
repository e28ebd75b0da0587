/* request_steps.c - the request path as a table of named steps (see
 * request.h and docs/design.md, "The request path").
 *
 * Each step does one thing and returns NEXT (r->step names the next one),
 * WAIT (the connection is suspended; whatever resumes it leaves r->step as
 * the step to run on the next handler call) or DONE (an answer was queued, or
 * queueing failed: r->handler_ret).  One loop, request_steps_run, drives them.
 * Every move between steps goes through go(), which asserts that the table
 * allows it: an impossible transition is a bug, caught in debug builds.
 *
 *   PLAN ──> ENDPOINT ──> (ENDPOINT_PING)               own endpoints
 *     │ ──> POLICY_READ <──> POLICY_RESUME              cache-module reads
 *     └──> ROUTE ──> PASS ──> PASS_DONE                 not cacheable
 *            └──> LOOKUP ──> DELIVER_HIT | DELIVER_STALE
 *                   └──> FLIGHT ──> FLIGHT_DONE         a waiter
 *                          └──> LOOKUP_REDIS ──> FETCH ──> FETCH_DONE
 *   and SYNTH (the gateway's own answer) from wherever a step must refuse.
 *
 * Suspension always precedes the event that resumes it (a flight or a fetch
 * is registered after h1_conn_suspend), so a resume can never arrive
 * first.  A step that fails after suspending resumes the connection itself. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_key.h"
#include "endpoints.h"
#include "io_loop.h"
#include "log.h"
#include "lua_cache.h"
#include "metrics.h"
#include "proxy.h"
#include "redis_pool.h"
#include "request.h"
#include "response_writer.h"
#include "stats.h"

enum step_result { STEP_NEXT, STEP_WAIT, STEP_ANSWERED };

typedef enum step_result (*step_fn)(struct request *r);

struct step_def {
    const char *name;
    step_fn run;
    unsigned next; /* the steps it may move to (bit per enum req_step) */
};

#define TO(s) (1u << (s))

static const struct step_def steps[STEP__COUNT];

/* Moves r to step next; the table says whether that move exists. */
static enum step_result go(struct request *r, enum req_step next)
{
    assert(next < STEP__COUNT);
    assert(steps[r->step].next & TO(next));
    r->step = next;
    return STEP_NEXT;
}

/* What STEP_SYNTH answers: status, error text, detail (may be NULL).  For the places
 * that enter STEP_SYNTH other than by go() (a resume, an entry point). */
static void set_synth(struct request *r, int status, const char *error, const char *detail)
{
    r->synth.status = status;
    r->synth.error = error;
    r->synth.detail = detail;
}

/* The gateway answers itself: status, error text, detail (may be NULL). */
static enum step_result synth(struct request *r, int status, const char *error,
                              const char *detail)
{
    set_synth(r, status, error, detail);
    return go(r, STEP_SYNTH);
}

static enum step_result out_of_memory(struct request *r)
{
    return synth(r, 503, "out of memory", NULL);
}

/* Suspends the connection, once per handler call. */
static _Thread_local struct request *suspended_req;

static void suspend(struct request *r)
{
    if (suspended_req == r) return;
    suspended_req = r;
    h1_conn_suspend(r->conn);
}

/* Waits (suspended) until something resumes r into step next. */
static enum step_result wait_for(struct request *r, enum req_step next)
{
    assert(suspended_req == r || r->pipe != NULL);
    go(r, next);
    return STEP_WAIT;
}

/* After suspending, a step that cannot start its wait resumes itself. */
static enum step_result resume_into(struct request *r, enum req_step next)
{
    go(r, next);
    h1_conn_resume(r->conn);
    return STEP_WAIT;
}

/* ---- plan ---- */

static void policy_request_of(const struct request *r, struct policy_request *pr)
{
    const char *q = strchr(r->uri, '?');
    pr->method = r->method;
    pr->path = r->path;
    pr->query = q ? q + 1 : NULL;
    pr->headers = r->headers.items;
    pr->n_headers = r->headers.n;
    pr->client_ip = r->client_ip;
}

static bool is_read(const struct request *r)
{
    return strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
}

/* The request has its (final) policy decision: cacheable or not, the key and
 * the storage overrides.  Returns 0 or -ENOMEM. */
static int plan_policy(struct request *r)
{
    bool read = is_read(r);
    r->has_dec = true;
    switch (r->dec.action) {
    case POLICY_CACHE:
        r->cacheable = read && r->dec.key != NULL;
        r->bypass_reason = r->cacheable ? NULL : "policy";
        r->ov.ttl_ms = r->dec.ttl_ms;
        r->ov.swr_ms = r->dec.swr_ms;
        r->ov.sie_ms = r->dec.sie_ms;
        r->ov.allow_private = r->dec.per_user;
        r->ov.ignore_no_store = r->dec.ignore_no_store;
        break;
    case POLICY_DEFAULT:
        /* The library already sent credentialed requests to "bypass". */
        r->cacheable = read && r->dec.key != NULL &&
                       cache_rules_request_cacheable(r->method, &r->headers, &r->bypass_reason);
        break;
    case POLICY_BYPASS:
    case POLICY_INVALIDATE:
    default:
        r->cacheable = false;
        r->bypass_reason = r->dec.reason ? r->dec.reason : "policy";
        /* Issue 12 item 10: no route, credentials: see plan() (store_only).  Routes
         * keep their own rule. */
        r->store_only = r->dec.action == POLICY_BYPASS && r->dec.route_id == 0 &&
                        r->dec.reason != NULL && strcmp(r->dec.reason, "credentials") == 0 &&
                        cache_rules_request_store_only(r->method, &r->headers);
        break;
    }
    if (r->store_only) {
        /* The key of the exact forwarded target (docs/design.md invariant 8), as
         * without policies; a bypass decision carries none. */
        r->lk.key = cache_key_default(r->uri);
        if (r->lk.key == NULL) return -ENOMEM;
        if (!cache_key_is_valid(r->lk.key, strlen(r->lk.key))) {
            free(r->lk.key);
            r->lk.key = NULL;
            r->store_only = false;
        }
        return 0;
    }
    if (r->cacheable && !cache_key_is_valid(r->dec.key, strlen(r->dec.key))) {
        /* A key carrying internal key syntax could name another URL's variant. */
        r->cacheable = false;
        r->bypass_reason = "invalid-key";
    }
    if (r->cacheable) {
        r->lk.key = strdup(r->dec.key);
        if (r->lk.key == NULL) return -ENOMEM;
    }
    return 0;
}

/* Decides how to serve the request: the route policy (the C route table, or
 * Lua for routes with functions) when policies are loaded, otherwise the
 * default rules (RFC 9111 shared cache).  Returns 0, -ENOMEM, or -EINPROGRESS
 * when the policy waits for cache reads (r->policy_wait). */
static int plan(struct request *r)
{
    struct gateway *gw = r->gw;
    size_t plen = strcspn(r->uri, "?");
    r->path = strndup(r->uri, plen);
    if (r->path == NULL) return -ENOMEM;
    r->ov = (struct store_overrides){.ttl_ms = -1, .swr_ms = -1, .sie_ms = -1};

    if (gw->policies) r->wp = policy_engine_acquire(gw->policies);
    if (r->wp) {
        struct policy_request pr;
        policy_request_of(r, &pr);
        struct lua_host *host = worker_policy_host(r->wp);
        lua_host_bind_gateway(host, gw);
        int rc = lua_host_decide_async(host, &pr, &r->dec, &r->policy_wait);
        if (rc == -EINPROGRESS) return rc;
        if (rc != 0) STATS_INC(policy_errors);
        return plan_policy(r);
    }
    r->cacheable = cache_rules_request_cacheable(r->method, &r->headers, &r->bypass_reason);
    /* Issue 12 item 10 (RFC 9111 §3.5): a request with Authorization is never answered
     * from a shared entry (docs/design.md invariant 6), but it is fetched through the
     * fill, which stores the answer for others when it says public, s-maxage or
     * must-revalidate.  It neither looks up nor joins a flight. */
    r->store_only = !r->cacheable && cache_rules_request_store_only(r->method, &r->headers);
    if (r->cacheable || r->store_only) {
        r->lk.key = cache_key_default(r->uri);
        if (r->lk.key == NULL) return -ENOMEM;
    }
    if (r->store_only && !cache_key_is_valid(r->lk.key, strlen(r->lk.key))) {
        free(r->lk.key);
        r->lk.key = NULL;
        r->store_only = false;
    }
    return 0;
}

enum own_endpoint { OWN_NONE, OWN_HEALTH, OWN_HEALTH_CACHE, OWN_METRICS };

static bool path_is(const char *configured, const char *path)
{
    return configured != NULL && configured[0] != '\0' && strcmp(configured, path) == 0;
}

/* The gateway's own endpoints sit at configurable paths (HEALTH_PATH, ...), so an
 * upstream's own /health or /metrics can be reached through the gateway. */
static enum own_endpoint own_endpoint_of(const struct config *cfg, const char *method,
                                         const char *uri)
{
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) return OWN_NONE;
    /* The path alone (no query) decides. */
    char path[256];
    size_t plen = strcspn(uri, "?");
    if (plen >= sizeof path) return OWN_NONE;
    memcpy(path, uri, plen);
    path[plen] = '\0';
    if (path_is(cfg->health_path, path)) return OWN_HEALTH;
    if (path_is(cfg->health_cache_path, path)) return OWN_HEALTH_CACHE;
    if (path_is(cfg->metrics_path, path)) return OWN_METRICS;
    return OWN_NONE;
}

static enum step_result step_plan(struct request *r)
{
    enum own_endpoint own = own_endpoint_of(r->gw->cfg, r->method, r->uri);
    if (own != OWN_NONE) {
        r->own_endpoint_kind = own;
        return go(r, STEP_ENDPOINT);
    }
    if (r->body_too_big) {
        STATS_INC(rejected);
        return synth(r, 413, "request body too large", NULL);
    }
    if (r->body_over_budget) {
        STATS_INC(rejected);
        LOG_W("request bodies buffered reached MAX_BUFFERED_BODIES: refusing one with 503");
        return synth(r, 503, "busy", "too many request bodies buffered");
    }
    if (r->uri[0] != '/') {
        STATS_INC(rejected);
        return synth(r, 400, "bad request target", NULL);
    }
    STATS_INC(requests);
    int rc = plan(r);
    if (rc == -EINPROGRESS) return go(r, STEP_POLICY_READ);
    if (rc != 0) return out_of_memory(r);
    return go(r, STEP_ROUTE);
}

/* ---- a policy waiting for cache-module reads ----
 *
 * A policy's cache.get that misses the memory tier suspends its decision
 * (lua_host.h).  Each waited key is looked up in Redis (cache_tiers_lookup_redis,
 * a plain read: fresh or nothing), the last answer resumes the connection, and
 * STEP_POLICY_RESUME resumes the decision on this worker (its Lua state never
 * leaves the thread). */

struct policy_read_slot {
    struct policy_read *pr;
    struct cache_lookup lk;
};

struct policy_read {
    struct request *r;
    atomic_size_t pending; /* reads not yet answered, plus one while they are being posted */
    size_t n;
    struct lua_host_value *vals;
    struct policy_read_slot slots[];
};

static void policy_read_free(struct policy_read *pr)
{
    if (pr == NULL) return;
    for (size_t i = 0; i < pr->n; i++) cache_tiers_lookup_release(&pr->slots[i].lk);
    free(pr->vals);
    free(pr);
}

/* Loop thread: one read answered; the last one resumes the request. */
static void policy_read_done(void *arg)
{
    struct policy_read_slot *slot = arg;
    struct policy_read *pr = slot->pr;
    if (atomic_fetch_sub(&pr->pending, 1) == 1) h1_conn_resume(pr->r->conn);
}

static enum step_result step_policy_read(struct request *r)
{
    const char *const *keys;
    size_t n = lua_host_wait_keys(r->policy_wait, &keys);
    struct policy_read *pr = calloc(1, sizeof *pr + n * sizeof pr->slots[0]);
    if (pr != NULL && (pr->vals = calloc(n ? n : 1, sizeof *pr->vals)) == NULL) {
        free(pr);
        pr = NULL;
    }
    for (size_t i = 0; pr != NULL && i < n; i++) {
        pr->slots[i].pr = pr;
        pr->slots[i].lk.key = strdup(keys[i]);
        pr->n = i + 1;
        if (pr->slots[i].lk.key == NULL) {
            policy_read_free(pr);
            pr = NULL;
        }
    }
    if (pr == NULL) {
        lua_host_wait_free(worker_policy_host(r->wp), r->policy_wait);
        r->policy_wait = NULL;
        return out_of_memory(r);
    }
    pr->r = r;
    atomic_init(&pr->pending, n + 1);
    r->policy_read = pr;
    suspend(r);
    for (size_t i = 0; i < n; i++)
        if (cache_tiers_lookup_redis(r->gw, &pr->slots[i].lk, policy_read_done, &pr->slots[i]) !=
            0)
            atomic_fetch_sub(&pr->pending, 1); /* Redis went away: a miss */
    if (atomic_fetch_sub(&pr->pending, 1) == 1) h1_conn_resume(r->conn);
    return wait_for(r, STEP_POLICY_RESUME);
}

static enum step_result pass_streamed(struct request *r);

static enum step_result step_policy_resume(struct request *r)
{
    struct policy_read *pr = r->policy_read;
    r->policy_read = NULL;
    for (size_t i = 0; i < pr->n; i++) {
        const struct cache_lookup *lk = &pr->slots[i].lk;
        pr->vals[i] = lk->verdict == CACHE_FRESH
                          ? (struct lua_host_value){lk->obj->body, lk->obj->body_len}
                          : (struct lua_host_value){NULL, 0};
    }
    int rc = lua_host_resume_decide(worker_policy_host(r->wp), r->policy_wait, pr->vals, pr->n,
                                    &r->dec);
    policy_read_free(pr);
    if (rc == -EINPROGRESS) return go(r, STEP_POLICY_READ);
    r->policy_wait = NULL; /* consumed */
    if (rc != 0) STATS_INC(policy_errors);
    if (plan_policy(r) != 0) return out_of_memory(r);
    if (r->pipe) return pass_streamed(r); /* planned at header time */
    return go(r, STEP_ROUTE);
}

/* LOG_LEVEL=debug: what was decided for this request, and why. */
static void log_decision(const struct request *r)
{
    if (log_get_level() > LOG_DEBUG) return;
    char uri[256], key[256];
    log_escape_uri(r->uri, uri, sizeof uri);
    /* A key holds query values ({query}, the default "METHOD:/path?query"): they are
     * redacted as the target's are, the key read as one query string ("?" + key). */
    char qkey[sizeof key + 2];
    snprintf(qkey, sizeof qkey, "?%s", r->lk.key ? r->lk.key : "-");
    log_escape_uri(qkey, key, sizeof key);
    memmove(key, key + 1, strlen(key));
    /* No TTL from the policy: the upstream's headers decide ("ttl=upstream"). */
    char ttl[24] = "upstream";
    if (r->has_dec && r->dec.ttl_ms >= 0)
        snprintf(ttl, sizeof ttl, "%lld", (long long)(r->dec.ttl_ms / 1000));
    /* A write without a route has no bypass reason of its own: its method is it. */
    const char *bypass = r->bypass_reason ? r->bypass_reason : is_read(r) ? "-" : "method";
    LOG_D("decision %s %s: route=%s %s key=%s reason=%s ttl=%s", r->method, uri,
          r->has_dec && r->dec.route ? r->dec.route : "-", r->cacheable ? "cacheable" : "bypass",
          key, r->cacheable ? (r->has_dec && r->dec.reason ? r->dec.reason : "default") : bypass,
          ttl);
}

static enum step_result step_route(struct request *r)
{
    cache_rules_request_cc(&r->headers, &r->cc);
    log_decision(r);
    if (r->has_dec && r->dec.reject_status) /* unknown_host "reject" (issue 13) */
        return synth(r, r->dec.reject_status, "unknown host", NULL);
    if (r->cacheable && r->has_body) {
        /* The body is forwarded but is in no key: never share its answer. */
        r->cacheable = false;
        r->bypass_reason = "request-body";
    }
    if (!r->cacheable) {
        STATS_INC(bypasses);
        if (r->store_only && !r->has_body) return go(r, STEP_FETCH); /* issue 12 item 10 */
        return go(r, STEP_PASS);
    }
    return go(r, STEP_LOOKUP);
}

/* ---- lookup ---- */

/* Moves the lookup's object to r->stale (served stale, or the fetch's base). */
static void take_stale(struct request *r)
{
    cache_object_unref(r->stale);
    r->stale = r->lk.obj;
    r->stale_redis = r->lk.tier == CACHE_TIER_REDIS;
    r->lk.obj = NULL;
}

static bool stale_if_error_ok(const struct request *r)
{
    return r->stale && cache_rules_stale_if_error(r->stale, clock_wall_ms());
}

static enum step_result deliver_stale(struct request *r, const char *why)
{
    take_stale(r);
    r->stale_why = why;
    return go(r, STEP_DELIVER_STALE);
}

static enum step_result step_lookup(struct request *r)
{
    r->lk.req_headers = &r->headers;
    r->lk.cc = &r->cc;
    if (cache_tiers_lookup(r->gw, &r->lk) != 0) return out_of_memory(r);
    switch (r->lk.verdict) {
    case CACHE_FRESH:
        return go(r, STEP_DELIVER_HIT);
    case CACHE_STALE_OK:
        return deliver_stale(r, "max-stale");
    case CACHE_STALE_SWR:
        /* Refreshed in the background, once per key.  Routes with an on_response
         * hook are not: the refresh completes on the I/O loop, where Lua never runs. */
        if (!(r->has_dec && r->dec.has_response_hook))
            cache_fetch_refresh(r->gw, r->lk.key, r->lk.obj, &r->ov, r->method, r->uri,
                                &r->headers, r->client_ip, r->has_dec ? r->dec.upstream : NULL,
                                r->has_dec ? r->dec.tags : NULL, r->has_dec ? r->dec.n_tags : 0);
        return deliver_stale(r, "stale-while-revalidate");
    case CACHE_REVALIDATE:
    case CACHE_MISS:
    default:
        break;
    }
    if (r->cc.only_if_cached) return synth(r, 504, "not cached (only-if-cached)", NULL);
    return go(r, STEP_FLIGHT);
}

/* Runs on the leader's thread: records what the waiter should do, resumes it. */
static void flight_wake(void *waiter, enum flight_outcome outcome, struct cache_object *obj,
                        int status)
{
    struct request *r = waiter;
    r->outcome = outcome;
    r->woken_obj = obj ? cache_object_ref(obj) : NULL;
    r->woken_status = status;
    h1_conn_resume(r->conn);
}

/* Loop thread: the Redis verdict is in. */
static void lookup_redis_done(void *arg)
{
    struct request *r = arg;
    h1_conn_resume(r->conn);
}

static enum step_result step_flight(struct request *r)
{
    /* Suspend first: a flight may finish (and resume us) right after join. */
    suspend(r);
    const char *key = r->lk.key;
    struct flight *flight;
    if (!coalesce_join(r->gw->coalescer, key, strlen(key), r, flight_wake, &flight)) {
        STATS_INC(coalesced);
        return wait_for(r, STEP_FLIGHT_DONE);
    }
    r->flight = flight;
    if (cache_tiers_l2_available(r->gw) &&
        cache_tiers_lookup_redis(r->gw, &r->lk, lookup_redis_done, r) == 0)
        return wait_for(r, STEP_LOOKUP_REDIS);
    return go(r, STEP_FETCH);
}

/* Closes the led flight with an object every waiter may use. */
static void flight_share(struct request *r, struct cache_object *obj)
{
    coalesce_finish(r->gw->coalescer, r->flight, FLIGHT_STORED, obj, 0);
    r->flight = NULL;
}

static enum step_result step_lookup_redis(struct request *r)
{
    switch (r->lk.verdict) {
    case CACHE_FRESH:
        STATS_INC(hits_l2);
        flight_share(r, r->lk.obj);
        return go(r, STEP_DELIVER_HIT);
    case CACHE_STALE_OK:
        flight_share(r, r->lk.obj);
        return deliver_stale(r, "max-stale");
    default:
        return go(r, STEP_FETCH);
    }
}

/* ---- fetch and fill (the leader) ---- */

static void response_hook_adapter(void *arg, int status, const struct header_list *headers,
                                  struct store_decision *d)
{
    struct request *r = arg;
    struct policy_request pr;
    struct policy_verdict v = {0};
    policy_request_of(r, &pr);
    if (lua_host_on_response(worker_policy_host(r->wp), &r->dec, &pr, status, headers->items,
                             headers->n, &v) != 0)
        STATS_INC(policy_errors);
    if (!v.store) {
        d->store = false;
        d->reason = "policy";
    } else if (v.ttl_ms >= 0) {
        d->ttl_ms = v.ttl_ms;
        d->initial_age_s = 0;
        if (d->ttl_ms == 0 && d->swr_ms == 0 && d->sie_ms == 0) {
            d->store = false;
            d->reason = "policy";
        }
    }
    policy_verdict_free(&v);
}

static cache_fill_hook_fn hook_of(const struct request *r)
{
    return r->has_dec && r->dec.has_response_hook && r->wp ? response_hook_adapter : NULL;
}

/* Loop thread: the leader's upstream answered. */
static void leader_ready(void *owner)
{
    struct request *r = owner;
    r->upstream_us = metrics_now_us() - r->upstream_start_us;
    h1_conn_resume(r->conn);
}

static enum step_result step_fetch(struct request *r)
{
    suspend(r);
    if (r->lk.verdict == CACHE_REVALIDATE && r->lk.obj) take_stale(r);
    STATS_INC(misses);
    struct cache_fetch_input in = {.key = r->lk.key,
                                   .method = r->method,
                                   .uri = r->uri,
                                   .headers = &r->headers,
                                   .client_ip = r->client_ip,
                                   .stale = r->stale,
                                   .ov = &r->ov,
                                   .request_no_store = r->cc.no_store,
                                   .tags = r->has_dec ? r->dec.tags : NULL,
                                   .n_tags = r->has_dec ? r->dec.n_tags : 0,
                                   .has_hook = hook_of(r) != NULL,
                                   .flight = r->flight,
                                   .on_ready = leader_ready,
                                   .owner = r,
                                   .upstream = r->has_dec ? r->dec.upstream : NULL};
    r->flight = NULL; /* the fetch owns it now, and closes it even when it cannot start */
    r->upstream_start_us = metrics_now_us();
    r->cf = cache_fetch_start(r->gw, &in);
    if (r->cf == NULL) {
        set_synth(r, 503, "out of memory", NULL);
        return resume_into(r, STEP_SYNTH);
    }
    return wait_for(r, STEP_FETCH_DONE);
}

static void log_upstream_failure(const struct request *r, const struct upstream_fetch *f,
                                 bool serving_stale)
{
    char safe[256];
    log_escape_uri(r->uri, safe, sizeof safe);
    if (serving_stale)
        LOG_W("upstream %s %s failed (%s): serving stale", r->method, safe,
              f->error != UPSTREAM_OK ? f->errmsg : "5xx");
    else
        LOG_W("upstream %s %s failed: %s", r->method, safe, f->errmsg);
}

/* The upstream gave no response: 502/503/504 (cache_fetch_error_status). */
static enum step_result forward_failed(struct request *r, const struct upstream_fetch *f)
{
    r->forward_failed = true;
    STATS_INC(upstream_errors);
    log_upstream_failure(r, f, false);
    int status = cache_fetch_error_status(f);
    return synth(r, status,
                 status == 504   ? "upstream timeout"
                 : status == 503 ? "upstream busy"
                                 : "upstream unavailable",
                 f->errmsg);
}

static enum h1_result deliver_upstream(struct request *r, struct upstream_fetch *f,
                                       const char *x_cache, const char *cache_status)
{
    if (f->stream) return answer_streamed(r, f, x_cache, cache_status);
    return answer_fetched(r, f, x_cache, cache_status);
}

static enum step_result step_fetch_done(struct request *r)
{
    cache_fetch_finish(r->cf, hook_of(r), r);
    struct cache_fetch_result res;
    cache_fetch_result(r->cf, &res);
    struct upstream_fetch *f = res.upstream;
    if ((f->error != UPSTREAM_OK || f->status >= 500) && stale_if_error_ok(r)) {
        log_upstream_failure(r, f, true);
        r->stale_why = "stale-if-error";
        return go(r, STEP_DELIVER_STALE);
    }
    if (f->error != UPSTREAM_OK) return forward_failed(r, f);
    char cache_status[160];
    if (res.stored) {
        snprintf(cache_status, sizeof cache_status,
                 "cachegw; fwd=%s; fwd-status=%d; stored; ttl=%lld",
                 r->store_only ? "request" : r->stale ? "stale" : "uri-miss", f->status,
                 (long long)(res.stored->meta.ttl_ms / 1000 - res.stored->meta.initial_age_s));
        /* A store-only request (issue 12 item 10) was not served by the cache. */
        r->handler_ret =
            answer_object(r, res.stored, r->store_only ? "BYPASS" : "MISS", cache_status);
        return STEP_ANSWERED;
    }
    if (f->status == 304 && r->stale) {
        /* Revalidated but not re-stored: the stale copy is still current. */
        r->handler_ret = answer_object(r, r->stale, "MISS",
                                       "cachegw; fwd=stale; fwd-status=304; detail=not-stored");
        return STEP_ANSWERED;
    }
    snprintf(cache_status, sizeof cache_status, "cachegw; fwd=%s; detail=%s",
             r->store_only ? "request" : "uri-miss",
             res.not_stored ? res.not_stored : "not-stored");
    if (f->stream) cache_fetch_take_upstream(r->cf); /* the streamed answer frees it */
    r->handler_ret = deliver_upstream(r, f, r->store_only ? "BYPASS" : "MISS", cache_status);
    return STEP_ANSWERED;
}

/* ---- a waiter ---- */

static enum step_result step_flight_done(struct request *r)
{
    if (r->lk.obj && r->lk.verdict == CACHE_REVALIDATE) take_stale(r);
    switch (r->outcome) {
    case FLIGHT_STORED: {
        struct cache_object *obj = r->woken_obj;
        const char *vary = cache_object_header(obj, "vary");
        char variant[2048];
        if (vary &&
            (cache_rules_variant_key(r->lk.key, vary, &r->headers, variant, sizeof variant) != 0 ||
             strcmp(variant, obj->key) != 0) &&
            strcmp(r->lk.key, obj->key) != 0) {
            /* Another variant was fetched: this request needs its own. */
            return go(r, STEP_PASS);
        }
        STATS_INC(hits);
        r->handler_ret = answer_object(r, obj, "HIT", "cachegw; hit; detail=collapsed");
        return STEP_ANSWERED;
    }
    case FLIGHT_FAILED:
        if (stale_if_error_ok(r)) {
            r->stale_why = "stale-if-error";
            return go(r, STEP_DELIVER_STALE);
        }
        STATS_INC(upstream_errors);
        return synth(r, r->woken_status,
                     r->woken_status == 504 ? "upstream timeout" : "upstream unavailable",
                     "collapsed onto a failed fetch");
    case FLIGHT_RETRY:
    default:
        /* Not shareable: fetch for ourselves, without joining a flight. */
        STATS_INC(misses);
        return go(r, STEP_PASS);
    }
}

/* ---- pass: a plain forward ---- */

/* After a successful write: the route's invalidations, or RFC 9111 §4.4 (an
 * unsafe method invalidates the target URI and its Location and
 * Content-Location).  Applied before the client gets its answer, so its next
 * read already misses. */
static void invalidate_default_key(struct gateway *gw, const char *target)
{
    char *key = cache_key_default(target);
    if (key) cache_tiers_invalidate_key(gw, key);
    free(key);
}

/* Returns true when it issued any. */
static bool apply_invalidations(struct request *r, const struct upstream_fetch *f)
{
    struct gateway *gw = r->gw;
    if (r->has_dec && r->dec.action == POLICY_INVALIDATE) {
        if (f->status < 200 || f->status >= 300) return false;
        for (size_t i = 0; i < r->dec.n_invalidate; i++) {
            const struct policy_target *t = &r->dec.invalidate[i];
            if (t->tag) cache_tiers_invalidate_tag(gw, t->key);
            else if (t->prefix) cache_tiers_invalidate_prefix(gw, t->key);
            else cache_tiers_invalidate_key(gw, t->key);
        }
        return r->dec.n_invalidate > 0;
    }
    if (is_read(r) || f->status < 200 || f->status >= 400) return false;
    if (r->has_dec && r->dec.action == POLICY_BYPASS) return false;
    if (r->has_dec && r->dec.key) cache_tiers_invalidate_key(gw, r->dec.key);
    else invalidate_default_key(gw, r->uri);
    const char *names[] = {"location", "content-location"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = header_list_get(&f->resp_headers, names[i]);
        /* Only same-origin, path-absolute references name our entries. */
        if (v && v[0] == '/' && v[1] != '/') invalidate_default_key(gw, v);
    }
    return true;
}

static struct upstream_fetch *build_pass(struct request *r)
{
    struct upstream_request_input in = {.method = r->method,
                                        .uri = r->uri,
                                        .headers = &r->headers,
                                        .client_ip = r->client_ip,
                                        .body = &r->body,
                                        .for_cache = false,
                                        .buffer_limit = r->gw->cfg->max_value_bytes,
                                        .on_ready = request_fetch_ready,
                                        .owner = r,
                                        .upstream = r->has_dec ? r->dec.upstream : NULL,
                                        .retry_unsafe = r->has_dec && r->dec.idempotent};
    r->upstream_start_us = metrics_now_us(); /* the access log's upstream_time */
    return upstream_request_build(&in);
}

static enum step_result step_pass(struct request *r)
{
    assert(r->fetch == NULL);
    struct upstream_fetch *f = build_pass(r);
    if (f == NULL) return out_of_memory(r);
    r->fetch = f;
    STATS_INC(upstream_requests);
    suspend(r);
    if (proxy_submit(r->gw->proxy, f) != 0) {
        /* Never started: nothing will resume us, so do it ourselves. */
        f->error = UPSTREAM_BROKEN;
        snprintf(f->errmsg, sizeof f->errmsg, "gateway shutting down");
        return resume_into(r, STEP_PASS_DONE);
    }
    return wait_for(r, STEP_PASS_DONE);
}

/* Starts the forward of a planned request whose body is still coming (the
 * answer comes through request_steps_answer_streamed). */
static enum step_result pass_streamed(struct request *r)
{
    struct gateway *gw = r->gw;
    if (r->has_dec && r->dec.reject_status) /* unknown_host "reject" (issue 13) */
        return synth(r, r->dec.reject_status, "unknown host", NULL);
    if (r->cacheable) {
        r->cacheable = false;
        r->bypass_reason = "request-body";
    }
    STATS_INC(bypasses);
    /* The decision is made; its Lua state is not needed again (the request may be
     * freed on the I/O loop if its client leaves, see http_server.c). */
    if (r->wp) policy_engine_release(r->wp);
    r->wp = NULL;
    struct upstream_fetch *f = build_pass(r);
    if (f == NULL) return out_of_memory(r);
    f->req_pipe = r->pipe;
    f->req_body_size = r->body_size;
    r->fetch = f;
    STATS_INC(upstream_requests);
    r->step = STEP_PASS_DONE; /* taken up by request_steps_answer_streamed */
    r->phase = PH_BODY;       /* the body goes on arriving (http_server.c) */
    if (proxy_submit(gw->proxy, f) != 0) {
        f->error = UPSTREAM_BROKEN;
        snprintf(f->errmsg, sizeof f->errmsg, "gateway shutting down");
        body_pipe_answer_ready(r->pipe);
    }
    return STEP_WAIT;
}

/* Loop thread: this write's invalidations are recorded and published. */
static void invalidations_done(void *arg)
{
    struct request *r = arg;
    h1_conn_resume(r->conn);
}

static enum step_result step_pass_done(struct request *r)
{
    struct upstream_fetch *f = r->fetch;
    if ((f->error != UPSTREAM_OK || f->status >= 500) && stale_if_error_ok(r)) {
        log_upstream_failure(r, f, true);
        r->stale_why = "stale-if-error";
        return go(r, STEP_DELIVER_STALE);
    }
    if (f->error != UPSTREAM_OK) return forward_failed(r, f);
    if (apply_invalidations(r, f) && r->gw->l2 != NULL) {
        /* Read-your-writes across instances: the answer leaves once the
         * invalidation records are in Redis and published (or Redis did not
         * take them), at most REDIS_TIMEOUT_MS later (cache_tiers.h). */
        suspend(r);
        if (cache_tiers_after_invalidations(r->gw, invalidations_done, r) != 0)
            return resume_into(r, STEP_PASS_DELIVER);
        return wait_for(r, STEP_PASS_DELIVER);
    }
    return go(r, STEP_PASS_DELIVER);
}

/* Issue 12 item 13 (RFC 9110 §9.3.3, RFC 9111 §4): a POST answer with explicit freshness
 * and a Content-Location naming the request target is the current representation of
 * that URL: stored for a later GET of it.  Only without a route (a route's keys are its
 * own), only from a request without credentials, only a buffered 200/203; the key is the
 * forwarded target's (docs/design.md invariant 8), and the fill's rules decide the rest
 * (no-store, private, Set-Cookie, size).  Runs after the write's invalidations. */
static void store_post_answer(struct request *r, const struct upstream_fetch *f)
{
    const char *why;
    if (strcmp(r->method, "POST") != 0 || f->stream || (f->status != 200 && f->status != 203))
        return;
    if ((r->has_dec && r->dec.route_id != 0) ||
        !cache_rules_request_cacheable("GET", &r->headers, &why))
        return;
    const char *cl = header_list_get(&f->resp_headers, "content-location");
    if (cl == NULL || strcmp(cl, r->uri) != 0) return;
    char cc[4096];
    long long v;
    int cc_lines = header_list_get_all(&f->resp_headers, "cache-control", cc, sizeof cc);
    bool explicit = cc_lines > 0 && (headers_token_int(cc, "max-age", &v) ||
                                     headers_token_int(cc, "s-maxage", &v));
    if (cc_lines < 0 || !(explicit || header_list_get(&f->resp_headers, "expires") ||
                          header_list_get(&f->resp_headers, "cdn-cache-control")))
        return;
    char *key = cache_key_default(r->uri);
    if (key == NULL || !cache_key_is_valid(key, strlen(key))) {
        free(key);
        return;
    }
    struct fill_input in = {.key = key,
                            .req_headers = &r->headers,
                            .status = f->status,
                            .resp_headers = &f->resp_headers,
                            .body = f->body.data,
                            .body_len = f->body.len,
                            .ov = &r->ov,
                            .request_no_store = r->cc.no_store,
                            .gen = cache_tiers_generation(r->gw)};
    cache_object_unref(cache_fill(r->gw, &in, &why));
    free(key);
}

static enum step_result step_pass_deliver(struct request *r)
{
    struct upstream_fetch *f = r->fetch;
    store_post_answer(r, f); /* issue 12 item 13 */
    char cache_status[160];
    if (r->cacheable)
        snprintf(cache_status, sizeof cache_status, "cachegw; fwd=uri-miss; detail=uncollapsed");
    else
        snprintf(cache_status, sizeof cache_status, "cachegw; fwd=%s; detail=%s",
                 is_read(r) ? "request" : "method",
                 r->bypass_reason ? r->bypass_reason : "bypass");
    if (f->stream) r->fetch = NULL; /* the streamed answer frees it */
    r->handler_ret = deliver_upstream(r, f, r->cacheable ? "MISS" : "BYPASS", cache_status);
    return STEP_ANSWERED;
}

/* ---- deliveries and the gateway's own answers ---- */

static enum step_result step_deliver_hit(struct request *r)
{
    const char *tier = r->lk.tier == CACHE_TIER_REDIS ? "redis" : NULL;
    r->handler_ret = answer_hit(r, r->lk.obj, clock_wall_ms(), tier);
    return STEP_ANSWERED;
}

static enum step_result step_deliver_stale(struct request *r)
{
    assert(r->stale != NULL);
    r->handler_ret = answer_stale(r, r->stale_why);
    return STEP_ANSWERED;
}

/* Loop thread: the PING for /health/cache came back (or failed). */
static void ping_done(void *arg, double latency_ms)
{
    struct request *r = arg;
    r->ping_ms = latency_ms;
    h1_conn_resume(r->conn);
}

static enum step_result step_endpoint(struct request *r)
{
    struct gateway *gw = r->gw;
    /* Not in cachegw_active_requests: a scrape must not count itself. */
    if (!r->own_endpoint) {
        r->own_endpoint = true;
        metrics_own_endpoint_begin();
    }
    if (r->own_endpoint_kind == OWN_HEALTH) {
        r->status = 200;
        r->phase = PH_ANSWERED;
        r->handler_ret =
            h1_server_queue(r->conn, 200, gw->health_response) == 0 ? H1_YES : H1_NO;
        return STEP_ANSWERED;
    }
    if (r->own_endpoint_kind == OWN_HEALTH_CACHE && cache_tiers_l2_available(gw)) {
        /* latency_ms is a live PING, bounded by the Redis operation timeout. */
        r->ping_ms = -1;
        suspend(r);
        if (cache_tiers_ping(gw, ping_done, r) != 0) return resume_into(r, STEP_ENDPOINT_PING);
        return wait_for(r, STEP_ENDPOINT_PING);
    }
    r->handler_ret = answer_status_page(r, r->own_endpoint_kind == OWN_METRICS,
                                    gw->redis ? redis_pool_last_latency_ms(gw->redis) : -1);
    return STEP_ANSWERED;
}

static enum step_result step_endpoint_ping(struct request *r)
{
    r->handler_ret = answer_status_page(r, false, r->ping_ms);
    return STEP_ANSWERED;
}

static enum step_result step_synth(struct request *r)
{
    r->handler_ret = answer_error(r, r->synth.status, r->synth.error, r->synth.detail);
    return STEP_ANSWERED;
}

static enum step_result step_done(struct request *r)
{
    assert(!"a request ran past its answer");
    r->handler_ret = H1_YES;
    return STEP_ANSWERED;
}

/* The table: every step, what it does, and where it may go. */
static const struct step_def steps[STEP__COUNT] = {
    [STEP_PLAN] = {"plan", step_plan,
                   TO(STEP_ENDPOINT) | TO(STEP_POLICY_READ) | TO(STEP_ROUTE) | TO(STEP_SYNTH)},
    [STEP_POLICY_READ] = {"policy-read", step_policy_read, TO(STEP_POLICY_RESUME) | TO(STEP_SYNTH)},
    [STEP_POLICY_RESUME] = {"policy-resume", step_policy_resume,
                            TO(STEP_POLICY_READ) | TO(STEP_ROUTE) | TO(STEP_PASS_DONE) |
                                TO(STEP_SYNTH)},
    [STEP_ROUTE] = {"route", step_route,
                    TO(STEP_PASS) | TO(STEP_LOOKUP) | TO(STEP_FETCH) | TO(STEP_SYNTH)},
    [STEP_LOOKUP] = {"lookup", step_lookup,
                     TO(STEP_DELIVER_HIT) | TO(STEP_DELIVER_STALE) | TO(STEP_FLIGHT) |
                         TO(STEP_SYNTH)},
    [STEP_FLIGHT] = {"flight", step_flight,
                     TO(STEP_FLIGHT_DONE) | TO(STEP_LOOKUP_REDIS) | TO(STEP_FETCH)},
    [STEP_LOOKUP_REDIS] = {"lookup-redis", step_lookup_redis,
                           TO(STEP_DELIVER_HIT) | TO(STEP_DELIVER_STALE) | TO(STEP_FETCH)},
    [STEP_FETCH] = {"fetch", step_fetch, TO(STEP_FETCH_DONE) | TO(STEP_SYNTH)},
    [STEP_FETCH_DONE] = {"fetch-done", step_fetch_done, TO(STEP_DELIVER_STALE) | TO(STEP_SYNTH)},
    [STEP_FLIGHT_DONE] = {"flight-done", step_flight_done,
                          TO(STEP_PASS) | TO(STEP_DELIVER_STALE) | TO(STEP_SYNTH)},
    [STEP_PASS] = {"pass", step_pass, TO(STEP_PASS_DONE) | TO(STEP_SYNTH)},
    [STEP_PASS_DONE] = {"pass-done", step_pass_done,
                        TO(STEP_PASS_DELIVER) | TO(STEP_DELIVER_STALE) | TO(STEP_SYNTH)},
    [STEP_PASS_DELIVER] = {"pass-deliver", step_pass_deliver, 0},
    [STEP_DELIVER_HIT] = {"deliver-hit", step_deliver_hit, 0},
    [STEP_DELIVER_STALE] = {"deliver-stale", step_deliver_stale, 0},
    [STEP_ENDPOINT] = {"endpoint", step_endpoint, TO(STEP_ENDPOINT_PING)},
    [STEP_ENDPOINT_PING] = {"endpoint-ping", step_endpoint_ping, 0},
    [STEP_SYNTH] = {"synth", step_synth, 0},
    [STEP_DONE] = {"done", step_done, 0},
};

enum h1_result request_steps_run(struct request *r)
{
    r->phase = PH_STEPS;
    suspended_req = NULL; /* a new handler call: not suspended in it yet */
    for (unsigned moves = 0;; moves++) {
        assert(moves < 2 * STEP__COUNT); /* no step loops back without waiting */
        assert(r->step < STEP__COUNT && steps[r->step].run != NULL);
        switch (steps[r->step].run(r)) {
        case STEP_NEXT:
            continue;
        case STEP_WAIT:
            suspended_req = NULL;
            return H1_YES;
        case STEP_ANSWERED:
        default:
            r->step = STEP_DONE;
            suspended_req = NULL;
            return r->handler_ret;
        }
    }
}

enum h1_result request_steps_start_streamed(struct request *r)
{
    STATS_INC(requests);
    r->step = STEP_PLAN;
    int rc = plan(r);
    if (rc == -EINPROGRESS) {
        r->step = STEP_POLICY_READ;
        return request_steps_run(r); /* STEP_POLICY_RESUME starts the forward */
    }
    if (rc != 0) {
        r->step = STEP_SYNTH;
        set_synth(r, 503, "out of memory", NULL);
        return request_steps_run(r);
    }
    if (pass_streamed(r) == STEP_WAIT) return H1_YES;
    return request_steps_run(r); /* out of memory: STEP_SYNTH */
}

enum h1_result request_steps_answer_streamed(struct request *r)
{
    if (r->body_too_big) {
        STATS_INC(rejected);
        r->step = STEP_SYNTH;
        set_synth(r, 413, "request body too large", NULL);
    }
    return request_steps_run(r);
}

/* I/O loop thread: a pass's response (or its first bytes, when streaming) is
 * here.  A request whose body is streamed may still be receiving it, or its
 * client may have left: the pipe decides who resumes and who frees
 * (body_pipe.h). */
void request_fetch_ready(struct upstream_fetch *f)
{
    struct request *r = upstream_request_owner(f);
    r->upstream_us = metrics_now_us() - r->upstream_start_us; /* read after the resume */
    if (r->pipe) {
        if (!body_pipe_answer_ready(r->pipe)) return;
        /* Abandoned by its client: nobody will read this answer. */
        if (f->stream) {
            upstream_request_set_owner(f, NULL);
            upstream_stream_release(f->stream); /* aborts the transfer, then frees f */
            r->fetch = NULL;
        }
        request_release(r);
        return;
    }
    h1_conn_resume(r->conn);
}

void request_steps_release(struct request *r)
{
    struct gateway *gw = r->gw;
    if (r->flight) coalesce_finish(gw->coalescer, r->flight, FLIGHT_RETRY, NULL, 0);
    r->flight = NULL;
    /* A leader whose client left still stores and wakes its waiters. */
    cache_fetch_release(r->cf, hook_of(r), r);
    r->cf = NULL;
    if (r->fetch) upstream_request_free(r->fetch);
    r->fetch = NULL;
    policy_read_free(r->policy_read);
    r->policy_read = NULL;
    if (r->policy_wait) lua_host_wait_free(worker_policy_host(r->wp), r->policy_wait);
    r->policy_wait = NULL;
}
