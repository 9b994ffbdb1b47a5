/*
 * test_circuit.c -- the circuit breaker (failover.c) on a fake clock,
 * the election of exactly one prober among processes, the failover modes
 * and local_share as text and as arithmetic.  The store built on them is
 * tested in test_failover.c; the fixture is failover_fixture.h.
 */
#include "failover_fixture.h"
#include "store/store_internal.h"

/* ---- local_share and modes --------------------------------------------- */

static void
test_local_share_parses_as_ppm_without_floats(void **state)
{
    static const struct {
        const char *text;
        uint32_t    ppm;
    } ok[] = {
        { "1", 1000000 },        { "1.0", 1000000 }, { "0.5", 500000 },
        { ".25", 250000 },       { "0.001", 1000 },  { "0.333333", 333333 },
        { "0.1000000", 100000 }, { "01", 1000000 },
    };
    static const char *const bad[] = {
        "",          "0",   "0.0009", "1.5",  "2",
        "0.1234567", "abc", "0.5x",   "-0.5", "100000000000000000000",
        "."
    };
    rl2_failover_mode_t mode;
    rl2_err_t           err = { "" };
    uint32_t            ppm;

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(rl2_failover_share_parse(ok[i].text, &ppm, &err),
                         RL2_OK);
        assert_int_equal(ppm, ok[i].ppm);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(rl2_failover_share_parse(bad[i], &ppm, &err),
                         RL2_ERR_CONFIG);
    }
    assert_int_equal(rl2_failover_mode_parse("closed", &mode, NULL), RL2_OK);
    assert_int_equal(mode, RL2_FAILOVER_CLOSED);
    assert_int_equal(rl2_failover_mode_parse("fail", &mode, &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "local, open or closed"));
    assert_string_equal(rl2_failover_mode_name(RL2_FAILOVER_OPEN), "open");
}

static void
test_local_count_is_floor_of_share_at_least_one(void **state)
{
    (void)state;
    assert_int_equal(rl2_failover_local_count(10, 500000), 5);
    assert_int_equal(rl2_failover_local_count(7, 500000), 3);
    assert_int_equal(rl2_failover_local_count(1, 500000), 1);
    assert_int_equal(rl2_failover_local_count(3, 333333), 1);
    assert_int_equal(rl2_failover_local_count(1000, 1000), 1);
    assert_int_equal(rl2_failover_local_count(999, 1000), 1);
    assert_int_equal(rl2_failover_local_count(100, 1000000), 100);
    assert_int_equal(rl2_failover_local_count(INT64_MAX, 1000000), INT64_MAX);
    assert_int_equal(rl2_failover_local_count(INT64_MAX, 500000),
                     INT64_MAX / 2);
    assert_int_equal(rl2_failover_local_count(100, 0), 1); /* clamped */
}

/* ---- the circuit, on a fake clock -------------------------------------- */

static void
test_circuit_opens_probes_and_closes(void **state)
{
    rl2_circuit_t      *c = fx.circuit;
    rl2_circuit_stats_t cs;
    int64_t             down = 0;

    (void)state;
    assert_int_equal(rl2_circuit_state(c), RL2_CIRCUIT_CLOSED);
    assert_int_equal(rl2_circuit_route(c, T0_US), RL2_ROUTE_PRIMARY);
    assert_int_equal(rl2_circuit_failure(c, RL2_ROUTE_PRIMARY, T0_US), 1);
    assert_int_equal(rl2_circuit_state(c), RL2_CIRCUIT_OPEN);
    /* Nothing goes to Redis until the probe interval has passed. */
    assert_int_equal(rl2_circuit_route(c, T0_US), RL2_ROUTE_FALLBACK);
    assert_int_equal(rl2_circuit_route(c, T0_US + PROBE_US - 1),
                     RL2_ROUTE_FALLBACK);
    assert_int_equal(rl2_circuit_route(c, T0_US + PROBE_US), RL2_ROUTE_PROBE);
    assert_int_equal(rl2_circuit_state(c), RL2_CIRCUIT_HALF_OPEN);
    assert_int_equal(rl2_circuit_route(c, T0_US + PROBE_US),
                     RL2_ROUTE_FALLBACK);
    /* A failed probe: open again, next probe one interval later. */
    assert_int_equal(
        rl2_circuit_failure(c, RL2_ROUTE_PROBE, T0_US + PROBE_US + 5), 0);
    assert_int_equal(rl2_circuit_state(c), RL2_CIRCUIT_OPEN);
    assert_int_equal(rl2_circuit_route(c, T0_US + 2 * PROBE_US - 1),
                     RL2_ROUTE_FALLBACK);
    assert_int_equal(rl2_circuit_route(c, T0_US + 2 * PROBE_US),
                     RL2_ROUTE_PROBE);
    assert_int_equal(
        rl2_circuit_success(c, RL2_ROUTE_PROBE, T0_US + 2 * PROBE_US, &down),
        1);
    assert_int_equal(down, 2 * PROBE_US);
    assert_int_equal(rl2_circuit_state(c), RL2_CIRCUIT_CLOSED);
    assert_int_equal(rl2_circuit_route(c, T0_US), RL2_ROUTE_PRIMARY);
    rl2_circuit_stats(c, &cs);
    assert_int_equal(cs.opens, 1);
    assert_int_equal(cs.probes, 2);
    assert_int_equal(cs.probe_failures, 1);
    assert_int_equal(cs.failures, 0);
}

static void
test_circuit_opens_after_n_consecutive_failures(void **state)
{
    rl2_circuit_t *c;

    (void)state;
    rl2_circuit_close(fx.circuit);
    fx.circuit = c = circuit_open(3, 1000, 0);
    assert_int_equal(rl2_circuit_failure(c, RL2_ROUTE_PRIMARY, T0_US), 0);
    assert_int_equal(rl2_circuit_failure(c, RL2_ROUTE_PRIMARY, T0_US), 0);
    /* A success in between: the count starts again. */
    assert_int_equal(rl2_circuit_success(c, RL2_ROUTE_PRIMARY, T0_US, NULL), 0);
    assert_int_equal(rl2_circuit_failure(c, RL2_ROUTE_PRIMARY, T0_US), 0);
    assert_int_equal(rl2_circuit_failure(c, RL2_ROUTE_PRIMARY, T0_US), 0);
    assert_int_equal(rl2_circuit_state(c), RL2_CIRCUIT_CLOSED);
    assert_int_equal(rl2_circuit_failure(c, RL2_ROUTE_PRIMARY, T0_US), 1);
    assert_int_equal(rl2_circuit_state(c), RL2_CIRCUIT_OPEN);
}

/* Answers of requests sent before the circuit opened change nothing, and
 * a second handle on the same name sees the same circuit. */
static void
test_late_answers_do_not_move_an_open_circuit(void **state)
{
    rl2_circuit_t *other = circuit_open(1, 1000, 0);

    (void)state;
    assert_non_null(other);
    assert_int_equal(rl2_circuit_failure(fx.circuit, RL2_ROUTE_PRIMARY, T0_US),
                     1);
    assert_int_equal(rl2_circuit_state(other), RL2_CIRCUIT_OPEN);
    assert_int_equal(rl2_circuit_failure(other, RL2_ROUTE_PRIMARY, T0_US), 0);
    assert_int_equal(rl2_circuit_success(other, RL2_ROUTE_PRIMARY, T0_US, NULL),
                     0);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_OPEN);
    assert_int_equal(rl2_circuit_route(other, T0_US), RL2_ROUTE_FALLBACK);
    rl2_circuit_close(other);
}

/* A prober that dies leaves the circuit half-open: the next interval
 * elects another. */
static void
test_dead_prober_is_replaced_after_an_interval(void **state)
{
    rl2_circuit_t *c = fx.circuit;

    (void)state;
    rl2_circuit_failure(c, RL2_ROUTE_PRIMARY, T0_US);
    assert_int_equal(rl2_circuit_route(c, T0_US + PROBE_US), RL2_ROUTE_PROBE);
    /* ...and never reports. */
    assert_int_equal(rl2_circuit_route(c, T0_US + 2 * PROBE_US - 1),
                     RL2_ROUTE_FALLBACK);
    assert_int_equal(rl2_circuit_route(c, T0_US + 2 * PROBE_US),
                     RL2_ROUTE_PROBE);
    assert_int_equal(
        rl2_circuit_success(c, RL2_ROUTE_PROBE, T0_US + 2 * PROBE_US, NULL), 1);
    assert_int_equal(rl2_circuit_state(c), RL2_CIRCUIT_CLOSED);
}

static void
test_exactly_one_probe_winner_among_8_processes(void **state)
{
    enum { PROCS = 8, ROUNDS = 20 };
    pid_t pids[PROCS];
    int   status;

    (void)state;
    rl2_circuit_failure(fx.circuit, RL2_ROUTE_PRIMARY, T0_US);
    for (int round = 1; round <= ROUNDS; round++) {
        int64_t t = T0_US + round * PROBE_US;
        int     go[2], winners = 0;
        char    c;

        assert_int_equal(pipe(go), 0);
        for (int i = 0; i < PROCS; i++) {
            pids[i] = fork();
            assert_true(pids[i] >= 0);
            if (pids[i] == 0) {
                /* Each opens the circuit by name, as FastCGI workers do;
                 * no cmocka assertions in a child. */
                rl2_circuit_t *mine = circuit_open(1, 1000, 0);

                close(go[1]);
                (void)!read(go[0], &c, 1); /* EOF: everyone starts */
                _exit(mine == NULL
                          ? 2
                          : rl2_circuit_route(mine, t) == RL2_ROUTE_PROBE);
            }
        }
        close(go[0]);
        close(go[1]);
        for (int i = 0; i < PROCS; i++) {
            assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) <= 1);
            winners += WEXITSTATUS(status);
        }
        assert_int_equal(winners, 1);
        assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_HALF_OPEN);
        rl2_circuit_failure(fx.circuit, RL2_ROUTE_PROBE, t);
    }
}

static void
test_bad_arguments_are_refused(void **state)
{
    rl2_circuit_conf_t  cc;
    rl2_failover_conf_t conf;
    rl2_circuit_t      *c = NULL;
    rl2_store_t        *s = NULL;

    (void)state;
    rl2_circuit_conf_default(&cc);
    cc.failures_to_open = 0;
    assert_int_equal(rl2_circuit_open(fx.circuit_name, &cc, 0600, &c, NULL),
                     RL2_ERR_INVALID);
    rl2_circuit_conf_default(&cc);
    assert_int_equal(rl2_circuit_open("no-slash", &cc, 0600, &c, NULL),
                     RL2_ERR_INVALID);
    assert_null(c);
    rl2_failover_conf_default(&conf);
    assert_int_equal(rl2_store_failover_create(&fx.primary.base, NULL,
                                               fx.circuit, &conf, &s, NULL),
                     RL2_ERR_INVALID); /* local mode needs a zone */
    conf.mode = RL2_FAILOVER_OPEN;
    conf.local_share_ppm = 999;
    assert_int_equal(rl2_store_failover_create(&fx.primary.base, NULL,
                                               fx.circuit, &conf, &s, NULL),
                     RL2_ERR_INVALID);
    assert_null(s);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_local_share_parses_as_ppm_without_floats),
        T(test_local_count_is_floor_of_share_at_least_one),
        T(test_circuit_opens_probes_and_closes),
        T(test_circuit_opens_after_n_consecutive_failures),
        T(test_late_answers_do_not_move_an_open_circuit),
        T(test_dead_prober_is_replaced_after_an_interval),
        T(test_exactly_one_probe_winner_among_8_processes),
        T(test_bad_arguments_are_refused),
    };

    /* Local time in the syslog header: UTC, so lines are exact. */
    setenv("TZ", "UTC", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
