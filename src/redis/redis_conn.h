/*
 * redis_conn - one non-blocking connection to a Redis server, on the I/O loop.
 *
 * The transport is ours (non-blocking TCP, OpenSSL for rediss:// via tls.h);
 * hiredis only formats commands (redisFormatCommandArgv) and parses replies
 * (redisReader).  A connection goes CLOSED -> CONNECTING (TCP, trying each
 * resolved address in turn) -> TLS (handshake, rediss only) -> HANDSHAKE
 * (AUTH, SELECT and a PING pipelined in one write, their replies checked) ->
 * READY.  The connect timeout covers all of that.
 *
 * Commands are appended to an output buffer and written as the socket allows;
 * replies are matched first-in first-out to the queue of pending callbacks, so
 * any number of commands may be in flight (pipelining).  Every pending command
 * has a deadline (op_timeout_ms after it was queued); when the oldest one
 * passes its deadline the connection is considered broken: it is closed and
 * every pending callback fails with REDIS_ERR_TIMEOUT.
 *
 * Replies are bounded AS THEY ARE PARSED, so that a hostile or broken server
 * (or a man in the middle without TLS) cannot freeze the loop or eat memory:
 * an array header may announce at most max_reply_elements elements, and all
 * the arrays of one reply together at most as many (hiredis 0.14 would
 * allocate the announced count at once); a bulk string header may announce at
 * most max_reply_bytes; unparsed bytes are bounded by max_reply_bytes; nesting
 * is bounded by hiredis itself (7 levels).  A violation is a protocol error:
 * the connection is closed and every pending command fails.  At most
 * REDIS_CONN_READ_BUDGET bytes are read per wake-up; the rest is read on the
 * next loop turn, so timers and other sockets are served in between.
 *
 * Every failure has a kind (redis_conn_error_kind): timeout, protocol,
 * refused (connection refused, server full), auth (AUTH or ACL refused: a
 * refusal too) or closed (everything else: closed or reset by the server,
 * write errors, TLS failures).
 *
 * Failure is reported once per connection attempt or session through the
 * state callback (up == false, with a reason such as "connection refused
 * (127.0.0.1:6379)" or "authentication failed (WRONGPASS ...)"), then every
 * pending callback fails with an error string.  Reasons never contain the
 * password.  A connection with a message handler (subscriber mode) hands
 * pub/sub "message" / "pmessage" pushes to it instead of the queue.
 *
 * Callbacks run on the loop thread, exactly once per accepted command; a
 * function that fails at once returns < 0 and never calls its callback.  A
 * callback may queue further commands, and may destroy the connection
 * (destruction is deferred until the callback returns).
 *
 * The process need not ignore SIGPIPE: writes use MSG_NOSIGNAL (plain) or
 * tls.h's socket BIO (TLS).
 *
 * Ownership: the connection borrows cfg (and cfg->ssl_ctx, strings) for its
 * whole life; replies passed to callbacks are borrowed for the call only.
 * Thread-safety: confined to the loop thread.
 */
#ifndef CACHEGW_REDIS_CONN_H
#define CACHEGW_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "io_loop.h"

struct redis_conn;

/* Called once per command: reply is NULL iff err != NULL.  err is a transport
 * failure (the command's fate is unknown); a Redis error answer is a reply of
 * type REDIS_REPLY_ERROR.  The reply is freed when the callback returns. */
typedef void (*redis_reply_fn)(void *arg, const redisReply *reply, const char *err);

/* The error string of a command that timed out (compare with strcmp). */
#define REDIS_ERR_TIMEOUT "timeout"

/* A pub/sub message: pattern is NULL unless the subscription was PSUBSCRIBE. */
typedef void (*redis_message_fn)(void *arg, const char *channel, size_t channel_len,
                                 const char *payload, size_t payload_len);

/* up == true: the connection is READY.  up == false: an attempt or a session
 * failed; reason says why.  Not called for redis_conn_close / destroy. */
typedef void (*redis_conn_state_fn)(void *arg, struct redis_conn *c, bool up, const char *reason);

#define REDIS_CONN_MAX_ADDRS 8

/* Bytes read from the socket per wake-up before the loop gets control back. */
#define REDIS_CONN_READ_BUDGET (256u * 1024)
/* Default bound on the array elements of one reply (all levels together). */
#define REDIS_CONN_DEFAULT_MAX_ELEMENTS (1u << 20)

enum redis_conn_error {
    REDIS_CONN_ERR_NONE = 0,
    REDIS_CONN_ERR_TIMEOUT, /* a command or the connection attempt timed out */
    REDIS_CONN_ERR_PROTOCOL, /* malformed or out-of-bounds reply, unsolicited reply */
    REDIS_CONN_ERR_REFUSED, /* connection refused, AUTH/ACL refused, server full */
    REDIS_CONN_ERR_CLOSED, /* closed or reset by the server, I/O or TLS error, ... */
    REDIS_CONN_ERR_AUTH, /* AUTH or ACL refused (WRONGPASS, NOAUTH, NOPERM): a refusal too */
};

struct redis_addr {
    struct sockaddr_storage sa;
    socklen_t len;
};

struct redis_conn_config {
    struct io_loop *loop;
    const char *host; /* as given by the user: TLS name check, messages */
    int port;
    SSL_CTX *ssl_ctx; /* NULL: plain TCP */
    const char *user; /* NULL: AUTH <password> */
    const char *password; /* NULL: no AUTH */
    int db; /* SELECT when != 0 */
    int connect_timeout_ms; /* TCP + TLS + AUTH/SELECT/PING */
    int op_timeout_ms; /* per command, from queueing to reply */
    int keepalive_idle_s; /* TCP_KEEPIDLE; 0: 30 s */
    size_t max_pending; /* commands in flight; 0: unlimited */
    size_t max_output_bytes; /* unsent bytes queued; 0: unlimited */
    size_t max_reply_bytes; /* buffered unparsed reply bytes, and the largest bulk
                               length a header may announce; 0: unlimited */
    size_t max_reply_elements; /* array elements per reply, all levels; 0: default */
};

enum redis_conn_state {
    REDIS_CONN_CLOSED = 0,
    REDIS_CONN_CONNECTING,
    REDIS_CONN_TLS,
    REDIS_CONN_HANDSHAKE,
    REDIS_CONN_READY,
};

/* Creates a CLOSED connection.  Returns 0 or -ENOMEM. */
int redis_conn_create(const struct redis_conn_config *cfg, redis_conn_state_fn on_state, void *arg,
                      struct redis_conn **out);
/* Closes (pending commands fail with "connection closed") and frees.  Safe
 * inside this connection's callbacks: the memory is released on return. */
void redis_conn_destroy(struct redis_conn *c);

/* Starts connecting to addrs[0..n) in order (copied).  The outcome comes
 * through the state callback.  Returns 0, or < 0 with redis_conn_reason() set
 * and no callback: -EBUSY (not CLOSED), -EDESTADDRREQ (n == 0),
 * -ECONNREFUSED or another -errno (every address failed at once: a loopback
 * port with nothing listening fails inside connect()), -ENOMEM. */
int redis_conn_connect(struct redis_conn *c, const struct redis_addr *addrs, size_t n);

/* Closes the connection now; pending callbacks fail with reason.  The state
 * callback is not called. */
void redis_conn_close(struct redis_conn *c, const char *reason);

/* Queues a command (binary-safe argv).  Only in HANDSHAKE or READY state.
 * Returns 0, or -ENOTCONN / -ENOBUFS (max_pending or max_output_bytes reached)
 * / -EINVAL / -ENOMEM, and then fn is never called. */
int redis_conn_command_argv(struct redis_conn *c, int argc, const char **argv, const size_t *lens,
                            redis_reply_fn fn, void *arg);
/* Same with a command already in RESP form (copied). */
int redis_conn_command_raw(struct redis_conn *c, const char *cmd, size_t len, redis_reply_fn fn,
                           void *arg);

/* Puts the connection in subscriber mode: pub/sub pushes go to fn. */
void redis_conn_set_message_handler(struct redis_conn *c, redis_message_fn fn, void *arg);

struct redis_sub_watch;
/* Reports this connection's input to w (redis_sub_watch.h; NULL: none): its
 * socket while READY, and each read-and-dispatch pass, so that other threads
 * can tell whether pushes have arrived that the loop has not handed to the
 * message handler yet.  w must outlive the connection or be replaced first. */
void redis_conn_set_sub_watch(struct redis_conn *c, struct redis_sub_watch *w);

enum redis_conn_state redis_conn_get_state(const struct redis_conn *c);
/* Commands queued and not yet answered. */
size_t redis_conn_pending(const struct redis_conn *c);
/* The reason of the last failure ("" if none). */
const char *redis_conn_reason(const struct redis_conn *c);
/* The kind of the last failure (REDIS_CONN_ERR_NONE if none). */
enum redis_conn_error redis_conn_error_kind(const struct redis_conn *c);
/* Monotonic ms of the last bytes received (0: never). */
int64_t redis_conn_last_read_ms(const struct redis_conn *c);

#endif
