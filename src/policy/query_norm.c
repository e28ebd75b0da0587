/* query_norm.c - see query_norm.h. */
#include "query_norm.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* RFC 3986 unreserved bytes: A-Z a-z 0-9 - . _ ~ (kept as they are by encoding). */
static const uint8_t qn_unreserved[256] = {
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
    ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static const char qn_hex_upper[] = "0123456789ABCDEF";

/* Value of a hex digit, or -1 (Lua's %x: 0-9 a-f A-F). */
static inline int qn_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes the byte at s[*i] (of a component of len bytes) the way url.decode does:
 * "%XX" with two hex digits is one byte, anything else (a malformed "%zz" too) is
 * itself; with plus, '+' is a space.  Advances *i.  Decoding is a left-to-right
 * transducer, so the components never need to be decoded into a buffer. */
static inline unsigned char qn_decode_next(const char *s, size_t len, size_t *i, int plus)
{
    unsigned char c = (unsigned char)s[*i];
    if (c == '%' && len - *i >= 3) {
        int hi = qn_hexval((unsigned char)s[*i + 1]);
        int lo = qn_hexval((unsigned char)s[*i + 2]);
        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return (unsigned char)(hi << 4 | lo);
        }
    }
    (*i)++;
    return (plus && c == '+') ? ' ' : c;
}

/* Length of the canonical form of s[0..len).  Canonical form is encode(decode(piece))
 * per '+'-separated piece, joined by '+'.  Since '+' is not a hex digit, no "%XX"
 * straddles a '+', so a single pass that keeps a literal '+' and otherwise decodes and
 * encodes byte by byte is the same function.  Unreserved bytes and '+' are themselves;
 * only '%' needs a look ahead. */
static size_t qn_canonical_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (qn_unreserved[c] || c == '+') {
            n++;
            i++;
        } else if (c != '%') {
            n += 3;
            i++;
        } else {
            n += qn_unreserved[qn_decode_next(s, len, &i, 0)] ? 1 : 3;
        }
    }
    return n;
}

/* Writes the canonical form of s[0..len) at out; returns the end. */
static char *qn_canonical_write(const char *s, size_t len, char *out)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (qn_unreserved[c] || c == '+') {
            *out++ = (char)c;
            i++;
            continue;
        }
        unsigned char b = c == '%' ? qn_decode_next(s, len, &i, 0) : (i++, c);
        if (qn_unreserved[b]) {
            *out++ = (char)b;
        } else {
            *out++ = '%';
            *out++ = qn_hex_upper[b >> 4];
            *out++ = qn_hex_upper[b & 15];
        }
    }
    return out;
}

/* Byte order, then length (a prefix sorts first): Lua's string comparison in the C
 * locale. */
static inline int qn_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Names are short: a byte loop beats a call to memcmp. */
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x != y) return x < y ? -1 : 1;
    }
    return (alen > blen) - (alen < blen);
}

static int qn_entry_cmp(const void *pa, const void *pb)
{
    const struct query_ignore_entry *a = pa, *b = pb;
    return qn_cmp(a->s, a->len, b->s, b->len);
}

void query_ignore_sort(struct query_ignore_entry *e, size_t n)
{
    /* qsort, not an insertion sort: a policy may list many names, and this runs in C
     * where the Lua time limits cannot interrupt it. */
    if (n > 1) qsort(e, n, sizeof *e, qn_entry_cmp);
}

/* Compares the name s[0..len) (decoded on the fly when decode is set, '+' = space)
 * with the entry e, in qn_cmp order.  With prefix set, only whether e is a prefix of
 * the decoded name matters: the result is 0 then. */
static int qn_name_cmp(const char *s, size_t len, int decode, const struct query_ignore_entry *e,
                       int prefix)
{
    size_t i = 0, k = 0;
    while (i < len && k < e->len) {
        unsigned char c = decode ? qn_decode_next(s, len, &i, 1) : (unsigned char)s[i++];
        unsigned char d = (unsigned char)e->s[k++];
        if (c != d) return c < d ? -1 : 1;
    }
    if (k < e->len) return -1; /* the name ended first */
    if (prefix || i == len) return 0;
    return 1;
}

/* Whether the raw name s[0..len) is ignored (decoded first when decode is set). */
static int qn_ignored(const struct query_ignore *ign, const char *s, size_t len, int decode)
{
    if (ign == NULL) return 0;
    size_t lo = 0, hi = ign->n_exact;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = qn_name_cmp(s, len, decode, &ign->exact[mid], 0);
        if (c == 0) return 1;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    for (size_t i = 0; i < ign->n_prefix; i++)
        if (qn_name_cmp(s, len, decode, &ign->prefix[i], 1) == 0) return 1;
    return 0;
}

int query_ignore_match(const struct query_ignore *ign, const char *name, size_t len)
{
    return qn_ignored(ign, name, len, 0);
}

int query_norm_scan(struct query_norm *st, const char *qs, size_t len,
                    const struct query_ignore *ign)
{
    st->qs = qs;
    st->qs_len = len;
    st->simple = len == 0 || memchr(qs, '%', len) == NULL;
    st->n = 0;
    st->out_len = 0;
    st->scratch_len = 0;
    size_t pairs = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *amp = memchr(qs + pos, '&', len - pos);
        size_t end = amp ? (size_t)(amp - qs) : len;
        if (end > pos) {
            if (++pairs > QUERY_NORM_MAX_PARAMS) return QUERY_NORM_TOO_MANY;
            const char *eq = memchr(qs + pos, '=', end - pos);
            size_t name_end = eq ? (size_t)(eq - qs) : end;
            size_t value_off = eq ? name_end + 1 : end;
            if (!qn_ignored(ign, qs + pos, name_end - pos, !st->simple)) {
                struct query_norm_param *p = &st->p[st->n++];
                p->name_off = pos;
                p->name_len = name_end - pos;
                p->value_off = value_off;
                p->value_len = end - value_off;
                size_t vlen;
                if (st->simple) {
                    p->cname_off = pos;
                    p->cname_len = p->name_len;
                    vlen = p->value_len;
                } else {
                    p->cname_off = st->scratch_len;
                    p->cname_len = qn_canonical_len(qs + pos, p->name_len);
                    st->scratch_len += p->cname_len;
                    vlen = qn_canonical_len(qs + value_off, p->value_len);
                }
                st->out_len += (st->n > 1) + p->cname_len + 1 + vlen;
            }
        }
        pos = end + 1;
    }
    return QUERY_NORM_OK;
}

/* Stable merge sort of order[0..n) by canonical name, names at base + cname_off. */
static void qn_sort(struct query_norm *st, const char *base)
{
    uint16_t tmp[QUERY_NORM_MAX_PARAMS];
    uint16_t *src = st->order, *dst = tmp;
    size_t n = st->n;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                const struct query_norm_param *a = &st->p[src[i]], *b = &st->p[src[j]];
                /* Take from the right run only when strictly smaller: stable. */
                if (qn_cmp(base + b->cname_off, b->cname_len, base + a->cname_off,
                           a->cname_len) < 0)
                    dst[k++] = src[j++];
                else
                    dst[k++] = src[i++];
            }
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        uint16_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != st->order) memcpy(st->order, src, n * sizeof *src);
}

void query_norm_write(struct query_norm *st, char *scratch, char *out)
{
    const char *qs = st->qs;
    /* scratch may be NULL when every kept canonical name is empty; memcmp and memcpy
     * want a pointer even for 0 bytes. */
    const char *names = st->simple ? qs : scratch != NULL ? scratch : "";
    if (!st->simple) {
        for (size_t i = 0; i < st->n; i++)
            qn_canonical_write(qs + st->p[i].name_off, st->p[i].name_len,
                               scratch + st->p[i].cname_off);
    }
    int sorted = 1;
    for (size_t i = 0; i < st->n; i++) {
        st->order[i] = (uint16_t)i;
        if (i > 0 && sorted) {
            const struct query_norm_param *a = &st->p[i - 1], *b = &st->p[i];
            if (qn_cmp(names + b->cname_off, b->cname_len, names + a->cname_off,
                       a->cname_len) < 0)
                sorted = 0;
        }
    }
    if (!sorted) qn_sort(st, names);
    char *o = out;
    for (size_t i = 0; i < st->n; i++) {
        const struct query_norm_param *p = &st->p[st->order[i]];
        if (i > 0) *o++ = '&';
        memcpy(o, names + p->cname_off, p->cname_len);
        o += p->cname_len;
        *o++ = '=';
        if (st->simple) {
            memcpy(o, qs + p->value_off, p->value_len);
            o += p->value_len;
        } else {
            o = qn_canonical_write(qs + p->value_off, p->value_len, o);
        }
    }
}

size_t query_norm_bound(size_t len)
{
    /* Per kept pair of k raw bytes: at most 3 bytes per name or value byte, 1 for an
     * added '=', plus the canonical name again in scratch; see the header. */
    if (len > SIZE_MAX / 7) return SIZE_MAX;
    return 7 * len;
}

int query_norm(struct query_norm *st, const char *qs, size_t len,
               const struct query_ignore *ign, char *buf, size_t cap, size_t *out_len)
{
    int rc = query_norm_scan(st, qs, len, ign);
    if (rc != QUERY_NORM_OK) return rc;
    if (cap < st->out_len || cap - st->out_len < st->scratch_len) return QUERY_NORM_NOSPACE;
    query_norm_write(st, buf + st->out_len, buf);
    *out_len = st->out_len;
    return QUERY_NORM_OK;
}
