/* upstream_config.c - see upstream_config.h. */
#include "upstream_config.h"

#include <stdlib.h>
#include <string.h>

static void upstream_config_clear(struct upstream_config *c)
{
    free(c->name);
    for (size_t i = 0; i < c->n_servers; i++) free(c->servers[i].url);
    free(c->servers);
    free(c->health.path);
    memset(c, 0, sizeof *c);
}

void upstream_configs_free(struct upstream_config *c, size_t n)
{
    for (size_t i = 0; c != NULL && i < n; i++) upstream_config_clear(&c[i]);
    free(c);
}

static char *upstream_config_strdup(const char *s, bool *ok)
{
    if (s == NULL) return NULL;
    char *d = strdup(s);
    if (d == NULL) *ok = false;
    return d;
}

struct upstream_config *upstream_configs_dup(const struct upstream_config *c, size_t n)
{
    if (n == 0) return NULL;
    struct upstream_config *out = calloc(n, sizeof *out);
    if (out == NULL) return NULL;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        out[i] = c[i];
        out[i].name = upstream_config_strdup(c[i].name, &ok);
        out[i].health.path = upstream_config_strdup(c[i].health.path, &ok);
        out[i].servers = calloc(c[i].n_servers ? c[i].n_servers : 1, sizeof *out[i].servers);
        out[i].n_servers = 0;
        if (out[i].servers == NULL) {
            ok = false;
            break;
        }
        for (size_t k = 0; k < c[i].n_servers && ok; k++) {
            out[i].servers[k].weight = c[i].servers[k].weight;
            out[i].servers[k].url = upstream_config_strdup(c[i].servers[k].url, &ok);
            out[i].n_servers++;
        }
    }
    if (!ok) {
        upstream_configs_free(out, n);
        return NULL;
    }
    return out;
}

const char *upstream_balance_name(enum upstream_balance b)
{
    switch (b) {
    case UPSTREAM_BALANCE_LEAST_CONN: return "least_conn";
    case UPSTREAM_BALANCE_HASH: return "hash";
    case UPSTREAM_BALANCE_ROUND_ROBIN: break;
    }
    return "round_robin";
}
