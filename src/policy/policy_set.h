/*
 * policy_set - one policy generation: reading, compiling and validating the Lua sources
 * (the public functions are declared in lua_host.h; this header is the policy folder's
 * internal view of a set).
 *
 * policy_set_load reads lua_dir/gateway/NAME.lua and policies_dir/NAME.lua, runs them
 * once in a throw-away sandbox (sandbox.h) under LOAD_BUDGET_FACTOR times the per-call
 * budgets, builds the set's C route table (route_table.h) from that load, and keeps the
 * source text so every worker's lua_host can build its own state from it
 * (policy_set_run with want_refs).
 *
 * Ownership: reference counted (policy_set_ref/unref in lua_host.h); everything a set
 * holds is freed with the last reference.  struct policy_route_info arrays returned in a
 * policy_load_ctx belong to the caller (policy_route_infos_free).
 * Thread-safety: a set is immutable after load and shared by any threads;
 * policy_set_run runs on the calling thread's sandbox.
 */
#ifndef CACHEGW_POLICY_SET_H
#define CACHEGW_POLICY_SET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lua_host.h"
#include "sandbox.h"
#include "upstream_config.h"

struct route_table;

/* Loading runs this many per-call budgets: validation does real work for every route. */
#define POLICY_SET_LOAD_BUDGET_FACTOR 10
/* Host builds run the same top-level code validation ran, on a possibly busier machine:
 * give them twice the load's wall-clock budget so a set that validated never fails there. */
#define POLICY_SET_BUILD_TIME_FACTOR (2 * POLICY_SET_LOAD_BUDGET_FACTOR)

struct policy_set {
    atomic_int refs;
    uint64_t generation;
    struct lua_limits lim;
    struct lua_source *modules;
    size_t n_modules;
    struct lua_source *policies;
    size_t n_policies;
    size_t route_count;
    /* Routes without functions, and unrouted requests, decided in C; NULL: all in Lua. */
    struct route_table *table;
    /* The upstreams the policy files declare (upstream_config.h), in declaration order. */
    struct upstream_config *upstreams;
    size_t n_upstreams;
    bool has_hosts; /* some route matches on Host (or unknown_host "reject") */
};

/* What a decision says that is static per route, read once per host so the per-request
 * call returns only what varies (see decide_raw in gateway/policy.lua). */
struct policy_route_info {
    char *name;
    int64_t ttl_ms, swr_ms, sie_ms;
    bool per_user, has_hook, ignore_no_store;
    char *upstream;  /* the route's upstream name, NULL: the default */
    bool idempotent; /* a write the route allows to be retried */
};

struct policy_load_ctx {
    const struct policy_set *set;
    size_t route_count;
    /* Filled when want_refs (a host's build): */
    bool want_refs;
    int ref_set, ref_decide, ref_on_response;
    struct policy_route_info *routes; /* route_count entries; the caller frees it */
    /* Filled when !want_refs (the set's validation load): */
    struct route_table *table;
    char table_err[256];
    struct upstream_config *upstreams; /* the caller frees them on failure */
    size_t n_upstreams;
    bool has_hosts;
};

/* Runs the set's policy files in sb (policy = require "gateway.policy"; policy.load(files))
 * under LOAD_BUDGET_FACTOR per-call instruction budgets and time_factor per-call time
 * budgets, filling c.  Returns 0, -EINVAL (err: file:line: message) or -ENOMEM. */
int policy_set_run(struct sandbox *sb, const struct lua_limits *lim, struct policy_load_ctx *c,
                   long time_factor, char *err, size_t err_len);

void policy_route_infos_free(struct policy_route_info *ri, size_t n);

/* lim with its zero fields replaced by the defaults (lua_host.h). */
struct lua_limits policy_limits_or_default(const struct lua_limits *lim);

#endif
