/* cache_fetch.c - see cache_fetch.h. */
#include "cache_fetch.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_tiers.h"
#include "io_loop.h"
#include "log.h"
#include "proxy.h"
#include "stats.h"

enum fetch_state {
    FETCH_RUNNING,   /* the upstream has not answered */
    FETCH_READY,     /* it has; the owner was told (or there is none) */
    FETCH_ABANDONED, /* the owner left before it answered: the loop finishes and frees */
};

struct cache_fetch {
    struct gateway *gw;
    struct upstream_fetch *up;
    struct flight *flight;            /* open until finished */
    struct cache_object *stale;       /* one reference, or NULL */
    struct cache_object *stored;      /* one reference, or NULL */
    const char *not_stored;
    bool failed;
    bool finished;
    bool has_hook;
    bool request_no_store;
    uint64_t gen;                     /* cache_tiers_generation() when it began */
    struct store_overrides ov;
    struct header_list req_headers;   /* for Vary (the forwarded set, copied) */
    char **tags;
    size_t n_tags;
    char *key;
    void (*on_ready)(void *owner);
    void *owner;
    _Atomic int state;
};

int cache_fetch_error_status(const struct upstream_fetch *f)
{
    return f->error == UPSTREAM_TIMEOUT ? 504 : f->error == UPSTREAM_BUSY ? 503 : 502;
}

static void fetch_free(struct cache_fetch *cf)
{
    if (cf == NULL) return;
    assert(cf->flight == NULL || !cf->finished);
    if (cf->flight) coalesce_finish(cf->gw->coalescer, cf->flight, FLIGHT_RETRY, NULL, 0);
    if (cf->up) upstream_request_free(cf->up);
    cache_object_unref(cf->stale);
    cache_object_unref(cf->stored);
    header_list_free(&cf->req_headers);
    for (size_t i = 0; i < cf->n_tags; i++) free(cf->tags[i]);
    free(cf->tags);
    free(cf->key);
    free(cf);
}

void cache_fetch_finish(struct cache_fetch *cf, cache_fill_hook_fn hook, void *hook_arg)
{
    assert(!cf->finished);
    assert(atomic_load(&cf->state) != FETCH_RUNNING);
    cf->finished = true;
    struct gateway *gw = cf->gw;
    struct upstream_fetch *f = cf->up;
    struct flight *flight = cf->flight;
    cf->flight = NULL;
    bool stale_ok = cf->stale && cache_rules_stale_if_error(cf->stale, clock_wall_ms());
    if (f == NULL || f->error != UPSTREAM_OK || (f->status >= 500 && stale_ok)) {
        /* Nothing to store; the waiters decide on their own stale copies. */
        cf->failed = true;
        coalesce_finish(gw->coalescer, flight, FLIGHT_FAILED, NULL,
                        f == NULL || f->error != UPSTREAM_OK ? cache_fetch_error_status(f)
                                                             : f->status);
        return;
    }
    if (f->stream != NULL) {
        /* Grew past MAX_VALUE_SIZE: streamed to the client, never stored. */
        cf->not_stored = "too-big";
        STATS_INC(too_big);
        STATS_INC(not_stored);
    } else if (cf->has_hook && hook == NULL) {
        /* Its on_response hook could not run (the owner left): store nothing. */
        cf->not_stored = "policy";
        STATS_INC(not_stored);
    } else {
        struct fill_input in = {.key = cf->key,
                                .req_headers = &cf->req_headers,
                                .status = f->status,
                                .resp_headers = &f->resp_headers,
                                .body = f->body.data,
                                .body_len = f->body.len,
                                .revalidated = cf->stale,
                                .ov = &cf->ov,
                                .request_no_store = cf->request_no_store,
                                .gen = cf->gen,
                                .tags = cf->tags,
                                .n_tags = cf->n_tags,
                                .hook = hook,
                                .hook_arg = hook_arg};
        cf->stored = cache_fill(gw, &in, &cf->not_stored);
    }
    coalesce_finish(gw->coalescer, flight, cf->stored ? FLIGHT_STORED : FLIGHT_RETRY, cf->stored,
                    0);
}

/* I/O loop: the upstream answered (or failed, or its body outgrew the buffer). */
static void fetch_ready(struct upstream_fetch *f)
{
    struct cache_fetch *cf = upstream_request_owner(f);
    int expected = FETCH_RUNNING;
    if (cf->on_ready != NULL &&
        atomic_compare_exchange_strong(&cf->state, &expected, FETCH_READY)) {
        cf->on_ready(cf->owner);
        return;
    }
    /* A background refresh, or an owner that left: finish here. */
    atomic_store(&cf->state, FETCH_READY);
    if (f->error != UPSTREAM_OK && cf->on_ready == NULL)
        LOG_W("background refresh of %s failed: %s", cf->key, f->errmsg);
    cache_fetch_finish(cf, NULL, NULL);
    if (f->stream) {
        /* Nobody reads it: abort the transfer (the stream frees the fetch). */
        upstream_request_set_owner(f, NULL);
        cf->up = NULL;
        upstream_stream_release(f->stream);
    }
    fetch_free(cf);
}

struct cache_fetch *cache_fetch_start(struct gateway *gw, const struct cache_fetch_input *in)
{
    struct cache_fetch *cf = calloc(1, sizeof *cf);
    bool ok = cf != NULL;
    if (ok) {
        cf->gw = gw;
        cf->flight = in->flight;
        cf->stale = in->stale ? cache_object_ref(in->stale) : NULL;
        cf->ov = in->ov ? *in->ov
                        : (struct store_overrides){.ttl_ms = -1, .swr_ms = -1, .sie_ms = -1};
        cf->request_no_store = in->request_no_store;
        cf->has_hook = in->has_hook;
        cf->on_ready = in->on_ready;
        cf->owner = in->owner;
        atomic_init(&cf->state, FETCH_RUNNING);
        /* Captured before the fetch: an invalidation that arrives meanwhile voids the fill. */
        cf->gen = cache_tiers_generation(gw);
        cf->key = strdup(in->key);
        ok = cf->key != NULL;
        for (size_t i = 0; ok && i < in->headers->n; i++)
            ok = header_list_add(&cf->req_headers, in->headers->items[i].name,
                                 in->headers->items[i].value) == 0;
        if (ok && in->n_tags > 0) {
            cf->tags = calloc(in->n_tags, sizeof *cf->tags);
            ok = cf->tags != NULL;
            for (size_t i = 0; ok && i < in->n_tags; i++) {
                cf->tags[i] = strdup(in->tags[i]);
                ok = cf->tags[i] != NULL;
                cf->n_tags += ok;
            }
        }
    }
    if (ok) {
        struct upstream_request_input ui = {.method = in->method,
                                            .uri = in->uri,
                                            .headers = in->headers,
                                            .client_ip = in->client_ip,
                                            .for_cache = true,
                                            .buffer_limit = gw->cfg->max_value_bytes,
                                            .on_ready = fetch_ready,
                                            .owner = cf,
                                            .upstream = in->upstream,
                                            .balance_key = in->key};
        cf->up = upstream_request_build(&ui);
        ok = cf->up != NULL;
    }
    if (!ok) {
        if (cf == NULL) coalesce_finish(gw->coalescer, in->flight, FLIGHT_RETRY, NULL, 0);
        fetch_free(cf); /* closes the flight as RETRY */
        return NULL;
    }
    upstream_request_add_validators(cf->up, cf->stale);
    STATS_INC(upstream_requests);
    if (proxy_submit(gw->proxy, cf->up) != 0) {
        /* Never started (shutting down): nothing will call on_ready. */
        fetch_free(cf);
        return NULL;
    }
    return cf;
}

void cache_fetch_result(const struct cache_fetch *cf, struct cache_fetch_result *out)
{
    assert(cf->finished);
    *out = (struct cache_fetch_result){.upstream = cf->up,
                                       .stored = cf->stored,
                                       .not_stored = cf->not_stored,
                                       .failed = cf->failed};
}

struct upstream_fetch *cache_fetch_take_upstream(struct cache_fetch *cf)
{
    struct upstream_fetch *f = cf->up;
    cf->up = NULL;
    return f;
}

void cache_fetch_release(struct cache_fetch *cf, cache_fill_hook_fn hook, void *hook_arg)
{
    if (cf == NULL) return;
    int expected = FETCH_RUNNING;
    if (atomic_compare_exchange_strong(&cf->state, &expected, FETCH_ABANDONED))
        return; /* the loop finishes and frees it when the upstream answers */
    if (!cf->finished) cache_fetch_finish(cf, hook, hook_arg);
    fetch_free(cf);
}

void cache_fetch_refresh(struct gateway *gw, const char *key, struct cache_object *stale,
                         const struct store_overrides *ov, const char *method, const char *uri,
                         const struct header_list *headers, const char *client_ip,
                         const char *upstream, char *const *tags, size_t n_tags)
{
    struct flight *flight;
    if (!coalesce_try_lead(gw->coalescer, key, strlen(key), &flight)) return;
    struct cache_fetch_input in = {.key = key,
                                   .method = method,
                                   .uri = uri,
                                   .headers = headers,
                                   .client_ip = client_ip,
                                   .stale = stale,
                                   .ov = ov,
                                   .tags = tags,
                                   .n_tags = n_tags,
                                   .flight = flight,
                                   .upstream = upstream};
    cache_fetch_start(gw, &in); /* finishes and frees itself on the loop */
}
