/*
 * runtime.c -- what the runtime override table (overrides.h) changes in a
 * decision: bans and the emergency switch refuse before any rule, allows
 * let through, a tier override names the client's tier, rule modes and
 * boosts and the adaptive factors (the policy's `factors`: load,
 * schedule, geo, reputation) change the layers.
 *
 * With no override set, a decision pays one load (rl2_overrides_idle).
 * A factor scales a limit's counts (limit, burst, overflow), never below
 * one request's cost; the scaled copy keeps the limit's name, algorithm
 * and window, so it counts on the same key as the limit itself: a boost
 * that starts or ends neither refunds nor double-counts what was counted
 * (docs/algorithms.md, "Under a boost", says how each algorithm's state
 * reads under a new count: a window keeps its count, a bucket its debt
 * in µs, so the share of the bucket it used).  A sliding log is never scaled:
 * its state in the zone is a ring of as many timestamps as its count, which
 * another count would read wrongly.
 */
#include <stdio.h>
#include <string.h>

#include "ratelimit2/overrides.h"

#include "decide_internal.h"
#include "algo/algo_internal.h"
#include "base/base_internal.h"
#include "control/control_internal.h"

int64_t
rl2_runtime_retry_s(int64_t until_us, int64_t now_us, int64_t dflt_s)
{
    if (until_us == 0) {
        return dflt_s;
    }
    int64_t left = until_us - now_us;

    return left <= 0 ? 1 : (left + RL2_US_PER_S - 1) / RL2_US_PER_S;
}

uint32_t
rl2_runtime_bound(const rl2_factor_use_t *u, uint32_t f)
{
    return f < u->min_ppm ? u->min_ppm : f > u->max_ppm ? u->max_ppm : f;
}

/* Each adaptive factor's value for this client into the verdict, within
 * its bounds (a reload may have narrowed them under a stored factor). */
static void
rl2_runtime_factors(rl2_ctx_t *c)
{
    const rl2_policy_t *p = c->policy;
    uint32_t           *f = c->v->factor_ppm;

    /* Cleared once a request: the reputation read and the country looked
     * up in Apache's access phase stand in its fixups. */
    if (!c->v->factors_set) {
        memset(f, 0, sizeof(c->v->factor_ppm));
        c->v->factors_set = 1;
    }
    /* The load and the schedule keep their state in the table. */
    if (p->factors[RL2_FACTOR_LOAD].on && p->overrides != NULL) {
        f[RL2_FACTOR_LOAD] = rl2_overrides_load(p->overrides, &p->load, c->now);
    }
    if (p->factors[RL2_FACTOR_SCHEDULE].on && p->overrides != NULL) {
        f[RL2_FACTOR_SCHEDULE] =
            rl2_schedule_factor(p->overrides, &p->schedule, c->now);
    }
    /* The client's country is the same in every phase (the variable is
     * set before the access phase): one lookup a request. */
    if (p->factors[RL2_FACTOR_GEO].on && f[RL2_FACTOR_GEO] == 0) {
        f[RL2_FACTOR_GEO] = rl2_geo_factor(c);
    }
    for (size_t i = 0; i < RL2_FACTOR_N; i++) {
        if (f[i] != 0) {
            f[i] = rl2_runtime_bound(&p->factors[i], f[i]);
        }
    }
}

int
rl2_runtime_client(rl2_ctx_t *c)
{
    const rl2_clock_t *now = c->now;
    rl2_ovr_who_t      who;
    rl2_ovr_client_t  *o = &c->ovr;
    rl2_verdict_t     *v = c->v;

    /* An adaptive factor brings a request here with the table empty:
     * then no entry can name the client, and none is looked for. */
    c->ovr_idle = rl2_overrides_idle(c->policy->overrides);
    if (c->ovr_idle) {
        memset(o, 0, sizeof(*o));
        o->tier = -1;
    }
    else {
        rl2_ctx_who(c, &who);
        rl2_overrides_client(c->policy->overrides, c->policy, &who,
                             now->wall_us, o);
    }
    c->ovr_read = 1;
    if (c->policy->factors_on != 0) {
        rl2_runtime_factors(c);
    }
    if ((c->phase & RL2_PHASE_LATE) == 0
        && rl2_overrides_name_identities(c->policy->overrides)) {
        v->needs_late = 1;
    }
    if (o->banned) {
        v->refusal = RL2_REFUSAL_BAN;
        /* A ban without an end still says when to ask again: a day. */
        v->refusal_retry_s =
            rl2_runtime_retry_s(o->ban_until_us, now->wall_us, RL2_BAN_RETRY_S);
        return RL2_RUNTIME_REFUSE;
    }
    /* Apache's access phase does not know the user yet, and this verdict
     * goes on to fixups, which does: an allow must not let through a
     * client a ban of its user refuses, and the emergency allow-list must
     * not refuse a user it admits.  Either waits for that phase, as if
     * this one had nothing to decide; a front end that decides every
     * phase at once (ratelimit2-fcgi) never waits. */
    int user_later = !(c->phase & RL2_PHASE_LATE)
                     && rl2_overrides_name_identities(c->policy->overrides);

    if (o->allowed) {
        return user_later ? RL2_RUNTIME_LATER : RL2_RUNTIME_BYPASS;
    }
    if (o->emergency && o->emergency_ppm == 0
        && !(rl2_has_whitelist(c->policy) && rl2_whitelisted(c))) {
        if (user_later
            || (!(c->phase & RL2_PHASE_LATE) && c->policy->n_wl_users > 0)) {
            return RL2_RUNTIME_LATER;
        }
        v->refusal = RL2_REFUSAL_EMERGENCY;
        v->refusal_retry_s = rl2_runtime_retry_s(
            o->emergency_until_us, now->wall_us, RL2_EMERGENCY_RETRY_S);
        return RL2_RUNTIME_REFUSE;
    }
    return RL2_RUNTIME_DECIDE;
}

rl2_mode_t
rl2_runtime_mode(const rl2_ctx_t *c, const rl2_rule_t *rule, rl2_mode_t mode)
{
    return c->ovr_idle ? mode
                       : rl2_overrides_mode(c->policy->overrides, rule->name,
                                            mode, c->now->wall_us);
}

/* n scaled by f (ppm), at least `floor` and at most INT64_MAX / 2. */
static int64_t
rl2_runtime_scale(int64_t n, uint32_t f, int64_t floor)
{
    __int128 v = (__int128)n * f / RL2_OVR_FACTOR_ONE;

    if (v < floor) {
        return floor;
    }
    return v > INT64_MAX / 2 ? INT64_MAX / 2 : (int64_t)v;
}

static void
rl2_runtime_scale_params(rl2_algo_params_t *p, uint32_t f, int64_t cost)
{
    p->limit = rl2_runtime_scale(p->limit, f, cost);
    if (p->burst > 0) {
        p->burst = rl2_runtime_scale(p->burst, f, cost);
    }
}

/* limit's parameters scaled by f into s; 0 when a scaled count is one
 * the algorithm cannot compute (the loader checked the limit as written,
 * not 1000 times it: a sliding window's limit * window overflows, a
 * bucket drains faster than a unit per microsecond, Redis loses
 * exactness past 2^50). */
static int
rl2_runtime_scaled(rl2_limit_t *s, const rl2_limit_t *limit, uint32_t f)
{
    rl2_err_t ignored;

    s->algo = limit->algo;
    s->overflow = limit->overflow;
    rl2_runtime_scale_params(&s->algo, f, limit->cost);
    if (s->overflow.limit > 0) {
        rl2_runtime_scale_params(&s->overflow, f, limit->cost);
    }
    return rl2_algo_params_check(&s->algo, &ignored) == RL2_OK
           && (s->overflow.limit == 0
               || rl2_algo_params_check(&s->overflow, &ignored) == RL2_OK);
}

/* Is `name` one of names[0..n)? */
static int
rl2_runtime_named(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

int
rl2_runtime_scoped(const rl2_factor_use_t *u, const rl2_rule_t *rule,
                   const char *tier)
{
    return (u->n_rules == 0
            || rl2_runtime_named(u->rules, u->n_rules, rule->name))
           && (u->n_tiers == 0
               || (tier != NULL
                   && rl2_runtime_named(u->tiers, u->n_tiers, tier)));
}

/* The runtime factor f times each adaptive factor whose scope holds this
 * limit, in the order of rl2_factor_t, each product kept within that
 * factor's min..max. */
static uint32_t
rl2_runtime_adapt(const rl2_ctx_t *c, const rl2_rule_t *rule, const char *tier,
                  uint32_t f)
{
    const rl2_policy_t *p = c->policy;

    for (size_t i = 0; i < RL2_FACTOR_N; i++) {
        const rl2_factor_use_t *u = &p->factors[i];

        if (c->v->factor_ppm[i] != 0 && rl2_runtime_scoped(u, rule, tier)) {
            f = rl2_runtime_bound(u,
                                  rl2_ovr_factor_mul(f, c->v->factor_ppm[i]));
        }
    }
    return f;
}

static const rl2_limit_t *
rl2_runtime_limit(rl2_ctx_t *c, const rl2_rule_t *rule,
                  const rl2_limit_t *limit)
{
    const rl2_policy_t *p = c->policy;
    const char  *tier = c->v->tier >= 0 && (size_t)c->v->tier < p->n_tiers
                            ? p->tiers[c->v->tier].name
                            : NULL;
    uint32_t     f;
    rl2_limit_t *s;

    if (limit->unlimited || limit->algo.algo == RL2_ALGO_SLIDING_LOG
        || c->v->n_scaled == RL2_MAX_LAYERS) {
        return limit;
    }
    f = c->ovr_idle ? RL2_OVR_FACTOR_ONE
                    : rl2_overrides_factor(p->overrides, rule->name, tier,
                                           c->now->wall_us);
    if (p->factors_on != 0) {
        f = rl2_runtime_adapt(c, rule, tier, f);
    }
    if (f == RL2_OVR_FACTOR_ONE) {
        return limit;
    }
    s = &c->v->scaled[c->v->n_scaled++];
    *s = *limit;
    s->ttl_us = 0; /* worked out again from the new parameters */
    /* Too large a boost is taken as the largest that computes: halved
     * towards x1 (the limit as the loader checked it) until it does.
     * The loop goes past its first check only for a growing factor on a
     * limit near the arithmetic's edge. */
    while (!rl2_runtime_scaled(s, limit, f)) {
        if (f <= RL2_OVR_FACTOR_ONE) {
            c->v->n_scaled--; /* no factor then */
            return limit;
        }
        f = RL2_OVR_FACTOR_ONE + (f - RL2_OVR_FACTOR_ONE) / 2;
    }
    /* Its RateLimit-Policy item is rendered with the scaled count. */
    s->sf_policy = NULL;
    return s;
}

void
rl2_runtime_layers(rl2_ctx_t *c, size_t first)
{
    rl2_verdict_t *v = c->v;

    /* A limit two rules share is one layer: it takes the factor of the
     * first rule that met it. */
    for (size_t i = first; i < v->n_layers; i++) {
        v->layers[i].limit =
            rl2_runtime_limit(c, v->layers[i].rule, v->layers[i].limit);
    }
}

void
rl2_verdict_copy(rl2_verdict_t *dst, const rl2_verdict_t *src)
{
    memcpy(dst, src,
           offsetof(rl2_verdict_t, layers)
               + src->n_layers * sizeof(rl2_layer_t));
    memcpy(dst->scaled, src->scaled, src->n_scaled * sizeof(rl2_limit_t));
    if (src->factors_set) {
        memcpy(dst->factor_ppm, src->factor_ppm, sizeof(dst->factor_ppm));
    }
    if (src->refusal != RL2_REFUSAL_LIMIT) {
        dst->refusal_retry_s = src->refusal_retry_s;
    }
    if (src->banned) {
        dst->banned_for_s = src->banned_for_s;
        memcpy(dst->banned_target, src->banned_target,
               sizeof(dst->banned_target));
    }
    for (size_t i = 0; i < dst->n_layers; i++) {
        const rl2_limit_t *l = dst->layers[i].limit;

        if (l >= src->scaled && l < src->scaled + src->n_scaled) {
            dst->layers[i].limit = dst->scaled + (l - src->scaled);
        }
    }
}

/* ---- automatic bans ------------------------------------------------------ */

/* The refusing layer that counted this client itself, the shown one
 * first; NULL when only limits the client shares with others refused it
 * (global, route, or a header, whose value any client may send): those
 * refuse a client for what others did, and an attacker who spends them
 * must not get the clients that retry banned. */
const rl2_layer_t *
rl2_abuse_layer(const rl2_verdict_t *v)
{
    for (size_t i = 0; i <= v->n_layers; i++) {
        /* i == 0 looks at the shown layer, then every layer in order. */
        const rl2_layer_t *l =
            i == 0 ? &v->layers[v->shown] : &v->layers[i - 1];

        if (l->refused && rl2_layer_own(l)) {
            return l;
        }
    }
    return NULL;
}

/* Whom a refusal by layer l bans, as an override target: the identity
 * the limit counted (an address, or an IPv6 network as keys group it; a
 * user; an API key's hash), else the client's address.  0, or -1 when
 * there is no one to name. */
static int
rl2_abuse_target(const rl2_ctx_t *c, const rl2_layer_t *l, char *out,
                 size_t size)
{
    rl2_override_t o;
    rl2_err_t      err;

    switch (l->limit->key) {
    case RL2_KEY_USER:
        /* A user no target can hold (too long, control bytes) is banned
         * by the address it came from rather than not at all. */
        if (c->req->user != NULL && c->req->user[0] != '\0'
            && (size_t)snprintf(out, size, "user:%s", c->req->user) < size
            && rl2_override_target(NULL, RL2_OVR_BAN, out, &o, &err)
                   == RL2_OK) {
            return 0;
        }
        break;
    case RL2_KEY_APIKEY:
        if (c->apikey != NULL) {
            snprintf(out, size, "key#%s", c->apikey_hash);
            return 0;
        }
        break;
    default:
        break;
    }
    if (c->group_len == 0 || c->group_len >= size) {
        return -1;
    }
    memcpy(out, c->group_ip, c->group_len);
    out[c->group_len] = '\0';
    return 0;
}

/* One event of `limit` for target, counted in the store (peek: only
 * looked at), into *l; -1 when the store did not answer. */
static int
rl2_abuse_count(rl2_store_t *store, const rl2_limit_t *limit,
                const char *target, const rl2_clock_t *now, int peek,
                rl2_layer_t *l)
{
    rl2_err_t      err;
    rl2_hash_key_t seed = limit->key_seed;

    memset(l, 0, sizeof(*l));
    l->limit = limit;
    snprintf(l->client, sizeof(l->client), "%s", target);
    seed.k[15] ^= 0xff; /* never the key of a limit of the rules */
    l->key = rl2_digest_keyed(&seed, target, strlen(target));
    return (peek ? store->ops->peek : store->ops->apply)(store, l, 1, now, &err)
                   == RL2_OK
               ? 0
               : -1;
}

/* The length of a client's next ban: ban × escalate^(bans it had in the
 * last max_ban), at most max_ban. */
static int64_t
rl2_abuse_ban_us(const rl2_abuse_conf_t *a, int64_t earlier)
{
    int64_t us = a->ban_us;

    for (int64_t i = 0; i < earlier && us < a->max_ban_us; i++) {
        if (__builtin_mul_overflow(us, a->escalate, &us)) {
            return a->max_ban_us;
        }
    }
    return us < a->max_ban_us ? us : a->max_ban_us;
}

void
rl2_runtime_abuse(rl2_ctx_t *c, rl2_store_t *store, const rl2_clock_t *now)
{
    const rl2_abuse_conf_t *a = &c->policy->abuse;
    rl2_verdict_t          *v = c->v;
    const rl2_layer_t      *l = rl2_abuse_layer(v);
    rl2_override_t          o;
    rl2_err_t               err;
    rl2_layer_t             d, b;
    int                     crossed, made = 0;
    int64_t                 n = 0;

    if (l == NULL
        || rl2_abuse_target(c, l, v->banned_target, sizeof(v->banned_target))
               != 0
        || rl2_abuse_count(store, a->denied, v->banned_target, now, 0, &d) != 0
        || (!d.refused && d.result.remaining > 0)) {
        return;
    }
    /* The refusals' counter holds denials + 1 (config_abuse.c): the
     * refusal that fills it crosses the threshold, once a window whatever
     * process or server counts it, and is the offence, counted with the
     * earlier ones to set the ban's length.  A refusal after it in the
     * same window (a request in flight meanwhile, the client on another
     * server, or the ban lifted) bans for that same offence: counting it
     * again made a burst of parallel requests escalate a first ban. */
    crossed = !d.refused;
    if (rl2_abuse_count(store, a->offences, v->banned_target, now, !crossed, &b)
        == 0) {
        /* A peek reports what would be left after one more. */
        n = b.result.limit - b.result.remaining - (crossed ? 0 : 1);
    }
    memset(&o, 0, sizeof(o));
    if (rl2_override_target(c->policy, RL2_OVR_BAN, v->banned_target, &o, &err)
        != RL2_OK) {
        return;
    }
    o.created_us = now->wall_us;
    o.expires_us = now->wall_us + rl2_abuse_ban_us(a, n > 1 ? n - 1 : 0);
    snprintf(o.author, sizeof(o.author), "%s", RL2_OVR_AUTO_AUTHOR);
    snprintf(o.reason, sizeof(o.reason),
             "more than %lld refusals in %llds (rule %s, limit %s)",
             (long long)a->denials, (long long)(a->window_us / RL2_US_PER_S),
             l->rule->name, l->limit->name);
    if (rl2_overrides_ban_auto(c->policy->overrides, &o, now, &made, &err)
            == RL2_OK
        && made) {
        v->banned_for_s = (o.expires_us - now->wall_us) / RL2_US_PER_S;
        v->banned = 1;
    }
}
