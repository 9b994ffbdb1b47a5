/*
 * redis.h -- the settings of a Redis server, and the Redis store.
 *
 * The settings (rl2_redis_conf_t) are a front end's to fill; the
 * connections, per-thread pools and the Cluster router behind the store
 * are the core's (redis/redis_internal.h).
 *
 * The store writes with write(2): the process must ignore SIGPIPE (Apache
 * does), or a connection the server closed kills it.  Host names are
 * resolved by getaddrinfo() at every connect, outside the timeouts:
 * configure an address.  Debian 12's hiredis 0.14 has no TLS.
 */
#ifndef RL2_REDIS_H
#define RL2_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/status.h"
#include "ratelimit2/store.h"

#define RL2_REDIS_HOST_MAX      256
#define RL2_REDIS_PATH_MAX      108 /* sun_path */
#define RL2_REDIS_USER_MAX      128
#define RL2_REDIS_PASS_MAX      256
#define RL2_REDIS_NAME_MAX      (RL2_REDIS_PATH_MAX + 8)
#define RL2_REDIS_SENTINELS_MAX 8
#define RL2_REDIS_MASTER_MAX    64
#define RL2_REDIS_SEEDS_MAX     8
#define RL2_REDIS_OVR_KEY_MAX   128 /* NUL included */

/* NAME of the runtime override table's keys (overrides.h): the hash
 * "{NAME}", "{NAME}:version" and "{NAME}:epoch", one hash tag so that a
 * Cluster keeps them on one node. */
#define RL2_REDIS_OVERRIDES_KEY_DEFAULT "rl2:overrides"

/* Everything is copied in: the caller may free its strings afterwards. */
typedef struct {
    char host[RL2_REDIS_HOST_MAX];      /* address (or name) for TCP */
    int  port;                          /* TCP port */
    char unix_path[RL2_REDIS_PATH_MAX]; /* unix socket; "" means TCP */
    char username[RL2_REDIS_USER_MAX];  /* ACL user; "" means "default" */
    char password[RL2_REDIS_PASS_MAX];  /* "" means no AUTH */
    int  db;                            /* SELECTed when not 0 */
    int  connect_timeout_ms;            /* > 0 */
    int  command_timeout_ms;            /* > 0: each read or write */
    int  test_clock;                    /* tests only: the store's scripts
                                           take "now" from the caller's
                                           rl2_clock_t (wall_us, for every
                                           algorithm) instead of Redis
                                           TIME */
    /* Sentinel discovery: when n_sentinels > 0, host and port are ignored
     * and every connection goes to the master the sentinels name. */
    char sentinels[RL2_REDIS_SENTINELS_MAX][RL2_REDIS_HOST_MAX];
    /* "host:port" or "[v6]:port" */
    int  n_sentinels;                       /* 0 .. RL2_REDIS_SENTINELS_MAX */
    char master_name[RL2_REDIS_MASTER_MAX]; /* as in "sentinel monitor" */
    /* Redis Cluster: when n_seeds > 0, host and port are ignored; the
     * seeds are asked for the slot map and every command goes to the
     * master of its key's slot (redis_cluster.c). */
    char seeds[RL2_REDIS_SEEDS_MAX][RL2_REDIS_HOST_MAX];
    /* "host:port" or "[v6]:port" */
    int n_seeds; /* 0 .. RL2_REDIS_SEEDS_MAX */
    /* NAME of the override table's keys (no '{' or '}'); "" means
     * RL2_REDIS_OVERRIDES_KEY_DEFAULT.  Fleets that share one Redis
     * server but not their overrides give each its own. */
    char overrides_key[RL2_REDIS_OVR_KEY_MAX];
    /* Lease mode (redis_lease.c): every limit that can be leased takes
     * slices of its allowance instead of one call per request, unless
     * its own 'lease' says off; a limit's 'lease = on' leases it even
     * when this is 0. */
    int lease;         /* 1: on for the whole store */
    int lease_time_ms; /* 1..60000: how long a slice may be used */
    int lease_max;     /* 1..1000000: the largest slice */
    /* 1 (rl2_redis_conf_init): the threads of a process share one
     * connection per server, and the commands they send at the same time
     * are written together (pipelined); 0: a connection per thread. */
    int pipeline;
} rl2_redis_conf_t;

/* The Redis store (store_redis.c): every layer of a request is decided by
 * one atomic Lua script on the server (in a Cluster, one per slot the
 * layers' keys fall in, see store_redis.c), with the semantics of the local
 * store (see store.h) and the algorithms' arithmetic (algo.h), on Redis
 * TIME for every algorithm (committed_us is that clock too).  A Redis
 * error or timeout is RL2_ERR_STORE with a message naming the server and
 * the first key, after at most one command timeout (plus the connect
 * timeout when the thread had to reconnect, and in a Cluster up to one
 * more of waits between -TRYAGAIN resends); the caller decides what to do
 * (failover).  A request that timed out may still run when the
 * server wakes up: it may have been counted.  Opens nothing until a thread
 * first uses it.  Freed by rl2_store_destroy(). */
rl2_status_t rl2_store_redis_create(const rl2_redis_conf_t *conf,
                                    rl2_store_t **out, rl2_err_t *err);

#endif /* RL2_REDIS_H */
