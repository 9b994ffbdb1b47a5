/*
 * algo.c -- the seven rate-limiting algorithms behind algo.h.
 *
 * Owns: the private layout of every algorithm's state blob, the decision
 * arithmetic, parameter validation (including the bounds that keep every
 * expression here inside int64), and the UTC calendar arithmetic of quota
 * periods.  Everything is integer microseconds and pure: no clock reads, no
 * allocation, no floating point.  The Redis Lua scripts implement the same
 * arithmetic and must stay in step with this file.
 *
 * State blobs live in shared memory that outlives a reload and may have been
 * written under other parameters, so every value read from a blob is clamped
 * to the range this file could have written under the current parameters,
 * "now" is clamped to [0, NOW_MAX], and cost to [0, capacity].  With
 * parameters that passed rl2_algo_params_check() no expression below can
 * overflow, whatever bytes the blob holds.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit2/algo.h"

#define US_PER_S   INT64_C(1000000)
#define US_PER_DAY (INT64_C(86400) * US_PER_S)

/* Latest time the arithmetic is proven for: 2^53 µs after the epoch, in the
 * year 2255, beyond the year-2200 promise of algo.h.  Monotonic clocks are
 * far below it. */
#define NOW_MAX (INT64_C(1) << 53)

/* Every limit, and every stored count, stays below this, so a count plus a
 * cost (at most the limit) never overflows. */
#define COUNT_MAX (INT64_MAX / 4)

/* A refused concurrency request cannot know when a slot frees up (at the end
 * of somebody else's request): one second is an honest guess. */
#define CONCURRENCY_RETRY_US US_PER_S

/* In-flight counts are kept this long after the key's last commit.  Releases
 * normally bring them back to zero; this bounds how long a count leaked by a
 * killed process locks a client out, at the price of forgetting requests
 * that run longer than this while no new one starts. */
#define CONCURRENCY_TTL_US (INT64_C(3600) * US_PER_S)

/* A request larger than the capacity can never fit, yet its refusal must
 * name a wait: the time until the key is fully reset, and at least this, so
 * a client does not retry in a tight loop. */
#define NEVER_FITS_RETRY_US US_PER_S

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Division rounding down (b > 0); C's rounds towards zero, which would put a
 * negative time into the window after its own. */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (a % b < 0) ? q - 1 : q;
}

static void result_set(rl2_algo_result_t *out, int allowed, int64_t limit,
                       int64_t remaining, int64_t reset_us,
                       int64_t retry_us)
{
    out->allowed = allowed;
    out->limit = limit;
    out->remaining = max64(remaining, 0);
    out->reset_us = max64(reset_us, 0);
    out->retry_after_us = allowed ? 0 : max64(retry_us, 1);
}

/* Counter algorithms: `count` units already taken out of `limit`. */
static void counter_decide(int64_t limit, int64_t count, int64_t cost,
                           int64_t reset_us, int64_t retry_us,
                           rl2_algo_result_t *out)
{
    if (count + cost <= limit) {
        result_set(out, 1, limit, limit - count - cost,
                   count + cost > 0 ? reset_us : 0, 0);
    }
    else {
        result_set(out, 0, limit, limit - count, reset_us, retry_us);
    }
}

/* ---- token_bucket (GCRA) and leaky_bucket ----
 *
 * Both admit `cap` units at once, then one unit per emission interval
 * T = ceil(window / limit).  Rounding T up keeps the long-run rate at or
 * below limit per window, never above; the error is under one part in T
 * (rates finer than one unit per µs, where T would be 1 and the error
 * unbounded, are refused by the params check).  Both reduce to a "debt": the
 * µs of drain still owed, 0 when the bucket is full, so their observable
 * behaviour is the same while their states differ. */
typedef struct {
    int64_t t_us;   /* emission interval, µs per unit */
    int64_t cap;    /* capacity: burst, or limit when burst is 0; units */
    int64_t cap_us; /* cap * t_us: the largest debt that is admitted, µs */
} bucket_t;

static bucket_t bucket_of(const rl2_algo_params_t *p)
{
    bucket_t b;

    b.t_us = p->window_us / p->limit + (p->window_us % p->limit != 0);
    b.cap = p->burst > 0 ? p->burst : p->limit;
    b.cap_us = b.cap * b.t_us;
    return b;
}

static void bucket_decide(const bucket_t *b, int64_t debt_us, int64_t cost,
                          rl2_algo_result_t *out)
{
    int64_t after = debt_us + cost * b->t_us;

    if (after <= b->cap_us) {
        result_set(out, 1, b->cap, (b->cap_us - after) / b->t_us, after, 0);
    }
    else {
        /* the debt exceeds cap_us only after the clock went back */
        result_set(out, 0, b->cap, max64(b->cap_us - debt_us, 0) / b->t_us,
                   debt_us, after - b->cap_us);
    }
}

/* How much debt a refund may forgive.  Commits made between the refunded
 * one and now may have been charged against idle time that the refunded
 * request had already used up; forgiving the whole cost * T would then be
 * more generous than if the request had never been made.  The idle time so
 * absorbed is at most now - committed (each of those commits happened in
 * between), so forgiving that much less is always safe, and exact for the
 * usual refund that follows its commit at once. */
static int64_t bucket_refund_us(const bucket_t *b, int64_t now,
                                int64_t committed_us, int64_t cost)
{
    return max64(cost * b->t_us - max64(now - committed_us, 0), 0);
}

typedef struct {
    int64_t tat_us; /* theoretical arrival time: when the bucket is full
                       again, µs; 0 (fresh) is never in the future */
} tb_state_t;

/* A TAT more than cap_us past NOW_MAX was not written by this code. */
static int64_t tb_tat(const bucket_t *b, const void *state)
{
    const tb_state_t *s = state;

    return clamp64(s->tat_us, 0, NOW_MAX + b->cap_us);
}

static void tb_check(const rl2_algo_params_t *p, const void *state,
                     int64_t now, int64_t cost, rl2_algo_result_t *out)
{
    bucket_t b = bucket_of(p);

    /* A clock that went back sees a larger debt, never a smaller one. */
    bucket_decide(&b, max64(tb_tat(&b, state) - now, 0), cost, out);
}

static void tb_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t cost)
{
    bucket_t b = bucket_of(p);
    tb_state_t *s = state;

    s->tat_us = max64(tb_tat(&b, state), now) + cost * b.t_us;
}

static void tb_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t committed_us, int64_t cost)
{
    bucket_t b = bucket_of(p);
    tb_state_t *s = state;
    int64_t tat = tb_tat(&b, state);
    int64_t forgive = bucket_refund_us(&b, now, committed_us, cost);

    /* A TAT in the past already means "full"; lowering it further would
     * only favour a clock that later steps back. */
    s->tat_us = max64(tat - forgive, min64(tat, now));
}

typedef struct {
    int64_t level_us; /* queued work: µs of drain at one unit per T */
    int64_t last_us;  /* when level_us was measured */
} lb_state_t;

/* The level drained up to now; a now before last_us drains nothing. */
static int64_t lb_level(const bucket_t *b, const void *state, int64_t now)
{
    const lb_state_t *s = state;
    int64_t level = clamp64(s->level_us, 0, b->cap_us);
    int64_t last = clamp64(s->last_us, 0, NOW_MAX);

    return max64(level - max64(now - last, 0), 0);
}

static void lb_check(const rl2_algo_params_t *p, const void *state,
                     int64_t now, int64_t cost, rl2_algo_result_t *out)
{
    bucket_t b = bucket_of(p);

    bucket_decide(&b, lb_level(&b, state, now), cost, out);
}

static void lb_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t cost)
{
    bucket_t b = bucket_of(p);
    lb_state_t *s = state;
    int64_t level = lb_level(&b, state, now);

    s->level_us = level + cost * b.t_us;
    s->last_us = max64(clamp64(s->last_us, 0, NOW_MAX), now);
}

static void lb_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t committed_us, int64_t cost)
{
    bucket_t b = bucket_of(p);
    lb_state_t *s = state;
    int64_t level = lb_level(&b, state, now);

    s->level_us = max64(level - bucket_refund_us(&b, now, committed_us, cost),
                        0);
    s->last_us = max64(clamp64(s->last_us, 0, NOW_MAX), now);
}

/* ---- fixed_window and quota: one counter per aligned span ----
 *
 * fixed_window spans are the multiples of window_us on the monotonic clock;
 * quota spans are UTC calendar days or months of wall time. */
typedef struct {
    int64_t start_us; /* start of the span counted in, µs */
    int64_t count;    /* units admitted in it */
} span_state_t;

typedef struct {
    int64_t start, end, count;
} span_view_t;

static void span_bounds(const rl2_algo_params_t *p, int64_t t,
                        int64_t *start, int64_t *end)
{
    if (p->algo == RL2_ALGO_QUOTA) {
        rl2_period_bounds(p->period, t, start, end);
    }
    else {
        *start = floor_div(t, p->window_us) * p->window_us;
        *end = *start + p->window_us;
    }
}

/* The span a request at now counts in.  A now before the stored span (the
 * clock went back) keeps counting in the stored span: it never resets. */
static span_view_t span_view(const rl2_algo_params_t *p, const void *state,
                             int64_t now)
{
    const span_state_t *s = state;
    int64_t stored = clamp64(s->start_us, 0, NOW_MAX);
    span_view_t v;

    span_bounds(p, now, &v.start, &v.end);
    if (v.start > stored) {
        v.count = 0;
    }
    else {
        span_bounds(p, stored, &v.start, &v.end);
        v.count = clamp64(s->count, 0, p->limit);
    }
    return v;
}

static void span_check(const rl2_algo_params_t *p, const void *state,
                       int64_t now, int64_t cost, rl2_algo_result_t *out)
{
    span_view_t v = span_view(p, state, now);

    counter_decide(p->limit, v.count, cost, v.end - now, v.end - now, out);
}

static void span_commit(const rl2_algo_params_t *p, void *state,
                        int64_t now, int64_t cost)
{
    span_state_t *s = state;
    span_view_t v = span_view(p, state, now);

    s->start_us = v.start;
    s->count = v.count + cost;
}

/* Only a refund into the span still stored is exact; once the span has
 * rolled over, the request no longer counts anyway. */
static void span_refund(const rl2_algo_params_t *p, void *state,
                        int64_t now, int64_t committed_us, int64_t cost)
{
    span_state_t *s = state;
    int64_t start, end;

    (void)now;
    span_bounds(p, committed_us, &start, &end);
    if (start == clamp64(s->start_us, 0, NOW_MAX)) {
        s->count = max64(clamp64(s->count, 0, p->limit) - cost, 0);
    }
}

/* ---- sliding_window: two fixed windows, the previous one weighted ----
 *
 * estimate = prev * (W - elapsed) / W + cur, compared scaled by W so that
 * it stays in integers: prev * (W - elapsed) + (cur + cost) * W is at most
 * 3 * limit * W, which the params check bounds. */
typedef struct {
    int64_t start_us; /* start of the current window, µs */
    int64_t cur;      /* units admitted in the current window */
    int64_t prev;     /* units admitted in the window before it */
} sw_state_t;

typedef struct {
    int64_t start, elapsed, cur, prev;
} sw_view_t;

static sw_view_t sw_view(const rl2_algo_params_t *p, const void *state,
                         int64_t now)
{
    const sw_state_t *s = state;
    int64_t w = p->window_us;
    int64_t stored = clamp64(s->start_us, 0, NOW_MAX);
    int64_t start = floor_div(now, w) * w;
    sw_view_t v;

    v.cur = clamp64(s->cur, 0, p->limit);
    v.prev = clamp64(s->prev, 0, p->limit);
    v.start = start;
    if (start <= stored) {
        /* same window, or the clock went back: stay in the stored window,
         * at elapsed 0 if need be (the previous window weighs most) */
        v.start = stored;
    }
    else if (start - w == stored) {
        v.prev = v.cur;
        v.cur = 0;
    }
    else {
        v.prev = 0;
        v.cur = 0;
    }
    v.elapsed = clamp64(now - v.start, 0, w);
    return v;
}

static int64_t sw_used(int64_t w, const sw_view_t *v, int64_t cost)
{
    return v->prev * (w - v->elapsed) + (v->cur + cost) * w;
}

/* Until the estimate is zero: current units weigh on the next window too. */
static int64_t sw_reset_us(int64_t w, const sw_view_t *v, int64_t now)
{
    if (v->cur > 0) {
        return v->start + 2 * w - now;
    }
    return v->prev > 0 ? v->start + w - now : 0;
}

/* The smallest wait after which `cost` fits, assuming nothing else is
 * admitted meanwhile.  t is measured from the current window's start.
 * Still in this window it fits once prev * (W - t) <= room * W; in the next
 * one (prev' = cur, cur' = 0) once cur * (2W - t) <= (limit - cost) * W. */
static int64_t sw_retry_us(const rl2_algo_params_t *p, const sw_view_t *v,
                           int64_t now, int64_t cost)
{
    int64_t w = p->window_us;
    int64_t room = p->limit - v->cur - cost;
    int64_t t;

    if (v->prev > 0 && room >= 0) {
        t = w - room * w / v->prev;
        if (t < w) {
            return v->start + t - now;
        }
    }
    t = w;
    if (v->cur > 0) {
        t += max64(w - (p->limit - cost) * w / v->cur, 0);
    }
    return v->start + t - now;
}

static void sw_check(const rl2_algo_params_t *p, const void *state,
                     int64_t now, int64_t cost, rl2_algo_result_t *out)
{
    int64_t w = p->window_us;
    int64_t room = p->limit * w;
    sw_view_t v = sw_view(p, state, now);
    int64_t used = sw_used(w, &v, cost);

    if (used <= room) {
        v.cur += cost;
        result_set(out, 1, p->limit, (room - used) / w,
                   sw_reset_us(w, &v, now), 0);
    }
    else {
        result_set(out, 0, p->limit,
                   max64(room - sw_used(w, &v, 0), 0) / w,
                   sw_reset_us(w, &v, now), sw_retry_us(p, &v, now, cost));
    }
}

static void sw_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t cost)
{
    sw_state_t *s = state;
    sw_view_t v = sw_view(p, state, now);

    s->start_us = v.start;
    s->cur = v.cur + cost;
    s->prev = v.prev;
}

/* Counts are exact, so taking units out of the window they were counted in
 * is exact.  The previous window is only touched when now has reached the
 * stored window: a clock behind it may have counted committed_us into the
 * stored window rather than into its own. */
static void sw_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t committed_us, int64_t cost)
{
    sw_state_t *s = state;
    int64_t w = p->window_us;
    int64_t stored = clamp64(s->start_us, 0, NOW_MAX);
    int64_t start = floor_div(committed_us, w) * w;

    if (start == stored) {
        s->cur = max64(clamp64(s->cur, 0, p->limit) - cost, 0);
    }
    else if (start == stored - w && now >= stored) {
        s->prev = max64(clamp64(s->prev, 0, p->limit) - cost, 0);
    }
}

/* ---- sliding_log: one timestamp per admitted unit, exact ----
 *
 * A ring of `limit` timestamps, oldest first.  Commits never append a time
 * older than the newest entry (a clock that went back appends the newest
 * time again), so the ring stays sorted and the expired entries, those at or
 * before now - W, are always a prefix. */
typedef struct {
    int64_t head;  /* ring index of the oldest entry */
    int64_t count; /* entries in use */
    int64_t ts[];  /* the ring: admission times, µs */
} sl_state_t;

typedef struct {
    const int64_t *ts;
    int64_t cap, head, count;
} sl_view_t;

static int64_t sl_cap(const rl2_algo_params_t *p)
{
    return clamp64(p->limit, 1, RL2_SLIDING_LOG_MAX);
}

static sl_view_t sl_view(const rl2_algo_params_t *p, const void *state)
{
    const sl_state_t *s = state;
    sl_view_t v;

    v.ts = s->ts;
    v.cap = sl_cap(p);
    v.head = (s->head >= 0 && s->head < v.cap) ? s->head : 0;
    v.count = clamp64(s->count, 0, v.cap);
    return v;
}

/* Ring slot of the i-th oldest entry. */
static int64_t sl_slot(const sl_view_t *v, int64_t i)
{
    return (v->head + i) % v->cap;
}

static int64_t sl_at(const sl_view_t *v, int64_t i)
{
    return clamp64(v->ts[sl_slot(v, i)], 0, NOW_MAX);
}

/* How many of the oldest entries have a time <= t (binary search). */
static int64_t sl_count_le(const sl_view_t *v, int64_t t)
{
    int64_t lo = 0, hi = v->count;

    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;

        if (sl_at(v, mid) <= t) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

static void sl_check(const rl2_algo_params_t *p, const void *state,
                     int64_t now, int64_t cost, rl2_algo_result_t *out)
{
    sl_view_t v = sl_view(p, state);
    int64_t w = p->window_us;
    int64_t gone = sl_count_le(&v, now - w);
    int64_t live = v.count - gone;
    int64_t newest = live > 0 ? sl_at(&v, v.count - 1) : now;
    int64_t need;

    if (live + cost <= v.cap) {
        newest = cost > 0 ? max64(newest, now) : newest;
        result_set(out, 1, v.cap, v.cap - live - cost,
                   live + cost > 0 ? newest + w - now : 0, 0);
        return;
    }
    /* the request fits once the need-th oldest live entry has expired */
    need = live + cost - v.cap;
    result_set(out, 0, v.cap, v.cap - live, newest + w - now,
               sl_at(&v, gone + need - 1) + w - now);
}

static void sl_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t cost)
{
    sl_state_t *s = state;
    sl_view_t v = sl_view(p, state);
    int64_t gone = sl_count_le(&v, now - p->window_us);
    int64_t t = v.count > 0 ? max64(now, sl_at(&v, v.count - 1)) : now;
    int64_t i;

    v.head = sl_slot(&v, gone);
    v.count -= gone;
    for (i = 0; i < cost; i++) {
        if (v.count == v.cap) {
            /* only reached by a commit the check refused: keep the newest */
            v.head = sl_slot(&v, 1);
            v.count--;
        }
        s->ts[sl_slot(&v, v.count)] = t;
        v.count++;
    }
    s->head = v.head;
    s->count = v.count;
}

/* Removes up to `cost` entries stamped committed_us and closes the gap. */
static void sl_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t committed_us, int64_t cost)
{
    sl_state_t *s = state;
    sl_view_t v = sl_view(p, state);
    int64_t end = sl_count_le(&v, committed_us);
    int64_t n = min64(cost, end - sl_count_le(&v, committed_us - 1));
    int64_t i;

    (void)now;
    for (i = end; i < v.count; i++) {
        s->ts[sl_slot(&v, i - n)] = s->ts[sl_slot(&v, i)];
    }
    s->head = v.head;
    s->count = v.count - n;
}

/* ---- concurrency: units in flight ---- */
typedef struct {
    int64_t count; /* units admitted and not yet released */
} cc_state_t;

static int64_t cc_count(const void *state)
{
    const cc_state_t *s = state;

    return clamp64(s->count, 0, COUNT_MAX);
}

static void cc_check(const rl2_algo_params_t *p, const void *state,
                     int64_t now, int64_t cost, rl2_algo_result_t *out)
{
    (void)now;
    counter_decide(p->limit, cc_count(state), cost, 0, CONCURRENCY_RETRY_US,
                   out);
}

static void cc_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t cost)
{
    cc_state_t *s = state;

    (void)p;
    (void)now;
    s->count = min64(cc_count(state) + cost, COUNT_MAX);
}

static void cc_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                      int64_t committed_us, int64_t cost)
{
    cc_state_t *s = state;

    (void)p;
    (void)now;
    (void)committed_us;
    s->count = max64(cc_count(state) - cost, 0);
}

/* ---- dispatch ---- */
typedef void (*algo_check_fn)(const rl2_algo_params_t *, const void *,
                              int64_t, int64_t, rl2_algo_result_t *);
typedef void (*algo_commit_fn)(const rl2_algo_params_t *, void *, int64_t,
                               int64_t);
typedef void (*algo_refund_fn)(const rl2_algo_params_t *, void *, int64_t,
                               int64_t, int64_t);

typedef struct {
    const char     *name;
    size_t          state_size; /* fixed part; sliding_log adds its ring */
    algo_check_fn   check;
    algo_commit_fn  commit;
    algo_refund_fn  refund;
} algo_ops_t;

static const algo_ops_t algo_ops[RL2_ALGO_COUNT] = {
    [RL2_ALGO_TOKEN_BUCKET] = { "token_bucket", sizeof(tb_state_t),
                                tb_check, tb_commit, tb_refund },
    [RL2_ALGO_SLIDING_LOG] = { "sliding_log", sizeof(sl_state_t),
                               sl_check, sl_commit, sl_refund },
    [RL2_ALGO_SLIDING_WINDOW] = { "sliding_window", sizeof(sw_state_t),
                                  sw_check, sw_commit, sw_refund },
    [RL2_ALGO_FIXED_WINDOW] = { "fixed_window", sizeof(span_state_t),
                                span_check, span_commit, span_refund },
    [RL2_ALGO_LEAKY_BUCKET] = { "leaky_bucket", sizeof(lb_state_t),
                                lb_check, lb_commit, lb_refund },
    [RL2_ALGO_CONCURRENCY] = { "concurrency", sizeof(cc_state_t),
                               cc_check, cc_commit, cc_refund },
    [RL2_ALGO_QUOTA] = { "quota", sizeof(span_state_t),
                         span_check, span_commit, span_refund },
};

_Static_assert(sizeof(tb_state_t) % 8 == 0 && sizeof(lb_state_t) % 8 == 0
               && sizeof(span_state_t) % 8 == 0
               && sizeof(sw_state_t) % 8 == 0
               && sizeof(sl_state_t) % 8 == 0
               && sizeof(cc_state_t) % 8 == 0,
               "state sizes are multiples of 8");

static int algo_known(rl2_algo_t algo)
{
    return (int)algo >= 0 && algo < RL2_ALGO_COUNT;
}

static int algo_is_bucket(rl2_algo_t algo)
{
    return algo == RL2_ALGO_TOKEN_BUCKET || algo == RL2_ALGO_LEAKY_BUCKET;
}

static int algo_is_windowed(rl2_algo_t algo)
{
    return algo != RL2_ALGO_CONCURRENCY && algo != RL2_ALGO_QUOTA;
}

/* Enough to run without dividing by zero or indexing out of the blob, for
 * parameters that never went through the params check. */
static int params_usable(const rl2_algo_params_t *p)
{
    return algo_known(p->algo) && p->limit >= 1
           && (!algo_is_windowed(p->algo) || p->window_us >= 1);
}

/* The most units one request can ever take. */
static int64_t algo_capacity(const rl2_algo_params_t *p)
{
    if (algo_is_bucket(p->algo) && p->burst > 0) {
        return p->burst;
    }
    return p->algo == RL2_ALGO_SLIDING_LOG ? sl_cap(p) : p->limit;
}

/* ---- UTC calendar ----
 *
 * Days since 1970-01-01 and back, proleptic Gregorian, after Howard
 * Hinnant's "chrono-compatible low-level date algorithms": eras of 400
 * years (146097 days) starting on March 1st, so the leap day ends a year. */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = floor_div(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

/* now_us is clamped to +-NOW_MAX (year 2255) first.  RL2_PERIOD_NONE is an
 * empty span at now_us. */
void rl2_period_bounds(rl2_period_t period, int64_t now_us,
                       int64_t *start_us, int64_t *end_us)
{
    int64_t now = clamp64(now_us, -NOW_MAX, NOW_MAX);
    int64_t days = floor_div(now, US_PER_DAY);
    int64_t y, m;

    if (period == RL2_PERIOD_DAY) {
        *start_us = days * US_PER_DAY;
        *end_us = *start_us + US_PER_DAY;
    }
    else if (period == RL2_PERIOD_MONTH) {
        civil_from_days(days, &y, &m);
        *start_us = days_from_civil(y, m, 1) * US_PER_DAY;
        *end_us = (m == 12 ? days_from_civil(y + 1, 1, 1)
                           : days_from_civil(y, m + 1, 1)) * US_PER_DAY;
    }
    else {
        *start_us = now;
        *end_us = now;
    }
}

/* ---- parameters ---- */

/* "100/1h", "20/day", "3 in flight", "10/1s with burst 50": the rate as a
 * sysadmin would recognise it, for messages. */
static void rate_str(const rl2_algo_params_t *p, char *buf, size_t size)
{
    static const struct {
        int64_t     us;
        const char *unit;
    } units[] = {
        { US_PER_DAY, "d" }, { 3600 * US_PER_S, "h" },
        { 60 * US_PER_S, "min" }, { US_PER_S, "s" },
        { 1000, "ms" }, { 1, "us" }
    };
    size_t i = 0;
    int n;

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
static rl2_status_t check_shape(const rl2_algo_params_t *p, rl2_err_t *err)
{
    const char *name = rl2_algo_name(p->algo);

    if (!algo_known(p->algo)) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "unknown algorithm (%d)",
                           (int)p->algo);
    }
    if (p->limit < 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "%s limit must be at least "
                           "1, not %" PRId64, name, p->limit);
    }
    if (p->burst < 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "burst must not be negative "
                           "(got %" PRId64 ")", p->burst);
    }
    if (p->burst > 0 && !algo_is_bucket(p->algo)) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "burst applies only to "
                           "token_bucket and leaky_bucket; with %s add a "
                           "second, shorter limit instead", name);
    }
    if (p->algo != RL2_ALGO_QUOTA && p->period != RL2_PERIOD_NONE) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "a calendar day or month "
                           "applies only to quota, not to %s", name);
    }
    if (algo_is_windowed(p->algo) && p->window_us < 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "%s window must be longer "
                           "than zero", name);
    }
    return RL2_OK;
}

/* Rules of one algorithm. */
static rl2_status_t check_algo(const rl2_algo_params_t *p, rl2_err_t *err)
{
    char rate[96];

    if (p->algo == RL2_ALGO_QUOTA) {
        if (p->period != RL2_PERIOD_DAY && p->period != RL2_PERIOD_MONTH) {
            return rl2_err_set(err, RL2_ERR_CONFIG, "quota needs a calendar "
                               "period: per day or per month");
        }
        /* The rate parser gives "20/day" a 24-hour window: that one agrees
         * with the period; any other window would be silently ignored. */
        if (p->window_us != 0 && !(p->period == RL2_PERIOD_DAY
                                   && p->window_us == US_PER_DAY)) {
            return rl2_err_set(err, RL2_ERR_CONFIG, "quota counts per "
                               "calendar day or month and takes no other "
                               "window");
        }
    }
    if (p->algo == RL2_ALGO_SLIDING_LOG && p->limit > RL2_SLIDING_LOG_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "sliding_log keeps one "
                           "timestamp per unit and allows at most %d per "
                           "window, not %" PRId64 "; use sliding_window for "
                           "larger limits", RL2_SLIDING_LOG_MAX, p->limit);
    }
    if (algo_is_bucket(p->algo) && p->limit > p->window_us) {
        rate_str(p, rate, sizeof(rate));
        return rl2_err_set(err, RL2_ERR_CONFIG, "%s rate %s is more than "
                           "one unit per microsecond, finer than a bucket "
                           "can drain; use a longer window or a window "
                           "algorithm", rl2_algo_name(p->algo), rate);
    }
    return RL2_OK;
}

/* Whether the largest value each algorithm computes fits in int64, given
 * that its loaders clamp now to NOW_MAX, costs to the capacity and counts
 * to the limit. */
static int range_fits(const rl2_algo_params_t *p)
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
        return !__builtin_mul_overflow(algo_capacity(p), t, &x)
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

rl2_status_t rl2_algo_params_check(const rl2_algo_params_t *p, rl2_err_t *err)
{
    char rate[96];
    rl2_status_t st;

    if ((st = check_shape(p, err)) != RL2_OK
        || (st = check_algo(p, err)) != RL2_OK) {
        return st;
    }
    if (range_fits(p)) {
        return RL2_OK;
    }
    rate_str(p, rate, sizeof(rate));
    return rl2_err_set(err, RL2_ERR_RANGE, "%s rate %s overflows 64-bit "
                       "arithmetic; use a smaller %s",
                       rl2_algo_name(p->algo), rate,
                       p->burst > 0 ? "burst, limit or window"
                       : algo_is_windowed(p->algo) ? "limit or window"
                       : "limit");
}

/* ---- the public entry points ---- */

size_t rl2_algo_state_size(const rl2_algo_params_t *p)
{
    if (!algo_known(p->algo)) {
        return 0;
    }
    if (p->algo == RL2_ALGO_SLIDING_LOG) {
        return sizeof(sl_state_t) + (size_t)sl_cap(p) * sizeof(int64_t);
    }
    return algo_ops[p->algo].state_size;
}

void rl2_algo_check(const rl2_algo_params_t *p, const void *state,
                    int64_t now_us, int64_t cost, rl2_algo_result_t *out)
{
    const algo_ops_t *ops;

    if (!params_usable(p)) {
        result_set(out, 0, 0, 0, 0, NEVER_FITS_RETRY_US);
        return;
    }
    ops = &algo_ops[p->algo];
    now_us = clamp64(now_us, 0, NOW_MAX);
    cost = max64(cost, 0);
    if (cost <= algo_capacity(p)) {
        ops->check(p, state, now_us, cost, out);
        return;
    }
    /* Never fits: report the key as it stands. */
    ops->check(p, state, now_us, 0, out);
    out->allowed = 0;
    out->retry_after_us = max64(out->reset_us, NEVER_FITS_RETRY_US);
}

void rl2_algo_commit(const rl2_algo_params_t *p, void *state,
                     int64_t now_us, int64_t cost)
{
    if (params_usable(p)) {
        algo_ops[p->algo].commit(p, state, clamp64(now_us, 0, NOW_MAX),
                                 clamp64(cost, 0, algo_capacity(p)));
    }
}

void rl2_algo_refund(const rl2_algo_params_t *p, void *state,
                     int64_t now_us, int64_t committed_us, int64_t cost)
{
    if (params_usable(p)) {
        algo_ops[p->algo].refund(p, state, clamp64(now_us, 0, NOW_MAX),
                                 clamp64(committed_us, 0, NOW_MAX),
                                 clamp64(cost, 0, algo_capacity(p)));
    }
}

int64_t rl2_algo_ttl_us(const rl2_algo_params_t *p, int64_t now_us)
{
    int64_t now = clamp64(now_us, 0, NOW_MAX);
    int64_t start, end;

    if (!params_usable(p)) {
        return 0;
    }
    switch (p->algo) {
    case RL2_ALGO_TOKEN_BUCKET:
    case RL2_ALGO_LEAKY_BUCKET:
        return bucket_of(p).cap_us;
    case RL2_ALGO_SLIDING_LOG:
        return p->window_us;
    case RL2_ALGO_SLIDING_WINDOW:
        /* this window's units still weigh during the next one */
        return floor_div(now, p->window_us) * p->window_us
               + 2 * p->window_us - now;
    case RL2_ALGO_CONCURRENCY:
        return CONCURRENCY_TTL_US;
    default:
        span_bounds(p, now, &start, &end);
        return end - now;
    }
}

const char *rl2_algo_name(rl2_algo_t algo)
{
    return algo_known(algo) ? algo_ops[algo].name : "unknown";
}

rl2_algo_t rl2_algo_from_name(const char *name)
{
    int a;

    for (a = 0; name != NULL && a < RL2_ALGO_COUNT; a++) {
        if (strcmp(name, algo_ops[a].name) == 0) {
            return (rl2_algo_t)a;
        }
    }
    return RL2_ALGO_COUNT;
}
