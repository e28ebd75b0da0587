/* test_lua_host.c - the policy sandbox, limits, errors and decisions of src/policy/lua_host.c. */
#include "lua_host.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "gateway.h"
#include "inval_index.h"
#include "lua_cache.h"
#include "store_l1.h"
#include "test.h"

#ifndef CACHEGW_SOURCE_DIR
#error "CACHEGW_SOURCE_DIR must name the source tree"
#endif

#define LUA_DIR CACHEGW_SOURCE_DIR "/lua"
#define SHIPPED_POLICIES CACHEGW_SOURCE_DIR "/policies"

/* ---- helpers ---------------------------------------------------------------------------- */

static char tmp_root[256];
static int tmp_seq;

/* Creates a fresh directory holding the given (name, source) files; returns its path. */
static const char *policy_dir(const char *const files[][2], size_t n)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/p%d", tmp_root, ++tmp_seq);
    if (mkdir(dir, 0700) != 0) return NULL;
    for (size_t i = 0; i < n; i++) {
        char path[768];
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        FILE *f = fopen(path, "w");
        if (f == NULL) return NULL;
        fputs(files[i][1], f);
        fclose(f);
    }
    return dir;
}

static struct policy_set *load_one(const char *source, const struct lua_limits *lim, char *err,
                                   size_t err_len, int *rc_out)
{
    const char *const files[][2] = {{"test.lua", source}};
    const char *dir = policy_dir(files, 1);
    struct policy_set *set = NULL;
    int rc = policy_set_load(dir, LUA_DIR, lim, &set, err, err_len);
    if (rc_out) *rc_out = rc;
    return set;
}

static struct lua_host *host_for(const char *source, const struct lua_limits *lim)
{
    char err[512];
    int rc;
    struct policy_set *set = load_one(source, lim, err, sizeof err, &rc);
    if (set == NULL) {
        fprintf(stderr, "load failed (%d): %s\n", rc, err);
        return NULL;
    }
    struct lua_host *h = NULL;
    rc = lua_host_create(set, lim, &h, err, sizeof err);
    policy_set_unref(set);
    if (rc != 0) fprintf(stderr, "host create failed (%d): %s\n", rc, err);
    return h;
}

static struct policy_request get(const char *path)
{
    struct policy_request r = {.method = "GET", .path = path};
    return r;
}

/* Decides and returns the key (static copy) or "" / "<error>". */
static const char *decide_key(struct lua_host *h, const struct policy_request *req, int *rc_out)
{
    static char key[4096];
    struct policy_decision d;
    int rc = lua_host_decide(h, req, &d);
    if (rc_out) *rc_out = rc;
    snprintf(key, sizeof key, "%s", rc != 0 ? "<error>" : d.key ? d.key : "");
    policy_decision_free(&d);
    return key;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs fn with stderr captured into buf (the log sink writes to fd 2). */
static void capture_stderr(void (*fn)(void *), void *arg, char *buf, size_t len)
{
    char path[300];
    snprintf(path, sizeof path, "%s/stderr.%d", tmp_root, ++tmp_seq);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int saved = dup(2);
    fflush(stderr);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, buf, len - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
}

/* ---- the sandbox ------------------------------------------------------------------------ */

TEST(sandbox_has_no_dangerous_globals)
{
    struct lua_host *h = host_for(
        "local seen = table.concat({ type(os), type(io), type(debug), type(package),\n"
        "  type(dofile), type(loadfile), type(string.dump), type(coroutine), type(warn) }, ',')\n"
        "route 'GET /probe' { key = function(req)\n"
        "  return seen .. '|' .. table.concat({ type(os), type(io), type(debug),\n"
        "    type(package), type(string.dump) }, ',') end }\n",
        NULL);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_request r = get("/probe");
    CHECK_EQ_STR(decide_key(h, &r, NULL),
                 "nil,nil,nil,nil,nil,nil,nil,nil,nil|nil,nil,nil,nil,nil");
    lua_host_destroy(h);
}

/* Escapes bytes as a Lua "\ddd" string literal body. */
static void lua_escape(const char *in, size_t len, char *out, size_t out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < out_len; i++)
        o += (size_t)snprintf(out + o, out_len - o, "\\%d", (unsigned char)in[i]);
    out[o] = '\0';
}

struct dump_buf {
    char data[4096];
    size_t len;
};

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    struct dump_buf *b = ud;
    if (sz > sizeof b->data - b->len) return 1;
    memcpy(b->data + b->len, p, sz);
    b->len += sz;
    return 0;
}

TEST(load_refuses_bytecode)
{
    /* Build real bytecode with a normal state. */
    lua_State *L = luaL_newstate();
    CHECK_EQ_INT(luaL_loadstring(L, "return 'from bytecode'"), LUA_OK);
    static struct dump_buf bc;
    bc.len = 0;
    CHECK_EQ_INT(lua_dump(L, dump_writer, &bc, 0), 0);
    lua_close(L);
    CHECK(bc.len > 16 && bc.data[0] == 0x1b); /* a real binary chunk */
    static char escaped[16384];
    lua_escape(bc.data, bc.len, escaped, sizeof escaped);

    static char src[20000];
    snprintf(src, sizeof src,
             "local bc = \"%s\"\n"
             "route 'GET /a' { key = function()\n"
             "  local f1, e1 = load(bc)\n"
             "  local f2, e2 = load(bc, 'x', 'b')\n"
             "  local f3 = load('return 1 + 1', 'y', 'b')\n"
             "  return tostring(f1) .. ':' .. e1 .. '|' .. tostring(f2) .. ':' .. e2 ..\n"
             "    '|' .. tostring(f3 and f3()) end }\n",
             escaped);
    struct lua_host *h = host_for(src, NULL);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_request r = get("/a");
    const char *key = decide_key(h, &r, NULL);
    CHECK(strstr(key, "nil:") == key);
    CHECK(strstr(key, "attempt to load a binary chunk") != NULL);
    CHECK(strstr(key, "|nil:") != NULL);
    CHECK(strstr(key, "|2") != NULL); /* text still loads whatever mode is asked */
    CHECK(strstr(key, "from bytecode") == NULL);
    lua_host_destroy(h);
}

TEST(globals_and_libraries_are_read_only)
{
    struct lua_host *h = host_for(
        "helper_defined_at_load = 'ok'\n"
        "local function try(f) local ok = pcall(f) return ok and 'W' or 'r' end\n"
        "route 'GET /w' { key = function()\n"
        "  return table.concat({\n"
        "    try(function() string.upper = nil end),\n"
        "    try(function() rawset(string, 'upper', nil) end),\n"
        "    try(function() _G.x = 1 end),\n"
        "    try(function() rawset(_G, 'x', 1) end),\n"
        "    try(function() rawset(_ENV, 'x', 1) end),\n"
        "    try(function() leaked = 1 end),\n"
        "    try(function() setmetatable(_ENV, nil) end),\n"
        "    try(function() getmetatable('').__index.upper = nil end),\n"
        "    try(function() require('gateway.keys').sanitize = nil end),\n"
        "    try(function() setmetatable({}, { __gc = function() end }) end),\n"
        "    try(function() collectgarbage() end),\n"
        "    try(function() require('io') end),\n"
        "  }) .. ':' .. helper_defined_at_load .. ':' .. type(leaked) .. ':' ..\n"
        "    ('x'):upper() .. ':' .. type(collectgarbage('count')) end }\n",
        NULL);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_request r = get("/w");
    CHECK_EQ_STR(decide_key(h, &r, NULL), "rrrrrrrrrrrr:ok:nil:X:number");
    lua_host_destroy(h);
}

/* ---- limits ----------------------------------------------------------------------------- */

static const char LOOPS[] =
    "route 'GET /ok' { key = 'ok', ttl = 1 }\n"
    "route 'GET /spin' { key = function() while true do end end }\n"
    "route 'GET /spin_pcall' { key = function()\n"
    "  pcall(function() while true do end end)\n"
    "  return 'survived' end }\n"
    "route 'GET /spin_pcall_loop' { key = function()\n"
    "  while true do pcall(function() while true do end end) end end }\n"
    "route 'GET /spin_xpcall' { key = function()\n"
    "  xpcall(function() while true do end end, function() while true do end end)\n"
    "  return 'survived' end }\n";

TEST(instruction_budget_stops_loops_and_pcall_cannot_swallow_it)
{
    struct lua_limits lim = {.memory_bytes = 32u << 20, .instructions = 200000};
    struct lua_host *h = host_for(LOOPS, &lim);
    CHECK(h != NULL);
    if (h == NULL) return;
    const char *paths[] = {"/spin", "/spin_pcall", "/spin_pcall_loop", "/spin_xpcall"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        uint64_t kills = lua_host_budget_kill_count();
        uint64_t errors = lua_host_error_count();
        double t0 = now_s();
        struct policy_request r = get(paths[i]);
        struct policy_decision d;
        int rc = lua_host_decide(h, &r, &d);
        double took = now_s() - t0;
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_INT(d.action, POLICY_BYPASS);
        CHECK_EQ_STR(d.reason, "policy_error");
        CHECK(d.key == NULL);
        CHECK_EQ_INT(lua_host_budget_kill_count(), kills + 1);
        CHECK_EQ_INT(lua_host_error_count(), errors + 1);
        CHECK(took < 2.0);
        policy_decision_free(&d);

        /* The same host keeps working. */
        struct policy_request ok = get("/ok");
        int rc2;
        CHECK_EQ_STR(decide_key(h, &ok, &rc2), "ok");
        CHECK_EQ_INT(rc2, 0);
    }
    lua_host_destroy(h);
}

TEST(memory_limit_stops_hoarding_and_host_recovers)
{
    /* A generous wall clock: this test is about memory, and ASan makes string.rep slow. */
    struct lua_limits lim = {.memory_bytes = 24u << 20, .instructions = 100000000,
                             .time_ms = 60000};
    struct lua_host *h = host_for(
        "route 'GET /ok' { key = 'ok' }\n"
        "route 'GET /hog' { key = function()\n"
        "  local t = {} while true do t[#t+1] = string.rep('x', 1e6) end end }\n"
        "local hoard = {}\n"
        "route 'GET /leak' { key = function()\n"
        "  for i = 1, 4 do hoard[#hoard+1] = string.rep('y', 1e6) end return 'leak' end }\n"
        "route 'GET /big' { key = function() return string.rep('z', 1e9) end }\n",
        &lim);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_request ok = get("/ok");
    int rc;

    uint64_t kills = lua_host_memory_kill_count();
    struct policy_request hog = get("/hog");
    CHECK_EQ_STR(decide_key(h, &hog, &rc), "<error>");
    CHECK_EQ_INT(rc, -1);
    CHECK_EQ_INT(lua_host_memory_kill_count(), kills + 1);
    CHECK(lua_host_memory_used(h) < lim.memory_bytes / 2);
    CHECK_EQ_STR(decide_key(h, &ok, &rc), "ok");

    struct policy_request big = get("/big");
    CHECK_EQ_STR(decide_key(h, &big, &rc), "<error>");
    CHECK_EQ_STR(decide_key(h, &ok, &rc), "ok");

    /* A policy that keeps data alive between requests fills the state for good: the host
     * rebuilds itself from the set and serves again. */
    struct policy_request leak = get("/leak");
    int failures = 0;
    for (int i = 0; i < 20; i++) {
        decide_key(h, &leak, &rc);
        if (rc != 0) failures++;
    }
    CHECK(failures >= 1);
    CHECK(lua_host_memory_used(h) < lim.memory_bytes);
    CHECK_EQ_STR(decide_key(h, &ok, &rc), "ok");
    CHECK_EQ_INT(rc, 0);
    lua_host_destroy(h);
}

/* ---- errors ----------------------------------------------------------------------------- */

struct decide_args {
    struct lua_host *h;
    const char *path;
    int rc;
};

static void run_decide(void *p)
{
    struct decide_args *a = p;
    struct policy_request r = get(a->path);
    struct policy_decision d;
    a->rc = lua_host_decide(a->h, &r, &d);
    policy_decision_free(&d);
}

TEST(runtime_errors_are_logged_with_route_and_file_line)
{
    struct lua_host *h = host_for("\n\n"
                                  "route 'GET /search' { key = function(req)\n"
                                  "  return 'search:' .. req.query.q end }\n"
                                  "route 'GET /global' { key = function(req)\n"
                                  "  counter = 1 return 'x' end }\n",
                                  NULL);
    CHECK(h != NULL);
    if (h == NULL) return;
    char log[4096];
    struct decide_args a = {h, "/search", 0};
    capture_stderr(run_decide, &a, log, sizeof log);
    CHECK_EQ_INT(a.rc, -1);
    CHECK(strstr(log, "policy error in route 'GET /search': ") != NULL);
    CHECK(strstr(log, "/test.lua:4: attempt to concatenate a nil value (field 'q')") != NULL);

    /* Writing a global at request time is an error too (state must not leak). */
    struct decide_args b = {h, "/global", 0};
    capture_stderr(run_decide, &b, log, sizeof log);
    CHECK_EQ_INT(b.rc, -1);
    CHECK(strstr(log, "test.lua:6: policy code may not set global 'counter'") != NULL);
    lua_host_destroy(h);
}

TEST(load_errors_name_file_and_line)
{
    static const struct {
        const char *src, *want;
    } cases[] = {
        {"route 'GET /a' { key = 'a' }\n\nroute 'GET /b' { key = 'b' ", "test.lua:3: "},
        {"route 'GET /users/:id' { key = 'users:{id}', ttl = 1 }\n"
         "route 'GET /users/:id/x' { key = 'x:{id}', tll = 300 }\n",
         "test.lua:2: unknown field 'tll' in route 'GET /users/:id/x' (did you mean 'ttl'?)"},
        {"\nroute 'GET /users/:id' { key = 'users:{uid}' }\n",
         "test.lua:2: field 'key' in route 'GET /users/:id': template 'users:{uid}' uses "
         "'{uid}', but the route has no such param"},
        {"route 'GET /a' { ttl = -5 }\n", "test.lua:1: field 'ttl' in route 'GET /a' must be a "
                                          "non-negative number of seconds, got -5"},
        {"route 'GET /a' { invalidate = { 'a' } }\n", "test.lua:1: field 'invalidate' is not "
                                                     "allowed on read route 'GET /a'"},
        {"route 'GET /a' {}\nroute 'GET /a' {}\n",
         "test.lua:2: duplicate route 'GET /a' (already declared as 'GET /a' at "},
        {"local x = nil\n\nlocal y = x.field\n", "test.lua:3: attempt to index a nil value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[512];
        int rc;
        struct policy_set *set = load_one(cases[i].src, NULL, err, sizeof err, &rc);
        CHECK(set == NULL);
        CHECK_EQ_INT(rc, -EINVAL);
        const char *at = strstr(err, cases[i].want);
        if (at == NULL) fprintf(stderr, "  case %zu: got \"%s\"\n", i, err);
        CHECK(at != NULL);
        /* The message starts with the file's path: "<dir>/test.lua:N:". */
        CHECK(at != NULL && at > err && at[-1] == '/' && err[0] == '/');
        CHECK(strchr(err, '\n') == NULL);
        policy_set_unref(set);
    }
}

TEST(load_reports_missing_directories)
{
    struct policy_set *set = NULL;
    char err[512];
    int rc = policy_set_load("/nonexistent/policies", LUA_DIR, NULL, &set, err, sizeof err);
    CHECK_EQ_INT(rc, -ENOENT);
    CHECK(set == NULL);
    CHECK(strstr(err, "/nonexistent/policies") != NULL);
    rc = policy_set_load(SHIPPED_POLICIES, "/nonexistent/lua", NULL, &set, err, sizeof err);
    CHECK_EQ_INT(rc, -ENOENT);
    CHECK(strstr(err, "/nonexistent/lua/gateway") != NULL);
}

TEST(load_budget_applies_to_policy_files)
{
    struct lua_limits lim = {.instructions = 10000};
    char err[512];
    int rc;
    struct policy_set *set = load_one("\nwhile true do end\n", &lim, err, sizeof err, &rc);
    CHECK(set == NULL);
    CHECK_EQ_INT(rc, -EINVAL);
    CHECK(strstr(err, "test.lua:2: instruction budget exceeded") != NULL);
}

/* ---- the shipped policies --------------------------------------------------------------- */

static struct lua_host *shipped_host(void)
{
    struct policy_set *set = NULL;
    char err[512];
    int rc = policy_set_load(SHIPPED_POLICIES, LUA_DIR, NULL, &set, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "shipped policies: %s\n", err);
        return NULL;
    }
    struct lua_host *h = NULL;
    rc = lua_host_create(set, NULL, &h, err, sizeof err);
    policy_set_unref(set);
    if (rc != 0) fprintf(stderr, "shipped host: %s\n", err);
    return h;
}

TEST(shipped_policies_decide_users)
{
    struct lua_host *h = shipped_host();
    CHECK(h != NULL);
    if (h == NULL) return;
    CHECK(policy_set_route_count(lua_host_set(h)) >= 20);
    CHECK_EQ_INT(policy_set_file_count(lua_host_set(h)), 5);

    struct policy_request r = get("/users/42");
    struct policy_decision d;
    CHECK_EQ_INT(lua_host_decide(h, &r, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_CACHE);
    CHECK_EQ_STR(d.key, "users:42");
    CHECK_EQ_INT(d.ttl_ms, 300000);
    CHECK_EQ_INT(d.swr_ms, -1);
    CHECK_EQ_STR(d.route, "GET /users/:id");
    CHECK(d.has_response_hook);
    CHECK(!d.per_user);
    CHECK_EQ_STR(d.reason, "route");
    CHECK_EQ_INT(d.generation, policy_set_generation(lua_host_set(h)));

    /* The 404 hook shortens the ttl; a 200 keeps it. */
    struct policy_verdict v;
    CHECK_EQ_INT(lua_host_on_response(h, &d, &r, 404, NULL, 0, &v), 0);
    CHECK(v.store);
    CHECK_EQ_INT(v.ttl_ms, 30000);
    policy_verdict_free(&v);
    CHECK_EQ_INT(lua_host_on_response(h, &d, &r, 200, NULL, 0, &v), 0);
    CHECK(v.store);
    CHECK_EQ_INT(v.ttl_ms, -1);
    policy_verdict_free(&v);

    /* A decision from another generation is refused rather than mixed. */
    d.generation++;
    CHECK_EQ_INT(lua_host_on_response(h, &d, &r, 200, NULL, 0, &v), -ESTALE);
    CHECK(!v.store);
    policy_verdict_free(&v);
    policy_decision_free(&d);

    struct policy_request put = {.method = "PUT", .path = "/users/42"};
    CHECK_EQ_INT(lua_host_decide(h, &put, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_INVALIDATE);
    CHECK_EQ_INT(d.n_invalidate, 3);
    if (d.n_invalidate == 3) {
        CHECK_EQ_STR(d.invalidate[0].key, "users:42");
        CHECK(!d.invalidate[0].prefix);
        CHECK_EQ_STR(d.invalidate[1].key, "user_profile:42");
        CHECK(!d.invalidate[1].prefix);
        CHECK_EQ_STR(d.invalidate[2].key, "users_list:");
        CHECK(d.invalidate[2].prefix);
    }
    CHECK(d.key == NULL);
    policy_decision_free(&d);

    struct policy_request post = {.method = "POST", .path = "/posts"};
    CHECK_EQ_INT(lua_host_decide(h, &post, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_INVALIDATE);
    CHECK_EQ_INT(d.n_invalidate, 4);
    for (size_t i = 0; i < d.n_invalidate; i++) CHECK(d.invalidate[i].prefix);
    if (d.n_invalidate == 4) CHECK_EQ_STR(d.invalidate[0].key, "posts:");
    policy_decision_free(&d);
    lua_host_destroy(h);
}

TEST(shipped_policies_credentials_and_defaults)
{
    struct lua_host *h = shipped_host();
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_decision d;

    /* A shared route never answers a credentialed request from cache. */
    struct http_header auth[] = {{"authorization", "Bearer alice"}, {"x-user-id", "7"}};
    struct policy_request r = {.method = "GET", .path = "/users/42", .headers = auth,
                               .n_headers = 2};
    CHECK_EQ_INT(lua_host_decide(h, &r, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_BYPASS);
    CHECK_EQ_STR(d.reason, "credentials");
    policy_decision_free(&d);

    /* A per-user route keys on the credential. */
    struct policy_request feed = {.method = "GET", .path = "/feed", .query = "b=2&a=1&utm_x=1",
                                  .headers = auth, .n_headers = 2};
    CHECK_EQ_INT(lua_host_decide(h, &feed, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_CACHE);
    CHECK(d.per_user);
    CHECK(d.key != NULL && strncmp(d.key, "feed:", 5) == 0);
    CHECK(d.key != NULL && strstr(d.key, ":7:a=1&b=2") != NULL);
    char alice[256];
    snprintf(alice, sizeof alice, "%s", d.key ? d.key : "");
    policy_decision_free(&d);
    struct http_header bob_h[] = {{"authorization", "Bearer bob"}, {"x-user-id", "7"}};
    feed.headers = bob_h;
    CHECK_EQ_INT(lua_host_decide(h, &feed, &d), 0);
    CHECK(d.key != NULL && strcmp(d.key, alice) != 0);
    policy_decision_free(&d);

    /* No route: RFC rules with the default key. */
    struct policy_request none = {.method = "HEAD", .path = "/unknown", .query = "z=1&a="};
    CHECK_EQ_INT(lua_host_decide(h, &none, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_DEFAULT);
    CHECK_EQ_STR(d.key, "GET:/unknown?a=&z=1");
    CHECK_EQ_INT(d.route_id, 0);
    CHECK(d.route == NULL);
    policy_decision_free(&d);

    /* Control characters never reach a key, raw or percent-encoded. */
    struct policy_request ctl = get("/users/4\n2");
    CHECK_EQ_STR(decide_key(h, &ctl, NULL), "users:4%0A2");
    struct policy_request ctl2 = get("/users/4%0a2");
    CHECK_EQ_STR(decide_key(h, &ctl2, NULL), "users:4%0A2");
    struct policy_request ctl3 = {.method = "GET", .path = "/nope", .query = "a=\x01"};
    CHECK_EQ_STR(decide_key(h, &ctl3, NULL), "GET:/nope?a=%01");

    /* Literal beats param. */
    struct policy_request stats = get("/jobs/stats");
    CHECK_EQ_INT(lua_host_decide(h, &stats, &d), 0);
    CHECK_EQ_STR(d.key, "jobs_stats");
    CHECK_EQ_INT(d.ttl_ms, 600000);
    policy_decision_free(&d);

    /* jobs: a 5xx is never stored. */
    struct policy_request job = get("/jobs/9");
    CHECK_EQ_INT(lua_host_decide(h, &job, &d), 0);
    struct policy_verdict v;
    struct http_header rh[] = {{"cache-control", "max-age=60"}};
    CHECK_EQ_INT(lua_host_on_response(h, &d, &job, 503, rh, 1, &v), 0);
    CHECK(!v.store);
    policy_verdict_free(&v);
    policy_decision_free(&d);
    lua_host_destroy(h);
}

TEST(set_outlives_load_and_hosts_share_it)
{
    struct policy_set *set = NULL;
    char err[512];
    CHECK_EQ_INT(policy_set_load(SHIPPED_POLICIES, LUA_DIR, NULL, &set, err, sizeof err), 0);
    if (set == NULL) return;
    struct lua_host *a = NULL, *b = NULL;
    CHECK_EQ_INT(lua_host_create(set, NULL, &a, err, sizeof err), 0);
    CHECK_EQ_INT(lua_host_create(set, NULL, &b, err, sizeof err), 0);
    policy_set_unref(set); /* the hosts keep it alive */
    if (a == NULL || b == NULL) return;
    CHECK(lua_host_set(a) == lua_host_set(b));
    struct policy_request r = get("/categories");
    CHECK_EQ_STR(decide_key(a, &r, NULL), "categories:");
    lua_host_destroy(a);
    CHECK_EQ_STR(decide_key(b, &r, NULL), "categories:");
    lua_host_destroy(b);
}

TEST(memo_answers_pure_routes_only)
{
    struct lua_host *h = host_for("local n = 0\n"
                                  "route 'GET /u/:id' { key = 'u:{id}', ttl = 5 }\n"
                                  "route 'GET /fn' { key = function()\n"
                                  "  n = n + 1 return 'fn' .. n end }\n"
                                  "route 'GET /h' { key = 'h:{header.x-a}' }\n",
                                  NULL);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_decision d;

    /* Pure: decided without entering Lua (by the route table since issue 9 item 5; the
     * memo now only holds what Lua decides), with the same answer every time. */
    struct policy_request r = get("/u/1");
    uint64_t table = lua_host_table_decisions(h);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(lua_host_decide(h, &r, &d), 0);
        CHECK_EQ_INT(d.action, POLICY_CACHE);
        CHECK_EQ_STR(d.key, "u:1");
        CHECK_EQ_STR(d.route, "GET /u/:id");
        CHECK_EQ_INT(d.ttl_ms, 5000);
        CHECK_EQ_STR(d.reason, "route");
        policy_decision_free(&d);
    }
    CHECK_EQ_INT(lua_host_table_decisions(h), table + 3);

    /* The presence of credentials is part of the memo's key. */
    struct http_header cookie[] = {{"Cookie", "sid=1"}};
    struct policy_request rc = {.method = "GET", .path = "/u/1", .headers = cookie,
                                .n_headers = 1};
    CHECK_EQ_INT(lua_host_decide(h, &rc, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_BYPASS);
    CHECK_EQ_STR(d.reason, "credentials");
    policy_decision_free(&d);
    struct http_header empty_cookie[] = {{"cookie", ""}};
    rc.headers = empty_cookie;
    CHECK_EQ_INT(lua_host_decide(h, &rc, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_CACHE);
    policy_decision_free(&d);

    /* So are the method and the query. */
    struct policy_request head = {.method = "HEAD", .path = "/u/1", .query = "x=1"};
    CHECK_EQ_INT(lua_host_decide(h, &head, &d), 0);
    CHECK_EQ_STR(d.key, "u:1");
    policy_decision_free(&d);
    struct policy_request none = {.method = "GET", .path = "/none", .query = "a=1"};
    CHECK_EQ_STR(decide_key(h, &none, NULL), "GET:/none?a=1");
    none.query = "a=2";
    CHECK_EQ_STR(decide_key(h, &none, NULL), "GET:/none?a=2");
    CHECK_EQ_STR(decide_key(h, &none, NULL), "GET:/none?a=2");

    /* Functions and header placeholders run every time. */
    struct policy_request fn = get("/fn");
    CHECK_EQ_STR(decide_key(h, &fn, NULL), "fn1");
    CHECK_EQ_STR(decide_key(h, &fn, NULL), "fn2");
    struct http_header a1[] = {{"x-a", "1"}}, a2[] = {{"x-a", "2"}};
    struct policy_request hr = {.method = "GET", .path = "/h", .headers = a1, .n_headers = 1};
    CHECK_EQ_STR(decide_key(h, &hr, NULL), "h:1");
    hr.headers = a2;
    CHECK_EQ_STR(decide_key(h, &hr, NULL), "h:2");
    lua_host_destroy(h);
}

/* ---- the cache module: suspended decisions ---------------------------------------------- */

/* A gateway with only what the cache module touches: memory tier, invalidation index and
 * config.  There is no Redis: the host's cache context is told to yield on misses as if
 * there were one, and the test plays the I/O loop by resuming with values itself. */
struct fake_gw {
    struct config cfg;
    struct gateway gw;
};

static void fake_gw_init(struct fake_gw *f)
{
    memset(f, 0, sizeof *f);
    f->cfg.max_value_bytes = 1 << 20;
    f->gw.cfg = &f->cfg;
    store_l1_create(1 << 20, 4, &f->gw.l1);
    inval_index_create(&f->gw.inval);
}

static void fake_gw_free(struct fake_gw *f)
{
    store_l1_destroy(f->gw.l1);
    inval_index_destroy(f->gw.inval);
}

static const char CACHE_POLICY[] =
    "route 'GET /v/:id' { key = function(req)\n"
    "    local v = cache.get('ver:' .. req.params.id)\n"
    "    return 'v:' .. req.params.id .. ':' .. tostring(v) end, ttl = 10 }\n"
    "route 'GET /m' { key = function(req)\n"
    "    local t = cache.mget({'a', 'b', 'c'})\n"
    "    return 'm:' .. tostring(t.a) .. tostring(t.b) .. tostring(t.c) end }\n"
    "route 'GET /local' { key = function(req)\n"
    "    cache.set('loc', 'L', 60)\n"
    "    return 'l:' .. cache.get('loc') end }\n"
    "route 'GET /many' { key = function(req)\n"
    "    local n = 0\n"
    "    for i = 1, 20 do if cache.get('k' .. i) then n = n + 1 end end\n"
    "    return 'n' .. n end }\n"
    "local function burn(n) local x = 0; for i = 1, n do x = x + i end; return x end\n"
    "route 'GET /burn/:before/:after' { key = function(req)\n"
    "    burn(tonumber(req.params.before))\n"
    "    local v = cache.get('b')\n"
    "    burn(tonumber(req.params.after))\n"
    "    return 'b:' .. tostring(v) end }\n"
    "route 'GET /loop' { key = function(req)\n"
    "    local v = cache.get('x')\n"
    "    while true do end end }\n"
    "route 'GET /xp' { key = function(req)\n"
    "    local ok, v = xpcall(cache.get, function(e) return e end, 'xp')\n"
    "    return 'xp:' .. tostring(v) end }\n";

static struct lua_host *cache_host(struct fake_gw *f, long instructions)
{
    struct lua_limits lim = {.instructions = instructions};
    struct lua_host *h = host_for(CACHE_POLICY, &lim);
    if (h == NULL) return NULL;
    lua_host_bind_gateway(h, &f->gw);
    lua_host_cache_ctx(h)->remote_always = true;
    return h;
}

TEST(cache_get_yields_on_a_miss_and_resumes_with_the_remote_value)
{
    struct fake_gw f;
    fake_gw_init(&f);
    struct lua_host *h = cache_host(&f, 0);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_request r = get("/v/7");
    struct policy_decision d;
    struct lua_host_wait *w = NULL;
    CHECK_EQ_INT(lua_host_decide_async(h, &r, &d, &w), -EINPROGRESS);
    CHECK(w != NULL);
    const char *const *keys;
    CHECK_EQ_INT(lua_host_wait_keys(w, &keys), 1);
    CHECK_EQ_STR(keys[0], "kv:ver:7"); /* the module's own namespace */
    struct lua_host_value v = {"42", 2};
    CHECK_EQ_INT(lua_host_resume_decide(h, w, &v, 1, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_CACHE);
    CHECK_EQ_STR(d.key, "v:7:42");
    CHECK_EQ_INT(d.ttl_ms, 10000);
    policy_decision_free(&d);

    /* A remote miss reads as nil. */
    CHECK_EQ_INT(lua_host_decide_async(h, &r, &d, &w), -EINPROGRESS);
    struct lua_host_value miss = {NULL, 0};
    CHECK_EQ_INT(lua_host_resume_decide(h, w, &miss, 1, &d), 0);
    CHECK_EQ_STR(d.key, "v:7:nil");
    policy_decision_free(&d);

    /* The synchronous entry point never suspends: a memory miss is nil. */
    CHECK_EQ_STR(decide_key(h, &r, NULL), "v:7:nil");

    /* Values set by a policy are in the memory tier: no yield at all. */
    struct policy_request loc = get("/local");
    CHECK_EQ_INT(lua_host_decide_async(h, &loc, &d, &w), 0);
    CHECK_EQ_STR(d.key, "l:L");
    policy_decision_free(&d);
    struct cache_object *stored = store_l1_get(f.gw.l1, "kv:loc", 6, (int64_t)time(NULL) * 1000);
    CHECK(stored != NULL);
    cache_object_unref(stored);
    lua_host_destroy(h);
    fake_gw_free(&f);
}

TEST(cache_mget_fetches_all_misses_in_one_yield)
{
    struct fake_gw f;
    fake_gw_init(&f);
    struct lua_host *h = cache_host(&f, 0);
    if (h == NULL) return;
    struct policy_request loc = get("/local"), m = get("/m");
    struct policy_decision d;
    struct lua_host_wait *w = NULL;
    /* 'b' comes from the memory tier; 'a' and 'c' are waited for together. */
    struct cache_meta meta = {.stored_at_ms = (int64_t)time(NULL) * 1000, .ttl_ms = 60000};
    struct cache_object *b = cache_object_build("kv:b", 4, 200, NULL, 0, "B", 1, &meta);
    store_l1_put(f.gw.l1, b, meta.stored_at_ms);
    cache_object_unref(b);
    CHECK_EQ_INT(lua_host_decide_async(h, &m, &d, &w), -EINPROGRESS);
    const char *const *keys;
    CHECK_EQ_INT(lua_host_wait_keys(w, &keys), 2);
    CHECK_EQ_STR(keys[0], "kv:a");
    CHECK_EQ_STR(keys[1], "kv:c");
    struct lua_host_value vals[2] = {{"A", 1}, {NULL, 0}};
    CHECK_EQ_INT(lua_host_resume_decide(h, w, vals, 2, &d), 0);
    CHECK_EQ_STR(d.key, "m:ABnil");
    policy_decision_free(&d);

    /* Two suspended decisions on one host, resumed in the other order. */
    struct policy_request r1 = get("/v/1"), r2 = get("/v/2");
    struct lua_host_wait *w1 = NULL, *w2 = NULL;
    struct policy_decision d1, d2;
    CHECK_EQ_INT(lua_host_decide_async(h, &r1, &d1, &w1), -EINPROGRESS);
    CHECK_EQ_INT(lua_host_decide_async(h, &r2, &d2, &w2), -EINPROGRESS);
    CHECK_EQ_INT(lua_host_decide_async(h, &loc, &d, &w), 0); /* others run meanwhile */
    policy_decision_free(&d);
    struct lua_host_value two = {"two", 3}, one = {"one", 3};
    CHECK_EQ_INT(lua_host_resume_decide(h, w2, &two, 1, &d2), 0);
    CHECK_EQ_INT(lua_host_resume_decide(h, w1, &one, 1, &d1), 0);
    CHECK_EQ_STR(d1.key, "v:1:one");
    CHECK_EQ_STR(d2.key, "v:2:two");
    policy_decision_free(&d1);
    policy_decision_free(&d2);

    /* An abandoned decision is released (ASan checks nothing leaks). */
    CHECK_EQ_INT(lua_host_decide_async(h, &r1, &d1, &w1), -EINPROGRESS);
    lua_host_wait_free(h, w1);
    lua_host_destroy(h);
    fake_gw_free(&f);
}

TEST(cache_yields_are_bounded_per_request)
{
    struct fake_gw f;
    fake_gw_init(&f);
    struct lua_host *h = cache_host(&f, 0);
    if (h == NULL) return;
    struct policy_request r = get("/many");
    struct policy_decision d;
    struct lua_host_wait *w = NULL;
    int rc = lua_host_decide_async(h, &r, &d, &w), yields = 0;
    struct lua_host_value hit = {"1", 1};
    while (rc == -EINPROGRESS && yields < 100) {
        yields++;
        rc = lua_host_resume_decide(h, w, &hit, 1, &d);
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(yields, LUA_HOST_MAX_YIELDS);
    /* The first 8 reads were answered; the other 12 missed without waiting. */
    CHECK_EQ_STR(d.key, "n8");
    policy_decision_free(&d);

    /* Where Lua cannot yield (inside xpcall's C boundary), a miss is simply nil. */
    struct policy_request xp = get("/xp");
    CHECK_EQ_INT(lua_host_decide_async(h, &xp, &d, &w), 0);
    CHECK_EQ_STR(d.key, "xp:nil");
    policy_decision_free(&d);
    lua_host_destroy(h);
    fake_gw_free(&f);
}

TEST(instruction_budget_counts_across_yields)
{
    struct fake_gw f;
    fake_gw_init(&f);
    struct lua_host *h = cache_host(&f, 200000);
    if (h == NULL) return;
    struct policy_decision d;
    struct lua_host_wait *w = NULL;
    struct lua_host_value v = {"x", 1};
    /* Each burn(60000) is about 120k instructions: alone on either side it fits. */
    struct policy_request before = get("/burn/60000/0"), after = get("/burn/0/60000"),
                          both = get("/burn/60000/60000");
    CHECK_EQ_INT(lua_host_decide_async(h, &before, &d, &w), -EINPROGRESS);
    CHECK_EQ_INT(lua_host_resume_decide(h, w, &v, 1, &d), 0);
    CHECK_EQ_STR(d.key, "b:x");
    policy_decision_free(&d);
    CHECK_EQ_INT(lua_host_decide_async(h, &after, &d, &w), -EINPROGRESS);
    CHECK_EQ_INT(lua_host_resume_decide(h, w, &v, 1, &d), 0);
    policy_decision_free(&d);
    /* Both sides: one budget per request, so the second half is stopped. */
    uint64_t kills = lua_host_budget_kill_count();
    CHECK_EQ_INT(lua_host_decide_async(h, &both, &d, &w), -EINPROGRESS);
    CHECK_EQ_INT(lua_host_resume_decide(h, w, &v, 1, &d), -1);
    CHECK_EQ_INT(d.action, POLICY_BYPASS);
    CHECK_EQ_STR(d.reason, "policy_error");
    CHECK_EQ_INT(lua_host_budget_kill_count(), kills + 1);
    policy_decision_free(&d);

    /* A loop after a resume is stopped, and the host keeps working. */
    struct policy_request loop = get("/loop");
    CHECK_EQ_INT(lua_host_decide_async(h, &loop, &d, &w), -EINPROGRESS);
    CHECK_EQ_INT(lua_host_resume_decide(h, w, &v, 1, &d), -1);
    CHECK_EQ_INT(lua_host_budget_kill_count(), kills + 2);
    policy_decision_free(&d);
    CHECK_EQ_INT(lua_host_decide_async(h, &before, &d, &w), -EINPROGRESS);
    CHECK_EQ_INT(lua_host_resume_decide(h, w, &v, 1, &d), 0);
    CHECK_EQ_STR(d.key, "b:x");
    policy_decision_free(&d);
    lua_host_destroy(h);
    fake_gw_free(&f);
}

/* Cost of cache.get answered by the memory tier, from Lua (printed, not checked). */
TEST(cache_get_hit_cost)
{
    struct fake_gw f;
    fake_gw_init(&f);
    struct lua_limits lim = {.instructions = 100000000, .time_ms = 60000};
    struct lua_host *h = host_for(
        "route 'GET /bench/:n' { key = function(req)\n"
        "    cache.set('hot', 'value', 60)\n"
        "    local get, n = cache.get, tonumber(req.params.n)\n"
        "    for i = 1, n do get('hot') end\n"
        "    return 'k' end }\n",
        &lim);
    if (h == NULL) return;
    lua_host_bind_gateway(h, &f.gw);
    struct timespec t0, t1, t2;
    struct policy_request base = get("/bench/0"), run = get("/bench/1000000");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_EQ_STR(decide_key(h, &base, NULL), "k");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK_EQ_STR(decide_key(h, &run, NULL), "k");
    clock_gettime(CLOCK_MONOTONIC, &t2);
    double base_ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    double run_ns = (double)(t2.tv_sec - t1.tv_sec) * 1e9 + (double)(t2.tv_nsec - t1.tv_nsec);
    fprintf(stderr, "cache.get memory hit: %.0f ns/call\n", (run_ns - base_ns) / 1e6);
    lua_host_destroy(h);
    fake_gw_free(&f);
}

/* ---- issue 8: pattern work and wall-clock time (items 10 and 22) ------------------------- */

/* Decides path on h; returns the seconds it took and the result in *rc / key. */
static double timed_decide(struct lua_host *h, const char *path, int *rc, char *key, size_t len)
{
    struct policy_request r = get(path);
    double t0 = now_s();
    snprintf(key, len, "%s", decide_key(h, &r, rc));
    return now_s() - t0;
}

TEST(pathological_patterns_fail_the_decision_within_the_time_limit)
{
    struct lua_limits lim = {.instructions = 1000000, .time_ms = 100};
    struct lua_host *h = host_for(
        "local S, P = string.rep('a', 30000), string.rep('a*', 30) .. 'b'\n"
        "route 'GET /find' { key = function() string.find(S, P) return 'x' end }\n"
        "route 'GET /method' { key = function() return tostring(S:match(P)) end }\n"
        "route 'GET /gsub' { key = function() return (S:gsub(P, '')) end }\n"
        "route 'GET /gmatch' { key = function() for x in S:gmatch(P) do end return 'x' end }\n"
        "route 'GET /pcall' { key = function()\n"
        "  for i = 1, 1e9 do pcall(string.find, S, P) end return 'swallowed' end }\n"
        "route 'GET /plain' { key = function()\n"
        "  local s = string.rep('a', 1e6)\n"
        "  return tostring(string.find(s, string.rep('a', 5e5) .. 'b', 1, true))\n"
        "end }\n"
        "route 'GET /ok' { key = function() return (('a=1; b=2'):gsub('%s', '')) end }\n",
        &lim);
    CHECK(h != NULL);
    if (h == NULL) return;
    static const char *const paths[] = {"/find", "/method", "/gsub", "/gmatch", "/pcall",
                                        "/plain"};
    char key[256];
    int rc;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        uint64_t kills = lua_host_budget_kill_count();
        double took = timed_decide(h, paths[i], &rc, key, sizeof key);
        fprintf(stderr, "  %s: rc %d after %.0f ms\n", paths[i], rc, took * 1000);
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_STR(key, "<error>");
        CHECK_EQ_INT(lua_host_budget_kill_count(), kills + 1);
        CHECK(took < 1.0);
        /* The host answers at once afterwards. */
        took = timed_decide(h, "/ok", &rc, key, sizeof key);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(key, "a=1;b=2");
        CHECK(took < 0.05);
    }
    lua_host_destroy(h);
}

struct decide_path {
    struct lua_host *h;
    const char *path;
};

static void decide_path_fn(void *p)
{
    struct decide_path *d = p;
    struct policy_request r = get(d->path);
    decide_key(d->h, &r, NULL);
}

TEST(pattern_kills_are_logged_with_file_and_line)
{
    struct lua_limits lim = {.time_ms = 50};
    struct lua_host *h = host_for(
        "route 'GET /find' { key = function()\n"
        "  return tostring(string.find(string.rep('a', 30000), string.rep('a*', 30) .. 'b'))\n"
        "end }\n",
        &lim);
    CHECK(h != NULL);
    if (h == NULL) return;
    char log[4096];
    struct decide_path d = {h, "/find"};
    capture_stderr(decide_path_fn, &d, log, sizeof log);
    CHECK(strstr(log, "policy error in route 'GET /find'") != NULL);
    CHECK(strstr(log, "test.lua:2: ") != NULL);
    CHECK(strstr(log, "in pattern matching") != NULL);
    lua_host_destroy(h);
}

TEST(time_limit_stops_slow_c_calls_and_pcall_cannot_swallow_it)
{
    /* Instruction budgets these calls stay far inside: only the clock stops them. */
    struct lua_limits lim = {.memory_bytes = 64u << 20, .instructions = 100000000,
                             .time_ms = 100};
    struct lua_host *h = host_for(
        "route 'GET /rep' { key = function()\n"
        "  for i = 1, 40000 do local s = string.rep('x', 4e6) end return 'done' end }\n"
        "route 'GET /insert' { key = function()\n"
        "  local t = {} for i = 1, 1e6 do t[i] = i end\n"
        "  for i = 1, 40000 do table.insert(t, 1, i) table.remove(t, 1) end return 'done' end }\n"
        "route 'GET /pcall' { key = function()\n"
        "  for i = 1, 1e9 do pcall(string.rep, 'x', 4e6) end return 'swallowed' end }\n"
        "route 'GET /spin' { key = function() local x = 0 while true do x = x + 1 end end }\n"
        "route 'GET /ok' { key = 'ok' }\n",
        &lim);
    CHECK(h != NULL);
    if (h == NULL) return;
    static const char *const paths[] = {"/rep", "/insert", "/pcall", "/spin"};
    char key[256];
    int rc;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        uint64_t kills = lua_host_time_kill_count();
        double took = timed_decide(h, paths[i], &rc, key, sizeof key);
        fprintf(stderr, "  %s: rc %d after %.0f ms\n", paths[i], rc, took * 1000);
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_INT(lua_host_time_kill_count(), kills + 1);
        CHECK(took < 1.0);
        timed_decide(h, "/ok", &rc, key, sizeof key);
        CHECK_EQ_STR(key, "ok");
    }
    lua_host_destroy(h);
}

TEST(slow_top_level_code_fails_the_load_with_file_and_line)
{
    struct lua_limits lim = {.instructions = 100000000, .time_ms = 20};
    char err[512];
    int rc;
    double t0 = now_s();
    struct policy_set *set = load_one(
        "route 'GET /ok' { key = 'ok' }\n"
        "local n = 0 for i = 1, 1e9 do n = n + #string.rep('x', 1e5) end\n",
        &lim, err, sizeof err, &rc);
    double took = now_s() - t0;
    CHECK(set == NULL);
    CHECK_EQ_INT(rc, -EINVAL);
    CHECK(strstr(err, "test.lua:2: time limit exceeded (200 ms)") != NULL);
    fprintf(stderr, "  load stopped after %.0f ms: %s\n", took * 1000, err);
    CHECK(took < 2.0);

    t0 = now_s();
    set = load_one("local S = string.rep('a', 30000)\n"
                   "local x = S:find(string.rep('a*', 30) .. 'b')\n",
                   &lim, err, sizeof err, &rc);
    took = now_s() - t0;
    CHECK(set == NULL);
    CHECK(strstr(err, "test.lua:2: ") != NULL);
    CHECK(strstr(err, "in pattern matching") != NULL);
    CHECK(took < 2.0);
    policy_set_unref(set);
}

/* ---- issue 8: shared metatables and credentials (items 21, 17) --------------------------- */

static struct lua_host *host_for_files(const char *const files[][2], size_t n)
{
    char err[512];
    const char *dir = policy_dir(files, n);
    struct policy_set *set = NULL;
    int rc = policy_set_load(dir, LUA_DIR, NULL, &set, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "load failed (%d): %s\n", rc, err);
        return NULL;
    }
    struct lua_host *h = NULL;
    rc = lua_host_create(set, NULL, &h, err, sizeof err);
    policy_set_unref(set);
    if (rc != 0) fprintf(stderr, "host create failed (%d): %s\n", rc, err);
    return h;
}

TEST(one_policy_file_cannot_change_another_files_decisions)
{
    const char *const files[][2] = {
        {"a_tamper.lua",
         "route 'GET /tamper' { key = function(req)\n"
         "  local n = 0\n"
         "  local function try(f) if pcall(f) then n = n + 1 end end\n"
         "  try(function() getmetatable(req).__index = function() return { page = '1' } end end)\n"
         "  try(function() rawset(getmetatable(req), '__index', {}) end)\n"
         "  try(function()\n"
         "    setmetatable(req, { __index = function() return { page = '1' } end }) end)\n"
         "  try(function() json.null.page = '1' end)\n"
         "  try(function() rawset(json.null, 'page', '1') end)\n"
         "  try(function() getmetatable(json.array {}).__index = { page = '1' } end)\n"
         "  try(function() getmetatable('').__index = {} end)\n"
         "  try(function() string.find = function() return 1 end end)\n"
         "  return 'tampered:' .. n end }\n"},
        {"b_jobs.lua",
         "route 'GET /jobs' { key = function(req)\n"
         "  return 'jobs:' .. tostring(req.query.page) .. ':' .. tostring(json.null.page) ..\n"
         "    ':' .. tostring(json.array({}).page) .. ':' .. tostring(('x'):find('x')) end }\n"},
    };
    struct lua_host *h = host_for_files(files, 2);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_request jobs = {.method = "GET", .path = "/jobs", .query = "page=3"};
    CHECK_EQ_STR(decide_key(h, &jobs, NULL), "jobs:3:nil:nil:1");
    struct policy_request tamper = get("/tamper");
    CHECK_EQ_STR(decide_key(h, &tamper, NULL), "tampered:0");
    CHECK_EQ_STR(decide_key(h, &jobs, NULL), "jobs:3:nil:nil:1");
    lua_host_destroy(h);
}

TEST(empty_authorization_is_a_credential_and_not_memoised_as_anonymous)
{
    struct lua_host *h = host_for("route 'GET /shared' { key = 'shared' }\n", NULL);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_decision d;
    struct policy_request anon = get("/shared");
    CHECK_EQ_INT(lua_host_decide(h, &anon, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_CACHE);
    policy_decision_free(&d);
    struct http_header empty_auth = {.name = "authorization", .value = ""};
    struct policy_request cred = anon;
    cred.headers = &empty_auth;
    cred.n_headers = 1;
    for (int i = 0; i < 2; i++) { /* the second time through the memo */
        CHECK_EQ_INT(lua_host_decide(h, &cred, &d), 0);
        CHECK_EQ_INT(d.action, POLICY_BYPASS);
        CHECK_EQ_STR(d.reason, "credentials");
        policy_decision_free(&d);
    }
    /* No route: the default rules, likewise. */
    struct policy_request other = get("/other");
    other.headers = &empty_auth;
    other.n_headers = 1;
    CHECK_EQ_INT(lua_host_decide(h, &other, &d), 0);
    CHECK_EQ_INT(d.action, POLICY_BYPASS);
    policy_decision_free(&d);
    lua_host_destroy(h);
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/test_lua_host.XXXXXX");
    if (mkdtemp(tmp_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(sandbox_has_no_dangerous_globals);
    RUN(load_refuses_bytecode);
    RUN(globals_and_libraries_are_read_only);
    RUN(instruction_budget_stops_loops_and_pcall_cannot_swallow_it);
    RUN(memory_limit_stops_hoarding_and_host_recovers);
    RUN(runtime_errors_are_logged_with_route_and_file_line);
    RUN(load_errors_name_file_and_line);
    RUN(load_reports_missing_directories);
    RUN(load_budget_applies_to_policy_files);
    RUN(shipped_policies_decide_users);
    RUN(shipped_policies_credentials_and_defaults);
    RUN(set_outlives_load_and_hosts_share_it);
    RUN(memo_answers_pure_routes_only);
    RUN(cache_get_yields_on_a_miss_and_resumes_with_the_remote_value);
    RUN(cache_mget_fetches_all_misses_in_one_yield);
    RUN(cache_yields_are_bounded_per_request);
    RUN(instruction_budget_counts_across_yields);
    RUN(cache_get_hit_cost);
    RUN(pathological_patterns_fail_the_decision_within_the_time_limit);
    RUN(pattern_kills_are_logged_with_file_and_line);
    RUN(time_limit_stops_slow_c_calls_and_pcall_cannot_swallow_it);
    RUN(slow_top_level_code_fails_the_load_with_file_and_line);
    RUN(one_policy_file_cannot_change_another_files_decisions);
    RUN(empty_authorization_is_a_credential_and_not_memoised_as_anonymous);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return TEST_SUMMARY();
}
