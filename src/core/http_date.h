/*
 * http_date - strict parsing of HTTP-date (RFC 9110 §5.6.7).
 *
 * Accepts exactly the three formats a recipient must accept:
 *   IMF-fixdate  Sun, 06 Nov 1994 08:49:37 GMT
 *   rfc850-date  Sunday, 06-Nov-94 08:49:37 GMT   (two-digit year: 1970-2069)
 *   asctime      Sun Nov  6 08:49:37 1994
 * and nothing else: a wrong zone ("UTC"), a missing comma, doubled spaces, a one-digit hour,
 * a two-digit year in IMF-fixdate, dashes in IMF-fixdate, out-of-range fields or trailing
 * bytes make the value invalid.  An invalid Expires means "already expired" (RFC 9111
 * §5.3); libcurl's lenient curl_getdate accepted all of those.
 *
 * Pure functions; thread-safety: stateless.
 */
#ifndef CACHEGW_HTTP_DATE_H
#define CACHEGW_HTTP_DATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses s (surrounding whitespace allowed).  Returns true and the seconds since the epoch
 * in *out, or false for anything that is not an HTTP-date. */
bool http_date_parse(const char *s, int64_t *out);

/* Writes seconds since the epoch as an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", 29
 * bytes and a NUL), independent of the locale.  Returns 0, or -1 when cap < 30 or the
 * time is outside years 1970-9999. */
int http_date_format(int64_t s, char *buf, size_t cap);

#endif
