/* Unit tests for cache_rules: request cacheability and response freshness. */
#include "cache_rules.h"
#include "test.h"

static struct header_list hl(const char *n1, const char *v1, const char *n2, const char *v2)
{
    struct header_list l = {0};
    if (n1) header_list_add(&l, n1, v1);
    if (n2) header_list_add(&l, n2, v2);
    return l;
}

static const int64_t NOW = 1700000000000LL;

TEST(request_rules)
{
    const char *why;
    struct header_list none = {0};
    struct header_list auth = hl("Authorization", "Bearer x", NULL, NULL);
    struct header_list cookie = hl("Cookie", "a=b", NULL, NULL);
    CHECK(cache_rules_request_cacheable("GET", &none, &why));
    CHECK(cache_rules_request_cacheable("HEAD", &none, &why));
    CHECK(!cache_rules_request_cacheable("POST", &none, &why));
    CHECK_EQ_STR(why, "method");
    CHECK(!cache_rules_request_cacheable("GET", &auth, &why));
    CHECK_EQ_STR(why, "authorization");
    CHECK(!cache_rules_request_cacheable("GET", &cookie, &why));
    CHECK_EQ_STR(why, "cookie");
    header_list_free(&auth);
    header_list_free(&cookie);
}

TEST(freshness_sources_in_order)
{
    struct store_decision d;
    struct header_list l = hl("Cache-Control", "max-age=60, s-maxage=10", NULL, NULL);
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 10000); /* s-maxage wins for a shared cache */
    header_list_free(&l);

    l = hl("Cache-Control", "public, max-age=60", NULL, NULL);
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK_EQ_INT(d.ttl_ms, 60000);
    header_list_free(&l);

    l = hl("Date", "Tue, 14 Nov 2023 22:13:20 GMT", "Expires", "Tue, 14 Nov 2023 22:15:20 GMT");
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 120000);
    header_list_free(&l);

    struct header_list none = {0};
    cache_rules_response(200, &none, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 5000); /* the default TTL */
    cache_rules_response(200, &none, 10, NOW, 0, 1000, NULL, &d);
    CHECK(!d.store);
    cache_rules_response(404, &none, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store); /* default TTL is for successful responses only */
    cache_rules_response(500, &none, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store);
}

TEST(invalid_expires_is_already_expired)
{
    /* RFC 9111 §5.3: an Expires that is not an HTTP-date, or several Expires lines,
     * mean "already expired": not stored, even with a default TTL. */
    const char *bad[] = {"Tue, 14 Nov 2023 22:15:20 UTC", "Tue, 14 Nov 23 22:15:20 GMT",
                         "Tue 14 Nov 2023 22:15:20 GMT",  "Tue,  14 Nov 2023 22:15:20 GMT",
                         "Tue, 14-Nov-2023 22:15:20 GMT", "Tue, 14 Nov 2023 2:15:20 GMT",
                         "0"};
    struct store_decision d;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct header_list l = hl("Date", "Tue, 14 Nov 2023 22:13:20 GMT", "Expires", bad[i]);
        cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
        if (d.store) fprintf(stderr, "  stored with Expires '%s'\n", bad[i]);
        CHECK(!d.store);
        header_list_free(&l);
    }
    struct header_list two = hl("Date", "Tue, 14 Nov 2023 22:13:20 GMT", "Expires",
                                "Tue, 14 Nov 2023 22:15:20 GMT");
    header_list_add(&two, "Expires", "Tue, 14 Nov 2023 22:15:20 GMT");
    cache_rules_response(200, &two, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store);
    header_list_free(&two);
    /* The obsolete formats a recipient must accept still work. */
    struct header_list old = hl("Date", "Tuesday, 14-Nov-23 22:13:20 GMT", "Expires",
                                "Tue Nov 14 22:15:20 2023");
    cache_rules_response(200, &old, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 120000);
    header_list_free(&old);
}

TEST(age_that_is_not_an_integer_is_ignored)
{
    struct store_decision d;
    struct header_list l = hl("Cache-Control", "max-age=60", "Age", "1.5");
    cache_rules_response(200, &l, 10, NOW, 0, 1000, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.initial_age_s, 0);
    header_list_free(&l);
    l = hl("Cache-Control", "max-age=60", "Age", "30");
    cache_rules_response(200, &l, 10, NOW, 0, 1000, NULL, &d);
    CHECK_EQ_INT(d.initial_age_s, 30);
    header_list_free(&l);
}

TEST(not_storable_responses)
{
    struct store_decision d;
    const char *cases[][2] = {{"Cache-Control", "no-store"},   {"Cache-Control", "private"},
                              {"Cache-Control", "no-cache"},   {"Set-Cookie", "a=b"},
                              {"Vary", "X-A, *"},              {"Cache-Control", "max-age=0"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct header_list l = hl(cases[i][0], cases[i][1], NULL, NULL);
        cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
        CHECK(!d.store);
        header_list_free(&l);
    }
    struct header_list none = {0};
    cache_rules_response(200, &none, 1001, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store);
    CHECK_EQ_STR(d.reason, "too-big");
}

TEST(age_and_stale_extensions)
{
    struct store_decision d;
    struct header_list l =
        hl("Cache-Control", "max-age=100, stale-while-revalidate=30, stale-if-error=600", "Age",
           "40");
    cache_rules_response(200, &l, 10, NOW, 0, 1000, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.initial_age_s, 40);
    CHECK_EQ_INT(d.swr_ms, 30000);
    CHECK_EQ_INT(d.sie_ms, 600000);
    header_list_free(&l);
}

TEST(stored_header_filter)
{
    CHECK(cache_rules_header_storable("content-type", NULL));
    CHECK(cache_rules_header_storable("etag", NULL));
    CHECK(!cache_rules_header_storable("content-length", NULL));
    CHECK(!cache_rules_header_storable("set-cookie", NULL));
    CHECK(!cache_rules_header_storable("transfer-encoding", NULL));
    CHECK(!cache_rules_header_storable("x-foo", "close, x-foo"));
}

TEST(policy_overrides)
{
    struct store_decision d;
    struct store_overrides ov = {.ttl_ms = 300000, .swr_ms = -1, .sie_ms = 5000};
    struct header_list l = hl("Cache-Control", "max-age=0, no-cache", NULL, NULL);
    cache_rules_response(200, &l, 10, NOW, 0, 1000, &ov, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 300000);
    CHECK_EQ_INT(d.sie_ms, 5000);
    header_list_free(&l);
    l = hl("Cache-Control", "private, max-age=30", NULL, NULL);
    cache_rules_response(200, &l, 10, NOW, 0, 1000, &ov, &d);
    CHECK(!d.store); /* private needs a per-user key */
    ov.allow_private = true;
    cache_rules_response(200, &l, 10, NOW, 0, 1000, &ov, &d);
    CHECK(d.store);
    header_list_free(&l);
    l = hl("Set-Cookie", "a=b", NULL, NULL);
    cache_rules_response(200, &l, 10, NOW, 0, 1000, &ov, &d);
    CHECK(!d.store);
    ov.ignore_no_store = true;
    cache_rules_response(200, &l, 10, NOW, 0, 1000, &ov, &d);
    CHECK(d.store);
    header_list_free(&l);
}

TEST(variant_keys)
{
    char a[256], b[256];
    struct header_list r1 = hl("Accept-Language", "fr", NULL, NULL);
    struct header_list r2 = hl("Accept-Language", "de", NULL, NULL);
    CHECK_EQ_INT(cache_rules_variant_key("k", "Accept-Language, X-U", &r1, a, sizeof a), 0);
    CHECK_EQ_STR(a, "k\x1fvary\x1f" "accept-language=fr\x1fx-u=");
    CHECK_EQ_INT(cache_rules_variant_key("k", "accept-language,x-u", &r2, b, sizeof b), 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ_INT(cache_rules_variant_key("k", "Accept-Language", &r1, a, 8), -1);
    header_list_free(&r1);
    header_list_free(&r2);
}

/* Item 4 of issue 8: repeated Cache-Control / Vary response lines are one list. */
TEST(repeated_response_lines_count)
{
    struct store_decision d;
    struct header_list l = hl("Cache-Control", "public, max-age=60", "Cache-Control", "private");
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store);
    CHECK_EQ_STR(d.reason, "private");
    header_list_free(&l);

    l = hl("Cache-Control", "max-age=60", "Cache-Control", "no-store");
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store);
    CHECK_EQ_STR(d.reason, "no-store");
    header_list_free(&l);

    /* A directive on the second line sets freshness too. */
    l = hl("Cache-Control", "public", "Cache-Control", "s-maxage=7");
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(d.store);
    CHECK_EQ_INT(d.ttl_ms, 7000);
    header_list_free(&l);

    l = hl("Vary", "Accept", "Vary", "*");
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store);
    CHECK_EQ_STR(d.reason, "vary-star");
    header_list_free(&l);

    /* A list too long to read in full is not understood: not stored. */
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    l = hl("Cache-Control", "max-age=60", "Cache-Control", big);
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store);
    CHECK_EQ_STR(d.reason, "list-too-long");
    header_list_free(&l);
}

TEST(repeated_request_lines_count)
{
    struct request_cc cc;
    struct header_list l = hl("Cache-Control", "max-stale=5", "Cache-Control", "no-cache");
    cache_rules_request_cc(&l, &cc);
    CHECK(cc.no_cache);
    CHECK_EQ_INT(cc.max_stale_s, 5);
    header_list_free(&l);
    l = hl("Pragma", "x", "Pragma", "no-cache");
    cache_rules_request_cc(&l, &cc);
    CHECK(cc.no_cache);
    header_list_free(&l);
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    l = hl("Cache-Control", big, NULL, NULL);
    cache_rules_request_cc(&l, &cc);
    CHECK(cc.no_cache && cc.no_store); /* unreadable: neither served nor stored */
    header_list_free(&l);
}

/* A stored object with the given Cache-Control lines and meta. */
static struct cache_object *obj_with(const char *cc1, const char *cc2, int64_t stored_at,
                                     int64_t ttl_ms, int64_t initial_age_s, int64_t swr_ms)
{
    struct http_header h[2] = {{"cache-control", cc1}, {"cache-control", cc2}};
    struct cache_meta meta = {.stored_at_ms = stored_at, .ttl_ms = ttl_ms,
                              .initial_age_s = initial_age_s, .swr_ms = swr_ms};
    size_t n = cc1 ? (cc2 ? 2 : 1) : 0;
    return cache_object_build("k", 1, 200, h, n, "b", 1, &meta);
}

TEST(stored_must_revalidate_on_second_line)
{
    struct request_cc cc = {-1, -1, INT64_MAX, false, false, false};
    struct cache_object *o = obj_with("max-age=1", "must-revalidate", NOW - 10000, 1000, 0, 0);
    CHECK(o != NULL);
    CHECK_EQ_INT(cache_rules_usability(o, &cc, NOW), USE_REVALIDATE);
    cache_object_unref(o);
    o = obj_with("max-age=1", NULL, NOW - 10000, 1000, 0, 0);
    CHECK_EQ_INT(cache_rules_usability(o, &cc, NOW), USE_STALE_OK);
    cache_object_unref(o);
}

/* Item 23 of issue 8: huge delta-seconds saturate; nothing overflows (this
 * file runs under UBSan in the sanitizer build, which aborts on overflow). */
TEST(huge_response_values_saturate)
{
    struct store_decision d;
    const char *huge = "9999999999999999999999";
    char cc[128];
    snprintf(cc, sizeof cc, "max-age=%s", huge);
    struct header_list l = hl("Cache-Control", cc, NULL, NULL);
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(d.store); /* huge max-age means "fresh for a long time", never a MISS */
    CHECK_EQ_INT(d.ttl_ms, HEADERS_DELTA_MAX * 1000);
    header_list_free(&l);

    snprintf(cc, sizeof cc, "s-maxage=%s, stale-while-revalidate=%s, stale-if-error=%s", huge,
             huge, huge);
    l = hl("Cache-Control", cc, "Age", huge);
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK_EQ_INT(d.initial_age_s, HEADERS_DELTA_MAX);
    CHECK_EQ_INT(d.swr_ms, HEADERS_DELTA_MAX * 1000);
    CHECK_EQ_INT(d.sie_ms, HEADERS_DELTA_MAX * 1000);
    header_list_free(&l);

    /* Age alone at its maximum: stale on arrival, not a wrapped-around age. */
    l = hl("Cache-Control", "max-age=60", "Age", huge);
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store);
    CHECK_EQ_STR(d.reason, "stale-on-arrival");
    header_list_free(&l);

    /* Expires and Date millennia apart. */
    l = hl("Date", "Thu, 01 Jan 1970 00:00:01 GMT", "Expires", "Fri, 31 Dec 9999 23:59:59 GMT");
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(d.store);
    CHECK(d.ttl_ms > 0 && d.ttl_ms <= HEADERS_DELTA_MAX * 1000);
    header_list_free(&l);
    l = hl("Date", "Fri, 31 Dec 9999 23:59:59 GMT", "Expires", "Thu, 01 Jan 1970 00:00:01 GMT");
    cache_rules_response(200, &l, 10, NOW, 5000, 1000, NULL, &d);
    CHECK(!d.store); /* already expired */
    header_list_free(&l);
}

TEST(huge_request_values_saturate)
{
    struct request_cc cc;
    struct cache_object *o = obj_with("max-age=100", NULL, NOW - 10000, 100000, 0, 0);
    /* max-age of that size: the entry is fresh enough (a HIT, not a MISS). */
    struct header_list l = hl("Cache-Control", "max-age=9999999999999999", NULL, NULL);
    cache_rules_request_cc(&l, &cc);
    CHECK_EQ_INT(cc.max_age_s, HEADERS_DELTA_MAX);
    CHECK_EQ_INT(cache_rules_usability(o, &cc, NOW), USE_FRESH);
    header_list_free(&l);
    /* min-fresh of that size: no entry is fresh enough (never a HIT). */
    l = hl("Cache-Control", "min-fresh=9999999999999999", NULL, NULL);
    cache_rules_request_cc(&l, &cc);
    CHECK_EQ_INT(cache_rules_usability(o, &cc, NOW), USE_REVALIDATE);
    header_list_free(&l);
    cache_object_unref(o);
    /* max-stale of that size on a long-stale entry: served stale, as asked. */
    o = obj_with("max-age=1", NULL, NOW - 1000000, 1000, 0, 0);
    l = hl("Cache-Control", "max-stale=99999999999999999999", NULL, NULL);
    cache_rules_request_cc(&l, &cc);
    CHECK_EQ_INT(cache_rules_usability(o, &cc, NOW), USE_STALE_OK);
    header_list_free(&l);
    cache_object_unref(o);
    /* Stored meta at the largest values a stored object may hold, and clocks
     * at the extremes (a wall clock set far off). */
    struct request_cc none = {-1, -1, -1, false, false, false};
    const int64_t big = (int64_t)1 << 52;
    o = obj_with(NULL, NULL, 0, big, HEADERS_DELTA_MAX, big);
    CHECK(o != NULL);
    CHECK_EQ_INT(cache_rules_usability(o, &none, big + big / 2), USE_SWR);
    /* Stale for ~292 million years: past any window, never wrapped to fresh. */
    CHECK_EQ_INT(cache_rules_usability(o, &none, INT64_MAX), USE_REVALIDATE);
    CHECK_EQ_INT(cache_rules_usability(o, &none, INT64_MIN), USE_FRESH);
    l = hl("Cache-Control", "max-stale=99999999999999999999", NULL, NULL);
    cache_rules_request_cc(&l, &cc);
    CHECK_EQ_INT(cache_rules_usability(o, &cc, INT64_MAX), USE_REVALIDATE);
    const int64_t stale_5s = big - HEADERS_DELTA_MAX * 1000 + 5000; /* age counts initial_age */
    CHECK_EQ_INT(cache_rules_usability(o, &cc, stale_5s), USE_STALE_OK);
    header_list_free(&l);
    cache_object_unref(o);
}

int main(void)
{
    RUN(request_rules);
    RUN(freshness_sources_in_order);
    RUN(invalid_expires_is_already_expired);
    RUN(age_that_is_not_an_integer_is_ignored);
    RUN(not_storable_responses);
    RUN(age_and_stale_extensions);
    RUN(stored_header_filter);
    RUN(policy_overrides);
    RUN(variant_keys);
    RUN(repeated_response_lines_count);
    RUN(repeated_request_lines_count);
    RUN(stored_must_revalidate_on_second_line);
    RUN(huge_response_values_saturate);
    RUN(huge_request_values_saturate);
    return TEST_SUMMARY();
}
