/*
 * usage.c -- ratelimit2ctl usage: what every rule x tier cell of the
 * metrics object of the zone -z ("<zone>.metrics") did over the last --since
 * (default 24h), interval by interval (--step minute or hour), and the
 * clients that use the most; written by usage_out.c or usage_html.c.
 *
 * The object is opened read-only through the core's reader (obs/usage.h):
 * nothing is created or changed, and a server that never ran with metrics
 * on leaves nothing to read, which is said as such.  No policy is read:
 * the names are the servers', as they counted them.  The period's figures
 * are folded from the series the servers' upkeep writes; a cell's totals
 * since the object was made come along for comparison.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "usage.h"

#define RL2_DAY_S 86400

/* The period and step from --since and --step: minutes up to a day by
 * default, hours beyond (the minute series holds a day, the hour series
 * 31 days). */
static int
rl2_ctl_usage_period(const rl2_ctl_opts_t *o, rl2_ctl_usage_t *u)
{
    int64_t max_s;

    u->since_s = o->since_us != 0 ? o->since_us / RL2_US_PER_S : RL2_DAY_S;
    if (o->usage_step_s != 0) {
        u->step = (rl2_usage_step_t)o->usage_step_s;
    }
    else {
        u->step = u->since_s <= RL2_DAY_S ? RL2_USAGE_STEP_MINUTE
                                          : RL2_USAGE_STEP_HOUR;
    }
    max_s = u->step == RL2_USAGE_STEP_MINUTE
                ? (int64_t)RL2_USAGE_MINUTES * RL2_USAGE_STEP_MINUTE
                : (int64_t)RL2_USAGE_HOURS * RL2_USAGE_STEP_HOUR;
    if (u->since_s > max_s) {
        const int by_minute = u->step == RL2_USAGE_STEP_MINUTE;

        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "--since: at most %s with --step %s (the servers "
                            "keep %d points)",
                            by_minute ? "24h" : "31d",
                            by_minute ? "minute" : "hour",
                            by_minute ? RL2_USAGE_MINUTES : RL2_USAGE_HOURS);
    }
    /* The intervals that meet the period, the current one included. */
    u->n_points = (size_t)((u->since_s + u->step - 1) / u->step);
    return RL2_CTL_OK;
}

/* Open the metrics object of the zone -z. */
/* The fleet's series, as the servers pushed them to Redis (-R): every
 * host's minutes added up, its distinct clients the union of theirs; no
 * top clients (each host keeps its own). */
static int
rl2_ctl_usage_open_redis(const rl2_ctl_opts_t *o, rl2_ctl_usage_t *u,
                         rl2_usage_t **view)
{
    const rl2_redis_conf_t *rc = &o->backend.redis;
    rl2_err_t               err;

    /* a label for the heading: a name past 100 bytes is cut */
    if (rc->n_seeds > 0) {
        snprintf(u->metrics, sizeof(u->metrics), "Redis Cluster (%.100s)",
                 rc->seeds[0]);
    }
    else if (rc->n_sentinels > 0) {
        snprintf(u->metrics, sizeof(u->metrics), "Redis master %.100s",
                 rc->master_name);
    }
    else if (rc->unix_path[0] != '\0') {
        snprintf(u->metrics, sizeof(u->metrics), "Redis %.100s", rc->unix_path);
    }
    else {
        snprintf(u->metrics, sizeof(u->metrics), "Redis %.100s:%d", rc->host,
                 rc->port);
    }
    if (rl2_usage_open_redis(rc, u->now_s, view, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "usage from %s: %s", u->metrics,
                            err.msg);
    }
    return RL2_CTL_OK;
}

static int
rl2_ctl_usage_open(const rl2_ctl_opts_t *o, rl2_ctl_usage_t *u,
                   rl2_usage_t **view)
{
    rl2_err_t    err;
    rl2_status_t st;

    if (o->backend.redis_enabled) {
        return rl2_ctl_usage_open_redis(o, u, view);
    }
    /* Room for the longest zone name: the servers' own name, never cut. */
    snprintf(u->metrics, sizeof(u->metrics), "%s.metrics",
             o->backend.zone_name);
    st = rl2_usage_open(u->metrics, view, &err);
    if (st == RL2_ERR_NOT_FOUND) {
        return rl2_ctl_fail(RL2_CTL_FAIL,
                            "%s: no such metrics object: the server of zone "
                            "%s must have run with metrics on "
                            "(RateLimit2Metrics On, the default; "
                            "ratelimit2-fcgi counts always); -z names the "
                            "zone (RateLimit2Zone, ratelimit2-fcgi -z)",
                            u->metrics, o->backend.zone_name);
    }
    if (st != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s: %s", u->metrics, err.msg);
    }
    return RL2_CTL_OK;
}

/* The cells (of --rule alone, if given) and their series. */
static int
rl2_ctl_usage_rows(const rl2_usage_t *view, rl2_ctl_usage_t *u)
{
    rl2_usage_cell_t *cells = calloc(RL2_USAGE_CELLS, sizeof(*cells));
    size_t            n_cells;

    u->rows = calloc(RL2_USAGE_CELLS, sizeof(*u->rows));
    if (cells == NULL || u->rows == NULL) {
        free(cells);
        return rl2_ctl_fail(RL2_CTL_FAIL, "out of memory");
    }
    n_cells = rl2_usage_cells(view, cells, RL2_USAGE_CELLS);
    for (size_t i = 0; i < n_cells; i++) {
        rl2_ctl_usage_row_t *row = &u->rows[u->n_rows];
        int64_t              first_s = 0;
        size_t               got;

        if (u->rule != NULL && strcmp(cells[i].rule, u->rule) != 0) {
            continue;
        }
        row->cell = cells[i];
        row->points = calloc(u->n_points, sizeof(*row->points));
        if (row->points == NULL) {
            free(cells);
            return rl2_ctl_fail(RL2_CTL_FAIL, "out of memory");
        }
        u->n_rows++;
        got = rl2_usage_series(view, i, u->step, u->now_s, row->points,
                               u->n_points, &first_s);
        /* Every cell's series ends at the same interval: one start for
         * all; a cell the servers have not yet given a series reads as
         * zeros. */
        if (got == u->n_points) {
            u->first_start_s = first_s;
        }
        else {
            memset(row->points, 0, u->n_points * sizeof(*row->points));
        }
        rl2_ctl_usage_fold(row, u->n_points);
    }
    free(cells);
    if (u->first_start_s == 0) {
        /* No series read: the period as the core would place it. */
        u->first_start_s = u->now_s - u->now_s % u->step
                           - (int64_t)(u->n_points - 1) * u->step;
    }
    return RL2_CTL_OK;
}

/* The top clients (of --rule alone, if given). */
static int
rl2_ctl_usage_top(const rl2_usage_t *view, rl2_ctl_usage_t *u)
{
    size_t n;

    u->top = calloc(RL2_USAGE_TOP, sizeof(*u->top));
    if (u->top == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "out of memory");
    }
    n = rl2_usage_top(view, u->top, RL2_USAGE_TOP);
    for (size_t i = 0; i < n; i++) {
        if (u->rule == NULL || strcmp(u->top[i].rule, u->rule) == 0) {
            u->top[u->n_top++] = u->top[i];
        }
    }
    return RL2_CTL_OK;
}

static void
rl2_ctl_usage_free(rl2_ctl_usage_t *u)
{
    for (size_t i = 0; i < u->n_rows; i++) {
        free(u->rows[i].points);
    }
    free(u->rows);
    free(u->top);
}

static int
rl2_ctl_usage_write(const rl2_ctl_opts_t *o, const rl2_ctl_usage_t *u)
{
    FILE *f = stdout;

    if (o->output != NULL && (f = fopen(o->output, "w")) == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s: cannot write", o->output);
    }
    switch (o->format) {
    case RL2_CTL_JSON:
        rl2_ctl_usage_json(f, u);
        break;
    case RL2_CTL_CSV:
        rl2_ctl_usage_csv(f, u);
        break;
    case RL2_CTL_HTML:
        rl2_ctl_usage_html(f, u, o->top);
        break;
    default:
        rl2_ctl_usage_text(f, u, o->top);
        break;
    }
    if (f != stdout ? fclose(f) != 0 : fflush(f) != 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s: write failed",
                            o->output != NULL ? o->output : "stdout");
    }
    return RL2_CTL_OK;
}

int
rl2_ctl_usage(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_ctl_usage_t u;
    rl2_usage_t    *view = NULL;
    int             rc;

    (void)argv;
    if (argc != 0) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "usage: usage [--since D] [--step minute|hour] "
                            "[--rule R] [--json | --csv | --html] [-o FILE]");
    }
    memset(&u, 0, sizeof(u));
    u.rule = o->usage_rule;
    u.now_s = (int64_t)time(NULL);
    if ((rc = rl2_ctl_usage_period(o, &u)) != RL2_CTL_OK
        || (rc = rl2_ctl_usage_open(o, &u, &view)) != RL2_CTL_OK) {
        return rc;
    }
    if ((rc = rl2_ctl_usage_rows(view, &u)) == RL2_CTL_OK
        && (rc = rl2_ctl_usage_top(view, &u)) == RL2_CTL_OK) {
        rc = rl2_ctl_usage_write(o, &u);
    }
    rl2_usage_close(view);
    rl2_ctl_usage_free(&u);
    return rc;
}
