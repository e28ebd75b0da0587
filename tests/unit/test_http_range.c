/* Unit tests for http_range: Range parsing, If-Range, Content-Range. */
#include "http_range.h"
#include "test.h"

static enum http_range_kind parse(const char *v, uint64_t len, struct http_range *r)
{
    *r = (struct http_range){99, 99};
    return http_range_parse(v, len, r);
}

TEST(single_ranges)
{
    struct http_range r;
    CHECK_EQ_INT(parse("bytes=0-9", 100, &r), HTTP_RANGE_SINGLE);
    CHECK_EQ_INT(r.first, 0);
    CHECK_EQ_INT(r.last, 9);
    CHECK_EQ_INT(parse("bytes=90-", 100, &r), HTTP_RANGE_SINGLE); /* open-ended */
    CHECK_EQ_INT(r.first, 90);
    CHECK_EQ_INT(r.last, 99);
    CHECK_EQ_INT(parse("bytes=-10", 100, &r), HTTP_RANGE_SINGLE); /* suffix */
    CHECK_EQ_INT(r.first, 90);
    CHECK_EQ_INT(r.last, 99);
    CHECK_EQ_INT(parse("bytes=-1000", 100, &r), HTTP_RANGE_SINGLE); /* suffix past the start */
    CHECK_EQ_INT(r.first, 0);
    CHECK_EQ_INT(r.last, 99);
    CHECK_EQ_INT(parse("bytes=50-5000", 100, &r), HTTP_RANGE_SINGLE); /* last clamped */
    CHECK_EQ_INT(r.last, 99);
    CHECK_EQ_INT(parse(" Bytes = 1-1 ", 100, &r), HTTP_RANGE_SINGLE);
    CHECK_EQ_INT(r.first, 1);
    CHECK_EQ_INT(r.last, 1);
    /* An unsatisfiable member beside a satisfiable one: the satisfiable one. */
    CHECK_EQ_INT(parse("bytes=500-600, 0-0", 100, &r), HTTP_RANGE_SINGLE);
    CHECK_EQ_INT(r.first, 0);
    CHECK_EQ_INT(parse("bytes=,0-0,", 100, &r), HTTP_RANGE_SINGLE);
}

TEST(unsatisfiable)
{
    struct http_range r;
    CHECK_EQ_INT(parse("bytes=100-", 100, &r), HTTP_RANGE_UNSATISFIABLE);
    CHECK_EQ_INT(parse("bytes=200-300", 100, &r), HTTP_RANGE_UNSATISFIABLE);
    CHECK_EQ_INT(parse("bytes=-0", 100, &r), HTTP_RANGE_UNSATISFIABLE);
    CHECK_EQ_INT(parse("bytes=0-", 0, &r), HTTP_RANGE_UNSATISFIABLE);
    CHECK_EQ_INT(parse("bytes=-5", 0, &r), HTTP_RANGE_UNSATISFIABLE);
}

TEST(ignored_ranges_mean_the_whole_response)
{
    struct http_range r;
    const char *full[] = {NULL, "", "items=0-1", "bytes", "bytes=", "bytes=5-1", "bytes=a-b",
                          "bytes=1-2x", "bytes=--1", "bytes=0-1;x", "bytes=99999999999999999999-",
                          "bytes=0-1, 5-6" /* several: 200 (allowed) */};
    for (size_t i = 0; i < sizeof full / sizeof full[0]; i++) {
        if (parse(full[i], 100, &r) != HTTP_RANGE_FULL)
            fprintf(stderr, "  '%s' not ignored\n", full[i] ? full[i] : "(null)");
        CHECK_EQ_INT(parse(full[i], 100, &r), HTTP_RANGE_FULL);
    }
    /* Bounded work: more than HTTP_RANGE_MAX_SPECS members are ignored. */
    char many[2000] = "bytes=";
    for (int i = 0; i < HTTP_RANGE_MAX_SPECS + 1; i++) strcat(many, "200-300,");
    CHECK_EQ_INT(parse(many, 100, &r), HTTP_RANGE_FULL);
}

TEST(if_range)
{
    const char *lm = "Tue, 14 Nov 2023 22:13:20 GMT";
    CHECK(http_range_if_range(NULL, NULL, NULL));
    CHECK(http_range_if_range("\"v1\"", "\"v1\"", lm));
    CHECK(http_range_if_range(" \"v1\" ", "\"v1\"", NULL));
    CHECK(!http_range_if_range("\"v2\"", "\"v1\"", lm));
    CHECK(!http_range_if_range("W/\"v1\"", "W/\"v1\"", lm)); /* weak never matches */
    CHECK(!http_range_if_range("\"v1\"", "W/\"v1\"", lm));
    CHECK(!http_range_if_range("\"v1\"", NULL, lm));
    CHECK(http_range_if_range(lm, "\"v1\"", lm));
    CHECK(!http_range_if_range("Tue, 14 Nov 2023 22:13:21 GMT", NULL, lm));
    CHECK(!http_range_if_range(lm, "\"v1\"", NULL));
    CHECK(!http_range_if_range("yesterday", NULL, lm));
}

TEST(content_range)
{
    char buf[64];
    struct http_range r = {0, 9};
    CHECK_EQ_INT(http_range_content_range(buf, sizeof buf, &r, 100), 0);
    CHECK_EQ_STR(buf, "bytes 0-9/100");
    CHECK_EQ_INT(http_range_content_range(buf, sizeof buf, NULL, 100), 0);
    CHECK_EQ_STR(buf, "bytes */100");
    CHECK_EQ_INT(http_range_content_range(buf, 5, &r, 100), -1);
}

int main(void)
{
    RUN(single_ranges);
    RUN(unsatisfiable);
    RUN(ignored_ranges_mean_the_whole_response);
    RUN(if_range);
    RUN(content_range);
    return TEST_SUMMARY();
}
