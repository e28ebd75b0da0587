/*
 * request_validator - the one gate every client request passes before anything
 * is keyed, planned or forwarded: RFC 9112 / RFC 9110 message syntax, framing
 * that another HTTP hop could read differently, and the gateway's own size
 * bounds.  The HTTP parser (h1_parse.h) has already split the request into method, target,
 * version and header fields; this module refuses what it let through.
 *
 * The rules (docs/design.md and the README list them for operators):
 *   - method: a token of upper-case letters, digits and '-', '_' (all
 *     registered methods are upper-case; methods are case-sensitive);
 *   - target: origin-form ("/" path [ "?" query ]) of visible ASCII only: no
 *     control bytes, no bytes >= 0x80, no space, no '#' (a fragment is not
 *     part of the request-target grammar), or "*" for OPTIONS; bounded length
 *     and query parameter count (414 past them);
 *   - version: HTTP/1.0 or HTTP/1.1;
 *   - field names: tokens (so no whitespace before the colon, no CR);
 *     field values: no CR, LF, NUL or other control bytes except HTAB;
 *   - framing: at most one Content-Length, a valid decimal; Transfer-Encoding
 *     and Content-Length together are refused; a Transfer-Encoding other than
 *     "chunked" is 501; Transfer-Encoding in an HTTP/1.0 request is refused;
 *   - Host: exactly one in HTTP/1.1, at most one in HTTP/1.0;
 *   - header block: bounded total size and field count (431 past them).
 *
 * Pure functions; thread-safety: stateless, call from any thread.
 */
#ifndef CACHEGW_REQUEST_VALIDATOR_H
#define CACHEGW_REQUEST_VALIDATOR_H

#include <stdbool.h>
#include <stddef.h>

#include "headers.h" /* struct http_header */

struct request_limits {
    size_t max_target_bytes;  /* request-target length; 414 past it */
    size_t max_query_params;  /* '&'-separated query parameters; 414 past it */
    size_t max_header_bytes;  /* sum of name + value + 4 over all fields; 431 past it */
    size_t max_header_fields; /* number of fields; 431 past it */
};

struct request_verdict {
    int status;         /* 0 = valid; otherwise 400, 414, 431 or 501 */
    const char *reason; /* a short static phrase for the client and the log */
};

/* Checks one request.  method, target and version are NUL-terminated as
 * the parser hands them over (target is the raw request-target, query
 * included); headers are the fields in arrival order with their names as
 * received.  Returns 0 when valid, else the status also stored in out. */
int request_validate(const char *method, const char *target, const char *version,
                     const struct http_header *headers, size_t n_headers,
                     const struct request_limits *limits, struct request_verdict *out);

/* The same checks on a byte string that need not be NUL-terminated: true when
 * s[0..len) is a valid token (RFC 9110 §5.6.2). */
bool request_is_token(const char *s, size_t len);

/* True when s[0..len) may be a field value: visible ASCII, obs-text (>= 0x80),
 * SP and HTAB only (RFC 9110 §5.5).  Leading/trailing whitespace is allowed
 * here; the parser strips it. */
bool request_is_field_value(const char *s, size_t len);

#endif
