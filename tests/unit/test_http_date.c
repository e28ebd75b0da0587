/* Unit tests for http_date: the three HTTP-date formats exactly, nothing else. */
#include "http_date.h"
#include "test.h"

#define NOV_6_1994 784111777LL /* 1994-11-06T08:49:37Z */

TEST(the_three_formats)
{
    int64_t t = 0;
    CHECK(http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", &t));
    CHECK_EQ_INT(t, NOV_6_1994);
    CHECK(http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", &t));
    CHECK_EQ_INT(t, NOV_6_1994);
    CHECK(http_date_parse("Sun Nov  6 08:49:37 1994", &t));
    CHECK_EQ_INT(t, NOV_6_1994);
    CHECK(http_date_parse("  Sun, 06 Nov 1994 08:49:37 GMT\t", &t)); /* OWS around */
    CHECK(http_date_parse("Thu, 01 Jan 1970 00:00:00 GMT", &t));
    CHECK_EQ_INT(t, 0);
    CHECK(http_date_parse("Tue, 29 Feb 2000 23:59:60 GMT", &t)); /* leap day, leap second */
    CHECK(http_date_parse("Friday, 01-Jan-38 00:00:00 GMT", &t)); /* 2038 */
    CHECK_EQ_INT(t, 2145916800LL);
}

TEST(everything_else_is_invalid)
{
    const char *bad[] = {
        "Sun, 06 Nov 1994 08:49:37 UTC",   /* wrong zone */
        "Sun, 06 Nov 94 08:49:37 GMT",     /* two-digit year in IMF-fixdate */
        "Sun 06 Nov 1994 08:49:37 GMT",    /* missing comma */
        "Sun,  06 Nov 1994 08:49:37 GMT",  /* doubled space */
        "Sun, 06-Nov-1994 08:49:37 GMT",   /* dashes in IMF-fixdate */
        "Sun, 06 Nov 1994 8:49:37 GMT",    /* one-digit hour */
        "Sun, 31 Nov 1994 08:49:37 GMT",   /* no such day */
        "Sun, 06 Nov 1994 24:00:00 GMT",   /* hour out of range */
        "Sun, 06 Nov 1994 08:49:37 GMT x", /* trailing bytes */
        "Sun, 06 Nov 1994 08:49:37 gmt",   /* zone is case-sensitive */
        "Xyz, 06 Nov 1994 08:49:37 GMT",   /* no such day name */
        "Sun, 06 Noo 1994 08:49:37 GMT",   /* no such month */
        "Sun, 29 Feb 1900 08:49:37 GMT",   /* 1900 is no leap year */
        "0", "-1", "", "now", "Thu, 01 Jan 1970 00:00:00 +0000",
        "Sunday, 06-Nov-94 08:49:37 UTC", "Sun Nov 6 08:49:37 1994", /* asctime needs 2 cols */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t t;
        if (http_date_parse(bad[i], &t)) fprintf(stderr, "  accepted: '%s'\n", bad[i]);
        CHECK(!http_date_parse(bad[i], &t));
    }
    int64_t t;
    CHECK(!http_date_parse(NULL, &t));
}

TEST(format_round_trips)
{
    char b[30];
    CHECK_EQ_INT(http_date_format(784111777, b, sizeof b), 0);
    CHECK_EQ_STR(b, "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK_EQ_INT(http_date_format(0, b, sizeof b), 0);
    CHECK_EQ_STR(b, "Thu, 01 Jan 1970 00:00:00 GMT");
    CHECK_EQ_INT(http_date_format(951782400, b, sizeof b), 0); /* leap day 2000 */
    CHECK_EQ_STR(b, "Tue, 29 Feb 2000 00:00:00 GMT");
    CHECK_EQ_INT(http_date_format(253402300799LL, b, sizeof b), 0);
    CHECK_EQ_STR(b, "Fri, 31 Dec 9999 23:59:59 GMT");
    CHECK_EQ_INT(http_date_format(253402300800LL, b, sizeof b), -1);
    CHECK_EQ_INT(http_date_format(-1, b, sizeof b), -1);
    CHECK_EQ_INT(http_date_format(0, b, 29), -1);
    for (int64_t t = 0; t < 253402300799LL; t += 86399 * 37 + 13) {
        int64_t back = -1;
        CHECK_EQ_INT(http_date_format(t, b, sizeof b), 0);
        if (!http_date_parse(b, &back) || back != t) {
            fprintf(stderr, "  %lld -> %s -> %lld\n", (long long)t, b, (long long)back);
            CHECK(0);
            break;
        }
    }
}

int main(void)
{
    RUN(the_three_formats);
    RUN(everything_else_is_invalid);
    RUN(format_round_trips);
    return TEST_SUMMARY();
}
