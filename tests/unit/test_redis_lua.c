/*
 * test_redis_lua.c -- the Lua scripts of the Redis store compute exactly
 * what the C algorithms and the local store compute.
 *
 * Randomized histories of requests, refunds and peeks, on a test clock
 * that steps forward by zero, a few µs, fractions and multiples of a unit
 * and of the window, and sometimes back, run through the C algorithms on a
 * local buffer and through the scripts on a real redis-server; every
 * decision, remaining, reset and retry_after, the overflow flag and the
 * commit must agree at every step.  Then whole requests of seven layers
 * run through the local store and the Redis store side by side.
 *
 * All of it runs twice: with the store calling the function library
 * (FCALL, what a Redis 7 server gets), then as an ACL user without
 * functions, which makes the store fall back to the scripts (EVALSHA).
 *
 * The seed is printed; RL2_SEED=n reproduces a run.  The test clock starts
 * HEADROOM ahead of the real one, so the keys' expiries (absolute, from
 * the script's clock, fired by Redis on the real one) never fire during
 * the run while the state still matters.  A history's clock may also
 * step back by up to a window: an hour of headroom was not enough (a
 * "quota 10/day" history walked six hours behind the real clock, Redis
 * dropped its overflow key, and the script admitted what C refused).
 * Steps forward outweigh steps back (74 in 100 go forward, 6 back), so a
 * history's lowest point is a few windows behind its start; three years
 * is more than thirty of the longest window (a month).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rl2_redis_test.h"
#include "ratelimit2/store_local.h"
/* white box: the scripts' arithmetic is tested on its own */
#include "redis/redis_scripts.h"
#include "algo/algo_internal.h"
#include "policy/policy_internal.h"

#define STEPS 1200
/* How far ahead of the real clock the test clock starts (see above). */
#define HEADROOM (3 * 365 * DAY)
static unsigned seed;

/* ---- randomness ---- */

static uint64_t rng;

static uint64_t
rnd(void)
{
    /* xorshift64*: reproducible from the printed seed on any libc */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * UINT64_C(2685821657736338717);
}

static int64_t
rnd_below(int64_t n)
{
    return n > 0 ? (int64_t)(rnd() % (uint64_t)n) : 0;
}

/* The next clock step: mostly around one unit (window / limit), now and
 * then a whole window or more, sometimes backwards by up to a window (a
 * clock stepped back, which both sides must clamp alike). */
static int64_t
step_dt(int64_t unit, int64_t window)
{
    int64_t r = rnd_below(100);

    if (r < 20) {
        return 0;
    }
    if (r < 30) {
        return 1 + rnd_below(10);
    }
    if (r < 55) {
        return rnd_below(unit + 1);
    }
    if (r < 75) {
        return rnd_below(3 * unit + 1);
    }
    if (r < 88) {
        return rnd_below(window + 1);
    }
    if (r < 94) {
        return rnd_below(3 * window + 1);
    }
    if (r < 98) {
        return -rnd_below(unit / 2 + 2);
    }
    return -rnd_below(window + 2);
}

/* ---- the C side: store.c's layer logic over a plain buffer ---- */

typedef struct {
    const rl2_limit_t *limit;
    int64_t st[2 + RL2_SLIDING_LOG_MAX + 8]; /* main state, then overflow */
} ref_t;

static void *
ref_ov(ref_t *r)
{
    return (char *)r->st + rl2_algo_state_size(&r->limit->algo);
}

static void
ref_check(ref_t *r, int64_t now, rl2_layer_t *out)
{
    const rl2_limit_t *lim = r->limit;
    rl2_algo_result_t  ov;

    rl2_algo_check(&lim->algo, r->st, now, lim->cost, &out->result);
    out->refused = !out->result.allowed;
    out->overflow_used = 0;
    if (out->refused && lim->overflow.limit != 0) {
        rl2_algo_check(&lim->overflow, ref_ov(r), now, lim->cost, &ov);
        if (ov.allowed) {
            out->refused = 0;
            out->overflow_used = 1;
        }
    }
}

static void
ref_apply(ref_t *r, int64_t now, rl2_layer_t *out)
{
    const rl2_limit_t *lim = r->limit;

    ref_check(r, now, out);
    out->committed = 0;
    out->committed_us = 0;
    if (!out->refused) {
        rl2_algo_commit(out->overflow_used ? &lim->overflow : &lim->algo,
                        out->overflow_used ? ref_ov(r) : r->st, now, lim->cost);
        out->committed = 1;
        out->committed_us = now;
    }
}

static void
ref_refund(ref_t *r, const rl2_layer_t *l, int64_t now)
{
    const rl2_limit_t *lim = r->limit;

    rl2_algo_refund(l->overflow_used ? &lim->overflow : &lim->algo,
                    l->overflow_used ? ref_ov(r) : r->st, now, l->committed_us,
                    lim->cost);
}

/* ---- comparing ---- */

static void
expect_same(const char *what, int step, int64_t now, const rl2_layer_t *c,
            const rl2_layer_t *lua, int with_commit)
{
    const rl2_algo_result_t *a = &c->result, *b = &lua->result;

    if (a->allowed == b->allowed && a->limit == b->limit
        && a->remaining == b->remaining && a->reset_us == b->reset_us
        && a->retry_after_us == b->retry_after_us && c->refused == lua->refused
        && c->overflow_used == lua->overflow_used
        && (!with_commit
            || (c->committed == lua->committed
                && c->committed_us == lua->committed_us))) {
        return;
    }
    fail_msg("%s (%s) step %d now %" PRId64 " cost %" PRId64 " seed %u:\n"
             "  C   allowed %d limit %" PRId64 " remaining %" PRId64
             " reset %" PRId64 " retry %" PRId64 " refused %d ov %d "
             "committed %d@%" PRId64 "\n"
             "  Lua allowed %d limit %" PRId64 " remaining %" PRId64
             " reset %" PRId64 " retry %" PRId64 " refused %d ov %d "
             "committed %d@%" PRId64,
             what, c->client, step, now, c->limit->cost, seed, a->allowed,
             a->limit, a->remaining, a->reset_us, a->retry_after_us, c->refused,
             c->overflow_used, c->committed, c->committed_us, b->allowed,
             b->limit, b->remaining, b->reset_us, b->retry_after_us,
             lua->refused, lua->overflow_used, lua->committed,
             lua->committed_us);
}

static void
must(rl2_status_t st, const rl2_err_t *err)
{
    if (st != RL2_OK) {
        fail_msg("store: %s", err->msg);
    }
}

/* ---- one limit, random history ---- */

typedef struct {
    rl2_layer_t layer;
    int64_t     cost;
} held_t;

static int64_t
pick_cost(const rl2_limit_t *lim)
{
    /* large limits take large costs, or they would never be reached */
    int64_t lo = lim->algo.limit >= 1000 ? lim->algo.limit / 3
                 : lim->algo.limit < 3   ? lim->algo.limit
                                         : 3;

    if (rnd_below(100) < 8) {
        /* up to the limit: beyond a burst it never fits */
        return 1 + rnd_below(lim->algo.limit);
    }
    return 1 + rnd_below(lo);
}

/* One limit's history, on both sides at once. */
typedef struct {
    const spec_t *sp;
    rl2_limit_t  *lim;
    ref_t         ref;
    held_t        held[64]; /* committed, not yet refunded */
    int           nheld;
    int           step;
    int           admitted;
    int           refused;
} hist_t;

static void
hist_init(hist_t *h, const spec_t *sp)
{
    memset(h, 0, sizeof(*h));
    h->sp = sp;
    h->lim = mk_limit(pol, sp);
    h->ref.limit = h->lim;
}

static void
hist_apply(hist_t *h, int64_t now, int64_t cost)
{
    rl2_layer_t c, lua;
    rl2_clock_t clk = clock_at(now);
    rl2_err_t   err;

    h->lim->cost = cost;
    mk_layer(&c, h->lim, h->sp->name);
    lua = c;
    ref_apply(&h->ref, now, &c);
    must(store->ops->apply(store, &lua, 1, &clk, &err), &err);
    expect_same("apply", h->step++, now, &c, &lua, 1);
    h->admitted += c.committed;
    h->refused += c.refused;
    if (c.committed) {
        if (h->nheld == 64) {
            h->held[0] = h->held[--h->nheld];
        }
        h->held[h->nheld].layer = lua;
        h->held[h->nheld++].cost = cost;
    }
}

static void
hist_peek(hist_t *h, int64_t now, int64_t cost)
{
    rl2_layer_t c, lua;
    rl2_clock_t clk = clock_at(now);
    rl2_err_t   err;

    h->lim->cost = cost;
    mk_layer(&c, h->lim, h->sp->name);
    lua = c;
    ref_check(&h->ref, now, &c);
    must(store->ops->peek(store, &lua, 1, &clk, &err), &err);
    expect_same("peek", h->step++, now, &c, &lua, 0);
}

/* Take back held[i] (committed at its own committed_us). */
static void
hist_refund(hist_t *h, int i, int64_t now)
{
    rl2_clock_t clk = clock_at(now);
    rl2_err_t   err;

    h->lim->cost = h->held[i].cost;
    ref_refund(&h->ref, &h->held[i].layer, now);
    must(store->ops->refund(store, &h->held[i].layer, 1, &clk, &err), &err);
    h->held[i] = h->held[--h->nheld];
    h->step++;
}

/* Percent of steps at which a history's factor changes (0: never). */
static int factor_pct;

/* A new factor for h's limit, as decide/runtime.c applies one: the
 * limit's counts (limit, burst, overflow) scaled from the spec's, at
 * least 1, under the same key.  Both sides read the state the old
 * factor left under the new counts. */
static void
hist_factor(hist_t *h)
{
    static const int64_t ppm[] = { 300000,  500000,  1000000,
                                   1500000, 2000000, 3000000 };
    int64_t              f = ppm[rnd_below(6)];
    rl2_limit_t         *l = h->lim, before = *h->lim;
    rl2_err_t            err;

    l->algo.limit =
        h->sp->limit * f / 1000000 > 0 ? h->sp->limit * f / 1000000 : 1;
    l->algo.burst = h->sp->burst * f / 1000000 > 0 ? h->sp->burst * f / 1000000
                                                   : (h->sp->burst > 0);
    if (h->sp->ov_limit > 0) {
        l->overflow.limit = h->sp->ov_limit * f / 1000000 > 0
                                ? h->sp->ov_limit * f / 1000000
                                : 1;
    }
    l->ttl_us = 0; /* worked out again from the new counts */
    /* A count the algorithm cannot compute is never applied (runtime.c
     * keeps the old one): so here. */
    if (rl2_algo_params_check(&l->algo, &err) != RL2_OK
        || (l->overflow.limit > 0
            && rl2_algo_params_check(&l->overflow, &err) != RL2_OK)) {
        *l = before;
    }
}

static void
run_history(const spec_t *sp, int refund_pct)
{
    hist_t  h;
    int64_t now = wall_us() + HEADROOM;
    int64_t window = sp->algo == RL2_ALGO_CONCURRENCY ? MINUTE
                     : sp->algo == RL2_ALGO_QUOTA
                         ? (sp->period == RL2_PERIOD_DAY ? DAY : 31 * DAY)
                         : sp->window_us;
    int64_t unit = sp->algo == RL2_ALGO_CONCURRENCY ? SEC : window / sp->limit;

    hist_init(&h, sp);
    while (h.step < STEPS) {
        int64_t r = rnd_below(100);

        if (rnd_below(100) < factor_pct) {
            hist_factor(&h);
        }
        if (h.nheld > 0 && r < refund_pct) {
            hist_refund(&h, (int)rnd_below(h.nheld), now);
        }
        else if (r < refund_pct + 6) {
            hist_peek(&h, now, pick_cost(h.lim));
        }
        else {
            hist_apply(&h, now, pick_cost(h.lim));
        }
        now += step_dt(unit, window);
    }
    printf("  %-22s %4d steps agree: %4d admitted, %4d refused\n", sp->name,
           STEPS, h.admitted, h.refused);
    /* a history that never refuses (or never admits) proves little */
    assert_true(h.admitted > 20);
    assert_true(h.refused > 20);
}

static void
run_specs(const spec_t *specs, size_t n, int refund_pct)
{
    for (size_t i = 0; i < n; i++) {
        run_history(&specs[i], refund_pct);
    }
}

static void
test_token_bucket_matches_c(void **state)
{
    static const spec_t specs[] = {
        { "tb 5/1s", RL2_ALGO_TOKEN_BUCKET, 5, SEC, 0, 0, 0, 0 },
        { "tb 10/1min burst 3", RL2_ALGO_TOKEN_BUCKET, 10, MINUTE, 3, 0, 0, 0 },
        { "tb 7/10s burst 20", RL2_ALGO_TOKEN_BUCKET, 7, 10 * SEC, 20, 0, 0,
          0 },
        { "tb 3/7s (T rounds up)", RL2_ALGO_TOKEN_BUCKET, 3, 7 * SEC + 1, 0, 0,
          0, 0 },
        { "tb 3/20us", RL2_ALGO_TOKEN_BUCKET, 3, 20, 0, 0, 0, 0 },
        { "tb 4/30us burst 2", RL2_ALGO_TOKEN_BUCKET, 4, 30, 2, 0, 0, 0 },
    };

    (void)state;
    run_specs(specs, sizeof(specs) / sizeof(specs[0]), 10);
}

static void
test_leaky_bucket_matches_c(void **state)
{
    static const spec_t specs[] = {
        { "lb 5/1s", RL2_ALGO_LEAKY_BUCKET, 5, SEC, 0, 0, 0, 0 },
        { "lb 10/1min burst 4", RL2_ALGO_LEAKY_BUCKET, 10, MINUTE, 4, 0, 0, 0 },
        { "lb 6/9s burst 15", RL2_ALGO_LEAKY_BUCKET, 6, 9 * SEC, 15, 0, 0, 0 },
        { "lb 3/10us", RL2_ALGO_LEAKY_BUCKET, 3, 10, 0, 0, 0, 0 },
        { "lb 4/30us burst 2", RL2_ALGO_LEAKY_BUCKET, 4, 30, 2, 0, 0, 0 },
    };

    (void)state;
    run_specs(specs, sizeof(specs) / sizeof(specs[0]), 10);
}

static void
test_fixed_window_matches_c(void **state)
{
    static const spec_t specs[] = {
        { "fw 5/1s", RL2_ALGO_FIXED_WINDOW, 5, SEC, 0, 0, 0, 0 },
        { "fw 30/1min", RL2_ALGO_FIXED_WINDOW, 30, MINUTE, 0, 0, 0, 0 },
        { "fw 3/7s", RL2_ALGO_FIXED_WINDOW, 3, 7 * SEC, 0, 0, 0, 0 },
        { "fw 3/7us", RL2_ALGO_FIXED_WINDOW, 3, 7, 0, 0, 0, 0 },
    };

    (void)state;
    run_specs(specs, sizeof(specs) / sizeof(specs[0]), 10);
}

/* 1000000/30d: its products (limit x window, 2.6e18) are far beyond
 * 2^53, where the scripts' exact muldiv() keeps them equal.  Windows of a
 * few µs (here and for the other algorithms) make the clock land on every
 * residue and edge: that is where a rounding slip shows. */
static void
test_sliding_window_matches_c(void **state)
{
    static const spec_t specs[] = {
        { "sw 5/1s", RL2_ALGO_SLIDING_WINDOW, 5, SEC, 0, 0, 0, 0 },
        { "sw 40/1min", RL2_ALGO_SLIDING_WINDOW, 40, MINUTE, 0, 0, 0, 0 },
        { "sw 7/13s", RL2_ALGO_SLIDING_WINDOW, 7, 13 * SEC, 0, 0, 0, 0 },
        { "sw 5/7us", RL2_ALGO_SLIDING_WINDOW, 5, 7, 0, 0, 0, 0 },
        { "sw 3/10us", RL2_ALGO_SLIDING_WINDOW, 3, 10, 0, 0, 0, 0 },
        { "sw 1000000/30d", RL2_ALGO_SLIDING_WINDOW, 1000000, 30 * DAY, 0, 0, 0,
          0 },
    };

    (void)state;
    run_specs(specs, sizeof(specs) / sizeof(specs[0]), 10);
}

static void
test_sliding_log_matches_c(void **state)
{
    static const spec_t specs[] = {
        { "sl 5/1s", RL2_ALGO_SLIDING_LOG, 5, SEC, 0, 0, 0, 0 },
        { "sl 20/1min", RL2_ALGO_SLIDING_LOG, 20, MINUTE, 0, 0, 0, 0 },
        { "sl 3/500ms", RL2_ALGO_SLIDING_LOG, 3, 500000, 0, 0, 0, 0 },
        { "sl 3/9us", RL2_ALGO_SLIDING_LOG, 3, 9, 0, 0, 0, 0 },
    };

    (void)state;
    run_specs(specs, sizeof(specs) / sizeof(specs[0]), 12);
}

/* Releases are refunds: many of them, so that slots free up. */
static void
test_concurrency_matches_c(void **state)
{
    static const spec_t specs[] = {
        { "cc 3", RL2_ALGO_CONCURRENCY, 3, 0, 0, 0, 0, 0 },
        { "cc 10", RL2_ALGO_CONCURRENCY, 10, 0, 0, 0, 0, 0 },
    };

    (void)state;
    run_specs(specs, sizeof(specs) / sizeof(specs[0]), 40);
}

/* Steps of hours and days cross UTC day and month ends. */
static void
test_quota_matches_c(void **state)
{
    static const spec_t specs[] = {
        { "quota 20/day", RL2_ALGO_QUOTA, 20, DAY, 0, RL2_PERIOD_DAY, 0, 0 },
        { "quota 50/month", RL2_ALGO_QUOTA, 50, 0, 0, RL2_PERIOD_MONTH, 0, 0 },
    };

    (void)state;
    run_specs(specs, sizeof(specs) / sizeof(specs[0]), 10);
}

static void
test_overflow_allowance_matches_c(void **state)
{
    static const spec_t specs[] = {
        { "fw 5/10s + 2/1min", RL2_ALGO_FIXED_WINDOW, 5, 10 * SEC, 0, 0, 2,
          MINUTE },
        { "tb 3/1s + 2/5min", RL2_ALGO_TOKEN_BUCKET, 3, SEC, 0, 0, 2,
          5 * MINUTE },
        { "sl 4/2s + 1/10s", RL2_ALGO_SLIDING_LOG, 4, 2 * SEC, 0, 0, 1,
          10 * SEC },
        { "sw 6/3s + 3/20s", RL2_ALGO_SLIDING_WINDOW, 6, 3 * SEC, 0, 0, 3,
          20 * SEC },
        { "quota 10/day + 2/1h", RL2_ALGO_QUOTA, 10, DAY, 0, RL2_PERIOD_DAY, 2,
          HOUR },
        { "fw 2/5us + 1/13us", RL2_ALGO_FIXED_WINDOW, 2, 5, 0, 0, 1, 13 },
    };

    (void)state;
    run_specs(specs, sizeof(specs) / sizeof(specs[0]), 10);
}

/* A factor that changes every few steps (as a boost, the load or the
 * schedule would change it): the script, taking the scaled counts per
 * call, reads the state the old counts left exactly as C does, for
 * every algorithm a factor scales (a sliding log is never scaled). */
static void
test_factor_changes_match_c(void **state)
{
    static const spec_t specs[] = {
        { "tb 10/1min burst 3 xf", RL2_ALGO_TOKEN_BUCKET, 10, MINUTE, 3, 0, 0,
          0 },
        { "tb 4/30us burst 2 xf", RL2_ALGO_TOKEN_BUCKET, 4, 30, 2, 0, 0, 0 },
        { "lb 6/9s burst 15 xf", RL2_ALGO_LEAKY_BUCKET, 6, 9 * SEC, 15, 0, 0,
          0 },
        { "fw 30/1min xf", RL2_ALGO_FIXED_WINDOW, 30, MINUTE, 0, 0, 0, 0 },
        { "sw 7/13s xf", RL2_ALGO_SLIDING_WINDOW, 7, 13 * SEC, 0, 0, 0, 0 },
        { "quota 20/day xf", RL2_ALGO_QUOTA, 20, DAY, 0, RL2_PERIOD_DAY, 0, 0 },
        { "tb 3/1s + 2/5min xf", RL2_ALGO_TOKEN_BUCKET, 3, SEC, 0, 0, 2,
          5 * MINUTE },
    };
    static const spec_t held[] = {
        { "cc 10 xf", RL2_ALGO_CONCURRENCY, 10, 0, 0, 0, 0, 0 },
    };

    (void)state;
    factor_pct = 4;
    run_specs(specs, sizeof(specs) / sizeof(specs[0]), 10);
    run_specs(held, 1, 40);
    factor_pct = 0;
}

/* ---- leases: grant.c against the Lua's grant ---- */

/* A slice granted and not yet given back. */
typedef struct {
    int64_t units;
    int64_t at_us;
} slice_t;

static void
expect_same_grant(const char *name, int step, int64_t now,
                  const rl2_grant_ask_t *ask, int64_t cg,
                  const rl2_algo_result_t *cr, int64_t ch,
                  const rl2_lease_ask_t *lua)
{
    const rl2_algo_result_t *b = &lua->result;

    if (cg == lua->granted && cr->limit == b->limit
        && cr->remaining == b->remaining && cr->reset_us == b->reset_us
        && cr->retry_after_us == b->retry_after_us && ch == lua->horizon_us
        && lua->granted_at_us == now) {
        return;
    }
    fail_msg(
        "lease %s step %d now %" PRId64 " cost %" PRId64 " want %" PRId64
        " back %" PRId64 "@%" PRId64 " seed %u:\n"
        "  C   granted %" PRId64 " limit %" PRId64 " remaining %" PRId64
        " reset %" PRId64 " retry %" PRId64 " horizon %" PRId64 "\n"
        "  Lua granted %" PRId64 " limit %" PRId64 " remaining %" PRId64
        " reset %" PRId64 " retry %" PRId64 " horizon %" PRId64 " at %" PRId64,
        name, step, now, ask->cost, ask->want, ask->back, ask->back_at_us, seed,
        cg, cr->limit, cr->remaining, cr->reset_us, cr->retry_after_us, ch,
        lua->granted, b->limit, b->remaining, b->reset_us, b->retry_after_us,
        lua->horizon_us, lua->granted_at_us);
}

/* An ask no server makes, which both sides must still read alike: more
 * back than the limit holds, back from the future or from before the
 * epoch, a negative want or back. */
static void
odd_ask(rl2_grant_ask_t *ask, const rl2_limit_t *lim, int64_t now)
{
    int64_t cap = lim->algo.burst > 0 ? lim->algo.burst : lim->algo.limit;
    int64_t window = lim->algo.window_us > 0 ? lim->algo.window_us : DAY;

    switch (rnd_below(5)) {
    case 0:
        ask->back = cap + 1 + rnd_below(3 * cap);
        ask->back_at_us = now - rnd_below(window);
        break;
    case 1:
        ask->back = 1 + rnd_below(cap);
        ask->back_at_us = now + 1 + rnd_below(2 * window);
        break;
    case 2:
        ask->back = 1 + rnd_below(cap);
        ask->back_at_us = -rnd_below(window);
        break;
    case 3:
        ask->want = -1 - rnd_below(5);
        break;
    default:
        ask->back = -1 - rnd_below(5);
        ask->back_at_us = now;
        break;
    }
}

/* One grant on both sides; a slice granted is kept to be given back
 * (partly) by a later ask. */
static int64_t
lease_step(const spec_t *sp, rl2_limit_t *lim, ref_t *ref, slice_t *held,
           int *nheld, int step, int64_t now)
{
    rl2_grant_ask_t   ask = { pick_cost(lim), 0, 0, 0 };
    rl2_algo_result_t cr;
    rl2_lease_ask_t   lua;
    rl2_layer_t       layer;
    rl2_clock_t       clk = clock_at(now);
    rl2_err_t         err;
    int64_t           cg, ch;

    /* want 0: an ask that only gives back (a second slice's units) */
    ask.want = rnd_below(100) < 10   ? 0
               : rnd_below(100) < 30 ? ask.cost
                                     : 1 + rnd_below(2 * lim->algo.limit);
    if (*nheld > 0 && rnd_below(100) < 40) {
        int i = (int)rnd_below(*nheld);

        /* what a server did not use: any part of the slice */
        ask.back = rnd_below(held[i].units + 1);
        ask.back_at_us = held[i].at_us;
        held[i] = held[--*nheld];
    }
    if (rnd_below(100) < 10) {
        odd_ask(&ask, lim, now);
    }
    lim->cost = ask.cost;
    mk_layer(&layer, lim, sp->name);
    memset(&lua, 0, sizeof(lua));
    lua.layer = &layer;
    lua.want = ask.want;
    lua.back = ask.back;
    lua.back_at_us = ask.back_at_us;
    cg = rl2_algo_grant(&lim->algo, ref->st, now, &ask, &cr, &ch);
    must(rl2_store_redis_lease(store, &lua, 1, &clk, &err), &err);
    expect_same_grant(sp->name, step, now, &ask, cg, &cr, ch, &lua);
    if (cg > 0) {
        if (*nheld == 16) {
            held[0] = held[--*nheld];
        }
        held[*nheld].units = cg;
        held[(*nheld)++].at_us = now;
    }
    return cg;
}

static void
run_lease_history(const spec_t *sp)
{
    rl2_limit_t *lim = mk_limit(pol, sp);
    ref_t        ref;
    slice_t      held[16];
    int          nheld = 0, grants = 0, refusals = 0;
    int64_t      now = wall_us() + HEADROOM;
    int64_t      window = sp->algo == RL2_ALGO_QUOTA ? DAY : sp->window_us;
    int64_t      unit = window / sp->limit;

    memset(&ref, 0, sizeof(ref));
    ref.limit = lim;
    for (int step = 0; step < STEPS; step++) {
        if (lease_step(sp, lim, &ref, held, &nheld, step, now) > 0) {
            grants++;
        }
        else {
            refusals++;
        }
        now += step_dt(unit, window);
    }
    printf("  %-22s %4d grants agree: %4d granted, %4d refused\n", sp->name,
           STEPS, grants, refusals);
    assert_true(grants > 20);
    assert_true(refusals > 20);
}

/* Random asks (cost, slice wanted, part of an earlier slice given back,
 * now and then an odd one: odd_ask) on random clocks: every slice,
 * remaining, reset, retry and horizon the same in C and in Lua, for each
 * algorithm a lease takes. */
static void
test_lease_grants_match_c(void **state)
{
    static const spec_t specs[] = {
        { "lease tb 10/1min", RL2_ALGO_TOKEN_BUCKET, 10, MINUTE, 0, 0, 0, 0 },
        { "lease tb 20/1s burst 5", RL2_ALGO_TOKEN_BUCKET, 20, SEC, 5, 0, 0,
          0 },
        { "lease lb 12/9s burst 30", RL2_ALGO_LEAKY_BUCKET, 12, 9 * SEC, 30, 0,
          0, 0 },
        { "lease fw 50/1min", RL2_ALGO_FIXED_WINDOW, 50, MINUTE, 0, 0, 0, 0 },
        { "lease fw 3/7us", RL2_ALGO_FIXED_WINDOW, 3, 7, 0, 0, 0, 0 },
        { "lease sw 40/13s", RL2_ALGO_SLIDING_WINDOW, 40, 13 * SEC, 0, 0, 0,
          0 },
        { "lease quota 30/day", RL2_ALGO_QUOTA, 30, DAY, 0, RL2_PERIOD_DAY, 0,
          0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        run_lease_history(&specs[i]);
    }
}

/* ---- the short paths against the driver ----
 * The apply and lease scripts try a short path for a token bucket of one
 * layer before the driver's tables; it must answer as the driver would,
 * for any arguments and any state, whatever a client or the key holds.
 * The driver alone is the same script without the two lines that try
 * the short path (white box).  Numbers past a double's range (tonumber
 * makes a 320-digit one infinite) and states that are not integers
 * ("nan", "inf", "0x10") are where the two could part. */

/* What one EVAL of script left: "<reply>|<value>|<PEXPIRETIME>", the
 * key set to state (NULL: no key) first. */
static void
short_eval(const char *script, const char *state, const char *now,
           const char *arg, char *out, size_t cap)
{
    const char *argv[] = { "EVAL", script, "1", "k", now, arg };
    redisReply *r, *v, *at;

    freeReplyObject(admin_cmd(admin, "DEL k"));
    if (state != NULL) {
        freeReplyObject(admin_cmd(admin, "SET k %s", state));
    }
    r = redisCommandArgv(admin, 6, argv, NULL);
    assert_non_null(r);
    v = admin_cmd(admin, "GET k");
    at = admin_cmd(admin, "PEXPIRETIME k");
    /* an error names the script's hash and line: its text is kept */
    snprintf(out, cap, "%.*s|%s|%lld",
             r->type == REDIS_REPLY_ERROR ? (int)strcspn(r->str, ":")
                                          : (int)r->len,
             r->str != NULL ? r->str : "(nil)",
             v->type == REDIS_REPLY_STRING ? v->str : "(nil)", at->integer);
    freeReplyObject(r);
    freeReplyObject(v);
    freeReplyObject(at);
}

/* tmpl with each H made huge and each N now, into out[cap]. */
static void
fill_arg(char *out, size_t cap, const char *tmpl, const char *huge,
         const char *now)
{
    size_t at = 0;

    for (const char *c = tmpl; *c != '\0'; c++) {
        const char *put = *c == 'H' ? huge : *c == 'N' ? now : NULL;
        size_t      n = put != NULL ? strlen(put) : 1;

        assert_true(at + n < cap);
        memcpy(out + at, put != NULL ? put : c, n);
        at += n;
    }
    out[at] = '\0';
}

/* Every argument of tmpls (H: a number no double holds; N: now) on
 * every state and clock below, through script with and without the
 * lines try_short; the calls whose reply's second number is positive
 * (admitted, granted) are counted into *yes.  Returns the calls made. */
static int
short_vs_driver(int which, const char *try_short, const char *const *tmpls,
                size_t n_tmpls, int *yes)
{
    static const char *const states[] = {
        NULL,
        "nan",
        "inf",
        "-inf",
        "1e400",
        "0x10",
        " 12 ",
        "-5",
        "999999999999999999999",
        "9007199254740999",
    };
    static const char *const nows[] = {
        "1000000000000000", "9007199254740992", "9007199254740999", "-5", "nan",
    };
    const char *with = rl2_lua_source[which];
    size_t      len = strlen(with);
    char       *without = malloc(len + 1);
    const char *at = strstr(with, try_short);
    char        huge[321], arg[1400], a[1600], b[1600];
    int         calls = 0;

    assert_non_null(without);
    assert_non_null(at);
    snprintf(without, len + 1, "%.*s%s", (int)(at - with), with,
             at + strlen(try_short));
    memset(huge, '9', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    for (size_t i = 0; i < n_tmpls; i++) {
        for (size_t n = 0; n < sizeof(nows) / sizeof(nows[0]); n++) {
            fill_arg(arg, sizeof(arg), tmpls[i], huge, nows[n]);
            for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
                short_eval(with, states[s], nows[n], arg, a, sizeof(a));
                short_eval(without, states[s], nows[n], arg, b, sizeof(b));
                if (strcmp(a, b) != 0) {
                    fail_msg("argument \"%.80s\" state %s now %s:\n"
                             "  short  %.300s\n  driver %.300s",
                             arg, states[s] ? states[s] : "(none)", nows[n], a,
                             b);
                }
                calls++;
                *yes += strncmp(a, "ERR", 3) != 0 && strchr(a, ' ') != NULL
                        && atoll(strchr(a, ' ') + 1) > 0;
            }
        }
    }
    free(without);
    return calls;
}

/* short_vs_driver through the short path named fn (a local function of
 * the definitions), which must pass some of the calls (what: "granted",
 * "admitted"), so that the odd ones are not all refused alike. */
static void
expect_short_as_driver(int which, const char *fn, const char *const *tmpls,
                       size_t n_tmpls, const char *what)
{
    char try_short[96];
    int  calls, yes = 0;

    snprintf(try_short, sizeof(try_short),
             "local short = %s()\nif short then return short end\n", fn);
    calls = short_vs_driver(which, try_short, tmpls, n_tmpls, &yes);
    printf("  %d odd calls: %s answers as the driver (%d %s)\n", calls, fn, yes,
           what);
    assert_true(yes > 0);
}

static void
test_lease_short_path_answers_as_the_driver(void **state)
{
    /* algo limit window burst period cost want back back_at */
    static const char *const asks[] = {
        "0 1 H 0 0 1 5 0 0",      /* an interval of infinite µs */
        "0 H 1000 5 0 1 5 0 0",   /* an interval of 0 µs */
        "0 H 1000 0 0 1 5 0 0",   /* a capacity of infinite units */
        "0 10 1000 H 0 1 5 0 0",  /* a burst of infinite units */
        "0 10 1000 0 0 H 5 0 0",  /* a cost that never fits */
        "0 10 1000 0 0 1 H 0 0",  /* all it can have */
        "0 10 1000 0 0 1 5 H H",  /* everything back, from the future */
        "0 10 1000 0 0 1 5 3 -H", /* back from the infinite past */
        "0 1125899906842624 1125899906842624 1125899906842624 0 "
        "1125899906842624 1125899906842624 1125899906842624 N",
        "0 100000000000000000000 1 0 0 3 9 0 0",  /* beyond 2^53 */
        "0 10 1000 5 0 7 9 0 0",                  /* cost beyond the burst */
        "0 10 1000 0 0 2 -4 0 0",                 /* a negative want */
        "0 10 1000 0 0 -3 4 0 0",                 /* a negative cost */
        "0 10 1000 0 0 1 0 3 N",                  /* only giving back */
        "0 10 1000 5 0 1 3 50 N",                 /* more back than the burst */
        "0 10 1000 0 0 1 3 -2 N",                 /* a negative back */
        "-0 10 1000 0 0 1 3 2 1",                 /* back from long ago */
        "00 10 1000 0 0 1 3 4 99999999999999999", /* back from the future */
    };

    (void)state;
    expect_short_as_driver(RL2_SCRIPT_LEASE, "lease_short", asks,
                           sizeof(asks) / sizeof(asks[0]), "granted");
}

static void
test_apply_short_path_answers_as_the_driver(void **state)
{
    /* flags algo limit window burst period cost, the overflow's limit
     * window burst, committed */
    static const char *const layers[] = {
        "0 0 1 H 0 0 1 0 0 0 0",    /* an interval of infinite µs */
        "0 0 H 1000 5 0 1 0 0 0 0", /* an interval of 0 µs */
        "0 0 H 1000 0 0 1 0 0 0 0", /* a capacity of infinite units */
        "0 0 H 1125899906842624 0 0 100 0 0 0 0",
        "0 0 10 1000 H 0 1 0 0 0 0", /* a burst of infinite units */
        "0 0 10 1000 0 0 H 0 0 0 0", /* a cost that never fits */
        "1 0 10 1000 0 0 H 0 0 0 N", /* the same, only watched */
        "0 0 100000000000000000000 1 0 0 3 0 0 0 0", /* beyond 2^53 */
        "0 0 10 1000 5 0 7 0 0 0 0",                 /* cost beyond the burst */
        "0 0 10 1000 0 0 -3 0 0 0 0",                /* a negative cost */
        "0 -0 10 1000 0 0 2 0 0 0 0",
        "00 00 10 1000 3 0 1 0 0 0 N",
    };

    (void)state;
    expect_short_as_driver(RL2_SCRIPT_APPLY, "tb_short", layers,
                           sizeof(layers) / sizeof(layers[0]), "admitted");
}

/* Clocks stepped back across window edges, with refunds while behind:
 * the rarest branches of the algorithms, played on purpose. */
static void
test_clock_going_back_matches_c(void **state)
{
    static const spec_t specs[] = {
        { "back sw 5/10us", RL2_ALGO_SLIDING_WINDOW, 5, 10, 0, 0, 0, 0 },
        { "back fw 5/10us", RL2_ALGO_FIXED_WINDOW, 5, 10, 0, 0, 0, 0 },
        { "back sl 5/10us", RL2_ALGO_SLIDING_LOG, 5, 10, 0, 0, 0, 0 },
        { "back tb 5/10us", RL2_ALGO_TOKEN_BUCKET, 5, 10, 0, 0, 0, 0 },
        { "back lb 5/10us", RL2_ALGO_LEAKY_BUCKET, 5, 10, 0, 0, 0, 0 },
    };
    /* times relative to a base that is a multiple of every window */
    static const int64_t at[] = { 100, 112, 105, 106, 111, 99,
                                  95,  121, 108, 109, 130 };

    (void)state;
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        int64_t base = (wall_us() + HEADROOM) / 1000 * 1000;
        hist_t  h;

        hist_init(&h, &specs[i]);
        hist_apply(&h, base + at[0], 1);            /* window 100 */
        hist_apply(&h, base + at[1], 1);            /* window 110 */
        hist_apply(&h, base + at[2], 1);            /* back into 100 */
        hist_refund(&h, h.nheld - 1, base + at[3]); /* still behind */
        hist_apply(&h, base + at[4], 1);
        hist_peek(&h, base + at[5], 2);
        hist_apply(&h, base + at[6], 2);
        hist_refund(&h, 0, base + at[7]);
        for (size_t t = 8; t < sizeof(at) / sizeof(at[0]); t++) {
            hist_apply(&h, base + at[t], 1);
            hist_peek(&h, base + at[t], 1);
        }
        while (h.nheld > 0) {
            hist_refund(&h, h.nheld - 1, base + at[2]);
        }
        hist_peek(&h, base + at[5], 1);
        /* a refund one µs before the bucket is full again */
        hist_apply(&h, base + 200, 1);
        hist_refund(&h, h.nheld - 1, base + 201);
        hist_peek(&h, base + 201, 1);
    }
}

/* More limits than the function library remembers the meaning of (256
 * layer texts, then it forgets them all at once): each text is parsed
 * again after that, and every decision still agrees with the C, on the
 * first pass and on the passes after the library forgot. */
static void
test_more_limits_than_the_library_remembers(void **state)
{
    enum { N = 600 };
    static spec_t specs[N];
    static char   names[N][24];
    static hist_t h[N];
    int64_t       now = wall_us() + HEADROOM;

    (void)state;
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "tb %d/1min", i + 1);
        specs[i] = (spec_t){
            names[i], RL2_ALGO_TOKEN_BUCKET, i + 1, MINUTE, 0, 0, 0, 0
        };
        hist_init(&h[i], &specs[i]);
    }
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < N; i++) {
            hist_apply(&h[i], now, 1);
        }
        now += SEC;
    }
    /* 1/min admits the first of three; 3/min and more admit all three */
    assert_int_equal(h[0].admitted, 1);
    assert_int_equal(h[0].refused, 2);
    for (int i = 2; i < N; i++) {
        assert_int_equal(h[i].admitted, 3);
    }
}

/* ---- the scripts' integer arithmetic ---- */

#define BATCH 200

/* a * b / c with the quotient below 2^53, from an adversarial mix:
 * powers of two and their neighbours, c - 1, c / 2, and random widths. */
static uint64_t
pick_operand(uint64_t c)
{
    int      bits = 1 + (int)rnd_below(50);
    uint64_t p = UINT64_C(1) << bits;

    switch (rnd_below(6)) {
    case 0:
        return p;
    case 1:
        return p - 1;
    case 2:
        return p + 1;
    case 3:
        return c > 1 ? c - 1 : 1;
    case 4:
        return c / 2 + 1;
    default:
        return rnd() % p;
    }
}

static void
muldiv_batch(void)
{
    static const char body[] =
        "local out = {}\n"
        "for i = 1, #ARGV, 3 do\n"
        "  local q, r = muldiv(tonumber(ARGV[i]), tonumber(ARGV[i + 1]),\n"
        "                      tonumber(ARGV[i + 2]))\n"
        "  out[#out + 1] = q\n"
        "  out[#out + 1] = r\n"
        "end\n"
        "return out\n";
    char        script[16384], num[3 * BATCH][24];
    const char *argv[3 + 3 * BATCH];
    uint64_t    v[3 * BATCH];
    redisReply *r;
    int         n = 0;

    snprintf(script, sizeof(script), "%s%s", rl2_lua_prelude, body);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = "0";
    while (n < 3 * BATCH) {
        uint64_t c = 1 + rnd() % ((UINT64_C(1) << (1 + rnd_below(50))));
        uint64_t a = pick_operand(c), b = pick_operand(c);

        if ((unsigned __int128)a * b / c >= (UINT64_C(1) << 53)) {
            continue;
        }
        v[n] = a;
        v[n + 1] = b;
        v[n + 2] = c;
        for (int j = 0; j < 3; j++) {
            snprintf(num[n + j], sizeof(num[0]), "%" PRIu64, v[n + j]);
            argv[3 + n + j] = num[n + j];
        }
        n += 3;
    }
    r = redisCommandArgv(admin, 3 + n, argv, NULL);
    assert_non_null(r);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 * BATCH) {
        fail_msg("muldiv script: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
    }
    for (int i = 0; i < BATCH; i++) {
        unsigned __int128 p = (unsigned __int128)v[3 * i] * v[3 * i + 1];
        uint64_t          q = (uint64_t)(p / v[3 * i + 2]);
        uint64_t          m = (uint64_t)(p % v[3 * i + 2]);

        if ((uint64_t)r->element[2 * i]->integer != q
            || (uint64_t)r->element[2 * i + 1]->integer != m) {
            fail_msg("muldiv(%" PRIu64 ", %" PRIu64 ", %" PRIu64 ") = %lld "
                     "rem %lld, not %" PRIu64 " rem %" PRIu64 " (seed %u)",
                     v[3 * i], v[3 * i + 1], v[3 * i + 2],
                     r->element[2 * i]->integer, r->element[2 * i + 1]->integer,
                     q, m, seed);
        }
    }
    freeReplyObject(r);
}

/* Lua numbers are doubles: what the scripts divide and multiply must
 * still come out exact up to 2^53. */
static void
test_script_arithmetic_is_exact(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++) {
        muldiv_batch();
    }
    printf("  muldiv exact on %d products up to 2^100\n", 50 * BATCH);
}

/* ---- whole requests: the local store and the Redis store ---- */

#define NLAYERS 7

typedef struct {
    rl2_limit_t *limit[NLAYERS];
    int          by_user[NLAYERS]; /* keyed by user, else by address */
    int          dry_run[NLAYERS];
} request_shape_t;

static void
shape_init(request_shape_t *sh)
{
    static const spec_t specs[NLAYERS - 1] = {
        { "ml ip fw 5/10s", RL2_ALGO_FIXED_WINDOW, 5, 10 * SEC, 0, 0, 0, 0 },
        { "ml user tb 3/2s b2", RL2_ALGO_TOKEN_BUCKET, 3, 2 * SEC, 2, 0, 0, 0 },
        { "ml ip sl 6/5s +2/30s", RL2_ALGO_SLIDING_LOG, 6, 5 * SEC, 0, 0, 2,
          30 * SEC },
        { "ml dry sw 4/3s", RL2_ALGO_SLIDING_WINDOW, 4, 3 * SEC, 0, 0, 0, 0 },
        { "ml user lb 4/4s", RL2_ALGO_LEAKY_BUCKET, 4, 4 * SEC, 0, 0, 0, 0 },
        { "ml user quota 40/day", RL2_ALGO_QUOTA, 40, DAY, 0, RL2_PERIOD_DAY, 0,
          0 },
    };
    rl2_limit_set_t set;
    rl2_err_t       err;

    memset(sh, 0, sizeof(*sh));
    for (int i = 0; i < NLAYERS - 1; i++) {
        sh->limit[i] = mk_limit(pol, &specs[i]);
        sh->by_user[i] = i == 1 || i == 4 || i == 5;
        sh->dry_run[i] = i == 3;
    }
    memset(&set, 0, sizeof(set));
    if (rl2_limit_set_unlimited(pol, &set, "ml", RL2_KEY_IP, &err) != RL2_OK) {
        fail_msg("unlimited: %s", err.msg);
    }
    sh->limit[NLAYERS - 1] = set.limits;
}

static void
shape_layers(const request_shape_t *sh, int ip, int user, rl2_layer_t *l)
{
    char id[32];

    for (int i = 0; i < NLAYERS; i++) {
        snprintf(id, sizeof(id), sh->by_user[i] ? "user%d" : "10.0.0.%d",
                 sh->by_user[i] ? user : ip);
        mk_layer(&l[i], sh->limit[i], id);
        l[i].dry_run = sh->dry_run[i];
    }
}

typedef struct {
    rl2_layer_t local[NLAYERS];
    rl2_layer_t redis[NLAYERS];
} held_req_t;

static void
expect_layers(const char *what, int step, int64_t now, const rl2_layer_t *a,
              const rl2_layer_t *b, int with_commit)
{
    for (int i = 0; i < NLAYERS; i++) {
        expect_same(what, step, now, &a[i], &b[i], with_commit);
    }
}

static void
one_request(rl2_store_t *local, const request_shape_t *sh, int step,
            int64_t now, held_req_t *held, int *nheld)
{
    rl2_layer_t a[NLAYERS], b[NLAYERS];
    rl2_clock_t clk = clock_at(now);
    rl2_err_t   err;
    int64_t     r = rnd_below(100);

    if (*nheld > 0 && r < 10) {
        int i = (int)rnd_below(*nheld);

        must(local->ops->refund(local, held[i].local, NLAYERS, &clk, &err),
             &err);
        must(store->ops->refund(store, held[i].redis, NLAYERS, &clk, &err),
             &err);
        held[i] = held[--*nheld];
        return;
    }
    shape_layers(sh, (int)rnd_below(3), (int)rnd_below(3), a);
    memcpy(b, a, sizeof(b));
    if (r < 16) {
        must(local->ops->peek(local, a, NLAYERS, &clk, &err), &err);
        must(store->ops->peek(store, b, NLAYERS, &clk, &err), &err);
        expect_layers("request peek", step, now, a, b, 0);
        return;
    }
    must(local->ops->apply(local, a, NLAYERS, &clk, &err), &err);
    must(store->ops->apply(store, b, NLAYERS, &clk, &err), &err);
    expect_layers("request", step, now, a, b, 1);
    if (a[0].committed && *nheld < 32) {
        memcpy(held[*nheld].local, a, sizeof(a));
        memcpy(held[(*nheld)++].redis, b, sizeof(b));
    }
}

/* Forward clock only: the local zone forgets a key once its TTL has
 * passed, which is the same as its state only while time moves on. */
static void
test_requests_match_local_store(void **state)
{
    char            name[64];
    request_shape_t sh;
    held_req_t      held[32];
    int             nheld = 0;
    rl2_zone_t     *zone;
    rl2_store_t    *local;
    rl2_err_t       err;
    int64_t         now = wall_us() + HEADROOM;

    (void)state;
    shape_init(&sh);
    snprintf(name, sizeof(name), "/rl2test-redis-%ld", (long)getpid());
    if (rl2_zone_open(name, 1024, pol->max_state_size, 0600, &zone, &err)
            != RL2_OK
        || rl2_store_local_create(zone, &local, &err) != RL2_OK) {
        fail_msg("local store: %s", err.msg);
    }
    for (int step = 0; step < 2 * STEPS; step++) {
        int64_t dt = step_dt(SEC / 2, 5 * SEC);

        one_request(local, &sh, step, now, held, &nheld);
        now += dt > 0 ? dt : 0;
    }
    printf("  %d requests of %d layers agree with the local store\n", 2 * STEPS,
           NLAYERS);
    rl2_store_destroy(local);
    rl2_zone_close(zone);
    rl2_zone_unlink(name, NULL);
}

/* ---- which Lua answered ---- */

static int functions_expected; /* this group's store calls FCALL */

/* Every comparison above went through the path this group is about (the
 * muldiv batches are the admin's EVAL, counted apart). */
static void
test_the_store_took_its_path(void **state)
{
    long long fcall = cmd_calls(admin, "fcall");
    long long evalsha = cmd_calls(admin, "evalsha");

    (void)state;
    printf("  FCALL %lld calls, EVALSHA %lld\n", fcall, evalsha);
    if (functions_expected) {
        assert_true(fcall > 10000);
        assert_int_equal(evalsha, 0);
    }
    else {
        assert_int_equal(fcall, 0);
        assert_true(evalsha > 10000);
    }
}

/* ---- fixture ---- */

static int
group_setup(void **state)
{
    static int  seeded;
    const char *env = getenv("RL2_SEED");

    (void)state;
    if (!seeded++) {
        seed = env != NULL ? (unsigned)strtoul(env, NULL, 10)
                           : (unsigned)(wall_us() ^ getpid());
    }
    /* both groups play the same histories */
    rng = UINT64_C(0x9e3779b97f4a7c15) ^ seed;
    printf("seed %u (RL2_SEED=%u reproduces this run)\n", seed, seed);
    srv_up();
    pol_create();
    return 0;
}

static int
functions_group_setup(void **state)
{
    group_setup(state);
    functions_expected = 1;
    store = mk_store(&srv, 1);
    return 0;
}

/* Runs second: its first call switches this process to scripts. */
static int
scripts_group_setup(void **state)
{
    group_setup(state);
    functions_expected = 0;
    acl_user_without_functions(admin);
    store = mk_store_as(&srv, 1, NOFN_USER, NOFN_PASS);
    return 0;
}

#define T(f) \
    cmocka_unit_test_setup_teardown(f, flushed_setup, watchdog_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_script_arithmetic_is_exact),
        T(test_token_bucket_matches_c),
        T(test_leaky_bucket_matches_c),
        T(test_fixed_window_matches_c),
        T(test_sliding_window_matches_c),
        T(test_sliding_log_matches_c),
        T(test_concurrency_matches_c),
        T(test_quota_matches_c),
        T(test_overflow_allowance_matches_c),
        T(test_factor_changes_match_c),
        T(test_clock_going_back_matches_c),
        T(test_more_limits_than_the_library_remembers),
        T(test_lease_grants_match_c),
        T(test_lease_short_path_answers_as_the_driver),
        T(test_apply_short_path_answers_as_the_driver),
        T(test_requests_match_local_store),
        T(test_the_store_took_its_path),
    };
    int failed;

    setvbuf(stdout, NULL, _IOLBF, 0);
    failed = cmocka_run_group_tests_name("functions (FCALL)", tests,
                                         functions_group_setup,
                                         store_group_teardown);
    failed += cmocka_run_group_tests_name(
        "scripts (EVALSHA)", tests, scripts_group_setup, store_group_teardown);
    return failed;
}
