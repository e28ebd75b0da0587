/*
 * headers - an owned list of HTTP header fields, and the proxy's header rules.
 *
 * A header_list stores (lower-cased name, value) pairs in arrival order and owns
 * their strings.  headers_is_hop_by_hop() implements RFC 9110 §7.6.1: the fixed
 * hop-by-hop set plus every field named in the message's Connection header;
 * those never cross the proxy in either direction.
 *
 * A field may arrive on several lines.  For a list-valued field (Cache-Control,
 * Pragma, Vary, Connection, ...) those lines are one list (RFC 9110 §5.3):
 * anything that decides on such a field reads header_list_get_all(), never
 * header_list_get(), which sees the first line only.  The combined value goes
 * into a caller's bounded buffer; a value that does not fit is reported (-1)
 * and callers must then decide conservatively (not storable, not served).
 *
 * Ownership: header_list_add copies its arguments; header_list_free releases
 * everything.  Thread-safety: none; a list belongs to one request at a time.
 */
#ifndef CACHEGW_HEADERS_H
#define CACHEGW_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <strings.h>

/* One header field; a stored cache_object's headers are an array of these. */
struct http_header {
    const char *name;  /* lower-case, NUL-terminated */
    const char *value; /* NUL-terminated */
};

struct header_list {
    struct http_header *items; /* owned: one malloc block per field, the name then the
                                  value (free the name only) */
    size_t n;
    size_t cap;
};

/* True when name is lower (a lower-case field name), ignoring case.  The first byte is
 * compared inline, since most names differ there: per-request loops over the fields use
 * it instead of a strcasecmp per field. */
static inline bool headers_name_is(const char *name, const char *lower)
{
    return (name[0] | 0x20) == lower[0] && strcasecmp(name, lower) == 0;
}

int header_list_add(struct header_list *l, const char *name, const char *value);
int header_list_addn(struct header_list *l, const char *name, size_t name_len,
                     const char *value, size_t value_len);
/* First value for name (case-insensitive), or NULL. */
const char *header_list_get(const struct header_list *l, const char *name);
/* The combined value of every line of name (case-insensitive), in arrival
 * order, joined by ", " (RFC 9110 §5.3), written NUL-terminated to out.
 * Returns the number of lines combined (0 when absent: out is ""), or -1 when
 * the combined value does not fit in cap bytes (out is "" then).  Empty lines
 * add nothing. */
int header_list_get_all(const struct header_list *l, const char *name, char *out, size_t cap);
/* The same over a plain array of fields (a stored cache_object's headers), with
 * the separator given (", " for lists; " " for space-separated fields such as
 * Surrogate-Key). */
int headers_get_all(const struct http_header *items, size_t n, const char *name, const char *sep,
                    char *out, size_t cap);
/* Removes every field with this name; returns how many were removed. */
size_t header_list_remove(struct header_list *l, const char *name);
void header_list_free(struct header_list *l);

/* True when name must not be forwarded: the RFC 9110 §7.6.1 set (connection,
 * keep-alive, te, transfer-encoding, upgrade, trailer, proxy-*), or a token
 * of connection_value (the message's Connection header, may be NULL). */
bool headers_is_hop_by_hop(const char *name, const char *connection_value);

/* True when the comma-separated token list (e.g. a Cache-Control or Connection
 * value) contains token, compared case-insensitively; a "token=value" element
 * matches too. */
bool headers_has_token(const char *list, const char *token);

/* Parses "token=N" out of a comma-separated list (e.g. max-age=60).  Returns
 * true and *out when present and a valid non-negative integer.  Values are
 * delta-seconds: past HEADERS_DELTA_MAX they saturate to it (RFC 9111 §1.2.2),
 * so any later arithmetic on them (x 1000 for milliseconds) cannot overflow. */
#define HEADERS_DELTA_MAX 2147483648LL /* 2^31 */
bool headers_token_int(const char *list, const char *token, long long *out);

#endif
