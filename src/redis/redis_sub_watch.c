/* redis_sub_watch.c - see redis_sub_watch.h. */
#include "redis_sub_watch.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

int redis_sub_watch_init(struct redis_sub_watch *w)
{
    for (int i = 0; i < REDIS_SUB_WATCH_FDS; i++) atomic_init(&w->fds[i], -1);
    atomic_init(&w->fd_gen, 0);
    atomic_init(&w->started, 0);
    atomic_init(&w->done, 0);
    atomic_init(&w->waiters, 0);
    atomic_init(&w->has_loop, false);
    atomic_init(&w->waits, 0);
    atomic_init(&w->timeouts, 0);
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc != 0) return -rc;
    rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0) rc = pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) return -rc;
    rc = pthread_mutex_init(&w->mu, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->cv);
        return -rc;
    }
    return 0;
}

void redis_sub_watch_destroy(struct redis_sub_watch *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

/* ---- the loop's side ---- */

void redis_sub_watch_add_fd(struct redis_sub_watch *w, int fd)
{
    for (int i = 0; i < REDIS_SUB_WATCH_FDS; i++) {
        int expected = -1;
        if (atomic_compare_exchange_strong(&w->fds[i], &expected, fd)) return;
    }
    /* More live subscriber connections than slots: this one is not watched
     * (a read through it may be stale for a moment, as without the watch). */
}

void redis_sub_watch_remove_fd(struct redis_sub_watch *w, int fd)
{
    for (int i = 0; i < REDIS_SUB_WATCH_FDS; i++) {
        int expected = fd;
        if (atomic_compare_exchange_strong(&w->fds[i], &expected, -1)) {
            /* Before the socket is closed: a settle that loaded fd before this
             * sees the generation move and ignores what poll() said about a
             * number the kernel may already have given to another socket. */
            atomic_fetch_add(&w->fd_gen, 1);
            return;
        }
    }
}

static void wake(struct redis_sub_watch *w)
{
    /* The waiter increments waiters before it checks done under the mutex,
     * and the loop increments done before it reads waiters (both sequentially
     * consistent): either the loop sees the waiter, or the waiter sees done. */
    if (atomic_load(&w->waiters) == 0) return;
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void redis_sub_watch_begin(struct redis_sub_watch *w)
{
    if (!atomic_load_explicit(&w->has_loop, memory_order_relaxed)) {
        w->loop_thread = pthread_self();
        atomic_store(&w->has_loop, true);
    }
    atomic_fetch_add(&w->started, 1); /* before the socket is read */
}

void redis_sub_watch_end(struct redis_sub_watch *w)
{
    atomic_fetch_add(&w->done, 1); /* after what was read is applied */
    wake(w);
}

/* ---- any thread ---- */

/* One look: whether a published socket has unread bytes (checked first), and
 * the pass counters read after it. */
struct look {
    bool readable;
    uint64_t started, done;
};

static struct look look_now(struct redis_sub_watch *w)
{
    struct look l = {false, 0, 0};
    struct pollfd pfd[REDIS_SUB_WATCH_FDS];
    nfds_t n = 0;
    uint64_t gen = atomic_load(&w->fd_gen);
    for (int i = 0; i < REDIS_SUB_WATCH_FDS; i++) {
        int fd = atomic_load(&w->fds[i]);
        if (fd >= 0) {
            pfd[n].fd = fd;
            pfd[n].events = POLLIN;
            pfd[n].revents = 0;
            n++;
        }
    }
    if (n > 0 && poll(pfd, n, 0) > 0 && atomic_load(&w->fd_gen) == gen) {
        for (nfds_t i = 0; i < n; i++)
            if (pfd[i].revents & POLLIN) l.readable = true;
    }
    l.started = atomic_load(&w->started);
    l.done = atomic_load(&w->done);
    return l;
}

static bool is_pending(const struct look *l)
{
    return l->readable || l->started != l->done;
}

bool redis_sub_watch_pending(struct redis_sub_watch *w)
{
    struct look l = look_now(w);
    return is_pending(&l);
}

/* Waits until `done` reaches target or the deadline passes.  True if reached. */
static bool wait_done(struct redis_sub_watch *w, uint64_t target, const struct timespec *deadline)
{
    if (atomic_load(&w->done) >= target) return true;
    bool reached = true;
    atomic_fetch_add(&w->waiters, 1);
    pthread_mutex_lock(&w->mu);
    while (atomic_load(&w->done) < target) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, deadline) == ETIMEDOUT) {
            reached = atomic_load(&w->done) >= target;
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
    atomic_fetch_sub(&w->waiters, 1);
    return reached;
}

/* The pass to wait for after a look: the open one, or (none open, bytes
 * unread) the next, which begins after the look and reads until the socket
 * would block. */
static uint64_t target_of(const struct look *l)
{
    return l->started == l->done ? l->started + 1 : l->started;
}

int redis_sub_watch_settle(struct redis_sub_watch *w, int timeout_ms)
{
    struct look l = look_now(w);
    if (!is_pending(&l)) return 0;
    if (atomic_load(&w->has_loop) && pthread_equal(pthread_self(), w->loop_thread)) return 2;
    atomic_fetch_add(&w->waits, 1);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    bool ok = wait_done(w, target_of(&l), &deadline);
    if (ok && l.readable && l.started != l.done) {
        /* The pass that was open may have made its last read before the bytes
         * we saw arrived: if anything is still unread or being read, wait for
         * that pass too.  Never more than these two. */
        struct look again = look_now(w);
        if (is_pending(&again)) ok = wait_done(w, target_of(&again), &deadline);
    }
    if (!ok) {
        atomic_fetch_add(&w->timeouts, 1);
        return 2;
    }
    return 1;
}
