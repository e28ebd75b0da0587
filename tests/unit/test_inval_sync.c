/* Tests for inval_sync's records sync against a real redis-server (a private
 * one on a free port, in a temporary directory): the Redis tier is offered
 * (cache_tiers_l2_available) only once the instance knows the invalidation
 * records already in Redis, so its first fill carries a generation the other
 * instances accept; and a fill those records void is never written to Redis
 * (docs/design.md, "Invalidation protocol").  Issue 10: an instance used
 * Redis as soon as it connected, stamped its first fills with generation 0,
 * and every synced instance refused them. */
#include <netinet/in.h>
#include <sys/socket.h>

#include "cache_object.h"
#include "cache_tiers.h"
#include "config.h"
#include "gateway.h"
#include "inval_index.h"
#include "inval_sync.h"
#include "store_l1.h"
#include "store_redis.h"
#include "test_redis_helpers.h"

static char tmp_dir[] = "/tmp/cachegw-test-inval-sync-XXXXXX";

static int free_tcp_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* redis-cli -p port ARGS... (the test's own view of the server). */
static bool cli(int port, const char *args)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "redis-cli -h 127.0.0.1 -p %d %s >/dev/null 2>&1", port, args);
    return system(cmd) == 0;
}

static bool cli_exists(int port, const char *key)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "redis-cli -h 127.0.0.1 -p %d EXISTS '%s' 2>/dev/null | grep -qx 1",
             port, key);
    return system(cmd) == 0;
}

/* A gateway with only what the Redis tier needs: loop, pool, store, records,
 * memory tier. */
struct gw_env {
    struct env e;
    struct config cfg;
    struct gateway gw;
};

static bool gw_open(struct gw_env *g, int port)
{
    memset(g, 0, sizeof *g);
    env_loop(&g->e);
    char url[64], err[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    CHECK_EQ_INT(redis_url_parse(url, &g->e.url, err, sizeof err), 0);
    struct redis_pool_options o = {.url = &g->e.url,
                                   .pool_size = 2,
                                   .connect_timeout_ms = 1000,
                                   .op_timeout_ms = 1000,
                                   .retries = 1,
                                   .health_interval_s = 1,
                                   .reconnect_min_ms = 50,
                                   .reconnect_max_ms = 300};
    if (redis_pool_create(g->e.loop, &o, &g->e.pool, err, sizeof err) != 0) return false;
    g->cfg.redis_prefix = (char *)"cachegw:";
    g->cfg.redis_timeout_ms = 1000;
    g->cfg.redis_connect_timeout_ms = 1000;
    g->cfg.max_value_bytes = 1 << 20;
    g->gw.cfg = &g->cfg;
    g->gw.loop = g->e.loop;
    g->gw.redis = g->e.pool;
    CHECK_EQ_INT(store_l1_create(1 << 20, 4, &g->gw.l1), 0);
    CHECK_EQ_INT(inval_index_create(&g->gw.inval), 0);
    CHECK_EQ_INT(store_redis_create(g->e.pool, g->e.loop, "cachegw:", 1 << 20, &g->gw.l2), 0);
    /* As main.c: the tiers start before the pool does. */
    CHECK_EQ_INT(cache_tiers_start(&g->gw), 0);
    run_on_loop(g->e.loop, pool_start_task, g->e.pool);
    return true;
}

static void gw_close(struct gw_env *g)
{
    run_on_loop(g->e.loop, pool_stop_task, g->e.pool);
    io_loop_stop(g->e.loop);
    cache_tiers_stop(&g->gw);
    store_redis_destroy(g->gw.l2);
    redis_pool_destroy(g->e.pool);
    store_l1_destroy(g->gw.l1);
    inval_index_destroy(g->gw.inval);
    io_loop_destroy(g->e.loop);
    redis_url_free(&g->e.url);
}

static struct cache_object *user_obj(const char *key, uint64_t gen)
{
    struct http_header h[1] = {{"content-type", "application/json"}};
    struct cache_meta m = {.stored_at_ms = clock_wall_ms(), .ttl_ms = 60000, .gen = gen};
    return cache_object_build(key, strlen(key), 200, h, 1, "{}", 2, &m);
}

TEST(redis_tier_waits_for_the_records)
{
    int port = free_tcp_port();
    struct server srv = {0};
    CHECK(server_start(&srv, port));
    /* What another instance's purge of "users:" left in Redis. */
    uint64_t seq = inval_index_seq_base();
    char args[300];
    snprintf(args, sizeof args, "HSET 'cachegw:{inv}:seq' epoch e1 seq %llu",
             (unsigned long long)seq + 1);
    CHECK(cli(port, args));
    snprintf(args, sizeof args, "HSET 'cachegw:{inv}:p' users: %llu", (unsigned long long)seq);
    CHECK(cli(port, args));
    snprintf(args, sizeof args, "HSET 'cachegw:{inv}:t' user-8 %llu", (unsigned long long)seq + 1);
    CHECK(cli(port, args));

    struct gw_env g;
    CHECK(gw_open(&g, port));
    /* The moment the tier is offered, the records are known: a fill starting
     * now carries a generation at least theirs.  (Before: offered as soon as
     * the pool connected, generation 0, and the records up to 200 ms later.) */
    int64_t t0 = now_us();
    bool offered = false;
    uint64_t gen_then = 0;
    while (now_us() - t0 < 5000000) {
        if (cache_tiers_l2_available(&g.gw)) {
            gen_then = cache_tiers_generation(&g.gw);
            offered = true;
            break;
        }
        usleep(200);
    }
    CHECK(offered);
    CHECK(gen_then >= seq + 1);
    fprintf(stderr,
            "  tier offered %.1f ms after start, generation then %llu (records up to %llu)\n",
            (now_us() - t0) / 1000.0, (unsigned long long)gen_then, (unsigned long long)seq + 1);
    struct cache_object *old = user_obj("users:5", seq - 1);
    struct cache_object *cur = user_obj("users:6", gen_then);
    CHECK(!inval_index_valid(g.gw.inval, old)); /* the prefix record is applied */
    CHECK(inval_index_valid(g.gw.inval, cur));

    /* A fill the records void is not written to Redis (every instance would
     * refuse it, and it would replace a good entry); a current one is. */
    cache_tiers_l2_put(&g.gw, old);
    cache_tiers_l2_put(&g.gw, cur);
    bool written = false;
    for (int i = 0; i < 100 && !written; i++) {
        written = cli_exists(port, "cachegw:c:users:6");
        if (!written) sleep_ms(20);
    }
    CHECK(written);
    CHECK(!cli_exists(port, "cachegw:c:users:5")); /* sent before users:6: never */
    cache_object_unref(old);
    cache_object_unref(cur);
    gw_close(&g);
    server_kill(&srv);
}

static bool tier_offered(void *arg)
{
    return cache_tiers_l2_available(arg);
}

struct gen_at_least {
    struct gateway *gw;
    uint64_t seq;
};

static bool gen_reached(void *arg)
{
    struct gen_at_least *w = arg;
    return cache_tiers_l2_available(w->gw) && cache_tiers_generation(w->gw) >= w->seq;
}

TEST(a_resubscription_syncs_the_records_again)
{
    int port = free_tcp_port();
    struct server srv = {0};
    CHECK(server_start(&srv, port));
    struct gw_env g;
    CHECK(gw_open(&g, port));
    CHECK(wait_until(tier_offered, &g.gw, 5000) >= 0);
    /* A record made while this instance is not subscribed (so no message
     * reaches it): the subscriber connection is killed, the record written at
     * once.  The re-subscription's sync reads it, and the tier is offered. */
    uint64_t seq = inval_index_seq_base() + 1000;
    char args[300];
    snprintf(args, sizeof args, "HSET 'cachegw:{inv}:p' posts: %llu", (unsigned long long)seq);
    CHECK(cli(port, "CLIENT KILL TYPE pubsub"));
    CHECK(cli(port, args));
    struct gen_at_least w = {&g.gw, seq};
    int ms = wait_until(gen_reached, &w, 5000);
    CHECK(ms >= 0);
    fprintf(stderr, "  the record made during the gap known %d ms later\n", ms);
    gw_close(&g);
    server_kill(&srv);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (mkdtemp(tmp_dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    setenv("REDIS_TEST_DIR", tmp_dir, 1); /* server_start's data directories */
    RUN(redis_tier_waits_for_the_records);
    RUN(a_resubscription_syncs_the_records_again);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return TEST_SUMMARY();
}
