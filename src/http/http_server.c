/* http_server.c - see http_server.h: the adapter between the HTTP/1.1 server
 * (h1_server.h) and the request steps.
 *
 * Life of a request (struct request, request.h), on its worker thread unless
 * noted:
 *
 *   on_request_begin  the head is in: allocates the request with the raw
 *                     target (path and query as the client sent them).
 *   on_request #1     validates the message and builds the forwarded field set
 *                     (on_headers); refusals, the parser's included, are
 *                     answered here, which closes the connection after them.
 *   on_request body   accumulates the body up to MAX_BODY_SIZE, or streams it
 *                     upstream through a body_pipe (planned at header time).
 *   on_request last   runs the request steps (request_steps.c) from STEP_PLAN.
 *   resumed           runs the steps again from the step the request waited in.
 *   on_completed      releases everything (request_release), including a
 *                     fetch whose client left: it still stores and wakes its
 *                     waiters (cache_fetch.h).
 *
 * The answers themselves are written by response_writer.c. */
#include "http_server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "access_log.h"
#include "body_pipe.h"
#include "conn_guard.h"
#include "forward_headers.h"
#include "headers.h"
#include "io_loop.h"
#include "ip_set.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "request_validator.h"
#include "response_writer.h"
#include "stats.h"

/* Most header fields in one request (RFC 9110 sets no number; 431 past it). */
#define HTTP_MAX_HEADER_FIELDS 128
/* Request bodies larger than this (or chunked) are streamed upstream through a
 * body_pipe of this capacity while they arrive, instead of being buffered. */
#define BODY_STREAM_THRESHOLD (64 * 1024)
#define BODY_PIPE_CAPACITY (64 * 1024)

/* ---- request bodies streamed upstream (body_pipe.h) ----
 *
 * A large or chunked body is not buffered: the request is planned as soon as its
 * headers are in (a request with a body is never answered from or stored into
 * the cache, so nothing waits for the body), the upstream fetch starts at once
 * reading from a bounded pipe, and the worker writes each chunk into the pipe,
 * suspending the connection while the pipe is full. */

static void conn_suspend_cb(void *arg) { h1_conn_suspend(((struct request *)arg)->conn); }
static void conn_resume_cb(void *arg) { h1_conn_resume(((struct request *)arg)->conn); }

/* Header time, for a request whose body will be streamed: plan it now. */
static enum h1_result stream_start(struct request *r, long long size)
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
    return request_steps_start_streamed(r);
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

/* The streamed body is complete: answer once the upstream has. */
static enum h1_result stream_body_done(struct request *r)
{
    conn_guard_headers_done(r->gw->guard, r->slot);
    if (!r->body_too_big) body_pipe_finish(r->pipe);
    r->phase = PH_STEPS;
    if (body_pipe_await_answer(r->pipe, conn_suspend_cb, conn_resume_cb, r))
        return request_steps_answer_streamed(r);
    return H1_YES;
}

/* s cut to fit buf (size > 0); NULL stays NULL.  Returns buf or NULL. */
static const char *copy_short(char *buf, size_t size, const char *s)
{
    if (s == NULL) return NULL;
    size_t n = strnlen(s, size - 1);
    memcpy(buf, s, n);
    buf[n] = '\0';
    return buf;
}

/* Headers are in: validate the message (request_validator.h), then build the
 * forwarded field set every key is derived from.  Anything refused, by the
 * parser (h1_parse.h) or the validator, is answered here, in the first call,
 * so the connection closes after the answer and no "100 Continue" is sent. */
static enum h1_result on_headers(struct request *r)
{
    struct gateway *gw = r->gw;
    const struct config *cfg = gw->cfg;
    const struct h1_head *head = h1_conn_head(r->conn);
    r->method = copy_short(r->method_buf, sizeof r->method_buf, head->method);
    r->version = copy_short(r->version_buf, sizeof r->version_buf, head->version);
    const struct http_header *fields = head->fields;
    size_t n_fields = head->n_fields;
    for (size_t i = 0; i < n_fields && access_log_enabled(); i++) {
        char **copy = headers_name_is(fields[i].name, "referer")      ? &r->referer
                      : headers_name_is(fields[i].name, "user-agent") ? &r->user_agent
                                                                          : NULL;
        if (copy != NULL && *copy == NULL) *copy = strdup(fields[i].value);
    }
    const struct request_limits limits = {.max_target_bytes = cfg->max_header_bytes,
                                          .max_query_params = (size_t)cfg->max_query_params,
                                          .max_header_bytes = cfg->max_header_bytes,
                                          .max_header_fields = HTTP_MAX_HEADER_FIELDS};
    struct request_verdict v;
    if (head->status != 0) {
        v.status = head->status;
        v.reason = head->reason;
    } else {
        request_validate(head->method, r->uri, head->version, fields, n_fields, &limits, &v);
    }
    if (v.status != 0) {
        STATS_INC(rejected);
        char safe[160];
        log_escape_uri(r->uri, safe, sizeof safe);
        LOG_I("refused %s from %s: %d %s (target %s)", r->version ? r->version : "-",
              r->client_ip, v.status, v.reason, safe);
        return answer_error(r, v.status,
                            v.status == 501   ? "not implemented"
                            : v.status == 505 ? "http version not supported"
                                              : "bad request",
                            v.reason);
    }
    r->debug = cfg->debug_headers;
    for (size_t i = 0; i < n_fields && !r->debug; i++)
        if (headers_name_is(fields[i].name, "cachegw-debug") && cfg->admin_token &&
            cfg->admin_token[0] && strlen(fields[i].value) == strlen(cfg->admin_token) &&
            CRYPTO_memcmp(fields[i].value, cfg->admin_token, strlen(cfg->admin_token)) == 0)
            r->debug = true;
    const struct forward_options fo = {.trusted = gw->trusted_proxies,
                                       .forwarded_host = cfg->forwarded_host};
    int rc = forward_headers_build(fields, n_fields, r->client_ip, &fo, &r->headers);
    /* The request id: the client's X-Request-Id when it is one sane token (one
     * field, <= 128 bytes), else a new one; either way the only one forwarded. */
    const char *rid = NULL;
    size_t n_rid = 0;
    for (size_t i = 0; i < n_fields; i++)
        if (headers_name_is(fields[i].name, "x-request-id") && n_rid++ == 0)
            rid = fields[i].value;
    if (n_rid == 1 && access_log_request_id_ok(rid))
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    else
        access_log_request_id_new(r->request_id);
    if (rc == 0) {
        header_list_remove(&r->headers, "x-request-id");
        rc = header_list_add(&r->headers, "x-request-id", r->request_id);
    }
    if (rc != 0) return answer_error(r, 503, "out of memory", NULL);
    /* The framing the validator accepted, as the HTTP server reads the body by it. */
    long long clen = h1_conn_body_length(r->conn);
    bool chunked = clen < 0;
    r->has_body = clen != 0;
    if (clen > 0 && (unsigned long long)clen > cfg->max_body_bytes) {
        STATS_INC(rejected);
        return answer_error(r, 413, "request body too large", NULL);
    }
    if (r->has_body) conn_guard_body_started(gw->guard, r->slot);
    else conn_guard_headers_done(gw->guard, r->slot);
    r->phase = PH_BODY;
    if (r->has_body && (chunked || clen > BODY_STREAM_THRESHOLD) && r->uri[0] == '/')
        return stream_start(r, clen);
    return H1_YES;
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

static enum h1_result on_request(void *cls, struct h1_conn *conn, void *req,
                                 const char *upload_data, size_t *upload_data_size)
{
    (void)cls;
    (void)conn;
    struct request *r = req;
    switch (r->phase) {
    case PH_HEADERS:
        return on_headers(r);
    case PH_BODY:
        if (r->pipe) {
            if (*upload_data_size > 0) {
                stream_body(r, upload_data, upload_data_size);
                return H1_YES;
            }
            return stream_body_done(r);
        }
        if (*upload_data_size > 0) {
            on_body(r, upload_data, *upload_data_size);
            *upload_data_size = 0;
            return H1_YES;
        }
        if (r->has_body) conn_guard_headers_done(r->gw->guard, r->slot);
        assert(r->step == STEP_PLAN && r->fetch == NULL);
        return request_steps_run(r);
    case PH_STEPS:
        /* Resumed: the step the request waited in goes on. */
        if (r->pipe) return request_steps_answer_streamed(r);
        return request_steps_run(r);
    case PH_ANSWERED:
    default:
        return H1_YES;
    }
}

static void *on_request_begin(void *cls, struct h1_conn *conn, const char *uri)
{
    struct gateway *gw = cls;
    /* Counted before anything else, then the stop checked (http_server_drain): either the
     * drain sees this request and waits for it, or the request sees the stop and is turned
     * away before it can suspend. */
    atomic_fetch_add(&gw->active_requests, 1);
    if (atomic_load(&gw->stopping)) {
        atomic_fetch_sub(&gw->active_requests, 1);
        return NULL;
    }
    struct request *r = calloc(1, sizeof *r);
    if (r == NULL) {
        atomic_fetch_sub(&gw->active_requests, 1);
        return NULL;
    }
    r->gw = gw;
    r->conn = conn;
    r->uri = strdup(uri);
    r->start_us = metrics_now_us(); /* CLOCK_MONOTONIC, as clock_mono_ms */
    r->start_ms = r->start_us / 1000;
    r->phase = PH_HEADERS;
    r->step = STEP_PLAN;
    if (r->uri == NULL) {
        free(r);
        atomic_fetch_sub(&gw->active_requests, 1);
        return NULL;
    }
    const char *ip = h1_conn_client_ip(conn);
    size_t ip_len = strnlen(ip, sizeof r->client_ip - 1);
    memcpy(r->client_ip, ip, ip_len); /* calloc'd: NUL-terminated */
    r->slot = h1_conn_context(conn);
    return r;
}

/* Counts a finished request in /metrics (metrics.h): its cache result, the tier a cached
 * answer came from, its route's pattern and its duration.  A request that got no answer
 * (its client left, or its connection failed) counts as an error. */
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

void request_release(struct request *r)
{
    struct gateway *gw = r->gw;
    record_metrics(r);
    request_steps_release(r); /* a leader whose client left still stores and wakes */
    if (access_log_enabled()) write_access_log(r);
    free(r->referer);
    free(r->user_agent);
    if (r->has_dec) policy_decision_free(&r->dec);
    if (r->wp) policy_engine_release(r->wp);
    cache_tiers_lookup_release(&r->lk);
    free(r->path);
    cache_object_unref(r->woken_obj);
    cache_object_unref(r->served);
    cache_object_unref(r->stale);
    header_list_free(&r->headers);
    buf_free(&r->body);
    body_pipe_unref(r->pipe);
    if (r->body_accounted) atomic_fetch_sub(&gw->buffered_body_bytes, r->body_accounted);
    free(r->uri);
    free(r);
    atomic_fetch_sub(&gw->active_requests, 1);
}

static void on_completed(void *cls, struct h1_conn *conn, void *req, bool ok)
{
    (void)cls;
    (void)conn;
    (void)ok;
    struct request *r = req;
    conn_guard_request_done(r->gw->guard, r->slot);
    /* A client that leaves while its streamed body's fetch is still running: the
     * transfer is aborted and the loop frees the request when it reports. */
    if (r->pipe && r->fetch && !body_pipe_abandon(r->pipe)) return;
    request_release(r);
}

/* The body turned out malformed (a bad chunk) after the head was accepted: 400, and the
 * connection closes.  A streamed body's upstream sees it end early. */
static void on_body_error(void *cls, struct h1_conn *conn, void *req, const char *reason)
{
    (void)cls;
    (void)conn;
    struct request *r = req;
    if (r->phase == PH_ANSWERED) return;
    if (r->pipe) body_pipe_cancel(r->pipe);
    STATS_INC(rejected);
    char safe[160];
    log_escape_uri(r->uri, safe, sizeof safe);
    LOG_I("refused %s from %s: 400 %s (target %s)", r->version ? r->version : "-",
          r->client_ip, reason, safe);
    answer_error(r, 400, "bad request", reason);
}

/* Every connection is in the guard from accept to close (conn_guard.h); the slot is the
 * connection's context. */
static void on_conn_open(void *cls, struct h1_conn *conn)
{
    struct gateway *gw = cls;
    h1_conn_set_context(conn, conn_guard_open(gw->guard, h1_conn_fd(conn)));
}

static void on_conn_close(void *cls, struct h1_conn *conn)
{
    struct gateway *gw = cls;
    conn_guard_close(gw->guard, h1_conn_context(conn));
    h1_conn_set_context(conn, NULL);
}

/* The first bytes of a request are in: its header deadline starts. */
static void on_request_line(void *cls, struct h1_conn *conn)
{
    struct gateway *gw = cls;
    conn_guard_request_line(gw->guard, h1_conn_context(conn));
}

/* Draining (SIGTERM): every new connection is closed as soon as it is accepted, and the
 * connections already open finish. */
static bool on_accept(void *cls)
{
    const struct gateway *gw = cls;
    return !atomic_load(&gw->draining);
}

int http_server_start(struct gateway *gw, char *err, size_t err_len)
{
    const struct config *cfg = gw->cfg;
    static const char health[] = "{\"status\":\"ok\"}\n";
    gw->health_response = h1_response_from_buffer(sizeof health - 1, health, H1_BODY_PERSISTENT);
    if (gw->health_response == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    writer_add_header(gw->health_response, "Content-Type", "application/json");
    writer_add_header(gw->health_response, "Cache-Control", "no-store");

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    socklen_t ss_len;
    if (inet_pton(AF_INET, cfg->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)cfg->port);
        ss_len = sizeof *sin;
    } else if (inet_pton(AF_INET6, cfg->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)cfg->port);
        ss_len = sizeof *sin6;
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
    /* The guard evicts slow connections past max_connections, so the listener keeps some
     * slack for new clients.  A head may hold a target and a header block of
     * MAX_HEADER_SIZE each (the validator bounds both): room for both, then 414/431. */
    const struct h1_server_config hc = {
        .addr = (const struct sockaddr *)&ss,
        .addr_len = ss_len,
        .workers = workers,
        .max_conns = (unsigned)cfg->max_connections + 64u * workers,
        .idle_timeout_ms = cfg->client_timeout_s * 1000,
        .max_head = 2 * cfg->max_header_bytes + 1024,
        .backlog = 1024,
    };
    const struct h1_handlers handlers = {
        .cls = gw,
        .accept = on_accept,
        .conn_open = on_conn_open,
        .conn_close = on_conn_close,
        .request_line = on_request_line,
        .request_begin = on_request_begin,
        .handle = on_request,
        .body_error = on_body_error,
        .completed = on_completed,
    };
    char why[128];
    gw->server = h1_server_start(&hc, &handlers, why, sizeof why);
    if (gw->server == NULL) {
        snprintf(err, err_len, "cannot listen on %s:%d: %s", cfg->host, cfg->port, why);
        return -1;
    }
    LOG_I("cachegw listening on http://%s:%d (%u workers), upstream %s", cfg->host, cfg->port,
          workers, cfg->upstream_url);
    return 0;
}

int http_server_drain(struct gateway *gw, int64_t deadline_ms)
{
    /* New connections are turned away (accept_cb); requests on the open ones are still
     * served while any is in flight, so a keep-alive client racing the signal is answered. */
    atomic_store(&gw->draining, true);
    while (http_server_active(gw) > 0 && clock_mono_ms() < deadline_ms) usleep(10 * 1000);
    /* Idle now: from here a request not begun yet is turned away (uri_log_cb), and the ones
     * that began before it saw the stop are waited for. */
    atomic_store(&gw->stopping, true);
    while (http_server_active(gw) > 0 && clock_mono_ms() < deadline_ms) usleep(10 * 1000);
    return http_server_active(gw);
}

int http_server_active(const struct gateway *gw)
{
    return atomic_load(&((struct gateway *)gw)->active_requests);
}

void http_server_stop(struct gateway *gw)
{
    h1_server_stop(gw->server);
    gw->server = NULL;
    conn_guard_destroy(gw->guard);
    gw->guard = NULL;
    ip_set_free(gw->trusted_proxies);
    gw->trusted_proxies = NULL;
    h1_response_unref(gw->health_response);
    gw->health_response = NULL;
}
