/*
 * rl2_peek.c -- a test tool: what a request would meet in a live zone,
 * without counting it.  Prints one line per limit that applies:
 *   NAME LIMIT REMAINING allowed|refused
 *
 * usage: rl2_peek ZONE POLICY METHOD PATH IP [USER [TIER]]
 * POLICY is a policy file, or "-" for none.
 */
#include <stdio.h>
#include <stdlib.h>

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/store_local.h"

static int
fail(const char *what, const rl2_err_t *err)
{
    fprintf(stderr, "rl2_peek: %s: %s\n", what, err->msg);
    return 2;
}

int
main(int argc, char **argv)
{
    rl2_policy_t *policy;
    rl2_zone_t   *zone;
    rl2_store_t  *store;
    rl2_verdict_t v;
    rl2_request_t req = { 0 };
    rl2_clock_t   now;
    rl2_err_t     err;

    if (argc < 6) {
        fprintf(stderr, "usage: rl2_peek ZONE POLICY METHOD PATH IP "
                        "[USER [TIER]]\n");
        return 2;
    }
    if (rl2_config_load(argv[2], &policy, &err) != RL2_OK) {
        return fail("policy", &err);
    }
    if (rl2_zone_attach(argv[1], &zone, &err) != RL2_OK) {
        return fail("zone", &err);
    }
    if (rl2_store_local_create(zone, &store, &err) != RL2_OK) {
        return fail("store", &err);
    }
    req.method = argv[3];
    req.path = argv[4];
    req.peer_ip = argv[5];
    req.user = argc > 6 ? argv[6] : NULL;
    req.tier_var = argc > 7 ? argv[7] : NULL;
    if (policy->tier_variable == NULL) {
        policy->tier_variable = "RL2_TIER";
    }
    rl2_clock_now(&now);
    if (rl2_decide_peek(policy, NULL, 0, store, &req, &now, &v, &err)
        != RL2_OK) {
        return fail("peek", &err);
    }
    for (size_t i = 0; i < v.n_layers; i++) {
        const rl2_layer_t *l = &v.layers[i];

        printf("%s %lld %lld %s\n", l->limit->name, (long long)l->result.limit,
               (long long)l->result.remaining,
               l->refused ? "refused" : "allowed");
    }
    rl2_store_destroy(store);
    rl2_zone_close(zone);
    rl2_policy_free(policy);
    return 0;
}
