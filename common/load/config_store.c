/*
 * config_store.c -- the policy file's store settings, for the policy
 * loader (config.c): the `redis`, `failover` and `alerts` groups (the
 * equivalents of RateLimit2Redis, RateLimit2Failover, RateLimit2Alerts
 * and ratelimit2-fcgi's -R/-O, -F, -A), and tier_from.redis, the tier
 * lookup in a billing system's Redis hash.
 *
 * Values are checked with the core's own parsers and bounds, so a file
 * and a directive accept the same things; every error names file:line.
 * Front ends fold the result into their backend conf with
 * rl2_backend_conf_policy().
 */
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/backend.h"
#include "ratelimit2/tier_source.h"

#include "load_internal.h"

static const char *const rl2_redis_keys[] = {
    "server", "db", "user", "password", "connect_timeout", "timeout", NULL
};
static const char *const rl2_failover_keys[] = {
    "mode", "share", "probe", "failures", NULL
};
static const char *const rl2_alerts_keys[] = {
    "enabled", "socket", "ident", "facility", "interval", NULL
};
static const char *const rl2_tier_redis_keys[] = {
    "key", "field", "by", "cache", "cache_entries", NULL
};

/* An integer key in [lo, hi], *out untouched when absent. */
static rl2_status_t
rl2_cfg_range(const rl2_cfg_t *cfg, const config_setting_t *g,
              const char *key, int64_t lo, int64_t hi, int64_t *out)
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

/* A string key copied into dst[size]; absent: dst untouched. */
static rl2_status_t
rl2_cfg_fixed(const rl2_cfg_t *cfg, const config_setting_t *g,
              const char *key, char *dst, size_t size)
{
    const char *text;

    RL2_TRY(rl2_cfg_string(cfg, g, key, &text));
    if (text == NULL) {
        return RL2_OK;
    }
    if (strlen(text) >= size) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, key), RL2_ERR_CONFIG,
                            "'%s' is longer than %zu bytes", key, size - 1);
    }
    memcpy(dst, text, strlen(text) + 1);
    return RL2_OK;
}

/* ---- redis = { server = "HOST:PORT" | "/socket" | "sentinel:..." } ---- */

static rl2_status_t
rl2_cfg_redis_server(const rl2_cfg_t *cfg, const config_setting_t *g,
                     rl2_redis_conf_t *rc)
{
    const config_setting_t *s = rl2_cfg_at(g, "server");
    const char *addr, *colon;
    char *end;
    long port;
    rl2_err_t e;

    RL2_TRY(rl2_cfg_string(cfg, g, "server", &addr));
    if (addr == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "'redis' needs "
                            "'server' (\"HOST:PORT\", \"/path/to/socket\", "
                            "\"sentinel:NAME@HOST:PORT,...\" or "
                            "\"cluster:HOST:PORT,...\")");
    }
    if (strncmp(addr, "sentinel:", 9) == 0
        || strncmp(addr, "cluster:", 8) == 0) {
        rl2_status_t st = addr[0] == 's'
                          ? rl2_redis_sentinel_parse(rc, addr + 9, &e)
                          : rl2_redis_cluster_parse(rc, addr + 8, &e);

        return st == RL2_OK ? RL2_OK
               : rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "%s", e.msg);
    }
    if (addr[0] == '/') {
        if (strlen(addr) >= sizeof(rc->unix_path)) {
            return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "redis socket path "
                                "longer than %zu bytes",
                                sizeof(rc->unix_path) - 1);
        }
        memcpy(rc->unix_path, addr, strlen(addr) + 1);
        return RL2_OK;
    }
    colon = strrchr(addr, ':');
    port = colon != NULL ? strtol(colon + 1, &end, 10) : 0;
    if (colon == NULL || colon == addr || *end != '\0' || port < 1
        || port > 65535 || (size_t)(colon - addr) >= sizeof(rc->host)) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'server' must be "
                            "\"HOST:PORT\", \"/path/to/socket\", "
                            "\"sentinel:NAME@HOST:PORT,...\" or "
                            "\"cluster:HOST:PORT,...\", not \"%s\"", addr);
    }
    /* "[::1]:6379": the brackets only delimit the address. */
    if (addr[0] == '[' && colon[-1] == ']') {
        snprintf(rc->host, sizeof(rc->host), "%.*s",
                 (int)(colon - addr - 2), addr + 1);
    }
    else {
        snprintf(rc->host, sizeof(rc->host), "%.*s", (int)(colon - addr),
                 addr);
    }
    rc->port = (int)port;
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_redis(const rl2_cfg_t *cfg, const config_setting_t *g,
              rl2_backend_conf_t *bc)
{
    rl2_redis_conf_t *rc = &bc->redis;
    int64_t db = 0, connect = rc->connect_timeout_ms;
    int64_t timeout = rc->command_timeout_ms;
    rl2_err_t e;

    RL2_TRY(rl2_cfg_redis_server(cfg, g, rc));
    RL2_TRY(rl2_cfg_range(cfg, g, "db", 0, 15, &db));
    RL2_TRY(rl2_cfg_fixed(cfg, g, "user", rc->username,
                          sizeof(rc->username)));
    RL2_TRY(rl2_cfg_fixed(cfg, g, "password", rc->password,
                          sizeof(rc->password)));
    RL2_TRY(rl2_cfg_range(cfg, g, "connect_timeout", 1, 60000, &connect));
    RL2_TRY(rl2_cfg_range(cfg, g, "timeout", 1, 60000, &timeout));
    rc->db = (int)db;
    rc->connect_timeout_ms = (int)connect;
    rc->command_timeout_ms = (int)timeout;
    if (rl2_redis_conf_check(rc, &e) != RL2_OK) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "%s", e.msg);
    }
    bc->redis_enabled = 1;
    return RL2_OK;
}

/* ---- failover = { mode = "local"; share = 0.5; ... } ---- */

/* share as a number (0.5) or a string ("0.5"), through the same decimal
 * parser as the directive's. */
static rl2_status_t
rl2_cfg_share(const rl2_cfg_t *cfg, const config_setting_t *g,
              uint32_t *ppm)
{
    const config_setting_t *s = rl2_cfg_at(g, "share");
    char text[64];
    rl2_err_t e;

    if (s == NULL) {
        return RL2_OK;
    }
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_FLOAT:
        snprintf(text, sizeof(text), "%.6f", config_setting_get_float(s));
        break;
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        snprintf(text, sizeof(text), "%lld",
                 (long long)config_setting_get_int64(s));
        break;
    case CONFIG_TYPE_STRING:
        snprintf(text, sizeof(text), "%s", config_setting_get_string(s));
        break;
    default:
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'share' must be a "
                            "number from 0.001 to 1");
    }
    if (rl2_failover_share_parse(text, ppm, &e) != RL2_OK) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "%s", e.msg);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_failover(const rl2_cfg_t *cfg, const config_setting_t *g,
                 rl2_backend_conf_t *bc)
{
    const char *mode;
    int64_t probe = bc->circuit.probe_interval_ms;
    int64_t failures = bc->circuit.failures_to_open;
    rl2_err_t e;

    RL2_TRY(rl2_cfg_string(cfg, g, "mode", &mode));
    if (mode != NULL
        && rl2_failover_mode_parse(mode, &bc->failover_mode, &e) != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "mode"), RL2_ERR_CONFIG,
                            "%s", e.msg);
    }
    RL2_TRY(rl2_cfg_share(cfg, g, &bc->local_share_ppm));
    RL2_TRY(rl2_cfg_range(cfg, g, "probe", 1, 3600000, &probe));
    RL2_TRY(rl2_cfg_range(cfg, g, "failures", 1, 1000, &failures));
    bc->circuit.probe_interval_ms = probe;
    bc->circuit.failures_to_open = (uint32_t)failures;
    return RL2_OK;
}

/* ---- alerts = { enabled = true; socket = "/dev/log"; ... } ---- */

static rl2_status_t
rl2_cfg_alerts(const rl2_cfg_t *cfg, const config_setting_t *g,
               rl2_backend_conf_t *bc)
{
    const char *facility;
    int64_t interval = bc->alert_interval_ms / 1000;
    rl2_err_t e;

    bc->alerts_enabled = 1;
    RL2_TRY(rl2_cfg_bool(cfg, g, "enabled", &bc->alerts_enabled));
    RL2_TRY(rl2_cfg_fixed(cfg, g, "socket", bc->alert_socket,
                          sizeof(bc->alert_socket)));
    if (bc->alert_socket[0] != '/') {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "socket"), RL2_ERR_CONFIG,
                            "'socket' must be an absolute path");
    }
    RL2_TRY(rl2_cfg_fixed(cfg, g, "ident", bc->alert_ident,
                          sizeof(bc->alert_ident)));
    RL2_TRY(rl2_cfg_string(cfg, g, "facility", &facility));
    if (facility != NULL
        && rl2_alert_facility_parse(facility, &bc->alert_facility, &e)
           != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "facility"), RL2_ERR_CONFIG,
                            "%s", e.msg);
    }
    RL2_TRY(rl2_cfg_range(cfg, g, "interval", 1, 86400, &interval));
    bc->alert_interval_ms = interval * 1000;
    return RL2_OK;
}

rl2_status_t
rl2_cfg_store(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_store_t *ps;
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
    int holes = 0;

    for (int i = 0; i < 2; i++) {
        for (const char *p = strchr(texts[i], '%'); p != NULL;
             p = strchr(p + 2, '%')) {
            if (p[1] != 's') {
                return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "'%s' may hold "
                                    "'%%s' (the client's identity) and no "
                                    "other '%%'", i == 0 ? "key" : "field");
            }
            holes++;
        }
    }
    if (holes != 1) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "exactly one of 'key' "
                            "and 'field' must hold '%%s', once, for the "
                            "client's identity (found %d)", holes);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_tier_by(rl2_cfg_t *cfg, const config_setting_t *g,
                rl2_tier_redis_t *tr)
{
    const char **by;
    size_t n;

    tr->by[0] = RL2_TIER_BY_USER;
    tr->n_by = 1;
    RL2_TRY(rl2_cfg_strings(cfg, g, "by", NULL, 0, &by, &n));
    if (n > RL2_TIER_BY_MAX) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "by"), RL2_ERR_CONFIG,
                            "'by' names at most \"user\" and \"api_key\"");
    }
    for (size_t i = 0; i < n; i++) {
        unsigned kind = strcmp(by[i], "user") == 0 ? RL2_TIER_BY_USER
                        : strcmp(by[i], "api_key") == 0 ? RL2_TIER_BY_APIKEY
                        : 0;

        if (kind == 0 || (i == 1 && kind == tr->by[0])) {
            return rl2_cfg_fail(cfg, rl2_cfg_at(g, "by"), RL2_ERR_CONFIG,
                                "'by' must be \"user\", \"api_key\" or "
                                "both, each once, not \"%s\"", by[i]);
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
    rl2_tier_redis_t *tr;
    int64_t cache = 60, entries = 10000;

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
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "tier_from.redis needs "
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
