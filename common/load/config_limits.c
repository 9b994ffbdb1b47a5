/*
 * config_limits.c -- limit groups and limit sets, for the policy loader
 * (config.c).
 *
 * Owns one limit group { rate = ...; } with its algorithm, burst, cost,
 * key and overflow allowance, and a limit set: a list of such groups, or
 * "unlimited".  Rules, a rule's tiers and client overrides all hold
 * limit sets; rl2_cfg_set_t says whose set it is, which names and key
 * its limits default to, and whether the set depends on identity.
 */
#include <libconfig.h>
#include <stdio.h>
#include <string.h>

#include "load_internal.h"
#include "policy/policy_internal.h"

static const char *const rl2_limit_keys[] = { "name",     "rate",  "algorithm",
                                              "burst",    "cost",  "key",
                                              "overflow", "limit", "lease",
                                              NULL };

/* rate, or limit for concurrency; a quota's rate names its period. */
static rl2_status_t
rl2_cfg_limit_rate(const rl2_cfg_t *cfg, const config_setting_t *g,
                   rl2_algo_params_t *a)
{
    const config_setting_t *rs = rl2_cfg_at(g, "rate");
    const char             *rate;
    rl2_err_t               e;
    rl2_status_t            st;

    if (a->algo == RL2_ALGO_CONCURRENCY) {
        if (rs != NULL) {
            return rl2_cfg_fail(cfg, rs, RL2_ERR_CONFIG,
                                "a concurrency "
                                "limit takes 'limit' (requests in flight), "
                                "not 'rate'");
        }
        if (rl2_cfg_at(g, "limit") == NULL) {
            return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                                "a concurrency limit "
                                "needs 'limit' (requests in flight)");
        }
        return rl2_cfg_int(cfg, g, "limit", &a->limit);
    }
    if (rl2_cfg_at(g, "limit") != NULL) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "limit"), RL2_ERR_CONFIG,
                            "'limit' is only for algorithm concurrency; "
                            "use 'rate' (e.g. \"100/hour\")");
    }
    RL2_TRY(rl2_cfg_string(cfg, g, "rate", &rate));
    if (rate == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "limit without 'rate' "
                            "(e.g. rate = \"100/hour\")");
    }
    st = rl2_rate_parse(rate, &a->limit, &a->window_us, &a->period, &e);
    if (st != RL2_OK) {
        return rl2_cfg_fail(cfg, rs, st, "%s", e.msg);
    }
    if (a->algo == RL2_ALGO_QUOTA && a->period == RL2_PERIOD_NONE) {
        return rl2_cfg_fail(cfg, rs, RL2_ERR_CONFIG,
                            "algorithm quota needs "
                            "a rate per day or per month (e.g. \"20/day\", "
                            "\"1000/month\"), not \"%s\"",
                            rate);
    }
    if (a->algo != RL2_ALGO_QUOTA && a->period == RL2_PERIOD_MONTH) {
        return rl2_cfg_fail(cfg, rs, RL2_ERR_CONFIG,
                            "a rate per month "
                            "needs algorithm = \"quota\"");
    }
    if (a->algo != RL2_ALGO_QUOTA) {
        a->period = RL2_PERIOD_NONE; /* "/day" is a plain 24h window */
    }
    return RL2_OK;
}

/* burst, cost, key, lease and overflow. */
static rl2_status_t
rl2_cfg_limit_opts(const rl2_cfg_t *cfg, const config_setting_t *g,
                   rl2_limit_t *lim)
{
    const config_setting_t *bs = rl2_cfg_at(g, "burst");
    const config_setting_t *os = rl2_cfg_at(g, "overflow");
    rl2_algo_t              algo = lim->algo.algo;
    rl2_cfg_key_t           key = { lim->key, lim->key_header };
    const char             *text;
    rl2_period_t            period;
    rl2_err_t               e;
    rl2_status_t            st;

    if (bs != NULL && algo != RL2_ALGO_TOKEN_BUCKET
        && algo != RL2_ALGO_LEAKY_BUCKET) {
        return rl2_cfg_fail(cfg, bs, RL2_ERR_CONFIG,
                            "'burst' is only for "
                            "token_bucket and leaky_bucket; with %s add a "
                            "second, shorter limit",
                            rl2_algo_name(algo));
    }
    RL2_TRY(rl2_cfg_int(cfg, g, "burst", &lim->algo.burst));
    if (bs != NULL && lim->algo.burst < 1) {
        return rl2_cfg_fail(cfg, bs, RL2_ERR_CONFIG,
                            "'burst' must be at "
                            "least 1 (leave it out for a burst equal to the "
                            "limit)");
    }
    RL2_TRY(rl2_cfg_int(cfg, g, "cost", &lim->cost));
    if (lim->cost < 1) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "cost"), RL2_ERR_CONFIG,
                            "'cost' must be at least 1");
    }
    RL2_TRY(rl2_cfg_key(cfg, g, &key));
    lim->key = key.kind;
    lim->key_header = key.header;
    if (rl2_cfg_at(g, "lease") != NULL) {
        int on = 0;

        RL2_TRY(rl2_cfg_bool(cfg, g, "lease", &on));
        lim->lease = on ? RL2_LEASE_ON : RL2_LEASE_OFF;
    }
    RL2_TRY(rl2_cfg_string(cfg, g, "overflow", &text));
    if (text == NULL) {
        return RL2_OK;
    }
    if (algo == RL2_ALGO_CONCURRENCY) {
        return rl2_cfg_fail(cfg, os, RL2_ERR_CONFIG,
                            "'overflow' is not "
                            "allowed with concurrency");
    }
    st = rl2_rate_parse(text, &lim->overflow.limit, &lim->overflow.window_us,
                        &period, &e);
    if (st != RL2_OK) {
        return rl2_cfg_fail(cfg, os, st, "'overflow': %s", e.msg);
    }
    if (period == RL2_PERIOD_MONTH) {
        return rl2_cfg_fail(cfg, os, RL2_ERR_CONFIG,
                            "'overflow' needs a "
                            "window in time units (e.g. \"2/5min\"), not "
                            "a month");
    }
    return RL2_OK; /* rl2_limit_finish() picks its algorithm */
}

/* One limit group; idx is its place in the set, for its default name. */
static rl2_status_t
rl2_cfg_limit(rl2_cfg_t *cfg, const config_setting_t *g,
              const rl2_cfg_set_t *sc, size_t idx, rl2_limit_t *lim)
{
    const char  *name;
    char         buf[RL2_NAME_MAX + 24];
    rl2_err_t    e;
    rl2_status_t st;

    RL2_TRY(rl2_cfg_keys(cfg, g, "limit", rl2_limit_keys));
    RL2_TRY(rl2_cfg_string(cfg, g, "name", &name));
    if (name != NULL) {
        RL2_TRY(rl2_cfg_name(cfg, rl2_cfg_at(g, "name"), "limit", name));
    }
    else if (idx > 0) {
        snprintf(buf, sizeof(buf), "%s.%zu", sc->rule, idx + 1);
        name = buf;
    }
    else {
        name = sc->rule;
    }
    lim->name = rl2_policy_strdup(cfg->policy, name);
    lim->file = rl2_cfg_source(cfg, g);
    if (lim->name == NULL || lim->file == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    lim->line = (int)config_setting_source_line(g);
    lim->algo.algo = cfg->algo;
    lim->key = sc->key.kind;
    lim->key_header = sc->key.header;
    lim->cost = 1;
    RL2_TRY(rl2_cfg_algo(cfg, g, &lim->algo.algo));
    RL2_TRY(rl2_cfg_limit_rate(cfg, g, &lim->algo));
    RL2_TRY(rl2_cfg_limit_opts(cfg, g, lim));
    st = rl2_limit_finish(cfg->policy, lim, sc->in_tier, &e);
    if (st != RL2_OK) {
        return rl2_cfg_fail(cfg, g, st, "%s", e.msg);
    }
    return RL2_OK;
}

/* "unlimited": counted, never denied. */
static rl2_status_t
rl2_cfg_unlimited(rl2_cfg_t *cfg, const config_setting_t *s,
                  const rl2_cfg_set_t *sc, rl2_limit_set_t *set)
{
    rl2_err_t    e;
    rl2_status_t st;

    st = rl2_limit_set_unlimited(cfg->policy, set, sc->rule, sc->key.kind, &e);
    if (st != RL2_OK) {
        return rl2_cfg_fail(cfg, s, st, "%s", e.msg);
    }
    /* rl2_limit_set_unlimited knows neither the header of a header key
     * nor where the set was written. */
    set->limits[0].key_header = sc->key.header;
    set->limits[0].line = (int)config_setting_source_line(s);
    set->limits[0].file = rl2_cfg_source(cfg, s);
    return set->limits[0].file ? RL2_OK : rl2_cfg_nomem(cfg);
}

/* A limit set: a list of limit groups, or "unlimited". */
rl2_status_t
rl2_cfg_set(rl2_cfg_t *cfg, const config_setting_t *s, const rl2_cfg_set_t *sc,
            rl2_limit_set_t *set)
{
    const char *key = config_setting_name(s);
    unsigned    n;

    if (config_setting_type(s) == CONFIG_TYPE_STRING
        && strcmp(config_setting_get_string(s), "unlimited") == 0) {
        return rl2_cfg_unlimited(cfg, s, sc, set);
    }
    if (config_setting_type(s) == CONFIG_TYPE_STRING
        || config_setting_type(s) == CONFIG_TYPE_GROUP) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'%s' must be a list "
                            "of limits ( { rate = ...; }, ... ) or "
                            "\"unlimited\"",
                            key);
    }
    RL2_TRY(rl2_cfg_list(cfg, s, key, &n));
    if (n > RL2_MAX_LAYERS) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "too many limits in "
                            "'%s' (%u); at most %d",
                            key, n, RL2_MAX_LAYERS);
    }
    set->defined = 1;
    if (n == 0) {
        return RL2_OK;
    }
    set->limits = rl2_policy_alloc(cfg->policy, n * sizeof(rl2_limit_t));
    if (set->limits == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(s, i);

        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                                "each limit in '%s' "
                                "must be a group { rate = ...; }",
                                key);
        }
        RL2_TRY(rl2_cfg_limit(cfg, g, sc, i, &set->limits[i]));
        /* Names tell layers apart in headers and storage keys. */
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(set->limits[j].name, set->limits[i].name) == 0) {
                return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                                    "duplicate "
                                    "limit name '%s' in '%s'",
                                    set->limits[i].name, key);
            }
        }
        set->n = i + 1;
    }
    return RL2_OK;
}
