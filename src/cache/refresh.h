/*
 * refresh - stale-while-revalidate: refreshing a stale entry in the
 * background while clients are answered from it.
 *
 * At most one refresh per key runs at a time (a coalescer flight opened with
 * coalesce_try_lead, so requests already answered stale never wait on it,
 * while requests that cannot use the stale copy join it as waiters).  The
 * fetch is conditional on the entry's validators; the answer is stored with
 * cache_fill on the I/O loop thread.  No Lua runs there (docs/design.md invariant
 * 3): routes with an on_response hook must not be refreshed this way.
 *
 * Ownership: refresh_start copies what it needs; the caller keeps its own.
 * Thread-safety: refresh_start from any thread.
 */
#ifndef CACHEGW_REFRESH_H
#define CACHEGW_REFRESH_H

#include <stdint.h>

#include "cache_object.h"
#include "cache_rules.h"
#include "gateway.h"
#include "headers.h"

struct refresh_input {
    const char *key;                   /* the entry's key (a variant key when Vary) */
    struct cache_object *stale;        /* the entry being refreshed (borrowed) */
    const struct store_overrides *ov;  /* the route policy's storage settings */
    const char *method;
    const char *uri;
    const struct header_list *headers; /* the client's, forwarded and used for Vary */
    const char *client_ip;
};

/* Starts the refresh unless one is already running for key. */
void refresh_start(struct gateway *gw, const struct refresh_input *in);

#endif
