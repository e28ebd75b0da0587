/* redis_conn.c - see redis_conn.h.
 *
 * Re-entrancy: user callbacks run from inside our own event handlers, and may
 * queue commands, or close or destroy this connection.  Every handler therefore
 * (1) counts itself in c->depth so that destroy is deferred until the outermost
 * handler returns, and (2) remembers c->gen, bumped by every close, and stops
 * touching the connection's I/O state as soon as it changed.
 *
 * Timeouts: commands leave in FIFO order and all get the same op timeout, so
 * the oldest pending command always has the earliest deadline.  One timer per
 * connection is armed for the head's deadline; when it fires early (the head
 * was answered meanwhile) it simply re-arms for the new head.  No timer work is
 * done per reply. */
#include "redis_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "redis_sub_watch.h"
#include "tls.h"

struct pending {
    redis_reply_fn fn;
    void *arg;
    int64_t deadline_ms;
};

struct redis_conn {
    const struct redis_conn_config *cfg;
    redis_conn_state_fn on_state;
    void *state_arg;
    redis_message_fn on_message;
    void *message_arg;
    struct redis_sub_watch *sub_watch; /* subscriber input watch (redis_sub_watch.h), or NULL */
    bool sub_watch_fd; /* fd is published in watch */
    bool sub_watch_open; /* a read pass is open in watch */

    enum redis_conn_state state;
    uint64_t gen; /* bumped by every close: handlers compare it across callbacks */
    int fd;
    SSL *ssl;
    redisReader *reader;

    struct buf out;
    size_t out_off; /* bytes of out already written */

    struct pending *q; /* ring of pending callbacks */
    size_t q_cap, q_head, q_len;

    struct io_timer *connect_timer;
    struct io_timer *op_timer;
    int64_t op_timer_deadline_ms;
    int64_t connect_deadline_ms;

    struct redis_addr addrs[REDIS_CONN_MAX_ADDRS];
    size_t n_addrs, addr_idx;
    char addr_str[64]; /* the address being tried or in use, for messages */

    uint32_t watched; /* events registered with the loop, 0 when not watched */
    bool watching;
    uint32_t tls_want; /* handshake: what the TLS layer waits for */
    bool write_wants_read; /* TLS write blocked until the socket is readable */
    bool read_wants_write; /* TLS read blocked until the socket is writable */

    /* Reply bounds (see the header): hiredis calls our hooks, which count the
     * array elements of the reply being parsed and refuse past the bound. */
    redisReplyObjectFunctions hooks;
    redisReplyObjectFunctions *base_fn; /* hiredis's own functions, which we wrap */
    size_t reply_elements; /* elements announced by the arrays of the current reply */
    char violation[128]; /* set by a hook that refused: why */
    struct io_timer *read_timer; /* resumes reading after the read budget ran out */

    enum redis_conn_error err_kind;
    int depth;
    bool destroy_requested;
    int64_t last_read_ms;
    char reason[256];
};

/* ---- small helpers ---- */

static void set_reason(struct redis_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_reason(struct redis_conn *c, const char *fmt, ...)
{
    char tmp[sizeof c->reason];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(c->reason, tmp, sizeof tmp);
    c->err_kind = REDIS_CONN_ERR_CLOSED; /* the default; sites that know better override */
}

static void format_addr(const struct redis_addr *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&a->sa;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        port = ntohs(s->sin_port);
        snprintf(buf, len, "%s:%d", ip, port);
    } else if (a->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&a->sa;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        port = ntohs(s->sin6_port);
        snprintf(buf, len, "[%s]:%d", ip, port);
    } else {
        snprintf(buf, len, "?");
    }
}

/* ---- the pending queue (a ring) ---- */

static int q_push(struct redis_conn *c, redis_reply_fn fn, void *arg, int64_t deadline)
{
    if (c->q_len == c->q_cap) {
        size_t cap = c->q_cap ? c->q_cap * 2 : 16;
        struct pending *q = malloc(cap * sizeof *q);
        if (q == NULL) return -ENOMEM;
        for (size_t i = 0; i < c->q_len; i++) q[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = q;
        c->q_cap = cap;
        c->q_head = 0;
    }
    c->q[(c->q_head + c->q_len) % c->q_cap] =
        (struct pending){.fn = fn, .arg = arg, .deadline_ms = deadline};
    c->q_len++;
    return 0;
}

static struct pending q_pop(struct redis_conn *c)
{
    struct pending p = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    return p;
}

/* ---- teardown and failure ---- */

static void maybe_free(struct redis_conn *c);
static void on_io(int fd, uint32_t events, void *arg);

/* Releases every I/O resource; leaves the queue and callbacks alone. */
static void teardown(struct redis_conn *c)
{
    if (c->connect_timer) io_timer_cancel(c->cfg->loop, c->connect_timer);
    if (c->op_timer) io_timer_cancel(c->cfg->loop, c->op_timer);
    if (c->read_timer) io_timer_cancel(c->cfg->loop, c->read_timer);
    c->connect_timer = c->op_timer = c->read_timer = NULL;
    if (c->sub_watch) {
        /* Withdrawn before close() can hand the number to another socket; a
         * pass left open by a read that yielded is over (nothing more will be
         * read from this session). */
        if (c->sub_watch_fd) redis_sub_watch_remove_fd(c->sub_watch, c->fd);
        if (c->sub_watch_open) redis_sub_watch_end(c->sub_watch);
        c->sub_watch_fd = c->sub_watch_open = false;
    }
    if (c->fd >= 0) {
        if (c->watching) io_loop_unwatch(c->cfg->loop, c->fd);
        if (c->ssl) SSL_free(c->ssl);
        c->ssl = NULL;
        close(c->fd);
    }
    c->fd = -1;
    c->watching = false;
    c->watched = 0;
    if (c->reader) redisReaderFree(c->reader);
    c->reader = NULL;
    c->reply_elements = 0;
    c->violation[0] = '\0';
    /* Unsent (or sent) bytes may hold the AUTH command and its password. */
    if (c->out.data) memset(c->out.data, 0, c->out.cap);
    buf_free(&c->out);
    c->out_off = 0;
    c->write_wants_read = c->read_wants_write = false;
    c->tls_want = 0;
    c->state = REDIS_CONN_CLOSED;
    c->gen++;
}

/* Closes and fails every pending command with reply_err; calls the state
 * callback first (when notify) so that its owner stops routing commands here
 * before the failed commands' callbacks run (and perhaps retry elsewhere). */
static void fail_all(struct redis_conn *c, const char *reply_err, bool notify)
{
    struct pending *q = c->q;
    size_t cap = c->q_cap, head = c->q_head, len = c->q_len;
    c->q = NULL;
    c->q_cap = c->q_head = c->q_len = 0;
    teardown(c);

    char reason[sizeof c->reason];
    memcpy(reason, c->reason, sizeof reason);
    c->depth++;
    if (notify && c->on_state) c->on_state(c->state_arg, c, false, reason);
    for (size_t i = 0; i < len; i++) {
        struct pending *p = &q[(head + i) % cap];
        p->fn(p->arg, NULL, reply_err ? reply_err : reason);
    }
    c->depth--;
    free(q);
}

/* An internal failure: c->reason is set already. */
static void conn_fail(struct redis_conn *c, const char *reply_err)
{
    if (c->state == REDIS_CONN_CLOSED) return;
    LOG_D("redis: connection to %s: %s", c->addr_str, c->reason);
    fail_all(c, reply_err, true);
}

/* ---- watching ---- */

static bool out_pending(const struct redis_conn *c) { return c->out.len > c->out_off; }

static int update_watch(struct redis_conn *c)
{
    uint32_t ev = 0;
    switch (c->state) {
    case REDIS_CONN_CLOSED: return 0;
    case REDIS_CONN_CONNECTING: ev = EPOLLOUT; break;
    case REDIS_CONN_TLS: ev = c->tls_want; break;
    case REDIS_CONN_HANDSHAKE:
    case REDIS_CONN_READY:
        ev = EPOLLIN;
        if ((out_pending(c) && !c->write_wants_read) || c->read_wants_write) ev |= EPOLLOUT;
        break;
    }
    if (c->watching && ev == c->watched) return 0;
    int rc = io_loop_watch(c->cfg->loop, c->fd, ev, on_io, c);
    if (rc < 0) {
        set_reason(c, "cannot watch the socket: %s", strerror(-rc));
        return rc;
    }
    c->watching = true;
    c->watched = ev;
    return 0;
}

/* ---- connecting ---- */

static void set_socket_options(struct redis_conn *c, int fd)
{
    int one = 1;
    int idle = c->cfg->keepalive_idle_s > 0 ? c->cfg->keepalive_idle_s : 30;
    int intvl = 10, cnt = 3;
    /* Small commands must leave at once (see docs/design.md: a TLS record split in
     * two would otherwise wait for a delayed ACK). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

static const char *connect_errno_text(int e)
{
    switch (e) {
    case ECONNREFUSED: return "connection refused";
    case ETIMEDOUT: return "timeout";
    case EHOSTUNREACH: return "host unreachable";
    case ENETUNREACH: return "network unreachable";
    default: return strerror(e);
    }
}

/* Opens a socket to addrs[addr_idx], or the next one that does not fail at
 * once.  Returns 0 (CONNECTING, watched) or -errno with c->reason set. */
static int start_next_addr(struct redis_conn *c)
{
    int last = ECONNREFUSED;
    for (; c->addr_idx < c->n_addrs; c->addr_idx++) {
        const struct redis_addr *a = &c->addrs[c->addr_idx];
        format_addr(a, c->addr_str, sizeof c->addr_str);
        int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            last = errno;
            set_reason(c, "cannot create a socket: %s", strerror(last));
            continue;
        }
        set_socket_options(c, fd);
        if (connect(fd, (const struct sockaddr *)&a->sa, a->len) < 0 && errno != EINPROGRESS) {
            last = errno;
            set_reason(c, "%s (%s)", connect_errno_text(last), c->addr_str);
            if (last == ECONNREFUSED) c->err_kind = REDIS_CONN_ERR_REFUSED;
            close(fd);
            continue;
        }
        c->fd = fd;
        c->state = REDIS_CONN_CONNECTING;
        int rc = update_watch(c);
        if (rc < 0) {
            close(fd);
            c->fd = -1;
            c->watching = false;
            c->state = REDIS_CONN_CLOSED;
            return rc;
        }
        return 0;
    }
    return -last;
}

static void hs_auth_cb(void *arg, const redisReply *r, const char *err);
static void hs_select_cb(void *arg, const redisReply *r, const char *err);
static void hs_ping_cb(void *arg, const redisReply *r, const char *err);
static int enqueue(struct redis_conn *c, const char *cmd, size_t len, redis_reply_fn fn, void *arg,
                   int64_t deadline);
static void flush_and_read(struct redis_conn *c, uint32_t events);

/* TCP (and TLS) are up: pipeline AUTH, SELECT and PING in one write. */
static void begin_handshake(struct redis_conn *c)
{
    c->state = REDIS_CONN_HANDSHAKE;
    const struct redis_conn_config *cfg = c->cfg;
    char *cmd = NULL;
    int len, rc = 0;
    if (cfg->password != NULL) {
        const char *argv[3] = {"AUTH"};
        size_t lens[3] = {4};
        int argc = 1;
        if (cfg->user != NULL) {
            argv[argc] = cfg->user;
            lens[argc++] = strlen(cfg->user);
        }
        argv[argc] = cfg->password;
        lens[argc++] = strlen(cfg->password);
        len = redisFormatCommandArgv(&cmd, argc, argv, lens);
        rc =
            len < 0 ? -ENOMEM : enqueue(c, cmd, (size_t)len, hs_auth_cb, c, c->connect_deadline_ms);
        if (cmd) {
            /* The formatted command holds the password: wipe it. */
            memset(cmd, 0, len > 0 ? (size_t)len : 0);
            redisFreeCommand(cmd);
            cmd = NULL;
        }
    }
    if (rc == 0 && cfg->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", cfg->db);
        const char *argv[2] = {"SELECT", db};
        size_t lens[2] = {6, strlen(db)};
        len = redisFormatCommandArgv(&cmd, 2, argv, lens);
        rc = len < 0 ? -ENOMEM
                     : enqueue(c, cmd, (size_t)len, hs_select_cb, c, c->connect_deadline_ms);
        redisFreeCommand(cmd);
    }
    if (rc == 0) rc = enqueue(c, "*1\r\n$4\r\nPING\r\n", 14, hs_ping_cb, c, c->connect_deadline_ms);
    if (rc < 0) {
        set_reason(c, "cannot queue the connection handshake: %s", strerror(-rc));
        conn_fail(c, NULL);
        return;
    }
    flush_and_read(c, EPOLLOUT);
}

static void drive_tls(struct redis_conn *c)
{
    char err[200];
    uint32_t want = 0;
    int rc = tls_handshake(c->ssl, &want, err, sizeof err);
    if (rc == 0) {
        begin_handshake(c);
        return;
    }
    if (rc == -EAGAIN) {
        c->tls_want = want;
        if (update_watch(c) < 0) conn_fail(c, NULL);
        return;
    }
    if (rc == -EKEYREJECTED)
        set_reason(c, "TLS verification failed: %s (%s, host %s)", err, c->addr_str, c->cfg->host);
    else
        set_reason(c, "TLS handshake failed: %s (%s)", err, c->addr_str);
    conn_fail(c, NULL);
}

static void on_connected_or_failed(struct redis_conn *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    if (soerr != 0) {
        set_reason(c, "%s (%s)", connect_errno_text(soerr), c->addr_str);
        if (soerr == ECONNREFUSED) c->err_kind = REDIS_CONN_ERR_REFUSED;
        if (soerr == ETIMEDOUT) c->err_kind = REDIS_CONN_ERR_TIMEOUT;
        io_loop_unwatch(c->cfg->loop, c->fd);
        close(c->fd);
        c->fd = -1;
        c->watching = false;
        c->watched = 0;
        c->state = REDIS_CONN_CLOSED;
        c->addr_idx++;
        if (c->addr_idx < c->n_addrs) {
            char first[sizeof c->reason];
            memcpy(first, c->reason, sizeof first);
            if (start_next_addr(c) == 0) return;
            /* Report the first address's failure: it is the one users expect. */
            memcpy(c->reason, first, sizeof first);
        }
        /* CLOSED already: report by hand (conn_fail would ignore it). */
        c->state = REDIS_CONN_CONNECTING;
        conn_fail(c, NULL);
        return;
    }
    if (c->cfg->ssl_ctx != NULL) {
        char err[200];
        int rc = tls_client_new(c->cfg->ssl_ctx, c->fd, c->cfg->host, &c->ssl, err, sizeof err);
        if (rc < 0) {
            set_reason(c, "TLS setup failed: %s", err);
            conn_fail(c, NULL);
            return;
        }
        c->state = REDIS_CONN_TLS;
        drive_tls(c);
        return;
    }
    begin_handshake(c);
}

/* ---- the handshake replies ---- */

/* Copies a Redis error message for a reason, without ever echoing the
 * password (no Redis error does today; this keeps it so). */
static void safe_error_text(const struct redis_conn *c, const redisReply *r, char *buf, size_t len)
{
    snprintf(buf, len, "%.*s", (int)(r->len < 150 ? r->len : 150), r->str ? r->str : "");
    const char *pw = c->cfg->password;
    if (pw != NULL && *pw != '\0' && strstr(buf, pw) != NULL) snprintf(buf, len, "%s", "***");
}

static void hs_auth_cb(void *arg, const redisReply *r, const char *err)
{
    struct redis_conn *c = arg;
    if (err != NULL || r->type != REDIS_REPLY_ERROR) return;
    char text[160];
    safe_error_text(c, r, text, sizeof text);
    /* A server at maxclients answers the first command with an error too. */
    if (strstr(text, "max number of clients") != NULL)
        set_reason(c, "server refused the connection (%s)", text);
    else
        set_reason(c, "authentication failed (%s)", text);
    c->err_kind = strstr(text, "max number of clients") != NULL ? REDIS_CONN_ERR_REFUSED
                                                                 : REDIS_CONN_ERR_AUTH;
    conn_fail(c, NULL);
}

static void hs_select_cb(void *arg, const redisReply *r, const char *err)
{
    struct redis_conn *c = arg;
    if (err != NULL || r->type != REDIS_REPLY_ERROR || c->state == REDIS_CONN_CLOSED) return;
    char text[160];
    safe_error_text(c, r, text, sizeof text);
    set_reason(c, "SELECT %d failed (%s)", c->cfg->db, text);
    c->err_kind = REDIS_CONN_ERR_AUTH;
    conn_fail(c, NULL);
}

static void hs_ping_cb(void *arg, const redisReply *r, const char *err)
{
    struct redis_conn *c = arg;
    if (err != NULL || c->state != REDIS_CONN_HANDSHAKE) return;
    if (r->type == REDIS_REPLY_ERROR) {
        char text[160];
        safe_error_text(c, r, text, sizeof text);
        if (strncmp(text, "NOAUTH", 6) == 0 || strncmp(text, "WRONGPASS", 9) == 0)
            set_reason(c, "authentication failed (%s)", text);
        else if (strncmp(text, "NOPERM", 6) == 0)
            set_reason(c, "permission denied (%s)", text);
        else
            set_reason(c, "server not ready (%s)", text);
        c->err_kind = strncmp(text, "NOAUTH", 6) == 0 || strncmp(text, "WRONGPASS", 9) == 0 ||
                              strncmp(text, "NOPERM", 6) == 0
                          ? REDIS_CONN_ERR_AUTH
                          : REDIS_CONN_ERR_REFUSED;
        conn_fail(c, NULL);
        return;
    }
    if (c->connect_timer) io_timer_cancel(c->cfg->loop, c->connect_timer);
    c->connect_timer = NULL;
    c->state = REDIS_CONN_READY;
    if (c->sub_watch && !c->sub_watch_fd) {
        redis_sub_watch_add_fd(c->sub_watch, c->fd);
        c->sub_watch_fd = true;
    }
    c->reason[0] = '\0';
    c->err_kind = REDIS_CONN_ERR_NONE;
    if (c->on_state) c->on_state(c->state_arg, c, true, NULL);
}

/* ---- timers ---- */

static const char *phase(const struct redis_conn *c)
{
    switch (c->state) {
    case REDIS_CONN_CONNECTING: return "to the TCP connect";
    case REDIS_CONN_TLS: return "during the TLS handshake";
    default: return c->cfg->password ? "to AUTH and PING" : "to PING";
    }
}

static void set_connect_timeout_reason(struct redis_conn *c)
{
    set_reason(c, "timeout connecting (no answer within %d ms %s, %s)", c->cfg->connect_timeout_ms,
               phase(c), c->addr_str);
    c->err_kind = REDIS_CONN_ERR_TIMEOUT;
}

static void connect_timeout(void *arg)
{
    struct redis_conn *c = arg;
    c->connect_timer = NULL;
    c->depth++;
    set_connect_timeout_reason(c);
    conn_fail(c, NULL);
    c->depth--;
    maybe_free(c);
}

static void arm_op_timer(struct redis_conn *c);

static void op_timeout(void *arg)
{
    struct redis_conn *c = arg;
    c->op_timer = NULL;
    if (c->q_len == 0) return;
    int64_t now = clock_mono_ms();
    if (c->q[c->q_head].deadline_ms > now) {
        arm_op_timer(c);
        return;
    }
    c->depth++;
    if (c->state == REDIS_CONN_READY) {
        set_reason(c, "timeout (no reply within %d ms, %s)", c->cfg->op_timeout_ms, c->addr_str);
        c->err_kind = REDIS_CONN_ERR_TIMEOUT;
        conn_fail(c, REDIS_ERR_TIMEOUT);
    } else {
        set_connect_timeout_reason(c);
        conn_fail(c, NULL);
    }
    c->depth--;
    maybe_free(c);
}

/* Makes sure a timer fires no later than deadline (the head's, or that of a
 * command being queued).  Deadlines are FIFO-ordered except right after the
 * handshake, whose commands carry the connect deadline: then a timer armed
 * for a later deadline is replaced. */
static void arm_op_timer_for(struct redis_conn *c, int64_t deadline)
{
    if (c->op_timer != NULL) {
        if (c->op_timer_deadline_ms <= deadline) return;
        io_timer_cancel(c->cfg->loop, c->op_timer);
        c->op_timer = NULL;
    }
    int64_t d = deadline - clock_mono_ms();
    c->op_timer = io_timer_start(c->cfg->loop, d > 0 ? (uint64_t)d : 0, op_timeout, c);
    c->op_timer_deadline_ms = deadline;
    /* Without a timer (out of memory) the next enqueue tries again. */
}

static void arm_op_timer(struct redis_conn *c)
{
    if (c->q_len > 0) arm_op_timer_for(c, c->q[c->q_head].deadline_ms);
}

/* ---- writing ---- */

/* Writes as much of the output buffer as the socket takes.  Returns 0 or < 0
 * with c->reason set (the caller fails the connection). */
static int flush_out(struct redis_conn *c)
{
    c->write_wants_read = false;
    while (out_pending(c)) {
        const char *p = c->out.data + c->out_off;
        size_t n = c->out.len - c->out_off;
        ssize_t w;
        if (c->ssl) {
            char err[200];
            uint32_t want = 0;
            w = tls_write(c->ssl, p, n, &want, err, sizeof err);
            if (w == -EAGAIN) {
                c->write_wants_read = want == EPOLLIN;
                break;
            }
            if (w < 0) {
                set_reason(c, "%s (%s)", err, c->addr_str);
                return (int)w;
            }
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
                int e = errno;
                set_reason(c, "%s while writing (%s)",
                           e == EPIPE || e == ECONNRESET ? "connection closed by server"
                                                         : strerror(e),
                           c->addr_str);
                return -e;
            }
        }
        c->out_off += (size_t)w;
    }
    if (!out_pending(c)) {
        /* The handshake's bytes hold the password: do not leave them behind. */
        if (c->state == REDIS_CONN_HANDSHAKE && c->out.data) memset(c->out.data, 0, c->out.len);
        c->out.len = c->out_off = 0;
        /* Do not keep a large buffer around after a burst. */
        if (c->out.cap > 256 * 1024) buf_free(&c->out);
    } else if (c->out_off > c->out.len / 2) {
        memmove(c->out.data, c->out.data + c->out_off, c->out.len - c->out_off);
        c->out.len -= c->out_off;
        c->out_off = 0;
    }
    return 0;
}

/* ---- reading ---- */

static bool is_str(const redisReply *r, const char *s)
{
    size_t n = strlen(s);
    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->len == n &&
           strncasecmp(r->str, s, n) == 0;
}

/* Hands one reply to its owner.  May close the connection (caller checks gen). */
static void dispatch(struct redis_conn *c, redisReply *r)
{
    if (c->on_message && r->type == REDIS_REPLY_ARRAY) {
        const redisReply *ch = NULL, *payload = NULL;
        if (r->elements == 3 && is_str(r->element[0], "message")) {
            ch = r->element[1];
            payload = r->element[2];
        } else if (r->elements == 4 && is_str(r->element[0], "pmessage")) {
            ch = r->element[2];
            payload = r->element[3];
        }
        if (ch != NULL && ch->type == REDIS_REPLY_STRING && payload->type == REDIS_REPLY_STRING) {
            c->on_message(c->message_arg, ch->str, ch->len, payload->str, payload->len);
            freeReplyObject(r);
            return;
        }
    }
    if (c->q_len == 0) {
        freeReplyObject(r);
        set_reason(c, "protocol error: a reply nobody asked for (%s)", c->addr_str);
        c->err_kind = REDIS_CONN_ERR_PROTOCOL;
        conn_fail(c, NULL);
        return;
    }
    struct pending p = q_pop(c);
    p.fn(p.arg, r, NULL);
    freeReplyObject(r);
}

/* ---- reply bounds: hooks around hiredis's object functions ---- */

static size_t max_elements(const struct redis_conn *c)
{
    return c->cfg->max_reply_elements ? c->cfg->max_reply_elements
                                      : REDIS_CONN_DEFAULT_MAX_ELEMENTS;
}

/* hiredis 0.14 allocates `elements` pointers as soon as it has read an array
 * header: refuse a count over the bound before that happens.  Returning NULL
 * makes the reader fail (it reports "out of memory"; c->violation says why). */
static void *hook_create_array(const redisReadTask *task, int elements)
{
    struct redis_conn *c = task->privdata;
    size_t n = elements > 0 ? (size_t)elements : 0;
    if (n > max_elements(c) || c->reply_elements + n > max_elements(c)) {
        snprintf(c->violation, sizeof c->violation,
                 "an array of %d elements (%zu already in this reply, at most %zu)", elements,
                 c->reply_elements, max_elements(c));
        return NULL;
    }
    c->reply_elements += n;
    return c->base_fn->createArray(task, elements);
}

/* After a feed that left a reply incomplete: when the reader waits in the
 * middle of a bulk string, the bytes at its cursor are the announced length
 * (hiredis has consumed the '$').  Refuse a length over the bound now, before
 * the buffer grows towards it.  Returns false (violation set) when over. */
static bool bulk_header_ok(struct redis_conn *c)
{
    const redisReader *r = c->reader;
    if (c->cfg->max_reply_bytes == 0 || r->ridx < 0 || r->ridx > 8) return true;
    if (r->rstack[r->ridx].type != REDIS_REPLY_STRING || r->pos >= r->len) return true;
    unsigned long long len = 0;
    for (size_t i = r->pos; i < r->len && i - r->pos < 24; i++) {
        char ch = r->buf[i];
        if (ch < '0' || ch > '9') break;
        len = len * 10 + (unsigned long long)(ch - '0');
        if (len > c->cfg->max_reply_bytes) {
            snprintf(c->violation, sizeof c->violation,
                     "a bulk string of more than %zu bytes announced", c->cfg->max_reply_bytes);
            return false;
        }
    }
    return true;
}

static void protocol_violation(struct redis_conn *c)
{
    set_reason(c, "protocol error: reply over the bounds: %s (%s)", c->violation, c->addr_str);
    c->err_kind = REDIS_CONN_ERR_PROTOCOL;
    conn_fail(c, NULL);
}

static void flush_and_read(struct redis_conn *c, uint32_t events);

/* The read budget ran out with bytes perhaps still waiting (in the socket, or
 * in OpenSSL's buffer, which epoll does not see): go on reading now that the
 * loop had its turn. */
static void resume_read(void *arg)
{
    struct redis_conn *c = arg;
    c->read_timer = NULL;
    c->depth++;
    if (c->state == REDIS_CONN_HANDSHAKE || c->state == REDIS_CONN_READY)
        flush_and_read(c, EPOLLIN);
    c->depth--;
    maybe_free(c);
}

/* Reads and dispatches until the socket would block or the read budget for
 * this wake-up is spent.  May close. */
static void read_in_pass(struct redis_conn *c)
{
    uint64_t gen = c->gen;
    char buf[16384];
    size_t budget = REDIS_CONN_READ_BUDGET;
    c->read_wants_write = false;
    for (;;) {
        if (budget == 0) {
            /* Yield: a server that never stops sending must not keep the loop
             * (and every timer on it, the op timeout included) from running. */
            if (c->read_timer == NULL)
                c->read_timer = io_timer_start(c->cfg->loop, 0, resume_read, c);
            return;
        }
        ssize_t n;
        char err[200] = "";
        size_t want_bytes = budget < sizeof buf ? budget : sizeof buf;
        if (c->ssl) {
            uint32_t want = 0;
            n = tls_read(c->ssl, buf, want_bytes, &want, err, sizeof err);
            if (n == -EAGAIN) {
                c->read_wants_write = want == EPOLLOUT;
                return;
            }
        } else {
            n = recv(c->fd, buf, want_bytes, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
                n = -errno;
                snprintf(err, sizeof err, "%s while reading",
                         n == -ECONNRESET ? "connection reset by server" : strerror(errno));
            }
        }
        if (n == 0) {
            set_reason(c, "connection closed by server (%s)", c->addr_str);
            conn_fail(c, NULL);
            return;
        }
        if (n < 0) {
            set_reason(c, "%s (%s)", err, c->addr_str);
            conn_fail(c, NULL);
            return;
        }
        budget -= (size_t)n;
        c->last_read_ms = clock_mono_ms();
        if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
            set_reason(c, "out of memory reading a reply");
            conn_fail(c, NULL);
            return;
        }
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
                if (c->violation[0]) {
                    protocol_violation(c);
                    return;
                }
                set_reason(c, "protocol error: %s (%s)", c->reader->errstr, c->addr_str);
                c->err_kind = REDIS_CONN_ERR_PROTOCOL;
                conn_fail(c, NULL);
                return;
            }
            if (reply == NULL) break;
            c->reply_elements = 0; /* the bound is per reply */
            dispatch(c, reply);
            if (c->gen != gen) return;
        }
        if (!bulk_header_ok(c)) {
            protocol_violation(c);
            return;
        }
        if (c->cfg->max_reply_bytes && c->reader->len - c->reader->pos > c->cfg->max_reply_bytes) {
            set_reason(c, "protocol error: reply larger than %zu bytes (%s)",
                       c->cfg->max_reply_bytes, c->addr_str);
            c->err_kind = REDIS_CONN_ERR_PROTOCOL;
            conn_fail(c, NULL);
            return;
        }
    }
}

/* read_in_pass, bracketed for the subscriber input watch: a pass is open from
 * before the first read until what was read has been dispatched (applied by
 * the message handler) and the socket would block; a pass that yielded to the
 * read budget stays open until resume_read finishes it (bytes may wait in
 * OpenSSL's buffer meanwhile, where a poll() on the socket cannot see them). */
static void read_in(struct redis_conn *c)
{
    struct redis_sub_watch *w = c->sub_watch;
    if (w == NULL) {
        read_in_pass(c);
        return;
    }
    if (!c->sub_watch_open) redis_sub_watch_begin(w);
    c->sub_watch_open = true;
    read_in_pass(c);
    /* Closed meanwhile: teardown ended the pass already. */
    if (c->sub_watch_open && c->read_timer == NULL) {
        c->sub_watch_open = false;
        redis_sub_watch_end(w);
    }
}

static void flush_and_read(struct redis_conn *c, uint32_t events)
{
    uint64_t gen = c->gen;
    if (out_pending(c) && flush_out(c) < 0) {
        conn_fail(c, NULL);
        return;
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || c->read_wants_write || c->ssl) {
        /* With TLS, a write may have pulled in records that epoll will not
         * report again (they sit in OpenSSL's buffer): always try to read. */
        read_in(c);
        if (c->gen != gen) return;
    }
    /* A reply callback may have queued more. */
    if (out_pending(c) && flush_out(c) < 0) {
        conn_fail(c, NULL);
        return;
    }
    if (update_watch(c) < 0) conn_fail(c, NULL);
}

static void on_io(int fd, uint32_t events, void *arg)
{
    struct redis_conn *c = arg;
    c->depth++;
    switch (c->state) {
    case REDIS_CONN_CONNECTING: on_connected_or_failed(c); break;
    case REDIS_CONN_TLS: drive_tls(c); break;
    case REDIS_CONN_HANDSHAKE:
    case REDIS_CONN_READY: flush_and_read(c, events); break;
    case REDIS_CONN_CLOSED: break;
    }
    c->depth--;
    maybe_free(c);
}

/* ---- queueing ---- */

static int enqueue(struct redis_conn *c, const char *cmd, size_t len, redis_reply_fn fn, void *arg,
                   int64_t deadline)
{
    if (c->cfg->max_pending && c->q_len >= c->cfg->max_pending) return -ENOBUFS;
    if (c->cfg->max_output_bytes && out_pending(c) &&
        c->out.len - c->out_off + len > c->cfg->max_output_bytes)
        return -ENOBUFS;
    size_t old_len = c->out.len;
    if (buf_append(&c->out, cmd, len) < 0) return -ENOMEM;
    if (q_push(c, fn, arg, deadline) < 0) {
        c->out.len = old_len;
        return -ENOMEM;
    }
    arm_op_timer_for(c, deadline);
    return 0;
}

static int command_common(struct redis_conn *c, const char *cmd, size_t len, redis_reply_fn fn,
                          void *arg)
{
    if (c->state != REDIS_CONN_READY && c->state != REDIS_CONN_HANDSHAKE) return -ENOTCONN;
    int rc = enqueue(c, cmd, len, fn, arg, clock_mono_ms() + c->cfg->op_timeout_ms);
    if (rc < 0) return rc;
    if (c->depth == 0 && c->state == REDIS_CONN_READY && !c->write_wants_read &&
        !c->read_wants_write) {
        /* Outside our own handlers: write now and save two epoll_ctl calls.
         * A write error is left for the event handler to report (the unsent
         * bytes keep EPOLLOUT armed, and the broken socket reports at once),
         * so that no callback ever runs inside this call. */
        (void)flush_out(c);
    }
    update_watch(c);
    return 0;
}

int redis_conn_command_raw(struct redis_conn *c, const char *cmd, size_t len, redis_reply_fn fn,
                           void *arg)
{
    if (fn == NULL || len == 0) return -EINVAL;
    return command_common(c, cmd, len, fn, arg);
}

int redis_conn_command_argv(struct redis_conn *c, int argc, const char **argv, const size_t *lens,
                            redis_reply_fn fn, void *arg)
{
    if (fn == NULL || argc < 1) return -EINVAL;
    if (c->state != REDIS_CONN_READY && c->state != REDIS_CONN_HANDSHAKE) return -ENOTCONN;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) return -ENOMEM;
    int rc = command_common(c, cmd, (size_t)len, fn, arg);
    redisFreeCommand(cmd);
    return rc;
}

/* ---- life cycle ---- */

int redis_conn_create(const struct redis_conn_config *cfg, redis_conn_state_fn on_state, void *arg,
                      struct redis_conn **out)
{
    struct redis_conn *c = calloc(1, sizeof *c);
    if (c == NULL) return -ENOMEM;
    c->cfg = cfg;
    c->on_state = on_state;
    c->state_arg = arg;
    c->fd = -1;
    *out = c;
    return 0;
}

int redis_conn_connect(struct redis_conn *c, const struct redis_addr *addrs, size_t n)
{
    if (c->state != REDIS_CONN_CLOSED) {
        set_reason(c, "already connecting or connected");
        return -EBUSY;
    }
    if (n == 0) {
        set_reason(c, "no address to connect to");
        return -EDESTADDRREQ;
    }
    if (n > REDIS_CONN_MAX_ADDRS) n = REDIS_CONN_MAX_ADDRS;
    memcpy(c->addrs, addrs, n * sizeof *addrs);
    c->n_addrs = n;
    c->addr_idx = 0;
    c->reader = redisReaderCreate();
    if (c->reader == NULL) {
        set_reason(c, "out of memory");
        return -ENOMEM;
    }
    /* Wrap hiredis's object functions (the replies stay ordinary redisReply
     * objects, freed with freeReplyObject) to bound arrays as they are parsed. */
    c->base_fn = c->reader->fn;
    c->hooks = *c->base_fn;
    c->hooks.createArray = hook_create_array;
    c->reader->fn = &c->hooks;
    c->reader->privdata = c;
    c->reply_elements = 0;
    c->violation[0] = '\0';
    c->connect_deadline_ms = clock_mono_ms() + c->cfg->connect_timeout_ms;
    int rc = start_next_addr(c);
    if (rc < 0) {
        char reason[sizeof c->reason];
        memcpy(reason, c->reason, sizeof reason);
        teardown(c);
        memcpy(c->reason, reason, sizeof reason);
        return rc;
    }
    c->connect_timer =
        io_timer_start(c->cfg->loop, (uint64_t)c->cfg->connect_timeout_ms, connect_timeout, c);
    if (c->connect_timer == NULL) {
        teardown(c);
        set_reason(c, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

void redis_conn_close(struct redis_conn *c, const char *reason)
{
    if (c->state == REDIS_CONN_CLOSED && c->q_len == 0) return;
    set_reason(c, "%s", reason ? reason : "connection closed");
    c->depth++;
    fail_all(c, NULL, false);
    c->depth--;
    maybe_free(c);
}

static void maybe_free(struct redis_conn *c)
{
    if (c->depth > 0 || !c->destroy_requested) return;
    free(c->q);
    free(c);
}

void redis_conn_destroy(struct redis_conn *c)
{
    if (c == NULL) return;
    c->destroy_requested = true;
    c->depth++;
    if (c->state != REDIS_CONN_CLOSED || c->q_len > 0) {
        set_reason(c, "connection closed");
        fail_all(c, NULL, false);
    }
    c->depth--;
    maybe_free(c);
}

void redis_conn_set_message_handler(struct redis_conn *c, redis_message_fn fn, void *arg)
{
    c->on_message = fn;
    c->message_arg = arg;
}

void redis_conn_set_sub_watch(struct redis_conn *c, struct redis_sub_watch *w)
{
    if (c->sub_watch == w) return;
    if (c->sub_watch) {
        if (c->sub_watch_fd) redis_sub_watch_remove_fd(c->sub_watch, c->fd);
        if (c->sub_watch_open) redis_sub_watch_end(c->sub_watch);
    }
    c->sub_watch = w;
    c->sub_watch_fd = c->sub_watch_open = false;
    if (w && c->state == REDIS_CONN_READY) {
        redis_sub_watch_add_fd(w, c->fd);
        c->sub_watch_fd = true;
    }
}

enum redis_conn_state redis_conn_get_state(const struct redis_conn *c) { return c->state; }
size_t redis_conn_pending(const struct redis_conn *c) { return c->q_len; }
const char *redis_conn_reason(const struct redis_conn *c) { return c->reason; }
enum redis_conn_error redis_conn_error_kind(const struct redis_conn *c) { return c->err_kind; }
int64_t redis_conn_last_read_ms(const struct redis_conn *c) { return c->last_read_ms; }
