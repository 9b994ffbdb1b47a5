/*
 * algo.c -- the seven rate-limiting algorithms behind algo.h: dispatch,
 * names, parameter validation and TTLs.
 *
 * Owns the table that maps each algorithm to its state size and its check,
 * commit and refund (in bucket.c and window.c), the clamping of
 * every argument before it reaches them, the rules on which parameters an
 * algorithm takes, and the bounds that keep every expression of the
 * algorithms inside int64 (see algo_internal.h).  Everything is integer
 * microseconds and pure: no clock reads, no allocation, no floating point.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "algo_internal.h"

/* In-flight counts are kept this long after the key's last commit.  Releases
 * normally bring them back to zero; this bounds how long a count leaked by a
 * killed process locks a client out, at the price of forgetting requests
 * that run longer than this while no new one starts. */
#define CONCURRENCY_TTL_US (INT64_C(3600) * RL2_US_PER_S)

/* A request larger than the capacity can never fit, yet its refusal must
 * name a wait: the time until the key is fully reset, and at least this, so
 * a client does not retry in a tight loop. */
#define NEVER_FITS_RETRY_US RL2_US_PER_S

/* ---- dispatch ---- */
typedef void (*algo_check_fn)(const rl2_algo_params_t *, const void *, int64_t,
                              int64_t, rl2_algo_result_t *);
typedef void (*algo_commit_fn)(const rl2_algo_params_t *, void *, int64_t,
                               int64_t);
typedef void (*algo_refund_fn)(const rl2_algo_params_t *, void *, int64_t,
                               int64_t, int64_t);

typedef struct {
    const char    *name;
    size_t         state_size; /* fixed part; sliding_log adds its ring */
    algo_check_fn  check;
    algo_commit_fn commit;
    algo_refund_fn refund;
} algo_ops_t;

static const algo_ops_t algo_ops[RL2_ALGO_COUNT] = {
    [RL2_ALGO_TOKEN_BUCKET] = { "token_bucket", sizeof(tb_state_t),
                                rl2_tb_check, rl2_tb_commit, rl2_tb_refund },
    [RL2_ALGO_SLIDING_LOG] = { "sliding_log", sizeof(sl_state_t), rl2_sl_check,
                               rl2_sl_commit, rl2_sl_refund },
    [RL2_ALGO_SLIDING_WINDOW] = { "sliding_window", sizeof(sw_state_t),
                                  rl2_sw_check, rl2_sw_commit, rl2_sw_refund },
    [RL2_ALGO_FIXED_WINDOW] = { "fixed_window", sizeof(span_state_t),
                                rl2_span_check, rl2_span_commit,
                                rl2_span_refund },
    [RL2_ALGO_LEAKY_BUCKET] = { "leaky_bucket", sizeof(lb_state_t),
                                rl2_lb_check, rl2_lb_commit, rl2_lb_refund },
    [RL2_ALGO_CONCURRENCY] = { "concurrency", sizeof(cc_state_t), rl2_cc_check,
                               rl2_cc_commit, rl2_cc_refund },
    [RL2_ALGO_QUOTA] = { "quota", sizeof(span_state_t), rl2_span_check,
                         rl2_span_commit, rl2_span_refund },
};

static int
rl2_algo_known(rl2_algo_t algo)
{
    return (int)algo >= 0 && algo < RL2_ALGO_COUNT;
}

static int
rl2_algo_is_bucket(rl2_algo_t algo)
{
    return algo == RL2_ALGO_TOKEN_BUCKET || algo == RL2_ALGO_LEAKY_BUCKET;
}

static int
rl2_algo_is_windowed(rl2_algo_t algo)
{
    return algo != RL2_ALGO_CONCURRENCY && algo != RL2_ALGO_QUOTA;
}

/* Enough to run without dividing by zero or indexing out of the blob, for
 * parameters that never went through the params check. */
static int
rl2_params_usable(const rl2_algo_params_t *p)
{
    return rl2_algo_known(p->algo) && p->limit >= 1
           && (!rl2_algo_is_windowed(p->algo) || p->window_us >= 1);
}

/* The most units one request can ever take. */
static int64_t
rl2_algo_capacity(const rl2_algo_params_t *p)
{
    if (rl2_algo_is_bucket(p->algo) && p->burst > 0) {
        return p->burst;
    }
    return p->algo == RL2_ALGO_SLIDING_LOG ? rl2_sl_cap(p) : p->limit;
}

/* ---- parameters ---- */

/* "100/1h", "20/day", "3 in flight", "10/1s with burst 50": the rate as a
 * sysadmin would recognise it, for messages. */
static void
rl2_rate_str(const rl2_algo_params_t *p, char *buf, size_t size)
{
    static const struct {
        int64_t     us;
        const char *unit;
    } units[] = { { US_PER_DAY, "d" },
                  { 3600 * RL2_US_PER_S, "h" },
                  { 60 * RL2_US_PER_S, "min" },
                  { RL2_US_PER_S, "s" },
                  { 1000, "ms" },
                  { 1, "us" } };
    size_t i = 0;
    int    n;

    if (p->algo == RL2_ALGO_CONCURRENCY) {
        snprintf(buf, size, "%" PRId64 " in flight", p->limit);
        return;
    }
    if (p->algo == RL2_ALGO_QUOTA) {
        snprintf(buf, size, "%" PRId64 "/%s", p->limit,
                 p->period == RL2_PERIOD_MONTH ? "month" : "day");
        return;
    }
    while (p->window_us % units[i].us != 0) {
        i++;
    }
    n = snprintf(buf, size, "%" PRId64 "/%" PRId64 "%s", p->limit,
                 p->window_us / units[i].us, units[i].unit);
    if (p->burst > 0 && n > 0 && (size_t)n < size) {
        snprintf(buf + n, size - (size_t)n, " with burst %" PRId64, p->burst);
    }
}

/* Rules about which parameters belong to which algorithm. */
static rl2_status_t
rl2_check_shape(const rl2_algo_params_t *p, rl2_err_t *err)
{
    const char *name = rl2_algo_name(p->algo);

    if (!rl2_algo_known(p->algo)) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "unknown algorithm (%d)",
                           (int)p->algo);
    }
    if (p->limit < 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s limit must be at least "
                           "1, not %" PRId64,
                           name, p->limit);
    }
    if (p->burst < 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "burst must not be negative "
                           "(got %" PRId64 ")",
                           p->burst);
    }
    if (p->burst > 0 && !rl2_algo_is_bucket(p->algo)) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "burst applies only to "
                           "token_bucket and leaky_bucket; with %s add a "
                           "second, shorter limit instead",
                           name);
    }
    if (p->algo != RL2_ALGO_QUOTA && p->period != RL2_PERIOD_NONE) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "a calendar day or month "
                           "applies only to quota, not to %s",
                           name);
    }
    if (rl2_algo_is_windowed(p->algo) && p->window_us < 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s window must be longer "
                           "than zero",
                           name);
    }
    return RL2_OK;
}

/* Rules of one algorithm. */
static rl2_status_t
rl2_check_algo(const rl2_algo_params_t *p, rl2_err_t *err)
{
    char rate[96];

    if (p->algo == RL2_ALGO_QUOTA) {
        if (p->period != RL2_PERIOD_DAY && p->period != RL2_PERIOD_MONTH) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "quota needs a calendar "
                               "period: per day or per month");
        }
        /* The rate parser gives "20/day" a 24-hour window: that one agrees
         * with the period; any other window would be silently ignored. */
        if (p->window_us != 0
            && !(p->period == RL2_PERIOD_DAY && p->window_us == US_PER_DAY)) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "quota counts per "
                               "calendar day or month and takes no other "
                               "window");
        }
    }
    if (p->algo == RL2_ALGO_SLIDING_LOG && p->limit > RL2_SLIDING_LOG_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "sliding_log keeps one "
                           "timestamp per unit and allows at most %d per "
                           "window, not %" PRId64 "; use sliding_window for "
                           "larger limits",
                           RL2_SLIDING_LOG_MAX, p->limit);
    }
    if (rl2_algo_is_bucket(p->algo) && p->limit > p->window_us) {
        rl2_rate_str(p, rate, sizeof(rate));
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s rate %s is more than "
                           "one unit per microsecond, finer than a bucket "
                           "can drain; use a longer window or a window "
                           "algorithm",
                           rl2_algo_name(p->algo), rate);
    }
    return RL2_OK;
}

/* Whether the largest value each algorithm computes fits in int64, given
 * that its loaders clamp now to NOW_MAX, costs to the capacity and counts
 * to the limit. */
static int
rl2_range_fits(const rl2_algo_params_t *p)
{
    int64_t t, x, w = p->window_us;

    if (p->limit > COUNT_MAX || p->burst > COUNT_MAX) {
        return 0;
    }
    switch (p->algo) {
    case RL2_ALGO_TOKEN_BUCKET:
    case RL2_ALGO_LEAKY_BUCKET:
        /* a TAT up to NOW_MAX + cap * T, plus a cost of up to cap units */
        t = w / p->limit + (w % p->limit != 0);
        return !__builtin_mul_overflow(rl2_algo_capacity(p), t, &x)
               && !__builtin_mul_overflow(x, 2, &x)
               && !__builtin_add_overflow(x, NOW_MAX, &x);
    case RL2_ALGO_SLIDING_WINDOW:
        /* prev * (W - e) + (cur + cost) * W, and the end of next window */
        return !__builtin_mul_overflow(p->limit, w, &x)
               && !__builtin_mul_overflow(x, 3, &x)
               && !__builtin_mul_overflow(w, 2, &x)
               && !__builtin_add_overflow(x, NOW_MAX, &x);
    case RL2_ALGO_FIXED_WINDOW:
    case RL2_ALGO_SLIDING_LOG:
        /* a window end, or an entry's expiry: NOW_MAX + W */
        return !__builtin_add_overflow(w, NOW_MAX, &x);
    default:
        return 1;
    }
}

int
rl2_algo_params_exact(const rl2_algo_params_t *p)
{
    int64_t t;

    if (p->limit >= RL2_ALGO_EXACT || p->window_us >= RL2_ALGO_EXACT
        || p->burst >= RL2_ALGO_EXACT) {
        return 0;
    }
    if (p->algo != RL2_ALGO_TOKEN_BUCKET && p->algo != RL2_ALGO_LEAKY_BUCKET) {
        return 1;
    }
    /* the capacity in µs, as rl2_bucket_of() computes it */
    t = p->window_us / p->limit + (p->window_us % p->limit != 0);
    return (p->burst > 0 ? p->burst : p->limit) <= RL2_ALGO_EXACT / t;
}

rl2_status_t
rl2_algo_params_check(const rl2_algo_params_t *p, rl2_err_t *err)
{
    char         rate[96];
    rl2_status_t st;

    if ((st = rl2_check_shape(p, err)) != RL2_OK
        || (st = rl2_check_algo(p, err)) != RL2_OK) {
        return st;
    }
    if (rl2_range_fits(p)) {
        if (rl2_algo_params_exact(p)) {
            return RL2_OK;
        }
        /* The Redis scripts compute in Lua numbers (doubles): a value
         * the local store takes but Redis could not would pass configtest
         * and fail every request at run time. */
        rl2_rate_str(p, rate, sizeof(rate));
        return rl2_err_set(err, RL2_ERR_RANGE,
                           "%s rate %s is beyond what "
                           "every store computes exactly (2^50); use a "
                           "smaller %s",
                           rl2_algo_name(p->algo), rate,
                           p->burst > 0 ? "burst, limit or window"
                                        : "limit or window");
    }
    rl2_rate_str(p, rate, sizeof(rate));
    return rl2_err_set(err, RL2_ERR_RANGE,
                       "%s rate %s overflows 64-bit "
                       "arithmetic; use a smaller %s",
                       rl2_algo_name(p->algo), rate,
                       p->burst > 0 ? "burst, limit or window"
                       : rl2_algo_is_windowed(p->algo) ? "limit or window"
                                                       : "limit");
}

/* ---- the public entry points ---- */

size_t
rl2_algo_state_size(const rl2_algo_params_t *p)
{
    if (!rl2_algo_known(p->algo)) {
        return 0;
    }
    if (p->algo == RL2_ALGO_SLIDING_LOG) {
        return sizeof(sl_state_t) + (size_t)rl2_sl_cap(p) * sizeof(int64_t);
    }
    return algo_ops[p->algo].state_size;
}

void
rl2_algo_check(const rl2_algo_params_t *p, const void *state, int64_t now_us,
               int64_t cost, rl2_algo_result_t *out)
{
    const algo_ops_t *ops;

    if (!rl2_params_usable(p)) {
        rl2_result_set(out, 0, 0, 0, 0, NEVER_FITS_RETRY_US);
        return;
    }
    ops = &algo_ops[p->algo];
    now_us = rl2_clamp64(now_us, 0, NOW_MAX);
    cost = rl2_max64(cost, 0);
    if (cost <= rl2_algo_capacity(p)) {
        ops->check(p, state, now_us, cost, out);
        return;
    }
    /* Never fits: report the key as it stands. */
    ops->check(p, state, now_us, 0, out);
    out->allowed = 0;
    out->retry_after_us = rl2_max64(out->reset_us, NEVER_FITS_RETRY_US);
}

void
rl2_algo_commit(const rl2_algo_params_t *p, void *state, int64_t now_us,
                int64_t cost)
{
    if (rl2_params_usable(p)) {
        algo_ops[p->algo].commit(p, state, rl2_clamp64(now_us, 0, NOW_MAX),
                                 rl2_clamp64(cost, 0, rl2_algo_capacity(p)));
    }
}

void
rl2_algo_refund(const rl2_algo_params_t *p, void *state, int64_t now_us,
                int64_t committed_us, int64_t cost)
{
    if (rl2_params_usable(p)) {
        algo_ops[p->algo].refund(p, state, rl2_clamp64(now_us, 0, NOW_MAX),
                                 rl2_clamp64(committed_us, 0, NOW_MAX),
                                 rl2_clamp64(cost, 0, rl2_algo_capacity(p)));
    }
}

int64_t
rl2_algo_ttl_us(const rl2_algo_params_t *p, int64_t now_us)
{
    int64_t now = rl2_clamp64(now_us, 0, NOW_MAX);
    int64_t start, end;

    if (!rl2_params_usable(p)) {
        return 0;
    }
    switch (p->algo) {
    case RL2_ALGO_TOKEN_BUCKET:
    case RL2_ALGO_LEAKY_BUCKET:
        return rl2_bucket_of(p).cap_us;
    case RL2_ALGO_SLIDING_LOG:
        return p->window_us;
    case RL2_ALGO_SLIDING_WINDOW:
        /* this window's units still weigh during the next one */
        return rl2_floor_div(now, p->window_us) * p->window_us
               + 2 * p->window_us - now;
    case RL2_ALGO_CONCURRENCY:
        return CONCURRENCY_TTL_US;
    default:
        rl2_span_bounds(p, now, &start, &end);
        return end - now;
    }
}

const char *
rl2_algo_name(rl2_algo_t algo)
{
    return rl2_algo_known(algo) ? algo_ops[algo].name : "unknown";
}

rl2_algo_t
rl2_algo_from_name(const char *name)
{
    int a;

    for (a = 0; name != NULL && a < RL2_ALGO_COUNT; a++) {
        if (strcmp(name, algo_ops[a].name) == 0) {
            return (rl2_algo_t)a;
        }
    }
    return RL2_ALGO_COUNT;
}
