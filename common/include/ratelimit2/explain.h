/*
 * explain.h -- one request's decision, traced for people (ratelimit2ctl
 * explain): the rules that apply and what matched them, where the tier
 * came from, the runtime overrides and adaptive factors that touch the
 * client, and per limit the count as written and as scaled, read from
 * the store with its peek.
 *
 * Read only: nothing is counted, no key is created, and the shared state
 * of the factors (the host's load reading, the schedule's last factor)
 * is read, never moved, so no syslog line and no metric changes because
 * an operator asked.
 */
#ifndef RL2_EXPLAIN_H
#define RL2_EXPLAIN_H

#include <stdint.h>

#include "ratelimit2/decide.h"

/* Where the client's tier came from, in the order rl2_decide tries them
 * (docs/tiers.md). */
typedef enum {
    RL2_TIER_FROM_NONE = 0, /* the policy has no tiers */
    RL2_TIER_FROM_OVERRIDE, /* a runtime override (ratelimit2ctl tier) */
    RL2_TIER_FROM_CLIENT,   /* the policy's `clients` entry */
    RL2_TIER_FROM_REDIS,    /* tier_from.redis, the billing system */
    RL2_TIER_FROM_VARIABLE, /* tier_from.variable */
    RL2_TIER_FROM_HEADER,   /* tier_from.header, from a trusted upstream */
    RL2_TIER_FROM_DEFAULT,  /* default_tier: none of the above named one */
    RL2_TIER_FROM_N
} rl2_tier_from_t;

/* "none", "override", "client", "redis", "variable", "header",
 * "default". */
extern const char *const rl2_tier_from_names[RL2_TIER_FROM_N];

/* The most rules a request is selected under (decide_internal.h's
 * RL2_MAX_RULES). */
#define RL2_EXPLAIN_RULES_MAX (2 * RL2_MAX_LAYERS)
#define RL2_EXPLAIN_PATH_MAX  2048

/* A rule that applies, and why. */
typedef struct {
    const rl2_rule_t *rule;
    rl2_mode_t        mode;    /* as it applies (never INHERIT) */
    int               runtime; /* mode set by a runtime override */
    const char       *path;    /* the first path glob that matched; NULL:
                                  the rule names no path */
    const char *host;          /* ... host glob; NULL: any host */
} rl2_explain_rule_t;

/* A layer of the verdict as written and what scaled it. */
typedef struct {
    const rl2_limit_t *limit;     /* as written in the policy */
    uint32_t           boost_ppm; /* boosts and the emergency factor for
                                     its rule and the client's tier */
    unsigned factors;             /* bit i: adaptive factor i scales it
                                     (on, and its scope holds it) */
} rl2_explain_layer_t;

typedef struct {
    /* The decision as rl2_decide would take it, every phase, peeked:
     * v.layers[i].limit is the effective limit (a scaled copy where a
     * factor applies), v.factor_ppm each factor's value, v.outcome,
     * v.refusal and v.shown as rl2_retry_after_s() reads them. */
    rl2_verdict_t v;
    char          path[RL2_EXPLAIN_PATH_MAX]; /* normalised; "" when it
                                                  did not fit */
    size_t             n_rules;
    rl2_explain_rule_t rules[RL2_EXPLAIN_RULES_MAX];
    int                exempt;      /* an exempt rule applies */
    int                whitelisted; /* the policy's whitelist */
    rl2_tier_from_t    tier_from;
    int                client; /* index in policy->clients, or -1 */
    /* The runtime override table (policy->overrides), when attached: */
    int      table;
    int      banned;
    int64_t  ban_until_us; /* wall clock; 0: no end */
    int      allowed;
    int      tier_override; /* tier index, or -1 */
    int      emergency;
    uint32_t emergency_ppm; /* 0: allow-list only */
    int64_t  emergency_until_us;
    /* The load factor: the servers' last reading (load_read), else what
     * the load file reads now and the first reading would take. */
    int     load_read;
    int64_t load_milli;   /* -1: the file does not read */
    int     load_step;    /* index in policy->load.steps, or -1 */
    int     sched_window; /* index in policy->schedule.windows, or -1 */
    /* The geo factor: the country (two letters; "" unknown), and whether
     * the request named it (req->country_var: ratelimit2ctl --country)
     * rather than the policy's sources. */
    char country[3];
    int  country_given;
    /* The reputation factor: the client's requests, refusals and
     * automatic bans in the window, peeked (rep_read 0: no history
     * read, for want of an address or a store's answer). */
    int                 rep_read;
    int64_t             rep_counts[3];
    rl2_explain_layer_t layers[RL2_MAX_LAYERS];
} rl2_explain_t;

/* Decide every phase of req against the policy's rules and its override
 * table (policy->overrides, may be NULL) as rl2_decide would, without
 * counting, into *x (kilobytes: not for the stack of a server thread).
 * On a store error or a request rl2_decide refuses as malformed, returns
 * non-OK with err set. */
rl2_status_t rl2_decide_explain(const rl2_policy_t *policy, rl2_store_t *store,
                                const rl2_request_t *req,
                                const rl2_clock_t *now, rl2_explain_t *x,
                                rl2_err_t *err);

/* Only the rules of req, as rl2_decide selects them: x->path (the
 * normalised path every front end matches), x->rules, x->n_rules and
 * x->exempt; the rest of x is left as it was, no override, factor or
 * store is read, and no tier is resolved (a rule's limits per tier do
 * not change which rules apply).  For tools that ask it of many requests
 * (ratelimit2ctl coverage over an access log).  A request rl2_decide
 * refuses as malformed returns RL2_ERR_REQUEST with err set. */
rl2_status_t rl2_decide_explain_rules(const rl2_policy_t  *policy,
                                      const rl2_request_t *req,
                                      rl2_explain_t *x, rl2_err_t *err);

#endif /* RL2_EXPLAIN_H */
