/* hash.c - see hash.h. */
#include "hash.h"

#include <pthread.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t hash_k0, hash_k1; /* the process key, set once by hash_init_key */
static pthread_once_t hash_key_once = PTHREAD_ONCE_INIT;

static uint64_t hash_load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

static uint64_t hash_rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static void hash_sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = hash_rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = hash_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = hash_rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = hash_rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = hash_rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = hash_rotl(v[2], 32);
}

/* Inline so that hash_bytes gets a copy specialised for 1 and 3 rounds, with
 * the round loops unrolled. */
static inline uint64_t hash_sip(uint64_t k0, uint64_t k1, const void *data, size_t len,
                                int c_rounds, int d_rounds)
{
    const uint8_t *p = data;
    uint64_t v[4] = {k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull,
                     k0 ^ 0x6c7967656e657261ull, k1 ^ 0x7465646279746573ull};
    size_t whole = len - len % 8;
    for (size_t i = 0; i < whole; i += 8) {
        uint64_t m = hash_load_le64(p + i);
        v[3] ^= m;
        for (int r = 0; r < c_rounds; r++) hash_sipround(v);
        v[0] ^= m;
    }
    /* The last block: the remaining 0..7 bytes, and the length's low byte on
     * top, so that inputs differing only in trailing zero bytes differ. */
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < len % 8; i++) b |= (uint64_t)p[whole + i] << (8 * i);
    v[3] ^= b;
    for (int r = 0; r < c_rounds; r++) hash_sipround(v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for (int r = 0; r < d_rounds; r++) hash_sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

uint64_t hash_siphash(const uint8_t key[16], const void *data, size_t len, int c_rounds,
                      int d_rounds)
{
    return hash_sip(hash_load_le64(key), hash_load_le64(key + 8), data, len, c_rounds, d_rounds);
}

/* getrandom() does not fail on Linux >= 3.17 once the pool is initialised
 * (it blocks until then, which happens early in boot).  Should it fail anyway
 * (seccomp, an old kernel), the key falls back to values an outside client
 * cannot read: the clock to the nanosecond, the pid and an ASLR address. */
static void hash_init_key(void)
{
    uint8_t key[16];
    size_t got = 0;
    while (got < sizeof key) {
        ssize_t n = getrandom(key + got, sizeof key - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (got == sizeof key) {
        hash_k0 = hash_load_le64(key);
        hash_k1 = hash_load_le64(key + 8);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t seed[2] = {(uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)getpid(),
                        (uint64_t)(uintptr_t)&got ^ (uint64_t)(uintptr_t)hash_init_key};
    hash_k0 = hash_sip(0, 0, seed, sizeof seed, 2, 4);
    seed[0] ^= hash_k0;
    hash_k1 = hash_sip(0, 0, seed, sizeof seed, 2, 4);
}

uint64_t hash_bytes(const void *data, size_t len)
{
    pthread_once(&hash_key_once, hash_init_key);
    return hash_sip(hash_k0, hash_k1, data, len, 1, 3);
}
