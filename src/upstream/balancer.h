/*
 * balancer - choosing one instance of a named upstream (issue 13; docs/design.md, Upstreams).
 *
 * Pure functions over an array of slots, one per instance, that the caller has marked
 * eligible (healthy, under its connection bound, not yet tried by this request):
 *   - round robin: nginx's smooth weighted round robin (each pick adds every eligible
 *     slot's weight to its current value, takes the largest and subtracts the total), so
 *     weights 5,1,1 give a a b a c a a, never five a's in a row;
 *   - least_conn: the fewest in-flight requests per unit of weight, ties broken by a
 *     rotating start so equal instances share the load;
 *   - hash: weighted rendezvous hashing of the request's cache key: each key goes to one
 *     instance, and when that instance drops out only its keys move.  Instance ids come
 *     from hash_siphash under a fixed key, so every gateway process maps a key to the same
 *     instance (their caches stay complementary).
 *
 * Ownership: none; slots are the caller's.
 * Thread-safety: the caller serialises picks on one array (round robin mutates it).
 */
#ifndef CACHEGW_BALANCER_H
#define CACHEGW_BALANCER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct balancer_slot {
    int weight;       /* >= 1 */
    int64_t current;  /* smooth round robin state */
    int64_t inflight; /* requests in flight (least_conn), as read by the caller */
    uint64_t id;      /* balancer_instance_id of the instance (hash) */
    bool eligible;
};

/* Each returns the chosen slot's index, or -1 when no slot is eligible. */
int balancer_pick_round_robin(struct balancer_slot *s, size_t n);
int balancer_pick_least_conn(const struct balancer_slot *s, size_t n, uint64_t rotate);
int balancer_pick_hash(const struct balancer_slot *s, size_t n, const char *key, size_t key_len);

/* A stable id for an instance URL (the same in every process). */
uint64_t balancer_instance_id(const char *url);

#endif
