/*
 * variant.c -- which variant of a rule a client is assigned, and which
 * one a verdict shows.
 *
 * A client's identity (in the form its storage keys take: the grouped
 * address, "user:HASH", "key:HASH") is hashed under the rule's
 * variant_key, which the loader derives from the rule's name and the
 * policy's experiment_seed only: every server sharing the policy, and
 * every restart, assigns a client the same variant.  The 64-bit hash is
 * scaled into [0, variant_total) by a multiply and shift: with at most
 * RL2_VARIANTS_MAX * RL2_VARIANT_WEIGHT_MAX (under 2^18) slots, no slot
 * gets more than 2^-46 more of the clients than another.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ratelimit2/decide.h"

#include "base/base_internal.h"
#include "base/buf.h"
#include "decide_internal.h"

size_t
rl2_variant_of(const rl2_rule_t *rule, const char *id, size_t len)
{
    rl2_digest_t d = rl2_digest_keyed(&rule->variant_key, id, len);
    uint64_t     at =
        (uint64_t)(((unsigned __int128)d.hi * rule->variant_total) >> 64);
    size_t i = 0;

    while (i + 1 < rule->n_variants && at >= rule->variants[i].upto) {
        i++;
    }
    return i;
}

size_t
rl2_variant_pick(const rl2_ctx_t *c, const rl2_rule_t *rule)
{
    rl2_variant_by_t by = rule->variant_by;
    const char      *user = c->req->user;
    char             id[24];
    rl2_buf_t        b;

    rl2_buf_init(&b, id, sizeof(id));
    if ((by == RL2_VARIANT_BY_AUTO || by == RL2_VARIANT_BY_APIKEY)
        && c->apikey != NULL) {
        rl2_buf_mem(&b, "key:", 4);
        rl2_buf_mem(&b, c->apikey_hash, 16);
    }
    else if ((by == RL2_VARIANT_BY_AUTO || by == RL2_VARIANT_BY_USER)
             && user != NULL && user[0] != '\0') {
        rl2_buf_mem(&b, "user:", 5);
        rl2_buf_mem(&b, c->user_hash, 16);
    }
    else {
        return rl2_variant_of(rule, c->group_ip, c->group_len);
    }
    return rl2_variant_of(rule, id, b.len);
}

const char *
rl2_verdict_variant(const rl2_verdict_t *v)
{
    const rl2_layer_t *l;

    if (v->shown >= 0 && (l = &v->layers[v->shown])->variant != 0) {
        return l->rule->variants[l->variant - 1].name;
    }
    for (size_t i = 0; i < v->n_layers; i++) {
        l = &v->layers[i];
        if (l->variant != 0 && !l->challenger) {
            return l->rule->variants[l->variant - 1].name;
        }
    }
    return NULL;
}
