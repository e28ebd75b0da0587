/* forward_headers.c - see forward_headers.h. */
#include "forward_headers.h"

#include "ip_set.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the forwarded field list ---- */

/* Fields a client must not be able to hand the upstream: framing (libcurl
 * frames the request), and fields upstream frameworks read as the gateway's
 * word about the original request (scheme, host, port, path, method, client). */
static const char *const DROPPED[] = {
    "content-length",    "transfer-encoding", "expect",
    "x-forwarded-for",   "x-forwarded-host",  "x-forwarded-proto",
    "x-forwarded-port",  "x-forwarded-prefix", "x-forwarded-server",
    "x-forwarded-ssl",   "x-forwarded-scheme", "x-forwarded-uri",
    "forwarded",         "x-real-ip",         "x-client-ip",
    "true-client-ip",    "x-original-url",    "x-original-uri",
    "x-rewrite-url",     "x-http-method-override", "x-http-method",
    "x-method-override", "via",
    "cachegw-debug", /* carries the admin token: never forwarded */
};

bool forward_headers_is_dropped(const char *lower_name)
{
    /* Every dropped name starts with one of these letters: most fields stop here. */
    if (strchr("ctefxv", lower_name[0]) == NULL || lower_name[0] == '\0') return false;
    for (size_t i = 0; i < sizeof DROPPED / sizeof DROPPED[0]; i++)
        if (DROPPED[i][0] == lower_name[0] && strcmp(lower_name, DROPPED[i]) == 0) return true;
    return false;
}

/* Every line of a field, joined with sep (a list field spread over lines is one
 * list, RFC 9110 §5.3).  Returns a malloc'd string, "" when none, or NULL. */
static char *joined_value(const struct http_header *raw, size_t n, const char *name,
                          const char *sep)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(raw[i].name, name) == 0)
            len += strlen(raw[i].value ? raw[i].value : "") + strlen(sep);
    char *out = malloc(len + 1);
    if (out == NULL) return NULL;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(raw[i].name, name) != 0) continue;
        const char *v = raw[i].value ? raw[i].value : "";
        size_t vl = strlen(v);
        if (at > 0) {
            memcpy(out + at, sep, strlen(sep));
            at += strlen(sep);
        }
        memcpy(out + at, v, vl);
        at += vl;
    }
    out[at] = '\0';
    return out;
}

/* Adds name: "prior, own" (a list the gateway appends its own member to), or own alone
 * when prior is NULL or empty.  Returns 0 or -ENOMEM. */
static int add_appended(struct header_list *out, const char *name, const char *prior,
                        const char *own)
{
    if (prior == NULL || prior[0] == '\0') return header_list_add(out, name, own);
    size_t pl = strlen(prior), ol = strlen(own);
    char *v = malloc(pl + 2 + ol + 1);
    if (v == NULL) return -ENOMEM;
    memcpy(v, prior, pl);
    memcpy(v + pl, ", ", 2);
    memcpy(v + pl + 2, own, ol + 1);
    int rc = header_list_add(out, name, v);
    free(v);
    return rc;
}

int forward_headers_build(const struct http_header *raw, size_t n, const char *client_ip,
                          const struct forward_options *opt, struct header_list *out)
{
    int rc = -ENOMEM;
    char *connection = joined_value(raw, n, "connection", ", ");
    char *xff = NULL, *via = NULL;
    if (connection == NULL) goto done;
    for (size_t i = 0; i < n; i++) {
        const char *name = raw[i].name;
        /* Only the first line of each name does the work: it takes every line. */
        bool first = true;
        for (size_t j = 0; j < i && first; j++)
            if (strcasecmp(raw[j].name, name) == 0) first = false;
        if (!first) continue;
        /* A name too long for the stack buffer (the validator bounds only the
         * header block) is lowered into a heap copy: it is forwarded and keyed
         * like any other, and a Connection line may name it. */
        char small[128], *lower = small;
        size_t nl = strlen(name);
        if (nl >= sizeof small && (lower = malloc(nl + 1)) == NULL) goto done;
        for (size_t k = 0; k <= nl; k++) lower[k] = (char)tolower((unsigned char)name[k]);
        int arc = 0;
        if (!headers_is_hop_by_hop(lower, connection[0] ? connection : NULL) &&
            !forward_headers_is_dropped(lower)) {
            bool repeated = false;
            for (size_t j = i + 1; j < n && !repeated; j++)
                repeated = strcasecmp(raw[j].name, name) == 0;
            if (!repeated) { /* the common case: no joining, no copy */
                arc = header_list_add(out, lower, raw[i].value ? raw[i].value : "");
            } else {
                char *v = joined_value(raw, n, name, strcmp(lower, "cookie") == 0 ? "; " : ", ");
                arc = v == NULL ? -ENOMEM : header_list_add(out, lower, v);
                free(v);
            }
        }
        if (lower != small) free(lower);
        if (arc != 0) goto done;
    }
    /* The gateway's own forwarding fields. */
    const char *ip = client_ip && client_ip[0] ? client_ip : "unknown";
    if (opt && ip_set_contains(opt->trusted, client_ip)) {
        xff = joined_value(raw, n, "x-forwarded-for", ", ");
        if (xff == NULL) goto done;
    }
    if (add_appended(out, "x-forwarded-for", xff, ip) != 0 ||
        header_list_add(out, "x-forwarded-proto", "http") != 0)
        goto done;
    if (opt && opt->forwarded_host && opt->forwarded_host[0] &&
        header_list_add(out, "x-forwarded-host", opt->forwarded_host) != 0)
        goto done;
    via = joined_value(raw, n, "via", ", ");
    if (via == NULL || add_appended(out, "via", via, "1.1 cachegw") != 0) goto done;
    rc = 0;
done:
    free(connection);
    free(xff);
    free(via);
    return rc;
}
