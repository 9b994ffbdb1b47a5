/*
 * metrics.c -- the metrics object: opening it, naming rule and tier
 * slots, binding a policy to them, and counting one request (see
 * metrics.h).  Owns the hot path of the counters; the client tables and
 * alerts are in metrics_clients.c, reading in metrics_read.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics_internal.h"
#include "base/base_internal.h"

#define NAME_SPINS \
    100000 /* a writer publishes a name in nanoseconds: \
              one still unpublished after this many \
              yields died while writing it */

struct rl2_metrics_bind {
    rl2_metrics_t    *m;
    mx_shm_t         *shm; /* m->shm, one load nearer */
    const rl2_rule_t *rules;
    size_t            n_rules;
    size_t            rules_bytes; /* n_rules * sizeof(rl2_rule_t) */
    size_t            extra_bytes;
    const rl2_rule_t *dflt;
    const rl2_rule_t *extra;
    size_t            n_extra;
    size_t            n_tiers;
    uint16_t          dflt_slot;
    uint16_t         *rule_slot; /* [n_rules + n_extra] */
    uint16_t         *tier_slot; /* [n_tiers + 1]: [0] for "no tier"
                                    (verdict tier -1), then each tier */
};

void
rl2_metrics_conf_default(rl2_metrics_conf_t *conf)
{
    conf->limited_interval_ms = 60000;
    conf->ban_count = 0;
    conf->ban_window_ms = 60000;
    conf->eviction_alert = 1000;
    conf->anomaly_min = 60;
    conf->zone_warning = (rl2_zone_threshold_t){ 800000, 0 };
    conf->zone_critical = (rl2_zone_threshold_t){ 1000000, 0 };
}

/* "N%", a size "N[KMG]", or "off", into *t; the text ends at end. */
static int
rl2_mx_threshold_parse(const char *text, const char *end,
                       rl2_zone_threshold_t *t)
{
    uint64_t v = 0, unit = 1;
    size_t   len = (size_t)(end - text), digits = 0;

    t->share_ppm = 0;
    t->bytes = 0;
    if (len == 3 && memcmp(text, "off", 3) == 0) {
        return 1;
    }
    while (digits < len && text[digits] >= '0' && text[digits] <= '9') {
        if (v > (UINT64_C(1) << 40)) {
            return 0; /* beyond any zone: no overflow below */
        }
        v = v * 10 + (uint64_t)(text[digits++] - '0');
    }
    if (digits == 0 || v == 0 || len - digits > 1) {
        return 0;
    }
    if (len - digits == 1 && text[digits] == '%') {
        t->share_ppm = (uint32_t)(v * 10000);
        return v <= 100;
    }
    if (len - digits == 1) {
        const char *units = "KMG", *u = strchr(units, text[digits]);

        if (u == NULL || text[digits] == '\0') {
            return 0;
        }
        unit = UINT64_C(1) << (10 * (u - units + 1));
    }
    if (v > UINT64_MAX / unit) {
        return 0;
    }
    t->bytes = v * unit;
    return 1;
}

rl2_status_t
rl2_metrics_zone_full_parse(const char *text, rl2_metrics_conf_t *conf,
                            rl2_err_t *err)
{
    const char          *slash = strchr(text, '/');
    const char          *end = text + strlen(text);
    rl2_zone_threshold_t w, c = { 0, 0 };

    if (!rl2_mx_threshold_parse(text, slash != NULL ? slash : end, &w)
        || (slash != NULL && !rl2_mx_threshold_parse(slash + 1, end, &c))) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "zone_full=%.64s: expected off, WARNING or "
                           "WARNING/CRITICAL, each N%% (1 to 100), a size "
                           "N, NK, NM or NG, or off",
                           text);
    }
    if ((w.share_ppm != 0 && w.share_ppm >= c.share_ppm && c.share_ppm != 0)
        || (w.bytes != 0 && w.bytes >= c.bytes && c.bytes != 0)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "zone_full=%.64s: the warning must be below the "
                           "critical level",
                           text);
    }
    conf->zone_warning = w;
    conf->zone_critical = c;
    return RL2_OK;
}

/* ---- names ---------------------------------------------------------- */

static uint32_t
rl2_mx_name_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

/* Publish name in a free slot; 1 when this call did. */
static int
rl2_mx_name_claim(mx_name_t *slot, const char *name)
{
    uint32_t free_state = MX_FREE;

    if (!atomic_compare_exchange_strong_explicit(
            &slot->state, &free_state, MX_WRITING, memory_order_acquire,
            memory_order_relaxed)) {
        return 0;
    }
    size_t n = strnlen(name, RL2_NAME_MAX);

    memcpy(slot->name, name, n);
    slot->name[n] = '\0';
    atomic_store_explicit(&slot->state, MX_NAMED, memory_order_release);
    return 1;
}

static uint32_t
rl2_mx_name_wait(mx_name_t *slot)
{
    uint32_t st = atomic_load_explicit(&slot->state, memory_order_acquire);

    for (int i = 0; st == MX_WRITING && i < NAME_SPINS; i++) {
        sched_yield();
        st = atomic_load_explicit(&slot->state, memory_order_acquire);
    }
    return st;
}

/* Every process probes the same sequence and claims the first free slot
 * by compare-and-swap, so two processes naming the same new rule at once
 * end up in one slot: the loser finds the winner's name there. */
unsigned
rl2_mx_name_slot(mx_name_t *table, unsigned cap, unsigned first,
                 const char *name)
{
    unsigned span = cap - first;
    uint32_t h = rl2_mx_name_hash(name);

    for (unsigned i = 0; i < span; i++) {
        unsigned s = first + (h + i) % span;
        uint32_t st = rl2_mx_name_wait(&table[s]);

        if (st == MX_FREE) {
            if (rl2_mx_name_claim(&table[s], name)) {
                return s;
            }
            st = rl2_mx_name_wait(&table[s]);
        }
        if (st == MX_NAMED && strncmp(table[s].name, name, RL2_NAME_MAX) == 0) {
            return s;
        }
    }
    return RL2_METRICS_SLOT_OTHER;
}

static void
rl2_mx_names_reserve(mx_shm_t *s)
{
    rl2_mx_name_claim(&s->rules[RL2_METRICS_SLOT_BYPASS], "(bypass)");
    rl2_mx_name_claim(&s->rules[RL2_METRICS_SLOT_OTHER], "(other)");
    rl2_mx_name_claim(&s->rules[MX_SLOT_UNMATCHED], RL2_USAGE_UNMATCHED);
    rl2_mx_name_claim(&s->tiers[RL2_METRICS_TIER_NONE], "(none)");
    rl2_mx_name_claim(&s->tiers[RL2_METRICS_SLOT_OTHER], "(other)");
}

/* ---- lifetime --------------------------------------------------------- */

rl2_status_t
rl2_metrics_open(const char *name, unsigned mode,
                 const rl2_metrics_conf_t *conf, rl2_alert_t *alert,
                 rl2_zone_t *zone, rl2_metrics_t **out, rl2_err_t *err)
{
    rl2_metrics_t *m;
    rl2_clock_t    now;
    int64_t        zero = 0;
    rl2_status_t   st;
    void          *map;

    *out = NULL;
    if (conf->limited_interval_ms < 0 || conf->ban_window_ms <= 0) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "metrics %s: negative "
                           "interval or empty ban window",
                           name);
    }
    if ((m = calloc(1, sizeof(*m))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "metrics: out of memory");
    }
    st = rl2_shm_obj_open(name, sizeof(mx_shm_t), MX_MAGIC, MX_VERSION, mode,
                          &map, err);
    if (st != RL2_OK) {
        free(m);
        return st;
    }
    m->shm = map;
    m->conf = *conf;
    m->alert = alert;
    m->zone = zone;
    rl2_mx_names_reserve(m->shm);
    rl2_clock_now(&now);
    atomic_compare_exchange_strong(&m->shm->created_wall_s, &zero,
                                   now.wall_us / RL2_US_PER_S);
    *out = m;
    return RL2_OK;
}

void
rl2_metrics_on_minute(rl2_metrics_t *m, rl2_usage_minute_fn *fn, void *ctx)
{
    m->on_minute = fn;
    m->on_minute_ctx = ctx;
}

void
rl2_metrics_close(rl2_metrics_t *m)
{
    if (m == NULL) {
        return;
    }
    rl2_shm_obj_close(m->shm, sizeof(mx_shm_t));
    free(m);
}

rl2_status_t
rl2_metrics_unlink(const char *name, rl2_err_t *err)
{
    return rl2_shm_obj_unlink(name, err);
}

/* ---- binding a policy ---------------------------------------------- */

static uint16_t
rl2_mx_bind_rule(rl2_metrics_t *m, const rl2_rule_t *r, size_t *unplaced)
{
    unsigned s = rl2_mx_name_slot(m->shm->rules, RL2_METRICS_RULES,
                                  MX_FIRST_RULE, r->name);

    *unplaced += s == RL2_METRICS_SLOT_OTHER;
    return (uint16_t)s;
}

rl2_status_t
rl2_metrics_bind(rl2_metrics_t *m, const rl2_policy_t *policy,
                 const rl2_rule_t *extra, size_t n_extra,
                 rl2_metrics_bind_t **out, size_t *unplaced, rl2_err_t *err)
{
    rl2_metrics_bind_t *b;
    size_t              n = policy->n_rules + n_extra, lost = 0;

    *out = NULL;
    if (m == NULL) {
        return RL2_OK;
    }
    b = calloc(1, sizeof(*b) + sizeof(uint16_t) * (n + policy->n_tiers + 1));
    if (b == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "metrics: out of memory");
    }
    b->m = m;
    b->shm = m->shm;
    b->rules = policy->rules;
    b->n_rules = policy->n_rules;
    b->dflt = policy->default_rule;
    b->extra = extra;
    b->n_extra = n_extra;
    b->rules_bytes = policy->n_rules * sizeof(rl2_rule_t);
    b->extra_bytes = n_extra * sizeof(rl2_rule_t);
    b->n_tiers = policy->n_tiers;
    b->rule_slot = (uint16_t *)(b + 1);
    b->tier_slot = b->rule_slot + n;
    b->tier_slot[0] = RL2_METRICS_TIER_NONE;
    for (size_t i = 0; i < policy->n_rules; i++) {
        b->rule_slot[i] = rl2_mx_bind_rule(m, &policy->rules[i], &lost);
    }
    for (size_t i = 0; i < n_extra; i++) {
        b->rule_slot[policy->n_rules + i] =
            rl2_mx_bind_rule(m, &extra[i], &lost);
    }
    if (b->dflt != NULL) {
        b->dflt_slot = rl2_mx_bind_rule(m, b->dflt, &lost);
    }
    for (size_t i = 0; i < policy->n_tiers; i++) {
        unsigned s = rl2_mx_name_slot(m->shm->tiers, RL2_METRICS_TIERS, 2,
                                      policy->tiers[i].name);

        lost += s == RL2_METRICS_SLOT_OTHER;
        b->tier_slot[i + 1] = (uint16_t)s;
    }
    if (unplaced != NULL) {
        *unplaced = lost;
    }
    *out = b;
    return RL2_OK;
}

void
rl2_metrics_unbind(rl2_metrics_bind_t *b)
{
    free(b);
}

unsigned long
rl2_metrics_loaded(rl2_metrics_t *m)
{
    return (unsigned long)atomic_fetch_add(&m->shm->loads, 1) + 1;
}

/* ---- the hot path ---------------------------------------------------- */

/* The default rule, or an inline rule copied by a per-directory merge
 * (found by name). */
static __attribute__((noinline)) unsigned
rl2_mx_rule_slot_other(const rl2_metrics_bind_t *b, const rl2_rule_t *r)
{
    if (r == b->dflt) {
        return b->dflt_slot;
    }
    return rl2_mx_name_slot(b->shm->rules, RL2_METRICS_RULES, MX_FIRST_RULE,
                            r->name);
}

/* A rule's slot: by its place in the bound arrays (a subtraction and a
 * compare each). */
static inline unsigned
rl2_mx_rule_slot(const rl2_metrics_bind_t *b, const rl2_rule_t *r)
{
    uintptr_t d = (uintptr_t)r - (uintptr_t)b->rules;

    if (d < b->rules_bytes) {
        return b->rule_slot[d / sizeof(*r)];
    }
    d = (uintptr_t)r - (uintptr_t)b->extra;
    if (d < b->extra_bytes) {
        return b->rule_slot[b->n_rules + d / sizeof(*r)];
    }
    return rl2_mx_rule_slot_other(b, r);
}

static inline void
rl2_mx_bump(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

enum { F_DENIED = 1, F_DRY = 2, F_NEAR = 4, F_OVER = 8 };

typedef struct {
    uint16_t slot;
    uint8_t  flags;
    uint8_t  layer; /* the first layer that set F_NEAR or F_DENIED */
    uint8_t  first; /* the rule's first layer: its key is the client's
                       in the rule's usage (the same every request) */
} mx_seen_t;

/* The share of its limit a layer's client has used, in ppm (1 at
 * least: an admitted request uses some); 0 for an unlimited limit.  Out
 * of the common path: a request computes it only when it may beat the
 * cell's peak (rl2_mx_use_layer) and in the sampled top table. */
static uint32_t
rl2_mx_share_ppm(const rl2_layer_t *l)
{
    int64_t  limit = l->result.limit, used = limit - l->result.remaining;
    uint32_t ppm;

    if (limit <= 0 || l->limit->unlimited) {
        return 0;
    }
    if (used >= limit) {
        return 1000000;
    }
    if (used <= 0) {
        return 1;
    }
    /* 0 < used < limit: the quotient is below 10^6; 128 bits, so no
     * limit is too large for the product. */
    ppm = (uint32_t)((unsigned __int128)used * 1000000u
                     / (unsigned __int128)limit);
    return ppm > 0 ? ppm : 1;
}

/* Admitted with at least 80% of the limit used (the usual answer, no,
 * is known from the first test). */
static int
rl2_mx_layer_near(const rl2_layer_t *l)
{
    return l->result.remaining * 5 <= l->result.limit && l->result.limit > 0
           && !l->refused && !l->limit->unlimited;
}

static unsigned
rl2_mx_fold_layers(const rl2_metrics_bind_t *b, const rl2_verdict_t *v,
                   mx_seen_t *seen)
{
    unsigned n = 0, j;

    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i];
        unsigned           s;
        uint8_t            f = 0;

        /* A challenger has its own counts (rl2_mx_record_experiment). */
        if (l->challenger) {
            continue;
        }
        s = rl2_mx_rule_slot(b, l->rule);
        for (j = 0; j < n && seen[j].slot != s; j++) {
        }
        if (j == n) {
            seen[n++] = (mx_seen_t){ (uint16_t)s, 0, (uint8_t)i, (uint8_t)i };
        }
        if (l->refused) {
            f = l->dry_run ? F_DRY : (l->limit->unlimited ? 0 : F_DENIED);
        }
        f |= (l->overflow_used ? F_OVER : 0)
             | (rl2_mx_layer_near(l) ? F_NEAR : 0);
        if ((f & (F_DENIED | F_NEAR)) != 0
            && (seen[j].flags & (F_DENIED | F_NEAR)) == 0) {
            seen[j].layer = (uint8_t)i;
        }
        seen[j].flags |= f;
    }
    return n;
}

/* ---- usage: the sketches, the peak, the sampled top table ---------- */

/* The live sketches and peaks of a (rule, tier) cell; the first
 * request counted in it claims its usage cell. */
static inline mx_use_live_t *
rl2_mx_use_live(mx_shm_t *s, unsigned slot, unsigned tier)
{
    unsigned u = atomic_load_explicit(&s->use_slot[MX_CELL(slot, tier)],
                                      memory_order_acquire);

    /* One test for both: 0 (not claimed yet) and a slot past the sink,
     * which only a hostile writer of the object leaves (the sink's
     * sketches then, never memory past the table). */
    if (__builtin_expect(u - 1 > MX_USE_SINK, 0)) {
        u = u == 0 ? rl2_mx_use_claim(s, slot, tier) : MX_USE_SINK + 1;
    }
    return &s->use_live[u - 1];
}

/* A client into the sketches requests write now: the minute's and the
 * hour's (one index and rank for both). */
static inline void
rl2_mx_use_sketch(mx_use_live_t *lv, unsigned phase, const rl2_digest_t *key)
{
    unsigned   i = rl2_hll_index(key);
    uint8_t    rank = rl2_hll_rank(key);
    rl2_hll_t *m = &lv->minute[phase & 1], *h = &lv->hour[(phase >> 1) & 1];

    if (rank > atomic_load_explicit(&m->reg[i], memory_order_relaxed)) {
        rl2_hll_raise(m, i, rank);
    }
    if (rank > atomic_load_explicit(&h->reg[i], memory_order_relaxed)) {
        rl2_hll_raise(h, i, rank);
    }
}

/* One request in RL2_USAGE_TOP_SAMPLE of this thread's feeds the top
 * table: per thread (no sharing, no atomics); initial-exec as
 * rl2_metrics_decide_sampled() explains. */
static inline int
rl2_mx_use_sampled(void)
{
    static __thread unsigned tick __attribute__((tls_model("initial-exec")));

    return (++tick & (RL2_USAGE_TOP_SAMPLE - 1)) == 0;
}

/* A share that may beat the peak: computed, and the larger kept. */
static __attribute__((noinline)) void
rl2_mx_use_peak(_Atomic uint32_t *peak, const rl2_layer_t *l)
{
    uint32_t ppm = rl2_mx_share_ppm(l);
    uint32_t was = atomic_load_explicit(peak, memory_order_relaxed);

    while (ppm > was
           && !atomic_compare_exchange_weak_explicit(
               peak, &was, ppm, memory_order_relaxed, memory_order_relaxed)) {
    }
}

/* A sampled request's layer into the top table (admitted: with its
 * share). */
static __attribute__((noinline)) void
rl2_mx_use_top_layer(mx_shm_t *s, const rl2_layer_t *l, unsigned slot,
                     int admitted, const rl2_clock_t *now)
{
    rl2_mx_use_top(s, &l->key, l->client, slot,
                   admitted ? rl2_mx_share_ppm(l) : 0,
                   now->wall_us / RL2_US_PER_S);
}

/* One layer's client into the usage of its cell: the minute's and the
 * hour's sketches, and for an admitted layer its share of the limit against the
 * minute's peak.  The share's test is a multiplication each side (128 bits, no
 * overflow): the division only when the peak may grow.  A negative `used`
 * (never from a store) wraps to a huge one and is judged there. */
static __attribute__((noinline)) void
rl2_mx_use_layer(mx_shm_t *s, const rl2_layer_t *l, unsigned slot,
                 unsigned tier, int admitted, const rl2_clock_t *now)
{
    mx_use_live_t *lv = rl2_mx_use_live(s, slot, tier);
    unsigned phase = atomic_load_explicit(&s->use_phase, memory_order_relaxed);
    _Atomic uint32_t *peak = &lv->peak_ppm[phase & 1];
    uint64_t          used = (uint64_t)(l->result.limit - l->result.remaining);
    uint64_t          was = atomic_load_explicit(peak, memory_order_relaxed);

    rl2_mx_use_sketch(lv, phase, &l->key);
    if (admitted
        && (unsigned __int128)used * 1000000u
               > (unsigned __int128)was * (uint64_t)l->result.limit) {
        rl2_mx_use_peak(peak, l);
    }
    if (__builtin_expect(rl2_mx_use_sampled(), 0)) {
        rl2_mx_use_top_layer(s, l, slot, admitted, now);
    }
}

/* Requests with no layer (no rule applied, or a bypass): counted, and
 * the client's address digested for the sketch (these requests pay for
 * no limit, so the hash is no burden). */
static __attribute__((noinline)) void
rl2_mx_use_unkeyed(mx_shm_t *s, const rl2_verdict_t *v, unsigned slot,
                   unsigned tier, rl2_metric_kind_t kind)
{
    /* Any fixed key will do: the digest only spreads addresses over the
     * sketch's registers. */
    static const rl2_hash_key_t k = { { 'r', 'l', '2', 'u', 's', 'a', 'g',
                                        'e' } };
    mx_use_live_t              *lv = rl2_mx_use_live(s, slot, tier);
    unsigned phase = atomic_load_explicit(&s->use_phase, memory_order_relaxed);
    rl2_digest_t d;

    rl2_mx_bump(&s->cells[slot][tier].n[kind]);
    if (v->client_ip[0] != '\0') {
        d = rl2_digest_keyed(&k, v->client_ip,
                             strnlen(v->client_ip, sizeof(v->client_ip)));
        rl2_mx_use_sketch(lv, phase, &d);
    }
}

/* A near-limit admission: its counter and the top table (rare). */
static __attribute__((noinline)) void
rl2_mx_record_near(rl2_metrics_bind_t *b, const rl2_layer_t *l, unsigned slot,
                   unsigned tier, const rl2_clock_t *now)
{
    rl2_mx_bump(&b->shm->cells[slot][tier].n[RL2_METRIC_NEAR]);
    rl2_mx_near(b->m, l->client, slot, now);
}

static void rl2_mx_use_one(rl2_metrics_bind_t *b, const rl2_layer_t *l,
                           unsigned cell, const rl2_clock_t *now);

/* What an admitted single layer rarely needs: its cell's usage cell
 * claimed, a share that may beat the minute's peak, the sampled top
 * table, a near-limit count.  After a claim, the common path again. */
static __attribute__((noinline)) void
rl2_mx_use_one_rare(rl2_metrics_bind_t *b, const rl2_layer_t *l, unsigned cell,
                    const rl2_clock_t *now, int sampled)
{
    mx_shm_t *s = b->shm;
    unsigned  slot = MX_CELL_SLOT(cell), tier = MX_CELL_TIER(cell), phase;

    if (atomic_load_explicit(&s->use_slot[MX_CELL(slot, tier)],
                             memory_order_acquire)
        == 0) {
        /* A claim that could not have the lock leaves the slot 0: this
         * request goes without a series rather than trying again (the
         * holder may be stopped), as rl2_mx_use_claim() says. */
        if (rl2_mx_use_claim(s, slot, tier) == MX_USE_SINK + 1
            && atomic_load_explicit(&s->use_slot[cell], memory_order_acquire)
                   == 0) {
            if (rl2_mx_layer_near(l)) {
                rl2_mx_record_near(b, l, slot, tier, now);
            }
            return;
        }
        rl2_mx_use_one(b, l, cell, now);
        return;
    }
    phase = atomic_load_explicit(&s->use_phase, memory_order_relaxed) & 1;
    rl2_mx_use_peak(&rl2_mx_use_live(s, slot, tier)->peak_ppm[phase], l);
    if (sampled) {
        rl2_mx_use_top_layer(s, l, slot, 1, now);
    }
    if (rl2_mx_layer_near(l)) {
        rl2_mx_record_near(b, l, slot, tier, now);
    }
}

/* The usage of an admitted single layer (rl2_mx_use_layer for the
 * common case): the minute's sketch, and a test of its share against
 * the minute's peak (a multiplication each side, 128 bits: no overflow;
 * the division only when the peak may grow; a negative `used`, never
 * from a store, wraps to a huge one and is judged there).  Every call
 * it makes is its last act, so the common case saves no registers. */
static __attribute__((noinline)) void
rl2_mx_use_one(rl2_metrics_bind_t *b, const rl2_layer_t *l, unsigned cell,
               const rl2_clock_t *now)
{
    mx_shm_t *s = b->shm;
    unsigned u = atomic_load_explicit(&s->use_slot[cell], memory_order_acquire);
    unsigned phase;
    mx_use_live_t *lv;
    uint64_t       used, peak;
    int            sampled;

    /* 0 (not claimed yet) or past the sink (rl2_mx_use_live). */
    if (__builtin_expect(u - 1 > MX_USE_SINK, 0)) {
        rl2_mx_use_one_rare(b, l, cell, now, 0);
        return;
    }
    phase = atomic_load_explicit(&s->use_phase, memory_order_relaxed);
    lv = &s->use_live[u - 1];
    rl2_mx_use_sketch(lv, phase, &l->key);
    used = (uint64_t)(l->result.limit - l->result.remaining);
    peak = atomic_load_explicit(&lv->peak_ppm[phase & 1], memory_order_relaxed);
    sampled = rl2_mx_use_sampled();
    if (__builtin_expect(sampled, 0) || rl2_mx_layer_near(l)
        || (unsigned __int128)used * 1000000u
               > (unsigned __int128)peak * (uint64_t)l->result.limit) {
        rl2_mx_use_one_rare(b, l, cell, now, sampled);
    }
}

/* One admitted layer into its cell.  Every call it makes is its last
 * act, so the common case saves no registers. */
static inline void
rl2_mx_count_one(rl2_metrics_bind_t *b, const rl2_layer_t *l, unsigned slot,
                 unsigned tier, const rl2_clock_t *now)
{
    mx_cell_t *c = &b->shm->cells[slot][tier];

    rl2_mx_bump(&c->n[l->refused && l->dry_run ? RL2_METRIC_DRY_RUN
                                               : RL2_METRIC_ALLOWED]);
    if (l->overflow_used) {
        rl2_mx_bump(&c->n[RL2_METRIC_OVERFLOW]);
    }
    rl2_mx_use_one(b, l, MX_CELL(slot, tier), now);
}

/* The one layer's rule is the default rule or a merged copy. */
static __attribute__((noinline)) void
rl2_mx_record_one_other(rl2_metrics_bind_t *b, const rl2_layer_t *l,
                        unsigned tier, const rl2_clock_t *now)
{
    rl2_mx_count_one(b, l, rl2_mx_rule_slot_other(b, l->rule), tier, now);
}

/* The common case, one layer admitted: no folding. */
static void
rl2_mx_record_one(rl2_metrics_bind_t *b, const rl2_verdict_t *v, unsigned tier,
                  const rl2_clock_t *now)
{
    const rl2_layer_t *l = &v->layers[0];
    uintptr_t          d = (uintptr_t)l->rule - (uintptr_t)b->rules;
    unsigned           slot;

    if (d < b->rules_bytes) {
        slot = b->rule_slot[d / sizeof(rl2_rule_t)];
    }
    else if ((d = (uintptr_t)l->rule - (uintptr_t)b->extra) < b->extra_bytes) {
        slot = b->rule_slot[b->n_rules + d / sizeof(rl2_rule_t)];
    }
    else {
        rl2_mx_record_one_other(b, l, tier, now);
        return;
    }
    rl2_mx_count_one(b, l, slot, tier, now);
}

/* An admitted request's other layers: a rule's peak is the largest
 * share of any of its limits (its first layer's is in already). */
static void
rl2_mx_use_shares(rl2_metrics_bind_t *b, const rl2_verdict_t *v, unsigned tier)
{
    for (size_t i = 1; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i];
        mx_use_live_t     *lv;
        unsigned           phase;

        if (l->challenger) {
            continue;
        }
        lv = rl2_mx_use_live(b->shm, rl2_mx_rule_slot(b, l->rule), tier);
        phase = atomic_load_explicit(&b->shm->use_phase, memory_order_relaxed);
        rl2_mx_use_peak(&lv->peak_ppm[phase & 1], l);
    }
}

/* Several layers, a refusal or a bypass: fold the layers by rule. */
static __attribute__((noinline)) void
rl2_mx_record_many(rl2_metrics_bind_t *b, const rl2_verdict_t *v, unsigned tier,
                   const rl2_clock_t *now)
{
    mx_seen_t seen[RL2_MAX_LAYERS];
    mx_shm_t *sh = b->shm;
    unsigned  n, near = RL2_MAX_LAYERS, denied = RL2_MAX_LAYERS;
    int       deny = v->outcome == RL2_OUTCOME_DENY;

    if (v->outcome == RL2_OUTCOME_BYPASS) {
        rl2_mx_use_unkeyed(sh, v, RL2_METRICS_SLOT_BYPASS, tier,
                           RL2_METRIC_BYPASSED);
        return;
    }
    n = rl2_mx_fold_layers(b, v, seen);
    for (unsigned j = 0; j < n; j++) {
        mx_cell_t *c = &sh->cells[seen[j].slot][tier];
        unsigned   f = seen[j].flags;

        /* The rule's first layer: the same key for its client on every
         * request; its share stands for the rule's. */
        if (!deny || (f & F_DENIED)) {
            rl2_mx_use_layer(sh, &v->layers[seen[j].first], seen[j].slot, tier,
                             !deny, now);
        }
        if (deny) {
            if (f & F_DENIED) {
                rl2_mx_bump(&c->n[RL2_METRIC_DENIED]);
                denied = denied < RL2_MAX_LAYERS ? denied : j;
            }
            continue;
        }
        rl2_mx_bump(&c->n[f & F_DRY ? RL2_METRIC_DRY_RUN : RL2_METRIC_ALLOWED]);
        if (f & F_NEAR) {
            rl2_mx_bump(&c->n[RL2_METRIC_NEAR]);
            near = near < RL2_MAX_LAYERS ? near : j;
        }
        if (f & F_OVER) {
            rl2_mx_bump(&c->n[RL2_METRIC_OVERFLOW]);
        }
    }
    if (!deny) {
        rl2_mx_use_shares(b, v, tier);
    }
    if (denied < RL2_MAX_LAYERS) {
        rl2_mx_limited(b->m, v, seen[denied].slot, tier, now);
    }
    else if (near < RL2_MAX_LAYERS) {
        rl2_mx_near(b->m, v->layers[seen[near].layer].client, seen[near].slot,
                    now);
    }
}

/* ---- experiments ---------------------------------------------------- */

/* The slot of (rule, variant), claimed as name slots are (every process
 * probes the same sequence), or NULL when the table is full. */
static mx_exp_t *
rl2_mx_exp_slot(mx_shm_t *shm, const char *rule, const char *variant)
{
    uint32_t h = rl2_mx_name_hash(rule) ^ (rl2_mx_name_hash(variant) * 31u);

    for (unsigned i = 0; i < MX_EXPERIMENTS; i++) {
        mx_exp_t *x = &shm->experiments[(h + i) % MX_EXPERIMENTS];
        uint32_t  st = atomic_load_explicit(&x->state, memory_order_acquire);
        uint32_t  free_state = MX_FREE;

        if (st == MX_FREE
            && atomic_compare_exchange_strong_explicit(
                &x->state, &free_state, MX_WRITING, memory_order_acquire,
                memory_order_relaxed)) {
            snprintf(x->rule, sizeof(x->rule), "%s", rule);
            snprintf(x->variant, sizeof(x->variant), "%s", variant);
            atomic_store_explicit(&x->state, MX_NAMED, memory_order_release);
            return x;
        }
        for (int spin = 0; spin < NAME_SPINS && st != MX_NAMED; spin++) {
            sched_yield();
            st = atomic_load_explicit(&x->state, memory_order_acquire);
        }
        if (st == MX_NAMED && strncmp(x->rule, rule, RL2_NAME_MAX) == 0
            && strncmp(x->variant, variant, RL2_VARIANT_NAME_MAX) == 0) {
            return x;
        }
    }
    rl2_mx_bump(&shm->exp_unplaced);
    return NULL;
}

/* Count one outcome of (rule, variant) once per request: layers of the
 * same rule and variant (or challenger) before layer i were counted. */
static void
rl2_mx_exp_count(mx_shm_t *shm, const rl2_verdict_t *v, size_t i)
{
    const rl2_layer_t *l = &v->layers[i];
    const char        *var = "";
    int                denied = 0;
    mx_exp_t          *x;

    for (size_t j = 0; j < v->n_layers; j++) {
        const rl2_layer_t *o = &v->layers[j];

        if (o->rule != l->rule || o->challenger != l->challenger
            || o->variant != l->variant) {
            continue;
        }
        if (j < i) {
            return;
        }
        denied |= o->refused && !o->limit->unlimited;
    }
    if (!l->challenger) {
        /* As the rule's cells: a refusal counts under the rules that
         * refused only. */
        if (v->outcome == RL2_OUTCOME_DENY && !denied) {
            return;
        }
        denied = v->outcome == RL2_OUTCOME_DENY;
        var = l->rule->variants[l->variant - 1].name;
    }
    if ((x = rl2_mx_exp_slot(shm, l->rule->name, var)) != NULL) {
        rl2_mx_bump(&x->n[denied ? 1 : 0]);
    }
}

/* The variants and challengers of a verdict (rare: only rules with
 * experiments reach it). */
static __attribute__((noinline)) void
rl2_mx_record_experiment(rl2_metrics_bind_t *b, const rl2_verdict_t *v)
{
    if (v->outcome != RL2_OUTCOME_ALLOW && v->outcome != RL2_OUTCOME_DENY) {
        return;
    }
    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i];

        if (l->challenger || l->variant != 0) {
            rl2_mx_exp_count(b->shm, v, i);
        }
    }
}

/* The verdict's tier is -1 or a tier of the policy bound (decide.c);
 * anything else counts as no tier. */
static unsigned
rl2_mx_tier_slot(const rl2_metrics_bind_t *b, const rl2_verdict_t *v)
{
    size_t i = (size_t)((int64_t)v->tier + 1);

    return i <= b->n_tiers ? b->tier_slot[i] : RL2_METRICS_TIER_NONE;
}

/* Everything but the common case, out of line so that the common case
 * saves no registers: the once-a-second upkeep first (a minute's
 * snapshot excludes its first request), then the request. */
static __attribute__((noinline)) void
rl2_mx_record_slow(rl2_metrics_bind_t *b, const rl2_verdict_t *v,
                   const rl2_clock_t *now)
{
    if (now->mono_us
        >= atomic_load_explicit(&b->shm->next_check_us, memory_order_relaxed)) {
        rl2_mx_upkeep(b->m, now);
    }
    if (v->outcome == RL2_OUTCOME_NONE) {
        rl2_mx_use_unkeyed(b->shm, v, MX_SLOT_UNMATCHED, rl2_mx_tier_slot(b, v),
                           RL2_METRIC_UNMATCHED);
        return;
    }
    if (v->banned) {
        rl2_mx_banned(b->m, v);
    }
    if (v->outcome == RL2_OUTCOME_ALLOW && v->n_layers == 1 && !v->experiment) {
        rl2_mx_record_one(b, v, rl2_mx_tier_slot(b, v), now);
    }
    else {
        rl2_mx_record_many(b, v, rl2_mx_tier_slot(b, v), now);
    }
    if (v->experiment) {
        rl2_mx_record_experiment(b, v);
    }
}

void
rl2_metrics_record(rl2_metrics_bind_t *b, const rl2_verdict_t *v,
                   const rl2_clock_t *now)
{
    if (b == NULL) {
        return;
    }
    if (v->outcome != RL2_OUTCOME_ALLOW || v->n_layers != 1 || v->experiment
        || now->mono_us >= atomic_load_explicit(&b->shm->next_check_us,
                                                memory_order_relaxed)) {
        rl2_mx_record_slow(b, v, now);
        return;
    }
    rl2_mx_record_one(b, v, rl2_mx_tier_slot(b, v), now);
}

/* ---- store calls ---------------------------------------------------- */

const int64_t rl2_metrics_bucket_us[RL2_METRICS_BUCKETS] = {
    100,   250,   500,   1000,   2500,   5000,
    10000, 25000, 50000, 100000, 250000, 1000000
};

void
rl2_metrics_overlimit_hit(void *m)
{
    if (m != NULL) {
        rl2_mx_bump(&((rl2_metrics_t *)m)->shm->overlimit_hits);
    }
}

const int64_t rl2_metrics_decide_bucket_ns[RL2_METRICS_DECIDE_BUCKETS] = {
    1000,   2500,   5000,   10000,   25000,    50000,
    100000, 250000, 500000, 1000000, 10000000, 100000000
};

void
rl2_metrics_decide_time(rl2_metrics_t *m, int64_t elapsed_ns)
{
    unsigned i = 0;

    if (m == NULL) {
        return;
    }
    if (elapsed_ns < 0) {
        elapsed_ns = 0;
    }
    while (i < RL2_METRICS_DECIDE_BUCKETS
           && elapsed_ns > rl2_metrics_decide_bucket_ns[i]) {
        i++;
    }
    rl2_mx_bump(&m->shm->decide_bucket[i]);
    atomic_fetch_add_explicit(&m->shm->decide_ns_sum, (uint64_t)elapsed_ns,
                              memory_order_relaxed);
}

/* ns, not rl2_mono_us(): a local decision takes a few µs, which a µs
 * clock would round to a bucket's edge. */
static int64_t
rl2_mx_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

rl2_metrics_t *
rl2_metrics_of(const rl2_metrics_bind_t *b)
{
    return b != NULL ? b->m : NULL;
}

rl2_status_t
rl2_metrics_decide_timed(rl2_metrics_t *m, const rl2_policy_t *policy,
                         const rl2_rule_t *extra, size_t n_extra,
                         rl2_store_t *store, rl2_request_t *req, unsigned phase,
                         const rl2_clock_t *now, rl2_verdict_t *v,
                         rl2_err_t *err)
{
    int64_t      start_ns;
    rl2_status_t st;

    if (m == NULL) {
        return rl2_decide(policy, extra, n_extra, store, req, phase, now, v,
                          err);
    }
    start_ns = rl2_mx_mono_ns();
    st = rl2_decide(policy, extra, n_extra, store, req, phase, now, v, err);
    rl2_metrics_decide_time(m, rl2_mx_mono_ns() - start_ns);
    return st;
}

void
rl2_metrics_store_call(rl2_metrics_t *m, int64_t elapsed_us, int ok)
{
    unsigned i = 0;

    if (m == NULL) {
        return;
    }
    if (elapsed_us < 0) {
        elapsed_us = 0;
    }
    while (i < RL2_METRICS_BUCKETS && elapsed_us > rl2_metrics_bucket_us[i]) {
        i++;
    }
    rl2_mx_bump(&m->shm->bucket[i]);
    rl2_mx_bump(&m->shm->store_calls);
    atomic_fetch_add_explicit(&m->shm->store_us_sum, (uint64_t)elapsed_us,
                              memory_order_relaxed);
    if (!ok) {
        rl2_mx_bump(&m->shm->store_errors);
    }
}

void
rl2_mx_put(mx_out_t *o, const char *fmt, ...)
{
    char    line[1024];
    va_list ap;
    int     n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0) {
        o->out(o->ctx, line,
               (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    }
}
