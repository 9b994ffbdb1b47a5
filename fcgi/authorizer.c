/*
 * authorizer.c -- one FastCGI request: its params -> the core's verdict
 * -> the answer the web server expects.
 *
 * Authorizer role (lighttpd "mode" => "authorizer", Apache
 * mod_authnz_fcgi): "Status: 200" lets the request on, with the
 * RATELIMIT_* values as Variable-* headers (the server turns them into
 * request variables) and the rate-limit headers (Apache passes them to
 * the client, lighttpd drops them); any other status is the client's
 * answer, so a refusal is "Status: 429" first (lighttpd drops every
 * header it sees before a non-200 status), then Retry-After, the headers
 * and the JSON body.  A runtime ban answers the policy's ban_status (429
 * or 403) and the emergency allow-list 503, each with Retry-After.
 *
 * Responder role (nginx auth_request, which accepts only 2xx, 401 and
 * 403 from its subrequest): the same decision, refused with 403 and the
 * same headers for nginx to map to 429; and the health and metrics
 * paths (metrics.c) and the admin path (admin.c).
 *
 * Nothing here decides: the core does (rl2_decide, every phase at once,
 * since an authorizer sees each request exactly once).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <fcgiapp.h>

#include "fcgi.h"

/* Repeated params joined, for one request: room for the lists, and how
 * many distinct names keep their list for the next lookup (the core
 * reads X-Forwarded-For, the key and the tier header more than once). */
#define RL2_FCGI_JOIN_MAX   8192
#define RL2_FCGI_JOINED_MAX 8

typedef struct {
    char        name[64]; /* a copy: callers build names in buffers */
    const char *list;     /* in join */
} rl2_fcgi_joined_t;

typedef struct {
    char            **envp;
    size_t            used;     /* bytes of join taken */
    int               overflow; /* a list did not fit: answer 400 */
    size_t            n_joined;
    rl2_fcgi_joined_t joined[RL2_FCGI_JOINED_MAX];
    char              join[RL2_FCGI_JOIN_MAX];
} rl2_fcgi_params_t;

/* The list joined for name by an earlier lookup, or NULL. */
static const char *
rl2_fcgi_joined(const rl2_fcgi_params_t *p, const char *name)
{
    for (size_t i = 0; i < p->n_joined; i++) {
        if (strcmp(p->joined[i].name, name) == 0) {
            return p->joined[i].list;
        }
    }
    return NULL;
}

/* Append the values of every param `name` to p->join, ", " between them,
 * as Apache and lighttpd join a repeated header; NULL when they do not
 * fit. */
static const char *
rl2_fcgi_join(rl2_fcgi_params_t *p, const char *name, size_t nlen)
{
    char  *out = p->join + p->used;
    size_t room = sizeof(p->join) - p->used, n = 0;

    for (char **e = p->envp; *e != NULL; e++) {
        if (strncmp(*e, name, nlen) == 0 && (*e)[nlen] == '=') {
            const char *v = *e + nlen + 1;
            size_t      vlen = strlen(v), sep = n > 0 ? 2 : 0;

            if (n + sep + vlen + 1 > room) {
                return NULL;
            }
            memcpy(out + n, ", ", sep);
            memcpy(out + n + sep, v, vlen);
            n += sep + vlen;
        }
    }
    out[n] = '\0';
    p->used += n + 1;
    return out;
}

/* A param as the core reads it.  nginx before 1.23 passes a repeated
 * request header as several params of one name, and FCGX_GetParam
 * returns the first: a client's own X-Forwarded-For line before the one
 * its proxy appends would be believed, and of two X-API-Key lines the
 * limiter would count the first while PHP takes the last.  Joined, the
 * core sees the one list a proxy would pass on.  A server's own param
 * given twice (fastcgi_params and a later fastcgi_param both setting
 * REQUEST_URI) is the last one, as PHP-FPM reads it. */
static const char *
rl2_fcgi_param(void *ctx, const char *name)
{
    rl2_fcgi_params_t *p = ctx;
    size_t             nlen = strlen(name);
    const char        *first = NULL, *last = NULL, *list;
    int                count = 0;

    /* Joined by an earlier lookup: no second walk of the params. */
    if ((list = rl2_fcgi_joined(p, name)) != NULL) {
        return list;
    }
    /* The first byte first: a request's twenty-odd params are walked
     * for each of a dozen names, and most differ there. */
    for (char **e = p->envp; *e != NULL; e++) {
        if ((nlen == 0 || (*e)[0] == name[0]) && strncmp(*e, name, nlen) == 0
            && (*e)[nlen] == '=') {
            last = *e + nlen + 1;
            first = first != NULL ? first : last;
            count++;
        }
    }
    if (count < 2) {
        return first;
    }
    if (strncmp(name, "HTTP_", 5) != 0) {
        return last;
    }
    if ((list = rl2_fcgi_join(p, name, nlen)) == NULL) {
        p->overflow = 1;
        return first;
    }
    if (p->n_joined < RL2_FCGI_JOINED_MAX && nlen < sizeof(p->joined[0].name)) {
        memcpy(p->joined[p->n_joined].name, name, nlen + 1);
        p->joined[p->n_joined++].list = list;
    }
    return list;
}

static void
rl2_fcgi_send(rl2_fcgi_io_t *io, const char *buf, size_t len)
{
    static const char fallback[] = "Status: 500 Internal Server Error\r\n"
                                   "Content-Type: text/plain\r\n\r\n"
                                   "ratelimit2-fcgi: answer too large\n";

    if (len == 0) {
        rl2_log_request(RL2_LOG_ERROR, LOG_ERR,
                        "an answer did not fit its buffer");
        buf = fallback;
        len = sizeof(fallback) - 1;
    }
    if (io->fcgx != NULL) {
        io->failed = FCGX_PutStr(buf, (int)len, io->fcgx->out) < 0;
    }
    else if (io->http) {
        io->failed = rl2_http_reply(io, buf, len) != 0;
    }
    else {
        io->failed = rl2_fast_reply(io, buf, len) != 0;
    }
    if (io->failed) {
        rl2_log_request(RL2_LOG_ERROR, LOG_WARNING,
                        "could not send an "
                        "answer: the web server closed the connection");
    }
}

/* For logs: the address the web server gave, bounded; it is the server's
 * text, not the client's. */
static const char *
rl2_fcgi_peer(const rl2_fcgi_io_t *io)
{
    const char *a = FCGX_GetParam("REMOTE_ADDR", io->envp);

    return a != NULL && a[0] != '\0' ? a : "-";
}

/* The answer to a decided request. */
static size_t
rl2_fcgi_answer(const rl2_policy_t *policy, const rl2_verdict_t *v,
                const rl2_clock_t *now, int responder, char *out, size_t len)
{
    rl2_cgi_fields_t fields;
    rl2_field_t      vars[5];
    size_t           n_vars;

    if (v->outcome == RL2_OUTCOME_DENY) {
        return rl2_cgi_deny(out, len,
                            rl2_cgi_refusal_status(policy, v, responder),
                            responder, policy, v, now);
    }
    rl2_cgi_fields(policy, v, now, &fields);
    /* Variable-* means something only to an authorizer's server. */
    n_vars = responder ? 0 : rl2_cgi_vars(policy, v, &fields, vars);
    return rl2_cgi_response(out, len, "200 OK", vars, n_vars, &fields, NULL,
                            NULL);
}

static void
rl2_fcgi_log_verdict(const rl2_verdict_t *v)
{
    const rl2_layer_t *l = v->shown >= 0 ? &v->layers[v->shown] : NULL;

    if (v->outcome == RL2_OUTCOME_DENY) {
        rl2_log_request(RL2_LOG_REFUSAL, LOG_INFO,
                        "limited: client=%s "
                        "limit=%s retry_after=%lld",
                        l ? l->client : v->client_ip,
                        v->refusal == RL2_REFUSAL_BAN         ? "(banned)"
                        : v->refusal == RL2_REFUSAL_EMERGENCY ? "(emergency)"
                        : l                                   ? l->limit->name
                                                              : "-",
                        rl2_retry_after_s(v));
    }
    else if (v->dry_run_denied) {
        rl2_log_request(RL2_LOG_REFUSAL, LOG_NOTICE,
                        "dry_run: would limit client=%s", v->client_ip);
    }
}

/* After a decide() error: 1 when the request was answered 503 (failover
 * closed while Redis is down), 0 when it goes on as allowed. */
static int
rl2_fcgi_store_error(rl2_gen_t *gen, const rl2_err_t *err, rl2_fcgi_io_t *io,
                     char *out, size_t len)
{
    int64_t retry = 1;

    if (rl2_backend_refusing(gen->zone->backend, &retry)) {
        rl2_log_request(RL2_LOG_ERROR, LOG_ERR,
                        "store error, request "
                        "refused with 503 (failover closed): %s",
                        err->msg);
        rl2_fcgi_send(io, out, rl2_cgi_unavailable(out, len, retry));
        return 1;
    }
    /* Fail open, as the Apache module does: a broken store must not take
     * the site down. */
    rl2_log_request(RL2_LOG_ERROR, LOG_ERR,
                    "store error, request let "
                    "through: %s",
                    err->msg);
    return 0;
}

/* RL2_FCGI_SLOW when io came without libfcgi and the request is one only
 * libfcgi's streams can serve (admin.c, metrics.c): nothing was counted
 * or sent. */
static int
rl2_fcgi_decide(rl2_server_t *srv, rl2_gen_t *gen, rl2_fcgi_io_t *io,
                int responder)
{
    char              out[RL2_CGI_RESPONSE_MAX];
    rl2_cgi_req_t     r;
    rl2_cgi_error_t   e;
    rl2_verdict_t     v;
    rl2_clock_t       now;
    rl2_err_t         err;
    rl2_status_t      st;
    rl2_fcgi_params_t params;
    const char       *id;
    size_t            len;

    params.envp = io->envp;
    params.used = 0;
    params.overflow = 0;
    params.n_joined = 0;
    if (rl2_cgi_describe(gen->policy, rl2_fcgi_param, &params, &r, &e) != 0) {
        rl2_log_request(RL2_LOG_INPUT, LOG_WARNING,
                        "answered %d to a "
                        "request from %.47s: %s",
                        e.status, rl2_fcgi_peer(io), e.reason);
        rl2_fcgi_send(io, out,
                      rl2_cgi_error(out, sizeof(out), e.status, e.reason));
        return RL2_FCGI_DONE;
    }
    /* Never counted, in either role (admin.c). */
    if (srv->admin_path != NULL && strcmp(r.req.path, srv->admin_path) == 0) {
        if (io->fcgx == NULL) {
            return RL2_FCGI_SLOW;
        }
        rl2_fcgi_admin(srv, gen, io->fcgx, responder);
        return RL2_FCGI_DONE;
    }
    /* None under -H: the HTTP listener answers no path of its own. */
    if (responder && srv->health_path != NULL
        && strcmp(r.req.path, srv->health_path) == 0) {
        if (io->fcgx == NULL) {
            return RL2_FCGI_SLOW;
        }
        rl2_fcgi_health(srv, gen, io->fcgx);
        return RL2_FCGI_DONE;
    }
    if (responder && srv->metrics_path != NULL
        && strcmp(r.req.path, srv->metrics_path) == 0) {
        if (io->fcgx == NULL) {
            return RL2_FCGI_SLOW;
        }
        rl2_fcgi_metrics(srv, gen, io->fcgx);
        return RL2_FCGI_DONE;
    }
    rl2_clock_now(&now);
    id = rl2_fcgi_param(&params, "RATELIMIT2_REQUEST_ID");
    if ((len = rl2_once_find(id, now.mono_us, out, sizeof(out))) > 0) {
        /* The same client request again (nginx after an internal
         * redirect): the same answer, counted once. */
        rl2_fcgi_send(io, out, len);
        return RL2_FCGI_DONE;
    }
    rl2_verdict_init(&v);
    r.req.tier_source = rl2_backend_tier_source(gen->zone->backend);
    if ((st = rl2_metrics_decide(gen->metrics, gen->policy, NULL, 0,
                                 gen->zone->store, &r.req, RL2_PHASE_ALL, &now,
                                 &v, &err))
        != RL2_OK) {
        if (st == RL2_ERR_REQUEST) {
            /* Two API keys: counting it under either would let the
             * client choose whose counter it spends. */
            rl2_log_request(RL2_LOG_INPUT, LOG_WARNING,
                            "answered 400 to a request from %.47s: %s",
                            rl2_fcgi_peer(io), err.msg);
            len = rl2_cgi_error(out, sizeof(out), 400, err.msg);
            rl2_once_keep(id, now.mono_us, out, len);
            rl2_fcgi_send(io, out, len);
            return RL2_FCGI_DONE;
        }
        if (st == RL2_ERR_BOUND) {
            /* More limits than one request takes: refused, never let
             * through with some unchecked (the loader keeps a policy
             * file from this). */
            rl2_log_request(RL2_LOG_ERROR, LOG_ERR,
                            "answered 500 to a request from %.47s: %s",
                            rl2_fcgi_peer(io), err.msg);
            rl2_fcgi_send(io, out,
                          rl2_cgi_error(out, sizeof(out), 500,
                                        "too many limits for one request"));
            return RL2_FCGI_DONE;
        }
        if (rl2_fcgi_store_error(gen, &err, io, out, sizeof(out))) {
            return RL2_FCGI_DONE;
        }
        rl2_verdict_init(&v);
    }
    if (params.overflow) {
        /* Repeated headers longer than any proxy would pass: the core
         * read one of them only, so its verdict cannot stand. */
        rl2_log_request(RL2_LOG_INPUT, LOG_WARNING,
                        "answered 400 to a request from %.47s: repeated "
                        "headers too long",
                        rl2_fcgi_peer(io));
        len = rl2_cgi_error(out, sizeof(out), 400, "repeated headers too long");
        rl2_once_keep(id, now.mono_us, out, len);
        rl2_fcgi_send(io, out, len);
        return RL2_FCGI_DONE;
    }
    if (v.outcome == RL2_OUTCOME_DENY || v.challenger_denied) {
        rl2_vlog_record(rl2_backend_vlog(gen->zone->backend), gen->policy, &v,
                        r.req.method, r.req.path,
                        r.req.header(r.req.header_ctx, "User-Agent"), &now);
    }
    rl2_metrics_record(gen->metrics, &v, &now);
    rl2_fcgi_log_verdict(&v);
    len = rl2_fcgi_answer(gen->policy, &v, &now, responder, out, sizeof(out));
    rl2_once_keep(id, now.mono_us, out, len);
    rl2_fcgi_send(io, out, len);
    return RL2_FCGI_DONE;
}

int
rl2_fcgi_handle(rl2_server_t *srv, rl2_fcgi_io_t *io)
{
    const char *role = FCGX_GetParam("FCGI_ROLE", io->envp);
    char        out[512];
    rl2_gen_t  *gen;
    int         responder, rc;

    responder = role != NULL && strcmp(role, "RESPONDER") == 0;
    if (!responder && (role == NULL || strcmp(role, "AUTHORIZER") != 0)) {
        /* The Filter role: neither lighttpd, nginx nor httpd implements
         * it, so nothing could test it. */
        rl2_log_request(RL2_LOG_INPUT, LOG_WARNING,
                        "role %.20s is not "
                        "supported: use the authorizer or responder role",
                        role != NULL ? role : "-");
        rl2_fcgi_send(
            io, out,
            rl2_cgi_error(out, sizeof(out), 500, "FastCGI role not supported"));
        return RL2_FCGI_DONE;
    }
    gen = rl2_gens_acquire(&srv->gens);
    rc = rl2_fcgi_decide(srv, gen, io, responder);
    rl2_gens_release(&srv->gens, gen);
    return rc;
}
