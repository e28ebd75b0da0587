/* response_writer.c - see response_writer.h. */
#include "response_writer.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"
#include "endpoints.h"
#include "http_range.h"
#include "log.h"
#include "stats.h"

void writer_add_header(struct h1_response *resp, const char *name, const char *value)
{
    if (h1_response_add_header(resp, name, value) != 0)
        LOG_D("response field refused (framing field, or bytes that end a line): %s", name);
}

/* Cache-Status, with the cache key as key="..." (RFC 9211) for a request that asked
 * for it (Cachegw-Debug: <ADMIN_TOKEN>) or when DEBUG_HEADERS is on.  The key is an
 * sf-string: printable ASCII, '"' and '\\' escaped, other bytes as %XX. */
static void add_cache_status(struct request *r, struct h1_response *resp, const char *value)
{
    if (!r->debug || r->lk.key == NULL) {
        writer_add_header(resp, "Cache-Status", value);
        return;
    }
    char line[1024];
    size_t at = (size_t)snprintf(line, sizeof line, "%s; key=\"", value);
    for (const char *k = r->lk.key; *k && at + 8 < sizeof line; k++) {
        unsigned char c = (unsigned char)*k;
        if (c == '"' || c == '\\') at += (size_t)snprintf(line + at, sizeof line - at, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f) at += (size_t)snprintf(line + at, sizeof line - at, "%%%02X", c);
        else line[at++] = (char)c;
    }
    if (at + 2 > sizeof line) at = sizeof line - 2;
    line[at++] = '"';
    line[at] = '\0';
    writer_add_header(resp, "Cache-Status", line);
}

/* The access log's body size of an answer (a HEAD answer sends none). */
static void note_bytes(struct request *r, long long len)
{
    r->bytes_known = len >= 0;
    r->bytes = r->method != NULL && strcmp(r->method, "HEAD") == 0 ? 0 : len;
}

/* What the access log and the metrics read of an answered request. */
static void mark_answered(struct request *r, int status, const char *x_cache)
{
    r->status = status;
    r->x_cache = x_cache;
    r->phase = PH_ANSWERED;
}

static enum h1_result queue(struct request *r, int status, struct h1_response *resp,
                             const char *x_cache)
{
    mark_answered(r, status, x_cache);
    enum h1_result ret = h1_server_queue(r->conn, status, resp) == 0 ? H1_YES : H1_NO;
    h1_response_unref(resp);
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
enum h1_result answer_error(struct request *r, int status, const char *error, const char *detail)
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

    bool own_forward = r->forward_failed;
    bool collapsed = !own_forward && r->outcome == FLIGHT_FAILED && r->woken_status == status;
    const char *x_cache = r->cacheable ? "MISS" : "BYPASS";
    char cache_status[160];
    if ((status == 502 || status == 504) && (own_forward || collapsed)) {
        const char *fwd = r->cacheable ? (r->stale ? "stale" : "uri-miss")
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

    struct h1_response *resp =
        h1_response_from_buffer(strlen(body), body, H1_BODY_COPY);
    if (resp == NULL) return H1_NO;
    note_bytes(r, (long long)strlen(body));
    writer_add_header(resp, "Content-Type", "application/json");
    writer_add_header(resp, "Cache-Control", "no-store");
    writer_add_header(resp, "X-Cache", x_cache);
    add_cache_status(r, resp, cache_status);
    return queue(r, status, resp, x_cache);
}

static void unref_object_cb(void *cls) { cache_object_unref(cls); }

/* ---- issue 12: which bytes of a stored object answer the request ----
 * The representation (identity, gzip, br: compress.h) and a byte range of a
 * complete 200 (http_range.h), decided before the response is built. */
struct object_plan {
    int status;
    const char *body;
    size_t len;
    const char *coding;   /* Content-Encoding of the answer, NULL for identity */
    bool vary;            /* add Vary: Accept-Encoding */
    char content_range[96]; /* "" when none */
};

/* Returns 0, or -1 when the stored layout is invalid (the entry must not be served). */
static int plan_object(const struct request *r, const struct cache_object *obj,
                       bool not_modified, struct object_plan *p)
{
    char ae[1024], range[1024], if_range[256];
    int ae_lines = header_list_get_all(&r->headers, "accept-encoding", ae, sizeof ae);
    int range_lines = header_list_get_all(&r->headers, "range", range, sizeof range);
    int if_range_lines = header_list_get_all(&r->headers, "if-range", if_range, sizeof if_range);
    struct compress_choice c;
    /* Ranges are served from the identity body: ask for identity then. */
    bool ranged = range_lines > 0 && obj->status == 200 && !not_modified &&
                  strcmp(r->method, "GET") == 0 && if_range_lines >= 0 &&
                  http_range_if_range(if_range_lines > 0 ? if_range : NULL,
                                      cache_object_header(obj, "etag"),
                                      cache_object_header(obj, "last-modified"));
    /* A 304 names the representation the client would get (its coded ETag). */
    if (compress_select(obj, ae_lines > 0 && !ranged ? ae : NULL, &c) != 0) return -1;
    *p = (struct object_plan){.status = not_modified ? 304 : obj->status,
                              .body = c.body,
                              .len = not_modified ? 0 : c.len,
                              .coding = c.coding,
                              .vary = c.vary};
    if (!ranged) return 0;
    struct http_range rg;
    switch (http_range_parse(range, c.len, &rg)) {
    case HTTP_RANGE_SINGLE:
        p->status = 206;
        p->body = c.body + rg.first;
        p->len = (size_t)(rg.last - rg.first + 1);
        http_range_content_range(p->content_range, sizeof p->content_range, &rg, c.len);
        break;
    case HTTP_RANGE_UNSATISFIABLE:
        p->status = 416;
        p->len = 0;
        http_range_content_range(p->content_range, sizeof p->content_range, NULL, c.len);
        break;
    case HTTP_RANGE_FULL:
    default:
        break;
    }
    return 0;
}

/* Appends the decimal digits of v to out (at least 24 bytes free); returns the end. */
static char *put_int(char *out, long long v)
{
    char tmp[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) *out++ = '-';
    while (n > 0) *out++ = tmp[--n];
    *out = '\0';
    return out;
}

/* The response for a stored object: its fields (the internal and consumed ones stay
 * here), the representation's fields, Age, X-Cache and Cache-Status.  shared: the
 * body is referenced without an object reference (whoever queues it holds one until
 * the request is over, request.h "served"); else the response holds one. */
static struct h1_response *build_object_response(struct request *r, struct cache_object *obj,
                                                  const struct object_plan *plan, int64_t age_s,
                                                  const char *x_cache, const char *cache_status,
                                                  bool shared)
{
    struct h1_response *resp;
    if (shared) {
        resp = h1_response_from_buffer(plan->len, plan->body, H1_BODY_PERSISTENT);
    } else {
        struct cache_object *ref = cache_object_ref(obj);
        resp = h1_response_from_buffer_free(plan->len, plan->body, unref_object_cb, ref);
        if (resp == NULL) cache_object_unref(ref);
    }
    if (resp == NULL) return NULL;
    const char *targeted = r->gw->cfg->targeted_cache_control;
    bool vary_has_ae = false;
    for (size_t i = 0; i < obj->n_headers; i++) {
        const char *name = obj->headers[i].name, *value = obj->headers[i].value;
        /* Internal, consumed targeted and surrogate fields stay here (cache_rules.h). */
        if (cache_rules_header_consumed(name, targeted)) continue;
        if (strcmp(name, "vary") == 0 && headers_has_token(value, "accept-encoding"))
            vary_has_ae = true;
        char tag[512];
        if (plan->coding && strcmp(name, "etag") == 0 &&
            compress_etag(value, plan->coding, tag, sizeof tag) == 0)
            value = tag; /* the coded bytes are another representation */
        writer_add_header(resp, name, value);
    }
    if (plan->coding) writer_add_header(resp, "Content-Encoding", plan->coding);
    if (plan->vary && !vary_has_ae) writer_add_header(resp, "Vary", "Accept-Encoding");
    if (plan->content_range[0]) writer_add_header(resp, "Content-Range", plan->content_range);
    if (obj->status == 200) writer_add_header(resp, "Accept-Ranges", "bytes");
    char num[32];
    put_int(num, (long long)age_s);
    writer_add_header(resp, "Age", num);
    writer_add_header(resp, "X-Cache", x_cache);
    add_cache_status(r, resp, cache_status);
    return resp;
}

/* Answers from a stored object without copying its body. */
enum h1_result answer_object(struct request *r, struct cache_object *obj, const char *x_cache,
                             const char *cache_status)
{
    bool not_modified = cache_rules_not_modified(&r->headers, obj);
    struct object_plan plan;
    if (plan_object(r, obj, not_modified, &plan) != 0)
        return answer_error(r, 500, "unreadable stored entry", NULL);
    struct h1_response *resp = build_object_response(
        r, obj, &plan, cache_object_age_s(obj, clock_wall_ms()), x_cache, cache_status, false);
    if (resp == NULL) return H1_NO;
    note_bytes(r, (long long)plan.len);
    return queue(r, plan.status, resp, x_cache);
}

/* ---- hits: one built answer per hot object, reused ----
 * A hit's answer depends on the object, the representation chosen, the tier and two
 * numbers that change once a second (Age, Cache-Status ttl).  For an object hit at
 * least SHARE_AFTER_HITS times within one second, the answer built is kept with the
 * object (cache_object.h "attach") and queued again, as it is, for the next hits that
 * need the same answer: the answer counts the connections it is queued on (h1_response.h),
 * and copies nothing of it.  The body is the object's own bytes, so every request that
 * queued it holds the object until it is over (request.h "served").
 * Only hot objects: an answer kept and freed a second later costs more (its memory has
 * gone cold) than building and freeing one at once, so with keys hit a few times a
 * second each, keeping answers would be slower than not.  At most MAX_SHARED answers
 * are kept at a time (each about a kilobyte, outside the memory tier's byte bound). */
#define SHARE_AFTER_HITS 8
#define MAX_SHARED 4096
static atomic_int shared_live;
struct built_answer {
    struct h1_response *resp;
    int status;
    size_t len;
    int64_t age_s, ttl_s;
    const char *coding; /* compress.h's static names, NULL for identity */
    bool vary;
    const char *detail; /* the tier detail (a static string) or NULL */
};

/* A place among the MAX_SHARED kept answers: taken before one is built, given back when
 * it is freed (or was not built after all). */
static bool share_slot_take(void)
{
    if (atomic_fetch_add_explicit(&shared_live, 1, memory_order_relaxed) < MAX_SHARED)
        return true;
    atomic_fetch_sub_explicit(&shared_live, 1, memory_order_relaxed);
    return false;
}

static void share_slot_give(void) { atomic_fetch_sub_explicit(&shared_live, 1, memory_order_relaxed); }

static void built_answer_free(void *p)
{
    struct built_answer *b = p;
    h1_response_unref(b->resp);
    free(b);
    share_slot_give();
}

static bool same_answer(const struct built_answer *b, const struct object_plan *plan,
                        int64_t age_s, int64_t ttl_s, const char *detail)
{
    return b != NULL && b->status == plan->status && b->len == plan->len &&
           b->age_s == age_s && b->ttl_s == ttl_s && b->coding == plan->coding &&
           b->vary == plan->vary && b->detail == detail;
}

/* r queued an answer whose body is obj's own bytes: it holds obj until it is over. */
static enum h1_result queued_shared(struct request *r, struct cache_object *obj, int status,
                                    enum h1_result ret, size_t len)
{
    r->served = cache_object_ref(obj);
    mark_answered(r, status, "HIT");
    note_bytes(r, (long long)len);
    return ret;
}

/* The kept answer when it is the one this hit needs: queued (true, *ret set).  Otherwise
 * counts the hit in its second, drops a kept answer the object has cooled down from,
 * and sets *keep when this hit's answer is to be kept (a place among MAX_SHARED taken). */
static bool queue_kept_answer(struct request *r, struct cache_object *obj,
                              const struct object_plan *plan, int64_t age_s, int64_t ttl_s,
                              const char *detail, enum h1_result *ret, bool *keep)
{
    cache_object_attach_lock(obj);
    struct built_answer *b = obj->attach_free == built_answer_free ? obj->attach : NULL;
    if (same_answer(b, plan, age_s, ttl_s, detail)) {
        /* Queued under the lock: another hit may replace and free b once it is released
         * (the answer's own count keeps it alive from here on). */
        *ret = h1_server_queue(r->conn, plan->status, b->resp) == 0 ? H1_YES : H1_NO;
        cache_object_attach_unlock(obj);
        STATS_INC(hits_reused);
        *ret = queued_shared(r, obj, plan->status, *ret, plan->len);
        return true;
    }
    if (obj->attach_sec != age_s) {
        obj->attach_sec = age_s;
        obj->attach_hits = 0;
    }
    *keep = ++obj->attach_hits >= SHARE_AFTER_HITS;
    struct built_answer *cooled = NULL;
    if (!*keep && b != NULL && b->age_s < age_s - 1) {
        cooled = b;
        obj->attach = NULL;
        obj->attach_free = NULL;
    }
    cache_object_attach_unlock(obj);
    if (cooled != NULL) built_answer_free(cooled);
    if (*keep) *keep = share_slot_take();
    return false;
}

/* Keeps b with obj in place of the answer kept before (freed). */
static void keep_answer(struct cache_object *obj, struct built_answer *b)
{
    cache_object_attach_lock(obj);
    void *old = obj->attach;
    void (*old_free)(void *) = obj->attach_free;
    obj->attach = b;
    obj->attach_free = built_answer_free;
    cache_object_attach_unlock(obj);
    if (old != NULL && old_free != NULL) old_free(old);
}

/* Cache-Status of a fresh hit: "cachegw; hit; ttl=N[; detail=D]" (out: 96 bytes). */
static void hit_cache_status(char out[96], int64_t ttl_s, const char *detail)
{
    static const char head[] = "cachegw; hit; ttl=";
    memcpy(out, head, sizeof head - 1);
    char *p = put_int(out + sizeof head - 1, (long long)ttl_s);
    if (detail != NULL && strlen(detail) < 40) {
        memcpy(p, "; detail=", 9);
        memcpy(p + 9, detail, strlen(detail) + 1);
    }
}

static void free_buffer_cb(void *cls) { free(cls); }

/* A HEAD answered without a body still reports the upstream's length. */
static ssize_t no_body_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    return H1_READER_ERROR;
}

static void copy_forwardable_headers(struct h1_response *resp, const struct header_list *h,
                                     const char *targeted)
{
    const char *connection = header_list_get(h, "connection");
    for (size_t i = 0; i < h->n; i++) {
        const char *name = h->items[i].name;
        if (headers_is_hop_by_hop(name, connection)) continue;
        /* Consumed targeted fields, Surrogate-*, internal fields (issue 12). */
        if (cache_rules_header_consumed(name, targeted)) continue;
        if (strcmp(name, "content-length") == 0 || strcmp(name, "date") == 0) continue;
        writer_add_header(resp, name, h->items[i].value);
    }
}

/* Answers with a buffered upstream response, handing its body over. */
enum h1_result answer_fetched(struct request *r, struct upstream_fetch *f, const char *x_cache,
                              const char *cache_status)
{
    struct h1_response *resp;
    if (f->head_only && f->content_length > 0) {
        resp =
            h1_response_from_reader((uint64_t)f->content_length, 4096, no_body_reader, NULL, NULL);
    } else {
        char *data = f->body.data;
        size_t len = f->body.len;
        resp =
            h1_response_from_buffer_free(len, data ? data : "", data ? free_buffer_cb : NULL, data);
        if (resp != NULL) memset(&f->body, 0, sizeof f->body);
        note_bytes(r, (long long)len);
    }
    if (resp == NULL) return H1_NO;
    copy_forwardable_headers(resp, &f->resp_headers, r->gw->cfg->targeted_cache_control);
    writer_add_header(resp, "X-Cache", x_cache);
    add_cache_status(r, resp, cache_status);
    return queue(r, f->status, resp, x_cache);
}

/* ---- streaming ---- */

struct stream_ctx {
    struct upstream_stream *stream;
    struct h1_conn *conn;
};

static void stream_suspend(void *arg) { h1_conn_suspend(((struct stream_ctx *)arg)->conn); }
static void stream_resume(void *arg) { h1_conn_resume(((struct stream_ctx *)arg)->conn); }

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
        return H1_READER_END;
    case STREAM_FAILED:
    default:
        return H1_READER_ERROR;
    }
}

static void stream_free(void *cls)
{
    struct stream_ctx *c = cls;
    upstream_stream_release(c->stream);
    free(c);
}

enum h1_result answer_streamed(struct request *r, struct upstream_fetch *f, const char *x_cache,
                               const char *cache_status)
{
    struct stream_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) return H1_NO;
    c->stream = f->stream;
    c->conn = r->conn;
    uint64_t size = f->content_length >= 0 ? (uint64_t)f->content_length : H1_SIZE_UNKNOWN;
    struct h1_response *resp =
        h1_response_from_reader(size, 64 * 1024, stream_reader, c, stream_free);
    if (resp == NULL) {
        free(c);
        return H1_NO;
    }
    note_bytes(r, f->content_length); /* unknown (-1) when chunked */
    /* The stream owns the fetch from here on; it frees it via on_free. */
    upstream_request_set_owner(f, NULL);
    copy_forwardable_headers(resp, &f->resp_headers, r->gw->cfg->targeted_cache_control);
    writer_add_header(resp, "X-Cache", x_cache);
    add_cache_status(r, resp, cache_status);
    STATS_INC(streamed);
    return queue(r, f->status, resp, x_cache);
}

/* ---- cached answers ---- */

/* Answers a fresh hit; detail (may be NULL, else a static string) names the tier it
 * came from. */
enum h1_result answer_hit(struct request *r, struct cache_object *obj, int64_t now,
                          const char *detail)
{
    STATS_INC(hits);
    r->hit_redis = detail != NULL && strcmp(detail, "redis") == 0;
    bool not_modified = cache_rules_not_modified(&r->headers, obj);
    struct object_plan plan;
    if (plan_object(r, obj, not_modified, &plan) != 0)
        return answer_error(r, 500, "unreadable stored entry", NULL);
    int64_t age_s = cache_object_age_s(obj, now);
    int64_t ttl_s =
        (obj->meta.ttl_ms - (now - obj->meta.stored_at_ms)) / 1000 - obj->meta.initial_age_s;
    /* 304s, ranges and debug answers (the key in Cache-Status) are built each time. */
    bool keep = false;
    enum h1_result ret;
    if (!r->debug && !not_modified && plan.content_range[0] == '\0' &&
        queue_kept_answer(r, obj, &plan, age_s, ttl_s, detail, &ret, &keep))
        return ret;
    char cache_status[96];
    hit_cache_status(cache_status, ttl_s, detail);
    struct built_answer *b = keep ? malloc(sizeof *b) : NULL;
    if (keep && b == NULL) share_slot_give();
    struct h1_response *resp =
        build_object_response(r, obj, &plan, age_s, "HIT", cache_status, b != NULL);
    if (resp == NULL) {
        if (b != NULL) share_slot_give();
        free(b);
        return H1_NO;
    }
    if (b == NULL) {
        note_bytes(r, (long long)plan.len);
        return queue(r, plan.status, resp, "HIT");
    }
    *b = (struct built_answer){.resp = resp, .status = plan.status, .len = plan.len,
                               .age_s = age_s, .ttl_s = ttl_s, .coding = plan.coding,
                               .vary = plan.vary, .detail = detail};
    ret = h1_server_queue(r->conn, plan.status, resp) == 0 ? H1_YES : H1_NO;
    keep_answer(obj, b);
    return queued_shared(r, obj, plan.status, ret, plan.len);
}

/* Answers with the stale entry; detail says why (stale-if-error, ...). */
enum h1_result answer_stale(struct request *r, const char *detail)
{
    char cache_status[128];
    snprintf(cache_status, sizeof cache_status, "cachegw; hit; fwd=stale; detail=%s", detail);
    r->served_stale = true;
    STATS_INC(stale_served);
    STATS_INC(hits);
    return answer_object(r, r->stale, "HIT", cache_status);
}

/* ---- the gateway's status pages ---- */

enum h1_result answer_status_page(struct request *r, bool metrics, double latency_ms)
{
    struct gateway *gw = r->gw;
    struct health_redis_view redis = {.configured = gw->redis != NULL,
                                      .available = cache_tiers_l2_available(gw),
                                      .latency_ms = latency_ms};
    struct h1_response *resp;
    if (metrics) {
        /* Histograms and per-route series: no small fixed bound, so a malloc'd text. */
        size_t len;
        char *text = endpoints_metrics_text(gw, &redis, &len);
        if (text == NULL) return answer_error(r, 500, "internal error", NULL);
        resp = h1_response_from_buffer_free(len, text, free_buffer_cb, text);
        if (resp == NULL) free(text);
    } else {
        char body[8192];
        int n = endpoints_health_cache_json(gw, &redis, body, sizeof body);
        if (n < 0) return answer_error(r, 500, "internal error", NULL);
        resp = h1_response_from_buffer((size_t)n, body, H1_BODY_COPY);
    }
    if (resp == NULL) return H1_NO;
    writer_add_header(resp, "Content-Type", metrics ? "text/plain; version=0.0.4" : "application/json");
    writer_add_header(resp, "Cache-Control", "no-store");
    /* Degraded (Redis configured but unavailable): HEALTH_DEGRADED_STATUS, 200 by default,
     * since the gateway still serves every request from memory and the upstream. */
    int status = !metrics && redis.configured && !redis.available
                     ? gw->cfg->health_degraded_status
                     : 200;
    return queue(r, status, resp, NULL);
}
