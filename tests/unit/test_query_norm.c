/*
 * test_query_norm.c - src/policy/query_norm.c: fixed cases, buffer bounds, and a differential
 * test against the pure-Lua reference (url.normalize_query_lua of lua/gateway/url.lua,
 * loaded from the source tree into a real Lua state) over a generated corpus.
 *
 * The generator here is independent of tests/lua/query_c_spec.lua's, and this test runs
 * in the sanitizer build (the busted module is built without sanitizers), so it is also
 * the memory-safety check of the exact-size output and scratch.
 */
#include "query_norm.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_helpers.h"
#include "test.h"

static struct query_norm st_;

/* Normalises into a heap buffer of exactly the size the scan asks for (so ASan sees any
 * byte written past it); returns a NUL-terminated copy or NULL with *rc set. */
static char *norm(const char *qs, size_t len, const struct query_ignore *ign, int *rc,
                  size_t *out_len)
{
    *rc = query_norm_scan(&st_, qs, len, ign);
    if (*rc != QUERY_NORM_OK) return NULL;
    char *out = malloc(st_.out_len + 1);
    char *scratch = st_.scratch_len ? malloc(st_.scratch_len) : NULL;
    if (out == NULL || (st_.scratch_len && scratch == NULL)) abort();
    query_norm_write(&st_, scratch, out);
    out[st_.out_len] = '\0';
    *out_len = st_.out_len;
    free(scratch);
    return out;
}

static char *norm_s(const char *qs, const struct query_ignore *ign)
{
    int rc;
    size_t n;
    return norm(qs, strlen(qs), ign, &rc, &n);
}

/* Builds an ignore list from patterns (a trailing '*' makes a prefix). */
struct ign_holder {
    struct query_ignore ign;
    struct query_ignore_entry e[16];
};

static void ign_build(struct ign_holder *h, const char *const *pats, size_t n)
{
    size_t n_prefix = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(pats[i]);
        if (len > 0 && pats[i][len - 1] == '*') n_prefix++;
    }
    h->ign.exact = h->e;
    h->ign.n_exact = 0;
    h->ign.prefix = h->e + (n - n_prefix);
    h->ign.n_prefix = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(pats[i]);
        if (len > 0 && pats[i][len - 1] == '*')
            h->ign.prefix[h->ign.n_prefix++] = (struct query_ignore_entry){pats[i], len - 1};
        else
            h->ign.exact[h->ign.n_exact++] = (struct query_ignore_entry){pats[i], len};
    }
    query_ignore_sort(h->ign.exact, h->ign.n_exact);
}

#define CHECK_NORM(want, qs, ign)          \
    do {                                   \
        char *got_ = norm_s((qs), (ign));  \
        CHECK_EQ_STR(got_, (want));        \
        free(got_);                        \
    } while (0)

TEST(fixed_cases)
{
    static const char *const dflt[] = {"utm_*", "fbclid", "gclid"};
    struct ign_holder h;
    ign_build(&h, dflt, 3);
    const struct query_ignore *d = &h.ign;
    CHECK_NORM("a=2&a=1&b=3", "b=3&a=2&a=1", d);
    CHECK_NORM("k=3&k=1&k=2&z=0", "z=0&k=3&k=1&k=2", d);
    CHECK_NORM("page=2", "utm_source=x&page=2&fbclid=abc&gclid=1&utm_campaign=y", d);
    CHECK_NORM("fbclid2=1", "fbclid2=1", d);
    CHECK_NORM("a=&b=", "b&a=", d);
    CHECK_NORM("q=", "q=&&", d);
    CHECK_NORM("", "&&&", d);
    CHECK_NORM("", "utm_source=x", d);
    CHECK_NORM("q=caf%C3%A9", "q=caf%c3%a9", d);
    CHECK_NORM("q=caf\xc3\xa9", "q=caf\xc3\xa9", d);
    CHECK_NORM("q=caf%C3%A9&r=A", "q=caf\xc3\xa9&r=%41", d);
    CHECK_NORM("q=%25zz", "q=%zz", d);
    CHECK_NORM("q=a+b", "q=a+b", d);
    CHECK_NORM("q=a%20b", "q=a%20b", d);
    CHECK_NORM("q=a%2Bb", "q=a%2Bb", d);
    CHECK_NORM("a=2&a-b=0&b=1", "b=1&a=2&a-b=0", d);
    CHECK_NORM("x=b=c", "x=b=c", d);
    /* "%4+1": the malformed escape never swallows the '+' */
    CHECK_NORM("q=%254+1", "q=%4+1", d);
    /* decoded-name matching, '+' as a space, only when the query has a '%' */
    static const char *const custom[] = {"session", "x_*", "utm x"};
    struct ign_holder c;
    ign_build(&c, custom, 3);
    CHECK_NORM("a=1", "session=9&a=1&x_y=2&x%5Fz=3&utm+x=%41", &c.ign);
    CHECK_NORM("a=1&utm+x=A", "session=9&a=1&x_y=2&utm+x=A", &c.ign);
    CHECK_NORM("a=1&b=2&b=1", "b=2&a=1&b=1", NULL);
    CHECK(query_ignore_match(&c.ign, "x_", 2));
    CHECK(query_ignore_match(&c.ign, "utm x", 5));
    CHECK(!query_ignore_match(&c.ign, "utm+x", 5));
    CHECK(!query_ignore_match(&c.ign, "sessio", 6));
    CHECK(!query_ignore_match(&c.ign, "sessions", 8));
    CHECK(!query_ignore_match(NULL, "x_", 2));
    /* the pattern "*" ignores everything, "" only the empty name */
    static const char *const all[] = {"*"};
    struct ign_holder a;
    ign_build(&a, all, 1);
    CHECK_NORM("", "a=1&b=2&=3", &a.ign);
    static const char *const empty[] = {""};
    struct ign_holder e;
    ign_build(&e, empty, 1);
    CHECK_NORM("a=1", "=3&a=1", &e.ign);
}

TEST(embedded_nul_and_high_bytes)
{
    int rc;
    size_t n;
    /* Simple path: bytes as sent, NUL included; "a\0b" sorts after "a" and before "b". */
    static const char q[] = "b=1&a\0b=2&a=3";
    char *got = norm(q, sizeof q - 1, NULL, &rc, &n);
    CHECK_EQ_INT(rc, QUERY_NORM_OK);
    static const char want[] = "a=3&a\0b=2&b=1";
    CHECK_EQ_INT(n, sizeof want - 1);
    CHECK(got != NULL && memcmp(got, want, n) == 0);
    free(got);
    /* High bytes sort after ASCII (unsigned comparison). */
    CHECK_NORM("z=1&\xff=2", "\xff=2&z=1", NULL);
}

TEST(param_bound)
{
    char qs[256 * 8 + 64];
    size_t len = 0;
    for (int i = 0; i < 256; i++) len += (size_t)sprintf(qs + len, "p%d=%d&", i, i);
    int rc;
    size_t n;
    char *got = norm(qs, len, NULL, &rc, &n); /* 256 params and a trailing '&' */
    CHECK_EQ_INT(rc, QUERY_NORM_OK);
    free(got);
    len += (size_t)sprintf(qs + len, "&&x");
    CHECK(norm(qs, len, NULL, &rc, &n) == NULL);
    CHECK_EQ_INT(rc, QUERY_NORM_TOO_MANY);
}

TEST(one_buffer_api_and_bound)
{
    static const char qs[] = "z=%c3%a9&,=1&a&b=+";
    size_t len = sizeof qs - 1;
    CHECK_EQ_INT(query_norm_scan(&st_, qs, len, NULL), QUERY_NORM_OK);
    size_t need = st_.out_len + st_.scratch_len;
    CHECK(need <= query_norm_bound(len));
    char *buf = malloc(need);
    size_t out_len = 0;
    CHECK_EQ_INT(query_norm(&st_, qs, len, NULL, buf, need - 1, &out_len), QUERY_NORM_NOSPACE);
    CHECK_EQ_INT(query_norm(&st_, qs, len, NULL, buf, need, &out_len), QUERY_NORM_OK);
    static const char want[] = "%2C=1&a=&b=+&z=%C3%A9";
    CHECK_EQ_INT(out_len, sizeof want - 1);
    CHECK(memcmp(buf, want, out_len) == 0);
    free(buf);
    /* The worst cases of the 7x bound: one-byte names needing encoding, no '='. */
    static const char worst[] = ",&,&,&%";
    CHECK_EQ_INT(query_norm_scan(&st_, worst, sizeof worst - 1, NULL), QUERY_NORM_OK);
    CHECK(st_.out_len + st_.scratch_len <= query_norm_bound(sizeof worst - 1));
}

TEST(large_ignore_list)
{
    /* 2,000 exact names in a scrambled order, and 3 prefixes: every member is found by
     * the binary search, decoded spellings too, and near misses are not. */
    enum { N = 2000 };
    static char names[N][8];
    static struct query_ignore_entry e[N + 3];
    for (int i = 0; i < N; i++) {
        int k = (i * 7919) % N; /* 7919 is prime: a permutation of 0..N-1 */
        int len = snprintf(names[i], sizeof names[i], "n%d", k);
        e[i] = (struct query_ignore_entry){names[i], (size_t)len};
    }
    e[N] = (struct query_ignore_entry){"utm_", 4};
    e[N + 1] = (struct query_ignore_entry){"zz", 2};
    e[N + 2] = (struct query_ignore_entry){"\xff", 1};
    query_ignore_sort(e, N);
    struct query_ignore ign = {e, N, e + N, 3};
    int found = 0;
    for (int k = 0; k < N; k++) {
        char nm[16];
        int len = snprintf(nm, sizeof nm, "n%d", k);
        found += query_ignore_match(&ign, nm, (size_t)len);
        char miss[16];
        len = snprintf(miss, sizeof miss, "n%dx", k);
        CHECK(!query_ignore_match(&ign, miss, (size_t)len));
    }
    CHECK_EQ_INT(found, N);
    CHECK(!query_ignore_match(&ign, "n", 1));
    CHECK(!query_ignore_match(&ign, "n2000", 5));
    CHECK(query_ignore_match(&ign, "zzz", 3));
    CHECK(query_ignore_match(&ign, "\xff\x01", 2));
    CHECK_NORM("a=1", "n1999=1&a=1&%6E17=2&utm%5Fx=3&zz=4&%FF=5", &ign);
    CHECK_NORM("a=1&n1999x=1", "n1999x=1&a=1&n0=2", &ign);
}

/* ---- differential test against the Lua reference ---- */

static uint64_t rng_ = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng_ ^= rng_ << 13;
    rng_ ^= rng_ >> 7;
    rng_ ^= rng_ << 17;
    return (uint32_t)(rng_ % n);
}

static const char *const PIECES[] = {
    "a", "b", "Z", "0", "-", ".", "_", "~", "utm", "utm_", "x_", "fbclid", "gclid", "%41",
    "%61", "%7e", "%7E", "%5F", "%5f", "%2B", "%2b", "%20", "%25", "%zz", "%", "%2", "%g1",
    "%%41", "+", "++", "=", "*", " ", ",", "/", "\t", "\x7f", "\xc3\xa9", "\xff", "%C3%A9",
    "%c3%a9", "%FF", "%00", "%3D", "%26",
};
#define N_PIECES (sizeof PIECES / sizeof *PIECES)

static const char *const NAMES[] = {
    "a", "b", "a-b", "aa", "utm_source", "utm%5Fsource", "utm+x", "fbclid", "gclid", "fbclid2",
    "session", "x_y", "x%5Fz", "k%7E1", "k~1", "", "%41", "A", "q+", "q%20", "q%2B", "*",
};
#define N_NAMES (sizeof NAMES / sizeof *NAMES)

static const char *const LISTS[][6] = {
    {NULL},
    {"utm_*", "fbclid", "gclid", NULL},
    {"session", "x_*", NULL},
    {"*", NULL},
    {"", "a", "utm x", "q+", "k~1", NULL},
    {"utm_*", "utm*", "a*", "fbclid", "fbclid", NULL},
    {"%41", "A", "utm%5F*", "q%2B", NULL},
};
#define N_LISTS (sizeof LISTS / sizeof *LISTS)

static size_t gen_component(char *out, int plain, uint32_t max)
{
    size_t len = 0;
    for (uint32_t i = rnd(max + 1); i > 0; i--) {
        const char *p = PIECES[rnd(N_PIECES)];
        if (plain && strchr(p, '%')) p = "p";
        size_t n = strlen(p);
        memcpy(out + len, p, n);
        len += n;
    }
    return len;
}

/* A query of about nparams pairs; out must hold 64 bytes per pair. */
static size_t gen_query(char *out, uint32_t nparams, int plain)
{
    size_t len = 0;
    if (rnd(10) == 0) out[len++] = '&';
    for (uint32_t i = 0; i < nparams; i++) {
        if (i > 0) out[len++] = '&';
        if (rnd(3) == 0) {
            const char *nm = NAMES[rnd(N_NAMES)];
            if (plain && strchr(nm, '%')) nm = "p";
            memcpy(out + len, nm, strlen(nm));
            len += strlen(nm);
        } else {
            len += gen_component(out + len, plain, 4);
        }
        uint32_t r = rnd(6);
        if (r >= 1) out[len++] = '=';
        if (r >= 2) len += gen_component(out + len, plain, 5);
        if (rnd(8) == 0) out[len++] = '&';
    }
    return len;
}

static uint32_t gen_count(void)
{
    uint32_t r = rnd(20);
    if (r < 12) return rnd(9);
    if (r < 17) return 9 + rnd(120);
    return 240 + rnd(61);
}

TEST(differential_against_lua_reference)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    /* package.path to the source tree's lua/, and the helpers as a preloaded module. */
    lua_getglobal(L, "package");
    lua_pushstring(L, CACHEGW_SOURCE_DIR "/lua/?.lua");
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cachegw_helpers);
    lua_setfield(L, -2, "cachegw_helpers");
    lua_pop(L, 2);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "gateway.url");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "require gateway.url: %s\n", lua_tostring(L, -1));
        CHECK(0);
        lua_close(L);
        return;
    }
    int url = lua_gettop(L);
    /* Each list as a Lua predicate (compile_ignore) and as a C ignore. */
    struct ign_holder holders[N_LISTS];
    int preds = lua_gettop(L) + 1;
    for (size_t i = 0; i < N_LISTS; i++) {
        size_t n = 0;
        while (LISTS[i][n]) n++;
        ign_build(&holders[i], LISTS[i], n);
        lua_getfield(L, url, "compile_ignore");
        lua_createtable(L, (int)n, 0);
        for (size_t k = 0; k < n; k++) {
            lua_pushstring(L, LISTS[i][k]);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_call(L, 1, 1);
    }
    char *qs = malloc(64 * 320);
    int errors = 0, simple = 0, mismatches = 0;
    for (int q = 0; q < 4000 && mismatches < 5; q++) {
        int plain = rnd(4) == 0;
        size_t len = gen_query(qs, gen_count(), plain);
        size_t li = rnd(N_LISTS);
        const struct query_ignore *ign = li == 0 ? NULL : &holders[li].ign;
        int rc;
        size_t out_len = 0;
        char *got = norm(qs, len, ign, &rc, &out_len);
        if (rc == QUERY_NORM_OK) {
            CHECK(st_.out_len + st_.scratch_len <= query_norm_bound(len));
        }
        lua_getfield(L, url, "normalize_query_lua");
        lua_pushlstring(L, qs, len);
        if (li == 0) lua_pushnil(L);
        else lua_pushvalue(L, preds + (int)li);
        int lrc = lua_pcall(L, 2, 1, 0);
        size_t want_len = 0;
        const char *want = lua_tolstring(L, -1, &want_len);
        int same;
        if (lrc != LUA_OK) {
            errors++;
            same = rc == QUERY_NORM_TOO_MANY && want != NULL &&
                   strcmp(want, QUERY_NORM_TOO_MANY_MSG) == 0;
        } else {
            same = rc == QUERY_NORM_OK && want_len == out_len && memcmp(want, got, out_len) == 0;
        }
        if (memchr(qs, '%', len) == NULL) simple++;
        if (!same) {
            mismatches++;
            fprintf(stderr, "query %d (list %zu) differs: %.*s\n lua: %.*s\n c:   %.*s\n", q, li,
                    (int)len, qs, (int)want_len, want ? want : "", (int)out_len,
                    got ? got : "(error)");
            CHECK(0);
        }
        lua_pop(L, 1);
        free(got);
    }
    /* The corpus reaches both the error and the simple path. */
    CHECK(errors > 100);
    CHECK(simple > 500);
    free(qs);
    lua_close(L);
}

int main(void)
{
    RUN(fixed_cases);
    RUN(embedded_nul_and_high_bytes);
    RUN(param_bound);
    RUN(one_buffer_api_and_bound);
    RUN(large_ignore_list);
    RUN(differential_against_lua_reference);
    return TEST_SUMMARY();
}
