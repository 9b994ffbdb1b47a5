/*
 * test_factor_schedule.c -- the schedule factor (policy
 * factors.schedule, control/factor_schedule.c): the TZif reader against
 * the C library's localtime_r (TZ set in this test only) over 2026-2030
 * and through the DST changes, zone names, damaged files, window
 * matching with wrapping days and midnight crossing, the loader's errors
 * with file:line, a decision that admits exactly half, and one under
 * both the load and the schedule factor, which multiply.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratelimit2/overrides.h"
#include "base/shm_obj_internal.h"

#define TEST_CONF_FILE "s.conf"
#include "rl2_config_test.h"
#include "rl2_decide_test.h"
#include "rl2_decide_table_test.h"
#include "control/control_internal.h"
#include "load/load_internal.h"

#define ZONEINFO "/usr/share/zoneinfo"
#define T2026    1767225600LL /* 2026-01-01 00:00:00 UTC */
#define T2031    1924992000LL /* 2031-01-01 00:00:00 UTC */

/* The local time glibc gives for t in zone, as seconds since the epoch
 * on that wall clock. */
static int64_t
glibc_local(int64_t t)
{
    time_t    tt = (time_t)t;
    struct tm tm;

    assert_non_null(localtime_r(&tt, &tm));
    return (int64_t)timegm(&tm);
}

static void
sweep_zone(const char *zone)
{
    rl2_policy_t *p = load_ok("rules = ();\n");
    rl2_tz_t      tz;
    rl2_err_t     err = { "" };
    char          env[80];
    int64_t       n = 0;

    assert_int_equal(rl2_tz_load(p, ZONEINFO, zone, T2026, &tz, &err), RL2_OK);
    snprintf(env, sizeof(env), ":%s", zone);
    setenv("TZ", env, 1);
    tzset();
    /* Every 3599 s (so every hour of the day is met) over five years. */
    for (int64_t t = T2026; t < T2031; t += 3599, n++) {
        if (rl2_tz_local(&tz, t) != glibc_local(t)) {
            fail_msg("%s at %lld: %lld, glibc %lld", zone, (long long)t,
                     (long long)rl2_tz_local(&tz, t),
                     (long long)glibc_local(t));
        }
    }
    assert_true(n > 12000);
    rl2_policy_free(p);
}

static void
test_sweep_berlin(void **state)
{
    (void)state;
    sweep_zone("Europe/Berlin");
}

static void
test_sweep_new_york(void **state)
{
    (void)state;
    sweep_zone("America/New_York");
}

static void
test_sweep_kolkata(void **state)
{
    (void)state;
    sweep_zone("Asia/Kolkata");
}

static void
test_sweep_utc(void **state)
{
    (void)state;
    sweep_zone("UTC");
}

/* Berlin's changes of 2026, second by second around each: on
 * 2026-03-29 01:00 UTC the clock goes 01:59:59 -> 03:00:00 (02:xx never
 * is); on 2026-10-25 01:00 UTC 02:59:59 CEST -> 02:00:00 CET (02:xx is
 * twice). */
static void
test_berlin_dst_days(void **state)
{
    rl2_policy_t *p = load_ok("rules = ();\n");
    rl2_tz_t      tz;
    rl2_err_t     err = { "" };
    const int64_t spring = 1774746000, autumn = 1792890000;

    (void)state;
    assert_int_equal(
        rl2_tz_load(p, ZONEINFO, "Europe/Berlin", T2026, &tz, &err), RL2_OK);
    setenv("TZ", ":Europe/Berlin", 1);
    tzset();
    for (int64_t t = spring - 7200; t < spring + 7200; t++) {
        assert_int_equal(rl2_tz_local(&tz, t), glibc_local(t));
    }
    for (int64_t t = autumn - 7200; t < autumn + 7200; t++) {
        assert_int_equal(rl2_tz_local(&tz, t), glibc_local(t));
    }
    /* 2026-03-29 01:59:59 then 03:00:00 local. */
    assert_int_equal(rl2_tz_local(&tz, spring - 1) % 86400, 2 * 3600 - 1);
    assert_int_equal(rl2_tz_local(&tz, spring) % 86400, 3 * 3600);
    /* 02:30 local twice in October, an hour apart. */
    assert_int_equal(rl2_tz_local(&tz, autumn - 1800) % 86400, 9000);
    assert_int_equal(rl2_tz_local(&tz, autumn + 1800) % 86400, 9000);
    rl2_policy_free(p);
}

/* Names: no path tricks; a missing zone and a damaged file are load
 * errors, never a crash. */
static void
test_zone_names_and_files(void **state)
{
    rl2_policy_t *p = load_ok("rules = ();\n");
    rl2_tz_t      tz;
    rl2_err_t     err = { "" };
    unsigned char buf[4096];
    size_t        len;
    int           rule = 0;
    FILE         *f;
    const char   *bad[] = { "",          "/etc/passwd",     "../etc/passwd",
                            "Europe/..", "Europe//Berlin",  "Europe/",
                            "a b",       "Europe/Berlin\n", "x;y" };

    (void)state;
    assert_true(rl2_tz_name_ok("Europe/Berlin"));
    assert_true(rl2_tz_name_ok("Etc/GMT+5"));
    assert_true(rl2_tz_name_ok("America/Port-au-Prince"));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(rl2_tz_name_ok(bad[i]));
        assert_int_equal(rl2_tz_load(p, ZONEINFO, bad[i], T2026, &tz, &err),
                         RL2_ERR_CONFIG);
    }
    assert_int_equal(rl2_tz_load(p, ZONEINFO, "Mars/Olympus", T2026, &tz, &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "cannot open"));
    f = fopen(ZONEINFO "/Europe/Berlin", "rb");
    assert_non_null(f);
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(len > 100 && len < sizeof(buf));
    assert_int_equal(rl2_tz_parse(p, buf, len, &tz, &rule, &err), RL2_OK);
    assert_int_equal(rule, 1);
    /* Every shorter prefix is refused. */
    for (size_t n = 0; n < len - 1; n++) {
        assert_int_equal(rl2_tz_parse(p, buf, n, &tz, &rule, &err),
                         RL2_ERR_CONFIG);
    }
    buf[4] = 0; /* version 1 */
    assert_int_equal(rl2_tz_parse(p, buf, len, &tz, &rule, &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "version 1"));
    rl2_policy_free(p);
}

/* Monday 2026-01-05 00:00 UTC, plus d days, h:m. */
static int64_t
mon(int d, int h, int m)
{
    return 1767571200LL + d * 86400LL + h * 3600LL + m * 60LL;
}

static void
add_window(rl2_schedule_conf_t *c, const char *when, uint32_t ppm)
{
    rl2_sched_window_t *w = &c->windows[c->n_windows++];

    assert_int_equal(rl2_sched_when_parse(when, w), 1);
    w->factor_ppm = ppm;
}

/* Days and times, a day range that wraps, a time range past midnight
 * (its early part belongs to the day it started), first match wins. */
static void
test_windows(void **state)
{
    rl2_schedule_conf_t c;
    rl2_sched_window_t  w;
    const char         *bad[] = { "",
                                  "Mon-",
                                  "Monday",
                                  "Mon 9:00-18:00",
                                  "Mon 09:00",
                                  "Mon 09:00-09:00",
                                  "Mon 24:00-01:00",
                                  "Mon 25:00-26:00",
                                  "Mon 09:60-10:00",
                                  "Mon,",
                                  "* 09:00-18:00 ",
                                  "Mon  09:00-18:00",
                                  "**" };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (rl2_sched_when_parse(bad[i], &w)) {
            fail_msg("'%s' should not parse", bad[i]);
        }
    }
    assert_int_equal(rl2_sched_when_parse("Fri-Mon", &w), 1);
    assert_int_equal(w.days, 0x71); /* Mon, Fri, Sat, Sun */
    assert_int_equal(rl2_sched_when_parse("mon,Wed-thu", &w), 1);
    assert_int_equal(w.days, 0x0d);

    memset(&c, 0, sizeof(c)); /* UTC: no transitions, offset 0 */
    add_window(&c, "Mon-Fri 09:00-18:00", 800000);
    add_window(&c, "Fri-Mon 22:00-06:00", 500000);
    add_window(&c, "Sat,Sun", 1200000);
    add_window(&c, "* 00:00-24:00", 900000);
    assert_int_equal(rl2_schedule_at(&c, mon(0, 9, 0)), 800000);
    assert_int_equal(rl2_schedule_at(&c, mon(0, 8, 59)), 900000);
    assert_int_equal(rl2_schedule_at(&c, mon(0, 17, 59)), 800000);
    assert_int_equal(rl2_schedule_at(&c, mon(0, 18, 0)), 900000);
    /* Monday 03:00: Sunday's 22:00-06:00 window (the first to hold). */
    assert_int_equal(rl2_schedule_at(&c, mon(0, 3, 0)), 500000);
    /* Monday 23:00: Monday's own. */
    assert_int_equal(rl2_schedule_at(&c, mon(0, 23, 0)), 500000);
    /* Tuesday 03:00: Monday's window still; Wednesday 03:00: none of
     * Tuesday's, so the catch-all. */
    assert_int_equal(rl2_schedule_at(&c, mon(1, 3, 0)), 500000);
    assert_int_equal(rl2_schedule_at(&c, mon(2, 3, 0)), 900000);
    assert_int_equal(rl2_schedule_at(&c, mon(2, 22, 0)), 900000);
    /* Thursday 23:00 no, Friday 23:00 yes, Saturday noon the weekend. */
    assert_int_equal(rl2_schedule_at(&c, mon(3, 23, 0)), 900000);
    assert_int_equal(rl2_schedule_at(&c, mon(4, 23, 0)), 500000);
    assert_int_equal(rl2_schedule_at(&c, mon(5, 12, 0)), 1200000);
    /* No window holds: x1. */
    c.n_windows = 1;
    assert_int_equal(rl2_schedule_at(&c, mon(5, 12, 0)), RL2_OVR_FACTOR_ONE);
}

/* Windows read in local time: Berlin's 09:00 is 08:00 UTC in winter
 * and 07:00 UTC in summer. */
static void
test_windows_local(void **state)
{
    rl2_policy_t *p = load_ok(
        "factors = { schedule = { zone = \"Europe/Berlin\";\n"
        " windows = ( { when = \"Mon-Fri 09:00-18:00\"; factor = 0.8; } ); "
        "}; };\n");
    const int64_t jan = 1767600000; /* Mon 2026-01-05 08:00 UTC */
    const int64_t jul = 1783321200; /* Mon 2026-07-06 07:00 UTC */

    (void)state;
    assert_string_equal(p->schedule.zone, "Europe/Berlin");
    assert_int_equal(rl2_schedule_at(&p->schedule, jan - 1),
                     RL2_OVR_FACTOR_ONE);
    assert_int_equal(rl2_schedule_at(&p->schedule, jan), 800000);
    assert_int_equal(rl2_schedule_at(&p->schedule, jul - 1),
                     RL2_OVR_FACTOR_ONE);
    assert_int_equal(rl2_schedule_at(&p->schedule, jul), 800000);
    /* The per-second cache never lags a boundary. */
    rl2_clock_t now = { .mono_us = 1, .wall_us = (jan - 1) * RL2_US_PER_S };

    assert_int_equal(rl2_schedule_factor(NULL, &p->schedule, &now),
                     RL2_OVR_FACTOR_ONE);
    now.wall_us += RL2_US_PER_S - 1;
    assert_int_equal(rl2_schedule_factor(NULL, &p->schedule, &now),
                     RL2_OVR_FACTOR_ONE);
    now.wall_us += 1;
    assert_int_equal(rl2_schedule_factor(NULL, &p->schedule, &now), 800000);
    rl2_policy_free(p);
}

static void
test_config_errors(void **state)
{
    (void)state;
    expect_fail("factors = { schedule = {\n windows = ( { when = \"*\"; "
                "factor = 0.5; } ); }; };\n",
                "e.conf", 1, "needs 'zone'");
    expect_fail("factors = { schedule = {\n zone = \"../../etc/passwd\";\n"
                " windows = ( { when = \"*\"; factor = 0.5; } ); }; };\n",
                "e.conf", 2, "not a zone name");
    expect_fail("factors = { schedule = { zone = \"Nowhere/City\";\n"
                " windows = ( { when = \"*\"; factor = 0.5; } ); }; };\n",
                "e.conf", 1, "cannot open");
    expect_fail("factors = { schedule = { zone = \"UTC\";\n windows = (\n"
                " { when = \"Mon-Fri 9-18\"; factor = 0.5; } ); }; };\n",
                "e.conf", 3, "'when' must be days");
    expect_fail("factors = { schedule = { zone = \"UTC\"; windows = (\n"
                " { when = \"*\";\n factor = 0; } ); }; };\n",
                "e.conf", 3, "'factor' must be from 0.001 to 1000");
    expect_fail("factors = { schedule = { zone = \"UTC\"; windows = (\n"
                " { when = \"*\"; } ); }; };\n",
                "e.conf", 2, "needs 'when' and 'factor'");
    expect_fail("factors = { schedule = { zone = \"UTC\"; windows = (\n"
                " { when = \"*\"; factor = 1; speed = 2; } ); }; };\n",
                "e.conf", 2, "unknown key 'speed'");
    expect_fail("factors = { schedule = { zone = \"UTC\";\n windows = (); "
                "}; };\n",
                "e.conf", 2, "'windows' must list 1 to 16");
    expect_fail("factors = { schedule = { zone = \"UTC\"; min = 0.6;\n"
                " windows = (\n { when = \"*\"; factor = 0.5; } ); }; };\n",
                "e.conf", 3, "within 'min' and 'max'");
    expect_fail("factors = { schedule = { zone = \"UTC\";\n min = 2; max = 1;"
                " windows = ( { when = \"*\"; factor = 1.5; } ); }; };\n",
                "e.conf", 2, "'min' is more than 'max'");
    expect_fail("overrides = { enabled = false; };\nfactors = {\n schedule = "
                "{ zone = \"UTC\"; windows = ( { when = \"*\"; factor = 2; "
                "} ); }; };\n",
                "e.conf", 3, "needs the runtime override table");
}

static char load_file[64];

static int
setup(void **state)
{
    return setup_table(
        state,
        "rules = ( { name = \"api\"; paths = [ \"/api\" ]; "
        "limits = ( { rate = \"10/1h\"; key = \"ip\"; } ); } );\n"
        "factors = { schedule = { zone = \"Asia/Kolkata\"; "
        "windows = ( { when = \"* 00:00-24:00\"; factor = 0.5; } ); "
        "}; };\n",
        "sched");
}

/* A load of 0.93 (x0.5 above 0.8) and a window of x0.4. */
static int
setup_both(void **state)
{
    char  policy[640];
    FILE *f = fopen(load_file, "w");

    assert_non_null(f);
    fputs("0.93 0.50 0.40 1/100 1234\n", f);
    assert_int_equal(fclose(f), 0);
    snprintf(policy, sizeof(policy),
             "rules = ( { name = \"api\"; paths = [ \"/api\" ]; "
             "limits = ( { rate = \"10/1h\"; key = \"ip\"; } ); } );\n"
             "factors = { load = { source = \"%s\"; per_cpu = false; "
             "steps = ( { above = 0.8; factor = 0.5; } ); };\n"
             "schedule = { zone = \"UTC\"; "
             "windows = ( { when = \"*\"; factor = 0.4; } ); }; };\n",
             load_file);
    return setup_table(state, policy, "sched");
}

/* Limit 10 an hour under a window of 0.5: exactly 5 admitted; the
 * host's gauge shows 0.5. */
static void
test_decide_admits_half(void **state)
{
    table_fixture_t *a = *state;
    rl2_request_t    req = { .method = "GET",
                             .path = "/api",
                             .peer_ip = "192.0.2.7" };
    rl2_clock_t      now = { .mono_us = 9000 * RL2_US_PER_S,
                             .wall_us = 1790000000 * RL2_US_PER_S };
    rl2_verdict_t    v;
    uint32_t         ppm;

    assert_int_equal(rl2_overrides_schedule_factor(a->table, &ppm), 0);
    /* Across seconds: the cache renews. */
    assert_int_equal(table_admitted(a, &req, 12, &now, 300 * 1000, &v), 5);
    assert_int_equal(rl2_overrides_schedule_factor(a->table, &ppm), 1);
    assert_int_equal(ppm, 500000);
}

/* Both factors multiply: 10 x 0.5 x 0.4 = 2 admitted. */
static void
test_decide_with_load(void **state)
{
    table_fixture_t *a = *state;
    rl2_request_t    req = { .method = "GET",
                             .path = "/api",
                             .peer_ip = "192.0.2.8" };
    rl2_clock_t      now = { .mono_us = 9000 * RL2_US_PER_S,
                             .wall_us = 1790000000 * RL2_US_PER_S };
    rl2_verdict_t    v;

    assert_int_equal(table_admitted(a, &req, 6, &now, 0, &v), 2);
    assert_int_equal(v.layers[0].limit->algo.limit, 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_berlin),
        cmocka_unit_test(test_sweep_new_york),
        cmocka_unit_test(test_sweep_kolkata),
        cmocka_unit_test(test_sweep_utc),
        cmocka_unit_test(test_berlin_dst_days),
        cmocka_unit_test(test_zone_names_and_files),
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_windows_local),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test_setup_teardown(test_decide_admits_half, setup,
                                        teardown_table),
        cmocka_unit_test_setup_teardown(test_decide_with_load, setup_both,
                                        teardown_table),
    };
    int rc;

    snprintf(load_file, sizeof(load_file), "/tmp/rl2test-%d-sched-load",
             (int)getpid());
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(load_file);
    return rc;
}
