/* lua_pattern.c - see lua_pattern.h. */
#include "lua_pattern.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stddef.h>
#include <string.h>

#define PAT_ESC '%'
#define PAT_SPECIALS "^$*+?.([%-"
#define PAT_MAX_CAPTURES 32 /* LUA_MAXCAPTURES */
#define PAT_MAX_DEPTH 200   /* MAXCCALLS: nesting of the recursive matcher */
#define CAP_OPEN (-1)       /* capture started, not closed yet */
#define CAP_POS (-2)        /* position capture "()" */

struct capture {
    const char *at;
    ptrdiff_t len; /* CAP_OPEN, CAP_POS or a length */
};

struct mstate {
    const char *src, *src_end; /* subject */
    const char *pat_end;
    lua_State *L;
    struct lua_pattern_budget *budget;
    int depth_left;
    int level; /* captures in use */
    struct capture cap[PAT_MAX_CAPTURES];
};

/* Charges n units of work; past the budget its check function decides. */
static void charge(struct mstate *ms, int64_t n)
{
    struct lua_pattern_budget *b = ms->budget;
    if (b == NULL) return;
    b->steps_left -= n;
    if (b->steps_left < 0) {
        if (b->check != NULL)
            b->check(ms->L, b);
        else
            b->steps_left = INT64_MAX / 2;
    }
}

static const char *do_match(struct mstate *ms, const char *s, const char *p);

static int class_has(int c, int cl)
{
    int r;
    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    case 'z': r = c == 0; break; /* deprecated but still accepted by Lua 5.4 */
    default: return cl == c; /* %. and friends: the character itself */
    }
    if (isupper(cl)) r = !r;
    return r;
}

/* Does c belong to the set [p .. end], where p points at '[' and end at the ']'? */
static int set_has(int c, const char *p, const char *end)
{
    int yes = 1;
    if (p[1] == '^') {
        yes = 0;
        p++;
    }
    while (++p < end) {
        if (*p == PAT_ESC) {
            p++;
            if (class_has(c, (unsigned char)*p)) return yes;
        } else if (p[1] == '-' && p + 2 < end) {
            p += 2;
            if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p) return yes;
        } else if ((unsigned char)*p == c) {
            return yes;
        }
    }
    return !yes;
}

/* The end of the single-character class starting at p. */
static const char *item_end(struct mstate *ms, const char *p)
{
    switch (*p++) {
    case PAT_ESC:
        if (p == ms->pat_end) luaL_error(ms->L, "malformed pattern (ends with '%%')");
        return p + 1;
    case '[':
        if (*p == '^') p++;
        do {
            if (p == ms->pat_end) luaL_error(ms->L, "malformed pattern (missing ']')");
            if (*(p++) == PAT_ESC && p < ms->pat_end) p++; /* "%]" */
        } while (*p != ']');
        return p + 1;
    default:
        return p;
    }
}

static int single(struct mstate *ms, const char *s, const char *p, const char *ep)
{
    if (s >= ms->src_end) return 0;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case PAT_ESC: return class_has(c, (unsigned char)p[1]);
    case '[': return set_has(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

static const char *match_balance(struct mstate *ms, const char *s, const char *p)
{
    if (p >= ms->pat_end - 1)
        luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
    if (*s != *p) return NULL;
    int open = *p, close = p[1], depth = 1;
    const char *start = s;
    const char *res = NULL;
    while (++s < ms->src_end) {
        if (*s == close) {
            if (--depth == 0) {
                res = s + 1;
                break;
            }
        } else if (*s == open) {
            depth++;
        }
    }
    charge(ms, s - start);
    return res;
}

static const char *expand_max(struct mstate *ms, const char *s, const char *p, const char *ep)
{
    ptrdiff_t i = 0;
    while (single(ms, s + i, p, ep)) i++;
    charge(ms, i);
    for (; i >= 0; i--) {
        const char *r = do_match(ms, s + i, ep + 1);
        if (r != NULL) return r;
    }
    return NULL;
}

static const char *expand_min(struct mstate *ms, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = do_match(ms, s, ep + 1);
        if (r != NULL) return r;
        if (!single(ms, s, p, ep)) return NULL;
        s++;
    }
}

static const char *open_capture(struct mstate *ms, const char *s, const char *p, ptrdiff_t kind)
{
    if (ms->level >= PAT_MAX_CAPTURES) luaL_error(ms->L, "too many captures");
    ms->cap[ms->level].at = s;
    ms->cap[ms->level].len = kind;
    ms->level++;
    const char *r = do_match(ms, s, p);
    if (r == NULL) ms->level--;
    return r;
}

static const char *close_capture(struct mstate *ms, const char *s, const char *p)
{
    int l = ms->level - 1;
    while (l >= 0 && ms->cap[l].len != CAP_OPEN) l--;
    if (l < 0) luaL_error(ms->L, "invalid pattern capture");
    ms->cap[l].len = s - ms->cap[l].at;
    const char *r = do_match(ms, s, p);
    if (r == NULL) ms->cap[l].len = CAP_OPEN;
    return r;
}

static int capture_index(struct mstate *ms, int digit)
{
    int l = digit - '1';
    if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_OPEN)
        return luaL_error(ms->L, "invalid capture index %%%d", l + 1);
    return l;
}

static const char *back_reference(struct mstate *ms, const char *s, int digit)
{
    int l = capture_index(ms, digit);
    size_t len = (size_t)ms->cap[l].len; /* a position capture becomes huge: no match */
    charge(ms, len < (size_t)(ms->src_end - s) ? (int64_t)len : ms->src_end - s);
    if ((size_t)(ms->src_end - s) >= len && memcmp(ms->cap[l].at, s, len) == 0)
        return s + len;
    return NULL;
}

static const char *do_match(struct mstate *ms, const char *s, const char *p)
{
    if (ms->depth_left-- == 0) luaL_error(ms->L, "pattern too complex");
    charge(ms, 1);
again:
    if (p != ms->pat_end) {
        switch (*p) {
        case '(':
            if (p[1] == ')')
                s = open_capture(ms, s, p + 2, CAP_POS);
            else
                s = open_capture(ms, s, p + 1, CAP_OPEN);
            break;
        case ')':
            s = close_capture(ms, s, p + 1);
            break;
        case '$':
            if (p + 1 != ms->pat_end) goto single_item;
            s = s == ms->src_end ? s : NULL;
            break;
        case PAT_ESC:
            switch (p[1]) {
            case 'b':
                s = match_balance(ms, s, p + 2);
                if (s != NULL) {
                    p += 4;
                    goto again;
                }
                break;
            case 'f': {
                p += 2;
                if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
                const char *ep = item_end(ms, p);
                int prev = s == ms->src ? '\0' : (unsigned char)s[-1];
                /* At the end of the subject *s is the terminating NUL of the Lua string. */
                if (!set_has(prev, p, ep - 1) && set_has((unsigned char)*s, p, ep - 1)) {
                    p = ep;
                    goto again;
                }
                s = NULL;
                break;
            }
            case '0': case '1': case '2': case '3': case '4':
            case '5': case '6': case '7': case '8': case '9':
                s = back_reference(ms, s, (unsigned char)p[1]);
                if (s != NULL) {
                    p += 2;
                    goto again;
                }
                break;
            default:
                goto single_item;
            }
            break;
        default:
        single_item: {
            const char *ep = item_end(ms, p);
            if (!single(ms, s, p, ep)) {
                if (*ep == '*' || *ep == '?' || *ep == '-') {
                    p = ep + 1; /* zero repetitions are fine */
                    goto again;
                }
                s = NULL;
                break;
            }
            switch (*ep) {
            case '?': {
                const char *r = do_match(ms, s + 1, ep + 1);
                if (r != NULL) {
                    s = r;
                } else {
                    p = ep + 1;
                    goto again;
                }
                break;
            }
            case '+': s = expand_max(ms, s + 1, p, ep); break;
            case '*': s = expand_max(ms, s, p, ep); break;
            case '-': s = expand_min(ms, s, p, ep); break;
            default:
                s++;
                p = ep;
                charge(ms, 1);
                goto again;
            }
            break;
        }
        }
    }
    ms->depth_left++;
    return s;
}

/* ---- the library functions ------------------------------------------------------------- */

static struct lua_pattern_budget *budget_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

static void state_init(struct mstate *ms, lua_State *L, struct lua_pattern_budget *b,
                       const char *s, size_t ls, const char *p, size_t lp)
{
    ms->L = L;
    ms->budget = b;
    ms->src = s;
    ms->src_end = s + ls;
    ms->pat_end = p + lp;
    ms->level = 0;
    ms->depth_left = PAT_MAX_DEPTH;
}

static void state_reset(struct mstate *ms)
{
    ms->level = 0;
    ms->depth_left = PAT_MAX_DEPTH;
}

/* Capture i as a string or position, or the whole match (s .. e) when there are none. */
static size_t capture_get(struct mstate *ms, int i, const char *s, const char *e,
                          const char **out)
{
    if (i >= ms->level) {
        if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
        *out = s;
        return (size_t)(e - s);
    }
    ptrdiff_t len = ms->cap[i].len;
    *out = ms->cap[i].at;
    if (len == CAP_OPEN) luaL_error(ms->L, "unfinished capture");
    if (len == CAP_POS) lua_pushinteger(ms->L, (ms->cap[i].at - ms->src) + 1);
    return (size_t)len;
}

static void push_capture(struct mstate *ms, int i, const char *s, const char *e)
{
    const char *c;
    size_t len = capture_get(ms, i, s, e, &c);
    if ((ptrdiff_t)len != CAP_POS) lua_pushlstring(ms->L, c, len);
}

static int push_captures(struct mstate *ms, const char *s, const char *e)
{
    int n = (ms->level == 0 && s != NULL) ? 1 : ms->level;
    luaL_checkstack(ms->L, n, "too many captures");
    for (int i = 0; i < n; i++) push_capture(ms, i, s, e);
    return n;
}

/* Lua 5.4's string position rules: negative counts from the end, 0 is 1. */
static size_t start_pos(lua_Integer pos, size_t len)
{
    if (pos > 0) return (size_t)pos;
    if (pos == 0) return 1;
    if (pos < -(lua_Integer)len) return 1;
    return len + (size_t)pos + 1;
}

static int has_specials(const char *p, size_t lp)
{
    size_t off = 0;
    do {
        if (strpbrk(p + off, PAT_SPECIALS)) return 1;
        off += strlen(p + off) + 1; /* past an embedded NUL */
    } while (off <= lp);
    return 0;
}

/* Plain substring search, charged by the bytes compared. */
static const char *plain_find(struct mstate *ms, const char *s, size_t ls, const char *p,
                              size_t lp)
{
    if (lp == 0) return s;
    if (lp > ls) return NULL;
    const char *end = s + (ls - lp) + 1;
    while (s < end) {
        const char *hit = memchr(s, *p, (size_t)(end - s));
        charge(ms, hit ? hit - s + 1 : end - s);
        if (hit == NULL) return NULL;
        charge(ms, (int64_t)lp);
        if (memcmp(hit + 1, p + 1, lp - 1) == 0) return hit;
        s = hit + 1;
    }
    return NULL;
}

static int find_or_match(lua_State *L, int find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    struct mstate ms;
    if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
        state_init(&ms, L, budget_of(L), s, ls, p, lp);
        const char *hit = plain_find(&ms, s + init, ls - init, p, lp);
        if (hit != NULL) {
            lua_pushinteger(L, (hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)((size_t)(hit - s) + lp));
            return 2;
        }
    } else {
        const char *s1 = s + init;
        int anchor = *p == '^';
        if (anchor) {
            p++;
            lp--;
        }
        state_init(&ms, L, budget_of(L), s, ls, p, lp);
        do {
            state_reset(&ms);
            const char *e = do_match(&ms, s1, p);
            if (e != NULL) {
                if (find) {
                    lua_pushinteger(L, (s1 - s) + 1);
                    lua_pushinteger(L, e - s);
                    return push_captures(&ms, NULL, NULL) + 2;
                }
                return push_captures(&ms, s1, e);
            }
        } while (s1++ < ms.src_end && !anchor);
    }
    luaL_pushfail(L);
    return 1;
}

static int pat_find(lua_State *L) { return find_or_match(L, 1); }
static int pat_match(lua_State *L) { return find_or_match(L, 0); }

struct gmatch_state {
    const char *next;
    const char *pat;
    const char *last; /* end of the last match: an empty match there is skipped */
    struct mstate ms;
};

static int gmatch_step(lua_State *L)
{
    struct gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    g->ms.L = L;
    g->ms.budget = lua_touserdata(L, lua_upvalueindex(4));
    for (const char *s = g->next; s <= g->ms.src_end; s++) {
        state_reset(&g->ms);
        const char *e = do_match(&g->ms, s, g->pat);
        if (e != NULL && e != g->last) {
            g->next = g->last = e;
            return push_captures(&g->ms, s, e);
        }
    }
    return 0;
}

static int pat_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    struct lua_pattern_budget *b = budget_of(L);
    lua_settop(L, 2); /* the strings stay alive as upvalues of the iterator */
    struct gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
    if (init > ls) init = ls + 1;
    state_init(&g->ms, L, b, s, ls, p, lp);
    g->next = s + init;
    g->pat = p;
    g->last = NULL;
    lua_pushlightuserdata(L, b);
    lua_pushcclosure(L, gmatch_step, 4);
    return 1;
}

/* Appends the replacement string (argument 3) with %0-%9 and %% expanded. */
static void add_replacement(struct mstate *ms, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = ms->L;
    size_t l;
    const char *r = lua_tolstring(L, 3, &l);
    const char *p;
    charge(ms, (int64_t)l);
    while ((p = memchr(r, PAT_ESC, l)) != NULL) {
        luaL_addlstring(b, r, (size_t)(p - r));
        p++; /* at worst the terminating NUL */
        if (*p == PAT_ESC) {
            luaL_addchar(b, *p);
        } else if (*p == '0') {
            luaL_addlstring(b, s, (size_t)(e - s));
        } else if (isdigit((unsigned char)*p)) {
            const char *c;
            size_t len = capture_get(ms, *p - '1', s, e, &c);
            if ((ptrdiff_t)len == CAP_POS)
                luaL_addvalue(b);
            else
                luaL_addlstring(b, c, len);
        } else {
            luaL_error(L, "invalid use of '%c' in replacement string", PAT_ESC);
        }
        l -= (size_t)(p + 1 - r);
        r = p + 1;
    }
    luaL_addlstring(b, r, l);
}

/* Adds one match's replacement; returns whether the text changed. */
static int add_value(struct mstate *ms, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = ms->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(ms, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(ms, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_replacement(ms, b, s, e);
        return 1;
    }
    if (!lua_toboolean(L, -1)) { /* nil or false: keep the original text */
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return 0;
    }
    if (!lua_isstring(L, -1))
        return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return 1;
}

static int pat_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    const char *last = NULL;
    int tr = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    int anchor = *p == '^';
    lua_Integer n = 0;
    int changed = 0;
    luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
                            tr == LUA_TTABLE,
                     3, "string/function/table");
    struct mstate ms;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (anchor) {
        p++;
        lp--;
    }
    state_init(&ms, L, budget_of(L), src, ls, p, lp);
    while (n < max) {
        state_reset(&ms);
        const char *e = do_match(&ms, src, p);
        if (e != NULL && e != last) {
            n++;
            changed = add_value(&ms, &b, src, e, tr) | changed;
            src = last = e;
        } else if (src < ms.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor) break;
    }
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

static const luaL_Reg pattern_funcs[] = {
    {"find", pat_find}, {"match", pat_match}, {"gmatch", pat_gmatch}, {"gsub", pat_gsub},
    {NULL, NULL},
};

void lua_pattern_install(lua_State *L, struct lua_pattern_budget *budget)
{
    lua_pushlightuserdata(L, budget);
    luaL_setfuncs(L, pattern_funcs, 1);
}

void lua_pattern_push_lib(lua_State *L, struct lua_pattern_budget *budget)
{
    lua_createtable(L, 0, 4);
    lua_pattern_install(L, budget);
}
