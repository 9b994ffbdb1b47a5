/*
 * violation_log.h -- the record of refused requests: when, which rule,
 * limit and tier, which client (the address, or a hashed user or API
 * key), method, path and user agent, and the count the refusing limit
 * had reached.
 *
 * Front ends call rl2_vlog_record() once, at the point a request is
 * refused: allowed requests never reach it, and it runs after the store
 * has answered, so no zone lock is held.  Above `rate` entries per second
 * (per host) a denial is not written but counted; the next entry written
 * carries the number skipped before it.
 *
 * Where entries go:
 *   - with one Redis server (standalone or Sentinel's master; a Cluster
 *     keeps the log in the rings), and its circuit closed: XADD to a
 *     stream capped at about `capacity` entries (MAXLEN ~), on the
 *     connection the Redis store has just used on this thread, waiting
 *     at most the command timeout; never connecting: with no healthy
 *     connection, on an error, or while the circuit is open, the entry
 *     goes to the local ring instead;
 *   - otherwise: a ring of `capacity` entries in the named shared memory
 *     object "<zone>.vlog".  Nothing unlinks it when Apache stops, so it
 *     survives graceful and full restarts (like the zone), until the host
 *     reboots or an operator removes it.
 * The ring's header also holds the sampling window and counters, shared by
 * every process of the host.  Writers never wait for each other: each
 * claims a slot with one atomic add and publishes it with a sequence
 * stamp, which readers check.
 */
#ifndef RL2_VIOLATION_LOG_H
#define RL2_VIOLATION_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/decide.h"
#include "ratelimit2/failover.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/redis.h"
#include "ratelimit2/status.h"
#include "ratelimit2/store.h"

#define RL2_VLOG_RATE_DEFAULT     100u
#define RL2_VLOG_RATE_MAX         1000000u
#define RL2_VLOG_CAPACITY_DEFAULT 10000u
#define RL2_VLOG_CAPACITY_MIN     16u
#define RL2_VLOG_CAPACITY_MAX     1000000u
#define RL2_VLOG_STREAM_DEFAULT   "rl2:violations"
#define RL2_VLOG_STREAM_MAX       128
#define RL2_VLOG_SUFFIX           ".vlog"

#define RL2_VLOG_CLIENT_MAX  80 /* as rl2_layer_t.client */
#define RL2_VLOG_METHOD_MAX  16
#define RL2_VLOG_PATH_MAX    256
#define RL2_VLOG_FACTORS_MAX 96  /* every adaptive factor, "load=0.7;..." */
#define RL2_VLOG_UA_MAX      256 /* the User-Agent, escaped, then cut */

/* One refused request.  Text fields are NUL-terminated, bounded, and
 * are printable ASCII (see rl2_vlog_escape). */
typedef struct {
    int64_t  time_us;   /* wall clock, µs since the epoch (UTC) */
    int64_t  limit;     /* the refusing limit's count */
    int64_t  window_us; /* its window; 0 for a calendar quota */
    uint64_t skipped;   /* denials sampled out just before this one */
    char     rule[RL2_NAME_MAX + 1];
    char     limit_name[RL2_NAME_MAX + 1];
    char     tier[RL2_NAME_MAX + 1];      /* "-" without tiers */
    char     client[RL2_VLOG_CLIENT_MAX]; /* address, user:HASH, ... */
    char     method[RL2_VLOG_METHOD_MAX];
    char     path[RL2_VLOG_PATH_MAX]; /* without the query */
    /* The adaptive factors on for the client, "load=0.7;geo=0.8" (the
     * refusing limit's count is the one they scaled); "" when none. */
    char    factors[RL2_VLOG_FACTORS_MAX];
    char    variant[RL2_VARIANT_NAME_MAX + 1]; /* the rule's variant, or "" */
    uint8_t challenger; /* 1: a challenger would have refused (the
                           request was not refused by it) */
    /* The units in use under the refusing limit when it refused (its
     * quota less what remained: the body's current_usage); -1: none
     * (a ban, the emergency switch) or an entry written before the log
     * recorded it. */
    int64_t count;
    /* The client's User-Agent, escaped as the other text ("" when it
     * sent none, or in an entry written before the log recorded it). */
    char user_agent[RL2_VLOG_UA_MAX];
} rl2_vlog_entry_t;

/* The ring's counters, shared by the host's processes. */
typedef struct {
    uint64_t capacity;     /* entries the ring holds */
    uint64_t written;      /* entries ever written to the ring */
    uint64_t to_redis;     /* entries written to the Redis stream */
    uint64_t skipped;      /* denials sampled out */
    uint64_t redis_errors; /* XADDs that failed (entry went to the ring) */
} rl2_vlog_stats_t;

typedef struct rl2_vlog rl2_vlog_t;

/* Settings with the defaults filled in (and checked): a copy of conf
 * whose zero values are replaced.  The stream string is borrowed. */
rl2_status_t rl2_vlog_conf_resolve(const rl2_vlog_conf_t *conf,
                                   rl2_vlog_conf_t *out, rl2_err_t *err);

/* Record the refusal `v` (outcome RL2_OUTCOME_DENY) of a request with
 * this method, path and User-Agent (the client's bytes, NUL-terminated,
 * or NULL: none; escaped and cut to RL2_VLOG_UA_MAX), and, when a
 * challenger would have refused it (v->challenger_denied, whatever the
 * outcome), that too in an entry marked challenger; log may be NULL
 * (disabled).  Never fails the request: a Redis error sends the entry to
 * the ring and is counted. */
void rl2_vlog_record(rl2_vlog_t *log, const rl2_policy_t *policy,
                     const rl2_verdict_t *v, const char *method,
                     const char *path, const char *user_agent,
                     const rl2_clock_t *now);

/* ---- reading, for operators' tools (violation_log_read.c) ---- */

/* Every entry of the ring of zone `zone_name`, oldest first, in a
 * malloc()ed array (*out, *n; free() it), and the counters.  Attaches
 * read-only; RL2_ERR_SYS when there is no ring. */
rl2_status_t rl2_vlog_ring_read(const char *zone_name, rl2_vlog_entry_t **out,
                                size_t *n, rl2_vlog_stats_t *stats,
                                rl2_err_t *err);

/* Every entry of the stream `stream` (at most max), oldest first, as
 * above.  An absent stream is empty. */
rl2_status_t rl2_vlog_stream_read(const rl2_redis_conf_t *redis,
                                  const char *stream, size_t max,
                                  rl2_vlog_entry_t **out, size_t *n,
                                  rl2_err_t *err);

#endif /* RL2_VIOLATION_LOG_H */
