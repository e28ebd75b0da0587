/* fuzz_cache_rules - Cache-Control, Pragma, Vary, Expires, Date, Age and
 * conditional-request parsing, and the freshness arithmetic they feed.
 *
 * The input is a list of header lines ("name: value\n"); a first line that
 * starts with a digit sets the response status.  Each list is used both as a
 * response (cache_rules_response) and as a request (request Cache-Control,
 * usability of a stored object, If-None-Match / If-Modified-Since, the Vary
 * variant key).  UBSan aborts on any signed overflow (issue 8 item 23). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache_key.h"
#include "cache_rules.h"

static void parse_lines(const char *p, const char *end, struct header_list *l, int *status)
{
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (*status == 0 && p[0] >= '1' && p[0] <= '9') {
            *status = atoi(p) % 1000;
        } else if (colon && colon > p) {
            const char *v = colon + 1;
            while (v < eol && *v == ' ') v++;
            header_list_addn(l, p, (size_t)(colon - p), v, (size_t)(eol - v));
        }
        p = nl ? nl + 1 : end;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384) return 0;
    /* NUL bytes end a C string value early: map them to a visible byte so the
     * list stays what the parsers see. */
    char *buf = malloc(size + 1);
    if (buf == NULL) return 0;
    for (size_t i = 0; i < size; i++) buf[i] = data[i] ? (char)data[i] : '0';
    buf[size] = '\0';
    struct header_list l = {0};
    int status = 0;
    parse_lines(buf, buf + size, &l, &status);
    if (status < 100) status = 200;

    const int64_t now = 1700000000000LL;
    struct store_decision d;
    struct store_overrides ov = {.ttl_ms = -1, .swr_ms = -1, .sie_ms = -1};
    cache_rules_response(status, &l, 10, now, 60000, 1 << 20, &ov, &d);
    if (d.store && (d.ttl_ms < 0 || d.swr_ms < 0 || d.sie_ms < 0 || d.initial_age_s < 0))
        abort();
    ov.allow_private = ov.ignore_no_store = true;
    ov.ttl_ms = 5000;
    struct store_decision d2;
    cache_rules_response(status, &l, 10, now, 0, 1 << 20, &ov, &d2);

    /* Issue 12: the options (heuristic, an own targeted field, Authorization).  A stored
     * decision never has a negative lifetime, and its effective targeted directives are
     * a C string within their buffer. */
    struct cache_rules_opts o = {.default_ttl_ms = 0, .max_value_bytes = 1 << 20,
                                 .heuristic_percent = 10, .heuristic_max_ms = 86400000,
                                 .targeted_field = "x-targeted", .request_authorization = true};
    struct store_decision d3;
    cache_rules_response_ex(status, &l, 10, now, &o, NULL, &d3);
    if (d3.store && (d3.ttl_ms < 0 || d3.swr_ms < 0 || d3.sie_ms < 0)) abort();
    if (strnlen(d3.effective_cc, sizeof d3.effective_cc) == sizeof d3.effective_cc) abort();
    o.heuristic_percent = 100;
    o.heuristic_max_ms = -1; /* unbounded: the arithmetic must still saturate */
    cache_rules_response_ex(status, &l, 10, now, &o, &ov, &d3);

    struct request_cc cc;
    cache_rules_request_cc(&l, &cc);
    if (d.store) {
        struct http_header h[4];
        size_t n = 0;
        for (size_t i = 0; i < l.n && n < 4; i++) {
            if (!cache_rules_header_storable(l.items[i].name, NULL)) continue;
            h[n++] = l.items[i];
        }
        struct cache_meta meta = {.stored_at_ms = now, .initial_age_s = d.initial_age_s,
                                  .ttl_ms = d.ttl_ms, .swr_ms = d.swr_ms, .sie_ms = d.sie_ms};
        struct cache_object *obj = cache_object_build("k", 1, status, h, n, "b", 1, &meta);
        if (obj) {
            const int64_t clocks[] = {now, now + d.ttl_ms, INT64_MAX, INT64_MIN, 0};
            for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
                (void)cache_rules_usability(obj, &cc, clocks[i]);
                (void)cache_rules_stale_if_error(obj, clocks[i]);
            }
            (void)cache_rules_not_modified(&l, obj);
            /* The 304 merge never carries framing, coding or internal fields over. */
            struct header_list merged = {0};
            if (cache_rules_merge_304(obj, &l, &merged) == 0) {
                for (size_t i = 0; i < merged.n; i++) {
                    const char *mn = merged.items[i].name;
                    bool from_304 = header_list_get(&l, mn) != NULL;
                    if (from_304 && (strcasecmp(mn, "content-length") == 0 ||
                                     strcasecmp(mn, "transfer-encoding") == 0) &&
                        !cache_object_header(obj, mn))
                        abort();
                }
            }
            header_list_free(&merged);
            cache_object_unref(obj);
        }
    }
    /* The variant key: never longer than its buffer, always a variant of a
     * valid base, and the separator only where the format puts it. */
    char vary[4096];
    char key[CACHE_KEY_VARIANT_MAX];
    if (header_list_get_all(&l, "vary", vary, sizeof vary) > 0) {
        int n = cache_key_variant("GET:/x", vary, &l, key, sizeof key);
        if (n >= 0 && ((size_t)n != strlen(key) || !cache_key_is_variant(key, (size_t)n)))
            abort();
    }
    const char *cand = header_list_get(&l, "x-key");
    if (cand && cache_key_is_valid(cand, strlen(cand)) && strchr(cand, CACHE_KEY_SEP)) abort();
    header_list_free(&l);
    free(buf);
    return 0;
}
