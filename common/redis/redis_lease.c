/*
 * redis_lease.c -- lease mode: a leased limit's requests are admitted from
 * slices of its allowance, taken from Redis in one atomic call and held in
 * a shared-memory table, so that a busy key costs a Redis call per slice
 * instead of per request.
 *
 * Redis counts a slice as admitted when it grants it (grant.c and its Lua
 * twin), so the slices never sum to more than what the limit has left and
 * the fleet never admits more than N.  What a server did not use goes back
 * with its next call for the key, as a refund of what was committed at the
 * grant.  A slice is used until it is spent or its lease ends: the lease
 * time, cut at the span's or window's end for the windowed algorithms
 * (their units belong to the window that counted them).  The lease's end is
 * measured on this host's monotonic clock from before the call was sent,
 * so it always falls before the end Redis reckoned with.
 *
 * The table is one per host (a zone of its own, "<zone>.lease"), so every
 * process of a server shares one slice per key: a killed process loses
 * nothing, and a server that dies, or stops seeing a key, strands at most
 * its last slice of it (docs/configuration.md states the bound).
 *
 * How much to ask for: one request's cost the first time a key is seen
 * (so a key seen once a minute is counted exactly, one call per request);
 * then the units the key used at its last slice's rate over one lease
 * time, at most twice the last slice, at most lease_max.  Redis gives
 * less near the end of a window (a quarter of what is left).
 *
 * A layer not leased goes to the inner store, with the leased ones: the
 * request is admitted only if every enforcing layer admits it, and the
 * units a lease gave a refused request are put back in its slice.
 *
 * Locking: the table's lock is held only around reading and writing the
 * table, never across a Redis call.  Two processes that find a key's
 * slice spent at once both ask; the second grant is added to the first
 * (the earlier end and the earlier grant time kept, both cautious), and
 * while a call is out the others ask only for their own cost.
 */
#include <stdlib.h>
#include <string.h>

#include "algo/algo_internal.h"
#include "base/base_internal.h"
#include "redis/redis_internal.h"
#include "redis_scripts.h"
#include "store/store_internal.h"

/* How long another process's call keeps a key marked "being asked for":
 * more than a command timeout need not be waited for. */
#define RL2_LEASE_ASKING_US (100 * RL2_US_PER_MS)

/* One key's lease, in the table.  All zero is "no lease yet". */
typedef struct {
    int64_t units;         /* left to admit from the slice */
    int64_t expires_us;    /* monotonic: no unit is used at or after */
    int64_t granted_at_us; /* Redis' clock at the grant: what a return
                              refunds, and what a refund must match */
    int64_t slice;         /* units of the last grant */
    int64_t used;          /* units admitted since it was asked for */
    int64_t started_us;    /* monotonic: when it was asked for */
    int64_t asking_us;     /* monotonic: a call for it went out; 0: none */
    int64_t limit;         /* for the headers: the limit */
    int64_t remaining;     /* the fleet's, after the grant */
    int64_t reset_at_us;   /* monotonic: the limit full again */
} rl2_lease_t;

typedef struct {
    rl2_store_t      base;
    rl2_lease_conf_t conf;
} rl2_lease_store_t;

typedef rl2_status_t (*rl2_store_call_fn)(rl2_store_t *, rl2_layer_t *, size_t,
                                          const rl2_clock_t *, rl2_err_t *);

size_t
rl2_lease_state_size(void)
{
    return sizeof(rl2_lease_t);
}

int
rl2_lease_applies(const rl2_limit_t *limit, int all)
{
    if (limit->lease == RL2_LEASE_OFF
        || (limit->lease != RL2_LEASE_ON && !all)) {
        return 0;
    }
    return rl2_algo_leasable(&limit->algo) && limit->overflow.limit == 0;
}

/* ---- one key's lease ---- */

static int
rl2_lease_live(const rl2_lease_t *l, int64_t now_us)
{
    return l->units > 0 && now_us < l->expires_us;
}

/* The units to ask for (see the head of the file). */
static int64_t
rl2_lease_want(const rl2_lease_store_t *s, const rl2_lease_t *l, int64_t cost,
               int64_t now_us)
{
    int64_t elapsed_us, need, most;

    if (l->slice == 0
        || (l->asking_us != 0 && now_us - l->asking_us < RL2_LEASE_ASKING_US)) {
        return cost;
    }
    elapsed_us = now_us - l->started_us;
    if (elapsed_us < 1) {
        elapsed_us = 1;
    }
    /* used is at most lease_max plus a few costs, lease_us at most 60 s:
     * the product stays far below 2^63. */
    need = l->used * s->conf.lease_us / elapsed_us;
    most = rl2_min64(2 * l->slice, s->conf.lease_max);
    return rl2_max64(rl2_min64(need, most), cost);
}

static void
rl2_lease_result(const rl2_lease_t *l, int64_t now_us, rl2_algo_result_t *out)
{
    out->allowed = 1;
    out->limit = l->limit;
    out->remaining = rl2_max64(l->remaining, 0) + l->units;
    out->reset_us = rl2_max64(l->reset_at_us - now_us, 0);
    out->retry_after_us = 0;
}

/* The request takes its cost from the slice. */
static void
rl2_lease_take(rl2_lease_t *l, rl2_layer_t *layer, int64_t now_us)
{
    l->units -= layer->limit->cost;
    l->used += layer->limit->cost;
    rl2_lease_result(l, now_us, &layer->result);
    layer->committed = 1;
    layer->committed_us = l->granted_at_us;
}

/* Put a grant in the table, and take this request's cost from it. */
/* now_us is the request's clock, read before the call was sent: the
 * lease's end counts from it. */
static void
rl2_lease_merge(const rl2_lease_store_t *s, rl2_lease_t *l,
                const rl2_lease_ask_t *a, int64_t now_us)
{
    int64_t asked_us = now_us;
    int64_t span_us = s->conf.lease_us;

    if (a->horizon_us >= 0 && a->horizon_us < span_us) {
        span_us = a->horizon_us;
    }
    if (rl2_lease_live(l, now_us)) {
        /* Another process's grant landed first: keep both, cautiously. */
        l->units += a->granted;
        l->expires_us = rl2_min64(l->expires_us, asked_us + span_us);
        l->granted_at_us = rl2_min64(l->granted_at_us, a->granted_at_us);
    }
    else {
        l->units = a->granted;
        l->expires_us = asked_us + span_us;
        l->granted_at_us = a->granted_at_us;
        l->used = 0;
        l->started_us = asked_us;
    }
    l->slice = a->granted;
    l->asking_us = 0;
    l->limit = a->result.limit;
    l->remaining = a->result.remaining;
    l->reset_at_us = asked_us + a->result.reset_us;
}

/* ---- the request ---- */

typedef struct {
    size_t          leased[RL2_MAX_LAYERS]; /* layers leased, by index */
    size_t          n_leased;
    size_t          exact[RL2_MAX_LAYERS]; /* the others */
    size_t          n_exact;
    rl2_lease_ask_t ask[RL2_MAX_LAYERS];
    size_t          ask_of[RL2_MAX_LAYERS]; /* layer of ask[k] */
    size_t          n_ask;
} rl2_lease_plan_t;

static void
rl2_lease_split(const rl2_lease_store_t *s, rl2_layer_t *layers, size_t n,
                rl2_lease_plan_t *p)
{
    p->n_leased = p->n_exact = p->n_ask = 0;
    for (size_t i = 0; i < n; i++) {
        if (rl2_lease_applies(layers[i].limit, s->conf.all)) {
            p->leased[p->n_leased++] = i;
        }
        else {
            p->exact[p->n_exact++] = i;
        }
    }
}

static void
rl2_layer_clear(rl2_layer_t *l)
{
    memset(&l->result, 0, sizeof(l->result));
    l->refused = 0;
    l->overflow_used = 0;
    l->committed = 0;
    l->committed_us = 0;
}

/* Under the lock: take every leased layer's cost from its slice, or plan
 * an ask (with the slice's unused units going back). */
static void
rl2_lease_from_table(rl2_lease_store_t *s, rl2_layer_t *layers,
                     rl2_lease_plan_t *p, int64_t now_us)
{
    for (size_t k = 0; k < p->n_leased; k++) {
        rl2_layer_t     *layer = &layers[p->leased[k]];
        rl2_lease_t     *l = rl2_zone_get(s->conf.zone, layer->key, now_us);
        rl2_lease_ask_t *a;

        if (rl2_lease_live(l, now_us) && l->units >= layer->limit->cost) {
            rl2_lease_take(l, layer, now_us);
            continue;
        }
        a = &p->ask[p->n_ask];
        p->ask_of[p->n_ask++] = p->leased[k];
        memset(a, 0, sizeof(*a));
        a->layer = layer;
        a->want = rl2_lease_want(s, l, layer->limit->cost, now_us);
        if (l->units > 0) {
            /* Unused, whether the lease is over or only too small. */
            a->back = l->units;
            a->back_at_us = l->granted_at_us;
            l->units = 0;
        }
        l->asking_us = now_us;
        rl2_zone_keep_until(s->conf.zone, l, now_us + s->conf.lease_us);
    }
}

/* Under the lock: the grants into the table; a refusal into its layer. */
static void
rl2_lease_grants(rl2_lease_store_t *s, rl2_layer_t *layers,
                 rl2_lease_plan_t *p, int64_t now_us)
{
    for (size_t k = 0; k < p->n_ask; k++) {
        rl2_lease_ask_t *a = &p->ask[k];
        rl2_layer_t     *layer = &layers[p->ask_of[k]];
        rl2_lease_t     *l;

        if (a->granted < layer->limit->cost) {
            layer->result = a->result;
            layer->refused = 1;
            continue;
        }
        l = rl2_zone_get(s->conf.zone, layer->key, now_us);
        rl2_lease_merge(s, l, a, now_us);
        rl2_lease_take(l, layer, now_us);
        rl2_zone_keep_until(s->conf.zone, l, l->expires_us + s->conf.lease_us);
    }
}

/* Under the lock: a committed leased layer's cost back into its slice,
 * when that slice is still the one it came from. */
static void
rl2_lease_give_back(rl2_lease_store_t *s, rl2_layer_t *layer, int64_t now_us)
{
    rl2_lease_t *l = rl2_zone_peek(s->conf.zone, layer->key, now_us);

    if (l != NULL && now_us < l->expires_us
        && l->granted_at_us == layer->committed_us) {
        l->units += layer->limit->cost;
        l->used -= layer->limit->cost;
    }
    layer->committed = 0;
    layer->committed_us = 0;
}

static int
rl2_layer_blocks(const rl2_layer_t *l)
{
    return l->refused && !l->dry_run && !l->limit->unlimited;
}

/* The inner store over the layers idx[0..n): copied out and back, since
 * the stores take an array. */
static rl2_status_t
rl2_lease_inner(rl2_lease_store_t *s, rl2_store_call_fn fn,
                rl2_layer_t *layers, const size_t *idx, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_layer_t  sub[RL2_MAX_LAYERS];
    rl2_status_t st;

    for (size_t k = 0; k < n; k++) {
        sub[k] = layers[idx[k]];
    }
    st = fn(s->conf.inner, sub, n, now, err);
    for (size_t k = 0; k < n; k++) {
        layers[idx[k]] = sub[k];
    }
    return st;
}

static rl2_status_t
rl2_lease_lock(rl2_lease_store_t *s, rl2_err_t *err)
{
    return rl2_zone_lock(s->conf.zone, err);
}

/* Undo what the leases gave a request that is not admitted. */
static rl2_status_t
rl2_lease_undo(rl2_lease_store_t *s, rl2_layer_t *layers,
               const rl2_lease_plan_t *p, int64_t now_us, rl2_err_t *err)
{
    rl2_status_t st = rl2_lease_lock(s, err);

    if (st != RL2_OK) {
        return st;
    }
    for (size_t k = 0; k < p->n_leased; k++) {
        if (layers[p->leased[k]].committed) {
            rl2_lease_give_back(s, &layers[p->leased[k]], now_us);
        }
    }
    rl2_zone_unlock(s->conf.zone);
    return RL2_OK;
}

static rl2_status_t
rl2_lease_ask(rl2_lease_store_t *s, rl2_layer_t *layers, rl2_lease_plan_t *p,
              const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_status_t st;

    st = rl2_store_redis_lease(s->conf.redis, p->ask, p->n_ask, now, err);
    if (st != RL2_OK) {
        /* The units going back may or may not have reached Redis: they
         * are not used again (lost until the window passes: never
         * admitted twice). */
        return st;
    }
    if ((st = rl2_lease_lock(s, err)) != RL2_OK) {
        return st;
    }
    rl2_lease_grants(s, layers, p, now->mono_us);
    rl2_zone_unlock(s->conf.zone);
    return RL2_OK;
}

static rl2_status_t
rl2_lease_apply(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_lease_store_t *s = (rl2_lease_store_t *)store;
    rl2_lease_plan_t   p;
    rl2_status_t       st;
    rl2_err_t          e;
    int                blocked = 0;

    rl2_lease_split(s, layers, n, &p);
    if (p.n_leased == 0) {
        return s->conf.inner->ops->apply(s->conf.inner, layers, n, now, err);
    }
    for (size_t i = 0; i < n; i++) {
        rl2_layer_clear(&layers[i]);
    }
    if ((st = rl2_lease_lock(s, err)) != RL2_OK) {
        return st;
    }
    rl2_lease_from_table(s, layers, &p, now->mono_us);
    rl2_zone_unlock(s->conf.zone);
    if (p.n_ask > 0 && (st = rl2_lease_ask(s, layers, &p, now, err)) != RL2_OK) {
        rl2_lease_undo(s, layers, &p, now->mono_us, &e);
        return st;
    }
    for (size_t k = 0; k < p.n_leased; k++) {
        blocked |= rl2_layer_blocks(&layers[p.leased[k]]);
    }
    if (p.n_exact > 0) {
        st = rl2_lease_inner(s,
                             blocked ? s->conf.inner->ops->peek
                                     : s->conf.inner->ops->apply,
                             layers, p.exact, p.n_exact, now, err);
        if (st != RL2_OK) {
            rl2_lease_undo(s, layers, &p, now->mono_us, &e);
            return st;
        }
        for (size_t k = 0; k < p.n_exact; k++) {
            blocked |= rl2_layer_blocks(&layers[p.exact[k]]);
        }
    }
    if (blocked) {
        return rl2_lease_undo(s, layers, &p, now->mono_us, err);
    }
    return RL2_OK;
}

/* A leased layer's units go back into its slice (if it is still the one
 * they came from; otherwise they are not used again); the others to the
 * inner store. */
static rl2_status_t
rl2_lease_refund(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                 const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_lease_store_t *s = (rl2_lease_store_t *)store;
    rl2_lease_plan_t   p;
    rl2_status_t       st;

    rl2_lease_split(s, layers, n, &p);
    if (p.n_leased > 0) {
        if ((st = rl2_lease_lock(s, err)) != RL2_OK) {
            return st;
        }
        for (size_t k = 0; k < p.n_leased; k++) {
            if (layers[p.leased[k]].committed) {
                rl2_lease_give_back(s, &layers[p.leased[k]], now->mono_us);
            }
        }
        rl2_zone_unlock(s->conf.zone);
    }
    if (p.n_exact == 0) {
        return RL2_OK;
    }
    return rl2_lease_inner(s, s->conf.inner->ops->refund, layers, p.exact,
                           p.n_exact, now, err);
}

/* What Redis holds: slices out are counted there as used. */
static rl2_status_t
rl2_lease_peek(rl2_store_t *store, rl2_layer_t *layers, size_t n,
               const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_lease_store_t *s = (rl2_lease_store_t *)store;

    return s->conf.inner->ops->peek(s->conf.inner, layers, n, now, err);
}

/* This host's slices of the keys are dropped with their counts (other
 * hosts keep theirs until spent or over: they were counted before the
 * reset). */
static rl2_status_t
rl2_lease_reset(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_lease_store_t *s = (rl2_lease_store_t *)store;
    rl2_status_t       st;

    if ((st = rl2_lease_lock(s, err)) != RL2_OK) {
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        rl2_zone_remove(s->conf.zone, layers[i].key);
    }
    rl2_zone_unlock(s->conf.zone);
    return s->conf.inner->ops->reset(s->conf.inner, layers, n, now, err);
}

static void
rl2_lease_destroy(rl2_store_t *store)
{
    free(store);
}

static const rl2_store_ops_t rl2_lease_ops = {
    "redis",        rl2_lease_apply,   rl2_lease_refund,
    rl2_lease_peek, rl2_lease_destroy, rl2_lease_reset
};

rl2_status_t
rl2_store_lease_create(const rl2_lease_conf_t *conf, rl2_store_t **out,
                       rl2_err_t *err)
{
    rl2_lease_store_t *s;

    *out = NULL;
    if (conf->lease_us < 1 || conf->lease_max < 1) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "lease: time and largest slice must be positive");
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    s->base.ops = &rl2_lease_ops;
    s->conf = *conf;
    *out = &s->base;
    return RL2_OK;
}
