/*
 * redis_store.c -- the store interface (store.h) over Redis: one server
 * (standalone, or the master Sentinel names) or a Cluster.
 *
 * Each operation sends the layers of a request to one Lua script
 * (redis_scripts.h) on this thread's connection (redis.h): apply checks
 * every layer and commits only when no enforcing layer is refused, atomically
 * on the server, with Redis TIME as the one clock of every web server.
 *
 * Layers are sent in groups, one script call per group, each group's keys
 * in one Cluster slot.  A standalone server takes every layer in one
 * group.  In a Cluster each layer has its own hash tag, so the layers of
 * one request usually fall in different slots, and "a refused request is
 * counted by none" is kept across groups here: the groups are applied in
 * turn; when one refuses (or fails), the groups already committed are
 * refunded and the rest only peeked, so their results are still filled.
 * Between a group's commit and its refund (one or two round trips) other
 * requests see that count: they may be refused by a count that is about
 * to be taken back -- never admitted beyond a limit.  If the refund itself
 * fails, the count stays until the window passes (the error is returned).
 *
 * Errors (timeouts, a lost connection, an error reply) are RL2_ERR_STORE
 * and are returned at once, after at most one command timeout (plus the
 * connect timeout for a thread that must reconnect), with no retry:
 * failing over is the caller's business.
 */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "ratelimit2/redis.h"
#include "redis_scripts.h"
#include "redis/redis_internal.h"

typedef struct {
    rl2_store_t          base;
    rl2_redis_pool_t    *pool;       /* one server */
    rl2_redis_cluster_t *cluster;    /* or a Cluster (pool is NULL) */
    int                  test_clock; /* scripts run on the caller's wall_us */
} rl2_store_redis_t;

/* Layers that go to one script call. */
typedef struct {
    size_t   idx[RL2_MAX_LAYERS];
    size_t   n;
    unsigned slot;
} rl2_redis_group_t;

typedef struct {
    rl2_redis_group_t g[RL2_MAX_LAYERS];
    size_t            n;
} rl2_redis_groups_t;

/* The layers (or the committed ones) by slot, in the order of their first
 * layer; one group for a single server. */
static void
rl2_group(const rl2_store_redis_t *s, const rl2_layer_t *layers, size_t n,
          int committed_only, rl2_redis_groups_t *gs)
{
    char     key[RL2_REDIS_KEY_MAX];
    unsigned slot = 0;
    size_t   k;

    gs->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (committed_only && !layers[i].committed) {
            continue;
        }
        if (s->cluster != NULL) {
            /* A layer's 'o' key has the same hash tag as its 's' key. */
            rl2_redis_key(layers[i].key, 's', key);
            slot = rl2_redis_key_slot(key, strlen(key));
        }
        k = 0;
        while (k < gs->n && gs->g[k].slot != slot) {
            k++;
        }
        if (k == gs->n) {
            gs->g[gs->n].slot = slot;
            gs->g[gs->n++].n = 0;
        }
        gs->g[k].idx[gs->g[k].n++] = i;
    }
}

static rl2_status_t
rl2_group_run(rl2_store_redis_t *s, rl2_script_t which, rl2_layer_t *layers,
              const rl2_redis_group_t *g, const rl2_clock_t *now,
              rl2_err_t *err)
{
    rl2_redis_target_t to = { NULL, s->cluster, g->slot, NULL };
    rl2_status_t       st;

    if (s->cluster == NULL
        && (st = rl2_redis_pool_get(s->pool, &to.conn, err)) != RL2_OK) {
        return st;
    }
    return rl2_redis_script_run(&to, which, layers, g->idx, g->n,
                                s->test_clock ? &now->wall_us : NULL, err);
}

/* Group, and refuse a bad limit before a connection is opened: a bad
 * limit is not an outage. */
static rl2_status_t
rl2_prepare(rl2_store_redis_t *s, const rl2_layer_t *layers, size_t n,
            int committed_only, rl2_redis_groups_t *gs, rl2_err_t *err)
{
    rl2_status_t st;

    if (n > RL2_MAX_LAYERS) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "redis: %zu layers, more "
                           "than %d",
                           n, RL2_MAX_LAYERS);
    }
    rl2_group(s, layers, n, committed_only, gs);
    for (size_t k = 0; k < gs->n; k++) {
        st = rl2_redis_layers_check(layers, gs->g[k].idx, gs->g[k].n, err);
        if (st != RL2_OK) {
            return st;
        }
    }
    return RL2_OK;
}

/* Every group in turn (peek, refund): all are tried, the first error is
 * returned. */
static rl2_status_t
rl2_redis_each(rl2_store_t *store, rl2_script_t which, rl2_layer_t *layers,
               size_t n, const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_store_redis_t *s = (rl2_store_redis_t *)store;
    rl2_redis_groups_t gs;
    rl2_status_t       st, first = RL2_OK;
    rl2_err_t          e;

    if ((st = rl2_prepare(s, layers, n, which == RL2_SCRIPT_REFUND, &gs, err))
        != RL2_OK) {
        return st;
    }
    for (size_t k = 0; k < gs.n; k++) {
        st = rl2_group_run(s, which, layers, &gs.g[k], now,
                           first == RL2_OK ? err : &e);
        if (first == RL2_OK) {
            first = st;
        }
    }
    return first;
}

static int
rl2_group_refused(const rl2_layer_t *layers, const rl2_redis_group_t *g)
{
    for (size_t i = 0; i < g->n; i++) {
        const rl2_layer_t *l = &layers[g->idx[i]];

        if (l->refused && !l->dry_run && !l->limit->unlimited) {
            return 1;
        }
    }
    return 0;
}

/* Take back groups [0, upto) of an apply that did not go through. */
static rl2_status_t
rl2_undo(rl2_store_redis_t *s, rl2_layer_t *layers,
         const rl2_redis_groups_t *gs, size_t upto, const rl2_clock_t *now,
         rl2_err_t *err)
{
    rl2_status_t      st, first = RL2_OK;
    rl2_redis_group_t g;
    rl2_err_t         e;

    for (size_t k = 0; k < upto; k++) {
        g = gs->g[k];
        g.n = 0;
        for (size_t i = 0; i < gs->g[k].n; i++) {
            if (layers[gs->g[k].idx[i]].committed) {
                g.idx[g.n++] = gs->g[k].idx[i];
            }
        }
        if (g.n == 0) {
            continue;
        }
        st = rl2_group_run(s, RL2_SCRIPT_REFUND, layers, &g, now,
                           first == RL2_OK ? err : &e);
        if (st != RL2_OK) {
            first = first == RL2_OK ? st : first;
            continue;
        }
        for (size_t i = 0; i < g.n; i++) {
            layers[g.idx[i]].committed = 0;
            layers[g.idx[i]].committed_us = 0;
        }
    }
    return first;
}

/* Apply the groups in turn (see the head of the file). */
static rl2_status_t
rl2_redis_groups_apply(rl2_store_redis_t *s, rl2_layer_t *layers,
                       const rl2_redis_groups_t *gs, const rl2_clock_t *now,
                       rl2_err_t *err)
{
    rl2_status_t st;
    rl2_err_t    e;
    size_t       k;

    for (k = 0; k < gs->n; k++) {
        st = rl2_group_run(s, RL2_SCRIPT_APPLY, layers, &gs->g[k], now, err);
        if (st != RL2_OK) {
            /* The error that sent us here is the one reported. */
            rl2_undo(s, layers, gs, k, now, &e);
            return st;
        }
        if (rl2_group_refused(layers, &gs->g[k])) {
            break;
        }
    }
    if (k == gs->n) {
        return RL2_OK;
    }
    if ((st = rl2_undo(s, layers, gs, k, now, err)) != RL2_OK) {
        return st;
    }
    for (k++; k < gs->n; k++) {
        st = rl2_group_run(s, RL2_SCRIPT_PEEK, layers, &gs->g[k], now, err);
        if (st != RL2_OK) {
            return st;
        }
    }
    return RL2_OK;
}

static rl2_status_t
rl2_redis_apply(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_store_redis_t *s = (rl2_store_redis_t *)store;
    rl2_redis_groups_t gs;
    rl2_status_t       st;

    /* On an error nothing may look counted. */
    for (size_t i = 0; i < n && i < RL2_MAX_LAYERS; i++) {
        memset(&layers[i].result, 0, sizeof(layers[i].result));
        layers[i].refused = 0;
        layers[i].overflow_used = 0;
        layers[i].committed = 0;
        layers[i].committed_us = 0;
    }
    if ((st = rl2_prepare(s, layers, n, 0, &gs, err)) != RL2_OK || gs.n == 0) {
        return st;
    }
    if (gs.n == 1) {
        return rl2_group_run(s, RL2_SCRIPT_APPLY, layers, &gs.g[0], now, err);
    }
    return rl2_redis_groups_apply(s, layers, &gs, now, err);
}

static rl2_status_t
rl2_redis_refund(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                 const rl2_clock_t *now, rl2_err_t *err)
{
    return rl2_redis_each(store, RL2_SCRIPT_REFUND, layers, n, now, err);
}

static rl2_status_t
rl2_redis_peek(rl2_store_t *store, rl2_layer_t *layers, size_t n,
               const rl2_clock_t *now, rl2_err_t *err)
{
    return rl2_redis_each(store, RL2_SCRIPT_PEEK, layers, n, now, err);
}

/* DEL of one layer's two keys (they share a hash tag, so one slot). */
static rl2_status_t
rl2_redis_del(rl2_store_redis_t *s, const rl2_layer_t *l, rl2_err_t *err)
{
    char              keys[2][RL2_REDIS_KEY_MAX];
    const char       *argv[3] = { "DEL", keys[0], keys[1] };
    size_t            len[3] = { 3, 0, 0 };
    rl2_redis_conn_t *conn;
    redisReply       *reply;
    rl2_status_t      st;

    rl2_redis_key(l->key, 's', keys[0]);
    rl2_redis_key(l->key, 'o', keys[1]);
    len[1] = strlen(keys[0]);
    len[2] = strlen(keys[1]);
    if (s->cluster != NULL) {
        st = rl2_redis_cluster_command(s->cluster,
                                       rl2_redis_key_slot(keys[0], len[1]), 3,
                                       argv, len, keys[0], &reply, NULL, err);
    }
    else if ((st = rl2_redis_pool_get(s->pool, &conn, err)) == RL2_OK) {
        st = rl2_redis_command(conn, 3, argv, len, keys[0], &reply, err);
    }
    if (st != RL2_OK) {
        return st;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis DEL %s: %.100s", keys[0],
                         reply->str);
    }
    rl2_redis_reply_free(reply);
    return st;
}

/* One DEL per layer, each in its own slot in a Cluster. */
static rl2_status_t
rl2_redis_reset(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_status_t st = RL2_OK;

    (void)now;
    for (size_t i = 0; i < n && st == RL2_OK; i++) {
        st = rl2_redis_del((rl2_store_redis_t *)store, &layers[i], err);
    }
    return st;
}

static void
rl2_redis_destroy(rl2_store_t *store)
{
    rl2_store_redis_t *s = (rl2_store_redis_t *)store;

    rl2_redis_pool_destroy(s->pool);
    rl2_redis_cluster_destroy(s->cluster);
    free(s);
}

static const rl2_store_ops_t rl2_redis_ops = {
    "redis",        rl2_redis_apply,   rl2_redis_refund,
    rl2_redis_peek, rl2_redis_destroy, rl2_redis_reset
};

/* One lease call per slot: every ask on a single server, each in its own
 * slot in a Cluster (a layer's key has its own hash tag). */
rl2_status_t
rl2_store_redis_lease(rl2_store_t *store, rl2_lease_ask_t *asks, size_t n,
                      const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_store_redis_t *s = (rl2_store_redis_t *)store;
    rl2_redis_target_t to = { NULL, s->cluster, 0, NULL };
    const int64_t     *now_us = s->test_clock ? &now->wall_us : NULL;
    char               key[RL2_REDIS_KEY_MAX];
    rl2_status_t       st;

    if (s->cluster == NULL) {
        if ((st = rl2_redis_pool_get(s->pool, &to.conn, err)) != RL2_OK) {
            return st;
        }
        return rl2_redis_lease_run(&to, asks, n, now_us, err);
    }
    for (size_t i = 0; i < n; i++) {
        rl2_redis_key(asks[i].layer->key, 's', key);
        to.slot = rl2_redis_key_slot(key, strlen(key));
        if ((st = rl2_redis_lease_run(&to, &asks[i], 1, now_us, err))
            != RL2_OK) {
            return st;
        }
    }
    return RL2_OK;
}

/* NULL for a Cluster: the violation log then writes to the local ring. */
rl2_redis_pool_t *
rl2_store_redis_pool(rl2_store_t *store)
{
    return ((rl2_store_redis_t *)store)->pool;
}

/* NULL for one server or Sentinel's master. */
rl2_redis_cluster_t *
rl2_store_redis_cluster(rl2_store_t *store)
{
    return ((rl2_store_redis_t *)store)->cluster;
}

/* Opens nothing: the first request of each thread connects (and, in a
 * Cluster, the first of the process loads the slot map). */
rl2_status_t
rl2_store_redis_create(const rl2_redis_conf_t *conf, rl2_store_t **out,
                       rl2_err_t *err)
{
    rl2_store_redis_t *s;
    rl2_status_t       st;

    *out = NULL;
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    st = conf->n_seeds > 0 ? rl2_redis_cluster_create(conf, &s->cluster, err)
                           : rl2_redis_pool_create(conf, &s->pool, err);
    if (st != RL2_OK) {
        free(s);
        return st;
    }
    s->base.ops = &rl2_redis_ops;
    s->test_clock = conf->test_clock;
    *out = &s->base;
    return RL2_OK;
}
