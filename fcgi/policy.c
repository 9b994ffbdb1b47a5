/*
 * policy.c -- loading a policy for the FastCGI authorizer and the CGI
 * wrapper.
 *
 * Both decide a request before it runs and never learn when it ends, so
 * a concurrency limit (a slot taken at the start and given back at the
 * end) cannot work there: its slots would never be released.  Such a
 * policy is refused, naming the limit's file:line, so the operator sees
 * it at start or on reload rather than as clients locked out an hour
 * later.
 */
#include <stddef.h>

#include "ratelimit2/config.h"

#include "fcgi.h"

static const rl2_limit_t *
rl2_set_concurrency(const rl2_limit_set_t *set)
{
    for (size_t i = 0; set != NULL && i < set->n; i++) {
        if (set->limits[i].algo.algo == RL2_ALGO_CONCURRENCY) {
            return &set->limits[i];
        }
    }
    return NULL;
}

static const rl2_limit_t *
rl2_rule_concurrency(const rl2_policy_t *policy, const rl2_rule_t *rule)
{
    const rl2_limit_t *l = rl2_set_concurrency(&rule->limits);

    for (size_t t = 0; l == NULL && rule->tiers != NULL && t < policy->n_tiers;
         t++) {
        l = rl2_set_concurrency(&rule->tiers[t]);
    }
    return l;
}

const rl2_limit_t *
rl2_cgi_concurrency(const rl2_policy_t *policy)
{
    const rl2_limit_t *l = NULL;

    for (size_t i = 0; l == NULL && i < policy->n_rules; i++) {
        l = rl2_rule_concurrency(policy, &policy->rules[i]);
    }
    if (l == NULL && policy->default_rule != NULL) {
        l = rl2_rule_concurrency(policy, policy->default_rule);
    }
    for (size_t c = 0; l == NULL && c < policy->n_clients; c++) {
        for (size_t r = 0; l == NULL && r < policy->clients[c].n_rules; r++) {
            l = rl2_set_concurrency(&policy->clients[c].rules[r].set);
        }
    }
    return l;
}

int
rl2_cgi_policy_load(const char *path, rl2_policy_t **out, rl2_err_t *err)
{
    const rl2_limit_t *l;

    if (rl2_config_load(path, out, err) != RL2_OK) {
        *out = NULL;
        return -1;
    }
    l = rl2_cgi_concurrency(*out);
    if (l != NULL) {
        rl2_err_set(err, RL2_ERR_CONFIG,
                    "%s:%d: limit '%s' is a "
                    "concurrency limit, which needs to see each request "
                    "end: only mod_ratelimit2 in Apache can enforce it",
                    l->file != NULL ? l->file : path, l->line, l->name);
    }
    else if ((*out)->load.scoreboard) {
        rl2_err_set(err, RL2_ERR_CONFIG,
                    "%s:%d: factors.load: source \"scoreboard\" is "
                    "Apache's share of busy workers, which ratelimit2-fcgi "
                    "has not: give a load file (\"/proc/loadavg\")",
                    path, (*out)->load.line);
    }
    else if ((*out)->has_concurrency) {
        /* Flagged by the loader where the walk above does not look. */
        rl2_err_set(err, RL2_ERR_CONFIG,
                    "%s: the policy has a concurrency "
                    "limit, which only mod_ratelimit2 in Apache can "
                    "enforce",
                    path);
    }
    else {
        return 0;
    }
    rl2_policy_free(*out);
    *out = NULL;
    return -1;
}
