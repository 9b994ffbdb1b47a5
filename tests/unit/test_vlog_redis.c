/*
 * test_vlog_redis.c -- the Redis side of the violation log and of the
 * store's reset op, against a real redis-server on loopback (started by
 * the group setup):
 *   - reset deletes a layer's state and overflow keys;
 *   - an entry goes to the stream on the connection the store has used on
 *     this thread, reads back field for field; a thread with no
 *     connection yet (its refusals answered by the over-limit cache) opens
 *     one for it; while the circuit is open it goes to the ring.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "rl2_redis_test.h"
#include "ratelimit2/failover.h"
#include "ratelimit2/violation_log.h"
#include "store/store_internal.h"
#include "redis/redis_internal.h"
#include "obs/violation_log_internal.h"

static char zone[64], circuit_name[80];

static const rl2_rule_t rule = { .name = "login" };

/* A refusal of `client` by `limit`, as decide() would leave it. */
static void
mk_refusal(rl2_verdict_t *v, const rl2_limit_t *limit, const char *client)
{
    rl2_verdict_init(v);
    v->outcome = RL2_OUTCOME_DENY;
    v->n_layers = 1;
    v->shown = 0;
    mk_layer(&v->layers[0], limit, client);
    v->layers[0].rule = &rule;
    v->layers[0].refused = 1;
}

static rl2_vlog_t *
open_log(rl2_circuit_t *circuit)
{
    rl2_vlog_conf_t c = { 0, 1000, 64, "t:vlog" };
    rl2_vlog_t     *log;
    rl2_err_t       err;

    if (rl2_vlog_open(&c, zone, 0600, rl2_store_redis_pool(store), circuit,
                      &log, &err)
        != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    return log;
}

static size_t
ring_entries(rl2_vlog_stats_t *st)
{
    rl2_vlog_entry_t *e;
    size_t            n;
    rl2_err_t         err;

    if (rl2_vlog_ring_read(zone, &e, &n, st, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    free(e);
    return n;
}

static void
reset_deletes_state_and_overflow_keys(void **state)
{
    spec_t       sp = { "r", RL2_ALGO_FIXED_WINDOW, 1, HOUR, 0, 0, 1, HOUR };
    rl2_limit_t *limit = mk_limit(pol, &sp);
    rl2_layer_t  ly;
    rl2_clock_t  now;
    rl2_err_t    err;
    char         ks[64], ko[64];

    (void)state;
    mk_layer(&ly, limit, "192.0.2.1");
    must_apply(store, &ly, 1); /* the main limit */
    must_apply(store, &ly, 1); /* the overflow allowance */
    assert_int_equal(ly.overflow_used, 1);
    must_apply(store, &ly, 1);
    assert_int_equal(ly.refused, 1);
    key_of(&ly, 's', ks, sizeof(ks));
    key_of(&ly, 'o', ko, sizeof(ko));
    assert_int_equal(admin_int(admin, "EXISTS %s", ks), 1);
    assert_int_equal(admin_int(admin, "EXISTS %s", ko), 1);
    rl2_clock_now(&now);
    assert_int_equal(store->ops->reset(store, &ly, 1, &now, &err), RL2_OK);
    assert_int_equal(admin_int(admin, "EXISTS %s", ks), 0);
    assert_int_equal(admin_int(admin, "EXISTS %s", ko), 0);
    must_apply(store, &ly, 1);
    assert_int_equal(ly.refused, 0);
    assert_int_equal(ly.overflow_used, 0);
}

static void
entries_go_to_the_stream_on_the_threads_connection(void **state)
{
    rl2_limit_t *limit =
        limit_of(pol, "login_ip", RL2_ALGO_FIXED_WINDOW, 5, HOUR);
    rl2_vlog_t       *log = open_log(NULL);
    rl2_vlog_entry_t *e;
    rl2_vlog_stats_t  st;
    rl2_verdict_t     v;
    rl2_layer_t       ly;
    rl2_clock_t       now = { 1, 1700000000123456LL };
    rl2_redis_conf_t  rc;
    rl2_err_t         err;
    size_t            n;

    (void)state;
    mk_layer(&ly, limit, "192.0.2.2");
    must_apply(store, &ly, 1); /* this thread now has one */
    mk_refusal(&v, limit, "user:0123456789abcdef");
    rl2_vlog_record(log, pol, &v, "POST", "/auth/login?x=1\r\n", NULL, &now);
    assert_int_equal(admin_int(admin, "XLEN %s", "t:vlog"), 1);
    rl2_redis_conf_init(&rc);
    rc.port = srv.port;
    assert_int_equal(rl2_vlog_stream_read(&rc, "t:vlog", 100, &e, &n, &err),
                     RL2_OK);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].time_us, now.wall_us);
    assert_string_equal(e[0].rule, "login");
    assert_string_equal(e[0].limit_name, "login_ip");
    assert_string_equal(e[0].tier, "-");
    assert_string_equal(e[0].client, "user:0123456789abcdef");
    assert_string_equal(e[0].method, "POST");
    assert_string_equal(e[0].path, "/auth/login");
    assert_int_equal(e[0].limit, 5);
    assert_int_equal(e[0].window_us, HOUR);
    free(e);
    assert_int_equal(ring_entries(&st), 0);
    assert_int_equal(st.to_redis, 1);
    rl2_vlog_close(log);
}

/* The stream carries the count and the user agent; an entry written
 * before it did (no count, no ua field) is read with count -1 and no
 * user agent. */
static void
the_stream_reads_old_entries_and_new_fields(void **state)
{
    rl2_limit_t *limit =
        limit_of(pol, "login_ip", RL2_ALGO_FIXED_WINDOW, 5, HOUR);
    rl2_vlog_t       *log = open_log(NULL);
    rl2_vlog_entry_t *e;
    rl2_verdict_t     v;
    rl2_layer_t       ly;
    rl2_clock_t       now = { 1, 1700000000123456LL };
    rl2_redis_conf_t  rc;
    rl2_err_t         err;
    size_t            n;
    redisReply       *r;

    (void)state;
    r = redisCommand(admin,
                     "XADD t:vlog * t 1700000000000000 rule old limit l "
                     "tier - client 192.0.2.9 method GET path /old lim 5 "
                     "win 3600000000 skipped 0 factors %s variant %s "
                     "challenger 0",
                     "", "");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    mk_layer(&ly, limit, "192.0.2.2");
    must_apply(store, &ly, 1);
    mk_refusal(&v, limit, "192.0.2.2");
    v.layers[0].result.limit = 5;
    v.layers[0].result.remaining = 1;
    rl2_vlog_record(log, pol, &v, "GET", "/new", "curl/8.0 \"x\"\r\n", &now);
    rl2_redis_conf_init(&rc);
    rc.port = srv.port;
    assert_int_equal(rl2_vlog_stream_read(&rc, "t:vlog", 100, &e, &n, &err),
                     RL2_OK);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].path, "/old");
    assert_int_equal(e[0].count, -1);
    assert_string_equal(e[0].user_agent, "");
    assert_string_equal(e[1].path, "/new");
    assert_int_equal(e[1].count, 4);
    assert_string_equal(e[1].user_agent, "curl/8.0 \\x22x\\x22\\x0d\\x0a");
    free(e);
    /* An entry someone else added, raw bytes in its ua: escaped on read. */
    r = redisCommand(admin, "XADD t:vlog * t 1 count 2 ua %s", "a\"b\nc\x01");
    assert_non_null(r);
    freeReplyObject(r);
    assert_int_equal(rl2_vlog_stream_read(&rc, "t:vlog", 100, &e, &n, &err),
                     RL2_OK);
    assert_int_equal(n, 3);
    assert_string_equal(e[2].user_agent, "a\\x22b\\x0ac\\x01");
    assert_int_equal(e[2].count, 2);
    free(e);
    rl2_vlog_close(log);
}

/* Another thread, which never decided anything, has no connection. */
static void *
record_elsewhere(void *arg)
{
    rl2_verdict_t *v = ((void **)arg)[0];
    rl2_vlog_t    *log = ((void **)arg)[1];
    rl2_clock_t    now;

    rl2_clock_now(&now);
    rl2_vlog_record(log, pol, v, "GET", "/", NULL, &now);
    return NULL;
}

static void
a_thread_without_a_connection_opens_one_an_open_circuit_uses_the_ring(
    void **state)
{
    rl2_limit_t *limit = limit_of(pol, "l", RL2_ALGO_FIXED_WINDOW, 5, HOUR);
    rl2_circuit_conf_t cc;
    rl2_circuit_t     *circuit;
    rl2_vlog_t        *log;
    rl2_vlog_stats_t   st;
    rl2_verdict_t      v;
    rl2_layer_t        ly;
    rl2_clock_t        now;
    rl2_err_t          err;
    pthread_t          t;
    void              *args[2];

    (void)state;
    rl2_circuit_conf_default(&cc);
    if (rl2_circuit_open(circuit_name, &cc, 0600, &circuit, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    log = open_log(circuit);
    mk_refusal(&v, limit, "192.0.2.3");
    args[0] = &v;
    args[1] = log;
    assert_int_equal(pthread_create(&t, NULL, record_elsewhere, args), 0);
    pthread_join(t, NULL);
    assert_int_equal(ring_entries(&st), 0);
    assert_int_equal(st.redis_errors, 0);
    assert_int_equal(admin_int(admin, "XLEN %s", "t:vlog"), 1);
    /* This thread has a connection, but the circuit is open. */
    mk_layer(&ly, limit, "192.0.2.3");
    must_apply(store, &ly, 1);
    rl2_circuit_failure(circuit, RL2_ROUTE_PRIMARY, mono_us());
    assert_int_equal(rl2_circuit_state(circuit), RL2_CIRCUIT_OPEN);
    rl2_clock_now(&now);
    rl2_vlog_record(log, pol, &v, "GET", "/", NULL, &now);
    assert_int_equal(ring_entries(&st), 1);
    assert_int_equal(st.redis_errors, 0);
    assert_int_equal(admin_int(admin, "XLEN %s", "t:vlog"), 1);
    rl2_vlog_close(log);
    rl2_circuit_close(circuit);
}

/* The ring and the circuit in shared memory, which outlive a test. */
static void
unlink_zone(void)
{
    char name[96];

    rl2_vlog_ring_name(zone, name, sizeof(name));
    shm_unlink(name);
    shm_unlink(circuit_name);
}

static int
group_setup(void **state)
{
    snprintf(zone, sizeof(zone), "/rl2test-%ld-vlogr", (long)getpid());
    snprintf(circuit_name, sizeof(circuit_name), "%s.circuit", zone);
    return store_group_setup(state);
}

static int
group_teardown(void **state)
{
    store_group_teardown(state);
    unlink_zone();
    return 0;
}

static int
setup(void **state)
{
    flushed_setup(state);
    unlink_zone();
    return 0;
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, watchdog_teardown)
    const struct CMUnitTest tests[] = {
        T(reset_deletes_state_and_overflow_keys),
        T(entries_go_to_the_stream_on_the_threads_connection),
        T(the_stream_reads_old_entries_and_new_fields),
        T(a_thread_without_a_connection_opens_one_an_open_circuit_uses_the_ring),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
