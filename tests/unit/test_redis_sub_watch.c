/* Tests for read-your-writes across instances (issue 10; docs/design.md,
 * "Read-your-writes"), below the binary:
 *   - redis_sub_watch on its own (a socket pair and a stand-in loop thread):
 *     a reader that looks while input is unread, or while the loop is still
 *     applying what it read, returns only once it is applied; the wait is
 *     bounded; the loop thread never waits for itself;
 *   - the watch wired through redis_conn / redis_pool / store_redis to a real
 *     subscription (a private redis-server): store_redis_settle_invalidations
 *     returns after the invalidation handler ran, not before;
 *   - store_redis's raced fills: a SET of a key that an invalidation met in
 *     flight (or, for another instance's, sent less than a second before) is
 *     handed back once, so that it is invalidated again; a fill stored before
 *     an invalidation seen here is not written at all;
 *   - inval_sync's delivery fence: a write's barrier fires only once every
 *     subscriber's socket has the message (Redis writes the publisher's reply
 *     first and the subscribers' messages after it; 300 subscribers make that
 *     gap wide enough to see). */
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include "cache_object.h"
#include "cache_tiers.h"
#include "config.h"
#include "gateway.h"
#include "inval_index.h"
#include "inval_sync.h"
#include "redis_sub_watch.h"
#include "store_l1.h"
#include "store_redis.h"
#include "test_redis_helpers.h"
#include "test_gateway_env.h"

static char tmp_dir[] = "/tmp/cachegw-test-sub-watch-XXXXXX";

/* ---- the watch alone: a stand-in for the loop thread ---- */

struct fake_loop {
    struct redis_sub_watch *w;
    int fd;
    int apply_ms;       /* how long "applying" what was read takes */
    atomic_int applied; /* bytes read and applied */
    atomic_bool stop;
    pthread_t th;
};

/* What redis_conn does for a watched connection: a pass opens before the
 * read and closes after what was read is applied. */
static void *fake_loop_run(void *arg)
{
    struct fake_loop *l = arg;
    while (!atomic_load(&l->stop)) {
        struct pollfd p = {.fd = l->fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0) continue;
        redis_sub_watch_begin(l->w);
        char buf[256];
        ssize_t n = recv(l->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            sleep_ms(l->apply_ms);
            atomic_fetch_add(&l->applied, (int)n);
        }
        redis_sub_watch_end(l->w);
    }
    return NULL;
}

static void fake_loop_start(struct fake_loop *l, struct redis_sub_watch *w, int fd, int apply_ms)
{
    l->w = w;
    l->fd = fd;
    l->apply_ms = apply_ms;
    atomic_init(&l->applied, 0);
    atomic_init(&l->stop, false);
    CHECK_EQ_INT(pthread_create(&l->th, NULL, fake_loop_run, l), 0);
}

static void fake_loop_stop(struct fake_loop *l)
{
    atomic_store(&l->stop, true);
    pthread_join(l->th, NULL);
}

TEST(nothing_published_is_not_pending)
{
    struct redis_sub_watch w;
    CHECK_EQ_INT(redis_sub_watch_init(&w), 0);
    CHECK(!redis_sub_watch_pending(&w));
    CHECK_EQ_INT(redis_sub_watch_settle(&w, 1000), 0);
    redis_sub_watch_destroy(&w);
}

/* Bytes written and at once looked for: unread, or read and being applied
 * (100 ms): either way the reader returns with them applied. */
TEST(a_reader_returns_once_the_input_is_applied)
{
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct redis_sub_watch w;
    CHECK_EQ_INT(redis_sub_watch_init(&w), 0);
    redis_sub_watch_add_fd(&w, sv[0]);
    struct fake_loop l;
    fake_loop_start(&l, &w, sv[0], 100);
    int waited = 0;
    for (int i = 1; i <= 10; i++) {
        CHECK_EQ_INT(send(sv[1], "m", 1, 0), 1);
        /* Odd rounds look at once (bytes most likely unread), even ones after
         * the loop has read them (the pass is open: the socket is empty). */
        if (i % 2 == 0) sleep_ms(5);
        int rc = redis_sub_watch_settle(&w, 2000);
        CHECK(rc == 1);
        if (rc == 1) waited++;
        CHECK_EQ_INT(atomic_load(&l.applied), i);
    }
    CHECK_EQ_INT(waited, 10);
    CHECK_EQ_INT(atomic_load(&w.timeouts), 0);
    /* Quiet again: nothing pending, no wait. */
    CHECK_EQ_INT(redis_sub_watch_settle(&w, 2000), 0);
    fake_loop_stop(&l);
    redis_sub_watch_remove_fd(&w, sv[0]);
    redis_sub_watch_destroy(&w);
    close(sv[0]);
    close(sv[1]);
}

/* A loop that never reads: the reader gives up at the bound. */
TEST(the_wait_is_bounded)
{
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct redis_sub_watch w;
    CHECK_EQ_INT(redis_sub_watch_init(&w), 0);
    redis_sub_watch_add_fd(&w, sv[0]);
    CHECK_EQ_INT(send(sv[1], "m", 1, 0), 1);
    CHECK(redis_sub_watch_pending(&w));
    int64_t t0 = now_us();
    CHECK_EQ_INT(redis_sub_watch_settle(&w, 30), 2);
    int64_t ms = (now_us() - t0) / 1000;
    CHECK(ms >= 29 && ms < 500);
    CHECK_EQ_INT(atomic_load(&w.timeouts), 1);
    /* Withdrawn (the connection closed): no longer looked at. */
    redis_sub_watch_remove_fd(&w, sv[0]);
    CHECK(!redis_sub_watch_pending(&w));
    CHECK_EQ_INT(redis_sub_watch_settle(&w, 30), 0);
    redis_sub_watch_destroy(&w);
    close(sv[0]);
    close(sv[1]);
}

struct self_wait {
    struct redis_sub_watch *w;
    int rc;
    int64_t us;
};

static void *self_wait_run(void *arg)
{
    struct self_wait *s = arg;
    redis_sub_watch_begin(s->w); /* this thread is the loop now */
    int64_t t0 = now_us();
    s->rc = redis_sub_watch_settle(s->w, 1000);
    s->us = now_us() - t0;
    redis_sub_watch_end(s->w);
    return NULL;
}

/* The loop cannot wait for a pass it has open itself. */
TEST(the_loop_thread_never_waits)
{
    struct redis_sub_watch w;
    CHECK_EQ_INT(redis_sub_watch_init(&w), 0);
    struct self_wait s = {.w = &w};
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, self_wait_run, &s), 0);
    pthread_join(th, NULL);
    CHECK_EQ_INT(s.rc, 2);
    CHECK(s.us < 100000);
    redis_sub_watch_destroy(&w);
}

/* ---- through a real subscription ---- */

struct slow_handler {
    atomic_int applied;
    atomic_bool subscribed;
};

/* Loop thread: an invalidation that takes 150 ms (longer than two redis-cli runs) to apply. */
static void slow_invalidation(void *arg, char kind, const char *key, size_t len)
{
    struct slow_handler *h = arg;
    (void)key;
    (void)len;
    if (kind == '+' || kind == '*') {
        atomic_store(&h->subscribed, true);
        return;
    }
    sleep_ms(150);
    atomic_fetch_add(&h->applied, 1);
}

struct store_env {
    struct env e;
    struct store_redis *s;
    struct slow_handler *h;
};

static void subscribe_task(void *arg)
{
    struct store_env *se = arg;
    CHECK_EQ_INT(store_redis_on_invalidation(se->s, slow_invalidation, se->h), 0);
}

static bool pred_subscribed(void *arg)
{
    return atomic_load(&((struct slow_handler *)arg)->subscribed);
}

TEST(settle_returns_after_the_handler_applied_the_message)
{
    int port = free_tcp_port();
    struct server srv = {0};
    CHECK(server_start(&srv, port));
    char url[64], err[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    struct store_env se = {0};
    struct slow_handler h;
    atomic_init(&h.applied, 0);
    atomic_init(&h.subscribed, false);
    se.h = &h;
    env_loop(&se.e);
    CHECK_EQ_INT(env_pool(&se.e, url, test_pool_options(), err, sizeof err), 0);
    CHECK_EQ_INT(store_redis_create(se.e.pool, se.e.loop, "cachegw:", 1 << 20, &se.s), 0);
    run_on_loop(se.e.loop, subscribe_task, &se);
    CHECK(wait_until(pred_subscribed, &h, 5000) >= 0);
    int waited = 0;
    for (int i = 1; i <= 5; i++) {
        /* Another instance's key invalidation, published by another client,
         * then a PING (what inval_sync's fence does: Redis reads it only
         * after it wrote the message to every subscriber): the message is in
         * our socket, or read and being applied (150 ms). */
        char args[200];
        snprintf(args, sizeof args, "PUBLISH cachegw:invalidate 0123456789abcdef:kusers:%d", i);
        CHECK(cli(port, args));
        CHECK(cli(port, "PING"));
        int rc = store_redis_settle_invalidations(se.s, 2000);
        CHECK(rc != 2);
        if (rc == 1) waited++;
        CHECK_EQ_INT(atomic_load(&h.applied), i);
    }
    fprintf(stderr, "  waited for the loop in %d of 5 reads\n", waited);
    CHECK(waited > 0);
    /* Quiet: no wait worth the name (a health-check PING's answer may be
     * being read at that moment: a pass is a pass). */
    int64_t t0 = now_us();
    CHECK(store_redis_settle_invalidations(se.s, 2000) != 2);
    CHECK(now_us() - t0 < 100000);
    run_on_loop(se.e.loop, pool_stop_task, se.e.pool);
    io_loop_stop(se.e.loop);
    store_redis_destroy(se.s);
    redis_pool_destroy(se.e.pool);
    se.e.pool = NULL;
    io_loop_destroy(se.e.loop);
    redis_url_free(&se.e.url);
    server_kill(&srv);
}

/* ---- fills that raced an invalidation ---- */

struct raced_probe {
    atomic_int calls;
    char key[64];
};

static void raced_cb(void *arg, const char *key, size_t len)
{
    struct raced_probe *r = arg;
    snprintf(r->key, sizeof r->key, "%.*s", (int)len, key);
    atomic_fetch_add(&r->calls, 1);
}

struct raced_env {
    struct env e;
    struct store_redis *s;
    struct slow_handler h;
    struct raced_probe r;
    int64_t stored_at_ms; /* of the next object put; 0: now */
    int put_rc;
};

static void raced_setup_task(void *arg)
{
    struct raced_env *re = arg;
    store_redis_on_raced_fill(re->s, raced_cb, &re->r);
    CHECK_EQ_INT(store_redis_on_invalidation(re->s, slow_invalidation, &re->h), 0);
}

static void ignore_done(void *arg, int err)
{
    (void)arg;
    (void)err;
}

/* A fill of users:1 stored at re->stored_at_ms (0: now), written to Redis. */
static int put_fill(struct raced_env *re)
{
    struct http_header hd[1] = {{"content-type", "application/json"}};
    struct cache_meta m = {.stored_at_ms = re->stored_at_ms ? re->stored_at_ms : clock_wall_ms(),
                           .ttl_ms = 60000};
    struct cache_object *obj = cache_object_build("users:1", 7, 200, hd, 1, "{}", 2, &m);
    if (obj == NULL) return -ENOMEM;
    int rc = store_redis_put(re->s, obj);
    cache_object_unref(obj);
    return rc;
}

/* Our own fill and our own invalidation in one loop turn: the SET is still in
 * flight when the DEL leaves, on another connection. */
static void put_then_delete_task(void *arg)
{
    struct raced_env *re = arg;
    CHECK_EQ_INT(put_fill(re), 0);
    CHECK_EQ_INT(store_redis_delete_then(re->s, "users:1", 7, ignore_done, NULL), 0);
}

static void put_task(void *arg)
{
    struct raced_env *re = arg;
    re->put_rc = put_fill(re);
}

static void delete_task(void *arg)
{
    struct raced_env *re = arg;
    CHECK_EQ_INT(store_redis_delete_then(re->s, "users:1", 7, ignore_done, NULL), 0);
}

struct applied_at_least {
    struct slow_handler *h;
    int n;
};

static bool pred_applied(void *arg)
{
    struct applied_at_least *a = arg;
    return atomic_load(&a->h->applied) >= a->n;
}

static bool pred_raced(void *arg)
{
    return atomic_load(&((struct raced_probe *)arg)->calls) > 0;
}

TEST(a_fill_that_raced_an_invalidation_is_handed_back)
{
    int port = free_tcp_port();
    struct server srv = {0};
    CHECK(server_start(&srv, port));
    char url[64], err[200];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    struct raced_env re = {0};
    atomic_init(&re.h.applied, 0);
    atomic_init(&re.h.subscribed, false);
    atomic_init(&re.r.calls, 0);
    env_loop(&re.e);
    CHECK_EQ_INT(env_pool(&re.e, url, test_pool_options(), err, sizeof err), 0);
    CHECK_EQ_INT(store_redis_create(re.e.pool, re.e.loop, "cachegw:", 1 << 20, &re.s), 0);
    run_on_loop(re.e.loop, raced_setup_task, &re);
    CHECK(wait_until(pred_subscribed, &re.h, 5000) >= 0);

    /* 1. Our DEL while our SET is in flight: handed back once, after the SET. */
    run_on_loop(re.e.loop, put_then_delete_task, &re);
    CHECK(wait_until(pred_raced, &re.r, 2000) >= 0);
    CHECK_EQ_STR(re.r.key, "users:1");
    sleep_ms(50);
    CHECK_EQ_INT(atomic_load(&re.r.calls), 1);

    /* 2. Our DEL after our SET was answered: ordered, nothing handed back. */
    atomic_store(&re.r.calls, 0);
    run_on_loop(re.e.loop, put_task, &re);
    sleep_ms(50);
    run_on_loop(re.e.loop, delete_task, &re);
    sleep_ms(50);
    CHECK_EQ_INT(atomic_load(&re.r.calls), 0);

    /* 3. Another instance's invalidation of a key we filled 50 ms ago: its DEL
     * may have run before our SET; handed back once. */
    run_on_loop(re.e.loop, put_task, &re);
    sleep_ms(50);
    struct applied_at_least a = {&re.h, atomic_load(&re.h.applied)};
    CHECK(cli(port, "PUBLISH cachegw:invalidate 0123456789abcdef:kusers:1"));
    CHECK(wait_until(pred_raced, &re.r, 2000) >= 0);
    CHECK(cli(port, "PUBLISH cachegw:invalidate 0123456789abcdef:kusers:1"));
    a.n += 2; /* both messages handled (the second met no SET) */
    CHECK(wait_until(pred_applied, &a, 2000) >= 0);
    sleep_ms(50);
    CHECK_EQ_INT(atomic_load(&re.r.calls), 1);

    /* 4. ... or filled more than a second before: nothing. */
    atomic_store(&re.r.calls, 0);
    run_on_loop(re.e.loop, put_task, &re);
    sleep_ms(1100);
    CHECK(cli(port, "PUBLISH cachegw:invalidate 0123456789abcdef:kusers:1"));
    a.n += 1;
    CHECK(wait_until(pred_applied, &a, 2000) >= 0);
    sleep_ms(50);
    CHECK_EQ_INT(atomic_load(&re.r.calls), 0);

    /* 5. A fill stored before an invalidation seen here, reaching the loop
     * only after it (its worker was held off the CPU): not written at all;
     * one stored after it is. */
    re.stored_at_ms = clock_wall_ms() - 1;
    sleep_ms(5);
    CHECK(cli(port, "PUBLISH cachegw:invalidate 0123456789abcdef:kusers:1"));
    a.n += 1;
    CHECK(wait_until(pred_applied, &a, 2000) >= 0);
    sleep_ms(20);
    run_on_loop(re.e.loop, put_task, &re);
    CHECK_EQ_INT(re.put_rc, -ECANCELED);
    re.stored_at_ms = 0;
    run_on_loop(re.e.loop, put_task, &re);
    CHECK_EQ_INT(re.put_rc, 0);

    run_on_loop(re.e.loop, pool_stop_task, re.e.pool);
    io_loop_stop(re.e.loop);
    store_redis_destroy(re.s);
    redis_pool_destroy(re.e.pool);
    io_loop_destroy(re.e.loop);
    redis_url_free(&re.e.url);
    server_kill(&srv);
}

/* ---- inval_sync's delivery fence ---- */

static bool tier_offered(void *arg)
{
    return cache_tiers_l2_available(arg);
}

/* A bare subscriber socket: SUBSCRIBE sent and confirmed; then left unread. */
static int raw_subscriber(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    static const char sub[] = "*2\r\n$9\r\nSUBSCRIBE\r\n$18\r\ncachegw:invalidate\r\n";
    if (send(fd, sub, sizeof sub - 1, 0) != (ssize_t)(sizeof sub - 1)) {
        close(fd);
        return -1;
    }
    /* The confirmation: *3 $9 subscribe $18 cachegw:invalidate :1 */
    char buf[128];
    size_t got = 0;
    while (got < 4 || memcmp(buf + got - 4, ":1\r\n", 4) != 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n = poll(&p, 1, 2000) > 0 ? recv(fd, buf + got, sizeof buf - got, 0) : -1;
        if (n <= 0 || got + (size_t)n >= sizeof buf) {
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    return fd;
}

struct fence_probe {
    int fd; /* the first subscriber: Redis writes its message last */
    bool readable;
    sem_t done;
};

/* A's loop thread: the write's answer would leave now. */
static void fence_probe_fired(void *arg)
{
    struct fence_probe *f = arg;
    struct pollfd p = {.fd = f->fd, .events = POLLIN};
    f->readable = poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
    sem_post(&f->done);
}

TEST(a_write_answer_waits_until_every_subscriber_has_the_message)
{
    int port = free_tcp_port();
    struct server srv = {0};
    CHECK(server_start(&srv, port));
    enum { OTHERS = 300 };
    struct fence_probe f = {0};
    sem_init(&f.done, 0, 0);
    f.fd = raw_subscriber(port);
    CHECK(f.fd >= 0);
    int others[OTHERS];
    for (int i = 0; i < OTHERS; i++) {
        others[i] = raw_subscriber(port);
        CHECK(others[i] >= 0);
    }
    struct gw_env g;
    CHECK(gw_open(&g, port));
    CHECK(wait_until(tier_offered, &g.gw, 5000) >= 0);
    int ok = 0;
    for (int i = 0; i < 5; i++) {
        char key[32];
        snprintf(key, sizeof key, "users:%d", i);
        /* What a PUT does: its invalidations, then its answer waits. */
        inval_sync_invalidate_key(&g.gw, key);
        f.readable = false;
        CHECK_EQ_INT(inval_sync_after(&g.gw, fence_probe_fired, &f), 0);
        CHECK(sem_wait_ms(&f.done, 5000));
        if (f.readable) ok++;
        /* Drain the probe's socket for the next round. */
        char buf[4096];
        sleep_ms(20);
        while (recv(f.fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
        }
    }
    CHECK_EQ_INT(ok, 5);
    gw_close(&g);
    for (int i = 0; i < OTHERS; i++)
        if (others[i] >= 0) close(others[i]);
    close(f.fd);
    sem_destroy(&f.done);
    server_kill(&srv);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!private_redis_dir_make(tmp_dir)) return 1;
    RUN(nothing_published_is_not_pending);
    RUN(a_reader_returns_once_the_input_is_applied);
    RUN(the_wait_is_bounded);
    RUN(the_loop_thread_never_waits);
    RUN(settle_returns_after_the_handler_applied_the_message);
    RUN(a_fill_that_raced_an_invalidation_is_handed_back);
    RUN(a_write_answer_waits_until_every_subscriber_has_the_message);
    private_redis_dir_remove(tmp_dir);
    return TEST_SUMMARY();
}
