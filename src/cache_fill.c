/* cache_fill.c - see cache_fill.h. */
#include "cache_fill.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cache_tiers.h"
#include "inval_index.h"
#include "io_loop.h"
#include "stats.h"
#include "store_l1.h"

enum { MAX_KEPT = 128 };

static void store_both(struct gateway *gw, struct cache_object *obj, int64_t now)
{
    if (store_l1_put(gw->l1, obj, now) == 0) STATS_INC(stores);
    cache_tiers_l2_put(gw, obj);
}

/* RFC 9111 §4.3.4: a 304 updates the stored headers with its own, except the
 * framing ones. */
static int merge_304(const struct cache_object *old, const struct header_list *fresh,
                     struct header_list *out)
{
    for (size_t i = 0; i < old->n_headers; i++) {
        if (header_list_get(fresh, old->headers[i].name) &&
            cache_rules_header_storable(old->headers[i].name, NULL))
            continue;
        if (header_list_add(out, old->headers[i].name, old->headers[i].value) != 0) return -1;
    }
    for (size_t i = 0; i < fresh->n; i++) {
        if (strcasecmp(fresh->items[i].name, "content-length") == 0) continue;
        if (header_list_add(out, fresh->items[i].name, fresh->items[i].value) != 0) return -1;
    }
    return 0;
}

struct cache_object *cache_fill(struct gateway *gw, const struct fill_input *in,
                                const char **reason)
{
    int64_t now = clock_wall_ms();
    int status = in->status;
    const struct header_list *headers = in->resp_headers;
    const char *body = in->body;
    size_t body_len = in->body_len;
    struct header_list merged = {0};
    struct cache_object *obj = NULL;
    *reason = NULL;

    if (in->request_no_store) {
        *reason = "request-no-store";
        return NULL;
    }
    if (status == 304 && in->revalidated) {
        if (merge_304(in->revalidated, in->resp_headers, &merged) != 0) {
            *reason = "out-of-memory";
            goto done;
        }
        status = in->revalidated->status;
        headers = &merged;
        body = in->revalidated->body;
        body_len = in->revalidated->body_len;
    }

    struct store_decision d;
    cache_rules_response(status, headers, body_len, now, (int64_t)gw->cfg->default_ttl_s * 1000,
                         gw->cfg->max_value_bytes, in->ov, &d);
    if (d.store && in->hook) in->hook(in->hook_arg, status, headers, &d);
    if (!d.store) {
        *reason = d.reason ? d.reason : "not-storable";
        if (d.reason && strcmp(d.reason, "too-big") == 0) STATS_INC(too_big);
        goto done;
    }

    const char *connection = header_list_get(headers, "connection");
    struct http_header kept[MAX_KEPT + 1];
    size_t n = 0;
    for (size_t i = 0; i < headers->n && n < MAX_KEPT; i++)
        if (cache_rules_header_storable(headers->items[i].name, connection) &&
            strncmp(headers->items[i].name, "x-cachegw-", 10) != 0)
            kept[n++] = headers->items[i];
    /* Tags: the route's, plus the upstream's Surrogate-Key (space-separated). */
    char tags[1024];
    size_t tlen = 0;
    tags[0] = '\0';
    for (size_t i = 0; i < in->n_tags && tlen + strlen(in->tags[i]) + 2 < sizeof tags; i++)
        tlen += (size_t)snprintf(tags + tlen, sizeof tags - tlen, "%s%s", tlen ? " " : "",
                                 in->tags[i]);
    const char *sk = header_list_get(headers, "surrogate-key");
    if (sk && tlen + strlen(sk) + 2 < sizeof tags)
        tlen += (size_t)snprintf(tags + tlen, sizeof tags - tlen, "%s%s", tlen ? " " : "", sk);
    if (tlen > 0) kept[n++] = (struct http_header){CACHEGW_TAGS_HEADER, tags};
    struct cache_meta meta = {.gen = in->gen,
                              .stored_at_ms = now,
                              .initial_age_s = d.initial_age_s,
                              .ttl_ms = d.ttl_ms,
                              .swr_ms = d.swr_ms,
                              .sie_ms = d.sie_ms};
    const char *vary = header_list_get(headers, "vary");
    char variant[2048];
    const char *store_key = in->key;
    if (vary && strstr(in->key, "#vary|") == NULL) {
        if (cache_rules_variant_key(in->key, vary, in->req_headers, variant, sizeof variant) != 0) {
            *reason = "vary-too-long";
            goto done;
        }
        /* The marker is written once per generation of the URL: variants
         * stored before it (older stored_at) belong to an invalidated
         * generation and are ignored on lookup, so a write that drops the
         * marker drops every variant with it. */
        struct cache_object *old = store_l1_get(gw->l1, in->key, strlen(in->key), now);
        const char *old_vary = old ? cache_object_header(old, CACHE_RULES_VARY_HEADER) : NULL;
        bool keep = old_vary && strcmp(old_vary, vary) == 0 && inval_index_valid(gw->inval, old);
        cache_object_unref(old);
        if (!keep) {
            struct http_header marker = {CACHE_RULES_VARY_HEADER, vary};
            struct cache_object *m =
                cache_object_build(in->key, strlen(in->key), 200, &marker, 1, "", 0, &meta);
            if (m) store_both(gw, m, now);
            cache_object_unref(m);
        }
        store_key = variant;
    }
    obj = cache_object_build(store_key, strlen(store_key), status, kept, n, body, body_len, &meta);
    if (obj == NULL) *reason = "unencodable";
    else store_both(gw, obj, now);
done:
    header_list_free(&merged);
    if (obj == NULL) STATS_INC(not_stored);
    return obj;
}
