/*
 * test_factor_reputation.c -- the reputation factor (policy
 * factors.reputation, decide/reputation.c): the loader's errors with
 * file:line; the mapping from a history to a factor; a client whose
 * refusals lower its factor step by step, to exact values, after a good
 * client's bonus; an automatic ban that takes it to `low`; refusals by a
 * shared (global) limit or a dry_run one, and requests a client sends
 * in another's name (X-Forwarded-For from an untrusted peer), that do
 * not lower it; requests only a shared limit met, which do not raise
 * it; Apache's two phases counting a request once, also through the
 * verdict's copy; threads counting one client exactly; all on the local
 * zone, and two stores on one Redis that agree on a client's factor.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratelimit2/overrides.h"
#include "base/shm_obj_internal.h"

#define TEST_CONF_FILE "r.conf"
#include "rl2_config_test.h"
#include "rl2_decide_test.h"
#include "rl2_decide_table_test.h"
#include "rl2_redis_test.h"
#include "decide/decide_internal.h"

#define REP RL2_FACTOR_REPUTATION

/* Limit 10 an hour per address on /api, per user on /acct, 1 an hour
 * for everyone on /search, 1 an hour per address on /dry in dry_run; a
 * history counts from 4 requests. */
#define POLICY \
    "trusted_proxies = [ \"127.0.0.1\" ];\n" \
    "rules = ( { name = \"api\"; paths = [ \"/api\" ]; " \
    "limits = ( { rate = \"10/1h\"; key = \"ip\"; } ); }, " \
    "{ name = \"acct\"; paths = [ \"/acct\" ]; " \
    "limits = ( { rate = \"10/1h\"; key = \"ip\"; }, " \
    "{ rate = \"3/1h\"; key = \"user\"; } ); }, " \
    "{ name = \"search\"; paths = [ \"/search\" ]; " \
    "limits = ( { rate = \"1/1h\"; key = \"global\"; } ); }, " \
    "{ name = \"dry\"; paths = [ \"/dry\" ]; mode = \"dry_run\"; " \
    "limits = ( { rate = \"1/1h\"; key = \"ip\"; } ); } );\n" \
    "factors = { reputation = { min_requests = 4; }; };\n"

#define POLICY_ABUSE "abuse = { denials = \"2/1min\"; ban = \"1s\"; };\n" POLICY

/* 100 s into a 10-minute window and 500 s before the end of an hour:
 * every test stays in both.  Ahead of the real clock, so that Redis does
 * not expire the keys the store sets to expire at the window's end. */
#define T0_S 1900000300LL

static const char *
xff_header(void *ctx, const char *name)
{
    return strcasecmp(name, "X-Forwarded-For") == 0 ? ctx : NULL;
}

/* One request from peer (naming xff when not NULL) at T0 + at_s, in the
 * given phases on verdict v (initialised when phases has the early
 * one). */
static void
request_as(rl2_policy_t *p, rl2_store_t *store, const char *path,
           const char *peer, const char *xff, const char *user, unsigned phases,
           int64_t at_s, rl2_verdict_t *v)
{
    rl2_request_t req = { .method = "GET",
                          .path = path,
                          .peer_ip = peer,
                          .user = user,
                          .header = xff != NULL ? xff_header : NULL,
                          .header_ctx = (void *)xff };
    rl2_clock_t   now = { .mono_us = (1000 + at_s) * RL2_US_PER_S,
                          .wall_us = (T0_S + at_s) * RL2_US_PER_S };
    rl2_err_t     err;

    if (phases & RL2_PHASE_EARLY) {
        rl2_verdict_init(v);
    }
    assert_int_equal(rl2_decide(p, NULL, 0, store, &req, phases, &now, v, &err),
                     RL2_OK);
}

static void
request(table_fixture_t *a, const char *path, const char *peer,
        rl2_verdict_t *v)
{
    request_as(a->base.policy, a->base.store, path, peer, NULL, NULL,
               RL2_PHASE_ALL, 0, v);
}

static int
setup(void **state)
{
    return setup_table(state, POLICY, "rep");
}

static int
setup_abuse(void **state)
{
    return setup_table(state, POLICY_ABUSE, "repab");
}

static void
test_config_errors(void **state)
{
    (void)state;
    expect_fail("factors = { reputation = {\n speed = 2; }; };\n", "e.conf", 2,
                "unknown key 'speed'");
    expect_fail("factors = { reputation = {\n window = \"ten\"; }; };\n",
                "e.conf", 2, "'window'");
    expect_fail("factors = { reputation = {\n window = \"2d\"; }; };\n",
                "e.conf", 2, "from 1s to 24h");
    expect_fail("factors = { reputation = {\n min_requests = 0; }; };\n",
                "e.conf", 2, "'min_requests' must be from 1 to 1000000");
    expect_fail("factors = { reputation = {\n low = 0; }; };\n", "e.conf", 2,
                "'low' must be from 0.001 to 1000");
    expect_fail("factors = { reputation = {\n high = \"x\"; }; };\n", "e.conf",
                2, "'high' must be a number");
    expect_fail("factors = { reputation = { high = 0.6;\n low = 0.8; }; };\n",
                "e.conf", 2, "'low' is more than 'high'");
    expect_fail("factors = { reputation = {\n max = 1.1; }; };\n", "e.conf", 1,
                "'good' (1.2) must be within 'min' and 'max'");
    expect_fail("factors = { reputation = { min = 0.6;\n low = 0.5; }; };\n",
                "e.conf", 2, "'low' (0.5) must be within 'min' and 'max'");
    expect_fail("factors = { reputation = {\n rules = [ \"nope\" ]; }; };\n",
                "e.conf", 2, "'nope' names no rule of the policy");
    expect_fail("overrides = { enabled = false; };\nfactors = {\n reputation "
                "= { }; };\n",
                "e.conf", 3, "needs the runtime override table");
}

/* r = 1 - refusals / requests from min_requests on; low + (high - low)
 * x r; good without a refusal; low after a ban. */
static void
test_mapping(void **state)
{
    rl2_policy_t *p =
        load_ok("factors = { reputation = { window = \"1h\"; }; };\n");
    rl2_policy_t *q =
        load_ok("factors = { reputation = { low = 0.2; high = 2; good = 3; "
                "min_requests = 1; }; };\n");
    const rl2_reputation_conf_t *rc = &p->reputation;

    (void)state;
    assert_int_equal(rc->window_us, 3600 * RL2_US_PER_S);
    assert_int_equal(rc->min_requests, 10);
    assert_int_equal(rl2_reputation_of(rc, 0, 0, 0), 1000000);
    assert_int_equal(rl2_reputation_of(rc, 9, 9, 0), 1000000);
    assert_int_equal(rl2_reputation_of(rc, 10, 0, 0), 1200000);
    assert_int_equal(rl2_reputation_of(rc, 10, 1, 0), 950000);
    assert_int_equal(rl2_reputation_of(rc, 10, 5, 0), 750000);
    assert_int_equal(rl2_reputation_of(rc, 10, 10, 0), 500000);
    assert_int_equal(rl2_reputation_of(rc, 10, 11, 0), 500000);
    assert_int_equal(rl2_reputation_of(rc, 3, 7, 0), 1000000);
    assert_int_equal(rl2_reputation_of(rc, 0, 0, 1), 500000);
    assert_int_equal(rl2_reputation_of(rc, 100, 0, 1), 500000);
    assert_int_equal(rl2_reputation_of(&q->reputation, 1, 0, 0), 3000000);
    assert_int_equal(rl2_reputation_of(&q->reputation, 4, 1, 0), 1550000);
    assert_int_equal(rl2_reputation_of(&q->reputation, 4, 4, 0), 200000);
    rl2_policy_free(p);
    rl2_policy_free(q);
}

/* A client with no history is x1 for 4 requests, then x1.2 (no refusal:
 * 12 admitted of the limit of 10), and each refusal after lowers it:
 * 1 - 1/13, 2/14, 3/15 and 4/16 of the way from x0.5 to x1, which the
 * limit follows (x0.96 of 10 is 9). */
static void
test_refusals_lower_step_by_step(void **state)
{
    table_fixture_t      *a = *state;
    static const uint32_t want[] = { 1000000, 1000000, 1000000, 1000000,
                                     1200000, 1200000, 1200000, 1200000,
                                     1200000, 1200000, 1200000, 1200000,
                                     1200000, 961538,  928571,  900000,
                                     875000 };
    rl2_verdict_t         v;
    int                   admitted = 0;

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        request(a, "/api", "192.0.2.10", &v);
        if (v.factor_ppm[REP] != want[i]) {
            fail_msg("request %zu: factor %u, want %u", i, v.factor_ppm[REP],
                     want[i]);
        }
        assert_int_equal(v.layers[0].limit->algo.limit,
                         (int64_t)10 * want[i] / 1000000);
        admitted += v.outcome == RL2_OUTCOME_ALLOW;
    }
    assert_int_equal(admitted, 12);
    /* Another client is untouched. */
    request(a, "/api", "192.0.2.11", &v);
    assert_int_equal(v.factor_ppm[REP], 1000000);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
}

/* The refusals of a limit everyone shares (global) are no evidence
 * against a client, nor are the requests themselves (no limit of its
 * own judged them): after 4 refused ones it is at x1, no evidence,
 * neither lowered nor good.  Its own limit's requests then count. */
static void
test_shared_refusals_do_not_count(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;

    request(a, "/search", "192.0.2.20", &v); /* spends the global limit */
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    for (int i = 0; i < 4; i++) {
        request(a, "/search", "192.0.2.21", &v);
        assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
        assert_int_equal(v.factor_ppm[REP], 1000000);
    }
    request(a, "/search", "192.0.2.21", &v);
    assert_int_equal(v.factor_ppm[REP], 1000000);
    for (int i = 0; i < 5; i++) {
        request(a, "/api", "192.0.2.21", &v);
        assert_int_equal(v.factor_ppm[REP], i < 4 ? 1000000 : 1200000);
    }
}

/* A dry_run rule judges no one: 5 requests over its limit of 1 are no
 * evidence, neither lowered nor good. */
static void
test_dry_run_refusals_do_not_count(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;

    for (int i = 0; i < 5; i++) {
        request(a, "/dry", "192.0.2.25", &v);
        assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
        assert_int_equal(v.factor_ppm[REP], 1000000);
    }
    assert_true(v.layers[0].refused && v.layers[0].dry_run);
}

/* A client refused by its own limit cannot launder its history with
 * requests only a shared limit judges (here refused by the global one,
 * which costs it nothing): they are no evidence, and its factor stays. */
static void
test_shared_requests_do_not_launder(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;
    uint32_t         before;

    for (int i = 0; i < 16; i++) {
        request(a, "/api", "192.0.2.26", &v);
    }
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    before = v.factor_ppm[REP];
    assert_true(before < 1000000);
    request(a, "/search", "192.0.2.27", &v); /* spends the global limit */
    for (int i = 0; i < 40; i++) {
        request(a, "/search", "192.0.2.26", &v);
        assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    }
    request(a, "/api", "192.0.2.26", &v);
    assert_true(v.factor_ppm[REP] < before);
}

/* Requests an untrusted peer sends naming another client in
 * X-Forwarded-For count against the peer: the named client keeps its
 * good history; the same header from the trusted proxy names it. */
static void
test_no_one_lowers_another(void **state)
{
    table_fixture_t *a = *state;
    rl2_policy_t    *p = a->base.policy;
    rl2_store_t     *s = a->base.store;
    rl2_verdict_t    v;

    for (int i = 0; i < 4; i++) {
        request_as(p, s, "/api", "127.0.0.1", "192.0.2.30", NULL, RL2_PHASE_ALL,
                   0, &v);
        assert_string_equal(v.client_ip, "192.0.2.30");
    }
    for (int i = 0; i < 14; i++) {
        request_as(p, s, "/api", "198.51.100.9", "192.0.2.30", NULL,
                   RL2_PHASE_ALL, 0, &v);
        assert_string_equal(v.client_ip, "198.51.100.9");
    }
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    assert_true(v.factor_ppm[REP] < 1000000);
    request_as(p, s, "/api", "127.0.0.1", "192.0.2.30", NULL, RL2_PHASE_ALL, 0,
               &v);
    assert_int_equal(v.factor_ppm[REP], 1200000);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
}

/* Apache decides in two phases on one verdict: the request is read and
 * counted once (counted twice, the 3rd would have 4 behind it and the
 * bonus), and a refusal of the late phase (the user's limit of 3, the
 * 4th request) counts: the 5th has 1 of 4 refused behind it, the 6th 2
 * of 5. */
static void
test_two_phases_count_once(void **state)
{
    table_fixture_t      *a = *state;
    rl2_policy_t         *p = a->base.policy;
    rl2_store_t          *s = a->base.store;
    static const uint32_t want[] = { 1000000, 1000000, 1000000,
                                     1000000, 875000,  800000 };
    rl2_verdict_t         v;

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        request_as(p, s, "/acct", "192.0.2.40", NULL, NULL, RL2_PHASE_EARLY, 0,
                   &v);
        assert_int_equal(v.factor_ppm[REP], want[i]);
        request_as(p, s, "/acct", "192.0.2.40", NULL, "alice", RL2_PHASE_LATE,
                   0, &v);
        assert_int_equal(v.factor_ppm[REP], want[i]);
        /* Alice's 3 at x1, then at x0.875 and x0.8: 2. */
        assert_int_equal(v.outcome,
                         i < 3 ? RL2_OUTCOME_ALLOW : RL2_OUTCOME_DENY);
    }
}

/* As Apache keeps it between its phases: the early verdict copied
 * (rl2_verdict_copy), the original overwritten, the late phase on the
 * copy.  The factor travels with the copy, the scaled limits with it,
 * and the request is still read and counted once. */
static void
test_two_phases_through_a_copy(void **state)
{
    table_fixture_t      *a = *state;
    rl2_policy_t         *p = a->base.policy;
    rl2_store_t          *s = a->base.store;
    static const uint32_t want[] = { 1000000, 1000000, 1000000,
                                     1000000, 875000,  800000 };
    rl2_verdict_t         v, *w = malloc(sizeof(*w));

    assert_non_null(w);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        request_as(p, s, "/acct", "192.0.2.41", NULL, NULL, RL2_PHASE_EARLY, 0,
                   &v);
        rl2_verdict_copy(w, &v);
        memset(&v, 0xa5, sizeof(v));
        assert_int_equal(w->factor_ppm[REP], want[i]);
        request_as(p, s, "/acct", "192.0.2.41", NULL, "alice", RL2_PHASE_LATE,
                   0, w);
        assert_int_equal(w->factor_ppm[REP], want[i]);
        for (size_t j = 0; j < w->n_layers; j++) {
            assert_true(w->layers[j].limit->name != NULL);
            assert_int_equal(w->layers[j].limit->algo.limit,
                             (j == 0 ? 10 : 3) * (int64_t)want[i] / 1000000);
        }
        assert_int_equal(w->outcome,
                         i < 3 ? RL2_OUTCOME_ALLOW : RL2_OUTCOME_DENY);
    }
    free(w);
}

/* Threads of one process (Apache's event MPM) counting one client at
 * once: 4 x 50 requests, of which the admitted ones vary with the
 * factor as it falls; the 201st finds exactly 200 requests and the
 * refusals among them behind it. */
typedef struct {
    table_fixture_t *a;
    int              admitted;
} race_t;

static void *
race(void *arg)
{
    race_t       *r = arg;
    rl2_request_t req = { .method = "GET",
                          .path = "/api",
                          .peer_ip = "192.0.2.60" };
    rl2_clock_t   now = { .mono_us = 1000 * RL2_US_PER_S,
                          .wall_us = T0_S * RL2_US_PER_S };
    rl2_verdict_t v;
    rl2_err_t     err;

    for (int i = 0; i < 50; i++) {
        rl2_verdict_init(&v);
        if (rl2_decide(r->a->base.policy, NULL, 0, r->a->base.store, &req,
                       RL2_PHASE_ALL, &now, &v, &err)
            != RL2_OK) {
            r->admitted = -1000;
            break;
        }
        r->admitted += v.outcome == RL2_OUTCOME_ALLOW;
    }
    return NULL;
}

static void
test_threads_count_exactly(void **state)
{
    table_fixture_t *a = *state;
    pthread_t        th[4];
    race_t           r[4];
    rl2_verdict_t    v;
    int              admitted = 0;

    for (int i = 0; i < 4; i++) {
        r[i].a = a;
        r[i].admitted = 0;
        assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        admitted += r[i].admitted;
    }
    assert_true(admitted >= 5 && admitted <= 12);
    request(a, "/api", "192.0.2.60", &v);
    assert_int_equal(
        v.factor_ppm[REP],
        rl2_reputation_of(&a->base.policy->reputation, 200, 200 - admitted, 0));
}

/* A client banned automatically is at `low` once the ban is over, for
 * the rest of the window, whatever its other history. */
static void
test_ban_takes_it_to_low(void **state)
{
    table_fixture_t *a = *state;
    rl2_policy_t    *p = a->base.policy;
    rl2_store_t     *s = a->base.store;
    rl2_verdict_t    v;
    int              banned = 0;

    /* 12 admitted at x1.2, then refusals until the third bans. */
    for (int i = 0; i < 15 && !banned; i++) {
        request_as(p, s, "/api", "192.0.2.50", NULL, NULL, RL2_PHASE_ALL, 0,
                   &v);
        banned = v.banned;
    }
    assert_true(banned);
    request_as(p, s, "/api", "192.0.2.50", NULL, NULL, RL2_PHASE_ALL, 0, &v);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);
    request_as(p, s, "/api", "192.0.2.50", NULL, NULL, RL2_PHASE_ALL, 5, &v);
    assert_int_equal(v.refusal, RL2_REFUSAL_LIMIT);
    assert_int_equal(v.factor_ppm[REP], 500000);
    assert_int_equal(v.layers[0].limit->algo.limit, 5);
}

/* Two hosts (two stores) on one Redis, taking a client's requests in
 * turn: they share its counts (12 admitted of 10 x 1.2 between them),
 * and each reads the history the other wrote: 14 requests with 2
 * refused for the first, then 15 with 3 for the second. */
static void
test_redis_hosts_agree(void **state)
{
    table_fixture_t *a = *state;
    rl2_policy_t    *p = a->base.policy;
    rl2_store_t     *one, *two;
    rl2_verdict_t    v, w;

    srv_up();
    one = mk_store(&srv, 1);
    two = mk_store(&srv, 1);
    for (int i = 0; i < 14; i++) {
        request_as(p, i % 2 ? one : two, "/api", "192.0.2.60", NULL, NULL,
                   RL2_PHASE_ALL, 0, &v);
    }
    request_as(p, one, "/api", "192.0.2.60", NULL, NULL, RL2_PHASE_ALL, 0, &v);
    request_as(p, two, "/api", "192.0.2.60", NULL, NULL, RL2_PHASE_ALL, 0, &w);
    assert_int_equal(v.factor_ppm[REP], 928571);
    assert_int_equal(w.factor_ppm[REP], 500000 + 500000 * 12 / 15);
    rl2_store_destroy(one);
    rl2_store_destroy(two);
    srv_down();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_mapping),
        cmocka_unit_test_setup_teardown(test_refusals_lower_step_by_step, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_dry_run_refusals_do_not_count,
                                        setup, teardown_table),
        cmocka_unit_test_setup_teardown(test_shared_requests_do_not_launder,
                                        setup, teardown_table),
        cmocka_unit_test_setup_teardown(test_shared_refusals_do_not_count,
                                        setup, teardown_table),
        cmocka_unit_test_setup_teardown(test_no_one_lowers_another, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_two_phases_through_a_copy, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_threads_count_exactly, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_two_phases_count_once, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_ban_takes_it_to_low, setup_abuse,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_redis_hosts_agree, setup,
                                        teardown_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
