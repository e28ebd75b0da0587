/*
 * test_redis_conn_bounds.c - replies from a hostile server (issue 8, item 18).
 *
 * A scripted server thread in this process answers PING with +PONG and every
 * other command with a hostile byte stream: an array header announcing 2^31-1
 * elements followed by an endless stream of ":1\r\n", a bulk string header
 * announcing 2 GB, or a huge valid reply sent as fast as the socket takes it.
 * The real pool (redis_pool over redis_conn) talks to it on loopback.
 *
 * Before replies were bounded as they were parsed, the first case kept the
 * I/O thread in its read loop for good (no timeout could fire) while hiredis
 * allocated from the header alone: these tests then hang, and fail on their
 * deadline.  No redis-server is needed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "test_redis_helpers.h"

enum script { ENDLESS_ARRAY, HUGE_BULK, NESTED_ARRAYS, BIG_VALID_BULK };

struct fake {
    int listen_fd;
    int port;
    enum script script;
    pthread_t thread;
    atomic_bool stop;
    atomic_size_t sent; /* hostile bytes sent */
};

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Streams the hostile answer until the client closes or stop is set. */
static void hostile(struct fake *f, int fd)
{
    static char chunk[65536];
    size_t fill = 0;
    switch (f->script) {
    case ENDLESS_ARRAY:
        if (!send_all(fd, "*2147483647\r\n", 13)) return;
        for (fill = 0; fill + 4 <= sizeof chunk; fill += 4) memcpy(chunk + fill, ":1\r\n", 4);
        break;
    case HUGE_BULK:
        if (!send_all(fd, "$2147483000\r\n", 13)) return;
        memset(chunk, 'x', sizeof chunk);
        fill = sizeof chunk;
        break;
    case NESTED_ARRAYS:
        /* Each header is within the per-array bound; together they are not. */
        for (fill = 0; fill + 9 <= sizeof chunk; fill += 9) memcpy(chunk + fill, "*600000\r\n", 9);
        break;
    case BIG_VALID_BULK: {
        /* 48 MiB: legal (under the 64 MiB bound), just long to read. */
        size_t total = 48u << 20;
        if (!send_all(fd, "$50331648\r\n", 11)) return;
        memset(chunk, 'v', sizeof chunk);
        while (total > 0 && !atomic_load(&f->stop)) {
            size_t n = total < sizeof chunk ? total : sizeof chunk;
            if (!send_all(fd, chunk, n)) return;
            atomic_fetch_add(&f->sent, n);
            total -= n;
        }
        send_all(fd, "\r\n", 2);
        return;
    }
    }
    while (!atomic_load(&f->stop)) {
        if (!send_all(fd, chunk, fill)) return;
        atomic_fetch_add(&f->sent, fill);
    }
}

static void *fake_thread(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        int fd = accept(f->listen_fd, NULL, NULL);
        if (fd < 0) continue;
        struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[4096];
        while (!atomic_load(&f->stop)) {
            ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
            if (n == 0) break;
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                break;
            }
            buf[n] = '\0';
            char *get = strstr(buf, "GET");
            /* PINGs only (the handshake, the first latency probe), answered
             * in order: a probe that arrived in the same read as the GET is
             * answered before it, or the bulk would go to the probe. */
            if (get != NULL) *get = '\0';
            for (const char *p = buf; (p = strstr(p, "PING")) != NULL; p += 4)
                if (!send_all(fd, "+PONG\r\n", 7)) break;
            if (get != NULL) {
                hostile(f, fd);
                /* Half-close and drain instead of closing: a close() with
                 * unread bytes (a latency PING the pool pipelined meanwhile)
                 * sends RST, and the client would lose the reply's tail. */
                shutdown(fd, SHUT_WR);
                while (!atomic_load(&f->stop)) {
                    ssize_t m = recv(fd, buf, sizeof buf, 0);
                    if (m == 0 || (m < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                        break;
                }
                break;
            }
        }
        close(fd);
    }
    return NULL;
}

static void fake_start(struct fake *f, enum script script)
{
    memset(f, 0, sizeof *f);
    f->script = script;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_EQ_INT(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    CHECK_EQ_INT(listen(f->listen_fd, 16), 0);
    socklen_t len = sizeof sa;
    getsockname(f->listen_fd, (struct sockaddr *)&sa, &len);
    f->port = ntohs(sa.sin_port);
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(f->listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    pthread_create(&f->thread, NULL, fake_thread, f);
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
}

static long rss_kib(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1) break;
    if (fp) fclose(fp);
    return kib;
}

static void start_pool(struct env *e, struct fake *f, int op_timeout_ms)
{
    char url[64], err[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", f->port);
    env_loop(e);
    struct redis_pool_options o = {.pool_size = 1, .op_timeout_ms = op_timeout_ms, .retries = 0};
    CHECK_EQ_INT(env_pool(e, url, o, err, sizeof err), 0);
    CHECK(wait_until(pred_available, e->pool, 3000) >= 0);
}

/* Sends GET, expects a protocol error (never a reply) well before the op
 * timeout, with RSS bounded. */
static void expect_protocol_error(enum script script, const char *why)
{
    struct fake f;
    fake_start(&f, script);
    struct env e;
    start_pool(&e, &f, 3000);
    long rss0 = rss_kib();
    struct cmd c;
    CMD(&c, &e, 5000, "GET", "k");
    CHECK(c.answered);
    CHECK_EQ_INT(c.type, 0);
    CHECK(strstr(c.err, "protocol error") != NULL);
    CHECK(strstr(c.err, why) != NULL);
    CHECK(strstr(c.err, "127.0.0.1:") != NULL); /* names the node */
    int64_t ms = (c.t_done_us - c.t_sent_us) / 1000;
    fprintf(stderr, "  %s: failed in %lld ms (%s), RSS +%ld KiB, %zu hostile bytes sent\n", why,
            (long long)ms, c.err, rss_kib() - rss0, atomic_load(&f.sent));
    CHECK(ms < 1500); /* well before the 3 s op timeout: refused as parsed */
    CHECK(rss_kib() - rss0 < 64 * 1024);
    env_free(&e);
    fake_stop(&f);
}

TEST(endless_array_is_a_protocol_error_at_its_header)
{
    expect_protocol_error(ENDLESS_ARRAY, "an array of 2147483647 elements");
}

TEST(huge_bulk_length_is_a_protocol_error_at_its_header)
{
    expect_protocol_error(HUGE_BULK, "bulk string of more than");
}

TEST(arrays_of_one_reply_share_one_element_bound)
{
    /* 600,000 < 1 Mi per array, but the second one takes the reply past it. */
    expect_protocol_error(NESTED_ARRAYS, "600000 already in this reply");
}

struct tick {
    struct io_loop *loop;
    int64_t scheduled_us, ran_us;
    sem_t done;
};

static void tick_fire(void *arg)
{
    struct tick *t = arg;
    t->ran_us = now_us();
    sem_post(&t->done);
}

static void tick_arm(void *arg)
{
    struct tick *t = arg;
    t->scheduled_us = now_us();
    io_timer_start(t->loop, 0, tick_fire, t);
}

TEST(a_long_reply_does_not_keep_the_loop)
{
    /* While 48 MiB stream in, a timer due now still fires promptly: the read
     * loop yields after its budget instead of reading until EAGAIN. */
    struct fake f;
    fake_start(&f, BIG_VALID_BULK);
    struct env e;
    start_pool(&e, &f, 30000);
    struct cmd c;
    memset(&c, 0, sizeof c);
    c.pool = e.pool;
    c.argc = 2;
    c.argv[0] = "GET";
    c.argv[1] = "k";
    c.lens[0] = 3;
    c.lens[1] = 1;
    sem_init(&c.done, 0, 0);
    io_loop_post(e.loop, cmd_task, &c);
    while (atomic_load(&f.sent) < (4u << 20)) sleep_ms(1);
    int64_t worst = 0;
    for (int i = 0; i < 20 && atomic_load(&f.sent) < (40u << 20); i++) {
        struct tick t = {.loop = e.loop};
        sem_init(&t.done, 0, 0);
        io_loop_post(e.loop, tick_arm, &t);
        CHECK(sem_wait_ms(&t.done, 5000));
        if (t.ran_us - t.scheduled_us > worst) worst = t.ran_us - t.scheduled_us;
        sem_destroy(&t.done);
    }
    CHECK(sem_wait_ms(&c.done, 30000));
    fprintf(stderr, "  48 MiB read in %lld ms%s%s\n", (long long)(c.t_done_us - c.t_sent_us) / 1000,
            c.err[0] ? ", error: " : "", c.err);
    CHECK_EQ_INT(c.type, REDIS_REPLY_STRING);
    CHECK(c.len == 48u << 20);
    fprintf(stderr, "  worst timer delay while streaming: %lld us\n", (long long)worst);
    CHECK(worst < 200 * 1000);
    env_free(&e);
    fake_stop(&f);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(endless_array_is_a_protocol_error_at_its_header);
    RUN(huge_bulk_length_is_a_protocol_error_at_its_header);
    RUN(arrays_of_one_reply_share_one_element_bound);
    RUN(a_long_reply_does_not_keep_the_loop);
    return TEST_SUMMARY();
}
