/*
 * config_clients.c -- client overrides and the whitelist, for the policy
 * loader (config.c).
 *
 * Owns clients = ( ... ): one identity (user, API key or address) given
 * a tier or its own limit sets for named rules, and whitelist = { ... }:
 * the addresses, users and API keys no limit applies to, and how a
 * request the server flags as its own is recognised.  Clients are
 * read last, because they name rules and tiers.
 */
#include <ctype.h>
#include <libconfig.h>
#include <string.h>
#include <strings.h>

#include "load_internal.h"

static const char *const rl2_client_keys[] = { "user", "api_key", "address",
                                               "tier", "rules",   NULL };
static const char *const rl2_whitelist_keys[] = { "addresses",
                                                  "users",
                                                  "api_keys",
                                                  "internal",
                                                  "internal_variable",
                                                  "internal_header",
                                                  "internal_header_from",
                                                  NULL };
/* The keys that say how a request is flagged internal. */
static const char *const rl2_internal_settings[] = {
    "internal_variable", "internal_header", "internal_header_from", NULL
};

/* ---- clients ---- */

/* rules = { ai_generation = ( ... ); default = "unlimited"; } */
static rl2_status_t
rl2_cfg_client_rules(rl2_cfg_t *cfg, const config_setting_t *s, rl2_client_t *c)
{
    rl2_policy_t *p = cfg->policy;
    unsigned      n = (unsigned)config_setting_length(s);
    rl2_cfg_set_t sc;

    c->rules = rl2_policy_alloc(p, (n ? n : 1) * sizeof(*c->rules));
    if (c->rules == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(s, i);
        const char             *name = config_setting_name(m);
        rl2_rule_override_t    *o = &c->rules[i];
        rl2_rule_t             *rule = NULL;

        for (o->rule = 0; o->rule < p->n_rules; o->rule++) {
            if (strcmp(p->rules[o->rule].name, name) == 0) {
                rule = &p->rules[o->rule];
                break;
            }
        }
        if (rule == NULL && strcmp(name, "default") == 0) {
            rule = p->default_rule;
        }
        if (rule == NULL) {
            return rl2_cfg_fail(cfg, m, RL2_ERR_CONFIG,
                                "client override "
                                "names unknown rule '%s'",
                                name);
        }
        sc.rule = rule->name;
        sc.key = cfg->rule_keys[o->rule];
        sc.in_tier = c->by != RL2_KEY_IP;
        RL2_TRY(rl2_cfg_set(cfg, m, &sc, &o->set));
        c->n_rules = i + 1;
    }
    return RL2_OK;
}

/* Exactly one identity: user, api_key or address. */
static rl2_status_t
rl2_cfg_client_id(rl2_cfg_t *cfg, const config_setting_t *g, rl2_client_t *c)
{
    const char  *address;
    rl2_err_t    e;
    rl2_status_t st;
    int          ids = (rl2_cfg_at(g, "user") != NULL)
              + (rl2_cfg_at(g, "api_key") != NULL)
              + (rl2_cfg_at(g, "address") != NULL);

    if (ids != 1) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "a client needs exactly "
                            "one of 'user', 'api_key' or 'address'");
    }
    c->by = rl2_cfg_at(g, "user")      ? RL2_KEY_USER
            : rl2_cfg_at(g, "api_key") ? RL2_KEY_APIKEY
                                       : RL2_KEY_IP;
    RL2_TRY(rl2_cfg_copy(cfg, g, "user", &c->id));
    if (c->id == NULL) {
        RL2_TRY(rl2_cfg_copy(cfg, g, "api_key", &c->id));
    }
    RL2_TRY(rl2_cfg_string(cfg, g, "address", &address));
    if (address != NULL
        && (st = rl2_cidr_parse(address, &c->net, &e)) != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "address"), st, "%s", e.msg);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_client(rl2_cfg_t *cfg, const config_setting_t *g, rl2_client_t *c)
{
    const rl2_policy_t     *p = cfg->policy;
    const config_setting_t *rules = rl2_cfg_at(g, "rules");
    const char             *tier;
    char                    list[160];

    RL2_TRY(rl2_cfg_keys(cfg, g, "client", rl2_client_keys));
    RL2_TRY(rl2_cfg_client_id(cfg, g, c));
    c->file = rl2_cfg_source(cfg, g);
    if (c->file == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    c->line = (int)config_setting_source_line(g);
    c->tier = -1;
    RL2_TRY(rl2_cfg_string(cfg, g, "tier", &tier));
    if (tier != NULL && (c->tier = rl2_cfg_tier_find(p, tier)) < 0) {
        rl2_cfg_tier_list(p, list, sizeof(list));
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "tier"), RL2_ERR_CONFIG,
                            "unknown tier '%s' for client; declared tiers: "
                            "%s",
                            tier, list);
    }
    if (tier == NULL && rules == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "a client override "
                            "needs 'tier' or 'rules'");
    }
    if (rules == NULL) {
        return RL2_OK;
    }
    if (config_setting_type(rules) != CONFIG_TYPE_GROUP) {
        return rl2_cfg_fail(cfg, rules, RL2_ERR_CONFIG,
                            "'rules' of a client "
                            "must be a group { rule_name = ( ... ); }");
    }
    return rl2_cfg_client_rules(cfg, rules, c);
}

/* A rule a user or API key overrides has a set that depends on identity,
 * known only after authentication: all its limits are decided late. */
static void
rl2_cfg_make_late(rl2_policy_t *p, size_t r)
{
    rl2_rule_t *rule = r < p->n_rules ? &p->rules[r] : p->default_rule;

    for (size_t i = 0; i < rule->limits.n; i++) {
        rule->limits.limits[i].phase = RL2_PHASE_LATE;
    }
    for (size_t t = 0; rule->tiers != NULL && t < p->n_tiers; t++) {
        for (size_t i = 0; i < rule->tiers[t].n; i++) {
            rule->tiers[t].limits[i].phase = RL2_PHASE_LATE;
        }
    }
}

/* Only the first client that matches is used: a second entry for the
 * same identity would be ignored, so it is an error.  (Overlapping
 * address ranges are fine: the more specific one is written first.) */
static rl2_status_t
rl2_cfg_client_dup(const rl2_cfg_t *cfg, const config_setting_t *g,
                   const rl2_client_t *c)
{
    const rl2_policy_t *p = cfg->policy;

    for (const rl2_client_t *o = p->clients; o < c; o++) {
        if (o->by != c->by
            || (c->by == RL2_KEY_IP ? memcmp(&o->net, &c->net, sizeof(c->net))
                                    : strcmp(o->id, c->id))
                   != 0) {
            continue;
        }
        /* API keys are secrets: not repeated in a message. */
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "duplicate client: "
                            "the same %s as at %s:%d",
                            c->by == RL2_KEY_USER     ? "user"
                            : c->by == RL2_KEY_APIKEY ? "api_key"
                                                      : "address",
                            o->file, o->line);
    }
    return RL2_OK;
}

rl2_status_t
rl2_cfg_clients(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t           *p = cfg->policy;
    const config_setting_t *s = rl2_cfg_at(root, "clients");
    unsigned                n;

    if (s == NULL) {
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_list(cfg, s, "clients", &n));
    p->clients = rl2_policy_alloc(p, (n ? n : 1) * sizeof(*p->clients));
    if (p->clients == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(s, i);
        rl2_client_t           *c = &p->clients[i];

        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                                "each entry of "
                                "'clients' must be a group { user = ...; }");
        }
        RL2_TRY(rl2_cfg_client(cfg, g, c));
        RL2_TRY(rl2_cfg_client_dup(cfg, g, c));
        for (size_t r = 0; c->by != RL2_KEY_IP && r < c->n_rules; r++) {
            rl2_cfg_make_late(p, c->rules[r].rule);
        }
        p->n_clients = i + 1;
    }
    return RL2_OK;
}

/* ---- whitelist ---- */

/* Could a client give a variable of this name a value?  Every server a
 * front end runs behind (Apache, nginx, lighttpd) hands a client's
 * headers to FastCGI and CGI programs as HTTP_*, and Content-Type and
 * Content-Length as CONTENT_TYPE and CONTENT_LENGTH.  Without case:
 * Apache's tables compare names so. */
int
rl2_cfg_client_var(const char *name)
{
    return strncasecmp(name, "HTTP_", 5) == 0
           || strcasecmp(name, "CONTENT_TYPE") == 0
           || strcasecmp(name, "CONTENT_LENGTH") == 0;
}

/* Letters, digits and '_', not starting with a digit: Apache hands a CGI
 * program any other character as '_', so ratelimit2-cgi would look for
 * another name than the one the server sets. */
int
rl2_cfg_var_name_ok(const char *name)
{
    if (isdigit((unsigned char)name[0])) {
        return 0;
    }
    for (const char *c = name; *c != '\0'; c++) {
        if (!isalnum((unsigned char)*c) && *c != '_') {
            return 0;
        }
    }
    return 1;
}

/* internal_variable: the variable only the server's own configuration
 * sets (SetEnvIf, fastcgi_param, setenv.add-environment), never one a
 * client's request fills in. */
static rl2_status_t
rl2_cfg_internal_var(rl2_cfg_t *cfg, const config_setting_t *g)
{
    rl2_policy_t *p = cfg->policy;
    const char   *name;

    RL2_TRY(rl2_cfg_copy(cfg, g, "internal_variable", &name));
    if (name == NULL) {
        p->wl_internal_var = RL2_INTERNAL_VARIABLE;
        return RL2_OK;
    }
    if (rl2_cfg_client_var(name)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "internal_variable"),
                            RL2_ERR_CONFIG,
                            "whitelist.internal_variable \"%s\" is a "
                            "variable a client sets: HTTP_* (and "
                            "CONTENT_TYPE, CONTENT_LENGTH) carry its request "
                            "headers; name one only the server's "
                            "configuration sets",
                            name);
    }
    if (!rl2_cfg_var_name_ok(name)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "internal_variable"),
                            RL2_ERR_CONFIG,
                            "whitelist.internal_variable \"%s\": letters, "
                            "digits and '_' only, not starting with a digit",
                            name);
    }
    p->wl_internal_var = name;
    return RL2_OK;
}

/* internal_header and its senders, internal_header_from: as
 * tier_from.header, believed from the upstreams that set it only, since
 * a load balancer passes its clients' own headers through. */
static rl2_status_t
rl2_cfg_internal_header(rl2_cfg_t *cfg, const config_setting_t *g)
{
    rl2_policy_t *p = cfg->policy;

    RL2_TRY(rl2_cfg_copy(cfg, g, "internal_header", &p->wl_internal_header));
    RL2_TRY(rl2_cfg_nets(cfg, g, "internal_header_from", &p->wl_internal_nets,
                         &p->n_wl_internal_nets));
    if (p->wl_internal_header != NULL && p->n_wl_internal_nets == 0) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "internal_header"),
                            RL2_ERR_CONFIG,
                            "whitelist.internal_header needs "
                            "'internal_header_from': the addresses of the "
                            "upstreams that set it (a proxy passes its "
                            "clients' own headers through)");
    }
    if (p->wl_internal_header == NULL
        && rl2_cfg_at(g, "internal_header_from") != NULL) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "internal_header_from"),
                            RL2_ERR_CONFIG,
                            "whitelist.internal_header_from means nothing "
                            "without internal_header");
    }
    return RL2_OK;
}

/* How a request is flagged internal: each key only with internal = true,
 * where it means something. */
static rl2_status_t
rl2_cfg_internal(rl2_cfg_t *cfg, const config_setting_t *g)
{
    RL2_TRY(rl2_cfg_bool(cfg, g, "internal", &cfg->policy->wl_internal));
    if (!cfg->policy->wl_internal) {
        for (int i = 0; rl2_internal_settings[i] != NULL; i++) {
            const config_setting_t *s = rl2_cfg_at(g, rl2_internal_settings[i]);

            if (s != NULL) {
                return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                                    "whitelist.%s means nothing without "
                                    "internal = true",
                                    rl2_internal_settings[i]);
            }
        }
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_internal_var(cfg, g));
    return rl2_cfg_internal_header(cfg, g);
}

/* whitelist = { addresses = [ ... ]; users = [ ... ]; ... }: who is
 * never limited. */
rl2_status_t
rl2_cfg_whitelist(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t           *p = cfg->policy;
    const config_setting_t *g;

    RL2_TRY(rl2_cfg_group(cfg, root, "whitelist", rl2_whitelist_keys, &g));
    if (g == NULL) {
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_nets(cfg, g, "addresses", &p->wl_nets, &p->n_wl_nets));
    RL2_TRY(rl2_cfg_strings(cfg, g, "users", NULL, 0, &p->wl_users,
                            &p->n_wl_users));
    RL2_TRY(rl2_cfg_strings(cfg, g, "api_keys", NULL, 0, &p->wl_keys,
                            &p->n_wl_keys));
    return rl2_cfg_internal(cfg, g);
}
