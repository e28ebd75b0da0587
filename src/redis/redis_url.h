/*
 * redis_url - parses REDIS_URL values: redis://[user[:password]@]host[:port][/db],
 * or rediss:// for TLS.
 *
 * The authority may also be a comma-separated seed list for a Redis Cluster,
 * redis://:pw@h1:6379,h2:6379,h3:6379: every node gets the same user,
 * password, database and TLS setting.  host/port are the first seed; nodes
 * lists them all (one entry for a single-node URL).
 *
 * The host may be a name, an IPv4 address or a bracketed IPv6 literal
 * ("[::1]"); the port defaults to 6379 and the database to 0.  The user name
 * and password are percent-decoded ("p%40ss" is "p@ss").  The userinfo ends at
 * the last '@', so a password holding a raw '@', '/' or '#' still parses.
 *
 * Errors never quote the input: the message written to err is safe to log
 * even when the URL carries a password.  redis_url_redacted gives a loggable
 * form of any string that was meant as a Redis URL.
 *
 * Ownership: redis_url_parse fills *out with strings it allocates;
 * redis_url_free wipes the password and releases them.  After a failed parse
 * *out is zeroed, so redis_url_free is always safe to call.
 * Thread-safety: no shared state; every function is reentrant.
 */
#ifndef CACHEGW_REDIS_URL_H
#define CACHEGW_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define REDIS_URL_DEFAULT_PORT 6379
#define REDIS_URL_MAX_NODES 64
#define REDIS_URL_MAX_NODES_STR "64"

struct redis_url_node {
    char *host; /* IPv6 without brackets */
    int port;
};

struct redis_url {
    bool tls;       /* scheme was rediss:// */
    char *user;     /* NULL if absent or empty */
    char *password; /* NULL if absent or empty */
    char *host;     /* never NULL after a successful parse; IPv6 without brackets */
    int port;       /* 1..65535 */
    int db;         /* 0..INT_MAX */
    struct redis_url_node *nodes; /* every seed, nodes[0] being host:port */
    size_t n_nodes;               /* >= 1 after a successful parse */
};

/* Returns 0, -EINVAL (bad URL, reason in err) or -ENOMEM.  err never contains
 * any part of url, in particular not the password.  err may be NULL. */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t err_len);

/* Parses "host[:port],host[:port]..." (REDIS_SENTINELS), ports defaulting to
 * 6379.  *out is allocated (free with redis_url_nodes_free).  Returns 0,
 * -EINVAL (reason in err, which never quotes the input) or -ENOMEM. */
int redis_url_parse_nodes(const char *list, struct redis_url_node **out, size_t *n, char *err,
                          size_t err_len);
void redis_url_nodes_free(struct redis_url_node *nodes, size_t n);

/* Wipes the password, frees every string and zeroes *u. */
void redis_url_free(struct redis_url *u);

/* Writes url into buf (always NUL-terminated, truncated to len) with the
 * password replaced by "***".  Whatever cannot be read as user:password
 * (a userinfo without ':', a string without "://") is replaced whole by
 * "***", and anything from a '?' or '#' on becomes "?***", so the result never
 * carries a credential whatever the input. */
void redis_url_redacted(const char *url, char *buf, size_t len);

#endif
