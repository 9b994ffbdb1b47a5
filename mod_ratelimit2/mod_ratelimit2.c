/*
 * mod_ratelimit2.c -- the Apache httpd front end of libratelimit2.
 *
 * This file only adapts: it describes each request to the core
 * (rl2_decide) and turns the verdict into a 429 or into header fields on
 * an allowed response (placed by mod_ratelimit2_fields.c); directives
 * live in mod_ratelimit2_config.c.  Everything that decides lives in
 * common/.  A verdict is counted and its fields rendered once it is
 * final, in rl2_conclude.  An allowed request decided in one phase keeps
 * only its rendered fields: the verdict itself stays on the stack.
 *
 * Phases: limits keyed by address are decided in check_access (run-all,
 * before authentication, where r->user is still empty) and refuse early;
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

#include <stddef.h>
#include <string.h>
#include <time.h>

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/headers.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"

#include "mod_ratelimit2.h"

/* Per process, set in post_config (children inherit the mappings; Redis
 * connections are opened later, per thread, by the Redis store). */
static rl2_backend_t          *rl2_backend;
static rl2_store_t            *rl2_store;
static struct rl2_tier_source *rl2_tiers; /* NULL: no tier lookup */
static rl2_overrides_t        *rl2_ovr;   /* NULL: none attached */

rl2_backend_t *
rl2_module_backend(void)
{
    return rl2_backend;
}

/* ---- the request ---- */

static const char *
rl2_header_get(void *ctx, const char *name)
{
    return apr_table_get(((request_rec *)ctx)->headers_in, name);
}

/* The method's bit from Apache's method number, without comparing
 * strings (HEAD is M_GET with header_only); 0 lets the core read the
 * name (extension methods). */
static unsigned
rl2_method_bit_of(const request_rec *r)
{
    switch (r->method_number) {
    case M_GET:
        return r->header_only ? RL2_METHOD_HEAD : RL2_METHOD_GET;
    case M_POST:
        return RL2_METHOD_POST;
    case M_PUT:
        return RL2_METHOD_PUT;
    case M_DELETE:
        return RL2_METHOD_DELETE;
    case M_PATCH:
        return RL2_METHOD_PATCH;
    case M_OPTIONS:
        return RL2_METHOD_OPTIONS;
    case M_CONNECT:
        return RL2_METHOD_CONNECT;
    case M_TRACE:
        return RL2_METHOD_TRACE;
    default:
        return 0;
    }
}

static void
rl2_describe(request_rec *r, const rl2_policy_t *policy, rl2_request_t *req)
{
    memset(req, 0, sizeof(*req));
    req->method = r->method;
    req->method_bit = rl2_method_bit_of(r);
    /* Decoded once and dot segments resolved by Apache: what it routes
     * on, never to be decoded again. */
    req->path = r->uri;
    req->path_decoded = 1;
    req->query = r->args;
    req->host = r->hostname;
    req->peer_ip = r->useragent_ip;
    /* mod_remoteip rewrites useragent_ip to the client a proxy names; the
     * gateway that sets the tier header is the one that connected. */
    req->conn_ip = r->connection->client_ip;
    req->user = r->user;
    if (policy->tier_variable != NULL) {
        req->tier_var = apr_table_get(r->subprocess_env, policy->tier_variable);
    }
    /* factors.geo: the country a GeoIP module or SetEnvIf put there. */
    if (policy->geo.variable != NULL) {
        req->country_var =
            apr_table_get(r->subprocess_env, policy->geo.variable);
    }
    /* whitelist.internal: a variable of the server's own configuration.
     * A client's headers reach subprocess_env only as HTTP_* (names the
     * loader refuses), copied by modules that run CGI or FastCGI
     * programs.  Before check_access it is set by SetEnvIf and a
     * server-context RewriteRule [E=]; SetEnv and a per-directory
     * RewriteRule run in fixups, seen by the late phase alone. */
    if (policy->wl_internal) {
        req->internal = rl2_internal_value(
            apr_table_get(r->subprocess_env, policy->wl_internal_var));
    }
    req->header = rl2_header_get;
    req->header_ctx = r;
    req->tier_source = rl2_tiers;
}

/* rl2_decide_request() on the one decision in RL2_METRICS_DECIDE_SAMPLE
 * that is timed: out of line and cold, so that the inline path of the
 * others stays as it was. */
static __attribute__((noinline, cold)) rl2_status_t
rl2_decide_timed(request_rec *r, const rl2_policy_t *policy,
                 const rl2_dir_conf_t *dconf, rl2_request_t *req,
                 unsigned phase, const rl2_clock_t *now, rl2_verdict_t *v,
                 rl2_err_t *err)
{
    const rl2_srv_conf_t *sconf =
        ap_get_module_config(r->server->module_config, &ratelimit2_module);

    return rl2_metrics_decide_timed(rl2_metrics_of(sconf->metrics), policy,
                                    (const rl2_rule_t *)dconf->rules->elts,
                                    (size_t)dconf->rules->nelts, rl2_store, req,
                                    phase, now, v, err);
}

/* One phase of the request against the server's policy and the
 * section's inline limits (inline: it runs on every request; always,
 * since with the sampling branch gcc stopped inlining it, which cost
 * ~60 instructions a request).  One decision in
 * RL2_METRICS_DECIDE_SAMPLE of the thread's is timed. */
static APR_INLINE __attribute__((always_inline)) rl2_status_t
rl2_decide_request(request_rec *r, const rl2_policy_t *policy,
                   const rl2_dir_conf_t *dconf, unsigned phase,
                   const rl2_clock_t *now, rl2_verdict_t *v, rl2_err_t *err)
{
    rl2_request_t req;

    rl2_describe(r, policy, &req);
    if (__builtin_expect(rl2_metrics_decide_sampled(), 0)) {
        return rl2_decide_timed(r, policy, dconf, &req, phase, now, v, err);
    }
    return rl2_decide(policy, (const rl2_rule_t *)dconf->rules->elts,
                      (size_t)dconf->rules->nelts, rl2_store, &req, phase, now,
                      v, err);
}

static apr_status_t
rl2_release(void *data)
{
    rl2_req_state_t *st = data;
    rl2_clock_t      now;
    rl2_err_t        err;

    rl2_clock_now(&now);
    if (rl2_decide_end(rl2_store, st->verdict, &now, &err) != RL2_OK) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, NULL,
                     RL2_LOGNO(0010) "releasing a concurrency slot failed: %s",
                     err.msg);
    }
    return APR_SUCCESS;
}

/* The response is complete when its EOS passes: the slots are released
 * then, before the last bytes reach the client, so a client starting its
 * next stream the moment this one ends finds its slot free.  The pool
 * cleanup, which runs only after logging, stays as the fallback (an
 * aborted connection, an error path); a second release is a no-op.  A
 * protocol filter, so that the error path keeps it. */
static apr_status_t
rl2_release_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    apr_bucket *b;

    for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
         b = APR_BUCKET_NEXT(b)) {
        if (APR_BUCKET_IS_EOS(b)) {
            rl2_release(f->ctx);
            ap_remove_output_filter(f);
            break;
        }
    }
    return ap_pass_brigade(f->next, bb);
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
 * an ErrorDocument for 429; this filter gives it its content type
 * (application/json or application/problem+json, its ctx), since the
 * error path sets text/html.  It is inserted by the insert_error_filter
 * hook: the error path drops filters added before it. */
static apr_status_t
rl2_json_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    ap_set_content_type(f->r, f->ctx);
    ap_remove_output_filter(f);
    return ap_pass_brigade(f->next, bb);
}

/* The status of a refusal: 429 for a limit; for a runtime ban what the
 * policy says (429 or 403); 503 under the emergency allow-list. */
static int
rl2_refusal_status(const rl2_policy_t *policy, const rl2_verdict_t *v)
{
    switch (v->refusal) {
    case RL2_REFUSAL_BAN:
        return policy->ban_status == HTTP_FORBIDDEN ? HTTP_FORBIDDEN
                                                    : HTTP_TOO_MANY_REQUESTS;
    case RL2_REFUSAL_EMERGENCY:
        return HTTP_SERVICE_UNAVAILABLE;
    default:
        return HTTP_TOO_MANY_REQUESTS;
    }
}

static int
rl2_refuse(request_rec *r, const rl2_policy_t *policy, rl2_req_state_t *st)
{
    const rl2_verdict_t *v = st->verdict;
    char                 body[RL2_BODY_MAX];
    int                  status = rl2_refusal_status(policy, v);

    st->status = status;
    rl2_fields_place(r, st->fields, RL2_FIELDS_AT_REFUSAL);
    rl2_vlog_record(rl2_backend_vlog(rl2_backend), policy, v, r->method, r->uri,
                    apr_table_get(r->headers_in, "User-Agent"), &st->now);
    if (ap_response_code_string(r, ap_index_of_response(status)) == NULL) {
        rl2_body_render(policy, v, &st->now, body, sizeof(body));
        ap_custom_response(r, status, body);
        st->json_body = rl2_body_type(policy);
    }
    ap_log_rerror(
        APLOG_MARK, APLOG_INFO, 0, r,
        RL2_LOGNO(
            0001) "limited: client=%s limit=%s retry_after=%" APR_INT64_T_FMT,
        rl2_shown_client(v),
        v->refusal == RL2_REFUSAL_BAN         ? "(banned)"
        : v->refusal == RL2_REFUSAL_EMERGENCY ? "(emergency)"
                                              : rl2_shown_name(v),
        (apr_int64_t)rl2_retry_after_s(v));
    return status;
}

static void
rl2_insert_error_filter(request_rec *r)
{
    rl2_req_state_t *st =
        ap_get_module_config(r->request_config, &ratelimit2_module);

    if (st == NULL) {
        return;
    }
    rl2_fields_place(r, st->fields, RL2_FIELDS_AT_ERROR);
    if (st->json_body && r->status == st->status) {
        ap_add_output_filter(RL2_JSON_FILTER, (void *)st->json_body, r,
                             r->connection);
    }
}

/* The clock of a request: monotonic now, and the wall time Apache read
 * with the request line (saves a clock read per request). */
static void
rl2_request_clock(const request_rec *r, rl2_clock_t *now)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now->mono_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    now->wall_us = (int64_t)r->request_time;
}

/* What the module remembers of a request (mod_ratelimit2.h), in the
 * request's config vector. */
static rl2_req_state_t *
rl2_state_new(request_rec *r, const rl2_clock_t *now)
{
    rl2_req_state_t *st = apr_palloc(r->pool, sizeof(*st));

    st->verdict = NULL;
    st->fields = NULL;
    st->now = *now;
    st->cleanup_registered = 0;
    st->dry_run_logged = 0;
    st->json_body = NULL;
    st->status = 0;
    ap_set_module_config(r->request_config, &ratelimit2_module, st);
    return st;
}

/* Keep a verdict for the rest of the request: a later phase, the
 * concurrency release, the JSON error filter and "Satisfy Any" read it.
 * Only the layers in use are copied, into room for every layer (a later
 * phase appends to it). */
static rl2_req_state_t *
rl2_keep(request_rec *r, const rl2_verdict_t *v, const rl2_clock_t *now)
{
    rl2_req_state_t *st = rl2_state_new(r, now);

    st->verdict = apr_palloc(r->pool, sizeof(*st->verdict));
    rl2_verdict_copy(st->verdict, v);
    return st;
}

/* The store could not answer: with failover "closed" the request is
 * refused with 503 and a Retry-After; otherwise it goes on (a broken
 * store must not take the site down; failover "local" already answered
 * from the local zone, so this is a local-zone failure). */
static int
rl2_store_failed(request_rec *r, rl2_status_t st, const rl2_err_t *err)
{
    int64_t retry = 0;

    /* Not the store: a request the core cannot read one way only (two
     * API keys).  Counting it under either would let the client choose
     * whose counter it spends. */
    if (st == RL2_ERR_REQUEST) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      RL2_LOGNO(0021) "refused as malformed: %s", err->msg);
        return HTTP_BAD_REQUEST;
    }
    /* Nor the store: inline limits on top of the policy's rules ask more
     * of this request than the core checks at once.  Refused, never let
     * through with some limits unchecked. */
    if (st == RL2_ERR_BOUND) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      RL2_LOGNO(0022) "refused with 500: %s", err->msg);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rl2_backend_refusing(rl2_backend, &retry)) {
        apr_table_setn(r->err_headers_out, "Retry-After",
                       apr_psprintf(r->pool, "%" APR_INT64_T_FMT,
                                    (apr_int64_t)(retry > 0 ? retry : 1)));
        return HTTP_SERVICE_UNAVAILABLE;
    }
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                  RL2_LOGNO(0002) "store error, request let through: %s",
                  err->msg);
    return DECLINED;
}

/* What a kept verdict asks for after each phase that decides it: the
 * release of its concurrency slots, one dry-run line. */
static void
rl2_hold(request_rec *r, rl2_req_state_t *st)
{
    if (!st->cleanup_registered && rl2_decide_holds(st->verdict)) {
        apr_pool_cleanup_register(r->pool, st, rl2_release,
                                  apr_pool_cleanup_null);
        ap_add_output_filter(RL2_RELEASE_FILTER, st, r, r->connection);
        st->cleanup_registered = 1;
    }
    if (st->verdict->dry_run_denied && !st->dry_run_logged) {
        st->dry_run_logged = 1;
        ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, r,
                      RL2_LOGNO(0003) "dry_run: would limit client=%s",
                      st->verdict->client_ip);
    }
}

/* Where a phase leaves its verdict. */
typedef enum {
    RL2_END_OPEN,  /* a later phase decides it */
    RL2_END_ADMIT, /* final: the request goes on */
    RL2_END_REFUSE /* final: 429 */
} rl2_end_t;

/* A verdict is final when it refuses, or after its last phase: the one
 * that decided it if nothing keeps it, else the late phase. */
static APR_INLINE rl2_end_t
rl2_end_of(const rl2_verdict_t *v, int last)
{
    if (v->outcome == RL2_OUTCOME_DENY) {
        return RL2_END_REFUSE;
    }
    return last ? RL2_END_ADMIT : RL2_END_OPEN;
}

/* Admitted, but a rule's challenger would have refused: its entry in the
 * violation log (rl2_refuse logs a refused request's, with the refusal).
 * Out of line: the common verdict has no challenger. */
static __attribute__((noinline)) void
rl2_vlog_challenger(request_rec *r, const rl2_policy_t *policy,
                    const rl2_verdict_t *v, const rl2_clock_t *now)
{
    rl2_vlog_record(rl2_backend_vlog(rl2_backend), policy, v, r->method, r->uri,
                    apr_table_get(r->headers_in, "User-Agent"), now);
}

/* Every phase with a verdict ends here: a final one is counted and its
 * fields rendered here and nowhere else.  A verdict nothing kept gets
 * its state now, if it has fields to keep. */
static APR_INLINE int
rl2_conclude(request_rec *r, const rl2_policy_t *policy, rl2_req_state_t *st,
             const rl2_verdict_t *v, const rl2_clock_t *now, rl2_end_t end)
{
    if (end == RL2_END_OPEN) {
        return DECLINED;
    }
    rl2_metrics_count(r, v, now);
    if (__builtin_expect(v->challenger_denied, 0) && end == RL2_END_ADMIT) {
        rl2_vlog_challenger(r, policy, v, now);
    }
    if (v->shown >= 0 || v->outcome == RL2_OUTCOME_DENY) {
        if (st == NULL) {
            st = rl2_state_new(r, now);
        }
        st->fields = rl2_fields_render(r, policy, v, now, &st->rendered,
                                       st->values, sizeof(st->values));
    }
    return end == RL2_END_REFUSE ? rl2_refuse(r, policy, st) : DECLINED;
}

/* The first decision of a request.  In the common case (allowed, one
 * phase, nothing held) nothing keeps the verdict: it lives on the stack
 * and is final at once. */
static APR_INLINE int
rl2_first_phase(request_rec *r, const rl2_policy_t *policy,
                const rl2_dir_conf_t *dconf, unsigned phase, int later)
{
    rl2_verdict_t    v;
    rl2_clock_t      now;
    rl2_req_state_t *st = NULL;
    rl2_err_t        err;
    rl2_status_t     dst;

    rl2_verdict_init(&v);
    rl2_request_clock(r, &now);
    if ((dst = rl2_decide_request(r, policy, dconf, phase, &now, &v, &err))
        != RL2_OK) {
        return rl2_store_failed(r, dst, &err);
    }
    if (later || v.outcome == RL2_OUTCOME_DENY || v.dry_run_denied
        || v.needs_late || rl2_decide_holds(&v)) {
        st = rl2_keep(r, &v, &now); /* v and now stay equal to it */
        rl2_hold(r, st);
    }
    return rl2_conclude(r, policy, st, &v, &now,
                        rl2_end_of(&v, st == NULL || phase == RL2_PHASE_LATE));
}

/* A later phase of a verdict kept from the first. */
static int
rl2_next_phase(request_rec *r, const rl2_policy_t *policy,
               const rl2_dir_conf_t *dconf, unsigned phase, int decide,
               rl2_req_state_t *st)
{
    int          last = phase == RL2_PHASE_LATE;
    rl2_end_t    end;
    rl2_err_t    err;
    rl2_status_t dst = RL2_OK;
    int          status;

    if (st->verdict->outcome == RL2_OUTCOME_DENY) {
        /* Refused in the access phase but let through by "Satisfy Any":
         * refuse again now. */
        return st->status != 0 ? st->status : HTTP_TOO_MANY_REQUESTS;
    }
    if (!decide
        || (dst = rl2_decide_request(r, policy, dconf, phase, &st->now,
                                     st->verdict, &err))
               == RL2_OK) {
        rl2_hold(r, st);
        end = rl2_end_of(st->verdict, last);
    }
    else if ((status = rl2_store_failed(r, dst, &err)) != DECLINED) {
        return status;
    }
    else {
        /* The store's failure mode let the request on: the verdict
         * stands as the failed phase left it, even one it turned to a
         * refusal. */
        end = last ? RL2_END_ADMIT : RL2_END_OPEN;
    }
    return rl2_conclude(r, policy, st, st->verdict, &st->now, end);
}

/* Decide one phase; returns DECLINED to let the request on, or the status
 * that answers it (429, 403, 503). */
static int
rl2_run_phase(request_rec *r, unsigned phase)
{
    rl2_srv_conf_t *sconf =
        ap_get_module_config(r->server->module_config, &ratelimit2_module);
    rl2_dir_conf_t *dconf =
        ap_get_module_config(r->per_dir_config, &ratelimit2_module);
    const rl2_policy_t *policy = sconf->policy;
    unsigned            phases = sconf->phases | dconf->phases;
    rl2_req_state_t    *st;

    if (r->main != NULL || r->prev != NULL || dconf->engine == 0
        || rl2_store == NULL || policy == NULL) {
        return DECLINED;
    }
    st = ap_get_module_config(r->request_config, &ratelimit2_module);
    if (st != NULL && st->verdict != NULL) {
        return rl2_next_phase(r, policy, dconf, phase,
                              (phases & phase) != 0 || st->verdict->needs_late,
                              st);
    }
    /* Nothing to decide in this phase: the common case of the late phase
     * on a site with address-keyed limits only costs one test. */
    if ((phases & phase) == 0) {
        return DECLINED;
    }
    return rl2_first_phase(r, policy, dconf, phase,
                           phase == RL2_PHASE_EARLY
                               && (phases & RL2_PHASE_LATE));
}

static int
rl2_check_access(request_rec *r)
{
    return rl2_run_phase(r, RL2_PHASE_EARLY);
}

/* Limits keyed by identity are decided here, after authentication; then
 * the fields go to their table, now that the handler is known
 * (mod_ratelimit2_fields.c). */
static int
rl2_fixups(request_rec *r)
{
    rl2_srv_conf_t *sconf =
        ap_get_module_config(r->server->module_config, &ratelimit2_module);
    rl2_dir_conf_t *dconf =
        ap_get_module_config(r->per_dir_config, &ratelimit2_module);
    rl2_req_state_t *st =
        ap_get_module_config(r->request_config, &ratelimit2_module);
    int status;

    if (((sconf->phases | dconf->phases) & RL2_PHASE_LATE) != 0
        || (st != NULL && st->verdict != NULL)) {
        if ((status = rl2_run_phase(r, RL2_PHASE_LATE)) != DECLINED) {
            return status;
        }
        st = ap_get_module_config(r->request_config, &ratelimit2_module);
    }
    if (st != NULL) {
        rl2_fields_place(r, st->fields, RL2_FIELDS_AT_FIXUPS);
    }
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
    rl2_backend_conf_init(&rl2_global.backend);
    rl2_global.inline_state_max = 0;
    return OK;
}

/* Each server gets its own shallow copy of its policy, so that its
 * directives (trusted proxies, mode, reset format) do not leak into
 * other virtual hosts sharing the same policy file. */
static const char *
rl2_server_policy(apr_pool_t *p, rl2_srv_conf_t *conf)
{
    rl2_policy_t *copy = apr_palloc(p, sizeof(*copy));
    rl2_err_t     err;

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
        rl2_cidr_t *all = apr_palloc(
            p, sizeof(rl2_cidr_t)
                   * (copy->n_trusted + (size_t)conf->trusted->nelts));

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
    if (conf->legacy != RL2_UNSET) {
        copy->header_legacy = conf->legacy;
    }
    if (conf->body_problem != RL2_UNSET) {
        copy->body_problem = conf->body_problem;
    }
    conf->policy = copy;
    return NULL;
}

/* Do two policies' store groups say the same thing (the same file read
 * twice, or equal text)? */
static int
rl2_same_store(const rl2_policy_store_t *a, const rl2_policy_store_t *b)
{
    return a == b
           || (a != NULL && b != NULL && a->given == b->given
               && memcmp(&a->conf, &b->conf, sizeof(a->conf)) == 0);
}

/* The store groups of the main server's policy file where no directive
 * set them; tier lookups for any virtual host's policy.  Different store
 * groups in a virtual host's own policy file would be ignored: refused. */
static const char *
rl2_store_from_policies(server_rec *s, rl2_backend_conf_t *bc)
{
    const rl2_srv_conf_t *main_conf =
        ap_get_module_config(s->module_config, &ratelimit2_module);
    rl2_err_t err;
    uint32_t  entries;

    if (rl2_backend_conf_policy(bc, main_conf->policy, &err) != RL2_OK) {
        return apr_pstrdup(s->process->pool, err.msg);
    }
    entries = bc->tier_cache_entries;
    for (server_rec *vs = s->next; vs != NULL; vs = vs->next) {
        const rl2_srv_conf_t *c =
            ap_get_module_config(vs->module_config, &ratelimit2_module);
        rl2_backend_conf_t scratch = *bc;

        if (c->policy->store != NULL
            && !rl2_same_store(c->policy->store, main_conf->policy->store)) {
            return apr_psprintf(s->process->pool,
                                "%s: redis, failover and "
                                "alerts are read from the main server's "
                                "policy only (the store is server-wide), "
                                "and this virtual host's differ",
                                c->policy->source);
        }
        scratch.given = RL2_BACKEND_GIVEN_REDIS | RL2_BACKEND_GIVEN_FAILOVER
                        | RL2_BACKEND_GIVEN_ALERTS;
        if (rl2_backend_conf_policy(&scratch, c->policy, &err) != RL2_OK) {
            return apr_pstrdup(s->process->pool, err.msg);
        }
        if (scratch.tier_cache_entries > entries) {
            entries = scratch.tier_cache_entries;
        }
    }
    bc->tier_cache_entries = entries;
    return NULL;
}

static apr_status_t
rl2_zone_cleanup(void *data)
{
    (void)data;
    rl2_store = NULL;
    rl2_tiers = NULL;
    /* Only this process's mapping goes: the table stays in shared memory
     * for the next generation's post_config (a graceful restart) and for
     * the next start.  Before the backend, whose Redis connections the
     * table borrows. */
    rl2_overrides_close(rl2_ovr);
    rl2_ovr = NULL;
    rl2_backend_close(rl2_backend);
    rl2_backend = NULL;
    return APR_SUCCESS;
}

/* A server's policy, once post_config has made it its own copy. */
static rl2_policy_t *
rl2_policy_of(const server_rec *s)
{
    return ((rl2_srv_conf_t *)ap_get_module_config(s->module_config,
                                                   &ratelimit2_module))
        ->policy;
}

/* The state file every server's table is kept in: the main server's
 * policy says where.  One table per zone, so a virtual host's policy
 * that names another file is refused rather than silently ignored. */
static const char *
rl2_overrides_check(server_rec *s, const rl2_backend_conf_t *bc, int *any)
{
    const rl2_policy_t *main_policy = rl2_policy_of(s);
    char                want[4096];

    *any = 0;
    if (rl2_policy_overrides_state(main_policy, bc->zone_name, want,
                                   sizeof(want))
        != 0) {
        return "overrides: the state file name is too long";
    }
    for (server_rec *vs = s; vs != NULL; vs = vs->next) {
        const rl2_policy_t *p = rl2_policy_of(vs);

        if (p->overrides_state != NULL
            && strcmp(p->overrides_state, want) != 0) {
            return apr_psprintf(s->process->pool,
                                "%s: overrides.state_file is read from the "
                                "main server's policy only (one table per "
                                "zone, kept in %s), and this virtual host's "
                                "differs",
                                p->source, want);
        }
        *any |= !p->overrides_disabled;
    }
    return NULL;
}

/* Open the runtime override table in the parent, so that every child
 * inherits it, and attach it to every server's policy that has it
 * enabled.  Failing to open it leaves the servers serving without it:
 * the table is an operator's tool, not something a request needs. */
static const char *
rl2_overrides_attach(server_rec *s, const rl2_backend_conf_t *bc)
{
    rl2_policy_t table;
    rl2_err_t    note, err;
    const char  *msg;
    int          any;

    if ((msg = rl2_overrides_check(s, bc, &any)) != NULL) {
        return msg;
    }
    /* The main server's settings, enabled when any policy wants it. */
    table = *rl2_policy_of(s);
    table.overrides_disabled = !any;
    if (rl2_backend_overrides_open(bc, &table, &rl2_ovr, &note, &err)
        != RL2_OK) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     RL2_LOGNO(0023) "runtime overrides are off: %s", err.msg);
    }
    else if (note.msg[0] != '\0') {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, RL2_LOGNO(0024) "%s",
                     note.msg);
    }
    /* With Redis, the fleet's table: changes go to Redis first, and the
     * requests keep this host's table a mirror of it (once a second). */
    if (rl2_ovr != NULL
        && rl2_backend_overrides_attach(rl2_backend, rl2_ovr, &err) != RL2_OK) {
        return apr_psprintf(s->process->pool,
                            "runtime overrides through Redis: %s", err.msg);
    }
    for (server_rec *vs = s; vs != NULL; vs = vs->next) {
        rl2_policy_t *p = rl2_policy_of(vs);

        p->overrides = p->overrides_disabled ? NULL : rl2_ovr;
        /* A table that holds anything applies to every request, even
         * where no limit is keyed by address: the early phase always
         * asks (an idle table costs rl2_decide one test), and its
         * verdict says when the late phase must ask again
         * (verdict.needs_late). */
        if (p->overrides != NULL) {
            rl2_srv_conf_t *conf =
                ap_get_module_config(vs->module_config, &ratelimit2_module);

            conf->phases |= RL2_PHASE_EARLY;
        }
    }
    return NULL;
}

static int
rl2_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                server_rec *s)
{
    size_t              state = rl2_global.inline_state_max;
    rl2_backend_conf_t *bc = &rl2_global.backend;
    rl2_err_t           err;
    const char         *msg;

    (void)plog;
    (void)ptemp;
    /* post_config runs twice at start-up; the first pass only checks the
     * configuration, so shared memory is made on the second. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    for (server_rec *vs = s; vs != NULL; vs = vs->next) {
        rl2_srv_conf_t *conf =
            ap_get_module_config(vs->module_config, &ratelimit2_module);

        if ((msg = rl2_server_policy(pconf, conf)) != NULL) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, RL2_LOGNO(0004) "%s",
                         msg);
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
    bc->state_size = state;
    bc->vlog = ((rl2_srv_conf_t *)ap_get_module_config(s->module_config,
                                                       &ratelimit2_module))
                   ->policy->vlog;
    if ((msg = rl2_store_from_policies(s, bc)) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, RL2_LOGNO(0011) "%s", msg);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    if (rl2_backend_open(bc, &rl2_backend, &err) != RL2_OK) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     RL2_LOGNO(0005) "cannot open the store (zone %s): %s",
                     bc->zone_name, err.msg);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    rl2_store = rl2_backend_store(rl2_backend);
    rl2_tiers = rl2_backend_tier_source(rl2_backend);
    apr_pool_cleanup_register(pconf, NULL, rl2_zone_cleanup,
                              apr_pool_cleanup_null);
    if ((msg = rl2_overrides_attach(s, bc)) != NULL) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, RL2_LOGNO(0011) "%s", msg);
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 RL2_LOGNO(0006) "zone %s: %u entries of %" APR_SIZE_T_FMT
                                 " bytes%s",
                 bc->zone_name, (unsigned)bc->zone_entries, (apr_size_t)state,
                 bc->redis_enabled ? ", shared through Redis" : "");
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
    ap_register_output_filter(RL2_RELEASE_FILTER, rl2_release_filter, NULL,
                              AP_FTYPE_PROTOCOL);
    rl2_handlers_register(p);
}

AP_DECLARE_MODULE(ratelimit2) = {
    STANDARD20_MODULE_STUFF, rl2_create_dir_conf, rl2_merge_dir_conf,
    rl2_create_srv_conf,     rl2_merge_srv_conf,  rl2_cmds,
    rl2_register_hooks,      AP_MODULE_FLAG_NONE
};
