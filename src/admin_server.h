/*
 * admin_server - the purge/admin API on its own listener.
 *
 * A second libmicrohttpd daemon (one internal thread) on ADMIN_HOST:ADMIN_PORT,
 * loopback by default, started only when ADMIN_TOKEN is set.  Every request
 * must carry "Authorization: Bearer <ADMIN_TOKEN>" (compared in constant time):
 * no credential answers 401 with WWW-Authenticate, a wrong one 403.
 *
 *   POST /purge/key     {"key": "users:5"}        the key and its Vary variants
 *   POST /purge/prefix  {"prefix": "posts:"}      every key starting with prefix
 *   POST /purge/tag     {"tag": "user-5"}         every entry stored with the tag
 *   POST /purge/url     {"url": "/users/5?x=1"}   the key a GET of that URL has
 *                                                 under the active policies, and
 *                                                 its Vary variants
 *   GET  /admin/health                            {"status":"ok"}
 *
 * The value may also come as a query parameter (POST /purge/key?key=users:5);
 * libmicrohttpd decodes it, '+' included, so a literal '+', '&' or '?' must be
 * percent-encoded there.  Values are 1..ADMIN_MAX_VALUE bytes without control
 * characters; bodies are at most ADMIN_MAX_BODY bytes (413 above).  Answers are
 * JSON: {"purged": "<kind>", "<kind>": "<value>"} (a URL purge adds "key") or
 * {"error": "...", "status": N}.  A URL whose GET the policy does not cache
 * under one shared key (bypassed, per-user, policy error) answers 422.  Every
 * purge logs one INFO line naming the kind and the value; the token is never
 * logged or echoed.
 *
 * Purges go through cache_tiers: the memory tier is dropped before the answer
 * is sent, Redis and the other instances follow asynchronously on the I/O loop.
 *
 * Ownership: the server borrows gw (and gw->cfg, including the token) until
 * admin_server_stop.  The admin thread keeps its own Lua host (policy_engine
 * per-thread slot), freed when the thread exits in admin_server_stop, so stop
 * the admin server before policy_engine_destroy.
 * Thread-safety: start and stop from the main thread; requests are handled on
 * the server's single internal thread, which confines all of its state.
 */
#ifndef CACHEGW_ADMIN_SERVER_H
#define CACHEGW_ADMIN_SERVER_H

#include <stddef.h>

#include "gateway.h"

#define ADMIN_MAX_BODY ((size_t)16 * 1024) /* request body bound: 413 above */
#define ADMIN_MAX_VALUE ((size_t)4096)     /* key/prefix/tag/url bound: 400 above */

struct admin_server;

/* Starts the admin listener when gw->cfg->admin_token is set and non-empty and
 * stores the handle in *out; otherwise listens on nothing, sets *out = NULL and
 * returns 0.  Returns -1 with err filled (never containing the token) when the
 * listener cannot start. */
int admin_server_start(struct gateway *gw, struct admin_server **out, char *err, size_t err_len);

/* Stops the listener (in-flight admin requests finish first) and frees it.
 * NULL is a no-op. */
void admin_server_stop(struct admin_server *a);

#endif
