/* compress.c - see compress.h. */
#include "compress.h"

#include <brotli/encode.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

enum { LIST_MAX = 4096 };

/* True when the media type of content_type (parameters dropped) is in the list:
 * exact, or "type/" followed by a star for any subtype.  Compared case-insensitively. */
static bool type_listed(const char *types, const char *content_type)
{
    if (types == NULL || content_type == NULL) return false;
    while (*content_type == ' ' || *content_type == '\t') content_type++;
    size_t ct_len = strcspn(content_type, "; \t");
    if (ct_len == 0) return false;
    const char *slash = memchr(content_type, '/', ct_len);
    if (slash == NULL) return false;
    size_t major_len = (size_t)(slash - content_type);
    const char *p = types;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        while (e > s && e[-1] == ' ') e--;
        size_t n = (size_t)(e - s);
        if (n == 0) continue;
        if (n >= 2 && s[n - 1] == '*' && s[n - 2] == '/') {
            if (n - 2 == major_len && strncasecmp(s, content_type, major_len) == 0) return true;
        } else if (n == ct_len && strncasecmp(s, content_type, n) == 0) {
            return true;
        }
    }
    return false;
}

bool compress_eligible(const struct compress_opts *o, int status, const struct header_list *resp)
{
    if (!o->gzip && !o->br) return false;
    if (status != 200) return false;
    const char *ce = header_list_get(resp, "content-encoding");
    if (ce != NULL && strcasecmp(ce, "identity") != 0) return false;
    if (header_list_get(resp, "content-range") != NULL) return false;
    /* RFC 9110 §7.7: an intermediary must not transform a no-transform response. */
    char cc[LIST_MAX];
    int lines = header_list_get_all(resp, "cache-control", cc, sizeof cc);
    if (lines < 0 || (lines > 0 && headers_has_token(cc, "no-transform"))) return false;
    return type_listed(o->types, header_list_get(resp, "content-type"));
}

static size_t gzip_into(int level, const char *in, size_t len, char *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    /* windowBits 15 + 16: a gzip wrapper rather than zlib's. */
    if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    size_t n = rc == Z_STREAM_END ? (size_t)z.total_out : 0;
    deflateEnd(&z);
    return n;
}

static size_t br_into(int quality, const char *in, size_t len, char *out, size_t cap)
{
    size_t n = cap;
    if (!BrotliEncoderCompress(quality, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_TEXT, len,
                               (const uint8_t *)in, &n, (uint8_t *)out))
        return 0;
    return n;
}

int compress_encode(const struct compress_opts *o, int status, const struct header_list *resp,
                    const char *body, size_t len, size_t max_total, char **out, size_t *out_len,
                    char *hdr, size_t hdr_cap)
{
    *out = NULL;
    *out_len = 0;
    if (len < o->min_bytes || len == 0 || len >= max_total || len > UINT32_MAX) return 0;
    if (!compress_eligible(o, status, resp)) return 0;
    /* A coded copy is kept only when smaller than the identity body, so the
     * composite is at most three times len, and at most max_total. */
    size_t cap = max_total < 3 * len ? max_total : 3 * len;
    char *buf = malloc(cap);
    if (buf == NULL) return -1;
    memcpy(buf, body, len);
    size_t at = len;
    struct compress_layout l = {.identity_len = len};
    if (o->gzip && cap - at > 0) {
        size_t room = cap - at < len - 1 ? cap - at : len - 1;
        size_t n = room > 0 ? gzip_into(o->gzip_level, body, len, buf + at, room) : 0;
        if (n > 0 && n < len) {
            l.gzip_off = at;
            l.gzip_len = n;
            at += n;
        }
    }
    if (o->br && cap - at > 0) {
        size_t room = cap - at < len - 1 ? cap - at : len - 1;
        size_t n = room > 0 ? br_into(o->br_quality, body, len, buf + at, room) : 0;
        if (n > 0 && n < len) {
            l.br_off = at;
            l.br_len = n;
            at += n;
        }
    }
    if (l.gzip_len == 0 && l.br_len == 0) {
        free(buf);
        return 0;
    }
    int w = snprintf(hdr, hdr_cap, "v1 %zu", len);
    if (l.gzip_len && w >= 0 && (size_t)w < hdr_cap)
        w += snprintf(hdr + w, hdr_cap - (size_t)w, " gzip %zu %zu", l.gzip_off, l.gzip_len);
    if (l.br_len && w >= 0 && (size_t)w < hdr_cap)
        w += snprintf(hdr + w, hdr_cap - (size_t)w, " br %zu %zu", l.br_off, l.br_len);
    if (w < 0 || (size_t)w >= hdr_cap) {
        free(buf);
        return 0;
    }
    *out = buf;
    *out_len = at;
    return 1;
}

/* Reads a decimal size; false on anything else or past 2^40 (no body is that big). */
static bool read_size(const char **pp, size_t *out)
{
    const char *p = *pp;
    if (!isdigit((unsigned char)*p)) return false;
    uint64_t v = 0;
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > ((uint64_t)1 << 40)) return false;
    }
    *pp = p;
    *out = (size_t)v;
    return true;
}

int compress_layout_of(const struct cache_object *obj, struct compress_layout *out)
{
    memset(out, 0, sizeof *out);
    out->identity_len = obj->body_len;
    const char *v = cache_object_field(obj, CACHE_FIELD_ENCODINGS);
    if (v == NULL) return 0;
    struct compress_layout l = {0};
    const char *p = v;
    if (strncmp(p, "v1 ", 3) != 0) return -1;
    p += 3;
    if (!read_size(&p, &l.identity_len)) return -1;
    size_t end = l.identity_len;
    while (*p == ' ') {
        p++;
        size_t *off, *len;
        if (strncmp(p, "gzip ", 5) == 0 && l.gzip_len == 0) {
            off = &l.gzip_off;
            len = &l.gzip_len;
            p += 5;
        } else if (strncmp(p, "br ", 3) == 0 && l.br_len == 0) {
            off = &l.br_off;
            len = &l.br_len;
            p += 3;
        } else {
            return -1;
        }
        if (!read_size(&p, off) || *p++ != ' ' || !read_size(&p, len) || *len == 0) return -1;
        /* Copies follow each other, in order, after the identity body. */
        if (*off != end) return -1;
        end = *off + *len;
    }
    if (*p != '\0' || end != obj->body_len || (l.gzip_len == 0 && l.br_len == 0)) return -1;
    *out = l;
    return 1;
}

/* The q-value of one member's parameters ("; q=0.5"), in thousandths; 1000 without. */
static int parse_q(const char *p, const char *end)
{
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t')) p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            p += 2;
            if (p < end && *p == '1') return 1000;
            if (p >= end || *p != '0') return 0;
            p++;
            int q = 0, scale = 100;
            if (p < end && *p == '.') {
                for (p++; p < end && isdigit((unsigned char)*p) && scale > 0; p++, scale /= 10)
                    q += (*p - '0') * scale;
            }
            return q;
        }
        while (p < end && *p != ';') p++;
    }
    return 1000;
}

/* The q-value of coding's own member (x-gzip counts as gzip) and of "*", -1 when absent. */
static void member_q(const char *ae, const char *coding, int *own_q, int *star_q)
{
    int own = -1, star = -1;
    const char *p = ae;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        const char *e = p;
        size_t n = strcspn(s, ";, \t");
        if (n > (size_t)(e - s)) n = (size_t)(e - s);
        if (n == 0) continue;
        int q = parse_q(s + n, e);
        bool is_gzip = strcasecmp(coding, "gzip") == 0;
        if ((n == strlen(coding) && strncasecmp(s, coding, n) == 0) ||
            (is_gzip && n == 6 && strncasecmp(s, "x-gzip", 6) == 0))
            own = q;
        else if (n == 1 && *s == '*')
            star = q;
    }
    *own_q = own;
    *star_q = star;
}

int compress_accept_q(const char *ae, const char *coding)
{
    bool identity = strcasecmp(coding, "identity") == 0;
    if (ae == NULL) return identity ? 1000 : 0;
    int own, star;
    member_q(ae, coding, &own, &star);
    if (own >= 0) return own;
    if (star >= 0) return star;
    return identity ? 1000 : 0;
}

int compress_select(const struct cache_object *obj, const char *accept_encoding,
                    struct compress_choice *out)
{
    struct compress_layout l;
    int rc = compress_layout_of(obj, &l);
    if (rc < 0) return -1;
    *out = (struct compress_choice){obj->body, l.identity_len, NULL, rc > 0};
    if (rc == 0) return 0;
    int q_br = l.br_len ? compress_accept_q(accept_encoding, "br") : 0;
    int q_gz = l.gzip_len ? compress_accept_q(accept_encoding, "gzip") : 0;
    /* Identity competes only when the client named it: an implicit identity is the
     * fallback, not a preference over a coding it asked for. */
    int q_id = 0, star_unused;
    if (accept_encoding) member_q(accept_encoding, "identity", &q_id, &star_unused);
    /* The highest q wins; on a tie the smaller copy (br, then gzip).  Identity is
     * sent when nothing else is acceptable, even when refused (RFC 9110 §12.5.3
     * allows that instead of a 415). */
    if (q_br > 0 && q_br >= q_gz && q_br >= q_id) {
        out->body = obj->body + l.br_off;
        out->len = l.br_len;
        out->coding = "br";
    } else if (q_gz > 0 && q_gz >= q_id) {
        out->body = obj->body + l.gzip_off;
        out->len = l.gzip_len;
        out->coding = "gzip";
    }
    return 0;
}

int compress_etag(const char *etag, const char *coding, char *out, size_t cap)
{
    const char *p = etag;
    bool weak = strncmp(p, "W/", 2) == 0;
    if (weak) p += 2;
    size_t n = strlen(p);
    if (n < 2 || p[0] != '"' || p[n - 1] != '"') return -1;
    int w = snprintf(out, cap, "%s%.*s-%s\"", weak ? "W/" : "", (int)(n - 1), p, coding);
    return w < 0 || (size_t)w >= cap ? -1 : 0;
}
