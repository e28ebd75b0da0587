/*
 * cache_object - one stored HTTP response: immutable once built, reference-counted.
 *
 * A cache_object holds everything needed to answer a request from cache: status,
 * the response headers kept for storage (hop-by-hop and per-connection headers
 * already removed), the body, and the timing metadata (stored-at, freshness
 * lifetime, stale windows).  It is allocated as a single block.  A hit hands the
 * body pointer straight to the answer (h1_response.h) and releases its reference when the
 * response is destroyed, so the body is never copied on the hit path.
 *
 * The versioned binary encoding (cache_object_encode / cache_object_decode) is
 * what the Redis tier stores.  Decoding validates every length; a value that
 * fails to decode is reported as an error, never partially trusted.
 *
 * Ownership: cache_object_build returns one reference.  cache_object_ref adds
 * one; cache_object_unref releases one and frees on the last.
 * Thread-safety: immutable after build; the refcount is atomic, so objects may
 * be shared across threads freely.
 */
#ifndef CACHEGW_CACHE_OBJECT_H
#define CACHEGW_CACHE_OBJECT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "headers.h" /* struct http_header */

/* Timing and identity metadata, all times in wall-clock milliseconds since the
 * epoch (so they survive a trip through Redis to another instance). */
struct cache_meta {
    int64_t stored_at_ms;     /* when the response was received from upstream */
    int64_t initial_age_s;    /* RFC 9111 §4.2.3 corrected_initial_age at store time */
    int64_t ttl_ms;           /* freshness lifetime; fresh while age < ttl */
    int64_t swr_ms;           /* stale-while-revalidate window after ttl */
    int64_t sie_ms;           /* stale-if-error window after ttl */
    uint64_t gen;             /* store generation / invalidation sequence at store time */
};

/* The gateway's own metadata of a stored entry, kept apart from its response
 * header fields: typed, never sent to a client, never seen by code that walks
 * the response's fields.  On the wire (and in cache_object_build's input) each
 * travels as a reserved "x-cachegw-" field; cache_key.h lists the names. */
enum cache_field {
    CACHE_FIELD_VARY,     /* a Vary marker: the Vary field list ("x-cachegw-vary") */
    CACHE_FIELD_TAGS,     /* tags (surrogate keys), space-separated ("x-cachegw-tags") */
    CACHE_FIELD_CC,       /* the targeted directives that decided freshness ("x-cachegw-cc") */
    CACHE_FIELD_ENCODINGS, /* the layout of the stored encodings ("x-cachegw-enc") */
    CACHE_FIELD__COUNT
};

struct cache_object {
    atomic_int refs;
    int status;
    struct cache_meta meta;
    size_t n_headers;            /* the response's header fields only */
    struct http_header *headers; /* points inside the same allocation; the
                                    internal fields follow at [n_headers ..
                                    n_headers + n_internal) */
    size_t n_internal;
    const char *fields[CACHE_FIELD__COUNT]; /* typed metadata values, or NULL */
    const char *key;             /* NUL-terminated, inside the allocation */
    size_t key_len;
    const char *body;            /* inside the allocation; may be empty */
    size_t body_len;
    size_t charge;               /* total bytes of the allocation (for byte bounds) */
    int64_t keep_ms;             /* extra retention past the windows (derived, not stored):
                                    an entry with validators is kept so it can be
                                    revalidated with a conditional request */
    /* Derived data a front end keeps with the object, e.g. the HTTP writer's last
     * built answer (docs/design.md, "Hit path"): never stored, freed with the object
     * by attach_free.  Read and replaced only under cache_object_attach_lock. */
    atomic_flag attach_busy;
    void *attach;
    void (*attach_free)(void *);
    int64_t attach_sec;   /* the front end's own counters, under the same lock (e.g. */
    uint32_t attach_hits; /* hits in one second, to keep answers only for hot objects) */
};

/* Most headers an object may carry; decode rejects more. */
#define CACHE_OBJECT_MAX_HEADERS 1024

/* Builds an object copying key, headers and body.  Header names are stored
 * lower-cased.  Returns NULL on allocation failure, and also when the input
 * could not survive an encode/decode round trip: status outside 100..999, a
 * header name that is not an RFC 9110 token, a header value containing CR, LF,
 * more than CACHE_OBJECT_MAX_HEADERS headers, a key or header string of 4 GiB or
 * more, or a negative (or absurdly large, > 2^52 ms) time or duration in meta, or
 * initial_age_s > 2^31.  Callers treat NULL as "do not cache". */
struct cache_object *cache_object_build(const char *key, size_t key_len, int status,
                                        const struct http_header *headers, size_t n_headers,
                                        const char *body, size_t body_len,
                                        const struct cache_meta *meta);

struct cache_object *cache_object_ref(struct cache_object *obj);
/* The attachment's lock: a spin lock held for a few instructions by whoever
 * reads or replaces obj->attach (any thread). */
void cache_object_attach_lock(struct cache_object *obj);
void cache_object_attach_unlock(struct cache_object *obj);
void cache_object_unref(struct cache_object *obj);

/* Returns the value of the first header named name (case-insensitive), or NULL.
 * An internal "x-cachegw-" name reads the metadata, any other the response's
 * fields. */
const char *cache_object_header(const struct cache_object *obj, const char *name);

/* The typed metadata value f, or NULL. */
const char *cache_object_field(const struct cache_object *obj, enum cache_field f);

/* Current age in seconds at wall time now_ms (RFC 9111 §4.2.3). */
int64_t cache_object_age_s(const struct cache_object *obj, int64_t now_ms);
/* Fresh: age < ttl.  Within SWR / SIE windows: ttl <= age < ttl + window. */
int cache_object_is_fresh(const struct cache_object *obj, int64_t now_ms);
int cache_object_in_swr(const struct cache_object *obj, int64_t now_ms);
int cache_object_in_sie(const struct cache_object *obj, int64_t now_ms);
/* Milliseconds after which the object is useless: past ttl, both windows and,
 * for an entry with an ETag or Last-Modified, the revalidation retention
 * (keep_ms: as long again as its ttl, between 1 minute and 1 day). */
int64_t cache_object_expires_at_ms(const struct cache_object *obj);

/* Encodes into a freshly malloc'd buffer (*out, *out_len).  Returns 0 or -ENOMEM. */
int cache_object_encode(const struct cache_object *obj, char **out, size_t *out_len);
/* Decodes a buffer produced by cache_object_encode.  Returns 0 and one reference
 * in *out, or -EINVAL (bad magic/version/lengths) / -ENOMEM. */
int cache_object_decode(const char *buf, size_t len, struct cache_object **out);

#endif
