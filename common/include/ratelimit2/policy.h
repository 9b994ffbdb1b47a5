/*
 * policy.h -- the policy model: rules, limits, tiers, clients, whitelists.
 *
 * A policy is built once (by rl2_config_load() or by a front end for inline
 * limits) and then only read, by any number of threads.  All of its memory
 * comes from one arena owned by the policy and freed by rl2_policy_free():
 * pointers into a policy stay valid until then.  Nothing here allocates
 * while deciding a request.
 */
#ifndef RL2_POLICY_H
#define RL2_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/algo.h"
#include "ratelimit2/hash.h"
#include "ratelimit2/status.h"

typedef enum {
    RL2_MODE_INHERIT = 0, /* per rule: take the policy's mode */
    RL2_MODE_ENFORCE,
    RL2_MODE_DRY_RUN, /* evaluate, log, add headers, never deny */
    RL2_MODE_OFF
} rl2_mode_t;

typedef enum {
    RL2_KEY_IP = 0, /* client address (IPv6 grouped by ipv6_prefix) */
    RL2_KEY_USER,   /* authenticated user; anonymous clients by address */
    RL2_KEY_APIKEY, /* API key from header or query; none: by address */
    RL2_KEY_HEADER, /* value of a request header; absent: by address */
    RL2_KEY_ROUTE,  /* one counter per rule, shared by all clients */
    RL2_KEY_GLOBAL  /* one counter per limit for everything */
} rl2_key_kind_t;

/* When a limit is decided: limits keyed only by address before
 * authentication, so they refuse before its cost; the others after it,
 * when the user is known.  A request is counted once across both. */
#define RL2_PHASE_EARLY 1u /* before authentication: address-keyed */
#define RL2_PHASE_LATE  2u /* after authentication: user, key, tiers */
#define RL2_PHASE_ALL   (RL2_PHASE_EARLY | RL2_PHASE_LATE)

/* Method bits for rl2_rule_t.methods. */
enum {
    RL2_METHOD_GET = 1u << 0,
    RL2_METHOD_HEAD = 1u << 1,
    RL2_METHOD_POST = 1u << 2,
    RL2_METHOD_PUT = 1u << 3,
    RL2_METHOD_DELETE = 1u << 4,
    RL2_METHOD_PATCH = 1u << 5,
    RL2_METHOD_OPTIONS = 1u << 6,
    RL2_METHOD_CONNECT = 1u << 7,
    RL2_METHOD_TRACE = 1u << 8,
    RL2_METHOD_OTHER = 1u << 9
};

/* The most limits one request is checked against (all rules together). */
#define RL2_MAX_LAYERS 16
/* Longest name (rule, limit, tier) in bytes, NUL excluded. */
#define RL2_NAME_MAX 63

/* The variable that flags a request internal (whitelist.internal) when
 * whitelist.internal_variable names none. */
#define RL2_INTERNAL_VARIABLE "RATELIMIT2_INTERNAL"

typedef struct {
    int      family;   /* AF_INET or AF_INET6 */
    uint8_t  addr[16]; /* network byte order; IPv4 in the first 4 bytes */
    unsigned prefix;   /* significant bits */
} rl2_cidr_t;

/* rl2_limit_t.lease: as the store says (its 'lease' option), or this
 * limit's own choice. */
#define RL2_LEASE_STORE 0
#define RL2_LEASE_ON    1
#define RL2_LEASE_OFF   2

typedef struct {
    const char       *name; /* policy name in headers and keys */
    const char       *file; /* where it was written (for messages) */
    int               line;
    rl2_algo_params_t algo;
    rl2_algo_params_t overflow; /* overflow allowance: a token bucket of
                                   overflow.limit per overflow.window_us
                                   (set by rl2_limit_finish), used only
                                   once the main limit is spent;
                                   limit == 0 means none */
    rl2_key_kind_t key;
    const char    *key_header; /* RL2_KEY_HEADER: header name */
    int64_t        cost;       /* units per request, >= 1 */
    int            unlimited;  /* counted, never denied, no headers */
    int            lease;      /* RL2_LEASE_*: lease mode for this limit */
    unsigned       phase;      /* RL2_PHASE_EARLY or RL2_PHASE_LATE */
    size_t         state_size; /* zone bytes: main state then overflow */
    int64_t        ttl_us;     /* how long a key outlives its last
                                  commit, when that depends on neither
                                  the time nor an overflow allowance
                                  (buckets, sliding log, concurrency);
                                  0: ask rl2_algo_ttl_us().  Set by
                                  rl2_limit_finish; a copy with other
                                  parameters must reset it */
    /* Rendered once by rl2_limit_finish for the response headers: the
     * quoted name ("name") and its RateLimit-Policy item
     * ("name";q=100;w=60; for a monthly quota without w, which varies). */
    const char *sf_name;
    const char *sf_policy;
    size_t      sf_name_len;
    size_t      sf_policy_len;
    /* Digest key of this limit's counters, derived by rl2_limit_finish
     * from name, algorithm and window: limits that share all three share
     * counters; a limit whose definition changes never reads state
     * written under another. */
    rl2_hash_key_t key_seed;
} rl2_limit_t;

typedef struct {
    rl2_limit_t *limits;
    size_t       n;
    int          defined;   /* written in the policy (possibly empty) */
    int          unlimited; /* the set was "unlimited" */
} rl2_limit_set_t;

/* Weighted variants of a rule (config_variants.c, decide/variant.c):
 * each client is assigned one variant by a keyed hash of its identity
 * and is checked against that variant's limits only. */
#define RL2_VARIANTS_MAX       16
#define RL2_VARIANT_NAME_MAX   15 /* bytes, NUL excluded */
#define RL2_VARIANT_WEIGHT_MAX 10000

/* Which identity assigns a client its variant. */
typedef enum {
    RL2_VARIANT_BY_AUTO = 0, /* API key, else user, else address */
    RL2_VARIANT_BY_IP,       /* the address (as keys group it) */
    RL2_VARIANT_BY_USER,     /* the user; anonymous: the address */
    RL2_VARIANT_BY_APIKEY    /* the API key; none: the address */
} rl2_variant_by_t;

typedef struct {
    const char     *name;
    uint32_t        weight; /* 1..RL2_VARIANT_WEIGHT_MAX */
    uint32_t        upto;   /* weights of this and every earlier variant */
    rl2_limit_set_t limits; /* counted under keys of this variant alone */
} rl2_variant_t;

typedef struct {
    const char  *name;
    const char  *file;
    int          line;
    unsigned     methods; /* RL2_METHOD_* bits; 0 = any method */
    const char **paths;   /* globs on the normalised path; 0 = any */
    size_t       n_paths;
    const char **hosts; /* lower-case globs; 0 = any host */
    size_t       n_hosts;
    rl2_mode_t   mode;
    int          is_continue; /* first-match: go on after this rule */
    int          exempt;      /* matching requests are never limited */
    int          exact;       /* a script's path does not also meet
                                 it with a PATH_INFO after it */
    rl2_limit_set_t  limits;  /* for every tier without its own set */
    rl2_limit_set_t *tiers;   /* [policy->n_tiers] or NULL */
    /* Variants instead of limits (never with tiers), or NULL. */
    rl2_variant_t   *variants;
    size_t           n_variants;
    uint32_t         variant_total; /* sum of the weights */
    rl2_variant_by_t variant_by;
    rl2_hash_key_t   variant_key; /* from the rule's name and the policy's
                                     experiment_seed: never from the host
                                     or the process */
    /* Limits evaluated in the shadow of the enforced ones (counted under
     * keys of their own, never refusing); n == 0: none. */
    rl2_limit_set_t challenger;
    int             experiment; /* variants or a challenger (the request
                                   path's one test for both) */
} rl2_rule_t;

typedef struct {
    size_t rule; /* index into policy->rules, or
                    policy->n_rules for the default rule */
    rl2_limit_set_t set;
} rl2_rule_override_t;

/* A per-client override: tier and/or limits for one user, API key or
 * address range. */
typedef struct {
    rl2_key_kind_t       by;   /* RL2_KEY_USER, RL2_KEY_APIKEY, RL2_KEY_IP */
    const char          *id;   /* user or API key (plain, from config) */
    rl2_cidr_t           net;  /* RL2_KEY_IP */
    int                  tier; /* index into tiers, or -1 */
    rl2_rule_override_t *rules;
    size_t               n_rules;
    const char          *file;
    int                  line;
} rl2_client_t;

#define RL2_UPGRADE_URL_MAX 256 /* bytes of a tier's upgrade_url */

typedef struct {
    const char *name;
    const char *upgrade_url; /* optional, for the 429 body */
} rl2_tier_t;

/* The policy's `abuse` group: a client refused more than `denials`
 * times in `window_us` is banned for ban_us, times `escalate` for each
 * ban it had in the last max_ban_us, at most max_ban_us.  The two
 * counters are limits of their own (fixed windows), so they live in the
 * same store as every other count: in Redis, the whole fleet agrees. */
typedef struct {
    int64_t      denials; /* 0: no automatic bans */
    int64_t      window_us;
    int64_t      ban_us;
    int64_t      max_ban_us;
    int64_t      escalate;
    rl2_limit_t *denied;   /* refusals per client per window */
    rl2_limit_t *offences; /* bans per client per max_ban */
} rl2_abuse_conf_t;

/* The adaptive factors (the policy's `factors` group), in the order
 * X-RateLimit-Factors and the violation log list them; their names are
 * rl2_factor_names[]. */
typedef enum {
    RL2_FACTOR_LOAD,
    RL2_FACTOR_SCHEDULE,
    RL2_FACTOR_GEO,
    RL2_FACTOR_REPUTATION,
    RL2_FACTOR_N
} rl2_factor_t;

extern const char *const rl2_factor_names[RL2_FACTOR_N];

/* Where one adaptive factor applies and how far it may take a limit
 * (config_factors.c; decide/runtime.c applies it).  A limit is scaled
 * when its rule is in `rules` (none listed: every rule) and the client's
 * tier is in `tiers` (none listed: any tier, or none); the limit's factor
 * so far, times this one, is then kept within min_ppm..max_ppm. */
typedef struct {
    int                on;
    uint32_t           min_ppm;
    uint32_t           max_ppm;
    const char *const *rules;
    size_t             n_rules;
    const char *const *tiers;
    size_t             n_tiers;
} rl2_factor_use_t;

/* The policy's `factors.load` group (config_factors.c): the host's load
 * (the first field of `source`, per online CPU when per_cpu) moves a
 * factor on every limit through steps, with a margin on the way back
 * and at most one change per hold_us (control/factor_load.c). */
#define RL2_LOAD_STEPS_MAX 8

typedef struct {
    int      above;           /* 1: load above threshold; 0: below */
    int64_t  threshold_milli; /* the load in thousandths */
    uint32_t factor_ppm;
} rl2_load_step_t;

/* A load the front end measures itself (factors.load source
 * "scoreboard": Apache's share of busy workers), in thousandths of the
 * whole; -1 when it cannot tell (the factor then stays). */
typedef int64_t (*rl2_load_fn)(void *ctx);

#define RL2_LOAD_SCOREBOARD "scoreboard"

typedef struct {
    const char     *source;     /* the load file; NULL: no load factor */
    int             scoreboard; /* source is RL2_LOAD_SCOREBOARD: measure */
    int             line;       /* of the group, for a front end's error */
    rl2_load_fn     measure;    /* set by the front end; NULL: none */
    void           *measure_ctx;
    int             per_cpu;
    size_t          n_steps;
    rl2_load_step_t steps[RL2_LOAD_STEPS_MAX];
    int64_t         margin_milli; /* a step is left this far past it */
    int64_t         hold_us;      /* at most one change per hold */
} rl2_load_conf_t;

/* The policy's `factors.schedule` group (config_factors.c): windows of
 * local time in a named zone, each with a factor; the first window that
 * holds the instant gives it, none gives x1 (control/factor_schedule.c).
 * A window's days are bits (Monday bit 0 .. Sunday bit 6); its times
 * are seconds of the day, from_s..to_s, to_s past 86400 when it crosses
 * midnight (that part belongs to the day the window started). */
#define RL2_SCHED_WINDOWS_MAX 16
#define RL2_TZ_TRANS_MAX      2000

typedef struct {
    unsigned days;   /* bit d: day d (0 Monday .. 6 Sunday) */
    int32_t  from_s; /* seconds of the local day */
    int32_t  to_s;   /* exclusive; up to 2 * 86400 */
    uint32_t factor_ppm;
} rl2_sched_window_t;

/* A zone read from its TZif file: from at_s (UTC, s) on the offset is
 * off_s, up to end_s; before the first transition it is first_off_s. */
typedef struct {
    size_t   n;
    int64_t *at_s;
    int32_t *off_s;
    int32_t  first_off_s;
} rl2_tz_t;

struct rl2_sched_cache; /* control/factor_schedule.c */

typedef struct {
    const char             *zone; /* NULL: no schedule factor */
    rl2_tz_t                tz;
    size_t                  n_windows;
    rl2_sched_window_t      windows[RL2_SCHED_WINDOWS_MAX];
    struct rl2_sched_cache *cache; /* per process; in the arena */
} rl2_schedule_conf_t;

/* The policy's `factors.reputation` group (config_reputation.c): a
 * client's own recent history (its requests, the refusals of limits that
 * counted it, its automatic bans, each a fixed window of window_us keyed
 * by its address as keys group it) scales its limits from low_ppm (every
 * request refused, or banned) to high_ppm (none refused), good_ppm for a
 * client with min_requests and no refusal (decide/reputation.c).  The
 * three counters are limits of their own, so they live in the same store
 * as every other count: in Redis, the whole fleet agrees. */
typedef struct {
    int64_t      window_us;
    int64_t      min_requests; /* fewer: no evidence, high_ppm */
    uint32_t     low_ppm;
    uint32_t     high_ppm;
    uint32_t     good_ppm;
    rl2_limit_t *requests; /* requests per client per window */
    rl2_limit_t *refusals; /* refusals by its own limits per window */
    rl2_limit_t *bans;     /* automatic bans it earned per window */
} rl2_reputation_conf_t;
/* The policy's `factors.geo` group (load/config_geo.c): the client's
 * country, from the first of a request variable of the server's own
 * configuration, a header believed from its senders only, and a lookup
 * of the client's address in a MaxMind DB file, gives a factor
 * (decide/geo.c).  A country is two ASCII letters; factor_ppm is indexed
 * by rl2_geo_index() of the upper-cased pair, 0 where none is listed:
 * then default_ppm, as for a client of no known country. */
#define RL2_GEO_COUNTRIES (26 * 26)

struct rl2_geo_db; /* decide/geo.c */

typedef struct {
    const char        *variable; /* request variable, or NULL */
    const char        *header;   /* header, or NULL */
    rl2_cidr_t        *nets;     /* header_from: its senders */
    size_t             n_nets;
    struct rl2_geo_db *db;          /* the opened database, or NULL */
    uint32_t           default_ppm; /* unknown or unlisted country */
    uint32_t          *factor_ppm;  /* [RL2_GEO_COUNTRIES], in the arena */
} rl2_geo_conf_t;

typedef struct rl2_rule_index rl2_rule_index_t;
typedef struct rl2_arena      rl2_arena_t;
struct rl2_tier_redis;   /* tier_source.h */
struct rl2_policy_store; /* backend.h */

/* The violation log's settings (violation_log.h), from the policy's
 * `violation_log` group; zero values mean the defaults there. */
typedef struct {
    int         disabled; /* enabled = false */
    uint32_t    rate;     /* entries per second per host, then sampled */
    uint32_t    capacity; /* ring entries; Redis stream MAXLEN ~ */
    const char *stream;   /* Redis stream key; in the policy's arena */
} rl2_vlog_conf_t;

typedef struct {
    rl2_arena_t *arena;
    const char  *source; /* main policy file, or "inline" */

    rl2_mode_t mode;            /* never RL2_MODE_INHERIT */
    int        match_all;       /* 0: first match (with continue); 1: all */
    int        method_override; /* a POST also matches the rules of the
                                   method in X-HTTP-Method-Override or
                                   ?_method= (Rails, Laravel) */

    rl2_tier_t *tiers;
    size_t      n_tiers;
    int         default_tier; /* index, or -1 when there are no tiers */

    rl2_rule_t *rules;
    size_t      n_rules;
    rl2_rule_t *default_rule; /* NULL when none */

    rl2_client_t *clients;
    size_t        n_clients;

    rl2_cidr_t  *wl_nets; /* whitelist */
    size_t       n_wl_nets;
    const char **wl_users;
    size_t       n_wl_users;
    const char **wl_keys;
    size_t       n_wl_keys;
    int          wl_internal;       /* requests flagged internal bypass */
    const char  *wl_internal_var;   /* the server's own variable that
                                       flags a request internal (set when
                                       wl_internal is) */
    const char *wl_internal_header; /* a header flagging it, believed
                                       only from wl_internal_nets; or
                                       NULL */
    rl2_cidr_t *wl_internal_nets;   /* whitelist.internal_header_from */
    size_t      n_wl_internal_nets;

    const char *apikey_header; /* NULL: not read */
    const char *apikey_query;  /* NULL: not read */
    const char *tier_variable; /* request variable naming the tier */
    const char *tier_header;   /* header naming the tier; believed only
                                  from tier_nets */
    rl2_cidr_t *tier_nets;     /* tier_from.header_from: the upstreams
                                  whose tier header is believed */
    size_t n_tier_nets;

    rl2_cidr_t *trusted; /* proxies whose X-Forwarded-For and
                            Forwarded are believed */
    size_t         n_trusted;
    unsigned       ipv6_prefix; /* group IPv6 clients by this prefix */
    rl2_hash_key_t hash_key;    /* for user ids and API keys */

    int reset_delta;      /* X-RateLimit-Reset as delta secs */
    int body_problem;     /* 429 bodies as application/problem+json
                             (headers.body), not the JSON of our own */
    int header_legacy;    /* send X-RateLimit-Limit, -Remaining
                             and -Reset (off by default) */
    int header_scope;     /* send X-RateLimit-Scope */
    int header_algorithm; /* send X-RateLimit-Algorithm */
    int header_variant;   /* send X-RateLimit-Variant */

    size_t            max_state_size;  /* largest limit state_size */
    int               has_concurrency; /* some limit is a concurrency limit */
    rl2_vlog_conf_t   vlog;            /* the violation log */
    rl2_rule_index_t *rule_index;      /* rules by first path segment, or
                                          NULL for a short policy */

    /* tier_from.redis (config_store.c), or NULL. */
    const struct rl2_tier_redis *tier_redis;
    /* redis, failover and alerts groups (config_store.c), or NULL. */
    const struct rl2_policy_store *store;
    /* The runtime override table (overrides.h) the front end attached
     * for this policy's decisions, or NULL: none.  Not owned. */
    struct rl2_overrides *overrides;
    int ban_status; /* a banned client's answer: 429 (default) or 403 */
    /* The `overrides` group: whether front ends attach the table, and
     * where its state file and its audit file are (NULL:
     * rl2_policy_overrides_state()'s and _audit()'s defaults for the
     * zone). */
    int                 overrides_disabled;
    const char         *overrides_state;
    const char         *overrides_audit;
    rl2_abuse_conf_t    abuse;    /* automatic bans; off when denials is 0 */
    rl2_load_conf_t     load;     /* factors.load; off when source is NULL */
    rl2_schedule_conf_t schedule; /* factors.schedule; off: zone NULL */
    rl2_geo_conf_t      geo;      /* factors.geo */
    /* Where each adaptive factor applies, and its bounds; factors_on
     * has bit i when factors[i].on, so that a policy without factors
     * pays one test per limit. */
    rl2_factor_use_t factors[RL2_FACTOR_N];
    unsigned         factors_on;
    int header_factors;  /* send X-RateLimit-Factors (headers.factors) */
    int header_optional; /* any of scope, algorithm, factors, variant */
    /* factors.reputation; off unless factors[RL2_FACTOR_REPUTATION].on */
    rl2_reputation_conf_t reputation;
} rl2_policy_t;

/* The front end's measure of the load for factors.load's source
 * "scoreboard" (mod_ratelimit2: its scoreboard).  A front end that has
 * none refuses such a policy (ratelimit2-fcgi). */
void rl2_policy_load_measure(rl2_policy_t *policy, rl2_load_fn fn, void *ctx);

/* Where runtime overrides are kept across reboots when the policy names
 * no state_file: RL2_STATE_DIR/<zone name without its '/'>.overrides. */
#ifndef RL2_STATE_DIR
#define RL2_STATE_DIR "/var/lib/ratelimit2"
#endif

/* The state file of the override table beside `zone` ("/ratelimit2")
 * for this policy, into buf; -1 when it does not fit. */
int rl2_policy_overrides_state(const rl2_policy_t *policy, const char *zone,
                               char *buf, size_t size);

/* The audit file of the runtime overrides (audit.h) beside `zone` for
 * this policy (NULL: the default), into buf: its audit_file, else
 * <zone name without its '/'>.audit in the folder of its state_file
 * when it names one, else in RL2_STATE_DIR; where ratelimit2ctl, the
 * HTTP admin interface and automatic bans all append; -1 when it does
 * not fit. */
int rl2_policy_overrides_audit(const rl2_policy_t *policy, const char *zone,
                               char *buf, size_t size);

/* An empty policy with defaults: enforce, first match, ipv6_prefix 64,
 * no tiers, no rules, hash key from an empty secret.  source is copied. */
rl2_status_t rl2_policy_create(const char *source, rl2_policy_t **out,
                               rl2_err_t *err);
void         rl2_policy_free(rl2_policy_t *policy);

/* Arena allocation: zeroed, 16-aligned, freed with the policy.  Returns
 * NULL only when memory is exhausted. */
void *rl2_policy_alloc(rl2_policy_t *policy, size_t size);
char *rl2_policy_strdup(rl2_policy_t *policy, const char *s);

/* --- parsers shared by the config loader and the front ends' inline
 * directives; each writes a message without file:line on failure --- */

/* "100/60s", "5/hour", "20/day", "2/5min", "1/month": count and window.
 * Units: s sec second(s), m min minute(s), h hour(s), d day(s), w week(s),
 * month(s) (period only: *period set, *window_us 0). */
rl2_status_t rl2_rate_parse(const char *text, int64_t *count,
                            int64_t *window_us, rl2_period_t *period,
                            rl2_err_t *err);
rl2_status_t rl2_cidr_parse(const char *text, rl2_cidr_t *out, rl2_err_t *err);
/* "ip", "user", "api_key", "route", "global", "header:NAME". */
rl2_status_t rl2_key_parse(rl2_policy_t *policy, const char *text,
                           rl2_key_kind_t *kind, const char **header,
                           rl2_err_t *err);
rl2_status_t rl2_mode_parse(const char *text, rl2_mode_t *out, rl2_err_t *err);

/* Finish a limit filled in by a parser: check the algorithm parameters
 * and overflow for range and overflow, then set state_size and phase.
 * in_tier: the limit belongs to a per-tier set (tier depends on identity,
 * so the limit is decided late). */
rl2_status_t rl2_limit_finish(rl2_policy_t *policy, rl2_limit_t *limit,
                              int in_tier, rl2_err_t *err);

#endif /* RL2_POLICY_H */
