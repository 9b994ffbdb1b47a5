/*
 * test_failover_redis.c -- the refunds the failover store owes Redis,
 * against a real redis-server (rl2_redis_test.h): a concurrency release
 * queued while the circuit is open is applied exactly once however many
 * processes replay the queue at the same time, and a release sent to a
 * stopped server is not sent again, because the server runs it when it
 * resumes.  Either way the count in Redis ends exactly one lower, never
 * two.  The cases of the fake store are in test_failover.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rl2_redis_test.h"
#include "ratelimit2/failover.h"
#include "store/store_internal.h"

#define PROBE_MS 1

static char           circuit_name[64];
static rl2_circuit_t *circuit;
static rl2_store_t   *redis; /* a short command timeout: 100 ms */
static rl2_store_t   *fo;    /* the failover store over it */

/* Opens nothing yet: a child process makes its own (never shares a
 * hiredis context across fork). */
static rl2_store_t *
failover_over(rl2_store_t *primary, rl2_circuit_t *c)
{
    rl2_failover_conf_t conf;
    rl2_store_t        *s = NULL;
    rl2_err_t           err;

    rl2_failover_conf_default(&conf);
    conf.mode = RL2_FAILOVER_OPEN; /* needs no local zone */
    if (rl2_store_failover_create(primary, NULL, c, &conf, &s, &err)
        != RL2_OK) {
        fail_msg("failover: %s", err.msg);
    }
    return s;
}

static rl2_store_t *
redis_store(void)
{
    rl2_redis_conf_t conf;
    rl2_store_t     *s;
    rl2_err_t        err;

    rl2_redis_conf_init(&conf);
    conf.port = srv.port;
    conf.connect_timeout_ms = 1000;
    conf.command_timeout_ms = 100;
    if (rl2_store_redis_create(&conf, &s, &err) != RL2_OK) {
        fail_msg("store: %s", err.msg);
    }
    return s;
}

static rl2_circuit_t *
circuit_attach(void)
{
    rl2_circuit_conf_t conf = { 1, PROBE_MS, 0 };
    rl2_circuit_t     *c = NULL;

    return rl2_circuit_open(circuit_name, &conf, 0600, &c, NULL) == RL2_OK
               ? c
               : NULL;
}

static int
setup(void **state)
{
    flushed_setup(state);
    snprintf(circuit_name, sizeof(circuit_name), "/rl2test-%ld-fr.circuit",
             (long)getpid());
    assert_non_null(circuit = circuit_attach());
    redis = redis_store();
    fo = failover_over(redis, circuit);
    return 0;
}

static int
teardown(void **state)
{
    rl2_store_destroy(fo);
    rl2_store_destroy(redis);
    rl2_circuit_close(circuit);
    rl2_circuit_unlink(circuit_name, NULL);
    return watchdog_teardown(state);
}

static rl2_status_t
refund_now(rl2_store_t *s, rl2_layer_t *l, size_t n, rl2_err_t *err)
{
    rl2_clock_t now;

    rl2_clock_now(&now);
    return s->ops->refund(s, l, n, &now, err);
}

/* The slots Redis counts for layer l: its key's value, 0 when gone. */
static long long
slots_held(const rl2_layer_t *l)
{
    char        key[64];
    redisReply *r;
    long long   n;

    key_of(l, 's', key, sizeof(key));
    r = admin_cmd(admin, "GET %s", key);
    n = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

/* Until Redis counts `want` slots for l, 5 s at most: the count. */
static long long
slots_become(const rl2_layer_t *l, long long want)
{
    int64_t   deadline = mono_us() + 5 * SEC;
    long long n;

    while ((n = slots_held(l)) != want && mono_us() < deadline) {
        usleep(5000);
    }
    return n;
}

static void
open_circuit(void)
{
    assert_int_equal(rl2_circuit_failure(circuit, RL2_ROUTE_PRIMARY, mono_us()),
                     1);
}

/* Close it as a probe that found Redis back would, without the store
 * (which would replay the queue itself). */
static void
close_circuit(void)
{
    usleep(2 * PROBE_MS * 1000);
    assert_int_equal(rl2_circuit_route(circuit, mono_us()), RL2_ROUTE_PROBE);
    assert_int_equal(
        rl2_circuit_success(circuit, RL2_ROUTE_PROBE, mono_us(), NULL), 1);
}

/* Two streams hold slots of a limit of 3; one's release comes while the
 * circuit is open and is queued.  Then 6 processes at once each send a
 * refund of their own that Redis answers, and so each replays the queue:
 * the release is applied once (2 slots left, not 1). */
static void
test_queued_release_applied_once_by_racing_replays(void **state)
{
    enum { PROCS = 6 };
    rl2_limit_t *conc = limit_of(pol, "streams", RL2_ALGO_CONCURRENCY, 3, 0);
    rl2_limit_t *fw = limit_of(pol, "fw", RL2_ALGO_FIXED_WINDOW, 100, MINUTE);
    rl2_layer_t  a, b, c;
    rl2_circuit_stats_t cs;
    pid_t               pids[PROCS];
    int                 go[2], status;
    char                ch;

    (void)state;
    mk_layer(&a, conc, "site");
    mk_layer(&b, conc, "site");
    mk_layer(&c, conc, "site");
    must_apply(fo, &a, 1);
    must_apply(fo, &b, 1);
    must_apply(fo, &c, 1);
    assert_int_equal(a.committed, RL2_COMMITTED_PRIMARY);
    assert_int_equal(slots_held(&a), 3);
    open_circuit();
    assert_int_equal(refund_now(fo, &a, 1, NULL), RL2_OK);
    rl2_circuit_stats(circuit, &cs);
    assert_int_equal(cs.refunds_pending, 1);
    assert_int_equal(slots_held(&a), 3);
    close_circuit();
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            rl2_circuit_t *mine = circuit_attach();
            rl2_store_t   *r = redis_store();
            rl2_store_t   *f = failover_over(r, mine);
            char           who[16];
            rl2_layer_t    l;

            /* No cmocka assertions in a child: exit statuses. */
            close(go[1]);
            snprintf(who, sizeof(who), "p%d", i);
            mk_layer(&l, fw, who);
            if (apply_now(f, &l, 1, NULL) != RL2_OK || !l.committed) {
                _exit(2);
            }
            (void)!read(go[0], &ch, 1); /* EOF: everyone starts */
            _exit(refund_now(f, &l, 1, NULL) == RL2_OK ? 0 : 3);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < PROCS; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    rl2_circuit_stats(circuit, &cs);
    assert_int_equal(cs.refunds_replayed, 1);
    assert_int_equal(cs.refunds_pending, 0);
    assert_int_equal(slots_held(&a), 2);
    /* One more refund Redis answers replays nothing. */
    assert_int_equal(refund_now(fo, &b, 1, NULL), RL2_OK);
    assert_int_equal(slots_held(&a), 1);
}

/* A release sent to a stopped server gets no answer: counted failed,
 * not queued.  The server runs it when it resumes, so the count drops
 * by one; sending it again after the probe would have made it two. */
static void
test_release_sent_to_a_stopped_server_is_not_sent_again(void **state)
{
    rl2_limit_t *conc = limit_of(pol, "streams", RL2_ALGO_CONCURRENCY, 3, 0);
    rl2_layer_t  a, b, probe;
    rl2_circuit_stats_t cs;
    rl2_err_t           err;

    (void)state;
    mk_layer(&a, conc, "site");
    mk_layer(&b, conc, "site");
    must_apply(fo, &a, 1);
    must_apply(fo, &b, 1);
    assert_int_equal(slots_held(&a), 2);
    assert_int_equal(kill(srv.pid, SIGSTOP), 0);
    assert_int_equal(refund_now(fo, &a, 1, &err), RL2_ERR_STORE);
    assert_int_equal(rl2_circuit_state(circuit), RL2_CIRCUIT_OPEN);
    rl2_circuit_stats(circuit, &cs);
    assert_int_equal(cs.refunds_failed, 1);
    assert_int_equal(cs.refunds_queued, 0);
    usleep(200000); /* the stop lasts 200 ms */
    assert_int_equal(kill(srv.pid, SIGCONT), 0);
    assert_int_equal(slots_become(&a, 1), 1);
    /* The probe finds Redis back and is admitted: 2 held, nothing more
     * given back. */
    usleep(2 * PROBE_MS * 1000);
    mk_layer(&probe, conc, "site");
    must_apply(fo, &probe, 1);
    assert_int_equal(probe.committed, RL2_COMMITTED_PRIMARY);
    assert_int_equal(rl2_circuit_state(circuit), RL2_CIRCUIT_CLOSED);
    assert_int_equal(slots_held(&a), 2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_queued_release_applied_once_by_racing_replays, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_release_sent_to_a_stopped_server_is_not_sent_again, setup,
            teardown),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, store_group_setup,
                                  store_group_teardown);
}
