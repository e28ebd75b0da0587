/* lua_host.c - see lua_host.h: a worker's Lua state (built from a policy_set, policy_set.h,
 * in a sandbox, sandbox.h), its per-request calls and its decision memo. */
#include "lua_host.h"

#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "hash.h"
#include "log.h"
#include "lua_cache.h"
#include "policy_set.h"
#include "route_table.h"
#include "sandbox.h"

/* After a memory error, rebuild the state if a full collection leaves it this full. */
#define REBUILD_NUM 3
#define REBUILD_DEN 4
/* Per host, at most this many policy-error lines per second; the rest are counted. */
#define ERROR_LOGS_PER_SECOND 5
/* Decision memo per host: direct-mapped slots, inputs (method, path, query) up to this
 * many bytes, so at most about MEMO_SLOTS * (MEMO_MAX_INPUT + key) bytes per host.  The
 * route table (route_table.h) decides every pure route in C, so the memo only sees what
 * the table leaves to Lua: routes with functions (never pure, never remembered) and a set
 * whose table could not be built.  A small memo covers the latter's hot URLs. */
#define MEMO_SLOTS 256
#define MEMO_MAX_INPUT 512

static atomic_uint_fast64_t error_count_;
static atomic_uint_fast64_t budget_kills_;
static atomic_uint_fast64_t memory_kills_;

/*
 * A remembered pure decision (see decide_raw in gateway/policy.lua): one that the same
 * method, path, query string and presence of credentials always produce.  The host runs
 * one immutable generation, so an entry never goes stale; it is only ever replaced.
 */
struct memo_entry {
    char *input; /* NULL: empty slot.  method NUL path NUL query NUL credentials-flag */
    size_t input_len;
    uint64_t hash;
    enum policy_action action;
    char *key;
    int route_id;
    const char *reason;
};

struct lua_host {
    struct sandbox sb;
    struct policy_set *set;
    struct lua_limits lim;
    struct lua_cache_ctx *cache; /* the state's cache module context */
    struct gateway *gw;          /* what the cache module is bound to, or NULL */
    /* Bumped whenever the state is replaced: suspended decisions of an older state are
     * dead (their coroutines went with it). */
    uint64_t epoch;
    lua_State *spare; /* a finished decide coroutine kept for reuse, or NULL */
    int spare_ref;
    int ref_set, ref_decide, ref_on_response;
    struct policy_route_info *routes; /* set->route_count entries */
    struct memo_entry *memo;   /* MEMO_SLOTS entries, allocated on first use */
    uint64_t memo_hits;
    uint64_t table_decisions; /* decided by the set's route table, without Lua */
    time_t log_second;
    unsigned logs_this_second;
    uint64_t logs_suppressed;
};

static int host_build(struct lua_host *h, char *err, size_t err_len)
{
    int rc = sandbox_open(&h->sb, h->set->modules, h->set->n_modules, &h->lim, err, err_len);
    if (rc != 0) return rc;
    struct policy_load_ctx c = {.set = h->set, .want_refs = true};
    rc = policy_set_run(&h->sb, &h->lim, &c, POLICY_SET_BUILD_TIME_FACTOR, err, err_len);
    if (rc == 0 && c.route_count != h->set->route_count) {
        snprintf(err, err_len, "policies loaded %zu routes, expected %zu", c.route_count,
                 h->set->route_count);
        rc = -EINVAL;
    }
    if (rc != 0) {
        policy_route_infos_free(c.routes, c.route_count);
        sandbox_close(&h->sb);
        return rc;
    }
    policy_route_infos_free(h->routes, h->set->route_count); /* from before a rebuild */
    h->routes = c.routes;
    h->cache = lua_cache_ctx_of(h->sb.L);
    if (h->cache != NULL) h->cache->gw = h->gw;
    h->spare = NULL;
    h->ref_set = c.ref_set;
    h->ref_decide = c.ref_decide;
    h->ref_on_response = c.ref_on_response;
    return 0;
}

int lua_host_create(struct policy_set *set, const struct lua_limits *lim, struct lua_host **out,
                    char *err, size_t err_len)
{
    *out = NULL;
    if (err_len > 0) err[0] = '\0';
    struct lua_host *h = calloc(1, sizeof *h);
    if (h == NULL) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    h->set = policy_set_ref(set);
    h->lim = policy_limits_or_default(lim);
    int rc = host_build(h, err, err_len);
    if (rc != 0) {
        policy_set_unref(h->set);
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

void lua_host_destroy(struct lua_host *h)
{
    if (h == NULL) return;
    sandbox_close(&h->sb);
    policy_route_infos_free(h->routes, h->set->route_count);
    for (size_t i = 0; h->memo != NULL && i < MEMO_SLOTS; i++) {
        free(h->memo[i].input);
        free(h->memo[i].key);
    }
    free(h->memo);
    policy_set_unref(h->set);
    free(h);
}

struct policy_set *lua_host_set(struct lua_host *h) { return h->set; }

size_t lua_host_memory_used(const struct lua_host *h) { return h->sb.L ? h->sb.mem_used : 0; }

/* ---- per-request calls ------------------------------------------------------------------ */

static void push_headers(lua_State *L, const struct http_header *hs, size_t n)
{
    lua_createtable(L, 0, n > INT_MAX ? INT_MAX : (int)n);
    int t = lua_gettop(L);
    char lower[128];
    for (size_t i = 0; i < n; i++) {
        const char *name = hs[i].name, *value = hs[i].value;
        if (name == NULL || value == NULL) continue;
        size_t len = strlen(name);
        bool needs_lower = false;
        for (size_t k = 0; k < len; k++)
            if (name[k] >= 'A' && name[k] <= 'Z') needs_lower = true;
        if (needs_lower) {
            if (len >= sizeof lower) continue; /* no real header name is this long */
            for (size_t k = 0; k <= len; k++)
                lower[k] = (name[k] >= 'A' && name[k] <= 'Z') ? (char)(name[k] + 32) : name[k];
            name = lower;
        }
        if (lua_getfield(L, t, name) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushstring(L, value);
        } else {
            lua_pushstring(L, strcmp(name, "cookie") == 0 ? "; " : ", ");
            lua_pushstring(L, value);
            lua_concat(L, 3);
        }
        lua_setfield(L, t, name);
    }
}

/* Pushes s with control characters percent-encoded: paths and queries go into cache keys
 * as they are, so they must never carry raw control bytes (see gateway/keys.lua). */
static void push_clean(lua_State *L, const char *s)
{
    const char *p = s;
    while (*p && (unsigned char)*p >= 0x20 && *p != 0x7f) p++;
    if (*p == '\0') {
        lua_pushlstring(L, s, (size_t)(p - s));
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f) {
            char esc[4];
            snprintf(esc, sizeof esc, "%%%02X", c);
            luaL_addlstring(&b, esc, 3);
        } else {
            luaL_addchar(&b, (char)c);
        }
    }
    luaL_pushresult(&b);
}

static void push_request(lua_State *L, const struct policy_request *r)
{
    lua_createtable(L, 0, 8);
    lua_pushstring(L, r->method ? r->method : "GET");
    lua_setfield(L, -2, "method");
    push_clean(L, r->path ? r->path : "/");
    lua_setfield(L, -2, "path");
    if (r->query != NULL && r->query[0] != '\0') {
        push_clean(L, r->query);
        lua_setfield(L, -2, "query_string");
    }
    if (r->client_ip != NULL) {
        lua_pushstring(L, r->client_ip);
        lua_setfield(L, -2, "client_ip");
    }
    push_headers(L, r->headers, r->n_headers);
    lua_setfield(L, -2, "header");
}

static char *dup_or_raise(lua_State *L, const char *s)
{
    char *d = strdup(s);
    if (d == NULL) luaL_error(L, "out of memory");
    return d;
}

/* Reads an array of strings at t[name] into *out / *n (NULL, 0 when absent). */
static void string_list_field(lua_State *L, int t, const char *name, char ***out, size_t *n)
{
    if (lua_getfield(L, t, name) == LUA_TTABLE) {
        size_t len = (size_t)luaL_len(L, -1);
        if (len > 0) {
            *out = calloc(len, sizeof **out);
            if (*out == NULL) luaL_error(L, "out of memory");
            for (size_t i = 0; i < len; i++) {
                if (lua_geti(L, -1, (lua_Integer)i + 1) == LUA_TSTRING) {
                    (*out)[*n] = dup_or_raise(L, lua_tostring(L, -1));
                    (*n)++;
                }
                lua_pop(L, 1);
            }
        }
    }
    lua_pop(L, 1);
}

static const char *static_reason(const char *r)
{
    static const char *const known[] = {"route",   "bypass",     "credentials", "no_route",
                                        "no_key",  "write",      "invalidate",  "default",
                                        "policy_error", "unknown_host", NULL};
    for (const char *const *k = known; r != NULL && *k; k++)
        if (strcmp(*k, r) == 0) return *k;
    return "policy";
}

/* A decision suspended on cache reads: its coroutine and the keys it waits for. */
struct lua_host_wait {
    lua_State *co;
    int ref;        /* the coroutine's registry reference */
    uint64_t epoch; /* the host's epoch when it started */
    int yields;     /* yields so far (at most LUA_HOST_MAX_YIELDS) */
    int64_t instr_left;   /* of the request's instruction budget */
    int64_t time_left_ns; /* of the request's wall-clock budget (waits do not count) */
    char **keys;
    size_t n_keys;
};

/* One step of a decision: start (req set) or resume (values) its coroutine. */
struct decide_ctx {
    struct lua_host *h;
    const struct policy_request *req;   /* start */
    const struct lua_host_value *vals;  /* resume: one per waited key */
    size_t n_vals;
    struct lua_host_wait *w;
    struct policy_decision *out;
    bool allow_yield;
    bool pure;     /* the decision may be memoised */
    bool yielded;  /* the coroutine is suspended on w->keys */
    int co_status; /* what lua_resume said */
};

/* Copies what is static per route into *out.  Returns false when out of memory. */
static bool fill_route(const struct lua_host *h, lua_Integer id, struct policy_decision *out)
{
    if (id < 1 || (size_t)id > h->set->route_count) return true;
    const struct policy_route_info *ri = &h->routes[id - 1];
    out->route_id = (int)id;
    out->route = strdup(ri->name);
    if (out->route == NULL) return false;
    out->per_user = ri->per_user;
    out->has_response_hook = ri->has_hook;
    out->ignore_no_store = ri->ignore_no_store;
    out->idempotent = ri->idempotent;
    if (ri->upstream != NULL && strcmp(ri->upstream, UPSTREAM_DEFAULT_NAME) != 0 &&
        (out->upstream = strdup(ri->upstream)) == NULL)
        return false;
    if (out->action == POLICY_CACHE) {
        out->ttl_ms = ri->ttl_ms;
        out->swr_ms = ri->swr_ms;
        out->sie_ms = ri->sie_ms;
    }
    return true;
}

static void free_keys(struct lua_host_wait *w)
{
    for (size_t i = 0; i < w->n_keys; i++) free(w->keys[i]);
    free(w->keys);
    w->keys = NULL;
    w->n_keys = 0;
}

/* Copies the keys a cache read yielded (LUA_CACHE_YIELD_MARK, key...) into w. */
static void take_yielded_keys(lua_State *L, lua_State *co, int nres, struct lua_host_wait *w)
{
    if (nres < 2 || lua_touserdata(co, -nres) != (void *)LUA_CACHE_YIELD_MARK)
        luaL_error(L, "policy yielded outside a cache read");
    w->keys = calloc((size_t)nres - 1, sizeof *w->keys);
    if (w->keys == NULL) luaL_error(L, "out of memory");
    for (int i = 1; i < nres; i++) {
        const char *k = lua_tostring(co, -nres + i);
        if (k == NULL || (w->keys[w->n_keys] = strdup(k)) == NULL)
            luaL_error(L, "out of memory");
        w->n_keys++;
    }
}

static int decide_fill(lua_State *L, struct decide_ctx *c, int base);

/*
 * Everything that touches Lua runs in here, under lua_pcall: Lua may raise anywhere.
 * The policy itself runs in a coroutine (so a cache read can suspend it: lua_cache.h) with
 * the budget hook set on the coroutine; its count carries over from one resume to the next,
 * so the instruction budget is per request, across yields.  Values are pushed on L and
 * moved over, because nothing may raise on a coroutine that is not running.  Strings are
 * copied straight into *out, which the caller frees on error.
 */
static int decide_tramp(lua_State *L)
{
    struct decide_ctx *c = lua_touserdata(L, 1);
    struct lua_host *h = c->h;
    struct lua_host_wait *w = c->w;
    int nargs;
    if (c->req != NULL) {
        if (h->spare != NULL) {
            w->co = h->spare;
            w->ref = h->spare_ref;
            h->spare = NULL;
        } else {
            lua_State *co = lua_newthread(L);
            w->ref = luaL_ref(L, LUA_REGISTRYINDEX);
            w->co = co;
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref_decide);
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref_set);
        push_request(L, c->req);
        if (!lua_checkstack(w->co, 3)) return luaL_error(L, "out of memory");
        lua_xmove(L, w->co, 3);
        sandbox_hook_thread(&h->sb, w->co);
        nargs = 2;
    } else {
        for (size_t i = 0; i < c->n_vals; i++) {
            luaL_checkstack(L, 1, "resume values");
            if (c->vals[i].data != NULL) lua_pushlstring(L, c->vals[i].data, c->vals[i].len);
            else lua_pushnil(L);
        }
        if (!lua_checkstack(w->co, (int)c->n_vals)) return luaL_error(L, "out of memory");
        lua_xmove(L, w->co, (int)c->n_vals);
        nargs = (int)c->n_vals;
    }
    if (h->cache != NULL) {
        h->cache->allow_yield = c->allow_yield;
        h->cache->yields_left = LUA_HOST_MAX_YIELDS - w->yields;
    }
    int nres = 0;
    h->sb.running = w->co;
    int st = lua_resume(w->co, L, nargs, &nres);
    h->sb.running = NULL;
    if (h->cache != NULL) h->cache->allow_yield = false;
    c->co_status = st;
    if (st == LUA_YIELD) {
        take_yielded_keys(L, w->co, nres, w);
        lua_pop(w->co, nres);
        w->yields++;
        c->yielded = true;
        return 0;
    }
    if (st != LUA_OK) {
        const char *msg = lua_tostring(w->co, -1);
        if (msg == NULL) msg = "(error object is not a string)";
        luaL_traceback(L, w->co, msg, 0);
        return lua_error(L);
    }
    /* action, key, route_id, reason, list, pure */
    if (!lua_checkstack(L, nres + 6)) return luaL_error(L, "out of memory");
    int base = lua_gettop(L) + 1;
    lua_xmove(w->co, L, nres);
    lua_settop(L, base + 5);
    return decide_fill(L, c, base);
}

/* Reads a finished decide_raw's results (at base .. base + 5) into *out. */
static int decide_fill(lua_State *L, struct decide_ctx *c, int base)
{
    struct policy_decision *out = c->out;
    c->pure = lua_toboolean(L, base + 5);

    const char *action = lua_tostring(L, base);
    if (action == NULL) return luaL_error(L, "policy decision has no action");
    if (strcmp(action, "cache") == 0)
        out->action = POLICY_CACHE;
    else if (strcmp(action, "bypass") == 0)
        out->action = POLICY_BYPASS;
    else if (strcmp(action, "invalidate") == 0)
        out->action = POLICY_INVALIDATE;
    else if (strcmp(action, "default") == 0)
        out->action = POLICY_DEFAULT;
    else if (strcmp(action, "reject") == 0) {
        out->action = POLICY_BYPASS;
        out->reject_status = 404;
    }
    else
        return luaL_error(L, "policy decision has an unknown action '%s'", action);
    if (lua_type(L, base + 1) == LUA_TSTRING && out->action != POLICY_BYPASS)
        out->key = dup_or_raise(L, lua_tostring(L, base + 1));
    lua_Integer id = lua_tointeger(L, base + 2);
    out->reason = static_reason(lua_tostring(L, base + 3));
    if (!fill_route(c->h, id, out)) return luaL_error(L, "out of memory");
    if (lua_type(L, base + 4) != LUA_TTABLE) return 0;
    int list = base + 4;
    size_t len = (size_t)luaL_len(L, list);
    if (len == 0) return 0;
    if (out->action == POLICY_CACHE) {
        out->tags = calloc(len, sizeof *out->tags);
        if (out->tags == NULL) return luaL_error(L, "out of memory");
        for (size_t i = 0; i < len; i++) {
            if (lua_geti(L, list, (lua_Integer)i + 1) == LUA_TSTRING)
                out->tags[out->n_tags++] = dup_or_raise(L, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    } else if (out->action == POLICY_INVALIDATE) {
        out->invalidate = calloc(len, sizeof *out->invalidate);
        if (out->invalidate == NULL) return luaL_error(L, "out of memory");
        for (size_t i = 0; i < len; i++) {
            if (lua_geti(L, list, (lua_Integer)i + 1) == LUA_TTABLE) {
                int e = lua_gettop(L);
                if (lua_getfield(L, e, "key") == LUA_TSTRING) {
                    struct policy_target *tg = &out->invalidate[out->n_invalidate];
                    tg->key = dup_or_raise(L, lua_tostring(L, -1));
                    out->n_invalidate++;
                    tg->prefix = sandbox_bool_field(L, e, "prefix");
                    tg->tag = sandbox_bool_field(L, e, "tag");
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
    }
    return 0;
}

struct current_ctx {
    struct lua_host *h;
    char *buf;
    size_t len;
};

static int current_tramp(lua_State *L)
{
    struct current_ctx *c = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->h->ref_set);
    if (lua_getfield(L, -1, "current") == LUA_TSTRING)
        snprintf(c->buf, c->len, "%s", lua_tostring(L, -1));
    return 0;
}

static void rebuild(struct lua_host *h)
{
    char err[512];
    sandbox_close(&h->sb);
    h->epoch++;
    h->cache = NULL;
    h->spare = NULL;
    if (host_build(h, err, sizeof err) != 0)
        LOG_E("policy: cannot rebuild the Lua state: %s (will retry)", err);
    else
        LOG_W("policy: Lua state rebuilt after running out of memory");
}

/* Counts, logs (rate-limited) and recovers after a failed call. */
static void policy_failed(struct lua_host *h, enum sandbox_result r, const char *msg)
{
    atomic_fetch_add(&error_count_, 1);
    if (r == SANDBOX_BUDGET) atomic_fetch_add(&budget_kills_, 1);
    if (r == SANDBOX_MEMORY) atomic_fetch_add(&memory_kills_, 1);

    /* The garbage of a call that ran out of memory is collectable now.  No finalizer can
     * run (setmetatable refuses __gc), so this executes no policy code. */
    if (r == SANDBOX_MEMORY) lua_gc(h->sb.L, LUA_GCCOLLECT, 0);

    char route[256] = "";
    struct current_ctx c = {h, route, sizeof route};
    char ignored[8];
    sandbox_call(&h->sb, current_tramp, &c, sandbox_budget_of(1000, h->lim.time_ms), ignored,
                 sizeof ignored);

    time_t now = time(NULL);
    if (now != h->log_second) {
        if (h->logs_suppressed > 0)
            LOG_W("policy: %llu more policy errors were not logged",
                  (unsigned long long)h->logs_suppressed);
        h->log_second = now;
        h->logs_this_second = 0;
        h->logs_suppressed = 0;
    }
    if (h->logs_this_second < ERROR_LOGS_PER_SECOND) {
        h->logs_this_second++;
        if (route[0])
            LOG_W("policy error in route '%s': %s", route, msg);
        else
            LOG_W("policy error: %s", msg);
    } else {
        h->logs_suppressed++;
    }

    /* If live data still fills the state (a policy keeping state in upvalues), start over
     * from the set rather than failing every later request. */
    if (r == SANDBOX_MEMORY && h->sb.mem_used > h->sb.mem_limit / REBUILD_DEN * REBUILD_NUM)
        rebuild(h);
}

static void decision_init(struct policy_decision *d, uint64_t generation)
{
    memset(d, 0, sizeof *d);
    d->ttl_ms = d->swr_ms = d->sie_ms = -1;
    d->reason = "policy_error";
    d->action = POLICY_BYPASS;
    d->generation = generation;
}

/* Appends s and a NUL to buf (n bytes used); false when it would not fit. */
static bool memo_add(char *buf, size_t *n, const char *s)
{
    size_t l = strlen(s);
    if (*n + l + 2 > MEMO_MAX_INPUT) return false;
    memcpy(buf + *n, s, l + 1);
    *n += l + 1;
    return true;
}

/* The memo's key: method NUL path NUL query NUL, then, when the set routes on Host, every
 * Host value NUL, and '1' when an Authorization or a non-empty Cookie header is present.
 * Returns false when the input is too long to remember. */
static bool memo_input(const struct policy_request *r, bool hosts, char *buf, size_t *len,
                       uint64_t *hash)
{
    size_t n = 0;
    if (!memo_add(buf, &n, r->method ? r->method : "GET") ||
        !memo_add(buf, &n, r->path ? r->path : "/") || !memo_add(buf, &n, r->query ? r->query : ""))
        return false;
    char creds = '0';
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct http_header *hd = &r->headers[i];
        if (hd->name == NULL || hd->value == NULL) continue;
        if (hosts && strcasecmp(hd->name, "host") == 0 && !memo_add(buf, &n, hd->value))
            return false;
        /* As has_credentials in gateway/policy.lua: an empty Authorization counts (as in
         * the C rules), an empty Cookie does not. */
        if (strcasecmp(hd->name, "authorization") == 0 ||
            (hd->value[0] != '\0' && strcasecmp(hd->name, "cookie") == 0))
            creds = '1';
    }
    buf[n++] = creds;
    *len = n;
    *hash = hash_bytes(buf, n); /* keyed: the input is client-chosen (hash.h) */
    return true;
}

static bool memo_lookup(struct lua_host *h, const char *in, size_t len, uint64_t hash,
                        struct policy_decision *out)
{
    if (h->memo == NULL) return false;
    const struct memo_entry *e = &h->memo[hash & (MEMO_SLOTS - 1)];
    if (e->input == NULL || e->hash != hash || e->input_len != len ||
        memcmp(e->input, in, len) != 0)
        return false;
    out->action = e->action;
    out->reason = e->reason;
    if (strcmp(e->reason, "unknown_host") == 0) out->reject_status = 404;
    if (e->key != NULL && (out->key = strdup(e->key)) == NULL) goto nomem;
    if (!fill_route(h, e->route_id, out)) goto nomem;
    h->memo_hits++;
    return true;
nomem:
    policy_decision_free(out);
    decision_init(out, h->set->generation);
    return false;
}

static void memo_store(struct lua_host *h, const char *in, size_t len, uint64_t hash,
                       const struct policy_decision *d)
{
    if (d->n_tags > 0 || d->n_invalidate > 0) return; /* rare; not worth the copying */
    if (h->memo == NULL && (h->memo = calloc(MEMO_SLOTS, sizeof *h->memo)) == NULL) return;
    struct memo_entry *e = &h->memo[hash & (MEMO_SLOTS - 1)];
    char *input = malloc(len);
    char *key = d->key ? strdup(d->key) : NULL;
    if (input == NULL || (d->key != NULL && key == NULL)) {
        free(input);
        free(key);
        return;
    }
    memcpy(input, in, len);
    free(e->input);
    free(e->key);
    *e = (struct memo_entry){.input = input, .input_len = len, .hash = hash,
                             .action = d->action, .key = key, .route_id = d->route_id,
                             .reason = d->reason};
}

uint64_t lua_host_memo_hits(const struct lua_host *h) { return h->memo_hits; }
uint64_t lua_host_table_decisions(const struct lua_host *h) { return h->table_decisions; }

void lua_host_bind_gateway(struct lua_host *h, struct gateway *gw)
{
    h->gw = gw;
    if (h->cache != NULL) h->cache->gw = gw;
}

struct lua_cache_ctx *lua_host_cache_ctx(struct lua_host *h) { return h->cache; }

/* Lets go of a coroutine: kept as the spare when it finished cleanly, else unreferenced. */
static void drop_coroutine(struct lua_host *h, struct lua_host_wait *w, bool reusable)
{
    if (w->co == NULL || w->epoch != h->epoch || h->sb.L == NULL) return;
    if (reusable && h->spare == NULL && lua_status(w->co) == LUA_OK) {
        lua_settop(w->co, 0);
        h->spare = w->co;
        h->spare_ref = w->ref;
    } else {
        luaL_unref(h->sb.L, LUA_REGISTRYINDEX, w->ref);
    }
    w->co = NULL;
}

static void wait_free(struct lua_host *h, struct lua_host_wait *w, bool reusable)
{
    if (w == NULL) return;
    drop_coroutine(h, w, reusable);
    free_keys(w);
    free(w);
}

/* Runs one step and settles its outcome: 0 decided, -EINPROGRESS suspended (w stays with
 * the caller), -1 policy error.  memo_in is NULL when the decision may not be memoised. */
static int run_step(struct lua_host *h, struct decide_ctx *c, const char *memo_in,
                    size_t memo_len, uint64_t memo_hash, struct lua_host_wait **wait_out)
{
    char err[512];
    /* One budget per request, across yields: what earlier steps left of it. */
    struct lua_host_wait *w = c->w;
    struct sandbox_budget cb = {w->instr_left, w->time_left_ns, h->lim.instructions,
                             h->lim.time_ms};
    int64_t t0 = sandbox_mono_ns();
    enum sandbox_result r = sandbox_call(&h->sb, decide_tramp, c, cb, err, sizeof err);
    w->instr_left = h->sb.instr_left;
    w->time_left_ns -= sandbox_mono_ns() - t0;
    if (r == SANDBOX_OK && c->yielded) {
        *wait_out = c->w;
        return -EINPROGRESS;
    }
    if (r == SANDBOX_OK) {
        bool never_yielded = c->w->yields == 0;
        wait_free(h, c->w, true);
        if (memo_in != NULL && never_yielded && c->pure)
            memo_store(h, memo_in, memo_len, memo_hash, c->out);
        return 0;
    }
    if (c->co_status == LUA_ERRMEM) r = SANDBOX_MEMORY;
    wait_free(h, c->w, false);
    policy_decision_free(c->out);
    decision_init(c->out, h->set->generation);
    policy_failed(h, r, err);
    return -1;
}

/* The route table's decision, when it has one: 0 decided, 1 ask Lua. */
static int table_decide(struct lua_host *h, const struct policy_request *req,
                        struct policy_decision *out)
{
    if (h->set->table == NULL) return 1;
    int rc = route_table_decide(h->set->table, req, out);
    if (rc == ROUTE_TABLE_DECIDED && fill_route(h, out->route_id, out)) {
        h->table_decisions++;
        return 0;
    }
    /* Lua routes, queries Lua refuses, or out of memory here: Lua decides (and fails the
     * same way it always has). */
    policy_decision_free(out);
    decision_init(out, h->set->generation);
    return 1;
}

static int decide_in_lua(struct lua_host *h, const struct policy_request *req,
                         struct policy_decision *out, struct lua_host_wait **wait, bool memo)
{
    char in[MEMO_MAX_INPUT];
    size_t in_len = 0;
    uint64_t in_hash = 0;
    bool memoable = memo && memo_input(req, h->set->has_hosts, in, &in_len, &in_hash);
    if (memoable && memo_lookup(h, in, in_len, in_hash, out)) return 0;
    if (h->sb.L == NULL) rebuild(h);
    struct lua_host_wait *w = h->sb.L != NULL ? calloc(1, sizeof *w) : NULL;
    if (w == NULL) {
        atomic_fetch_add(&error_count_, 1);
        return -1;
    }
    w->epoch = h->epoch;
    w->instr_left = h->lim.instructions;
    w->time_left_ns = (int64_t)h->lim.time_ms * 1000000;
    struct decide_ctx c = {.h = h, .req = req, .w = w, .out = out, .allow_yield = wait != NULL};
    struct lua_host_wait *ignored;
    return run_step(h, &c, memoable ? in : NULL, in_len, in_hash, wait ? wait : &ignored);
}

int lua_host_decide_async(struct lua_host *h, const struct policy_request *req,
                          struct policy_decision *out, struct lua_host_wait **wait)
{
    if (wait != NULL) *wait = NULL;
    decision_init(out, h->set->generation);
    if (table_decide(h, req, out) == 0) return 0;
    return decide_in_lua(h, req, out, wait, true);
}

int lua_host_decide(struct lua_host *h, const struct policy_request *req,
                    struct policy_decision *out)
{
    return lua_host_decide_async(h, req, out, NULL);
}

int lua_host_decide_lua(struct lua_host *h, const struct policy_request *req,
                        struct policy_decision *out)
{
    decision_init(out, h->set->generation);
    return decide_in_lua(h, req, out, NULL, false);
}

bool lua_host_has_route_table(const struct lua_host *h) { return h->set->table != NULL; }

/* Formats the compiled set's routes (gateway/policy.lua's route records and Set:describe)
 * as text: ... = set, has_table. */
static const char DUMP_ROUTES_LUA[] =
    "local set, has_table = ...\n"
    "local desc = set:describe()\n"
    "local function secs(v) if v == nil then return '-' end return tostring(v) .. 's' end\n"
    "local function list(l, fn)\n"
    "  if fn then return '(lua function)' end\n"
    "  if l == nil or #l == 0 then return '-' end\n"
    "  local t = {}\n"
    "  for i, e in ipairs(l) do t[i] = e.tmpl.template .. (e.prefix and '*' or '') end\n"
    "  return table.concat(t, ',')\n"
    "end\n"
    "local out, in_c = {}, 0\n"
    "for id, r in ipairs(set.routes) do\n"
    "  local c = has_table and not desc.routes[id].fn\n"
    "  if c then in_c = in_c + 1 end\n"
    "  local key = r.key_fn and '(lua function)' or (r.key_tmpl and r.key_tmpl.template)\n"
    "    or '(default)'\n"
    "  local bypass = r.bypass_fn and '(lua function)' or (r.bypass and 'yes' or 'no')\n"
    "  out[#out + 1] = table.concat({\n"
    "    r.spec, 'name=' .. tostring(r.name), 'key=' .. key,\n"
    "    'ttl=' .. secs(r.ttl), 'swr=' .. secs(r.swr), 'sie=' .. secs(r.sie),\n"
    "    'per_user=' .. (r.per_user and 'yes' or 'no'), 'bypass=' .. bypass,\n"
    "    'tags=' .. list(r.tags, r.tags_fn),\n"
    "    'invalidate=' .. list(r.invalidate, r.invalidate_fn),\n"
    "    'invalidate_tags=' .. list(r.invalidate_tags, r.invalidate_tags_fn),\n"
    "    'on_response=' .. (r.on_response and 'yes' or 'no'),\n"
    "    r.upstream and ('upstream=' .. r.upstream) or nil }, '  ')\n"
    "  if r.hosts then out[#out] = out[#out] .. '  host=' .. table.concat(r.hosts, ',') end\n"
    "  out[#out] = out[#out] .. '  decided=' .. (c and 'C' or 'Lua') .. '  (' ..\n"
    "    tostring(r.where_at) .. ')'\n"
    "end\n"
    "table.insert(out, 1, string.format('# routes: %d (%d decided in C, %d in Lua)%s',\n"
    "  #set.routes,"
    "  in_c, #set.routes - in_c, has_table and '' or '; no route table: every decision in Lua'))\n"
    "for i, u in ipairs(set:describe_upstreams()) do\n"
    "  local sv = {}\n"
    "  for j, s in ipairs(u.servers) do\n"
    "    sv[j] = s.url .. (s.weight ~= 1 and ('*' .. s.weight) or '')\n"
    "  end\n"
    "  local h = u.health and string.format('%s every %ss', u.health.path, u.health.interval)\n"
    "    or 'passive only'\n"
    "  table.insert(out, 1 + i, string.format(\n"
    "    '# upstream %s: %s  balance=%s  retries=%d  max_fails=%d  health=%s',\n"
    "    u.name, table.concat(sv, ','), u.balance, u.retries, u.max_fails, h))\n"
    "end\n"
    "return table.concat(out, '\\n') .. '\\n'\n";

int lua_host_dump_routes(struct lua_host *h, void *stream, char *err, size_t err_len)
{
    lua_State *L = h->sb.L;
    int top = lua_gettop(L);
    int rc = luaL_loadbuffer(L, DUMP_ROUTES_LUA, sizeof DUMP_ROUTES_LUA - 1, "=dump_routes");
    if (rc == LUA_OK) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref_set);
        lua_pushboolean(L, h->set->table != NULL);
        rc = lua_pcall(L, 2, 1, 0);
    }
    if (rc != LUA_OK || !lua_isstring(L, -1)) {
        snprintf(err, err_len, "cannot list the routes: %s",
                 lua_isstring(L, -1) ? lua_tostring(L, -1) : "no text");
        lua_settop(L, top);
        return -1;
    }
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    fwrite(text, 1, len, (FILE *)stream);
    lua_settop(L, top);
    return 0;
}

size_t lua_host_wait_keys(const struct lua_host_wait *w, const char *const **keys)
{
    *keys = (const char *const *)w->keys;
    return w->n_keys;
}

int lua_host_resume_decide(struct lua_host *h, struct lua_host_wait *w,
                           const struct lua_host_value *values, size_t n,
                           struct policy_decision *out)
{
    decision_init(out, h->set->generation);
    if (w->epoch != h->epoch || h->sb.L == NULL || n != w->n_keys) {
        /* The state was rebuilt under the suspended decision (or the caller is confused). */
        wait_free(h, w, false);
        atomic_fetch_add(&error_count_, 1);
        LOG_W("policy error: a suspended decision could not be resumed (Lua state rebuilt)");
        return -1;
    }
    /* The values are copied onto the Lua stack before the keys go. */
    struct decide_ctx c = {.h = h, .vals = values, .n_vals = n, .w = w, .out = out,
                           .allow_yield = true};
    char **keys = w->keys;
    size_t n_keys = w->n_keys;
    w->keys = NULL;
    w->n_keys = 0;
    struct lua_host_wait *again = NULL;
    int rc = run_step(h, &c, NULL, 0, 0, &again);
    for (size_t i = 0; i < n_keys; i++) free(keys[i]);
    free(keys);
    return rc;
}

void lua_host_wait_free(struct lua_host *h, struct lua_host_wait *w) { wait_free(h, w, false); }

struct response_ctx {
    struct lua_host *h;
    const struct policy_decision *d;
    const struct policy_request *req;
    int status;
    const struct http_header *headers;
    size_t n_headers;
    struct policy_verdict *out;
};

static int response_tramp(lua_State *L)
{
    struct response_ctx *c = lua_touserdata(L, 1);
    struct policy_verdict *out = c->out;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->h->ref_on_response);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->h->ref_set);
    lua_pushinteger(L, c->d->route_id);
    push_request(L, c->req);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, c->status);
    lua_setfield(L, -2, "status");
    push_headers(L, c->headers, c->n_headers);
    lua_setfield(L, -2, "header");
    lua_call(L, 4, 1);
    int v = lua_gettop(L);
    if (lua_isnil(L, v)) return 0;
    if (!lua_istable(L, v)) return luaL_error(L, "on_response verdict is not a table");
    out->store = sandbox_bool_field(L, v, "store");
    out->ttl_ms = sandbox_seconds_field_ms(L, v, "ttl");
    string_list_field(L, v, "tags", &out->tags, &out->n_tags);
    return 0;
}

int lua_host_on_response(struct lua_host *h, const struct policy_decision *d,
                         const struct policy_request *req, int status,
                         const struct http_header *headers, size_t n_headers,
                         struct policy_verdict *out)
{
    memset(out, 0, sizeof *out);
    out->ttl_ms = -1;
    if (d->generation != h->set->generation) return -ESTALE;
    out->store = true;
    if (!d->has_response_hook || d->route_id <= 0) return 0;
    if (h->sb.L == NULL) rebuild(h);
    if (h->sb.L == NULL) {
        atomic_fetch_add(&error_count_, 1);
        out->store = false;
        return -1;
    }
    struct response_ctx c = {h, d, req, status, headers, n_headers, out};
    char err[512];
    enum sandbox_result r =
        sandbox_call(&h->sb, response_tramp, &c,
                     sandbox_budget_of(h->lim.instructions, h->lim.time_ms), err, sizeof err);
    if (r == SANDBOX_OK) return 0;
    policy_verdict_free(out);
    out->store = false;
    out->ttl_ms = -1;
    policy_failed(h, r, err);
    return -1;
}

void policy_decision_free(struct policy_decision *d)
{
    if (d == NULL) return;
    free(d->key);
    free(d->route);
    free(d->upstream);
    d->upstream = NULL;
    for (size_t i = 0; i < d->n_tags; i++) free(d->tags[i]);
    free(d->tags);
    for (size_t i = 0; i < d->n_invalidate; i++) free(d->invalidate[i].key);
    free(d->invalidate);
    d->key = d->route = NULL;
    d->tags = NULL;
    d->n_tags = 0;
    d->invalidate = NULL;
    d->n_invalidate = 0;
}

void policy_verdict_free(struct policy_verdict *v)
{
    if (v == NULL) return;
    for (size_t i = 0; i < v->n_tags; i++) free(v->tags[i]);
    free(v->tags);
    v->tags = NULL;
    v->n_tags = 0;
}

uint64_t lua_host_error_count(void) { return atomic_load(&error_count_); }
uint64_t lua_host_budget_kill_count(void) { return atomic_load(&budget_kills_); }
uint64_t lua_host_memory_kill_count(void) { return atomic_load(&memory_kills_); }
uint64_t lua_host_time_kill_count(void) { return sandbox_time_kill_count(); }
