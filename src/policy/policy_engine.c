/* policy_engine.c - see policy_engine.h. */
#include "policy_engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_loop.h"
#include "log.h"
#include "metrics.h"
#include "upstream_set.h"

struct worker_policy {
    struct lua_host *host;
    uint64_t generation;
    int refs; /* touched only by the owning thread */
};

/* Lua states built ahead for one generation (docs/design.md, Threads): hosts no thread has
 * used yet, each taken whole by one worker.  Owned by the engine for the generation it was
 * built for; what is left when that generation goes is freed with it. */
struct host_pool {
    struct lua_host **hosts;
    size_t n;
};

struct policy_engine {
    char *policies_dir;
    char *lua_dir;
    struct lua_limits limits;
    unsigned workers;     /* states to build ahead per generation (policy_engine_set_workers) */
    pthread_mutex_t lock; /* guards active, pool and the status fields */
    struct policy_set *active;
    struct host_pool pool; /* built for active */
    atomic_uint_fast64_t generation;
    uint64_t reloads, reload_failures;
    int64_t last_reload_ms;
    char last_error[512];
    pthread_key_t slot; /* this thread's current worker_policy */
    struct upstream_registry *upstreams; /* kept in step with active, or NULL */
};

/* Applies set's upstream declarations to the registry (main thread). */
static void engine_apply_upstreams(struct policy_engine *e, struct policy_set *set)
{
    if (e->upstreams == NULL) return;
    size_t n = 0;
    const struct upstream_config *c = policy_set_upstreams(set, &n);
    if (upstream_registry_apply(e->upstreams, c, n) != 0)
        LOG_E("policy generation %llu: out of memory building its upstreams; the previous "
              "ones stay", (unsigned long long)policy_set_generation(set));
}

void policy_engine_set_upstreams(struct policy_engine *e, struct upstream_registry *reg)
{
    e->upstreams = reg;
    pthread_mutex_lock(&e->lock);
    struct policy_set *set = policy_set_ref(e->active);
    pthread_mutex_unlock(&e->lock);
    engine_apply_upstreams(e, set);
    policy_set_unref(set);
}

static void worker_policy_unref(struct worker_policy *wp)
{
    if (wp && --wp->refs == 0) {
        lua_host_destroy(wp->host);
        free(wp);
    }
}

/* Thread exit: drop the thread's own reference to its host. */
static void slot_destructor(void *p) { worker_policy_unref(p); }

/* Frees the hosts no worker took.  They were never used, so any thread may do it. */
static void pool_free(struct host_pool *pool)
{
    for (size_t i = 0; i < pool->n; i++) lua_host_destroy(pool->hosts[i]);
    free(pool->hosts);
    *pool = (struct host_pool){0};
}

/* Threads a pool build starts besides the loading thread, at most. */
#define POOL_MAX_HELPERS 63

/* One pool build: builder threads take the next index until all n are done. */
struct pool_build {
    struct policy_set *set;
    const struct lua_limits *lim;
    struct lua_host **hosts; /* n slots; NULL where a build failed */
    size_t n;
    atomic_size_t next;
};

static void *pool_build_run(void *arg)
{
    struct pool_build *b = arg;
    for (size_t i; (i = atomic_fetch_add(&b->next, 1)) < b->n;) {
        char err[512];
        int rc = lua_host_create(b->set, b->lim, &b->hosts[i], err, sizeof err);
        if (rc != 0)
            LOG_W("policy generation %llu: cannot build a Lua state ahead (%s); "
                  "the thread that needs it builds it on its first request",
                  (unsigned long long)policy_set_generation(b->set),
                  rc == -ENOMEM ? "out of memory" : err);
    }
    return NULL;
}

/*
 * Builds n Lua states for set into *pool, off the request path (docs/design.md,
 * Threads): on the calling thread and up to one more thread per further core, since each
 * build runs the set's top-level code once and 20x the per-call time limit bounds it --
 * more builders than cores would stretch their wall time towards that bound.  A state that
 * cannot be built is left out: its worker builds one lazily, as without a pool.  Returns
 * how long it took (ms).
 */
static int64_t pool_build(struct policy_engine *e, struct policy_set *set, unsigned n,
                          struct host_pool *pool)
{
    int64_t t0 = clock_mono_ms();
    *pool = (struct host_pool){0};
    if (n == 0) return 0;
    struct pool_build b = {.set = set, .lim = &e->limits, .n = n};
    b.hosts = calloc(b.n, sizeof *b.hosts);
    if (b.hosts == NULL) {
        LOG_W("policy generation %llu: out of memory building the workers' Lua states ahead; "
              "each worker builds its own on its first request",
              (unsigned long long)policy_set_generation(set));
        return clock_mono_ms() - t0;
    }
    atomic_init(&b.next, 0);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t extra = cores > 1 ? (size_t)cores - 1 : 0;
    if (extra > b.n - 1) extra = b.n - 1;
    if (extra > POOL_MAX_HELPERS) extra = POOL_MAX_HELPERS;
    pthread_t tids[POOL_MAX_HELPERS];
    size_t started = 0;
    while (started < extra && pthread_create(&tids[started], NULL, pool_build_run, &b) == 0)
        started++;
    pool_build_run(&b); /* and this thread, which also covers failed pthread_creates */
    for (size_t i = 0; i < started; i++) pthread_join(tids[i], NULL);
    for (size_t i = 0; i < b.n; i++)
        if (b.hosts[i] != NULL) b.hosts[pool->n++] = b.hosts[i];
    pool->hosts = b.hosts;
    return clock_mono_ms() - t0;
}

int policy_engine_create(const char *policies_dir, const char *lua_dir,
                         const struct lua_limits *limits, struct policy_engine **out, char *err,
                         size_t err_len)
{
    struct policy_engine *e = calloc(1, sizeof *e);
    if (e == NULL) return -ENOMEM;
    e->policies_dir = strdup(policies_dir);
    e->lua_dir = strdup(lua_dir);
    e->limits = *limits;
    pthread_mutex_init(&e->lock, NULL);
    if (e->policies_dir == NULL || e->lua_dir == NULL ||
        pthread_key_create(&e->slot, slot_destructor) != 0) {
        free(e->policies_dir);
        free(e->lua_dir);
        free(e);
        return -ENOMEM;
    }
    int rc = policy_set_load(policies_dir, lua_dir, &e->limits, &e->active, err, err_len);
    if (rc != 0) {
        pthread_key_delete(e->slot);
        free(e->policies_dir);
        free(e->lua_dir);
        free(e);
        return rc;
    }
    atomic_store(&e->generation, policy_set_generation(e->active));
    e->last_reload_ms = clock_wall_ms();
    metrics_policy_loaded(true, true, e->last_reload_ms);
    *out = e;
    return 0;
}

void policy_engine_destroy(struct policy_engine *e)
{
    if (e == NULL) return;
    /* Hosts still referenced by worker threads are freed by their threads'
     * key destructors when the threads exit; those none took go here. */
    pool_free(&e->pool);
    policy_set_unref(e->active);
    pthread_key_delete(e->slot);
    pthread_mutex_destroy(&e->lock);
    free(e->policies_dir);
    free(e->lua_dir);
    free(e);
}

void policy_engine_set_workers(struct policy_engine *e, unsigned workers)
{
    pthread_mutex_lock(&e->lock);
    struct policy_set *set = policy_set_ref(e->active);
    struct host_pool old = e->pool;
    e->pool = (struct host_pool){0};
    e->workers = workers;
    pthread_mutex_unlock(&e->lock);
    pool_free(&old);
    struct host_pool pool;
    int64_t ms = pool_build(e, set, workers, &pool);
    size_t built = pool.n;
    pthread_mutex_lock(&e->lock);
    if (e->active == set) {
        e->pool = pool;
        pool = (struct host_pool){0};
    }
    pthread_mutex_unlock(&e->lock);
    pool_free(&pool); /* a reload landed meanwhile: these are for an old generation */
    if (workers > 0)
        LOG_I("policy generation %llu: %zu of %u Lua states built ahead in %lld ms",
              (unsigned long long)policy_set_generation(set), built, workers, (long long)ms);
    policy_set_unref(set);
}

int policy_engine_reload(struct policy_engine *e, char *err, size_t err_len)
{
    int64_t t0 = clock_mono_ms();
    pthread_mutex_lock(&e->lock);
    unsigned workers = e->workers;
    pthread_mutex_unlock(&e->lock);
    struct policy_set *fresh = NULL;
    int rc = policy_set_load(e->policies_dir, e->lua_dir, &e->limits, &fresh, err, err_len);
    int64_t validated_ms = clock_mono_ms() - t0;
    /* Before the swap, so the new generation's requests find their upstreams; the
     * registry still answers for the previous generation's (upstream_registry_get). */
    if (rc == 0) engine_apply_upstreams(e, fresh);
    /* The workers' states too, so no request after the swap runs the top-level code
     * (issue 8 item 22).  A failed load builds nothing. */
    struct host_pool pool = {0};
    int64_t built_ms = rc == 0 ? pool_build(e, fresh, workers, &pool) : 0;
    pthread_mutex_lock(&e->lock);
    e->last_reload_ms = clock_wall_ms();
    if (rc != 0) {
        e->reload_failures++;
        snprintf(e->last_error, sizeof e->last_error, "%s", err);
        pthread_mutex_unlock(&e->lock);
        metrics_policy_loaded(false, false, 0);
        return rc;
    }
    struct policy_set *old = e->active;
    struct host_pool old_pool = e->pool;
    e->active = fresh;
    e->pool = pool;
    size_t prebuilt = pool.n;
    e->reloads++;
    e->last_error[0] = '\0';
    atomic_store(&e->generation, policy_set_generation(fresh));
    size_t routes = policy_set_route_count(fresh), files = policy_set_file_count(fresh);
    int64_t loaded_ms = e->last_reload_ms;
    pthread_mutex_unlock(&e->lock);
    metrics_policy_loaded(false, true, loaded_ms);
    pool_free(&old_pool);
    policy_set_unref(old);
    LOG_I("policies reloaded: generation %llu, %zu routes in %zu files (%lld ms: validated in "
          "%lld ms, %zu of %u Lua states built ahead in %lld ms)",
          (unsigned long long)policy_set_generation(fresh), routes, files,
          (long long)(clock_mono_ms() - t0), (long long)validated_ms, prebuilt, workers,
          (long long)built_ms);
    return 0;
}

struct worker_policy *policy_engine_acquire(struct policy_engine *e)
{
    struct worker_policy *cur = pthread_getspecific(e->slot);
    uint64_t gen = atomic_load(&e->generation);
    if (cur == NULL || cur->generation != gen) {
        struct worker_policy *wp = calloc(1, sizeof *wp);
        struct lua_host *ready = NULL;
        pthread_mutex_lock(&e->lock);
        struct policy_set *set = policy_set_ref(e->active);
        /* A state built ahead for this generation, if one is left; the mutex hands it
         * over: it was built on the loading thread and is this thread's alone from now. */
        if (wp != NULL && e->pool.n > 0) ready = e->pool.hosts[--e->pool.n];
        pthread_mutex_unlock(&e->lock);
        char err[512];
        int rc = wp == NULL ? -ENOMEM : 0;
        if (ready != NULL)
            wp->host = ready;
        else if (rc == 0)
            rc = lua_host_create(set, &e->limits, &wp->host, err, sizeof err);
        uint64_t set_gen = policy_set_generation(set);
        policy_set_unref(set);
        if (rc != 0) {
            LOG_E("cannot build a Lua state for policy generation %llu: %s",
                  (unsigned long long)set_gen, rc == -ENOMEM ? "out of memory" : err);
            free(wp);
            if (cur == NULL) return NULL;
            /* Keep serving with the previous generation rather than uncached. */
        } else {
            wp->generation = set_gen;
            wp->refs = 1; /* the thread's slot */
            pthread_setspecific(e->slot, wp);
            worker_policy_unref(cur);
            cur = wp;
        }
    }
    cur->refs++;
    return cur;
}

struct lua_host *worker_policy_host(struct worker_policy *wp) { return wp->host; }

void policy_engine_release(struct worker_policy *wp) { worker_policy_unref(wp); }

void policy_engine_status(struct policy_engine *e, struct policy_engine_status *out)
{
    pthread_mutex_lock(&e->lock);
    out->generation = policy_set_generation(e->active);
    out->reloads = e->reloads;
    out->reload_failures = e->reload_failures;
    out->last_reload_ms = e->last_reload_ms;
    out->routes = policy_set_route_count(e->active);
    out->files = policy_set_file_count(e->active);
    snprintf(out->last_error, sizeof out->last_error, "%s", e->last_error);
    pthread_mutex_unlock(&e->lock);
}
