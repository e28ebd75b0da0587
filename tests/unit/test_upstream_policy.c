/*
 * test_upstream_policy.c - upstream declarations and Host routing as the C side sees them
 * (issue 13): policy_set_upstreams copies what gateway/policy.lua validated; decisions carry
 * the route's upstream, idempotent flag and reject status, identically whether the route
 * table (lua_host_decide) or Lua alone (lua_host_decide_lua) decides, and the memo keeps
 * requests for different hosts apart.
 */
#include "lua_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

#ifndef CACHEGW_SOURCE_DIR
#error "CACHEGW_SOURCE_DIR must name the source tree"
#endif

static char tmp_root[] = "/tmp/cachegw-upstream-policy-XXXXXX";
static int tmp_seq;

static struct policy_set *load(const char *source, char *err, size_t err_len)
{
    char dir[256], path[320];
    snprintf(dir, sizeof dir, "%s/p%d", tmp_root, ++tmp_seq);
    if (mkdir(dir, 0700) != 0) return NULL;
    snprintf(path, sizeof path, "%s/test.lua", dir);
    FILE *f = fopen(path, "w");
    if (f == NULL) return NULL;
    fputs(source, f);
    fclose(f);
    struct policy_set *set = NULL;
    if (policy_set_load(dir, CACHEGW_SOURCE_DIR "/lua", NULL, &set, err, err_len) != 0)
        return NULL;
    return set;
}

static const char SRC[] =
    "upstream \"users\" {\n"
    "  servers = { \"http://127.0.0.1:1\", { url = \"http://127.0.0.1:2/\", weight = 3 } },\n"
    "  balance = \"hash\", connect_timeout = 0.25, timeout = 2, retries = 2,\n"
    "  max_fails = 4, fail_timeout = 1.5, fail_on_5xx = true, max_connections = 7,\n"
    "  health = { path = \"/healthz\", interval = 2, timeout = 0.5, healthy = 1 },\n"
    "}\n"
    "upstream \"jobs\" { servers = { \"https://jobs.internal\" } }\n"
    "route \"GET /users/:id\" { upstream = \"users\", key = \"users:{id}\", ttl = 60 }\n"
    "route \"PUT /users/:id\" { upstream = \"users\", idempotent = true }\n"
    "route \"GET /items/:id\" { host = \"jobs.example.com\", upstream = \"jobs\", "
    "key = \"jobs:{id}\", ttl = 1 }\n"
    "route \"GET /items/:id\" { host = \"api.example.com\", key = \"api:{id}\", ttl = 1 }\n"
    "route \"GET /plain\" { ttl = 1 }\n"
    "unknown_host \"reject\"\n";

TEST(configs_copied)
{
    char err[512] = "";
    struct policy_set *set = load(SRC, err, sizeof err);
    if (set == NULL) fprintf(stderr, "load: %s\n", err);
    CHECK(set != NULL);
    if (set == NULL) return;
    size_t n = 0;
    const struct upstream_config *u = policy_set_upstreams(set, &n);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(u[0].name, "users");
    CHECK_EQ_INT(u[0].n_servers, 2);
    CHECK_EQ_STR(u[0].servers[0].url, "http://127.0.0.1:1");
    CHECK_EQ_INT(u[0].servers[0].weight, 1);
    CHECK_EQ_STR(u[0].servers[1].url, "http://127.0.0.1:2");
    CHECK_EQ_INT(u[0].servers[1].weight, 3);
    CHECK_EQ_INT(u[0].balance, UPSTREAM_BALANCE_HASH);
    CHECK_EQ_INT(u[0].connect_timeout_ms, 250);
    CHECK_EQ_INT(u[0].timeout_ms, 2000);
    CHECK_EQ_INT(u[0].retries, 2);
    CHECK_EQ_INT(u[0].max_fails, 4);
    CHECK_EQ_INT(u[0].fail_timeout_ms, 1500);
    CHECK(u[0].fail_on_5xx);
    CHECK_EQ_INT(u[0].max_connections, 7);
    CHECK_EQ_INT(u[0].dns_ttl_s, 60);
    CHECK_EQ_STR(u[0].health.path, "/healthz");
    CHECK_EQ_INT(u[0].health.interval_ms, 2000);
    CHECK_EQ_INT(u[0].health.timeout_ms, 500);
    CHECK_EQ_INT(u[0].health.healthy, 1);
    CHECK_EQ_INT(u[0].health.unhealthy, 3);
    CHECK_EQ_STR(u[1].name, "jobs");
    CHECK_EQ_INT(u[1].balance, UPSTREAM_BALANCE_ROUND_ROBIN);
    CHECK_EQ_INT(u[1].retries, 1);
    CHECK_EQ_INT(u[1].timeout_ms, 0); /* the gateway's */
    CHECK(u[1].health.path == NULL);
    policy_set_unref(set);
}

TEST(bad_upstream_refused_with_line)
{
    char err[512] = "";
    struct policy_set *set = load("\nroute \"GET /a\" { upstream = \"nope\", key = \"a\" }\n", err,
                                sizeof err);
    CHECK(set == NULL);
    CHECK(strstr(err, "test.lua:2: route 'GET /a': unknown upstream 'nope'") != NULL);
    set = load("upstream \"a\" { servers = { \"ftp://x\" } }\n", err, sizeof err);
    CHECK(set == NULL);
    CHECK(strstr(err, "test.lua:1: upstream 'a': server 1: bad URL 'ftp://x'") != NULL);
}

struct req {
    const char *method, *path, *host;
};

/* Both deciders agree, and the decision is what want_* say. */
static void expect(struct lua_host *h, struct req r, const char *want_upstream,
                   int want_reject, const char *want_key)
{
    struct http_header hd[1] = {{(char *)"Host", (char *)r.host}};
    struct policy_request pr = {.method = r.method, .path = r.path, .headers = hd,
                                .n_headers = r.host ? 1 : 0};
    for (int round = 0; round < 2; round++) { /* the second round may come from the memo */
        struct policy_decision a, b;
        lua_host_decide(h, &pr, &a);
        lua_host_decide_lua(h, &pr, &b);
        const struct policy_decision *ds[2] = {&a, &b};
        for (int i = 0; i < 2; i++) {
            const struct policy_decision *d = ds[i];
            if (want_upstream == NULL) CHECK(d->upstream == NULL);
            else CHECK_EQ_STR(d->upstream, want_upstream);
            CHECK_EQ_INT(d->reject_status, want_reject);
            if (want_key == NULL) CHECK(d->key == NULL);
            else CHECK_EQ_STR(d->key, want_key);
            if (want_reject) CHECK_EQ_STR(d->reason, "unknown_host");
        }
        CHECK_EQ_INT(a.action, b.action);
        CHECK_EQ_INT(a.route_id, b.route_id);
        CHECK_EQ_INT(a.idempotent, b.idempotent);
        policy_decision_free(&a);
        policy_decision_free(&b);
    }
}

TEST(decisions_table_and_lua_agree)
{
    char err[512] = "";
    struct policy_set *set = load(SRC, err, sizeof err);
    CHECK(set != NULL);
    if (set == NULL) return;
    struct lua_host *h = NULL;
    CHECK_EQ_INT(lua_host_create(set, NULL, &h, err, sizeof err), 0);
    policy_set_unref(set);
    if (h == NULL) return;
    CHECK(lua_host_has_route_table(h));
    /* Host-less routes on a declared host; the declared hosts' own routes. */
    expect(h, (struct req){"GET", "/users/7", "api.example.com"}, "users", 0, "users:7");
    expect(h, (struct req){"GET", "/items/7", "JOBS.example.com:80"}, "jobs", 0, "jobs:7");
    expect(h, (struct req){"GET", "/items/7", "api.example.com."}, NULL, 0, "api:7");
    expect(h, (struct req){"GET", "/plain", "api.example.com"}, NULL, 0, "GET:/plain");
    /* Unknown or missing hosts are refused (unknown_host "reject"). */
    expect(h, (struct req){"GET", "/users/7", "evil.example.com"}, NULL, 404, NULL);
    expect(h, (struct req){"GET", "/users/7", NULL}, NULL, 404, NULL);
    expect(h, (struct req){"GET", "/items/7", "[::1]:8080"}, NULL, 404, NULL);

    struct http_header hd[1] = {{(char *)"host", (char *)"api.example.com"}};
    struct policy_request put = {.method = "PUT", .path = "/users/1", .headers = hd,
                                 .n_headers = 1};
    struct policy_decision d;
    lua_host_decide(h, &put, &d);
    CHECK(d.idempotent);
    CHECK_EQ_STR(d.upstream, "users");
    policy_decision_free(&d);
    /* Table decisions happened (a table that sent everything to Lua would pass the rest). */
    CHECK(lua_host_table_decisions(h) > 0);
    lua_host_destroy(h);
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Every combination of host, method and path: the table (with host tries) and Lua agree,
 * and the table decides the host routes itself. */
TEST(host_tries_match_lua_precedence)
{
    static const char src[] =
        "upstream \"a\" { servers = { \"http://127.0.0.1:1\" } }\n"
        "route \"GET /items/:id\" { host = \"a.example\", upstream = \"a\", key = \"a:{id}\" }\n"
        "route \"GET /items/special\" { key = \"plain-special\" }\n"
        "route \"GET /items/:id\" { key = \"plain:{id}\" }\n"
        "route \"HEAD /h/*\" { host = \"a.example\", bypass = true }\n"
        "route \"GET /h/:x\" { key = \"h:{x}\" }\n"
        "route \"GET /w/*\" { host = { \"a.example\", \"b.example\" }, upstream = \"a\", "
        "key = \"w:{*}\" }\n"
        "route \"GET /w/x\" { key = \"wx\" }\n"
        "route \"PUT /items/:id\" { host = \"b.example\", upstream = \"a\", idempotent = true,"
        " invalidate = { \"a:{id}\" } }\n";
    char err[512] = "";
    struct policy_set *set = load(src, err, sizeof err);
    if (set == NULL) fprintf(stderr, "load: %s\n", err);
    CHECK(set != NULL);
    if (set == NULL) return;
    struct lua_host *h = NULL;
    CHECK_EQ_INT(lua_host_create(set, NULL, &h, err, sizeof err), 0);
    policy_set_unref(set);
    if (h == NULL) return;
    static const char *const hosts[] = {"a.example", "A.EXAMPLE:8080", "a.example.",
                                        "b.example", "c.example", NULL, "[::1]:80", ""};
    static const char *const methods[] = {"GET", "HEAD", "PUT", "DELETE"};
    static const char *const paths[] = {"/items/1", "/items/special", "/h/q", "/h/q/r",
                                        "/w/x", "/w/x/y", "/", "/items/"};
    uint64_t before = lua_host_table_decisions(h);
    size_t n = 0;
    for (size_t hi = 0; hi < sizeof hosts / sizeof *hosts; hi++)
        for (size_t mi = 0; mi < 4; mi++)
            for (size_t pi = 0; pi < sizeof paths / sizeof *paths; pi++) {
                struct http_header hd[1] = {{(char *)"host", (char *)hosts[hi]}};
                struct policy_request pr = {.method = methods[mi], .path = paths[pi],
                                            .headers = hd, .n_headers = hosts[hi] ? 1 : 0};
                struct policy_decision a, b;
                lua_host_decide(h, &pr, &a);
                lua_host_decide_lua(h, &pr, &b);
                bool same = a.action == b.action && a.route_id == b.route_id &&
                            same_str(a.key, b.key) && same_str(a.upstream, b.upstream) &&
                            same_str(a.reason, b.reason) && a.idempotent == b.idempotent &&
                            a.reject_status == b.reject_status &&
                            a.n_invalidate == b.n_invalidate;
                if (!same)
                    fprintf(stderr, "MISMATCH %s %s host=%s: table %d/%d/%s/%s lua %d/%d/%s/%s\n",
                            methods[mi], paths[pi], hosts[hi] ? hosts[hi] : "(none)", a.action,
                            a.route_id, a.key ? a.key : "-", a.upstream ? a.upstream : "-",
                            b.action, b.route_id, b.key ? b.key : "-",
                            b.upstream ? b.upstream : "-");
                CHECK(same);
                policy_decision_free(&a);
                policy_decision_free(&b);
                n++;
            }
    /* No route has functions: the table decided every request. */
    CHECK_EQ_INT(lua_host_table_decisions(h) - before, n);
    lua_host_destroy(h);
}

int main(void)
{
    if (mkdtemp(tmp_root) == NULL) return 1;
    RUN(configs_copied);
    RUN(bad_upstream_refused_with_line);
    RUN(decisions_table_and_lua_agree);
    RUN(host_tries_match_lua_precedence);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return TEST_SUMMARY();
}
