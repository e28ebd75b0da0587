/*
 * conn_guard - keeps a listener reachable under slow-client attacks
 * (slowloris): a whole-time deadline for a request's line and headers, and
 * eviction of the oldest connections that have not sent a complete request
 * (line, headers and body) when the listener is at capacity.  It guards the
 * main listener (h1_server.h) and the admin one (libmicrohttpd).
 *
 * An idle timeout is reset by every byte, so a client sending one header line
 * every few seconds would hold its connection forever.  The guard tracks every
 * connection from its server's open/close notifications:
 *
 *   WAITING   open, no request line yet (new, or idle keep-alive between
 *             requests); deadline: idle_timeout after it began waiting.
 *   HEADERS   the first bytes of a request arrived; deadline: header_timeout
 *             after that.
 *   BODY      the header block is complete and a request body is coming; no
 *             deadline, but a client that hangs up before the body ends is
 *             noticed.
 *   BUSY      the request is complete; no deadline here (the response has its
 *             own bounds).
 *
 * A connection past its deadline, or the oldest WAITING/HEADERS/BODY one when
 * the open count exceeds max_conns, is closed by shutdown(2) of its socket:
 * its server then sees the peer gone and releases it through its normal path
 * (completion and close notifications).  The fd stays valid while its slot is
 * in the guard: the servers notify the close before they close the socket,
 * and the slot is unlinked under the same lock.
 *
 * Ownership: the guard owns its slots; conn_guard_close frees one.  A slot may
 * carry one opaque pointer for its owner (the request being parsed), handed
 * back by conn_guard_close so nothing leaks when libmicrohttpd (the admin
 * listener) drops a connection without a completion callback.
 * Thread-safety: internally locked; call from any thread.  A sweeper thread
 * enforces the deadlines.
 */
#ifndef CACHEGW_CONN_GUARD_H
#define CACHEGW_CONN_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn_guard;
struct conn_slot;

struct conn_guard_stats {
    uint64_t timed_out; /* closed past their header/idle deadline */
    uint64_t evicted;   /* closed to make room at capacity */
    uint64_t abandoned; /* closed because the client hung up in the middle of a body */
    size_t open;        /* connections open now */
};

/* Creates a guard and starts its sweeper thread.  name appears in log lines.
 * Returns NULL on allocation or thread failure. */
struct conn_guard *conn_guard_create(const char *name, size_t max_conns, int header_timeout_ms,
                                     int idle_timeout_ms);
/* Stops the sweeper and frees the guard (every connection must be closed). */
void conn_guard_destroy(struct conn_guard *g);

/* A connection was accepted on fd.  Evicts the oldest waiting connection when
 * the open count is past max_conns.  Returns its slot, or NULL (out of memory:
 * the connection is then simply not guarded). */
struct conn_slot *conn_guard_open(struct conn_guard *g, int fd);
/* The connection is gone; returns the slot's owner pointer (NULL when none)
 * and frees the slot.  NULL slot is a no-op returning NULL. */
void *conn_guard_close(struct conn_guard *g, struct conn_slot *s);
/* The request line arrived: the header deadline starts. */
void conn_guard_request_line(struct conn_guard *g, struct conn_slot *s);
/* The header block is complete. */
void conn_guard_headers_done(struct conn_guard *g, struct conn_slot *s);
/* The header block is complete and a body follows (BODY until headers_done). */
void conn_guard_body_started(struct conn_guard *g, struct conn_slot *s);
/* The request ended; the connection waits for the next one (keep-alive). */
void conn_guard_request_done(struct conn_guard *g, struct conn_slot *s);
/* Sets the owner pointer handed back by conn_guard_close. */
void conn_guard_set_owner(struct conn_guard *g, struct conn_slot *s, void *owner);

void conn_guard_stats(struct conn_guard *g, struct conn_guard_stats *out);

/* libmicrohttpd glue.  Call from the daemon's MHD_OPTION_NOTIFY_CONNECTION
 * callback with its arguments (code is an enum MHD_ConnectionNotificationCode):
 * opens the slot on STARTED (stored in *socket_context) and closes it on
 * CLOSED, returning the slot's owner pointer then (NULL otherwise). */
struct MHD_Connection;
void *conn_guard_mhd_notify(struct conn_guard *g, struct MHD_Connection *conn,
                            void **socket_context, int code);
/* The slot of a connection (its socket context), or NULL. */
struct conn_slot *conn_guard_mhd_slot(struct MHD_Connection *conn);
/* The client's address as text into out (len bytes); "" and false when unknown. */
bool conn_guard_mhd_client_ip(struct MHD_Connection *conn, char *out, size_t len);

#endif
