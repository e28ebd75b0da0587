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
 *   POST /purge/all                               every entry, both tiers, every
 *                                                 instance's memory tier
 *   GET  /entries?key=K | ?url=U                  one entry's metadata per tier
 *   GET  /entries?prefix=P&limit=N&cursor=C       a page of the entries
 *   GET  /admin/health                            {"status":"ok"}
 *
 * GET /entries looks without changing anything (store_l1_peek: no LRU move;
 * a Redis GET that counts no hit and deletes nothing; no fill).  One entry:
 * {"key", "tiers": [...], "memory": meta, "redis": meta, "variants": [...]}
 * (404 when nothing is held), meta being status, size (body bytes),
 * stored_at (Unix s), age_s, ttl_s, ttl_left_s, the two stale windows,
 * expires_in_s, fresh, invalidated (held, but a prefix or tag record makes it
 * unreachable), tags and vary.  Variants are listed up to 100, from the
 * memory tier and at most 64 Redis SCAN pages.  A listing walks the memory
 * tier (store_l1_list) and then Redis (SCAN MATCH COUNT, never KEYS): limit
 * 1..1000 (default 100) entries a page (the keys of a SCAN reply past it ride
 * in the cursor); "cursor" is opaque, null on the last page.
 * An entry in both tiers is listed once per tier.  Keys that are not UTF-8
 * come as "key_hex".
 *
 * Purge answers add "removed": {"memory": n, "redis": n} where the count is
 * known (a key or URL: what DEL removed; a prefix or tag: the memory tier's
 * walk), "recorded" where the purge is by record (prefixes, tags and variants
 * in Redis), "unavailable" when Redis is down (replayed when it is back),
 * "pending" when it did not answer in time; no "redis" without a Redis tier.
 * A key or URL purge adds "variants_removed" likewise.
 *
 * Redis work runs on the I/O loop; the admin thread waits for it, bounded by
 * REDIS_TIMEOUT_MS x (REDIS_RETRIES + 1) + 1 s (purge-all: 10 s, then it goes
 * on in the background and the answer says "pending"), so a slow Redis slows
 * only the admin API, never the request path.
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
