/*
 * redis_scripts.h -- the Lua scripts of the Redis store and how they are
 * called (private to the core: redis_lua.c, redis_scripts.c,
 * redis_store.c).
 *
 * Three entries -- apply, peek, refund -- are built from one Lua fragment
 * per algorithm family (buckets, spans, sliding window, sliding log,
 * concurrency) plus a shared prelude and driver, both as scripts (EVALSHA,
 * EVAL) and as the functions of one Redis 7 library (FCALL), which skips
 * re-running the definitions on every call.  Each call takes the
 * layers of one group: layers whose keys hash to one Cluster slot (on a
 * standalone server, every layer of the request), so that one atomic
 * script checks them all and commits only if no enforcing layer is
 * refused.
 *
 * Calling convention, the same for FCALL and EVALSHA (every number a
 * decimal integer, times in µs):
 *   KEYS   per layer: its state key, then its overflow key if it has one
 *   ARGV[1] "" for Redis TIME, or a test clock
 *   ARGV[1 + i] layer i (from 1; as many as there are layers): its
 *          RL2_SCRIPT_FIELDS numbers separated by single spaces: flags (1:
 *          never refuses -- dry run or unlimited; 2: refund the overflow
 *          state), algorithm (rl2_algo_t), limit, window_us, burst, period
 *          (rl2_period_t), cost, overflow limit (0: none), overflow
 *          window_us, overflow burst, committed_us (refund only, else 0).
 *          One argument, not eleven: each argument costs Redis about a
 *          microsecond, and the library parses the text of an apply or
 *          peek once and remembers it (it is the same on every request
 *          for a limit).
 * apply and peek answer one string of decimal integers separated by
 * single spaces: now, then per layer allowed, limit, remaining, reset_us,
 * retry_after_us, refused, overflow_used, committed (one reply object for
 * hiredis to build, not an array of integers; written by one
 * string.format); refund answers the number of layers.
 *
 * Keys are "rl2:{<32 hex digits of the layer digest>}:<suffix>", suffix
 * "s" for the limit's state and "o" for its overflow allowance: the
 * {hash tag} keeps one layer's keys in one slot.
 */
#ifndef RL2_REDIS_SCRIPTS_H
#define RL2_REDIS_SCRIPTS_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/redis.h"
#include "ratelimit2/store.h"
#include "redis/redis_internal.h"

typedef enum {
    RL2_SCRIPT_APPLY = 0, /* check all, commit all or none */
    RL2_SCRIPT_PEEK,      /* check all, write nothing */
    RL2_SCRIPT_REFUND,    /* take back committed layers */
    RL2_SCRIPT_LEASE,     /* grant slices (lease mode) */
    RL2_SCRIPT_COUNT
} rl2_script_t;

/* Numbers in a layer's argument. */
#define RL2_SCRIPT_FIELDS 11

/* "rl2:{" + 32 hex + "}:" + suffix + NUL */
#define RL2_REDIS_KEY_MAX 41

/* The Lua source of each entry script (redis_lua.c). */
extern const char *const rl2_lua_source[RL2_SCRIPT_COUNT];
/* The shared prelude alone (its integer arithmetic), for its own tests. */
extern const char rl2_lua_prelude[];
const char       *rl2_script_name(rl2_script_t which);

/* "rl2_" + 16 hex + "_refund" + NUL */
#define RL2_LUA_FUNCTION_MAX 32

/* The function library (redis_lua.c), for FUNCTION LOAD: len bytes named
 * "rl2_" and the first 16 hex digits of the SHA-256 of its text, so that
 * each version of the module has its own.  Built on first use, static. */
const char *rl2_lua_library(size_t *len);
/* The library's function for `which`: "rl2_<16 hex>_apply" and so on. */
const char *rl2_lua_function(rl2_script_t which);

/* The n integers of an apply or peek answer into vals: 1, or 0 when r
 * is not exactly n decimal integers (each within int64) separated by
 * single spaces. */
struct redisReply;
int rl2_redis_answer_parse(const struct redisReply *r, int64_t *vals, size_t n);

/* The key of a layer's state ('s') or overflow state ('o'). */
void rl2_redis_key(rl2_digest_t digest, char suffix,
                   char out[RL2_REDIS_KEY_MAX]);

/* Whether the scripts compute these layers exactly: Lua numbers are
 * doubles, exact up to 2^53, so windows, bucket capacities (µs), limits
 * and costs must stay below 2^50 (35 years of µs; no sane limit comes
 * near).  RL2_ERR_INVALID naming the limit otherwise. */
rl2_status_t rl2_redis_layers_check(const rl2_layer_t *layers,
                                    const size_t *idx, size_t n,
                                    rl2_err_t *err);

/* Where a script call goes: this thread's connection (standalone,
 * Sentinel), or a Cluster router and the slot of the call's keys, which
 * takes the call to that slot's master and follows redirections. */
typedef struct {
    rl2_redis_conn_t    *conn; /* NULL: cluster */
    rl2_redis_cluster_t *cluster;
    unsigned             slot;
    const char          *name; /* the server that answered last */
} rl2_redis_target_t;

/* Run `which` over layers idx[0..n) at `to`: FCALL, after FUNCTION LOAD
 * when the server does not have the library (in a Cluster, that node);
 * EVALSHA, or EVAL when the server has lost the script (NOSCRIPT), once the
 * server or its ACL has refused functions to this process.  now_us: the
 * test clock, or NULL for Redis TIME.  apply and peek fill each layer's
 * result, refused, overflow_used, committed and committed_us (the
 * script's clock). */
rl2_status_t rl2_redis_script_run(rl2_redis_target_t *to, rl2_script_t which,
                                  rl2_layer_t *layers, const size_t *idx,
                                  size_t n, const int64_t *now_us,
                                  rl2_err_t *err);

/* One slice asked for one layer (lease mode: redis_lease.c).  lease
 * takes ARGV[1] as apply does, then per layer its state key and one
 * argument of 9 numbers separated by single spaces: algorithm, limit,
 * window_us, burst, period, cost, want (0: only give back), back (the
 * unused units of a slice, 0 for none), back_at_us (Redis' clock at
 * that slice's grant); it answers now, then per layer RL2_LEASE_FIELDS
 * integers:
 * granted (0: refused), limit, remaining, reset_us, retry_after_us,
 * horizon_us (-1: none).  The arithmetic is grant.c's. */
#define RL2_LEASE_FIELDS 6

typedef struct {
    const rl2_layer_t *layer; /* its key and limit */
    int64_t            want;
    int64_t            back;
    int64_t            back_at_us;
    /* the answer */
    int64_t           granted;
    int64_t           granted_at_us; /* Redis' clock */
    int64_t           horizon_us;
    rl2_algo_result_t result; /* after the grant (cost 0), or the refusal */
} rl2_lease_ask_t;

/* One lease call with the n asks (their keys in one slot). */
rl2_status_t rl2_redis_lease_run(rl2_redis_target_t *to, rl2_lease_ask_t *asks,
                                 size_t n, const int64_t *now_us,
                                 rl2_err_t *err);

/* The lease calls of the Redis store (redis_store.c): one per slot. */
rl2_status_t rl2_store_redis_lease(rl2_store_t *store, rl2_lease_ask_t *asks,
                                   size_t n, const rl2_clock_t *now,
                                   rl2_err_t *err);

/* Tests only: call functions again, as a new process would, after a
 * refusal switched this one to scripts. */
void rl2_redis_functions_reset(void);

#endif /* RL2_REDIS_SCRIPTS_H */
