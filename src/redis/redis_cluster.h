/*
 * redis_cluster - the router behind redis_pool in AUTO, CLUSTER and SENTINEL
 * modes (docs/design.md, "Redis Cluster and Sentinel").  Callers never use it
 * directly: redis_pool.c forwards its API here when the pool is a router.
 *
 * Nodes.  Every node the router talks to (seeds, masters named by the slot map
 * or by a redirect, the master a sentinel names) gets an ordinary redis_pool,
 * created on demand with the user's options (same credentials, database and
 * TLS settings; the TLS name checked, and sent as SNI, is the host as the
 * cluster announces it, so a cluster that announces host names is verified
 * against them).  Node pools are never freed before the router: a node that
 * leaves keeps an idle pool (it may come back), bounded by CLUSTER_MAX_NODES.
 *
 * Cluster.  The slot map comes from CLUSTER SLOTS at start (asked of the
 * first seed that answers), after a MOVED (throttled to one load in flight and
 * at most one every 100 ms), every 500 ms while a master of the map is down
 * (so a promoted replica is followed within the cluster's node timeout plus
 * about half a second) and every 5 s otherwise.  A command goes to the master
 * of its key's slot (redis_slot.h); before the map is known, to the first
 * seed that answers (a MOVED fixes it).  MOVED updates the slot at once and
 * resends; ASK resends once with ASKING on the same connection; TRYAGAIN
 * resends after 20 ms; at most CLUSTER_MAX_REDIRECTS per command, after which
 * the error reply is the answer.  A master that is down makes its slots' commands fail at
 * once (-ENOTCONN), so callers use the memory tier for those slots only
 * (invariant 2 per slot range).  Multi-key DEL / UNLINK / EXISTS / TOUCH /
 * MGET / MSET whose keys span slots are split per slot, sent in parallel and
 * their answers combined (sums; MGET in the caller's order).  SCAN walks every
 * master in turn: the cursor callers see is "0" or "9" + two digits (the
 * master's rank) + the node's own cursor, still all digits.
 *
 * AUTO: a first seed that answers CLUSTER SLOTS with "cluster support
 * disabled" (or any error: an ACL without CLUSTER) is a standalone server:
 * every slot maps to it and the map is never asked for again.
 *
 * Sentinel.  One small pool per sentinel (the sentinel password and TLS
 * setting); SENTINEL get-master-addr-by-name at start and every second, and a
 * subscription to +switch-master on one sentinel.  A new address makes a pool
 * for it the master (the old pool is stopped and kept).  ROLE is asked of the
 * master after each connect and every second: until it says "master", every
 * command fails at once (memory tier), so nothing is written to a replica; a
 * READONLY answer asks the sentinels at once.
 *
 * Subscriptions live on one node pool and are moved to another node when
 * theirs stays unsubscribed for 1 s; the first SUBSCRIBE after such a move
 * reports a gap, so the owner catches up as after any re-subscription.  With
 * a pub/sub key (redis_pool_set_pubsub_key), PUBLISH goes to the master of
 * that key's slot and subscriptions are moved there (the new SUBSCRIBE made
 * before the old one is dropped: no gap), so that a message is delivered
 * before its PUBLISH is answered, as on one server.
 *
 * Thread-safety: as redis_pool.h (available, connected, latency, stats and
 * topology from any thread: the node table only grows, published with atomics;
 * everything else on the loop thread).
 */
#ifndef CACHEGW_REDIS_CLUSTER_H
#define CACHEGW_REDIS_CLUSTER_H

#include "redis_pool.h"

#define CLUSTER_MAX_NODES 256
#define CLUSTER_MAX_REDIRECTS 5

struct redis_cluster;
struct redis_csub;

int redis_cluster_create(struct io_loop *loop, const struct redis_pool_options *o,
                         struct redis_cluster **out, char *err, size_t errlen);
void redis_cluster_start(struct redis_cluster *c);
void redis_cluster_stop(struct redis_cluster *c);
void redis_cluster_destroy(struct redis_cluster *c);

bool redis_cluster_available(const struct redis_cluster *c);
int redis_cluster_connected(const struct redis_cluster *c);
double redis_cluster_last_latency_ms(const struct redis_cluster *c);
void redis_cluster_get_stats(const struct redis_cluster *c, struct redis_pool_stats *out);
void redis_cluster_get_topology(const struct redis_cluster *c, struct redis_topology *out);

int redis_cluster_command(struct redis_cluster *c, int argc, const char **argv,
                          const size_t *lens, redis_reply_fn fn, void *arg);
int redis_cluster_ping(struct redis_cluster *c, redis_reply_fn fn, void *arg);

int redis_cluster_subscribe(struct redis_cluster *c, const char *channel, size_t channel_len,
                            redis_sub_message_fn on_message, redis_sub_state_fn on_state,
                            void *arg, struct redis_csub **out);
void redis_cluster_unsubscribe(struct redis_cluster *c, struct redis_csub *s);
/* redis_pool_sub_set_watch for a router's subscription: applied to the node
 * subscription of now and to every later one (a move, make-before-break). */
struct redis_sub_watch;
void redis_cluster_sub_set_watch(struct redis_csub *s, struct redis_sub_watch *w);
void redis_cluster_set_pubsub_key(struct redis_cluster *c, const char *key, size_t len);

#endif
