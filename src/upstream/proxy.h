/*
 * proxy - upstream HTTP transfers on the I/O loop (libcurl multi, socket API).
 *
 * A caller fills a struct upstream_fetch (method, path, headers, body, and a
 * completion callback) and hands it to proxy_submit() from any thread.  The
 * transfer runs on the loop thread; connections to the upstream are kept alive
 * and reused by the multi handle's connection cache.
 *
 * A response is buffered until it is complete, or until its body is known to
 * exceed fetch->buffer_limit (Content-Length or bytes received).  Past that
 * point the fetch switches to streaming: on_ready is called with
 * fetch->stream set, and the body flows through a bounded upstream_stream that
 * the HTTP worker drains (the transfer pauses while the stream is full).
 *
 * Ownership: the caller owns the fetch; the proxy borrows it from submit until
 * on_ready has been called AND (for a streamed fetch) the stream has finished
 * (on_ready is called exactly once; streaming completion is observed through
 * the stream).  For a streamed fetch the stream owns the fetch from then on:
 * release it with upstream_stream_release() from the consumer; the fetch is
 * freed with the stream once both sides are done.
 * Thread-safety: proxy_submit is safe from any thread; upstream_stream_* are
 * internally locked; everything else is confined to the loop thread.
 */
#ifndef CACHEGW_PROXY_H
#define CACHEGW_PROXY_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "headers.h"
#include "io_loop.h"

struct proxy;
struct upstream_stream;
struct upstream_fetch;
struct upstream_group;
struct upstream_instance;

/* At most this many attempts per fetch (the first and its retries). */
#define PROXY_MAX_ATTEMPTS 11
/* Waiters per connection slot of a group whose instances are all at max_connections. */
#define PROXY_WAITERS_PER_SLOT 4

struct proxy_options {
    const char *base_url;   /* http[s]://host[:port][/prefix], no trailing slash */
    int connect_timeout_ms;
    int total_timeout_ms;
    int max_connections;
};

enum upstream_error {
    UPSTREAM_OK = 0,
    UPSTREAM_REFUSED,   /* could not connect: 502 */
    UPSTREAM_TIMEOUT,   /* connect or total timeout: 504 */
    UPSTREAM_BROKEN,    /* reset, bad response, other transport error: 502 */
    UPSTREAM_BUSY,      /* every instance of the group at max_connections, no slot in time: 503 */
};

typedef void (*upstream_ready_fn)(struct upstream_fetch *fetch);
typedef void (*upstream_free_fn)(struct upstream_fetch *fetch);

struct upstream_fetch {
    /* Request: set by the caller before proxy_submit, unchanged afterwards. */
    const char *method;         /* "GET", "POST", ... */
    bool head_only;             /* send HEAD: no body is expected */
    char *target;               /* path + "?" + query, starts with '/' */
    struct header_list req_headers;
    const char *req_body;       /* borrowed until on_ready */
    size_t req_body_len;
    /* A body still arriving from the client (body_pipe.h), instead of req_body:
     * streamed upstream as it comes.  req_body_size is its length, -1 unknown
     * (sent chunked).  The proxy holds a reference while the transfer runs. */
    struct body_pipe *req_pipe;
    long long req_body_size;
    size_t buffer_limit;        /* stream bodies longer than this; 0 = never stream */
    upstream_ready_fn on_ready; /* loop thread, exactly once */
    upstream_free_fn on_free;   /* called when a streamed fetch is finally freed */
    /* Called by proxy_destroy, instead of on_ready, for a fetch still running or waiting
     * (its transfer already released), so an owner that would free it in on_ready can
     * free it then; NULL: the owner frees it itself (the request path drains first). */
    upstream_free_fn on_abandon;
    void *arg;
    /* Where it goes (issue 13, upstream_set.h).  With group set, the proxy picks an
     * instance for each attempt, reports each attempt's outcome (passive health), and
     * retries a connect failure or reset on another instance: GET and HEAD, other methods
     * only with retry_unsafe, never a body streamed from the client (req_pipe), never once
     * on_ready has been called, at most the group's retries times, within the time budget
     * (timeout_ms from the first attempt).  When every instance is at the group's
     * max_connections the attempt waits, first in first out, for one to finish: at most
     * PROXY_WAITERS_PER_SLOT x max_connections x instances waiters per group, each for at
     * most the connect timeout (and what is left of its budget); otherwise it ends with
     * UPSTREAM_BUSY.  With only instance set (health checks) it goes there, once, uncounted,
     * resolving its name on dns_ttl_s like the group's requests.  With neither, to the
     * proxy's base URL (bounded by max_connections of the proxy, over all upstreams). */
    struct upstream_group *group;       /* owned reference; upstream_fetch_clear drops it */
    const char *balance_key;            /* hash balancing's key; borrowed until on_ready */
    bool retry_unsafe;                  /* the route allows retrying other methods */
    struct upstream_instance *instance; /* the current attempt's; owned reference */
    int connect_timeout_ms, timeout_ms; /* 0: the group's, else the proxy's */
    int dns_ttl_s; /* probes (instance, no group): seconds a resolved name is reused */

    /* Response: valid in on_ready. */
    enum upstream_error error;
    char errmsg[160];
    int status;
    struct header_list resp_headers; /* as received, hop-by-hop included */
    struct buf body;                 /* whole body, unless streaming */
    struct upstream_stream *stream;  /* non-NULL when streaming */
    long long content_length;        /* -1 if unknown */

    /* Private to proxy.c. */
    void *easy;
    struct proxy *proxy;
    void *curl_headers;
    bool ready_sent;
    bool attempt_open; /* instance's attempt not yet reported (upstream_instance_done) */
    int attempts;
    int64_t started_ms;
    struct upstream_fetch *wait_prev, *wait_next; /* waiting for a slot (group at its bound) */
    struct upstream_fetch *run_prev, *run_next;   /* a transfer in the multi handle */
    struct io_timer *wait_timer;
    bool waiting;
    struct upstream_instance *tried[PROXY_MAX_ATTEMPTS]; /* owned references */
};

int proxy_create(struct io_loop *loop, const struct proxy_options *opts, struct proxy **out);
/* Loop thread (or after the loop stopped): aborts the transfers still running, ends the
 * fetches still waiting for a slot (on_abandon for both), and frees. */
void proxy_destroy(struct proxy *proxy);

/* Starts the transfer.  Any thread.  Returns 0 or a negative errno (then
 * on_ready is never called). */
int proxy_submit(struct proxy *proxy, struct upstream_fetch *fetch);

/* Number of transfers in progress (any thread, approximate). */
int proxy_active(const struct proxy *proxy);

/* ---- streaming ---- */

enum stream_read {
    STREAM_DATA,    /* *n bytes copied */
    STREAM_WAIT,    /* nothing yet: call wake_arm and suspend */
    STREAM_END,     /* body complete */
    STREAM_FAILED,  /* transfer failed mid-body */
};

typedef void (*stream_signal_fn)(void *arg);

/* Copies up to max bytes into dst.  When nothing is available and the body is
 * not done, calls suspend(arg) while holding the stream's lock, remembers
 * resume(arg), and returns STREAM_WAIT; the loop thread calls resume(arg)
 * (once, under the same lock) when data, the end or a failure arrives.  Doing
 * both under one lock guarantees a resume never precedes its suspend. */
enum stream_read upstream_stream_read(struct upstream_stream *s, char *dst, size_t max, size_t *n,
                                      stream_signal_fn suspend, stream_signal_fn resume,
                                      void *arg);

/* The consumer is done (response sent or client gone).  Aborts the transfer if
 * it is still running.  Frees everything once the transfer has ended too. */
void upstream_stream_release(struct upstream_stream *s);

/* Frees a buffered (non-streamed) fetch's response and request parts, and drops its group
 * and instance references. */
void upstream_fetch_clear(struct upstream_fetch *fetch);

#endif
