/*
 * h1_parse - reading an HTTP/1.1 request head and a chunked body (RFC 9112),
 * the gateway's own bytes-to-fields step (h1_server.c drives it).
 *
 * The parser is deliberately narrow.  It only splits; the rules about what a
 * request may contain live in one place, http/request_validator.c, which sees
 * every field exactly as it arrived.  What it refuses itself is what it cannot
 * split unambiguously:
 *   - a NUL byte anywhere in the head (400): no later string check could see
 *     past it, and another hop may read it differently;
 *   - a request line that is not "method SP target SP version" (400);
 *   - a version that is not "HTTP/" DIGIT "." DIGIT (400), or whose major
 *     version is not 1 (505);
 *   - a field line without a colon (400), or an obs-fold continuation line
 *     (400, RFC 9112 §5.2: a proxy must refuse or replace it; replacing would
 *     change what the key is built from);
 *   - more than H1_MAX_FIELDS field lines (431);
 *   - a head longer than the caller's bound: 414 while the request line is
 *     still incomplete, 431 after.
 * Lines end in CRLF or a bare LF (RFC 9112 §2.2 allows the latter); a bare
 * CR stays in the line, where the validator refuses it.  Empty lines before
 * the request line are skipped (RFC 9112 §2.2).  Field values lose leading
 * and trailing SP/HTAB; names are kept byte for byte.
 *
 * Parsing is in place: the head's bytes are cut into NUL-terminated strings,
 * so they live as long as the caller's buffer is left alone.
 *
 * Pure functions; thread-safety: stateless (a decoder state belongs to one
 * connection).
 */
#ifndef CACHEGW_H1_PARSE_H
#define CACHEGW_H1_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "headers.h" /* struct http_header */

/* Field lines kept per request: one past the validator's 128 (431 there). */
#define H1_MAX_FIELDS 129

struct h1_head {
    char *method, *target, *version; /* NUL-terminated, in the caller's buffer */
    struct http_header fields[H1_MAX_FIELDS];
    size_t n_fields;
    int minor;          /* HTTP/1.<minor> */
    int status;         /* 0, or the refusal's status (400, 414, 431, 505) */
    const char *reason; /* the refusal, a static phrase */
};

/* Where the head in buf[0..len) ends: the offset just past its empty line, or 0
 * while it is incomplete.  *scan is where the search resumes (0 at first; the
 * bytes before it were searched already).  Leading empty lines are not the end. */
size_t h1_head_end(const char *buf, size_t len, size_t *scan);

/* Parses the complete head buf[0..len) (len from h1_head_end) in place.
 * Returns 0, or the refusal's status (also in out->status, with out->reason);
 * on a refusal, method/target/version are filled as far as they were read
 * (NULL otherwise). */
int h1_parse_head(char *buf, size_t len, struct h1_head *out);

/* The refusal for a head that outgrew its bound: 414 while buf[0..len) holds
 * no complete request line yet, else 431. */
int h1_oversize_status(const char *buf, size_t len, const char **reason);

/* A chunked body being decoded (RFC 9112 §7.1).  Chunk extensions are
 * skipped, trailer fields are read and dropped (bounded).  After the size's
 * hex digits only BWS and then ';' or the line end may follow ("0x5" is
 * refused); the size line, leading zeros included, is bounded. */
struct h1_chunked {
    int state;
    uint64_t left;      /* bytes of the current chunk still to come */
    size_t line;        /* bytes of the current size or trailer line so far */
    size_t trailer;     /* trailer bytes so far */
    bool digits;        /* the size line had a digit */
    bool done;          /* the last chunk and the trailers are in */
};

/* Decodes in[0..len) in place: the body's bytes are moved to in[0..*out_len),
 * *consumed says how much input was used (less than len only once done: the
 * rest is the next request).  Returns 0, or -1 on malformed framing (reason
 * set to a static phrase). */
int h1_chunked_decode(struct h1_chunked *st, char *in, size_t len, size_t *consumed,
                      size_t *out_len, const char **reason);

/* A Content-Length value: 1*DIGIT, no sign, no overflow.  Returns 0 or -1. */
int h1_content_length(const char *value, uint64_t *out);

#endif
