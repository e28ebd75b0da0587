/*
 * h1_response - one answer to queue on client connections (h1_server.h): its
 * header fields, already serialised, and its body.
 *
 * A body is one of:
 *   - bytes the response borrows (persistent for its life), copies, or owns
 *     with a free callback (e.g. a reference on a stored object);
 *   - a reader callback that produces it in blocks, of a known size or not
 *     (chunked on the wire, or close-delimited for HTTP/1.0), and may ask to
 *     be called again later (after suspending the connection).
 * The framing fields (Content-Length, Transfer-Encoding, Connection) and Date
 * (unless the response carries its own) are added per connection when it is
 * sent; h1_response_add_header refuses them, and refuses names or values
 * that could end a line (no header injection).
 *
 * Ownership: reference-counted.  Creation returns one reference;
 * h1_server_queue takes its own; h1_response_unref drops one.  Fields may only
 * be added before the response is first queued: after that it is immutable
 * and may be queued on any number of connections at once.
 * Thread-safety: the count is atomic; building is confined to one thread.
 */
#ifndef CACHEGW_H1_RESPONSE_H
#define CACHEGW_H1_RESPONSE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* What a reader returns besides a byte count (> 0); 0 means "not now": the
 * reader suspended the connection, and its resume calls it again. */
#define H1_READER_END (-1)
#define H1_READER_ERROR (-2)
#define H1_SIZE_UNKNOWN UINT64_MAX

typedef ssize_t (*h1_reader_fn)(void *cls, uint64_t pos, char *buf, size_t max);
typedef void (*h1_free_fn)(void *cls);

enum h1_body_mode { H1_BODY_PERSISTENT, H1_BODY_COPY };

struct h1_response {
    atomic_int refs;
    char *fields;      /* "Name: value\r\n" lines */
    size_t fields_len, fields_cap;
    bool has_date;
    bool oom;          /* a field could not be added */
    /* A body in memory ... */
    const char *body;
    uint64_t size;     /* its length, or the reader's total (H1_SIZE_UNKNOWN) */
    h1_free_fn free_cb;
    void *free_cls;
    /* ... or a reader. */
    h1_reader_fn reader;
    void *reader_cls;
    size_t block;
};

struct h1_response *h1_response_from_buffer(size_t len, const void *data,
                                            enum h1_body_mode mode);
/* Owns data through free_cb(cls) (called once, when the last reference goes). */
struct h1_response *h1_response_from_buffer_free(size_t len, const void *data,
                                                 h1_free_fn free_cb, void *cls);
/* size may be H1_SIZE_UNKNOWN; free_cb(cls) runs when the last reference goes. */
struct h1_response *h1_response_from_reader(uint64_t size, size_t block, h1_reader_fn reader,
                                            void *cls, h1_free_fn free_cb);
/* Returns 0, or -1 (refused: a framing field, or bytes that cannot be in a field). */
int h1_response_add_header(struct h1_response *r, const char *name, const char *value);
struct h1_response *h1_response_ref(struct h1_response *r);
void h1_response_unref(struct h1_response *r);

/* The reason phrase of a status code ("" when unknown). */
const char *h1_reason_phrase(int status);

#endif
