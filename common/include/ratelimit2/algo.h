/*
 * algo.h -- the seven rate-limiting algorithms as pure functions.
 *
 * Each algorithm works on a caller-owned state blob of
 * rl2_algo_state_size() bytes.  A blob of all zero bytes is a fresh key
 * (nothing counted yet), so a store can hand out zeroed memory for a new key.
 * The functions never read a clock or allocate: the caller passes "now" in
 * integer microseconds.  For every algorithm except RL2_ALGO_QUOTA "now" is a
 * monotonic clock; for RL2_ALGO_QUOTA it is wall time (µs since the Unix
 * epoch, UTC), because calendar days and months are wall-clock things.
 *
 * A decision is two steps so that several limits can be checked together and
 * committed only if all of them pass ("a refused request is counted by
 * none"): rl2_algo_check() evaluates without changing the state, and
 * rl2_algo_commit() records the request.  rl2_algo_refund() takes back a
 * committed request (a later layer refused it, or a concurrency slot is
 * released at the end of the request).
 *
 * A clock that goes backwards never grants extra requests: negative elapsed
 * times are clamped to zero.
 */
#ifndef RL2_ALGO_H
#define RL2_ALGO_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/clock.h"
#include "ratelimit2/status.h"

typedef enum {
    RL2_ALGO_TOKEN_BUCKET = 0, /* GCRA: one theoretical arrival time */
    RL2_ALGO_SLIDING_LOG,      /* exact: one timestamp per admitted unit */
    RL2_ALGO_SLIDING_WINDOW,   /* two fixed windows, the previous weighted */
    RL2_ALGO_FIXED_WINDOW,     /* one counter per aligned window */
    RL2_ALGO_LEAKY_BUCKET,     /* level drained at a constant rate */
    RL2_ALGO_CONCURRENCY,      /* in-flight count, released by refund */
    RL2_ALGO_QUOTA,            /* calendar day or month, UTC */
    RL2_ALGO_COUNT
} rl2_algo_t;

typedef enum {
    RL2_PERIOD_NONE = 0,
    RL2_PERIOD_DAY,
    RL2_PERIOD_MONTH
} rl2_period_t;

/* Largest limit a sliding_log accepts: it stores one 8-byte timestamp per
 * admitted unit, so every zone entry grows by 8 bytes per unit. */
#define RL2_SLIDING_LOG_MAX 4096

typedef struct {
    rl2_algo_t algo;
    int64_t    limit;     /* units per window; in flight for concurrency */
    int64_t    window_us; /* window length, µs (unused by concurrency and
                             quota) */
    int64_t burst;        /* token/leaky bucket: units that may arrive at
                             once; 0 means "equal to limit".  Must be 0 for
                             the other algorithms. */
    rl2_period_t period;  /* quota only: calendar day or month */
} rl2_algo_params_t;

typedef struct {
    int     allowed;        /* 1: the request fits; 0: refused */
    int64_t limit;          /* the quota a client sees (q in RateLimit) */
    int64_t remaining;      /* units left after this request if it is
                               committed (allowed), or left now (refused);
                               never negative */
    int64_t reset_us;       /* µs from now until the full limit is available
                               again (window end, bucket full, ...) */
    int64_t retry_after_us; /* refused: µs from now until this request would
                               fit; 0 when allowed */
} rl2_algo_result_t;

const char *rl2_algo_name(rl2_algo_t algo);
/* Returns RL2_ALGO_COUNT when the name is unknown. */
rl2_algo_t rl2_algo_from_name(const char *name);

#endif /* RL2_ALGO_H */
