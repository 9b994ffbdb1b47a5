/*
 * test_usage_redis.c -- the fleet's usage series in Redis
 * (obs/usage_redis.h), against a real redis-server on loopback:
 *   - two "servers" (two metrics objects, each with its own pusher and
 *     Redis store) see overlapping clients in one minute; when each
 *     takes its snapshot, Redis holds the sum of their counts, the larger
 *     peak, and a HyperLogLog whose PFCOUNT is the union's distinct
 *     clients within 2%; the keys have their TTLs; the reader gives the
 *     same minute and hour through usage.h's functions;
 *   - a sketch written in Redis' dense encoding (many clients) and in its
 *     sparse one (few) is accepted by PFMERGE, and PFCOUNT agrees with
 *     the local estimate within 1%; a malformed one is refused;
 *   - a minute of many cells goes in scripts of 16 cells, pipelined;
 *   - a Redis that is down, or stalled, costs one bounded failure and no
 *     retry; an open circuit skips the minute without a call;
 *   - the backend hooks the pusher to its metrics when it has Redis;
 *   - the reader skips hash fields that do not parse;
 *   - with Sentinel, both ask the sentinel for the master.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include <cmocka.h>

#define WATCHDOG_S 60
#include "rl2_redis_test.h"
#include "rl2_hll_test.h"
#include "ratelimit2/backend.h"
#include "ratelimit2/config.h"
#include "ratelimit2/failover.h"
#include "ratelimit2/metrics.h"
#include "store/store_internal.h"
#include "obs/hll.h"
#include "obs/metrics_internal.h"
#include "obs/usage_redis.h"

/* 2024-01-02 03:00:05 UTC: five seconds into an hour (and a minute). */
#define T0_WALL_US 1704164405000000LL
#define T0_MONO_US 5000000000LL
#define T0_MINUTE  (T0_WALL_US / MINUTE)
#define T0_HOUR    (T0_WALL_US / HOUR)

static const char policy_text[] = "tiers = [ \"free\", \"pro\" ];\n"
                                  "rules = (\n"
                                  "  { name = \"api\"; paths = \"/api\";\n"
                                  "    limits = ( { rate = \"10/1h\"; } ); }\n"
                                  ");\n";

/* One web server: its metrics object, bound to the policy, pushing its
 * minutes through a Redis store's connections. */
typedef struct {
    char                shm[64];
    rl2_metrics_t      *m;
    rl2_metrics_bind_t *bind;
    rl2_store_t        *store;
    rl2_usage_push_t   *push;
    rl2_clock_t         now;
} host_t;

static rl2_policy_t *policy;
static host_t        hosts[2];

static void
host_open(host_t *h, int i)
{
    rl2_metrics_conf_t mc;
    rl2_err_t          err;

    snprintf(h->shm, sizeof(h->shm), "/rl2test-%ld-uredis%d", (long)getpid(),
             i);
    rl2_metrics_unlink(h->shm, NULL);
    rl2_metrics_conf_default(&mc);
    assert_int_equal(
        rl2_metrics_open(h->shm, 0600, &mc, NULL, NULL, &h->m, &err), RL2_OK);
    assert_int_equal(
        rl2_metrics_bind(h->m, policy, NULL, 0, &h->bind, NULL, &err), RL2_OK);
    h->store = mk_store(&srv, 0);
    assert_int_equal(rl2_usage_push_create(rl2_store_redis_pool(h->store), NULL,
                                           NULL, &h->push, &err),
                     RL2_OK);
    rl2_metrics_on_minute(h->m, rl2_usage_push_minute, h->push);
    h->now.wall_us = T0_WALL_US;
    h->now.mono_us = T0_MONO_US;
}

static void
host_close(host_t *h)
{
    rl2_metrics_on_minute(h->m, NULL, NULL);
    rl2_usage_push_destroy(h->push);
    rl2_store_destroy(h->store);
    rl2_metrics_unbind(h->bind);
    rl2_metrics_close(h->m);
    rl2_metrics_unlink(h->shm, NULL);
}

static int
setup(void **state)
{
    rl2_err_t err;

    flushed_setup(state);
    assert_int_equal(
        rl2_config_load_string(policy_text, "t.conf", NULL, &policy, &err),
        RL2_OK);
    host_open(&hosts[0], 0);
    host_open(&hosts[1], 1);
    return 0;
}

static int
teardown(void **state)
{
    host_close(&hosts[0]);
    host_close(&hosts[1]);
    rl2_policy_free(policy);
    return watchdog_teardown(state);
}

/* ---- requests ------------------------------------------------------ */

/* A request of client i (a number: 10.x.y.z) to rule api in tier free
 * on host h, allowed with `remaining` of 10 left, or refused.  Its key
 * is the digest of client and limit, the same on every host. */
static void
req(host_t *h, int i, int refused, int64_t remaining)
{
    static const rl2_hash_key_t k = { { 7 } };
    const rl2_rule_t           *r = &policy->rules[0];
    rl2_verdict_t               v;
    rl2_layer_t                *l;
    char                        id[128];
    int                         n;

    rl2_verdict_init(&v);
    v.outcome = refused ? RL2_OUTCOME_DENY : RL2_OUTCOME_ALLOW;
    v.tier = 0;
    snprintf(v.client_ip, sizeof(v.client_ip), "10.%d.%d.%d", i >> 16,
             (i >> 8) & 255, i & 255);
    l = &v.layers[v.n_layers++];
    memset(l, 0, sizeof(*l));
    l->rule = r;
    l->limit = &r->limits.limits[0];
    l->result.limit = l->limit->algo.limit;
    l->result.remaining = remaining;
    l->result.allowed = !refused;
    l->refused = refused;
    l->committed = 1;
    snprintf(l->client, sizeof(l->client), "%s", v.client_ip);
    n = snprintf(id, sizeof(id), "%s|api|0", v.client_ip);
    l->key = rl2_digest_keyed(&k, id, (size_t)n);
    v.shown = 0;
    rl2_metrics_record(h->bind, &v, &h->now);
}

/* Clients [from, to) on host h, once each, allowed with 9 left. */
static void
clients(host_t *h, int from, int to)
{
    for (int i = from; i < to; i++) {
        req(h, i, 0, 9);
    }
}

/* The next minute on host h: its first request takes the snapshot that
 * pushes the minute that ended. */
static void
next_minute(host_t *h)
{
    h->now.wall_us += MINUTE;
    h->now.mono_us += MINUTE;
    req(h, 0, 0, 9);
}

/* ---- Redis --------------------------------------------------------- */

static long long
hash_field(const char *key, const char *field)
{
    redisReply *r = admin_cmd(admin, "HGET %s %s", key, field);
    long long   v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;

    freeReplyObject(r);
    return v;
}

static long long
reply_int(redisReply *r)
{
    long long v;

    if (r->type != REDIS_REPLY_INTEGER) {
        fail_msg("not an integer reply: %d %s", r->type,
                 r->type == REDIS_REPLY_ERROR ? r->str : "");
    }
    v = r->integer;
    freeReplyObject(r);
    return v;
}

static void
assert_near(double got, double want, double within)
{
    if (got < want * (1.0 - within) || got > want * (1.0 + within)) {
        fail_msg("%.0f is not within %.1f%% of %.0f", got, within * 100, want);
    }
}

/* The TTL of key, in seconds, within [lo, hi]. */
static void
assert_ttl(const char *key, long long lo, long long hi)
{
    long long ttl = reply_int(admin_cmd(admin, "TTL %s", key));

    if (ttl < lo || ttl > hi) {
        fail_msg("TTL %s: %lld, want %lld..%lld", key, ttl, lo, hi);
    }
}

/* ---- tests --------------------------------------------------------- */

/* 60,000 clients on each host, 20,000 of them on both: Redis counts the
 * requests of both, and PFCOUNT the 100,000 distinct ones within 2%. */
static void
two_hosts_add_up_in_redis(void **state)
{
    char                   mhash[128], hhash[128], mhll[160], hhll[160];
    rl2_usage_push_stats_t st;
    rl2_usage_t           *u;
    rl2_usage_cell_t       cells[RL2_USAGE_CELLS];
    rl2_usage_point_t      pts[RL2_USAGE_MINUTES];
    rl2_redis_conf_t       conf;
    int64_t                first = 0;
    rl2_err_t              err;

    (void)state;
    clients(&hosts[0], 0, 60000);
    clients(&hosts[1], 40000, 100000);
    req(&hosts[0], 7, 1, 0); /* refused */
    req(&hosts[0], 8, 0, 3); /* 70% of the limit */
    req(&hosts[1], 9, 0, 1); /* 90% */
    next_minute(&hosts[0]);
    next_minute(&hosts[1]);
    for (int i = 0; i < 2; i++) {
        rl2_metrics_global_t g;

        rl2_usage_push_stats(hosts[i].push, &st);
        assert_int_equal(st.minutes, 1);
        assert_int_equal(st.failed, 0);
        rl2_metrics_global(hosts[i].m, &g);
        assert_int_equal(g.usage_minutes_pushed, 1);
        assert_int_equal(g.usage_minutes_failed, 0);
    }

    snprintf(mhash, sizeof(mhash), "rl2:usage:{h:%lld}:m:%lld",
             (long long)T0_HOUR, (long long)T0_MINUTE);
    snprintf(hhash, sizeof(hhash), "rl2:usage:{h:%lld}:h", (long long)T0_HOUR);
    snprintf(mhll, sizeof(mhll), "rl2:usage:{h:%lld}:hll:m:%lld:api\tfree",
             (long long)T0_HOUR, (long long)T0_MINUTE);
    snprintf(hhll, sizeof(hhll), "rl2:usage:{h:%lld}:hll:h:api\tfree",
             (long long)T0_HOUR);
    assert_int_equal(hash_field(mhash, "api\tfree\trequests"), 120003);
    assert_int_equal(hash_field(mhash, "api\tfree\tadmitted"), 120002);
    assert_int_equal(hash_field(mhash, "api\tfree\trefused"), 1);
    assert_int_equal(hash_field(mhash, "api\tfree\tpeak"), 900000);
    assert_int_equal(hash_field(hhash, "api\tfree\trequests"), 120003);
    assert_int_equal(hash_field(hhash, "api\tfree\tpeak"), 900000);
    assert_near((double)reply_int(admin_cmd(admin, "PFCOUNT %s", mhll)), 100000,
                0.02);
    assert_near((double)reply_int(admin_cmd(admin, "PFCOUNT %s", hhll)), 100000,
                0.02);
    /* No scratch key is left behind. */
    assert_int_equal(reply_int(admin_cmd(admin, "EXISTS rl2:usage:{h:%lld}:tmp",
                                         (long long)T0_HOUR)),
                     0);
    assert_ttl(mhash, 24 * 3600 + 1, RL2_USAGE_REDIS_MINUTE_TTL_S);
    assert_ttl(mhll, 24 * 3600 + 1, RL2_USAGE_REDIS_MINUTE_TTL_S);
    assert_ttl(hhash, 31 * 86400 + 1, RL2_USAGE_REDIS_HOUR_TTL_S);
    assert_ttl(hhll, 31 * 86400 + 1, RL2_USAGE_REDIS_HOUR_TTL_S);

    /* The reader: the fleet's minute and hour through usage.h. */
    rl2_redis_conf_init(&conf);
    conf.port = srv.port;
    conf.command_timeout_ms = 1000;
    assert_int_equal(
        rl2_usage_open_redis(&conf, hosts[0].now.wall_us / SEC, &u, &err),
        RL2_OK);
    assert_int_equal(rl2_usage_cells(u, cells, RL2_USAGE_CELLS), 1);
    assert_string_equal(cells[0].rule, "api");
    assert_string_equal(cells[0].tier, "free");
    assert_int_equal(cells[0].requests, 120003);
    assert_int_equal(cells[0].refused, 1);
    assert_int_equal(rl2_usage_series(u, 0, RL2_USAGE_STEP_MINUTE,
                                      hosts[0].now.wall_us / SEC, pts,
                                      RL2_USAGE_MINUTES, &first),
                     RL2_USAGE_MINUTES);
    assert_int_equal(first, (T0_MINUTE + 1 - (RL2_USAGE_MINUTES - 1)) * 60);
    /* The minute before the current one (which no host has ended). */
    assert_int_equal(pts[RL2_USAGE_MINUTES - 2].requests, 120003);
    assert_int_equal(pts[RL2_USAGE_MINUTES - 2].admitted, 120002);
    assert_int_equal(pts[RL2_USAGE_MINUTES - 2].peak_ppm, 900000);
    assert_near(pts[RL2_USAGE_MINUTES - 2].clients, 100000, 0.02);
    assert_int_equal(pts[RL2_USAGE_MINUTES - 1].requests, 0);
    assert_int_equal(rl2_usage_series(u, 0, RL2_USAGE_STEP_HOUR,
                                      hosts[0].now.wall_us / SEC, pts,
                                      RL2_USAGE_HOURS, &first),
                     RL2_USAGE_HOURS);
    assert_int_equal(pts[RL2_USAGE_HOURS - 1].requests, 120003);
    assert_near(pts[RL2_USAGE_HOURS - 1].clients, 100000, 0.02);
    assert_int_equal(rl2_usage_top(u, NULL, 0), 0);
    rl2_usage_close(u);
}

/* blob (len bytes) SET on key "src" and PFMERGEd into "dst"; the reply
 * of PFMERGE. */
static redisReply *
merge_blob(const uint8_t *blob, size_t len)
{
    redisReply *r;

    freeReplyObject(admin_cmd(admin, "DEL dst"));
    freeReplyObject(admin_cmd(admin, "SET src %b", blob, len));
    r = redisCommand(admin, "PFMERGE dst src");
    assert_non_null(r);
    return r;
}

/* Dense (100,000 clients) and sparse (300) encodings: PFMERGE takes
 * them, PFCOUNT agrees with the local estimate within 1%; both clamp
 * ranks to Redis' 51.  A blob one byte short, or with another magic, is
 * refused. */
static void
encodings_are_what_redis_accepts(void **state)
{
    static uint8_t blob[RL2_HLL_REDIS_DENSE];
    rl2_hll_t     *big = sketch_of(0, 100000), *small = sketch_of(0, 300);
    size_t         len;
    redisReply    *r;

    (void)state;
    rl2_hll_redis_dense(big, blob);
    r = merge_blob(blob, sizeof(blob));
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    assert_near((double)reply_int(admin_cmd(admin, "PFCOUNT dst")),
                rl2_hll_estimate(big), 0.01);
    assert_near(rl2_hll_estimate(big), 100000, 0.02);
    /* Redis adds to it as to its own: one more client is at most one
     * more, never a corrupt object. */
    freeReplyObject(admin_cmd(admin, "PFADD dst someone-else"));
    assert_near((double)reply_int(admin_cmd(admin, "PFCOUNT dst")),
                rl2_hll_estimate(big), 0.01);

    /* Too many clients for the sparse form (ranks, length). */
    assert_int_equal(rl2_hll_redis_sparse(big, blob, 3000), 0);
    len = rl2_hll_redis_sparse(small, blob, 3000);
    assert_true(len > RL2_HLL_REDIS_HDR && len < 3000);
    r = merge_blob(blob, len);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    assert_near((double)reply_int(admin_cmd(admin, "PFCOUNT dst")),
                rl2_hll_estimate(small), 0.01);
    assert_near(rl2_hll_estimate(small), 300, 0.02);
    /* The sparse and the dense form of one sketch count the same. */
    rl2_hll_redis_dense(small, blob);
    r = merge_blob(blob, RL2_HLL_REDIS_DENSE);
    freeReplyObject(r);
    assert_near((double)reply_int(admin_cmd(admin, "PFCOUNT dst")),
                rl2_hll_estimate(small), 0.01);

    /* Malformed: Redis says so. */
    rl2_hll_redis_dense(big, blob);
    r = merge_blob(blob, sizeof(blob) - 1);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    blob[0] = 'X';
    r = merge_blob(blob, sizeof(blob));
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
    free(big);
    free(small);
}

/* Every rank above 51 is written as 51 (Redis' largest), in place. */
static void
ranks_above_51_are_clamped(void **state)
{
    static uint8_t blob[RL2_HLL_REDIS_DENSE];
    rl2_hll_t     *h = calloc(1, sizeof(*h));
    redisReply    *r;

    (void)state;
    assert_non_null(h);
    h->reg[0] = 64;
    h->reg[1] = 51;
    h->reg[RL2_HLL_REGS - 1] = 63;
    rl2_hll_redis_dense(h, blob);
    /* Register 0: the low 6 bits of byte 16; register 1: the top 2 bits
     * of byte 16 and the low 4 of byte 17; the last: the top 6 bits of
     * the last byte. */
    assert_int_equal(blob[16] & 0x3f, 51);
    assert_int_equal((blob[16] >> 6) | ((blob[17] & 0x0f) << 2), 51);
    assert_int_equal(blob[RL2_HLL_REDIS_DENSE - 1] >> 2, 51);
    r = merge_blob(blob, sizeof(blob));
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    /* A rank of 51 or more has no sparse form. */
    assert_int_equal(rl2_hll_redis_sparse(h, blob, sizeof(blob)), 0);
    free(h);
}

/* ---- the minute callback and the clearing of idle sketches ---------- */

/* What a callback saw of the one cell of each minute handed to it. */
typedef struct {
    mx_shm_t        *shm;
    int              calls;
    uint64_t         requests;
    uint32_t         estimate; /* from the sketch's kept sums */
    uint32_t         nonzero;  /* the kept count of registers above 0 */
    unsigned         regs;     /* registers above 0 in its dense encoding */
    int              kept;     /* the encoding the same after 40 upkeeps */
    const rl2_hll_t *sketch;
} probe_t;

static unsigned
dense_nonzero(const uint8_t *blob)
{
    const uint8_t *reg = blob + RL2_HLL_REDIS_HDR;
    unsigned       n = 0;

    for (unsigned i = 0; i < RL2_HLL_REGS; i++) {
        unsigned bit = i * 6, byte = bit / 8, shift = bit % 8;
        unsigned v = reg[byte] >> shift;

        if (shift > 2) {
            v |= (unsigned)reg[byte + 1] << (8 - shift);
        }
        n += (v & 0x3f) != 0;
    }
    return n;
}

/* Encodes the minute's sketch, then runs the upkeeps that another
 * process would run in 40 seconds of a Redis that keeps this call
 * waiting, then encodes it again: none may clear any of it. */
static rl2_usage_minute_result_t
probe_minute(void *ctx, int64_t minute_start_s,
             const rl2_usage_minute_cell_t *cells, size_t n)
{
    static uint8_t before[RL2_HLL_REDIS_DENSE], after[RL2_HLL_REDIS_DENSE];
    probe_t       *p = ctx;

    (void)minute_start_s;
    assert_int_equal(n, 1);
    p->calls++;
    p->requests = cells[0].requests;
    p->sketch = cells[0].sketch;
    p->estimate = rl2_hll_estimate(cells[0].sketch);
    p->nonzero = atomic_load(&((rl2_hll_t *)cells[0].sketch)->nonzero);
    rl2_hll_redis_dense(cells[0].sketch, before);
    for (int i = 0; i < 40; i++) {
        rl2_mx_use_upkeep(p->shm);
    }
    rl2_hll_redis_dense(cells[0].sketch, after);
    p->regs = dense_nonzero(before);
    p->kept = memcmp(before, after, sizeof(before)) == 0;
    return RL2_USAGE_MINUTE_PUSHED;
}

/* A second later on host h, with a request that runs its upkeep. */
static void
next_second(host_t *h)
{
    h->now.wall_us += SEC;
    h->now.mono_us += SEC;
    req(h, 0, 0, 9);
}

static void
all_zero(const rl2_hll_t *h)
{
    for (unsigned i = 0; i < RL2_HLL_REGS; i++) {
        assert_int_equal(atomic_load(&((rl2_hll_t *)h)->reg[i]), 0);
    }
}

/* The callback sees each minute's whole sketch, registers and kept sums
 * alike, however long it takes (the upkeeps that clear idle sketches a
 * part a second start after it returns); once they have, the sketch is
 * empty when its phase comes round again, so each minute counts only
 * its own clients. */
static void
the_callback_sees_the_minute_before_any_part_is_cleared(void **state)
{
    static const int from[3] = { 0, 5000, 10000 },
                     to[3] = { 3000, 5500, 10200 };
    host_t *h = &hosts[0];
    probe_t p = { .shm = h->m->shm };

    (void)state;
    rl2_metrics_on_minute(h->m, probe_minute, &p);
    for (int k = 0; k < 3; k++) {
        /* Client 0 came with the request that began the minute and the
         * 32 that ran the upkeeps after it (none before the first). */
        unsigned want = (unsigned)(to[k] - from[k]) + (k > 0);

        clients(h, from[k], to[k]);
        /* Five seconds into the next minute, as T0 (the 32 seconds that
         * ran the upkeeps are in this one). */
        h->now.wall_us += MINUTE - (k > 0 ? 32 * SEC : 0);
        h->now.mono_us += MINUTE - (k > 0 ? 32 * SEC : 0);
        req(h, 0, 0, 9);
        assert_int_equal(p.calls, k + 1);
        assert_int_equal(p.requests, want + (k > 0 ? 32 : 0));
        assert_near(p.estimate, want, 0.02);
        assert_int_equal(p.regs, p.nonzero);
        assert_true(p.kept);
        /* 32 upkeeps a part each: the minute's sketch cleared. */
        for (int i = 0; i < 32; i++) {
            next_second(h);
        }
        all_zero(p.sketch);
    }
}

/* One minute's cell, of a sketch, for the pusher. */
static rl2_usage_minute_cell_t
one_cell(const rl2_hll_t *sketch)
{
    rl2_usage_minute_cell_t c = { "api", "free", 5, 5, 0, 0, sketch };

    return c;
}

/* 40 cells of one minute through a pool: three scripts (16, 16, 8
 * cells), written at once on the thread's own connection, or one by one
 * through a pooled pipe; every cell arrives. */
static void
push_cells(int pipeline, int64_t start_s)
{
    rl2_redis_conf_t        conf;
    rl2_redis_pool_t       *pool;
    rl2_usage_push_t       *push;
    rl2_hll_t              *h = sketch_of(0, 1000);
    rl2_usage_minute_cell_t c[40];
    char                    rules[40][16], mhash[128], field[64];
    long long               evals = cmd_calls(admin, "eval");
    rl2_err_t               err;

    rl2_redis_conf_init(&conf);
    conf.port = srv.port;
    conf.command_timeout_ms = 1000;
    conf.pipeline = pipeline;
    assert_int_equal(rl2_redis_pool_create(&conf, &pool, &err), RL2_OK);
    assert_int_equal(rl2_usage_push_create(pool, NULL, NULL, &push, &err),
                     RL2_OK);
    for (int i = 0; i < 40; i++) {
        snprintf(rules[i], sizeof(rules[i]), "r%d", i);
        c[i] = one_cell(h);
        c[i].rule = rules[i];
        c[i].requests = (uint64_t)i + 1;
    }
    if (rl2_usage_push_send(push, start_s, c, 40, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    assert_int_equal(cmd_calls(admin, "eval"), evals + 3);
    snprintf(mhash, sizeof(mhash), "rl2:usage:{h:%lld}:m:%lld",
             (long long)(start_s / 3600), (long long)(start_s / 60));
    for (int i = 0; i < 40; i++) {
        snprintf(field, sizeof(field), "r%d\tfree\trequests", i);
        assert_int_equal(hash_field(mhash, field), i + 1);
    }
    rl2_usage_push_destroy(push);
    rl2_redis_pool_destroy(pool);
    free(h);
}

static void
many_cells_go_in_scripts_of_16(void **state)
{
    (void)state;
    push_cells(0, T0_MINUTE * 60);
    push_cells(1, T0_MINUTE * 60 + 60);
}

/* Nothing listens: one connect that fails, counted, nothing retried,
 * within the connect timeout. */
static void
a_redis_that_is_down_costs_one_bounded_failure(void **state)
{
    rl2_redis_conf_t        conf;
    rl2_redis_pool_t       *pool;
    rl2_usage_push_t       *push;
    rl2_usage_push_stats_t  st;
    rl2_hll_t              *h = sketch_of(0, 10);
    rl2_usage_minute_cell_t c = one_cell(h);
    int64_t                 t;
    rl2_err_t               err;

    (void)state;
    rl2_redis_conf_init(&conf);
    conf.port = free_port();
    conf.connect_timeout_ms = 200;
    conf.command_timeout_ms = 200;
    assert_int_equal(rl2_redis_pool_create(&conf, &pool, &err), RL2_OK);
    assert_int_equal(rl2_usage_push_create(pool, NULL, NULL, &push, &err),
                     RL2_OK);
    t = mono_us();
    rl2_usage_push_minute(push, T0_MINUTE * 60, &c, 1);
    assert_true(mono_us() - t < 1 * SEC);
    rl2_usage_push_stats(push, &st);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.minutes, 0);
    rl2_usage_push_destroy(push);
    rl2_redis_pool_destroy(pool);
    free(h);
}

/* A server that stops answering: the push gives up after the command
 * timeout (once, nothing sent again); an open circuit skips the next
 * minute without a call. */
static void
a_stalled_redis_times_out_an_open_circuit_skips(void **state)
{
    rl2_redis_conf_t        conf;
    rl2_redis_pool_t       *pool;
    rl2_usage_push_t       *push;
    rl2_usage_push_stats_t  st;
    rl2_circuit_conf_t      cc;
    rl2_circuit_t          *circuit;
    rl2_hll_t              *h = sketch_of(0, 10);
    rl2_usage_minute_cell_t c = one_cell(h);
    char                    name[64];
    long long               evals;
    int64_t                 t;
    rl2_err_t               err;

    (void)state;
    snprintf(name, sizeof(name), "/rl2test-%ld-uredis.circuit", (long)getpid());
    shm_unlink(name);
    rl2_circuit_conf_default(&cc);
    assert_int_equal(rl2_circuit_open(name, &cc, 0600, &circuit, &err), RL2_OK);
    rl2_redis_conf_init(&conf);
    conf.port = srv.port;
    conf.connect_timeout_ms = 1000;
    conf.command_timeout_ms = 200;
    assert_int_equal(rl2_redis_pool_create(&conf, &pool, &err), RL2_OK);
    assert_int_equal(rl2_usage_push_create(pool, NULL, circuit, &push, &err),
                     RL2_OK);
    evals = cmd_calls(admin, "eval");
    rl2_usage_push_minute(push, T0_MINUTE * 60, &c, 1); /* connected */
    assert_int_equal(cmd_calls(admin, "eval"), evals + 1);
    evals++;

    kill(srv.pid, SIGSTOP);
    t = mono_us();
    rl2_usage_push_minute(push, T0_MINUTE * 60 + 60, &c, 1);
    t = mono_us() - t;
    kill(srv.pid, SIGCONT);
    assert_true(t >= 150 * 1000 && t < 1 * SEC);
    rl2_usage_push_stats(push, &st);
    assert_int_equal(st.minutes, 1);
    assert_int_equal(st.failed, 1);
    /* The stalled EVAL may still run when the server wakes: never a
     * second one. */
    assert_true(cmd_calls(admin, "eval") <= evals + 1);

    rl2_circuit_failure(circuit, RL2_ROUTE_PRIMARY, mono_us());
    assert_int_equal(rl2_circuit_state(circuit), RL2_CIRCUIT_OPEN);
    evals = cmd_calls(admin, "eval");
    rl2_usage_push_minute(push, T0_MINUTE * 60 + 120, &c, 1);
    rl2_usage_push_stats(push, &st);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(cmd_calls(admin, "eval"), evals);

    rl2_usage_push_destroy(push);
    rl2_redis_pool_destroy(pool);
    rl2_circuit_close(circuit);
    shm_unlink(name);
    free(h);
}

/* Hashes are data from the network: fields that do not parse (no tab,
 * an empty or too long name, an unknown field, a count that is not
 * one) are skipped; the cell beside them reads right, and a peak above
 * 100% reads as 100%. */
static void
the_reader_skips_what_does_not_parse(void **state)
{
    char              mhash[128], longname[RL2_NAME_MAX + 8];
    rl2_redis_conf_t  conf;
    rl2_usage_t      *u;
    rl2_usage_cell_t  cells[RL2_USAGE_CELLS];
    rl2_usage_point_t pts[2];
    int64_t           first = 0, now_s = T0_WALL_US / SEC + 60;
    rl2_err_t         err;

    (void)state;
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    snprintf(mhash, sizeof(mhash), "rl2:usage:{h:%lld}:m:%lld",
             (long long)T0_HOUR, (long long)T0_MINUTE);
    freeReplyObject(
        admin_cmd(admin, "HSET %s %s 7", mhash, "api\tfree\trequests"));
    freeReplyObject(
        admin_cmd(admin, "HSET %s %s 3000000", mhash, "api\tfree\tpeak"));
    freeReplyObject(
        admin_cmd(admin, "HSET %s %s x7", mhash, "api\tfree\tadmitted"));
    freeReplyObject(
        admin_cmd(admin, "HSET %s %s -5", mhash, "api\tfree\trefused"));
    freeReplyObject(admin_cmd(admin, "HSET %s notab 1", mhash));
    freeReplyObject(
        admin_cmd(admin, "HSET %s %s 1", mhash, "\tfree\trequests"));
    freeReplyObject(
        admin_cmd(admin, "HSET %s %s 1", mhash, "a\tb\tc\trequests"));
    freeReplyObject(
        admin_cmd(admin, "HSET %s %s\tfree\trequests 1", mhash, longname));
    freeReplyObject(
        admin_cmd(admin, "HSET %s %s 1", mhash, "api\tpro\tcolour"));
    rl2_redis_conf_init(&conf);
    conf.port = srv.port;
    conf.command_timeout_ms = 1000;
    assert_int_equal(rl2_usage_open_redis(&conf, now_s, &u, &err), RL2_OK);
    /* api/pro has only an unknown field: a cell, with nothing in it. */
    assert_int_equal(rl2_usage_cells(u, cells, RL2_USAGE_CELLS), 2);
    assert_string_equal(cells[0].rule, "api");
    assert_string_equal(cells[0].tier, "free");
    assert_int_equal(
        rl2_usage_series(u, 0, RL2_USAGE_STEP_MINUTE, now_s, pts, 2, &first),
        2);
    assert_int_equal(first, T0_MINUTE * 60);
    assert_int_equal(pts[0].requests, 7);
    assert_int_equal(pts[0].admitted, 0);
    assert_int_equal(pts[0].refused, 0);
    assert_int_equal(pts[0].peak_ppm, 1000000);
    /* No sketch was written: PFCOUNT of a missing key is 0. */
    assert_int_equal(pts[0].clients, 0);
    rl2_usage_close(u);
}

/* A sentinel on a free port watching srv as master "m", in dir (made
 * here); its pid.  It answers once it knows the master. */
static pid_t
sentinel_start(char *dir, int *port)
{
    char    conf[128], text[256], log[128], answer[64];
    FILE   *f;
    pid_t   pid;
    int64_t deadline = mono_us() + 10 * SEC;
    int     known = 0;

    snprintf(dir, 64, "/tmp/rl2-sentinel-XXXXXX");
    assert_non_null(mkdtemp(dir));
    *port = free_port();
    snprintf(conf, sizeof(conf), "%s/sentinel.conf", dir);
    snprintf(log, sizeof(log), "%s/sentinel.log", dir);
    snprintf(text, sizeof(text),
             "port %d\nbind 127.0.0.1\ndir %s\n"
             "sentinel monitor m 127.0.0.1 %d 1\n",
             *port, dir, srv.port);
    assert_non_null(f = fopen(conf, "w"));
    fputs(text, f);
    fclose(f);
    if ((pid = fork()) == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("redis-server", "redis-server", conf, "--sentinel", NULL);
        _exit(127);
    }
    while (!known && mono_us() < deadline) {
        struct timeval tv = { 0, 200000 };
        redisContext  *c = redisConnectWithTimeout("127.0.0.1", *port, tv);
        redisReply    *r = NULL;

        if (c != NULL && !c->err) {
            r = redisCommand(c, "SENTINEL get-master-addr-by-name m");
        }
        known = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2;
        snprintf(answer, sizeof(answer), "%s", known ? r->element[1]->str : "");
        if (r != NULL) {
            freeReplyObject(r);
        }
        if (c != NULL) {
            redisFree(c);
        }
        if (!known) {
            usleep(20000);
        }
    }
    assert_true(known);
    assert_int_equal(atoi(answer), srv.port);
    return pid;
}

static void
sentinel_stop(pid_t pid, const char *dir)
{
    char path[128];

    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    snprintf(path, sizeof(path), "%s/sentinel.conf", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/sentinel.log", dir);
    unlink(path);
    rmdir(dir);
}

/* With Sentinel, the pusher's pool and the reader ask the sentinel for
 * the master, as the store does. */
static void
sentinel_names_the_master_for_push_and_read(void **state)
{
    char                    dir[64], spec[64];
    int                     port;
    pid_t                   pid = sentinel_start(dir, &port);
    rl2_redis_conf_t        conf;
    rl2_redis_pool_t       *pool;
    rl2_usage_push_t       *push;
    rl2_hll_t              *h = sketch_of(0, 500);
    rl2_usage_minute_cell_t c = one_cell(h);
    rl2_usage_t            *u;
    rl2_usage_cell_t        cells[2];
    rl2_err_t               err;

    (void)state;
    rl2_redis_conf_init(&conf);
    conf.command_timeout_ms = 1000;
    snprintf(spec, sizeof(spec), "m@127.0.0.1:%d", port);
    assert_int_equal(rl2_redis_sentinel_parse(&conf, spec, &err), RL2_OK);
    assert_int_equal(rl2_redis_pool_create(&conf, &pool, &err), RL2_OK);
    assert_int_equal(rl2_usage_push_create(pool, NULL, NULL, &push, &err),
                     RL2_OK);
    assert_int_equal(rl2_usage_push_minute(push, T0_MINUTE * 60, &c, 1),
                     RL2_USAGE_MINUTE_PUSHED);
    assert_int_equal(
        rl2_usage_open_redis(&conf, T0_WALL_US / SEC + 60, &u, &err), RL2_OK);
    assert_int_equal(rl2_usage_cells(u, cells, 2), 1);
    assert_int_equal(cells[0].requests, 5);
    rl2_usage_close(u);
    rl2_usage_push_destroy(push);
    rl2_redis_pool_destroy(pool);
    sentinel_stop(pid, dir);
    free(h);
}

/* The Prometheus text into the buffer ctx (64 KiB), cut if longer. */
static void
prom_out(void *ctx, const char *s, size_t n)
{
    char  *buf = ctx;
    size_t len = strlen(buf);

    if (len + n < (1 << 16)) {
        memcpy(buf + len, s, n);
        buf[len + n] = '\0';
    }
}

/* The backend with Redis and metrics pushes the minutes its upkeep
 * ends, and counts them (Prometheus). */
static void
the_backend_pushes_its_minutes(void **state)
{
    const char *suffix[] = { "",       ".circuit", ".vlog",     ".metrics",
                             ".alert", ".lease",   ".overlimit" };
    rl2_backend_conf_t  bc;
    rl2_backend_t      *be;
    rl2_metrics_bind_t *bind;
    host_t              h;
    rl2_metrics_env_t   env;
    static char         prom[1 << 16];
    char                name[RL2_BACKEND_NAME_MAX + 16], mhash[128];
    rl2_err_t           err;

    (void)state;
    memset(&h, 0, sizeof(h));
    rl2_backend_conf_init(&bc);
    snprintf(bc.zone_name, sizeof(bc.zone_name), "/rl2test-%ld-uredisbe",
             (long)getpid());
    bc.zone_entries = 1000;
    bc.redis_enabled = 1;
    bc.redis.port = srv.port;
    bc.redis.command_timeout_ms = 1000;
    bc.alerts_enabled = 0;
    bc.vlog.disabled = 1;
    assert_int_equal(rl2_backend_open(&bc, &be, &err), RL2_OK);
    assert_int_equal(rl2_metrics_bind(rl2_backend_metrics(be), policy, NULL, 0,
                                      &bind, NULL, &err),
                     RL2_OK);
    h.bind = bind;
    h.now.wall_us = T0_WALL_US;
    h.now.mono_us = T0_MONO_US;
    clients(&h, 0, 50);
    next_minute(&h);
    snprintf(mhash, sizeof(mhash), "rl2:usage:{h:%lld}:m:%lld",
             (long long)T0_HOUR, (long long)T0_MINUTE);
    assert_int_equal(hash_field(mhash, "api\tfree\trequests"), 50);
    /* Counted, and exposed. */
    rl2_backend_env(be, &env);
    prom[0] = '\0';
    rl2_metrics_prom(rl2_backend_metrics(be), &env, prom_out, prom);
    assert_non_null(strstr(
        prom, "ratelimit2_usage_redis_minutes_total{result=\"pushed\"} 1\n"));
    assert_non_null(strstr(
        prom, "ratelimit2_usage_redis_minutes_total{result=\"failed\"} 0\n"));
    rl2_metrics_unbind(bind);
    rl2_backend_close(be);
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(name, sizeof(name), "%s%s", bc.zone_name, suffix[i]);
        shm_unlink(name);
    }
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(two_hosts_add_up_in_redis),
        T(encodings_are_what_redis_accepts),
        T(ranks_above_51_are_clamped),
        T(the_callback_sees_the_minute_before_any_part_is_cleared),
        T(many_cells_go_in_scripts_of_16),
        T(a_redis_that_is_down_costs_one_bounded_failure),
        T(a_stalled_redis_times_out_an_open_circuit_skips),
        T(the_backend_pushes_its_minutes),
        T(the_reader_skips_what_does_not_parse),
        T(sentinel_names_the_master_for_push_and_read),
    };
#undef T
    return cmocka_run_group_tests(tests, srv_group_setup, srv_group_teardown);
}
