/*
 * mod_ratelimit2_store.c -- the server-wide store directives:
 * RateLimit2Redis, RateLimit2Failover and RateLimit2Alerts.  They fill
 * rl2_global.backend, which post_config hands to rl2_backend_open(); the
 * values go through the core's own parsers, so ratelimit2-fcgi's options
 * mean the same.  A directive replaces the whole matching group (redis,
 * failover, alerts) of the main server's policy file; groups no directive
 * sets come from the file (rl2_backend_conf_policy() in post_config).
 */
#include "httpd.h"
#include "http_config.h"

#include "apr_strings.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ratelimit2/alert.h"
#include "ratelimit2/failover.h"
#include "ratelimit2/redis.h"

#include "mod_ratelimit2.h"

/* ---- Redis, failover and alerts (main server only) ---- */

/* One "name=value" option of a store directive; returns NULL or what was
 * expected. */
typedef const char *(*rl2_option_fn)(apr_pool_t *p, rl2_backend_conf_t *bc,
                                     const char *name, const char *value);

/* A positive number (milliseconds, seconds or a count) up to max. */
static int
rl2_positive(const char *text, apr_int64_t max, apr_int64_t *out)
{
    char *end;

    *out = apr_strtoi64(text, &end, 10);
    return *end == '\0' && *out > 0 && *out <= max;
}

/* Apply every remaining "name=value" word of args; an error names the
 * directive and the word. */
static const char *
rl2_each_option(cmd_parms *cmd, const char *args, rl2_option_fn fn)
{
    const char *word, *eq, *msg;

    while (*(word = ap_getword_conf(cmd->pool, &args)) != '\0') {
        eq = strchr(word, '=');
        msg = eq == NULL || eq == word
              ? "expected option=value"
              : fn(cmd->pool, &rl2_global.backend,
                   apr_pstrmemdup(cmd->pool, word, (apr_size_t)(eq - word)),
                   eq + 1);
        if (msg != NULL) {
            return apr_psprintf(cmd->pool, "%s: bad option \"%s\": %s",
                                cmd->cmd->name, word, msg);
        }
    }
    return NULL;
}

static const char *
rl2_redis_option(apr_pool_t *p, rl2_backend_conf_t *bc, const char *name,
                 const char *val)
{
    rl2_redis_conf_t *rc = &bc->redis;
    apr_int64_t n;

    (void)p;
    if (strcmp(name, "db") == 0 && (rl2_positive(val, 15, &n)
                                    || strcmp(val, "0") == 0)) {
        rc->db = strcmp(val, "0") == 0 ? 0 : (int)n;
    }
    else if (strcmp(name, "user") == 0) {
        apr_cpystrn(rc->username, val, sizeof(rc->username));
    }
    else if (strcmp(name, "password") == 0) {
        apr_cpystrn(rc->password, val, sizeof(rc->password));
    }
    else if (strcmp(name, "connect_timeout") == 0
             && rl2_positive(val, 60000, &n)) {
        rc->connect_timeout_ms = (int)n;
    }
    else if (strcmp(name, "timeout") == 0 && rl2_positive(val, 60000, &n)) {
        rc->command_timeout_ms = (int)n;
    }
    else {
        return "expected db=0..15, user=, password=, connect_timeout=MS, "
               "timeout=MS";
    }
    return NULL;
}

/* RateLimit2Redis host:port|/path/to.sock|sentinel:NAME@host:port,...
 *                 |cluster:host:port,... [db=N] [user=U] [password=P]
 *                 [connect_timeout=MS] [timeout=MS] */
const char *
rl2_set_redis(cmd_parms *cmd, void *dummy, const char *args)
{
    rl2_redis_conf_t *rc = &rl2_global.backend.redis;
    const char *addr = ap_getword_conf(cmd->pool, &args), *msg;
    const char *colon = strrchr(addr, ':');
    rl2_err_t err;

    (void)dummy;
    if ((msg = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return msg;
    }
    if (strncmp(addr, "sentinel:", 9) == 0) {
        if (rl2_redis_sentinel_parse(rc, addr + 9, &err) != RL2_OK) {
            return apr_pstrcat(cmd->pool, "RateLimit2Redis: ", err.msg,
                               NULL);
        }
    }
    else if (strncmp(addr, "cluster:", 8) == 0) {
        if (rl2_redis_cluster_parse(rc, addr + 8, &err) != RL2_OK) {
            return apr_pstrcat(cmd->pool, "RateLimit2Redis: ", err.msg,
                               NULL);
        }
    }
    else if (addr[0] == '/') {
        apr_cpystrn(rc->unix_path, addr, sizeof(rc->unix_path));
    }
    else if (colon != NULL && colon > addr && atoi(colon + 1) > 0
             && (apr_size_t)(colon - addr) < sizeof(rc->host)) {
        apr_cpystrn(rc->host, addr, (apr_size_t)(colon - addr) + 1);
        rc->port = atoi(colon + 1);
    }
    else {
        return "RateLimit2Redis: expected HOST:PORT, /path/to/socket, "
               "sentinel:NAME@HOST:PORT[,HOST:PORT...] or "
               "cluster:HOST:PORT[,HOST:PORT...]";
    }
    if ((msg = rl2_each_option(cmd, args, rl2_redis_option)) != NULL) {
        return msg;
    }
    if (rl2_redis_conf_check(rc, &err) != RL2_OK) {
        return apr_pstrcat(cmd->pool, "RateLimit2Redis: ", err.msg, NULL);
    }
    rl2_global.backend.redis_enabled = 1;
    rl2_global.backend.given |= RL2_BACKEND_GIVEN_REDIS;
    return NULL;
}

static const char *
rl2_failover_option(apr_pool_t *p, rl2_backend_conf_t *bc, const char *name,
                    const char *val)
{
    apr_int64_t n;
    rl2_err_t err;

    if (strcmp(name, "share") == 0) {
        if (rl2_failover_share_parse(val, &bc->local_share_ppm, &err)
            != RL2_OK) {
            return apr_pstrdup(p, err.msg);
        }
    }
    else if (strcmp(name, "probe") == 0 && rl2_positive(val, 3600000, &n)) {
        bc->circuit.probe_interval_ms = n;
    }
    else if (strcmp(name, "failures") == 0 && rl2_positive(val, 1000, &n)) {
        bc->circuit.failures_to_open = (uint32_t)n;
    }
    else {
        return "expected share=0.001..1, probe=MS, failures=N";
    }
    return NULL;
}

/* RateLimit2Failover local|open|closed [share=F] [probe=MS]
 *                    [failures=N] */
const char *
rl2_set_failover(cmd_parms *cmd, void *dummy, const char *args)
{
    rl2_backend_conf_t *bc = &rl2_global.backend;
    const char *mode = ap_getword_conf(cmd->pool, &args), *msg;
    rl2_err_t err;

    (void)dummy;
    if ((msg = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return msg;
    }
    if (rl2_failover_mode_parse(mode, &bc->failover_mode, &err) != RL2_OK) {
        return apr_pstrcat(cmd->pool, "RateLimit2Failover: ", err.msg, NULL);
    }
    bc->given |= RL2_BACKEND_GIVEN_FAILOVER;
    return rl2_each_option(cmd, args, rl2_failover_option);
}

static const char *
rl2_alert_option(apr_pool_t *p, rl2_backend_conf_t *bc, const char *name,
                 const char *val)
{
    apr_int64_t n;
    rl2_err_t err;

    if (strcmp(name, "socket") == 0 && val[0] == '/'
        && strlen(val) < sizeof(bc->alert_socket)) {
        apr_cpystrn(bc->alert_socket, val, sizeof(bc->alert_socket));
    }
    else if (strcmp(name, "ident") == 0 && val[0] != '\0'
             && strlen(val) < sizeof(bc->alert_ident)) {
        apr_cpystrn(bc->alert_ident, val, sizeof(bc->alert_ident));
    }
    else if (strcmp(name, "facility") == 0) {
        if (rl2_alert_facility_parse(val, &bc->alert_facility, &err)
            != RL2_OK) {
            return apr_pstrdup(p, err.msg);
        }
    }
    else if (strcmp(name, "interval") == 0 && rl2_positive(val, 86400, &n)) {
        bc->alert_interval_ms = n * 1000;
    }
    else {
        return "expected socket=/PATH, ident=NAME, "
               "facility=daemon|local0.., interval=SECONDS";
    }
    return NULL;
}

/* RateLimit2Alerts On|Off [socket=PATH] [ident=NAME] [facility=F]
 *                  [interval=SECONDS] */
const char *
rl2_set_alerts(cmd_parms *cmd, void *dummy, const char *args)
{
    const char *onoff = ap_getword_conf(cmd->pool, &args), *msg;

    (void)dummy;
    if ((msg = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return msg;
    }
    if (strcasecmp(onoff, "on") != 0 && strcasecmp(onoff, "off") != 0) {
        return "RateLimit2Alerts: expected On or Off first";
    }
    rl2_global.backend.alerts_enabled = strcasecmp(onoff, "on") == 0;
    rl2_global.backend.given |= RL2_BACKEND_GIVEN_ALERTS;
    return rl2_each_option(cmd, args, rl2_alert_option);
}

