/* test_redis_url.c - parsing and redaction of REDIS_URL values. */
#include <errno.h>
#include <limits.h>

#include "redis_url.h"
#include "test.h"

/* Parses url expecting success; the caller frees u. */
static int parse_ok(const char *url, struct redis_url *u)
{
    char err[256] = "";
    int rc = redis_url_parse(url, u, err, sizeof err);
    if (rc != 0) fprintf(stderr, "  unexpected failure for %s: %s\n", url, err);
    return rc;
}

/* Expects url to be rejected with -EINVAL, an error message that contains
 * want, and a zeroed struct. */
static int parse_fails(const char *url, const char *want)
{
    struct redis_url u;
    char err[256] = "";
    memset(&u, 0xab, sizeof u);
    int rc = redis_url_parse(url, &u, err, sizeof err);
    int ok = rc == -EINVAL && strstr(err, want) != NULL && u.host == NULL && u.user == NULL &&
             u.password == NULL;
    if (!ok) fprintf(stderr, "  %s: rc=%d err='%s' (wanted '%s')\n", url, rc, err, want);
    redis_url_free(&u);
    return ok;
}

TEST(plain_host_defaults)
{
    struct redis_url u;
    CHECK_EQ_INT(parse_ok("redis://localhost", &u), 0);
    CHECK(!u.tls);
    CHECK_EQ_STR(u.host, "localhost");
    CHECK_EQ_INT(u.port, 6379);
    CHECK_EQ_INT(u.db, 0);
    CHECK(u.user == NULL);
    CHECK(u.password == NULL);
    redis_url_free(&u);
    CHECK(u.host == NULL);
}

TEST(port_and_db)
{
    struct redis_url u;
    CHECK_EQ_INT(parse_ok("redis://localhost:6380/2", &u), 0);
    CHECK_EQ_STR(u.host, "localhost");
    CHECK_EQ_INT(u.port, 6380);
    CHECK_EQ_INT(u.db, 2);
    redis_url_free(&u);

    CHECK_EQ_INT(parse_ok("redis://10.0.0.5/", &u), 0);
    CHECK_EQ_STR(u.host, "10.0.0.5");
    CHECK_EQ_INT(u.db, 0);
    redis_url_free(&u);

    CHECK_EQ_INT(parse_ok("redis://h/2147483647", &u), 0);
    CHECK_EQ_INT(u.db, INT_MAX);
    redis_url_free(&u);
}

TEST(tls_password_only)
{
    struct redis_url u;
    CHECK_EQ_INT(parse_ok("rediss://:secret@host:6380", &u), 0);
    CHECK(u.tls);
    CHECK(u.user == NULL);
    CHECK_EQ_STR(u.password, "secret");
    CHECK_EQ_STR(u.host, "host");
    CHECK_EQ_INT(u.port, 6380);
    redis_url_free(&u);
}

TEST(user_and_password)
{
    struct redis_url u;
    CHECK_EQ_INT(parse_ok("rediss://default:secret@host", &u), 0);
    CHECK(u.tls);
    CHECK_EQ_STR(u.user, "default");
    CHECK_EQ_STR(u.password, "secret");
    CHECK_EQ_STR(u.host, "host");
    CHECK_EQ_INT(u.port, 6379);
    redis_url_free(&u);

    CHECK_EQ_INT(parse_ok("redis://alice@host", &u), 0);
    CHECK_EQ_STR(u.user, "alice");
    CHECK(u.password == NULL);
    redis_url_free(&u);
}

TEST(scheme_is_case_insensitive)
{
    struct redis_url u;
    CHECK_EQ_INT(parse_ok("REDISS://host", &u), 0);
    CHECK(u.tls);
    redis_url_free(&u);
}

TEST(percent_decoding)
{
    struct redis_url u;
    CHECK_EQ_INT(parse_ok("redis://user:p%40ss@host", &u), 0);
    CHECK_EQ_STR(u.user, "user");
    CHECK_EQ_STR(u.password, "p@ss");
    redis_url_free(&u);

    CHECK_EQ_INT(parse_ok("redis://us%3Aer:a%2fb%3a@host", &u), 0);
    CHECK_EQ_STR(u.user, "us:er");
    CHECK_EQ_STR(u.password, "a/b:");
    redis_url_free(&u);

    CHECK(parse_fails("redis://user:p%4@host", "percent-encoding"));
    CHECK(parse_fails("redis://user:p%zz@host", "percent-encoding"));
    CHECK(parse_fails("redis://user:p%00@host", "percent-encoding"));
}

TEST(raw_at_in_password)
{
    /* The userinfo ends at the last '@'. */
    struct redis_url u;
    CHECK_EQ_INT(parse_ok("redis://u:p@ss/w#rd@host:7000/3", &u), 0);
    CHECK_EQ_STR(u.user, "u");
    CHECK_EQ_STR(u.password, "p@ss/w#rd");
    CHECK_EQ_STR(u.host, "host");
    CHECK_EQ_INT(u.port, 7000);
    CHECK_EQ_INT(u.db, 3);
    redis_url_free(&u);
}

TEST(ipv6_literal)
{
    struct redis_url u;
    CHECK_EQ_INT(parse_ok("redis://[::1]:6379", &u), 0);
    CHECK_EQ_STR(u.host, "::1");
    CHECK_EQ_INT(u.port, 6379);
    redis_url_free(&u);

    CHECK_EQ_INT(parse_ok("rediss://:pw@[2001:db8::7]/4", &u), 0);
    CHECK_EQ_STR(u.host, "2001:db8::7");
    CHECK_EQ_INT(u.port, 6379);
    CHECK_EQ_INT(u.db, 4);
    redis_url_free(&u);

    CHECK(parse_fails("redis://[::1", "IPv6"));
    CHECK(parse_fails("redis://[]", "missing host"));
    CHECK(parse_fails("redis://[::g]", "IPv6"));
    CHECK(parse_fails("redis://[::1]x", "after the IPv6"));
}

TEST(errors)
{
    CHECK(parse_fails("", "empty"));
    CHECK(parse_fails(NULL, "empty"));
    CHECK(parse_fails("http://localhost", "scheme"));
    CHECK(parse_fails("localhost:6379", "scheme"));
    CHECK(parse_fails("redis://", "missing host"));
    CHECK(parse_fails("redis://:6379", "missing host"));
    CHECK(parse_fails("redis://u:pw@", "missing host"));
    CHECK(parse_fails("redis://host:0", "port"));
    CHECK(parse_fails("redis://host:70000", "port"));
    CHECK(parse_fails("redis://host:65536", "port"));
    CHECK(parse_fails("redis://host:abc", "port"));
    CHECK(parse_fails("redis://host:", "port"));
    CHECK(parse_fails("redis://host:-1", "port"));
    CHECK(parse_fails("redis://host:6379x", "port"));
    CHECK(parse_fails("redis://host/abc", "database"));
    CHECK(parse_fails("redis://host/-1", "database"));
    CHECK(parse_fails("redis://host/2147483648", "database"));
    CHECK(parse_fails("redis://host/1/2", "database"));
    CHECK(parse_fails("redis://host/0 extra", "database"));
    CHECK(parse_fails("redis://host?timeout=1", "host"));
    CHECK(parse_fails("redis://ho st", "host"));
}

TEST(error_never_quotes_password)
{
    static const char *const URLS[] = {
        "redis://u:hunter2@:99999", "redis://u:hunter2@host:99999", "redis://u:hunter2",
        "redis://u:hunter2@host/x", "http://u:hunter2@host", "redis://u:hunter2%zz@host",
    };
    for (size_t i = 0; i < sizeof URLS / sizeof URLS[0]; i++) {
        struct redis_url u;
        char err[256] = "";
        CHECK(redis_url_parse(URLS[i], &u, err, sizeof err) == -EINVAL);
        CHECK(err[0] != '\0');
        CHECK(strstr(err, "hunter2") == NULL);
        redis_url_free(&u);
    }
}

TEST(err_may_be_null_or_short)
{
    struct redis_url u;
    char err[4];
    CHECK_EQ_INT(redis_url_parse("bogus", &u, NULL, 0), -EINVAL);
    CHECK_EQ_INT(redis_url_parse("bogus", &u, err, sizeof err), -EINVAL);
    CHECK_EQ_INT((int)strlen(err), 3);
}

static int redacts_to(const char *url, const char *want)
{
    char buf[256];
    redis_url_redacted(url, buf, sizeof buf);
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "  redacted(%s) = '%s', wanted '%s'\n", url, buf, want);
        return 0;
    }
    return 1;
}

TEST(redaction)
{
    CHECK(redacts_to("redis://localhost:6380/2", "redis://localhost:6380/2"));
    CHECK(redacts_to("rediss://default:secret@host", "rediss://default:***@host"));
    CHECK(redacts_to("rediss://:secret@host:6380", "rediss://:***@host:6380"));
    CHECK(redacts_to("redis://user:p%40ss@host/1", "redis://user:***@host/1"));
    CHECK(redacts_to("redis://u:p@ss@[::1]:6379", "redis://u:***@[::1]:6379"));
    /* A lone userinfo may be a password written without the ':'. */
    CHECK(redacts_to("redis://secret@host", "redis://***@host"));
    /* Unparseable input: everything that could be a credential goes. */
    CHECK(redacts_to("redis://u:hunter2", "redis://u:***"));
    CHECK(redacts_to("redis://u:hunter2@:99999", "redis://u:***@:99999"));
    CHECK(redacts_to("redis://host/hunter2", "redis://host/***"));
    CHECK(redacts_to("redis://host?password=hunter2", "redis://host?***"));
    CHECK(redacts_to("u:hunter2@host", "***@host"));
    CHECK(redacts_to("hunter2", "***"));
    CHECK(redacts_to("", "***"));
    CHECK(redacts_to(NULL, ""));
}

TEST(redaction_truncates_safely)
{
    char buf[12];
    memset(buf, 'x', sizeof buf);
    redis_url_redacted("rediss://default:secret@host", buf, sizeof buf);
    CHECK_EQ_STR(buf, "rediss://de");
    memset(buf, 'x', sizeof buf);
    redis_url_redacted("redis://h", buf, 1);
    CHECK_EQ_INT(buf[0], '\0');
    CHECK_EQ_INT(buf[1], 'x');
    redis_url_redacted("redis://h", buf, 0); /* must not write */
    CHECK_EQ_INT(buf[0], '\0');
}

TEST(seed_list)
{
    struct redis_url u;
    CHECK_EQ_INT(parse_ok("rediss://:pw@h1:7001,h2,[::1]:7003/0", &u), 0);
    CHECK(u.tls);
    CHECK_EQ_STR(u.password, "pw");
    CHECK_EQ_INT(u.n_nodes, 3);
    CHECK_EQ_STR(u.host, "h1");
    CHECK_EQ_INT(u.port, 7001);
    CHECK_EQ_STR(u.nodes[0].host, "h1");
    CHECK_EQ_INT(u.nodes[0].port, 7001);
    CHECK_EQ_STR(u.nodes[1].host, "h2");
    CHECK_EQ_INT(u.nodes[1].port, 6379);
    CHECK_EQ_STR(u.nodes[2].host, "::1");
    CHECK_EQ_INT(u.nodes[2].port, 7003);
    redis_url_free(&u);
    CHECK(u.nodes == NULL);

    CHECK_EQ_INT(parse_ok("redis://one", &u), 0);
    CHECK_EQ_INT(u.n_nodes, 1);
    CHECK_EQ_STR(u.nodes[0].host, "one");
    redis_url_free(&u);

    CHECK(parse_fails("redis://h1:7001,", "missing host"));
    CHECK(parse_fails("redis://h1:7001,,h2", "missing host"));
    CHECK(parse_fails("redis://h1:70a1,h2", "invalid port"));
    CHECK(parse_fails("redis://h1,h 2", "invalid host name"));

    char buf[128];
    redis_url_redacted("rediss://u:secret@h1:7001,h2:7002/0", buf, sizeof buf);
    CHECK_EQ_STR(buf, "rediss://u:***@h1:7001,h2:7002/0");
    redis_url_redacted("redis://h1:secret,h2:7002", buf, sizeof buf);
    CHECK_EQ_STR(buf, "redis://h1:***,h2:7002");
}

TEST(node_list)
{
    struct redis_url_node *n;
    size_t c;
    char err[128];
    CHECK_EQ_INT(redis_url_parse_nodes("s1:26379,s2,[::1]:1", &n, &c, err, sizeof err), 0);
    CHECK_EQ_INT(c, 3);
    CHECK_EQ_STR(n[0].host, "s1");
    CHECK_EQ_INT(n[0].port, 26379);
    CHECK_EQ_INT(n[1].port, 6379);
    CHECK_EQ_STR(n[2].host, "::1");
    redis_url_nodes_free(n, c);
    CHECK_EQ_INT(redis_url_parse_nodes("", &n, &c, err, sizeof err), -EINVAL);
    CHECK_EQ_INT(redis_url_parse_nodes("s1:0", &n, &c, err, sizeof err), -EINVAL);
    CHECK(strstr(err, "invalid port") != NULL);
    CHECK_EQ_INT(redis_url_parse_nodes("s1/2", &n, &c, err, sizeof err), -EINVAL);
    CHECK(n == NULL && c == 0);
}

int main(void)
{
    RUN(plain_host_defaults);
    RUN(port_and_db);
    RUN(tls_password_only);
    RUN(user_and_password);
    RUN(scheme_is_case_insensitive);
    RUN(percent_decoding);
    RUN(raw_at_in_password);
    RUN(ipv6_literal);
    RUN(errors);
    RUN(error_never_quotes_password);
    RUN(err_may_be_null_or_short);
    RUN(redaction);
    RUN(redaction_truncates_safely);
    RUN(seed_list);
    RUN(node_list);
    return TEST_SUMMARY();
}
