/*
 * test_balancer.c - the balancing functions (src/upstream/balancer.c) and the instance
 * health state machine (src/upstream/upstream_health.c), without any network.
 */
#include "balancer.h"

#include <stdio.h>
#include <string.h>

#include "test.h"
#include "upstream_health.h"

TEST(round_robin_is_smooth_and_weighted)
{
    struct balancer_slot s[3] = {{.weight = 5, .eligible = true},
                                 {.weight = 1, .eligible = true},
                                 {.weight = 1, .eligible = true}};
    char seq[8] = "";
    for (int i = 0; i < 7; i++) seq[i] = (char)('a' + balancer_pick_round_robin(s, 3));
    CHECK_EQ_STR(seq, "aabacaa"); /* nginx's example: never five a's in a row */
    int counts[3] = {0};
    for (int i = 0; i < 700; i++) counts[balancer_pick_round_robin(s, 3)]++;
    CHECK_EQ_INT(counts[0], 500);
    CHECK_EQ_INT(counts[1], 100);
    CHECK_EQ_INT(counts[2], 100);
    s[0].eligible = false;
    for (int i = 0; i < 10; i++) CHECK(balancer_pick_round_robin(s, 3) != 0);
    s[1].eligible = s[2].eligible = false;
    CHECK_EQ_INT(balancer_pick_round_robin(s, 3), -1);
}

TEST(least_conn_per_weight_with_rotating_ties)
{
    struct balancer_slot s[3] = {{.weight = 1, .inflight = 3, .eligible = true},
                                 {.weight = 2, .inflight = 4, .eligible = true},
                                 {.weight = 1, .inflight = 1, .eligible = true}};
    CHECK_EQ_INT(balancer_pick_least_conn(s, 3, 0), 2);
    s[2].inflight = 2; /* 3/1, 4/2 = 2, 2/1: tie between 1 and 2, the rotation decides */
    int a = balancer_pick_least_conn(s, 3, 1), b = balancer_pick_least_conn(s, 3, 2);
    CHECK(a == 1 || a == 2);
    CHECK(b == 1 || b == 2);
    CHECK(a != b);
    s[1].eligible = s[2].eligible = false;
    CHECK_EQ_INT(balancer_pick_least_conn(s, 3, 0), 0);
}

TEST(hash_is_sticky_spread_and_moves_only_the_lost_keys)
{
    const char *urls[4] = {"http://a:1", "http://b:1", "http://c:1", "http://d:1"};
    struct balancer_slot s[4];
    for (int i = 0; i < 4; i++)
        s[i] = (struct balancer_slot){.weight = 1, .id = balancer_instance_id(urls[i]),
                                      .eligible = true};
    int before[1000], counts[4] = {0};
    char key[32];
    for (int k = 0; k < 1000; k++) {
        int n = snprintf(key, sizeof key, "users:%d", k);
        before[k] = balancer_pick_hash(s, 4, key, (size_t)n);
        CHECK_EQ_INT(balancer_pick_hash(s, 4, key, (size_t)n), before[k]);
        counts[before[k]]++;
    }
    for (int i = 0; i < 4; i++) CHECK(counts[i] > 180 && counts[i] < 320);
    s[2].eligible = false;
    int moved = 0;
    for (int k = 0; k < 1000; k++) {
        int n = snprintf(key, sizeof key, "users:%d", k);
        int now = balancer_pick_hash(s, 4, key, (size_t)n);
        CHECK(now != 2);
        if (before[k] != 2) CHECK_EQ_INT(now, before[k]);
        moved += now != before[k];
    }
    CHECK_EQ_INT(moved, counts[2]);
    /* Weight 3 of 6 takes about half the keys. */
    s[2].eligible = true;
    s[0].weight = 3;
    int heavy = 0;
    for (int k = 0; k < 1000; k++) {
        int n = snprintf(key, sizeof key, "users:%d", k);
        heavy += balancer_pick_hash(s, 4, key, (size_t)n) == 0;
    }
    CHECK(heavy > 420 && heavy < 580);
    /* The same in every process: the ids do not depend on the process key. */
    CHECK(balancer_instance_id("http://a:1") == balancer_instance_id("http://a:1"));
    CHECK(balancer_instance_id("http://a:1") != balancer_instance_id("http://a:2"));
}

TEST(passive_health_threshold_backoff_and_probation)
{
    struct upstream_health h;
    upstream_health_init(&h);
    struct upstream_health_params p = {.max_fails = 3, .fail_timeout_ms = 1000};
    CHECK_EQ_INT(upstream_health_report(&h, &p, false, "refused", 0), 0);
    CHECK_EQ_INT(upstream_health_report(&h, &p, true, NULL, 0), 0); /* resets the count */
    CHECK_EQ_INT(upstream_health_report(&h, &p, false, "refused", 0), 0);
    CHECK_EQ_INT(upstream_health_report(&h, &p, false, "refused", 0), 0);
    CHECK_EQ_INT(upstream_health_report(&h, &p, false, "refused", 10), -1);
    CHECK(!upstream_health_eligible(&h, &p, 500));
    CHECK(upstream_health_eligible(&h, &p, 1010)); /* probation after the cool-down */
    /* Failing again on probation: down for twice as long, not a new transition. */
    CHECK_EQ_INT(upstream_health_report(&h, &p, false, "reset", 1010), 0);
    CHECK(!upstream_health_eligible(&h, &p, 2500));
    CHECK(upstream_health_eligible(&h, &p, 3010));
    CHECK_EQ_INT((int)h.downs, 1);
    CHECK_EQ_INT(upstream_health_report(&h, &p, true, NULL, 3020), 1); /* back */
    CHECK(!upstream_health_is_down(&h));
    CHECK_EQ_INT(h.backoff, 1);
    upstream_health_destroy(&h);
}

TEST(active_health_streaks_decide)
{
    struct upstream_health h;
    upstream_health_init(&h);
    struct upstream_health_params p = {.max_fails = 1, .fail_timeout_ms = 10, .active = true,
                                       .healthy = 2, .unhealthy = 2};
    CHECK_EQ_INT(upstream_health_probe(&h, &p, false, "500", 0), 0);
    CHECK_EQ_INT(upstream_health_probe(&h, &p, true, NULL, 0), 0);
    CHECK_EQ_INT(upstream_health_probe(&h, &p, false, "500", 0), 0);
    CHECK_EQ_INT(upstream_health_probe(&h, &p, false, "500", 0), -1);
    /* With active checks a cool-down alone never brings it back. */
    CHECK(!upstream_health_eligible(&h, &p, 1000000));
    CHECK_EQ_INT(upstream_health_probe(&h, &p, true, NULL, 0), 0);
    CHECK_EQ_INT(upstream_health_probe(&h, &p, true, NULL, 0), 1);
    CHECK(upstream_health_eligible(&h, &p, 0));
    /* Passive failures take it down; only probes bring it back. */
    CHECK_EQ_INT(upstream_health_report(&h, &p, false, "refused", 0), -1);
    CHECK_EQ_INT(upstream_health_report(&h, &p, true, NULL, 100), 0);
    CHECK(upstream_health_is_down(&h));
    upstream_health_destroy(&h);
}

int main(void)
{
    RUN(round_robin_is_smooth_and_weighted);
    RUN(least_conn_per_weight_with_rotating_ties);
    RUN(hash_is_sticky_spread_and_moves_only_the_lost_keys);
    RUN(passive_health_threshold_backoff_and_probation);
    RUN(active_health_streaks_decide);
    return TEST_SUMMARY();
}
