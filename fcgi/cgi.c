/*
 * cgi.c -- ratelimit2-cgi: a CGI wrapper that decides a request from its
 * CGI environment and then becomes the real CGI program.
 *
 * The web server runs the wrapper as the CGI program.  It reads its
 * settings from the environment (the server's SetEnv / setenv.add-
 * environment):
 *   RATELIMIT2_POLICY          policy file (default RL2_CGI_DEFAULT_POLICY)
 *   RATELIMIT2_ZONE            shared-memory zone (default /ratelimit2)
 *   RATELIMIT2_ZONE_ENTRIES    keys it holds (default 100000; must match
 *                              every other process sharing the zone)
 *   RATELIMIT2_TARGET          the program to run when allowed
 *   RATELIMIT2_REDIS           count in Redis: HOST:PORT, /path/to/socket,
 *                              sentinel:NAME@H:P,... or cluster:H:P,...
 *   RATELIMIT2_REDIS_OPTIONS   db=N,user=U,password=P,connect_timeout=MS,
 *                              timeout=MS (comma-separated)
 *   RATELIMIT2_FAILOVER        local|open|closed[,share=F][,probe=MS]
 *   RATELIMIT2_ALERTS          off, or [on,]socket=PATH[,ident=NAME]...
 * (the syntax of ratelimit2-fcgi's -R, -O, -F and -A, store_opts.c)
 * then decides.  Allowed: it execve()s the target with RATELIMIT_LIMIT,
 * _REMAINING, _RESET, _RULE and _TIER added to the environment; stdin,
 * stdout and the process are handed over untouched, so the target's
 * output and exit status are exactly what they would be without the
 * wrapper.  Refused: it prints a CGI 429 response with the headers and
 * the JSON body (a runtime ban: the policy's ban_status, 429 or 403; the
 * emergency allow-list: 503; both with Retry-After).  Counters live in
 * the named zone, shared by every wrapper process (and by
 * ratelimit2-fcgi or Apache given the same name).
 *
 * Without RATELIMIT2_TARGET the target is PATH_TRANSLATED, but only when
 * REDIRECT_STATUS is set, i.e. when the server ran the wrapper as the
 * handler of another file (Apache Action, as php-cgi's force_redirect
 * insists): called directly, PATH_TRANSLATED is built from a PATH_INFO
 * the client chose, and would let a client run any executable file under
 * the document root.  The target must be an absolute path to an
 * executable regular file, and is run with execve(), never a shell.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fcgi.h"

#ifndef RL2_CGI_DEFAULT_POLICY
#define RL2_CGI_DEFAULT_POLICY "/etc/ratelimit2/ratelimit2.conf"
#endif

extern char **environ;

static const char *
rl2_cgi_getenv(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
}

/* An error answer on stdout, its reason on stderr (the server's error
 * log); the process exits 0 after it, as a CGI that answered. */
static int rl2_answer_error(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
rl2_answer_error(int status, const char *fmt, ...)
{
    char    msg[RL2_ERR_MAX + 256], out[1024];
    va_list ap;
    size_t  n;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "ratelimit2-cgi: %s\n", msg);
    /* The client learns what it did wrong, not how the server is set up. */
    n = rl2_cgi_error(out, sizeof(out), status,
                      status >= 500 ? "ratelimit2-cgi: the server is "
                                      "misconfigured; see its error log"
                                    : msg);
    fwrite(out, 1, n, stdout);
    return 0;
}

/* The program to become, checked; NULL after answering 500. */
static const char *
rl2_target(void)
{
    const char *t = getenv("RATELIMIT2_TARGET");
    struct stat st;

    if (t == NULL || t[0] == '\0') {
        t = getenv("REDIRECT_STATUS") != NULL ? getenv("PATH_TRANSLATED")
                                              : NULL;
    }
    if (t == NULL || t[0] == '\0') {
        rl2_answer_error(500, "no target: set RATELIMIT2_TARGET (or run "
                              "the wrapper as a handler, which sets "
                              "PATH_TRANSLATED and REDIRECT_STATUS)");
        return NULL;
    }
    if (t[0] != '/') {
        rl2_answer_error(500, "target %.200s is not an absolute path", t);
        return NULL;
    }
    errno = 0;
    if (stat(t, &st) != 0 || !S_ISREG(st.st_mode) || access(t, X_OK) != 0) {
        rl2_answer_error(500,
                         "target %.200s is not an executable regular "
                         "file%s%s",
                         t, errno ? ": " : "", errno ? strerror(errno) : "");
        return NULL;
    }
    return t;
}

/* Hand the process to the target: the wrapper's own arguments (an
 * ISINDEX query) follow it.  Returns only on failure. */
static int
rl2_exec(const char *target, char **argv, const rl2_field_t *vars,
         size_t n_vars)
{
    static const char *const names[] = { "LIMIT", "REMAINING", "RESET", "RULE",
                                         "TIER" };
    char                     name[32];

    /* Only this request's values: none inherited from the server. */
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(name, sizeof(name), "RATELIMIT_%s", names[i]);
        unsetenv(name);
    }
    for (size_t i = 0; i < n_vars; i++) {
        snprintf(name, sizeof(name), "RATELIMIT_%s", vars[i].name);
        setenv(name, vars[i].value, 1);
    }
    argv[0] = (char *)target;
    fflush(stdout);
    /* An ignored signal stays ignored across execve(): give the target
     * the disposition it would have had without the wrapper. */
    signal(SIGPIPE, SIG_DFL);
    execve(target, argv, environ);
    return rl2_answer_error(500, "cannot execute %.200s: %s", target,
                            strerror(errno));
}

typedef struct {
    rl2_policy_t    *policy;
    rl2_backend_t   *backend;
    rl2_overrides_t *overrides; /* NULL: none */
} rl2_cgi_t;

static void
rl2_cgi_close(rl2_cgi_t *c)
{
    rl2_overrides_close(c->overrides);
    rl2_backend_close(c->backend);
    rl2_policy_free(c->policy);
}

/* The runtime override table beside the zone, as the daemon and Apache
 * attach it.  Without it the request is decided on, the reason on
 * stderr (the server's error log): the table is an operator's tool, not
 * something a request needs.  A missing state directory is not repeated
 * on every request: ratelimit2ctl says it when a change is refused. */
static void
rl2_cgi_overrides(rl2_cgi_t *c, const rl2_backend_conf_t *bc)
{
    rl2_err_t note, err;

    if (rl2_backend_overrides_open(bc, c->policy, &c->overrides, &note, &err)
        != RL2_OK) {
        fprintf(stderr, "ratelimit2-cgi: runtime overrides are off: %s\n",
                err.msg);
    }
    /* With Redis, the fleet's table, through this run's connections
     * (the table is closed before the backend). */
    else if (rl2_backend_overrides_attach(c->backend, c->overrides, &err)
             != RL2_OK) {
        fprintf(stderr, "ratelimit2-cgi: runtime overrides through Redis: %s\n",
                err.msg);
    }
    c->policy->overrides = c->overrides;
}

/* One store option from the environment, if set. */
static int
rl2_cgi_store_env(rl2_backend_conf_t *bc, const char *name,
                  rl2_status_t (*parse)(rl2_backend_conf_t *, const char *,
                                        rl2_err_t *),
                  int *seen, rl2_err_t *err)
{
    const char *v = getenv(name);
    rl2_err_t   e;

    if (v == NULL || v[0] == '\0') {
        return 0;
    }
    *seen = 1;
    if (parse(bc, v, &e) != RL2_OK) {
        rl2_err_set(err, RL2_ERR_CONFIG, "%s: %s", name, e.msg);
        return -1;
    }
    return 0;
}

/* The backend conf from the environment; 0, or -1 with err set. */
static int
rl2_cgi_backend_conf(const rl2_policy_t *policy, rl2_backend_conf_t *bc,
                     rl2_err_t *err)
{
    int zone = 0, redis = 0, others = 0, alerts = 0;

    rl2_backend_conf_init(bc);
    bc->zone_entries = RL2_FCGI_DEFAULT_ENTRIES;
    bc->state_size = policy->max_state_size > 8 ? policy->max_state_size : 8;
    bc->vlog = policy->vlog; /* a ring of another size would be replaced */
    if (rl2_cgi_store_env(bc, "RATELIMIT2_ZONE", rl2_store_opt_zone_name, &zone,
                          err)
            != 0
        || rl2_cgi_store_env(bc, "RATELIMIT2_ZONE_ENTRIES",
                             rl2_store_opt_zone_entries, &zone, err)
               != 0
        || rl2_cgi_store_env(bc, "RATELIMIT2_REDIS", rl2_store_opt_redis,
                             &redis, err)
               != 0
        || rl2_cgi_store_env(bc, "RATELIMIT2_REDIS_OPTIONS",
                             rl2_store_opt_redis_options, &others, err)
               != 0
        || rl2_cgi_store_env(bc, "RATELIMIT2_FAILOVER", rl2_store_opt_failover,
                             &others, err)
               != 0
        || rl2_cgi_store_env(bc, "RATELIMIT2_ALERTS", rl2_store_opt_alerts,
                             &alerts, err)
               != 0) {
        return -1;
    }
    if (rl2_backend_conf_policy(bc, policy, err) != RL2_OK) {
        return -1;
    }
    return rl2_store_opt_check(bc, rl2_store_opt_needs_redis(bc), err) == RL2_OK
               ? 0
               : -1;
}

/* After a decide() error: 0 when the request was answered 503 (failover
 * closed while Redis is down), 1 when it runs (fail open, as the Apache
 * module does). */
static int
rl2_cgi_store_error(rl2_cgi_t *c, const char *zone, const rl2_err_t *err,
                    rl2_verdict_t *v)
{
    char    out[1024];
    int64_t retry = 1;

    if (c->backend != NULL && rl2_backend_refusing(c->backend, &retry)) {
        fprintf(stderr,
                "ratelimit2-cgi: store error, request refused "
                "with 503 (failover closed): %s\n",
                err->msg);
        fwrite(out, 1, rl2_cgi_unavailable(out, sizeof(out), retry), stdout);
        return 0;
    }
    fprintf(stderr,
            "ratelimit2-cgi: cannot decide with zone %s: %s; "
            "request let through\n",
            zone, err->msg);
    rl2_verdict_init(v);
    return 1;
}

/* Count the verdict in the zone's metrics (one request per process: the
 * binding lives as long as the request). */
static void
rl2_cgi_count(rl2_cgi_t *c, const rl2_verdict_t *v, const rl2_clock_t *now)
{
    rl2_metrics_bind_t *b = NULL;

    if (c->backend != NULL
        && rl2_metrics_bind(rl2_backend_metrics(c->backend), c->policy, NULL, 0,
                            &b, NULL, NULL)
               == RL2_OK) {
        rl2_metrics_record(b, v, now);
        rl2_metrics_unbind(b);
    }
}

/* Open the backend and decide the request against it. */
static rl2_status_t
rl2_cgi_open_decide(rl2_cgi_t *c, const rl2_backend_conf_t *bc,
                    rl2_request_t *req, rl2_verdict_t *v,
                    const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_status_t st = rl2_backend_open(bc, &c->backend, err);

    if (st != RL2_OK) {
        return st;
    }
    rl2_cgi_overrides(c, bc);
    req->tier_source = rl2_backend_tier_source(c->backend);
    /* One request per process: a per-thread count would never reach
     * RL2_METRICS_DECIDE_SAMPLE, so the request clock's low bits (no
     * relation to the request) choose one in that many to time. */
    if ((now->mono_us & (RL2_METRICS_DECIDE_SAMPLE - 1)) == 0) {
        return rl2_metrics_decide_timed(
            rl2_backend_metrics(c->backend), c->policy, NULL, 0,
            rl2_backend_store(c->backend), req, RL2_PHASE_ALL, now, v, err);
    }
    return rl2_decide(c->policy, NULL, 0, rl2_backend_store(c->backend), req,
                      RL2_PHASE_ALL, now, v, err);
}

/* Decide; 1 when the request may run (allowed, or the store failed and
 * we fail open), 0 when it was answered here. */
static int
rl2_cgi_decide(rl2_cgi_t *c, rl2_verdict_t *v, rl2_clock_t *now)
{
    rl2_cgi_req_t     *r = malloc(sizeof(*r));
    char               out[RL2_CGI_RESPONSE_MAX];
    rl2_backend_conf_t bc;
    rl2_cgi_error_t    e;
    rl2_err_t          err;
    rl2_status_t       st;
    int                run = 1;

    rl2_verdict_init(v);
    rl2_clock_now(now);
    if (r == NULL) {
        run = rl2_answer_error(500, "out of memory");
    }
    else if (rl2_cgi_backend_conf(c->policy, &bc, &err) != 0) {
        run = rl2_answer_error(500, "%s", err.msg);
    }
    else if (rl2_cgi_describe(c->policy, rl2_cgi_getenv, NULL, r, &e) != 0) {
        run = rl2_answer_error(e.status, "%s", e.reason);
    }
    else if ((st = rl2_cgi_open_decide(c, &bc, &r->req, v, now, &err))
             == RL2_ERR_REQUEST) {
        run = rl2_answer_error(400, "%s", err.msg);
    }
    else if (st == RL2_ERR_BOUND) {
        /* More limits than one request takes: refused, never run with
         * some unchecked (the loader keeps a policy file from this). */
        run = rl2_answer_error(500, "%s", err.msg);
    }
    else if (st != RL2_OK) {
        run = rl2_cgi_store_error(c, bc.zone_name, &err, v);
    }
    else {
        rl2_cgi_count(c, v, now);
        if (v->outcome == RL2_OUTCOME_DENY || v->challenger_denied) {
            rl2_vlog_record(rl2_backend_vlog(c->backend), c->policy, v,
                            r->req.method, r->req.path,
                            r->req.header(r->req.header_ctx, "User-Agent"),
                            now);
        }
        if (v->outcome == RL2_OUTCOME_DENY) {
            fwrite(out, 1,
                   rl2_cgi_deny(out, sizeof(out),
                                rl2_cgi_refusal_status(c->policy, v, 0), 0,
                                c->policy, v, now),
                   stdout);
            run = 0;
        }
    }
    free(r);
    return run;
}

int
main(int argc, char **argv)
{
    const char      *path = getenv("RATELIMIT2_POLICY");
    const char      *target;
    rl2_cgi_t        c = { NULL, NULL, NULL };
    rl2_cgi_fields_t fields;
    rl2_field_t      vars[5];
    rl2_verdict_t    v;
    rl2_clock_t      now;
    rl2_err_t        err;
    size_t           n_vars;

    (void)argc;
    /* hiredis writes with write(2): a connection Redis closed must not
     * kill the wrapper (restored before execve, rl2_exec). */
    signal(SIGPIPE, SIG_IGN);
    /* A request that cannot be served is not counted: the target is
     * checked before anything is decided. */
    if ((target = rl2_target()) == NULL) {
        return 0;
    }
    if (path == NULL || path[0] == '\0') {
        path = RL2_CGI_DEFAULT_POLICY;
    }
    if (rl2_cgi_policy_load(path, &c.policy, &err) != 0) {
        return rl2_answer_error(500, "%s", err.msg);
    }
    if (!rl2_cgi_decide(&c, &v, &now)) {
        rl2_cgi_close(&c);
        return 0;
    }
    rl2_cgi_fields(c.policy, &v, &now, &fields);
    n_vars = rl2_cgi_vars(c.policy, &v, &fields, vars);
    /* The values point into fields and the policy, which stay mapped
     * until execve replaces the process. */
    rl2_exec(target, argv, vars, n_vars);
    rl2_cgi_close(&c);
    return 0;
}
