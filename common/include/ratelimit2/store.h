/*
 * store.h -- the storage interface that decide() talks to.
 *
 * A store answers for all the layers of one request at once, so that it
 * can make "check every layer, commit only if every enforcing layer
 * passes" atomic: the local store under its zone lock, the Redis store in
 * one script.  decide() never touches algorithms' state directly.
 */
#ifndef RL2_STORE_H
#define RL2_STORE_H

#include <stdint.h>

#include "ratelimit2/algo.h"
#include "ratelimit2/clock.h"
#include "ratelimit2/hash.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/status.h"
#include "ratelimit2/store_local.h"

/* One limit applied to one key for one request. */
typedef struct {
    const rl2_limit_t *limit;
    const rl2_rule_t  *rule;
    rl2_digest_t       key;
    char               client[80]; /* address or hashed id: for logs */
    int                dry_run;    /* never denies */
    uint8_t            variant;    /* 1 + index in rule->variants; 0: the
                                      rule's limits (no variant) */
    uint8_t challenger;            /* a challenger's shadow layer (also
                                      dry_run): no headers, own metric */
    /* filled by the store */
    rl2_algo_result_t result;        /* of the main limit */
    int               refused;       /* main limit and overflow both full */
    int               overflow_used; /* admitted by the overflow */
    int               committed;     /* counted */
    int64_t           committed_us;  /* clock passed to commit */
} rl2_layer_t;

typedef struct rl2_store rl2_store_t;

typedef struct {
    const char *name;
    /* Check every layer; when no enforcing layer is refused, commit every
     * layer that fits (a refused dry-run layer is not committed).  Sets
     * each layer's result, refused, overflow_used, committed.  The layers'
     * keys are distinct: rl2_decide makes one layer of a limit that two
     * matching rules share. */
    rl2_status_t (*apply)(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                          const rl2_clock_t *now, rl2_err_t *err);
    /* Take back the committed layers (a later phase refused the request,
     * or a concurrency limit's request ended). */
    rl2_status_t (*refund)(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                           const rl2_clock_t *now, rl2_err_t *err);
    /* Check every layer without counting anything and without creating
     * keys (for operators' tools): sets result and refused only. */
    rl2_status_t (*peek)(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                         const rl2_clock_t *now, rl2_err_t *err);
    void (*destroy)(rl2_store_t *store);
    /* Forget every layer's counters, main and overflow, so that the
     * client's next request starts afresh (operators' tools: ratelimit2ctl
     * reset).  Keys that do not exist are not an error. */
    rl2_status_t (*reset)(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                          const rl2_clock_t *now, rl2_err_t *err);
} rl2_store_ops_t;

struct rl2_store {
    const rl2_store_ops_t *ops;
};

/* A store over a local zone (see store_local.h).  The store borrows the
 * zone: the caller keeps it open while the store lives and closes it
 * after rl2_store_destroy(). */
rl2_status_t rl2_store_local_create(rl2_zone_t *zone, rl2_store_t **out,
                                    rl2_err_t *err);
void         rl2_store_destroy(rl2_store_t *store);

#endif /* RL2_STORE_H */
