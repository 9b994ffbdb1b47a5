/*
 * test_explain.c -- one request's decision traced (decide/explain.c):
 * the rules and what matched them, the tier and its source (each of
 * override, clients entry, variable, default), a boost and the load
 * factor with the limit as written beside the limit as scaled, the
 * factor's scope per limit, the answer the same as rl2_decide's, and
 * nothing counted or moved: a decision after any number of explains
 * admits its full limit, and the load reading stays the servers'; the
 * schedule's window of now, from the clock alone.
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

#include "ratelimit2/explain.h"
#include "ratelimit2/overrides.h"
#include "base/shm_obj_internal.h"

#include "rl2_decide_test.h"
#include "rl2_decide_table_test.h"
#include "control/control_internal.h"

static char load_file[64];

static const rl2_clock_t now = { .mono_us = 1000 * RL2_US_PER_S,
                                 .wall_us = 1700000000 * RL2_US_PER_S };

static void
write_load(const char *text)
{
    FILE *f = fopen(load_file, "w");

    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int
setup(void **state)
{
    static char policy[2048];

    snprintf(load_file, sizeof(load_file), "/tmp/rl2test-%d-xload",
             (int)getpid());
    write_load("2.50 1.00 0.50 1/100 1234\n");
    snprintf(
        policy, sizeof(policy),
        "tiers = [ \"free\", \"pro\" ];\n"
        "default_tier = \"free\";\n"
        "tier_from = { variable = \"RL2_TIER\"; };\n"
        "clients = ( { user = \"alice\"; tier = \"pro\"; } );\n"
        "factors = { load = { source = \"%s\"; per_cpu = false;\n"
        "  steps = ( { above = 2.0; factor = 0.5; } );\n"
        "  rules = [ \"search\" ]; }; };\n"
        "rules = (\n"
        " { name = \"api\"; paths = [ \"/api/**\" ];\n"
        "   hosts = [ \"*.example.com\" ];\n"
        "   limits = ( { name = \"per_ip\"; rate = \"4/hour\"; key = \"ip\"; "
        "} );\n"
        "   tiers = { pro = ( { name = \"per_user\"; rate = \"40/hour\"; "
        "key = \"user\"; } ); }; },\n"
        " { name = \"search\"; paths = [ \"/search\", \"/find/*\" ];\n"
        "   limits = ( { name = \"q\"; rate = \"10/hour\"; } ); },\n"
        " { name = \"static\"; paths = [ \"/static/**\" ]; exempt = true; }\n"
        ");\n",
        load_file);
    return setup_table(state, policy, "explain");
}

static int
teardown_all(void **state)
{
    unlink(load_file);
    return teardown_table(state);
}

static rl2_request_t
request(const char *method, const char *path, const char *host,
        const char *user, const char *tier)
{
    rl2_request_t r = { .method = method,
                        .path = path,
                        .host = host,
                        .peer_ip = "192.0.2.7",
                        .user = user,
                        .tier_var = tier };

    return r;
}

static void
explain(table_fixture_t *a, const rl2_request_t *req, rl2_explain_t *x)
{
    rl2_err_t err;

    if (rl2_decide_explain(a->base.policy, a->base.store, req, &now, x, &err)
        != RL2_OK) {
        fail_msg("%s", err.msg);
    }
}

static void
set(table_fixture_t *a, rl2_ovr_kind_t kind, const char *target,
    uint32_t factor_ppm, const char *tier)
{
    rl2_override_t o, before;
    rl2_err_t      err;

    memset(&o, 0, sizeof(o));
    assert_int_equal(
        rl2_override_target(a->base.policy, kind, target, &o, &err), RL2_OK);
    o.factor_ppm = factor_ppm;
    if (tier != NULL) {
        snprintf(o.tier, sizeof(o.tier), "%s", tier);
    }
    assert_int_equal(rl2_overrides_set(a->table, &o, &now, &before, &err),
                     RL2_OK);
}

/* How many of n requests rl2_decide admits. */
static int
admitted(table_fixture_t *a, const rl2_request_t *req, int n)
{
    int       yes = 0;
    rl2_err_t err;

    for (int i = 0; i < n; i++) {
        rl2_verdict_t v;

        rl2_verdict_init(&v);
        assert_int_equal(rl2_decide(a->base.policy, NULL, 0, a->base.store, req,
                                    RL2_PHASE_ALL, &now, &v, &err),
                         RL2_OK);
        yes += v.outcome == RL2_OUTCOME_ALLOW;
    }
    return yes;
}

/* The rule, the glob of its paths and of its hosts that matched; a
 * request that meets no host glob meets no rule. */
static void
test_rules(void **state)
{
    table_fixture_t *a = *state;
    rl2_explain_t   *x = malloc(sizeof(*x));
    rl2_request_t    r =
        request("GET", "/api/v1/../orders", "shop.example.com", NULL, NULL);

    assert_non_null(x);
    explain(a, &r, x);
    assert_string_equal(x->path, "/api/orders");
    assert_int_equal(x->n_rules, 1);
    assert_string_equal(x->rules[0].rule->name, "api");
    assert_string_equal(x->rules[0].path, "/api/**");
    assert_string_equal(x->rules[0].host, "*.example.com");
    assert_int_equal(x->rules[0].mode, RL2_MODE_ENFORCE);
    assert_int_equal(x->v.n_layers, 1);
    assert_int_equal(x->v.outcome, RL2_OUTCOME_ALLOW);

    r = request("GET", "/api/orders", "example.org", NULL, NULL);
    explain(a, &r, x);
    assert_int_equal(x->n_rules, 0);
    assert_int_equal(x->v.n_layers, 0);
    assert_int_equal(x->v.outcome, RL2_OUTCOME_NONE);

    /* The second glob of a rule names itself. */
    r = request("GET", "/find/books", NULL, NULL, NULL);
    explain(a, &r, x);
    assert_int_equal(x->n_rules, 1);
    assert_string_equal(x->rules[0].path, "/find/*");

    r = request("GET", "/static/logo.png", NULL, NULL, NULL);
    explain(a, &r, x);
    assert_int_equal(x->exempt, 1);
    assert_int_equal(x->v.n_layers, 0);
    assert_int_equal(x->v.outcome, RL2_OUTCOME_BYPASS);
    free(x);
}

/* Each source of the tier, in rl2_decide's order: the runtime override
 * over the clients entry over the variable over the default. */
static void
test_tier_source(void **state)
{
    table_fixture_t *a = *state;
    rl2_explain_t   *x = malloc(sizeof(*x));
    rl2_request_t    r = request("GET", "/api/x", "a.example.com", NULL, NULL);

    assert_non_null(x);
    explain(a, &r, x);
    assert_int_equal(x->tier_from, RL2_TIER_FROM_DEFAULT);
    assert_string_equal(a->base.policy->tiers[x->v.tier].name, "free");
    assert_string_equal(rl2_tier_from_names[x->tier_from], "default");

    r = request("GET", "/api/x", "a.example.com", "bob", "pro");
    explain(a, &r, x);
    assert_int_equal(x->tier_from, RL2_TIER_FROM_VARIABLE);
    assert_string_equal(a->base.policy->tiers[x->v.tier].name, "pro");

    r = request("GET", "/api/x", "a.example.com", "alice", "free");
    explain(a, &r, x);
    assert_int_equal(x->tier_from, RL2_TIER_FROM_CLIENT);
    assert_string_equal(a->base.policy->clients[x->client].id, "alice");
    assert_string_equal(a->base.policy->tiers[x->v.tier].name, "pro");
    /* The pro tier's own limit, keyed by the user. */
    assert_int_equal(x->v.n_layers, 1);
    assert_string_equal(x->v.layers[0].limit->name, "per_user");

    set(a, RL2_OVR_TIER, "user:alice", 0, "free");
    explain(a, &r, x);
    assert_int_equal(x->tier_from, RL2_TIER_FROM_OVERRIDE);
    assert_int_equal(x->tier_override, x->v.tier);
    assert_string_equal(a->base.policy->tiers[x->v.tier].name, "free");
    free(x);
}

/* A boost of the rule: the limit as written beside the scaled one, x2;
 * the load factor, out of this rule's scope, scales it not. */
static void
test_boost(void **state)
{
    table_fixture_t *a = *state;
    rl2_explain_t   *x = malloc(sizeof(*x));
    rl2_request_t    r = request("GET", "/api/x", "a.example.com", NULL, NULL);

    assert_non_null(x);
    set(a, RL2_OVR_BOOST, "rule:api", 2000000, NULL);
    explain(a, &r, x);
    assert_int_equal(x->v.n_layers, 1);
    assert_int_equal(x->layers[0].limit->algo.limit, 4);
    assert_int_equal(x->layers[0].boost_ppm, 2000000);
    assert_int_equal(x->layers[0].factors, 0);
    assert_int_equal(x->v.layers[0].limit->algo.limit, 8);
    /* Peeked: nothing counted, however often asked. */
    for (int i = 0; i < 20; i++) {
        explain(a, &r, x);
    }
    assert_int_equal(admitted(a, &r, 10), 8);
    explain(a, &r, x);
    assert_int_equal(x->v.outcome, RL2_OUTCOME_DENY);
    assert_int_equal(x->v.refusal, RL2_REFUSAL_LIMIT);
    assert_int_equal(x->v.shown, 0);
    free(x);
}

/* The load factor before any server read it: what the file reads, the
 * step a first reading enters, applied to the rule in its scope; the
 * servers' reading is not taken (it is still to come), and once a
 * decision took it, that reading is the one explained. */
static void
test_load(void **state)
{
    table_fixture_t *a = *state;
    rl2_explain_t   *x = malloc(sizeof(*x));
    rl2_request_t    r = request("GET", "/search", NULL, NULL, NULL);
    uint32_t         ppm;

    assert_non_null(x);
    explain(a, &r, x);
    assert_int_equal(x->v.factor_ppm[RL2_FACTOR_LOAD], 500000);
    assert_int_equal(x->load_read, 0);
    assert_int_equal(x->load_milli, 2500);
    assert_int_equal(x->load_step, 0);
    assert_int_equal(x->layers[0].factors, 1u << RL2_FACTOR_LOAD);
    assert_int_equal(x->layers[0].limit->algo.limit, 10);
    assert_int_equal(x->v.layers[0].limit->algo.limit, 5);
    assert_int_equal(rl2_overrides_load_factor(a->table, &ppm), 0);

    /* A decision reads the load; explain then shows that reading, not
     * the file (which has changed since, within the hold). */
    assert_int_equal(admitted(a, &r, 1), 1);
    write_load("0.10 0.10 0.10 1/100 1234\n");
    explain(a, &r, x);
    assert_int_equal(x->load_read, 1);
    assert_int_equal(x->load_milli, 2500);
    assert_int_equal(x->v.factor_ppm[RL2_FACTOR_LOAD], 500000);
    assert_int_equal(x->v.layers[0].result.remaining + 1, 4);
    free(x);
}

/* A ban refuses before any rule, with the policy's ban status and a
 * Retry-After of the ban's time left; an allow lets through. */
static void
test_ban_allow(void **state)
{
    table_fixture_t *a = *state;
    rl2_explain_t   *x = malloc(sizeof(*x));
    rl2_request_t    r = request("GET", "/search", NULL, NULL, NULL);

    assert_non_null(x);
    set(a, RL2_OVR_ALLOW, "192.0.2.0/24", 0, NULL);
    explain(a, &r, x);
    assert_int_equal(x->allowed, 1);
    assert_int_equal(x->v.outcome, RL2_OUTCOME_BYPASS);
    set(a, RL2_OVR_BAN, "192.0.2.7", 0, NULL);
    explain(a, &r, x);
    assert_int_equal(x->banned, 1);
    assert_int_equal(x->v.outcome, RL2_OUTCOME_DENY);
    assert_int_equal(x->v.refusal, RL2_REFUSAL_BAN);
    assert_int_equal(x->v.refusal_retry_s, 86400);
    free(x);
}

static int
setup_schedule(void **state)
{
    snprintf(load_file, sizeof(load_file), "/tmp/rl2test-%d-xload",
             (int)getpid());
    write_load("0\n");
    return setup_table(
        state,
        "factors = { schedule = { zone = \"UTC\"; windows = (\n"
        "  { when = \"Mon 00:00-01:00\"; factor = 2; },\n"
        "  { when = \"Tue 22:00-23:00\"; factor = 0.5; } ); }; };\n"
        "rules = ( { name = \"a\"; paths = [ \"/a\" ];\n"
        "  limits = ( { rate = \"10/hour\"; } ); } );\n",
        "explain-sched");
}

/* The schedule: the window that holds now (Tuesday 22:13 UTC) by its
 * index, its factor on the limit; the clock alone, no table state. */
static void
test_schedule(void **state)
{
    table_fixture_t *a = *state;
    rl2_explain_t   *x = malloc(sizeof(*x));
    rl2_request_t    r = request("GET", "/a", NULL, NULL, NULL);
    uint32_t         ppm;

    assert_non_null(x);
    explain(a, &r, x);
    assert_int_equal(x->sched_window, 1);
    assert_int_equal(x->v.factor_ppm[RL2_FACTOR_SCHEDULE], 500000);
    assert_int_equal(x->v.factor_ppm[RL2_FACTOR_LOAD], 0);
    assert_int_equal(x->layers[0].factors, 1u << RL2_FACTOR_SCHEDULE);
    assert_int_equal(x->v.layers[0].limit->algo.limit, 5);
    assert_int_equal(rl2_overrides_schedule_factor(a->table, &ppm), 0);
    free(x);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rules, setup, teardown_all),
        cmocka_unit_test_setup_teardown(test_tier_source, setup, teardown_all),
        cmocka_unit_test_setup_teardown(test_boost, setup, teardown_all),
        cmocka_unit_test_setup_teardown(test_load, setup, teardown_all),
        cmocka_unit_test_setup_teardown(test_ban_allow, setup, teardown_all),
        cmocka_unit_test_setup_teardown(test_schedule, setup_schedule,
                                        teardown_all),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
