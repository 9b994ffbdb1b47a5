/*
 * bucket.c -- token_bucket (GCRA) and leaky_bucket.
 *
 * Owns the decision, commit and refund arithmetic of the two buckets; their
 * state layouts and rl2_bucket_of() are in algo_internal.h, which algo.c also
 * reads for state sizes and TTLs.
 *
 * Both admit `cap` units at once, then one unit per emission interval
 * T = ceil(window / limit).  Rounding T up keeps the long-run rate at or
 * below limit per window, never above; the error is under one part in T
 * (rates finer than one unit per µs, where T would be 1 and the error
 * unbounded, are refused by the params check).  Both reduce to a "debt": the
 * µs of drain still owed, 0 when the bucket is full, so their observable
 * behaviour is the same while their states differ.
 */
#include "algo_internal.h"

static void
rl2_bucket_decide(const bucket_t *b, int64_t debt_us, int64_t cost,
                  rl2_algo_result_t *out)
{
    int64_t after = debt_us + cost * b->t_us;

    if (after <= b->cap_us) {
        rl2_result_set(out, 1, b->cap, (b->cap_us - after) / b->t_us, after, 0);
    }
    else {
        /* the debt exceeds cap_us only after the clock went back */
        rl2_result_set(out, 0, b->cap,
                       rl2_max64(b->cap_us - debt_us, 0) / b->t_us, debt_us,
                       after - b->cap_us);
    }
}

/* How much debt a refund may forgive.  Commits made between the refunded
 * one and now may have been charged against idle time that the refunded
 * request had already used up; forgiving the whole cost * T would then be
 * more generous than if the request had never been made.  The idle time so
 * absorbed is at most now - committed (each of those commits happened in
 * between), so forgiving that much less is always safe, and exact for the
 * usual refund that follows its commit at once. */
static int64_t
rl2_bucket_refund_us(const bucket_t *b, int64_t now, int64_t committed_us,
                     int64_t cost)
{
    return rl2_max64(cost * b->t_us - rl2_max64(now - committed_us, 0), 0);
}

/* ---- token_bucket: a theoretical arrival time ---- */

/* A TAT more than cap_us past NOW_MAX was not written by this code. */
static int64_t
rl2_tb_tat(const bucket_t *b, const void *state)
{
    const tb_state_t *s = state;

    return rl2_clamp64(s->tat_us, 0, NOW_MAX + b->cap_us);
}

void
rl2_tb_check(const rl2_algo_params_t *p, const void *state, int64_t now,
             int64_t cost, rl2_algo_result_t *out)
{
    bucket_t b = rl2_bucket_of(p);

    /* A clock that went back sees a larger debt, never a smaller one. */
    rl2_bucket_decide(&b, rl2_max64(rl2_tb_tat(&b, state) - now, 0), cost, out);
}

void
rl2_tb_commit(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t cost)
{
    bucket_t    b = rl2_bucket_of(p);
    tb_state_t *s = state;

    s->tat_us = rl2_max64(rl2_tb_tat(&b, state), now) + cost * b.t_us;
}

void
rl2_tb_refund(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t committed_us, int64_t cost)
{
    bucket_t    b = rl2_bucket_of(p);
    tb_state_t *s = state;
    int64_t     tat = rl2_tb_tat(&b, state);
    int64_t     forgive = rl2_bucket_refund_us(&b, now, committed_us, cost);

    /* A TAT in the past already means "full"; lowering it further would
     * only favour a clock that later steps back. */
    s->tat_us = rl2_max64(tat - forgive, rl2_min64(tat, now));
}

/* ---- leaky_bucket: a level that drains ---- */

/* The level drained up to now; a now before last_us drains nothing. */
static int64_t
rl2_lb_level(const bucket_t *b, const void *state, int64_t now)
{
    const lb_state_t *s = state;
    int64_t           level = rl2_clamp64(s->level_us, 0, b->cap_us);
    int64_t           last = rl2_clamp64(s->last_us, 0, NOW_MAX);

    return rl2_max64(level - rl2_max64(now - last, 0), 0);
}

void
rl2_lb_check(const rl2_algo_params_t *p, const void *state, int64_t now,
             int64_t cost, rl2_algo_result_t *out)
{
    bucket_t b = rl2_bucket_of(p);

    rl2_bucket_decide(&b, rl2_lb_level(&b, state, now), cost, out);
}

void
rl2_lb_commit(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t cost)
{
    bucket_t    b = rl2_bucket_of(p);
    lb_state_t *s = state;
    int64_t     level = rl2_lb_level(&b, state, now);

    s->level_us = level + cost * b.t_us;
    s->last_us = rl2_max64(rl2_clamp64(s->last_us, 0, NOW_MAX), now);
}

void
rl2_lb_refund(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t committed_us, int64_t cost)
{
    bucket_t    b = rl2_bucket_of(p);
    lb_state_t *s = state;
    int64_t     level = rl2_lb_level(&b, state, now);

    s->level_us =
        rl2_max64(level - rl2_bucket_refund_us(&b, now, committed_us, cost), 0);
    s->last_us = rl2_max64(rl2_clamp64(s->last_us, 0, NOW_MAX), now);
}
