/*
 * config_geo.c -- the policy's `factors.geo` group: the client's country
 * gives a factor on its limits (decide/geo.c applies it).
 *
 *   factors = {
 *       geo = {
 *           variable    = "GEOIP_COUNTRY_CODE"; # the server sets it
 *           header      = "CF-IPCountry";       # believed only from
 *           header_from = [ "10.0.0.0/8" ];     # these senders
 *           database    = "/var/lib/GeoIP/GeoLite2-Country.mmdb";
 *           countries   = { US = 1.0; CN = 0.8; };
 *           regions     = ( { name = "eu"; countries = [ "DE", "FR" ];
 *                             factor = 1.0; } );
 *           default     = 0.6;  # unknown or unlisted; 1.0 if not given
 *           min = 0.1; max = 10; rules = [ ... ]; tiers = [ ... ];
 *       };
 *   };
 *
 * At least one source of the country, and at least one country with a
 * factor.  A country is listed once, in `countries` or in one region.
 * The geo factor keeps no state, so it needs no runtime override table.
 * The database is opened here, once, and closed with the policy.  Every
 * value is checked with file:line.
 */
#include <string.h>

#include "load_internal.h"
#include "decide/decide_internal.h"

static const char *const rl2_geo_keys[] = {
    "variable", "header", "header_from", "database", "countries", "regions",
    "default",  "min",    "max",         "rules",    "tiers",     NULL
};
static const char *const rl2_geo_region_keys[] = { "name", "countries",
                                                   "factor", NULL };

/* The sources of the country: variable, header and its senders,
 * database. */
static rl2_status_t
rl2_cfg_geo_sources(rl2_cfg_t *cfg, const config_setting_t *g,
                    rl2_geo_conf_t *geo)
{
    const char  *database = NULL;
    rl2_err_t    err;
    rl2_status_t st;

    RL2_TRY(rl2_cfg_copy(cfg, g, "variable", &geo->variable));
    if (geo->variable != NULL && rl2_cfg_client_var(geo->variable)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "variable"), RL2_ERR_CONFIG,
                            "factors.geo: 'variable' \"%s\" is a variable a "
                            "client sets: HTTP_* (and CONTENT_TYPE, "
                            "CONTENT_LENGTH) carry its request headers; name "
                            "one only the server's configuration sets",
                            geo->variable);
    }
    if (geo->variable != NULL && !rl2_cfg_var_name_ok(geo->variable)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "variable"), RL2_ERR_CONFIG,
                            "factors.geo: 'variable' \"%s\": letters, digits "
                            "and '_' only, not starting with a digit",
                            geo->variable);
    }
    RL2_TRY(rl2_cfg_copy(cfg, g, "header", &geo->header));
    RL2_TRY(rl2_cfg_nets(cfg, g, "header_from", &geo->nets, &geo->n_nets));
    /* A load balancer passes its clients' own headers through: only the
     * upstream that sets the header is believed. */
    if (geo->header != NULL && geo->n_nets == 0) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "header"), RL2_ERR_CONFIG,
                            "factors.geo: 'header' needs 'header_from': the "
                            "addresses of the upstreams that set it (a "
                            "proxy passes its clients' own headers through)");
    }
    if (geo->header == NULL && rl2_cfg_at(g, "header_from") != NULL) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "header_from"), RL2_ERR_CONFIG,
                            "factors.geo: 'header_from' means nothing "
                            "without 'header'");
    }
    RL2_TRY(rl2_cfg_copy(cfg, g, "database", &database));
    if (database != NULL && database[0] != '/') {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "database"), RL2_ERR_CONFIG,
                            "factors.geo: 'database' must be an absolute "
                            "path");
    }
    if (database != NULL) {
        st = rl2_geo_open(cfg->policy, database, &geo->db, &err);
        if (st == RL2_ERR_NOMEM) {
            return rl2_cfg_nomem(cfg);
        }
        if (st != RL2_OK) {
            return rl2_cfg_fail(cfg, rl2_cfg_at(g, "database"), st,
                                "factors.geo: 'database' \"%s\": %s", database,
                                err.msg);
        }
    }
    if (geo->variable == NULL && geo->header == NULL && geo->db == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "factors.geo: needs 'variable', 'header' or "
                            "'database': where the client's country comes "
                            "from");
    }
    return RL2_OK;
}

/* Country `code` (setting s, for messages) gets factor f, once;
 * first[] remembers where each country was given. */
static rl2_status_t
rl2_cfg_geo_set(rl2_cfg_t *cfg, const config_setting_t *s, const char *code,
                uint32_t f, const config_setting_t **first)
{
    rl2_geo_conf_t *geo = &cfg->policy->geo;
    int             i = rl2_geo_index(code, strnlen(code, 3));

    if (i < 0) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.geo: a country is two letters (\"DE\"), "
                            "not \"%s\"",
                            code);
    }
    if (first[i] != NULL) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.geo: country %c%c is listed twice "
                            "(first at line %d)",
                            'A' + i / 26, 'A' + i % 26,
                            config_setting_source_line(first[i]));
    }
    RL2_TRY(rl2_cfg_factor_bounded(cfg, s, RL2_FACTOR_GEO, "a country's factor",
                                   f));
    first[i] = s;
    geo->factor_ppm[i] = f;
    return RL2_OK;
}

/* countries = { US = 1.0; ... }: each member's name is the country. */
static rl2_status_t
rl2_cfg_geo_countries(rl2_cfg_t *cfg, const config_setting_t *g,
                      const config_setting_t **first, unsigned *n)
{
    const config_setting_t *list = rl2_cfg_at(g, "countries");
    uint32_t                f;

    *n = 0;
    if (list == NULL) {
        return RL2_OK;
    }
    if (!config_setting_is_group(list)) {
        return rl2_cfg_fail(cfg, list, RL2_ERR_CONFIG,
                            "factors.geo: 'countries' must be a group "
                            "{ US = 1.0; CN = 0.8; }");
    }
    *n = (unsigned)config_setting_length(list);
    for (unsigned i = 0; i < *n; i++) {
        const config_setting_t *s = config_setting_get_elem(list, i);
        const char             *code = config_setting_name(s);

        RL2_TRY(rl2_cfg_factor_in(cfg, s, "geo", code, &f));
        RL2_TRY(rl2_cfg_geo_set(cfg, s, code, f, first));
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_geo_region(rl2_cfg_t *cfg, const config_setting_t *s,
                   const config_setting_t **first)
{
    const char             *name = NULL;
    const config_setting_t *factor, *list;
    const char            **codes = NULL;
    size_t                  n = 0;
    uint32_t                f;

    if (!config_setting_is_group(s)) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.geo: a region must be a group "
                            "{ name = \"eu\"; countries = [ \"DE\", \"FR\" "
                            "]; factor = 1.0; }");
    }
    RL2_TRY(rl2_cfg_keys(cfg, s, "a factors.geo region", rl2_geo_region_keys));
    RL2_TRY(rl2_cfg_string(cfg, s, "name", &name));
    factor = rl2_cfg_at(s, "factor");
    if (name == NULL || factor == NULL || rl2_cfg_at(s, "countries") == NULL) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "factors.geo: a region needs 'name', 'countries' "
                            "and 'factor'");
    }
    RL2_TRY(rl2_cfg_factor_in(cfg, factor, "geo", "factor", &f));
    /* An empty list is refused there. */
    RL2_TRY(rl2_cfg_strings(cfg, s, "countries", NULL, 0, &codes, &n));
    list = rl2_cfg_at(s, "countries");
    for (size_t i = 0; i < n; i++) {
        RL2_TRY(
            rl2_cfg_geo_set(cfg, rl2_cfg_item(list, i), codes[i], f, first));
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_geo_regions(rl2_cfg_t *cfg, const config_setting_t *g,
                    const config_setting_t **first, unsigned *n)
{
    const config_setting_t *list = rl2_cfg_at(g, "regions");

    *n = 0;
    if (list == NULL) {
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_list(cfg, list, "regions", n));
    for (unsigned i = 0; i < *n; i++) {
        RL2_TRY(
            rl2_cfg_geo_region(cfg, config_setting_get_elem(list, i), first));
    }
    return RL2_OK;
}

rl2_status_t
rl2_cfg_geo(rl2_cfg_t *cfg, const config_setting_t *factors)
{
    rl2_geo_conf_t         *geo = &cfg->policy->geo;
    rl2_factor_use_t       *u = &cfg->policy->factors[RL2_FACTOR_GEO];
    const config_setting_t *g, *dflt;
    /* Where each country was given, for the message of a second. */
    const config_setting_t *first[RL2_GEO_COUNTRIES] = { NULL };
    unsigned                n_countries, n_regions;

    RL2_TRY(rl2_cfg_group(cfg, factors, "geo", rl2_geo_keys, &g));
    if (g == NULL) {
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_factor_use(cfg, g, RL2_FACTOR_GEO, u));
    RL2_TRY(rl2_cfg_geo_sources(cfg, g, geo));
    geo->factor_ppm = rl2_policy_alloc(
        cfg->policy, RL2_GEO_COUNTRIES * sizeof(*geo->factor_ppm));
    if (geo->factor_ppm == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    geo->default_ppm = RL2_OVR_FACTOR_ONE;
    if ((dflt = rl2_cfg_at(g, "default")) != NULL) {
        RL2_TRY(
            rl2_cfg_factor_in(cfg, dflt, "geo", "default", &geo->default_ppm));
        RL2_TRY(rl2_cfg_factor_bounded(cfg, dflt, RL2_FACTOR_GEO, "'default'",
                                       geo->default_ppm));
    }
    RL2_TRY(rl2_cfg_geo_countries(cfg, g, first, &n_countries));
    RL2_TRY(rl2_cfg_geo_regions(cfg, g, first, &n_regions));
    if (n_countries == 0 && n_regions == 0) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "factors.geo: needs 'countries' or 'regions': "
                            "which country gets which factor");
    }
    rl2_cfg_factor_on(cfg, RL2_FACTOR_GEO);
    return RL2_OK;
}
