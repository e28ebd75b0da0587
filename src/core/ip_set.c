/* ip_set.c - see ip_set.h. */
#include "ip_set.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


struct cidr {
    int family;            /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
};

struct ip_set {
    size_t n;
    struct cidr items[];
};

static int parse_cidr(const char *s, struct cidr *out)
{
    char buf[64];
    size_t len = strlen(s);
    if (len == 0 || len >= sizeof buf) return -1;
    memcpy(buf, s, len + 1);
    char *slash = strchr(buf, '/');
    int bits = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        long b = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || b < 0 || b > 128) return -1;
        bits = (int)b;
    }
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        if (bits > 32) return -1;
        out->bits = bits < 0 ? 32 : bits;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->bits = bits < 0 ? 128 : bits;
    } else {
        return -1;
    }
    return 0;
}

int ip_set_parse(const char *list, struct ip_set **out, char *bad,
                          size_t bad_len)
{
    *out = NULL;
    if (list == NULL || *list == '\0') return 0;
    size_t cap = 1;
    for (const char *p = list; *p; p++)
        if (*p == ',' || *p == ' ') cap++;
    struct ip_set *tp = calloc(1, sizeof *tp + cap * sizeof tp->items[0]);
    if (tp == NULL) return -1;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == '\0') break;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        char elem[64];
        size_t len = (size_t)(e - p);
        snprintf(elem, sizeof elem, "%.*s", (int)len, p);
        if (len >= sizeof elem || parse_cidr(elem, &tp->items[tp->n]) != 0) {
            snprintf(bad, bad_len, "%.*s", (int)(len > 48 ? 48 : len), p);
            free(tp);
            return -1;
        }
        tp->n++;
        p = e;
    }
    if (tp->n == 0) {
        free(tp);
        return 0;
    }
    *out = tp;
    return 0;
}

void ip_set_free(struct ip_set *tp) { free(tp); }

static bool cidr_match(const struct cidr *c, const unsigned char *addr)
{
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr, addr, (size_t)full) != 0) return false;
    if (rest == 0) return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

bool ip_set_contains(const struct ip_set *tp, const char *ip)
{
    if (tp == NULL || ip == NULL) return false;
    unsigned char a4[4], a6[16];
    bool v4 = inet_pton(AF_INET, ip, a4) == 1;
    bool v6 = !v4 && inet_pton(AF_INET6, ip, a6) == 1;
    for (size_t i = 0; i < tp->n; i++) {
        const struct cidr *c = &tp->items[i];
        if (c->family == AF_INET && v4 && cidr_match(c, a4)) return true;
        if (c->family == AF_INET6 && v6 && cidr_match(c, a6)) return true;
    }
    return false;
}
