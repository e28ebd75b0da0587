/* log.c - see log.h. */
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level_ = LOG_INFO;
static enum log_format log_format_ = LOG_FORMAT_TEXT;

static const char *const LEVEL_NAMES[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int log_level_parse(const char *name)
{
    if (name == NULL) return -1;
    if (strcasecmp(name, "debug") == 0) return LOG_DEBUG;
    if (strcasecmp(name, "info") == 0) return LOG_INFO;
    if (strcasecmp(name, "warn") == 0 || strcasecmp(name, "warning") == 0) return LOG_WARN;
    if (strcasecmp(name, "error") == 0) return LOG_ERROR;
    return -1;
}

void log_set_level(enum log_level level) { atomic_store(&log_level_, (int)level); }

enum log_level log_get_level(void) { return (enum log_level)atomic_load(&log_level_); }

void log_set_format(enum log_format format) { log_format_ = format; }

/* One JSON line: the message is formatted first, then escaped into the object. */
static void log_msg_json(enum log_level level, const struct timeval *tv, const struct tm *tm,
                         const char *fmt, va_list ap)
{
    static const char *const LOWER[] = {"debug", "info", "warn", "error"};
    char msg[2048], line[4096];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    if (m < 0) msg[0] = '\0';
    int n = (int)strftime(line, sizeof line, "{\"time\":\"%Y-%m-%dT%H:%M:%S", tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03dZ\",\"level\":\"%s\",\"msg\":\"",
                  (int)(tv->tv_usec / 1000), LOWER[level]);
    /* Room is kept for the closing "}\n". */
    size_t len = (size_t)n + log_json_escape(msg, line + n, sizeof line - (size_t)n - 3);
    memcpy(line + len, "\"}\n", 3);
    len += 3;
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load(&log_level_)) return;

    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    if (log_format_ == LOG_FORMAT_JSON) {
        va_list ap;
        va_start(ap, fmt);
        log_msg_json(level, &tv, &tm, fmt, ap);
        va_end(ap);
        return;
    }
    int n = (int)strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof line - (size_t)n, ".%03dZ %-5s ", (int)(tv.tv_usec / 1000),
                  LEVEL_NAMES[level]);

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2) len = sizeof line - 2;
    /* Keep one event on one line, and never let a byte from a message drive a
     * terminal (ESC sequences could forge or erase lines). */
    for (size_t i = (size_t)n; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '\n' || c == '\r' || c == '\t') line[i] = ' ';
        else if (c < 0x20 || c == 0x7f) line[i] = '?';
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

size_t log_escape(const char *s, char *out, size_t cap)
{
    static const char HEX[] = "0123456789abcdef";
    size_t at = 0;
    if (cap == 0) return 0;
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = c >= 0x20 && c < 0x7f && c != '\\';
        size_t need = plain ? 1 : 4;
        if (at + need + 4 >= cap) {
            /* Cut, and say so. */
            if (at + 3 < cap) {
                memcpy(out + at, "...", 3);
                at += 3;
            }
            break;
        }
        if (plain) {
            out[at++] = (char)c;
        } else {
            out[at++] = '\\';
            out[at++] = 'x';
            out[at++] = HEX[c >> 4];
            out[at++] = HEX[c & 15];
        }
    }
    out[at] = '\0';
    return at;
}

size_t log_json_escape(const char *s, char *out, size_t cap)
{
    static const char HEX[] = "0123456789abcdef";
    size_t at = 0;
    if (cap == 0) return 0;
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
        size_t need = plain ? 1 : c == '"' || c == '\\' ? 2 : 6;
        if (at + need + 4 >= cap) {
            if (at + 3 < cap) {
                memcpy(out + at, "...", 3);
                at += 3;
            }
            break;
        }
        if (plain) {
            out[at++] = (char)c;
        } else if (need == 2) {
            out[at++] = '\\';
            out[at++] = (char)c;
        } else {
            memcpy(out + at, "\\u00", 4);
            out[at + 4] = HEX[c >> 4];
            out[at + 5] = HEX[c & 15];
            at += 6;
        }
    }
    out[at] = '\0';
    return at;
}

/* Query parameter names whose values are credentials often enough to be hidden
 * from logs: matched as case-insensitive substrings of the name.  The built-in
 * list is also ACCESS_LOG_REDACT's default (config.c). */
static const char *const SECRET_PARAM_PARTS[] = {"token", "key",    "password", "passwd", "secret",
                                                 "signature", "sig", "auth",   "session",
                                                 "credential", "code"};

/* The configured list (log_set_redact), lower-cased; NULL = the built-in one.
 * Written at start-up only, so readers need no lock. */
static char **redact_names_;
static size_t n_redact_names_;

int log_set_redact(const char *names)
{
    char **list = NULL;
    size_t n = 0;
    if (names != NULL) {
        size_t cap = 1;
        for (const char *p = names; *p; p++) cap += *p == ',';
        list = calloc(cap, sizeof *list);
        if (list == NULL) return -1;
        for (const char *p = names; *p;) {
            size_t len = strcspn(p, ",");
            if (len > 0) {
                list[n] = strndup(p, len);
                if (list[n] == NULL) {
                    for (size_t i = 0; i < n; i++) free(list[i]);
                    free(list);
                    return -1;
                }
                for (char *c = list[n]; *c; c++) *c = (char)tolower((unsigned char)*c);
                n++;
            }
            p += len;
            if (*p == ',') p++;
        }
    }
    for (size_t i = 0; i < n_redact_names_; i++) free(redact_names_[i]);
    free(redact_names_);
    /* names == NULL: back to the built-in list; "" leaves an empty, non-NULL list. */
    redact_names_ = names != NULL ? list : NULL;
    n_redact_names_ = n;
    return 0;
}

static bool secret_param(const char *name, size_t len)
{
    char lower[64];
    if (len >= sizeof lower) len = sizeof lower - 1;
    for (size_t i = 0; i < len; i++) lower[i] = (char)tolower((unsigned char)name[i]);
    lower[len] = '\0';
    if (redact_names_ != NULL) {
        for (size_t i = 0; i < n_redact_names_; i++)
            if (strstr(lower, redact_names_[i])) return true;
        return false;
    }
    for (size_t i = 0; i < sizeof SECRET_PARAM_PARTS / sizeof SECRET_PARAM_PARTS[0]; i++)
        if (strstr(lower, SECRET_PARAM_PARTS[i])) return true;
    return false;
}

size_t log_escape_uri(const char *uri, char *out, size_t cap)
{
    if (cap == 0) return 0;
    if (uri == NULL || strchr(uri, '?') == NULL) return log_escape(uri, out, cap);
    /* Redact in a copy first, then escape the result. */
    char *red = log_redact_uri(uri);
    if (red == NULL) return log_escape("-", out, cap);
    size_t n = log_escape(red, out, cap);
    free(red);
    return n;
}

char *log_redact_uri(const char *uri)
{
    if (uri == NULL) return strdup("");
    const char *q = strchr(uri, '?');
    if (q == NULL) return strdup(uri);
    /* Each redacted value becomes "***", which may be longer than the value. */
    size_t len = strlen(uri), grow = 0;
    for (const char *p = q; *p; p++) grow += *p == '=' ? 3 : 0;
    char *red = malloc(len + grow + 1);
    if (red == NULL) return NULL;
    size_t at = (size_t)(q - uri) + 1;
    memcpy(red, uri, at);
    const char *p = q + 1;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t plen = amp ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        if (eq && secret_param(p, (size_t)(eq - p))) {
            size_t nlen = (size_t)(eq - p) + 1;
            memcpy(red + at, p, nlen);
            at += nlen;
            memcpy(red + at, "***", 3);
            at += 3;
        } else {
            memcpy(red + at, p, plen);
            at += plen;
        }
        p += plen;
        if (*p == '&') red[at++] = *p++;
    }
    red[at] = '\0';
    return red;
}
