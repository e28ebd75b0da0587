/*
 * lua_host - the sandboxed Lua policy engine: policy generations and per-thread states.
 *
 * A policy_set is one immutable, validated generation of Lua sources: the gateway's own
 * library (lua_dir/gateway/NAME.lua, required as gateway.*) and the user's route policies
 * (policies_dir/NAME.lua, in name order; *_spec.lua and dot files are skipped).
 * policy_set_load reads them, runs them once in a throw-away sandbox to validate them
 * (this is all `cachegw --check` does), and keeps the source text.  A lua_host is one
 * lua_State built from a set; each HTTP worker owns one and asks it, per request, what the
 * policy decides (lua_host_decide) and, for routes with an on_response hook, whether to
 * store the upstream's answer (lua_host_on_response).  Most decisions never enter Lua: when
 * a set loads, its routes without functions are compiled into a C route table
 * (route_table.h) that the set's hosts share and consult first.  The code is in three
 * files: policy_set.c (loading a generation, policy_set.h), sandbox.c (the restricted
 * environment and its limits, sandbox.h) and lua_host.c (a worker's state, calls, memo).
 *
 * The sandbox (allow-list, as in Redis scripting): only the base, string, table, math and
 * utf8 libraries; no dofile/loadfile/warn; load() accepts text chunks only and defaults to
 * the sandbox's environment; string.dump is gone; collectgarbage only answers "count";
 * xpcall runs its handler after unwinding (so the budget hook can stop a looping handler);
 * setmetatable refuses __gc (so no policy code ever runs outside a budgeted call); print
 * goes to the log; require only loads gateway.* modules of the set (and "cachegw_helpers",
 * the `gw` table, see lua_helpers.h, and "cache", the cache module, see lua_cache.h, also
 * the global `cache`).  Globals and the library tables are read-only
 * proxies, and each policy file runs in its own environment, sealed after loading, so no
 * state leaks between files or requests through globals.  A custom lua_Alloc caps each
 * state at lua_limits.memory_bytes; a count hook caps each call at
 * lua_limits.instructions and lua_limits.time_ms of wall-clock time (it runs every 1000
 * instructions and reads the clock), and, once a call is over either, fires on every
 * instruction until the call returns, so a pcall inside the policy cannot swallow the
 * kill.  Work that runs in C is bounded too (issue 8, items 10 and 22): string.find,
 * match, gmatch and gsub are lua_pattern.h's step-budgeted matcher (16 steps cost one
 * instruction; the clock is read every 4096 steps); allocations of 64 KiB or more and
 * the O(n) table/utf8 functions read the clock.  Loading runs with ten times the per-call
 * instruction and time budgets (validation) and twenty times the time (a host's build of
 * an already-validated set), so slow top-level code fails the load with file:line.
 *
 * Failure: functions return 0 or a negative errno code.  A policy error at request time
 * (runtime error, instruction budget, memory limit) never propagates: the call returns -1,
 * the result says POLICY_BYPASS (or store = false), the error is logged as
 * "policy error in route 'X': file:line: msg" (rate-limited per host) and counted.  After
 * a memory error the host collects garbage and, if the state is still mostly full,
 * rebuilds it from its set.
 *
 * Ownership: policy_set_load returns one reference; policy_set_ref/unref count them
 * atomically and the last unref frees the set.  A lua_host holds a reference to its set
 * for its lifetime; lua_host_set borrows it (ref it to keep it).  Strings in
 * policy_decision and policy_verdict are malloc'd and owned by the struct until
 * policy_decision_free / policy_verdict_free, except `reason`, which is static.  Requests
 * and headers passed in are borrowed for the call only.
 *
 * Thread-safety: a policy_set is immutable after load and may be shared by any threads.
 * A lua_host is confined to one thread (policy_engine may build one on another thread and
 * hand it over under a mutex before its first call).  The counters are global atomics.
 */
#ifndef CACHEGW_LUA_HOST_H
#define CACHEGW_LUA_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "headers.h"         /* struct http_header */
#include "upstream_config.h" /* struct upstream_config */

/* Zero fields mean the defaults below. */
struct lua_limits {
    size_t memory_bytes; /* per lua_State; default LUA_HOST_DEFAULT_MEMORY */
    long instructions;   /* per call; default LUA_HOST_DEFAULT_INSTRUCTIONS */
    long time_ms;        /* wall clock per call; default LUA_HOST_DEFAULT_TIME_MS */
};
#define LUA_HOST_DEFAULT_MEMORY ((size_t)64 << 20)
#define LUA_HOST_DEFAULT_INSTRUCTIONS 1000000L
#define LUA_HOST_DEFAULT_TIME_MS 100L
#define LUA_HOST_MAX_FILE_BYTES ((size_t)1 << 20) /* per source file */

struct policy_set;
struct lua_host;

/*
 * Reads lua_dir/gateway/NAME.lua and policies_dir/NAME.lua, compiles and runs them in a fresh
 * sandbox under lim (NULL = defaults), and on success stores one reference in *out.
 * Errors: -EINVAL when a policy fails to compile or validate, with err holding exactly
 * "policies/users.lua:12: unknown field 'tll' in route 'GET /users/:id' (did you mean
 * 'ttl'?)"; -errno (with the path in err) when a directory or file can't be read;
 * -EFBIG for a file over LUA_HOST_MAX_FILE_BYTES; -ENOMEM.  File names in messages are
 * the directory as given plus the file name, with a leading "./" dropped.
 */
int policy_set_load(const char *policies_dir, const char *lua_dir, const struct lua_limits *lim,
                    struct policy_set **out, char *err, size_t err_len);
struct policy_set *policy_set_ref(struct policy_set *set);
void policy_set_unref(struct policy_set *set);
size_t policy_set_route_count(const struct policy_set *set);
size_t policy_set_file_count(const struct policy_set *set); /* policy files, not modules */
/* A process-unique, increasing number per loaded set. */
uint64_t policy_set_generation(const struct policy_set *set);
/* The upstreams the set's files declare (`upstream "name" { ... }`), in declaration order;
 * borrowed for the set's lifetime.  *n = 0 (and NULL) when there are none. */
const struct upstream_config *policy_set_upstreams(const struct policy_set *set, size_t *n);

/* One per worker thread: builds a state from an already-validated set (takes a reference
 * to it).  Errors: -ENOMEM, or -EINVAL with err (e.g. lim is smaller than at load). */
int lua_host_create(struct policy_set *set, const struct lua_limits *lim,
                    struct lua_host **out, char *err, size_t err_len);
void lua_host_destroy(struct lua_host *host);
struct policy_set *lua_host_set(struct lua_host *host); /* the generation it runs; borrowed */
/* Bytes the host's Lua state currently holds (for tests and /metrics). */
size_t lua_host_memory_used(const struct lua_host *host);
/* Decisions answered from the host's memo without running Lua (see lua_host_decide). */
uint64_t lua_host_memo_hits(const struct lua_host *host);
/* Decisions the set's route table made without running Lua (see lua_host_decide). */
uint64_t lua_host_table_decisions(const struct lua_host *host);
/* Whether the host's set has a route table (false: every decision runs in Lua). */
bool lua_host_has_route_table(const struct lua_host *host);
/* Writes the host's routes to stream (FILE *), one a line, for `cachegw --check --dump`:
 * the route's method and pattern, name, key template, ttl and stale windows, per_user,
 * tags, invalidations, and whether it is decided in C (the route table) or in Lua (it has
 * functions, or the set has no table), then where it is defined.  Returns 0, or -1 with
 * err filled.  Runs outside the request budgets: for start-up tools only. */
int lua_host_dump_routes(struct lua_host *host, void *stream, char *err, size_t err_len);

struct policy_request {
    const char *method;                /* "GET", ... */
    const char *path;                  /* raw path, no query, starts with '/' */
    const char *query;                 /* raw query string without '?', or NULL */
    const struct http_header *headers; /* names lower-case; repeats are joined */
    size_t n_headers;
    const char *client_ip; /* may be NULL */
};

enum policy_action {
    POLICY_DEFAULT,   /* no route matched: apply plain RFC 9111 shared-cache rules */
    POLICY_CACHE,     /* look up / store under key with the given ttl and windows */
    POLICY_BYPASS,    /* forward uncached; store nothing */
    POLICY_INVALIDATE /* forward; on a 2xx answer apply the invalidate targets */
};

struct policy_target {
    char *key;   /* exact key, or prefix when prefix is set, or tag when tag is set */
    bool prefix; /* drop every key starting with key */
    bool tag;    /* drop every entry stored with this tag */
};

struct policy_decision {
    enum policy_action action;
    /* POLICY_CACHE: the cache key.  POLICY_DEFAULT: the default key "GET:/path?query"
     * (for non-GET requests, the key a GET of the same URL has).  NULL otherwise. */
    char *key;
    /* Seconds from the policy, in ms; -1 = not set, let the upstream's headers decide.
     * An explicit ttl overrides the upstream's Cache-Control for storage, except that
     * no-store and Set-Cookie responses are still never stored unless ignore_no_store. */
    int64_t ttl_ms, swr_ms, sie_ms;
    bool per_user;          /* key derives from the credentials: private responses may be stored */
    bool ignore_no_store;   /* the route stores even no-store / Set-Cookie responses */
    bool has_response_hook; /* call lua_host_on_response before storing */
    int route_id;           /* 1-based route index in the set; 0 = no route matched */
    char *route;            /* route name, NULL when no route matched */
    char **tags;            /* tags to store the entry under */
    size_t n_tags;
    struct policy_target *invalidate; /* POLICY_INVALIDATE targets */
    size_t n_invalidate;
    /* Static: "route", "bypass", "credentials", "no_route", "no_key", "write",
     * "invalidate", "default", "policy_error", "unknown_host", "policy". */
    const char *reason;
    /* The route's upstream (`upstream = "users"`), NULL for UPSTREAM_URL (also when the
     * route says "default").  Looked up by name in the live upstream set (upstream_set.h). */
    char *upstream;
    bool idempotent; /* the route allows its writes to be retried on another instance */
    /* Non-zero: answer with this status without forwarding (404 for a Host no route
     * declares under unknown_host "reject"); action is POLICY_BYPASS then. */
    int reject_status;
    uint64_t generation; /* policy_set_generation of the set that decided */
};

/* Fills *out (always; free it with policy_decision_free).  Returns 0, or -1 on a policy
 * error: out->action = POLICY_BYPASS, reason "policy_error", logged and counted.
 * The set's route table (route_table.h, built when the set loads, shared by its hosts)
 * decides first, in C: unrouted requests and every route without functions (on_response
 * alone does not count).  Lua runs only for routes with functions, and for what the table
 * leaves to it (a query over 256 params, which Lua refuses).  Pure decisions Lua makes
 * are remembered (256 direct-mapped slots, inputs up to 512 bytes; in practice only when
 * the set has no table) and repeats are answered without entering Lua. */
int lua_host_decide(struct lua_host *host, const struct policy_request *req,
                    struct policy_decision *out);
/* The same decision made in Lua alone (no route table, no memo): the reference the
 * differential test (tests/unit/test_route_table.c) compares the table against. */
int lua_host_decide_lua(struct lua_host *host, const struct policy_request *req,
                        struct policy_decision *out);

/*
 * Decisions that wait for the cache module (lua_cache.h).  A policy's cache.get / cache.mget
 * that misses the memory tier while Redis is up suspends the decision instead of blocking:
 * the policy runs in a coroutine, the read yields, and lua_host_decide_async returns
 * -EINPROGRESS with *wait set.  The caller reads lua_host_wait_keys from Redis without
 * blocking (the keys are complete, namespaced cache keys), then, on the same thread,
 * calls lua_host_resume_decide with one value per key (data NULL for a miss).  That either
 * decides (0, or -1 on a policy error, as lua_host_decide; the wait is consumed) or
 * suspends again (-EINPROGRESS, the same wait now holding new keys).  A decision yields at
 * most LUA_HOST_MAX_YIELDS times; later misses read as nil.  The instruction budget counts
 * across yields (one budget per request); the memory limit is the state's.  A decision
 * that is abandoned is released with lua_host_wait_free.  If the host's Lua state is
 * rebuilt in between (after a memory error), the resume fails as a policy error.
 * Decisions are never memoised once they have waited.  lua_host_decide never suspends:
 * there a memory-tier miss reads as nil, as in lua_host_on_response.
 */
#define LUA_HOST_MAX_YIELDS 8
struct lua_host_wait;
struct lua_host_value {
    const char *data; /* NULL: not found */
    size_t len;
};
struct gateway;

/* Binds the host's cache module to gw (NULL: unbound, cache calls find nothing).  Cheap;
 * kept across state rebuilds. */
void lua_host_bind_gateway(struct lua_host *host, struct gateway *gw);
/* The host's cache module context (lua_cache.h), for tests; NULL while the state is down. */
struct lua_cache_ctx *lua_host_cache_ctx(struct lua_host *host);

int lua_host_decide_async(struct lua_host *host, const struct policy_request *req,
                          struct policy_decision *out, struct lua_host_wait **wait);
/* The keys a suspended decision waits for (borrowed, valid until the next resume/free). */
size_t lua_host_wait_keys(const struct lua_host_wait *wait, const char *const **keys);
int lua_host_resume_decide(struct lua_host *host, struct lua_host_wait *wait,
                           const struct lua_host_value *values, size_t n,
                           struct policy_decision *out);
void lua_host_wait_free(struct lua_host *host, struct lua_host_wait *wait);

struct policy_verdict {
    bool store;     /* false: never store this response */
    int64_t ttl_ms; /* -1 = keep the decision's ttl */
    char **tags;    /* replaces the decision's tags when non-NULL */
    size_t n_tags;
};

/* Runs the decided route's on_response(req, res) on the same host.  Without a hook:
 * store = true, ttl_ms = -1 and no call into Lua.  Returns 0; -1 on a policy error
 * (store = false, logged, counted); -ESTALE (store = false) when the decision came from
 * another generation than the host runs, so a request never mixes two policy sets. */
int lua_host_on_response(struct lua_host *host, const struct policy_decision *decision,
                         const struct policy_request *req, int status,
                         const struct http_header *headers, size_t n_headers,
                         struct policy_verdict *out);

void policy_decision_free(struct policy_decision *d);
void policy_verdict_free(struct policy_verdict *v);

/* Process-wide counters for /health/cache and /metrics. */
uint64_t lua_host_error_count(void);       /* every policy error at request time */
uint64_t lua_host_budget_kill_count(void); /* of which: instruction budget exceeded */
uint64_t lua_host_memory_kill_count(void); /* of which: memory limit hit */
/* Calls stopped by the wall-clock limit (also counted in lua_host_budget_kill_count). */
uint64_t lua_host_time_kill_count(void);

#endif
