/*
 * mod_ratelimit2_handlers.c -- what the Apache module shows: the
 * ratelimit2-metrics (Prometheus), ratelimit2-health (JSON) and
 * ratelimit2-status (HTML) handlers, the counting of each request's
 * verdict into the metrics object, and the RateLimit2Metrics and
 * RateLimit2Events directives.
 *
 * Counting: rl2_conclude (mod_ratelimit2.c) calls rl2_metrics_count()
 * with each request's final verdict.  The handlers are enabled with
 * SetHandler in a <Location> and protected like any other location
 * (Require ip ..., Require valid-user); docs/operations.md shows how.
 *
 * Each virtual host's policy is bound to the metrics object in
 * post_config (rules and tiers get their slots by name), in the parent,
 * so children inherit the bindings.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include "apr_strings.h"

#include <string.h>

#include "ratelimit2/backend.h"
#include "ratelimit2/metrics.h"

#include "mod_ratelimit2.h"

/* Per restart (the module is unloaded and loaded again by a restart):
 * when the configuration was loaded, and how many loads the metrics
 * object has seen (the policy generation health and metrics report). */
static apr_time_t    rl2_started;
static unsigned long rl2_generation;

/* ---- directives ---- */

/* RateLimit2Metrics On|Off */
const char *
rl2_set_metrics(cmd_parms *cmd, void *dummy, int on)
{
    const char *msg = ap_check_cmd_context(cmd, GLOBAL_ONLY);

    (void)dummy;
    if (msg != NULL) {
        return msg;
    }
    rl2_global.backend.metrics_enabled = on;
    return NULL;
}

static int
rl2_count(const char *text, apr_int64_t max, apr_int64_t *out)
{
    char       *end;
    apr_int64_t v = apr_strtoi64(text, &end, 10);

    if (end == text || *end != '\0' || v < 0 || v > max) {
        return 0;
    }
    *out = v;
    return 1;
}

/* "COUNT/SECONDS" */
static int
rl2_ban_parse(apr_pool_t *p, const char *val, rl2_metrics_conf_t *mc)
{
    const char *slash = strchr(val, '/');
    apr_int64_t n, w;

    if (slash == NULL
        || !rl2_count(apr_pstrmemdup(p, val, (apr_size_t)(slash - val)),
                      1000000, &n)
        || !rl2_count(slash + 1, 86400, &w) || n == 0 || w == 0) {
        return 0;
    }
    mc->ban_count = (uint32_t)n;
    mc->ban_window_ms = w * 1000;
    return 1;
}

static const char *
rl2_event_option(apr_pool_t *p, rl2_metrics_conf_t *mc, const char *name,
                 const char *val)
{
    apr_int64_t n;
    int         off = strcmp(val, "off") == 0;

    if (strcmp(name, "limited") == 0 && (off || rl2_count(val, 86400, &n))) {
        mc->limited_interval_ms = off ? 0 : n * 1000;
    }
    else if (strcmp(name, "ban") == 0 && (off || rl2_ban_parse(p, val, mc))) {
        mc->ban_count = off ? 0 : mc->ban_count;
    }
    else if (strcmp(name, "evictions") == 0
             && (off || rl2_count(val, 1000000000, &n))) {
        mc->eviction_alert = off ? 0 : (uint32_t)n;
    }
    else if (strcmp(name, "anomaly") == 0
             && (off || rl2_count(val, 1000000000, &n))) {
        mc->anomaly_min = off ? 0 : (uint32_t)n;
    }
    else if (strcmp(name, "zone_full") == 0) {
        rl2_err_t err;

        if (rl2_metrics_zone_full_parse(val, mc, &err) != RL2_OK) {
            return apr_pstrdup(p, err.msg);
        }
    }
    else {
        return "expected limited=SECONDS|off, ban=COUNT/SECONDS|off, "
               "evictions=PER_MINUTE|off, anomaly=PER_MINUTE|off, "
               "zone_full=WARNING[/CRITICAL]|off";
    }
    return NULL;
}

/* RateLimit2Events [limited=SECONDS|off] [ban=COUNT/SECONDS|off]
 *                  [evictions=PER_MINUTE|off] [anomaly=PER_MINUTE|off]
 *                  [zone_full=WARNING[/CRITICAL]|off] */
const char *
rl2_set_events(cmd_parms *cmd, void *dummy, const char *args)
{
    rl2_metrics_conf_t *mc = &rl2_global.backend.metrics;
    const char *msg = ap_check_cmd_context(cmd, GLOBAL_ONLY), *word, *eq;

    (void)dummy;
    if (msg != NULL) {
        return msg;
    }
    while (*(word = ap_getword_conf(cmd->pool, &args)) != '\0') {
        eq = strchr(word, '=');
        msg = eq == NULL
                  ? "expected NAME=VALUE"
                  : rl2_event_option(
                      cmd->pool, mc,
                      apr_pstrmemdup(cmd->pool, word, (apr_size_t)(eq - word)),
                      eq + 1);
        if (msg != NULL) {
            return apr_psprintf(cmd->pool, "RateLimit2Events %s: %s", word,
                                msg);
        }
    }
    return NULL;
}

/* ---- handlers ---- */

static void
rl2_out(void *ctx, const char *s, size_t n)
{
    ap_rwrite(s, (int)n, ctx);
}

/* The state the pages show; the override table is the one r's server
 * decides with (NULL where its policy turns overrides off). */
static void
rl2_mod_metrics_env(request_rec *r, rl2_metrics_env_t *env)
{
    rl2_backend_t  *b = rl2_module_backend();
    rl2_srv_conf_t *conf =
        ap_get_module_config(r->server->module_config, &ratelimit2_module);

    if (b != NULL) {
        rl2_backend_env(b, env);
    }
    else {
        memset(env, 0, sizeof(*env));
        env->circuit = -1;
    }
    env->generation = rl2_generation;
    env->uptime_s = apr_time_sec(apr_time_now() - rl2_started);
    env->overrides = conf->policy != NULL ? conf->policy->overrides : NULL;
    env->factors_on = conf->policy != NULL ? conf->policy->factors_on : 0;
}

/* Answer one of the three pages (kind 1: metrics, 2: health, 3: status);
 * out of line, so that the handler hook costs other requests nothing
 * but a test of one byte. */
static __attribute__((noinline)) int
rl2_serve(request_rec *r, int kind)
{
    rl2_backend_t    *b = rl2_module_backend();
    rl2_metrics_t    *m = b != NULL ? rl2_backend_metrics(b) : NULL;
    rl2_metrics_env_t env;
    char              body[1024];

    r->allowed |= (AP_METHOD_BIT << M_GET);
    if (r->method_number != M_GET) {
        return HTTP_METHOD_NOT_ALLOWED;
    }
    rl2_mod_metrics_env(r, &env);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (kind == 1) {
        ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
        if (!r->header_only) {
            rl2_metrics_prom(m, &env, rl2_out, r);
        }
    }
    else if (kind == 2) {
        r->status = rl2_metrics_health(&env, body, sizeof(body));
        ap_set_content_type(r, "application/json");
        if (!r->header_only) {
            ap_rputs(body, r);
        }
    }
    else {
        ap_set_content_type(r, "text/html; charset=utf-8");
        if (!r->header_only) {
            rl2_metrics_html(m, &env, apr_time_sec(apr_time_now()), rl2_out, r);
        }
    }
    return OK;
}

/* One of ours, by the name after "r" (out of line, see below). */
static __attribute__((noinline)) int
rl2_handler_named(request_rec *r, const char *h)
{
    if (strncmp(h, "ratelimit2-", 11) != 0) {
        return DECLINED;
    }
    h += 11;
    if (strcmp(h, "metrics") == 0) {
        return rl2_serve(r, 1);
    }
    if (strcmp(h, "health") == 0) {
        return rl2_serve(r, 2);
    }
    if (strcmp(h, "admin") == 0) {
        return rl2_admin_serve(r); /* mod_ratelimit2_admin.c */
    }
    return strcmp(h, "status") == 0 ? rl2_serve(r, 3) : DECLINED;
}

/* Every response passes here (the handler of a static file is its
 * content type): one byte sends nearly all of them on, with no frame. */
static int
rl2_handler(request_rec *r)
{
    const char *h = r->handler;

    if (h != NULL && h[0] == 'r') {
        return rl2_handler_named(r, h);
    }
    return DECLINED;
}

/* ---- start-up ---- */

static apr_status_t
rl2_unbind(void *data)
{
    rl2_srv_conf_t *conf = data;

    rl2_metrics_unbind(conf->metrics);
    conf->metrics = NULL;
    return APR_SUCCESS;
}

/* After the module's own post_config has opened the backend: bind each
 * server's policy and server-wide inline limits. */
static int
rl2_metrics_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                        server_rec *s)
{
    rl2_backend_t *b = rl2_module_backend();
    rl2_metrics_t *m = b != NULL ? rl2_backend_metrics(b) : NULL;
    rl2_err_t      err;
    size_t         lost;

    (void)plog;
    (void)ptemp;
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    rl2_started = apr_time_now();
    rl2_generation = m != NULL ? rl2_metrics_loaded(m) : 1;
    for (server_rec *vs = s; vs != NULL; vs = vs->next) {
        rl2_srv_conf_t *conf =
            ap_get_module_config(vs->module_config, &ratelimit2_module);
        rl2_dir_conf_t *dconf =
            ap_get_module_config(vs->lookup_defaults, &ratelimit2_module);

        conf->metrics = NULL;
        if (m == NULL || conf->policy == NULL) {
            continue;
        }
        if (rl2_metrics_bind(
                m, conf->policy, (const rl2_rule_t *)dconf->rules->elts,
                (size_t)dconf->rules->nelts, &conf->metrics, &lost, &err)
            != RL2_OK) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                         RL2_LOGNO(0020) "metrics: %s", err.msg);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        apr_pool_cleanup_register(pconf, conf, rl2_unbind,
                                  apr_pool_cleanup_null);
        if (lost > 0) {
            ap_log_error(
                APLOG_MARK, APLOG_WARNING, 0, vs,
                RL2_LOGNO(
                    0021) "metrics: %lu rule or tier names found no slot "
                          "(at most %d rules and %d tiers per zone): they "
                          "are counted as \"(other)\"",
                (unsigned long)lost, RL2_METRICS_RULES - 2,
                RL2_METRICS_TIERS - 2);
        }
    }
    return OK;
}

void
rl2_handlers_register(apr_pool_t *p)
{
    (void)p;
    /* After the module's post_config (registered first, same order). */
    ap_hook_post_config(rl2_metrics_post_config, NULL, NULL, APR_HOOK_LAST);
    ap_hook_handler(rl2_handler, NULL, NULL, APR_HOOK_MIDDLE);
}
