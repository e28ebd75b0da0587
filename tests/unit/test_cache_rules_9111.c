/* Unit tests for cache_rules, issue 12: statuses, heuristic freshness, must-understand,
 * response no-cache, Authorization (§3.5), targeted fields (RFC 9213), the 304 merge,
 * Vary: * over several lines, and the fields never passed to clients. */
#include "cache_rules.h"
#include "test.h"

static const int64_t NOW = 1700000000000LL; /* Tue, 14 Nov 2023 22:13:20 GMT */
#define DATE_NOW "Tue, 14 Nov 2023 22:13:20 GMT"

static struct header_list hl3(const char *n1, const char *v1, const char *n2, const char *v2,
                              const char *n3, const char *v3)
{
    struct header_list l = {0};
    if (n1) header_list_add(&l, n1, v1);
    if (n2) header_list_add(&l, n2, v2);
    if (n3) header_list_add(&l, n3, v3);
    return l;
}

static struct cache_rules_opts opts(void)
{
    return (struct cache_rules_opts){.default_ttl_ms = 0,
                                     .max_value_bytes = 1000,
                                     .heuristic_percent = 10,
                                     .heuristic_max_ms = 86400000,
                                     .targeted_field = NULL,
                                     .request_authorization = false};
}

TEST(s_maxage_on_one_line_beats_max_age_on_another)
{
    struct cache_rules_opts o = opts();
    struct store_decision d;
    struct header_list l = hl3("Cache-Control", "max-age=3600", "Cache-Control", "s-maxage=5",
                               NULL, NULL);
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 5000);
    header_list_free(&l);
}

TEST(any_final_status_with_explicit_freshness)
{
    static const int codes[] = {200, 203, 204, 299, 301, 302, 303, 307, 308, 400, 404, 405,
                                410, 414, 499, 500, 501, 502, 503, 504, 599};
    struct cache_rules_opts o = opts();
    struct store_decision d;
    struct header_list l = hl3("Cache-Control", "max-age=60", NULL, NULL, NULL, NULL);
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        cache_rules_response_ex(codes[i], &l, 10, NOW, &o, NULL, &d);
        if (!d.store) fprintf(stderr, "  %d not stored (%s)\n", codes[i], d.reason);
        CHECK(d.store);
        CHECK_EQ_INT(d.ttl_ms, 60000);
    }
    /* Never: interim, partial, 304 (it updates), outside 200-599. */
    static const int never[] = {100, 103, 199, 206, 304, 600, 999};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        cache_rules_response_ex(never[i], &l, 10, NOW, &o, NULL, &d);
        CHECK(!d.store);
        CHECK_EQ_STR(d.reason, "status");
    }
    header_list_free(&l);
}

TEST(heuristic_freshness_only_for_heuristic_codes_with_last_modified)
{
    struct cache_rules_opts o = opts();
    struct store_decision d;
    /* Modified 1000 s before Date: 10 % is 100 s. */
    struct header_list l = hl3("Date", DATE_NOW, "Last-Modified",
                               "Tue, 14 Nov 2023 21:56:40 GMT", NULL, NULL);
    static const int heuristic[] = {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501};
    for (size_t i = 0; i < sizeof heuristic / sizeof heuristic[0]; i++) {
        cache_rules_response_ex(heuristic[i], &l, 10, NOW, &o, NULL, &d);
        CHECK(d.store);
        CHECK_EQ_INT(d.ttl_ms, 100000);
    }
    static const int not_heuristic[] = {302, 303, 307, 400, 500, 502, 503, 299};
    for (size_t i = 0; i < sizeof not_heuristic / sizeof not_heuristic[0]; i++) {
        cache_rules_response_ex(not_heuristic[i], &l, 10, NOW, &o, NULL, &d);
        CHECK(!d.store);
        CHECK_EQ_STR(d.reason, "no-freshness");
    }
    /* public makes any status heuristically cacheable. */
    header_list_add(&l, "Cache-Control", "public");
    cache_rules_response_ex(302, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 100000);
    header_list_free(&l);

    /* Bounded by heuristic_max_ms. */
    l = hl3("Date", DATE_NOW, "Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT", NULL, NULL);
    o.heuristic_max_ms = 7000;
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 7000);
    /* 0 % disables it; DEFAULT_TTL then applies to 200/203 only. */
    o.heuristic_percent = 0;
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(!d.store);
    o.default_ttl_ms = 5000;
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 5000);
    cache_rules_response_ex(404, &l, 10, NOW, &o, NULL, &d);
    CHECK(!d.store);
    header_list_free(&l);

    /* No Last-Modified (or an invalid one): no heuristic. */
    o = opts();
    l = hl3("Date", DATE_NOW, "Last-Modified", "yesterday", NULL, NULL);
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(!d.store);
    header_list_free(&l);
    /* Last-Modified after Date: 0 s of freshness, not stored. */
    l = hl3("Date", DATE_NOW, "Last-Modified", "Wed, 15 Nov 2023 22:13:20 GMT", NULL, NULL);
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(!d.store);
    header_list_free(&l);
    /* Explicit freshness wins over the heuristic. */
    l = hl3("Date", DATE_NOW, "Last-Modified", "Tue, 14 Nov 2023 21:56:40 GMT", "Cache-Control",
            "max-age=3");
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK_EQ_INT(d.ttl_ms, 3000);
    header_list_free(&l);
}

TEST(must_understand)
{
    struct cache_rules_opts o = opts();
    struct store_decision d;
    struct header_list l = hl3("Cache-Control", "must-understand, no-store, max-age=60", NULL,
                               NULL, NULL, NULL);
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    cache_rules_response_ex(404, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    cache_rules_response_ex(299, &l, 10, NOW, &o, NULL, &d);
    CHECK(!d.store);
    CHECK_EQ_STR(d.reason, "must-understand");
    cache_rules_response_ex(599, &l, 10, NOW, &o, NULL, &d);
    CHECK(!d.store);
    header_list_free(&l);
    /* Without must-understand no-store still wins. */
    l = hl3("Cache-Control", "no-store, max-age=60", NULL, NULL, NULL, NULL);
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(!d.store);
    header_list_free(&l);
}

TEST(response_no_cache_is_stored_stale)
{
    struct cache_rules_opts o = opts();
    struct store_decision d;
    struct header_list l = hl3("Cache-Control", "no-cache, max-age=3600", "ETag", "\"v1\"",
                               NULL, NULL);
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 0);
    header_list_free(&l);
    /* Without a validator a revalidation is a full fetch: not stored. */
    l = hl3("Cache-Control", "no-cache, max-age=3600", NULL, NULL, NULL, NULL);
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(!d.store);
    CHECK_EQ_STR(d.reason, "no-cache");
    header_list_free(&l);

    /* Stored no-cache: never fresh, never stale-served, even with max-stale. */
    struct http_header h[2] = {{"cache-control", "no-cache, max-age=3600"}, {"etag", "\"v1\""}};
    struct cache_meta meta = {.stored_at_ms = NOW, .ttl_ms = 0};
    struct cache_object *obj = cache_object_build("k", 1, 200, h, 2, "b", 1, &meta);
    CHECK(obj != NULL);
    struct request_cc cc = {-1, -1, INT64_MAX, false, false, false};
    CHECK_EQ_INT(cache_rules_usability(obj, &cc, NOW), USE_REVALIDATE);
    CHECK(!cache_rules_stale_if_error(obj, NOW));
    cache_object_unref(obj);
}

TEST(authorization_needs_a_shared_directive)
{
    struct cache_rules_opts o = opts();
    o.request_authorization = true;
    struct store_decision d;
    struct header_list l = hl3("Cache-Control", "max-age=60", NULL, NULL, NULL, NULL);
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(!d.store);
    CHECK_EQ_STR(d.reason, "authorization");
    /* A per-user route keys on the credential: its own rule. */
    struct store_overrides ov = {-1, -1, -1, true, false};
    cache_rules_response_ex(200, &l, 10, NOW, &o, &ov, &d);
    CHECK(d.store);
    header_list_free(&l);
    const char *shared[] = {"public, max-age=60", "s-maxage=60", "max-age=60, must-revalidate"};
    for (size_t i = 0; i < 3; i++) {
        l = hl3("Cache-Control", "x", "Cache-Control", shared[i], NULL, NULL);
        cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
        CHECK(d.store);
        header_list_free(&l);
    }
    /* The request side: store-only for GET/HEAD with Authorization and no Cookie. */
    struct header_list auth = hl3("Authorization", "Bearer a", NULL, NULL, NULL, NULL);
    struct header_list both = hl3("Authorization", "Bearer a", "Cookie", "s=1", NULL, NULL);
    CHECK(cache_rules_request_store_only("GET", &auth));
    CHECK(cache_rules_request_store_only("HEAD", &auth));
    CHECK(!cache_rules_request_store_only("POST", &auth));
    CHECK(!cache_rules_request_store_only("GET", &both));
    struct header_list none = {0};
    CHECK(!cache_rules_request_store_only("GET", &none));
    header_list_free(&auth);
    header_list_free(&both);
}

TEST(targeted_fields_override_cache_control)
{
    struct cache_rules_opts o = opts();
    struct store_decision d;
    /* CDN-Cache-Control replaces Cache-Control and Expires. */
    struct header_list l = hl3("Cache-Control", "no-store", "CDN-Cache-Control", "max-age=30",
                               "Expires", "Tue, 14 Nov 2023 22:13:20 GMT");
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 30000);
    CHECK_EQ_STR(d.effective_cc, "max-age=30");
    header_list_free(&l);
    const char *refuse[][2] = {{"no-store", "no-store"}, {"private", "private"}};
    for (size_t i = 0; i < 2; i++) {
        l = hl3("Cache-Control", "max-age=60", "CDN-Cache-Control", refuse[i][0], NULL, NULL);
        cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
        CHECK(!d.store);
        CHECK_EQ_STR(d.reason, refuse[i][1]);
        header_list_free(&l);
    }
    l = hl3("Cache-Control", "max-age=60", "CDN-Cache-Control", "no-cache", "ETag", "\"e\"");
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 0);
    header_list_free(&l);
    /* An invalid targeted field is ignored: Cache-Control decides. */
    l = hl3("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=30, Bad Field", NULL,
            NULL);
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 60000);
    CHECK_EQ_STR(d.effective_cc, "");
    header_list_free(&l);
    /* The own field comes first; unset, it is an ordinary header. */
    l = hl3("Cache-Control", "max-age=60", "CDN-Cache-Control", "max-age=30",
            "Cachegw-Cache-Control", "max-age=10");
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK_EQ_INT(d.ttl_ms, 30000);
    o.targeted_field = "cachegw-cache-control";
    cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
    CHECK_EQ_INT(d.ttl_ms, 10000);
    CHECK_EQ_STR(d.effective_cc, "max-age=10");
    header_list_free(&l);

    /* A stored effective field rules reuse: must-revalidate there forbids stale use. */
    struct http_header h[2] = {{"cache-control", "max-age=60"},
                               {CACHE_RULES_EFFECTIVE_CC_HEADER, "max-age=1, must-revalidate"}};
    struct cache_meta meta = {.stored_at_ms = NOW - 10000, .ttl_ms = 1000};
    struct cache_object *obj = cache_object_build("k", 1, 200, h, 2, "b", 1, &meta);
    struct request_cc cc = {-1, -1, INT64_MAX, false, false, false};
    CHECK_EQ_INT(cache_rules_usability(obj, &cc, NOW), USE_REVALIDATE);
    cache_object_unref(obj);
    obj = cache_object_build("k", 1, 200, h, 1, "b", 1, &meta);
    CHECK_EQ_INT(cache_rules_usability(obj, &cc, NOW), USE_STALE_OK);
    cache_object_unref(obj);
}

TEST(consumed_fields)
{
    CHECK(cache_rules_header_consumed("cdn-cache-control", NULL));
    CHECK(cache_rules_header_consumed("Surrogate-Control", NULL));
    CHECK(cache_rules_header_consumed("surrogate-key", NULL));
    CHECK(cache_rules_header_consumed("x-cachegw-tags", NULL));
    CHECK(!cache_rules_header_consumed("cache-control", NULL));
    CHECK(!cache_rules_header_consumed("cachegw-cache-control", NULL));
    CHECK(cache_rules_header_consumed("Cachegw-Cache-Control", "cachegw-cache-control"));
    CHECK(!cache_rules_header_consumed("content-type", "cachegw-cache-control"));
}

TEST(vary_star_anywhere)
{
    struct cache_rules_opts o = opts();
    struct store_decision d;
    const char *cases[][2] = {{"Accept, *", NULL}, {"Accept,", "*"}, {"*", "Accept"},
                              {"Accept", " * "}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct header_list l = hl3("Cache-Control", "max-age=60", "Vary", cases[i][0],
                                   cases[i][1] ? "Vary" : NULL, cases[i][1]);
        cache_rules_response_ex(200, &l, 10, NOW, &o, NULL, &d);
        CHECK(!d.store);
        CHECK_EQ_STR(d.reason, "vary-star");
        header_list_free(&l);
    }
}

TEST(merge_304)
{
    struct http_header h[] = {{"content-type", "text/plain"}, {"etag", "\"v1\""},
                              {"cache-control", "max-age=1"}, {"x-a", "old"},
                              {"content-encoding", "gzip"},   {"x-cachegw-tags", "t1"},
                              {"x-kept", "yes"}};
    struct cache_meta meta = {.stored_at_ms = NOW, .ttl_ms = 1000};
    struct cache_object *old = cache_object_build("k", 1, 200, h, 7, "body", 4, &meta);
    CHECK(old != NULL);
    struct header_list fresh = {0};
    header_list_add(&fresh, "Cache-Control", "max-age=60");
    header_list_add(&fresh, "X-A", "new1");
    header_list_add(&fresh, "X-A", "new2");
    header_list_add(&fresh, "X-New", "n");
    header_list_add(&fresh, "Content-Length", "0");
    header_list_add(&fresh, "Content-Encoding", "br");
    header_list_add(&fresh, "X-Cachegw-Tags", "spoofed");
    header_list_add(&fresh, "Connection", "x-hop");
    header_list_add(&fresh, "X-Hop", "h");
    header_list_add(&fresh, "ETag", "\"v1\"");
    struct header_list out = {0};
    CHECK_EQ_INT(cache_rules_merge_304(old, &fresh, &out), 0);
    char v[256];
    CHECK_EQ_INT(header_list_get_all(&out, "cache-control", v, sizeof v), 1);
    CHECK_EQ_STR(v, "max-age=60");
    CHECK_EQ_INT(header_list_get_all(&out, "x-a", v, sizeof v), 2);
    CHECK_EQ_STR(v, "new1, new2");
    CHECK_EQ_STR(header_list_get(&out, "x-new"), "n");
    CHECK_EQ_STR(header_list_get(&out, "x-kept"), "yes");
    CHECK_EQ_STR(header_list_get(&out, "content-type"), "text/plain");
    CHECK_EQ_STR(header_list_get(&out, "content-encoding"), "gzip");
    /* Tags are the entry's metadata, not a field: the merge neither carries nor takes
     * them (the fill keeps the entry's own, cache_fill.c), so a 304 cannot spoof them. */
    CHECK_EQ_STR(cache_object_field(old, CACHE_FIELD_TAGS), "t1");
    CHECK(header_list_get(&out, "x-cachegw-tags") == NULL);
    CHECK(header_list_get(&out, "content-length") == NULL);
    CHECK(header_list_get(&out, "x-hop") == NULL);
    CHECK(header_list_get(&out, "connection") == NULL);
    CHECK_EQ_INT(header_list_get_all(&out, "etag", v, sizeof v), 1);
    header_list_free(&out);
    header_list_free(&fresh);
    cache_object_unref(old);

    /* Date: the 304's replaces the stored one; a 304 without one drops it. */
    struct http_header hd[] = {{"date", "Tue, 14 Nov 2023 22:13:20 GMT"}, {"etag", "\"v\""}};
    old = cache_object_build("k", 1, 200, hd, 2, "b", 1, &meta);
    struct header_list f2 = {0};
    header_list_add(&f2, "ETag", "\"v\"");
    CHECK_EQ_INT(cache_rules_merge_304(old, &f2, &out), 0);
    CHECK(header_list_get(&out, "date") == NULL);
    header_list_free(&out);
    header_list_add(&f2, "Date", "Wed, 15 Nov 2023 22:13:20 GMT");
    CHECK_EQ_INT(cache_rules_merge_304(old, &f2, &out), 0);
    CHECK_EQ_INT(header_list_get_all(&out, "date", v, sizeof v), 1);
    CHECK_EQ_STR(v, "Wed, 15 Nov 2023 22:13:20 GMT");
    header_list_free(&out);
    header_list_free(&f2);
    cache_object_unref(old);
}

/* A Vary marker outlives its variants, so a stale variant can still be found and
 * revalidated (cache_object.c set_keep). */
TEST(vary_marker_outlives_variants)
{
    struct http_header marker = {CACHE_RULES_VARY_HEADER, "x-lang"};
    struct http_header variant = {"etag", "\"v\""};
    struct cache_meta meta = {.stored_at_ms = NOW, .ttl_ms = 1000};
    struct cache_object *m = cache_object_build("k", 1, 200, &marker, 1, "", 0, &meta);
    struct cache_object *v = cache_object_build("k2", 2, 200, &variant, 1, "b", 1, &meta);
    CHECK(m != NULL && v != NULL);
    CHECK(cache_object_expires_at_ms(m) >= cache_object_expires_at_ms(v));
    CHECK(cache_object_expires_at_ms(m) >= NOW + 86400000);
    cache_object_unref(m);
    cache_object_unref(v);
}

TEST(if_none_match_accepts_coded_tags)
{
    struct http_header h[1] = {{"etag", "\"d1\""}};
    struct cache_meta meta = {.stored_at_ms = NOW, .ttl_ms = 1000};
    struct cache_object *obj = cache_object_build("k", 1, 200, h, 1, "b", 1, &meta);
    const char *yes[] = {"\"d1\"", "\"d1-gzip\"", "W/\"d1-br\"", "\"x\", \"d1-gzip\""};
    const char *no[] = {"\"d2-gzip\"", "\"d1-zstd\"", "\"-gzip\"", "\"d1-gzip"};
    for (size_t i = 0; i < 4; i++) {
        struct header_list l = {0};
        header_list_add(&l, "If-None-Match", yes[i]);
        CHECK(cache_rules_not_modified(&l, obj));
        header_list_free(&l);
        header_list_add(&l, "If-None-Match", no[i]);
        if (cache_rules_not_modified(&l, obj)) fprintf(stderr, "  matched %s\n", no[i]);
        CHECK(!cache_rules_not_modified(&l, obj));
        header_list_free(&l);
    }
    cache_object_unref(obj);
}

static void variant_of(const char *vary, const char *name, const char *value, char *out,
                       size_t cap)
{
    struct header_list l = {0};
    if (name) header_list_add(&l, name, value);
    CHECK_EQ_INT(cache_rules_variant_key("GET:/x", vary, &l, out, cap), 0);
    header_list_free(&l);
}

TEST(selecting_fields_are_normalised)
{
    char a[512], b[512];
    /* Accept-Language: order, case and spaces. */
    variant_of("Accept-Language", "Accept-Language", "en-US, fr;q=0.5", a, sizeof a);
    variant_of("accept-language", "accept-language", " FR; q=0.5 ,en-us ", b, sizeof b);
    CHECK_EQ_STR(a, b);
    variant_of("Accept-Language", "Accept-Language", "fr;q=0.4, en-US", b, sizeof b);
    CHECK(strcmp(a, b) != 0); /* another q-value is another preference */
    /* Accept-Encoding: the same; empty elements mean nothing. */
    variant_of("Accept-Encoding", "Accept-Encoding", "gzip, br", a, sizeof a);
    variant_of("Accept-Encoding", "Accept-Encoding", "BR,,gzip", b, sizeof b);
    CHECK_EQ_STR(a, b);
    /* Accept: whitespace only (media-type parameters may be case-sensitive). */
    variant_of("Accept", "Accept", "text/html;level=1, */*", a, sizeof a);
    variant_of("Accept", "Accept", "text/html ; level=1 ,*/*", b, sizeof b);
    CHECK_EQ_STR(a, b);
    variant_of("Accept", "Accept", "*/*, text/html;level=1", b, sizeof b);
    CHECK(strcmp(a, b) != 0);
    /* Any other field: surrounding whitespace only. */
    variant_of("X-Lang", "X-Lang", "  a , b  ", a, sizeof a);
    variant_of("X-Lang", "X-Lang", "a , b", b, sizeof b);
    CHECK_EQ_STR(a, b);
    variant_of("X-Lang", "X-Lang", "a,b", b, sizeof b);
    CHECK(strcmp(a, b) != 0);
    /* Absent stays distinct from present. */
    variant_of("X-Lang", NULL, NULL, b, sizeof b);
    CHECK(strcmp(a, b) != 0);
    /* Several lines are one list. */
    struct header_list l = {0};
    header_list_add(&l, "Accept-Language", "fr");
    header_list_add(&l, "Accept-Language", "en");
    CHECK_EQ_INT(cache_rules_variant_key("GET:/x", "accept-language", &l, a, sizeof a), 0);
    header_list_free(&l);
    variant_of("accept-language", "Accept-Language", "en,fr", b, sizeof b);
    CHECK_EQ_STR(a, b);
    /* More than 64 elements: not sorted, still bounded and deterministic. */
    char many[1024] = "";
    for (int i = 0; i < 70; i++) strcat(many, i ? ",x" : "x");
    variant_of("accept-language", "Accept-Language", many, a, sizeof a);
    CHECK(strlen(a) > 0);
}

int main(void)
{
    RUN(s_maxage_on_one_line_beats_max_age_on_another);
    RUN(any_final_status_with_explicit_freshness);
    RUN(heuristic_freshness_only_for_heuristic_codes_with_last_modified);
    RUN(must_understand);
    RUN(response_no_cache_is_stored_stale);
    RUN(authorization_needs_a_shared_directive);
    RUN(targeted_fields_override_cache_control);
    RUN(consumed_fields);
    RUN(vary_star_anywhere);
    RUN(merge_304);
    RUN(vary_marker_outlives_variants);
    RUN(if_none_match_accepts_coded_tags);
    RUN(selecting_fields_are_normalised);
    return TEST_SUMMARY();
}
