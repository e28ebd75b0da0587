/*
 * endpoints - the bodies of the gateway's own endpoints: GET /health/cache
 * (the JSON shape in docs/design.md and the README) and GET /metrics (Prometheus text).
 *
 * Functions write into a caller-supplied buffer and return the length (or a
 * negative value if it did not fit).  Thread-safety: reads atomics and
 * internally locked stores only; call from any thread.
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
int endpoints_metrics_text(const struct gateway *gw, const struct health_redis_view *redis,
                           char *buf, size_t len);

#endif
