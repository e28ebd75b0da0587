/*
 * config - the gateway's settings, from flags, environment and a .env file.
 *
 * Precedence, highest first: command-line flag, process environment, the .env
 * file in the working directory (KEY=VALUE lines, '#' comments, optional
 * quotes, optional "export " prefix), built-in default.  Every option has one
 * flag and one environment name, listed by --help with its default.
 *
 * Values are validated while parsing, then together (the admin listener's
 * port against the HTTP listener's, the Redis TLS files of a rediss:// URL
 * readable); the first invalid one makes config_load return CONFIG_ERROR with
 * one clear line in err naming the option (flag and env var) and never echoing
 * a secret (the Redis URL password, the admin token).  So --check and start-up
 * both exit 2 on a bad value, before anything is bound or loaded.  A .env key
 * that names no option is skipped; one that looks like a typo of an option is
 * logged as a warning with the name it was probably meant as.
 *
 * Ownership: struct config owns its strings; config_free releases them.
 * Thread-safety: immutable after config_load; read freely from any thread.
 */
#ifndef CACHEGW_CONFIG_H
#define CACHEGW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the access log goes (ACCESS_LOG).  OFF is 0 and STDERR 1, so the old
 * boolean reading (if (cfg->access_log)) still means "enabled". */
enum access_log_target {
    ACCESS_LOG_OFF = 0,
    ACCESS_LOG_STDERR = 1,
    ACCESS_LOG_STDOUT = 2,
    ACCESS_LOG_FILE = 3,
};

/* Room for the option table (config.c checks it at compile time). */
#define CONFIG_MAX_OPTIONS 128

/* REDIS_MODE (docs/design.md, "Redis Cluster and Sentinel"). */
enum config_redis_mode {
    CONFIG_REDIS_AUTO = 0,
    CONFIG_REDIS_STANDALONE,
    CONFIG_REDIS_CLUSTER,
    CONFIG_REDIS_SENTINEL,
};

enum config_source {
    CONFIG_SOURCE_DEFAULT = 0,
    CONFIG_SOURCE_FLAG,
    CONFIG_SOURCE_ENV,
    CONFIG_SOURCE_DOTENV,
};

struct config {
    /* HTTP listener */
    char *host;                  /* HOST / --host, default "0.0.0.0" */
    int port;                    /* PORT / --port, default 8080 */
    int workers;                 /* WORKERS / --workers, default 0 = number of cores */
    size_t max_body_bytes;       /* MAX_BODY_SIZE / --max-body-size, default 10 MiB */
    size_t max_header_bytes;     /* MAX_HEADER_SIZE / --max-header-size, default 16 KiB */
    int max_connections;         /* MAX_CONNECTIONS / --max-connections, default 16384 */
    int client_timeout_s;        /* CLIENT_TIMEOUT / --client-timeout, idle keep-alive s, default 30 */
    int client_header_timeout_s; /* CLIENT_HEADER_TIMEOUT / --client-header-timeout, whole headers, 10 */
    int max_query_params;        /* MAX_QUERY_PARAMS / --max-query-params, default 128 */
    size_t max_buffered_body_bytes; /* MAX_BUFFERED_BODIES / --max-buffered-bodies, 256 MiB */
    char *trusted_proxies;       /* TRUSTED_PROXIES / --trusted-proxies, comma-separated IPs */
    char *forwarded_host;        /* FORWARDED_HOST / --forwarded-host, X-Forwarded-Host value */
    int shutdown_timeout_ms;     /* SHUTDOWN_TIMEOUT_MS / --shutdown-timeout-ms, default 10000 */

    /* Upstream */
    char *upstream_url;          /* UPSTREAM_URL / --upstream, default "http://127.0.0.1:3000" */
    int upstream_connect_timeout_ms; /* UPSTREAM_CONNECT_TIMEOUT_MS / --upstream-connect-timeout-ms, 2000 */
    int upstream_timeout_ms;     /* UPSTREAM_TIMEOUT_MS / --upstream-timeout-ms, total, 30000 */
    int upstream_max_connections; /* UPSTREAM_MAX_CONNECTIONS / --upstream-max-connections, 256 */

    /* Cache */
    size_t cache_max_bytes;      /* CACHE_MAX_BYTES / --cache-max-bytes, default 256 MiB; 0 disables L1 */
    size_t max_value_bytes;      /* MAX_VALUE_SIZE / --max-value-size, default 1 MiB */
    int default_ttl_s;           /* DEFAULT_TTL / --default-ttl, default 60; 0 = no default caching */
    /* Issue 12 (RFC 9111 / 9213, compression) */
    int heuristic_percent;       /* HEURISTIC_FRACTION / --heuristic-fraction, 0-100, default 10 */
    int heuristic_max_s;         /* HEURISTIC_MAX / --heuristic-max, default 86400 */
    char *targeted_cache_control; /* TARGETED_CACHE_CONTROL: own RFC 9213 field; NULL = none */
    char *compress;              /* COMPRESS / --compress: "gzip,br" (default), "" = none */
    size_t compress_min_bytes;   /* COMPRESS_MIN_SIZE / --compress-min-size, default 1 KiB */
    char *compress_types;        /* COMPRESS_TYPES / --compress-types, media types */

    /* Redis */
    char *redis_url;             /* REDIS_URL / --redis-url, default NULL (memory only). SECRET */
    char *redis_prefix;          /* REDIS_PREFIX / --redis-prefix, default "cachegw:" */
    int redis_connect_timeout_ms; /* REDIS_CONNECT_TIMEOUT_MS / --redis-connect-timeout-ms, 2000 */
    int redis_timeout_ms;        /* REDIS_TIMEOUT_MS / --redis-timeout-ms, 2000 */
    int redis_pool_size;         /* REDIS_POOL_SIZE / --redis-pool-size, 10 */
    int redis_health_interval_s; /* REDIS_HEALTH_INTERVAL / --redis-health-interval, 30 */
    int redis_retries;           /* REDIS_RETRIES / --redis-retries, 1 */
    char *redis_tls_ca_file;     /* REDIS_TLS_CA_FILE / --redis-tls-ca-file */
    char *redis_tls_cert_file;   /* REDIS_TLS_CERT_FILE / --redis-tls-cert-file */
    char *redis_tls_key_file;    /* REDIS_TLS_KEY_FILE / --redis-tls-key-file */
    bool redis_tls_insecure;     /* REDIS_TLS_INSECURE / --redis-tls-insecure, default false */
    int redis_mode;              /* REDIS_MODE / --redis-mode: enum config_redis_mode, auto */
    char *redis_sentinels;       /* REDIS_SENTINELS / --redis-sentinels: host:port,... */
    char *redis_sentinel_master; /* REDIS_SENTINEL_MASTER / --redis-sentinel-master */
    char *redis_sentinel_password; /* REDIS_SENTINEL_PASSWORD / ... SECRET */
    bool redis_sentinel_tls;     /* REDIS_SENTINEL_TLS / --redis-sentinel-tls, default false */

    /* Lua policies */
    char *policies_dir;          /* POLICIES_DIR / --policies, default "./policies" */
    char *lua_dir;               /* LUA_DIR / --lua-dir, the gateway's Lua library; found from the binary */
    size_t lua_memory_bytes;     /* LUA_MEMORY_LIMIT / --lua-memory-limit, per state, 64 MiB */
    long lua_instruction_limit;  /* LUA_INSTRUCTION_LIMIT / --lua-instruction-limit, per call, 1000000 */
    int lua_time_limit_ms;       /* LUA_TIME_LIMIT_MS / --lua-time-limit-ms, per call, 100 */

    /* The gateway's own endpoints */
    char *health_path;           /* HEALTH_PATH / --health-path, "/health"; "" = not served */
    char *health_cache_path;     /* HEALTH_CACHE_PATH / --health-cache-path, "/health/cache" */
    char *metrics_path;          /* METRICS_PATH / --metrics-path, "/metrics" */
    int health_degraded_status;  /* HEALTH_DEGRADED_STATUS / --health-degraded-status, 200 */
    bool debug_headers;          /* DEBUG_HEADERS / --debug-headers, key= in Cache-Status */

    /* Admin / purge API */
    char *admin_token;           /* ADMIN_TOKEN / --admin-token, SECRET; unset = no admin listener */
    char *admin_host;            /* ADMIN_HOST / --admin-host, default "127.0.0.1" */
    int admin_port;              /* ADMIN_PORT / --admin-port, default 8081 */

    /* Logging */
    int log_level;               /* LOG_LEVEL / --log-level (debug|info|warn|error), default info */
    int log_format;              /* LOG_FORMAT / --log-format, 0 text (default), 1 json */
    int access_log;              /* ACCESS_LOG / --access-log, enum access_log_target, off */
    char *access_log_path;       /* its file when access_log == ACCESS_LOG_FILE */
    int access_log_format;       /* ACCESS_LOG_FORMAT / --access-log-format, 0 combined, 1 json */
    char *access_log_redact;     /* ACCESS_LOG_REDACT / --access-log-redact, comma-separated */

    /* Modes (flags only) */
    bool check_only;             /* --check: validate policies and exit */
    bool dump;                   /* --dump: with --check, print the effective settings and routes */

    /* Where each option's value came from (enum config_source), by option
     * table index: what config_print_effective shows. */
    unsigned char source[CONFIG_MAX_OPTIONS];
};

enum config_result {
    CONFIG_OK = 0,       /* run the gateway */
    CONFIG_EXIT_OK = 1,  /* --help or --version was printed: exit 0 */
    CONFIG_ERROR = 2,    /* invalid input: print err, exit 2 */
};

/* Fills cfg from argv, the environment (envp-style lookups through getenv)
 * and dotenv_path (NULL = ".env"; a missing file is not an error).
 * --help / --version print to stdout and return CONFIG_EXIT_OK.
 * On CONFIG_ERROR, err holds one line (no trailing newline). */
enum config_result config_load(struct config *cfg, int argc, char **argv,
                               const char *dotenv_path, char *err, size_t err_len);

/* Sets every field to its default (used by config_load and by tests). */
void config_defaults(struct config *cfg);

void config_free(struct config *cfg);

/* Writes the effective configuration to stream (FILE *), for
 * `cachegw --check --dump`: every option of the table, one a line, as
 * "--flag  ENV  value  (source)", source being flag, env, .env or default.
 * Secrets are masked: the admin token shows only whether it is set, the
 * Redis URL's password is redacted.  Values are shown as they
 * are held after parsing (sizes in bytes, durations with their unit). */
void config_print_effective(const struct config *cfg, void *stream);

/* Writes the --help text to stream (FILE *). */
void config_print_help(void *stream);

/* The environment name an unknown .env key was most likely meant as, or NULL
 * when it looks like no option (then it is probably the application's own):
 * a name one edit away (two for keys longer than 6; case ignored, a swap of
 * adjacent letters is one edit: REDIS_ULR), else the shortest name the key
 * begins at a '_' (UPSTREAM -> UPSTREAM_URL).  config_load warns with it. */
const char *config_env_suggestion(const char *key);

/* Writes the cachegw(8) man page (roff) to stream (FILE *), from the same
 * option table as --help, so the two cannot drift; the build generates the
 * installed page with it (packaging/gen_man.c). */
void config_print_man(void *stream);

#endif
