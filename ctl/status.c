/*
 * status.c -- ratelimit2ctl status KEY: what the client has used and has
 * left under every limit that applies to one request, read with the
 * store's peek (nothing is counted, no key is created).  REMAINING is
 * what is left now, the value the client's last X-RateLimit-Remaining
 * header showed (a window or bucket may have refilled since).  With -R the
 * answer comes from Redis, as the servers see it while the circuit is
 * closed; otherwise from the local zone.
 */
#include <inttypes.h>
#include <stdio.h>

#include "ctl.h"

static void
rl2_ctl_status_print(const rl2_ctl_client_t *c, const rl2_verdict_t *v,
                     const rl2_policy_t *policy, const char *store)
{
    printf("client %s  request %s %s  tier %s  store %s  verdict %s\n",
           c->label, c->req.method, c->req.path,
           v->tier >= 0 ? policy->tiers[v->tier].name : "-", store,
           v->outcome == RL2_OUTCOME_DENY     ? "refused"
           : v->outcome == RL2_OUTCOME_BYPASS ? "whitelisted or exempt"
           : v->outcome == RL2_OUTCOME_NONE   ? "no limit applies"
                                              : "allowed");
    if (v->n_layers == 0) {
        return;
    }
    printf("%-20s %-24s %-22s %8s %8s %9s %8s %s\n", "RULE", "LIMIT", "KEY",
           "LIMIT", "USED", "REMAINING", "RESET_S", "STATE");
    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_layer_t       *l = &v->layers[i];
        const rl2_algo_result_t *res = &l->result;
        int64_t                  left;

        if (!rl2_ctl_layer_mine(c, l)) {
            continue;
        }
        /* A peek answers as if the request were counted: what is left
         * now, as the client's last X-RateLimit-Remaining said, is one
         * request's cost more. */
        left = res->allowed ? res->remaining + l->limit->cost : res->remaining;
        left = left > res->limit ? res->limit : left;
        printf("%-20s %-24s %-22s %8" PRId64 " %8" PRId64 " %9" PRId64
               " %8" PRId64 " %s\n",
               l->rule != NULL ? l->rule->name : "-", l->limit->name, l->client,
               res->limit, res->limit - left, left,
               (res->reset_us + 999999) / RL2_US_PER_S,
               l->limit->unlimited ? "unlimited"
               : l->refused        ? "refused"
                                   : "allowed");
    }
}

int
rl2_ctl_status(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    const rl2_policy_t *policy = o->policy_loaded;
    rl2_ctl_client_t    c;
    rl2_ctl_stores_t    s;
    rl2_store_t        *store;
    rl2_verdict_t       v;
    rl2_clock_t         now;
    rl2_err_t           err;
    int                 rc;

    if (argc != 1) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: status KEY");
    }
    if ((rc = rl2_ctl_client(o, policy, argv[0], &c)) == RL2_CTL_OK
        && (rc = rl2_ctl_stores_open(o, 0, &s)) == RL2_CTL_OK) {
        store = s.redis != NULL ? s.redis : s.local;
        rl2_clock_now(&now);
        if (rl2_decide_peek(policy, NULL, 0, store, &c.req, &now, &v, &err)
            != RL2_OK) {
            rc = rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
        }
        else {
            rl2_ctl_status_print(&c, &v, policy, store->ops->name);
        }
        rl2_ctl_stores_close(&s);
    }
    return rc;
}
