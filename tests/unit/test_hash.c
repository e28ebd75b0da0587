/* Unit tests for hash: the SipHash core against the reference vectors, the
 * per-process key, and the distribution the tables rely on (shard from the high
 * bits, bucket from the low bits).  Also prints a speed comparison with the
 * FNV-1a + murmur3-finalizer copy that hash_bytes replaced (not asserted: the
 * test build may run under sanitizers). */
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "test.h"

/* SipHash-2-4 of the messages 00, 00 01, ... (lengths 0..63) under the key
 * 00 01 .. 0f: the vectors published with the reference implementation
 * (veorq/SipHash, vectors.h), as 64-bit little-endian values. */
static const uint64_t SIP24_VECTORS[64] = {
    0x726fdb47dd0e0e31ull, 0x74f839c593dc67fdull, 0x0d6c8009d9a94f5aull, 0x85676696d7fb7e2dull,
    0xcf2794e0277187b7ull, 0x18765564cd99a68dull, 0xcbc9466e58fee3ceull, 0xab0200f58b01d137ull,
    0x93f5f5799a932462ull, 0x9e0082df0ba9e4b0ull, 0x7a5dbbc594ddb9f3ull, 0xf4b32f46226bada7ull,
    0x751e8fbc860ee5fbull, 0x14ea5627c0843d90ull, 0xf723ca908e7af2eeull, 0xa129ca6149be45e5ull,
    0x3f2acc7f57c29bdbull, 0x699ae9f52cbe4794ull, 0x4bc1b3f0968dd39cull, 0xbb6dc91da77961bdull,
    0xbed65cf21aa2ee98ull, 0xd0f2cbb02e3b67c7ull, 0x93536795e3a33e88ull, 0xa80c038ccd5ccec8ull,
    0xb8ad50c6f649af94ull, 0xbce192de8a85b8eaull, 0x17d835b85bbb15f3ull, 0x2f2e6163076bcfadull,
    0xde4daaaca71dc9a5ull, 0xa6a2506687956571ull, 0xad87a3535c49ef28ull, 0x32d892fad841c342ull,
    0x7127512f72f27cceull, 0xa7f32346f95978e3ull, 0x12e0b01abb051238ull, 0x15e034d40fa197aeull,
    0x314dffbe0815a3b4ull, 0x027990f029623981ull, 0xcadcd4e59ef40c4dull, 0x9abfd8766a33735cull,
    0x0e3ea96b5304a7d0ull, 0xad0c42d6fc585992ull, 0x187306c89bc215a9ull, 0xd4a60abcf3792b95ull,
    0xf935451de4f21df2ull, 0xa9538f0419755787ull, 0xdb9acddff56ca510ull, 0xd06c98cd5c0975ebull,
    0xe612a3cb9ecba951ull, 0xc766e62cfcadaf96ull, 0xee64435a9752fe72ull, 0xa192d576b245165aull,
    0x0a8787bf8ecb74b2ull, 0x81b3e73d20b49b6full, 0x7fa8220ba3b2eceaull, 0x245731c13ca42499ull,
    0xb78dbfaf3a8d83bdull, 0xea1ad565322a1a0bull, 0x60e61c23a3795013ull, 0x6606d7e446282b93ull,
    0x6ca4ecb15c5f91e1ull, 0x9f626da15c9625f3ull, 0xe51b38608ef25f57ull, 0x958a324ceb064572ull,
};

TEST(siphash24_matches_the_reference_vectors)
{
    uint8_t key[16], msg[64];
    for (int i = 0; i < 16; i++) key[i] = (uint8_t)i;
    for (int i = 0; i < 64; i++) msg[i] = (uint8_t)i;
    for (size_t len = 0; len < 64; len++) {
        uint64_t h = hash_siphash(key, msg, len, 2, 4);
        if (h != SIP24_VECTORS[len])
            fprintf(stderr, "len %zu: got %016llx, want %016llx\n", len, (unsigned long long)h,
                    (unsigned long long)SIP24_VECTORS[len]);
        CHECK(h == SIP24_VECTORS[len]);
    }
}

/* SipHash-1-3 is the same code with other round counts; this value (empty
 * message, all-zero key) is the one CPython, Rust and OCaml test against. */
TEST(siphash13_matches_the_reference_value)
{
    uint8_t zero[16] = {0};
    CHECK(hash_siphash(zero, NULL, 0, 1, 3) == 0xd1fba762150c532cull);
}

TEST(hash_bytes_is_stable_within_a_process_and_reads_only_len_bytes)
{
    char a[] = "GET:/users/5";
    char b[] = "GET:/users/5XYZ";
    CHECK(hash_bytes(a, 12) == hash_bytes(a, 12));
    CHECK(hash_bytes(a, 12) == hash_bytes(b, 12)); /* the bytes past len never count */
    CHECK(hash_bytes(a, 12) != hash_bytes(b, 13));
    CHECK(hash_bytes(NULL, 0) == hash_bytes("", 0));
    /* Trailing NUL bytes change the value (the length is part of the input). */
    char z[4] = {'k', 0, 0, 0};
    CHECK(hash_bytes(z, 1) != hash_bytes(z, 2));
    CHECK(hash_bytes(z, 2) != hash_bytes(z, 3));
}

/* The key is secret per process: another process hashes the same bytes to a
 * different value (equal with probability 2^-64), so an attacker cannot
 * precompute colliding keys on one instance and replay them on another. */
TEST(hash_bytes_is_keyed_per_process)
{
    int fds[2];
    CHECK_EQ_INT(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* A forked child inherits the key; a new program draws its own. */
        close(fds[0]);
        dup2(fds[1], STDOUT_FILENO);
        execl("/proc/self/exe", "test_hash", "--print", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[64] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(n > 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unsigned long long other = strtoull(buf, NULL, 16);
    CHECK(other != 0);
    CHECK(other != (unsigned long long)hash_bytes("GET:/users/5", 12));
}

/* 200,000 keys shaped like real ones ("GET:/users/<id>", then longer ones)
 * into 4096 buckets by the low bits and 64 shards by the high bits: no bucket
 * may be far from the mean.  A weak mix (FNV-1a's low bits for short keys that
 * differ in their last bytes) overloads some buckets by several times. */
TEST(hash_bytes_spreads_similar_keys_over_low_and_high_bits)
{
    enum { KEYS = 200000, BUCKETS = 4096, SHARDS = 64 };
    static unsigned low[BUCKETS], high[SHARDS];
    for (int i = 0; i < KEYS; i++) {
        char key[96];
        int n = i % 2 ? snprintf(key, sizeof key, "GET:/users/%d", i)
                      : snprintf(key, sizeof key, "GET:/posts?limit=20&page=%d&sort=date", i);
        uint64_t h = hash_bytes(key, (size_t)n);
        low[h & (BUCKETS - 1)]++;
        high[h >> 58]++;
    }
    unsigned lo_min = ~0u, lo_max = 0, hi_min = ~0u, hi_max = 0;
    for (int i = 0; i < BUCKETS; i++) {
        if (low[i] < lo_min) lo_min = low[i];
        if (low[i] > lo_max) lo_max = low[i];
    }
    for (int i = 0; i < SHARDS; i++) {
        if (high[i] < hi_min) hi_min = high[i];
        if (high[i] > hi_max) hi_max = high[i];
    }
    /* Mean 48.8 per bucket: a uniform hash stays within about +-6 sigma. */
    fprintf(stderr, "buckets %u..%u (mean %d), shards %u..%u (mean %d)\n", lo_min, lo_max,
            KEYS / BUCKETS, hi_min, hi_max, KEYS / SHARDS);
    CHECK(lo_min >= 10 && lo_max <= 95);
    CHECK(hi_min >= 2800 && hi_max <= 3450);
}

/* Flipping any one input bit flips about half of the output bits.  (Plain
 * FNV-1a, which coalesce and inval_index used, cannot change any bit below
 * the one flipped in the last byte: keys that differ there share their low
 * bits, i.e. their bucket.) */
TEST(hash_bytes_avalanches)
{
    char key[32] = "cachegw:users:12345:profile";
    uint64_t base = hash_bytes(key, 27);
    long total = 0;
    int worst_low = 64, worst_high = 0;
    for (int bit = 0; bit < 27 * 8; bit++) {
        key[bit / 8] ^= (char)(1 << (bit % 8));
        int d = __builtin_popcountll(hash_bytes(key, 27) ^ base);
        key[bit / 8] ^= (char)(1 << (bit % 8));
        total += d;
        if (d < worst_low) worst_low = d;
        if (d > worst_high) worst_high = d;
    }
    double mean = (double)total / (27 * 8);
    fprintf(stderr, "bits flipped per input bit: mean %.1f, range %d..%d\n", mean, worst_low,
            worst_high);
    CHECK(mean > 29.0 && mean < 35.0);
    /* Each count is Binomial(64, 1/2), sd 4: 6 sd either way, so that a keyed
     * (random) hash fails this by chance about once in a million runs. */
    CHECK(worst_low >= 8 && worst_high <= 56);
}

/* The function hash_bytes replaced in store_l1 (coalesce and inval_index had
 * plain FNV-1a): for the printed comparison only. */
static uint64_t fnv1a_fmix(const char *key, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

TEST(speed_compared_with_fnv1a)
{
    static const size_t LENS[] = {16, 40, 100};
    char key[128];
    for (size_t i = 0; i < sizeof key; i++) key[i] = (char)('a' + i % 26);
    for (size_t l = 0; l < sizeof LENS / sizeof LENS[0]; l++) {
        enum { N = 200000 };
        volatile uint64_t sink = 0;
        double t0 = now_s();
        for (int i = 0; i < N; i++) {
            key[0] = (char)i;
            sink ^= hash_bytes(key, LENS[l]);
        }
        double t1 = now_s();
        for (int i = 0; i < N; i++) {
            key[0] = (char)i;
            sink ^= fnv1a_fmix(key, LENS[l]);
        }
        double t2 = now_s();
        fprintf(stderr, "%3zu-byte keys: siphash-1-3 %.1f ns, fnv-1a+fmix %.1f ns\n", LENS[l],
                (t1 - t0) / N * 1e9, (t2 - t1) / N * 1e9);
        (void)sink;
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--print") == 0) {
        printf("%016llx\n", (unsigned long long)hash_bytes("GET:/users/5", 12));
        return 0;
    }
    RUN(siphash24_matches_the_reference_vectors);
    RUN(siphash13_matches_the_reference_value);
    RUN(hash_bytes_is_stable_within_a_process_and_reads_only_len_bytes);
    RUN(hash_bytes_is_keyed_per_process);
    RUN(hash_bytes_spreads_similar_keys_over_low_and_high_bits);
    RUN(hash_bytes_avalanches);
    RUN(speed_compared_with_fnv1a);
    return TEST_SUMMARY();
}
