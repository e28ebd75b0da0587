/*
 * lua_pattern - Lua 5.4 pattern matching (string.find, match, gmatch, gsub) with a step
 * budget.
 *
 * Why: the stock matcher runs in C, so the instruction budget's count hook never sees it,
 * and a backtracking pattern such as ("a*"):rep(30) .. "b" against 30,000 "a"s runs for
 * ever (issue 8, item 10).  This is our own implementation of the same semantics (the
 * Lua 5.4 reference manual, section 6.4.1: classes, sets, %b, %f, back references,
 * position captures, anchors, the 200-level recursion bound and 32 captures, gsub
 * replacement strings, tables and functions, gmatch's init and empty-match rule) that
 * charges every unit of work to a budget: each call of the recursive matcher, every
 * subject byte a repetition or %b scans, every byte a plain find compares.  When the
 * budget runs out it calls the budget's check function, which either refills it (say,
 * after looking at the clock) or raises.  tests/unit/test_lua_pattern.c proves identical
 * results to the real string library over a generated corpus.
 *
 * lua_pattern_install(L, budget) replaces find, match, gmatch and gsub in the string
 * table at the top of the stack (which is also the string metatable's __index, so method
 * calls s:find(...) are covered).  budget may be NULL (no limit).  The functions keep a
 * light pointer to budget: it must outlive the state.
 *
 * Ownership: budget is borrowed; the matcher allocates only through Lua.
 * Thread-safety: as the lua_State; budget is touched only by the state's thread.
 */
#ifndef CACHEGW_LUA_PATTERN_H
#define CACHEGW_LUA_PATTERN_H

#include <lua.h>
#include <stdint.h>

struct lua_pattern_budget {
    /* Units of work left before check runs.  The matcher decrements it. */
    int64_t steps_left;
    /* Called with steps_left < 0: raise (luaL_error) to stop the match, or set steps_left
     * to a positive value to go on.  NULL: refill forever (no limit). */
    void (*check)(lua_State *L, struct lua_pattern_budget *b);
    void *ud; /* for check */
};

/* Replaces find/match/gmatch/gsub in the table at the top of the stack. */
void lua_pattern_install(lua_State *L, struct lua_pattern_budget *budget);

/* Pushes a table with the four functions (for tests that compare against string.*). */
void lua_pattern_push_lib(lua_State *L, struct lua_pattern_budget *budget);

#endif
