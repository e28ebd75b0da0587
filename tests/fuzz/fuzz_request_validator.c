/* fuzz_request_validator - the request gate (src/http/request_validator.h).
 *
 * The input is a request head as libmicrohttpd splits it: the first line is
 * "METHOD TARGET VERSION" (split on the first two spaces), then one
 * "name:value" field per line.  Checks the header's promises: a verdict is 0
 * or one of 400/414/431/501 with a reason, and an accepted target has no
 * control byte, no byte >= 0x80, no space and no '#'; accepted field names
 * are tokens and values field values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request_validator.h"

enum { MAX_FIELDS = 128 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384) return 0;
    char *buf = malloc(size + 1);
    if (buf == NULL) return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *line_end = strchr(buf, '\n');
    if (line_end) *line_end = '\0';
    char *method = buf, *target = "", *version = "";
    char *sp = strchr(method, ' ');
    if (sp) {
        *sp = '\0';
        target = sp + 1;
        sp = strchr(target, ' ');
        if (sp) {
            *sp = '\0';
            version = sp + 1;
        }
    }
    struct http_header fields[MAX_FIELDS];
    size_t n = 0;
    char *p = line_end ? line_end + 1 : NULL;
    while (p && *p && n < MAX_FIELDS) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        char *colon = strchr(p, ':');
        if (colon) {
            *colon = '\0';
            fields[n++] = (struct http_header){p, colon + 1};
        }
        p = nl ? nl + 1 : NULL;
    }
    const struct request_limits limits = {.max_target_bytes = 8192, .max_query_params = 100,
                                          .max_header_bytes = 16384, .max_header_fields = 100};
    struct request_verdict v = {0};
    int rc = request_validate(method, target, version, fields, n, &limits, &v);
    if (rc != v.status) abort();
    if (rc != 0 && rc != 400 && rc != 414 && rc != 431 && rc != 501) abort();
    if (rc != 0 && v.reason == NULL) abort();
    if (rc == 0) {
        for (const unsigned char *t = (const unsigned char *)target; *t; t++)
            if (*t <= 0x20 || *t >= 0x7f || *t == '#') abort();
        for (size_t i = 0; i < n; i++) {
            if (!request_is_token(fields[i].name, strlen(fields[i].name))) abort();
            if (!request_is_field_value(fields[i].value, strlen(fields[i].value))) abort();
        }
    }
    (void)request_is_token((const char *)data, size);
    (void)request_is_field_value((const char *)data, size);
    free(buf);
    return 0;
}
