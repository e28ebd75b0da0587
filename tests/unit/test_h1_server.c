/* Unit tests for h1_server: a real server on a loopback port with a small
 * handler of this file, spoken to in raw bytes over sockets.  Keep-alive,
 * pipelining, HTTP/1.0, Connection: close, bodiless answers, request bodies
 * (Content-Length and chunked, whole and byte by byte), Expect: 100-continue,
 * early answers, body errors, suspend/resume from another thread (also with a
 * handler that takes the body in parts), readers of unknown and known size,
 * 1000 pipelined requests, concurrent clients on both workers, the idle
 * timeout, max_conns, the accept hook, oversize heads, and that completed()
 * runs exactly once per request begun (abandoned ones and those the stop
 * ends included).  Single-threaded test harness: the CHECKs run on the main
 * thread; the server's workers only count (atomics).
 *
 * The handler (see handle()) answers by target:
 *   /early...       in the first call: 403 (the connection closes after it)
 *   /suspend...     suspends in the final call; a thread resumes it 150 ms later
 *   /stream?N       a reader of unknown size producing N bytes of pattern()
 *   /stream-suspend?N  the same, suspending once at N/2 (resumed 150 ms later)
 *   /sized?N        a reader of known size N; /short?N the same, ending at N/2
 *   /nibble...      takes at most 4096 body bytes per call, suspending (resumed
 *                   1 ms later) when it leaves some
 *   /own-date       an answer carrying its own Date field
 *   /big?N          N bytes of pattern() from a buffer the response owns
 *   /status/<code>  that status with a body (the server must drop it for 204/304)
 *   anything else   200 "<method> <target> len=<body bytes> sum=<fnv1a of body>"
 * A head the parser refused is answered with its status in the first call. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "h1_server.h"
#include "test.h"

#define RESUME_DELAY_MS 150

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t fnv1a(uint32_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 16777619u;
    }
    return h;
}
#define FNV_INIT 2166136261u

static char pattern(uint64_t pos) { return (char)('a' + (pos * 7 + pos / 1000) % 26); }

/* ---- the server side ---- */

static atomic_int n_begun, n_completed, n_abandoned, n_completed_twice, n_body_errors, n_conn_open,
    n_conn_close, n_refused_heads;
static atomic_bool refuse_accept;

/* Resume threads, joined before the server stops. */
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t threads[256];
static int n_threads;
static struct req *all_reqs; /* under threads_lock */

struct req {
    struct req *next; /* all requests, freed at the end */
    char method[16];
    char target[256];
    int calls;
    uint64_t body_len;
    uint32_t sum;
    bool suspended_once;
    bool completed;
};

struct resumer {
    struct h1_conn *c;
    int delay_ms;
};

static void *resume_main(void *arg)
{
    struct resumer *r = arg;
    usleep((useconds_t)r->delay_ms * 1000);
    h1_conn_resume(r->c);
    free(r);
    return NULL;
}

/* Suspends c (on its worker) and resumes it from another thread after delay_ms. */
static void suspend_and_resume_later(struct h1_conn *c, int delay_ms)
{
    h1_conn_suspend(c);
    struct resumer *r = malloc(sizeof *r);
    r->c = c;
    r->delay_ms = delay_ms;
    pthread_mutex_lock(&threads_lock);
    if (n_threads < (int)(sizeof threads / sizeof threads[0]) &&
        pthread_create(&threads[n_threads], NULL, resume_main, r) == 0) {
        n_threads++;
    } else {
        fprintf(stderr, "cannot start a resume thread\n");
        abort();
    }
    pthread_mutex_unlock(&threads_lock);
}

static void join_resumers(void)
{
    pthread_mutex_lock(&threads_lock);
    for (int i = 0; i < n_threads; i++) pthread_join(threads[i], NULL);
    n_threads = 0;
    pthread_mutex_unlock(&threads_lock);
}

static void answer(struct h1_conn *c, int status, const char *body)
{
    struct h1_response *r = h1_response_from_buffer(strlen(body), body, H1_BODY_COPY);
    if (r == NULL || h1_response_add_header(r, "X-Test", "1") != 0) abort();
    if (h1_server_queue(c, status, r) != 0) fprintf(stderr, "h1_server_queue failed\n");
    h1_response_unref(r);
}

struct stream {
    struct h1_conn *c;
    uint64_t total;
    uint64_t end_at; /* where the reader says it is done (total, or less: cut short) */
    bool suspend_half;
    bool suspended;
};

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *s = cls;
    if (pos >= s->end_at) return H1_READER_END;
    if (s->suspend_half && !s->suspended && pos >= s->total / 2) {
        s->suspended = true;
        suspend_and_resume_later(s->c, RESUME_DELAY_MS);
        return 0;
    }
    size_t n = max;
    if (n > 1000) n = 1000; /* blocks of varying, small sizes */
    if (n > s->end_at - pos) n = (size_t)(s->end_at - pos);
    for (size_t i = 0; i < n; i++) buf[i] = pattern(pos + i);
    return (ssize_t)n;
}

static bool accept_cb(void *cls)
{
    (void)cls;
    return !atomic_load(&refuse_accept);
}

static void conn_open_cb(void *cls, struct h1_conn *c)
{
    (void)cls;
    (void)c;
    atomic_fetch_add(&n_conn_open, 1);
}

static void conn_close_cb(void *cls, struct h1_conn *c)
{
    (void)cls;
    (void)c;
    atomic_fetch_add(&n_conn_close, 1);
}

static void *request_begin(void *cls, struct h1_conn *c, const char *target)
{
    (void)cls;
    struct req *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    const struct h1_head *h = h1_conn_head(c);
    snprintf(r->method, sizeof r->method, "%s", h->method ? h->method : "");
    snprintf(r->target, sizeof r->target, "%s", target);
    r->sum = FNV_INIT;
    pthread_mutex_lock(&threads_lock);
    r->next = all_reqs;
    all_reqs = r;
    pthread_mutex_unlock(&threads_lock);
    atomic_fetch_add(&n_begun, 1);
    return r;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static enum h1_result handle(void *cls, struct h1_conn *c, void *req, const char *upload,
                             size_t *upload_size)
{
    (void)cls;
    struct req *r = req;
    r->calls++;
    if (r->calls == 1) {
        const struct h1_head *h = h1_conn_head(c);
        if (h->status != 0) {
            atomic_fetch_add(&n_refused_heads, 1);
            char body[128];
            snprintf(body, sizeof body, "refused %d: %s", h->status, h->reason);
            answer(c, h->status, body);
        } else if (starts(r->target, "/early")) {
            answer(c, 403, "early");
        }
        return H1_YES;
    }
    if (*upload_size > 0) {
        size_t take = *upload_size;
        if (starts(r->target, "/nibble") && take > 4096) take = 4096;
        r->body_len += take;
        r->sum = fnv1a(r->sum, upload, take);
        *upload_size -= take;
        if (*upload_size > 0) suspend_and_resume_later(c, 1);
        return H1_YES;
    }
    /* The final call (and the call after a resume). */
    if (starts(r->target, "/suspend") && !r->suspended_once) {
        r->suspended_once = true;
        suspend_and_resume_later(c, RESUME_DELAY_MS);
        return H1_YES;
    }
    bool sized = starts(r->target, "/sized") || starts(r->target, "/short");
    if (starts(r->target, "/stream") || sized) {
        struct stream *s = calloc(1, sizeof *s);
        const char *q = strchr(r->target, '?');
        s->c = c;
        s->total = q ? strtoull(q + 1, NULL, 10) : 10000;
        s->end_at = starts(r->target, "/short") ? s->total / 2 : s->total;
        s->suspend_half = starts(r->target, "/stream-suspend");
        struct h1_response *resp = h1_response_from_reader(sized ? s->total : H1_SIZE_UNKNOWN,
                                                           4096, stream_read, s, free);
        if (resp == NULL) abort();
        h1_server_queue(c, 200, resp);
        h1_response_unref(resp);
        return H1_YES;
    }
    if (starts(r->target, "/big?")) {
        size_t n = strtoull(r->target + 5, NULL, 10);
        char *b = malloc(n ? n : 1);
        for (size_t i = 0; i < n; i++) b[i] = pattern(i);
        struct h1_response *resp = h1_response_from_buffer_free(n, b, free, b);
        if (resp == NULL) abort();
        h1_server_queue(c, 200, resp);
        h1_response_unref(resp);
        return H1_YES;
    }
    if (starts(r->target, "/fields?")) {
        /* One field of the asked length: the answer's head lands on every size around
         * the write buffer's growth steps. */
        size_t n = strtoull(r->target + 8, NULL, 10);
        char *v = malloc(n + 1);
        memset(v, 'p', n);
        v[n] = '\0';
        /* A body of 10^18 bytes, so Content-Length is as long as it gets (the client
         * reads the head and leaves). */
        struct stream *st = calloc(1, sizeof *st);
        st->c = c;
        st->total = st->end_at = 1000000000000000000ULL;
        struct h1_response *resp = h1_response_from_reader(st->total, 4096, stream_read, st, free);
        if (resp == NULL || h1_response_add_header(resp, "X-Pad", v) != 0) abort();
        free(v);
        h1_server_queue(c, 200, resp);
        h1_response_unref(resp);
        return H1_YES;
    }
    if (strcmp(r->target, "/own-date") == 0) {
        struct h1_response *resp = h1_response_from_buffer(2, "ok", H1_BODY_PERSISTENT);
        if (resp == NULL || h1_response_add_header(resp, "Date", "Mon, 01 Jan 2024 00:00:00 GMT"))
            abort();
        h1_server_queue(c, 200, resp);
        h1_response_unref(resp);
        return H1_YES;
    }
    if (starts(r->target, "/status/")) {
        answer(c, atoi(r->target + 8), "a body that must not be sent");
        return H1_YES;
    }
    char body[512];
    snprintf(body, sizeof body, "%s %s len=%llu sum=%08x", r->method, r->target,
             (unsigned long long)r->body_len, r->sum);
    answer(c, 200, body);
    return H1_YES;
}

static void body_error(void *cls, struct h1_conn *c, void *req, const char *reason)
{
    (void)cls;
    (void)req;
    atomic_fetch_add(&n_body_errors, 1);
    char body[256];
    snprintf(body, sizeof body, "body error: %s", reason);
    answer(c, 400, body);
}

static void completed(void *cls, struct h1_conn *c, void *req, bool ok)
{
    (void)cls;
    (void)c;
    (void)ok;
    struct req *r = req;
    if (r->completed) {
        atomic_fetch_add(&n_completed_twice, 1);
        return; /* not freed twice */
    }
    r->completed = true;
    atomic_fetch_add(&n_completed, 1);
    if (!ok) atomic_fetch_add(&n_abandoned, 1);
    /* Freed at the end (a second completion must find it to be counted). */
}

static const struct h1_handlers HANDLERS = {
    .cls = NULL,
    .accept = accept_cb,
    .conn_open = conn_open_cb,
    .conn_close = conn_close_cb,
    .request_begin = request_begin,
    .handle = handle,
    .body_error = body_error,
    .completed = completed,
};

/* A port nothing listens on now: bound to port 0, read, closed. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("free_port");
        exit(1);
    }
    close(fd);
    return ntohs(sa.sin_port);
}

#define MAX_HEAD 8192
#define IDLE_MS 2000
/* How long an expected close may take: less than the idle timeout, so that the
 * timeout cannot stand in for a close the server owed. */
#define CLOSE_MS (IDLE_MS / 2)

static struct h1_server *start_server(int port, unsigned max_conns)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct h1_server_config cfg = {
        .addr = (struct sockaddr *)&sa,
        .addr_len = sizeof sa,
        .workers = 2,
        .max_conns = max_conns,
        .idle_timeout_ms = IDLE_MS,
        .max_head = MAX_HEAD,
        .backlog = 64,
    };
    char err[128];
    struct h1_server *s = h1_server_start(&cfg, &HANDLERS, err, sizeof err);
    if (s == NULL) {
        fprintf(stderr, "h1_server_start: %s\n", err);
        exit(1);
    }
    return s;
}

/* ---- the client side ---- */

static int port; /* of the main server */

struct client {
    int fd;
    char *buf;
    size_t len, cap;
};

static struct client *client_open_port(int p)
{
    struct client *cl = calloc(1, sizeof *cl);
    cl->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)p),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(cl->fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(cl->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    cl->cap = 65536;
    cl->buf = malloc(cl->cap);
    return cl;
}

static struct client *client_open(void) { return client_open_port(port); }

static void client_close(struct client *cl)
{
    if (cl == NULL) return;
    close(cl->fd);
    free(cl->buf);
    free(cl);
}

static void send_all(struct client *cl, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(cl->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            perror("send");
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static void send_str(struct client *cl, const char *s) { send_all(cl, s, strlen(s)); }

/* One byte per send (TCP_NODELAY: one segment each), pausing now and then so the
 * server's reads really see the pieces. */
static void send_bytewise(struct client *cl, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        send_all(cl, p + i, 1);
        if (n < 600 || i % 97 == 0) usleep(200);
    }
}

/* Reads more into cl->buf.  Returns bytes read, 0 at EOF (or a reset), -1 on timeout. */
static ssize_t client_fill(struct client *cl, int timeout_ms)
{
    if (cl->len == cl->cap) {
        cl->cap *= 2;
        cl->buf = realloc(cl->buf, cl->cap);
    }
    struct pollfd pfd = {.fd = cl->fd, .events = POLLIN};
    int pr = poll(&pfd, 1, timeout_ms);
    if (pr <= 0) return -1;
    ssize_t n = recv(cl->fd, cl->buf + cl->len, cl->cap - cl->len, 0);
    if (n < 0) return errno == ECONNRESET ? 0 : -1;
    cl->len += (size_t)n;
    return n;
}

static void client_consume(struct client *cl, size_t n)
{
    memmove(cl->buf, cl->buf + n, cl->len - n);
    cl->len -= n;
}

struct resp {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
    bool chunked;
    long long content_length; /* -1: none */
    bool close_delimited;
};

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* The value of a field in r->head ("" and false when absent). */
static bool resp_field(const struct resp *r, const char *name, char *out, size_t out_len)
{
    size_t nl = strlen(name);
    const char *p = strstr(r->head, "\r\n");
    while (p != NULL && p[2] != '\0') {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            if (n >= out_len) n = out_len - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return true;
        }
        p = strstr(p, "\r\n");
    }
    out[0] = '\0';
    return false;
}

static bool resp_has(const struct resp *r, const char *name)
{
    char v[256];
    return resp_field(r, name, v, sizeof v);
}

static bool resp_field_is(const struct resp *r, const char *name, const char *value)
{
    char v[256];
    return resp_field(r, name, v, sizeof v) && strcasecmp(v, value) == 0;
}

/* Waits until buf holds n bytes.  Returns false at EOF or timeout. */
static bool client_want(struct client *cl, size_t n, int timeout_ms)
{
    while (cl->len < n)
        if (client_fill(cl, timeout_ms) <= 0) return false;
    return true;
}

/* The offset just past the next CRLF in buf (waiting for it), or 0. */
static size_t client_line(struct client *cl, int timeout_ms)
{
    for (;;) {
        char *p = memmem(cl->buf, cl->len, "\r\n", 2);
        if (p != NULL) return (size_t)(p - cl->buf) + 2;
        if (client_fill(cl, timeout_ms) <= 0) return 0;
    }
}

/* Reads one response (a 1xx included).  Returns 0, or -1 when the connection
 * ended (or went silent for timeout_ms) before a complete one. */
static int read_resp_t(struct client *cl, struct resp *r, bool head_request, int timeout_ms)
{
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    char *end;
    while ((end = memmem(cl->buf, cl->len, "\r\n\r\n", 4)) == NULL)
        if (client_fill(cl, timeout_ms) <= 0) return -1;
    size_t hl = (size_t)(end - cl->buf) + 4;
    if (hl >= sizeof r->head) return -1;
    memcpy(r->head, cl->buf, hl);
    r->head[hl] = '\0';
    client_consume(cl, hl);
    if (sscanf(r->head, "HTTP/1.1 %d ", &r->status) != 1) return -1;
    char v[64];
    r->chunked = resp_field(r, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "chunked") == 0;
    if (resp_field(r, "Content-Length", v, sizeof v)) r->content_length = atoll(v);
    if (head_request || r->status < 200 || r->status == 204 || r->status == 304) return 0;
    if (r->chunked) {
        size_t cap = 4096;
        r->body = malloc(cap);
        for (;;) {
            size_t ll = client_line(cl, timeout_ms);
            if (ll == 0) return -1;
            unsigned long n = strtoul(cl->buf, NULL, 16);
            client_consume(cl, ll);
            if (n == 0) {
                if (client_line(cl, timeout_ms) != 2) return -1; /* no trailers sent */
                client_consume(cl, 2);
                return 0;
            }
            if (!client_want(cl, n + 2, timeout_ms)) return -1;
            if (memcmp(cl->buf + n, "\r\n", 2) != 0) return -1;
            while (r->body_len + n > cap) cap *= 2;
            r->body = realloc(r->body, cap);
            memcpy(r->body + r->body_len, cl->buf, n);
            r->body_len += n;
            client_consume(cl, n + 2);
        }
    }
    if (r->content_length >= 0) {
        size_t n = (size_t)r->content_length;
        if (!client_want(cl, n, timeout_ms)) return -1;
        r->body = malloc(n + 1);
        memcpy(r->body, cl->buf, n);
        r->body[n] = '\0';
        r->body_len = n;
        client_consume(cl, n);
        return 0;
    }
    /* Close-delimited. */
    r->close_delimited = true;
    for (;;) {
        ssize_t n = client_fill(cl, timeout_ms);
        if (n == 0) break;
        if (n < 0) return -1;
    }
    r->body = malloc(cl->len + 1);
    memcpy(r->body, cl->buf, cl->len);
    r->body[cl->len] = '\0';
    r->body_len = cl->len;
    cl->len = 0;
    return 0;
}

static int read_resp(struct client *cl, struct resp *r, bool head_request)
{
    return read_resp_t(cl, r, head_request, 5000);
}

/* The body as a C string (bodies of this handler are text). */
static const char *body_str(struct resp *r)
{
    if (r->body == NULL) return "";
    r->body = realloc(r->body, r->body_len + 1);
    r->body[r->body_len] = '\0';
    return r->body;
}

/* True when the server closes the connection within timeout_ms, with no more
 * bytes sent. */
static bool closed_within(struct client *cl, int timeout_ms)
{
    if (cl->len > 0) {
        fprintf(stderr, "  unexpected bytes: \"%.*s\"\n", (int)(cl->len > 80 ? 80 : cl->len),
                cl->buf);
        return false;
    }
    ssize_t n = client_fill(cl, timeout_ms);
    if (n > 0)
        fprintf(stderr, "  unexpected bytes: \"%.*s\"\n", (int)(cl->len > 80 ? 80 : cl->len),
                cl->buf);
    return n == 0;
}

/* True when nothing arrives (and the connection stays open) for ms. */
static bool silent_for(struct client *cl, int ms)
{
    return cl->len == 0 && client_fill(cl, ms) == -1;
}

/* Waits until cond() holds (up to ms). */
static bool wait_until(bool (*cond)(void), int ms)
{
    int64_t until = now_ms() + ms;
    while (!cond()) {
        if (now_ms() > until) return false;
        usleep(5000);
    }
    return true;
}

static bool all_completed(void) { return atomic_load(&n_completed) == atomic_load(&n_begun); }

/* The handler's default answer for a request. */
static void expect_echo(struct resp *r, const char *method, const char *target, const char *body,
                        size_t body_len)
{
    char want[512];
    snprintf(want, sizeof want, "%s %s len=%zu sum=%08x", method, target, body_len,
             fnv1a(FNV_INIT, body, body_len));
    CHECK_EQ_INT(r->status, 200);
    CHECK_EQ_STR(body_str(r), want);
}

static void get(struct client *cl, const char *target, const char *extra)
{
    char req[1024];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n", target, extra ? extra : "");
    send_str(cl, req);
}

/* ---- tests ---- */

TEST(keep_alive)
{
    int opened = atomic_load(&n_conn_open);
    struct client *cl = client_open();
    struct resp r;
    get(cl, "/ka/1", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/ka/1", "", 0);
    CHECK(!resp_has(&r, "Connection")); /* 1.1 keep-alive is the default: nothing said */
    char len[16];
    snprintf(len, sizeof len, "%zu", strlen("GET /ka/1 len=0 sum=811c9dc5"));
    CHECK(resp_field_is(&r, "Content-Length", len));
    CHECK(resp_has(&r, "Date"));
    CHECK(resp_field_is(&r, "X-Test", "1"));
    resp_free(&r);
    get(cl, "/ka/2", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/ka/2", "", 0);
    resp_free(&r);
    CHECK_EQ_INT(atomic_load(&n_conn_open) - opened, 1);
    CHECK(silent_for(cl, 100)); /* still open, nothing more */
    client_close(cl);
}

TEST(pipelining)
{
    struct client *cl = client_open();
    send_str(cl, "GET /p/1 HTTP/1.1\r\nHost: t\r\n\r\n"
                 "POST /p/2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                 "GET /p/3 HTTP/1.1\r\nHost: t\r\n\r\n");
    struct resp r;
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/p/1", "", 0);
    resp_free(&r);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "POST", "/p/2", "abc", 3);
    resp_free(&r);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/p/3", "", 0);
    resp_free(&r);
    /* Chunked bodies and a head split across the boundary. */
    send_str(cl, "POST /p/4 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\n\r\n"
                 "GET /p/5 HT");
    usleep(20000);
    send_str(cl, "TP/1.1\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "POST", "/p/4", "xy", 2);
    resp_free(&r);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/p/5", "", 0);
    resp_free(&r);
    client_close(cl);
}

TEST(http10)
{
    struct client *cl = client_open();
    send_str(cl, "GET /old HTTP/1.0\r\n\r\n");
    struct resp r;
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/old", "", 0);
    CHECK(resp_field_is(&r, "Connection", "close"));
    resp_free(&r);
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);

    cl = client_open();
    send_str(cl, "GET /old/ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/old/ka", "", 0);
    CHECK(resp_field_is(&r, "Connection", "keep-alive"));
    resp_free(&r);
    /* Still open: a second request (this one without keep-alive) is answered, then closed. */
    send_str(cl, "GET /old/2 HTTP/1.0\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/old/2", "", 0);
    CHECK(resp_field_is(&r, "Connection", "close"));
    resp_free(&r);
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);
}

TEST(connection_close)
{
    struct client *cl = client_open();
    int begun = atomic_load(&n_begun);
    /* The pipelined second request is never answered (nor begun). */
    send_str(cl, "GET /cc HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n"
                 "GET /cc/2 HTTP/1.1\r\n\r\n");
    struct resp r;
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/cc", "", 0);
    CHECK(resp_field_is(&r, "Connection", "close"));
    resp_free(&r);
    CHECK(closed_within(cl, CLOSE_MS));
    CHECK_EQ_INT(atomic_load(&n_begun) - begun, 1);
    client_close(cl);
}

TEST(head_and_bodiless_statuses)
{
    struct client *cl = client_open();
    struct resp r;
    send_str(cl, "HEAD /h HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, true), 0);
    CHECK_EQ_INT(r.status, 200);
    /* The length of the GET answer "HEAD /h len=0 sum=811c9dc5". */
    CHECK(resp_field_is(&r, "Content-Length", "26"));
    resp_free(&r);
    /* No body bytes came: the next answer starts right after the head. */
    send_str(cl, "GET /status/204 HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 204);
    CHECK(!resp_has(&r, "Content-Length"));
    CHECK(!resp_has(&r, "Transfer-Encoding"));
    resp_free(&r);
    send_str(cl, "GET /status/304 HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 304);
    CHECK(!resp_has(&r, "Content-Length"));
    CHECK(!resp_has(&r, "Transfer-Encoding"));
    resp_free(&r);
    send_str(cl, "HEAD /stream?5000 HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, true), 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    get(cl, "/after", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/after", "", 0);
    resp_free(&r);
    CHECK(silent_for(cl, 100));
    client_close(cl);
}

static char *make_body(size_t n)
{
    char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++) b[i] = (char)(i * 31 + i / 251);
    return b;
}

/* The body framed as chunks of up to step bytes (size lines in hex, one with an
 * extension). */
static char *chunk(const char *body, size_t n, size_t step, size_t *out_len)
{
    char *o = malloc(n + (n / step + 2) * 32);
    size_t len = 0;
    for (size_t i = 0; i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        len += (size_t)sprintf(o + len, i == 0 ? "%zX;ext=1\r\n" : "%zx\r\n", k);
        memcpy(o + len, body + i, k);
        len += k;
        memcpy(o + len, "\r\n", 2);
        len += 2;
    }
    len += (size_t)sprintf(o + len, "0\r\n\r\n");
    *out_len = len;
    return o;
}

static void post_body(size_t n, bool chunked, bool bytewise)
{
    struct client *cl = client_open();
    char *body = make_body(n);
    char target[64];
    snprintf(target, sizeof target, "/body/%s/%zu%s", chunked ? "chunked" : "cl", n,
             bytewise ? "/bytewise" : "");
    char head[256];
    size_t wire_len = n;
    char *wire = body;
    if (chunked) {
        wire = chunk(body, n, n > 100000 ? 70000 : 1000, &wire_len);
        snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                 target);
    } else {
        snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", target, n);
    }
    if (bytewise) {
        send_bytewise(cl, head, strlen(head));
        send_bytewise(cl, wire, wire_len);
    } else {
        send_str(cl, head);
        send_all(cl, wire, wire_len);
    }
    struct resp r;
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "POST", target, body, n);
    CHECK(!resp_has(&r, "Connection"));
    resp_free(&r);
    /* The connection is still usable: nothing of the body was left over. */
    get(cl, "/next", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/next", "", 0);
    resp_free(&r);
    if (wire != body) free(wire);
    free(body);
    client_close(cl);
}

TEST(bodies_content_length)
{
    size_t sizes[] = {0, 1, 16 * 1024 + 1, 1 << 20};
    for (size_t i = 0; i < 4; i++) post_body(sizes[i], false, false);
    for (size_t i = 0; i < 3; i++) post_body(sizes[i], false, true);
}

TEST(bodies_chunked)
{
    size_t sizes[] = {0, 1, 16 * 1024 + 1, 1 << 20};
    for (size_t i = 0; i < 4; i++) post_body(sizes[i], true, false);
    for (size_t i = 0; i < 3; i++) post_body(sizes[i], true, true);
}

TEST(expect_100_continue)
{
    struct client *cl = client_open();
    send_str(cl, "POST /exp HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    struct resp r;
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 100);
    CHECK(strncmp(r.head, "HTTP/1.1 100 Continue\r\n", 23) == 0);
    resp_free(&r);
    send_str(cl, "hello");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "POST", "/exp", "hello", 5);
    resp_free(&r);
    /* Chunked, on the same connection. */
    send_str(cl,
             "POST /exp/2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 100);
    resp_free(&r);
    send_str(cl, "3\r\nabc\r\n0\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "POST", "/exp/2", "abc", 3);
    resp_free(&r);
    /* The body came with the head: no 100, whether all of it came or a part. */
    send_str(cl, "POST /exp/3 HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "POST", "/exp/3", "hello", 5);
    resp_free(&r);
    send_str(cl, "POST /exp/3b HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhel");
    usleep(50000);
    send_str(cl, "lo");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "POST", "/exp/3b", "hello", 5);
    resp_free(&r);
    /* No body: no 100 either. */
    send_str(cl, "GET /exp/4 HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/exp/4", "", 0);
    resp_free(&r);
    client_close(cl);
}

TEST(early_answer_closes)
{
    struct client *cl = client_open();
    /* The body is announced but not sent: the answer comes anyway, then the close. */
    send_str(cl, "POST /early HTTP/1.1\r\nContent-Length: 100\r\n\r\n");
    struct resp r;
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 403);
    CHECK_EQ_STR(body_str(&r), "early");
    CHECK(resp_field_is(&r, "Connection", "close"));
    resp_free(&r);
    /* What is sent now is body, never a next request. */
    send_str(cl, "GET /smuggled HTTP/1.1\r\n\r\n");
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);

    /* A GET answered in the first call closes too. */
    cl = client_open();
    send_str(cl, "GET /early/get HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 403);
    CHECK(resp_field_is(&r, "Connection", "close"));
    resp_free(&r);
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);
}

TEST(body_errors)
{
    int errors = atomic_load(&n_body_errors);
    struct client *cl = client_open();
    send_str(cl, "POST /bad HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n\r\n"
                 "GET /smuggled HTTP/1.1\r\n\r\n");
    struct resp r;
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 400);
    CHECK_EQ_STR(body_str(&r), "body error: invalid chunk size");
    CHECK(resp_field_is(&r, "Connection", "close"));
    resp_free(&r);
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);
    CHECK_EQ_INT(atomic_load(&n_body_errors) - errors, 1);

    /* Framing that is not clear (Transfer-Encoding and Content-Length). */
    cl = client_open();
    send_str(cl, "POST /bad/2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                 "0\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 400);
    CHECK_EQ_STR(body_str(&r), "body error: ambiguous message framing");
    CHECK(resp_field_is(&r, "Connection", "close"));
    resp_free(&r);
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);
    CHECK_EQ_INT(atomic_load(&n_body_errors) - errors, 2);

    /* A bad Content-Length: body_error is called (its close: the next test). */
    cl = client_open();
    send_str(cl, "POST /bad/3 HTTP/1.1\r\nContent-Length: 5,5\r\n\r\nhello");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 400);
    CHECK_EQ_STR(body_str(&r), "body error: ambiguous message framing");
    resp_free(&r);
    client_close(cl);
    CHECK_EQ_INT(atomic_load(&n_body_errors) - errors, 3);
}

/* A request whose Content-Length does not parse ("+5", "5,5") has no body, so
 * only its unclear framing keeps the bytes after its head from being read as a
 * next request: the answer body_error queues must close the connection (the
 * gateway's validator refuses such a head in the first call; a handler that
 * does not must be safe too, h1_server.h).  Failed before a6ed34c: "GET
 * /smuggled" was answered. */
TEST(bad_content_length_closes)
{
    const char *values[] = {"+5", "5,5", "0x5", "-1"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        struct client *cl = client_open();
        char req[256];
        snprintf(req, sizeof req, "POST /bad/cl HTTP/1.1\r\nContent-Length: %s\r\n\r\n"
                 "GET /smuggled HTTP/1.1\r\n\r\n", values[i]);
        send_str(cl, req);
        struct resp r;
        CHECK_EQ_INT(read_resp(cl, &r, false), 0);
        CHECK_EQ_INT(r.status, 400);
        CHECK(resp_field_is(&r, "Connection", "close"));
        resp_free(&r);
        CHECK(closed_within(cl, CLOSE_MS));
        client_close(cl);
    }
}

TEST(suspend_resume)
{
    struct client *cl = client_open();
    struct resp r;
    int64_t t0 = now_ms();
    get(cl, "/suspend/1", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    int64_t took = now_ms() - t0;
    expect_echo(&r, "GET", "/suspend/1", "", 0);
    CHECK(took >= RESUME_DELAY_MS - 10);
    resp_free(&r);
    /* With a body, and pipelined behind it a request that waits its turn. */
    send_str(cl, "POST /suspend/2 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"
                 "GET /p HTTP/1.1\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "POST", "/suspend/2", "body", 4);
    resp_free(&r);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/p", "", 0);
    resp_free(&r);
    client_close(cl);
}

static void check_stream(struct resp *r, size_t n)
{
    CHECK_EQ_INT(r->status, 200);
    CHECK_EQ_INT(r->body_len, n);
    size_t bad = 0;
    for (size_t i = 0; i < r->body_len && i < n; i++)
        if (r->body[i] != pattern(i)) bad++;
    CHECK_EQ_INT(bad, 0);
}

TEST(reader_unknown_size)
{
    struct client *cl = client_open();
    struct resp r;
    get(cl, "/stream?100000", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK(r.chunked);
    CHECK(!resp_has(&r, "Content-Length"));
    CHECK(!resp_has(&r, "Connection"));
    check_stream(&r, 100000);
    resp_free(&r);
    get(cl, "/stream-suspend?50001", NULL);
    int64_t t0 = now_ms();
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK(now_ms() - t0 >= RESUME_DELAY_MS - 10);
    CHECK(r.chunked);
    check_stream(&r, 50001);
    resp_free(&r);
    /* Empty. */
    get(cl, "/stream?0", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK(r.chunked);
    check_stream(&r, 0);
    resp_free(&r);
    /* The connection goes on after chunked answers. */
    get(cl, "/after", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/after", "", 0);
    resp_free(&r);
    client_close(cl);

    /* HTTP/1.0 (even with keep-alive asked): close-delimited. */
    cl = client_open();
    send_str(cl, "GET /stream-suspend?30000 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK(!r.chunked);
    CHECK(!resp_has(&r, "Transfer-Encoding"));
    CHECK(!resp_has(&r, "Content-Length"));
    CHECK(resp_field_is(&r, "Connection", "close"));
    CHECK(r.close_delimited);
    check_stream(&r, 30000);
    resp_free(&r);
    client_close(cl);
}

TEST(oversize_head)
{
    int refused = atomic_load(&n_refused_heads);
    static char big[MAX_HEAD + 2048];
    struct resp r;
    /* A request line longer than max_head: 414. */
    struct client *cl = client_open();
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', sizeof big - 5);
    send_all(cl, big, sizeof big);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 414);
    CHECK_EQ_STR(body_str(&r), "refused 414: request target too long");
    CHECK(resp_field_is(&r, "Connection", "close"));
    resp_free(&r);
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);
    /* Fields past it: 431. */
    cl = client_open();
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX-Big: ");
    memset(big + n, 'b', sizeof big - (size_t)n);
    send_all(cl, big, sizeof big);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 431);
    CHECK_EQ_STR(body_str(&r), "refused 431: request header fields too large");
    resp_free(&r);
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);
    /* A head the parser refused (version) goes the same way. */
    cl = client_open();
    send_str(cl, "GET / HTTP/2.0\r\n\r\n");
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 505);
    resp_free(&r);
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);
    CHECK_EQ_INT(atomic_load(&n_refused_heads) - refused, 3);
}

TEST(accept_hook)
{
    int opened = atomic_load(&n_conn_open);
    atomic_store(&refuse_accept, true);
    struct client *cl = client_open();
    get(cl, "/refused", NULL);
    CHECK(closed_within(cl, CLOSE_MS));
    client_close(cl);
    atomic_store(&refuse_accept, false);
    CHECK_EQ_INT(atomic_load(&n_conn_open) - opened, 0);
    cl = client_open();
    get(cl, "/accepted", NULL);
    struct resp r;
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/accepted", "", 0);
    resp_free(&r);
    client_close(cl);
}

static int abandoned_before;
static bool one_more_abandoned(void) { return atomic_load(&n_abandoned) == abandoned_before + 1; }

TEST(abandoned_requests_complete)
{
    /* The client leaves in the middle of a body: the request completes, not ok. */
    abandoned_before = atomic_load(&n_abandoned);
    struct client *cl = client_open();
    send_str(cl, "POST /gone HTTP/1.1\r\nContent-Length: 100\r\n\r\n0123456789");
    usleep(50000);
    client_close(cl);
    CHECK(wait_until(one_more_abandoned, 3000));
    /* ... and while its answer is being produced (suspended), once resumed. */
    abandoned_before = atomic_load(&n_abandoned);
    int completed_before = atomic_load(&n_completed);
    cl = client_open();
    get(cl, "/stream-suspend?10000000", NULL);
    usleep(50000);
    client_close(cl);
    CHECK(wait_until(one_more_abandoned, 3000));
    CHECK_EQ_INT(atomic_load(&n_completed) - completed_before, 1);
    CHECK(all_completed());
}


TEST(handler_takes_body_in_parts)
{
    /* The handler leaves part of each block and suspends; after each resume it
     * is handed what it left. */
    size_t sizes[] = {100000, 4097};
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        struct client *cl = client_open();
        size_t n = sizes[bytewise];
        char *body = make_body(n);
        char head[128];
        snprintf(head, sizeof head, "POST /nibble/%d HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
                 bytewise, n);
        send_str(cl, head);
        if (bytewise) send_bytewise(cl, body, n);
        else send_all(cl, body, n);
        struct resp r;
        char target[32];
        snprintf(target, sizeof target, "/nibble/%d", bytewise);
        CHECK_EQ_INT(read_resp(cl, &r, false), 0);
        expect_echo(&r, "POST", target, body, n);
        resp_free(&r);
        /* Chunked, then a request on the same connection. */
        size_t wire_len;
        char *wire = chunk(body, n, 30000, &wire_len);
        send_str(cl, "POST /nibble/c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        send_all(cl, wire, wire_len);
        CHECK_EQ_INT(read_resp(cl, &r, false), 0);
        expect_echo(&r, "POST", "/nibble/c", body, n);
        resp_free(&r);
        get(cl, "/after", NULL);
        CHECK_EQ_INT(read_resp(cl, &r, false), 0);
        expect_echo(&r, "GET", "/after", "", 0);
        resp_free(&r);
        free(wire);
        free(body);
        client_close(cl);
    }
}

TEST(reader_known_size)
{
    struct client *cl = client_open();
    struct resp r;
    get(cl, "/sized?70000", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK(!r.chunked);
    CHECK(resp_field_is(&r, "Content-Length", "70000"));
    check_stream(&r, 70000);
    resp_free(&r);
    get(cl, "/sized?0", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK(resp_field_is(&r, "Content-Length", "0"));
    check_stream(&r, 0);
    resp_free(&r);
    get(cl, "/after", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    expect_echo(&r, "GET", "/after", "", 0);
    resp_free(&r);
    client_close(cl);

    /* A reader that ends before its size: the answer is cut, the connection
     * closes (a client must not take a short body as whole), and the request
     * completes as not ok. */
    abandoned_before = atomic_load(&n_abandoned);
    cl = client_open();
    get(cl, "/short?10000", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), -1);
    CHECK_EQ_INT(r.status, 200);
    CHECK(resp_field_is(&r, "Content-Length", "10000"));
    CHECK_EQ_INT(cl->len, 5000);
    resp_free(&r);
    client_close(cl);
    CHECK(wait_until(one_more_abandoned, 2000));
}

TEST(date_field)
{
    struct client *cl = client_open();
    struct resp r;
    get(cl, "/own-date", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(resp_field_is(&r, "Date", "Mon, 01 Jan 2024 00:00:00 GMT"));
    CHECK(strstr(r.head, "Date:") == strstr(r.head, "Date: Mon, 01 Jan 2024"));
    const char *d = strstr(r.head, "Date:");
    CHECK(d != NULL && strstr(d + 1, "Date:") == NULL); /* only its own */
    resp_free(&r);
    get(cl, "/status/599", NULL);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK_EQ_INT(r.status, 599);
    CHECK(strncmp(r.head, "HTTP/1.1 599 \r\n", 15) == 0); /* an empty reason phrase */
    char date[64];
    CHECK(resp_field(&r, "Date", date, sizeof date));
    CHECK(strlen(date) == 29 && strcmp(date + 25, " GMT") == 0);
    resp_free(&r);
    client_close(cl);
}

/* Each answer's head is reserved before it is written: every field size around the write
 * buffer's growth steps (1 KiB, 2 KiB), on fresh connections (nothing reserved before),
 * with the longest framing and Connection fields (a 19-digit Content-Length, HTTP/1.0
 * keep-alive), must come out whole.  An under-reservation is a heap overflow: ASan or the
 * assert in out_put (a reservation of 64 bytes for them was 15 short). */
TEST(head_sizes_around_buffer_growth)
{
    const size_t from[] = {900, 1880};
    for (size_t k = 0; k < 2; k++)
        for (size_t n = from[k]; n < from[k] + 200; n++) {
            struct client *cl = client_open();
            char req[128];
            snprintf(req, sizeof req,
                     "GET /fields?%zu HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", n);
            send_str(cl, req);
            struct resp r;
            CHECK_EQ_INT(read_resp(cl, &r, true), 0); /* the head only */
            CHECK_EQ_INT(r.status, 200);
            char *pad = malloc(n + 1);
            CHECK(resp_field(&r, "X-Pad", pad, n + 1) && strlen(pad) == n);
            free(pad);
            CHECK(resp_field_is(&r, "Connection", "keep-alive"));
            CHECK(resp_field_is(&r, "Content-Length", "1000000000000000000"));
            resp_free(&r);
            client_close(cl);
        }
}

TEST(response_fields)
{
    struct h1_response *r = h1_response_from_buffer(0, "", H1_BODY_PERSISTENT);
    CHECK(r != NULL);
    CHECK_EQ_INT(h1_response_add_header(r, "X-Ok", "a\tb c"), 0);
    const char *framing[] = {"Content-Length", "content-length", "Transfer-Encoding",
                             "CONNECTION"};
    for (size_t i = 0; i < 4; i++) CHECK_EQ_INT(h1_response_add_header(r, framing[i], "1"), -1);
    const char *bad_names[] = {"", "X A", "X:A", "X\rA", "X\nA", "X\x7f", "X\x01"};
    for (size_t i = 0; i < 7; i++) CHECK_EQ_INT(h1_response_add_header(r, bad_names[i], "v"), -1);
    CHECK_EQ_INT(h1_response_add_header(r, "X-Inject", "a\r\nSet-Cookie: x"), -1);
    CHECK_EQ_INT(h1_response_add_header(r, "X-Inject", "a\nb"), -1);
    CHECK_EQ_INT(h1_response_add_header(r, "X-Inject", "a\rb"), -1);
    CHECK_EQ_INT(r->fields_len, strlen("X-Ok: a\tb c\r\n"));
    CHECK(r->fields_len == strlen("X-Ok: a\tb c\r\n") &&
          memcmp(r->fields, "X-Ok: a\tb c\r\n", r->fields_len) == 0);
    h1_response_unref(r);
    CHECK_EQ_STR(h1_reason_phrase(200), "OK");
    CHECK_EQ_STR(h1_reason_phrase(431), "Request Header Fields Too Large");
    CHECK_EQ_STR(h1_reason_phrase(599), "");
}

struct pipe_sender {
    struct client *cl;
    char *data;
    size_t len;
};

static void *pipe_send_main(void *arg)
{
    struct pipe_sender *p = arg;
    send_all(p->cl, p->data, p->len);
    return NULL;
}

TEST(pipelining_many)
{
    /* 1000 requests in one stream (far more than one head buffer holds), some
     * with bodies; sent from a thread while the answers are read here. */
    enum { N = 1000 };
    struct client *cl = client_open();
    size_t cap = N * 96, len = 0;
    char *data = malloc(cap);
    for (int i = 0; i < N; i++) {
        if (i % 10 == 3)
            len += (size_t)snprintf(data + len, cap - len,
                                    "POST /m/%d HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody", i);
        else if (i % 10 == 7)
            len += (size_t)snprintf(data + len, cap - len,
                                    "POST /m/%d HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "4\r\nbody\r\n0\r\n\r\n", i);
        else
            len += (size_t)snprintf(data + len, cap - len, "GET /m/%d HTTP/1.1\r\n\r\n", i);
    }
    struct pipe_sender ps = {cl, data, len};
    pthread_t t;
    pthread_create(&t, NULL, pipe_send_main, &ps);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        struct resp r;
        if (read_resp(cl, &r, false) != 0) {
            fprintf(stderr, "  answer %d missing\n", i);
            break;
        }
        char target[32], want[128];
        snprintf(target, sizeof target, "/m/%d", i);
        bool post = i % 10 == 3 || i % 10 == 7;
        snprintf(want, sizeof want, "%s %s len=%d sum=%08x", post ? "POST" : "GET", target,
                 post ? 4 : 0, post ? fnv1a(FNV_INIT, "body", 4) : FNV_INIT);
        if (r.status == 200 && strcmp(body_str(&r), want) == 0) ok++;
        else fprintf(stderr, "  answer %d: %d \"%s\"\n", i, r.status, body_str(&r));
        resp_free(&r);
    }
    pthread_join(t, NULL);
    CHECK_EQ_INT(ok, N);
    CHECK(silent_for(cl, 100));
    free(data);
    client_close(cl);
}

static atomic_int concurrent_bad;

static void *concurrent_main(void *arg)
{
    int id = (int)(intptr_t)arg;
    struct client *cl = client_open();
    char body[3000];
    for (int i = 0; i < 40; i++) {
        char req[4096], target[64];
        snprintf(target, sizeof target, "/c/%d/%d", id, i);
        size_t n = (size_t)(id * 131 + i * 17) % sizeof body;
        for (size_t k = 0; k < n; k++) body[k] = (char)('A' + (k + (size_t)i) % 50);
        int hl = snprintf(req, sizeof req, "POST %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n",
                          target, n);
        memcpy(req + hl, body, n);
        send_all(cl, req, (size_t)hl + n);
        struct resp r;
        char want[128];
        snprintf(want, sizeof want, "POST %s len=%zu sum=%08x", target, n,
                 fnv1a(FNV_INIT, body, n));
        if (read_resp(cl, &r, false) != 0 || r.status != 200 || strcmp(body_str(&r), want) != 0)
            atomic_fetch_add(&concurrent_bad, 1);
        resp_free(&r);
    }
    client_close(cl);
    return NULL;
}

TEST(concurrent_clients)
{
    enum { T = 8 };
    pthread_t t[T];
    for (int i = 0; i < T; i++) pthread_create(&t[i], NULL, concurrent_main, (void *)(intptr_t)i);
    for (int i = 0; i < T; i++) pthread_join(t[i], NULL);
    CHECK_EQ_INT(atomic_load(&concurrent_bad), 0);
}

static struct h1_server *small;
static bool small_has_one(void) { return h1_server_connections(small) == 1; }

TEST(max_conns)
{
    int small_port = free_port();
    small = start_server(small_port, 2);
    struct client *a = client_open_port(small_port), *b = client_open_port(small_port);
    struct resp r;
    get(a, "/a", NULL);
    get(b, "/b", NULL);
    CHECK_EQ_INT(read_resp(a, &r, false), 0);
    expect_echo(&r, "GET", "/a", "", 0);
    resp_free(&r);
    CHECK_EQ_INT(read_resp(b, &r, false), 0);
    expect_echo(&r, "GET", "/b", "", 0);
    resp_free(&r);
    CHECK_EQ_INT(h1_server_connections(small), 2);
    /* The third is closed at accept, with no answer. */
    struct client *c = client_open_port(small_port);
    get(c, "/c", NULL);
    CHECK(closed_within(c, CLOSE_MS));
    client_close(c);
    CHECK_EQ_INT(h1_server_connections(small), 2);
    /* Once one goes, there is room again. */
    client_close(a);
    CHECK(wait_until(small_has_one, 2000));
    c = client_open_port(small_port);
    get(c, "/c2", NULL);
    CHECK_EQ_INT(read_resp(c, &r, false), 0);
    expect_echo(&r, "GET", "/c2", "", 0);
    resp_free(&r);
    client_close(b);
    client_close(c);
    h1_server_stop(small);
}

TEST(half_close)
{
    /* The client shuts its side after the request (printf | nc): it still gets
     * the answer, also when the handler waits (suspended) meanwhile. */
    const char *targets[] = {"/half", "/suspend/half"};
    for (int i = 0; i < 2; i++) {
        struct client *cl = client_open();
        get(cl, targets[i], "Connection: close\r\n");
        shutdown(cl->fd, SHUT_WR);
        struct resp r;
        CHECK_EQ_INT(read_resp(cl, &r, false), 0);
        expect_echo(&r, "GET", targets[i], "", 0);
        resp_free(&r);
        CHECK(closed_within(cl, CLOSE_MS));
        client_close(cl);
    }
    /* Pipelined, then shut: every request is answered. */
    struct client *cl = client_open();
    send_str(cl, "GET /h/1 HTTP/1.1\r\n\r\nGET /h/2 HTTP/1.1\r\n\r\n");
    shutdown(cl->fd, SHUT_WR);
    for (int i = 1; i <= 2; i++) {
        struct resp r;
        char t[16];
        snprintf(t, sizeof t, "/h/%d", i);
        CHECK_EQ_INT(read_resp(cl, &r, false), 0);
        expect_echo(&r, "GET", t, "", 0);
        resp_free(&r);
    }
    client_close(cl);
}

TEST(slow_reader)
{
    /* Answers larger than the socket buffers to a client that pauses before
     * reading: the server waits for the socket to drain and goes on. */
    struct client *cl = client_open();
    get(cl, "/big?8000000", NULL);
    get(cl, "/sized?3000000", NULL);
    get(cl, "/stream?3000000", NULL);
    usleep(300000);
    struct resp r;
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK(resp_field_is(&r, "Content-Length", "8000000"));
    check_stream(&r, 8000000);
    resp_free(&r);
    usleep(100000);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    check_stream(&r, 3000000);
    resp_free(&r);
    CHECK_EQ_INT(read_resp(cl, &r, false), 0);
    CHECK(r.chunked);
    check_stream(&r, 3000000);
    resp_free(&r);
    client_close(cl);
}

TEST(idle_timeout)
{
    struct client *idle = client_open();
    int64_t t0 = now_ms(); /* the server accepts it at this time or later */
    struct client *partial = client_open();
    struct client *used = client_open();
    struct client *stuck = client_open();
    send_str(partial, "GET /never-fini");
    get(used, "/used", NULL);
    struct resp r;
    CHECK_EQ_INT(read_resp(used, &r, false), 0);
    resp_free(&r);
    /* A client that never reads its (large) answer: no progress either. */
    abandoned_before = atomic_load(&n_abandoned);
    get(stuck, "/big?32000000", NULL); /* past both sockets' buffers */
    /* Not before the timeout... */
    CHECK(silent_for(idle, (int)(t0 + IDLE_MS - 100 - now_ms())));
    /* ... and within it plus the once-a-second sweep. */
    CHECK(closed_within(idle, IDLE_MS + 2500));
    int64_t took = now_ms() - t0;
    CHECK(took >= IDLE_MS - 100);
    CHECK(closed_within(partial, 1500));
    CHECK(closed_within(used, 1500));
    CHECK(wait_until(one_more_abandoned, IDLE_MS + 1500));
    client_close(stuck);
    client_close(idle);
    client_close(partial);
    client_close(used);
}

static int inflight_before;
static bool one_more_begun(void) { return atomic_load(&n_begun) == inflight_before + 1; }

/* Run after the server stopped. */
TEST(completed_once_per_request)
{
    fprintf(stderr, "requests begun %d, completed %d, twice %d; connections %d opened, "
            "%d closed\n", atomic_load(&n_begun), atomic_load(&n_completed),
            atomic_load(&n_completed_twice), atomic_load(&n_conn_open),
            atomic_load(&n_conn_close));
    CHECK(atomic_load(&n_begun) > 50);
    CHECK(all_completed());
    CHECK_EQ_INT(atomic_load(&n_completed), atomic_load(&n_begun));
    CHECK_EQ_INT(atomic_load(&n_completed_twice), 0);
    CHECK_EQ_INT(atomic_load(&n_conn_close), atomic_load(&n_conn_open));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    port = free_port();
    struct h1_server *s = start_server(port, 64);
    RUN(keep_alive);
    RUN(pipelining);
    RUN(http10);
    RUN(connection_close);
    RUN(head_and_bodiless_statuses);
    RUN(bodies_content_length);
    RUN(bodies_chunked);
    RUN(expect_100_continue);
    RUN(early_answer_closes);
    RUN(body_errors);
    RUN(bad_content_length_closes);
    RUN(suspend_resume);
    RUN(reader_unknown_size);
    RUN(reader_known_size);
    RUN(handler_takes_body_in_parts);
    RUN(date_field);
    RUN(response_fields);
    RUN(head_sizes_around_buffer_growth);
    RUN(pipelining_many);
    RUN(concurrent_clients);
    RUN(oversize_head);
    RUN(half_close);
    RUN(slow_reader);
    RUN(accept_hook);
    RUN(abandoned_requests_complete);
    RUN(max_conns);
    RUN(idle_timeout);
    /* Every request begun completes exactly once (the abandoned ones at the
     * latest when the server stops: one is left in the middle of its body here;
     * none is suspended). */
    struct client *inflight = client_open();
    inflight_before = atomic_load(&n_begun);
    send_str(inflight, "POST /inflight HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
    if (!wait_until(one_more_begun, 2000)) fprintf(stderr, "the in-flight request did not begin\n");
    join_resumers();
    h1_server_stop(s);
    client_close(inflight);
    RUN(completed_once_per_request);
    while (all_reqs) {
        struct req *r = all_reqs;
        all_reqs = r->next;
        free(r);
    }
    return TEST_SUMMARY();
}
