/*
 * http_server - the gateway's listener: the HTTP/1.1 server (h1_server.h)
 * adapted to the request steps.
 *
 * Workers (the HTTP server's threads) parse requests, answer the gateway's
 * own endpoints, look up the memory tier and answer hits directly.  Anything
 * that needs the network (upstream fetch, Redis) is handed to the I/O loop
 * while the connection is suspended; the loop resumes it when the result is
 * ready, and the worker then answers (docs/design.md, invariant 1).
 *
 * Ownership: the server borrows the gateway context for its lifetime.
 * Thread-safety: start/drain/stop from the main thread only.
 */
#ifndef CACHEGW_HTTP_SERVER_H
#define CACHEGW_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "gateway.h"

/* Starts listening.  Returns 0, or -1 with err filled. */
int http_server_start(struct gateway *gw, char *err, size_t err_len);
/* Drains for a stop (SIGTERM): new connections are closed as soon as they are accepted;
 * requests in flight finish, and the open connections' requests are served while any
 * request is in flight; once none is, requests not begun yet are turned away.  Returns
 * the requests still in flight at deadline_ms (clock_mono_ms), 0 when drained. */
int http_server_drain(struct gateway *gw, int64_t deadline_ms);
/* Requests in progress (including suspended ones). */
int http_server_active(const struct gateway *gw);
/* Stops the daemon.  Only call when http_server_active() is 0. */
void http_server_stop(struct gateway *gw);

#endif
