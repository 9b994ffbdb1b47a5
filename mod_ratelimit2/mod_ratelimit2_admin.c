/*
 * mod_ratelimit2_admin.c -- the HTTP admin interface of the runtime
 * overrides: `SetHandler ratelimit2-admin` in a <Location>.  One POST of
 * a JSON object is one change (ban, unban, allow, ..., emergency) or
 * the list of what is in force; the verbs, their checks and the answer
 * are the core's (ratelimit2/admin.h), which ratelimit2ctl shares.
 *
 * This file only adapts: it reads the body, bounded, says who asks (the
 * user an auth module set, else the connection's address), opens the
 * audit file named by the policy for the request and hands the rest to
 * rl2_admin_http().  The table is the one post_config attached to the
 * server's policy (with its Redis side when there is one), so a change
 * holds from the next request in every child, and across the fleet.
 *
 * The location is protected like any other (Require valid-user, Require
 * ip ...): docs/operations.md shows how.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include "apr_strings.h"

#include <stdatomic.h>
#include <string.h>

#include "ratelimit2/admin.h"
#include "ratelimit2/audit.h"
#include "ratelimit2/policy.h"

#include "mod_ratelimit2.h"

/* The answer: room for a list of a few hundred entries (a longer one is
 * cut at a whole entry and says so). */
#define RL2_ADMIN_ANSWER_SIZE (256 * 1024)

/* The body, at most RL2_ADMIN_BODY_MAX + 1 bytes into buf (*len), so
 * that one over the bound is seen as such.  A Content-Length over the
 * bound is not read at all; the connection is then closed after the
 * answer, so that Apache does not read the rest to keep it alive.
 * Returns OK or the status Apache's body reading answered (a bad
 * Transfer-Encoding, LimitRequestBody). */
static int
rl2_admin_body(request_rec *r, char *buf, apr_size_t *len)
{
    const apr_size_t room = RL2_ADMIN_BODY_MAX + 1;
    long             n = 0;
    int              rc;

    *len = 0;
    if ((rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK) {
        return rc;
    }
    if (r->remaining > RL2_ADMIN_BODY_MAX) {
        *len = room;
        r->connection->keepalive = AP_CONN_CLOSE;
        return OK;
    }
    if (ap_should_client_block(r)) {
        while (*len < room
               && (n = ap_get_client_block(r, buf + *len, room - *len)) > 0) {
            *len += (apr_size_t)n;
        }
        if (n < 0) {
            /* The client went away, or sent what does not read. */
            r->connection->keepalive = AP_CONN_CLOSE;
            return HTTP_BAD_REQUEST;
        }
        if (*len == room) {
            r->connection->keepalive = AP_CONN_CLOSE;
        }
    }
    return OK;
}

/* Who the audit trail names: the authenticated user, else the address
 * the request came from (a location without authentication). */
static const char *
rl2_admin_author(request_rec *r)
{
    if (r->user != NULL && r->user[0] != '\0') {
        return r->user;
    }
    return apr_pstrcat(r->pool, "address ", r->connection->client_ip, NULL);
}

/* The audit file of the server's policy, opened for this request with
 * the syslog settings of its alerts (as ratelimit2ctl opens it); NULL
 * with the reason logged when it cannot be. */
static rl2_audit_t *
rl2_admin_audit(request_rec *r, const rl2_policy_t *policy)
{
    rl2_audit_conf_t conf;
    rl2_audit_t     *audit;
    rl2_err_t        err;
    char             path[4096];

    if (rl2_policy_overrides_audit(policy, rl2_global.backend.zone_name, path,
                                   sizeof(path))
        != 0) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      RL2_LOGNO(0030) "admin: the audit file's name is too "
                                      "long");
        return NULL;
    }
    rl2_audit_conf_default(&conf);
    conf.path = path;
    conf.syslog_socket = rl2_global.backend.alert_socket;
    conf.ident = rl2_global.backend.alert_ident;
    if (rl2_audit_open(&conf, &audit, &err) != RL2_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      RL2_LOGNO(0030) "admin: %s (no change is made)", err.msg);
        return NULL;
    }
    return audit;
}

static int
rl2_admin_send(request_rec *r, int status, const char *json)
{
    r->status = status;
    ap_set_content_type(r, "application/json; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    if (status == HTTP_METHOD_NOT_ALLOWED) {
        apr_table_setn(r->headers_out, "Allow", "POST");
    }
    if (!r->header_only) {
        ap_rputs(json, r);
    }
    return OK;
}

/* Once per process: a location the limiter decides is one a ban of the
 * operator's address, or the emergency admitting allowed clients only,
 * closes to the requests that would lift them. */
static void
rl2_admin_engine_note(request_rec *r)
{
    static atomic_int     noted;
    const rl2_dir_conf_t *dconf =
        ap_get_module_config(r->per_dir_config, &ratelimit2_module);

    if (dconf->engine != 0 && atomic_exchange(&noted, 1) == 0) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      RL2_LOGNO(0031) "admin: the limiter decides the requests "
                                      "of %s like any other: a ban or the "
                                      "emergency can refuse the request "
                                      "that would lift it (RateLimit2Engine "
                                      "off in its <Location>)",
                      r->uri);
    }
}

/* SetHandler ratelimit2-admin (rl2_handler_named, mod_ratelimit2_handlers.c).
 */
int
rl2_admin_serve(request_rec *r)
{
    const rl2_srv_conf_t *sconf =
        ap_get_module_config(r->server->module_config, &ratelimit2_module);
    const rl2_policy_t *policy = sconf->policy;
    char               *body = apr_palloc(r->pool, RL2_ADMIN_BODY_MAX + 1);
    char               *out = apr_palloc(r->pool, RL2_ADMIN_ANSWER_SIZE);
    rl2_admin_t         admin;
    rl2_clock_t         now;
    apr_size_t          len = 0;
    const char         *why;
    int                 rc, status;

    r->allowed |= (AP_METHOD_BIT << M_POST);
    rl2_admin_engine_note(r);
    if (policy == NULL || policy->overrides == NULL) {
        return rl2_admin_send(r, HTTP_NOT_FOUND,
                              "{\"ok\":false,\"error\":\"runtime overrides "
                              "are off in the policy\"}\n");
    }
    /* Only a POST's body is read: anything else is answered 405. */
    if (r->method_number == M_POST
        && (rc = rl2_admin_body(r, body, &len)) != OK) {
        return rc;
    }
    memset(&admin, 0, sizeof(admin));
    admin.policy = policy;
    admin.table = policy->overrides;
    admin.author = rl2_admin_author(r);
    admin.origin = RL2_AUDIT_ADMIN;
    /* Opened for a change only: 405, 415 and bad bodies need no file. */
    if (r->method_number == M_POST) {
        admin.audit = rl2_admin_audit(r, policy);
    }
    rl2_clock_now(&now);
    status = rl2_admin_http(&admin, r->method,
                            apr_table_get(r->headers_in, "Content-Type"), body,
                            len, &now, out, RL2_ADMIN_ANSWER_SIZE);
    if (admin.audit != NULL
        && (why = rl2_audit_syslog_error(admin.audit)) != NULL) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      RL2_LOGNO(0032) "admin: the change is in the audit "
                                      "file but not in syslog: %s",
                      why);
    }
    rl2_audit_close(admin.audit);
    return rl2_admin_send(r, status, out);
}
