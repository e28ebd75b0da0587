/*
 * dns_shim - an LD_PRELOAD getaddrinfo for test_upstreams.py's DNS test (issue 13: host names
 * of upstream instances are resolved again after dns_ttl).
 *
 * A name listed in the file named by $CACHEGW_TEST_HOSTS ("name address" per line, read on
 * every call) resolves to that address; every other name goes to the real getaddrinfo.  The
 * test rewrites the file while the gateway runs, as a DNS change would, without touching the
 * machine's resolver.  libcurl's threaded resolver calls getaddrinfo, so it sees the shim.
 * Each lookup of a listed name is appended to "$CACHEGW_TEST_HOSTS.lookups".
 *
 * Built by the test itself (cc -shared -fPIC); not part of the gateway.
 * Thread-safety: no state of its own; the files are opened per call.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef int (*dns_shim_gai_fn)(const char *, const char *, const struct addrinfo *,
                               struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    dns_shim_gai_fn real = (dns_shim_gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    const char *path = getenv("CACHEGW_TEST_HOSTS");
    char addr[64] = "";
    FILE *f = node != NULL && path != NULL ? fopen(path, "r") : NULL;
    if (f != NULL) {
        char name[256], a[64];
        while (fscanf(f, "%255s %63s", name, a) == 2)
            if (strcasecmp(name, node) == 0) snprintf(addr, sizeof addr, "%s", a);
        fclose(f);
    }
    if (addr[0] != '\0') {
        char log_path[4096];
        snprintf(log_path, sizeof log_path, "%s.lookups", path);
        FILE *log = fopen(log_path, "a");
        if (log != NULL) {
            fprintf(log, "%s %s\n", node, addr);
            fclose(log);
        }
        return real(addr, service, hints, res);
    }
    return real(node, service, hints, res);
}
