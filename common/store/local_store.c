/*
 * local_store.c -- the store interface over a local zone.
 *
 * The local store answers all layers of a request under one zone lock:
 * check every layer, then commit only when no enforcing layer is refused.
 * The lock is held only for table lookups and the arithmetic of the
 * algorithms: no I/O, no logging, no allocation.
 */
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/store.h"
#include "algo/algo_internal.h"
#include "store/store_internal.h"

typedef struct {
    rl2_store_t base;
    rl2_zone_t *zone;
    const void *fresh; /* the zone's state size of zeros, never written:
                          what a key the zone does not hold reads as */
} rl2_store_local_t;

/* Calendar quotas run on wall time, everything else on the monotonic
 * clock (immune to the wall clock being stepped). */
static int64_t
rl2_clock_for(const rl2_algo_params_t *p, const rl2_clock_t *now)
{
    return p->algo == RL2_ALGO_QUOTA ? now->wall_us : now->mono_us;
}

/* Main state first, overflow state after it. */
static void *
rl2_overflow_state(const rl2_limit_t *limit, void *state)
{
    return (char *)state + rl2_algo_state_size(&limit->algo);
}

/* Did this checked layer refuse the request?  Dry-run and unlimited
 * layers never do (decide.c and the Redis scripts agree). */
static int
rl2_layer_enforces_refusal(const rl2_layer_t *l)
{
    return l->refused && !l->dry_run && !l->limit->unlimited;
}

static void
rl2_layer_check(rl2_layer_t *l, const void *state, const rl2_clock_t *now)
{
    const rl2_limit_t *limit = l->limit;
    rl2_algo_result_t  ov;

    rl2_algo_check(&limit->algo, state, rl2_clock_for(&limit->algo, now),
                   limit->cost, &l->result);
    l->refused = !l->result.allowed;
    l->overflow_used = 0;
    if (l->refused && limit->overflow.limit != 0) {
        rl2_algo_check(&limit->overflow,
                       (const char *)state + rl2_algo_state_size(&limit->algo),
                       now->mono_us, limit->cost, &ov);
        if (ov.allowed) {
            l->refused = 0;
            l->overflow_used = 1;
        }
    }
}

static void
rl2_layer_commit(rl2_zone_t *zone, rl2_layer_t *l, void *state,
                 const rl2_clock_t *now)
{
    const rl2_limit_t       *limit = l->limit;
    const rl2_algo_params_t *p =
        l->overflow_used ? &limit->overflow : &limit->algo;
    void   *s = l->overflow_used ? rl2_overflow_state(limit, state) : state;
    int64_t t = rl2_clock_for(p, now);
    int64_t ttl = limit->ttl_us > 0 && !l->overflow_used
                      ? limit->ttl_us
                      : rl2_algo_ttl_us(p, t);

    if (limit->overflow.limit != 0 && !l->overflow_used) {
        int64_t ottl = rl2_algo_ttl_us(&limit->overflow, now->mono_us);

        ttl = ottl > ttl ? ottl : ttl;
    }
    rl2_algo_commit(p, s, t, limit->cost);
    rl2_zone_keep_until(zone, state, now->mono_us + ttl);
    l->committed = 1;
    l->committed_us = t;
}

/* A new entry never takes one a request is using: the request's found
 * entries are promoted first (the most recent protected ones; a demotion
 * takes the least recent of more than half the zone), and a new entry
 * takes the least recent on probation, which then holds at least half the
 * zone, while the request created at most RL2_MAX_LAYERS - 1 before it. */
_Static_assert(4 * RL2_MAX_LAYERS <= RL2_ZONE_MIN_ENTRIES,
               "a request's layers must fit in either half of the "
               "smallest zone");

/* The counters an admitted request found count their key's second
 * request: the key is no longer new, and they are promoted to protected,
 * out of the reach of a flood of new keys. */
static void
rl2_local_touch_found(rl2_zone_t *zone, size_t n, void **states,
                      const uint32_t *refs)
{
    for (size_t i = 0; i < n; i++) {
        /* A busy client is already the most recent: nothing moves. */
        if (states[i] != NULL && !rl2_zone_is_hot(zone, refs[i])) {
            rl2_zone_touch(zone, refs[i]);
        }
    }
}

/* A refused request promotes only the counters that refused it (a client
 * being refused right now, whose counter, evicted, would start afresh).
 * Its other layers' entries stay where they are: a refusal by one
 * counter must not protect the keys a client chose for the others. */
static void
rl2_local_touch_refusing(rl2_zone_t *zone, const rl2_layer_t *layers, size_t n,
                         void **states, const uint32_t *refs)
{
    for (size_t i = 0; i < n; i++) {
        if (states[i] != NULL && rl2_layer_enforces_refusal(&layers[i])
            && !rl2_zone_is_hot(zone, refs[i])) {
            rl2_zone_touch(zone, refs[i]);
        }
    }
}

/* Entries, on probation, for the admitted layers whose keys the zone does
 * not hold.  The layers' keys are distinct (store.h): a second get() of a
 * key created here would find it live and promote it, and a new key would
 * be protected after one request.  Each new entry is tagged with its
 * limit, for the live keys per limit (zone.c); a key the zone holds is
 * never tagged again: its digest, and so its limit, does not change. */
static void
rl2_local_make_room(rl2_zone_t *zone, const rl2_layer_t *layers, size_t n,
                    void **states, const rl2_clock_t *now)
{
    for (size_t i = 0; i < n; i++) {
        if (!layers[i].refused && states[i] == NULL) {
            const rl2_limit_t *limit = layers[i].limit;

            states[i] = rl2_zone_get(zone, layers[i].key, now->mono_us);
            rl2_zone_tag(zone, states[i], rl2_zone_limit_tag(&limit->key_seed),
                         limit->name);
        }
    }
}

/* Every layer is checked against the state the zone holds, or fresh
 * state for a key it does not hold, before any entry is created: only a
 * request that every enforcing layer admits takes entries, so a flood of
 * refused requests with made-up keys never creates or evicts one. */
static rl2_status_t
rl2_local_apply(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_store_local_t *ls = (rl2_store_local_t *)store;
    rl2_zone_t        *zone = ls->zone;
    void              *states[RL2_MAX_LAYERS];
    uint32_t           refs[RL2_MAX_LAYERS];
    int                refused = 0, missing = 0;
    rl2_status_t       st;

    for (size_t i = 0; i < n; i++) {
        if (layers[i].limit->state_size > rl2_zone_state_size(zone)) {
            return rl2_err_set(err, RL2_ERR_STORE,
                               "limit \"%s\" needs %zu "
                               "bytes of state per key but the zone holds "
                               "%zu: the zone must be recreated",
                               layers[i].limit->name,
                               layers[i].limit->state_size,
                               rl2_zone_state_size(zone));
        }
    }
    if ((st = rl2_zone_lock(zone, err)) != RL2_OK) {
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        states[i] =
            rl2_zone_lookup(zone, layers[i].key, now->mono_us, &refs[i]);
        missing |= states[i] == NULL;
        rl2_layer_check(&layers[i], states[i] ? states[i] : ls->fresh, now);
        refused |= rl2_layer_enforces_refusal(&layers[i]);
    }
    if (refused) {
        rl2_local_touch_refusing(zone, layers, n, states, refs);
    }
    else {
        if (missing) {
            rl2_local_touch_found(zone, n, states, refs);
            rl2_local_make_room(zone, layers, n, states, now);
        }
        for (size_t i = 0; i < n; i++) {
            if (layers[i].refused) {
                continue;
            }
            /* The common case, every key found: promote as we go. */
            if (!missing && !rl2_zone_is_hot(zone, refs[i])) {
                rl2_zone_touch(zone, refs[i]);
            }
            rl2_layer_commit(zone, &layers[i], states[i], now);
        }
    }
    rl2_zone_unlock(zone);
    return RL2_OK;
}

static rl2_status_t
rl2_local_refund(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                 const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_zone_t  *zone = ((rl2_store_local_t *)store)->zone;
    rl2_status_t st;

    if (n == 0) {
        return RL2_OK;
    }
    if ((st = rl2_zone_lock(zone, err)) != RL2_OK) {
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        const rl2_layer_t *l = &layers[i];
        const rl2_limit_t *limit = l->limit;

        if (!l->committed) {
            continue;
        }
        /* A key gone since (reset, expired) has nothing to give back. */
        void *state = rl2_zone_peek(zone, l->key, now->mono_us);
        const rl2_algo_params_t *p =
            l->overflow_used ? &limit->overflow : &limit->algo;

        if (state == NULL) {
            continue;
        }
        if (l->overflow_used) {
            state = rl2_overflow_state(limit, state);
        }
        rl2_algo_refund(p, state, rl2_clock_for(p, now), l->committed_us,
                        limit->cost);
    }
    rl2_zone_unlock(zone);
    return RL2_OK;
}

static rl2_status_t
rl2_local_peek(rl2_store_t *store, rl2_layer_t *layers, size_t n,
               const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_store_local_t *ls = (rl2_store_local_t *)store;
    rl2_status_t       st;

    if ((st = rl2_zone_lock(ls->zone, err)) != RL2_OK) {
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        void *state = rl2_zone_peek(ls->zone, layers[i].key, now->mono_us);

        rl2_layer_check(&layers[i], state ? state : ls->fresh, now);
    }
    rl2_zone_unlock(ls->zone);
    return RL2_OK;
}

static rl2_status_t
rl2_local_reset(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    (void)now;
    /* The overflow state lives in the same entry as the main state. */
    return rl2_zone_forget(((rl2_store_local_t *)store)->zone, layers, n, err);
}

static void
rl2_local_destroy(rl2_store_t *store)
{
    free((void *)((rl2_store_local_t *)store)->fresh);
    free(store);
}

static const rl2_store_ops_t rl2_local_ops = {
    "local",        rl2_local_apply,   rl2_local_refund,
    rl2_local_peek, rl2_local_destroy, rl2_local_reset
};

rl2_status_t
rl2_store_local_create(rl2_zone_t *zone, rl2_store_t **out, rl2_err_t *err)
{
    rl2_store_local_t *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (s == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    s->fresh = calloc(1, rl2_zone_state_size(zone));
    if (s->fresh == NULL) {
        free(s);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    s->base.ops = &rl2_local_ops;
    s->zone = zone;
    *out = &s->base;
    return RL2_OK;
}

void
rl2_store_destroy(rl2_store_t *store)
{
    if (store != NULL) {
        store->ops->destroy(store);
    }
}
