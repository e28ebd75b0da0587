/* Unit tests for io_loop: task order, timers (order, cancel), fd watches, stop. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "io_loop.h"
#include "test.h"

struct record {
    int seq[64];
    atomic_int n;
    struct io_loop *loop;
};

static struct record rec;

static void note(void *arg) { rec.seq[atomic_fetch_add(&rec.n, 1)] = (int)(intptr_t)arg; }

static void wait_for(int n)
{
    for (int i = 0; i < 2000 && atomic_load(&rec.n) < n; i++) usleep(1000);
}

TEST(tasks_run_in_posting_order)
{
    struct io_loop *loop;
    CHECK_EQ_INT(io_loop_create(&loop), 0);
    CHECK_EQ_INT(io_loop_start(loop), 0);
    atomic_store(&rec.n, 0);
    for (int i = 0; i < 10; i++) io_loop_post(loop, note, (void *)(intptr_t)i);
    wait_for(10);
    CHECK_EQ_INT(atomic_load(&rec.n), 10);
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(rec.seq[i], i);
    io_loop_stop(loop);
    CHECK_EQ_INT(io_loop_post(loop, note, NULL), -ESHUTDOWN);
    io_loop_destroy(loop);
}

static struct io_timer *cancel_me;

static void start_timers(void *arg)
{
    struct io_loop *loop = arg;
    io_timer_start(loop, 30, note, (void *)3);
    io_timer_start(loop, 10, note, (void *)1);
    cancel_me = io_timer_start(loop, 20, note, (void *)99);
    io_timer_start(loop, 20, note, (void *)2);
    io_timer_cancel(loop, cancel_me);
}

TEST(timers_fire_in_deadline_order_and_cancel_works)
{
    struct io_loop *loop;
    CHECK_EQ_INT(io_loop_create(&loop), 0);
    CHECK_EQ_INT(io_loop_start(loop), 0);
    atomic_store(&rec.n, 0);
    int64_t t0 = clock_mono_ms();
    io_loop_post(loop, start_timers, loop);
    wait_for(3);
    usleep(50000);
    CHECK_EQ_INT(atomic_load(&rec.n), 3);
    CHECK_EQ_INT(rec.seq[0], 1);
    CHECK_EQ_INT(rec.seq[1], 2);
    CHECK_EQ_INT(rec.seq[2], 3);
    CHECK(clock_mono_ms() - t0 >= 30);
    io_loop_stop(loop);
    io_loop_destroy(loop);
}

static int pipefd[2];

static void on_readable(int fd, uint32_t events, void *arg)
{
    char c;
    if (read(fd, &c, 1) == 1) note((void *)(intptr_t)c);
    io_loop_unwatch(rec.loop, fd);
}

static void watch_pipe(void *arg) { io_loop_watch(rec.loop, pipefd[0], EPOLLIN, on_readable, NULL); }

TEST(fd_watch_calls_back_and_unwatch_silences)
{
    struct io_loop *loop;
    CHECK_EQ_INT(io_loop_create(&loop), 0);
    CHECK_EQ_INT(io_loop_start(loop), 0);
    rec.loop = loop;
    atomic_store(&rec.n, 0);
    CHECK_EQ_INT(pipe(pipefd), 0);
    io_loop_post(loop, watch_pipe, NULL);
    usleep(10000);
    CHECK_EQ_INT(write(pipefd[1], "AB", 2), 2);
    wait_for(1);
    usleep(20000);
    /* Unwatched after the first byte: the second byte is never delivered. */
    CHECK_EQ_INT(atomic_load(&rec.n), 1);
    CHECK_EQ_INT(rec.seq[0], 'A');
    io_loop_stop(loop);
    io_loop_destroy(loop);
    close(pipefd[0]);
    close(pipefd[1]);
}

int main(void)
{
    RUN(tasks_run_in_posting_order);
    RUN(timers_fire_in_deadline_order_and_cancel_works);
    RUN(fd_watch_calls_back_and_unwatch_silences);
    return TEST_SUMMARY();
}
