/*
 * explain.c -- one request's decision traced for people (explain.h): the
 * steps of rl2_decide taken one by one, with what each found kept, and
 * the store peeked instead of counted.
 *
 * The steps are decide.c's own (rule selection, layers, runtime scaling),
 * so the trace cannot drift from the decision.  Only the factors' shared
 * state is read differently: rl2_decide's readers may take a load
 * reading or publish a schedule change (a syslog line, a gauge), which an
 * operator's question must not do; here the load is the servers' last
 * reading (or, before any, what the file reads now and a first reading
 * would take) and the schedule is worked out from the clock alone.
 */
#include <stddef.h>
#include <string.h>

#include "ratelimit2/explain.h"

#include "decide_internal.h"
#include "policy/policy_internal.h"
#include "control/control_internal.h"

const char *const rl2_tier_from_names[RL2_TIER_FROM_N] = {
    "none", "override", "client", "redis", "variable", "header", "default"
};

/* The first of rule's path globs (n_paths) or host globs that matches,
 * each tried as a rule of that one glob, so that it is matched exactly as
 * rl2_rule_match matches the rule (a script's PATH_INFO included). */
static const char *
rl2_explain_glob(const rl2_rule_t *rule, const char *path, const char *host,
                 int hosts)
{
    rl2_rule_t one = *rule;
    size_t     n = hosts ? rule->n_hosts : rule->n_paths;

    one.methods = 0;
    for (size_t i = 0; i < n; i++) {
        one.n_paths = hosts ? 0 : 1;
        one.paths = hosts ? NULL : &rule->paths[i];
        one.n_hosts = hosts ? 1 : 0;
        one.hosts = hosts ? &rule->hosts[i] : NULL;
        if (rl2_rule_match(&one, 0, path, host)) {
            return hosts ? rule->hosts[i] : rule->paths[i];
        }
    }
    return NULL;
}

/* The rules that apply, with the glob that matched each and its mode. */
static rl2_status_t
rl2_explain_rules(rl2_ctx_t *c, rl2_explain_t *x, rl2_err_t *err)
{
    rl2_applied_t applied[RL2_MAX_RULES];
    int           n = rl2_decide_select_rules(c, NULL, 0, applied);

    if (n < 0) {
        return rl2_err_set(err, RL2_ERR_BOUND, "more than %d rules apply",
                           RL2_MAX_RULES);
    }
    for (int i = 0; i < n; i++) {
        const rl2_rule_t   *r = applied[i].rule;
        rl2_explain_rule_t *e = &x->rules[x->n_rules++];
        rl2_mode_t          mode =
            r->mode == RL2_MODE_INHERIT ? c->policy->mode : r->mode;

        e->rule = r;
        e->mode = mode;
        if (c->ovr_read) {
            e->mode = rl2_runtime_mode(c, r, mode);
            e->runtime = e->mode != mode;
        }
        if (r->n_paths > 0 && x->path[0] != '\0') {
            e->path = rl2_explain_glob(r, x->path, c->req->host, 0);
        }
        if (r->n_hosts > 0) {
            e->host = rl2_explain_glob(r, x->path, c->req->host, 1);
        }
        x->exempt |= r->exempt;
    }
    return RL2_OK;
}

/* The load factor without taking a reading: the servers' last one, else
 * what the file reads now, in the step a first reading enters. */
static uint32_t
rl2_explain_load(const rl2_policy_t *p, rl2_explain_t *x)
{
    uint32_t ppm;

    if (rl2_overrides_load_factor(p->overrides, &ppm)) {
        x->load_read = 1;
        rl2_overrides_load_state(p->overrides, &x->load_milli, &x->load_step);
        return ppm;
    }
    x->load_milli = rl2_load_read(p->load.source, p->load.per_cpu);
    if (x->load_milli < 0) {
        return RL2_OVR_FACTOR_ONE; /* as the servers: x1 until it reads */
    }
    x->load_step = rl2_load_step_pick(&p->load, -1, x->load_milli);
    return x->load_step >= 0 ? p->load.steps[x->load_step].factor_ppm
                             : RL2_OVR_FACTOR_ONE;
}

/* Each adaptive factor's value, within its bounds, as runtime.c sets
 * v->factor_ppm: a factor this version computes no value for stays 0
 * (off). */
/* The geo factor as rl2_geo_factor works it out, the country a request
 * names (ratelimit2ctl --country) first. */
static uint32_t
rl2_explain_geo(rl2_ctx_t *c, rl2_explain_t *x)
{
    const rl2_geo_conf_t *g = &c->policy->geo;
    const char           *given = c->req->country_var;
    int                   i = -1;

    if (given != NULL) {
        i = rl2_geo_index(given, strlen(given));
        x->country_given = i >= 0;
    }
    if (i < 0) {
        i = rl2_geo_country(c);
    }
    if (i < 0) {
        return g->default_ppm;
    }
    x->country[0] = (char)('A' + i / 26);
    x->country[1] = (char)('A' + i % 26);
    x->country[2] = '\0';
    return g->factor_ppm[i] != 0 ? g->factor_ppm[i] : g->default_ppm;
}

/* The reputation factor from the client's history, peeked. */
static uint32_t
rl2_explain_reputation(rl2_ctx_t *c, rl2_store_t *store, rl2_explain_t *x)
{
    const rl2_reputation_conf_t *rc = &c->policy->reputation;
    int64_t                     *n = x->rep_counts;

    x->rep_read = rl2_reputation_peek(c, store, c->now, n) == 0;
    return x->rep_read ? rl2_reputation_of(rc, n[0], n[1], n[2]) : rc->high_ppm;
}

static void
rl2_explain_factors(rl2_ctx_t *c, rl2_store_t *store, rl2_explain_t *x)
{
    const rl2_policy_t *p = c->policy;
    uint32_t           *f = x->v.factor_ppm;

    x->v.factors_set = 1; /* cleared with x */
    if (p->factors[RL2_FACTOR_GEO].on) {
        f[RL2_FACTOR_GEO] = rl2_explain_geo(c, x);
    }
    if (p->factors[RL2_FACTOR_REPUTATION].on) {
        f[RL2_FACTOR_REPUTATION] = rl2_explain_reputation(c, store, x);
    }
    if (p->factors[RL2_FACTOR_LOAD].on && p->load.source != NULL
        && p->overrides != NULL) {
        f[RL2_FACTOR_LOAD] = rl2_explain_load(p, x);
    }
    if (p->factors[RL2_FACTOR_SCHEDULE].on && p->schedule.zone != NULL
        && p->overrides != NULL) {
        int64_t s = c->now->wall_us / RL2_US_PER_S;

        x->sched_window = rl2_schedule_window(&p->schedule, s);
        f[RL2_FACTOR_SCHEDULE] = rl2_schedule_at(&p->schedule, s);
    }
    for (size_t i = 0; i < RL2_FACTOR_N; i++) {
        if (f[i] != 0) {
            f[i] = rl2_runtime_bound(&p->factors[i], f[i]);
        }
    }
}

/* The runtime override table's answer for the client (no sync: the
 * caller brought a fleet's table up to date), as rl2_runtime_client
 * reads it. */
static void
rl2_explain_table(rl2_ctx_t *c, rl2_explain_t *x)
{
    rl2_ovr_who_t who;

    rl2_ctx_who(c, &who);
    rl2_overrides_client(c->policy->overrides, c->policy, &who, c->now->wall_us,
                         &c->ovr);
    c->ovr_read = 1;
    c->ovr_idle = 0;
    x->table = 1;
    x->banned = c->ovr.banned;
    x->ban_until_us = c->ovr.ban_until_us;
    x->allowed = c->ovr.allowed;
    x->tier_override = c->ovr.tier;
    x->emergency = c->ovr.emergency;
    x->emergency_ppm = c->ovr.emergency_ppm;
    x->emergency_until_us = c->ovr.emergency_until_us;
}

/* What scales each layer, noted before runtime.c replaces its limit by
 * the scaled copy. */
static void
rl2_explain_layers(const rl2_ctx_t *c, rl2_explain_t *x)
{
    const rl2_policy_t *p = c->policy;
    const char         *tier = x->v.tier >= 0 ? p->tiers[x->v.tier].name : NULL;

    for (size_t i = 0; i < x->v.n_layers; i++) {
        const rl2_layer_t   *l = &x->v.layers[i];
        rl2_explain_layer_t *e = &x->layers[i];

        e->limit = l->limit;
        e->boost_ppm = RL2_OVR_FACTOR_ONE;
        if (!c->ovr_read) {
            continue;
        }
        if (!c->ovr_idle) {
            e->boost_ppm = rl2_overrides_factor(p->overrides, l->rule->name,
                                                tier, c->now->wall_us);
        }
        for (size_t f = 0; f < RL2_FACTOR_N; f++) {
            if (x->v.factor_ppm[f] != 0
                && rl2_runtime_scoped(&p->factors[f], l->rule, tier)) {
                e->factors |= 1u << f;
            }
        }
    }
}

/* The outcome: a runtime refusal or allow first (rl2_decide asks the
 * table before the rules), then the whitelist and exempt rules, then
 * the layers as peeked. */
static void
rl2_explain_outcome(const rl2_ctx_t *c, rl2_explain_t *x)
{
    rl2_verdict_t *v = &x->v;
    int64_t        now_us = c->now->wall_us;

    v->outcome = v->n_layers > 0 ? RL2_OUTCOME_ALLOW : RL2_OUTCOME_NONE;
    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i];

        if (l->refused && !l->dry_run && !l->limit->unlimited) {
            v->outcome = RL2_OUTCOME_DENY;
        }
        v->dry_run_denied |= l->refused && l->dry_run;
    }
    v->shown = rl2_decide_pick_shown(v);
    if (x->whitelisted || x->exempt) {
        v->outcome = RL2_OUTCOME_BYPASS;
    }
    if (x->banned) {
        v->outcome = RL2_OUTCOME_DENY;
        v->refusal = RL2_REFUSAL_BAN;
        v->refusal_retry_s =
            rl2_runtime_retry_s(x->ban_until_us, now_us, RL2_BAN_RETRY_S);
    }
    else if (x->allowed) {
        v->outcome = RL2_OUTCOME_BYPASS;
    }
    else if (x->emergency && x->emergency_ppm == 0 && !x->whitelisted) {
        v->outcome = RL2_OUTCOME_DENY;
        v->refusal = RL2_REFUSAL_EMERGENCY;
        v->refusal_retry_s = rl2_runtime_retry_s(x->emergency_until_us, now_us,
                                                 RL2_EMERGENCY_RETRY_S);
    }
}

static rl2_status_t
rl2_explain_run(rl2_ctx_t *c, rl2_store_t *store, rl2_explain_t *x,
                rl2_err_t *err)
{
    const rl2_policy_t *p = c->policy;
    const rl2_client_t *client;
    int                 bypass, tier;
    rl2_status_t        st;

    if (p->overrides != NULL) {
        rl2_explain_table(c, x);
    }
    if (p->factors_on != 0) {
        /* runtime.c applies the factors with the table's answer; the geo
         * factor needs no table. */
        if (p->overrides == NULL) {
            c->ovr_read = 1;
            c->ovr_idle = 1;
            memset(&c->ovr, 0, sizeof(c->ovr));
            c->ovr.tier = -1;
        }
        rl2_explain_factors(c, store, x);
    }
    x->whitelisted = rl2_has_whitelist(p) && rl2_whitelisted(c);
    if ((st = rl2_explain_rules(c, x, err)) != RL2_OK) {
        return st;
    }
    client = p->n_clients > 0 ? rl2_client_find(c) : NULL;
    x->client = client != NULL ? (int)(client - p->clients) : -1;
    if ((st = rl2_decide_build_layers(c, NULL, 0, &bypass, err)) != RL2_OK) {
        return st;
    }
    /* Asked again for its source (an exempt rule stops the layers
     * before the tier): without a tier source, a lookup of memory. */
    tier = rl2_resolve_tier_from(c, client, &x->tier_from);
    x->v.tier = tier >= 0 ? tier : x->v.tier;
    if (c->path_ambiguous) {
        return rl2_err_set(err, RL2_ERR_REQUEST,
                           "a dot segment of the path carries a ;parameter");
    }
    if (bypass) {
        x->v.n_layers = 0;
    }
    rl2_explain_layers(c, x);
    if (c->ovr_read && x->v.n_layers > 0) {
        rl2_runtime_layers(c, 0);
    }
    if (x->v.n_layers > 0
        && (st = store->ops->peek(store, x->v.layers, x->v.n_layers, c->now,
                                  err))
               != RL2_OK) {
        return st;
    }
    rl2_explain_outcome(c, x);
    return RL2_OK;
}

/* What both explanations start with: the verdict, the path as matched
 * (empty when it does not normalise: no rule then matches by path), and
 * the request's context; on failure the context is already released. */
static rl2_status_t
rl2_explain_begin(rl2_ctx_t *c, const rl2_policy_t *policy,
                  const rl2_request_t *req, rl2_explain_t *x, rl2_err_t *err)
{
    rl2_verdict_init(&x->v);
    if (rl2_path_normalise(req->path != NULL ? req->path : "/", x->path,
                           sizeof(x->path), !req->path_decoded)
        != 0) {
        x->path[0] = '\0';
    }
    if (rl2_ctx_init(c, policy, req, RL2_PHASE_ALL, &x->v) != 0) {
        rl2_ctx_fini(c);
        return rl2_err_set(err, RL2_ERR_REQUEST,
                           "the request names two different API keys");
    }
    return RL2_OK;
}

rl2_status_t
rl2_decide_explain(const rl2_policy_t *policy, rl2_store_t *store,
                   const rl2_request_t *req, const rl2_clock_t *now,
                   rl2_explain_t *x, rl2_err_t *err)
{
    rl2_ctx_t    c;
    rl2_status_t st;

    /* Whole: not on a request's path, and every field is reported. */
    memset(x, 0, sizeof(*x));
    x->client = -1;
    x->tier_override = -1;
    x->load_milli = -1;
    x->load_step = -1;
    x->sched_window = -1;
    if ((st = rl2_explain_begin(&c, policy, req, x, err)) != RL2_OK) {
        return st;
    }
    c.now = now;
    c.rep_keyed = 0;
    x->v.phases = RL2_PHASE_ALL;
    st = rl2_explain_run(&c, store, x, err);
    rl2_ctx_fini(&c);
    return st;
}

rl2_status_t
rl2_decide_explain_rules(const rl2_policy_t *policy, const rl2_request_t *req,
                         rl2_explain_t *x, rl2_err_t *err)
{
    rl2_ctx_t    c;
    rl2_status_t st;

    /* Not the whole of x: kilobytes, for each line of a log. */
    x->n_rules = 0;
    x->exempt = 0;
    if ((st = rl2_explain_begin(&c, policy, req, x, err)) != RL2_OK) {
        return st;
    }
    st = rl2_explain_rules(&c, x, err);
    if (st == RL2_OK && c.path_ambiguous) {
        st = rl2_err_set(err, RL2_ERR_REQUEST,
                         "a dot segment of the path carries a ;parameter");
    }
    rl2_ctx_fini(&c);
    return st;
}
