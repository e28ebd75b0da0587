/* policy_engine.c - see policy_engine.h. */
#include "policy_engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io_loop.h"
#include "log.h"
#include "metrics.h"
#include "upstream_set.h"

struct worker_policy {
    struct lua_host *host;
    uint64_t generation;
    int refs; /* touched only by the owning thread */
};

struct policy_engine {
    char *policies_dir;
    char *lua_dir;
    struct lua_limits limits;
    pthread_mutex_t lock; /* guards active and the status fields */
    struct policy_set *active;
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
     * key destructors when the threads exit. */
    policy_set_unref(e->active);
    pthread_key_delete(e->slot);
    pthread_mutex_destroy(&e->lock);
    free(e->policies_dir);
    free(e->lua_dir);
    free(e);
}

int policy_engine_reload(struct policy_engine *e, char *err, size_t err_len)
{
    int64_t t0 = clock_mono_ms();
    struct policy_set *fresh = NULL;
    int rc = policy_set_load(e->policies_dir, e->lua_dir, &e->limits, &fresh, err, err_len);
    /* Before the swap, so the new generation's requests find their upstreams; the
     * registry still answers for the previous generation's (upstream_registry_get). */
    if (rc == 0) engine_apply_upstreams(e, fresh);
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
    e->active = fresh;
    e->reloads++;
    e->last_error[0] = '\0';
    atomic_store(&e->generation, policy_set_generation(fresh));
    size_t routes = policy_set_route_count(fresh), files = policy_set_file_count(fresh);
    int64_t loaded_ms = e->last_reload_ms;
    pthread_mutex_unlock(&e->lock);
    metrics_policy_loaded(false, true, loaded_ms);
    policy_set_unref(old);
    LOG_I("policies reloaded: generation %llu, %zu routes in %zu files (%lld ms)",
          (unsigned long long)policy_set_generation(fresh), routes, files,
          (long long)(clock_mono_ms() - t0));
    return 0;
}

struct worker_policy *policy_engine_acquire(struct policy_engine *e)
{
    struct worker_policy *cur = pthread_getspecific(e->slot);
    uint64_t gen = atomic_load(&e->generation);
    if (cur == NULL || cur->generation != gen) {
        pthread_mutex_lock(&e->lock);
        struct policy_set *set = policy_set_ref(e->active);
        pthread_mutex_unlock(&e->lock);
        struct worker_policy *wp = calloc(1, sizeof *wp);
        char err[512];
        int rc = wp ? lua_host_create(set, &e->limits, &wp->host, err, sizeof err) : -ENOMEM;
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
