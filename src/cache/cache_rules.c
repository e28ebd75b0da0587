/* cache_rules.c - see cache_rules.h. */
#include "cache_rules.h"

#include "cache_key.h"
#include "http_date.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

bool cache_rules_request_cacheable(const char *method, const struct header_list *req,
                                   const char **reason)
{
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        *reason = "method";
        return false;
    }
    /* RFC 9111 §3.5: a shared cache must not answer a request carrying
     * Authorization from a shared entry; Cookie carries the same risk. */
    if (header_list_get(req, "authorization")) {
        *reason = "authorization";
        return false;
    }
    if (header_list_get(req, "cookie")) {
        *reason = "cookie";
        return false;
    }
    *reason = NULL;
    return true;
}

/* DEFAULT_TTL, the product default, is for successful responses only. */
static bool status_default_cacheable(int status) { return status == 200 || status == 203; }

/* RFC 9110 §15.1: the heuristically cacheable statuses (206 is one, but partial
 * responses are not stored). */
static bool status_heuristic(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return true;
    default:
        return false;
    }
}

/* The final statuses RFC 9110 defines, whose semantics the cache conforms to
 * (must-understand, RFC 9111 §5.2.2.3).  206 and 304 are left out: a partial
 * response is not stored, and a 304 only updates a stored one. */
static bool status_understood(int status)
{
    if ((status >= 200 && status <= 205) || (status >= 300 && status <= 303) || status == 305 ||
        status == 307 || status == 308 || (status >= 400 && status <= 417) ||
        (status >= 500 && status <= 505))
        return true;
    return status == 421 || status == 422 || status == 426;
}

/* Delta-seconds (already bounded by HEADERS_DELTA_MAX when parsed) to
 * milliseconds; clamped again here so values from any source stay within
 * [0, HEADERS_DELTA_MAX * 1000] and later sums cannot overflow. */
static int64_t delta_ms(int64_t s)
{
    if (s < 0) return 0;
    if (s > HEADERS_DELTA_MAX) s = HEADERS_DELTA_MAX;
    return s * 1000;
}

/* Saturating int64 arithmetic for values read back from stored objects,
 * which need not have been produced by this version. */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r)) return b < 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* Age is delta-seconds: digits only.  Anything else ("1.5", "-1", "1 2") is not an Age
 * and is ignored (RFC 9111 §5.1), returning -1. */
static int64_t parse_age(const char *v)
{
    while (*v == ' ' || *v == '\t') v++;
    if (*v < '0' || *v > '9') return -1;
    int64_t a = 0;
    for (; *v >= '0' && *v <= '9'; v++) {
        a = a * 10 + (*v - '0');
        if (a > HEADERS_DELTA_MAX) a = HEADERS_DELTA_MAX;
    }
    while (*v == ' ' || *v == '\t') v++;
    return *v == '\0' ? a : -1;
}

/* Room for a combined list field; a longer one is not understood, so the
 * response is not stored (a directive past the bound could say private). */
enum { LIST_MAX = 4096 };

/* A targeted field (RFC 9213) is a Structured Fields Dictionary.  This accepts the
 * members a cache directive can be: key or key=value, the key lower-case (sf-key),
 * the value a token, an integer or a quoted string without commas.  Anything else
 * makes the whole field invalid, and an invalid targeted field is ignored (§2.1). */
static bool targeted_valid(const char *v)
{
    const char *p = v;
    for (;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!((*p >= 'a' && *p <= 'z') || *p == '*')) return false;
        while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
               *p == '.' || *p == '*')
            p++;
        if (*p == '=') {
            p++;
            if (*p == '"') {
                for (p++; *p && *p != '"'; p++)
                    if (*p == ',' || (unsigned char)*p < 0x20) return false;
                if (*p != '"') return false;
                p++;
            } else if (*p == '?') {
                p++;
                if (*p != '0' && *p != '1') return false;
                p++;
            } else {
                const char *s = p;
                while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t' &&
                       (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
                    p++;
                if (p == s) return false;
            }
        }
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\0') return true;
        if (*p != ',') return false;
        p++;
    }
}

void cache_rules_response(int status, const struct header_list *resp, size_t body_len,
                          int64_t response_time_ms, int64_t default_ttl_ms,
                          size_t max_value_bytes, const struct store_overrides *ov,
                          struct store_decision *out)
{
    struct cache_rules_opts o = {.default_ttl_ms = default_ttl_ms,
                                 .max_value_bytes = max_value_bytes};
    cache_rules_response_ex(status, resp, body_len, response_time_ms, &o, ov, out);
}

void cache_rules_response_ex(int status, const struct header_list *resp, size_t body_len,
                             int64_t response_time_ms, const struct cache_rules_opts *opts,
                             const struct store_overrides *ov, struct store_decision *out)
{
    static const struct store_overrides NONE = {-1, -1, -1, false, false};
    if (ov == NULL) ov = &NONE;
    memset(out, 0, sizeof *out);
    long long v;
    /* Interim responses are never stored; partial ones and 304s are not stored
     * as such (a 304 updates the stored response, cache_rules_merge_304). */
    if (status < 200 || status > 599 || status == 206 || status == 304) {
        out->reason = "status";
        return;
    }
    /* Every Cache-Control and Vary line counts (RFC 9110 §5.3): a second
     * "Cache-Control: private" line must keep the response out of a shared
     * entry as surely as a first one. */
    char ccbuf[LIST_MAX], varybuf[LIST_MAX], tbuf[LIST_MAX];
    int cc_lines = header_list_get_all(resp, "cache-control", ccbuf, sizeof ccbuf);
    int vary_lines = header_list_get_all(resp, "vary", varybuf, sizeof varybuf);
    if (cc_lines < 0 || vary_lines < 0) {
        out->reason = "list-too-long";
        return;
    }
    const char *cc = cc_lines > 0 ? ccbuf : NULL;
    /* RFC 9213: the most specific valid targeted field present replaces Cache-Control
     * and Expires.  The own field (TARGETED_CACHE_CONTROL) comes before CDN-Cache-Control. */
    bool targeted = false;
    const char *tnames[2] = {opts->targeted_field, "cdn-cache-control"};
    for (int i = 0; i < 2 && !targeted; i++) {
        if (tnames[i] == NULL || tnames[i][0] == '\0') continue;
        int t = header_list_get_all(resp, tnames[i], tbuf, sizeof tbuf);
        if (t < 0) {
            out->reason = "list-too-long";
            return;
        }
        if (t > 0 && targeted_valid(tbuf) && strlen(tbuf) < sizeof out->effective_cc) {
            targeted = true;
            cc = tbuf;
            memcpy(out->effective_cc, tbuf, strlen(tbuf) + 1);
        }
    }
    /* must-understand (RFC 9111 §5.2.2.3): store only a status we conform to, and
     * then no-store no longer applies. */
    bool must_understand = headers_has_token(cc, "must-understand");
    if (must_understand && !status_understood(status)) {
        out->reason = "must-understand";
        return;
    }
    if (headers_has_token(cc, "no-store") && !must_understand && !ov->ignore_no_store) {
        out->reason = "no-store";
        return;
    }
    if (headers_has_token(cc, "private") && !ov->allow_private) {
        out->reason = "private";
        return;
    }
    /* RFC 9111 §3.5: a shared cache stores the answer to a request with Authorization
     * only when the response says it may be shared.  A per-user route keys on the
     * credential and keeps its own rule. */
    if (opts->request_authorization && !ov->allow_private && !headers_has_token(cc, "public") &&
        !headers_has_token(cc, "s-maxage") && !headers_has_token(cc, "must-revalidate")) {
        out->reason = "authorization";
        return;
    }
    bool no_cache = headers_has_token(cc, "no-cache") && ov->ttl_ms < 0;
    if (no_cache && !header_list_get(resp, "etag") && !header_list_get(resp, "last-modified")) {
        /* Every use must be revalidated, and without a validator a revalidation is a
         * full fetch: a stored copy could never be served. */
        out->reason = "no-cache";
        return;
    }
    if (header_list_get(resp, "set-cookie") && !ov->ignore_no_store) {
        out->reason = "set-cookie";
        return;
    }
    if (vary_lines > 0 && headers_has_token(varybuf, "*")) {
        out->reason = "vary-star";
        return;
    }
    if (body_len > opts->max_value_bytes) {
        out->reason = "too-big";
        return;
    }

    /* Age: the larger of the upstream's Age and the apparent age from Date.
     * Both are bounded by HEADERS_DELTA_MAX (a huge Age means "stale"). */
    int64_t age_value = 0, apparent = 0;
    const char *age = header_list_get(resp, "age");
    if (age) age_value = parse_age(age);
    if (age_value < 0) age_value = 0;
    const char *date = header_list_get(resp, "date");
    int64_t date_s = -1;
    if (date && !http_date_parse(date, &date_s)) date_s = -1; /* not a date: as if absent */
    if (date_s > 0) {
        int64_t d = sat_sub(response_time_ms / 1000, (int64_t)date_s);
        apparent = d > 0 ? (d > HEADERS_DELTA_MAX ? HEADERS_DELTA_MAX : d) : 0;
    }
    out->initial_age_s = age_value > apparent ? age_value : apparent;

    int64_t ttl_ms = -1;
    if (ov->ttl_ms >= 0) ttl_ms = ov->ttl_ms;
    else if (headers_token_int(cc, "s-maxage", &v)) ttl_ms = delta_ms(v);
    else if (headers_token_int(cc, "max-age", &v)) ttl_ms = delta_ms(v);
    else if (!targeted) {
        char expbuf[256];
        int lines = header_list_get_all(resp, "expires", expbuf, sizeof expbuf);
        if (lines != 0) {
            /* RFC 9111 §5.3: an invalid date, or several Expires lines, mean "already
             * expired". */
            int64_t e = 0;
            bool valid = lines == 1 && http_date_parse(expbuf, &e);
            int64_t base = date_s > 0 ? date_s : response_time_ms / 1000;
            /* Expires far from Date saturates like a delta-seconds value. */
            ttl_ms = valid && e > base ? delta_ms(sat_sub(e, base)) : 0;
        }
    }
    if (ttl_ms < 0 && opts->heuristic_percent > 0 &&
        (status_heuristic(status) || headers_has_token(cc, "public"))) {
        /* RFC 9111 §4.2.2: a fraction of the time since Last-Modified, bounded. */
        const char *lm = header_list_get(resp, "last-modified");
        int64_t lm_s;
        if (lm && http_date_parse(lm, &lm_s)) {
            int64_t base = date_s > 0 ? date_s : response_time_ms / 1000;
            int64_t since = sat_sub(base, lm_s);
            if (since > HEADERS_DELTA_MAX) since = HEADERS_DELTA_MAX;
            int64_t h = since > 0 ? delta_ms(since) / 100 * opts->heuristic_percent : 0;
            if (opts->heuristic_max_ms >= 0 && h > opts->heuristic_max_ms)
                h = opts->heuristic_max_ms;
            ttl_ms = h;
        }
    }
    if (ttl_ms < 0 && no_cache) ttl_ms = 0; /* revalidated on every use: no lifetime needed */
    if (ttl_ms < 0) {
        if (!status_default_cacheable(status) || opts->default_ttl_ms <= 0) {
            out->reason = "no-freshness";
            return;
        }
        ttl_ms = opts->default_ttl_ms;
    }
    if (headers_token_int(cc, "stale-while-revalidate", &v)) out->swr_ms = delta_ms(v);
    if (headers_token_int(cc, "stale-if-error", &v)) out->sie_ms = delta_ms(v);
    if (ov->swr_ms >= 0) out->swr_ms = ov->swr_ms;
    if (ov->sie_ms >= 0) out->sie_ms = ov->sie_ms;
    /* A policy's ttl counts from when we received the response. */
    if (ov->ttl_ms >= 0) out->initial_age_s = 0;
    if (no_cache) {
        /* Stored, stale from the start: every use revalidates (forbids_stale). */
        out->ttl_ms = 0;
        out->swr_ms = out->sie_ms = 0;
        out->store = true;
        return;
    }
    if (ttl_ms <= delta_ms(out->initial_age_s) && out->swr_ms == 0 && out->sie_ms == 0) {
        out->reason = "stale-on-arrival";
        return;
    }
    out->ttl_ms = ttl_ms;
    out->store = true;
}

bool cache_rules_request_store_only(const char *method, const struct header_list *req)
{
    return (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
           header_list_get(req, "authorization") != NULL && header_list_get(req, "cookie") == NULL;
}

bool cache_rules_header_consumed(const char *name, const char *targeted_field)
{
    /* Runs for every field of every hit: most names start with none of x, c, s. */
    int c0 = name[0] | 0x20;
    bool targeted = targeted_field != NULL && targeted_field[0] != '\0';
    if (c0 != 'x' && c0 != 'c' && c0 != 's' && (!targeted || c0 != (targeted_field[0] | 0x20)))
        return false;
    if (strncasecmp(name, "x-cachegw-", 10) == 0) return true;
    if (strcasecmp(name, "cdn-cache-control") == 0 || strcasecmp(name, "surrogate-control") == 0 ||
        strcasecmp(name, "surrogate-key") == 0)
        return true;
    return targeted_field != NULL && targeted_field[0] != '\0' &&
           strcasecmp(name, targeted_field) == 0;
}

/* Fields a 304 never changes in the stored response: the stored body depends on
 * them (framing, coding, range), or they are never stored / belong to the gateway. */
static bool merge_keeps_stored(const char *name)
{
    static const char *const KEEP[] = {"content-length", "content-encoding", "content-range",
                                       "transfer-encoding", "set-cookie"};
    for (size_t i = 0; i < sizeof KEEP / sizeof KEEP[0]; i++)
        if (strcasecmp(name, KEEP[i]) == 0) return true;
    return strncasecmp(name, "x-cachegw-", 10) == 0 || headers_is_hop_by_hop(name, NULL);
}

int cache_rules_merge_304(const struct cache_object *old, const struct header_list *fresh,
                          struct header_list *out)
{
    char connection[LIST_MAX];
    int conn_lines = header_list_get_all(fresh, "connection", connection, sizeof connection);
    const char *conn = conn_lines > 0 ? connection : NULL;
    /* A Connection list too long to read: no field of the 304 is trusted. */
    bool usable_304 = conn_lines >= 0;
    for (size_t i = 0; i < old->n_headers; i++) {
        const char *name = old->headers[i].name;
        if (usable_304 && !merge_keeps_stored(name) && header_list_get(fresh, name) &&
            !headers_is_hop_by_hop(name, conn))
            continue; /* replaced by the 304's lines below */
        /* A 304 without Date was received now: the old Date would make the refreshed
         * response look as old as the stored one (the fill records the receipt time). */
        if (strcasecmp(name, "date") == 0) continue;
        if (header_list_add(out, name, old->headers[i].value) != 0) return -1;
    }
    if (!usable_304) return 0;
    for (size_t i = 0; i < fresh->n; i++) {
        const char *name = fresh->items[i].name;
        if (merge_keeps_stored(name) || headers_is_hop_by_hop(name, conn)) continue;
        if (header_list_add(out, name, fresh->items[i].value) != 0) return -1;
    }
    return 0;
}

bool cache_rules_header_storable(const char *name, const char *connection_value)
{
    static const char *const SKIP[] = {"content-length", "age", "set-cookie", "x-cache",
                                       "cache-status"};
    for (size_t i = 0; i < sizeof SKIP / sizeof SKIP[0]; i++)
        if (strcasecmp(name, SKIP[i]) == 0) return false;
    return !headers_is_hop_by_hop(name, connection_value);
}

/* ---- selecting fields, normalised (RFC 9111 §4.1) ----
 * Two requests select the same variant when their fields differ only in ways the field's
 * syntax allows: whitespace around the value, around list commas and around parameter
 * ';' and '=' in the Accept-* lists; and, for Accept-Language and Accept-Encoding, whose
 * tokens are case-insensitive and whose preference is carried by q-values, case and
 * order.  Other fields keep their bytes (their syntax is not known here). */

enum { NORM_MAX_ELEMS = 64 };

static bool is_ows(char c) { return c == ' ' || c == '	'; }

static int cmp_elem(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Normalises value (NUL-terminated) into out.  Returns 0, or -1 when it does not fit. */
static int normalise_selecting(const char *name, const char *value, char *out, size_t cap)
{
    bool list = strcasecmp(name, "accept") == 0 || strcasecmp(name, "accept-encoding") == 0 ||
                strcasecmp(name, "accept-language") == 0 ||
                strcasecmp(name, "accept-charset") == 0;
    bool fold = strcasecmp(name, "accept-encoding") == 0 ||
                strcasecmp(name, "accept-language") == 0;
    size_t n = strlen(value);
    while (n > 0 && is_ows(value[n - 1])) n--;
    while (n > 0 && is_ows(*value)) value++, n--;
    if (!list) {
        if (n >= cap) return -1;
        memcpy(out, value, n);
        out[n] = '\0';
        return 0;
    }
    /* Elements without OWS, one NUL after each, in buf; then sorted when folded. */
    char buf[LIST_MAX];
    char *elems[NORM_MAX_ELEMS];
    size_t ne = 0, w = 0;
    const char *p = value, *end = value + n;
    while (p < end) {
        const char *e = p;
        while (e < end && *e != ',') e++;
        size_t start = w;
        for (const char *q = p; q < e; q++) {
            if (is_ows(*q)) continue; /* no OWS is significant in these lists' syntax */
            if (w + 2 > sizeof buf) return -1;
            char c = *q;
            if (fold && c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            buf[w++] = c;
        }
        if (w > start) { /* empty elements are allowed and mean nothing (§5.6.1) */
            buf[w++] = '\0';
            if (ne < NORM_MAX_ELEMS) elems[ne] = buf + start;
            ne++;
        }
        p = e < end ? e + 1 : e;
    }
    if (ne > NORM_MAX_ELEMS) fold = false; /* too many to sort: kept in order */
    size_t shown = ne < NORM_MAX_ELEMS ? ne : NORM_MAX_ELEMS;
    if (fold) qsort(elems, shown, sizeof elems[0], cmp_elem);
    size_t o = 0;
    if (ne > NORM_MAX_ELEMS) {
        /* In arrival order: buf holds them one after another. */
        for (size_t i = 0; i < w; i++) {
            if (o + 2 > cap) return -1;
            out[o++] = buf[i] == '\0' ? ',' : buf[i];
        }
        if (o > 0) o--; /* the last separator */
    } else {
        for (size_t i = 0; i < shown; i++) {
            size_t l = strlen(elems[i]);
            if (o + l + 2 > cap) return -1;
            if (i > 0) out[o++] = ',';
            memcpy(out + o, elems[i], l);
            o += l;
        }
    }
    out[o] = '\0';
    return 0;
}

int cache_rules_variant_key(const char *base_key, const char *vary,
                            const struct header_list *req, char *out, size_t out_len)
{
    /* The request's selecting fields, normalised, in a list of their own (one line
     * each); cache_key_variant then writes the key from it. */
    struct header_list norm = {0};
    int rc = 0;
    char name[128], value[LIST_MAX], nv[LIST_MAX];
    const char *p = vary;
    while (*p && rc == 0) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t') p++;
        size_t len = (size_t)(p - start);
        if (len == 0) continue;
        if (len >= sizeof name) {
            rc = -1;
            break;
        }
        memcpy(name, start, len);
        name[len] = '\0';
        if (header_list_get(&norm, name) != NULL) continue; /* named twice */
        int lines = header_list_get_all(req, name, value, sizeof value);
        if (lines < 0 || (lines > 0 && (normalise_selecting(name, value, nv, sizeof nv) != 0 ||
                                        header_list_add(&norm, name, nv) != 0)))
            rc = -1;
    }
    if (rc == 0 && cache_key_variant(base_key, vary, &norm, out, out_len) < 0) rc = -1;
    header_list_free(&norm);
    return rc;
}

void cache_rules_request_cc(const struct header_list *req, struct request_cc *out)
{
    char ccbuf[LIST_MAX], pragma[LIST_MAX];
    int cc_lines = header_list_get_all(req, "cache-control", ccbuf, sizeof ccbuf);
    int pragma_lines = header_list_get_all(req, "pragma", pragma, sizeof pragma);
    if (cc_lines < 0 || pragma_lines < 0) {
        /* Directives we could not read in full: neither answer from nor
         * store into the shared cache for this request. */
        *out = (struct request_cc){-1, -1, -1, true, true, false};
        return;
    }
    const char *cc = cc_lines > 0 ? ccbuf : NULL;
    long long v;
    out->max_age_s = headers_token_int(cc, "max-age", &v) ? (int64_t)v : -1;
    out->min_fresh_s = headers_token_int(cc, "min-fresh", &v) ? (int64_t)v : -1;
    if (headers_token_int(cc, "max-stale", &v)) out->max_stale_s = (int64_t)v;
    else out->max_stale_s = headers_has_token(cc, "max-stale") ? INT64_MAX : -1;
    out->no_cache = headers_has_token(cc, "no-cache");
    if (cc == NULL) out->no_cache = pragma_lines > 0 && headers_has_token(pragma, "no-cache");
    out->no_store = headers_has_token(cc, "no-store");
    out->only_if_cached = headers_has_token(cc, "only-if-cached");
}

/* True when a stored object's Cache-Control (every line of it) has token; a
 * list too long to read counts as having it (the conservative answer). */
static bool stored_cc_has(const struct cache_object *obj, const char *token)
{
    char cc[LIST_MAX];
    /* A targeted field decided this response's freshness: its directives rule reuse too. */
    const char *targeted = cache_object_field(obj, CACHE_FIELD_CC);
    if (targeted != NULL) return headers_has_token(targeted, token);
    int lines = headers_get_all(obj->headers, obj->n_headers, "cache-control", ", ", cc,
                                sizeof cc);
    if (lines < 0) return true;
    return lines > 0 && headers_has_token(cc, token);
}

static bool forbids_stale(const struct cache_object *obj)
{
    return stored_cc_has(obj, "must-revalidate") || stored_cc_has(obj, "proxy-revalidate") ||
           stored_cc_has(obj, "no-cache");
}

enum usability cache_rules_usability(const struct cache_object *obj, const struct request_cc *cc,
                                     int64_t now_ms)
{
    /* Saturating: the stored meta may come from Redis, the request's deltas
     * from a client; neither may overflow into the opposite answer. */
    int64_t age_ms = sat_add(sat_sub(now_ms, obj->meta.stored_at_ms),
                             delta_ms(obj->meta.initial_age_s));
    if (age_ms < 0) age_ms = 0;
    int64_t left_ms = sat_sub(obj->meta.ttl_ms, age_ms); /* > 0 while fresh */
    if (cc->no_cache) return USE_REVALIDATE;
    bool fresh = left_ms > 0;
    if (cc->max_age_s >= 0 && age_ms > delta_ms(cc->max_age_s)) fresh = false;
    if (cc->min_fresh_s >= 0 && left_ms < delta_ms(cc->min_fresh_s)) fresh = false;
    if (fresh) return USE_FRESH;
    if (forbids_stale(obj)) return USE_REVALIDATE;
    /* How long it has been stale (0 while fresh), without negating INT64_MIN. */
    int64_t stale_ms = left_ms <= 0 ? sat_sub(0, left_ms) : 0;
    if (cc->max_stale_s >= 0 && left_ms <= 0 &&
        (cc->max_stale_s == INT64_MAX || stale_ms <= delta_ms(cc->max_stale_s)))
        return USE_STALE_OK;
    /* The client's own max-age forbids stale answers too. */
    if (cc->max_age_s >= 0 || cc->min_fresh_s >= 0) return USE_REVALIDATE;
    if (left_ms <= 0 && stale_ms < obj->meta.swr_ms) return USE_SWR;
    return USE_REVALIDATE;
}

bool cache_rules_stale_if_error(const struct cache_object *obj, int64_t now_ms)
{
    if (obj == NULL || forbids_stale(obj)) return false;
    return cache_object_is_fresh(obj, now_ms) || cache_object_in_sie(obj, now_ms);
}

/* Compares two entity tags weakly: W/ prefixes are ignored. */
static bool etag_weak_eq(const char *a, size_t alen, const char *b)
{
    if (alen >= 2 && strncmp(a, "W/", 2) == 0) {
        a += 2;
        alen -= 2;
    }
    if (strncmp(b, "W/", 2) == 0) b += 2;
    return strlen(b) == alen && strncmp(a, b, alen) == 0;
}

/* Weak comparison that also accepts the tag of a coded copy of obj (compress.h suffixes
 * the opaque part with "-gzip" or "-br"): a client holding the gzip copy revalidates it. */
static bool etag_matches(const char *m, size_t mlen, const char *etag)
{
    if (etag_weak_eq(m, mlen, etag)) return true;
    static const char *const SUFFIX[] = {"-gzip\"", "-br\""};
    for (size_t i = 0; i < 2; i++) {
        size_t sl = strlen(SUFFIX[i]);
        if (mlen > sl + 1 && strncmp(m + mlen - sl, SUFFIX[i], sl) == 0) {
            char base[512];
            size_t bl = mlen - sl;
            if (bl + 2 > sizeof base) return false;
            memcpy(base, m, bl);
            base[bl] = '"';
            if (etag_weak_eq(base, bl + 1, etag)) return true;
        }
    }
    return false;
}

bool cache_rules_not_modified(const struct header_list *req, const struct cache_object *obj)
{
    if (obj->status != 200) return false;
    /* If-None-Match is a list: every line of it (RFC 9110 §5.3).  One too
     * long to read is answered in full, never with a 304. */
    char inmbuf[LIST_MAX];
    int inm_lines = header_list_get_all(req, "if-none-match", inmbuf, sizeof inmbuf);
    if (inm_lines < 0) return false;
    const char *inm = inm_lines > 0 ? inmbuf : NULL;
    if (inm) {
        const char *etag = cache_object_header(obj, "etag");
        const char *p = inm;
        while (*p) {
            while (*p == ' ' || *p == ',' || *p == '\t') p++;
            const char *start = p;
            while (*p && *p != ',') p++;
            const char *end = p;
            while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
            if (end - start == 1 && *start == '*') return true;
            if (etag && end > start && etag_matches(start, (size_t)(end - start), etag))
                return true;
        }
        return false; /* If-Modified-Since is ignored when If-None-Match is present */
    }
    const char *ims = header_list_get(req, "if-modified-since");
    const char *lm = ims ? cache_object_header(obj, "last-modified") : NULL;
    if (ims && lm) {
        time_t since = curl_getdate(ims, NULL), modified = curl_getdate(lm, NULL);
        return since > 0 && modified > 0 && modified <= since;
    }
    return false;
}
