/* h1_parse.c - see h1_parse.h. */
#include "h1_parse.h"

#include <string.h>

size_t h1_head_end(const char *buf, size_t len, size_t *scan)
{
    size_t start = 0;
    while (start < len && (buf[start] == '\r' || buf[start] == '\n')) start++;
    size_t i = *scan > start ? *scan : start;
    const char *p;
    while (i < len && (p = memchr(buf + i, '\n', len - i)) != NULL) {
        i = (size_t)(p - buf);
        /* The empty line: LF LF, or LF CR LF.  When the bytes after this LF are not
         * in yet, the search resumes here next time. */
        if (i + 1 >= len) break;
        if (buf[i + 1] == '\n') return i + 2;
        if (buf[i + 1] == '\r') {
            if (i + 2 >= len) break;
            if (buf[i + 2] == '\n') return i + 3;
        }
        i++;
    }
    *scan = i < len ? i : len;
    return 0;
}

static int refuse(struct h1_head *h, int status, const char *reason)
{
    h->status = status;
    h->reason = reason;
    return status;
}

/* Cuts the line at *p (up to end) and returns it NUL-terminated; *p moves past
 * its line end (CRLF or LF). */
static char *next_line(char **p, char *end)
{
    char *line = *p;
    char *lf = memchr(line, '\n', (size_t)(end - line));
    if (lf == NULL) lf = end - 1; /* cannot happen: the head ends in an empty line */
    char *stop = lf > line && lf[-1] == '\r' ? lf - 1 : lf;
    *stop = '\0';
    *lf = '\0';
    *p = lf + 1;
    return line;
}

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static int parse_request_line(char *line, struct h1_head *h)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = strrchr(line, ' ');
    if (sp1 == NULL || sp2 == sp1) return refuse(h, 400, "malformed request line");
    *sp1 = '\0';
    *sp2 = '\0';
    h->method = line;
    h->target = sp1 + 1;
    h->version = sp2 + 1;
    const char *v = h->version;
    if (strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' || v[7] < '0' ||
        v[7] > '9' || v[8] != '\0')
        return refuse(h, 400, "malformed HTTP version");
    if (v[5] != '1') return refuse(h, 505, "HTTP version not supported");
    h->minor = v[7] - '0';
    return 0;
}

int h1_parse_head(char *buf, size_t len, struct h1_head *h)
{
    h->method = h->target = h->version = NULL;
    h->n_fields = 0;
    h->status = 0;
    h->reason = NULL;
    char *p = buf, *end = buf + len;
    while (p < end && (*p == '\r' || *p == '\n')) p++; /* empty lines first */
    bool nul = memchr(p, '\0', (size_t)(end - p)) != NULL;
    char *line = next_line(&p, end);
    int rc = parse_request_line(line, h);
    /* The request line is split first, so a refusal still names what it could read. */
    if (nul) return refuse(h, 400, "NUL byte in request head");
    if (rc != 0) return rc;
    while (p < end) {
        if (*p == '\n' || (p[0] == '\r' && p + 1 < end && p[1] == '\n')) break; /* the end */
        if (*p == '\r') return refuse(h, 400, "bare CR in header");
        if (is_ows(*p)) return refuse(h, 400, "obs-fold line (continuation) in header");
        line = next_line(&p, end);
        char *colon = strchr(line, ':');
        if (colon == NULL) return refuse(h, 400, "header line without a colon");
        if (h->n_fields == H1_MAX_FIELDS) return refuse(h, 431, "too many header fields");
        *colon = '\0';
        char *v = colon + 1, *ve = v + strlen(v);
        while (is_ows(*v)) v++;
        while (ve > v && is_ows(ve[-1])) ve--;
        *ve = '\0';
        h->fields[h->n_fields].name = line;
        h->fields[h->n_fields].value = v;
        h->n_fields++;
    }
    return 0;
}

int h1_oversize_status(const char *buf, size_t len, const char **reason)
{
    size_t i = 0;
    while (i < len && (buf[i] == '\r' || buf[i] == '\n')) i++;
    if (memchr(buf + i, '\n', len - i) == NULL) {
        *reason = "request target too long";
        return 414;
    }
    *reason = "request header fields too large";
    return 431;
}

int h1_content_length(const char *value, uint64_t *out)
{
    uint64_t n = 0;
    if (*value == '\0') return -1;
    for (const char *p = value; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        if (n > (UINT64_MAX - 9) / 10) return -1;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    *out = n;
    return 0;
}

/* ---- chunked bodies ---- */

enum {
    CH_SIZE,       /* hex digits of the chunk size */
    CH_SIZE_WS,    /* after the size: BWS, then ';' or the line end */
    CH_EXT,        /* after ';': extensions up to the line end */
    CH_SIZE_LF,    /* CR seen after the size line */
    CH_DATA,       /* chunk bytes */
    CH_DATA_CR,    /* CRLF after the chunk */
    CH_DATA_LF,
    CH_TRAILER,    /* a trailer line, or the final empty line */
    CH_TRAILER_LF, /* CR seen on a trailer line */
    CH_DONE,
};

/* Bounds on what is not body: a size line (leading zeros included) with its
 * extensions, and the trailers. */
#define CH_MAX_LINE 4096
#define CH_MAX_TRAILER 16384

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int bad(const char **reason, const char *why)
{
    *reason = why;
    return -1;
}

int h1_chunked_decode(struct h1_chunked *st, char *in, size_t len, size_t *consumed,
                      size_t *out_len, const char **reason)
{
    size_t i = 0, out = 0;
    while (i < len && st->state != CH_DONE) {
        char c = in[i];
        switch (st->state) {
        case CH_SIZE: {
            int v = hexval(c);
            if (v >= 0) {
                if (++st->line > CH_MAX_LINE) return bad(reason, "chunk size line too long");
                if (st->left > (UINT64_MAX >> 4)) return bad(reason, "chunk size too large");
                st->left = (st->left << 4) | (uint64_t)v;
                st->digits = true;
                i++;
                break;
            }
            if (!st->digits) return bad(reason, "invalid chunk size");
            st->state = CH_SIZE_WS;
            break; /* c is looked at again after the size */
        }
        case CH_SIZE_WS:
            /* chunk-size [ chunk-ext ] CRLF, chunk-ext = *( BWS ";" ... ): anything
             * else after the digits ("0x5", "5,6") is refused, not skipped as an
             * extension: a hop that reads "0x5" as 5 would otherwise send five
             * bytes of body that are read here after a last chunk, as trailers or as
             * the next request (docs/design.md, invariant 8). */
            if (++st->line > CH_MAX_LINE) return bad(reason, "chunk size line too long");
            i++;
            if (c == ' ' || c == '\t') break;
            if (c == ';') st->state = CH_EXT;
            else if (c == '\r') st->state = CH_SIZE_LF;
            else if (c == '\n') goto size_line_done;
            else return bad(reason, "invalid chunk size");
            break;
        case CH_EXT:
            i++;
            if (++st->line > CH_MAX_LINE) return bad(reason, "chunk size line too long");
            if (c == '\r') st->state = CH_SIZE_LF;
            else if (c == '\n') goto size_line_done;
            else if (c == '\0') return bad(reason, "NUL byte in chunk extension");
            break;
        case CH_SIZE_LF:
            if (c != '\n') return bad(reason, "bare CR in chunk size line");
            i++;
        size_line_done:
            st->line = 0;
            st->digits = false;
            st->state = st->left == 0 ? CH_TRAILER : CH_DATA;
            break;
        case CH_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > st->left) n = (size_t)st->left;
            memmove(in + out, in + i, n);
            out += n;
            i += n;
            st->left -= n;
            if (st->left == 0) st->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            i++;
            if (c == '\n') st->state = CH_SIZE;
            else if (c == '\r') st->state = CH_DATA_LF;
            else return bad(reason, "chunk data longer than its size");
            break;
        case CH_DATA_LF:
            i++;
            if (c != '\n') return bad(reason, "chunk data longer than its size");
            st->state = CH_SIZE;
            break;
        case CH_TRAILER:
            i++;
            if (++st->trailer > CH_MAX_TRAILER) return bad(reason, "chunked trailer too large");
            if (c == '\0') return bad(reason, "NUL byte in chunked trailer");
            if (c == '\r') {
                st->state = CH_TRAILER_LF;
            } else if (c == '\n') {
                if (st->line == 0) st->state = CH_DONE;
                st->line = 0;
            } else {
                st->line++;
            }
            break;
        case CH_TRAILER_LF:
            i++;
            if (c != '\n') return bad(reason, "bare CR in chunked trailer");
            st->state = st->line == 0 ? CH_DONE : CH_TRAILER;
            st->line = 0;
            break;
        default:
            return bad(reason, "invalid chunked state");
        }
    }
    st->done = st->state == CH_DONE;
    *consumed = i;
    *out_len = out;
    return 0;
}
