/*
 * test_algo.c -- the seven algorithms of algo.c against a fake clock.
 *
 * The clock is a plain integer passed as now_us.  Behaviour every algorithm
 * shares (fresh state, exactly N then refused, retry_after never early, a
 * clock going back, cost, refunds, expiry) runs once per algorithm; then
 * each algorithm's own behaviour (refill, burst, window edges, calendar
 * roll-over), randomized comparisons against simple oracles, and
 * rl2_algo_params_check().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ratelimit2/algo.h"
#include "algo/algo_internal.h"

#define SEC       INT64_C(1000000)
#define MINUTE    (60 * SEC)
#define HOUR      (3600 * SEC)
#define DAY       (86400 * SEC)
#define YEAR_2200 (INT64_C(7258118400) * SEC) /* 2200-01-01T00:00:00Z */
#define BASE      (100000 * SEC + 123457)     /* a monotonic now */
/* 2024-03-10T12:34:56.789012Z */
#define WALL_BASE (INT64_C(1710074096) * SEC + 789012)

/* ---- fixture ----------------------------------------------------------- */

typedef struct {
    rl2_algo_params_t p;
    int64_t           now;                            /* the fake clock, µs */
    int64_t           state[2 + RL2_SLIDING_LOG_MAX]; /* zeroed: a fresh key */
} fx_t;

static void
fx_init(fx_t *f, rl2_algo_params_t p, int64_t now)
{
    rl2_err_t err;

    memset(f, 0, sizeof(*f));
    f->p = p;
    f->now = now;
    err.msg[0] = '\0';
    if (rl2_algo_params_check(&p, &err) != RL2_OK) {
        fail_msg("params refused: %s", err.msg);
    }
    assert_true(rl2_algo_state_size(&p) <= sizeof(f->state));
}

static rl2_algo_result_t
fx_check(const fx_t *f, int64_t cost)
{
    rl2_algo_result_t r;

    rl2_algo_check(&f->p, f->state, f->now, cost, &r);
    return r;
}

/* What a store does for one request: check, and commit if allowed. */
static rl2_algo_result_t
fx_take(fx_t *f, int64_t cost)
{
    rl2_algo_result_t r = fx_check(f, cost);

    if (r.allowed) {
        rl2_algo_commit(&f->p, f->state, f->now, cost);
    }
    return r;
}

/* Requests of `cost` at f->now until one is refused: how many passed. */
static int64_t
fx_drain(fx_t *f, int64_t cost, rl2_algo_result_t *refused)
{
    rl2_algo_result_t r;
    int64_t           n = 0;

    while ((r = fx_take(f, cost)).allowed) {
        n++;
        assert_true(n <= 100000);
    }
    if (refused != NULL) {
        *refused = r;
    }
    return n;
}

static void
fx_refund(fx_t *f, int64_t committed_us, int64_t cost)
{
    rl2_algo_refund(&f->p, f->state, f->now, committed_us, cost);
}

static void
assert_same_result(const rl2_algo_result_t *a, const rl2_algo_result_t *b)
{
    assert_int_equal(a->allowed, b->allowed);
    assert_int_equal(a->limit, b->limit);
    assert_int_equal(a->remaining, b->remaining);
    assert_int_equal(a->reset_us, b->reset_us);
    assert_int_equal(a->retry_after_us, b->retry_after_us);
}

/* The two keys answer every cost alike at their (equal) now. */
static void
assert_same_answers(const fx_t *a, const fx_t *b, int64_t cap)
{
    int64_t cost;

    for (cost = 0; cost <= cap + 1; cost++) {
        rl2_algo_result_t ra = fx_check(a, cost);
        rl2_algo_result_t rb = fx_check(b, cost);

        assert_same_result(&ra, &rb);
    }
}

static uint64_t
rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Uniform enough in [0, n). */
static int64_t
rng_below(uint64_t *s, int64_t n)
{
    return n > 0 ? (int64_t)(rng_next(s) % (uint64_t)n) : 0;
}

/* Wall time of a UTC date, µs. */
static int64_t
utc(int y, int mon, int d, int h, int min, int s)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = min;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm) * SEC;
}

/* ---- one case per algorithm -------------------------------------------- */

typedef struct {
    rl2_algo_params_t p;
    int64_t           base;  /* a "now" of the algorithm's clock */
    int64_t           scale; /* its time scale: the window, a day, ... */
} case_t;

static case_t cases[RL2_ALGO_COUNT] = {
    [RL2_ALGO_TOKEN_BUCKET] = { { RL2_ALGO_TOKEN_BUCKET, 10, SEC, 0,
                                  RL2_PERIOD_NONE },
                                BASE,
                                SEC },
    [RL2_ALGO_SLIDING_LOG] = { { RL2_ALGO_SLIDING_LOG, 10, SEC, 0,
                                 RL2_PERIOD_NONE },
                               BASE,
                               SEC },
    [RL2_ALGO_SLIDING_WINDOW] = { { RL2_ALGO_SLIDING_WINDOW, 10, SEC, 0,
                                    RL2_PERIOD_NONE },
                                  BASE,
                                  SEC },
    [RL2_ALGO_FIXED_WINDOW] = { { RL2_ALGO_FIXED_WINDOW, 10, SEC, 0,
                                  RL2_PERIOD_NONE },
                                BASE,
                                SEC },
    [RL2_ALGO_LEAKY_BUCKET] = { { RL2_ALGO_LEAKY_BUCKET, 10, SEC, 0,
                                  RL2_PERIOD_NONE },
                                BASE,
                                SEC },
    [RL2_ALGO_CONCURRENCY] = { { RL2_ALGO_CONCURRENCY, 10, 0, 0,
                                 RL2_PERIOD_NONE },
                               BASE,
                               SEC },
    [RL2_ALGO_QUOTA] = { { RL2_ALGO_QUOTA, 10, 0, 0, RL2_PERIOD_DAY },
                         WALL_BASE,
                         DAY },
};

static const case_t *
case_of(void **state)
{
    return *state;
}

static int
timed(const case_t *c)
{
    return c->p.algo != RL2_ALGO_CONCURRENCY;
}

/* ---- behaviour of every algorithm -------------------------------------- */

static void
test_fresh_key_admits_exactly_limit_then_refuses(void **state)
{
    const case_t     *c = case_of(state);
    rl2_algo_result_t r;
    fx_t              f;
    int64_t           i;

    fx_init(&f, c->p, c->base);
    for (i = 0; i < c->p.limit; i++) {
        r = fx_take(&f, 1);
        assert_true(r.allowed);
        assert_int_equal(r.limit, c->p.limit);
        assert_int_equal(r.remaining, c->p.limit - 1 - i);
        assert_int_equal(r.retry_after_us, 0);
    }
    r = fx_take(&f, 1);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_true(r.retry_after_us > 0);
}

static void
test_zero_state_is_fresh_at_any_time(void **state)
{
    const case_t *c = case_of(state);
    const int64_t nows[] = { 0, 1, c->base, c->base + 7 * c->scale + 3,
                             YEAR_2200 };
    size_t        i;
    fx_t          f;

    for (i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
        fx_init(&f, c->p, nows[i]);
        assert_int_equal(fx_drain(&f, 1, NULL), c->p.limit);
    }
}

static void
test_check_alone_never_changes_state(void **state)
{
    const case_t *c = case_of(state);
    const int64_t offsets[] = { 0, -c->scale, c->scale / 2, 3 * c->scale };
    int64_t       saved[sizeof(((fx_t *)0)->state) / sizeof(int64_t)];
    size_t        i;
    int64_t       cost, now;
    fx_t          f;

    fx_init(&f, c->p, c->base + 5 * c->scale);
    fx_take(&f, 3);
    for (int round = 0; round < 2; round++) {
        memcpy(saved, f.state, sizeof(saved));
        now = f.now;
        for (i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
            f.now = now + offsets[i];
            for (cost = 0; cost <= c->p.limit + 2; cost++) {
                fx_check(&f, cost);
            }
        }
        f.now = now;
        assert_memory_equal(saved, f.state, sizeof(saved));
        fx_drain(&f, 1, NULL); /* the second round: a full key */
    }
}

static void
test_retry_after_is_never_early(void **state)
{
    const case_t     *c = case_of(state);
    rl2_algo_result_t r;
    int64_t           cost;
    fx_t              f, g;

    fx_init(&f, c->p, c->base);
    for (int round = 0; round < 12; round++) {
        cost = 1 + round % 3;
        fx_drain(&f, cost, &r);
        assert_true(r.retry_after_us > 0);
        if (!timed(c)) {
            assert_int_equal(r.retry_after_us, SEC); /* unknown: a guess */
            assert_int_equal(r.reset_us, 0);
            return;
        }
        g = f;
        g.now = f.now + r.retry_after_us - 1;
        assert_false(fx_check(&g, cost).allowed);
        f.now += r.retry_after_us;
        assert_true(fx_take(&f, cost).allowed);
        f.now += (round * INT64_C(7919) * c->scale / 10000) % (c->scale / 3);
    }
}

static void
test_full_limit_is_back_after_reset_us(void **state)
{
    const case_t     *c = case_of(state);
    rl2_algo_result_t r;
    fx_t              f;

    fx_init(&f, c->p, c->base);
    fx_take(&f, 2);
    f.now += c->scale / 4;
    fx_drain(&f, 1, &r);
    if (!timed(c)) {
        assert_int_equal(r.reset_us, 0);
        return;
    }
    assert_true(r.reset_us > 0);
    f.now += r.reset_us - 1;
    assert_false(fx_check(&f, c->p.limit).allowed);
    f.now += 1;
    assert_int_equal(fx_drain(&f, 1, NULL), c->p.limit);
}

static void
test_clock_going_back_grants_nothing_extra(void **state)
{
    const case_t *c = case_of(state);
    const int64_t backs[] = { 1, c->scale / 2, c->scale, 3 * c->scale,
                              10 * c->scale };
    int64_t       half = c->p.limit / 2;
    size_t        i;
    fx_t          f, g;

    fx_init(&f, c->p, c->base + 20 * c->scale);
    for (int64_t n = 0; n < half; n++) {
        assert_true(fx_take(&f, 1).allowed);
    }
    for (i = 0; i < sizeof(backs) / sizeof(backs[0]); i++) {
        g = f;
        g.now -= backs[i];
        assert_true(fx_drain(&g, 1, NULL) <= c->p.limit - half);
    }
    fx_drain(&f, 1, NULL);
    for (i = 0; i < sizeof(backs) / sizeof(backs[0]); i++) {
        g = f;
        g.now -= backs[i];
        assert_false(fx_check(&g, 1).allowed);
    }
}

static void
test_cost_above_one_takes_that_many_units(void **state)
{
    const case_t     *c = case_of(state);
    rl2_algo_result_t r;
    fx_t              f;

    fx_init(&f, c->p, c->base); /* limit 10 */
    assert_int_equal(fx_take(&f, 3).remaining, 7);
    assert_int_equal(fx_take(&f, 3).remaining, 4);
    assert_int_equal(fx_take(&f, 3).remaining, 1);
    r = fx_take(&f, 3);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 1);
    r = fx_take(&f, 1);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_false(fx_take(&f, 1).allowed);
}

static void
test_cost_above_capacity_never_fits(void **state)
{
    const case_t     *c = case_of(state);
    int64_t           zero[sizeof(((fx_t *)0)->state) / sizeof(int64_t)];
    rl2_algo_result_t r;
    fx_t              f;

    fx_init(&f, c->p, c->base);
    memset(zero, 0, sizeof(zero));
    r = fx_take(&f, c->p.limit + 1);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, c->p.limit);
    assert_true(r.retry_after_us >= SEC);
    assert_false(fx_take(&f, INT64_MAX).allowed);
    assert_memory_equal(zero, f.state, sizeof(zero));
    assert_true(fx_take(&f, c->p.limit).allowed);
}

static void
test_refund_right_after_commit_restores_fresh(void **state)
{
    const case_t *c = case_of(state);
    const int64_t later[] = { 0, 1, c->scale / 3, 2 * c->scale };
    size_t        i;
    fx_t          a, b;

    fx_init(&a, c->p, c->base);
    fx_init(&b, c->p, c->base);
    assert_true(fx_take(&a, 3).allowed);
    fx_refund(&a, a.now, 3);
    for (i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
        a.now = b.now = c->base + later[i];
        assert_same_answers(&a, &b, c->p.limit);
    }
}

/* A refund, however late and whatever was admitted in between, never leaves
 * the key more generous than a twin key that never saw the request.  Both
 * keys get the same other requests and refunds; key a also gets request X,
 * refunded some steps later. */
static void
refund_twin_run(const case_t *c, uint64_t seed, int x_at, int x_delay)
{
    struct {
        int64_t t, cost;
    } other[64];
    int               n_other = 0, x_done = 0;
    int64_t           x_t = 0, x_cost = 1 + (int64_t)(seed % 3), cost;
    rl2_algo_result_t ra, rb;
    fx_t              a, b;

    fx_init(&a, c->p, c->base);
    fx_init(&b, c->p, c->base);
    for (int step = 0; step < 400; step++) {
        a.now = b.now = a.now + rng_below(&seed, c->scale / 4);
        if (step >= x_at && x_done == 0 && fx_take(&a, x_cost).allowed) {
            x_t = a.now;
            x_done = 1;
            x_at = step;
        }
        if (x_done == 1 && step >= x_at + x_delay) {
            fx_refund(&a, x_t, x_cost);
            x_done = 2;
        }
        if (rng_below(&seed, 10) < 7) {
            cost = 1 + rng_below(&seed, 3);
            ra = fx_check(&a, cost);
            rb = fx_check(&b, cost);
            assert_true(!ra.allowed || rb.allowed);
            if (ra.allowed) {
                fx_take(&a, cost);
                fx_take(&b, cost);
                if (n_other < 64) {
                    other[n_other].t = a.now;
                    other[n_other++].cost = cost;
                }
            }
        }
        else if (n_other > 0) {
            int k = (int)rng_below(&seed, n_other);

            fx_refund(&a, other[k].t, other[k].cost);
            fx_refund(&b, other[k].t, other[k].cost);
            other[k] = other[--n_other];
        }
    }
    assert_int_equal(x_done, 2);
}

static void
test_refund_is_never_more_generous_than_no_request(void **state)
{
    const case_t *c = case_of(state);

    for (uint64_t seed = 1; seed <= 60; seed++) {
        refund_twin_run(c, seed * 0x9e3779b97f4a7c15ull, (int)(seed % 40),
                        (int)(seed % 4 == 0 ? 0 : seed % 25));
    }
}

static void
test_state_is_fresh_again_after_ttl(void **state)
{
    const case_t *c = case_of(state);
    fx_t          f, g;
    int64_t       ttl;

    fx_init(&f, c->p, c->base);
    fx_take(&f, 4);
    f.now += c->scale / 5;
    fx_take(&f, 2);
    f.now += c->scale / 7;
    fx_take(&f, 3);
    ttl = rl2_algo_ttl_us(&f.p, f.now);
    assert_true(ttl > 0);
    if (!timed(c)) {
        /* in-flight units only leave by refund, never with time */
        f.now += 10 * HOUR;
        assert_int_equal(fx_check(&f, 0).remaining, 1);
        return;
    }
    fx_init(&g, c->p, f.now + ttl);
    f.now += ttl;
    assert_same_answers(&f, &g, c->p.limit);
}

/* ---- token_bucket and leaky_bucket ------------------------------------- */

static void
test_bucket_refills_one_unit_per_interval(void **state)
{
    const case_t *c = case_of(state); /* 10/1s: T = 100 ms */
    const int64_t t = SEC / 10;
    fx_t          f;

    fx_init(&f, c->p, c->base);
    assert_int_equal(fx_drain(&f, 1, NULL), 10);
    f.now += t - 1;
    assert_false(fx_check(&f, 1).allowed);
    f.now += 1;
    assert_int_equal(fx_drain(&f, 1, NULL), 1);
    f.now += 5 * t;
    assert_int_equal(fx_drain(&f, 1, NULL), 5);
    f.now += 100 * SEC;
    assert_int_equal(fx_drain(&f, 1, NULL), 10); /* never above capacity */
}

static void
test_bucket_burst_admits_burst_then_steady_rate(void **state)
{
    const case_t     *c = case_of(state);
    rl2_algo_params_t p = c->p;
    rl2_algo_result_t r;
    fx_t              f;

    p.burst = 3; /* below the limit of 10 */
    fx_init(&f, p, c->base);
    assert_int_equal(fx_take(&f, 1).remaining, 2);
    assert_int_equal(fx_take(&f, 1).remaining, 1);
    r = fx_take(&f, 1);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.limit, 3);
    assert_int_equal(r.reset_us, 3 * SEC / 10);
    assert_false(fx_check(&f, 1).allowed);
    assert_false(fx_check(&f, 4).allowed); /* above the burst: never */
    f.now += SEC / 10;
    assert_int_equal(fx_drain(&f, 1, NULL), 1);

    p.burst = 25; /* above the limit */
    fx_init(&f, p, c->base);
    assert_int_equal(fx_drain(&f, 1, NULL), 25);
    f.now += 2 * SEC / 10;
    assert_int_equal(fx_drain(&f, 1, NULL), 2);
    assert_true(fx_take(&f, 0).allowed);
}

static void
test_bucket_rounds_interval_up_never_over_admits(void **state)
{
    const case_t     *c = case_of(state);
    rl2_algo_params_t p = c->p;
    int64_t           admitted = 0;
    fx_t              f;

    p.limit = 3; /* T = ceil(1s / 3) = 333334 µs */
    fx_init(&f, p, c->base);
    for (int64_t i = 0; i < 100 * 1000; i++) {
        admitted += fx_take(&f, 1).allowed;
        f.now += 1000;
    }
    /* 100 s of demand: the burst of 3 plus at most 3 per second */
    assert_true(admitted <= 3 + 300);
    assert_true(admitted >= 300);

    p.window_us = 10; /* T = ceil(10 / 3) = 4 µs, not 3 */
    fx_init(&f, p, c->base);
    admitted = 0;
    for (int64_t i = 0; i < 100 * 1000; i++) {
        admitted += fx_take(&f, 1).allowed;
        f.now += 1;
    }
    assert_true(admitted <= 3 + 30000); /* the rate is never exceeded */
    assert_int_equal(admitted, 3 + 100000 / 4 - 1);
}

/* Negative elapsed time is clamped to zero: the level neither drains nor
 * grows while the clock is behind the last measurement. */
static void
test_leaky_bucket_clock_going_back_drains_nothing(void **state)
{
    rl2_algo_params_t p = cases[RL2_ALGO_LEAKY_BUCKET].p;
    fx_t              f;

    (void)state;
    fx_init(&f, p, BASE);
    fx_take(&f, 4);
    f.now = BASE - 3 * SEC;
    assert_int_equal(fx_drain(&f, 1, NULL), 6);
    f.now = BASE + SEC / 10;
    assert_int_equal(fx_drain(&f, 1, NULL), 1);
}

static void
test_leaky_bucket_answers_like_token_bucket(void **state)
{
    uint64_t          seed = 42;
    rl2_algo_params_t p = { RL2_ALGO_TOKEN_BUCKET, 7, SEC, 12,
                            RL2_PERIOD_NONE };
    rl2_algo_result_t ra, rb;
    int64_t           cost, last_t = BASE, last_cost = 0;
    fx_t              a, b;

    (void)state;
    fx_init(&a, p, BASE);
    p.algo = RL2_ALGO_LEAKY_BUCKET;
    fx_init(&b, p, BASE);
    for (int step = 0; step < 5000; step++) {
        a.now = b.now = a.now + rng_below(&seed, SEC / 5);
        cost = rng_below(&seed, 5);
        ra = fx_take(&a, cost);
        rb = fx_take(&b, cost);
        assert_same_result(&ra, &rb);
        if (ra.allowed) {
            last_t = a.now;
            last_cost = cost;
        }
        if (rng_below(&seed, 8) == 0) {
            fx_refund(&a, last_t, last_cost);
            fx_refund(&b, last_t, last_cost);
        }
    }
}

/* The refund of a request followed by another commit: forgiving the whole
 * cost * T would admit more than if the request had never been made. */
static void
test_token_bucket_late_refund_is_not_generous(void **state)
{
    /* T = 10 µs, capacity 2 */
    rl2_algo_params_t p = { RL2_ALGO_TOKEN_BUCKET, 2, 20, 0, RL2_PERIOD_NONE };
    fx_t              a, b;

    (void)state;
    fx_init(&a, p, 100);
    fx_init(&b, p, 100);
    assert_true(fx_take(&a, 1).allowed); /* X at 100 */
    a.now = b.now = 105;
    assert_true(fx_take(&a, 1).allowed); /* Y at 105, on both */
    assert_true(fx_take(&b, 1).allowed);
    fx_refund(&a, 100, 1); /* X refunded at 105 */
    a.now = b.now = 110;
    assert_int_equal(fx_drain(&a, 1, NULL), fx_drain(&b, 1, NULL));
}

/* ---- fixed_window ------------------------------------------------------ */

static void
test_fixed_window_resets_exactly_at_aligned_boundary(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_FIXED_WINDOW, 10, MINUTE, 0,
                            RL2_PERIOD_NONE };
    rl2_algo_result_t r;
    fx_t              f;

    (void)state;
    fx_init(&f, p, 5 * MINUTE + 30 * SEC);
    assert_int_equal(fx_drain(&f, 1, &r), 10);
    assert_int_equal(r.retry_after_us, 30 * SEC);
    assert_int_equal(r.reset_us, 30 * SEC);
    f.now = 6 * MINUTE - 1;
    assert_false(fx_check(&f, 1).allowed);
    f.now = 6 * MINUTE;
    assert_int_equal(fx_drain(&f, 1, NULL), 10);
}

static void
test_fixed_window_refund_only_in_same_window(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_FIXED_WINDOW, 10, MINUTE, 0,
                            RL2_PERIOD_NONE };
    fx_t              f;

    (void)state;
    fx_init(&f, p, 5 * MINUTE + 30 * SEC);
    fx_drain(&f, 1, NULL);
    f.now += 10 * SEC;
    fx_refund(&f, 5 * MINUTE + 30 * SEC, 2);
    assert_int_equal(fx_drain(&f, 1, NULL), 2);
    f.now = 6 * MINUTE + 1;
    assert_int_equal(fx_drain(&f, 1, NULL), 10);
    fx_refund(&f, 5 * MINUTE + 30 * SEC, 5); /* the old window's: none */
    assert_false(fx_check(&f, 1).allowed);
}

/* ---- sliding_window ---------------------------------------------------- */

static void
test_sliding_window_weighs_previous_window(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_SLIDING_WINDOW, 10, 1000, 0,
                            RL2_PERIOD_NONE };
    rl2_algo_result_t r;
    fx_t              f;

    (void)state;
    fx_init(&f, p, 1000 * 1000 + 500);
    assert_int_equal(fx_drain(&f, 1, NULL), 10);
    f.now = 1001 * 1000; /* next window, previous weighs fully */
    r = fx_check(&f, 1);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, 100); /* 10 * 900 + 1000 fits */
    assert_int_equal(r.reset_us, 1000);
    f.now += 99;
    assert_false(fx_check(&f, 1).allowed);
    f.now += 1;
    r = fx_take(&f, 1);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.reset_us, 1900); /* this unit weighs on next window */
    r = fx_check(&f, 1);
    assert_int_equal(r.retry_after_us, 100); /* 10 * 800 + 2000 fits */
}

/* Counts of admitted units per window index, from a list of admissions. */
static int64_t
units_in_window(const int64_t *ts, const int64_t *costs, int n, int64_t start,
                int64_t w)
{
    int64_t sum = 0;

    for (int i = 0; i < n; i++) {
        if (ts[i] >= start && ts[i] < start + w) {
            sum += costs[i];
        }
    }
    return sum;
}

static void
test_sliding_window_matches_weighted_estimate(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_SLIDING_WINDOW, 10, 1000, 0,
                            RL2_PERIOD_NONE };
    static int64_t    ts[4000], costs[4000];
    uint64_t          seed = 7;
    int               n = 0;
    rl2_algo_result_t r;
    fx_t              f, g;

    (void)state;
    fx_init(&f, p, 0);
    for (int step = 0; step < 4000; step++) {
        int64_t cost = 1 + rng_below(&seed, 4);
        int64_t start = f.now / 1000 * 1000, e = f.now - start;
        int64_t prev = units_in_window(ts, costs, n, start - 1000, 1000);
        int64_t cur = units_in_window(ts, costs, n, start, 1000);

        r = fx_take(&f, cost);
        assert_int_equal(r.allowed,
                         prev * (1000 - e) + (cur + cost) * 1000 <= 10000);
        if (r.allowed) {
            ts[n] = f.now;
            costs[n++] = cost;
        }
        else {
            g = f;
            g.now += r.retry_after_us - 1;
            assert_false(fx_check(&g, cost).allowed);
            g.now += 1;
            assert_true(fx_check(&g, cost).allowed);
        }
        f.now += rng_below(&seed, 400);
    }
}

static void
test_sliding_window_refund_reaches_previous_window(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_SLIDING_WINDOW, 10, 1000, 0,
                            RL2_PERIOD_NONE };
    fx_t              f;

    (void)state;
    fx_init(&f, p, 1000 * 1000 + 500);
    fx_drain(&f, 1, NULL);
    f.now = 1001 * 1000 + 600; /* 10 * 400 + 1000 fits */
    assert_true(fx_take(&f, 1).allowed);
    assert_int_equal(fx_check(&f, 1).remaining, 4);
    fx_refund(&f, 1000 * 1000 + 500, 5); /* previous: 10 -> 5 */
    assert_int_equal(fx_check(&f, 1).remaining, 6);
    fx_refund(&f, 999 * 1000 + 1, 5); /* no longer tracked */
    assert_int_equal(fx_check(&f, 1).remaining, 6);
    fx_refund(&f, f.now, 1); /* current: 1 -> 0 */
    assert_int_equal(fx_check(&f, 1).remaining, 7);
}

/* ---- sliding_log ------------------------------------------------------- */

static void
test_sliding_log_matches_exact_oracle(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_SLIDING_LOG, 10, 1000, 0,
                            RL2_PERIOD_NONE };
    static int64_t    ts[40000];
    uint64_t          seed = 99;
    int               n = 0, first = 0;
    rl2_algo_result_t r;
    fx_t              f;

    (void)state;
    fx_init(&f, p, 5000);
    for (int step = 0; step < 8000; step++) {
        int64_t cost = 1 + rng_below(&seed, 3), live;

        while (first < n && ts[first] <= f.now - 1000) {
            first++; /* expired: at or before now - W */
        }
        live = n - first;
        r = fx_take(&f, cost);
        assert_int_equal(r.allowed, live + cost <= 10);
        if (r.allowed) {
            assert_int_equal(r.remaining, 10 - live - cost);
            assert_int_equal(r.reset_us, 1000);
            for (int64_t k = 0; k < cost; k++) {
                ts[n++] = f.now;
            }
        }
        else {
            assert_int_equal(r.remaining, 10 - live);
            assert_int_equal(r.retry_after_us,
                             ts[first + live + cost - 10 - 1] + 1000 - f.now);
            assert_int_equal(r.reset_us, ts[n - 1] + 1000 - f.now);
        }
        f.now += rng_below(&seed, 250);
    }
}

static void
test_sliding_log_refund_removes_entries_of_that_time(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_SLIDING_LOG, 10, 1000, 0,
                            RL2_PERIOD_NONE };
    fx_t              f;

    (void)state;
    fx_init(&f, p, 5000);
    fx_take(&f, 3);
    f.now = 5100;
    fx_take(&f, 2);
    f.now = 5200;
    fx_take(&f, 4);
    assert_int_equal(fx_check(&f, 0).remaining, 1);
    fx_refund(&f, 5100, 5); /* only 2 carry that time */
    assert_int_equal(fx_check(&f, 0).remaining, 3);
    fx_refund(&f, 5100, 1); /* none left */
    fx_refund(&f, 5150, 1); /* never committed */
    assert_int_equal(fx_check(&f, 0).remaining, 3);
    f.now = 6000; /* 5000's three expire */
    assert_int_equal(fx_check(&f, 0).remaining, 6);
    f.now = 6199;
    assert_int_equal(fx_check(&f, 0).remaining, 6);
    f.now = 6200;
    assert_int_equal(fx_check(&f, 0).remaining, 10);
}

static void
test_sliding_log_keeps_future_entries_counted(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_SLIDING_LOG, 10, 1000, 0,
                            RL2_PERIOD_NONE };
    rl2_algo_result_t r;
    fx_t              f;

    (void)state;
    fx_init(&f, p, 50000);
    assert_int_equal(fx_drain(&f, 1, NULL), 10);
    f.now = 50000 - 5000; /* the clock went back */
    r = fx_check(&f, 1);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, 6000);

    fx_init(&f, p, 50000);
    fx_take(&f, 5);
    f.now = 50000 - 2000;
    assert_true(fx_take(&f, 5).allowed); /* stamped 50000, not earlier */
    f.now = 50000 + 999;
    assert_false(fx_check(&f, 1).allowed);
    f.now = 50000 + 1000;
    assert_int_equal(fx_drain(&f, 1, NULL), 10);
}

static void
test_sliding_log_at_max_limit_wraps_its_ring(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_SLIDING_LOG, RL2_SLIDING_LOG_MAX, 1000, 0,
                            RL2_PERIOD_NONE };
    fx_t              f;

    (void)state;
    fx_init(&f, p, 10000);
    assert_int_equal(rl2_algo_state_size(&p), 16 + 8 * RL2_SLIDING_LOG_MAX);
    for (int round = 0; round < 5; round++) {
        assert_int_equal(fx_drain(&f, 7, NULL), RL2_SLIDING_LOG_MAX / 7);
        f.now += 500;
        assert_int_equal(fx_drain(&f, 1, NULL), RL2_SLIDING_LOG_MAX % 7);
        f.now += 500; /* the first batch expires, the rest stays */
        assert_int_equal(fx_drain(&f, 1, NULL), RL2_SLIDING_LOG_MAX / 7 * 7);
        f.now += 1000;
    }
}

/* ---- concurrency ------------------------------------------------------- */

static void
test_concurrency_refund_releases_slots(void **state)
{
    const case_t     *c = &cases[RL2_ALGO_CONCURRENCY];
    rl2_algo_result_t r;
    fx_t              f;

    (void)state;
    fx_init(&f, c->p, c->base);
    assert_int_equal(fx_drain(&f, 1, &r), 10);
    assert_int_equal(r.retry_after_us, SEC);
    assert_int_equal(r.reset_us, 0);
    fx_refund(&f, c->base, 1);
    assert_int_equal(fx_drain(&f, 1, NULL), 1);
    fx_refund(&f, c->base, 3);
    assert_true(fx_take(&f, 3).allowed);
    assert_false(fx_check(&f, 1).allowed);
    assert_int_equal(rl2_algo_ttl_us(&f.p, f.now), HOUR);
}

static void
test_concurrency_refund_never_goes_below_zero(void **state)
{
    const case_t *c = &cases[RL2_ALGO_CONCURRENCY];
    fx_t          f;

    (void)state;
    fx_init(&f, c->p, c->base);
    fx_take(&f, 2);
    fx_refund(&f, c->base, 5);
    fx_refund(&f, c->base, 5);
    assert_int_equal(fx_drain(&f, 1, NULL), 10);
}

/* ---- quota and the calendar -------------------------------------------- */

static void
assert_quota_rolls_over(rl2_algo_params_t p, int64_t inside, int64_t next_start)
{
    rl2_algo_result_t r;
    fx_t              f;

    fx_init(&f, p, inside);
    assert_int_equal(fx_drain(&f, 1, &r), p.limit);
    assert_int_equal(r.reset_us, next_start - inside);
    assert_int_equal(r.retry_after_us, next_start - inside);
    f.now = next_start - 1;
    r = fx_check(&f, 1);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_us, 1);
    f.now = next_start;
    assert_int_equal(fx_drain(&f, 1, NULL), p.limit);
}

static void
test_quota_day_rolls_over_at_midnight_utc(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_QUOTA, 20, 0, 0, RL2_PERIOD_DAY };

    (void)state;
    assert_quota_rolls_over(p, utc(2024, 3, 10, 23, 0, 0),
                            utc(2024, 3, 11, 0, 0, 0));
    assert_quota_rolls_over(p, utc(2024, 2, 28, 12, 0, 0),
                            utc(2024, 2, 29, 0, 0, 0));
    assert_quota_rolls_over(p, utc(2024, 2, 29, 0, 0, 0),
                            utc(2024, 3, 1, 0, 0, 0));
    assert_quota_rolls_over(p, utc(2023, 12, 31, 23, 59, 59),
                            utc(2024, 1, 1, 0, 0, 0));
    p.window_us = DAY; /* what the rate parser gives "20/day" */
    assert_quota_rolls_over(p, utc(2024, 3, 10, 0, 0, 0),
                            utc(2024, 3, 11, 0, 0, 0));
}

static void
test_quota_month_rolls_over_at_month_end(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_QUOTA, 5, 0, 0, RL2_PERIOD_MONTH };
    fx_t              f;

    (void)state;
    assert_quota_rolls_over(p, utc(2023, 1, 31, 23, 0, 0),
                            utc(2023, 2, 1, 0, 0, 0));
    assert_quota_rolls_over(p, utc(2023, 2, 28, 0, 0, 0),
                            utc(2023, 3, 1, 0, 0, 0));
    assert_quota_rolls_over(p, utc(2024, 2, 1, 0, 0, 0), /* leap year */
                            utc(2024, 3, 1, 0, 0, 0));
    assert_quota_rolls_over(p, utc(2023, 12, 31, 23, 59, 59),
                            utc(2024, 1, 1, 0, 0, 0));
    assert_quota_rolls_over(p, utc(2100, 2, 28, 1, 0, 0), /* not leap */
                            utc(2100, 3, 1, 0, 0, 0));
    assert_quota_rolls_over(p, utc(2000, 2, 29, 1, 0, 0), /* leap */
                            utc(2000, 3, 1, 0, 0, 0));

    /* Feb 29 of a leap year still counts in February */
    fx_init(&f, p, utc(2024, 2, 28, 23, 59, 59));
    fx_drain(&f, 1, NULL);
    f.now = utc(2024, 2, 29, 23, 59, 59) + SEC - 1;
    assert_false(fx_check(&f, 1).allowed);
    f.now += 1;
    assert_true(fx_check(&f, 1).allowed);
}

static void
test_quota_keeps_stored_period_when_clock_goes_back(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_QUOTA, 3, 0, 0, RL2_PERIOD_DAY };
    rl2_algo_result_t r;
    fx_t              f;

    (void)state;
    fx_init(&f, p, utc(2024, 3, 10, 0, 0, 5));
    fx_take(&f, 2);
    f.now = utc(2024, 3, 9, 23, 59, 59); /* back into yesterday */
    assert_int_equal(fx_drain(&f, 1, &r), 1);
    assert_int_equal(r.reset_us, DAY + SEC);
    f.now = utc(2024, 3, 10, 12, 0, 0);
    assert_false(fx_check(&f, 1).allowed);
}

static void
test_quota_refund_only_in_same_period(void **state)
{
    rl2_algo_params_t p = { RL2_ALGO_QUOTA, 3, 0, 0, RL2_PERIOD_MONTH };
    int64_t           t = utc(2024, 1, 31, 23, 0, 0);
    fx_t              f;

    (void)state;
    fx_init(&f, p, t);
    fx_drain(&f, 1, NULL);
    f.now = t + 30 * MINUTE;
    fx_refund(&f, t, 1);
    assert_int_equal(fx_drain(&f, 1, NULL), 1);
    f.now = utc(2024, 2, 1, 0, 0, 0);
    fx_drain(&f, 1, NULL);
    fx_refund(&f, t, 3); /* January's: no effect */
    assert_false(fx_check(&f, 1).allowed);
}

/* Against libc's own calendar, for every day from 1900 to 2200. */
static void
test_period_bounds_match_libc_for_every_day(void **state)
{
    int64_t   start, end;
    struct tm tm;
    time_t    t;

    (void)state;
    for (int64_t day = -25567; day < 84000; day++) {
        int64_t now = day * DAY + ((day % 86400 + 86400) % 86400) * SEC + 123;

        t = (time_t)(day * 86400);
        gmtime_r(&t, &tm);
        rl2_period_bounds(RL2_PERIOD_DAY, now, &start, &end);
        assert_int_equal(start, day * DAY);
        assert_int_equal(end, (day + 1) * DAY);
        rl2_period_bounds(RL2_PERIOD_MONTH, now, &start, &end);
        assert_int_equal(start,
                         utc(tm.tm_year + 1900, tm.tm_mon + 1, 1, 0, 0, 0));
        assert_int_equal(end, utc(tm.tm_year + 1900, tm.tm_mon + 2, 1, 0, 0,
                                  0)); /* timegm normalises 13 */
    }
}

/* ---- rl2_algo_params_check --------------------------------------------- */

static rl2_status_t
params_status(rl2_algo_t algo, int64_t limit, int64_t window_us, int64_t burst,
              rl2_period_t period, rl2_err_t *err)
{
    rl2_algo_params_t p = { algo, limit, window_us, burst, period };

    memset(err->msg, 0, sizeof(err->msg));
    return rl2_algo_params_check(&p, err);
}

/* Refused with `status`, and a plain message that names `word`. */
static void
assert_refused(rl2_algo_t algo, int64_t limit, int64_t window_us, int64_t burst,
               rl2_period_t period, rl2_status_t status, const char *word)
{
    rl2_err_t err;

    assert_int_equal(params_status(algo, limit, window_us, burst, period, &err),
                     status);
    if (strstr(err.msg, word) == NULL) {
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, word);
    }
    assert_true(err.msg[0] >= 'a' && err.msg[0] <= 'z'); /* no file:line */
}

static void
assert_accepted(rl2_algo_t algo, int64_t limit, int64_t window_us,
                int64_t burst, rl2_period_t period)
{
    rl2_err_t err;

    if (params_status(algo, limit, window_us, burst, period, &err) != RL2_OK) {
        fail_msg("refused: %s", err.msg);
    }
}

static void
test_params_check_refuses_limit_below_one(void **state)
{
    (void)state;
    for (int a = 0; a < RL2_ALGO_COUNT; a++) {
        rl2_algo_params_t p = cases[a].p;

        assert_refused(p.algo, 0, p.window_us, 0, p.period, RL2_ERR_CONFIG,
                       "at least 1");
        assert_refused(p.algo, -5, p.window_us, 0, p.period, RL2_ERR_CONFIG,
                       "at least 1");
        assert_accepted(p.algo, 1, p.window_us, 0, p.period);
    }
}

static void
test_params_check_burst_only_for_buckets(void **state)
{
    (void)state;
    assert_refused(RL2_ALGO_TOKEN_BUCKET, 10, SEC, -1, RL2_PERIOD_NONE,
                   RL2_ERR_CONFIG, "negative");
    assert_refused(RL2_ALGO_LEAKY_BUCKET, 10, SEC, -1, RL2_PERIOD_NONE,
                   RL2_ERR_CONFIG, "negative");
    assert_accepted(RL2_ALGO_TOKEN_BUCKET, 10, SEC, 50, RL2_PERIOD_NONE);
    assert_accepted(RL2_ALGO_LEAKY_BUCKET, 10, SEC, 1, RL2_PERIOD_NONE);
    for (int a = 0; a < RL2_ALGO_COUNT; a++) {
        rl2_algo_params_t p = cases[a].p;

        if (a != RL2_ALGO_TOKEN_BUCKET && a != RL2_ALGO_LEAKY_BUCKET) {
            assert_refused(p.algo, 10, p.window_us, 5, p.period, RL2_ERR_CONFIG,
                           "shorter limit");
        }
    }
}

static void
test_params_check_sliding_log_size_is_bounded(void **state)
{
    (void)state;
    assert_accepted(RL2_ALGO_SLIDING_LOG, RL2_SLIDING_LOG_MAX, SEC, 0,
                    RL2_PERIOD_NONE);
    assert_refused(RL2_ALGO_SLIDING_LOG, RL2_SLIDING_LOG_MAX + 1, SEC, 0,
                   RL2_PERIOD_NONE, RL2_ERR_CONFIG, "sliding_window");
}

static void
test_params_check_windows_and_periods(void **state)
{
    (void)state;
    for (int a = 0; a < RL2_ALGO_COUNT; a++) {
        if (a != RL2_ALGO_CONCURRENCY && a != RL2_ALGO_QUOTA) {
            assert_refused((rl2_algo_t)a, 10, 0, 0, RL2_PERIOD_NONE,
                           RL2_ERR_CONFIG, "window");
            assert_refused((rl2_algo_t)a, 10, -SEC, 0, RL2_PERIOD_NONE,
                           RL2_ERR_CONFIG, "window");
            assert_refused((rl2_algo_t)a, 10, SEC, 0, RL2_PERIOD_DAY,
                           RL2_ERR_CONFIG, "only to quota");
        }
    }
    assert_accepted(RL2_ALGO_CONCURRENCY, 3, 0, 0, RL2_PERIOD_NONE);
    assert_refused(RL2_ALGO_QUOTA, 10, 0, 0, RL2_PERIOD_NONE, RL2_ERR_CONFIG,
                   "per day or per month");
    assert_refused(RL2_ALGO_QUOTA, 10, HOUR, 0, RL2_PERIOD_DAY, RL2_ERR_CONFIG,
                   "window");
    assert_refused(RL2_ALGO_QUOTA, 10, DAY, 0, RL2_PERIOD_MONTH, RL2_ERR_CONFIG,
                   "window");
    assert_accepted(RL2_ALGO_QUOTA, 10, DAY, 0, RL2_PERIOD_DAY);
    assert_accepted(RL2_ALGO_QUOTA, 10, 0, 0, RL2_PERIOD_MONTH);
    assert_refused(RL2_ALGO_COUNT, 10, SEC, 0, RL2_PERIOD_NONE, RL2_ERR_CONFIG,
                   "unknown algorithm");
}

static void
test_params_check_refuses_bucket_finer_than_1us(void **state)
{
    (void)state;
    assert_accepted(RL2_ALGO_TOKEN_BUCKET, 1000000, SEC, 0, RL2_PERIOD_NONE);
    assert_refused(RL2_ALGO_TOKEN_BUCKET, 1000001, SEC, 0, RL2_PERIOD_NONE,
                   RL2_ERR_CONFIG, "1000001/1s");
    assert_refused(RL2_ALGO_LEAKY_BUCKET, 5, 4, 0, RL2_PERIOD_NONE,
                   RL2_ERR_CONFIG, "microsecond");
}

static void
test_params_check_refuses_64bit_overflow(void **state)
{
    const char *word = "overflows 64-bit arithmetic";

    (void)state;
    assert_refused(RL2_ALGO_SLIDING_WINDOW, INT64_C(10000000000000), SEC, 0,
                   RL2_PERIOD_NONE, RL2_ERR_RANGE,
                   "rate 10000000000000/1s overflows 64-bit arithmetic");
    assert_refused(RL2_ALGO_SLIDING_WINDOW, 1000, INT64_MAX / 1000, 0,
                   RL2_PERIOD_NONE, RL2_ERR_RANGE, word);
    assert_refused(RL2_ALGO_TOKEN_BUCKET, 1, INT64_MAX / 2, 0, RL2_PERIOD_NONE,
                   RL2_ERR_RANGE, word);
    assert_refused(RL2_ALGO_TOKEN_BUCKET, 10, SEC, INT64_C(1) << 50,
                   RL2_PERIOD_NONE, RL2_ERR_RANGE, "burst");
    assert_refused(RL2_ALGO_LEAKY_BUCKET, 10, INT64_MAX, 0, RL2_PERIOD_NONE,
                   RL2_ERR_RANGE, word);
    assert_refused(RL2_ALGO_FIXED_WINDOW, 10, INT64_MAX - 5, 0, RL2_PERIOD_NONE,
                   RL2_ERR_RANGE, word);
    assert_refused(RL2_ALGO_FIXED_WINDOW, INT64_MAX, SEC, 0, RL2_PERIOD_NONE,
                   RL2_ERR_RANGE, word);
    assert_refused(RL2_ALGO_SLIDING_LOG, 10, INT64_MAX - 5, 0, RL2_PERIOD_NONE,
                   RL2_ERR_RANGE, word);
    assert_refused(RL2_ALGO_CONCURRENCY, INT64_MAX, 0, 0, RL2_PERIOD_NONE,
                   RL2_ERR_RANGE, "in flight");
    assert_refused(RL2_ALGO_QUOTA, INT64_MAX, 0, 0, RL2_PERIOD_MONTH,
                   RL2_ERR_RANGE, "/month");
    /* the rates a real policy uses are nowhere near */
    assert_accepted(RL2_ALGO_SLIDING_WINDOW, 1000000, 7 * DAY, 0,
                    RL2_PERIOD_NONE);
    assert_accepted(RL2_ALGO_FIXED_WINDOW, INT64_C(1000000000000), HOUR, 0,
                    RL2_PERIOD_NONE);
}

/* Run accepted extreme parameters through every entry point at the edges of
 * time; the sanitizer build turns any overflow into a failure. */
static void
exercise_extreme(rl2_algo_params_t p, int64_t now)
{
    static int64_t    st[2 + RL2_SLIDING_LOG_MAX];
    int64_t           cap = p.burst > 0 ? p.burst : p.limit;
    rl2_algo_result_t r;

    memset(st, 0, sizeof(st));
    rl2_algo_check(&p, st, now, cap, &r);
    assert_true(r.allowed);
    rl2_algo_commit(&p, st, now, cap);
    rl2_algo_check(&p, st, now, 1, &r);
    assert_false(r.allowed);
    assert_true(r.retry_after_us > 0 && r.reset_us >= 0);
    rl2_algo_check(&p, st, now, cap, &r);
    assert_false(r.allowed);
    rl2_algo_check(&p, st, now + r.retry_after_us, cap, &r); /* < 2^62 */
    rl2_algo_refund(&p, st, now, now, cap);
    rl2_algo_check(&p, st, now, cap, &r);
    assert_true(r.allowed);
    rl2_algo_commit(&p, st, now, cap);
    rl2_algo_commit(&p, st, now, cap); /* unchecked: still safe */
    rl2_algo_check(&p, st, INT64_MAX, 1, &r);
    rl2_algo_check(&p, st, INT64_MIN, 1, &r);
    rl2_algo_check(&p, st, now, INT64_MAX, &r);
    assert_false(r.allowed);
    rl2_algo_refund(&p, st, INT64_MAX, INT64_MIN, INT64_MAX);
    rl2_algo_commit(&p, st, INT64_MAX, INT64_MAX);
    assert_true(rl2_algo_ttl_us(&p, now) >= 0);
    assert_true(rl2_algo_ttl_us(&p, INT64_MAX) >= 0);
}

static int
accepted(rl2_algo_params_t p)
{
    return rl2_algo_params_check(&p, NULL) == RL2_OK;
}

/* The largest value of *field (inside *p) that the check accepts, found by
 * binary search, or 0. */
static int64_t
largest_accepted(rl2_algo_params_t *p, int64_t *field)
{
    int64_t lo = 0, hi = INT64_MAX;

    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2 + 1;

        *field = mid;
        if (accepted(*p)) {
            lo = mid;
        }
        else {
            hi = mid - 1;
        }
    }
    *field = lo;
    return lo;
}

static void
test_accepted_extremes_never_overflow(void **state)
{
    const int64_t windows[] = {
        1, 1000, SEC, DAY, 100 * 365 * DAY, INT64_MAX / 8, INT64_MAX / 2
    };
    const int64_t nows[] = { 0, YEAR_2200, YEAR_2200 + 1234567 };

    (void)state;
    for (int a = 0; a < RL2_ALGO_COUNT; a++) {
        for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++) {
            rl2_algo_params_t p = cases[a].p;

            if (a != RL2_ALGO_CONCURRENCY && a != RL2_ALGO_QUOTA) {
                p.window_us = windows[w];
            }
            p.limit = largest_accepted(&p, &p.limit);
            if (p.limit == 0) {
                continue;
            }
            for (size_t n = 0; n < sizeof(nows) / sizeof(nows[0]); n++) {
                exercise_extreme(p, nows[n]);
            }
            if (a == RL2_ALGO_TOKEN_BUCKET || a == RL2_ALGO_LEAKY_BUCKET) {
                p.limit = 1;
                p.burst = largest_accepted(&p, &p.burst);
                if (p.burst > 0) {
                    exercise_extreme(p, YEAR_2200);
                }
            }
        }
    }
}

/* Shared memory may hold anything (another version, other parameters):
 * no byte pattern may crash, overflow or produce a nonsense answer. */
static void
test_garbage_state_is_harmless(void **state)
{
    static int64_t    st[2 + RL2_SLIDING_LOG_MAX];
    const int64_t     nows[] = { 0, BASE, WALL_BASE, YEAR_2200, INT64_MAX };
    const int         fills[] = { 0xff, 0x7f, 0x80, 0x01, -1 };
    uint64_t          seed = 3;
    rl2_algo_result_t r;

    (void)state;
    for (int a = 0; a < RL2_ALGO_COUNT; a++) {
        rl2_algo_params_t p = cases[a].p;

        for (size_t fi = 0; fi < sizeof(fills) / sizeof(fills[0]); fi++) {
            for (size_t ni = 0; ni < sizeof(nows) / sizeof(nows[0]); ni++) {
                if (fills[fi] >= 0) {
                    memset(st, fills[fi], sizeof(st));
                }
                else {
                    for (size_t k = 0; k < sizeof(st) / sizeof(st[0]); k++) {
                        st[k] = (int64_t)rng_next(&seed);
                    }
                }
                for (int64_t cost = 0; cost <= p.limit + 1; cost++) {
                    rl2_algo_check(&p, st, nows[ni], cost, &r);
                    assert_true(r.allowed == 0 || r.allowed == 1);
                    assert_true(r.remaining >= 0 && r.reset_us >= 0);
                    assert_true(r.allowed ? r.retry_after_us == 0
                                          : r.retry_after_us > 0);
                    if (r.allowed) {
                        rl2_algo_commit(&p, st, nows[ni], cost);
                    }
                }
                rl2_algo_refund(&p, st, nows[ni], nows[ni] - 1, 2);
                rl2_algo_commit(&p, st, nows[ni], p.limit);
                rl2_algo_check(&p, st, nows[ni], 1, &r);
                assert_true(r.remaining >= 0 && r.reset_us >= 0);
            }
        }
    }
}

/* ---- names and sizes --------------------------------------------------- */

static void
test_algo_names_round_trip(void **state)
{
    const char *names[] = { "token_bucket", "sliding_log",  "sliding_window",
                            "fixed_window", "leaky_bucket", "concurrency",
                            "quota" };

    (void)state;
    for (int a = 0; a < RL2_ALGO_COUNT; a++) {
        assert_string_equal(rl2_algo_name((rl2_algo_t)a), names[a]);
        assert_int_equal(rl2_algo_from_name(names[a]), a);
    }
    assert_int_equal(rl2_algo_from_name("gcra"), RL2_ALGO_COUNT);
    assert_int_equal(rl2_algo_from_name(""), RL2_ALGO_COUNT);
    assert_int_equal(rl2_algo_from_name(NULL), RL2_ALGO_COUNT);
    assert_string_equal(rl2_algo_name(RL2_ALGO_COUNT), "unknown");
}

static void
test_state_sizes_are_small_multiples_of_8(void **state)
{
    const size_t expect[RL2_ALGO_COUNT] = {
        [RL2_ALGO_TOKEN_BUCKET] = 8,    [RL2_ALGO_SLIDING_LOG] = 16 + 8 * 10,
        [RL2_ALGO_SLIDING_WINDOW] = 24, [RL2_ALGO_FIXED_WINDOW] = 16,
        [RL2_ALGO_LEAKY_BUCKET] = 16,   [RL2_ALGO_CONCURRENCY] = 8,
        [RL2_ALGO_QUOTA] = 16
    };

    (void)state;
    for (int a = 0; a < RL2_ALGO_COUNT; a++) {
        size_t size = rl2_algo_state_size(&cases[a].p);

        assert_int_equal(size, expect[a]);
        assert_int_equal(size % 8, 0);
    }
}

/* ---- registration ------------------------------------------------------ */

#define CASE(a) ((void *)&cases[a])
#define ONE(label, fn, a) \
    { \
        label, fn, NULL, NULL, CASE(a) \
    }
#define EACH_ALGO(fn, what) \
    ONE("token_bucket: " what, fn, RL2_ALGO_TOKEN_BUCKET), \
        ONE("sliding_log: " what, fn, RL2_ALGO_SLIDING_LOG), \
        ONE("sliding_window: " what, fn, RL2_ALGO_SLIDING_WINDOW), \
        ONE("fixed_window: " what, fn, RL2_ALGO_FIXED_WINDOW), \
        ONE("leaky_bucket: " what, fn, RL2_ALGO_LEAKY_BUCKET), \
        ONE("concurrency: " what, fn, RL2_ALGO_CONCURRENCY), \
        ONE("quota: " what, fn, RL2_ALGO_QUOTA)
#define BUCKETS(fn, what) \
    ONE("token_bucket: " what, fn, RL2_ALGO_TOKEN_BUCKET), \
        ONE("leaky_bucket: " what, fn, RL2_ALGO_LEAKY_BUCKET)

static const struct CMUnitTest tests[] = {
    EACH_ALGO(test_fresh_key_admits_exactly_limit_then_refuses,
              "fresh key admits exactly limit then refuses"),
    EACH_ALGO(test_zero_state_is_fresh_at_any_time,
              "zero state is fresh at any time"),
    EACH_ALGO(test_check_alone_never_changes_state,
              "check alone never changes state"),
    EACH_ALGO(test_retry_after_is_never_early, "retry_after is never early"),
    EACH_ALGO(test_full_limit_is_back_after_reset_us,
              "full limit is back after reset_us"),
    EACH_ALGO(test_clock_going_back_grants_nothing_extra,
              "clock going back grants nothing extra"),
    EACH_ALGO(test_cost_above_one_takes_that_many_units,
              "cost above one takes that many units"),
    EACH_ALGO(test_cost_above_capacity_never_fits,
              "cost above capacity never fits"),
    EACH_ALGO(test_refund_right_after_commit_restores_fresh,
              "refund right after commit restores fresh"),
    EACH_ALGO(test_refund_is_never_more_generous_than_no_request,
              "refund is never more generous than no request"),
    EACH_ALGO(test_state_is_fresh_again_after_ttl,
              "state is fresh again after ttl"),
    BUCKETS(test_bucket_refills_one_unit_per_interval,
            "refills one unit per interval"),
    BUCKETS(test_bucket_burst_admits_burst_then_steady_rate,
            "burst admits burst then steady rate"),
    BUCKETS(test_bucket_rounds_interval_up_never_over_admits,
            "rounds interval up, never over-admits"),
    cmocka_unit_test(test_leaky_bucket_answers_like_token_bucket),
    cmocka_unit_test(test_leaky_bucket_clock_going_back_drains_nothing),
    cmocka_unit_test(test_token_bucket_late_refund_is_not_generous),
    cmocka_unit_test(test_fixed_window_resets_exactly_at_aligned_boundary),
    cmocka_unit_test(test_fixed_window_refund_only_in_same_window),
    cmocka_unit_test(test_sliding_window_weighs_previous_window),
    cmocka_unit_test(test_sliding_window_matches_weighted_estimate),
    cmocka_unit_test(test_sliding_window_refund_reaches_previous_window),
    cmocka_unit_test(test_sliding_log_matches_exact_oracle),
    cmocka_unit_test(test_sliding_log_refund_removes_entries_of_that_time),
    cmocka_unit_test(test_sliding_log_keeps_future_entries_counted),
    cmocka_unit_test(test_sliding_log_at_max_limit_wraps_its_ring),
    cmocka_unit_test(test_concurrency_refund_releases_slots),
    cmocka_unit_test(test_concurrency_refund_never_goes_below_zero),
    cmocka_unit_test(test_quota_day_rolls_over_at_midnight_utc),
    cmocka_unit_test(test_quota_month_rolls_over_at_month_end),
    cmocka_unit_test(test_quota_keeps_stored_period_when_clock_goes_back),
    cmocka_unit_test(test_quota_refund_only_in_same_period),
    cmocka_unit_test(test_period_bounds_match_libc_for_every_day),
    cmocka_unit_test(test_params_check_refuses_limit_below_one),
    cmocka_unit_test(test_params_check_burst_only_for_buckets),
    cmocka_unit_test(test_params_check_sliding_log_size_is_bounded),
    cmocka_unit_test(test_params_check_windows_and_periods),
    cmocka_unit_test(test_params_check_refuses_bucket_finer_than_1us),
    cmocka_unit_test(test_params_check_refuses_64bit_overflow),
    cmocka_unit_test(test_accepted_extremes_never_overflow),
    cmocka_unit_test(test_garbage_state_is_harmless),
    cmocka_unit_test(test_algo_names_round_trip),
    cmocka_unit_test(test_state_sizes_are_small_multiples_of_8),
};

int
main(void)
{
    return cmocka_run_group_tests(tests, NULL, NULL);
}
