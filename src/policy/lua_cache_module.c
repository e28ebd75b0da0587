/* lua_cache_module.c - the `cache` module's backend in the loadable module for busted: see
 * lua_cache_backend.h.  It owns a memory tier and an invalidation index, and with REDIS_URL
 * (plain redis:// only) a synchronous hiredis connection: busted is not a gateway worker, so
 * blocking reads are fine here.  On a Redis Cluster it follows MOVED and ASK (at most
 * MAX_REDIRECTS per command) to the node named, over a connection per node opened on demand
 * with the URL's credentials, so every key works whatever its slot; it keeps no slot map
 * (a key on another node costs one redirect per command: fine for specs). */
#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval_index.h"
#include "log.h"
#include "lua_cache_backend.h"
#include "redis_url.h"
#include "store_l1.h"

enum { MAX_REDIRECTS = 5, MAX_NODES = 16 };

struct module_node {
    char host[256];
    int port;
    redisContext *ctx;
};

struct lua_cache_be {
    struct store_l1 *l1;
    struct inval_index *inval;
    redisContext *redis; /* the seed */
    char *user, *password;
    struct module_node nodes[MAX_NODES]; /* other cluster nodes, opened on redirects */
    size_t n_nodes;
    char *prefix;
    size_t max_value;
    uint64_t hits, misses;
};

bool lua_cache_be_bound(const struct mstate *st)
{
    return st->be->l1 != NULL;
}
size_t lua_cache_be_max_value(const struct mstate *st)
{
    return st->be->max_value;
}
uint64_t lua_cache_be_gen(const struct mstate *st)
{
    return inval_index_current(st->be->inval);
}
static bool redis_up(const struct mstate *st)
{
    return st->be->redis != NULL && !st->be->redis->err;
}

static redisContext *node_connect(const char *host, int port, const char *user,
                                  const char *password, int db);

/* The connection to host:port: the seed's, or one opened now (NULL when it fails). */
static redisContext *node_ctx(struct lua_cache_be *be, const char *host, int port)
{
    for (size_t i = 0; i < be->n_nodes; i++)
        if (be->nodes[i].port == port && strcmp(be->nodes[i].host, host) == 0)
            return be->nodes[i].ctx && !be->nodes[i].ctx->err ? be->nodes[i].ctx : NULL;
    if (be->n_nodes == MAX_NODES || strlen(host) >= sizeof be->nodes[0].host) return NULL;
    struct module_node *n = &be->nodes[be->n_nodes++];
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    n->ctx = node_connect(host, port, be->user, be->password, 0);
    return n->ctx;
}

/* "MOVED <slot> <host>:<port>" or "ASK ...": the node named, or NULL. */
static redisContext *redirect_target(struct lua_cache_be *be, const char *err, bool *ask)
{
    *ask = strncmp(err, "ASK ", 4) == 0;
    if (!*ask && strncmp(err, "MOVED ", 6) != 0) return NULL;
    const char *addr = strchr(err + (*ask ? 4 : 6), ' ');
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (colon == NULL) return NULL;
    char host[256];
    size_t hl = (size_t)(colon - addr - 1);
    if (hl == 0 || hl >= sizeof host) return NULL;
    memcpy(host, addr + 1, hl);
    host[hl] = '\0';
    int port = atoi(colon + 1);
    if (port < 1 || port > 65535) return NULL;
    return node_ctx(be, host, port);
}

/* One command, following cluster redirects.  The reply (or NULL) is the caller's. */
static redisReply *module_command(struct mstate *st, int argc, const char **argv,
                                  const size_t *lens)
{
    redisContext *c = st->be->redis;
    bool ask = false;
    for (int i = 0; c != NULL && i <= MAX_REDIRECTS; i++) {
        if (ask) {
            redisReply *a = redisCommand(c, "ASKING");
            if (a) freeReplyObject(a);
        }
        redisReply *r = redisCommandArgv(c, argc, argv, lens);
        if (r == NULL || r->type != REDIS_REPLY_ERROR || r->str == NULL) return r;
        redisContext *next = redirect_target(st->be, r->str, &ask);
        if (next == NULL) return r;
        freeReplyObject(r);
        c = next;
    }
    return NULL;
}

/* Prefix + namespaced key into a malloc'd buffer. */
static char *redis_key(const struct mstate *st, const char *k, size_t len, size_t *out_len)
{
    size_t pl = strlen(st->be->prefix);
    char *fk = malloc(pl + len + 1);
    if (fk == NULL) return NULL;
    memcpy(fk, st->be->prefix, pl);
    memcpy(fk + pl, k, len);
    fk[pl + len] = '\0';
    *out_len = pl + len;
    return fk;
}

static void redis_simple(struct mstate *st, const char *cmd, const char *k, size_t len)
{
    if (!redis_up(st)) return;
    size_t fl;
    char *fk = redis_key(st, k, len, &fl);
    if (fk == NULL) return;
    const char *argv[2] = {cmd, fk};
    size_t lens[2] = {strlen(cmd), fl};
    redisReply *r = module_command(st, 2, argv, lens);
    if (r) freeReplyObject(r);
    free(fk);
}

static bool usable(const struct mstate *st, const struct cache_object *obj, int64_t now)
{
    return cache_object_is_fresh(obj, now) && inval_index_valid(st->be->inval, obj);
}

/* The synchronous Redis read of the loadable module (busted is not a worker). */
static struct cache_object *redis_read(struct mstate *st, const char *k, size_t len, int64_t now)
{
    if (!redis_up(st)) return NULL;
    size_t fl;
    char *fk = redis_key(st, k, len, &fl);
    if (fk == NULL) return NULL;
    const char *argv[2] = {"GET", fk};
    size_t lens[2] = {3, fl};
    redisReply *r = module_command(st, 2, argv, lens);
    free(fk);
    struct cache_object *obj = NULL;
    if (r && r->type == REDIS_REPLY_STRING && cache_object_decode(r->str, r->len, &obj) == 0 &&
        (obj->key_len != len || memcmp(obj->key, k, len) != 0 || !usable(st, obj, now))) {
        cache_object_unref(obj);
        obj = NULL;
    }
    if (r) freeReplyObject(r);
    if (obj) store_l1_put(st->be->l1, obj, now);
    return obj;
}

struct cache_object *lua_cache_be_lookup(struct mstate *st, const char *k, size_t len, int64_t now,
                                         bool remote)
{
    struct cache_object *obj = store_l1_get(st->be->l1, k, len, now);
    if (obj && !usable(st, obj, now)) {
        store_l1_delete(st->be->l1, k, len);
        cache_object_unref(obj);
        obj = NULL;
    }
    if (obj == NULL && remote) obj = redis_read(st, k, len, now);
    if (obj)
        st->be->hits++;
    else
        st->be->misses++;
    return obj;
}

void lua_cache_be_store(struct mstate *st, struct cache_object *obj)
{
    store_l1_put(st->be->l1, obj, lua_cache_now_ms());
    if (!redis_up(st)) return;
    char *val = NULL;
    size_t val_len = 0;
    size_t fl;
    char *fk = redis_key(st, obj->key, obj->key_len, &fl);
    if (fk != NULL && cache_object_encode(obj, &val, &val_len) == 0) {
        char px[24];
        snprintf(px, sizeof px, "%lld", (long long)(obj->meta.ttl_ms > 0 ? obj->meta.ttl_ms : 1));
        const char *argv[5] = {"SET", fk, val, "PX", px};
        size_t lens[5] = {3, fl, val_len, 2, strlen(px)};
        redisReply *r = module_command(st, 5, argv, lens);
        if (r) freeReplyObject(r);
    }
    free(val);
    free(fk);
}

void lua_cache_be_delete(struct mstate *st, const char *k, size_t len)
{
    store_l1_delete(st->be->l1, k, len);
    redis_simple(st, "DEL", k, len);
}

void lua_cache_be_invalidate_prefix(struct mstate *st, const char *p, size_t len)
{
    inval_index_note_prefix(st->be->inval, p, len, inval_index_next_local(st->be->inval));
    if (!redis_up(st)) return;
    /* SCAN MATCH <prefix><p>* with glob characters escaped, then DEL what it finds. */
    size_t pl = strlen(st->be->prefix);
    char *pat = malloc(2 * (pl + len) + 2);
    if (pat == NULL) return;
    size_t n = 0;
    const char *parts[2] = {st->be->prefix, p};
    size_t plens[2] = {pl, len};
    for (int i = 0; i < 2; i++)
        for (size_t j = 0; j < plens[i]; j++) {
            char c = parts[i][j];
            if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') pat[n++] = '\\';
            pat[n++] = c;
        }
    pat[n++] = '*';
    char cursor[32] = "0";
    do {
        const char *argv[6] = {"SCAN", cursor, "MATCH", pat, "COUNT", "1000"};
        size_t lens[6] = {4, strlen(cursor), 5, n, 5, 4};
        redisReply *r = redisCommandArgv(st->be->redis, 6, argv, lens);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r) freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str ? r->element[0]->str : "0");
        redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *dargv[2] = {"DEL", keys->element[i]->str};
            size_t dlens[2] = {3, keys->element[i]->len};
            redisReply *d = module_command(st, 2, dargv, dlens);
            if (d) freeReplyObject(d);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    free(pat);
}

void lua_cache_be_push_stats(lua_State *L, struct mstate *st)
{
    uint64_t total = st->be->hits + st->be->misses;
    struct store_l1_stats l1;
    store_l1_get_stats(st->be->l1, &l1);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)st->be->hits);
    lua_setfield(L, -2, "hits");
    lua_pushinteger(L, (lua_Integer)st->be->misses);
    lua_setfield(L, -2, "misses");
    lua_pushnumber(L, total ? round((double)st->be->hits * 10000.0 / (double)total) / 100.0 : 0.0);
    lua_setfield(L, -2, "hit_rate_percent");
    lua_pushboolean(L, redis_up(st));
    lua_setfield(L, -2, "redis_available");
    lua_pushinteger(L, (lua_Integer)l1.entries);
    lua_setfield(L, -2, "memory_cache_size");
}

bool lua_cache_be_can_yield(lua_State *L, const struct mstate *st)
{
    return false;
}

static int mstate_gc(lua_State *L)
{
    struct mstate *st = lua_touserdata(L, 1);
    if (st->held) cache_object_unref(st->held);
    st->held = NULL;
    if (st->be == NULL) return 0;
    if (st->be->redis) redisFree(st->be->redis);
    st->be->redis = NULL;
    for (size_t i = 0; i < st->be->n_nodes; i++)
        if (st->be->nodes[i].ctx) redisFree(st->be->nodes[i].ctx);
    st->be->n_nodes = 0;
    free(st->be->user);
    if (st->be->password) memset(st->be->password, 0, strlen(st->be->password));
    free(st->be->password);
    if (st->be->l1) store_l1_destroy(st->be->l1);
    st->be->l1 = NULL;
    if (st->be->inval) inval_index_destroy(st->be->inval);
    st->be->inval = NULL;
    free(st->be->prefix);
    free(st->be);
    st->be = NULL;
    return 0;
}

/* A synchronous connection to host:port with AUTH and SELECT, or NULL with a warning. */
static redisContext *node_connect(const char *host, int port, const char *user,
                                  const char *password, int db)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (c == NULL || c->err) {
        LOG_W("cache module: Redis connection failed: %s; using memory only",
              c ? c->errstr : "out of memory");
        if (c) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    bool ok = true;
    if (password) {
        redisReply *r = user ? redisCommand(c, "AUTH %s %s", user, password)
                             : redisCommand(c, "AUTH %s", password);
        ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
    }
    if (ok && db) {
        redisReply *r = redisCommand(c, "SELECT %d", db);
        ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
    }
    if (!ok) {
        LOG_W("cache module: Redis refused AUTH/SELECT; using memory only");
        redisFree(c);
        return NULL;
    }
    return c;
}

/* REDIS_URL=redis://... (plain only): the seed's connection, or NULL with a warning.  The
 * credentials are kept for the nodes a cluster redirects to. */
static redisContext *module_connect(struct lua_cache_be *be)
{
    const char *url = getenv("REDIS_URL");
    if (url == NULL || url[0] == '\0') return NULL;
    if (strncmp(url, "redis://", 8) != 0) {
        LOG_W("cache module: only redis:// URLs are supported outside the gateway; "
              "using memory only");
        return NULL;
    }
    struct redis_url u;
    char err[256];
    if (redis_url_parse(url, &u, err, sizeof err) != 0) {
        LOG_W("cache module: %s; using memory only", err);
        return NULL;
    }
    be->user = u.user ? strdup(u.user) : NULL;
    be->password = u.password ? strdup(u.password) : NULL;
    redisContext *c = node_connect(u.host, u.port, u.user, u.password, u.db);
    redis_url_free(&u);
    return c;
}

void lua_cache_be_init(lua_State *L, struct mstate *st)
{
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, mstate_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    /* From here a raise is cleaned up by mstate_gc. */
    st->be = calloc(1, sizeof *st->be);
    if (st->be == NULL) luaL_error(L, "cache module: out of memory");
    const char *mv = getenv("MAX_VALUE_SIZE");
    st->be->max_value = mv && atol(mv) > 0 ? (size_t)atol(mv) : (size_t)1 << 20;
    const char *prefix = getenv("REDIS_PREFIX");
    st->be->prefix = strdup(prefix ? prefix : "cachegw:");
    if (st->be->prefix == NULL || store_l1_create((size_t)64 << 20, 16, &st->be->l1) != 0 ||
        inval_index_create(&st->be->inval) != 0)
        luaL_error(L, "cache module: out of memory");
    st->be->redis = module_connect(st->be);
}
