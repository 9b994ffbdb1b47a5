/*
 * config_rules.c -- tiers, rules and the default rule, for the policy
 * loader (config.c).
 *
 * Owns the top-level tiers = [ ... ] and default_tier, the rules = ( ... )
 * list with what a rule matches on (methods, paths, hosts), and the
 * default = { ... } rule.  Tiers are read first, because a rule's
 * tiers = { ... } names them; each rule's default key is kept aside in
 * the load's rule_keys for the client overrides read after.
 */
#include <ctype.h>
#include <libconfig.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "load_internal.h"
#include "policy/policy_internal.h"

static const char *const rl2_rule_keys[] = {
    "name",     "methods",  "paths",      "hosts",      "mode",
    "continue", "exempt",   "exact",      "key",        "limits",
    "tiers",    "variants", "variant_by", "challenger", NULL
};
static const char *const rl2_default_keys[] = { "key",        "mode",
                                                "limits",     "tiers",
                                                "variants",   "variant_by",
                                                "challenger", NULL };
static const char *const rl2_tier_keys[] = { "name", "upgrade_url", NULL };

/* ---- tiers ---- */

int
rl2_cfg_tier_find(const rl2_policy_t *p, const char *name)
{
    for (size_t i = 0; i < p->n_tiers; i++) {
        if (strcmp(p->tiers[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

void
rl2_cfg_tier_list(const rl2_policy_t *p, char *buf, size_t size)
{
    snprintf(buf, size, "%s", p->n_tiers ? "" : "none");
    for (size_t i = 0; i < p->n_tiers; i++) {
        rl2_cfg_append(buf, size, p->tiers[i].name);
    }
}

/* upgrade_url goes into every 429 body of the tier: bounded, so the body
 * always fits RL2_BODY_MAX, and text (no control bytes) a client can
 * follow. */
static rl2_status_t
rl2_cfg_upgrade_url(rl2_cfg_t *cfg, const config_setting_t *s, const char *url)
{
    size_t n = url != NULL ? strlen(url) : 0;

    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] < 0x20 || url[i] == 0x7f) {
            n = RL2_UPGRADE_URL_MAX + 1;
        }
    }
    if (url != NULL && (n == 0 || n > RL2_UPGRADE_URL_MAX)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(s, "upgrade_url"), RL2_ERR_CONFIG,
                            "tier: 'upgrade_url' must be 1 to %d bytes "
                            "without control characters",
                            RL2_UPGRADE_URL_MAX);
    }
    return RL2_OK;
}

/* A tier name is also a key in a rule's tiers = { name = ...; }, so it
 * must be a libconfig setting name. */
static rl2_status_t
rl2_cfg_tier(rl2_cfg_t *cfg, const config_setting_t *s, rl2_tier_t *t)
{
    const config_setting_t *at = s;
    const char             *name = NULL;
    int                     ok;

    if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        name = config_setting_get_string(s);
    }
    else if (config_setting_type(s) == CONFIG_TYPE_GROUP) {
        RL2_TRY(rl2_cfg_keys(cfg, s, "tier", rl2_tier_keys));
        RL2_TRY(rl2_cfg_copy(cfg, s, "upgrade_url", &t->upgrade_url));
        RL2_TRY(rl2_cfg_upgrade_url(cfg, s, t->upgrade_url));
        RL2_TRY(rl2_cfg_string(cfg, s, "name", &name));
        if (name == NULL) {
            return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                                "tier without "
                                "'name'");
        }
        at = rl2_cfg_at(s, "name");
    }
    else {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "each tier must be a "
                            "name or a group { name = ...; }");
    }
    ok = isalpha((unsigned char)name[0]) && strlen(name) <= RL2_NAME_MAX;
    for (const char *c = name; ok && *c != '\0'; c++) {
        ok = isalnum((unsigned char)*c) || *c == '_' || *c == '-';
    }
    if (!ok) {
        return rl2_cfg_fail(cfg, at, RL2_ERR_CONFIG,
                            "invalid tier name "
                            "\"%s\": use a letter, then up to %d letters, "
                            "digits, '_' or '-'",
                            name, RL2_NAME_MAX - 1);
    }
    t->name = rl2_policy_strdup(cfg->policy, name);
    return t->name ? RL2_OK : rl2_cfg_nomem(cfg);
}

static rl2_status_t
rl2_cfg_default_tier(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t *p = cfg->policy;
    const char   *name;
    char          list[160];

    p->default_tier = p->n_tiers > 0 ? 0 : -1;
    RL2_TRY(rl2_cfg_string(cfg, root, "default_tier", &name));
    if (name == NULL) {
        return RL2_OK;
    }
    p->default_tier = rl2_cfg_tier_find(p, name);
    if (p->default_tier < 0) {
        rl2_cfg_tier_list(p, list, sizeof(list));
        return rl2_cfg_fail(cfg, rl2_cfg_at(root, "default_tier"),
                            RL2_ERR_CONFIG,
                            "default_tier \"%s\" is not a "
                            "declared tier; declared tiers: %s",
                            name, list);
    }
    return RL2_OK;
}

/* tiers = ( { name = ...; upgrade_url = ...; }, ... ) or [ "free", ... ] */
rl2_status_t
rl2_cfg_tiers(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t           *p = cfg->policy;
    const config_setting_t *s = rl2_cfg_at(root, "tiers");
    unsigned                n;

    if (s == NULL) {
        return rl2_cfg_default_tier(cfg, root);
    }
    n = (unsigned)config_setting_length(s);
    if ((config_setting_type(s) != CONFIG_TYPE_LIST
         && config_setting_type(s) != CONFIG_TYPE_ARRAY)
        || n == 0) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'tiers' must be a "
                            "non-empty list: [ \"free\", \"pro\" ] or "
                            "( { name = \"free\"; }, ... )");
    }
    p->tiers = rl2_policy_alloc(p, n * sizeof(*p->tiers));
    if (p->tiers == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *t = config_setting_get_elem(s, i);

        RL2_TRY(rl2_cfg_tier(cfg, t, &p->tiers[i]));
        /* A tier named by a header or variable is found without case. */
        for (unsigned j = 0; j < i; j++) {
            if (strcasecmp(p->tiers[j].name, p->tiers[i].name) == 0) {
                return rl2_cfg_fail(cfg, t, RL2_ERR_CONFIG,
                                    "duplicate "
                                    "tier name '%s'",
                                    p->tiers[i].name);
            }
        }
        p->n_tiers = i + 1;
    }
    return rl2_cfg_default_tier(cfg, root);
}

/* ---- rules ---- */

/* tiers = { free = (...); pro = "unlimited"; } */
static rl2_status_t
rl2_cfg_rule_tiers(rl2_cfg_t *cfg, const config_setting_t *s,
                   const rl2_cfg_set_t *sc, rl2_rule_t *rule)
{
    const rl2_policy_t *p = cfg->policy;
    unsigned            n = (unsigned)config_setting_length(s);
    char                list[160];

    if (p->n_tiers == 0) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'tiers' in rule '%s' "
                            "but no tiers are declared (tiers = [ ... ] at "
                            "the top level)",
                            rule->name);
    }
    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'tiers' must be a "
                            "group { free = ( ... ); pro = \"unlimited\"; }");
    }
    rule->tiers =
        rl2_policy_alloc(cfg->policy, p->n_tiers * sizeof(*rule->tiers));
    if (rule->tiers == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(s, i);
        int t = rl2_cfg_tier_find(p, config_setting_name(m));

        if (t < 0) {
            rl2_cfg_tier_list(p, list, sizeof(list));
            return rl2_cfg_fail(cfg, m, RL2_ERR_CONFIG,
                                "unknown tier '%s' "
                                "in rule '%s'; declared tiers: %s",
                                config_setting_name(m), rule->name, list);
        }
        RL2_TRY(rl2_cfg_set(cfg, m, sc, &rule->tiers[t]));
    }
    return RL2_OK;
}

/* What a rule and the default rule share: mode, flags, key, limits. */
static rl2_status_t
rl2_cfg_rule_body(rl2_cfg_t *cfg, const config_setting_t *g, rl2_rule_t *rule,
                  rl2_cfg_key_t *key)
{
    const config_setting_t *limits = rl2_cfg_at(g, "limits");
    const config_setting_t *tiers = rl2_cfg_at(g, "tiers");
    const config_setting_t *variants = rl2_cfg_at(g, "variants");
    /* With per-tier sets, even the common set depends on the client's
     * tier, which is known only after authentication. */
    rl2_cfg_set_t sc = { rule->name, { RL2_KEY_IP, NULL }, tiers != NULL };

    RL2_TRY(rl2_cfg_mode(cfg, g, &rule->mode));
    RL2_TRY(rl2_cfg_bool(cfg, g, "continue", &rule->is_continue));
    if (rule->is_continue && cfg->policy->match_all) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "continue"), RL2_ERR_CONFIG,
                            "'continue' means nothing with match = \"all\" "
                            "(every matching rule applies already)");
    }
    RL2_TRY(rl2_cfg_bool(cfg, g, "exempt", &rule->exempt));
    RL2_TRY(rl2_cfg_bool(cfg, g, "exact", &rule->exact));
    RL2_TRY(rl2_cfg_key(cfg, g, &sc.key));
    *key = sc.key;
    if (rule->exempt
        && (limits != NULL || tiers != NULL || variants != NULL
            || rl2_cfg_at(g, "challenger") != NULL)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "exempt"), RL2_ERR_CONFIG,
                            "an exempt rule takes no 'limits' or 'tiers' "
                            "(nor 'variants' or 'challenger')");
    }
    if (!rule->exempt && limits == NULL && tiers == NULL && variants == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "rule '%s' has no "
                            "'limits', 'tiers' or 'exempt' (or 'variants')",
                            rule->name);
    }
    /* A client meets one set of a rule: its variant's, or the rule's. */
    if (variants != NULL && (limits != NULL || tiers != NULL)) {
        return rl2_cfg_fail(cfg, variants, RL2_ERR_CONFIG,
                            "rule '%s' has both 'variants' and '%s': "
                            "write the limits in each variant",
                            rule->name, limits != NULL ? "limits" : "tiers");
    }
    if (limits != NULL) {
        RL2_TRY(rl2_cfg_set(cfg, limits, &sc, &rule->limits));
    }
    RL2_TRY(rl2_cfg_variants(cfg, g, &sc, rule));
    RL2_TRY(rl2_cfg_challenger(cfg, g, &sc, rule));
    sc.in_tier = 1;
    if (tiers != NULL) {
        RL2_TRY(rl2_cfg_rule_tiers(cfg, tiers, &sc, rule));
    }
    return RL2_OK;
}

/* Requests are matched on the host name without its port. */
static rl2_status_t
rl2_cfg_host_check(const char *host, rl2_err_t *err)
{
    if (strpbrk(host, ":/[]") != NULL) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid host \"%s\": "
                           "write a host name or glob, without port or "
                           "path",
                           host);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_rule(rl2_cfg_t *cfg, const config_setting_t *g, rl2_rule_t *rule,
             rl2_cfg_key_t *key)
{
    const char *name;

    RL2_TRY(rl2_cfg_keys(cfg, g, "rule", rl2_rule_keys));
    RL2_TRY(rl2_cfg_string(cfg, g, "name", &name));
    if (name == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "rule without 'name'");
    }
    RL2_TRY(rl2_cfg_name(cfg, rl2_cfg_at(g, "name"), "rule", name));
    if (strcmp(name, "default") == 0) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "name"), RL2_ERR_CONFIG,
                            "rule name 'default' is reserved; write the "
                            "default rule as default = { ... }");
    }
    rule->name = rl2_policy_strdup(cfg->policy, name);
    rule->file = rl2_cfg_source(cfg, g);
    if (rule->name == NULL || rule->file == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    rule->line = (int)config_setting_source_line(g);
    RL2_TRY(rl2_cfg_methods(cfg, g, &rule->methods));
    RL2_TRY(rl2_cfg_strings(cfg, g, "paths", rl2_glob_check, 0, &rule->paths,
                            &rule->n_paths));
    RL2_TRY(rl2_cfg_strings(cfg, g, "hosts", rl2_cfg_host_check, 1,
                            &rule->hosts, &rule->n_hosts));
    return rl2_cfg_rule_body(cfg, g, rule, key);
}

rl2_status_t
rl2_cfg_rules(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t           *p = cfg->policy;
    const config_setting_t *s = rl2_cfg_at(root, "rules");
    unsigned                n = 0;

    if (s != NULL) {
        RL2_TRY(rl2_cfg_list(cfg, s, "rules", &n));
    }
    /* One more key slot for the default rule. */
    cfg->rule_keys = rl2_policy_alloc(p, (n + 1) * sizeof(rl2_cfg_key_t));
    p->rules = rl2_policy_alloc(p, n * sizeof(rl2_rule_t));
    if (cfg->rule_keys == NULL || p->rules == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(s, i);

        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                                "each entry of "
                                "'rules' must be a group { name = ...; }");
        }
        RL2_TRY(rl2_cfg_rule(cfg, g, &p->rules[i], &cfg->rule_keys[i]));
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(p->rules[j].name, p->rules[i].name) == 0) {
                return rl2_cfg_fail(cfg, rl2_cfg_at(g, "name"), RL2_ERR_CONFIG,
                                    "duplicate rule name "
                                    "'%s' (first at %s:%d)",
                                    p->rules[i].name, p->rules[j].file,
                                    p->rules[j].line);
            }
        }
        p->n_rules = i + 1;
    }
    return RL2_OK;
}

/* default = { ... }: the rule named "default", with no match keys. */
rl2_status_t
rl2_cfg_default_rule(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t           *p = cfg->policy;
    const config_setting_t *g;
    rl2_rule_t             *rule;

    RL2_TRY(rl2_cfg_group(cfg, root, "default", rl2_default_keys, &g));
    if (g == NULL) {
        return RL2_OK;
    }
    rule = rl2_policy_alloc(p, sizeof(*rule));
    if (rule == NULL || (rule->file = rl2_cfg_source(cfg, g)) == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    rule->name = "default";
    rule->line = (int)config_setting_source_line(g);
    RL2_TRY(rl2_cfg_rule_body(cfg, g, rule, &cfg->rule_keys[p->n_rules]));
    p->default_rule = rule;
    return RL2_OK;
}
