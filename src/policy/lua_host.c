/* lua_host.c - see lua_host.h. */
#include "lua_host.h"

#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "lua_cache.h"
#include "lua_helpers.h"
#include "lua_pattern.h"
#include "route_table.h"

/* The __metatable value marking tables policies must not modify (see gateway/policy.lua). */
#define PROTECTED_MARK "cachegw.protected"
/* Loading runs this many per-call budgets: validation does real work for every route. */
#define LOAD_BUDGET_FACTOR 10
/* The count hook runs every HOOK_PERIOD instructions (or per-call budget, if smaller) and
 * reads the clock each time: about 25 ns per thousand instructions. */
#define HOOK_PERIOD 1000
/* Pattern matching (lua_pattern.h): this many matcher steps cost one instruction, and the
 * clock is read every PATTERN_CHECK_STEPS steps. */
#define PATTERN_STEPS_PER_INSTRUCTION 16
#define PATTERN_CHECK_STEPS 4096
/* Allocations at least this large read the clock (see alloc_clock_check). */
#define ALLOC_CLOCK_BYTES ((size_t)64 << 10)
/* Host builds run the same top-level code validation ran, on a possibly busier machine:
 * give them twice the load's wall-clock budget so a set that validated never fails here. */
#define BUILD_TIME_FACTOR (2 * LOAD_BUDGET_FACTOR)
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
static atomic_uint_fast64_t time_kills_;
static atomic_uint_fast64_t next_generation_ = 1;

/* ---- policy sets ------------------------------------------------------------------------ */

struct lua_source {
    char *name;      /* module name "gateway.router", or the policy file's display path */
    char *chunkname; /* "@" + display path */
    char *text;
    size_t len;
};

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
};

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

static struct lua_limits limits_or_default(const struct lua_limits *lim)
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

/* ---- the sandbox ------------------------------------------------------------------------ */

enum kill_kind { KILL_NONE = 0, KILL_INSTR, KILL_TIME };

struct sandbox {
    lua_State *L;
    size_t mem_used, mem_limit;
    enum kill_kind kill;  /* why the current call was stopped, KILL_NONE while it runs */
    bool armed;           /* a budgeted call is running */
    int hook_period;      /* instructions between two runs of the count hook */
    long budget;          /* the current call's instruction budget (for messages) */
    int64_t instr_left;   /* of the current call (or request, across yields) */
    long time_ms;         /* the current call's wall-clock budget (for messages) */
    int64_t deadline_ns;  /* CLOCK_MONOTONIC */
    lua_State *running;   /* the coroutine running policy code, or NULL (then L) */
    struct lua_pattern_budget pat; /* string.find & co charge their work here */
    const struct policy_set *set;
};

static struct sandbox *sandbox_of(lua_State *L) { return *(struct sandbox **)lua_getextraspace(L); }

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/*
 * Stops the current call: every later instruction of the threads that run policy code
 * raises again (budget_hook), so a pcall inside the policy cannot swallow the kill.
 * Safe from the allocator: lua_sethook may even be called from a signal handler.
 */
static void sandbox_kill(struct sandbox *sb, lua_State *L, enum kill_kind why)
{
    if (sb->kill == KILL_NONE) sb->kill = why;
    if (why == KILL_TIME) atomic_fetch_add(&time_kills_, 1);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    if (sb->running != NULL && sb->running != L)
        lua_sethook(sb->running, budget_hook, LUA_MASKCOUNT, 1);
    if (L != sb->L) lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, 1);
}

static void push_kill_message(struct sandbox *sb, lua_State *L)
{
    if (sb->kill == KILL_TIME)
        lua_pushfstring(L, "time limit exceeded (%d ms)", (int)sb->time_ms);
    else
        lua_pushfstring(L, "instruction budget exceeded (%d instructions)",
                        (int)(sb->budget > INT_MAX ? INT_MAX : sb->budget));
}

/* Large allocations are where slow C library calls (string.rep, table.concat, gsub of a
 * long subject) spend their time without executing instructions: check the clock there. */
static void alloc_clock_check(struct sandbox *sb)
{
    if (!sb->armed || sb->kill != KILL_NONE || mono_ns() < sb->deadline_ns) return;
    sandbox_kill(sb, sb->running != NULL ? sb->running : sb->L, KILL_TIME);
}

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct sandbox *sb = ud;
    size_t old = ptr != NULL ? osize : 0; /* with ptr NULL, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        sb->mem_used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > sb->mem_limit - sb->mem_used) return NULL;
    if (nsize >= ALLOC_CLOCK_BYTES && nsize > old) alloc_clock_check(sb);
    void *p = realloc(ptr, nsize);
    if (p == NULL) return nsize <= old ? ptr : NULL; /* Lua requires shrinking to succeed */
    sb->mem_used = sb->mem_used - old + nsize;
    return p;
}

/*
 * The count hook, run every hook_period instructions of a budgeted call: it charges them
 * to the budget and looks at the clock.  Once the call is over budget (or time) the hook
 * fires on every instruction and raises, so that an error caught by a pcall inside the
 * policy is raised again at the very next instruction until it leaves the outermost call.
 */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct sandbox *sb = sandbox_of(L);
    if (sb->kill == KILL_NONE) {
        sb->instr_left -= sb->hook_period;
        if (sb->instr_left > 0 && mono_ns() < sb->deadline_ns) return;
        sandbox_kill(sb, L, sb->instr_left > 0 ? KILL_TIME : KILL_INSTR);
    }
    /* Level 0 is the Lua function that was running: hooks get no frame of their own. */
    luaL_where(L, 0);
    push_kill_message(sb, L);
    lua_concat(L, 2);
    lua_error(L);
}

/* The pattern matcher's budget: PATTERN_STEPS_PER_INSTRUCTION steps cost one instruction
 * of the call's budget, and the clock is read every PATTERN_CHECK_STEPS steps. */
static void pattern_check(lua_State *L, struct lua_pattern_budget *b)
{
    struct sandbox *sb = b->ud;
    int64_t used = PATTERN_CHECK_STEPS - b->steps_left;
    b->steps_left = PATTERN_CHECK_STEPS;
    if (!sb->armed) return;
    if (sb->kill == KILL_NONE) {
        sb->instr_left -= used / PATTERN_STEPS_PER_INSTRUCTION;
        if (sb->instr_left > 0 && mono_ns() < sb->deadline_ns) return;
        sandbox_kill(sb, L, sb->instr_left > 0 ? KILL_TIME : KILL_INSTR);
    }
    luaL_where(L, 1); /* the Lua code that called string.find & co */
    push_kill_message(sb, L);
    lua_pushliteral(L, " in pattern matching");
    lua_concat(L, 3);
    lua_error(L);
}

static void arm_budget(struct sandbox *sb, int64_t instructions, int64_t time_ns, long budget,
                       long time_ms)
{
    sb->kill = KILL_NONE;
    sb->armed = true;
    sb->budget = budget;
    sb->time_ms = time_ms;
    sb->instr_left = instructions;
    sb->deadline_ns = mono_ns() + time_ns;
    sb->pat.steps_left = PATTERN_CHECK_STEPS;
    lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, sb->hook_period);
}

static void disarm_budget(struct sandbox *sb)
{
    sb->armed = false;
    lua_sethook(sb->L, NULL, 0, 0);
}

/* Message handler for every lua_pcall: the message plus a traceback. */
static int msg_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
            msg = lua_tostring(L, -1);
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
        }
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

enum call_result { CALL_OK = 0, CALL_ERROR, CALL_BUDGET, CALL_MEMORY };

/*
 * Calls fn(ud) protected, under budget instructions.  On failure copies the message
 * (without the traceback, which goes to the debug log) into err.
 */
/* What a call may spend: instructions and wall-clock time (with the figures its error
 * messages quote, which for a resumed decision are the whole request's). */
struct call_budget {
    int64_t instructions, time_ns;
    long budget, time_ms;
};

static struct call_budget full_budget(long instructions, long time_ms)
{
    return (struct call_budget){instructions, (int64_t)time_ms * 1000000, instructions,
                                time_ms};
}

static enum call_result sandbox_call(struct sandbox *sb, lua_CFunction fn, void *ud,
                                     struct call_budget cb, char *err, size_t err_len)
{
    lua_State *L = sb->L;
    int top = lua_gettop(L);
    lua_pushcfunction(L, msg_handler);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    arm_budget(sb, cb.instructions, cb.time_ns, cb.budget, cb.time_ms);
    int rc = lua_pcall(L, 1, 0, top + 1);
    bool killed = sb->kill != KILL_NONE;
    disarm_budget(sb);
    enum call_result res = CALL_OK;
    if (rc != LUA_OK) {
        res = rc == LUA_ERRMEM ? CALL_MEMORY : killed ? CALL_BUDGET : CALL_ERROR;
        const char *msg = lua_tostring(L, -1);
        if (msg == NULL) msg = "(no message)";
        const char *tb = strstr(msg, "\nstack traceback:");
        size_t len = tb ? (size_t)(tb - msg) : strlen(msg);
        if (res == CALL_MEMORY) {
            snprintf(err, err_len, "not enough memory (Lua memory limit %zu bytes)",
                     sb->mem_limit);
        } else if (err_len > 0) {
            snprintf(err, err_len, "%.*s", (int)len, msg);
        }
        if (tb != NULL) LOG_D("lua: %s", msg);
    }
    lua_settop(L, top);
    return res;
}

/* ---- sandbox globals --------------------------------------------------------------------- */

static int ro_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table (field '%s')",
                      luaL_tolstring(L, 2, NULL));
}

/* __pairs of a read-only proxy: iterate the real table without handing it out. */
static int ro_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, lua_upvalueindex(1))) return 2;
    lua_pushnil(L);
    return 1;
}

static int ro_pairs(lua_State *L)
{
    luaL_getmetafield(L, 1, "__index"); /* the real table */
    lua_pushcclosure(L, ro_next, 1);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

/* Replaces the table at the top of the stack with a read-only proxy for it. */
static void push_readonly(lua_State *L)
{
    lua_newtable(L);                   /* real proxy */
    lua_createtable(L, 0, 4);          /* real proxy mt */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, ro_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushliteral(L, PROTECTED_MARK);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_remove(L, -2);
}

static int safe_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    lua_settop(L, 3);
    int t = luaL_getmetafield(L, 1, "__metatable");
    if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), PROTECTED_MARK) == 0)
        return luaL_error(L, "attempt to modify a read-only table with rawset");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

/* setmetatable without __gc: finalizers would run policy code outside any budgeted call. */
static int safe_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in policies");
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

/* load(chunk [, name [, mode [, env]]]): text only, env defaulting to the sandbox's. */
static int safe_load(lua_State *L)
{
    int nargs = lua_gettop(L);
    luaL_checkany(L, 1);
    lua_settop(L, 4);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the original load */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushliteral(L, "t");
    if (nargs >= 4)
        lua_pushvalue(L, 4);
    else
        lua_pushvalue(L, lua_upvalueindex(2)); /* the sandbox's globals */
    lua_call(L, 4, 2);
    if (lua_isnil(L, -2)) return 2; /* nil, message */
    lua_pop(L, 1);
    return 1;
}

/*
 * xpcall(f, handler, ...) that runs the handler after the error has unwound, like
 * pcall(f, ...) followed by handler(err).  Lua calls a real xpcall handler at the point of
 * the error; when that error came from the budget hook, hooks are still disabled there,
 * so a looping handler could never be stopped.  Without the debug library a handler
 * cannot inspect the failing stack anyway, so nothing is lost.
 */
static int safe_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_remove(L, 2);
    lua_insert(L, 1); /* handler, f, args... */
    if (lua_pcall(L, n - 2, LUA_MULTRET, 0) == LUA_OK) {
        lua_pushboolean(L, 1);
        lua_replace(L, 1); /* true, results... */
        return lua_gettop(L);
    }
    lua_call(L, 1, 1); /* handler(err), unprotected: a budget kill propagates */
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

static int safe_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage('%s') is not allowed in policies (only 'count')", opt);
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) +
                          (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
    return 1;
}

static int safe_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    log_msg(LOG_INFO, "policy print: %.*s", (int)(len > 1500 ? 1500 : len), s);
    return 0;
}

/*
 * require(name): "cachegw_helpers" is the gw table; "gateway.<x>" loads the set's module
 * source as text in the sandbox's environment, once.  Upvalues: 1 = loaded table,
 * 2 = sandbox globals.
 */
static int safe_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    if (lua_getfield(L, lua_upvalueindex(1), name) != LUA_TNIL) {
        if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1))
            return luaL_error(L, "require: loop while loading module '%s'", name);
        return 1;
    }
    lua_pop(L, 1);
    const struct policy_set *set = sandbox_of(L)->set;
    const struct lua_source *src = NULL;
    for (size_t i = 0; set != NULL && i < set->n_modules; i++)
        if (strcmp(set->modules[i].name, name) == 0) src = &set->modules[i];
    if (src == NULL)
        return luaL_error(L, "module '%s' not found (policies may only require gateway.* "
                             "modules)", name);
    lua_pushboolean(L, 0); /* loading marker */
    lua_setfield(L, lua_upvalueindex(1), name);
    if (luaL_loadbufferx(L, src->text, src->len, src->chunkname, "t") != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_setupvalue(L, -2, 1); /* _ENV */
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    } else if (lua_istable(L, -1)) {
        push_readonly(L); /* a policy must not patch a module other files share */
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, lua_upvalueindex(1), name);
    return 1;
}

/*
 * A library function that runs in C for a time proportional to its input without
 * allocating (table.insert into a long array shifts it; utf8.len scans): the count hook
 * and the allocator never see that time, so read the clock when it returns.
 * Upvalue 1: the original function.
 */
static int timed_call(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    struct sandbox *sb = sandbox_of(L);
    if (sb->armed && sb->kill == KILL_NONE && mono_ns() >= sb->deadline_ns)
        sandbox_kill(sb, L, KILL_TIME);
    return lua_gettop(L);
}

/* Replaces each named function of the library at index lib with a timed_call wrapper. */
static void wrap_timed(lua_State *L, int lib, const char *const *names)
{
    for (; *names; names++) {
        lua_getfield(L, lib, *names);
        lua_pushcclosure(L, timed_call, 1);
        lua_setfield(L, lib, *names);
    }
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 1);
    lua_pop(L, 1);
}

/*
 * Builds the sandbox in a fresh state (protected: every step allocates).  Leaves the
 * sandbox globals proxy in the registry under "cachegw.env" and require's loaded table
 * under "cachegw.loaded".
 */
static int sandbox_setup(lua_State *L)
{
    open_lib(L, LUA_GNAME, luaopen_base);
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);

    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    static const char *const removed[] = {"dofile", "loadfile", "warn", "require", NULL};
    for (const char *const *r = removed; *r; r++) {
        lua_pushnil(L);
        lua_setfield(L, g, *r);
    }
    lua_getfield(L, g, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    /* find/match/gmatch/gsub with a step budget (lua_pattern.h); the string metatable's
     * __index is this table, so s:find(...) gets them too. */
    lua_pattern_install(L, &sandbox_of(L)->pat);
    lua_pop(L, 1);
    static const char *const table_timed[] = {"insert", "remove", "move", "sort", NULL};
    static const char *const utf8_timed[] = {"len", "offset", "codepoint", NULL};
    lua_getfield(L, g, LUA_TABLIBNAME);
    wrap_timed(L, lua_gettop(L), table_timed);
    lua_getfield(L, g, LUA_UTF8LIBNAME);
    wrap_timed(L, lua_gettop(L), utf8_timed);
    lua_pop(L, 2);
    /* Hide the string metatable: its __index is the real string table. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushliteral(L, PROTECTED_MARK);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    lua_pushcfunction(L, safe_rawset);
    lua_setfield(L, g, "rawset");
    lua_getfield(L, g, "setmetatable");
    lua_pushcclosure(L, safe_setmetatable, 1);
    lua_setfield(L, g, "setmetatable");
    lua_pushcfunction(L, safe_collectgarbage);
    lua_setfield(L, g, "collectgarbage");
    lua_pushcfunction(L, safe_xpcall);
    lua_setfield(L, g, "xpcall");
    lua_pushcfunction(L, safe_print);
    lua_setfield(L, g, "print");

    /* The proxy policies see as their globals: reads go to an overlay of read-only library
     * tables, then to the real globals; every write raises. */
    lua_createtable(L, 0, 8); /* overlay */
    int overlay = lua_gettop(L);
    static const char *const libs[] = {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
                                       LUA_UTF8LIBNAME, NULL};
    for (const char *const *l = libs; *l; l++) {
        lua_getfield(L, g, *l);
        push_readonly(L);
        lua_setfield(L, overlay, *l);
    }
    lua_helpers_open(L);
    push_readonly(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, overlay, "gw");
    int gw = lua_gettop(L);
    lua_createtable(L, 0, 1);
    lua_pushvalue(L, g);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, overlay);

    lua_newtable(L); /* proxy */
    int proxy = lua_gettop(L);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, overlay);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, ro_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushliteral(L, PROTECTED_MARK);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, proxy);
    lua_pushvalue(L, proxy);
    lua_setfield(L, overlay, "_G");

    lua_getfield(L, g, "load");
    lua_pushvalue(L, proxy);
    lua_pushcclosure(L, safe_load, 2);
    lua_setfield(L, g, "load");

    lua_newtable(L); /* loaded modules */
    int loaded = lua_gettop(L);
    lua_pushvalue(L, gw);
    lua_setfield(L, loaded, "cachegw_helpers");
    lua_pushvalue(L, loaded);
    lua_pushvalue(L, proxy);
    lua_pushcclosure(L, safe_require, 2);
    lua_setfield(L, g, "require");

    /* The cache module, opened last: its cache.cached wrapper captures the sandbox's
     * require (for gateway.json). */
    lua_cache_open(L);
    push_readonly(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, overlay, "cache");
    lua_setfield(L, loaded, "cache");

    lua_pushvalue(L, proxy);
    lua_setfield(L, LUA_REGISTRYINDEX, "cachegw.env");
    lua_pushvalue(L, loaded);
    lua_setfield(L, LUA_REGISTRYINDEX, "cachegw.loaded");
    return 0;
}

static void sandbox_close(struct sandbox *sb)
{
    if (sb->L == NULL) return;
    /* No finalizers can exist (setmetatable refuses __gc), but keep anything that would
     * run during close on a one-instruction leash anyway. */
    sb->kill = KILL_INSTR;
    sb->armed = false;
    lua_sethook(sb->L, budget_hook, LUA_MASKCOUNT, 1);
    lua_close(sb->L);
    sb->L = NULL;
}

static int sandbox_open(struct sandbox *sb, const struct policy_set *set,
                        const struct lua_limits *lim, char *err, size_t err_len)
{
    memset(sb, 0, sizeof *sb);
    sb->mem_limit = lim->memory_bytes;
    sb->set = set;
    sb->L = lua_newstate(sandbox_alloc, sb);
    if (sb->L == NULL) {
        snprintf(err, err_len, "cannot create a Lua state (memory limit %zu bytes)",
                 sb->mem_limit);
        return -ENOMEM;
    }
    *(struct sandbox **)lua_getextraspace(sb->L) = sb;
    sb->hook_period = lim->instructions < HOOK_PERIOD ? (int)lim->instructions : HOOK_PERIOD;
    sb->pat.check = pattern_check;
    sb->pat.ud = sb;
    struct call_budget unlimited = {INT64_MAX / 2, INT64_MAX / 4, LONG_MAX, LONG_MAX};
    enum call_result r = sandbox_call(sb, sandbox_setup, NULL, unlimited, err, err_len);
    if (r != CALL_OK) {
        sandbox_close(sb);
        return r == CALL_MEMORY ? -ENOMEM : -EINVAL;
    }
    return 0;
}

/* ---- loading policies ------------------------------------------------------------------- */

/* What a decision says that is static per route, read once per host so the per-request
 * call returns only what varies (see decide_raw in gateway/policy.lua). */
struct route_info {
    char *name;
    int64_t ttl_ms, swr_ms, sie_ms;
    bool per_user, has_hook, ignore_no_store;
};

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

static void route_infos_free(struct route_info *ri, size_t n)
{
    for (size_t i = 0; ri != NULL && i < n; i++) free(ri[i].name);
    free(ri);
}

struct load_ctx {
    const struct policy_set *set;
    size_t route_count;
    /* Filled when want_refs: */
    bool want_refs;
    int ref_set, ref_decide, ref_on_response;
    struct route_info *routes; /* route_count entries; the caller frees it on failure */
    /* Filled when !want_refs (the set's validation load): */
    struct route_table *table;
    char table_err[256];
};

static int64_t seconds_field_ms(lua_State *L, int t, const char *name);
static bool bool_field(lua_State *L, int t, const char *name);

/* policy = require "gateway.policy"; set = policy.load(files) */
static int load_tramp(lua_State *L)
{
    struct load_ctx *c = lua_touserdata(L, 1);
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
            struct route_info *ri = &c->routes[i];
            lua_geti(L, -1, (lua_Integer)i + 1);
            int r = lua_gettop(L);
            lua_getfield(L, r, "name");
            ri->name = strdup(luaL_optstring(L, -1, "?"));
            if (ri->name == NULL) return luaL_error(L, "out of memory");
            lua_pop(L, 1);
            ri->ttl_ms = seconds_field_ms(L, r, "ttl");
            ri->swr_ms = seconds_field_ms(L, r, "swr");
            ri->sie_ms = seconds_field_ms(L, r, "sie");
            ri->per_user = bool_field(L, r, "per_user");
            ri->has_hook = bool_field(L, r, "on_response");
            ri->ignore_no_store = bool_field(L, r, "ignore_no_store");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Runs the policy files' top-level code: LOAD_BUDGET_FACTOR per-call instruction budgets,
 * and time_factor per-call time budgets, so slow top-level code fails the load (file:line)
 * instead of stalling start-up, a reload or a worker's first request. */
static int sandbox_load_policies(struct sandbox *sb, const struct lua_limits *lim,
                                 struct load_ctx *c, long time_factor, char *err, size_t err_len)
{
    long budget = lim->instructions > LONG_MAX / LOAD_BUDGET_FACTOR
                      ? LONG_MAX
                      : lim->instructions * LOAD_BUDGET_FACTOR;
    long time_ms = lim->time_ms > LONG_MAX / time_factor ? LONG_MAX : lim->time_ms * time_factor;
    enum call_result r = sandbox_call(sb, load_tramp, c, full_budget(budget, time_ms), err,
                                      err_len);
    if (r == CALL_OK) return 0;
    return r == CALL_MEMORY ? -ENOMEM : -EINVAL;
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
    set->lim = limits_or_default(lim);
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

    rc = sandbox_open(&sb, set, &set->lim, err, err_len);
    if (rc != 0) goto done;
    struct load_ctx c = {.set = set};
    rc = sandbox_load_policies(&sb, &set->lim, &c, LOAD_BUDGET_FACTOR, err, err_len);
    if (rc != 0) {
        route_table_free(c.table);
        goto done;
    }
    set->route_count = c.route_count;
    set->table = c.table;
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

/* ---- hosts ------------------------------------------------------------------------------ */

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
    struct route_info *routes; /* set->route_count entries */
    struct memo_entry *memo;   /* MEMO_SLOTS entries, allocated on first use */
    uint64_t memo_hits;
    uint64_t table_decisions; /* decided by the set's route table, without Lua */
    time_t log_second;
    unsigned logs_this_second;
    uint64_t logs_suppressed;
};

static int host_build(struct lua_host *h, char *err, size_t err_len)
{
    int rc = sandbox_open(&h->sb, h->set, &h->lim, err, err_len);
    if (rc != 0) return rc;
    struct load_ctx c = {.set = h->set, .want_refs = true};
    rc = sandbox_load_policies(&h->sb, &h->lim, &c, BUILD_TIME_FACTOR, err, err_len);
    if (rc == 0 && c.route_count != h->set->route_count) {
        snprintf(err, err_len, "policies loaded %zu routes, expected %zu", c.route_count,
                 h->set->route_count);
        rc = -EINVAL;
    }
    if (rc != 0) {
        route_infos_free(c.routes, c.route_count);
        sandbox_close(&h->sb);
        return rc;
    }
    route_infos_free(h->routes, h->set->route_count); /* from before a rebuild */
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
    h->lim = limits_or_default(lim);
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
    route_infos_free(h->routes, h->set->route_count);
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

static int64_t seconds_field_ms(lua_State *L, int t, const char *name)
{
    int64_t ms = -1;
    if (lua_getfield(L, t, name) == LUA_TNUMBER) {
        lua_Number s = lua_tonumber(L, -1);
        if (s >= 0 && s < 9.2e15) ms = (int64_t)llround(s * 1000.0);
    }
    lua_pop(L, 1);
    return ms;
}

static bool bool_field(lua_State *L, int t, const char *name)
{
    lua_getfield(L, t, name);
    bool b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
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
                                        "policy_error", NULL};
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
    const struct route_info *ri = &h->routes[id - 1];
    out->route_id = (int)id;
    out->route = strdup(ri->name);
    if (out->route == NULL) return false;
    out->per_user = ri->per_user;
    out->has_response_hook = ri->has_hook;
    out->ignore_no_store = ri->ignore_no_store;
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
        lua_sethook(w->co, budget_hook, LUA_MASKCOUNT, h->sb.hook_period);
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
                    tg->prefix = bool_field(L, e, "prefix");
                    tg->tag = bool_field(L, e, "tag");
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
static void policy_failed(struct lua_host *h, enum call_result r, const char *msg)
{
    atomic_fetch_add(&error_count_, 1);
    if (r == CALL_BUDGET) atomic_fetch_add(&budget_kills_, 1);
    if (r == CALL_MEMORY) atomic_fetch_add(&memory_kills_, 1);

    /* The garbage of a call that ran out of memory is collectable now.  No finalizer can
     * run (setmetatable refuses __gc), so this executes no policy code. */
    if (r == CALL_MEMORY) lua_gc(h->sb.L, LUA_GCCOLLECT, 0);

    char route[256] = "";
    struct current_ctx c = {h, route, sizeof route};
    char ignored[8];
    sandbox_call(&h->sb, current_tramp, &c, full_budget(1000, h->lim.time_ms), ignored,
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
    if (r == CALL_MEMORY && h->sb.mem_used > h->sb.mem_limit / REBUILD_DEN * REBUILD_NUM)
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

/* The memo's key: method NUL path NUL query NUL and '1' when an Authorization or a
 * non-empty Cookie header is present.  Returns false when the input is too long to remember. */
static bool memo_input(const struct policy_request *r, char *buf, size_t *len, uint64_t *hash)
{
    const char *parts[3] = {r->method ? r->method : "GET", r->path ? r->path : "/",
                            r->query ? r->query : ""};
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(parts[i]);
        if (n + l + 2 > MEMO_MAX_INPUT) return false;
        memcpy(buf + n, parts[i], l + 1);
        n += l + 1;
    }
    char creds = '0';
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct http_header *hd = &r->headers[i];
        if (hd->name == NULL || hd->value == NULL) continue;
        /* As has_credentials in gateway/policy.lua: an empty Authorization counts (as in
         * the C rules), an empty Cookie does not. */
        if (strcasecmp(hd->name, "authorization") == 0 ||
            (hd->value[0] != '\0' && strcasecmp(hd->name, "cookie") == 0))
            creds = '1';
    }
    buf[n++] = creds;
    uint64_t x = 0xcbf29ce484222325ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) x = (x ^ (unsigned char)buf[i]) * 0x100000001b3ULL;
    *len = n;
    *hash = x;
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
    struct call_budget cb = {w->instr_left, w->time_left_ns, h->lim.instructions,
                             h->lim.time_ms};
    int64_t t0 = mono_ns();
    enum call_result r = sandbox_call(&h->sb, decide_tramp, c, cb, err, sizeof err);
    w->instr_left = h->sb.instr_left;
    w->time_left_ns -= mono_ns() - t0;
    if (r == CALL_OK && c->yielded) {
        *wait_out = c->w;
        return -EINPROGRESS;
    }
    if (r == CALL_OK) {
        bool never_yielded = c->w->yields == 0;
        wait_free(h, c->w, true);
        if (memo_in != NULL && never_yielded && c->pure)
            memo_store(h, memo_in, memo_len, memo_hash, c->out);
        return 0;
    }
    if (c->co_status == LUA_ERRMEM) r = CALL_MEMORY;
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
    bool memoable = memo && memo_input(req, in, &in_len, &in_hash);
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
    "    'decided=' .. (c and 'C' or 'Lua'), '(' .. tostring(r.where_at) .. ')' }, '  ')\n"
    "end\n"
    "table.insert(out, 1, string.format('# routes: %d (%d decided in C, %d in Lua)%s',\n"
    "  #set.routes,"
    "  in_c, #set.routes - in_c, has_table and '' or '; no route table: every decision in Lua'))\n"
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
    out->store = bool_field(L, v, "store");
    out->ttl_ms = seconds_field_ms(L, v, "ttl");
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
    enum call_result r = sandbox_call(&h->sb, response_tramp, &c,
                                      full_budget(h->lim.instructions, h->lim.time_ms), err,
                                      sizeof err);
    if (r == CALL_OK) return 0;
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
uint64_t lua_host_time_kill_count(void) { return atomic_load(&time_kills_); }
