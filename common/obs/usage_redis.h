/*
 * usage_redis.h -- the usage series of a fleet, in Redis (private to the
 * core): every host pushes each minute it has ended (usage_push.c), and
 * a reader adds the hosts up (usage_redis.c).
 *
 * The host's one upkeep that takes a minute's snapshot (metrics_usage.c)
 * hands the minute's cells to a callback (rl2_usage_minute_fn) that the
 * backend registers with rl2_metrics_on_minute(): the metrics object
 * itself never talks to Redis.  The pusher sends the minute in one EVAL
 * per 16 cells (one round trip, no retry): each cell's requests, admitted and
 * refused added to the minute's and the hour's hash, its peak share kept
 * as the larger of the two, and its distinct-client sketch written as a
 * Redis HyperLogLog string and PFMERGEd into the minute's and the hour's
 * HyperLogLog, so that PFCOUNT gives the clients of the whole fleet.
 *
 * Keys (one hash tag per hour, so that a minute's keys and its hour's
 * share one Cluster slot and one script can write them all):
 *
 *   rl2:usage:{h:HOUR}:m:MINUTE               hash, TTL 25 h
 *   rl2:usage:{h:HOUR}:h                      hash, TTL 32 days
 *   rl2:usage:{h:HOUR}:hll:m:MINUTE:CELL      HyperLogLog, TTL 25 h
 *   rl2:usage:{h:HOUR}:hll:h:CELL             HyperLogLog, TTL 32 days
 *
 * HOUR and MINUTE are Unix time / 3600 and / 60; CELL is "RULE\tTIER";
 * the hashes' fields are "RULE\tTIER\tFIELD", FIELD one of requests,
 * admitted, refused, peak (the largest share of a limit one client used,
 * parts per million).
 */
#ifndef RL2_USAGE_REDIS_H
#define RL2_USAGE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/failover.h"
#include "ratelimit2/redis.h"
#include "ratelimit2/status.h"
#include "redis/redis_internal.h"
#include "obs/hll.h"
#include "obs/usage.h"

#define RL2_USAGE_REDIS_PREFIX       "rl2:usage:"
#define RL2_USAGE_REDIS_MINUTE_TTL_S (25 * 3600)  /* 24 h read, + 1 */
#define RL2_USAGE_REDIS_HOUR_TTL_S   (32 * 86400) /* 31 days read, + 1 */
/* "rl2:usage:{h:HOUR}:" and a whole key, NUL included. */
#define RL2_USAGE_REDIS_TAG_MAX 48
#define RL2_USAGE_REDIS_KEY_MAX \
    (RL2_USAGE_REDIS_TAG_MAX + 32 + 2 * RL2_NAME_MAX + 2)

/* One cell of a minute that has ended.  The names and the sketch are the
 * metrics object's: valid during the callback only. */
typedef struct {
    const char      *rule;
    const char      *tier;
    uint64_t         requests, admitted, refused; /* in the minute */
    uint32_t         peak_ppm;
    const rl2_hll_t *sketch; /* the minute's distinct clients */
} rl2_usage_minute_cell_t;

/* What became of a minute handed to the callback (the metrics object
 * counts each: ratelimit2_usage_redis_minutes_total). */
typedef enum {
    RL2_USAGE_MINUTE_PUSHED = 0,
    RL2_USAGE_MINUTE_FAILED = 1,  /* dropped: Redis down, slow, refusing */
    RL2_USAGE_MINUTE_SKIPPED = 2, /* dropped untried: the circuit was open */
    RL2_USAGE_MINUTE_RESULTS = 3
} rl2_usage_minute_result_t;

/* A minute (starting at minute_start_s, Unix time) has been snapshotted:
 * its cells with any request.  Called by the request that took the
 * snapshot, before the sketches are cleared: it must be bounded. */
typedef rl2_usage_minute_result_t
rl2_usage_minute_fn(void *ctx, int64_t minute_start_s,
                    const rl2_usage_minute_cell_t *cells, size_t n);

/* ---- the pusher (usage_push.c) ---- */

typedef struct rl2_usage_push rl2_usage_push_t;

/* Counters of the pushes of this process. */
typedef struct {
    uint64_t minutes; /* minutes written */
    uint64_t failed;  /* minutes dropped: Redis down, slow or refusing */
    uint64_t skipped; /* minutes not tried: the circuit was open */
} rl2_usage_push_stats_t;

/* A pusher on the Redis store's connections: pool for one server (or
 * Sentinel's master), cluster when the store routes a Cluster (then pool
 * is unused); circuit may be NULL (always try).  All borrowed: they must
 * outlive the pusher.  Freed by rl2_usage_push_destroy(). */
rl2_status_t rl2_usage_push_create(rl2_redis_pool_t    *pool,
                                   rl2_redis_cluster_t *cluster,
                                   const rl2_circuit_t *circuit,
                                   rl2_usage_push_t **out, rl2_err_t *err);
void         rl2_usage_push_destroy(rl2_usage_push_t *p);

/* The rl2_usage_minute_fn of a pusher (ctx: the pusher). */
rl2_usage_minute_result_t
rl2_usage_push_minute(void *ctx, int64_t minute_start_s,
                      const rl2_usage_minute_cell_t *cells, size_t n);

/* Push one minute; RL2_ERR_STORE on any failure (nothing retried). */
rl2_status_t rl2_usage_push_send(rl2_usage_push_t *p, int64_t minute_start_s,
                                 const rl2_usage_minute_cell_t *cells, size_t n,
                                 rl2_err_t *err);

void rl2_usage_push_stats(const rl2_usage_push_t *p,
                          rl2_usage_push_stats_t *out);

/* ---- the reader (usage_redis.c) ---- */

/* rl2_usage_open_redis() is declared in usage.h, beside
 * rl2_usage_open(). */

/* usage.c's functions for a view rl2_usage_open_redis() made. */
size_t rl2_usage_fleet_cells(const rl2_usage_t *u, rl2_usage_cell_t *out,
                             size_t max);
size_t rl2_usage_fleet_series(const rl2_usage_t *u, size_t i,
                              rl2_usage_step_t step, int64_t now_wall_s,
                              rl2_usage_point_t *out, size_t max,
                              int64_t *first_start_s);
void   rl2_usage_fleet_free(struct rl2_usage_fleet *f);

/* ---- keys (usage_push.c) ---- */

/* "rl2:usage:{h:HOUR}:" for the hour of minute_start_s into key (size
 * bytes); its length. */
size_t rl2_usage_key_hour_tag(char *key, size_t size, int64_t start_s);

#endif /* RL2_USAGE_REDIS_H */
