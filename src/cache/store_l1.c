/* store_l1.c - see store_l1.h. */
#include "store_l1.h"

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define L1_DEFAULT_SHARDS 64u
#define L1_MAX_SHARDS 4096u
#define L1_INITIAL_BUCKETS 16u
/* How many expired entries a put may drop from the LRU tail beyond what the byte
 * bound requires.  Small, so that a put never holds the lock for long. */
#define L1_EXPIRE_SCAN 4
#define L1_CACHELINE 64

/* One entry.  The key lives in obj (obj->key, obj->key_len), so a node adds only
 * this fixed overhead on top of obj->charge. */
struct l1_node {
    struct l1_node *hnext; /* hash chain; reused as the release list once unlinked */
    struct l1_node *prev;  /* LRU list: head is most recently used */
    struct l1_node *next;
    uint64_t hash;
    struct cache_object *obj;
    uint64_t promoted; /* the shard's promotion count when this node last went to the head */
};

/* Bytes charged per entry besides the object: the node, plus one bucket slot
 * (the table grows at load factor 1, so there is about one slot per entry). */
#define L1_NODE_OVERHEAD (sizeof(struct l1_node) + sizeof(struct l1_node *))

/* Shards are cache-line aligned so that two workers locking neighbouring shards
 * do not bounce the same line.  entries/bytes/evictions/expired are written only
 * under the lock but read without it by store_l1_get_stats, hence atomics. */
struct l1_shard {
    alignas(L1_CACHELINE) pthread_mutex_t lock;
    struct l1_node **buckets;
    size_t n_buckets; /* power of two */
    struct l1_node *lru_head;
    struct l1_node *lru_tail;
    uint64_t promotions; /* nodes moved to the LRU head so far */
    size_t budget;
    atomic_uint_least64_t entries;
    atomic_uint_least64_t bytes;
    atomic_uint_least64_t evictions;
    atomic_uint_least64_t expired;
};

struct store_l1 {
    struct l1_shard *shards;
    unsigned n_shards;
    unsigned shard_shift; /* hash >> shard_shift selects the shard */
    size_t max_bytes;
};

/* ---- helpers ------------------------------------------------------------- */

/* hash.h's keyed hash: all 64 bits are mixed, and we use both ends (high bits
 * for the shard, low bits for the bucket). */
static uint64_t l1_hash(const char *key, size_t len) { return hash_bytes(key, len); }

static struct l1_shard *l1_shard_for(struct store_l1 *s, uint64_t hash)
{
    /* shard_shift is 64 for a single shard; shifting by 64 is undefined. */
    return s->shard_shift >= 64 ? &s->shards[0] : &s->shards[hash >> s->shard_shift];
}

static size_t l1_charge(const struct l1_node *n) { return n->obj->charge + L1_NODE_OVERHEAD; }

static void stat_add(atomic_uint_least64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static void stat_sub(atomic_uint_least64_t *c, uint64_t v)
{
    atomic_fetch_sub_explicit(c, v, memory_order_relaxed);
}

static struct l1_node **l1_find_slot(struct l1_shard *sh, uint64_t hash, const char *key,
                                     size_t key_len)
{
    struct l1_node **pp = &sh->buckets[hash & (sh->n_buckets - 1)];
    for (; *pp != NULL; pp = &(*pp)->hnext) {
        const struct cache_object *o = (*pp)->obj;
        if ((*pp)->hash == hash && o->key_len == key_len &&
            (key_len == 0 || memcmp(o->key, key, key_len) == 0))
            return pp;
    }
    return pp;
}

static void lru_unlink(struct l1_shard *sh, struct l1_node *n)
{
    if (n->prev != NULL) n->prev->next = n->next;
    else sh->lru_head = n->next;
    if (n->next != NULL) n->next->prev = n->prev;
    else sh->lru_tail = n->prev;
    n->prev = n->next = NULL;
}

static void lru_push_head(struct l1_shard *sh, struct l1_node *n)
{
    n->promoted = ++sh->promotions;
    n->prev = NULL;
    n->next = sh->lru_head;
    if (sh->lru_head != NULL) sh->lru_head->prev = n;
    sh->lru_head = n;
    if (sh->lru_tail == NULL) sh->lru_tail = n;
}

/* Unlinks n from the table and the LRU list, updates the counters, and pushes n
 * on *release so the caller can free it after unlocking.  slot, if known, is the
 * pointer that points at n in its chain. */
static void l1_remove(struct l1_shard *sh, struct l1_node *n, struct l1_node **slot,
                      struct l1_node **release)
{
    if (slot == NULL) {
        slot = &sh->buckets[n->hash & (sh->n_buckets - 1)];
        while (*slot != n) slot = &(*slot)->hnext;
    }
    *slot = n->hnext;
    lru_unlink(sh, n);
    stat_sub(&sh->entries, 1);
    stat_sub(&sh->bytes, l1_charge(n));
    n->hnext = *release;
    *release = n;
}

/* Frees nodes collected under the lock.  Called without the lock, so that the
 * last unref of a large object (and the free it triggers) never stalls other
 * threads waiting for the shard. */
static void l1_release(struct l1_node *list)
{
    while (list != NULL) {
        struct l1_node *next = list->hnext;
        cache_object_unref(list->obj);
        free(list);
        list = next;
    }
}

/* Doubles the table.  Failure to allocate is harmless: chains just get longer. */
static void l1_maybe_grow(struct l1_shard *sh)
{
    uint64_t entries = atomic_load_explicit(&sh->entries, memory_order_relaxed);
    if (entries <= sh->n_buckets || sh->n_buckets > SIZE_MAX / 2 / sizeof(struct l1_node *))
        return;
    size_t nb = sh->n_buckets * 2;
    struct l1_node **b = calloc(nb, sizeof *b);
    if (b == NULL) return;
    for (size_t i = 0; i < sh->n_buckets; i++) {
        struct l1_node *n = sh->buckets[i];
        while (n != NULL) {
            struct l1_node *next = n->hnext;
            struct l1_node **slot = &b[n->hash & (nb - 1)];
            n->hnext = *slot;
            *slot = n;
            n = next;
        }
    }
    free(sh->buckets);
    sh->buckets = b;
    sh->n_buckets = nb;
}

static int l1_expired(const struct l1_node *n, int64_t now_ms)
{
    return cache_object_expires_at_ms(n->obj) <= now_ms;
}

/* Detaches every node of a locked shard onto *release. */
static size_t l1_shard_drain(struct l1_shard *sh, struct l1_node **release)
{
    size_t count = 0;
    while (sh->lru_head != NULL) {
        l1_remove(sh, sh->lru_head, NULL, release);
        count++;
    }
    return count;
}

/* ---- public API ---------------------------------------------------------- */

int store_l1_create(size_t max_bytes, unsigned n_shards, struct store_l1 **out)
{
    if (out == NULL) return -EINVAL;
    *out = NULL;
    if (n_shards == 0) n_shards = L1_DEFAULT_SHARDS;
    if (n_shards > L1_MAX_SHARDS) n_shards = L1_MAX_SHARDS;
    unsigned n = 1, bits = 0;
    while (n < n_shards) {
        n <<= 1;
        bits++;
    }

    int rc = -ENOMEM;
    unsigned initialised = 0;
    struct store_l1 *s = calloc(1, sizeof *s);
    if (s == NULL) goto fail;
    s->n_shards = n;
    s->shard_shift = 64 - bits;
    s->max_bytes = max_bytes;
    /* aligned_alloc needs a size that is a multiple of the alignment; the
     * alignas member makes sizeof(struct l1_shard) one. */
    s->shards = aligned_alloc(alignof(struct l1_shard), n * sizeof(struct l1_shard));
    if (s->shards == NULL) goto fail;
    memset(s->shards, 0, n * sizeof(struct l1_shard));
    for (; initialised < n; initialised++) {
        struct l1_shard *sh = &s->shards[initialised];
        sh->budget = max_bytes / n;
        sh->n_buckets = L1_INITIAL_BUCKETS;
        sh->buckets = calloc(sh->n_buckets, sizeof *sh->buckets);
        if (sh->buckets == NULL) goto fail;
        if (pthread_mutex_init(&sh->lock, NULL) != 0) {
            free(sh->buckets);
            goto fail;
        }
    }
    *out = s;
    return 0;

fail:
    if (s != NULL) {
        for (unsigned i = 0; i < initialised; i++) {
            pthread_mutex_destroy(&s->shards[i].lock);
            free(s->shards[i].buckets);
        }
        free(s->shards);
        free(s);
    }
    return rc;
}

void store_l1_destroy(struct store_l1 *store)
{
    if (store == NULL) return;
    for (unsigned i = 0; i < store->n_shards; i++) {
        struct l1_shard *sh = &store->shards[i];
        struct l1_node *release = NULL;
        l1_shard_drain(sh, &release);
        l1_release(release);
        pthread_mutex_destroy(&sh->lock);
        free(sh->buckets);
    }
    free(store->shards);
    free(store);
}

struct cache_object *store_l1_get(struct store_l1 *store, const char *key, size_t key_len,
                                  int64_t now_ms)
{
    if (store == NULL || (key == NULL && key_len > 0) || store->max_bytes == 0) return NULL;
    uint64_t hash = l1_hash(key, key_len);
    struct l1_shard *sh = l1_shard_for(store, hash);
    struct cache_object *found = NULL;
    struct l1_node *release = NULL;

    pthread_mutex_lock(&sh->lock);
    struct l1_node **slot = l1_find_slot(sh, hash, key, key_len);
    struct l1_node *n = *slot;
    if (n != NULL) {
        if (l1_expired(n, now_ms)) {
            l1_remove(sh, n, slot, &release);
            stat_add(&sh->expired, 1);
        } else {
            /* Approximate LRU: a node promoted less than a quarter of the entries ago
             * is still near the head and stays where it is.  A hit then touches no
             * neighbour node (two cache misses each with many keys). */
            uint64_t recent = atomic_load_explicit(&sh->entries, memory_order_relaxed) / 4;
            if (sh->lru_head != n && sh->promotions - n->promoted > recent) {
                lru_unlink(sh, n);
                lru_push_head(sh, n);
            }
            found = cache_object_ref(n->obj);
        }
    }
    pthread_mutex_unlock(&sh->lock);

    l1_release(release);
    return found;
}

int store_l1_put(struct store_l1 *store, struct cache_object *obj, int64_t now_ms)
{
    if (store == NULL || obj == NULL) return -EINVAL;
    /* A disabled tier (max_bytes == 0) refuses with -E2BIG rather than
     * pretending success: to the caller it is the same situation as an object
     * that does not fit, and it lets callers count "not stored" uniformly. */
    if (store->max_bytes == 0) return -E2BIG;

    uint64_t hash = l1_hash(obj->key, obj->key_len);
    struct l1_shard *sh = l1_shard_for(store, hash);
    size_t charge = obj->charge + L1_NODE_OVERHEAD;
    /* Decide everything that can fail before taking the lock.  An object
     * already past its expiry is not stored (it would only evict useful entries
     * before being dropped by the next get); to the caller that is
     * indistinguishable from storing it, so it still reports success. */
    int rc = 0;
    struct l1_node *node = NULL;
    if (charge > sh->budget || charge < obj->charge) rc = -E2BIG;
    else if (cache_object_expires_at_ms(obj) <= now_ms) rc = 0;
    else if ((node = malloc(sizeof *node)) == NULL) rc = -ENOMEM;

    struct l1_node *release = NULL;
    pthread_mutex_lock(&sh->lock);
    /* The old entry goes whether or not the new object is stored: obj is a newer
     * response for the key, so the superseded one must not keep being served. */
    struct l1_node **slot = l1_find_slot(sh, hash, obj->key, obj->key_len);
    if (*slot != NULL) l1_remove(sh, *slot, slot, &release);

    if (node != NULL) {
        node->hash = hash;
        node->obj = cache_object_ref(obj);
        node->hnext = sh->buckets[hash & (sh->n_buckets - 1)];
        sh->buckets[hash & (sh->n_buckets - 1)] = node;
        lru_push_head(sh, node);
        stat_add(&sh->entries, 1);
        stat_add(&sh->bytes, charge);

        /* Enforce the bound from the LRU end.  The new node is at the head and
         * fits the budget on its own, so it is never the victim. */
        while (atomic_load_explicit(&sh->bytes, memory_order_relaxed) > sh->budget) {
            struct l1_node *victim = sh->lru_tail;
            stat_add(l1_expired(victim, now_ms) ? &sh->expired : &sh->evictions, 1);
            l1_remove(sh, victim, NULL, &release);
        }
        /* Then drop a few entries that are already useless, if they sit at the
         * tail; a full scan would make put cost O(entries). */
        for (int i = 0; i < L1_EXPIRE_SCAN; i++) {
            struct l1_node *victim = sh->lru_tail;
            if (victim == node || !l1_expired(victim, now_ms)) break;
            stat_add(&sh->expired, 1);
            l1_remove(sh, victim, NULL, &release);
        }
        l1_maybe_grow(sh);
    }
    pthread_mutex_unlock(&sh->lock);

    l1_release(release);
    return rc;
}

int store_l1_delete(struct store_l1 *store, const char *key, size_t key_len)
{
    if (store == NULL || (key == NULL && key_len > 0)) return 0;
    uint64_t hash = l1_hash(key, key_len);
    struct l1_shard *sh = l1_shard_for(store, hash);
    struct l1_node *release = NULL;

    pthread_mutex_lock(&sh->lock);
    struct l1_node **slot = l1_find_slot(sh, hash, key, key_len);
    if (*slot != NULL) l1_remove(sh, *slot, slot, &release);
    pthread_mutex_unlock(&sh->lock);

    int removed = release != NULL;
    l1_release(release);
    return removed;
}

size_t store_l1_delete_prefix(struct store_l1 *store, const char *prefix, size_t prefix_len)
{
    if (store == NULL || (prefix == NULL && prefix_len > 0)) return 0;
    size_t removed = 0;
    for (unsigned i = 0; i < store->n_shards; i++) {
        struct l1_shard *sh = &store->shards[i];
        struct l1_node *release = NULL;
        pthread_mutex_lock(&sh->lock);
        struct l1_node *n = sh->lru_head;
        while (n != NULL) {
            struct l1_node *next = n->next;
            const struct cache_object *o = n->obj;
            if (o->key_len >= prefix_len &&
                (prefix_len == 0 || memcmp(o->key, prefix, prefix_len) == 0)) {
                l1_remove(sh, n, NULL, &release);
                removed++;
            }
            n = next;
        }
        pthread_mutex_unlock(&sh->lock);
        l1_release(release);
    }
    return removed;
}

size_t store_l1_delete_matching(struct store_l1 *store,
                                bool (*match)(const struct cache_object *obj, void *arg),
                                void *arg)
{
    if (store == NULL) return 0;
    size_t removed = 0;
    for (unsigned i = 0; i < store->n_shards; i++) {
        struct l1_shard *sh = &store->shards[i];
        struct l1_node *release = NULL;
        pthread_mutex_lock(&sh->lock);
        for (struct l1_node *n = sh->lru_head, *next; n != NULL; n = next) {
            next = n->next;
            if (match(n->obj, arg)) {
                l1_remove(sh, n, NULL, &release);
                removed++;
            }
        }
        pthread_mutex_unlock(&sh->lock);
        l1_release(release);
    }
    return removed;
}

size_t store_l1_clear(struct store_l1 *store)
{
    if (store == NULL) return 0;
    size_t removed = 0;
    for (unsigned i = 0; i < store->n_shards; i++) {
        struct l1_shard *sh = &store->shards[i];
        struct l1_node *release = NULL;
        pthread_mutex_lock(&sh->lock);
        removed += l1_shard_drain(sh, &release);
        pthread_mutex_unlock(&sh->lock);
        l1_release(release);
    }
    return removed;
}

struct cache_object *store_l1_peek(struct store_l1 *store, const char *key, size_t key_len,
                                   int64_t now_ms)
{
    if (store == NULL || (key == NULL && key_len > 0) || store->max_bytes == 0) return NULL;
    uint64_t hash = l1_hash(key, key_len);
    struct l1_shard *sh = l1_shard_for(store, hash);
    struct cache_object *found = NULL;
    pthread_mutex_lock(&sh->lock);
    struct l1_node *n = *l1_find_slot(sh, hash, key, key_len);
    if (n != NULL && !l1_expired(n, now_ms)) found = cache_object_ref(n->obj);
    pthread_mutex_unlock(&sh->lock);
    return found;
}

/* The listing cursor: the shard in the high 16 bits, the bucket in the low 48.
 * Buckets are walked by index: when a table doubles, old bucket b splits into
 * b and b + old size, so every entry not yet visited is still at an index at
 * or past the cursor (the split-off half of visited buckets is visited again,
 * hence "at least once"). */
#define L1_CURSOR_SHARD(c) ((unsigned)((c) >> 48))
#define L1_CURSOR_BUCKET(c) ((size_t)((c) & ((UINT64_C(1) << 48) - 1)))
#define L1_CURSOR(shard, bucket) (((uint64_t)(shard) << 48) | (uint64_t)(bucket))

static bool l1_matches(const struct cache_object *o, const char *prefix, size_t prefix_len)
{
    return o->key_len >= prefix_len && (prefix_len == 0 || memcmp(o->key, prefix, prefix_len) == 0);
}

/* Appends obj (a new reference) to the growing array *out. */
static int l1_list_push(struct cache_object ***out, size_t *n, size_t *cap,
                        struct cache_object *obj)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct cache_object **a = realloc(*out, nc * sizeof *a);
        if (a == NULL) return -ENOMEM;
        *out = a;
        *cap = nc;
    }
    (*out)[(*n)++] = cache_object_ref(obj);
    return 0;
}

int store_l1_list(struct store_l1 *store, uint64_t *cursor, const char *prefix,
                  size_t prefix_len, size_t limit, int64_t now_ms, struct cache_object ***out,
                  size_t *n)
{
    *out = NULL;
    *n = 0;
    if (store == NULL || store->max_bytes == 0 || *cursor == STORE_L1_LIST_END) {
        *cursor = STORE_L1_LIST_END;
        return 0;
    }
    if (L1_CURSOR_SHARD(*cursor) >= store->n_shards) return -EINVAL;
    if (limit == 0) limit = 1;
    unsigned shard = L1_CURSOR_SHARD(*cursor);
    size_t bucket = L1_CURSOR_BUCKET(*cursor);
    size_t cap = 0, work = 0;
    int rc = 0;
    while (shard < store->n_shards && work < STORE_L1_LIST_WORK && rc == 0) {
        struct l1_shard *sh = &store->shards[shard];
        pthread_mutex_lock(&sh->lock);
        for (; bucket < sh->n_buckets && work < STORE_L1_LIST_WORK; bucket++, work++) {
            size_t matches = 0;
            for (struct l1_node *e = sh->buckets[bucket]; e != NULL; e = e->hnext)
                if (!l1_expired(e, now_ms) && l1_matches(e->obj, prefix, prefix_len)) matches++;
            if (matches == 0) continue;
            if (*n > 0 && *n + matches > limit) break; /* the next page starts here */
            for (struct l1_node *e = sh->buckets[bucket]; e != NULL && rc == 0; e = e->hnext)
                if (!l1_expired(e, now_ms) && l1_matches(e->obj, prefix, prefix_len))
                    rc = l1_list_push(out, n, &cap, e->obj);
            if (*n >= limit) {
                bucket++;
                break;
            }
        }
        bool shard_done = bucket >= sh->n_buckets;
        pthread_mutex_unlock(&sh->lock);
        if (shard_done) {
            shard++;
            bucket = 0;
        }
        if (*n >= limit || !shard_done) break;
    }
    if (rc != 0) {
        for (size_t i = 0; i < *n; i++) cache_object_unref((*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *cursor = shard >= store->n_shards ? STORE_L1_LIST_END : L1_CURSOR(shard, bucket);
    return 0;
}

void store_l1_get_stats(struct store_l1 *store, struct store_l1_stats *out)
{
    if (out == NULL) return;
    memset(out, 0, sizeof *out);
    if (store == NULL) return;
    /* Counters are summed without locking: each is exact for its shard, the sum
     * is a snapshot that may straddle concurrent updates, which is all a stats
     * reader needs. */
    out->max_bytes = store->max_bytes;
    for (unsigned i = 0; i < store->n_shards; i++) {
        struct l1_shard *sh = &store->shards[i];
        out->entries += atomic_load_explicit(&sh->entries, memory_order_relaxed);
        out->bytes += atomic_load_explicit(&sh->bytes, memory_order_relaxed);
        out->evictions += atomic_load_explicit(&sh->evictions, memory_order_relaxed);
        out->expired += atomic_load_explicit(&sh->expired, memory_order_relaxed);
    }
}
