/*
 * test_lua_pattern.c - src/policy/lua_pattern.c against the real string library, and its budget.
 *
 * The differential test generates patterns (from the pieces Lua 5.4 patterns are made of,
 * malformed ones included) and subjects over a small alphabet, and compares every result
 * and every error message of find/match/gmatch/gsub with string.* for a fixed seed.
 */
#include "lua_pattern.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "test.h"

static const char *const DIFF_SCRIPT =
    "local P, cases = ...\n"
    "local pieces = { 'a', 'b', '.', '%a', '%d', '%s', '%S', '%w', '%p', '%%', '%.', '[ab]',\n"
    "  '[^a]', '[a-c]', '[%d_]', '[]]', '[^]a]', '%b()', '%bab', '%f[%w]', '%f[%W]', '(', ')',\n"
    "  '()', '%1', '%2', '$', '^', '*', '+', '-', '?', '[', '%', '%f', '%b', 'x', ' ', '%x',\n"
    "  '%u', '%l', '%c', '%g', '[%a-]', '[a-]', '%z', '\\0', '%]' }\n"
    "local quant = { '', '', '', '*', '+', '-', '?' }\n"
    "local chars = { 'a', 'b', 'c', '1', '2', ' ', '(', ')', '_', '.', '%', 'A', 'x', '\\0',\n"
    "  '\\n', ']', '[' }\n"
    "local R = math.random\n"
    "local function pattern()\n"
    "  local t = {}\n"
    "  if R(6) == 1 then t[1] = '^' end\n"
    "  for _ = 1, R(0, 6) do t[#t + 1] = pieces[R(#pieces)] .. quant[R(#quant)] end\n"
    "  if R(6) == 1 then t[#t + 1] = '$' end\n"
    "  return table.concat(t)\n"
    "end\n"
    "local function subject()\n"
    "  local t = {}\n"
    "  for i = 1, R(0, 14) do t[i] = chars[R(#chars)] end\n"
    "  return table.concat(t)\n"
    "end\n"
    "local function pack(ok, ...)\n"
    "  local t = table.pack(...)\n"
    "  local out = { tostring(ok), tostring(t.n) }\n"
    "  for i = 1, t.n do out[#out + 1] = type(t[i]) .. ':' .. tostring(t[i]) end\n"
    "  return table.concat(out, '|')\n"
    "end\n"
    "local function gm(f, s, p, init)\n"
    "  local out = {}\n"
    "  for a, b, c in f(s, p, init) do\n"
    "    out[#out + 1] = tostring(a) .. ',' .. tostring(b) .. ',' .. tostring(c)\n"
    "    if #out > 100 then break end\n"
    "  end\n"
    "  return table.concat(out, ';')\n"
    "end\n"
    "local repls = { 'X', '%0', '<%1>', '%%', '%2%1', '%', '%x', '' }\n"
    "local tbl = { a = 'A', b = false, ['1'] = 7 }\n"
    "local function fn(a, b)\n"
    "  if a == 'b' then return nil end return (a or '') .. '/' .. tostring(b)\n"
    "end\n"
    "local bad, matched, errors = 0, 0, 0\n"
    "local function cmp(what, a, b, s, p)\n"
    "  if a ~= b then\n"
    "    bad = bad + 1\n"
    "    if bad <= 10 then\n"
    "      io.stderr:write(string.format('MISMATCH %s s=%q p=%q\\n  lua:  %s\\n  ours: %s\\n',\n"
    "        what, s, p, a, b))\n"
    "    end\n"
    "  end\n"
    "  if a:sub(1, 5) == 'true|' and not a:find('|nil:nil', 1, true) then\n"
    "    matched = matched + 1\n"
    "  end\n"
    "  if a:sub(1, 6) == 'false|' then errors = errors + 1 end\n"
    "end\n"
    "for _ = 1, cases do\n"
    "  local s, p = subject(), pattern()\n"
    "  local init = ({ nil, 1, 2, -1, -3, 0, 40 })[R(7)]\n"
    "  cmp('find', pack(pcall(string.find, s, p, init)), pack(pcall(P.find, s, p, init)), s, p)\n"
    "  cmp('find plain', pack(pcall(string.find, s, p, init, true)),\n"
    "      pack(pcall(P.find, s, p, init, true)), s, p)\n"
    "  cmp('match', pack(pcall(string.match, s, p, init)),\n"
    "      pack(pcall(P.match, s, p, init)), s, p)\n"
    "  cmp('gmatch', pack(pcall(gm, string.gmatch, s, p, init)),\n"
    "      pack(pcall(gm, P.gmatch, s, p, init)), s, p)\n"
    "  local r = repls[R(#repls)]\n"
    "  local n = ({ nil, 0, 1, 2 })[R(4)]\n"
    "  cmp('gsub', pack(pcall(string.gsub, s, p, r, n)), pack(pcall(P.gsub, s, p, r, n)), s, p)\n"
    "  cmp('gsub table', pack(pcall(string.gsub, s, p, tbl)),\n"
    "      pack(pcall(P.gsub, s, p, tbl)), s, p)\n"
    "  cmp('gsub fn', pack(pcall(string.gsub, s, p, fn)), pack(pcall(P.gsub, s, p, fn)), s, p)\n"
    "end\n"
    "return bad, matched, errors\n";

TEST(identical_to_the_string_library_over_a_generated_corpus)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    CHECK(luaL_loadstring(L, DIFF_SCRIPT) == LUA_OK);
    lua_pattern_push_lib(L, NULL);
    lua_pushinteger(L, 30000);
    lua_getglobal(L, "math");
    lua_getfield(L, -1, "randomseed");
    lua_pushinteger(L, 20240508);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    int rc = lua_pcall(L, 2, 3, 0);
    if (rc != LUA_OK) fprintf(stderr, "script: %s\n", lua_tostring(L, -1));
    CHECK(rc == LUA_OK);
    if (rc == LUA_OK) {
        long long bad = lua_tointeger(L, -3), matched = lua_tointeger(L, -2),
                  errors = lua_tointeger(L, -1);
        fprintf(stderr, "  210000 comparisons: %lld mismatches, %lld matches, %lld errors\n",
                bad, matched, errors);
        CHECK_EQ_INT(bad, 0);
        /* The corpus must exercise both outcomes, or the comparison proves little. */
        CHECK(matched > 20000);
        CHECK(errors > 5000);
    }
    lua_close(L);
}

/* Hand-picked cases the generator rarely builds. */
TEST(identical_on_hand_picked_cases)
{
    static const char *const cases[][2] = {
        {"THE (quick) fox", "%((%a+)%)"},
        {"key = value", "^%s*([^=]-)%s*=%s*(.-)%s*$"},
        {"hello world from Lua", "(%w+)"},
        {"  x", "^%s*(.-)%s*$"},
        {"abc", "()b()"},
        {"f(a(b)c)d", "%b()"},
        {"THE (quick) fox", "%f[%a]%a+"},
        {"aaa", "a-b"},
        {"aaab", "a-b"},
        {"x=1&y=2&x=3", "([^&=]+)=([^&=]*)"},
        {"", ""},
        {"abc", ""},
        {"a.b", "%."},
        {"hello", "(h)(e)(l)(l)(o)"},
        {"abcabc", "(abc)%1"},
        {"ab", "(a)(%1)"},
    };
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_pattern_push_lib(L, NULL);
    lua_setglobal(L, "P");
    static const char *const cmp =
        "local s, p = ...\n"
        "local function all(f, ...) local t = table.pack(pcall(f, ...))\n"
        "  for i = 1, t.n do t[i] = tostring(t[i]) end return table.concat(t, '|') end\n"
        "local function gm(f) local o = {}\n"
        "  for a, b in f(s, p) do o[#o+1] = tostring(a)..tostring(b) end\n"
        "  return table.concat(o, ';') end\n"
        "for _, name in ipairs { 'find', 'match', 'gsub' } do\n"
        "  local a = all(string[name], s, p, name == 'gsub' and '[%0]' or nil)\n"
        "  local b = all(P[name], s, p, name == 'gsub' and '[%0]' or nil)\n"
        "  if a ~= b then return name .. ': ' .. a .. ' ~= ' .. b end\n"
        "end\n"
        "if all(gm, string.gmatch) ~= all(gm, P.gmatch) then return 'gmatch' end\n"
        "return nil\n";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(luaL_loadstring(L, cmp) == LUA_OK);
        lua_pushstring(L, cases[i][0]);
        lua_pushstring(L, cases[i][1]);
        CHECK(lua_pcall(L, 2, 1, 0) == LUA_OK);
        if (!lua_isnil(L, -1)) {
            fprintf(stderr, "case %zu (%s / %s): %s\n", i, cases[i][0], cases[i][1],
                    lua_tostring(L, -1));
            CHECK(0);
        }
        lua_pop(L, 1);
    }
    lua_close(L);
}

struct counting_budget {
    struct lua_pattern_budget b;
    long long checks;
    long long limit; /* checks before raising */
};

static void raise_after(lua_State *L, struct lua_pattern_budget *b)
{
    struct counting_budget *cb = (struct counting_budget *)b;
    if (++cb->checks >= cb->limit) luaL_error(L, "pattern budget exhausted");
    b->steps_left = 1000;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The reproduction of issue 8, item 10: exponential backtracking stops at the budget. */
TEST(budget_stops_backtracking_and_long_plain_finds)
{
    static const char *const hostile[] = {
        "return P.find(string.rep('a', 30000), string.rep('a*', 30) .. 'b')",
        "return P.match('x' .. string.rep(' ', 8000) .. 'y', '^%s*(.-)%s*$')",
        "return P.gsub(string.rep('a', 30000), string.rep('a-', 20) .. 'b', '')",
        "for x in P.gmatch(string.rep('a', 30000), string.rep('a?', 25) .. 'b') do end",
        "return P.find(string.rep('a', 1000000), string.rep('a', 500000) .. 'b', 1, true)",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        lua_State *L = luaL_newstate();
        luaL_openlibs(L);
        struct counting_budget cb = {{1000, raise_after, NULL}, 0, 1000}; /* 1M steps */
        lua_pattern_push_lib(L, &cb.b);
        lua_setglobal(L, "P");
        double t0 = now_s();
        CHECK(luaL_loadstring(L, hostile[i]) == LUA_OK);
        int rc = lua_pcall(L, 0, 0, 0);
        double took = now_s() - t0;
        CHECK(rc != LUA_OK);
        if (rc != LUA_OK) CHECK(strstr(lua_tostring(L, -1), "pattern budget exhausted") != NULL);
        fprintf(stderr, "  hostile %zu stopped after %.1f ms\n", i, took * 1000);
        CHECK(took < 2.0);
        lua_close(L);
    }
}

/* Ordinary work fits a small budget: the cost is linear in the subject. */
TEST(linear_patterns_cost_linear_steps)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    struct counting_budget cb = {{1000, raise_after, NULL}, 0, 1LL << 40};
    lua_pattern_push_lib(L, &cb.b);
    lua_setglobal(L, "P");
    CHECK(luaL_dostring(L, "local s = string.rep('name=value; ', 1000)\n"
                           "local n = 0\n"
                           "for k, v in P.gmatch(s, '([^=;]+)=([^;]*)') do n = n + 1 end\n"
                           "assert(n == 1000)") == LUA_OK);
    /* 13,000 bytes: well under 100 steps per byte. */
    CHECK(cb.checks * 1000 < 13000LL * 100);
    lua_close(L);
}

int main(void)
{
    RUN(identical_to_the_string_library_over_a_generated_corpus);
    RUN(identical_on_hand_picked_cases);
    RUN(budget_stops_backtracking_and_long_plain_finds);
    RUN(linear_patterns_cost_linear_steps);
    return TEST_SUMMARY();
}
