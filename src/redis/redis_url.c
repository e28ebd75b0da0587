/* redis_url.c - see redis_url.h. */
#include "redis_url.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void set_err(char *err, size_t err_len, const char *msg)
{
    if (err != NULL && err_len > 0) snprintf(err, err_len, "%s", msg);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copies [s, s+n) into a new string, percent-decoding it.  Returns 0, -EINVAL
 * (bad escape or an encoded NUL) or -ENOMEM.  An empty input gives NULL. */
static int percent_decode(const char *s, size_t n, char **out)
{
    *out = NULL;
    if (n == 0) return 0;
    char *d = malloc(n + 1);
    if (d == NULL) return -ENOMEM;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            d[j++] = s[i];
            continue;
        }
        if (i + 2 >= n || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) goto bad;
        int v = hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]);
        if (v == 0) goto bad;
        d[j++] = (char)v;
        i += 2;
    }
    d[j] = '\0';
    *out = d;
    return 0;
bad:
    memset(d, 0, n + 1);
    free(d);
    return -EINVAL;
}

/* Parses a decimal number made of digits only, within [min, max]. */
static int parse_uint(const char *s, size_t n, long long min, long long max, int *out)
{
    if (n == 0) return -EINVAL;
    long long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -EINVAL;
        v = v * 10 + (s[i] - '0');
        if (v > max) return -EINVAL;
    }
    if (v < min) return -EINVAL;
    *out = (int)v;
    return 0;
}

static bool host_char_ok(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

static bool ipv6_char_ok(char c)
{
    return isxdigit((unsigned char)c) || c == ':' || c == '.';
}

/* Parses host[:port] at *pp (a name, an IPv4 address or a bracketed IPv6
 * literal), up to a ',' a '/' or the end; advances *pp past it.  *host is
 * allocated.  Returns 0, -EINVAL (reason in err) or -ENOMEM. */
static int parse_host_port(const char **pp, char **host_out, int *port, char *err, size_t err_len)
{
    const char *p = *pp;
    const char *host = p;
    size_t host_len;
    *host_out = NULL;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL) {
            set_err(err, err_len, "unterminated IPv6 address (missing ']')");
            return -EINVAL;
        }
        host = p + 1;
        host_len = (size_t)(close - host);
        for (size_t i = 0; i < host_len; i++) {
            if (!ipv6_char_ok(host[i])) {
                set_err(err, err_len, "invalid IPv6 address");
                return -EINVAL;
            }
        }
        p = close + 1;
        if (*p != '\0' && *p != ':' && *p != '/' && *p != ',') {
            set_err(err, err_len, "unexpected characters after the IPv6 address");
            return -EINVAL;
        }
    } else {
        host_len = strcspn(p, ":/,");
        for (size_t i = 0; i < host_len; i++) {
            if (!host_char_ok(host[i])) {
                set_err(err, err_len, "invalid host name");
                return -EINVAL;
            }
        }
        p += host_len;
    }
    if (host_len == 0) {
        set_err(err, err_len, "missing host");
        return -EINVAL;
    }
    if (*p == ':') {
        p++;
        size_t n = strcspn(p, "/,");
        if (parse_uint(p, n, 1, 65535, port) != 0) {
            set_err(err, err_len, "invalid port (expected 1-65535)");
            return -EINVAL;
        }
        p += n;
    }
    *host_out = strndup(host, host_len);
    if (*host_out == NULL) {
        set_err(err, err_len, "out of memory");
        return -ENOMEM;
    }
    *pp = p;
    return 0;
}

int redis_url_parse_nodes(const char *list, struct redis_url_node **out, size_t *n_out, char *err,
                          size_t err_len)
{
    *out = NULL;
    *n_out = 0;
    if (list == NULL || *list == '\0') {
        set_err(err, err_len, "empty list");
        return -EINVAL;
    }
    struct redis_url_node *nodes = NULL;
    size_t n = 0;
    const char *p = list;
    int rc;
    for (;;) {
        char *h;
        int port = REDIS_URL_DEFAULT_PORT;
        if (n == REDIS_URL_MAX_NODES) {
            rc = -EINVAL;
            set_err(err, err_len, "too many nodes (at most " REDIS_URL_MAX_NODES_STR ")");
            goto fail;
        }
        rc = parse_host_port(&p, &h, &port, err, err_len);
        if (rc != 0) goto fail;
        struct redis_url_node *nn = realloc(nodes, (n + 1) * sizeof *nn);
        if (nn == NULL) {
            free(h);
            rc = -ENOMEM;
            set_err(err, err_len, "out of memory");
            goto fail;
        }
        nodes = nn;
        nodes[n++] = (struct redis_url_node){.host = h, .port = port};
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != '\0') {
            rc = -EINVAL;
            set_err(err, err_len, "expected host:port[,host:port...]");
            goto fail;
        }
        break;
    }
    *out = nodes;
    *n_out = n;
    return 0;
fail:
    redis_url_nodes_free(nodes, n);
    return rc;
}

void redis_url_nodes_free(struct redis_url_node *nodes, size_t n)
{
    for (size_t i = 0; i < n; i++) free(nodes[i].host);
    free(nodes);
}

int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t err_len)
{
    struct redis_url u = {.port = REDIS_URL_DEFAULT_PORT};
    int rc = -EINVAL;
    const char *p;

    memset(out, 0, sizeof *out);
    if (url == NULL || *url == '\0') {
        set_err(err, err_len, "empty URL");
        goto done;
    }
    if (strncasecmp(url, "redis://", 8) == 0) {
        p = url + 8;
    } else if (strncasecmp(url, "rediss://", 9) == 0) {
        u.tls = true;
        p = url + 9;
    } else {
        set_err(err, err_len, "unsupported scheme (expected redis:// or rediss://)");
        goto done;
    }

    /* The userinfo ends at the last '@': the rest of a Redis URL (host, port,
     * database number) can never contain one, so an unescaped '@' in a
     * password is still read correctly. */
    const char *at = strrchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *user_end = colon != NULL ? colon : at;
        int r = percent_decode(p, (size_t)(user_end - p), &u.user);
        if (r == 0 && colon != NULL)
            r = percent_decode(colon + 1, (size_t)(at - colon - 1), &u.password);
        if (r != 0) {
            rc = r;
            set_err(err, err_len,
                    r == -ENOMEM ? "out of memory" : "invalid percent-encoding in user info");
            goto done;
        }
        p = at + 1;
    }

    /* One host[:port], or a comma-separated seed list of them (cluster). */
    for (;;) {
        char *h = NULL;
        int port = REDIS_URL_DEFAULT_PORT;
        rc = parse_host_port(&p, &h, &port, err, err_len);
        if (rc != 0) goto done;
        if (u.n_nodes == REDIS_URL_MAX_NODES) {
            free(h);
            rc = -EINVAL;
            set_err(err, err_len, "too many seed nodes (at most " REDIS_URL_MAX_NODES_STR ")");
            goto done;
        }
        struct redis_url_node *nn = realloc(u.nodes, (u.n_nodes + 1) * sizeof *nn);
        if (nn == NULL) {
            free(h);
            rc = -ENOMEM;
            set_err(err, err_len, "out of memory");
            goto done;
        }
        u.nodes = nn;
        u.nodes[u.n_nodes++] = (struct redis_url_node){.host = h, .port = port};
        if (*p != ',') break;
        p++;
    }
    rc = -EINVAL;
    if (*p == '/') {
        p++;
        size_t n = strlen(p);
        if (n > 0 && parse_uint(p, n, 0, INT_MAX, &u.db) != 0) {
            set_err(err, err_len, "invalid database number (expected a number from 0)");
            goto done;
        }
        p += n;
    }
    if (*p != '\0') { /* Unreachable with the scans above; kept as a guard. */
        set_err(err, err_len, "unexpected characters at the end of the URL");
        goto done;
    }

    u.host = strdup(u.nodes[0].host);
    if (u.host == NULL) {
        rc = -ENOMEM;
        set_err(err, err_len, "out of memory");
        goto done;
    }
    u.port = u.nodes[0].port;
    *out = u;
    return 0;

done:
    redis_url_free(&u);
    return rc;
}

void redis_url_free(struct redis_url *u)
{
    if (u == NULL) return;
    if (u->password != NULL) explicit_bzero(u->password, strlen(u->password));
    free(u->user);
    free(u->password);
    free(u->host);
    for (size_t i = 0; i < u->n_nodes; i++) free(u->nodes[i].host);
    free(u->nodes);
    memset(u, 0, sizeof *u);
}

/* Appends [s, s+n) to buf, keeping it NUL-terminated and never overflowing. */
static void append(char *buf, size_t len, size_t *pos, const char *s, size_t n)
{
    while (n > 0 && *pos + 1 < len) {
        buf[(*pos)++] = *s++;
        n--;
    }
    buf[*pos] = '\0';
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

/* Writes host[:port][/db] from [h, end), replacing any port or database part
 * that is not plain digits: in a mistyped URL such as "redis://user:secret"
 * (no '@') the text after the ':' may well be a password. */
static void append_hostpart(char *buf, size_t len, size_t *pos, const char *h, const char *end)
{
    const char *p = h;
    if (p < end && *p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        p = close != NULL ? close + 1 : end;
    } else {
        while (p < end && *p != ':' && *p != '/') p++;
    }
    append(buf, len, pos, h, (size_t)(p - h));
    if (p < end && *p == ':') {
        const char *q = p + 1;
        while (q < end && *q != '/') q++;
        if (all_digits(p + 1, (size_t)(q - p - 1)))
            append(buf, len, pos, p, (size_t)(q - p));
        else
            append(buf, len, pos, ":***", 4);
        p = q;
    }
    if (p < end && *p == '/') {
        if (end - p == 1 || all_digits(p + 1, (size_t)(end - p - 1)))
            append(buf, len, pos, p, (size_t)(end - p));
        else
            append(buf, len, pos, "/***", 4);
    }
}

void redis_url_redacted(const char *url, char *buf, size_t len)
{
    if (buf == NULL || len == 0) return;
    buf[0] = '\0';
    if (url == NULL) return;

    size_t pos = 0;
    const char *sep = strstr(url, "://");
    const char *rest = sep != NULL ? sep + 3 : url;
    const char *at = strrchr(rest, '@');

    append(buf, len, &pos, url, (size_t)(rest - url));
    if (sep == NULL) {
        /* Without a scheme there is no telling a host from a bare password. */
        append(buf, len, &pos, "***", 3);
        if (at == NULL) return;
    } else if (at != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        if (colon != NULL) {
            append(buf, len, &pos, rest, (size_t)(colon - rest));
            append(buf, len, &pos, ":***", 4);
        } else if (at > rest) {
            append(buf, len, &pos, "***", 3);
        }
    }
    if (at != NULL) {
        append(buf, len, &pos, "@", 1);
        rest = at + 1;
    }
    const char *end = rest + strcspn(rest, "?#");
    /* A seed list: each host[:port] on its own, so that a port check never
     * swallows the next seed. */
    const char *comma;
    while ((comma = memchr(rest, ',', (size_t)(end - rest))) != NULL) {
        append_hostpart(buf, len, &pos, rest, comma);
        append(buf, len, &pos, ",", 1);
        rest = comma + 1;
    }
    append_hostpart(buf, len, &pos, rest, end);
    if (*end != '\0') append(buf, len, &pos, "?***", 4);
}
