/*
 * redis_internal.h -- what the redis folder gives the rest of the core
 * and not libratelimit2-dev (private to the core): connections, the
 * per-thread pools, Sentinel discovery and the Cluster router, the tier
 * source's entry points.
 *
 *   redis_cluster.c       Redis Cluster routing: key slots, the slot map,
 *                         redirections
 *   redis_conn.c          connections to one server and the per-thread
 *                         pool
 *   redis_lease.c         lease mode: slices of an allowance, held in a
 *                         shared-memory table
 *   redis_lua.c           the Lua of the Redis store, one fragment per
 *                         algorithm
 *   redis_pipe.c          pipelining: the commands of a process's threads
 *                         written together on one connection
 *   redis_resp.c, .h      a command in the Redis protocol (RESP)
 *   redis_scripts.c, .h   calling the store's Lua: keys, arguments,
 *                         EVALSHA
 *   redis_store.c         the store interface over Redis
 *   redis_topology.c      where the master is: Sentinel, Cluster seeds
 *   tier_source.c         tiers from a billing system's Redis hash
 *   redis_internal.h      this file
 */
#ifndef RL2_REDIS_INTERNAL_H
#define RL2_REDIS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#include "ratelimit2/failover.h"
#include "ratelimit2/redis.h"
#include "ratelimit2/store.h"
#include "ratelimit2/tier_source.h"

/*
 * A connection (rl2_redis_conn_t) wraps one hiredis context: connect with
 * a timeout over TCP or a unix socket, a command timeout on every read and
 * write, AUTH (password, or ACL user and password) and SELECT.  A hiredis
 * context is dead after its first I/O error or timeout: the connection is
 * then marked broken and is never used again.
 *
 * A pool (rl2_redis_pool_t) is a per-thread cache of connections: each
 * thread gets its own connection, opened lazily on its first command and
 * closed when the thread exits or the pool is destroyed; a broken one, one
 * the server has closed, or one inherited across fork() is discarded and a
 * new one opened on the next use.  So nothing is opened before Apache
 * forks its children, and no context is ever shared between threads:
 *   - prefork: one connection per child (one thread);
 *   - worker and event: one per worker thread of each child (a request
 *     whose hooks run on several threads uses each thread's own);
 *   - ratelimit2-fcgi: one per FCGX_Accept_r thread.
 * A server therefore sees up to processes x threads connections.
 *
 * With conf.pipeline set, a pool instead gives every thread one shared
 * handle whose commands go to the pool's pipe (redis_pipe.c): one
 * connection per process, on which the commands that threads send at the
 * same time are written together and their replies read in order (group
 * commit, below).  A server then sees one connection per process (and
 * per server of a Cluster: a node's pool never pipelines, since -ASK
 * needs ASKING right before its command).
 *
 * hiredis writes with write(2): the process must ignore SIGPIPE (Apache
 * does), or a connection the server closed kills it.  Host names are
 * resolved by getaddrinfo() at every connect, outside the timeouts:
 * configure an address.  Debian 12's hiredis 0.14 has no TLS.
 */

struct redisReply;
typedef struct rl2_redis_conn rl2_redis_conn_t;
typedef struct rl2_redis_pool rl2_redis_pool_t;

/* 127.0.0.1:6379, db 0, no AUTH, connect 200 ms, commands 100 ms. */
void rl2_redis_conf_init(rl2_redis_conf_t *conf);

/* One connection, ready for commands (connected, authenticated, database
 * selected).  With sentinels configured, the sentinels are asked in turn
 * for the master's address first (redis_topology.c), so that a connection
 * opened after a failover goes to the new master.  A Cluster conf (seeds)
 * is RL2_ERR_CONFIG: a Cluster is reached through the router below, one
 * pool per node.  Errors are
 * RL2_ERR_STORE naming host:port (or the socket, or the sentinels).
 * Freed by rl2_redis_conn_close(). */
rl2_status_t rl2_redis_conn_open(const rl2_redis_conf_t *conf,
                                 rl2_redis_conn_t **out, rl2_err_t *err);
void         rl2_redis_conn_close(rl2_redis_conn_t *conn);

/* Did an I/O error or a timeout kill it, or did the server answer
 * -READONLY (a replica: its master was demoted by a failover)? */
int rl2_redis_conn_broken(const rl2_redis_conn_t *conn);

/* "host:port" or "unix:/path", for messages. */
const char *rl2_redis_conn_name(const rl2_redis_conn_t *conn);

/* Send one command (argv form: arguments may hold any bytes) and wait for
 * its reply, for at most the command timeout per read or write.  On
 * RL2_OK *reply is the server's answer, possibly an error reply (type
 * REDIS_REPLY_ERROR), which leaves the connection usable; the caller frees
 * it with rl2_redis_reply_free().  On an I/O error or timeout the
 * connection is marked broken and RL2_ERR_STORE is returned with
 * "redis HOST:PORT: WHAT: reason". */
rl2_status_t rl2_redis_command(rl2_redis_conn_t *conn, int argc,
                               const char **argv, const size_t *argvlen,
                               const char *what, struct redisReply **reply,
                               rl2_err_t *err);
void         rl2_redis_reply_free(struct redisReply *reply);

/* ASKING, then the command, pipelined on one connection (one round trip):
 * what a Cluster node's -ASK redirection asks for.  *reply is the
 * command's; an error reply to ASKING is returned in its place. */
rl2_status_t rl2_redis_command_asking(rl2_redis_conn_t *conn, int argc,
                                      const char **argv, const size_t *argvlen,
                                      const char         *what,
                                      struct redisReply **reply,
                                      rl2_err_t          *err);

/* "host:port", "[v6addr]:port", or "v6addr:port" as Redis writes it in
 * -MOVED and -ASK: the host (size bytes) and *port; 0, or -1 when it is
 * none of these. */
int rl2_redis_addr_split(const char *addr, char *host, size_t size, int *port);

/* The sentinel part of rl2_redis_conf_check(): a count in range, a master
 * name, no unix socket, every address HOST:PORT. */
rl2_status_t rl2_redis_sentinel_check(const rl2_redis_conf_t *conf,
                                      rl2_err_t              *err);

/* Ask conf's sentinels in turn, each with the connect and command
 * timeouts, "SENTINEL get-master-addr-by-name NAME"; the first answer
 * gives the master's host (copied into host, size bytes) and *port.
 * RL2_ERR_STORE when no sentinel knows the master, naming the last
 * failure. */
rl2_status_t rl2_redis_sentinel_master(const rl2_redis_conf_t *conf, char *host,
                                       size_t size, int *port, rl2_err_t *err);

/* Is this error reply one that means "not the master any more"? */
int rl2_redis_reply_readonly(const struct redisReply *reply);

/* ---- Redis Cluster (redis_cluster.c; the seed list redis_topology.c)
 *
 * Commands are routed by the slot of their keys: CRC16 (XMODEM) of the key,
 * or of its {hash tag} -- the part between the first '{' and the next '}'
 * when that part is not empty -- modulo 16384.  The slot map comes from
 * CLUSTER SLOTS, asked of the seeds in turn (then of the other nodes
 * known), on first use and whenever it is stale: after a -MOVED, a
 * -CLUSTERDOWN or a connection error.  Each node has a pool of its own:
 * one connection per thread, opened on first use, with the conf's
 * timeouts and AUTH (never SELECT: a Cluster has only database 0).
 * -MOVED sends the command to the named node at once and marks the map
 * stale; -ASK sends ASKING and the command to the named node, once, and
 * leaves the map alone; at most RL2_REDIS_REDIRECTS_MAX redirections per
 * command.  -TRYAGAIN (a multi-key command whose keys a migration has
 * split between two nodes) sends the command again to the same node after
 * 10, 20, 40... ms, at most RL2_REDIS_TRYAGAIN_MAX times and sleeping at
 * most one command timeout in all.  A command that timed out or lost its
 * connection is not sent again (it may have run). ---- */

#define RL2_REDIS_CLUSTER_SLOTS     16384
#define RL2_REDIS_CLUSTER_NODES_MAX 128 /* addresses one router learns */
#define RL2_REDIS_REDIRECTS_MAX     5
#define RL2_REDIS_TRYAGAIN_MAX      5 /* resends of one -TRYAGAIN command */

typedef struct rl2_redis_cluster rl2_redis_cluster_t;

/* Counters of one router, for tests and operators. */
typedef struct {
    uint64_t moved;     /* -MOVED redirections followed */
    uint64_t asked;     /* -ASK redirections followed */
    uint64_t tryagain;  /* commands sent again after -TRYAGAIN */
    uint64_t refreshes; /* slot maps loaded */
} rl2_redis_cluster_stats_t;

/* The Cluster part of rl2_redis_conf_check(): a count in range, every
 * seed HOST:PORT, no sentinels, no unix socket, database 0. */
rl2_status_t rl2_redis_cluster_check(const rl2_redis_conf_t *conf,
                                     rl2_err_t              *err);

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster. */
uint16_t rl2_redis_crc16(const void *buf, size_t len);

/* The Cluster slot of a key (0 .. 16383), with the {hash tag} rule. */
unsigned rl2_redis_key_slot(const char *key, size_t len);

/* A router for the Cluster conf's seeds name.  Opens nothing: the first
 * command of the process loads the slot map.  RL2_ERR_CONFIG for a conf
 * without seeds.  Freed by rl2_redis_cluster_destroy(). */
rl2_status_t rl2_redis_cluster_create(const rl2_redis_conf_t *conf,
                                      rl2_redis_cluster_t   **out,
                                      rl2_err_t              *err);

/* Send one command whose keys are all in `slot` to the master serving
 * that slot, on this thread's connection to it, following redirections.
 * As rl2_redis_command(): RL2_OK with the server's reply (possibly an
 * error reply other than a redirection; -CLUSTERDOWN, and -TRYAGAIN once
 * its resends are spent, come back as such), or RL2_ERR_STORE on an I/O
 * error, a timeout, a slot no node serves, or too many redirections.
 * Resends after -TRYAGAIN add up to one command timeout of sleep to the
 * call.  *node (when not NULL) names the node that answered last
 * ("host:port"; valid while the router lives). */
rl2_status_t rl2_redis_cluster_command(rl2_redis_cluster_t *cl, unsigned slot,
                                       int argc, const char **argv,
                                       const size_t *argvlen, const char *what,
                                       struct redisReply **reply,
                                       const char **node, rl2_err_t *err);

void rl2_redis_cluster_stats(const rl2_redis_cluster_t *cl,
                             rl2_redis_cluster_stats_t *out);

/* "cluster:SEED", for messages. */
const char *rl2_redis_cluster_name(const rl2_redis_cluster_t *cl);

/* Close every node's connections.  No thread may use the router during
 * or after this call. */
void rl2_redis_cluster_destroy(rl2_redis_cluster_t *cl);

/* A per-thread cache of connections to the server conf names. */
rl2_status_t rl2_redis_pool_create(const rl2_redis_conf_t *conf,
                                   rl2_redis_pool_t **out, rl2_err_t *err);

/* This thread's connection: the cached one when it is healthy, else a new
 * one (which costs a connect, and AUTH and SELECT when configured).  The
 * connection belongs to the pool and stays valid for this thread until its
 * next rl2_redis_pool_get() or the thread's exit; never pass it to another
 * thread. */
rl2_status_t rl2_redis_pool_get(rl2_redis_pool_t *pool, rl2_redis_conn_t **out,
                                rl2_err_t *err);

/* This thread's connection when it has a healthy one (returns 1); never
 * connects (returns 0 with *out NULL).  For work that must not wait for a
 * connect, such as the violation log's XADD after a decision. */
int rl2_redis_pool_cached(rl2_redis_pool_t *pool, rl2_redis_conn_t **out);

/* ---- pipelining (redis_pipe.c) ----
 *
 * One connection per process and server, shared by the process's
 * threads: a thread queues its command and, when no batch is in flight,
 * leads one: takes what is queued, writes it at once, reads the replies
 * in order and hands each to its thread.  Each command keeps its own
 * deadline, one command timeout from when it was queued; a failure fails
 * the batch's commands not yet answered with the error one connection
 * of their own would give (RL2_ERR_STORE naming the server and the
 * command).  The replies are the caller's, as rl2_redis_command()'s. */

#define RL2_PIPE_BATCH_MAX   64    /* commands in one batch */
#define RL2_PIPE_BATCH_BYTES 65536 /* their bytes (a larger command alone) */

typedef struct rl2_redis_pipe rl2_redis_pipe_t;

/* Counters of one pipe, for tests and measurements. */
typedef struct {
    uint64_t batches;   /* batches written */
    uint64_t commands;  /* commands in them */
    uint64_t max_batch; /* the largest batch */
    uint64_t gave_up;   /* commands whose deadline passed first */
    uint64_t dropped;   /* replies read for them and dropped */
} rl2_redis_pipe_stats_t;

/* A pipe to the server conf names (borrowed: it must outlive the pipe),
 * called name in messages until a connection names the server.  Opens
 * nothing.  RL2_ERR_SYS when pthread_atfork fails (a child would share
 * the connection). */
rl2_status_t rl2_redis_pipe_create(const rl2_redis_conf_t *conf,
                                   const char *name, rl2_redis_pipe_t **out,
                                   rl2_err_t *err);
void         rl2_redis_pipe_destroy(rl2_redis_pipe_t *pipe);

/* As rl2_redis_command(), through the pipe. */
rl2_status_t rl2_redis_pipe_command(rl2_redis_pipe_t *pipe, int argc,
                                    const char **argv, const size_t *argvlen,
                                    const char *what, struct redisReply **reply,
                                    rl2_err_t *err);

/* Whether the pipe's connection is open and was healthy after its last
 * batch. */
int  rl2_redis_pipe_up(rl2_redis_pipe_t *pipe);
void rl2_redis_pipe_stats(rl2_redis_pipe_t *pipe, rl2_redis_pipe_stats_t *out);

/* The pool's pipe counters: 1, or 0 when it does not pipeline. */
int rl2_redis_pool_pipe_stats(rl2_redis_pool_t       *pool,
                              rl2_redis_pipe_stats_t *out);

/* For the pipe's leader (redis_conn.c): send the n commands of buf (len
 * bytes of RESP) at once, then read their n replies into replies[] in
 * order.  Returns how many were read; fewer than n when an I/O error, a
 * timeout or a reply that does not parse broke the connection, and why
 * (size bytes) then says what happened, as "no answer within 100 ms".
 * left_ms: the leader's own time left, used as the command timeout of
 * this batch when it is less than half of it.  An error reply is a reply; a
 * -READONLY one breaks the connection after the batch. */
size_t rl2_redis_conn_batch(rl2_redis_conn_t *conn, const char *buf, size_t len,
                            size_t n, struct redisReply **replies, int left_ms,
                            char *why, size_t size);

/* Not broken, opened by this process, not closed by the server (one
 * poll()). */
int rl2_redis_conn_usable(const rl2_redis_conn_t *conn);

/* Whether conn is a pooled pipe's shared handle (conf.pipeline), whose
 * commands go one by one through the pipe: rl2_redis_conn_batch()
 * refuses it. */
int rl2_redis_conn_piped(const rl2_redis_conn_t *conn);

/* Close every connection of the pool.  No thread may use the pool (or a
 * connection it handed out) during or after this call. */
void rl2_redis_pool_destroy(rl2_redis_pool_t *pool);

const char *rl2_redis_pool_name(const rl2_redis_pool_t *pool);

/* The Redis store's per-thread connections (borrowed: valid until the
 * store is destroyed), for the violation log to send its entries on the
 * connection a decision has just used. */
rl2_redis_pool_t *rl2_store_redis_pool(rl2_store_t *store);

/* ... and its Cluster router (NULL when it counts on one server), for
 * the runtime override table to read and write its hash through. */
rl2_redis_cluster_t *rl2_store_redis_cluster(rl2_store_t *store);

/* ---- lease mode (redis_lease.c) ----
 *
 * A store in front of the Redis store that admits a leased limit's
 * requests from slices of its allowance held in a shared-memory table
 * (one per host), and asks Redis for a new slice only when the last one
 * is spent or its time is up; every other layer goes to `inner`.  The
 * failover store wraps it as its primary, so a Redis outage moves leased
 * limits to the local zone like the others.  Borrows everything in the
 * conf: the caller keeps them until after rl2_store_destroy(). */
typedef struct {
    rl2_zone_t    *zone;    /* the lease table: rl2_lease_state_size() */
    rl2_circuit_t *circuit; /* the failover store's, or NULL: a probe
                               goes to Redis, not to a slice */
    rl2_store_t *redis;     /* the Redis store: the lease calls */
    rl2_store_t *inner;     /* what answers the layers not leased */
    int          all;       /* rl2_redis_conf_t.lease */
    int64_t      lease_us;  /* rl2_redis_conf_t.lease_time_ms, in µs */
    int64_t      lease_max;
    int64_t      call_max_us; /* the longest one Redis call may take (its
                                 timeouts): how long a call out keeps its
                                 key marked "being asked for" if the
                                 process that made it dies; below
                                 RL2_LEASE_ASKING_MIN_US: that */
} rl2_lease_conf_t;

/* The least time a call out marks its key (rl2_lease_conf_t). */
#define RL2_LEASE_ASKING_MIN_US INT64_C(100000) /* 100 ms */

/* Bytes of one key's lease in the table. */
size_t rl2_lease_state_size(void);

rl2_status_t rl2_store_lease_create(const rl2_lease_conf_t *conf,
                                    rl2_store_t **out, rl2_err_t *err);

/* Whether a call for a slice of key is out (for tests: the mark that
 * makes every other request of the key ask for its own cost only). */
int rl2_lease_asking_now(rl2_zone_t *zone, rl2_digest_t key, int64_t now_us);

/* Units of key this host holds in zone (a lease table): in its slices,
 * and unused ones waiting to go back. */
int64_t rl2_lease_held(rl2_zone_t *zone, rl2_digest_t key, int64_t now_us);

/* rl2_lease_held() > 0, for the over-limit cache (rl2_overlimit_on_held,
 * with the lease table as ctx): a key whose units this host holds is not
 * refused from the cache, so they are used or go back. */
int rl2_lease_holds(void *zone, rl2_digest_t key, int64_t now_us);

/* Whether the layer's limit is leased under a store whose 'lease' option
 * is `all`: the limit's own 'lease', or the store's, for a limit whose
 * algorithm can be leased (grant.c) and that has no overflow allowance. */
int rl2_lease_applies(const rl2_limit_t *limit, int all);

/* ---- beside ratelimit2/tier_source.h (not installed) ---- */

/* A tier source on the server conf names (copied), asking only while
 * circuit (may be NULL: always) is closed, with a cache of `entries`
 * answers (rounded up to a multiple of the set size).  Connects to
 * nothing until a thread first looks up.  Freed by
 * rl2_tier_source_destroy(). */
rl2_status_t rl2_tier_source_create(const rl2_redis_conf_t *conf,
                                    const rl2_circuit_t    *circuit,
                                    uint32_t entries, rl2_tier_source_t **out,
                                    rl2_err_t *err);
void         rl2_tier_source_destroy(rl2_tier_source_t *src);

/* The tier name Redis gives the client whose identity is id (a user
 * name, or the hex SHA-256 of an API key: rl2_tier_identity()), under
 * tr (the policy's tier_redis), at `now_us` (monotonic).  Returns 1 with
 * the name in name[RL2_NAME_MAX + 1], or 0 when there is none: no such
 * field, Redis unreachable. */
int rl2_tier_source_get(rl2_tier_source_t *src, const rl2_tier_redis_t *tr,
                        const char *id, int64_t now_us, char *name);

void rl2_tier_source_stats(const rl2_tier_source_t *src,
                           rl2_tier_source_stats_t *out);

/* Ranges and combinations (a user needs a password); RL2_ERR_CONFIG. */
rl2_status_t rl2_redis_conf_check(const rl2_redis_conf_t *conf, rl2_err_t *err);

/* ---- Sentinel discovery (redis_topology.c) ---- */

/* Parse "NAME@host1:port1,host2:port2" (up to RL2_REDIS_SENTINELS_MAX
 * sentinels) into conf's master_name and sentinels; RL2_ERR_CONFIG naming
 * the bad part. */
rl2_status_t rl2_redis_sentinel_parse(rl2_redis_conf_t *conf, const char *spec,
                                      rl2_err_t *err);

/* ---- Redis Cluster (redis_cluster.c; the seed list redis_topology.c) ---- */

/* Parse "host1:port1,host2:port2" (up to RL2_REDIS_SEEDS_MAX seed nodes)
 * into conf's seeds; RL2_ERR_CONFIG naming the bad part. */
rl2_status_t rl2_redis_cluster_parse(rl2_redis_conf_t *conf, const char *spec,
                                     rl2_err_t *err);

/* A timeout of ms milliseconds, as hiredis takes it (redis_conn.c). */
struct timeval rl2_ms_timeval(int ms);

#endif /* RL2_REDIS_INTERNAL_H */
