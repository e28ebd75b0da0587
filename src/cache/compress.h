/*
 * compress - compressed representations of stored responses, made once at store time.
 *
 * At store time compress_encode takes a response's identity body and, when the
 * response may be transformed (200, no Content-Encoding, no Content-Range, no
 * Cache-Control no-transform, a configured media type, at least min_bytes), appends a
 * gzip (zlib) and a br (libbrotli) copy after it, each only when smaller than the
 * identity body, and all of it within max_total (MAX_VALUE_SIZE): what does not fit
 * is left out.  The stored object's body is then
 *     identity bytes | gzip bytes | br bytes
 * and COMPRESS_HEADER (an internal x-cachegw- field: never sent to clients, never
 * taken from an upstream) records the layout: "v1 <identity_len>[ gzip <off> <len>][ br
 * <off> <len>]".  One allocation still holds everything, so a hit hands any of the
 * three to the client connection without a copy, and the Redis tier stores the same bytes.
 *
 * At delivery compress_select picks the representation a request's Accept-Encoding
 * allows (RFC 9110 §12.5.3: q-values, "*", identity), preferring br, then gzip, then
 * identity; a client that did not ask for a coding never gets it.  Every answer from an
 * object that has coded copies carries Vary: Accept-Encoding, and a coded answer gets
 * Content-Encoding and a suffixed entity tag ("abc" -> "abc-gzip", weakness kept:
 * compress_etag), since the coded bytes are another representation.
 *
 * A layout read back from storage is validated against the body's length; one that
 * does not fit is reported (-1) and the object must not be served.
 *
 * Pure functions of their arguments (compress_encode allocates its result).
 * Thread-safety: stateless; call from any thread.
 */
#ifndef CACHEGW_COMPRESS_H
#define CACHEGW_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>

#include "cache_object.h"
#include "headers.h"

#define COMPRESS_HEADER "x-cachegw-enc"

struct compress_opts {
    bool gzip;          /* COMPRESS_GZIP */
    bool br;            /* COMPRESS_BR */
    size_t min_bytes;   /* COMPRESS_MIN_SIZE: smaller bodies are stored as they are */
    const char *types;  /* COMPRESS_TYPES: comma-separated media types ("text/" + star: all) */
    int gzip_level;     /* 1-9 */
    int br_quality;     /* 0-11 */
};

/* Which codings of a stored object exist, and where. */
struct compress_layout {
    size_t identity_len;
    size_t gzip_off, gzip_len; /* gzip_len 0 = none */
    size_t br_off, br_len;     /* br_len 0 = none */
};

/* Store time.  Returns 1 and a malloc'd composite body in *out / *out_len with its
 * layout written to hdr (for COMPRESS_HEADER); 0 when nothing is added (the response
 * may not be transformed, is too small, does not compress, or no coding fits in
 * max_total): store the identity body as it is; -1 when out of memory. */
int compress_encode(const struct compress_opts *o, int status, const struct header_list *resp,
                    const char *body, size_t len, size_t max_total, char **out, size_t *out_len,
                    char *hdr, size_t hdr_cap);

/* True when a response with these fields and status may get coded copies (the checks of
 * compress_encode apart from the size ones). */
bool compress_eligible(const struct compress_opts *o, int status, const struct header_list *resp);

/* Reads obj's layout.  Returns 1 when it has coded copies, 0 when it has none (the
 * whole body is identity), -1 when COMPRESS_HEADER is present but invalid. */
int compress_layout_of(const struct cache_object *obj, struct compress_layout *out);

/* The representation chosen for a request. */
struct compress_choice {
    const char *body;
    size_t len;
    const char *coding; /* "gzip", "br", or NULL for identity */
    bool vary;          /* the object has coded copies: answer with Vary: Accept-Encoding */
};

/* Picks from obj for a request's combined Accept-Encoding (NULL = absent: identity).
 * Returns 0, or -1 when obj's layout is invalid (do not serve it). */
int compress_select(const struct cache_object *obj, const char *accept_encoding,
                    struct compress_choice *out);

/* The q-value (0-1000) Accept-Encoding gives coding: its own member, else "*", else
 * 0 (identity is acceptable unless refused: 1000 for "identity" then). */
int compress_accept_q(const char *accept_encoding, const char *coding);

/* The entity tag of a coded representation: the opaque part suffixed with "-<coding>",
 * a W/ prefix kept.  Returns 0, or -1 when etag is not an entity tag or out is too
 * small. */
int compress_etag(const char *etag, const char *coding, char *out, size_t cap);

#endif
