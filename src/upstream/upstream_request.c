/* upstream_request.c - see upstream_request.h. */
#include "upstream_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "upstream_set.h"

/* The fetch plus what it owns; f comes first so the two convert. */
struct upstream_request {
    struct upstream_fetch f;
    struct buf req_body;
    void *owner;
    char *balance_key;
};

void upstream_request_free(struct upstream_fetch *f)
{
    struct upstream_request *ur = (struct upstream_request *)f;
    upstream_fetch_clear(f);
    buf_free(&ur->req_body);
    free(ur->balance_key);
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
    if (in->upstream != NULL && strcmp(in->upstream, UPSTREAM_DEFAULT_NAME) != 0) {
        f->group = upstream_registry_get(upstream_registry_global(), in->upstream);
        if (f->group == NULL) {
            char uri[256];
            log_escape_uri(in->uri, uri, sizeof uri);
            LOG_E("upstream '%s' is not known (no registry, or a reload dropped it twice "
                  "over): not forwarding %s %s", in->upstream, in->method, uri);
            goto fail;
        }
        f->retry_unsafe = in->retry_unsafe;
        /* A pass-through has no cache key: hash its URI, so one URL sticks to one
         * instance too. */
        const char *bk = in->balance_key != NULL ? in->balance_key : in->uri;
        if ((ur->balance_key = strdup(bk)) == NULL) goto fail;
        f->balance_key = ur->balance_key;
    }

    /* in->headers is already the forwarded set (forward_headers): hop-by-hop and
     * steering fields dropped, the gateway's X-Forwarded-* and Via added.  Host
     * stays for policies but libcurl sends the upstream's own. */
    const struct header_list *h = in->headers;
    for (size_t i = 0; i < h->n; i++) {
        const char *name = h->items[i].name;
        if (strcmp(name, "host") == 0) continue;
        if (in->for_cache && conditional_or_range(name)) continue;
        if (header_list_add(&f->req_headers, name, h->items[i].value) != 0) goto fail;
    }

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
