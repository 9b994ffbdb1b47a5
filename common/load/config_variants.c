/*
 * config_variants.c -- experiments in a rule, for the policy loader
 * (config_rules.c): weighted variants and a challenger.
 *
 * Owns a rule's variants = ( { name; weight; limits; }, ... ) with its
 * variant_by, the policy's experiment_seed, and a rule's
 * challenger = { limits = ( ... ); }.  Every limit of a variant or of a
 * challenger is counted under storage keys of its own: its key seed
 * (rl2_limit_t.key_seed, from name, algorithm and window) is mixed with
 * "variant", the rule and the variant's name, or with "challenger" and
 * the rule, so it never shares a counter with the rule's other limits,
 * another variant's or another rule's, whatever the limits are named.
 */
#include <ctype.h>
#include <libconfig.h>
#include <stdio.h>
#include <string.h>

#include "load_internal.h"
#include "base/base_internal.h"
#include "policy/policy_internal.h"

static const char *const rl2_variant_keys[] = { "name", "weight", "limits",
                                                NULL };
static const char *const rl2_challenger_keys[] = { "limits", NULL };
/* In the order of rl2_variant_by_t. */
static const char *const rl2_variant_by_values[] = { "auto", "ip", "user",
                                                     "api_key", NULL };

/* The longest experiment_seed, bytes. */
#define RL2_SEED_MAX 256

/* Mix what the set belongs to into each of its limits' key seeds. */
static void
rl2_cfg_rekey(rl2_limit_set_t *set, const char *what, const char *rule,
              const char *variant)
{
    char tmp[16 + 2 * (RL2_NAME_MAX + 1)];
    int  n = snprintf(tmp, sizeof(tmp), "%s|%s|%s", what, rule, variant);

    for (size_t i = 0; i < set->n; i++) {
        rl2_hash_key_t *k = &set->limits[i].key_seed;
        rl2_digest_t    d = rl2_digest_keyed(k, tmp, (size_t)n);

        memcpy(k->k, &d.hi, 8);
        memcpy(k->k + 8, &d.lo, 8);
    }
}

/* A variant's name is shown in a header, a metric label and the
 * violation log: short, and nothing that needs quoting. */
static rl2_status_t
rl2_cfg_variant_name(rl2_cfg_t *cfg, const config_setting_t *s,
                     const char *name)
{
    size_t len = strlen(name);
    int    ok = len >= 1 && len <= RL2_VARIANT_NAME_MAX;

    for (const char *c = name; ok && *c != '\0'; c++) {
        ok = isalnum((unsigned char)*c) || *c == '_' || *c == '-';
    }
    if (!ok) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "invalid variant name \"%s\": use 1 to %d "
                            "letters, digits, '_' or '-'",
                            name, RL2_VARIANT_NAME_MAX);
    }
    return RL2_OK;
}

/* One variant { name = ...; weight = ...; limits = ( ... ); }. */
static rl2_status_t
rl2_cfg_variant(rl2_cfg_t *cfg, const config_setting_t *g,
                const rl2_cfg_set_t *sc, rl2_rule_t *rule, rl2_variant_t *var)
{
    const config_setting_t *limits;
    const char             *name;
    int64_t                 weight = 0;

    if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "each variant must be a group { name = ...; "
                            "weight = ...; limits = ( ... ); }");
    }
    RL2_TRY(rl2_cfg_keys(cfg, g, "variant", rl2_variant_keys));
    RL2_TRY(rl2_cfg_string(cfg, g, "name", &name));
    if (name == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "variant without 'name'");
    }
    RL2_TRY(rl2_cfg_variant_name(cfg, rl2_cfg_at(g, "name"), name));
    if (rl2_cfg_at(g, "weight") == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "variant '%s' without 'weight'", name);
    }
    RL2_TRY(rl2_cfg_int(cfg, g, "weight", &weight));
    if (weight < 1 || weight > RL2_VARIANT_WEIGHT_MAX) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "weight"), RL2_ERR_CONFIG,
                            "variant '%s': 'weight' must be from 1 to %d", name,
                            RL2_VARIANT_WEIGHT_MAX);
    }
    if ((limits = rl2_cfg_at(g, "limits")) == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "variant '%s' without 'limits'", name);
    }
    var->name = rl2_policy_strdup(cfg->policy, name);
    if (var->name == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    var->weight = (uint32_t)weight;
    RL2_TRY(rl2_cfg_set(cfg, limits, sc, &var->limits));
    rl2_cfg_rekey(&var->limits, "variant", rule->name, var->name);
    return RL2_OK;
}

/* The key a rule's clients are assigned by: its name and the policy's
 * experiment_seed, so every server of a fleet sharing the policy, and
 * every restart, assigns a client the same variant. */
static void
rl2_cfg_variant_key(const rl2_cfg_t *cfg, rl2_rule_t *rule)
{
    char tmp[16 + RL2_NAME_MAX + RL2_SEED_MAX];

    snprintf(tmp, sizeof(tmp), "variant|%s|%s", rule->name,
             cfg->experiment_seed != NULL ? cfg->experiment_seed : "");
    rl2_hash_key_from_secret(tmp, &rule->variant_key);
}

rl2_status_t
rl2_cfg_variants(rl2_cfg_t *cfg, const config_setting_t *g, rl2_cfg_set_t *sc,
                 rl2_rule_t *rule)
{
    const config_setting_t *s = rl2_cfg_at(g, "variants");
    int                     by = RL2_VARIANT_BY_AUTO;
    unsigned                n;
    uint32_t                total = 0;

    if (s == NULL) {
        if (rl2_cfg_at(g, "variant_by") != NULL) {
            return rl2_cfg_fail(cfg, rl2_cfg_at(g, "variant_by"),
                                RL2_ERR_CONFIG,
                                "'variant_by' without 'variants'");
        }
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_choice(cfg, g, "variant_by", rl2_variant_by_values, &by));
    if (config_setting_type(s) != CONFIG_TYPE_LIST) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'variants' must be a list ( { name = ...; "
                            "weight = ...; limits = ( ... ); }, ... )");
    }
    n = (unsigned)config_setting_length(s);
    if (n < 2 || n > RL2_VARIANTS_MAX) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "rule '%s' has %u variants; it needs 2 to %d",
                            rule->name, n, RL2_VARIANTS_MAX);
    }
    rule->variants = rl2_policy_alloc(cfg->policy, n * sizeof(rl2_variant_t));
    if (rule->variants == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    /* A variant assigned by user or API key is known only after
     * authentication: its limits are decided late, like a tier's. */
    sc->in_tier = by != RL2_VARIANT_BY_IP;
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *v = config_setting_get_elem(s, i);
        rl2_variant_t          *var = &rule->variants[i];

        RL2_TRY(rl2_cfg_variant(cfg, v, sc, rule, var));
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(rule->variants[j].name, var->name) == 0) {
                return rl2_cfg_fail(cfg, rl2_cfg_at(v, "name"), RL2_ERR_CONFIG,
                                    "duplicate variant name '%s' in rule "
                                    "'%s'",
                                    var->name, rule->name);
            }
        }
        total += var->weight;
        var->upto = total;
        rule->n_variants = i + 1;
    }
    sc->in_tier = 0;
    rule->variant_total = total;
    rule->variant_by = (rl2_variant_by_t)by;
    rule->experiment = 1;
    rl2_cfg_variant_key(cfg, rule);
    return RL2_OK;
}

rl2_status_t
rl2_cfg_challenger(rl2_cfg_t *cfg, const config_setting_t *g,
                   const rl2_cfg_set_t *sc, rl2_rule_t *rule)
{
    const config_setting_t *c, *limits;

    RL2_TRY(rl2_cfg_group(cfg, g, "challenger", rl2_challenger_keys, &c));
    if (c == NULL) {
        return RL2_OK;
    }
    if ((limits = rl2_cfg_at(c, "limits")) == NULL) {
        return rl2_cfg_fail(cfg, c, RL2_ERR_CONFIG,
                            "'challenger' without 'limits'");
    }
    if (config_setting_type(limits) != CONFIG_TYPE_LIST
        || config_setting_length(limits) == 0) {
        return rl2_cfg_fail(cfg, limits, RL2_ERR_CONFIG,
                            "a challenger's 'limits' must be a non-empty "
                            "list of limits ( { rate = ...; }, ... )");
    }
    RL2_TRY(rl2_cfg_set(cfg, limits, sc, &rule->challenger));
    rl2_cfg_rekey(&rule->challenger, "challenger", rule->name, "");
    rule->experiment = 1;
    return RL2_OK;
}

rl2_status_t
rl2_cfg_experiment_seed(rl2_cfg_t *cfg, const config_setting_t *root)
{
    const char *seed;

    RL2_TRY(rl2_cfg_string(cfg, root, "experiment_seed", &seed));
    if (seed != NULL && strlen(seed) > RL2_SEED_MAX) {
        return rl2_cfg_fail(
            cfg, rl2_cfg_at(root, "experiment_seed"), RL2_ERR_CONFIG,
            "'experiment_seed' is longer than %d bytes", RL2_SEED_MAX);
    }
    cfg->experiment_seed = seed;
    return RL2_OK;
}
