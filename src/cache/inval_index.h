/*
 * inval_index - prefix and tag invalidation in O(1) time, whatever the number
 * of keys: invalidation records instead of a scan.
 *
 * Every invalidation of a prefix or tag gets a sequence number (from Redis's
 * INCR when the Redis tier is up, so it is global across instances; locally
 * otherwise) and is recorded here: prefix -> seq, tag -> seq.  Every stored
 * entry carries meta.gen, the highest sequence its filler had seen when its
 * fetch started.  An entry is valid only if its gen is at least the sequence
 * of every recorded prefix of its key and of every tag it carries, so one
 * record makes any number of entries unreachable at once; their space is
 * reclaimed later (LRU, expiry, a background SCAN/UNLINK in Redis).
 *
 * Tags of an entry travel in its internal header CACHEGW_TAGS_HEADER
 * (space-separated), never sent to clients.
 *
 * Thread-safety: internally locked (a rwlock; readers on every hit), callable
 * from any thread.
 */
#ifndef CACHEGW_INVAL_INDEX_H
#define CACHEGW_INVAL_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache_key.h" /* CACHEGW_TAGS_HEADER */
#include "cache_object.h"

/* The index is bounded: past this many records it is folded into a floor
 * (every entry filled before the fold is invalid), which costs one flush of
 * old entries and keeps memory bounded (docs/design.md, invariant 5). */
#define INVAL_INDEX_MAX_RECORDS 100000

struct inval_index;

int inval_index_create(struct inval_index **out);
void inval_index_destroy(struct inval_index *idx);

/* The highest sequence seen: a fill records it in meta.gen when it starts. */
uint64_t inval_index_current(const struct inval_index *idx);
/* A fresh local sequence (current + 1), noted as seen. */
uint64_t inval_index_next_local(struct inval_index *idx);

/* Records that every entry under prefix (or carrying tag) with gen < seq is
 * invalid.  Keeps the larger seq when one is already recorded.  Returns 0 or
 * -ENOMEM. */
int inval_index_note_prefix(struct inval_index *idx, const char *prefix, size_t len, uint64_t seq);
int inval_index_note_tag(struct inval_index *idx, const char *tag, size_t len, uint64_t seq);

/* True when obj has not been invalidated by any recorded prefix or tag. */
bool inval_index_valid(const struct inval_index *idx, const struct cache_object *obj);

/* Entries with gen < floor are invalid.  Raised by folding, or set from
 * another instance's fold (read back from Redis).  Returns the floor. */
uint64_t inval_index_floor(const struct inval_index *idx);
void inval_index_raise_floor(struct inval_index *idx, uint64_t floor);
/* How many folds happened (a caller that sees this change persists the floor). */
uint64_t inval_index_folds(const struct inval_index *idx);

size_t inval_index_records(const struct inval_index *idx);

/* ---- sequences and epochs read back from Redis (untrusted) ----
 *
 * Global sequences start, in each epoch of Redis's bookkeeping, at the wall
 * clock in microseconds-ish (ms x 1000) and grow by one per invalidation, so a
 * Redis that lost its state (FLUSHALL, a restart without persistence) hands
 * out sequences above every one handed out before it.  Anything larger than
 * that clock (plus a day of skew) cannot be genuine. */
#define INVAL_SEQ_SKEW_MS (24LL * 3600 * 1000)

/* The epoch-based start of a fresh global sequence: wall ms x 1000. */
uint64_t inval_index_seq_base(void);
/* Parses a sequence: 1 to 19 ASCII digits, no sign, no space, at most
 * (wall ms + INVAL_SEQ_SKEW_MS) x 1000.  Returns 0, or -EINVAL (then *out is
 * untouched): "-1", "", "1x", 2^64-1 and other hostile values are refused. */
int inval_index_parse_seq(const char *s, size_t len, uint64_t *out);
/* An epoch id: 1 to 32 characters of [0-9a-zA-Z].  True when valid. */
bool inval_index_epoch_valid(const char *s, size_t len);

/* Notes the epoch of Redis's bookkeeping seen with a sequence.  Returns 0 when
 * it is the known one (or the first seen), 1 when it changed (Redis lost its
 * state: the caller logs and drops what it must), -EINVAL when malformed. */
int inval_index_note_epoch(struct inval_index *idx, const char *epoch, size_t len);

#endif
