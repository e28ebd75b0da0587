/* fuzz_admin_json - the purge API's JSON body reader (admin_json, on jansson).
 *
 * Calls admin_json_get_string, the function admin_server uses on every body,
 * for each field name the API reads, with a buffer one byte short of the
 * longest value (so truncation is exercised) and with the API's own bound.
 * Checks: a value found is NUL-terminated within its buffer at the copied
 * length; an error carries printable ASCII only and a position inside the
 * input; a found value is valid UTF-8 (jansson's promise, which the admin
 * answer that echoes it depends on) and written back as valid JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin_json.h"
#include "admin_server.h"

static void check_error(const struct admin_json_error *err, size_t size)
{
    for (const char *p = err->text; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) abort();
    if (err->position > size) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const FIELDS[] = {"key", "prefix", "tag", "url"};
    static char out[ADMIN_MAX_VALUE + 1];
    static const size_t CAPS[] = {1, 8, sizeof out};
    for (size_t i = 0; i < sizeof FIELDS / sizeof FIELDS[0]; i++) {
        for (size_t c = 0; c < sizeof CAPS / sizeof CAPS[0]; c++) {
            struct admin_json_error err;
            size_t len = 0;
            memset(out, 'x', sizeof out);
            enum admin_json_result r = admin_json_get_string((const char *)data, size, FIELDS[i],
                                                             out, CAPS[c], &len, &err);
            if (r == ADMIN_JSON_INVALID || r == ADMIN_JSON_DUPLICATE) check_error(&err, size);
            if (r != ADMIN_JSON_OK) continue;
            size_t copied = len < CAPS[c] - 1 ? len : CAPS[c] - 1;
            if (out[copied] != '\0') abort();
            if (len >= CAPS[c]) continue;
            if (!admin_json_is_utf8(out, len)) abort();
            if (memchr(out, '\0', len) != NULL) continue; /* "\u0000": the API refuses it */
            size_t n = 0;
            char *text = admin_json_strings(&n, "purged", FIELDS[i], FIELDS[i], out,
                                            (const char *)NULL);
            if (text == NULL || n == 0 || text[n - 1] != '\n') abort();
            free(text);
        }
    }
    return 0;
}
