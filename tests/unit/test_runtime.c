/*
 * test_runtime.c -- what the runtime override table does to a decision
 * (decide/runtime.c), as an attacker and an operator see it: a target
 * written in another spelling of the same client, a boost that scales a
 * limit past what its algorithm computes, the emergency switch and the
 * allows in Apache's two phases.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratelimit2/overrides.h"
#include "base/shm_obj_internal.h"
#include "algo/algo_internal.h"

#include "rl2_decide_test.h"
#include "rl2_decide_table_test.h"
#include "control/control_internal.h"

#define POLICY \
    "whitelist = { users = [ \"alice\" ]; };\n" \
    "rules = ( { name = \"login\"; paths = [ \"/login\" ]; " \
    "limits = ( { rate = \"1/1h\"; key = \"ip\"; } ); }, " \
    "{ name = \"big\"; paths = [ \"/big\" ]; " \
    "limits = ( { rate = \"100000000/1h\"; algorithm = \"sliding_window\"; " \
    "key = \"ip\"; } ); }, " \
    "{ name = \"tb\"; paths = [ \"/tb\" ]; " \
    "limits = ( { rate = \"1000/1s\"; algorithm = \"token_bucket\"; " \
    "key = \"ip\"; } ); }, " \
    "{ name = \"fw\"; paths = [ \"/fw\" ]; " \
    "limits = ( { rate = \"10/1h\"; algorithm = \"fixed_window\"; " \
    "key = \"ip\"; } ); }, " \
    "{ name = \"gcra\"; paths = [ \"/gcra\" ]; " \
    "limits = ( { rate = \"10/1h\"; algorithm = \"token_bucket\"; " \
    "key = \"ip\"; } ); } );\n"

static int
setup(void **state)
{
    return setup_table(state, POLICY, "runtime");
}

static const rl2_clock_t now = { .mono_us = 1000 * RL2_US_PER_S,
                                 .wall_us = 1700000000 * RL2_US_PER_S };

static void
set(table_fixture_t *a, rl2_ovr_kind_t kind, const char *target,
    uint32_t factor_ppm)
{
    rl2_override_t o, before;
    rl2_err_t      err;

    memset(&o, 0, sizeof(o));
    if (rl2_override_target(a->base.policy, kind, target, &o, &err) != RL2_OK) {
        fail_msg("%s: %s", target, err.msg);
    }
    o.factor_ppm = factor_ppm;
    if (rl2_overrides_set(a->table, &o, &now, &before, &err) != RL2_OK) {
        fail_msg("%s: %s", target, err.msg);
    }
}

static void
decide(table_fixture_t *a, const char *path, const char *ip, const char *user,
       unsigned phase, rl2_verdict_t *v)
{
    rl2_request_t req = {
        .method = "GET", .path = path, .peer_ip = ip, .user = user
    };
    rl2_err_t err;

    if (rl2_decide(a->base.policy, NULL, 0, a->base.store, &req, phase, &now, v,
                   &err)
        != RL2_OK) {
        fail_msg("%s", err.msg);
    }
}

/* "::ffff:192.0.2.1" is how a dual-stack socket or a proxy may write an
 * IPv4 client, and requests from it count as 192.0.2.1 (identity.c): a
 * ban written so must refuse that client, and be listed in the one
 * spelling, not be a second entry no request can ever match. */
static void
test_mapped_ban(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;
    rl2_override_t   o;
    rl2_err_t        err;

    set(a, RL2_OVR_BAN, "::ffff:192.0.2.1", 0);
    rl2_verdict_init(&v);
    decide(a, "/x", "192.0.2.1", NULL, RL2_PHASE_ALL, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);
    rl2_verdict_init(&v);
    decide(a, "/x", "::ffff:192.0.2.1", NULL, RL2_PHASE_ALL, &v);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);

    /* A mapped network is the IPv4 network. */
    memset(&o, 0, sizeof(o));
    assert_int_equal(rl2_override_target(NULL, RL2_OVR_BAN,
                                         "::FFFF:198.51.100.77/120", &o, &err),
                     RL2_OK);
    assert_string_equal(o.target, "198.51.100.0/24");
    assert_int_equal(
        rl2_override_target(NULL, RL2_OVR_BAN, "::ffff:0:0/96", &o, &err),
        RL2_OK);
    assert_string_equal(o.target, "0.0.0.0/0");
    /* ... and the listed spelling is IPv4's. */
    assert_int_equal(rl2_overrides_list(a->table, RL2_OVR_BAN, &now, &o, 1), 1);
    assert_string_equal(o.target, "192.0.2.1");
}

/* A boost scales a limit at run time, past the checks the loader made on
 * it: 100,000,000 an hour is a sliding window the loader takes, but 100
 * times that overflows its arithmetic (limit * window), and the limit
 * then refused every request it was boosted to admit.  A scaled limit
 * must stay one its algorithm computes (and Redis exactly). */
static void
test_boost_stays_computable(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;
    rl2_err_t        err;

    set(a, RL2_OVR_BOOST, "*", 100 * RL2_OVR_FACTOR_ONE);
    rl2_verdict_init(&v);
    decide(a, "/big", "192.0.2.5", NULL, RL2_PHASE_ALL, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    assert_int_equal(v.n_layers, 1);
    assert_true(v.layers[0].limit->algo.limit > 100000000);
    assert_int_equal(rl2_algo_params_check(&v.layers[0].limit->algo, &err),
                     RL2_OK);

    /* A bucket of 1000/s boosted 1000 times would drain faster than one
     * unit per microsecond, which a bucket cannot. */
    set(a, RL2_OVR_BOOST, "*", 1000 * RL2_OVR_FACTOR_ONE);
    rl2_verdict_init(&v);
    decide(a, "/tb", "192.0.2.5", NULL, RL2_PHASE_ALL, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    assert_true(v.layers[0].limit->algo.limit > 1000);
    assert_int_equal(rl2_algo_params_check(&v.layers[0].limit->algo, &err),
                     RL2_OK);
}

/* Of n requests to path from ip at `at`, how many are admitted. */
static int
admitted_at(table_fixture_t *a, const char *path, const char *ip, int n,
            int64_t at_us)
{
    rl2_request_t req = { .method = "GET", .path = path, .peer_ip = ip };
    rl2_clock_t   t = { .mono_us = at_us, .wall_us = now.wall_us + at_us };
    rl2_verdict_t v;

    return table_admitted(a, &req, n, &t, 0, &v);
}

/* A factor that changes in the middle of a window (here a boost; the
 * adaptive factors scale the same way) neither refunds nor counts twice
 * (docs/algorithms.md, "Under a boost"): a fixed window of 10 keeps its
 * count; a bucket keeps the drain it owes in µs, so the share used. */
static void
test_factor_change_mid_window(void **state)
{
    table_fixture_t *a = *state;
    int64_t          t0 = now.mono_us, T2 = 180 * RL2_US_PER_S;

    /* fixed window: 4 of 10, then 1 more of 5 (x0.5), then 15 more of 20
     * (x2), then none at x1: 20 counted in a window of 10. */
    assert_int_equal(admitted_at(a, "/fw", "192.0.2.20", 4, t0), 4);
    set(a, RL2_OVR_BOOST, "*", RL2_OVR_FACTOR_ONE / 2);
    assert_int_equal(admitted_at(a, "/fw", "192.0.2.20", 5, t0), 1);
    set(a, RL2_OVR_BOOST, "*", 2 * RL2_OVR_FACTOR_ONE);
    assert_int_equal(admitted_at(a, "/fw", "192.0.2.20", 20, t0), 15);
    set(a, RL2_OVR_BOOST, "*", RL2_OVR_FACTOR_ONE);
    assert_int_equal(admitted_at(a, "/fw", "192.0.2.20", 3, t0), 0);

    /* bucket of 10 an hour (T = 360 s): 4 spent is 40% used; at x0.5
     * (5, T = 720 s) 40% is 2 of 5, so 3 more; full then, at x2 (20,
     * T = 180 s) it has no room, and refills one every 180 s. */
    set(a, RL2_OVR_BOOST, "*", RL2_OVR_FACTOR_ONE);
    assert_int_equal(admitted_at(a, "/gcra", "192.0.2.21", 4, t0), 4);
    set(a, RL2_OVR_BOOST, "*", RL2_OVR_FACTOR_ONE / 2);
    assert_int_equal(admitted_at(a, "/gcra", "192.0.2.21", 5, t0), 3);
    set(a, RL2_OVR_BOOST, "*", 2 * RL2_OVR_FACTOR_ONE);
    assert_int_equal(admitted_at(a, "/gcra", "192.0.2.21", 3, t0), 0);
    assert_int_equal(admitted_at(a, "/gcra", "192.0.2.21", 3, t0 + T2), 1);
}

/* Apache decides a request in two phases: the access phase before
 * authentication, without the user, then fixups with it.  Both phases go
 * to one verdict, and it must come out as the one decision of a front end
 * that knows everything at once (ratelimit2-fcgi). */
static void
decide_two_phases(table_fixture_t *a, const char *ip, const char *user,
                  rl2_verdict_t *v)
{
    rl2_verdict_init(v);
    decide(a, "/x", ip, NULL, RL2_PHASE_EARLY, v);
    decide(a, "/x", ip, user, RL2_PHASE_LATE, v);
}

/* The emergency switch's allow-list admits the whitelisted and the
 * allowed; a user is one only once known: refused in the access phase,
 * a whitelisted or allowed user was refused with 503 before logging in. */
static void
test_emergency_admits_users_in_two_phases(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;

    set(a, RL2_OVR_EMERGENCY, "*", 0);
    set(a, RL2_OVR_ALLOW, "user:carol", 0);
    rl2_verdict_init(&v);
    decide(a, "/x", "192.0.2.9", "alice", RL2_PHASE_ALL, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_BYPASS);

    decide_two_phases(a, "192.0.2.9", "alice", &v); /* policy whitelist */
    assert_int_equal(v.outcome, RL2_OUTCOME_BYPASS);
    decide_two_phases(a, "192.0.2.9", "carol", &v); /* runtime allow */
    assert_int_equal(v.outcome, RL2_OUTCOME_BYPASS);
    decide_two_phases(a, "192.0.2.9", "bob", &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    assert_int_equal(v.refusal, RL2_REFUSAL_EMERGENCY);
    decide_two_phases(a, "192.0.2.9", NULL, &v);
    assert_int_equal(v.refusal, RL2_REFUSAL_EMERGENCY);
}

/* A ban outranks an allow (rl2_runtime_client).  An allow by address
 * ended the decision in the access phase, so a banned user behind an
 * allowed network (an office, a VPN) was let through by Apache and
 * refused by ratelimit2-fcgi. */
static void
test_address_allow_keeps_user_ban(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;

    set(a, RL2_OVR_ALLOW, "192.0.2.0/24", 0);
    set(a, RL2_OVR_BAN, "user:mallory", 0);
    rl2_verdict_init(&v);
    decide(a, "/x", "192.0.2.9", "mallory", RL2_PHASE_ALL, &v);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);
    decide_two_phases(a, "192.0.2.9", "mallory", &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);
    decide_two_phases(a, "192.0.2.9", "alice", &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_BYPASS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mapped_ban, setup, teardown_table),
        cmocka_unit_test_setup_teardown(test_factor_change_mid_window, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_boost_stays_computable, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(
            test_emergency_admits_users_in_two_phases, setup, teardown_table),
        cmocka_unit_test_setup_teardown(test_address_allow_keeps_user_ban,
                                        setup, teardown_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
