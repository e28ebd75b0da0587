/*
 * cache_rules - the HTTP caching decisions that need no policy: may a request
 * be answered from a shared cache, may a response be stored, and for how long
 * (RFC 9111 freshness: s-maxage, max-age, Expires, Age/Date, with a default TTL
 * for successful responses that carry no freshness information).
 *
 * Every list-valued field (Cache-Control, Pragma, Vary, If-None-Match) is read
 * over all its lines (RFC 9110 §5.3); one too long to read is treated
 * conservatively (not stored, not answered from cache).  Delta-seconds are
 * saturated at 2^31 (RFC 9111 §1.2.2) and the freshness arithmetic saturates,
 * so no header value can overflow it into the opposite decision.
 *
 * Pure functions of their arguments (time is passed in).
 * Thread-safety: stateless; call from any thread.
 */
#ifndef CACHEGW_CACHE_RULES_H
#define CACHEGW_CACHE_RULES_H

#include <stdbool.h>
#include <stdint.h>

#include "cache_object.h"
#include "headers.h"

/* Request side.  Returns true when a GET/HEAD may use the shared cache;
 * otherwise *reason says why ("method", "authorization", "cookie"). */
bool cache_rules_request_cacheable(const char *method, const struct header_list *req,
                                   const char **reason);

struct store_decision {
    bool store;
    int64_t ttl_ms;        /* freshness lifetime */
    int64_t initial_age_s; /* RFC 9111 §4.2.3 corrected initial age */
    int64_t swr_ms;        /* Cache-Control stale-while-revalidate */
    int64_t sie_ms;        /* Cache-Control stale-if-error */
    const char *reason;    /* why not stored, for logs and Cache-Status */
};

/* What a route policy says about storage; -1 / false = not said. */
struct store_overrides {
    int64_t ttl_ms;        /* replaces the upstream's freshness lifetime */
    int64_t swr_ms;
    int64_t sie_ms;
    bool allow_private;    /* the key is per user: Cache-Control: private may be stored */
    bool ignore_no_store;  /* store even no-store / Set-Cookie responses */
};

/* Response side.  default_ttl_ms applies to 200/203 responses without
 * explicit freshness (0 disables that).  body_len is compared with
 * max_value_bytes; over it the response is not stored (reason "too-big").
 * ov (may be NULL) carries a route policy's explicit settings: its ttl
 * applies to any storable status and wins over Cache-Control max-age,
 * no-cache and Expires, but never over no-store/Set-Cookie (unless
 * ignore_no_store) or private (unless allow_private). */
void cache_rules_response(int status, const struct header_list *resp, size_t body_len,
                          int64_t response_time_ms, int64_t default_ttl_ms,
                          size_t max_value_bytes, const struct store_overrides *ov,
                          struct store_decision *out);

/* Request Cache-Control directives (RFC 9111 §5.2.1); -1 = absent. */
struct request_cc {
    int64_t max_age_s;
    int64_t min_fresh_s;
    int64_t max_stale_s; /* INT64_MAX for a bare max-stale */
    bool no_cache;       /* also set by Pragma: no-cache without Cache-Control */
    bool no_store;
    bool only_if_cached;
};
void cache_rules_request_cc(const struct header_list *req, struct request_cc *out);

enum usability {
    USE_FRESH,       /* answer from cache */
    USE_STALE_OK,    /* stale, but the client accepts it (max-stale) */
    USE_SWR,         /* stale within stale-while-revalidate: answer, refresh in background */
    USE_REVALIDATE,  /* must go upstream (conditionally when it has validators) */
};
/* How a stored object may be used for a request at wall time now_ms.
 * must-revalidate / proxy-revalidate / no-cache in the stored response forbid
 * any stale use. */
enum usability cache_rules_usability(const struct cache_object *obj, const struct request_cc *cc,
                                     int64_t now_ms);
/* True when obj may be served stale because the upstream failed (within its
 * stale-if-error window and not must-revalidate). */
bool cache_rules_stale_if_error(const struct cache_object *obj, int64_t now_ms);
/* True when the request's If-None-Match / If-Modified-Since match obj, so a
 * 304 may answer it (RFC 9110 §13.1.1, §13.1.3; weak ETag comparison). */
bool cache_rules_not_modified(const struct header_list *req, const struct cache_object *obj);

/* Vary support: a response with Vary is stored under a variant key made of
 * the base key and the request's values of the varied fields; the base key
 * holds a marker object whose CACHE_RULES_VARY_HEADER lists the fields. */
#define CACHE_RULES_VARY_HEADER "x-cachegw-vary"

/* Writes the variant key for base_key into out (cache_key_variant, which owns
 * the format).  vary is the response's combined Vary value; the request's
 * fields are read over all their lines.  Returns 0, or -1 if base_key is not
 * a valid key or the result does not fit. */
int cache_rules_variant_key(const char *base_key, const char *vary,
                            const struct header_list *req, char *out, size_t out_len);

/* True for a header that is stored with a cached response; false for
 * hop-by-hop fields, framing (Content-Length, Transfer-Encoding), Age (it is
 * recomputed), Set-Cookie and the gateway's own status fields. */
bool cache_rules_header_storable(const char *name, const char *connection_value);

#endif
