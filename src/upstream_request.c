/* upstream_request.c - see upstream_request.h. */
#include "upstream_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fetch plus what it owns; f comes first so the two convert. */
struct upstream_request {
    struct upstream_fetch f;
    struct buf req_body;
    void *owner;
};

void upstream_request_free(struct upstream_fetch *f)
{
    struct upstream_request *ur = (struct upstream_request *)f;
    upstream_fetch_clear(f);
    buf_free(&ur->req_body);
    free(ur);
}

void *upstream_request_owner(struct upstream_fetch *f)
{
    return ((struct upstream_request *)f)->owner;
}

void upstream_request_set_owner(struct upstream_fetch *f, void *owner)
{
    ((struct upstream_request *)f)->owner = owner;
}

static bool conditional_or_range(const char *name)
{
    return strcmp(name, "if-none-match") == 0 || strcmp(name, "if-modified-since") == 0 ||
           strcmp(name, "range") == 0 || strcmp(name, "if-range") == 0;
}

struct upstream_fetch *upstream_request_build(const struct upstream_request_input *in)
{
    struct upstream_request *ur = calloc(1, sizeof *ur);
    if (ur == NULL) return NULL;
    struct upstream_fetch *f = &ur->f;
    ur->owner = in->owner;
    /* A cacheable HEAD fetches the full GET so the entry serves both. */
    f->method = in->for_cache ? "GET" : in->method;
    f->head_only = !in->for_cache && strcmp(in->method, "HEAD") == 0;
    f->target = strdup(in->uri);
    f->buffer_limit = in->buffer_limit;
    f->on_ready = in->on_ready;
    f->on_free = upstream_request_free;
    if (f->target == NULL) goto fail;

    const struct header_list *h = in->headers;
    const char *connection = header_list_get(h, "connection");
    const char *xff = NULL;
    for (size_t i = 0; i < h->n; i++) {
        const char *name = h->items[i].name;
        const char *value = h->items[i].value;
        if (headers_is_hop_by_hop(name, connection)) continue;
        if (strcmp(name, "host") == 0 || strcmp(name, "content-length") == 0 ||
            strcmp(name, "expect") == 0 || strcmp(name, "via") == 0)
            continue;
        if (strcmp(name, "x-forwarded-for") == 0) {
            xff = value;
            continue;
        }
        if (in->for_cache && conditional_or_range(name)) continue;
        if (header_list_add(&f->req_headers, name, value) != 0) goto fail;
    }
    char line[1024];
    if (xff) snprintf(line, sizeof line, "%s, %s", xff, in->client_ip);
    else snprintf(line, sizeof line, "%s", in->client_ip);
    const char *host = header_list_get(h, "host");
    if (header_list_add(&f->req_headers, "X-Forwarded-For", line) != 0 ||
        header_list_add(&f->req_headers, "X-Forwarded-Proto", "http") != 0 ||
        (host && header_list_add(&f->req_headers, "X-Forwarded-Host", host) != 0))
        goto fail;
    const char *via = header_list_get(h, "via");
    snprintf(line, sizeof line, "%s%s1.1 cachegw", via ? via : "", via ? ", " : "");
    if (header_list_add(&f->req_headers, "Via", line) != 0) goto fail;

    if (!in->for_cache && in->body) {
        ur->req_body = *in->body;
        memset(in->body, 0, sizeof *in->body);
        f->req_body = ur->req_body.data;
        f->req_body_len = ur->req_body.len;
    }
    return f;
fail:
    upstream_request_free(f);
    return NULL;
}

void upstream_request_add_validators(struct upstream_fetch *f, const struct cache_object *stale)
{
    if (stale == NULL) return;
    const char *etag = cache_object_header(stale, "etag");
    const char *lm = cache_object_header(stale, "last-modified");
    if (etag) header_list_add(&f->req_headers, "If-None-Match", etag);
    if (lm) header_list_add(&f->req_headers, "If-Modified-Since", lm);
}
