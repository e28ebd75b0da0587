/* http_server.c - see http_server.h.
 *
 * Life of a request (struct request), all on its worker thread unless noted:
 *
 *   uri_log_cb       allocates the request with the raw URI (path and query as
 *                    the client sent them).
 *   on_request #1    collects headers; never queues (a response queued in the
 *                    first call loses keep-alive in libmicrohttpd 0.9.75).
 *   on_request body  accumulates the body up to MAX_BODY_SIZE.
 *   on_request last  answers own endpoints; plans the request (cacheable or
 *                    pass); if the policy waits for cache-module reads from
 *                    Redis, suspends (WAIT_POLICY) and continues planning when
 *                    they are answered; answers a fresh memory hit at once; otherwise
 *                    suspends the connection, then joins the key's flight
 *                    (waiter) or hands a fetch to the I/O loop (leader/pass).
 *   fetch_ready      (I/O loop) records the result and resumes the connection.
 *   on_request again answers from the result; a leader stores the response
 *                    and wakes its waiters.
 *   completed_cb     releases everything, including a flight whose client left.
 *
 * Suspension always precedes the event that resumes it (the flight or the
 * fetch is registered after MHD_suspend_connection), so a resume can never
 * arrive first. */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "access_log.h"
#include "body_pipe.h"
#include "buf.h"
#include "cache_object.h"
#include "cache_fill.h"
#include "cache_key.h"
#include "cache_rules.h"
#include "cache_tiers.h"
#include "coalesce.h"
#include "conn_guard.h"
#include "endpoints.h"
#include "forward_headers.h"
#include "headers.h"
#include "inval_index.h"
#include "io_loop.h"
#include "ip_set.h"
#include "log.h"
#include "lua_cache.h"
#include "metrics.h"
#include "policy_engine.h"
#include "proxy.h"
#include "refresh.h"
#include "redis_pool.h"
#include "request_validator.h"
#include "stats.h"
#include "store_l1.h"
#include "upstream_request.h"

/* Most header fields in one request (RFC 9110 sets no number; 431 past it). */
#define HTTP_MAX_HEADER_FIELDS 128
/* Request bodies larger than this (or chunked) are streamed upstream through a
 * body_pipe of this capacity while they arrive, instead of being buffered. */
#define BODY_STREAM_THRESHOLD (64 * 1024)
#define BODY_PIPE_CAPACITY (64 * 1024)

enum phase {
    PH_HEADERS,   /* first call not yet seen */
    PH_BODY,      /* receiving the body */
    PH_WAITING,   /* suspended until a fetch or a flight resumes us */
    PH_ANSWERED,  /* a response was queued */
};

enum wait_kind {
    WAIT_NONE,
    WAIT_FETCH,   /* our own upstream fetch (leader or pass) */
    WAIT_FLIGHT,  /* another request's fetch */
    WAIT_L2,      /* a Redis lookup (leader) */
    WAIT_PING,    /* /health/cache's live Redis PING */
    WAIT_POLICY,  /* the policy's cache-module reads from Redis (lua_cache.h) */
};

struct policy_read;

struct request {
    struct gateway *gw;
    struct MHD_Connection *conn;
    enum phase phase;
    enum wait_kind wait;
    const char *method;       /* libmicrohttpd's string, valid for the request */
    char *uri;                /* raw path[?query] */
    const char *uri_end;      /* where libmicrohttpd's copy of the target ended (NUL check) */
    struct conn_slot *slot;   /* the connection's guard slot (may be NULL) */
    struct header_list headers; /* the forwarded set (forward_headers): keys come from it */
    struct buf body;
    bool body_too_big;
    bool body_over_budget;    /* MAX_BUFFERED_BODIES was reached while reading it */
    bool has_body;            /* the request carries content (Content-Length > 0 or chunked) */
    bool debug;               /* Cache-Status carries the key (DEBUG_HEADERS or Cachegw-Debug) */
    size_t body_accounted;    /* bytes counted in gw->buffered_body_bytes */
    struct body_pipe *pipe;   /* a body streamed upstream while it arrives, or NULL */
    long long body_size;      /* its Content-Length, -1 for chunked */
    size_t body_streamed;     /* bytes of it received so far */
    char client_ip[INET6_ADDRSTRLEN];
    int64_t start_ms;

    /* Plan. */
    bool cacheable;
    const char *bypass_reason;
    char *key;                     /* cache key (cacheable) */
    char *path;                    /* uri without the query */
    struct worker_policy *wp;      /* the policy generation this request runs under */
    struct policy_decision dec;    /* valid when has_dec */
    bool has_dec;
    struct lua_host_wait *policy_wait; /* a decision suspended on cache reads */
    struct policy_read *policy_read;   /* its Redis reads in flight */
    struct store_overrides ov;     /* what the route policy says about storage */
    struct request_cc cc;          /* the request's Cache-Control */
    uint64_t gen;                  /* invalidation sequence when our fetch began */
    int64_t marker_stored_at;      /* Vary marker of this URL: older variants are void */
    struct cache_object *stale_obj; /* a stale entry: revalidation base, stale-if-error */

    /* Flight (cacheable misses). */
    struct flight *flight;    /* set while we lead an open flight */
    enum flight_outcome outcome;
    struct cache_object *woken_obj;
    int woken_status;

    /* Fetch. */
    struct upstream_fetch *fetch;

    /* Redis lookup and /health/cache PING results (written by the loop before resuming). */
    struct cache_object *l2_obj;
    int l2_err;
    double ping_ms;

    /* For the access log. */
    int status;
    const char *x_cache;
    const char *version;      /* libmicrohttpd's string, valid for the request */
    char request_id[ACCESS_LOG_REQUEST_ID_MAX + 1]; /* the client's X-Request-Id, or ours */
    long long bytes;          /* body bytes of the answer, when bytes_known */
    bool bytes_known;
    int64_t upstream_start_us; /* when our last fetch was built (metrics_now_us) */
    int64_t upstream_us;      /* time until its answer was ready; 0 = none answered */
    char *referer, *user_agent; /* copies, kept even when the request is refused */

    /* For the metrics (record_metrics). */
    int64_t start_us;         /* monotonic µs, for the request's duration */
    bool own_endpoint;        /* /health, /health/cache, /metrics: not a served request */
    bool gateway_error;       /* answered by answer_error */
    bool served_stale;        /* answered by answer_stale */
    bool hit_redis;           /* a fresh hit from the Redis tier */
    bool stale_redis;         /* stale_obj came from the Redis tier */
};


/* ---- small helpers ---- */

static void add_header(struct MHD_Response *resp, const char *name, const char *value)
{
    if (MHD_add_response_header(resp, name, value) == MHD_NO)
        LOG_D("header refused by libmicrohttpd: %s", name);
}

/* Cache-Status, with the cache key as key="..." (RFC 9211) for a request that asked
 * for it (Cachegw-Debug: <ADMIN_TOKEN>) or when DEBUG_HEADERS is on.  The key is an
 * sf-string: printable ASCII, '"' and '\\' escaped, other bytes as %XX. */
static void add_cache_status(struct request *r, struct MHD_Response *resp, const char *value)
{
    if (!r->debug || r->key == NULL) {
        add_header(resp, "Cache-Status", value);
        return;
    }
    char line[1024];
    size_t at = (size_t)snprintf(line, sizeof line, "%s; key=\"", value);
    for (const char *k = r->key; *k && at + 8 < sizeof line; k++) {
        unsigned char c = (unsigned char)*k;
        if (c == '"' || c == '\\') at += (size_t)snprintf(line + at, sizeof line - at, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f) at += (size_t)snprintf(line + at, sizeof line - at, "%%%02X", c);
        else line[at++] = (char)c;
    }
    if (at + 2 > sizeof line) at = sizeof line - 2;
    line[at++] = '"';
    line[at] = '\0';
    add_header(resp, "Cache-Status", line);
}

/* The access log's body size of an answer (a HEAD answer sends none). */
static void note_bytes(struct request *r, long long len)
{
    r->bytes_known = len >= 0;
    r->bytes = r->method != NULL && strcmp(r->method, "HEAD") == 0 ? 0 : len;
}

static enum MHD_Result queue(struct request *r, int status, struct MHD_Response *resp,
                             const char *x_cache)
{
    r->status = status;
    r->x_cache = x_cache;
    r->phase = PH_ANSWERED;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The gateway's own answers (refusals, failed forwards): a small JSON body and,
 * as on every answer, X-Cache and Cache-Status (RFC 9211).  X-Cache is MISS for
 * a request the cache could have answered, else BYPASS.  A 502/504 after a
 * forward names it (fwd=uri-miss or stale for a cacheable request, request or
 * method otherwise; collapsed when it waited on another request's fetch) but
 * carries no fwd-status: the upstream gave no response, so there is no status
 * of its to report (an upstream's own 502 passes through as fwd-status=502).
 * Other answers were given before any forward: no fwd, only detail.  detail is
 * the error as a token, e.g. upstream-timeout, upstream-unavailable. */
static enum MHD_Result answer_error(struct request *r, int status, const char *error,
                                    const char *detail)
{
    r->gateway_error = true;
    /* detail may be an upstream library's message: escaped for the JSON body. */
    char safe_detail[256] = "";
    if (detail != NULL) {
        size_t w = 0;
        for (const char *p = detail; *p != '\0' && w + 7 < sizeof safe_detail; p++) {
            unsigned char c = (unsigned char)*p;
            if (c == '"' || c == '\\')
                w += (size_t)snprintf(safe_detail + w, sizeof safe_detail - w, "\\%c", c);
            else if (c < 0x20 || c == 0x7f)
                w += (size_t)snprintf(safe_detail + w, sizeof safe_detail - w, "\\u%04x", c);
            else
                safe_detail[w++] = (char)c;
        }
        safe_detail[w] = '\0';
    }
    char body[512];
    snprintf(body, sizeof body, "{\"error\": \"%s\", \"status\": %d%s%s%s}\n", error, status,
             detail ? ", \"detail\": \"" : "", safe_detail, detail ? "\"" : "");

    char token[64];
    size_t n = 0;
    for (const char *p = error; *p != '\0' && n + 1 < sizeof token; p++) {
        char c = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
        bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (keep) token[n++] = c;
        else if (n > 0 && token[n - 1] != '-') token[n++] = '-';
    }
    while (n > 0 && token[n - 1] == '-') n--;
    token[n] = '\0';

    bool own_forward = r->fetch != NULL && r->fetch->error != UPSTREAM_OK;
    bool collapsed = !own_forward && r->outcome == FLIGHT_FAILED && r->woken_status == status;
    const char *x_cache = r->cacheable ? "MISS" : "BYPASS";
    char cache_status[160];
    if ((status == 502 || status == 504) && (own_forward || collapsed)) {
        const char *fwd = r->cacheable ? (r->stale_obj ? "stale" : "uri-miss")
                          : r->method != NULL && (strcmp(r->method, "GET") == 0 ||
                                                  strcmp(r->method, "HEAD") == 0)
                              ? "request"
                              : "method";
        snprintf(cache_status, sizeof cache_status, "cachegw; fwd=%s;%s detail=%s", fwd,
                 collapsed ? " collapsed;" : "", token[0] ? token : "error");
    } else {
        snprintf(cache_status, sizeof cache_status, "cachegw; detail=%s",
                 token[0] ? token : "error");
    }

    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) return MHD_NO;
    note_bytes(r, (long long)strlen(body));
    add_header(resp, "Content-Type", "application/json");
    add_header(resp, "Cache-Control", "no-store");
    add_header(resp, "X-Cache", x_cache);
    add_cache_status(r, resp, cache_status);
    return queue(r, status, resp, x_cache);
}

static void unref_object_cb(void *cls) { cache_object_unref(cls); }

/* Answers from a stored object without copying its body. */
static enum MHD_Result answer_object(struct request *r, struct cache_object *obj,
                                     const char *x_cache, const char *cache_status)
{
    bool not_modified = cache_rules_not_modified(&r->headers, obj);
    struct cache_object *ref = cache_object_ref(obj);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback_cls(
        not_modified ? 0 : obj->body_len, (void *)obj->body, unref_object_cb, ref);
    if (resp == NULL) {
        cache_object_unref(ref);
        return MHD_NO;
    }
    note_bytes(r, not_modified ? 0 : (long long)obj->body_len);
    for (size_t i = 0; i < obj->n_headers; i++)
        if (strncmp(obj->headers[i].name, "x-cachegw-", 10) != 0)
            add_header(resp, obj->headers[i].name, obj->headers[i].value);
    int64_t now = clock_wall_ms();
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)cache_object_age_s(obj, now));
    add_header(resp, "Age", num);
    add_header(resp, "X-Cache", x_cache);
    add_cache_status(r, resp, cache_status);
    return queue(r, not_modified ? 304 : obj->status, resp, x_cache);
}

static void free_buffer_cb(void *cls) { free(cls); }

/* A HEAD answered without a body still reports the upstream's length. */
static ssize_t no_body_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static void copy_forwardable_headers(struct MHD_Response *resp, const struct header_list *h)
{
    const char *connection = header_list_get(h, "connection");
    for (size_t i = 0; i < h->n; i++) {
        const char *name = h->items[i].name;
        if (headers_is_hop_by_hop(name, connection)) continue;
        if (strcmp(name, "content-length") == 0 || strcmp(name, "date") == 0) continue;
        add_header(resp, name, h->items[i].value);
    }
}

/* Answers with a buffered upstream response, handing its body over. */
static enum MHD_Result answer_fetched(struct request *r, struct upstream_fetch *f,
                                      const char *x_cache, const char *cache_status)
{
    struct MHD_Response *resp;
    if (f->head_only && f->content_length > 0) {
        resp = MHD_create_response_from_callback((uint64_t)f->content_length, 4096,
                                                 no_body_reader, NULL, NULL);
    } else {
        char *data = f->body.data;
        size_t len = f->body.len;
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            len, data ? data : (char *)"", data ? free_buffer_cb : NULL, data);
        if (resp != NULL) memset(&f->body, 0, sizeof f->body);
        note_bytes(r, (long long)len);
    }
    if (resp == NULL) return MHD_NO;
    copy_forwardable_headers(resp, &f->resp_headers);
    add_header(resp, "X-Cache", x_cache);
    add_cache_status(r, resp, cache_status);
    return queue(r, f->status, resp, x_cache);
}

/* ---- streaming ---- */

struct stream_ctx {
    struct upstream_stream *stream;
    struct MHD_Connection *conn;
};

static void stream_suspend(void *arg) { MHD_suspend_connection(((struct stream_ctx *)arg)->conn); }
static void stream_resume(void *arg) { MHD_resume_connection(((struct stream_ctx *)arg)->conn); }

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_ctx *c = cls;
    size_t n = 0;
    switch (upstream_stream_read(c->stream, buf, max, &n, stream_suspend, stream_resume, c)) {
    case STREAM_DATA:
        return (ssize_t)n;
    case STREAM_WAIT:
        return 0;
    case STREAM_END:
        return MHD_CONTENT_READER_END_OF_STREAM;
    case STREAM_FAILED:
    default:
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls)
{
    struct stream_ctx *c = cls;
    upstream_stream_release(c->stream);
    free(c);
}

static enum MHD_Result answer_streamed(struct request *r, struct upstream_fetch *f,
                                       const char *x_cache, const char *cache_status)
{
    struct stream_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) return MHD_NO;
    c->stream = f->stream;
    c->conn = r->conn;
    uint64_t size = f->content_length >= 0 ? (uint64_t)f->content_length : MHD_SIZE_UNKNOWN;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(size, 64 * 1024, stream_reader, c, stream_free);
    if (resp == NULL) {
        free(c);
        return MHD_NO;
    }
    note_bytes(r, f->content_length); /* unknown (-1) when chunked */
    /* The stream owns the fetch from here on; it frees it via on_free. */
    upstream_request_set_owner(f, NULL);
    r->fetch = NULL;
    copy_forwardable_headers(resp, &f->resp_headers);
    add_header(resp, "X-Cache", x_cache);
    add_cache_status(r, resp, cache_status);
    STATS_INC(streamed);
    return queue(r, f->status, resp, x_cache);
}

/* ---- upstream fetches ---- */

static void request_release(struct request *r);

/* I/O loop thread: the response (or its first bytes, when streaming) is here.
 * A request whose body is streamed may still be receiving it, or its client may
 * have left: the pipe decides who resumes and who frees (body_pipe.h). */
static void fetch_ready(struct upstream_fetch *f)
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
    MHD_resume_connection(r->conn);
}

static struct upstream_fetch *build_fetch(struct request *r, bool for_cache)
{
    struct upstream_request_input in = {.method = r->method,
                                        .uri = r->uri,
                                        .headers = &r->headers,
                                        .client_ip = r->client_ip,
                                        .body = &r->body,
                                        .for_cache = for_cache,
                                        .buffer_limit = r->gw->cfg->max_value_bytes,
                                        .on_ready = fetch_ready,
                                        .owner = r};
    r->upstream_start_us = metrics_now_us(); /* the access log's upstream_time */
    return upstream_request_build(&in);
}

/* Suspends the connection, then starts the fetch.  Returns the handler result. */
static enum MHD_Result start_fetch(struct request *r, bool for_cache)
{
    struct upstream_fetch *f = build_fetch(r, for_cache);
    if (f == NULL) return answer_error(r, 503, "out of memory", NULL);
    r->fetch = f;
    r->wait = WAIT_FETCH;
    r->phase = PH_WAITING;
    STATS_INC(upstream_requests);
    MHD_suspend_connection(r->conn);
    if (proxy_submit(r->gw->proxy, f) != 0) {
        /* Never started: nothing will resume us, so do it ourselves. */
        f->error = UPSTREAM_BROKEN;
        snprintf(f->errmsg, sizeof f->errmsg, "gateway shutting down");
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

/* ---- flights ---- */

/* Runs on the leader's thread: records what the waiter should do, resumes it. */
static void flight_wake(void *waiter, enum flight_outcome outcome, struct cache_object *obj,
                        int status)
{
    struct request *r = waiter;
    r->outcome = outcome;
    r->woken_obj = obj ? cache_object_ref(obj) : NULL;
    r->woken_status = status;
    MHD_resume_connection(r->conn);
}

static int upstream_error_status(const struct upstream_fetch *f)
{
    return f->error == UPSTREAM_TIMEOUT ? 504 : 502;
}

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

static bool stale_if_error_ok(const struct request *r)
{
    return r->stale_obj && cache_rules_stale_if_error(r->stale_obj, clock_wall_ms());
}

/* Answers with the stale entry; detail says why (stale-if-error, ...). */
static enum MHD_Result answer_stale(struct request *r, const char *detail)
{
    char cache_status[128];
    snprintf(cache_status, sizeof cache_status, "cachegw; hit; fwd=stale; detail=%s", detail);
    r->served_stale = true;
    STATS_INC(stale_served);
    STATS_INC(hits);
    return answer_object(r, r->stale_obj, "HIT", cache_status);
}

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

/* Stores a leader's buffered response if allowed, then closes its flight.
 * Returns the stored object (one reference) or NULL.  Safe to call from the
 * completion callback when the client left before the answer. */
static struct cache_object *leader_finish(struct request *r, const char **not_stored_reason)
{
    struct upstream_fetch *f = r->fetch;
    struct cache_object *obj = NULL;
    *not_stored_reason = NULL;
    if (f->error != UPSTREAM_OK || (f->status >= 500 && stale_if_error_ok(r))) {
        coalesce_finish(r->gw->coalescer, r->flight, FLIGHT_FAILED, NULL,
                        f->error != UPSTREAM_OK ? upstream_error_status(f) : f->status);
        r->flight = NULL;
        return NULL;
    }
    if (f->stream == NULL) {
        struct fill_input in = {.key = r->key,
                                .req_headers = &r->headers,
                                .status = f->status,
                                .resp_headers = &f->resp_headers,
                                .body = f->body.data,
                                .body_len = f->body.len,
                                .revalidated = r->stale_obj,
                                .ov = &r->ov,
                                .request_no_store = r->cc.no_store,
                                .gen = r->gen,
                                .tags = r->has_dec ? r->dec.tags : NULL,
                                .n_tags = r->has_dec ? r->dec.n_tags : 0,
                                .hook = r->has_dec && r->dec.has_response_hook
                                            ? response_hook_adapter
                                            : NULL,
                                .hook_arg = r};
        obj = cache_fill(r->gw, &in, not_stored_reason);
    } else {
        *not_stored_reason = "too-big";
        STATS_INC(too_big);
        STATS_INC(not_stored);
    }
    coalesce_finish(r->gw->coalescer, r->flight, obj ? FLIGHT_STORED : FLIGHT_RETRY, obj, 0);
    r->flight = NULL;
    return obj;
}

/* After a successful write: the route's invalidations, or RFC 9111 §4.4 (an
 * unsafe method invalidates the target URI and its Location and
 * Content-Location).  Applied before the client gets its answer, so its next
 * read already misses. */
static void apply_invalidations(struct request *r, const struct upstream_fetch *f)
{
    struct gateway *gw = r->gw;
    bool read = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
    if (r->has_dec && r->dec.action == POLICY_INVALIDATE) {
        if (f->status < 200 || f->status >= 300) return;
        for (size_t i = 0; i < r->dec.n_invalidate; i++) {
            const struct policy_target *t = &r->dec.invalidate[i];
            if (t->tag) cache_tiers_invalidate_tag(gw, t->key);
            else if (t->prefix) cache_tiers_invalidate_prefix(gw, t->key);
            else cache_tiers_invalidate_key(gw, t->key);
        }
        return;
    }
    if (read || f->status < 200 || f->status >= 400) return;
    if (r->has_dec && r->dec.action == POLICY_BYPASS) return;
    char key[2048];
    if (r->has_dec && r->dec.key) cache_tiers_invalidate_key(gw, r->dec.key);
    else if (snprintf(key, sizeof key, "GET:%s", r->uri) < (int)sizeof key)
        cache_tiers_invalidate_key(gw, key);
    const char *names[] = {"location", "content-location"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = header_list_get(&f->resp_headers, names[i]);
        /* Only same-origin, path-absolute references name our entries. */
        if (v && v[0] == '/' && v[1] != '/' &&
            snprintf(key, sizeof key, "GET:%s", v) < (int)sizeof key)
            cache_tiers_invalidate_key(gw, key);
    }
}

/* ---- the request state machine ---- */

static enum MHD_Result answer_after_fetch(struct request *r)
{
    struct upstream_fetch *f = r->fetch;
    r->wait = WAIT_NONE;
    bool leader = r->flight != NULL;
    if ((f->error != UPSTREAM_OK || f->status >= 500) && stale_if_error_ok(r)) {
        if (leader) leader_finish(r, &(const char *){NULL});
        char safe[256];
        log_escape_uri(r->uri, safe, sizeof safe);
        LOG_W("upstream %s %s failed (%s): serving stale", r->method, safe,
              f->error != UPSTREAM_OK ? f->errmsg : "5xx");
        return answer_stale(r, "stale-if-error");
    }
    if (f->error != UPSTREAM_OK) {
        if (leader) leader_finish(r, &(const char *){NULL});
        STATS_INC(upstream_errors);
        char safe[256];
        log_escape_uri(r->uri, safe, sizeof safe);
        LOG_W("upstream %s %s failed: %s", r->method, safe, f->errmsg);
        int status = upstream_error_status(f);
        return answer_error(r, status, status == 504 ? "upstream timeout" : "upstream unavailable",
                            f->errmsg);
    }
    if (!leader) apply_invalidations(r, f);
    const char *x_cache = r->cacheable ? "MISS" : "BYPASS";
    char cache_status[160];
    if (leader) {
        const char *why;
        struct cache_object *obj = leader_finish(r, &why);
        if (obj) {
            snprintf(cache_status, sizeof cache_status, "cachegw; fwd=%s; fwd-status=%d; stored; ttl=%lld",
                     r->stale_obj ? "stale" : "uri-miss", f->status,
                     (long long)(obj->meta.ttl_ms / 1000 - obj->meta.initial_age_s));
            enum MHD_Result ret = answer_object(r, obj, "MISS", cache_status);
            cache_object_unref(obj);
            return ret;
        }
        if (f->status == 304 && r->stale_obj) {
            /* Revalidated but not re-stored: the stale copy is still current. */
            return answer_object(r, r->stale_obj, "MISS",
                                 "cachegw; fwd=stale; fwd-status=304; detail=not-stored");
        }
        snprintf(cache_status, sizeof cache_status, "cachegw; fwd=uri-miss; detail=%s",
                 why ? why : "not-stored");
    } else if (r->cacheable) {
        snprintf(cache_status, sizeof cache_status, "cachegw; fwd=uri-miss; detail=uncollapsed");
    } else {
        snprintf(cache_status, sizeof cache_status, "cachegw; fwd=%s; detail=%s",
                 strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0 ? "request"
                                                                                 : "method",
                 r->bypass_reason ? r->bypass_reason : "bypass");
    }
    if (f->stream) return answer_streamed(r, f, x_cache, cache_status);
    return answer_fetched(r, f, x_cache, cache_status);
}

static enum MHD_Result answer_after_flight(struct request *r)
{
    r->wait = WAIT_NONE;
    switch (r->outcome) {
    case FLIGHT_STORED: {
        struct cache_object *obj = r->woken_obj;
        r->woken_obj = NULL;
        const char *vary = cache_object_header(obj, "vary");
        char variant[2048];
        if (vary && (cache_rules_variant_key(r->key, vary, &r->headers, variant,
                                             sizeof variant) != 0 ||
                     strcmp(variant, obj->key) != 0) && strcmp(r->key, obj->key) != 0) {
            /* Another variant was fetched: this request needs its own. */
            cache_object_unref(obj);
            return start_fetch(r, false);
        }
        STATS_INC(hits);
        char cache_status[96];
        snprintf(cache_status, sizeof cache_status, "cachegw; hit; detail=collapsed");
        enum MHD_Result ret = answer_object(r, obj, "HIT", cache_status);
        cache_object_unref(obj);
        return ret;
    }
    case FLIGHT_FAILED:
        if (stale_if_error_ok(r)) return answer_stale(r, "stale-if-error");
        STATS_INC(upstream_errors);
        return answer_error(r, r->woken_status,
                            r->woken_status == 504 ? "upstream timeout" : "upstream unavailable",
                            "collapsed onto a failed fetch");
    case FLIGHT_RETRY:
    default:
        /* Not shareable: fetch for ourselves, without joining a flight. */
        STATS_INC(misses);
        return start_fetch(r, false);
    }
}

static enum MHD_Result answer_status_page(struct request *r, bool metrics, double latency_ms)
{
    struct gateway *gw = r->gw;
    struct health_redis_view redis = {.configured = gw->redis != NULL,
                                      .available = cache_tiers_l2_available(gw),
                                      .latency_ms = latency_ms};
    struct MHD_Response *resp;
    if (metrics) {
        /* Histograms and per-route series: no small fixed bound, so a malloc'd text. */
        size_t len;
        char *text = endpoints_metrics_text(gw, &redis, &len);
        if (text == NULL) return answer_error(r, 500, "internal error", NULL);
        resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
        if (resp == NULL) free(text);
    } else {
        char body[8192];
        int n = endpoints_health_cache_json(gw, &redis, body, sizeof body);
        if (n < 0) return answer_error(r, 500, "internal error", NULL);
        resp = MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    }
    if (resp == NULL) return MHD_NO;
    add_header(resp, "Content-Type", metrics ? "text/plain; version=0.0.4" : "application/json");
    add_header(resp, "Cache-Control", "no-store");
    /* Degraded (Redis configured but unavailable): HEALTH_DEGRADED_STATUS, 200 by default,
     * since the gateway still serves every request from memory and the upstream. */
    int status = !metrics && redis.configured && !redis.available
                     ? gw->cfg->health_degraded_status
                     : 200;
    return queue(r, status, resp, NULL);
}

/* Loop thread: the PING for /health/cache came back (or failed). */
static void ping_done(void *arg, double latency_ms)
{
    struct request *r = arg;
    r->ping_ms = latency_ms;
    MHD_resume_connection(r->conn);
}

enum own_endpoint { OWN_NONE, OWN_HEALTH, OWN_HEALTH_CACHE, OWN_METRICS };

static bool path_is(const char *configured, const char *path)
{
    return configured != NULL && configured[0] != '\0' && strcmp(configured, path) == 0;
}

/* The gateway's own endpoints sit at configurable paths (HEALTH_PATH, ...), so an
 * upstream's own /health or /metrics can be reached through the gateway. */
static enum own_endpoint own_endpoint_of(const struct config *cfg, const char *method,
                                         const char *path)
{
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) return OWN_NONE;
    if (path_is(cfg->health_path, path)) return OWN_HEALTH;
    if (path_is(cfg->health_cache_path, path)) return OWN_HEALTH_CACHE;
    if (path_is(cfg->metrics_path, path)) return OWN_METRICS;
    return OWN_NONE;
}

static enum MHD_Result answer_own_endpoint(struct request *r, enum own_endpoint which)
{
    struct gateway *gw = r->gw;
    /* Not in cachegw_active_requests: a scrape must not count itself. */
    if (!r->own_endpoint) {
        r->own_endpoint = true;
        metrics_own_endpoint_begin();
    }
    if (which == OWN_HEALTH) {
        r->status = 200;
        r->phase = PH_ANSWERED;
        return MHD_queue_response(r->conn, 200, gw->health_response);
    }
    if (which == OWN_HEALTH_CACHE && cache_tiers_l2_available(gw)) {
        /* latency_ms is a live PING, bounded by the Redis operation timeout. */
        r->phase = PH_WAITING;
        r->wait = WAIT_PING;
        r->ping_ms = -1;
        MHD_suspend_connection(r->conn);
        if (cache_tiers_ping(gw, ping_done, r) != 0) MHD_resume_connection(r->conn);
        return MHD_YES;
    }
    return answer_status_page(r, which == OWN_METRICS,
                              gw->redis ? redis_pool_last_latency_ms(gw->redis) : -1);
}

/* Moves the request from a URL's Vary marker to its own variant's key and
 * remembers the marker's age (variants stored before it are void).  Returns
 * 0, or -1 when the variant key cannot be built (the request keeps the base
 * key). */
static int follow_marker(struct request *r, const struct cache_object *marker)
{
    char variant[2048];
    const char *vary = cache_object_header(marker, CACHE_RULES_VARY_HEADER);
    r->marker_stored_at = marker->meta.stored_at_ms;
    if (cache_rules_variant_key(r->key, vary, &r->headers, variant, sizeof variant) != 0)
        return -1;
    char *k = strdup(variant);
    if (k == NULL) return -1;
    free(r->key);
    r->key = k;
    return 0;
}

/* True for a variant stored under an earlier marker, which a write dropped. */
static bool variant_void(const struct request *r, const struct cache_object *obj)
{
    return cache_object_header(obj, CACHE_RULES_VARY_HEADER) == NULL &&
           obj->meta.stored_at_ms < r->marker_stored_at;
}

/* Answers a fresh hit; detail (may be NULL) names the tier it came from. */
static enum MHD_Result answer_hit(struct request *r, struct cache_object *obj, int64_t now,
                                  const char *detail)
{
    char cache_status[96];
    int64_t ttl_left =
        (obj->meta.ttl_ms - (now - obj->meta.stored_at_ms)) / 1000 - obj->meta.initial_age_s;
    snprintf(cache_status, sizeof cache_status, "cachegw; hit; ttl=%lld%s%s",
             (long long)ttl_left, detail ? "; detail=" : "", detail ? detail : "");
    STATS_INC(hits);
    r->hit_redis = detail != NULL && strcmp(detail, "redis") == 0;
    return answer_object(r, obj, "HIT", cache_status);
}

/* The leader (already suspended) fetches from the upstream. */
static enum MHD_Result leader_fetch(struct request *r)
{
    STATS_INC(misses);
    r->gen = inval_index_current(r->gw->inval);
    r->wait = WAIT_FETCH;
    struct upstream_fetch *f = build_fetch(r, true);
    if (f == NULL) {
        coalesce_finish(r->gw->coalescer, r->flight, FLIGHT_RETRY, NULL, 0);
        r->flight = NULL;
        r->wait = WAIT_NONE; /* answered 503 on the resumed call */
        MHD_resume_connection(r->conn);
        return MHD_YES;
    }
    upstream_request_add_validators(f, r->stale_obj);
    r->fetch = f;
    STATS_INC(upstream_requests);
    if (proxy_submit(r->gw->proxy, f) != 0) {
        f->error = UPSTREAM_BROKEN;
        snprintf(f->errmsg, sizeof f->errmsg, "gateway shutting down");
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

/* Loop thread: the Redis lookup finished. */
static void l2_done(void *arg, struct cache_object *obj, int err)
{
    struct request *r = arg;
    r->l2_obj = obj;
    r->l2_err = err;
    MHD_resume_connection(r->conn);
}

static enum MHD_Result answer_after_l2(struct request *r)
{
    struct gateway *gw = r->gw;
    struct cache_object *obj = r->l2_obj;
    r->l2_obj = NULL;
    r->wait = WAIT_NONE;
    int64_t now = clock_wall_ms();
    if (obj && (!inval_index_valid(gw->inval, obj) || variant_void(r, obj))) {
        cache_tiers_l2_delete(gw, obj->key);
        cache_object_unref(obj);
        obj = NULL;
    }
    const char *vary = obj ? cache_object_header(obj, CACHE_RULES_VARY_HEADER) : NULL;
    if (vary) {
        /* A Vary marker from Redis: keep it, then look up our variant. */
        store_l1_put(gw->l1, obj, now);
        int rc = follow_marker(r, obj);
        cache_object_unref(obj);
        MHD_suspend_connection(r->conn);
        r->phase = PH_WAITING;
        if (rc == 0) {
            r->wait = WAIT_L2;
            if (cache_tiers_l2_get(gw, r->key, l2_done, r) == 0) return MHD_YES;
        }
        return leader_fetch(r);
    }
    if (obj && cache_rules_usability(obj, &r->cc, now) == USE_FRESH) {
        store_l1_put(gw->l1, obj, now);
        STATS_INC(hits_l2);
        coalesce_finish(gw->coalescer, r->flight, FLIGHT_STORED, obj, 0);
        r->flight = NULL;
        enum MHD_Result ret = answer_hit(r, obj, now, "redis");
        cache_object_unref(obj);
        return ret;
    }
    if (obj) {
        if (cache_rules_usability(obj, &r->cc, now) == USE_STALE_OK) {
            coalesce_finish(gw->coalescer, r->flight, FLIGHT_STORED, obj, 0);
            r->flight = NULL;
            cache_object_unref(r->stale_obj);
            r->stale_obj = obj;
            r->stale_redis = true;
            return answer_stale(r, "max-stale");
        }
        if (r->stale_obj == NULL) {
            r->stale_obj = obj;
            r->stale_redis = true;
        } else {
            cache_object_unref(obj);
        }
    }
    MHD_suspend_connection(r->conn);
    r->phase = PH_WAITING;
    return leader_fetch(r);
}

/* Refreshes r->stale_obj in the background, once per key.  Routes with an
 * on_response hook are not refreshed this way: the hook is Lua and the
 * refresh completes on the I/O loop, where Lua never runs. */
static void start_background_refresh(struct request *r)
{
    if (r->has_dec && r->dec.has_response_hook) return;
    struct refresh_input in = {.key = r->key,
                               .stale = r->stale_obj,
                               .ov = &r->ov,
                               .method = r->method,
                               .uri = r->uri,
                               .headers = &r->headers,
                               .client_ip = r->client_ip};
    refresh_start(r->gw, &in);
}

/* A memory-tier lookup that never returns an entry a prefix or tag
 * invalidation has covered (those are dropped as they are met). */
static struct cache_object *lookup_l1(struct gateway *gw, const char *key, size_t key_len,
                                      int64_t now)
{
    struct cache_object *obj = store_l1_get(gw->l1, key, key_len, now);
    if (obj && !inval_index_valid(gw->inval, obj)) {
        store_l1_delete(gw->l1, key, key_len);
        cache_object_unref(obj);
        return NULL;
    }
    return obj;
}

static int plan_policy(struct request *r);

/* Decides how to serve the request: the route policy when one matches,
 * otherwise the default rules (RFC 9111 shared cache).  Sets cacheable, key,
 * bypass_reason and the storage overrides.  Returns 0, -ENOMEM, or
 * -EINPROGRESS when the policy waits for cache reads (r->policy_wait; see
 * wait_policy: plan_policy finishes the plan once it has decided). */
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
    if (r->cacheable) {
        size_t n = strlen(r->uri) + 5;
        r->key = malloc(n);
        if (r->key == NULL) return -ENOMEM;
        snprintf(r->key, n, "GET:%s", r->uri);
    }
    return 0;
}

/* The second half of plan() for a request with a (final) policy decision.  Returns 0 or
 * -ENOMEM. */
static int plan_policy(struct request *r)
{
    bool read = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
    r->has_dec = true;
    {
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
                           cache_rules_request_cacheable(r->method, &r->headers,
                                                         &r->bypass_reason);
            break;
        case POLICY_BYPASS:
        case POLICY_INVALIDATE:
        default:
            r->cacheable = false;
            r->bypass_reason = r->dec.reason ? r->dec.reason : "policy";
            break;
        }
        if (r->cacheable && !cache_key_is_valid(r->dec.key, strlen(r->dec.key))) {
            /* A key carrying internal key syntax could name another URL's variant. */
            r->cacheable = false;
            r->bypass_reason = "invalid-key";
        }
        if (r->cacheable) {
            r->key = strdup(r->dec.key);
            if (r->key == NULL) return -ENOMEM;
        }
        return 0;
    }
}

static enum MHD_Result proceed(struct request *r);
static enum MHD_Result stream_fetch(struct request *r);

/* ---- policies waiting for cache-module reads (WAIT_POLICY) ----
 *
 * A policy's cache.get that misses the memory tier suspends its decision (lua_host.h).  The
 * connection is suspended, each waited key is read from Redis on the I/O loop, and the last
 * answer resumes the connection; answer_after_policy then resumes the decision on this
 * worker (its Lua state never leaves the thread) and goes on where begin() left off. */

struct policy_read_slot {
    struct policy_read *pr;
    struct cache_object *obj; /* written by the loop thread */
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
    for (size_t i = 0; i < pr->n; i++) cache_object_unref(pr->slots[i].obj);
    free(pr->vals);
    free(pr);
}

/* Loop thread: one read answered; the last one resumes the request. */
static void policy_read_done(void *arg, struct cache_object *obj, int err)
{
    (void)err; /* a failed read is a miss: the policy sees nil */
    struct policy_read_slot *slot = arg;
    struct policy_read *pr = slot->pr;
    slot->obj = obj;
    if (atomic_fetch_sub(&pr->pending, 1) == 1) MHD_resume_connection(pr->r->conn);
}

static enum MHD_Result wait_policy(struct request *r)
{
    const char *const *keys;
    size_t n = lua_host_wait_keys(r->policy_wait, &keys);
    struct policy_read *pr = calloc(1, sizeof *pr + n * sizeof pr->slots[0]);
    if (pr != NULL && (pr->vals = calloc(n ? n : 1, sizeof *pr->vals)) == NULL) {
        free(pr);
        pr = NULL;
    }
    if (pr == NULL) {
        lua_host_wait_free(worker_policy_host(r->wp), r->policy_wait);
        r->policy_wait = NULL;
        return answer_error(r, 503, "out of memory", NULL);
    }
    pr->r = r;
    pr->n = n;
    atomic_init(&pr->pending, n + 1);
    r->policy_read = pr;
    r->phase = PH_WAITING;
    r->wait = WAIT_POLICY;
    MHD_suspend_connection(r->conn);
    for (size_t i = 0; i < n; i++) {
        pr->slots[i].pr = pr;
        if (cache_tiers_l2_get(r->gw, keys[i], policy_read_done, &pr->slots[i]) != 0)
            atomic_fetch_sub(&pr->pending, 1); /* Redis went away: a miss */
    }
    if (atomic_fetch_sub(&pr->pending, 1) == 1) MHD_resume_connection(r->conn);
    return MHD_YES;
}

static enum MHD_Result answer_after_policy(struct request *r)
{
    struct policy_read *pr = r->policy_read;
    r->policy_read = NULL;
    r->wait = WAIT_NONE;
    for (size_t i = 0; i < pr->n; i++) {
        struct cache_object *obj = lua_cache_accept(r->gw, pr->slots[i].obj);
        pr->slots[i].obj = obj;
        pr->vals[i] = obj ? (struct lua_host_value){obj->body, obj->body_len}
                          : (struct lua_host_value){NULL, 0};
    }
    int rc = lua_host_resume_decide(worker_policy_host(r->wp), r->policy_wait, pr->vals, pr->n,
                                    &r->dec);
    policy_read_free(pr);
    if (rc == -EINPROGRESS) return wait_policy(r);
    r->policy_wait = NULL; /* consumed */
    if (rc != 0) STATS_INC(policy_errors);
    if (plan_policy(r) != 0) return answer_error(r, 503, "out of memory", NULL);
    if (r->pipe) return stream_fetch(r); /* planned at header time: see stream_start */
    return proceed(r);
}

static enum MHD_Result begin(struct request *r)
{
    /* The path alone (no query) decides the gateway's own endpoints. */
    char path[256];
    size_t plen = strcspn(r->uri, "?");
    if (plen < sizeof path) {
        memcpy(path, r->uri, plen);
        path[plen] = '\0';
        enum own_endpoint own = own_endpoint_of(r->gw->cfg, r->method, path);
        if (own != OWN_NONE) return answer_own_endpoint(r, own);
    }
    if (r->body_too_big) {
        STATS_INC(rejected);
        return answer_error(r, 413, "request body too large", NULL);
    }
    if (r->body_over_budget) {
        STATS_INC(rejected);
        LOG_W("request bodies buffered reached MAX_BUFFERED_BODIES: refusing one with 503");
        return answer_error(r, 503, "busy", "too many request bodies buffered");
    }
    if (r->uri[0] != '/') {
        STATS_INC(rejected);
        return answer_error(r, 400, "bad request target", NULL);
    }
    STATS_INC(requests);
    int rc = plan(r);
    if (rc == -EINPROGRESS) return wait_policy(r); /* continues in answer_after_policy */
    if (rc != 0) return answer_error(r, 503, "out of memory", NULL);
    return proceed(r);
}

/* LOG_LEVEL=debug: what was decided for this request, and why. */
static void log_decision(const struct request *r)
{
    if (log_get_level() > LOG_DEBUG) return;
    char uri[256], key[256];
    log_escape_uri(r->uri, uri, sizeof uri);
    log_escape(r->key ? r->key : "-", key, sizeof key);
    long long ttl = r->has_dec && r->dec.ttl_ms >= 0 ? (long long)(r->dec.ttl_ms / 1000) : -1;
    LOG_D("decision %s %s: route=%s %s key=%s reason=%s ttl=%s%lld", r->method, uri,
          r->has_dec && r->dec.route ? r->dec.route : "-", r->cacheable ? "cacheable" : "bypass",
          key, r->cacheable ? (r->has_dec && r->dec.reason ? r->dec.reason : "default")
                            : (r->bypass_reason ? r->bypass_reason : "-"),
          ttl < 0 ? "upstream" : "", ttl < 0 ? 0LL : ttl);
}

/* The rest of begin(), once the request is planned: serve, wait or forward. */
static enum MHD_Result proceed(struct request *r)
{
    cache_rules_request_cc(&r->headers, &r->cc);
    log_decision(r);
    if (r->cacheable && r->has_body) {
        /* The body is forwarded but is in no key: never share its answer. */
        r->cacheable = false;
        r->bypass_reason = "request-body";
    }
    if (!r->cacheable) {
        STATS_INC(bypasses);
        return start_fetch(r, false);
    }

    const char *key = r->key;
    size_t key_len = strlen(key);
    int64_t now = clock_wall_ms();
    struct cache_object *obj = lookup_l1(r->gw, key, key_len, now);
    const char *vary = obj ? cache_object_header(obj, CACHE_RULES_VARY_HEADER) : NULL;
    if (vary) {
        /* A Vary marker: look up this request's variant instead. */
        int rc = follow_marker(r, obj);
        cache_object_unref(obj);
        obj = NULL;
        if (rc == 0) {
            key = r->key;
            key_len = strlen(key);
            obj = lookup_l1(r->gw, key, key_len, now);
            if (obj && variant_void(r, obj)) {
                store_l1_delete(r->gw->l1, key, key_len);
                cache_object_unref(obj);
                obj = NULL;
            }
        }
    }
    enum usability use = obj ? cache_rules_usability(obj, &r->cc, now) : USE_REVALIDATE;
    if (obj != NULL && use == USE_STALE_OK) {
        r->stale_obj = obj;
        return answer_stale(r, "max-stale");
    }
    if (obj != NULL && use == USE_SWR) {
        r->stale_obj = obj;
        start_background_refresh(r);
        return answer_stale(r, "stale-while-revalidate");
    }
    if (obj != NULL && use == USE_FRESH) {
        enum MHD_Result ret = answer_hit(r, obj, now, NULL);
        cache_object_unref(obj);
        return ret;
    }
    r->stale_obj = obj; /* NULL, or stale: the base for revalidation and stale-if-error */
    if (r->cc.only_if_cached) return answer_error(r, 504, "not cached (only-if-cached)", NULL);

    /* Suspend first: a flight may finish (and resume us) right after join. */
    r->phase = PH_WAITING;
    r->wait = WAIT_FLIGHT;
    MHD_suspend_connection(r->conn);
    struct flight *flight;
    if (!coalesce_join(r->gw->coalescer, key, key_len, r, flight_wake, &flight)) {
        STATS_INC(coalesced);
        return MHD_YES;
    }
    r->flight = flight;
    if (cache_tiers_l2_available(r->gw)) {
        r->wait = WAIT_L2;
        if (cache_tiers_l2_get(r->gw, r->key, l2_done, r) == 0) return MHD_YES;
    }
    return leader_fetch(r);
}

/* The client's fields as libmicrohttpd parsed them, names as received (the
 * validator needs them unchanged); the strings live as long as the request. */
struct raw_fields {
    struct http_header *items;
    size_t n, cap;
    bool oom;
};

static enum MHD_Result collect_raw(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    struct raw_fields *rf = cls;
    if (rf->n == rf->cap) {
        size_t cap = rf->cap ? rf->cap * 2 : 32;
        struct http_header *items = realloc(rf->items, cap * sizeof *items);
        if (items == NULL) {
            rf->oom = true;
            return MHD_NO;
        }
        rf->items = items;
        rf->cap = cap;
    }
    /* A NUL inside a name or value would hide the rest of it from every check
     * below: make it visible as an invalid byte instead. */
    if (strlen(key) != key_size || (value && strlen(value) != value_size)) key = "<NUL>";
    rf->items[rf->n].name = key;
    rf->items[rf->n].value = value ? value : "";
    rf->n++;
    return MHD_YES;
}

/* ---- request bodies streamed upstream (body_pipe.h) ----
 *
 * A large or chunked body is not buffered: the request is planned as soon as its
 * headers are in (a request with a body is never answered from or stored into
 * the cache, so nothing waits for the body), the upstream fetch starts at once
 * reading from a bounded pipe, and the worker writes each chunk into the pipe,
 * suspending the connection while the pipe is full. */

static void conn_suspend_cb(void *arg) { MHD_suspend_connection(((struct request *)arg)->conn); }
static void conn_resume_cb(void *arg) { MHD_resume_connection(((struct request *)arg)->conn); }

/* Starts the upstream fetch of a planned request whose body is still coming. */
static enum MHD_Result stream_fetch(struct request *r)
{
    struct gateway *gw = r->gw;
    r->phase = PH_BODY;
    r->wait = WAIT_NONE;
    if (r->cacheable) {
        r->cacheable = false;
        r->bypass_reason = "request-body";
    }
    STATS_INC(bypasses);
    /* The decision is made; its Lua state is not needed again (the request may be
     * freed on the I/O loop if its client leaves, see completed_cb). */
    if (r->wp) policy_engine_release(r->wp);
    r->wp = NULL;
    struct upstream_fetch *f = build_fetch(r, false);
    if (f == NULL) return answer_error(r, 503, "out of memory", NULL);
    f->req_pipe = r->pipe;
    f->req_body_size = r->body_size;
    r->fetch = f;
    r->wait = WAIT_FETCH;
    STATS_INC(upstream_requests);
    if (proxy_submit(gw->proxy, f) != 0) {
        f->error = UPSTREAM_BROKEN;
        snprintf(f->errmsg, sizeof f->errmsg, "gateway shutting down");
        body_pipe_answer_ready(r->pipe);
    }
    return MHD_YES;
}

/* Header time, for a request whose body will be streamed: plan it now. */
static enum MHD_Result stream_start(struct request *r, long long size)
{
    struct gateway *gw = r->gw;
    size_t before = atomic_fetch_add(&gw->buffered_body_bytes, BODY_PIPE_CAPACITY);
    r->body_accounted = BODY_PIPE_CAPACITY;
    if (before + BODY_PIPE_CAPACITY > gw->cfg->max_buffered_body_bytes) {
        STATS_INC(rejected);
        LOG_W("request bodies buffered reached MAX_BUFFERED_BODIES: refusing one with 503");
        return answer_error(r, 503, "busy", "too many request bodies buffered");
    }
    r->pipe = body_pipe_create(BODY_PIPE_CAPACITY);
    if (r->pipe == NULL) return answer_error(r, 503, "out of memory", NULL);
    r->body_size = size;
    STATS_INC(requests);
    int rc = plan(r);
    if (rc == -EINPROGRESS) return wait_policy(r); /* continues in answer_after_policy */
    if (rc != 0) return answer_error(r, 503, "out of memory", NULL);
    return stream_fetch(r);
}

/* A chunk of a streamed body: into the pipe, suspending while it is full. */
static void stream_body(struct request *r, const char *data, size_t *len)
{
    if (!r->body_too_big && r->body_streamed + *len > r->gw->cfg->max_body_bytes) {
        r->body_too_big = true; /* a chunked body past MAX_BODY_SIZE: abort upstream */
        body_pipe_cancel(r->pipe);
    }
    if (r->body_too_big) {
        *len = 0;
        return;
    }
    size_t n = body_pipe_write(r->pipe, data, *len, conn_suspend_cb, conn_resume_cb, r);
    r->body_streamed += n;
    *len -= n;
}

static enum MHD_Result stream_answer(struct request *r)
{
    if (r->body_too_big) {
        STATS_INC(rejected);
        return answer_error(r, 413, "request body too large", NULL);
    }
    return answer_after_fetch(r);
}

/* The streamed body is complete: answer once the upstream has. */
static enum MHD_Result stream_body_done(struct request *r)
{
    conn_guard_headers_done(r->gw->guard, r->slot);
    if (!r->body_too_big) body_pipe_finish(r->pipe);
    r->phase = PH_WAITING;
    if (body_pipe_await_answer(r->pipe, conn_suspend_cb, conn_resume_cb, r))
        return stream_answer(r);
    return MHD_YES;
}

/* Headers are in: validate the message (request_validator.h), then build the
 * forwarded field set every key is derived from.  Anything refused is answered
 * here, in the first call, so libmicrohttpd closes the connection after the
 * answer and sends no "100 Continue". */
static enum MHD_Result on_headers(struct request *r, const char *method, const char *version)
{
    struct gateway *gw = r->gw;
    const struct config *cfg = gw->cfg;
    r->method = method;
    r->version = version;
    conn_guard_mhd_client_ip(r->conn, r->client_ip, sizeof r->client_ip);

    struct raw_fields rf = {0};
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, collect_raw, &rf);
    if (rf.oom) {
        free(rf.items);
        return answer_error(r, 503, "out of memory", NULL);
    }
    for (size_t i = 0; i < rf.n && access_log_enabled(); i++) {
        char **copy = strcasecmp(rf.items[i].name, "referer") == 0      ? &r->referer
                      : strcasecmp(rf.items[i].name, "user-agent") == 0 ? &r->user_agent
                                                                          : NULL;
        if (copy != NULL && *copy == NULL) *copy = strdup(rf.items[i].value);
    }
    const struct request_limits limits = {.max_target_bytes = cfg->max_header_bytes,
                                          .max_query_params = (size_t)cfg->max_query_params,
                                          .max_header_bytes = cfg->max_header_bytes,
                                          .max_header_fields = HTTP_MAX_HEADER_FIELDS};
    struct request_verdict v;
    /* libmicrohttpd ends the target at its first NUL byte, so the rest of it is
     * invisible to every string check: the version must follow the target's end. */
    if (version && r->uri_end && version != r->uri_end + 1) {
        v.status = 400;
        v.reason = "NUL byte in request line";
    } else {
        request_validate(method, r->uri, version, rf.items, rf.n, &limits, &v);
    }
    if (v.status != 0) {
        free(rf.items);
        STATS_INC(rejected);
        char safe[160];
        log_escape_uri(r->uri, safe, sizeof safe);
        LOG_I("refused %s from %s: %s (target %s)", version ? version : "-", r->client_ip,
              v.reason, safe);
        return answer_error(r, v.status, v.status == 501 ? "not implemented" : "bad request",
                            v.reason);
    }
    r->debug = cfg->debug_headers;
    for (size_t i = 0; i < rf.n && !r->debug; i++)
        if (strcasecmp(rf.items[i].name, "cachegw-debug") == 0 && cfg->admin_token &&
            cfg->admin_token[0] && strlen(rf.items[i].value) == strlen(cfg->admin_token) &&
            CRYPTO_memcmp(rf.items[i].value, cfg->admin_token, strlen(cfg->admin_token)) == 0)
            r->debug = true;
    const struct forward_options fo = {.trusted = gw->trusted_proxies,
                                       .forwarded_host = cfg->forwarded_host};
    int rc = forward_headers_build(rf.items, rf.n, r->client_ip, &fo, &r->headers);
    /* The request id: the client's X-Request-Id when it is one sane token (one
     * field, <= 128 bytes), else a new one; either way the only one forwarded. */
    const char *rid = NULL;
    size_t n_rid = 0;
    for (size_t i = 0; i < rf.n; i++)
        if (strcasecmp(rf.items[i].name, "x-request-id") == 0 && n_rid++ == 0)
            rid = rf.items[i].value;
    if (n_rid == 1 && access_log_request_id_ok(rid))
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    else
        access_log_request_id_new(r->request_id);
    if (rc == 0) {
        header_list_remove(&r->headers, "x-request-id");
        rc = header_list_add(&r->headers, "x-request-id", r->request_id);
    }
    const char *cl = NULL, *te = NULL;
    for (size_t i = 0; i < rf.n; i++) {
        if (strcasecmp(rf.items[i].name, "content-length") == 0) cl = rf.items[i].value;
        if (strcasecmp(rf.items[i].name, "transfer-encoding") == 0) te = rf.items[i].value;
    }
    free(rf.items);
    if (rc != 0) return answer_error(r, 503, "out of memory", NULL);
    unsigned long long clen = cl ? strtoull(cl, NULL, 10) : 0;
    r->has_body = te != NULL || clen > 0;
    if (clen > cfg->max_body_bytes) {
        STATS_INC(rejected);
        return answer_error(r, 413, "request body too large", NULL);
    }
    if (r->has_body) conn_guard_body_started(gw->guard, r->slot);
    else conn_guard_headers_done(gw->guard, r->slot);
    r->phase = PH_BODY;
    if (r->has_body && (te != NULL || clen > BODY_STREAM_THRESHOLD) && r->uri[0] == '/')
        return stream_start(r, te != NULL ? -1 : (long long)clen);
    return MHD_YES;
}

/* Buffers a body chunk within MAX_BODY_SIZE for this request and
 * MAX_BUFFERED_BODIES over all requests. */
static void on_body(struct request *r, const char *data, size_t len)
{
    struct gateway *gw = r->gw;
    if (r->body_too_big || r->body_over_budget) return;
    if (r->body.len + len > gw->cfg->max_body_bytes) {
        r->body_too_big = true;
    } else {
        size_t before = atomic_fetch_add(&gw->buffered_body_bytes, len);
        r->body_accounted += len;
        if (before + len > gw->cfg->max_buffered_body_bytes) r->body_over_budget = true;
        else if (buf_append(&r->body, data, len) != 0) r->body_over_budget = true;
    }
    if (r->body_too_big || r->body_over_budget) {
        buf_free(&r->body);
        atomic_fetch_sub(&gw->buffered_body_bytes, r->body_accounted);
        r->body_accounted = 0;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct request *r = *con_cls;
    if (r == NULL) return MHD_NO; /* uri_log_cb failed to allocate */
    switch (r->phase) {
    case PH_HEADERS:
        r->conn = conn;
        return on_headers(r, method, version);
    case PH_BODY:
        if (r->pipe) {
            if (*upload_data_size > 0) {
                stream_body(r, upload_data, upload_data_size);
                return MHD_YES;
            }
            return stream_body_done(r);
        }
        if (*upload_data_size > 0) {
            on_body(r, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return MHD_YES;
        }
        if (r->has_body) conn_guard_headers_done(r->gw->guard, r->slot);
        if (r->fetch == NULL && r->wait == WAIT_NONE) return begin(r);
        return answer_error(r, 503, "out of memory", NULL);
    case PH_WAITING:
        if (r->wait == WAIT_FETCH) return r->pipe ? stream_answer(r) : answer_after_fetch(r);
        if (r->wait == WAIT_FLIGHT) return answer_after_flight(r);
        if (r->wait == WAIT_L2) return answer_after_l2(r);
        if (r->wait == WAIT_PING) return answer_status_page(r, false, r->ping_ms);
        if (r->wait == WAIT_POLICY) return answer_after_policy(r);
        return answer_error(r, 503, "out of memory", NULL);
    case PH_ANSWERED:
    default:
        return MHD_YES;
    }
}

/* libmicrohttpd 0.9.75 parses the query into its per-connection pool right after
 * this callback, and a query with thousands of parameters exhausts the pool: the
 * connection then hangs without an answer.  A request with more parameters than
 * MAX_QUERY_PARAMS is refused (414) from our own copy of the target anyway, so
 * its '&' separators are blanked in libmicrohttpd's buffer (the target's bytes
 * live in its writable read buffer) and it parses a single argument. */
static void neutralise_query(struct gateway *gw, const char *uri)
{
    char *q = uri ? strchr(uri, '?') : NULL;
    if (q == NULL) return;
    size_t params = 1;
    for (const char *p = q; *p; p++)
        if (*p == '&') params++;
    if (params <= (size_t)gw->cfg->max_query_params) return;
    for (char *p = q; *p; p++)
        if (*p == '&') *p = '_';
}

static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct gateway *gw = cls;
    struct request *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->gw = gw;
    r->uri = strdup(uri ? uri : "");
    r->start_ms = clock_mono_ms();
    r->start_us = metrics_now_us();
    r->phase = PH_HEADERS;
    if (r->uri == NULL) {
        free(r);
        return NULL;
    }
    r->uri_end = uri ? uri + strlen(uri) : NULL;
    neutralise_query(gw, uri);
    /* The guard holds the request until the completion callback takes it back:
     * libmicrohttpd may drop a connection (e.g. its pool ran out while parsing
     * the arguments) without ever calling that callback. */
    r->slot = conn_guard_mhd_slot(conn);
    conn_guard_request_line(gw->guard, r->slot);
    conn_guard_set_owner(gw->guard, r->slot, r);
    atomic_fetch_add(&gw->active_requests, 1);
    return r;
}

/* Counts a finished request in /metrics (metrics.h): its cache result, the tier a cached
 * answer came from, its route's pattern and its duration.  A request that got no answer
 * (its client left, or libmicrohttpd dropped it) counts as an error. */
static void record_metrics(const struct request *r)
{
    if (r->own_endpoint) {
        metrics_own_endpoint_end();
        return;
    }
    enum metrics_result result;
    enum metrics_tier tier = METRICS_TIER_NONE;
    if (r->gateway_error || r->status == 0 || r->x_cache == NULL) {
        result = METRICS_ERROR;
    } else if (r->served_stale) {
        result = METRICS_STALE;
        tier = r->stale_redis ? METRICS_TIER_REDIS : METRICS_TIER_MEMORY;
    } else if (strcmp(r->x_cache, "HIT") == 0) {
        result = METRICS_HIT;
        tier = r->hit_redis ? METRICS_TIER_REDIS : METRICS_TIER_MEMORY;
    } else {
        result = strcmp(r->x_cache, "MISS") == 0 ? METRICS_MISS : METRICS_BYPASS;
    }
    metrics_record_request(result, tier, r->has_dec ? r->dec.route : NULL,
                           (double)(metrics_now_us() - r->start_us) / 1e6);
}

/* One access-log line (access_log.h).  The tier is the one a cached answer came
 * from, as in record_metrics; a request refused before its headers were read has
 * no id yet and gets one here. */
static void write_access_log(struct request *r)
{
    const char *tier = "none";
    if (r->status != 0 && r->x_cache != NULL && strcmp(r->x_cache, "HIT") == 0)
        tier = (r->served_stale ? r->stale_redis : r->hit_redis) ? "redis" : "memory";
    if (r->request_id[0] == '\0') access_log_request_id_new(r->request_id);
    struct access_log_entry e = {
        .client = r->client_ip[0] ? r->client_ip : NULL,
        .method = r->method,
        .uri = r->uri,
        .protocol = r->version,
        .status = r->status,
        .bytes = r->bytes_known ? r->bytes : -1,
        .duration_s = (double)(metrics_now_us() - r->start_us) / 1e6,
        .cache = r->x_cache,
        .tier = tier,
        .route = r->has_dec ? r->dec.route : NULL,
        .upstream_s = r->upstream_us > 0 ? (double)r->upstream_us / 1e6 : -1.0,
        .request_id = r->request_id,
        .referer = r->referer,
        .user_agent = r->user_agent,
    };
    clock_gettime(CLOCK_REALTIME, &e.time);
    access_log_write(&e);
}

/* Frees a finished (or abandoned) request and writes its access-log line. */
static void request_release(struct request *r)
{
    struct gateway *gw = r->gw;
    record_metrics(r);
    if (r->flight) {
        /* The client left before the leader answered: still store and wake. */
        const char *why;
        if (r->fetch) cache_object_unref(leader_finish(r, &why));
        else coalesce_finish(gw->coalescer, r->flight, FLIGHT_RETRY, NULL, 0);
    }
    if (access_log_enabled()) write_access_log(r);
    free(r->referer);
    free(r->user_agent);
    if (r->fetch) upstream_request_free(r->fetch);
    if (r->has_dec) policy_decision_free(&r->dec);
    policy_read_free(r->policy_read);
    if (r->policy_wait) lua_host_wait_free(worker_policy_host(r->wp), r->policy_wait);
    if (r->wp) policy_engine_release(r->wp);
    free(r->key);
    free(r->path);
    cache_object_unref(r->woken_obj);
    cache_object_unref(r->l2_obj);
    cache_object_unref(r->stale_obj);
    header_list_free(&r->headers);
    buf_free(&r->body);
    body_pipe_unref(r->pipe);
    if (r->body_accounted) atomic_fetch_sub(&gw->buffered_body_bytes, r->body_accounted);
    free(r->uri);
    free(r);
    atomic_fetch_sub(&gw->active_requests, 1);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *r = *con_cls;
    if (r == NULL) return;
    *con_cls = NULL;
    conn_guard_request_done(r->gw->guard, r->slot);
    /* A client that leaves while its streamed body's fetch is still running: the
     * transfer is aborted and the loop frees the request when it reports. */
    if (r->pipe && r->fetch && !body_pipe_abandon(r->pipe)) return;
    request_release(r);
}

static void notify_connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                                 enum MHD_ConnectionNotificationCode code)
{
    struct gateway *gw = cls;
    struct request *orphan = conn_guard_mhd_notify(gw->guard, conn, socket_context, (int)code);
    if (orphan == NULL) return;
    /* libmicrohttpd dropped the connection between the request line and the
     * access handler, so no completion callback will come.  Nothing else can
     * hold the request then: it never got past its headers. */
    if (orphan->phase == PH_HEADERS) request_release(orphan);
    else LOG_W("connection closed without completing a request in phase %d", orphan->phase);
}

int http_server_start(struct gateway *gw, char *err, size_t err_len)
{
    const struct config *cfg = gw->cfg;
    static const char health[] = "{\"status\":\"ok\"}\n";
    gw->health_response = MHD_create_response_from_buffer(sizeof health - 1, (void *)health,
                                                          MHD_RESPMEM_PERSISTENT);
    if (gw->health_response == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    add_header(gw->health_response, "Content-Type", "application/json");
    add_header(gw->health_response, "Cache-Control", "no-store");

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, cfg->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)cfg->port);
    } else if (inet_pton(AF_INET6, cfg->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)cfg->port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, err_len, "invalid value for --host (HOST): '%s' (expected an IP address)",
                 cfg->host);
        return -1;
    }
    unsigned workers = cfg->workers > 0 ? (unsigned)cfg->workers
                                        : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
    if (workers == 0) workers = 1;
    char bad[64];
    if (ip_set_parse(cfg->trusted_proxies, &gw->trusted_proxies, bad, sizeof bad) != 0) {
        snprintf(err, err_len,
                 "invalid value for --trusted-proxies (TRUSTED_PROXIES): '%s' (expected IP "
                 "addresses or CIDR ranges, comma-separated)",
                 bad);
        return -1;
    }
    gw->guard = conn_guard_create("http", (size_t)cfg->max_connections,
                                  cfg->client_header_timeout_s * 1000,
                                  cfg->client_timeout_s * 1000);
    if (gw->guard == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    /* The per-connection pool holds the request line, the headers and the parsed
     * query arguments (about 64 bytes each; neutralise_query keeps their number at
     * MAX_QUERY_PARAMS).  libmicrohttpd zeroes the pool on every request, so it is
     * kept no larger than that needs. */
    size_t args = (size_t)cfg->max_query_params * 64;
    size_t pool = cfg->max_header_bytes + (args > 16 * 1024 ? args : 16 * 1024);
    /* libmicrohttpd refuses connections past its limit; the guard evicts slow
     * ones past max_connections, so the listener keeps some slack for new
     * clients (split between the worker threads). */
    unsigned limit = (unsigned)cfg->max_connections + 64u * workers;
    gw->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, on_request, gw, MHD_OPTION_SOCK_ADDR, &ss,
        MHD_OPTION_THREAD_POOL_SIZE, workers, MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, gw,
        MHD_OPTION_NOTIFY_COMPLETED, completed_cb, gw, MHD_OPTION_NOTIFY_CONNECTION,
        notify_connection_cb, gw, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->client_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (gw->daemon == NULL) {
        snprintf(err, err_len, "cannot listen on %s:%d (address in use or not permitted)",
                 cfg->host, cfg->port);
        return -1;
    }
    LOG_I("cachegw listening on http://%s:%d (%u workers), upstream %s", cfg->host, cfg->port,
          workers, cfg->upstream_url);
    return 0;
}

void http_server_quiesce(struct gateway *gw)
{
    if (gw->daemon == NULL) return;
    MHD_socket fd = MHD_quiesce_daemon(gw->daemon);
    if (fd != MHD_INVALID_SOCKET) close(fd);
}

int http_server_active(const struct gateway *gw)
{
    return atomic_load(&((struct gateway *)gw)->active_requests);
}

void http_server_stop(struct gateway *gw)
{
    if (gw->daemon) MHD_stop_daemon(gw->daemon);
    gw->daemon = NULL;
    conn_guard_destroy(gw->guard);
    gw->guard = NULL;
    ip_set_free(gw->trusted_proxies);
    gw->trusted_proxies = NULL;
    if (gw->health_response) MHD_destroy_response(gw->health_response);
    gw->health_response = NULL;
}
