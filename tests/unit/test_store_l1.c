/* test_store_l1.c - the memory tier: LRU order, byte bound, TTL with injected
 * time, replace, delete/prefix/clear, reference safety, and a threaded stress run. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_object.h"
#include "store_l1.h"
#include "test.h"

static const int64_t T0 = 1700000000000; /* an arbitrary wall-clock "now" */

/* An object for key whose body is body_len copies of fill, stored at T0. */
static struct cache_object *mk(const char *key, size_t body_len, char fill, int64_t ttl_ms,
                               int64_t swr_ms)
{
    char *body = malloc(body_len ? body_len : 1);
    memset(body, fill, body_len);
    struct cache_meta m = {.stored_at_ms = T0, .ttl_ms = ttl_ms, .swr_ms = swr_ms};
    struct http_header h[] = {{"content-type", "text/plain"}};
    struct cache_object *o = cache_object_build(key, strlen(key), 200, h, 1, body, body_len, &m);
    free(body);
    return o;
}

static struct cache_object *mk_plain(const char *key, size_t body_len)
{
    return mk(key, body_len, 'x', 3600 * 1000, 0);
}

static struct store_l1_stats stats(struct store_l1 *s)
{
    struct store_l1_stats st;
    store_l1_get_stats(s, &st);
    return st;
}

/* 1 if key is present at T0.  Note that a hit also touches the entry. */
static int has(struct store_l1 *s, const char *key)
{
    struct cache_object *o = store_l1_get(s, key, strlen(key), T0);
    cache_object_unref(o);
    return o != NULL;
}

/* The store's per-entry overhead, measured: bytes charged minus obj->charge. */
static size_t overhead(void)
{
    struct store_l1 *s = NULL;
    if (store_l1_create(1 << 20, 1, &s) != 0) return 0;
    struct cache_object *o = mk_plain("probe", 10);
    store_l1_put(s, o, T0);
    size_t ov = (size_t)stats(s).bytes - o->charge;
    cache_object_unref(o);
    store_l1_destroy(s);
    return ov;
}

/* Approximate LRU (store_l1.c): a hit moves an entry to the head only when it was
 * promoted a quarter of the entries ago or longer.  An entry hit at the tail still
 * survives the next eviction; one near the head is left where it is. */
TEST(lru_promotion_is_approximate_near_the_head)
{
    enum { N = 16 };
    struct cache_object *o[N + 2];
    char name[8];
    for (int i = 0; i < N + 2; i++) {
        snprintf(name, sizeof name, "k%02d", i);
        o[i] = mk_plain(name, 100);
    }
    size_t per = o[0]->charge + overhead();
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(N * per, 1, &s), 0); /* room for exactly N */
    for (int i = 0; i < N; i++) CHECK_EQ_INT(store_l1_put(s, o[i], T0), 0);
    /* k00 is the tail: hit, it goes to the head, and k01 is evicted instead. */
    CHECK(has(s, "k00"));
    CHECK_EQ_INT(store_l1_put(s, o[N], T0), 0);
    CHECK(!has(s, "k01"));
    CHECK(has(s, "k00"));
    /* k15 went to the head 2 promotions ago (< N / 4): its hit is a hit, and the next
     * put still evicts the tail (k02), not anything near the head. */
    CHECK(has(s, "k15"));
    CHECK_EQ_INT(store_l1_put(s, o[N + 1], T0), 0);
    CHECK(!has(s, "k02"));
    CHECK(has(s, "k15"));
    for (int i = 0; i < N + 2; i++) cache_object_unref(o[i]);
    store_l1_destroy(s);
}

TEST(overhead_is_counted)
{
    /* If node overhead were not charged the byte bound would be a lie for small
     * objects; the node holds at least a few pointers. */
    CHECK(overhead() >= 4 * sizeof(void *));
    CHECK(overhead() < 256);
}

TEST(lru_evicts_least_recently_used)
{
    struct cache_object *a = mk_plain("a", 100), *b = mk_plain("b", 100), *c = mk_plain("c", 100),
                        *d = mk_plain("d", 100), *e = mk_plain("e", 100);
    size_t per = a->charge + overhead();
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(3 * per, 1, &s), 0); /* room for exactly three */
    CHECK_EQ_INT(store_l1_put(s, a, T0), 0);
    CHECK_EQ_INT(store_l1_put(s, b, T0), 0);
    CHECK_EQ_INT(store_l1_put(s, c, T0), 0);
    CHECK_EQ_INT(stats(s).entries, 3);
    CHECK_EQ_INT(stats(s).evictions, 0);

    /* Touch a: b becomes the least recently used and goes first. */
    struct cache_object *got = store_l1_get(s, "a", 1, T0);
    CHECK(got == a);
    cache_object_unref(got);
    CHECK_EQ_INT(store_l1_put(s, d, T0), 0); /* MRU..LRU: d a c -> evicts b */
    CHECK_EQ_INT(stats(s).evictions, 1);
    CHECK_EQ_INT(stats(s).entries, 3);
    CHECK(!has(s, "b"));

    /* Without touching, the oldest insert (c, behind a) goes next. */
    CHECK_EQ_INT(store_l1_put(s, e, T0), 0); /* e d a -> evicted c */
    CHECK_EQ_INT(stats(s).evictions, 2);
    CHECK(!has(s, "c"));
    CHECK(has(s, "a"));
    CHECK(has(s, "d"));
    CHECK(has(s, "e"));
    CHECK(stats(s).bytes <= 3 * per);

    store_l1_destroy(s);
    cache_object_unref(a);
    cache_object_unref(b);
    cache_object_unref(c);
    cache_object_unref(d);
    cache_object_unref(e);
}

TEST(byte_bound_holds)
{
    const size_t max = 64 * 1024;
    const unsigned n_shards = 4;
    const size_t ov = overhead();
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(max, n_shards, &s), 0);
    if (s == NULL) return;

    char key[32];
    uint64_t r = 12345;
    for (int i = 0; i < 2000; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(key, sizeof key, "k%d", i % 700);
        struct cache_object *o = mk_plain(key, 50 + (size_t)(r >> 33) % 3000);
        CHECK_EQ_INT(store_l1_put(s, o, T0), 0);
        cache_object_unref(o);
        struct store_l1_stats st = stats(s);
        if (st.bytes > max) {
            CHECK(st.bytes <= max);
            break;
        }
    }
    struct store_l1_stats st = stats(s);
    CHECK_EQ_INT(st.max_bytes, max);
    CHECK(st.evictions > 0);
    CHECK(st.entries > 10);

    /* stats.bytes is exactly what the surviving entries cost. */
    uint64_t sum = 0, count = 0;
    for (int i = 0; i < 700; i++) {
        snprintf(key, sizeof key, "k%d", i);
        struct cache_object *o = store_l1_get(s, key, strlen(key), T0);
        if (o == NULL) continue;
        sum += o->charge + ov;
        count++;
        cache_object_unref(o);
    }
    CHECK_EQ_INT(count, st.entries);
    CHECK_EQ_INT(sum, st.bytes);

    /* Too big for one shard: refused, not stored, nothing else disturbed. */
    struct cache_object *big = mk_plain("big", max / n_shards);
    CHECK_EQ_INT(store_l1_put(s, big, T0), -E2BIG);
    CHECK(!has(s, "big"));
    CHECK_EQ_INT(stats(s).bytes, st.bytes);
    CHECK_EQ_INT(stats(s).entries, st.entries);
    CHECK_EQ_INT(atomic_load(&big->refs), 1); /* no reference kept */
    cache_object_unref(big);
    store_l1_destroy(s);
}

TEST(object_filling_a_shard_exactly_fits)
{
    const size_t ov = overhead();
    struct cache_object *o = mk_plain("fits", 1000);
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(o->charge + ov, 1, &s), 0);
    CHECK_EQ_INT(store_l1_put(s, o, T0), 0);
    CHECK(has(s, "fits"));
    store_l1_destroy(s);

    CHECK_EQ_INT(store_l1_create(o->charge + ov - 1, 1, &s), 0);
    CHECK_EQ_INT(store_l1_put(s, o, T0), -E2BIG);
    CHECK(!has(s, "fits"));
    store_l1_destroy(s);
    cache_object_unref(o);
}

TEST(shard_count_rounds_up_to_power_of_two)
{
    /* 3 shards become 4: an object that fits max/3 but not max/4 is refused. */
    const size_t ov = overhead();
    struct cache_object *o = mk_plain("k", 1000);
    size_t need = o->charge + ov;
    size_t max = need * 4 - 4; /* max/4 < need <= max/3 */
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(max, 3, &s), 0);
    CHECK_EQ_INT(store_l1_put(s, o, T0), -E2BIG);
    store_l1_destroy(s);
    CHECK_EQ_INT(store_l1_create(max, 2, &s), 0);
    CHECK_EQ_INT(store_l1_put(s, o, T0), 0);
    store_l1_destroy(s);
    /* 0 means 64 shards. */
    CHECK_EQ_INT(store_l1_create(need * 64, 0, &s), 0);
    CHECK_EQ_INT(store_l1_put(s, o, T0), 0);
    store_l1_destroy(s);
    CHECK_EQ_INT(store_l1_create(need * 64 - 64, 0, &s), 0);
    CHECK_EQ_INT(store_l1_put(s, o, T0), -E2BIG);
    store_l1_destroy(s);
    cache_object_unref(o);
}

TEST(ttl_with_injected_time)
{
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(1 << 20, 4, &s), 0);
    /* ttl 10 s, stale-while-revalidate 5 s: useless from T0 + 15000. */
    struct cache_object *o = mk("posts:1", 10, 'p', 10000, 5000);
    CHECK_EQ_INT(cache_object_expires_at_ms(o), T0 + 15000);
    CHECK_EQ_INT(store_l1_put(s, o, T0), 0);

    struct cache_object *got = store_l1_get(s, "posts:1", 7, T0 + 1000);
    CHECK(got == o && got != NULL && cache_object_is_fresh(got, T0 + 1000));
    cache_object_unref(got);

    got = store_l1_get(s, "posts:1", 7, T0 + 12000); /* stale but inside SWR */
    CHECK(got == o);
    if (got != NULL) {
        CHECK(!cache_object_is_fresh(got, T0 + 12000));
        CHECK(cache_object_in_swr(got, T0 + 12000));
    }
    cache_object_unref(got);
    got = store_l1_get(s, "posts:1", 7, T0 + 14999);
    CHECK(got == o);
    cache_object_unref(got);
    CHECK_EQ_INT(stats(s).expired, 0);

    /* At expires_at it is gone, and dropped (not just hidden). */
    CHECK(store_l1_get(s, "posts:1", 7, T0 + 15000) == NULL);
    CHECK_EQ_INT(stats(s).expired, 1);
    CHECK_EQ_INT(stats(s).entries, 0);
    CHECK_EQ_INT(stats(s).bytes, 0);
    CHECK(store_l1_get(s, "posts:1", 7, T0) == NULL); /* even going back in time */
    CHECK_EQ_INT(atomic_load(&o->refs), 1);

    /* Putting an object that is already useless stores nothing, and still
     * drops the older entry it supersedes. */
    struct cache_object *fresh = mk("posts:1", 10, 'q', 60000, 0);
    CHECK_EQ_INT(store_l1_put(s, fresh, T0), 0);
    CHECK_EQ_INT(store_l1_put(s, o, T0 + 20000), 0);
    CHECK_EQ_INT(stats(s).entries, 0);
    CHECK(store_l1_get(s, "posts:1", 7, T0 + 20000) == NULL);
    CHECK_EQ_INT(atomic_load(&o->refs), 1);
    CHECK_EQ_INT(atomic_load(&fresh->refs), 1);
    cache_object_unref(fresh);
    cache_object_unref(o);
    store_l1_destroy(s);
}

TEST(expired_tail_entries_dropped_on_put)
{
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(1 << 20, 1, &s), 0);
    struct cache_object *shortlived = mk("short", 10, 's', 1000, 0);
    struct cache_object *longlived = mk("long", 10, 'l', 600000, 0);
    CHECK_EQ_INT(store_l1_put(s, shortlived, T0), 0);
    CHECK_EQ_INT(stats(s).entries, 1);
    /* Much later, a put finds the expired entry at the LRU tail and drops it,
     * though there is plenty of room. */
    CHECK_EQ_INT(store_l1_put(s, longlived, T0 + 5000), 0);
    CHECK_EQ_INT(stats(s).entries, 1);
    CHECK_EQ_INT(stats(s).expired, 1);
    CHECK_EQ_INT(stats(s).evictions, 0);
    CHECK_EQ_INT(atomic_load(&shortlived->refs), 1);
    CHECK_EQ_INT(stats(s).bytes, longlived->charge + overhead());
    cache_object_unref(shortlived);
    cache_object_unref(longlived);
    store_l1_destroy(s);
}

TEST(replace_semantics)
{
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(64 * 1024, 2, &s), 0);
    struct cache_object *v1 = mk("users:1", 100, '1', 60000, 0);
    struct cache_object *v2 = mk("users:1", 300, '2', 60000, 0);
    CHECK_EQ_INT(store_l1_put(s, v1, T0), 0);
    CHECK_EQ_INT(atomic_load(&v1->refs), 2); /* the store holds its own reference */
    CHECK_EQ_INT(store_l1_put(s, v2, T0), 0);
    CHECK_EQ_INT(atomic_load(&v1->refs), 1); /* released on replace */
    CHECK_EQ_INT(atomic_load(&v2->refs), 2);

    struct cache_object *got = store_l1_get(s, "users:1", 7, T0);
    CHECK(got == v2);
    if (got != NULL) CHECK(got->body_len == 300 && got->body[0] == '2');
    cache_object_unref(got);
    CHECK_EQ_INT(stats(s).entries, 1);
    CHECK_EQ_INT(stats(s).bytes, v2->charge + overhead());
    CHECK_EQ_INT(stats(s).evictions, 0);

    /* Same object again: still one entry, one store reference. */
    CHECK_EQ_INT(store_l1_put(s, v2, T0), 0);
    CHECK_EQ_INT(atomic_load(&v2->refs), 2);
    CHECK_EQ_INT(stats(s).entries, 1);

    /* A newer version too big to store still evicts the superseded one. */
    struct cache_object *huge = mk("users:1", 40 * 1024, '3', 60000, 0);
    CHECK_EQ_INT(store_l1_put(s, huge, T0), -E2BIG);
    CHECK(!has(s, "users:1"));
    CHECK_EQ_INT(stats(s).entries, 0);
    CHECK_EQ_INT(atomic_load(&v2->refs), 1);
    cache_object_unref(huge);
    cache_object_unref(v1);
    cache_object_unref(v2);
    store_l1_destroy(s);
}

TEST(delete_prefix_and_clear)
{
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(1 << 20, 8, &s), 0);
    char key[32];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "users:%d", i);
        struct cache_object *o = mk_plain(key, 20);
        CHECK_EQ_INT(store_l1_put(s, o, T0), 0);
        cache_object_unref(o);
        snprintf(key, sizeof key, "posts:%d", i);
        o = mk_plain(key, 20);
        CHECK_EQ_INT(store_l1_put(s, o, T0), 0);
        cache_object_unref(o);
    }
    struct cache_object *short_key = mk_plain("post", 20);
    CHECK_EQ_INT(store_l1_put(s, short_key, T0), 0);
    cache_object_unref(short_key);
    CHECK_EQ_INT(stats(s).entries, 21);

    CHECK_EQ_INT(store_l1_delete(s, "users:3", 7), 1);
    CHECK_EQ_INT(store_l1_delete(s, "users:3", 7), 0);
    CHECK_EQ_INT(store_l1_delete(s, "users:", 6), 0); /* exact key only */
    CHECK(!has(s, "users:3"));
    CHECK(has(s, "users:4"));
    CHECK_EQ_INT(stats(s).entries, 20);

    CHECK_EQ_INT(store_l1_delete_prefix(s, "users:", 6), 9);
    CHECK_EQ_INT(stats(s).entries, 11);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "users:%d", i);
        CHECK(!has(s, key));
        snprintf(key, sizeof key, "posts:%d", i);
        CHECK(has(s, key));
    }
    /* A prefix longer than a key never matches it; "posts:1" matches one. */
    CHECK_EQ_INT(store_l1_delete_prefix(s, "posts:1", 7), 1);
    CHECK(has(s, "post"));
    CHECK_EQ_INT(store_l1_delete_prefix(s, "nothing", 7), 0);
    CHECK_EQ_INT(stats(s).entries, 10);

    store_l1_clear(s);
    CHECK_EQ_INT(stats(s).entries, 0);
    CHECK_EQ_INT(stats(s).bytes, 0);
    CHECK(!has(s, "post"));
    CHECK(!has(s, "posts:2"));
    /* The store is usable after clear. */
    struct cache_object *o = mk_plain("again", 20);
    CHECK_EQ_INT(store_l1_put(s, o, T0), 0);
    CHECK(has(s, "again"));
    /* The empty prefix matches everything. */
    CHECK_EQ_INT(store_l1_delete_prefix(s, "", 0), 1);
    CHECK_EQ_INT(stats(s).entries, 0);
    cache_object_unref(o);
    store_l1_destroy(s);
}

static int body_is(const struct cache_object *o, char fill, size_t len)
{
    if (o->body_len != len) return 0;
    for (size_t i = 0; i < len; i++)
        if (o->body[i] != fill) return 0;
    return 1;
}

TEST(references_survive_removal)
{
    struct store_l1 *s = NULL;
    struct cache_object *a = mk("a", 500, 'a', 60000, 0);
    size_t per = a->charge + overhead();
    CHECK_EQ_INT(store_l1_create(2 * per, 1, &s), 0);
    CHECK_EQ_INT(store_l1_put(s, a, T0), 0);
    cache_object_unref(a); /* the store now holds the only reference */

    /* Evicted while held. */
    struct cache_object *held = store_l1_get(s, "a", 1, T0);
    CHECK(held != NULL);
    if (held == NULL) return;
    CHECK_EQ_INT(atomic_load(&held->refs), 2);
    struct cache_object *b = mk("b", 500, 'b', 60000, 0);
    struct cache_object *c = mk("c", 500, 'c', 60000, 0);
    CHECK_EQ_INT(store_l1_put(s, b, T0), 0);
    CHECK_EQ_INT(store_l1_put(s, c, T0), 0); /* evicts a */
    CHECK(!has(s, "a"));
    CHECK(body_is(held, 'a', 500)); /* ASan: a use-after-free would abort here */
    CHECK_EQ_STR(cache_object_header(held, "content-type"), "text/plain");
    CHECK_EQ_INT(atomic_load(&held->refs), 1); /* ours is the last: unref frees */
    cache_object_unref(held);

    /* Deleted while held. */
    held = store_l1_get(s, "b", 1, T0);
    CHECK(held == b);
    CHECK_EQ_INT(store_l1_delete(s, "b", 1), 1);
    CHECK(body_is(b, 'b', 500));
    CHECK_EQ_INT(atomic_load(&b->refs), 2); /* ours from mk, and the get's */
    cache_object_unref(held);
    cache_object_unref(b);

    /* Cleared, then destroyed, while held. */
    held = store_l1_get(s, "c", 1, T0);
    cache_object_unref(c);
    CHECK(held != NULL);
    store_l1_clear(s);
    if (held != NULL) CHECK(body_is(held, 'c', 500));
    CHECK_EQ_INT(store_l1_put(s, held, T0), 0);
    store_l1_destroy(s);
    if (held != NULL) {
        CHECK(body_is(held, 'c', 500));
        CHECK_EQ_INT(atomic_load(&held->refs), 1);
    }
    cache_object_unref(held);
}

TEST(disabled_store)
{
    struct store_l1 *s = NULL;
    CHECK_EQ_INT(store_l1_create(0, 0, &s), 0);
    struct cache_object *o = mk_plain("k", 1);
    CHECK_EQ_INT(store_l1_put(s, o, T0), -E2BIG);
    CHECK(store_l1_get(s, "k", 1, T0) == NULL);
    CHECK_EQ_INT(atomic_load(&o->refs), 1);
    struct store_l1_stats st = stats(s);
    CHECK_EQ_INT(st.entries, 0);
    CHECK_EQ_INT(st.bytes, 0);
    CHECK_EQ_INT(st.max_bytes, 0);
    cache_object_unref(o);
    store_l1_destroy(s);
    store_l1_destroy(NULL);
}

/* ---- stress ---------------------------------------------------------------- */

#define STRESS_KEYS 400
#define STRESS_VARIANTS 3
#define STRESS_THREADS 4
#define STRESS_OPS 100000

struct stress {
    struct store_l1 *store;
    struct cache_object *objs[STRESS_KEYS][STRESS_VARIANTS];
    char keys[STRESS_KEYS][16];
};

struct stress_thread {
    struct stress *st;
    unsigned seed;
    long bad; /* corrupt or mismatched objects seen; checked after join */
    long hits;
};

/* Every object for key i has body bytes (char)('A' + i % 26) and a variant
 * number in the first byte, so a hit can be verified completely. */
static int stress_valid(const struct stress *st, int k, const struct cache_object *o)
{
    if (o->key_len != strlen(st->keys[k]) || memcmp(o->key, st->keys[k], o->key_len) != 0)
        return 0;
    if (o->body_len < 2 || o->body[0] < '0' || o->body[0] >= '0' + STRESS_VARIANTS) return 0;
    for (size_t i = 1; i < o->body_len; i++)
        if (o->body[i] != (char)('A' + k % 26)) return 0;
    return 1;
}

static void *stress_main(void *arg)
{
    struct stress_thread *t = arg;
    struct stress *st = t->st;
    uint64_t r = t->seed;
    for (int i = 0; i < STRESS_OPS; i++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        int k = (int)(r % STRESS_KEYS);
        int op = (int)((r >> 20) % 100);
        int64_t now = T0 + i / 10; /* time advances, so short TTLs expire mid-run */
        const char *key = st->keys[k];
        if (op < 55) {
            struct cache_object *o = store_l1_get(st->store, key, strlen(key), now);
            if (o != NULL) {
                t->hits++;
                if (!stress_valid(st, k, o) || cache_object_expires_at_ms(o) <= now) t->bad++;
                cache_object_unref(o);
            }
        } else if (op < 90) {
            int v = (int)((r >> 40) % STRESS_VARIANTS);
            int rc = store_l1_put(st->store, st->objs[k][v], now);
            if (rc != 0 && rc != -E2BIG) t->bad++;
        } else if (op < 99) {
            store_l1_delete(st->store, key, strlen(key));
        } else {
            char prefix[8];
            snprintf(prefix, sizeof prefix, "s%d", k % 10);
            store_l1_delete_prefix(st->store, prefix, strlen(prefix));
        }
    }
    return NULL;
}

TEST(threaded_stress_keeps_stats_consistent)
{
    static struct stress st;
    memset(&st, 0, sizeof st);
    CHECK_EQ_INT(store_l1_create(48 * 1024, 8, &st.store), 0);
    if (st.store == NULL) return;
    for (int k = 0; k < STRESS_KEYS; k++) {
        snprintf(st.keys[k], sizeof st.keys[k], "s%d", k);
        for (int v = 0; v < STRESS_VARIANTS; v++) {
            size_t len = 16 + (size_t)((k * 37 + v * 101) % 700);
            char *body = malloc(len);
            memset(body, 'A' + k % 26, len);
            body[0] = (char)('0' + v);
            /* A third of the objects live 2 s (expiring during the run), the
             * rest an hour. */
            struct cache_meta m = {.stored_at_ms = T0,
                                   .ttl_ms = (k + v) % 3 == 0 ? 2000 : 3600000};
            st.objs[k][v] =
                cache_object_build(st.keys[k], strlen(st.keys[k]), 200, NULL, 0, body, len, &m);
            free(body);
            CHECK(st.objs[k][v] != NULL);
            if (st.objs[k][v] == NULL) return;
        }
    }

    pthread_t th[STRESS_THREADS];
    struct stress_thread ts[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) {
        ts[i] = (struct stress_thread){.st = &st, .seed = 0x12345u * (unsigned)(i + 1)};
        CHECK_EQ_INT(pthread_create(&th[i], NULL, stress_main, &ts[i]), 0);
    }
    long hits = 0;
    for (int i = 0; i < STRESS_THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ_INT(ts[i].bad, 0);
        hits += ts[i].hits;
    }
    CHECK(hits > 0);

    struct store_l1_stats before = stats(st.store);
    CHECK(before.bytes <= 48 * 1024);
    CHECK(before.evictions > 0);
    CHECK(before.expired > 0);

    /* Count what is really there, at a time when the short-lived objects are all
     * useless (counting drops them); the stats must agree with the count. */
    const int64_t later = T0 + 60000;
    const size_t ov = overhead();
    uint64_t present = 0, bytes = 0;
    for (int k = 0; k < STRESS_KEYS; k++) {
        struct cache_object *o = store_l1_get(st.store, st.keys[k], strlen(st.keys[k]), later);
        if (o == NULL) continue;
        present++;
        bytes += o->charge + ov;
        CHECK(stress_valid(&st, k, o));
        cache_object_unref(o);
    }
    struct store_l1_stats after = stats(st.store);
    CHECK_EQ_INT(after.entries, present);
    CHECK_EQ_INT(after.bytes, bytes);
    CHECK(present > 0);
    CHECK_EQ_INT(store_l1_delete_prefix(st.store, "", 0), present);
    after = stats(st.store);
    CHECK_EQ_INT(after.entries, 0);
    CHECK_EQ_INT(after.bytes, 0);
    store_l1_destroy(st.store);

    /* The store released every reference it took. */
    for (int k = 0; k < STRESS_KEYS; k++)
        for (int v = 0; v < STRESS_VARIANTS; v++) {
            CHECK_EQ_INT(atomic_load(&st.objs[k][v]->refs), 1);
            cache_object_unref(st.objs[k][v]);
        }
}

int main(void)
{
    RUN(overhead_is_counted);
    RUN(lru_evicts_least_recently_used);
    RUN(lru_promotion_is_approximate_near_the_head);
    RUN(byte_bound_holds);
    RUN(object_filling_a_shard_exactly_fits);
    RUN(shard_count_rounds_up_to_power_of_two);
    RUN(ttl_with_injected_time);
    RUN(expired_tail_entries_dropped_on_put);
    RUN(replace_semantics);
    RUN(delete_prefix_and_clear);
    RUN(references_survive_removal);
    RUN(disabled_store);
    RUN(threaded_stress_keeps_stats_consistent);
    return TEST_SUMMARY();
}
