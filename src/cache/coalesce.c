/* coalesce.c - see coalesce.h. */
#include "coalesce.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

enum { SHARDS = 32, BUCKETS = 256 };

struct waiter {
    void *who;
    flight_wake_fn wake;
    struct waiter *next;
};

struct flight {
    struct flight *next; /* bucket chain */
    uint64_t hash;
    unsigned shard;
    struct waiter *waiters;
    size_t key_len;
    char key[];
};

struct shard {
    pthread_mutex_t lock;
    struct flight *buckets[BUCKETS];
    size_t open;
};

struct coalescer {
    struct shard shards[SHARDS];
};

int coalesce_create(struct coalescer **out)
{
    struct coalescer *c = calloc(1, sizeof *c);
    if (c == NULL) return -ENOMEM;
    for (int i = 0; i < SHARDS; i++) pthread_mutex_init(&c->shards[i].lock, NULL);
    *out = c;
    return 0;
}

void coalesce_destroy(struct coalescer *c)
{
    if (c == NULL) return;
    for (int i = 0; i < SHARDS; i++) {
        for (int b = 0; b < BUCKETS; b++) {
            struct flight *f = c->shards[i].buckets[b];
            while (f) {
                struct flight *next = f->next;
                struct waiter *w = f->waiters;
                while (w) {
                    struct waiter *wn = w->next;
                    free(w);
                    w = wn;
                }
                free(f);
                f = next;
            }
        }
        pthread_mutex_destroy(&c->shards[i].lock);
    }
    free(c);
}

static bool join_or_lead(struct coalescer *c, const char *key, size_t key_len, void *who,
                         flight_wake_fn wake, struct flight **out, bool lead_only);

bool coalesce_join(struct coalescer *c, const char *key, size_t key_len, void *who,
                   flight_wake_fn wake, struct flight **out)
{
    return join_or_lead(c, key, key_len, who, wake, out, false);
}

bool coalesce_try_lead(struct coalescer *c, const char *key, size_t key_len,
                       struct flight **out)
{
    return join_or_lead(c, key, key_len, NULL, NULL, out, true) && *out != NULL;
}

static bool join_or_lead(struct coalescer *c, const char *key, size_t key_len, void *who,
                         flight_wake_fn wake, struct flight **out, bool lead_only)
{
    uint64_t h = hash_bytes(key, key_len); /* shard from the high bits, bucket from the low */
    unsigned si = (unsigned)(h >> 59) % SHARDS;
    struct shard *s = &c->shards[si];
    size_t b = (size_t)(h % BUCKETS);
    /* Allocate before locking so no malloc happens under the lock. */
    struct waiter *w = malloc(sizeof *w);
    struct flight *fresh = malloc(sizeof *fresh + key_len + 1);
    *out = NULL;
    if (w == NULL || fresh == NULL) {
        free(w);
        free(fresh);
        return true;
    }
    pthread_mutex_lock(&s->lock);
    for (struct flight *f = s->buckets[b]; f; f = f->next) {
        if (f->hash == h && f->key_len == key_len && memcmp(f->key, key, key_len) == 0) {
            if (lead_only) {
                pthread_mutex_unlock(&s->lock);
                free(w);
                free(fresh);
                return false;
            }
            w->who = who;
            w->wake = wake;
            w->next = f->waiters;
            f->waiters = w;
            pthread_mutex_unlock(&s->lock);
            free(fresh);
            return false;
        }
    }
    fresh->hash = h;
    fresh->shard = si;
    fresh->waiters = NULL;
    fresh->key_len = key_len;
    memcpy(fresh->key, key, key_len);
    fresh->key[key_len] = '\0';
    fresh->next = s->buckets[b];
    s->buckets[b] = fresh;
    s->open++;
    pthread_mutex_unlock(&s->lock);
    free(w);
    *out = fresh;
    return true;
}

void coalesce_finish(struct coalescer *c, struct flight *f, enum flight_outcome outcome,
                     struct cache_object *obj, int status)
{
    if (f == NULL) return;
    struct shard *s = &c->shards[f->shard];
    size_t b = (size_t)(f->hash % BUCKETS);
    pthread_mutex_lock(&s->lock);
    for (struct flight **pp = &s->buckets[b]; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    s->open--;
    struct waiter *w = f->waiters;
    pthread_mutex_unlock(&s->lock);
    free(f);
    while (w) {
        struct waiter *next = w->next;
        w->wake(w->who, outcome, obj, status);
        free(w);
        w = next;
    }
}

size_t coalesce_open_flights(struct coalescer *c)
{
    size_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&c->shards[i].lock);
        n += c->shards[i].open;
        pthread_mutex_unlock(&c->shards[i].lock);
    }
    return n;
}
