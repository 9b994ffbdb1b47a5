/*
 * metrics_usage.c -- the write side of the usage series (usage.h): a
 * (rule, tier) cell's usage cell, claimed by its first request; the
 * once-a-minute work of the upkeep that opens a minute (and an hour) in
 * every usage cell and ends the one before; the top clients by use.
 *
 * Requests write only the sketches and peaks of the interval use_phase
 * names (metrics.c, rl2_mx_use); everything here runs once per cell
 * (the claim), once a minute in one process (the snapshot), or for one
 * request in RL2_USAGE_TOP_SAMPLE (the top table, under the lock).
 */
#include <string.h>

#include "metrics_internal.h"

/* ---- cells -------------------------------------------------------- */

static uint64_t
rl2_mx_use_load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

void
rl2_mx_use_totals(const mx_shm_t *s, unsigned use, uint64_t out[3])
{
    const mx_use_cell_t *uc = &s->use_cells[use];
    unsigned             rule = uc->rule, tier = uc->tier;
    const mx_cell_t     *c;
    uint64_t             admitted = 0;

    /* The object is writable by every process of the server's user, and
     * read by ratelimit2ctl as root: slots out of range count nothing
     * rather than read outside the counters. */
    if (rule >= RL2_METRICS_RULES || tier >= RL2_METRICS_TIERS) {
        out[0] = out[1] = out[2] = 0;
        return;
    }
    c = &s->cells[rule][tier];
    admitted += rl2_mx_use_load(&c->n[RL2_METRIC_ALLOWED]);
    admitted += rl2_mx_use_load(&c->n[RL2_METRIC_DRY_RUN]);
    admitted += rl2_mx_use_load(&c->n[RL2_METRIC_BYPASSED]);
    admitted += rl2_mx_use_load(&c->n[RL2_METRIC_UNMATCHED]);
    out[2] = rl2_mx_use_load(&c->n[RL2_METRIC_DENIED]);
    out[1] = admitted;
    out[0] = admitted + out[2];
}

static void
rl2_mx_point_open(mx_point_t *p, uint64_t stamp, const uint64_t total[3])
{
    for (unsigned k = 0; k < 3; k++) {
        atomic_store_explicit(&p->total[k], total[k], memory_order_relaxed);
    }
    atomic_store_explicit(&p->clients, 0, memory_order_relaxed);
    atomic_store_explicit(&p->peak_ppm, 0, memory_order_relaxed);
    /* Last: a reader that sees the stamp sees the totals. */
    atomic_store_explicit(&p->stamp, stamp, memory_order_release);
}

static mx_point_t *
rl2_mx_minute_point(mx_shm_t *s, unsigned use, uint64_t stamp)
{
    return &s->use_minutes[use][(stamp - 1) % RL2_USAGE_MINUTES];
}

static mx_point_t *
rl2_mx_hour_point(mx_shm_t *s, unsigned use, uint64_t stamp)
{
    return &s->use_hours[use][(stamp - 1) % RL2_USAGE_HOURS];
}

/* A new cell's first points: the minute and the hour open now, from
 * zero (its first request is being counted: everything it has belongs
 * to them). */
static void
rl2_mx_use_first_points(mx_shm_t *s, unsigned use)
{
    static const uint64_t zero[3] = { 0, 0, 0 };
    unsigned              phase = atomic_load(&s->use_phase);
    uint64_t              m = atomic_load(&s->use_min_open[phase & 1]);
    uint64_t              h = atomic_load(&s->use_hour_open[(phase >> 1) & 1]);

    if (m != 0) {
        rl2_mx_point_open(rl2_mx_minute_point(s, use, m), m, zero);
    }
    if (h != 0) {
        rl2_mx_point_open(rl2_mx_hour_point(s, use, h), h, zero);
    }
}

/* Under the lock, so that two processes claiming at once agree.  A cell
 * that finds the table full gets the sink for good; one whose claim
 * cannot have the lock gets the sink for this request only (counted,
 * not sketched; the next one claims). */
unsigned
rl2_mx_use_claim(mx_shm_t *s, unsigned rule, unsigned tier)
{
    _Atomic uint16_t *w = &s->use_slot[MX_CELL(rule, tier)];
    unsigned          u, n;

    if (!rl2_mx_lock(s)) {
        return MX_USE_SINK + 1;
    }
    u = atomic_load_explicit(w, memory_order_relaxed);
    if (u == 0) {
        n = atomic_load_explicit(&s->use_n, memory_order_relaxed);
        if (n < RL2_USAGE_CELLS) {
            s->use_cells[n] = (mx_use_cell_t){ (uint16_t)rule, (uint16_t)tier };
            rl2_mx_use_first_points(s, n);
            atomic_store_explicit(&s->use_n, n + 1, memory_order_release);
            u = n + 1;
        }
        else {
            u = MX_USE_SINK + 1;
        }
        atomic_store_explicit(w, (uint16_t)u, memory_order_release);
    }
    rl2_mx_unlock(s);
    /* A slot past the sink is a hostile writer's: the sink. */
    return u - 1 <= MX_USE_SINK ? u : MX_USE_SINK + 1;
}

/* ---- the upkeep's minute ------------------------------------------- */

/* The usage cells claimed, at most the table's: the word is in the
 * object, which any process of the server's user can write, and the
 * upkeep writes every cell it counts. */
static unsigned
rl2_mx_use_count(const mx_shm_t *s)
{
    unsigned n = atomic_load_explicit((_Atomic uint32_t *)&s->use_n,
                                      memory_order_acquire);

    return n < RL2_USAGE_CELLS ? n : RL2_USAGE_CELLS;
}

/* The interval a sketch held has ended: its estimate and peak into the
 * interval's point, if the point is still that interval's. */
static void
rl2_mx_point_end(mx_point_t *p, uint64_t stamp, const rl2_hll_t *sketch,
                 uint32_t peak_ppm)
{
    if (atomic_load_explicit(&p->stamp, memory_order_acquire) != stamp) {
        return;
    }
    atomic_store_explicit(&p->clients, rl2_hll_estimate(sketch),
                          memory_order_relaxed);
    if (peak_ppm > atomic_load_explicit(&p->peak_ppm, memory_order_relaxed)) {
        atomic_store_explicit(&p->peak_ppm, peak_ppm, memory_order_relaxed);
    }
}

/* The minute's peak into its hour's point (an hour's peak is the max of
 * its minutes'). */
static void
rl2_mx_hour_peak(mx_shm_t *s, unsigned use, uint64_t minute_stamp,
                 uint32_t peak_ppm)
{
    uint64_t    h = (minute_stamp - 1) / 60 + 1;
    mx_point_t *p = rl2_mx_hour_point(s, use, h);

    if (atomic_load_explicit(&p->stamp, memory_order_acquire) == h
        && peak_ppm
               > atomic_load_explicit(&p->peak_ppm, memory_order_relaxed)) {
        atomic_store_explicit(&p->peak_ppm, peak_ppm, memory_order_relaxed);
    }
}

/* Registers of an idle sketch cleared by one upkeep: 32 upkeeps clear
 * one (with traffic, in the first half of the next minute). */
#define USE_CLEAR_PART (RL2_HLL_REGS / 32)

/* The intervals that ended, in one cell: the minute's estimate and
 * peak into its point (and the peak into its hour's), and when an hour
 * ended too, the hour's estimate; their sums reset (the registers are
 * cleared later, by parts). */
static void
rl2_mx_use_end(mx_shm_t *s, unsigned u, unsigned cur, unsigned hcur,
               uint64_t m_old, uint64_t h_old, int new_hour)
{
    mx_use_live_t *lv = &s->use_live[u];
    uint32_t       peak = atomic_exchange(&lv->peak_ppm[cur], 0);

    if (m_old != 0) {
        rl2_mx_point_end(rl2_mx_minute_point(s, u, m_old), m_old,
                         &lv->minute[cur], peak);
        rl2_mx_hour_peak(s, u, m_old, peak);
    }
    rl2_hll_clear_sums(&lv->minute[cur]);
    if (new_hour) {
        if (h_old != 0) {
            rl2_mx_point_end(rl2_mx_hour_point(s, u, h_old), h_old,
                             &lv->hour[hcur], 0);
        }
        rl2_hll_clear_sums(&lv->hour[hcur]);
    }
}

/* The minute that ended (m_old, its sketches in phase cur) to the
 * minute callback: each cell that had a request, its counts the
 * difference between the totals its point opened with and the ones the
 * new minute's point has just opened with.  The callback runs after the
 * flip, on the sketches requests no longer write, and before
 * rl2_mx_use_end takes their peaks and resets their sums and before
 * use_min_left lets an upkeep clear the first part of their registers:
 * it sees the whole minute, registers and sums alike. */
static void
rl2_mx_use_export(mx_shm_t *s, unsigned n, unsigned cur, uint64_t m_old,
                  uint64_t m_new, rl2_usage_minute_fn *fn, void *ctx)
{
    rl2_usage_minute_cell_t cells[RL2_USAGE_CELLS];
    size_t                  k = 0;

    for (unsigned u = 0; u < n && u < RL2_USAGE_CELLS; u++) {
        const mx_point_t        *p = rl2_mx_minute_point(s, u, m_old);
        const mx_point_t        *q = rl2_mx_minute_point(s, u, m_new);
        rl2_usage_minute_cell_t *c = &cells[k];
        uint64_t                 d[3];

        if (atomic_load_explicit(&p->stamp, memory_order_acquire) != m_old) {
            continue;
        }
        for (unsigned j = 0; j < 3; j++) {
            d[j] = atomic_load_explicit(&q->total[j], memory_order_relaxed)
                   - atomic_load_explicit(&p->total[j], memory_order_relaxed);
        }
        if (d[0] == 0) {
            continue;
        }
        c->rule = rl2_mx_slot_label(s->rules, RL2_METRICS_RULES,
                                    s->use_cells[u].rule);
        c->tier = rl2_mx_slot_label(s->tiers, RL2_METRICS_TIERS,
                                    s->use_cells[u].tier);
        c->requests = d[0];
        c->admitted = d[1];
        c->refused = d[2];
        c->peak_ppm = atomic_load_explicit(&s->use_live[u].peak_ppm[cur],
                                           memory_order_relaxed);
        c->sketch = &s->use_live[u].minute[cur];
        k++;
    }
    if (k > 0) {
        rl2_usage_minute_result_t r =
            fn(ctx, (int64_t)(m_old - 1) * 60, cells, k);

        if ((unsigned)r < RL2_USAGE_MINUTE_RESULTS) {
            atomic_fetch_add_explicit(&s->use_pushes[r], 1,
                                      memory_order_relaxed);
        }
    }
}

/* Up to `most` registers of the idle sketches (minute or hour) of every
 * cell cleared, from where the last part stopped. */
static void
rl2_mx_use_clear(mx_shm_t *s, unsigned n, _Atomic uint32_t *left, int hours,
                 unsigned idle, unsigned most)
{
    unsigned l = atomic_load(left), k;

    /* Never from below the first register, whatever the word says. */
    l = l < RL2_HLL_REGS ? l : RL2_HLL_REGS;
    k = l < most ? l : most;

    if (k == 0) {
        return;
    }
    for (unsigned u = 0; u < n; u++) {
        rl2_hll_t *h =
            hours ? &s->use_live[u].hour[idle] : &s->use_live[u].minute[idle];

        rl2_hll_clear_part(h, RL2_HLL_REGS - l, k);
    }
    atomic_store(left, l - k);
}

void
rl2_mx_use_upkeep(mx_shm_t *s)
{
    unsigned n = rl2_mx_use_count(s);
    unsigned phase = atomic_load(&s->use_phase);

    rl2_mx_use_clear(s, n, &s->use_min_left, 0, (phase & 1) ^ 1,
                     USE_CLEAR_PART);
    rl2_mx_use_clear(s, n, &s->use_hour_left, 1, ((phase >> 1) & 1) ^ 1,
                     USE_CLEAR_PART);
}

/* One process a minute (rl2_mx_snapshot's compare-and-swap): every
 * cell's point for the new minute (and hour); the sketches about to be
 * written cleared to the end; the flip that sends requests to them;
 * then the minute that ended to fn (when not NULL); then the old
 * sketches estimated into their points, left for the upkeeps to clear.
 * A request that read the phase just before the flip may still write
 * an old sketch: a register that counts toward its next interval.  The
 * sink's sketches are never read, nor cleared. */
void
rl2_mx_use_snapshot(mx_shm_t *s, uint64_t minute, rl2_usage_minute_fn *fn,
                    void *ctx)
{
    unsigned n = rl2_mx_use_count(s);
    unsigned phase = atomic_load(&s->use_phase);
    unsigned cur = phase & 1, hcur = (phase >> 1) & 1;
    uint64_t m_new = minute + 1, h_new = minute / 60 + 1;
    uint64_t m_old = atomic_load(&s->use_min_open[cur]);
    uint64_t h_old = atomic_load(&s->use_hour_open[hcur]);
    int      new_hour = h_old != h_new;
    uint64_t t[3];

    if (m_old == m_new) {
        return;
    }
    for (unsigned u = 0; u < n; u++) {
        rl2_mx_use_totals(s, u, t);
        rl2_mx_point_open(rl2_mx_minute_point(s, u, m_new), m_new, t);
        if (new_hour) {
            rl2_mx_point_open(rl2_mx_hour_point(s, u, h_new), h_new, t);
        }
    }
    rl2_mx_use_clear(s, n, &s->use_min_left, 0, cur ^ 1, RL2_HLL_REGS);
    atomic_store(&s->use_min_open[cur ^ 1], m_new);
    if (new_hour) {
        rl2_mx_use_clear(s, n, &s->use_hour_left, 1, hcur ^ 1, RL2_HLL_REGS);
        atomic_store(&s->use_hour_open[hcur ^ 1], h_new);
    }
    atomic_store(&s->use_phase, phase ^ 1u ^ (new_hour ? 2u : 0u));
    /* Before the ends (they take the peaks and reset the sums) and before
     * use_min_left below (the upkeeps start clearing the registers): a
     * slow callback only delays both, and an upkeep of another process
     * meanwhile finds nothing left to clear. */
    if (fn != NULL && m_old != 0) {
        rl2_mx_use_export(s, n, cur, m_old, m_new, fn, ctx);
    }
    for (unsigned u = 0; u < n; u++) {
        rl2_mx_use_end(s, u, cur, hcur, m_old, h_old, new_hour);
    }
    /* A sketch that held no interval (the first ones) has nothing to
     * clear. */
    if (m_old != 0) {
        atomic_store(&s->use_min_left, RL2_HLL_REGS);
    }
    if (new_hour && h_old != 0) {
        atomic_store(&s->use_hour_left, RL2_HLL_REGS);
    }
}

/* ---- top clients by use -------------------------------------------- */

/* Space-saving (as the top tables of metrics_clients.c), weighted: a
 * client not in a full table takes the entry with the smallest count,
 * inherits that count as its error, and adds its weight. */
void
rl2_mx_use_top(mx_shm_t *s, const rl2_digest_t *key, const char *client,
               unsigned rule, uint32_t share_ppm, int64_t wall_s)
{
    mx_use_top_t *t = s->use_top, *e = NULL, *min = &t[0];
    size_t        n;

    if (client[0] == '\0') {
        client = "-"; /* "" marks a free entry */
    }
    if (!rl2_mx_lock(s)) {
        return;
    }
    for (size_t i = 0; i < RL2_USAGE_TOP && e == NULL; i++) {
        if (t[i].client[0] != '\0' && t[i].key.hi == key->hi
            && t[i].key.lo == key->lo) {
            e = &t[i];
        }
        else if (t[i].client[0] == '\0'
                 || (min->client[0] != '\0' && t[i].count < min->count)) {
            min = &t[i];
        }
    }
    if (e == NULL) {
        e = min;
        e->error = e->client[0] != '\0' ? e->count : 0;
        e->count = e->error;
        e->peak_ppm = 0;
        e->key = *key;
        n = strnlen(client, RL2_METRICS_CLIENT_MAX - 1);
        memcpy(e->client, client, n);
        e->client[n] = '\0';
    }
    e->count += RL2_USAGE_TOP_SAMPLE;
    e->rule = rule;
    e->peak_ppm = share_ppm > e->peak_ppm ? share_ppm : e->peak_ppm;
    e->last_wall_s = wall_s;
    rl2_mx_unlock(s);
}
