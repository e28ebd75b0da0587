/* test_redis_cluster.c - the cluster router behind redis_pool (issue 10)
 * against the fixture's plain 3-master cluster (tests/redis_cluster.cmake,
 * 127.0.0.1, REDIS_CLUSTER_PORT_BASE + 1..6): multi-key commands over several slots split and
 * answered in the caller's order, SCAN over every master with all-digit
 * cursors, a script over several slots refused at once, the topology seen. */
#include "redis_slot.h"
#include "test_redis_helpers.h"

/* The seeds: the fixture's first two plain nodes. */
static void seeds(char *buf, size_t len)
{
    const char *b = getenv("REDIS_CLUSTER_PORT_BASE");
    int base = b && *b ? atoi(b) : 17100;
    snprintf(buf, len, "redis://127.0.0.1:%d,127.0.0.1:%d", base + 1, base + 2);
}

/* A reply kept whole enough for these tests: an array of up to 64 strings. */
struct areply {
    struct redis_pool *pool;
    int argc;
    const char **argv;
    size_t *lens;
    int rc;
    int type;
    long long integer;
    char str[128];
    size_t elements;
    int el_type[64];
    char el[64][64];
    char err[128];
    sem_t done;
};

static void areply_cb(void *arg, const redisReply *r, const char *err)
{
    struct areply *a = arg;
    if (err) {
        snprintf(a->err, sizeof a->err, "%s", err);
    } else {
        a->type = r->type;
        a->integer = r->integer;
        if (r->str) snprintf(a->str, sizeof a->str, "%.*s", (int)r->len, r->str);
        a->elements = r->elements;
        for (size_t i = 0; i < r->elements && i < 64; i++) {
            const redisReply *e = r->element[i];
            a->el_type[i] = e->type;
            if (e->type == REDIS_REPLY_STRING)
                snprintf(a->el[i], sizeof a->el[i], "%.*s", (int)e->len, e->str);
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
            r->element[1]->type == REDIS_REPLY_ARRAY) {
            /* SCAN: the keys go to el[1..] after the cursor in el[0]. */
            const redisReply *k = r->element[1];
            a->elements = 1 + k->elements;
            for (size_t i = 0; i < k->elements && i + 1 < 64; i++)
                snprintf(a->el[i + 1], sizeof a->el[0], "%.*s", (int)k->element[i]->len,
                         k->element[i]->str);
        }
    }
    sem_post(&a->done);
}

static void areply_task(void *arg)
{
    struct areply *a = arg;
    a->rc = redis_pool_command(a->pool, a->argc, a->argv, a->lens, areply_cb, a);
    if (a->rc < 0) sem_post(&a->done);
}

/* Runs argv (C strings, NULL-terminated) and waits for its answer. */
static void run(struct env *e, struct areply *a, const char *const *argv)
{
    static size_t lens[64];
    static const char *av[64];
    memset(a, 0, sizeof *a);
    int n = 0;
    while (argv[n] && n < 64) {
        av[n] = argv[n];
        lens[n] = strlen(argv[n]);
        n++;
    }
    a->pool = e->pool;
    a->argc = n;
    a->argv = av;
    a->lens = lens;
    sem_init(&a->done, 0, 0);
    io_loop_post(e->loop, areply_task, a);
    if (!sem_wait_ms(&a->done, 5000)) {
        fprintf(stderr, "%s: no answer\n", argv[0]);
        exit(1);
    }
}
#define RUN_CMD(e, a, ...) run((e), (a), (const char *const[]){__VA_ARGS__, NULL})

static bool topology_ready(void *arg)
{
    struct redis_topology t;
    redis_pool_get_topology(arg, &t);
    /* Every master's pool up too: the map can be loaded before the pools of the
     * nodes it names have connected (the topology test failed on that race). */
    return t.masters == 3 && t.nodes_up >= 3 && redis_pool_available(arg);
}

static struct env e;

static void start(void)
{
    env_loop(&e);
    struct redis_pool_options o = {.mode = REDIS_POOL_CLUSTER, .pool_size = 2};
    char err[256], url[80];
    seeds(url, sizeof url);
    CHECK_EQ_INT(env_pool(&e, url, o, err, sizeof err), 0);
    if (wait_until(topology_ready, e.pool, 10000) < 0) {
        fprintf(stderr, "the cluster fixture does not answer at %s\n", url);
        exit(1);
    }
}

TEST(topology)
{
    struct redis_topology t;
    redis_pool_get_topology(e.pool, &t);
    CHECK_EQ_STR(t.mode, "cluster");
    CHECK_EQ_INT(t.masters, 3);
    CHECK(t.nodes_known >= 3);
    CHECK(t.nodes_up >= 3);
    CHECK(t.map_age_ms >= 0);
    CHECK(t.refreshes >= 1);
}

TEST(mset_mget_del_over_several_slots)
{
    /* Six keys, six slots (checked), spread over the masters. */
    static const char *const K[] = {"ut:k1", "ut:k2", "ut:k3", "ut:k4", "ut:k5", "ut:k6"};
    for (int i = 1; i < 6; i++) CHECK(redis_slot(K[i], 5) != redis_slot(K[0], 5));
    struct areply a;
    RUN_CMD(&e, &a, "MSET", K[0], "v1", K[1], "v2", K[2], "v3", K[3], "v4", K[4], "v5", K[5],
            "v6");
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_INT(a.type, REDIS_REPLY_STATUS);
    CHECK_EQ_STR(a.str, "OK");
    /* In the caller's order, whatever the node of each. */
    RUN_CMD(&e, &a, "MGET", K[5], K[0], "ut:missing", K[2], K[4], K[1]);
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_INT(a.type, REDIS_REPLY_ARRAY);
    CHECK_EQ_INT(a.elements, 6);
    CHECK_EQ_STR(a.el[0], "v6");
    CHECK_EQ_STR(a.el[1], "v1");
    CHECK_EQ_INT(a.el_type[2], REDIS_REPLY_NIL);
    CHECK_EQ_STR(a.el[3], "v3");
    CHECK_EQ_STR(a.el[4], "v5");
    CHECK_EQ_STR(a.el[5], "v2");
    RUN_CMD(&e, &a, "EXISTS", K[0], K[1], K[2], K[3], K[4], K[5], "ut:missing");
    CHECK_EQ_INT(a.type, REDIS_REPLY_INTEGER);
    CHECK_EQ_INT(a.integer, 6);
    RUN_CMD(&e, &a, "UNLINK", K[0], K[1], K[2], "ut:missing");
    CHECK_EQ_INT(a.integer, 3);
    RUN_CMD(&e, &a, "DEL", K[3], K[4], K[5]);
    CHECK_EQ_INT(a.integer, 3);
    RUN_CMD(&e, &a, "EXISTS", K[0], K[5]);
    CHECK_EQ_INT(a.integer, 0);
    /* Keys sharing a hash tag go as one command. */
    RUN_CMD(&e, &a, "MSET", "{ut}a", "1", "{ut}b", "2");
    CHECK_EQ_STR(a.str, "OK");
    RUN_CMD(&e, &a, "MGET", "{ut}b", "{ut}a");
    CHECK_EQ_STR(a.el[0], "2");
    CHECK_EQ_STR(a.el[1], "1");
    RUN_CMD(&e, &a, "DEL", "{ut}a", "{ut}b");
    CHECK_EQ_INT(a.integer, 2);
}

TEST(scan_walks_every_master)
{
    struct areply a;
    char key[32];
    bool seen[40] = {0};
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "utscan:%d", i);
        RUN_CMD(&e, &a, "SET", key, "x");
        CHECK_EQ_STR(a.str, "OK");
    }
    char cursor[64] = "0";
    int pages = 0, found = 0;
    do {
        RUN_CMD(&e, &a, "SCAN", cursor, "MATCH", "utscan:*", "COUNT", "1000");
        CHECK_EQ_INT(a.rc, 0);
        CHECK_EQ_INT(a.type, REDIS_REPLY_ARRAY);
        if (a.type != REDIS_REPLY_ARRAY) break;
        snprintf(cursor, sizeof cursor, "%s", a.el[0]);
        CHECK(strspn(cursor, "0123456789") == strlen(cursor));
        for (size_t i = 1; i < a.elements; i++) {
            int n = atoi(a.el[i] + 7);
            if (n >= 0 && n < 40 && !seen[n]) {
                seen[n] = true;
                found++;
            }
        }
    } while (strcmp(cursor, "0") != 0 && ++pages < 100);
    CHECK_EQ_INT(found, 40);
    CHECK(pages >= 2); /* one walk per master at least */
    /* A cursor that is not ours is refused at once. */
    RUN_CMD(&e, &a, "SCAN", "12345", "MATCH", "utscan:*");
    CHECK_EQ_INT(a.rc, -EINVAL);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "utscan:%d", i);
        RUN_CMD(&e, &a, "DEL", key);
    }
}

TEST(script_over_several_slots_is_refused_at_once)
{
    struct areply a;
    RUN_CMD(&e, &a, "EVAL", "return 1", "2", "ut:k1", "ut:k2");
    CHECK_EQ_INT(a.rc, -EINVAL);
    RUN_CMD(&e, &a, "EVAL", "return #KEYS", "2", "x{ut}1", "y{ut}2");
    CHECK_EQ_INT(a.rc, 0);
    CHECK_EQ_INT(a.integer, 2);
}

int main(void)
{
    start();
    RUN(topology);
    RUN(mset_mget_del_over_several_slots);
    RUN(scan_walks_every_master);
    RUN(script_over_several_slots_is_refused_at_once);
    env_free(&e);
    return TEST_SUMMARY();
}
