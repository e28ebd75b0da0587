/* h1_response.c - see h1_response.h. */
#include "h1_response.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct h1_response *response_new(void)
{
    struct h1_response *r = calloc(1, sizeof *r);
    if (r != NULL) atomic_init(&r->refs, 1);
    return r;
}

static void free_copy(void *cls) { free(cls); }

struct h1_response *h1_response_from_buffer(size_t len, const void *data,
                                            enum h1_body_mode mode)
{
    if (mode == H1_BODY_COPY) {
        void *copy = malloc(len > 0 ? len : 1);
        if (copy == NULL) return NULL;
        if (len > 0) memcpy(copy, data, len);
        struct h1_response *r = h1_response_from_buffer_free(len, copy, free_copy, copy);
        if (r == NULL) free(copy);
        return r;
    }
    struct h1_response *r = response_new();
    if (r == NULL) return NULL;
    r->body = data;
    r->size = len;
    return r;
}

struct h1_response *h1_response_from_buffer_free(size_t len, const void *data,
                                                 h1_free_fn free_cb, void *cls)
{
    struct h1_response *r = response_new();
    if (r == NULL) return NULL;
    r->body = data;
    r->size = len;
    r->free_cb = free_cb;
    r->free_cls = cls;
    return r;
}

struct h1_response *h1_response_from_reader(uint64_t size, size_t block, h1_reader_fn reader,
                                            void *cls, h1_free_fn free_cb)
{
    struct h1_response *r = response_new();
    if (r == NULL) return NULL;
    r->size = size;
    r->block = block > 0 ? block : 16 * 1024;
    r->reader = reader;
    r->reader_cls = cls;
    r->free_cb = free_cb;
    r->free_cls = cls;
    return r;
}

/* The fields the connection writes itself, from the response and the request. */
static bool framing_field(const char *name)
{
    return strcasecmp(name, "content-length") == 0 ||
           strcasecmp(name, "transfer-encoding") == 0 || strcasecmp(name, "connection") == 0;
}

static bool name_ok(const char *s)
{
    if (*s == '\0') return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == ':') return false;
    }
    return true;
}

static bool value_ok(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n') return false;
    return true;
}

int h1_response_add_header(struct h1_response *r, const char *name, const char *value)
{
    if (!name_ok(name) || !value_ok(value) || framing_field(name)) return -1;
    size_t nl = strlen(name), vl = strlen(value), need = nl + vl + 4;
    if (r->fields_len + need > r->fields_cap) {
        size_t cap = r->fields_cap ? r->fields_cap : 512;
        while (cap < r->fields_len + need) cap *= 2;
        char *f = realloc(r->fields, cap);
        if (f == NULL) {
            r->oom = true;
            return -1;
        }
        r->fields = f;
        r->fields_cap = cap;
    }
    char *p = r->fields + r->fields_len;
    memcpy(p, name, nl);
    p[nl] = ':';
    p[nl + 1] = ' ';
    memcpy(p + nl + 2, value, vl);
    p[nl + 2 + vl] = '\r';
    p[nl + 3 + vl] = '\n';
    r->fields_len += need;
    if (strcasecmp(name, "date") == 0) r->has_date = true;
    return 0;
}

struct h1_response *h1_response_ref(struct h1_response *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void h1_response_unref(struct h1_response *r)
{
    if (r == NULL) return;
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1) return;
    if (r->free_cb != NULL) r->free_cb(r->free_cls);
    free(r->fields);
    free(r);
}

const char *h1_reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}
