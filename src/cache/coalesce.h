/*
 * coalesce - request collapsing: one upstream fetch per cache key at a time.
 *
 * The first request to miss on a key becomes the flight's leader and fetches;
 * requests that miss on the same key while the flight is open join it as
 * waiters.  coalesce_finish() closes the flight and calls every waiter's wake
 * function at once (no polling interval), with the stored object or with the
 * outcome that tells them what to do instead.
 *
 * Ownership: a flight is owned by the coalescer; the leader holds a borrowed
 * pointer until it calls coalesce_finish exactly once.  obj passed to finish is
 * borrowed: a waiter that keeps it must take its own reference in wake.
 * Thread-safety: internally locked (sharded); wake functions run on the thread
 * that calls coalesce_finish, outside the coalescer's locks.
 */
#ifndef CACHEGW_COALESCE_H
#define CACHEGW_COALESCE_H

#include <stdbool.h>
#include <stddef.h>

#include "cache_object.h"

struct coalescer;
struct flight;

enum flight_outcome {
    FLIGHT_STORED,  /* obj is the fresh stored response: answer with it */
    FLIGHT_RETRY,   /* the response was not shareable: fetch for yourself, uncollapsed */
    FLIGHT_FAILED,  /* the upstream failed: status says how (502 or 504) */
};

typedef void (*flight_wake_fn)(void *waiter, enum flight_outcome outcome,
                               struct cache_object *obj, int status);

int coalesce_create(struct coalescer **out);
void coalesce_destroy(struct coalescer *c);

/* Joins the flight for key, or opens one.  Returns true when the caller is
 * the leader (and *flight is set); false when it was queued as a waiter and
 * will be woken through wake(waiter, ...).  Returns true with *flight NULL on
 * allocation failure: the caller then fetches alone. */
bool coalesce_join(struct coalescer *c, const char *key, size_t key_len, void *waiter,
                   flight_wake_fn wake, struct flight **flight);

/* Opens a flight for key only if none is open (a background refresh uses
 * this: requests already served stale must not wait).  Returns true with
 * *flight set when the caller now leads; false when a flight was open or on
 * allocation failure. */
bool coalesce_try_lead(struct coalescer *c, const char *key, size_t key_len,
                       struct flight **flight);

/* Closes the flight and wakes every waiter.  flight may be NULL (no-op). */
void coalesce_finish(struct coalescer *c, struct flight *flight, enum flight_outcome outcome,
                     struct cache_object *obj, int status);

/* Number of open flights (for tests and metrics). */
size_t coalesce_open_flights(struct coalescer *c);

#endif
