/* fuzz_policy_load - loading a policy file: compile, validate and run its
 * top level in the sandbox (what start-up, SIGHUP and --check do).
 *
 * The input is written as the only policy file of a private directory and
 * loaded with the repository's lua/ library under small limits.  Loading
 * either succeeds or fails with a message; it must not crash, leak or escape
 * its memory and instruction limits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lua_host.h"

static char dir[64], file[96];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384) return 0;
    if (dir[0] == '\0') {
        snprintf(dir, sizeof dir, "/tmp/cachegw-fuzz-policies-%d", (int)getpid());
        snprintf(file, sizeof file, "%s/p.lua", dir);
        mkdir(dir, 0700);
    }
    FILE *f = fopen(file, "wb");
    if (f == NULL) abort();
    fwrite(data, 1, size, f);
    fclose(f);
    struct policy_set *set = NULL;
    char err[512];
    struct lua_limits lim = {.memory_bytes = 16u << 20, .instructions = 20000};
    int rc = policy_set_load(dir, CACHEGW_SOURCE_DIR "/lua", &lim, &set, err, sizeof err);
    if (rc == 0) {
        struct lua_host *host = NULL;
        if (lua_host_create(set, &lim, &host, err, sizeof err) == 0) {
            struct policy_request req = {.method = "GET", .path = "/x/1", .query = "a=1"};
            struct policy_decision d;
            (void)lua_host_decide(host, &req, &d);
            policy_decision_free(&d);
            lua_host_destroy(host);
        }
        policy_set_unref(set);
    } else if (err[0] == '\0') {
        abort(); /* every failure says why */
    }
    return 0;
}
