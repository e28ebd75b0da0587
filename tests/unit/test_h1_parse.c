/* Unit tests for h1_parse: where a request head ends, how it is split into the
 * request line and fields (and what is refused with which status), the
 * oversize status, Content-Length values and the chunked body decoder. */
#include <stdlib.h>

#include "h1_parse.h"
#include "test.h"

/* ---- h1_head_end ---- */

/* The end found for buf[0..len) when its bytes arrive in two reads split at k,
 * the scan position carried over as the server carries it. */
static size_t head_end_split(const char *buf, size_t len, size_t k)
{
    size_t scan = 0;
    size_t end = h1_head_end(buf, k, &scan);
    if (end != 0) return end;
    CHECK(scan <= k);
    return h1_head_end(buf, len, &scan);
}

/* The end found when buf arrives one byte at a time; it must be reported at
 * the first length that holds it, and never before. */
static size_t head_end_bytewise(const char *buf, size_t len)
{
    size_t scan = 0;
    for (size_t k = 1; k <= len; k++) {
        size_t end = h1_head_end(buf, k, &scan);
        if (end != 0) {
            CHECK_EQ_INT(end, k);
            return end;
        }
        CHECK(scan <= k);
    }
    return 0;
}

static void check_head_end(const char *buf, size_t expect)
{
    size_t len = strlen(buf);
    size_t scan = 0;
    CHECK_EQ_INT(h1_head_end(buf, len, &scan), expect);
    for (size_t k = 0; k <= len; k++) {
        size_t got = head_end_split(buf, len, k);
        if (got != expect) {
            fprintf(stderr, "  split at %zu of \"%s\": %zu, expected %zu\n", k, buf, got, expect);
            CHECK_EQ_INT(got, expect);
        }
    }
    CHECK_EQ_INT(head_end_bytewise(buf, len), expect);
}

TEST(head_end_crlf_and_lf)
{
    const char *a = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    check_head_end(a, strlen(a));
    const char *b = "GET / HTTP/1.1\nHost: a\n\n";
    check_head_end(b, strlen(b));
    /* Mixed: LF then CRLF, CRLF then LF. */
    const char *c = "GET / HTTP/1.1\nHost: a\n\r\n";
    check_head_end(c, strlen(c));
    const char *d = "GET / HTTP/1.1\r\nHost: a\r\n\n";
    check_head_end(d, strlen(d));
    /* No fields: the request line's end, then the empty line. */
    const char *e = "GET / HTTP/1.1\r\n\r\n";
    check_head_end(e, strlen(e));
}

TEST(head_end_with_bytes_after)
{
    /* The end is just past the empty line; what follows (a body, the next
     * request) is not part of the head. */
    const char *a = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    check_head_end(a, strlen(a) - 3);
    const char *b = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n";
    check_head_end(b, strlen("GET /1 HTTP/1.1\r\n\r\n"));
    const char *c = "GET /1 HTTP/1.1\n\nGET /2 HTTP/1.1\n\n";
    check_head_end(c, strlen("GET /1 HTTP/1.1\n\n"));
}

TEST(head_end_incomplete)
{
    check_head_end("GET / HTTP/1.1\r\nHost: a\r\n", 0);
    check_head_end("GET / HTTP/1.1\r\nHost: a\r\n\r", 0);
    check_head_end("GET / HTTP/1.1", 0);
    check_head_end("", 0);
    /* A bare CR is not a line end: CR CR LF after a line is not the empty line. */
    check_head_end("GET / HTTP/1.1\r\n\r\r\n", 0);
    check_head_end("GET / HTTP/1.1\r\r\n", 0);
}

TEST(head_end_skips_leading_empty_lines)
{
    const char *a = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    check_head_end(a, strlen(a));
    const char *b = "\n\n\nGET / HTTP/1.1\n\n";
    check_head_end(b, strlen(b));
    check_head_end("\r\n\r\n", 0);
    check_head_end("\n\n\n\n", 0);
    check_head_end("\r\n", 0);
}

/* ---- h1_parse_head ---- */

/* Parses a copy of text (its head part) and returns the status; *h is filled. */
static char parse_buf[65536];
static int parse(const char *text, size_t len, struct h1_head *h)
{
    CHECK(len < sizeof parse_buf);
    memcpy(parse_buf, text, len);
    size_t scan = 0;
    size_t end = h1_head_end(parse_buf, len, &scan);
    CHECK(end != 0);
    if (end == 0) end = len;
    int rc = h1_parse_head(parse_buf, end, h);
    CHECK_EQ_INT(rc, h->status);
    CHECK(rc == 0 ? h->reason == NULL : h->reason != NULL);
    /* Every string lies in the caller's buffer (parsing is in place). */
    const char *strs[3] = {h->method, h->target, h->version};
    for (int i = 0; i < 3; i++)
        if (strs[i] != NULL) CHECK(strs[i] >= parse_buf && strs[i] < parse_buf + end);
    CHECK(h->n_fields <= H1_MAX_FIELDS);
    for (size_t i = 0; i < h->n_fields; i++) {
        CHECK(h->fields[i].name >= parse_buf && h->fields[i].name < parse_buf + end);
        CHECK(h->fields[i].value >= parse_buf && h->fields[i].value < parse_buf + end);
    }
    return rc;
}

static int parse_str(const char *text, struct h1_head *h) { return parse(text, strlen(text), h); }

TEST(request_line_forms)
{
    struct h1_head h;
    CHECK_EQ_INT(parse_str("GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n", &h), 0);
    CHECK_EQ_STR(h.method, "GET");
    CHECK_EQ_STR(h.target, "/a?b=c");
    CHECK_EQ_STR(h.version, "HTTP/1.1");
    CHECK_EQ_INT(h.minor, 1);
    CHECK_EQ_INT(h.n_fields, 1);

    CHECK_EQ_INT(parse_str("OPTIONS * HTTP/1.1\r\n\r\n", &h), 0);
    CHECK_EQ_STR(h.method, "OPTIONS");
    CHECK_EQ_STR(h.target, "*");
    CHECK_EQ_INT(h.n_fields, 0);

    CHECK_EQ_INT(parse_str("GET http://example.com/x HTTP/1.1\r\n\r\n", &h), 0);
    CHECK_EQ_STR(h.target, "http://example.com/x");
    CHECK_EQ_INT(parse_str("CONNECT example.com:443 HTTP/1.1\r\n\r\n", &h), 0);
    CHECK_EQ_STR(h.method, "CONNECT");
    CHECK_EQ_STR(h.target, "example.com:443");

    /* Bare LF line ends and leading empty lines. */
    CHECK_EQ_INT(parse_str("\r\n\nPOST /p HTTP/1.0\nA: 1\n\n", &h), 0);
    CHECK_EQ_STR(h.method, "POST");
    CHECK_EQ_STR(h.target, "/p");
    CHECK_EQ_INT(h.minor, 0);
    CHECK_EQ_INT(h.n_fields, 1);
    CHECK_EQ_STR(h.fields[0].name, "A");
    CHECK_EQ_STR(h.fields[0].value, "1");

    /* Not "method SP target SP version". */
    const char *bad[] = {"GET\r\n\r\n", "GET /\r\n\r\n", "GET/ HTTP/1.1\r\n\r\n",
                         "\r\nGET\r\nHost: a\r\n\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(parse_str(bad[i], &h), 400);
        CHECK_EQ_STR(h.reason, "malformed request line");
        CHECK(h.method == NULL && h.target == NULL && h.version == NULL);
    }
}

TEST(versions)
{
    struct h1_head h;
    CHECK_EQ_INT(parse_str("GET / HTTP/1.0\r\n\r\n", &h), 0);
    CHECK_EQ_INT(h.minor, 0);
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\n\r\n", &h), 0);
    CHECK_EQ_INT(h.minor, 1);
    CHECK_EQ_INT(parse_str("GET / HTTP/1.9\r\n\r\n", &h), 0);
    CHECK_EQ_INT(h.minor, 9);

    CHECK_EQ_INT(parse_str("GET / HTTP/9.9\r\n\r\n", &h), 505);
    CHECK_EQ_STR(h.reason, "HTTP version not supported");
    CHECK_EQ_STR(h.method, "GET"); /* the refusal names what it read */
    CHECK_EQ_STR(h.version, "HTTP/9.9");
    CHECK_EQ_INT(parse_str("GET / HTTP/2.0\r\n\r\n", &h), 505);
    CHECK_EQ_INT(parse_str("GET / HTTP/0.9\r\n\r\n", &h), 505);

    const char *bad[] = {"HTTP/1", "HTTP/1.", "HTTP/1.10", "HTTP/11.1", "http/1.1", "HTTP/1.x",
                         "HTTP/x.1", "HTTP/1,1", "HTTPS/1.1", "HTTP/1.1 ", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[64];
        snprintf(line, sizeof line, "GET / %s\r\n\r\n", bad[i]);
        int rc = parse_str(line, &h);
        if (rc != 400) fprintf(stderr, "  version \"%s\": %d\n", bad[i], rc);
        CHECK_EQ_INT(rc, 400);
    }
    CHECK_EQ_INT(parse_str("GET / HTTP/1\r\n\r\n", &h), 400);
    CHECK_EQ_STR(h.reason, "malformed HTTP version");
    CHECK_EQ_STR(h.target, "/");
}

TEST(fields_trimmed_names_kept)
{
    struct h1_head h;
    const char *req = "GET / HTTP/1.1\r\n"
                      "Host:example.com\r\n"
                      "X-A: \t a b \t \r\n"
                      "x-CaSe:v\r\n"
                      "X-Empty:\r\n"
                      "X-Spaces:   \r\n"
                      "X-Colon: a:b: c\r\n"
                      "X-Sp : v\r\n"
                      "\r\n";
    CHECK_EQ_INT(parse_str(req, &h), 0);
    CHECK_EQ_INT(h.n_fields, 7);
    if (h.n_fields != 7) return;
    CHECK_EQ_STR(h.fields[0].name, "Host");
    CHECK_EQ_STR(h.fields[0].value, "example.com");
    CHECK_EQ_STR(h.fields[1].name, "X-A");
    CHECK_EQ_STR(h.fields[1].value, "a b"); /* inner OWS kept */
    CHECK_EQ_STR(h.fields[2].name, "x-CaSe"); /* case kept */
    CHECK_EQ_STR(h.fields[2].value, "v");
    CHECK_EQ_STR(h.fields[3].value, "");
    CHECK_EQ_STR(h.fields[4].value, "");
    CHECK_EQ_STR(h.fields[5].name, "X-Colon");
    CHECK_EQ_STR(h.fields[5].value, "a:b: c");
    /* A name is kept byte for byte, its trailing space included: the
     * validator refuses it, so the parser must not hide it. */
    CHECK_EQ_STR(h.fields[6].name, "X-Sp ");
    CHECK_EQ_STR(h.fields[6].value, "v");

    /* A bare CR inside a value stays in it (the validator refuses it). */
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", &h), 0);
    CHECK_EQ_STR(h.fields[0].value, "a\rb");
    /* A bare-LF line end does not take a CR from the value. */
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\nX: a\r\r\n\n", &h), 0);
    CHECK_EQ_STR(h.fields[0].value, "a\r");
}

TEST(nul_refused)
{
    struct h1_head h;
    static const char in_field[] = "GET /x HTTP/1.1\r\nHost: a\0b\r\n\r\n";
    CHECK_EQ_INT(parse(in_field, sizeof in_field - 1, &h), 400);
    CHECK_EQ_STR(h.reason, "NUL byte in request head");
    CHECK_EQ_STR(h.method, "GET");
    CHECK_EQ_STR(h.target, "/x");
    CHECK_EQ_STR(h.version, "HTTP/1.1");

    /* At the start of a field line: the line must not end the head early. */
    static const char line_start[] = "GET /x HTTP/1.1\r\n\0Smuggled: 1\r\n\r\n";
    CHECK_EQ_INT(parse(line_start, sizeof line_start - 1, &h), 400);
    CHECK_EQ_STR(h.reason, "NUL byte in request head");
    CHECK_EQ_STR(h.target, "/x");

    static const char in_name[] = "GET /x HTTP/1.1\r\nHo\0st: a\r\n\r\n";
    CHECK_EQ_INT(parse(in_name, sizeof in_name - 1, &h), 400);
    CHECK_EQ_STR(h.reason, "NUL byte in request head");

    /* In the request line: the line is not readable, nothing is named. */
    static const char in_target[] = "GET /a\0b HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(parse(in_target, sizeof in_target - 1, &h), 400);
    CHECK_EQ_STR(h.reason, "NUL byte in request head");
    CHECK(h.method == NULL);
    static const char in_version[] = "GET /a HTTP/1.1\0\r\n\r\n";
    CHECK_EQ_INT(parse(in_version, sizeof in_version - 1, &h), 400);
    CHECK_EQ_STR(h.reason, "NUL byte in request head");
    static const char first[] = "\0GET /a HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(parse(first, sizeof first - 1, &h), 400);
    CHECK_EQ_STR(h.reason, "NUL byte in request head");
    /* In the last field line, just before the empty line. */
    static const char last[] = "GET /x HTTP/1.1\r\nA: b\0\r\n\r\n";
    CHECK_EQ_INT(parse(last, sizeof last - 1, &h), 400);
    CHECK_EQ_STR(h.reason, "NUL byte in request head");
    CHECK_EQ_STR(h.method, "GET");
}

TEST(malformed_field_lines)
{
    struct h1_head h;
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\nA: 1\r\n  continued\r\n\r\n", &h), 400);
    CHECK_EQ_STR(h.reason, "obs-fold line (continuation) in header");
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\nA: 1\r\n\tcontinued\r\n\r\n", &h), 400);
    CHECK_EQ_STR(h.reason, "obs-fold line (continuation) in header");
    /* Whitespace before the first field line is the same thing. */
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\n Host: a\r\n\r\n", &h), 400);
    CHECK_EQ_STR(h.reason, "obs-fold line (continuation) in header");

    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\nHost a\r\n\r\n", &h), 400);
    CHECK_EQ_STR(h.reason, "header line without a colon");
    CHECK_EQ_STR(h.method, "GET");
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\nA: 1\r\nnocolon\n\n", &h), 400);
    CHECK_EQ_STR(h.reason, "header line without a colon");

    /* A line starting with a bare CR. */
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\n\rX: y\r\n\r\n", &h), 400);
    CHECK_EQ_STR(h.reason, "bare CR in header");
    CHECK_EQ_INT(parse_str("GET / HTTP/1.1\r\nA: 1\r\n\r\r\n\r\n", &h), 400);
    CHECK_EQ_STR(h.reason, "bare CR in header");
}

static void many_fields(char *buf, size_t cap, int n)
{
    size_t len = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < n; i++) len += (size_t)snprintf(buf + len, cap - len, "X-%d: %d\r\n", i, i);
    snprintf(buf + len, cap - len, "\r\n");
}

TEST(field_count)
{
    static char buf[8192];
    struct h1_head h;
    many_fields(buf, sizeof buf, H1_MAX_FIELDS);
    CHECK_EQ_INT(parse_str(buf, &h), 0);
    CHECK_EQ_INT(h.n_fields, H1_MAX_FIELDS);
    CHECK_EQ_STR(h.fields[H1_MAX_FIELDS - 1].name, "X-128");
    CHECK_EQ_STR(h.fields[H1_MAX_FIELDS - 1].value, "128");
    many_fields(buf, sizeof buf, 130);
    CHECK_EQ_INT(parse_str(buf, &h), 431);
    CHECK_EQ_STR(h.reason, "too many header fields");
    CHECK_EQ_INT(h.n_fields, H1_MAX_FIELDS);
    many_fields(buf, sizeof buf, 400);
    CHECK_EQ_INT(parse_str(buf, &h), 431);
}

TEST(oversize_status)
{
    const char *reason = NULL;
    const char *line = "GET /aaaaaaaaaaaaaaaaaaaaaaaaa";
    CHECK_EQ_INT(h1_oversize_status(line, strlen(line), &reason), 414);
    CHECK_EQ_STR(reason, "request target too long");
    /* Leading empty lines do not count as a request line. */
    const char *lead = "\r\n\r\nGET /aaaaaaaaaaaaa";
    CHECK_EQ_INT(h1_oversize_status(lead, strlen(lead), &reason), 414);
    const char *fields = "GET / HTTP/1.1\r\nX: aaaaaaaaaaaaaa";
    CHECK_EQ_INT(h1_oversize_status(fields, strlen(fields), &reason), 431);
    CHECK_EQ_STR(reason, "request header fields too large");
    const char *lf = "GET / HTTP/1.1\nX: aaaaaaaaaaaaaa";
    CHECK_EQ_INT(h1_oversize_status(lf, strlen(lf), &reason), 431);
}

/* ---- h1_content_length ---- */

TEST(content_length)
{
    uint64_t n = 7;
    CHECK_EQ_INT(h1_content_length("0", &n), 0);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(h1_content_length("123", &n), 0);
    CHECK_EQ_INT(n, 123);
    CHECK_EQ_INT(h1_content_length("000042", &n), 0);
    CHECK_EQ_INT(n, 42);
    CHECK_EQ_INT(h1_content_length("18446744073709551609", &n), 0);
    CHECK(n == UINT64_C(18446744073709551609));
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1,1", "1.0", "0x10", "1e3", "a",
                         "18446744073709551616", "99999999999999999999",
                         "123456789012345678901234567890"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = 7;
        int rc = h1_content_length(bad[i], &n);
        if (rc != -1) fprintf(stderr, "  Content-Length \"%s\" accepted\n", bad[i]);
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_INT(n, 7); /* untouched on a refusal */
    }
}

/* ---- h1_chunked_decode ---- */

struct decoded {
    int rc;
    const char *reason;
    bool done;
    size_t consumed; /* input used */
    size_t out_len;
    char out[1 << 21];
};

static struct decoded dec_a, dec_b;

/* Decodes in[0..len) in one call. */
static void decode_whole(const char *in, size_t len, struct decoded *d)
{
    static char copy[1 << 21];
    struct h1_chunked st;
    memset(&st, 0, sizeof st);
    memcpy(copy, in, len);
    size_t consumed = 0, out = 0;
    d->reason = NULL;
    d->rc = h1_chunked_decode(&st, copy, len, &consumed, &out, &d->reason);
    d->done = st.done;
    d->consumed = d->rc == 0 ? consumed : 0;
    d->out_len = d->rc == 0 ? out : 0;
    if (d->rc == 0) {
        CHECK(consumed <= len);
        CHECK(out <= consumed);
        CHECK(consumed == len || st.done); /* input is left only once done */
        memcpy(d->out, copy, out);
    }
}

/* Decodes in[0..len) fed in pieces of step bytes (the decoder's state carries over),
 * stopping at the first error or once done. */
static void decode_pieces(const char *in, size_t len, size_t step, struct decoded *d)
{
    struct h1_chunked st;
    memset(&st, 0, sizeof st);
    char piece[4096];
    d->rc = 0;
    d->reason = NULL;
    d->consumed = 0;
    d->out_len = 0;
    size_t pos = 0;
    while (pos < len && !st.done) {
        size_t n = len - pos < step ? len - pos : step;
        if (n > sizeof piece) n = sizeof piece;
        memcpy(piece, in + pos, n);
        size_t consumed = 0, out = 0;
        if (h1_chunked_decode(&st, piece, n, &consumed, &out, &d->reason) != 0) {
            d->rc = -1;
            break;
        }
        CHECK(consumed == n || st.done);
        memcpy(d->out + d->out_len, piece, out);
        d->out_len += out;
        pos += consumed;
    }
    d->done = st.done;
    if (d->rc != 0) d->out_len = d->consumed = 0;
    else d->consumed = pos;
}

/* Decodes in both ways and checks they agree; returns the one-piece result. */
static const struct decoded *decode(const char *in, size_t len)
{
    decode_whole(in, len, &dec_a);
    size_t steps[] = {1, 2, 3, 7, 4096};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        decode_pieces(in, len, steps[i], &dec_b);
        CHECK_EQ_INT(dec_b.rc, dec_a.rc);
        CHECK_EQ_INT(dec_b.done, dec_a.done);
        CHECK_EQ_INT(dec_b.consumed, dec_a.consumed);
        CHECK_EQ_INT(dec_b.out_len, dec_a.out_len);
        CHECK(dec_b.out_len == dec_a.out_len &&
              memcmp(dec_b.out, dec_a.out, dec_a.out_len) == 0);
        if (dec_a.rc != 0) CHECK_EQ_STR(dec_b.reason, dec_a.reason);
    }
    return &dec_a;
}

static const struct decoded *decode_str(const char *in) { return decode(in, strlen(in)); }

static void check_body(const struct decoded *d, const char *body, size_t consumed)
{
    CHECK_EQ_INT(d->rc, 0);
    CHECK(d->done);
    CHECK_EQ_INT(d->consumed, consumed);
    CHECK_EQ_INT(d->out_len, strlen(body));
    CHECK(d->out_len == strlen(body) && memcmp(d->out, body, d->out_len) == 0);
}

TEST(chunked_sizes_in_hex)
{
    const char *a = "5\r\nhello\r\n0\r\n\r\n";
    check_body(decode_str(a), "hello", strlen(a));
    const char *b = "a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n";
    check_body(decode_str(b), "0123456789abcdefghij", strlen(b));
    /* Leading zeros and bare-LF line ends. */
    const char *c = "0003\nabc\n00\n\n";
    check_body(decode_str(c), "abc", strlen(c));
    /* An empty body. */
    check_body(decode_str("0\r\n\r\n"), "", 5);

    /* 0x1f = 31 bytes, 0x100 = 256 bytes. */
    static char big[1024];
    char body[300];
    memset(body, 'x', 31);
    memset(body + 31, 'y', 256);
    body[287] = '\0';
    size_t n = (size_t)snprintf(big, sizeof big, "1f\r\n%.31s\r\n100\r\n%s\r\n0\r\n\r\n", body,
                                body + 31);
    check_body(decode(big, n), body, n);
}

TEST(chunked_extensions_and_trailers)
{
    const char *a = "5;name=value\r\nhello\r\n3 ; a=\"b;c\" ;d\r\nabc\r\n0;last\r\n\r\n";
    check_body(decode_str(a), "helloabc", strlen(a));
    const char *b = "5\r\nhello\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n";
    check_body(decode_str(b), "hello", strlen(b));
    const char *c = "5\nhello\n0\nX-Trailer: 1\n\n";
    check_body(decode_str(c), "hello", strlen(c));
}

TEST(chunked_leaves_the_next_request)
{
    const char *body = "3\r\nabc\r\n0\r\n\r\n";
    char in[256];
    int n = snprintf(in, sizeof in, "%sGET /next HTTP/1.1\r\n\r\n", body);
    const struct decoded *d = decode(in, (size_t)n);
    check_body(d, "abc", strlen(body));
    /* With trailers. */
    const char *t = "3\r\nabc\r\n0\r\nT: 1\r\n\r\n";
    n = snprintf(in, sizeof in, "%sXYZ", t);
    check_body(decode(in, (size_t)n), "abc", strlen(t));
}

TEST(chunked_incomplete_is_not_done)
{
    const struct decoded *d = decode_str("5\r\nhel");
    CHECK_EQ_INT(d->rc, 0);
    CHECK(!d->done);
    CHECK_EQ_INT(d->out_len, 3);
    d = decode_str("5\r\nhello\r\n0\r\n");
    CHECK_EQ_INT(d->rc, 0);
    CHECK(!d->done);
    CHECK_EQ_INT(d->out_len, 5);
    d = decode_str("5\r\nhello\r\n0\r\nT: 1\r\n");
    CHECK_EQ_INT(d->rc, 0);
    CHECK(!d->done);
}

TEST(chunked_large)
{
    /* 1 MiB in chunks of 64 KiB + one odd chunk, byte by byte and whole. */
    static char in[(1 << 20) + 4096];
    static char body[(1 << 20) + 2]; /* 1 MiB, the odd byte, the NUL */
    size_t n = 0, b = 0;
    for (int i = 0; i < 16; i++) {
        n += (size_t)sprintf(in + n, "10000\r\n");
        for (int j = 0; j < 65536; j++) body[b++] = in[n++] = (char)('a' + (i + j) % 26);
        n += (size_t)sprintf(in + n, "\r\n");
    }
    n += (size_t)sprintf(in + n, "1\r\nZ\r\n0\r\n\r\n");
    body[b++] = 'Z';
    body[b] = '\0';
    const struct decoded *d = decode(in, n);
    CHECK_EQ_INT(d->rc, 0);
    CHECK(d->done);
    CHECK_EQ_INT(d->out_len, b);
    CHECK(d->out_len == b && memcmp(d->out, body, b) == 0);
}

static void check_bad(const char *in, size_t len, const char *reason)
{
    const struct decoded *d = decode(in, len);
    if (d->rc != -1) fprintf(stderr, "  accepted: \"%.60s\"\n", in);
    CHECK_EQ_INT(d->rc, -1);
    CHECK(d->reason != NULL);
    if (reason != NULL) CHECK_EQ_STR(d->reason, reason);
}

static void check_bad_str(const char *in, const char *reason) { check_bad(in, strlen(in), reason); }

TEST(chunked_malformed)
{
    check_bad_str("g\r\nabc\r\n0\r\n\r\n", "invalid chunk size");
    check_bad_str("\r\nabc\r\n0\r\n\r\n", "invalid chunk size");
    check_bad_str(" 3\r\nabc\r\n0\r\n\r\n", "invalid chunk size");
    check_bad_str("-3\r\nabc\r\n0\r\n\r\n", "invalid chunk size");
    check_bad_str("3\r\nabc\r\nzz\r\n\r\n", "invalid chunk size");
    check_bad_str("3\r\nabcd\r\n0\r\n\r\n", "chunk data longer than its size");
    check_bad_str("3\r\nabc\rX0\r\n\r\n", "chunk data longer than its size");
    check_bad_str("3\r\nabc0\r\n\r\n", "chunk data longer than its size");
    check_bad_str("10000000000000000\r\n", "chunk size too large");
    check_bad_str("fffffffffffffffff\r\n", "chunk size too large");
    check_bad_str("3\rX\r\nabc\r\n0\r\n\r\n", "bare CR in chunk size line");
    check_bad_str("5\r\nhello\r\n0\r\nT: 1\rX\r\n\r\n", "bare CR in chunked trailer");
    static const char nul_ext[] = "3;a\0b\r\nabc\r\n0\r\n\r\n";
    check_bad(nul_ext, sizeof nul_ext - 1, "NUL byte in chunk extension");
    static const char nul_trailer[] = "0\r\nT: a\0b\r\n\r\n";
    check_bad(nul_trailer, sizeof nul_trailer - 1, "NUL byte in chunked trailer");

    /* After the size only BWS, then ';' (an extension) or the line end: a
     * size a hop in front reads as hex with a "0x" prefix (strtol) must not
     * be read here as a last chunk of size 0 followed by a smuggled request. */
    check_bad_str("0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk size");
    check_bad_str("5x\r\nhello\r\n0\r\n\r\n", "invalid chunk size");
    check_bad_str("5 x\r\nhello\r\n0\r\n\r\n", "invalid chunk size");
    check_bad_str("5,6\r\nhello\r\n0\r\n\r\n", "invalid chunk size");
    check_bad_str("0 0\r\n\r\n", "invalid chunk size");
    const char *bws = "5 \t;a=b\r\nhello\r\n0 \r\n\r\n";
    check_body(decode_str(bws), "hello", strlen(bws));

    /* A size line of leading zeros is bounded like one of extensions. */
    static char zeros[8192];
    memset(zeros, '0', 5000);
    int z = 5000 + snprintf(zeros + 5000, sizeof zeros - 5000, "1\r\na\r\n0\r\n\r\n");
    check_bad(zeros, (size_t)z, "chunk size line too long");
    z = 100 + snprintf(zeros + 100, sizeof zeros - 100, "1\r\na\r\n0\r\n\r\n");
    check_body(decode(zeros + 4900, (size_t)z), "a", (size_t)z);

    /* An over-long size line (its extensions). */
    static char line[8192];
    int n = snprintf(line, sizeof line, "3;");
    memset(line + n, 'e', 5000);
    n += 5000;
    n += snprintf(line + n, sizeof line - (size_t)n, "\r\nabc\r\n0\r\n\r\n");
    check_bad(line, (size_t)n, "chunk size line too long");

    /* Over-long trailers: many short lines, and one long one. */
    static char tr[40000];
    n = snprintf(tr, sizeof tr, "0\r\n");
    for (int i = 0; i < 2000; i++) n += snprintf(tr + n, sizeof tr - (size_t)n, "T%d: v\r\n", i);
    n += snprintf(tr + n, sizeof tr - (size_t)n, "\r\n");
    check_bad(tr, (size_t)n, "chunked trailer too large");
    n = snprintf(tr, sizeof tr, "0\r\nT: ");
    memset(tr + n, 'v', 20000);
    n += 20000;
    n += snprintf(tr + n, sizeof tr - (size_t)n, "\r\n\r\n");
    check_bad(tr, (size_t)n, "chunked trailer too large");
}

int main(void)
{
    RUN(head_end_crlf_and_lf);
    RUN(head_end_with_bytes_after);
    RUN(head_end_incomplete);
    RUN(head_end_skips_leading_empty_lines);
    RUN(request_line_forms);
    RUN(versions);
    RUN(fields_trimmed_names_kept);
    RUN(nul_refused);
    RUN(malformed_field_lines);
    RUN(field_count);
    RUN(oversize_status);
    RUN(content_length);
    RUN(chunked_sizes_in_hex);
    RUN(chunked_extensions_and_trailers);
    RUN(chunked_leaves_the_next_request);
    RUN(chunked_incomplete_is_not_done);
    RUN(chunked_large);
    RUN(chunked_malformed);
    return TEST_SUMMARY();
}
