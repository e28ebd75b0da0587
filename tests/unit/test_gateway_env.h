/*
 * test_gateway_env.h - a gateway with only what the Redis tier needs (loop, pool, Redis
 * store, invalidation records, memory tier), against a private redis-server on a free
 * port, plus redis-cli helpers.  Shared by test_inval_sync.c and test_redis_sub_watch.c;
 * include after test_redis_helpers.h.
 */
#ifndef CACHEGW_TEST_GATEWAY_ENV_H
#define CACHEGW_TEST_GATEWAY_ENV_H

#include <netinet/in.h>
#include <sys/socket.h>

#include "cache_tiers.h"
#include "config.h"
#include "gateway.h"
#include "inval_index.h"
#include "store_l1.h"
#include "store_redis.h"
#include "test_redis_helpers.h"

static __attribute__((unused)) int free_tcp_port(void)
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
static __attribute__((unused)) bool cli(int port, const char *args)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "redis-cli -h 127.0.0.1 -p %d %s >/dev/null 2>&1", port, args);
    return system(cmd) == 0;
}

struct gw_env {
    struct env e;
    struct config cfg;
    struct gateway gw;
};

static __attribute__((unused)) bool gw_open(struct gw_env *g, int port)
{
    memset(g, 0, sizeof *g);
    env_loop(&g->e);
    char url[64], err[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    CHECK_EQ_INT(redis_url_parse(url, &g->e.url, err, sizeof err), 0);
    struct redis_pool_options o = test_pool_options();
    o.url = &g->e.url;
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

static __attribute__((unused)) void gw_close(struct gw_env *g)
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

#endif
