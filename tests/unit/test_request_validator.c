/* Unit tests for request_validator, forward_headers and ip_set: the gate every request
 * passes and the one field set it is forwarded and keyed with. */
#include <stdlib.h>

#include "forward_headers.h"
#include "ip_set.h"
#include "request_validator.h"
#include "test.h"

static const struct request_limits LIMITS = {.max_target_bytes = 8192,
                                             .max_query_params = 128,
                                             .max_header_bytes = 16384,
                                             .max_header_fields = 128};

static int check(const char *method, const char *target, const char *version,
                 const struct http_header *h, size_t n)
{
    struct request_verdict v;
    int rc = request_validate(method, target, version, h, n, &LIMITS, &v);
    CHECK_EQ_INT(rc, v.status);
    CHECK(rc == 0 ? v.reason == NULL : v.reason != NULL);
    return rc;
}

#define HOST {"Host", "example.com"}
#define FIELDS(...) ((const struct http_header[]){__VA_ARGS__})
#define N(...) (sizeof FIELDS(__VA_ARGS__) / sizeof(struct http_header))
#define CHECK_FIELDS(status, ...) \
    CHECK_EQ_INT(check("GET", "/", "HTTP/1.1", FIELDS(__VA_ARGS__), N(__VA_ARGS__)), status)

TEST(valid_requests_pass)
{
    CHECK_FIELDS(0, HOST);
    CHECK_FIELDS(0, HOST, {"X-A", "a\tb c"}, {"Accept", "*/*"}, {"X-Utf8", "caf\xc3\xa9"});
    CHECK_EQ_INT(check("GET", "/posts?a=1&b=%2F&c", "HTTP/1.1", FIELDS(HOST), 1), 0);
    CHECK_EQ_INT(check("OPTIONS", "*", "HTTP/1.1", FIELDS(HOST), 1), 0);
    CHECK_EQ_INT(check("GET", "/", "HTTP/1.0", NULL, 0), 0); /* Host optional in 1.0 */
    CHECK_EQ_INT(check("M-SEARCH", "/", "HTTP/1.1", FIELDS(HOST), 1), 0);
    CHECK_FIELDS(0, HOST, {"Content-Length", "5"}, {"Content-Length", "5"});
    CHECK_EQ_INT(check("POST", "/", "HTTP/1.1",
                       FIELDS(HOST, {"Transfer-Encoding", " Chunked "}), 2), 0);
}

TEST(method_and_version)
{
    CHECK_EQ_INT(check("get", "/", "HTTP/1.1", FIELDS(HOST), 1), 400);
    CHECK_EQ_INT(check("GE\rT", "/", "HTTP/1.1", FIELDS(HOST), 1), 400);
    CHECK_EQ_INT(check("", "/", "HTTP/1.1", FIELDS(HOST), 1), 400);
    CHECK_EQ_INT(check("GET", "/", "HTTP/2.0", FIELDS(HOST), 1), 400);
    CHECK_EQ_INT(check("GET", "/", "", FIELDS(HOST), 1), 400);
    CHECK_EQ_INT(check("GET", "/", NULL, FIELDS(HOST), 1), 400);
}

TEST(target_grammar)
{
    const char *bad[] = {"/posts?utm_source=#&user_id=2", "/a#b", "/a b", "/a\x01", "/a\x7f",
                         "/a?x=\xff", "/%zz", "/%4", "/%", "http://evil/", "a", "",
                         "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = check("GET", bad[i], "HTTP/1.1", FIELDS(HOST), 1);
        if (rc != 400) fprintf(stderr, "  accepted target #%zu\n", i);
        CHECK_EQ_INT(rc, 400);
    }
    char q[2048] = "/q?a";
    for (int i = 0; i < 128; i++) strcat(q, "&a");
    CHECK_EQ_INT(check("GET", q, "HTTP/1.1", FIELDS(HOST), 1), 414); /* 129 params */
    char *longt = malloc(9000);
    memset(longt, 'a', 8999);
    longt[0] = '/';
    longt[8999] = '\0';
    CHECK_EQ_INT(check("GET", longt, "HTTP/1.1", FIELDS(HOST), 1), 414);
    free(longt);
}

TEST(field_syntax)
{
    CHECK_FIELDS(400, HOST, {"Authorization ", "x"});      /* whitespace before ':' */
    CHECK_FIELDS(400, HOST, {"Transfer-Encoding ", "chunked"});
    CHECK_FIELDS(400, HOST, {"X\rA", "1"});
    CHECK_FIELDS(400, HOST, {"", "1"});
    CHECK_FIELDS(400, HOST, {"X-A", "a\rb"});               /* bare CR */
    CHECK_FIELDS(400, HOST, {"X-A", "a\nb"});
    CHECK_FIELDS(400, HOST, {"X-A", "a\x01"});
    CHECK_FIELDS(400, HOST, {"X-A", "\x7f"});
    CHECK_FIELDS(400, HOST, {"<NUL>", "x"});                /* http_server's NUL marker */
}

TEST(framing)
{
    CHECK_FIELDS(400, HOST, {"Content-Length", "1"}, {"Content-Length", "2"});
    CHECK_FIELDS(400, HOST, {"Content-Length", "-1"});
    CHECK_FIELDS(400, HOST, {"Content-Length", "1,1"});
    CHECK_FIELDS(400, HOST, {"Content-Length", "0x10"});
    CHECK_FIELDS(400, HOST, {"Content-Length", "5"}, {"Transfer-Encoding", "chunked"});
    CHECK_FIELDS(501, HOST, {"Transfer-Encoding", "gzip"});
    CHECK_FIELDS(501, HOST, {"Transfer-Encoding", "gzip, chunked"});
    CHECK_FIELDS(400, HOST, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"});
    CHECK_EQ_INT(check("POST", "/", "HTTP/1.0", FIELDS({"Transfer-Encoding", "chunked"}), 1), 400);
    CHECK_FIELDS(400, {"X-A", "1"});                         /* HTTP/1.1 without Host */
    CHECK_FIELDS(400, HOST, {"host", "other"});              /* two Hosts */
}

TEST(header_bounds)
{
    struct http_header many[130];
    for (int i = 0; i < 130; i++) many[i] = (struct http_header){"X-A", "1"};
    many[0] = (struct http_header){"Host", "h"};
    CHECK_EQ_INT(check("GET", "/", "HTTP/1.1", many, 128), 0);
    CHECK_EQ_INT(check("GET", "/", "HTTP/1.1", many, 129), 431);
    char *big = malloc(17000);
    memset(big, 'v', 16999);
    big[16999] = '\0';
    CHECK_FIELDS(431, HOST, {"X-Big", big});
    free(big);
}

static const char *get(const struct header_list *l, const char *name)
{
    return header_list_get(l, name);
}

TEST(forwarded_set_drops_hop_by_hop_and_steering_fields)
{
    const struct http_header raw[] = {
        {"Host", "client.example"},    {"Connection", "keep-alive, X-User-Id"},
        {"X-User-Id", "5"},            {"Connection", "x-secret"},
        {"X-Secret", "s"},             {"Keep-Alive", "timeout=5"},
        {"TE", "trailers"},            {"Upgrade", "h2c"},
        {"Proxy-Authorization", "p"},  {"X-Forwarded-Host", "evil"},
        {"X-Forwarded-Proto", "https"}, {"X-Forwarded-Port", "443"},
        {"Forwarded", "for=1.2.3.4"},  {"X-Original-URL", "/admin"},
        {"X-Rewrite-URL", "/admin"},   {"X-HTTP-Method-Override", "DELETE"},
        {"X-Real-IP", "1.2.3.4"},      {"X-Forwarded-For", "1.2.3.4"},
        {"Content-Length", "3"},       {"Expect", "100-continue"},
        {"X-A", "1"},                  {"x-a", "2"},
        {"Cookie", "a=1"},             {"Cookie", "b=2"},
        {"Accept", "text/html"},
    };
    struct header_list out = {0};
    struct forward_options opt = {0};
    CHECK_EQ_INT(forward_headers_build(raw, sizeof raw / sizeof raw[0], "10.0.0.9", &opt, &out), 0);
    const char *gone[] = {"connection", "x-user-id", "x-secret", "keep-alive", "te", "upgrade",
                          "proxy-authorization", "x-forwarded-host", "x-forwarded-port",
                          "forwarded", "x-original-url", "x-rewrite-url",
                          "x-http-method-override", "x-real-ip", "content-length", "expect"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        if (get(&out, gone[i])) fprintf(stderr, "  forwarded: %s\n", gone[i]);
        CHECK(get(&out, gone[i]) == NULL);
    }
    CHECK_EQ_STR(get(&out, "host"), "client.example"); /* for policies; never sent upstream */
    CHECK_EQ_STR(get(&out, "x-a"), "1, 2");
    CHECK_EQ_STR(get(&out, "cookie"), "a=1; b=2");
    CHECK_EQ_STR(get(&out, "accept"), "text/html");
    CHECK_EQ_STR(get(&out, "x-forwarded-for"), "10.0.0.9");
    CHECK_EQ_STR(get(&out, "x-forwarded-proto"), "http");
    CHECK_EQ_STR(get(&out, "via"), "1.1 cachegw");
    size_t xa = 0;
    for (size_t i = 0; i < out.n; i++)
        if (strcmp(out.items[i].name, "x-a") == 0) xa++;
    CHECK_EQ_INT(xa, 1);
    header_list_free(&out);
}

TEST(trusted_proxies_and_forwarded_host)
{
    struct ip_set *set = NULL;
    char bad[64];
    CHECK_EQ_INT(ip_set_parse("10.0.0.0/8, 192.168.1.7 ::1,fd00::/8", &set, bad, sizeof bad), 0);
    CHECK(ip_set_contains(set, "10.200.3.4"));
    CHECK(ip_set_contains(set, "192.168.1.7"));
    CHECK(!ip_set_contains(set, "192.168.1.8"));
    CHECK(ip_set_contains(set, "::1"));
    CHECK(ip_set_contains(set, "fd12::1"));
    CHECK(!ip_set_contains(set, "11.0.0.1"));
    CHECK(!ip_set_contains(set, "garbage"));

    const struct http_header raw[] = {{"X-Forwarded-For", "1.2.3.4"},
                                      {"X-Forwarded-For", "5.6.7.8"},
                                      {"Via", "1.0 edge"}};
    struct forward_options opt = {.trusted = set, .forwarded_host = "api.example.com"};
    struct header_list out = {0};
    CHECK_EQ_INT(forward_headers_build(raw, 3, "10.1.1.1", &opt, &out), 0);
    CHECK_EQ_STR(get(&out, "x-forwarded-for"), "1.2.3.4, 5.6.7.8, 10.1.1.1");
    CHECK_EQ_STR(get(&out, "x-forwarded-host"), "api.example.com");
    CHECK_EQ_STR(get(&out, "via"), "1.0 edge, 1.1 cachegw");
    header_list_free(&out);
    CHECK_EQ_INT(forward_headers_build(raw, 3, "11.1.1.1", &opt, &out), 0);
    CHECK_EQ_STR(get(&out, "x-forwarded-for"), "11.1.1.1"); /* untrusted: replaced */
    header_list_free(&out);
    ip_set_free(set);

    const char *bads[] = {"10.0.0.0/33", "1.2.3", "::1/129", "host.example", "10.0.0.0/",
                          "1.2.3.4/x"};
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        set = NULL;
        CHECK_EQ_INT(ip_set_parse(bads[i], &set, bad, sizeof bad), -1);
        CHECK(set == NULL);
        CHECK(bad[0] != '\0');
    }
    CHECK_EQ_INT(ip_set_parse("", &set, bad, sizeof bad), 0);
    CHECK(set == NULL);
}

int main(void)
{
    RUN(valid_requests_pass);
    RUN(method_and_version);
    RUN(target_grammar);
    RUN(field_syntax);
    RUN(framing);
    RUN(header_bounds);
    RUN(forwarded_set_drops_hop_by_hop_and_steering_fields);
    RUN(trusted_proxies_and_forwarded_host);
    return TEST_SUMMARY();
}
