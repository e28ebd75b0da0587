/*
 * access_log - one line per request, for log pipelines, whatever LOG_LEVEL is.
 *
 * ACCESS_LOG picks the target (off, stderr, stdout or a file opened for appending),
 * ACCESS_LOG_FORMAT the format:
 *   combined  exactly as nginx and Apache write it:
 *             $remote_addr - - [$time_local] "$request" $status $body_bytes_sent
 *             "$http_referer" "$http_user_agent"
 *             with '"', '\' and bytes outside printable ASCII written as \xHH (as nginx).
 *   json      one object per line: time, client, method, path, query, protocol, status,
 *             bytes, duration (s), cache (X-Cache), tier (memory|redis|none), route,
 *             upstream_time (s, null without a forward), request_id, referer, user_agent;
 *             strings escaped so the line is valid UTF-8 JSON (log_json_escape).
 * The query string is redacted first (log_redact_uri, names from ACCESS_LOG_REDACT), so
 * no secret-looking parameter value reaches either format.
 *
 * A line is at most ACCESS_LOG_LINE_MAX bytes (long fields are cut, ending in "...")
 * and is written with one write(2): lines from different threads never interleave
 * (O_APPEND for a file; a pipe's writes of up to PIPE_BUF bytes are atomic).
 *
 * Reopening (SIGUSR1, logrotate's create mode): the file is opened again by name and
 * dup2()ed onto the descriptor the writers use, so a writer never sees a closed or
 * reused descriptor and needs no lock; lines written during the swap land in the old
 * or the new file, whole.
 *
 * Request ids: access_log_request_id_new makes 32 hex digits from a per-thread
 * generator seeded by getrandom(); access_log_request_id_ok says whether a client's
 * X-Request-Id may be kept (1-128 bytes of [A-Za-z0-9._:+/=@-]).
 *
 * Ownership: the module owns the descriptor it opened.  Thread-safety:
 * access_log_open/close at start-up and exit only; access_log_reopen from one thread
 * (the signal thread) at any time; everything else from any thread.
 */
#ifndef CACHEGW_ACCESS_LOG_H
#define CACHEGW_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct config;

#define ACCESS_LOG_LINE_MAX 4096
#define ACCESS_LOG_REQUEST_ID_MAX 128

enum access_log_format { ACCESS_LOG_COMBINED = 0, ACCESS_LOG_JSON = 1 };

/* One finished request.  Strings may be NULL (logged as "-" or null). */
struct access_log_entry {
    const char *client;      /* the peer's IP */
    const char *method;
    const char *uri;         /* the target as received: path[?query], not yet redacted */
    const char *protocol;    /* "HTTP/1.1" */
    int status;              /* 0 when no answer was sent (combined: 499 or 400) */
    long long bytes;         /* body bytes of the answer; < 0 unknown (logged as 0 / null) */
    double duration_s;       /* from the request line to the end */
    const char *cache;       /* X-Cache: HIT, MISS, BYPASS */
    const char *tier;        /* memory, redis, none */
    const char *route;       /* the policy route's name; NULL when none matched */
    double upstream_s;       /* time to the upstream's answer; < 0 when not forwarded */
    const char *request_id;
    const char *referer;
    const char *user_agent;
    struct timespec time;    /* wall-clock time of the line (CLOCK_REALTIME) */
};

/* Start-up: applies ACCESS_LOG, ACCESS_LOG_FORMAT and ACCESS_LOG_REDACT from cfg and
 * opens the file (created 0640 when missing).  Returns 0, or -1 with one line in err
 * naming ACCESS_LOG (e.g. a directory that does not exist). */
int access_log_open(const struct config *cfg, char *err, size_t err_len);
/* True when lines are written somewhere. */
bool access_log_enabled(void);
/* Formats and writes e (a no-op when disabled). */
void access_log_write(const struct access_log_entry *e);
/* Opens the file again by its name (after a rename by logrotate).  Returns 0 (also
 * when the target is not a file), or -1 with err set; the old file is kept then. */
int access_log_reopen(char *err, size_t err_len);
void access_log_close(void);

/* Formats e as one line ending in '\n' into out (cap >= ACCESS_LOG_LINE_MAX is
 * always enough); returns its length.  Used by access_log_write and the tests. */
size_t access_log_format_line(const struct access_log_entry *e, enum access_log_format format,
                              char *out, size_t cap);

/* Writes a new id (32 hex digits and a NUL) into out. */
void access_log_request_id_new(char out[33]);
/* True for an X-Request-Id value worth keeping (see above). */
bool access_log_request_id_ok(const char *value);

#endif
