/*
 * http_range - byte ranges served from a stored complete response (RFC 9110 §14).
 *
 * http_range_parse reads a Range field for a representation of a known length and
 * says what to answer: the whole response (no Range, another unit, a field that does
 * not parse, or several ranges), one range (206 with Content-Range), or 416 (no range
 * overlaps the representation).  Several ranges are answered with the whole 200
 * response, which RFC 9110 §14.2 allows ("a server MAY ignore the Range header
 * field"); cachegw never builds multipart/byteranges.  A Range with more than
 * HTTP_RANGE_MAX_SPECS ranges, or a number past 2^63, is ignored the same way (bounded
 * work, docs/design.md invariant 5).
 *
 * http_range_if_range decides If-Range (§13.1.5): the range applies only when the
 * field is a strong entity tag equal (strong comparison) to the stored ETag, or an
 * HTTP-date exactly equal to the stored Last-Modified; anything else (weak tags, other
 * values, no validator stored) means the whole response.
 *
 * Pure functions of their arguments.  Thread-safety: stateless.
 */
#ifndef CACHEGW_HTTP_RANGE_H
#define CACHEGW_HTTP_RANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_RANGE_MAX_SPECS 100

enum http_range_kind {
    HTTP_RANGE_FULL,          /* answer the whole response (200) */
    HTTP_RANGE_SINGLE,        /* answer 206 with bytes [first, last] */
    HTTP_RANGE_UNSATISFIABLE, /* answer 416 with Content-Range: bytes * / len */
};

struct http_range {
    uint64_t first; /* inclusive */
    uint64_t last;  /* inclusive, < the representation's length */
};

/* value: the request's combined Range field (NULL = absent).  len: the stored body's
 * length.  On HTTP_RANGE_SINGLE, *out holds the range. */
enum http_range_kind http_range_parse(const char *value, uint64_t len, struct http_range *out);

/* True when a Range may be honoured given the request's If-Range (NULL = absent: true)
 * and the stored ETag / Last-Modified (each NULL when not stored). */
bool http_range_if_range(const char *if_range, const char *etag, const char *last_modified);

/* Writes the Content-Range value for a 206 ("bytes 0-99/1000") or, with r NULL, for a
 * 416 ("bytes * /1000", without the space).  Returns 0, or -1 when cap is too small. */
int http_range_content_range(char *buf, size_t cap, const struct http_range *r, uint64_t len);

#endif
