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
    /* When a targeted field (RFC 9213) decided: its combined value, which the caller
     * stores as CACHE_RULES_EFFECTIVE_CC_HEADER; "" when Cache-Control decided. */
    char effective_cc[512];
};

/* Stored beside a response whose freshness a targeted field decided: the directives
 * that reuse decisions (no-cache, must-revalidate, ...) read instead of Cache-Control.
 * The x-cachegw- prefix keeps it from clients and from upstream spoofing. */
#define CACHE_RULES_EFFECTIVE_CC_HEADER "x-cachegw-cc"

/* What a route policy says about storage; -1 / false = not said. */
struct store_overrides {
    int64_t ttl_ms;        /* replaces the upstream's freshness lifetime */
    int64_t swr_ms;
    int64_t sie_ms;
    bool allow_private;    /* the key is per user: Cache-Control: private may be stored */
    bool ignore_no_store;  /* store even no-store / Set-Cookie responses */
};

/* What the gateway's configuration says about storage (cache_rules_response_ex). */
struct cache_rules_opts {
    int64_t default_ttl_ms;      /* DEFAULT_TTL: 200/203 without explicit freshness and without
                                    a Last-Modified heuristic; 0 disables it */
    size_t max_value_bytes;      /* MAX_VALUE_SIZE: larger bodies are not stored ("too-big") */
    int heuristic_percent;       /* HEURISTIC_FRACTION: 0-100 % of (Date - Last-Modified) as the
                                    freshness of a heuristically cacheable status; 0 disables */
    int64_t heuristic_max_ms;    /* HEURISTIC_MAX: the bound of that heuristic */
    const char *targeted_field;  /* TARGETED_CACHE_CONTROL: own RFC 9213 field, lower-case,
                                    above CDN-Cache-Control; NULL or "" = none */
    bool request_authorization;  /* the forwarded request carried Authorization (§3.5) */
};

/* Response side (RFC 9111 §3, §4.2).  In order:
 *  - 1xx, 206 and 304 are never stored (a 304 is merged: cache_rules_merge_304); any other
 *    final status 200-599 may be;
 *  - the directives come from the own targeted field, else CDN-Cache-Control, else
 *    Cache-Control (RFC 9213 §2.1: a targeted field present overrides Cache-Control and
 *    Expires); out->effective_cc names the field used when it was a targeted one, and the
 *    caller stores its value as CACHE_RULES_EFFECTIVE_CC_HEADER so later reuse decisions see
 *    the same directives;
 *  - must-understand: stored (no-store ignored) when the status is one RFC 9110 defines,
 *    never otherwise;
 *  - no-store, private (unless ov->allow_private), Set-Cookie (unless ov->ignore_no_store),
 *    Vary: * (any member, any line), a body over max_value_bytes: not stored;
 *  - a response to a request with Authorization only with public, s-maxage or
 *    must-revalidate in Cache-Control (§3.5), unless the route keys per user;
 *  - no-cache (without a policy ttl): stored with a freshness lifetime of 0 so every use
 *    revalidates (§5.2.2.4), and only when it has a validator (without one a
 *    revalidation is a full fetch, so storing would serve nothing);
 *  - freshness: policy ttl, s-maxage, max-age, Expires (invalid or repeated = expired);
 *    else, for a heuristically cacheable status (RFC 9110 §15.1) or with public, a fraction
 *    of (Date - Last-Modified) bounded by heuristic_max_ms; else DEFAULT_TTL for 200/203. */
void cache_rules_response_ex(int status, const struct header_list *resp, size_t body_len,
                             int64_t response_time_ms, const struct cache_rules_opts *opts,
                             const struct store_overrides *ov, struct store_decision *out);

/* The same with only DEFAULT_TTL and MAX_VALUE_SIZE configured (no heuristic, no own
 * targeted field, no Authorization).  default_ttl_ms applies to 200/203 responses without
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
/* RFC 9111 §3.2: the stored response updated by a 304.  out (empty on entry) receives
 * old's fields, each replaced by the 304's fields of that name, plus the 304's new fields;
 * except Content-Length, Content-Encoding, Content-Range, Transfer-Encoding (the stored
 * body depends on them and the 304 has no body), hop-by-hop fields, Set-Cookie and the
 * gateway's own x-cachegw- fields, which never come from the 304.  The stored Date is
 * replaced by the 304's, or dropped when it has none (it was received now).  Returns 0, or -1 when
 * out of memory (out is then partially filled; the caller frees it). */
int cache_rules_merge_304(const struct cache_object *old, const struct header_list *fresh,
                          struct header_list *out);

/* True for a stored or upstream field that is not passed on to a client: the targeted
 * cache-control fields the gateway consumes (CDN-Cache-Control, the own one named by
 * targeted_field, may be NULL), Surrogate-Control, Surrogate-Key, and x-cachegw- fields. */
bool cache_rules_header_consumed(const char *name, const char *targeted_field);

/* True when a request with Authorization may still lead to a stored response: it is
 * forwarded (never answered from a shared entry, docs/design.md invariant 6), and its
 * response is stored when cache_rules_response_ex allows (public, s-maxage,
 * must-revalidate).  False when it also carries Cookie (a deliberate refusal). */
bool cache_rules_request_store_only(const char *method, const struct header_list *req);

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
 * fields are read over all their lines and normalised (RFC 9111 §4.1): surrounding
 * whitespace always; in Accept, Accept-Charset, Accept-Encoding and Accept-Language
 * whitespace anywhere and empty elements; in Accept-Encoding and Accept-Language also
 * case and order.  Every store and every lookup builds variant keys here.  Returns 0,
 * or -1 if base_key is not a valid key or the result does not fit. */
int cache_rules_variant_key(const char *base_key, const char *vary,
                            const struct header_list *req, char *out, size_t out_len);

/* True for a header that is stored with a cached response; false for
 * hop-by-hop fields, framing (Content-Length, Transfer-Encoding), Age (it is
 * recomputed), Set-Cookie and the gateway's own status fields. */
bool cache_rules_header_storable(const char *name, const char *connection_value);

#endif
