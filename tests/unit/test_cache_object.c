/* test_cache_object.c - building, refcounting, RFC 9111 age arithmetic and the
 * Redis wire format (round trip, truncation, corruption, hostile lengths). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache_object.h"
#include "test.h"

static const struct http_header SAMPLE_HEADERS[] = {
    {"Content-Type", "application/json"},
    {"ETag", "\"abc123\""},
    {"Cache-Control", "max-age=60, stale-while-revalidate=30"},
    {"X-Empty", ""},
};
#define N_SAMPLE (sizeof SAMPLE_HEADERS / sizeof SAMPLE_HEADERS[0])

static const struct cache_meta SAMPLE_META = {
    .stored_at_ms = 1700000000123,
    .initial_age_s = 5,
    .ttl_ms = 60000,
    .swr_ms = 30000,
    .sie_ms = 120000,
    .gen = 0x0102030405060708ull,
};

static struct cache_object *sample(void)
{
    static const char body[] = "{\"id\":1,\"name\":\"ada\"}";
    return cache_object_build("users:1", 7, 200, SAMPLE_HEADERS, N_SAMPLE, body,
                              sizeof body - 1, &SAMPLE_META);
}

static struct cache_object *with_meta(int64_t stored, int64_t initial_age_s, int64_t ttl,
                                      int64_t swr, int64_t sie)
{
    struct cache_meta m = {stored, initial_age_s, ttl, swr, sie, 0};
    return cache_object_build("k", 1, 200, NULL, 0, NULL, 0, &m);
}

static int in_block(const struct cache_object *o, const void *p, size_t n)
{
    const char *b = (const char *)o;
    const char *q = (const char *)p;
    return q >= b && q + n <= b + o->charge;
}

/* Two objects carry the same response and metadata. */
static int same_object(const struct cache_object *a, const struct cache_object *b)
{
    if (a->status != b->status || a->n_headers != b->n_headers || a->key_len != b->key_len ||
        a->body_len != b->body_len)
        return 0;
    if (memcmp(&a->meta, &b->meta, sizeof a->meta) != 0) return 0;
    if (memcmp(a->key, b->key, a->key_len) != 0 || memcmp(a->body, b->body, a->body_len) != 0)
        return 0;
    for (size_t i = 0; i < a->n_headers; i++) {
        if (strcmp(a->headers[i].name, b->headers[i].name) != 0) return 0;
        if (strcmp(a->headers[i].value, b->headers[i].value) != 0) return 0;
    }
    return 1;
}

TEST(build_copies_into_one_block)
{
    char key[] = "users:1";
    char body[] = "hello";
    char name[] = "X-Thing";
    char value[] = "v1";
    struct http_header h[] = {{name, value}};
    struct cache_object *o = cache_object_build(key, 7, 203, h, 1, body, 5, &SAMPLE_META);
    CHECK(o != NULL);
    if (o == NULL) return;
    /* Scribble over the sources: the object must hold its own copies. */
    memset(key, 'Z', 7);
    memset(body, 'Z', 5);
    memset(name, 'Z', 7);
    memset(value, 'Z', 2);
    CHECK_EQ_INT(o->status, 203);
    CHECK_EQ_INT(o->key_len, 7);
    CHECK(memcmp(o->key, "users:1", 7) == 0 && o->key[7] == '\0');
    CHECK_EQ_INT(o->body_len, 5);
    CHECK(memcmp(o->body, "hello", 5) == 0);
    CHECK_EQ_INT(o->n_headers, 1);
    CHECK_EQ_STR(o->headers[0].name, "x-thing");
    CHECK_EQ_STR(o->headers[0].value, "v1");
    CHECK(memcmp(&o->meta, &SAMPLE_META, sizeof SAMPLE_META) == 0);
    CHECK_EQ_INT(atomic_load(&o->refs), 1);

    /* Everything lives inside the single allocation of charge bytes. */
    CHECK(o->charge >= sizeof *o + sizeof(struct http_header) + 7 + 5 + 8 + 3);
    CHECK(in_block(o, o->headers, sizeof(struct http_header)));
    CHECK((uintptr_t)o->headers % _Alignof(struct http_header) == 0);
    CHECK(in_block(o, o->headers[0].name, 8));
    CHECK(in_block(o, o->headers[0].value, 3));
    CHECK(in_block(o, o->key, 8));
    CHECK(in_block(o, o->body, 5));
    cache_object_unref(o);
}

TEST(header_lookup_is_case_insensitive)
{
    struct cache_object *o = sample();
    CHECK(o != NULL);
    if (o == NULL) return;
    CHECK_EQ_STR(o->headers[0].name, "content-type");
    CHECK_EQ_STR(o->headers[1].name, "etag");
    CHECK_EQ_STR(cache_object_header(o, "content-type"), "application/json");
    CHECK_EQ_STR(cache_object_header(o, "CONTENT-TYPE"), "application/json");
    CHECK_EQ_STR(cache_object_header(o, "eTaG"), "\"abc123\"");
    CHECK_EQ_STR(cache_object_header(o, "x-empty"), "");
    CHECK(cache_object_header(o, "content-typ") == NULL);
    CHECK(cache_object_header(o, "content-type-x") == NULL);
    CHECK(cache_object_header(o, "set-cookie") == NULL);
    cache_object_unref(o);
}

TEST(build_without_headers_or_body)
{
    struct cache_object *o = cache_object_build("", 0, 204, NULL, 0, NULL, 0, &SAMPLE_META);
    CHECK(o != NULL);
    if (o == NULL) return;
    CHECK_EQ_INT(o->n_headers, 0);
    CHECK_EQ_INT(o->body_len, 0);
    CHECK_EQ_INT(o->key_len, 0);
    CHECK(o->key != NULL && o->key[0] == '\0');
    CHECK(o->body != NULL);
    CHECK(cache_object_header(o, "anything") == NULL);
    cache_object_unref(o);
}

TEST(build_rejects_what_cannot_round_trip)
{
    struct cache_meta m = SAMPLE_META;
    struct http_header crlf[] = {{"x-a", "ok\r\nSet-Cookie: evil=1"}};
    struct http_header lf[] = {{"x-a", "ok\nmore"}};
    struct http_header space_name[] = {{"x a", "v"}};
    struct http_header colon_name[] = {{"x:a", "v"}};
    struct http_header empty_name[] = {{"", "v"}};
    struct http_header null_value[] = {{"x-a", NULL}};
    CHECK(cache_object_build("k", 1, 200, crlf, 1, NULL, 0, &m) == NULL);
    CHECK(cache_object_build("k", 1, 200, lf, 1, NULL, 0, &m) == NULL);
    CHECK(cache_object_build("k", 1, 200, space_name, 1, NULL, 0, &m) == NULL);
    CHECK(cache_object_build("k", 1, 200, colon_name, 1, NULL, 0, &m) == NULL);
    CHECK(cache_object_build("k", 1, 200, empty_name, 1, NULL, 0, &m) == NULL);
    CHECK(cache_object_build("k", 1, 200, null_value, 1, NULL, 0, &m) == NULL);
    CHECK(cache_object_build("k", 1, 99, NULL, 0, NULL, 0, &m) == NULL);
    CHECK(cache_object_build("k", 1, 1000, NULL, 0, NULL, 0, &m) == NULL);
    CHECK(cache_object_build("k", 1, 200, NULL, 0, NULL, 0, NULL) == NULL);
    CHECK(cache_object_build(NULL, 3, 200, NULL, 0, NULL, 0, &m) == NULL);
    CHECK(cache_object_build("k", 1, 200, NULL, 0, NULL, 3, &m) == NULL);
    CHECK(cache_object_build("k", 1, 200, NULL, 2, NULL, 0, &m) == NULL);

    m = SAMPLE_META;
    m.ttl_ms = -1;
    CHECK(cache_object_build("k", 1, 200, NULL, 0, NULL, 0, &m) == NULL);
    m = SAMPLE_META;
    m.initial_age_s = -1;
    CHECK(cache_object_build("k", 1, 200, NULL, 0, NULL, 0, &m) == NULL);
    m = SAMPLE_META;
    m.swr_ms = INT64_MAX;
    CHECK(cache_object_build("k", 1, 200, NULL, 0, NULL, 0, &m) == NULL);
    m = SAMPLE_META;
    m.stored_at_ms = INT64_MAX;
    CHECK(cache_object_build("k", 1, 200, NULL, 0, NULL, 0, &m) == NULL);

    struct http_header *many = calloc(CACHE_OBJECT_MAX_HEADERS + 1, sizeof *many);
    CHECK(many != NULL);
    if (many == NULL) return;
    for (size_t i = 0; i <= CACHE_OBJECT_MAX_HEADERS; i++) many[i] = (struct http_header){"x", "y"};
    struct cache_object *o =
        cache_object_build("k", 1, 200, many, CACHE_OBJECT_MAX_HEADERS, NULL, 0, &SAMPLE_META);
    CHECK(o != NULL); /* the maximum itself is fine */
    cache_object_unref(o);
    CHECK(cache_object_build("k", 1, 200, many, CACHE_OBJECT_MAX_HEADERS + 1, NULL, 0,
                             &SAMPLE_META) == NULL);
    free(many);
}

TEST(refcount)
{
    struct cache_object *o = sample();
    CHECK(o != NULL);
    if (o == NULL) return;
    CHECK_EQ_INT(atomic_load(&o->refs), 1);
    CHECK(cache_object_ref(o) == o);
    CHECK_EQ_INT(atomic_load(&o->refs), 2);
    cache_object_unref(o);
    CHECK_EQ_INT(atomic_load(&o->refs), 1);
    /* Still readable with one reference left. */
    CHECK_EQ_STR(cache_object_header(o, "etag"), "\"abc123\"");
    cache_object_unref(o); /* frees; LeakSanitizer reports if it did not */
    cache_object_unref(NULL);
    CHECK(cache_object_ref(NULL) == NULL);
}

TEST(age_and_freshness)
{
    const int64_t t0 = 1700000000000;
    /* stored at t0, 5 s old on arrival, ttl 60 s, swr 30 s, sie 120 s */
    struct cache_object *o = with_meta(t0, 5, 60000, 30000, 120000);
    CHECK(o != NULL);
    if (o == NULL) return;

    CHECK_EQ_INT(cache_object_age_s(o, t0), 5);
    CHECK_EQ_INT(cache_object_age_s(o, t0 + 999), 5);   /* floor */
    CHECK_EQ_INT(cache_object_age_s(o, t0 + 1000), 6);
    CHECK_EQ_INT(cache_object_age_s(o, t0 + 54999), 59);
    CHECK_EQ_INT(cache_object_age_s(o, t0 - 10000), 5); /* clock skew: never below initial */

    /* Fresh while (now - stored) + 5000 < 60000, i.e. now < t0 + 55000. */
    CHECK(cache_object_is_fresh(o, t0));
    CHECK(cache_object_is_fresh(o, t0 + 54999));
    CHECK(!cache_object_is_fresh(o, t0 + 55000));
    CHECK(!cache_object_in_swr(o, t0 + 54999));
    CHECK(!cache_object_in_sie(o, t0 + 54999));

    /* SWR: t0 + 55000 <= now < t0 + 85000. */
    CHECK(cache_object_in_swr(o, t0 + 55000));
    CHECK(cache_object_in_swr(o, t0 + 84999));
    CHECK(!cache_object_in_swr(o, t0 + 85000));

    /* SIE: t0 + 55000 <= now < t0 + 175000. */
    CHECK(cache_object_in_sie(o, t0 + 55000));
    CHECK(cache_object_in_sie(o, t0 + 174999));
    CHECK(!cache_object_in_sie(o, t0 + 175000));

    /* Useless after the larger window. */
    CHECK_EQ_INT(cache_object_expires_at_ms(o), t0 - 5000 + 60000 + 120000);
    cache_object_unref(o);

    /* swr the larger window this time; and extreme now values do not overflow. */
    o = with_meta(t0, 0, 1000, 9000, 2000);
    CHECK(o != NULL);
    if (o == NULL) return;
    CHECK_EQ_INT(cache_object_expires_at_ms(o), t0 + 10000);
    CHECK(!cache_object_is_fresh(o, INT64_MAX));
    CHECK(!cache_object_in_swr(o, INT64_MAX));
    CHECK(cache_object_is_fresh(o, INT64_MIN));
    CHECK_EQ_INT(cache_object_age_s(o, INT64_MIN), 0);
    CHECK(cache_object_age_s(o, INT64_MAX) > 0);
    cache_object_unref(o);

    /* ttl 0: never fresh, straight into the windows. */
    o = with_meta(t0, 0, 0, 1000, 0);
    CHECK(o != NULL);
    if (o == NULL) return;
    CHECK(!cache_object_is_fresh(o, t0));
    CHECK(cache_object_in_swr(o, t0));
    CHECK(!cache_object_in_sie(o, t0));
    cache_object_unref(o);
}

TEST(encode_decode_round_trip)
{
    struct cache_object *o = sample();
    CHECK(o != NULL);
    if (o == NULL) return;
    char *buf = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cache_object_encode(o, &buf, &len), 0);
    CHECK(buf != NULL && len > 4);
    if (buf == NULL) {
        cache_object_unref(o);
        return;
    }
    CHECK(memcmp(buf, "CGWO", 4) == 0);
    CHECK_EQ_INT((unsigned char)buf[4], 1);

    struct cache_object *d = NULL;
    CHECK_EQ_INT(cache_object_decode(buf, len, &d), 0);
    CHECK(d != NULL);
    if (d != NULL) {
        CHECK(same_object(o, d));
        CHECK_EQ_INT(atomic_load(&d->refs), 1);
        CHECK_EQ_INT(d->charge, o->charge);
        CHECK_EQ_STR(cache_object_header(d, "Cache-Control"),
                     "max-age=60, stale-while-revalidate=30");
    }
    cache_object_unref(d);
    free(buf);
    cache_object_unref(o);

    /* Binary body with NULs and an empty object also round-trip. */
    const char bin[] = {0, 1, 2, '\r', '\n', 0, (char)0xff};
    o = cache_object_build("b\0k", 3, 500, NULL, 0, bin, sizeof bin, &SAMPLE_META);
    CHECK(o != NULL);
    if (o == NULL) return;
    CHECK_EQ_INT(cache_object_encode(o, &buf, &len), 0);
    d = NULL;
    CHECK_EQ_INT(cache_object_decode(buf, len, &d), 0);
    CHECK(d != NULL && same_object(o, d));
    cache_object_unref(d);
    free(buf);
    cache_object_unref(o);
}

TEST(every_truncation_fails_cleanly)
{
    struct cache_object *o = sample();
    CHECK(o != NULL);
    if (o == NULL) return;
    char *buf = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cache_object_encode(o, &buf, &len), 0);
    cache_object_unref(o);
    if (buf == NULL) return;

    for (size_t n = 0; n < len; n++) {
        /* A fresh exact-size copy, so ASan catches any read past the prefix. */
        char *prefix = malloc(n ? n : 1);
        memcpy(prefix, buf, n);
        struct cache_object *d = (struct cache_object *)0x1;
        int rc = cache_object_decode(prefix, n, &d);
        if (rc != -EINVAL || d != NULL) {
            fprintf(stderr, "prefix of %zu/%zu bytes: rc=%d\n", n, len, rc);
            CHECK(rc == -EINVAL && d == NULL);
            cache_object_unref(rc == 0 ? d : NULL);
            free(prefix);
            break;
        }
        free(prefix);
    }

    /* Trailing garbage is as wrong as a missing byte. */
    char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 'x';
    struct cache_object *d = NULL;
    CHECK_EQ_INT(cache_object_decode(longer, len + 1, &d), -EINVAL);
    CHECK(d == NULL);
    CHECK_EQ_INT(cache_object_decode(NULL, 0, &d), -EINVAL);
    free(longer);
    free(buf);
}

TEST(wrong_magic_or_version_rejected)
{
    struct cache_object *o = sample();
    CHECK(o != NULL);
    if (o == NULL) return;
    char *buf = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cache_object_encode(o, &buf, &len), 0);
    cache_object_unref(o);
    if (buf == NULL) return;

    struct cache_object *d = NULL;
    buf[4] = 2;
    CHECK_EQ_INT(cache_object_decode(buf, len, &d), -EINVAL);
    buf[4] = 0;
    CHECK_EQ_INT(cache_object_decode(buf, len, &d), -EINVAL);
    buf[4] = 1;
    buf[0] = 'X';
    CHECK_EQ_INT(cache_object_decode(buf, len, &d), -EINVAL);
    buf[0] = 'C';
    CHECK_EQ_INT(cache_object_decode(buf, len, &d), 0); /* restored: valid again */
    cache_object_unref(d);
    free(buf);
}

/* Offsets of the fixed fields in wire format version 1 (see cache_object.c). */
enum { OFF_STATUS = 5, OFF_TTL = 23, OFF_NHDR = 55, OFF_KEYLEN = 59, OFF_BODYLEN = 63,
       OFF_KEY = 71 };

static void put_le(char *p, uint64_t v, int width)
{
    for (int i = 0; i < width; i++) p[i] = (char)(v >> (8 * i));
}

/* Decodes a copy of buf with `width` bytes at off replaced by v. */
static int decode_patched(const char *buf, size_t len, size_t off, uint64_t v, int width)
{
    char *copy = malloc(len);
    memcpy(copy, buf, len);
    put_le(copy + off, v, width);
    struct cache_object *d = NULL;
    int rc = cache_object_decode(copy, len, &d);
    cache_object_unref(d);
    free(copy);
    return rc;
}

TEST(hostile_fields_rejected)
{
    struct http_header h[] = {{"ab", "cd"}};
    struct cache_object *o = cache_object_build("key", 3, 200, h, 1, "body", 4, &SAMPLE_META);
    CHECK(o != NULL);
    if (o == NULL) return;
    char *buf = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cache_object_encode(o, &buf, &len), 0);
    cache_object_unref(o);
    if (buf == NULL) return;
    CHECK_EQ_INT(len, OFF_KEY + 3 + 8 + 2 + 2 + 4);
    const size_t hdr = OFF_KEY + 3; /* name_len, value_len, "ab", "cd" */

    CHECK_EQ_INT(decode_patched(buf, len, OFF_NHDR, 0, 4), -EINVAL); /* leftover bytes */
    CHECK_EQ_INT(decode_patched(buf, len, OFF_NHDR, 2, 4), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_NHDR, CACHE_OBJECT_MAX_HEADERS + 1, 4), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_NHDR, UINT32_MAX, 4), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_KEYLEN, UINT32_MAX, 4), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_KEYLEN, 4, 4), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_BODYLEN, UINT64_MAX, 8), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_BODYLEN, UINT64_MAX - 3, 8), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_BODYLEN, 5, 8), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_BODYLEN, 3, 8), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, hdr, UINT32_MAX, 4), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, hdr + 4, UINT32_MAX, 4), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, hdr, 0, 4), -EINVAL); /* empty name */
    CHECK_EQ_INT(decode_patched(buf, len, hdr + 8, 0, 1), -EINVAL);      /* NUL in name */
    CHECK_EQ_INT(decode_patched(buf, len, hdr + 8, ' ', 1), -EINVAL);    /* space in name */
    CHECK_EQ_INT(decode_patched(buf, len, hdr + 10, '\r', 1), -EINVAL);  /* CR in value */
    CHECK_EQ_INT(decode_patched(buf, len, hdr + 11, '\n', 1), -EINVAL);  /* LF in value */
    CHECK_EQ_INT(decode_patched(buf, len, hdr + 11, 0, 1), -EINVAL);     /* NUL in value */
    CHECK_EQ_INT(decode_patched(buf, len, OFF_STATUS, 0, 2), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_STATUS, 1000, 2), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_TTL, (uint64_t)-1, 8), -EINVAL);
    CHECK_EQ_INT(decode_patched(buf, len, OFF_TTL, (uint64_t)INT64_MAX, 8), -EINVAL);
    /* Control: a harmless patch still decodes, so the rejections above are real. */
    CHECK_EQ_INT(decode_patched(buf, len, OFF_STATUS, 404, 2), 0);
    CHECK_EQ_INT(decode_patched(buf, len, hdr + 8, 'A', 1), 0);
    free(buf);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

TEST(random_corruption_never_crashes)
{
    struct cache_object *o = sample();
    CHECK(o != NULL);
    if (o == NULL) return;
    char *buf = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cache_object_encode(o, &buf, &len), 0);
    cache_object_unref(o);
    if (buf == NULL) return;

    int accepted = 0, rejected = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char *copy = malloc(len);
        memcpy(copy, buf, len);
        int flips = 1 + (int)(rng() % 4);
        for (int f = 0; f < flips; f++) copy[rng() % len] ^= (char)(1 + rng() % 255);
        struct cache_object *d = NULL;
        int rc = cache_object_decode(copy, len, &d);
        free(copy); /* the object must not borrow from the input */
        if (rc == 0) {
            accepted++;
            /* Whatever was accepted satisfies the invariants and re-encodes. */
            CHECK(d != NULL);
            if (d == NULL) break;
            for (size_t i = 0; i < d->n_headers; i++) {
                CHECK(d->headers[i].name[0] != '\0');
                CHECK(strpbrk(d->headers[i].value, "\r\n") == NULL);
            }
            char *re = NULL;
            size_t relen = 0;
            CHECK_EQ_INT(cache_object_encode(d, &re, &relen), 0);
            CHECK_EQ_INT(relen, len);
            free(re);
            cache_object_unref(d);
        } else {
            CHECK_EQ_INT(rc, -EINVAL);
            CHECK(d == NULL);
            rejected++;
        }
    }
    /* Flips in the body or meta are legitimately accepted; flips in lengths are not. */
    CHECK(accepted > 0);
    CHECK(rejected > 0);
    free(buf);
}

int main(void)
{
    RUN(build_copies_into_one_block);
    RUN(header_lookup_is_case_insensitive);
    RUN(build_without_headers_or_body);
    RUN(build_rejects_what_cannot_round_trip);
    RUN(refcount);
    RUN(age_and_freshness);
    RUN(encode_decode_round_trip);
    RUN(every_truncation_fails_cleanly);
    RUN(wrong_magic_or_version_rejected);
    RUN(hostile_fields_rejected);
    RUN(random_corruption_never_crashes);
    return TEST_SUMMARY();
}
