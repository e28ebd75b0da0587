/*
 * cache_key - the one owner of the gateway's internal cache-key syntax.
 *
 * Formats (every other module goes through this API or these names; none
 * spells them out):
 *
 *   base key     what a route policy returns ("posts:42", "user:<hash>:feed")
 *                or, without a policy, the default key
 *                CACHE_KEY_DEFAULT_PREFIX <request-target> = "GET:/users?page=2"
 *                (cache_key_default).  Any non-empty byte string without NUL
 *                and without CACHE_KEY_SEP.
 *
 *   cache module values   CACHE_KEY_KV_NS <key> = "kv:<key>" (lua_cache), so a
 *                Lua value can never be an HTTP entry or the reverse.
 *
 *   variant key  <base> SEP "vary" SEP <name>=<value> SEP <name>=<value> ...
 *                one <name>=<value> per field listed in the response's Vary,
 *                in Vary order; <name> lower-cased; <value> the request's
 *                combined value of that field (all its lines, RFC 9110 §5.3),
 *                "" when absent.  Names and values are percent-escaped: '%',
 *                '=', every control byte (0x00-0x1F, 0x7F) becomes %XX, so
 *                neither can contain SEP or end its element early.
 *
 *   variant prefix  <base> SEP "vary" SEP: every variant of base starts with
 *                it (admin purges drop a key's variants with it).
 *
 *   internal metadata of a stored entry (stored with it, never sent to a
 *   client: response_writer.c drops every CACHE_KEY_INTERNAL_FIELD field):
 *     CACHE_RULES_VARY_HEADER  a Vary marker at <base>: the Vary field list
 *     CACHEGW_TAGS_HEADER      the entry's tags (surrogate keys), space-separated
 *
 *   Redis names (REDIS_PREFIX first, "cachegw:" by default):
 *     entry         <prefix> CACHE_KEY_REDIS_ENTRY_NS <key>    "cachegw:c:<key>"
 *     bookkeeping   <prefix> "{inv}:seq" | "{inv}:p" | "{inv}:t" | "{inv}:floor"
 *                   (one hash tag: one cluster slot for the invalidation script)
 *     channel       <prefix> CACHE_KEY_REDIS_CHANNEL            "cachegw:invalidate"
 *                   messages "<instance>:<kind><payload>", kinds enum inval_kind
 *                   (inval_sync.h)
 *   An entry name always starts with "c:", so no cache key or purge pattern can
 *   reach the bookkeeping.
 *
 * SEP is the control byte 0x1F (unit separator).  Request-derived data can
 * never carry it: the request validator refuses control bytes in the target
 * and in field values with 400, and the Lua library encodes control characters
 * in the keys it builds.  A base key that contains it anyway (a policy literal,
 * a bug) is refused as not cacheable by cache_key_is_valid, so no
 * client-chosen key can name another URL's variant, and one variant's value
 * cannot forge another's.
 *
 * Pure functions.  Thread-safety: stateless, call from any thread.
 */
#ifndef CACHEGW_CACHE_KEY_H
#define CACHEGW_CACHE_KEY_H

#include <stdbool.h>
#include <stddef.h>

#include "headers.h"

#define CACHE_KEY_SEP '\x1f'
#define CACHE_KEY_SEP_STR "\x1f"
/* Room for a variant key: buffers of this size hold any key the gateway stores. */
#define CACHE_KEY_VARIANT_MAX 2048

#define CACHE_KEY_DEFAULT_PREFIX "GET:"
#define CACHE_KEY_KV_NS "kv:"
#define CACHE_KEY_REDIS_ENTRY_NS "c:"
#define CACHE_KEY_REDIS_CHANNEL "invalidate"
/* Internal metadata fields of a stored entry start with this. */
#define CACHE_KEY_INTERNAL_FIELD "x-cachegw-"
/* A stored entry's tags (surrogate keys), space-separated. */
#define CACHEGW_TAGS_HEADER "x-cachegw-tags"

/* The default key of a request target (no policy): CACHE_KEY_DEFAULT_PREFIX
 * target, malloc'd, or NULL when out of memory. */
char *cache_key_default(const char *target);

/* True when key[0..len) may be used as a base key: non-empty, no NUL, no
 * CACHE_KEY_SEP. */
bool cache_key_is_valid(const char *key, size_t len);

/* True when key[0..len) has the variant-key form: a valid base, then
 * SEP "vary" SEP. */
bool cache_key_is_variant(const char *key, size_t len);

/* Length of the base part of key (the bytes before the first SEP; all of it
 * when there is none). */
size_t cache_key_base_len(const char *key, size_t len);

/* Writes the variant key of base for a response whose (combined) Vary value
 * is vary and the request's headers req, NUL-terminated, into out.  Returns
 * its length, or -1 when base is not a valid key or the result (or a
 * request field's combined value) does not fit in cap. */
int cache_key_variant(const char *base, const char *vary, const struct header_list *req,
                      char *out, size_t cap);

/* Writes the variant prefix of base into out.  Returns its length, or -1 when
 * base is not valid or it does not fit. */
int cache_key_variant_prefix(const char *base, char *out, size_t cap);

#endif
