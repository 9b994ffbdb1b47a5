/*
 * test_factor_scope.c -- where an adaptive factor applies (a factor
 * group's `rules` and `tiers`, decide/runtime.c) and how it is shown:
 * a schedule factor that always holds scales only the limits of the
 * rules and tiers it names, exactly; names the policy lacks are errors
 * with file:line; X-RateLimit-Factors (headers.factors) lists each
 * factor on, and the violation log's entry carries the same list.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ratelimit2/headers.h"
#include "ratelimit2/overrides.h"
#include "ratelimit2/violation_log.h"
#include "base/shm_obj_internal.h"

#define TEST_CONF_FILE "s.conf"
#include "rl2_config_test.h"
#include "rl2_decide_test.h"
#include "rl2_decide_table_test.h"
#include "control/control_internal.h"
#include "decide/decide_internal.h"
#include "obs/violation_log_internal.h"
#include "algo/algo_internal.h"

/* Two rules, two tiers from a variable; a window of x0.5 that always
 * holds, for rule "api" and tier "free" only. */
static const char scoped_policy[] =
    "tiers = ( { name = \"free\"; }, { name = \"pro\"; } );\n"
    "tier_from = { variable = \"TIER\"; };\n"
    "headers = { factors = true; };\n"
    "rules = ( { name = \"api\"; paths = [ \"/api\" ];\n"
    "            limits = ( { rate = \"10/1h\"; key = \"ip\"; } ); },\n"
    "          { name = \"web\"; paths = [ \"/web\" ];\n"
    "            limits = ( { rate = \"10/1h\"; key = \"ip\"; } ); } );\n"
    "factors = { schedule = { zone = \"UTC\"; rules = [ \"api\" ];\n"
    "  tiers = \"free\"; windows = ( { when = \"*\"; factor = 0.5; } ); }; "
    "};\n";

static int
setup(void **state)
{
    return setup_table(state, scoped_policy, "scope");
}

/* How many of 14 requests of client ip to path with tier (NULL: none)
 * are admitted; *v is the last verdict. */
static int
admitted(table_fixture_t *a, const char *path, const char *ip, const char *tier,
         rl2_verdict_t *v)
{
    rl2_request_t req = {
        .method = "GET", .path = path, .peer_ip = ip, .tier_var = tier
    };
    rl2_clock_t now = { .mono_us = 9000 * RL2_US_PER_S,
                        .wall_us = 1790000000 * RL2_US_PER_S };

    return table_admitted(a, &req, 14, &now, 0, v);
}

/* Only rule api's limit of a free client is halved; the factor's value
 * is on the verdict either way (the client's factor, the scope aside). */
static void
test_scope(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;

    rl2_policy_free(load_ok(scoped_policy)); /* the policy loads alone */
    assert_int_equal(admitted(a, "/api", "192.0.2.1", "free", &v), 5);
    assert_int_equal(v.factor_ppm[RL2_FACTOR_SCHEDULE], 500000);
    assert_int_equal(v.factor_ppm[RL2_FACTOR_LOAD], 0);
    assert_int_equal(admitted(a, "/web", "192.0.2.2", "free", &v), 10);
    assert_int_equal(admitted(a, "/api", "192.0.2.3", "pro", &v), 10);
    /* A client no source names a tier for is of the default tier, the
     * first: free. */
    assert_int_equal(admitted(a, "/api", "192.0.2.4", NULL, &v), 5);
    assert_int_equal(v.factor_ppm[RL2_FACTOR_SCHEDULE], 500000);
}

/* An override of kind on target at the time admitted() decides:
 * a tier (tier != NULL) or a boost (ppm). */
static void
override(table_fixture_t *a, rl2_ovr_kind_t kind, const char *target,
         const char *tier, uint32_t ppm)
{
    rl2_override_t o, before;
    rl2_clock_t    now = { .mono_us = 9000 * RL2_US_PER_S,
                           .wall_us = 1790000000 * RL2_US_PER_S };
    rl2_err_t      err;

    memset(&o, 0, sizeof(o));
    assert_int_equal(
        rl2_override_target(a->base.policy, kind, target, &o, &err), RL2_OK);
    o.created_us = now.wall_us - RL2_US_PER_S;
    snprintf(o.author, sizeof(o.author), "tester");
    if (tier != NULL) {
        snprintf(o.tier, sizeof(o.tier), "%s", tier);
    }
    o.factor_ppm = ppm;
    assert_int_equal(rl2_overrides_set(a->table, &o, &now, &before, &err),
                     RL2_OK);
}

/* A tier a runtime override names is the tier the scope asks about,
 * whatever the client's variable says; a boost and the factor multiply
 * (x1.6 x0.5: 8 of 10). */
static void
test_override_tier_and_boost(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;

    override(a, RL2_OVR_TIER, "192.0.2.20", "pro", 0);
    assert_int_equal(admitted(a, "/api", "192.0.2.20", "free", &v), 10);
    override(a, RL2_OVR_TIER, "192.0.2.21", "free", 0);
    assert_int_equal(admitted(a, "/api", "192.0.2.21", "pro", &v), 5);
    override(a, RL2_OVR_BOOST, "rule:api", NULL, 1600000);
    assert_int_equal(admitted(a, "/api", "192.0.2.22", "free", &v), 8);
    assert_int_equal(admitted(a, "/api", "192.0.2.23", "pro", &v), 14);
}

/* Factors at their edges: a boost of x1000 times a schedule of x1000
 * times geo x1000 on a bucket of 1000/s stays a limit the bucket
 * computes (at most x1000, each product within its group's max); geo
 * x0.001 on a limit of 1 leaves 1 (never 0: the cost). */
static const char edge_policy[] =
    "rules = ( { name = \"tb\"; paths = [ \"/tb\" ];\n"
    "            limits = ( { rate = \"1000/1s\"; algorithm = "
    "\"token_bucket\"; key = \"ip\"; } ); },\n"
    "          { name = \"one\"; paths = [ \"/one\" ];\n"
    "            limits = ( { rate = \"1/1h\"; key = \"ip\"; } ); } );\n"
    "factors = { schedule = { zone = \"UTC\"; rules = [ \"tb\" ];\n"
    "  windows = ( { when = \"*\"; factor = 1000; } ); };\n"
    "  geo = { variable = \"C\"; countries = { AA = 1000; ZZ = 0.001; }; "
    "}; };\n";

static void
test_edges(void **state)
{
    table_fixture_t *a;
    void            *fx = NULL;
    rl2_verdict_t    v;
    rl2_request_t    req = { .method = "GET",
                             .path = "/tb",
                             .peer_ip = "192.0.2.30",
                             .country_var = "AA" };
    rl2_clock_t      now = { .mono_us = 9000 * RL2_US_PER_S,
                             .wall_us = 1790000000 * RL2_US_PER_S };
    rl2_err_t        err;

    (void)state;
    setup_table(&fx, edge_policy, "edge");
    a = fx;
    override(a, RL2_OVR_BOOST, "rule:tb", NULL, RL2_OVR_FACTOR_MAX);
    rl2_verdict_init(&v);
    assert_int_equal(rl2_decide(a->base.policy, NULL, 0, a->base.store, &req,
                                RL2_PHASE_ALL, &now, &v, &err),
                     RL2_OK);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    assert_int_equal(v.factor_ppm[RL2_FACTOR_SCHEDULE], RL2_OVR_FACTOR_MAX);
    assert_int_equal(v.factor_ppm[RL2_FACTOR_GEO], RL2_OVR_FACTOR_MAX);
    assert_true(v.layers[0].limit->algo.limit > 1000);
    assert_true(v.layers[0].limit->algo.limit <= 1000 * 1000);
    assert_int_equal(rl2_algo_params_check(&v.layers[0].limit->algo, &err),
                     RL2_OK);
    req.path = "/one";
    req.country_var = "zz";
    for (int i = 0; i < 2; i++) {
        rl2_verdict_init(&v);
        assert_int_equal(rl2_decide(a->base.policy, NULL, 0, a->base.store,
                                    &req, RL2_PHASE_ALL, &now, &v, &err),
                         RL2_OK);
        assert_int_equal(v.factor_ppm[RL2_FACTOR_GEO], RL2_OVR_FACTOR_MIN);
        assert_int_equal(v.layers[0].limit->algo.limit, 1);
        assert_int_equal(v.outcome,
                         i == 0 ? RL2_OUTCOME_ALLOW : RL2_OUTCOME_DENY);
    }
    teardown_table(&fx);
}

typedef struct {
    char factors[RL2_FACTORS_TEXT_MAX];
    char policy[128];
} seen_t;

static void
collect(void *ctx, const char *name, const char *value)
{
    seen_t *s = ctx;

    if (strcmp(name, "X-RateLimit-Factors") == 0) {
        snprintf(s->factors, sizeof(s->factors), "%s", value);
    }
    if (strcmp(name, "RateLimit-Policy") == 0) {
        snprintf(s->policy, sizeof(s->policy), "%s", value);
    }
}

/* The most a response can carry: 16 limits with names of 63 bytes and
 * counts of 19 digits, every factor on at its widest, the refusal's
 * Retry-After.  rl2_headers_size stays within RL2_HEADERS_MAX (the
 * buffer ratelimit2-fcgi renders into, which renders nothing when it
 * is too small), and every field is rendered. */
static void
test_widest_headers(void **state)
{
    char          text[8192], name[80];
    size_t        at;
    rl2_policy_t *p;
    rl2_verdict_t v;
    rl2_clock_t   now = { .mono_us = 1, .wall_us = 1790000000000000LL };
    seen_t        s = { "", "" };
    char          buf[RL2_HEADERS_MAX];
    size_t        need;

    (void)state;
    at = (size_t)snprintf(text, sizeof(text),
                          "headers = { factors = true; legacy = true; "
                          "scope = true; algorithm = true; };\n"
                          "rules = ( { name = \"r\"; paths = [ \"/x\" ]; "
                          "limits = (\n");
    for (int i = 0; i < RL2_MAX_LAYERS; i++) {
        snprintf(name, sizeof(name), "%02d%061d", i, 0);
        at += (size_t)snprintf(text + at, sizeof(text) - at,
                               "%s{ name = \"%s\"; rate = "
                               "\"1000000000000000/30d\"; key = \"ip\"; }\n",
                               i > 0 ? "," : "", name);
    }
    snprintf(text + at, sizeof(text) - at, "); } );\n");
    p = load_ok(text);
    rl2_verdict_init(&v);
    v.outcome = RL2_OUTCOME_DENY;
    v.n_layers = RL2_MAX_LAYERS;
    v.shown = RL2_MAX_LAYERS - 1;
    for (size_t i = 0; i < RL2_MAX_LAYERS; i++) {
        v.layers[i].rule = &p->rules[0];
        v.layers[i].limit = &p->rules[0].limits.limits[i];
        v.layers[i].result.limit = INT64_MAX;
        v.layers[i].result.remaining = INT64_MAX;
        v.layers[i].result.reset_us = INT64_MAX;
        v.layers[i].result.retry_after_us = INT64_MAX;
    }
    v.factors_set = 1;
    for (size_t i = 0; i < RL2_FACTOR_N; i++) {
        v.factor_ppm[i] = RL2_OVR_FACTOR_MAX - 1;
    }
    need = rl2_headers_size(&v);
    assert_true(need <= sizeof(buf));
    assert_int_equal(
        rl2_headers_render(p, &v, &now, buf, sizeof(buf), collect, &s), need);
    assert_string_equal(s.factors, "load=999.999999;schedule=999.999999;"
                                   "geo=999.999999;reputation=999.999999");
    rl2_policy_free(p);
}

/* The refusal's headers: q is the effective count, the factors listed;
 * without headers.factors, no such field. */
static void
test_header(void **state)
{
    table_fixture_t *a = *state;
    rl2_verdict_t    v;
    rl2_clock_t      now = { .mono_us = 1, .wall_us = 1790000000000000LL };
    seen_t           s = { "", "" };
    char             buf[RL2_HEADERS_MAX];

    assert_int_equal(admitted(a, "/api", "192.0.2.9", "free", &v), 5);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    assert_true(rl2_headers_size(&v) <= sizeof(buf));
    rl2_headers_render(a->base.policy, &v, &now, buf, sizeof(buf), collect, &s);
    assert_string_equal(s.factors, "schedule=0.5");
    assert_non_null(strstr(s.policy, ";q=5;"));
    a->base.policy->header_factors = 0;
    s.factors[0] = '\0';
    rl2_headers_render(a->base.policy, &v, &now, buf, sizeof(buf), collect, &s);
    assert_string_equal(s.factors, "");
}

/* The refusal's violation log entry carries the factors and the
 * effective count. */
static void
test_vlog(void **state)
{
    table_fixture_t  *a = *state;
    rl2_vlog_conf_t   c = { 0, 0, 16, NULL };
    rl2_vlog_t       *log = NULL;
    rl2_vlog_entry_t *e = NULL;
    rl2_vlog_stats_t  st;
    rl2_verdict_t     v;
    rl2_clock_t       now = { .mono_us = 1, .wall_us = 1790000000000000LL };
    rl2_err_t         err;
    size_t            n = 0;
    char              ring[160];

    assert_int_equal(
        rl2_vlog_open(&c, a->base.zname, 0600, NULL, NULL, &log, &err), RL2_OK);
    assert_int_equal(admitted(a, "/api", "192.0.2.10", "free", &v), 5);
    rl2_vlog_record(log, a->base.policy, &v, "GET", "/api", NULL, &now);
    assert_int_equal(rl2_vlog_ring_read(a->base.zname, &e, &n, &st, &err),
                     RL2_OK);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].factors, "schedule=0.5");
    assert_int_equal(e[0].limit, 5);
    free(e);
    rl2_vlog_close(log);
    snprintf(ring, sizeof(ring), "%s%s", a->base.zname, RL2_VLOG_SUFFIX);
    rl2_shm_obj_unlink(ring, &err);
}

/* The text of every factor: in rl2_factor_t order, shortest decimals,
 * and one that would not fit is left out whole. */
static void
test_format(void **state)
{
    uint32_t ppm[RL2_FACTOR_N] = { 700000, 0, 800000, 1200000 };
    char     buf[RL2_FACTORS_TEXT_MAX], small[17];

    (void)state;
    assert_int_equal(rl2_factors_format(ppm, buf, sizeof(buf)),
                     strlen("load=0.7;geo=0.8;reputation=1.2"));
    assert_string_equal(buf, "load=0.7;geo=0.8;reputation=1.2");
    rl2_factors_format(ppm, small, sizeof(small));
    assert_string_equal(small, "load=0.7;geo=0.8");
    ppm[0] = RL2_OVR_FACTOR_MAX;
    ppm[1] = ppm[2] = ppm[3] = RL2_OVR_FACTOR_MIN + 1;
    assert_true(rl2_factors_format(ppm, buf, sizeof(buf)) < sizeof(buf));
    assert_non_null(strstr(buf, "reputation=0.001001"));
}

static void
test_config_errors(void **state)
{
    static const char rules[] =
        "tiers = ( { name = \"free\"; } );\n"
        "rules = ( { name = \"api\"; paths = [ \"/api\" ]; limits = ( { "
        "rate = \"10/1h\"; } ); } );\n";
    char text[512];

    (void)state;
    snprintf(text, sizeof(text),
             "%sfactors = { schedule = { zone = \"UTC\";\n rules = [ \"api\","
             "\n \"apii\" ]; windows = ( { when = \"*\"; factor = 2; } ); "
             "}; };\n",
             rules);
    expect_fail(text, "e.conf", 5, "'apii' names no rule of the policy");
    snprintf(text, sizeof(text),
             "%sfactors = { schedule = { zone = \"UTC\";\n tiers = "
             "\"gold\"; windows = ( { when = \"*\"; factor = 2; } ); }; };\n",
             rules);
    expect_fail(text, "e.conf", 4, "'gold' names no tier of the policy");
    snprintf(text, sizeof(text),
             "%sfactors = { schedule = { zone = \"UTC\";\n tiers = "
             "[ 1 ]; windows = ( { when = \"*\"; factor = 2; } ); }; };\n",
             rules);
    expect_fail(text, "e.conf", 4, "tiers");
    expect_fail("factors = { load = { source = \"scoreboard\";\n per_cpu = "
                "true; steps = ( { above = 0.5; factor = 0.5; } ); }; };\n",
                "e.conf", 2, "'per_cpu' is for a load file");
    expect_fail("factors = { load = {\n source = \"proc/loadavg\"; steps = "
                "( { above = 0.5; factor = 0.5; } ); }; };\n",
                "e.conf", 2, "absolute path or \"scoreboard\"");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_scope, setup, teardown_table),
        cmocka_unit_test_setup_teardown(test_header, setup, teardown_table),
        cmocka_unit_test_setup_teardown(test_override_tier_and_boost, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_vlog, setup, teardown_table),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_widest_headers),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_config_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
