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
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin_json.h"
#include "cache_key.h"
#include "cache_tiers.h"
#include "conn_guard.h"
#include "io_loop.h"
#include "log.h"
#include "policy_engine.h"

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

enum purge_kind { PURGE_KEY, PURGE_PREFIX, PURGE_TAG, PURGE_URL, PURGE_KINDS };
static const char *const KIND_NAMES[PURGE_KINDS] = {"key", "prefix", "tag", "url"};

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
    snprintf(out, len, "-");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
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
        size_t n = strlen(url) + 5;
        *key = malloc(n);
        if (*key == NULL) return -ENOMEM;
        snprintf(*key, n, "GET:%s", url);
        return 0;
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

/* Drops key and its Vary variants (every key under its cache_key variant
 * prefix).  A variant left behind would be served again as soon as a new Vary
 * marker is stored under key.  A key that is not a valid base key has no
 * variants (cache_key.h): only the key itself is dropped. */
static int purge_key_and_variants(struct gateway *gw, const char *key)
{
    size_t n = strlen(key) + 16; /* the prefix adds SEP "vary" SEP */
    char *variants = malloc(n);
    if (variants == NULL) return -ENOMEM;
    int plen = cache_key_variant_prefix(key, variants, n);
    cache_tiers_invalidate_key(gw, key);
    if (plen > 0) cache_tiers_invalidate_prefix(gw, variants);
    free(variants);
    return 0;
}

static const char *log_cut(const char *v) { return strlen(v) > ADMIN_LOG_VALUE_MAX ? "..." : ""; }

static enum MHD_Result handle_purge(struct admin_server *a, struct admin_request *rq,
                                    struct MHD_Connection *conn, enum purge_kind kind)
{
    struct gateway *gw = a->gw;
    const char *field = KIND_NAMES[kind];
    char value[ADMIN_MAX_VALUE + 1];
    char msg[256];
    size_t len;
    if (get_value(conn, rq, field, value, &len, msg, sizeof msg) != 0)
        return reply_error(rq, conn, 400, msg, NULL, NULL);

    char *key = NULL;
    int rc = 0;
    switch (kind) {
    case PURGE_KEY:
        rc = purge_key_and_variants(gw, value);
        break;
    case PURGE_PREFIX:
        cache_tiers_invalidate_prefix(gw, value);
        break;
    case PURGE_TAG:
        cache_tiers_invalidate_tag(gw, value);
        break;
    case PURGE_URL: {
        /* Only what a client puts on the request line: no scheme or authority
         * ("//host/..."), no fragment, no raw spaces. */
        if (value[0] != '/' || value[1] == '/' || strpbrk(value, " #") != NULL)
            return reply_error(rq, conn, 400,
                               "'url' must be a path-absolute URL as sent on the request line, "
                               "like \"/users/5?x=1\" (no scheme, host or fragment)",
                               NULL, NULL);
        const char *why = NULL;
        rc = url_cache_key(gw, value, &key, &why);
        if (rc == -ENOENT) {
            snprintf(msg, sizeof msg,
                     "a GET of this url is not cached under one shared key (%s); "
                     "purge by key, prefix or tag instead",
                     why);
            return reply_error(rq, conn, 422, msg, NULL, NULL);
        }
        if (rc == 0) rc = purge_key_and_variants(gw, key);
        break;
    }
    default:
        break;
    }
    if (rc != 0) {
        free(key);
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

    /* value is UTF-8 (checked above); a policy's key may not be (a decoded
     * %FF), and JSON cannot carry it: the answer then leaves "key" out, the
     * purge itself has happened and the log line names it. */
    size_t len_out;
    char *body = key && admin_json_is_utf8(key, strlen(key))
                     ? admin_json_strings(&len_out, "purged", field, field, value, "key", key,
                                          (const char *)NULL)
                     : admin_json_strings(&len_out, "purged", field, field, value,
                                          (const char *)NULL);
    enum MHD_Result ret = body ? reply(rq, conn, 200, body, len_out, NULL, NULL)
                               : reply_error(rq, conn, 503, "out of memory", NULL, NULL);
    free(body);
    free(key);
    return ret;
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
    a->guard = conn_guard_create("admin", ADMIN_MAX_CONNECTIONS, cfg->client_header_timeout_s * 1000,
                                 ADMIN_IDLE_TIMEOUT_S * 1000);
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
