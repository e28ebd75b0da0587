/*
 * lua_helpers - the safe helper functions policies see as the `gw` table.
 *
 *   gw.hash(s [, n])   lower-case hex of SHA-256(s), first n hex digits (default 16, 1..64);
 *                      via OpenSSL.  Used for {auth_hash} and for shortening long keys.
 *   gw.now()           wall-clock time in seconds since the epoch, as a float.
 *   gw.log(level, msg) writes "policy: msg" through src/log.h at level "debug", "info",
 *                      "warn" or "error".  Policies must not log credentials.
 *   gw.where(level)    "chunkname:line:" of the function `level` frames up the stack
 *                      (luaL_where), or "" when unknown.  The policy DSL uses it to put the
 *                      declaring file:line into validation errors, since the debug library
 *                      is not available in the sandbox.
 *   gw.query_ignore(list)
 *                      compiles an ignore list for gw.normalize_query: an array of strings,
 *                      a trailing "*" making a prefix (read raw; any other entry raises).
 *                      Returns an opaque userdata; gateway.url compiles one per route.
 *   gw.normalize_query(qs [, ignore])
 *                      the canonical query of src/query_norm.h (exactly url.lua's
 *                      normalize_query_lua): "" for nil or ""; raises "query string has
 *                      more than 256 parameters" (no position) past the bound.  ignore is
 *                      nil or a gw.query_ignore object.  The output and any scratch are
 *                      allocated by the state (under its memory limit), exactly sized.
 *
 * The same file builds into the gateway (lua_host opens it in every sandboxed state) and
 * into the loadable module cachegw_helpers.so, so busted specs can `require
 * "cachegw_helpers"` and run the policy library outside the gateway with identical
 * helpers.
 *
 * Ownership: arguments are borrowed for the call.  The only state is one struct query_norm
 * per gw table (an upvalue of normalize_query), used only inside a call that never
 * re-enters Lua, and the compiled ignore objects, owned by the Lua state (GC).
 * Thread-safety: reentrant; each lua_State stays confined to its own thread.
 */
#ifndef CACHEGW_LUA_HELPERS_H
#define CACHEGW_LUA_HELPERS_H

#include <lua.h>

/* Pushes a new table holding the gw functions.  Raises (memory) like any lua_ call. */
int lua_helpers_open(lua_State *L);

/* The loadable-module entry point: same as lua_helpers_open. */
int luaopen_cachegw_helpers(lua_State *L);

#endif
