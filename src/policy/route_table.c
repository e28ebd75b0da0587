/* route_table.c - see route_table.h. */
#include "route_table.h"

#include <errno.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query_norm.h"

/* As gateway/keys.lua: keys longer than RT_MAX_KEY keep RT_KEEP bytes, "#" and the
 * SHA-256 of the whole key in hex. */
#define RT_MAX_KEY 512
#define RT_HASH_HEX 64
#define RT_KEEP (RT_MAX_KEY - RT_HASH_HEX - 1)
/* {auth_hash} is gw.hash's default length. */
#define RT_AUTH_HEX 16
/* Params captured along one match (a pattern with more goes to Lua). */
#define RT_MAX_CAPS 32
/* Header names lua_host lower-cases (longer ones needing it are dropped, see push_headers). */
#define RT_LOWER_MAX 128

/* Template part kinds: the numbers gateway/keys.lua gives them (tmpl.parts[i][1]). */
enum rt_part_kind {
    RT_LIT = 1,
    RT_PARAM = 2,
    RT_QUERY = 3,
    RT_QPARAM = 4,
    RT_HEADER = 5,
    RT_METHOD = 6,
    RT_PATH = 7,
    RT_AUTH = 8,
};

enum rt_kind { RT_READ, RT_WRITE, RT_ANY };

struct rt_part {
    enum rt_part_kind kind;
    char *s; /* literal (control characters encoded), header or query param name */
    size_t len;
    int param; /* RT_PARAM: index of the capture, -1 for the wildcard */
};

struct rt_tmpl {
    struct rt_part *parts;
    size_t n;
    bool prefix; /* invalidate "posts:*": a prefix target */
};

struct rt_ignore {
    struct query_ignore q;
    char **strs; /* what the entries point at */
    size_t n_strs;
};

struct rt_route {
    int id;
    bool lua; /* has functions: decided by Lua */
    bool bypass;
    bool per_user;
    enum rt_kind kind;
    bool any_method;
    char **methods;
    size_t n_methods;
    size_t n_params;
    struct rt_ignore ign;
    struct rt_tmpl *key; /* NULL: the default key with the route's ignore list */
    struct rt_tmpl *tags, *inv, *inv_tags;
    size_t n_tags, n_inv, n_inv_tags;
};

struct rt_lit {
    char *seg;
    size_t len;
    struct rt_node *child;
};

struct rt_node {
    struct rt_lit *lit; /* sorted by (len, bytes) once built */
    size_t n_lit;
    struct rt_node *param;
    struct rt_route **here, **wild;
    size_t n_here, n_wild;
};

struct route_table {
    struct rt_route *routes;
    size_t n_routes;
    size_t n_lua;
    struct rt_node *root;
    struct rt_ignore default_ign;
    /* Host routing (issue 13): routes with a host live in their hosts' tries.  A request
     * whose Host is declared is matched in that host's trie, then in root, as
     * gateway/policy.lua matches the host's router, then the host-less one; any other
     * request in root alone (or it is rejected with 404 under unknown_host "reject"). */
    char **hosts; /* normalised as normalize_host in gateway/policy.lua */
    struct rt_node **host_roots; /* one per host */
    size_t n_hosts;
    bool reject_unknown;
};

/* ---- freeing ------------------------------------------------------------------------------ */

static void rt_ignore_free(struct rt_ignore *ig)
{
    for (size_t i = 0; i < ig->n_strs; i++) free(ig->strs[i]);
    free(ig->strs);
    free(ig->q.exact);
    free(ig->q.prefix);
    memset(ig, 0, sizeof *ig);
}

static void rt_tmpls_free(struct rt_tmpl *t, size_t n)
{
    for (size_t i = 0; t != NULL && i < n; i++) {
        for (size_t k = 0; k < t[i].n; k++) free(t[i].parts[k].s);
        free(t[i].parts);
    }
    free(t);
}

static void rt_node_free(struct rt_node *n)
{
    if (n == NULL) return;
    for (size_t i = 0; i < n->n_lit; i++) {
        free(n->lit[i].seg);
        rt_node_free(n->lit[i].child);
    }
    free(n->lit);
    rt_node_free(n->param);
    free(n->here);
    free(n->wild);
    free(n);
}

void route_table_free(struct route_table *t)
{
    if (t == NULL) return;
    for (size_t i = 0; i < t->n_routes; i++) {
        struct rt_route *r = &t->routes[i];
        for (size_t k = 0; k < r->n_methods; k++) free(r->methods[k]);
        free(r->methods);
        rt_ignore_free(&r->ign);
        rt_tmpls_free(r->key, r->key ? 1 : 0);
        rt_tmpls_free(r->tags, r->n_tags);
        rt_tmpls_free(r->inv, r->n_inv);
        rt_tmpls_free(r->inv_tags, r->n_inv_tags);
    }
    free(t->routes);
    for (size_t i = 0; i < t->n_hosts; i++) {
        free(t->hosts[i]);
        rt_node_free(t->host_roots[i]);
    }
    free(t->hosts);
    free(t->host_roots);
    rt_node_free(t->root);
    rt_ignore_free(&t->default_ign);
    free(t);
}

size_t route_table_route_count(const struct route_table *t) { return t->n_routes; }
size_t route_table_lua_route_count(const struct route_table *t) { return t->n_lua; }

/* ---- building from the Lua description ---------------------------------------------------- */

struct rt_build {
    lua_State *L;
    char *err;
    size_t err_len;
    int route_id; /* for messages */
};

static int rt_fail(struct rt_build *b, const char *what)
{
    snprintf(b->err, b->err_len, "route table: route %d: cannot read %s", b->route_id, what);
    return -EINVAL;
}

static char *rt_memdup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d == NULL) return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

/* Pushes t[name] (raw: descriptions are plain tables); returns its type. */
static int rt_field(lua_State *L, int t, const char *name)
{
    lua_pushstring(L, name);
    return lua_rawget(L, t < 0 ? t - 1 : t);
}

static bool rt_bool(lua_State *L, int t, const char *name)
{
    rt_field(L, t, name);
    bool v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* An ignore list (array of strings; "x*" is a prefix) at t[name]. */
static int rt_ignore_build(struct rt_build *b, int t, const char *name, struct rt_ignore *ig)
{
    lua_State *L = b->L;
    if (rt_field(L, t, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        return rt_fail(b, name);
    }
    size_t n = (size_t)lua_rawlen(L, -1);
    ig->strs = calloc(n ? n : 1, sizeof *ig->strs);
    ig->q.exact = calloc(n ? n : 1, sizeof *ig->q.exact);
    ig->q.prefix = calloc(n ? n : 1, sizeof *ig->q.prefix);
    if (ig->strs == NULL || ig->q.exact == NULL || ig->q.prefix == NULL) {
        lua_pop(L, 1);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TSTRING) {
            lua_pop(L, 2);
            return rt_fail(b, name);
        }
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        char *d = rt_memdup(s, len);
        lua_pop(L, 1);
        if (d == NULL) {
            lua_pop(L, 1);
            return -ENOMEM;
        }
        ig->strs[ig->n_strs++] = d;
        if (len > 0 && d[len - 1] == '*')
            ig->q.prefix[ig->q.n_prefix++] = (struct query_ignore_entry){d, len - 1};
        else
            ig->q.exact[ig->q.n_exact++] = (struct query_ignore_entry){d, len};
    }
    lua_pop(L, 1);
    query_ignore_sort(ig->q.exact, ig->q.n_exact);
    return 0;
}

/* Appends s with control characters percent-encoded, as keys.lua writes literals. */
static size_t rt_escaped_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        n += (c < 0x20 || c == 0x7f) ? 3 : 1;
    }
    return n;
}

static char *rt_escape_dup(const char *s, size_t len, size_t *out_len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = rt_escaped_len(s, len);
    char *d = malloc(n + 1);
    if (d == NULL) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            d[k++] = '%';
            d[k++] = hex[c >> 4];
            d[k++] = hex[c & 15];
        } else {
            d[k++] = (char)c;
        }
    }
    d[k] = '\0';
    *out_len = n;
    return d;
}

/* A template: { prefix = bool, parts = { { k = kind, v = string or nil }, ... } } at the
 * top of the stack.  params (index pidx) is the route's param names in order. */
static int rt_tmpl_build(struct rt_build *b, int pidx, struct rt_tmpl *tm)
{
    lua_State *L = b->L;
    int t = lua_gettop(L);
    tm->prefix = rt_bool(L, t, "prefix");
    if (rt_field(L, t, "parts") != LUA_TTABLE) {
        lua_pop(L, 1);
        return rt_fail(b, "template parts");
    }
    size_t n = (size_t)lua_rawlen(L, -1);
    tm->parts = calloc(n ? n : 1, sizeof *tm->parts);
    if (tm->parts == NULL) {
        lua_pop(L, 1);
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        int p = lua_gettop(L);
        rt_field(L, p, "k");
        lua_Integer kind = lua_tointeger(L, -1);
        lua_pop(L, 1);
        size_t vlen = 0;
        const char *v = NULL;
        if (rt_field(L, p, "v") == LUA_TSTRING) v = lua_tolstring(L, -1, &vlen);
        struct rt_part *part = &tm->parts[tm->n];
        part->kind = (enum rt_part_kind)kind;
        switch (kind) {
        case RT_LIT:
            if (v == NULL) rc = rt_fail(b, "a literal");
            else if ((part->s = rt_escape_dup(v, vlen, &part->len)) == NULL) rc = -ENOMEM;
            break;
        case RT_HEADER:
        case RT_QPARAM:
            if (v == NULL) rc = rt_fail(b, "a header or query param name");
            else if ((part->s = rt_memdup(v, vlen)) == NULL) rc = -ENOMEM;
            part->len = vlen;
            break;
        case RT_PARAM:
            if (v == NULL) {
                rc = rt_fail(b, "a param name");
            } else if (strcmp(v, "*") == 0) {
                part->param = -1;
            } else {
                part->param = -2;
                size_t np = (size_t)lua_rawlen(L, pidx);
                for (size_t k = 0; k < np; k++) {
                    lua_rawgeti(L, pidx, (lua_Integer)k + 1);
                    const char *name = lua_tostring(L, -1);
                    if (name != NULL && strcmp(name, v) == 0 && part->param == -2)
                        part->param = (int)k;
                    lua_pop(L, 1);
                }
                if (part->param == -2) rc = rt_fail(b, "a param placeholder");
            }
            break;
        case RT_QUERY:
        case RT_METHOD:
        case RT_PATH:
        case RT_AUTH:
            break;
        default:
            rc = rt_fail(b, "a template part kind");
        }
        if (rc == 0) {
            tm->n++;
        } else {
            free(part->s);
            part->s = NULL;
        }
        lua_pop(L, 2); /* v, part */
    }
    lua_pop(L, 1); /* parts */
    return rc;
}

/* A list of templates at t[name] (absent: none). */
static int rt_tmpl_list(struct rt_build *b, int t, int pidx, const char *name,
                        struct rt_tmpl **out, size_t *n_out)
{
    lua_State *L = b->L;
    if (rt_field(L, t, name) != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    size_t n = (size_t)lua_rawlen(L, -1);
    *out = calloc(n ? n : 1, sizeof **out);
    if (*out == NULL) {
        lua_pop(L, 1);
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        rc = rt_tmpl_build(b, pidx, &(*out)[i]);
        (*n_out)++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

static struct rt_node *rt_node_new(void) { return calloc(1, sizeof(struct rt_node)); }

static int rt_list_add(struct rt_route ***list, size_t *n, struct rt_route *r)
{
    struct rt_route **l = realloc(*list, (*n + 1) * sizeof *l);
    if (l == NULL) return -ENOMEM;
    l[(*n)++] = r;
    *list = l;
    return 0;
}

/* Inserts r along its segments (array at sidx: { kind = "lit"|"param"|"wild", value }). */
static int rt_insert(struct rt_build *b, struct rt_node *root, int sidx, struct rt_route *r)
{
    lua_State *L = b->L;
    struct rt_node *node = root;
    bool wild = false;
    size_t n = (size_t)lua_rawlen(L, sidx);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, sidx, (lua_Integer)i + 1);
        int s = lua_gettop(L);
        rt_field(L, s, "kind");
        const char *kind = lua_tostring(L, -1);
        int rc = 0;
        if (kind == NULL) {
            rc = rt_fail(b, "a path segment");
        } else if (strcmp(kind, "lit") == 0) {
            size_t len = 0;
            const char *v = rt_field(L, s, "value") == LUA_TSTRING ? lua_tolstring(L, -1, &len)
                                                                   : NULL;
            struct rt_node *child = NULL;
            for (size_t k = 0; v != NULL && k < node->n_lit; k++)
                if (node->lit[k].len == len && memcmp(node->lit[k].seg, v, len) == 0)
                    child = node->lit[k].child;
            if (v == NULL) {
                rc = rt_fail(b, "a literal segment");
            } else if (child == NULL) {
                struct rt_lit *l = realloc(node->lit, (node->n_lit + 1) * sizeof *l);
                if (l != NULL) node->lit = l;
                char *seg = rt_memdup(v, len);
                child = rt_node_new();
                if (l == NULL || seg == NULL || child == NULL) {
                    free(seg);
                    free(child);
                    rc = -ENOMEM;
                } else {
                    node->lit[node->n_lit++] = (struct rt_lit){seg, len, child};
                }
            }
            lua_pop(L, 1);
            if (rc == 0) node = child;
        } else if (strcmp(kind, "param") == 0) {
            if (node->param == NULL && (node->param = rt_node_new()) == NULL) rc = -ENOMEM;
            else node = node->param;
        } else if (strcmp(kind, "wild") == 0) {
            wild = true;
        } else {
            rc = rt_fail(b, "a path segment kind");
        }
        lua_pop(L, 2);
        if (rc != 0) return rc;
    }
    return wild ? rt_list_add(&node->wild, &node->n_wild, r)
                : rt_list_add(&node->here, &node->n_here, r);
}

static int rt_lit_cmp(const void *a, const void *b)
{
    const struct rt_lit *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return memcmp(x->seg, y->seg, x->len);
}

static void rt_sort(struct rt_node *n)
{
    if (n == NULL) return;
    if (n->n_lit > 1) qsort(n->lit, n->n_lit, sizeof *n->lit, rt_lit_cmp);
    for (size_t i = 0; i < n->n_lit; i++) rt_sort(n->lit[i].child);
    rt_sort(n->param);
}

static int rt_route_build(struct rt_build *b, struct route_table *t, int d, struct rt_route *r)
{
    lua_State *L = b->L;
    int rc;
    r->lua = rt_bool(L, d, "fn");
    r->bypass = rt_bool(L, d, "bypass");
    r->per_user = rt_bool(L, d, "per_user");
    rt_field(L, d, "kind");
    const char *kind = lua_tostring(L, -1);
    if (kind != NULL && strcmp(kind, "read") == 0) r->kind = RT_READ;
    else if (kind != NULL && strcmp(kind, "write") == 0) r->kind = RT_WRITE;
    else if (kind != NULL && strcmp(kind, "any") == 0) r->kind = RT_ANY;
    else kind = NULL;
    lua_pop(L, 1);
    if (kind == NULL) return rt_fail(b, "kind");

    if (rt_field(L, d, "methods") != LUA_TTABLE) {
        lua_pop(L, 1);
        return rt_fail(b, "methods");
    }
    size_t nm = (size_t)lua_rawlen(L, -1);
    r->methods = calloc(nm ? nm : 1, sizeof *r->methods);
    if (r->methods == NULL) {
        lua_pop(L, 1);
        return -ENOMEM;
    }
    for (size_t i = 0; i < nm; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        const char *m = lua_tostring(L, -1);
        if (m != NULL && strcmp(m, "*") == 0) {
            r->any_method = true;
        } else if (m != NULL) {
            if ((r->methods[r->n_methods] = strdup(m)) == NULL) {
                lua_pop(L, 2);
                return -ENOMEM;
            }
            r->n_methods++;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    if ((rc = rt_ignore_build(b, d, "ignore", &r->ign)) != 0) return rc;

    if (rt_field(L, d, "params") != LUA_TTABLE) {
        lua_pop(L, 1);
        return rt_fail(b, "params");
    }
    int pidx = lua_gettop(L);
    r->n_params = (size_t)lua_rawlen(L, pidx);

    if (rt_field(L, d, "key") == LUA_TTABLE) {
        r->key = calloc(1, sizeof *r->key);
        rc = r->key == NULL ? -ENOMEM : rt_tmpl_build(b, pidx, r->key);
    } else {
        rc = 0;
    }
    lua_pop(L, 1);
    if (rc == 0) rc = rt_tmpl_list(b, d, pidx, "tags", &r->tags, &r->n_tags);
    if (rc == 0) rc = rt_tmpl_list(b, d, pidx, "invalidate", &r->inv, &r->n_inv);
    if (rc == 0) rc = rt_tmpl_list(b, d, pidx, "invalidate_tags", &r->inv_tags, &r->n_inv_tags);
    lua_pop(L, 1); /* params */
    if (rc != 0) return rc;

    if (rt_field(L, d, "segments") != LUA_TTABLE) {
        lua_pop(L, 1);
        return rt_fail(b, "segments");
    }
    int sidx = lua_gettop(L);
    if (rt_field(L, d, "hosts") != LUA_TTABLE) {
        rc = rt_insert(b, t->root, sidx, r);
    } else {
        /* A host route goes into the trie of each of its hosts (declared in t->hosts). */
        size_t nh = (size_t)lua_rawlen(L, -1);
        for (size_t i = 0; i < nh && rc == 0; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i + 1);
            const char *h = lua_tostring(L, -1);
            size_t k = 0;
            while (h != NULL && k < t->n_hosts && strcmp(t->hosts[k], h) != 0) k++;
            if (h == NULL || k == t->n_hosts) rc = rt_fail(b, "a host");
            else if (t->host_roots[k] == NULL && (t->host_roots[k] = rt_node_new()) == NULL)
                rc = -ENOMEM;
            else rc = rt_insert(b, t->host_roots[k], sidx, r);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2); /* hosts, segments */
    return rc;
}

/* The declared hosts and the unknown_host mode of the description at idx. */
static int rt_hosts_build(struct rt_build *b, struct route_table *t, int idx)
{
    lua_State *L = b->L;
    if (rt_field(L, idx, "unknown_host") == LUA_TSTRING)
        t->reject_unknown = strcmp(lua_tostring(L, -1), "reject") == 0;
    lua_pop(L, 1);
    if (rt_field(L, idx, "hosts") != LUA_TTABLE) {
        lua_pop(L, 1);
        return 0;
    }
    size_t n = (size_t)lua_rawlen(L, -1);
    t->hosts = calloc(n ? n : 1, sizeof *t->hosts);
    t->host_roots = calloc(n ? n : 1, sizeof *t->host_roots);
    if (t->hosts == NULL || t->host_roots == NULL) {
        lua_pop(L, 1);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        size_t len;
        const char *h = lua_tolstring(L, -1, &len);
        if (h != NULL && (t->hosts[t->n_hosts++] = rt_memdup(h, len)) == NULL) {
            lua_pop(L, 2);
            return -ENOMEM;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

int route_table_build(lua_State *L, int idx, struct route_table **out, char *err,
                      size_t err_len)
{
    *out = NULL;
    idx = lua_absindex(L, idx);
    struct rt_build b = {.L = L, .err = err, .err_len = err_len};
    struct route_table *t = calloc(1, sizeof *t);
    if (t == NULL || (t->root = rt_node_new()) == NULL) {
        free(t);
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    int rc = rt_ignore_build(&b, idx, "default_ignore", &t->default_ign);
    if (rc == 0) rc = rt_hosts_build(&b, t, idx);
    if (rc == 0 && rt_field(L, idx, "routes") != LUA_TTABLE) {
        lua_pop(L, 1);
        rc = rt_fail(&b, "routes");
    } else if (rc == 0) {
        int routes = lua_gettop(L);
        size_t n = (size_t)lua_rawlen(L, routes);
        t->routes = calloc(n ? n : 1, sizeof *t->routes);
        if (t->routes == NULL) rc = -ENOMEM;
        for (size_t i = 0; i < n && rc == 0; i++) {
            struct rt_route *r = &t->routes[i];
            r->id = (int)i + 1;
            b.route_id = r->id;
            t->n_routes++;
            if (lua_rawgeti(L, routes, (lua_Integer)i + 1) != LUA_TTABLE)
                rc = rt_fail(&b, "its description");
            else
                rc = rt_route_build(&b, t, lua_gettop(L), r);
            if (r->lua) t->n_lua++;
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (rc != 0) {
        if (rc == -ENOMEM) snprintf(err, err_len, "out of memory");
        route_table_free(t);
        return rc;
    }
    rt_sort(t->root);
    for (size_t i = 0; i < t->n_hosts; i++)
        if (t->host_roots[i] != NULL) rt_sort(t->host_roots[i]);
    *out = t;
    return 0;
}

/* ---- a growable output buffer with inline storage ----------------------------------------- */

struct rt_buf {
    char *d;
    size_t len, cap;
    bool heap;
    char inl[512];
};

static void rt_buf_init(struct rt_buf *b)
{
    b->d = b->inl;
    b->len = 0;
    b->cap = sizeof b->inl;
    b->heap = false;
}

static void rt_buf_free(struct rt_buf *b)
{
    if (b->heap) free(b->d);
    rt_buf_init(b);
}

static bool rt_buf_reserve(struct rt_buf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap) return true;
    size_t cap = b->cap * 2;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = b->heap ? realloc(b->d, cap) : malloc(cap);
    if (d == NULL) return false;
    if (!b->heap) memcpy(d, b->d, b->len);
    b->d = d;
    b->cap = cap;
    b->heap = true;
    return true;
}

static bool rt_buf_add(struct rt_buf *b, const char *s, size_t n)
{
    if (!rt_buf_reserve(b, n)) return false;
    memcpy(b->d + b->len, s, n);
    b->len += n;
    return true;
}

static const char rt_hex[] = "0123456789ABCDEF";

static bool rt_is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* Appends s with control characters as %XX (keys.lua's clean, lua_host's push_clean). */
static bool rt_buf_add_clean(struct rt_buf *b, const char *s, size_t n)
{
    if (!rt_buf_reserve(b, 3 * n)) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (rt_is_control(c)) {
            b->d[b->len++] = '%';
            b->d[b->len++] = rt_hex[c >> 4];
            b->d[b->len++] = rt_hex[c & 15];
        } else {
            b->d[b->len++] = (char)c;
        }
    }
    return true;
}

/* ---- request data as Lua sees it ---------------------------------------------------------- */

static int rt_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Appends url.decode(s, plus) with control characters re-encoded: router.param_value
 * (plus = false) and clean(url.query_table(...)[name]) (plus = true).  "%XX" with two hex
 * digits is one byte; anything else is itself. */
static bool rt_buf_add_decoded(struct rt_buf *b, const char *s, size_t n, bool plus)
{
    if (!rt_buf_reserve(b, 3 * n)) return false;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%' && n - i >= 3 && rt_hexval((unsigned char)s[i + 1]) >= 0 &&
            rt_hexval((unsigned char)s[i + 2]) >= 0) {
            c = (unsigned char)(rt_hexval((unsigned char)s[i + 1]) << 4 |
                                rt_hexval((unsigned char)s[i + 2]));
            i += 3;
        } else {
            if (plus && c == '+') c = ' ';
            i++;
        }
        if (rt_is_control(c)) {
            b->d[b->len++] = '%';
            b->d[b->len++] = rt_hex[c >> 4];
            b->d[b->len++] = rt_hex[c & 15];
        } else {
            b->d[b->len++] = (char)c;
        }
    }
    return true;
}

/* Whether header name hn is want (lower-case) the way push_headers keys it. */
static bool rt_header_is(const char *hn, const char *want, size_t want_len)
{
    size_t len = strlen(hn);
    if (len != want_len) return false;
    bool upper = false;
    for (size_t k = 0; k < len; k++) {
        unsigned char c = (unsigned char)hn[k];
        if (c >= 'A' && c <= 'Z') {
            upper = true;
            c = (unsigned char)(c + 32);
        }
        if (c != (unsigned char)want[k]) return false;
    }
    return !(upper && len >= RT_LOWER_MAX);
}

/* Appends the header's value as Lua's req.header[name] holds it (repeats joined).  Returns
 * how many lines it had (0: absent), or -1 when out of memory. */
static int rt_header_join(const struct policy_request *r, const char *name, size_t name_len,
                          struct rt_buf *out)
{
    int count = 0;
    bool cookie = name_len == 6 && memcmp(name, "cookie", 6) == 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct http_header *h = &r->headers[i];
        if (h->name == NULL || h->value == NULL || !rt_header_is(h->name, name, name_len))
            continue;
        if (count > 0 && !rt_buf_add(out, cookie ? "; " : ", ", 2)) return -1;
        if (!rt_buf_add(out, h->value, strlen(h->value))) return -1;
        count++;
    }
    return count;
}

/* Everything one decision looks at. */
struct rt_req {
    const struct policy_request *r;
    const char *method;
    const char *path; /* cleaned */
    size_t path_len;
    const char *query; /* cleaned; NULL when absent or empty */
    size_t query_len;
    size_t caps_off[RT_MAX_CAPS], caps_len[RT_MAX_CAPS];
    size_t n_caps;
    bool has_rest;
    size_t rest_off, rest_len;
    bool overflow; /* more params along the path than RT_MAX_CAPS: ask Lua */
};

/* ---- matching ----------------------------------------------------------------------------- */

static const struct rt_route *rt_pick(struct rt_route *const *list, size_t n, const char *method)
{
    for (size_t i = 0; i < n; i++) {
        const struct rt_route *r = list[i];
        if (r->any_method) return r;
        for (size_t k = 0; k < r->n_methods; k++)
            if (strcmp(r->methods[k], method) == 0) return r;
    }
    return NULL;
}

static const struct rt_node *rt_lit_find(const struct rt_node *n, const char *seg, size_t len)
{
    size_t lo = 0, hi = n->n_lit;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct rt_lit *l = &n->lit[mid];
        int c = l->len != len ? (l->len < len ? -1 : 1) : memcmp(l->seg, seg, len);
        if (c == 0) return l->child;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* router.lua's walk: pos is where the current segment starts (pos > len: all consumed). */
static const struct rt_route *rt_walk(const struct rt_node *node, struct rt_req *q, size_t pos,
                                      const char *method, size_t nc)
{
    const char *p = q->path;
    size_t len = q->path_len;
    if (pos > len) {
        const struct rt_route *r = rt_pick(node->here, node->n_here, method);
        if (r != NULL) {
            q->n_caps = nc;
            q->has_rest = false;
            return r;
        }
        r = rt_pick(node->wild, node->n_wild, method);
        if (r != NULL) {
            q->n_caps = nc;
            q->has_rest = true;
            q->rest_off = pos;
            q->rest_len = 0;
        }
        return r;
    }
    const char *slash = memchr(p + pos, '/', len - pos);
    size_t seg_len = slash ? (size_t)(slash - (p + pos)) : len - pos;
    size_t next = slash ? (size_t)(slash - p) + 1 : len + 1;
    const struct rt_node *child = rt_lit_find(node, p + pos, seg_len);
    if (child != NULL) {
        const struct rt_route *r = rt_walk(child, q, next, method, nc);
        if (r != NULL) return r;
    }
    if (node->param != NULL && seg_len > 0 && nc >= RT_MAX_CAPS) {
        q->overflow = true;
        return NULL;
    }
    if (node->param != NULL && seg_len > 0) {
        q->caps_off[nc] = pos;
        q->caps_len[nc] = seg_len;
        const struct rt_route *r = rt_walk(node->param, q, next, method, nc + 1);
        if (r != NULL) return r;
    }
    const struct rt_route *r = rt_pick(node->wild, node->n_wild, method);
    if (r != NULL) {
        q->n_caps = nc;
        q->has_rest = true;
        q->rest_off = pos;
        q->rest_len = len - pos;
    }
    return r;
}

static const struct rt_route *rt_match(const struct rt_node *root, struct rt_req *q,
                                       const char *method)
{
    if (root == NULL || q->path_len == 0 || q->path[0] != '/') return NULL;
    return rt_walk(root, q, q->path_len == 1 ? 2 : 1, method, 0);
}

/* Router:match of gateway/router.lua on one trie: the method, then a HEAD as GET. */
static const struct rt_route *rt_match_head(const struct rt_node *root, struct rt_req *q)
{
    const struct rt_route *r = rt_match(root, q, q->method);
    if (r == NULL && !q->overflow && strcmp(q->method, "HEAD") == 0) r = rt_match(root, q, "GET");
    return r;
}

/* ---- expanding templates ------------------------------------------------------------------ */

/* Non-empty '&'-separated pairs in the query (url.lua's each_pair counts these). */
static size_t rt_count_pairs(const char *qs, size_t len)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || qs[i] == '&') {
            if (i > start) n++;
            start = i + 1;
        }
    }
    return n;
}

static _Thread_local struct query_norm rt_qn;

/* Appends url.normalize_query(query, ign).  Returns false when out of memory (the count
 * was checked beforehand, so query_norm cannot say too many). */
static bool rt_add_query(struct rt_buf *b, const struct rt_req *q, const struct rt_ignore *ig)
{
    if (q->query == NULL) return true;
    if (query_norm_scan(&rt_qn, q->query, q->query_len, &ig->q) != QUERY_NORM_OK) return false;
    if (!rt_buf_reserve(b, rt_qn.out_len + rt_qn.scratch_len)) return false;
    query_norm_write(&rt_qn, b->d + b->len + rt_qn.out_len, b->d + b->len);
    b->len += rt_qn.out_len;
    return true;
}

/* Appends clean(url.query_table(query)[name] or ""): the first pair whose decoded name is
 * name, its value decoded ('+' a space). */
static bool rt_add_qparam(struct rt_buf *b, const struct rt_req *q, const char *name,
                          size_t name_len)
{
    const char *s = q->query;
    size_t len = q->query_len;
    struct rt_buf nb;
    rt_buf_init(&nb);
    bool ok = true;
    for (size_t pos = 0; s != NULL && pos < len;) {
        const char *amp = memchr(s + pos, '&', len - pos);
        size_t end = amp ? (size_t)(amp - s) : len;
        if (end > pos) {
            const char *eq = memchr(s + pos, '=', end - pos);
            size_t nend = eq ? (size_t)(eq - s) : end;
            nb.len = 0;
            /* Decoded names never hold raw control characters in Lua's comparison, but
             * rt_buf_add_decoded encodes them: compare against a plain decode instead. */
            if (!rt_buf_reserve(&nb, nend - pos)) {
                ok = false;
                break;
            }
            for (size_t i = pos; i < nend;) {
                unsigned char c = (unsigned char)s[i];
                if (c == '%' && nend - i >= 3 && rt_hexval((unsigned char)s[i + 1]) >= 0 &&
                    rt_hexval((unsigned char)s[i + 2]) >= 0) {
                    c = (unsigned char)(rt_hexval((unsigned char)s[i + 1]) << 4 |
                                        rt_hexval((unsigned char)s[i + 2]));
                    i += 3;
                } else {
                    if (c == '+') c = ' ';
                    i++;
                }
                nb.d[nb.len++] = (char)c;
            }
            if (nb.len == name_len && memcmp(nb.d, name, name_len) == 0) {
                if (eq != NULL) ok = rt_buf_add_decoded(b, eq + 1, end - (nend + 1), true);
                break;
            }
        }
        pos = end + 1;
    }
    rt_buf_free(&nb);
    return ok;
}

static void rt_sha256_hex(const char *s, size_t len, char *out, size_t n_hex)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(s, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32)
        memset(md, 0, sizeof md); /* cannot happen with a working libcrypto */
    for (size_t i = 0; i < n_hex; i++) out[i] = hex[(md[i / 2] >> (i % 2 ? 0 : 4)) & 15];
}

/* Appends keys.auth_hash(req.header): SHA-256 of "authorization\0" A, "cookie\0" C, or
 * "authorization\0" A "\0cookie\0" C (A present even empty, C only non-empty), 16 hex
 * digits; "anon" without either.  Returns false when out of memory. */
static bool rt_add_auth(struct rt_buf *b, const struct rt_req *q)
{
    struct rt_buf a, c, in;
    rt_buf_init(&a);
    rt_buf_init(&c);
    rt_buf_init(&in);
    int na = rt_header_join(q->r, "authorization", 13, &a);
    int nc = rt_header_join(q->r, "cookie", 6, &c);
    bool ok = na >= 0 && nc >= 0;
    bool has_c = nc > 0 && c.len > 0;
    if (ok && na > 0) ok = rt_buf_add(&in, "authorization", 14) && rt_buf_add(&in, a.d, a.len);
    if (ok && na > 0 && has_c) ok = rt_buf_add(&in, "", 1);
    if (ok && has_c) ok = rt_buf_add(&in, "cookie", 7) && rt_buf_add(&in, c.d, c.len);
    if (ok && na == 0 && !has_c) {
        ok = rt_buf_add(b, "anon", 4);
    } else if (ok) {
        char hex[RT_AUTH_HEX];
        rt_sha256_hex(in.d, in.len, hex, sizeof hex);
        ok = rt_buf_add(b, hex, sizeof hex);
    }
    rt_buf_free(&a);
    rt_buf_free(&c);
    rt_buf_free(&in);
    return ok;
}

/* Appends tm expanded for q (without the length bound).  Returns false when out of memory. */
static bool rt_expand(struct rt_buf *b, const struct rt_tmpl *tm, const struct rt_req *q,
                      const struct rt_route *r)
{
    for (size_t i = 0; i < tm->n; i++) {
        const struct rt_part *p = &tm->parts[i];
        bool ok = true;
        switch (p->kind) {
        case RT_LIT:
            ok = rt_buf_add(b, p->s, p->len);
            break;
        case RT_PARAM:
            if (p->param < 0) {
                if (q->has_rest)
                    ok = rt_buf_add_decoded(b, q->path + q->rest_off, q->rest_len, false);
            } else if ((size_t)p->param < q->n_caps) {
                ok = rt_buf_add_decoded(b, q->path + q->caps_off[p->param],
                                        q->caps_len[p->param], false);
            }
            break;
        case RT_QUERY:
            ok = rt_add_query(b, q, &r->ign);
            break;
        case RT_QPARAM:
            ok = rt_add_qparam(b, q, p->s, p->len);
            break;
        case RT_HEADER: {
            struct rt_buf hb;
            rt_buf_init(&hb);
            ok = rt_header_join(q->r, p->s, p->len, &hb) >= 0 &&
                 rt_buf_add_clean(b, hb.d, hb.len);
            rt_buf_free(&hb);
            break;
        }
        case RT_METHOD: {
            const char *m = strcmp(q->method, "HEAD") == 0 ? "GET" : q->method;
            ok = rt_buf_add(b, m, strlen(m));
            break;
        }
        case RT_PATH:
            ok = rt_buf_add(b, q->path, q->path_len);
            break;
        case RT_AUTH:
            ok = rt_add_auth(b, q);
            break;
        }
        if (!ok) return false;
    }
    return true;
}

/* keys.bound of b's contents, as a malloc'd string (NULL when out of memory). */
static char *rt_bound_dup(const struct rt_buf *b)
{
    if (b->len <= RT_MAX_KEY) return rt_memdup(b->d, b->len);
    char *d = malloc(RT_KEEP + 1 + RT_HASH_HEX + 1);
    if (d == NULL) return NULL;
    memcpy(d, b->d, RT_KEEP);
    d[RT_KEEP] = '#';
    rt_sha256_hex(b->d, b->len, d + RT_KEEP + 1, RT_HASH_HEX);
    d[RT_KEEP + 1 + RT_HASH_HEX] = '\0';
    return d;
}

static char *rt_expand_dup(const struct rt_tmpl *tm, const struct rt_req *q,
                           const struct rt_route *r)
{
    struct rt_buf b;
    rt_buf_init(&b);
    char *s = rt_expand(&b, tm, q, r) ? rt_bound_dup(&b) : NULL;
    rt_buf_free(&b);
    return s;
}

/* keys.default_key(req, ignore, "GET"), bounded. */
static char *rt_default_key(const struct rt_req *q, const struct rt_ignore *ig)
{
    struct rt_buf b;
    rt_buf_init(&b);
    char *s = NULL;
    if (rt_buf_add(&b, "GET:", 4) && rt_buf_add(&b, q->path, q->path_len)) {
        size_t at = b.len;
        bool ok = rt_buf_add(&b, "?", 1) && rt_add_query(&b, q, ig);
        if (ok && b.len == at + 1) b.len = at; /* nothing left of the query */
        if (ok) s = rt_bound_dup(&b);
    }
    rt_buf_free(&b);
    return s;
}

/* has_credentials of gateway/policy.lua: Authorization present (even empty), or a
 * non-empty Cookie (as joined). */
static int rt_has_credentials(const struct policy_request *r)
{
    struct rt_buf b;
    rt_buf_init(&b);
    int na = rt_header_join(r, "authorization", 13, &b);
    int rc;
    if (na != 0) {
        rc = na > 0 ? 1 : -1;
    } else {
        b.len = 0;
        int nc = rt_header_join(r, "cookie", 6, &b);
        rc = nc < 0 ? -1 : b.len > 0;
    }
    rt_buf_free(&b);
    return rc;
}

/* The request's Host as normalize_host in gateway/policy.lua reads it (header values
 * joined as Lua sees them, lower-cased, without the port or a trailing dot; "[v6]" kept
 * whole) into b.  Returns 1 with a host, 0 without one, -1 when out of memory. */
static int rt_request_host(const struct policy_request *r, struct rt_buf *b)
{
    int n = rt_header_join(r, "host", 4, b);
    if (n <= 0) return n;
    for (size_t i = 0; i < b->len; i++)
        if (b->d[i] >= 'A' && b->d[i] <= 'Z') b->d[i] = (char)(b->d[i] + 32);
    size_t len = b->len;
    if (len > 0 && b->d[0] == '[') {
        const char *end = memchr(b->d, ']', len);
        if (end == NULL) return 0;
        b->len = (size_t)(end - b->d) + 1;
        return 1;
    }
    const char *colon = memchr(b->d, ':', len);
    if (colon != NULL) len = (size_t)(colon - b->d);
    if (len > 0 && b->d[len - 1] == '.') len--;
    b->len = len;
    return len > 0;
}

/* Host routing: *host = the index of the request's declared host, or -1.  Returns 0, 1 to
 * reject (an undeclared host under unknown_host "reject"), -1 out of memory. */
static int rt_host_route(const struct route_table *t, const struct policy_request *r,
                         int *host)
{
    *host = -1;
    if (t->n_hosts == 0 && !t->reject_unknown) return 0;
    struct rt_buf b;
    rt_buf_init(&b);
    int rc = rt_request_host(r, &b);
    if (rc > 0) {
        rc = 0;
        for (size_t i = 0; i < t->n_hosts; i++)
            if (strlen(t->hosts[i]) == b.len && memcmp(t->hosts[i], b.d, b.len) == 0)
                *host = (int)i;
    }
    if (rc == 0 && *host < 0 && t->reject_unknown) rc = 1;
    rt_buf_free(&b);
    return rc;
}

/* ---- deciding ------------------------------------------------------------------------------ */

static void rt_out_free(struct policy_decision *out)
{
    free(out->key);
    out->key = NULL;
    for (size_t i = 0; i < out->n_tags; i++) free(out->tags[i]);
    free(out->tags);
    out->tags = NULL;
    out->n_tags = 0;
    for (size_t i = 0; i < out->n_invalidate; i++) free(out->invalidate[i].key);
    free(out->invalidate);
    out->invalidate = NULL;
    out->n_invalidate = 0;
}

static int rt_decide_route(const struct rt_route *r, const struct rt_req *q,
                           struct policy_decision *out)
{
    out->route_id = r->id;
    if (r->bypass) {
        out->action = POLICY_BYPASS;
        out->reason = "bypass";
        return ROUTE_TABLE_DECIDED;
    }
    if (r->kind == RT_READ) {
        if (!r->per_user) {
            int creds = rt_has_credentials(q->r);
            if (creds < 0) return -ENOMEM;
            if (creds) {
                out->action = POLICY_BYPASS;
                out->reason = "credentials";
                return ROUTE_TABLE_DECIDED;
            }
        }
        out->key = r->key ? rt_expand_dup(r->key, q, r) : rt_default_key(q, &r->ign);
        if (out->key == NULL) return -ENOMEM;
        if (r->n_tags > 0) {
            if ((out->tags = calloc(r->n_tags, sizeof *out->tags)) == NULL) return -ENOMEM;
            for (size_t i = 0; i < r->n_tags; i++) {
                if ((out->tags[i] = rt_expand_dup(&r->tags[i], q, r)) == NULL) return -ENOMEM;
                out->n_tags++;
            }
        }
        out->action = POLICY_CACHE;
        out->reason = "route";
        return ROUTE_TABLE_DECIDED;
    }
    if (r->kind == RT_WRITE) {
        size_t n = r->n_inv + r->n_inv_tags;
        if (n == 0) {
            out->action = POLICY_BYPASS;
            out->reason = "write";
            return ROUTE_TABLE_DECIDED;
        }
        if ((out->invalidate = calloc(n, sizeof *out->invalidate)) == NULL) return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            bool tag = i >= r->n_inv;
            const struct rt_tmpl *tm = tag ? &r->inv_tags[i - r->n_inv] : &r->inv[i];
            struct policy_target *tg = &out->invalidate[i];
            if ((tg->key = rt_expand_dup(tm, q, r)) == NULL) return -ENOMEM;
            tg->prefix = !tag && tm->prefix;
            tg->tag = tag;
            out->n_invalidate++;
        }
        out->action = POLICY_INVALIDATE;
        out->reason = "invalidate";
        return ROUTE_TABLE_DECIDED;
    }
    /* A '*' route without bypass has a bypass function and never gets here. */
    return ROUTE_TABLE_LUA;
}

int route_table_decide(const struct route_table *t, const struct policy_request *req,
                       struct policy_decision *out)
{
    struct rt_req q = {.r = req, .method = req->method ? req->method : "GET"};
    struct rt_buf pb, qb;
    rt_buf_init(&pb);
    rt_buf_init(&qb);
    int rc = -ENOMEM;
    const char *path = req->path ? req->path : "/";
    size_t plen = strlen(path);
    if (rt_escaped_len(path, plen) == plen) {
        q.path = path;
        q.path_len = plen;
    } else {
        if (!rt_buf_add_clean(&pb, path, plen)) goto done;
        q.path = pb.d;
        q.path_len = pb.len;
    }
    if (req->query != NULL && req->query[0] != '\0') {
        size_t len = strlen(req->query);
        if (rt_escaped_len(req->query, len) == len) {
            q.query = req->query;
            q.query_len = len;
        } else {
            if (!rt_buf_add_clean(&qb, req->query, len)) goto done;
            q.query = qb.d;
            q.query_len = qb.len;
        }
        /* Lua raises past this bound (a policy error): leave such requests to it. */
        if (rt_count_pairs(q.query, q.query_len) > QUERY_NORM_MAX_PARAMS) {
            rc = ROUTE_TABLE_LUA;
            goto done;
        }
    }

    int host;
    int hr = rt_host_route(t, req, &host);
    if (hr < 0) goto done;
    if (hr == 1) {
        out->route_id = 0;
        out->action = POLICY_BYPASS;
        out->reason = "unknown_host";
        out->reject_status = 404;
        rc = ROUTE_TABLE_DECIDED;
        goto done;
    }
    const struct rt_route *r = host >= 0 ? rt_match_head(t->host_roots[host], &q) : NULL;
    if (r == NULL && !q.overflow) r = rt_match_head(t->root, &q);
    if (q.overflow || (r != NULL && r->lua)) {
        rc = ROUTE_TABLE_LUA;
        goto done;
    }
    if (r != NULL) {
        rc = rt_decide_route(r, &q, out);
        goto done;
    }
    bool read = strcmp(q.method, "GET") == 0 || strcmp(q.method, "HEAD") == 0;
    int creds = read ? rt_has_credentials(req) : 0;
    if (creds < 0) goto done;
    out->route_id = 0;
    if (creds) {
        out->action = POLICY_BYPASS;
        out->reason = "credentials";
        rc = ROUTE_TABLE_DECIDED;
        goto done;
    }
    if ((out->key = rt_default_key(&q, &t->default_ign)) == NULL) goto done;
    out->action = POLICY_DEFAULT;
    out->reason = "no_route";
    rc = ROUTE_TABLE_DECIDED;
done:
    if (rc != ROUTE_TABLE_DECIDED) rt_out_free(out);
    rt_buf_free(&pb);
    rt_buf_free(&qb);
    return rc;
}
