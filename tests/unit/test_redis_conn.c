/*
 * test_redis_conn.c -- connections to Redis (redis_conn.c) and how the
 * store (store_redis.c) fails, against real redis-server processes on
 * loopback.
 *
 * Timeouts against a stopped server and reconnection after it, a refused
 * connection, AUTH with a password and with an ACL user, SELECT, the unix
 * socket, the per-thread cache across threads, fork() and a server that
 * closed the connection, and the configuration checks.  One server from
 * the group setup; the tests that need their own start it and teardown
 * stops it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define WATCHDOG_S 30

#include "rl2_redis_test.h"
#include "redis/redis_internal.h"

static srv_t own; /* a test's own server, stopped by teardown */

/* ---- failures: timeouts, refused connections ---- */

static rl2_store_t *
store_with(const srv_t *s, const rl2_redis_conf_t *tweak)
{
    rl2_redis_conf_t conf = *tweak;
    rl2_store_t     *st;
    rl2_err_t        err;

    conf.port = s->port;
    if (rl2_store_redis_create(&conf, &st, &err) != RL2_OK) {
        fail_msg("store: %s", err.msg);
    }
    return st;
}

static void
expect_store_error(rl2_store_t *s, const char *part, int64_t max_ms)
{
    rl2_layer_t l;
    rl2_err_t   err;
    int64_t     t0 = mono_us(), ms;

    mk_layer(&l, limit_of(pol, "failing", RL2_ALGO_FIXED_WINDOW, 5, MINUTE),
             "10.0.0.10");
    assert_int_equal(apply_now(s, &l, 1, &err), RL2_ERR_STORE);
    ms = (mono_us() - t0) / 1000;
    printf("  after %" PRId64 " ms: %s\n", ms, err.msg);
    assert_non_null(strstr(err.msg, part));
    assert_true(ms <= max_ms);
    assert_false(l.committed);
}

/* SIGSTOP: the kernel still accepts connections, nobody answers. */
static void
test_stopped_server_times_out_then_reconnects(void **state)
{
    rl2_redis_conf_t conf;
    rl2_store_t     *s;
    rl2_layer_t      l;
    char             name[32];

    (void)state;
    srv_start(&own, NULL);
    rl2_redis_conf_init(&conf);
    conf.connect_timeout_ms = 300;
    conf.command_timeout_ms = 300;
    s = store_with(&own, &conf);
    mk_layer(&l, limit_of(pol, "stopped", RL2_ALGO_TOKEN_BUCKET, 5, MINUTE),
             "10.0.0.11");
    must_apply(s, &l, 1);
    snprintf(name, sizeof(name), "127.0.0.1:%d", own.port);
    kill(own.pid, SIGSTOP);
    expect_store_error(s, name, 300 + 200);
    expect_store_error(s, "no answer within 300 ms", 300 + 200);
    kill(own.pid, SIGCONT);
    must_apply(s, &l, 1);
    assert_true(l.committed);
    rl2_store_destroy(s);
}

static void
test_refused_connection_fails_fast_naming_server(void **state)
{
    rl2_redis_conf_t conf;
    rl2_store_t     *s;
    srv_t            none;
    char             name[48];

    (void)state;
    memset(&none, 0, sizeof(none));
    none.port = free_port();
    rl2_redis_conf_init(&conf);
    s = store_with(&none, &conf);
    snprintf(name, sizeof(name), "127.0.0.1:%d: connect", none.port);
    expect_store_error(s, name, 100);
    rl2_store_destroy(s);
}

/* ---- authentication, databases, sockets ---- */

static void
test_password_auth(void **state)
{
    static const char *const extra[] = { "--requirepass", "s3cret", NULL };
    rl2_redis_conf_t         conf;
    rl2_store_t             *s;
    rl2_layer_t              l;
    char                     name[64];

    (void)state;
    srv_start(&own, extra);
    rl2_redis_conf_init(&conf);
    s = store_with(&own, &conf);
    /* NOAUTH, or a protocol error for an unauthenticated long command */
    snprintf(name, sizeof(name), "127.0.0.1:%d: apply on rl2:{", own.port);
    expect_store_error(s, name, 1000);
    rl2_store_destroy(s);
    snprintf(conf.password, sizeof(conf.password), "wrong");
    s = store_with(&own, &conf);
    expect_store_error(s, "AUTH refused", 1000);
    rl2_store_destroy(s);
    snprintf(conf.password, sizeof(conf.password), "s3cret");
    s = store_with(&own, &conf);
    mk_layer(&l, limit_of(pol, "auth", RL2_ALGO_FIXED_WINDOW, 5, MINUTE),
             "10.0.0.12");
    must_apply(s, &l, 1);
    assert_true(l.committed);
    rl2_store_destroy(s);
}

/* An ACL user that may touch only rl2:* keys: every key is there. */
static void
test_acl_user_auth(void **state)
{
    static const char *const extra[] = { "--requirepass", "s3cret", NULL };
    spec_t                   ov = {
                          "acl fw+ov", RL2_ALGO_FIXED_WINDOW, 1, MINUTE, 0, 0, 1, MINUTE
    };
    rl2_redis_conf_t conf;
    rl2_store_t     *s;
    rl2_layer_t      l[2];
    redisContext    *a;

    (void)state;
    srv_start(&own, extra);
    snprintf(own.password, sizeof(own.password), "s3cret");
    a = srv_admin(&own);
    freeReplyObject(admin_cmd(a, "ACL SETUSER limiter on >l1m1t ~rl2:* "
                                 "+@all"));
    redisFree(a);
    rl2_redis_conf_init(&conf);
    snprintf(conf.username, sizeof(conf.username), "limiter");
    snprintf(conf.password, sizeof(conf.password), "nope");
    s = store_with(&own, &conf);
    expect_store_error(s, "AUTH as \"limiter\" refused", 1000);
    rl2_store_destroy(s);
    snprintf(conf.password, sizeof(conf.password), "l1m1t");
    s = store_with(&own, &conf);
    mk_layer(&l[0], limit_of(pol, "acl sl", RL2_ALGO_SLIDING_LOG, 5, MINUTE),
             "10.0.0.13");
    mk_layer(&l[1], mk_limit(pol, &ov), "10.0.0.13");
    must_apply(s, l, 2);
    must_apply(s, l, 2);
    assert_true(l[0].committed && l[1].committed && l[1].overflow_used);
    rl2_store_destroy(s);
}

static void
test_select_database(void **state)
{
    rl2_redis_conf_t conf;
    rl2_store_t     *s;
    rl2_layer_t      l;

    (void)state;
    rl2_redis_conf_init(&conf);
    conf.db = 5;
    s = store_with(&srv, &conf);
    mk_layer(&l, limit_of(pol, "db 5", RL2_ALGO_FIXED_WINDOW, 5, MINUTE),
             "10.0.0.14");
    must_apply(s, &l, 1);
    assert_int_equal(admin_int(admin, "DBSIZE", NULL), 0);
    freeReplyObject(admin_cmd(admin, "SELECT 5"));
    assert_int_equal(admin_int(admin, "DBSIZE", NULL), 1);
    freeReplyObject(admin_cmd(admin, "SELECT 0"));
    rl2_store_destroy(s);
}

static void
test_unix_socket(void **state)
{
    rl2_redis_conf_t conf;
    rl2_store_t     *s;
    rl2_layer_t      l;

    (void)state;
    rl2_redis_conf_init(&conf);
    snprintf(conf.unix_path, sizeof(conf.unix_path), "%s", srv.sock);
    s = store_with(&srv, &conf);
    mk_layer(&l, limit_of(pol, "unix", RL2_ALGO_TOKEN_BUCKET, 5, MINUTE),
             "10.0.0.15");
    must_apply(s, &l, 1);
    assert_true(l.committed);
    rl2_store_destroy(s);
}

/* ---- the per-thread cache ---- */

static long long
client_id(rl2_redis_conn_t *c)
{
    const char        *argv[2] = { "CLIENT", "ID" };
    struct redisReply *r;
    long long          id;
    rl2_err_t          err;

    if (rl2_redis_command(c, 2, argv, NULL, "CLIENT ID", &r, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    id = r->integer;
    rl2_redis_reply_free(r);
    return id;
}

typedef struct {
    rl2_redis_pool_t  *pool;
    pthread_barrier_t *all_in;
    long long          id;
} pool_arg_t;

static void *
pool_thread(void *arg)
{
    pool_arg_t       *a = arg;
    rl2_redis_conn_t *c, *again;
    rl2_err_t         err;

    if (rl2_redis_pool_get(a->pool, &c, &err) != RL2_OK
        || rl2_redis_pool_get(a->pool, &again, &err) != RL2_OK) {
        a->id = -1;
    }
    else {
        a->id = c == again ? client_id(c) : -2;
    }
    /* alive together, so no two can be the same connection reused */
    pthread_barrier_wait(a->all_in);
    return NULL;
}

static void
test_pool_gives_each_thread_and_process_its_own_connection(void **state)
{
    rl2_redis_conf_t  conf;
    rl2_redis_pool_t *pool;
    rl2_redis_conn_t *c;
    pthread_barrier_t all_in;
    pthread_t         th[4];
    pool_arg_t        args[4];
    rl2_err_t         err;
    long long         mine;
    int               status;
    pid_t             pid;

    (void)state;
    rl2_redis_conf_init(&conf);
    conf.port = srv.port;
    conf.pipeline = 0; /* test_redis_pipe.c: one shared connection */
    assert_int_equal(rl2_redis_pool_create(&conf, &pool, &err), RL2_OK);
    pthread_barrier_init(&all_in, NULL, 4);
    for (int i = 0; i < 4; i++) {
        args[i] = (pool_arg_t){ pool, &all_in, 0 };
        pthread_create(&th[i], NULL, pool_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(args[i].id > 0);
        for (int j = 0; j < i; j++) {
            assert_true(args[i].id != args[j].id);
        }
    }
    pthread_barrier_destroy(&all_in);
    assert_int_equal(rl2_redis_pool_get(pool, &c, &err), RL2_OK);
    mine = client_id(c);
    /* a child never talks on its parent's socket */
    if ((pid = fork()) == 0) {
        rl2_redis_conn_t *cc;

        _exit(rl2_redis_pool_get(pool, &cc, &err) == RL2_OK
                      && client_id(cc) != mine
                  ? 0
                  : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(client_id(c), mine);
    /* closed by the server: replaced before a request is lost on it */
    freeReplyObject(admin_cmd(admin, "CLIENT KILL ID %lld", mine));
    assert_int_equal(rl2_redis_pool_get(pool, &c, &err), RL2_OK);
    assert_true(client_id(c) != mine);
    assert_string_equal(rl2_redis_pool_name(pool), rl2_redis_conn_name(c));
    rl2_redis_pool_destroy(pool);
}

static void
test_conf_check_rejects_bad_settings(void **state)
{
    rl2_redis_conf_t conf;
    rl2_store_t     *s;
    rl2_err_t        err;

    (void)state;
    rl2_redis_conf_init(&conf);
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_OK);
    snprintf(conf.username, sizeof(conf.username), "limiter");
    assert_int_equal(rl2_store_redis_create(&conf, &s, &err), RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "limiter"));
    rl2_redis_conf_init(&conf);
    conf.port = 0;
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_ERR_CONFIG);
    rl2_redis_conf_init(&conf);
    conf.command_timeout_ms = 0;
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_ERR_CONFIG);
    rl2_redis_conf_init(&conf);
    conf.db = -1;
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_ERR_CONFIG);
    /* a socket needs no port */
    rl2_redis_conf_init(&conf);
    conf.port = 0;
    snprintf(conf.unix_path, sizeof(conf.unix_path), "/run/redis.sock");
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_OK);
}

/* ---- Sentinel discovery and failover ---- */

static void
test_sentinel_spec_parsed_and_checked(void **state)
{
    rl2_redis_conf_t conf;
    rl2_err_t        err;

    (void)state;
    rl2_redis_conf_init(&conf);
    assert_int_equal(rl2_redis_sentinel_parse(&conf,
                                              "m@10.0.0.1:26379,"
                                              "[::1]:26380",
                                              &err),
                     RL2_OK);
    assert_string_equal(conf.master_name, "m");
    assert_int_equal(conf.n_sentinels, 2);
    assert_string_equal(conf.sentinels[1], "[::1]:26380");
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_OK);
    /* a sentinel and a unix socket do not go together */
    snprintf(conf.unix_path, sizeof(conf.unix_path), "/run/redis.sock");
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_ERR_CONFIG);
    rl2_redis_conf_init(&conf);
    assert_int_equal(rl2_redis_sentinel_parse(&conf, "@h:1", &err),
                     RL2_ERR_CONFIG);
    assert_int_equal(rl2_redis_sentinel_parse(&conf, "m@h", &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "\"h\""));
    assert_int_equal(rl2_redis_sentinel_parse(&conf, "m@h:1,", &err),
                     RL2_ERR_CONFIG);
    assert_int_equal(rl2_redis_sentinel_parse(&conf, "m@h:70000", &err),
                     RL2_ERR_CONFIG);
    assert_int_equal(rl2_redis_sentinel_parse(&conf,
                                              "m@a:1,a:2,a:3,a:4,"
                                              "a:5,a:6,a:7,a:8,a:9",
                                              &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "more than 8"));
}

static void
test_sentinel_unreachable_names_it(void **state)
{
    rl2_redis_conf_t  conf;
    rl2_redis_conn_t *c;
    rl2_err_t         err;
    char              spec[64];

    (void)state;
    rl2_redis_conf_init(&conf);
    /* the data server is no sentinel: it refuses the command */
    snprintf(spec, sizeof(spec), "m@127.0.0.1:%d", srv.port);
    assert_int_equal(rl2_redis_sentinel_parse(&conf, spec, &err), RL2_OK);
    assert_int_equal(rl2_redis_conn_open(&conf, &c, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "redis sentinel 127.0.0.1:"));
}

/* A replica (a master demoted by a failover) answers writes -READONLY:
 * the connection is then broken and will be replaced. */
static void
test_readonly_reply_breaks_connection(void **state)
{
    const char        *argv[3] = { "SET", "k", "v" };
    size_t             len[3] = { 3, 1, 1 };
    char               port[16];
    const char        *extra[4] = { "--replicaof", "127.0.0.1", port, NULL };
    rl2_redis_conf_t   conf;
    rl2_redis_conn_t  *c;
    struct redisReply *r;
    rl2_err_t          err;

    (void)state;
    snprintf(port, sizeof(port), "%d", srv.port);
    srv_start(&own, extra);
    rl2_redis_conf_init(&conf);
    conf.port = own.port;
    assert_int_equal(rl2_redis_conn_open(&conf, &c, &err), RL2_OK);
    assert_int_equal(rl2_redis_command(c, 3, argv, len, "SET", &r, &err),
                     RL2_OK);
    assert_true(rl2_redis_reply_readonly(r));
    assert_true(rl2_redis_conn_broken(c));
    rl2_redis_reply_free(r);
    rl2_redis_conn_close(c);
}

/* ---- fixture ---- */

static int
teardown(void **state)
{
    watchdog_teardown(state);
    srv_stop(&own);
    return 0;
}

#define T(f) cmocka_unit_test_setup_teardown(f, flushed_setup, teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_stopped_server_times_out_then_reconnects),
        T(test_refused_connection_fails_fast_naming_server),
        T(test_password_auth),
        T(test_acl_user_auth),
        T(test_select_database),
        T(test_unix_socket),
        T(test_pool_gives_each_thread_and_process_its_own_connection),
        T(test_conf_check_rejects_bad_settings),
        T(test_sentinel_spec_parsed_and_checked),
        T(test_sentinel_unreachable_names_it),
        T(test_readonly_reply_breaks_connection),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, srv_group_setup, srv_group_teardown);
}
