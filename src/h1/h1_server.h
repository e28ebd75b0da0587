/*
 * h1_server - the gateway's own HTTP/1.1 server: listener, worker threads and
 * client connections (RFC 9112), reading the bytes itself (h1_parse.h) and
 * writing answers built as h1_response.h.
 *
 * Each worker thread runs one epoll set holding the shared listening socket
 * (EPOLLEXCLUSIVE) and its own connections, edge-triggered.  A connection
 * stays on the worker that accepted it.  Per request, on that worker:
 *
 *   request_begin   the head is in (or refused by the parser): the caller
 *                   makes its request context from the raw target;
 *   handle          called once when the head is in (upload size 0), once per
 *                   body block (size > 0; the handler may leave part of it,
 *                   suspending), once when the body is complete (size 0), and
 *                   once after every resume (size 0, or the unconsumed block);
 *   body_error      the body's framing turned out bad after the head was
 *                   accepted: the handler answers (or the connection closes);
 *   completed       the answer was sent (ok) or the request was abandoned
 *                   (client gone, timeout, stop); the context is released.
 *
 * A handler answers with h1_server_queue, or suspends the connection
 * (h1_conn_suspend, on the worker) until another thread calls h1_conn_resume.
 * An answer queued in the first call, or before the body was read, closes
 * the connection after it is sent (the rest of the body is not read: a
 * refused request's bytes are never taken as the next request).  Expect:
 * 100-continue is answered when the body is first needed.  Keep-alive and
 * pipelining follow RFC 9112 §9; answers go out in order, one request at a
 * time.  Closing connections linger briefly (reading and dropping) so a
 * client still sending sees the answer rather than a reset.
 *
 * Bounds: max_conns connections (more are closed at accept), max_head bytes
 * of head (414/431), idle_timeout_ms without progress (not while suspended).
 *
 * Ownership: the server owns its connections and threads; it borrows the
 * handlers' cls.  Thread-safety: h1_server_start/stop from one thread;
 * h1_conn_resume from any thread; everything else on the connection's worker.
 */
#ifndef CACHEGW_H1_SERVER_H
#define CACHEGW_H1_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "h1_parse.h"
#include "h1_response.h"

struct h1_server;
struct h1_conn;

enum h1_result { H1_NO = 0, H1_YES = 1 };

struct h1_handlers {
    void *cls;
    /* A connection was accepted; false closes it at once (a draining server). */
    bool (*accept)(void *cls);
    /* The connection opened / is closing (after the completion of its request). */
    void (*conn_open)(void *cls, struct h1_conn *c);
    void (*conn_close)(void *cls, struct h1_conn *c);
    /* The first bytes of a request arrived (its head's deadline may start). */
    void (*request_line)(void *cls, struct h1_conn *c);
    /* NULL closes the connection without an answer. */
    void *(*request_begin)(void *cls, struct h1_conn *c, const char *target);
    enum h1_result (*handle)(void *cls, struct h1_conn *c, void *req, const char *upload,
                             size_t *upload_size);
    void (*body_error)(void *cls, struct h1_conn *c, void *req, const char *reason);
    void (*completed)(void *cls, struct h1_conn *c, void *req, bool ok);
};

struct h1_server_config {
    const struct sockaddr *addr;
    socklen_t addr_len;
    unsigned workers;
    unsigned max_conns;
    int idle_timeout_ms;
    size_t max_head;
    int backlog;
};

/* Binds, listens and starts the workers.  Returns NULL with err filled. */
struct h1_server *h1_server_start(const struct h1_server_config *cfg,
                                  const struct h1_handlers *handlers, char *err, size_t err_len);
/* Closes the listener, stops the workers and closes every connection (their
 * requests complete as abandoned; suspended ones are left to the exit). */
void h1_server_stop(struct h1_server *s);
/* Connections open now. */
unsigned h1_server_connections(const struct h1_server *s);

/* Queues the answer to the connection's current request (takes its own
 * reference).  Returns 0, or -1 when one was queued already or it failed. */
int h1_server_queue(struct h1_conn *c, int status, struct h1_response *resp);

void h1_conn_suspend(struct h1_conn *c);
void h1_conn_resume(struct h1_conn *c);

/* The current request's head as parsed (status != 0: the parser refused it). */
const struct h1_head *h1_conn_head(const struct h1_conn *c);
/* The current request's body as its head frames it: its Content-Length, 0 when it has
 * none, -1 when it is chunked (a length past LLONG_MAX reads as LLONG_MAX). */
long long h1_conn_body_length(const struct h1_conn *c);
/* The client's address as text ("" when unknown). */
const char *h1_conn_client_ip(const struct h1_conn *c);
int h1_conn_fd(const struct h1_conn *c);
void h1_conn_set_context(struct h1_conn *c, void *ctx);
void *h1_conn_context(const struct h1_conn *c);

#endif
