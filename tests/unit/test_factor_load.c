/*
 * test_factor_load.c -- the load factor (policy factors.load,
 * control/factor_load.c): the hysteresis rule, a load swinging around a
 * threshold that moves the factor at most once per hold, the reading of
 * a load file the test writes, a decision that admits exactly the
 * scaled limit, and the loader's errors with file:line.
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

#define TEST_CONF_FILE "f.conf"
#include "rl2_config_test.h"
#include "rl2_decide_test.h"
#include "rl2_decide_table_test.h"
#include "control/control_internal.h"

static char load_file[64];

/* The load file holds `text`, as /proc/loadavg would. */
static void
write_load(const char *text)
{
    char  tmp[80];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.new", load_file);
    f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, load_file), 0);
}

static void
write_milli(int64_t milli)
{
    char text[64];

    snprintf(text, sizeof(text), "%lld.%03lld 0.50 0.40 1/100 1234\n",
             (long long)(milli / 1000), (long long)(milli % 1000));
    write_load(text);
}

/* above 0.8 -> 0.5, above 1.5 -> 0.25, below 0.3 -> 2; margin 0.1. */
static rl2_load_conf_t
conf_three(int64_t hold_us)
{
    rl2_load_conf_t c;

    memset(&c, 0, sizeof(c));
    c.source = load_file;
    c.n_steps = 3;
    c.steps[0] = (rl2_load_step_t){ 1, 800, 500000 };
    c.steps[1] = (rl2_load_step_t){ 1, 1500, 250000 };
    c.steps[2] = (rl2_load_step_t){ 0, 300, 2000000 };
    c.margin_milli = 100;
    c.hold_us = hold_us;

    return c;
}

/* Entered past a threshold, left only beyond the margin; a further step
 * is taken at once, and so is one the other way. */
static void
test_pick_rule(void **state)
{
    rl2_load_conf_t c = conf_three(0);

    (void)state;
    assert_int_equal(rl2_load_step_pick(&c, -1, 500), -1);
    assert_int_equal(rl2_load_step_pick(&c, -1, 800), -1); /* not past */
    assert_int_equal(rl2_load_step_pick(&c, -1, 801), 0);
    assert_int_equal(rl2_load_step_pick(&c, -1, 1600), 1); /* the furthest */
    /* In step 0: kept down to 0.7 (0.8 - margin), left under it. */
    assert_int_equal(rl2_load_step_pick(&c, 0, 750), 0);
    assert_int_equal(rl2_load_step_pick(&c, 0, 701), 0);
    assert_int_equal(rl2_load_step_pick(&c, 0, 700), -1);
    assert_int_equal(rl2_load_step_pick(&c, 0, 1501), 1);
    /* From 1.5 back to 1.45: still step 1; to 1.3: step 0 (past 0.8). */
    assert_int_equal(rl2_load_step_pick(&c, 1, 1450), 1);
    assert_int_equal(rl2_load_step_pick(&c, 1, 1300), 0);
    /* Below: kept up to 0.4, left over it, straight to the other way. */
    assert_int_equal(rl2_load_step_pick(&c, -1, 299), 2);
    assert_int_equal(rl2_load_step_pick(&c, 2, 399), 2);
    assert_int_equal(rl2_load_step_pick(&c, 2, 400), -1);
    assert_int_equal(rl2_load_step_pick(&c, 2, 900), 0);
    /* A step a reload took away is no step. */
    assert_int_equal(rl2_load_step_pick(&c, 7, 500), -1);
}

/* The first field, per online CPU when asked; what is not a load is
 * no reading, and the factor stays. */
static void
test_read_file(void **state)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    (void)state;
    write_load("0.93 0.50 0.40 1/100 1234\n");
    assert_int_equal(rl2_load_read(load_file, 0), 930);
    assert_int_equal(rl2_load_read(load_file, 1),
                     (int64_t)(930.0 / cpus + 0.5));
    write_load("12\n");
    assert_int_equal(rl2_load_read(load_file, 0), 12000);
    write_load("abc 1 2\n");
    assert_int_equal(rl2_load_read(load_file, 0), -1);
    write_load("-1 0 0\n");
    assert_int_equal(rl2_load_read(load_file, 0), -1);
    write_load("1e300\n");
    assert_int_equal(rl2_load_read(load_file, 0), -1);
    write_load("0.5x\n");
    assert_int_equal(rl2_load_read(load_file, 0), -1);
    write_load("");
    assert_int_equal(rl2_load_read(load_file, 0), -1);
    assert_int_equal(rl2_load_read("/nonexistent/loadavg", 0), -1);
}

static int
setup(void **state)
{
    char policy[512];

    snprintf(policy, sizeof(policy),
             "rules = ( { name = \"api\"; paths = [ \"/api\" ]; "
             "limits = ( { rate = \"10/1h\"; key = \"ip\"; } ); } );\n"
             "factors = { load = { source = \"%s\"; per_cpu = false; "
             "steps = ( { above = 0.8; factor = 0.5; } ); hold = \"10s\"; "
             "}; };\n",
             load_file);
    return setup_table(state, policy, "factor");
}

/* A load that swings across the threshold every second for two minutes
 * (0.85, 0.65, ...) changes the factor at most once per 10 s hold, and
 * each change is hold apart; a load that swings within the margin
 * (0.85, 0.75) changes it once, on the way in. */
static void
test_swing_moves_once_per_hold(void **state)
{
    table_fixture_t *a = *state;
    rl2_load_conf_t  c = conf_three(10 * RL2_US_PER_S);
    rl2_clock_t      now = { .mono_us = 5000 * RL2_US_PER_S, .wall_us = 0 };
    uint32_t         f, last = RL2_OVR_FACTOR_ONE;
    int64_t          last_change = 0;
    int              changes = 0;

    for (int s = 0; s < 120; s++) {
        write_milli(s % 2 == 0 ? 850 : 650);
        /* Several requests a second: only the first reads. */
        for (int r = 0; r < 3; r++) {
            f = rl2_overrides_load(a->table, &c, &now);
            if (f != last) {
                assert_true(changes == 0
                            || now.mono_us - last_change >= c.hold_us);
                changes++;
                last = f;
                last_change = now.mono_us;
            }
            now.mono_us += 1000;
        }
        now.mono_us += RL2_US_PER_S - 3000;
    }
    assert_true(changes >= 2);
    assert_true(changes <= 12);

    /* Within the margin: in once, never out. */
    c.hold_us = 0;
    write_milli(500);
    now.mono_us += 2 * RL2_US_PER_S;
    assert_int_equal(rl2_overrides_load(a->table, &c, &now),
                     RL2_OVR_FACTOR_ONE);
    changes = 0;
    last = RL2_OVR_FACTOR_ONE;
    for (int s = 0; s < 20; s++) {
        write_milli(s % 2 == 0 ? 850 : 750);
        now.mono_us += RL2_US_PER_S;
        f = rl2_overrides_load(a->table, &c, &now);
        changes += f != last;
        last = f;
    }
    assert_int_equal(changes, 1);
    assert_int_equal(last, 500000);
}

/* Limit 10 an hour under a load factor of 0.5: exactly 5 admitted; the
 * factor the metrics show is that one. */
static void
test_decide_admits_scaled(void **state)
{
    table_fixture_t *a = *state;
    rl2_request_t    req = { .method = "GET",
                             .path = "/api",
                             .peer_ip = "192.0.2.7" };
    rl2_clock_t      now = { .mono_us = 9000 * RL2_US_PER_S,
                             .wall_us = 1700000000 * RL2_US_PER_S };
    rl2_verdict_t    v;
    uint32_t         ppm;

    write_load("0.93 0.5 0.4 1/100 1\n");
    assert_int_equal(rl2_overrides_load_factor(a->table, &ppm), 0);
    assert_int_equal(table_admitted(a, &req, 12, &now, 0, &v), 5);
    assert_int_equal(v.layers[0].limit->algo.limit, 5);
    assert_int_equal(rl2_overrides_load_factor(a->table, &ppm), 1);
    assert_int_equal(ppm, 500000);
}

/* Every mistake is refused with the line it is on. */
static void
test_config_errors(void **state)
{
    (void)state;
    expect_fail("factors = 3;\n", "e.conf", 1, "'factors' must be a group");
    expect_fail("factors = { cpu = {}; };\n", "e.conf", 1, "cpu");
    expect_fail("factors = {\n load = {\n steps = ( { above = 0.8; "
                "factor = 0.5; } );\n speed = 1; };\n};\n",
                "e.conf", 4, "unknown key 'speed'");
    expect_fail("factors = { load = {\n source = \"proc/loadavg\";\n "
                "steps = ( { above = 0.8; factor = 0.5; } ); }; };\n",
                "e.conf", 2, "absolute path");
    expect_fail("factors = { load = {\n per_cpu = true; }; };\n", "e.conf", 1,
                "'steps' must list 1 to 8");
    expect_fail("factors = { load = {\n steps = (\n { above = 0.8; "
                "below = 0.3; factor = 0.5; } ); }; };\n",
                "e.conf", 3, "one of 'above' and 'below'");
    expect_fail("factors = { load = {\n steps = (\n { above = 0.8; } "
                "); }; };\n",
                "e.conf", 3, "needs 'factor'");
    expect_fail("factors = { load = { steps = (\n { above = 0.8;\n "
                "factor = 0; } ); }; };\n",
                "e.conf", 3, "'factor' must be from 0.001 to 1000");
    expect_fail("factors = { load = { steps = (\n { above = -1;\n "
                "factor = 0.5; } ); }; };\n",
                "e.conf", 2, "'above' must be from 0 to 1000000");
    expect_fail("factors = { load = { steps = ( { above = 0.8; factor = 0.5; "
                "},\n { below = 0.9; factor = 2; } ); }; };\n",
                "e.conf", 1, "every 'below' must be less than every 'above'");
    expect_fail("factors = { load = { min = 0.6; steps = (\n { above = 0.8; "
                "factor = 0.5; } ); }; };\n",
                "e.conf", 2, "within 'min' and 'max'");
    expect_fail("factors = { load = {\n min = 2; max = 1; steps = ( "
                "{ above = 0.8; factor = 1.5; } ); }; };\n",
                "e.conf", 2, "'min' is more than 'max'");
    expect_fail("factors = { load = { steps = ( { above = 0.8; factor = 0.5; "
                "} );\n hold = \"soon\"; }; };\n",
                "e.conf", 2, "'hold'");
    expect_fail("overrides = { enabled = false; };\nfactors = {\n load = { "
                "steps = ( { above = 0.8; factor = 0.5; } ); }; };\n",
                "e.conf", 3, "needs the runtime override table");
}

/* The defaults: /proc/loadavg per CPU, margin 0.1, hold 30 s, bounds
 * of every factor; without the group, no load factor. */
static void
test_config_defaults(void **state)
{
    rl2_policy_t *p = load_ok("factors = { load = { steps = ( { above = 0.8; "
                              "factor = 0.7; }, { below = 0.3; factor = "
                              "1.3; } ); max = 10; }; };\n");

    (void)state;
    assert_string_equal(p->load.source, "/proc/loadavg");
    assert_int_equal(p->load.per_cpu, 1);
    assert_int_equal(p->load.n_steps, 2);
    assert_int_equal(p->load.steps[0].threshold_milli, 800);
    assert_int_equal(p->load.steps[0].factor_ppm, 700000);
    assert_int_equal(p->load.steps[1].above, 0);
    assert_int_equal(p->load.steps[1].factor_ppm, 1300000);
    assert_int_equal(p->load.margin_milli, 100);
    assert_int_equal(p->load.hold_us, 30 * RL2_US_PER_S);
    assert_int_equal(p->factors[RL2_FACTOR_LOAD].min_ppm, RL2_OVR_FACTOR_MIN);
    assert_int_equal(p->factors[RL2_FACTOR_LOAD].max_ppm,
                     10 * RL2_OVR_FACTOR_ONE);
    rl2_policy_free(p);
    p = load_ok("rules = ();\n");
    assert_null(p->load.source);
    rl2_policy_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pick_rule),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test_setup_teardown(test_swing_moves_once_per_hold, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_decide_admits_scaled, setup,
                                        teardown_table),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_defaults),
    };
    int rc;

    snprintf(load_file, sizeof(load_file), "/tmp/rl2test-%d-loadavg",
             (int)getpid());
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(load_file);
    return rc;
}
