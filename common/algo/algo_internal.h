/*
 * algo_internal.h -- what the algorithm files share (private to the core).
 *
 * Owns: the units and bounds the arithmetic is proven for, the private
 * layout of every algorithm's state blob, the small integer helpers every
 * algorithm uses, and the check/commit/refund entry points that algo.c's
 * dispatch table names.
 *
 *   algo.c           dispatch, names, parameter checks, TTLs
 *   bucket.c         token_bucket (GCRA) and leaky_bucket
 *   window.c         fixed_window, quota, sliding_window, sliding_log,
 *                    concurrency
 *   calendar.c       UTC calendar periods (rl2_period_bounds)
 *   grant.c          the slice a lease takes (lease mode)
 *   algo_internal.h  this file; also the entry points the stores and the
 *                    loader call (check, commit, refund, TTL, sizes),
 *                    which libratelimit2-dev does not export
 *
 * The helpers are static inline because they run on every check: across
 * files, a plain function would add a call where there was none.  The Redis
 * Lua scripts implement the same arithmetic and must stay in step with
 * these files.
 *
 * State blobs live in shared memory that outlives a reload and may have
 * been written under other parameters, so every value read from a blob is
 * clamped to the range the algorithms could have written under the current
 * parameters, "now" is clamped to [0, NOW_MAX], and cost to [0, capacity].
 * With parameters that passed rl2_algo_params_check() no expression in the
 * algorithms can overflow, whatever bytes the blob holds.
 */
#ifndef RL2_ALGO_INTERNAL_H
#define RL2_ALGO_INTERNAL_H

#include <stdint.h>

#include "ratelimit2/algo.h"

/* ---- beside ratelimit2/algo.h (not installed) ---- */

/* Validate parameters at load time: limit >= 1, windows > 0, burst rules,
 * sliding_log size, and that no arithmetic the algorithm will do on them
 * (including with "now" up to year 2200 in µs and cost up to limit) can
 * overflow int64.  On failure writes a message (without file:line; the
 * caller adds it) and returns RL2_ERR_RANGE or RL2_ERR_CONFIG. */
rl2_status_t rl2_algo_params_check(const rl2_algo_params_t *p, rl2_err_t *err);

/* Bytes of state one key needs for these parameters (a multiple of 8). */
size_t rl2_algo_state_size(const rl2_algo_params_t *p);

/* Would a request of `cost` units fit now?  Does not modify state. */
void rl2_algo_check(const rl2_algo_params_t *p, const void *state,
                    int64_t now_us, int64_t cost, rl2_algo_result_t *out);

/* Record a request of `cost` units that rl2_algo_check() allowed. */
void rl2_algo_commit(const rl2_algo_params_t *p, void *state, int64_t now_us,
                     int64_t cost);

/* Take back `cost` units committed at `committed_us` (the now_us that was
 * passed to rl2_algo_commit).  Never makes the state more generous than if
 * the request had not been made. */
void rl2_algo_refund(const rl2_algo_params_t *p, void *state, int64_t now_us,
                     int64_t committed_us, int64_t cost);

/* How long a key's state must be kept after its last commit at now_us
 * before it is equivalent to a fresh (all zero) state, in µs.  Used by
 * stores for expiry.  For quota: until the end of the current period. */
int64_t rl2_algo_ttl_us(const rl2_algo_params_t *p, int64_t now_us);

/* ---- leases (grant.c) ---- */

/* Whether units of this limit may be counted when a lease takes them and
 * used later: token and leaky bucket, fixed and sliding window, quota. */
int rl2_algo_leasable(const rl2_algo_params_t *p);

/* What a lease asks for one key. */
typedef struct {
    int64_t cost;       /* units of the request that asks, >= 1 */
    int64_t want;       /* units wanted (raised to cost); 0: none, the
                           ask only gives back */
    int64_t back;       /* unused units of the last slice, 0: none */
    int64_t back_at_us; /* the now_us at which that slice was granted */
} rl2_grant_ask_t;

/* A slice has no horizon but the lease time (buckets). */
#define RL2_GRANT_NO_HORIZON INT64_C(-1)

/* Take back ask->back, then grant min(want, free, max(cost,
 * ceil(free / 4))) units, committed at now_us, where free is what a
 * request could take now.  Returns the units granted, and *out the check
 * of cost 0 after the grant; or 0 when fewer than cost are free, and *out
 * the refusal of a request of cost (want 0: 0, and *out the check of cost
 * 0 after the return).  *horizon_us: how long the slice may be used (the
 * span's or window's end), or RL2_GRANT_NO_HORIZON.  The Lua
 * twin is RL2_LUA_GRANT (redis_lua.c). */
int64_t rl2_algo_grant(const rl2_algo_params_t *p, void *state, int64_t now_us,
                       const rl2_grant_ask_t *ask, rl2_algo_result_t *out,
                       int64_t *horizon_us);

/* Start of the calendar period (UTC) that contains wall time now_us, and the
 * start of the next one, in µs since the epoch. */
void rl2_period_bounds(rl2_period_t period, int64_t now_us, int64_t *start_us,
                       int64_t *end_us);

#define US_PER_DAY (INT64_C(86400) * RL2_US_PER_S)

/* Latest time the arithmetic is proven for: 2^53 µs after the epoch, in the
 * year 2255, beyond the year-2200 promise of algo.h.  Monotonic clocks are
 * far below it. */
#define NOW_MAX (INT64_C(1) << 53)

/* Every limit, and every stored count, stays below this, so a count plus a
 * cost (at most the limit) never overflows. */
#define COUNT_MAX (INT64_MAX / 4)

/* ---- integer helpers ---- */

static inline int64_t
rl2_min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static inline int64_t
rl2_max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static inline int64_t
rl2_clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Division rounding down (b > 0); C's rounds towards zero, which would put a
 * negative time into the window after its own. */
static inline int64_t
rl2_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (a % b < 0) ? q - 1 : q;
}

static inline void
rl2_result_set(rl2_algo_result_t *out, int allowed, int64_t limit,
               int64_t remaining, int64_t reset_us, int64_t retry_us)
{
    out->allowed = allowed;
    out->limit = limit;
    out->remaining = rl2_max64(remaining, 0);
    out->reset_us = rl2_max64(reset_us, 0);
    out->retry_after_us = allowed ? 0 : rl2_max64(retry_us, 1);
}

/* ---- token_bucket and leaky_bucket (bucket.c) ---- */

typedef struct {
    int64_t t_us;   /* emission interval, µs per unit */
    int64_t cap;    /* capacity: burst, or limit when burst is 0; units */
    int64_t cap_us; /* cap * t_us: the largest debt that is admitted, µs */
} bucket_t;

/* T = ceil(window / limit): see bucket.c for why it rounds up. */
static inline bucket_t
rl2_bucket_of(const rl2_algo_params_t *p)
{
    bucket_t b;

    b.t_us = p->window_us / p->limit + (p->window_us % p->limit != 0);
    b.cap = p->burst > 0 ? p->burst : p->limit;
    b.cap_us = b.cap * b.t_us;
    return b;
}

typedef struct {
    int64_t tat_us; /* theoretical arrival time: when the bucket is full
                       again, µs; 0 (fresh) is never in the future */
} tb_state_t;

typedef struct {
    int64_t level_us; /* queued work: µs of drain at one unit per T */
    int64_t last_us;  /* when level_us was measured */
} lb_state_t;

/* ---- the window algorithms (window.c) ---- */

/* fixed_window and quota: one counter per aligned span. */
typedef struct {
    int64_t start_us; /* start of the span counted in, µs */
    int64_t count;    /* units admitted in it */
} span_state_t;

/* fixed_window spans are the multiples of window_us on the monotonic clock;
 * quota spans are UTC calendar days or months of wall time. */
static inline void
rl2_span_bounds(const rl2_algo_params_t *p, int64_t t, int64_t *start,
                int64_t *end)
{
    if (p->algo == RL2_ALGO_QUOTA) {
        rl2_period_bounds(p->period, t, start, end);
    }
    else {
        *start = rl2_floor_div(t, p->window_us) * p->window_us;
        *end = *start + p->window_us;
    }
}

/* sliding_window: two fixed windows, the previous one weighted. */
typedef struct {
    int64_t start_us; /* start of the current window, µs */
    int64_t cur;      /* units admitted in the current window */
    int64_t prev;     /* units admitted in the window before it */
} sw_state_t;

/* sliding_log: a ring of timestamps, one per admitted unit. */
typedef struct {
    int64_t head;  /* ring index of the oldest entry */
    int64_t count; /* entries in use */
    int64_t ts[];  /* the ring: admission times, µs */
} sl_state_t;

/* Entries in the ring, whatever the parameters. */
static inline int64_t
rl2_sl_cap(const rl2_algo_params_t *p)
{
    return rl2_clamp64(p->limit, 1, RL2_SLIDING_LOG_MAX);
}

/* concurrency: units in flight. */
typedef struct {
    int64_t count; /* units admitted and not yet released */
} cc_state_t;

_Static_assert(sizeof(tb_state_t) % 8 == 0 && sizeof(lb_state_t) % 8 == 0
                   && sizeof(span_state_t) % 8 == 0
                   && sizeof(sw_state_t) % 8 == 0 && sizeof(sl_state_t) % 8 == 0
                   && sizeof(cc_state_t) % 8 == 0,
               "state sizes are multiples of 8");

/* ---- the entry points of the dispatch table ----
 *
 * Called by algo.c only, with usable parameters, now and committed_us in
 * [0, NOW_MAX] and cost in [0, capacity]. */

/* token_bucket (bucket.c) */
void rl2_tb_check(const rl2_algo_params_t *p, const void *state, int64_t now,
                  int64_t cost, rl2_algo_result_t *out);
void rl2_tb_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t cost);
void rl2_tb_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t committed_us, int64_t cost);

/* leaky_bucket (bucket.c) */
void rl2_lb_check(const rl2_algo_params_t *p, const void *state, int64_t now,
                  int64_t cost, rl2_algo_result_t *out);
void rl2_lb_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t cost);
void rl2_lb_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t committed_us, int64_t cost);

/* fixed_window and quota (window.c) */
void rl2_span_check(const rl2_algo_params_t *p, const void *state, int64_t now,
                    int64_t cost, rl2_algo_result_t *out);
void rl2_span_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                     int64_t cost);
void rl2_span_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                     int64_t committed_us, int64_t cost);

/* sliding_window (window.c) */
void rl2_sw_check(const rl2_algo_params_t *p, const void *state, int64_t now,
                  int64_t cost, rl2_algo_result_t *out);
void rl2_sw_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t cost);
void rl2_sw_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t committed_us, int64_t cost);

/* sliding_log (window.c) */
void rl2_sl_check(const rl2_algo_params_t *p, const void *state, int64_t now,
                  int64_t cost, rl2_algo_result_t *out);
void rl2_sl_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t cost);
void rl2_sl_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t committed_us, int64_t cost);

/* concurrency (window.c) */
void rl2_cc_check(const rl2_algo_params_t *p, const void *state, int64_t now,
                  int64_t cost, rl2_algo_result_t *out);
void rl2_cc_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t cost);
void rl2_cc_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                   int64_t committed_us, int64_t cost);

/* Integers the Lua of the Redis store (doubles, exact below 2^53)
 * computes exactly, with room for its intermediate products: every
 * limit, window, burst and cost stays below it, in both stores. */
#define RL2_ALGO_EXACT (INT64_C(1) << 50)

/* Are p's values within RL2_ALGO_EXACT, so both stores agree? */
int rl2_algo_params_exact(const rl2_algo_params_t *p);

#endif
