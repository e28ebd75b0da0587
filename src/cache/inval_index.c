/* inval_index.c - see inval_index.h.
 *
 * Two open hash tables (prefixes, tags) of (string -> seq) under one rwlock.
 * A bitmap of the prefix lengths present lets a lookup try only those
 * lengths of the key, so a check costs a handful of hash probes. */
#include "inval_index.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hash.h"

enum { MAX_PREFIX_LEN = 512 };

struct record {
    struct record *next;
    uint64_t hash;
    uint64_t seq;
    size_t len;
    char s[];
};

struct table {
    struct record **buckets;
    size_t n_buckets;
    size_t n;
};

struct inval_index {
    pthread_rwlock_t lock;
    struct table prefixes;
    struct table tags;
    uint64_t prefix_lengths[(MAX_PREFIX_LEN + 64) / 64]; /* bit i: a prefix of length i exists */
    atomic_uint_fast64_t current;
    atomic_size_t records;
    atomic_uint_fast64_t floor;
    atomic_uint_fast64_t folds;
    pthread_mutex_t epoch_lock;
    char epoch[33]; /* "" until one is seen */
};

static struct record *table_find(const struct table *t, const char *s, size_t len, uint64_t h)
{
    if (t->n_buckets == 0) return NULL;
    for (struct record *r = t->buckets[h & (t->n_buckets - 1)]; r; r = r->next)
        if (r->hash == h && r->len == len && memcmp(r->s, s, len) == 0) return r;
    return NULL;
}

static int table_grow(struct table *t)
{
    size_t n = t->n_buckets ? t->n_buckets * 2 : 64;
    struct record **b = calloc(n, sizeof *b);
    if (b == NULL) return -ENOMEM;
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct record *r = t->buckets[i];
        while (r) {
            struct record *next = r->next;
            r->next = b[r->hash & (n - 1)];
            b[r->hash & (n - 1)] = r;
            r = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
    return 0;
}

static void table_free(struct table *t);

/* Write lock held: drops every record and raises the floor to the current
 * sequence, so no entry any dropped record covered can become valid again. */
static void fold(struct inval_index *idx)
{
    table_free(&idx->prefixes);
    table_free(&idx->tags);
    memset(&idx->prefixes, 0, sizeof idx->prefixes);
    memset(&idx->tags, 0, sizeof idx->tags);
    memset(idx->prefix_lengths, 0, sizeof idx->prefix_lengths);
    atomic_store(&idx->records, 0);
    uint64_t cur = atomic_load(&idx->current);
    if (atomic_load(&idx->floor) < cur) atomic_store(&idx->floor, cur);
    atomic_fetch_add(&idx->folds, 1);
}

static void table_free(struct table *t)
{
    for (size_t i = 0; i < t->n_buckets; i++) {
        struct record *r = t->buckets[i];
        while (r) {
            struct record *next = r->next;
            free(r);
            r = next;
        }
    }
    free(t->buckets);
}

int inval_index_create(struct inval_index **out)
{
    struct inval_index *idx = calloc(1, sizeof *idx);
    if (idx == NULL) return -ENOMEM;
    pthread_rwlock_init(&idx->lock, NULL);
    pthread_mutex_init(&idx->epoch_lock, NULL);
    *out = idx;
    return 0;
}

void inval_index_destroy(struct inval_index *idx)
{
    if (idx == NULL) return;
    table_free(&idx->prefixes);
    table_free(&idx->tags);
    pthread_rwlock_destroy(&idx->lock);
    pthread_mutex_destroy(&idx->epoch_lock);
    free(idx);
}

uint64_t inval_index_current(const struct inval_index *idx)
{
    return atomic_load(&((struct inval_index *)idx)->current);
}

static void see(struct inval_index *idx, uint64_t seq)
{
    uint_fast64_t cur = atomic_load(&idx->current);
    while (cur < seq && !atomic_compare_exchange_weak(&idx->current, &cur, seq)) {
    }
}

uint64_t inval_index_next_local(struct inval_index *idx)
{
    return atomic_fetch_add(&idx->current, 1) + 1;
}

static int note(struct inval_index *idx, struct table *t, const char *s, size_t len, uint64_t seq,
                bool is_prefix)
{
    if (is_prefix && (len == 0 || len > MAX_PREFIX_LEN)) return -EINVAL;
    uint64_t h = hash_bytes(s, len);
    struct record *fresh = malloc(sizeof *fresh + len + 1);
    if (fresh == NULL) return -ENOMEM;
    pthread_rwlock_wrlock(&idx->lock);
    struct record *r = table_find(t, s, len, h);
    if (r) {
        if (r->seq < seq) r->seq = seq;
        pthread_rwlock_unlock(&idx->lock);
        free(fresh);
        see(idx, seq);
        return 0;
    }
    if (atomic_load(&idx->records) >= INVAL_INDEX_MAX_RECORDS) fold(idx);
    if (t->n >= t->n_buckets && table_grow(t) != 0) {
        pthread_rwlock_unlock(&idx->lock);
        free(fresh);
        return -ENOMEM;
    }
    fresh->hash = h;
    fresh->seq = seq;
    fresh->len = len;
    memcpy(fresh->s, s, len);
    fresh->s[len] = '\0';
    fresh->next = t->buckets[h & (t->n_buckets - 1)];
    t->buckets[h & (t->n_buckets - 1)] = fresh;
    t->n++;
    if (is_prefix) idx->prefix_lengths[len / 64] |= 1ULL << (len % 64);
    pthread_rwlock_unlock(&idx->lock);
    atomic_fetch_add(&idx->records, 1);
    see(idx, seq);
    return 0;
}

int inval_index_note_prefix(struct inval_index *idx, const char *prefix, size_t len, uint64_t seq)
{
    return note(idx, &idx->prefixes, prefix, len, seq, true);
}

int inval_index_note_tag(struct inval_index *idx, const char *tag, size_t len, uint64_t seq)
{
    return note(idx, &idx->tags, tag, len, seq, false);
}

bool inval_index_valid(const struct inval_index *cidx, const struct cache_object *obj)
{
    struct inval_index *idx = (struct inval_index *)cidx;
    uint64_t gen = obj->meta.gen;
    if (gen < atomic_load(&idx->floor)) return false;
    if (atomic_load(&idx->records) == 0) return true;
    bool valid = true;
    pthread_rwlock_rdlock(&idx->lock);
    if (idx->prefixes.n > 0) {
        size_t max = obj->key_len < MAX_PREFIX_LEN ? obj->key_len : MAX_PREFIX_LEN;
        for (size_t len = 1; len <= max && valid; len++) {
            if (!(idx->prefix_lengths[len / 64] & (1ULL << (len % 64)))) continue;
            struct record *r =
                table_find(&idx->prefixes, obj->key, len, hash_bytes(obj->key, len));
            if (r && gen < r->seq) valid = false;
        }
    }
    const char *tags = idx->tags.n > 0 ? cache_object_field(obj, CACHE_FIELD_TAGS) : NULL;
    while (valid && tags && *tags) {
        while (*tags == ' ') tags++;
        const char *end = tags;
        while (*end && *end != ' ') end++;
        if (end > tags) {
            size_t len = (size_t)(end - tags);
            struct record *r = table_find(&idx->tags, tags, len, hash_bytes(tags, len));
            if (r && gen < r->seq) valid = false;
        }
        tags = end;
    }
    pthread_rwlock_unlock(&idx->lock);
    return valid;
}

size_t inval_index_records(const struct inval_index *idx)
{
    return atomic_load(&((struct inval_index *)idx)->records);
}

uint64_t inval_index_floor(const struct inval_index *idx)
{
    return atomic_load(&((struct inval_index *)idx)->floor);
}

void inval_index_raise_floor(struct inval_index *idx, uint64_t floor)
{
    uint_fast64_t cur = atomic_load(&idx->floor);
    while (cur < floor && !atomic_compare_exchange_weak(&idx->floor, &cur, floor)) {
    }
    see(idx, floor);
}

uint64_t inval_index_folds(const struct inval_index *idx)
{
    return atomic_load(&((struct inval_index *)idx)->folds);
}

/* ---- untrusted sequences and epochs ---- */

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t inval_index_seq_base(void) { return (uint64_t)wall_ms() * 1000; }

int inval_index_parse_seq(const char *s, size_t len, uint64_t *out)
{
    if (s == NULL || len == 0 || len > 19) return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits cannot overflow 2^64 */
    }
    uint64_t max = (uint64_t)(wall_ms() + INVAL_SEQ_SKEW_MS) * 1000;
    if (v > max) return -EINVAL;
    *out = v;
    return 0;
}

bool inval_index_epoch_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > 32) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

int inval_index_note_epoch(struct inval_index *idx, const char *epoch, size_t len)
{
    if (!inval_index_epoch_valid(epoch, len)) return -EINVAL;
    int rc = 0;
    pthread_mutex_lock(&idx->epoch_lock);
    if (idx->epoch[0] != '\0' && (strlen(idx->epoch) != len || memcmp(idx->epoch, epoch, len)))
        rc = 1;
    memcpy(idx->epoch, epoch, len);
    idx->epoch[len] = '\0';
    pthread_mutex_unlock(&idx->epoch_lock);
    return rc;
}
