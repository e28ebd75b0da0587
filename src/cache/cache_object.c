/* cache_object.c - see cache_object.h. */
#include "cache_object.h"

#include <errno.h>
#include <stdbool.h>
#include <stdalign.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/*
 * Memory layout of one object (a single malloc block; charge is its size):
 *
 *   struct cache_object
 *   padding to alignof(struct http_header)
 *   struct http_header[n_headers]
 *   "name\0value\0" for every header, in order
 *   key bytes, '\0'
 *   body bytes, '\0'   (the terminator is never part of body_len; it only makes a
 *                       stray string read of a text body stop inside the block)
 *
 * Wire format, version 1 (all integers little-endian, fixed width):
 *
 *   off  size  field
 *    0    4    magic "CGWO"
 *    4    1    version (1)
 *    5    2    status (100..999)
 *    7    8    stored_at_ms   (i64)
 *   15    8    initial_age_s  (i64)
 *   23    8    ttl_ms         (i64)
 *   31    8    swr_ms         (i64)
 *   39    8    sie_ms         (i64)
 *   47    8    gen            (u64)
 *   55    4    n_headers      (u32, <= CACHE_OBJECT_MAX_HEADERS)
 *   59    4    key_len        (u32)
 *   63    8    body_len       (u64)
 *   71         key bytes
 *              per header: u32 name_len, u32 value_len, name bytes, value bytes
 *              body bytes, then nothing: trailing bytes are an error.
 *
 * Build and decode enforce the same validity rules (see object_meta_ok and the
 * header checks), so every object that exists can be encoded and decoded again.
 */

#define WIRE_MAGIC "CGWO"
#define WIRE_VERSION 1
#define WIRE_FIXED_LEN 71
#define WIRE_HEADER_PREFIX_LEN 8

/* Largest accepted time or duration in milliseconds (about 142,000 years).  The
 * bound keeps every sum in the age and expiry arithmetic far from int64 overflow. */
#define MAX_TIME_MS ((int64_t)1 << 52)
/* RFC 9111 §1.2.2: a delta-seconds value too large to represent is sent as 2^31. */
#define MAX_INITIAL_AGE_S ((int64_t)1 << 31)

struct layout {
    size_t headers_off;
    size_t strings_off;
    size_t key_off;
    size_t body_off;
    size_t total;
};

static int size_add(size_t *acc, size_t n)
{
    if (n > SIZE_MAX - *acc) return -1;
    *acc += n;
    return 0;
}

/* Computes where each part lives; strings_len is the sum over headers of
 * name_len + 1 + value_len + 1.  Returns -1 if the total would not fit a size_t. */
static int layout_compute(size_t n_headers, size_t strings_len, size_t key_len, size_t body_len,
                          struct layout *l)
{
    size_t align = alignof(struct http_header);
    size_t pos = (sizeof(struct cache_object) + align - 1) / align * align;
    l->headers_off = pos;
    if (n_headers > (SIZE_MAX - pos) / sizeof(struct http_header)) return -1;
    pos += n_headers * sizeof(struct http_header);
    l->strings_off = pos;
    if (size_add(&pos, strings_len) != 0) return -1;
    l->key_off = pos;
    if (size_add(&pos, key_len) != 0 || size_add(&pos, 1) != 0) return -1;
    l->body_off = pos;
    if (size_add(&pos, body_len) != 0 || size_add(&pos, 1) != 0) return -1;
    l->total = pos;
    return 0;
}

static int is_tchar(unsigned char c)
{
    /* RFC 9110 §5.6.2 token characters. */
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int header_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > UINT32_MAX) return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)name[i])) return 0;
    return 1;
}

/* Values are re-emitted into responses, so CR/LF (response splitting) and NUL
 * (truncation by C string APIs) are refused. */
static int header_value_ok(const char *value, size_t len)
{
    if (len > UINT32_MAX) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = value[i];
        if (c == '\0' || c == '\r' || c == '\n') return 0;
    }
    return 1;
}

/* Internal metadata travels as reserved "x-cachegw-" fields (cache_key.h). */
static const char *const FIELD_NAMES[CACHE_FIELD__COUNT] = {
    [CACHE_FIELD_VARY] = "x-cachegw-vary",
    [CACHE_FIELD_TAGS] = "x-cachegw-tags",
    [CACHE_FIELD_CC] = "x-cachegw-cc",
    [CACHE_FIELD_ENCODINGS] = "x-cachegw-enc",
};

static int is_internal(const char *name, size_t len)
{
    return len >= 10 && strncasecmp(name, "x-cachegw-", 10) == 0;
}

/* Points obj->fields at the internal fields' values. */
static void index_fields(struct cache_object *obj)
{
    for (size_t i = obj->n_headers; i < obj->n_headers + obj->n_internal; i++)
        for (int f = 0; f < CACHE_FIELD__COUNT; f++)
            if (obj->fields[f] == NULL && strcmp(obj->headers[i].name, FIELD_NAMES[f]) == 0)
                obj->fields[f] = obj->headers[i].value;
}

static int object_meta_ok(int status, const struct cache_meta *m)
{
    if (status < 100 || status > 999) return 0;
    if (m->stored_at_ms < 0 || m->stored_at_ms > MAX_TIME_MS) return 0;
    if (m->initial_age_s < 0 || m->initial_age_s > MAX_INITIAL_AGE_S) return 0;
    if (m->ttl_ms < 0 || m->ttl_ms > MAX_TIME_MS) return 0;
    if (m->swr_ms < 0 || m->swr_ms > MAX_TIME_MS) return 0;
    if (m->sie_ms < 0 || m->sie_ms > MAX_TIME_MS) return 0;
    return 1;
}

/* Entries with validators outlive their windows so a stale copy can be
 * revalidated (a 304 costs far less than a full body). */
static void set_keep(struct cache_object *obj)
{
    obj->keep_ms = 0;
    /* A Vary marker ("x-cachegw-vary", cache_rules.h) must outlive every variant it
     * leads to, or a stale variant could no longer be found to be revalidated: it is
     * kept as long as the longest variant retention below (a marker is a few bytes). */
    if (cache_object_field(obj, CACHE_FIELD_VARY) != NULL) {
        obj->keep_ms = 86400000;
        return;
    }
    if (cache_object_header(obj, "etag") == NULL && cache_object_header(obj, "last-modified") == NULL)
        return;
    int64_t keep = obj->meta.ttl_ms;
    if (keep < 60000) keep = 60000;
    if (keep > 86400000) keep = 86400000;
    obj->keep_ms = keep;
}

static struct cache_object *object_alloc(const struct layout *l, int status, size_t n_headers,
                                         size_t key_len, size_t body_len,
                                         const struct cache_meta *meta)
{
    char *base = malloc(l->total);
    if (base == NULL) return NULL;
    struct cache_object *obj = (struct cache_object *)base;
    atomic_init(&obj->refs, 1);
    obj->status = status;
    obj->meta = *meta;
    obj->n_headers = n_headers;
    obj->n_internal = 0;
    for (int f = 0; f < CACHE_FIELD__COUNT; f++) obj->fields[f] = NULL;
    obj->headers = (struct http_header *)(base + l->headers_off);
    obj->key = base + l->key_off;
    obj->key_len = key_len;
    obj->body = base + l->body_off;
    obj->body_len = body_len;
    obj->charge = l->total;
    atomic_flag_clear(&obj->attach_busy);
    obj->attach = NULL;
    obj->attach_free = NULL;
    obj->attach_sec = -1;
    obj->attach_hits = 0;
    return obj;
}

/* Copies n bytes to *cursor, NUL-terminates, advances the cursor and returns
 * where the copy starts. */
static const char *copy_str(char **cursor, const char *s, size_t n, int lower)
{
    char *dst = *cursor;
    if (n > 0) memcpy(dst, s, n);
    if (lower) {
        for (size_t i = 0; i < n; i++)
            if (dst[i] >= 'A' && dst[i] <= 'Z') dst[i] = (char)(dst[i] - 'A' + 'a');
    }
    dst[n] = '\0';
    *cursor = dst + n + 1;
    return dst;
}

struct cache_object *cache_object_build(const char *key, size_t key_len, int status,
                                        const struct http_header *headers, size_t n_headers,
                                        const char *body, size_t body_len,
                                        const struct cache_meta *meta)
{
    if (meta == NULL || !object_meta_ok(status, meta)) return NULL;
    if ((key == NULL && key_len > 0) || key_len > UINT32_MAX) return NULL;
    if (body == NULL && body_len > 0) return NULL;
    if ((headers == NULL && n_headers > 0) || n_headers > CACHE_OBJECT_MAX_HEADERS) return NULL;

    size_t strings_len = 0;
    for (size_t i = 0; i < n_headers; i++) {
        if (headers[i].name == NULL || headers[i].value == NULL) return NULL;
        size_t nl = strlen(headers[i].name);
        size_t vl = strlen(headers[i].value);
        if (!header_name_ok(headers[i].name, nl) || !header_value_ok(headers[i].value, vl))
            return NULL;
        if (size_add(&strings_len, nl) != 0 || size_add(&strings_len, vl) != 0 ||
            size_add(&strings_len, 2) != 0)
            return NULL;
    }

    struct layout l;
    if (layout_compute(n_headers, strings_len, key_len, body_len, &l) != 0) return NULL;
    struct cache_object *obj = object_alloc(&l, status, n_headers, key_len, body_len, meta);
    if (obj == NULL) return NULL;

    char *base = (char *)obj;
    char *cursor = base + l.strings_off;
    /* The response's fields first, then the internal ones (typed metadata). */
    size_t k = 0;
    for (int internal = 0; internal < 2; internal++)
        for (size_t i = 0; i < n_headers; i++) {
            size_t nl = strlen(headers[i].name);
            if (is_internal(headers[i].name, nl) != internal) continue;
            obj->headers[k].name = copy_str(&cursor, headers[i].name, nl, 1);
            obj->headers[k].value =
                copy_str(&cursor, headers[i].value, strlen(headers[i].value), 0);
            k++;
            if (internal) obj->n_internal++;
        }
    obj->n_headers = n_headers - obj->n_internal;
    index_fields(obj);
    cursor = base + l.key_off;
    copy_str(&cursor, key, key_len, 0);
    cursor = base + l.body_off;
    copy_str(&cursor, body, body_len, 0);
    set_keep(obj);
    return obj;
}

struct cache_object *cache_object_ref(struct cache_object *obj)
{
    /* Relaxed is enough: the caller already holds a reference, so the object
     * cannot be freed concurrently, and nothing is published by the increment. */
    if (obj != NULL) atomic_fetch_add_explicit(&obj->refs, 1, memory_order_relaxed);
    return obj;
}

void cache_object_unref(struct cache_object *obj)
{
    if (obj == NULL) return;
    /* acq_rel: the release half orders this thread's reads of the object before
     * the decrement; the acquire half makes every other thread's reads happen
     * before the free performed by whoever drops the last reference. */
    if (atomic_fetch_sub_explicit(&obj->refs, 1, memory_order_acq_rel) == 1) {
        if (obj->attach != NULL && obj->attach_free != NULL) obj->attach_free(obj->attach);
        free(obj);
    }
}

void cache_object_attach_lock(struct cache_object *obj)
{
    while (atomic_flag_test_and_set_explicit(&obj->attach_busy, memory_order_acquire))
        sched_yield();
}

void cache_object_attach_unlock(struct cache_object *obj)
{
    atomic_flag_clear_explicit(&obj->attach_busy, memory_order_release);
}

static int ascii_lower(int c) { return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c; }

const char *cache_object_field(const struct cache_object *obj, enum cache_field f)
{
    return obj != NULL && f >= 0 && f < CACHE_FIELD__COUNT ? obj->fields[f] : NULL;
}

const char *cache_object_header(const struct cache_object *obj, const char *name)
{
    if (obj == NULL || name == NULL) return NULL;
    bool internal = is_internal(name, strlen(name));
    size_t from = internal ? obj->n_headers : 0;
    size_t to = internal ? obj->n_headers + obj->n_internal : obj->n_headers;
    for (size_t i = from; i < to; i++) {
        /* Stored names are already lower-case; only the query needs folding.  The
         * comparison is ASCII-only on purpose, independent of the C locale. */
        const char *a = obj->headers[i].name;
        const char *b = name;
        while (*a != '\0' && *a == ascii_lower((unsigned char)*b)) {
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0') return obj->headers[i].value;
    }
    return NULL;
}

/* Resident time: now - stored_at, never negative.  A negative difference means
 * the storing instance's clock was ahead of ours; RFC 9111 clamps such apparent
 * ages to zero, and so do we.  The subtraction saturates instead of overflowing
 * for absurd now_ms values. */
static int64_t resident_ms(const struct cache_object *obj, int64_t now_ms)
{
    int64_t d;
    if (__builtin_sub_overflow(now_ms, obj->meta.stored_at_ms, &d))
        return now_ms < 0 ? 0 : INT64_MAX;
    return d < 0 ? 0 : d;
}

/* Current age in milliseconds, saturating at INT64_MAX. */
static int64_t age_ms(const struct cache_object *obj, int64_t now_ms)
{
    int64_t r = resident_ms(obj, now_ms);
    int64_t initial = obj->meta.initial_age_s * 1000; /* <= 2^31 * 1000: fits */
    return r > INT64_MAX - initial ? INT64_MAX : r + initial;
}

int64_t cache_object_age_s(const struct cache_object *obj, int64_t now_ms)
{
    int64_t r = resident_ms(obj, now_ms) / 1000;
    return r > INT64_MAX - obj->meta.initial_age_s ? INT64_MAX : r + obj->meta.initial_age_s;
}

int cache_object_is_fresh(const struct cache_object *obj, int64_t now_ms)
{
    return age_ms(obj, now_ms) < obj->meta.ttl_ms;
}

int cache_object_in_swr(const struct cache_object *obj, int64_t now_ms)
{
    int64_t age = age_ms(obj, now_ms);
    return age >= obj->meta.ttl_ms && age < obj->meta.ttl_ms + obj->meta.swr_ms;
}

int cache_object_in_sie(const struct cache_object *obj, int64_t now_ms)
{
    int64_t age = age_ms(obj, now_ms);
    return age >= obj->meta.ttl_ms && age < obj->meta.ttl_ms + obj->meta.sie_ms;
}

int64_t cache_object_expires_at_ms(const struct cache_object *obj)
{
    const struct cache_meta *m = &obj->meta;
    int64_t window = m->swr_ms > m->sie_ms ? m->swr_ms : m->sie_ms;
    /* Every term is bounded by object_meta_ok, so this cannot overflow. */
    if (obj->keep_ms > window) window = obj->keep_ms;
    return m->stored_at_ms - m->initial_age_s * 1000 + m->ttl_ms + window;
}

/* ---- wire format ---------------------------------------------------------- */

static unsigned char *put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static unsigned char *put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
    return p + 4;
}

static unsigned char *put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
    return p + 8;
}

static unsigned char *put_bytes(unsigned char *p, const void *s, size_t n)
{
    if (n > 0) memcpy(p, s, n);
    return p + n;
}

static uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int cache_object_encode(const struct cache_object *obj, char **out, size_t *out_len)
{
    if (obj == NULL || out == NULL || out_len == NULL) return -EINVAL;

    /* The object lives in one allocation of obj->charge bytes, and the encoding
     * is never larger than the strings it holds plus small fixed parts, so these
     * sums cannot overflow; check anyway so the code does not depend on it. */
    size_t len = WIRE_FIXED_LEN;
    if (size_add(&len, obj->key_len) != 0 || size_add(&len, obj->body_len) != 0) return -ENOMEM;
    size_t n_all = obj->n_headers + obj->n_internal; /* internal fields travel as fields */
    for (size_t i = 0; i < n_all; i++) {
        size_t n = WIRE_HEADER_PREFIX_LEN + strlen(obj->headers[i].name) +
                   strlen(obj->headers[i].value);
        if (size_add(&len, n) != 0) return -ENOMEM;
    }

    unsigned char *buf = malloc(len);
    if (buf == NULL) return -ENOMEM;
    const struct cache_meta *m = &obj->meta;
    unsigned char *p = put_bytes(buf, WIRE_MAGIC, 4);
    *p++ = WIRE_VERSION;
    p = put_u16(p, (uint16_t)obj->status);
    p = put_u64(p, (uint64_t)m->stored_at_ms);
    p = put_u64(p, (uint64_t)m->initial_age_s);
    p = put_u64(p, (uint64_t)m->ttl_ms);
    p = put_u64(p, (uint64_t)m->swr_ms);
    p = put_u64(p, (uint64_t)m->sie_ms);
    p = put_u64(p, m->gen);
    p = put_u32(p, (uint32_t)n_all);
    p = put_u32(p, (uint32_t)obj->key_len);
    p = put_u64(p, (uint64_t)obj->body_len);
    p = put_bytes(p, obj->key, obj->key_len);
    for (size_t i = 0; i < n_all; i++) {
        size_t nl = strlen(obj->headers[i].name);
        size_t vl = strlen(obj->headers[i].value);
        p = put_u32(p, (uint32_t)nl);
        p = put_u32(p, (uint32_t)vl);
        p = put_bytes(p, obj->headers[i].name, nl);
        p = put_bytes(p, obj->headers[i].value, vl);
    }
    p = put_bytes(p, obj->body, obj->body_len);

    *out = (char *)buf;
    *out_len = (size_t)(p - buf);
    return 0;
}

int cache_object_decode(const char *buf, size_t len, struct cache_object **out)
{
    if (out == NULL) return -EINVAL;
    *out = NULL;
    if (buf == NULL || len < WIRE_FIXED_LEN) return -EINVAL;

    const unsigned char *b = (const unsigned char *)buf;
    if (memcmp(b, WIRE_MAGIC, 4) != 0 || b[4] != WIRE_VERSION) return -EINVAL;

    int status = get_u16(b + 5);
    struct cache_meta meta = {
        .stored_at_ms = (int64_t)get_u64(b + 7),
        .initial_age_s = (int64_t)get_u64(b + 15),
        .ttl_ms = (int64_t)get_u64(b + 23),
        .swr_ms = (int64_t)get_u64(b + 31),
        .sie_ms = (int64_t)get_u64(b + 39),
        .gen = get_u64(b + 47),
    };
    uint32_t n_headers = get_u32(b + 55);
    uint32_t key_len = get_u32(b + 59);
    uint64_t body_len = get_u64(b + 63);
    if (!object_meta_ok(status, &meta) || n_headers > CACHE_OBJECT_MAX_HEADERS) return -EINVAL;

    /* Pass 1: validate every length against what remains (pos <= len always
     * holds, so len - pos cannot wrap) and size the string area. */
    size_t pos = WIRE_FIXED_LEN;
    if (key_len > len - pos) return -EINVAL;
    size_t key_pos = pos;
    pos += key_len;
    size_t headers_pos = pos;
    size_t strings_len = 0;
    for (uint32_t i = 0; i < n_headers; i++) {
        if (len - pos < WIRE_HEADER_PREFIX_LEN) return -EINVAL;
        uint32_t nl = get_u32(b + pos);
        uint32_t vl = get_u32(b + pos + 4);
        pos += WIRE_HEADER_PREFIX_LEN;
        if (nl > len - pos) return -EINVAL;
        if (!header_name_ok(buf + pos, nl)) return -EINVAL;
        pos += nl;
        if (vl > len - pos) return -EINVAL;
        if (!header_value_ok(buf + pos, vl)) return -EINVAL;
        pos += vl;
        /* Every string lies inside buf, so the sum stays below len + 2 * 1024. */
        strings_len += (size_t)nl + vl + 2;
    }
    if (body_len > len - pos) return -EINVAL;
    size_t body_pos = pos;
    pos += (size_t)body_len;
    if (pos != len) return -EINVAL;

    /* Pass 2: everything has been checked; copy into a single block. */
    struct layout l;
    if (layout_compute(n_headers, strings_len, key_len, (size_t)body_len, &l) != 0) return -ENOMEM;
    struct cache_object *obj =
        object_alloc(&l, status, n_headers, key_len, (size_t)body_len, &meta);
    if (obj == NULL) return -ENOMEM;

    char *base = (char *)obj;
    char *cursor = base + l.strings_off;
    /* The response's fields first, then the internal ones, as cache_object_build. */
    size_t k = 0;
    for (int internal = 0; internal < 2; internal++) {
        pos = headers_pos;
        for (uint32_t i = 0; i < n_headers; i++) {
            uint32_t nl = get_u32(b + pos);
            uint32_t vl = get_u32(b + pos + 4);
            pos += WIRE_HEADER_PREFIX_LEN;
            if (is_internal(buf + pos, nl) != internal) {
                pos += (size_t)nl + vl;
                continue;
            }
            /* Names are lower-cased again so a value written by a foreign encoder
             * still satisfies the lower-case invariant. */
            obj->headers[k].name = copy_str(&cursor, buf + pos, nl, 1);
            pos += nl;
            obj->headers[k].value = copy_str(&cursor, buf + pos, vl, 0);
            pos += vl;
            k++;
            if (internal) obj->n_internal++;
        }
    }
    obj->n_headers = n_headers - obj->n_internal;
    index_fields(obj);
    cursor = base + l.key_off;
    copy_str(&cursor, buf + key_pos, key_len, 0);
    cursor = base + l.body_off;
    copy_str(&cursor, buf + body_pos, (size_t)body_len, 0);

    set_keep(obj);
    *out = obj;
    return 0;
}
