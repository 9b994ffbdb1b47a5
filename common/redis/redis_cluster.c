/*
 * redis_cluster.c -- Redis Cluster routing (redis.h): key slots (CRC16
 * and the {hash tag} rule), the slot map from CLUSTER SLOTS, one
 * connection pool per node, -MOVED / -ASK redirections, and -TRYAGAIN
 * sent again after a short wait.
 *
 * hiredis 0.14 knows nothing of Cluster, so this is ours.  A router is
 * shared by every thread of a process; what threads share is plain data:
 *   - the node table, append-only: an entry is written, then published by
 *     a release store of the count, and never changes again;
 *   - the slot map, one byte per slot (node index + 1, 0: unknown), each
 *     written and read atomically, so a reader sees for every slot either
 *     the old node or the new one;
 *   - a "stale" flag: the first thread that finds it set loads the map
 *     again while the others go on with the map they have.
 * Connections are never shared: each node has a pool (redis_conn.c) that
 * gives each thread its own, opened after fork on first use.  No lock is
 * held during I/O; the lock only serialises adding a node and writing a
 * whole map.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "ratelimit2/redis.h"
#include "base/base_internal.h"
#include "redis/redis_internal.h"

typedef struct {
    char              host[RL2_REDIS_HOST_MAX];
    int               port;
    rl2_redis_pool_t *pool; /* this node's connections, one per thread */
} rl2_cnode_t;

struct rl2_redis_cluster {
    rl2_redis_conf_t      conf; /* seeds, timeouts, AUTH: each node's */
    char                  name[RL2_REDIS_NAME_MAX];
    pthread_mutex_t       lock; /* adding a node, writing a whole map */
    rl2_cnode_t           nodes[RL2_REDIS_CLUSTER_NODES_MAX];
    atomic_int            n_nodes;
    _Atomic unsigned char slots[RL2_REDIS_CLUSTER_SLOTS];
    atomic_int            stale; /* load the map before the next command */
    _Atomic int64_t       refreshed_ms; /* last attempt, monotonic */
    atomic_uint_fast64_t  moved;
    atomic_uint_fast64_t  asked;
    atomic_uint_fast64_t  tryagain;
    atomic_uint_fast64_t  refreshes;
};

/* A stale map is loaded at most this often: while a master is down every
 * command to it fails and marks the map stale, and asking the others each
 * time would double the traffic for nothing. */
#define RL2_REFRESH_MIN_MS 100

/* The first wait before sending a -TRYAGAIN command again (ms); each
 * further wait is twice the one before. */
#define RL2_TRYAGAIN_FIRST_MS 10

/* The slot map stores node index + 1 in a byte. */
_Static_assert(RL2_REDIS_CLUSTER_NODES_MAX < 256, "node index in a byte");

/* ---- slots ---- */

uint16_t
rl2_redis_crc16(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    unsigned             crc = 0;

    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)p[i] << 8;
        for (int b = 0; b < 8; b++) {
            crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xFFFF;
        }
    }
    return (uint16_t)crc;
}

unsigned
rl2_redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len), *close;

    if (open != NULL) {
        close = memchr(open + 1, '}', len - (size_t)(open + 1 - key));
        /* "{}" or an unclosed "{": the whole key is hashed. */
        if (close != NULL && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    return rl2_redis_crc16(key, len) & (RL2_REDIS_CLUSTER_SLOTS - 1);
}

/* ---- nodes ---- */

/* The node at host:port, added when new; its index, or -1 when the table
 * is full (err set). */
static int
rl2_node_find(rl2_redis_cluster_t *cl, const char *host, int port,
              rl2_err_t *err)
{
    rl2_redis_conf_t nc;
    rl2_cnode_t     *n;
    int              count, idx = -1;

    pthread_mutex_lock(&cl->lock);
    count = atomic_load_explicit(&cl->n_nodes, memory_order_relaxed);
    for (int i = 0; i < count && idx < 0; i++) {
        if (cl->nodes[i].port == port && strcmp(cl->nodes[i].host, host) == 0) {
            idx = i;
        }
    }
    if (idx < 0 && count >= RL2_REDIS_CLUSTER_NODES_MAX) {
        rl2_err_set(err, RL2_ERR_STORE,
                    "redis %s: more than %d node "
                    "addresses",
                    cl->name, RL2_REDIS_CLUSTER_NODES_MAX);
    }
    else if (idx < 0) {
        n = &cl->nodes[count];
        nc = cl->conf;
        nc.n_seeds = 0;
        /* -ASK needs ASKING right before its command on one connection:
         * a node's commands are not pipelined (redis_internal.h) */
        nc.pipeline = 0;
        snprintf(nc.host, sizeof(nc.host), "%s", host);
        nc.port = port;
        if (rl2_redis_pool_create(&nc, &n->pool, err) == RL2_OK) {
            snprintf(n->host, sizeof(n->host), "%s", host);
            n->port = port;
            idx = count;
            atomic_store_explicit(&cl->n_nodes, count + 1,
                                  memory_order_release);
        }
    }
    pthread_mutex_unlock(&cl->lock);
    return idx;
}

/* ---- the slot map ---- */

/* One master entry of CLUSTER SLOTS: [host, port, id, ...].  An empty host
 * means the node that answered; "?" an address it does not know. */
static int
rl2_map_master(rl2_redis_cluster_t *cl, const rl2_cnode_t *asked,
               const redisReply *m, rl2_err_t *err)
{
    const char *host;
    int         idx;

    if (m->type != REDIS_REPLY_ARRAY || m->elements < 2
        || m->element[0]->type != REDIS_REPLY_STRING
        || m->element[1]->type != REDIS_REPLY_INTEGER
        || m->element[0]->len >= RL2_REDIS_HOST_MAX
        || m->element[1]->integer < 1 || m->element[1]->integer > 65535) {
        rl2_err_set(err, RL2_ERR_STORE,
                    "redis %s:%d: CLUSTER SLOTS: "
                    "unexpected reply",
                    asked->host, asked->port);
        return -1;
    }
    host = m->element[0]->len == 0 ? asked->host : m->element[0]->str;
    if (strcmp(host, "?") == 0) {
        return 0;
    }
    idx = rl2_node_find(cl, host, (int)m->element[1]->integer, err);
    return idx < 0 ? -1 : idx + 1;
}

/* CLUSTER SLOTS -> map (node index + 1 per slot); RL2_ERR_STORE for a
 * reply that is not a slot map. */
static rl2_status_t
rl2_map_parse(rl2_redis_cluster_t *cl, const rl2_cnode_t *asked,
              const redisReply *r, unsigned char *map, rl2_err_t *err)
{
    if (r->type == REDIS_REPLY_ERROR || r->type != REDIS_REPLY_ARRAY
        || r->elements == 0) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "redis %s:%d: CLUSTER SLOTS: "
                           "%.120s",
                           asked->host, asked->port,
                           r->type == REDIS_REPLY_ERROR ? r->str
                                                        : "no slot is served");
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        long long         lo, hi;
        int               v;

        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3
            || e->element[0]->type != REDIS_REPLY_INTEGER
            || e->element[1]->type != REDIS_REPLY_INTEGER
            || (lo = e->element[0]->integer) < 0
            || (hi = e->element[1]->integer) < lo
            || hi >= RL2_REDIS_CLUSTER_SLOTS) {
            return rl2_err_set(err, RL2_ERR_STORE,
                               "redis %s:%d: CLUSTER "
                               "SLOTS: unexpected reply",
                               asked->host, asked->port);
        }
        if ((v = rl2_map_master(cl, asked, e->element[2], err)) < 0) {
            return RL2_ERR_STORE;
        }
        memset(map + lo, v, (size_t)(hi - lo + 1));
    }
    return RL2_OK;
}

/* Ask node idx for the slot map, on this thread's connection to it. */
static rl2_status_t
rl2_map_ask(rl2_redis_cluster_t *cl, int idx, unsigned char *map,
            rl2_err_t *err)
{
    const char       *argv[2] = { "CLUSTER", "SLOTS" };
    size_t            len[2] = { 7, 5 };
    rl2_redis_conn_t *conn;
    redisReply       *r;
    rl2_status_t      st;

    if ((st = rl2_redis_pool_get(cl->nodes[idx].pool, &conn, err)) != RL2_OK
        || (st =
                rl2_redis_command(conn, 2, argv, len, "CLUSTER SLOTS", &r, err))
               != RL2_OK) {
        return st;
    }
    memset(map, 0, RL2_REDIS_CLUSTER_SLOTS);
    st = rl2_map_parse(cl, &cl->nodes[idx], r, map, err);
    rl2_redis_reply_free(r);
    return st;
}

/* Load the slot map: the seeds first (they are the first nodes), then
 * every other node learnt so far, until one answers. */
static rl2_status_t
rl2_map_refresh(rl2_redis_cluster_t *cl, rl2_err_t *err)
{
    unsigned char *map = malloc(RL2_REDIS_CLUSTER_SLOTS);
    rl2_status_t   st = RL2_ERR_STORE;

    if (map == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    for (int i = 0;
         st != RL2_OK
         && i < atomic_load_explicit(&cl->n_nodes, memory_order_acquire);
         i++) {
        st = rl2_map_ask(cl, i, map, err);
    }
    if (st == RL2_OK) {
        pthread_mutex_lock(&cl->lock);
        for (size_t s = 0; s < RL2_REDIS_CLUSTER_SLOTS; s++) {
            atomic_store_explicit(&cl->slots[s], map[s], memory_order_release);
        }
        pthread_mutex_unlock(&cl->lock);
        atomic_fetch_add_explicit(&cl->refreshes, 1, memory_order_relaxed);
    }
    free(map);
    return st;
}

/* The node serving slot.  A stale map is loaded again by the one thread
 * that takes the flag (at most every RL2_REFRESH_MIN_MS); when that fails
 * the old map still routes (and the flag is set again so that a later
 * command retries), unless it does not know the slot. */
static rl2_status_t
rl2_route(rl2_redis_cluster_t *cl, unsigned slot, int *idx, rl2_err_t *err)
{
    rl2_status_t st = RL2_OK;
    int64_t      now = (rl2_mono_us() / 1000);
    int          v, tried = 0;

    if (atomic_load_explicit(&cl->stale, memory_order_acquire)
        && now - atomic_load_explicit(&cl->refreshed_ms, memory_order_relaxed)
               >= RL2_REFRESH_MIN_MS
        && atomic_exchange_explicit(&cl->stale, 0, memory_order_acq_rel)) {
        tried = 1;
        atomic_store_explicit(&cl->refreshed_ms, now, memory_order_relaxed);
        if ((st = rl2_map_refresh(cl, err)) != RL2_OK) {
            atomic_store_explicit(&cl->stale, 1, memory_order_release);
        }
    }
    v = atomic_load_explicit(&cl->slots[slot], memory_order_acquire);
    if (v == 0 && !tried) {
        st = rl2_map_refresh(cl, err);
        v = atomic_load_explicit(&cl->slots[slot], memory_order_acquire);
    }
    if (v == 0) {
        return st != RL2_OK ? st
                            : rl2_err_set(err, RL2_ERR_STORE,
                                          "redis %s: no node serves "
                                          "slot %u",
                                          cl->name, slot);
    }
    *idx = v - 1;
    return RL2_OK;
}

/* ---- commands ---- */

typedef enum {
    RL2_REDIRECT_NONE,
    RL2_REDIRECT_MOVED,
    RL2_REDIRECT_ASK
} rl2_redirect_t;

/* "-MOVED slot host:port" or "-ASK slot host:port" -> the slot and node;
 * an empty host (":port") is the host of the node that answered. */
static rl2_redirect_t
rl2_redirect_of(const redisReply *r, const rl2_cnode_t *from, unsigned *slot,
                char *host, int *port)
{
    rl2_redirect_t kind;
    const char    *p;
    char          *end;
    unsigned long  s;

    if (r->type != REDIS_REPLY_ERROR || r->str == NULL) {
        return RL2_REDIRECT_NONE;
    }
    if (strncmp(r->str, "MOVED ", 6) == 0) {
        kind = RL2_REDIRECT_MOVED;
        p = r->str + 6;
    }
    else if (strncmp(r->str, "ASK ", 4) == 0) {
        kind = RL2_REDIRECT_ASK;
        p = r->str + 4;
    }
    else {
        return RL2_REDIRECT_NONE;
    }
    s = strtoul(p, &end, 10);
    if (end == p || *end != ' ' || s >= RL2_REDIS_CLUSTER_SLOTS) {
        return RL2_REDIRECT_NONE;
    }
    *slot = (unsigned)s;
    if (end[1] == ':') {
        long pn = strtol(end + 2, &end, 10);

        snprintf(host, RL2_REDIS_HOST_MAX, "%s", from->host);
        *port = (int)pn;
        return *end == '\0' && pn > 0 && pn <= 65535 ? kind : RL2_REDIRECT_NONE;
    }
    return rl2_redis_addr_split(end + 1, host, RL2_REDIS_HOST_MAX, port) == 0
               ? kind
               : RL2_REDIRECT_NONE;
}

static int
rl2_is_clusterdown(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->str != NULL
           && strncmp(r->str, "CLUSTERDOWN", 11) == 0;
}

/* Send once to node idx (with ASKING first when asking). */
static rl2_status_t
rl2_node_send(rl2_redis_cluster_t *cl, int idx, int asking, int argc,
              const char **argv, const size_t *argvlen, const char *what,
              redisReply **reply, rl2_err_t *err)
{
    rl2_redis_conn_t *conn;
    rl2_status_t      st = rl2_redis_pool_get(cl->nodes[idx].pool, &conn, err);

    if (st == RL2_OK) {
        st = asking ? rl2_redis_command_asking(conn, argc, argv, argvlen, what,
                                               reply, err)
                    : rl2_redis_command(conn, argc, argv, argvlen, what, reply,
                                        err);
    }
    if (st != RL2_OK) {
        /* The node may have died and a replica taken its slots. */
        atomic_store_explicit(&cl->stale, 1, memory_order_release);
    }
    return st;
}

static int
rl2_is_tryagain(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->str != NULL
           && strncmp(r->str, "TRYAGAIN", 8) == 0;
}

/* What one command may still spend on -TRYAGAIN, across its hops. */
typedef struct {
    int     resends; /* so far, up to RL2_REDIS_TRYAGAIN_MAX */
    int64_t wait_ms; /* the next wait */
    int64_t left_ms; /* sleep left of one command timeout */
} rl2_tryagain_t;

/* rl2_node_send(), and again while the node answers -TRYAGAIN: a command
 * with several keys (a layer's state and overflow keys) caught by a slot
 * migration between them, some on the migrating node and some already on
 * the importing one.  MIGRATE carries the rest within milliseconds, so the
 * command goes again to the same node, with the same ASKING, after 10, 20,
 * 40... ms, as long as the command's budget lasts.  Then the -TRYAGAIN
 * reply is the caller's, as any error reply.  A redirection answered to a
 * resend (the migration finished) is the caller's to follow. */
static rl2_status_t
rl2_node_send_patient(rl2_redis_cluster_t *cl, int idx, int asking, int argc,
                      const char **argv, const size_t *argvlen,
                      const char *what, rl2_tryagain_t *ta, redisReply **reply,
                      rl2_err_t *err)
{
    rl2_status_t st =
        rl2_node_send(cl, idx, asking, argc, argv, argvlen, what, reply, err);

    while (st == RL2_OK && rl2_is_tryagain(*reply)
           && ta->resends < RL2_REDIS_TRYAGAIN_MAX && ta->left_ms > 0) {
        rl2_redis_reply_free(*reply);
        *reply = NULL;
        rl2_sleep_ms(ta->wait_ms < ta->left_ms ? ta->wait_ms : ta->left_ms);
        ta->left_ms -= ta->wait_ms;
        ta->wait_ms *= 2;
        ta->resends++;
        atomic_fetch_add_explicit(&cl->tryagain, 1, memory_order_relaxed);
        st = rl2_node_send(cl, idx, asking, argc, argv, argvlen, what, reply,
                           err);
    }
    return st;
}

/* After a redirection: the node to send to next (*idx), and whether with
 * ASKING; RL2_ERR_STORE when the node table is full. */
static rl2_status_t
rl2_redirect_follow(rl2_redis_cluster_t *cl, rl2_redirect_t kind,
                    unsigned rslot, const char *host, int port, int *idx,
                    int *asking, rl2_err_t *err)
{
    if ((*idx = rl2_node_find(cl, host, port, err)) < 0) {
        return RL2_ERR_STORE;
    }
    *asking = kind == RL2_REDIRECT_ASK;
    if (*asking) {
        atomic_fetch_add_explicit(&cl->asked, 1, memory_order_relaxed);
        return RL2_OK;
    }
    /* This slot at once; the whole map before the next command, since a
     * moved slot rarely moves alone. */
    atomic_store_explicit(&cl->slots[rslot], (unsigned char)(*idx + 1),
                          memory_order_release);
    atomic_store_explicit(&cl->stale, 1, memory_order_release);
    atomic_fetch_add_explicit(&cl->moved, 1, memory_order_relaxed);
    return RL2_OK;
}

rl2_status_t
rl2_redis_cluster_command(rl2_redis_cluster_t *cl, unsigned slot, int argc,
                          const char **argv, const size_t *argvlen,
                          const char *what, struct redisReply **reply,
                          const char **node, rl2_err_t *err)
{
    char host[RL2_REDIS_HOST_MAX];
    int  idx = 0, port = 0, asking = 0;
    /* resends and sleep for the whole command, not for each hop */
    rl2_tryagain_t ta = { 0, RL2_TRYAGAIN_FIRST_MS,
                          cl->conf.command_timeout_ms };
    unsigned       rslot = 0;
    rl2_redirect_t kind;
    rl2_status_t   st;

    *reply = NULL;
    if (slot >= RL2_REDIS_CLUSTER_SLOTS) {
        return rl2_err_set(err, RL2_ERR_INVALID, "redis %s: slot %u", cl->name,
                           slot);
    }
    if ((st = rl2_route(cl, slot, &idx, err)) != RL2_OK) {
        return st;
    }
    for (int hops = 0;; hops++) {
        if (node != NULL) {
            *node = rl2_redis_pool_name(cl->nodes[idx].pool);
        }
        st = rl2_node_send_patient(cl, idx, asking, argc, argv, argvlen, what,
                                   &ta, reply, err);
        if (st != RL2_OK) {
            return st;
        }
        kind = rl2_redirect_of(*reply, &cl->nodes[idx], &rslot, host, &port);
        if (kind == RL2_REDIRECT_NONE) {
            if (rl2_is_clusterdown(*reply)) {
                atomic_store_explicit(&cl->stale, 1, memory_order_release);
            }
            return RL2_OK;
        }
        if (hops == RL2_REDIS_REDIRECTS_MAX) {
            st = rl2_err_set(err, RL2_ERR_STORE,
                             "redis %s: %s: more than "
                             "%d redirections (last: %.100s)",
                             cl->name, what, RL2_REDIS_REDIRECTS_MAX,
                             (*reply)->str);
        }
        rl2_redis_reply_free(*reply);
        *reply = NULL;
        if (st != RL2_OK
            || (st = rl2_redirect_follow(cl, kind, rslot, host, port, &idx,
                                         &asking, err))
                   != RL2_OK) {
            return st;
        }
    }
}

/* ---- the router ---- */

rl2_status_t
rl2_redis_cluster_create(const rl2_redis_conf_t *conf,
                         rl2_redis_cluster_t **out, rl2_err_t *err)
{
    rl2_redis_cluster_t *cl;
    char                 host[RL2_REDIS_HOST_MAX];
    rl2_status_t         st;
    int                  port;

    *out = NULL;
    if ((st = rl2_redis_conf_check(conf, err)) != RL2_OK) {
        return st;
    }
    if (conf->n_seeds < 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: a Cluster needs "
                           "seed nodes");
    }
    if ((cl = calloc(1, sizeof(*cl))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    cl->conf = *conf;
    snprintf(cl->name, sizeof(cl->name), "cluster:%.*s",
             (int)sizeof(cl->name) - 9, conf->seeds[0]);
    pthread_mutex_init(&cl->lock, NULL);
    atomic_init(&cl->stale, 1);
    atomic_init(&cl->refreshed_ms, (rl2_mono_us() / 1000) - RL2_REFRESH_MIN_MS);
    /* The seeds are the first nodes: a refresh asks them first.  Creating
     * their pools opens nothing. */
    for (int i = 0; i < conf->n_seeds; i++) {
        rl2_redis_addr_split(conf->seeds[i], host, sizeof(host), &port);
        if (rl2_node_find(cl, host, port, err) < 0) {
            rl2_redis_cluster_destroy(cl);
            return RL2_ERR_STORE;
        }
    }
    *out = cl;
    return RL2_OK;
}

void
rl2_redis_cluster_stats(const rl2_redis_cluster_t *cl,
                        rl2_redis_cluster_stats_t *out)
{
    out->moved = atomic_load(&cl->moved);
    out->asked = atomic_load(&cl->asked);
    out->tryagain = atomic_load(&cl->tryagain);
    out->refreshes = atomic_load(&cl->refreshes);
}

const char *
rl2_redis_cluster_name(const rl2_redis_cluster_t *cl)
{
    return cl->name;
}

void
rl2_redis_cluster_destroy(rl2_redis_cluster_t *cl)
{
    if (cl == NULL) {
        return;
    }
    for (int i = 0; i < atomic_load(&cl->n_nodes); i++) {
        rl2_redis_pool_destroy(cl->nodes[i].pool);
    }
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}
