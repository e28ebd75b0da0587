/* Unit tests for coalesce: leader election, waking every waiter once. */
#include <pthread.h>
#include <stdatomic.h>

#include "coalesce.h"
#include "test.h"

static atomic_int woken;
static atomic_int last_outcome;

static void wake(void *who, enum flight_outcome outcome, struct cache_object *obj, int status)
{
    atomic_fetch_add(&woken, 1);
    atomic_store(&last_outcome, (int)outcome);
    (void)who;
}

TEST(first_is_leader_others_wait_and_all_wake)
{
    struct coalescer *c;
    CHECK_EQ_INT(coalesce_create(&c), 0);
    struct flight *f1, *f2;
    atomic_store(&woken, 0);
    CHECK(coalesce_join(c, "k", 1, NULL, wake, &f1));
    CHECK(f1 != NULL);
    for (int i = 0; i < 10; i++) CHECK(!coalesce_join(c, "k", 1, NULL, wake, &f2));
    /* A different key gets its own leader. */
    struct flight *other;
    CHECK(coalesce_join(c, "j", 1, NULL, wake, &other));
    CHECK_EQ_INT(coalesce_open_flights(c), 2);
    coalesce_finish(c, f1, FLIGHT_RETRY, NULL, 0);
    CHECK_EQ_INT(atomic_load(&woken), 10);
    CHECK_EQ_INT(atomic_load(&last_outcome), FLIGHT_RETRY);
    CHECK_EQ_INT(coalesce_open_flights(c), 1);
    /* After finishing, the next request leads a new flight. */
    CHECK(coalesce_join(c, "k", 1, NULL, wake, &f2));
    coalesce_finish(c, f2, FLIGHT_STORED, NULL, 0);
    coalesce_finish(c, other, FLIGHT_FAILED, NULL, 502);
    CHECK_EQ_INT(atomic_load(&woken), 10);
    CHECK_EQ_INT(coalesce_open_flights(c), 0);
    coalesce_destroy(c);
}

static struct coalescer *shared;
static atomic_int leaders;
static struct flight *leader_flight;

static void *racer(void *arg)
{
    struct flight *f;
    if (coalesce_join(shared, "hot", 3, NULL, wake, &f)) {
        atomic_fetch_add(&leaders, 1);
        leader_flight = f;
    }
    return NULL;
}

TEST(concurrent_joins_elect_exactly_one_leader)
{
    CHECK_EQ_INT(coalesce_create(&shared), 0);
    atomic_store(&woken, 0);
    atomic_store(&leaders, 0);
    pthread_t t[16];
    for (int i = 0; i < 16; i++) pthread_create(&t[i], NULL, racer, NULL);
    for (int i = 0; i < 16; i++) pthread_join(t[i], NULL);
    CHECK_EQ_INT(atomic_load(&leaders), 1);
    coalesce_finish(shared, leader_flight, FLIGHT_STORED, NULL, 0);
    CHECK_EQ_INT(atomic_load(&woken), 15);
    coalesce_destroy(shared);
}

TEST(try_lead_never_waits)
{
    struct coalescer *c;
    CHECK_EQ_INT(coalesce_create(&c), 0);
    struct flight *f, *g;
    atomic_store(&woken, 0);
    CHECK(coalesce_try_lead(c, "k", 1, &f));
    CHECK(!coalesce_try_lead(c, "k", 1, &g));
    CHECK(!coalesce_join(c, "k", 1, NULL, wake, &g)); /* plain requests still wait on it */
    coalesce_finish(c, f, FLIGHT_STORED, NULL, 0);
    CHECK_EQ_INT(atomic_load(&woken), 1);
    CHECK(coalesce_try_lead(c, "k", 1, &f));
    coalesce_finish(c, f, FLIGHT_STORED, NULL, 0);
    coalesce_destroy(c);
}

int main(void)
{
    RUN(first_is_leader_others_wait_and_all_wake);
    RUN(concurrent_joins_elect_exactly_one_leader);
    RUN(try_lead_never_waits);
    return TEST_SUMMARY();
}
