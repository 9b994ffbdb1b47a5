/*
 * backend.c -- assembles the store stack of backend.h: local zone, local
 * store, and (with Redis) Redis store + circuit + alerts + lease table and
 * lease store + failover store over it, and over them the over-limit
 * cache (decide -> overlimit -> failover -> lease -> redis | local).
 * Owns the order in which they are built and torn down.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "ratelimit2/backend.h"
#include "ratelimit2/tier_source.h"
#include "base/base_internal.h"
#include "store/store_internal.h"
#include "redis/redis_internal.h"
#include "control/control_internal.h"
#include "obs/metrics_internal.h"
#include "obs/violation_log_internal.h"

struct rl2_backend {
    rl2_zone_t         *zone;
    rl2_store_t        *local;
    rl2_store_t        *redis;
    rl2_circuit_t      *circuit;
    rl2_alert_t        *alert;
    rl2_store_t        *failover;
    rl2_zone_t         *overlimit_zone; /* "<zone>.overlimit"; NULL: off */
    rl2_store_t        *overlimit;      /* over failover; NULL: off */
    rl2_vlog_t         *vlog;
    rl2_metrics_t      *metrics;
    rl2_store_t        *timed; /* Redis, timed into the metrics */
    rl2_zone_t         *lease_zone;
    rl2_store_t        *lease; /* in front of Redis (or it timed) */
    rl2_failover_mode_t failover_mode;
    rl2_tier_source_t  *tiers;
    rl2_usage_push_t   *usage_push; /* the minutes into Redis; NULL: off */
    char overrides_key[RL2_REDIS_OVR_KEY_MAX]; /* the Redis conf's */
};

void
rl2_backend_conf_init(rl2_backend_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    snprintf(conf->zone_name, sizeof(conf->zone_name), "/ratelimit2");
    conf->zone_entries = 100000;
    conf->state_size = 8;
    conf->shm_mode = 0600;
    rl2_redis_conf_init(&conf->redis);
    conf->overlimit = 1;
    conf->failover_mode = RL2_FAILOVER_LOCAL;
    conf->local_share_ppm = RL2_SHARE_ONE;
    rl2_circuit_conf_default(&conf->circuit);
    conf->alerts_enabled = 1;
    snprintf(conf->alert_socket, sizeof(conf->alert_socket), "/dev/log");
    snprintf(conf->alert_ident, sizeof(conf->alert_ident), "ratelimit2");
    conf->alert_facility = LOG_DAEMON;
    conf->alert_interval_ms = 60000;
    conf->metrics_enabled = 1;
    rl2_metrics_conf_default(&conf->metrics);
}

/* "<zone><suffix>", the name of a companion shm object. */
static void
rl2_backend_name(const rl2_backend_conf_t *conf, const char *suffix, char *out,
                 size_t len)
{
    snprintf(out, len, "%.*s%s", (int)(len - strlen(suffix) - 1),
             conf->zone_name, suffix);
}

static rl2_status_t
rl2_backend_alerts(const rl2_backend_conf_t *conf, rl2_backend_t *b,
                   rl2_err_t *err)
{
    rl2_alert_conf_t ac;
    char             name[RL2_BACKEND_NAME_MAX + 16];

    if (!conf->alerts_enabled) {
        return RL2_OK;
    }
    rl2_alert_conf_default(&ac);
    rl2_backend_name(conf, ".alert", name, sizeof(name));
    ac.socket_path = conf->alert_socket;
    ac.ident = conf->alert_ident;
    ac.facility = conf->alert_facility;
    ac.interval_ms = conf->alert_interval_ms;
    ac.shm_name = name;
    ac.mode = conf->shm_mode;
    return rl2_alert_open(&ac, &b->alert, err);
}

/* The lease table has a quarter of the zone's entries (a key with a
 * lease is a busy one), at least RL2_LEASE_ENTRIES_MIN.  It is there
 * whenever Redis is, since a limit may ask for leases of its own. */
#define RL2_LEASE_ENTRIES_MIN 1024

static rl2_status_t
rl2_backend_lease(const rl2_backend_conf_t *conf, rl2_backend_t *b,
                  rl2_err_t *err)
{
    rl2_lease_conf_t lc;
    char             name[RL2_BACKEND_NAME_MAX + 16];
    uint32_t         entries = conf->zone_entries / 4;
    rl2_status_t     st;

    if (entries < RL2_LEASE_ENTRIES_MIN) {
        entries = RL2_LEASE_ENTRIES_MIN;
    }
    rl2_backend_name(conf, ".lease", name, sizeof(name));
    st = rl2_zone_open(name, entries, rl2_lease_state_size(), conf->shm_mode,
                       &b->lease_zone, err);
    if (st != RL2_OK) {
        return st;
    }
    lc.zone = b->lease_zone;
    lc.circuit = b->circuit;
    lc.redis = b->redis;
    lc.inner = b->timed != NULL ? b->timed : b->redis;
    lc.all = conf->redis.lease;
    lc.lease_us = (int64_t)conf->redis.lease_time_ms * RL2_US_PER_MS;
    lc.lease_max = conf->redis.lease_max;
    /* How long a call out keeps its key marked, from the request's clock:
     * a call connects, writes, reads, and may load its script and send it
     * again (each step within its timeout), and a request may make
     * several after its clock was read (earlier phases' calls, asks past
     * one call's RL2_MAX_LAYERS, a Cluster's call per slot): eight calls'
     * worth.  A mark that outlives a killed process only makes the key's
     * other requests ask for their own cost meanwhile. */
    lc.call_max_us = 8
                     * ((int64_t)conf->redis.connect_timeout_ms
                        + 4 * (int64_t)conf->redis.command_timeout_ms)
                     * RL2_US_PER_MS;
    return rl2_store_lease_create(&lc, &b->lease, err);
}

/* With metrics, every minute this host ends goes to Redis too (the
 * fleet's usage series, obs/usage_redis.h), on the store's connections
 * and behind its circuit. */
static rl2_status_t
rl2_backend_usage_push(rl2_backend_t *b, rl2_err_t *err)
{
    rl2_status_t st;

    if (b->metrics == NULL) {
        return RL2_OK;
    }
    st = rl2_usage_push_create(rl2_store_redis_pool(b->redis),
                               rl2_store_redis_cluster(b->redis), b->circuit,
                               &b->usage_push, err);
    if (st == RL2_OK) {
        rl2_metrics_on_minute(b->metrics, rl2_usage_push_minute, b->usage_push);
    }
    return st;
}

static rl2_status_t
rl2_backend_redis(const rl2_backend_conf_t *conf, rl2_backend_t *b,
                  rl2_err_t *err)
{
    rl2_failover_conf_t fc;
    char                name[RL2_BACKEND_NAME_MAX + 16];
    rl2_status_t        st;

    rl2_backend_name(conf, ".circuit", name, sizeof(name));
    if ((st = rl2_store_redis_create(&conf->redis, &b->redis, err)) != RL2_OK
        || (st = rl2_circuit_open(name, &conf->circuit, conf->shm_mode,
                                  &b->circuit, err))
               != RL2_OK) {
        return st;
    }
    if (b->metrics != NULL
        && (st = rl2_store_timed_create(b->redis, b->metrics, &b->timed, err))
               != RL2_OK) {
        return st;
    }
    if ((st = rl2_backend_lease(conf, b, err)) != RL2_OK
        || (st = rl2_backend_usage_push(b, err)) != RL2_OK) {
        return st;
    }
    rl2_failover_conf_default(&fc);
    fc.mode = conf->failover_mode;
    fc.local_share_ppm = conf->local_share_ppm;
    fc.alert = b->alert;
    if (conf->tier_cache_entries > 0
        && (st = rl2_tier_source_create(&conf->redis, b->circuit,
                                        conf->tier_cache_entries, &b->tiers,
                                        err))
               != RL2_OK) {
        return st;
    }
    b->failover_mode = conf->failover_mode;
    memcpy(b->overrides_key, conf->redis.overrides_key,
           sizeof(b->overrides_key));
    return rl2_store_failover_create(b->lease, b->local, b->circuit, &fc,
                                     &b->failover, err);
}

/* The over-limit cache's entries: as the conf says, or a quarter of the
 * counters' zone, at least RL2_OVERLIMIT_MIN_ENTRIES. */
static uint32_t
rl2_backend_overlimit_entries(const rl2_backend_conf_t *conf)
{
    uint32_t n = conf->zone_entries / 4;

    if (conf->overlimit_entries > 0) {
        return conf->overlimit_entries;
    }
    return n > RL2_OVERLIMIT_MIN_ENTRIES ? n : RL2_OVERLIMIT_MIN_ENTRIES;
}

/* Over the failover store: a client Redis refused is refused by the host
 * until the refusal ends, without a Redis call (store_internal.h). */
static rl2_status_t
rl2_backend_overlimit(const rl2_backend_conf_t *conf, rl2_backend_t *b,
                      rl2_err_t *err)
{
    char         name[RL2_BACKEND_NAME_MAX + 16];
    rl2_status_t st;

    rl2_backend_name(conf, ".overlimit", name, sizeof(name));
    st = rl2_zone_open(name, rl2_backend_overlimit_entries(conf),
                       RL2_OVERLIMIT_STATE_SIZE, conf->shm_mode,
                       &b->overlimit_zone, err);
    if (st == RL2_OK) {
        st = rl2_store_overlimit_create(b->failover, b->overlimit_zone,
                                        &b->overlimit, err);
    }
    if (st == RL2_OK && b->metrics != NULL) {
        rl2_overlimit_on_hit(b->overlimit, rl2_metrics_overlimit_hit,
                             b->metrics);
    }
    if (st == RL2_OK) {
        rl2_overlimit_on_held(b->overlimit, rl2_lease_holds, b->lease_zone);
    }
    return st;
}

rl2_status_t
rl2_backend_open(const rl2_backend_conf_t *conf, rl2_backend_t **out,
                 rl2_err_t *err)
{
    rl2_backend_t *b = calloc(1, sizeof(*b));
    rl2_status_t   st;

    *out = NULL;
    if (b == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    st = rl2_zone_open(conf->zone_name, conf->zone_entries, conf->state_size,
                       conf->shm_mode, &b->zone, err);
    if (st == RL2_OK) {
        st = rl2_store_local_create(b->zone, &b->local, err);
    }
    if (st == RL2_OK) {
        st = rl2_backend_alerts(conf, b, err);
    }
    if (st == RL2_OK && conf->metrics_enabled) {
        char name[RL2_BACKEND_NAME_MAX + 16];

        rl2_backend_name(conf, ".metrics", name, sizeof(name));
        st = rl2_metrics_open(name, conf->shm_mode, &conf->metrics, b->alert,
                              b->zone, &b->metrics, err);
    }
    if (st == RL2_OK && conf->redis_enabled) {
        st = rl2_backend_redis(conf, b, err);
    }
    if (st == RL2_OK && conf->redis_enabled && conf->overlimit) {
        st = rl2_backend_overlimit(conf, b, err);
    }
    if (st == RL2_OK) {
        st = rl2_vlog_open(&conf->vlog, conf->zone_name, conf->shm_mode,
                           b->redis ? rl2_store_redis_pool(b->redis) : NULL,
                           b->circuit, &b->vlog, err);
    }
    if (st != RL2_OK) {
        rl2_backend_close(b);
        return st;
    }
    *out = b;
    return RL2_OK;
}

void
rl2_backend_close(rl2_backend_t *b)
{
    if (b == NULL) {
        return;
    }
    /* Wrappers before what they wrap; the pusher, which borrows the
     * Redis store's connections, unhooked first. */
    if (b->metrics != NULL) {
        rl2_metrics_on_minute(b->metrics, NULL, NULL);
    }
    rl2_usage_push_destroy(b->usage_push);
    rl2_vlog_close(b->vlog);
    rl2_tier_source_destroy(b->tiers);
    rl2_store_destroy(b->overlimit);
    rl2_zone_close(b->overlimit_zone);
    rl2_store_destroy(b->failover);
    rl2_store_destroy(b->lease);
    rl2_zone_close(b->lease_zone);
    rl2_store_destroy(b->timed);
    rl2_store_destroy(b->redis);
    rl2_circuit_close(b->circuit);
    rl2_metrics_close(b->metrics);
    rl2_alert_close(b->alert);
    rl2_store_destroy(b->local);
    rl2_zone_close(b->zone);
    free(b);
}

rl2_store_t *
rl2_backend_store(rl2_backend_t *b)
{
    if (b->overlimit != NULL) {
        return b->overlimit;
    }
    return b->failover != NULL ? b->failover : b->local;
}

rl2_vlog_t *
rl2_backend_vlog(rl2_backend_t *b)
{
    return b->vlog;
}

rl2_zone_t *
rl2_backend_zone(rl2_backend_t *b)
{
    return b->zone;
}

int
rl2_backend_refusing(rl2_backend_t *b, int64_t *retry_after_s)
{
    return b->failover != NULL
           && rl2_failover_refusing(b->failover, retry_after_s);
}

rl2_metrics_t *
rl2_backend_metrics(rl2_backend_t *b)
{
    return b->metrics;
}

void
rl2_backend_env(rl2_backend_t *b, rl2_metrics_env_t *env)
{
    rl2_circuit_stats_t cs;
    rl2_clock_t         now;
    int64_t             retry;
    rl2_err_t           err;

    memset(env, 0, sizeof(*env));
    /* A walk of the whole zone, a chunk per lock hold: the live keys now,
     * not the entries that once held a key (store_local.h). */
    rl2_clock_now(&now);
    env->have_zone =
        rl2_zone_usage(b->zone, now.mono_us, &env->zone_usage, &env->zone, &err)
        == RL2_OK;
    env->circuit = -1;
    if (b->circuit != NULL) {
        rl2_circuit_stats(b->circuit, &cs);
        env->redis = 1;
        env->circuit = (int)cs.state;
        env->circuit_opens = cs.opens;
        env->refunds_queued = cs.refunds_queued;
        env->refunds_replayed = cs.refunds_replayed;
        env->refunds_dropped = cs.refunds_dropped;
        env->refunds_failed = cs.refunds_failed;
        env->refunds_pending = cs.refunds_pending;
        env->failover_mode = (int)b->failover_mode;
        env->refusing = rl2_backend_refusing(b, &retry);
    }
    env->alert_failures = rl2_alert_failures(b->alert);
    env->overlimit =
        b->overlimit_zone != NULL
        && rl2_zone_stats(b->overlimit_zone, &env->overlimit_zone, &err)
               == RL2_OK;
}

struct rl2_tier_source *
rl2_backend_tier_source(rl2_backend_t *b)
{
    return b->tiers;
}

rl2_status_t
rl2_backend_overrides_attach(rl2_backend_t *b, rl2_overrides_t *table,
                             rl2_err_t *err)
{
    rl2_ovr_redis_conf_t rc = { .key = b->overrides_key,
                                .circuit = b->circuit,
                                .alert = b->alert };

    if (table == NULL) {
        return RL2_OK;
    }
    rl2_backend_overrides_watch(b, table);
    if (b->redis == NULL) {
        return RL2_OK; /* one host: the table is its own */
    }
    /* The store's connections: the mirror opens none of its own. */
    rc.pool = rl2_store_redis_pool(b->redis);
    rc.cluster = rl2_store_redis_cluster(b->redis);
    return rl2_ovr_redis_attach(table, &rc, err);
}

void
rl2_backend_overrides_watch(rl2_backend_t *b, const rl2_overrides_t *table)
{
    rl2_overlimit_watch(
        b->overlimit, table != NULL ? rl2_overrides_version_word(table) : NULL);
}

rl2_status_t
rl2_backend_overlimit_forget(const rl2_backend_conf_t *conf,
                             const rl2_layer_t *layers, size_t n,
                             rl2_err_t *err)
{
    char         name[RL2_BACKEND_NAME_MAX + 16];
    rl2_zone_t  *zone;
    rl2_status_t st;

    rl2_backend_name(conf, ".overlimit", name, sizeof(name));
    /* Attached, never created: creating it here would give the servers
     * a cache of another geometry to replace. */
    if ((st = rl2_zone_attach(name, &zone, err)) != RL2_OK) {
        return st;
    }
    st = rl2_zone_forget(zone, layers, n, err);
    rl2_zone_close(zone);
    return st;
}

/* ---- the policy file's store groups ---- */

static void
rl2_backend_take(rl2_backend_conf_t *to, const rl2_backend_conf_t *from,
                 unsigned groups)
{
    if (groups & RL2_BACKEND_GIVEN_REDIS) {
        to->redis_enabled = from->redis_enabled;
        to->redis = from->redis;
        to->overlimit = from->overlimit;
        to->overlimit_entries = from->overlimit_entries;
    }
    if (groups & RL2_BACKEND_GIVEN_FAILOVER) {
        to->failover_mode = from->failover_mode;
        to->local_share_ppm = from->local_share_ppm;
        to->circuit = from->circuit;
    }
    if (groups & RL2_BACKEND_GIVEN_ALERTS) {
        to->alerts_enabled = from->alerts_enabled;
        memcpy(to->alert_socket, from->alert_socket, sizeof(to->alert_socket));
        memcpy(to->alert_ident, from->alert_ident, sizeof(to->alert_ident));
        to->alert_facility = from->alert_facility;
        to->alert_interval_ms = from->alert_interval_ms;
    }
}

rl2_status_t
rl2_backend_conf_policy(rl2_backend_conf_t *conf, const rl2_policy_t *policy,
                        rl2_err_t *err)
{
    const rl2_tier_redis_t *tr;

    if (policy == NULL) {
        return RL2_OK;
    }
    if (policy->store != NULL) {
        rl2_backend_take(conf, &policy->store->conf,
                         policy->store->given & ~conf->given);
    }
    if ((tr = policy->tier_redis) == NULL) {
        return RL2_OK;
    }
    if (!conf->redis_enabled) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s:%d: tier_from.redis "
                           "needs a Redis server: a 'redis' group in the "
                           "policy, RateLimit2Redis or -R",
                           tr->file, tr->line);
    }
    conf->tier_cache_entries = tr->cache_entries;
    return RL2_OK;
}
