/* metrics.c - see metrics.h. */
#include "metrics.h"

#include "hash.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef CACHEGW_VERSION
#define CACHEGW_VERSION "dev"
#endif

/* ---- histograms ----
 *
 * Buckets are counted non-cumulatively (one atomic add per observation) and summed into
 * Prometheus' cumulative "le" buckets when rendered; _count is that sum, so it always
 * equals the +Inf bucket.  The sum is kept in nanoseconds as an integer: an atomic double
 * would need a compare-and-swap loop. */

#define HIST_MAX_BOUNDS 16

struct histogram {
    const double *bounds; /* upper bounds in seconds, ascending; +Inf implied */
    size_t n_bounds;
    atomic_uint_fast64_t buckets[HIST_MAX_BOUNDS + 1];
    atomic_uint_fast64_t sum_ns;
};

/* Requests: a memory hit takes well under a millisecond, a miss what the upstream takes. */
static const double REQUEST_BOUNDS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                        0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                        5,      10};
static const double UPSTREAM_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10,   30};
/* Redis on a LAN answers in tens to hundreds of microseconds; 2 s is the default timeout. */
static const double REDIS_BOUNDS[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                      0.01,    0.025,  0.05,    0.1,    0.25,  0.5,    1,
                                      2.5};

#define NBOUNDS(a) (sizeof(a) / sizeof((a)[0]))
_Static_assert(NBOUNDS(REQUEST_BOUNDS) <= HIST_MAX_BOUNDS, "too many request buckets");
_Static_assert(NBOUNDS(UPSTREAM_BOUNDS) <= HIST_MAX_BOUNDS, "too many upstream buckets");
_Static_assert(NBOUNDS(REDIS_BOUNDS) <= HIST_MAX_BOUNDS, "too many redis buckets");

#define REQUEST_HIST {.bounds = REQUEST_BOUNDS, .n_bounds = NBOUNDS(REQUEST_BOUNDS)}

static struct histogram g_request_hist[METRICS_RESULTS] = {REQUEST_HIST, REQUEST_HIST,
                                                           REQUEST_HIST, REQUEST_HIST,
                                                           REQUEST_HIST};
static struct histogram g_upstream_hist = {.bounds = UPSTREAM_BOUNDS,
                                           .n_bounds = NBOUNDS(UPSTREAM_BOUNDS)};
static struct histogram g_redis_hist = {.bounds = REDIS_BOUNDS, .n_bounds = NBOUNDS(REDIS_BOUNDS)};

static void hist_observe(struct histogram *h, double seconds)
{
    if (!(seconds >= 0)) seconds = 0; /* NaN or a clock step backwards */
    size_t i = 0;
    while (i < h->n_bounds && seconds > h->bounds[i]) i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint_fast64_t)(seconds * 1e9), memory_order_relaxed);
}

/* One histogram's series; labels is "" or `name="value",` (with the trailing comma). */
static int hist_write(FILE *out, const char *name, const char *labels,
                      const struct histogram *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n_bounds) {
            if (fprintf(out, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, h->bounds[i],
                        (unsigned long long)cum) < 0)
                return -1;
        } else if (fprintf(out, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
                           (unsigned long long)cum) < 0) {
            return -1;
        }
    }
    /* _sum and _count carry the same labels as the buckets, without "le". */
    char plain[256];
    size_t ll = strlen(labels);
    if (ll > 0 && ll < sizeof plain) {
        memcpy(plain, labels, ll - 1); /* drop the trailing comma */
        plain[ll - 1] = '\0';
    } else {
        plain[0] = '\0';
    }
    const char *open = plain[0] ? "{" : "", *close = plain[0] ? "}" : "";
    /* The sum in seconds, exact to the nanosecond (a double printed with %g would round). */
    unsigned long long ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
    if (fprintf(out, "%s_sum%s%s%s %llu.%09llu\n%s_count%s%s%s %llu\n", name, open, plain,
                close, ns / 1000000000ull, ns % 1000000000ull, name, open, plain, close,
                (unsigned long long)cum) < 0)
        return -1;
    return 0;
}

/* ---- request counters ---- */

static const char *const RESULT_NAMES[METRICS_RESULTS] = {"hit", "miss", "bypass", "stale",
                                                          "error"};
static const char *const TIER_NAMES[METRICS_TIERS] = {"memory", "redis", "none"};

static atomic_uint_fast64_t g_requests[METRICS_RESULTS][METRICS_TIERS];

/* Interned route patterns.  A slot's name is published (release) before n is raised, so
 * a reader that sees n sees every name below it; names are never removed. */
struct route_slot {
    _Atomic(const char *) name;
    uint64_t hash; /* of name; written before name is published */
    atomic_uint_fast64_t requests[METRICS_RESULTS];
};

static struct route_slot g_routes[METRICS_MAX_ROUTES];
static atomic_size_t g_n_routes;
static pthread_mutex_t g_routes_lock = PTHREAD_MUTEX_INITIALIZER;
/* Patterns past METRICS_MAX_ROUTES, and a failed interning, count here. */
static struct route_slot g_route_other = {.name = "other"};

/* Route names are chosen by the operator, not by clients; the hash only makes the scan
 * cheap (one compare per route, strcmp on a match).  The project's one hash (hash.h). */
static uint64_t route_hash(const char *s) { return hash_bytes(s, strlen(s)); }

static struct route_slot *route_find(const char *route, uint64_t hash, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (g_routes[i].hash != hash) continue;
        const char *name = atomic_load_explicit(&g_routes[i].name, memory_order_acquire);
        if (strcmp(name, route) == 0) return &g_routes[i];
    }
    return NULL;
}

static struct route_slot *route_slot_of(const char *route)
{
    uint64_t hash = route_hash(route);
    size_t n = atomic_load_explicit(&g_n_routes, memory_order_acquire);
    struct route_slot *s = route_find(route, hash, n);
    if (s != NULL) return s;
    pthread_mutex_lock(&g_routes_lock);
    n = atomic_load_explicit(&g_n_routes, memory_order_acquire);
    s = route_find(route, hash, n); /* interned by another thread meanwhile */
    if (s == NULL && n < METRICS_MAX_ROUTES) {
        char *copy = strdup(route);
        if (copy != NULL) {
            s = &g_routes[n];
            s->hash = hash;
            atomic_store_explicit(&s->name, copy, memory_order_release);
            atomic_store_explicit(&g_n_routes, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&g_routes_lock);
    return s != NULL ? s : &g_route_other;
}

void metrics_record_request(enum metrics_result result, enum metrics_tier tier,
                            const char *route, double seconds)
{
    if ((unsigned)result >= METRICS_RESULTS) result = METRICS_ERROR;
    if (result != METRICS_HIT && result != METRICS_STALE) tier = METRICS_TIER_NONE;
    if ((unsigned)tier >= METRICS_TIERS) tier = METRICS_TIER_NONE;
    atomic_fetch_add_explicit(&g_requests[result][tier], 1, memory_order_relaxed);
    hist_observe(&g_request_hist[result], seconds);
    struct route_slot *s = route_slot_of(route != NULL ? route : "none");
    atomic_fetch_add_explicit(&s->requests[result], 1, memory_order_relaxed);
}

int64_t metrics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void metrics_observe_upstream(double seconds) { hist_observe(&g_upstream_hist, seconds); }

void metrics_observe_redis_command(double seconds) { hist_observe(&g_redis_hist, seconds); }

/* ---- policy reloads ---- */

static atomic_uint_fast64_t g_reloads_ok, g_reloads_failed;
static atomic_int_fast64_t g_last_success_ms; /* 0: never loaded */

void metrics_policy_loaded(bool initial, bool ok, int64_t wall_ms)
{
    if (!initial) atomic_fetch_add(ok ? &g_reloads_ok : &g_reloads_failed, 1);
    if (ok) atomic_store(&g_last_success_ms, wall_ms);
}

/* ---- own endpoints in flight ---- */

static atomic_int_fast64_t g_own_in_flight;

void metrics_own_endpoint_begin(void) { atomic_fetch_add(&g_own_in_flight, 1); }
void metrics_own_endpoint_end(void) { atomic_fetch_sub(&g_own_in_flight, 1); }
int64_t metrics_own_endpoints_in_flight(void) { return atomic_load(&g_own_in_flight); }

/* ---- process metrics (from /proc/self, as the Prometheus client libraries do) ---- */

struct proc_stat {
    double cpu_s, start_time_s;
    uint64_t rss_bytes, vsize_bytes;
    bool ok;
};

/* The boot time, from /proc/stat's btime line; 0 when unreadable. */
static long long boot_time_s(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL) return 0;
    char line[256];
    long long btime = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "btime %lld", &btime) == 1) break;
    fclose(f);
    return btime;
}

static void read_proc_stat(struct proc_stat *ps)
{
    *ps = (struct proc_stat){0};
    FILE *f = fopen("/proc/self/stat", "re");
    if (f == NULL) return;
    char line[1024];
    bool got = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    if (!got) return;
    /* The command name (field 2) is in parentheses and may hold spaces or ')': the fields
     * after it start at the last ')'. */
    const char *p = strrchr(line, ')');
    if (p == NULL) return;
    unsigned long utime, stime;
    unsigned long long starttime, vsize;
    long rss;
    /* Fields 3..24: state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt,
     * majflt, cmajflt, utime, stime, cutime, cstime, priority, nice, threads,
     * itrealvalue, starttime, vsize, rss. */
    if (sscanf(p + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
               "%llu %llu %ld",
               &utime, &stime, &starttime, &vsize, &rss) != 5)
        return;
    double tick = (double)sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (tick <= 0 || page <= 0) return;
    ps->cpu_s = (double)(utime + stime) / tick;
    ps->start_time_s = (double)boot_time_s() + (double)starttime / tick;
    ps->rss_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
    ps->vsize_bytes = vsize;
    ps->ok = true;
}

/* Open descriptors, not counting the one this count itself opens; -1 when unreadable. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n > 0 ? n - 1 : 0;
}

/* ---- rendering ---- */

void metrics_escape_label(const char *in, char *out, size_t out_len)
{
    if (out_len == 0) return;
    size_t o = 0;
    for (; *in != '\0'; in++) {
        const char *rep = NULL;
        if (*in == '\\') rep = "\\\\";
        else if (*in == '"') rep = "\\\"";
        else if (*in == '\n') rep = "\\n";
        size_t need = rep ? 2 : 1;
        if (o + need >= out_len) break;
        if (rep) {
            memcpy(out + o, rep, 2);
        } else {
            out[o] = *in;
        }
        o += need;
    }
    out[o] = '\0';
}

static int family(FILE *out, const char *name, const char *type, const char *help)
{
    return fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type) < 0 ? -1 : 0;
}

static int write_requests(FILE *out)
{
    if (family(out, "cachegw_requests_total", "counter",
               "Requests answered, by cache result and the tier a cached answer came from "
               "(not counting the gateway's own endpoints)") != 0)
        return -1;
    for (int r = 0; r < METRICS_RESULTS; r++) {
        for (int t = 0; t < METRICS_TIERS; t++) {
            /* Only the combinations that can happen: a bounded, predictable label set. */
            bool cached = r == METRICS_HIT || r == METRICS_STALE;
            if (cached == (t == METRICS_TIER_NONE)) continue;
            if (fprintf(out, "cachegw_requests_total{result=\"%s\",tier=\"%s\"} %llu\n",
                        RESULT_NAMES[r], TIER_NAMES[t],
                        (unsigned long long)atomic_load_explicit(&g_requests[r][t],
                                                                 memory_order_relaxed)) < 0)
                return -1;
        }
    }
    if (family(out, "cachegw_request_duration_seconds", "histogram",
               "Time from request line to the end of the answer, by cache result") != 0)
        return -1;
    for (int r = 0; r < METRICS_RESULTS; r++) {
        char labels[32];
        snprintf(labels, sizeof labels, "result=\"%s\",", RESULT_NAMES[r]);
        if (hist_write(out, "cachegw_request_duration_seconds", labels, &g_request_hist[r]) != 0)
            return -1;
    }
    if (family(out, "cachegw_route_requests_total", "counter",
               "Requests answered, by the route pattern of the policies (\"none\": no route "
               "matched) and cache result") != 0)
        return -1;
    size_t n = atomic_load_explicit(&g_n_routes, memory_order_acquire);
    for (size_t i = 0; i <= n; i++) {
        const struct route_slot *s = i < n ? &g_routes[i] : &g_route_other;
        char route[512];
        metrics_escape_label(atomic_load_explicit(&s->name, memory_order_acquire), route,
                             sizeof route);
        for (int r = 0; r < METRICS_RESULTS; r++) {
            uint64_t v = atomic_load_explicit(&s->requests[r], memory_order_relaxed);
            /* Zero series are left out: a route shows the results it has had. */
            if (v == 0) continue;
            if (fprintf(out, "cachegw_route_requests_total{route=\"%s\",result=\"%s\"} %llu\n",
                        route, RESULT_NAMES[r], (unsigned long long)v) < 0)
                return -1;
        }
    }
    return 0;
}

static int write_latencies(FILE *out)
{
    if (family(out, "cachegw_upstream_duration_seconds", "histogram",
               "Upstream transfers, whole time including failures") != 0 ||
        hist_write(out, "cachegw_upstream_duration_seconds", "", &g_upstream_hist) != 0)
        return -1;
    if (family(out, "cachegw_redis_command_duration_seconds", "histogram",
               "Redis commands (PINGs excepted), from submission to reply or failure") != 0 ||
        hist_write(out, "cachegw_redis_command_duration_seconds", "", &g_redis_hist) != 0)
        return -1;
    return 0;
}

static int write_policies(FILE *out)
{
    if (family(out, "cachegw_policy_reloads_total", "counter",
               "Policy reloads (SIGHUP), by result") != 0 ||
        fprintf(out,
                "cachegw_policy_reloads_total{result=\"ok\"} %llu\n"
                "cachegw_policy_reloads_total{result=\"failed\"} %llu\n",
                (unsigned long long)atomic_load(&g_reloads_ok),
                (unsigned long long)atomic_load(&g_reloads_failed)) < 0)
        return -1;
    int64_t ms = atomic_load(&g_last_success_ms);
    if (family(out, "cachegw_policy_last_reload_success_timestamp_seconds", "gauge",
               "Unix time the running policies were loaded (start-up or the last good "
               "reload); 0 without policies") != 0 ||
        fprintf(out, "cachegw_policy_last_reload_success_timestamp_seconds %.3f\n",
                (double)ms / 1000.0) < 0)
        return -1;
    return 0;
}

static int write_process(FILE *out)
{
    char version[64];
    metrics_escape_label(CACHEGW_VERSION, version, sizeof version);
    if (family(out, "cachegw_build_info", "gauge", "Always 1; the build's version as a label") !=
            0 ||
        fprintf(out, "cachegw_build_info{version=\"%s\"} 1\n", version) < 0)
        return -1;
    struct proc_stat ps;
    read_proc_stat(&ps);
    if (ps.ok) {
        if (family(out, "process_cpu_seconds_total", "counter",
                   "Total user and system CPU time spent in seconds.") != 0 ||
            fprintf(out, "process_cpu_seconds_total %.2f\n", ps.cpu_s) < 0 ||
            family(out, "process_resident_memory_bytes", "gauge",
                   "Resident memory size in bytes.") != 0 ||
            fprintf(out, "process_resident_memory_bytes %llu\n",
                    (unsigned long long)ps.rss_bytes) < 0 ||
            family(out, "process_virtual_memory_bytes", "gauge",
                   "Virtual memory size in bytes.") != 0 ||
            fprintf(out, "process_virtual_memory_bytes %llu\n",
                    (unsigned long long)ps.vsize_bytes) < 0 ||
            family(out, "process_start_time_seconds", "gauge",
                   "Start time of the process since unix epoch in seconds.") != 0 ||
            fprintf(out, "process_start_time_seconds %.2f\n", ps.start_time_s) < 0)
            return -1;
    }
    long fds = open_fds();
    if (fds >= 0 && (family(out, "process_open_fds", "gauge", "Number of open file descriptors.") !=
                         0 ||
                     fprintf(out, "process_open_fds %ld\n", fds) < 0))
        return -1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (family(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.") !=
             0 ||
         fprintf(out, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur) < 0))
        return -1;
    return 0;
}

static metrics_extra_fn extra_writer;
static void *extra_writer_arg;

void metrics_set_extra_writer(metrics_extra_fn fn, void *arg)
{
    extra_writer = fn;
    extra_writer_arg = arg;
}

int metrics_write(FILE *out)
{
    if (write_requests(out) != 0 || write_latencies(out) != 0 || write_policies(out) != 0 ||
        write_process(out) != 0)
        return -1;
    if (extra_writer != NULL && extra_writer(out, extra_writer_arg) != 0) return -1;
    return 0;
}
