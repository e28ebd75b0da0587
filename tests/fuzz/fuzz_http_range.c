/* fuzz_http_range - Range, If-Range and Content-Range (http_range.c).
 *
 * Input: a representation length (first 8 bytes), then the Range value, a NUL, the
 * If-Range value.  Besides memory safety it checks the module's promises: a single
 * range lies inside the representation (first <= last < len), Content-Range always fits
 * a 96-byte buffer, and an absent Range is the whole response. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8 || size > 8192) return 0;
    uint64_t len = 0;
    memcpy(&len, data, 8);
    len %= (uint64_t)1 << 40;
    char *s = malloc(size - 8 + 1);
    if (s == NULL) return 0;
    memcpy(s, data + 8, size - 8);
    s[size - 8] = '\0';
    const char *if_range = s + strlen(s) + 1 <= s + (size - 8) ? s + strlen(s) + 1 : NULL;
    struct http_range r;
    enum http_range_kind k = http_range_parse(s, len, &r);
    char cr[96];
    if (k == HTTP_RANGE_SINGLE) {
        if (!(r.first <= r.last && r.last < len)) abort();
        if (http_range_content_range(cr, sizeof cr, &r, len) != 0) abort();
    } else if (k == HTTP_RANGE_UNSATISFIABLE) {
        if (http_range_content_range(cr, sizeof cr, NULL, len) != 0) abort();
    }
    if (http_range_parse(NULL, len, &r) != HTTP_RANGE_FULL) abort();
    (void)http_range_if_range(if_range, "\"etag\"", "Tue, 14 Nov 2023 22:13:20 GMT");
    (void)http_range_if_range(s, if_range, if_range);
    free(s);
    return 0;
}
