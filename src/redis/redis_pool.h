/*
 * redis_pool - N Redis connections (redis_conn) on the I/O loop, with health
 * checks, background reconnection and retries; the only way the gateway talks
 * to Redis.
 *
 * Commands go round-robin to the connections that are READY.  When none is,
 * redis_pool_command fails at once with -ENOTCONN (no callback), so callers
 * fall back to the memory tier immediately; nothing is queued while Redis is
 * down.  A command whose connection timed out or broke is retried on another
 * READY connection, at most `retries` times.  Every READY connection gets a
 * PING every health_interval_s (its round trip is the pool's latency).  A
 * connection that fails is reconnected in the background with capped
 * exponential backoff and jitter (reconnect_min_ms doubling to
 * reconnect_max_ms); when one connection comes back after an outage, the
 * others retry at once.  redis_pool_available() is false from the moment the
 * last connection drops until one is READY again.
 *
 * Host names are resolved once in redis_pool_create (the calling thread; at
 * start-up that is the main thread) and, after a failed connection attempt,
 * again in a short-lived detached helper thread (getaddrinfo is blocking and
 * must not run on the loop), at most once a second; the result is posted back
 * to the loop.  IP literals are never resolved.
 *
 * Log lines (grepped for by users): "Redis cache connected successfully
 * (SSL/TLS enabled)" or "Redis cache connected successfully" on the first
 * success and on each recovery; "Redis connection failed: <reason>" followed by
 * "Using in-memory cache" once per outage (further failed attempts log at
 * debug).  Insecure TLS logs a warning at creation.  The password never
 * appears in any log line, reason or error.
 *
 * Trouble that is not an outage reaches the log too, rate limited: each kind
 * of failure (timeout, protocol, refused, closed; see redis_conn.h) logs one
 * warning "Redis <kind> on a connection: <reason>" at most every 30 s (the
 * next one says how many were not logged); during an outage, a failure of
 * another kind than the one logged (say WRONGPASS after "connection closed by
 * server", a password rotation) logs "Redis connection failed: <reason>"
 * again.  Every failure and every error reply is counted (redis_pool_get_stats).
 *
 * Circuit breaker: a Redis that answers PING but stalls commands would cost
 * every cold request (1 + retries) x op timeout, forever.  After
 * breaker_threshold command timeouts in a row (a connection whose oldest
 * command passed its deadline; any answered command resets the count), the
 * breaker opens: commands fail at once with -ENOTCONN and
 * redis_pool_available() is false, so callers use the memory tier.  After a
 * cool-down (breaker_cooldown_ms, doubling while probes fail, up to
 * breaker_cooldown_max_ms) it is half-open: the next command goes through as
 * a probe (others still fail fast); its answer closes the breaker, its failure
 * opens it again.  "Redis circuit breaker open: ..." and "Redis circuit
 * breaker closed: ..." are logged once each per episode.
 *
 * Subscriptions (redis_pool_subscribe) get a dedicated connection each, with
 * the same reconnection, and are told when they are subscribed again after a
 * gap during which messages may have been missed.  A SUBSCRIBE that Redis
 * refuses (an ACL without the channel) is retried with the same capped
 * exponential backoff, and logged once until it succeeds.
 *
 * Cluster and Sentinel (docs/design.md, "Redis Cluster and Sentinel"): with
 * mode AUTO, CLUSTER or SENTINEL the pool is a router (redis_cluster.h) over
 * one ordinary pool per node, created on demand; the API and its contract stay
 * the same for callers, commands being routed by the slot of their key.
 * MODE_STANDALONE (0, the default of a zeroed options struct) is the pool
 * described above and nothing else.
 *
 * Ownership: the pool borrows the loop (which must outlive it) and copies
 * everything it needs from the options (URL strings, file names); it owns its
 * connections, TLS context and subscriptions.
 * Life cycle: create (any thread) -> post redis_pool_start to the loop ->
 * commands on the loop -> redis_pool_stop on the loop (fails every pending
 * command) -> redis_pool_destroy (any thread, once stop has run or if the pool
 * was never started).
 * Thread-safety: redis_pool_available, redis_pool_connected,
 * redis_pool_last_latency_ms and redis_pool_get_stats are atomic and safe
 * from any thread; everything
 * else is confined to the loop thread (create and destroy excepted, see above).
 */
#ifndef CACHEGW_REDIS_POOL_H
#define CACHEGW_REDIS_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io_loop.h"
#include "redis_conn.h"
#include "redis_url.h"

struct redis_pool;
struct redis_sub;

enum redis_pool_mode {
    REDIS_POOL_STANDALONE = 0, /* one node: exactly this module */
    REDIS_POOL_AUTO, /* a Redis Cluster if the first seed says cluster support is on */
    REDIS_POOL_CLUSTER, /* url's nodes are seeds of a Redis Cluster */
    REDIS_POOL_SENTINEL, /* the master comes from the sentinels */
};

struct redis_pool_options {
    enum redis_pool_mode mode;
    const struct redis_url_node *sentinels; /* SENTINEL: host:port of each (copied) */
    size_t n_sentinels;
    const char *sentinel_master; /* SENTINEL: the monitored master's name */
    const char *sentinel_password; /* NULL: no AUTH to the sentinels */
    bool sentinel_tls; /* TLS to the sentinels (same CA / client certificate) */
    const struct redis_url *url; /* copied */
    int pool_size; /* connections; 0: 10 */
    int connect_timeout_ms; /* TCP + TLS + AUTH; 0: 2000 */
    int op_timeout_ms; /* per command; 0: 2000 */
    int retries; /* retries of a command that timed out or lost its
                                    connection, on another connection; < 0: 0 */
    int health_interval_s; /* PING period per connection; 0: 30 */
    const char *tls_ca_file; /* rediss: CA bundle (replaces the system store) */
    const char *tls_cert_file; /* rediss: client certificate (mTLS) */
    const char *tls_key_file; /* rediss: its key */
    bool tls_insecure; /* rediss: no certificate verification (logged) */
    int reconnect_min_ms; /* first reconnect delay; 0: 100 */
    int reconnect_max_ms; /* backoff cap; 0: 5000 */
    int max_pending; /* commands in flight per connection; 0: 1024 */
    size_t max_reply_bytes; /* largest reply accepted; 0: 64 MiB */
    int breaker_threshold; /* command timeouts in a row that open it; 0: 5; < 0: off */
    int breaker_cooldown_ms; /* first cool-down; 0: 1000 */
    int breaker_cooldown_max_ms; /* cool-down cap; 0: 60000 */
};

enum redis_breaker_state { REDIS_BREAKER_CLOSED = 0, REDIS_BREAKER_OPEN, REDIS_BREAKER_HALF_OPEN };

struct redis_pool_stats {
    uint64_t err_timeout; /* commands or connection attempts that timed out */
    uint64_t err_protocol; /* malformed or out-of-bounds replies */
    uint64_t err_refused; /* connections refused (TCP, AUTH, ACL) and error replies */
    uint64_t err_closed; /* connections closed or reset by the server, I/O errors */
    uint64_t breaker_opens; /* times the circuit breaker opened */
    enum redis_breaker_state breaker; /* now */
};

/* What a router (cluster or sentinel mode) knows; zeros for a standalone pool
 * except mode.  Any thread. */
struct redis_topology {
    const char *mode; /* "standalone", "cluster", "sentinel" (static string) */
    int nodes_known; /* node pools (masters, seeds, old masters) */
    int nodes_up; /* of those, with a READY connection */
    int masters; /* masters in the slot map (1 in sentinel mode once found) */
    int masters_up; /* of those, with a READY connection */
    int64_t map_age_ms; /* since the slot map / master address was last loaded; < 0: never */
    uint64_t moved, ask, tryagain; /* redirects followed */
    uint64_t refreshes; /* slot map loads (CLUSTER SLOTS) or sentinel queries answered */
    uint64_t failovers; /* master changes seen (sentinel) or masters replaced in the map */
};
void redis_pool_get_topology(const struct redis_pool *p, struct redis_topology *out);

/* Validates the options, creates the TLS context (rediss) and resolves the
 * host.  A host that does not resolve is not an error here (Redis being
 * unreachable at start-up never is): connection attempts report it and retry.
 * Returns 0, or -EINVAL (bad options, unreadable CA / certificate / key; reason
 * in err, never containing the password) or -ENOMEM. */
int redis_pool_create(struct io_loop *loop, const struct redis_pool_options *o,
                      struct redis_pool **out, char *err, size_t errlen);
/* Starts connecting.  Loop thread (post it). */
void redis_pool_start(struct redis_pool *p);
/* Closes every connection; pending commands fail ("pool stopped"), no
 * reconnection follows.  Loop thread.  Must not be called from inside one of
 * the pool's own callbacks. */
void redis_pool_stop(struct redis_pool *p);
/* Frees the pool (see the life cycle above).  NULL is a no-op. */
void redis_pool_destroy(struct redis_pool *p);

/* Any thread. */
bool redis_pool_available(const struct redis_pool *p);
int redis_pool_connected(const struct redis_pool *p); /* READY connections */
double redis_pool_last_latency_ms(const struct redis_pool *p); /* last PING RTT; < 0: none yet */
bool redis_pool_tls(const struct redis_pool *p);
void redis_pool_get_stats(const struct redis_pool *p, struct redis_pool_stats *out);

/* Sends a command (binary-safe argv) on a READY connection.  Returns 0 and
 * later calls fn exactly once on the loop thread; or fails at once, without
 * calling fn: -ENOTCONN (no connection READY, or stopped), -ENOBUFS (every
 * READY connection has max_pending commands in flight), -EINVAL, -ENOMEM. */
int redis_pool_command(struct redis_pool *p, int argc, const char **argv, const size_t *lens,
                       redis_reply_fn fn, void *arg);
/* For redis_cluster.c: a command already in RESP form (copied), optionally
 * preceded by ASKING on the same connection.  As redis_pool_command. */
int redis_pool_command_raw(struct redis_pool *p, const char *cmd, size_t len, bool asking,
                           redis_reply_fn fn, void *arg);

/* PING; its round trip updates redis_pool_last_latency_ms.  As above. */
int redis_pool_ping(struct redis_pool *p, redis_reply_fn fn, void *arg);

/* A subscription's callbacks, on the loop thread.  on_state(subscribed=true)
 * after each successful SUBSCRIBE, with after_gap set when an earlier attempt
 * failed or the previous session dropped (messages may have been missed);
 * on_state(subscribed=false) when the session drops. */
typedef void (*redis_sub_message_fn)(void *arg, const char *payload, size_t len);
typedef void (*redis_sub_state_fn)(void *arg, bool subscribed, bool after_gap);

/* Subscribes to channel on a dedicated connection (connects now if the pool is
 * started, else at start).  Loop thread, or the creating thread before start.
 * Returns 0 or -ENOMEM / -ENOTCONN (stopped). */
int redis_pool_subscribe(struct redis_pool *p, const char *channel, size_t channel_len,
                         redis_sub_message_fn on_message, redis_sub_state_fn on_state, void *arg,
                         struct redis_sub **out);
/* For redis_cluster.c: replaces a subscription's state callback (allowed
 * inside that callback). */
void redis_pool_sub_set_state_fn(struct redis_sub *s, redis_sub_state_fn fn);

/* Reports the subscription's input to w (redis_sub_watch.h; NULL: none), on
 * whichever connection (and, on a cluster, node) carries it now or later.
 * w must outlive the subscription.  Loop thread, or before start. */
struct redis_sub_watch;
void redis_pool_sub_set_watch(struct redis_sub *s, struct redis_sub_watch *w);

/* Cluster mode: PUBLISH goes to the master of key's slot and subscriptions
 * live there (see redis_cluster.h); a no-op for one node.  Loop thread, or
 * before start. */
void redis_pool_set_pubsub_key(struct redis_pool *p, const char *key, size_t len);

/* Closes the subscription's connection and frees it.  No callback follows.
 * Loop thread (or before start). */
void redis_pool_unsubscribe(struct redis_pool *p, struct redis_sub *s);

#endif
