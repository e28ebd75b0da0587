/*
 * forward_headers - the header fields a client request is forwarded with.
 *
 * The gateway's rule: the cache key, the Vary variant key and every policy
 * placeholder are computed from the request exactly as it is sent upstream.
 * So this module builds one list, once per request, and both the upstream
 * fetch and every key are derived from it:
 *
 *   - hop-by-hop fields (RFC 9110 §7.6.1) and every field named in any
 *     Connection line are dropped;
 *   - framing fields (Content-Length, Transfer-Encoding, Expect) are dropped:
 *     libcurl frames the upstream request itself;
 *   - forwarding and rewrite fields a client could use to steer the upstream
 *     (X-Forwarded-Host/-Proto/-Port/-Prefix/..., Forwarded, X-Real-IP,
 *     X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override, ...) are dropped, and so
 *     is Cachegw-Debug (it carries the admin token);
 *   - repeated lines of one field become one line, values joined by ", "
 *     (Cookie by "; "), so a key and the upstream read the same value;
 *   - the gateway's own fields are added: X-Forwarded-For (the client's own
 *     value is kept and appended to only when the client is a trusted proxy),
 *     X-Forwarded-Proto, X-Forwarded-Host (only when configured) and Via.
 *
 * Host stays in the list so policies can read it, but it is not forwarded
 * (libcurl sends the upstream's own Host); upstream_request skips it.
 *
 * Names in the output are lower-case.  Thread-safety: stateless apart from
 * the immutable trusted-proxy set; call from any thread.
 */
#ifndef CACHEGW_FORWARD_HEADERS_H
#define CACHEGW_FORWARD_HEADERS_H

#include <stdbool.h>
#include <stddef.h>

#include "headers.h"

struct ip_set;

struct forward_options {
    const struct ip_set *trusted; /* TRUSTED_PROXIES; may be NULL */
    const char *forwarded_host;            /* X-Forwarded-Host value, or NULL */
};

/* Builds out (which must be empty) from the client's fields raw[0..n) (names as
 * received).  Returns 0 or -ENOMEM. */
int forward_headers_build(const struct http_header *raw, size_t n, const char *client_ip,
                          const struct forward_options *opt, struct header_list *out);

/* True for a field the gateway never forwards from a client (hop-by-hop rules
 * aside): framing and steering fields listed above. */
bool forward_headers_is_dropped(const char *lower_name);

#endif
