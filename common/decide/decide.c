/*
 * decide.c -- from a request description to one verdict.
 *
 * Order of work for one phase: resolve the client (address behind trusted
 * proxies, whitelist, API key, tier), select the rules that apply, turn
 * each applicable limit into a layer (limit + storage key), ask the store
 * to check-then-commit all layers at once, fold the answers into the
 * verdict.  Allocation-free: everything lives in the caller's verdict and
 * on the stack.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/decide.h"

#include "base/buf.h"
#include "decide_internal.h"
#include "base/base_internal.h"
#include "policy/policy_internal.h"
#include "control/control_internal.h"

/* ---- rules and layers ---- */

/* The normalised path, computed on first use: policies whose rules all
 * match any path never pay for it. */
static const char *
rl2_ctx_path(rl2_ctx_t *c)
{
    const char *raw = c->req->path ? c->req->path : "/";
    size_t      need, cap = sizeof(c->path_buf);

    if (c->path_ready) {
        return c->path;
    }
    c->path_ready = 1;
    need = strlen(raw) + 2;
    /* A path longer than the buffer gets its own (rare: no allocation
     * on an ordinary request); truncating it instead would let a padded
     * path escape the rules written for it. */
    if (need > cap && (c->path_heap = malloc(need)) != NULL) {
        c->path = c->path_heap;
        cap = need;
    }
    switch (rl2_path_normalise(raw, c->path, cap, !c->req->path_decoded)) {
    case 0:
        break;
    case -2:
        /* Read two ways by two kinds of server: refused (rl2_decide). */
        c->path_ambiguous = 1;
        memcpy(c->path, "/", 2);
        break;
    default:
        /* Not absolute ("*", a proxy URL), or out of memory. */
        memcpy(c->path, "/", 2);
    }
    return c->path;
}

/* Add a matching rule; -1 when more apply than a request may be checked
 * against, 1 when it ends a first-match policy's selection. */
static int
rl2_select_one(const rl2_policy_t *p, size_t i, rl2_applied_t *out, int *n)
{
    if (*n == RL2_MAX_RULES) {
        return -1;
    }
    out[(*n)++] = (rl2_applied_t){ &p->rules[i], i };
    return !p->match_all && !p->rules[i].is_continue;
}

/* The policy's own rules that match, in policy order: every rule, or, in
 * a policy with a rule index, only those its path's first segment and the
 * segment-less rules name (rule_index.c).  Returns 1 when a first-match
 * rule ended the selection, -1 when too many apply. */
static inline __attribute__((always_inline)) int
rl2_select_policy_rules(rl2_ctx_t *c, rl2_applied_t *out, int *n)
{
    const rl2_policy_t   *p = c->policy;
    const char           *host = c->req->host;
    rl2_rule_candidates_t k;
    size_t                i = 0, j = 0, r;
    int                   end;

    if (p->rule_index == NULL) {
        for (r = 0; r < p->n_rules; r++) {
            if (rl2_rule_match(&p->rules[r], c->method_bit,
                               p->rules[r].n_paths ? rl2_ctx_path(c) : "/",
                               host)
                && (end = rl2_select_one(p, r, out, n)) != 0) {
                return end;
            }
        }
        return 0;
    }
    rl2_rule_index_lookup(p->rule_index, rl2_ctx_path(c), &k);
    while (i < k.n_seg || j < k.n_any) {
        r = (j == k.n_any || (i < k.n_seg && k.seg[i] < k.any[j])) ? k.seg[i++]
                                                                   : k.any[j++];
        if (rl2_rule_match(&p->rules[r], c->method_bit, rl2_ctx_path(c), host)
            && (end = rl2_select_one(p, r, out, n)) != 0) {
            return end;
        }
    }
    return 0;
}

/* Add the rules of one more reading to out[0..*n), keeping policy order
 * and each rule once; -1 when more apply than a request may be checked
 * against. */
static int
rl2_select_merge(rl2_applied_t *out, int *n, const rl2_applied_t *more,
                 int n_more)
{
    for (int j = 0; j < n_more; j++) {
        int at = 0;

        while (at < *n && out[at].index < more[j].index) {
            at++;
        }
        if (at < *n && out[at].index == more[j].index) {
            continue;
        }
        if (*n == RL2_MAX_RULES) {
            return -1;
        }
        memmove(&out[at + 1], &out[at], (size_t)(*n - at) * sizeof(*out));
        out[at] = more[j];
        (*n)++;
    }
    return 0;
}

/* The policy's rules and default for one method reading; returns how
 * many, or -1 when too many apply. */
static inline __attribute__((always_inline)) int
rl2_select_reading(rl2_ctx_t *c, rl2_applied_t *out)
{
    const rl2_policy_t *p = c->policy;
    int                 n = 0, terminal;

    if ((terminal = rl2_select_policy_rules(c, out, &n)) < 0) {
        return -1;
    }
    if (!terminal && p->default_rule != NULL && (!p->match_all || n == 0)) {
        if (n == RL2_MAX_RULES) {
            return -1;
        }
        out[n++] = (rl2_applied_t){ p->default_rule, p->n_rules };
    }
    return n;
}

/* A request that may be served as more than one method (HEAD is GET
 * too; an override) is selected once per method and meets every rule any
 * of them meets: a first-match rule for one reading must not end the
 * selection of another.  Out of line: most requests have one reading,
 * and their path stays as short as it was. */
static __attribute__((noinline)) int
rl2_select_readings(rl2_ctx_t *c, rl2_applied_t *out)
{
    unsigned      readings = c->method_bit;
    rl2_applied_t one[RL2_MAX_RULES];
    int           n = 0, n_one = 0;

    for (unsigned bit = 1; bit != 0 && bit <= readings; bit <<= 1) {
        if ((readings & bit) == 0) {
            continue;
        }
        c->method_bit = bit;
        n_one = rl2_select_reading(c, one);
        if (n_one < 0 || rl2_select_merge(out, &n, one, n_one) < 0) {
            n = -1;
            break;
        }
    }
    c->method_bit = readings;
    return n;
}

/* Select the rules that apply (docs/configuration.md, "Rules"); returns
 * how many, or -1 when more apply than a request may be checked against.
 * Inline: its one caller on the request's path is rl2_build_layers. */
static inline __attribute__((always_inline)) int
rl2_select_rules(rl2_ctx_t *c, const rl2_rule_t *extra, size_t n_extra,
                 rl2_applied_t *out)
{
    int n = (c->method_bit & (c->method_bit - 1)) == 0
                ? rl2_select_reading(c, out)
                : rl2_select_readings(c, out);

    for (size_t i = 0; n >= 0 && i < n_extra; i++) {
        if (n == RL2_MAX_RULES) {
            return -1;
        }
        out[n++] = (rl2_applied_t){ &extra[i], SIZE_MAX };
    }
    return n;
}

/* The limit set a client gets from a rule; *identity says whether it
 * depends on who the client is (override or tier: decided late). */
static const rl2_limit_set_t *
rl2_rule_set(const rl2_ctx_t *c, const rl2_applied_t *a,
             const rl2_client_t *client, int *identity)
{
    const rl2_rule_t *rule = a->rule;

    *identity = 1;
    for (size_t i = 0; client != NULL && i < client->n_rules; i++) {
        if (client->rules[i].rule == a->index) {
            return &client->rules[i].set;
        }
    }
    if (rule->tiers != NULL && c->v->tier >= 0
        && rule->tiers[c->v->tier].defined) {
        return &rule->tiers[c->v->tier];
    }
    *identity = 0;
    return &rule->limits;
}

/* The set of the variant of `rule` this client is assigned, and in
 * *variant 1 + its index; its limits' phases already say when they are
 * decided (config_variants.c). */
static const rl2_limit_set_t *
rl2_variant_set(const rl2_ctx_t *c, const rl2_rule_t *rule, uint8_t *variant)
{
    static const rl2_limit_set_t none;
    size_t                       i;

    /* Assigned by who the client is: nothing to pick before the late
     * phase, whose limits all its variants' are. */
    if (rule->variant_by != RL2_VARIANT_BY_IP
        && (c->phase & RL2_PHASE_LATE) == 0) {
        return &none;
    }
    i = rl2_variant_pick(c, rule);
    *variant = (uint8_t)(i + 1);
    return &rule->variants[i].limits;
}

/* The client part of a storage key, written in its log form ("1.2.3.4",
 * "user:HASH", "key:HASH", "hdr:HASH", "route:NAME", "global"); returns
 * the kind of identity and sets *id to where the identity starts.  Keys
 * fall back to the address when their identity is absent. */
static rl2_key_kind_t
rl2_key_value(const rl2_ctx_t *c, const rl2_rule_t *rule,
              const rl2_limit_t *limit, rl2_buf_t *b, size_t *id)
{
    const char *hv;
    char        h[17];

    switch (limit->key) {
    case RL2_KEY_USER:
        if (c->req->user != NULL && c->req->user[0] != '\0') {
            rl2_buf_mem(b, "user:", *id = 5);
            rl2_buf_mem(b, c->user_hash, 16);
            return RL2_KEY_USER;
        }
        break;
    case RL2_KEY_APIKEY:
        if (c->apikey != NULL) {
            rl2_buf_mem(b, "key:", *id = 4);
            rl2_buf_mem(b, c->apikey_hash, 16);
            return RL2_KEY_APIKEY;
        }
        break;
    case RL2_KEY_HEADER:
        hv = (limit->key_header && c->req->header)
                 ? c->req->header(c->req->header_ctx, limit->key_header)
                 : NULL;
        if (hv != NULL && hv[0] != '\0') {
            /* Long or odd values are hashed: keys stay bounded. */
            rl2_hash_id(&c->policy->hash_key, hv, h);
            rl2_buf_mem(b, "hdr:", *id = 4);
            rl2_buf_mem(b, h, 16);
            return RL2_KEY_HEADER;
        }
        break;
    case RL2_KEY_ROUTE:
        rl2_buf_mem(b, "route:", *id = 6);
        rl2_buf_str(b, rule->name);
        return RL2_KEY_ROUTE;
    case RL2_KEY_GLOBAL:
        rl2_buf_mem(b, "global", 6);
        *id = 0;
        return RL2_KEY_GLOBAL;
    case RL2_KEY_IP:
        break;
    }
    rl2_buf_mem(b, c->group_ip, c->group_len);
    *id = 0;
    return RL2_KEY_IP;
}

/* The storage key of one limit for this client: the identity digested
 * under the limit's own key (rl2_limit_t.key_seed) with the kind of
 * identity mixed into it, so that an address and an API key or user of
 * the same text never share a counter.  The log form is written straight
 * into the layer. */
static void
rl2_layer_key(const rl2_ctx_t *c, const rl2_rule_t *rule,
              const rl2_limit_t *limit, rl2_layer_t *layer)
{
    rl2_hash_key_t seed = limit->key_seed;
    rl2_key_kind_t kind;
    rl2_buf_t      b;
    size_t         id;

    rl2_buf_init(&b, layer->client, sizeof(layer->client));
    kind = rl2_key_value(c, rule, limit, &b, &id);
    seed.k[15] ^= (uint8_t)(0x80 | kind);
    layer->key = rl2_digest_keyed(&seed, layer->client + id, b.len - id);
}

/* A limit two matching rules share (same name, algorithm and window:
 * one storage key) is one budget: the request counts against it once.
 * The layer just added goes if an earlier one has its key, which then
 * enforces if either did. */
static void
rl2_layer_merge_shared(rl2_verdict_t *v)
{
    rl2_layer_t *last = &v->layers[v->n_layers - 1];

    for (size_t j = 0; j + 1 < v->n_layers; j++) {
        if (v->layers[j].key.hi == last->key.hi
            && v->layers[j].key.lo == last->key.lo) {
            v->layers[j].dry_run &= last->dry_run;
            v->n_layers--;
            return;
        }
    }
}

/* A rule with variants or a challenger (rare, out of line): the set of
 * the client's variant when no override or tier replaced the rule's,
 * else `set`; the verdict is marked as an experiment's. */
static __attribute__((noinline)) const rl2_limit_set_t *
rl2_experiment_set(rl2_ctx_t *c, const rl2_rule_t *rule,
                   const rl2_limit_set_t *set, uint8_t *variant)
{
    c->v->experiment = 1;
    if (set == &rule->limits && rule->n_variants > 0) {
        return rl2_variant_set(c, rule, variant);
    }
    return set;
}

/* Append this phase's layers of one applied rule: the set the client
 * gets, then, for a rule with a challenger, the challenger's as dry-run
 * layers marked as its own.  One loop for both, so that the common case
 * keeps its shape (a second copy of the loop would be a second call site
 * of what it inlines). */
static int
rl2_add_rule(rl2_ctx_t *c, const rl2_applied_t *a, const rl2_client_t *client,
             rl2_mode_t mode)
{
    rl2_verdict_t         *v = c->v;
    const rl2_rule_t      *rule = a->rule;
    int                    identity, dry_run = (mode == RL2_MODE_DRY_RUN);
    int                    experiment = rule->experiment;
    uint8_t                variant = 0, challenger = 0;
    const rl2_limit_set_t *set = rl2_rule_set(c, a, client, &identity);

    if (__builtin_expect(experiment, 0)) {
        set = rl2_experiment_set(c, rule, set, &variant);
    }
    for (;;) {
        for (size_t i = 0; i < set->n; i++) {
            const rl2_limit_t *limit = &set->limits[i];
            unsigned           phase = identity ? RL2_PHASE_LATE : limit->phase;

            if ((phase & c->phase) == 0) {
                continue;
            }
            if (v->n_layers == RL2_MAX_LAYERS) {
                return -1;
            }
            rl2_layer_t *layer = &v->layers[v->n_layers++];

            /* Field by field: the client text is written by
             * rl2_layer_key, so the layer is not cleared as a whole. */
            layer->limit = limit; /* a runtime factor scales it later */
            layer->rule = rule;
            layer->dry_run = dry_run;
            layer->variant = variant;
            layer->challenger = challenger;
            layer->result = (rl2_algo_result_t){ 0 };
            layer->refused = 0;
            layer->overflow_used = 0;
            layer->committed = 0;
            layer->committed_us = 0;
            rl2_layer_key(c, rule, limit, layer);
            rl2_layer_merge_shared(v);
        }
        if (__builtin_expect(!experiment, 1) || challenger
            || rule->challenger.n == 0) {
            return 0;
        }
        set = &rule->challenger;
        identity = 0;
        dry_run = 1;
        variant = 0;
        challenger = 1;
    }
}

/* ---- folding answers into the verdict ---- */

static int
rl2_layer_denies(const rl2_layer_t *l)
{
    return l->refused && !l->dry_run && !l->limit->unlimited;
}

/* The layer the headers report: the refusing layer that waits longest,
 * else the visible layer with the least room left (then the latest
 * reset). */
static int
rl2_pick_shown(const rl2_verdict_t *v)
{
    int best = -1;

    /* A lone challenger layer is undone by rl2_fold_experiment. */
    if (v->n_layers == 1) {
        return v->layers[0].limit->unlimited ? -1 : 0;
    }
    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i], *b;

        /* A challenger never changes what the client is told. */
        if (l->limit->unlimited || l->challenger) {
            continue;
        }
        if (best < 0) {
            best = (int)i;
            continue;
        }
        b = &v->layers[best];
        if (v->outcome == RL2_OUTCOME_DENY) {
            if (rl2_layer_denies(l)
                && (!rl2_layer_denies(b)
                    || l->result.retry_after_us > b->result.retry_after_us)) {
                best = (int)i;
            }
        }
        else if (l->result.remaining < b->result.remaining
                 || (l->result.remaining == b->result.remaining
                     && l->result.reset_us > b->result.reset_us)) {
            best = (int)i;
        }
    }
    return best;
}

static rl2_status_t
rl2_refund_committed(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                     const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_status_t st = store->ops->refund(store, layers, n, now, err);

    for (size_t i = 0; i < n; i++) {
        layers[i].committed = 0;
    }
    return st;
}

/* What a challenger changes in a folded verdict (rare, out of line): its
 * refusals are its own (challenger_denied), not a dry-run's, and it is
 * never the layer the headers show. */
static __attribute__((noinline)) void
rl2_fold_experiment(rl2_verdict_t *v, size_t first, int dry_before)
{
    int dry = 0;

    for (size_t i = first; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i];

        if (l->refused && l->challenger) {
            v->challenger_denied = 1;
        }
        dry |= l->refused && l->dry_run && !l->challenger;
    }
    v->dry_run_denied = dry_before | dry;
    if (v->shown >= 0 && v->layers[v->shown].challenger) {
        v->shown = -1;
    }
}

static rl2_status_t
rl2_verdict_fold(rl2_ctx_t *c, rl2_store_t *store, size_t first,
                 const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_verdict_t *v = c->v;
    int            denied = 0, dry_before = v->dry_run_denied;

    for (size_t i = first; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i];

        denied |= rl2_layer_denies(l);
        v->dry_run_denied |= (l->refused && l->dry_run);
        v->overflow_used |= l->overflow_used;
    }
    if (denied) {
        v->outcome = RL2_OUTCOME_DENY;
        /* Refused now: what an earlier phase counted is taken back. */
        if (first > 0) {
            rl2_status_t st =
                rl2_refund_committed(store, v->layers, first, now, err);
            if (st != RL2_OK) {
                return st;
            }
        }
    }
    else if (v->n_layers > 0 && v->outcome != RL2_OUTCOME_DENY) {
        v->outcome = RL2_OUTCOME_ALLOW;
    }
    v->shown = rl2_pick_shown(v);
    if (__builtin_expect(v->experiment, 0)) {
        rl2_fold_experiment(v, first, dry_before);
    }
    return RL2_OK;
}

/* Layers for every applied rule, in the current phase. */
static rl2_status_t
rl2_build_layers(rl2_ctx_t *c, const rl2_rule_t *extra, size_t n_extra,
                 int *bypass, rl2_err_t *err)
{
    rl2_applied_t       applied[RL2_MAX_RULES];
    const rl2_client_t *client =
        c->policy->n_clients > 0 ? rl2_client_find(c) : NULL;
    int n = rl2_select_rules(c, extra, n_extra, applied);

    *bypass = 0;
    /* Over a bound, the request is refused, never let through with
     * some of its limits unchecked.  A policy file never gets here (the
     * loader refuses one that could: bound.c); a front end's inline rules
     * added to one can. */
    if (n < 0) {
        return rl2_err_set(err, RL2_ERR_BOUND,
                           "more than %d rules apply "
                           "to %s",
                           RL2_MAX_RULES, rl2_ctx_path(c));
    }
    for (int i = 0; i < n; i++) {
        if (applied[i].rule->exempt) {
            *bypass = 1;
            return RL2_OK;
        }
    }
    if (c->phase & RL2_PHASE_LATE) {
        int tier = rl2_resolve_tier(c, client);

        if (tier == RL2_TIER_CONFLICT) {
            return rl2_err_set(err, RL2_ERR_REQUEST,
                               "the tier header names two different tiers");
        }
        c->v->tier = tier;
    }
    for (int i = 0; i < n; i++) {
        rl2_mode_t mode = applied[i].rule->mode == RL2_MODE_INHERIT
                              ? c->policy->mode
                              : applied[i].rule->mode;

        if (__builtin_expect(c->ovr_read, 0)) {
            mode = rl2_runtime_mode(c, applied[i].rule, mode);
        }
        if (mode == RL2_MODE_OFF) {
            continue;
        }
        if (rl2_add_rule(c, &applied[i], client, mode) != 0) {
            return rl2_err_set(err, RL2_ERR_BOUND,
                               "more than %d limits "
                               "apply to %s",
                               RL2_MAX_LAYERS, rl2_ctx_path(c));
        }
    }
    return RL2_OK;
}

rl2_status_t
rl2_decide(const rl2_policy_t *policy, const rl2_rule_t *extra, size_t n_extra,
           rl2_store_t *store, const rl2_request_t *req, unsigned phase,
           const rl2_clock_t *now, rl2_verdict_t *v, rl2_err_t *err)
{
    rl2_ctx_t    c;
    size_t       first = v->n_layers;
    int          bypass;
    rl2_status_t st;

    phase &= ~v->phases;
    if (phase == 0 || v->outcome == RL2_OUTCOME_DENY
        || v->outcome == RL2_OUTCOME_BYPASS || policy->mode == RL2_MODE_OFF) {
        return RL2_OK;
    }
    if (rl2_ctx_init(&c, policy, req, phase, v) != 0) {
        rl2_ctx_fini(&c);
        return rl2_err_set(err, RL2_ERR_REQUEST,
                           "the request names two "
                           "different API keys");
    }
    v->phases |= phase;
    /* Before the idle test: a table idle here may have entries in Redis
     * that this host has not mirrored yet. */
    rl2_overrides_sync(policy->overrides, now);
    /* An adaptive factor is worked out whatever the table holds. */
    if (!rl2_overrides_idle(policy->overrides) || policy->factors_on != 0) {
        c.now = now;
        switch (rl2_runtime_client(&c)) {
        case RL2_RUNTIME_REFUSE:
            /* Refused before any rule: what an earlier phase counted is
             * taken back, as for any refusal. */
            v->outcome = RL2_OUTCOME_DENY;
            v->shown = -1;
            return rl2_refund_committed(store, v->layers, first, now, err);
        case RL2_RUNTIME_BYPASS:
            v->outcome = RL2_OUTCOME_BYPASS;
            return rl2_refund_committed(store, v->layers, first, now, err);
        case RL2_RUNTIME_LATER:
            return RL2_OK;
        default:
            break;
        }
    }
    if (rl2_has_whitelist(policy) && rl2_whitelisted(&c)) {
        v->outcome = RL2_OUTCOME_BYPASS;
        return rl2_refund_committed(store, v->layers, first, now, err);
    }
    st = rl2_build_layers(&c, extra, n_extra, &bypass, err);
    if (c.path_heap != NULL) {
        rl2_ctx_fini(&c); /* the path is not needed past rule selection */
    }
    if (c.path_ambiguous) {
        v->n_layers = first;
        return rl2_err_set(err, RL2_ERR_REQUEST,
                           "a dot segment of the path "
                           "carries a ;parameter");
    }
    if (st != RL2_OK || bypass) {
        v->n_layers = first;
        if (bypass) {
            v->outcome = RL2_OUTCOME_BYPASS;
        }
        if ((st == RL2_ERR_BOUND || st == RL2_ERR_REQUEST) && first > 0) {
            rl2_err_t lost;

            /* Refused: what an earlier phase counted is taken back (a
             * failed refund leaves it counted; the refusal stands). */
            (void)rl2_refund_committed(store, v->layers, first, now, &lost);
        }
        return st;
    }
    if (v->n_layers == first) {
        return RL2_OK;
    }
    if (c.ovr_read) {
        c.rep_keyed = 0; /* reputation.c keys its counters once */
        if (policy->factors[RL2_FACTOR_REPUTATION].on) {
            (void)rl2_reputation_read(&c, store, now);
        }
        rl2_runtime_layers(&c, first);
    }
    st = store->ops->apply(store, v->layers + first, v->n_layers - first, now,
                           err);
    if (st != RL2_OK) {
        v->n_layers = first;
        return st;
    }
    st = rl2_verdict_fold(&c, store, first, now, err);
    if (st == RL2_OK && v->outcome == RL2_OUTCOME_DENY
        && policy->abuse.denials > 0 && policy->overrides != NULL
        && v->shown >= 0) {
        rl2_runtime_abuse(&c, store, now);
    }
    /* After the ban it may have made, which it counts too. */
    if (st == RL2_OK && c.ovr_read
        && policy->factors[RL2_FACTOR_REPUTATION].on) {
        rl2_reputation_count(&c, store, now, first);
    }
    return st;
}

rl2_status_t
rl2_decide_peek(const rl2_policy_t *policy, const rl2_rule_t *extra,
                size_t n_extra, rl2_store_t *store, const rl2_request_t *req,
                const rl2_clock_t *now, rl2_verdict_t *v, rl2_err_t *err)
{
    rl2_ctx_t    c;
    int          bypass;
    rl2_status_t st;

    rl2_verdict_init(v);
    if (rl2_ctx_init(&c, policy, req, RL2_PHASE_ALL, v) != 0) {
        rl2_ctx_fini(&c);
        return rl2_err_set(err, RL2_ERR_REQUEST,
                           "the request names two "
                           "different API keys");
    }
    v->phases = RL2_PHASE_ALL;
    if (rl2_whitelisted(&c)) {
        v->outcome = RL2_OUTCOME_BYPASS;
        return RL2_OK;
    }
    st = rl2_build_layers(&c, extra, n_extra, &bypass, err);
    rl2_ctx_fini(&c);
    if (st != RL2_OK || bypass || v->n_layers == 0) {
        v->n_layers = bypass ? 0 : v->n_layers;
        v->outcome = bypass ? RL2_OUTCOME_BYPASS : RL2_OUTCOME_NONE;
        return st;
    }
    st = store->ops->peek(store, v->layers, v->n_layers, now, err);
    if (st != RL2_OK) {
        return st;
    }
    v->outcome = RL2_OUTCOME_ALLOW;
    for (size_t i = 0; i < v->n_layers; i++) {
        if (rl2_layer_denies(&v->layers[i])) {
            v->outcome = RL2_OUTCOME_DENY;
        }
    }
    v->shown = rl2_pick_shown(v);
    if (v->experiment) {
        rl2_fold_experiment(v, 0, 0);
    }
    return RL2_OK;
}

int
rl2_decide_holds(const rl2_verdict_t *v)
{
    for (size_t i = 0; i < v->n_layers; i++) {
        if (v->layers[i].committed
            && v->layers[i].limit->algo.algo == RL2_ALGO_CONCURRENCY) {
            return 1;
        }
    }
    return 0;
}

rl2_status_t
rl2_decide_end(rl2_store_t *store, rl2_verdict_t *v, const rl2_clock_t *now,
               rl2_err_t *err)
{
    rl2_layer_t held[RL2_MAX_LAYERS];
    size_t      n = 0;

    for (size_t i = 0; i < v->n_layers; i++) {
        rl2_layer_t *l = &v->layers[i];

        if (l->committed && l->limit->algo.algo == RL2_ALGO_CONCURRENCY) {
            held[n++] = *l;
            l->committed = 0;
        }
    }
    return n ? store->ops->refund(store, held, n, now, err) : RL2_OK;
}

static int
rl2_set_has_phase(const rl2_limit_set_t *set, int identity, unsigned phase)
{
    for (size_t i = 0; i < set->n; i++) {
        unsigned p = identity ? RL2_PHASE_LATE : set->limits[i].phase;

        if (p & phase) {
            return 1;
        }
    }
    return 0;
}

static int
rl2_rule_has_phase(const rl2_policy_t *policy, const rl2_rule_t *rule,
                   unsigned phase)
{
    if (rl2_set_has_phase(&rule->limits, 0, phase)
        || rl2_set_has_phase(&rule->challenger, 0, phase)) {
        return 1;
    }
    for (size_t i = 0; i < rule->n_variants; i++) {
        if (rl2_set_has_phase(&rule->variants[i].limits, 0, phase)) {
            return 1;
        }
    }
    for (size_t t = 0; rule->tiers != NULL && t < policy->n_tiers; t++) {
        if (rl2_set_has_phase(&rule->tiers[t], 1, phase)) {
            return 1;
        }
    }
    return 0;
}

int
rl2_policy_has_phase(const rl2_policy_t *policy, const rl2_rule_t *extra,
                     size_t n_extra, unsigned phase)
{
    /* Client overrides and tiers are identity: always late. */
    if ((phase & RL2_PHASE_LATE)
        && (policy->n_clients > 0 || policy->n_wl_users > 0)) {
        return 1;
    }
    for (size_t i = 0; i < policy->n_rules; i++) {
        if (rl2_rule_has_phase(policy, &policy->rules[i], phase)) {
            return 1;
        }
    }
    if (policy->default_rule != NULL
        && rl2_rule_has_phase(policy, policy->default_rule, phase)) {
        return 1;
    }
    for (size_t i = 0; i < n_extra; i++) {
        if (rl2_rule_has_phase(policy, &extra[i], phase)) {
            return 1;
        }
    }
    return 0;
}

/* ---- decide.c's steps for explain.c (decide_internal.h) ----
 *
 * Wrappers, so that the request's path keeps its static functions as
 * the compiler lays them out for it (inlined, its own calling
 * convention): an operator's explain pays the call. */

int
rl2_decide_select_rules(rl2_ctx_t *c, const rl2_rule_t *extra, size_t n_extra,
                        rl2_applied_t *out)
{
    return rl2_select_rules(c, extra, n_extra, out);
}

rl2_status_t
rl2_decide_build_layers(rl2_ctx_t *c, const rl2_rule_t *extra, size_t n_extra,
                        int *bypass, rl2_err_t *err)
{
    return rl2_build_layers(c, extra, n_extra, bypass, err);
}

int
rl2_decide_pick_shown(const rl2_verdict_t *v)
{
    return rl2_pick_shown(v);
}
