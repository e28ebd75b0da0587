/*
 * redis_url - parses REDIS_URL values: redis://[user[:password]@]host[:port][/db],
 * or rediss:// for TLS.
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

struct redis_url {
    bool tls;       /* scheme was rediss:// */
    char *user;     /* NULL if absent or empty */
    char *password; /* NULL if absent or empty */
    char *host;     /* never NULL after a successful parse; IPv6 without brackets */
    int port;       /* 1..65535 */
    int db;         /* 0..INT_MAX */
};

/* Returns 0, -EINVAL (bad URL, reason in err) or -ENOMEM.  err never contains
 * any part of url, in particular not the password.  err may be NULL. */
int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t err_len);

/* Wipes the password, frees every string and zeroes *u. */
void redis_url_free(struct redis_url *u);

/* Writes url into buf (always NUL-terminated, truncated to len) with the
 * password replaced by "***".  Whatever cannot be read as user:password
 * (a userinfo without ':', a string without "://") is replaced whole by
 * "***", and anything from a '?' or '#' on becomes "?***", so the result never
 * carries a credential whatever the input. */
void redis_url_redacted(const char *url, char *buf, size_t len);

#endif
