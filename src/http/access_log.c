/* access_log.c - see access_log.h. */
#include "access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* -1 when off.  For a file, the number never changes after access_log_open:
 * reopening dup2()s the new file onto it (see the header). */
static atomic_int fd_ = -1;
static bool own_fd_;          /* a file we opened (closed by access_log_close) */
static char *path_;           /* its name, for reopening */
static enum access_log_format format_ = ACCESS_LOG_COMBINED;

/* Most bytes the escaped target, referer and user agent take in a line: together
 * with the fixed fields they keep it under ACCESS_LOG_LINE_MAX, whatever a client
 * sent (a longer value is cut and ends in "..."). */
#define URI_MAX 2000
#define HEADER_MAX 600

static int open_file(const char *path, char *err, size_t err_len)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0) {
        char safe[256];
        log_escape(path, safe, sizeof safe);
        snprintf(err, err_len, "invalid value for --access-log (ACCESS_LOG): cannot open '%s': %s",
                 safe, strerror(errno));
    }
    return fd;
}

int access_log_open(const struct config *cfg, char *err, size_t err_len)
{
    format_ = cfg->access_log_format == 1 ? ACCESS_LOG_JSON : ACCESS_LOG_COMBINED;
    if (log_set_redact(cfg->access_log_redact) != 0) {
        snprintf(err, err_len, "out of memory reading ACCESS_LOG_REDACT");
        return -1;
    }
    switch (cfg->access_log) {
    case ACCESS_LOG_STDERR:
        atomic_store(&fd_, STDERR_FILENO);
        return 0;
    case ACCESS_LOG_STDOUT:
        atomic_store(&fd_, STDOUT_FILENO);
        return 0;
    case ACCESS_LOG_FILE: {
        int fd = open_file(cfg->access_log_path, err, err_len);
        if (fd < 0) return -1;
        path_ = strdup(cfg->access_log_path);
        if (path_ == NULL) {
            close(fd);
            snprintf(err, err_len, "out of memory opening ACCESS_LOG");
            return -1;
        }
        own_fd_ = true;
        atomic_store(&fd_, fd);
        return 0;
    }
    default:
        atomic_store(&fd_, -1);
        return 0;
    }
}

bool access_log_enabled(void) { return atomic_load(&fd_) >= 0; }

int access_log_reopen(char *err, size_t err_len)
{
    int fd = atomic_load(&fd_);
    if (!own_fd_ || fd < 0) return 0;
    int nfd = open_file(path_, err, err_len);
    if (nfd < 0) return -1;
    /* Atomic replacement of the descriptor table entry: a write in progress keeps
     * its reference to the old file and completes there. */
    int rc = dup2(nfd, fd) < 0 ? -1 : 0;
    if (rc != 0) snprintf(err, err_len, "cannot reopen the access log: %s", strerror(errno));
    close(nfd);
    return rc;
}

void access_log_close(void)
{
    int fd = atomic_exchange(&fd_, -1);
    if (own_fd_ && fd >= 0) close(fd);
    own_fd_ = false;
    free(path_);
    path_ = NULL;
}

/* ---- formatting ---- */

struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len + n >= o->cap) n = o->len + 1 < o->cap ? o->cap - o->len - 1 : 0;
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* nginx's escaping of a logged variable: '"', '\' and bytes outside 0x20..0x7e as
 * \xHH, in at most max output bytes (a cut value ends in "..."). */
static void put_nginx_escaped(struct out *o, const char *s, size_t max)
{
    static const char HEX[] = "0123456789ABCDEF";
    size_t i = 0, used = 0;
    for (; s[i] != '\0'; i++) {
        unsigned char c = (unsigned char)s[i];
        bool esc = c < 0x20 || c >= 0x7f || c == '"' || c == '\\';
        if (used + (esc ? 4 : 1) + 3 > max) break;
        if (esc) {
            char e[4] = {'\\', 'x', HEX[c >> 4], HEX[c & 15]};
            put(o, e, 4);
        } else {
            put(o, (const char *)&c, 1);
        }
        used += esc ? 4 : 1;
    }
    if (s[i] != '\0') puts_(o, "...");
}

/* A JSON string value (or null), in at most max output bytes plus the quotes. */
static void put_json_string(struct out *o, const char *s, size_t max)
{
    if (s == NULL) {
        puts_(o, "null");
        return;
    }
    char buf[URI_MAX + 1];
    size_t cap = (max < URI_MAX ? max : URI_MAX) + 1;
    log_json_escape(s, buf, cap);
    puts_(o, "\"");
    puts_(o, buf);
    puts_(o, "\"");
}

static const char *dash(const char *s) { return s != NULL && *s != '\0' ? s : "-"; }

/* $status is three digits in every combined line (log parsers match \d{3}).  A
 * request the gateway sent no answer to (status 0) gets nginx's codes: 499 when
 * the client left after its head was read (nginx's "client closed request"),
 * 400 when not even a method was read, as nginx logs a request it could not
 * read.  The JSON line keeps 0: it says what happened. */
static int combined_status(const struct access_log_entry *e)
{
    if (e->status != 0) return e->status;
    return e->method != NULL ? 499 : 400;
}

static void format_combined(struct out *o, const struct access_log_entry *e, const char *target)
{
    static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    time_t t = e->time.tv_sec;
    localtime_r(&t, &tm);
    long off = tm.tm_gmtoff / 60;
    char sign = off < 0 ? '-' : '+';
    if (off < 0) off = -off;

    put_nginx_escaped(o, dash(e->client), 64);
    putf(o, " - - [%02d/%s/%04d:%02d:%02d:%02d %c%02ld%02ld] \"", tm.tm_mday, MONTHS[tm.tm_mon],
         tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60, off % 60);
    put_nginx_escaped(o, dash(e->method), 32);
    puts_(o, " ");
    put_nginx_escaped(o, target, URI_MAX);
    puts_(o, " ");
    put_nginx_escaped(o, dash(e->protocol), 16);
    putf(o, "\" %d %lld \"", combined_status(e), e->bytes > 0 ? e->bytes : 0);
    put_nginx_escaped(o, dash(e->referer), HEADER_MAX);
    puts_(o, "\" \"");
    put_nginx_escaped(o, dash(e->user_agent), HEADER_MAX);
    puts_(o, "\"");
}

static void format_json(struct out *o, const struct access_log_entry *e, const char *target)
{
    struct tm tm;
    time_t t = e->time.tv_sec;
    gmtime_r(&t, &tm);
    putf(o, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"", tm.tm_year + 1900,
         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, e->time.tv_nsec / 1000000);
    puts_(o, ",\"client\":");
    put_json_string(o, e->client, 64);
    puts_(o, ",\"method\":");
    put_json_string(o, e->method, 32);
    /* path and query apart, the query without its '?' ("" when there is none). */
    size_t plen = strcspn(target, "?");
    char path[URI_MAX + 1];
    snprintf(path, sizeof path, "%.*s", (int)(plen < URI_MAX ? plen : URI_MAX), target);
    puts_(o, ",\"path\":");
    put_json_string(o, path, URI_MAX * 3 / 5);
    puts_(o, ",\"query\":");
    put_json_string(o, target[plen] == '?' ? target + plen + 1 : "", URI_MAX * 2 / 5);
    puts_(o, ",\"protocol\":");
    put_json_string(o, e->protocol, 16);
    putf(o, ",\"status\":%d,\"bytes\":", e->status);
    if (e->bytes >= 0) putf(o, "%lld", e->bytes);
    else puts_(o, "null");
    putf(o, ",\"duration\":%.6f,\"cache\":", e->duration_s >= 0 ? e->duration_s : 0.0);
    put_json_string(o, e->cache, 16);
    puts_(o, ",\"tier\":");
    put_json_string(o, e->tier ? e->tier : "none", 16);
    puts_(o, ",\"route\":");
    put_json_string(o, e->route, 256);
    puts_(o, ",\"upstream_time\":");
    if (e->upstream_s >= 0) putf(o, "%.6f", e->upstream_s);
    else puts_(o, "null");
    puts_(o, ",\"request_id\":");
    put_json_string(o, e->request_id, ACCESS_LOG_REQUEST_ID_MAX + 8);
    puts_(o, ",\"referer\":");
    put_json_string(o, e->referer, HEADER_MAX / 2);
    puts_(o, ",\"user_agent\":");
    put_json_string(o, e->user_agent, HEADER_MAX / 2);
    puts_(o, "}");
}

size_t access_log_format_line(const struct access_log_entry *e, enum access_log_format format,
                              char *buf, size_t cap)
{
    if (cap < 2) return 0;
    struct out o = {.p = buf, .len = 0, .cap = cap - 1}; /* room for the '\n' */
    buf[0] = '\0';
    char *target = log_redact_uri(e->uri ? e->uri : "-");
    const char *t = target != NULL ? target : "-";
    if (format == ACCESS_LOG_JSON) format_json(&o, e, t);
    else format_combined(&o, e, t);
    free(target);
    if (format == ACCESS_LOG_JSON && (o.len == 0 || buf[o.len - 1] != '}')) {
        /* Cut by the buffer: a line that does not parse is worse than a short one. */
        o.len = 0;
        buf[0] = '\0';
        puts_(&o, "{\"error\":\"access log line too long\"}");
    }
    buf[o.len++] = '\n';
    buf[o.len] = '\0';
    return o.len;
}

void access_log_write(const struct access_log_entry *e)
{
    int fd = atomic_load(&fd_);
    if (fd < 0) return;
    char line[ACCESS_LOG_LINE_MAX + 1];
    size_t len = access_log_format_line(e, format_, line, sizeof line);
    ssize_t w = write(fd, line, len);
    (void)w;
}

/* ---- request ids ---- */

/* xoshiro-style state per thread, seeded from the kernel once: ids need to be
 * unique and not guessable in practice, not secret. */
static _Thread_local uint64_t rid_state_[2];
static _Thread_local bool rid_seeded_;

static uint64_t rid_next(void)
{
    uint64_t s0 = rid_state_[0], s1 = rid_state_[1];
    uint64_t result = s0 + s1;
    s1 ^= s0;
    rid_state_[0] = ((s0 << 55) | (s0 >> 9)) ^ s1 ^ (s1 << 14);
    rid_state_[1] = (s1 << 36) | (s1 >> 28);
    return result;
}

void access_log_request_id_new(char out[33])
{
    if (!rid_seeded_) {
        if (getrandom(rid_state_, sizeof rid_state_, 0) != (ssize_t)sizeof rid_state_) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            rid_state_[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20);
            rid_state_[1] = (uint64_t)(uintptr_t)&ts ^ (uint64_t)getpid() << 32;
        }
        if (rid_state_[0] == 0 && rid_state_[1] == 0) rid_state_[1] = 1;
        rid_seeded_ = true;
    }
    uint64_t a = rid_next(), b = rid_next();
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (60 - 4 * i)) & 0xf];
        out[16 + i] = hex[(b >> (60 - 4 * i)) & 0xf];
    }
    out[32] = '\0';
}

bool access_log_request_id_ok(const char *v)
{
    if (v == NULL || *v == '\0') return false;
    size_t n = 0;
    for (; v[n] != '\0'; n++) {
        char c = v[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("._:+/=@-", c) != NULL;
        if (!ok || n >= ACCESS_LOG_REQUEST_ID_MAX) return false;
    }
    return true;
}
