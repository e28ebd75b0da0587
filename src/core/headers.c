/* headers.c - see headers.h. */
#include "headers.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int header_list_addn(struct header_list *l, const char *name, size_t name_len,
                     const char *value, size_t value_len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct http_header *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL) return -ENOMEM;
        l->items = items;
        l->cap = cap;
    }
    /* One block per field: the name, then the value (freed through the name). */
    char *n = malloc(name_len + 1 + value_len + 1);
    if (n == NULL) return -ENOMEM;
    char *v = n + name_len + 1;
    for (size_t i = 0; i < name_len; i++) n[i] = (char)tolower((unsigned char)name[i]);
    n[name_len] = '\0';
    memcpy(v, value, value_len);
    v[value_len] = '\0';
    l->items[l->n].name = n;
    l->items[l->n].value = v;
    l->n++;
    return 0;
}

int header_list_add(struct header_list *l, const char *name, const char *value)
{
    return header_list_addn(l, name, strlen(name), value, strlen(value));
}

const char *header_list_get(const struct header_list *l, const char *name)
{
    const int first = name[0] | 0x20; /* a cheap look at the first letter saves most calls */
    for (size_t i = 0; i < l->n; i++)
        if ((l->items[i].name[0] | 0x20) == first && strcasecmp(l->items[i].name, name) == 0)
            return l->items[i].value;
    return NULL;
}

int headers_get_all(const struct http_header *items, size_t n, const char *name, const char *sep,
                    char *out, size_t cap)
{
    if (cap == 0) return -1;
    size_t off = 0, seplen = strlen(sep);
    int lines = 0;
    out[0] = '\0';
    const int first = name[0] | 0x20;
    for (size_t i = 0; i < n; i++) {
        if ((items[i].name[0] | 0x20) != first || strcasecmp(items[i].name, name) != 0) continue;
        lines++;
        const char *v = items[i].value;
        size_t vlen = strlen(v);
        if (vlen == 0) continue; /* an empty line is an empty list */
        size_t need = (off ? seplen : 0) + vlen;
        if (need >= cap - off) {
            out[0] = '\0';
            return -1;
        }
        if (off) {
            memcpy(out + off, sep, seplen);
            off += seplen;
        }
        memcpy(out + off, v, vlen);
        off += vlen;
        out[off] = '\0';
    }
    return lines;
}

int header_list_get_all(const struct header_list *l, const char *name, char *out, size_t cap)
{
    return headers_get_all(l->items, l->n, name, ", ", out, cap);
}

size_t header_list_remove(struct header_list *l, const char *name)
{
    size_t kept = 0, removed = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (strcasecmp(l->items[i].name, name) == 0) {
            free((char *)l->items[i].name); /* the value lives in the same block */
            removed++;
        } else {
            l->items[kept++] = l->items[i];
        }
    }
    l->n = kept;
    return removed;
}

void header_list_free(struct header_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->items[i].name); /* the value lives in the same block */
    }
    free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}

/* Walks a comma-separated list; calls match on each trimmed element. */
static const char *find_token(const char *list, const char *token, size_t *elem_len)
{
    if (list == NULL) return NULL;
    size_t tlen = strlen(token);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',') p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
        size_t len = (size_t)(end - start);
        if (len >= tlen && strncasecmp(start, token, tlen) == 0 &&
            (len == tlen || start[tlen] == '=' || start[tlen] == ' ')) {
            *elem_len = len;
            return start;
        }
    }
    return NULL;
}

bool headers_has_token(const char *list, const char *token)
{
    size_t len;
    return find_token(list, token, &len) != NULL;
}

bool headers_token_int(const char *list, const char *token, long long *out)
{
    size_t len;
    const char *e = find_token(list, token, &len);
    if (e == NULL) return false;
    const char *p = e + strlen(token);
    while (*p == ' ') p++;
    if (*p != '=') return false;
    p++;
    if (*p == '"') p++;
    if (!isdigit((unsigned char)*p)) return false;
    long long v = 0;
    /* Saturate before multiplying: v <= 2^31 keeps v * 10 + 9 far from overflow. */
    for (; isdigit((unsigned char)*p); p++) {
        v = v * 10 + (*p - '0');
        if (v > HEADERS_DELTA_MAX) v = HEADERS_DELTA_MAX;
    }
    *out = v;
    return true;
}

bool headers_is_hop_by_hop(const char *name, const char *connection_value)
{
    static const char *const FIXED[] = {"connection", "keep-alive", "te", "transfer-encoding",
                                        "upgrade",    "trailer",    "proxy-connection"};
    for (size_t i = 0; i < sizeof FIXED / sizeof FIXED[0]; i++)
        if (strcasecmp(name, FIXED[i]) == 0) return true;
    if (strncasecmp(name, "proxy-", 6) == 0) return true;
    return connection_value != NULL && headers_has_token(connection_value, name);
}
