/* fuzz_lua_request - the Lua library's request parsing (cookies, query, path
 * params, placeholders) through lua_host_decide, as a worker runs it.
 *
 * One host is built from tests/fuzz/policies and the repository's lua/
 * library.  The input is split on '\n' into path selector, query, Cookie
 * value and X-K value.  A decision must come back (a policy error is an
 * answer too); a CACHE decision carries a key. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_host.h"

static struct lua_host *host;

static void setup(void)
{
    struct policy_set *set = NULL;
    char err[512];
    struct lua_limits lim = {.memory_bytes = 32u << 20, .instructions = 200000};
    if (policy_set_load(FUZZ_DIR "/policies", CACHEGW_SOURCE_DIR "/lua", &lim, &set, err,
                        sizeof err) != 0) {
        fprintf(stderr, "fuzz_lua_request: policies: %s\n", err);
        abort();
    }
    if (lua_host_create(set, &lim, &host, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_lua_request: host: %s\n", err);
        abort();
    }
    policy_set_unref(set);
}

/* Next '\n'-separated part of [*p, end) as a NUL-terminated string in out. */
static void next_part(const char **p, const char *end, char *out, size_t cap)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *e = nl ? nl : end;
    size_t len = (size_t)(e - *p) < cap - 1 ? (size_t)(e - *p) : cap - 1;
    memcpy(out, *p, len);
    out[len] = '\0';
    *p = nl ? nl + 1 : end;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (host == NULL) setup();
    if (size > 8192) return 0;
    char sel[64], query[8192], cookie[8192], xk[1024], path[128];
    const char *p = (const char *)data, *end = p + size;
    next_part(&p, end, sel, sizeof sel);
    next_part(&p, end, query, sizeof query);
    next_part(&p, end, cookie, sizeof cookie);
    next_part(&p, end, xk, sizeof xk);
    static const char *const PREFIX[] = {"/c/", "/q/", "/s/", "/none/"};
    size_t which = sel[0] ? (unsigned char)sel[0] % 4 : 0;
    snprintf(path, sizeof path, "%s%s", PREFIX[which], sel[0] ? sel + 1 : "");
    if (strchr(path + 1, '/') == NULL && path[strlen(path) - 1] == '/') strcat(path, "1");

    struct http_header h[3];
    size_t n = 0;
    if (cookie[0]) h[n++] = (struct http_header){"cookie", cookie};
    if (xk[0]) h[n++] = (struct http_header){"x-k", xk};
    if (which == 2) h[n++] = (struct http_header){"authorization", "Bearer fuzz"};
    struct policy_request req = {.method = "GET",
                                 .path = path,
                                 .query = query[0] ? query : NULL,
                                 .headers = h,
                                 .n_headers = n,
                                 .client_ip = "127.0.0.1"};
    struct policy_decision d;
    (void)lua_host_decide(host, &req, &d);
    if (d.action == POLICY_CACHE && d.key == NULL) abort();
    policy_decision_free(&d);
    return 0;
}
