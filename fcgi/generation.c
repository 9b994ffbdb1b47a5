/*
 * generation.c -- the policy the daemon enforces, replaced on SIGHUP
 * without stopping a request.
 *
 * Each load of the policy file is a generation.  A request takes a
 * reference on the current generation when it starts and drops it when
 * it has answered, so a reload never pulls a policy from under a request
 * being decided: the new generation serves the requests that start after
 * the swap, and the old one is freed by whichever request drops its last
 * reference.  The counts are guarded by one mutex, held for a few
 * instructions per request, never while deciding.
 *
 * The backend (the zone, and the Redis store behind its circuit when -R
 * is given) is kept across reloads (counters continue) unless the new
 * policy needs larger entries; then a backend whose zone has the new
 * geometry replaces it under the same name, and generations still
 * running on the old one keep it until they are freed.  Counters in
 * Redis are not affected: the new backend's Redis store finds them.
 *
 * The runtime override table is opened once, beside the zone, and kept
 * across reloads and backends: every generation whose policy enables it
 * reads the same table.
 */
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "ratelimit2/tier_source.h"

#include "fcgi.h"

/* Bytes of zone entry a policy needs; a policy without limits still gets
 * a valid zone. */
static size_t
rl2_gen_state(const rl2_policy_t *policy)
{
    return policy->max_state_size > 8 ? policy->max_state_size : 8;
}

static rl2_gen_zone_t *
rl2_gen_zone_open(const rl2_gens_t *g, size_t state, rl2_err_t *err)
{
    rl2_gen_zone_t    *z = calloc(1, sizeof(*z));
    rl2_backend_conf_t conf = g->backend;

    if (z == NULL) {
        rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
        return NULL;
    }
    conf.state_size = state;
    if (rl2_backend_open(&conf, &z->backend, err) != RL2_OK) {
        free(z);
        return NULL;
    }
    z->zone = rl2_backend_zone(z->backend);
    z->store = rl2_backend_store(z->backend);
    return z;
}

static void
rl2_gen_zone_close(rl2_gen_zone_t *z)
{
    rl2_backend_close(z->backend);
    free(z);
}

/* Give the generation's rules and tiers their metric slots. */
static int
rl2_gen_bind(rl2_gen_t *gen, rl2_err_t *err)
{
    size_t lost = 0;

    if (rl2_metrics_bind(rl2_backend_metrics(gen->zone->backend), gen->policy,
                         NULL, 0, &gen->metrics, &lost, err)
        != RL2_OK) {
        return -1;
    }
    if (lost > 0) {
        rl2_log(LOG_WARNING,
                "metrics: %zu rule or tier names found no slot "
                "(at most %d rules and %d tiers per zone): counted as "
                "\"(other)\"",
                lost, RL2_METRICS_RULES - 2, RL2_METRICS_TIERS - 2);
    }
    return 0;
}

static void
rl2_gen_free(rl2_gen_t *gen, int zone_too)
{
    rl2_metrics_unbind(gen->metrics);
    if (zone_too) {
        rl2_gen_zone_close(gen->zone);
    }
    rl2_policy_free(gen->policy);
    free(gen);
}

/* Under the lock: drop one reference; says what the caller must free
 * once the lock is released. */
static int
rl2_gen_unref(rl2_gen_t *gen, int *zone_too)
{
    *zone_too = 0;
    if (--gen->refs > 0) {
        return 0;
    }
    *zone_too = --gen->zone->gens == 0;
    return 1;
}

/* Attach the runtime override table to a generation's policy, opening
 * it when a policy enables it first (at start, or at the reload after an
 * operator fixed what kept it from opening).  Without it the daemon
 * serves on: the table is an operator's tool, not something a request
 * needs. */
static void
rl2_gens_overrides(rl2_gens_t *g, rl2_policy_t *policy)
{
    char      path[sizeof(g->overrides_state)];
    rl2_err_t note, err;

    if (policy->overrides_disabled
        || rl2_policy_overrides_state(policy, g->zone_name, path, sizeof(path))
               != 0) {
        policy->overrides = NULL;
        return;
    }
    if (g->overrides == NULL) {
        if (rl2_backend_overrides_open(&g->backend, policy, &g->overrides,
                                       &note, &err)
            != RL2_OK) {
            rl2_log(LOG_ERR, "runtime overrides are off: %s", err.msg);
        }
        else {
            if (note.msg[0] != '\0') {
                rl2_log(LOG_WARNING, "%s", note.msg);
            }
            memcpy(g->overrides_state, path, sizeof(path));
            /* With Redis, the fleet's table.  Its connections are its
             * own: the table outlives the stores a reload replaces. */
            if (g->backend.redis_enabled
                && rl2_overrides_redis_attach(g->overrides, &g->backend.redis,
                                              &err)
                       != RL2_OK) {
                rl2_log(LOG_ERR, "runtime overrides through Redis: %s",
                        err.msg);
            }
        }
    }
    else if (strcmp(path, g->overrides_state) != 0) {
        rl2_log(LOG_WARNING,
                "%s: overrides.state_file is read at start only: the "
                "table stays kept in %s; restart ratelimit2-fcgi to "
                "keep it in %s",
                g->policy_path, g->overrides_state, path);
    }
    policy->overrides = g->overrides;
}

int
rl2_gens_init(rl2_gens_t *g, const char *policy_path, rl2_policy_t *policy,
              const rl2_backend_conf_t *conf, rl2_err_t *err)
{
    rl2_gen_t *gen = calloc(1, sizeof(*gen));

    if (gen == NULL) {
        rl2_policy_free(policy);
        rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
        return -1;
    }
    g->policy_path = policy_path;
    g->backend = *conf;
    g->zone_name = g->backend.zone_name;
    gen->policy = policy;
    g->backend.vlog = gen->policy->vlog; /* its stream is copied */
    /* The policy file's store groups, read once: a reload keeps the
     * backend, so changing them needs a restart. */
    if (rl2_backend_conf_policy(&g->backend, gen->policy, err) != RL2_OK
        || rl2_store_opt_check(&g->backend,
                               rl2_store_opt_needs_redis(&g->backend), err)
               != RL2_OK) {
        rl2_policy_free(gen->policy);
        free(gen);
        return -1;
    }
    gen->zone = rl2_gen_zone_open(g, rl2_gen_state(gen->policy), err);
    if (gen->zone == NULL) {
        rl2_policy_free(gen->policy);
        free(gen);
        return -1;
    }
    if (rl2_gen_bind(gen, err) != 0) {
        rl2_gen_free(gen, 1);
        return -1;
    }
    rl2_gens_overrides(g, gen->policy);
    /* The over-limit cache drops its entries when the table changes. */
    rl2_backend_overrides_watch(gen->zone->backend, g->overrides);
    pthread_mutex_init(&g->lock, NULL);
    gen->zone->gens = 1;
    gen->refs = 1;
    gen->number = g->loaded = 1;
    g->current = gen;
    return 0;
}

/* The store groups and the tier source are set up at start (the backend
 * outlives reloads): say so when a reload would change them. */
static void
rl2_gen_store_check(const rl2_gens_t *g, const rl2_policy_t *was,
                    const rl2_policy_t *now)
{
    const rl2_policy_store_t *a = was->store, *b = now->store;

    if ((a == NULL) != (b == NULL)
        || (a != NULL
            && (a->given != b->given
                || memcmp(&a->conf, &b->conf, sizeof(a->conf)) != 0))) {
        rl2_log(LOG_WARNING,
                "%s: redis, failover and alerts are read at "
                "start only: restart ratelimit2-fcgi to apply the change",
                g->policy_path);
    }
    if (now->tier_redis != NULL && g->backend.tier_cache_entries == 0) {
        rl2_log(LOG_WARNING,
                "%s:%d: tier_from.redis is set up at start "
                "only: restart ratelimit2-fcgi to look tiers up in Redis",
                now->tier_redis->file, now->tier_redis->line);
    }
}

int
rl2_gens_reload(rl2_gens_t *g, rl2_err_t *err)
{
    rl2_gen_t      *gen = calloc(1, sizeof(*gen)), *old;
    rl2_gen_zone_t *zone = NULL;
    size_t          state;
    int             drop, zone_too;

    if (gen == NULL) {
        rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
        return -1;
    }
    if (rl2_cgi_policy_load(g->policy_path, &gen->policy, err) != 0) {
        free(gen);
        return -1;
    }
    state = rl2_gen_state(gen->policy);
    /* Only this thread replaces the current generation, and the holder's
     * reference keeps it (and its zone) alive while we look. */
    rl2_gen_store_check(g, g->current->policy, gen->policy);
    if (state > rl2_zone_state_size(g->current->zone->zone)) {
        g->backend.vlog = gen->policy->vlog;
        zone = rl2_gen_zone_open(g, state, err);
        if (zone == NULL) {
            rl2_policy_free(gen->policy);
            free(gen);
            return -1;
        }
    }
    gen->zone = zone != NULL ? zone : g->current->zone;
    if (rl2_gen_bind(gen, err) != 0) {
        if (zone != NULL) {
            rl2_gen_zone_close(zone);
        }
        rl2_policy_free(gen->policy);
        free(gen);
        return -1;
    }
    rl2_gens_overrides(g, gen->policy);
    /* The over-limit cache drops its entries when the table changes. */
    rl2_backend_overrides_watch(gen->zone->backend, g->overrides);
    pthread_mutex_lock(&g->lock);
    old = g->current;
    gen->zone->gens++;
    gen->refs = 1;
    gen->number = ++g->loaded;
    g->current = gen;
    drop = rl2_gen_unref(old, &zone_too);
    pthread_mutex_unlock(&g->lock);
    if (drop) {
        rl2_gen_free(old, zone_too);
    }
    return 0;
}

rl2_gen_t *
rl2_gens_acquire(rl2_gens_t *g)
{
    rl2_gen_t *gen;

    pthread_mutex_lock(&g->lock);
    gen = g->current;
    gen->refs++;
    pthread_mutex_unlock(&g->lock);
    return gen;
}

void
rl2_gens_release(rl2_gens_t *g, rl2_gen_t *gen)
{
    int drop, zone_too;

    pthread_mutex_lock(&g->lock);
    drop = rl2_gen_unref(gen, &zone_too);
    pthread_mutex_unlock(&g->lock);
    if (drop) {
        rl2_gen_free(gen, zone_too);
    }
}

void
rl2_gens_destroy(rl2_gens_t *g)
{
    int zone_too;

    if (g->current != NULL && rl2_gen_unref(g->current, &zone_too)) {
        rl2_gen_free(g->current, zone_too);
    }
    g->current = NULL;
    pthread_mutex_destroy(&g->lock);
    /* Only this process's mapping: the table and its entries stay for
     * the next start. */
    rl2_overrides_close(g->overrides);
    g->overrides = NULL;
}
