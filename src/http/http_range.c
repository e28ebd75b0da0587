/* http_range.c - see http_range.h. */
#include "http_range.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_date.h"

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

/* Reads 1DIGIT*; false when there is no digit or the value passes 2^63. */
static bool read_u64(const char **pp, uint64_t *out)
{
    const char *p = *pp;
    if (*p < '0' || *p > '9') return false;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_C(1) << 63) / 10) return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *pp = p;
    *out = v;
    return true;
}

enum http_range_kind http_range_parse(const char *value, uint64_t len, struct http_range *out)
{
    if (value == NULL) return HTTP_RANGE_FULL;
    const char *p = skip_ows(value);
    /* Only the bytes unit is understood; others are ignored (§14.2). */
    if (strncasecmp(p, "bytes", 5) != 0) return HTTP_RANGE_FULL;
    p = skip_ows(p + 5);
    if (*p != '=') return HTTP_RANGE_FULL;
    p++;
    int specs = 0, satisfiable = 0;
    struct http_range r = {0, 0};
    for (;;) {
        p = skip_ows(p);
        if (*p == ',') { /* empty list elements are allowed (RFC 9110 §5.6.1) */
            p++;
            continue;
        }
        if (*p == '\0') break;
        if (++specs > HTTP_RANGE_MAX_SPECS) return HTTP_RANGE_FULL;
        uint64_t a, b;
        bool sat;
        struct http_range cur;
        if (*p == '-') { /* suffix-range: the last b bytes */
            p++;
            if (!read_u64(&p, &b)) return HTTP_RANGE_FULL;
            sat = b > 0 && len > 0;
            cur.first = b >= len ? 0 : len - b;
            cur.last = len > 0 ? len - 1 : 0;
        } else {
            if (!read_u64(&p, &a) || *p != '-') return HTTP_RANGE_FULL;
            p++;
            bool has_last = *p >= '0' && *p <= '9';
            if (has_last && !read_u64(&p, &b)) return HTTP_RANGE_FULL;
            if (has_last && b < a) return HTTP_RANGE_FULL; /* invalid: ignored (§14.1.1) */
            sat = a < len;
            cur.first = a;
            cur.last = !has_last || b >= len ? (len > 0 ? len - 1 : 0) : b;
        }
        p = skip_ows(p);
        if (*p != ',' && *p != '\0') return HTTP_RANGE_FULL;
        if (sat) {
            satisfiable++;
            r = cur;
        }
    }
    if (specs == 0) return HTTP_RANGE_FULL;
    if (satisfiable == 0) return HTTP_RANGE_UNSATISFIABLE;
    /* Several ranges: the whole response (§14.2 allows ignoring Range). */
    if (satisfiable > 1) return HTTP_RANGE_FULL;
    *out = r;
    return HTTP_RANGE_SINGLE;
}

bool http_range_if_range(const char *if_range, const char *etag, const char *last_modified)
{
    if (if_range == NULL) return true;
    const char *v = skip_ows(if_range);
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n > 0 && v[0] == '"') {
        /* An entity tag: strong comparison, so neither may be weak. */
        if (etag == NULL || etag[0] != '"') return false;
        return strlen(etag) == n && strncmp(etag, v, n) == 0;
    }
    if (n >= 2 && v[0] == 'W' && v[1] == '/') return false;
    if (last_modified == NULL) return false;
    int64_t a, b;
    char date[64];
    if (n >= sizeof date) return false;
    memcpy(date, v, n);
    date[n] = '\0';
    return http_date_parse(date, &a) && http_date_parse(last_modified, &b) && a == b;
}

int http_range_content_range(char *buf, size_t cap, const struct http_range *r, uint64_t len)
{
    int n = r ? snprintf(buf, cap, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, r->first, r->last,
                         len)
              : snprintf(buf, cap, "bytes */%" PRIu64, len);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}
