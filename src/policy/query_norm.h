/*
 * query_norm - the canonical query string used in cache keys, in C.
 *
 * It implements exactly url.normalize_query of lua/gateway/url.lua (the pure-Lua version
 * stays there as the reference, url.normalize_query_lua; tests/unit/test_query_norm.c and
 * tests/lua/query_c_spec.lua compare the two over a generated corpus):
 *
 *   - the query is split on '&'; empty pairs are skipped; "a" and "a=" both have the
 *     value "" (the first '=' of a pair ends the name, later ones belong to the value);
 *   - more than QUERY_NORM_MAX_PARAMS non-empty pairs (ignored ones included) is an
 *     error, QUERY_NORM_TOO_MANY;
 *   - pairs whose name matches the ignore list are dropped.  The list holds exact names
 *     and prefixes ("utm_*" in the policy's spelling); a name is matched as DECODED,
 *     '+' being a space ("utm%5Fsource" is utm_source), except on the simple path below,
 *     where it is matched as sent;
 *   - the simple path: a query without any '%' keeps every name and value as sent;
 *   - otherwise each name and value is canonicalised: split on literal '+' (kept as '+'),
 *     each piece percent-decoded ("%zz", malformed, stays as data) and re-encoded, every
 *     byte except A-Z a-z 0-9 - . _ ~ becoming %XX with upper-case hex digits.  So "+",
 *     "%20" and "%2B" stay three distinct spellings;
 *   - params are sorted by name only, stably (repeated names keep the order they were
 *     sent in: first-wins upstreams answer "a=2&a=1" and "a=1&a=2" differently), names
 *     compared as bytes (unsigned; a prefix sorts first), as Lua compares strings in the
 *     C locale;
 *   - joined as "n=v&n=v"; no params left gives "".
 *
 * Cost: linear in the query's length plus O(n log n) name comparisons for n <= 256
 * params; the ignore list costs O(log exact + prefixes) decoded-name comparisons per
 * param.  Nothing is allocated: the caller provides the output (and the scratch for
 * canonical names), sized exactly by query_norm_scan or bounded by query_norm_bound.
 *
 * Ownership: a query_ignore points at entries and bytes its creator owns and keeps alive
 * while it is used; every call borrows its arguments.  Thread-safety: pure functions; a
 * query_ignore is read-only once built and may be shared between threads; a query_norm
 * state belongs to one call sequence.
 */
#ifndef CACHEGW_QUERY_NORM_H
#define CACHEGW_QUERY_NORM_H

#include <stddef.h>
#include <stdint.h>

#define QUERY_NORM_MAX_PARAMS 256

enum query_norm_status {
    QUERY_NORM_OK = 0,
    QUERY_NORM_TOO_MANY = -1, /* more than QUERY_NORM_MAX_PARAMS non-empty pairs */
    QUERY_NORM_NOSPACE = -2,  /* the caller's buffer is too small */
};

/* The message Lua raises for QUERY_NORM_TOO_MANY (the same words as url.lua's). */
#define QUERY_NORM_TOO_MANY_MSG "query string has more than 256 parameters"

struct query_ignore_entry {
    const char *s;
    size_t len;
};

/* A compiled ignore list.  exact must be sorted with query_ignore_sort (bytes, then
 * length); prefix entries are the patterns without their '*'.  An empty prefix (the
 * pattern "*") ignores every param. */
struct query_ignore {
    struct query_ignore_entry *exact;
    size_t n_exact;
    struct query_ignore_entry *prefix;
    size_t n_prefix;
};

/* Sorts exact entries into the order query_ignore_match searches (duplicates are fine). */
void query_ignore_sort(struct query_ignore_entry *e, size_t n);

/* True when name[0..len) (already decoded) is ignored by ign (NULL ignores nothing). */
int query_ignore_match(const struct query_ignore *ign, const char *name, size_t len);

/* One kept param: raw spans into the query, and the canonical name's place in scratch. */
struct query_norm_param {
    size_t name_off, name_len;   /* raw */
    size_t value_off, value_len; /* raw */
    size_t cname_off, cname_len; /* canonical name in scratch (simple path: raw name) */
};

/* State of one normalisation: the query borrowed, the kept params, the exact sizes. */
struct query_norm {
    const char *qs;
    size_t qs_len;
    int simple;          /* no '%' anywhere: components as sent */
    size_t n;            /* kept params */
    size_t out_len;      /* exact length of the result */
    size_t scratch_len;  /* exact scratch bytes query_norm_write needs (0 when simple) */
    struct query_norm_param p[QUERY_NORM_MAX_PARAMS];
    uint16_t order[QUERY_NORM_MAX_PARAMS];
};

/* Splits qs[0..len), drops ignored params and computes out_len and scratch_len.  Returns
 * QUERY_NORM_OK or QUERY_NORM_TOO_MANY.  st borrows qs until query_norm_write. */
int query_norm_scan(struct query_norm *st, const char *qs, size_t len,
                    const struct query_ignore *ign);

/* Writes the result of a successful scan: exactly st->out_len bytes into out (not
 * NUL-terminated), using st->scratch_len bytes of scratch (may be NULL when 0).  out
 * and scratch must not overlap.  Cannot fail. */
void query_norm_write(struct query_norm *st, char *scratch, char *out);

/* An upper bound of out_len + scratch_len for any query of len bytes: 7 * len. */
size_t query_norm_bound(size_t len);

/* Both steps with one caller buffer: buf[0..*out_len) receives the result, the rest of
 * buf is scratch.  Returns QUERY_NORM_OK, QUERY_NORM_TOO_MANY, or QUERY_NORM_NOSPACE
 * when cap < out_len + scratch_len (query_norm_bound(len) always suffices).  st is the
 * caller's (it is about 12 KiB: keep it off small stacks). */
int query_norm(struct query_norm *st, const char *qs, size_t len,
               const struct query_ignore *ign, char *buf, size_t cap, size_t *out_len);

#endif
