/*
 * buf - a growable byte buffer with a hard cap.
 *
 * Ownership: the buf owns data; buf_free releases it.  Thread-safety: none
 * (callers lock or confine).
 */
#ifndef CACHEGW_BUF_H
#define CACHEGW_BUF_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

/* Appends n bytes; returns 0 or -ENOMEM.  Keeps one spare byte for a NUL. */
static inline int buf_append(struct buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) return -ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static inline void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
