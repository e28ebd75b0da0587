/* fuzz_inval_index - invalidation records through the public API.
 *
 * The input is a sequence of records as they arrive from other instances
 * (pub/sub) or from Redis: one op byte, a sequence number (8 bytes, any value,
 * as a hostile or corrupt record may carry) and a length-prefixed prefix or
 * tag.  Entries are then checked against the index.  The index must stay
 * within INVAL_INDEX_MAX_RECORDS (+ slack) and never crash.
 *
 * Each prefix or tag string is also read as the text of a pub/sub record,
 * "<epoch>:<seq>:<prefix or tag>", split as inval_sync splits it, through the
 * parsers that guard it (inval_index_epoch_valid, inval_index_parse_seq,
 * inval_index_note_epoch): what they accept must be what inval_index.h
 * promises (an epoch of 1-32 [0-9a-zA-Z]; a sequence of 1-19 digits, no
 * larger than the clock bound, *out untouched on refusal). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "inval_index.h"

static struct inval_index *idx;

static bool all_of(const char *s, size_t len, bool alnum)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok =
            (c >= '0' && c <= '9') || (alnum && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')));
        if (!ok) return false;
    }
    return true;
}

static void parse_message(const char *s, size_t len)
{
    const char *c1 = memchr(s, ':', len);
    if (c1 == NULL) return;
    size_t elen = (size_t)(c1 - s);
    bool epoch_ok = inval_index_epoch_valid(s, elen);
    if (epoch_ok != (elen >= 1 && elen <= 32 && all_of(s, elen, true))) abort();
    int erc = inval_index_note_epoch(idx, s, elen);
    if ((erc < 0) != !epoch_ok) abort();
    if (epoch_ok && inval_index_note_epoch(idx, s, elen) != 0) abort(); /* now the known one */
    const char *c2 = memchr(c1 + 1, ':', len - elen - 1);
    if (c2 == NULL) return;
    const char *d = c1 + 1;
    size_t dlen = (size_t)(c2 - d);
    uint64_t seq = 7;
    if (inval_index_parse_seq(d, dlen, &seq) != 0) {
        if (seq != 7) abort();
        return;
    }
    if (dlen < 1 || dlen > 19 || !all_of(d, dlen, false)) abort();
    uint64_t v = 0;
    for (size_t i = 0; i < dlen; i++) v = v * 10 + (uint64_t)(d[i] - '0');
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t bound =
        ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + INVAL_SEQ_SKEW_MS) * 1000;
    if (seq != v || seq > bound) abort();
}

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
        case 0:
            parse_message(s, len);
            inval_index_note_prefix(idx, s, len, seq);
            break;
        case 1:
            parse_message(s, len);
            inval_index_note_tag(idx, s, len, seq);
            break;
        case 2:
            inval_index_raise_floor(idx, seq);
            break;
        case 3:
            (void)inval_index_next_local(idx);
            break;
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
            struct cache_object *obj = cache_object_build(key, len, 200, op % 6 == 4 ? &h : NULL,
                                                          op % 6 == 4, "", 0, &meta);
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
