/* balancer.c - see balancer.h. */
#include "balancer.h"

#include <math.h>
#include <string.h>

#include "hash.h"

/* Fixed, public: the mapping of keys to instances must agree between processes.  Keys are
 * client-chosen, but a client choosing keys that land on one instance gains nothing it
 * could not get by repeating one key. */
static const uint8_t BALANCER_ID_KEY[16] = "cachegw-balancer";

int balancer_pick_round_robin(struct balancer_slot *s, size_t n)
{
    int best = -1;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!s[i].eligible) continue;
        s[i].current += s[i].weight;
        total += s[i].weight;
        if (best < 0 || s[i].current > s[best].current) best = (int)i;
    }
    if (best >= 0) s[best].current -= total;
    return best;
}

int balancer_pick_least_conn(const struct balancer_slot *s, size_t n, uint64_t rotate)
{
    int best = -1;
    for (size_t k = 0; k < n; k++) {
        size_t i = (size_t)((rotate + k) % n);
        if (!s[i].eligible) continue;
        /* inflight_i / weight_i < inflight_best / weight_best, without division */
        if (best < 0 || s[i].inflight * s[best].weight < s[best].inflight * s[i].weight)
            best = (int)i;
    }
    return best;
}

/* splitmix64's finaliser: spreads the combined key and id over all 64 bits. */
static uint64_t balancer_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

int balancer_pick_hash(const struct balancer_slot *s, size_t n, const char *key, size_t key_len)
{
    uint64_t kh = hash_siphash(BALANCER_ID_KEY, key, key_len, 1, 3);
    int best = -1;
    double best_score = 0;
    for (size_t i = 0; i < n; i++) {
        if (!s[i].eligible) continue;
        /* Weighted rendezvous: score = -weight / ln(u), u uniform in (0, 1). */
        uint64_t h = balancer_mix(kh ^ s[i].id);
        double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* 2^53 */
        double score = -(double)s[i].weight / log(u);
        if (best < 0 || score > best_score) {
            best = (int)i;
            best_score = score;
        }
    }
    return best;
}

uint64_t balancer_instance_id(const char *url)
{
    return hash_siphash(BALANCER_ID_KEY, url, strlen(url), 1, 3);
}
