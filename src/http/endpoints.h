/*
 * endpoints - the bodies of the gateway's own endpoints: GET /health/cache
 * (the JSON shape in docs/design.md and the README) and GET /metrics (Prometheus text).
 *
 * endpoints_health_cache_json writes into a caller-supplied buffer and returns the length
 * (or a negative value if it did not fit).  endpoints_metrics_text returns a malloc'd text
 * (its length in *len) that the caller frees, or NULL when out of memory: the histograms
 * and per-route series have no small fixed bound.  Metric families and labels: metrics.h
 * and the README's "Metrics".  Thread-safety: reads atomics and internally locked stores
 * only; call from any thread.
 */
#ifndef CACHEGW_ENDPOINTS_H
#define CACHEGW_ENDPOINTS_H

#include <stddef.h>

#include "gateway.h"

struct health_redis_view {
    bool configured;      /* REDIS_URL set */
    bool available;       /* currently usable */
    double latency_ms;    /* live PING round trip, < 0 when unknown */
};

int endpoints_health_cache_json(const struct gateway *gw, const struct health_redis_view *redis,
                                char *buf, size_t len);
char *endpoints_metrics_text(const struct gateway *gw, const struct health_redis_view *redis,
                             size_t *len);

#endif
