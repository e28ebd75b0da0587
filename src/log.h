/*
 * log - leveled, one-line-per-event logging to stderr.
 *
 * Every line is "<ISO-8601 UTC time> <LEVEL> <message>\n", written with a single
 * write(2) so that lines from different threads never interleave.  Callers must
 * never pass secrets (passwords, tokens) in a message; helpers that format URLs
 * for logs redact them first (see redis_url_redacted).
 *
 * Thread-safety: internally safe; the level is an atomic set once at start-up.
 */
#ifndef CACHEGW_LOG_H
#define CACHEGW_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Parses "debug", "info", "warn"/"warning", "error"; returns -1 if unknown. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Writes one line if level is enabled. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies s into out (cap bytes, always terminated) with every byte outside
 * printable ASCII, and the backslash, written as \xNN; a value that does not
 * fit is cut and ends in "...".  Returns the length written. */
size_t log_escape(const char *s, char *out, size_t cap);
/* As log_escape for a request target, with the values of query parameters whose
 * names look secret (token, key, password, secret, signature, auth, session,
 * code, ...) replaced by "***". */
size_t log_escape_uri(const char *uri, char *out, size_t cap);

#define LOG_D(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define LOG_I(...) log_msg(LOG_INFO, __VA_ARGS__)
#define LOG_W(...) log_msg(LOG_WARN, __VA_ARGS__)
#define LOG_E(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
