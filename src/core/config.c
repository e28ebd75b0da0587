/* config.c - see config.h. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ip_set.h"
#include "log.h"
#include "redis_url.h"

#ifndef CACHEGW_VERSION
#define CACHEGW_VERSION "dev"
#endif

enum opt_type {
    OPT_STRING,    /* .min is the minimum length; an empty value means NULL if .def is NULL */
    OPT_SECRET,    /* as OPT_STRING, but never echoed and wiped when freed */
    OPT_INT,       /* int in [min, max] */
    OPT_LONG,      /* long in [min, max] */
    OPT_SIZE,      /* size_t in [min, max], with optional k/m/g/t units */
    OPT_DURATION,  /* int in [min, max] of .unit_ms; suffixes ms, s, m, h */
    OPT_BOOL,      /* bool; a flag alone means true */
    OPT_LOG_LEVEL, /* int, through log_level_parse */
    OPT_HTTP_URL,  /* http(s)://host[:port][/prefix], stored normalized */
    OPT_REDIS_URL, /* secret; validated by redis_url_parse */
    OPT_IP_ADDR,   /* an IPv4 or IPv6 literal: listeners bind it as given, nothing resolves it */
    OPT_HOST_PORT, /* host[:port] or [v6]:port, sent in a header: no spaces or controls */
    OPT_CHOICE,    /* int: the index of the value in .choices (case-insensitive) */
    OPT_LOG_TARGET, /* int enum access_log_target; a path goes to .offset2 (char *) */
    OPT_NAME_LIST, /* string: comma-separated names of [A-Za-z0-9_.-]; may be empty */
};

enum opt_group {
    GROUP_LISTENER,
    GROUP_UPSTREAM,
    GROUP_CACHE,
    GROUP_REDIS,
    GROUP_LUA,
    GROUP_ADMIN,
    GROUP_LOGGING,
    GROUP_GENERAL,
    GROUP_COUNT
};

static const char *const GROUP_NAMES[GROUP_COUNT] = {
    "Listener", "Upstream", "Cache", "Redis", "Lua policies", "Admin", "Logging", "General",
};

struct opt {
    const char *flag;    /* without the leading "--" */
    const char *env;     /* NULL for flag-only options */
    enum opt_type type;
    enum opt_group group;
    unsigned long long min, max;
    int unit_ms;         /* OPT_DURATION: milliseconds per stored unit (1 or 1000) */
    const char *def;     /* default, parsed like any other value; NULL = unset */
    const char *def_doc; /* shown by --help instead of def, when set */
    const char *metavar; /* shown by --help; NULL = derived from the type */
    const char *help;
    size_t offset;
    const char *const *choices; /* OPT_CHOICE: the accepted values, NULL-terminated */
    size_t offset2;      /* OPT_LOG_TARGET: where the path goes */
};

#define FIELD(f) offsetof(struct config, f)
#define MS_MAX_HOUR 3600000ULL
#define MS_MAX_DAY 86400000ULL

static const char *const LOG_FORMAT_CHOICES[] = {"text", "json", NULL};
static const char *const ACCESS_LOG_FORMAT_CHOICES[] = {"combined", "json", NULL};
/* Indexes are enum config_redis_mode (config.h). */
static const char *const REDIS_MODE_CHOICES[] = {"auto", "standalone", "cluster", "sentinel",
                                                 NULL};

/* The single list of options: parsing, the environment, .env and --help all
 * read it, so an option added here is complete. */
static const struct opt OPTIONS[] = {
    /* Listener */
    {.flag = "host", .env = "HOST", .type = OPT_IP_ADDR, .group = GROUP_LISTENER, .min = 1,
     .def = "0.0.0.0", .metavar = "<addr>", .help = "Address the HTTP listener binds to.",
     .offset = FIELD(host)},
    {.flag = "port", .env = "PORT", .type = OPT_INT, .group = GROUP_LISTENER, .min = 1,
     .max = 65535, .def = "8080", .help = "TCP port of the HTTP listener (1-65535).",
     .offset = FIELD(port)},
    {.flag = "workers", .env = "WORKERS", .type = OPT_INT, .group = GROUP_LISTENER, .min = 0,
     .max = 256, .def = "0", .help = "Worker threads (0-256); 0 means one per CPU core.",
     .offset = FIELD(workers)},
    {.flag = "max-body-size", .env = "MAX_BODY_SIZE", .type = OPT_SIZE, .group = GROUP_LISTENER,
     .min = 0, .max = SIZE_MAX, .def = "10MiB",
     .help = "Largest request or upstream response body accepted.",
     .offset = FIELD(max_body_bytes)},
    {.flag = "max-header-size", .env = "MAX_HEADER_SIZE", .type = OPT_SIZE,
     .group = GROUP_LISTENER, .min = 1024, .max = SIZE_MAX, .def = "16KiB",
     .help = "Largest total size of a request's headers (at least 1KiB).",
     .offset = FIELD(max_header_bytes)},
    {.flag = "max-connections", .env = "MAX_CONNECTIONS", .type = OPT_INT,
     .group = GROUP_LISTENER, .min = 1, .max = 1048576, .def = "16384",
     .help = "Most client connections open at once; past it the oldest ones that have not "
             "sent a complete request are closed.",
     .offset = FIELD(max_connections)},
    {.flag = "client-timeout", .env = "CLIENT_TIMEOUT", .type = OPT_DURATION,
     .group = GROUP_LISTENER, .min = 1, .max = 86400, .unit_ms = 1000, .def = "30",
     .help = "Idle keep-alive timeout of a client connection.",
     .offset = FIELD(client_timeout_s)},
    {.flag = "client-header-timeout", .env = "CLIENT_HEADER_TIMEOUT", .type = OPT_DURATION,
     .group = GROUP_LISTENER, .min = 1, .max = 3600, .unit_ms = 1000, .def = "10",
     .help = "Whole time a client may take to send a request's line and headers; "
             "slower connections are closed.",
     .offset = FIELD(client_header_timeout_s)},
    {.flag = "max-query-params", .env = "MAX_QUERY_PARAMS", .type = OPT_INT,
     .group = GROUP_LISTENER, .min = 1, .max = 100000, .def = "128",
     .help = "Most query parameters in a request target; more gets 414.",
     .offset = FIELD(max_query_params)},
    {.flag = "max-buffered-bodies", .env = "MAX_BUFFERED_BODIES", .type = OPT_SIZE,
     .group = GROUP_LISTENER, .min = 0, .max = SIZE_MAX, .def = "256MiB",
     .help = "Most request-body bytes buffered over all requests at once; past it 503.",
     .offset = FIELD(max_buffered_body_bytes)},
    {.flag = "trusted-proxies", .env = "TRUSTED_PROXIES", .type = OPT_STRING,
     .group = GROUP_LISTENER, .min = 0, .def = NULL, .def_doc = "none",
     .metavar = "<ip,...>",
     .help = "Client addresses whose X-Forwarded-For is kept and appended to; from any "
             "other client it is replaced.",
     .offset = FIELD(trusted_proxies)},
    {.flag = "forwarded-host", .env = "FORWARDED_HOST", .type = OPT_HOST_PORT,
     .group = GROUP_LISTENER, .min = 0, .def = NULL, .def_doc = "unset (not sent)",
     .metavar = "<host>",
     .help = "Value of X-Forwarded-Host sent upstream; the client's Host is never forwarded.",
     .offset = FIELD(forwarded_host)},
    {.flag = "shutdown-timeout-ms", .env = "SHUTDOWN_TIMEOUT_MS", .type = OPT_DURATION,
     .group = GROUP_LISTENER, .min = 1, .max = MS_MAX_HOUR, .unit_ms = 1, .def = "10000",
     .help = "How long a graceful shutdown waits for requests in flight.",
     .offset = FIELD(shutdown_timeout_ms)},

    /* Upstream */
    {.flag = "upstream", .env = "UPSTREAM_URL", .type = OPT_HTTP_URL, .group = GROUP_UPSTREAM,
     .def = "http://127.0.0.1:3000",
     .help = "Origin server, http(s)://host[:port][/prefix]; a trailing '/' is dropped.",
     .offset = FIELD(upstream_url)},
    {.flag = "upstream-connect-timeout-ms", .env = "UPSTREAM_CONNECT_TIMEOUT_MS",
     .type = OPT_DURATION, .group = GROUP_UPSTREAM, .min = 1, .max = MS_MAX_HOUR, .unit_ms = 1,
     .def = "2000", .help = "Timeout for connecting to the upstream.",
     .offset = FIELD(upstream_connect_timeout_ms)},
    {.flag = "upstream-timeout-ms", .env = "UPSTREAM_TIMEOUT_MS", .type = OPT_DURATION,
     .group = GROUP_UPSTREAM, .min = 1, .max = MS_MAX_DAY, .unit_ms = 1, .def = "30000",
     .help = "Total timeout of one upstream request, connecting included.",
     .offset = FIELD(upstream_timeout_ms)},
    {.flag = "upstream-max-connections", .env = "UPSTREAM_MAX_CONNECTIONS", .type = OPT_INT,
     .group = GROUP_UPSTREAM, .min = 1, .max = 65536, .def = "256",
     .help = "Most connections open to the upstream at once.",
     .offset = FIELD(upstream_max_connections)},

    /* Cache */
    {.flag = "cache-max-bytes", .env = "CACHE_MAX_BYTES", .type = OPT_SIZE, .group = GROUP_CACHE,
     .min = 0, .max = SIZE_MAX, .def = "256MiB",
     .help = "Memory budget of the in-process cache; 0 disables it.",
     .offset = FIELD(cache_max_bytes)},
    {.flag = "max-value-size", .env = "MAX_VALUE_SIZE", .type = OPT_SIZE, .group = GROUP_CACHE,
     .min = 1, .max = SIZE_MAX, .def = "1MiB",
     .help = "Largest response stored in the cache; larger ones pass through uncached.",
     .offset = FIELD(max_value_bytes)},
    {.flag = "default-ttl", .env = "DEFAULT_TTL", .type = OPT_DURATION, .group = GROUP_CACHE,
     .min = 0, .max = INT_MAX, .unit_ms = 1000, .def = "60",
     .help = "TTL when neither a policy nor the response sets one; 0 = don't cache.",
     .offset = FIELD(default_ttl_s)},
    /* Issue 12: heuristic freshness, targeted cache control, compression. */
    {.flag = "heuristic-fraction", .env = "HEURISTIC_FRACTION", .type = OPT_INT,
     .group = GROUP_CACHE, .min = 0, .max = 100, .def = "10", .metavar = "<percent>",
     .help = "Freshness of a heuristically cacheable response (200, 301, 404, ...) without "
             "explicit freshness but with Last-Modified: this percentage of its age at "
             "arrival (RFC 9111 4.2.2); 0 = none. Used before DEFAULT_TTL.",
     .offset = FIELD(heuristic_percent)},
    {.flag = "heuristic-max", .env = "HEURISTIC_MAX", .type = OPT_DURATION,
     .group = GROUP_CACHE, .min = 0, .max = INT_MAX, .unit_ms = 1000, .def = "86400",
     .help = "Upper bound of a heuristic freshness lifetime.",
     .offset = FIELD(heuristic_max_s)},
    {.flag = "targeted-cache-control", .env = "TARGETED_CACHE_CONTROL", .type = OPT_NAME_LIST,
     .group = GROUP_CACHE, .min = 0, .def = NULL, .def_doc = "unset", .metavar = "<field>",
     .help = "An own targeted cache-control field (RFC 9213), e.g. Cachegw-Cache-Control: "
             "it overrides CDN-Cache-Control, which overrides Cache-Control and Expires; "
             "neither is passed to clients.",
     .offset = FIELD(targeted_cache_control)},
    {.flag = "compress", .env = "COMPRESS", .type = OPT_NAME_LIST, .group = GROUP_CACHE,
     .min = 0, .def = "gzip,br", .metavar = "<codings>",
     .help = "Codings stored beside the identity body of compressible responses and served "
             "to clients that accept them: gzip, br, both, or empty for none.",
     .offset = FIELD(compress)},
    {.flag = "compress-min-size", .env = "COMPRESS_MIN_SIZE", .type = OPT_SIZE,
     .group = GROUP_CACHE, .min = 0, .max = SIZE_MAX, .def = "1KiB",
     .help = "Smallest body that gets compressed copies.",
     .offset = FIELD(compress_min_bytes)},
    {.flag = "compress-types", .env = "COMPRESS_TYPES", .type = OPT_STRING, .group = GROUP_CACHE,
     .min = 0, .def = "text/*,application/json,application/javascript,application/xml,"
                      "image/svg+xml",
     .metavar = "<types>",
     .help = "Media types that get compressed copies, comma-separated; type/* for a whole "
             "type.",
     .offset = FIELD(compress_types)},

    /* Redis */
    {.flag = "redis-url", .env = "REDIS_URL", .type = OPT_REDIS_URL, .group = GROUP_REDIS,
     .def = NULL, .def_doc = "unset (memory only)", .metavar = "<url>",
     .help = "Shared cache tier, redis://[user[:password]@]host[:port][/db] or rediss:// "
             "for TLS. Secret: prefer the environment, flags show in ps.",
     .offset = FIELD(redis_url)},
    {.flag = "redis-mode", .env = "REDIS_MODE", .type = OPT_CHOICE, .group = GROUP_REDIS,
     .def = "auto", .choices = REDIS_MODE_CHOICES, .metavar = "auto|standalone|cluster|sentinel",
     .help = "auto: Redis Cluster when the first node that answers reports cluster_enabled:1, "
             "else one node; cluster: REDIS_URL's nodes are seeds of a Redis Cluster; "
             "sentinel: the master comes from REDIS_SENTINELS.",
     .offset = FIELD(redis_mode)},
    {.flag = "redis-sentinels", .env = "REDIS_SENTINELS", .type = OPT_STRING,
     .group = GROUP_REDIS, .min = 0, .def = NULL, .def_doc = "unset",
     .metavar = "<host:port,...>",
     .help = "Sentinels asked for the master (REDIS_MODE=sentinel); REDIS_URL then gives the "
             "credentials, database and TLS of the data nodes, its host is not used.",
     .offset = FIELD(redis_sentinels)},
    {.flag = "redis-sentinel-master", .env = "REDIS_SENTINEL_MASTER", .type = OPT_STRING,
     .group = GROUP_REDIS, .min = 0, .def = NULL, .def_doc = "unset", .metavar = "<name>",
     .help = "Name of the master the sentinels watch (REDIS_MODE=sentinel).",
     .offset = FIELD(redis_sentinel_master)},
    {.flag = "redis-sentinel-password", .env = "REDIS_SENTINEL_PASSWORD", .type = OPT_SECRET,
     .group = GROUP_REDIS, .min = 0, .def = NULL, .def_doc = "unset (no AUTH)",
     .metavar = "<password>", .help = "Password of the sentinels, when they need one.",
     .offset = FIELD(redis_sentinel_password)},
    {.flag = "redis-sentinel-tls", .env = "REDIS_SENTINEL_TLS", .type = OPT_BOOL,
     .group = GROUP_REDIS, .def = "false",
     .help = "Talk TLS to the sentinels (same CA and client certificate as the data nodes).",
     .offset = FIELD(redis_sentinel_tls)},
    {.flag = "redis-prefix", .env = "REDIS_PREFIX", .type = OPT_STRING, .group = GROUP_REDIS,
     .min = 0, .def = "cachegw:", .metavar = "<string>",
     .help = "Prefix of every key the gateway writes to Redis.", .offset = FIELD(redis_prefix)},
    {.flag = "redis-connect-timeout-ms", .env = "REDIS_CONNECT_TIMEOUT_MS", .type = OPT_DURATION,
     .group = GROUP_REDIS, .min = 1, .max = MS_MAX_HOUR, .unit_ms = 1, .def = "2000",
     .help = "Timeout for connecting to Redis.", .offset = FIELD(redis_connect_timeout_ms)},
    {.flag = "redis-timeout-ms", .env = "REDIS_TIMEOUT_MS", .type = OPT_DURATION,
     .group = GROUP_REDIS, .min = 1, .max = MS_MAX_HOUR, .unit_ms = 1, .def = "2000",
     .help = "Timeout of one Redis command.", .offset = FIELD(redis_timeout_ms)},
    {.flag = "redis-pool-size", .env = "REDIS_POOL_SIZE", .type = OPT_INT, .group = GROUP_REDIS,
     .min = 1, .max = 1024, .def = "10", .help = "Redis connections in the pool (1-1024).",
     .offset = FIELD(redis_pool_size)},
    {.flag = "redis-health-interval", .env = "REDIS_HEALTH_INTERVAL", .type = OPT_DURATION,
     .group = GROUP_REDIS, .min = 1, .max = 86400, .unit_ms = 1000, .def = "30",
     .help = "Interval between health checks of an unreachable Redis.",
     .offset = FIELD(redis_health_interval_s)},
    {.flag = "redis-retries", .env = "REDIS_RETRIES", .type = OPT_INT, .group = GROUP_REDIS,
     .min = 0, .max = 100, .def = "1",
     .help = "Retries of a failed Redis command on a fresh connection (0-100).",
     .offset = FIELD(redis_retries)},
    {.flag = "redis-tls-ca-file", .env = "REDIS_TLS_CA_FILE", .type = OPT_STRING,
     .group = GROUP_REDIS, .min = 0, .def = NULL, .def_doc = "system CA store",
     .metavar = "<path>", .help = "CA bundle that verifies the Redis server (rediss://).",
     .offset = FIELD(redis_tls_ca_file)},
    {.flag = "redis-tls-cert-file", .env = "REDIS_TLS_CERT_FILE", .type = OPT_STRING,
     .group = GROUP_REDIS, .min = 0, .def = NULL, .def_doc = "unset", .metavar = "<path>",
     .help = "Client certificate for Redis TLS.", .offset = FIELD(redis_tls_cert_file)},
    {.flag = "redis-tls-key-file", .env = "REDIS_TLS_KEY_FILE", .type = OPT_STRING,
     .group = GROUP_REDIS, .min = 0, .def = NULL, .def_doc = "unset", .metavar = "<path>",
     .help = "Private key of the client certificate.", .offset = FIELD(redis_tls_key_file)},
    {.flag = "redis-tls-insecure", .env = "REDIS_TLS_INSECURE", .type = OPT_BOOL,
     .group = GROUP_REDIS, .def = "false",
     .help = "Skip verifying the Redis server's certificate (testing only).",
     .offset = FIELD(redis_tls_insecure)},

    /* Lua policies */
    {.flag = "policies", .env = "POLICIES_DIR", .type = OPT_STRING, .group = GROUP_LUA, .min = 1,
     .def = "./policies", .metavar = "<dir>", .help = "Directory of the Lua policy files.",
     .offset = FIELD(policies_dir)},
    {.flag = "lua-dir", .env = "LUA_DIR", .type = OPT_STRING, .group = GROUP_LUA, .min = 0,
     .def = NULL, .def_doc = "../share/cachegw/lua from the binary", .metavar = "<dir>",
     .help = "Directory of the gateway's own Lua library.", .offset = FIELD(lua_dir)},
    {.flag = "lua-memory-limit", .env = "LUA_MEMORY_LIMIT", .type = OPT_SIZE, .group = GROUP_LUA,
     .min = 1024 * 1024, .max = SIZE_MAX, .def = "64MiB",
     .help = "Memory limit of each Lua state (at least 1MiB).",
     .offset = FIELD(lua_memory_bytes)},
    {.flag = "lua-instruction-limit", .env = "LUA_INSTRUCTION_LIMIT", .type = OPT_LONG,
     .group = GROUP_LUA, .min = 1, .max = LONG_MAX, .def = "1000000",
     .help = "Most Lua VM instructions one policy call may run.",
     .offset = FIELD(lua_instruction_limit)},
    {.flag = "lua-time-limit-ms", .env = "LUA_TIME_LIMIT_MS", .type = OPT_DURATION,
     .group = GROUP_LUA, .min = 1, .max = MS_MAX_HOUR, .unit_ms = 1, .def = "100",
     .help = "Most wall-clock time one policy call may take, pattern matching included.",
     .offset = FIELD(lua_time_limit_ms)},

    /* Admin */
    {.flag = "admin-token", .env = "ADMIN_TOKEN", .type = OPT_SECRET, .group = GROUP_ADMIN,
     .min = 0, .def = NULL, .def_doc = "unset (no admin listener)", .metavar = "<token>",
     .help = "Bearer token of the admin/purge API. Secret: prefer the environment, flags "
             "show in ps.",
     .offset = FIELD(admin_token)},
    {.flag = "admin-host", .env = "ADMIN_HOST", .type = OPT_IP_ADDR, .group = GROUP_ADMIN,
     .min = 1, .def = "127.0.0.1", .metavar = "<addr>",
     .help = "Address the admin listener binds to.", .offset = FIELD(admin_host)},
    {.flag = "admin-port", .env = "ADMIN_PORT", .type = OPT_INT, .group = GROUP_ADMIN, .min = 1,
     .max = 65535, .def = "8081", .help = "TCP port of the admin listener (1-65535).",
     .offset = FIELD(admin_port)},

    /* The gateway's own endpoints (on the public listener) */
    {.flag = "health-path", .env = "HEALTH_PATH", .type = OPT_STRING, .group = GROUP_LISTENER,
     .min = 0, .def = "/health", .metavar = "<path>",
     .help = "Path of the liveness endpoint on the public port; empty = not served there.",
     .offset = FIELD(health_path)},
    {.flag = "health-cache-path", .env = "HEALTH_CACHE_PATH", .type = OPT_STRING,
     .group = GROUP_LISTENER, .min = 0, .def = "/health/cache", .metavar = "<path>",
     .help = "Path of the cache health endpoint on the public port; empty = not served there.",
     .offset = FIELD(health_cache_path)},
    {.flag = "metrics-path", .env = "METRICS_PATH", .type = OPT_STRING, .group = GROUP_LISTENER,
     .min = 0, .def = "/metrics", .metavar = "<path>",
     .help = "Path of the Prometheus endpoint on the public port; empty = not served there.",
     .offset = FIELD(metrics_path)},
    {.flag = "health-degraded-status", .env = "HEALTH_DEGRADED_STATUS", .type = OPT_INT,
     .group = GROUP_LISTENER, .min = 200, .max = 599, .def = "200",
     .help = "HTTP status of the cache health endpoint while it reports degraded (Redis "
             "down, serving from memory): 200 keeps load balancers sending traffic.",
     .offset = FIELD(health_degraded_status)},
    {.flag = "debug-headers", .env = "DEBUG_HEADERS", .type = OPT_BOOL, .group = GROUP_LOGGING,
     .def = "false",
     .help = "Put the cache key in every Cache-Status (key=); without it, only requests "
             "carrying Cachegw-Debug: <ADMIN_TOKEN> get it.",
     .offset = FIELD(debug_headers)},

    /* Logging */
    {.flag = "log-level", .env = "LOG_LEVEL", .type = OPT_LOG_LEVEL, .group = GROUP_LOGGING,
     .def = "info", .help = "Least severe level logged.", .offset = FIELD(log_level)},
    {.flag = "log-format", .env = "LOG_FORMAT", .type = OPT_CHOICE, .group = GROUP_LOGGING,
     .def = "text", .choices = LOG_FORMAT_CHOICES, .metavar = "text|json",
     .help = "Application log lines: text, or one JSON object per line (time, level, msg).",
     .offset = FIELD(log_format)},
    {.flag = "access-log", .env = "ACCESS_LOG", .type = OPT_LOG_TARGET, .group = GROUP_LOGGING,
     .def = "off", .metavar = "off|stderr|stdout|<path>",
     .help = "One line per request, whatever LOG_LEVEL is: off, stderr, stdout, or a file "
             "(appended; reopened on SIGUSR1 for logrotate).  true/false mean stderr/off; the "
             "flag alone means stderr.",
     .offset = FIELD(access_log), .offset2 = FIELD(access_log_path)},
    {.flag = "access-log-format", .env = "ACCESS_LOG_FORMAT", .type = OPT_CHOICE,
     .group = GROUP_LOGGING, .def = "combined", .choices = ACCESS_LOG_FORMAT_CHOICES,
     .metavar = "combined|json",
     .help = "combined (as nginx and Apache write it), or one JSON object per line.",
     .offset = FIELD(access_log_format)},
    {.flag = "access-log-redact", .env = "ACCESS_LOG_REDACT", .type = OPT_NAME_LIST,
     .group = GROUP_LOGGING, .def = "token,key,password,passwd,secret,signature,sig,auth,session,"
                                    "credential,code",
     .metavar = "<names>",
     .help = "Query parameters whose name contains one of these (case ignored) are logged as "
             "name=***; empty = none.",
     .offset = FIELD(access_log_redact)},

    /* General (flags only) */
    {.flag = "check", .env = NULL, .type = OPT_BOOL, .group = GROUP_GENERAL, .def = "false",
     .help = "Load and validate the configuration and the policies, then exit.",
     .offset = FIELD(check_only)},
    {.flag = "dump", .env = NULL, .type = OPT_BOOL, .group = GROUP_GENERAL, .def = "false",
     .help = "With --check: also print the effective configuration (every option, its value "
             "and where it came from; secrets masked) and the route table.",
     .offset = FIELD(dump)},
};

#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])
_Static_assert(N_OPTIONS <= CONFIG_MAX_OPTIONS, "raise CONFIG_MAX_OPTIONS in config.h");

/* Room for a quoted value in an error line; longer values are cut. */
#define SHOWN_VALUE_MAX 80

static void *field_ptr(struct config *cfg, const struct opt *o)
{
    return (char *)cfg + o->offset;
}

static bool opt_is_string(const struct opt *o)
{
    return o->type == OPT_STRING || o->type == OPT_SECRET || o->type == OPT_HTTP_URL ||
           o->type == OPT_REDIS_URL || o->type == OPT_IP_ADDR || o->type == OPT_HOST_PORT ||
           o->type == OPT_NAME_LIST;
}

static bool opt_is_secret(const struct opt *o)
{
    return o->type == OPT_SECRET || o->type == OPT_REDIS_URL;
}

/* Writes "--flag (ENV)" or "--flag" into buf. */
static void opt_name(const struct opt *o, char *buf, size_t len)
{
    if (o->env != NULL)
        snprintf(buf, len, "--%s (%s)", o->flag, o->env);
    else
        snprintf(buf, len, "--%s", o->flag);
}

/* Copies a value for an error line: cut to SHOWN_VALUE_MAX bytes, control
 * characters replaced, so err stays one printable line. */
static void sanitize(const char *s, char *buf, size_t len)
{
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < len && i < SHOWN_VALUE_MAX; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = '\0';
    if (s[i] != '\0' && i >= 3) memcpy(buf + i - 3, "...", 3);
}

/* Writes the form of a value that an error line may show. */
static void shown_value(const struct opt *o, const char *value, char *buf, size_t len)
{
    char tmp[512];
    if (o->type == OPT_REDIS_URL || o->type == OPT_HTTP_URL) {
        /* An http URL may carry user:password too; the same redaction fits. */
        redis_url_redacted(value, tmp, sizeof tmp);
        sanitize(tmp, buf, len);
    } else if (opt_is_secret(o)) {
        snprintf(buf, len, "<redacted>");
    } else {
        sanitize(value, buf, len);
    }
}

static void invalid(const struct opt *o, const char *value, const char *expected, char *err,
                    size_t err_len)
{
    char name[128], shown[SHOWN_VALUE_MAX + 8];
    opt_name(o, name, sizeof name);
    shown_value(o, value, shown, sizeof shown);
    snprintf(err, err_len, "invalid value for %s: '%s' (%s)", name, shown, expected);
}

/* Reads a decimal number made only of digits; *end is left at the first
 * other character.  Returns -1 if there is no digit or it overflows. */
static int parse_digits(const char *s, unsigned long long *out, const char **end)
{
    unsigned long long v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (ULLONG_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    *end = p;
    return 0;
}

static int parse_size(const char *s, unsigned long long *out)
{
    static const struct {
        const char *suffix;
        unsigned long long mult;
    } UNITS[] = {
        {"", 1ULL},
        {"b", 1ULL},
        {"k", 1ULL << 10}, {"kb", 1ULL << 10}, {"kib", 1ULL << 10},
        {"m", 1ULL << 20}, {"mb", 1ULL << 20}, {"mib", 1ULL << 20},
        {"g", 1ULL << 30}, {"gb", 1ULL << 30}, {"gib", 1ULL << 30},
        {"t", 1ULL << 40}, {"tb", 1ULL << 40}, {"tib", 1ULL << 40},
    };
    unsigned long long n;
    const char *end;
    if (parse_digits(s, &n, &end) != 0) return -1;
    for (size_t i = 0; i < sizeof UNITS / sizeof UNITS[0]; i++) {
        if (strcasecmp(end, UNITS[i].suffix) != 0) continue;
        if (n > ULLONG_MAX / UNITS[i].mult) return -1;
        *out = n * UNITS[i].mult;
        return 0;
    }
    return -1;
}

/* Parses a duration into units of unit_ms milliseconds.  A bare number is
 * already in those units; a suffixed one must convert exactly. */
static int parse_duration(const char *s, int unit_ms, unsigned long long *out)
{
    static const struct {
        const char *suffix;
        unsigned long long ms;
    } UNITS[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    unsigned long long n;
    const char *end;
    if (parse_digits(s, &n, &end) != 0) return -1;
    if (*end == '\0') {
        *out = n;
        return 0;
    }
    for (size_t i = 0; i < sizeof UNITS / sizeof UNITS[0]; i++) {
        if (strcmp(end, UNITS[i].suffix) != 0) continue;
        if (n > ULLONG_MAX / UNITS[i].ms) return -1;
        unsigned long long ms = n * UNITS[i].ms;
        if (ms % (unsigned long long)unit_ms != 0) return -1;
        *out = ms / (unsigned long long)unit_ms;
        return 0;
    }
    return -1;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const YES[] = {"true", "1", "yes", "on"};
    static const char *const NO[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, YES[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, NO[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

/* Checks http(s)://host[:port][/prefix] and returns a copy without trailing
 * slashes in *out.  Returns -1 if invalid, -ENOMEM if out of memory. */
static int normalize_http_url(const char *s, char **out)
{
    const char *p;
    if (strncasecmp(s, "http://", 7) == 0)
        p = s + 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        p = s + 8;
    else
        return -1;

    const char *host = p;
    if (*p == '[') {
        p++;
        while (*p != '\0' && *p != ']') {
            if (!(*p == ':' || *p == '.' || (*p >= '0' && *p <= '9') ||
                  (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
                return -1;
            p++;
        }
        if (*p != ']' || p == host + 1) return -1;
        p++;
    } else {
        while (host_char_ok(*p)) p++;
        if (p == host) return -1;
    }
    if (*p == ':') {
        unsigned long long port;
        const char *end;
        if (parse_digits(p + 1, &port, &end) != 0 || port < 1 || port > 65535) return -1;
        p = end;
    }
    if (*p != '\0' && *p != '/') return -1;
    /* The prefix is joined with request paths, so it may hold path characters
     * only: no query, fragment or spaces. */
    for (const char *q = p; *q != '\0'; q++)
        if (*q == '?' || *q == '#' || (unsigned char)*q <= 0x20 || *q == 0x7f) return -1;

    size_t len = strlen(s);
    while (len > (size_t)(p - s) && s[len - 1] == '/') len--;
    *out = strndup(s, len);
    return *out == NULL ? -ENOMEM : 0;
}

static bool is_ip_literal(const char *s)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

/* host[:port] as a Host-style header value: a name or IPv4 address of
 * host_char_ok characters, or a bracketed IPv6 literal, then an optional port. */
static bool is_host_port(const char *s)
{
    const char *p = s;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        char v6[INET6_ADDRSTRLEN + 1];
        unsigned char addr[sizeof(struct in6_addr)];
        size_t n = close != NULL ? (size_t)(close - p - 1) : 0;
        if (close == NULL || n == 0 || n >= sizeof v6) return false;
        memcpy(v6, p + 1, n);
        v6[n] = '\0';
        if (inet_pton(AF_INET6, v6, addr) != 1) return false;
        p = close + 1;
    } else {
        while (host_char_ok(*p)) p++;
        if (p == s) return false;
    }
    if (*p == '\0') return true;
    unsigned long long port;
    const char *end;
    return *p == ':' && parse_digits(p + 1, &port, &end) == 0 && *end == '\0' && port >= 1 &&
           port <= 65535;
}

static int set_string(char **field, const char *value, bool secret)
{
    char *copy = NULL;
    if (value != NULL) {
        copy = strdup(value);
        if (copy == NULL) return -ENOMEM;
    }
    if (*field != NULL) {
        if (secret) explicit_bzero(*field, strlen(*field));
        free(*field);
    }
    *field = copy;
    return 0;
}

/* Parses text into o's field.  Returns 0, or -1 with one line in err. */
static int opt_apply(const struct opt *o, struct config *cfg, const char *text, char *err,
                     size_t err_len)
{
    void *field = field_ptr(cfg, o);
    char expected[128];
    unsigned long long n;

    /* An empty value unsets an option that has no default, so that
     * "REDIS_URL=" in the environment can switch off a .env setting. */
    if (opt_is_string(o) && text != NULL && *text == '\0' && o->def == NULL) text = NULL;

    switch (o->type) {
    case OPT_STRING:
    case OPT_SECRET:
        if (text != NULL && strlen(text) < o->min) {
            invalid(o, text, "expected a non-empty value", err, err_len);
            return -1;
        }
        /* A token is compared with an Authorization header, which can't
         * carry spaces or control characters: such a token would lock
         * everyone out, most likely from a stray newline in a secret file. */
        if (o->type == OPT_SECRET && text != NULL) {
            for (const char *p = text; *p != '\0'; p++) {
                if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
                    invalid(o, text, "expected printable characters without spaces", err,
                            err_len);
                    return -1;
                }
            }
        }
        if (set_string(field, text, o->type == OPT_SECRET) != 0) goto oom;
        return 0;

    case OPT_HTTP_URL: {
        char *url = NULL;
        if (text != NULL) {
            int r = normalize_http_url(text, &url);
            if (r == -ENOMEM) goto oom;
            if (r != 0) {
                invalid(o, text, "expected http://host[:port][/prefix]", err, err_len);
                return -1;
            }
        }
        free(*(char **)field);
        *(char **)field = url;
        return 0;
    }

    case OPT_IP_ADDR:
        if (text != NULL && !is_ip_literal(text)) {
            invalid(o, text,
                    "expected an IP address such as 0.0.0.0, 127.0.0.1, :: or ::1; names such as "
                    "localhost are not resolved",
                    err, err_len);
            return -1;
        }
        if (set_string(field, text, false) != 0) goto oom;
        return 0;

    case OPT_HOST_PORT:
        if (text != NULL && !is_host_port(text)) {
            invalid(o, text, "expected host[:port], such as api.example.com or [::1]:8443", err,
                    err_len);
            return -1;
        }
        if (set_string(field, text, false) != 0) goto oom;
        return 0;

    case OPT_REDIS_URL:
        if (text != NULL) {
            struct redis_url u;
            char why[128];
            int r = redis_url_parse(text, &u, why, sizeof why);
            redis_url_free(&u);
            if (r == -ENOMEM) goto oom;
            if (r != 0) {
                invalid(o, text, why, err, err_len);
                return -1;
            }
        }
        if (set_string(field, text, true) != 0) goto oom;
        return 0;

    case OPT_INT:
    case OPT_LONG: {
        const char *end;
        if (parse_digits(text, &n, &end) != 0 || *end != '\0' || n < o->min || n > o->max) {
            snprintf(expected, sizeof expected, "expected an integer from %llu to %llu", o->min,
                     o->max);
            invalid(o, text, expected, err, err_len);
            return -1;
        }
        if (o->type == OPT_INT)
            *(int *)field = (int)n;
        else
            *(long *)field = (long)n;
        return 0;
    }

    case OPT_SIZE:
        if (parse_size(text, &n) != 0) {
            invalid(o, text, "expected a size such as 256MiB", err, err_len);
            return -1;
        }
        if (n < o->min || n > o->max) {
            snprintf(expected, sizeof expected, "expected a size of at least %llu bytes", o->min);
            invalid(o, text, expected, err, err_len);
            return -1;
        }
        *(size_t *)field = (size_t)n;
        return 0;

    case OPT_DURATION:
        if (parse_duration(text, o->unit_ms, &n) != 0 || n < o->min || n > o->max) {
            const char *unit = o->unit_ms == 1 ? "milliseconds" : "seconds";
            snprintf(expected, sizeof expected,
                     "expected %s from %llu to %llu, or a duration such as %s", unit, o->min,
                     o->max, o->unit_ms == 1 ? "1500ms or 2s" : "90s or 5m");
            invalid(o, text, expected, err, err_len);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;

    case OPT_BOOL:
        if (parse_bool(text, field) != 0) {
            invalid(o, text, "expected true/false, yes/no, on/off or 1/0", err, err_len);
            return -1;
        }
        return 0;

    case OPT_CHOICE: {
        for (int i = 0; o->choices[i] != NULL; i++) {
            if (text != NULL && strcasecmp(text, o->choices[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        snprintf(expected, sizeof expected, "expected %s", o->metavar);
        invalid(o, text, expected, err, err_len);
        return -1;
    }

    case OPT_LOG_TARGET: {
        /* Named targets first, then the old boolean spellings; anything else is a path. */
        static const struct { const char *name; int target; } NAMED[] = {
            {"off", ACCESS_LOG_OFF},       {"stderr", ACCESS_LOG_STDERR},
            {"stdout", ACCESS_LOG_STDOUT}, {"false", ACCESS_LOG_OFF},
            {"no", ACCESS_LOG_OFF},        {"0", ACCESS_LOG_OFF},
            {"true", ACCESS_LOG_STDERR},   {"yes", ACCESS_LOG_STDERR},
            {"on", ACCESS_LOG_STDERR},     {"1", ACCESS_LOG_STDERR}};
        char **path = (char **)((char *)cfg + o->offset2);
        if (text == NULL || *text == '\0') {
            invalid(o, text, "expected off, stderr, stdout or a file path", err, err_len);
            return -1;
        }
        for (size_t i = 0; i < sizeof NAMED / sizeof NAMED[0]; i++) {
            if (strcasecmp(text, NAMED[i].name) == 0) {
                *(int *)field = NAMED[i].target;
                free(*path);
                *path = NULL;
                return 0;
            }
        }
        /* A path must contain a '/' (/var/log/..., ./access.log): a misspelt
         * keyword ("stdrr") is refused rather than becoming a file of that name. */
        bool has_slash = strchr(text, '/') != NULL;
        for (const char *p = text; *p != '\0' && has_slash; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) has_slash = false;
        if (!has_slash) {
            invalid(o, text,
                    "expected off, stderr, stdout or a file path containing a '/' (such as "
                    "./access.log), without control characters",
                    err, err_len);
            return -1;
        }
        if (set_string(path, text, false) != 0) goto oom;
        *(int *)field = ACCESS_LOG_FILE;
        return 0;
    }

    case OPT_NAME_LIST:
        for (const char *p = text ? text : ""; *p != '\0'; p++) {
            bool name_char = isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-';
            bool sep_ok = *p == ',' && p != text && p[1] != '\0' && p[1] != ',';
            if (!name_char && !sep_ok) {
                invalid(o, text, "expected names of letters, digits, _ . - separated by commas",
                        err, err_len);
                return -1;
            }
        }
        if (set_string(field, text, false) != 0) goto oom;
        return 0;

    case OPT_LOG_LEVEL: {
        int level = log_level_parse(text);
        if (level < 0) {
            invalid(o, text, "expected debug, info, warn or error", err, err_len);
            return -1;
        }
        *(int *)field = level;
        return 0;
    }
    }
    snprintf(err, err_len, "internal error: option --%s has no type", o->flag);
    return -1;

oom:
    snprintf(err, err_len, "out of memory while reading --%s", o->flag);
    return -1;
}

static const struct opt *find_by_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(OPTIONS[i].flag) == len && strncmp(OPTIONS[i].flag, name, len) == 0)
            return &OPTIONS[i];
    return NULL;
}

/* The option stored at offset in struct config (its names, for messages). */
static const struct opt *find_by_offset(size_t offset)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (OPTIONS[i].offset == offset) return &OPTIONS[i];
    return NULL;
}

/* The string option stored at offset in cfg. */
static const char *string_at(const struct config *cfg, size_t offset)
{
    return *(char *const *)((const char *)cfg + offset);
}

static const struct opt *find_by_env(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (OPTIONS[i].env != NULL && strcmp(OPTIONS[i].env, name) == 0) return &OPTIONS[i];
    return NULL;
}

/* Edit distance between a and b, ignoring case, with a swap of two adjacent
 * characters counted as one edit (optimal string alignment): "ULR" is one edit
 * from "URL".  Names longer than NAME_MAX_CMP count as far from everything. */
#define NAME_MAX_CMP 48
static size_t name_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > NAME_MAX_CMP || lb > NAME_MAX_CMP) return SIZE_MAX;
    size_t d[NAME_MAX_CMP + 1][NAME_MAX_CMP + 1];
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            char ca = (char)toupper((unsigned char)a[i - 1]);
            char cb = (char)toupper((unsigned char)b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == toupper((unsigned char)b[j - 2]) &&
                toupper((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *config_env_suggestion(const char *key)
{
    size_t len = strlen(key);
    /* Short names need a closer match: PATH, HOME and "export" are two edits
     * from PORT or HOST, and are not meant as either. */
    size_t max_dist = len <= 6 ? 1 : 2;
    const char *best = NULL, *prefixed = NULL;
    size_t best_dist = SIZE_MAX;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *env = OPTIONS[i].env;
        if (env == NULL) continue;
        size_t dist = name_distance(key, env);
        if (dist < best_dist) {
            best_dist = dist;
            best = env;
        }
        /* UPSTREAM= for UPSTREAM_URL: the key is a leading part of a name, cut at a
         * '_'; the shortest such name is the likeliest. */
        if (len >= 3 && strlen(env) > len && env[len] == '_' && strncasecmp(env, key, len) == 0 &&
            (prefixed == NULL || strlen(env) < strlen(prefixed)))
            prefixed = env;
    }
    if (best != NULL && best_dist <= max_dist) return best;
    return prefixed;
}

/* Collects flag values into vals (borrowed from argv), last one winning. */
static int parse_args(int argc, char **argv, const char **vals, char *err, size_t err_len)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        char shown[SHOWN_VALUE_MAX + 8];
        if (arg[0] != '-' || strcmp(arg, "--") == 0 || strcmp(arg, "-") == 0) {
            /* Never echoed: a stray word is often a secret that lost its flag
             * ("--admin-token= s3cr3t").  Its position and the flag before it say
             * enough to find it. */
            if (i > 1 && argv[i - 1][0] == '-') {
                char prev[SHOWN_VALUE_MAX + 8];
                const char *pe = strchr(argv[i - 1], '=');
                size_t pl = pe ? (size_t)(pe - argv[i - 1]) : strlen(argv[i - 1]);
                snprintf(shown, sizeof shown, "%.*s", (int)(pl < SHOWN_VALUE_MAX ? pl : SHOWN_VALUE_MAX),
                         argv[i - 1]);
                sanitize(shown, prev, sizeof prev);
                snprintf(err, err_len,
                         "unexpected argument #%d after '%s' (value not shown; write "
                         "--name=value; see --help)",
                         i, prev);
            } else {
                snprintf(err, err_len,
                         "unexpected argument #%d (value not shown; options are written "
                         "--name=value; see --help)",
                         i);
            }
            return -1;
        }
        const char *name = arg + (arg[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t name_len = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const struct opt *o = arg[1] == '-' ? find_by_flag(name, name_len) : NULL;
        if (o == NULL) {
            /* Only the name is echoed: the value might be a mistyped secret. */
            char flag[SHOWN_VALUE_MAX + 8];
            int n = (int)(eq != NULL ? eq - arg : (ptrdiff_t)strlen(arg));
            snprintf(flag, sizeof flag, "%.*s", n, arg);
            sanitize(flag, shown, sizeof shown);
            snprintf(err, err_len, "unknown option '%s' (see --help)", shown);
            return -1;
        }
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (o->type == OPT_BOOL) {
            value = "true";
        } else if (o->type == OPT_LOG_TARGET &&
                   (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) {
            value = "stderr"; /* --access-log alone, as when it was a boolean */
        } else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
            value = argv[++i];
        } else {
            char oname[128];
            opt_name(o, oname, sizeof oname);
            snprintf(err, err_len, "missing value for %s", oname);
            return -1;
        }
        vals[o - OPTIONS] = value;
    }
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

static bool valid_key(const char *k)
{
    if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || *k == '_')) return false;
    for (k++; *k != '\0'; k++)
        if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') ||
              (*k >= '0' && *k <= '9') || *k == '_'))
            return false;
    return true;
}

/* Decodes the value part of a .env line in place: quotes, escapes, a
 * trailing comment.  Returns the value, or NULL with *why set. */
static char *dotenv_value(char *v, const char **why)
{
    if (*v == '"' || *v == '\'') {
        char quote = *v;
        char *r = v + 1, *w = v;
        for (;; r++) {
            if (*r == '\0') {
                *why = "unterminated quoted value";
                return NULL;
            }
            if (*r == quote) break;
            if (quote == '"' && *r == '\\' && r[1] != '\0') {
                switch (r[1]) {
                case 'n': *w++ = '\n'; r++; continue;
                case 't': *w++ = '\t'; r++; continue;
                case '"': *w++ = '"'; r++; continue;
                case '\\': *w++ = '\\'; r++; continue;
                default: break; /* other backslashes stay literal */
                }
            }
            *w++ = *r;
        }
        char *after = trim(r + 1);
        if (*after != '\0' && *after != '#') {
            *why = "unexpected text after the closing quote";
            return NULL;
        }
        *w = '\0';
        return v;
    }
    /* Unquoted: a '#' after whitespace starts a comment; one inside a word
     * (as in a URL fragment or password) is kept. */
    for (char *p = v; *p != '\0'; p++) {
        if (*p == '#' && (p == v || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    }
    return trim(v);
}

/* Reads the .env file at path into vals (owned copies, indexed like OPTIONS).
 * Keys that name no option are skipped, with a warning when they look like one
 * (config_env_suggestion); a missing file is not an error. */
static int dotenv_read(const char *path, char **vals, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (errno == ENOENT) return 0;
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = -1;
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) != -1) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#') continue;
        if (strncmp(s, "export", 6) == 0 && (s[6] == ' ' || s[6] == '\t')) s = trim(s + 6);
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(err, err_len, "%s:%u: expected KEY=VALUE", path, lineno);
            goto done;
        }
        *eq = '\0';
        char *key = trim(s);
        if (!valid_key(key)) {
            snprintf(err, err_len, "%s:%u: invalid key (expected KEY=VALUE)", path, lineno);
            goto done;
        }
        const char *why = NULL;
        char *value = dotenv_value(trim(eq + 1), &why);
        if (value == NULL) {
            snprintf(err, err_len, "%s:%u: %s for %.64s", path, lineno, why, key);
            goto done;
        }
        const struct opt *o = find_by_env(key);
        if (o == NULL) {
            /* A .env file is often shared with the application, so a key that is
             * not ours is skipped quietly; one that looks like ours is a typo that
             * would otherwise leave the default in force without a word. */
            const char *meant = config_env_suggestion(key);
            if (meant != NULL)
                LOG_W("%s:%u: unknown key %.64s ignored; did you mean %s?", path, lineno, key,
                      meant);
            continue;
        }
        char *copy = strdup(value);
        if (copy == NULL) {
            snprintf(err, err_len, "out of memory reading %s", path);
            goto done;
        }
        size_t idx = (size_t)(o - OPTIONS);
        if (vals[idx] != NULL) explicit_bzero(vals[idx], strlen(vals[idx]));
        free(vals[idx]);
        vals[idx] = copy;
    }
    if (ferror(f)) {
        snprintf(err, err_len, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (line != NULL) explicit_bzero(line, cap);
    free(line);
    fclose(f);
    return rc;
}

void config_defaults(struct config *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (opt_apply(&OPTIONS[i], cfg, OPTIONS[i].def, err, sizeof err) != 0) {
            /* Only a bad default in the table or an allocation failure at
             * start-up can get here; neither leaves a usable gateway. */
            fprintf(stderr, "cachegw: config defaults: %s\n", err);
            abort();
        }
    }
}

/* Lists checked as a whole once loaded (their element grammar is not a type). */
static int validate_ip_sets(const struct config *cfg, char *err, size_t err_len)
{
    struct ip_set *set = NULL;
    char bad[64], shown[SHOWN_VALUE_MAX + 8];
    if (ip_set_parse(cfg->trusted_proxies, &set, bad, sizeof bad) != 0) {
        sanitize(bad, shown, sizeof shown);
        snprintf(err, err_len,
                 "invalid value for --trusted-proxies (TRUSTED_PROXIES): '%s' (expected IP "
                 "addresses or CIDR ranges, comma-separated)",
                 shown);
        return -1;
    }
    ip_set_free(set);
    return 0;
}

static bool is_wildcard(const char *addr)
{
    return strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0;
}

/* Values that are each well-formed but cannot work together, or name files
 * that are not there: found here, they stop --check and start-up with exit 2
 * and one line, instead of a failure half-way through start-up. */
/* REDIS_MODE against REDIS_URL and the sentinel options. */
static int validate_redis_topology(const struct config *cfg, char *err, size_t err_len)
{
    if (cfg->redis_sentinels != NULL) {
        struct redis_url_node *nodes;
        size_t n;
        char why[160];
        if (redis_url_parse_nodes(cfg->redis_sentinels, &nodes, &n, why, sizeof why) != 0) {
            snprintf(err, err_len,
                     "invalid value for --redis-sentinels (REDIS_SENTINELS): %s (expected "
                     "host:port[,host:port...])",
                     why);
            return -1;
        }
        redis_url_nodes_free(nodes, n);
    }
    if (cfg->redis_mode == CONFIG_REDIS_SENTINEL) {
        if (cfg->redis_sentinels == NULL || cfg->redis_sentinel_master == NULL) {
            snprintf(err, err_len,
                     "invalid value for --redis-mode (REDIS_MODE): 'sentinel' needs "
                     "--redis-sentinels (REDIS_SENTINELS) and --redis-sentinel-master "
                     "(REDIS_SENTINEL_MASTER)");
            return -1;
        }
        if (cfg->redis_url == NULL) {
            snprintf(err, err_len,
                     "invalid value for --redis-mode (REDIS_MODE): 'sentinel' needs --redis-url "
                     "(REDIS_URL) for the data nodes' credentials and TLS (its host is not used)");
            return -1;
        }
        for (const char *c = cfg->redis_sentinel_master; *c; c++) {
            if ((unsigned char)*c <= ' ' || *c == 0x7f) {
                snprintf(err, err_len,
                         "invalid value for --redis-sentinel-master (REDIS_SENTINEL_MASTER): "
                         "spaces and control characters are not allowed");
                return -1;
            }
        }
    } else if (cfg->redis_sentinels != NULL || cfg->redis_sentinel_master != NULL) {
        snprintf(err, err_len,
                 "invalid value for --redis-sentinels (REDIS_SENTINELS): sentinels are used only "
                 "with --redis-mode sentinel (REDIS_MODE=sentinel)");
        return -1;
    }
    if (cfg->redis_mode == CONFIG_REDIS_STANDALONE && cfg->redis_url != NULL &&
        strchr(cfg->redis_url, ',') != NULL) {
        struct redis_url u;
        if (redis_url_parse(cfg->redis_url, &u, NULL, 0) == 0 && u.n_nodes > 1) {
            redis_url_free(&u);
            snprintf(err, err_len,
                     "invalid value for --redis-mode (REDIS_MODE): 'standalone' takes one node, "
                     "but --redis-url (REDIS_URL) lists several (use cluster or auto)");
            return -1;
        }
        redis_url_free(&u);
    }
    return 0;
}

/* RFC 9110 §5.6.2 tchar without '*' (a star is only a whole subtype here). */
#define MEDIA_TCHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'+-.^_`|~"

/* Issue 12 options whose values are checked beyond their type. */
static int validate_rfc_options(const struct config *cfg, char *err, size_t err_len)
{
    const char *t = cfg->targeted_cache_control;
    if (t != NULL && t[0] != '\0' &&
        (strchr(t, ',') != NULL || strcasecmp(t, "cache-control") == 0 ||
         strcasecmp(t, "cdn-cache-control") == 0)) {
        snprintf(err, err_len,
                 "invalid value for --targeted-cache-control (TARGETED_CACHE_CONTROL): one "
                 "field name other than Cache-Control and CDN-Cache-Control");
        return -1;
    }
    for (const char *p = cfg->compress ? cfg->compress : ""; *p;) {
        size_t n = strcspn(p, ",");
        if (n > 0 && !(n == 4 && strncasecmp(p, "gzip", 4) == 0) &&
            !(n == 2 && strncasecmp(p, "br", 2) == 0)) {
            snprintf(err, err_len,
                     "invalid value for --compress (COMPRESS): '%.*s' (gzip, br, or both)",
                     (int)(n > 32 ? 32 : n), p);
            return -1;
        }
        p += n;
        if (*p == ',') p++;
    }
    /* A media type is "type/subtype" or "type/" followed by a star (compress.c): anything
     * else would never match a Content-Type, silently compressing nothing. */
    for (const char *p = cfg->compress_types ? cfg->compress_types : ""; *p;) {
        while (*p == ' ' || *p == ',') p++;
        size_t n = strcspn(p, ",");
        while (n > 0 && p[n - 1] == ' ') n--;
        if (n == 0) continue;
        size_t major = strspn(p, MEDIA_TCHARS);
        size_t minor = major < n && p[major] == '/' ? strspn(p + major + 1, MEDIA_TCHARS) : 0;
        bool star = major < n && p[major] == '/' && major + 2 == n && p[major + 1] == '*';
        if (major == 0 || !(star || (minor > 0 && major + 1 + minor == n))) {
            snprintf(err, err_len,
                     "invalid value for --compress-types (COMPRESS_TYPES): '%.*s' (media types "
                     "such as application/json or text/*, comma-separated)",
                     (int)(n > 64 ? 64 : n), p);
            return -1;
        }
        p += n;
    }
    return 0;
}

/* The gateway's own endpoint paths: each empty (not served) or a path a request
 * can match (request_steps compares the path without its query, under 256 bytes),
 * and no two alike (the second would never answer). */
static int validate_endpoint_paths(const struct config *cfg, char *err, size_t err_len)
{
    static const size_t PATHS[] = {FIELD(health_path), FIELD(health_cache_path),
                                   FIELD(metrics_path)};
    char shown[SHOWN_VALUE_MAX + 8];
    for (size_t i = 0; i < sizeof PATHS / sizeof PATHS[0]; i++) {
        const char *p = string_at(cfg, PATHS[i]);
        const struct opt *o = find_by_offset(PATHS[i]);
        if (p == NULL || p[0] == '\0') continue;
        const char *why = NULL;
        if (p[0] != '/') why = "it must start with '/', or be empty to not serve it";
        else if (strlen(p) >= 256) why = "at most 255 bytes";
        for (const char *c = p; why == NULL && *c != '\0'; c++)
            if (*c == '?' || *c == '#' || (unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f)
                why = "a path alone: no query, fragment, space or control bytes";
        for (size_t k = 0; why == NULL && k < i; k++) {
            const char *q = string_at(cfg, PATHS[k]);
            if (q != NULL && strcmp(p, q) == 0) {
                sanitize(p, shown, sizeof shown);
                snprintf(err, err_len, "invalid value for --%s (%s): '%s' (--%s serves that path)",
                         o->flag, o->env, shown, find_by_offset(PATHS[k])->flag);
                return -1;
            }
        }
        if (why == NULL) continue;
        sanitize(p, shown, sizeof shown);
        snprintf(err, err_len, "invalid value for --%s (%s): '%s' (%s)", o->flag, o->env, shown,
                 why);
        return -1;
    }
    return 0;
}

static int validate_combined(const struct config *cfg, char *err, size_t err_len)
{
    if (validate_rfc_options(cfg, err, err_len) != 0) return -1;
    if (validate_endpoint_paths(cfg, err, err_len) != 0) return -1;
    char shown[SHOWN_VALUE_MAX + 8];
    if (cfg->dump && !cfg->check_only) {
        snprintf(err, err_len, "--dump only works with --check (cachegw --check --dump)");
        return -1;
    }
    /* The admin listener exists only with a token.  "::" may take IPv4 too. */
    if (cfg->admin_token != NULL && cfg->admin_port == cfg->port &&
        (strcmp(cfg->host, cfg->admin_host) == 0 || is_wildcard(cfg->host) ||
         is_wildcard(cfg->admin_host))) {
        snprintf(err, err_len,
                 "invalid value for --admin-port (ADMIN_PORT): '%d' (the HTTP listener already "
                 "uses port %d on %s; pick another port)",
                 cfg->admin_port, cfg->port, cfg->host);
        return -1;
    }
    if (validate_redis_topology(cfg, err, err_len) != 0) return -1;
    /* The TLS files are read only for a rediss:// URL; then each must be readable. */
    if (cfg->redis_url == NULL || strncasecmp(cfg->redis_url, "rediss://", 9) != 0) return 0;
    static const size_t FILES[] = {FIELD(redis_tls_ca_file), FIELD(redis_tls_cert_file),
                                   FIELD(redis_tls_key_file)};
    for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) {
        const char *path = string_at(cfg, FILES[i]);
        if (path == NULL || access(path, R_OK) == 0) continue;
        int e = errno;
        sanitize(path, shown, sizeof shown);
        const struct opt *o = find_by_offset(FILES[i]);
        snprintf(err, err_len, "invalid value for --%s (%s): '%s' (cannot read it: %s)", o->flag,
                 o->env, shown, strerror(e));
        return -1;
    }
    if (cfg->redis_tls_key_file != NULL && cfg->redis_tls_cert_file == NULL) {
        snprintf(err, err_len,
                 "invalid value for --redis-tls-key-file (REDIS_TLS_KEY_FILE): a client key "
                 "needs its certificate (--redis-tls-cert-file, REDIS_TLS_CERT_FILE)");
        return -1;
    }
    return 0;
}

enum config_result config_load(struct config *cfg, int argc, char **argv,
                               const char *dotenv_path, char *err, size_t err_len)
{
    const char *flag_vals[N_OPTIONS] = {0};
    char *dotenv_vals[N_OPTIONS] = {0};
    char scratch[8];
    enum config_result rc = CONFIG_ERROR;

    if (err == NULL || err_len == 0) {
        err = scratch;
        err_len = sizeof scratch;
    }
    err[0] = '\0';
    memset(cfg, 0, sizeof *cfg);

    /* --help and --version win over anything else on the line, even errors:
     * a value can never be "--help" because values starting with "--" must be
     * written --name=value. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            config_print_help(stdout);
            return CONFIG_EXIT_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("cachegw %s\n", CACHEGW_VERSION);
            return CONFIG_EXIT_OK;
        }
    }

    if (parse_args(argc, argv, flag_vals, err, err_len) != 0) goto done;
    if (dotenv_read(dotenv_path != NULL ? dotenv_path : ".env", dotenv_vals, err, err_len) != 0)
        goto done;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct opt *o = &OPTIONS[i];
        const char *text = flag_vals[i];
        enum config_source src = CONFIG_SOURCE_FLAG;
        if (text == NULL && o->env != NULL) {
            text = getenv(o->env);
            src = CONFIG_SOURCE_ENV;
        }
        if (text == NULL) {
            text = dotenv_vals[i];
            src = CONFIG_SOURCE_DOTENV;
        }
        if (text == NULL) {
            text = o->def;
            src = CONFIG_SOURCE_DEFAULT;
        }
        if (opt_apply(o, cfg, text, err, err_len) != 0) goto done;
        cfg->source[i] = (unsigned char)src;
    }
    if (validate_ip_sets(cfg, err, err_len) != 0) goto done;
    if (validate_combined(cfg, err, err_len) != 0) goto done;
    rc = CONFIG_OK;

done:
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (dotenv_vals[i] != NULL) explicit_bzero(dotenv_vals[i], strlen(dotenv_vals[i]));
        free(dotenv_vals[i]);
    }
    if (rc != CONFIG_OK) config_free(cfg);
    return rc;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL) return;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const struct opt *o = &OPTIONS[i];
        if (o->type == OPT_LOG_TARGET) {
            char **path = (char **)((char *)cfg + o->offset2);
            free(*path);
            *path = NULL;
        }
        if (!opt_is_string(o)) continue;
        char **field = field_ptr(cfg, o);
        if (*field != NULL && opt_is_secret(o)) explicit_bzero(*field, strlen(*field));
        free(*field);
        *field = NULL;
    }
    memset(cfg, 0, sizeof *cfg);
}

static const char *metavar(const struct opt *o)
{
    if (o->metavar != NULL) return o->metavar;
    switch (o->type) {
    case OPT_INT:
    case OPT_LONG: return "<n>";
    case OPT_SIZE: return "<size>";
    case OPT_DURATION: return o->unit_ms == 1 ? "<ms>" : "<seconds>";
    case OPT_BOOL: return "[=<bool>]";
    case OPT_LOG_LEVEL: return "<level>";
    case OPT_NAME_LIST: return "<names>";
    case OPT_HTTP_URL:
    case OPT_REDIS_URL: return "<url>";
    default: return "<string>";
    }
}

/* Prints text indented by 6 columns, wrapped at spaces to fit 80 columns. */
static void print_wrapped(FILE *out, const char *text)
{
    enum { INDENT = 6, WIDTH = 80 - INDENT };
    const char *p = text;
    while (*p != '\0') {
        size_t n = strlen(p);
        if (n > WIDTH) {
            n = WIDTH;
            while (n > 0 && p[n] != ' ') n--;
            if (n == 0) n = strcspn(p, " "); /* one word longer than a line */
        }
        fprintf(out, "%*s%.*s\n", INDENT, "", (int)n, p);
        p += n;
        while (*p == ' ') p++;
    }
}

void config_print_help(void *stream)
{
    FILE *out = stream;
    fprintf(out,
            "Usage: cachegw [options]\n"
            "\n"
            "A caching HTTP gateway. Every option can also be set through its environment\n"
            "variable or in a .env file in the working directory; a flag wins over the\n"
            "environment, which wins over .env, which wins over the default.\n"
            "Sizes take k/KB/KiB, m/MB/MiB, g/GB/GiB suffixes (all powers of 1024);\n"
            "durations are plain numbers in the unit shown, or take ms/s/m/h suffixes.\n"
            "Booleans: true/false, yes/no, on/off, 1/0; a flag alone means true.\n");
    for (int g = 0; g < GROUP_COUNT; g++) {
        fprintf(out, "\n%s:\n", GROUP_NAMES[g]);
        for (size_t i = 0; i < N_OPTIONS; i++) {
            const struct opt *o = &OPTIONS[i];
            if ((int)o->group != g) continue;
            char left[96];
            snprintf(left, sizeof left, "--%s %s", o->flag, metavar(o));
            if (o->type == OPT_BOOL) snprintf(left, sizeof left, "--%s%s", o->flag, metavar(o));
            fprintf(out, "  %-40s %s\n", left, o->env != NULL ? o->env : "(flag only)");
            const char *def = o->def_doc != NULL ? o->def_doc : o->def != NULL ? o->def : "unset";
            const char *unit = o->type != OPT_DURATION ? "" : o->unit_ms == 1 ? " ms" : " s";
            print_wrapped(out, o->help);
            fprintf(out, "      Default: %s%s\n", def, unit);
        }
        if (g == GROUP_GENERAL) {
            fprintf(out, "  %-40s %s\n      %s\n", "-h, --help", "(flag only)",
                    "Print this help and exit.");
            fprintf(out, "  %-40s %s\n      %s\n", "--version", "(flag only)",
                    "Print the version and exit.");
        }
    }
}

/* Writes text as roff body text: backslashes escaped, a '-' that belongs to a
 * flag ("--name", "-h") written \- so it prints as a hyphen-minus and stays
 * searchable, and a '.' or '\'' at the start of a line guarded so roff does
 * not take the line for a request. */
static void man_text(FILE *out, const char *text)
{
    bool line_start = true;
    for (const char *p = text; *p != '\0'; p++) {
        if (line_start && (*p == '.' || *p == '\'')) fputs("\\&", out);
        line_start = *p == '\n';
        if (*p == '\\') {
            fputs("\\e", out);
        } else if (*p == '-' && (p == text || p[-1] == ' ' || p[-1] == '-' || p[-1] == '(' ||
                                 p[1] == '-')) {
            fputs("\\-", out);
        } else {
            fputc(*p, out);
        }
    }
}

void config_print_man(void *stream)
{
    FILE *out = stream;
    fprintf(out, ".\\\" cachegw(8), generated from the option table in src/config.c: edit that.\n");
    fprintf(out, ".TH CACHEGW 8 \"\" \"cachegw %s\" \"System Administration\"\n", CACHEGW_VERSION);
    fputs(".SH NAME\n"
          "cachegw \\- Lua-scriptable caching HTTP gateway\n"
          ".SH SYNOPSIS\n"
          ".B cachegw\n"
          "[\\fIoptions\\fR]\n"
          ".SH DESCRIPTION\n"
          "cachegw sits in front of an HTTP API and answers repeated reads from a cache: an\n"
          "in-process memory tier and, when configured, Redis shared by every instance.\n"
          "Lua policy files decide, per route, the cache key, the TTL and what a write\n"
          "invalidates; routes without a policy get RFC 9111 shared-cache rules.\n"
          ".PP\n"
          "Every option can also be set through its environment variable or in a\n"
          ".I .env\n"
          "file in the working directory; a flag wins over the environment, which wins over\n"
          ".IR .env ,\n"
          "which wins over the default.\n"
          "Sizes take k/KB/KiB, m/MB/MiB, g/GB/GiB suffixes (all powers of 1024);\n"
          "durations are plain numbers in the unit shown, or take ms/s/m/h suffixes.\n"
          "Booleans: true/false, yes/no, on/off, 1/0; a flag alone means true.\n"
          "Values that start with \\-\\- must be written \\-\\-name=value.\n"
          ".SH OPTIONS\n",
          out);
    for (int g = 0; g < GROUP_COUNT; g++) {
        fprintf(out, ".SS %s\n", GROUP_NAMES[g]);
        for (size_t i = 0; i < N_OPTIONS; i++) {
            const struct opt *o = &OPTIONS[i];
            if ((int)o->group != g) continue;
            fputs(".TP\n\\fB", out);
            man_text(out, "--");
            man_text(out, o->flag);
            fputs(o->type == OPT_BOOL ? "\\fR" : "\\fR \\fI", out);
            man_text(out, metavar(o));
            fputs("\\fR\n", out);
            man_text(out, o->help);
            const char *def = o->def_doc != NULL ? o->def_doc : o->def != NULL ? o->def : "unset";
            const char *unit = o->type != OPT_DURATION ? "" : o->unit_ms == 1 ? " ms" : " s";
            fputs("\n.br\n", out);
            if (o->env != NULL) fprintf(out, "Environment: \\fB%s\\fR.\n", o->env);
            else fputs("Flag only.\n", out);
            fputs("Default: ", out);
            man_text(out, def);
            fprintf(out, "%s.\n", unit);
        }
        if (g == GROUP_GENERAL)
            fputs(".TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\nPrint the option list and exit.\n"
                  ".TP\n\\fB\\-\\-version\\fR\nPrint the version and exit.\n",
                  out);
    }
    fputs(".SH SIGNALS\n"
          ".TP\n.B SIGHUP\n"
          "Reload the policy files; on an error the running policies stay.\n"
          ".TP\n.BR SIGTERM \", \" SIGINT\n"
          "Stop accepting, let requests in flight finish (up to \\fBSHUTDOWN_TIMEOUT_MS\\fR),"
          " exit 0.\n"
          ".SH EXIT STATUS\n"
          ".TP\n.B 0\nStopped cleanly, or \\fB\\-\\-check\\fR found everything valid.\n"
          ".TP\n.B 1\nStart-up failed, or \\fB\\-\\-check\\fR found invalid policies.\n"
          ".TP\n.B 2\nAn option has an invalid value; one line on standard error names it.\n"
          ".SH FILES\n"
          ".TP\n.I /etc/default/cachegw\n"
          "Environment file the systemd unit reads (KEY=VALUE, one option a line).\n"
          ".TP\n.I /etc/cachegw/policies\n"
          "The packaged policies (\\fBPOLICIES_DIR\\fR); pristine examples are in\n"
          ".IR /usr/share/cachegw/policies .\n"
          ".TP\n.I /usr/share/cachegw/lua\n"
          "The gateway's own Lua library, found as \\fI../share/cachegw/lua\\fR from the\n"
          "binary's directory unless \\fBLUA_DIR\\fR is set.\n"
          ".SH SEE ALSO\n"
          ".BR systemctl (1),\n"
          ".BR systemd.exec (5),\n"
          ".I /usr/share/doc/cachegw/README.md\n",
          out);
}

/* ---- the effective configuration (--check --dump) ---- */

/* Copies s for --dump: whole (up to len - 1 bytes), control characters as '?'. */
static void dump_text(const char *s, char *buf, size_t len)
{
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < len; i++)
        buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    buf[i] = '\0';
}

/* The value of o as held in cfg, in the form --dump shows (secrets masked). */
static void effective_value(const struct config *cfg, const struct opt *o, char *buf, size_t len)
{
    const void *field = (const char *)cfg + o->offset;
    switch (o->type) {
    case OPT_SECRET: {
        const char *v = *(char *const *)field;
        snprintf(buf, len, "%s", v == NULL ? "(unset)" : "(set, masked)");
        return;
    }
    case OPT_REDIS_URL: {
        const char *v = *(char *const *)field;
        char tmp[512];
        if (v == NULL) {
            snprintf(buf, len, "(unset)");
            return;
        }
        /* The password of user:password@ is masked.  (An http URL cannot
         * carry credentials: normalize_http_url refuses them.) */
        redis_url_redacted(v, tmp, sizeof tmp);
        dump_text(tmp, buf, len);
        return;
    }
    case OPT_STRING:
    case OPT_HTTP_URL:
    case OPT_IP_ADDR:
    case OPT_HOST_PORT:
    case OPT_NAME_LIST: {
        const char *v = *(char *const *)field;
        if (v == NULL) snprintf(buf, len, "(unset)");
        else if (*v == '\0') snprintf(buf, len, "\"\"");
        else dump_text(v, buf, len);
        return;
    }
    case OPT_INT:
        snprintf(buf, len, "%d", *(const int *)field);
        return;
    case OPT_LONG:
        snprintf(buf, len, "%ld", *(const long *)field);
        return;
    case OPT_SIZE:
        snprintf(buf, len, "%zu bytes", *(const size_t *)field);
        return;
    case OPT_DURATION:
        snprintf(buf, len, "%d%s", *(const int *)field, o->unit_ms == 1 ? "ms" : "s");
        return;
    case OPT_BOOL:
        snprintf(buf, len, "%s", *(const bool *)field ? "true" : "false");
        return;
    case OPT_LOG_LEVEL: {
        static const char *const NAMES[] = {"debug", "info", "warn", "error"};
        int l = *(const int *)field;
        snprintf(buf, len, "%s", l >= 0 && l < 4 ? NAMES[l] : "?");
        return;
    }
    case OPT_CHOICE: {
        int c = *(const int *)field, n = 0;
        while (o->choices[n] != NULL) n++;
        snprintf(buf, len, "%s", c >= 0 && c < n ? o->choices[c] : "?");
        return;
    }
    case OPT_LOG_TARGET: {
        int t = *(const int *)field;
        const char *path = *(char *const *)((const char *)cfg + o->offset2);
        if (t == ACCESS_LOG_FILE && path != NULL) dump_text(path, buf, len);
        else snprintf(buf, len, "%s", t == ACCESS_LOG_STDERR   ? "stderr"
                                      : t == ACCESS_LOG_STDOUT ? "stdout"
                                                               : "off");
        return;
    }
    }
    snprintf(buf, len, "?");
}

void config_print_effective(const struct config *cfg, void *stream)
{
    static const char *const SOURCES[] = {"default", "flag", "env", ".env"};
    FILE *out = stream;
    fprintf(out, "# effective configuration (cachegw %s): option, environment name, value, "
                 "where it came from; secrets masked\n",
            CACHEGW_VERSION);
    for (int g = 0; g < GROUP_COUNT; g++) {
        fprintf(out, "# %s\n", GROUP_NAMES[g]);
        for (size_t i = 0; i < N_OPTIONS; i++) {
            const struct opt *o = &OPTIONS[i];
            if ((int)o->group != g) continue;
            char value[1024];
            effective_value(cfg, o, value, sizeof value);
            unsigned src = cfg->source[i] < 4 ? cfg->source[i] : 0;
            fprintf(out, "--%-28s %-28s %s  (%s)\n", o->flag, o->env ? o->env : "-", value,
                    SOURCES[src]);
        }
    }
}
