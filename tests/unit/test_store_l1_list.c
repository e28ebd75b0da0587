/* test_store_l1_list.c - the memory tier's admin reads (store_l1.h): store_l1_peek leaves
 * the entry as it was (no LRU move, no removal of an expired entry, no counter), and
 * store_l1_list pages through every entry once, bounded, by prefix, with a cursor that
 * survives the tables growing between pages and refuses cursors it never gave. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_object.h"
#include "store_l1.h"
#include "test.h"

static const int64_t T0 = 1700000000000; /* an arbitrary wall-clock "now" */

static struct cache_object *mk(const char *key, size_t body_len, int64_t ttl_ms)
{
    char body[256];
    memset(body, 'x', sizeof body);
    struct cache_meta m = {.stored_at_ms = T0, .ttl_ms = ttl_ms};
    struct http_header h[] = {{"content-type", "text/plain"}};
    return cache_object_build(key, strlen(key), 200, h, 1, body, body_len, &m);
}

static void put(struct store_l1 *s, const char *key, size_t body_len, int64_t ttl_ms)
{
    struct cache_object *o = mk(key, body_len, ttl_ms);
    CHECK(o != NULL);
    CHECK_EQ_INT(store_l1_put(s, o, T0), 0);
    cache_object_unref(o);
}

/* The size of one entry as the store charges it. */
static size_t charged(void)
{
    struct store_l1 *s;
    store_l1_create(1 << 20, 1, &s);
    put(s, "k0", 100, 60000);
    struct store_l1_stats st;
    store_l1_get_stats(s, &st);
    store_l1_destroy(s);
    return (size_t)st.bytes;
}

TEST(peek_does_not_bump_lru_or_count)
{
    /* One shard holding exactly three entries of this size: a fourth evicts the LRU. */
    struct store_l1 *s;
    CHECK_EQ_INT(store_l1_create(3 * charged(), 1, &s), 0);
    put(s, "k1", 100, 60000);
    put(s, "k2", 100, 60000);
    put(s, "k3", 100, 60000);
    /* k1 is the least recently used.  Peeking at it must not save it. */
    struct cache_object *o = store_l1_peek(s, "k1", 2, T0);
    CHECK(o != NULL);
    CHECK_EQ_INT((int)o->body_len, 100);
    cache_object_unref(o);
    put(s, "k4", 100, 60000);
    CHECK(store_l1_peek(s, "k1", 2, T0) == NULL);
    o = store_l1_peek(s, "k2", 2, T0);
    CHECK(o != NULL);
    cache_object_unref(o);
    /* A get, by contrast, does save it (the control for the check above). */
    o = store_l1_get(s, "k2", 2, T0);
    cache_object_unref(o);
    put(s, "k5", 100, 60000);
    o = store_l1_peek(s, "k2", 2, T0);
    CHECK(o != NULL);
    cache_object_unref(o);
    CHECK(store_l1_peek(s, "k3", 2, T0) == NULL);
    store_l1_destroy(s);
}

TEST(peek_leaves_an_expired_entry_in_place)
{
    struct store_l1 *s;
    CHECK_EQ_INT(store_l1_create(1 << 20, 4, &s), 0);
    put(s, "old", 10, 1000);
    struct store_l1_stats st;
    CHECK(store_l1_peek(s, "old", 3, T0 + 5000) == NULL); /* useless then: not returned */
    store_l1_get_stats(s, &st);
    CHECK_EQ_INT((int)st.entries, 1); /* ... and not removed */
    CHECK_EQ_INT((int)st.expired, 0);
    CHECK(store_l1_peek(s, "none", 4, T0) == NULL);
    store_l1_destroy(s);
}

/* Lists everything under prefix, page by page; returns how many pages.  seen[i] counts
 * the times key "<prefix-less name> i" came back. */
static int list_all(struct store_l1 *s, const char *prefix, size_t limit, int *seen, int n,
                    size_t *max_page, void (*between)(struct store_l1 *, int), int64_t now)
{
    uint64_t cur = STORE_L1_LIST_START;
    int pages = 0;
    *max_page = 0;
    while (cur != STORE_L1_LIST_END && pages < 100000) {
        struct cache_object **objs;
        size_t got;
        CHECK_EQ_INT(store_l1_list(s, &cur, prefix, strlen(prefix), limit, now, &objs, &got),
                     0);
        if (got > *max_page) *max_page = got;
        for (size_t i = 0; i < got; i++) {
            CHECK(strncmp(objs[i]->key, prefix, strlen(prefix)) == 0);
            int idx = atoi(objs[i]->key + strlen(prefix));
            if (idx >= 0 && idx < n) seen[idx]++;
            cache_object_unref(objs[i]);
        }
        free(objs);
        if (between) between(s, pages);
        pages++;
    }
    return pages;
}

TEST(list_pages_every_entry_once_bounded)
{
    struct store_l1 *s;
    CHECK_EQ_INT(store_l1_create(64 << 20, 8, &s), 0);
    enum { N = 2000 };
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "a:%d", i);
        put(s, key, 10, 60000);
        snprintf(key, sizeof key, "b:%d", i);
        put(s, key, 10, 60000);
    }
    static int seen[N];
    size_t max_page;
    memset(seen, 0, sizeof seen);
    int pages = list_all(s, "a:", 7, seen, N, &max_page, NULL, T0);
    for (int i = 0; i < N; i++) CHECK_EQ_INT(seen[i], 1);
    CHECK(pages >= N / 7);
    /* A bucket is never split; at load factor <= 1 its chain is a few entries. */
    CHECK(max_page <= 7 + 4);
    memset(seen, 0, sizeof seen);
    list_all(s, "a:", 1000, seen, N, &max_page, NULL, T0);
    for (int i = 0; i < N; i++) CHECK_EQ_INT(seen[i], 1);
    CHECK(max_page <= 1000 + 4);
    /* The empty prefix lists both families; past their useful life nothing. */
    memset(seen, 0, sizeof seen);
    list_all(s, "", 100, seen, N, &max_page, NULL, T0);
    memset(seen, 0, sizeof seen);
    list_all(s, "b:", 100, seen, N, &max_page, NULL, T0 + 3600 * 1000);
    for (int i = 0; i < N; i++) CHECK_EQ_INT(seen[i], 0);
    store_l1_destroy(s);
}

/* Between pages: many inserts, so every shard's table doubles (some more than once). */
static void grow(struct store_l1 *s, int page)
{
    if (page != 2) return;
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "z:%d", i);
        put(s, key, 10, 60000);
    }
}

TEST(list_survives_tables_growing_between_pages)
{
    struct store_l1 *s;
    CHECK_EQ_INT(store_l1_create(64 << 20, 4, &s), 0);
    enum { N = 300 };
    char key[32];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "a:%d", i);
        put(s, key, 10, 60000);
    }
    static int seen[N];
    size_t max_page;
    memset(seen, 0, sizeof seen);
    list_all(s, "a:", 10, seen, N, &max_page, grow, T0);
    for (int i = 0; i < N; i++) CHECK(seen[i] >= 1); /* at least once, never skipped */
    store_l1_destroy(s);
}

TEST(list_refuses_foreign_cursors_and_handles_empty_stores)
{
    struct store_l1 *s;
    CHECK_EQ_INT(store_l1_create(1 << 20, 4, &s), 0);
    struct cache_object **objs;
    size_t n;
    uint64_t cur = (uint64_t)4 << 48; /* shard 4 of 4 */
    CHECK_EQ_INT(store_l1_list(s, &cur, "", 0, 10, T0, &objs, &n), -EINVAL);
    cur = STORE_L1_LIST_START;
    CHECK_EQ_INT(store_l1_list(s, &cur, "", 0, 10, T0, &objs, &n), 0);
    CHECK_EQ_INT((int)n, 0);
    CHECK(cur == STORE_L1_LIST_END); /* 4 shards x 16 buckets: one page's work */
    CHECK_EQ_INT(store_l1_list(s, &cur, "", 0, 10, T0, &objs, &n), 0); /* at the end: stays */
    CHECK(cur == STORE_L1_LIST_END);
    store_l1_destroy(s);
    struct store_l1 *off;
    CHECK_EQ_INT(store_l1_create(0, 4, &off), 0); /* a disabled tier lists nothing */
    cur = STORE_L1_LIST_START;
    CHECK_EQ_INT(store_l1_list(off, &cur, "", 0, 10, T0, &objs, &n), 0);
    CHECK(n == 0 && cur == STORE_L1_LIST_END);
    store_l1_destroy(off);
}

static bool big_body(const struct cache_object *o, void *arg)
{
    return o->body_len >= *(size_t *)arg;
}

TEST(delete_matching_removes_exactly_the_matches)
{
    struct store_l1 *s;
    CHECK_EQ_INT(store_l1_create(1 << 20, 4, &s), 0);
    char key[16];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "k%d", i);
        put(s, key, (size_t)(i % 2 ? 200 : 20), 60000);
    }
    size_t min = 100;
    CHECK_EQ_INT((int)store_l1_delete_matching(s, big_body, &min), 25);
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "k%d", i);
        struct cache_object *o = store_l1_peek(s, key, strlen(key), T0);
        CHECK((o != NULL) == (i % 2 == 0));
        cache_object_unref(o);
    }
    CHECK_EQ_INT((int)store_l1_delete_matching(s, big_body, &min), 0);
    struct store_l1_stats st;
    store_l1_get_stats(s, &st);
    CHECK_EQ_INT((int)st.entries, 25);
    store_l1_destroy(s);
}

TEST(clear_returns_its_count)
{
    struct store_l1 *s;
    CHECK_EQ_INT(store_l1_create(1 << 20, 4, &s), 0);
    put(s, "x1", 10, 60000);
    put(s, "x2", 10, 60000);
    put(s, "x3", 10, 60000);
    CHECK_EQ_INT((int)store_l1_clear(s), 3);
    CHECK_EQ_INT((int)store_l1_clear(s), 0);
    store_l1_destroy(s);
}

int main(void)
{
    RUN(peek_does_not_bump_lru_or_count);
    RUN(peek_leaves_an_expired_entry_in_place);
    RUN(list_pages_every_entry_once_bounded);
    RUN(list_survives_tables_growing_between_pages);
    RUN(list_refuses_foreign_cursors_and_handles_empty_stores);
    RUN(delete_matching_removes_exactly_the_matches);
    RUN(clear_returns_its_count);
    return TEST_SUMMARY();
}
