/* cache_rules.c - see cache_rules.h. */
#include "cache_rules.h"

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

static bool status_default_cacheable(int status) { return status == 200 || status == 203; }

/* RFC 9110 §15.1: statuses a cache may store when freshness is explicit. */
static bool status_storable(int status)
{
    switch (status) {
    case 200: case 203: case 204: case 300: case 301: case 308:
    case 404: case 405: case 410: case 414: case 501:
        return true;
    default:
        return false;
    }
}

void cache_rules_response(int status, const struct header_list *resp, size_t body_len,
                          int64_t response_time_ms, int64_t default_ttl_ms,
                          size_t max_value_bytes, const struct store_overrides *ov,
                          struct store_decision *out)
{
    static const struct store_overrides NONE = {-1, -1, -1, false, false};
    if (ov == NULL) ov = &NONE;
    memset(out, 0, sizeof *out);
    const char *cc = header_list_get(resp, "cache-control");
    long long v;
    if (!status_storable(status)) {
        out->reason = "status";
        return;
    }
    if (headers_has_token(cc, "no-store") && !ov->ignore_no_store) {
        out->reason = "no-store";
        return;
    }
    if (headers_has_token(cc, "private") && !ov->allow_private) {
        out->reason = "private";
        return;
    }
    if (headers_has_token(cc, "no-cache") && ov->ttl_ms < 0) {
        out->reason = "no-cache";
        return;
    }
    if (header_list_get(resp, "set-cookie") && !ov->ignore_no_store) {
        out->reason = "set-cookie";
        return;
    }
    const char *vary = header_list_get(resp, "vary");
    if (vary && headers_has_token(vary, "*")) {
        out->reason = "vary-star";
        return;
    }
    if (body_len > max_value_bytes) {
        out->reason = "too-big";
        return;
    }

    /* Age: the larger of the upstream's Age and the apparent age from Date. */
    int64_t age_value = 0, apparent = 0;
    const char *age = header_list_get(resp, "age");
    if (age) age_value = strtoll(age, NULL, 10);
    if (age_value < 0) age_value = 0;
    const char *date = header_list_get(resp, "date");
    time_t date_s = date ? curl_getdate(date, NULL) : -1;
    if (date_s > 0) {
        int64_t d = response_time_ms / 1000 - (int64_t)date_s;
        apparent = d > 0 ? d : 0;
    }
    out->initial_age_s = age_value > apparent ? age_value : apparent;

    int64_t ttl_ms = -1;
    if (ov->ttl_ms >= 0) ttl_ms = ov->ttl_ms;
    else if (headers_token_int(cc, "s-maxage", &v)) ttl_ms = (int64_t)v * 1000;
    else if (headers_token_int(cc, "max-age", &v)) ttl_ms = (int64_t)v * 1000;
    else {
        const char *expires = header_list_get(resp, "expires");
        if (expires) {
            time_t e = curl_getdate(expires, NULL);
            int64_t base = date_s > 0 ? (int64_t)date_s : response_time_ms / 1000;
            ttl_ms = e > 0 && (int64_t)e > base ? ((int64_t)e - base) * 1000 : 0;
        }
    }
    if (ttl_ms < 0) {
        if (!status_default_cacheable(status) || default_ttl_ms <= 0) {
            out->reason = "no-freshness";
            return;
        }
        ttl_ms = default_ttl_ms;
    }
    if (headers_token_int(cc, "stale-while-revalidate", &v)) out->swr_ms = (int64_t)v * 1000;
    if (headers_token_int(cc, "stale-if-error", &v)) out->sie_ms = (int64_t)v * 1000;
    if (ov->swr_ms >= 0) out->swr_ms = ov->swr_ms;
    if (ov->sie_ms >= 0) out->sie_ms = ov->sie_ms;
    /* A policy's ttl counts from when we received the response. */
    if (ov->ttl_ms >= 0) out->initial_age_s = 0;
    if (ttl_ms <= out->initial_age_s * 1000 && out->swr_ms == 0 && out->sie_ms == 0) {
        out->reason = "stale-on-arrival";
        return;
    }
    out->ttl_ms = ttl_ms;
    out->store = true;
}

bool cache_rules_header_storable(const char *name, const char *connection_value)
{
    static const char *const SKIP[] = {"content-length", "age", "set-cookie", "x-cache",
                                       "cache-status", "date"};
    for (size_t i = 0; i < sizeof SKIP / sizeof SKIP[0]; i++)
        if (strcasecmp(name, SKIP[i]) == 0) return false;
    return !headers_is_hop_by_hop(name, connection_value);
}

int cache_rules_variant_key(const char *base_key, const char *vary,
                            const struct header_list *req, char *out, size_t out_len)
{
    int n = snprintf(out, out_len, "%s#vary", base_key);
    if (n < 0 || (size_t)n >= out_len) return -1;
    size_t off = (size_t)n;
    const char *p = vary;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t') p++;
        if (p == start) continue;
        char name[128];
        size_t len = (size_t)(p - start) < sizeof name - 1 ? (size_t)(p - start) : sizeof name - 1;
        for (size_t i = 0; i < len; i++) {
            char c = start[i];
            name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        name[len] = '\0';
        const char *v = header_list_get(req, name);
        n = snprintf(out + off, out_len - off, "|%s=%s", name, v ? v : "");
        if (n < 0 || (size_t)n >= out_len - off) return -1;
        off += (size_t)n;
    }
    return 0;
}

void cache_rules_request_cc(const struct header_list *req, struct request_cc *out)
{
    const char *cc = header_list_get(req, "cache-control");
    long long v;
    out->max_age_s = headers_token_int(cc, "max-age", &v) ? (int64_t)v : -1;
    out->min_fresh_s = headers_token_int(cc, "min-fresh", &v) ? (int64_t)v : -1;
    if (headers_token_int(cc, "max-stale", &v)) out->max_stale_s = (int64_t)v;
    else out->max_stale_s = headers_has_token(cc, "max-stale") ? INT64_MAX : -1;
    out->no_cache = headers_has_token(cc, "no-cache");
    if (cc == NULL) out->no_cache = headers_has_token(header_list_get(req, "pragma"), "no-cache");
    out->no_store = headers_has_token(cc, "no-store");
    out->only_if_cached = headers_has_token(cc, "only-if-cached");
}

static bool forbids_stale(const struct cache_object *obj)
{
    const char *cc = cache_object_header(obj, "cache-control");
    return headers_has_token(cc, "must-revalidate") || headers_has_token(cc, "proxy-revalidate") ||
           headers_has_token(cc, "no-cache");
}

enum usability cache_rules_usability(const struct cache_object *obj, const struct request_cc *cc,
                                     int64_t now_ms)
{
    int64_t age_ms = now_ms - obj->meta.stored_at_ms + obj->meta.initial_age_s * 1000;
    if (age_ms < 0) age_ms = 0;
    int64_t left_ms = obj->meta.ttl_ms - age_ms; /* > 0 while fresh */
    if (cc->no_cache) return USE_REVALIDATE;
    bool fresh = left_ms > 0;
    if (cc->max_age_s >= 0 && age_ms > cc->max_age_s * 1000) fresh = false;
    if (cc->min_fresh_s >= 0 && left_ms < cc->min_fresh_s * 1000) fresh = false;
    if (fresh) return USE_FRESH;
    if (forbids_stale(obj)) return USE_REVALIDATE;
    if (cc->max_stale_s >= 0 && left_ms <= 0 &&
        (cc->max_stale_s == INT64_MAX || -left_ms <= cc->max_stale_s * 1000))
        return USE_STALE_OK;
    /* The client's own max-age forbids stale answers too. */
    if (cc->max_age_s >= 0 || cc->min_fresh_s >= 0) return USE_REVALIDATE;
    if (left_ms <= 0 && -left_ms < obj->meta.swr_ms) return USE_SWR;
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

bool cache_rules_not_modified(const struct header_list *req, const struct cache_object *obj)
{
    if (obj->status != 200) return false;
    const char *inm = header_list_get(req, "if-none-match");
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
            if (etag && end > start && etag_weak_eq(start, (size_t)(end - start), etag))
                return true;
        }
        return false; /* If-Modified-Since is ignored when If-None-Match is present */
    }
    const char *ims = header_list_get(req, "if-modified-since");
    const char *lm = cache_object_header(obj, "last-modified");
    if (ims && lm) {
        time_t since = curl_getdate(ims, NULL), modified = curl_getdate(lm, NULL);
        return since > 0 && modified > 0 && modified <= since;
    }
    return false;
}
