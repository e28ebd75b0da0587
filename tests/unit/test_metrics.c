/* Unit tests for metrics (and the invalidation group of stats): label escaping, histogram
 * bucket edges ("le" is inclusive), the tier of non-cached results, the route label bound
 * (METRICS_MAX_ROUTES, then "other"), exact counts under concurrent recording and route
 * interning, policy reload counters, and a key purge counting one invalidation.  The
 * exposition text is read back from metrics_write. */
#include <math.h> /* NAN */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"
#include "stats.h"
#include "test.h"

#ifndef CACHEGW_VERSION /* CMake sets it for cachegw_core and what links it */
#define CACHEGW_VERSION "dev"
#endif

/* The whole exposition text (malloc'd). */
static char *render(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL) return NULL;
    int rc = metrics_write(out);
    fclose(out);
    if (rc != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* The value of the sample line that starts with series (name{labels}), or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    }
    return -1;
}

TEST(label_values_are_escaped_and_never_cut_inside_an_escape)
{
    char out[64];
    metrics_escape_label("GET /a\"b\\c\nd", out, sizeof out);
    CHECK_EQ_STR(out, "GET /a\\\"b\\\\c\\nd");
    char small[4];
    metrics_escape_label("ab\"", small, sizeof small);
    CHECK_EQ_STR(small, "ab"); /* not "ab\" */
    metrics_escape_label("", out, sizeof out);
    CHECK_EQ_STR(out, "");
}

TEST(histogram_bounds_are_inclusive_and_buckets_cumulative)
{
    metrics_observe_upstream(0.001); /* exactly a bound: in le="0.001" */
    metrics_observe_upstream(0.0011);
    metrics_observe_upstream(-1);    /* a clock step backwards: the first bucket, sum + 0 */
    metrics_observe_upstream(NAN);
    metrics_observe_upstream(1e9);   /* only +Inf */
    char *t = render();
    CHECK(t != NULL);
    if (t == NULL) return;
    CHECK(sample(t, "cachegw_upstream_duration_seconds_bucket{le=\"0.001\"}") == 3);
    CHECK(sample(t, "cachegw_upstream_duration_seconds_bucket{le=\"0.0025\"}") == 4);
    CHECK(sample(t, "cachegw_upstream_duration_seconds_bucket{le=\"30\"}") == 4);
    CHECK(sample(t, "cachegw_upstream_duration_seconds_bucket{le=\"+Inf\"}") == 5);
    CHECK(sample(t, "cachegw_upstream_duration_seconds_count") == 5);
    /* Exact to the nanosecond, even next to a large value. */
    CHECK(strstr(t, "cachegw_upstream_duration_seconds_sum 1000000000.002100000\n") != NULL);
    free(t);
}

TEST(only_hits_and_stale_answers_have_a_tier)
{
    metrics_record_request(METRICS_MISS, METRICS_TIER_REDIS, "GET /m", 0.01);
    metrics_record_request(METRICS_STALE, METRICS_TIER_REDIS, "GET /m", 0.01);
    metrics_record_request(METRICS_HIT, METRICS_TIER_MEMORY, NULL, 0.00001);
    char *t = render();
    CHECK(t != NULL);
    if (t == NULL) return;
    CHECK(sample(t, "cachegw_requests_total{result=\"miss\",tier=\"none\"}") == 1);
    CHECK(sample(t, "cachegw_requests_total{result=\"miss\",tier=\"redis\"}") == -1);
    CHECK(sample(t, "cachegw_requests_total{result=\"stale\",tier=\"redis\"}") == 1);
    CHECK(sample(t, "cachegw_requests_total{result=\"hit\",tier=\"memory\"}") == 1);
    CHECK(sample(t, "cachegw_requests_total{result=\"hit\",tier=\"none\"}") == -1);
    CHECK(sample(t, "cachegw_route_requests_total{route=\"none\",result=\"hit\"}") == 1);
    CHECK(sample(t, "cachegw_route_requests_total{route=\"GET /m\",result=\"stale\"}") == 1);
    CHECK(sample(t, "cachegw_request_duration_seconds_bucket{result=\"hit\",le=\"0.0001\"}") ==
          1);
    CHECK(strstr(t, "# TYPE cachegw_request_duration_seconds histogram\n") != NULL);
    CHECK(strstr(t, "# HELP cachegw_requests_total ") != NULL);
    free(t);
}

struct worker_arg {
    int id;
};

enum { THREADS = 4, PER_THREAD = 20000 };

/* Each thread records the same 8 shared routes and 8 of its own, all new at the start:
 * interning races, counts must not. */
static void *record_many(void *p)
{
    const struct worker_arg *a = p;
    char own[32], shared[32];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(shared, sizeof shared, "GET /shared/%d", i % 8);
        snprintf(own, sizeof own, "GET /t%d/%d", a->id, i % 8);
        metrics_record_request(METRICS_BYPASS, METRICS_TIER_NONE, shared, 0.002);
        metrics_record_request(METRICS_ERROR, METRICS_TIER_NONE, own, 0.002);
    }
    return NULL;
}

TEST(concurrent_recording_counts_exactly_and_interns_each_route_once)
{
    pthread_t th[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i].id = i;
        pthread_create(&th[i], NULL, record_many, &args[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    char *t = render();
    CHECK(t != NULL);
    if (t == NULL) return;
    CHECK(sample(t, "cachegw_requests_total{result=\"bypass\",tier=\"none\"}") ==
          THREADS * PER_THREAD);
    CHECK(sample(t, "cachegw_request_duration_seconds_count{result=\"bypass\"}") ==
          THREADS * PER_THREAD);
    CHECK(sample(t, "cachegw_route_requests_total{route=\"GET /shared/3\",result=\"bypass\"}") ==
          THREADS * PER_THREAD / 8);
    CHECK(sample(t, "cachegw_route_requests_total{route=\"GET /t2/5\",result=\"error\"}") ==
          PER_THREAD / 8);
    /* Interned once: one line per (route, result). */
    const char *first = strstr(t, "{route=\"GET /shared/3\",result=\"bypass\"}");
    CHECK(first != NULL && strstr(first + 1, "{route=\"GET /shared/3\",result=\"bypass\"}") ==
                               NULL);
    free(t);
}

TEST(routes_past_the_bound_count_as_other)
{
    /* Earlier tests interned 1 + 8 + 4 * 8 = 41 routes (and "none"); fill the rest. */
    for (int i = 0; i < METRICS_MAX_ROUTES + 10; i++) {
        char route[32];
        snprintf(route, sizeof route, "GET /many/%d", i);
        metrics_record_request(METRICS_MISS, METRICS_TIER_NONE, route, 0.001);
    }
    metrics_record_request(METRICS_MISS, METRICS_TIER_NONE, "GET /a \"quoted\"\nroute", 0.001);
    char *t = render();
    CHECK(t != NULL);
    if (t == NULL) return;
    size_t routes = 0;
    for (const char *p = t; (p = strstr(p, "cachegw_route_requests_total{route=\"")) != NULL;
         p++)
        routes++;
    /* Every interned route has at least one line; "other" holds the rest. */
    CHECK(routes >= METRICS_MAX_ROUTES);
    double other = sample(t, "cachegw_route_requests_total{route=\"other\",result=\"miss\"}");
    CHECK(other > 0);
    double many_total = 0;
    for (int i = 0; i < METRICS_MAX_ROUTES + 10; i++) {
        char series[96];
        snprintf(series, sizeof series,
                 "cachegw_route_requests_total{route=\"GET /many/%d\",result=\"miss\"}", i);
        double v = sample(t, series);
        if (v > 0) many_total += v;
    }
    CHECK(many_total + other == METRICS_MAX_ROUTES + 10 + 1);
    CHECK(strstr(t, "GET /a \\\"quoted\\\"\\nroute") == NULL); /* past the bound: other */
    free(t);
}

TEST(policy_reloads_and_the_success_timestamp)
{
    metrics_policy_loaded(true, true, 1000000);   /* start-up: not a reload */
    metrics_policy_loaded(false, true, 2000500);
    metrics_policy_loaded(false, false, 3000000); /* keeps the last success time */
    char *t = render();
    CHECK(t != NULL);
    if (t == NULL) return;
    CHECK(sample(t, "cachegw_policy_reloads_total{result=\"ok\"}") == 1);
    CHECK(sample(t, "cachegw_policy_reloads_total{result=\"failed\"}") == 1);
    CHECK(sample(t, "cachegw_policy_last_reload_success_timestamp_seconds") == 2000.5);
    CHECK(sample(t, "cachegw_build_info{version=\"" CACHEGW_VERSION "\"}") == 1);
    CHECK(sample(t, "process_open_fds") > 0);
    CHECK(sample(t, "process_resident_memory_bytes") > 0);
    free(t);
}

TEST(an_invalidation_group_counts_once)
{
    uint64_t n0 = STATS_GET(invalidations);
    stats_count_invalidation();
    CHECK_EQ_INT(STATS_GET(invalidations), n0 + 1);
    stats_invalidation_group_begin();
    stats_count_invalidation(); /* the key */
    stats_count_invalidation(); /* its variants' prefix */
    stats_invalidation_group_end();
    CHECK_EQ_INT(STATS_GET(invalidations), n0 + 2);
    stats_count_invalidation();
    CHECK_EQ_INT(STATS_GET(invalidations), n0 + 3);
}

TEST(own_endpoints_in_flight)
{
    metrics_own_endpoint_begin();
    metrics_own_endpoint_begin();
    CHECK_EQ_INT(metrics_own_endpoints_in_flight(), 2);
    metrics_own_endpoint_end();
    metrics_own_endpoint_end();
    CHECK_EQ_INT(metrics_own_endpoints_in_flight(), 0);
}

int main(void)
{
    RUN(label_values_are_escaped_and_never_cut_inside_an_escape);
    RUN(histogram_bounds_are_inclusive_and_buckets_cumulative);
    RUN(only_hits_and_stale_answers_have_a_tier);
    RUN(concurrent_recording_counts_exactly_and_interns_each_route_once);
    RUN(routes_past_the_bound_count_as_other);
    RUN(policy_reloads_and_the_success_timestamp);
    RUN(an_invalidation_group_counts_once);
    RUN(own_endpoints_in_flight);
    return TEST_SUMMARY();
}
