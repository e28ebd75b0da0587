/*
 * upstream_request - builds the upstream fetch for a client request.
 *
 * Copies the client's headers minus the hop-by-hop ones (RFC 9110 §7.6.1),
 * Host, framing and Expect; adds X-Forwarded-For/-Proto/-Host and Via.  A
 * cache fill fetches GET (a HEAD is answered from the stored GET) without the
 * client's conditional or range headers, so the answer can be stored for
 * everyone; a pass-through fetch takes over the client's body.
 *
 * With in->group set, the proxy picks an instance of that named upstream per attempt and
 * may retry on another one (proxy.h, struct upstream_fetch).
 *
 * Ownership: the returned fetch owns its strings and body; free it with
 * upstream_request_free (it is also the fetch's on_free, so a streamed fetch
 * frees itself).  owner is a borrowed pointer for the on_ready callback.
 * Thread-safety: build on any thread; the fetch then belongs to the proxy
 * until on_ready.
 */
#ifndef CACHEGW_UPSTREAM_REQUEST_H
#define CACHEGW_UPSTREAM_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "cache_object.h"
#include "headers.h"
#include "proxy.h"

struct upstream_request_input {
    const char *method;
    const char *uri;                   /* raw path[?query] */
    const struct header_list *headers; /* the client's */
    const char *client_ip;
    struct buf *body;                  /* taken over (zeroed) unless for_cache */
    bool for_cache;
    size_t buffer_limit;               /* stream bodies longer than this */
    upstream_ready_fn on_ready;
    void *owner;
    /* The decision's named upstream (policy_decision.upstream; NULL or "default": the
     * proxy's base URL, i.e. UPSTREAM_URL), looked up in the process's registry
     * (upstream_registry_global, upstream_set.h); the fetch holds the group until freed.
     * balance_key (copied) is what hash balancing hashes: the cache key.  retry_unsafe:
     * the route allows retrying its non-idempotent method (`idempotent = true`). */
    const char *upstream;
    const char *balance_key;
    bool retry_unsafe;
};

/* Returns the fetch, or NULL on allocation failure or when in->upstream names no upstream
 * the registry knows (logged: never sent to another upstream instead, whose answer could
 * be stored under this route's key). */

/* Returns the fetch, or NULL on allocation failure. */
struct upstream_fetch *upstream_request_build(const struct upstream_request_input *in);
void upstream_request_free(struct upstream_fetch *f);

void *upstream_request_owner(struct upstream_fetch *f);
void upstream_request_set_owner(struct upstream_fetch *f, void *owner);

/* Makes a fill conditional on a stale entry's validators (ETag,
 * Last-Modified), so an unchanged resource costs a 304, not a full body. */
void upstream_request_add_validators(struct upstream_fetch *f, const struct cache_object *stale);

#endif
