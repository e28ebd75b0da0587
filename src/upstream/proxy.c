/* proxy.c - see proxy.h.
 *
 * libcurl's multi "socket" API is driven by the io_loop: curl tells us which
 * sockets to watch (socket_cb) and when to call it back (timer_cb); we forward
 * readiness with curl_multi_socket_action and collect finished transfers from
 * curl_multi_info_read. */
#include "proxy.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "body_pipe.h"
#include "log.h"
#include "metrics.h"
#include "upstream_set.h"

/* A stream pauses the transfer above HIGH_WATER unread bytes and resumes it
 * below LOW_WATER, so a slow client costs a bounded amount of memory. */
enum { STREAM_HIGH_WATER = 1 << 20, STREAM_LOW_WATER = 256 << 10, EASY_CACHE_MAX = 256 };

struct proxy {
    struct io_loop *loop;
    CURLM *multi;
    struct io_timer *timer;
    char *base_url;
    struct proxy_options opts;
    atomic_int active;
    CURL *easy_cache[EASY_CACHE_MAX];
    int n_easy_cache;
    /* Group fetches waiting for an instance below max_connections, oldest first (loop
     * thread only). */
    struct upstream_fetch *wait_head, *wait_tail;
    /* Fetches whose transfer is in the multi handle (loop thread only), for proxy_destroy:
     * curl_multi_cleanup does not free the easy handles still added. */
    struct upstream_fetch *running;
};

static void running_link(struct proxy *p, struct upstream_fetch *f)
{
    f->run_prev = NULL;
    f->run_next = p->running;
    if (p->running) p->running->run_prev = f;
    p->running = f;
}

static void running_unlink(struct proxy *p, struct upstream_fetch *f)
{
    if (f->run_prev) f->run_prev->run_next = f->run_next;
    else p->running = f->run_next;
    if (f->run_next) f->run_next->run_prev = f->run_prev;
    f->run_prev = f->run_next = NULL;
}

static void fetch_release_transfer(struct upstream_fetch *f);
static void wait_unlink(struct proxy *p, struct upstream_fetch *f);

struct upstream_stream {
    pthread_mutex_t lock;
    struct upstream_fetch *fetch;
    struct proxy *proxy;
    struct buf data;
    size_t rpos;
    bool done;           /* transfer finished (success or failure) */
    bool failed;
    bool paused;         /* the transfer is paused because the stream is full */
    bool unpause_posted;
    stream_signal_fn resume;
    void *resume_arg;
    /* Lifecycle, loop thread only. */
    bool transfer_ended;
    bool consumer_gone;
};

static void check_multi_info(struct proxy *p);
static void wake_waiters(struct proxy *p);

/* ---- loop integration ---- */

static void on_socket_event(int fd, uint32_t events, void *arg)
{
    struct proxy *p = arg;
    int flags = 0, running;
    if (events & EPOLLIN) flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP)) flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(p->multi, fd, flags, &running);
    check_multi_info(p);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct proxy *p = userp;
    if (what == CURL_POLL_REMOVE) {
        io_loop_unwatch(p->loop, s);
        return 0;
    }
    uint32_t ev = 0;
    if (what & CURL_POLL_IN) ev |= EPOLLIN;
    if (what & CURL_POLL_OUT) ev |= EPOLLOUT;
    if (io_loop_watch(p->loop, s, ev, on_socket_event, p) != 0) return -1;
    return 0;
}

static void on_timer(void *arg)
{
    struct proxy *p = arg;
    int running;
    p->timer = NULL;
    curl_multi_socket_action(p->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(p);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct proxy *p = userp;
    if (p->timer) {
        io_timer_cancel(p->loop, p->timer);
        p->timer = NULL;
    }
    if (timeout_ms >= 0) {
        p->timer = io_timer_start(p->loop, (uint64_t)timeout_ms, on_timer, p);
        if (p->timer == NULL) return -1;
    }
    return 0;
}

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

int proxy_create(struct io_loop *loop, const struct proxy_options *opts, struct proxy **out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once);
    struct proxy *p = calloc(1, sizeof *p);
    if (p == NULL) return -ENOMEM;
    p->loop = loop;
    p->opts = *opts;
    p->base_url = strdup(opts->base_url);
    p->multi = curl_multi_init();
    if (p->base_url == NULL || p->multi == NULL) {
        free(p->base_url);
        if (p->multi) curl_multi_cleanup(p->multi);
        free(p);
        return -ENOMEM;
    }
    p->opts.base_url = p->base_url;
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(p->multi, CURLMOPT_SOCKETDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(p->multi, CURLMOPT_TIMERDATA, p);
    curl_multi_setopt(p->multi, CURLMOPT_MAXCONNECTS, (long)opts->max_connections);
    curl_multi_setopt(p->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)opts->max_connections);
    *out = p;
    return 0;
}

void proxy_destroy(struct proxy *p)
{
    if (p == NULL) return;
    /* What still runs or waits (health probes in flight; requests have drained) is
     * released here and handed back through on_abandon. */
    while (p->running != NULL) {
        struct upstream_fetch *f = p->running;
        fetch_release_transfer(f); /* unlinks it */
        if (f->stream == NULL && f->on_abandon) f->on_abandon(f);
    }
    while (p->wait_head != NULL) {
        struct upstream_fetch *f = p->wait_head;
        io_timer_cancel(p->loop, f->wait_timer);
        f->wait_timer = NULL;
        wait_unlink(p, f);
        if (f->on_abandon) f->on_abandon(f);
    }
    if (p->timer) io_timer_cancel(p->loop, p->timer);
    for (int i = 0; i < p->n_easy_cache; i++) curl_easy_cleanup(p->easy_cache[i]);
    curl_multi_cleanup(p->multi);
    free(p->base_url);
    free(p);
}

int proxy_active(const struct proxy *p) { return atomic_load(&((struct proxy *)p)->active); }

/* ---- response parsing ---- */

static void deliver_ready(struct upstream_fetch *f)
{
    if (f->ready_sent) return;
    f->ready_sent = true;
    f->on_ready(f);
}

static void maybe_stream_early(struct upstream_fetch *f);

static size_t header_cb(char *data, size_t size, size_t nitems, void *userp)
{
    struct upstream_fetch *f = userp;
    size_t len = size * nitems;
    size_t n = len;
    while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n')) n--;
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        /* A new status line: interim 1xx responses reset what came before. */
        header_list_free(&f->resp_headers);
        const char *sp = memchr(data, ' ', n);
        f->status = sp ? atoi(sp + 1) : 0;
        f->content_length = -1;
        return len;
    }
    if (n == 0) {
        /* End of a header block; a final one may start the stream. */
        if (f->status >= 200) maybe_stream_early(f);
        return len;
    }
    const char *colon = memchr(data, ':', n);
    if (colon == NULL) return len;
    size_t name_len = (size_t)(colon - data);
    const char *v = colon + 1;
    const char *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
    if (header_list_addn(&f->resp_headers, data, name_len, v, (size_t)(end - v)) != 0) return 0;
    if (name_len == 14 && strncasecmp(data, "content-length", 14) == 0)
        f->content_length = strtoll(v, NULL, 10);
    return len;
}

static struct upstream_stream *stream_begin(struct upstream_fetch *f)
{
    struct upstream_stream *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    pthread_mutex_init(&s->lock, NULL);
    s->fetch = f;
    s->proxy = f->proxy;
    s->data = f->body; /* bytes received so far start the stream */
    memset(&f->body, 0, sizeof f->body);
    f->stream = s;
    return s;
}

/* Loop thread, stream lock held. */
static void stream_signal(struct upstream_stream *s)
{
    if (s->resume) {
        stream_signal_fn resume = s->resume;
        s->resume = NULL;
        resume(s->resume_arg);
    }
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct upstream_fetch *f = userp;
    size_t len = size * nmemb;
    struct upstream_stream *s = f->stream;
    if (s == NULL) {
        if (buf_append(&f->body, data, len) != 0) return 0;
        bool too_big = f->buffer_limit > 0 && f->body.len > f->buffer_limit;
        if (too_big && !f->head_only) {
            if (stream_begin(f) == NULL) return 0;
            deliver_ready(f);
        }
        return len;
    }
    pthread_mutex_lock(&s->lock);
    if (s->data.len - s->rpos >= STREAM_HIGH_WATER) {
        s->paused = true;
        pthread_mutex_unlock(&s->lock);
        return CURL_WRITEFUNC_PAUSE;
    }
    if (s->rpos > 0 && s->rpos == s->data.len) s->rpos = s->data.len = 0;
    int rc = buf_append(&s->data, data, len);
    stream_signal(s);
    pthread_mutex_unlock(&s->lock);
    return rc == 0 ? len : 0;
}

/* Called once the headers are complete: a body announced larger than the
 * buffer limit streams from its first byte. */
static void maybe_stream_early(struct upstream_fetch *f)
{
    if (f->stream || f->head_only || f->buffer_limit == 0) return;
    if (f->content_length >= 0 && (size_t)f->content_length > f->buffer_limit) {
        if (stream_begin(f) != NULL) deliver_ready(f);
    }
}

/* ---- transfer lifecycle ---- */

static void recycle_easy(struct proxy *p, CURL *easy)
{
    if (p->n_easy_cache < EASY_CACHE_MAX) {
        curl_easy_reset(easy);
        p->easy_cache[p->n_easy_cache++] = easy;
    } else {
        curl_easy_cleanup(easy);
    }
}

/* Reports the current attempt on a group's instance (once). */
static void fetch_report(struct upstream_fetch *f, enum upstream_attempt a, const char *why)
{
    if (!f->attempt_open) return;
    f->attempt_open = false;
    upstream_instance_done(f->group, f->instance, a, f->status, why);
}

static void fetch_release_transfer(struct upstream_fetch *f)
{
    fetch_report(f, UPSTREAM_ATTEMPT_ABORTED, NULL); /* ended by us, no verdict */
    if (f->req_pipe && body_pipe_consumer(f->req_pipe) == f) {
        /* No wake-up may reach this transfer any more. */
        body_pipe_set_consumer(f->req_pipe, NULL, NULL, NULL);
        body_pipe_unref(f->req_pipe);
    }
    if (f->curl_headers) {
        curl_slist_free_all(f->curl_headers);
        f->curl_headers = NULL;
    }
    if (f->easy) {
        running_unlink(f->proxy, f);
        curl_multi_remove_handle(f->proxy->multi, f->easy);
        recycle_easy(f->proxy, f->easy);
        f->easy = NULL;
        atomic_fetch_sub(&f->proxy->active, 1);
    }
}

static void stream_free_if_done(struct upstream_stream *s)
{
    if (!s->transfer_ended || !s->consumer_gone) return;
    struct upstream_fetch *f = s->fetch;
    buf_free(&s->data);
    pthread_mutex_destroy(&s->lock);
    free(s);
    f->stream = NULL;
    if (f->on_free) f->on_free(f);
}

static void set_error(struct upstream_fetch *f, CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        f->error = UPSTREAM_REFUSED;
        break;
    case CURLE_OPERATION_TIMEDOUT:
        f->error = UPSTREAM_TIMEOUT;
        break;
    default:
        f->error = UPSTREAM_BROKEN;
        break;
    }
    snprintf(f->errmsg, sizeof f->errmsg, "%s", curl_easy_strerror(rc));
}

static void start_transfer(void *arg);

/* Whether a failed attempt may go to another instance (see struct upstream_fetch). */
static bool fetch_may_retry(struct proxy *p, struct upstream_fetch *f, CURL *easy, CURLcode rc)
{
    if (f->group == NULL || f->stream != NULL || f->ready_sent || f->req_pipe != NULL)
        return false;
    bool safe = f->head_only || strcmp(f->method, "GET") == 0 || strcmp(f->method, "HEAD") == 0;
    if (!safe && !f->retry_unsafe) return false;
    const struct upstream_config *c = upstream_group_config(f->group);
    if (f->attempts > c->retries || f->attempts >= PROXY_MAX_ATTEMPTS) return false;
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        break;
    case CURLE_OPERATION_TIMEDOUT: {
        /* A connect timeout only: a slow answer is not retried (it would double the load
         * on a struggling upstream). */
        curl_off_t connect_us = 0;
        curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connect_us);
        if (connect_us > 0) return false;
        break;
    }
    default:
        return false;
    }
    /* Within the request's budget: at least 50 ms must be left for the next attempt. */
    int budget = f->timeout_ms > 0 ? f->timeout_ms : upstream_group_timeout_ms(f->group);
    if (budget <= 0) budget = p->opts.total_timeout_ms;
    return clock_mono_ms() - f->started_ms + 50 < budget;
}

static void finish_transfer(struct proxy *p, CURL *easy, CURLcode rc)
{
    struct upstream_fetch *f = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&f);
    if (rc != CURLE_OK) set_error(f, rc);
    curl_off_t total_us = 0;
    if (curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total_us) == CURLE_OK)
        metrics_observe_upstream((double)total_us / 1e6);
    if (f->attempt_open) {
        bool bad_status = f->status >= 500 && upstream_group_config(f->group)->fail_on_5xx;
        enum upstream_attempt a = rc != CURLE_OK || bad_status ? UPSTREAM_ATTEMPT_FAILED
                                                               : UPSTREAM_ATTEMPT_OK;
        fetch_report(f, a, rc != CURLE_OK ? curl_easy_strerror(rc) : NULL);
    }
    if (rc != CURLE_OK && fetch_may_retry(p, f, easy, rc)) {
        LOG_D("proxy: %s %s on %s failed (%s); retrying on another instance", f->method,
              f->target, upstream_instance_url(f->instance), curl_easy_strerror(rc));
        upstream_count_retry();
        fetch_release_transfer(f);
        header_list_free(&f->resp_headers);
        buf_free(&f->body);
        f->error = UPSTREAM_OK;
        f->errmsg[0] = '\0';
        start_transfer(f);
        return;
    }
    fetch_release_transfer(f);
    struct upstream_stream *s = f->stream;
    if (s == NULL) {
        deliver_ready(f);
        return;
    }
    pthread_mutex_lock(&s->lock);
    s->done = true;
    s->failed = rc != CURLE_OK;
    stream_signal(s);
    pthread_mutex_unlock(&s->lock);
    s->transfer_ended = true;
    stream_free_if_done(s);
}

static void check_multi_info(struct proxy *p)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(p->multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE) finish_transfer(p, msg->easy_handle, msg->data.result);
    }
    wake_waiters(p); /* finished attempts freed their slots */
}

static struct curl_slist *build_headers(const struct upstream_fetch *f)
{
    struct curl_slist *list = NULL, *tmp;
    char small[1024];
    for (size_t i = 0; i < f->req_headers.n; i++) {
        const struct http_header *h = &f->req_headers.items[i];
        /* Never cut a field: the upstream must see exactly what keys were built from. */
        size_t need = strlen(h->name) + strlen(h->value) + 3;
        char *line = need <= sizeof small ? small : malloc(need);
        if (line == NULL) goto fail;
        /* "Name;" is curl's way of sending a header with an empty value. */
        if (h->value[0] == '\0') snprintf(line, need, "%s;", h->name);
        else snprintf(line, need, "%s: %s", h->name, h->value);
        tmp = curl_slist_append(list, line);
        if (line != small) free(line);
        if (tmp == NULL) goto fail;
        list = tmp;
    }
    /* Without these curl would add its own Expect, Accept and, to a body sent
     * without one, Content-Type: application/x-www-form-urlencoded: the upstream
     * must see the client's fields, no more. */
    const char *extra[] = {"Expect:", "Accept:", "Content-Type:"};
    const char *own[] = {NULL, "accept", "content-type"};
    for (size_t i = 0; i < 3; i++) {
        if (own[i] && header_list_get(&f->req_headers, own[i])) continue;
        tmp = curl_slist_append(list, extra[i]);
        if (tmp == NULL) goto fail;
        list = tmp;
    }
    return list;
fail:
    curl_slist_free_all(list);
    return NULL;
}

/* ---- request bodies streamed from the client (body_pipe.h) ---- */

static size_t read_cb(char *dst, size_t size, size_t nitems, void *userp)
{
    struct upstream_fetch *f = userp;
    bool eof;
    size_t n = body_pipe_read(f->req_pipe, dst, size * nitems, &eof);
    if (n == BODY_PIPE_ABORT) return CURL_READFUNC_ABORT;
    if (n == 0 && !eof) return CURL_READFUNC_PAUSE;
    return n;
}

/* Loop thread: more of the body (or its end, or an abort) is there. */
static void pipe_unpause_task(void *arg)
{
    struct body_pipe *pipe = arg;
    struct upstream_fetch *f = body_pipe_consumer(pipe);
    if (f && f->easy) curl_easy_pause(f->easy, CURLPAUSE_CONT);
    body_pipe_unref(pipe);
}

/* Producer's thread: wakes a paused transfer through the loop. */
static void pipe_wake(struct body_pipe *pipe, void *arg)
{
    struct proxy *p = arg;
    body_pipe_ref(pipe);
    if (io_loop_post(p->loop, pipe_unpause_task, pipe) != 0) body_pipe_unref(pipe);
}

/* The attempt's timeouts: the fetch's, the group's, or the proxy's; a retry gets what is
 * left of the first attempt's budget. */
static void fetch_timeouts(struct proxy *p, const struct upstream_fetch *f, long *connect_ms,
                           long *total_ms)
{
    int c = f->connect_timeout_ms, t = f->timeout_ms;
    if (f->group != NULL) {
        if (c <= 0) c = upstream_group_connect_timeout_ms(f->group);
        if (t <= 0) t = upstream_group_timeout_ms(f->group);
    }
    if (c <= 0) c = p->opts.connect_timeout_ms;
    if (t <= 0) t = p->opts.total_timeout_ms;
    if (f->group != NULL && f->attempts > 1) {
        int64_t left = (int64_t)t - (clock_mono_ms() - f->started_ms);
        t = left < 50 ? 50 : (int)left;
        if (c > t) c = t;
    }
    *connect_ms = c;
    *total_ms = t;
}

/* ---- the per-instance bound: waiting for a slot ----
 *
 * Done here rather than by libcurl: CURLMOPT_MAX_HOST_CONNECTIONS is one number for every
 * host of the multi handle (UPSTREAM_URL's included), and queues a transfer on the instance
 * already picked instead of letting the balancer choose one with room; CURLOPT_MAXCONNECTS
 * on an easy handle is ignored inside a multi handle.  So the pick never takes an instance
 * at its bound, and a fetch that finds them all full waits in this FIFO. */

static void wait_unlink(struct proxy *p, struct upstream_fetch *f)
{
    if (f->wait_prev) f->wait_prev->wait_next = f->wait_next;
    else p->wait_head = f->wait_next;
    if (f->wait_next) f->wait_next->wait_prev = f->wait_prev;
    else p->wait_tail = f->wait_prev;
    f->wait_prev = f->wait_next = NULL;
    f->waiting = false;
}

/* Ends a fetch that found no slot: 503 with why. */
static void fetch_busy(struct upstream_fetch *f, const char *why)
{
    f->error = UPSTREAM_BUSY;
    snprintf(f->errmsg, sizeof f->errmsg, "upstream '%s': every instance at max_connections "
             "(%d): %s", upstream_group_name(f->group),
             upstream_group_max_connections(f->group), why);
    deliver_ready(f);
}

static void wait_expired(void *arg)
{
    struct upstream_fetch *f = arg;
    f->wait_timer = NULL;
    wait_unlink(f->proxy, f);
    fetch_busy(f, "no slot within the wait");
}

/* Loop thread: queues f until an instance of its group has a free slot, or ends it with
 * UPSTREAM_BUSY when the group's queue is full or no time is left (docs/design.md,
 * Upstreams). */
static void wait_for_slot(struct proxy *p, struct upstream_fetch *f, int connect_ms,
                          int total_ms)
{
    /* Four waiters per slot: a burst is absorbed, a flood is refused at once. */
    size_t queued = 0, limit = PROXY_WAITERS_PER_SLOT * upstream_group_size(f->group) *
                               (size_t)upstream_group_max_connections(f->group);
    for (struct upstream_fetch *w = p->wait_head; w != NULL; w = w->wait_next)
        queued += w->group == f->group;
    int64_t left = (int64_t)total_ms - (clock_mono_ms() - f->started_ms) - 50;
    int64_t wait = left < connect_ms ? left : connect_ms;
    if (queued >= limit) {
        fetch_busy(f, "the queue is full");
        return;
    }
    if (wait <= 0) {
        fetch_busy(f, "no time left to wait");
        return;
    }
    f->wait_timer = io_timer_start(p->loop, (uint64_t)wait, wait_expired, f);
    if (f->wait_timer == NULL) {
        fetch_busy(f, "cannot wait (out of memory)");
        return;
    }
    f->waiting = true;
    f->wait_prev = p->wait_tail;
    if (p->wait_tail) p->wait_tail->wait_next = f;
    else p->wait_head = f;
    p->wait_tail = f;
}

static void start_attempt(struct proxy *p, struct upstream_fetch *f, const char *base_url);

/* The attempt goes to i (a reference from upstream_group_pick, kept in tried). */
static void take_instance(struct upstream_fetch *f, struct upstream_instance *i)
{
    f->tried[f->attempts++] = i;
    upstream_instance_unref(f->instance);
    f->instance = upstream_instance_ref(i);
    f->attempt_open = true;
}

/* Loop thread: starts the waiters whose group has a slot again, oldest first. */
static void wake_waiters(struct proxy *p)
{
    struct upstream_fetch *w = p->wait_head;
    while (w != NULL) {
        struct upstream_fetch *next = w->wait_next;
        struct upstream_instance *i =
            upstream_group_pick(w->group, w->balance_key, w->tried, (size_t)w->attempts);
        if (i != NULL) {
            io_timer_cancel(p->loop, w->wait_timer);
            w->wait_timer = NULL;
            wait_unlink(p, w);
            take_instance(w, i);
            start_attempt(p, w, upstream_instance_url(i));
        }
        w = next;
    }
}

static void start_transfer(void *arg)
{
    struct upstream_fetch *f = arg;
    struct proxy *p = f->proxy;
    if (f->group == NULL || upstream_group_size(f->group) == 0) {
        start_attempt(p, f, f->instance != NULL ? upstream_instance_url(f->instance)
                                                : p->base_url);
        return;
    }
    if (f->attempts == 0) f->started_ms = clock_mono_ms();
    struct upstream_instance *i =
        upstream_group_pick(f->group, f->balance_key, f->tried, (size_t)f->attempts);
    if (i == NULL) {
        long connect_ms, total_ms;
        fetch_timeouts(p, f, &connect_ms, &total_ms);
        int budget = f->timeout_ms > 0 ? f->timeout_ms : upstream_group_timeout_ms(f->group);
        if (budget <= 0) budget = p->opts.total_timeout_ms;
        wait_for_slot(p, f, (int)connect_ms, budget);
        return;
    }
    take_instance(f, i);
    start_attempt(p, f, upstream_instance_url(i));
}

/* Starts one attempt on base_url (the picked instance's, the probe's, or the proxy's). */
static void start_attempt(struct proxy *p, struct upstream_fetch *f, const char *base_url)
{
    CURL *easy = p->n_easy_cache > 0 ? p->easy_cache[--p->n_easy_cache] : curl_easy_init();
    size_t url_len = strlen(base_url) + strlen(f->target) + 1;
    char *url = malloc(url_len);
    f->curl_headers = build_headers(f);
    if (easy == NULL || url == NULL || f->curl_headers == NULL) {
        if (easy) recycle_easy(p, easy);
        free(url);
        if (f->curl_headers) curl_slist_free_all(f->curl_headers);
        f->curl_headers = NULL;
        f->error = UPSTREAM_BROKEN;
        snprintf(f->errmsg, sizeof f->errmsg, "out of memory");
        fetch_report(f, UPSTREAM_ATTEMPT_ABORTED, NULL);
        deliver_ready(f);
        return;
    }
    snprintf(url, url_len, "%s%s", base_url, f->target);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    free(url); /* curl copies string options */
    curl_easy_setopt(easy, CURLOPT_PRIVATE, f);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
    curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    long connect_ms, total_ms;
    fetch_timeouts(p, f, &connect_ms, &total_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, total_ms);
    /* Names are resolved again after dns_ttl, so an instance replaced behind a name is found
     * (curl keeps its default otherwise).  A probe has no group but must follow the name as
     * the requests do: the DNS cache is the multi handle's, and while the instance is down no
     * request refreshes it (docs/design.md, Upstreams). */
    if (f->group != NULL || f->instance != NULL) {
        int ttl = f->group != NULL ? upstream_group_config(f->group)->dns_ttl_s : f->dns_ttl_s;
        curl_easy_setopt(easy, CURLOPT_DNS_CACHE_TIMEOUT, (long)ttl); /* 0: never reused */
    }
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, f->curl_headers);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, f);
    if (f->req_pipe) {
        body_pipe_set_consumer(body_pipe_ref(f->req_pipe), pipe_wake, p, f);
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(easy, CURLOPT_READDATA, f);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->req_body_size);
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, f->method);
    } else if (f->head_only) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (strcmp(f->method, "GET") == 0 && f->req_body_len == 0) {
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    } else {
        if (f->req_body_len > 0 || strcmp(f->method, "POST") == 0 ||
            strcmp(f->method, "PUT") == 0 || strcmp(f->method, "PATCH") == 0) {
            curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->req_body_len);
            curl_easy_setopt(easy, CURLOPT_POSTFIELDS, f->req_body ? f->req_body : "");
        }
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, f->method);
    }
    f->easy = easy;
    running_link(p, f);
    f->status = 0;
    f->content_length = -1;
    atomic_fetch_add(&p->active, 1);
    if (curl_multi_add_handle(p->multi, easy) != CURLM_OK) {
        fetch_release_transfer(f);
        f->error = UPSTREAM_BROKEN;
        snprintf(f->errmsg, sizeof f->errmsg, "could not start the transfer");
        deliver_ready(f);
    }
}

int proxy_submit(struct proxy *p, struct upstream_fetch *f)
{
    f->proxy = p;
    f->error = UPSTREAM_OK;
    f->errmsg[0] = '\0';
    f->stream = NULL;
    f->ready_sent = false;
    return io_loop_post(p->loop, start_transfer, f);
}

void upstream_fetch_clear(struct upstream_fetch *f)
{
    for (int i = 0; i < f->attempts; i++) upstream_instance_unref(f->tried[i]);
    f->attempts = 0;
    upstream_instance_unref(f->instance);
    f->instance = NULL;
    upstream_group_unref(f->group);
    f->group = NULL;
    header_list_free(&f->req_headers);
    header_list_free(&f->resp_headers);
    buf_free(&f->body);
    free(f->target);
    f->target = NULL;
}

/* ---- streaming: consumer side ---- */

static void unpause_task(void *arg)
{
    struct upstream_stream *s = arg;
    pthread_mutex_lock(&s->lock);
    s->unpause_posted = false;
    bool resume = s->paused && !s->transfer_ended;
    s->paused = false;
    pthread_mutex_unlock(&s->lock);
    if (resume && s->fetch->easy) curl_easy_pause(s->fetch->easy, CURLPAUSE_CONT);
}

enum stream_read upstream_stream_read(struct upstream_stream *s, char *dst, size_t max, size_t *n,
                                      stream_signal_fn suspend, stream_signal_fn resume,
                                      void *arg)
{
    enum stream_read r;
    *n = 0;
    pthread_mutex_lock(&s->lock);
    size_t avail = s->data.len - s->rpos;
    if (avail > 0) {
        size_t take = avail < max ? avail : max;
        memcpy(dst, s->data.data + s->rpos, take);
        s->rpos += take;
        *n = take;
        r = STREAM_DATA;
        if (s->paused && !s->unpause_posted && s->data.len - s->rpos < STREAM_LOW_WATER) {
            /* Compact before the producer refills. */
            memmove(s->data.data, s->data.data + s->rpos, s->data.len - s->rpos);
            s->data.len -= s->rpos;
            s->rpos = 0;
            s->unpause_posted = io_loop_post(s->proxy->loop, unpause_task, s) == 0;
        }
    } else if (s->done) {
        r = s->failed ? STREAM_FAILED : STREAM_END;
    } else {
        suspend(arg);
        s->resume = resume;
        s->resume_arg = arg;
        r = STREAM_WAIT;
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void release_task(void *arg)
{
    struct upstream_stream *s = arg;
    struct proxy *p = s->proxy;
    s->consumer_gone = true;
    bool freed_slot = false;
    if (!s->transfer_ended) {
        struct upstream_fetch *f = s->fetch;
        freed_slot = f->attempt_open;
        fetch_release_transfer(f);
        s->transfer_ended = true;
    }
    stream_free_if_done(s);
    if (freed_slot) wake_waiters(p);
}

void upstream_stream_release(struct upstream_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->resume = NULL;
    pthread_mutex_unlock(&s->lock);
    if (io_loop_post(s->proxy->loop, release_task, s) != 0)
        LOG_E("proxy: could not release a stream (loop stopped); leaking it");
}
