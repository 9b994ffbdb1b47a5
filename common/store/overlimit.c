/*
 * overlimit.c -- the shared over-limit cache: a store wrapper that
 * answers a client the inner store refused, until the refusal's end,
 * without asking the inner store again (see store_internal.h).
 *
 * Owns the cache's entries in their zone ("<zone>.overlimit"), which
 * layers may be cached, the rule that makes a cached answer exact, and
 * the results a cached refusal fills in.  The inner store and the zone
 * are borrowed.
 *
 * Why it never admits what the inner store would refuse: it only ever
 * refuses.  Why it refuses only what the inner store would refuse too:
 * a layer refused at time t with retry R for cost c does not fit cost c
 * before t + R, as long as the key only takes requests in between (every
 * algorithm's retry is the least wait, assuming nothing else is
 * admitted: algo.h), and t is read before the inner call, so now + R is
 * never past the inner store's own t + R.  What gives capacity back
 * early is left out or invalidates the entry:
 *   - a concurrency limit gets its slots back by release, and its retry
 *     is a guess: never cached;
 *   - a limit with an overflow allowance may be admitted by the overflow
 *     before its main limit's retry: never cached;
 *   - dry-run and unlimited layers never refuse: never cached;
 *   - another limit (a boost, a factor, a reload) under the same key:
 *     the entry records the limit it refused under and counts only for
 *     that one;
 *   - a reset (ratelimit2ctl reset removes this host's entries) and any
 *     runtime override change: the generation the entry was recorded
 *     under is no longer the table's, and the entry is dropped.
 * A refund (a later phase refused the request) gives capacity back too;
 * the cache does not see it and may refuse until the entry ends, which
 * is never later than the refusal's retry said (docs/operations.md).
 */
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/store.h"
#include "base/base_internal.h"
#include "store/store_internal.h"

typedef struct {
    rl2_store_t  base;
    rl2_store_t *inner;
    rl2_zone_t  *zone;
    /* NULL: always 0.  Atomic: a front end may give it while requests
     * run (ratelimit2-fcgi, a reload that opens the table first). */
    _Atomic(const _Atomic uint64_t *) generation;
    rl2_overlimit_hit_fn              hit; /* NULL: not counted */
    void                             *hit_ctx;
    rl2_overlimit_held_fn             held; /* NULL: nothing is held */
    void                             *held_ctx;
} rl2_overlimit_t;

_Static_assert(sizeof(rl2_overlimit_entry_t) % 8 == 0,
               "an entry is the zone's 8-aligned state");

static uint64_t
rl2_overlimit_generation(const rl2_overlimit_t *o)
{
    const _Atomic uint64_t *g =
        atomic_load_explicit(&o->generation, memory_order_acquire);

    return g != NULL ? atomic_load_explicit(g, memory_order_acquire) : 0;
}

/* May a refusal of this layer stand for later requests? */
static int
rl2_overlimit_cacheable(const rl2_layer_t *l)
{
    const rl2_limit_t *limit = l->limit;

    return !l->dry_run && !limit->unlimited && limit->overflow.limit == 0
           && limit->algo.algo != RL2_ALGO_CONCURRENCY;
}

rl2_digest_t
rl2_overlimit_params(const rl2_limit_t *limit)
{
    /* Field by field: the struct's padding is not to be hashed. */
    int64_t p[6] = { (int64_t)limit->algo.algo,   limit->algo.limit,
                     limit->algo.window_us,       limit->algo.burst,
                     (int64_t)limit->algo.period, limit->overflow.limit };

    return rl2_digest(p, sizeof(p));
}

/* Under the lock: the live entry of layer l recorded under `gen` for
 * this limit and a cost no larger than the layer's, or NULL.  An entry
 * of another generation is dropped. */
static const rl2_overlimit_entry_t *
rl2_overlimit_find(rl2_overlimit_t *o, const rl2_layer_t *l, uint64_t gen,
                   int64_t now_us)
{
    const rl2_overlimit_entry_t *e = rl2_zone_peek(o->zone, l->key, now_us);
    rl2_digest_t                 p;

    if (e == NULL) {
        return NULL;
    }
    if (e->generation != gen) {
        rl2_zone_remove(o->zone, l->key);
        return NULL;
    }
    p = rl2_overlimit_params(l->limit);
    if (e->until_us <= now_us || e->cost > l->limit->cost
        || e->params.hi != p.hi || e->params.lo != p.lo) {
        return NULL;
    }
    return e;
}

/* A cached refusal, as the store that refused would have answered. */
static void
rl2_overlimit_refused(rl2_layer_t *l, const rl2_overlimit_entry_t *e,
                      int64_t now_us)
{
    int64_t retry_us = e->until_us - now_us;
    int64_t reset_us = e->reset_us - now_us;

    l->result.allowed = 0;
    l->result.limit = e->limit;
    l->result.remaining = 0;
    l->result.retry_after_us = retry_us;
    l->result.reset_us = reset_us > retry_us ? reset_us : retry_us;
    l->refused = 1;
}

/* A layer the cached refusal did not ask about: not counted, and never
 * the one the headers show (decide.c shows a refusing layer). */
static void
rl2_overlimit_unasked(rl2_layer_t *l)
{
    memset(&l->result, 0, sizeof(l->result));
    l->result.allowed = 1;
    l->result.limit = l->limit->algo.limit;
    l->result.remaining = l->limit->algo.limit;
    l->refused = 0;
}

/* Answer from the cache when an enforcing layer is cached-refused: every
 * layer's result set, nothing committed.  Returns whether it answered. */
static int
rl2_overlimit_answer(rl2_overlimit_t *o, rl2_layer_t *layers, size_t n,
                     uint64_t gen, int64_t now_us)
{
    const rl2_overlimit_entry_t *hit[RL2_MAX_LAYERS];
    rl2_overlimit_entry_t        copy[RL2_MAX_LAYERS];
    int                          any = 0;
    rl2_err_t                    err;

    if (rl2_zone_lock(o->zone, &err) != RL2_OK) {
        return 0; /* the inner store answers */
    }
    for (size_t i = 0; i < n; i++) {
        hit[i] = rl2_overlimit_cacheable(&layers[i])
                     ? rl2_overlimit_find(o, &layers[i], gen, now_us)
                     : NULL;
        if (hit[i] != NULL) {
            copy[i] = *hit[i]; /* the entry is the zone's, under the lock */
            any = 1;
        }
    }
    rl2_zone_unlock(o->zone);
    /* Units the host holds of a key go first (asked outside this zone's
     * lock: the lease table has its own). */
    for (size_t i = 0; i < n && any && o->held != NULL; i++) {
        if (hit[i] != NULL && o->held(o->held_ctx, layers[i].key, now_us)) {
            return 0;
        }
    }
    if (!any) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (hit[i] != NULL) {
            rl2_overlimit_refused(&layers[i], &copy[i], now_us);
        }
        else {
            rl2_overlimit_unasked(&layers[i]);
        }
        layers[i].overflow_used = 0;
        layers[i].committed = 0;
        layers[i].committed_us = 0;
    }
    if (o->hit != NULL) {
        o->hit(o->hit_ctx);
    }
    return 1;
}

/* Every cacheable layer the inner store refused, until now + its retry,
 * under the generation read before the inner call (a change since then
 * makes the entry stale at once). */
static void
rl2_overlimit_record(rl2_overlimit_t *o, const rl2_layer_t *layers, size_t n,
                     uint64_t gen, int64_t now_us)
{
    int       any = 0;
    rl2_err_t err;

    for (size_t i = 0; i < n && !any; i++) {
        any = layers[i].refused && layers[i].result.retry_after_us > 0
              && rl2_overlimit_cacheable(&layers[i]);
    }
    if (!any || rl2_zone_lock(o->zone, &err) != RL2_OK) {
        return; /* nothing to keep, or kept by no one: the next asks */
    }
    for (size_t i = 0; i < n; i++) {
        const rl2_layer_t     *l = &layers[i];
        rl2_overlimit_entry_t *e;

        if (!l->refused || l->result.retry_after_us <= 0
            || !rl2_overlimit_cacheable(l)) {
            continue;
        }
        e = rl2_zone_get(o->zone, l->key, now_us);
        e->until_us = now_us + l->result.retry_after_us;
        e->reset_us = now_us + l->result.reset_us;
        e->cost = l->limit->cost;
        e->limit = l->result.limit;
        e->generation = gen;
        e->params = rl2_overlimit_params(l->limit);
        rl2_zone_keep_until(o->zone, e, e->until_us);
    }
    rl2_zone_unlock(o->zone);
}

/* ---- the store interface ----------------------------------------------- */

static rl2_status_t
rl2_overlimit_apply(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                    const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_overlimit_t *o = (rl2_overlimit_t *)store;
    uint64_t         gen = rl2_overlimit_generation(o);
    rl2_status_t     st;

    if (n > RL2_MAX_LAYERS) {
        return rl2_err_set(err, RL2_ERR_INVALID, "%zu layers, at most %d", n,
                           RL2_MAX_LAYERS);
    }
    if (rl2_overlimit_answer(o, layers, n, gen, now->mono_us)) {
        return RL2_OK;
    }
    st = o->inner->ops->apply(o->inner, layers, n, now, err);
    if (st == RL2_OK) {
        rl2_overlimit_record(o, layers, n, gen, now->mono_us);
    }
    return st;
}

/* An operator's tool must not say "admitted" where apply would refuse:
 * the cache answers first here too.  A peek records nothing. */
static rl2_status_t
rl2_overlimit_peek(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                   const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_overlimit_t *o = (rl2_overlimit_t *)store;

    if (n > RL2_MAX_LAYERS) {
        return rl2_err_set(err, RL2_ERR_INVALID, "%zu layers, at most %d", n,
                           RL2_MAX_LAYERS);
    }
    if (rl2_overlimit_answer(o, layers, n, rl2_overlimit_generation(o),
                             now->mono_us)) {
        return RL2_OK;
    }
    return o->inner->ops->peek(o->inner, layers, n, now, err);
}

/* What a cached refusal refunds is nothing (it committed nothing): the
 * committed layers are the inner store's. */
static rl2_status_t
rl2_overlimit_refund(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                     const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_overlimit_t *o = (rl2_overlimit_t *)store;

    return o->inner->ops->refund(o->inner, layers, n, now, err);
}

/* The cache first: a reset the inner store then fails leaves the next
 * request asking it, never a refusal it no longer gives. */
static rl2_status_t
rl2_overlimit_reset(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                    const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_overlimit_t *o = (rl2_overlimit_t *)store;
    rl2_status_t     st;

    if ((st = rl2_zone_forget(o->zone, layers, n, err)) != RL2_OK) {
        return st;
    }
    return o->inner->ops->reset(o->inner, layers, n, now, err);
}

static void
rl2_overlimit_destroy(rl2_store_t *store)
{
    free(store);
}

static const rl2_store_ops_t overlimit_ops = {
    "overlimit",        rl2_overlimit_apply,   rl2_overlimit_refund,
    rl2_overlimit_peek, rl2_overlimit_destroy, rl2_overlimit_reset
};

rl2_status_t
rl2_store_overlimit_create(rl2_store_t *inner, rl2_zone_t *zone,
                           rl2_store_t **out, rl2_err_t *err)
{
    rl2_overlimit_t *o;

    *out = NULL;
    if (inner == NULL || zone == NULL
        || rl2_zone_state_size(zone) < sizeof(rl2_overlimit_entry_t)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "the over-limit cache needs an inner store and a "
                           "zone of %zu bytes per entry",
                           sizeof(rl2_overlimit_entry_t));
    }
    if ((o = calloc(1, sizeof(*o))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    o->base.ops = &overlimit_ops;
    o->inner = inner;
    o->zone = zone;
    *out = &o->base;
    return RL2_OK;
}

void
rl2_overlimit_watch(rl2_store_t *store, const _Atomic uint64_t *generation)
{
    if (store != NULL && store->ops == &overlimit_ops) {
        atomic_store_explicit(&((rl2_overlimit_t *)store)->generation,
                              generation, memory_order_release);
    }
}

void
rl2_overlimit_on_hit(rl2_store_t *store, rl2_overlimit_hit_fn fn, void *ctx)
{
    if (store != NULL && store->ops == &overlimit_ops) {
        ((rl2_overlimit_t *)store)->hit = fn;
        ((rl2_overlimit_t *)store)->hit_ctx = ctx;
    }
}

void
rl2_overlimit_on_held(rl2_store_t *store, rl2_overlimit_held_fn fn, void *ctx)
{
    rl2_overlimit_t *o = (rl2_overlimit_t *)store;

    if (store != NULL && store->ops == &overlimit_ops) {
        o->held = fn;
        o->held_ctx = ctx;
    }
}
