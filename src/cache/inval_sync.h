/*
 * inval_sync - invalidation across instances: the protocol that keeps every
 * gateway's memory tier, the Redis tier and the invalidation records in step.
 *
 * A key invalidation deletes the key in Redis and, once Redis took the delete,
 * tells the other instances.  A prefix or tag invalidation is recorded first in
 * this instance's inval_index (its next read already misses), then sent as one
 * Redis script that assigns the global sequence, records it and publishes it;
 * other instances apply the published record.  What Redis did not take (down,
 * stalled, or refusing: OOM, NOPERM) is kept in order, bounded, and replayed
 * when Redis answers again.  Everything read back from Redis or from the
 * channel is validated before use; a reset of Redis's bookkeeping (a new epoch)
 * clears the memory tier.  The Redis key layout and the wire format are at the
 * top of inval_sync.c.
 *
 * Thread-safety: the three invalidate functions may be called from any thread;
 * the rest of the state is confined to the I/O loop.
 */
#ifndef CACHEGW_INVAL_SYNC_H
#define CACHEGW_INVAL_SYNC_H

#include "gateway.h"

enum inval_kind {
    INVAL_KEY = 'k',        /* one key */
    INVAL_KEY_PREFIX = 'p', /* keys by prefix, memory tier only (no record) */
    INVAL_PREFIX = 'P',     /* a sequenced prefix record: "<epoch>:<seq>:<prefix>" */
    INVAL_TAG = 'T',        /* a sequenced tag record: "<epoch>:<seq>:<tag>" */
    INVAL_RESYNC = '*',     /* the channel was re-established: messages may be lost */
    INVAL_SUBSCRIBED = '+', /* the channel is subscribed for the first time */
};

/* Start-up (before the loop runs): creates gw->inval_sync and, with a Redis
 * tier, subscribes and syncs the records once Redis first answers.  Returns 0
 * or a negative errno. */
int inval_sync_start(struct gateway *gw);
/* The loop has stopped: frees what is pending and gw->inval_sync. */
void inval_sync_stop(struct gateway *gw);

/* Any thread.  The memory tier (or the local records) change at once; Redis and
 * the other instances follow through the loop. */
void inval_sync_invalidate_key(struct gateway *gw, const char *key);
void inval_sync_invalidate_prefix(struct gateway *gw, const char *prefix);
void inval_sync_invalidate_tag(struct gateway *gw, const char *tag);

/* Whether the Redis tier may be used: this instance knows every invalidation
 * record, i.e. a records sync that began once the channel was subscribed has
 * been answered (and, after a re-subscription, the sync it caused).  Until
 * then an entry read from Redis could be one a record covers, and a fill
 * would carry a generation below the records, which every synced instance
 * refuses (docs/design.md, "Invalidation protocol").  True without a Redis
 * tier.  Any thread. */
bool inval_sync_ready(const struct gateway *gw);

/* Read-your-writes across instances (issue 10; docs/design.md, "Redis Cluster
 * and Sentinel"): fn(arg) runs once, on the I/O loop thread, when every
 * invalidation this process issued before the call has been taken by Redis
 * (recorded, and published: other instances have the message) or given up on
 * for now (Redis down, refusing or too slow: kept and replayed as ever), and
 * at the latest REDIS_TIMEOUT_MS after the call.  Without a Redis tier, on
 * the next loop turn.  A write's response waits for this before it leaves,
 * so a client that then reads through another instance does not get the old
 * entry.  Any thread.  Returns 0, or -ENOMEM (fn is not called). */
typedef void (*inval_sync_done_fn)(void *arg);
int inval_sync_after(struct gateway *gw, inval_sync_done_fn fn, void *arg);

#endif
