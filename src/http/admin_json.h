/*
 * admin_json - the JSON the purge/admin API reads and writes, on jansson.
 *
 * The admin API (admin_server) takes bodies like {"key": "users:5"} and answers
 * small objects of strings.  Both directions go through jansson (Debian's
 * libjansson 2.14) instead of a hand-written scanner: it is a strict RFC 8259
 * parser (no trailing commas, comments or bare words; valid UTF-8 only; paired
 * surrogates only), it rejects duplicate member names anywhere in the document
 * (JSON_REJECT_DUPLICATES: two parsers that pick different duplicates are a
 * classic way to make a check and an action disagree), it keeps string lengths
 * NUL-safe (JSON_ALLOW_NUL, so "\u0000" reaches the caller's control-character
 * check instead of truncating the value), and it seeds its object hash tables
 * per process.
 *
 * Bounds: inputs longer than ADMIN_JSON_MAX_INPUT bytes and documents nested
 * deeper than ADMIN_JSON_MAX_DEPTH are refused (jansson's own recursion bound
 * is 2048 levels; ours is the tighter one the old scanner had).
 *
 * Answers with numbers, arrays and nested objects (GET /entries, purge counts)
 * are built by the caller as a jansson object and written with
 * admin_json_dump; admin_json_set_bytes puts a byte string (a cache key, which
 * may not be UTF-8) into one.
 *
 * Ownership: the getters copy into caller buffers; the writers return malloc'd
 * text the caller frees.
 * Thread-safety: all functions are reentrant (jansson allocates per call; its
 * hash seed is set once, thread-safely, by the library).
 */
#ifndef CACHEGW_ADMIN_JSON_H
#define CACHEGW_ADMIN_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define ADMIN_JSON_MAX_INPUT ((size_t)64 * 1024) /* the caller's body bound is lower */
#define ADMIN_JSON_MAX_DEPTH 32                  /* nesting of objects and arrays */

enum admin_json_result {
    ADMIN_JSON_OK,         /* the member is a string: copied to out */
    ADMIN_JSON_MISSING,    /* valid object without the member */
    ADMIN_JSON_NOT_STRING, /* the member is there but not a string */
    ADMIN_JSON_DUPLICATE,  /* some member name appears twice in one object */
    ADMIN_JSON_INVALID,    /* not one valid JSON object (or past a bound): see err */
};

/* Why a body was refused: a short reason and the byte offset where the parser
 * stopped (0 when the whole document was read). */
struct admin_json_error {
    char text[160];
    size_t position;
};

/* Parses body[0..body_len) (need not be NUL-terminated) as one JSON object and
 * extracts its string member `field`.  Other members are allowed and ignored.
 * On ADMIN_JSON_OK, out (cap >= 1 bytes) receives the first min(*len, cap - 1)
 * bytes of the value and a NUL, and *len is the value's full length, so
 * *len >= cap means it did not fit; the value may hold NUL bytes.  err is
 * filled on ADMIN_JSON_INVALID and ADMIN_JSON_DUPLICATE. */
enum admin_json_result admin_json_get_string(const char *body, size_t body_len, const char *field,
                                             char *out, size_t cap, size_t *len,
                                             struct admin_json_error *err);

/* True when s[0..len) is valid UTF-8 (what a JSON string can carry). */
bool admin_json_is_utf8(const char *s, size_t len);

/* Serialises the object {"name1": "value1", ...} from the NULL-terminated list
 * of name/value string pairs that follows len, as one line ending in "\n".
 * Returns malloc'd text with its length in *len, or NULL when out of memory or
 * a name or value is not valid UTF-8. */
char *admin_json_strings(size_t *len, ...);

/* Serialises {"error": msg, "status": status} as one line ending in "\n".  A
 * msg that is not valid UTF-8 is replaced by a generic one, so only running
 * out of memory returns NULL. */
char *admin_json_error(const char *msg, unsigned status, size_t *len);

/* Serialises obj (kept by the caller) as one line ending in "\n".  Returns
 * malloc'd text with its length in *len, or NULL when out of memory. */
char *admin_json_dump(json_t *obj, size_t *len);

/* Sets obj[name] to the string s[0..len) when it is UTF-8 text, else sets
 * obj[name + "_hex"] to its bytes in lower-case hex (so a key that JSON cannot
 * carry is still shown exactly).  Returns 0 or -1 (out of memory). */
int admin_json_set_bytes(json_t *obj, const char *name, const char *s, size_t len);

#endif
