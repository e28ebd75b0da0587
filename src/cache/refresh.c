/* refresh.c - see refresh.h. */
#include "refresh.h"

#include <stdlib.h>
#include <string.h>

#include "cache_fill.h"
#include "coalesce.h"
#include "inval_index.h"
#include "log.h"
#include "proxy.h"
#include "stats.h"
#include "upstream_request.h"

struct refresh {
    struct gateway *gw;
    struct flight *flight;
    struct cache_object *stale;
    struct store_overrides ov;
    struct header_list req_headers; /* for Vary */
    char *key;
    uint64_t gen;
};

static void refresh_free(struct refresh *rf)
{
    cache_object_unref(rf->stale);
    header_list_free(&rf->req_headers);
    free(rf->key);
    free(rf);
}

/* Loop thread: the refresh's response is here. */
static void refresh_ready(struct upstream_fetch *f)
{
    struct refresh *rf = upstream_request_owner(f);
    struct gateway *gw = rf->gw;
    upstream_request_set_owner(f, NULL);
    if (f->stream) {
        /* Grew past MAX_VALUE_SIZE: nothing to store. */
        coalesce_finish(gw->coalescer, rf->flight, FLIGHT_RETRY, NULL, 0);
        refresh_free(rf);
        upstream_stream_release(f->stream); /* aborts; the fetch is freed via on_free */
        return;
    }
    if (f->error != UPSTREAM_OK || f->status >= 500) {
        LOG_W("background refresh of %s failed: %s", rf->key,
              f->error != UPSTREAM_OK ? f->errmsg : "5xx");
        coalesce_finish(gw->coalescer, rf->flight, FLIGHT_FAILED, NULL,
                        f->error == UPSTREAM_TIMEOUT ? 504 : 502);
    } else {
        struct fill_input in = {.key = rf->key,
                                .req_headers = &rf->req_headers,
                                .status = f->status,
                                .resp_headers = &f->resp_headers,
                                .body = f->body.data,
                                .body_len = f->body.len,
                                .revalidated = rf->stale,
                                .ov = &rf->ov,
                                .gen = rf->gen};
        const char *why;
        struct cache_object *obj = cache_fill(gw, &in, &why);
        coalesce_finish(gw->coalescer, rf->flight, obj ? FLIGHT_STORED : FLIGHT_RETRY, obj, 0);
        cache_object_unref(obj);
    }
    refresh_free(rf);
    upstream_request_free(f);
}

void refresh_start(struct gateway *gw, const struct refresh_input *in)
{
    struct flight *flight;
    if (!coalesce_try_lead(gw->coalescer, in->key, strlen(in->key), &flight)) return;
    struct refresh *rf = calloc(1, sizeof *rf);
    struct upstream_fetch *f = NULL;
    if (rf) {
        rf->gw = gw;
        rf->flight = flight;
        rf->stale = cache_object_ref(in->stale);
        rf->ov = *in->ov;
        rf->key = strdup(in->key);
        /* Captured before the fetch: a later invalidation voids this fill. */
        rf->gen = inval_index_current(gw->inval);
        for (size_t i = 0; i < in->headers->n; i++)
            header_list_add(&rf->req_headers, in->headers->items[i].name,
                            in->headers->items[i].value);
        struct upstream_request_input ui = {.method = in->method,
                                            .uri = in->uri,
                                            .headers = in->headers,
                                            .client_ip = in->client_ip,
                                            .for_cache = true,
                                            .buffer_limit = gw->cfg->max_value_bytes,
                                            .on_ready = refresh_ready,
                                            .owner = rf};
        f = upstream_request_build(&ui);
    }
    if (f == NULL || rf->key == NULL) {
        if (f) upstream_request_free(f);
        if (rf) refresh_free(rf);
        coalesce_finish(gw->coalescer, flight, FLIGHT_RETRY, NULL, 0);
        return;
    }
    upstream_request_add_validators(f, in->stale);
    STATS_INC(upstream_requests);
    if (proxy_submit(gw->proxy, f) != 0) {
        coalesce_finish(gw->coalescer, flight, FLIGHT_RETRY, NULL, 0);
        refresh_free(rf);
        upstream_request_free(f);
    }
}
