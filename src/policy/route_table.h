/*
 * route_table - declarative policy routes decided in C (issue 9, item 5).
 *
 * When a policy set loads, gateway/policy.lua describes every compiled route as a plain
 * table (Set:describe, see lua/gateway/policy.lua).  route_table_build turns that
 * description into an immutable table:
 *
 *   - a trie over path segments with, at each node, literal children (binary search),
 *     one param child and the routes that end there or continue with a wildcard.  Routes
 *     are found exactly as gateway/router.lua finds them: depth first, a literal segment
 *     before a ":param" (non-empty segments only) before the wildcard, the method checked
 *     where a route ends (its method set, or "*"), and a HEAD that finds nothing is
 *     matched again as GET;
 *   - key, tag and invalidation templates as small programs: literal runs and
 *     placeholders ({param}, {*}, {query}, {query.NAME}, {header.NAME}, {method}, {path},
 *     {auth_hash}), expanded as gateway/keys.lua expands them (param values
 *     percent-decoded with control characters re-encoded, header values and decoded
 *     query params with control characters encoded, {query} through query_norm.h with the
 *     route's ignore list, {auth_hash} the first 16 hex digits of SHA-256 over the same
 *     bytes as keys.auth_hash, keys longer than 512 bytes bounded as keys.bound does);
 *   - routes with Lua functions (bypass, key, tags, invalidate or invalidate_tags given as
 *     a function) are in the trie too, so precedence stays exact, but are marked: a
 *     request that lands on one is left to Lua.  on_response alone does not make a route
 *     a Lua route: its decision is declarative, the hook runs later (lua_host_on_response).
 *   - routes with a host (`host = "api.example.com"`, issue 13) go into one trie per host:
 *     a request whose Host (normalised: lower case, no port, no trailing dot) is declared
 *     is matched in its host's trie, then in the trie of host-less routes, as
 *     gateway/policy.lua does; other requests in the host-less trie alone, or, under
 *     unknown_host "reject", answered reject_status 404 (reason "unknown_host").
 *
 * route_table_decide decides a request the way set:decide_raw does, unrouted requests
 * included (the RFC default: "GET:/path?normalised-query", bypass when a GET/HEAD carries
 * credentials).  It returns ROUTE_TABLE_LUA whenever it cannot be sure to give Lua's
 * answer: a Lua route, or a query of more than QUERY_NORM_MAX_PARAMS parameters (Lua
 * raises there, a policy error).  The static part of a decision (route name, ttl, flags)
 * is the caller's to fill from route_id.
 *
 * Request data is read as lua_host hands it to Lua: header names lower-cased (names of
 * 128 bytes or more that need lower-casing are dropped), repeated headers joined with
 * ", " ("; " for cookie), control characters in the path and query percent-encoded.
 *
 * Ownership: route_table_build returns a table the caller frees with route_table_free;
 * it copies everything it keeps out of the Lua state.  route_table_decide borrows the
 * request and fills malloc'd strings into the decision (freed by policy_decision_free).
 * Thread-safety: the table is immutable after build; any number of threads may decide
 * with it at once (per-thread scratch is thread-local).
 */
#ifndef CACHEGW_ROUTE_TABLE_H
#define CACHEGW_ROUTE_TABLE_H

#include <lua.h>
#include <stddef.h>

#include "lua_host.h"

struct route_table;

enum route_table_result {
    ROUTE_TABLE_DECIDED = 0, /* *out holds the decision */
    ROUTE_TABLE_LUA = 1,     /* ask Lua (out is untouched apart from being freed/zeroed) */
};

/*
 * Builds a table from the array of route descriptions at index idx of L (Set:describe's
 * result).  Returns 0, -ENOMEM, or -EINVAL with err naming the route and the part of its
 * description that was not understood.  Does not raise as long as L has memory for a few
 * field-name strings (they are interned at the first call).
 */
int route_table_build(lua_State *L, int idx, struct route_table **out, char *err,
                      size_t err_len);
void route_table_free(struct route_table *t);

size_t route_table_route_count(const struct route_table *t);
/* Routes whose requests go to Lua (they have functions). */
size_t route_table_lua_route_count(const struct route_table *t);

/*
 * Decides req.  On ROUTE_TABLE_DECIDED, out->action, key, route_id, reason, tags and
 * invalidate are set (everything else is left as the caller initialised it); on
 * ROUTE_TABLE_LUA or -ENOMEM nothing in *out was allocated.
 */
int route_table_decide(const struct route_table *t, const struct policy_request *req,
                       struct policy_decision *out);

#endif
