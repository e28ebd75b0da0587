/* endpoints.c - see endpoints.h. */
#include "endpoints.h"

#include <stdio.h>
#include <time.h>

#include "policy_engine.h"
#include "redis_pool.h"
#include "stats.h"
#include "store_l1.h"

/* Writes s as a JSON string literal (quotes included). */
static void json_quote(const char *s, char *out, size_t len)
{
    size_t o = 0;
    if (len < 3) return;
    out[o++] = '"';
    for (; *s && o + 8 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, len - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

int endpoints_health_cache_json(const struct gateway *gw, const struct health_redis_view *redis,
                                char *buf, size_t len)
{
    struct store_l1_stats l1 = {0};
    if (gw->l1) store_l1_get_stats(gw->l1, &l1);
    bool degraded = redis->configured && !redis->available;
    char latency[32];
    if (redis->configured && redis->available && redis->latency_ms >= 0)
        snprintf(latency, sizeof latency, "%.3f", redis->latency_ms);
    else
        snprintf(latency, sizeof latency, "null");
    int n = snprintf(buf, len,
                     "{\"status\": \"%s\", \"backend\": \"%s\", \"latency_ms\": %s, "
                     "\"stats\": {\"hits\": %llu, \"misses\": %llu, \"hit_rate_percent\": %.2f, "
                     "\"redis_available\": %s, \"memory_cache_size\": %llu}",
                     degraded ? "degraded" : "healthy",
                     redis->configured && redis->available ? "redis" : "memory", latency,
                     (unsigned long long)STATS_GET(hits), (unsigned long long)STATS_GET(misses),
                     stats_hit_rate_percent(), redis->available ? "true" : "false",
                     (unsigned long long)l1.entries);
    if (n < 0 || (size_t)n >= len) return -1;
    size_t off = (size_t)n;
    if (gw->redis) {
        static const char *const BREAKER[] = {"closed", "open", "half-open"};
        struct redis_pool_stats rs;
        redis_pool_get_stats(gw->redis, &rs);
        n = snprintf(buf + off, len - off,
                     ", \"redis\": {\"breaker\": \"%s\", \"breaker_opens\": %llu, "
                     "\"errors\": {\"timeout\": %llu, \"protocol\": %llu, \"refused\": %llu, "
                     "\"closed\": %llu}}",
                     BREAKER[rs.breaker <= REDIS_BREAKER_HALF_OPEN ? rs.breaker : 0],
                     (unsigned long long)rs.breaker_opens, (unsigned long long)rs.err_timeout,
                     (unsigned long long)rs.err_protocol, (unsigned long long)rs.err_refused,
                     (unsigned long long)rs.err_closed);
        if (n < 0 || (size_t)n >= len - off) return -1;
        off += (size_t)n;
    }
    if (gw->policies) {
        struct policy_engine_status st;
        policy_engine_status(gw->policies, &st);
        char when[32] = "null";
        if (st.last_reload_ms > 0) {
            time_t t = (time_t)(st.last_reload_ms / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof when, "\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
        }
        char errjson[1100] = "null";
        if (st.last_error[0]) json_quote(st.last_error, errjson, sizeof errjson);
        n = snprintf(buf + off, len - off,
                     ", \"policies\": {\"generation\": %llu, \"routes\": %zu, \"files\": %zu, "
                     "\"reloads\": %llu, \"reload_failures\": %llu, \"last_reload\": %s, "
                     "\"last_error\": %s, \"errors\": %llu}",
                     (unsigned long long)st.generation, st.routes, st.files,
                     (unsigned long long)st.reloads, (unsigned long long)st.reload_failures, when,
                     errjson, (unsigned long long)lua_host_error_count());
        if (n < 0 || (size_t)n >= len - off) return -1;
        off += (size_t)n;
    }
    n = snprintf(buf + off, len - off, "}\n");
    if (n < 0 || (size_t)n >= len - off) return -1;
    return (int)(off + (size_t)n);
}

int endpoints_metrics_text(const struct gateway *gw, const struct health_redis_view *redis,
                           char *buf, size_t len)
{
    struct store_l1_stats l1 = {0};
    if (gw->l1) store_l1_get_stats(gw->l1, &l1);
    struct {
        const char *name;
        uint64_t value;
        const char *help;
    } counters[] = {
        {"cachegw_requests_total", STATS_GET(requests), "Requests handled (not counting own endpoints)"},
        {"cachegw_cache_hits_total", STATS_GET(hits), "Requests answered from cache"},
        {"cachegw_cache_hits_redis_total", STATS_GET(hits_l2), "Hits served from Redis"},
        {"cachegw_cache_misses_total", STATS_GET(misses), "Cacheable requests sent upstream"},
        {"cachegw_cache_bypass_total", STATS_GET(bypasses), "Requests not eligible for caching"},
        {"cachegw_cache_stale_served_total", STATS_GET(stale_served), "Stale responses served"},
        {"cachegw_coalesced_total", STATS_GET(coalesced), "Requests collapsed onto another's fetch"},
        {"cachegw_cache_stores_total", STATS_GET(stores), "Responses stored"},
        {"cachegw_cache_not_stored_total", STATS_GET(not_stored), "Cacheable responses not storable"},
        {"cachegw_cache_too_big_total", STATS_GET(too_big), "Responses over MAX_VALUE_SIZE"},
        {"cachegw_upstream_requests_total", STATS_GET(upstream_requests), "Upstream requests"},
        {"cachegw_upstream_errors_total", STATS_GET(upstream_errors), "502/504 answered"},
        {"cachegw_streamed_total", STATS_GET(streamed), "Responses streamed through"},
        {"cachegw_invalidations_total", STATS_GET(invalidations), "Keys or prefixes invalidated"},
        {"cachegw_rejected_total", STATS_GET(rejected), "Requests rejected by the gateway"},
        {"cachegw_policy_errors_total", STATS_GET(policy_errors), "Lua policy errors"},
    };
    size_t off = 0;
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        int n = snprintf(buf + off, len - off, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
                         counters[i].name, counters[i].help, counters[i].name, counters[i].name,
                         (unsigned long long)counters[i].value);
        if (n < 0 || (size_t)n >= len - off) return -1;
        off += (size_t)n;
    }
    int n = snprintf(buf + off, len - off,
                     "# TYPE cachegw_memory_cache_entries gauge\ncachegw_memory_cache_entries %llu\n"
                     "# TYPE cachegw_memory_cache_bytes gauge\ncachegw_memory_cache_bytes %llu\n"
                     "# TYPE cachegw_redis_available gauge\ncachegw_redis_available %d\n"
                     "# TYPE cachegw_active_requests gauge\ncachegw_active_requests %d\n",
                     (unsigned long long)l1.entries, (unsigned long long)l1.bytes,
                     redis->available ? 1 : 0, atomic_load(&((struct gateway *)gw)->active_requests));
    if (n < 0 || (size_t)n >= len - off) return -1;
    off += (size_t)n;
    if (gw->redis) {
        struct redis_pool_stats rs;
        redis_pool_get_stats(gw->redis, &rs);
        n = snprintf(buf + off, len - off,
                     "# HELP cachegw_redis_errors_total Redis failures by kind\n"
                     "# TYPE cachegw_redis_errors_total counter\n"
                     "cachegw_redis_errors_total{kind=\"timeout\"} %llu\n"
                     "cachegw_redis_errors_total{kind=\"protocol\"} %llu\n"
                     "cachegw_redis_errors_total{kind=\"refused\"} %llu\n"
                     "cachegw_redis_errors_total{kind=\"closed\"} %llu\n"
                     "# HELP cachegw_redis_breaker_opens_total Times the Redis breaker opened\n"
                     "# TYPE cachegw_redis_breaker_opens_total counter\n"
                     "cachegw_redis_breaker_opens_total %llu\n"
                     "# HELP cachegw_redis_breaker_open 1 while the Redis circuit breaker is open\n"
                     "# TYPE cachegw_redis_breaker_open gauge\n"
                     "cachegw_redis_breaker_open %d\n",
                     (unsigned long long)rs.err_timeout, (unsigned long long)rs.err_protocol,
                     (unsigned long long)rs.err_refused, (unsigned long long)rs.err_closed,
                     (unsigned long long)rs.breaker_opens, rs.breaker != REDIS_BREAKER_CLOSED);
        if (n < 0 || (size_t)n >= len - off) return -1;
        off += (size_t)n;
    }
    return (int)off;
}
