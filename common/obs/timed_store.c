/*
 * timed_store.c -- a store that times every call of the store it wraps
 * into the metrics object: the latency histogram and the error count of
 * the shared store (Redis).  It adds two monotonic clock reads to a call
 * that crosses the network, and nothing else.
 */
#include <stdlib.h>

#include "ratelimit2/metrics.h"
#include "obs/metrics_internal.h"

typedef struct {
    rl2_store_t     base;
    rl2_store_ops_t ops; /* the wrapped store's name, our calls */
    rl2_store_t    *inner;
    rl2_metrics_t  *m;
} rl2_store_timed_t;

typedef rl2_status_t (*rl2_store_call_fn)(rl2_store_t *, rl2_layer_t *, size_t,
                                          const rl2_clock_t *, rl2_err_t *);

static rl2_status_t
rl2_timed_call(rl2_store_t *store, rl2_store_call_fn fn, rl2_layer_t *layers,
               size_t n, const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_store_timed_t *t = (rl2_store_timed_t *)store;
    int64_t            start = rl2_mono_us();
    rl2_status_t       st = fn(t->inner, layers, n, now, err);

    rl2_metrics_store_call(t->m, rl2_mono_us() - start, st == RL2_OK);
    return st;
}

static rl2_status_t
rl2_timed_apply(rl2_store_t *s, rl2_layer_t *l, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    return rl2_timed_call(s, ((rl2_store_timed_t *)s)->inner->ops->apply, l, n,
                          now, err);
}

static rl2_status_t
rl2_timed_refund(rl2_store_t *s, rl2_layer_t *l, size_t n,
                 const rl2_clock_t *now, rl2_err_t *err)
{
    return rl2_timed_call(s, ((rl2_store_timed_t *)s)->inner->ops->refund, l, n,
                          now, err);
}

static rl2_status_t
rl2_timed_peek(rl2_store_t *s, rl2_layer_t *l, size_t n, const rl2_clock_t *now,
               rl2_err_t *err)
{
    return rl2_timed_call(s, ((rl2_store_timed_t *)s)->inner->ops->peek, l, n,
                          now, err);
}

static rl2_status_t
rl2_timed_reset(rl2_store_t *s, rl2_layer_t *l, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    return rl2_timed_call(s, ((rl2_store_timed_t *)s)->inner->ops->reset, l, n,
                          now, err);
}

/* Only the wrapper: the inner store is borrowed. */
static void
rl2_timed_destroy(rl2_store_t *s)
{
    free(s);
}

rl2_status_t
rl2_store_timed_create(rl2_store_t *inner, rl2_metrics_t *m, rl2_store_t **out,
                       rl2_err_t *err)
{
    rl2_store_timed_t *t = calloc(1, sizeof(*t));

    *out = NULL;
    if (t == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    /* Alerts and logs name the store: keep the wrapped store's name. */
    t->ops = (rl2_store_ops_t){ inner->ops->name,  rl2_timed_apply,
                                rl2_timed_refund,  rl2_timed_peek,
                                rl2_timed_destroy, rl2_timed_reset };
    t->base.ops = &t->ops;
    t->inner = inner;
    t->m = m;
    *out = &t->base;
    return RL2_OK;
}
