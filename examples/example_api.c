/*
 * example_api - the example upstream that cachegw fronts in demos, tests and benchmarks.
 *
 * A JSON API shaped like a social/jobs backend (users, posts, feed, jobs, messages, ...) with a
 * simulated database latency on every data route, plus exact test-support routes (/__stats,
 * /__reset, /echo, /count, /bytes/:n, /headers, /status/:code, ...) that let integration tests
 * and benchmarks see what reached the origin and what did not.
 *
 * It must never be the bottleneck of a benchmark, so it runs libmicrohttpd with one thread per
 * connection: a simulated delay is a plain sleep in that connection's thread and costs no other
 * request anything.  The hot test routes (/fast, /bytes/:n) answer from pre-built buffers.
 *
 * Threads: the libmicrohttpd listener plus one thread per connection.  All state lives in one
 * struct exapi owned by main(): the data set is guarded by a reader-writer lock, the request
 * counter is an atomic, the per-path counts are sharded behind mutexes, and everything else is
 * immutable after start-up.
 */
#include <microhttpd.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define EXAPI_MAX_BODY (10L * 1024 * 1024)  /* largest accepted request body */
#define EXAPI_MAX_BYTES (64L * 1024 * 1024) /* largest /bytes/:n */
#define EXAPI_PATTERN_LEN (1024L * 1024)    /* 'a'..'z' run served without copying */
#define EXAPI_BYTES_BLOCK (256 * 1024)      /* chunk size for larger /bytes bodies */
#define EXAPI_MAX_ROWS 200000               /* per collection: write benchmarks stay bounded */
#define EXAPI_MAX_DELAY_MS 600000L
#define EXAPI_MAX_PATHS 10000 /* distinct paths counted in /__stats by_path */
#define EXAPI_PATH_SHARDS 16
#define EXAPI_PATH_BUCKETS 512
#define EXAPI_MAX_ECHO_HEADERS 256
#define EXAPI_SEED_EPOCH ((time_t)1704067200) /* 2024-01-01T00:00:00Z */
#define EXAPI_DAY ((time_t)86400)
#define EXAPI_FNV_BASIS 0xcbf29ce484222325ULL

#define EXAPI_CC_PUBLIC "public, max-age=60"
#define EXAPI_CC_PRIVATE "private, max-age=30"
#define EXAPI_CC_NO_STORE "no-store"
#define EXAPI_CT_JSON "application/json"

/* ---------------------------------------------------------------------------------------------
 * Seed vocabulary (immutable).
 */

static const char *const EXAPI_TOPICS[10] = {
    "caching", "coffee", "hiking", "databases", "jazz",
    "chess",   "rust",   "gardening", "photography", "cycling",
};

static const struct {
    const char *name, *slug;
} EXAPI_CATEGORIES[10] = {
    {"Engineering", "engineering"}, {"Design", "design"},       {"Marketing", "marketing"},
    {"Sales", "sales"},             {"Support", "support"},     {"Finance", "finance"},
    {"Operations", "operations"},   {"Product", "product"},     {"Data", "data"},
    {"Legal", "legal"},
};

static const struct {
    const char *city, *country;
} EXAPI_LOCATIONS[20] = {
    {"Berlin", "DE"},    {"London", "GB"},   {"Paris", "FR"},     {"New York", "US"},
    {"San Francisco", "US"}, {"Toronto", "CA"}, {"Amsterdam", "NL"}, {"Madrid", "ES"},
    {"Lisbon", "PT"},    {"Stockholm", "SE"}, {"Warsaw", "PL"},   {"Dublin", "IE"},
    {"Zurich", "CH"},    {"Vienna", "AT"},   {"Tokyo", "JP"},     {"Singapore", "SG"},
    {"Sydney", "AU"},    {"Austin", "US"},   {"Bangalore", "IN"}, {"Sao Paulo", "BR"},
};

static const char *const EXAPI_COMPANIES[8] = {
    "Acme Corp", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries",
    "Wayne Enterprises", "Wonka Industries",
};
static const char *const EXAPI_LEVELS[4] = {"Junior", "Mid-level", "Senior", "Lead"};
static const char *const EXAPI_ROLES[5] = {"Engineer", "Specialist", "Manager", "Analyst",
                                           "Consultant"};
static const char *const EXAPI_NOTIF_TYPES[5] = {"like", "comment", "follow", "mention",
                                                 "job_alert"};

/* ---------------------------------------------------------------------------------------------
 * Growable string buffer.  Allocation failure is sticky (oom) so builders need not check every
 * append; the response path turns it into a 500.
 */

struct exapi_sb {
    char *p;
    size_t len, cap;
    bool oom;
};

static bool sb_reserve(struct exapi_sb *b, size_t extra)
{
    if (b->oom)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_put(struct exapi_sb *b, const char *s, size_t n)
{
    if (!sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct exapi_sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_putc(struct exapi_sb *b, char c)
{
    sb_put(b, &c, 1);
}

static void sb_printf(struct exapi_sb *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sb_printf(struct exapi_sb *b, const char *fmt, ...)
{
    for (;;) {
        if (!sb_reserve(b, 64))
            return;
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        if (!sb_reserve(b, (size_t)n))
            return;
    }
}

/* Length of the valid UTF-8 sequence at s (lead byte >= 0x80), or 0 if it is not valid. */
static size_t exapi_utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

/* Appends s as a quoted JSON string.  Bytes that are not valid UTF-8 become \u00XX so the
 * output is always valid JSON, even when /echo reflects a binary body. */
static void sb_json_str(struct exapi_sb *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    if (!sb_reserve(b, n + 2))
        return;
    sb_putc(b, '"');
    while (i < n) {
        size_t run = i;
        while (run < n && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            sb_put(b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = u[i];
        if (c >= 0x80) {
            size_t ulen = exapi_utf8_len(u + i, n - i);
            if (ulen) {
                sb_put(b, s + i, ulen);
                i += ulen;
                continue;
            }
        }
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        default: {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sb_put(b, e, sizeof e);
        }
        }
        i++;
    }
    sb_putc(b, '"');
}

static void sb_json_cstr(struct exapi_sb *b, const char *s)
{
    if (s)
        sb_json_str(b, s, strlen(s));
    else
        sb_puts(b, "null");
}

static void sb_utf8(struct exapi_sb *b, unsigned cp)
{
    char o[4];
    if (cp < 0x80) {
        o[0] = (char)cp;
        sb_put(b, o, 1);
    } else if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        sb_put(b, o, 2);
    } else if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        sb_put(b, o, 3);
    } else {
        o[0] = (char)(0xF0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (char)(0x80 | (cp & 0x3F));
        sb_put(b, o, 4);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers.
 */

static char *exapi_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *exapi_strf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

/* Parses a whole decimal string into [min, max]; returns 0 or -1. */
static int exapi_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    if (!s || !*s)
        return -1;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static uint64_t exapi_fnv1a(const void *p, size_t n, uint64_t h)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void exapi_etag(uint64_t h, char out[48])
{
    snprintf(out, 48, "\"%016" PRIx64 "\"", h);
}

static void exapi_fmt_iso(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void exapi_fmt_http(time_t t, char out[40])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 40, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* ---------------------------------------------------------------------------------------------
 * Minimal JSON reading for request bodies: find a member by name (at any depth; request bodies
 * are flat) and read a string, integer or boolean value.  Strings are skipped whole, so a key
 * that appears inside a string value never matches.
 */

static bool exapi_is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *exapi_json_find(const char *js, size_t n, const char *key)
{
    size_t klen = strlen(key);
    size_t i = 0;
    while (i < n) {
        if (js[i] != '"') {
            i++;
            continue;
        }
        size_t start = ++i;
        bool escaped = false;
        while (i < n && js[i] != '"') {
            if (js[i] == '\\') {
                escaped = true;
                i++;
            }
            i++;
        }
        if (i >= n)
            return NULL;
        size_t end = i++;
        size_t j = i;
        while (j < n && exapi_is_ws(js[j]))
            j++;
        if (j < n && js[j] == ':' && !escaped && end - start == klen &&
            memcmp(js + start, key, klen) == 0) {
            j++;
            while (j < n && exapi_is_ws(js[j]))
                j++;
            return j < n ? js + j : NULL;
        }
    }
    return NULL;
}

static int exapi_hex4(const char *p, const char *end, unsigned *out)
{
    unsigned v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

/* Decodes the JSON string starting at v (which points at the opening quote) into a new
 * NUL-terminated string of at most maxlen bytes.  Returns 0, or -1 if malformed or too long. */
static int exapi_json_unquote(const char *v, const char *end, size_t maxlen, char **out)
{
    struct exapi_sb b = {0};
    const char *p = v + 1;

    while (p < end && *p != '"') {
        if (b.len > maxlen)
            goto bad;
        if (*p != '\\') {
            const char *run = p;
            while (p < end && *p != '"' && *p != '\\')
                p++;
            sb_put(&b, run, (size_t)(p - run));
            continue;
        }
        if (++p >= end)
            goto bad;
        switch (*p++) {
        case '"': sb_putc(&b, '"'); break;
        case '\\': sb_putc(&b, '\\'); break;
        case '/': sb_putc(&b, '/'); break;
        case 'b': sb_putc(&b, '\b'); break;
        case 'f': sb_putc(&b, '\f'); break;
        case 'n': sb_putc(&b, '\n'); break;
        case 'r': sb_putc(&b, '\r'); break;
        case 't': sb_putc(&b, '\t'); break;
        case 'u': {
            unsigned cp, lo;
            if (exapi_hex4(p, end, &cp))
                goto bad;
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p >= 6 && p[0] == '\\' && p[1] == 'u' && !exapi_hex4(p + 2, end, &lo) &&
                    lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                } else {
                    cp = 0xFFFD;
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            sb_utf8(&b, cp);
            break;
        }
        default: goto bad;
        }
    }
    if (p >= end || b.oom || b.len > maxlen)
        goto bad;
    if (!b.p && !(b.p = strdup("")))
        goto bad;
    *out = b.p;
    return 0;
bad:
    free(b.p);
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * The data set.  Ids are assigned in order and never reused, so row id N lives at index N-1
 * and lookups are O(1); deletion only marks the row (and frees its strings).
 */

struct exapi_user {
    long id;
    char *name, *email, *bio;
    int location_id, followers, following;
    time_t created;
    bool deleted;
};

struct exapi_post {
    long id, user_id;
    char *title, *body;
    int category_id, likes;
    time_t created;
    bool deleted;
};

struct exapi_job {
    long id;
    char *title, *company;
    int location_id, category_id;
    long salary_min, salary_max;
    bool remote;
    time_t posted;
};

struct exapi_message {
    long id, conversation_id, from_user, to_user;
    char *body;
    bool read;
    time_t created;
};

struct exapi_conversation {
    long id, user_a, user_b;
    char *subject;
};

struct exapi_notification {
    long id, user_id;
    const char *type;
    char *text;
    bool read;
    time_t created;
};

#define EXAPI_VEC(T)                                                                               \
    struct {                                                                                       \
        T *v;                                                                                      \
        size_t n, cap;                                                                             \
    }

/* Appends a zeroed row to vec and points out at it; out is NULL when full or out of memory. */
#define EXAPI_PUSH(vec, out)                                                                       \
    do {                                                                                           \
        (out) = NULL;                                                                              \
        if ((vec).n < EXAPI_MAX_ROWS) {                                                            \
            if ((vec).n == (vec).cap) {                                                            \
                size_t nc_ = (vec).cap ? (vec).cap * 2 : 64;                                       \
                void *p_ = realloc((vec).v, nc_ * sizeof *(vec).v);                                \
                if (p_) {                                                                          \
                    (vec).v = p_;                                                                  \
                    (vec).cap = nc_;                                                               \
                }                                                                                  \
            }                                                                                      \
            if ((vec).n < (vec).cap) {                                                             \
                (out) = &(vec).v[(vec).n++];                                                       \
                memset((out), 0, sizeof *(out));                                                   \
            }                                                                                      \
        }                                                                                          \
    } while (0)

struct exapi_db {
    pthread_rwlock_t lock;
    EXAPI_VEC(struct exapi_user) users;
    EXAPI_VEC(struct exapi_post) posts;
    EXAPI_VEC(struct exapi_job) jobs;
    EXAPI_VEC(struct exapi_message) messages;
    EXAPI_VEC(struct exapi_conversation) conversations;
    EXAPI_VEC(struct exapi_notification) notifications;
    time_t mtime; /* last write (or seed); Last-Modified of every data route */
};

static void db_clear(struct exapi_db *db)
{
    for (size_t i = 0; i < db->users.n; i++) {
        free(db->users.v[i].name);
        free(db->users.v[i].email);
        free(db->users.v[i].bio);
    }
    for (size_t i = 0; i < db->posts.n; i++) {
        free(db->posts.v[i].title);
        free(db->posts.v[i].body);
    }
    for (size_t i = 0; i < db->jobs.n; i++) {
        free(db->jobs.v[i].title);
        free(db->jobs.v[i].company);
    }
    for (size_t i = 0; i < db->messages.n; i++)
        free(db->messages.v[i].body);
    for (size_t i = 0; i < db->conversations.n; i++)
        free(db->conversations.v[i].subject);
    for (size_t i = 0; i < db->notifications.n; i++)
        free(db->notifications.v[i].text);
    free(db->users.v);
    free(db->posts.v);
    free(db->jobs.v);
    free(db->messages.v);
    free(db->conversations.v);
    free(db->notifications.v);
    memset(&db->users, 0, sizeof db->users);
    memset(&db->posts, 0, sizeof db->posts);
    memset(&db->jobs, 0, sizeof db->jobs);
    memset(&db->messages, 0, sizeof db->messages);
    memset(&db->conversations, 0, sizeof db->conversations);
    memset(&db->notifications, 0, sizeof db->notifications);
}

/* Fills an empty db with the deterministic seed.  On failure the db holds a partial seed that
 * db_clear releases. */
static int db_seed(struct exapi_db *db, time_t now)
{
    for (long i = 1; i <= 100; i++) {
        struct exapi_user *u;
        EXAPI_PUSH(db->users, u);
        if (!u)
            return -1;
        u->id = i;
        u->name = exapi_strf("User %ld", i);
        u->email = exapi_strf("user%ld@example.com", i);
        u->bio = exapi_strf("User %ld writes about %s and %s.", i, EXAPI_TOPICS[i % 10],
                            EXAPI_TOPICS[(i * 3 + 1) % 10]);
        u->location_id = (int)((i - 1) % 20 + 1);
        u->followers = (int)((i * 37) % 1000);
        u->following = 10;
        u->created = EXAPI_SEED_EPOCH + i * EXAPI_DAY;
        if (!u->name || !u->email || !u->bio)
            return -1;
    }
    for (long p = 1; p <= 500; p++) {
        struct exapi_post *po;
        EXAPI_PUSH(db->posts, po);
        if (!po)
            return -1;
        po->id = p;
        po->user_id = (p - 1) % 100 + 1;
        po->title = exapi_strf("Post %ld: thoughts on %s", p, EXAPI_TOPICS[p % 10]);
        po->body = exapi_strf("This is post %ld by User %ld. It is about %s, naturally.", p,
                              po->user_id, EXAPI_TOPICS[p % 10]);
        po->category_id = (int)((p * 3) % 10 + 1);
        po->likes = (int)((p * 37) % 250);
        po->created = EXAPI_SEED_EPOCH + 100 * EXAPI_DAY + p * 3600;
        if (!po->title || !po->body)
            return -1;
    }
    for (long j = 1; j <= 50; j++) {
        struct exapi_job *jb;
        EXAPI_PUSH(db->jobs, jb);
        if (!jb)
            return -1;
        jb->id = j;
        jb->category_id = (int)((j - 1) % 10 + 1);
        jb->location_id = (int)((j * 7) % 20 + 1);
        jb->title = exapi_strf("%s %s %s", EXAPI_LEVELS[j % 4],
                               EXAPI_CATEGORIES[jb->category_id - 1].name, EXAPI_ROLES[j % 5]);
        jb->company = strdup(EXAPI_COMPANIES[j % 8]);
        jb->salary_min = 40000 + ((j * 7919) % 80) * 1000;
        jb->salary_max = jb->salary_min + 15000 + (j % 5) * 5000;
        jb->remote = j % 3 == 0;
        jb->posted = EXAPI_SEED_EPOCH + 150 * EXAPI_DAY + j * 7200;
        if (!jb->title || !jb->company)
            return -1;
    }
    for (long c = 1; c <= 20; c++) {
        struct exapi_conversation *cv;
        EXAPI_PUSH(db->conversations, cv);
        if (!cv)
            return -1;
        cv->id = c;
        cv->user_a = c;
        cv->user_b = (c * 7) % 100 + 1; /* never equal to c: 6c = 99 (mod 100) has no solution */
        cv->subject = exapi_strf("About %s", EXAPI_TOPICS[c % 10]);
        if (!cv->subject)
            return -1;
    }
    for (long m = 1; m <= 200; m++) {
        struct exapi_message *ms;
        EXAPI_PUSH(db->messages, ms);
        if (!ms)
            return -1;
        const struct exapi_conversation *cv = &db->conversations.v[(m - 1) % 20];
        bool from_a = ((m - 1) / 20) % 2 == 0;
        ms->id = m;
        ms->conversation_id = cv->id;
        ms->from_user = from_a ? cv->user_a : cv->user_b;
        ms->to_user = from_a ? cv->user_b : cv->user_a;
        ms->body = exapi_strf("Message %ld about %s", m, EXAPI_TOPICS[m % 10]);
        ms->read = m <= 150;
        ms->created = EXAPI_SEED_EPOCH + 200 * EXAPI_DAY + m * 600;
        if (!ms->body)
            return -1;
    }
    for (long n = 1; n <= 100; n++) {
        struct exapi_notification *nt;
        EXAPI_PUSH(db->notifications, nt);
        if (!nt)
            return -1;
        nt->id = n;
        nt->user_id = (n - 1) % 50 + 1;
        nt->type = EXAPI_NOTIF_TYPES[n % 5];
        nt->text = exapi_strf("New %s from User %ld", nt->type, (n * 7) % 100 + 1);
        nt->read = n % 3 == 0;
        nt->created = EXAPI_SEED_EPOCH + 210 * EXAPI_DAY + n * 900;
        if (!nt->text)
            return -1;
    }
    db->mtime = now;
    return 0;
}

static struct exapi_user *db_user(struct exapi_db *db, long id)
{
    if (id < 1 || (size_t)id > db->users.n || db->users.v[id - 1].deleted)
        return NULL;
    return &db->users.v[id - 1];
}

static struct exapi_post *db_post(struct exapi_db *db, long id)
{
    if (id < 1 || (size_t)id > db->posts.n || db->posts.v[id - 1].deleted)
        return NULL;
    return &db->posts.v[id - 1];
}

static struct exapi_job *db_job(struct exapi_db *db, long id)
{
    if (id < 1 || (size_t)id > db->jobs.n)
        return NULL;
    return &db->jobs.v[id - 1];
}

static struct exapi_conversation *db_conversation(struct exapi_db *db, long id)
{
    if (id < 1 || (size_t)id > db->conversations.n)
        return NULL;
    return &db->conversations.v[id - 1];
}

/* ---------------------------------------------------------------------------------------------
 * Request counting.  The total is one atomic; per-path counts live in a sharded hash so
 * concurrent connections rarely meet on a lock.
 */

struct exapi_path_entry {
    struct exapi_path_entry *next;
    uint64_t hash, count;
    char path[];
};

struct exapi_path_shard {
    pthread_mutex_t mu;
    struct exapi_path_entry *buckets[EXAPI_PATH_BUCKETS];
};

struct exapi_stats {
    atomic_ullong requests;
    atomic_uint distinct;
    atomic_ullong other; /* requests to paths beyond EXAPI_MAX_PATHS */
    struct exapi_path_shard shards[EXAPI_PATH_SHARDS];
};

static void stats_count(struct exapi_stats *st, const char *path)
{
    size_t len = strlen(path);
    uint64_t h = exapi_fnv1a(path, len, EXAPI_FNV_BASIS);
    struct exapi_path_shard *sh = &st->shards[h % EXAPI_PATH_SHARDS];
    struct exapi_path_entry **bucket = &sh->buckets[(h / EXAPI_PATH_SHARDS) % EXAPI_PATH_BUCKETS];

    atomic_fetch_add(&st->requests, 1);
    pthread_mutex_lock(&sh->mu);
    for (struct exapi_path_entry *e = *bucket; e; e = e->next) {
        if (e->hash == h && strcmp(e->path, path) == 0) {
            e->count++;
            pthread_mutex_unlock(&sh->mu);
            return;
        }
    }
    struct exapi_path_entry *e = NULL;
    if (atomic_fetch_add(&st->distinct, 1) < EXAPI_MAX_PATHS)
        e = malloc(sizeof *e + len + 1);
    else
        atomic_fetch_sub(&st->distinct, 1);
    if (e) {
        e->hash = h;
        e->count = 1;
        memcpy(e->path, path, len + 1);
        e->next = *bucket;
        *bucket = e;
    }
    pthread_mutex_unlock(&sh->mu);
    if (!e)
        atomic_fetch_add(&st->other, 1);
}

static void stats_reset(struct exapi_stats *st)
{
    for (int s = 0; s < EXAPI_PATH_SHARDS; s++) {
        struct exapi_path_shard *sh = &st->shards[s];
        pthread_mutex_lock(&sh->mu);
        for (int b = 0; b < EXAPI_PATH_BUCKETS; b++) {
            struct exapi_path_entry *e = sh->buckets[b];
            while (e) {
                struct exapi_path_entry *next = e->next;
                free(e);
                e = next;
            }
            sh->buckets[b] = NULL;
        }
        pthread_mutex_unlock(&sh->mu);
    }
    atomic_store(&st->distinct, 0);
    atomic_store(&st->other, 0);
    atomic_store(&st->requests, 0);
}

static void stats_json(struct exapi_stats *st, struct exapi_sb *b)
{
    bool first = true;
    sb_printf(b, "{\"requests\":%llu,\"by_path\":{", atomic_load(&st->requests));
    for (int s = 0; s < EXAPI_PATH_SHARDS; s++) {
        struct exapi_path_shard *sh = &st->shards[s];
        pthread_mutex_lock(&sh->mu);
        for (int k = 0; k < EXAPI_PATH_BUCKETS; k++) {
            for (struct exapi_path_entry *e = sh->buckets[k]; e; e = e->next) {
                if (!first)
                    sb_putc(b, ',');
                first = false;
                sb_json_cstr(b, e->path);
                sb_printf(b, ":%" PRIu64, e->count);
            }
        }
        pthread_mutex_unlock(&sh->mu);
    }
    unsigned long long other = atomic_load(&st->other);
    if (other)
        sb_printf(b, "%s\"(other)\":%llu", first ? "" : ",", other);
    sb_puts(b, "}}");
}

/* ---------------------------------------------------------------------------------------------
 * The application, a request, a reply.
 */

struct exapi_opts {
    const char *host;
    long port, latency_ms, feed_latency_ms, idle_timeout_s;
};

struct exapi {
    struct exapi_opts opts;
    struct exapi_db db;
    struct exapi_stats stats;
    atomic_bool stopping; /* set on SIGTERM/SIGINT: simulated delays end early */
    time_t started;       /* Last-Modified of the static routes */
    char *pattern;        /* EXAPI_PATTERN_LEN + 26 bytes of 'a'..'z' */
    struct MHD_Response *fast; /* the whole /fast answer, shared by every request */
    char fast_etag[48];
};

/* Per-request state, created by the URI-log callback and freed when the request completes. */
struct exapi_req {
    char *query; /* raw query string without '?', NULL when absent */
    char *body;  /* NUL-terminated request body, NULL when empty */
    size_t body_len, body_cap;
    unsigned fail; /* 413 or 500 when the body could not be kept */
    bool started;
};

struct exapi_reply {
    unsigned status;
    struct exapi_sb body;
    const char *ctype; /* Content-Type, NULL for none */
    const char *cache; /* Cache-Control, NULL for none */
    const char *vary;
    bool validators; /* Last-Modified (mtime), and an ETag of the body on a 200 */
    time_t mtime;
    char etag[48]; /* set by routes that build resp themselves */
    char location[64];
    char total[24]; /* X-Total-Count */
    char allow[64];
    struct MHD_Response *resp; /* a response the route built itself */
    bool resp_shared;          /* resp belongs to the app: neither destroy nor add headers */
    bool resp_done;            /* resp already carries all its headers */
};

struct exapi_call {
    struct exapi *app;
    struct MHD_Connection *conn;
    struct exapi_req *rq;
    const char *method, *path;
    long param; /* the numeric :n of the matched route */
    time_t now;
    struct exapi_reply *rp;
};

static void reply_ok(struct exapi_call *c, const char *cache, time_t mtime)
{
    c->rp->status = 200;
    c->rp->cache = cache;
    c->rp->validators = true;
    c->rp->mtime = mtime;
}

static void reply_error(struct exapi_call *c, unsigned status, const char *msg)
{
    struct exapi_reply *rp = c->rp;
    rp->status = status;
    rp->body.len = 0;
    rp->cache = EXAPI_CC_NO_STORE;
    rp->validators = false;
    rp->vary = NULL;
    rp->location[0] = rp->total[0] = '\0';
    sb_puts(&rp->body, "{\"error\":");
    sb_json_cstr(&rp->body, msg);
    sb_putc(&rp->body, '}');
}

static void reply_created(struct exapi_call *c, const char *prefix, long id, time_t now)
{
    c->rp->status = 201;
    c->rp->cache = EXAPI_CC_NO_STORE;
    c->rp->mtime = now;
    if (prefix)
        snprintf(c->rp->location, sizeof c->rp->location, "%s%ld", prefix, id);
}

static int query_long(struct exapi_call *c, const char *name, long def, long min, long max,
                      long *out)
{
    const char *v = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
    if (!v || !*v) {
        *out = def;
        return 0;
    }
    return exapi_parse_long(v, min, max, out);
}

/* page/limit as offset/limit; answers 400 itself and returns -1 on bad values. */
static int page_args(struct exapi_call *c, long def_limit, long *offset, long *limit)
{
    long page, lim;
    if (query_long(c, "page", 1, 1, 1000000, &page) ||
        query_long(c, "limit", def_limit, 1, 1000, &lim)) {
        reply_error(c, 400, "bad page or limit");
        return -1;
    }
    *offset = (page - 1) * lim;
    *limit = lim;
    return 0;
}

/* The user of a per-user route: header X-User-Id, 1 when absent. */
static int user_header(struct exapi_call *c, long *uid)
{
    const char *v = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "X-User-Id");
    if (!v) {
        *uid = 1;
        return 0;
    }
    if (exapi_parse_long(v, 1, LONG_MAX, uid)) {
        reply_error(c, 400, "bad X-User-Id");
        return -1;
    }
    return 0;
}

static bool body_is_object(struct exapi_call *c)
{
    const char *p = c->rq->body;
    if (!p)
        return false;
    while (exapi_is_ws(*p))
        p++;
    return *p == '{';
}

static const char *body_value(struct exapi_call *c, const char *key)
{
    if (!c->rq->body)
        return NULL;
    return exapi_json_find(c->rq->body, c->rq->body_len, key);
}

/* Body field readers: 1 found, 0 absent (or null), -1 present but unusable. */
static int body_str(struct exapi_call *c, const char *key, size_t maxlen, char **out)
{
    const char *v = body_value(c, key);
    if (!v || strncmp(v, "null", 4) == 0)
        return 0;
    if (*v != '"')
        return -1;
    return exapi_json_unquote(v, c->rq->body + c->rq->body_len, maxlen, out) ? -1 : 1;
}

static int body_long(struct exapi_call *c, const char *key, long min, long max, long *out)
{
    const char *v = body_value(c, key);
    char *end;
    if (!v || strncmp(v, "null", 4) == 0)
        return 0;
    bool quoted = *v == '"';
    if (quoted)
        v++;
    if (!(*v == '-' || (*v >= '0' && *v <= '9')))
        return -1;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || n < min || n > max || (quoted && *end != '"'))
        return -1;
    *out = n;
    return 1;
}

static int body_bool(struct exapi_call *c, const char *key, bool *out)
{
    const char *v = body_value(c, key);
    if (!v || strncmp(v, "null", 4) == 0)
        return 0;
    if (strncmp(v, "true", 4) == 0) {
        *out = true;
        return 1;
    }
    if (strncmp(v, "false", 5) == 0) {
        *out = false;
        return 1;
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * JSON renderers (caller holds the db lock).
 */

static void json_user(struct exapi_sb *b, const struct exapi_user *u)
{
    char created[32];
    exapi_fmt_iso(u->created, created);
    sb_printf(b, "{\"id\":%ld,\"username\":\"user%ld\",\"name\":", u->id, u->id);
    sb_json_cstr(b, u->name);
    sb_puts(b, ",\"email\":");
    sb_json_cstr(b, u->email);
    sb_puts(b, ",\"bio\":");
    sb_json_cstr(b, u->bio);
    sb_printf(b, ",\"location_id\":%d,\"created_at\":\"%s\"}", u->location_id, created);
}

static void json_post(struct exapi_sb *b, const struct exapi_post *p)
{
    char created[32];
    exapi_fmt_iso(p->created, created);
    sb_printf(b, "{\"id\":%ld,\"user_id\":%ld,\"title\":", p->id, p->user_id);
    sb_json_cstr(b, p->title);
    sb_puts(b, ",\"body\":");
    sb_json_cstr(b, p->body);
    sb_printf(b, ",\"category_id\":%d,\"likes\":%d,\"created_at\":\"%s\"}", p->category_id,
              p->likes, created);
}

static void json_job(struct exapi_sb *b, const struct exapi_job *j)
{
    char posted[32];
    exapi_fmt_iso(j->posted, posted);
    sb_printf(b, "{\"id\":%ld,\"title\":", j->id);
    sb_json_cstr(b, j->title);
    sb_puts(b, ",\"company\":");
    sb_json_cstr(b, j->company);
    sb_printf(b,
              ",\"location_id\":%d,\"category_id\":%d,\"salary_min\":%ld,\"salary_max\":%ld,"
              "\"remote\":%s,\"posted_at\":\"%s\"}",
              j->location_id, j->category_id, j->salary_min, j->salary_max,
              j->remote ? "true" : "false", posted);
}

static void json_message(struct exapi_sb *b, const struct exapi_message *m)
{
    char created[32];
    exapi_fmt_iso(m->created, created);
    sb_printf(b, "{\"id\":%ld,\"conversation_id\":%ld,\"from_user_id\":%ld,\"to_user_id\":%ld,"
                 "\"body\":",
              m->id, m->conversation_id, m->from_user, m->to_user);
    sb_json_cstr(b, m->body);
    sb_printf(b, ",\"read\":%s,\"created_at\":\"%s\"}", m->read ? "true" : "false", created);
}

static void json_location(struct exapi_sb *b, int id)
{
    if (id < 1 || id > 20) {
        sb_puts(b, "null");
        return;
    }
    sb_printf(b, "{\"id\":%d,\"city\":", id);
    sb_json_cstr(b, EXAPI_LOCATIONS[id - 1].city);
    sb_printf(b, ",\"country\":\"%s\"}", EXAPI_LOCATIONS[id - 1].country);
}

/* ---------------------------------------------------------------------------------------------
 * Data routes.
 */

static void h_users_list(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    struct exapi_sb *b = &c->rp->body;
    long off, lim, seen = 0, emitted = 0;
    if (page_args(c, 20, &off, &lim))
        return;
    pthread_rwlock_rdlock(&db->lock);
    sb_putc(b, '[');
    for (size_t i = 0; i < db->users.n; i++) {
        if (db->users.v[i].deleted)
            continue;
        if (seen++ >= off && emitted < lim) {
            if (emitted++)
                sb_putc(b, ',');
            json_user(b, &db->users.v[i]);
        }
    }
    sb_putc(b, ']');
    snprintf(c->rp->total, sizeof c->rp->total, "%ld", seen);
    reply_ok(c, EXAPI_CC_PUBLIC, db->mtime);
    pthread_rwlock_unlock(&db->lock);
}

static void h_user_get(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    pthread_rwlock_rdlock(&db->lock);
    const struct exapi_user *u = db_user(db, c->param);
    if (u) {
        json_user(&c->rp->body, u);
        reply_ok(c, EXAPI_CC_PUBLIC, db->mtime);
    }
    pthread_rwlock_unlock(&db->lock);
    if (!u)
        reply_error(c, 404, "not found");
}

static void h_user_profile(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    struct exapi_sb *b = &c->rp->body;
    pthread_rwlock_rdlock(&db->lock);
    const struct exapi_user *u = db_user(db, c->param);
    if (u) {
        long posts = 0;
        char joined[32];
        for (size_t i = 0; i < db->posts.n; i++)
            posts += !db->posts.v[i].deleted && db->posts.v[i].user_id == u->id;
        exapi_fmt_iso(u->created, joined);
        sb_printf(b, "{\"user_id\":%ld,\"username\":\"user%ld\",\"name\":", u->id, u->id);
        sb_json_cstr(b, u->name);
        sb_puts(b, ",\"bio\":");
        sb_json_cstr(b, u->bio);
        sb_printf(b,
                  ",\"avatar_url\":\"https://example.com/avatars/%ld.png\",\"followers\":%d,"
                  "\"following\":%d,\"posts_count\":%ld,\"location\":",
                  u->id, u->followers, u->following, posts);
        json_location(b, u->location_id);
        sb_printf(b, ",\"joined\":\"%s\"}", joined);
        reply_ok(c, EXAPI_CC_PUBLIC, db->mtime);
    }
    pthread_rwlock_unlock(&db->lock);
    if (!u)
        reply_error(c, 404, "not found");
}

/* Posts newest first, optionally only one author's, or (feed_uid) only the authors feed_uid
 * follows.  Returns how many matched (all of them, except for a feed). */
static long posts_page(struct exapi_db *db, struct exapi_sb *b, long author, long feed_uid,
                       long off, long lim)
{
    long seen = 0, emitted = 0;
    sb_putc(b, '[');
    for (size_t i = db->posts.n; i-- > 0;) {
        const struct exapi_post *p = &db->posts.v[i];
        if (p->deleted || (author && p->user_id != author))
            continue;
        if (feed_uid) {
            /* Everyone follows the ten users after them (wrapping within 1..100). */
            long d = ((p->user_id - feed_uid) % 100 + 100) % 100;
            if (d < 1 || d > 10)
                continue;
        }
        if (seen++ >= off && emitted < lim) {
            if (emitted++)
                sb_putc(b, ',');
            json_post(b, p);
        }
        /* The feed reports no total, so it need not scan every post ever written. */
        if (feed_uid && emitted == lim)
            break;
    }
    sb_putc(b, ']');
    return seen;
}

static void h_user_posts(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    long off, lim;
    if (page_args(c, 20, &off, &lim))
        return;
    pthread_rwlock_rdlock(&db->lock);
    bool found = db_user(db, c->param) != NULL;
    if (found) {
        long total = posts_page(db, &c->rp->body, c->param, 0, off, lim);
        snprintf(c->rp->total, sizeof c->rp->total, "%ld", total);
        reply_ok(c, EXAPI_CC_PUBLIC, db->mtime);
    }
    pthread_rwlock_unlock(&db->lock);
    if (!found)
        reply_error(c, 404, "not found");
}

static void h_posts_list(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    long off, lim, author;
    if (page_args(c, 20, &off, &lim))
        return;
    if (query_long(c, "user_id", 0, 1, LONG_MAX, &author)) {
        reply_error(c, 400, "bad user_id");
        return;
    }
    pthread_rwlock_rdlock(&db->lock);
    long total = posts_page(db, &c->rp->body, author, 0, off, lim);
    snprintf(c->rp->total, sizeof c->rp->total, "%ld", total);
    reply_ok(c, EXAPI_CC_PUBLIC, db->mtime);
    pthread_rwlock_unlock(&db->lock);
}

static void h_post_get(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    pthread_rwlock_rdlock(&db->lock);
    const struct exapi_post *p = db_post(db, c->param);
    if (p) {
        json_post(&c->rp->body, p);
        reply_ok(c, EXAPI_CC_PUBLIC, db->mtime);
    }
    pthread_rwlock_unlock(&db->lock);
    if (!p)
        reply_error(c, 404, "not found");
}

static void h_feed(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    long uid, off, lim;
    if (user_header(c, &uid) || page_args(c, 20, &off, &lim))
        return;
    sb_printf(&c->rp->body, "{\"user_id\":%ld,\"posts\":", uid);
    pthread_rwlock_rdlock(&db->lock);
    posts_page(db, &c->rp->body, 0, uid, off, lim);
    reply_ok(c, EXAPI_CC_PRIVATE, db->mtime);
    pthread_rwlock_unlock(&db->lock);
    sb_putc(&c->rp->body, '}');
    c->rp->vary = "X-User-Id";
}

static void h_jobs_list(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    struct exapi_sb *b = &c->rp->body;
    long off, lim, cat, loc, seen = 0, emitted = 0;
    const char *remote = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "remote");
    if (page_args(c, 20, &off, &lim))
        return;
    if (query_long(c, "category_id", 0, 1, 10, &cat) ||
        query_long(c, "location_id", 0, 1, 20, &loc) ||
        (remote && strcmp(remote, "true") != 0 && strcmp(remote, "false") != 0)) {
        reply_error(c, 400, "bad filter");
        return;
    }
    pthread_rwlock_rdlock(&db->lock);
    sb_putc(b, '[');
    for (size_t i = db->jobs.n; i-- > 0;) {
        const struct exapi_job *j = &db->jobs.v[i];
        if ((cat && j->category_id != cat) || (loc && j->location_id != loc) ||
            (remote && j->remote != (strcmp(remote, "true") == 0)))
            continue;
        if (seen++ >= off && emitted < lim) {
            if (emitted++)
                sb_putc(b, ',');
            json_job(b, j);
        }
    }
    sb_putc(b, ']');
    snprintf(c->rp->total, sizeof c->rp->total, "%ld", seen);
    reply_ok(c, EXAPI_CC_PUBLIC, db->mtime);
    pthread_rwlock_unlock(&db->lock);
}

static void h_job_get(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    pthread_rwlock_rdlock(&db->lock);
    const struct exapi_job *j = db_job(db, c->param);
    if (j) {
        json_job(&c->rp->body, j);
        reply_ok(c, EXAPI_CC_PUBLIC, db->mtime);
    }
    pthread_rwlock_unlock(&db->lock);
    if (!j)
        reply_error(c, 404, "not found");
}

static void h_jobs_stats(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    struct exapi_sb *b = &c->rp->body;
    long by_cat[10] = {0}, by_loc[20] = {0}, remote = 0;
    long long sum_min = 0, sum_max = 0;
    pthread_rwlock_rdlock(&db->lock);
    size_t n = db->jobs.n;
    for (size_t i = 0; i < n; i++) {
        const struct exapi_job *j = &db->jobs.v[i];
        remote += j->remote;
        sum_min += j->salary_min;
        sum_max += j->salary_max;
        if (j->category_id >= 1 && j->category_id <= 10)
            by_cat[j->category_id - 1]++;
        if (j->location_id >= 1 && j->location_id <= 20)
            by_loc[j->location_id - 1]++;
    }
    reply_ok(c, EXAPI_CC_PUBLIC, db->mtime);
    pthread_rwlock_unlock(&db->lock);
    sb_printf(b, "{\"total\":%zu,\"remote\":%ld,\"avg_salary_min\":%lld,\"avg_salary_max\":%lld,"
                 "\"by_category\":{",
              n, remote, n ? sum_min / (long long)n : 0, n ? sum_max / (long long)n : 0);
    for (int i = 0; i < 10; i++)
        sb_printf(b, "%s\"%s\":%ld", i ? "," : "", EXAPI_CATEGORIES[i].slug, by_cat[i]);
    sb_puts(b, "},\"by_location\":{");
    for (int i = 0; i < 20; i++) {
        if (i)
            sb_putc(b, ',');
        sb_json_cstr(b, EXAPI_LOCATIONS[i].city);
        sb_printf(b, ":%ld", by_loc[i]);
    }
    sb_puts(b, "}}");
}

static void h_messages(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    struct exapi_sb *b = &c->rp->body;
    long uid, off, lim, seen = 0, emitted = 0;
    if (user_header(c, &uid) || page_args(c, 50, &off, &lim))
        return;
    sb_printf(b, "{\"user_id\":%ld,\"messages\":[", uid);
    pthread_rwlock_rdlock(&db->lock);
    for (size_t i = db->messages.n; i-- > 0;) {
        const struct exapi_message *m = &db->messages.v[i];
        if (m->from_user != uid && m->to_user != uid)
            continue;
        if (seen++ >= off && emitted < lim) {
            if (emitted++)
                sb_putc(b, ',');
            json_message(b, m);
        }
    }
    reply_ok(c, EXAPI_CC_PRIVATE, db->mtime);
    pthread_rwlock_unlock(&db->lock);
    sb_puts(b, "]}");
    snprintf(c->rp->total, sizeof c->rp->total, "%ld", seen);
    c->rp->vary = "X-User-Id";
}

static void h_conversations(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    struct exapi_sb *b = &c->rp->body;
    long uid;
    bool first = true;
    if (user_header(c, &uid))
        return;
    sb_printf(b, "{\"user_id\":%ld,\"conversations\":[", uid);
    pthread_rwlock_rdlock(&db->lock);
    for (size_t i = 0; i < db->conversations.n; i++) {
        const struct exapi_conversation *cv = &db->conversations.v[i];
        if (cv->user_a != uid && cv->user_b != uid)
            continue;
        const struct exapi_message *last = NULL;
        long count = 0, unread = 0;
        for (size_t k = 0; k < db->messages.n; k++) {
            const struct exapi_message *m = &db->messages.v[k];
            if (m->conversation_id != cv->id)
                continue;
            count++;
            unread += !m->read && m->to_user == uid;
            last = m;
        }
        if (!first)
            sb_putc(b, ',');
        first = false;
        sb_printf(b, "{\"id\":%ld,\"participants\":[%ld,%ld],\"subject\":", cv->id, cv->user_a,
                  cv->user_b);
        sb_json_cstr(b, cv->subject);
        sb_printf(b, ",\"message_count\":%ld,\"unread\":%ld,\"last_message\":", count, unread);
        if (last)
            json_message(b, last);
        else
            sb_puts(b, "null");
        sb_putc(b, '}');
    }
    reply_ok(c, EXAPI_CC_PRIVATE, db->mtime);
    pthread_rwlock_unlock(&db->lock);
    sb_puts(b, "]}");
    c->rp->vary = "X-User-Id";
}

static void h_notifications(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    struct exapi_sb *b = &c->rp->body;
    long uid, unread = 0;
    bool first = true;
    if (user_header(c, &uid))
        return;
    sb_printf(b, "{\"user_id\":%ld,\"notifications\":[", uid);
    pthread_rwlock_rdlock(&db->lock);
    for (size_t i = db->notifications.n; i-- > 0;) {
        const struct exapi_notification *n = &db->notifications.v[i];
        char created[32];
        if (n->user_id != uid)
            continue;
        unread += !n->read;
        exapi_fmt_iso(n->created, created);
        sb_printf(b, "%s{\"id\":%ld,\"user_id\":%ld,\"type\":\"%s\",\"text\":", first ? "" : ",",
                  n->id, n->user_id, n->type);
        sb_json_cstr(b, n->text);
        sb_printf(b, ",\"read\":%s,\"created_at\":\"%s\"}", n->read ? "true" : "false", created);
        first = false;
    }
    reply_ok(c, EXAPI_CC_PRIVATE, db->mtime);
    pthread_rwlock_unlock(&db->lock);
    sb_printf(b, "],\"unread\":%ld}", unread);
    c->rp->vary = "X-User-Id";
}

static void h_categories(struct exapi_call *c)
{
    struct exapi_sb *b = &c->rp->body;
    sb_putc(b, '[');
    for (int i = 0; i < 10; i++)
        sb_printf(b, "%s{\"id\":%d,\"name\":\"%s\",\"slug\":\"%s\"}", i ? "," : "", i + 1,
                  EXAPI_CATEGORIES[i].name, EXAPI_CATEGORIES[i].slug);
    sb_putc(b, ']');
    reply_ok(c, EXAPI_CC_PUBLIC, c->app->started);
}

static void h_locations(struct exapi_call *c)
{
    struct exapi_sb *b = &c->rp->body;
    sb_putc(b, '[');
    for (int i = 1; i <= 20; i++) {
        if (i > 1)
            sb_putc(b, ',');
        json_location(b, i);
    }
    sb_putc(b, ']');
    reply_ok(c, EXAPI_CC_PUBLIC, c->app->started);
}

/* ---------------------------------------------------------------------------------------------
 * Writes.  Field values are validated before the write lock is taken.
 */

static void h_post_create(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    char *title = NULL, *text = NULL;
    long uid = 0, cat = 1;
    if (!body_is_object(c)) {
        reply_error(c, 400, "invalid json");
        return;
    }
    int rt = body_str(c, "title", 1024, &title);
    int rb = body_str(c, "body", 1024 * 1024, &text);
    int ru = body_long(c, "user_id", 1, LONG_MAX, &uid);
    int rc = body_long(c, "category_id", 1, 10, &cat);
    if (rt < 0 || rb < 0 || ru < 0 || rc < 0) {
        reply_error(c, 400, "bad field");
        goto done;
    }
    if (rt == 0) {
        reply_error(c, 400, "title is required");
        goto done;
    }
    if (ru == 0 && user_header(c, &uid))
        goto done;
    if (!text && !(text = strdup(""))) {
        c->rp->body.oom = true;
        goto done;
    }
    pthread_rwlock_wrlock(&db->lock);
    struct exapi_post *p = NULL;
    if (db_user(db, uid))
        EXAPI_PUSH(db->posts, p);
    if (p) {
        p->id = (long)db->posts.n;
        p->user_id = uid;
        p->title = title;
        p->body = text;
        title = text = NULL;
        p->category_id = (int)cat;
        p->created = c->now;
        db->mtime = c->now;
        json_post(&c->rp->body, p);
        reply_created(c, "/posts/", p->id, c->now);
    }
    bool known_user = db_user(db, uid) != NULL;
    pthread_rwlock_unlock(&db->lock);
    if (!p)
        reply_error(c, known_user ? 507 : 400, known_user ? "storage full" : "unknown user_id");
done:
    free(title);
    free(text);
}

static void h_post_update(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    char *title = NULL, *text = NULL;
    long cat = 0;
    if (!body_is_object(c)) {
        reply_error(c, 400, "invalid json");
        return;
    }
    int rt = body_str(c, "title", 1024, &title);
    int rb = body_str(c, "body", 1024 * 1024, &text);
    int rc = body_long(c, "category_id", 1, 10, &cat);
    if (rt < 0 || rb < 0 || rc < 0) {
        reply_error(c, 400, "bad field");
        goto done;
    }
    pthread_rwlock_wrlock(&db->lock);
    struct exapi_post *p = db_post(db, c->param);
    if (p) {
        if (title) {
            free(p->title);
            p->title = title;
            title = NULL;
        }
        if (text) {
            free(p->body);
            p->body = text;
            text = NULL;
        }
        if (cat)
            p->category_id = (int)cat;
        db->mtime = c->now;
        json_post(&c->rp->body, p);
        c->rp->cache = EXAPI_CC_NO_STORE;
    }
    pthread_rwlock_unlock(&db->lock);
    if (!p)
        reply_error(c, 404, "not found");
done:
    free(title);
    free(text);
}

static void h_post_delete(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    pthread_rwlock_wrlock(&db->lock);
    struct exapi_post *p = db_post(db, c->param);
    if (p) {
        p->deleted = true;
        free(p->title);
        free(p->body);
        p->title = p->body = NULL;
        db->mtime = c->now;
    }
    pthread_rwlock_unlock(&db->lock);
    if (!p) {
        reply_error(c, 404, "not found");
        return;
    }
    c->rp->status = 204;
    c->rp->cache = EXAPI_CC_NO_STORE;
}

static void h_user_create(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    char *name = NULL, *email = NULL, *bio = NULL;
    long loc = 1;
    if (!body_is_object(c)) {
        reply_error(c, 400, "invalid json");
        return;
    }
    int rn = body_str(c, "name", 256, &name);
    int re = body_str(c, "email", 256, &email);
    int rb = body_str(c, "bio", 4096, &bio);
    int rl = body_long(c, "location_id", 1, 20, &loc);
    if (rn < 0 || re < 0 || rb < 0 || rl < 0) {
        reply_error(c, 400, "bad field");
        goto done;
    }
    if (rn == 0) {
        reply_error(c, 400, "name is required");
        goto done;
    }
    if (!bio && !(bio = strdup(""))) {
        c->rp->body.oom = true;
        goto done;
    }
    pthread_rwlock_wrlock(&db->lock);
    struct exapi_user *u;
    EXAPI_PUSH(db->users, u);
    if (u) {
        u->id = (long)db->users.n;
        if (!email)
            email = exapi_strf("user%ld@example.com", u->id);
        u->name = name;
        u->email = email;
        u->bio = bio;
        name = email = bio = NULL;
        u->location_id = (int)loc;
        u->following = 10;
        u->created = c->now;
        db->mtime = c->now;
        json_user(&c->rp->body, u);
        reply_created(c, "/users/", u->id, c->now);
    }
    pthread_rwlock_unlock(&db->lock);
    if (!u)
        reply_error(c, 507, "storage full");
done:
    free(name);
    free(email);
    free(bio);
}

static void h_user_update(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    char *name = NULL, *email = NULL, *bio = NULL;
    if (!body_is_object(c)) {
        reply_error(c, 400, "invalid json");
        return;
    }
    int rn = body_str(c, "name", 256, &name);
    int re = body_str(c, "email", 256, &email);
    int rb = body_str(c, "bio", 4096, &bio);
    if (rn < 0 || re < 0 || rb < 0) {
        reply_error(c, 400, "bad field");
        goto done;
    }
    pthread_rwlock_wrlock(&db->lock);
    struct exapi_user *u = db_user(db, c->param);
    if (u) {
        if (name) {
            free(u->name);
            u->name = name;
            name = NULL;
        }
        if (email) {
            free(u->email);
            u->email = email;
            email = NULL;
        }
        if (bio) {
            free(u->bio);
            u->bio = bio;
            bio = NULL;
        }
        db->mtime = c->now;
        json_user(&c->rp->body, u);
        c->rp->cache = EXAPI_CC_NO_STORE;
    }
    pthread_rwlock_unlock(&db->lock);
    if (!u)
        reply_error(c, 404, "not found");
done:
    free(name);
    free(email);
    free(bio);
}

static void h_user_delete(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    pthread_rwlock_wrlock(&db->lock);
    struct exapi_user *u = db_user(db, c->param);
    if (u) {
        u->deleted = true;
        free(u->name);
        free(u->email);
        free(u->bio);
        u->name = u->email = u->bio = NULL;
        db->mtime = c->now;
    }
    pthread_rwlock_unlock(&db->lock);
    if (!u) {
        reply_error(c, 404, "not found");
        return;
    }
    c->rp->status = 204;
    c->rp->cache = EXAPI_CC_NO_STORE;
}

/* POST /messages {"to_user_id": N | "conversation_id": N, "body": "..."} from X-User-Id. */
static void h_message_create(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    char *text = NULL;
    long from, to = 0, conv_id = 0;
    const char *err = NULL;
    unsigned err_status = 400;
    if (!body_is_object(c)) {
        reply_error(c, 400, "invalid json");
        return;
    }
    if (user_header(c, &from))
        return;
    int rb = body_str(c, "body", 64 * 1024, &text);
    int rt = body_long(c, "to_user_id", 1, LONG_MAX, &to);
    int rc = body_long(c, "conversation_id", 1, LONG_MAX, &conv_id);
    if (rb < 0 || rt < 0 || rc < 0) {
        reply_error(c, 400, "bad field");
        goto done;
    }
    if (rb == 0 || (rt == 0 && rc == 0)) {
        reply_error(c, 400, "body and to_user_id (or conversation_id) are required");
        goto done;
    }
    pthread_rwlock_wrlock(&db->lock);
    struct exapi_conversation *cv = NULL;
    struct exapi_message *m = NULL;
    if (conv_id) {
        cv = db_conversation(db, conv_id);
        if (!cv) {
            err = "conversation not found";
            err_status = 404;
        } else if (cv->user_a != from && cv->user_b != from) {
            err = "not a participant";
            err_status = 403;
        } else {
            to = cv->user_a == from ? cv->user_b : cv->user_a;
        }
    } else if (!db_user(db, to) || to == from) {
        err = "unknown to_user_id";
    } else {
        for (size_t i = 0; i < db->conversations.n && !cv; i++) {
            struct exapi_conversation *k = &db->conversations.v[i];
            if ((k->user_a == from && k->user_b == to) || (k->user_a == to && k->user_b == from))
                cv = k;
        }
        if (!cv) {
            char *subject = exapi_strf("Chat between User %ld and User %ld", from, to);
            if (subject)
                EXAPI_PUSH(db->conversations, cv);
            if (cv) {
                cv->id = (long)db->conversations.n;
                cv->user_a = from;
                cv->user_b = to;
                cv->subject = subject;
            } else {
                free(subject);
                err = "storage full";
                err_status = 507;
            }
        }
    }
    if (!err) {
        EXAPI_PUSH(db->messages, m);
        if (m) {
            m->id = (long)db->messages.n;
            m->conversation_id = cv->id;
            m->from_user = from;
            m->to_user = to;
            m->body = text;
            text = NULL;
            m->created = c->now;
            db->mtime = c->now;
            json_message(&c->rp->body, m);
            reply_created(c, NULL, m->id, c->now);
        } else {
            err = "storage full";
            err_status = 507;
        }
    }
    pthread_rwlock_unlock(&db->lock);
    if (err)
        reply_error(c, err_status, err);
done:
    free(text);
}

static void h_job_create(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    char *title = NULL, *company = NULL;
    long loc = 1, cat = 1, smin = 50000, smax = 0;
    bool remote = false;
    if (!body_is_object(c)) {
        reply_error(c, 400, "invalid json");
        return;
    }
    int r1 = body_str(c, "title", 256, &title);
    int r2 = body_str(c, "company", 256, &company);
    int r3 = body_long(c, "location_id", 1, 20, &loc);
    int r4 = body_long(c, "category_id", 1, 10, &cat);
    int r5 = body_long(c, "salary_min", 0, 100000000, &smin);
    int r6 = body_long(c, "salary_max", 0, 100000000, &smax);
    int r7 = body_bool(c, "remote", &remote);
    if (r1 < 0 || r2 < 0 || r3 < 0 || r4 < 0 || r5 < 0 || r6 < 0 || r7 < 0) {
        reply_error(c, 400, "bad field");
        goto done;
    }
    if (r1 == 0) {
        reply_error(c, 400, "title is required");
        goto done;
    }
    if (!company && !(company = strdup(EXAPI_COMPANIES[0]))) {
        c->rp->body.oom = true;
        goto done;
    }
    pthread_rwlock_wrlock(&db->lock);
    struct exapi_job *j;
    EXAPI_PUSH(db->jobs, j);
    if (j) {
        j->id = (long)db->jobs.n;
        j->title = title;
        j->company = company;
        title = company = NULL;
        j->location_id = (int)loc;
        j->category_id = (int)cat;
        j->salary_min = smin;
        j->salary_max = smax > smin ? smax : smin;
        j->remote = remote;
        j->posted = c->now;
        db->mtime = c->now;
        json_job(&c->rp->body, j);
        reply_created(c, "/jobs/", j->id, c->now);
    }
    pthread_rwlock_unlock(&db->lock);
    if (!j)
        reply_error(c, 507, "storage full");
done:
    free(title);
    free(company);
}

/* ---------------------------------------------------------------------------------------------
 * Test-support routes.
 */

static void h_stats(struct exapi_call *c)
{
    stats_json(&c->app->stats, &c->rp->body);
    c->rp->cache = EXAPI_CC_NO_STORE;
}

static void h_reset(struct exapi_call *c)
{
    struct exapi_db *db = &c->app->db;
    pthread_rwlock_wrlock(&db->lock);
    db_clear(db);
    int rc = db_seed(db, c->now);
    pthread_rwlock_unlock(&db->lock);
    stats_reset(&c->app->stats);
    if (rc) {
        reply_error(c, 500, "out of memory while reseeding");
        return;
    }
    sb_puts(&c->rp->body, "{\"ok\":true}");
    c->rp->cache = EXAPI_CC_NO_STORE;
}

struct exapi_hdr {
    const char *name, *value;
};

struct exapi_hdr_list {
    struct exapi_hdr v[EXAPI_MAX_ECHO_HEADERS];
    size_t n;
};

static enum MHD_Result exapi_collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                            const char *value)
{
    struct exapi_hdr_list *l = cls;
    if (l->n < EXAPI_MAX_ECHO_HEADERS)
        l->v[l->n++] = (struct exapi_hdr){key, value ? value : ""};
    return MHD_YES;
}

/* Echoes the request.  Repeated header names are joined with ", " into one member. */
static void h_echo(struct exapi_call *c)
{
    struct exapi_sb *b = &c->rp->body;
    struct exapi_hdr_list *l = malloc(sizeof *l);
    if (!l) {
        b->oom = true;
        return;
    }
    l->n = 0;
    MHD_get_connection_values(c->conn, MHD_HEADER_KIND, exapi_collect_header, l);

    sb_puts(b, "{\"method\":");
    sb_json_cstr(b, c->method);
    sb_puts(b, ",\"path\":");
    sb_json_cstr(b, c->path);
    sb_puts(b, ",\"query\":");
    sb_json_cstr(b, c->rq->query ? c->rq->query : "");
    sb_puts(b, ",\"headers\":{");
    bool first = true;
    for (size_t i = 0; i < l->n; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcasecmp(l->v[k].name, l->v[i].name) == 0;
        if (seen)
            continue;
        if (!first)
            sb_putc(b, ',');
        first = false;
        /* Lower-casing after escaping is safe: escapes use only lower-case letters. */
        size_t at = b->len;
        sb_json_cstr(b, l->v[i].name);
        for (size_t k = at; !b->oom && k < b->len; k++)
            if (b->p[k] >= 'A' && b->p[k] <= 'Z')
                b->p[k] = (char)(b->p[k] - 'A' + 'a');
        sb_putc(b, ':');
        bool dup = false;
        for (size_t k = i + 1; k < l->n && !dup; k++)
            dup = strcasecmp(l->v[k].name, l->v[i].name) == 0;
        if (!dup) {
            sb_json_cstr(b, l->v[i].value);
            continue;
        }
        struct exapi_sb joined = {0};
        for (size_t k = i; k < l->n; k++) {
            if (strcasecmp(l->v[k].name, l->v[i].name) != 0)
                continue;
            if (joined.len)
                sb_put(&joined, ", ", 2);
            sb_puts(&joined, l->v[k].value);
        }
        if (joined.oom)
            b->oom = true;
        sb_json_str(b, joined.p ? joined.p : "", joined.len);
        free(joined.p);
    }
    sb_puts(b, "},\"body\":");
    sb_json_str(b, c->rq->body ? c->rq->body : "", c->rq->body_len);
    sb_putc(b, '}');
    free(l);
    c->rp->cache = EXAPI_CC_NO_STORE;
}

static void h_fast(struct exapi_call *c)
{
    c->rp->resp = c->app->fast;
    c->rp->resp_shared = c->rp->resp_done = true;
    memcpy(c->rp->etag, c->app->fast_etag, sizeof c->rp->etag);
    reply_ok(c, EXAPI_CC_PUBLIC, c->app->started);
}

static ssize_t exapi_bytes_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    const char *pattern = cls;
    size_t n = max < (size_t)EXAPI_PATTERN_LEN ? max : (size_t)EXAPI_PATTERN_LEN;
    memcpy(buf, pattern + pos % 26, n);
    return (ssize_t)n;
}

static void h_bytes(struct exapi_call *c)
{
    long n = c->param;
    struct MHD_Response *resp;
    if (n > EXAPI_MAX_BYTES) {
        reply_error(c, 400, "n must be at most 67108864");
        return;
    }
    /* Small bodies point straight into the pattern (no copy); larger ones are generated. */
    if (n <= EXAPI_PATTERN_LEN)
        resp = MHD_create_response_from_buffer((size_t)n, c->app->pattern,
                                               MHD_RESPMEM_PERSISTENT);
    else
        resp = MHD_create_response_from_callback((uint64_t)n, EXAPI_BYTES_BLOCK,
                                                 exapi_bytes_reader, c->app->pattern, NULL);
    if (!resp) {
        c->rp->body.oom = true;
        return;
    }
    c->rp->resp = resp;
    c->rp->ctype = "application/octet-stream";
    snprintf(c->rp->etag, sizeof c->rp->etag, "\"bytes-%ld\"", n);
    reply_ok(c, EXAPI_CC_PUBLIC, c->app->started);
}

struct exapi_hdr_ctx {
    struct MHD_Response *resp;
    const char *cache, *etag;
    bool ctype, last_modified;
};

static enum MHD_Result exapi_add_query_header(void *cls, enum MHD_ValueKind kind,
                                              const char *key, const char *value)
{
    struct exapi_hdr_ctx *h = cls;
    if (!key || !*key || strcmp(key, "delay_ms") == 0)
        return MHD_YES;
    if (!value)
        value = "";
    /* libmicrohttpd refuses some headers (Content-Length, CR/LF in values); skip those. */
    if (MHD_add_response_header(h->resp, key, value) != MHD_YES)
        return MHD_YES;
    if (strcasecmp(key, "Cache-Control") == 0)
        h->cache = value;
    else if (strcasecmp(key, "ETag") == 0)
        h->etag = value;
    else if (strcasecmp(key, "Content-Type") == 0)
        h->ctype = true;
    else if (strcasecmp(key, "Last-Modified") == 0)
        h->last_modified = true;
    return MHD_YES;
}

/* Every query pair becomes a response header, in order; our defaults fill what is missing. */
static void h_headers(struct exapi_call *c)
{
    static const char body[] = "{\"ok\":true}";
    struct exapi_reply *rp = c->rp;
    struct exapi_hdr_ctx h = {0};
    char lm[40];

    h.resp = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!h.resp) {
        rp->body.oom = true;
        return;
    }
    MHD_get_connection_values(c->conn, MHD_GET_ARGUMENT_KIND, exapi_add_query_header, &h);
    if (!h.ctype)
        MHD_add_response_header(h.resp, "Content-Type", EXAPI_CT_JSON);
    if (!h.cache)
        MHD_add_response_header(h.resp, "Cache-Control", EXAPI_CC_PUBLIC);
    if (h.etag) {
        snprintf(rp->etag, sizeof rp->etag, "%s", h.etag);
    } else {
        /* Each distinct query is its own resource, so it gets its own validator. */
        const char *q = c->rq->query ? c->rq->query : "";
        exapi_etag(exapi_fnv1a(q, strlen(q), exapi_fnv1a(body, sizeof body - 1, EXAPI_FNV_BASIS)),
                   rp->etag);
        MHD_add_response_header(h.resp, "ETag", rp->etag);
    }
    if (!h.last_modified) {
        exapi_fmt_http(c->app->started, lm);
        MHD_add_response_header(h.resp, "Last-Modified", lm);
    }
    rp->resp = h.resp;
    rp->resp_done = true;
    reply_ok(c, h.cache ? h.cache : EXAPI_CC_PUBLIC, c->app->started);
}

static void h_status(struct exapi_call *c)
{
    if (c->param < 200 || c->param > 599) {
        reply_error(c, 400, "status must be 200..599");
        return;
    }
    sb_printf(&c->rp->body, "{\"status\":%ld}", c->param);
    reply_ok(c, EXAPI_CC_PUBLIC, c->app->started);
    c->rp->status = (unsigned)c->param;
}

static void h_count(struct exapi_call *c)
{
    sb_printf(&c->rp->body, "{\"count\":%llu}", atomic_load(&c->app->stats.requests));
    reply_ok(c, EXAPI_CC_PUBLIC, c->now);
}

static void h_vary(struct exapi_call *c)
{
    const char *lang = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Accept-Language");
    sb_puts(&c->rp->body, "{\"accept_language\":");
    sb_json_cstr(&c->rp->body, lang);
    sb_printf(&c->rp->body, ",\"count\":%llu}", atomic_load(&c->app->stats.requests));
    reply_ok(c, EXAPI_CC_PUBLIC, c->now);
    c->rp->vary = "Accept-Language";
}

static void h_nocache(struct exapi_call *c)
{
    sb_printf(&c->rp->body, "{\"nocache\":true,\"count\":%llu}",
              atomic_load(&c->app->stats.requests));
    reply_ok(c, "no-cache", c->now);
}

static void h_noinfo(struct exapi_call *c)
{
    sb_printf(&c->rp->body, "{\"noinfo\":true,\"count\":%llu}",
              atomic_load(&c->app->stats.requests));
    c->rp->cache = NULL;
    c->rp->validators = false;
}

static void h_slow(struct exapi_call *c)
{
    sb_puts(&c->rp->body, "{\"slow\":true}");
    reply_ok(c, EXAPI_CC_PUBLIC, c->app->started);
}

static void h_index(struct exapi_call *c);

/* ---------------------------------------------------------------------------------------------
 * Routing.
 */

enum exapi_latency { EXAPI_LAT_NONE, EXAPI_LAT_DATA, EXAPI_LAT_FEED, EXAPI_LAT_SLOW };

struct exapi_route {
    const char *method; /* "*" = any; GET also serves HEAD */
    const char *pattern; /* ":n" matches one all-digit segment */
    enum exapi_latency latency;
    void (*fn)(struct exapi_call *c);
};

static const struct exapi_route EXAPI_ROUTES[] = {
    {"GET", "/fast", EXAPI_LAT_NONE, h_fast},
    {"GET", "/count", EXAPI_LAT_NONE, h_count},
    {"GET", "/bytes/:n", EXAPI_LAT_NONE, h_bytes},
    {"GET", "/headers", EXAPI_LAT_NONE, h_headers},
    {"*", "/status/:n", EXAPI_LAT_NONE, h_status},
    {"GET", "/vary", EXAPI_LAT_NONE, h_vary},
    {"GET", "/nocache", EXAPI_LAT_NONE, h_nocache},
    {"GET", "/noinfo", EXAPI_LAT_NONE, h_noinfo},
    {"GET", "/slow", EXAPI_LAT_SLOW, h_slow},
    {"GET", "/", EXAPI_LAT_NONE, h_index},
    {"GET", "/users", EXAPI_LAT_DATA, h_users_list},
    {"POST", "/users", EXAPI_LAT_DATA, h_user_create},
    {"GET", "/users/:n", EXAPI_LAT_DATA, h_user_get},
    {"PUT", "/users/:n", EXAPI_LAT_DATA, h_user_update},
    {"PATCH", "/users/:n", EXAPI_LAT_DATA, h_user_update},
    {"DELETE", "/users/:n", EXAPI_LAT_DATA, h_user_delete},
    {"GET", "/users/:n/profile", EXAPI_LAT_DATA, h_user_profile},
    {"GET", "/users/:n/posts", EXAPI_LAT_DATA, h_user_posts},
    {"GET", "/posts", EXAPI_LAT_DATA, h_posts_list},
    {"POST", "/posts", EXAPI_LAT_DATA, h_post_create},
    {"GET", "/posts/:n", EXAPI_LAT_DATA, h_post_get},
    {"PUT", "/posts/:n", EXAPI_LAT_DATA, h_post_update},
    {"PATCH", "/posts/:n", EXAPI_LAT_DATA, h_post_update},
    {"DELETE", "/posts/:n", EXAPI_LAT_DATA, h_post_delete},
    {"GET", "/feed", EXAPI_LAT_FEED, h_feed},
    {"GET", "/jobs", EXAPI_LAT_DATA, h_jobs_list},
    {"POST", "/jobs", EXAPI_LAT_DATA, h_job_create},
    {"GET", "/jobs/stats", EXAPI_LAT_DATA, h_jobs_stats},
    {"GET", "/jobs/:n", EXAPI_LAT_DATA, h_job_get},
    {"GET", "/messages", EXAPI_LAT_DATA, h_messages},
    {"POST", "/messages", EXAPI_LAT_DATA, h_message_create},
    {"GET", "/conversations", EXAPI_LAT_DATA, h_conversations},
    {"GET", "/notifications", EXAPI_LAT_DATA, h_notifications},
    {"GET", "/categories", EXAPI_LAT_DATA, h_categories},
    {"GET", "/locations", EXAPI_LAT_DATA, h_locations},
};

#define EXAPI_NROUTES (sizeof EXAPI_ROUTES / sizeof EXAPI_ROUTES[0])

static void h_index(struct exapi_call *c)
{
    struct exapi_sb *b = &c->rp->body;
    sb_puts(b, "{\"name\":\"example-api\",\"routes\":[");
    for (size_t i = 0; i < EXAPI_NROUTES; i++)
        sb_printf(b, "%s\"%s %s\"", i ? "," : "", EXAPI_ROUTES[i].method, EXAPI_ROUTES[i].pattern);
    sb_puts(b, ",\"* /echo\",\"GET /__stats\",\"POST /__reset\"]}");
    reply_ok(c, EXAPI_CC_PUBLIC, c->app->started);
}

static bool exapi_match(const char *pat, const char *path, size_t plen, long *param)
{
    size_t i = 0;
    const char *p = pat;
    while (*p) {
        if (p[0] == ':') {
            size_t start = i;
            long v = 0;
            p += 2;
            while (i < plen && path[i] >= '0' && path[i] <= '9') {
                if (i - start >= 15)
                    return false;
                v = v * 10 + (path[i] - '0');
                i++;
            }
            if (i == start)
                return false;
            *param = v;
            continue;
        }
        if (i >= plen || path[i] != *p)
            return false;
        i++;
        p++;
    }
    return i == plen;
}

static bool exapi_method_ok(const char *route_method, const char *method)
{
    return route_method[0] == '*' || strcmp(route_method, method) == 0 ||
           (strcmp(route_method, "GET") == 0 && strcmp(method, "HEAD") == 0);
}

/* Does If-None-Match list etag (weak comparison, as RFC 9110 asks for If-None-Match)? */
static bool exapi_inm_matches(struct MHD_Connection *conn, const char *etag)
{
    const char *p = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "If-None-Match");
    if (!p)
        return false;
    if (strncmp(etag, "W/", 2) == 0)
        etag += 2;
    size_t elen = strlen(etag);
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        if (*p == '*')
            return true;
        if (strncmp(p, "W/", 2) == 0)
            p += 2;
        const char *start = p;
        if (*p == '"') {
            p++;
            while (*p && *p != '"')
                p++;
            if (*p == '"')
                p++;
        } else {
            while (*p && *p != ',' && *p != ' ')
                p++;
        }
        if ((size_t)(p - start) == elen && memcmp(start, etag, elen) == 0)
            return true;
        if (p == start)
            p++;
    }
    return false;
}

static enum MHD_Result exapi_queue_static(struct MHD_Connection *conn, unsigned status,
                                          const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", EXAPI_CT_JSON);
    MHD_add_response_header(r, "Cache-Control", EXAPI_CC_NO_STORE);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result exapi_send(struct exapi_call *c)
{
    struct exapi_reply *rp = c->rp;
    struct MHD_Response *resp = rp->resp;
    char lm[40] = "";

    if (rp->body.oom) {
        free(rp->body.p);
        if (resp && !rp->resp_shared)
            MHD_destroy_response(resp);
        return exapi_queue_static(c->conn, 500, "{\"error\":\"out of memory\"}");
    }
    if (!resp) {
        if (rp->status == 204 || rp->status == 304) {
            free(rp->body.p);
            rp->body = (struct exapi_sb){0};
        }
        if (rp->validators && rp->status == 200)
            exapi_etag(exapi_fnv1a(rp->body.p ? rp->body.p : "", rp->body.len, EXAPI_FNV_BASIS),
                       rp->etag);
        if (rp->body.len)
            resp = MHD_create_response_from_buffer(rp->body.len, rp->body.p,
                                                   MHD_RESPMEM_MUST_FREE);
        else
            resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp || !rp->body.len)
            free(rp->body.p);
        rp->body.p = NULL;
        if (!resp)
            return MHD_NO;
    }
    if (rp->validators)
        exapi_fmt_http(rp->mtime, lm);

    if (rp->etag[0] && rp->status == 200 && exapi_inm_matches(c->conn, rp->etag)) {
        if (!rp->resp_shared)
            MHD_destroy_response(resp);
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        /* libmicrohttpd 0.9.75 adds "Content-Length: 0" to a 304 and cannot be talked out
         * of it (an explicit Content-Length is sent in addition, not instead). */
        rp->status = 304;
        rp->resp_shared = rp->resp_done = false;
        rp->ctype = NULL;
        rp->location[0] = rp->total[0] = '\0';
    }
    if (!rp->resp_done) {
        if (rp->ctype && rp->status != 204 && rp->status != 304)
            MHD_add_response_header(resp, "Content-Type", rp->ctype);
        if (rp->cache)
            MHD_add_response_header(resp, "Cache-Control", rp->cache);
        if (rp->vary)
            MHD_add_response_header(resp, "Vary", rp->vary);
        if (rp->etag[0])
            MHD_add_response_header(resp, "ETag", rp->etag);
        if (lm[0])
            MHD_add_response_header(resp, "Last-Modified", lm);
        if (rp->location[0])
            MHD_add_response_header(resp, "Location", rp->location);
        if (rp->total[0])
            MHD_add_response_header(resp, "X-Total-Count", rp->total);
        if (rp->allow[0])
            MHD_add_response_header(resp, "Allow", rp->allow);
    }
    enum MHD_Result ret = MHD_queue_response(c->conn, rp->status, resp);
    if (!rp->resp_shared)
        MHD_destroy_response(resp);
    return ret;
}

/* Sleeps to an absolute monotonic deadline in slices, so a stopping server does not wait out
 * a long simulated delay and repeated slices do not accumulate drift. */
static void exapi_sleep_ms(struct exapi *app, long ms)
{
    struct timespec deadline, now, step;
    if (ms <= 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    while (!atomic_load(&app->stopping)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > deadline.tv_sec ||
            (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec))
            return;
        step = now;
        step.tv_nsec += 100000000L;
        if (step.tv_nsec >= 1000000000L) {
            step.tv_sec++;
            step.tv_nsec -= 1000000000L;
        }
        if (step.tv_sec > deadline.tv_sec ||
            (step.tv_sec == deadline.tv_sec && step.tv_nsec > deadline.tv_nsec))
            step = deadline;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &step, NULL);
    }
}

/* The delay of this request: ?delay_ms= or X-Delay-Ms override the route's latency. */
static int exapi_delay(struct exapi_call *c, enum exapi_latency lat, long *out)
{
    const char *v = MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, "delay_ms");
    if (!v)
        v = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "X-Delay-Ms");
    if (v)
        return exapi_parse_long(v, 0, EXAPI_MAX_DELAY_MS, out);
    switch (lat) {
    case EXAPI_LAT_DATA: *out = c->app->opts.latency_ms; break;
    case EXAPI_LAT_FEED: *out = c->app->opts.feed_latency_ms; break;
    case EXAPI_LAT_SLOW: *out = 500; break;
    default: *out = 0; break;
    }
    return 0;
}

static bool exapi_is_admin_path(const char *url)
{
    return strcmp(url, "/__stats") == 0 || strcmp(url, "/__reset") == 0;
}

static enum MHD_Result exapi_dispatch(struct exapi *app, struct MHD_Connection *conn,
                                      struct exapi_req *rq, const char *url, const char *method)
{
    struct exapi_reply rp = {.status = 200, .ctype = EXAPI_CT_JSON};
    struct exapi_call c = {app, conn, rq, method, url, 0, time(NULL), &rp};
    size_t plen = strlen(url);
    bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    const struct exapi_route *hit = NULL;
    enum exapi_latency lat = EXAPI_LAT_NONE;
    void (*fn)(struct exapi_call *) = NULL;
    long delay;

    /* The two admin routes are not counted, so tests can read and reset without noise. */
    if (strcmp(url, "/__stats") == 0 || strcmp(url, "/__reset") == 0) {
        bool stats = url[3] == 's';
        if (stats ? is_get : strcmp(method, "POST") == 0) {
            (stats ? h_stats : h_reset)(&c);
        } else {
            snprintf(rp.allow, sizeof rp.allow, "%s", stats ? "GET, HEAD" : "POST");
            reply_error(&c, 405, "method not allowed");
        }
        return exapi_send(&c);
    }
    stats_count(&app->stats, url);

    if (rq->fail) {
        reply_error(&c, rq->fail, rq->fail == 413 ? "body too large" : "out of memory");
        return exapi_send(&c);
    }
    if (plen > 1 && url[plen - 1] == '/')
        plen--;
    if (plen >= 5 && strncmp(url, "/echo", 5) == 0 && (plen == 5 || url[5] == '/')) {
        fn = h_echo;
    } else {
        for (size_t i = 0; i < EXAPI_NROUTES; i++) {
            const struct exapi_route *r = &EXAPI_ROUTES[i];
            if (!exapi_match(r->pattern, url, plen, &c.param))
                continue;
            if (exapi_method_ok(r->method, method)) {
                hit = r;
                rp.allow[0] = '\0';
                break;
            }
            size_t al = strlen(rp.allow);
            snprintf(rp.allow + al, sizeof rp.allow - al, "%s%s", al ? ", " : "", r->method);
        }
        if (!hit) {
            if (rp.allow[0])
                reply_error(&c, 405, "method not allowed");
            else
                reply_error(&c, 404, "not found");
            return exapi_send(&c);
        }
        fn = hit->fn;
        lat = hit->latency;
    }
    if (exapi_delay(&c, lat, &delay)) {
        reply_error(&c, 400, "bad delay_ms");
        return exapi_send(&c);
    }
    exapi_sleep_ms(app, delay);
    fn(&c);
    return exapi_send(&c);
}

/* ---------------------------------------------------------------------------------------------
 * libmicrohttpd callbacks.
 */

/* Called once per request with the raw URI, before libmicrohttpd splits and decodes the query:
 * the only place the query string is seen exactly as sent (for /echo). */
static void *exapi_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct exapi_req *rq = calloc(1, sizeof *rq);
    if (!rq)
        return NULL;
    const char *q = strchr(uri, '?');
    if (q && q[1] && !(rq->query = strdup(q + 1))) {
        free(rq);
        return NULL;
    }
    return rq;
}

static void exapi_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                               enum MHD_RequestTerminationCode toe)
{
    struct exapi_req *rq = *con_cls;
    if (!rq)
        return;
    free(rq->query);
    free(rq->body);
    free(rq);
    *con_cls = NULL;
}

static enum MHD_Result exapi_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                        const char *method, const char *version,
                                        const char *upload_data, size_t *upload_data_size,
                                        void **con_cls)
{
    struct exapi *app = cls;
    struct exapi_req *rq = *con_cls;

    if (!rq)
        return exapi_queue_static(conn, 500, "{\"error\":\"out of memory\"}");
    /* Never answer on the first call: libmicrohttpd 0.9.75 then closes the connection
     * instead of keeping it alive. */
    if (!rq->started) {
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        long n;
        rq->started = true;
        if (cl && exapi_parse_long(cl, 0, LONG_MAX, &n) == 0) {
            if (n > EXAPI_MAX_BODY) {
                /* Refuse before reading it; closing this connection is the price. */
                if (!exapi_is_admin_path(url))
                    stats_count(&app->stats, url);
                return exapi_queue_static(conn, 413, "{\"error\":\"body too large\"}");
            }
            if (n > 0 && (rq->body = malloc((size_t)n + 1)))
                rq->body_cap = (size_t)n + 1;
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->fail)
            return MHD_YES;
        if (rq->body_len + n > (size_t)EXAPI_MAX_BODY) {
            rq->fail = 413;
        } else if (rq->body_len + n + 1 > rq->body_cap) {
            size_t cap = rq->body_cap ? rq->body_cap : 4096;
            while (cap < rq->body_len + n + 1)
                cap *= 2;
            char *p = realloc(rq->body, cap);
            if (!p) {
                rq->fail = 500;
            } else {
                rq->body = p;
                rq->body_cap = cap;
            }
        }
        if (rq->fail) {
            free(rq->body);
            rq->body = NULL;
            rq->body_len = rq->body_cap = 0;
            return MHD_YES;
        }
        memcpy(rq->body + rq->body_len, upload_data, n);
        rq->body_len += n;
        rq->body[rq->body_len] = '\0';
        return MHD_YES;
    }
    if (rq->body && rq->body_len == 0) {
        free(rq->body);
        rq->body = NULL;
        rq->body_cap = 0;
    }
    return exapi_dispatch(app, conn, rq, url, method);
}

/* ---------------------------------------------------------------------------------------------
 * Start-up.
 */

static void exapi_usage(FILE *f)
{
    fputs("usage: example-api [options]\n"
          "  --port N             listen port (default 3000, env PORT; 0 = any free port)\n"
          "  --host ADDR          listen address (default 127.0.0.1)\n"
          "  --latency-ms N       simulated DB latency of data routes (default 50,\n"
          "                       env EXAMPLE_LATENCY_MS)\n"
          "  --feed-latency-ms N  latency of /feed (default 200, env EXAMPLE_FEED_LATENCY_MS)\n"
          "  --idle-timeout N     close idle keep-alive connections after N s (default 120,\n"
          "                       0 = never)\n"
          "  --help               this text\n"
          "Any request may override its latency with ?delay_ms=N or header X-Delay-Ms: N.\n",
          f);
}

/* Returns 0 to run, 1 after --help, -1 on a bad command line (already reported). */
static int exapi_parse_args(int argc, char **argv, struct exapi_opts *o)
{
    static const struct {
        const char *flag, *env;
        size_t off;
        long max;
    } nums[] = {
        {"--port", "PORT", offsetof(struct exapi_opts, port), 65535},
        {"--latency-ms", "EXAMPLE_LATENCY_MS", offsetof(struct exapi_opts, latency_ms),
         EXAPI_MAX_DELAY_MS},
        {"--feed-latency-ms", "EXAMPLE_FEED_LATENCY_MS",
         offsetof(struct exapi_opts, feed_latency_ms), EXAPI_MAX_DELAY_MS},
        {"--idle-timeout", NULL, offsetof(struct exapi_opts, idle_timeout_s), 86400},
    };
    const size_t nnums = sizeof nums / sizeof nums[0];

    *o = (struct exapi_opts){"127.0.0.1", 3000, 50, 200, 120};
    for (size_t k = 0; k < nnums; k++) {
        const char *v = nums[k].env ? getenv(nums[k].env) : NULL;
        if (v && *v && exapi_parse_long(v, 0, nums[k].max, (long *)((char *)o + nums[k].off))) {
            fprintf(stderr, "example-api: bad value for %s: '%s'\n", nums[k].env, v);
            return -1;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            exapi_usage(stdout);
            return 1;
        }
        const char *eq = strchr(arg, '=');
        size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
        bool known = false;
        for (size_t k = 0; k < nnums + 1 && !known; k++) {
            const char *flag = k < nnums ? nums[k].flag : "--host";
            if (strlen(flag) != nlen || strncmp(arg, flag, nlen) != 0)
                continue;
            known = true;
            if (eq) {
                val = eq + 1;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                fprintf(stderr, "example-api: %s needs a value\n", flag);
                return -1;
            }
            if (k == nnums) {
                if (!*val) {
                    fprintf(stderr, "example-api: --host needs a value\n");
                    return -1;
                }
                o->host = val;
            } else if (exapi_parse_long(val, 0, nums[k].max,
                                        (long *)((char *)o + nums[k].off))) {
                fprintf(stderr, "example-api: bad value for %s: '%s'\n", flag, val);
                return -1;
            }
        }
        if (!known) {
            fprintf(stderr, "example-api: unknown option '%s' (try --help)\n", arg);
            return -1;
        }
    }
    return 0;
}

static int exapi_resolve(const char *host, long port, struct sockaddr_storage *ss)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char service[8];
    snprintf(service, sizeof service, "%ld", port);
    if (getaddrinfo(host, service, &hints, &res) != 0 || !res)
        return -1;
    memset(ss, 0, sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* Thousands of concurrent connections each need a descriptor. */
static void exapi_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int exapi_init(struct exapi *app, const struct exapi_opts *opts, time_t now)
{
    static const char fast_body[] = "{\"ok\":true}";
    pthread_rwlockattr_t attr;
    char lm[40];

    app->opts = *opts;
    app->started = now;
    atomic_init(&app->stopping, false);
    atomic_init(&app->stats.requests, 0);
    atomic_init(&app->stats.distinct, 0);
    atomic_init(&app->stats.other, 0);
    for (int s = 0; s < EXAPI_PATH_SHARDS; s++)
        pthread_mutex_init(&app->stats.shards[s].mu, NULL);
    /* Readers vastly outnumber writers under load; without writer preference a write
     * benchmark mixed with reads could wait indefinitely. */
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&app->db.lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (db_seed(&app->db, now))
        return -1;

    app->pattern = malloc(EXAPI_PATTERN_LEN + 26);
    if (!app->pattern)
        return -1;
    for (long i = 0; i < EXAPI_PATTERN_LEN + 26; i++)
        app->pattern[i] = (char)('a' + i % 26);

    app->fast = MHD_create_response_from_buffer(sizeof fast_body - 1, (void *)fast_body,
                                                MHD_RESPMEM_PERSISTENT);
    if (!app->fast)
        return -1;
    exapi_etag(exapi_fnv1a(fast_body, sizeof fast_body - 1, EXAPI_FNV_BASIS), app->fast_etag);
    exapi_fmt_http(now, lm);
    MHD_add_response_header(app->fast, "Content-Type", EXAPI_CT_JSON);
    MHD_add_response_header(app->fast, "Cache-Control", EXAPI_CC_PUBLIC);
    MHD_add_response_header(app->fast, "ETag", app->fast_etag);
    MHD_add_response_header(app->fast, "Last-Modified", lm);
    return 0;
}

static void exapi_fini(struct exapi *app)
{
    if (app->fast)
        MHD_destroy_response(app->fast);
    free(app->pattern);
    db_clear(&app->db);
    pthread_rwlock_destroy(&app->db.lock);
    stats_reset(&app->stats);
    for (int s = 0; s < EXAPI_PATH_SHARDS; s++)
        pthread_mutex_destroy(&app->stats.shards[s].mu);
}

int main(int argc, char **argv)
{
    struct exapi_opts opts;
    struct sockaddr_storage ss;
    sigset_t sigs;
    int sig, rc;

    /* Signals are taken synchronously by the main thread.  Blocking them first thing means
     * every thread started later (libmicrohttpd's) inherits the mask and none is ever
     * interrupted, and a SIGTERM that arrives during start-up waits for sigwait(). */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = exapi_parse_args(argc, argv, &opts);
    if (rc)
        return rc > 0 ? 0 : 2;
    if (exapi_resolve(opts.host, opts.port, &ss)) {
        fprintf(stderr, "example-api: cannot resolve --host '%s'\n", opts.host);
        return 2;
    }
    exapi_raise_nofile();

    struct exapi *app = calloc(1, sizeof *app);
    if (!app || exapi_init(app, &opts, time(NULL))) {
        fprintf(stderr, "example-api: out of memory at start-up\n");
        return 1;
    }

    /* Thread per connection, so a simulated delay blocks nobody else; poll() rather than
     * select() so descriptors above FD_SETSIZE work at thousands of connections. */
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)opts.port, NULL, NULL, exapi_on_request, app, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)10000,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opts.idle_timeout_s,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096, MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)(256 * 1024), MHD_OPTION_URI_LOG_CALLBACK, exapi_on_uri, app,
        MHD_OPTION_NOTIFY_COMPLETED, exapi_on_completed, app,
        /* Room for the gateway's largest request head (16 KiB of fields by default). */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "example-api: cannot listen on %s:%ld: %s\n", opts.host, opts.port,
                errno ? strerror(errno) : "libmicrohttpd failed to start");
        exapi_fini(app);
        free(app);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info && info->port ? info->port : (unsigned)opts.port;
    bool v6 = strchr(opts.host, ':') != NULL;
    fprintf(stderr, "example-api listening on http://%s%s%s:%u\n", v6 ? "[" : "", opts.host,
            v6 ? "]" : "", port);

    while (sigwait(&sigs, &sig) != 0)
        ;
    atomic_store(&app->stopping, true);
    MHD_stop_daemon(d);
    exapi_fini(app);
    free(app);
    return 0;
}
