/* Unit tests for conn_guard: eviction at capacity and the whole-time header deadline,
 * observed on real sockets (a guarded end shut down reads as EOF on its peer). */
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn_guard.h"
#include "test.h"

struct pair {
    int guarded, peer;
    struct conn_slot *slot;
};

static void open_pair(struct conn_guard *g, struct pair *p)
{
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    p->guarded = sv[0];
    p->peer = sv[1];
    p->slot = conn_guard_open(g, p->guarded);
    CHECK(p->slot != NULL);
}

/* True when the guard shut the connection down (the peer sees EOF) within ms. */
static bool was_shut(const struct pair *p, int ms)
{
    struct pollfd pfd = {.fd = p->peer, .events = POLLIN};
    if (poll(&pfd, 1, ms) <= 0) return false;
    char c;
    return recv(p->peer, &c, 1, MSG_DONTWAIT) == 0;
}

static void close_pair(struct conn_guard *g, struct pair *p)
{
    conn_guard_close(g, p->slot);
    close(p->guarded);
    close(p->peer);
}

TEST(evicts_oldest_waiting_at_capacity_never_busy)
{
    struct conn_guard *g = conn_guard_create("test", 3, 60000, 60000);
    struct pair p[5];
    for (int i = 0; i < 3; i++) open_pair(g, &p[i]);
    conn_guard_request_line(g, p[0].slot);
    conn_guard_headers_done(g, p[0].slot); /* busy: never evicted */
    open_pair(g, &p[3]);                   /* 4 > 3: the oldest waiting one (p[1]) goes */
    CHECK(!was_shut(&p[0], 50));
    CHECK(was_shut(&p[1], 200));
    CHECK(!was_shut(&p[2], 50));
    open_pair(g, &p[4]); /* p[1] is shut but not yet closed: p[2] goes next */
    CHECK(was_shut(&p[2], 200));
    CHECK(!was_shut(&p[3], 50));
    CHECK(!was_shut(&p[4], 50));
    struct conn_guard_stats st;
    conn_guard_stats(g, &st);
    CHECK_EQ_INT(st.evicted, 2);
    CHECK_EQ_INT(st.open, 5);
    for (int i = 0; i < 5; i++) close_pair(g, &p[i]);
    conn_guard_stats(g, &st);
    CHECK_EQ_INT(st.open, 0);
    conn_guard_destroy(g);
}

TEST(header_deadline_is_whole_time_not_idle_time)
{
    struct conn_guard *g = conn_guard_create("test", 100, 400, 5000);
    struct pair slow, idle, done;
    open_pair(g, &slow);
    open_pair(g, &idle);
    open_pair(g, &done);
    conn_guard_request_line(g, slow.slot); /* headers trickle in: the deadline runs */
    conn_guard_request_line(g, done.slot);
    conn_guard_headers_done(g, done.slot);
    CHECK(!was_shut(&slow, 200));
    CHECK(was_shut(&slow, 800)); /* about 400 ms after the request line */
    CHECK(!was_shut(&idle, 100)); /* idle keep-alive: 5 s */
    CHECK(!was_shut(&done, 100));
    conn_guard_request_done(g, done.slot); /* waiting again: the idle deadline */
    CHECK(!was_shut(&done, 300));
    struct conn_guard_stats st;
    conn_guard_stats(g, &st);
    CHECK_EQ_INT(st.timed_out, 1);
    close_pair(g, &slow);
    close_pair(g, &idle);
    close_pair(g, &done);
    conn_guard_destroy(g);
}

TEST(owner_is_handed_back_on_close)
{
    struct conn_guard *g = conn_guard_create("test", 10, 1000, 1000);
    struct pair p;
    open_pair(g, &p);
    int token;
    conn_guard_set_owner(g, p.slot, &token);
    CHECK(conn_guard_close(g, p.slot) == &token);
    close(p.guarded);
    close(p.peer);
    open_pair(g, &p);
    conn_guard_set_owner(g, p.slot, &token);
    conn_guard_request_done(g, p.slot); /* the request completed normally */
    CHECK(conn_guard_close(g, p.slot) == NULL);
    CHECK(conn_guard_close(g, NULL) == NULL);
    close(p.guarded);
    close(p.peer);
    conn_guard_destroy(g);
}

TEST(client_hanging_up_mid_body_is_noticed)
{
    struct conn_guard *g = conn_guard_create("test", 10, 60000, 60000);
    struct pair body, waiting;
    open_pair(g, &body);
    open_pair(g, &waiting);
    conn_guard_request_line(g, body.slot);
    conn_guard_body_started(g, body.slot);
    close(body.peer); /* the client aborts its upload */
    close(waiting.peer); /* a waiting connection is libmicrohttpd's to notice */
    usleep(600 * 1000);
    struct conn_guard_stats st;
    conn_guard_stats(g, &st);
    CHECK_EQ_INT(st.abandoned, 1);
    char c;
    CHECK(recv(body.guarded, &c, 1, MSG_DONTWAIT) == 0); /* shut down on our side */
    conn_guard_close(g, body.slot);
    conn_guard_close(g, waiting.slot);
    close(body.guarded);
    close(waiting.guarded);
    conn_guard_destroy(g);
}

int main(void)
{
    RUN(evicts_oldest_waiting_at_capacity_never_busy);
    RUN(header_deadline_is_whole_time_not_idle_time);
    RUN(owner_is_handed_back_on_close);
    RUN(client_hanging_up_mid_body_is_noticed);
    return TEST_SUMMARY();
}
