/*
 * cache_fill - turns an upstream response into a stored cache entry.
 *
 * Decides storability (cache_rules), lets the route's response hook have its
 * say, builds the cache_object (with a Vary marker and variant key when the
 * response varies), and writes it to both tiers.  A 304 that revalidated a
 * stale entry refreshes that entry: its body is kept, its headers are updated
 * with the 304's (RFC 9111 §4.3.4), and its age starts again.
 *
 * Used by a leader on its worker thread and by background refreshes on the
 * I/O loop (which pass no hook: Lua never runs on the loop).
 * Thread-safety: any thread; the tiers are internally locked / posted.
 */
#ifndef CACHEGW_CACHE_FILL_H
#define CACHEGW_CACHE_FILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache_object.h"
#include "cache_rules.h"
#include "gateway.h"
#include "headers.h"

typedef void (*cache_fill_hook_fn)(void *arg, int status, const struct header_list *headers,
                                   struct store_decision *d);

struct fill_input {
    const char *key;                      /* base key (a variant is derived if Vary) */
    const struct header_list *req_headers; /* the request's, for Vary */
    int status;
    const struct header_list *resp_headers;
    const char *body;
    size_t body_len;
    const struct cache_object *revalidated; /* set when status is 304 for this entry */
    const struct store_overrides *ov;      /* route policy settings, may be NULL */
    bool request_no_store;                 /* request said Cache-Control: no-store */
    uint64_t gen;                          /* inval_index_current() when the fetch began */
    char *const *tags;                     /* the route's tags, may be NULL */
    size_t n_tags;
    cache_fill_hook_fn hook;               /* may be NULL */
    void *hook_arg;
};

/* Returns the stored object (one reference), or NULL with *reason set. */
struct cache_object *cache_fill(struct gateway *gw, const struct fill_input *in,
                                const char **reason);

#endif
