/* fuzz_cache_object - the stored-value decoder (values read back from Redis).
 *
 * Any byte string goes to cache_object_decode.  What decodes must be a
 * consistent object: encoding it again and decoding that gives the same
 * status, key, headers and body, and its age arithmetic must not overflow. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache_object.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cache_object *obj = NULL;
    if (cache_object_decode((const char *)data, size, &obj) != 0) return 0;
    char *enc = NULL;
    size_t enc_len = 0;
    if (cache_object_encode(obj, &enc, &enc_len) == 0) {
        struct cache_object *again = NULL;
        if (cache_object_decode(enc, enc_len, &again) != 0) abort(); /* must round-trip */
        if (again->status != obj->status || again->key_len != obj->key_len ||
            memcmp(again->key, obj->key, obj->key_len) != 0 ||
            again->n_headers != obj->n_headers || again->body_len != obj->body_len ||
            memcmp(again->body, obj->body, obj->body_len) != 0)
            abort();
        for (size_t i = 0; i < obj->n_headers; i++)
            if (strcmp(again->headers[i].name, obj->headers[i].name) != 0 ||
                strcmp(again->headers[i].value, obj->headers[i].value) != 0)
                abort();
        cache_object_unref(again);
        free(enc);
    }
    /* Exercise the time arithmetic at a few clocks, including far ones. */
    const int64_t clocks[] = {0, obj->meta.stored_at_ms, (int64_t)1 << 53};
    for (size_t i = 0; i < sizeof clocks / sizeof clocks[0]; i++) {
        (void)cache_object_age_s(obj, clocks[i]);
        (void)cache_object_is_fresh(obj, clocks[i]);
        (void)cache_object_in_swr(obj, clocks[i]);
        (void)cache_object_in_sie(obj, clocks[i]);
    }
    (void)cache_object_expires_at_ms(obj);
    (void)cache_object_header(obj, "etag");
    cache_object_unref(obj);
    return 0;
}
