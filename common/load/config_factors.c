/*
 * config_factors.c -- the policy's `factors` group: factors the host
 * works out by itself and applies to every limit, as a boost would
 * (decide/runtime.c).  One so far, the load:
 *
 *   factors = {
 *       load = {
 *           source  = "/proc/loadavg"; # its first field is the load
 *           per_cpu = true;            # divided by the online CPUs
 *           steps   = ( { above = 0.8; factor = 0.7; },
 *                       { below = 0.3; factor = 1.3; } );
 *           margin  = 0.1;   # a step is left only this far past it
 *           hold    = "30s"; # at most one change per hold
 *           min     = 0.1;   # every limit's factor stays within
 *           max     = 10;    # min..max
 *       };
 *   };
 *
 * (factors.geo: config_geo.c.)  Off without the group.  The factor's state
 * lives in the runtime override table's shared memory (control/factor_load.c),
 * so the group needs the table.  Every value is checked with file:line.
 */
#include <math.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "load_internal.h"
#include "policy/policy_internal.h"
#include "ratelimit2/overrides.h"
#include "control/control_internal.h"

/* Where named zones' TZif files are. */
#define RL2_ZONEINFO_DIR "/usr/share/zoneinfo"

static const char *const rl2_factors_keys[] = { "load", "schedule", "geo",
                                                "reputation", NULL };
static const char *const rl2_sched_keys[] = { "zone",  "windows", "min", "max",
                                              "rules", "tiers",   NULL };
static const char *const rl2_sched_window_keys[] = { "when", "factor", NULL };
static const char *const rl2_load_keys[] = { "source", "per_cpu", "steps",
                                             "margin", "hold",    "min",
                                             "max",    "rules",   "tiers",
                                             NULL };
static const char *const rl2_load_step_keys[] = { "above", "below", "factor",
                                                  NULL };

/* Loads past this are taken for a misread file, not a machine. */
#define RL2_LOAD_MAX_MILLI 1000000000LL

/* s, an integer or a float, as a number. */
static rl2_status_t
rl2_cfg_number(const rl2_cfg_t *cfg, const config_setting_t *s,
               const char *group, const char *what, double *out)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_FLOAT:
        *out = config_setting_get_float(s);
        break;
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        *out = (double)config_setting_get_int64(s);
        break;
    default:
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.%s: '%s' must be a number", group, what);
    }
    if (!isfinite(*out)) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.%s: '%s' must be a finite number", group,
                            what);
    }
    return RL2_OK;
}

rl2_status_t
rl2_cfg_factor_in(const rl2_cfg_t *cfg, const config_setting_t *s,
                  const char *group, const char *what, uint32_t *out)
{
    double f = 0;

    RL2_TRY(rl2_cfg_number(cfg, s, group, what, &f));
    if (f * RL2_OVR_FACTOR_ONE < RL2_OVR_FACTOR_MIN - 0.5
        || f * RL2_OVR_FACTOR_ONE > RL2_OVR_FACTOR_MAX + 0.5) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.%s: '%s' must be from 0.001 to 1000",
                            group, what);
    }
    *out = (uint32_t)(f * RL2_OVR_FACTOR_ONE + 0.5);
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_factor(const rl2_cfg_t *cfg, const config_setting_t *s,
               const char *what, uint32_t *out)
{
    return rl2_cfg_factor_in(cfg, s, "load", what, out);
}

/* A load (0 .. 10^6) in thousandths. */
static rl2_status_t
rl2_cfg_load_value(const rl2_cfg_t *cfg, const config_setting_t *s,
                   const char *what, int64_t *out)
{
    double v = 0;

    RL2_TRY(rl2_cfg_number(cfg, s, "load", what, &v));
    if (v < 0 || v * 1000 > RL2_LOAD_MAX_MILLI) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.load: '%s' must be from 0 to 1000000",
                            what);
    }
    *out = (int64_t)(v * 1000 + 0.5);
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_load_step(rl2_cfg_t *cfg, const config_setting_t *s,
                  rl2_load_step_t *step)
{
    const config_setting_t *above, *below, *factor;

    if (!config_setting_is_group(s)) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.load: a step must be a group "
                            "{ above = 0.8; factor = 0.7; }");
    }
    RL2_TRY(rl2_cfg_keys(cfg, s, "a factors.load step", rl2_load_step_keys));
    above = rl2_cfg_at(s, "above");
    below = rl2_cfg_at(s, "below");
    factor = rl2_cfg_at(s, "factor");
    if ((above == NULL) == (below == NULL) || factor == NULL) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.load: a step needs 'factor' and one "
                            "of 'above' and 'below'");
    }
    step->above = above != NULL;
    RL2_TRY(rl2_cfg_load_value(cfg, above != NULL ? above : below,
                               above != NULL ? "above" : "below",
                               &step->threshold_milli));
    return rl2_cfg_factor(cfg, factor, "factor", &step->factor_ppm);
}

/* Every `below` under every `above`, so that a load is in at most one
 * direction, and each step's factor within min..max. */
static rl2_status_t
rl2_cfg_load_steps_check(rl2_cfg_t *cfg, const config_setting_t *list,
                         const rl2_load_conf_t *lc)
{
    for (size_t i = 0; i < lc->n_steps; i++) {
        const rl2_load_step_t  *a = &lc->steps[i];
        const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);

        RL2_TRY(rl2_cfg_factor_bounded(cfg, s, RL2_FACTOR_LOAD,
                                       "a step's factor", a->factor_ppm));
        for (size_t j = 0; j < lc->n_steps; j++) {
            const rl2_load_step_t *b = &lc->steps[j];

            if (a->above && !b->above
                && b->threshold_milli >= a->threshold_milli) {
                return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                                    "factors.load: every 'below' must be "
                                    "less than every 'above'");
            }
            if (j != i && a->above == b->above
                && a->threshold_milli == b->threshold_milli) {
                return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                                    "factors.load: two steps share a "
                                    "threshold");
            }
        }
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_load_steps(rl2_cfg_t *cfg, const config_setting_t *g,
                   rl2_load_conf_t *lc)
{
    const config_setting_t *list = rl2_cfg_at(g, "steps");
    unsigned                n = 0;

    if (list != NULL) {
        RL2_TRY(rl2_cfg_list(cfg, list, "steps", &n));
    }
    if (list == NULL || n == 0 || n > RL2_LOAD_STEPS_MAX) {
        return rl2_cfg_fail(cfg, list != NULL ? list : g, RL2_ERR_CONFIG,
                            "factors.load: 'steps' must list 1 to %d "
                            "steps",
                            RL2_LOAD_STEPS_MAX);
    }
    for (unsigned i = 0; i < n; i++) {
        RL2_TRY(rl2_cfg_load_step(cfg, config_setting_get_elem(list, i),
                                  &lc->steps[i]));
    }
    lc->n_steps = n;
    return RL2_OK;
}

/* Each name of list `key` of g, one of the policy's rules (tiers when
 * tiers), so that a misspelt name is an error rather than a factor that
 * never applies. */
static rl2_status_t
rl2_cfg_factor_names(rl2_cfg_t *cfg, const config_setting_t *g,
                     const char *group, const char *key, int tiers,
                     const char *const **out, size_t *n)
{
    const rl2_policy_t *p = cfg->policy;
    const char        **names = NULL;

    RL2_TRY(rl2_cfg_strings(cfg, g, key, NULL, 0, &names, n));
    for (size_t i = 0; i < *n; i++) {
        size_t j = 0, count = tiers ? p->n_tiers : p->n_rules;

        while (j < count
               && strcmp(names[i], tiers ? p->tiers[j].name : p->rules[j].name)
                      != 0) {
            j++;
        }
        if (j == count) {
            return rl2_cfg_fail(cfg, rl2_cfg_item(rl2_cfg_at(g, key), i),
                                RL2_ERR_CONFIG,
                                "factors.%s: '%s' names no %s of the policy",
                                group, names[i], tiers ? "tier" : "rule");
        }
    }
    *out = names;
    return RL2_OK;
}

rl2_status_t
rl2_cfg_factor_use(rl2_cfg_t *cfg, const config_setting_t *g,
                   rl2_factor_t which, rl2_factor_use_t *u)
{
    const char             *group = rl2_factor_names[which];
    const config_setting_t *min = rl2_cfg_at(g, "min");
    const config_setting_t *max = rl2_cfg_at(g, "max");

    u->min_ppm = RL2_OVR_FACTOR_MIN;
    u->max_ppm = RL2_OVR_FACTOR_MAX;
    if (min != NULL) {
        RL2_TRY(rl2_cfg_factor_in(cfg, min, group, "min", &u->min_ppm));
    }
    if (max != NULL) {
        RL2_TRY(rl2_cfg_factor_in(cfg, max, group, "max", &u->max_ppm));
    }
    if (u->min_ppm > u->max_ppm) {
        return rl2_cfg_fail(cfg, min, RL2_ERR_CONFIG,
                            "factors.%s: 'min' is more than 'max'", group);
    }
    RL2_TRY(rl2_cfg_factor_names(cfg, g, group, "rules", 0, &u->rules,
                                 &u->n_rules));
    return rl2_cfg_factor_names(cfg, g, group, "tiers", 1, &u->tiers,
                                &u->n_tiers);
}

rl2_status_t
rl2_cfg_factor_bounded(rl2_cfg_t *cfg, const config_setting_t *s,
                       rl2_factor_t which, const char *what, uint32_t f)
{
    const rl2_factor_use_t *u = &cfg->policy->factors[which];

    if (f >= u->min_ppm && f <= u->max_ppm) {
        return RL2_OK;
    }
    return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                        "factors.%s: %s must be within 'min' and 'max'",
                        rl2_factor_names[which], what);
}

void
rl2_cfg_factor_on(rl2_cfg_t *cfg, rl2_factor_t which)
{
    cfg->policy->factors[which].on = 1;
    cfg->policy->factors_on |= 1u << which;
}

static rl2_status_t
rl2_cfg_load(rl2_cfg_t *cfg, const config_setting_t *g)
{
    rl2_load_conf_t        *lc = &cfg->policy->load;
    const config_setting_t *s;
    const char             *source = "/proc/loadavg", *hold = NULL;
    rl2_err_t               err;

    RL2_TRY(rl2_cfg_copy(cfg, g, "source", &source));
    if (source == NULL) {
        source = "/proc/loadavg";
    }
    else if (strcmp(source, RL2_LOAD_SCOREBOARD) == 0) {
        /* The share of Apache's workers busy: already a whole of 1. */
        if (rl2_cfg_at(g, "per_cpu") != NULL) {
            return rl2_cfg_fail(cfg, rl2_cfg_at(g, "per_cpu"), RL2_ERR_CONFIG,
                                "factors.load: 'per_cpu' is for a load "
                                "file, not the scoreboard's share of busy "
                                "workers");
        }
        lc->scoreboard = 1;
        lc->line = config_setting_source_line(g);
    }
    else if (source[0] != '/') {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "source"), RL2_ERR_CONFIG,
                            "factors.load: 'source' must be an absolute "
                            "path or \"scoreboard\"");
    }
    lc->per_cpu = !lc->scoreboard;
    RL2_TRY(rl2_cfg_bool(cfg, g, "per_cpu", &lc->per_cpu));
    RL2_TRY(rl2_cfg_factor_use(cfg, g, RL2_FACTOR_LOAD,
                               &cfg->policy->factors[RL2_FACTOR_LOAD]));
    RL2_TRY(rl2_cfg_load_steps(cfg, g, lc));
    RL2_TRY(rl2_cfg_load_steps_check(cfg, rl2_cfg_at(g, "steps"), lc));
    lc->margin_milli = 100;
    if ((s = rl2_cfg_at(g, "margin")) != NULL) {
        RL2_TRY(rl2_cfg_load_value(cfg, s, "margin", &lc->margin_milli));
    }
    lc->hold_us = 30 * RL2_US_PER_S;
    RL2_TRY(rl2_cfg_string(cfg, g, "hold", &hold));
    if (hold != NULL
        && rl2_duration_parse(hold, &lc->hold_us, &err) != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "hold"), RL2_ERR_CONFIG,
                            "factors.load: 'hold': %s", err.msg);
    }
    /* The table's state is where every process of the host meets. */
    if (cfg->policy->overrides_disabled) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "factors.load: needs the runtime override "
                            "table (overrides.enabled = false)");
    }
    lc->source = source;
    rl2_cfg_factor_on(cfg, RL2_FACTOR_LOAD);
    return RL2_OK;
}

/* ---- factors.schedule ---- */

static const char *const rl2_sched_day_names[] = { "Mon", "Tue", "Wed", "Thu",
                                                   "Fri", "Sat", "Sun" };

/* One day name at *p ("Mon" .. "Sun", any case): its number, or -1. */
static int
rl2_sched_day(const char **p)
{
    for (int d = 0; d < 7; d++) {
        if (strncasecmp(*p, rl2_sched_day_names[d], 3) == 0) {
            *p += 3;
            return d;
        }
    }
    return -1;
}

/* "*", or days and ranges joined by ',' ("Mon-Fri,Sun"; "Fri-Mon"
 * wraps): bits, 0 when malformed. */
static unsigned
rl2_sched_days(const char **p)
{
    unsigned bits = 0;

    if (**p == '*') {
        (*p)++;
        return 0x7f;
    }
    for (;;) {
        int from = rl2_sched_day(p), to = from;

        if (from < 0) {
            return 0;
        }
        if (**p == '-') {
            (*p)++;
            if ((to = rl2_sched_day(p)) < 0) {
                return 0;
            }
        }
        for (int d = from;; d = (d + 1) % 7) {
            bits |= 1u << d;
            if (d == to) {
                break;
            }
        }
        if (**p != ',') {
            return bits;
        }
        (*p)++;
    }
}

/* "HH:MM" (00:00 .. 24:00) as seconds of the day at *p, or -1. */
static int32_t
rl2_sched_clock(const char **p)
{
    const char *s = *p;
    int         h, m;

    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' || s[2] != ':'
        || s[3] < '0' || s[3] > '5' || s[4] < '0' || s[4] > '9') {
        return -1;
    }
    h = (s[0] - '0') * 10 + (s[1] - '0');
    m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 24 || (h == 24 && m != 0)) {
        return -1;
    }
    *p += 5;
    return h * 3600 + m * 60;
}

int
rl2_sched_when_parse(const char *when, rl2_sched_window_t *w)
{
    const char *p = when;

    w->days = rl2_sched_days(&p);
    w->from_s = 0;
    w->to_s = 86400;
    if (w->days == 0) {
        return 0;
    }
    if (*p == '\0') {
        return 1;
    }
    if (*p++ != ' ' || (w->from_s = rl2_sched_clock(&p)) < 0 || *p++ != '-'
        || (w->to_s = rl2_sched_clock(&p)) < 0 || *p != '\0'
        || w->from_s == w->to_s || w->from_s == 86400) {
        return 0;
    }
    /* Past midnight: the rest belongs to the day the window started. */
    if (w->to_s < w->from_s) {
        w->to_s += 86400;
    }
    return 1;
}

static rl2_status_t
rl2_cfg_sched_window(rl2_cfg_t *cfg, const config_setting_t *s,
                     rl2_sched_window_t *w)
{
    const char             *when = NULL;
    const config_setting_t *factor;

    if (!config_setting_is_group(s)) {
        return rl2_cfg_fail(
            cfg, s, RL2_ERR_CONFIG,
            "factors.schedule: a window must be a group "
            "{ when = \"Mon-Fri 09:00-18:00\"; factor = 0.8; }");
    }
    RL2_TRY(rl2_cfg_keys(cfg, s, "a factors.schedule window",
                         rl2_sched_window_keys));
    RL2_TRY(rl2_cfg_string(cfg, s, "when", &when));
    factor = rl2_cfg_at(s, "factor");
    if (when == NULL || factor == NULL) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.schedule: a window needs 'when' and "
                            "'factor'");
    }
    if (!rl2_sched_when_parse(when, w)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(s, "when"), RL2_ERR_CONFIG,
                            "factors.schedule: 'when' must be days (\"*\", "
                            "\"Mon-Fri\", \"Sat,Sun\") and an optional "
                            "\"HH:MM-HH:MM\", not '%s'",
                            when);
    }
    return rl2_cfg_factor_in(cfg, factor, "schedule", "factor", &w->factor_ppm);
}

static rl2_status_t
rl2_cfg_sched_windows(rl2_cfg_t *cfg, const config_setting_t *g,
                      rl2_schedule_conf_t *sc)
{
    const config_setting_t *list = rl2_cfg_at(g, "windows");
    unsigned                n = 0;

    if (list != NULL) {
        RL2_TRY(rl2_cfg_list(cfg, list, "windows", &n));
    }
    if (list == NULL || n == 0 || n > RL2_SCHED_WINDOWS_MAX) {
        return rl2_cfg_fail(cfg, list != NULL ? list : g, RL2_ERR_CONFIG,
                            "factors.schedule: 'windows' must list 1 to %d "
                            "windows",
                            RL2_SCHED_WINDOWS_MAX);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(list, i);

        RL2_TRY(rl2_cfg_sched_window(cfg, s, &sc->windows[i]));
        RL2_TRY(rl2_cfg_factor_bounded(cfg, s, RL2_FACTOR_SCHEDULE,
                                       "a window's factor",
                                       sc->windows[i].factor_ppm));
    }
    sc->n_windows = n;
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_schedule(rl2_cfg_t *cfg, const config_setting_t *g)
{
    rl2_schedule_conf_t *sc = &cfg->policy->schedule;
    const char          *zone = NULL;
    rl2_err_t            err;
    rl2_status_t         st;

    RL2_TRY(rl2_cfg_factor_use(cfg, g, RL2_FACTOR_SCHEDULE,
                               &cfg->policy->factors[RL2_FACTOR_SCHEDULE]));
    RL2_TRY(rl2_cfg_sched_windows(cfg, g, sc));
    RL2_TRY(rl2_cfg_copy(cfg, g, "zone", &zone));
    if (zone == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "factors.schedule: needs 'zone' (like "
                            "\"Europe/Berlin\" or \"UTC\")");
    }
    st = rl2_tz_load(cfg->policy, RL2_ZONEINFO_DIR, zone, (int64_t)time(NULL),
                     &sc->tz, &err);
    if (st != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "zone"), st,
                            "factors.schedule: 'zone': %s", err.msg);
    }
    /* The table is where the host's processes meet: the gauge, the
     * event line, and the path that applies factors. */
    if (cfg->policy->overrides_disabled) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "factors.schedule: needs the runtime override "
                            "table (overrides.enabled = false)");
    }
    sc->cache = rl2_policy_alloc(cfg->policy, sizeof(*sc->cache));
    if (sc->cache == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    sc->zone = zone;
    rl2_cfg_factor_on(cfg, RL2_FACTOR_SCHEDULE);
    return RL2_OK;
}

rl2_status_t
rl2_cfg_factors(rl2_cfg_t *cfg, const config_setting_t *root)
{
    const config_setting_t *g, *load, *sched;

    RL2_TRY(rl2_cfg_group(cfg, root, "factors", rl2_factors_keys, &g));
    if (g == NULL) {
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_group(cfg, g, "load", rl2_load_keys, &load));
    if (load != NULL) {
        RL2_TRY(rl2_cfg_load(cfg, load));
    }
    RL2_TRY(rl2_cfg_group(cfg, g, "schedule", rl2_sched_keys, &sched));
    if (sched != NULL) {
        RL2_TRY(rl2_cfg_schedule(cfg, sched));
    }
    RL2_TRY(rl2_cfg_geo(cfg, g));
    return rl2_cfg_reputation(cfg, g);
}
