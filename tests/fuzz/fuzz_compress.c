/* fuzz_compress - the stored layout of compressed copies and Accept-Encoding (compress.c).
 *
 * Input: a layout value (x-cachegw-enc, as read back from Redis), a NUL, an
 * Accept-Encoding value, a NUL, then a body.  Besides memory safety it checks the
 * module's promises: a layout that is accepted lies inside the body, the chosen
 * representation is a slice of the body, a coding is only chosen when the client's
 * Accept-Encoding gives it a q above 0, and q-values stay within 0-1000. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compress.h"

static const char *next_part(const char **p, const char *end)
{
    const char *s = *p;
    const char *z = memchr(s, '\0', (size_t)(end - s));
    if (z == NULL) return NULL;
    *p = z + 1;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) return 0;
    const char *p = (const char *)data, *end = p + size;
    const char *layout = next_part(&p, end);
    const char *ae = layout ? next_part(&p, end) : NULL;
    if (ae == NULL) return 0;
    size_t body_len = (size_t)(end - p);
    struct http_header h[2] = {{"content-type", "application/json"}, {COMPRESS_HEADER, layout}};
    struct cache_meta meta = {.stored_at_ms = 1, .ttl_ms = 1000};
    struct cache_object *obj = cache_object_build("k", 1, 200, h, 2, p, body_len, &meta);
    if (obj == NULL) return 0; /* a layout value cache_object refuses (CR, LF) */
    struct compress_layout l;
    int rc = compress_layout_of(obj, &l);
    if (rc == 1) {
        if (l.identity_len > body_len) abort();
        if (l.gzip_len && l.gzip_off + l.gzip_len > body_len) abort();
        if (l.br_len && l.br_off + l.br_len > body_len) abort();
    }
    struct compress_choice c;
    if (compress_select(obj, ae, &c) == 0) {
        if (c.body < obj->body || c.body + c.len > obj->body + obj->body_len) abort();
        if (c.coding && compress_accept_q(ae, c.coding) <= 0) abort();
    } else if (rc != -1) {
        abort();
    }
    int q = compress_accept_q(ae, "gzip");
    if (q < 0 || q > 1000) abort();
    char tag[128];
    (void)compress_etag(ae, "gzip", tag, sizeof tag);
    cache_object_unref(obj);
    return 0;
}
