/* http_server.c - see http_server.h: the libmicrohttpd adapter.
 *
 * Life of a request (struct request, request.h), on its worker thread unless
 * noted:
 *
 *   uri_log_cb       allocates the request with the raw URI (path and query as
 *                    the client sent them).
 *   on_request #1    validates the message and builds the forwarded field set
 *                    (on_headers); refusals are answered here.  Never queues
 *                    otherwise (a response queued in the first call loses
 *                    keep-alive in libmicrohttpd 0.9.75).
 *   on_request body  accumulates the body up to MAX_BODY_SIZE, or streams it
 *                    upstream through a body_pipe (planned at header time).
 *   on_request last  runs the request steps (request_steps.c) from STEP_PLAN.
 *   resumed          runs the steps again from the step the request waited in.
 *   completed_cb     releases everything (request_release), including a
 *                    fetch whose client left: it still stores and wakes its
 *                    waiters (cache_fetch.h).
 *
 * The answers themselves are written by response_writer.c. */
#include "http_server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <netinet/in.h>
#include <stdarg.h>
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

/* The client's fields as libmicrohttpd parsed them, names as received (the
 * validator needs them unchanged); the strings live as long as the request. */
struct raw_fields {
    struct http_header *items;
    size_t n, cap;
    bool oom;
};

/* libmicrohttpd 0.9.75 parses a field in place in its read buffer ("name" NUL, then
 * optional SP/HTAB, then "value"), but it joins an obs-fold continuation line onto
 * the field's *name*, in a new copy elsewhere in its pool: "X-A: 1" CRLF " b"
 * arrives as "X-Ab: 1", a name the client never sent.  True when name and value
 * lie as parsed in place, i.e. the field had no continuation line. */
static bool field_in_place(const char *key, size_t key_size, const char *value)
{
    const char *p = key + key_size;
    if (value == NULL) return true;
    if (value <= p || value - p > 4096) return false;
    for (p++; p < value; p++)
        if (*p != ' ' && *p != '\t' && *p != '\0') return false;
    return true;
}

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
    /* An obs-fold line (RFC 9112 §5.2) glued onto the name: refused as an invalid name. */
    else if (!field_in_place(key, key_size, value)) key = "<obs-fold>";
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
static enum MHD_Result stream_body_done(struct request *r)
{
    conn_guard_headers_done(r->gw->guard, r->slot);
    if (!r->body_too_big) body_pipe_finish(r->pipe);
    r->phase = PH_STEPS;
    if (body_pipe_await_answer(r->pipe, conn_suspend_cb, conn_resume_cb, r))
        return request_steps_answer_streamed(r);
    return MHD_YES;
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
 * forwarded field set every key is derived from.  Anything refused is answered
 * here, in the first call, so libmicrohttpd closes the connection after the
 * answer and sends no "100 Continue". */
static enum MHD_Result on_headers(struct request *r, const char *method, const char *version)
{
    struct gateway *gw = r->gw;
    const struct config *cfg = gw->cfg;
    r->method = copy_short(r->method_buf, sizeof r->method_buf, method);
    r->version = copy_short(r->version_buf, sizeof r->version_buf, version);
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
        assert(r->step == STEP_PLAN && r->fetch == NULL);
        return request_steps_run(r);
    case PH_STEPS:
        /* Resumed: the step the request waited in goes on. */
        if (r->pipe) return request_steps_answer_streamed(r);
        return request_steps_run(r);
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
    /* Counted before anything else, then the stop checked (http_server_drain): either the
     * drain sees this request and waits for it, or the request sees the stop and is turned
     * away before it can suspend (libmicrohttpd aborts when stopped with a suspended one). */
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
    r->uri = strdup(uri ? uri : "");
    r->start_us = metrics_now_us(); /* CLOCK_MONOTONIC, as clock_mono_ms */
    r->start_ms = r->start_us / 1000;
    r->phase = PH_HEADERS;
    r->step = STEP_PLAN;
    if (r->uri == NULL) {
        free(r);
        atomic_fetch_sub(&gw->active_requests, 1);
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

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *r = *con_cls;
    if (r == NULL) return;
    *con_cls = NULL;
    /* A request libmicrohttpd refused itself never reached on_headers: its access-log
     * line still names the client (log tools reject a line with "-" there). */
    if (r->client_ip[0] == '\0') conn_guard_mhd_client_ip(conn, r->client_ip, sizeof r->client_ip);
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

/* libmicrohttpd's own messages (MHD_USE_ERROR_LOG).  Most are requests it refuses
 * itself before the validator runs (a request or header line it cannot parse, a
 * bad chunk, headers past its pool): one "refused" line in the gateway's log
 * format (LOG_FORMAT=json too), not its raw text with the HTML answer on stderr. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    int code = 0;
    const char *title = strstr(msg, "<title>"), *end = title ? strstr(title, "</title>") : NULL;
    if (sscanf(msg, "Error processing request (HTTP response code is %d", &code) == 1 && end) {
        LOG_I("refused by libmicrohttpd: %d %.*s", code, (int)(end - title - 7), title + 7);
        return;
    }
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    LOG_W("http listener: %s", msg);
}

/* Draining (SIGTERM) without MHD_quiesce_daemon: libmicrohttpd 0.9.75 races its own worker
 * threads when it takes the listen socket out of their epoll sets (both sides delete it;
 * the loser's epoll_ctl fails and libmicrohttpd aborts the process: "Failed to remove listen
 * FD from epoll set", seen at SIGTERM in CI even with the socket kept open).  Instead the
 * accept policy turns every new connection away once the gateway drains: libmicrohttpd
 * closes it as soon as it is accepted, and the connections already open finish. */
static enum MHD_Result accept_cb(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    const struct gateway *gw = cls;
    return atomic_load(&gw->draining) ? MHD_NO : MHD_YES;
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
    writer_add_header(gw->health_response, "Content-Type", "application/json");
    writer_add_header(gw->health_response, "Cache-Control", "no-store");

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
        /* The logger first: libmicrohttpd prints what comes before it itself. */
        flags, (uint16_t)cfg->port, accept_cb, gw, on_request, gw, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, MHD_OPTION_SOCK_ADDR, &ss,
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
    if (gw->daemon) MHD_stop_daemon(gw->daemon);
    gw->daemon = NULL;
    conn_guard_destroy(gw->guard);
    gw->guard = NULL;
    ip_set_free(gw->trusted_proxies);
    gw->trusted_proxies = NULL;
    if (gw->health_response) MHD_destroy_response(gw->health_response);
    gw->health_response = NULL;
}
