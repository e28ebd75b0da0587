/* Unit tests for log and access_log: JSON escaping, query redaction (built-in,
 * configured and empty lists), the exact combined line nginx would write, the JSON
 * line, request-id rules, and the application log's JSON format (stderr captured
 * in a temporary file). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "access_log.h"
#include "config.h"
#include "log.h"
#include "test.h"

TEST(json_escape)
{
    char out[256];
    log_json_escape("a\"b\\c\n\r\t\x01\x1b\x7f\xff z", out, sizeof out);
    CHECK_EQ_STR(out, "a\\\"b\\\\c\\u000a\\u000d\\u0009\\u0001\\u001b\\u007f\\u00ff z");
    log_json_escape(NULL, out, sizeof out);
    CHECK_EQ_STR(out, "");
    /* Cut values end in "..." and never split an escape. */
    char small[16];
    size_t n = log_json_escape("\x01\x01\x01\x01", small, sizeof small);
    CHECK_EQ_STR(small, "\\u0001...");
    CHECK_EQ_INT(n, strlen(small));
}

TEST(redaction)
{
    CHECK_EQ_INT(log_set_redact(NULL), 0);
    char *r = log_redact_uri("/p?a=1&access_token=xyz&Password=p&api_key=k&b=2");
    CHECK_EQ_STR(r, "/p?a=1&access_token=***&Password=***&api_key=***&b=2");
    free(r);
    /* An empty value at the very end grows to "***" (no write past the copy). */
    r = log_redact_uri("/p?token=");
    CHECK_EQ_STR(r, "/p?token=***");
    free(r);
    r = log_redact_uri("/p?t=1&token=&key=&x");
    CHECK_EQ_STR(r, "/p?t=1&token=***&key=***&x");
    free(r);
    r = log_redact_uri("/no-query");
    CHECK_EQ_STR(r, "/no-query");
    free(r);

    CHECK_EQ_INT(log_set_redact("SSN,card"), 0);
    r = log_redact_uri("/p?ssn=1&Card_No=2&token=3");
    CHECK_EQ_STR(r, "/p?ssn=***&Card_No=***&token=3");
    free(r);
    CHECK_EQ_INT(log_set_redact(""), 0);
    r = log_redact_uri("/p?token=3&password=4");
    CHECK_EQ_STR(r, "/p?token=3&password=4");
    free(r);

    /* log_escape_uri redacts with the same list, then escapes. */
    CHECK_EQ_INT(log_set_redact(NULL), 0);
    char out[128];
    log_escape_uri("/p?token=s\x1b&q=\x1b", out, sizeof out);
    CHECK_EQ_STR(out, "/p?token=***&q=\\x1b");
}

static struct access_log_entry sample(void)
{
    struct access_log_entry e = {
        .client = "192.0.2.7",
        .method = "GET",
        .uri = "/users/1?x=1&token=abc",
        .protocol = "HTTP/1.1",
        .status = 200,
        .bytes = 168,
        .duration_s = 0.0125,
        .cache = "HIT",
        .tier = "memory",
        .route = "GET /users/:id",
        .upstream_s = -1,
        .request_id = "rid-1",
        .referer = NULL,
        .user_agent = "curl/8 \"q\"\x1b",
    };
    e.time.tv_sec = 1764531546; /* 2025-11-30T19:39:06Z */
    e.time.tv_nsec = 123456789;
    return e;
}

TEST(combined_line)
{
    setenv("TZ", "UTC", 1);
    tzset();
    CHECK_EQ_INT(log_set_redact(NULL), 0);
    struct access_log_entry e = sample();
    char line[ACCESS_LOG_LINE_MAX + 1];
    size_t n = access_log_format_line(&e, ACCESS_LOG_COMBINED, line, sizeof line);
    CHECK_EQ_STR(line, "192.0.2.7 - - [30/Nov/2025:19:39:06 +0000] \"GET /users/1?x=1&token=*** "
                       "HTTP/1.1\" 200 168 \"-\" \"curl/8 \\x22q\\x22\\x1B\"\n");
    CHECK_EQ_INT(n, strlen(line));

    /* Another zone: nginx's $time_local carries the offset. */
    setenv("TZ", "EST5", 1);
    tzset();
    access_log_format_line(&e, ACCESS_LOG_COMBINED, line, sizeof line);
    CHECK(strstr(line, "[30/Nov/2025:14:39:06 -0500]") != NULL);
    setenv("TZ", "UTC", 1);
    tzset();

    /* An unanswered request: status 0, unknown size, no request line parts.  The
     * combined line still has a three-digit status: 400 for a head never read. */
    struct access_log_entry empty = {.status = 0, .bytes = -1, .upstream_s = -1};
    access_log_format_line(&empty, ACCESS_LOG_COMBINED, line, sizeof line);
    CHECK(strstr(line, "- - - [") == line);
    CHECK(strstr(line, "] \"- - -\" 400 0 \"-\" \"-\"\n") != NULL);
    /* A client that left before its answer: nginx's 499; the JSON line keeps 0. */
    struct access_log_entry left = sample();
    left.status = 0;
    left.bytes = -1;
    access_log_format_line(&left, ACCESS_LOG_COMBINED, line, sizeof line);
    CHECK(strstr(line, " HTTP/1.1\" 499 0 \"") != NULL);
    access_log_format_line(&left, ACCESS_LOG_JSON, line, sizeof line);
    CHECK(strstr(line, "\"status\":0,\"bytes\":null") != NULL);
}

TEST(json_line)
{
    CHECK_EQ_INT(log_set_redact(NULL), 0);
    struct access_log_entry e = sample();
    char line[ACCESS_LOG_LINE_MAX + 1];
    access_log_format_line(&e, ACCESS_LOG_JSON, line, sizeof line);
    CHECK_EQ_STR(line,
                 "{\"time\":\"2025-11-30T19:39:06.123Z\",\"client\":\"192.0.2.7\",\"method\":"
                 "\"GET\",\"path\":\"/users/1\",\"query\":\"x=1&token=***\",\"protocol\":"
                 "\"HTTP/1.1\",\"status\":200,\"bytes\":168,\"duration\":0.012500,\"cache\":"
                 "\"HIT\",\"tier\":\"memory\",\"route\":\"GET /users/:id\",\"upstream_time\":"
                 "null,\"request_id\":\"rid-1\",\"referer\":null,\"user_agent\":"
                 "\"curl/8 \\\"q\\\"\\u001b\"}\n");

    /* A huge target is cut, and the line is still one complete object. */
    char *big = malloc(20000);
    memcpy(big, "/x?", 3);
    memset(big + 3, '\x01', 19996);
    big[19999] = '\0';
    e.uri = big;
    e.user_agent = big;
    e.referer = big;
    size_t n = access_log_format_line(&e, ACCESS_LOG_JSON, line, sizeof line);
    CHECK(n <= ACCESS_LOG_LINE_MAX);
    CHECK(line[n - 1] == '\n' && line[n - 2] == '}');
    CHECK(strstr(line, "\"status\":200") != NULL);
    n = access_log_format_line(&e, ACCESS_LOG_COMBINED, line, sizeof line);
    CHECK(n <= ACCESS_LOG_LINE_MAX);
    CHECK(line[n - 1] == '\n');
    free(big);
}

TEST(request_ids)
{
    char a[33], b[33];
    access_log_request_id_new(a);
    access_log_request_id_new(b);
    CHECK_EQ_INT(strlen(a), 32);
    CHECK(strspn(a, "0123456789abcdef") == 32);
    CHECK(strcmp(a, b) != 0);

    char id[200];
    memset(id, 'a', sizeof id);
    id[128] = '\0';
    CHECK(access_log_request_id_ok(id));
    id[128] = 'a';
    id[129] = '\0';
    CHECK(!access_log_request_id_ok(id));
    CHECK(access_log_request_id_ok("req-1_2.3:4+5/6=7@8"));
    CHECK(!access_log_request_id_ok(""));
    CHECK(!access_log_request_id_ok(NULL));
    CHECK(!access_log_request_id_ok("a b"));
    CHECK(!access_log_request_id_ok("a\"b"));
    CHECK(!access_log_request_id_ok("a;b"));
    CHECK(!access_log_request_id_ok("a\x1b"));
}

/* Runs log_msg with stderr sent to a temporary file; returns what was written. */
static char *capture_log(enum log_format format, const char *msg)
{
    char path[] = "/tmp/cachegw-test-log-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    log_set_format(format);
    LOG_W("%s", msg);
    log_set_format(LOG_FORMAT_TEXT);
    dup2(saved, STDERR_FILENO);
    close(saved);
    static char buf[4096];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

TEST(application_log_json)
{
    char *out = capture_log(LOG_FORMAT_JSON, "two\nlines \"q\" \x1b[2J");
    CHECK(out != NULL);
    CHECK_EQ_INT(strlen(out) > 0 ? out[strlen(out) - 1] : 0, '\n');
    CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
    CHECK(strncmp(out, "{\"time\":\"", 9) == 0);
    CHECK(strstr(out, "Z\",\"level\":\"warn\",\"msg\":\"two\\u000alines \\\"q\\\" \\u001b[2J\"}\n") !=
          NULL);
    out = capture_log(LOG_FORMAT_TEXT, "plain\nline");
    CHECK(strstr(out, " WARN  plain line\n") != NULL);
}

static enum config_result load(struct config *c, const char *a1, const char *a2, char *err)
{
    char *argv[] = {"cachegw", (char *)a1, (char *)a2, NULL};
    int argc = a1 == NULL ? 1 : a2 == NULL ? 2 : 3;
    return config_load(c, argc, argv, "/nonexistent/.env", err, 256);
}

TEST(options)
{
    static const char *const ENV[] = {"ACCESS_LOG", "ACCESS_LOG_FORMAT", "ACCESS_LOG_REDACT",
                                      "LOG_FORMAT"};
    for (size_t i = 0; i < sizeof ENV / sizeof ENV[0]; i++) unsetenv(ENV[i]);
    struct config c;
    char err[256];
    CHECK_EQ_INT(load(&c, NULL, NULL, err), CONFIG_OK);
    CHECK_EQ_INT(c.access_log, ACCESS_LOG_OFF);
    CHECK_EQ_INT(c.access_log_format, ACCESS_LOG_COMBINED);
    CHECK_EQ_INT(c.log_format, LOG_FORMAT_TEXT);
    CHECK(strstr(c.access_log_redact, "token") != NULL);
    config_free(&c);

    static const struct {
        const char *arg;
        int target;
        const char *path;
    } OK[] = {{"--access-log", ACCESS_LOG_STDERR, NULL},
              {"--access-log=stdout", ACCESS_LOG_STDOUT, NULL},
              {"--access-log=STDERR", ACCESS_LOG_STDERR, NULL},
              {"--access-log=true", ACCESS_LOG_STDERR, NULL},
              {"--access-log=no", ACCESS_LOG_OFF, NULL},
              {"--access-log=./a.log", ACCESS_LOG_FILE, "./a.log"},
              {"--access-log=/var/log/cachegw/access.log", ACCESS_LOG_FILE,
               "/var/log/cachegw/access.log"}};
    for (size_t i = 0; i < sizeof OK / sizeof OK[0]; i++) {
        CHECK_EQ_INT(load(&c, OK[i].arg, NULL, err), CONFIG_OK);
        CHECK_EQ_INT(c.access_log, OK[i].target);
        if (OK[i].path) CHECK_EQ_STR(c.access_log_path, OK[i].path);
        else CHECK(c.access_log_path == NULL);
        config_free(&c);
    }
    /* The flag alone is followed by another flag: still stderr. */
    CHECK_EQ_INT(load(&c, "--access-log", "--check", err), CONFIG_OK);
    CHECK_EQ_INT(c.access_log, ACCESS_LOG_STDERR);
    config_free(&c);
    /* A later setting replaces a path. */
    setenv("ACCESS_LOG", "/tmp/x.log", 1);
    CHECK_EQ_INT(load(&c, "--access-log=off", NULL, err), CONFIG_OK);
    CHECK_EQ_INT(c.access_log, ACCESS_LOG_OFF);
    config_free(&c);
    unsetenv("ACCESS_LOG");

    CHECK_EQ_INT(load(&c, "--access-log-format=JSON", "--log-format=json", err), CONFIG_OK);
    CHECK_EQ_INT(c.access_log_format, ACCESS_LOG_JSON);
    CHECK_EQ_INT(c.log_format, LOG_FORMAT_JSON);
    config_free(&c);
    CHECK_EQ_INT(load(&c, "--access-log-redact=", NULL, err), CONFIG_OK);
    CHECK_EQ_STR(c.access_log_redact, "");
    config_free(&c);

    static const struct {
        const char *arg, *names;
    } BAD[] = {{"--access-log=stdrr", "ACCESS_LOG"},
               {"--access-log=", "ACCESS_LOG"},
               {"--access-log=./a\x01", "ACCESS_LOG"},
               {"--access-log-format=xml", "ACCESS_LOG_FORMAT"},
               {"--log-format=yaml", "LOG_FORMAT"},
               {"--access-log-redact=a b", "ACCESS_LOG_REDACT"},
               {"--access-log-redact=a,,b", "ACCESS_LOG_REDACT"},
               {"--access-log-redact=,a", "ACCESS_LOG_REDACT"},
               {"--access-log-redact=a,", "ACCESS_LOG_REDACT"}};
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        CHECK_EQ_INT(load(&c, BAD[i].arg, NULL, err), CONFIG_ERROR);
        if (strstr(err, BAD[i].names) == NULL) {
            fprintf(stderr, "  %s: %s\n", BAD[i].arg, err);
            CHECK(!"error does not name the option");
        }
    }
}

int main(void)
{
    RUN(json_escape);
    RUN(redaction);
    RUN(combined_line);
    RUN(json_line);
    RUN(request_ids);
    RUN(application_log_json);
    RUN(options);
    return TEST_SUMMARY();
}
