/*
 * metrics_anomaly.c -- event=anomaly: a rule refusing far more in the
 * minute that just ended than it did in its own last hour.
 *
 * The statistic, per rule, once a minute (by the one process that takes
 * the minute's snapshot, so it costs no request anything): d, the
 * refusals of the minute that ended, against the mean and standard
 * deviation of the 58 whole minutes before it (the per-minute ring the
 * status page draws).  A rule is anomalous when
 *
 *   d >= anomaly_min,  d > 2 * mean  and  d > mean + 4 * deviation.
 *
 * Why all three: the floor keeps a quiet rule's first few refusals from
 * alerting; twice the mean, because a flat history has almost no
 * deviation and a rise of a tenth is not an anomaly; four deviations,
 * because a noisy rule's ordinary peaks stay within that.  Minutes
 * before the rule existed, or without a request, count as none refused:
 * a rule that refused nothing for an hour and then anomaly_min in one
 * minute is reported.
 *
 * One line per interval (the alert kind's rate limit), for the rule
 * with the largest excess in deviations; `rules` says how many were
 * anomalous, so one line still tells an operator that several were.
 */
#include <float.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "metrics_internal.h"
#include "base/base_internal.h"

/* The minutes of the baseline: the ring's hour but the minute that
 * ended and the one just begun. */
#define RL2_ANOMALY_BASE (RL2_METRICS_MINUTES - 2)

typedef struct {
    uint64_t denied; /* in the minute that ended */
    double   mean;   /* of the baseline's minutes */
    double   var;    /* population variance */
} rl2_anomaly_t;

/* The square root of x >= 0 by Newton's method, for the line only (the
 * decision compares squares): the core links no libm, and every front
 * end and the pkg-config file would need it for this one number. */
static double
rl2_anomaly_sqrt(double x)
{
    uint64_t bits;
    double   r;

    if (!(x > 0) || x > DBL_MAX) {
        return x > 0 ? x : 0; /* 0, a NaN, infinity: as they are */
    }
    /* Half the exponent: within a factor of 2 of the root, for every
     * finite x (subnormals included, the guess only errs more), so that
     * Newton's steps, each doubling the correct digits, converge in a
     * handful. */
    memcpy(&bits, &x, sizeof(bits));
    bits = (bits >> 1) + (UINT64_C(0x3ff) << 51);
    memcpy(&r, &bits, sizeof(r));
    r = (r + x / r) / 2; /* from here on r >= the root (AM-GM) */
    for (int i = 0; i < 64 && r - x / r > 1e-12 * r; i++) {
        r = (r + x / r) / 2;
    }
    return r;
}

/* The last minute and its baseline, from a rule's ring (out[i][1]:
 * refusals of minute i, the last one the minute just begun). */
static void
rl2_anomaly_measure(uint64_t out[RL2_METRICS_MINUTES][2], rl2_anomaly_t *a)
{
    double sum = 0, sq = 0;

    for (unsigned i = 0; i < RL2_ANOMALY_BASE; i++) {
        sum += (double)out[i][1];
    }
    a->mean = sum / RL2_ANOMALY_BASE;
    for (unsigned i = 0; i < RL2_ANOMALY_BASE; i++) {
        double dv = (double)out[i][1] - a->mean;

        sq += dv * dv;
    }
    a->var = sq / RL2_ANOMALY_BASE;
    a->denied = out[RL2_METRICS_MINUTES - 2][1];
}

/* d > mean + 4 sd, as (d - mean)^2 > 16 var above the mean. */
static int
rl2_anomaly_is(const rl2_anomaly_t *a, uint32_t min)
{
    double over = (double)a->denied - a->mean;

    return a->denied >= min && (double)a->denied > 2 * a->mean && over > 0
           && over * over > 16 * a->var;
}

/* How far above the mean, in variances (a flat history: in squared
 * refusals): the order of deviations, to choose the rule a line names. */
static double
rl2_anomaly_excess(const rl2_anomaly_t *a)
{
    double over = (double)a->denied - a->mean;

    return over * over / (a->var > 1 ? a->var : 1);
}

static void
rl2_anomaly_send(rl2_metrics_t *m, const char *rule, const rl2_anomaly_t *a,
                 unsigned n_rules)
{
    char              denied[24], mean[32], sd[32], rules[16];
    rl2_alert_field_t f[6] = { { "rule", rule }, { "denied", denied },
                               { "per", "60s" }, { "mean", mean },
                               { "stddev", sd }, { "rules", rules } };
    rl2_err_t         err;

    snprintf(denied, sizeof(denied), "%" PRIu64, a->denied);
    snprintf(mean, sizeof(mean), "%.1f", a->mean);
    snprintf(sd, sizeof(sd), "%.1f", rl2_anomaly_sqrt(a->var));
    snprintf(rules, sizeof(rules), "%u", n_rules);
    rl2_alert_send(m->alert, RL2_ALERT_ANOMALY, f, 6, NULL, &err);
}

void
rl2_mx_upkeep_anomaly(rl2_metrics_t *m, int64_t wall_us)
{
    uint64_t      out[RL2_METRICS_MINUTES][2];
    char          name[RL2_NAME_MAX + 1], worst_name[RL2_NAME_MAX + 1];
    rl2_anomaly_t a, worst = { 0, 0, 0 };
    unsigned      n = 0;

    for (unsigned r = 0; r < RL2_METRICS_RULES; r++) {
        if (!rl2_metrics_minutes(m, r, wall_us / RL2_US_PER_S, out, name)) {
            continue;
        }
        rl2_anomaly_measure(out, &a);
        if (!rl2_anomaly_is(&a, m->conf.anomaly_min)) {
            continue;
        }
        if (n++ == 0 || rl2_anomaly_excess(&a) > rl2_anomaly_excess(&worst)) {
            worst = a;
            snprintf(worst_name, sizeof(worst_name), "%s", name);
        }
    }
    if (n > 0) {
        rl2_anomaly_send(m, worst_name, &worst, n);
    }
}
