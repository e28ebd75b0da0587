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
    CHECK_EQ_STR(a, "k#vary|accept-language=fr|x-u=");
    CHECK_EQ_INT(cache_rules_variant_key("k", "accept-language,x-u", &r2, b, sizeof b), 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ_INT(cache_rules_variant_key("k", "Accept-Language", &r1, a, 8), -1);
    header_list_free(&r1);
    header_list_free(&r2);
}

int main(void)
{
    RUN(request_rules);
    RUN(freshness_sources_in_order);
    RUN(not_storable_responses);
    RUN(age_and_stale_extensions);
    RUN(stored_header_filter);
    RUN(policy_overrides);
    RUN(variant_keys);
    return TEST_SUMMARY();
}
