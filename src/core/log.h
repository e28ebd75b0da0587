/*
 * log - leveled, one-line-per-event logging to stderr (the application log).
 *
 * Every line is "<ISO-8601 UTC time> <LEVEL> <message>\n", or with LOG_FORMAT=json
 * {"time":"<ISO-8601 UTC>","level":"info","msg":"<message>"}, written with a single
 * write(2) so that lines from different threads never interleave.  CR, LF and other
 * control bytes in a message never reach the output raw (text: replaced; JSON:
 * escaped).  The access log is a separate module (access_log.h).  Callers must
 * never pass secrets (passwords, tokens) in a message; helpers that format URLs
 * for logs redact them first (see redis_url_redacted).
 *
 * Thread-safety: internally safe; the level is an atomic set once at start-up.  The
 * format and the redaction list are set once at start-up, before any other thread
 * runs (log_set_format, log_set_redact), and only read afterwards.
 */
#ifndef CACHEGW_LOG_H
#define CACHEGW_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Parses "debug", "info", "warn"/"warning", "error"; returns -1 if unknown. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

enum log_format { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 };
/* Start-up only (see above). */
void log_set_format(enum log_format format);

/* Start-up only: the query parameter names log_escape_uri redacts, comma-separated
 * (ACCESS_LOG_REDACT); a parameter is redacted when its name contains one of them,
 * case ignored.  "" redacts nothing; NULL restores the built-in list.  Returns 0, or
 * -1 when out of memory (the previous list stays). */
int log_set_redact(const char *names);

/* Writes one line if level is enabled. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copies s into out (cap bytes, always terminated) with every byte outside
 * printable ASCII, and the backslash, written as \xNN; a value that does not
 * fit is cut and ends in "...".  Returns the length written. */
size_t log_escape(const char *s, char *out, size_t cap);
/* As log_escape for a request target, with the values of query parameters whose
 * names look secret (by default token, key, password, secret, signature, auth,
 * session, code, ...; see log_set_redact) replaced by "***". */
size_t log_escape_uri(const char *uri, char *out, size_t cap);
/* A copy of uri with those values replaced by "***", not escaped; NULL when out of
 * memory.  The caller frees it. */
char *log_redact_uri(const char *uri);

/* Appends s as the inside of a JSON string (no quotes) to out (cap bytes, always
 * terminated): '"' and '\\' escaped, control bytes as \u00XX, and bytes of 0x80 and
 * up as \u00XX too (read as Latin-1), so the line is valid UTF-8 whatever a client
 * sent.  Cut values end in "...".  Returns the length written. */
size_t log_json_escape(const char *s, char *out, size_t cap);

#define LOG_D(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define LOG_I(...) log_msg(LOG_INFO, __VA_ARGS__)
#define LOG_W(...) log_msg(LOG_WARN, __VA_ARGS__)
#define LOG_E(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
