/* Unit tests for compress: eligibility, the stored layout, Accept-Encoding, ETags. */
#include "compress.h"
#include "test.h"

#include <brotli/decode.h>
#include <stdlib.h>
#include <zlib.h>

static const struct compress_opts OPTS = {.gzip = true,
                                          .br = true,
                                          .min_bytes = 256,
                                          .types = "application/json, text/*",
                                          .gzip_level = 6,
                                          .br_quality = 5};

static char *json_body(size_t n)
{
    char *b = malloc(n + 1);
    for (size_t i = 0; i < n; i++) b[i] = "{\"id\":1,\"name\":\"abc\"},"[i % 22];
    b[n] = '\0';
    return b;
}

static struct header_list resp_with(const char *type, const char *n2, const char *v2)
{
    struct header_list l = {0};
    header_list_add(&l, "Content-Type", type);
    if (n2) header_list_add(&l, n2, v2);
    return l;
}

static struct cache_object *build(const char *body, size_t len, const char *layout)
{
    struct http_header h[2] = {{"content-type", "application/json"}, {COMPRESS_HEADER, layout}};
    struct cache_meta meta = {.stored_at_ms = 1, .ttl_ms = 1000};
    return cache_object_build("k", 1, 200, h, layout ? 2 : 1, body, len, &meta);
}

TEST(eligibility)
{
    struct header_list l = resp_with("application/json; charset=utf-8", NULL, NULL);
    CHECK(compress_eligible(&OPTS, 200, &l));
    CHECK(!compress_eligible(&OPTS, 206, &l));
    CHECK(!compress_eligible(&OPTS, 404, &l));
    header_list_free(&l);
    l = resp_with("TEXT/html", NULL, NULL);
    CHECK(compress_eligible(&OPTS, 200, &l));
    header_list_free(&l);
    const char *no[][3] = {{"image/png", NULL, NULL},
                           {"application/json", "Content-Encoding", "gzip"},
                           {"application/json", "Cache-Control", "max-age=5, no-transform"},
                           {"application/json", "Content-Range", "bytes 0-1/2"},
                           {"application/jsonx", NULL, NULL},
                           {"text", NULL, NULL}};
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        l = resp_with(no[i][0], no[i][1], no[i][2]);
        CHECK(!compress_eligible(&OPTS, 200, &l));
        header_list_free(&l);
    }
    struct compress_opts off = OPTS;
    off.gzip = off.br = false;
    l = resp_with("application/json", NULL, NULL);
    CHECK(!compress_eligible(&off, 200, &l));
    header_list_free(&l);
}

TEST(encode_round_trip)
{
    size_t len = 16384;
    char *body = json_body(len);
    struct header_list l = resp_with("application/json", NULL, NULL);
    char *out;
    size_t out_len;
    char hdr[128];
    CHECK_EQ_INT(compress_encode(&OPTS, 200, &l, body, len, 1 << 20, &out, &out_len, hdr,
                                 sizeof hdr), 1);
    struct cache_object *obj = build(out, out_len, hdr);
    CHECK(obj != NULL);
    struct compress_layout lay;
    CHECK_EQ_INT(compress_layout_of(obj, &lay), 1);
    CHECK_EQ_INT(lay.identity_len, len);
    CHECK(lay.gzip_len > 0 && lay.gzip_len < len / 4);
    CHECK(lay.br_len > 0 && lay.br_len < len / 4);
    CHECK(memcmp(obj->body, body, len) == 0);

    /* The gzip copy inflates back to the body. */
    char *back = malloc(len + 1);
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK_EQ_INT(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)(obj->body + lay.gzip_off);
    z.avail_in = (uInt)lay.gzip_len;
    z.next_out = (Bytef *)back;
    z.avail_out = (uInt)len + 1;
    CHECK_EQ_INT(inflate(&z, Z_FINISH), Z_STREAM_END);
    CHECK_EQ_INT(z.total_out, len);
    CHECK(memcmp(back, body, len) == 0);
    inflateEnd(&z);
    /* So does the br copy. */
    size_t blen = len + 1;
    CHECK_EQ_INT(BrotliDecoderDecompress(lay.br_len, (const uint8_t *)obj->body + lay.br_off,
                                         &blen, (uint8_t *)back),
                 BROTLI_DECODER_RESULT_SUCCESS);
    CHECK_EQ_INT(blen, len);
    CHECK(memcmp(back, body, len) == 0);
    free(back);

    struct compress_choice c;
    CHECK_EQ_INT(compress_select(obj, "gzip, deflate, br", &c), 0);
    CHECK_EQ_STR(c.coding, "br");
    CHECK(c.vary);
    CHECK_EQ_INT(compress_select(obj, "gzip", &c), 0);
    CHECK_EQ_STR(c.coding, "gzip");
    CHECK_EQ_INT(c.len, lay.gzip_len);
    CHECK(c.body == obj->body + lay.gzip_off);
    CHECK_EQ_INT(compress_select(obj, NULL, &c), 0);
    CHECK(c.coding == NULL);
    CHECK_EQ_INT(c.len, len);
    CHECK(c.body == obj->body);
    CHECK_EQ_INT(compress_select(obj, "br;q=0, gzip;q=0", &c), 0);
    CHECK(c.coding == NULL);
    CHECK_EQ_INT(compress_select(obj, "identity", &c), 0);
    CHECK(c.coding == NULL);
    CHECK_EQ_INT(compress_select(obj, "gzip;q=0.5, br;q=0.4", &c), 0);
    CHECK_EQ_STR(c.coding, "gzip");
    CHECK_EQ_INT(compress_select(obj, "*", &c), 0);
    CHECK_EQ_STR(c.coding, "br");
    cache_object_unref(obj);
    free(out);

    /* Bounded by max_total: only what fits is added; nothing fits, nothing added. */
    CHECK_EQ_INT(compress_encode(&OPTS, 200, &l, body, len, len + 10, &out, &out_len, hdr,
                                 sizeof hdr), 0);
    CHECK_EQ_INT(compress_encode(&OPTS, 200, &l, body, len, len, &out, &out_len, hdr,
                                 sizeof hdr), 0);
    /* Below min_bytes: as it is. */
    CHECK_EQ_INT(compress_encode(&OPTS, 200, &l, body, 100, 1 << 20, &out, &out_len, hdr,
                                 sizeof hdr), 0);
    /* Incompressible bytes: nothing smaller, nothing added. */
    for (size_t i = 0; i < 4096; i++) body[i] = (char)(rand() & 0xff);
    CHECK_EQ_INT(compress_encode(&OPTS, 200, &l, body, 4096, 1 << 20, &out, &out_len, hdr,
                                 sizeof hdr), 0);
    header_list_free(&l);
    free(body);
}

TEST(layout_read_back_is_validated)
{
    const char *body = "0123456789";
    struct compress_layout lay;
    struct cache_object *o = build(body, 10, NULL);
    CHECK_EQ_INT(compress_layout_of(o, &lay), 0);
    CHECK_EQ_INT(lay.identity_len, 10);
    cache_object_unref(o);
    o = build(body, 10, "v1 6 gzip 6 4");
    CHECK_EQ_INT(compress_layout_of(o, &lay), 1);
    cache_object_unref(o);
    const char *bad[] = {"v1 6 gzip 6 5", "v1 6 gzip 5 4", "v1 6", "v2 6 gzip 6 4",
                         "v1 6 gzip 6 4 x", "v1 6 gzip 6 2 br 8 2 br 10 0", "v1 6 zip 6 4",
                         "v1 99999999999999999999 gzip 6 4", "v1 6 gzip 6 0 br 6 4", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = build(body, 10, bad[i]);
        if (compress_layout_of(o, &lay) != -1) fprintf(stderr, "  accepted '%s'\n", bad[i]);
        CHECK_EQ_INT(compress_layout_of(o, &lay), -1);
        struct compress_choice c;
        CHECK_EQ_INT(compress_select(o, "gzip", &c), -1);
        cache_object_unref(o);
    }
    o = build(body, 10, "v1 6 gzip 6 2 br 8 2");
    CHECK_EQ_INT(compress_layout_of(o, &lay), 1);
    CHECK_EQ_INT(lay.br_off, 8);
    cache_object_unref(o);
}

TEST(accept_encoding_q)
{
    CHECK_EQ_INT(compress_accept_q(NULL, "gzip"), 0);
    CHECK_EQ_INT(compress_accept_q(NULL, "identity"), 1000);
    CHECK_EQ_INT(compress_accept_q("gzip", "gzip"), 1000);
    CHECK_EQ_INT(compress_accept_q("x-gzip", "gzip"), 1000);
    CHECK_EQ_INT(compress_accept_q("GZIP;q=0.5", "gzip"), 500);
    CHECK_EQ_INT(compress_accept_q("gzip; q=0", "gzip"), 0);
    CHECK_EQ_INT(compress_accept_q("gzip;q=0.001", "gzip"), 1);
    CHECK_EQ_INT(compress_accept_q("deflate", "gzip"), 0);
    CHECK_EQ_INT(compress_accept_q("*;q=0.3", "br"), 300);
    CHECK_EQ_INT(compress_accept_q("*, br;q=0", "br"), 0);
    CHECK_EQ_INT(compress_accept_q("gzipx", "gzip"), 0);
    CHECK_EQ_INT(compress_accept_q("identity;q=0", "identity"), 0);
    CHECK_EQ_INT(compress_accept_q("", "gzip"), 0);
}

TEST(etags)
{
    char b[64];
    CHECK_EQ_INT(compress_etag("\"abc\"", "gzip", b, sizeof b), 0);
    CHECK_EQ_STR(b, "\"abc-gzip\"");
    CHECK_EQ_INT(compress_etag("W/\"abc\"", "br", b, sizeof b), 0);
    CHECK_EQ_STR(b, "W/\"abc-br\"");
    CHECK_EQ_INT(compress_etag("abc", "gzip", b, sizeof b), -1);
    CHECK_EQ_INT(compress_etag("\"abc\"", "gzip", b, 8), -1);
}

int main(void)
{
    RUN(eligibility);
    RUN(encode_round_trip);
    RUN(layout_read_back_is_validated);
    RUN(accept_encoding_q);
    RUN(etags);
    return TEST_SUMMARY();
}
