/*
 * policy_engine - the active policy generation and each worker's Lua host.
 *
 * The main thread loads policies at start-up and on SIGHUP (policy_engine_reload):
 * every file is compiled and validated into a fresh set first; only if all pass
 * does the set become active, atomically.  A failed reload changes nothing and
 * reports file:line.
 *
 * Each generation's Lua states are built ahead, off the request path (issue 8 item 22;
 * docs/design.md, Threads): once policy_engine_set_workers() has said how many threads ask
 * for hosts, loading a generation (that call at start-up, and every reload before its swap)
 * builds one lua_host per such thread, each running the set's top-level code, on the
 * loading thread and one helper thread per further core.  They wait in a pool owned by the
 * generation; hosts no thread took are freed with it.
 *
 * Workers call policy_engine_acquire() at the start of a request.  It returns the calling
 * thread's Lua host; when a newer generation is active it first takes a host from that
 * generation's pool, or builds one itself if the pool is empty (more threads than
 * set_workers said; a state that failed to build ahead).  The request keeps its reference
 * until policy_engine_release(), so a request runs wholly under one generation
 * (docs/design.md, invariant 4) even if a reload lands while it waits on the network; the
 * old host is destroyed, on its own thread, when its last request ends.  A host built ahead
 * changes threads once, handed over under the engine's mutex before any call into it; after
 * that it stays on the thread that took it (invariant 3).
 *
 * Ownership: acquire returns a reference; release it on the same thread.  The
 * engine owns the pool.
 * Thread-safety: set_workers, reload and the status getters from any thread
 * (internally locked; set_workers and reload from one thread at a time, the main
 * thread does both); acquire/release are per worker thread.
 */
#ifndef CACHEGW_POLICY_ENGINE_H
#define CACHEGW_POLICY_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "lua_host.h"

struct policy_engine;
struct worker_policy;
struct upstream_registry;

/* The engine keeps reg (upstream_set.h) in step with the active generation: applies the
 * set's upstream declarations now and after every successful reload (in-flight requests
 * keep the groups they hold).  reg is borrowed and must outlive the engine's reloads. */
void policy_engine_set_upstreams(struct policy_engine *e, struct upstream_registry *reg);

/* Loads the policies (fails on invalid ones: start-up refuses them). */
int policy_engine_create(const char *policies_dir, const char *lua_dir,
                         const struct lua_limits *limits, struct policy_engine **out, char *err,
                         size_t err_len);
void policy_engine_destroy(struct policy_engine *e);

/* How many threads ask for hosts (the HTTP workers, WORKERS resolved, plus the admin
 * thread when it runs): builds that many states for the active generation now, and as
 * many for every reload.  0 (the default) builds none ahead.  Logs "policy generation N:
 * K of M Lua states built ahead in T ms"; a state that cannot be built is left to the
 * thread that needs it, with a warning. */
void policy_engine_set_workers(struct policy_engine *e, unsigned workers);

/* Compiles and validates everything anew, then builds the workers' states; swaps only on
 * success (a failed validation builds nothing).  Returns 0, or a negative errno with
 * err = "file:line: message".  Logs how long validating and building took. */
int policy_engine_reload(struct policy_engine *e, char *err, size_t err_len);

/* Worker thread: the host to decide this request with, or NULL when a host
 * cannot be built (the request is then served uncached). */
struct worker_policy *policy_engine_acquire(struct policy_engine *e);
struct lua_host *worker_policy_host(struct worker_policy *wp);
void policy_engine_release(struct worker_policy *wp);

struct policy_engine_status {
    uint64_t generation;
    uint64_t reloads;          /* successful reloads since start */
    uint64_t reload_failures;
    int64_t last_reload_ms;    /* wall clock of the last attempt, 0 = never */
    size_t routes;
    size_t files;
    char last_error[512];      /* empty when the last attempt succeeded */
};
void policy_engine_status(struct policy_engine *e, struct policy_engine_status *out);

#endif
