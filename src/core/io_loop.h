/*
 * io_loop - the gateway's single I/O event loop thread (epoll).
 *
 * All network I/O that an HTTP worker must not wait on (upstream transfers via
 * libcurl multi, Redis connections) runs here.  Other threads hand work to the
 * loop with io_loop_post(); everything else in this API is for code already
 * running on the loop thread.
 *
 * Ownership: the loop owns its timers; a cancelled or fired timer is freed by
 * the loop.  Watched fds stay owned by the caller (unwatch before close).
 *
 * Thread-safety: io_loop_post() and io_loop_stop() are safe from any thread;
 * every other function is confined to the loop thread (or to the creating
 * thread before io_loop_start()).
 */
#ifndef CACHEGW_IO_LOOP_H
#define CACHEGW_IO_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct io_loop;
struct io_timer;

typedef void (*io_task_fn)(void *arg);
/* events is a mask of EPOLLIN / EPOLLOUT / EPOLLERR / EPOLLHUP. */
typedef void (*io_fd_fn)(int fd, uint32_t events, void *arg);
typedef void (*io_timer_fn)(void *arg);

/* Creates a loop (not yet running).  Returns 0 or -errno. */
int io_loop_create(struct io_loop **out);
/* Starts the loop thread.  Returns 0 or -errno. */
int io_loop_start(struct io_loop *loop);
/* Asks the loop to exit after running every task already posted, then joins it. */
void io_loop_stop(struct io_loop *loop);
/* Frees a stopped (or never started) loop. */
void io_loop_destroy(struct io_loop *loop);

/* Runs fn(arg) on the loop thread, in posting order.  Safe from any thread.
 * Returns 0, or -ENOMEM / -ESHUTDOWN (then fn is never called). */
int io_loop_post(struct io_loop *loop, io_task_fn fn, void *arg);

/* True when called on this loop's thread. */
bool io_loop_in_loop_thread(const struct io_loop *loop);

/* Registers or updates interest in fd.  events == 0 keeps the fd registered
 * but silent.  Returns 0 or -errno. */
int io_loop_watch(struct io_loop *loop, int fd, uint32_t events, io_fd_fn fn, void *arg);
/* Removes fd; its callback is not called again, even for events already
 * collected in the current iteration. */
void io_loop_unwatch(struct io_loop *loop, int fd);

/* Calls fn(arg) once after delay_ms.  Returns NULL on allocation failure. */
struct io_timer *io_timer_start(struct io_loop *loop, uint64_t delay_ms, io_timer_fn fn,
                                void *arg);
/* Cancels a pending timer (frees it).  Never call on a timer that has fired. */
void io_timer_cancel(struct io_loop *loop, struct io_timer *timer);

/* Monotonic milliseconds, the loop's notion of "now" (cached per iteration). */
int64_t io_loop_now_ms(struct io_loop *loop);

/* Monotonic and wall clocks in milliseconds, usable from any thread. */
int64_t clock_mono_ms(void);
int64_t clock_wall_ms(void);

#endif
