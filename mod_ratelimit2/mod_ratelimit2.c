/*
 * mod_ratelimit2.c -- the Apache httpd front end of libratelimit2.
 *
 * This file only adapts: it reads directives, describes each request to
 * the core (rl2_decide), and turns the verdict into a 429 or into headers
 * on an allowed response.  Everything that decides lives in common/.
 *
 * Phases (DESIGN §5, STYLE.md trap 1): limits keyed by address are decided
 * in check_access (run-all, before authentication) and refuse early;
 * limits keyed by user, API key or tier are decided in fixups, after
 * authentication and after mod_env/mod_setenvif have set variables.  A
 * request refused late has its early counts refunded by the core.
 * Subrequests and internal redirects (ErrorDocument, mod_rewrite) are
 * never counted: they belong to a request already decided.
 *
 * The counters live in one named shared-memory zone created in
 * post_config and inherited by every child; it is found again by name
 * after a graceful restart, so counts continue.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mod_core.h"
#include "util_filter.h"

#include "apr_strings.h"
#include "apr_tables.h"

#include <string.h>

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/headers.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"

#define RL2_LOGNO(n) "RL2" #n ": "

#define RL2_UNSET -1
#define RL2_DEFAULT_ZONE "/ratelimit2"
#define RL2_DEFAULT_ENTRIES 100000u
#define RL2_JSON_FILTER "RATELIMIT2_JSON"

module AP_MODULE_DECLARE_DATA ratelimit2_module;

/* Server-wide: the policy and identity settings.  The zone directives are
 * global (main server only). */
typedef struct {
    const char          *policy_file;  /* RateLimit2Policy, or NULL */
    rl2_policy_t        *policy;       /* loaded or default; pconf-owned */
    apr_array_header_t  *trusted;      /* rl2_cidr_t from directives */
    int                  mode;         /* rl2_mode_t or RL2_UNSET */
    int                  reset_delta;  /* RL2_UNSET, 0, 1 */
    unsigned             phases;       /* RL2_PHASE_* the policy uses */
} rl2_srv_conf_t;

/* Per directory: the engine switch and inline limits. */
typedef struct {
    int                 engine;     /* RL2_UNSET, 0, 1 */
    int                 mode;       /* mode of inline limits, or UNSET */
    apr_array_header_t *rules;      /* rl2_rule_t: one per inline limit */
    unsigned            phases;     /* RL2_PHASE_* the inline limits use */
} rl2_dir_conf_t;

/* The verdict of one request, kept across its phases. */
typedef struct {
    rl2_verdict_t verdict;
    rl2_clock_t   now;
    int           cleanup_registered;
    int           dry_run_logged;
    int           json_body;   /* our 429 body is the response */
} rl2_req_state_t;

/* Per process, set in post_config (children inherit the mapping). */
static rl2_zone_t  *rl2_zone;
static rl2_store_t *rl2_store;
static const char  *rl2_zone_name = RL2_DEFAULT_ZONE;
static unsigned     rl2_zone_entries = RL2_DEFAULT_ENTRIES;
/* Largest state an inline limit needs; sizes the zone's entries. */
static size_t       rl2_inline_state_max;

/* ---- configuration records ---- */

static void *
rl2_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    rl2_srv_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    (void)s;
    conf->trusted = apr_array_make(p, 4, sizeof(rl2_cidr_t));
    conf->mode = RL2_UNSET;
    conf->reset_delta = RL2_UNSET;
    return conf;
}

static void *
rl2_merge_srv_conf(apr_pool_t *p, void *basev, void *addv)
{
    rl2_srv_conf_t *base = basev, *add = addv;
    rl2_srv_conf_t *conf = apr_pcalloc(p, sizeof(*conf));

    conf->policy_file = add->policy_file ? add->policy_file
                                         : base->policy_file;
    conf->policy = add->policy ? add->policy : base->policy;
    conf->trusted = apr_array_append(p, base->trusted, add->trusted);
    conf->mode = add->mode != RL2_UNSET ? add->mode : base->mode;
    conf->reset_delta = add->reset_delta != RL2_UNSET ? add->reset_delta
                                                      : base->reset_delta;
    return conf;
}

static void *
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
static void *
rl2_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    rl2_dir_conf_t *base = basev, *add = addv;
    rl2_dir_conf_t *conf = apr_pcalloc(p, sizeof(*conf));
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

static apr_status_t
rl2_policy_cleanup(void *data)
{
    rl2_policy_free(data);
    return APR_SUCCESS;
}

static const char *
rl2_set_policy(cmd_parms *cmd, void *dummy, const char *arg)
{
    rl2_srv_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                                &ratelimit2_module);
    const char *path = ap_server_root_relative(cmd->pool, arg);
    rl2_policy_t *policy;
    rl2_err_t err;

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
    conf->policy_file = path;
    conf->policy = policy;
    return NULL;
}

static const char *
rl2_set_zone(cmd_parms *cmd, void *dummy, const char *name,
             const char *entries)
{
    const char *err = ap_check_cmd_context(cmd, GLOBAL_ONLY);
    char *end;
    apr_int64_t n;

    (void)dummy;
    if (err != NULL) {
        return err;
    }
    if (name[0] != '/' || strchr(name + 1, '/') != NULL
        || strlen(name) > RL2_ZONE_NAME_MAX) {
        return "RateLimit2Zone: the name must look like /ratelimit2 "
               "(one leading slash, no other)";
    }
    rl2_zone_name = apr_pstrdup(cmd->pool, name);
    if (entries != NULL) {
        n = apr_strtoi64(entries, &end, 10);
        if (*end != '\0' || n < RL2_ZONE_MIN_ENTRIES
            || n > RL2_ZONE_MAX_ENTRIES) {
            return apr_psprintf(cmd->pool, "RateLimit2Zone: entries must "
                                "be a number from %u to %u", 
                                RL2_ZONE_MIN_ENTRIES, RL2_ZONE_MAX_ENTRIES);
        }
        rl2_zone_entries = (unsigned)n;
    }
    return NULL;
}

static const char *
rl2_add_trusted(cmd_parms *cmd, void *dummy, const char *arg)
{
    rl2_srv_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                                &ratelimit2_module);
    rl2_cidr_t *net = apr_array_push(conf->trusted);
    rl2_err_t err;

    (void)dummy;
    if (rl2_cidr_parse(arg, net, &err) != RL2_OK) {
        return apr_psprintf(cmd->pool, "RateLimit2TrustedProxy: %s",
                            err.msg);
    }
    return NULL;
}

static const char *
rl2_set_mode(cmd_parms *cmd, void *dirconf, const char *arg)
{
    rl2_mode_t mode;
    rl2_err_t err;

    if (rl2_mode_parse(arg, &mode, &err) != RL2_OK) {
        return apr_psprintf(cmd->pool, "RateLimit2Mode: %s", err.msg);
    }
    if (cmd->path == NULL) {
        rl2_srv_conf_t *conf =
            ap_get_module_config(cmd->server->module_config,
                                 &ratelimit2_module);
        conf->mode = mode;
    }
    else {
        ((rl2_dir_conf_t *)dirconf)->mode = mode;
    }
    return NULL;
}

static const char *
rl2_set_reset(cmd_parms *cmd, void *dummy, const char *arg)
{
    rl2_srv_conf_t *conf = ap_get_module_config(cmd->server->module_config,
                                                &ratelimit2_module);

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
    rl2_err_t err;
    char *end;

    if (eq == NULL) {
        return apr_psprintf(p, "expected key=value, got \"%s\"", word);
    }
    name = apr_pstrmemdup(p, word, (apr_size_t)(eq - word));
    val = eq + 1;
    if (strcmp(name, "key") == 0) {
        if (rl2_key_parse(arena, val, &limit->key, &limit->key_header,
                          &err) != RL2_OK) {
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
    else {
        return apr_psprintf(p, "unknown option \"%s\" (expected key, "
                            "algorithm, burst, cost or overflow)", name);
    }
    return NULL;
}

/* The count/window of RateLimit2Limit: "100/60s", "20/day", or a bare
 * count for a concurrency limit. */
static const char *
rl2_inline_rate(apr_pool_t *p, rl2_limit_t *limit, const char *rate)
{
    rl2_err_t err;
    char *end;

    if (strchr(rate, '/') == NULL) {
        limit->algo.limit = apr_strtoi64(rate, &end, 10);
        if (*end != '\0' || limit->algo.limit < 1) {
            return apr_psprintf(p, "invalid rate \"%s\"", rate);
        }
        return NULL;
    }
    if (rl2_rate_parse(rate, &limit->algo.limit, &limit->algo.window_us,
                       &limit->algo.period, &err) != RL2_OK) {
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
                        "0123456789_.-") == n;
}

/* RateLimit2Limit NAME RATE [key=..] [algorithm=..] [burst=N] [cost=N]
 *                 [overflow=K/W] */
static const char *
rl2_add_limit(cmd_parms *cmd, void *dirconf, const char *args)
{
    rl2_dir_conf_t *conf = dirconf;
    const char *name = ap_getword_conf(cmd->pool, &args);
    const char *rate = ap_getword_conf(cmd->pool, &args);
    rl2_policy_t *arena;
    rl2_rule_t *rule;
    rl2_limit_t *limit;
    const char *msg, *word;
    rl2_err_t err;

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
    rule->mode = conf->mode == RL2_UNSET ? RL2_MODE_INHERIT
                                         : (rl2_mode_t)conf->mode;
    rule->limits = (rl2_limit_set_t){ limit, 1, 1, 0 };
    conf->phases |= limit->phase;
    if (limit->state_size > rl2_inline_state_max) {
        rl2_inline_state_max = limit->state_size;
    }
    return NULL;
}

static const command_rec rl2_cmds[] = {
    AP_INIT_TAKE1("RateLimit2Policy", rl2_set_policy, NULL, RSRC_CONF,
                  "Policy file (libconfig) to enforce"),
    AP_INIT_TAKE12("RateLimit2Zone", rl2_set_zone, NULL, RSRC_CONF,
                   "Shared-memory zone name (/name) and number of entries"),
    AP_INIT_ITERATE("RateLimit2TrustedProxy", rl2_add_trusted, NULL,
                    RSRC_CONF, "Addresses or CIDRs of proxies whose "
                    "X-Forwarded-For is believed"),
    AP_INIT_TAKE1("RateLimit2Mode", rl2_set_mode, NULL, RSRC_CONF | ACCESS_CONF,
                  "enforce, dry_run or off"),
    AP_INIT_TAKE1("RateLimit2ResetFormat", rl2_set_reset, NULL, RSRC_CONF,
                  "X-RateLimit-Reset as epoch seconds (default) or delta"),
    AP_INIT_FLAG("RateLimit2Engine", rl2_set_engine, NULL,
                 RSRC_CONF | ACCESS_CONF,
                 "On to limit requests here (default), Off to skip"),
    AP_INIT_RAW_ARGS("RateLimit2Limit", rl2_add_limit, NULL,
                     RSRC_CONF | ACCESS_CONF,
                     "NAME RATE [key=ip|user|api_key|header:NAME|route|"
                     "global] [algorithm=..] [burst=N] [cost=N] "
                     "[overflow=K/W]"),
    { NULL }
};

/* ---- the request ---- */

static const char *
rl2_header_get(void *ctx, const char *name)
{
    return apr_table_get(((request_rec *)ctx)->headers_in, name);
}

/* Headers are rendered once per response, so add (no search for an
 * existing field); names are string constants and values live in a
 * buffer from the request pool (rl2_render_headers). */
static void
rl2_header_set(void *ctx, const char *name, const char *value)
{
    request_rec *r = ctx;

    apr_table_addn(r->err_headers_out, name, value);
}

static void
rl2_render_headers(request_rec *r, const rl2_policy_t *policy,
                   rl2_req_state_t *st)
{
    if (st->verdict.shown >= 0) {
        apr_size_t len = rl2_headers_size(&st->verdict);

        rl2_headers_render(policy, &st->verdict, &st->now,
                           apr_palloc(r->pool, len), len, rl2_header_set, r);
    }
}

static void
rl2_describe(request_rec *r, const rl2_policy_t *policy, rl2_request_t *req)
{
    memset(req, 0, sizeof(*req));
    req->method = r->method;
    req->path = r->uri;
    req->query = r->args;
    req->host = r->hostname;
    req->peer_ip = r->useragent_ip;
    req->user = r->user;
    if (policy->tier_variable != NULL) {
        req->tier_var = apr_table_get(r->subprocess_env,
                                      policy->tier_variable);
    }
    req->header = rl2_header_get;
    req->header_ctx = r;
}

static apr_status_t
rl2_release(void *data)
{
    rl2_req_state_t *st = data;
    rl2_clock_t now;
    rl2_err_t err;

    rl2_clock_now(&now);
    if (rl2_decide_end(rl2_store, &st->verdict, &now, &err) != RL2_OK) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, NULL, RL2_LOGNO(0010)
                     "releasing a concurrency slot failed: %s", err.msg);
    }
    return APR_SUCCESS;
}

static const char *
rl2_shown_name(const rl2_verdict_t *v)
{
    return v->shown >= 0 ? v->layers[v->shown].limit->name : "-";
}

static const char *
rl2_shown_client(const rl2_verdict_t *v)
{
    return v->shown >= 0 ? v->layers[v->shown].client : v->client_ip;
}

/* The JSON body replaces Apache's HTML error page unless the admin set
 * an ErrorDocument for 429; this filter gives it its content type, since
 * the error path sets text/html.  It is inserted by the insert_error_filter
 * hook: the error path drops filters added before it. */
static apr_status_t
rl2_json_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    ap_set_content_type(f->r, "application/json");
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

static int
rl2_refuse(request_rec *r, const rl2_policy_t *policy, rl2_req_state_t *st)
{
    const rl2_verdict_t *v = &st->verdict;
    char body[RL2_BODY_MAX];

    rl2_render_headers(r, policy, st);
    if (ap_response_code_string(r, ap_index_of_response(
                                       HTTP_TOO_MANY_REQUESTS)) == NULL) {
        rl2_body_render(policy, v, &st->now, body, sizeof(body));
        ap_custom_response(r, HTTP_TOO_MANY_REQUESTS, body);
        st->json_body = 1;
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, RL2_LOGNO(0001)
                  "limited: client=%s limit=%s retry_after=%"
                  APR_INT64_T_FMT, rl2_shown_client(v), rl2_shown_name(v),
                  (apr_int64_t)rl2_retry_after_s(v));
    return HTTP_TOO_MANY_REQUESTS;
}

static void
rl2_insert_error_filter(request_rec *r)
{
    rl2_req_state_t *st = ap_get_module_config(r->request_config,
                                               &ratelimit2_module);

    if (st != NULL && st->json_body
        && r->status == HTTP_TOO_MANY_REQUESTS) {
        ap_add_output_filter(RL2_JSON_FILTER, NULL, r, r->connection);
    }
}

static rl2_req_state_t *
rl2_req_state(request_rec *r)
{
    rl2_req_state_t *st = ap_get_module_config(r->request_config,
                                               &ratelimit2_module);

    if (st == NULL) {
        st = apr_palloc(r->pool, sizeof(*st));
        rl2_verdict_init(&st->verdict);
        rl2_clock_now(&st->now);
        st->cleanup_registered = 0;
        st->dry_run_logged = 0;
        st->json_body = 0;
        ap_set_module_config(r->request_config, &ratelimit2_module, st);
    }
    return st;
}

/* Decide one phase; returns DECLINED to let the request on, or 429. */
static int
rl2_run_phase(request_rec *r, unsigned phase)
{
    rl2_srv_conf_t *sconf = ap_get_module_config(r->server->module_config,
                                                 &ratelimit2_module);
    rl2_dir_conf_t *dconf = ap_get_module_config(r->per_dir_config,
                                                 &ratelimit2_module);
    const rl2_policy_t *policy = sconf->policy;
    rl2_req_state_t *st;
    rl2_request_t req;
    rl2_err_t err;

    if (r->main != NULL || r->prev != NULL || dconf->engine == 0
        || rl2_store == NULL || policy == NULL) {
        return DECLINED;
    }
    st = ap_get_module_config(r->request_config, &ratelimit2_module);
    if (st != NULL && st->verdict.outcome == RL2_OUTCOME_DENY) {
        /* Refused in the access phase but let through by "Satisfy Any":
         * refuse again now. */
        return HTTP_TOO_MANY_REQUESTS;
    }
    /* Nothing to decide in this phase: the common case of the late phase
     * on a site with address-keyed limits only costs one test. */
    if (((sconf->phases | dconf->phases) & phase) == 0) {
        return DECLINED;
    }
    st = rl2_req_state(r);
    rl2_describe(r, policy, &req);
    if (rl2_decide(policy, (const rl2_rule_t *)dconf->rules->elts,
                   (size_t)dconf->rules->nelts, rl2_store, &req, phase,
                   &st->now, &st->verdict, &err) != RL2_OK) {
        /* Fail open: a broken store must not take the site down. */
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, RL2_LOGNO(0002)
                      "store error, request let through: %s", err.msg);
        return DECLINED;
    }
    if (!st->cleanup_registered && rl2_decide_holds(&st->verdict)) {
        apr_pool_cleanup_register(r->pool, st, rl2_release,
                                  apr_pool_cleanup_null);
        st->cleanup_registered = 1;
    }
    if (st->verdict.dry_run_denied && !st->dry_run_logged) {
        st->dry_run_logged = 1;
        ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r, RL2_LOGNO(0003)
                      "dry_run: would limit client=%s",
                      st->verdict.client_ip);
    }
    if (st->verdict.outcome == RL2_OUTCOME_DENY) {
        return rl2_refuse(r, policy, st);
    }
    return DECLINED;
}

static int
rl2_check_access(request_rec *r)
{
    return rl2_run_phase(r, RL2_PHASE_EARLY);
}

static int
rl2_fixups(request_rec *r)
{
    int status = rl2_run_phase(r, RL2_PHASE_LATE);
    rl2_srv_conf_t *sconf;
    rl2_req_state_t *st;

    if (status != DECLINED) {
        return status;
    }
    st = ap_get_module_config(r->request_config, &ratelimit2_module);
    if (st == NULL) {
        return DECLINED;
    }
    sconf = ap_get_module_config(r->server->module_config,
                                 &ratelimit2_module);
    rl2_render_headers(r, sconf->policy, st);
    return DECLINED;
}

/* ---- start-up ---- */

static int
rl2_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    (void)pconf;
    (void)plog;
    (void)ptemp;
    /* The DSO may stay loaded across a restart: start from defaults. */
    rl2_zone_name = RL2_DEFAULT_ZONE;
    rl2_zone_entries = RL2_DEFAULT_ENTRIES;
    rl2_inline_state_max = 0;
    return OK;
}

/* Each server gets its own shallow copy of its policy, so that its
 * directives (trusted proxies, mode, reset format) do not leak into
 * other virtual hosts sharing the same policy file. */
static const char *
rl2_server_policy(apr_pool_t *p, rl2_srv_conf_t *conf)
{
    rl2_policy_t *copy = apr_palloc(p, sizeof(*copy));
    rl2_err_t err;

    if (conf->policy == NULL) {
        rl2_policy_t *empty;

        if (rl2_policy_create("inline", &empty, &err) != RL2_OK) {
            return apr_pstrdup(p, err.msg);
        }
        apr_pool_cleanup_register(p, empty, rl2_policy_cleanup,
                                  apr_pool_cleanup_null);
        conf->policy = empty;
    }
    *copy = *conf->policy;
    if (conf->trusted->nelts > 0) {
        rl2_cidr_t *all = apr_palloc(p, sizeof(rl2_cidr_t)
                                        * (copy->n_trusted
                                           + (size_t)conf->trusted->nelts));

        if (copy->n_trusted > 0) {
            memcpy(all, copy->trusted, sizeof(rl2_cidr_t) * copy->n_trusted);
        }
        memcpy(all + copy->n_trusted, conf->trusted->elts,
               sizeof(rl2_cidr_t) * (size_t)conf->trusted->nelts);
        copy->trusted = all;
        copy->n_trusted += (size_t)conf->trusted->nelts;
    }
    if (conf->mode != RL2_UNSET) {
        copy->mode = (rl2_mode_t)conf->mode;
    }
    if (conf->reset_delta != RL2_UNSET) {
        copy->reset_delta = conf->reset_delta;
    }
    conf->policy = copy;
    return NULL;
}

static apr_status_t
rl2_zone_cleanup(void *data)
{
    (void)data;
    rl2_store_destroy(rl2_store);
    rl2_store = NULL;
    rl2_zone_close(rl2_zone);
    rl2_zone = NULL;
    return APR_SUCCESS;
}

static int
rl2_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                server_rec *s)
{
    size_t state = rl2_inline_state_max;
    rl2_err_t err;
    const char *msg;

    (void)plog;
    (void)ptemp;
    /* The first pass only checks the configuration (STYLE.md trap 5). */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    for (server_rec *vs = s; vs != NULL; vs = vs->next) {
        rl2_srv_conf_t *conf = ap_get_module_config(vs->module_config,
                                                    &ratelimit2_module);

        if ((msg = rl2_server_policy(pconf, conf)) != NULL) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, RL2_LOGNO(0004)
                         "%s", msg);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        conf->phases = 0;
        if (rl2_policy_has_phase(conf->policy, NULL, 0, RL2_PHASE_EARLY)) {
            conf->phases |= RL2_PHASE_EARLY;
        }
        if (rl2_policy_has_phase(conf->policy, NULL, 0, RL2_PHASE_LATE)) {
            conf->phases |= RL2_PHASE_LATE;
        }
        if (conf->policy->max_state_size > state) {
            state = conf->policy->max_state_size;
        }
    }
    if (state == 0) {
        state = 8;
    }
    if (rl2_zone_open(rl2_zone_name, rl2_zone_entries, state, 0600,
                      &rl2_zone, &err) != RL2_OK
        || rl2_store_local_create(rl2_zone, &rl2_store, &err) != RL2_OK) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, RL2_LOGNO(0005)
                     "cannot open zone %s: %s", rl2_zone_name, err.msg);
        rl2_zone_close(rl2_zone);
        rl2_zone = NULL;
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    apr_pool_cleanup_register(pconf, NULL, rl2_zone_cleanup,
                              apr_pool_cleanup_null);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, RL2_LOGNO(0006)
                 "zone %s: %u entries of %" APR_SIZE_T_FMT " bytes",
                 rl2_zone_name, rl2_zone_entries, (apr_size_t)state);
    return OK;
}

static void
rl2_register_hooks(apr_pool_t *p)
{
    /* mod_dir answers in its own last fixup (the trailing-slash 301),
     * which ends the phase: decide and set headers before it. */
    static const char *const before_dir[] = { "mod_dir.c", NULL };

    (void)p;
    ap_hook_pre_config(rl2_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(rl2_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    /* Address-keyed limits refuse before any authentication work. */
    ap_hook_check_access(rl2_check_access, NULL, NULL, APR_HOOK_FIRST,
                         AP_AUTH_INTERNAL_PER_CONF);
    /* Last, so mod_env and mod_setenvif have set tier variables. */
    ap_hook_fixups(rl2_fixups, NULL, before_dir, APR_HOOK_LAST);
    ap_hook_insert_error_filter(rl2_insert_error_filter, NULL, NULL,
                                APR_HOOK_MIDDLE);
    ap_register_output_filter(RL2_JSON_FILTER, rl2_json_filter, NULL,
                              AP_FTYPE_CONTENT_SET);
}

AP_DECLARE_MODULE(ratelimit2) = {
    STANDARD20_MODULE_STUFF,
    rl2_create_dir_conf,
    rl2_merge_dir_conf,
    rl2_create_srv_conf,
    rl2_merge_srv_conf,
    rl2_cmds,
    rl2_register_hooks,
    AP_MODULE_FLAG_NONE
};
