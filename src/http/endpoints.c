/* endpoints.c - see endpoints.h. */
#include "endpoints.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cache_tiers.h"
#include "metrics.h"
#include "policy_engine.h"
#include "redis_pool.h"
#include "stats.h"
#include "store_l1.h"
#include "upstream_set.h"

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
                     "\"closed\": %llu}",
                     BREAKER[rs.breaker <= REDIS_BREAKER_HALF_OPEN ? rs.breaker : 0],
                     (unsigned long long)rs.breaker_opens, (unsigned long long)rs.err_timeout,
                     (unsigned long long)rs.err_protocol, (unsigned long long)rs.err_refused,
                     (unsigned long long)rs.err_closed);
        if (n < 0 || (size_t)n >= len - off) return -1;
        off += (size_t)n;
        /* Issue 10: the topology the pool routes over (redis_pool.h). */
        struct redis_topology t;
        redis_pool_get_topology(gw->redis, &t);
        char age[24] = "null";
        if (t.map_age_ms >= 0) snprintf(age, sizeof age, "%lld", (long long)t.map_age_ms);
        n = snprintf(buf + off, len - off,
                     ", \"topology\": {\"mode\": \"%s\", \"nodes_known\": %d, \"nodes_up\": %d, "
                     "\"masters\": %d, \"masters_up\": %d, \"slot_map_age_ms\": %s, "
                     "\"redirects\": {\"moved\": %llu, "
                     "\"ask\": %llu, \"tryagain\": %llu}, \"refreshes\": %llu, "
                     "\"failovers\": %llu}}",
                     t.mode, t.nodes_known, t.nodes_up, t.masters, t.masters_up, age,
                     (unsigned long long)t.moved, (unsigned long long)t.ask,
                     (unsigned long long)t.tryagain, (unsigned long long)t.refreshes,
                     (unsigned long long)t.failovers);
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
    /* Issue 13: every named upstream instance, up or down (upstream_set.h); a list too
     * long for the buffer is left out (it is in /metrics whole). */
    if (upstream_registry_global() != NULL && len - off > 64) {
        FILE *f = fmemopen(buf + off, len - off - 32, "w");
        bool ok = f != NULL && fputs(", \"upstreams\": ", f) != EOF &&
                  upstream_registry_write_json(upstream_registry_global(), f) == 0;
        long used = f != NULL && ok && fflush(f) == 0 ? ftell(f) : -1;
        if (f != NULL) fclose(f);
        if (used > 0 && (size_t)used < len - off - 33) off += (size_t)used;
        else off += (size_t)snprintf(buf + off, len - off, ", \"upstreams_truncated\": true");
    }
    n = snprintf(buf + off, len - off, "}\n");
    if (n < 0 || (size_t)n >= len - off) return -1;
    return (int)(off + (size_t)n);
}

/* The families kept from before the labelled ones: per-event counters the dashboards
 * already use (cachegw_cache_hits_total counts hits, stale ones included). */
static int write_counters(FILE *out)
{
    static const struct {
        const char *name;
        size_t field;
        const char *help;
    } counters[] = {
#define C(name, field, help) {name, offsetof(struct stats, field), help}
        C("cachegw_cache_hits_total", hits, "Requests answered from cache (stale included)"),
        C("cachegw_cache_hits_redis_total", hits_l2, "Fresh hits served from Redis"),
        C("cachegw_cache_hits_reused_answer_total", hits_reused,
          "Hits answered with the answer built for an earlier hit of the same second"),
        C("cachegw_cache_misses_total", misses, "Cacheable requests sent upstream"),
        C("cachegw_cache_bypass_total", bypasses, "Requests not eligible for caching"),
        C("cachegw_cache_stale_served_total", stale_served, "Stale responses served"),
        C("cachegw_coalesced_total", coalesced, "Requests collapsed onto another's fetch"),
        C("cachegw_cache_stores_total", stores, "Responses stored in the memory tier"),
        C("cachegw_cache_not_stored_total", not_stored, "Cacheable responses not storable"),
        C("cachegw_cache_too_big_total", too_big, "Responses over MAX_VALUE_SIZE"),
        C("cachegw_upstream_requests_total", upstream_requests, "Upstream requests started"),
        C("cachegw_upstream_errors_total", upstream_errors, "502/504 answered by the gateway"),
        C("cachegw_streamed_total", streamed, "Responses streamed through"),
        C("cachegw_invalidations_total", invalidations,
          "Invalidations (a key, prefix, tag or URL purge counts once)"),
        C("cachegw_rejected_total", rejected, "Requests refused by the gateway (4xx, 503)"),
        C("cachegw_policy_errors_total", policy_errors, "Lua policy errors"),
#undef C
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
        const atomic_uint_fast64_t *v =
            (const atomic_uint_fast64_t *)((const char *)&g_stats + counters[i].field);
        if (fprintf(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", counters[i].name,
                    counters[i].help, counters[i].name, counters[i].name,
                    (unsigned long long)atomic_load_explicit(v, memory_order_relaxed)) < 0)
            return -1;
    }
    return 0;
}

static int write_gauges(FILE *out, const struct gateway *gw, const struct health_redis_view *redis)
{
    struct store_l1_stats l1 = {0};
    if (gw->l1) store_l1_get_stats(gw->l1, &l1);
    /* The gateway's own endpoints in flight (this scrape among them) are not requests
     * it serves. */
    int64_t active = (int64_t)atomic_load(&((struct gateway *)gw)->active_requests) -
                     metrics_own_endpoints_in_flight();
    if (fprintf(out,
                "# HELP cachegw_memory_cache_entries Entries in the memory tier\n"
                "# TYPE cachegw_memory_cache_entries gauge\n"
                "cachegw_memory_cache_entries %llu\n"
                "# HELP cachegw_memory_cache_bytes Bytes held by the memory tier\n"
                "# TYPE cachegw_memory_cache_bytes gauge\n"
                "cachegw_memory_cache_bytes %llu\n"
                "# HELP cachegw_redis_available 1 while the Redis tier is usable\n"
                "# TYPE cachegw_redis_available gauge\n"
                "cachegw_redis_available %d\n"
                "# HELP cachegw_active_requests Requests in progress (not the gateway's own "
                "endpoints)\n"
                "# TYPE cachegw_active_requests gauge\n"
                "cachegw_active_requests %lld\n",
                (unsigned long long)l1.entries, (unsigned long long)l1.bytes,
                redis->available ? 1 : 0, (long long)(active > 0 ? active : 0)) < 0)
        return -1;
    if (gw->redis) {
        struct redis_pool_stats rs;
        redis_pool_get_stats(gw->redis, &rs);
        if (fprintf(out,
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
                    (unsigned long long)rs.breaker_opens, rs.breaker != REDIS_BREAKER_CLOSED) < 0)
            return -1;
        uint64_t ryw_waits, ryw_timeouts;
        cache_tiers_read_your_writes_stats((struct gateway *)gw, &ryw_waits, &ryw_timeouts);
        if (fprintf(out,
                    "# HELP cachegw_read_your_writes_waits_total Memory-tier reads that waited "
                    "for invalidations already received from Redis\n"
                    "# TYPE cachegw_read_your_writes_waits_total counter\n"
                    "cachegw_read_your_writes_waits_total %llu\n"
                    "# HELP cachegw_read_your_writes_timeouts_total Of those, waits that ran to "
                    "their 5 ms bound\n"
                    "# TYPE cachegw_read_your_writes_timeouts_total counter\n"
                    "cachegw_read_your_writes_timeouts_total %llu\n",
                    (unsigned long long)ryw_waits, (unsigned long long)ryw_timeouts) < 0)
            return -1;
        struct redis_topology t;
        redis_pool_get_topology(gw->redis, &t);
        if (fprintf(out,
                    "# HELP cachegw_redis_mode The Redis topology in use (label mode)\n"
                    "# TYPE cachegw_redis_mode gauge\n"
                    "cachegw_redis_mode{mode=\"%s\"} 1\n"
                    "# HELP cachegw_redis_nodes Redis nodes the gateway has a pool for, and up\n"
                    "# TYPE cachegw_redis_nodes gauge\n"
                    "cachegw_redis_nodes{state=\"known\"} %d\n"
                    "cachegw_redis_nodes{state=\"up\"} %d\n"
                    "# HELP cachegw_redis_masters Masters in the slot map\n"
                    "# TYPE cachegw_redis_masters gauge\n"
                    "cachegw_redis_masters %d\n"
                    "# HELP cachegw_redis_masters_up Masters in the slot map that are up\n"
                    "# TYPE cachegw_redis_masters_up gauge\n"
                    "cachegw_redis_masters_up %d\n"
                    "# HELP cachegw_redis_slot_map_age_seconds Since the slot map (or the "
                    "sentinels' answer) was loaded; -1: never\n"
                    "# TYPE cachegw_redis_slot_map_age_seconds gauge\n"
                    "cachegw_redis_slot_map_age_seconds %.3f\n"
                    "# HELP cachegw_redis_redirects_total Cluster redirects followed\n"
                    "# TYPE cachegw_redis_redirects_total counter\n"
                    "cachegw_redis_redirects_total{kind=\"moved\"} %llu\n"
                    "cachegw_redis_redirects_total{kind=\"ask\"} %llu\n"
                    "cachegw_redis_redirects_total{kind=\"tryagain\"} %llu\n"
                    "# HELP cachegw_redis_topology_refreshes_total Slot map loads or sentinel "
                    "answers\n"
                    "# TYPE cachegw_redis_topology_refreshes_total counter\n"
                    "cachegw_redis_topology_refreshes_total %llu\n"
                    "# HELP cachegw_redis_failovers_total Master changes seen\n"
                    "# TYPE cachegw_redis_failovers_total counter\n"
                    "cachegw_redis_failovers_total %llu\n",
                    t.mode, t.nodes_known, t.nodes_up, t.masters, t.masters_up,
                    t.map_age_ms < 0 ? -1.0 : (double)t.map_age_ms / 1000.0,
                    (unsigned long long)t.moved, (unsigned long long)t.ask,
                    (unsigned long long)t.tryagain, (unsigned long long)t.refreshes,
                    (unsigned long long)t.failovers) < 0)
            return -1;
    }
    return 0;
}

char *endpoints_metrics_text(const struct gateway *gw, const struct health_redis_view *redis,
                             size_t *len)
{
    char *text = NULL;
    size_t n = 0;
    FILE *out = open_memstream(&text, &n);
    if (out == NULL) return NULL;
    int rc = metrics_write(out);
    if (rc == 0) rc = write_counters(out);
    if (rc == 0) rc = write_gauges(out, gw, redis);
    if (fclose(out) != 0 || rc != 0) {
        free(text);
        return NULL;
    }
    *len = n;
    return text;
}
