/* main.c - start-up, signals, drain and exit.
 *
 * The main thread loads the configuration, builds the shared context, starts
 * the I/O loop and the HTTP server, then waits for signals with sigwait():
 * SIGHUP reloads the policies, SIGUSR1 reopens the access log file (logrotate),
 * SIGTERM/SIGINT stop accepting, let in-flight requests finish (bounded by
 * SHUTDOWN_TIMEOUT_MS) and exit 0. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "access_log.h"
#include "coalesce.h"
#include "config.h"
#include "gateway.h"
#include "http_server.h"
#include "inval_index.h"
#include "io_loop.h"
#include "log.h"
#include "metrics.h"
#include "policy_engine.h"
#include "proxy.h"
#include "admin_server.h"
#include "cache_tiers.h"
#include "redis_pool.h"
#include "redis_url.h"
#include "store_redis.h"
#include "store_l1.h"
#include "upstream_set.h"

/* A file every copy of the gateway's Lua library holds. */
#define LUA_DIR_PROBE "gateway/policy.lua"

/* Where the Lua library is relative to the directory of the binary, in order:
 * the install layout (cmake --install, the .deb: bin/ next to share/), then a
 * symlink that CMake creates in the build tree only.  No path is compiled in
 * and the working directory is not consulted, so a moved or packaged binary
 * finds its own library and never a checkout's. */
static const char *const LUA_DIR_CANDIDATES[] = {"../share/cachegw/lua", "cachegw-lua"};

static bool lua_dir_holds_library(const char *dir)
{
    char probe[PATH_MAX];
    int n = snprintf(probe, sizeof probe, "%s/" LUA_DIR_PROBE, dir);
    return n > 0 && (size_t)n < sizeof probe && access(probe, R_OK) == 0;
}

/* The gateway's own Lua library: LUA_DIR if set, else found from the binary's
 * own path (/proc/self/exe).  Writes the directory to buf and returns 0, or
 * returns -1 with one line in err that names LUA_DIR. */
static int lua_dir_resolve(const struct config *cfg, char *buf, size_t len, char *err,
                           size_t err_len)
{
    if (cfg->lua_dir != NULL) {
        if (!lua_dir_holds_library(cfg->lua_dir)) {
            snprintf(err, err_len,
                     "LUA_DIR (--lua-dir) %.512s does not hold the gateway's Lua library "
                     "(no readable %s in it)",
                     cfg->lua_dir, LUA_DIR_PROBE);
            return -1;
        }
        int c = snprintf(buf, len, "%s", cfg->lua_dir);
        if (c > 0 && (size_t)c < len) return 0;
        snprintf(err, err_len, "LUA_DIR (--lua-dir) is too long");
        return -1;
    }
    char exe_dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe_dir, sizeof exe_dir - 1);
    if (n <= 0 || (size_t)n >= sizeof exe_dir - 1) {
        snprintf(err, err_len,
                 "cannot tell where the cachegw binary is (/proc/self/exe): set LUA_DIR "
                 "(--lua-dir) to the directory holding %s",
                 LUA_DIR_PROBE);
        return -1;
    }
    exe_dir[n] = '\0';
    *strrchr(exe_dir, '/') = '\0'; /* the kernel's path is absolute */
    for (size_t i = 0; i < sizeof LUA_DIR_CANDIDATES / sizeof LUA_DIR_CANDIDATES[0]; i++) {
        char dir[PATH_MAX];
        int w = snprintf(dir, sizeof dir, "%s/%s", exe_dir, LUA_DIR_CANDIDATES[i]);
        if (w <= 0 || (size_t)w >= sizeof dir || !lua_dir_holds_library(dir)) continue;
        /* The canonical form is what the log lines show. */
        char *canon = realpath(dir, NULL);
        int c = snprintf(buf, len, "%s", canon != NULL ? canon : dir);
        free(canon);
        if (c > 0 && (size_t)c < len) return 0;
    }
    snprintf(err, err_len,
             "the gateway's Lua library is not installed next to the binary (%.512s/%s): set "
             "LUA_DIR (--lua-dir) to the directory holding %s",
             exe_dir, LUA_DIR_CANDIDATES[0], LUA_DIR_PROBE);
    return -1;
}

/* `cachegw --check`: validate the policies like `nginx -t`. */
static int check_policies(const struct config *cfg)
{
    struct lua_limits lim = {.memory_bytes = cfg->lua_memory_bytes,
                             .instructions = cfg->lua_instruction_limit,
                             .time_ms = cfg->lua_time_limit_ms};
    struct policy_set *set = NULL;
    char err[1024], lua_dir[PATH_MAX];
    if (lua_dir_resolve(cfg, lua_dir, sizeof lua_dir, err, sizeof err) != 0) {
        fprintf(stderr, "cachegw: policy check failed: %s\n", err);
        return 1;
    }
    int rc = policy_set_load(cfg->policies_dir, lua_dir, &lim, &set, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "cachegw: policy check failed: %s\n", err);
        return 1;
    }
    printf("cachegw: policies OK: %zu routes in %zu files (%s)\n", policy_set_route_count(set),
           policy_set_file_count(set), cfg->policies_dir);
    if (cfg->dump) {
        /* Like nginx -T: what the gateway would run with, after the verdict. */
        struct lua_host *host = NULL;
        fflush(stdout);
        config_print_effective(cfg, stdout);
        if (lua_host_create(set, &lim, &host, err, sizeof err) != 0 ||
            lua_host_dump_routes(host, stdout, err, sizeof err) != 0) {
            fprintf(stderr, "cachegw: --dump: %s\n", err);
            rc = 1;
        }
        lua_host_destroy(host);
    }
    policy_set_unref(set);
    return rc;
}

static void start_redis_task(void *arg) { redis_pool_start(arg); }
static void stop_redis_task(void *arg) { redis_pool_stop(arg); }

/* Sets up the Redis tier (REDIS_URL).  Connection happens in the background:
 * a Redis that is down at start-up is retried while the memory tier serves. */
static int setup_redis(struct gateway *gw, const struct config *cfg, char *err, size_t err_len)
{
    struct redis_url url;
    char uerr[256];
    if (redis_url_parse(cfg->redis_url, &url, uerr, sizeof uerr) != 0) {
        snprintf(err, err_len, "invalid REDIS_URL: %s", uerr);
        return -1;
    }
    /* REDIS_MODE (docs/design.md, "Redis Cluster and Sentinel"). */
    static const enum redis_pool_mode MODES[] = {
        [CONFIG_REDIS_AUTO] = REDIS_POOL_AUTO,
        [CONFIG_REDIS_STANDALONE] = REDIS_POOL_STANDALONE,
        [CONFIG_REDIS_CLUSTER] = REDIS_POOL_CLUSTER,
        [CONFIG_REDIS_SENTINEL] = REDIS_POOL_SENTINEL,
    };
    struct redis_url_node *sentinels = NULL;
    size_t n_sentinels = 0;
    if (cfg->redis_sentinels != NULL &&
        redis_url_parse_nodes(cfg->redis_sentinels, &sentinels, &n_sentinels, uerr,
                              sizeof uerr) != 0) {
        snprintf(err, err_len, "invalid REDIS_SENTINELS: %s", uerr);
        redis_url_free(&url);
        return -1;
    }
    struct redis_pool_options o = {.mode = MODES[cfg->redis_mode],
                                   .sentinels = sentinels,
                                   .n_sentinels = n_sentinels,
                                   .sentinel_master = cfg->redis_sentinel_master,
                                   .sentinel_password = cfg->redis_sentinel_password,
                                   .sentinel_tls = cfg->redis_sentinel_tls,
                                   .url = &url,
                                   .pool_size = cfg->redis_pool_size,
                                   .connect_timeout_ms = cfg->redis_connect_timeout_ms,
                                   .op_timeout_ms = cfg->redis_timeout_ms,
                                   .retries = cfg->redis_retries,
                                   .health_interval_s = cfg->redis_health_interval_s,
                                   .tls_ca_file = cfg->redis_tls_ca_file,
                                   .tls_cert_file = cfg->redis_tls_cert_file,
                                   .tls_key_file = cfg->redis_tls_key_file,
                                   .tls_insecure = cfg->redis_tls_insecure};
    int rc = redis_pool_create(gw->loop, &o, &gw->redis, err, err_len);
    redis_url_free(&url);
    redis_url_nodes_free(sentinels, n_sentinels);
    if (rc != 0) return -1;
    if (store_redis_create(gw->redis, gw->loop, cfg->redis_prefix, cfg->max_value_bytes,
                           &gw->l2) != 0 ||
        cache_tiers_start(gw) != 0) {
        snprintf(err, err_len, "out of memory setting up the Redis tier");
        return -1;
    }
    return 0;
}

/* Every client connection, upstream connection and Redis connection is a file
 * descriptor: raise the soft limit to the hard one, and say so when
 * MAX_CONNECTIONS cannot fit (the connection guard then keeps the listener
 * responsive, but fewer clients fit than configured). */
static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t need = (rlim_t)cfg->max_connections + (rlim_t)cfg->upstream_max_connections +
                  (rlim_t)cfg->redis_pool_size + 256;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        LOG_W("open-file limit %llu is below what MAX_CONNECTIONS=%d needs (%llu): raise it "
              "(ulimit -n, LimitNOFILE=) or lower MAX_CONNECTIONS",
              (unsigned long long)rl.rlim_cur, cfg->max_connections, (unsigned long long)need);
}

/* /metrics: the upstream families (upstream_set.h). */
static int upstream_metrics_writer(FILE *out, void *arg)
{
    return upstream_registry_write_metrics(arg, out);
}

static int run(struct config *cfg)
{
    struct gateway gw = {.cfg = cfg, .started_ms = clock_mono_ms()};
    char err[512];
    int rc = 1;
    struct admin_server *admin = NULL;
    struct upstream_registry *upstreams = NULL; /* named upstreams (issue 13) */
    raise_fd_limit(cfg);

    if (io_loop_create(&gw.loop) != 0 || coalesce_create(&gw.coalescer) != 0 ||
        inval_index_create(&gw.inval) != 0) {
        LOG_E("out of memory at start-up");
        goto done;
    }
    if (access(cfg->policies_dir, F_OK) == 0) {
        struct lua_limits lim = {.memory_bytes = cfg->lua_memory_bytes,
                                 .instructions = cfg->lua_instruction_limit,
                                 .time_ms = cfg->lua_time_limit_ms};
        char lua_dir[PATH_MAX];
        if (lua_dir_resolve(cfg, lua_dir, sizeof lua_dir, err, sizeof err) != 0) {
            LOG_E("%s", err);
            goto done;
        }
        if (policy_engine_create(cfg->policies_dir, lua_dir, &lim, &gw.policies, err,
                                 sizeof err) != 0) {
            LOG_E("invalid policies, not starting: %s", err);
            goto done;
        }
        struct policy_engine_status st;
        policy_engine_status(gw.policies, &st);
        LOG_I("policies loaded: %zu routes in %zu files from %s", st.routes, st.files,
              cfg->policies_dir);
        /* Each worker's Lua state, built before the listener opens (issue 8 item 22), and
         * the admin thread's (purge by URL asks the policies), so it takes no worker's.
         * WORKERS resolves as in http_server_start. */
        long workers = cfg->workers > 0 ? cfg->workers : sysconf(_SC_NPROCESSORS_ONLN);
        bool admin = cfg->admin_token != NULL && cfg->admin_token[0] != '\0';
        policy_engine_set_workers(gw.policies, (workers > 0 ? (unsigned)workers : 1u) + admin);
    } else {
        LOG_W("policies directory %s not found: default HTTP caching rules only",
              cfg->policies_dir);
    }
    /* CACHE_MAX_BYTES=0 keeps a disabled memory tier (every lookup misses), so
     * the Redis tier alone can serve. */
    if (store_l1_create(cfg->cache_max_bytes, 0, &gw.l1) != 0) {
        LOG_E("cannot create the memory cache (%zu bytes)", cfg->cache_max_bytes);
        goto done;
    }
    struct proxy_options po = {.base_url = cfg->upstream_url,
                               .connect_timeout_ms = cfg->upstream_connect_timeout_ms,
                               .total_timeout_ms = cfg->upstream_timeout_ms,
                               .max_connections = cfg->upstream_max_connections};
    if (proxy_create(gw.loop, &po, &gw.proxy) != 0) {
        LOG_E("cannot create the upstream client");
        goto done;
    }
    struct upstream_registry_options uo = {.loop = gw.loop, .proxy = gw.proxy,
                                           .connect_timeout_ms = po.connect_timeout_ms,
                                           .timeout_ms = po.total_timeout_ms};
    if (upstream_registry_create(&uo, &upstreams) != 0) {
        LOG_E("out of memory at start-up");
        goto done;
    }
    upstream_registry_set_global(upstreams);
    metrics_set_extra_writer(upstream_metrics_writer, upstreams);
    if (gw.policies != NULL) policy_engine_set_upstreams(gw.policies, upstreams);
    if (cfg->redis_url && setup_redis(&gw, cfg, err, sizeof err) != 0) {
        LOG_E("%s", err);
        goto done;
    }
    if (io_loop_start(gw.loop) != 0) {
        LOG_E("cannot start the I/O loop");
        goto done;
    }
    if (gw.redis) io_loop_post(gw.loop, start_redis_task, gw.redis);
    else LOG_I("Using in-memory cache (%zu bytes); no REDIS_URL", cfg->cache_max_bytes);
    if (http_server_start(&gw, err, sizeof err) != 0) {
        LOG_E("%s", err);
        goto stop_loop;
    }
    if (admin_server_start(&gw, &admin, err, sizeof err) != 0) {
        LOG_E("%s", err);
        http_server_stop(&gw);
        goto stop_loop;
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0) continue;
        if (sig == SIGUSR1) {
            if (access_log_reopen(err, sizeof err) != 0)
                LOG_E("SIGUSR1: %s; still writing to the old file", err);
            else
                LOG_I("SIGUSR1 received: access log reopened");
            continue;
        }
        if (sig == SIGHUP) {
            if (gw.policies == NULL) {
                LOG_W("SIGHUP received: no policies directory, nothing to reload");
                continue;
            }
            LOG_I("SIGHUP received: reloading policies from %s", cfg->policies_dir);
            if (policy_engine_reload(gw.policies, err, sizeof err) != 0)
                LOG_E("policy reload failed, keeping the running policies: %s", err);
            continue;
        }
        LOG_I("%s received: draining (up to %d ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
              cfg->shutdown_timeout_ms);
        break;
    }
    int left = http_server_drain(&gw, clock_mono_ms() + cfg->shutdown_timeout_ms);
    if (left > 0) {
        /* The HTTP server must not be stopped with suspended connections, and
         * they are past the drain bound: leave without tearing down. */
        LOG_W("drain timeout: %d requests still in flight, exiting", left);
        _exit(0);
    }
    /* Before the policy engine goes: the admin thread owns a Lua host. */
    admin_server_stop(admin);
    http_server_stop(&gw);
    LOG_I("stopped cleanly");
    rc = 0;
stop_loop:
    if (gw.redis) io_loop_post(gw.loop, stop_redis_task, gw.redis);
    io_loop_stop(gw.loop);
    cache_tiers_stop(&gw);
done:
    store_redis_destroy(gw.l2);
    redis_pool_destroy(gw.redis);
    proxy_destroy(gw.proxy);
    policy_engine_destroy(gw.policies);
    metrics_set_extra_writer(NULL, NULL);
    upstream_registry_destroy(upstreams);
    store_l1_destroy(gw.l1);
    coalesce_destroy(gw.coalescer);
    inval_index_destroy(gw.inval);
    io_loop_destroy(gw.loop);
    return rc;
}

int main(int argc, char **argv)
{
    /* Block the signals main waits for before any thread starts, so every
     * thread inherits the mask and only sigwait() sees them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct config cfg;
    char err[512];
    enum config_result cr = config_load(&cfg, argc, argv, NULL, err, sizeof err);
    if (cr == CONFIG_EXIT_OK) {
        config_free(&cfg);
        return 0;
    }
    if (cr == CONFIG_ERROR) {
        fprintf(stderr, "cachegw: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    log_set_level((enum log_level)cfg.log_level);
    log_set_format(cfg.log_format == 1 ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
    /* An access log file that cannot be opened is an invalid setting (exit 2),
     * found by --check too, like nginx -t. */
    if (access_log_open(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "cachegw: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    int rc = cfg.check_only ? check_policies(&cfg) : run(&cfg);
    access_log_close();
    config_free(&cfg);
    return rc;
}
