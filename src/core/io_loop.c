/* io_loop.c - see io_loop.h.
 *
 * One epoll instance watches an eventfd (posted tasks), and the fds registered
 * by loop-thread code.  Timers live in a binary min-heap; epoll_wait's timeout
 * is the earliest deadline, so no timerfd is needed. */
#include "io_loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

struct io_task {
    io_task_fn fn;
    void *arg;
    struct io_task *next;
};

struct io_watch {
    io_fd_fn fn;
    void *arg;
    uint32_t events;
    bool active;
    uint64_t serial; /* bumped on unwatch so stale events of this iteration are dropped */
};

struct io_timer {
    int64_t deadline_ms;
    uint64_t seq; /* tie-breaker: equal deadlines fire in start order */
    size_t heap_index;
    io_timer_fn fn;
    void *arg;
};

struct io_loop {
    int epfd;
    int wakefd;
    pthread_t thread;
    bool started;
    pthread_t owner; /* thread currently running the loop */

    pthread_mutex_t lock; /* guards the task queue and stopping */
    struct io_task *head, *tail;
    bool stopping;

    struct io_watch *watches; /* indexed by fd */
    size_t n_watches;

    struct io_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;

    int64_t now_ms;
};

int64_t clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int io_loop_create(struct io_loop **out)
{
    struct io_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL) return -ENOMEM;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->epfd < 0 || loop->wakefd < 0) {
        int err = -errno;
        if (loop->epfd >= 0) close(loop->epfd);
        if (loop->wakefd >= 0) close(loop->wakefd);
        free(loop);
        return err;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = loop->wakefd};
    epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev);
    pthread_mutex_init(&loop->lock, NULL);
    loop->owner = pthread_self();
    loop->now_ms = clock_mono_ms();
    *out = loop;
    return 0;
}

/* ---- timers: binary min-heap on (deadline, seq) ---- */

static bool timer_before(const struct io_timer *a, const struct io_timer *b)
{
    return a->deadline_ms < b->deadline_ms ||
           (a->deadline_ms == b->deadline_ms && a->seq < b->seq);
}

static void heap_swap(struct io_loop *loop, size_t i, size_t j)
{
    struct io_timer *t = loop->heap[i];
    loop->heap[i] = loop->heap[j];
    loop->heap[j] = t;
    loop->heap[i]->heap_index = i;
    loop->heap[j]->heap_index = j;
}

static void heap_up(struct io_loop *loop, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(loop->heap[i], loop->heap[parent])) break;
        heap_swap(loop, i, parent);
        i = parent;
    }
}

static void heap_down(struct io_loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->heap_len && timer_before(loop->heap[l], loop->heap[m])) m = l;
        if (r < loop->heap_len && timer_before(loop->heap[r], loop->heap[m])) m = r;
        if (m == i) break;
        heap_swap(loop, i, m);
        i = m;
    }
}

static void heap_remove(struct io_loop *loop, size_t i)
{
    loop->heap_len--;
    if (i != loop->heap_len) {
        loop->heap[i] = loop->heap[loop->heap_len];
        loop->heap[i]->heap_index = i;
        heap_down(loop, i);
        heap_up(loop, i);
    }
}

struct io_timer *io_timer_start(struct io_loop *loop, uint64_t delay_ms, io_timer_fn fn,
                                void *arg)
{
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        struct io_timer **heap = realloc(loop->heap, cap * sizeof *heap);
        if (heap == NULL) return NULL;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    struct io_timer *t = malloc(sizeof *t);
    if (t == NULL) return NULL;
    t->deadline_ms = clock_mono_ms() + (int64_t)delay_ms;
    t->seq = loop->timer_seq++;
    t->fn = fn;
    t->arg = arg;
    t->heap_index = loop->heap_len;
    loop->heap[loop->heap_len++] = t;
    heap_up(loop, t->heap_index);
    return t;
}

void io_timer_cancel(struct io_loop *loop, struct io_timer *timer)
{
    if (timer == NULL) return;
    heap_remove(loop, timer->heap_index);
    free(timer);
}

static void run_due_timers(struct io_loop *loop)
{
    loop->now_ms = clock_mono_ms();
    while (loop->heap_len > 0 && loop->heap[0]->deadline_ms <= loop->now_ms) {
        struct io_timer *t = loop->heap[0];
        heap_remove(loop, 0);
        io_timer_fn fn = t->fn;
        void *arg = t->arg;
        free(t);
        fn(arg);
    }
}

static int next_timeout_ms(struct io_loop *loop)
{
    if (loop->heap_len == 0) return 1000;
    int64_t d = loop->heap[0]->deadline_ms - clock_mono_ms();
    if (d < 0) return 0;
    if (d > 1000) return 1000;
    return (int)d;
}

/* ---- fd watches ---- */

int io_loop_watch(struct io_loop *loop, int fd, uint32_t events, io_fd_fn fn, void *arg)
{
    if (fd < 0) return -EBADF;
    if ((size_t)fd >= loop->n_watches) {
        size_t n = loop->n_watches ? loop->n_watches : 256;
        while (n <= (size_t)fd) n *= 2;
        struct io_watch *w = realloc(loop->watches, n * sizeof *w);
        if (w == NULL) return -ENOMEM;
        memset(w + loop->n_watches, 0, (n - loop->n_watches) * sizeof *w);
        loop->watches = w;
        loop->n_watches = n;
    }
    struct io_watch *w = &loop->watches[fd];
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)fd};
    int op = w->active ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, fd, &ev) < 0) return -errno;
    w->fn = fn;
    w->arg = arg;
    w->events = events;
    w->active = true;
    return 0;
}

void io_loop_unwatch(struct io_loop *loop, int fd)
{
    if (fd < 0 || (size_t)fd >= loop->n_watches || !loop->watches[fd].active) return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
    loop->watches[fd].active = false;
    loop->watches[fd].serial++;
}

/* ---- tasks ---- */

int io_loop_post(struct io_loop *loop, io_task_fn fn, void *arg)
{
    struct io_task *t = malloc(sizeof *t);
    if (t == NULL) return -ENOMEM;
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&loop->lock);
    if (loop->stopping) {
        pthread_mutex_unlock(&loop->lock);
        free(t);
        return -ESHUTDOWN;
    }
    bool was_empty = loop->head == NULL;
    if (loop->tail) loop->tail->next = t;
    else loop->head = t;
    loop->tail = t;
    pthread_mutex_unlock(&loop->lock);
    if (was_empty) {
        uint64_t one = 1;
        ssize_t w = write(loop->wakefd, &one, sizeof one);
        (void)w;
    }
    return 0;
}

/* Runs every queued task; returns true when the loop should exit. */
static bool run_tasks(struct io_loop *loop)
{
    uint64_t v;
    ssize_t r = read(loop->wakefd, &v, sizeof v);
    (void)r;
    pthread_mutex_lock(&loop->lock);
    struct io_task *t = loop->head;
    loop->head = loop->tail = NULL;
    pthread_mutex_unlock(&loop->lock);
    while (t) {
        struct io_task *next = t->next;
        t->fn(t->arg);
        free(t);
        t = next;
    }
    pthread_mutex_lock(&loop->lock);
    bool stopping = loop->stopping && loop->head == NULL;
    pthread_mutex_unlock(&loop->lock);
    return stopping;
}

bool io_loop_in_loop_thread(const struct io_loop *loop)
{
    return pthread_equal(loop->owner, pthread_self());
}

int64_t io_loop_now_ms(struct io_loop *loop) { return loop->now_ms; }

static void *loop_main(void *arg)
{
    struct io_loop *loop = arg;
    loop->owner = pthread_self();
    enum { MAX_EVENTS = 256 };
    struct epoll_event events[MAX_EVENTS];
    uint64_t serials[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(loop->epfd, events, MAX_EVENTS, next_timeout_ms(loop));
        if (n < 0 && errno != EINTR) {
            LOG_E("io_loop: epoll_wait failed: %s", strerror(errno));
            break;
        }
        loop->now_ms = clock_mono_ms();
        bool stop = false;
        /* Snapshot serials first: a callback may unwatch (and even re-watch) a
         * later fd of this batch, whose collected event is then stale. */
        for (int i = 0; i < n; i++) {
            int fd = (int)events[i].data.u64;
            serials[i] = fd != loop->wakefd && (size_t)fd < loop->n_watches
                             ? loop->watches[fd].serial
                             : 0;
        }
        for (int i = 0; i < n; i++) {
            int fd = (int)events[i].data.u64;
            if (fd == loop->wakefd) {
                stop = run_tasks(loop) || stop;
                continue;
            }
            if ((size_t)fd >= loop->n_watches) continue;
            struct io_watch *w = &loop->watches[fd];
            if (!w->active || w->serial != serials[i]) continue;
            w->fn(fd, events[i].events, w->arg);
        }
        run_due_timers(loop);
        if (stop) break;
    }
    return NULL;
}

int io_loop_start(struct io_loop *loop)
{
    int rc = pthread_create(&loop->thread, NULL, loop_main, loop);
    if (rc != 0) return -rc;
    loop->started = true;
    return 0;
}

static void stop_task(void *arg)
{
    struct io_loop *loop = arg;
    pthread_mutex_lock(&loop->lock);
    loop->stopping = true;
    pthread_mutex_unlock(&loop->lock);
}

void io_loop_stop(struct io_loop *loop)
{
    if (!loop->started) return;
    /* Posted as a task so everything posted before it still runs. */
    io_loop_post(loop, stop_task, loop);
    pthread_join(loop->thread, NULL);
    loop->started = false;
    loop->owner = pthread_self();
}

void io_loop_destroy(struct io_loop *loop)
{
    if (loop == NULL) return;
    struct io_task *t = loop->head;
    while (t) {
        struct io_task *next = t->next;
        free(t);
        t = next;
    }
    for (size_t i = 0; i < loop->heap_len; i++) free(loop->heap[i]);
    free(loop->heap);
    free(loop->watches);
    close(loop->epfd);
    close(loop->wakefd);
    pthread_mutex_destroy(&loop->lock);
    free(loop);
}
