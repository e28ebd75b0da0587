/* cache_fill.c - see cache_fill.h. */
#include "cache_fill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache_key.h"
#include "cache_tiers.h"
#include "compress.h"
#include "http_date.h"
#include "io_loop.h"
#include "stats.h"

/* MAX_KEPT bounds the stored header lines; LIST_BUF a combined list field
 * (Connection, Vary, Cache-Control) read from the response. */
enum { MAX_KEPT = 128, LIST_BUF = 4096 };

static void store_both(struct gateway *gw, struct cache_object *obj)
{
    if (cache_tiers_store(gw, obj) == 0) STATS_INC(stores);
}

/* Issue 12: what the configuration says about storage (cache_rules.h). */
static void rules_opts_of(const struct gateway *gw, const struct fill_input *in,
                          struct cache_rules_opts *o)
{
    const struct config *cfg = gw->cfg;
    *o = (struct cache_rules_opts){
        .default_ttl_ms = (int64_t)cfg->default_ttl_s * 1000,
        .max_value_bytes = cfg->max_value_bytes,
        .heuristic_percent = cfg->heuristic_percent,
        .heuristic_max_ms = (int64_t)cfg->heuristic_max_s * 1000,
        .targeted_field = cfg->targeted_cache_control,
        .request_authorization =
            in->req_headers != NULL && header_list_get(in->req_headers, "authorization") != NULL};
}

/* Issue 12: the compression settings (compress.h); false when COMPRESS is empty. */
static bool compress_opts_of(const struct config *cfg, struct compress_opts *o)
{
    *o = (struct compress_opts){.min_bytes = cfg->compress_min_bytes,
                                .types = cfg->compress_types,
                                .gzip_level = 6,
                                .br_quality = 5};
    const char *c = cfg->compress ? cfg->compress : "";
    o->gzip = headers_has_token(c, "gzip");
    o->br = headers_has_token(c, "br");
    return o->gzip || o->br;
}

/* True when the space-separated list has the tag t[0..len). */
static bool tag_listed(const char *list, const char *t, size_t len)
{
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, " ");
        if (n == len && memcmp(p, t, len) == 0) return true;
        p += n;
        while (*p == ' ') p++;
    }
    return false;
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
    char *coded = NULL; /* the body with its compressed copies (issue 12) */
    size_t coded_len = 0;
    *reason = NULL;

    if (in->request_no_store) {
        *reason = "request-no-store";
        return NULL;
    }
    if (status == 304 && in->revalidated) {
        if (cache_rules_merge_304(in->revalidated, in->resp_headers, &merged) != 0) {
            *reason = "out-of-memory";
            goto done;
        }
        /* The stored body without its compressed copies: they are made again. */
        struct compress_layout layout;
        if (compress_layout_of(in->revalidated, &layout) < 0) {
            *reason = "bad-layout";
            goto done;
        }
        status = in->revalidated->status;
        headers = &merged;
        body = in->revalidated->body;
        body_len = layout.identity_len;
    }

    struct store_decision d;
    struct cache_rules_opts ropts;
    rules_opts_of(gw, in, &ropts);
    cache_rules_response_ex(status, headers, body_len, now, &ropts, in->ov, &d);
    if (d.store && in->hook) in->hook(in->hook_arg, status, headers, &d);
    if (!d.store) {
        *reason = d.reason ? d.reason : "not-storable";
        if (d.reason && strcmp(d.reason, "too-big") == 0) STATS_INC(too_big);
        goto done;
    }

    /* The key is derived from the request and may carry client bytes: one
     * that contains the internal separator could name another URL's variant,
     * so it is not cacheable (cache_key.h).  A variant key reaches us only
     * from our own builder (the request followed a Vary marker); its base is
     * what the policy or the target gave. */
    size_t key_len = strlen(in->key);
    size_t base_len = cache_key_base_len(in->key, key_len);
    bool is_variant = base_len < key_len;
    if (!cache_key_is_valid(in->key, base_len) ||
        (is_variant && !cache_key_is_variant(in->key, key_len))) {
        *reason = "invalid-key";
        goto done;
    }

    /* List fields are read over all their lines (RFC 9110 §5.3); one too
     * long to read in full is not understood, so the response is not kept. */
    char connection[LIST_BUF], vary[LIST_BUF], cc[LIST_BUF];
    int conn_lines = header_list_get_all(headers, "connection", connection, sizeof connection);
    int vary_lines = header_list_get_all(headers, "vary", vary, sizeof vary);
    int cc_lines = header_list_get_all(headers, "cache-control", cc, sizeof cc);
    if (conn_lines < 0 || vary_lines < 0 || cc_lines < 0) {
        *reason = "list-too-long";
        goto done;
    }
    /* Issue 12: a response the upstream encoded (it was forwarded the client's
     * Accept-Encoding) varies on Accept-Encoding even when it does not say so: another
     * client may not accept that coding.  Stored as a Vary of its own. */
    const char *coding = header_list_get(headers, "content-encoding");
    bool implicit_ae = coding != NULL && strcasecmp(coding, "identity") != 0 &&
                       !(vary_lines > 0 && headers_has_token(vary, "accept-encoding"));
    if (implicit_ae) {
        size_t vl = strlen(vary);
        if (vl + sizeof ", accept-encoding" > sizeof vary) {
            *reason = "list-too-long";
            goto done;
        }
        snprintf(vary + vl, sizeof vary - vl, "%saccept-encoding", vl ? ", " : "");
        if (vary_lines == 0) vary_lines = 1;
    }
    /* + 5: the tags, the effective targeted directives, the compression layout, an
     * implicit Vary and a Date. */
    struct http_header kept[MAX_KEPT + 5];
    size_t n = 0;
    bool vary_kept = false, cc_kept = false;
    for (size_t i = 0; i < headers->n && n < MAX_KEPT; i++) {
        const char *name = headers->items[i].name;
        if (!cache_rules_header_storable(name, conn_lines > 0 ? connection : NULL) ||
            strncmp(name, "x-cachegw-", 10) == 0)
            continue;
        /* Vary and Cache-Control are stored as one combined line, so every
         * later reader of the stored object sees the whole list. */
        if (strcmp(name, "vary") == 0) {
            if (!vary_kept) kept[n++] = (struct http_header){"vary", vary};
            vary_kept = true;
        } else if (strcmp(name, "cache-control") == 0) {
            if (!cc_kept) kept[n++] = (struct http_header){"cache-control", cc};
            cc_kept = true;
        } else {
            kept[n++] = headers->items[i];
        }
    }
    if (implicit_ae && !vary_kept) kept[n++] = (struct http_header){"vary", vary};
    /* RFC 9110 §6.6.1: a response cached without Date gets the time it was received;
     * hits then serve that Date unchanged (issue 12 item 4). */
    char date[32];
    if (header_list_get(headers, "date") == NULL &&
        http_date_format(now / 1000, date, sizeof date) == 0)
        kept[n++] = (struct http_header){"date", date};
    /* Tags: the route's, plus the upstream's Surrogate-Key (space-separated,
     * every line of it). */
    char tags[1024];
    size_t tlen = 0;
    tags[0] = '\0';
    for (size_t i = 0; i < in->n_tags; i++) {
        if (tlen + strlen(in->tags[i]) + 2 >= sizeof tags) {
            /* A tag we cannot record could not be invalidated: do not store. */
            *reason = "tags-too-long";
            goto done;
        }
        tlen += (size_t)snprintf(tags + tlen, sizeof tags - tlen, "%s%s", tlen ? " " : "",
                                 in->tags[i]);
    }
    char sk[sizeof tags];
    int sk_lines = headers_get_all(headers->items, headers->n, "surrogate-key", " ", sk, sizeof sk);
    if (sk_lines < 0 || (sk_lines > 0 && tlen + strlen(sk) + 2 >= sizeof tags)) {
        /* A tag we cannot record could not be invalidated: do not store. */
        *reason = "tags-too-long";
        goto done;
    }
    if (sk_lines > 0 && sk[0])
        tlen += (size_t)snprintf(tags + tlen, sizeof tags - tlen, "%s%s", tlen ? " " : "", sk);
    /* A 304 keeps the entry's tags: they are its metadata, not one of the fields
     * the 304 may replace (a background refresh may not know the route's). */
    const char *old_tags = in->status == 304 && in->revalidated
                               ? cache_object_field(in->revalidated, CACHE_FIELD_TAGS)
                               : NULL;
    for (const char *t = old_tags; t && *t;) {
        size_t len = strcspn(t, " ");
        if (len > 0 && !tag_listed(tags, t, len)) {
            if (tlen + len + 2 >= sizeof tags) {
                *reason = "tags-too-long";
                goto done;
            }
            tlen += (size_t)snprintf(tags + tlen, sizeof tags - tlen, "%s%.*s", tlen ? " " : "",
                                     (int)len, t);
        }
        t += len;
        while (*t == ' ') t++;
    }
    if (tlen > 0) kept[n++] = (struct http_header){CACHEGW_TAGS_HEADER, tags};
    /* Issue 12: the targeted field's directives rule reuse (cache_rules.h), and
     * compressed copies are made once, here (compress.h). */
    if (d.effective_cc[0])
        kept[n++] = (struct http_header){CACHE_RULES_EFFECTIVE_CC_HEADER, d.effective_cc};
    struct compress_opts copts;
    char layout_hdr[96];
    if (compress_opts_of(gw->cfg, &copts)) {
        int rc = compress_encode(&copts, status, headers, body, body_len, gw->cfg->max_value_bytes,
                                 &coded, &coded_len, layout_hdr, sizeof layout_hdr);
        if (rc == 1) {
            body = coded;
            body_len = coded_len;
            kept[n++] = (struct http_header){COMPRESS_HEADER, layout_hdr};
        }
    }
    struct cache_meta meta = {.gen = in->gen,
                              .stored_at_ms = now,
                              .initial_age_s = d.initial_age_s,
                              .ttl_ms = d.ttl_ms,
                              .swr_ms = d.swr_ms,
                              .sie_ms = d.sie_ms};
    char variant[CACHE_KEY_VARIANT_MAX];
    char base[CACHE_KEY_VARIANT_MAX];
    const char *store_key = in->key;
    if (vary_lines > 0 && vary[0]) {
        if (base_len >= sizeof base) {
            *reason = "vary-too-long";
            goto done;
        }
        memcpy(base, in->key, base_len);
        base[base_len] = '\0';
        if (cache_rules_variant_key(base, vary, in->req_headers, variant, sizeof variant) != 0) {
            *reason = "vary-too-long";
            goto done;
        }
        /* A request that followed a marker arrives with its variant key; when
         * this response varies the same way it is that key again, and the
         * marker stays.  Otherwise the marker is (re)written below. */
        bool same_variant = is_variant && strcmp(variant, in->key) == 0;
        if (!same_variant) {
            /* The marker is written once per generation of the URL: variants
             * stored before it (older stored_at) belong to an invalidated
             * generation and are ignored on lookup, so a write that drops
             * the marker drops every variant with it. */
            if (!cache_tiers_marker_current(gw, base, base_len, vary, now)) {
                struct http_header marker = {CACHE_RULES_VARY_HEADER, vary};
                struct cache_object *m =
                    cache_object_build(base, base_len, 200, &marker, 1, "", 0, &meta);
                if (m) store_both(gw, m);
                cache_object_unref(m);
            }
        }
        store_key = variant;
    }
    obj = cache_object_build(store_key, strlen(store_key), status, kept, n, body, body_len, &meta);
    if (obj == NULL) *reason = "unencodable";
    else store_both(gw, obj);
done:
    free(coded);
    header_list_free(&merged);
    if (obj == NULL) STATS_INC(not_stored);
    return obj;
}
