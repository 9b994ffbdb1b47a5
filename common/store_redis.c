/*
 * store_redis.c -- the store interface (store.h) over one Redis server.
 *
 * Each operation sends the layers of a request to one Lua script
 * (redis_scripts.h) on this thread's connection (redis.h): apply checks
 * every layer and commits only when no enforcing layer is refused, atomically
 * on the server, with Redis TIME as the one clock of every web server.
 *
 * Layers are sent in groups, one script call per group, each group's keys
 * in one Cluster slot.  A standalone server takes every layer in one
 * group; the Cluster router splits them by slot and must then keep "a
 * refused request is counted by none" across groups itself (peek or
 * refund).
 *
 * Errors (timeouts, a lost connection, an error reply) are RL2_ERR_STORE
 * and are returned at once, after at most one command timeout (plus the
 * connect timeout for a thread that must reconnect), with no retry:
 * failing over is the caller's business.
 */
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/redis.h"
#include "redis_scripts.h"

typedef struct {
    rl2_store_t       base;
    rl2_redis_pool_t *pool;
    int               test_clock; /* scripts run on the caller's wall_us */
} rl2_store_redis_t;

/* Layers that go to one script call. */
typedef struct {
    size_t idx[RL2_MAX_LAYERS];
    size_t n;
} rl2_redis_group_t;

/* Standalone: every layer (or every committed one) in one group. */
static void
rl2_group_all(const rl2_layer_t *layers, size_t n, int committed_only,
              rl2_redis_group_t *g)
{
    g->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (!committed_only || layers[i].committed) {
            g->idx[g->n++] = i;
        }
    }
}

static rl2_status_t
rl2_redis_run(rl2_store_t *store, rl2_script_t which, rl2_layer_t *layers,
              size_t n, const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_store_redis_t *s = (rl2_store_redis_t *)store;
    rl2_redis_group_t g;
    rl2_redis_conn_t *conn;
    rl2_status_t st;

    if (n > RL2_MAX_LAYERS) {
        return rl2_err_set(err, RL2_ERR_INVALID, "redis: %zu layers, more "
                           "than %d", n, RL2_MAX_LAYERS);
    }
    rl2_group_all(layers, n, which == RL2_SCRIPT_REFUND, &g);
    if (g.n == 0) {
        return RL2_OK;
    }
    /* Refused before a connection is opened: a bad limit is not an
     * outage. */
    if ((st = rl2_redis_layers_check(layers, g.idx, g.n, err)) != RL2_OK) {
        return st;
    }
    if ((st = rl2_redis_pool_get(s->pool, &conn, err)) != RL2_OK) {
        return st;
    }
    return rl2_redis_script_run(conn, which, layers, g.idx, g.n,
                                s->test_clock ? &now->wall_us : NULL, err);
}

static rl2_status_t
rl2_redis_apply(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    /* On an error nothing may look counted. */
    for (size_t i = 0; i < n && i < RL2_MAX_LAYERS; i++) {
        memset(&layers[i].result, 0, sizeof(layers[i].result));
        layers[i].refused = 0;
        layers[i].overflow_used = 0;
        layers[i].committed = 0;
        layers[i].committed_us = 0;
    }
    return rl2_redis_run(store, RL2_SCRIPT_APPLY, layers, n, now, err);
}

static rl2_status_t
rl2_redis_refund(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                 const rl2_clock_t *now, rl2_err_t *err)
{
    return rl2_redis_run(store, RL2_SCRIPT_REFUND, layers, n, now, err);
}

static rl2_status_t
rl2_redis_peek(rl2_store_t *store, rl2_layer_t *layers, size_t n,
               const rl2_clock_t *now, rl2_err_t *err)
{
    return rl2_redis_run(store, RL2_SCRIPT_PEEK, layers, n, now, err);
}

static void
rl2_redis_destroy(rl2_store_t *store)
{
    rl2_store_redis_t *s = (rl2_store_redis_t *)store;

    rl2_redis_pool_destroy(s->pool);
    free(s);
}

static const rl2_store_ops_t rl2_redis_ops = {
    "redis", rl2_redis_apply, rl2_redis_refund, rl2_redis_peek,
    rl2_redis_destroy
};

/* Opens nothing: the first request of each thread connects. */
rl2_status_t
rl2_store_redis_create(const rl2_redis_conf_t *conf, rl2_store_t **out,
                       rl2_err_t *err)
{
    rl2_store_redis_t *s;
    rl2_status_t st;

    *out = NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    if ((st = rl2_redis_pool_create(conf, &s->pool, err)) != RL2_OK) {
        free(s);
        return st;
    }
    s->base.ops = &rl2_redis_ops;
    s->test_clock = conf->test_clock;
    *out = &s->base;
    return RL2_OK;
}
