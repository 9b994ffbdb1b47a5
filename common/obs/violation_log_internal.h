/*
 * violation_log_internal.h -- the layout of the violation log's ring in
 * shared memory (private to violation_log.c and violation_log_read.c).
 *
 * The object is rl2_vlog_ring_t followed by `capacity` slots; the
 * capacity is implied by the object's size, which the small-object header
 * records and checks on attach.  A slot's stamp is 0 (never written),
 * 2*seq+1 (entry seq being written) or 2*seq+2 (entry seq complete).
 *
 * The obs folder (the other internal header maps it too):
 *
 *   metrics.c                  the metrics object: opening it, naming
 *                              rules and tiers, recording verdicts
 *   metrics_clients.c          who is refused and who is close to a limit
 *   metrics_html.c             the status page
 *   metrics_prom.c             the Prometheus text exposition
 *   metrics_read.c             reading the metrics object for exposition
 *   metrics_internal.h         the metrics object's layout; the metrics
 *                              entry points kept from libratelimit2-dev
 *   timed_store.c              a store that times every call it forwards
 *   violation_log.c            writing the violation log
 *   violation_log_read.c       reading it back, for operators' tools
 *   violation_log_internal.h   the ring's layout; the violation log's
 *                              entry points kept from libratelimit2-dev
 */
#ifndef RL2_VIOLATION_LOG_INTERNAL_H
#define RL2_VIOLATION_LOG_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/violation_log.h"
#include "base/shm_obj_internal.h"
#include "redis/redis_internal.h"

/* ---- beside ratelimit2/violation_log.h (not installed) ---- */

/* "<zone>.vlog" into out (size bytes); -1 when it does not fit. */
int rl2_vlog_ring_name(const char *zone_name, char *out, size_t size);

/* Open the log of zone `zone_name`: create or attach to its ring (mode is
 * the permission of a new object); with `redis` (the Redis store's pool,
 * rl2_store_redis_pool) not NULL, entries go to the stream while
 * `circuit` (may be NULL) is closed.  conf is copied (its stream too);
 * redis and circuit are borrowed and must outlive the log.  *out is NULL
 * when conf->disabled.  Freed by rl2_vlog_close(). */
rl2_status_t rl2_vlog_open(const rl2_vlog_conf_t *conf, const char *zone_name,
                           unsigned mode, rl2_redis_pool_t *redis,
                           rl2_circuit_t *circuit, rl2_vlog_t **out,
                           rl2_err_t *err);
void         rl2_vlog_close(rl2_vlog_t *log);

/* Copy src into dst (size bytes), stopping at '?' when `flags` has
 * RL2_VLOG_ESC_PATH, with control bytes, DEL, bytes above ASCII (a
 * decoded path may hold any), backslash and double quote as \xHH:
 * bounded ASCII text that cannot break a log line.  Truncates on an
 * escape boundary.  RL2_VLOG_ESC_READ leaves backslashes as they are: a
 * reader's second pass over text the writer escaped (the stream), which
 * must not double its escapes, but still escapes what the writer never
 * leaves (a forged entry's raw bytes). */
#define RL2_VLOG_ESC_PATH 1
#define RL2_VLOG_ESC_READ 2
void rl2_vlog_escape(char *dst, size_t size, const char *src, int flags);

#define RL2_VLOG_MAGIC 0x524c3256u /* "RL2V" */
/* 2: entries carry factors, variant, challenger; 3: count and
 * user_agent (violation_log_read.c still reads a ring of version 2). */
#define RL2_VLOG_VERSION 3u

/* The sampling window word: second << BITS | entries in that second. */
#define RL2_VLOG_WINDOW_BITS 20
#define RL2_VLOG_WINDOW_MASK ((UINT64_C(1) << RL2_VLOG_WINDOW_BITS) - 1)
_Static_assert(RL2_VLOG_RATE_MAX <= RL2_VLOG_WINDOW_MASK,
               "the rate must fit the window word");

typedef struct {
    _Atomic uint64_t stamp;
    rl2_vlog_entry_t entry;
} rl2_vlog_slot_t;

typedef struct {
    rl2_shm_hdr_t    hdr;
    _Atomic uint64_t head;    /* entries ever claimed */
    _Atomic uint64_t window;  /* sampling, see above */
    _Atomic uint64_t pending; /* skipped since the last entry */
    _Atomic uint64_t skipped; /* skipped in all */
    _Atomic uint64_t to_redis;
    _Atomic uint64_t redis_errors;
    rl2_vlog_slot_t  slots[];
} rl2_vlog_ring_t;

static inline size_t
rl2_vlog_ring_bytes(uint64_t capacity)
{
    return sizeof(rl2_vlog_ring_t) + (size_t)capacity * sizeof(rl2_vlog_slot_t);
}

/* An entry as version 2 of the ring laid it out, before count and
 * user_agent: servers not yet restarted still write rings of it. */
typedef struct {
    int64_t  time_us;
    int64_t  limit;
    int64_t  window_us;
    uint64_t skipped;
    char     rule[RL2_NAME_MAX + 1];
    char     limit_name[RL2_NAME_MAX + 1];
    char     tier[RL2_NAME_MAX + 1];
    char     client[RL2_VLOG_CLIENT_MAX];
    char     method[RL2_VLOG_METHOD_MAX];
    char     path[RL2_VLOG_PATH_MAX];
    char     factors[RL2_VLOG_FACTORS_MAX];
    char     variant[RL2_VARIANT_NAME_MAX + 1];
    uint8_t  challenger;
} rl2_vlog_entry_v2_t;

#endif /* RL2_VIOLATION_LOG_INTERNAL_H */
