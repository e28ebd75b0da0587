/* fuzz_redis_reply - RESP reply handling through redis_conn's real read path.
 *
 * A fake Redis in this process (a loopback listener) accepts the connection,
 * answers the handshake PING, and then sends the input as the reply to one
 * GET (or, when the first byte is odd, as pub/sub pushes to a connection in
 * subscriber mode), then closes.  The connection must end the command either
 * way (a reply, or an error for a malformed / oversized / truncated one) and
 * never hang, crash or exceed its bounds.  Everything on the redis_conn side
 * runs on a real io_loop thread, as in the gateway. */
#include <stdio.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io_loop.h"
#include "redis_conn.h"

static struct io_loop *loop;
static int listen_fd = -1;
static int port;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static volatile unsigned message_sum;

struct run {
    struct redis_conn *conn;
    struct redis_conn_config cfg;
    bool subscriber;
    bool ready, down, answered, destroyed;
};

static void signal_locked(void)
{
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_state(void *arg, struct redis_conn *c, bool up, const char *reason)
{
    struct run *r = arg;
    pthread_mutex_lock(&mu);
    if (up) r->ready = true;
    else r->down = true;
    signal_locked();
}

static void on_reply(void *arg, const redisReply *reply, const char *err)
{
    struct run *r = arg;
    if ((reply == NULL) == (err == NULL)) abort(); /* exactly one of them */
    pthread_mutex_lock(&mu);
    r->answered = true;
    signal_locked();
}

static void on_message(void *arg, const char *channel, size_t channel_len, const char *payload,
                       size_t payload_len)
{
    /* Touch every byte so ASan sees any out-of-bounds view. */
    unsigned sum = 0;
    for (size_t i = 0; i < channel_len; i++) sum += (unsigned char)channel[i];
    for (size_t i = 0; i < payload_len; i++) sum += (unsigned char)payload[i];
    message_sum += sum;
}

static void task_connect(void *arg)
{
    struct run *r = arg;
    struct redis_addr a = {0};
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.sa;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.len = sizeof *sin;
    if (redis_conn_create(&r->cfg, on_state, r, &r->conn) != 0) abort();
    if (redis_conn_connect(r->conn, &a, 1) != 0) {
        pthread_mutex_lock(&mu);
        r->down = true;
        signal_locked();
    }
}

static void task_command(void *arg)
{
    struct run *r = arg;
    if (r->subscriber) {
        redis_conn_set_message_handler(r->conn, on_message, NULL);
        const char *argv[] = {"SUBSCRIBE", "cachegw:invalidate"};
        const size_t lens[] = {9, 18};
        if (redis_conn_command_argv(r->conn, 2, argv, lens, on_reply, r) != 0) {
            pthread_mutex_lock(&mu);
            r->answered = true;
            signal_locked();
        }
        return;
    }
    const char *argv[] = {"GET", "k"};
    const size_t lens[] = {3, 1};
    if (redis_conn_command_argv(r->conn, 2, argv, lens, on_reply, r) != 0) {
        pthread_mutex_lock(&mu);
        r->answered = true;
        signal_locked();
    }
}

static void task_destroy(void *arg)
{
    struct run *r = arg;
    redis_conn_destroy(r->conn);
    pthread_mutex_lock(&mu);
    r->destroyed = true;
    signal_locked();
}

static void wait_for(bool *flag, bool *or_flag)
{
    pthread_mutex_lock(&mu);
    while (!*flag && !(or_flag && *or_flag)) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

static void setup(void)
{
    if (io_loop_create(&loop) != 0 || io_loop_start(loop) != 0) abort();
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        listen(listen_fd, 16) != 0 || getsockname(listen_fd, (struct sockaddr *)&sin, &len) != 0)
        abort();
    port = ntohs(sin.sin_port);
}

/* Reads from fd until want has been seen (or the peer goes away). */
static void read_until(int fd, const char *want)
{
    char buf[4096];
    size_t have = 0;
    while (have < sizeof buf - 1) {
        ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
        if (n <= 0) return;
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, want)) return;
    }
}

static void write_all(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len > 0) {
        ssize_t n = send(fd, c, len, MSG_NOSIGNAL);
        if (n <= 0) return; /* the client closed on a protocol error: fine */
        c += n;
        len -= (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loop == NULL) setup();
    if (size == 0) return 0;
    struct run r = {.subscriber = data[0] & 1};
    r.cfg = (struct redis_conn_config){.loop = loop,
                                       .host = "127.0.0.1",
                                       .port = port,
                                       .connect_timeout_ms = 5000,
                                       .op_timeout_ms = 5000,
                                       .max_reply_bytes = 64 * 1024,
                                       .max_reply_elements = 4096};
    if (io_loop_post(loop, task_connect, &r) != 0) abort();
    int fd;
    /* A signal (the fuzzer's timers) may interrupt the wait: that is not a finding. */
    do fd = accept(listen_fd, NULL, NULL);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        fprintf(stderr, "fuzz_redis_reply: accept: %s\n", strerror(errno));
        abort();
    }
    read_until(fd, "PING\r\n");
    write_all(fd, "+PONG\r\n", 7);
    wait_for(&r.ready, &r.down);
    if (r.ready && !r.down) {
        if (io_loop_post(loop, task_command, &r) != 0) abort();
        read_until(fd, r.subscriber ? "invalidate\r\n" : "$1\r\nk\r\n");
        write_all(fd, data + 1, size - 1);
        /* End of the stream: a truncated reply must fail the command now, not
         * at its timeout. */
        shutdown(fd, SHUT_WR);
        wait_for(&r.answered, &r.down);
    }
    if (io_loop_post(loop, task_destroy, &r) != 0) abort();
    wait_for(&r.destroyed, NULL);
    close(fd);
    return 0;
}
