/*
 * backend.h -- the whole store stack a front end needs, built in one call:
 * the local zone and its store, and, when Redis is configured, the Redis
 * store behind a circuit breaker and a failover store, with syslog alerts.
 * Both front ends (the Apache module and ratelimit2-fcgi) use this, so a
 * deployment behaves the same whichever serves it.
 *
 * Nothing here connects to Redis: connections are opened lazily, per
 * thread, on first use (after fork), by the Redis store.
 */
#ifndef RL2_BACKEND_H
#define RL2_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/alert.h"
#include "ratelimit2/failover.h"
#include "ratelimit2/metrics.h"
#include "ratelimit2/overrides.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/redis.h"
#include "ratelimit2/status.h"
#include "ratelimit2/store.h"
#include "ratelimit2/violation_log.h"

#define RL2_BACKEND_NAME_MAX 200

/* rl2_backend_conf_t.given: the groups of settings a front end's own
 * directives or options set, which the policy file's do not replace. */
#define RL2_BACKEND_GIVEN_REDIS    1u /* server and its options */
#define RL2_BACKEND_GIVEN_FAILOVER 2u /* mode, share, probe, failures */
#define RL2_BACKEND_GIVEN_ALERTS   4u /* on/off, socket, ident, ... */

typedef struct {
    char             zone_name[RL2_BACKEND_NAME_MAX]; /* "/ratelimit2" */
    uint32_t         zone_entries;  /* keys the local zone holds */
    size_t           state_size;    /* bytes per key (policy max) */
    unsigned         shm_mode;      /* permission of new objects */
    int              redis_enabled; /* 0: local store only */
    rl2_redis_conf_t redis;
    /* The over-limit cache ("<zone>.overlimit", Redis only): a client
     * Redis refused is refused by this host until the refusal ends,
     * without a Redis call (the redis options overlimit=on|off and
     * overlimit_entries=N). */
    int      overlimit;                /* 1 */
    uint32_t overlimit_entries;        /* 0: a quarter of zone_entries, at least
                                          RL2_OVERLIMIT_MIN_ENTRIES */
    rl2_failover_mode_t failover_mode; /* when Redis fails */
    uint32_t            local_share_ppm; /* local mode: share of a limit */
    rl2_circuit_conf_t  circuit;
    int                 alerts_enabled; /* syslog alerts (Redis mode) */
    char                alert_socket[108];
    char                alert_ident[33];
    int                 alert_facility;
    int64_t             alert_interval_ms;
    rl2_vlog_conf_t     vlog; /* the violation log (zero:
                                 defaults); its stream string
                                 is copied at open */
    /* Metrics ("<zone>.metrics") and the alerts that follow from them;
     * with alerts on, the alert state is opened for a local store too. */
    int                metrics_enabled; /* 1 */
    rl2_metrics_conf_t metrics;
    unsigned           given;              /* RL2_BACKEND_GIVEN_* */
    uint32_t           tier_cache_entries; /* > 0: a tier source (needs
                                              Redis) with this cache */
} rl2_backend_conf_t;

/* The store groups of a policy file (redis, failover, alerts): what it
 * sets, over the defaults of rl2_backend_conf_init(). */
typedef struct rl2_policy_store {
    unsigned           given; /* RL2_BACKEND_GIVEN_* the file sets */
    rl2_backend_conf_t conf;
} rl2_policy_store_t;

typedef struct rl2_backend rl2_backend_t;

/* Complete conf with the policy's store groups, each one only where the
 * front end's own directives or options did not set it (conf->given):
 * a directive or option replaces the file's whole group.  Also sizes the
 * tier source from the policy's tier_from.redis, which needs a Redis
 * server from one side or the other (RL2_ERR_CONFIG naming file:line).
 * policy may be NULL (nothing to add). */
rl2_status_t rl2_backend_conf_policy(rl2_backend_conf_t *conf,
                                     const rl2_policy_t *policy,
                                     rl2_err_t          *err);

/* Defaults: zone "/ratelimit2" of 100,000 entries, local store only;
 * when Redis is enabled: failover local with share 1.0, the circuit's
 * defaults, alerts to /dev/log as "ratelimit2", facility daemon, at most
 * one line per kind a minute. */
void rl2_backend_conf_init(rl2_backend_conf_t *conf);

/* Build the stack.  The circuit and the alert state live in shared memory
 * named after the zone ("<zone>.circuit", "<zone>.alert"), so every
 * process of the host shares them.  *out is owned by the caller, freed by
 * rl2_backend_close(). */
rl2_status_t rl2_backend_open(const rl2_backend_conf_t *conf,
                              rl2_backend_t **out, rl2_err_t *err);
void         rl2_backend_close(rl2_backend_t *backend);

/* The store decide() talks to (failover over Redis, or the local store). */
rl2_store_t *rl2_backend_store(rl2_backend_t *backend);
/* The local zone (for statistics and health). */
rl2_zone_t *rl2_backend_zone(rl2_backend_t *backend);
/* The violation log ("<zone>.vlog", and the Redis stream when Redis is
 * configured), or NULL when it is disabled. */
rl2_vlog_t *rl2_backend_vlog(rl2_backend_t *backend);
/* After a decide() error: should the request be refused with 503, and
 * after how many seconds may it retry (closed failover mode)? */
int rl2_backend_refusing(rl2_backend_t *backend, int64_t *retry_after_s);
/* The tier source for rl2_request_t.tier_source, or NULL when the conf
 * asked for none (or there is no Redis). */
struct rl2_tier_source *rl2_backend_tier_source(rl2_backend_t *backend);

/* The runtime override table for `policy`'s decisions, beside conf's
 * zone (its name and shm mode) with the policy's state file: *out NULL
 * and RL2_OK when the policy disables it.  On success *note may say
 * something the operator should know (msg empty: nothing), such as a
 * state directory that does not exist.  The table's automatic bans are
 * audited (rl2_overrides_audit_attach) into "<zone>.audit" in the state
 * file's directory and syslog (the alerts' socket and ident), and, once
 * the table has a Redis side, the fleet's audit stream.  Released by
 * rl2_overrides_close(); independent of any backend, so that a front end
 * may keep it while backends come and go. */
rl2_status_t rl2_backend_overrides_open(const rl2_backend_conf_t *conf,
                                        const rl2_policy_t       *policy,
                                        rl2_overrides_t **out, rl2_err_t *note,
                                        rl2_err_t *err);

/* Make the runtime override table (the policy's, overrides.h) the
 * fleet's when the backend counts in Redis: changes go to Redis first,
 * and the table mirrors the Redis hash (keys from the redis options'
 * overrides_key), synced by rl2_decide() on the request path.
 * The table borrows the Redis store's connections, the circuit (no sync
 * while it is open) and the alerts: close the table before the backend.
 * Without Redis, or with table NULL, nothing to do (RL2_OK).  Once per
 * table, before requests use it. */
rl2_status_t rl2_backend_overrides_attach(rl2_backend_t   *backend,
                                          rl2_overrides_t *table,
                                          rl2_err_t       *err);

/* The over-limit cache (redis option overlimit, on by default) counts
 * a cached answer only under the generation of the runtime override
 * table it was recorded under: give it the front end's table (NULL:
 * none, the generation stays 0).  rl2_backend_overrides_attach does it
 * for its table; a front end whose table has its own Redis side calls
 * it itself.  The table must outlive the backend's requests. */
void rl2_backend_overrides_watch(rl2_backend_t         *backend,
                                 const rl2_overrides_t *table);

/* Forget the layers' keys in conf's over-limit cache ("<zone>.overlimit",
 * attached, never created), for ratelimit2ctl reset: this host's
 * processes ask Redis again at once.  An error (no such cache on this
 * host, one not vetted as rl2_zone_attach says) names the object. */
rl2_status_t rl2_backend_overlimit_forget(const rl2_backend_conf_t *conf,
                                          const rl2_layer_t *layers, size_t n,
                                          rl2_err_t *err);

/* The metrics object, or NULL when metrics are off. */
rl2_metrics_t *rl2_backend_metrics(rl2_backend_t *backend);
/* What health, metrics and status pages show of the stack (zone,
 * circuit, failover); generation and uptime are the caller's. */
void rl2_backend_env(rl2_backend_t *backend, rl2_metrics_env_t *env);

#endif /* RL2_BACKEND_H */
