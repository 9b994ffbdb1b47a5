/*
 * mod_ratelimit2_config.c -- the Apache module's configuration: server and
 * per-directory records with their merges, the directive handlers, and
 * inline RateLimit2Limit parsing (through the core's shared parsers, so
 * inline limits mean exactly what the policy file's do).
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"

#include "apr_strings.h"
#include "apr_tables.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ratelimit2/config.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/store_local.h"
#include "ratelimit2/store_opts.h"

#include "mod_ratelimit2.h"

rl2_global_conf_t rl2_global;

/* ---- configuration records ---- */

void *
rl2_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    rl2_srv_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    (void)s;
    conf->trusted = apr_array_make(p, 4, sizeof(rl2_cidr_t));
    conf->mode = RL2_UNSET;
    conf->reset_delta = RL2_UNSET;
    conf->legacy = RL2_UNSET;
    conf->body_problem = RL2_UNSET;
    return conf;
}

void *
rl2_merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    rl2_srv_conf_t *base = basev, *add = addv;
    rl2_srv_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->policy_file = add->policy_file ? add->policy_file : base->policy_file;
    conf->policy = add->policy ? add->policy : base->policy;
    conf->trusted = apr_array_append(p, base->trusted, add->trusted);
    conf->mode = add->mode != RL2_UNSET ? add->mode : base->mode;
    conf->reset_delta =
        add->reset_delta != RL2_UNSET ? add->reset_delta : base->reset_delta;
    conf->legacy = add->legacy != RL2_UNSET ? add->legacy : base->legacy;
    conf->body_problem =
        add->body_problem != RL2_UNSET ? add->body_problem : base->body_problem;
    return conf;
}

void *
rl2_create_dir_conf(apr_pool_t *p, char *dir)
{
    rl2_dir_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    (void)dir;
    conf->engine = RL2_UNSET;
    conf->mode = RL2_UNSET;
    conf->rules = apr_array_make(p, 2, sizeof(rl2_rule_t));
    return conf;
}

/* Inline limits combine with the parent's (all must pass); a limit of
 * the same name in the child replaces the parent's. */
void *
rl2_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    rl2_dir_conf_t   *base = basev, *add = addv;
    rl2_dir_conf_t   *conf = apr_pcalloc(p, sizeof(*conf));
    const rl2_rule_t *b = (const rl2_rule_t *)base->rules->elts;
    const rl2_rule_t *a = (const rl2_rule_t *)add->rules->elts;

    conf->engine = add->engine != RL2_UNSET ? add->engine : base->engine;
    conf->mode = add->mode != RL2_UNSET ? add->mode : base->mode;
    /* Merges run for every request: share a side's array when there is
     * nothing to combine. */
    if (add->mode == RL2_UNSET
        && (add->rules->nelts == 0 || base->rules->nelts == 0)) {
        rl2_dir_conf_t *only = add->rules->nelts ? add : base;

        conf->rules = only->rules;
        conf->phases = only->phases;
        return conf;
    }
    conf->rules = apr_array_make(p, base->rules->nelts + add->rules->nelts,
                                 sizeof(rl2_rule_t));
    for (int i = 0; i < base->rules->nelts; i++) {
        int replaced = 0;

        for (int j = 0; j < add->rules->nelts && !replaced; j++) {
            replaced = strcmp(b[i].name, a[j].name) == 0;
        }
        if (!replaced) {
            *(rl2_rule_t *)apr_array_push(conf->rules) = b[i];
            conf->phases |= b[i].limits.limits[0].phase;
        }
    }
    for (int j = 0; j < add->rules->nelts; j++) {
        *(rl2_rule_t *)apr_array_push(conf->rules) = a[j];
        conf->phases |= a[j].limits.limits[0].phase;
    }
    /* RateLimit2Mode in a section governs every inline limit in it,
     * wherever the directive stands relative to the limits. */
    for (int i = 0; add->mode != RL2_UNSET && i < conf->rules->nelts; i++) {
        ((rl2_rule_t *)conf->rules->elts)[i].mode = (rl2_mode_t)add->mode;
    }
    return conf;
}

/* ---- directive handlers ---- */

apr_status_t
rl2_policy_cleanup(void *data)
{
    rl2_policy_free(data);
    return APR_SUCCESS;
}

static const char *
rl2_set_policy(cmd_parms *cmd, void *dummy, const char *arg)
{
    rl2_srv_conf_t *conf =
        ap_get_module_config(cmd->server->module_config, &ratelimit2_module);
    const char   *path = ap_server_root_relative(cmd->pool, arg);
    rl2_policy_t *policy;
    rl2_err_t     err;

    (void)dummy;
    if (path == NULL) {
        return apr_psprintf(cmd->pool, "RateLimit2Policy: invalid path %s",
                            arg);
    }
    if (rl2_config_load(path, &policy, &err) != RL2_OK) {
        return apr_pstrdup(cmd->pool, err.msg);
    }
    apr_pool_cleanup_register(cmd->pool, policy, rl2_policy_cleanup,
                              apr_pool_cleanup_null);
    rl2_ap_load_measure(policy);
    conf->policy_file = path;
    conf->policy = policy;
    return NULL;
}

static const char *
rl2_set_zone(cmd_parms *cmd, void *dummy, const char *name, const char *entries)
{
    const char *msg = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    rl2_err_t   err;

    (void)dummy;
    if (msg != NULL) {
        return msg;
    }
    if (rl2_store_opt_zone_name(&rl2_global.backend, name, &err) != RL2_OK
        || (entries != NULL
            && rl2_store_opt_zone_entries(&rl2_global.backend, entries, &err)
                   != RL2_OK)) {
        return apr_pstrcat(cmd->pool, "RateLimit2Zone: ", err.msg, NULL);
    }
    return NULL;
}

static const char *
rl2_add_trusted(cmd_parms *cmd, void *dummy, const char *arg)
{
    rl2_srv_conf_t *conf =
        ap_get_module_config(cmd->server->module_config, &ratelimit2_module);
    rl2_cidr_t *net = apr_array_push(conf->trusted);
    rl2_err_t   err;

    (void)dummy;
    if (rl2_cidr_parse(arg, net, &err) != RL2_OK) {
        return apr_psprintf(cmd->pool, "RateLimit2TrustedProxy: %s", err.msg);
    }
    return NULL;
}

static const char *
rl2_set_mode(cmd_parms *cmd, void *dirconf, const char *arg)
{
    rl2_mode_t mode;
    rl2_err_t  err;

    if (rl2_mode_parse(arg, &mode, &err) != RL2_OK) {
        return apr_psprintf(cmd->pool, "RateLimit2Mode: %s", err.msg);
    }
    if (cmd->path == NULL) {
        rl2_srv_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                                    &ratelimit2_module);
        conf->mode = mode;
    }
    else {
        ((rl2_dir_conf_t *)dirconf)->mode = mode;
    }
    return NULL;
}

static const char *
rl2_set_legacy(cmd_parms *cmd, void *dummy, int on)
{
    rl2_srv_conf_t *conf =
        ap_get_module_config(cmd->server->module_config, &ratelimit2_module);

    (void)dummy;
    conf->legacy = on;
    return NULL;
}

static const char *
rl2_set_reset(cmd_parms *cmd, void *dummy, const char *arg)
{
    rl2_srv_conf_t *conf =
        ap_get_module_config(cmd->server->module_config, &ratelimit2_module);

    (void)dummy;
    if (strcasecmp(arg, "epoch") == 0) {
        conf->reset_delta = 0;
    }
    else if (strcasecmp(arg, "delta") == 0) {
        conf->reset_delta = 1;
    }
    else {
        return "RateLimit2ResetFormat: expected epoch or delta";
    }
    return NULL;
}

static const char *
rl2_set_body(cmd_parms *cmd, void *dummy, const char *arg)
{
    rl2_srv_conf_t *conf =
        ap_get_module_config(cmd->server->module_config, &ratelimit2_module);

    (void)dummy;
    if (strcasecmp(arg, "json") == 0) {
        conf->body_problem = 0;
    }
    else if (strcasecmp(arg, "problem+json") == 0) {
        conf->body_problem = 1;
    }
    else {
        return "RateLimit2BodyFormat: expected json or problem+json";
    }
    return NULL;
}

static const char *
rl2_set_engine(cmd_parms *cmd, void *dirconf, int on)
{
    (void)cmd;
    ((rl2_dir_conf_t *)dirconf)->engine = on;
    return NULL;
}

/* One "key=value" option of RateLimit2Limit into the limit. */
static const char *
rl2_inline_option(apr_pool_t *p, rl2_policy_t *arena, rl2_limit_t *limit,
                  const char *word)
{
    const char *eq = strchr(word, '=');
    const char *name, *val;
    rl2_err_t   err;
    char       *end;

    if (eq == NULL) {
        return apr_psprintf(p, "expected key=value, got \"%s\"", word);
    }
    name = apr_pstrmemdup(p, word, (apr_size_t)(eq - word));
    val = eq + 1;
    if (strcmp(name, "key") == 0) {
        if (rl2_key_parse(arena, val, &limit->key, &limit->key_header, &err)
            != RL2_OK) {
            return apr_pstrdup(p, err.msg);
        }
    }
    else if (strcmp(name, "algorithm") == 0) {
        limit->algo.algo = rl2_algo_from_name(val);
        if (limit->algo.algo == RL2_ALGO_COUNT) {
            return apr_psprintf(p, "unknown algorithm \"%s\"", val);
        }
    }
    else if (strcmp(name, "burst") == 0 || strcmp(name, "cost") == 0) {
        apr_int64_t n = apr_strtoi64(val, &end, 10);

        if (*end != '\0' || n < 1) {
            return apr_psprintf(p, "%s must be a positive number", name);
        }
        *(strcmp(name, "burst") == 0 ? &limit->algo.burst : &limit->cost) = n;
    }
    else if (strcmp(name, "overflow") == 0) {
        rl2_period_t period;

        if (rl2_rate_parse(val, &limit->overflow.limit,
                           &limit->overflow.window_us, &period, &err)
            != RL2_OK) {
            return apr_psprintf(p, "overflow: %s", err.msg);
        }
    }
    else if (strcmp(name, "lease") == 0) {
        if (strcasecmp(val, "on") != 0 && strcasecmp(val, "off") != 0) {
            return apr_psprintf(p, "lease must be on or off, not \"%s\"", val);
        }
        limit->lease =
            strcasecmp(val, "on") == 0 ? RL2_LEASE_ON : RL2_LEASE_OFF;
    }
    else {
        return apr_psprintf(p,
                            "unknown option \"%s\" (expected key, "
                            "algorithm, burst, cost, overflow or lease)",
                            name);
    }
    return NULL;
}

/* The count/window of RateLimit2Limit: "100/60s", "20/day", or a bare
 * count for a concurrency limit. */
static const char *
rl2_inline_rate(apr_pool_t *p, rl2_limit_t *limit, const char *rate)
{
    rl2_err_t err;
    char     *end;

    if (strchr(rate, '/') == NULL) {
        limit->algo.limit = apr_strtoi64(rate, &end, 10);
        if (*end != '\0' || limit->algo.limit < 1) {
            return apr_psprintf(p, "invalid rate \"%s\"", rate);
        }
        return NULL;
    }
    if (rl2_rate_parse(rate, &limit->algo.limit, &limit->algo.window_us,
                       &limit->algo.period, &err)
        != RL2_OK) {
        return apr_pstrdup(p, err.msg);
    }
    return NULL;
}

/* A window rate is meaningless for concurrency and a calendar quota
 * takes its period from the rate; settle both once the options are in. */
static const char *
rl2_inline_settle(apr_pool_t *p, rl2_limit_t *limit, const char *rate)
{
    int has_window = strchr(rate, '/') != NULL;

    if (limit->algo.algo == RL2_ALGO_CONCURRENCY) {
        if (has_window) {
            return "a concurrency limit takes a count, not a rate";
        }
        return NULL;
    }
    if (!has_window) {
        return apr_psprintf(p, "invalid rate \"%s\": expected COUNT/WINDOW",
                            rate);
    }
    if (limit->algo.algo == RL2_ALGO_QUOTA) {
        if (limit->algo.period == RL2_PERIOD_NONE) {
            return "a quota needs a rate per day or per month";
        }
        limit->algo.window_us = 0;
    }
    else if (limit->algo.period == RL2_PERIOD_MONTH) {
        return "a rate per month needs algorithm=quota";
    }
    else {
        limit->algo.period = RL2_PERIOD_NONE;
    }
    return NULL;
}

static int
rl2_name_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > RL2_NAME_MAX) {
        return 0;
    }
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_.-")
           == n;
}

/* RateLimit2Limit NAME RATE [key=..] [algorithm=..] [burst=N] [cost=N]
 *                 [overflow=K/W] */
static const char *
rl2_add_limit(cmd_parms *cmd, void *dirconf, const char *args)
{
    rl2_dir_conf_t *conf = dirconf;
    const char     *name = ap_getword_conf(cmd->pool, &args);
    const char     *rate = ap_getword_conf(cmd->pool, &args);
    rl2_policy_t   *arena;
    rl2_rule_t     *rule;
    rl2_limit_t    *limit;
    const char     *msg, *word;
    rl2_err_t       err;

    if (!rl2_name_valid(name) || *rate == '\0') {
        return "RateLimit2Limit: expected NAME RATE [key=..] "
               "[algorithm=..] [burst=N] [cost=N] [overflow=K/W], NAME of "
               "letters, digits, _ . -";
    }
    if (rl2_policy_create("inline", &arena, &err) != RL2_OK) {
        return apr_pstrdup(cmd->pool, err.msg);
    }
    apr_pool_cleanup_register(cmd->pool, arena, rl2_policy_cleanup,
                              apr_pool_cleanup_null);
    limit = rl2_policy_alloc(arena, sizeof(*limit));
    rule = apr_array_push(conf->rules);
    memset(rule, 0, sizeof(*rule));
    limit->name = rl2_policy_strdup(arena, name);
    limit->file = cmd->directive->filename;
    limit->line = cmd->directive->line_num;
    limit->algo.algo = RL2_ALGO_FIXED_WINDOW;
    limit->key = RL2_KEY_IP;
    limit->cost = 1;
    msg = rl2_inline_rate(cmd->pool, limit, rate);
    while (msg == NULL && *(word = ap_getword_conf(cmd->pool, &args))) {
        msg = rl2_inline_option(cmd->pool, arena, limit, word);
    }
    if (msg == NULL) {
        msg = rl2_inline_settle(cmd->pool, limit, rate);
    }
    if (msg == NULL && rl2_limit_finish(arena, limit, 0, &err) != RL2_OK) {
        msg = apr_pstrdup(cmd->pool, err.msg);
    }
    if (msg != NULL) {
        return apr_psprintf(cmd->pool, "RateLimit2Limit %s: %s", name, msg);
    }
    rule->name = limit->name;
    rule->file = limit->file;
    rule->line = limit->line;
    rule->mode =
        conf->mode == RL2_UNSET ? RL2_MODE_INHERIT : (rl2_mode_t)conf->mode;
    rule->limits = (rl2_limit_set_t){ limit, 1, 1, 0 };
    conf->phases |= limit->phase;
    if (limit->state_size > rl2_global.inline_state_max) {
        rl2_global.inline_state_max = limit->state_size;
    }
    return NULL;
}

const command_rec rl2_cmds[] = {
    AP_INIT_TAKE1("RateLimit2Policy", rl2_set_policy, NULL, RSRC_CONF,
                  "Policy file (libconfig) to enforce"),
    AP_INIT_TAKE12("RateLimit2Zone", rl2_set_zone, NULL, RSRC_CONF,
                   "Shared-memory zone name (/name) and number of entries"),
    AP_INIT_ITERATE("RateLimit2TrustedProxy", rl2_add_trusted, NULL, RSRC_CONF,
                    "Addresses or CIDRs of proxies whose "
                    "X-Forwarded-For is believed"),
    AP_INIT_TAKE1("RateLimit2Mode", rl2_set_mode, NULL, RSRC_CONF | ACCESS_CONF,
                  "enforce, dry_run or off"),
    AP_INIT_RAW_ARGS("RateLimit2Redis", rl2_set_redis, NULL, RSRC_CONF,
                     "HOST:PORT, /socket, sentinel:NAME@H:P,... or "
                     "cluster:H:P,..., "
                     "then db=, user=, password=, "
                     "connect_timeout=MS, timeout=MS: count in Redis"),
    AP_INIT_RAW_ARGS("RateLimit2Failover", rl2_set_failover, NULL, RSRC_CONF,
                     "local|open|closed [share=F] [probe=MS] "
                     "[failures=N]: what to do while Redis is down"),
    AP_INIT_RAW_ARGS("RateLimit2Alerts", rl2_set_alerts, NULL, RSRC_CONF,
                     "On|Off [socket=PATH] [ident=NAME] [facility=F] "
                     "[interval=S]: syslog alerts about the store"),
    AP_INIT_TAKE1("RateLimit2ResetFormat", rl2_set_reset, NULL, RSRC_CONF,
                  "X-RateLimit-Reset as epoch seconds (default) or delta"),
    AP_INIT_TAKE1("RateLimit2BodyFormat", rl2_set_body, NULL, RSRC_CONF,
                  "the 429 body: json (default) or problem+json"),
    AP_INIT_FLAG("RateLimit2LegacyHeaders", rl2_set_legacy, NULL, RSRC_CONF,
                 "On to send X-RateLimit-Limit, -Remaining and -Reset "
                 "(default Off: RateLimit and RateLimit-Policy only)"),
    AP_INIT_FLAG("RateLimit2Engine", rl2_set_engine, NULL,
                 RSRC_CONF | ACCESS_CONF,
                 "On to limit requests here (default), Off to skip"),
    AP_INIT_FLAG("RateLimit2Metrics", rl2_set_metrics, NULL, RSRC_CONF,
                 "On|Off: count requests in <zone>.metrics (default On)"),
    AP_INIT_RAW_ARGS("RateLimit2Events", rl2_set_events, NULL, RSRC_CONF,
                     "[limited=SECONDS|off] [ban=COUNT/SECONDS|off] "
                     "[evictions=PER_MINUTE|off] [anomaly=PER_MINUTE|off] "
                     "[zone_full=WARNING[/CRITICAL]|off]"),
    AP_INIT_RAW_ARGS("RateLimit2Limit", rl2_add_limit, NULL,
                     RSRC_CONF | ACCESS_CONF,
                     "NAME RATE [key=ip|user|api_key|header:NAME|route|"
                     "global] [algorithm=..] [burst=N] [cost=N] "
                     "[overflow=K/W]"),
    { NULL }
};
