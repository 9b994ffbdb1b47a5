/*
 * main.c -- ratelimit2-fcgi: options, the listening socket, the worker
 * threads, and the signals that reload and stop them.
 *
 *   ratelimit2-fcgi -c POLICY [-s ADDRESS] [-t THREADS] [-z ZONE]
 *                   [-n ENTRIES] [-p HEALTH_PATH] [-R REDIS [-O OPTIONS]...
 *                   [-F FAILOVER] [-A ALERTS]] [-a ADMIN_PATH -K TOKENS]
 *                   [-H [-k IDLE_S]] [-C]
 *
 * Signals are taken by the main thread alone (sigwaitinfo), never in a
 * handler: a reload reads files and allocates, which no handler may do.
 * The workers (worker.c) block every signal, wait in poll() for a
 * connection or the stop pipe, and finish the request they hold before
 * they look at the pipe again, so SIGTERM lets every accepted request
 * complete.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "ratelimit2/config.h"

#include "fcgi.h"

#define RL2_DEFAULT_THREADS 8
#define RL2_MAX_THREADS     256
#define RL2_DEFAULT_HEALTH  "/ratelimit2/health"
/* -k: above nginx's keepalive_timeout (60 s by default), so that nginx
 * closes an idle connection first and never sends on one closing. */
#define RL2_DEFAULT_IDLE_S 75
#define RL2_MAX_IDLE_S     3600

typedef struct {
    const char        *policy;
    const char        *listen;
    const char        *health;
    const char        *metrics;    /* -m */
    const char        *token_file; /* -T */
    const char        *admin;      /* -a */
    const char        *admin_file; /* -K */
    long               threads;
    int                health_set; /* -p given */
    int                http;       /* -H: the socket speaks HTTP/1.1 */
    long               idle_s;     /* -k */
    int                check;      /* -C: check the options and exit */
    rl2_backend_conf_t backend;    /* -z, -n, -R, -O, -F, -A */
    int                redis_opts; /* -O, -F or -A seen */
    int                store_bad;  /* one of them did not parse */
    rl2_err_t          store_err;
} rl2_opts_t;

static void
rl2_usage(FILE *f)
{
    fprintf(
        f,
        "usage: ratelimit2-fcgi -c POLICY [-s ADDRESS] [-t THREADS] "
        "[-z ZONE] [-n ENTRIES]\n"
        "                       [-p HEALTH_PATH] [-R REDIS [-O OPTIONS]... "
        "[-F FAILOVER]\n"
        "                       [-A ALERTS]]  (or the policy file's redis,\n"
        "                       failover and alerts groups; an option "
        "replaces its group)\n"
        "  -c POLICY    policy file (required; reloaded on SIGHUP)\n"
        "  -s ADDRESS   listen on host:port, [v6]:port or a unix socket "
        "path,\n"
        "               unless systemd or spawn-fcgi passes a socket\n"
        "  -t THREADS   worker threads (default %d)\n"
        "  -z ZONE      shared-memory zone (default %s)\n"
        "  -n ENTRIES   keys the zone holds (default %u)\n"
        "  -p PATH      health path answered in the responder role "
        "(default %s)\n"
        "  -R REDIS     count in Redis at HOST:PORT, [IPv6]:PORT or "
        "/path/to/socket\n"
        "               (or sentinel:NAME@H:P,..., cluster:H:P,...)\n"
        "  -O OPTIONS   Redis options, comma-separated, repeatable: db=N,\n"
        "               user=U, password=P, connect_timeout=MS, timeout=MS\n"
        "  -F FAILOVER  while Redis is down: local|open|closed[,share=F]\n"
        "               [,probe=MS][,failures=N] (default local)\n"
        "  -A ALERTS    syslog alerts: off, or [on,]socket=PATH[,ident=NAME]"
        "\n"
        "               [,facility=F][,interval=S] (default /dev/log)\n"
        "  -E EVENTS    client alerts: limited=S|off (default 60),\n"
        "               ban=N/S|off (default off), evictions=N|off "
        "(default 1000/min),\n"
        "               anomaly=N|off (a rule's refusals a minute: default "
        "60),\n"
        "               zone_full=WARNING[/CRITICAL]|off (default "
        "80%%/100%%)\n"
        "  -m PATH      metrics path answered in the responder role "
        "(default: none)\n"
        "  -T FILE      the metrics path needs \"Authorization: Bearer "
        "<first line of FILE>\"\n"
        "  -a PATH      admin path answered in the responder role: runtime\n"
        "               overrides changed by POSTed JSON (default: none)\n"
        "  -K FILE      the admin path's bearer tokens, lines \"NAME TOKEN\" "
        "(required\n"
        "               with -a; mode 0600 or 0640; reloaded on SIGHUP)\n"
        "  -H           the socket speaks HTTP/1.1, not FastCGI: nginx\n"
        "               auth_request over proxy_pass with an upstream "
        "keepalive\n"
        "               (no -p, -m or -a: no path is answered over HTTP)\n"
        "  -k IDLE_S    -H: a connection must complete a request within "
        "IDLE_S\n"
        "               of its accept or last answer, or is closed "
        "(default %d)\n"
        "  -C           check: load the policy and the options, print the "
        "store\n"
        "               they give and exit 0, or the error and exit 1\n",
        RL2_DEFAULT_THREADS, RL2_FCGI_DEFAULT_ZONE, RL2_FCGI_DEFAULT_ENTRIES,
        RL2_DEFAULT_HEALTH, RL2_DEFAULT_IDLE_S);
}

static int
rl2_number(const char *text, long lo, long hi, long *out)
{
    char *end;

    errno = 0;
    *out = strtol(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' && *out >= lo && *out <= hi
               ? 0
               : -1;
}

static const char *
rl2_opts_check(const rl2_opts_t *o)
{
    if (o->policy == NULL) {
        return "-c POLICY is required";
    }
    if (o->threads < 0) {
        return "-t needs a number of threads from 1 to 256";
    }
    if (o->health[0] != '/') {
        return "-p: the health path must start with /";
    }
    if (o->metrics != NULL && o->metrics[0] != '/') {
        return "-m: the metrics path must start with /";
    }
    if (o->token_file != NULL && o->metrics == NULL) {
        return "-T: a token protects the metrics path: give -m PATH too";
    }
    if (o->admin != NULL && o->admin[0] != '/') {
        return "-a: the admin path must start with /";
    }
    if ((o->admin != NULL) != (o->admin_file != NULL)) {
        return o->admin != NULL
                   ? "-a: the admin path needs its tokens: give -K FILE too"
                   : "-K: tokens are for the admin path: give -a PATH too";
    }
    if (o->admin != NULL
        && (strcmp(o->admin, o->health) == 0
            || (o->metrics != NULL && strcmp(o->admin, o->metrics) == 0))) {
        return "-a: the admin path must differ from the health and metrics "
               "paths";
    }
    if (o->idle_s < 0) {
        return "-k needs a number of seconds from 1 to 3600";
    }
    if (o->idle_s != RL2_DEFAULT_IDLE_S && !o->http) {
        return "-k: the idle limit is the HTTP listener's: give -H too";
    }
    /* The health, metrics and admin answers are written to libfcgi's
     * streams; over HTTP the daemon answers the decision alone. */
    if (o->http && (o->health_set || o->metrics != NULL || o->admin != NULL)) {
        return "-H: the health, metrics and admin paths (-p, -m, -a) are "
               "answered over FastCGI only";
    }
    if (o->store_bad) {
        return o->store_err.msg;
    }
    return NULL;
}

/* -z, -n, -R, -O, -F, -A and -E into o->backend; the first error is
 * kept. */
static void
rl2_opt_store(rl2_opts_t *o, int c, const char *arg)
{
    rl2_backend_conf_t *bc = &o->backend;
    rl2_err_t           err;
    int                 rc;

    if (c == 'E') {
        rc = rl2_fcgi_events(&bc->metrics, arg, &err);
    }
    else {
        rc = (c == 'z'   ? rl2_store_opt_zone_name
              : c == 'n' ? rl2_store_opt_zone_entries
              : c == 'R' ? rl2_store_opt_redis
              : c == 'O' ? rl2_store_opt_redis_options
              : c == 'F' ? rl2_store_opt_failover
                         : rl2_store_opt_alerts)(bc, arg, &err)
                     == RL2_OK
                 ? 0
                 : -1;
    }
    /* Alerts and events serve a local store too (event=limited). */
    o->redis_opts |= c == 'O' || c == 'F';
    if (rc != 0 && !o->store_bad) {
        o->store_bad = 1;
        snprintf(o->store_err.msg, sizeof(o->store_err.msg), "-%c: %.240s", c,
                 err.msg);
    }
}

/* After the policy is loaded (once: the daemon serves this one): do
 * -O, -F and -A have a Redis server, from -R or from the policy's redis
 * group, and is the Redis conf consistent? */
static int
rl2_opts_store_check(const rl2_opts_t *o, const rl2_policy_t *policy,
                     rl2_err_t *err)
{
    int has = policy->store != NULL
              && (policy->store->given & RL2_BACKEND_GIVEN_REDIS);

    return rl2_store_opt_check(&o->backend, o->redis_opts && !has, err)
                   == RL2_OK
               ? 0
               : -1;
}

static int
rl2_opts_parse(int argc, char **argv, rl2_opts_t *o)
{
    const char *msg;
    int         c;

    memset(o, 0, sizeof(*o));
    o->health = RL2_DEFAULT_HEALTH;
    o->threads = RL2_DEFAULT_THREADS;
    o->idle_s = RL2_DEFAULT_IDLE_S;
    rl2_backend_conf_init(&o->backend);
    o->backend.zone_entries = RL2_FCGI_DEFAULT_ENTRIES;
    while ((c = getopt(argc, argv, "c:s:t:z:n:p:m:T:a:K:R:O:F:A:E:Hk:Ch"))
           != -1) {
        switch (c) {
        case 'z':
        case 'n':
        case 'R':
        case 'O':
        case 'F':
        case 'A':
        case 'E':
            rl2_opt_store(o, c, optarg);
            break;
        case 'c':
            o->policy = optarg;
            break;
        case 's':
            o->listen = optarg;
            break;
        case 'C':
            o->check = 1;
            break;
        case 'p':
            o->health = optarg;
            o->health_set = 1;
            break;
        case 'H':
            o->http = 1;
            break;
        case 'k':
            if (rl2_number(optarg, 1, RL2_MAX_IDLE_S, &o->idle_s) != 0) {
                o->idle_s = -1;
            }
            break;
        case 'm':
            o->metrics = optarg;
            break;
        case 'T':
            o->token_file = optarg;
            break;
        case 'a':
            o->admin = optarg;
            break;
        case 'K':
            o->admin_file = optarg;
            break;
        case 't':
            if (rl2_number(optarg, 1, RL2_MAX_THREADS, &o->threads) != 0) {
                o->threads = -1;
            }
            break;
        case 'h':
            rl2_usage(stdout);
            exit(0);
        default:
            rl2_usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ratelimit2-fcgi: unexpected argument %s\n",
                argv[optind]);
        return -1;
    }
    if ((msg = rl2_opts_check(o)) != NULL) {
        fprintf(stderr, "ratelimit2-fcgi: %s\n", msg);
        rl2_usage(stderr);
        return -1;
    }
    return 0;
}

/* The socket handed over, or the one -s names. */
static int
rl2_socket(const rl2_opts_t *o, const char **what)
{
    rl2_err_t err;
    int       fd = rl2_listen_inherited(&err);

    if (fd == -2) {
        rl2_log(LOG_ERR, "%s", err.msg);
        return -1;
    }
    if (fd >= 0 && o->listen != NULL) {
        rl2_log(LOG_ERR,
                "-s %s given, but a listening socket was passed "
                "(systemd or spawn-fcgi): use one or the other",
                o->listen);
        return -1;
    }
    if (fd < 0 && o->listen == NULL) {
        rl2_log(LOG_ERR, "no socket: give -s ADDRESS, or start under "
                         "spawn-fcgi or systemd socket activation");
        return -1;
    }
    if (fd < 0) {
        fd = rl2_listen_open(o->listen, &err);
        *what = o->listen;
    }
    else {
        *what = fd == 0 ? "the socket on fd 0" : "the socket from systemd";
    }
    if (fd < 0 || rl2_listen_prepare(fd, &err) != 0) {
        rl2_log(LOG_ERR, "%s", err.msg);
        return -1;
    }
    return fd;
}

/* Wait for signals; returns when told to stop. */
static void
rl2_signal_loop(rl2_server_t *srv, const sigset_t *set)
{
    rl2_err_t err;
    int       sig;

    for (;;) {
        sig = sigwaitinfo(set, NULL);
        if (sig < 0) {
            continue;
        }
        if (sig != SIGHUP) {
            rl2_log(LOG_INFO,
                    "%s: finishing requests in flight, then "
                    "exiting",
                    strsignal(sig));
            return;
        }
        rl2_fcgi_admin_reload(srv);
        if (rl2_gens_reload(&srv->gens, &err) != 0) {
            rl2_log(LOG_ERR, "reload refused, generation %lu stays: %s",
                    srv->gens.current->number, err.msg);
        }
        else {
            rl2_log(LOG_INFO, "reloaded %s: generation %lu",
                    srv->gens.policy_path, srv->gens.current->number);
        }
    }
}

/* A worker's own buffers: a FastCGI worker's vetting, an HTTP worker's
 * request head; -1 when there is no memory. */
static int
rl2_worker_buffers(rl2_worker_t *w)
{
    if (w->http != NULL) {
        w->http_req = malloc(sizeof(*w->http_req));
        return w->http_req != NULL ? 0 : -1;
    }
    w->vet = malloc(sizeof(*w->vet));
    return w->vet != NULL ? 0 : -1;
}

/* At stop, what the HTTP listener did: how many requests each
 * connection carried (nginx's upstream keepalive at work). */
static void
rl2_http_report(const rl2_worker_t *w, long n, const rl2_http_t *http)
{
    unsigned long served = 0;

    for (long i = 0; i < n; i++) {
        served += w[i].http_served;
    }
    rl2_log(LOG_INFO, "HTTP: %lu requests answered on %lu connections", served,
            http->accepted);
}

static int
rl2_run(rl2_server_t *srv, int fd, long n, rl2_http_t *http,
        const sigset_t *set)
{
    rl2_worker_t *w = calloc((size_t)n, sizeof(*w));
    int           stop[2] = { -1, -1 }, ep;
    long          started = 0;

    if (w == NULL || pipe2(stop, O_CLOEXEC) != 0) {
        rl2_log(LOG_ERR, "cannot start: %s", strerror(errno));
        free(w);
        return -1;
    }
    ep = rl2_workers_set(fd, stop[0]);
    /* The HTTP connections wait for their next request in the set, and
     * nowhere else. */
    if (http != NULL && ep < 0) {
        rl2_log(LOG_ERR, "-H: cannot make an epoll set: %s", strerror(errno));
        n = 0;
    }
    for (; started < n; started++) {
        w[started] = (rl2_worker_t){ .srv = srv,
                                     .listen_fd = fd,
                                     .stop_fd = stop[0],
                                     .epoll_fd = ep,
                                     .http = http };
        if (rl2_worker_buffers(&w[started]) != 0
            || pthread_create(&w[started].tid, NULL, rl2_worker_main,
                              &w[started])
                   != 0) {
            rl2_log(LOG_ERR, "cannot start thread %ld", started + 1);
            free(w[started].vet);
            free(w[started].http_req);
            break;
        }
    }
    if (started == n) {
        rl2_signal_loop(srv, set);
    }
    /* The pipe stays readable for every worker once written. */
    if (write(stop[1], "x", 1) != 1) {
        rl2_log(LOG_ERR, "cannot stop the workers: %s", strerror(errno));
    }
    for (long i = 0; i < started; i++) {
        pthread_join(w[i].tid, NULL);
        free(w[i].vet);
        free(w[i].http_req);
    }
    if (http != NULL && started > 0) {
        rl2_http_report(w, started, http);
    }
    if (ep >= 0) {
        close(ep);
    }
    close(stop[0]);
    close(stop[1]);
    free(w);
    return started == n && n > 0 ? 0 : -1;
}

/* -C: the store the policy and the options give, on stdout (exit 0), or
 * the error on stderr (exit 1); nothing is opened or connected but the
 * admin token file (-K), read and checked as at start. */
static int
rl2_check(const rl2_opts_t *o, const rl2_policy_t *policy)
{
    rl2_backend_conf_t  bc = o->backend;
    rl2_admin_tokens_t *tokens;
    char                line[1024];
    rl2_err_t           err;

    if (rl2_backend_conf_policy(&bc, policy, &err) != RL2_OK
        || rl2_store_opt_check(&bc, rl2_store_opt_needs_redis(&bc), &err)
               != RL2_OK) {
        fprintf(stderr, "ratelimit2-fcgi: %s\n", err.msg);
        return 1;
    }
    /* The admin tokens too: a file the daemon would refuse at start. */
    if (o->admin_file != NULL) {
        if (rl2_admin_tokens_read(o->admin_file, &tokens, &err) != 0) {
            fprintf(stderr, "ratelimit2-fcgi: -K %s\n", err.msg);
            return 1;
        }
        rl2_admin_tokens_free(tokens);
    }
    rl2_store_opt_describe(&bc, line, sizeof(line));
    printf("%s\n", line);
    return 0;
}

int
main(int argc, char **argv)
{
    rl2_server_t  srv;
    rl2_policy_t *policy;
    rl2_opts_t    o;
    rl2_http_t    http;
    rl2_clock_t   now;
    rl2_err_t     err;
    sigset_t      set;
    const char   *where = NULL;
    int           fd, rc;

    /* Before anything else: a SIGHUP during start-up must not kill us,
     * and every thread inherits this mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    /* libfcgi installs its own SIGPIPE and SIGUSR1 handlers where the
     * disposition is the default; SIGUSR1 would make its reads fail. */
    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);

    if (rl2_opts_parse(argc, argv, &o) != 0) {
        return 2;
    }
    /* The policy is loaded once, here: its store groups complete the
     * options, then the first generation serves it. */
    if (rl2_cgi_policy_load(o.policy, &policy, &err) != 0) {
        fprintf(stderr, "ratelimit2-fcgi: %s\n", err.msg);
        return 1;
    }
    if (rl2_opts_store_check(&o, policy, &err) != 0) {
        fprintf(stderr, "ratelimit2-fcgi: %s\n", err.msg);
        rl2_policy_free(policy);
        return 2;
    }
    if (o.check) {
        rc = rl2_check(&o, policy);
        rl2_policy_free(policy);
        return rc;
    }
    rl2_log_open("ratelimit2-fcgi");
    memset(&srv, 0, sizeof(srv));
    srv.health_path = o.http ? NULL : o.health;
    srv.metrics_path = o.metrics;
    srv.admin_path = o.admin;
    srv.admin_file = o.admin_file;
    if (o.token_file != NULL
        && rl2_fcgi_token_read(o.token_file, &srv.metrics_token, &err) != 0) {
        rl2_log(LOG_ERR, "%s", err.msg);
        rl2_policy_free(policy);
        return 1;
    }
    if (rl2_fcgi_admin_init(&srv, &err) != 0) {
        rl2_log(LOG_ERR, "-K %s", err.msg);
        rl2_fcgi_admin_destroy(&srv);
        free(srv.metrics_token);
        rl2_policy_free(policy);
        return 1;
    }
    if (rl2_gens_init(&srv.gens, o.policy, policy, &o.backend, &err) != 0) {
        rl2_log(LOG_ERR, "%s", err.msg);
        rl2_fcgi_admin_destroy(&srv);
        free(srv.metrics_token);
        return 1;
    }
    if ((fd = rl2_socket(&o, &where)) < 0 || FCGX_Init() != 0) {
        if (fd >= 0) {
            rl2_log(LOG_ERR, "libfcgi failed to initialise");
            close(fd);
        }
        rl2_gens_destroy(&srv.gens);
        rl2_fcgi_admin_destroy(&srv);
        free(srv.metrics_token);
        return 1;
    }
    if (o.http && rl2_http_init(&http, o.idle_s, &err) != 0) {
        rl2_log(LOG_ERR, "%s", err.msg);
        close(fd);
        rl2_gens_destroy(&srv.gens);
        rl2_fcgi_admin_destroy(&srv);
        free(srv.metrics_token);
        return 1;
    }
    rl2_clock_now(&now);
    srv.started_us = now.mono_us;
    rl2_log(LOG_INFO,
            "policy %s (generation 1), zone %s of %ld entries, "
            "store %s, %ld threads on %s (%s)",
            o.policy, o.backend.zone_name, (long)o.backend.zone_entries,
            srv.gens.current->zone->store->ops->name, o.threads, where,
            o.http ? "HTTP/1.1" : "FastCGI");
    rc = rl2_run(&srv, fd, o.threads, o.http ? &http : NULL, &set);
    if (o.http) {
        rl2_http_destroy(&http);
    }
    close(fd);
    if (o.listen != NULL && rl2_listen_is_unix(o.listen)) {
        unlink(o.listen);
    }
    rl2_gens_destroy(&srv.gens);
    rl2_fcgi_admin_destroy(&srv);
    free(srv.metrics_token);
    rl2_log(LOG_INFO, "stopped");
    closelog();
    return rc == 0 ? 0 : 1;
}
