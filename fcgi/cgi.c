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
 * then decides.  Allowed: it execve()s the target with RATELIMIT_LIMIT,
 * _REMAINING, _RESET, _RULE and _TIER added to the environment; stdin,
 * stdout and the process are handed over untouched, so the target's
 * output and exit status are exactly what they would be without the
 * wrapper.  Refused: it prints a CGI 429 response with the headers and
 * the JSON body.  Counters live in the named zone, shared by every
 * wrapper process (and by ratelimit2-fcgi or Apache given the same name).
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
rl2_env(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
}

/* An error answer on stdout, its reason on stderr (the server's error
 * log); the process exits 0 after it, as a CGI that answered. */
static int
rl2_answer_error(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
rl2_answer_error(int status, const char *fmt, ...)
{
    char msg[RL2_ERR_MAX + 256], out[1024];
    va_list ap;
    size_t n;

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
        rl2_answer_error(500, "target %.200s is not an executable regular "
                         "file%s%s", t, errno ? ": " : "",
                         errno ? strerror(errno) : "");
        return NULL;
    }
    return t;
}

static uint32_t
rl2_entries(void)
{
    const char *e = getenv("RATELIMIT2_ZONE_ENTRIES");
    char *end;
    unsigned long n;

    if (e == NULL || e[0] == '\0') {
        return RL2_FCGI_DEFAULT_ENTRIES;
    }
    n = strtoul(e, &end, 10);
    if (*end != '\0' || n < RL2_ZONE_MIN_ENTRIES
        || n > RL2_ZONE_MAX_ENTRIES) {
        return 0;
    }
    return (uint32_t)n;
}

/* Hand the process to the target: the wrapper's own arguments (an
 * ISINDEX query) follow it.  Returns only on failure. */
static int
rl2_exec(const char *target, char **argv, const rl2_field_t *vars,
         size_t n_vars)
{
    static const char *const names[] = { "LIMIT", "REMAINING", "RESET",
                                         "RULE", "TIER" };
    char name[32];

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
    execve(target, argv, environ);
    return rl2_answer_error(500, "cannot execute %.200s: %s", target,
                            strerror(errno));
}

typedef struct {
    rl2_policy_t *policy;
    rl2_zone_t   *zone;
    rl2_store_t  *store;
} rl2_cgi_t;

static void
rl2_cgi_close(rl2_cgi_t *c)
{
    rl2_store_destroy(c->store);
    rl2_zone_close(c->zone);
    rl2_policy_free(c->policy);
}

/* Decide; 1 when the request may run (allowed, or the zone failed and we
 * fail open, as the Apache module does), 0 when it was answered here. */
static int
rl2_cgi_decide(rl2_cgi_t *c, rl2_verdict_t *v, rl2_clock_t *now)
{
    const char *zone = getenv("RATELIMIT2_ZONE");
    uint32_t entries = rl2_entries();
    size_t state = c->policy->max_state_size > 8 ? c->policy->max_state_size
                                                 : 8;
    rl2_cgi_req_t *r = malloc(sizeof(*r));
    char out[RL2_CGI_RESPONSE_MAX];
    rl2_cgi_error_t e;
    rl2_err_t err;
    int run = 1;

    if (zone == NULL || zone[0] == '\0') {
        zone = RL2_FCGI_DEFAULT_ZONE;
    }
    rl2_verdict_init(v);
    rl2_clock_now(now);
    if (r == NULL || entries == 0) {
        run = rl2_answer_error(500, "%s", r == NULL ? "out of memory"
                               : "RATELIMIT2_ZONE_ENTRIES must be a number "
                                 "from 16 to 67108864");
    }
    else if (rl2_cgi_describe(c->policy, rl2_env, NULL, r, &e) != 0) {
        run = rl2_answer_error(e.status, "%s", e.reason);
    }
    else if (rl2_zone_open(zone, entries, state, 0600, &c->zone, &err)
             != RL2_OK
             || rl2_store_local_create(c->zone, &c->store, &err) != RL2_OK
             || rl2_decide(c->policy, NULL, 0, c->store, &r->req,
                           RL2_PHASE_ALL, now, v, &err) != RL2_OK) {
        fprintf(stderr, "ratelimit2-cgi: cannot decide with zone %s: %s; "
                "request let through\n", zone, err.msg);
        rl2_verdict_init(v);
    }
    else if (v->outcome == RL2_OUTCOME_DENY) {
        fwrite(out, 1, rl2_cgi_deny(out, sizeof(out),
                                    "429 Too Many Requests", c->policy, v,
                                    now), stdout);
        run = 0;
    }
    free(r);
    return run;
}

int
main(int argc, char **argv)
{
    const char *path = getenv("RATELIMIT2_POLICY");
    const char *target;
    rl2_cgi_t c = { NULL, NULL, NULL };
    rl2_cgi_fields_t fields;
    rl2_field_t vars[5];
    rl2_verdict_t v;
    rl2_clock_t now;
    rl2_err_t err;
    size_t n_vars;

    (void)argc;
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
