/* cache_key.c - see cache_key.h. */
#include "cache_key.h"

#include <stdlib.h>

#include <string.h>

static const char VARY_MARK[] = CACHE_KEY_SEP_STR "vary" CACHE_KEY_SEP_STR;
enum { VARY_MARK_LEN = sizeof VARY_MARK - 1 };

bool cache_key_is_valid(const char *key, size_t len)
{
    if (key == NULL || len == 0) return false;
    for (size_t i = 0; i < len; i++)
        if (key[i] == CACHE_KEY_SEP || key[i] == '\0') return false;
    return true;
}

size_t cache_key_base_len(const char *key, size_t len)
{
    const char *sep = memchr(key, CACHE_KEY_SEP, len);
    return sep ? (size_t)(sep - key) : len;
}

bool cache_key_is_variant(const char *key, size_t len)
{
    size_t base = cache_key_base_len(key, len);
    return base > 0 && base < len && cache_key_is_valid(key, base) &&
           len - base >= VARY_MARK_LEN && memcmp(key + base, VARY_MARK, VARY_MARK_LEN) == 0;
}

/* Appends s[0..len) to out at *off, percent-escaping the bytes that could
 * end an element early or forge a separator.  lower folds ASCII letters (for
 * field names).  Returns 0, or -1 when it does not fit (room for the NUL
 * kept). */
static int append_escaped(char *out, size_t cap, size_t *off, const char *s, size_t len,
                          bool lower)
{
    static const char HEX[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '%' || c == '=') {
            if (cap - *off <= 3) return -1;
            out[(*off)++] = '%';
            out[(*off)++] = HEX[c >> 4];
            out[(*off)++] = HEX[c & 15];
        } else {
            if (cap - *off <= 1) return -1;
            out[(*off)++] = (char)(lower && c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
    }
    out[*off] = '\0';
    return 0;
}

static int append_raw(char *out, size_t cap, size_t *off, const char *s, size_t len)
{
    if (cap - *off <= len) return -1;
    memcpy(out + *off, s, len);
    *off += len;
    out[*off] = '\0';
    return 0;
}

int cache_key_variant_prefix(const char *base, char *out, size_t cap)
{
    size_t off = 0, blen = strlen(base);
    if (cap == 0 || !cache_key_is_valid(base, blen)) return -1;
    if (append_raw(out, cap, &off, base, blen) != 0 ||
        append_raw(out, cap, &off, VARY_MARK, VARY_MARK_LEN) != 0)
        return -1;
    return (int)off;
}

int cache_key_variant(const char *base, const char *vary, const struct header_list *req,
                      char *out, size_t cap)
{
    int n = cache_key_variant_prefix(base, out, cap);
    if (n < 0) return -1;
    size_t off = (size_t)n;
    bool first = true;
    char name[128];
    char value[CACHE_KEY_VARIANT_MAX];
    const char *p = vary;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t') p++;
        size_t len = (size_t)(p - start);
        if (len == 0) continue;
        /* A longer name cannot be a field the request carries within the
         * header bound we accept; refusing is the conservative answer. */
        if (len >= sizeof name) return -1;
        memcpy(name, start, len);
        name[len] = '\0';
        /* Every line of the request's field: the upstream saw them all. */
        if (header_list_get_all(req, name, value, sizeof value) < 0) return -1;
        if ((!first && append_raw(out, cap, &off, CACHE_KEY_SEP_STR, 1) != 0) ||
            append_escaped(out, cap, &off, name, len, true) != 0 ||
            append_raw(out, cap, &off, "=", 1) != 0 ||
            append_escaped(out, cap, &off, value, strlen(value), false) != 0)
            return -1;
        first = false;
    }
    return (int)off;
}

char *cache_key_default(const char *target)
{
    size_t p = sizeof CACHE_KEY_DEFAULT_PREFIX - 1, n = strlen(target);
    char *key = malloc(p + n + 1);
    if (key == NULL) return NULL;
    memcpy(key, CACHE_KEY_DEFAULT_PREFIX, p);
    memcpy(key + p, target, n + 1);
    return key;
}
