/*
 * hash - the one hash function of the gateway's in-process tables.
 *
 * hash_bytes() is what the memory tier (store_l1), request collapsing
 * (coalesce), the invalidation index (inval_index) and the policy decision
 * memo (lua_host) hash their keys with.
 * It is SipHash-1-3 (Aumasson and Bernstein) under a 128-bit key drawn from
 * getrandom() once per process, chosen because:
 *   - the keys are client-chosen: every URL a client sends becomes a cache key
 *     and a flight key.  With an unkeyed hash (the FNV-1a copies this module
 *     replaces) anyone can compute offline which URLs share a bucket and send
 *     thousands of them, turning every lookup into a walk of one long chain
 *     under a shard lock.  A secret key makes bucket placement unpredictable,
 *     which is why Python, Ruby and Rust key their tables the same way;
 *   - all 64 output bits are well mixed, so callers may take the shard from
 *     the high bits and the bucket from the low bits (or use %) of one value;
 *   - it reads 8 bytes per step, where FNV-1a does a dependent multiply per
 *     byte, so it is no slower on the key lengths we see (tests/unit/test_hash.c
 *     prints both).
 * SipHash-1-3 is the reduced-round variant meant for hash tables (Rust's
 * HashMap, CPython); it is not a MAC and nothing here uses it as one.
 *
 * Values differ between processes: never persist them, send them to another
 * instance or Redis, or let an order that depends on them reach a client.
 *
 * hash_siphash() is the keyed primitive with explicit key and round counts,
 * exported so that the unit test checks the implementation against the
 * reference vectors of SipHash-2-4.
 *
 * Ownership: none (pure functions over borrowed bytes).
 * Thread-safety: safe from any thread; the process key is set once, on the
 * first call, under pthread_once.
 */
#ifndef CACHEGW_HASH_H
#define CACHEGW_HASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-1-3 of data[0..len) under the process key.  len 0 is valid (data
 * may then be NULL). */
uint64_t hash_bytes(const void *data, size_t len);

/* SipHash-c-d of data[0..len) under key (16 bytes, read as two little-endian
 * 64-bit words, as in the reference implementation).  c_rounds, d_rounds >= 1. */
uint64_t hash_siphash(const uint8_t key[16], const void *data, size_t len, int c_rounds,
                      int d_rounds);

#endif
