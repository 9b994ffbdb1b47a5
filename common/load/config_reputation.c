/*
 * config_reputation.c -- the group `reputation` of the policy's
 * `factors`: a client's limits scaled by its own recent history.
 *
 *   factors = {
 *       reputation = {
 *           window       = "10m"; # the history: a fixed window
 *           min_requests = 10;    # fewer requests: no evidence, x high
 *           low          = 0.5;   # every request refused (or banned)
 *           high         = 1;     # no request refused
 *           good         = 1.2;   # min_requests and no refusal
 *           min          = 0.1;   # every limit's factor stays within
 *           max          = 10;    # min..max
 *       };
 *   };
 *
 * The three counters behind it are built here as limits of their own
 * (fixed windows keyed per client), so that the stores count them like
 * any other: "reputation_requests", "reputation_refusals" and
 * "reputation_bans" (decide/reputation.c).  Off without the group.
 * Every value is checked with file:line.
 */
#include <string.h>

#include "load_internal.h"
#include "policy/policy_internal.h"
#include "ratelimit2/overrides.h"

static const char *const rl2_reputation_keys[] = {
    "window", "min_requests", "low",   "high",  "good",
    "min",    "max",          "rules", "tiers", NULL
};

/* A counter's limit: high enough never to refuse, low enough for Redis
 * to count exactly (2^50). */
#define RL2_REP_COUNT_MAX (1LL << 40)

/* The history is at least a second and at most a day long. */
#define RL2_REP_WINDOW_MAX_US (86400 * RL2_US_PER_S)

/* Factor `key` of g into *out (left as it is when absent), within the
 * group's min..max. */
static rl2_status_t
rl2_cfg_reputation_factor(rl2_cfg_t *cfg, const config_setting_t *g,
                          const char *key, uint32_t *out)
{
    const config_setting_t *s = rl2_cfg_at(g, key);
    char                    what[48];

    if (s == NULL) {
        s = g;
    }
    else {
        RL2_TRY(rl2_cfg_factor_in(cfg, s, "reputation", key, out));
    }
    snprintf(what, sizeof(what), "'%s' (%g)", key,
             (double)*out / RL2_OVR_FACTOR_ONE);
    return rl2_cfg_factor_bounded(cfg, s, RL2_FACTOR_REPUTATION, what, *out);
}

static rl2_status_t
rl2_cfg_reputation_window(rl2_cfg_t *cfg, const config_setting_t *g,
                          int64_t *out)
{
    const char *text = NULL;
    rl2_err_t   err;

    *out = 10 * 60 * RL2_US_PER_S;
    RL2_TRY(rl2_cfg_string(cfg, g, "window", &text));
    if (text == NULL) {
        return RL2_OK;
    }
    if (rl2_duration_parse(text, out, &err) != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "window"), RL2_ERR_CONFIG,
                            "factors.reputation: 'window': %s", err.msg);
    }
    if (*out < RL2_US_PER_S || *out > RL2_REP_WINDOW_MAX_US
        || *out % RL2_US_PER_S != 0) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "window"), RL2_ERR_CONFIG,
                            "factors.reputation: 'window' must be whole "
                            "seconds from 1s to 24h");
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_reputation_group(rl2_cfg_t *cfg, const config_setting_t *g)
{
    rl2_reputation_conf_t *rc = &cfg->policy->reputation;
    rl2_factor_use_t      *u = &cfg->policy->factors[RL2_FACTOR_REPUTATION];

    RL2_TRY(rl2_cfg_factor_use(cfg, g, RL2_FACTOR_REPUTATION, u));
    RL2_TRY(rl2_cfg_reputation_window(cfg, g, &rc->window_us));
    rc->min_requests = 10;
    RL2_TRY(rl2_cfg_int(cfg, g, "min_requests", &rc->min_requests));
    if (rc->min_requests < 1 || rc->min_requests > 1000000) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "min_requests"), RL2_ERR_CONFIG,
                            "factors.reputation: 'min_requests' must be "
                            "from 1 to 1000000");
    }
    rc->low_ppm = RL2_OVR_FACTOR_ONE / 2;
    rc->high_ppm = RL2_OVR_FACTOR_ONE;
    rc->good_ppm = RL2_OVR_FACTOR_ONE / 5 * 6;
    RL2_TRY(rl2_cfg_reputation_factor(cfg, g, "low", &rc->low_ppm));
    RL2_TRY(rl2_cfg_reputation_factor(cfg, g, "high", &rc->high_ppm));
    RL2_TRY(rl2_cfg_reputation_factor(cfg, g, "good", &rc->good_ppm));
    if (rc->low_ppm > rc->high_ppm) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "low"), RL2_ERR_CONFIG,
                            "factors.reputation: 'low' is more than "
                            "'high'");
    }
    /* The path that applies factors starts from the table's answer. */
    if (cfg->policy->overrides_disabled) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "factors.reputation: needs the runtime "
                            "override table (overrides.enabled = false)");
    }
    RL2_TRY(rl2_cfg_counter(cfg, g, "factors.reputation", "reputation_requests",
                            RL2_REP_COUNT_MAX, rc->window_us, &rc->requests));
    RL2_TRY(rl2_cfg_counter(cfg, g, "factors.reputation", "reputation_refusals",
                            RL2_REP_COUNT_MAX, rc->window_us, &rc->refusals));
    RL2_TRY(rl2_cfg_counter(cfg, g, "factors.reputation", "reputation_bans",
                            RL2_REP_COUNT_MAX, rc->window_us, &rc->bans));
    rl2_cfg_factor_on(cfg, RL2_FACTOR_REPUTATION);
    return RL2_OK;
}

rl2_status_t
rl2_cfg_reputation(rl2_cfg_t *cfg, const config_setting_t *factors)
{
    const config_setting_t *g;

    RL2_TRY(rl2_cfg_group(cfg, factors, "reputation", rl2_reputation_keys, &g));
    return g != NULL ? rl2_cfg_reputation_group(cfg, g) : RL2_OK;
}
