/*
 * body_pipe - a bounded byte pipe that streams a client's request body to the
 * upstream while it is still arriving, so large uploads are never buffered
 * whole (docs/design.md, invariant 5).
 *
 * The producer is the HTTP worker that receives the body (the HTTP server's
 * access handler); the consumer is libcurl's read callback on the I/O loop.
 *
 *   producer                               consumer (loop thread)
 *   body_pipe_write: copies what fits;     body_pipe_read: copies what is there;
 *     when full, calls suspend(arg)          when empty and not finished, says
 *     under the pipe's lock and remembers    "would block" and remembers that the
 *     resume(arg)                            consumer paused
 *   body_pipe_finish: end of body          a read that frees room calls the
 *                                          producer's resume(arg), once, under
 *   a write or finish into a paused        the same lock; so a resume never
 *   consumer calls wake(wake_arg)          precedes its suspend
 *
 * The pipe also carries the hand-over of the answer, which may come while the
 * body is still arriving (an upstream may answer early) or after it:
 * body_pipe_answer_ready (loop) and body_pipe_await_answer (worker) decide
 * under the lock whether the worker answers at once or suspends until the
 * loop resumes it.  body_pipe_abandon (the client left) and
 * body_pipe_answer_ready decide, also under the lock, which side frees the
 * request: exactly one of them returns true.
 *
 * Ownership: reference-counted.  body_pipe_create returns one reference (the
 * request's); the consumer takes one for the transfer and one per posted
 * wake-up; the last body_pipe_unref frees the pipe.  Thread-safety: internally
 * locked; producer functions on one worker thread, consumer functions on the
 * loop thread.
 */
#ifndef CACHEGW_BODY_PIPE_H
#define CACHEGW_BODY_PIPE_H

#include <stdbool.h>
#include <stddef.h>

struct body_pipe;

typedef void (*body_pipe_fn)(void *arg);
typedef void (*body_pipe_wake_fn)(struct body_pipe *p, void *arg);

/* What body_pipe_read returns when the transfer must be aborted. */
#define BODY_PIPE_ABORT ((size_t)-1)

/* capacity: bytes held at most.  Returns NULL when out of memory. */
struct body_pipe *body_pipe_create(size_t capacity);
struct body_pipe *body_pipe_ref(struct body_pipe *p);
void body_pipe_unref(struct body_pipe *p);

/* The consumer's wake-up: called (from the producer's thread, outside the
 * lock) when data, the end or an abort arrives while the consumer is paused.
 * consumer is an opaque pointer for the consumer's own use (its transfer). */
void body_pipe_set_consumer(struct body_pipe *p, body_pipe_wake_fn wake, void *wake_arg,
                            void *consumer);
/* The consumer's pointer, or NULL once cleared (the transfer was released). */
void *body_pipe_consumer(struct body_pipe *p);

/* Producer.  Copies up to len bytes and returns how many it took.  When it took
 * fewer than len, it has called suspend(arg) under the lock and will call
 * resume(arg) once room frees up, the transfer ends or an answer is ready.
 * Once the consumer stopped reading (answer ready, transfer failed) everything
 * is taken and dropped: the rest of the body has nowhere to go. */
size_t body_pipe_write(struct body_pipe *p, const char *data, size_t len, body_pipe_fn suspend,
                       body_pipe_fn resume, void *arg);
/* Producer: the body is complete. */
void body_pipe_finish(struct body_pipe *p);
/* Producer: the body will not be completed (it grew past its bound): the
 * consumer aborts the transfer. */
void body_pipe_cancel(struct body_pipe *p);

/* Consumer.  Copies up to max bytes into dst.  Returns the count; 0 with *eof
 * set at the end of the body, 0 with *eof clear when the consumer must pause
 * (it is woken through the wake function), BODY_PIPE_ABORT when the client
 * left or the body was cancelled. */
size_t body_pipe_read(struct body_pipe *p, char *dst, size_t max, bool *eof);

/* Loop thread: the fetch has its answer (or failed); the consumer reads no
 * more.  Resumes a suspended producer.  Returns true when the request was
 * abandoned by its client: the caller then frees it. */
bool body_pipe_answer_ready(struct body_pipe *p);
/* Worker: the body is complete; is the answer there?  Returns true when it is
 * (answer now); otherwise calls suspend(arg) under the lock and the loop's
 * body_pipe_answer_ready calls resume(arg). */
bool body_pipe_await_answer(struct body_pipe *p, body_pipe_fn suspend, body_pipe_fn resume,
                            void *arg);
/* Worker: the client left.  Returns true when the answer was already there
 * (the caller frees the request now), false when the loop will free it once the
 * aborted transfer reports. */
bool body_pipe_abandon(struct body_pipe *p);
/* True once the consumer stopped (answer ready or the transfer ended). */
bool body_pipe_answered(struct body_pipe *p);
/* True once the client abandoned the request (for the consumer: abort). */
bool body_pipe_abandoned(struct body_pipe *p);

#endif
