/*
 * upstream_health - the up/down state of one upstream instance (issue 13; docs/design.md,
 * Upstreams).
 *
 * Passive: every finished attempt is reported.  max_fails consecutive failures (connect
 * failures, resets, timeouts, and 5xx answers when the upstream says fail_on_5xx) take the
 * instance down for a cool-down of fail_timeout that doubles each time it fails again
 * right after coming back (up to UPSTREAM_HEALTH_MAX_BACKOFF times the base).  Without
 * active checks the instance is eligible again once the cool-down has passed (on
 * probation: one more failure takes it down again); with them, it comes back only after
 * `healthy` good probes in a row.  Active: `unhealthy` bad probes in a row take an
 * instance down, `healthy` good ones bring it back.  A probe is good on a 2xx or 3xx.
 *
 * Each transition returns true exactly once, so the caller logs it once and counts it.
 * Whether an instance that is down is still picked when nothing else is (so a total
 * outage shows the real error) is the balancer's business (upstream_set.c).
 *
 * Ownership: embedded in the instance.
 * Thread-safety: every function takes the struct's lock; any thread.
 */
#ifndef CACHEGW_UPSTREAM_HEALTH_H
#define CACHEGW_UPSTREAM_HEALTH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define UPSTREAM_HEALTH_MAX_BACKOFF 32

struct upstream_health_params {
    int max_fails;       /* >= 1 */
    int fail_timeout_ms; /* base cool-down */
    bool active;         /* active checks decide when it comes back */
    int healthy, unhealthy;
};

struct upstream_health {
    pthread_mutex_t lock;
    bool down;
    int fails;             /* consecutive passive failures */
    int64_t down_until_ms; /* passive cool-down end (monotonic) */
    int backoff;           /* cool-down multiplier, 1 .. UPSTREAM_HEALTH_MAX_BACKOFF */
    int probe_ok, probe_bad;
    uint64_t downs, ups;   /* transitions so far */
    char reason[128];      /* why it last went down */
};

void upstream_health_init(struct upstream_health *h);
void upstream_health_destroy(struct upstream_health *h);

/* An attempt finished: ok, or failed (why: "connection refused", "HTTP 503", ...).
 * Returns -1 when this took the instance down, +1 when it brought it back (a success on
 * probation, passive checks only), 0 otherwise. */
int upstream_health_report(struct upstream_health *h, const struct upstream_health_params *p,
                           bool ok, const char *why, int64_t now_ms);
/* A probe finished.  Returns +1 when it brought the instance up, -1 when it took it down,
 * 0 otherwise. */
int upstream_health_probe(struct upstream_health *h, const struct upstream_health_params *p,
                          bool ok, const char *why, int64_t now_ms);
/* Whether the instance may be picked now (up, or past its passive cool-down without active
 * checks). */
bool upstream_health_eligible(struct upstream_health *h, const struct upstream_health_params *p,
                              int64_t now_ms);
bool upstream_health_is_down(struct upstream_health *h);

#endif
