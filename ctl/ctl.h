/*
 * ctl.h -- what the files of ratelimit2ctl share (private to ctl/): the
 * options, the exit statuses, and each subcommand's entry point.
 *
 *   main.c        options, --help, dispatch
 *   client.c      a client KEY -> the request to peek, and the stores
 *   status.c      status KEY
 *   reset.c       reset KEY
 *   rules.c       the effective rules, as text (check) and Markdown (docs)
 *   check.c       check CONFIG, docs CONFIG
 *   report.c      report: gathering and aggregating the violation log
 *   report_out.c  report as text and JSON
 *   report_html.c report as a self-contained HTML page with SVG charts
 *   override.c    ban, unban, allow, disallow, tier, untier, boost,
 *                 unboost, mode, emergency: one change to the runtime
 *                 override table, recorded in the audit trail
 *   override_list.c overrides: the entries in force, with time left
 *   audit.c       audit: the audit trail read back
 *   explain.c     explain PATH: why a request is let through or refused
 *   coverage.c    coverage LOG...: the routes of access logs under a
 *                 limit and those without one
 *   accesslog.c   access logs (Apache, nginx, lighttpd) read back
 *   doctor.c      doctor: the findings, the policy and the zone
 *   doctor_apache.c  doctor: the running Apache (apache2ctl -M, -V)
 *   doctor_redis.c   doctor: the Redis server the store uses
 *   simulate.c    simulate LOG...: access logs replayed through the core
 *                 on private zones, one policy or two (--against)
 *   simulate_report.c  simulate's answer as text and JSON
 *   usage.c       usage: the usage series of the zone's metrics object,
 *                 read over a period (usage.h)
 *   usage_out.c   usage as text, JSON and CSV
 *   usage_html.c  usage as a self-contained HTML page with SVG charts
 *   escape.c      text escaped for JSON, HTML, CSV and a terminal
 */
#ifndef RL2_CTL_H
#define RL2_CTL_H

#include <stdio.h>

#include "ratelimit2/backend.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/violation_log.h"

/* Exit statuses (documented in --help). */
#define RL2_CTL_OK      0
#define RL2_CTL_INVALID 1 /* check: the policy is invalid */
#define RL2_CTL_USAGE   2 /* bad command line */
#define RL2_CTL_FAIL    3 /* policy unreadable, zone or Redis failed */
#define RL2_CTL_BELOW   4 /* coverage: below --min or --min-requests */

#define RL2_CTL_DEFAULT_POLICY "/etc/ratelimit2/ratelimit2.conf"
/* Where the override table's state file and audit trail are by default:
 * "<dir>/<zone without its '/'>.overrides" and ".audit". */
#define RL2_CTL_STATE_DIR "/var/lib/ratelimit2"

typedef enum {
    RL2_CTL_TEXT = 0,
    RL2_CTL_JSON,
    RL2_CTL_HTML,
    RL2_CTL_CSV /* usage alone */
} rl2_ctl_format_t;

/* The most --header options of explain (an enum: not an exit status). */
enum { RL2_CTL_XHEADERS_MAX = 32 };

typedef struct {
    const char        *policy;  /* -c */
    const char        *zone;    /* -z */
    rl2_backend_conf_t backend; /* -R, -O: redis_enabled, redis */
    const char        *method;  /* -m */
    const char        *path;    /* -p */
    const char        *address; /* -a, or NULL */
    const char        *tier;    /* -t, or NULL */
    rl2_ctl_format_t   format;  /* --json, --html */
    const char        *output;  /* -o FILE, or NULL for stdout */
    long               top;     /* -n */
    const char        *prog;
    rl2_policy_t      *policy_loaded; /* -c, loaded once by main for
                                         status, reset and report (NULL:
                                         report without the file) and
                                         for the override verbs when
                                         the file exists */
    /* The runtime overrides (override.c, audit.c); each option is
     * refused by the subcommands that do not take it. */
    int64_t     ttl_us;          /* --ttl; 0: not given */
    const char *reason;          /* --reason, or NULL */
    const char *state_file;      /* --state, or NULL: the default */
    const char *audit_file;      /* --audit, or NULL: the default */
    const char *factor;          /* --factor, or NULL */
    int         allow_list_only; /* --allow-list-only */
    int64_t     since_us;        /* --since; 0: not given */
    int         clear;           /* --clear */
    int         audit_local;     /* --local: audit reads the file */
    /* The request explain describes (explain.c); each option is refused
     * by the subcommands that do not take it. */
    const char *x_host;    /* --host, or NULL */
    const char *x_client;  /* --client, or NULL: 127.0.0.1 */
    const char *x_user;    /* --user, or NULL */
    const char *x_apikey;  /* --api-key, or NULL */
    const char *x_country; /* --country CC, or NULL: shown under
                              request, for the geo factor */
    const char *x_headers[RL2_CTL_XHEADERS_MAX]; /* --header lines */
    size_t      x_n_headers;
    const char *init_type; /* init --type, or NULL */
    /* coverage (coverage.c); refused by the other subcommands. */
    double cov_min_routes;     /* --min PCT; < 0: not given */
    double cov_min_requests;   /* --min-requests PCT; < 0: not given */
    int    log_format;         /* --format: rl2_alog_format_t; -1: not
                                  given (auto) */
    const char *apache_config; /* doctor --apache-config, or NULL */
    /* simulate (simulate.c); refused by the other subcommands. */
    const char *against; /* --against POLICY_B, or NULL */
    const char *tiers;   /* --tiers FILE, or NULL */
    /* usage (usage.c); refused by the other subcommands. */
    int         usage_step_s; /* --step: 60 or 3600; 0: not given */
    const char *usage_rule;   /* --rule R, or NULL: every rule */
} rl2_ctl_opts_t;

/* Print "ratelimit2ctl: <message>" to stderr; returns status. */
int rl2_ctl_fail(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- client.c ---- */

/* Load -c's policy into o->policy_loaded and take the Redis server (and
 * failover settings) of its `redis` and `failover` groups where -R and -O
 * did not name them, as the servers do.  Without required, a policy file
 * that does not exist is no error (report can read a zone's ring alone).
 * Freed by rl2_ctl_policy_free(). */
int  rl2_ctl_policy_store(rl2_ctl_opts_t *o, int required);
void rl2_ctl_policy_free(rl2_ctl_opts_t *o);

/* A client and the request that is peeked for it. */
typedef struct {
    rl2_request_t req;
    int           by_identity; /* KEY was user:NAME or key:APIKEY */
    const char   *apikey;      /* key:APIKEY */
    const char   *apikey_header;
    char          query[1024];
    char          label[160]; /* KEY as the operator wrote it */
} rl2_ctl_client_t;

/* KEY: ADDRESS | user:NAME | key:APIKEY, with -m, -p, -a, -t. */
int rl2_ctl_client(const rl2_ctl_opts_t *o, const rl2_policy_t *policy,
                   const char *key, rl2_ctl_client_t *c);

/* Is this layer the client's own (not an address the tool made up for a
 * user or key without -a)? */
int rl2_ctl_layer_mine(const rl2_ctl_client_t *c, const rl2_layer_t *l);

/* The stores the subcommands talk to; close with rl2_ctl_stores_close. */
typedef struct {
    rl2_zone_t    *zone; /* NULL when the zone does not exist */
    rl2_store_t   *local;
    rl2_store_t   *redis;   /* -R */
    rl2_circuit_t *circuit; /* reset with -R */
    rl2_store_t   *both;    /* reset with -R: Redis and local */
} rl2_ctl_stores_t;

int  rl2_ctl_stores_open(const rl2_ctl_opts_t *o, int for_reset,
                         rl2_ctl_stores_t *s);
void rl2_ctl_stores_close(rl2_ctl_stores_t *s);

/* ---- escape.c ---- */

/* Write s escaped for JSON (json: a byte of no well-formed UTF-8
 * sequence as the text \xHH) or HTML (!json). */
void rl2_ctl_escape(FILE *f, const char *s, int json);
/* Write before, then "name":"value" with value escaped for JSON. */
void rl2_ctl_json_str(FILE *f, const char *before, const char *name,
                      const char *value);
/* Write s as one CSV field (RFC 4180: quoted when it holds a comma, a
 * quote or a line break, its quotes doubled). */
void rl2_ctl_csv_field(FILE *f, const char *s);
/* Write s for a terminal: control bytes (C0, DEL, C1 in UTF-8), bytes
 * of no well-formed UTF-8 sequence and '\\' as \xNN. */
void rl2_ctl_text_safe(FILE *f, const char *s);
/* The bytes rl2_ctl_text_safe() writes for s. */
size_t rl2_ctl_text_safe_len(const char *s);

/* ---- the subcommands: each returns an exit status ---- */

int rl2_ctl_status(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_reset(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_check(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_docs(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_report(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_ban(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_unban(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_allow(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_disallow(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_tier(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_untier(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_boost(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_unboost(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_rule_mode(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_emergency(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_overrides(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_audit(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_explain(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_coverage(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_simulate(const rl2_ctl_opts_t *o, int argc, char **argv);
int rl2_ctl_usage(const rl2_ctl_opts_t *o, int argc, char **argv);

/* ---- init.c ---- */

/* init --type TYPE: the starter policy TYPE (conf/init/TYPE.conf, built
 * in) to stdout or -o FILE (never replaced). */
int rl2_ctl_init(const rl2_ctl_opts_t *o, int argc, char **argv);

/* ---- doctor.c, doctor_apache.c, doctor_redis.c ---- */

/* doctor: one finding per line (ok, warning, error), each with its
 * fix; RL2_CTL_INVALID when a finding is an error. */
int rl2_ctl_doctor(const rl2_ctl_opts_t *o, int argc, char **argv);

typedef enum { RL2_DOC_OK = 0, RL2_DOC_WARNING, RL2_DOC_ERROR } rl2_doc_level_t;

/* The findings, in the order they were made; a fixed array, so a
 * finding beyond it is dropped and counted (never an error missed:
 * the exit status is kept apart). */
enum { RL2_DOC_FINDINGS_MAX = 48, RL2_DOC_TEXT_MAX = 640 };

typedef struct {
    const char     *area; /* "apache", "policy", "zone", "redis" */
    rl2_doc_level_t level;
    char            message[RL2_DOC_TEXT_MAX];
    char            fix[RL2_DOC_TEXT_MAX]; /* "" when nothing to fix */
} rl2_doc_finding_t;

typedef struct {
    rl2_doc_finding_t f[RL2_DOC_FINDINGS_MAX];
    size_t            n;
    size_t            dropped;
    int               errors;
} rl2_doc_t;

/* Add a finding: fix is copied as is ("" or NULL: none). */
void rl2_doc_add(rl2_doc_t *d, const char *area, rl2_doc_level_t level,
                 const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The policy's trusted_proxies as "10.0.0.1 192.0.2.0/24" (a /32 or
 * /128 without its prefix), "" when none. */
void rl2_doc_proxies(const rl2_policy_t *policy, char *buf, size_t size);

/* doctor_apache.c: the Apache of o->apache_config, else apache2ctl's.
 * policy may be NULL (it did not load). */
void rl2_doc_apache(const rl2_ctl_opts_t *o, const rl2_policy_t *policy,
                    rl2_doc_t *d);

/* doctor_redis.c: the Redis server of conf (-R, or the policy's). */
void rl2_doc_redis(const rl2_backend_conf_t *conf, rl2_doc_t *d);

/* ---- override.c: what override_list.c and audit.c share ---- */

/* The options each subcommand of the runtime overrides takes (an enum:
 * t_docs_ref reads every #define RL2_CTL_... number here as an exit
 * status). */
enum {
    RL2_CTL_TAKES_TTL = 1u << 0,
    RL2_CTL_TAKES_REASON = 1u << 1,
    RL2_CTL_TAKES_FACTOR = 1u << 2, /* --factor, --allow-list-only */
    RL2_CTL_TAKES_SINCE = 1u << 3,
    RL2_CTL_TAKES_CLEAR = 1u << 4,
    RL2_CTL_TAKES_JSON = 1u << 5,
    RL2_CTL_TAKES_LOCAL = 1u << 6
};

/* RL2_CTL_OK, or RL2_CTL_USAGE naming an option `cmd` does not take. */
int rl2_ctl_takes(const rl2_ctl_opts_t *o, const char *cmd, unsigned takes);

/* The state file and the audit file: --state and --audit, or (the
 * audit file) the loaded policy's overrides.audit_file, or the defaults
 * under RL2_CTL_STATE_DIR. */
void rl2_ctl_ovr_paths(const rl2_ctl_opts_t *o, char *state, char *audit,
                       size_t size);

/* "3d04h", "1h02m", "59m58s", "45s": time left, rounded up. */
void rl2_ctl_left(int64_t left_us, char *buf, size_t size);

/* ---- rules.c ---- */

/* "5/1h", "100/10m", "20/day": a limit's rate for people. */
void rl2_ctl_rate(const rl2_limit_t *l, char *buf, size_t size);
/* "ip", "user", "api_key", "header:X", "route", "global" */
const char *rl2_ctl_key_name(const rl2_limit_t *l);
void        rl2_ctl_rules_text(FILE *f, const rl2_policy_t *policy);
void        rl2_ctl_rules_markdown(FILE *f, const rl2_policy_t *policy);

/* ---- report ---- */

typedef struct {
    char name[RL2_NAME_MAX * 2 + RL2_VLOG_CLIENT_MAX]; /* rule/limit,
                                                  tier or client */
    uint64_t denials; /* entries, plus those sampled out before them */
    int64_t  limit;   /* rules: the limit's count */
    int64_t  window_us;
    uint64_t peak; /* rules: most denials in one window */
    int64_t  first_us, last_us;
} rl2_ctl_row_t;

typedef struct {
    rl2_vlog_entry_t *entries; /* oldest first */
    size_t            n;
    rl2_vlog_stats_t  ring; /* the ring's counters */
    int               have_ring;
    int               have_stream;
    uint64_t          skipped; /* sum of the entries' skipped */
    int64_t           first_us, last_us;
    rl2_ctl_row_t    *by_limit; /* rule/limit: with breathing room */
    size_t            n_limit;
    rl2_ctl_row_t    *by_tier;
    size_t            n_tier;
    rl2_ctl_row_t    *by_client; /* most denials first */
    size_t            n_client;
    rl2_vlog_entry_t *shadow; /* a challenger's would-refuse entries,
                                 kept out of entries */
    size_t         n_shadow;
    rl2_ctl_row_t *by_variant; /* rule/variant, then
                                  rule/(challenger) */
    size_t   n_variant;
    uint64_t per_minute[60]; /* the last hour, oldest first */
    int64_t  hour_end_us;
} rl2_ctl_report_t;

void rl2_ctl_report_text(FILE *f, const rl2_ctl_report_t *r, long top);
void rl2_ctl_report_json(FILE *f, const rl2_ctl_report_t *r, long top);
void rl2_ctl_report_html(FILE *f, const rl2_ctl_report_t *r, long top);
/* Index of the first of the `top` latest entries (each report lists
 * them, newest last). */
size_t rl2_ctl_latest_from(const rl2_ctl_report_t *r, long top);
/* Breathing room of a by_limit row: (limit + peak) / limit, the demand
 * one client put on the limit in its busiest window; 0 when it cannot be
 * computed (calendar quota, concurrency). */
double rl2_ctl_room(const rl2_ctl_row_t *row);
/* Denials per minute over the period the log covers (at least a
 * minute). */
double rl2_ctl_per_minute(const rl2_ctl_report_t *r, uint64_t denials);
/* Every denial: entries and those sampled out before them. */
uint64_t rl2_ctl_total(const rl2_ctl_report_t *r);

/* override_list.c: every active entry of the table, sorted as the
 * admin interface lists them, into *out (free() it); their number, or -1
 * when out of memory. */
long rl2_ctl_ovr_all(rl2_overrides_t *t, const rl2_clock_t *now,
                     rl2_override_t **out);

/* ---- simulate: what simulate.c and simulate_report.c share ---- */

/* What one policy did to one client of the replay. */
typedef struct {
    uint64_t refused;
    int64_t  first_us, last_us; /* of its refusals (the log's times) */
    uint64_t only; /* --against: refused by this policy, admitted by the
                      other */
} rl2_sim_count_t;

/* A client: the authenticated user ("user:NAME") or else the address as
 * logged, the identities the servers' limits key on. */
typedef struct {
    char           *name; /* owned */
    uint64_t        hash;
    uint64_t        requests;
    rl2_sim_count_t run[2]; /* -c, --against */
} rl2_sim_client_t;

/* Refusals by one limit of one rule (pointers into the run's policy;
 * limit NULL: refused before any limit, by a ban or the emergency). */
typedef struct {
    const rl2_rule_t  *rule;
    const rl2_limit_t *limit;
    uint64_t           refused;
} rl2_sim_rule_t;

/* One policy replayed on a zone of its own. */
typedef struct {
    const char   *path;
    rl2_policy_t *policy; /* -c's is o->policy_loaded; --against's is
                             owned */
    rl2_zone_t    *zone;
    rl2_store_t   *store;
    rl2_verdict_t *v; /* kilobytes: allocated once */
    char           zone_name[64];
    uint64_t       admitted, refused;
    uint64_t       malformed; /* the core refused the request itself as
                                 ambiguous: the servers answer 400 */
    rl2_sim_rule_t *rules;
    size_t          n_rules, cap_rules;
    uint64_t       *by_tier;  /* [policy->n_tiers] */
    uint64_t        tierless; /* refusals of clients without a tier */
} rl2_sim_run_t;

typedef struct {
    rl2_sim_run_t     run[2];
    size_t            n_runs;
    rl2_sim_client_t *clients;
    size_t            n_clients, cap_clients;
    uint64_t          over_clients; /* requests of clients past the cap:
                                       decided, not listed */
    uint64_t    lines, entries, skipped, logged_429, unaddressed;
    int64_t     first_us, last_us; /* of the requests replayed */
    const char *first_skip_file;
    uint64_t    first_skip_line;
    const char *first_skip_why;
} rl2_sim_t;

void rl2_ctl_sim_text(FILE *f, const rl2_sim_t *s, long top);
void rl2_ctl_sim_json(FILE *f, const rl2_sim_t *s);

/* client.c: is text an IPv4 or IPv6 address (inet_pton's reading)? */
int rl2_ctl_is_address(const char *text);

#endif /* RL2_CTL_H */
