/*
 * redis_sub_watch - "has a subscriber connection received input that the loop
 * has not applied yet?", asked from any thread, and a bounded wait until it
 * has (issue 10, read-your-writes; docs/design.md, "Read-your-writes").
 *
 * Why: instance A answers a write only once Redis has published its
 * invalidation, so when the client's next read reaches instance B the message
 * is already in B's subscriber socket (or being read by B's loop).  B's HTTP
 * worker serving a memory-tier hit would otherwise race B's I/O loop thread
 * applying it.  A worker asks redis_sub_watch_settle() before it reads the
 * memory tier: when input is pending it waits, bounded, for the loop to apply
 * what it had.
 *
 * Two sides:
 *   - The loop (redis_conn.c, for a connection given a watch): publishes its
 *     socket when READY (redis_sub_watch_add_fd) and withdraws it before the
 *     socket is closed (redis_sub_watch_remove_fd); brackets each read-and-
 *     dispatch pass with redis_sub_watch_begin / redis_sub_watch_end.  A pass
 *     that yields because its read budget ran out stays open until the read
 *     is resumed and finishes, so bytes that only OpenSSL buffers are covered
 *     (epoll does not see them); otherwise a pass ends only when the socket
 *     (and OpenSSL) said "would block".
 *   - Any other thread: redis_sub_watch_settle().  Pending means one of the
 *     published sockets has unread bytes (poll() with timeout 0, one system
 *     call for all of them) or a pass is open.  The order of those two checks
 *     is what makes it sound: the socket is looked at first; if its bytes were
 *     already read, the pass that read them began before the read, so it is
 *     either still open (seen) or over (applied).
 *
 * Up to REDIS_SUB_WATCH_FDS sockets are watched at once: a cluster moves its
 * subscription make-before-break, so two subscriber connections can be live
 * for a moment.
 *
 * Cost: a settle that finds nothing pending is three atomic loads and one
 * poll() (no lock, no write to shared memory); nothing at all when no socket
 * is published.  The loop pays two atomic increments per pass, and a mutex +
 * broadcast only when a worker waits.
 *
 * Ownership: the owner (store_redis) embeds or allocates the watch; the
 * connections borrow it and must be destroyed (or given NULL) before it is
 * destroyed.  Thread-safety: add_fd / remove_fd / begin / end on the loop
 * thread only; settle and pending from any thread other than the loop's
 * (settle called on the loop thread returns at once: the loop cannot wait
 * for itself).
 */
#ifndef CACHEGW_REDIS_SUB_WATCH_H
#define CACHEGW_REDIS_SUB_WATCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define REDIS_SUB_WATCH_FDS 4

struct redis_sub_watch {
    atomic_int fds[REDIS_SUB_WATCH_FDS]; /* published sockets; -1: free */
    atomic_uint_fast64_t fd_gen;         /* bumped by each remove (fd reuse guard) */
    atomic_uint_fast64_t started, done;  /* passes begun / ended; open while they differ */
    atomic_int waiters;
    atomic_bool has_loop;
    pthread_t loop_thread; /* set by the first begin; settle never waits on it */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    /* Counters (any thread reads): settles that found input pending, and of
     * those, waits that ran to the bound. */
    atomic_uint_fast64_t waits, timeouts;
};

/* Returns 0 or -errno (pthread init). */
int redis_sub_watch_init(struct redis_sub_watch *w);
void redis_sub_watch_destroy(struct redis_sub_watch *w);

/* Loop thread. */
void redis_sub_watch_add_fd(struct redis_sub_watch *w, int fd);
void redis_sub_watch_remove_fd(struct redis_sub_watch *w, int fd);
/* A pass begins before the socket is read and ends after what was read is
 * applied; each begin is matched by one end (the connection keeps count). */
void redis_sub_watch_begin(struct redis_sub_watch *w);
void redis_sub_watch_end(struct redis_sub_watch *w);

/* Any thread: true when input may be pending (see above).  No wait. */
bool redis_sub_watch_pending(struct redis_sub_watch *w);

/* Any thread: when input is pending, waits until the loop has applied what
 * was there when this call looked (at most two passes: the one open now, then
 * the next if bytes were still unread after it), or timeout_ms.  Returns 0
 * when nothing was pending, 1 when it waited and the input was applied, 2
 * when it gave up at the bound (or on the loop thread, which cannot wait). */
int redis_sub_watch_settle(struct redis_sub_watch *w, int timeout_ms);

#endif
