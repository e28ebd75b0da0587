/* body_pipe.c - see body_pipe.h. */
#include "body_pipe.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct body_pipe {
    atomic_int refs;
    pthread_mutex_t lock;
    char *buf;          /* ring of cap bytes */
    size_t cap, head, len;
    bool finished;      /* producer: no more data */
    bool consumer_paused;
    bool answered;      /* consumer: the fetch has its answer; reads stop */
    bool abandoned;     /* producer: the client left */
    bool cancelled;     /* producer: the body will not be completed */
    body_pipe_wake_fn wake; /* the consumer's wake-up */
    void *wake_arg;
    void *consumer;
    /* A suspended producer's resume, or NULL; for_answer when it waits for the
     * answer (only body_pipe_answer_ready resumes it), else it waits for room. */
    body_pipe_fn resume;
    void *resume_arg;
    bool for_answer;
};

struct body_pipe *body_pipe_create(size_t capacity)
{
    struct body_pipe *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    p->buf = malloc(capacity);
    if (p->buf == NULL) {
        free(p);
        return NULL;
    }
    p->cap = capacity;
    atomic_init(&p->refs, 1);
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

struct body_pipe *body_pipe_ref(struct body_pipe *p)
{
    atomic_fetch_add(&p->refs, 1);
    return p;
}

void body_pipe_unref(struct body_pipe *p)
{
    if (p == NULL || atomic_fetch_sub(&p->refs, 1) != 1) return;
    pthread_mutex_destroy(&p->lock);
    free(p->buf);
    free(p);
}

void body_pipe_set_consumer(struct body_pipe *p, body_pipe_wake_fn wake, void *wake_arg,
                            void *consumer)
{
    pthread_mutex_lock(&p->lock);
    p->wake = wake;
    p->wake_arg = wake_arg;
    p->consumer = consumer;
    pthread_mutex_unlock(&p->lock);
}

void *body_pipe_consumer(struct body_pipe *p)
{
    pthread_mutex_lock(&p->lock);
    void *c = p->consumer;
    pthread_mutex_unlock(&p->lock);
    return c;
}

/* Under the lock: hands the consumer's wake-up to the caller (called after unlocking). */
static body_pipe_wake_fn take_wake(struct body_pipe *p, void **arg)
{
    if (!p->consumer_paused || p->wake == NULL) return NULL;
    p->consumer_paused = false;
    *arg = p->wake_arg;
    return p->wake;
}

/* Under the lock: resumes a suspended producer. */
static void resume_producer(struct body_pipe *p)
{
    body_pipe_fn resume = p->resume;
    p->for_answer = false;
    p->resume = NULL;
    if (resume) resume(p->resume_arg);
}

size_t body_pipe_write(struct body_pipe *p, const char *data, size_t len, body_pipe_fn suspend,
                       body_pipe_fn resume, void *arg)
{
    void *wake_arg = NULL;
    body_pipe_wake_fn wake = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->answered || p->cancelled) {
        pthread_mutex_unlock(&p->lock);
        return len;
    }
    size_t room = p->cap - p->len, take = len < room ? len : room;
    size_t tail = (p->head + p->len) % p->cap;
    size_t first = take < p->cap - tail ? take : p->cap - tail;
    memcpy(p->buf + tail, data, first);
    memcpy(p->buf, data + first, take - first);
    p->len += take;
    if (take < len) {
        suspend(arg);
        p->resume = resume;
        p->resume_arg = arg;
        p->for_answer = false;
    }
    if (take > 0) wake = take_wake(p, &wake_arg);
    pthread_mutex_unlock(&p->lock);
    if (wake) wake(p, wake_arg);
    return take;
}

void body_pipe_finish(struct body_pipe *p)
{
    void *wake_arg = NULL;
    pthread_mutex_lock(&p->lock);
    p->finished = true;
    body_pipe_wake_fn wake = take_wake(p, &wake_arg);
    pthread_mutex_unlock(&p->lock);
    if (wake) wake(p, wake_arg);
}

void body_pipe_cancel(struct body_pipe *p)
{
    void *wake_arg = NULL;
    pthread_mutex_lock(&p->lock);
    p->cancelled = true;
    body_pipe_wake_fn wake = take_wake(p, &wake_arg);
    pthread_mutex_unlock(&p->lock);
    if (wake) wake(p, wake_arg);
}

size_t body_pipe_read(struct body_pipe *p, char *dst, size_t max, bool *eof)
{
    pthread_mutex_lock(&p->lock);
    if (p->abandoned || p->cancelled) {
        pthread_mutex_unlock(&p->lock);
        *eof = false;
        return BODY_PIPE_ABORT;
    }
    size_t take = max < p->len ? max : p->len;
    size_t first = take < p->cap - p->head ? take : p->cap - p->head;
    memcpy(dst, p->buf + p->head, first);
    memcpy(dst + first, p->buf, take - first);
    p->head = (p->head + take) % p->cap;
    p->len -= take;
    *eof = take == 0 && p->finished;
    if (take == 0 && !p->finished) p->consumer_paused = true;
    if (take > 0 && !p->for_answer) resume_producer(p);
    pthread_mutex_unlock(&p->lock);
    return take;
}

bool body_pipe_answer_ready(struct body_pipe *p)
{
    pthread_mutex_lock(&p->lock);
    p->answered = true;
    bool abandoned = p->abandoned;
    if (!abandoned) resume_producer(p);
    pthread_mutex_unlock(&p->lock);
    return abandoned;
}

bool body_pipe_await_answer(struct body_pipe *p, body_pipe_fn suspend, body_pipe_fn resume,
                            void *arg)
{
    pthread_mutex_lock(&p->lock);
    bool ready = p->answered;
    if (!ready) {
        suspend(arg);
        p->resume = resume;
        p->resume_arg = arg;
        p->for_answer = true;
    }
    pthread_mutex_unlock(&p->lock);
    return ready;
}

bool body_pipe_abandon(struct body_pipe *p)
{
    void *wake_arg = NULL;
    pthread_mutex_lock(&p->lock);
    p->abandoned = true;
    p->resume = NULL;
    bool answered = p->answered;
    body_pipe_wake_fn wake = answered ? NULL : take_wake(p, &wake_arg);
    pthread_mutex_unlock(&p->lock);
    if (wake) wake(p, wake_arg); /* a paused consumer must see the abort */
    return answered;
}

bool body_pipe_answered(struct body_pipe *p)
{
    pthread_mutex_lock(&p->lock);
    bool a = p->answered;
    pthread_mutex_unlock(&p->lock);
    return a;
}

bool body_pipe_abandoned(struct body_pipe *p)
{
    pthread_mutex_lock(&p->lock);
    bool a = p->abandoned;
    pthread_mutex_unlock(&p->lock);
    return a;
}
