/* test_config_redis_mode.c - REDIS_MODE and the sentinel options (issue 10):
 * accepted values, and a clear error for each bad one. */
#include <stdlib.h>

#include "config.h"
#include "test.h"

static char err[512];

static enum config_result load_argv(struct config *cfg, char **args)
{
    int argc = 0;
    while (args[argc] != NULL) argc++;
    memset(err, 0, sizeof err);
    return config_load(cfg, argc, args, "/nonexistent/cachegw-test.env", err, sizeof err);
}
#define LOAD(cfg, ...) load_argv(cfg, (char *[]){"cachegw", __VA_ARGS__ NULL})

/* A CONFIG_ERROR whose one-line message holds a and b (b may be NULL). */
static int fails_with(enum config_result rc, struct config *cfg, const char *a, const char *b)
{
    int ok = rc == CONFIG_ERROR && strstr(err, a) != NULL && (b == NULL || strstr(err, b)) &&
             strchr(err, '\n') == NULL;
    if (!ok) fprintf(stderr, "  rc=%d err='%s'\n", rc, err);
    config_free(cfg);
    return ok;
}

TEST(defaults_and_values)
{
    struct config c;
    CHECK_EQ_INT(LOAD(&c, ), CONFIG_OK);
    CHECK_EQ_INT(c.redis_mode, CONFIG_REDIS_AUTO);
    CHECK(c.redis_sentinels == NULL && c.redis_sentinel_master == NULL);
    CHECK(!c.redis_sentinel_tls);
    config_free(&c);
    CHECK_EQ_INT(LOAD(&c, "--redis-mode", "Cluster", "--redis-url",
                      "redis://:pw@h1:7001,h2:7002,h3:7003", ),
                 CONFIG_OK);
    CHECK_EQ_INT(c.redis_mode, CONFIG_REDIS_CLUSTER);
    config_free(&c);
    setenv("REDIS_MODE", "sentinel", 1);
    setenv("REDIS_SENTINELS", "127.0.0.1:26379,s2:26380", 1);
    setenv("REDIS_SENTINEL_MASTER", "mymaster", 1);
    setenv("REDIS_SENTINEL_PASSWORD", "sentinel-secret", 1);
    setenv("REDIS_SENTINEL_TLS", "true", 1);
    CHECK_EQ_INT(LOAD(&c, "--redis-url", "redis://:pw@unused", ), CONFIG_OK);
    CHECK_EQ_INT(c.redis_mode, CONFIG_REDIS_SENTINEL);
    CHECK_EQ_STR(c.redis_sentinels, "127.0.0.1:26379,s2:26380");
    CHECK_EQ_STR(c.redis_sentinel_master, "mymaster");
    CHECK_EQ_STR(c.redis_sentinel_password, "sentinel-secret");
    CHECK(c.redis_sentinel_tls);
    config_free(&c);
    unsetenv("REDIS_MODE");
    unsetenv("REDIS_SENTINELS");
    unsetenv("REDIS_SENTINEL_MASTER");
    unsetenv("REDIS_SENTINEL_PASSWORD");
    unsetenv("REDIS_SENTINEL_TLS");
}

TEST(bad_values)
{
    struct config c;
    CHECK(fails_with(LOAD(&c, "--redis-mode", "clustered", ), &c,
                     "--redis-mode (REDIS_MODE)", "clustered"));
    CHECK(fails_with(LOAD(&c, "--redis-mode", "sentinel", "--redis-url", "redis://h", ), &c,
                     "'sentinel' needs --redis-sentinels", NULL));
    CHECK(fails_with(LOAD(&c, "--redis-mode", "sentinel", "--redis-sentinels", "s1:26379",
                          "--redis-sentinel-master", "m", ),
                     &c, "needs --redis-url", NULL));
    CHECK(fails_with(LOAD(&c, "--redis-mode", "sentinel", "--redis-url", "redis://h",
                          "--redis-sentinels", "s1:99999", "--redis-sentinel-master", "m", ),
                     &c, "--redis-sentinels (REDIS_SENTINELS)", "invalid port"));
    CHECK(fails_with(LOAD(&c, "--redis-mode", "sentinel", "--redis-url", "redis://h",
                          "--redis-sentinels", "s1:26379,", "--redis-sentinel-master", "m", ),
                     &c, "--redis-sentinels (REDIS_SENTINELS)", "missing host"));
    CHECK(fails_with(LOAD(&c, "--redis-mode", "sentinel", "--redis-url", "redis://h",
                          "--redis-sentinels", "s1", "--redis-sentinel-master", "my master", ),
                     &c, "--redis-sentinel-master (REDIS_SENTINEL_MASTER)", "spaces"));
    CHECK(fails_with(LOAD(&c, "--redis-url", "redis://h", "--redis-sentinels", "s1", ), &c,
                     "only with --redis-mode sentinel", NULL));
    CHECK(fails_with(LOAD(&c, "--redis-mode", "standalone", "--redis-url", "redis://h1,h2", ), &c,
                     "'standalone' takes one node", NULL));
    CHECK(fails_with(LOAD(&c, "--redis-url", "redis://h1:7001,,h2", ), &c,
                     "--redis-url (REDIS_URL)", "missing host"));
}

TEST(help_lists_the_options)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f == NULL) return;
    config_print_help(f);
    fclose(f);
    static const char *const FLAGS[] = {"--redis-mode", "auto|standalone|cluster|sentinel",
                                        "--redis-sentinels", "--redis-sentinel-master",
                                        "--redis-sentinel-password", "--redis-sentinel-tls",
                                        "REDIS_SENTINELS"};
    for (size_t i = 0; i < sizeof FLAGS / sizeof FLAGS[0]; i++) {
        if (strstr(text, FLAGS[i]) == NULL) fprintf(stderr, "  help lacks '%s'\n", FLAGS[i]);
        CHECK(strstr(text, FLAGS[i]) != NULL);
    }
    free(text);
}

int main(void)
{
    static const char *const ENV[] = {"REDIS_URL", "REDIS_MODE", "REDIS_SENTINELS",
                                      "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD",
                                      "REDIS_SENTINEL_TLS"};
    for (size_t i = 0; i < sizeof ENV / sizeof ENV[0]; i++) unsetenv(ENV[i]);
    RUN(defaults_and_values);
    RUN(bad_values);
    RUN(help_lists_the_options);
    return TEST_SUMMARY();
}
