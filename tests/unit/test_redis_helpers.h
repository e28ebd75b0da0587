/*
 * test_redis_helpers.h - shared scaffolding for the tests of the Redis tier
 * (test_tls.c, test_redis_pool.c, test_store_redis.c).
 *
 * The tests run against real redis-server processes: the shared ones started
 * by scripts/redis-test-servers.sh (ctest fixture "redis", REDIS_TEST_DIR
 * points at their directory and certificates), and private ones a test starts
 * itself on its own port when it must kill, pause or restart the server.
 *
 * The pool and store run on a real io_loop thread; the test thread hands work
 * to it with io_loop_post and waits on semaphores, always with a deadline, so a
 * bug shows up as a failed CHECK rather than a hung test.
 */
#ifndef CACHEGW_TEST_REDIS_HELPERS_H
#define CACHEGW_TEST_REDIS_HELPERS_H

#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io_loop.h"
#include "redis_pool.h"
#include "redis_url.h"
#include "test.h"

#define PLAIN_PORT 16379
#define TLS_PORT 16380
#define AUTH_PORT 16381
#define TEST_PASSWORD "s3cret-test"

static const char *redis_dir(void)
{
    const char *d = getenv("REDIS_TEST_DIR");
    if (d == NULL || *d == '\0') {
        fprintf(stderr, "REDIS_TEST_DIR is not set: run through ctest (fixture redis), or "
                        "scripts/redis-test-servers.sh start DIR and export REDIS_TEST_DIR=DIR\n");
        exit(1);
    }
    return d;
}

/* DIR/certs/<name>, in a static buffer per call site's slot (4 rotating). */
static __attribute__((unused)) const char *cert_path(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/certs/%s", redis_dir(), name);
    return b;
}

static __attribute__((unused)) int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static __attribute__((unused)) void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Waits for sem up to ms; returns false on timeout. */
static __attribute__((unused)) bool sem_wait_ms(sem_t *sem, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    while (sem_timedwait(sem, &ts) < 0) {
        if (errno != EINTR) return false;
    }
    return true;
}

/* ---- running code on the loop thread ---- */

struct on_loop {
    void (*fn)(void *);
    void *arg;
    sem_t done;
};

static __attribute__((unused)) void on_loop_task(void *arg)
{
    struct on_loop *o = arg;
    o->fn(o->arg);
    sem_post(&o->done);
}

/* Runs fn(arg) on the loop thread and waits for it (5 s at most). */
static __attribute__((unused)) bool run_on_loop(struct io_loop *loop, void (*fn)(void *), void *arg)
{
    struct on_loop o = {.fn = fn, .arg = arg};
    sem_init(&o.done, 0, 0);
    if (io_loop_post(loop, on_loop_task, &o) != 0) return false;
    bool ok = sem_wait_ms(&o.done, 5000);
    CHECK(ok);
    if (!ok) {
        fprintf(stderr, "run_on_loop: the loop did not run a task within 5 s\n");
        exit(1); /* o is on our stack and still referenced by the loop */
    }
    sem_destroy(&o.done);
    return ok;
}

/* ---- a test environment: a loop and a pool ---- */

struct env {
    struct io_loop *loop;
    struct redis_pool *pool;
    struct redis_url url;
};

static __attribute__((unused)) void pool_start_task(void *arg) { redis_pool_start(arg); }
static __attribute__((unused)) void pool_stop_task(void *arg) { redis_pool_stop(arg); }

static __attribute__((unused)) void env_loop(struct env *e)
{
    memset(e, 0, sizeof *e);
    CHECK_EQ_INT(io_loop_create(&e->loop), 0);
    CHECK_EQ_INT(io_loop_start(e->loop), 0);
}

/* The pool options the tests use: small, quick to notice a dead server.  env_pool fills in
 * the URL; a caller that creates the pool itself sets .url. */
static __attribute__((unused)) struct redis_pool_options test_pool_options(void)
{
    return (struct redis_pool_options){.pool_size = 2,
                                       .connect_timeout_ms = 1000,
                                       .op_timeout_ms = 1000,
                                       .retries = 1,
                                       .health_interval_s = 1,
                                       .reconnect_min_ms = 50,
                                       .reconnect_max_ms = 300};
}

/* A test program that starts its own redis-servers (server_start) gives them data
 * directories under a fresh temporary directory: make it (template ends in XXXXXX) and
 * point REDIS_TEST_DIR at it; private_redis_dir_remove deletes it at the end. */
static __attribute__((unused)) bool private_redis_dir_make(char *tmpl)
{
    if (mkdtemp(tmpl) == NULL) {
        perror("mkdtemp");
        return false;
    }
    setenv("REDIS_TEST_DIR", tmpl, 1);
    return true;
}

static __attribute__((unused)) void private_redis_dir_remove(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* Parses url, creates and starts a pool with o (url filled in).  Returns the
 * create result; err receives its message. */
static __attribute__((unused)) int env_pool(struct env *e, const char *url,
                                            struct redis_pool_options o, char *err, size_t errlen)
{
    char perr[200];
    int rc = redis_url_parse(url, &e->url, perr, sizeof perr);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "bad test URL: %s\n", perr);
        return rc;
    }
    o.url = &e->url;
    rc = redis_pool_create(e->loop, &o, &e->pool, err, errlen);
    if (rc == 0) run_on_loop(e->loop, pool_start_task, e->pool);
    return rc;
}

static __attribute__((unused)) void env_free(struct env *e)
{
    if (e->pool) run_on_loop(e->loop, pool_stop_task, e->pool);
    io_loop_stop(e->loop);
    redis_pool_destroy(e->pool);
    io_loop_destroy(e->loop);
    redis_url_free(&e->url);
    memset(e, 0, sizeof *e);
}

/* Polls pred until it holds or ms pass; returns the elapsed ms, or -1. */
static __attribute__((unused)) int wait_until(bool (*pred)(void *), void *arg, int ms)
{
    int64_t t0 = now_us();
    while (!pred(arg)) {
        if (now_us() - t0 > (int64_t)ms * 1000) return -1;
        sleep_ms(2);
    }
    return (int)((now_us() - t0) / 1000);
}

static __attribute__((unused)) bool pred_available(void *arg) { return redis_pool_available(arg); }
static __attribute__((unused)) bool pred_unavailable(void *arg)
{
    return !redis_pool_available(arg);
}

/* ---- one command, synchronously ---- */

struct cmd {
    struct redis_pool *pool;
    int argc;
    const char *argv[8];
    size_t lens[8];
    int rc; /* what redis_pool_command returned */
    bool answered;
    int type; /* reply type, or 0 if err */
    long long integer;
    char str[512];
    size_t len;
    size_t elements;
    char err[256];
    int64_t t_sent_us, t_done_us;
    sem_t done;
};

static __attribute__((unused)) void cmd_reply(void *arg, const redisReply *r, const char *err)
{
    struct cmd *c = arg;
    c->t_done_us = now_us();
    c->answered = true;
    if (err != NULL) {
        snprintf(c->err, sizeof c->err, "%s", err);
    } else {
        c->type = r->type;
        c->integer = r->integer;
        c->elements = r->elements;
        if (r->str) {
            c->len = r->len;
            memcpy(c->str, r->str, r->len < sizeof c->str ? r->len : sizeof c->str - 1);
        }
    }
    sem_post(&c->done);
}

static __attribute__((unused)) void cmd_task(void *arg)
{
    struct cmd *c = arg;
    c->t_sent_us = now_us();
    c->rc = redis_pool_command(c->pool, c->argc, c->argv, c->lens, cmd_reply, c);
    if (c->rc < 0) sem_post(&c->done);
}

/* Sends argv (NULL-terminated, C strings) and waits up to wait_ms for the
 * answer.  Returns c (caller-provided). */
static __attribute__((unused)) struct cmd *cmd_run_v(struct cmd *c, struct io_loop *loop,
                                                     struct redis_pool *pool, int wait_ms,
                                                     const char *const *argv)
{
    memset(c, 0, sizeof *c);
    c->pool = pool;
    while (argv[c->argc] && c->argc < 8) {
        c->argv[c->argc] = argv[c->argc];
        c->lens[c->argc] = strlen(argv[c->argc]);
        c->argc++;
    }
    sem_init(&c->done, 0, 0);
    io_loop_post(loop, cmd_task, c);
    bool ok = sem_wait_ms(&c->done, wait_ms);
    if (!ok) {
        fprintf(stderr, "command %s: no answer within %d ms\n", c->argv[0], wait_ms);
        CHECK(ok);
        exit(1); /* the callback would write into a dead stack frame */
    }
    return c;
}

#define CMD(c, env, wait_ms, ...)                                                                  \
    cmd_run_v((c), (env)->loop, (env)->pool, (wait_ms), (const char *const[]){__VA_ARGS__, NULL})

/* ---- capturing the log (stderr) ---- */

struct capture {
    int saved_fd;
    char path[64];
};

static __attribute__((unused)) void capture_start(struct capture *cap)
{
    snprintf(cap->path, sizeof cap->path, "/tmp/cachegw-test-log-XXXXXX");
    int fd = mkstemp(cap->path);
    fflush(stderr);
    cap->saved_fd = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

/* Restores stderr, copies the captured text to it, and returns the text
 * (malloc'd, NUL-terminated). */
static __attribute__((unused)) char *capture_stop(struct capture *cap)
{
    fflush(stderr);
    dup2(cap->saved_fd, STDERR_FILENO);
    close(cap->saved_fd);
    FILE *f = fopen(cap->path, "r");
    char *text = calloc(1, 1 << 20);
    if (f && text) {
        size_t n = fread(text, 1, (1 << 20) - 1, f);
        text[n] = '\0';
        fwrite(text, 1, n, stderr);
    }
    if (f) fclose(f);
    unlink(cap->path);
    return text;
}

static __attribute__((unused)) int count_substr(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle)) n++;
    return n;
}

/* ---- private redis-server instances ---- */

struct server {
    pid_t pid;
    int port;
    bool tls; /* TLS only (port 0), the fixture's certificates, no password */
    int64_t spawned_us;
    char dir[300];
};

static __attribute__((unused)) bool port_answers_tls(int port, bool tls)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "redis-cli -h 127.0.0.1 -p %d %s%s PING 2>/dev/null | grep -q PONG",
             port, tls ? "--tls --cacert " : "", tls ? cert_path("ca.crt") : "");
    return system(cmd) == 0;
}

static __attribute__((unused)) bool port_answers(int port) { return port_answers_tls(port, false); }

/* Starts redis-server in the foreground (a child we can signal) on port;
 * over TLS only when s->tls is set beforehand. */
static __attribute__((unused)) bool server_start(struct server *s, int port)
{
    s->port = port;
    snprintf(s->dir, sizeof s->dir, "%s/private-%d", redis_dir(), port);
    mkdir(s->dir, 0755);
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    const char *argv[32] = {"redis-server",
                            "--bind",
                            "127.0.0.1",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--dir",
                            s->dir,
                            "--daemonize",
                            "no",
                            "--protected-mode",
                            "no"};
    int argc = 13;
    if (s->tls) {
        const char *more[] = {"--port",
                              "0",
                              "--tls-port",
                              portstr,
                              "--tls-cert-file",
                              cert_path("server.crt"),
                              "--tls-key-file",
                              cert_path("server.key"),
                              "--tls-ca-cert-file",
                              cert_path("ca.crt"),
                              "--tls-auth-clients",
                              "no"};
        for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) argv[argc++] = more[i];
    } else {
        argv[argc++] = "--port";
        argv[argc++] = portstr;
    }
    argv[argc] = NULL;
    s->spawned_us = now_us();
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDOUT_FILENO);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 200; i++) {
        if (port_answers_tls(port, s->tls)) return true;
        sleep_ms(20);
    }
    fprintf(stderr, "private redis-server on %d did not start\n", port);
    return false;
}

static __attribute__((unused)) void server_signal(struct server *s, int sig)
{
    if (s->pid > 0) kill(s->pid, sig);
}

static __attribute__((unused)) void server_kill(struct server *s)
{
    if (s->pid <= 0) return;
    kill(s->pid, SIGCONT);
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

/* Makes sure nothing listens on port (a leftover of an aborted run). */
static __attribute__((unused)) void port_free(int port)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "redis-cli -h 127.0.0.1 -p %d SHUTDOWN NOSAVE >/dev/null 2>&1", port);
    if (port_answers(port)) {
        int rc = system(cmd);
        (void)rc;
        sleep_ms(100);
    }
}

#endif
