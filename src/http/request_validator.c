/* request_validator.c - see request_validator.h. */
#include "request_validator.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
 * "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool request_is_token(const char *s, size_t len)
{
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i])) return false;
    return true;
}

bool request_is_field_value(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\t' || c == ' ' || (c > 0x20 && c != 0x7f)) continue;
        return false;
    }
    return true;
}

static int refuse(struct request_verdict *out, int status, const char *reason)
{
    out->status = status;
    out->reason = reason;
    return status;
}

/* Methods are case-sensitive and every registered one is upper-case; a lower-case
 * "get" is some other method that an upstream may or may not fold, so refuse it
 * rather than let two hops disagree. */
static bool method_ok(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 32) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)m[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* Origin-form of visible ASCII; no '#'.  Percent-escapes must be well formed, so
 * no hop can decode them differently. */
static int target_check(const char *method, const char *t, const struct request_limits *lim,
                        struct request_verdict *out)
{
    size_t n = strlen(t);
    if (strcmp(t, "*") == 0) {
        if (strcmp(method, "OPTIONS") == 0) return 0;
        return refuse(out, 400, "asterisk-form target outside OPTIONS");
    }
    if (n == 0 || t[0] != '/') return refuse(out, 400, "request target is not origin-form");
    if (lim && lim->max_target_bytes && n > lim->max_target_bytes)
        return refuse(out, 414, "request target too long");
    size_t params = 0;
    bool in_query = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c >= 0x7f) return refuse(out, 400, "invalid byte in request target");
        if (c == '#') return refuse(out, 400, "fragment in request target");
        if (c == '%') {
            static const char HEX[] = "0123456789abcdefABCDEF";
            if (t[i + 1] == '\0' || t[i + 2] == '\0' || strchr(HEX, t[i + 1]) == NULL ||
                strchr(HEX, t[i + 2]) == NULL)
                return refuse(out, 400, "bad percent-escape in request target");
        }
        if (c == '?' && !in_query) {
            in_query = true;
            params = 1;
        } else if (in_query && c == '&') {
            params++;
        }
    }
    if (lim && lim->max_query_params && params > lim->max_query_params)
        return refuse(out, 414, "too many query parameters");
    return 0;
}

/* True when a Transfer-Encoding value is exactly "chunked" (any case, optional
 * surrounding whitespace).  Any other coding, or a list, is not something the
 * front end decodes, so it is refused rather than forwarded undecoded. */
static bool te_is_chunked(const char *v)
{
    while (*v == ' ' || *v == '\t') v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    return n == 7 && strncasecmp(v, "chunked", 7) == 0;
}

static bool content_length_ok(const char *v)
{
    while (*v == ' ' || *v == '\t') v++;
    size_t digits = 0;
    while (v[digits] >= '0' && v[digits] <= '9') digits++;
    if (digits == 0 || digits > 18) return false;
    const char *p = v + digits;
    while (*p == ' ' || *p == '\t') p++;
    return *p == '\0';
}

int request_validate(const char *method, const char *target, const char *version,
                     const struct http_header *h, size_t n, const struct request_limits *lim,
                     struct request_verdict *out)
{
    out->status = 0;
    out->reason = NULL;
    if (method == NULL || !method_ok(method)) return refuse(out, 400, "invalid method");
    bool http11;
    if (version && strcmp(version, "HTTP/1.1") == 0) http11 = true;
    else if (version && strcmp(version, "HTTP/1.0") == 0) http11 = false;
    else return refuse(out, 400, "unsupported HTTP version");
    if (target == NULL) return refuse(out, 400, "missing request target");
    int rc = target_check(method, target, lim, out);
    if (rc != 0) return rc;

    if (lim && lim->max_header_fields && n > lim->max_header_fields)
        return refuse(out, 431, "too many header fields");
    size_t total = 0, hosts = 0, te = 0, cl = 0;
    const char *cl_value = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *name = h[i].name, *value = h[i].value ? h[i].value : "";
        size_t nl = strlen(name), vl = strlen(value);
        total += nl + vl + 4;
        if (!request_is_token(name, nl)) return refuse(out, 400, "invalid header field name");
        if (!request_is_field_value(value, vl))
            return refuse(out, 400, "invalid byte in header field value");
        if (strcasecmp(name, "host") == 0) {
            hosts++;
        } else if (strcasecmp(name, "transfer-encoding") == 0) {
            te++;
            if (!te_is_chunked(value)) return refuse(out, 501, "unsupported transfer coding");
        } else if (strcasecmp(name, "content-length") == 0) {
            if (!content_length_ok(value)) return refuse(out, 400, "invalid Content-Length");
            /* Identical repeats are harmless (RFC 9112 §6.3 lets a recipient fold them);
             * differing ones are the classic request-smuggling split. */
            if (cl_value && strcmp(cl_value, value) != 0)
                return refuse(out, 400, "conflicting Content-Length");
            cl_value = value;
            cl++;
        }
    }
    if (lim && lim->max_header_bytes && total > lim->max_header_bytes)
        return refuse(out, 431, "request header fields too large");
    if (http11 && hosts == 0) return refuse(out, 400, "missing Host");
    if (hosts > 1) return refuse(out, 400, "more than one Host");
    if (te > 1) return refuse(out, 400, "repeated Transfer-Encoding");
    if (te && cl) return refuse(out, 400, "both Transfer-Encoding and Content-Length");
    if (te && !http11) return refuse(out, 400, "Transfer-Encoding in an HTTP/1.0 request");
    return 0;
}
