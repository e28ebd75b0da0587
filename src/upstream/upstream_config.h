/*
 * upstream_config - a named upstream as declared in the policy files (issue 13).
 *
 * `upstream "users" { servers = {...}, balance = ..., health = {...}, ... }` is validated by
 * gateway/policy.lua and copied into these plain structs when a policy generation loads
 * (policy_set.c); upstream_set.h builds the live registry from them.  The DSL, its
 * defaults and limits are documented in docs/policies.md (Upstreams); docs/design.md
 * ("Upstreams") explains the runtime.
 *
 * Times are in milliseconds; 0 in connect_timeout_ms / timeout_ms / max_connections means
 * "the gateway's setting" (UPSTREAM_* in the configuration).
 *
 * Ownership: every pointer is owned by the struct; upstream_configs_free frees an array of
 * them.  upstream_configs_dup deep-copies one.
 * Thread-safety: plain data; immutable once built.
 */
#ifndef CACHEGW_UPSTREAM_CONFIG_H
#define CACHEGW_UPSTREAM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* The name routes use for UPSTREAM_URL (and what a route without `upstream` gets). */
#define UPSTREAM_DEFAULT_NAME "default"

enum upstream_balance {
    UPSTREAM_BALANCE_ROUND_ROBIN = 0, /* smooth weighted round robin */
    UPSTREAM_BALANCE_LEAST_CONN,      /* fewest in-flight requests per weight */
    UPSTREAM_BALANCE_HASH,            /* by cache key: each key goes to one instance */
};

struct upstream_server_config {
    char *url; /* http[s]://host[:port][/prefix], no trailing slash */
    int weight; /* 1..100 */
};

struct upstream_health_config {
    char *path;      /* NULL: no active checks */
    int interval_ms; /* between two probes of one instance */
    int timeout_ms;  /* of one probe */
    int healthy;     /* consecutive good probes that bring a down instance back */
    int unhealthy;   /* consecutive bad probes that take an instance down */
};

struct upstream_config {
    char *name;
    struct upstream_server_config *servers;
    size_t n_servers;
    enum upstream_balance balance;
    struct upstream_health_config health;
    int connect_timeout_ms; /* 0: the gateway's */
    int timeout_ms;         /* 0: the gateway's */
    int retries;            /* further attempts on another instance (0..10) */
    int max_fails;          /* consecutive failures that mark an instance down */
    int fail_timeout_ms;    /* first cool-down; doubles while it keeps failing */
    bool fail_on_5xx;       /* a 5xx answer counts as a failure */
    int max_connections;    /* per instance; 0: the gateway's */
    int dns_ttl_s;          /* how long a resolved name is reused */
};

void upstream_configs_free(struct upstream_config *c, size_t n);
/* Deep copy of n configs; NULL on allocation failure (or n == 0). */
struct upstream_config *upstream_configs_dup(const struct upstream_config *c, size_t n);
const char *upstream_balance_name(enum upstream_balance b);

#endif
