/*
 * window.c -- the algorithms that count units in time windows:
 * fixed_window and quota (one counter per aligned span), sliding_window (two
 * fixed windows, the previous one weighted), sliding_log (one timestamp per
 * unit, exact), and concurrency (units in flight, no window at all).
 *
 * Owns their decision, commit and refund arithmetic and the views that
 * clamp a stored blob to what these functions could have written.  Their
 * state layouts are in algo_internal.h, which algo.c also reads for state
 * sizes and TTLs.
 */
#include "algo_internal.h"

/* A refused concurrency request cannot know when a slot frees up (at the end
 * of somebody else's request): one second is an honest guess. */
#define CONCURRENCY_RETRY_US RL2_US_PER_S

/* Counter algorithms: `count` units already taken out of `limit`. */
static void
rl2_counter_decide(int64_t limit, int64_t count, int64_t cost, int64_t reset_us,
                   int64_t retry_us, rl2_algo_result_t *out)
{
    if (count + cost <= limit) {
        rl2_result_set(out, 1, limit, limit - count - cost,
                       count + cost > 0 ? reset_us : 0, 0);
    }
    else {
        rl2_result_set(out, 0, limit, limit - count, reset_us, retry_us);
    }
}

/* ---- fixed_window and quota: one counter per aligned span ----
 *
 * The spans are those of rl2_span_bounds() in algo_internal.h. */
typedef struct {
    int64_t start, end, count;
} span_view_t;

/* The span a request at now counts in.  A now before the stored span (the
 * clock went back) keeps counting in the stored span: it never resets.
 * Inline: with rl2_span_bounds() inline twice it would otherwise become a call
 * in check and commit, ~50 instructions a request more. */
static inline span_view_t
rl2_span_view(const rl2_algo_params_t *p, const void *state, int64_t now)
{
    const span_state_t *s = state;
    int64_t             stored = rl2_clamp64(s->start_us, 0, NOW_MAX);
    span_view_t         v;

    rl2_span_bounds(p, now, &v.start, &v.end);
    if (v.start > stored) {
        v.count = 0;
    }
    else {
        rl2_span_bounds(p, stored, &v.start, &v.end);
        v.count = rl2_clamp64(s->count, 0, p->limit);
    }
    return v;
}

void
rl2_span_check(const rl2_algo_params_t *p, const void *state, int64_t now,
               int64_t cost, rl2_algo_result_t *out)
{
    span_view_t v = rl2_span_view(p, state, now);

    rl2_counter_decide(p->limit, v.count, cost, v.end - now, v.end - now, out);
}

void
rl2_span_commit(const rl2_algo_params_t *p, void *state, int64_t now,
                int64_t cost)
{
    span_state_t *s = state;
    span_view_t   v = rl2_span_view(p, state, now);

    s->start_us = v.start;
    s->count = v.count + cost;
}

/* Only a refund into the span still stored is exact; once the span has
 * rolled over, the request no longer counts anyway. */
void
rl2_span_refund(const rl2_algo_params_t *p, void *state, int64_t now,
                int64_t committed_us, int64_t cost)
{
    span_state_t *s = state;
    int64_t       start, end;

    (void)now;
    rl2_span_bounds(p, committed_us, &start, &end);
    if (start == rl2_clamp64(s->start_us, 0, NOW_MAX)) {
        s->count = rl2_max64(rl2_clamp64(s->count, 0, p->limit) - cost, 0);
    }
}

/* ---- sliding_window: two fixed windows, the previous one weighted ----
 *
 * estimate = prev * (W - elapsed) / W + cur, compared scaled by W so that
 * it stays in integers: prev * (W - elapsed) + (cur + cost) * W is at most
 * 3 * limit * W, which the params check bounds. */
typedef struct {
    int64_t start, elapsed, cur, prev;
} sw_view_t;

static sw_view_t
rl2_sw_view(const rl2_algo_params_t *p, const void *state, int64_t now)
{
    const sw_state_t *s = state;
    int64_t           w = p->window_us;
    int64_t           stored = rl2_clamp64(s->start_us, 0, NOW_MAX);
    int64_t           start = rl2_floor_div(now, w) * w;
    sw_view_t         v;

    v.cur = rl2_clamp64(s->cur, 0, p->limit);
    v.prev = rl2_clamp64(s->prev, 0, p->limit);
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
    v.elapsed = rl2_clamp64(now - v.start, 0, w);
    return v;
}

static int64_t
rl2_sw_used(int64_t w, const sw_view_t *v, int64_t cost)
{
    return v->prev * (w - v->elapsed) + (v->cur + cost) * w;
}

/* Until the estimate is zero: current units weigh on the next window too. */
static int64_t
rl2_sw_reset_us(int64_t w, const sw_view_t *v, int64_t now)
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
static int64_t
rl2_sw_retry_us(const rl2_algo_params_t *p, const sw_view_t *v, int64_t now,
                int64_t cost)
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
        t += rl2_max64(w - (p->limit - cost) * w / v->cur, 0);
    }
    return v->start + t - now;
}

void
rl2_sw_check(const rl2_algo_params_t *p, const void *state, int64_t now,
             int64_t cost, rl2_algo_result_t *out)
{
    int64_t   w = p->window_us;
    int64_t   room = p->limit * w;
    sw_view_t v = rl2_sw_view(p, state, now);
    int64_t   used = rl2_sw_used(w, &v, cost);

    if (used <= room) {
        v.cur += cost;
        rl2_result_set(out, 1, p->limit, (room - used) / w,
                       rl2_sw_reset_us(w, &v, now), 0);
    }
    else {
        rl2_result_set(
            out, 0, p->limit, rl2_max64(room - rl2_sw_used(w, &v, 0), 0) / w,
            rl2_sw_reset_us(w, &v, now), rl2_sw_retry_us(p, &v, now, cost));
    }
}

void
rl2_sw_commit(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t cost)
{
    sw_state_t *s = state;
    sw_view_t   v = rl2_sw_view(p, state, now);

    s->start_us = v.start;
    s->cur = v.cur + cost;
    s->prev = v.prev;
}

/* Counts are exact, so taking units out of the window they were counted in
 * is exact.  The previous window is only touched when now has reached the
 * stored window: a clock behind it may have counted committed_us into the
 * stored window rather than into its own. */
void
rl2_sw_refund(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t committed_us, int64_t cost)
{
    sw_state_t *s = state;
    int64_t     w = p->window_us;
    int64_t     stored = rl2_clamp64(s->start_us, 0, NOW_MAX);
    int64_t     start = rl2_floor_div(committed_us, w) * w;

    if (start == stored) {
        s->cur = rl2_max64(rl2_clamp64(s->cur, 0, p->limit) - cost, 0);
    }
    else if (start == stored - w && now >= stored) {
        s->prev = rl2_max64(rl2_clamp64(s->prev, 0, p->limit) - cost, 0);
    }
}

/* ---- sliding_log: one timestamp per admitted unit, exact ----
 *
 * A ring of `limit` timestamps, oldest first.  Commits never append a time
 * older than the newest entry (a clock that went back appends the newest
 * time again), so the ring stays sorted and the expired entries, those at or
 * before now - W, are always a prefix. */
typedef struct {
    const int64_t *ts;
    int64_t        cap, head, count;
} sl_view_t;

static sl_view_t
rl2_sl_view(const rl2_algo_params_t *p, const void *state)
{
    const sl_state_t *s = state;
    sl_view_t         v;

    v.ts = s->ts;
    v.cap = rl2_sl_cap(p);
    v.head = (s->head >= 0 && s->head < v.cap) ? s->head : 0;
    v.count = rl2_clamp64(s->count, 0, v.cap);
    return v;
}

/* Ring slot of the i-th oldest entry. */
static int64_t
rl2_sl_slot(const sl_view_t *v, int64_t i)
{
    return (v->head + i) % v->cap;
}

static int64_t
rl2_sl_at(const sl_view_t *v, int64_t i)
{
    return rl2_clamp64(v->ts[rl2_sl_slot(v, i)], 0, NOW_MAX);
}

/* How many of the oldest entries have a time <= t (binary search). */
static int64_t
rl2_sl_count_le(const sl_view_t *v, int64_t t)
{
    int64_t lo = 0, hi = v->count;

    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;

        if (rl2_sl_at(v, mid) <= t) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

void
rl2_sl_check(const rl2_algo_params_t *p, const void *state, int64_t now,
             int64_t cost, rl2_algo_result_t *out)
{
    sl_view_t v = rl2_sl_view(p, state);
    int64_t   w = p->window_us;
    int64_t   gone = rl2_sl_count_le(&v, now - w);
    int64_t   live = v.count - gone;
    int64_t   newest = live > 0 ? rl2_sl_at(&v, v.count - 1) : now;
    int64_t   need;

    if (live + cost <= v.cap) {
        newest = cost > 0 ? rl2_max64(newest, now) : newest;
        rl2_result_set(out, 1, v.cap, v.cap - live - cost,
                       live + cost > 0 ? newest + w - now : 0, 0);
        return;
    }
    /* the request fits once the need-th oldest live entry has expired */
    need = live + cost - v.cap;
    rl2_result_set(out, 0, v.cap, v.cap - live, newest + w - now,
                   rl2_sl_at(&v, gone + need - 1) + w - now);
}

void
rl2_sl_commit(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t cost)
{
    sl_state_t *s = state;
    sl_view_t   v = rl2_sl_view(p, state);
    int64_t     gone = rl2_sl_count_le(&v, now - p->window_us);
    int64_t t = v.count > 0 ? rl2_max64(now, rl2_sl_at(&v, v.count - 1)) : now;
    int64_t i;

    v.head = rl2_sl_slot(&v, gone);
    v.count -= gone;
    for (i = 0; i < cost; i++) {
        if (v.count == v.cap) {
            /* only reached by a commit the check refused: keep the newest */
            v.head = rl2_sl_slot(&v, 1);
            v.count--;
        }
        s->ts[rl2_sl_slot(&v, v.count)] = t;
        v.count++;
    }
    s->head = v.head;
    s->count = v.count;
}

/* Removes up to `cost` entries stamped committed_us and closes the gap. */
void
rl2_sl_refund(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t committed_us, int64_t cost)
{
    sl_state_t *s = state;
    sl_view_t   v = rl2_sl_view(p, state);
    int64_t     end = rl2_sl_count_le(&v, committed_us);
    int64_t n = rl2_min64(cost, end - rl2_sl_count_le(&v, committed_us - 1));
    int64_t i;

    (void)now;
    for (i = end; i < v.count; i++) {
        s->ts[rl2_sl_slot(&v, i - n)] = s->ts[rl2_sl_slot(&v, i)];
    }
    s->head = v.head;
    s->count = v.count - n;
}

/* ---- concurrency: units in flight ---- */

static int64_t
rl2_cc_count(const void *state)
{
    const cc_state_t *s = state;

    return rl2_clamp64(s->count, 0, COUNT_MAX);
}

void
rl2_cc_check(const rl2_algo_params_t *p, const void *state, int64_t now,
             int64_t cost, rl2_algo_result_t *out)
{
    (void)now;
    rl2_counter_decide(p->limit, rl2_cc_count(state), cost, 0,
                       CONCURRENCY_RETRY_US, out);
}

void
rl2_cc_commit(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t cost)
{
    cc_state_t *s = state;

    (void)p;
    (void)now;
    s->count = rl2_min64(rl2_cc_count(state) + cost, COUNT_MAX);
}

void
rl2_cc_refund(const rl2_algo_params_t *p, void *state, int64_t now,
              int64_t committed_us, int64_t cost)
{
    cc_state_t *s = state;

    (void)p;
    (void)now;
    (void)committed_us;
    s->count = rl2_max64(rl2_cc_count(state) - cost, 0);
}
