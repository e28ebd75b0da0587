/*
 * metrics - the labelled counters and histograms behind GET /metrics, written in the
 * Prometheus text exposition format (version 0.0.4).
 *
 * What is recorded where:
 *   - every request the gateway answers (its own endpoints excepted) once, when it is
 *     released: its cache result, the tier an answer from cache came from, its route and
 *     its duration (metrics_record_request);
 *   - every upstream transfer when libcurl completes it (proxy.c), background refreshes
 *     included (metrics_observe_upstream);
 *   - every Redis command when the pool completes it, answered or failed, PINGs excepted
 *     (metrics_observe_redis_command);
 *   - policy reloads (policy_engine.c).
 *
 * Label sets are bounded: result and tier are enums; route is the route's pattern from the
 * policies ("GET /users/:id"), never a URL, "none" for an unrouted request, and past
 * METRICS_MAX_ROUTES distinct patterns (reloads can rename routes) "other".
 *
 * Ownership: all state is static in metrics.c and lives for the process; interned route
 * names are never freed.  Thread-safety: recording is lock-free (relaxed atomics); only the
 * first request of a route not seen before takes a mutex to intern its name.  Rendering
 * reads the atomics without a lock, so a scrape may see one histogram bucket a request
 * ahead of another, never a count going down.
 */
#ifndef CACHEGW_METRICS_H
#define CACHEGW_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define METRICS_MAX_ROUTES 128

enum metrics_result {
    METRICS_HIT,    /* fresh answer from cache (revalidated 304 to the client included) */
    METRICS_MISS,   /* cacheable, forwarded */
    METRICS_BYPASS, /* not cacheable (method, request, policy), forwarded */
    METRICS_STALE,  /* a stale entry served (max-stale, stale-while-revalidate, -if-error) */
    METRICS_ERROR,  /* the gateway's own error answer (refusal, 502/504), or no answer */
    METRICS_RESULTS
};

enum metrics_tier {
    METRICS_TIER_MEMORY,
    METRICS_TIER_REDIS,
    METRICS_TIER_NONE, /* not answered from cache */
    METRICS_TIERS
};

/* One answered request.  route may be NULL (unrouted: "none"); seconds is its whole time
 * from request line to release.  tier is forced to none for results not from cache. */
void metrics_record_request(enum metrics_result result, enum metrics_tier tier,
                            const char *route, double seconds);

/* CLOCK_MONOTONIC in microseconds: request durations are often below a millisecond. */
int64_t metrics_now_us(void);

/* One completed upstream transfer (success or failure), its total time. */
void metrics_observe_upstream(double seconds);

/* One completed Redis command, from submission to its reply or failure. */
void metrics_observe_redis_command(double seconds);

/* A policy set loaded: at start-up (initial = true: the timestamp only, not a reload) or
 * by a reload (ok or failed).  wall_ms is the Unix time in milliseconds. */
void metrics_policy_loaded(bool initial, bool ok, int64_t wall_ms);

/* The gateway's own endpoints (/health, /health/cache, /metrics) in flight: they are not
 * in cachegw_active_requests, so a scrape does not count itself. */
void metrics_own_endpoint_begin(void);
void metrics_own_endpoint_end(void);
int64_t metrics_own_endpoints_in_flight(void);

/* Writes every family of this module (requests, durations, routes, policy reloads,
 * build info, process metrics) with HELP and TYPE lines.  Returns 0, or -1 on a write
 * error. */
int metrics_write(FILE *out);

/* A writer of families that live above this folder (the upstreams, upstream_set.h),
 * called by metrics_write after this module's own families; NULL removes it.  Set once at
 * start-up, before the listeners start. */
typedef int (*metrics_extra_fn)(FILE *out, void *arg);
void metrics_set_extra_writer(metrics_extra_fn fn, void *arg);

/* Label-value escaping of the exposition format (\\, \", \n), into out (always
 * terminated; truncated to out_len - 1).  Exposed for the unit test. */
void metrics_escape_label(const char *in, char *out, size_t out_len);

#endif
