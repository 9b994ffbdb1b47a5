/*
 * metrics_read.c -- reading the metrics object for exposition: the
 * global counters, the rule x tier cells, the minute ring (and the
 * once-a-minute snapshot that fills it) and the top tables (see
 * metrics.h).  Readers never block writers: counters are
 * read with relaxed loads, and the top tables are copied under the same
 * short lock their writers take.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "metrics_internal.h"

static uint64_t
rl2_mx_load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

void
rl2_metrics_global(const rl2_metrics_t *m, rl2_metrics_global_t *out)
{
    const mx_shm_t *s = m->shm;

    memset(out, 0, sizeof(*out));
    out->created_wall_s = atomic_load((_Atomic int64_t *)&s->created_wall_s);
    for (unsigned i = 0; i <= RL2_METRICS_BUCKETS; i++) {
        out->bucket[i] = rl2_mx_load(&s->bucket[i]);
    }
    out->store_calls = rl2_mx_load(&s->store_calls);
    out->store_us_sum = rl2_mx_load(&s->store_us_sum);
    out->store_errors = rl2_mx_load(&s->store_errors);
    out->limited_lines = rl2_mx_load(&s->limited_lines);
    out->limited_held = rl2_mx_load(&s->limited_held);
    out->ban_candidates = rl2_mx_load(&s->ban_candidates);
    out->bans = rl2_mx_load(&s->bans);
    out->overlimit_hits = rl2_mx_load(&s->overlimit_hits);
    out->usage_minutes_pushed =
        rl2_mx_load(&s->use_pushes[RL2_USAGE_MINUTE_PUSHED]);
    out->usage_minutes_failed =
        rl2_mx_load(&s->use_pushes[RL2_USAGE_MINUTE_FAILED]);
    out->usage_minutes_skipped =
        rl2_mx_load(&s->use_pushes[RL2_USAGE_MINUTE_SKIPPED]);
    for (unsigned i = 0; i <= RL2_METRICS_DECIDE_BUCKETS; i++) {
        out->decide_bucket[i] = rl2_mx_load(&s->decide_bucket[i]);
    }
    out->decide_ns_sum = rl2_mx_load(&s->decide_ns_sum);
}

const char *
rl2_mx_slot_name(const mx_name_t *t, unsigned cap, unsigned i)
{
    if (i >= cap
        || atomic_load_explicit((_Atomic uint32_t *)&t[i].state,
                                memory_order_acquire)
               != MX_NAMED
        || memchr(t[i].name, '\0', sizeof(t[i].name)) == NULL) {
        return NULL;
    }
    return t[i].name;
}

void
rl2_metrics_cells(const rl2_metrics_t *m,
                  void (*fn)(void *ctx, const rl2_metrics_cell_t *c), void *ctx)
{
    const mx_shm_t    *s = m->shm;
    rl2_metrics_cell_t c;

    for (unsigned r = 0; r < RL2_METRICS_RULES; r++) {
        const char *rn = rl2_mx_slot_name(s->rules, RL2_METRICS_RULES, r);

        for (unsigned t = 0; rn != NULL && t < RL2_METRICS_TIERS; t++) {
            const char *tn = rl2_mx_slot_name(s->tiers, RL2_METRICS_TIERS, t);
            uint64_t    any = 0;

            for (unsigned k = 0; k < RL2_METRIC_KINDS; k++) {
                c.n[k] = rl2_mx_load(&s->cells[r][t].n[k]);
                any |= c.n[k];
            }
            if (tn == NULL || any == 0) {
                continue;
            }
            strcpy(c.rule, rn);
            strcpy(c.tier, tn);
            fn(ctx, &c);
        }
    }
}

uint64_t
rl2_metrics_experiments(const rl2_metrics_t *m,
                        void (*fn)(void *ctx, const rl2_metrics_exp_t *e),
                        void *ctx)
{
    const mx_shm_t   *s = m->shm;
    rl2_metrics_exp_t e;

    for (unsigned i = 0; i < MX_EXPERIMENTS; i++) {
        const mx_exp_t *x = &s->experiments[i];

        if (atomic_load_explicit((_Atomic uint32_t *)&x->state,
                                 memory_order_acquire)
            != MX_NAMED) {
            continue;
        }
        memcpy(e.rule, x->rule, sizeof(e.rule));
        memcpy(e.variant, x->variant, sizeof(e.variant));
        e.allowed = rl2_mx_load(&x->n[0]);
        e.denied = rl2_mx_load(&x->n[1]);
        fn(ctx, &e);
    }
    return rl2_mx_load(&s->exp_unplaced);
}

void
rl2_mx_totals(const mx_shm_t *s, unsigned slot, uint64_t out[2])
{
    out[0] = out[1] = 0;
    for (unsigned t = 0; t < RL2_METRICS_TIERS; t++) {
        const mx_cell_t *c = &s->cells[slot][t];

        out[0] += rl2_mx_load(&c->n[RL2_METRIC_ALLOWED])
                  + rl2_mx_load(&c->n[RL2_METRIC_DRY_RUN]);
        out[1] += rl2_mx_load(&c->n[RL2_METRIC_DENIED]);
    }
}

/* One process a minute (compare-and-swap on snap_minute) writes every
 * named rule's totals into the ring. */
int
rl2_mx_snapshot(rl2_metrics_t *m, int64_t wall_us)
{
    mx_shm_t *s = m->shm;
    uint64_t  minute = (uint64_t)wall_us / 60000000u;
    uint64_t  last = atomic_load(&s->snap_minute), t[2];

    if (last == minute + 1
        || !atomic_compare_exchange_strong(&s->snap_minute, &last,
                                           minute + 1)) {
        return 0;
    }
    for (unsigned r = 0; r < RL2_METRICS_RULES; r++) {
        if (rl2_mx_slot_name(s->rules, RL2_METRICS_RULES, r) == NULL) {
            continue;
        }
        rl2_mx_totals(s, r, t);
        for (unsigned k = 0; k < 2; k++) {
            atomic_store_explicit(
                &s->minutes[r][minute & (MX_RING - 1)][k],
                ((minute & MX_MIN_STAMP_MASK) << MX_MIN_COUNT_BITS)
                    | (t[k] & MX_MIN_COUNT_MASK),
                memory_order_relaxed);
        }
    }
    rl2_mx_use_snapshot(s, minute, m->on_minute, m->on_minute_ctx);
    return 1;
}

/* A minute's count is the next known total minus its own: minutes with
 * no snapshot saw no upkeep, hence (within a second) no request. */
int
rl2_metrics_minutes(const rl2_metrics_t *m, unsigned slot, int64_t now_wall_s,
                    uint64_t out[RL2_METRICS_MINUTES][2],
                    char     name[RL2_NAME_MAX + 1])
{
    uint64_t    now_min = (uint64_t)now_wall_s / 60, next[2], cum[2];
    const char *n;

    if (slot >= RL2_METRICS_RULES
        || (n = rl2_mx_slot_name(m->shm->rules, RL2_METRICS_RULES, slot))
               == NULL) {
        return 0;
    }
    strcpy(name, n);
    rl2_mx_totals(m->shm, slot, next);
    for (unsigned i = RL2_METRICS_MINUTES; i-- > 0;) {
        uint64_t minute = now_min - (RL2_METRICS_MINUTES - 1) + i;
        int      known = 1;

        for (unsigned k = 0; k < 2; k++) {
            uint64_t w =
                rl2_mx_load(&m->shm->minutes[slot][minute & (MX_RING - 1)][k]);

            known &= (w >> MX_MIN_COUNT_BITS) == (minute & MX_MIN_STAMP_MASK);
            cum[k] = w & MX_MIN_COUNT_MASK;
        }
        for (unsigned k = 0; k < 2; k++) {
            out[i][k] = known ? ((next[k] - cum[k]) & MX_MIN_COUNT_MASK) : 0;
            next[k] = known ? cum[k] : next[k];
        }
    }
    return 1;
}

/* The copy is taken under the writers' lock (a torn client name would
 * otherwise be possible); a lock that cannot be had in a few
 * milliseconds gives an empty table rather than a wait. */
static size_t
rl2_mx_top_copy(const rl2_metrics_t *m, const mx_top_t *t,
                rl2_metrics_top_t out[RL2_METRICS_TOP])
{
    mx_shm_t *s = m->shm;
    mx_top_t  copy[RL2_METRICS_TOP];
    uint32_t  me = (uint32_t)getpid();
    size_t    n = 0;
    int       locked = 0;

    for (unsigned spins = 0; spins < 100000 && !locked; spins++) {
        uint32_t free_word = 0;

        locked = atomic_compare_exchange_weak(&s->lock, &free_word, me);
        if (!locked && (spins & 255) == 255) {
            sched_yield();
        }
    }
    if (!locked) {
        return 0;
    }
    memcpy(copy, t, sizeof(copy));
    atomic_store_explicit(&s->lock, 0, memory_order_release);
    for (size_t i = 0; i < RL2_METRICS_TOP; i++) {
        const char *rn;

        if (copy[i].client[0] == '\0') {
            continue;
        }
        memcpy(out[n].client, copy[i].client, RL2_METRICS_CLIENT_MAX);
        out[n].client[RL2_METRICS_CLIENT_MAX - 1] = '\0';
        rn = rl2_mx_slot_name(s->rules, RL2_METRICS_RULES, copy[i].rule);
        strcpy(out[n].rule, rn != NULL ? rn : "-");
        out[n].count = copy[i].count;
        out[n].last_wall_s = copy[i].last_wall_s;
        n++;
    }
    /* Largest first: insertion sort of at most RL2_METRICS_TOP. */
    for (size_t i = 1; i < n; i++) {
        rl2_metrics_top_t x = out[i];
        size_t            j = i;

        for (; j > 0 && out[j - 1].count < x.count; j--) {
            out[j] = out[j - 1];
        }
        out[j] = x;
    }
    return n;
}

size_t
rl2_metrics_top_limited(const rl2_metrics_t *m,
                        rl2_metrics_top_t    out[RL2_METRICS_TOP])
{
    return rl2_mx_top_copy(m, m->shm->top_limited, out);
}

size_t
rl2_metrics_top_near(const rl2_metrics_t *m,
                     rl2_metrics_top_t    out[RL2_METRICS_TOP])
{
    return rl2_mx_top_copy(m, m->shm->top_near, out);
}
