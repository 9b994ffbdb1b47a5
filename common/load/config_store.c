/*
 * config_store.c -- the policy file's store settings, for the policy
 * loader (config.c): the `redis`, `failover` and `alerts` groups (the
 * equivalents of RateLimit2Redis, RateLimit2Failover, RateLimit2Alerts
 * and ratelimit2-fcgi's -R/-O, -F, -A), and tier_from.redis, the tier
 * lookup in a billing system's Redis hash.
 *
 * Values go through the core's store option parser (store_opts.h), so a
 * file and a directive accept the same things and refuse them with the
 * same words; every error names file:line.
 * Front ends fold the result into their backend conf with
 * rl2_backend_conf_policy().
 */
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/backend.h"
#include "ratelimit2/store_opts.h"
#include "ratelimit2/tier_source.h"

#include "backend/backend_internal.h"
#include "load_internal.h"

static const char *const rl2_redis_keys[] = { "server",
                                              "db",
                                              "user",
                                              "password",
                                              "connect_timeout",
                                              "timeout",
                                              "overrides_key",
                                              "lease",
                                              "lease_time",
                                              "lease_max",
                                              "pipeline",
                                              "overlimit",
                                              "overlimit_entries",
                                              NULL };
static const char *const rl2_failover_keys[] = { "mode", "share", "probe",
                                                 "failures", NULL };
static const char *const rl2_alerts_keys[] = { "enabled",  "socket",   "ident",
                                               "facility", "interval", NULL };
static const char *const rl2_tier_redis_keys[] = {
    "key", "field", "by", "cache", "cache_entries", NULL
};

/* An integer key in [lo, hi], *out untouched when absent. */
static rl2_status_t
rl2_cfg_range(const rl2_cfg_t *cfg, const config_setting_t *g, const char *key,
              int64_t lo, int64_t hi, int64_t *out)
{
    int64_t v = *out;

    RL2_TRY(rl2_cfg_int(cfg, g, key, &v));
    if (v < lo || v > hi) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, key), RL2_ERR_CONFIG,
                            "'%s' must be between %lld and %lld", key,
                            (long long)lo, (long long)hi);
    }
    *out = v;
    return RL2_OK;
}

/* The store options that are on or off. */
static int
rl2_cfg_switch(const char *key)
{
    return key != NULL
           && (strcmp(key, "lease") == 0 || strcmp(key, "overlimit") == 0
               || strcmp(key, "pipeline") == 0);
}

/* A scalar setting as the text a directive or option would give. */
static rl2_status_t
rl2_cfg_text(const rl2_cfg_t *cfg, const config_setting_t *s, char *text,
             size_t size)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_FLOAT:
        snprintf(text, size, "%.6f", config_setting_get_float(s));
        return RL2_OK;
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        snprintf(text, size, "%lld", (long long)config_setting_get_int64(s));
        return RL2_OK;
    case CONFIG_TYPE_BOOL:
        /* Only a switch takes true or false: "on" would be an odd
         * number to be told about. */
        if (rl2_cfg_switch(config_setting_name(s))) {
            snprintf(text, size, "%s",
                     config_setting_get_bool(s) ? "on" : "off");
            return RL2_OK;
        }
        break;
    case CONFIG_TYPE_STRING:
        if (strlen(config_setting_get_string(s)) < size) {
            snprintf(text, size, "%s", config_setting_get_string(s));
            return RL2_OK;
        }
        break;
    default:
        break;
    }
    return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                        "'%s' must be a number or a "
                        "string of at most %zu characters",
                        config_setting_name(s), size - 1);
}

typedef rl2_status_t (*rl2_cfg_set_fn)(rl2_backend_conf_t *bc, const char *name,
                                       const char *value, rl2_err_t *err);

/* keys[from..] of group g, those present, through the store option
 * parser set (store_opts.h): a file and a directive accept the same
 * values and refuse them with the same words, after file:line. */
static rl2_status_t
rl2_cfg_opts(const rl2_cfg_t *cfg, const config_setting_t *g,
             const char *const *keys, rl2_cfg_set_fn set,
             rl2_backend_conf_t *bc)
{
    const config_setting_t *s;
    char                    text[1024];
    rl2_err_t               e;

    for (; *keys != NULL; keys++) {
        if ((s = rl2_cfg_at(g, *keys)) == NULL) {
            continue;
        }
        RL2_TRY(rl2_cfg_text(cfg, s, text, sizeof(text)));
        if (set(bc, *keys, text, &e) != RL2_OK) {
            return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "%s", e.msg);
        }
    }
    return RL2_OK;
}

/* One string key through a store option parser of one value. */
static rl2_status_t
rl2_cfg_opt(const rl2_cfg_t *cfg, const config_setting_t *g, const char *key,
            rl2_status_t (*parse)(rl2_backend_conf_t *, const char *,
                                  rl2_err_t *),
            rl2_backend_conf_t *bc)
{
    const config_setting_t *s = rl2_cfg_at(g, key);
    const char             *text;
    rl2_err_t               e;

    RL2_TRY(rl2_cfg_string(cfg, g, key, &text));
    if (text == NULL) {
        return RL2_OK;
    }
    if (parse(bc, text, &e) != RL2_OK) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "%s", e.msg);
    }
    return RL2_OK;
}

/* ---- redis = { server = "HOST:PORT" | "/socket" | "sentinel:..." } ---- */

static rl2_status_t
rl2_cfg_redis(const rl2_cfg_t *cfg, const config_setting_t *g,
              rl2_backend_conf_t *bc)
{
    rl2_err_t e;

    if (rl2_cfg_at(g, "server") == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "'redis' needs "
                            "'server' (\"HOST:PORT\", \"[IPv6]:PORT\", "
                            "\"/path/to/socket\", "
                            "\"sentinel:NAME@HOST:PORT,...\" or "
                            "\"cluster:HOST:PORT,...\")");
    }
    RL2_TRY(rl2_cfg_opt(cfg, g, "server", rl2_store_opt_redis, bc));
    RL2_TRY(
        rl2_cfg_opts(cfg, g, rl2_redis_keys + 1, rl2_store_opt_redis_set, bc));
    if (rl2_store_opt_check(bc, 0, &e) != RL2_OK) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "%s", e.msg);
    }
    return RL2_OK;
}

/* ---- failover = { mode = "local"; share = 0.5; ... } ---- */

static rl2_status_t
rl2_cfg_failover(const rl2_cfg_t *cfg, const config_setting_t *g,
                 rl2_backend_conf_t *bc)
{
    RL2_TRY(rl2_cfg_opt(cfg, g, "mode", rl2_store_opt_failover_mode, bc));
    return rl2_cfg_opts(cfg, g, rl2_failover_keys + 1,
                        rl2_store_opt_failover_set, bc);
}

/* ---- alerts = { enabled = true; socket = "/dev/log"; ... } ---- */

static rl2_status_t
rl2_cfg_alerts(const rl2_cfg_t *cfg, const config_setting_t *g,
               rl2_backend_conf_t *bc)
{
    int enabled = 1;

    RL2_TRY(rl2_cfg_bool(cfg, g, "enabled", &enabled));
    bc->alerts_enabled = enabled;
    return rl2_cfg_opts(cfg, g, rl2_alerts_keys + 1, rl2_store_opt_alerts_set,
                        bc);
}

rl2_status_t
rl2_cfg_store(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_store_t     *ps;
    const config_setting_t *r, *f, *a;

    RL2_TRY(rl2_cfg_group(cfg, root, "redis", rl2_redis_keys, &r));
    RL2_TRY(rl2_cfg_group(cfg, root, "failover", rl2_failover_keys, &f));
    RL2_TRY(rl2_cfg_group(cfg, root, "alerts", rl2_alerts_keys, &a));
    if (r == NULL && f == NULL && a == NULL) {
        return RL2_OK;
    }
    if ((ps = rl2_policy_alloc(cfg->policy, sizeof(*ps))) == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    rl2_backend_conf_init(&ps->conf);
    if (r != NULL) {
        RL2_TRY(rl2_cfg_redis(cfg, r, &ps->conf));
        ps->given |= RL2_BACKEND_GIVEN_REDIS;
    }
    if (f != NULL) {
        RL2_TRY(rl2_cfg_failover(cfg, f, &ps->conf));
        ps->given |= RL2_BACKEND_GIVEN_FAILOVER;
    }
    if (a != NULL) {
        RL2_TRY(rl2_cfg_alerts(cfg, a, &ps->conf));
        ps->given |= RL2_BACKEND_GIVEN_ALERTS;
    }
    cfg->policy->store = ps;
    return RL2_OK;
}

/* ---- tier_from = { redis = { key = "..."; field = "tier"; ... } } ---- */

/* Exactly one "%s" in key and field together, and no other '%'. */
static rl2_status_t
rl2_cfg_tier_pattern(const rl2_cfg_t *cfg, const config_setting_t *g,
                     const rl2_tier_redis_t *tr)
{
    const char *texts[2] = { tr->key, tr->field };
    int         holes = 0;

    for (int i = 0; i < 2; i++) {
        for (const char *p = strchr(texts[i], '%'); p != NULL;
             p = strchr(p + 2, '%')) {
            if (p[1] != 's') {
                return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                                    "'%s' may hold "
                                    "'%%s' (the client's identity) and no "
                                    "other '%%'",
                                    i == 0 ? "key" : "field");
            }
            holes++;
        }
    }
    if (holes != 1) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "exactly one of 'key' "
                            "and 'field' must hold '%%s', once, for the "
                            "client's identity (found %d)",
                            holes);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_tier_by(rl2_cfg_t *cfg, const config_setting_t *g, rl2_tier_redis_t *tr)
{
    const char **by;
    size_t       n;

    tr->by[0] = RL2_TIER_BY_USER;
    tr->n_by = 1;
    RL2_TRY(rl2_cfg_strings(cfg, g, "by", NULL, 0, &by, &n));
    if (n > RL2_TIER_BY_MAX) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "by"), RL2_ERR_CONFIG,
                            "'by' names at most \"user\" and \"api_key\"");
    }
    for (size_t i = 0; i < n; i++) {
        unsigned kind = strcmp(by[i], "user") == 0      ? RL2_TIER_BY_USER
                        : strcmp(by[i], "api_key") == 0 ? RL2_TIER_BY_APIKEY
                                                        : 0;

        if (kind == 0 || (i == 1 && kind == tr->by[0])) {
            return rl2_cfg_fail(cfg, rl2_cfg_at(g, "by"), RL2_ERR_CONFIG,
                                "'by' must be \"user\", \"api_key\" or "
                                "both, each once, not \"%s\"",
                                by[i]);
        }
        if (kind == RL2_TIER_BY_APIKEY && cfg->policy->apikey_header == NULL
            && cfg->policy->apikey_query == NULL) {
            return rl2_cfg_fail(cfg, rl2_cfg_at(g, "by"), RL2_ERR_CONFIG,
                                "'by' names \"api_key\" but the policy "
                                "reads no API key (api_key = { header = "
                                "...; })");
        }
        tr->by[i] = kind;
    }
    tr->n_by = n > 0 ? n : 1;
    return RL2_OK;
}

rl2_status_t
rl2_cfg_tier_redis(rl2_cfg_t *cfg, const config_setting_t *tier_from)
{
    const config_setting_t *g;
    rl2_tier_redis_t       *tr;
    int64_t                 cache = 60, entries = 10000;

    RL2_TRY(rl2_cfg_group(cfg, tier_from, "redis", rl2_tier_redis_keys, &g));
    if (g == NULL) {
        return RL2_OK;
    }
    if ((tr = rl2_policy_alloc(cfg->policy, sizeof(*tr))) == NULL
        || (tr->file = rl2_cfg_source(cfg, g)) == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    tr->line = (int)config_setting_source_line(g);
    RL2_TRY(rl2_cfg_copy(cfg, g, "key", &tr->key));
    if (tr->key == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG,
                            "tier_from.redis needs "
                            "'key', the Redis hash (e.g. \"billing:user:%%s\" "
                            "or \"billing:tiers\")");
    }
    RL2_TRY(rl2_cfg_copy(cfg, g, "field", &tr->field));
    tr->field = tr->field != NULL ? tr->field : "tier";
    RL2_TRY(rl2_cfg_tier_pattern(cfg, g, tr));
    RL2_TRY(rl2_cfg_tier_by(cfg, g, tr));
    RL2_TRY(rl2_cfg_range(cfg, g, "cache", 0, 86400, &cache));
    RL2_TRY(rl2_cfg_range(cfg, g, "cache_entries", 16, 10000000, &entries));
    tr->cache_us = cache * RL2_US_PER_S;
    tr->cache_entries = (uint32_t)entries;
    cfg->policy->tier_redis = tr;
    return RL2_OK;
}
