/* conn_guard.c - see conn_guard.h. */
#include "conn_guard.h"

#include <errno.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "io_loop.h"
#include "log.h"

#define SWEEP_INTERVAL_MS 250

enum slot_state { SLOT_WAITING, SLOT_HEADERS, SLOT_BODY, SLOT_BUSY };

struct conn_slot {
    struct conn_slot *prev, *next; /* in the guard's list, oldest first by `since` */
    int fd;
    enum slot_state state;
    bool shut;      /* shutdown(2) already sent */
    int64_t since;  /* monotonic ms the current state began */
    void *owner;
    /* The peer's address as text, formatted once per connection (inet_ntop is
     * a printf underneath).  Written and read by the connection's worker only. */
    char ip[INET6_ADDRSTRLEN];
};

struct conn_guard {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t sweeper;
    bool stopping;
    char name[32];
    size_t max_conns;
    int header_timeout_ms;
    int idle_timeout_ms;
    struct conn_slot *head, *tail; /* ordered by `since`: state changes move to the tail */
    size_t open;
    size_t nshut; /* slots shut down whose close libmicrohttpd has not reported yet */
    uint64_t timed_out, evicted, abandoned;
};

static void unlink_slot(struct conn_guard *g, struct conn_slot *s)
{
    if (s->prev) s->prev->next = s->next;
    else g->head = s->next;
    if (s->next) s->next->prev = s->prev;
    else g->tail = s->prev;
    s->prev = s->next = NULL;
}

/* Deadlines are whole seconds and every request moves its slot three times: the coarse
 * monotonic clock (a few ms of resolution, no TSC read) is enough and cheaper. */
static int64_t guard_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void append_slot(struct conn_guard *g, struct conn_slot *s)
{
    s->prev = g->tail;
    s->next = NULL;
    if (g->tail) g->tail->next = s;
    else g->head = s;
    g->tail = s;
}

static void set_state(struct conn_guard *g, struct conn_slot *s, enum slot_state st)
{
    s->state = st;
    s->since = guard_now_ms();
    unlink_slot(g, s);
    append_slot(g, s);
}

/* Under the lock.  The slot stays linked until libmicrohttpd reports the close. */
static void shut(struct conn_guard *g, struct conn_slot *s)
{
    if (s->shut) return;
    s->shut = true;
    g->nshut++;
    shutdown(s->fd, SHUT_RDWR);
}

static int64_t deadline_of(const struct conn_guard *g, const struct conn_slot *s)
{
    switch (s->state) {
    case SLOT_WAITING:
        return s->since + g->idle_timeout_ms;
    case SLOT_HEADERS:
        return s->since + g->header_timeout_ms;
    case SLOT_BODY:
    case SLOT_BUSY:
    default:
        return INT64_MAX;
    }
}

/* True when the client closed its side while its request body was still
 * coming: nothing is left to read and the peer has hung up.  libmicrohttpd
 * 0.9.75 does not notice this until its idle timeout, and the unfinished
 * request would hold a graceful shutdown that long. */
static bool body_abandoned(const struct conn_slot *s)
{
    struct pollfd pfd = {.fd = s->fd, .events = POLLRDHUP};
    if (poll(&pfd, 1, 0) != 1 || !(pfd.revents & (POLLRDHUP | POLLHUP))) return false;
    int unread = 0;
    return ioctl(s->fd, FIONREAD, &unread) == 0 && unread == 0;
}

static void *sweeper_main(void *arg)
{
    struct conn_guard *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += SWEEP_INTERVAL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        if (g->stopping) break;
        int64_t now = guard_now_ms();
        uint64_t n = 0;
        for (struct conn_slot *s = g->head; s; s = s->next) {
            if (s->shut) continue;
            if (deadline_of(g, s) <= now) {
                shut(g, s);
                n++;
            } else if (s->state == SLOT_BODY && body_abandoned(s)) {
                shut(g, s);
                g->abandoned++;
            }
        }
        if (n) {
            g->timed_out += n;
            LOG_D("%s: closed %llu connection(s) too slow to send a request", g->name,
                  (unsigned long long)n);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

struct conn_guard *conn_guard_create(const char *name, size_t max_conns, int header_timeout_ms,
                                     int idle_timeout_ms)
{
    struct conn_guard *g = calloc(1, sizeof *g);
    if (g == NULL) return NULL;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->max_conns = max_conns;
    g->header_timeout_ms = header_timeout_ms;
    g->idle_timeout_ms = idle_timeout_ms;
    if (pthread_create(&g->sweeper, NULL, sweeper_main, g) != 0) {
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return NULL;
    }
    return g;
}

void conn_guard_destroy(struct conn_guard *g)
{
    if (g == NULL) return;
    pthread_mutex_lock(&g->mu);
    g->stopping = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->sweeper, NULL);
    while (g->head) {
        struct conn_slot *s = g->head;
        unlink_slot(g, s);
        free(s);
    }
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

struct conn_slot *conn_guard_open(struct conn_guard *g, int fd)
{
    struct conn_slot *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->fd = fd;
    s->state = SLOT_WAITING;
    s->since = guard_now_ms();
    pthread_mutex_lock(&g->mu);
    append_slot(g, s);
    g->open++;
    /* At capacity, the connections that have not yet sent a request are the ones
     * to give up: a slow client loses its slot, a new one gets served. */
    for (struct conn_slot *p = g->head; p && g->open - g->nshut > g->max_conns; p = p->next) {
        if (p == s || p->shut || p->state == SLOT_BUSY) continue;
        shut(g, p);
        g->evicted++;
    }
    pthread_mutex_unlock(&g->mu);
    return s;
}

void *conn_guard_close(struct conn_guard *g, struct conn_slot *s)
{
    if (s == NULL) return NULL;
    pthread_mutex_lock(&g->mu);
    unlink_slot(g, s);
    g->open--;
    if (s->shut) g->nshut--;
    pthread_mutex_unlock(&g->mu);
    void *owner = s->owner;
    free(s);
    return owner;
}

void conn_guard_request_line(struct conn_guard *g, struct conn_slot *s)
{
    if (s == NULL) return;
    pthread_mutex_lock(&g->mu);
    set_state(g, s, SLOT_HEADERS);
    pthread_mutex_unlock(&g->mu);
}

void conn_guard_headers_done(struct conn_guard *g, struct conn_slot *s)
{
    if (s == NULL) return;
    pthread_mutex_lock(&g->mu);
    set_state(g, s, SLOT_BUSY);
    pthread_mutex_unlock(&g->mu);
}

void conn_guard_body_started(struct conn_guard *g, struct conn_slot *s)
{
    if (s == NULL) return;
    pthread_mutex_lock(&g->mu);
    set_state(g, s, SLOT_BODY);
    pthread_mutex_unlock(&g->mu);
}

void conn_guard_request_done(struct conn_guard *g, struct conn_slot *s)
{
    if (s == NULL) return;
    pthread_mutex_lock(&g->mu);
    s->owner = NULL;
    set_state(g, s, SLOT_WAITING);
    pthread_mutex_unlock(&g->mu);
}

void conn_guard_set_owner(struct conn_guard *g, struct conn_slot *s, void *owner)
{
    if (s == NULL) return;
    pthread_mutex_lock(&g->mu);
    s->owner = owner;
    pthread_mutex_unlock(&g->mu);
}

void conn_guard_stats(struct conn_guard *g, struct conn_guard_stats *out)
{
    pthread_mutex_lock(&g->mu);
    out->timed_out = g->timed_out;
    out->evicted = g->evicted;
    out->abandoned = g->abandoned;
    out->open = g->open;
    pthread_mutex_unlock(&g->mu);
}

void *conn_guard_mhd_notify(struct conn_guard *g, struct MHD_Connection *conn,
                            void **socket_context, int code)
{
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? conn_guard_open(g, ci->connect_fd) : NULL;
        return NULL;
    }
    void *owner = conn_guard_close(g, *socket_context);
    *socket_context = NULL;
    return owner;
}

struct conn_slot *conn_guard_mhd_slot(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static bool format_ip(struct MHD_Connection *conn, char *out, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL) return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        return inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
                         (socklen_t)len) != NULL;
    if (sa->sa_family == AF_INET6)
        return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
                         (socklen_t)len) != NULL;
    return false;
}

bool conn_guard_mhd_client_ip(struct MHD_Connection *conn, char *out, size_t len)
{
    if (len > 0) out[0] = '\0';
    struct conn_slot *slot = conn_guard_mhd_slot(conn);
    if (slot == NULL) return format_ip(conn, out, len);
    if (slot->ip[0] == '\0' && !format_ip(conn, slot->ip, sizeof slot->ip)) {
        slot->ip[0] = '\0';
        return false;
    }
    size_t n = strlen(slot->ip);
    if (n >= len) return false;
    memcpy(out, slot->ip, n + 1);
    return true;
}
