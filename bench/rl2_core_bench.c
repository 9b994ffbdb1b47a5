/*
 * rl2_core_bench.c -- nanoseconds per decision in the core, as the policy
 * and the set of live keys grow.
 *
 * It calls what the front ends call for every request (rl2_clock_now,
 * rl2_verdict_init, rl2_decide with every phase, as ratelimit2-fcgi does)
 * against a local zone.  The figure is the core's whole decision:
 * describe the client, select the rules, digest the key, lock the zone,
 * look up, run the algorithm, commit, unlock.  No web server, no headers.
 * Reading the clock is the front end's part and depends on the machine
 * (two clock_gettime calls): it is timed apart and taken out.
 *
 *   rl2_core_bench rules N DECISIONS
 *       N first-match rules, rule I matching "/svcI/<anything>" with one
 *       per-address token bucket that never trips; one client.  Prints
 *       "rules N FIRST_NS LAST_NS": a request matching the first rule
 *       (one rule tried) and the last one (all N tried).
 *   rl2_core_bench keys K ENTRIES DECISIONS
 *       one per-address limit, a zone of ENTRIES keys, K client addresses
 *       made live first, then DECISIONS decisions for addresses drawn at
 *       random among the K.  Prints "keys K ENTRIES NS ZONE_BYTES
 *       SHMEM_KB USED EVICTIONS": the zone's size, its pages resident in
 *       this process, its live entries and evictions after the timed run.
 *       NS excludes drawing and writing the address (timed apart).
 *   rl2_core_bench clock DECISIONS
 *       Prints "clock NS": what rl2_clock_now costs, taken out above.
 *
 * Each figure is the median of five timed runs, in CPU time of the
 * benchmark's thread.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"
#include "store/store_internal.h"

#define RUNS     5
#define ADDR_LEN 16

typedef struct {
    rl2_policy_t *policy;
    rl2_zone_t   *zone;
    rl2_store_t  *store;
    char          zone_name[64];
} bench_t;

static void
die(const char *what, const rl2_err_t *err)
{
    fprintf(stderr, "rl2_core_bench: %s: %s\n", what,
            err != NULL ? err->msg : "failed");
    exit(1);
}

/* The CPU time of this thread: time spent descheduled while other work
 * runs on the machine does not count (its cache misses still do). */
static double
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* A policy of n first-match rules, or of one default rule when n == 0. */
static char *
policy_text(size_t n)
{
    static const char limit[] =
        "limits = ( { rate = \"1000000000/1h\"; "
        "algorithm = \"token_bucket\"; key = \"ip\"; } );";
    size_t cap = 256 + (n + 1) * (sizeof(limit) + 64), len;
    char  *t = malloc(cap);

    if (t == NULL) {
        die("policy text", NULL);
    }
    len = (size_t)snprintf(t, cap, "mode = \"enforce\";\nrules = (\n");
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(t + len, cap - len,
                                "%s{ name = \"r%zu\"; paths = [ \"/svc%zu/*\" "
                                "]; %s }\n",
                                i ? "," : "", i, i, limit);
    }
    snprintf(t + len, cap - len, ");\ndefault = { %s };\n", limit);
    return t;
}

static void
bench_open(bench_t *b, size_t n_rules, uint32_t entries)
{
    char     *text = policy_text(n_rules);
    rl2_err_t err;

    if (rl2_config_load_string(text, "bench.conf", NULL, &b->policy, &err)
        != RL2_OK) {
        die("policy", &err);
    }
    free(text);
    snprintf(b->zone_name, sizeof(b->zone_name), "/rl2-core-bench-%ld",
             (long)getpid());
    if (rl2_zone_open(b->zone_name, entries, b->policy->max_state_size, 0600,
                      &b->zone, &err)
        != RL2_OK) {
        die("zone", &err);
    }
    if (rl2_store_local_create(b->zone, &b->store, &err) != RL2_OK) {
        die("store", &err);
    }
}

static void
bench_close(bench_t *b)
{
    rl2_store_destroy(b->store);
    rl2_zone_close(b->zone);
    rl2_zone_unlink(b->zone_name, NULL);
    rl2_policy_free(b->policy);
}

/* One request as a front end decides it; returns its outcome. */
static rl2_outcome_t
decide_one(bench_t *b, const char *path, const char *ip)
{
    rl2_request_t req = {
        .method = "GET", .path = path, .host = "bench", .peer_ip = ip
    };
    rl2_verdict_t v;
    rl2_clock_t   now;
    rl2_err_t     err;

    rl2_clock_now(&now);
    rl2_verdict_init(&v);
    if (rl2_decide(b->policy, NULL, 0, b->store, &req, RL2_PHASE_ALL, &now, &v,
                   &err)
        != RL2_OK) {
        die("decide", &err);
    }
    return v.outcome;
}

/* ns per rl2_clock_now, as read once per decision. */
static double
clock_ns(size_t n)
{
    volatile int64_t sink = 0;
    rl2_clock_t      now;
    double           t0 = now_ns();

    for (size_t i = 0; i < n; i++) {
        rl2_clock_now(&now);
        sink ^= now.mono_us;
    }
    return (now_ns() - t0) / (double)n;
}

/* The median of RUNS timings. */
static double
median(double *runs)
{
    qsort(runs, RUNS, sizeof(runs[0]), cmp_double);
    return runs[RUNS / 2];
}

/* Median over RUNS of the ns per decision of `n` requests for `path`
 * from one client, the clock taken out. */
static double
time_path(bench_t *b, const char *path, size_t n)
{
    double runs[RUNS];

    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ns(), dt;

        for (size_t i = 0; i < n; i++) {
            if (decide_one(b, path, "192.0.2.1") != RL2_OUTCOME_ALLOW) {
                die("a request was not allowed", NULL);
            }
        }
        dt = (now_ns() - t0) / (double)n - clock_ns(n);
        runs[r] = dt > 0 ? dt : 0;
    }
    return median(runs);
}

static int
run_rules(size_t n_rules, size_t n)
{
    bench_t b;
    char    last[64];
    double  first_ns, last_ns;

    bench_open(&b, n_rules, 1024);
    snprintf(last, sizeof(last), "/svc%zu/x", n_rules - 1);
    /* warm the zone entry and the caches */
    time_path(&b, "/svc0/x", n / 10 + 1);
    first_ns = time_path(&b, "/svc0/x", n);
    last_ns = time_path(&b, last, n);
    printf("rules %zu %.1f %.1f\n", n_rules, first_ns, last_ns);
    bench_close(&b);
    return 0;
}

/* Resident zone pages, in KiB: the shared memory this process has
 * touched (the zone is the only shared mapping here). */
static long
shmem_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char  line[256];
    long  kb = -1;

    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "RssShmem:", 9) == 0) {
            kb = strtol(line + 9, NULL, 10);
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kb;
}

/* xorshift64: cheap next index, so drawing costs next to nothing. */
static uint64_t
next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Client i as an address, 10.0.0.0 + i, written into buf (16 bytes)
 * without stdio: computed, not read from a table, so that the figure
 * holds no cache miss of the benchmark's own. */
static const char *
addr_of(uint32_t i, char *buf)
{
    char *p = buf;

    *p++ = '1';
    *p++ = '0';
    for (int shift = 16; shift >= 0; shift -= 8) {
        unsigned o = (i >> shift) & 255;

        *p++ = '.';
        if (o >= 100) {
            *p++ = (char)('0' + o / 100);
        }
        if (o >= 10) {
            *p++ = (char)('0' + o / 10 % 10);
        }
        *p++ = (char)('0' + o % 10);
    }
    *p = '\0';
    return buf;
}

/* ns per draw-and-format alone, subtracted from the timed decisions. */
static double
draw_ns(size_t k, size_t n)
{
    uint64_t      seed = 0x9e3779b97f4a7c15u;
    volatile char sink = 0;
    char          buf[ADDR_LEN];
    double        t0 = now_ns();

    for (size_t i = 0; i < n; i++) {
        sink ^= addr_of((uint32_t)(next_rand(&seed) % k), buf)[4];
    }
    return (now_ns() - t0) / (double)n;
}

static double
time_keys(bench_t *b, size_t k, size_t n)
{
    double   runs[RUNS];
    uint64_t seed = 0x9e3779b97f4a7c15u;
    char     buf[ADDR_LEN];

    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ns(), dt;

        for (size_t i = 0; i < n; i++) {
            uint32_t j = (uint32_t)(next_rand(&seed) % k);

            if (decide_one(b, "/x", addr_of(j, buf)) != RL2_OUTCOME_ALLOW) {
                die("a request was not allowed", NULL);
            }
        }
        dt = (now_ns() - t0) / (double)n - draw_ns(k, n) - clock_ns(n);
        runs[r] = dt > 0 ? dt : 0;
    }
    return median(runs);
}

static int
run_keys(size_t k, uint32_t entries, size_t n)
{
    bench_t          b;
    char             buf[ADDR_LEN];
    rl2_zone_stats_t st;
    rl2_err_t        err;
    double           ns;

    if (k == 0 || k > (1u << 24)) {
        die("keys must be 1..16777216", NULL);
    }
    bench_open(&b, 0, entries);
    for (size_t i = 0; i < k; i++) {
        decide_one(&b, "/x", addr_of((uint32_t)i, buf));
    }
    ns = time_keys(&b, k, n);
    if (rl2_zone_stats(b.zone, &st, &err) != RL2_OK) {
        die("zone stats", &err);
    }
    printf("keys %zu %u %.1f %" PRIu64 " %ld %" PRIu64 " %" PRIu64 "\n", k,
           entries, ns, st.bytes, shmem_kb(), st.used, st.evictions);
    bench_close(&b);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "rules") == 0) {
        return run_rules(strtoul(argv[2], NULL, 10),
                         strtoul(argv[3], NULL, 10));
    }
    if (argc == 5 && strcmp(argv[1], "keys") == 0) {
        return run_keys(strtoul(argv[2], NULL, 10),
                        (uint32_t)strtoul(argv[3], NULL, 10),
                        strtoul(argv[4], NULL, 10));
    }
    if (argc == 3 && strcmp(argv[1], "clock") == 0) {
        size_t n = strtoul(argv[2], NULL, 10);
        double runs[RUNS];

        for (int r = 0; r < RUNS; r++) {
            runs[r] = clock_ns(n);
        }
        printf("clock %.1f\n", median(runs));
        return 0;
    }
    fprintf(stderr, "usage: rl2_core_bench rules N DECISIONS\n"
                    "       rl2_core_bench keys K ENTRIES DECISIONS\n"
                    "       rl2_core_bench clock DECISIONS\n");
    return 2;
}
