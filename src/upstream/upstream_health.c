/* upstream_health.c - see upstream_health.h. */
#include "upstream_health.h"

#include <stdio.h>
#include <string.h>

void upstream_health_init(struct upstream_health *h)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    h->backoff = 1;
}

void upstream_health_destroy(struct upstream_health *h) { pthread_mutex_destroy(&h->lock); }

/* Lock held. */
static void upstream_health_go_down(struct upstream_health *h,
                                    const struct upstream_health_params *p, const char *why,
                                    int64_t now_ms)
{
    h->down = true;
    h->downs++;
    h->down_until_ms = now_ms + (int64_t)p->fail_timeout_ms * h->backoff;
    if (h->backoff < UPSTREAM_HEALTH_MAX_BACKOFF) h->backoff *= 2;
    h->probe_ok = 0;
    snprintf(h->reason, sizeof h->reason, "%s", why ? why : "failed");
}

/* Lock held. */
static void upstream_health_go_up(struct upstream_health *h)
{
    h->down = false;
    h->ups++;
    h->fails = 0;
    h->probe_bad = 0;
}

int upstream_health_report(struct upstream_health *h, const struct upstream_health_params *p,
                           bool ok, const char *why, int64_t now_ms)
{
    int change = 0;
    pthread_mutex_lock(&h->lock);
    if (ok) {
        h->fails = 0;
        /* A success on probation (passive only) ends the outage and its back-off. */
        if (h->down && !p->active) {
            upstream_health_go_up(h);
            change = 1;
        }
        if (!h->down) h->backoff = 1;
    } else if (h->down) {
        /* On probation after the cool-down (passive only): straight back down, longer. */
        if (!p->active && now_ms >= h->down_until_ms) {
            h->downs--; /* the same outage, extended: not a new transition */
            upstream_health_go_down(h, p, why, now_ms);
        }
    } else if (++h->fails >= p->max_fails) {
        upstream_health_go_down(h, p, why, now_ms);
        change = -1;
    }
    pthread_mutex_unlock(&h->lock);
    return change;
}

int upstream_health_probe(struct upstream_health *h, const struct upstream_health_params *p,
                          bool ok, const char *why, int64_t now_ms)
{
    int change = 0;
    pthread_mutex_lock(&h->lock);
    if (ok) {
        h->probe_bad = 0;
        if (h->down && ++h->probe_ok >= p->healthy) {
            upstream_health_go_up(h);
            h->backoff = 1;
            change = 1;
        }
    } else {
        h->probe_ok = 0;
        if (!h->down && ++h->probe_bad >= p->unhealthy) {
            upstream_health_go_down(h, p, why, now_ms);
            change = -1;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return change;
}

bool upstream_health_eligible(struct upstream_health *h, const struct upstream_health_params *p,
                              int64_t now_ms)
{
    pthread_mutex_lock(&h->lock);
    bool ok = !h->down || (!p->active && now_ms >= h->down_until_ms);
    pthread_mutex_unlock(&h->lock);
    return ok;
}

bool upstream_health_is_down(struct upstream_health *h)
{
    pthread_mutex_lock(&h->lock);
    bool down = h->down;
    pthread_mutex_unlock(&h->lock);
    return down;
}
