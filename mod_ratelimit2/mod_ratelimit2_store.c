/*
 * mod_ratelimit2_store.c -- the server-wide store directives:
 * RateLimit2Redis, RateLimit2Failover and RateLimit2Alerts.  They fill
 * rl2_global.backend, which post_config hands to rl2_backend_open(); the
 * values go through the core's store option parser (store_opts.h), so
 * ratelimit2-fcgi's options, the CGI environment, the policy file and
 * ratelimit2ctl accept the same and refuse with the same words.  A directive
 * replaces the whole matching group (redis, failover, alerts) of the main
 * server's policy file; groups no directive sets come from the file
 * (rl2_backend_conf_policy() in post_config).
 */
#include "httpd.h"
#include "http_config.h"

#include "apr_strings.h"

#include "ratelimit2/store_opts.h"

#include "mod_ratelimit2.h"

/* ---- Redis, failover and alerts (main server only) ---- */

/* One "name=value" word of a store directive into the conf. */
typedef rl2_status_t (*rl2_item_fn)(rl2_backend_conf_t *bc, const char *item,
                                    rl2_err_t *err);

/* The directive's name, then the core's error text. */
static const char *
rl2_store_error(cmd_parms *cmd, const rl2_err_t *err)
{
    return apr_pstrcat(cmd->pool, cmd->cmd->name, ": ", err->msg, NULL);
}

/* Apply every remaining word of args; the first error is returned. */
static const char *
rl2_each_item(cmd_parms *cmd, const char *args, rl2_item_fn fn)
{
    const char *word;
    rl2_err_t   err;

    while (*(word = ap_getword_conf(cmd->pool, &args)) != '\0') {
        if (fn(&rl2_global.backend, word, &err) != RL2_OK) {
            return rl2_store_error(cmd, &err);
        }
    }
    return NULL;
}

/* RateLimit2Redis HOST:PORT|[IPv6]:PORT|/path/to.sock
 *                 |sentinel:NAME@HOST:PORT,...|cluster:HOST:PORT,...
 *                 [db=N] [user=U] [password=P] [connect_timeout=MS]
 *                 [timeout=MS] */
const char *
rl2_set_redis(cmd_parms *cmd, void *dummy, const char *args)
{
    rl2_backend_conf_t *bc = &rl2_global.backend;
    const char         *addr = ap_getword_conf(cmd->pool, &args), *msg;
    rl2_err_t           err;

    (void)dummy;
    if ((msg = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return msg;
    }
    if (rl2_store_opt_redis(bc, addr, &err) != RL2_OK) {
        return rl2_store_error(cmd, &err);
    }
    if ((msg = rl2_each_item(cmd, args, rl2_store_opt_redis_item)) != NULL) {
        return msg;
    }
    if (rl2_store_opt_check(bc, 0, &err) != RL2_OK) {
        return rl2_store_error(cmd, &err);
    }
    return NULL;
}

/* RateLimit2Failover local|open|closed [share=F] [probe=MS]
 *                    [failures=N] */
const char *
rl2_set_failover(cmd_parms *cmd, void *dummy, const char *args)
{
    const char *mode = ap_getword_conf(cmd->pool, &args), *msg;
    rl2_err_t   err;

    (void)dummy;
    if ((msg = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return msg;
    }
    if (rl2_store_opt_failover_mode(&rl2_global.backend, mode, &err)
        != RL2_OK) {
        return rl2_store_error(cmd, &err);
    }
    return rl2_each_item(cmd, args, rl2_store_opt_failover_item);
}

/* RateLimit2Alerts On|Off [socket=PATH] [ident=NAME] [facility=F]
 *                  [interval=SECONDS] */
const char *
rl2_set_alerts(cmd_parms *cmd, void *dummy, const char *args)
{
    const char *onoff = ap_getword_conf(cmd->pool, &args), *msg;
    rl2_err_t   err;

    (void)dummy;
    if ((msg = ap_check_cmd_context(cmd, GLOBAL_ONLY)) != NULL) {
        return msg;
    }
    if (rl2_store_opt_alerts_switch(&rl2_global.backend, onoff, &err)
        != RL2_OK) {
        return rl2_store_error(cmd, &err);
    }
    return rl2_each_item(cmd, args, rl2_store_opt_alerts_item);
}
