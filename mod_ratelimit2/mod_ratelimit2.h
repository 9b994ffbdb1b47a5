/*
 * mod_ratelimit2.h -- what the two files of the Apache module share:
 * configuration records, the per-request state and the zone settings.
 * Private to mod_ratelimit2/.
 */
#ifndef MOD_RATELIMIT2_H
#define MOD_RATELIMIT2_H

#include "httpd.h"
#include "http_config.h"

#include "ratelimit2/backend.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/metrics.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/store.h"

#define RL2_LOGNO(n) "RL2" #n ": "

#define RL2_UNSET          -1
#define RL2_JSON_FILTER    "RATELIMIT2_JSON"
#define RL2_RELEASE_FILTER "RATELIMIT2_RELEASE"

/* The one symbol the module exports: Apache finds it with dlsym().
 * Everything else, the core included, is built with hidden visibility,
 * so that calls inside the module are direct (no PLT) and the compiler
 * may inline them. */
extern module AP_MODULE_DECLARE_DATA __attribute__((visibility("default")))
ratelimit2_module;

/* Server-wide: the policy and identity settings.  The zone directives are
 * global (main server only). */
typedef struct {
    const char         *policy_file;  /* RateLimit2Policy, or NULL */
    rl2_policy_t       *policy;       /* loaded or default; pconf-owned */
    apr_array_header_t *trusted;      /* rl2_cidr_t from directives */
    int                 mode;         /* rl2_mode_t or RL2_UNSET */
    int                 reset_delta;  /* RL2_UNSET, 0, 1 */
    int                 legacy;       /* RateLimit2LegacyHeaders: UNSET,
                                         0, 1 */
    int body_problem;                 /* RateLimit2BodyFormat: UNSET, 0
                                         (json), 1 (problem+json) */
    unsigned                 phases;  /* RL2_PHASE_* the policy uses */
    struct rl2_metrics_bind *metrics; /* set in post_config, or NULL */
} rl2_srv_conf_t;

/* Per directory: the engine switch and inline limits. */
typedef struct {
    int                 engine; /* RL2_UNSET, 0, 1 */
    int                 mode;   /* mode of inline limits, or UNSET */
    apr_array_header_t *rules;  /* rl2_rule_t: one per inline limit */
    unsigned            phases; /* RL2_PHASE_* the inline limits use */
} rl2_dir_conf_t;

/* The rate-limit fields of a response, rendered once
 * (mod_ratelimit2_fields.c): RateLimit-Policy, RateLimit, three
 * X-RateLimit-*, Scope, Algorithm, Factors, Variant, Retry-After. */
#define RL2_FIELDS_MAX 10
/* Most verdicts' values fit in this; a larger buffer is taken from the
 * pool when not. */
#define RL2_FIELDS_FIRST 256

typedef enum {
    RL2_FIELDS_PENDING, /* in no table yet */
    RL2_FIELDS_OUT,     /* in r->headers_out */
    RL2_FIELDS_ERR      /* in r->err_headers_out */
} rl2_fields_table_t;

typedef struct {
    int                n;
    rl2_fields_table_t table;
    const char        *name[RL2_FIELDS_MAX];
    const char        *value[RL2_FIELDS_MAX];
} rl2_fields_t;

/* The moments the fields are placed at (rl2_fields_place). */
typedef enum {
    RL2_FIELDS_AT_REFUSAL, /* the request is refused with 429 */
    RL2_FIELDS_AT_FIXUPS,  /* it goes on, its handler known */
    RL2_FIELDS_AT_ERROR    /* an error response replaces the response */
} rl2_fields_at_t;

/* What the module remembers of a request it decided. */
typedef struct {
    rl2_verdict_t *verdict; /* kept across phases, or NULL when the
                               first phase needed nothing more */
    rl2_fields_t *fields;   /* rendered, or NULL */
    rl2_clock_t   now;
    int           cleanup_registered;
    int           dry_run_logged;
    const char   *json_body;       /* our refusal body is the response:
                                      its Content-Type; NULL: not ours */
    int status;                    /* the refusal's status (429, 403,
                                      503), or 0 */
    rl2_fields_t rendered;         /* what fields points to: the state and
                                      the fields in one allocation */
    char values[RL2_FIELDS_FIRST]; /* their first room */
} rl2_req_state_t;

/* Server-wide store settings gathered while the configuration is read
 * (directives run in the parent before post_config; reset in
 * pre_config). */
typedef struct {
    rl2_backend_conf_t backend;          /* zone, Redis, failover, alerts */
    size_t             inline_state_max; /* largest state of an inline
                                            limit */
} rl2_global_conf_t;

extern rl2_global_conf_t rl2_global;

/* mod_ratelimit2_config.c */
extern const command_rec rl2_cmds[];
void                    *rl2_create_srv_conf(apr_pool_t *p, server_rec *s);
void        *rl2_merge_srv_conf(apr_pool_t *p, void *basev, void *addv);
void        *rl2_create_dir_conf(apr_pool_t *p, char *dir);
void        *rl2_merge_dir_conf(apr_pool_t *p, void *basev, void *addv);
apr_status_t rl2_policy_cleanup(void *data);

/* mod_ratelimit2_fields.c: the fields of a response and their table. */
rl2_fields_t *rl2_fields_render(request_rec *r, const rl2_policy_t *policy,
                                const rl2_verdict_t *v, const rl2_clock_t *now,
                                rl2_fields_t *f, char *buf, apr_size_t len);
void rl2_fields_place(request_rec *r, rl2_fields_t *f, rl2_fields_at_t at);

/* mod_ratelimit2_store.c: the store directives. */
const char *rl2_set_redis(cmd_parms *cmd, void *dummy, const char *args);
const char *rl2_set_failover(cmd_parms *cmd, void *dummy, const char *args);
const char *rl2_set_alerts(cmd_parms *cmd, void *dummy, const char *args);

/* mod_ratelimit2.c: the store stack of this process (NULL before
 * post_config). */
rl2_backend_t *rl2_module_backend(void);

/* mod_ratelimit2_handlers.c: metrics, health and status handlers,
 * counting, and their directives. */
void rl2_handlers_register(apr_pool_t *p);
/* mod_ratelimit2_admin.c: SetHandler ratelimit2-admin, dispatched by the
 * handlers above (one handler hook for every request, not two). */
int rl2_admin_serve(request_rec *r);

/* mod_ratelimit2_load.c: give a policy whose factors.load reads the
 * "scoreboard" Apache's share of busy workers. */
void rl2_ap_load_measure(rl2_policy_t *policy);
/* Count a request's final verdict; rl2_conclude (mod_ratelimit2.c) is
 * its only caller (inline: it is on every request's path). */
static inline void
rl2_metrics_count(request_rec *r, const rl2_verdict_t *v,
                  const rl2_clock_t *now)
{
    const rl2_srv_conf_t *sconf =
        ap_get_module_config(r->server->module_config, &ratelimit2_module);

    rl2_metrics_record(sconf->metrics, v, now);
}
const char *rl2_set_metrics(cmd_parms *cmd, void *dummy, int on);
const char *rl2_set_events(cmd_parms *cmd, void *dummy, const char *args);

#endif /* MOD_RATELIMIT2_H */
