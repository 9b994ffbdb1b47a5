/*
 * reputation.c -- the reputation factor (policy factors.reputation): a
 * client's limits scaled by its own recent history.
 *
 * Three counters per client, each a fixed window of the group's `window`
 * (config_reputation.c): its requests, its refusals by limits that
 * counted it (rl2_abuse_layer: an address, a user, an API key; never a
 * global, route or header limit, which any client may spend for
 * another), and the automatic bans it earned.  They are keyed by the
 * client's address as keys group it (after trusted proxies), under
 * seeds no limit of the rules has, in the store the decision uses: the
 * local zone, or Redis, where the whole fleet agrees.
 *
 * A request pays two store calls: one peek of the three before the
 * first phase with limits (Apache's fixups read nothing again: the
 * verdict carries the factor), and one apply after each phase that
 * counts something (the request in the first phase that meets a limit
 * counting the client; a refusal or a ban when it comes).  A standalone Redis
 * answers each in one round trip; a Cluster in one per slot the three keys fall
 * in.
 */
#include <stdio.h>
#include <string.h>

#include "ratelimit2/overrides.h"

#include "decide_internal.h"
#include "base/base_internal.h"

enum { RL2_REP_REQUESTS, RL2_REP_REFUSALS, RL2_REP_BANS, RL2_REP_N };

_Static_assert(sizeof(((rl2_ctx_t *)0)->rep) / sizeof(rl2_layer_t) == RL2_REP_N,
               "the context holds every counter's layer");

uint32_t
rl2_reputation_of(const rl2_reputation_conf_t *rc, int64_t requests,
                  int64_t refusals, int64_t bans)
{
    if (bans > 0) {
        return rc->low_ppm;
    }
    if (requests < rc->min_requests) {
        return rc->high_ppm; /* no evidence */
    }
    if (refusals <= 0) {
        return rc->good_ppm;
    }
    /* A refusal counted in the window after its request's (Apache's
     * fixups across the boundary) must not take r below 0. */
    if (refusals > requests) {
        refusals = requests;
    }
    return rc->low_ppm
           + (uint32_t)((__int128)(rc->high_ppm - rc->low_ppm)
                        * (requests - refusals) / requests);
}

/* The three counters' layers for this client; -1 when it has no
 * address to key them by.  Keyed once per decision: the read keeps
 * them in the context for the count (three digests, ~800
 * instructions). */
static int
rl2_reputation_layers(rl2_ctx_t *c, rl2_layer_t *l)
{
    const rl2_reputation_conf_t *rc = &c->policy->reputation;
    const rl2_limit_t *limits[RL2_REP_N] = { rc->requests, rc->refusals,
                                             rc->bans };

    if (c->rep_keyed) {
        memcpy(l, c->rep, sizeof(c->rep));
        return 0;
    }
    if (c->group_len == 0 || c->group_len >= sizeof(l->client)) {
        return -1;
    }
    for (size_t i = 0; i < RL2_REP_N; i++) {
        rl2_hash_key_t seed = limits[i]->key_seed;

        memset(&l[i], 0, sizeof(l[i]));
        l[i].limit = limits[i];
        memcpy(l[i].client, c->group_ip, c->group_len);
        l[i].client[c->group_len] = '\0';
        seed.k[15] ^= 0xff; /* never the key of a limit of the rules */
        l[i].key = rl2_digest_keyed(&seed, c->group_ip, c->group_len);
    }
    memcpy(c->rep, l, sizeof(c->rep));
    c->rep_keyed = 1;
    return 0;
}

/* The count a peek of a fixed window found: it reports what would be
 * left after one more. */
static int64_t
rl2_reputation_peeked(const rl2_layer_t *l)
{
    int64_t n = l->result.limit - l->result.remaining - 1;

    return n < 0 ? 0 : n;
}

int
rl2_reputation_peek(rl2_ctx_t *c, rl2_store_t *store, const rl2_clock_t *now,
                    int64_t *counts)
{
    rl2_layer_t l[RL2_REP_N];
    rl2_err_t   err;

    if (rl2_reputation_layers(c, l) != 0
        || store->ops->peek(store, l, RL2_REP_N, now, &err) != RL2_OK) {
        return -1;
    }
    for (size_t i = 0; i < RL2_REP_N; i++) {
        counts[i] = rl2_reputation_peeked(&l[i]);
    }
    return 0;
}

int
rl2_reputation_read(rl2_ctx_t *c, rl2_store_t *store, const rl2_clock_t *now)
{
    const rl2_reputation_conf_t *rc = &c->policy->reputation;
    uint32_t                    *f = &c->v->factor_ppm[RL2_FACTOR_REPUTATION];
    int64_t                      n[RL2_REP_N];

    if (*f != 0) {
        return 0;
    }
    if (c->group_len == 0 || c->group_len >= sizeof(c->rep[0].client)) {
        *f = rc->high_ppm; /* no address: no history */
        return 0;
    }
    /* A store that does not answer is no evidence either way. */
    *f = rl2_reputation_peek(c, store, now, n) == 0 ? rl2_reputation_of(
             rc, n[RL2_REP_REQUESTS], n[RL2_REP_REFUSALS], n[RL2_REP_BANS])
                                                    : rc->high_ppm;
    return 1;
}

/* Does one of v->layers[from..to) count the client itself (the limits
 * rl2_abuse_layer takes a refusal of)?  Only such a limit judges the
 * client: a request that met shared limits alone, even refused, says
 * nothing of it, and counted, would dilute its refusals for free. */
static int
rl2_reputation_judged(const rl2_verdict_t *v, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        if (rl2_layer_own(&v->layers[i])) {
            return 1;
        }
    }
    return 0;
}

void
rl2_reputation_count(rl2_ctx_t *c, rl2_store_t *store, const rl2_clock_t *now,
                     size_t first)
{
    const rl2_verdict_t *v = c->v;
    rl2_layer_t          l[RL2_REP_N];
    /* Counted in the first phase (Apache's two) that judges the client. */
    int request = rl2_reputation_judged(v, first, v->n_layers)
                  && !rl2_reputation_judged(v, 0, first);
    int refused = v->outcome == RL2_OUTCOME_DENY && v->shown >= 0
                  && rl2_abuse_layer(v) != NULL;
    int       counts[RL2_REP_N] = { request, refused, refused && v->banned };
    size_t    n = 0;
    rl2_err_t err;

    if (!(request || refused) || rl2_reputation_layers(c, l) != 0) {
        return;
    }
    for (size_t i = 0; i < RL2_REP_N; i++) {
        if (counts[i]) {
            l[n++] = l[i];
        }
    }
    /* The counters never refuse.  A store that fails loses this
     * request's history, not its verdict: the decision is made. */
    (void)store->ops->apply(store, l, n, now, &err);
}
