/* Unit tests for inval_index: prefix and tag records against entry generations. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "inval_index.h"
#include "test.h"

static struct cache_object *obj(const char *key, uint64_t gen, const char *tags)
{
    struct cache_meta m = {.stored_at_ms = 1000, .ttl_ms = 60000, .gen = gen};
    struct http_header h = {CACHEGW_TAGS_HEADER, tags ? tags : ""};
    return cache_object_build(key, strlen(key), 200, &h, tags ? 1 : 0, "b", 1, &m);
}

TEST(prefix_records_invalidate_older_generations_only)
{
    struct inval_index *idx;
    CHECK_EQ_INT(inval_index_create(&idx), 0);
    struct cache_object *old = obj("posts:page=1", 3, NULL);
    struct cache_object *other = obj("users:1", 3, NULL);
    struct cache_object *newer = obj("posts:page=2", 5, NULL);
    CHECK(inval_index_valid(idx, old));
    CHECK_EQ_INT(inval_index_note_prefix(idx, "posts:", 6, 5), 0);
    CHECK(!inval_index_valid(idx, old));
    CHECK(inval_index_valid(idx, other));
    CHECK(inval_index_valid(idx, newer)); /* filled after the invalidation was known */
    CHECK_EQ_INT(inval_index_current(idx), 5);
    /* A longer recorded prefix is found too; an older seq never lowers a record. */
    CHECK_EQ_INT(inval_index_note_prefix(idx, "posts:page=2", 12, 9), 0);
    CHECK(!inval_index_valid(idx, newer));
    CHECK_EQ_INT(inval_index_note_prefix(idx, "posts:", 6, 1), 0);
    CHECK(!inval_index_valid(idx, old));
    CHECK_EQ_INT(inval_index_next_local(idx), 10);
    cache_object_unref(old);
    cache_object_unref(other);
    cache_object_unref(newer);
    inval_index_destroy(idx);
}

TEST(tag_records)
{
    struct inval_index *idx;
    CHECK_EQ_INT(inval_index_create(&idx), 0);
    struct cache_object *a = obj("a", 2, "user-1 team-7");
    struct cache_object *b = obj("b", 2, "user-2");
    struct cache_object *c = obj("c", 2, NULL);
    CHECK_EQ_INT(inval_index_note_tag(idx, "team-7", 6, 3), 0);
    CHECK(!inval_index_valid(idx, a));
    CHECK(inval_index_valid(idx, b));
    CHECK(inval_index_valid(idx, c));
    CHECK_EQ_INT(inval_index_records(idx), 1);
    cache_object_unref(a);
    cache_object_unref(b);
    cache_object_unref(c);
    inval_index_destroy(idx);
}

TEST(many_records_stay_fast_and_correct)
{
    struct inval_index *idx;
    CHECK_EQ_INT(inval_index_create(&idx), 0);
    char p[32];
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(p, sizeof p, "feed:%d:", i);
        CHECK_EQ_INT(inval_index_note_prefix(idx, p, (size_t)n, 100), 0);
    }
    struct cache_object *hit = obj("feed:4242:page=1", 50, NULL);
    struct cache_object *miss = obj("feed:x:page=1", 50, NULL);
    CHECK(!inval_index_valid(idx, hit));
    CHECK(inval_index_valid(idx, miss));
    cache_object_unref(hit);
    cache_object_unref(miss);
    inval_index_destroy(idx);
}

TEST(the_index_is_bounded_by_folding_into_a_floor)
{
    struct inval_index *idx;
    CHECK_EQ_INT(inval_index_create(&idx), 0);
    struct cache_object *before = obj("users:1", 0, NULL);
    char p[32];
    for (int i = 0; i < INVAL_INDEX_MAX_RECORDS; i++) {
        int n = snprintf(p, sizeof p, "x%d:", i);
        CHECK_EQ_INT(inval_index_note_prefix(idx, p, (size_t)n, inval_index_next_local(idx)), 0);
    }
    CHECK_EQ_INT(inval_index_records(idx), INVAL_INDEX_MAX_RECORDS);
    CHECK_EQ_INT(inval_index_folds(idx), 0);
    CHECK(inval_index_valid(idx, before)); /* no record covers users:1 */
    /* One more record folds: bounded, and every older entry is invalid. */
    CHECK_EQ_INT(inval_index_note_prefix(idx, "y:", 2, inval_index_next_local(idx)), 0);
    CHECK_EQ_INT(inval_index_records(idx), 1);
    CHECK_EQ_INT(inval_index_folds(idx), 1);
    CHECK(!inval_index_valid(idx, before));
    struct cache_object *after = obj("users:1", inval_index_current(idx), NULL);
    CHECK(inval_index_valid(idx, after));
    /* A floor learnt from another instance. */
    inval_index_raise_floor(idx, inval_index_current(idx) + 5);
    CHECK(!inval_index_valid(idx, after));
    cache_object_unref(before);
    cache_object_unref(after);
    inval_index_destroy(idx);
}

TEST(hostile_sequences_and_epochs_are_refused)
{
    uint64_t v = 42;
    const char *bad[] = {"-1", "", "18446744073709551615", "12a", " 1", "1 ", "+1", "0x10",
                         "99999999999999999", "1e15"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(inval_index_parse_seq(bad[i], strlen(bad[i]), &v), -EINVAL);
        CHECK(v == 42);
    }
    CHECK_EQ_INT(inval_index_parse_seq("0", 1, &v), 0);
    CHECK(v == 0);
    CHECK_EQ_INT(inval_index_parse_seq("17", 2, &v), 0);
    CHECK(v == 17);
    char base[24];
    snprintf(base, sizeof base, "%llu", (unsigned long long)inval_index_seq_base());
    CHECK_EQ_INT(inval_index_parse_seq(base, strlen(base), &v), 0);
    CHECK(!inval_index_epoch_valid("", 0));
    CHECK(!inval_index_epoch_valid("a:b", 3));
    CHECK(!inval_index_epoch_valid("0123456789abcdef0123456789abcdef0", 33));
    CHECK(inval_index_epoch_valid("19ab3f00c1e2", 12));

    struct inval_index *idx;
    CHECK_EQ_INT(inval_index_create(&idx), 0);
    CHECK_EQ_INT(inval_index_note_epoch(idx, "aa", 2), 0); /* the first one seen */
    CHECK_EQ_INT(inval_index_note_epoch(idx, "aa", 2), 0);
    CHECK_EQ_INT(inval_index_note_epoch(idx, "bb", 2), 1); /* Redis lost its state */
    CHECK_EQ_INT(inval_index_note_epoch(idx, "bb", 2), 0);
    CHECK_EQ_INT(inval_index_note_epoch(idx, "b-b", 3), -EINVAL);
    inval_index_destroy(idx);
}

int main(void)
{
    RUN(prefix_records_invalidate_older_generations_only);
    RUN(tag_records);
    RUN(many_records_stay_fast_and_correct);
    RUN(the_index_is_bounded_by_folding_into_a_floor);
    RUN(hostile_sequences_and_epochs_are_refused);
    return TEST_SUMMARY();
}
