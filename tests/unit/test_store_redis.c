/* Tests for store_redis against real redis-server processes: object round
 * trips on every kind of server (plain, TLS, password, ACL user), TTL, refusal
 * of oversized values, corrupt values (miss + deleted), prefix deletion, and
 * invalidation pub/sub between two instances (delivery to the other one only,
 * latency, the '*' after a re-subscription).  Private servers: 16395-16397. */
#include "cache_object.h"
#include "store_redis.h"
#include "test_redis_helpers.h"

#define PORT_SUB_RESTART 16395

static struct cache_object *make_obj(const char *key, int64_t ttl_ms, size_t body_len)
{
    struct http_header h[2] = {{"content-type", "application/json"}, {"etag", "\"v1\""}};
    char *body = malloc(body_len + 1);
    for (size_t i = 0; i < body_len; i++) body[i] = (char)('a' + i % 26);
    struct cache_meta m = {
        .stored_at_ms = clock_wall_ms(), .ttl_ms = ttl_ms, .swr_ms = 0, .sie_ms = 0};
    struct cache_object *o = cache_object_build(key, strlen(key), 200, h, 2, body, body_len, &m);
    free(body);
    return o;
}

/* ---- synchronous wrappers over the loop ---- */

struct store_env {
    struct env e;
    struct store_redis *s;
};

struct op {
    struct store_redis *s;
    struct cache_object *obj; /* put: borrowed; get: the result */
    const char *key;
    int rc, err;
    bool answered;
    sem_t done;
};

static void get_cb(void *arg, struct cache_object *obj, int err)
{
    struct op *o = arg;
    o->obj = obj;
    o->err = err;
    o->answered = true;
    sem_post(&o->done);
}

static void get_task(void *arg)
{
    struct op *o = arg;
    o->rc = store_redis_get(o->s, o->key, strlen(o->key), get_cb, o);
    if (o->rc < 0) sem_post(&o->done);
}

static void put_task(void *arg)
{
    struct op *o = arg;
    o->rc = store_redis_put(o->s, o->obj);
}

static void del_task(void *arg)
{
    struct op *o = arg;
    o->rc = store_redis_delete(o->s, o->key, strlen(o->key));
}

static void del_prefix_task(void *arg)
{
    struct op *o = arg;
    o->rc = store_redis_delete_prefix(o->s, o->key, strlen(o->key));
}

static struct op *store_get(struct op *o, struct store_env *se, const char *key)
{
    memset(o, 0, sizeof *o);
    o->s = se->s;
    o->key = key;
    sem_init(&o->done, 0, 0);
    io_loop_post(se->e.loop, get_task, o);
    if (!sem_wait_ms(&o->done, 3000)) {
        fprintf(stderr, "store_redis_get: no answer\n");
        exit(1);
    }
    return o;
}

static int store_put(struct store_env *se, struct cache_object *obj)
{
    struct op o = {.s = se->s, .obj = obj};
    run_on_loop(se->e.loop, put_task, &o);
    return o.rc;
}

static int store_do(struct store_env *se, void (*task)(void *), const char *key)
{
    struct op o = {.s = se->s, .key = key};
    run_on_loop(se->e.loop, task, &o);
    return o.rc;
}

static void store_create_task(void *arg)
{
    struct store_env *se = arg;
    CHECK_EQ_INT(store_redis_create(se->e.pool, se->e.loop, "cgwtest:", 64 * 1024, &se->s), 0);
}

static bool store_env_open(struct store_env *se, const char *url, struct redis_pool_options o)
{
    char err[256] = "";
    memset(se, 0, sizeof *se);
    env_loop(&se->e);
    CHECK_EQ_INT(env_pool(&se->e, url, o, err, sizeof err), 0);
    run_on_loop(se->e.loop, store_create_task, se);
    return wait_until(pred_available, se->e.pool, 3000) >= 0;
}

static void store_env_close(struct store_env *se)
{
    run_on_loop(se->e.loop, pool_stop_task, se->e.pool);
    io_loop_stop(se->e.loop);
    store_redis_destroy(se->s);
    redis_pool_destroy(se->e.pool);
    io_loop_destroy(se->e.loop);
    redis_url_free(&se->e.url);
}

/* Waits until the fire-and-forget writes queued so far are acknowledged: a
 * PING behind them on the same connection.  Pools have 2 connections, so a
 * PING on each. */
static void settle(struct store_env *se)
{
    struct cmd c;
    for (int i = 0; i < 2; i++)
        cmd_run_v(&c, se->e.loop, se->e.pool, 2000, (const char *const[]){"PING", NULL});
}

/* ---- round trips ---- */

static void round_trip(const char *url, struct redis_pool_options o)
{
    struct store_env se;
    CHECK(store_env_open(&se, url, o));
    struct cache_object *obj = make_obj("users:42", 60000, 1000);
    CHECK(obj != NULL);
    CHECK_EQ_INT(store_put(&se, obj), 0);
    settle(&se);
    struct op g;
    store_get(&g, &se, "users:42");
    CHECK_EQ_INT(g.rc, 0);
    CHECK_EQ_INT(g.err, 0);
    CHECK(g.obj != NULL);
    if (g.obj) {
        CHECK_EQ_INT(g.obj->status, 200);
        CHECK_EQ_INT(g.obj->body_len, 1000);
        CHECK(memcmp(g.obj->body, obj->body, 1000) == 0);
        CHECK_EQ_STR(cache_object_header(g.obj, "etag"), "\"v1\"");
        CHECK_EQ_INT(g.obj->meta.ttl_ms, 60000);
        cache_object_unref(g.obj);
    }
    /* A miss. */
    store_get(&g, &se, "users:none");
    CHECK_EQ_INT(g.rc, 0);
    CHECK_EQ_INT(g.err, 0);
    CHECK(g.obj == NULL);
    /* Delete. */
    CHECK_EQ_INT(store_do(&se, del_task, "users:42"), 0);
    settle(&se);
    store_get(&g, &se, "users:42");
    CHECK(g.obj == NULL);
    struct store_redis_stats st;
    store_redis_get_stats(se.s, &st);
    CHECK_EQ_INT(st.hits, 1);
    CHECK_EQ_INT(st.misses, 2);
    CHECK_EQ_INT(st.stores, 1);
    CHECK_EQ_INT(st.errors, 0);
    cache_object_unref(obj);
    store_env_close(&se);
}

TEST(round_trip_on_every_kind_of_server)
{
    round_trip("redis://127.0.0.1:16379", test_pool_options());
    round_trip("redis://:" TEST_PASSWORD "@127.0.0.1:16381/2", test_pool_options());
    round_trip("redis://app:app-pass@127.0.0.1:16381", test_pool_options());
    struct redis_pool_options o = test_pool_options();
    o.tls_ca_file = cert_path("ca.crt");
    round_trip("rediss://:" TEST_PASSWORD "@localhost:16380", o);
}

TEST(ttl_is_the_objects_remaining_life)
{
    struct store_env se;
    CHECK(store_env_open(&se, "redis://127.0.0.1:16379", test_pool_options()));
    /* ttl 5 s plus stale windows: useful for ttl + max(swr, sie). */
    struct http_header h[1] = {{"content-type", "text/plain"}};
    struct cache_meta m = {
        .stored_at_ms = clock_wall_ms() - 1000, .ttl_ms = 5000, .swr_ms = 2000, .sie_ms = 3000};
    struct cache_object *obj = cache_object_build("ttl:1", 5, 200, h, 1, "x", 1, &m);
    int64_t expect = cache_object_expires_at_ms(obj) - clock_wall_ms();
    CHECK_EQ_INT(store_put(&se, obj), 0);
    settle(&se);
    struct cmd c;
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000, (const char *const[]){"PTTL", "cgwtest:c:ttl:1", NULL});
    fprintf(stderr, "  PTTL %lld ms, expected about %lld ms\n", c.integer, (long long)expect);
    CHECK_EQ_INT(c.type, REDIS_REPLY_INTEGER);
    CHECK(c.integer > expect - 200 && c.integer <= expect);
    cache_object_unref(obj);

    /* An object past all its windows is not stored. */
    m.stored_at_ms = clock_wall_ms() - 20000;
    obj = cache_object_build("ttl:2", 5, 200, h, 1, "x", 1, &m);
    CHECK_EQ_INT(store_put(&se, obj), -ESTALE);
    cache_object_unref(obj);

    /* Expiry is honoured by Redis. */
    m = (struct cache_meta){.stored_at_ms = clock_wall_ms(), .ttl_ms = 150};
    obj = cache_object_build("ttl:3", 5, 200, h, 1, "x", 1, &m);
    CHECK_EQ_INT(store_put(&se, obj), 0);
    settle(&se);
    struct op g;
    store_get(&g, &se, "ttl:3");
    CHECK(g.obj != NULL);
    if (g.obj) cache_object_unref(g.obj);
    sleep_ms(250);
    store_get(&g, &se, "ttl:3");
    CHECK(g.obj == NULL);
    cache_object_unref(obj);
    store_env_close(&se);
}

TEST(oversized_values_are_refused)
{
    struct store_env se;
    CHECK(store_env_open(&se, "redis://127.0.0.1:16379", test_pool_options()));
    struct cache_object *obj = make_obj("big:1", 60000, 70 * 1024); /* bound: 64 KiB */
    CHECK_EQ_INT(store_put(&se, obj), -E2BIG);
    struct store_redis_stats st;
    store_redis_get_stats(se.s, &st);
    CHECK_EQ_INT(st.too_big, 1);
    struct cmd c;
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"EXISTS", "cgwtest:c:big:1", NULL});
    CHECK_EQ_INT(c.integer, 0);
    cache_object_unref(obj);
    store_env_close(&se);
}

TEST(corrupt_value_is_a_miss_and_is_deleted)
{
    struct store_env se;
    CHECK(store_env_open(&se, "redis://127.0.0.1:16379", test_pool_options()));
    struct cmd c;
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"SET", "cgwtest:c:corrupt:1", "garbage, not CGWO", NULL});
    CHECK_EQ_STR(c.str, "OK");
    /* A valid encoding of another key stored under this one: not served either. */
    struct cache_object *other = make_obj("corrupt:other", 60000, 10);
    char *val;
    size_t len;
    CHECK_EQ_INT(cache_object_encode(other, &val, &len), 0);
    memset(&c, 0, sizeof c);
    c.pool = se.e.pool;
    c.argc = 3;
    c.argv[0] = "SET";
    c.lens[0] = 3;
    c.argv[1] = "cgwtest:c:corrupt:2";
    c.lens[1] = strlen(c.argv[1]);
    c.argv[2] = val;
    c.lens[2] = len;
    sem_init(&c.done, 0, 0);
    io_loop_post(se.e.loop, cmd_task, &c);
    CHECK(sem_wait_ms(&c.done, 2000));
    free(val);
    cache_object_unref(other);

    struct op g;
    store_get(&g, &se, "corrupt:1");
    CHECK_EQ_INT(g.rc, 0);
    CHECK_EQ_INT(g.err, 0);
    CHECK(g.obj == NULL);
    store_get(&g, &se, "corrupt:2");
    CHECK(g.obj == NULL);
    settle(&se);
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"EXISTS", "cgwtest:c:corrupt:1", "cgwtest:c:corrupt:2", NULL});
    CHECK_EQ_INT(c.type, REDIS_REPLY_INTEGER);
    CHECK_EQ_INT(c.integer, 0);
    struct store_redis_stats st;
    store_redis_get_stats(se.s, &st);
    CHECK_EQ_INT(st.decode_failures, 2);
    CHECK_EQ_INT(st.misses, 2);
    CHECK_EQ_INT(st.hits, 0);

    /* A value of the wrong type is an error, not a miss or a crash. */
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"RPUSH", "cgwtest:c:corrupt:list", "x", NULL});
    store_get(&g, &se, "corrupt:list");
    CHECK_EQ_INT(g.err, -EIO);
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"DEL", "cgwtest:c:corrupt:list", NULL});
    store_env_close(&se);
}

TEST(delete_prefix_removes_only_the_prefix)
{
    struct store_env se;
    CHECK(store_env_open(&se, "redis://127.0.0.1:16379", test_pool_options()));
    const char *keys[] = {"posts:1", "posts:2", "posts:*x", "posts[a]", "postsX", "feed:1"};
    for (size_t i = 0; i < 6; i++) {
        struct cache_object *o = make_obj(keys[i], 60000, 10);
        CHECK_EQ_INT(store_put(&se, o), 0);
        cache_object_unref(o);
    }
    /* Enough keys to need several SCAN batches. */
    for (int i = 0; i < 2500; i++) {
        char k[32];
        snprintf(k, sizeof k, "posts:many:%d", i);
        struct cache_object *o = make_obj(k, 60000, 1);
        CHECK_EQ_INT(store_put(&se, o), 0);
        cache_object_unref(o);
        if (i % 500 == 0) settle(&se);
    }
    settle(&se);
    CHECK_EQ_INT(store_do(&se, del_prefix_task, "posts:"), 0);
    /* A glob character in the prefix is literal. */
    CHECK_EQ_INT(store_do(&se, del_prefix_task, "posts["), 0);
    struct cmd c;
    for (int i = 0; i < 100; i++) {
        cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
                  (const char *const[]){"EXISTS", "cgwtest:c:posts:many:2499", "cgwtest:c:posts:1",
                                        "cgwtest:c:posts[a]", NULL});
        if (c.integer == 0) break;
        sleep_ms(20);
    }
    CHECK_EQ_INT(c.integer, 0);
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"EXISTS", "cgwtest:c:postsX", "cgwtest:c:feed:1", NULL});
    CHECK_EQ_INT(c.integer, 2);
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"DEL", "cgwtest:c:postsX", "cgwtest:c:feed:1", NULL});
    store_env_close(&se);
}

TEST(no_key_or_purge_prefix_reaches_the_bookkeeping)
{
    /* Issue 8 item 12: entries live under <prefix>c:, bookkeeping under
     * <prefix>{inv}:, so deleting the keys or prefixes that once named it
     * ("i", "in", "inv", "inv:seq", even "") leaves it alone. */
    struct store_env se;
    CHECK(store_env_open(&se, "redis://127.0.0.1:16379", test_pool_options()));
    struct cmd c;
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"HSET", "cgwtest:{inv}:seq", "seq", "7", NULL});
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"SET", "cgwtest:inv:seq", "7", NULL}); /* the old layout */
    struct cache_object *o = make_obj("inv:seq", 60000, 10);
    CHECK_EQ_INT(store_put(&se, o), 0);
    cache_object_unref(o);
    settle(&se);
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"EXISTS", "cgwtest:c:inv:seq", NULL});
    CHECK_EQ_INT(c.integer, 1);
    CHECK_EQ_INT(store_do(&se, del_task, "inv:seq"), 0);
    const char *prefixes[] = {"i", "in", "inv", "inv:", "{", "{inv}", ""};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        CHECK_EQ_INT(store_do(&se, del_prefix_task, prefixes[i]), 0);
    for (int i = 0; i < 100; i++) {
        cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
                  (const char *const[]){"EXISTS", "cgwtest:c:inv:seq", NULL});
        if (c.integer == 0) break;
        sleep_ms(20);
    }
    CHECK_EQ_INT(c.integer, 0); /* the entry named inv:seq is gone */
    sleep_ms(100);
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"EXISTS", "cgwtest:{inv}:seq", "cgwtest:inv:seq", NULL});
    CHECK_EQ_INT(c.integer, 2); /* the bookkeeping (and anything outside c:) is not */
    cmd_run_v(&c, se.e.loop, se.e.pool, 2000,
              (const char *const[]){"DEL", "cgwtest:{inv}:seq", "cgwtest:inv:seq", NULL});
    store_env_close(&se);
}

TEST(operations_fail_at_once_when_redis_is_down)
{
    struct store_env se;
    port_free(16396);
    memset(&se, 0, sizeof se);
    char err[256];
    env_loop(&se.e);
    CHECK_EQ_INT(env_pool(&se.e, "redis://127.0.0.1:16396", test_pool_options(), err, sizeof err), 0);
    run_on_loop(se.e.loop, store_create_task, &se);
    sleep_ms(100);
    struct op g;
    store_get(&g, &se, "users:1");
    CHECK_EQ_INT(g.rc, -ENOTCONN);
    CHECK(!g.answered);
    struct cache_object *obj = make_obj("users:1", 60000, 10);
    CHECK_EQ_INT(store_put(&se, obj), -ENOTCONN);
    cache_object_unref(obj);
    CHECK_EQ_INT(store_do(&se, del_task, "users:1"), -ENOTCONN);
    store_env_close(&se);
}

/* ---- invalidation pub/sub ---- */

#define MAX_EVENTS 256

struct inval_log {
    int n;
    char kinds[MAX_EVENTS];
    char keys[MAX_EVENTS][64];
    int64_t at_us[MAX_EVENTS];
    sem_t got;
};

static void on_inval(void *arg, char kind, const char *key, size_t len)
{
    struct inval_log *l = arg;
    if (l->n < MAX_EVENTS) {
        l->kinds[l->n] = kind;
        snprintf(l->keys[l->n], sizeof l->keys[0], "%.*s", (int)len, key ? key : "");
        l->at_us[l->n] = now_us();
        l->n++;
    }
    sem_post(&l->got);
}

struct sub_setup {
    struct store_redis *s;
    struct inval_log *log;
};

static void subscribe_task(void *arg)
{
    struct sub_setup *ss = arg;
    CHECK_EQ_INT(store_redis_on_invalidation(ss->s, on_inval, ss->log), 0);
}

struct publish {
    struct store_redis *s;
    char kind;
    const char *key;
    int rc;
    int64_t at_us;
};

static void publish_task(void *arg)
{
    struct publish *p = arg;
    p->at_us = now_us();
    p->rc = store_redis_publish_invalidation(p->s, p->kind, p->key, strlen(p->key));
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Waits until a subscription is live: publishes probes from b until a sees one. */
static bool wait_subscribed(struct store_env *from, struct inval_log *to)
{
    for (int i = 0; i < 100; i++) {
        struct publish p = {.s = from->s, .kind = 'k', .key = "probe"};
        run_on_loop(from->e.loop, publish_task, &p);
        if (sem_wait_ms(&to->got, 50)) return true;
    }
    return false;
}

TEST(invalidations_reach_the_other_instance_only)
{
    struct store_env a, b;
    CHECK(store_env_open(&a, "redis://127.0.0.1:16379", test_pool_options()));
    CHECK(store_env_open(&b, "redis://127.0.0.1:16379", test_pool_options()));
    CHECK(strcmp(store_redis_instance_id(a.s), store_redis_instance_id(b.s)) != 0);
    struct inval_log la = {0}, lb = {0};
    sem_init(&la.got, 0, 0);
    sem_init(&lb.got, 0, 0);
    struct sub_setup sa = {a.s, &la}, sb = {b.s, &lb};
    run_on_loop(a.e.loop, subscribe_task, &sa);
    run_on_loop(b.e.loop, subscribe_task, &sb);
    CHECK(wait_subscribed(&a, &lb));
    CHECK(wait_subscribed(&b, &la));
    sleep_ms(100);
    la.n = lb.n = 0;
    while (sem_trywait(&la.got) == 0) {
    }
    while (sem_trywait(&lb.got) == 0) {
    }

    /* 200 invalidations from a; each must reach b, none a. */
    enum { N = 200 };
    int64_t lat[N];
    int got = 0;
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "users:%d", i);
        struct publish p = {.s = a.s, .kind = i % 2 ? 'p' : 'k', .key = key};
        run_on_loop(a.e.loop, publish_task, &p);
        CHECK_EQ_INT(p.rc, 0);
        if (!sem_wait_ms(&lb.got, 1000)) break;
        lat[got] = lb.at_us[lb.n - 1] - p.at_us;
        CHECK_EQ_INT(lb.kinds[lb.n - 1], i % 2 ? 'p' : 'k');
        CHECK_EQ_STR(lb.keys[lb.n - 1], key);
        got++;
    }
    CHECK_EQ_INT(got, N);
    sleep_ms(100);
    CHECK_EQ_INT(la.n, 0); /* a never hears its own messages */
    qsort(lat, (size_t)got, sizeof lat[0], cmp_i64);
    if (got > 0)
        fprintf(stderr,
                "  invalidation latency over %d messages: median %.3f ms, p99 %.3f ms, "
                "max %.3f ms\n",
                got, lat[got / 2] / 1000.0, lat[got * 99 / 100] / 1000.0, lat[got - 1] / 1000.0);
    CHECK(got > 0 && lat[got / 2] < 50000);
    struct store_redis_stats st;
    store_redis_get_stats(b.s, &st);
    CHECK(st.invalidations_received >= N);
    store_env_close(&a);
    store_env_close(&b);
}

TEST(resubscription_after_a_gap_asks_to_drop_the_memory_tier)
{
    struct server srv = {0};
    port_free(PORT_SUB_RESTART);
    CHECK(server_start(&srv, PORT_SUB_RESTART));
    struct store_env a, b;
    CHECK(store_env_open(&a, "redis://127.0.0.1:16395", test_pool_options()));
    CHECK(store_env_open(&b, "redis://127.0.0.1:16395", test_pool_options()));
    struct inval_log lb = {0};
    sem_init(&lb.got, 0, 0);
    struct sub_setup sb = {b.s, &lb};
    run_on_loop(b.e.loop, subscribe_task, &sb);
    CHECK(wait_subscribed(&a, &lb));
    sleep_ms(100);
    for (int i = 0; i < lb.n; i++) CHECK(lb.kinds[i] != '*'); /* first subscription: no gap */
    lb.n = 0;
    while (sem_trywait(&lb.got) == 0) {
    }

    int64_t t_kill = now_us();
    server_kill(&srv);
    sleep_ms(200);
    CHECK(server_start(&srv, PORT_SUB_RESTART));
    CHECK(sem_wait_ms(&lb.got, 3000));
    CHECK(lb.n >= 1);
    CHECK_EQ_INT(lb.kinds[0], '*');
    fprintf(stderr, "  '*' delivered %.0f ms after SIGKILL (server restarted after 200 ms)\n",
            (lb.at_us[0] - t_kill) / 1000.0);
    /* And messages flow again. */
    CHECK(wait_subscribed(&a, &lb));
    store_env_close(&a);
    store_env_close(&b);
    server_kill(&srv);
}

int main(void)
{
    redis_dir();
    RUN(round_trip_on_every_kind_of_server);
    RUN(ttl_is_the_objects_remaining_life);
    RUN(oversized_values_are_refused);
    RUN(corrupt_value_is_a_miss_and_is_deleted);
    RUN(delete_prefix_removes_only_the_prefix);
    RUN(no_key_or_purge_prefix_reaches_the_bookkeeping);
    RUN(operations_fail_at_once_when_redis_is_down);
    RUN(invalidations_reach_the_other_instance_only);
    RUN(resubscription_after_a_gap_asks_to_drop_the_memory_tier);
    return TEST_SUMMARY();
}
