/* h1_server.c - see h1_server.h.
 *
 * A connection is one state machine, run by conn_run on its worker whenever
 * something may have changed (an epoll event, a resume, the end of a handler
 * call):
 *
 *   HEAD     reading the head; on its end: parse, request_begin, first call
 *   BODY     reading the body (Content-Length or chunked) and handing it over
 *   HANDLER  the body is complete: the final call (and the calls after resumes)
 *   WRITE    sending the queued answer; then the next request (pipelined
 *            bytes first) or the close
 *   LINGER   the answer of a closing connection is sent: reading and dropping
 *            what the client still sends, for a short while, then close
 *
 * I/O is non-blocking and edge-triggered: a state reads or writes until the
 * kernel says EAGAIN, and otherwise waits for the next event.  A read that
 * returned less than asked is taken as draining the socket (a new arrival
 * raises a new edge), so a keep-alive request costs one recv and one sendmsg.
 *
 * The read buffer holds the head (its strings are parsed in place and must not
 * move while the request lives), grown up to max_head while a head is read.
 * A body has its own buffer, so the head stays put; bytes read past the end of
 * a request are the next one and move to the front when it ends. */
#include "h1_server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define HEAD_BUF_INITIAL 4096
#define BODY_BUF_SIZE (16 * 1024)
#define OUT_BUF_INITIAL 1024
#define H1_INLINE_BODY 4096 /* bodies up to this are copied after the head */
#define LINGER_MS 2000
#define ACCEPT_BATCH 32

enum cstate { CS_HEAD, CS_BODY, CS_HANDLER, CS_WRITE, CS_LINGER };
enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };

struct h1_worker;

struct h1_conn {
    struct h1_worker *w;
    struct h1_conn *prev, *next; /* the worker's connections */
    struct h1_conn *rq_next;     /* the worker's resume queue (under its lock) */
    struct h1_conn *run_next;    /* the resumes being run (worker only) */
    bool rq_queued;
    int fd;
    char ip[INET6_ADDRSTRLEN];
    void *ctx;
    enum cstate st;
    bool suspended;
    bool readable;  /* the socket may hold unread bytes */
    bool writable;  /* the last write did not hit EAGAIN */
    bool peer_gone; /* read EOF or error */
    bool closing;   /* close once the answer is sent */
    bool first_call;
    int64_t last_io_ms;
    int64_t linger_until_ms;

    /* The head (and, between requests, the next one's first bytes). */
    char *buf;
    size_t cap, len, scan, head_len;
    struct h1_head head;
    void *req;        /* the handlers' request (request_begin), NULL when none */
    bool head_only;   /* HEAD: the answer has no body */

    /* The body. */
    enum body_kind body;
    bool framing_bad;
    bool expect_continue;
    uint64_t body_length; /* its Content-Length (h1_conn_body_length) */
    uint64_t body_left;
    struct h1_chunked ch;
    char *bbuf;       /* body bytes, then the next request's */
    size_t bcap, blen, bpos;
    const char *pend; /* decoded body bytes the handler has not taken */
    size_t pend_len;
    bool body_done;

    /* The answer. */
    struct h1_response *resp;
    char *out;
    size_t out_cap, out_len;
    struct iovec iov[3];
    int niov;
    bool chunked_out;
    uint64_t rpos;    /* reader: bytes produced */
    bool rdone;
    char *blk;        /* reader's block, with room for chunk framing */
    size_t blk_cap;
};

struct h1_worker {
    struct h1_server *s;
    pthread_t thread;
    int epfd, evfd;
    pthread_mutex_t lock;
    struct h1_conn *rq_head; /* resume queue */
    bool rq_signalled;
    struct h1_conn *conns;
    int64_t last_sweep_ms;
    char date[64];           /* "Date: ...\r\n" for date_sec */
    size_t date_len;
    time_t date_sec;
};

struct h1_server {
    struct h1_server_config cfg;
    struct h1_handlers h;
    int lfd;
    unsigned n_workers;
    struct h1_worker *workers;
    atomic_uint conns;
    atomic_bool stop;
};

/* Timeouts are whole seconds: the coarse clock (a few ms of resolution) is enough, and
 * it is read on every recv and send. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- connections ---- */

static void conn_release_request(struct h1_conn *c, bool ok)
{
    void *req = c->req;
    c->req = NULL;
    if (req != NULL) c->w->s->h.completed(c->w->s->h.cls, c, req, ok);
    h1_response_unref(c->resp);
    c->resp = NULL;
    free(c->bbuf);
    c->bbuf = NULL;
    c->bcap = c->blen = c->bpos = 0;
}

static void conn_free(struct h1_conn *c)
{
    struct h1_worker *w = c->w;
    struct h1_server *s = w->s;
    conn_release_request(c, false);
    if (s->h.conn_close) s->h.conn_close(s->h.cls, c);
    close(c->fd);
    if (c->prev) c->prev->next = c->next;
    else w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    pthread_mutex_lock(&w->lock);
    if (c->rq_queued) {
        struct h1_conn **pp = &w->rq_head;
        while (*pp && *pp != c) pp = &(*pp)->rq_next;
        if (*pp) *pp = c->rq_next;
    }
    pthread_mutex_unlock(&w->lock);
    free(c->buf);
    free(c->out);
    free(c->blk);
    free(c);
    atomic_fetch_sub(&s->conns, 1);
}

/* The answer of a closing connection is out: stop sending, drop what still
 * arrives for a while (a client writing a body it was refused for would get a
 * reset instead of the answer if the socket closed with unread bytes). */
static void conn_linger(struct h1_conn *c)
{
    conn_release_request(c, true);
    shutdown(c->fd, SHUT_WR);
    c->st = CS_LINGER;
    c->linger_until_ms = now_ms() + LINGER_MS;
}

/* Reads into buf[*len..cap).  Returns bytes read, 0 when nothing is there now
 * (or the buffer is full), -1 when the peer is gone. */
static ssize_t conn_read(struct h1_conn *c, char *buf, size_t *len, size_t cap)
{
    if (!c->readable || *len >= cap) return 0;
    ssize_t n = recv(c->fd, buf + *len, cap - *len, 0);
    if (n > 0) {
        if ((size_t)n < cap - *len) c->readable = false;
        *len += (size_t)n;
        c->last_io_ms = now_ms();
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c->readable = errno == EINTR;
        return 0;
    }
    c->peer_gone = true;
    return -1;
}

/* ---- the head ---- */

/* Whether any line of field lists token (headers.h's list reading). */
static bool has_token(const struct h1_head *h, const char *field, const char *token)
{
    for (size_t i = 0; i < h->n_fields; i++)
        if (headers_name_is(h->fields[i].name, field) &&
            headers_has_token(h->fields[i].value, token))
            return true;
    return false;
}

/* Body framing from the head (RFC 9112 §6).  The validator refuses conflicting
 * framing in the first handler call; framing_bad makes sure a request whose
 * framing is unclear is never read as anything, even if it were not refused. */
static void read_framing(struct h1_conn *c)
{
    const struct h1_head *h = &c->head;
    size_t te = 0, cl = 0;
    bool cl_differ = false;
    const char *te_value = NULL, *cl_value = NULL;
    for (size_t i = 0; i < h->n_fields; i++) {
        if (headers_name_is(h->fields[i].name, "transfer-encoding")) {
            te++;
            te_value = h->fields[i].value;
        } else if (headers_name_is(h->fields[i].name, "content-length")) {
            /* Equal repeats are one length (RFC 9112 §6.3, as the validator reads them). */
            if (cl_value != NULL && strcmp(cl_value, h->fields[i].value) != 0) cl_differ = true;
            cl++;
            cl_value = h->fields[i].value;
        }
    }
    c->body = BODY_NONE;
    c->body_length = c->body_left = 0;
    c->framing_bad = false;
    memset(&c->ch, 0, sizeof c->ch);
    if (te > 0) {
        c->body = BODY_CHUNKED;
        c->framing_bad = te != 1 || cl != 0 || strcasecmp(te_value, "chunked") != 0;
    } else if (cl > 0) {
        uint64_t n = 0;
        c->framing_bad = cl_differ || h1_content_length(cl_value, &n) != 0;
        c->body = n > 0 ? BODY_LENGTH : BODY_NONE;
        c->body_length = c->body_left = n;
    }
    c->body_done = c->body == BODY_NONE;
    c->expect_continue = c->head.minor >= 1 && c->body != BODY_NONE &&
                         has_token(h, "expect", "100-continue");
}

/* The head in buf[0..head_len) is complete, or (oversize != 0) it outgrew max_head and is
 * refused with that status: the request begins either way, so every refusal is answered
 * by the handler. */
static void conn_begin_request(struct h1_conn *c, int oversize, const char *reason)
{
    struct h1_server *s = c->w->s;
    struct h1_head *h = &c->head;
    if (oversize != 0) {
        memset(h, 0, sizeof *h);
        h->status = oversize;
        h->reason = reason;
    } else {
        h1_parse_head(c->buf, c->head_len, h);
    }
    c->head_only = h->method != NULL && strcmp(h->method, "HEAD") == 0;
    if (h->status == 0) {
        read_framing(c);
        bool keep_alive = h->minor >= 1 ? !has_token(h, "connection", "close")
                                        : has_token(h, "connection", "keep-alive");
        c->closing = !keep_alive;
    } else {
        c->body = BODY_NONE;
        c->body_done = true;
        c->framing_bad = c->expect_continue = false;
        c->closing = true;
    }
    c->pend = NULL;
    c->pend_len = 0;
    c->req = s->h.request_begin(s->h.cls, c, h->target ? h->target : "");
}

/* Moves bytes read past the end of a request to the front of buf (the next
 * request's head).  from: where they are; n: how many. */
static void conn_keep_next(struct h1_conn *c, const char *from, size_t n)
{
    memmove(c->buf, from, n);
    c->len = n;
    c->scan = 0;
    c->head_len = 0;
    struct h1_server *s = c->w->s;
    if (n > 0 && s->h.request_line) s->h.request_line(s->h.cls, c);
}

/* ---- the answer ---- */

static int out_reserve(struct h1_conn *c, size_t more)
{
    if (c->out_len + more <= c->out_cap) return 0;
    size_t cap = c->out_cap ? c->out_cap : OUT_BUF_INITIAL;
    while (cap < c->out_len + more) cap *= 2;
    char *o = realloc(c->out, cap);
    if (o == NULL) return -1;
    c->out = o;
    c->out_cap = cap;
    return 0;
}

static void out_put(struct h1_conn *c, const char *s, size_t n)
{
    if (n == 0) return; /* s may be NULL then (an answer without fields) */
    assert(c->out_len + n <= c->out_cap); /* h1_server_queue reserved it */
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

static void worker_date(struct h1_worker *w)
{
    time_t t = time(NULL);
    if (t == w->date_sec && w->date_len) return;
    struct tm tm;
    gmtime_r(&t, &tm);
    w->date_len = strftime(w->date, sizeof w->date, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    w->date_sec = t;
}

static bool no_body_status(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

int h1_server_queue(struct h1_conn *c, int status, struct h1_response *resp)
{
    if (c->resp != NULL || resp == NULL || resp->oom || status < 100 || status > 999) return -1;
    /* An answer before the body is read closes the connection after it. */
    if (c->first_call || !c->body_done) c->closing = true;
    bool bodiless = no_body_status(status);
    bool unknown = !bodiless && resp->reader != NULL && resp->size == H1_SIZE_UNKNOWN;
    c->chunked_out = unknown && c->head.minor >= 1;
    if (unknown && !c->chunked_out) c->closing = true; /* HTTP/1.0: close-delimited */
    worker_date(c->w);
    const char *reason = h1_reason_phrase(status);
    /* Besides the reason, Date and the fields: the status line (15), one framing field
     * (at most 38), one Connection field (at most 24) and the empty line (2). */
    c->out_len = 0;
    if (out_reserve(c, 80 + strlen(reason) + c->w->date_len + resp->fields_len) != 0) return -1;
    char line[64] = "HTTP/1.1 ";
    line[9] = (char)('0' + status / 100);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    line[12] = ' ';
    out_put(c, line, 13);
    out_put(c, reason, strlen(reason));
    out_put(c, "\r\n", 2);
    if (!resp->has_date) out_put(c, c->w->date, c->w->date_len);
    out_put(c, resp->fields, resp->fields_len);
    if (c->chunked_out) {
        out_put(c, "Transfer-Encoding: chunked\r\n", 28);
    } else if (!bodiless && !unknown) {
        out_put(c, "Content-Length: ", 16);
        char digits[24];
        size_t d = sizeof digits;
        uint64_t v = resp->size;
        do {
            digits[--d] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        out_put(c, digits + d, sizeof digits - d);
        out_put(c, "\r\n", 2);
    }
    if (c->closing) out_put(c, "Connection: close\r\n", 19);
    else if (c->head.minor == 0) out_put(c, "Connection: keep-alive\r\n", 24);
    out_put(c, "\r\n", 2);
    c->resp = h1_response_ref(resp);
    c->rpos = 0;
    c->rdone = bodiless || c->head_only || resp->reader == NULL;
    /* A small body goes out in the head's buffer: one plain send instead of a two-part
     * sendmsg (cheaper in the kernel than the copy is here). */
    bool body = !bodiless && !c->head_only && resp->reader == NULL && resp->size > 0;
    if (body && resp->size <= H1_INLINE_BODY && out_reserve(c, (size_t)resp->size) == 0) {
        memcpy(c->out + c->out_len, resp->body, (size_t)resp->size);
        c->out_len += (size_t)resp->size;
        body = false;
    }
    c->iov[0] = (struct iovec){c->out, c->out_len};
    c->niov = 1;
    if (body) c->iov[c->niov++] = (struct iovec){(void *)resp->body, (size_t)resp->size};
    return 0;
}

/* Sends what iov holds.  Returns 1 when all of it went out, 0 on EAGAIN,
 * -1 when the peer is gone. */
static int conn_flush(struct h1_conn *c)
{
    while (c->niov > 0) {
        if (!c->writable) return 0;
        ssize_t n;
        if (c->niov == 1) {
            n = send(c->fd, c->iov[0].iov_base, c->iov[0].iov_len, MSG_NOSIGNAL);
        } else {
            struct msghdr msg = {.msg_iov = c->iov, .msg_iovlen = (size_t)c->niov};
            n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->writable = false;
                return 0;
            }
            return -1;
        }
        c->last_io_ms = now_ms();
        size_t left = (size_t)n;
        int i = 0;
        while (i < c->niov && left >= c->iov[i].iov_len) left -= c->iov[i++].iov_len;
        if (i > 0) {
            memmove(c->iov, c->iov + i, (size_t)(c->niov - i) * sizeof c->iov[0]);
            c->niov -= i;
        }
        if (c->niov > 0) {
            c->iov[0].iov_base = (char *)c->iov[0].iov_base + left;
            c->iov[0].iov_len -= left;
        }
    }
    return 1;
}

/* The reader's next block into iov.  Returns 1 (queued), 0 (not now: the
 * reader suspended), 2 (the body is complete), -1 (failed: abort). */
static int conn_next_block(struct h1_conn *c)
{
    struct h1_response *r = c->resp;
    if (c->rdone) return 2;
    if (c->blk_cap < r->block + 32) {
        char *b = realloc(c->blk, r->block + 32);
        if (b == NULL) return -1;
        c->blk = b;
        c->blk_cap = r->block + 32;
    }
    size_t max = r->block;
    if (r->size != H1_SIZE_UNKNOWN && r->size - c->rpos < max) max = (size_t)(r->size - c->rpos);
    if (max == 0) {
        c->rdone = true;
        return 2;
    }
    char *data = c->blk + 16;
    ssize_t n = r->reader(r->reader_cls, c->rpos, data, max);
    if (n == 0) return c->suspended ? 0 : -1;
    if (n == H1_READER_END) {
        c->rdone = true;
        if (r->size != H1_SIZE_UNKNOWN && c->rpos != r->size) return -1; /* cut short */
        if (!c->chunked_out) return 2;
        static const char last[] = "0\r\n\r\n";
        c->iov[0] = (struct iovec){(void *)last, sizeof last - 1};
        c->niov = 1;
        return 1;
    }
    if (n < 0 || (size_t)n > max) return -1;
    c->rpos += (uint64_t)n;
    if (!c->chunked_out) {
        c->iov[0] = (struct iovec){data, (size_t)n};
        c->niov = 1;
        if (r->size != H1_SIZE_UNKNOWN && c->rpos == r->size) c->rdone = true;
        return 1;
    }
    char hex[20];
    int h = snprintf(hex, sizeof hex, "%zx\r\n", (size_t)n);
    memcpy(data - h, hex, (size_t)h);
    memcpy(data + n, "\r\n", 2);
    c->iov[0] = (struct iovec){data - h, (size_t)h + (size_t)n + 2};
    c->niov = 1;
    return 1;
}

/* ---- the state machine ---- */

static bool conn_call(struct h1_conn *c, const char *data, size_t *size)
{
    struct h1_server *s = c->w->s;
    enum h1_result rc = s->h.handle(s->h.cls, c, c->req, data, size);
    return rc == H1_YES;
}

/* After a handler call: the next state.  Returns false when the connection
 * must close now. */
static bool after_call(struct h1_conn *c, bool ok)
{
    c->first_call = false;
    if (ok && c->resp != NULL) c->st = CS_WRITE;
    return ok;
}

static bool send_continue(struct h1_conn *c)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    c->expect_continue = false;
    ssize_t n = send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL);
    return n == (ssize_t)(sizeof cont - 1);
}

/* Decodes what bbuf holds past bpos into pend.  Returns false on bad framing. */
static bool body_decode(struct h1_conn *c, const char **reason)
{
    char *in = c->bbuf + c->bpos;
    size_t avail = c->blen - c->bpos;
    if (avail == 0) return true;
    if (c->body == BODY_LENGTH) {
        size_t n = avail;
        if ((uint64_t)n > c->body_left) n = (size_t)c->body_left;
        c->pend = in;
        c->pend_len = n;
        c->bpos += n;
        c->body_left -= n;
        if (c->body_left == 0) c->body_done = true;
        return true;
    }
    size_t used = 0, out = 0;
    if (h1_chunked_decode(&c->ch, in, avail, &used, &out, reason) != 0) return false;
    c->pend = in;
    c->pend_len = out;
    /* The decoded bytes were moved to the front of the consumed span: what is
     * left between out and used is framing, already read. */
    c->bpos += used;
    if (c->ch.done) c->body_done = true;
    return true;
}

/* The request is over (its answer sent): the next one, or the close. */
static void conn_next_request(struct h1_conn *c)
{
    if (c->closing || c->peer_gone) {
        conn_linger(c);
        return;
    }
    /* Bytes after this request: in bbuf past the body, or in buf past the head. */
    if (c->bbuf != NULL) {
        char *tmp = c->bbuf;
        size_t from = c->bpos, n = c->blen - c->bpos;
        c->bbuf = NULL; /* kept from conn_release_request */
        conn_release_request(c, true);
        char *b = n > c->cap ? realloc(c->buf, n) : c->buf; /* more than a head's bound */
        if (b == NULL) {
            free(tmp);
            conn_linger(c); /* out of memory: the pipelined bytes cannot be kept */
            return;
        }
        c->buf = b;
        if (n > c->cap) c->cap = n;
        conn_keep_next(c, tmp + from, n);
        free(tmp);
    } else {
        conn_release_request(c, true);
        conn_keep_next(c, c->buf + c->head_len, c->len - c->head_len);
    }
    c->st = CS_HEAD;
}

static void conn_run(struct h1_conn *c)
{
    struct h1_server *s = c->w->s;
    for (;;) {
        if (c->suspended) return;
        switch (c->st) {
        case CS_HEAD: {
            size_t end = h1_head_end(c->buf, c->len, &c->scan);
            if (end == 0) {
                if (c->len == c->cap) {
                    if (c->cap < s->cfg.max_head) {
                        size_t cap = c->cap * 2 < s->cfg.max_head ? c->cap * 2 : s->cfg.max_head;
                        char *b = realloc(c->buf, cap);
                        if (b == NULL) goto close;
                        c->buf = b;
                        c->cap = cap;
                    } else {
                        /* Past the bound: refused through the handler like any head. */
                        const char *reason;
                        int status = h1_oversize_status(c->buf, c->len, &reason);
                        c->head_len = c->len;
                        conn_begin_request(c, status, reason);
                        goto first_call;
                    }
                }
                size_t before = c->len;
                ssize_t n = conn_read(c, c->buf, &c->len, c->cap);
                if (n < 0) goto close;
                if (n == 0 && c->len < c->cap) return; /* wait for bytes */
                if (before == 0 && n > 0 && s->h.request_line) s->h.request_line(s->h.cls, c);
                continue;
            }
            c->head_len = end;
            conn_begin_request(c, 0, NULL);
        first_call:
            if (c->req == NULL) goto close;
            c->first_call = true;
            size_t zero = 0;
            bool ok = conn_call(c, NULL, &zero);
            if (!after_call(c, ok)) goto close;
            if (c->resp != NULL) continue;
            if (c->head.status != 0) { /* a refusal must be answered */
                if (!c->suspended) goto close;
                c->st = CS_HANDLER; /* it waits for something first: answered after */
                return;
            }
            if (c->framing_bad) {
                /* Never read as anything: the answer closes the connection (set before
                 * the answer is queued, so it says so). */
                c->closing = true;
                s->h.body_error(s->h.cls, c, c->req, "ambiguous message framing");
                if (c->resp == NULL) goto close;
                c->st = CS_WRITE;
                continue;
            }
            if (c->body != BODY_NONE) {
                /* Body bytes that came with the head move to the body's buffer. */
                size_t extra = c->len - c->head_len;
                c->bcap = extra > BODY_BUF_SIZE ? extra : BODY_BUF_SIZE;
                c->bbuf = malloc(c->bcap);
                if (c->bbuf == NULL) goto close;
                memcpy(c->bbuf, c->buf + c->head_len, extra);
                c->blen = extra;
                c->bpos = 0;
                c->len = c->head_len;
                if (extra > 0) c->expect_continue = false;
                c->st = CS_BODY;
            } else {
                c->st = CS_HANDLER;
            }
            continue;
        }
        case CS_BODY: {
            /* 1. Decoded bytes go to the handler; it may leave some, suspending. */
            if (c->pend_len > 0) {
                size_t size = c->pend_len;
                bool ok = conn_call(c, c->pend, &size);
                if (!after_call(c, ok)) goto close;
                if (size > c->pend_len) size = c->pend_len;
                c->pend += c->pend_len - size;
                c->pend_len = size;
                if (c->resp != NULL || c->pend_len > 0) continue; /* suspended: returns */
            }
            if (c->body_done) {
                c->st = CS_HANDLER;
                continue;
            }
            /* 2. Bytes read but not decoded yet. */
            const char *reason = NULL;
            if (c->bpos < c->blen) {
                if (!body_decode(c, &reason)) goto body_error;
                continue;
            }
            /* 3. More bytes: the window restarts (everything before bpos was taken). */
            c->blen = c->bpos = 0;
            if (c->expect_continue && !send_continue(c)) goto close;
            ssize_t n = conn_read(c, c->bbuf, &c->blen, c->bcap);
            if (n < 0) goto close;
            if (n == 0) return;
            c->expect_continue = false;
            if (!body_decode(c, &reason)) {
            body_error:
                c->closing = true;
                s->h.body_error(s->h.cls, c, c->req, reason ? reason : "bad body");
                if (c->resp == NULL) goto close;
                c->st = CS_WRITE;
            }
            continue;
        }
        case CS_HANDLER: {
            size_t zero = 0;
            bool ok = conn_call(c, NULL, &zero);
            if (!after_call(c, ok)) goto close;
            if (c->resp != NULL) continue;
            if (c->suspended) return;
            LOG_W("http: a request got no answer and did not wait: closing its connection");
            goto close;
        }
        case CS_WRITE: {
            int f = conn_flush(c);
            if (f < 0) goto close;
            if (f == 0) return;
            int b = conn_next_block(c);
            if (b < 0) goto close;
            if (b == 0) return; /* the reader suspended */
            if (b == 1) continue;
            conn_next_request(c);
            if (c->st == CS_LINGER) return;
            continue;
        }
        case CS_LINGER: {
            char drop[4096];
            size_t dl = 0;
            ssize_t n = conn_read(c, drop, &dl, sizeof drop);
            if (n < 0) goto close;
            if (n == 0) return;
            continue;
        }
        }
    }
close:
    conn_free(c);
}

/* ---- suspend / resume ---- */

void h1_conn_suspend(struct h1_conn *c) { c->suspended = true; }

void h1_conn_resume(struct h1_conn *c)
{
    struct h1_worker *w = c->w;
    bool signal = false;
    pthread_mutex_lock(&w->lock);
    if (!c->rq_queued) {
        c->rq_queued = true;
        c->rq_next = w->rq_head;
        w->rq_head = c;
        if (!w->rq_signalled) w->rq_signalled = signal = true;
    }
    pthread_mutex_unlock(&w->lock);
    if (signal) {
        uint64_t one = 1;
        ssize_t n = write(w->evfd, &one, sizeof one);
        (void)n;
    }
}

static void worker_resumes(struct h1_worker *w)
{
    uint64_t v;
    ssize_t n = read(w->evfd, &v, sizeof v);
    (void)n;
    /* Taken under the lock into run_next, reversed (the queue is newest first): once
     * rq_queued is false another thread may queue a connection again, through rq_next. */
    pthread_mutex_lock(&w->lock);
    struct h1_conn *rev = NULL;
    for (struct h1_conn *c = w->rq_head; c; c = c->rq_next) {
        c->rq_queued = false;
        c->run_next = rev;
        rev = c;
    }
    w->rq_head = NULL;
    w->rq_signalled = false;
    pthread_mutex_unlock(&w->lock);
    while (rev) {
        struct h1_conn *c = rev;
        rev = rev->run_next;
        if (!c->suspended) continue;
        c->suspended = false;
        c->readable = c->writable = true; /* events were not acted on meanwhile */
        conn_run(c);
    }
}

/* ---- accept, sweep, the worker loop ---- */

static void worker_accept(struct h1_worker *w)
{
    struct h1_server *s = w->s;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE)
                LOG_W("http: cannot accept a connection: %s", strerror(errno));
            return;
        }
        if (atomic_load(&s->stop) || (s->h.accept && !s->h.accept(s->h.cls))) {
            close(fd);
            continue;
        }
        if (atomic_fetch_add(&s->conns, 1) >= s->cfg.max_conns) {
            atomic_fetch_sub(&s->conns, 1);
            close(fd);
            continue;
        }
        struct h1_conn *c = calloc(1, sizeof *c);
        char *buf = malloc(HEAD_BUF_INITIAL);
        if (c == NULL || buf == NULL) {
            free(c);
            free(buf);
            close(fd);
            atomic_fetch_sub(&s->conns, 1);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->w = w;
        c->fd = fd;
        c->buf = buf;
        c->cap = HEAD_BUF_INITIAL;
        c->st = CS_HEAD;
        c->readable = c->writable = true;
        c->last_io_ms = now_ms();
        if (ss.ss_family == AF_INET) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->ip, sizeof c->ip);
        } else if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->ip, sizeof c->ip);
        }
        c->next = w->conns;
        if (w->conns) w->conns->prev = c;
        w->conns = c;
        if (s->h.conn_open) s->h.conn_open(s->h.cls, c);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            conn_free(c);
            continue;
        }
        conn_run(c);
    }
}

static void worker_sweep(struct h1_worker *w, int64_t now)
{
    struct h1_server *s = w->s;
    w->last_sweep_ms = now;
    for (struct h1_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->suspended) continue;
        if (c->st == CS_LINGER ? now >= c->linger_until_ms
                               : now - c->last_io_ms > s->cfg.idle_timeout_ms)
            conn_free(c);
    }
}

static void *worker_main(void *arg)
{
    struct h1_worker *w = arg;
    struct h1_server *s = w->s;
    struct epoll_event evs[128];
    while (!atomic_load(&s->stop)) {
        int n = epoll_wait(w->epfd, evs, 128, 1000);
        bool accept = false, resumes = false;
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &s->lfd) {
                accept = true;
            } else if (p == w) {
                resumes = true;
            } else {
                struct h1_conn *c = p;
                uint32_t e = evs[i].events;
                if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c->readable = true;
                if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) c->writable = true;
                /* Running a connection closes at most that one, so the batch's
                 * other events stay valid; resumes and accepts (which may close
                 * any connection) wait until the batch is done. */
                conn_run(c);
            }
        }
        if (resumes) worker_resumes(w);
        if (accept) worker_accept(w);
        int64_t now = now_ms();
        if (now - w->last_sweep_ms >= 1000) worker_sweep(w, now);
    }
    while (w->conns) {
        struct h1_conn *c = w->conns;
        if (c->suspended) { /* left to the exit: something still holds it */
            w->conns = c->next;
            continue;
        }
        conn_free(c);
    }
    return NULL;
}

struct h1_server *h1_server_start(const struct h1_server_config *cfg,
                                  const struct h1_handlers *handlers, char *err, size_t err_len)
{
    struct h1_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->h = *handlers;
    s->n_workers = cfg->workers > 0 ? cfg->workers : 1;
    s->lfd = socket(cfg->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(s->lfd, cfg->addr, cfg->addr_len) != 0 || listen(s->lfd, cfg->backlog) != 0) {
        snprintf(err, err_len, "%s", strerror(errno));
        if (s->lfd >= 0) close(s->lfd);
        free(s);
        return NULL;
    }
    s->workers = calloc(s->n_workers, sizeof *s->workers);
    if (s->workers == NULL) {
        snprintf(err, err_len, "out of memory");
        close(s->lfd);
        free(s);
        return NULL;
    }
    unsigned started = 0;
    for (; started < s->n_workers; started++) {
        struct h1_worker *w = &s->workers[started];
        w->s = s;
        pthread_mutex_init(&w->lock, NULL);
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &s->lfd};
        struct epoll_event eev = {.events = EPOLLIN, .data.ptr = w};
        if (w->epfd < 0 || w->evfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->lfd, &lev) != 0 ||
            epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &eev) != 0 ||
            pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            snprintf(err, err_len, "cannot start an HTTP worker: %s", strerror(errno));
            if (w->epfd >= 0) close(w->epfd);
            if (w->evfd >= 0) close(w->evfd);
            break;
        }
    }
    if (started < s->n_workers) {
        s->n_workers = started;
        h1_server_stop(s);
        return NULL;
    }
    return s;
}

void h1_server_stop(struct h1_server *s)
{
    if (s == NULL) return;
    atomic_store(&s->stop, true);
    for (unsigned i = 0; i < s->n_workers; i++) {
        uint64_t one = 1;
        ssize_t n = write(s->workers[i].evfd, &one, sizeof one);
        (void)n;
    }
    for (unsigned i = 0; i < s->n_workers; i++) {
        pthread_join(s->workers[i].thread, NULL);
        close(s->workers[i].epfd);
        close(s->workers[i].evfd);
        pthread_mutex_destroy(&s->workers[i].lock);
    }
    close(s->lfd);
    free(s->workers);
    free(s);
}

unsigned h1_server_connections(const struct h1_server *s)
{
    return atomic_load(&((struct h1_server *)s)->conns);
}

const struct h1_head *h1_conn_head(const struct h1_conn *c) { return &c->head; }
long long h1_conn_body_length(const struct h1_conn *c)
{
    if (c->body == BODY_CHUNKED) return -1;
    if (c->body == BODY_NONE) return 0;
    return c->body_length > LLONG_MAX ? LLONG_MAX : (long long)c->body_length; /* 413 anyway */
}
const char *h1_conn_client_ip(const struct h1_conn *c) { return c->ip; }
int h1_conn_fd(const struct h1_conn *c) { return c->fd; }
void h1_conn_set_context(struct h1_conn *c, void *ctx) { c->ctx = ctx; }
void *h1_conn_context(const struct h1_conn *c) { return c->ctx; }
