/*
 * metrics.h -- what the limiter did, counted in shared memory, and the
 * alerts that follow from it (event=limited for fail2ban, ban candidates,
 * a filling zone, evictions).
 *
 * One metrics object per zone, a named shm object "<zone>.metrics" beside
 * the circuit and alert objects, shared by every process of the host.  It
 * is fixed-size (RL2_METRICS_RULES x RL2_METRICS_TIERS cells, a per-minute
 * ring of the last hour, two small top-client tables, two latency
 * histograms), so memory never grows with traffic.
 *
 * Rules and tiers are counted by name: a name gets a slot the first time
 * any process binds a policy naming it, and keeps it for the life of the
 * object, so a reload or graceful restart that adds, removes or reorders
 * rules keeps every surviving rule's counts.  Names beyond the capacity
 * are counted under rule "(other)" / tier "(other)".  An object of
 * another layout (another build) is replaced when opened.
 *
 * Hot path: rl2_metrics_record() once per request, after its verdict.  It
 * never allocates, never locks for an allowed request (relaxed atomic
 * additions into the rule x tier cell and the minute ring), and resolves
 * a rule to its slot by pointer through the binding made at policy load.
 * Denied and near-limit requests also update the top-client tables and
 * the per-client alert table under a short spin lock.
 */
#ifndef RL2_METRICS_H
#define RL2_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/alert.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/overrides.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/status.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"

#define RL2_METRICS_RULES          128 /* rule name slots, 0 to 2 reserved */
#define RL2_METRICS_TIERS          16  /* tier name slots, 0 and 1 reserved */
#define RL2_METRICS_MINUTES        60  /* per-minute ring: the last hour */
#define RL2_METRICS_TOP            16  /* clients per top table */
#define RL2_METRICS_ALERT_CLIENTS  256 /* clients with alert state */
#define RL2_METRICS_BUCKETS        12  /* latency buckets before +Inf */
#define RL2_METRICS_CLIENT_MAX     48  /* bytes of a client id, NUL included */
#define RL2_METRICS_DECIDE_BUCKETS 12  /* decision time buckets before +Inf */
#define RL2_METRICS_DECIDE_SAMPLE  64  /* one decision in this many timed */

/* Reserved slots. */
#define RL2_METRICS_SLOT_BYPASS    0 /* rule "(bypass)": whitelisted, exempt */
#define RL2_METRICS_SLOT_OTHER     1 /* rule or tier "(other)": no room */
#define RL2_METRICS_SLOT_UNMATCHED 2 /* rule "(unmatched)": no rule applied */
#define RL2_METRICS_TIER_NONE      0 /* tier "(none)": no tier resolved */

typedef enum {
    RL2_METRIC_ALLOWED = 0, /* admitted; no dry-run layer refused */
    RL2_METRIC_DENIED,      /* refused by this rule */
    RL2_METRIC_DRY_RUN,     /* admitted, a dry-run layer would refuse */
    RL2_METRIC_BYPASSED,    /* whitelisted or exempt */
    RL2_METRIC_NEAR,        /* admitted with some limit >= 80% used */
    RL2_METRIC_OVERFLOW,    /* admitted by an overflow allowance */
    RL2_METRIC_UNMATCHED,   /* no rule applied (rule "(unmatched)") */
    RL2_METRIC_KINDS
} rl2_metric_kind_t;

/* A zone_full threshold on the zone's live keys: a share of its entries
 * (share_ppm, of 10^6), or bytes in use (rl2_zone_usage_t.bytes_used,
 * with share_ppm 0); both 0: off. */
typedef struct {
    uint32_t share_ppm;
    uint64_t bytes;
} rl2_zone_threshold_t;

typedef struct {
    int64_t limited_interval_ms;        /* one event=limited line per client per
                                           interval; 0: no such lines.  60000 */
    uint32_t ban_count;                 /* refusals in ban_window_ms that make a
                                           ban candidate; 0: off (default) */
    int64_t  ban_window_ms;             /* 60000 */
    uint32_t eviction_alert;            /* evictions per minute that raise an
                                           alert; 0: off.  1000 */
    rl2_zone_threshold_t zone_warning;  /* zone_full level=warning: 80% */
    rl2_zone_threshold_t zone_critical; /* level=critical: 100% */
    uint32_t             anomaly_min;   /* refusals by one rule in one
                                           minute below which it is never
                                           an anomaly; 0: no event=anomaly
                                           lines.  60 */
} rl2_metrics_conf_t;

/* "off", "WARNING" or "WARNING/CRITICAL" (the RateLimit2Events option
 * zone_full=), each "N%" (1 to 100) or a size in bytes "N", "NK", "NM",
 * "NG" (powers of 1024), "off" for no such level: into conf's zone_warning
 * and zone_critical.  A warning not below a critical of the same unit is
 * refused. */
rl2_status_t rl2_metrics_zone_full_parse(const char         *text,
                                         rl2_metrics_conf_t *conf,
                                         rl2_err_t          *err);

typedef struct rl2_metrics      rl2_metrics_t;
typedef struct rl2_metrics_bind rl2_metrics_bind_t;

/* Give every rule and tier of the policy, and the extra (inline) rules,
 * their slots; the binding maps rule pointers to slots on the hot path.
 * Rules met later that are not in the binding (inline rules of a merged
 * <Location>) are found by name.  The binding borrows policy and extra
 * and is freed by rl2_metrics_unbind(); m may be NULL (metrics off): then
 * *out is NULL, which record accepts.  *unplaced gets how many names did
 * not fit (counted as "(other)"). */
rl2_status_t rl2_metrics_bind(rl2_metrics_t *m, const rl2_policy_t *policy,
                              const rl2_rule_t *extra, size_t n_extra,
                              rl2_metrics_bind_t **out, size_t *unplaced,
                              rl2_err_t *err);
void         rl2_metrics_unbind(rl2_metrics_bind_t *b);

/* One more configuration load seen by the object; returns the count (1
 * for the first).  For a front end whose own memory does not survive a
 * reload (Apache unloads the module on restart): the policy generation
 * it reports. */
unsigned long rl2_metrics_loaded(rl2_metrics_t *m);

/* Count one request's final verdict (once per request, after its last
 * phase); now is the request's clock.  b may be NULL: a no-op. */
void rl2_metrics_record(rl2_metrics_bind_t *b, const rl2_verdict_t *v,
                        const rl2_clock_t *now);

/* ---- decision time, sampled ---- */

/* rl2_decide() timed into m's decision time histogram (CLOCK_MONOTONIC
 * around it); m may be NULL (metrics off): decided, not timed.  For the
 * sampled decisions only: rl2_metrics_decide() chooses them. */
rl2_status_t rl2_metrics_decide_timed(rl2_metrics_t      *m,
                                      const rl2_policy_t *policy,
                                      const rl2_rule_t *extra, size_t n_extra,
                                      rl2_store_t *store, rl2_request_t *req,
                                      unsigned phase, const rl2_clock_t *now,
                                      rl2_verdict_t *v, rl2_err_t *err);

/* The metrics object b counts into; NULL for a NULL b. */
rl2_metrics_t *rl2_metrics_of(const rl2_metrics_bind_t *b);

/* One decision in RL2_METRICS_DECIDE_SAMPLE of this thread's: 1 when
 * this one is to be timed.  The counter is per thread (no sharing, no
 * atomics) and per front end (static in the front end's code): the
 * other decisions pay one increment and one branch.  initial-exec: in
 * a module Apache loads, the default model reads the counter through a
 * __tls_get_addr() call on every request; four bytes of the static TLS
 * surplus glibc keeps for loaded objects are the cheaper way. */
static inline int
rl2_metrics_decide_sampled(void)
{
    static __thread unsigned tick __attribute__((tls_model("initial-exec")));

    return (++tick & (RL2_METRICS_DECIDE_SAMPLE - 1)) == 0;
}

/* rl2_decide(), one call in RL2_METRICS_DECIDE_SAMPLE timed into b's
 * metrics object (ratelimit2_decision_seconds); the front ends call this
 * in place of rl2_decide(). */
static inline rl2_status_t
rl2_metrics_decide(rl2_metrics_bind_t *b, const rl2_policy_t *policy,
                   const rl2_rule_t *extra, size_t n_extra, rl2_store_t *store,
                   rl2_request_t *req, unsigned phase, const rl2_clock_t *now,
                   rl2_verdict_t *v, rl2_err_t *err)
{
    if (__builtin_expect(rl2_metrics_decide_sampled(), 0)) {
        return rl2_metrics_decide_timed(rl2_metrics_of(b), policy, extra,
                                        n_extra, store, req, phase, now, v,
                                        err);
    }
    return rl2_decide(policy, extra, n_extra, store, req, phase, now, v, err);
}

/* ---- reading, for exposition ---- */

typedef struct {
    char     rule[RL2_NAME_MAX + 1];
    char     tier[RL2_NAME_MAX + 1];
    uint64_t n[RL2_METRIC_KINDS];
} rl2_metrics_cell_t;

typedef struct {
    char     client[RL2_METRICS_CLIENT_MAX];
    char     rule[RL2_NAME_MAX + 1];
    uint64_t count;
    int64_t  last_wall_s;
} rl2_metrics_top_t;

/* Latency bucket upper bounds in µs (RL2_METRICS_BUCKETS of them). */
extern const int64_t rl2_metrics_bucket_us[RL2_METRICS_BUCKETS];

/* Decision time bucket upper bounds in ns: a local decision takes a few
 * µs, one that calls Redis a few hundred. */
extern const int64_t rl2_metrics_decide_bucket_ns[RL2_METRICS_DECIDE_BUCKETS];

typedef struct {
    int64_t  created_wall_s;                  /* when the object was created */
    uint64_t bucket[RL2_METRICS_BUCKETS + 1]; /* not cumulative; +Inf */
    uint64_t store_calls;
    uint64_t store_us_sum;
    uint64_t store_errors;
    uint64_t limited_lines; /* event=limited lines sent */
    uint64_t limited_held;  /* held back by the per-client interval */
    uint64_t ban_candidates;
    uint64_t bans;           /* automatic bans made here */
    uint64_t overlimit_hits; /* refused by the over-limit cache */
    uint64_t decide_bucket[RL2_METRICS_DECIDE_BUCKETS + 1]; /* +Inf */
    uint64_t decide_ns_sum; /* of the sampled decisions */
    /* Minutes of the usage series sent to Redis (the fleet's), and
     * dropped: failed, or skipped while the circuit was open. */
    uint64_t usage_minutes_pushed;
    uint64_t usage_minutes_failed;
    uint64_t usage_minutes_skipped;
} rl2_metrics_global_t;

/* ---- what the front ends show: Prometheus, health, status page ---- */

/* The state only a front end knows, gathered at scrape time. */
typedef struct {
    int              have_zone;
    rl2_zone_stats_t zone;       /* taken after zone_usage's walk */
    rl2_zone_usage_t zone_usage; /* live keys, bytes, keys per limit */
    int              redis;      /* Redis configured */
    int              circuit;    /* rl2_circuit_state_t, or -1 */
    uint64_t         circuit_opens;
    uint64_t         refunds_queued; /* rl2_circuit_stats_t's refunds_* */
    uint64_t         refunds_replayed;
    uint64_t         refunds_dropped;
    uint64_t         refunds_failed;
    uint64_t         refunds_pending;
    int              failover_mode; /* rl2_failover_mode_t */
    int              refusing;      /* closed mode and store down */
    unsigned long    generation;    /* policy generation */
    int64_t          uptime_s;
    uint64_t         alert_failures;
    int              overlimit;      /* the over-limit cache is on */
    rl2_zone_stats_t overlimit_zone; /* its entries */
    /* The runtime override table the front end's requests see (NULL:
     * none), borrowed: read when a page is asked for, never by a
     * request.  rl2_backend_env() leaves it NULL: the table is the
     * front end's, not the backend's. */
    rl2_overrides_t *overrides;
    /* The policy's factors on (rl2_policy_t's factors_on): the table
     * keeps a factor's last value after a reload took its group away,
     * and the gauge shows only the factors in force. */
    unsigned factors_on;
} rl2_metrics_env_t;

typedef void (*rl2_out_fn)(void *ctx, const char *s, size_t n);

/* Prometheus text exposition format 0.0.4. */
void rl2_metrics_prom(const rl2_metrics_t *m, const rl2_metrics_env_t *env,
                      rl2_out_fn out, void *ctx);

/* Health as one line of JSON into buf; returns the HTTP status (200, or
 * 503 when the store refuses every request: failover closed, store
 * down).  With an override table that has a Redis side, its mirror is
 * synced first when a sync is due (as a request would), and a mirror
 * whose last sync did not reach Redis makes the status "degraded" (still
 * 200: the host serves, with the overrides it last saw). */
int rl2_metrics_health(const rl2_metrics_env_t *env, char *buf, size_t len);

/* The status page: one self-contained HTML document (inline CSS and SVG,
 * no script, no external reference), the runtime overrides in force and
 * the newest automatic bans included. */
void rl2_metrics_html(const rl2_metrics_t *m, const rl2_metrics_env_t *env,
                      int64_t now_wall_s, rl2_out_fn out, void *ctx);

#endif /* RL2_METRICS_H */
