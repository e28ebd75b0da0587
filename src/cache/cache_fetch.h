/*
 * cache_fetch - the one fetch-and-fill path: a cacheable miss and a
 * background refresh (stale-while-revalidate) both fetch the key from the
 * upstream, decide what to store (cache_fill), store it through cache_tiers
 * and close the key's flight, waking the requests collapsed onto it.
 *
 * A cache_fetch belongs to the key's flight, not to the client connection
 * that led it: what is stored depends only on the fetch's inputs, which are
 * copied when it starts (the forwarded request fields, the stale base, the
 * route's storage settings and tags).  Its owner is told when the upstream
 * has answered and then calls cache_fetch_finish once, on its own thread,
 * whether it still has a client to answer (the request steps) or not (a
 * request released early, see http_server.c).  A background refresh has no
 * owner: it finishes on the I/O loop by itself, and so never runs a route's
 * on_response hook (Lua never runs on the loop, docs/design.md invariant 3;
 * such routes are not refreshed in the background).
 *
 * It does not know about HTTP responses: it hands back the upstream result
 * and what was stored; the request steps deliver them.  Upstream failures
 * map to a gateway status in one place (cache_fetch_error_status).
 *
 * Thread-safety: start from any thread; on_ready runs on the I/O loop;
 * finish, result and free on the owner's thread.
 */
#ifndef CACHEGW_CACHE_FETCH_H
#define CACHEGW_CACHE_FETCH_H

#include <stdbool.h>
#include <stddef.h>

#include "cache_fill.h"
#include "coalesce.h"
#include "gateway.h"
#include "headers.h"
#include "upstream_request.h"

struct cache_fetch;

struct cache_fetch_input {
    const char *key;                   /* the looked-up key (a variant key after a marker) */
    const char *method;
    const char *uri;
    const struct header_list *headers; /* the forwarded set: sent upstream, and Vary */
    const char *client_ip;
    struct cache_object *stale;        /* revalidation and stale-if-error base, or NULL */
    const struct store_overrides *ov;  /* the route's storage settings (copied) */
    bool request_no_store;             /* the request said Cache-Control: no-store */
    char *const *tags;                 /* the route's tags (copied), may be NULL */
    size_t n_tags;
    bool has_hook;                     /* the route has an on_response hook (finish gets it) */
    struct flight *flight;             /* the key's flight, led by the caller; closed here */
    void (*on_ready)(void *owner);     /* I/O loop: the upstream answered; NULL: background */
    void *owner;
    const char *upstream;              /* the route's named upstream, NULL: UPSTREAM_URL */
};

/* Starts the fetch.  Returns it, or NULL when it could not start (the flight is
 * then closed as RETRY and nothing will call on_ready). */
struct cache_fetch *cache_fetch_start(struct gateway *gw, const struct cache_fetch_input *in);

/* Owner's thread, once, after on_ready: stores what may be stored and closes
 * the flight.  hook may be NULL (a route without on_response). */
void cache_fetch_finish(struct cache_fetch *cf, cache_fill_hook_fn hook, void *hook_arg);

struct cache_fetch_result {
    struct upstream_fetch *upstream; /* status, headers, body or stream (still owned) */
    struct cache_object *stored;     /* what was stored (borrowed), or NULL */
    const char *not_stored;          /* why not, when stored is NULL and it answered */
    bool failed;                     /* no usable answer: the upstream failed, or 5xx with a
                                        stale-if-error base */
};
void cache_fetch_result(const struct cache_fetch *cf, struct cache_fetch_result *out);

/* Hands the upstream transfer over to the caller (a streamed answer frees it
 * itself); the cache_fetch forgets it. */
struct upstream_fetch *cache_fetch_take_upstream(struct cache_fetch *cf);

/* The owner is done with it (answered, or its client left).  Before on_ready
 * the fetch goes on by itself: when the upstream answers it is finished on the
 * I/O loop (stored as any fetch is, except that a route with an on_response
 * hook stores nothing: its hook cannot run there) and freed.  After on_ready
 * it is finished first if the owner has not, then freed. */
void cache_fetch_release(struct cache_fetch *cf, cache_fill_hook_fn hook, void *hook_arg);

/* Starts a background refresh of a stale entry unless one is running for key.
 * tags: the route's (copied), as a miss's fetch gets them. */
void cache_fetch_refresh(struct gateway *gw, const char *key, struct cache_object *stale,
                         const struct store_overrides *ov, const char *method, const char *uri,
                         const struct header_list *headers, const char *client_ip,
                         const char *upstream, char *const *tags, size_t n_tags);

/* 504 for an upstream timeout, 502 for any other failure. */
int cache_fetch_error_status(const struct upstream_fetch *f);

#endif
