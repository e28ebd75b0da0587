/* fuzz_redis_url - REDIS_URL parsing and redaction.
 *
 * Besides memory safety it checks the module's promises: a successful parse
 * gives a host, a port in range and a database >= 0, and the redacted form of
 * a URL with a password carries the "***" mark. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *url = malloc(size + 1);
    if (url == NULL) return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    struct redis_url u;
    char err[256];
    char red[3 * 4096 + 64]; /* room for any input's redaction: a cut form proves nothing */
    int rc = redis_url_parse(url, &u, err, sizeof err);
    redis_url_redacted(url, red, sizeof red);
    if (rc == 0) {
        if (u.host == NULL || u.port < 1 || u.port > 65535 || u.db < 0) abort();
        /* A URL with a password is redacted: it carries the "***" mark.
         * (Whether some copy of the password text survives cannot be told
         * from outside: user names, hosts and percent-decoding may spell it
         * too; test_redis_url checks exact redactions.) */
        if (u.password && strstr(red, "***") == NULL) abort();
    }
    redis_url_free(&u);
    free(url);
    return 0;
}
