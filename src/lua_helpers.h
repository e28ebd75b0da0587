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
 *
 * The same file builds into the gateway (lua_host opens it in every sandboxed state) and
 * into the loadable module cachegw_helpers.so, so busted specs can `require
 * "cachegw_helpers"` and run the policy library outside the gateway with identical
 * helpers.
 *
 * Ownership: the functions keep no state; arguments are borrowed for the call.
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
