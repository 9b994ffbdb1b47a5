/*
 * main.c -- ratelimit2ctl, the operator's command-line tool: options,
 * the manual (--help), and the dispatch to one file per subcommand.
 *
 * It reads the same policy file as the servers and talks to the same
 * stores: the named local zone (attached, never created or resized) and
 * Redis, named by -R or by the policy's redis group.  Options may come before
 * or after the subcommand.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/store_opts.h"

#include "ctl.h"

static const char rl2_ctl_manual[] =
    "NAME\n"
    "    ratelimit2ctl - inspect and operate mod_ratelimit2 and "
    "ratelimit2-fcgi\n"
    "\n"
    "SYNOPSIS\n"
    "    ratelimit2ctl [OPTIONS] status KEY\n"
    "    ratelimit2ctl [OPTIONS] reset KEY\n"
    "    ratelimit2ctl check CONFIG\n"
    "    ratelimit2ctl docs CONFIG\n"
    "    ratelimit2ctl [OPTIONS] report [--json | --html] [-o FILE]\n"
    "\n"
    "DESCRIPTION\n"
    "    status KEY   Usage and remaining count of every limit that applies "
    "to\n"
    "                 the client KEY for one request (-m, -p), read from the\n"
    "                 store without counting anything.  KEY is an address\n"
    "                 (203.0.113.7, 2001:db8::1), user:NAME or key:APIKEY.\n"
    "                 Users and API keys are hashed with the policy's\n"
    "                 hash_secret, exactly as the servers do.  One line per\n"
    "                 limit: rule, limit, client key, limit, used, remaining,\n"
    "                 seconds until reset, allowed or refused.\n"
    "    reset KEY    Forget the counters of every limit status would show,\n"
    "                 in the local zone and, with Redis, in Redis (and the\n"
    "                 local zone's failover counters), so the client's next\n"
    "                 request starts afresh.\n"
    "    check CONFIG Load the policy file; print its effective rules (rules "
    "in\n"
    "                 order, then the default rule; limits per tier) or the\n"
    "                 error as FILE:LINE: message.\n"
    "    docs CONFIG  The policy as Markdown tables for API documentation:\n"
    "                 every rule, tier and limit.\n"
    "    report       The violation log: denials by rule and limit, by tier "
    "and\n"
    "                 by client, the top clients, the hit rate (denials per\n"
    "                 minute over the period the log covers) and the "
    "breathing\n"
    "                 room of each limit (peak demand in one window, i.e. the\n"
    "                 limit plus the most denials one client met in one "
    "window,\n"
    "                 divided by the limit), then the latest -n entries.\n"
    "                 Reads the ring of the zone and, with Redis, the\n"
    "                 stream named by the policy (a Cluster keeps the log in\n"
    "                 the rings).\n"
    "\n"
    "OPTIONS\n"
    "    -c, --config FILE    policy file (default " RL2_CTL_DEFAULT_POLICY
    ")\n"
    "    -z, --zone NAME      shared-memory zone (default /ratelimit2)\n"
    "    -R, --redis ADDR     Redis at HOST:PORT, [IPv6]:PORT, "
    "/path/to/socket,\n"
    "                         sentinel:NAME@HOST:PORT,... or\n"
    "                         cluster:HOST:PORT,... (as ratelimit2-fcgi -R);\n"
    "                         default: the policy's redis group, if any\n"
    "    -O, --redis-options OPTS  db=N,user=U,password=P,connect_timeout=MS,\n"
    "                         timeout=MS (repeatable)\n"
    "    -m, --method M       request method for status and reset (GET)\n"
    "    -p, --path P         request path for status and reset (/)\n"
    "    -a, --address ADDR   client address for a user: or key: KEY; without\n"
    "                         it, limits keyed by address are left out\n"
    "    -t, --tier NAME      the tier a trusted upstream would name\n"
    "    -n, --top N          clients and latest entries listed by report "
    "(10)\n"
    "    --json, --html       report format (default text)\n"
    "    -o, --output FILE    write the report to FILE\n"
    "    -h, --help           this manual\n"
    "\n"
    "EXIT STATUS\n"
    "    0  success (check: the policy is valid)\n"
    "    1  check, docs: the policy is invalid\n"
    "    2  bad command line\n"
    "    3  the policy, the zone, the violation log or Redis could not be\n"
    "       read or written\n"
    "\n"
    "NOTES\n"
    "    Limits written inline in Apache (RateLimit2Limit) are not in the\n"
    "    policy file and are not shown.  The zone is attached, never created:\n"
    "    status and reset need a server to have created it (or -R).\n";

int
rl2_ctl_fail(int status, const char *fmt, ...)
{
    va_list ap;

    fputs("ratelimit2ctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

static const struct option rl2_ctl_longopts[] = {
    { "config", required_argument, NULL, 'c' },
    { "zone", required_argument, NULL, 'z' },
    { "redis", required_argument, NULL, 'R' },
    { "redis-options", required_argument, NULL, 'O' },
    { "method", required_argument, NULL, 'm' },
    { "path", required_argument, NULL, 'p' },
    { "address", required_argument, NULL, 'a' },
    { "tier", required_argument, NULL, 't' },
    { "top", required_argument, NULL, 'n' },
    { "output", required_argument, NULL, 'o' },
    { "json", no_argument, NULL, 'J' },
    { "html", no_argument, NULL, 'H' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

static int
rl2_ctl_opt(rl2_ctl_opts_t *o, int c, const char *arg)
{
    rl2_err_t err;
    char     *end;

    switch (c) {
    case 'c':
        o->policy = arg;
        return 0;
    case 'z':
        o->zone = arg;
        return rl2_store_opt_zone_name(&o->backend, arg, &err) == RL2_OK
                   ? 0
                   : rl2_ctl_fail(-1, "-z: %s", err.msg);
    case 'm':
        o->method = arg;
        return 0;
    case 'p':
        o->path = arg;
        return 0;
    case 'a':
        o->address = arg;
        return 0;
    case 't':
        o->tier = arg;
        return 0;
    case 'o':
        o->output = arg;
        return 0;
    case 'J':
        o->format = RL2_CTL_JSON;
        return 0;
    case 'H':
        o->format = RL2_CTL_HTML;
        return 0;
    case 'n':
        errno = 0;
        o->top = strtol(arg, &end, 10);
        return errno == 0 && *end == '\0' && o->top >= 1 && o->top <= 1000
                   ? 0
                   : rl2_ctl_fail(-1, "-n: expected 1 to 1000");
    case 'R':
        return rl2_store_opt_redis(&o->backend, arg, &err) == RL2_OK
                   ? 0
                   : rl2_ctl_fail(-1, "-R: %s", err.msg);
    case 'O':
        return rl2_store_opt_redis_options(&o->backend, arg, &err) == RL2_OK
                   ? 0
                   : rl2_ctl_fail(-1, "-O: %s", err.msg);
    default:
        return -1;
    }
}

static int
rl2_ctl_parse(int argc, char **argv, rl2_ctl_opts_t *o)
{
    rl2_err_t err;
    int       c;

    memset(o, 0, sizeof(*o));
    o->prog = "ratelimit2ctl";
    o->policy = RL2_CTL_DEFAULT_POLICY;
    o->zone = "/ratelimit2";
    o->method = "GET";
    o->path = "/";
    o->top = 10;
    rl2_backend_conf_init(&o->backend);
    while ((c = getopt_long(argc, argv, "c:z:R:O:m:p:a:t:n:o:h",
                            rl2_ctl_longopts, NULL))
           != -1) {
        if (c == 'h') {
            fputs(rl2_ctl_manual, stdout);
            exit(RL2_CTL_OK);
        }
        if (rl2_ctl_opt(o, c, optarg) != 0) {
            return -1;
        }
    }
    /* -O alone refines the policy's redis group: checked with it. */
    if (o->backend.redis_enabled
        && rl2_store_opt_check(&o->backend, 0, &err) != RL2_OK) {
        return rl2_ctl_fail(-1, "-R: %s", err.msg);
    }
    return 0;
}

int
main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(const rl2_ctl_opts_t *, int, char **);
        int talks_to_store; /* Redis from the policy unless -R */
    } cmds[] = { { "status", rl2_ctl_status, 1 },
                 { "reset", rl2_ctl_reset, 1 },
                 { "check", rl2_ctl_check, 0 },
                 { "docs", rl2_ctl_docs, 0 },
                 { "report", rl2_ctl_report, 1 } };
    rl2_ctl_opts_t o;

    if (rl2_ctl_parse(argc, argv, &o) != 0) {
        fputs("usage: ratelimit2ctl [OPTIONS] status|reset|check|docs|"
              "report ...  (--help for the manual)\n",
              stderr);
        return RL2_CTL_USAGE;
    }
    if (optind >= argc) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "no subcommand (--help for the "
                                           "manual)");
    }
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(argv[optind], cmds[i].name) != 0) {
            continue;
        }
        /* report reads a zone's ring without a policy, but not a
         * stream: its name is in the policy. */
        int rc = !cmds[i].talks_to_store
                     ? RL2_CTL_OK
                     : rl2_ctl_policy_store(&o, cmds[i].run != rl2_ctl_report
                                                    || o.backend.redis_enabled);

        if (rc == RL2_CTL_OK) {
            rc = cmds[i].run(&o, argc - optind - 1, argv + optind + 1);
        }
        rl2_ctl_policy_free(&o);
        return rc;
    }
    return rl2_ctl_fail(RL2_CTL_USAGE,
                        "unknown subcommand \"%s\" (--help "
                        "for the manual)",
                        argv[optind]);
}
