/* test_config.c - flags, environment, .env precedence and validation. */
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "test.h"

/* Every environment name config reads; cleared before each test so that the
 * environment of whoever runs the tests can't leak in. */
static const char *const ENV_NAMES[] = {
    "HOST", "PORT", "WORKERS", "MAX_BODY_SIZE", "MAX_HEADER_SIZE", "MAX_CONNECTIONS",
    "CLIENT_TIMEOUT", "SHUTDOWN_TIMEOUT_MS", "UPSTREAM_URL", "UPSTREAM_CONNECT_TIMEOUT_MS",
    "UPSTREAM_TIMEOUT_MS", "UPSTREAM_MAX_CONNECTIONS", "CACHE_MAX_BYTES", "MAX_VALUE_SIZE",
    "DEFAULT_TTL", "REDIS_URL", "REDIS_PREFIX", "REDIS_CONNECT_TIMEOUT_MS", "REDIS_TIMEOUT_MS",
    "REDIS_POOL_SIZE", "REDIS_HEALTH_INTERVAL", "REDIS_RETRIES", "REDIS_TLS_CA_FILE",
    "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE", "REDIS_TLS_INSECURE", "POLICIES_DIR", "LUA_DIR",
    "LUA_MEMORY_LIMIT", "LUA_INSTRUCTION_LIMIT", "ADMIN_TOKEN", "ADMIN_HOST", "ADMIN_PORT",
    "LOG_LEVEL", "ACCESS_LOG", "CLIENT_HEADER_TIMEOUT", "MAX_QUERY_PARAMS", "MAX_BUFFERED_BODIES",
    "TRUSTED_PROXIES", "FORWARDED_HOST", "LUA_TIME_LIMIT_MS",
};
#define N_ENV (sizeof ENV_NAMES / sizeof ENV_NAMES[0])

static char tmpdir[64];
static char dotenv[128];   /* a .env path inside tmpdir, written by the tests */
static char no_dotenv[128]; /* a path that never exists */

static void clear_env(void)
{
    for (size_t i = 0; i < N_ENV; i++) unsetenv(ENV_NAMES[i]);
    unsetenv("CACHEGW_TEST_UNKNOWN");
}

static void write_dotenv(const char *content)
{
    FILE *f = fopen(dotenv, "w");
    if (f == NULL) {
        perror(dotenv);
        exit(2);
    }
    fputs(content, f);
    fclose(f);
}

static char err[512];

/* Runs config_load with a NULL-terminated argument list after "cachegw". */
static enum config_result load_argv(struct config *cfg, const char *env_path, char **args)
{
    int argc = 0;
    while (args[argc] != NULL) argc++;
    memset(err, 0, sizeof err);
    return config_load(cfg, argc, args, env_path, err, sizeof err);
}
#define LOAD(cfg, env_path, ...) load_argv(cfg, env_path, (char *[]){"cachegw", __VA_ARGS__ NULL})

/* Expects a CONFIG_ERROR whose message contains every one of the (up to three)
 * given strings; NULL entries are skipped. */
static int fails_with(enum config_result rc, struct config *cfg, const char *a, const char *b,
                      const char *c)
{
    const char *want[] = {a, b, c};
    int ok = rc == CONFIG_ERROR && err[0] != '\0' && strchr(err, '\n') == NULL;
    for (int i = 0; i < 3; i++)
        if (want[i] != NULL && strstr(err, want[i]) == NULL) ok = 0;
    if (!ok) fprintf(stderr, "  rc=%d err='%s'\n", rc, err);
    /* A failed load leaves nothing to free, and freeing again is harmless. */
    if (cfg->host != NULL || cfg->upstream_url != NULL || cfg->port != 0) ok = 0;
    config_free(cfg);
    return ok;
}

static void check_defaults(const struct config *c)
{
    CHECK_EQ_STR(c->host, "0.0.0.0");
    CHECK_EQ_INT(c->port, 8080);
    CHECK_EQ_INT(c->workers, 0);
    CHECK_EQ_INT(c->max_body_bytes, 10 * 1024 * 1024);
    CHECK_EQ_INT(c->max_header_bytes, 16 * 1024);
    CHECK_EQ_INT(c->max_connections, 16384);
    CHECK_EQ_INT(c->client_timeout_s, 30);
    CHECK_EQ_INT(c->shutdown_timeout_ms, 10000);
    CHECK_EQ_STR(c->upstream_url, "http://127.0.0.1:3000");
    CHECK_EQ_INT(c->upstream_connect_timeout_ms, 2000);
    CHECK_EQ_INT(c->upstream_timeout_ms, 30000);
    CHECK_EQ_INT(c->upstream_max_connections, 256);
    CHECK_EQ_INT(c->cache_max_bytes, 256 * 1024 * 1024);
    CHECK_EQ_INT(c->max_value_bytes, 1024 * 1024);
    CHECK_EQ_INT(c->default_ttl_s, 60);
    CHECK(c->redis_url == NULL);
    CHECK_EQ_STR(c->redis_prefix, "cachegw:");
    CHECK_EQ_INT(c->redis_connect_timeout_ms, 2000);
    CHECK_EQ_INT(c->redis_timeout_ms, 2000);
    CHECK_EQ_INT(c->redis_pool_size, 10);
    CHECK_EQ_INT(c->redis_health_interval_s, 30);
    CHECK_EQ_INT(c->redis_retries, 1);
    CHECK(c->redis_tls_ca_file == NULL);
    CHECK(c->redis_tls_cert_file == NULL);
    CHECK(c->redis_tls_key_file == NULL);
    CHECK(!c->redis_tls_insecure);
    CHECK_EQ_STR(c->policies_dir, "./policies");
    CHECK(c->lua_dir == NULL);
    CHECK_EQ_INT(c->lua_memory_bytes, 64 * 1024 * 1024);
    CHECK_EQ_INT(c->lua_instruction_limit, 1000000);
    CHECK(c->admin_token == NULL);
    CHECK_EQ_STR(c->admin_host, "127.0.0.1");
    CHECK_EQ_INT(c->admin_port, 8081);
    CHECK_EQ_INT(c->log_level, LOG_INFO);
    CHECK(!c->access_log);
    CHECK(!c->check_only);
}

TEST(defaults)
{
    struct config c;
    config_defaults(&c);
    check_defaults(&c);
    config_free(&c);
    CHECK(c.host == NULL);
    CHECK_EQ_INT(c.port, 0);

    clear_env();
    CHECK_EQ_INT(LOAD(&c, no_dotenv, ), CONFIG_OK);
    check_defaults(&c);
    config_free(&c);
    config_free(&c); /* a second free is harmless */
}

TEST(env_overrides_default)
{
    struct config c;
    clear_env();
    setenv("PORT", "9000", 1);
    setenv("UPSTREAM_URL", "https://origin.example:8443/api/", 1);
    setenv("LOG_LEVEL", "warn", 1);
    setenv("ACCESS_LOG", "yes", 1);
    CHECK_EQ_INT(LOAD(&c, no_dotenv, ), CONFIG_OK);
    CHECK_EQ_INT(c.port, 9000);
    CHECK_EQ_STR(c.upstream_url, "https://origin.example:8443/api");
    CHECK_EQ_INT(c.log_level, LOG_WARN);
    CHECK(c.access_log);
    CHECK_EQ_INT(c.admin_port, 8081); /* untouched options keep their default */
    config_free(&c);
    clear_env();
}

TEST(flag_overrides_env)
{
    struct config c;
    clear_env();
    setenv("PORT", "9000", 1);
    setenv("HOST", "10.1.1.1", 1);
    CHECK_EQ_INT(LOAD(&c, no_dotenv, "--port", "9100", "--host=10.2.2.2", ), CONFIG_OK);
    CHECK_EQ_INT(c.port, 9100);
    CHECK_EQ_STR(c.host, "10.2.2.2");
    config_free(&c);

    /* The last occurrence of a flag wins. */
    CHECK_EQ_INT(LOAD(&c, no_dotenv, "--port=1", "--port", "2", ), CONFIG_OK);
    CHECK_EQ_INT(c.port, 2);
    config_free(&c);
    clear_env();
}

TEST(dotenv_precedence)
{
    struct config c;
    clear_env();
    write_dotenv("PORT=7000\nLOG_LEVEL=debug\nCACHEGW_TEST_UNKNOWN=1\n");

    CHECK_EQ_INT(LOAD(&c, dotenv, ), CONFIG_OK);
    CHECK_EQ_INT(c.port, 7000);
    CHECK_EQ_INT(c.log_level, LOG_DEBUG);
    config_free(&c);
    /* .env values never reach the process environment. */
    CHECK(getenv("PORT") == NULL);
    CHECK(getenv("LOG_LEVEL") == NULL);
    CHECK(getenv("CACHEGW_TEST_UNKNOWN") == NULL);

    setenv("PORT", "7100", 1);
    CHECK_EQ_INT(LOAD(&c, dotenv, ), CONFIG_OK);
    CHECK_EQ_INT(c.port, 7100);
    CHECK_EQ_INT(c.log_level, LOG_DEBUG);
    config_free(&c);

    CHECK_EQ_INT(LOAD(&c, dotenv, "--port", "7200", ), CONFIG_OK);
    CHECK_EQ_INT(c.port, 7200);
    config_free(&c);
    clear_env();
}

TEST(dotenv_invalid_value_overridden_by_env)
{
    /* Only the winning value is validated. */
    struct config c;
    clear_env();
    write_dotenv("PORT=0\n");
    CHECK(fails_with(LOAD(&c, dotenv, ), &c, "--port (PORT)", "'0'", NULL));
    setenv("PORT", "8001", 1);
    CHECK_EQ_INT(LOAD(&c, dotenv, ), CONFIG_OK);
    CHECK_EQ_INT(c.port, 8001);
    config_free(&c);
    clear_env();
}

TEST(dotenv_syntax)
{
    struct config c;
    clear_env();
    write_dotenv("# a comment line\n"
                 "\n"
                 "   \t\n"
                 "export HOST = 127.0.0.2   \n"
                 "REDIS_PREFIX=\"my \\\"app\\\"\\\\:\\n\"  # trailing comment\n"
                 "ADMIN_HOST='10.0.0.1' \n"
                 "  POLICIES_DIR=/srv/policies # inline comment\n"
                 "REDIS_URL=redis://u:pa#ss@redis.local:6380/1\n"
                 "REDIS_TLS_CERT_FILE='a\\nb # not a comment'\r\n"
                 "ADMIN_TOKEN=\"t0k#en\"\n"
                 "LUA_DIR=\"\"\n"
                 "REDIS_TLS_CA_FILE=\"/etc/ca dir/ca.pem\"\n"
                 "export=ignored-unknown-key\n"
                 "WORKERS=3\n"
                 "WORKERS=4\n");
    CHECK_EQ_INT(LOAD(&c, dotenv, ), CONFIG_OK);
    CHECK_EQ_STR(c.host, "127.0.0.2");
    CHECK_EQ_STR(c.redis_prefix, "my \"app\"\\:\n");
    CHECK_EQ_STR(c.admin_host, "10.0.0.1");
    CHECK_EQ_STR(c.policies_dir, "/srv/policies");
    CHECK_EQ_STR(c.redis_url, "redis://u:pa#ss@redis.local:6380/1");
    CHECK_EQ_STR(c.redis_tls_cert_file, "a\\nb # not a comment");
    CHECK_EQ_STR(c.admin_token, "t0k#en");
    CHECK(c.lua_dir == NULL);
    CHECK_EQ_STR(c.redis_tls_ca_file, "/etc/ca dir/ca.pem");
    CHECK_EQ_INT(c.workers, 4);
    config_free(&c);
    if (err[0] != '\0') fprintf(stderr, "  err='%s'\n", err);

    /* An empty environment value switches off an optional .env setting. */
    setenv("REDIS_URL", "", 1);
    CHECK_EQ_INT(LOAD(&c, dotenv, ), CONFIG_OK);
    CHECK(c.redis_url == NULL);
    config_free(&c);
    clear_env();
}

TEST(dotenv_malformed)
{
    struct config c;
    char want[160];
    clear_env();

    write_dotenv("PORT=8080\n# fine\nthis line has no equals sign\n");
    snprintf(want, sizeof want, "%s:3:", dotenv);
    CHECK(fails_with(LOAD(&c, dotenv, ), &c, want, "KEY=VALUE", NULL));

    write_dotenv("HOST=\"unterminated\n");
    snprintf(want, sizeof want, "%s:1:", dotenv);
    CHECK(fails_with(LOAD(&c, dotenv, ), &c, want, "unterminated", "HOST"));

    write_dotenv("\nHOST='a' b\n");
    snprintf(want, sizeof want, "%s:2:", dotenv);
    CHECK(fails_with(LOAD(&c, dotenv, ), &c, want, "closing quote", NULL));

    write_dotenv("MY KEY=1\n");
    snprintf(want, sizeof want, "%s:1:", dotenv);
    CHECK(fails_with(LOAD(&c, dotenv, ), &c, want, "key", NULL));

    write_dotenv("=1\n");
    CHECK(fails_with(LOAD(&c, dotenv, ), &c, want, "key", NULL));

    /* A malformed line that holds a secret is not echoed. */
    write_dotenv("ADMIN_TOKEN hunter2\n");
    CHECK(fails_with(LOAD(&c, dotenv, ), &c, want, NULL, NULL));
    CHECK(strstr(err, "hunter2") == NULL);

    /* A directory, or a path through a file, is not a missing file. */
    CHECK(fails_with(LOAD(&c, tmpdir, ), &c, tmpdir, NULL, NULL));
    char through_file[192];
    snprintf(through_file, sizeof through_file, "%s/sub", dotenv);
    CHECK(fails_with(LOAD(&c, through_file, ), &c, "cannot open", through_file, NULL));
}

/* One invalid input: an environment variable (env != NULL) or a flag. */
struct bad_case {
    const char *env, *env_value;
    const char *arg1, *arg2;
    const char *want1, *want2;
};

TEST(invalid_values)
{
    static const struct bad_case CASES[] = {
        {"CACHE_MAX_BYTES", "-5", NULL, NULL,
         "invalid value for --cache-max-bytes (CACHE_MAX_BYTES): '-5' "
         "(expected a size such as 256MiB)", NULL},
        {"CACHE_MAX_BYTES", "10XB", NULL, NULL, "--cache-max-bytes (CACHE_MAX_BYTES)", "'10XB'"},
        {"CACHE_MAX_BYTES", "10 MiB", NULL, NULL, "--cache-max-bytes", NULL},
        {"CACHE_MAX_BYTES", "1.5GiB", NULL, NULL, "--cache-max-bytes", NULL},
        {"CACHE_MAX_BYTES", "", NULL, NULL, "--cache-max-bytes", NULL},
        {"MAX_BODY_SIZE", "99999999999999999999", NULL, NULL, "--max-body-size (MAX_BODY_SIZE)",
         NULL},
        {"MAX_BODY_SIZE", "17179869184GiB", NULL, NULL, "--max-body-size", NULL},
        {"MAX_HEADER_SIZE", "100", NULL, NULL, "--max-header-size (MAX_HEADER_SIZE)", "1024"},
        {NULL, NULL, "--max-value-size", "+5", "--max-value-size (MAX_VALUE_SIZE)", "'+5'"},
        {"PORT", "0", NULL, NULL, "--port (PORT)", "1 to 65535"},
        {"PORT", "70000", NULL, NULL, "--port (PORT)", "'70000'"},
        {NULL, NULL, "--port", "8080x", "--port (PORT)", "'8080x'"},
        {NULL, NULL, "--port=-1", NULL, "--port (PORT)", NULL},
        {"ADMIN_PORT", "65536", NULL, NULL, "--admin-port (ADMIN_PORT)", NULL},
        {"WORKERS", "257", NULL, NULL, "--workers (WORKERS)", "0 to 256"},
        {"WORKERS", "-1", NULL, NULL, "--workers (WORKERS)", NULL},
        {"CLIENT_TIMEOUT", "0", NULL, NULL, "--client-timeout (CLIENT_TIMEOUT)", NULL},
        {"CLIENT_TIMEOUT", "1500ms", NULL, NULL, "--client-timeout", "seconds"},
        {"UPSTREAM_TIMEOUT_MS", "0", NULL, NULL, "--upstream-timeout-ms (UPSTREAM_TIMEOUT_MS)",
         NULL},
        {"REDIS_TIMEOUT_MS", "5x", NULL, NULL, "--redis-timeout-ms (REDIS_TIMEOUT_MS)", NULL},
        {"DEFAULT_TTL", "-1", NULL, NULL, "--default-ttl (DEFAULT_TTL)", NULL},
        {"REDIS_POOL_SIZE", "0", NULL, NULL, "--redis-pool-size (REDIS_POOL_SIZE)", "1 to 1024"},
        {"REDIS_POOL_SIZE", "1025", NULL, NULL, "--redis-pool-size", NULL},
        {"LUA_INSTRUCTION_LIMIT", "99999999999999999999", NULL, NULL,
         "--lua-instruction-limit (LUA_INSTRUCTION_LIMIT)", NULL},
        {"UPSTREAM_URL", "ftp://x", NULL, NULL,
         "invalid value for --upstream (UPSTREAM_URL): 'ftp://x' "
         "(expected http://host[:port][/prefix])", NULL},
        {"UPSTREAM_URL", "http://", NULL, NULL, "--upstream (UPSTREAM_URL)", NULL},
        {"UPSTREAM_URL", "http://h:0", NULL, NULL, "--upstream", NULL},
        {"UPSTREAM_URL", "http://h:70000/", NULL, NULL, "--upstream", NULL},
        {"UPSTREAM_URL", "http://h/api?x=1", NULL, NULL, "--upstream", NULL},
        {"UPSTREAM_URL", "http://h/a#b", NULL, NULL, "--upstream", NULL},
        {"UPSTREAM_URL", "localhost:3000", NULL, NULL, "--upstream", NULL},
        {NULL, NULL, "--foo", NULL, "unknown option '--foo' (see --help)", NULL},
        {NULL, NULL, "--foo=bar", NULL, "unknown option '--foo' (see --help)", NULL},
        {NULL, NULL, "-p", NULL, "unknown option '-p'", NULL},
        {NULL, NULL, "stray", NULL, "unexpected argument #1 (value not shown", NULL},
        {NULL, NULL, "--admin-token=", "s3cr3t", "unexpected argument #2 after '--admin-token'",
         NULL},
        {"TRUSTED_PROXIES", "10.0.0.0/99", NULL, NULL, "--trusted-proxies (TRUSTED_PROXIES)",
         "'10.0.0.0/99'"},
        {"TRUSTED_PROXIES", "127.0.0.1,nope", NULL, NULL, "--trusted-proxies", "'nope'"},
        {NULL, NULL, "--port", NULL, "missing value for --port (PORT)", NULL},
        {NULL, NULL, "--host", "--port", "missing value for --host (HOST)", NULL},
        {"LOG_LEVEL", "loud", NULL, NULL, "--log-level (LOG_LEVEL)", "'loud'"},
        {NULL, NULL, "--access-log=maybe", NULL, "--access-log (ACCESS_LOG)", "'maybe'"},
        {"REDIS_TLS_INSECURE", "2", NULL, NULL, "--redis-tls-insecure (REDIS_TLS_INSECURE)", NULL},
        {NULL, NULL, "--check=nope", NULL, "--check", NULL},
        {"HOST", "", NULL, NULL, "--host (HOST)", "IP address"},
        /* Listeners bind an address literal: a name or an impossible address
         * must stop --check, not fail the bind later with exit 1. */
        {NULL, NULL, "--host", "999.1.1.1",
         "invalid value for --host (HOST): '999.1.1.1' (expected an IP address", NULL},
        {NULL, NULL, "--host", "localhost", "--host (HOST)", "localhost are not resolved"},
        {"HOST", "127.0.0.1:8080", NULL, NULL, "--host (HOST)", "'127.0.0.1:8080'"},
        {"HOST", "[::1]", NULL, NULL, "--host (HOST)", NULL},
        {"HOST", "1.2.3", NULL, NULL, "--host (HOST)", NULL},
        {"ADMIN_HOST", "admin.internal", NULL, NULL, "--admin-host (ADMIN_HOST)",
         "'admin.internal'"},
        {"ADMIN_HOST", "", NULL, NULL, "--admin-host (ADMIN_HOST)", NULL},
        {"FORWARDED_HOST", "a b", NULL, NULL, "--forwarded-host (FORWARDED_HOST)", "host[:port]"},
        {"FORWARDED_HOST", "api.example.com:0", NULL, NULL, "--forwarded-host", NULL},
        {"FORWARDED_HOST", "api.example.com:", NULL, NULL, "--forwarded-host", NULL},
        {"FORWARDED_HOST", "[::1", NULL, NULL, "--forwarded-host", NULL},
        {"FORWARDED_HOST", "[nope]:80", NULL, NULL, "--forwarded-host", NULL},
        {"FORWARDED_HOST", "evil.com/x", NULL, NULL, "--forwarded-host", NULL},
        {"FORWARDED_HOST", "a\r\nX-Injected: 1", NULL, NULL, "--forwarded-host", NULL},
        {"REDIS_URL", "http://localhost", NULL, NULL, "--redis-url (REDIS_URL)", "scheme"},
        {"REDIS_URL", "redis://host:0", NULL, NULL, "--redis-url (REDIS_URL)", "port"},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const struct bad_case *k = &CASES[i];
        struct config c;
        enum config_result rc;
        clear_env();
        if (k->env != NULL) setenv(k->env, k->env_value, 1);
        if (k->arg1 == NULL)
            rc = LOAD(&c, no_dotenv, );
        else if (k->arg2 == NULL)
            rc = LOAD(&c, no_dotenv, (char *)k->arg1, );
        else
            rc = LOAD(&c, no_dotenv, (char *)k->arg1, (char *)k->arg2, );
        if (!fails_with(rc, &c, k->want1, k->want2, NULL)) {
            fprintf(stderr, "  case %zu (%s%s)\n", i, k->env ? k->env : k->arg1,
                    k->env ? "" : " flag");
            CHECK(!"invalid value accepted or wrong message");
        }
    }
    clear_env();
}

TEST(secrets_never_in_err)
{
    struct config c;
    clear_env();

    /* A secret that lost its flag, and one-slash scheme typos. */
    CHECK(fails_with(LOAD(&c, no_dotenv, "--admin-token=", "hunter2", ), &c,
                     "unexpected argument #2", NULL, NULL));
    CHECK(strstr(err, "hunter2") == NULL);
    CHECK(fails_with(LOAD(&c, no_dotenv, "--port", "80", "hunter2", ), &c, "unexpected argument #3",
                     NULL, NULL));
    CHECK(strstr(err, "hunter2") == NULL);
    const char *typos[] = {"redis:/:hunter2@host", "rediss:/u:hunter2@host:6379", "redis:hunter2@h",
                           "redis//:hunter2@h", "redis:/hunter2"};
    for (size_t i = 0; i < sizeof typos / sizeof typos[0]; i++) {
        setenv("REDIS_URL", typos[i], 1);
        CHECK(fails_with(LOAD(&c, no_dotenv, ), &c, "--redis-url", NULL, NULL));
        CHECK(strstr(err, "hunter2") == NULL);
    }
    clear_env();

    setenv("REDIS_URL", "redis://u:hunter2@:99999", 1);
    CHECK(fails_with(LOAD(&c, no_dotenv, ), &c, "--redis-url (REDIS_URL)", "redis://u:***@",
                     NULL));
    CHECK(strstr(err, "hunter2") == NULL);

    setenv("REDIS_URL", "redis://u:hunter2", 1); /* no '@': could be host:port */
    CHECK(fails_with(LOAD(&c, no_dotenv, ), &c, "--redis-url", NULL, NULL));
    CHECK(strstr(err, "hunter2") == NULL);

    setenv("REDIS_URL", "hunter2", 1);
    CHECK(fails_with(LOAD(&c, no_dotenv, ), &c, "--redis-url", NULL, NULL));
    CHECK(strstr(err, "hunter2") == NULL);
    clear_env();

    CHECK(fails_with(LOAD(&c, no_dotenv, "--redis-url", "rediss://:hunter2@h:0", ), &c,
                     "--redis-url", NULL, NULL));
    CHECK(strstr(err, "hunter2") == NULL);

    write_dotenv("REDIS_URL=redis://user:hunter2@host/x\n");
    CHECK(fails_with(LOAD(&c, dotenv, ), &c, "--redis-url", "database", NULL));
    CHECK(strstr(err, "hunter2") == NULL);

    setenv("ADMIN_TOKEN", "hunter2 \n", 1);
    CHECK(fails_with(LOAD(&c, no_dotenv, ), &c, "--admin-token (ADMIN_TOKEN): '<redacted>'",
                     NULL, NULL));
    CHECK(strstr(err, "hunter2") == NULL);
    clear_env();

    /* A mistyped secret flag: only the name is echoed. */
    CHECK(fails_with(LOAD(&c, no_dotenv, "--admin-tokn=hunter2", ), &c, "--admin-tokn", NULL,
                     NULL));
    CHECK(strstr(err, "hunter2") == NULL);

    /* Credentials in the upstream URL are redacted as well. */
    setenv("UPSTREAM_URL", "http://u:hunter2@origin", 1);
    CHECK(fails_with(LOAD(&c, no_dotenv, ), &c, "--upstream", NULL, NULL));
    CHECK(strstr(err, "hunter2") == NULL);
    clear_env();
}

TEST(error_line_is_printable)
{
    struct config c;
    clear_env();
    write_dotenv("LOG_LEVEL=\"de\\nbug\"\n");
    CHECK(fails_with(LOAD(&c, dotenv, ), &c, "'de?bug'", NULL, NULL));

    char long_value[300];
    memset(long_value, '9', sizeof long_value - 2);
    long_value[sizeof long_value - 2] = 'x';
    long_value[sizeof long_value - 1] = '\0';
    setenv("PORT", long_value, 1);
    CHECK(fails_with(LOAD(&c, no_dotenv, ), &c, "...'", "--port", NULL));
    CHECK(strlen(err) < 250);
    clear_env();
}

TEST(size_units)
{
    static const struct {
        const char *text;
        unsigned long long bytes;
    } CASES[] = {
        {"0", 0},           {"512", 512},          {"512B", 512},
        {"1k", 1024},       {"1K", 1024},          {"2KB", 2048},
        {"3KiB", 3072},     {"1kib", 1024},        {"2m", 2ULL << 20},
        {"2M", 2ULL << 20}, {"2MB", 2ULL << 20},   {"256MiB", 256ULL << 20},
        {"1g", 1ULL << 30}, {"3G", 3ULL << 30},    {"3GB", 3ULL << 30},
        {"1GiB", 1ULL << 30}, {"007", 7},
    };
    clear_env();
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        struct config c;
        char arg[64];
        snprintf(arg, sizeof arg, "--cache-max-bytes=%s", CASES[i].text);
        int rc = LOAD(&c, no_dotenv, arg, );
        CHECK_EQ_INT(rc, CONFIG_OK);
        if (rc == CONFIG_OK && c.cache_max_bytes != CASES[i].bytes) {
            fprintf(stderr, "  %s -> %zu\n", CASES[i].text, c.cache_max_bytes);
            CHECK(!"wrong size");
        }
        config_free(&c);
    }
}

TEST(durations)
{
    struct config c;
    clear_env();
    setenv("CLIENT_TIMEOUT", "2m", 1);
    setenv("UPSTREAM_TIMEOUT_MS", "2s", 1);
    setenv("REDIS_TIMEOUT_MS", "1500ms", 1);
    setenv("DEFAULT_TTL", "0", 1);
    setenv("REDIS_HEALTH_INTERVAL", "1h", 1);
    setenv("SHUTDOWN_TIMEOUT_MS", "250", 1);
    CHECK_EQ_INT(LOAD(&c, no_dotenv, ), CONFIG_OK);
    CHECK_EQ_INT(c.client_timeout_s, 120);
    CHECK_EQ_INT(c.upstream_timeout_ms, 2000);
    CHECK_EQ_INT(c.redis_timeout_ms, 1500);
    CHECK_EQ_INT(c.default_ttl_s, 0);
    CHECK_EQ_INT(c.redis_health_interval_s, 3600);
    CHECK_EQ_INT(c.shutdown_timeout_ms, 250);
    config_free(&c);
    clear_env();
}

TEST(bools)
{
    static const struct {
        const char *text;
        bool value;
    } CASES[] = {{"true", true}, {"1", true},   {"yes", true}, {"on", true}, {"TRUE", true},
                 {"false", false}, {"0", false}, {"no", false}, {"off", false}, {"Off", false}};
    struct config c;
    clear_env();
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char arg[64];
        snprintf(arg, sizeof arg, "--access-log=%s", CASES[i].text);
        CHECK_EQ_INT(LOAD(&c, no_dotenv, arg, ), CONFIG_OK);
        CHECK_EQ_INT(c.access_log, CASES[i].value);
        config_free(&c);
        setenv("REDIS_TLS_INSECURE", CASES[i].text, 1);
        CHECK_EQ_INT(LOAD(&c, no_dotenv, ), CONFIG_OK);
        CHECK_EQ_INT(c.redis_tls_insecure, CASES[i].value);
        config_free(&c);
    }
    setenv("ACCESS_LOG", "false", 1);
    CHECK_EQ_INT(LOAD(&c, no_dotenv, "--access-log", "--check", "--port", "1", ), CONFIG_OK);
    CHECK(c.access_log);
    CHECK(c.check_only);
    CHECK_EQ_INT(c.port, 1);
    config_free(&c);
    clear_env();
}

TEST(upstream_normalized)
{
    static const struct {
        const char *in, *out;
    } CASES[] = {
        {"http://origin", "http://origin"},
        {"http://origin/", "http://origin"},
        {"https://origin:8443/api//", "https://origin:8443/api"},
        {"http://[::1]:3000/v1/", "http://[::1]:3000/v1"},
        {"HTTP://Origin.example", "HTTP://Origin.example"},
    };
    struct config c;
    clear_env();
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        setenv("UPSTREAM_URL", CASES[i].in, 1);
        CHECK_EQ_INT(LOAD(&c, no_dotenv, ), CONFIG_OK);
        CHECK_EQ_STR(c.upstream_url, CASES[i].out);
        config_free(&c);
    }
    clear_env();
}

TEST(redis_and_secrets_accepted)
{
    struct config c;
    clear_env();
    setenv("REDIS_URL", "rediss://default:s3cret@redis:6380/2", 1);
    setenv("ADMIN_TOKEN", "tok-123", 1);
    CHECK_EQ_INT(LOAD(&c, no_dotenv, ), CONFIG_OK);
    CHECK_EQ_STR(c.redis_url, "rediss://default:s3cret@redis:6380/2");
    CHECK_EQ_STR(c.admin_token, "tok-123");
    config_free(&c);

    setenv("ADMIN_TOKEN", "", 1); /* empty means unset: no admin listener */
    CHECK_EQ_INT(LOAD(&c, no_dotenv, ), CONFIG_OK);
    CHECK(c.admin_token == NULL);
    config_free(&c);
    clear_env();
}

/* Runs config_load with stdout sent to /dev/null. */
static enum config_result load_quietly(struct config *cfg, char **args)
{
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int devnull = open("/dev/null", O_WRONLY);
    if (saved < 0 || devnull < 0) {
        perror("dup/open");
        exit(2);
    }
    dup2(devnull, STDOUT_FILENO);
    close(devnull);
    enum config_result rc = load_argv(cfg, no_dotenv, args);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return rc;
}

TEST(help_and_version)
{
    struct config c;
    clear_env();
    CHECK_EQ_INT(load_quietly(&c, (char *[]){"cachegw", "--help", NULL}), CONFIG_EXIT_OK);
    config_free(&c);
    CHECK_EQ_INT(load_quietly(&c, (char *[]){"cachegw", "-h", NULL}), CONFIG_EXIT_OK);
    config_free(&c);
    CHECK_EQ_INT(load_quietly(&c, (char *[]){"cachegw", "--version", NULL}), CONFIG_EXIT_OK);
    config_free(&c);
    /* --help wins over an invalid line. */
    CHECK_EQ_INT(load_quietly(&c, (char *[]){"cachegw", "--bogus", "--port", "0", "--help", NULL}),
                 CONFIG_EXIT_OK);
    config_free(&c);
}

TEST(help_lists_every_option)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f != NULL);
    if (f == NULL) return;
    config_print_help(f);
    fclose(f);
    static const char *const FLAGS[] = {
        "--host", "--port", "--workers", "--max-body-size", "--max-header-size",
        "--max-connections", "--client-timeout", "--shutdown-timeout-ms", "--upstream ",
        "--upstream-connect-timeout-ms", "--upstream-timeout-ms", "--upstream-max-connections",
        "--cache-max-bytes", "--max-value-size", "--default-ttl", "--redis-url",
        "--redis-prefix", "--redis-connect-timeout-ms", "--redis-timeout-ms", "--redis-pool-size",
        "--redis-health-interval", "--redis-retries", "--redis-tls-ca-file",
        "--redis-tls-cert-file", "--redis-tls-key-file", "--redis-tls-insecure", "--policies",
        "--lua-dir", "--lua-memory-limit", "--lua-instruction-limit", "--admin-token",
        "--admin-host", "--admin-port", "--log-level", "--access-log", "--check", "--help",
        "--version", "Listener:", "Upstream:", "Cache:", "Redis:", "Lua policies:", "Admin:",
        "Logging:", "256MiB", "http://127.0.0.1:3000",
    };
    for (size_t i = 0; i < sizeof FLAGS / sizeof FLAGS[0]; i++) {
        if (strstr(text, FLAGS[i]) == NULL) {
            fprintf(stderr, "  help lacks '%s'\n", FLAGS[i]);
            CHECK(!"help incomplete");
        }
    }
    for (size_t i = 0; i < N_ENV; i++) {
        char word[64];
        snprintf(word, sizeof word, " %s\n", ENV_NAMES[i]);
        if (strstr(text, word) == NULL) {
            fprintf(stderr, "  help lacks env '%s'\n", ENV_NAMES[i]);
            CHECK(!"help incomplete");
        }
    }
    free(text);
}

/* Addresses that must keep loading after the host checks. */
TEST(addresses_accepted)
{
    static const char *const HOSTS[] = {"0.0.0.0", "127.0.0.1", "::", "::1", "fe80::1",
                                        "10.255.255.254"};
    for (size_t i = 0; i < sizeof HOSTS / sizeof HOSTS[0]; i++) {
        struct config c;
        clear_env();
        setenv("ADMIN_HOST", HOSTS[i], 1);
        CHECK_EQ_INT(LOAD(&c, no_dotenv, "--host", (char *)HOSTS[i], ), CONFIG_OK);
        CHECK_EQ_STR(c.host, HOSTS[i]);
        CHECK_EQ_STR(c.admin_host, HOSTS[i]);
        config_free(&c);
    }
    static const char *const FWD[] = {"api.example.com", "api.example.com:8443", "10.0.0.1:80",
                                      "[::1]:8443", "[2001:db8::1]", "my_host-1.local"};
    for (size_t i = 0; i < sizeof FWD / sizeof FWD[0]; i++) {
        struct config c;
        clear_env();
        setenv("FORWARDED_HOST", FWD[i], 1);
        CHECK_EQ_INT(LOAD(&c, no_dotenv, ), CONFIG_OK);
        CHECK_EQ_STR(c.forwarded_host, FWD[i]);
        config_free(&c);
    }
    clear_env();
}

/* Values fine one by one that cannot work together, or files that are not
 * there: config_load refuses them so --check and start-up exit 2. */
TEST(combined_values)
{
    struct config c;
    char path[256];
    clear_env();

    /* The admin listener would take the HTTP listener's port. */
    setenv("ADMIN_TOKEN", "t0ken", 1);
    CHECK(fails_with(LOAD(&c, no_dotenv, "--port", "9000", "--admin-port", "9000", ), &c,
                     "invalid value for --admin-port (ADMIN_PORT): '9000'", "port 9000", NULL));
    CHECK(fails_with(LOAD(&c, no_dotenv, "--host", "127.0.0.1", "--port", "9000",
                          "--admin-host", "0.0.0.0", "--admin-port", "9000", ),
                     &c, "--admin-port (ADMIN_PORT)", NULL, NULL));
    /* Different addresses, or no admin listener at all: no conflict. */
    CHECK_EQ_INT(LOAD(&c, no_dotenv, "--host", "127.0.0.1", "--port", "9000", "--admin-host",
                      "127.0.0.2", "--admin-port", "9000", ),
                 CONFIG_OK);
    config_free(&c);
    unsetenv("ADMIN_TOKEN");
    CHECK_EQ_INT(LOAD(&c, no_dotenv, "--port", "9000", "--admin-port", "9000", ), CONFIG_OK);
    config_free(&c);

    /* TLS files are read only for rediss://, and then must be readable. */
    snprintf(path, sizeof path, "%s/absent-ca.pem", tmpdir);
    setenv("REDIS_TLS_CA_FILE", path, 1);
    CHECK_EQ_INT(LOAD(&c, no_dotenv, ), CONFIG_OK);
    config_free(&c);
    CHECK_EQ_INT(LOAD(&c, no_dotenv, "--redis-url", "redis://127.0.0.1:6379", ), CONFIG_OK);
    config_free(&c);
    CHECK(fails_with(LOAD(&c, no_dotenv, "--redis-url", "rediss://127.0.0.1:6380", ), &c,
                     "invalid value for --redis-tls-ca-file (REDIS_TLS_CA_FILE)", "absent-ca.pem",
                     "No such file or directory"));
    setenv("REDIS_TLS_CA_FILE", dotenv, 1); /* a readable file */
    write_dotenv("# not a certificate, but readable\n");
    setenv("REDIS_TLS_KEY_FILE", dotenv, 1);
    CHECK(fails_with(LOAD(&c, no_dotenv, "--redis-url", "rediss://127.0.0.1:6380", ), &c,
                     "--redis-tls-key-file (REDIS_TLS_KEY_FILE)", "needs its certificate", NULL));
    setenv("REDIS_TLS_CERT_FILE", dotenv, 1);
    CHECK_EQ_INT(LOAD(&c, no_dotenv, "--redis-url", "rediss://127.0.0.1:6380", ), CONFIG_OK);
    config_free(&c);
    clear_env();
}

TEST(env_suggestions)
{
    static const struct {
        const char *key, *want;
    } CASES[] = {
        {"REDIS_ULR", "REDIS_URL"},      /* adjacent letters swapped */
        {"UPSTREAM", "UPSTREAM_URL"},    /* the leading part of a name */
        {"UPSTREAM_TIMEOUT", "UPSTREAM_TIMEOUT_MS"},
        {"redis_url", "REDIS_URL"},      /* case */
        {"REDIS_UR", "REDIS_URL"},
        {"PROT", "PORT"},
        {"ADMIN_TOKN", "ADMIN_TOKEN"},
        {"LOGLEVEL", "LOG_LEVEL"},
        {"POLICIES_DI", "POLICIES_DIR"},
        {"export", NULL},                /* two edits from PORT, but a short word */
        {"DATABASE_URL", NULL},          /* the application's own keys */
        {"NODE_ENV", NULL},
        {"SECRET_KEY_BASE", NULL},
        {"PATH", NULL},                  /* two edits from PORT: too far for a short name */
        {"HOME", NULL},
        {"RE", NULL},
        {"A_VERY_LONG_KEY_NAME_THAT_IS_LONGER_THAN_ANY_OPTION_NAME_WE_HAVE", NULL},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const char *got = config_env_suggestion(CASES[i].key);
        if (CASES[i].want == NULL ? got != NULL : got == NULL || strcmp(got, CASES[i].want) != 0) {
            fprintf(stderr, "  %s: got %s, want %s\n", CASES[i].key, got ? got : "(none)",
                    CASES[i].want ? CASES[i].want : "(none)");
            CHECK(!"wrong suggestion");
        }
    }
}

/* Reads what config_load logged to stderr while loading the .env file. */
static char *load_capturing_stderr(struct config *c, enum config_result *rc)
{
    char path[256];
    snprintf(path, sizeof path, "%s/stderr.txt", tmpdir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (saved < 0 || fd < 0) return NULL;
    dup2(fd, 2);
    close(fd);
    *rc = LOAD(c, dotenv, );
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(path, "r");
    if (f == NULL) return NULL;
    char *text = calloc(1, 8192);
    if (text != NULL) fread(text, 1, 8191, f);
    fclose(f);
    unlink(path);
    return text;
}

TEST(dotenv_unknown_keys_warn)
{
    struct config c;
    enum config_result rc = CONFIG_ERROR;
    clear_env();
    write_dotenv("REDIS_ULR=redis://127.0.0.1:6379\n"
                 "UPSTREAM=http://127.0.0.1:9\n"
                 "DATABASE_URL=postgres://app\n"
                 "PORT=9100\n");
    char *log = load_capturing_stderr(&c, &rc);
    CHECK(log != NULL);
    if (log == NULL) return;
    /* Warnings, not errors: the known keys still apply and the typos change nothing. */
    CHECK_EQ_INT(rc, CONFIG_OK);
    CHECK_EQ_INT(c.port, 9100);
    CHECK(c.redis_url == NULL);
    CHECK_EQ_STR(c.upstream_url, "http://127.0.0.1:3000");
    CHECK(strstr(log, "WARN") != NULL);
    CHECK(strstr(log, ".env:1: unknown key REDIS_ULR ignored; did you mean REDIS_URL?") != NULL);
    CHECK(strstr(log, ".env:2: unknown key UPSTREAM ignored; did you mean UPSTREAM_URL?") != NULL);
    /* The value of a mistyped key may be a secret: never in the warning. */
    CHECK(strstr(log, "redis://") == NULL);
    /* A key that is the application's own is skipped without a word. */
    CHECK(strstr(log, "DATABASE_URL") == NULL);
    int lines = 0;
    for (const char *p = log; *p != '\0'; p++) lines += *p == '\n';
    CHECK_EQ_INT(lines, 2);
    free(log);
    config_free(&c);
    clear_env();
}

TEST(err_buffer_may_be_small_or_null)
{
    struct config c;
    char small[8];
    clear_env();
    setenv("PORT", "0", 1);
    CHECK_EQ_INT(config_load(&c, 1, (char *[]){"cachegw", NULL}, no_dotenv, small, sizeof small),
                 CONFIG_ERROR);
    CHECK_EQ_INT((int)strlen(small), 7);
    CHECK_EQ_INT(config_load(&c, 1, (char *[]){"cachegw", NULL}, no_dotenv, NULL, 0),
                 CONFIG_ERROR);
    config_free(&c);
    clear_env();
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_config.XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(dotenv, sizeof dotenv, "%s/.env", tmpdir);
    snprintf(no_dotenv, sizeof no_dotenv, "%s/absent.env", tmpdir);

    RUN(defaults);
    RUN(env_overrides_default);
    RUN(flag_overrides_env);
    RUN(dotenv_precedence);
    RUN(dotenv_invalid_value_overridden_by_env);
    RUN(dotenv_syntax);
    RUN(dotenv_malformed);
    RUN(invalid_values);
    RUN(secrets_never_in_err);
    RUN(error_line_is_printable);
    RUN(size_units);
    RUN(durations);
    RUN(bools);
    RUN(upstream_normalized);
    RUN(redis_and_secrets_accepted);
    RUN(help_and_version);
    RUN(help_lists_every_option);
    RUN(addresses_accepted);
    RUN(combined_values);
    RUN(env_suggestions);
    RUN(dotenv_unknown_keys_warn);
    RUN(err_buffer_may_be_small_or_null);

    unlink(dotenv);
    rmdir(tmpdir);
    return TEST_SUMMARY();
}
