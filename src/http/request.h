/*
 * request.h - one client request on its way through the gateway, shared by
 * the three parts of the front end (docs/design.md, "The request path"):
 *
 *   http_server.c      the adapter from the HTTP server (h1_server.h): request
 *                      callbacks, validation, the forwarded field set, bodies,
 *                      suspend/resume, release, the access log and metrics;
 *   request_steps.c    the request steps in one table, driven by one loop;
 *   response_writer.c  every answer the gateway queues (from the cache, from
 *                      the upstream, streamed, its own errors).
 *
 * A request belongs to its worker thread.  While it is suspended the I/O loop
 * (or the worker of another request, for a flight) writes only the fields a
 * step's wait names (see enum req_step) and then resumes the connection; the
 * worker reads them after the resume.
 */
#ifndef CACHEGW_REQUEST_H
#define CACHEGW_REQUEST_H

#include "h1_server.h"
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include <arpa/inet.h>

#include "access_log.h"
#include "body_pipe.h"
#include "buf.h"
#include "cache_fetch.h"
#include "cache_rules.h"
#include "cache_tiers.h"
#include "coalesce.h"
#include "gateway.h"
#include "headers.h"
#include "policy_engine.h"
#include "upstream_request.h"

/* Where the HTTP server's calls are in the life of the request. */
enum phase {
    PH_HEADERS,  /* first call not yet seen */
    PH_BODY,     /* receiving the body */
    PH_STEPS,    /* in the request steps (suspended, or answered by them) */
    PH_ANSWERED, /* a response was queued */
};

/* The request steps (request_steps.c has the table and the allowed moves). */
enum req_step {
    STEP_PLAN,          /* own endpoints, refusals, the decision */
    STEP_POLICY_READ,   /* the decision waits on cache-module reads: start them, suspend */
    STEP_POLICY_RESUME, /* they are answered: resume the decision */
    STEP_ROUTE,         /* the decision is made: pass, or look up */
    STEP_LOOKUP,        /* the memory tier's verdict */
    STEP_FLIGHT,        /* join the key's flight, or lead it */
    STEP_LOOKUP_REDIS,  /* leader: the Redis tier's verdict came back */
    STEP_FETCH,         /* leader: fetch and fill (cache_fetch.h) */
    STEP_FETCH_DONE,    /* leader: the upstream answered */
    STEP_FLIGHT_DONE,   /* waiter: the flight it joined finished */
    STEP_PASS,          /* not cacheable (or no shared answer): forward */
    STEP_PASS_DONE,     /* the forward answered: a write's invalidations */
    STEP_PASS_DELIVER,  /* deliver it (after a write's invalidations are in Redis) */
    STEP_DELIVER_HIT,   /* answer from r->lk.obj */
    STEP_DELIVER_STALE, /* answer from r->stale (r->stale_why) */
    STEP_ENDPOINT,      /* the gateway's own endpoints */
    STEP_ENDPOINT_PING, /* /health/cache's live Redis PING came back */
    STEP_SYNTH,         /* the gateway's own answer (r->synth) */
    STEP_DONE,          /* answered (or the handler failed) */
    STEP__COUNT
};

struct policy_read;

struct request {
    struct gateway *gw;
    struct h1_conn *conn;
    enum phase phase;
    enum req_step step;
    enum h1_result handler_ret;  /* what the step that answered returned */
    const char *method;       /* method_buf once the headers are in (NULL before) */
    char *uri;                /* raw path[?query] */
    struct conn_slot *slot;   /* the connection's guard slot (may be NULL) */
    struct header_list headers; /* the forwarded set (forward_headers): keys come from it */
    struct buf body;
    bool body_too_big;
    bool body_over_budget;    /* MAX_BUFFERED_BODIES was reached while reading it */
    bool has_body;            /* the request carries content (Content-Length > 0 or chunked) */
    bool debug;               /* Cache-Status carries the key (DEBUG_HEADERS or Cachegw-Debug) */
    size_t body_accounted;    /* bytes counted in gw->buffered_body_bytes */
    struct body_pipe *pipe;   /* a body streamed upstream while it arrives, or NULL */
    long long body_size;      /* its Content-Length, -1 for chunked */
    size_t body_streamed;     /* bytes of it received so far */
    char client_ip[INET6_ADDRSTRLEN];
    int64_t start_ms;

    /* Plan. */
    bool cacheable;
    bool store_only;          /* issue 12: Authorization request, forwarded; its answer may be
                                 stored for others (cache_rules_request_store_only) */
    const char *bypass_reason;
    char *path;                    /* uri without the query */
    struct worker_policy *wp;      /* the policy generation this request runs under */
    struct policy_decision dec;    /* valid when has_dec */
    bool has_dec;
    struct lua_host_wait *policy_wait; /* a decision suspended on cache reads */
    struct policy_read *policy_read;   /* its Redis reads in flight */
    struct store_overrides ov;     /* what the route policy says about storage */
    struct request_cc cc;          /* the request's Cache-Control */

    /* Lookup: lk.key is the cache key (cacheable requests), a variant key once
     * a Vary marker was followed. */
    struct cache_lookup lk;
    struct cache_object *stale;    /* stale entry: revalidation base, stale-if-error */
    const char *stale_why;         /* why STEP_DELIVER_STALE serves it */

    /* Flight (cacheable misses). */
    struct flight *flight;         /* led, until the fetch takes it over */
    enum flight_outcome outcome;   /* waiter: written by the leader before resuming */
    struct cache_object *woken_obj;
    /* The object whose shared answer this request queued (response_writer.c, "hits"):
     * its body is sent from the object, so the request holds it until it is over. */
    struct cache_object *served;
    int woken_status;

    /* Fetches: the leader's fetch-and-fill, or a pass's plain forward. */
    struct cache_fetch *cf;
    struct upstream_fetch *fetch;
    bool forward_failed;           /* our own forward got no upstream answer */

    /* The gateway's own answer (STEP_SYNTH). */
    struct {
        int status;
        const char *error;
        const char *detail;
    } synth;
    int own_endpoint_kind;         /* STEP_ENDPOINT: which one */
    double ping_ms;                /* STEP_ENDPOINT_PING: written by the loop */

    /* For the access log. */
    int status;
    const char *x_cache;
    const char *version;      /* version_buf once the headers are in (NULL before) */
    /* Our copies of the head's strings: they live in the connection's buffer,
     * which the next request reuses and the connection frees, while a request
     * whose body streams upstream is released later, by the I/O loop.  Longer
     * ones (refused by the validator) are cut. */
    char method_buf[33];
    char version_buf[16];
    char request_id[ACCESS_LOG_REQUEST_ID_MAX + 1]; /* the client's X-Request-Id, or ours */
    long long bytes;          /* body bytes of the answer, when bytes_known */
    bool bytes_known;
    int64_t upstream_start_us; /* when our last fetch was built (metrics_now_us) */
    int64_t upstream_us;      /* time until its answer was ready; 0 = none answered */
    char *referer, *user_agent; /* copies, kept even when the request is refused */

    /* For the metrics (record_metrics). */
    int64_t start_us;         /* monotonic µs, for the request's duration */
    bool own_endpoint;        /* /health, /health/cache, /metrics: not a served request */
    bool gateway_error;       /* answered by answer_error */
    bool served_stale;        /* answered from a stale entry */
    bool hit_redis;           /* a fresh hit from the Redis tier */
    bool stale_redis;         /* the stale entry came from the Redis tier */
};

/* ---- request_steps.c ---- */

/* Runs the steps from r->step until one suspends or answers.  Returns the
 * handler's result for the HTTP server. */
enum h1_result request_steps_run(struct request *r);

/* A request whose body is streamed upstream: planned at header time, then
 * forwarded while the body arrives (http_server.c drives the pipe). */
enum h1_result request_steps_start_streamed(struct request *r);

/* Hands the answer of a streamed-body request to the steps once its body is in. */
enum h1_result request_steps_answer_streamed(struct request *r);

/* Releases what the steps hold (fetches, flight, policy reads), on the
 * request's thread when it ends, answered or not. */
void request_steps_release(struct request *r);

/* The pass fetch's completion callback (I/O loop): http_server.c resumes the
 * connection or, for an abandoned streamed body, frees the request. */
void request_fetch_ready(struct upstream_fetch *f);

/* ---- http_server.c ---- */

/* Frees a finished (or abandoned) request and writes its access-log line. */
void request_release(struct request *r);

#endif
