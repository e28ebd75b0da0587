/* redis-fill - writes RESP SET commands for N cached entries to stdout, for
 * `redis-cli --pipe`.  Used by bench/scale_invalidation.py to put a million
 * valid cache entries into Redis without a million upstream requests.
 *
 * usage: redis-fill PREFIX N HOT_EVERY [HOT_NAME]
 * Keys are PREFIX "scale:<HOT_NAME>:<i>" (default "hot") for every
 * HOT_EVERY-th i, PREFIX
 * "scale:cold:<i>" otherwise (hot ones tagged grp-<HOT_NAME>); each value is a real encoded cache_object (a
 * small JSON body, ttl 1 h, generation 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_object.h"
#include "io_loop.h"

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s PREFIX N HOT_EVERY [HOT_NAME]\n", argv[0]);
        return 2;
    }
    const char *prefix = argv[1];
    long n = atol(argv[2]), every = atol(argv[3]);
    const char *hot = argc == 5 ? argv[4] : "hot";
    if (strlen(hot) > 32) return 2;
    int64_t now = clock_wall_ms();
    struct cache_meta meta = {.stored_at_ms = now, .ttl_ms = 3600 * 1000};
    char tag[64];
    snprintf(tag, sizeof tag, "grp-%s", hot);
    struct http_header h[2] = {{"content-type", "application/json"}, {"x-cachegw-tags", tag}};
    char key[256], full[512], body[64];
    for (long i = 0; i < n; i++) {
        int klen = snprintf(key, sizeof key, "scale:%s:%ld", i % every == 0 ? hot : "cold", i);
        int blen = snprintf(body, sizeof body, "{\"i\":%ld}", i);
        /* Hot entries also carry the tag grp-hot (the tag invalidation case). */
        struct cache_object *o = cache_object_build(key, (size_t)klen, 200, h,
                                                    i % every == 0 ? 2 : 1, body, (size_t)blen,
                                                    &meta);
        char *enc;
        size_t enc_len;
        if (o == NULL || cache_object_encode(o, &enc, &enc_len) != 0) return 1;
        int flen = snprintf(full, sizeof full, "%s%s", prefix, key);
        printf("*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%zu\r\n", flen, full, enc_len);
        fwrite(enc, 1, enc_len, stdout);
        printf("\r\n$2\r\nEX\r\n$4\r\n3600\r\n");
        free(enc);
        cache_object_unref(o);
    }
    return 0;
}
