/*
 * upstream_set - the live named upstreams: instances, balancing, health (issue 13;
 * docs/design.md, Upstreams).
 *
 * The registry holds the groups built from the active policy generation's declarations
 * (upstream_config.h).  upstream_registry_apply (on start-up and every successful reload)
 * builds a new array of groups and swaps it in atomically: a request that already holds a
 * group keeps it (and its instances) until it ends, so in-flight requests finish on the
 * old set, while new requests see the new one.  An instance whose upstream name and URL
 * stay across an apply is the same object, so its health state and in-flight count carry
 * over; instances that go away stop being probed.
 *
 * A group picks an instance per attempt (upstream_group_pick): among the instances that
 * are below their connection bound (max_connections in-flight attempts each), first the
 * healthy (upstream_health.h) ones not yet tried by this request, then the untried ones
 * whatever their health, then the tried ones, by the group's balance (balancer.h), so a
 * total outage shows the upstream's real error.  The bound is hard: when every instance is
 * at it, pick returns NULL and the proxy makes the request wait for a slot (proxy.h).  It
 * holds because every pick and every upstream_instance_done of a request runs on the
 * loop thread (a check and its increment are never interleaved with another's); health
 * probes are not counted (at most one more connection per instance).  Every finished
 * attempt is reported (upstream_instance_done): that feeds passive health, the least_conn
 * counts and the bound.
 *
 * Active checks run on the I/O loop: each instance of a group with `health.path` has its
 * own timer (first probe after a random part of the interval, so instances are not probed
 * in step), and its probe is a plain GET through the proxy's multi handle (proxy.h),
 * never on a worker.  Transitions are logged once each and counted; upstream_registry_
 * write_metrics and upstream_registry_write_json export the state for /metrics and
 * /health/cache.
 *
 * The default upstream (UPSTREAM_URL) is not a group: a decision without an upstream
 * fetches from the proxy's base URL as before.
 *
 * Ownership: groups and instances are reference counted; upstream_registry_get and
 * upstream_group_pick return references the caller releases.  The registry is destroyed
 * after the loop has stopped.
 * Thread-safety: apply, get, pick, done and the writers may be called from any thread
 * (the group array is swapped under a mutex; each group serialises its picks; health has
 * its own lock).  Probes run on the loop thread.
 */
#ifndef CACHEGW_UPSTREAM_SET_H
#define CACHEGW_UPSTREAM_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io_loop.h"
#include "upstream_config.h"

struct proxy;
struct upstream_registry;
struct upstream_group;
struct upstream_instance;

struct upstream_registry_options {
    struct io_loop *loop;     /* probes' timers; NULL: no active checks (tools, tests) */
    struct proxy *proxy;      /* probes' transfers; NULL: no active checks */
    int connect_timeout_ms;   /* the gateway's defaults for groups that set none */
    int timeout_ms;
};

int upstream_registry_create(const struct upstream_registry_options *o,
                             struct upstream_registry **out);
/* After the loop has stopped.  Groups still referenced stay valid until released. */
void upstream_registry_destroy(struct upstream_registry *r);

/* Builds the groups for configs (copied) and swaps them in.  Returns 0 or -ENOMEM (the
 * previous groups stay). */
int upstream_registry_apply(struct upstream_registry *r, const struct upstream_config *c,
                            size_t n);

/* The group called name (a reference), or NULL for NULL, "default" or an unknown name
 * (then the default upstream serves: a reload removed it while the request was decided). */
struct upstream_group *upstream_registry_get(struct upstream_registry *r, const char *name);
struct upstream_group *upstream_group_ref(struct upstream_group *g);
void upstream_group_unref(struct upstream_group *g);

const char *upstream_group_name(const struct upstream_group *g);
const struct upstream_config *upstream_group_config(const struct upstream_group *g);
/* The group's connect and total timeouts, its defaults applied. */
int upstream_group_connect_timeout_ms(const struct upstream_group *g);
int upstream_group_timeout_ms(const struct upstream_group *g);

/*
 * Picks an instance for one attempt, never one in tried[0..n_tried) unless every instance
 * has been tried.  key is what hash balancing hashes (the cache key; NULL hashes "").
 * Returns a reference and counts the attempt in flight until upstream_instance_done, or
 * NULL when every instance is at the group's max_connections (or the group has none).
 * Loop thread (the bound relies on it, see above).
 */
struct upstream_instance *upstream_group_pick(struct upstream_group *g, const char *key,
                                              struct upstream_instance *const *tried,
                                              size_t n_tried);
/* Number of instances; the per-instance bound (0: none of its own, only the gateway's
 * UPSTREAM_MAX_CONNECTIONS over all upstream connections). */
size_t upstream_group_size(const struct upstream_group *g);
int upstream_group_max_connections(const struct upstream_group *g);

enum upstream_attempt {
    UPSTREAM_ATTEMPT_OK,     /* an answer (any status, unless fail_on_5xx and 5xx) */
    UPSTREAM_ATTEMPT_FAILED, /* connect failure, reset, timeout (or a 5xx, see above) */
    UPSTREAM_ATTEMPT_ABORTED /* ended by us (client gone): no verdict on the instance */
};
/* One attempt on i (picked from g) finished.  status is the HTTP status or 0; why
 * describes a failure.  Releases nothing: unref the instance separately. */
void upstream_instance_done(struct upstream_group *g, struct upstream_instance *i,
                            enum upstream_attempt a, int status, const char *why);

const char *upstream_instance_url(const struct upstream_instance *i);
struct upstream_instance *upstream_instance_ref(struct upstream_instance *i);
void upstream_instance_unref(struct upstream_instance *i);

/* Process-wide counts for /metrics. */
uint64_t upstream_retry_count(void);
void upstream_count_retry(void);

/* Prometheus families cachegw_upstream_up, _in_flight, _transitions_total, _requests_total
 * and cachegw_upstream_retries_total.  Returns 0 or -1 on a write error. */
int upstream_registry_write_metrics(struct upstream_registry *r, FILE *out);
/* A JSON array, one object per instance: {"upstream","url","up","in_flight","downs","ups",
 * "reason"}.  Returns 0 or -1 on a write error. */
int upstream_registry_write_json(struct upstream_registry *r, FILE *out);

/* The process's registry for the /metrics and /health/cache writers (set by main.c);
 * NULL when there is none. */
void upstream_registry_set_global(struct upstream_registry *r);
struct upstream_registry *upstream_registry_global(void);

#endif
