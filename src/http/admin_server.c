/* admin_server.c - see admin_server.h.
 *
 * Life of an admin request, all on the admin daemon's single thread:
 *
 *   on_request #1    allocates the request state; never queues (a response
 *                    queued in the first call loses keep-alive in
 *                    libmicrohttpd 0.9.75), except to refuse a Content-Length
 *                    over ADMIN_MAX_BODY, whose connection should close anyway.
 *   on_request body  buffers up to ADMIN_MAX_BODY bytes; a chunked body past
 *                    that is discarded (413 at the end), and dropped with the
 *                    connection past ADMIN_MAX_DISCARD.
 *   on_request last  authenticates, routes, extracts and validates the value,
 *                    purges, logs one INFO line and answers.
 *   completed_cb     frees the request state.
 *
 * The server object's mutable fields (the auth-failure log limiter) are only
 * touched on that thread, so they need no lock. */
#include "admin_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "admin_json.h"
#include "cache_key.h"
#include "cache_tiers.h"
#include "conn_guard.h"
#include "inval_index.h"
#include "io_loop.h"
#include "log.h"
#include "policy_engine.h"
#include "stats.h"
#include "store_l1.h"

#define ADMIN_LOG_VALUE_MAX 1024 /* a log line holds 2 KiB: longer values are cut */
#define ADMIN_MAX_CONNECTIONS 64 /* past it, the slowest connections without a request go */
#define ADMIN_IDLE_TIMEOUT_S 10
#define ADMIN_MAX_DISCARD ((size_t)1 << 20) /* chunked body bytes read past the bound */

struct admin_server {
    struct gateway *gw;
    struct MHD_Daemon *daemon;
    struct conn_guard *guard; /* header deadline and eviction of slow connections */
    /* Auth failures are logged at most once a second (admin thread only). */
    int64_t auth_log_ms;
    uint64_t auth_unlogged;
};

struct admin_request {
    bool answered;
    bool too_big;
    size_t discarded; /* body bytes past ADMIN_MAX_BODY, read and dropped */
    size_t len;
    char body[ADMIN_MAX_BODY + 1];
};

enum purge_kind { PURGE_KEY, PURGE_PREFIX, PURGE_TAG, PURGE_URL, PURGE_ALL, PURGE_KINDS };
static const char *const KIND_NAMES[PURGE_KINDS] = {"key", "prefix", "tag", "url", "all"};

enum auth_result { AUTH_OK, AUTH_MISSING, AUTH_WRONG };

/* ---- responses (JSON written by admin_json) ---- */

/* Queues one JSON answer; extra_name/extra_value is an optional header. */
static enum MHD_Result reply(struct admin_request *rq, struct MHD_Connection *conn,
                             unsigned status, const char *body, size_t len,
                             const char *extra_name, const char *extra_value)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (extra_name) MHD_add_response_header(resp, extra_name, extra_value);
    rq->answered = true;
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_error(struct admin_request *rq, struct MHD_Connection *conn,
                                   unsigned status, const char *msg, const char *extra_name,
                                   const char *extra_value)
{
    size_t len;
    char *body = admin_json_error(msg, status, &len);
    if (body == NULL) return MHD_NO;
    enum MHD_Result ret = reply(rq, conn, status, body, len, extra_name, extra_value);
    free(body);
    return ret;
}

/* ---- authentication ---- */

/* Compares in time that depends only on the length the client sent, never on
 * the token's bytes or length.  want_len > 0. */
static bool token_equal(const char *given, size_t given_len, const char *want, size_t want_len)
{
    volatile size_t diff = given_len ^ want_len;
    for (size_t i = 0; i < given_len; i++)
        diff |= (size_t)((unsigned char)given[i] ^ (unsigned char)want[i % want_len]);
    return diff == 0;
}

static enum auth_result check_auth(const struct admin_server *a, struct MHD_Connection *conn)
{
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (h == NULL) return AUTH_MISSING;
    while (*h == ' ' || *h == '\t') h++;
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return AUTH_MISSING;
    h += 6;
    while (*h == ' ' || *h == '\t') h++;
    size_t n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    if (n == 0) return AUTH_MISSING;
    const char *token = a->gw->cfg->admin_token;
    return token_equal(h, n, token, strlen(token)) ? AUTH_OK : AUTH_WRONG;
}

static void client_ip_of(struct MHD_Connection *conn, char *out, size_t len)
{
    if (!conn_guard_mhd_client_ip(conn, out, len)) snprintf(out, len, "-");
}

/* Answers a failed authentication.  The log line never carries the header. */
static enum MHD_Result reply_auth(struct admin_server *a, struct admin_request *rq,
                                  struct MHD_Connection *conn, enum auth_result auth)
{
    int64_t now = clock_mono_ms();
    if (now - a->auth_log_ms >= 1000) {
        char ip[64];
        client_ip_of(conn, ip, sizeof ip);
        LOG_W("admin: rejected a request from %s: %s (%llu more rejections not logged)", ip,
              auth == AUTH_MISSING ? "no bearer token" : "wrong token",
              (unsigned long long)a->auth_unlogged);
        a->auth_log_ms = now;
        a->auth_unlogged = 0;
    } else {
        a->auth_unlogged++;
    }
    if (auth == AUTH_MISSING)
        return reply_error(rq, conn, 401, "missing bearer token (Authorization: Bearer <token>)",
                           "WWW-Authenticate", "Bearer realm=\"cachegw-admin\"");
    return reply_error(rq, conn, 403, "invalid token", NULL, NULL);
}

/* ---- the value of a purge: query parameter or JSON body ---- */

struct arg_scan {
    const char *name;
    const char *value;
    size_t value_len;
    int count;
};

static enum MHD_Result scan_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                size_t key_size, const char *value, size_t value_size)
{
    struct arg_scan *as = cls;
    if (key && strcmp(key, as->name) == 0 && as->count++ == 0) {
        as->value = value;
        as->value_len = value ? value_size : 0;
    }
    return MHD_YES;
}

static bool body_is_blank(const struct admin_request *rq)
{
    for (size_t i = 0; i < rq->len; i++) {
        char c = rq->body[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
    }
    return true;
}

/* Fills out (cap ADMIN_MAX_VALUE + 1) with the value of `field` and returns 0,
 * or returns -1 with msg holding the client's 400 message. */
static int get_value(struct MHD_Connection *conn, const struct admin_request *rq,
                     const char *field, char *out, size_t *out_len, char *msg, size_t msg_len)
{
    struct arg_scan as = {.name = field};
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, scan_arg, &as);
    size_t len = 0;
    if (!body_is_blank(rq)) {
        if (as.count > 0) {
            snprintf(msg, msg_len,
                     "give '%s' either as a query parameter or in the JSON body, not both",
                     field);
            return -1;
        }
        struct admin_json_error jerr;
        switch (admin_json_get_string(rq->body, rq->len, field, out, ADMIN_MAX_VALUE + 1, &len,
                                      &jerr)) {
        case ADMIN_JSON_OK:
            break;
        case ADMIN_JSON_MISSING:
            snprintf(msg, msg_len, "missing field '%s' (expected {\"%s\": \"...\"})", field,
                     field);
            return -1;
        case ADMIN_JSON_NOT_STRING:
            snprintf(msg, msg_len, "field '%s' must be a string", field);
            return -1;
        case ADMIN_JSON_DUPLICATE:
            /* JSON_REJECT_DUPLICATES refuses a repeated name in any object,
             * not only ours: a body two parsers read differently is refused. */
            snprintf(msg, msg_len,
                     "invalid JSON body: a member name is given more than once (at byte %zu)",
                     jerr.position);
            return -1;
        case ADMIN_JSON_INVALID:
        default:
            snprintf(msg, msg_len,
                     "invalid JSON body: %s at byte %zu (expected {\"%s\": \"...\"})", jerr.text,
                     jerr.position, field);
            return -1;
        }
    } else {
        if (as.count == 0 || as.value == NULL) {
            snprintf(msg, msg_len,
                     "missing '%s': send {\"%s\": \"...\"} or the query parameter ?%s=...",
                     field, field, field);
            return -1;
        }
        if (as.count > 1) {
            snprintf(msg, msg_len, "query parameter '%s' given more than once", field);
            return -1;
        }
        len = as.value_len;
        memcpy(out, as.value, len < ADMIN_MAX_VALUE ? len : ADMIN_MAX_VALUE);
        out[len < ADMIN_MAX_VALUE ? len : ADMIN_MAX_VALUE] = '\0';
        /* A JSON body can only carry UTF-8 text (jansson checks it); the same
         * rule here keeps the two forms equivalent and the answer, which
         * echoes the value, valid JSON. */
        if (len <= ADMIN_MAX_VALUE && !admin_json_is_utf8(out, len)) {
            snprintf(msg, msg_len, "'%s' must be UTF-8 text", field);
            return -1;
        }
    }
    if (len == 0) {
        snprintf(msg, msg_len, "'%s' must not be empty", field);
        return -1;
    }
    if (len > ADMIN_MAX_VALUE) {
        snprintf(msg, msg_len, "'%s' is too long (%zu bytes, at most %zu)", field, len,
                 ADMIN_MAX_VALUE);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)out[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(msg, msg_len, "'%s' contains a control character (byte %zu)", field, i);
            return -1;
        }
    }
    *out_len = len;
    return 0;
}

/* ---- purges ---- */

/* The cache key of a GET of url (path-absolute, validated), as the request path
 * would compute it: the active policy's key, or "GET:" + url without policies.
 * Returns 0 with *key malloc'd; -ENOENT with *why (static) when the policy does
 * not cache a header-less GET of url under one shared key; -ENOMEM. */
static int url_cache_key(struct gateway *gw, const char *url, char **key, const char **why)
{
    *key = NULL;
    struct worker_policy *wp = gw->policies ? policy_engine_acquire(gw->policies) : NULL;
    if (wp == NULL) {
        /* Same fallback as the request path when no Lua host can be built. */
        *key = cache_key_default(url);
        return *key ? 0 : -ENOMEM;
    }
    int rc = 0;
    char *path = strndup(url, strcspn(url, "?"));
    if (path == NULL) {
        rc = -ENOMEM;
        goto done;
    }
    const char *q = strchr(url, '?');
    struct policy_request req = {.method = "GET", .path = path, .query = q ? q + 1 : NULL};
    struct policy_decision dec;
    lua_host_decide(worker_policy_host(wp), &req, &dec);
    if (dec.action == POLICY_CACHE && dec.per_user) {
        /* The key derives from the caller's credentials: a header-less GET
         * names only the anonymous entry, never the users' ones. */
        *why = "per-user route, its keys depend on the credentials";
        rc = -ENOENT;
    } else if ((dec.action == POLICY_CACHE || dec.action == POLICY_DEFAULT) && dec.key != NULL) {
        *key = strdup(dec.key);
        if (*key == NULL) rc = -ENOMEM;
    } else {
        *why = dec.reason ? dec.reason : "policy";
        rc = -ENOENT;
    }
    policy_decision_free(&dec);
done:
    free(path);
    policy_engine_release(wp);
    return rc;
}

/* ---- waiting for the I/O loop ----
 *
 * The Redis tier is confined to the I/O loop, so a look at it (GET /entries)
 * or a counted purge is posted there and the admin thread waits for the
 * answer.  Redis commands time out on their own (REDIS_TIMEOUT_MS, retried
 * REDIS_RETRIES times), so the wait is bounded; the admin thread stops at
 * admin_wait_ms anyway and answers with what it has.  The wait state is
 * shared by the two threads and freed by whichever lets go last, so a
 * callback that comes after the admin thread gave up is harmless. */

struct admin_wait {
    atomic_int refs; /* the admin thread and the pending callback */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int err;
    long long count;
    struct cache_object *obj;
    char next[32];
    char **keys; /* copies of a scan page's keys */
    size_t *lens;
    size_t n;
};

static struct admin_wait *admin_wait_new(void)
{
    struct admin_wait *w = calloc(1, sizeof *w);
    if (w == NULL) return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->refs, 2);
    return w;
}

static void admin_wait_unref(struct admin_wait *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1) return;
    if (w->obj) cache_object_unref(w->obj);
    for (size_t i = 0; i < w->n; i++) free(w->keys[i]);
    free(w->keys);
    free(w->lens);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

/* The callback side: results are in, wake the admin thread. */
static void admin_wait_finish(struct admin_wait *w)
{
    pthread_mutex_lock(&w->mu);
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    admin_wait_unref(w);
}

/* Waits up to ms; true when the results are in (then they stay valid until
 * admin_wait_unref, which the caller still owes either way). */
static bool admin_wait_for(struct admin_wait *w, int64_t ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += (time_t)(ms / 1000);
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) != 0) break;
    bool done = w->done;
    pthread_mutex_unlock(&w->mu);
    return done;
}

static void wait_obj_cb(void *arg, struct cache_object *obj, int err)
{
    struct admin_wait *w = arg;
    w->obj = obj;
    w->err = err;
    admin_wait_finish(w);
}

static void wait_count_cb(void *arg, long long removed, int err)
{
    struct admin_wait *w = arg;
    w->count = removed;
    w->err = err;
    admin_wait_finish(w);
}

static void wait_scan_cb(void *arg, const char *next, const char *const *keys, const size_t *lens,
                         size_t n, int err)
{
    struct admin_wait *w = arg;
    w->err = err;
    snprintf(w->next, sizeof w->next, "%s", next);
    w->keys = n ? calloc(n, sizeof *w->keys) : NULL;
    w->lens = n ? calloc(n, sizeof *w->lens) : NULL;
    if (n > 0 && (w->keys == NULL || w->lens == NULL)) {
        w->err = -ENOMEM;
        n = 0;
    }
    for (size_t i = 0; i < n; i++) {
        w->keys[i] = malloc(lens[i] + 1);
        if (w->keys[i] == NULL) {
            w->err = -ENOMEM;
            break;
        }
        memcpy(w->keys[i], keys[i], lens[i]);
        w->keys[i][lens[i]] = '\0';
        w->lens[i] = lens[i];
        w->n = i + 1;
    }
    admin_wait_finish(w);
}

/* How long the admin thread waits for one Redis round trip: the command's own
 * timeout and retries, plus a second. */
static int64_t admin_wait_ms(const struct gateway *gw)
{
    const struct config *c = gw->cfg;
    return (int64_t)c->redis_timeout_ms * (c->redis_retries + 1) + 1000;
}

/* Purge-all walks the whole keyspace: it is given longer, then goes on in the
 * background (the answer says so). */
#define ADMIN_PURGE_ALL_WAIT_MS 10000

/* ---- GET /entries ---- */

#define ENTRIES_LIMIT_DEFAULT 100
#define ENTRIES_LIMIT_MAX 1000
#define ENTRIES_MAX_VARIANTS 100     /* variants listed for one key */
#define ENTRIES_VARIANT_SCAN_PAGES 64 /* Redis SCAN pages (COUNT 1000) looked at for them */

static double ms_to_s(int64_t ms) { return (double)ms / 1000.0; }

/* The metadata of one stored object, as of now_ms. */
static json_t *entry_meta(const struct gateway *gw, const struct cache_object *o, int64_t now_ms)
{
    json_t *m = json_object();
    if (m == NULL) return NULL;
    const struct cache_meta *t = &o->meta;
    int64_t age_ms = now_ms - t->stored_at_ms + t->initial_age_s * 1000;
    int64_t ttl_left = t->ttl_ms - age_ms;
    json_object_set_new(m, "status", json_integer(o->status));
    json_object_set_new(m, "size", json_integer((json_int_t)o->body_len));
    json_object_set_new(m, "stored_at", json_real(ms_to_s(t->stored_at_ms)));
    json_object_set_new(m, "age_s", json_integer(cache_object_age_s(o, now_ms)));
    json_object_set_new(m, "ttl_s", json_real(ms_to_s(t->ttl_ms)));
    json_object_set_new(m, "ttl_left_s", json_real(ms_to_s(ttl_left > 0 ? ttl_left : 0)));
    json_object_set_new(m, "stale_while_revalidate_s", json_real(ms_to_s(t->swr_ms)));
    json_object_set_new(m, "stale_if_error_s", json_real(ms_to_s(t->sie_ms)));
    json_object_set_new(m, "expires_in_s",
                        json_real(ms_to_s(cache_object_expires_at_ms(o) - now_ms)));
    json_object_set_new(m, "fresh", json_boolean(cache_object_is_fresh(o, now_ms)));
    /* Held but unreachable: a prefix or tag invalidation recorded after it
     * was filled (inval_index.h); reclaimed later. */
    json_object_set_new(m, "invalidated",
                        json_boolean(gw->inval != NULL && !inval_index_valid(gw->inval, o)));
    json_t *tags = json_array();
    const char *tv = cache_object_field(o, CACHE_FIELD_TAGS);
    while (tags != NULL && tv != NULL && *tv != '\0') {
        size_t n = strcspn(tv, " ");
        if (n > 0) json_array_append_new(tags, json_stringn(tv, n));
        tv += n;
        tv += strspn(tv, " ");
    }
    json_object_set_new(m, "tags", tags ? tags : json_null());
    const char *vary = cache_object_header(o, "vary");
    if (vary != NULL) json_object_set_new(m, "vary", json_string(vary));
    return m;
}

/* Adds {"key": ..., "tiers": [...]} for a variant key to arr (deduplicated
 * by key: a variant in both tiers is listed once with both). */
static void variant_add(json_t *arr, const char *key, size_t len, const char *tier)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        json_t *k = json_object_get(v, "key");
        if (k && json_string_length(k) == len && memcmp(json_string_value(k), key, len) == 0) {
            json_array_append_new(json_object_get(v, "tiers"), json_string(tier));
            return;
        }
    }
    v = json_object();
    if (v == NULL) return;
    admin_json_set_bytes(v, "key", key, len);
    json_t *tiers = json_array();
    json_array_append_new(tiers, json_string(tier));
    json_object_set_new(v, "tiers", tiers);
    json_array_append_new(arr, v);
}

/* The variants of base (cache_key.h's variant prefix) in both tiers, at most
 * ENTRIES_MAX_VARIANTS; *truncated when there may be more. */
static json_t *entry_variants(struct gateway *gw, const char *base, int64_t now_ms,
                              bool *truncated, bool *redis_failed)
{
    json_t *arr = json_array();
    char vp[CACHE_KEY_VARIANT_MAX];
    if (arr == NULL || cache_key_variant_prefix(base, vp, sizeof vp) < 0) return arr;
    uint64_t cur = STORE_L1_LIST_START;
    while (cur != STORE_L1_LIST_END && json_array_size(arr) < ENTRIES_MAX_VARIANTS) {
        struct cache_object **objs;
        size_t n;
        if (store_l1_list(gw->l1, &cur, vp, strlen(vp), ENTRIES_MAX_VARIANTS, now_ms, &objs, &n))
            break;
        for (size_t i = 0; i < n; i++) {
            if (json_array_size(arr) < ENTRIES_MAX_VARIANTS)
                variant_add(arr, objs[i]->key, objs[i]->key_len, "memory");
            else
                *truncated = true;
            cache_object_unref(objs[i]);
        }
        free(objs);
    }
    if (gw->l2 == NULL) return arr;
    char cursor[32] = "0";
    for (int page = 0; page < ENTRIES_VARIANT_SCAN_PAGES; page++) {
        struct admin_wait *w = admin_wait_new();
        if (w == NULL) break;
        if (cache_tiers_l2_scan(gw, cursor, vp, 1000, wait_scan_cb, w) != 0) {
            admin_wait_unref(w);
            admin_wait_unref(w);
            *redis_failed = true;
            break;
        }
        bool ok = admin_wait_for(w, admin_wait_ms(gw)) && w->err == 0;
        if (ok) {
            for (size_t i = 0; i < w->n; i++) {
                if (json_array_size(arr) < ENTRIES_MAX_VARIANTS)
                    variant_add(arr, w->keys[i], w->lens[i], "redis");
                else
                    *truncated = true;
            }
            snprintf(cursor, sizeof cursor, "%s", w->next);
        }
        admin_wait_unref(w);
        if (!ok) {
            *redis_failed = true;
            break;
        }
        if (strcmp(cursor, "0") == 0) break;
        if (page + 1 == ENTRIES_VARIANT_SCAN_PAGES) *truncated = true;
    }
    return arr;
}

/* The query parameter name of this request, or NULL when absent; 400 text in
 * msg when it is given twice or is not clean text. */
static const char *query_arg(struct MHD_Connection *conn, const char *name, char *msg,
                             size_t msg_len, bool *bad)
{
    struct arg_scan as = {.name = name};
    MHD_get_connection_values_n(conn, MHD_GET_ARGUMENT_KIND, scan_arg, &as);
    if (as.count == 0) return NULL;
    if (as.count > 1) {
        snprintf(msg, msg_len, "query parameter '%s' given more than once", name);
        *bad = true;
        return NULL;
    }
    const char *v = as.value ? as.value : "";
    if (as.value_len > ADMIN_MAX_VALUE) {
        snprintf(msg, msg_len, "'%s' is too long (%zu bytes, at most %zu)", name, as.value_len,
                 ADMIN_MAX_VALUE);
        *bad = true;
        return NULL;
    }
    for (size_t i = 0; i < as.value_len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(msg, msg_len, "'%s' contains a control character (byte %zu)", name, i);
            *bad = true;
            return NULL;
        }
    }
    if (strlen(v) != as.value_len || !admin_json_is_utf8(v, as.value_len)) {
        snprintf(msg, msg_len, "'%s' must be UTF-8 text", name);
        *bad = true;
        return NULL;
    }
    return v;
}

static enum MHD_Result reply_json(struct admin_request *rq, struct MHD_Connection *conn,
                                  unsigned status, json_t *obj)
{
    size_t len;
    char *body = obj ? admin_json_dump(obj, &len) : NULL;
    json_decref(obj);
    if (body == NULL) return reply_error(rq, conn, 503, "out of memory", NULL, NULL);
    enum MHD_Result ret = reply(rq, conn, status, body, len, NULL, NULL);
    free(body);
    return ret;
}

static bool url_is_request_target(const char *v);

/* GET /entries?key=K or ?url=U: one entry, looked at without changing it. */
static enum MHD_Result entries_one(struct admin_server *a, struct admin_request *rq,
                                   struct MHD_Connection *conn, const char *key_arg,
                                   const char *url_arg)
{
    struct gateway *gw = a->gw;
    char msg[512];
    char *owned = NULL;
    const char *key = key_arg;
    if (url_arg != NULL) {
        if (!url_is_request_target(url_arg))
            return reply_error(rq, conn, 400,
                               "'url' must be a path-absolute URL as sent on the request line, "
                               "like \"/users/5?x=1\" (no scheme, host or fragment)",
                               NULL, NULL);
        const char *why = NULL;
        int rc = url_cache_key(gw, url_arg, &owned, &why);
        if (rc == -ENOENT) {
            snprintf(msg, sizeof msg,
                     "a GET of this url is not cached under one shared key (%s); "
                     "look it up by key or list by prefix instead",
                     why);
            return reply_error(rq, conn, 422, msg, NULL, NULL);
        }
        if (rc != 0) return reply_error(rq, conn, 503, "out of memory", NULL, NULL);
        key = owned;
    }
    int64_t now = clock_wall_ms();
    json_t *out = json_object();
    json_t *tiers = json_array();
    if (url_arg) json_object_set_new(out, "url", json_string(url_arg));
    admin_json_set_bytes(out, "key", key, strlen(key));
    json_object_set_new(out, "tiers", tiers);

    struct cache_object *mo = gw->l1 ? store_l1_peek(gw->l1, key, strlen(key), now) : NULL;
    if (mo != NULL) {
        json_array_append_new(tiers, json_string("memory"));
        json_object_set_new(out, "memory", entry_meta(gw, mo, now));
        cache_object_unref(mo);
    }
    if (gw->l2 != NULL) {
        struct admin_wait *w = admin_wait_new();
        int rc = w ? cache_tiers_l2_peek(gw, key, wait_obj_cb, w) : -ENOMEM;
        if (rc != 0) {
            if (w) {
                admin_wait_unref(w);
                admin_wait_unref(w);
            }
            json_object_set_new(out, "redis_error", json_string("the Redis tier is unavailable"));
        } else {
            if (!admin_wait_for(w, admin_wait_ms(gw)))
                json_object_set_new(out, "redis_error", json_string("Redis did not answer"));
            else if (w->err == -EBADMSG)
                json_object_set_new(out, "redis_error",
                                    json_string("the stored value does not decode"));
            else if (w->err != 0)
                json_object_set_new(out, "redis_error", json_string(strerror(-w->err)));
            else if (w->obj != NULL) {
                json_array_append_new(tiers, json_string("redis"));
                json_object_set_new(out, "redis", entry_meta(gw, w->obj, now));
            }
            admin_wait_unref(w);
        }
    }
    bool truncated = false, redis_failed = false;
    json_t *variants = entry_variants(gw, key, now, &truncated, &redis_failed);
    json_object_set_new(out, "variants", variants ? variants : json_array());
    if (truncated) json_object_set_new(out, "variants_truncated", json_true());
    /* The variants listed come from the memory tier only. */
    if (redis_failed && json_object_get(out, "redis_error") == NULL)
        json_object_set_new(out, "redis_error", json_string("the Redis tier is unavailable"));
    free(owned);
    bool found = json_array_size(tiers) > 0 || json_array_size(json_object_get(out, "variants"));
    if (!found) json_object_set_new(out, "error", json_string("no entry under this key"));
    return reply_json(rq, conn, found ? 200 : 404, out);
}

/* The listing cursor, opaque to clients:
 *   "m<hex>[.<hex>...]"       walking the memory tier (store_l1_list's cursor),
 *                             then keys carried as below ("mz.<hex>..." once the
 *                             walk is over);
 *   "r<digits>[.<hex>...]"    walking Redis: SCAN's cursor, then the keys of the
 *                             last SCAN reply that did not fit the page (hex);
 *   "re.<hex>[.<hex>...]"     SCAN is over, these keys are still to be given.
 * SCAN returns whole hash buckets, so a reply can hold more keys than COUNT:
 * carrying the rest in the cursor keeps every page within limit.  Were the
 * rest ever longer than ENTRIES_CURSOR_HELD bytes of hex (keys of kilobytes),
 * the page gives them all instead: a few keys over limit, never a key lost. */
#define ENTRIES_CURSOR_HELD 2048

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes the held keys of a Redis cursor (the part after the SCAN cursor:
 * ".<hex>.<hex>...") into keys/lens (malloc'd each, at most max).  Returns the
 * count, or -1 when it is malformed. */
static int held_keys_parse(const char *p, char **keys, size_t *lens, int max)
{
    int n = 0;
    while (*p == '.') {
        p++;
        size_t hl = strcspn(p, ".");
        if (hl == 0 || hl % 2 != 0 || n == max) return -1;
        char *k = malloc(hl / 2 + 1);
        if (k == NULL) return -1;
        for (size_t i = 0; i < hl; i += 2) {
            int hi = hexval(p[i]), lo = hexval(p[i + 1]);
            if (hi < 0 || lo < 0) {
                free(k);
                return -1;
            }
            k[i / 2] = (char)(hi << 4 | lo);
        }
        k[hl / 2] = '\0';
        keys[n] = k;
        lens[n++] = hl / 2;
        p += hl;
    }
    return *p == '\0' ? n : -1;
}

/* Appends ".<hex of key>" to out (cap bytes); false when it does not fit. */
static bool held_key_append(char *out, size_t cap, const char *key, size_t len)
{
    static const char HEX[] = "0123456789abcdef";
    size_t at = strlen(out);
    if (at + 1 + 2 * len + 1 > cap) return false;
    out[at++] = '.';
    for (size_t i = 0; i < len; i++) {
        out[at++] = HEX[(unsigned char)key[i] >> 4];
        out[at++] = HEX[(unsigned char)key[i] & 15];
    }
    out[at] = '\0';
    return true;
}

static void redis_entry_add(json_t *entries, const char *key, size_t len)
{
    json_t *e = json_object();
    if (e == NULL) return;
    admin_json_set_bytes(e, "key", key, len);
    json_object_set_new(e, "tier", json_string("redis"));
    json_array_append_new(entries, e);
}

#define ENTRIES_HELD_MAX 256 /* held keys a cursor may carry (2048 bytes of hex hold fewer) */

/* One Redis page: the held keys first, then one SCAN.  Fills entries and next
 * ("" when the listing is over).  Returns 0, -EINVAL (a malformed cursor) or
 * -ENOTCONN (Redis did not answer). */
static int entries_redis_page(struct gateway *gw, const char *cursor, const char *prefix,
                              long limit, json_t *entries, char *next, size_t next_cap)
{
    char scan_cur[32];
    size_t cl = strcspn(cursor, ".");
    if (strlen(cursor) + 2 > next_cap) return -EINVAL; /* longer than any we hand out */
    bool scan_done = cl == 1 && cursor[0] == 'e';
    if (cl == 0 || cl >= sizeof scan_cur ||
        (!scan_done && strspn(cursor, "0123456789") != cl))
        return -EINVAL;
    memcpy(scan_cur, cursor, cl);
    scan_cur[cl] = '\0';
    char *held[ENTRIES_HELD_MAX];
    size_t held_lens[ENTRIES_HELD_MAX];
    int n_held = held_keys_parse(cursor + cl, held, held_lens, ENTRIES_HELD_MAX);
    if (n_held < 0 || (scan_done && n_held == 0)) return -EINVAL;
    int rc = 0;
    long given = 0;
    next[0] = '\0';
    for (int i = 0; i < n_held; i++) {
        if (given < limit) {
            redis_entry_add(entries, held[i], held_lens[i]);
            given++;
        } else {
            if (next[0] == '\0') snprintf(next, next_cap, "r%s", scan_cur);
            held_key_append(next, next_cap, held[i], held_lens[i]); /* fits: it came in one */
        }
    }
    if (next[0] != '\0' || scan_done) goto out;
    if (given == limit) {
        /* The held keys filled the page: the SCAN is the next page's. */
        snprintf(next, next_cap, "r%s", scan_cur);
        goto out;
    }
    struct admin_wait *w = admin_wait_new();
    if (w == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (cache_tiers_l2_scan(gw, scan_cur, prefix, (unsigned)(limit - given), wait_scan_cb, w) !=
        0) {
        admin_wait_unref(w);
        admin_wait_unref(w);
        rc = -ENOTCONN;
        goto out;
    }
    if (!admin_wait_for(w, admin_wait_ms(gw)) || w->err != 0) {
        admin_wait_unref(w);
        rc = -ENOTCONN;
        goto out;
    }
    bool over = strcmp(w->next, "0") == 0;
    size_t fit = (size_t)(limit - given) < w->n ? (size_t)(limit - given) : w->n;
    /* The rest rides in the cursor, or, if it would not fit, comes now. */
    snprintf(next, next_cap, "r%s", over ? "e" : w->next);
    char *tail = next + strlen(next);
    bool carried = true;
    for (size_t i = fit; i < w->n && carried; i++)
        carried = strlen(next) < ENTRIES_CURSOR_HELD &&
                  held_key_append(next, next_cap, w->keys[i], w->lens[i]);
    if (!carried) {
        *tail = '\0';
        fit = w->n;
    }
    for (size_t i = 0; i < fit; i++) redis_entry_add(entries, w->keys[i], w->lens[i]);
    if (over && fit == w->n) next[0] = '\0';
    admin_wait_unref(w);
out:
    for (int i = 0; i < n_held; i++) free(held[i]);
    return rc;
}

static void memory_entry_add(const struct gateway *gw, json_t *entries,
                             const struct cache_object *o, int64_t now)
{
    json_t *e = entry_meta(gw, o, now);
    if (e == NULL) return;
    admin_json_set_bytes(e, "key", o->key, o->key_len);
    json_object_set_new(e, "tier", json_string("memory"));
    json_array_append_new(entries, e);
}

/* One memory-tier page, as entries_redis_page: cursor is what follows 'm'
 * ("<hex store_l1 cursor>[.<hex key>...]", or "z.<hex key>..." once the walk is
 * over); store_l1_list never splits a bucket, so its keys past limit are
 * carried the same way and looked at again (store_l1_peek) on the next page.
 * The next cursor is "m..." while the memory tier lasts, then "r0" with a
 * Redis tier, else "". */
static int entries_memory_page(struct gateway *gw, const char *cursor, const char *prefix,
                               long limit, int64_t now, json_t *entries, char *next,
                               size_t next_cap)
{
    if (strlen(cursor) + 2 > next_cap) return -EINVAL;
    size_t cl = strcspn(cursor, ".");
    bool walked = cl == 1 && cursor[0] == 'z'; /* not a hex digit */
    uint64_t cur = STORE_L1_LIST_END;
    if (!walked) {
        char *end = NULL;
        errno = 0;
        cur = strtoull(cursor, &end, 16);
        if (cl == 0 || cl > 16 || strspn(cursor, "0123456789abcdef") != cl || errno != 0 ||
            cur == STORE_L1_LIST_END)
            return -EINVAL;
    }
    char *held[ENTRIES_HELD_MAX];
    size_t held_lens[ENTRIES_HELD_MAX];
    int n_held = held_keys_parse(cursor + cl, held, held_lens, ENTRIES_HELD_MAX);
    if (n_held < 0 || (walked && n_held == 0)) return -EINVAL;
    int rc = 0;
    long given = 0;
    char head[24];
    if (walked) snprintf(head, sizeof head, "mz");
    else snprintf(head, sizeof head, "m%llx", (unsigned long long)cur);
    next[0] = '\0';
    for (int i = 0; i < n_held; i++) {
        if (given >= limit) {
            if (next[0] == '\0') snprintf(next, next_cap, "%s", head);
            held_key_append(next, next_cap, held[i], held_lens[i]); /* fits: it came in one */
            continue;
        }
        /* Gone or past its useful life since: skipped, as a listing would. */
        struct cache_object *o = store_l1_peek(gw->l1, held[i], held_lens[i], now);
        if (o == NULL) continue;
        memory_entry_add(gw, entries, o, now);
        cache_object_unref(o);
        given++;
    }
    if (next[0] != '\0') goto out;
    if (!walked && given == limit) {
        snprintf(next, next_cap, "%s", head);
        goto out;
    }
    struct cache_object **objs = NULL;
    size_t n = 0;
    if (!walked) {
        rc = store_l1_list(gw->l1, &cur, prefix, strlen(prefix), (size_t)(limit - given), now,
                           &objs, &n);
        if (rc != 0) goto out;
    }
    size_t fit = (size_t)(limit - given) < n ? (size_t)(limit - given) : n;
    if (cur != STORE_L1_LIST_END) snprintf(next, next_cap, "m%llx", (unsigned long long)cur);
    else snprintf(next, next_cap, "mz");
    char *tail = next + strlen(next);
    bool carried = true;
    for (size_t i = fit; i < n && carried; i++)
        carried = strlen(next) < ENTRIES_CURSOR_HELD &&
                  held_key_append(next, next_cap, objs[i]->key, objs[i]->key_len);
    if (!carried) {
        *tail = '\0';
        fit = n;
    }
    for (size_t i = 0; i < n; i++) {
        if (i < fit) memory_entry_add(gw, entries, objs[i], now);
        cache_object_unref(objs[i]);
    }
    free(objs);
    /* The memory tier is done and nothing is carried: Redis next, if there is one. */
    if (cur == STORE_L1_LIST_END && *tail == '\0')
        snprintf(next, next_cap, "%s", gw->l2 != NULL ? "r0" : "");
out:
    for (int i = 0; i < n_held; i++) free(held[i]);
    return rc;
}

static enum MHD_Result entries_list(struct admin_server *a, struct admin_request *rq,
                                    struct MHD_Connection *conn, const char *prefix,
                                    const char *limit_arg, const char *cursor_arg)
{
    struct gateway *gw = a->gw;
    long limit = ENTRIES_LIMIT_DEFAULT;
    if (limit_arg != NULL) {
        char *end;
        errno = 0;
        limit = strtol(limit_arg, &end, 10);
        if (*limit_arg < '0' || *limit_arg > '9' || *end != '\0' || errno != 0 || limit < 1 ||
            limit > ENTRIES_LIMIT_MAX) {
            char msg[96];
            snprintf(msg, sizeof msg, "'limit' must be a whole number from 1 to %d",
                     ENTRIES_LIMIT_MAX);
            return reply_error(rq, conn, 400, msg, NULL, NULL);
        }
    }
    static const char BAD_CURSOR[] = "invalid 'cursor': pass the \"cursor\" of the previous page "
                                     "as it was given, or none to start";
    const char *cursor = cursor_arg != NULL ? cursor_arg : "m0";
    if ((cursor[0] != 'm' && (cursor[0] != 'r' || gw->l2 == NULL)) || cursor[1] == '\0')
        return reply_error(rq, conn, 400, BAD_CURSOR, NULL, NULL);
    int64_t now = clock_wall_ms();
    json_t *out = json_object();
    json_t *entries = json_array();
    json_object_set_new(out, "entries", entries);
    json_object_set_new(out, "limit", json_integer(limit));
    char next[ENTRIES_CURSOR_HELD + 64] = "";
    int rc = cursor[0] == 'm' ? entries_memory_page(gw, cursor + 1, prefix, limit, now, entries,
                                                    next, sizeof next)
                              : entries_redis_page(gw, cursor + 1, prefix, limit, entries, next,
                                                   sizeof next);
    if (rc != 0) json_decref(out);
    if (rc == -EINVAL) return reply_error(rq, conn, 400, BAD_CURSOR, NULL, NULL);
    if (rc == -ENOMEM) return reply_error(rq, conn, 503, "out of memory", NULL, NULL);
    if (rc != 0)
        return reply_error(rq, conn, 503,
                           "the Redis tier is unavailable: retry with the same cursor", NULL,
                           NULL);
    json_object_set_new(out, "cursor", next[0] ? json_string(next) : json_null());
    return reply_json(rq, conn, 200, out);
}

static enum MHD_Result handle_entries(struct admin_server *a, struct admin_request *rq,
                                      struct MHD_Connection *conn)
{
    char msg[256];
    bool bad = false;
    const char *key = query_arg(conn, "key", msg, sizeof msg, &bad);
    const char *url = bad ? NULL : query_arg(conn, "url", msg, sizeof msg, &bad);
    const char *prefix = bad ? NULL : query_arg(conn, "prefix", msg, sizeof msg, &bad);
    const char *limit = bad ? NULL : query_arg(conn, "limit", msg, sizeof msg, &bad);
    const char *cursor = bad ? NULL : query_arg(conn, "cursor", msg, sizeof msg, &bad);
    if (bad) return reply_error(rq, conn, 400, msg, NULL, NULL);
    if ((key != NULL) + (url != NULL) + (prefix != NULL || limit != NULL || cursor != NULL) > 1)
        return reply_error(rq, conn, 400,
                           "give one of ?key=, ?url= or a listing (?prefix=&limit=&cursor=)",
                           NULL, NULL);
    if ((key != NULL && *key == '\0') || (url != NULL && *url == '\0'))
        return reply_error(rq, conn, 400, "'key' and 'url' must not be empty", NULL, NULL);
    if (key != NULL || url != NULL) return entries_one(a, rq, conn, key, url);
    return entries_list(a, rq, conn, prefix ? prefix : "", limit, cursor);
}

/* Only what a client puts on the request line: no scheme or authority
 * ("//host/..."), no fragment, no raw spaces. */
static bool url_is_request_target(const char *v)
{
    return v[0] == '/' && v[1] != '/' && strpbrk(v, " #") == NULL;
}

/* {"memory": n, "redis": ...} for what a purge removed.  redis: a count when
 * known (rc 0, waited), "recorded" for a purge by record (rc -EALREADY),
 * "unavailable" when Redis is down or the count could not be asked for (the
 * purge is replayed when it is back), "pending" when it did not answer in
 * time; absent without a Redis tier. */
static json_t *removed_json(const struct gateway *gw, json_t *memory, int rc, bool waited,
                            const struct admin_wait *w)
{
    json_t *o = json_object();
    if (o == NULL) {
        json_decref(memory);
        return NULL;
    }
    json_object_set_new(o, "memory", memory);
    if (gw->l2 == NULL) return o;
    json_t *r;
    if (rc == -EALREADY) r = json_string("recorded");
    else if (rc != 0 || w == NULL) r = json_string("unavailable");
    else if (!waited) r = json_string("pending");
    else if (w->err != 0) r = json_string("unavailable");
    else r = json_integer((json_int_t)w->count);
    json_object_set_new(o, "redis", r);
    return o;
}

/* Drops key and its Vary variants (every key under its cache_key variant
 * prefix) and adds what went to out: "removed" for the key (counted in both
 * tiers), "variants_removed" (counted in memory; Redis by record).  A variant
 * left behind would be served again as soon as a new Vary marker is stored
 * under key.  A key that is not a valid base key has no variants
 * (cache_key.h): only the key itself is dropped. */
static int purge_key_and_variants(struct gateway *gw, const char *key, json_t *out)
{
    size_t n = strlen(key) + 16; /* the prefix adds SEP "vary" SEP */
    char *variants = malloc(n);
    if (variants == NULL) return -ENOMEM;
    int plen = cache_key_variant_prefix(key, variants, n);
    /* The key and its variants' prefix are one purge: one invalidation in /metrics. */
    stats_invalidation_group_begin();
    size_t mem = 0;
    struct admin_wait *w = admin_wait_new();
    int rc;
    bool waited = false;
    if (w == NULL) {
        cache_tiers_invalidate_key(gw, key);
        rc = -ENOMEM;
    } else {
        /* Counted first (memory, then Redis's DEL), then invalidated as
         * usual, which tells the other instances (and replays to a Redis
         * that is down). */
        rc = cache_tiers_purge_key(gw, key, &mem, wait_count_cb, w);
        if (rc != 0) admin_wait_unref(w); /* no callback will come */
        else waited = admin_wait_for(w, admin_wait_ms(gw));
        cache_tiers_invalidate_key(gw, key);
    }
    json_object_set_new(out, "removed",
                        removed_json(gw, json_integer((json_int_t)mem), rc, waited, w));
    if (w != NULL) admin_wait_unref(w);
    if (plen > 0) {
        size_t vm = cache_tiers_purge_prefix(gw, variants);
        json_object_set_new(out, "variants_removed",
                            removed_json(gw, json_integer((json_int_t)vm), -EALREADY, false,
                                         NULL));
    }
    stats_invalidation_group_end();
    free(variants);
    return 0;
}

static const char *log_cut(const char *v) { return strlen(v) > ADMIN_LOG_VALUE_MAX ? "..." : ""; }

/* POST /purge/all: every entry of both tiers and the other instances' memory
 * tiers (cache_tiers_purge_all).  Takes no value: the body is empty or a JSON
 * object (ignored), so a client that always sends one is not refused. */
static enum MHD_Result handle_purge_all(struct admin_server *a, struct admin_request *rq,
                                        struct MHD_Connection *conn)
{
    struct gateway *gw = a->gw;
    if (!body_is_blank(rq)) {
        char tmp[8];
        size_t len;
        struct admin_json_error jerr;
        enum admin_json_result jr =
            admin_json_get_string(rq->body, rq->len, "all", tmp, sizeof tmp, &len, &jerr);
        if (jr == ADMIN_JSON_INVALID || jr == ADMIN_JSON_DUPLICATE) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "invalid JSON body: %s at byte %zu (purge-all takes no value: send no "
                     "body or {})",
                     jerr.text, jerr.position);
            return reply_error(rq, conn, 400, msg, NULL, NULL);
        }
    }
    size_t mem = 0;
    struct admin_wait *w = admin_wait_new();
    if (w == NULL) return reply_error(rq, conn, 503, "out of memory", NULL, NULL);
    int rc = cache_tiers_purge_all(gw, &mem, wait_count_cb, w);
    bool waited = false;
    if (rc != 0) admin_wait_unref(w);
    else waited = admin_wait_for(w, ADMIN_PURGE_ALL_WAIT_MS);
    char ip[64];
    client_ip_of(conn, ip, sizeof ip);
    LOG_I("admin purge: all from %s (memory: %zu entries)", ip, mem);
    json_t *out = json_object();
    if (out != NULL) {
        json_object_set_new(out, "purged", json_string("all"));
        json_object_set_new(out, "removed",
                            removed_json(gw, json_integer((json_int_t)mem), rc, waited, w));
    }
    admin_wait_unref(w);
    return reply_json(rq, conn, 200, out);
}

static enum MHD_Result handle_purge(struct admin_server *a, struct admin_request *rq,
                                    struct MHD_Connection *conn, enum purge_kind kind)
{
    struct gateway *gw = a->gw;
    if (kind == PURGE_ALL) return handle_purge_all(a, rq, conn);
    const char *field = KIND_NAMES[kind];
    char value[ADMIN_MAX_VALUE + 1];
    char msg[256];
    size_t len;
    if (get_value(conn, rq, field, value, &len, msg, sizeof msg) != 0)
        return reply_error(rq, conn, 400, msg, NULL, NULL);

    char *key = NULL;
    int rc = 0;
    json_t *out = json_object();
    if (out == NULL) return reply_error(rq, conn, 503, "out of memory", NULL, NULL);
    json_object_set_new(out, "purged", json_string(field));
    json_object_set_new(out, field, json_string(value));
    switch (kind) {
    case PURGE_KEY:
        rc = purge_key_and_variants(gw, value, out);
        break;
    case PURGE_PREFIX: {
        size_t mem = cache_tiers_purge_prefix(gw, value);
        json_object_set_new(out, "removed", removed_json(gw, json_integer((json_int_t)mem),
                                                         -EALREADY, false, NULL));
        break;
    }
    case PURGE_TAG: {
        size_t mem = cache_tiers_purge_tag(gw, value);
        json_object_set_new(out, "removed", removed_json(gw, json_integer((json_int_t)mem),
                                                         -EALREADY, false, NULL));
        break;
    }
    case PURGE_URL: {
        if (!url_is_request_target(value)) {
            json_decref(out);
            return reply_error(rq, conn, 400,
                               "'url' must be a path-absolute URL as sent on the request line, "
                               "like \"/users/5?x=1\" (no scheme, host or fragment)",
                               NULL, NULL);
        }
        const char *why = NULL;
        rc = url_cache_key(gw, value, &key, &why);
        if (rc == -ENOENT) {
            json_decref(out);
            snprintf(msg, sizeof msg,
                     "a GET of this url is not cached under one shared key (%s); "
                     "purge by key, prefix or tag instead",
                     why);
            return reply_error(rq, conn, 422, msg, NULL, NULL);
        }
        /* A policy's key may not be UTF-8 (a decoded %FF), which JSON cannot
         * carry as a string: it is then given as "key_hex". */
        if (rc == 0 && admin_json_set_bytes(out, "key", key, strlen(key)) != 0) rc = -ENOMEM;
        if (rc == 0) rc = purge_key_and_variants(gw, key, out);
        break;
    }
    default:
        break;
    }
    if (rc != 0) {
        free(key);
        json_decref(out);
        return reply_error(rq, conn, 503, "out of memory", NULL, NULL);
    }

    char ip[64];
    client_ip_of(conn, ip, sizeof ip);
    if (key)
        LOG_I("admin purge: url '%.*s'%s (key '%.*s'%s) from %s", (int)ADMIN_LOG_VALUE_MAX,
              value, log_cut(value), (int)ADMIN_LOG_VALUE_MAX, key, log_cut(key), ip);
    else
        LOG_I("admin purge: %s '%.*s'%s from %s", field, (int)ADMIN_LOG_VALUE_MAX, value,
              log_cut(value), ip);

    free(key);
    return reply_json(rq, conn, 200, out);
}

/* Authenticates, then routes.  Authentication comes first so that an
 * unauthenticated client learns nothing, not even which paths exist. */
static enum MHD_Result handle(struct admin_server *a, struct admin_request *rq,
                              struct MHD_Connection *conn, const char *url, const char *method)
{
    enum auth_result auth = check_auth(a, conn);
    if (auth != AUTH_OK) return reply_auth(a, rq, conn, auth);
    if (rq->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body too large (at most %zu bytes)", ADMIN_MAX_BODY);
        return reply_error(rq, conn, 413, msg, NULL, NULL);
    }
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (strcmp(url, "/admin/health") == 0) {
        if (!get) return reply_error(rq, conn, 405, "method not allowed", "Allow", "GET, HEAD");
        static const char ok[] = "{\"status\":\"ok\"}\n";
        return reply(rq, conn, 200, ok, sizeof ok - 1, NULL, NULL);
    }
    if (strcmp(url, "/entries") == 0) {
        if (!get) return reply_error(rq, conn, 405, "method not allowed", "Allow", "GET, HEAD");
        return handle_entries(a, rq, conn);
    }
    if (strncmp(url, "/purge/", 7) == 0) {
        for (int k = 0; k < PURGE_KINDS; k++) {
            if (strcmp(url + 7, KIND_NAMES[k]) != 0) continue;
            if (strcmp(method, "POST") != 0)
                return reply_error(rq, conn, 405, "method not allowed", "Allow", "POST");
            return handle_purge(a, rq, conn, (enum purge_kind)k);
        }
    }
    return reply_error(rq, conn, 404, "not found", NULL, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    struct admin_server *a = cls;
    struct admin_request *rq = *con_cls;
    if (rq == NULL) {
        conn_guard_headers_done(a->guard, conn_guard_mhd_slot(conn));
        rq = calloc(1, sizeof *rq);
        if (rq == NULL) return MHD_NO;
        *con_cls = rq;
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > ADMIN_MAX_BODY) {
            /* The body will not be read, so answer (401/403 first, else 413)
             * now: libmicrohttpd then closes the connection, which is what we
             * want here, not the keep-alive the first-call rule protects. */
            rq->too_big = true;
            return handle(a, rq, conn, url, method);
        }
        return MHD_YES;
    }
    if (rq->answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (!rq->too_big && rq->len + n <= ADMIN_MAX_BODY) {
            memcpy(rq->body + rq->len, upload_data, n);
            rq->len += n;
            return MHD_YES;
        }
        /* A chunked body past the bound: libmicrohttpd 0.9.75 refuses a
         * response queued mid-body, so discard up to ADMIN_MAX_DISCARD and
         * answer 413 at the end; past that, drop the connection. */
        rq->too_big = true;
        rq->discarded += n;
        return rq->discarded <= ADMIN_MAX_DISCARD ? MHD_YES : MHD_NO;
    }
    rq->body[rq->len] = '\0';
    return handle(a, rq, conn, url, method);
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct admin_server *a = cls;
    conn_guard_request_done(a->guard, conn_guard_mhd_slot(conn));
    free(*con_cls);
    *con_cls = NULL;
}

/* The request line is in: its header deadline starts.  Returns no request state
 * (on_request allocates it once the headers are complete). */
static void *uri_log_cb(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct admin_server *a = cls;
    conn_guard_request_line(a->guard, conn_guard_mhd_slot(conn));
    return NULL;
}

static void notify_connection_cb(void *cls, struct MHD_Connection *conn, void **socket_context,
                                 enum MHD_ConnectionNotificationCode code)
{
    struct admin_server *a = cls;
    conn_guard_mhd_notify(a->guard, conn, socket_context, (int)code);
}

/* libmicrohttpd's own messages, in our log format. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    LOG_W("admin listener: %s", msg);
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

int admin_server_start(struct gateway *gw, struct admin_server **out, char *err, size_t err_len)
{
    const struct config *cfg = gw->cfg;
    *out = NULL;
    if (cfg->admin_token == NULL) return 0;
    if (cfg->admin_token[0] == '\0') {
        LOG_W("ADMIN_TOKEN is empty: the admin/purge listener stays off");
        return 0;
    }
    const char *host = cfg->admin_host ? cfg->admin_host : "127.0.0.1";
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)cfg->admin_port);
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)cfg->admin_port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err, err_len,
                 "invalid value for --admin-host (ADMIN_HOST): '%s' (expected an IP address)",
                 host);
        return -1;
    }
    struct admin_server *a = calloc(1, sizeof *a);
    if (a == NULL) {
        snprintf(err, err_len, "out of memory starting the admin listener");
        return -1;
    }
    a->gw = gw;
    a->auth_log_ms = clock_mono_ms() - 1000;
    a->guard = conn_guard_create("admin", ADMIN_MAX_CONNECTIONS,
                                 cfg->client_header_timeout_s * 1000, ADMIN_IDLE_TIMEOUT_S * 1000);
    if (a->guard == NULL) {
        snprintf(err, err_len, "out of memory starting the admin listener");
        free(a);
        return -1;
    }
    /* One thread is plenty for an operator API; a small connection limit and a
     * short idle timeout keep it from holding resources.  The logger must be
     * the first option to catch every message. */
    a->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->admin_port, NULL, NULL, on_request, a,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a, MHD_OPTION_SOCK_ADDR, &ss,
        MHD_OPTION_NOTIFY_COMPLETED, completed_cb, a, MHD_OPTION_URI_LOG_CALLBACK, uri_log_cb, a,
        MHD_OPTION_NOTIFY_CONNECTION, notify_connection_cb, a, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)ADMIN_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)ADMIN_MAX_CONNECTIONS + 16u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)32 * 1024, MHD_OPTION_END);
    if (a->daemon == NULL) {
        snprintf(err, err_len,
                 "cannot listen on %s:%d for the admin API (address in use or not permitted)",
                 host, cfg->admin_port);
        conn_guard_destroy(a->guard);
        free(a);
        return -1;
    }
    if (is_loopback(&ss))
        LOG_I("admin API listening on http://%s:%d (bearer token required)", host,
              cfg->admin_port);
    else
        LOG_W("admin API listening on non-loopback address http://%s:%d: anyone who can reach "
              "it and holds the token can purge the cache",
              host, cfg->admin_port);
    *out = a;
    return 0;
}

void admin_server_stop(struct admin_server *a)
{
    if (a == NULL) return;
    MHD_stop_daemon(a->daemon);
    conn_guard_destroy(a->guard);
    free(a);
}
