/*
 * reset.c -- ratelimit2ctl reset KEY: forget the counters of every limit
 * that status would show for the client, through the store's reset op:
 * the local zone, and with -R Redis and the zone's failover counters.
 * The layers are found exactly as status finds them (a peek), so a reset
 * touches nothing but this client's keys for this request.
 */
#include <stdio.h>

#include "ctl.h"

static int
rl2_ctl_reset_layers(const rl2_ctl_client_t *c, rl2_verdict_t *v,
                     rl2_store_t *store)
{
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
            rc = rl2_ctl_reset_layers(&c, &v, store);
        }
        rl2_ctl_stores_close(&s);
    }
    return rc;
}
