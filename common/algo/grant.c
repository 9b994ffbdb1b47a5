/*
 * grant.c -- the slice of a lease: how many units of a key's allowance a
 * server may take at once, counted as admitted when they are taken.
 *
 * Lease mode (redis/redis_lease.c) asks Redis for a slice; Redis answers
 * with the Lua twin of this file (redis_lua.c, RL2_LUA_GRANT), which must
 * stay its exact twin: the same history of asks and clocks gives the same
 * slices, remaining, reset, retry and horizon (tests/unit/test_redis_lua.c
 * compares them on random histories).
 *
 * A grant is a commit of `granted` units at now: every algorithm that can
 * be leased then holds the slice as admitted, so the slices handed out
 * never sum to more than what the limit had left, and the fleet never
 * admits more than N.  The unused units of the last slice come back first,
 * as a refund of what was committed at its grant (a refund never makes the
 * state more generous than if the units had not been taken).
 *
 * How much is granted:
 *     min(want, available, max(cost, ceil(available / 4)))
 * where available is what one request could take now (the remaining of a
 * check of cost 0).  The quarter keeps the end of a window for the other
 * servers: a server that stops asking strands at most what it was given,
 * and near the end that is little.  Less than `cost` is no grant at all:
 * the request is refused as a check of `cost` refuses it.
 *
 * The horizon is how long a slice may be used.  A fixed window's or a
 * quota's units belong to their span, a sliding window's to its current
 * window: used later they would count in a window that did not count
 * them.  A bucket's slice has no horizon but the lease time (a slice used
 * up to a lease time after its grant shifts admissions by at most that:
 * see docs/algorithms.md).
 */
#include "algo_internal.h"

/* Only these keep their promise when units are counted at the grant and
 * used until the horizon: a sliding log would count each unit at the
 * grant and forget it a window later, while a unit used at the end of a
 * lease weighs a window from then. */
int
rl2_algo_leasable(const rl2_algo_params_t *p)
{
    switch (p->algo) {
    case RL2_ALGO_TOKEN_BUCKET:
    case RL2_ALGO_LEAKY_BUCKET:
    case RL2_ALGO_FIXED_WINDOW:
    case RL2_ALGO_SLIDING_WINDOW:
    case RL2_ALGO_QUOTA:
        return 1;
    default:
        return 0;
    }
}

static int64_t
rl2_grant_horizon(const rl2_algo_params_t *p, const rl2_algo_result_t *after,
                  int64_t now_us)
{
    switch (p->algo) {
    case RL2_ALGO_FIXED_WINDOW:
    case RL2_ALGO_QUOTA:
        return after->reset_us; /* the span's end: it holds units now */
    case RL2_ALGO_SLIDING_WINDOW:
        return (rl2_floor_div(now_us, p->window_us) + 1) * p->window_us
               - now_us;
    default:
        return RL2_GRANT_NO_HORIZON;
    }
}

int64_t
rl2_algo_grant(const rl2_algo_params_t *p, void *state, int64_t now_us,
               const rl2_grant_ask_t *ask, rl2_algo_result_t *out,
               int64_t *horizon_us)
{
    rl2_algo_result_t free_now;
    int64_t           now = rl2_clamp64(now_us, 0, NOW_MAX);
    int64_t           cost = rl2_max64(ask->cost, 1);
    int64_t           want = rl2_max64(ask->want, cost);
    int64_t           granted;

    *horizon_us = 0;
    if (ask->back > 0) {
        rl2_algo_refund(p, state, now, ask->back_at_us, ask->back);
    }
    rl2_algo_check(p, state, now, 0, &free_now);
    if (ask->want == 0) {
        *out = free_now; /* only giving back */
        return 0;
    }
    granted = rl2_min64(rl2_min64(want, free_now.remaining),
                        rl2_max64(cost, (free_now.remaining + 3) / 4));
    if (granted < cost) {
        /* Fewer units are free than one request takes: the check of its
         * cost refuses it, and says when it would fit. */
        rl2_algo_check(p, state, now, cost, out);
        return 0;
    }
    rl2_algo_commit(p, state, now, granted);
    rl2_algo_check(p, state, now, 0, out);
    *horizon_us = rl2_grant_horizon(p, out, now);
    return granted;
}
