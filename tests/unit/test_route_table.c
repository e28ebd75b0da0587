/*
 * test_route_table.c - the C route table (src/policy/route_table.c) against the Lua policy
 * library it replaces on the request path.
 *
 * The differential tests feed generated requests (odd paths, percent-escapes, params,
 * query orders and duplicates, ignored params, credentials present, absent and empty,
 * repeated and mixed-case headers, control bytes) through lua_host_decide (the table
 * first) and lua_host_decide_lua (Lua alone) for the shipped policies (all together and
 * each file alone) and for generated policy sets, and require equal decisions field by
 * field.  Each also requires that the table decided most requests itself, so a table
 * that silently sent everything to Lua would fail.  The PRNG is seeded: a failure prints
 * the set, the request and both decisions, and reproduces.
 */
#include "lua_host.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#ifndef CACHEGW_SOURCE_DIR
#error "CACHEGW_SOURCE_DIR must name the source tree"
#endif

#define SHIPPED_POLICIES CACHEGW_SOURCE_DIR "/policies"

static char tmp_root[256];
static int tmp_seq;

static const char *lua_dir(void)
{
    const char *d = getenv("ROUTE_TABLE_TEST_LUA_DIR"); /* to try a work-in-progress copy */
    return d != NULL ? d : CACHEGW_SOURCE_DIR "/lua";
}

/* ---- PRNG and generated text ----------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t x = rng_state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static size_t pick(size_t n) { return (size_t)(rnd() % n); }
static int chance(int percent) { return (int)pick(100) < percent; }

struct sbuf {
    char d[8192];
    size_t len;
};

static void sb_add(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->d + b->len, sizeof b->d - b->len, fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n;
    if (b->len >= sizeof b->d) b->len = sizeof b->d - 1;
}

/* ---- loading ----------------------------------------------------------------------------- */

static const char *write_dir(const char *const files[][2], size_t n)
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

static struct lua_host *host_from_dir(const char *dir, bool quiet)
{
    char err[512];
    struct policy_set *set = NULL;
    int rc = policy_set_load(dir, lua_dir(), NULL, &set, err, sizeof err);
    if (rc != 0) {
        if (!quiet) fprintf(stderr, "load %s failed (%d): %s\n", dir, rc, err);
        return NULL;
    }
    struct lua_host *h = NULL;
    rc = lua_host_create(set, NULL, &h, err, sizeof err);
    policy_set_unref(set);
    if (rc != 0) fprintf(stderr, "host create failed (%d): %s\n", rc, err);
    return h;
}

static struct lua_host *host_for(const char *source, bool quiet)
{
    const char *const files[][2] = {{"test.lua", source}};
    const char *dir = write_dir(files, 1);
    return dir ? host_from_dir(dir, quiet) : NULL;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strdup(buf);
}

/* ---- requests ---------------------------------------------------------------------------- */

#define MAX_HEADERS 8

struct gen_req {
    char method[16];
    char path[8192];
    char query[8192];
    bool has_query;
    char names[MAX_HEADERS][64];
    char values[MAX_HEADERS][256];
    struct http_header headers[MAX_HEADERS];
    size_t n_headers;
    struct policy_request pr;
};

/* Segments: the shipped policies' literals, ids, empties, escapes, control and high bytes. */
static const char *const SEGS[] = {
    "users", "posts", "jobs", "stats", "profile", "messages", "feed", "categories",
    "locations", "conversations", "notifications", "a", "b", "c", "static", "v1", "1", "42",
    "007", "", "%41", "%2F", "%0a", "%0A%7f", "%zz", "%", "a%20b", "x+y", "%E2%82%AC", "\x01",
    "\x7f", "\xc3\xa9", "*", ":id", "..", ".", "users%2F1", "_",
};
static const char *const QNAMES[] = {
    "a", "b", "page", "q", "utm_source", "utm_", "utm%5Fx", "fbclid", "gclid", "sort", "a+b",
    "%41", "", "x%0Ay", "Z", "tag", "%zz", "utm",
};
static const char *const QVALS[] = {
    "1", "2", "", "x+y", "%20", "%2B", "%zz", "%0A", "a=b", "%e2%82%ac", "-._~", "\x02",
};
static const char *const METHODS[] = {"GET", "GET", "GET", "HEAD", "POST", "PUT", "PATCH",
                                      "DELETE", "OPTIONS", "PURGE"};
static const char *const HNAMES[] = {
    "authorization", "Authorization", "cookie", "Cookie", "x-user-id", "X-User-ID", "x-a",
    "X-A", "accept", "x-tenant",
};
static const char *const HVALS[] = {
    "", "Bearer t1", "Bearer t2", "sid=1", "sid=2; theme=dark", "u1", "u2", " ", "v\x01",
};

static void gen_path(struct sbuf *b)
{
    int n = (int)pick(5);
    if (n == 0 && chance(20)) {
        sb_add(b, chance(50) ? "/" : "*");
        return;
    }
    if (n == 0) n = 1;
    for (int i = 0; i < n; i++) {
        if (chance(60) && i < 2)
            sb_add(b, "/%s", SEGS[pick(11)]);
        else if (chance(40))
            sb_add(b, "/%llu", (unsigned long long)pick(100000));
        else
            sb_add(b, "/%s", SEGS[pick(sizeof SEGS / sizeof *SEGS)]);
    }
    if (chance(8)) sb_add(b, "/");
}

static void gen_request(struct gen_req *g)
{
    memset(g, 0, sizeof *g);
    snprintf(g->method, sizeof g->method, "%s", METHODS[pick(sizeof METHODS / sizeof *METHODS)]);
    struct sbuf b = {.len = 0};
    gen_path(&b);
    if (chance(2)) { /* a long path: keys past 512 bytes are bounded */
        for (int i = 0; i < 40; i++) sb_add(&b, "/segment%02d", i);
    }
    snprintf(g->path, sizeof g->path, "%s", b.d);
    g->pr.method = g->method;
    g->pr.path = g->path;

    if (chance(60)) {
        struct sbuf q = {.len = 0};
        int n = pick(1000) < 3 ? 260 : (int)pick(6);
        for (int i = 0; i < n; i++) {
            if (i > 0) sb_add(&q, chance(5) ? "&&" : "&");
            const char *name = QNAMES[pick(sizeof QNAMES / sizeof *QNAMES)];
            if (chance(10)) sb_add(&q, "%s", name);
            else sb_add(&q, "%s=%s", name, QVALS[pick(sizeof QVALS / sizeof *QVALS)]);
        }
        if (chance(5)) sb_add(&q, "&");
        snprintf(g->query, sizeof g->query, "%s", q.d);
        g->has_query = !chance(5) || q.len > 0;
        g->pr.query = g->has_query ? g->query : NULL;
    }

    int nh = chance(30) ? 0 : (int)pick(5);
    for (int i = 0; i < nh; i++) {
        const char *name = HNAMES[pick(sizeof HNAMES / sizeof *HNAMES)];
        const char *value = HVALS[pick(sizeof HVALS / sizeof *HVALS)];
        snprintf(g->names[i], sizeof g->names[i], "%s", name);
        snprintf(g->values[i], sizeof g->values[i], "%s", value);
        g->headers[i].name = g->names[i];
        g->headers[i].value = g->values[i];
    }
    g->n_headers = (size_t)nh;
    g->pr.headers = g->headers;
    g->pr.n_headers = g->n_headers;
    g->pr.client_ip = "10.0.0.1";
}

/* ---- comparing decisions ------------------------------------------------------------------ */

static bool str_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL) return a == b;
    return strcmp(a, b) == 0;
}

static const char *why_different(const struct policy_decision *a, const struct policy_decision *b)
{
    if (a->action != b->action) return "action";
    if (!str_eq(a->key, b->key)) return "key";
    if (a->ttl_ms != b->ttl_ms || a->swr_ms != b->swr_ms || a->sie_ms != b->sie_ms)
        return "ttl/swr/sie";
    if (a->per_user != b->per_user) return "per_user";
    if (a->ignore_no_store != b->ignore_no_store) return "ignore_no_store";
    if (a->has_response_hook != b->has_response_hook) return "has_response_hook";
    if (a->route_id != b->route_id) return "route_id";
    if (!str_eq(a->route, b->route)) return "route";
    if (!str_eq(a->reason, b->reason)) return "reason";
    if (a->n_tags != b->n_tags) return "tag count";
    for (size_t i = 0; i < a->n_tags; i++)
        if (!str_eq(a->tags[i], b->tags[i])) return "tags";
    if (a->n_invalidate != b->n_invalidate) return "invalidate count";
    for (size_t i = 0; i < a->n_invalidate; i++) {
        const struct policy_target *x = &a->invalidate[i], *y = &b->invalidate[i];
        if (!str_eq(x->key, y->key) || x->prefix != y->prefix || x->tag != y->tag)
            return "invalidate targets";
    }
    return NULL;
}

static void print_decision(const char *who, int rc, const struct policy_decision *d)
{
    fprintf(stderr, "  %s: rc=%d action=%d key=%s route=%d(%s) reason=%s ttl=%lld per_user=%d"
                    " tags=%zu inval=%zu\n",
            who, rc, d->action, d->key ? d->key : "(nil)", d->route_id,
            d->route ? d->route : "-", d->reason, (long long)d->ttl_ms, d->per_user, d->n_tags,
            d->n_invalidate);
    for (size_t i = 0; i < d->n_tags; i++) fprintf(stderr, "    tag %s\n", d->tags[i]);
    for (size_t i = 0; i < d->n_invalidate; i++)
        fprintf(stderr, "    inval %s prefix=%d tag=%d\n", d->invalidate[i].key,
                d->invalidate[i].prefix, d->invalidate[i].tag);
}

struct diff_stats {
    size_t requests, mismatches;
    uint64_t table_decided;
};

/* Runs n generated requests through both paths, counting into *st. */
static void differential(struct lua_host *h, const char *what, size_t n, struct diff_stats *st)
{
    uint64_t before = lua_host_table_decisions(h);
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        struct gen_req g;
        gen_request(&g);
        struct policy_decision a, b;
        int ra = lua_host_decide(h, &g.pr, &a);
        int rb = lua_host_decide_lua(h, &g.pr, &b);
        const char *why = ra != rb ? "return code" : why_different(&a, &b);
        st->requests++;
        if (why != NULL) {
            st->mismatches++;
            if (shown++ < 5) {
                fprintf(stderr, "MISMATCH (%s) in %s: %s %s%s%s, %zu headers\n", why, what,
                        g.method, g.path, g.pr.query ? "?" : "", g.pr.query ? g.pr.query : "",
                        g.n_headers);
                for (size_t k = 0; k < g.n_headers; k++)
                    fprintf(stderr, "    %s: %s\n", g.names[k], g.values[k]);
                print_decision("table", ra, &a);
                print_decision("lua  ", rb, &b);
            }
        }
        policy_decision_free(&a);
        policy_decision_free(&b);
    }
    st->table_decided += lua_host_table_decisions(h) - before;
}

/* ---- generated policies ------------------------------------------------------------------- */

static const char *const PLITS[] = {"users", "posts", "a", "b", "1", "", "%41", "x+y", "static"};
static const char *const PNAMES[] = {"id", "pid", "x"};

/* A template using the route's params (names[0..np), wild) and placeholders. */
static void gen_template(struct sbuf *b, const char *const *names, int np, bool wild)
{
    int n = 1 + (int)pick(4);
    for (int i = 0; i < n; i++) {
        switch (pick(11)) {
        case 0: sb_add(b, "lit%d:", (int)pick(3)); break;
        case 1:
            if (np > 0) sb_add(b, "{%s}", names[pick((size_t)np)]);
            break;
        case 2:
            if (wild) sb_add(b, "{*}");
            break;
        case 3: sb_add(b, "{query}"); break;
        case 4: sb_add(b, "{query.%s}", chance(50) ? "a" : "page"); break;
        case 5: sb_add(b, "{header.%s}", chance(50) ? "x-user-id" : "X-A"); break;
        case 6: sb_add(b, "{method}"); break;
        case 7: sb_add(b, "{path}"); break;
        case 8: sb_add(b, "{auth_hash}"); break;
        case 9: sb_add(b, ":"); break;
        default: sb_add(b, "{query.%%41}"); break;
        }
    }
}

static void gen_policy(struct sbuf *src)
{
    int routes = 3 + (int)pick(10);
    for (int r = 0; r < routes; r++) {
        struct sbuf pat = {.len = 0};
        const char *names[4];
        int np = 0;
        bool wild = false;
        int nseg = (int)pick(4);
        for (int s = 0; s < nseg; s++) {
            size_t k = pick(10);
            if (k < 6 || np >= 3) {
                const char *lit = PLITS[pick(sizeof PLITS / sizeof *PLITS)];
                sb_add(&pat, "/%s", lit);
            } else if (k < 9 || s != nseg - 1) {
                names[np] = PNAMES[np];
                sb_add(&pat, "/:%s", names[np]);
                np++;
            } else {
                sb_add(&pat, "/*");
                wild = true;
            }
        }
        if (pat.len == 0) sb_add(&pat, "/");
        size_t kind = pick(10);
        if (kind < 5) { /* read */
            sb_add(src, "route '%s %s' {", chance(30) ? "GET|HEAD" : (chance(20) ? "HEAD" : "GET"),
                   pat.d);
            if (chance(75)) {
                struct sbuf t = {.len = 0};
                gen_template(&t, names, np, wild);
                sb_add(src, " key = '%s',", t.d);
                if (strstr(t.d, "{auth_hash}") && chance(70)) sb_add(src, " per_user = true,");
                else if (chance(10)) sb_add(src, " per_user = false,");
            } else if (chance(20)) {
                sb_add(src, " key = function(req) return 'fn:' .. req.path end,");
            }
            if (chance(40)) sb_add(src, " ttl = %d,", (int)pick(1000));
            if (chance(20)) sb_add(src, " stale_while_revalidate = 1.5,");
            if (chance(20)) sb_add(src, " stale_if_error = %d,", (int)pick(100));
            if (chance(20)) sb_add(src, " ignore_query = { 'page', 'q*' },");
            if (chance(10)) sb_add(src, " ignore_no_store = true,");
            if (chance(15)) sb_add(src, " bypass = true,");
            if (chance(10)) sb_add(src, " bypass = function(req) return req.query.a == '1' end,");
            if (chance(15)) sb_add(src, " on_response = function() return nil end,");
            if (chance(30)) {
                struct sbuf t = {.len = 0};
                gen_template(&t, names, np, wild);
                sb_add(src, " tags = { 'tag:%s', 'all' },", t.d);
            }
            if (chance(5)) sb_add(src, " tags = function(req) return { 'f' } end,");
            if (chance(5)) sb_add(src, " name = 'named route %d',", r);
        } else if (kind < 9) { /* write */
            static const char *const W[] = {"POST", "PUT", "PATCH", "DELETE", "PUT|PATCH"};
            sb_add(src, "route '%s %s' {", W[pick(5)], pat.d);
            if (chance(80)) {
                sb_add(src, " invalidate = {");
                int n = (int)pick(4);
                for (int i = 0; i < n; i++) {
                    struct sbuf t = {.len = 0};
                    gen_template(&t, names, np, wild);
                    sb_add(src, " '%s%s',", t.d, chance(40) ? "*" : "");
                }
                sb_add(src, " },");
            }
            if (chance(40)) {
                struct sbuf t = {.len = 0};
                gen_template(&t, names, np, wild);
                sb_add(src, " invalidate_tags = { 'tag:%s' },", t.d);
            }
            if (chance(5)) sb_add(src, " invalidate = function(req) return { 'x:*' } end,");
            if (chance(10)) sb_add(src, " bypass = true,");
            if (chance(20)) sb_add(src, " ignore_query = { 'a' },");
        } else { /* '*' */
            sb_add(src, "route '* %s' {", pat.d);
            sb_add(src, chance(70) ? " bypass = true," :
                                     " bypass = function(req) return req.method == 'POST' end,");
        }
        sb_add(src, " }\n");
    }
}

/* ---- tests -------------------------------------------------------------------------------- */

static const char *const SHIPPED[] = {"jobs.lua", "messaging.lua", "posts.lua", "reference.lua",
                                      "users.lua"};

TEST(shipped_policies_decide_as_lua)
{
    rng_state = 0x9E3779B97F4A7C15ULL;
    struct diff_stats st = {0};
    struct lua_host *h = host_from_dir(SHIPPED_POLICIES, false);
    CHECK(h != NULL);
    if (h == NULL) return;
    CHECK(lua_host_has_route_table(h));
    differential(h, "policies/", 40000, &st);
    lua_host_destroy(h);

    for (size_t i = 0; i < sizeof SHIPPED / sizeof *SHIPPED; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", SHIPPED_POLICIES, SHIPPED[i]);
        char *src = slurp(path);
        CHECK(src != NULL);
        if (src == NULL) continue;
        const char *const files[][2] = {{SHIPPED[i], src}};
        const char *dir = write_dir(files, 1);
        h = dir ? host_from_dir(dir, false) : NULL;
        free(src);
        CHECK(h != NULL);
        if (h == NULL) continue;
        differential(h, SHIPPED[i], 8000, &st);
        lua_host_destroy(h);
    }
    fprintf(stderr, "  shipped: %zu requests, %zu mismatches, %llu decided by the table\n",
            st.requests, st.mismatches, (unsigned long long)st.table_decided);
    CHECK_EQ_INT(st.mismatches, 0);
    /* No shipped route has a function other than on_response, so everything but the
     * queries of more than 256 params is the table's. */
    CHECK(st.table_decided > st.requests * 9 / 10);
}

TEST(generated_policies_decide_as_lua)
{
    rng_state = 0xD1B54A32D192ED03ULL;
    struct diff_stats st = {0};
    int sets = 0, refused = 0;
    while (sets < 60) {
        struct sbuf src = {.len = 0};
        gen_policy(&src);
        struct lua_host *h = host_for(src.d, true);
        if (h == NULL) { /* duplicate routes, or a per_user key without {auth_hash} */
            refused++;
            CHECK(refused < 2000);
            if (refused >= 2000) break;
            continue;
        }
        sets++;
        CHECK(lua_host_has_route_table(h));
        size_t before = st.mismatches;
        differential(h, "a generated set", 3000, &st);
        if (st.mismatches != before) fprintf(stderr, "the set was:\n%s\n", src.d);
        lua_host_destroy(h);
    }
    fprintf(stderr, "  generated: %d sets (%d refused by the loader), %zu requests, "
                    "%zu mismatches, %llu decided by the table\n",
            sets, refused, st.requests, st.mismatches, (unsigned long long)st.table_decided);
    CHECK_EQ_INT(st.mismatches, 0);
    CHECK(st.table_decided > st.requests / 2);
}

/* Decides req with the table and returns a copy of the key ("" when none). */
static const char *key_of(struct lua_host *h, const struct policy_request *r,
                          struct policy_decision *d)
{
    static char key[1024];
    CHECK_EQ_INT(lua_host_decide(h, r, d), 0);
    snprintf(key, sizeof key, "%s", d->key ? d->key : "");
    return key;
}

TEST(precedence_literal_param_wildcard_and_head_fallback)
{
    struct lua_host *h = host_for("route 'GET /a/*' { key = 'wild:{*}' }\n"
                                  "route 'GET /a/:id' { key = 'param:{id}' }\n"
                                  "route 'GET /a/b' { key = 'lit' }\n"
                                  "route 'POST /a/b/c' { invalidate = { 'x:*' } }\n"
                                  "route 'GET /a/:id/c' { key = 'pc:{id}' }\n",
                                  false);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_decision d;
    uint64_t t0 = lua_host_table_decisions(h);
    struct policy_request r = {.method = "GET", .path = "/a/b"};
    CHECK_EQ_STR(key_of(h, &r, &d), "lit");
    policy_decision_free(&d);
    r.path = "/a/x%41";
    CHECK_EQ_STR(key_of(h, &r, &d), "param:xA");
    policy_decision_free(&d);
    /* The literal branch /a/b has no GET for /c: back to the param branch. */
    r.path = "/a/b/c";
    CHECK_EQ_STR(key_of(h, &r, &d), "pc:b");
    policy_decision_free(&d);
    /* An empty segment is no param: the wildcard takes it. */
    r.path = "/a/";
    CHECK_EQ_STR(key_of(h, &r, &d), "wild:");
    policy_decision_free(&d);
    r.path = "/a/x/y/%0a";
    CHECK_EQ_STR(key_of(h, &r, &d), "wild:x/y/%0A");
    policy_decision_free(&d);
    /* HEAD finds the GET routes. */
    r.method = "HEAD";
    r.path = "/a/b";
    CHECK_EQ_STR(key_of(h, &r, &d), "lit");
    CHECK_EQ_INT(d.action, POLICY_CACHE);
    policy_decision_free(&d);
    CHECK_EQ_INT(lua_host_table_decisions(h), t0 + 6);
    lua_host_destroy(h);
}

TEST(function_routes_go_to_lua_and_on_response_routes_do_not)
{
    struct lua_host *h = host_for("route 'GET /f' { key = function(req) return 'fn' end }\n"
                                  "route 'GET /o/:id' { key = 'o:{id}', ttl = 5,\n"
                                  "  on_response = function() return nil end }\n",
                                  false);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_decision d;
    uint64_t t0 = lua_host_table_decisions(h);
    struct policy_request f = {.method = "GET", .path = "/f"};
    CHECK_EQ_STR(key_of(h, &f, &d), "fn");
    policy_decision_free(&d);
    CHECK_EQ_INT(lua_host_table_decisions(h), t0);
    struct policy_request o = {.method = "GET", .path = "/o/7"};
    CHECK_EQ_STR(key_of(h, &o, &d), "o:7");
    CHECK(d.has_response_hook);
    CHECK_EQ_INT(d.ttl_ms, 5000);
    CHECK_EQ_INT(d.route_id, 2);
    policy_decision_free(&d);
    CHECK_EQ_INT(lua_host_table_decisions(h), t0 + 1);
    lua_host_destroy(h);
}

TEST(unrouted_requests_are_decided_in_c)
{
    struct lua_host *h = host_for("-- no routes\n", false);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_decision d;
    uint64_t t0 = lua_host_table_decisions(h);
    struct policy_request r = {.method = "GET", .path = "/x", .query = "b=2&utm_source=z&a=1"};
    CHECK_EQ_STR(key_of(h, &r, &d), "GET:/x?a=1&b=2");
    CHECK_EQ_INT(d.action, POLICY_DEFAULT);
    CHECK_EQ_STR(d.reason, "no_route");
    policy_decision_free(&d);
    /* Credentials: bypass, an empty Authorization counts, an empty Cookie does not. */
    struct http_header auth[] = {{"Authorization", ""}};
    r.headers = auth;
    r.n_headers = 1;
    CHECK_EQ_STR(key_of(h, &r, &d), "");
    CHECK_EQ_INT(d.action, POLICY_BYPASS);
    CHECK_EQ_STR(d.reason, "credentials");
    policy_decision_free(&d);
    struct http_header cookie[] = {{"cookie", ""}};
    r.headers = cookie;
    CHECK_EQ_STR(key_of(h, &r, &d), "GET:/x?a=1&b=2");
    policy_decision_free(&d);
    /* Writes keep the key of a GET of the same URL. */
    struct policy_request w = {.method = "DELETE", .path = "/x"};
    CHECK_EQ_STR(key_of(h, &w, &d), "GET:/x");
    CHECK_EQ_INT(d.action, POLICY_DEFAULT);
    policy_decision_free(&d);
    CHECK_EQ_INT(lua_host_table_decisions(h), t0 + 4);

    /* More than 256 params: Lua refuses them (a policy error), and so the table asks it. */
    static char q[2000];
    size_t n = 0;
    for (int i = 0; i < 257; i++) n += (size_t)snprintf(q + n, sizeof q - n, "a=%d&", i % 10);
    struct policy_request big = {.method = "GET", .path = "/x", .query = q};
    CHECK_EQ_INT(lua_host_decide(h, &big, &d), -1);
    CHECK_EQ_STR(d.reason, "policy_error");
    policy_decision_free(&d);
    CHECK_EQ_INT(lua_host_table_decisions(h), t0 + 4);
    lua_host_destroy(h);
}

TEST(templates_auth_hash_headers_and_long_keys)
{
    struct lua_host *h = host_for(
        "route 'GET /u/:id' { key = 'u:{id}:{auth_hash}:{header.x-user-id}:{query.a}',"
        " per_user = true, tags = { 'user:{id}' } }\n"
        "route 'PUT /u/:id' { invalidate = { 'u:{id}:*', 'list' },"
        " invalidate_tags = { 'user:{id}' } }\n"
        "route 'GET /long/*' { key = 'L:{*}' }\n",
        false);
    CHECK(h != NULL);
    if (h == NULL) return;
    struct policy_decision a, b;
    struct http_header hs[] = {{"Authorization", "Bearer x"}, {"Cookie", "s=1"},
                               {"X-User-Id", "u\x01"}, {"x-user-id", "2"}};
    struct policy_request r = {.method = "GET", .path = "/u/%41", .query = "a=%0a+b&a=2",
                               .headers = hs, .n_headers = 4};
    CHECK_EQ_INT(lua_host_decide(h, &r, &a), 0);
    CHECK_EQ_INT(lua_host_decide_lua(h, &r, &b), 0);
    CHECK_EQ_STR(a.key, b.key);
    CHECK(a.key != NULL && strncmp(a.key, "u:A:", 4) == 0);
    CHECK(a.key != NULL && strstr(a.key, ":u%01, 2:%0A b") != NULL);
    CHECK_EQ_INT(a.n_tags, 1);
    if (a.n_tags == 1) CHECK_EQ_STR(a.tags[0], "user:A");
    policy_decision_free(&a);
    policy_decision_free(&b);

    struct policy_request put = {.method = "PUT", .path = "/u/9"};
    CHECK_EQ_INT(lua_host_decide(h, &put, &a), 0);
    CHECK_EQ_INT(a.action, POLICY_INVALIDATE);
    CHECK_EQ_INT(a.n_invalidate, 3);
    if (a.n_invalidate == 3) {
        CHECK_EQ_STR(a.invalidate[0].key, "u:9:");
        CHECK(a.invalidate[0].prefix && !a.invalidate[0].tag);
        CHECK_EQ_STR(a.invalidate[1].key, "list");
        CHECK(!a.invalidate[1].prefix && !a.invalidate[1].tag);
        CHECK_EQ_STR(a.invalidate[2].key, "user:9");
        CHECK(!a.invalidate[2].prefix && a.invalidate[2].tag);
    }
    policy_decision_free(&a);

    static char path[2048];
    size_t n = (size_t)snprintf(path, sizeof path, "/long");
    for (int i = 0; i < 150; i++) n += (size_t)snprintf(path + n, sizeof path - n, "/s%d", i);
    struct policy_request lr = {.method = "GET", .path = path};
    CHECK_EQ_INT(lua_host_decide(h, &lr, &a), 0);
    CHECK_EQ_INT(lua_host_decide_lua(h, &lr, &b), 0);
    CHECK_EQ_STR(a.key, b.key);
    CHECK(a.key != NULL && strlen(a.key) == 512 && a.key[447] == '#');
    policy_decision_free(&a);
    policy_decision_free(&b);
    lua_host_destroy(h);
}

/* How long a decision takes with the table and in Lua (printed; asserted loosely). */
TEST(table_decisions_cost)
{
    struct lua_host *h = host_from_dir(SHIPPED_POLICIES, false);
    CHECK(h != NULL);
    if (h == NULL) return;
    char path[64];
    struct policy_request r = {.method = "GET", .path = path};
    double t[2];
    for (int lua = 0; lua < 2; lua++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int i = 0; i < 20000; i++) {
            snprintf(path, sizeof path, "/users/%d", i);
            struct policy_decision d;
            if (lua) lua_host_decide_lua(h, &r, &d);
            else lua_host_decide(h, &r, &d);
            policy_decision_free(&d);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        t[lua] = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 20000;
    }
    fprintf(stderr, "  GET /users/:id: table %.0f ns, Lua %.0f ns per decision\n", t[0], t[1]);
    CHECK(t[0] < t[1]);
    lua_host_destroy(h);
}

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/test_route_table.XXXXXX");
    if (mkdtemp(tmp_root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(precedence_literal_param_wildcard_and_head_fallback);
    RUN(function_routes_go_to_lua_and_on_response_routes_do_not);
    RUN(unrouted_requests_are_decided_in_c);
    RUN(templates_auth_hash_headers_and_long_keys);
    RUN(shipped_policies_decide_as_lua);
    RUN(generated_policies_decide_as_lua);
    RUN(table_decisions_cost);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return TEST_SUMMARY();
}
