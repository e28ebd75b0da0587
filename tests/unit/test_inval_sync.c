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
#include "test_gateway_env.h"

static char tmp_dir[] = "/tmp/cachegw-test-inval-sync-XXXXXX";

static bool cli_exists(int port, const char *key)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "redis-cli -h 127.0.0.1 -p %d EXISTS '%s' 2>/dev/null | grep -qx 1",
             port, key);
    return system(cmd) == 0;
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
    if (!private_redis_dir_make(tmp_dir)) return 1;
    RUN(redis_tier_waits_for_the_records);
    RUN(a_resubscription_syncs_the_records_again);
    private_redis_dir_remove(tmp_dir);
    return TEST_SUMMARY();
}
