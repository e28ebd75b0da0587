/* fuzz_inval_index - invalidation records through the public API.
 *
 * The input is a sequence of records as they arrive from other instances
 * (pub/sub) or from Redis: one op byte, a sequence number (8 bytes, any value,
 * as a hostile or corrupt record may carry) and a length-prefixed prefix or
 * tag.  Entries are then checked against the index.  The index must stay
 * within INVAL_INDEX_MAX_RECORDS (+ slack) and never crash. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "inval_index.h"

static struct inval_index *idx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A fresh index per input keeps runs reproducible. */
    if (idx) inval_index_destroy(idx);
    if (inval_index_create(&idx) != 0) abort();
    const uint8_t *p = data, *end = data + size;
    while (end - p >= 10) {
        uint8_t op = p[0];
        uint64_t seq;
        memcpy(&seq, p + 1, 8);
        size_t len = p[9];
        p += 10;
        if ((size_t)(end - p) < len) len = (size_t)(end - p);
        const char *s = (const char *)p;
        p += len;
        switch (op % 6) {
        case 0: inval_index_note_prefix(idx, s, len, seq); break;
        case 1: inval_index_note_tag(idx, s, len, seq); break;
        case 2: inval_index_raise_floor(idx, seq); break;
        case 3: (void)inval_index_next_local(idx); break;
        default: {
            /* An entry keyed by s, tagged with s, filled at gen seq. */
            char key[256], tags[256];
            memcpy(key, s, len);
            key[len] = '\0';
            for (size_t i = 0; i < len; i++)
                if (key[i] == '\0') key[i] = 'x';
            memcpy(tags, key, len + 1);
            for (size_t i = 0; i < len; i++)
                if ((unsigned char)tags[i] < 0x20) tags[i] = ' ';
            struct http_header h = {"x-cachegw-tags", tags};
            struct cache_meta meta = {.stored_at_ms = 1, .ttl_ms = 1000, .gen = seq};
            struct cache_object *obj =
                cache_object_build(key, len, 200, op % 6 == 4 ? &h : NULL, op % 6 == 4, "", 0,
                                   &meta);
            if (obj) {
                (void)inval_index_valid(idx, obj);
                cache_object_unref(obj);
            }
        }
        }
    }
    (void)inval_index_current(idx);
    (void)inval_index_floor(idx);
    if (inval_index_records(idx) > INVAL_INDEX_MAX_RECORDS + 1) abort();
    return 0;
}
