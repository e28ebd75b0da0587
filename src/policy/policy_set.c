/* policy_set.c - see policy_set.h (the public functions are declared in lua_host.h). */
#include "policy_set.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "route_table.h"

static atomic_uint_fast64_t next_generation_ = 1;

static void sources_free(struct lua_source *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].name);
        free(s[i].chunkname);
        free(s[i].text);
    }
    free(s);
}

static void set_free(struct policy_set *set)
{
    if (set == NULL) return;
    sources_free(set->modules, set->n_modules);
    sources_free(set->policies, set->n_policies);
    route_table_free(set->table);
    upstream_configs_free(set->upstreams, set->n_upstreams);
    free(set);
}

struct policy_set *policy_set_ref(struct policy_set *set)
{
    atomic_fetch_add_explicit(&set->refs, 1, memory_order_relaxed);
    return set;
}

void policy_set_unref(struct policy_set *set)
{
    if (set == NULL) return;
    if (atomic_fetch_sub_explicit(&set->refs, 1, memory_order_acq_rel) == 1) set_free(set);
}

size_t policy_set_route_count(const struct policy_set *set) { return set->route_count; }
size_t policy_set_file_count(const struct policy_set *set) { return set->n_policies; }
uint64_t policy_set_generation(const struct policy_set *set) { return set->generation; }

struct lua_limits policy_limits_or_default(const struct lua_limits *lim)
{
    struct lua_limits l = {LUA_HOST_DEFAULT_MEMORY, LUA_HOST_DEFAULT_INSTRUCTIONS,
                           LUA_HOST_DEFAULT_TIME_MS};
    if (lim != NULL && lim->memory_bytes > 0) l.memory_bytes = lim->memory_bytes;
    if (lim != NULL && lim->instructions > 0) l.instructions = lim->instructions;
    if (lim != NULL && lim->time_ms > 0) l.time_ms = lim->time_ms;
    return l;
}

/* "dir/file" for messages and chunk names, without a leading "./" or a doubled "/". */
static char *display_path(const char *dir, const char *sub, const char *file)
{
    while (dir[0] == '.' && dir[1] == '/') {
        dir += 2;
        while (*dir == '/') dir++;
    }
    if (strcmp(dir, ".") == 0) dir = "";
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    char *out = NULL;
    int n = asprintf(&out, "%.*s%s%s%s%s", (int)dl, dir, dl ? "/" : "", sub, sub[0] ? "/" : "",
                     file);
    return n < 0 ? NULL : out;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int read_file(const char *path, const char *shown, char **text, size_t *len, char *err,
                     size_t err_len)
{
    int rc = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        rc = -errno;
        snprintf(err, err_len, "cannot read %s: %s", shown, strerror(errno));
        goto done;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        rc = -errno;
        snprintf(err, err_len, "cannot stat %s: %s", shown, strerror(errno));
        goto done;
    }
    if ((size_t)st.st_size > LUA_HOST_MAX_FILE_BYTES) {
        rc = -EFBIG;
        snprintf(err, err_len, "%s: file is larger than %zu bytes", shown,
                 (size_t)LUA_HOST_MAX_FILE_BYTES);
        goto done;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        snprintf(err, err_len, "out of memory reading %s", shown);
        goto done;
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    if (ferror(f)) {
        rc = -EIO;
        snprintf(err, err_len, "cannot read %s: I/O error", shown);
        goto done;
    }
    buf[n] = '\0';
    *text = buf;
    *len = n;
    buf = NULL;
done:
    free(buf);
    if (f != NULL) fclose(f);
    return rc;
}

/*
 * Reads every "*.lua" in dir (sorted by name; dot files and *_spec.lua skipped) into
 * *out.  With module_prefix set ("gateway."), names are module names; otherwise they are
 * display paths.
 */
static int read_dir(const char *dir, const char *shown_dir, const char *shown_sub,
                    const char *module_prefix, struct lua_source **out, size_t *n_out,
                    char *err, size_t err_len)
{
    int rc = 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct lua_source *src = NULL;
    size_t n_src = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        rc = -errno;
        char *shown = display_path(shown_dir, shown_sub, "");
        snprintf(err, err_len, "cannot open directory %s: %s", shown ? shown : dir,
                 strerror(errno));
        free(shown);
        goto done;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (nm[0] == '.' || !has_suffix(nm, ".lua") || has_suffix(nm, "_spec.lua")) continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (nn == NULL) goto nomem;
            names = nn;
            cap = ncap;
        }
        if ((names[n] = strdup(nm)) == NULL) goto nomem;
        n++;
    }
    if (n > 0) qsort(names, n, sizeof *names, cmp_names);
    src = calloc(n ? n : 1, sizeof *src);
    if (src == NULL) goto nomem;
    for (size_t i = 0; i < n; i++, n_src++) {
        struct lua_source *s = &src[i];
        char *path = NULL;
        char *shown = display_path(shown_dir, shown_sub, names[i]);
        if (shown == NULL || asprintf(&path, "%s/%s", dir, names[i]) < 0) {
            free(shown);
            goto nomem;
        }
        if (asprintf(&s->chunkname, "@%s", shown) < 0) s->chunkname = NULL;
        if (module_prefix != NULL) {
            size_t base = strlen(names[i]) - 4; /* without ".lua" */
            if (asprintf(&s->name, "%s%.*s", module_prefix, (int)base, names[i]) < 0)
                s->name = NULL;
        } else {
            s->name = strdup(shown);
        }
        if (s->chunkname == NULL || s->name == NULL) {
            free(path);
            free(shown);
            n_src++;
            goto nomem;
        }
        rc = read_file(path, shown, &s->text, &s->len, err, err_len);
        free(path);
        free(shown);
        if (rc != 0) {
            n_src++;
            goto done;
        }
    }
    *out = src;
    *n_out = n_src;
    src = NULL;
    goto done;
nomem:
    rc = -ENOMEM;
    snprintf(err, err_len, "out of memory reading %s", dir);
done:
    if (src != NULL) sources_free(src, n_src);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    if (d != NULL) closedir(d);
    return rc;
}

void policy_route_infos_free(struct policy_route_info *ri, size_t n)
{
    for (size_t i = 0; ri != NULL && i < n; i++) {
        free(ri[i].name);
        free(ri[i].upstream);
    }
    free(ri);
}

const struct upstream_config *policy_set_upstreams(const struct policy_set *set, size_t *n)
{
    *n = set->n_upstreams;
    return set->upstreams;
}

/* t[name] as a whole number of milliseconds from seconds (0 when absent). */
static int ms_field(lua_State *L, int t, const char *name)
{
    int64_t ms = sandbox_seconds_field_ms(L, t, name);
    return ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

static int int_field(lua_State *L, int t, const char *name)
{
    lua_getfield(L, t, name);
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v < 0 ? 0 : v > INT_MAX ? INT_MAX : (int)v;
}

/* Copies a string field (NULL when absent) or raises on out of memory. */
static char *str_field(lua_State *L, int t, const char *name)
{
    char *out = NULL;
    if (lua_getfield(L, t, name) == LUA_TSTRING && (out = strdup(lua_tostring(L, -1))) == NULL)
        luaL_error(L, "out of memory");
    lua_pop(L, 1);
    return out;
}

/* set:describe_upstreams() (validated by gateway/policy.lua) into c->upstreams.  Raises on
 * out of memory; what was copied so far is in c for the caller to free. */
static void read_upstreams(lua_State *L, int set, struct policy_load_ctx *c)
{
    lua_getfield(L, set, "describe_upstreams");
    lua_pushvalue(L, set);
    lua_call(L, 1, 1);
    int list = lua_gettop(L);
    size_t n = (size_t)luaL_len(L, list);
    if (n == 0) {
        lua_pop(L, 1);
        return;
    }
    if ((c->upstreams = calloc(n, sizeof *c->upstreams)) == NULL)
        luaL_error(L, "out of memory");
    for (size_t i = 0; i < n; i++) {
        struct upstream_config *u = &c->upstreams[i];
        c->n_upstreams++;
        lua_geti(L, list, (lua_Integer)i + 1);
        int t = lua_gettop(L);
        u->name = str_field(L, t, "name");
        char *balance = str_field(L, t, "balance");
        u->balance = balance == NULL                      ? UPSTREAM_BALANCE_ROUND_ROBIN
                     : strcmp(balance, "least_conn") == 0 ? UPSTREAM_BALANCE_LEAST_CONN
                     : strcmp(balance, "hash") == 0       ? UPSTREAM_BALANCE_HASH
                                                          : UPSTREAM_BALANCE_ROUND_ROBIN;
        free(balance);
        u->connect_timeout_ms = ms_field(L, t, "connect_timeout");
        u->timeout_ms = ms_field(L, t, "timeout");
        u->retries = int_field(L, t, "retries");
        u->max_fails = int_field(L, t, "max_fails");
        u->fail_timeout_ms = ms_field(L, t, "fail_timeout");
        u->fail_on_5xx = sandbox_bool_field(L, t, "fail_on_5xx");
        u->max_connections = int_field(L, t, "max_connections");
        u->dns_ttl_s = int_field(L, t, "dns_ttl");
        if (lua_getfield(L, t, "health") == LUA_TTABLE) {
            int h = lua_gettop(L);
            u->health.path = str_field(L, h, "path");
            u->health.interval_ms = ms_field(L, h, "interval");
            u->health.timeout_ms = ms_field(L, h, "timeout");
            u->health.healthy = int_field(L, h, "healthy");
            u->health.unhealthy = int_field(L, h, "unhealthy");
        }
        lua_pop(L, 1);
        lua_getfield(L, t, "servers");
        size_t ns = (size_t)luaL_len(L, -1);
        if ((u->servers = calloc(ns ? ns : 1, sizeof *u->servers)) == NULL)
            luaL_error(L, "out of memory");
        for (size_t k = 0; k < ns; k++) {
            lua_geti(L, -1, (lua_Integer)k + 1);
            u->servers[k].url = str_field(L, lua_gettop(L), "url");
            u->servers[k].weight = int_field(L, lua_gettop(L), "weight");
            u->n_servers++;
            lua_pop(L, 1);
        }
        lua_pop(L, 2); /* servers, the entry */
    }
    lua_pop(L, 1);
}

/* policy = require "gateway.policy"; set = policy.load(files) */
static int load_tramp(lua_State *L)
{
    struct policy_load_ctx *c = lua_touserdata(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, "cachegw.env");
    lua_getfield(L, -1, "require");
    lua_pushliteral(L, "gateway.policy");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "load");
    lua_createtable(L, (int)c->set->n_policies, 0);
    for (size_t i = 0; i < c->set->n_policies; i++) {
        const struct lua_source *s = &c->set->policies[i];
        lua_createtable(L, 0, 2);
        lua_pushstring(L, s->name);
        lua_setfield(L, -2, "name");
        lua_pushlstring(L, s->text, s->len);
        lua_setfield(L, -2, "source");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_call(L, 1, 1);
    int set = lua_gettop(L);
    if (!lua_istable(L, set)) return luaL_error(L, "policy.load did not return a table");
    lua_getfield(L, set, "routes");
    c->route_count = (size_t)luaL_len(L, -1);
    lua_pop(L, 1);
    if (!c->want_refs) {
        /* The route table is built once per set, from the validation load; hosts share it.
         * A table that cannot be built leaves every decision to Lua (logged by the caller). */
        lua_getfield(L, set, "describe");
        lua_pushvalue(L, set);
        lua_call(L, 1, 1);
        if (route_table_build(L, -1, &c->table, c->table_err, sizeof c->table_err) != 0)
            c->table = NULL;
        lua_pop(L, 1);
        read_upstreams(L, set, c);
        c->has_hosts = sandbox_bool_field(L, set, "has_hosts");
        if (lua_getfield(L, set, "unknown_host") == LUA_TSTRING &&
            strcmp(lua_tostring(L, -1), "reject") == 0)
            c->has_hosts = true;
        lua_pop(L, 1);
    }
    if (c->want_refs) {
        lua_getfield(L, set, "decide_raw");
        lua_getfield(L, set, "on_response");
        if (!lua_isfunction(L, -1) || !lua_isfunction(L, -2))
            return luaL_error(L, "gateway.policy set lacks decide_raw/on_response");
        c->ref_on_response = luaL_ref(L, LUA_REGISTRYINDEX);
        c->ref_decide = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_pushvalue(L, set);
        c->ref_set = luaL_ref(L, LUA_REGISTRYINDEX);

        c->routes = calloc(c->route_count ? c->route_count : 1, sizeof *c->routes);
        if (c->routes == NULL) return luaL_error(L, "out of memory");
        lua_getfield(L, set, "routes");
        for (size_t i = 0; i < c->route_count; i++) {
            struct policy_route_info *ri = &c->routes[i];
            lua_geti(L, -1, (lua_Integer)i + 1);
            int r = lua_gettop(L);
            lua_getfield(L, r, "name");
            ri->name = strdup(luaL_optstring(L, -1, "?"));
            if (ri->name == NULL) return luaL_error(L, "out of memory");
            lua_pop(L, 1);
            ri->ttl_ms = sandbox_seconds_field_ms(L, r, "ttl");
            ri->swr_ms = sandbox_seconds_field_ms(L, r, "swr");
            ri->sie_ms = sandbox_seconds_field_ms(L, r, "sie");
            ri->per_user = sandbox_bool_field(L, r, "per_user");
            ri->has_hook = sandbox_bool_field(L, r, "on_response");
            ri->ignore_no_store = sandbox_bool_field(L, r, "ignore_no_store");
            ri->upstream = str_field(L, r, "upstream");
            ri->idempotent = sandbox_bool_field(L, r, "idempotent");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Runs the policy files' top-level code: POLICY_SET_LOAD_BUDGET_FACTOR per-call instruction
 * budgets, and time_factor per-call time budgets, so slow top-level code fails the load
 * (file:line) instead of stalling start-up, a reload or a worker's first request. */
int policy_set_run(struct sandbox *sb, const struct lua_limits *lim, struct policy_load_ctx *c,
                   long time_factor, char *err, size_t err_len)
{
    long budget = lim->instructions > LONG_MAX / POLICY_SET_LOAD_BUDGET_FACTOR
                      ? LONG_MAX
                      : lim->instructions * POLICY_SET_LOAD_BUDGET_FACTOR;
    long time_ms = lim->time_ms > LONG_MAX / time_factor ? LONG_MAX : lim->time_ms * time_factor;
    enum sandbox_result r =
        sandbox_call(sb, load_tramp, c, sandbox_budget_of(budget, time_ms), err, err_len);
    if (r == SANDBOX_OK) return 0;
    return r == SANDBOX_MEMORY ? -ENOMEM : -EINVAL;
}

int policy_set_load(const char *policies_dir, const char *lua_dir, const struct lua_limits *lim,
                    struct policy_set **out, char *err, size_t err_len)
{
    int rc;
    char *gateway_dir = NULL;
    struct sandbox sb = {0};
    *out = NULL;
    if (err_len > 0) err[0] = '\0';
    struct policy_set *set = calloc(1, sizeof *set);
    if (set == NULL) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    atomic_init(&set->refs, 1);
    set->lim = policy_limits_or_default(lim);
    if (asprintf(&gateway_dir, "%s/gateway", lua_dir) < 0) {
        gateway_dir = NULL;
        rc = -ENOMEM;
        snprintf(err, err_len, "out of memory");
        goto done;
    }
    rc = read_dir(gateway_dir, lua_dir, "gateway", "gateway.", &set->modules, &set->n_modules,
                  err, err_len);
    if (rc != 0) goto done;
    rc = read_dir(policies_dir, policies_dir, "", NULL, &set->policies, &set->n_policies, err,
                  err_len);
    if (rc != 0) goto done;

    rc = sandbox_open(&sb, set->modules, set->n_modules, &set->lim, err, err_len);
    if (rc != 0) goto done;
    struct policy_load_ctx c = {.set = set};
    rc = policy_set_run(&sb, &set->lim, &c, POLICY_SET_LOAD_BUDGET_FACTOR, err, err_len);
    set->upstreams = c.upstreams; /* freed with the set, also on failure */
    set->n_upstreams = c.n_upstreams;
    if (rc != 0) {
        route_table_free(c.table);
        goto done;
    }
    set->route_count = c.route_count;
    set->table = c.table;
    set->has_hosts = c.has_hosts;
    if (set->table == NULL)
        LOG_W("policy: route table not built (%s); every request is decided in Lua",
              c.table_err[0] ? c.table_err : "unknown error");
    set->generation = atomic_fetch_add(&next_generation_, 1);
    *out = set;
    set = NULL;
done:
    sandbox_close(&sb);
    free(gateway_dir);
    if (set != NULL) set_free(set);
    return rc;
}
