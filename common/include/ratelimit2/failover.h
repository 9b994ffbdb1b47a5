/*
 * failover.h -- what the limiter does when the shared store (Redis) fails:
 * a circuit breaker whose state every process of a host shares, and a
 * store that sends each request to Redis or, while the circuit is open,
 * answers it per failover mode.
 *
 * Modes, while the circuit is open:
 *   local   (default) the local zone answers, each limit scaled by
 *           local_share (see rl2_failover_local_count);
 *   open    every request passes, nothing is counted;
 *   closed  every request is refused: apply fails with RL2_ERR_STORE and
 *           rl2_failover_refusing() tells the front end to answer 503 with
 *           Retry-After.
 *
 * The circuit lives in its own small named POSIX shared memory object (by
 * convention the zone's name plus ".circuit", e.g. "/ratelimit2.circuit"),
 * so every Apache child, FastCGI worker and CGI wrapper of a host opens
 * and closes it together, and it survives a graceful restart.  It is
 * closed (requests go to Redis), open (they do not), or half-open (one
 * probe is in flight).  It opens after failures_to_open consecutive
 * failures (an RL2_ERR_STORE from Redis, or an answer slower than
 * slow_ms).  While it is open no request touches Redis except one probe
 * per probe_interval_ms: the process whose compare-and-swap moves the
 * shared "next probe" time forward sends its own request to Redis, with
 * no lock held; if that succeeds the circuit closes.  A prober that dies
 * mid-probe leaves the circuit half-open, and the next interval elects
 * another.  Every transition is made by exactly one process (a CAS on the
 * state), and that process sends the alerts: one outage gives one
 * redis_down and one failover_enter line, its end one redis_up and one
 * failover_leave, however many processes saw it.
 *
 * Over-admission in `local` mode: each of N instances admits at most
 * rl2_failover_local_count(limit) = max(floor(limit x local_share), 1) per
 * window on its own (never less than one request's cost, or a request
 * could never pass), so while Redis is down the fleet admits at most
 * N x local_share x limit per window (plus at most `cost` per instance
 * where the floor rounds up).  The local counters start empty when the
 * circuit opens, and what they count is not written back to Redis.  With
 * local_share = 1/N the fleet stays near the global limit.
 *
 * Refunds go to the store that counted.  rl2_layer_t has no field for
 * that, so this store marks it in `committed`, which every reader tests as
 * a boolean: RL2_COMMITTED_PRIMARY (1) or RL2_COMMITTED_FALLBACK (2).  The
 * mark travels with copies of the layer (rl2_decide_end copies them).
 * Edge cases:
 *   - counted by the local zone: refunded there, even after the circuit
 *     closed, with the same scaling (the zone is always reachable);
 *   - counted by Redis while the circuit is now open or half-open: not
 *     sent (no request touches Redis while it is open) but queued, in the
 *     circuit's shm object, for the whole host: at most 1,024 layers
 *     (RL2_REFUND_SLOTS); when full, or after 10 minutes unsent, a refund
 *     is counted in refunds_dropped and Redis forgets the count when the
 *     key's TTL ends (a concurrency slot: an hour).  The queue is
 *     replayed, each refund sent once, by the request whose probe finds
 *     Redis back, and by any refund that Redis answers while the circuit
 *     is closed.  A late refund gives back what is still counted: the
 *     scripts leave a key that is gone alone and never count below zero,
 *     a bucket forgives less the later it comes, a window only its own
 *     window (refunds_queued, refunds_replayed);
 *   - counted by Redis, circuit closed, refund fails: a failure for the
 *     circuit like any other, and the error is returned.  It is not
 *     queued: the call was sent, and a server that was stopped or slow
 *     runs what it received when it resumes, so sending it again would
 *     release a concurrency slot twice (refunds_failed);
 *   - one call with layers from both (the early phase in Redis, the late
 *     phase local after the circuit opened between): split by mark;
 *   - `open` mode counts nothing, so there is nothing to refund; `closed`
 *     mode refuses, and decide() leaves the verdict unchanged;
 *   - Redis failed after counting some layers (check-then-commit across
 *     Cluster slots): the layers are answered afresh by the fallback;
 *     undoing the partial commit is the Redis store's job.
 *
 * failover.c implements the circuit, the modes and local_share;
 * store_failover.c the store.
 */
#ifndef RL2_FAILOVER_H
#define RL2_FAILOVER_H

#include <stdint.h>

#include "ratelimit2/alert.h"
#include "ratelimit2/status.h"
#include "ratelimit2/store.h"

typedef enum {
    RL2_FAILOVER_LOCAL = 0,
    RL2_FAILOVER_OPEN,
    RL2_FAILOVER_CLOSED
} rl2_failover_mode_t;

/* local_share is fixed point in parts per million. */
#define RL2_SHARE_ONE 1000000u /* 1.0, the default */
#define RL2_SHARE_MIN 1000u    /* 0.001 */

/* Values of rl2_layer_t.committed set by the failover store. */
#define RL2_COMMITTED_PRIMARY  1
#define RL2_COMMITTED_FALLBACK 2

/* ---- the circuit breaker --------------------------------------------- */

typedef struct rl2_circuit rl2_circuit_t;

typedef enum {
    RL2_CIRCUIT_CLOSED = 0, /* requests go to Redis */
    RL2_CIRCUIT_OPEN,       /* they do not */
    RL2_CIRCUIT_HALF_OPEN   /* one probe in flight */
} rl2_circuit_state_t;

/* Where one request goes. */
typedef enum {
    RL2_ROUTE_PRIMARY = 0, /* circuit closed: Redis */
    RL2_ROUTE_PROBE,       /* circuit open and this request won the
                              probe: Redis, and report the outcome */
    RL2_ROUTE_FALLBACK     /* circuit open: the failover mode */
} rl2_route_t;

/* Per process; processes of a host should agree but need not. */
typedef struct {
    uint32_t failures_to_open;  /* consecutive failures that open it: 1 */
    int64_t  probe_interval_ms; /* ms between probes while open: 1000 */
    int64_t  slow_ms;           /* a Redis answer slower than this counts
                                   as a failure, although it is used; 0 (the
                                   default): only errors count (the Redis
                                   store's command timeout makes a hung
                                   server an error) */
} rl2_circuit_conf_t;

/* The refunds_* count layers Redis counted, for the whole host (the
 * queue is in the circuit's shm object): queued while the circuit was
 * not closed; replayed, those Redis has applied since; dropped, never
 * sent (the queue was full, or one waited over 10 minutes); failed, sent
 * without an answer and not sent again (Redis may still apply it). */
typedef struct {
    rl2_circuit_state_t state;
    uint64_t            failures; /* consecutive, while closed */
    uint64_t            opens;    /* closed -> open transitions */
    uint64_t            probes;   /* probes started */
    uint64_t            probe_failures;
    uint64_t            refunds_queued;
    uint64_t            refunds_replayed;
    uint64_t            refunds_dropped;
    uint64_t            refunds_failed;
    uint64_t            refunds_pending; /* in the queue now */
    int64_t             opened_us;       /* monotonic µs of the last opening */
    int64_t             next_probe_us; /* monotonic µs: earliest next probe */
} rl2_circuit_stats_t;

/* Create or attach to the circuit `name` (a POSIX shm name); a new one is
 * closed.  mode is the permission of a new object.  *out is owned by the
 * caller, freed by rl2_circuit_close(). */
rl2_status_t rl2_circuit_open(const char *name, const rl2_circuit_conf_t *conf,
                              unsigned mode, rl2_circuit_t **out,
                              rl2_err_t *err);
void         rl2_circuit_close(rl2_circuit_t *circuit);

/* ---- the failover store ---------------------------------------------- */

typedef struct {
    rl2_failover_mode_t mode;            /* RL2_FAILOVER_LOCAL */
    uint32_t            local_share_ppm; /* RL2_SHARE_ONE */
    rl2_alert_t        *alert;           /* borrowed; NULL: no alerts */
    int64_t (*clock_us)(void);           /* monotonic µs, read before and after
                                            each Redis call for the circuit (the
                                            request's clock may be old by then);
                                            NULL: CLOCK_MONOTONIC; tests fake it */
} rl2_failover_conf_t;

void rl2_failover_conf_default(rl2_failover_conf_t *conf);

/* A store implementing store.h over `primary` (Redis) and `local` (a
 * local store; may be NULL unless the mode is local), switched by
 * `circuit`.  All three are borrowed: the caller keeps them until after
 * rl2_store_destroy() of this store.  conf is copied. */
rl2_status_t rl2_store_failover_create(rl2_store_t *primary, rl2_store_t *local,
                                       rl2_circuit_t             *circuit,
                                       const rl2_failover_conf_t *conf,
                                       rl2_store_t **out, rl2_err_t *err);

#endif /* RL2_FAILOVER_H */
