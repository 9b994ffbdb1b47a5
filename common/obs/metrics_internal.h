/*
 * metrics_internal.h -- the layout of the metrics object in shared
 * memory, and what metrics.c, metrics_clients.c and metrics_read.c share
 * (private to the core).
 *
 * Everything in the object starts as zero bytes, which is a valid state
 * (no names, no counts): the creator writes only the header
 * (shm_obj_internal.h).  Counters are relaxed atomics; the top-client and
 * alert-client tables are plain memory guarded by `lock`, a spin lock
 * word holding its owner's pid so that a lock left by a dead process is
 * taken over.
 *
 * The obs folder (the other internal header maps it too):
 *
 *   metrics.c                  the metrics object: opening it, naming
 *                              rules and tiers, recording verdicts
 *   metrics_clients.c          who is refused and who is close to a limit
 *   metrics_html.c             the status page
 *   metrics_prom.c             the Prometheus text exposition
 *   metrics_read.c             reading the metrics object for exposition
 *   metrics_usage.c            the usage series: cells, sketches, the
 *                              upkeep's snapshots, the top clients
 *   usage.c                    reading the usage series (usage.h)
 *   usage_push.c               each minute a host ends, into Redis
 *   usage_redis.c              the fleet's series read back from Redis
 *   usage_redis.h              both, and the minute callback's types
 *   hll.c                      the distinct-client sketch (hll.h)
 *   metrics_internal.h         the metrics object's layout; the metrics
 *                              entry points kept from libratelimit2-dev
 *   timed_store.c              a store that times every call it forwards
 *   violation_log.c            writing the violation log
 *   violation_log_read.c       reading it back, for operators' tools
 *   violation_log_internal.h   the ring's layout; the violation log's
 *                              entry points kept from libratelimit2-dev
 */
#ifndef RL2_METRICS_INTERNAL_H
#define RL2_METRICS_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "ratelimit2/metrics.h"
#include "base/shm_obj_internal.h"
#include "obs/hll.h"
#include "obs/usage.h"
#include "obs/usage_redis.h"

/* ---- beside ratelimit2/metrics.h (not installed) ---- */

void rl2_metrics_conf_default(rl2_metrics_conf_t *conf);

/* Open (or create) "<name>" with permission mode; alert may be NULL (no
 * alerts) and zone NULL (no zone alerts); both are borrowed and must
 * outlive the handle.  *out is freed by rl2_metrics_close(). */
rl2_status_t rl2_metrics_open(const char *name, unsigned mode,
                              const rl2_metrics_conf_t *conf,
                              rl2_alert_t *alert, rl2_zone_t *zone,
                              rl2_metrics_t **out, rl2_err_t *err);
void         rl2_metrics_close(rl2_metrics_t *m);
rl2_status_t rl2_metrics_unlink(const char *name, rl2_err_t *err);

/* Store calls, for the latency histogram and the error count. */
void rl2_metrics_store_call(rl2_metrics_t *m, int64_t elapsed_us, int ok);

/* One sampled decision's time, into the decision time histogram. */
void rl2_metrics_decide_time(rl2_metrics_t *m, int64_t elapsed_ns);

/* A request the over-limit cache refused (rl2_overlimit_hit_fn: m is
 * the context; NULL counts nothing). */
void rl2_metrics_overlimit_hit(void *m);

/* A store that times every call of `inner` into m (inner and m
 * borrowed). */
rl2_status_t rl2_store_timed_create(rl2_store_t *inner, rl2_metrics_t *m,
                                    rl2_store_t **out, rl2_err_t *err);

void rl2_metrics_global(const rl2_metrics_t *m, rl2_metrics_global_t *out);

/* Calls fn for every (rule, tier) cell with a non-zero count. */
void rl2_metrics_cells(const rl2_metrics_t *m,
                       void (*fn)(void *ctx, const rl2_metrics_cell_t *c),
                       void *ctx);

/* One experiment slot, for exposition: a variant's requests, or (variant
 * "") a rule's challenger's outcomes. */
typedef struct {
    char     rule[RL2_NAME_MAX + 1];
    char     variant[RL2_VARIANT_NAME_MAX + 1];
    uint64_t allowed;
    uint64_t denied;
} rl2_metrics_exp_t;

/* Calls fn for every experiment slot in use; returns the counts that
 * found no slot (the table was full). */
uint64_t rl2_metrics_experiments(const rl2_metrics_t *m,
                                 void (*fn)(void                    *ctx,
                                            const rl2_metrics_exp_t *e),
                                 void *ctx);

/* Allowed and denied per minute for rule slot `slot`, oldest first,
 * ending with the minute of now_wall_s: out[i][0] allowed, [1] denied.
 * Returns 0 when the slot holds no name. */
int rl2_metrics_minutes(const rl2_metrics_t *m, unsigned slot,
                        int64_t  now_wall_s,
                        uint64_t out[RL2_METRICS_MINUTES][2],
                        char     name[RL2_NAME_MAX + 1]);

/* The top tables, largest count first; return how many were written. */
size_t rl2_metrics_top_limited(const rl2_metrics_t *m,
                               rl2_metrics_top_t    out[RL2_METRICS_TOP]);
size_t rl2_metrics_top_near(const rl2_metrics_t *m,
                            rl2_metrics_top_t    out[RL2_METRICS_TOP]);

#define MX_MAGIC 0x4d324c52u /* "RL2M" read little-endian */
/* 12: the minutes pushed to Redis, counted; two hour sketches, idle
 * sketches cleared a part at a time (the fields after use_phase moved) */
#define MX_VERSION 12u

/* Minute ring words: the minute number (mod 2^24) above the 40 low bits
 * of a rule's running total (allowed or denied) when that minute began.
 * The ring is written by the once-a-second upkeep, never by a request:
 * a minute's count is the difference between two snapshots. */
#define MX_MIN_COUNT_BITS 40
#define MX_MIN_COUNT_MASK ((UINT64_C(1) << MX_MIN_COUNT_BITS) - 1)
#define MX_MIN_STAMP_MASK ((UINT64_C(1) << 24) - 1)

/* The minute ring has a power-of-two length (a mask, not a division, on
 * the hot path), longer than the hour it shows. */
#define MX_RING 64
_Static_assert(MX_RING >= RL2_METRICS_MINUTES && (MX_RING & (MX_RING - 1)) == 0,
               "the minute ring is a power of two above an hour");

enum { MX_FREE = 0, MX_WRITING = 1, MX_NAMED = 2 };

/* Rule slot 2 is reserved too: requests no rule applies to
 * (RL2_OUTCOME_NONE), rule RL2_USAGE_UNMATCHED; names start at 3. */
#define MX_SLOT_UNMATCHED RL2_METRICS_SLOT_UNMATCHED
#define MX_FIRST_RULE     3

/* ---- usage series (metrics_usage.c, usage.c) ----
 *
 * A (rule, tier) cell gets a usage cell the first time a request counts
 * in it (use_slot, under the lock; up to RL2_USAGE_CELLS, then
 * MX_USE_NONE: counted, no series).  Each usage cell has a ring of
 * per-minute and one of per-hour points, written by the upkeep only:
 * at the first upkeep of an interval the cell's running totals go into
 * the interval's point, so an interval's counts are the next known
 * point's totals minus its own (no request writes a point).
 *
 * Distinct clients and the peak share are written by requests into one
 * of two sketches and peaks per cell and interval, the ones use_phase
 * names (bit 0 the minute's, bit 1 the hour's); the upkeep that opens
 * an interval flips its bit, then estimates the other sketch into the
 * point of the interval it held (two words: hll.h keeps the sums).  Its
 * registers are cleared for the interval after next a part at a time by
 * the once-a-second upkeeps that follow (use_min_left, use_hour_left),
 * the rest by the flip that needs it: no single request pays for
 * clearing 16 KiB per cell.
 *
 * Usage cell RL2_USAGE_CELLS is a sink: the cells that found the table
 * full write their sketches there, never read, so that a request tests
 * nothing but "claimed yet". */
#define MX_USE_SINK RL2_USAGE_CELLS

/* A (rule, tier) cell as one number: use_slot's index. */
#define MX_CELL(slot, tier) ((slot)*RL2_METRICS_TIERS + (tier))
#define MX_CELL_SLOT(cell)  ((cell) / RL2_METRICS_TIERS)
#define MX_CELL_TIER(cell)  ((cell) % RL2_METRICS_TIERS)

typedef struct {
    _Atomic uint64_t stamp;    /* interval number + 1 (minutes or hours
                                  since the epoch); 0: never written */
    _Atomic uint64_t total[3]; /* the cell's requests, admitted and
                                  refused when the interval began */
    _Atomic uint32_t clients;  /* distinct clients, once it has ended */
    _Atomic uint32_t peak_ppm; /* largest share of a limit one client
                                  used; an hour's: the max of its ended
                                  minutes */
} mx_point_t;

typedef struct {
    _Atomic uint32_t peak_ppm[2]; /* per minute phase */
    rl2_hll_t        minute[2];   /* per minute phase */
    rl2_hll_t        hour[2];     /* per hour phase */
} mx_use_live_t;

typedef struct {
    uint16_t rule; /* rule slot */
    uint16_t tier; /* tier slot */
} mx_use_cell_t;

/* The top clients by use: a space-saving table keyed by the layer's key
 * digest (one client under one limit of a rule), fed by one request in
 * RL2_USAGE_TOP_SAMPLE with weight RL2_USAGE_TOP_SAMPLE, under `lock`. */
typedef struct {
    rl2_digest_t key;
    char         client[RL2_METRICS_CLIENT_MAX]; /* "" : free */
    uint32_t     rule;                           /* rule slot */
    uint32_t     peak_ppm;
    uint64_t     count;
    uint64_t     error; /* the count inherited from the entry replaced */
    int64_t      last_wall_s;
} mx_use_top_t;

typedef struct {
    _Atomic uint32_t state; /* MX_FREE, MX_WRITING, MX_NAMED */
    char             name[RL2_NAME_MAX + 1];
} mx_name_t;

typedef struct {
    _Atomic uint64_t n[RL2_METRIC_KINDS];
} mx_cell_t;

typedef struct {
    char     client[RL2_METRICS_CLIENT_MAX]; /* "" : free */
    uint32_t rule;                           /* rule slot */
    uint64_t count;
    int64_t  last_wall_s;
} mx_top_t;

/* Alert state of one client address (event=limited, ban candidate). */
typedef struct {
    char     client[RL2_METRICS_CLIENT_MAX]; /* "" : free */
    int64_t  seen_ms;                        /* last refusal, monotonic */
    int64_t  line_ms;                        /* last limited line */
    uint64_t held;                           /* refusals since it */
    int64_t  win_ms;                         /* ban window start */
    uint32_t win_count;
    uint32_t ban_sent; /* in this window */
} mx_client_t;

/* Experiments (metrics.c, rl2_mx_record_experiment): one slot per rule
 * and variant, and one per rule for its challenger (variant ""), named
 * as rule slots are; [0] requests allowed, [1] denied (a challenger's:
 * would allow, would deny). */
#define MX_EXPERIMENTS 256

typedef struct {
    _Atomic uint32_t state; /* MX_FREE, MX_WRITING, MX_NAMED */
    char             rule[RL2_NAME_MAX + 1];
    char             variant[RL2_VARIANT_NAME_MAX + 1]; /* "": challenger */
    _Atomic uint64_t n[2];
} mx_exp_t;

typedef struct {
    rl2_shm_hdr_t    hdr;
    _Atomic int64_t  created_wall_s;
    _Atomic uint32_t lock;          /* pid of the holder, or 0 */
    _Atomic uint32_t zone_level;    /* zone_full: 0 armed, 1 warning
                                       sent, 2 critical sent
                                       (metrics_clients.c) */
    _Atomic uint64_t loads;         /* rl2_metrics_loaded() calls */
    _Atomic uint64_t snap_minute;   /* minute + 1 of the last snapshot */
    _Atomic int64_t  next_check_us; /* next upkeep (zone, evictions),
                                       monotonic */
    _Atomic int64_t  evict_mark_ms;
    _Atomic uint64_t evict_mark;
    _Atomic uint64_t bucket[RL2_METRICS_BUCKETS + 1];
    _Atomic uint64_t store_calls;
    _Atomic uint64_t store_us_sum;
    _Atomic uint64_t store_errors;
    _Atomic uint64_t limited_lines;
    _Atomic uint64_t limited_held;
    _Atomic uint64_t ban_candidates;
    _Atomic uint64_t bans;           /* automatic bans made (policy `abuse`) */
    _Atomic uint64_t overlimit_hits; /* requests the over-limit cache
                                        refused without a Redis call */
    _Atomic uint64_t decide_bucket[RL2_METRICS_DECIDE_BUCKETS + 1];
    _Atomic uint64_t decide_ns_sum; /* sampled decisions' time */
    mx_name_t        rules[RL2_METRICS_RULES];
    mx_name_t        tiers[RL2_METRICS_TIERS];
    mx_cell_t        cells[RL2_METRICS_RULES][RL2_METRICS_TIERS];
    _Atomic uint64_t minutes[RL2_METRICS_RULES][MX_RING][2];
    mx_top_t         top_limited[RL2_METRICS_TOP];
    mx_top_t         top_near[RL2_METRICS_TOP];
    mx_client_t      clients[RL2_METRICS_ALERT_CLIENTS];
    _Atomic uint64_t exp_unplaced; /* experiment counts with no slot */
    mx_exp_t         experiments[MX_EXPERIMENTS];
    /* usage series */
    _Atomic uint32_t use_phase;        /* bit 0: the minute sketch requests
                                          write; bit 1: the hour sketch */
    _Atomic uint32_t use_n;            /* usage cells claimed */
    _Atomic uint64_t use_min_open[2];  /* minute + 1 each minute sketch
                                          holds; 0: none */
    _Atomic uint64_t use_hour_open[2]; /* hour + 1 each hour sketch holds */
    _Atomic uint32_t use_min_left;     /* registers of the idle minute
                                          sketches still to clear (from the
                                          top: the first is at REGS - left) */
    _Atomic uint32_t use_hour_left;    /* the same for the idle hour ones */
    /* minutes handed to on_minute, by rl2_usage_minute_result_t */
    _Atomic uint64_t use_pushes[RL2_USAGE_MINUTE_RESULTS];
    /* 1 + usage cell; 0: none yet; 1 + MX_USE_SINK: no room */
    /* by MX_CELL(rule slot, tier slot): one index for the hot path */
    _Atomic uint16_t use_slot[RL2_METRICS_RULES * RL2_METRICS_TIERS];
    mx_use_cell_t    use_cells[RL2_USAGE_CELLS];
    mx_use_top_t     use_top[RL2_USAGE_TOP];
    mx_point_t       use_minutes[RL2_USAGE_CELLS][RL2_USAGE_MINUTES];
    mx_point_t       use_hours[RL2_USAGE_CELLS][RL2_USAGE_HOURS];
    mx_use_live_t    use_live[RL2_USAGE_CELLS + 1]; /* + the sink */
} mx_shm_t;

struct rl2_metrics {
    mx_shm_t          *shm;
    rl2_metrics_conf_t conf;
    rl2_alert_t       *alert; /* borrowed, may be NULL */
    rl2_zone_t        *zone;  /* borrowed, may be NULL */
    /* The minutes this process snapshots, when set (the backend's
     * Redis pusher); ctx borrowed. */
    rl2_usage_minute_fn *on_minute;
    void                *on_minute_ctx;
};

/* fn (NULL: none) is called with every minute this process's upkeep
 * snapshots, with ctx (borrowed: it must outlive the handle or be
 * unset first).  Set before the handle serves requests. */
void rl2_metrics_on_minute(rl2_metrics_t *m, rl2_usage_minute_fn *fn,
                           void *ctx);

/* A name's slot in a table of cap slots (slots below `first` are
 * reserved), given it if it has none; RL2_METRICS_SLOT_OTHER when the
 * table is full. */
unsigned rl2_mx_name_slot(mx_name_t *table, unsigned cap, unsigned first,
                          const char *name);

/* metrics_clients.c: a refused request (top table, limited line, ban
 * candidate), an admitted one near its limit, and the once-a-second
 * upkeep (zone filling, eviction rate). */
/* An automatic ban this verdict made: counted, and one event=banned line
 * (metrics_clients.c). */
void rl2_mx_banned(rl2_metrics_t *m, const rl2_verdict_t *v);

void rl2_mx_limited(rl2_metrics_t *m, const rl2_verdict_t *v,
                    unsigned rule_slot, unsigned tier_slot,
                    const rl2_clock_t *now);
void rl2_mx_near(rl2_metrics_t *m, const char *client, unsigned rule_slot,
                 const rl2_clock_t *now);
void rl2_mx_upkeep(rl2_metrics_t *m, const rl2_clock_t *now);

/* metrics_read.c: a rule slot's running totals (allowed, including dry
 * runs, and denied), and the snapshot of every rule's totals taken at
 * the first upkeep of a minute (1 for the one process that took it). */
void rl2_mx_totals(const mx_shm_t *s, unsigned slot, uint64_t out[2]);
int  rl2_mx_snapshot(rl2_metrics_t *m, int64_t wall_us);

/* metrics_usage.c: the usage cell of (rule slot, tier slot), claimed if
 * it has none (MX_USE_SINK when the table is full): 1 + its index. */
unsigned rl2_mx_use_claim(mx_shm_t *s, unsigned rule, unsigned tier);

/* A sampled request's use into the top-client table (key: the layer's
 * digest; share_ppm its share of the limit, 0 for none). */
void rl2_mx_use_top(mx_shm_t *s, const rl2_digest_t *key, const char *client,
                    unsigned rule, uint32_t share_ppm, int64_t wall_s);

/* A usage cell's running totals: requests, admitted, refused. */
void rl2_mx_use_totals(const mx_shm_t *s, unsigned use, uint64_t out[3]);
/* metrics_read.c: the name in slot i of a table of cap names (rules or
 * tiers), NULL for a slot out of range, not named (yet), or whose name
 * has no NUL (the object is writable by every process of the server's
 * user: a name is not read on past its field); published names never
 * change.  rl2_mx_slot_label: the same, "-" for NULL. */
const char *rl2_mx_slot_name(const mx_name_t *t, unsigned cap, unsigned i);

static inline const char *
rl2_mx_slot_label(const mx_name_t *t, unsigned cap, unsigned i)
{
    const char *name = rl2_mx_slot_name(t, cap, i);

    return name != NULL ? name : "-";
}

/* After a minute's snapshot (the one process that took it): open the
 * minute (and the hour) for every usage cell, end the one before (and
 * hand it to fn, when not NULL). */
void rl2_mx_use_snapshot(mx_shm_t *s, uint64_t minute, rl2_usage_minute_fn *fn,
                         void *ctx);

/* Once a second (the upkeep's process): clear a part of the idle
 * sketches. */
void rl2_mx_use_upkeep(mx_shm_t *s);

/* The lock of the client tables (metrics_clients.c): 1 when taken. */
int  rl2_mx_lock(mx_shm_t *s);
void rl2_mx_unlock(mx_shm_t *s);

/* metrics_anomaly.c: after a minute's snapshot, one event=anomaly line
 * for the rule whose refusals in the minute that ended stand furthest
 * above its own last hour, if any does (conf.anomaly_min). */
void rl2_mx_upkeep_anomaly(rl2_metrics_t *m, int64_t wall_us);

/* metrics_html.c and metrics_prom.c: where a renderer writes, and printf
 * to it (metrics.c; a piece longer than 1023 bytes is cut). */
typedef struct {
    rl2_out_fn out;
    void      *ctx;
} mx_out_t;

void rl2_mx_put(mx_out_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* RL2_METRICS_INTERNAL_H */
