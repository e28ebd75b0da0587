/* Unit tests for cache_key: the internal key syntax, and issue 8 item 2
 * (variant-key injection). */
#include "cache_key.h"
#include "test.h"

static struct header_list one(const char *name, const char *value)
{
    struct header_list l = {0};
    if (name) header_list_add(&l, name, value);
    return l;
}

TEST(validity)
{
    CHECK(cache_key_is_valid("GET:/a?b=c", 10));
    CHECK(cache_key_is_valid("posts:#vary|x=1", 15)); /* the old syntax is plain data now */
    CHECK(!cache_key_is_valid("", 0));
    CHECK(!cache_key_is_valid(NULL, 0));
    CHECK(!cache_key_is_valid("a\x1f" "b", 3));
    CHECK(!cache_key_is_valid("a\0b", 3));
}

TEST(variant_format)
{
    char out[256];
    struct header_list req = {0};
    header_list_add(&req, "Accept-Language", "fr");
    header_list_add(&req, "X-Two", "a");
    header_list_add(&req, "x-two", "b"); /* both lines reach the upstream: both key */
    int n = cache_key_variant("GET:/v", " Accept-Language,X-Two ,X-None", &req, out, sizeof out);
    const char *want = "GET:/v\x1fvary\x1f" "accept-language=fr\x1fx-two=a, b\x1fx-none=";
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(n, strlen(want));
    CHECK(cache_key_is_variant(out, (size_t)n));
    CHECK(!cache_key_is_variant("GET:/v", 6));
    CHECK_EQ_INT(cache_key_base_len(out, (size_t)n), 6);
    CHECK_EQ_INT(cache_key_base_len("GET:/v", 6), 6);

    n = cache_key_variant_prefix("GET:/v", out, sizeof out);
    CHECK_EQ_STR(out, "GET:/v\x1fvary\x1f");
    CHECK_EQ_INT(n, 12);
    CHECK_EQ_INT(cache_key_variant_prefix("GET:/v", out, 12), -1); /* no room for the NUL */
    CHECK_EQ_INT(cache_key_variant_prefix("a\x1f" "b", out, sizeof out), -1);

    /* Too small at every length: -1, never a cut key. */
    for (size_t cap = 0; cap < strlen(want) + 1; cap++)
        CHECK_EQ_INT(cache_key_variant("GET:/v", "Accept-Language,X-Two,X-None", &req, out, cap),
                     -1);
    header_list_free(&req);
}

/* The attack of issue 8 item 2: GET /vary#vary|accept-language=en with
 * Accept-Language: fr overwrote the en variant of /vary, because the
 * client-chosen key looked like a variant key and Vary handling was skipped. */
TEST(old_injection_cannot_collide)
{
    char victim[256], forged[256];
    struct header_list en = one("Accept-Language", "en");
    struct header_list fr = one("Accept-Language", "fr");
    CHECK(cache_key_variant("GET:/vary", "Accept-Language", &en, victim, sizeof victim) > 0);
    /* The injected key is an ordinary base key now: it is not a variant key,
     * gets Vary handling of its own, and its variants live under its own
     * prefix. */
    const char *injected = "GET:/vary#vary|accept-language=en";
    CHECK(cache_key_is_valid(injected, strlen(injected)));
    CHECK(!cache_key_is_variant(injected, strlen(injected)));
    CHECK(strcmp(injected, victim) != 0);
    CHECK(cache_key_variant(injected, "Accept-Language", &fr, forged, sizeof forged) > 0);
    CHECK(strcmp(forged, victim) != 0);
    CHECK(strncmp(forged, victim, strlen("GET:/vary") + 1) != 0);

    /* Injecting the new separator is refused outright: such a key is not
     * cacheable and builds no variant. */
    const char *sep_injected = "GET:/vary\x1fvary\x1f" "accept-language=en";
    CHECK(!cache_key_is_valid(sep_injected, strlen(sep_injected)));
    CHECK_EQ_INT(cache_key_variant(sep_injected, "Accept-Language", &fr, forged, sizeof forged),
                 -1);
    header_list_free(&en);
    header_list_free(&fr);
}

/* One variant's value cannot forge another's: values are escaped, so a value
 * carrying "=", "%", a separator or another element stays one element. */
TEST(values_cannot_forge_elements)
{
    char a[256], b[256];
    struct header_list two = {0};
    header_list_add(&two, "X-A", "1");
    header_list_add(&two, "X-B", "2");
    CHECK(cache_key_variant("k", "X-A, X-B", &two, a, sizeof a) > 0);
    /* X-A carries the separator and X-B's element, X-B is absent. */
    struct header_list forged = one("X-A", "1\x1fx-b=2");
    CHECK(cache_key_variant("k", "X-A, X-B", &forged, b, sizeof b) > 0);
    CHECK(strcmp(a, b) != 0);
    CHECK_EQ_STR(b, "k\x1fvary\x1fx-a=1%1Fx-b%3D2\x1fx-b=");
    header_list_free(&forged);
    /* "%" is escaped too, so an escaped-looking value differs from the byte. */
    forged = one("X-A", "1%1F");
    CHECK(cache_key_variant("k", "X-A", &forged, b, sizeof b) > 0);
    CHECK_EQ_STR(b, "k\x1fvary\x1fx-a=1%251F");
    header_list_free(&forged);
    header_list_free(&two);
}

TEST(unreadable_request_field_is_refused)
{
    char out[CACHE_KEY_VARIANT_MAX];
    char big[CACHE_KEY_VARIANT_MAX + 10];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct header_list l = one("Accept", big);
    CHECK_EQ_INT(cache_key_variant("k", "Accept", &l, out, sizeof out), -1);
    header_list_free(&l);
    /* A Vary name longer than any field we accept: refused, not truncated
     * into another name. */
    char name[300];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    struct header_list none = {0};
    CHECK_EQ_INT(cache_key_variant("k", name, &none, out, sizeof out), -1);
}

int main(void)
{
    RUN(validity);
    RUN(variant_format);
    RUN(old_injection_cannot_collide);
    RUN(values_cannot_forge_elements);
    RUN(unreadable_request_field_is_refused);
    return TEST_SUMMARY();
}
