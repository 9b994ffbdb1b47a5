/*
 * reset.c -- ratelimit2ctl reset KEY: forget the counters of every limit
 * that status would show for the client, through the store's reset op:
 * the local zone, and with -R Redis and the zone's failover counters.
 * The layers are found exactly as status finds them (a peek), so a reset
 * touches nothing but this client's keys for this request.
 *
 * With Redis, the servers' over-limit caches also hold the client's
 * refusals: this host's ("<zone>.overlimit") forgets the keys at once,
 * and the fleet's override counter moves on, so that every other host
 * drops what its cache holds at its next sync of the override table.
 */
#include <stdio.h>

#include "ctl.h"

/* The over-limit caches of this host and, through the override
 * counter in Redis, of the fleet: the counters are reset, so no cache
 * may refuse the client on the strength of them any more. */
static int
rl2_ctl_reset_caches(const rl2_ctl_opts_t *o, const rl2_layer_t *mine, size_t n,
                     const rl2_clock_t *now)
{
    rl2_err_t err;

    if (!o->backend.redis_enabled || n == 0) {
        return RL2_CTL_OK;
    }
    /* No server of this zone on this host (an operator's machine): said,
     * and the fleet's caches are still told below. */
    if (rl2_backend_overlimit_forget(&o->backend, mine, n, &err) != RL2_OK) {
        fprintf(stderr,
                "ratelimit2ctl: note: this host's over-limit cache was not "
                "reached: %s\n",
                err.msg);
    }
    if (rl2_overrides_redis_bump(&o->backend.redis, now, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL,
                            "reset: the counters are reset, but other hosts "
                            "may refuse the client until their cached "
                            "refusals end: %s",
                            err.msg);
    }
    return RL2_CTL_OK;
}

static int
rl2_ctl_reset_layers(const rl2_ctl_opts_t *o, const rl2_ctl_client_t *c,
                     rl2_verdict_t *v, rl2_store_t *store)
{
    int rc;

    rl2_layer_t mine[RL2_MAX_LAYERS];
    rl2_clock_t now;
    rl2_err_t   err;
    size_t      n = 0;

    for (size_t i = 0; i < v->n_layers; i++) {
        if (rl2_ctl_layer_mine(c, &v->layers[i])) {
            mine[n++] = v->layers[i];
        }
    }
    rl2_clock_now(&now);
    if (n > 0 && store->ops->reset(store, mine, n, &now, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "reset: %s", err.msg);
    }
    if ((rc = rl2_ctl_reset_caches(o, mine, n, &now)) != RL2_CTL_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        printf("reset %s %s %s\n", mine[i].rule ? mine[i].rule->name : "-",
               mine[i].limit->name, mine[i].client);
    }
    if (n == 0) {
        printf("no limit applies to %s for %s %s: nothing to reset\n", c->label,
               c->req.method, c->req.path);
    }
    return RL2_CTL_OK;
}

int
rl2_ctl_reset(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    const rl2_policy_t *policy = o->policy_loaded;
    rl2_ctl_client_t    c;
    rl2_ctl_stores_t    s;
    rl2_store_t        *store, *peek;
    rl2_verdict_t       v;
    rl2_clock_t         now;
    rl2_err_t           err;
    int                 rc;

    if (argc != 1) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: reset KEY");
    }
    if ((rc = rl2_ctl_client(o, policy, argv[0], &c)) == RL2_CTL_OK
        && (rc = rl2_ctl_stores_open(o, 1, &s)) == RL2_CTL_OK) {
        store = s.both ? s.both : s.redis ? s.redis : s.local;
        peek = s.redis != NULL ? s.redis : s.local;
        rl2_clock_now(&now);
        if (rl2_decide_peek(policy, NULL, 0, peek, &c.req, &now, &v, &err)
            != RL2_OK) {
            rc = rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
        }
        else {
            rc = rl2_ctl_reset_layers(o, &c, &v, store);
        }
        rl2_ctl_stores_close(&s);
    }
    return rc;
}
