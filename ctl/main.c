/*
 * main.c -- ratelimit2ctl, the operator's command-line tool: options,
 * the manual (--help), and the dispatch to one file per subcommand.
 *
 * It reads the same policy file as the servers and talks to the same
 * stores: the named local zone (attached, never created or resized) and
 * Redis, named by -R or by the policy's redis group; and to the zone's
 * runtime override table.  Options may come before or after the
 * subcommand.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/admin.h"
#include "ratelimit2/overrides.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/store_opts.h"

#include "accesslog.h"
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
    "    ratelimit2ctl [OPTIONS] ban|allow TARGET [--ttl D] [--reason T]\n"
    "    ratelimit2ctl [OPTIONS] unban|disallow|untier TARGET [--reason T]\n"
    "    ratelimit2ctl [OPTIONS] tier TARGET TIER [--ttl D] [--reason T]\n"
    "    ratelimit2ctl [OPTIONS] boost rule:NAME|tier:NAME|'*' FACTOR "
    "[--ttl D]\n"
    "    ratelimit2ctl [OPTIONS] unboost rule:NAME|tier:NAME|'*'\n"
    "    ratelimit2ctl [OPTIONS] mode RULE enforce|dry_run|off [--ttl D]\n"
    "    ratelimit2ctl [OPTIONS] mode RULE --clear\n"
    "    ratelimit2ctl [OPTIONS] emergency on --factor F | --allow-list-only "
    "[--ttl D]\n"
    "    ratelimit2ctl [OPTIONS] emergency off\n"
    "    ratelimit2ctl [OPTIONS] overrides [--json]\n"
    "    ratelimit2ctl [OPTIONS] audit [--json] [--since D] [--local]\n"
    "    ratelimit2ctl [OPTIONS] explain [--method M] [--host H] "
    "[--client ADDR]\n"
    "                 [--user U] [--api-key K] [--header 'Name: value']...\n"
    "                 [--tier T] [--country CC] [--json] PATH\n"
    "    ratelimit2ctl init --type api|auth|upload|database [-o FILE]\n"
    "    ratelimit2ctl [-c POLICY] coverage [--min PCT] [--min-requests PCT]\n"
    "                 [--format F] [--json | --html] [-o FILE] ACCESS_LOG...\n"
    "    ratelimit2ctl [-c POLICY] [-z ZONE] [-R REDIS] doctor\n"
    "                 [--apache-config FILE] [--json]\n"
    "    ratelimit2ctl [-c POLICY] simulate [--against POLICY_B] [--tiers "
    "FILE]\n"
    "                 [--format F] [--json] [-n N] [-o FILE] ACCESS_LOG...\n"
    "    ratelimit2ctl [-z ZONE | -R REDIS] usage [--since D] [--step "
    "minute|hour]\n"
    "                 [--rule R] [--json | --csv | --html] [-n N] [-o FILE]\n"
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
    "    explain PATH Why the request described (default GET from "
    "127.0.0.1,\n"
    "                 no host) would be let through or refused, without\n"
    "                 counting it: the rules that apply and what matched\n"
    "                 them, the tier and where it came from, each adaptive\n"
    "                 factor with its value and why (load: the servers' last\n"
    "                 reading, or the load file before any; schedule: the\n"
    "                 window of now), the runtime overrides that touch the\n"
    "                 client or its rules, then per limit its key, the limit\n"
    "                 as written and as scaled, what is used and left in the\n"
    "                 store, and the answer (deny: status and Retry-After).\n"
    "                 --json: the same as one JSON object.\n"
    "    init --type TYPE\n"
    "                 Write a commented starter policy for a kind of site:\n"
    "                 api (per API key, and per address whatever the key),\n"
    "                 auth (a login form: tries per address), upload\n"
    "                 (uploads take 10 units of a write budget, 2 at once),\n"
    "                 database (expensive endpoints per client, at once, and\n"
    "                 for everyone together).  To stdout, or to -o FILE,\n"
    "                 which must not exist.\n"
    "    coverage ACCESS_LOG...\n"
    "                 The routes of access logs (Apache common or combined,\n"
    "                 nginx combined, lighttpd's default; plain or gzip; -\n"
    "                 for standard input) and the rules of -c's policy that\n"
    "                 take them, as the servers select them: method, route\n"
    "                 (the normalised path, ids as *), class (rule, default,\n"
    "                 exempt, off, none), requests, rules; the unprotected\n"
    "                 first, then by requests.  Protected: a rule or the\n"
    "                 default rule applies a limit.  Totals: the protected\n"
    "                 share of routes and of requests; lines skipped, with\n"
    "                 the first line numbers.  --json, --html.\n"
    "    doctor       Look at a site before limiting it; one line per\n"
    "                 finding: ok, warning or error, what is wrong, and the\n"
    "                 fix.  Apache (apache2ctl -M, -t -D DUMP_INCLUDES;\n"
    "                 --apache-config FILE: apache2 -f FILE): the MPM,\n"
    "                 mod_ratelimit2 loaded, mod_remoteip against the\n"
    "                 policy's trusted_proxies, other limiters loaded\n"
    "                 (mod_evasive, mod_qos, httpd's mod_ratelimit).  The\n"
    "                 policy (-c): it loads, its rules, tiers and store.\n"
    "                 The zone (-z, attached, never created): evictions or\n"
    "                 a nearly full zone.  Redis (-R, or the policy's):\n"
    "                 reachable, version, functions or scripts allowed, the\n"
    "                 round trip (median of 5 PINGs; over 1 ms warns),\n"
    "                 maxmemory-policy (one that may evict counters warns).\n"
    "                 --json: an array of {area, level, message, fix}.\n"
    "    simulate ACCESS_LOG...\n"
    "                 Replay access logs (the formats of coverage), merged\n"
    "                 by time, through -c's policy as the servers decide:\n"
    "                 on a private zone made for the run, the clock being\n"
    "                 the log's (every request of one second at its start,\n"
    "                 in file order), as fast as the CPU goes.  Requests,\n"
    "                 admitted, refused; refusals by rule/limit and by tier;\n"
    "                 the clients refused (user:NAME when authenticated,\n"
    "                 else the address), -n of them (--json: all), with the\n"
    "                 first and last refusal.  --against POLICY_B replays\n"
    "                 the same requests through a second policy too, and\n"
    "                 lists the clients one refuses and the other admits.\n"
    "                 No runtime override, Redis, load or schedule\n"
    "                 factor is replayed.\n"
    "    usage        What each rule and tier did over the last --since\n"
    "                 (24h), read from the metrics object of the zone -z\n"
    "                 (ZONE.metrics, kept by the servers: per minute for\n"
    "                 24 h, per hour for 31 days): requests, admitted,\n"
    "                 refused and their share, distinct clients (the most\n"
    "                 of one interval, and which: an estimate per\n"
    "                 interval, which do not add up), the peak share of a\n"
    "                 limit one client used in one window and the room\n"
    "                 left (100% - peak); rule (unmatched) counts the\n"
    "                 requests no rule applies to.  Then the top clients\n"
    "                 by use (-n; sampled), with their peak share.\n"
    "                 With -R, the fleet's series the servers pushed to\n"
    "                 Redis: counts added up, clients the union (no top\n"
    "                 clients).\n"
    "                 --json: the same with every interval's figures;\n"
    "                 --csv: one row per rule, tier and interval; --html:\n"
    "                 a page with a chart per rule and tier.\n"
    "\n"
    "  Runtime overrides, on this host (the zone's .overrides table; not\n"
    "  Redis), in force at once for every server sharing the zone:\n"
    "    ban TARGET   Refuse the client before any rule (429, or the\n"
    "                 policy's ban_status).  TARGET is an address or a\n"
    "                 network (203.0.113.0/24, 2001:db8::/48), user:NAME or\n"
    "                 key:APIKEY (kept as key#HASH, its hash under the\n"
    "                 policy's hash_secret; key#HASH as listed names it too).\n"
    "    unban TARGET Remove the ban.\n"
    "    allow TARGET, disallow TARGET\n"
    "                 Let the client past every limit; take that back.\n"
    "    tier TARGET TIER, untier TARGET\n"
    "                 Give the client one of the policy's tiers; take it\n"
    "                 back.\n"
    "    boost rule:NAME|tier:NAME|'*' FACTOR, unboost ...\n"
    "                 Multiply the limits of a rule, of a tier, or of all\n"
    "                 ('*') by FACTOR (0.001 to 1000: 2, 0.5, 1.25); boosts\n"
    "                 that meet multiply.\n"
    "    mode RULE MODE, mode RULE --clear\n"
    "                 Run a rule in enforce, dry_run or off mode; --clear\n"
    "                 gives it back the policy's mode.\n"
    "    emergency on --factor F | --allow-list-only, emergency off\n"
    "                 Scale every limit by F, or refuse every client but\n"
    "                 the policy's whitelist and the allowed; switch it off.\n"
    "    overrides    The entries in force: kind, target, value, time left,\n"
    "                 end, author, reason.\n"
    "    audit        Every change, oldest first: with Redis (-R, or the\n"
    "                 policy's redis group) from the fleet's audit stream\n"
    "                 ({rl2:overrides}:audit), else (or with --local) from\n"
    "                 this host's audit file.  Each change is one entry\n"
    "                 there (JSON), one line in the file of the host that\n"
    "                 made it, and one syslog line (facility authpriv,\n"
    "                 event=override); automatic bans too (origin auto).\n"
    "  Every change may end by itself (--ttl) and says why (--reason); its\n"
    "  author is the user running ratelimit2ctl.  A change is kept in the\n"
    "  state file, and brought back from it when the table is made again\n"
    "  (a reboot); one that cannot be kept or recorded is not made.  The\n"
    "  policy (-c) is read when it exists; rule:, tier:, key: targets, TIER\n"
    "  and RULE need it.\n"
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
    "    -m, --method M       request method for status, reset and explain "
    "(GET)\n"
    "    -p, --path P         request path for status and reset (/)\n"
    "    -a, --address ADDR   client address for a user: or key: KEY; without\n"
    "                         it, limits keyed by address are left out\n"
    "    -t, --tier NAME      the tier a trusted upstream would name (its\n"
    "                         variable; explain: or its header)\n"
    "    -n, --top N          clients and latest entries listed by report,\n"
    "                         clients listed by simulate and usage (10)\n"
    "    --json, --html       report, coverage and usage format (default\n"
    "                         text); overrides, audit and explain take --json\n"
    "    --csv                usage: one CSV row per rule, tier and interval\n"
    "    --step minute|hour   usage: the interval (default minute up to\n"
    "                         --since 24h, hour beyond)\n"
    "    --rule R             usage: rule R alone ((unmatched): the requests\n"
    "                         no rule applies to)\n"
    "    -o, --output FILE    write the report (coverage: it; init: the\n"
    "                         policy) to FILE\n"
    "    --type TYPE          init: api, auth, upload or database\n"
    "    --apache-config FILE doctor: inspect the Apache of this main\n"
    "                         configuration file (apache2 -f FILE), not\n"
    "                         apache2ctl's\n"
    "    --ttl D              the change ends by itself after D: 30s, 10min,\n"
    "                         2h, 7d, 1w (default: no end)\n"
    "    --reason TEXT        why, for the audit trail (default empty; at\n"
    "                         most 159 bytes, no control characters)\n"
    "    --factor F           emergency on: scale every limit by F\n"
    "    --allow-list-only    emergency on: refuse all but the whitelist and\n"
    "                         the allowed\n"
    "    --clear              mode RULE: back to the policy's mode\n"
    "    --since D            audit: only the changes of the last D;\n"
    "                         usage: the period (24h; 90m, 7d, at most 31d)\n"
    "    --local              audit: read this host's audit file, even with\n"
    "                         Redis\n"
    "    --state FILE         the overrides' state file (default: the\n"
    "                         policy's overrides.state_file, else\n"
    "                         " RL2_CTL_STATE_DIR "/ZONE.overrides, ZONE\n"
    "                         the -z name without its '/')\n"
    "    --host H, --client ADDR, --user U, --api-key K\n"
    "                         explain: the request's Host, the client's\n"
    "                         address (127.0.0.1), its authenticated user,\n"
    "                         its API key (in the policy's api_key header or\n"
    "                         query parameter)\n"
    "    --header 'Name: value'  explain: a request header (repeatable, 32)\n"
    "    --country CC         explain: the client's country, shown with the\n"
    "                         request\n"
    "    --audit FILE         the audit file (default: the policy's\n"
    "                         overrides.audit_file, else ZONE.audit in\n"
    "                         the state_file's folder, else\n"
    "                         " RL2_CTL_STATE_DIR "/ZONE.audit)\n"
    "    --min PCT            coverage: exit 4 when less than PCT percent of\n"
    "                         the routes are protected\n"
    "    --min-requests PCT   coverage: exit 4 when less than PCT percent of\n"
    "                         the requests are protected\n"
    "    --format F           coverage, simulate: the logs' format, auto\n"
    "                         (each file's first valid line), common,\n"
    "                         combined, apache, nginx or lighttpd\n"
    "    --against POLICY_B   simulate: a second policy to compare\n"
    "    --tiers FILE         simulate: the tier the policies' tier_from\n"
    "                         variable would hold, a line 'KEY TIER' each,\n"
    "                         KEY user:NAME, key:APIKEY (the api_key query\n"
    "                         parameter as logged) or an address; # comments\n"
    "    -h, --help           this manual\n"
    "\n"
    "EXIT STATUS\n"
    "    0  success (check: the policy is valid)\n"
    "    1  check, docs: the policy is invalid; doctor: a finding is an\n"
    "       error (warnings alone exit 0)\n"
    "    2  bad command line, or a target, tier, rule, factor or duration\n"
    "       that does not read: nothing was changed (simulate: a --tiers\n"
    "       line that does not read, with its file:line)\n"
    "    3  the policy, the zone, the violation log, Redis, the override\n"
    "       table, its state file or the audit file could not be read or\n"
    "       written (simulate: an access log, --against or --tiers; usage:\n"
    "       the metrics object)\n"
    "    4  coverage: the protected share is below --min or --min-requests\n"
    "\n"
    "NOTES\n"
    "    Limits written inline in Apache (RateLimit2Limit) are not in the\n"
    "    policy file and are not shown.  The zone is attached, never created:\n"
    "    status and reset need a server to have created it (or -R).  The\n"
    "    override table is created if missing: run ratelimit2ctl as the user\n"
    "    the servers run as (root for Apache).  With Redis (-R, or the\n"
    "    policy's redis group) the table is the fleet's: a change goes to\n"
    "    Redis first, or is refused, and every server follows within about\n"
    "    a second.\n";

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

/* Long options without a letter. */
enum {
    RL2_CTL_OPT_TTL = 256,
    RL2_CTL_OPT_REASON,
    RL2_CTL_OPT_FACTOR,
    RL2_CTL_OPT_ALLOW_LIST,
    RL2_CTL_OPT_CLEAR,
    RL2_CTL_OPT_SINCE,
    RL2_CTL_OPT_STATE,
    RL2_CTL_OPT_AUDIT,
    RL2_CTL_OPT_LOCAL,
    RL2_CTL_OPT_HOST,
    RL2_CTL_OPT_CLIENT,
    RL2_CTL_OPT_USER,
    RL2_CTL_OPT_APIKEY,
    RL2_CTL_OPT_HEADER,
    RL2_CTL_OPT_COUNTRY,
    RL2_CTL_OPT_TYPE,
    RL2_CTL_OPT_MIN,
    RL2_CTL_OPT_MIN_REQUESTS,
    RL2_CTL_OPT_FORMAT,
    RL2_CTL_OPT_APACHE_CONFIG,
    RL2_CTL_OPT_AGAINST,
    RL2_CTL_OPT_TIERS,
    RL2_CTL_OPT_CSV,
    RL2_CTL_OPT_STEP,
    RL2_CTL_OPT_RULE
};

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
    { "ttl", required_argument, NULL, RL2_CTL_OPT_TTL },
    { "reason", required_argument, NULL, RL2_CTL_OPT_REASON },
    { "factor", required_argument, NULL, RL2_CTL_OPT_FACTOR },
    { "allow-list-only", no_argument, NULL, RL2_CTL_OPT_ALLOW_LIST },
    { "clear", no_argument, NULL, RL2_CTL_OPT_CLEAR },
    { "since", required_argument, NULL, RL2_CTL_OPT_SINCE },
    { "state", required_argument, NULL, RL2_CTL_OPT_STATE },
    { "audit", required_argument, NULL, RL2_CTL_OPT_AUDIT },
    { "local", no_argument, NULL, RL2_CTL_OPT_LOCAL },
    { "host", required_argument, NULL, RL2_CTL_OPT_HOST },
    { "client", required_argument, NULL, RL2_CTL_OPT_CLIENT },
    { "user", required_argument, NULL, RL2_CTL_OPT_USER },
    { "api-key", required_argument, NULL, RL2_CTL_OPT_APIKEY },
    { "header", required_argument, NULL, RL2_CTL_OPT_HEADER },
    { "country", required_argument, NULL, RL2_CTL_OPT_COUNTRY },
    { "type", required_argument, NULL, RL2_CTL_OPT_TYPE },
    { "min", required_argument, NULL, RL2_CTL_OPT_MIN },
    { "min-requests", required_argument, NULL, RL2_CTL_OPT_MIN_REQUESTS },
    { "format", required_argument, NULL, RL2_CTL_OPT_FORMAT },
    { "apache-config", required_argument, NULL, RL2_CTL_OPT_APACHE_CONFIG },
    { "against", required_argument, NULL, RL2_CTL_OPT_AGAINST },
    { "tiers", required_argument, NULL, RL2_CTL_OPT_TIERS },
    { "csv", no_argument, NULL, RL2_CTL_OPT_CSV },
    { "step", required_argument, NULL, RL2_CTL_OPT_STEP },
    { "rule", required_argument, NULL, RL2_CTL_OPT_RULE },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

/* A duration option: at least a second, so that it is not "already
 * over" by the time it is written (the core's reading of a TTL). */
static int
rl2_ctl_duration(const char *opt, const char *arg, int64_t *us)
{
    rl2_err_t err;

    if (rl2_admin_ttl_parse(arg, us, &err) != RL2_OK) {
        return rl2_ctl_fail(-1, "%s: %s", opt, err.msg);
    }
    return 0;
}

/* --reason: what fits the table's field and one line of the logs. */
static int
rl2_ctl_reason(rl2_ctl_opts_t *o, const char *arg)
{
    rl2_err_t err;

    if (rl2_admin_reason_check(arg, &err) != RL2_OK) {
        return rl2_ctl_fail(-1, "--reason: %s", err.msg);
    }
    o->reason = arg;
    return 0;
}

/* A share in percent, 0 to 100 ("80", "99.5"). */
static int
rl2_ctl_pct(const char *opt, const char *arg, double *pct)
{
    char *end;

    errno = 0;
    *pct = strtod(arg, &end);
    if (errno != 0 || end == arg || *end != '\0' || !(*pct >= 0)
        || *pct > 100) {
        return rl2_ctl_fail(-1, "%s \"%s\": expected a percentage, 0 to 100",
                            opt, arg);
    }
    return 0;
}

/* The options of usage. */
static int
rl2_ctl_opt_usage(rl2_ctl_opts_t *o, int c, const char *arg)
{
    switch (c) {
    case RL2_CTL_OPT_CSV:
        o->format = RL2_CTL_CSV;
        return 0;
    case RL2_CTL_OPT_STEP:
        if (strcmp(arg, "minute") == 0) {
            o->usage_step_s = 60;
        }
        else if (strcmp(arg, "hour") == 0) {
            o->usage_step_s = 3600;
        }
        else {
            return rl2_ctl_fail(-1, "--step \"%s\": expected minute or hour",
                                arg);
        }
        return 0;
    case RL2_CTL_OPT_RULE:
        o->usage_rule = arg;
        return 0;
    default:
        return -1;
    }
}

/* The options of coverage (--format: and of simulate) and simulate. */
static int
rl2_ctl_opt_coverage(rl2_ctl_opts_t *o, int c, const char *arg)
{
    switch (c) {
    case RL2_CTL_OPT_AGAINST:
        o->against = arg;
        return 0;
    case RL2_CTL_OPT_TIERS:
        o->tiers = arg;
        return 0;
    case RL2_CTL_OPT_MIN:
        return rl2_ctl_pct("--min", arg, &o->cov_min_routes);
    case RL2_CTL_OPT_MIN_REQUESTS:
        return rl2_ctl_pct("--min-requests", arg, &o->cov_min_requests);
    case RL2_CTL_OPT_FORMAT:
        if ((o->log_format = rl2_alog_format_parse(arg)) < 0) {
            return rl2_ctl_fail(-1,
                                "--format \"%s\": expected auto, common, "
                                "combined, apache, nginx or lighttpd",
                                arg);
        }
        return 0;
    default:
        return rl2_ctl_opt_usage(o, c, arg);
    }
}

/* The request explain describes (explain.c checks what needs the
 * policy). */
static int
rl2_ctl_opt_explain(rl2_ctl_opts_t *o, int c, const char *arg)
{
    switch (c) {
    case RL2_CTL_OPT_HOST:
        o->x_host = arg;
        return 0;
    case RL2_CTL_OPT_CLIENT:
        o->x_client = arg;
        return 0;
    case RL2_CTL_OPT_USER:
        o->x_user = arg;
        return 0;
    case RL2_CTL_OPT_APIKEY:
        o->x_apikey = arg;
        return 0;
    case RL2_CTL_OPT_HEADER:
        if (o->x_n_headers == RL2_CTL_XHEADERS_MAX) {
            return rl2_ctl_fail(-1, "--header: at most %d",
                                RL2_CTL_XHEADERS_MAX);
        }
        o->x_headers[o->x_n_headers++] = arg;
        return 0;
    case RL2_CTL_OPT_COUNTRY:
        /* An ISO 3166-1 alpha-2 code, as a geo database names it. */
        if (!((arg[0] >= 'A' && arg[0] <= 'Z')
              || (arg[0] >= 'a' && arg[0] <= 'z'))
            || !((arg[1] >= 'A' && arg[1] <= 'Z')
                 || (arg[1] >= 'a' && arg[1] <= 'z'))
            || arg[2] != '\0') {
            return rl2_ctl_fail(-1,
                                "--country \"%s\": expected a two-letter "
                                "country code (FR)",
                                arg);
        }
        o->x_country = arg;
        return 0;
    default:
        return rl2_ctl_opt_coverage(o, c, arg);
    }
}

/* Did the command line name an option of coverage alone? */
static int
rl2_ctl_coverage_given(const rl2_ctl_opts_t *o)
{
    return o->cov_min_routes >= 0 || o->cov_min_requests >= 0;
}

/* Did the command line name an option of simulate alone? */
static int
rl2_ctl_simulate_given(const rl2_ctl_opts_t *o)
{
    return o->against != NULL || o->tiers != NULL;
}

/* Did the command line name an option of usage alone? */
static int
rl2_ctl_usage_given(const rl2_ctl_opts_t *o)
{
    return o->format == RL2_CTL_CSV || o->usage_step_s != 0
           || o->usage_rule != NULL;
}

/* Did the command line describe a request for explain? */
static int
rl2_ctl_explain_given(const rl2_ctl_opts_t *o)
{
    return o->x_host != NULL || o->x_client != NULL || o->x_user != NULL
           || o->x_apikey != NULL || o->x_n_headers > 0 || o->x_country != NULL;
}

/* The options of the runtime overrides (override.c, audit.c). */
static int
rl2_ctl_opt_override(rl2_ctl_opts_t *o, int c, const char *arg)
{
    switch (c) {
    case RL2_CTL_OPT_TTL:
        return rl2_ctl_duration("--ttl", arg, &o->ttl_us);
    case RL2_CTL_OPT_REASON:
        return rl2_ctl_reason(o, arg);
    case RL2_CTL_OPT_FACTOR:
        o->factor = arg;
        return 0;
    case RL2_CTL_OPT_ALLOW_LIST:
        o->allow_list_only = 1;
        return 0;
    case RL2_CTL_OPT_CLEAR:
        o->clear = 1;
        return 0;
    case RL2_CTL_OPT_SINCE:
        return rl2_ctl_duration("--since", arg, &o->since_us);
    case RL2_CTL_OPT_STATE:
        o->state_file = arg;
        return 0;
    case RL2_CTL_OPT_AUDIT:
        o->audit_file = arg;
        return 0;
    case RL2_CTL_OPT_LOCAL:
        o->audit_local = 1;
        return 0;
    default:
        return rl2_ctl_opt_explain(o, c, arg);
    }
}

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
    case RL2_CTL_OPT_TYPE:
        o->init_type = arg;
        return 0;
    case RL2_CTL_OPT_APACHE_CONFIG:
        o->apache_config = arg;
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
        return rl2_ctl_opt_override(o, c, arg);
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
    o->cov_min_routes = -1;
    o->cov_min_requests = -1;
    o->log_format = -1;
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
    /* policy: 0 not read (check and docs take a file of their own;
     * overrides and audit --local read no policy, so they work whatever
     * state it is in (audit --local reads it for its audit_file alone,
     * and goes on without it); 1 read, with Redis from it unless -R
     * (report goes
     * without it when the file does not exist, and has no -R); 2 read
     * when the file exists (the override verbs: an address needs no
     * policy, a rule, tier or API key does; audit: the stream is where
     * the verbs write it). */
    static const struct {
        const char *name;
        int (*run)(const rl2_ctl_opts_t *, int, char **);
        int policy;
    } cmds[] = { { "status", rl2_ctl_status, 1 },
                 { "reset", rl2_ctl_reset, 1 },
                 { "check", rl2_ctl_check, 0 },
                 { "docs", rl2_ctl_docs, 0 },
                 { "report", rl2_ctl_report, 1 },
                 { "ban", rl2_ctl_ban, 2 },
                 { "unban", rl2_ctl_unban, 2 },
                 { "allow", rl2_ctl_allow, 2 },
                 { "disallow", rl2_ctl_disallow, 2 },
                 { "tier", rl2_ctl_tier, 2 },
                 { "untier", rl2_ctl_untier, 2 },
                 { "boost", rl2_ctl_boost, 2 },
                 { "unboost", rl2_ctl_unboost, 2 },
                 { "mode", rl2_ctl_rule_mode, 2 },
                 { "emergency", rl2_ctl_emergency, 2 },
                 { "overrides", rl2_ctl_overrides, 0 },
                 { "audit", rl2_ctl_audit, 2 },
                 { "explain", rl2_ctl_explain, 1 },
                 { "coverage", rl2_ctl_coverage, 1 },
                 { "simulate", rl2_ctl_simulate, 1 },
                 { "usage", rl2_ctl_usage, 0 },
                 { "init", rl2_ctl_init, 0 },
                 { "doctor", rl2_ctl_doctor, 0 } };
    rl2_ctl_opts_t o;

    if (rl2_ctl_parse(argc, argv, &o) != 0) {
        fputs("usage: ratelimit2ctl [OPTIONS] status|reset|check|docs|"
              "report|ban|unban|allow|disallow|tier|untier|boost|unboost|"
              "mode|emergency|overrides|audit|explain|coverage|simulate|usage|"
              "init|doctor ...  (--help for the manual)\n",
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
        if (cmds[i].run != rl2_ctl_explain && rl2_ctl_explain_given(&o)) {
            return rl2_ctl_fail(RL2_CTL_USAGE,
                                "%s takes no --host, --client, --user, "
                                "--api-key, --header or --country (explain "
                                "does)",
                                cmds[i].name);
        }
        if (cmds[i].run != rl2_ctl_init && o.init_type != NULL) {
            return rl2_ctl_fail(RL2_CTL_USAGE, "%s takes no --type (init does)",
                                cmds[i].name);
        }
        if (cmds[i].run != rl2_ctl_doctor && o.apache_config != NULL) {
            return rl2_ctl_fail(RL2_CTL_USAGE,
                                "%s takes no --apache-config (doctor does)",
                                cmds[i].name);
        }
        if (cmds[i].run != rl2_ctl_coverage && rl2_ctl_coverage_given(&o)) {
            return rl2_ctl_fail(RL2_CTL_USAGE,
                                "%s takes no --min or --min-requests "
                                "(coverage does)",
                                cmds[i].name);
        }
        if (cmds[i].run != rl2_ctl_coverage && cmds[i].run != rl2_ctl_simulate
            && o.log_format >= 0) {
            return rl2_ctl_fail(RL2_CTL_USAGE,
                                "%s takes no --format (coverage and "
                                "simulate do)",
                                cmds[i].name);
        }
        if (cmds[i].run != rl2_ctl_simulate && rl2_ctl_simulate_given(&o)) {
            return rl2_ctl_fail(RL2_CTL_USAGE,
                                "%s takes no --against or --tiers (simulate "
                                "does)",
                                cmds[i].name);
        }
        if (cmds[i].run != rl2_ctl_usage && rl2_ctl_usage_given(&o)) {
            return rl2_ctl_fail(RL2_CTL_USAGE,
                                "%s takes no --csv, --step or --rule (usage "
                                "does)",
                                cmds[i].name);
        }
        /* report reads a zone's ring without a policy, but not a
         * stream: its name is in the policy. */
        int rc =
            cmds[i].policy == 0
                    || (cmds[i].run == rl2_ctl_audit && o.audit_local)
                ? RL2_CTL_OK
                : rl2_ctl_policy_store(&o, cmds[i].policy == 1
                                               && (cmds[i].run != rl2_ctl_report
                                                   || o.backend.redis_enabled));

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
