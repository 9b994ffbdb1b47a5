/*
 * metrics_prom.c -- the metrics in the Prometheus text exposition format
 * (version 0.0.4), and the health answer as JSON.  Both front ends serve
 * these, so a scrape or a health check reads the same wherever it goes.
 *
 * Conventions: every family has HELP and TYPE lines; counters end in
 * _total; durations are in seconds (the histogram's buckets are the
 * microsecond bounds of metrics.c divided by 10^6); label values are
 * escaped (\\, \", \n).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit2/failover.h"
#include "ratelimit2/metrics.h"
#include "metrics_internal.h"
#include "control/control_internal.h"
#include "store/store_internal.h"

typedef mx_out_t prom_t;

static void
rl2_prom_family(prom_t *p, const char *name, const char *type, const char *help)
{
    rl2_mx_put(p, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one sample without labels: the name written once. */
static void
rl2_prom_single(prom_t *p, const char *name, const char *type, const char *help,
                uint64_t value)
{
    rl2_prom_family(p, name, type, help);
    rl2_mx_put(p, "%s %" PRIu64 "\n", name, value);
}

/* Names are letters, digits, '_', '.', '-' and the reserved "(...)", but
 * escape anyway: the format must hold whatever a slot contains. */
static const char *
rl2_prom_escape(const char *s, char *buf, size_t len)
{
    size_t o = 0;

    for (; *s != '\0' && o + 3 < len; s++) {
        if (*s == '\\' || *s == '"') {
            buf[o++] = '\\';
            buf[o++] = *s;
        }
        else if (*s == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        }
        else {
            buf[o++] = *s;
        }
    }
    buf[o] = '\0';
    return buf;
}

static const char *const outcome_names[] = {
    [RL2_METRIC_ALLOWED] = "allowed",
    [RL2_METRIC_DENIED] = "denied",
    [RL2_METRIC_DRY_RUN] = "dry_run_denied",
    [RL2_METRIC_BYPASSED] = "bypassed",
    [RL2_METRIC_NEAR] = NULL,
    [RL2_METRIC_OVERFLOW] = NULL,
    [RL2_METRIC_UNMATCHED] = "unmatched",
};

/* The one outcome a reserved rule's cell shows (a bypass or a request no
 * rule applied to has no limit to be allowed or refused by), or -1 for a
 * rule's cell: allowed, denied and dry_run_denied. */
static int
rl2_prom_only_kind(const char *rule)
{
    if (strcmp(rule, "(bypass)") == 0) {
        return RL2_METRIC_BYPASSED;
    }
    if (strcmp(rule, RL2_USAGE_UNMATCHED) == 0) {
        return RL2_METRIC_UNMATCHED;
    }
    return -1;
}

typedef struct {
    prom_t  *p;
    unsigned pass; /* 0: requests, 1: near limit, 2: overflow */
} cells_t;

static void
rl2_prom_cell_line(void *ctx, const rl2_metrics_cell_t *c)
{
    cells_t *x = ctx;
    char     r[2 * RL2_NAME_MAX + 2], t[2 * RL2_NAME_MAX + 2];

    rl2_prom_escape(c->rule, r, sizeof(r));
    rl2_prom_escape(c->tier, t, sizeof(t));
    if (x->pass == 0) {
        int only = rl2_prom_only_kind(c->rule);

        for (unsigned k = 0; k < RL2_METRIC_KINDS; k++) {
            if (outcome_names[k] == NULL
                || (only >= 0 ? (int)k != only
                              : k == RL2_METRIC_BYPASSED
                                    || k == RL2_METRIC_UNMATCHED)) {
                continue;
            }
            rl2_mx_put(x->p,
                       "ratelimit2_requests_total{rule=\"%s\","
                       "tier=\"%s\",outcome=\"%s\"} %" PRIu64 "\n",
                       r, t, outcome_names[k], c->n[k]);
        }
    }
    else if (rl2_prom_only_kind(c->rule) < 0) {
        rl2_mx_put(x->p, "%s{rule=\"%s\",tier=\"%s\"} %" PRIu64 "\n",
                   x->pass == 1 ? "ratelimit2_near_limit_total"
                                : "ratelimit2_overflow_total",
                   r, t,
                   c->n[x->pass == 1 ? RL2_METRIC_NEAR : RL2_METRIC_OVERFLOW]);
    }
}

static void
rl2_prom_requests(prom_t *p, const rl2_metrics_t *m)
{
    cells_t x = { p, 0 };

    rl2_prom_family(
        p, "ratelimit2_requests_total", "counter",
        "Requests by rule, tier and outcome (a request refused by one "
        "rule is counted under that rule only).");
    rl2_metrics_cells(m, rl2_prom_cell_line, &x);
    rl2_prom_family(
        p, "ratelimit2_near_limit_total", "counter",
        "Admitted requests that left a limit of the rule at least 80% "
        "used.");
    x.pass = 1;
    rl2_metrics_cells(m, rl2_prom_cell_line, &x);
    rl2_prom_family(p, "ratelimit2_overflow_total", "counter",
                    "Requests admitted by an overflow allowance.");
    x.pass = 2;
    rl2_metrics_cells(m, rl2_prom_cell_line, &x);
}

typedef struct {
    prom_t *p;
    int     challenger; /* 0: the variants' lines; 1: the challengers' */
    int     any;        /* some slot of that kind */
} exps_t;

static void
rl2_prom_exp_line(void *ctx, const rl2_metrics_exp_t *e)
{
    exps_t *x = ctx;
    char    r[2 * RL2_NAME_MAX + 2], v[2 * RL2_VARIANT_NAME_MAX + 2];

    if ((e->variant[0] == '\0') != x->challenger) {
        return;
    }
    x->any = 1;
    if (x->p == NULL) {
        return;
    }
    rl2_prom_escape(e->rule, r, sizeof(r));
    rl2_prom_escape(e->variant, v, sizeof(v));
    if (x->challenger) {
        rl2_mx_put(x->p,
                   "ratelimit2_challenger_total{rule=\"%s\",outcome=\"allow\"}"
                   " %" PRIu64 "\n"
                   "ratelimit2_challenger_total{rule=\"%s\",outcome=\"deny\"}"
                   " %" PRIu64 "\n",
                   r, e->allowed, r, e->denied);
        return;
    }
    rl2_mx_put(x->p,
               "ratelimit2_variant_requests_total{rule=\"%s\",variant=\"%s\","
               "outcome=\"allowed\"} %" PRIu64 "\n"
               "ratelimit2_variant_requests_total{rule=\"%s\",variant=\"%s\","
               "outcome=\"denied\"} %" PRIu64 "\n",
               r, v, e->allowed, r, v, e->denied);
}

/* The experiments' families, each once some rule has counted under it
 * (a policy without experiments shows neither). */
static void
rl2_prom_experiments(prom_t *p, const rl2_metrics_t *m)
{
    static const char *const names[] = { "ratelimit2_variant_requests_total",
                                         "ratelimit2_challenger_total" };
    static const char *const helps[] = {
        "Requests decided by a variant of a rule, by outcome (a request "
        "refused by another rule is not counted).",
        "Requests a rule's challenger would allow or deny (evaluated in the "
        "shadow of the enforced limits; never refuses)."
    };
    uint64_t unplaced = 0;

    for (int c = 0; c < 2; c++) {
        exps_t x = { NULL, c, 0 };

        unplaced = rl2_metrics_experiments(m, rl2_prom_exp_line, &x);
        if (!x.any) {
            continue;
        }
        rl2_prom_family(p, names[c], "counter", helps[c]);
        x.p = p;
        rl2_metrics_experiments(m, rl2_prom_exp_line, &x);
    }
    if (unplaced > 0) {
        rl2_prom_single(p, "ratelimit2_experiment_unplaced_total", "counter",
                        "Experiment counts that found no slot (more "
                        "variants and challengers than the metrics hold).",
                        unplaced);
    }
}

#define MX_NS_PER_S INT64_C(1000000000)

/* A histogram's series: `n` bucket bounds and the sum in units of which
 * `per_s` make a second, written as seconds with `digits` decimals (the
 * `le` labels are series names: each histogram keeps its own spelling);
 * counts[n] is the +Inf bucket.  Counts are not cumulative. */
typedef struct {
    const char     *name, *help;
    const int64_t  *bound; /* n of them */
    unsigned        n;
    const uint64_t *counts; /* n + 1 */
    uint64_t        sum;
    int64_t         per_s;
    int             digits;
} prom_hist_t;

static void
rl2_prom_histogram(prom_t *p, const prom_hist_t *h)
{
    uint64_t cum = 0;

    rl2_prom_family(p, h->name, "histogram", h->help);
    for (unsigned i = 0; i < h->n; i++) {
        cum += h->counts[i];
        rl2_mx_put(p,
                   "%s_bucket{le=\"%" PRId64 ".%0*" PRId64 "\"} %" PRIu64 "\n",
                   h->name, h->bound[i] / h->per_s, h->digits,
                   h->bound[i] % h->per_s, cum);
    }
    cum += h->counts[h->n];
    rl2_mx_put(p, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", h->name, cum);
    rl2_mx_put(p, "%s_sum %" PRIu64 ".%0*" PRIu64 "\n", h->name,
               h->sum / (uint64_t)h->per_s, h->digits,
               h->sum % (uint64_t)h->per_s);
    rl2_mx_put(p, "%s_count %" PRIu64 "\n", h->name, cum);
}

/* Sampled: one decision in RL2_METRICS_DECIDE_SAMPLE per thread, so
 * _count is about the requests / 64 and the quantiles are the traffic's. */
static void
rl2_prom_decide(prom_t *p, const rl2_metrics_global_t *g)
{
    prom_hist_t h = { "ratelimit2_decision_seconds",
                      "Time one decision took (local or Redis store), "
                      "one request in 64 timed.",
                      rl2_metrics_decide_bucket_ns,
                      RL2_METRICS_DECIDE_BUCKETS,
                      g->decide_bucket,
                      g->decide_ns_sum,
                      MX_NS_PER_S,
                      9 };

    rl2_prom_histogram(p, &h);
}

/* The minutes of the usage series this host sent to Redis, and those it
 * dropped; only once there is one (a host with Redis). */
static void
rl2_prom_usage_pushes(prom_t *p, const rl2_metrics_global_t *g)
{
    const char *name = "ratelimit2_usage_redis_minutes_total";

    if (g->usage_minutes_pushed + g->usage_minutes_failed
            + g->usage_minutes_skipped
        == 0) {
        return;
    }
    rl2_prom_family(p, name, "counter",
                    "Minutes of the usage series sent to Redis (pushed) "
                    "or dropped (failed, skipped: circuit open).");
    rl2_mx_put(p, "%s{result=\"pushed\"} %" PRIu64 "\n", name,
               g->usage_minutes_pushed);
    rl2_mx_put(p, "%s{result=\"failed\"} %" PRIu64 "\n", name,
               g->usage_minutes_failed);
    rl2_mx_put(p, "%s{result=\"skipped\"} %" PRIu64 "\n", name,
               g->usage_minutes_skipped);
}

static void
rl2_prom_store(prom_t *p, const rl2_metrics_global_t *g)
{
    prom_hist_t h = { "ratelimit2_store_duration_seconds",
                      "Time the shared store (Redis) took to answer one call.",
                      rl2_metrics_bucket_us,
                      RL2_METRICS_BUCKETS,
                      g->bucket,
                      g->store_us_sum,
                      RL2_US_PER_S,
                      6 };

    rl2_prom_histogram(p, &h);
    rl2_prom_single(
        p, "ratelimit2_redis_errors_total", "counter",
        "Calls to Redis that failed (error, timeout, no connection).",
        g->store_errors);
    rl2_prom_single(
        p, "ratelimit2_overlimit_hits_total", "counter",
        "Requests the over-limit cache refused without a Redis call.",
        g->overlimit_hits);
    rl2_prom_usage_pushes(p, g);
}

/* The refunds Redis was owed while the circuit was not closed. */
static void
rl2_prom_refunds(prom_t *p, const rl2_metrics_env_t *e)
{
    const struct {
        const char *outcome;
        uint64_t    n;
    } rows[] = { { "queued", e->refunds_queued },
                 { "replayed", e->refunds_replayed },
                 { "dropped", e->refunds_dropped },
                 { "failed", e->refunds_failed } };

    rl2_prom_family(
        p, "ratelimit2_redis_refunds_total", "counter",
        "Refunds of counts Redis holds (one per limit): queued while the "
        "circuit was not closed, replayed to Redis since, dropped (queue "
        "full or too old), failed (sent without an answer, not resent).");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        rl2_mx_put(
            p, "ratelimit2_redis_refunds_total{outcome=\"%s\"} %" PRIu64 "\n",
            rows[i].outcome, rows[i].n);
    }
    rl2_prom_single(p, "ratelimit2_redis_refunds_pending", "gauge",
                    "Refunds queued for Redis now.", e->refunds_pending);
}

/* Bans in force, counted from the table when scraped: a request never
 * pays for the gauge. */
static void
rl2_prom_bans(prom_t *p, const rl2_metrics_env_t *e)
{
    size_t      op = 0, au = 0;
    rl2_clock_t now;

    if (e->overrides != NULL) {
        rl2_clock_now(&now);
        rl2_overrides_count_bans(e->overrides, &now, &op, &au);
    }
    rl2_prom_family(
        p, "ratelimit2_bans_active", "gauge",
        "Bans in force now in the runtime override table, by origin "
        "(operator: ratelimit2ctl or the admin interface; auto: policy "
        "abuse).");
    rl2_mx_put(p,
               "ratelimit2_bans_active{origin=\"operator\"} %zu\n"
               "ratelimit2_bans_active{origin=\"auto\"} %zu\n",
               op, au);
}

/* The adaptive factors (policy factors) once a request worked one out:
 * the host's, as every process applies it. */
static void
rl2_prom_factors(prom_t *p, const rl2_metrics_env_t *e)
{
    uint32_t load = 0, sched = 0;
    int      has_load, has_sched;

    if (e->overrides == NULL) {
        return;
    }
    has_load = (e->factors_on & (1u << RL2_FACTOR_LOAD))
               && rl2_overrides_load_factor(e->overrides, &load);
    has_sched = (e->factors_on & (1u << RL2_FACTOR_SCHEDULE))
                && rl2_overrides_schedule_factor(e->overrides, &sched);
    if (!has_load && !has_sched) {
        return;
    }
    rl2_prom_family(p, "ratelimit2_factor", "gauge",
                    "An adaptive factor every limit is scaled by now "
                    "(policy factors), before boosts.");
    if (has_load) {
        rl2_mx_put(p, "ratelimit2_factor{factor=\"load\"} %g\n",
                   (double)load / RL2_OVR_FACTOR_ONE);
    }
    if (has_sched) {
        rl2_mx_put(p, "ratelimit2_factor{factor=\"schedule\"} %g\n",
                   (double)sched / RL2_OVR_FACTOR_ONE);
    }
}

/* The local zone: what it can hold, what it holds now (the scrape walked
 * it: expired entries taken back, live keys counted), per limit. */
static void
rl2_prom_zone(prom_t *p, const rl2_metrics_env_t *e)
{
    const rl2_zone_usage_t *u = &e->zone_usage;
    char                    name[2 * RL2_ZONE_LIMIT_NAME_MAX + 4];

    rl2_prom_single(p, "ratelimit2_zone_entries", "gauge",
                    "Keys the local zone can hold.", e->zone.entries);
    rl2_prom_single(p, "ratelimit2_zone_used_entries", "gauge",
                    "Entries of the local zone holding a key (after the "
                    "scrape took back the expired ones: the live keys).",
                    e->zone.used);
    rl2_prom_single(p, "ratelimit2_zone_live_keys", "gauge",
                    "Keys of the local zone whose state still counts.",
                    u->live);
    rl2_prom_family(p, "ratelimit2_zone_limit_keys", "gauge",
                    "Live keys of the local zone per limit (\"(other)\": "
                    "limits the zone has no name for).");
    for (size_t i = 0; i < u->n_limits; i++) {
        rl2_mx_put(p, "ratelimit2_zone_limit_keys{limit=\"%s\"} %" PRIu64 "\n",
                   rl2_prom_escape(u->limits[i].name, name, sizeof(name)),
                   u->limits[i].keys);
    }
    if (u->unnamed > 0) {
        rl2_mx_put(
            p, "ratelimit2_zone_limit_keys{limit=\"(other)\"} %" PRIu64 "\n",
            u->unnamed);
    }
    rl2_prom_single(p, "ratelimit2_zone_used_bytes", "gauge",
                    "Bytes of the local zone in use: its header and index, "
                    "and the entries of live keys.",
                    u->bytes_used);
    rl2_prom_single(p, "ratelimit2_zone_reserved_bytes", "gauge",
                    "Bytes of shared memory the local zone reserved.",
                    u->bytes_reserved);
    rl2_prom_single(p, "ratelimit2_zone_reclaimed_total", "counter",
                    "Entries of the local zone taken back after their key "
                    "expired.",
                    u->reclaimed);
    rl2_prom_single(p, "ratelimit2_zone_evictions_total", "counter",
                    "Live keys evicted from the local zone to make room.",
                    e->zone.evictions);
}

static void
rl2_prom_env(prom_t *p, const rl2_metrics_env_t *e)
{
    static const char *const states[] = { "closed", "open", "half_open" };

    if (e->redis) {
        rl2_prom_family(
            p, "ratelimit2_circuit_state", "gauge",
            "State of the circuit breaker in front of Redis (1: the "
            "current state).");
        for (int i = 0; i < 3; i++) {
            rl2_mx_put(p, "ratelimit2_circuit_state{state=\"%s\"} %d\n",
                       states[i], e->circuit == i);
        }
        rl2_prom_single(p, "ratelimit2_circuit_opens_total", "counter",
                        "Times the circuit breaker opened.", e->circuit_opens);
        rl2_prom_refunds(p, e);
    }
    if (e->overlimit) {
        rl2_prom_single(p, "ratelimit2_overlimit_entries", "gauge",
                        "Clients the over-limit cache can hold.",
                        e->overlimit_zone.entries);
        rl2_prom_single(p, "ratelimit2_overlimit_used_entries", "gauge",
                        "Entries of the over-limit cache in use (refusals "
                        "that ended included, until reused).",
                        e->overlimit_zone.used);
    }
    if (e->have_zone) {
        rl2_prom_zone(p, e);
    }
    rl2_prom_bans(p, e);
    rl2_prom_factors(p, e);
    rl2_prom_single(p, "ratelimit2_policy_generation", "gauge",
                    "Generation of the policy in force (1 at start).",
                    e->generation);
    rl2_prom_family(p, "ratelimit2_uptime_seconds", "gauge",
                    "Seconds since this front end started.");
    rl2_mx_put(p, "ratelimit2_uptime_seconds %" PRId64 "\n", e->uptime_s);
}

static void
rl2_prom_alerts(prom_t *p, const rl2_metrics_global_t *g,
                const rl2_metrics_env_t *e)
{
    rl2_prom_single(p, "ratelimit2_limited_lines_total", "counter",
                    "event=limited syslog lines sent.", g->limited_lines);
    rl2_prom_single(
        p, "ratelimit2_limited_lines_held_total", "counter",
        "Refusals with no event=limited line (per-client interval).",
        g->limited_held);
    rl2_prom_single(p, "ratelimit2_ban_candidates_total", "counter",
                    "ban_candidate alerts sent.", g->ban_candidates);
    rl2_prom_single(p, "ratelimit2_bans_total", "counter",
                    "Automatic bans made on this host (policy abuse).",
                    g->bans);
    rl2_prom_single(p, "ratelimit2_alert_failures_total", "counter",
                    "Alert lines the syslog socket refused.",
                    e->alert_failures);
}

void
rl2_metrics_prom(const rl2_metrics_t *m, const rl2_metrics_env_t *env,
                 rl2_out_fn out, void *ctx)
{
    prom_t               p = { out, ctx };
    rl2_metrics_global_t g;

    if (m != NULL) {
        rl2_metrics_global(m, &g);
        rl2_prom_requests(&p, m);
        rl2_prom_experiments(&p, m);
        rl2_prom_store(&p, &g);
        rl2_prom_decide(&p, &g);
        rl2_prom_alerts(&p, &g, env);
    }
    rl2_prom_env(&p, env);
}

/* ---- health ---------------------------------------------------------- */

/* The override table's part of the health answer into buf ("" without
 * a table); returns whether the mirror is stale (a Redis side whose
 * last sync did not reach Redis). */
static int
rl2_health_overrides(rl2_overrides_t *t, char *buf, size_t len)
{
    rl2_overrides_sync_t st;
    rl2_clock_t          now;
    char                 at[28], when[32] = "null";
    size_t               entries;
    int                  in_sync;

    buf[0] = '\0';
    if (t == NULL) {
        return 0;
    }
    /* A host no request reaches syncs no more: the check brings the
     * mirror up to date when a sync is due, as a request would, so that
     * what it says is now's. */
    rl2_clock_now(&now);
    rl2_overrides_sync(t, &now);
    rl2_overrides_sync_status(t, &st);
    /* An idle table is not scanned (its pages take no memory). */
    entries =
        rl2_overrides_idle(t) ? 0 : rl2_overrides_list(t, 0, &now, NULL, 0);
    if (!st.redis) {
        snprintf(buf, len,
                 ",\"overrides\":{\"source\":\"local\",\"entries\":%zu}",
                 entries);
        return 0;
    }
    in_sync = st.reachable && st.synced_us != 0;
    if (st.synced_us != 0) {
        rl2_audit_time_format(st.synced_us, at);
        snprintf(when, sizeof(when), "\"%s\"", at);
    }
    snprintf(buf, len,
             ",\"overrides\":{\"source\":\"redis\",\"in_sync\":%s,"
             "\"last_sync\":%s,\"entries\":%zu}",
             in_sync ? "true" : "false", when, entries);
    return !in_sync;
}

int
rl2_metrics_health(const rl2_metrics_env_t *e, char *buf, size_t len)
{
    static const char *const states[] = { "closed", "open", "half_open" };
    char                     store[96], zone[320] = "", ovr[160];
    int                      stale, code = e->refusing ? 503 : 200;

    if (e->redis) {
        snprintf(store, sizeof(store),
                 "\"redis\",\"circuit\":\"%s\","
                 "\"failover\":\"%s\"",
                 e->circuit >= 0 && e->circuit < 3 ? states[e->circuit]
                                                   : "none",
                 rl2_failover_mode_name((rl2_failover_mode_t)e->failover_mode));
    }
    else {
        snprintf(store, sizeof(store), "\"local\"");
    }
    if (e->have_zone) {
        snprintf(zone, sizeof(zone),
                 ",\"zone\":{\"entries\":%" PRIu64 ",\"used\":%" PRIu64
                 ",\"evictions\":%" PRIu64 ",\"occupancy\":%.4f"
                 ",\"live\":%" PRIu64 ",\"bytes_used\":%" PRIu64
                 ",\"bytes_reserved\":%" PRIu64 ",\"reclaimed\":%" PRIu64 "}",
                 e->zone.entries, e->zone.used, e->zone.evictions,
                 e->zone.entries
                     ? (double)e->zone_usage.live / (double)e->zone.entries
                     : 0.0,
                 e->zone_usage.live, e->zone_usage.bytes_used,
                 e->zone_usage.bytes_reserved, e->zone_usage.reclaimed);
    }
    stale = rl2_health_overrides(e->overrides, ovr, sizeof(ovr));
    snprintf(buf, len,
             "{\"status\":\"%s\",\"generation\":%lu,\"store\":%s"
             "%s%s,\"uptime\":%" PRId64 "}\n",
             code != 200 ? "unavailable"
             : stale     ? "degraded"
                         : "ok",
             e->generation, store, zone, ovr, e->uptime_s);
    return code;
}
