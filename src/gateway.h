/*
 * gateway - the process-wide context every request path shares.
 *
 * Built by main at start-up and torn down at exit; modules receive a pointer
 * to it.  The pointers it holds are owned by main.
 * Thread-safety: immutable after start-up except the atomics.
 */
#ifndef CACHEGW_GATEWAY_H
#define CACHEGW_GATEWAY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct io_loop;
struct proxy;
struct store_l1;
struct coalescer;
struct inval_index;
struct inval_sync;
struct store_redis;
struct redis_pool;
struct policy_engine;
struct h1_server;
struct h1_response;
struct conn_guard;
struct ip_set;

struct gateway {
    const struct config *cfg;
    struct io_loop *loop;
    struct proxy *proxy;
    struct store_l1 *l1;
    struct coalescer *coalescer;
    struct inval_index *inval;       /* prefix/tag invalidation records */
    struct inval_sync *inval_sync;   /* cross-instance invalidation (inval_sync.h) */
    struct redis_pool *redis;        /* NULL when memory only */
    struct store_redis *l2;          /* Redis tier; NULL when memory only */
    struct policy_engine *policies;  /* NULL when no policy engine */
    struct h1_server *server;     /* the HTTP listener (h1_server.h) */
    struct h1_response *health_response;
    struct conn_guard *guard;                /* slow-client deadlines of the listener */
    struct ip_set *trusted_proxies; /* TRUSTED_PROXIES, parsed; NULL = none */
    atomic_size_t buffered_body_bytes;       /* request bodies held now (MAX_BUFFERED_BODIES) */
    atomic_int active_requests;
    atomic_bool draining;                    /* SIGTERM: new connections turned away */
    atomic_bool stopping;                    /* drained: requests not begun yet turned away */
    int64_t started_ms;
};

#endif
