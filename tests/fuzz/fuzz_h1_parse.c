/* fuzz_h1_parse - the HTTP/1.1 request head and chunked body parser (src/h1/h1_parse.h).
 *
 * Input: one seed byte, then the bytes a client sent.  The seed picks the sizes
 * of the pieces the bytes arrive in.  Checks the header's promises besides
 * memory safety:
 *   - h1_head_end fed piece by piece (its scan position carried over, as the
 *     server does) finds the same end as in one call, at the first length that
 *     holds it, and never an end past the bytes;
 *   - h1_parse_head on that head: every string lies inside the head, at most
 *     H1_MAX_FIELDS fields, a status of 0, 400, 414, 431 or 505 with a reason
 *     exactly when refused; an accepted head has its request line, a version
 *     HTTP/1.<digit>, no line end inside any string and no ':' in a name;
 *   - h1_oversize_status answers 414 or 431 with a reason;
 *   - the bytes after the head (all of them when there is no head) decoded as a
 *     chunked body in one call, byte by byte, and in the seed's pieces give the
 *     same verdict, the same reason, the same bytes and the same input used. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h1_parse.h"

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void check_head_end(const char *buf, size_t len, uint32_t seed, size_t *end)
{
    size_t scan = 0;
    *end = h1_head_end(buf, len, &scan);
    if (*end > len) abort();
    if (*end == 0 && scan > len) abort();
    /* In pieces: lengths growing by 1..64 bytes. */
    scan = 0;
    size_t k = 0, got = 0;
    while (k < len) {
        k += 1 + next_rand(&seed) % 64;
        if (k > len) k = len;
        got = h1_head_end(buf, k, &scan);
        if (got != 0) break;
        if (scan > k) abort();
    }
    if (got != *end) abort();
    /* Found at the first length holding it: the one before did not. */
    if (*end != 0) {
        size_t s2 = 0;
        if (h1_head_end(buf, *end - 1, &s2) != 0) abort();
    }
}

static bool inside(const char *p, const char *buf, size_t len)
{
    return p >= buf && p < buf + len;
}

static void check_parse(const char *head, size_t len)
{
    char *buf = malloc(len); /* exact size: a read past the head is a finding */
    if (buf == NULL) return;
    memcpy(buf, head, len);
    struct h1_head h;
    int rc = h1_parse_head(buf, len, &h);
    if (rc != h.status) abort();
    if (rc != 0 && rc != 400 && rc != 414 && rc != 431 && rc != 505) abort();
    if ((rc == 0) != (h.reason == NULL)) abort();
    if (h.n_fields > H1_MAX_FIELDS) abort();
    const char *strs[3] = {h.method, h.target, h.version};
    for (int i = 0; i < 3; i++) {
        if (strs[i] == NULL) {
            if (rc == 0) abort();
            continue;
        }
        if (!inside(strs[i], buf, len)) abort();
        if (rc == 0 && strchr(strs[i], '\n') != NULL) abort();
    }
    for (size_t i = 0; i < h.n_fields; i++) {
        const char *n = h.fields[i].name, *v = h.fields[i].value;
        if (!inside(n, buf, len) || !inside(v, buf, len)) abort();
        if (rc != 0) continue;
        if (strchr(n, ':') != NULL || strchr(n, '\n') != NULL || strchr(v, '\n') != NULL) abort();
        size_t vl = strlen(v);
        if (vl > 0 && (v[0] == ' ' || v[0] == '\t' || v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            abort();
        uint64_t cl;
        if (h1_content_length(v, &cl) == 0 && (vl == 0 || strspn(v, "0123456789") != vl))
            abort();
    }
    if (rc == 0) {
        const char *ver = h.version;
        if (strlen(ver) != 8 || strncmp(ver, "HTTP/1.", 7) != 0 || h.minor != ver[7] - '0')
            abort();
        if (memchr(head, '\0', len) != NULL) abort(); /* a NUL is always refused */
    }
    free(buf);
    const char *reason = NULL;
    int os = h1_oversize_status(head, len, &reason);
    if ((os != 414 && os != 431) || reason == NULL) abort();
}

struct run {
    int rc;
    const char *reason;
    bool done;
    size_t consumed, out_len;
    char *out;
};

/* Decodes in[0..len) in pieces of step bytes (0: the seed's sizes; len: one call). */
static void decode(const char *in, size_t len, size_t step, uint32_t seed, struct run *r)
{
    struct h1_chunked st;
    memset(&st, 0, sizeof st);
    memset(r, 0, sizeof *r);
    r->out = malloc(len + 1);
    size_t pos = 0;
    while (pos < len && !st.done) {
        size_t n = step ? step : 1 + next_rand(&seed) % 97;
        if (n > len - pos) n = len - pos;
        char *piece = malloc(n); /* exact size */
        memcpy(piece, in + pos, n);
        size_t used = 0, out = 0;
        const char *reason = NULL;
        if (h1_chunked_decode(&st, piece, n, &used, &out, &reason) != 0) {
            if (reason == NULL) abort();
            r->rc = -1;
            r->reason = reason;
            free(piece);
            break;
        }
        if (used > n || out > used || (used < n && !st.done)) abort();
        memcpy(r->out + r->out_len, piece, out);
        r->out_len += out;
        pos += used;
        free(piece);
    }
    r->done = st.done;
    r->consumed = pos;
}

static void check_chunked(const char *in, size_t len, uint32_t seed)
{
    struct run whole, bytes, pieces;
    decode(in, len, len ? len : 1, seed, &whole);
    decode(in, len, 1, seed, &bytes);
    decode(in, len, 0, seed, &pieces);
    const struct run *o[2] = {&bytes, &pieces};
    for (int i = 0; i < 2; i++) {
        if (o[i]->rc != whole.rc || o[i]->done != whole.done) abort();
        if (whole.rc != 0) {
            if (strcmp(o[i]->reason, whole.reason) != 0) abort();
            continue;
        }
        if (o[i]->consumed != whole.consumed || o[i]->out_len != whole.out_len) abort();
        if (memcmp(o[i]->out, whole.out, whole.out_len) != 0) abort();
    }
    if (whole.rc == 0 && !whole.done && whole.consumed != len) abort();
    free(whole.out);
    free(bytes.out);
    free(pieces.out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 65536) return 0;
    uint32_t seed = 0x9e3779b9u ^ ((uint32_t)data[0] * 0x01000193u);
    if (seed == 0) seed = 1;
    size_t len = size - 1;
    char *buf = malloc(len ? len : 1);
    if (buf == NULL) return 0;
    memcpy(buf, data + 1, len);
    size_t end = 0;
    check_head_end(buf, len, seed, &end);
    if (end != 0) check_parse(buf, end);
    else if (len > 0) {
        const char *reason = NULL;
        int os = h1_oversize_status(buf, len, &reason);
        if ((os != 414 && os != 431) || reason == NULL) abort();
    }
    check_chunked(buf + end, len - end, seed);
    free(buf);
    return 0;
}
