/*
 * config_abuse.c -- the policy's `abuse` group: automatic bans.
 *
 *   abuse = {
 *       denials  = "20/1min"; # refused more than 20 times in a minute
 *       ban      = "10min";   # is banned for 10 minutes,
 *       escalate = 2;         # twice as long for each ban it had
 *       max_ban  = "24h";     # in the last 24 hours, at most 24 hours
 *   };
 *
 * The two counters behind it are built here as limits of their own, so
 * that the stores count them like any other: "abuse" (fixed window of
 * `denials` + 1, keyed per client) and "abuse_bans" (the bans of the last
 * max_ban).  Every value is checked with file:line.
 */
#include <string.h>

#include "load_internal.h"
#include "policy/policy_internal.h"

static const char *const rl2_abuse_keys[] = { "denials", "ban", "escalate",
                                              "max_ban", NULL };

static rl2_status_t
rl2_cfg_duration(rl2_cfg_t *cfg, const config_setting_t *g, const char *key,
                 int64_t *out)
{
    const char *text = NULL;
    rl2_err_t   err;

    RL2_TRY(rl2_cfg_string(cfg, g, key, &text));
    if (text != NULL && rl2_duration_parse(text, out, &err) != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, key), RL2_ERR_CONFIG,
                            "abuse: '%s': %s", key, err.msg);
    }
    return RL2_OK;
}

rl2_status_t
rl2_cfg_counter(rl2_cfg_t *cfg, const config_setting_t *g, const char *group,
                const char *name, int64_t n, int64_t window_us,
                rl2_limit_t **out)
{
    rl2_limit_t *l = rl2_policy_alloc(cfg->policy, sizeof(*l));
    rl2_err_t    err;

    if (l == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    l->name = name;
    l->file = rl2_cfg_source(cfg, g);
    l->line = config_setting_source_line(g);
    l->algo.algo = RL2_ALGO_FIXED_WINDOW;
    l->algo.limit = n;
    l->algo.window_us = window_us;
    l->key = RL2_KEY_IP;
    l->cost = 1;
    if (rl2_limit_finish(cfg->policy, l, 0, &err) != RL2_OK) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "%s: %s", group, err.msg);
    }
    *out = l;
    return RL2_OK;
}

rl2_status_t
rl2_cfg_abuse(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_abuse_conf_t       *a = &cfg->policy->abuse;
    const config_setting_t *g;
    const char             *rate = NULL;
    rl2_period_t            period;
    rl2_err_t               err;

    RL2_TRY(rl2_cfg_group(cfg, root, "abuse", rl2_abuse_keys, &g));
    if (g == NULL) {
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_string(cfg, g, "denials", &rate));
    if (rate == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "abuse: 'denials' is required (\"20/1min\": "
                            "banned after more than 20 refusals a minute)");
    }
    if (rl2_rate_parse(rate, &a->denials, &a->window_us, &period, &err)
            != RL2_OK
        || period != RL2_PERIOD_NONE) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "denials"), RL2_ERR_CONFIG,
                            "abuse: 'denials': %s",
                            period != RL2_PERIOD_NONE
                                ? "a calendar window is not allowed here"
                                : err.msg);
    }
    a->ban_us = 10 * 60 * RL2_US_PER_S;
    a->escalate = 2;
    RL2_TRY(rl2_cfg_duration(cfg, g, "ban", &a->ban_us));
    a->max_ban_us =
        a->ban_us > 86400 * RL2_US_PER_S ? a->ban_us : 86400 * RL2_US_PER_S;
    RL2_TRY(rl2_cfg_duration(cfg, g, "max_ban", &a->max_ban_us));
    RL2_TRY(rl2_cfg_int(cfg, g, "escalate", &a->escalate));
    if (a->escalate < 1 || a->escalate > 100) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "escalate"), RL2_ERR_CONFIG,
                            "abuse: 'escalate' must be from 1 to 100");
    }
    if (a->max_ban_us < a->ban_us) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "max_ban"), RL2_ERR_CONFIG,
                            "abuse: 'max_ban' is shorter than 'ban'");
    }
    /* denials + 1: the refusal that fills it is the one past the
     * threshold, which no other refusal of the window can also be
     * (runtime.c). */
    RL2_TRY(rl2_cfg_counter(cfg, g, "abuse", "abuse", a->denials + 1,
                            a->window_us, &a->denied));
    /* Bans counted over max_ban: no client is banned more often than
     * once a second, so this count never refuses. */
    return rl2_cfg_counter(cfg, g, "abuse", "abuse_bans",
                           a->max_ban_us / RL2_US_PER_S + 1, a->max_ban_us,
                           &a->offences);
}
