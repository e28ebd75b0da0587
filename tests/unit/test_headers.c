/* Unit tests for headers: list operations and the hop-by-hop rules. */
#include "headers.h"
#include "test.h"

TEST(list_add_get_remove)
{
    struct header_list l = {0};
    CHECK_EQ_INT(header_list_add(&l, "Content-Type", "text/plain"), 0);
    CHECK_EQ_INT(header_list_add(&l, "X-A", "1"), 0);
    CHECK_EQ_INT(header_list_add(&l, "x-a", "2"), 0);
    CHECK_EQ_STR(l.items[0].name, "content-type");
    CHECK_EQ_STR(header_list_get(&l, "CONTENT-TYPE"), "text/plain");
    CHECK_EQ_STR(header_list_get(&l, "x-a"), "1");
    CHECK_EQ_INT(header_list_remove(&l, "X-A"), 2);
    CHECK(header_list_get(&l, "x-a") == NULL);
    CHECK_EQ_INT(l.n, 1);
    header_list_free(&l);
    CHECK_EQ_INT(l.n, 0);
}

TEST(fixed_hop_by_hop_set)
{
    const char *hop[] = {"Connection", "Keep-Alive", "TE", "Transfer-Encoding", "Upgrade",
                         "Trailer", "Proxy-Authorization", "Proxy-Authenticate",
                         "proxy-connection"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        CHECK(headers_is_hop_by_hop(hop[i], NULL));
    const char *end[] = {"Content-Type", "Cache-Control", "Authorization", "ETag", "Tea"};
    for (size_t i = 0; i < sizeof end / sizeof end[0]; i++)
        CHECK(!headers_is_hop_by_hop(end[i], NULL));
}

TEST(connection_named_fields_are_hop_by_hop)
{
    CHECK(headers_is_hop_by_hop("X-Foo", "close, X-Foo"));
    CHECK(headers_is_hop_by_hop("x-bar", "X-Foo,X-Bar"));
    CHECK(!headers_is_hop_by_hop("X-Foobar", "X-Foo"));
    CHECK(!headers_is_hop_by_hop("X-Fo", "X-Foo"));
}

TEST(tokens_and_integers)
{
    long long v = -1;
    CHECK(headers_has_token("public, max-age=60", "max-age"));
    CHECK(headers_has_token("No-Store", "no-store"));
    CHECK(!headers_has_token("no-storex", "no-store"));
    CHECK(headers_token_int("public, max-age=60", "max-age", &v));
    CHECK_EQ_INT(v, 60);
    CHECK(headers_token_int("s-maxage=\"5\"", "s-maxage", &v));
    CHECK_EQ_INT(v, 5);
    CHECK(!headers_token_int("max-age=abc", "max-age", &v));
    CHECK(!headers_token_int("max-age", "max-age", &v));
    CHECK(!headers_token_int("s-max-age=3", "max-age", &v));
}

TEST(repeated_lines_are_one_list)
{
    struct header_list l = {0};
    char out[64];
    header_list_add(&l, "Cache-Control", "public, max-age=60");
    header_list_add(&l, "X-Other", "x");
    header_list_add(&l, "cache-control", "private");
    header_list_add(&l, "Cache-Control", ""); /* an empty line adds nothing */
    CHECK_EQ_INT(header_list_get_all(&l, "CACHE-CONTROL", out, sizeof out), 3);
    CHECK_EQ_STR(out, "public, max-age=60, private");
    CHECK(headers_has_token(out, "private"));
    /* absent: 0 lines, empty string */
    CHECK_EQ_INT(header_list_get_all(&l, "vary", out, sizeof out), 0);
    CHECK_EQ_STR(out, "");
    /* exactly fitting, and one byte short */
    CHECK_EQ_INT(header_list_get_all(&l, "cache-control", out, 28), 3);
    CHECK_EQ_INT(header_list_get_all(&l, "cache-control", out, 27), -1);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(header_list_get_all(&l, "cache-control", out, 0), -1);
    /* another separator over a plain array */
    header_list_add(&l, "Surrogate-Key", "a b");
    header_list_add(&l, "Surrogate-Key", "c");
    CHECK_EQ_INT(headers_get_all(l.items, l.n, "surrogate-key", " ", out, sizeof out), 2);
    CHECK_EQ_STR(out, "a b c");
    header_list_free(&l);
}

TEST(delta_seconds_saturate)
{
    long long v = -1;
    CHECK(headers_token_int("max-age=9999999999999999999999999999", "max-age", &v));
    CHECK_EQ_INT(v, HEADERS_DELTA_MAX);
    CHECK(headers_token_int("max-age=2147483647", "max-age", &v));
    CHECK_EQ_INT(v, 2147483647);
    CHECK(headers_token_int("max-age=2147483649", "max-age", &v));
    CHECK_EQ_INT(v, HEADERS_DELTA_MAX);
}

int main(void)
{
    RUN(list_add_get_remove);
    RUN(fixed_hop_by_hop_set);
    RUN(connection_named_fields_are_hop_by_hop);
    RUN(tokens_and_integers);
    RUN(repeated_lines_are_one_list);
    RUN(delta_seconds_saturate);
    return TEST_SUMMARY();
}
