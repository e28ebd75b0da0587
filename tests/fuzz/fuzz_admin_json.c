/* fuzz_admin_json - the purge API's JSON body parser.
 *
 * The parser (json_get_field and its scanner) is static in admin_server.c and
 * the only public entry point is a whole HTTP listener, so this harness
 * includes the source to reach it; the two public functions are renamed so
 * they cannot clash with the library's copy.  Checks: a field found is
 * NUL-terminated within its buffer and its reported length matches. */
#define admin_server_start fuzz_admin_server_start_unused
#define admin_server_stop fuzz_admin_server_stop_unused
#include "../../src/admin_server.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const FIELDS[] = {"key", "prefix", "tag", "url"};
    char out[ADMIN_MAX_VALUE + 1];
    for (size_t i = 0; i < sizeof FIELDS / sizeof FIELDS[0]; i++) {
        struct json_scan s;
        size_t len = 0;
        enum field_result r =
            json_get_field((const char *)data, size, FIELDS[i], out, sizeof out, &len, &s);
        if (r == FIELD_OK && (len >= sizeof out || out[len] != '\0')) abort();
    }
    return 0;
}
