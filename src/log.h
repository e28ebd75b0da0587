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

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Parses "debug", "info", "warn"/"warning", "error"; returns -1 if unknown. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Writes one line if level is enabled. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_D(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define LOG_I(...) log_msg(LOG_INFO, __VA_ARGS__)
#define LOG_W(...) log_msg(LOG_WARN, __VA_ARGS__)
#define LOG_E(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
