/*
 * response_writer - every answer the gateway queues on a client connection,
 * apart from the steps that decide them (request_steps.c):
 *
 *   answer_object    from a stored object, without copying its body (304 when
 *                    the request's validators match it);
 *   answer_hit       a fresh hit (Cache-Status hit; ttl; the tier);
 *   answer_stale     a stale entry (r->stale) the rules allow, and why;
 *   answer_fetched   a buffered upstream response, its body handed over;
 *   answer_streamed  an upstream response streamed while it arrives (the
 *                    response takes the upstream fetch over and frees it);
 *   answer_error     the gateway's own answers: a small JSON body;
 *   answer_status_page  /health/cache and /metrics.
 *
 * Every answer carries X-Cache and Cache-Status (RFC 9211), and the request's
 * access-log and metrics fields (status, bytes, cache result) are set here.
 * Each returns the HTTP server's handler result (h1_server.h).  Worker thread only.
 */
#ifndef CACHEGW_RESPONSE_WRITER_H
#define CACHEGW_RESPONSE_WRITER_H

#include "request.h"

void writer_add_header(struct h1_response *resp, const char *name, const char *value);

enum h1_result answer_error(struct request *r, int status, const char *error,
                             const char *detail);
enum h1_result answer_object(struct request *r, struct cache_object *obj, const char *x_cache,
                              const char *cache_status);
enum h1_result answer_hit(struct request *r, struct cache_object *obj, int64_t now,
                           const char *detail);
enum h1_result answer_stale(struct request *r, const char *detail);
enum h1_result answer_fetched(struct request *r, struct upstream_fetch *f, const char *x_cache,
                               const char *cache_status);
enum h1_result answer_streamed(struct request *r, struct upstream_fetch *f, const char *x_cache,
                                const char *cache_status);
enum h1_result answer_status_page(struct request *r, bool metrics, double latency_ms);

#endif
