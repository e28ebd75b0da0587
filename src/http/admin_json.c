/* admin_json.c - see admin_json.h. */
#include "admin_json.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Depth of value counting itself (a scalar is 1, {} is 1, {"a": []} is 2),
 * stopping as soon as limit is passed.  The recursion is bounded by jansson's
 * parser, which refuses documents nested deeper than JSON_PARSER_MAX_DEPTH. */
static int admin_json_depth(const json_t *value, int limit)
{
    if (limit < 1) return 1;
    int deepest = 0;
    if (json_is_object(value)) {
        const char *name;
        json_t *member;
        json_object_foreach((json_t *)value, name, member) {
            int d = admin_json_depth(member, limit - 1);
            if (d > deepest) deepest = d;
            if (deepest >= limit) break;
        }
    } else if (json_is_array(value)) {
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item) {
            int d = admin_json_depth(item, limit - 1);
            if (d > deepest) deepest = d;
            if (deepest >= limit) break;
        }
    } else {
        return 1;
    }
    return deepest + 1;
}

/* jansson quotes the input near an error ("invalid token near 'xyz'"); keep
 * only printable ASCII of it, so the message is safe to put in an answer or a
 * log line whatever bytes the client sent. */
static void admin_json_set_error(struct admin_json_error *err, const char *text, size_t pos)
{
    size_t n = 0;
    for (; text[n] != '\0' && n < sizeof err->text - 1; n++) {
        unsigned char c = (unsigned char)text[n];
        err->text[n] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    err->text[n] = '\0';
    err->position = pos;
}

enum admin_json_result admin_json_get_string(const char *body, size_t body_len, const char *field,
                                             char *out, size_t cap, size_t *len,
                                             struct admin_json_error *err)
{
    *len = 0;
    admin_json_set_error(err, "", 0);
    if (body_len > ADMIN_JSON_MAX_INPUT) {
        char why[80];
        snprintf(why, sizeof why, "document larger than %zu bytes", ADMIN_JSON_MAX_INPUT);
        admin_json_set_error(err, why, 0);
        return ADMIN_JSON_INVALID;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(body, body_len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (doc == NULL) {
        admin_json_set_error(err, jerr.text, (size_t)jerr.position);
        return json_error_code(&jerr) == json_error_duplicate_key ? ADMIN_JSON_DUPLICATE
                                                                  : ADMIN_JSON_INVALID;
    }
    enum admin_json_result rc;
    if (!json_is_object(doc)) {
        admin_json_set_error(err, "expected a JSON object", 0);
        rc = ADMIN_JSON_INVALID;
    } else if (admin_json_depth(doc, ADMIN_JSON_MAX_DEPTH) > ADMIN_JSON_MAX_DEPTH) {
        char why[80];
        snprintf(why, sizeof why, "nested deeper than %d levels", ADMIN_JSON_MAX_DEPTH);
        admin_json_set_error(err, why, 0);
        rc = ADMIN_JSON_INVALID;
    } else {
        json_t *member = json_object_get(doc, field);
        if (member == NULL) {
            rc = ADMIN_JSON_MISSING;
        } else if (!json_is_string(member)) {
            rc = ADMIN_JSON_NOT_STRING;
        } else {
            size_t n = json_string_length(member);
            size_t copy = n < cap - 1 ? n : cap - 1;
            memcpy(out, json_string_value(member), copy);
            out[copy] = '\0';
            *len = n;
            rc = ADMIN_JSON_OK;
        }
    }
    json_decref(doc);
    return rc;
}

bool admin_json_is_utf8(const char *s, size_t len)
{
    /* jansson validates UTF-8 when it builds a string (json_stringn returns
     * NULL on an invalid sequence); the value is a copy of at most a few KiB. */
    json_t *v = json_stringn(s, len);
    json_decref(v);
    return v != NULL;
}

/* Dumps obj (never NULL) as one line with a trailing newline, in the format
 * the admin API has always written: {"a": "b", "c": 1}. */
static char *admin_json_dump_line(json_t *obj, size_t *len)
{
    size_t need = json_dumpb(obj, NULL, 0, 0);
    char *text = need > 0 ? malloc(need + 2) : NULL;
    if (text == NULL) return NULL;
    if (json_dumpb(obj, text, need, 0) != need) {
        free(text);
        return NULL;
    }
    text[need] = '\n';
    text[need + 1] = '\0';
    *len = need + 1;
    return text;
}

char *admin_json_strings(size_t *len, ...)
{
    json_t *obj = json_object();
    if (obj == NULL) return NULL;
    va_list ap;
    va_start(ap, len);
    bool ok = true;
    for (const char *name; ok && (name = va_arg(ap, const char *)) != NULL;) {
        const char *value = va_arg(ap, const char *);
        json_t *v = value ? json_string(value) : NULL; /* NULL: not UTF-8 or no memory */
        ok = v != NULL && json_object_set_new(obj, name, v) == 0;
    }
    va_end(ap);
    char *text = ok ? admin_json_dump_line(obj, len) : NULL;
    json_decref(obj);
    return text;
}

char *admin_json_error(const char *msg, unsigned status, size_t *len)
{
    json_t *m = json_string(msg);
    if (m == NULL) m = json_string("the error message could not be encoded");
    json_t *obj = json_object();
    char *text = NULL;
    if (m != NULL && obj != NULL && json_object_set(obj, "error", m) == 0 &&
        json_object_set_new(obj, "status", json_integer((json_int_t)status)) == 0)
        text = admin_json_dump_line(obj, len);
    json_decref(m);
    json_decref(obj);
    return text;
}

char *admin_json_dump(json_t *obj, size_t *len) { return admin_json_dump_line(obj, len); }

int admin_json_set_bytes(json_t *obj, const char *name, const char *s, size_t len)
{
    json_t *v = json_stringn(s, len);
    if (v != NULL) return json_object_set_new(obj, name, v);
    static const char HEX[] = "0123456789abcdef";
    char *hex = malloc(2 * len + 1);
    size_t nlen = strlen(name);
    char *hname = malloc(nlen + 5);
    int rc = -1;
    if (hex != NULL && hname != NULL) {
        for (size_t i = 0; i < len; i++) {
            hex[2 * i] = HEX[(unsigned char)s[i] >> 4];
            hex[2 * i + 1] = HEX[(unsigned char)s[i] & 15];
        }
        hex[2 * len] = '\0';
        memcpy(hname, name, nlen);
        memcpy(hname + nlen, "_hex", 5);
        rc = json_object_set_new(obj, hname, json_string(hex));
    }
    free(hex);
    free(hname);
    return rc;
}
