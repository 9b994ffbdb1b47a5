/*
 * test_redis.c -- the Redis store (store_redis.c) against a real
 * redis-server on loopback, started by the group setup.
 *
 * All-or-nothing layers, dry run, unlimited, refunds, peek, error
 * replies, exact counts under threads and processes (racing to load the
 * function library), the library lost (FUNCTION FLUSH), the fallback to
 * scripts wherever functions are refused (and there, NOSCRIPT), TTLs and
 * memory per key.  That the Lua computes what the C algorithms compute
 * is test_redis_lua.c's business; connections (timeouts, reconnection,
 * authentication, databases, sockets, the per-thread cache) are
 * test_redis_conn.c's.
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

#include "rl2_redis_test.h"
/* white box: rl2_redis_functions_reset() */
#include "algo/algo_internal.h"
#include "redis/redis_scripts.h"

/* ---- helpers ---- */

static void
must_peek(rl2_layer_t *l, size_t n)
{
    rl2_clock_t now;
    rl2_err_t   err;

    rl2_clock_now(&now);
    if (store->ops->peek(store, l, n, &now, &err) != RL2_OK) {
        fail_msg("peek: %s", err.msg);
    }
}

static void
must_refund(rl2_layer_t *l, size_t n)
{
    rl2_clock_t now;
    rl2_err_t   err;

    rl2_clock_now(&now);
    if (store->ops->refund(store, l, n, &now, &err) != RL2_OK) {
        fail_msg("refund: %s", err.msg);
    }
}

/* What one layer has left, seen by peek (a fresh copy of the layer). */
static int64_t
remaining(const rl2_layer_t *l)
{
    rl2_layer_t p = *l;

    must_peek(&p, 1);
    return p.result.allowed ? p.result.remaining + p.limit->cost : 0;
}

/* ---- all or nothing ---- */

static void
test_request_refused_by_one_layer_is_counted_by_none(void **state)
{
    rl2_limit_t *per_ip =
        limit_of(pol, "ip 3/min", RL2_ALGO_FIXED_WINDOW, 3, MINUTE);
    rl2_limit_t *per_user =
        limit_of(pol, "user 2/min", RL2_ALGO_SLIDING_LOG, 2, MINUTE);
    rl2_layer_t l[2], again[2];

    (void)state;
    mk_layer(&l[0], per_ip, "10.0.0.1");
    mk_layer(&l[1], per_user, "alice");
    memcpy(again, l, sizeof(l));
    must_apply(store, l, 2);
    must_apply(store, l, 2);
    assert_true(l[0].committed && l[1].committed);
    /* the user layer is full: the address layer must not count it */
    must_apply(store, l, 2);
    assert_true(l[1].refused);
    assert_false(l[0].refused);
    assert_false(l[0].committed);
    assert_false(l[1].committed);
    assert_int_equal(remaining(&l[0]), 1);
    /* and the reverse: a full address layer, a fresh user */
    mk_layer(&again[1], per_user, "bob");
    must_apply(store, again, 2);
    assert_int_equal(remaining(&again[0]), 0);
    must_apply(store, again, 2);
    assert_true(again[0].refused);
    assert_false(again[1].committed);
    assert_int_equal(remaining(&again[1]), 1);
}

static void
test_dry_run_and_unlimited_layers_never_refuse(void **state)
{
    rl2_limit_t *tight =
        limit_of(pol, "tight 1/min", RL2_ALGO_FIXED_WINDOW, 1, MINUTE);
    rl2_limit_t *unl =
        limit_of(pol, "counted 1/min", RL2_ALGO_TOKEN_BUCKET, 1, MINUTE);
    rl2_limit_t *user =
        limit_of(pol, "user 5/min", RL2_ALGO_FIXED_WINDOW, 5, MINUTE);
    rl2_layer_t l[3];

    (void)state;
    unl->unlimited = 1;
    mk_layer(&l[0], tight, "10.0.0.2");
    l[0].dry_run = 1;
    mk_layer(&l[1], unl, "10.0.0.2");
    mk_layer(&l[2], user, "carol");
    must_apply(store, l, 3);
    assert_true(l[0].committed && l[1].committed && l[2].committed);
    must_apply(store, l, 3);
    /* both would refuse, neither may: the enforcing layer counts */
    assert_true(l[0].refused && l[1].refused);
    assert_false(l[0].committed || l[1].committed);
    assert_true(l[2].committed);
    assert_int_equal(remaining(&l[2]), 3);
}

static void
test_refund_gives_back_main_and_overflow(void **state)
{
    spec_t sp = {
        "fw 1/min + 1/min", RL2_ALGO_FIXED_WINDOW, 1, MINUTE, 0, 0, 1, MINUTE
    };
    rl2_limit_t *lim = mk_limit(pol, &sp);
    rl2_limit_t *other =
        limit_of(pol, "other 4/min", RL2_ALGO_LEAKY_BUCKET, 4, MINUTE);
    rl2_layer_t first[2], second[2], third[2];

    (void)state;
    mk_layer(&first[0], lim, "10.0.0.3");
    mk_layer(&first[1], other, "10.0.0.3");
    memcpy(second, first, sizeof(first));
    memcpy(third, first, sizeof(first));
    must_apply(store, first, 2);
    must_apply(store, second, 2);
    assert_true(second[0].committed && second[0].overflow_used);
    must_apply(store, third, 2);
    assert_true(third[0].refused);
    assert_false(third[1].committed);
    assert_int_equal(remaining(&first[1]), 2);
    /* the overflow request goes back to the overflow allowance */
    must_refund(second, 2);
    assert_int_equal(remaining(&first[1]), 3);
    must_apply(store, third, 2);
    assert_true(third[0].committed && third[0].overflow_used);
    /* and the first one to the main limit */
    must_refund(first, 2);
    memcpy(third, first, sizeof(first));
    must_apply(store, third, 2);
    assert_true(third[0].committed);
    assert_false(third[0].overflow_used);
}

static void
test_peek_writes_nothing(void **state)
{
    rl2_algo_t  algos[] = { RL2_ALGO_TOKEN_BUCKET,   RL2_ALGO_SLIDING_LOG,
                            RL2_ALGO_SLIDING_WINDOW, RL2_ALGO_FIXED_WINDOW,
                            RL2_ALGO_LEAKY_BUCKET,   RL2_ALGO_CONCURRENCY,
                            RL2_ALGO_QUOTA };
    rl2_layer_t l[7];

    (void)state;
    for (int i = 0; i < 7; i++) {
        char name[32];

        snprintf(name, sizeof(name), "peek %s", rl2_algo_name(algos[i]));
        mk_layer(&l[i],
                 limit_of(pol, name, algos[i], 5,
                          algos[i] == RL2_ALGO_QUOTA ? DAY : MINUTE),
                 "10.0.0.4");
    }
    must_peek(l, 7);
    for (int i = 0; i < 7; i++) {
        assert_true(l[i].result.allowed);
        assert_int_equal(l[i].result.remaining, 4);
    }
    assert_int_equal(admin_int(admin, "DBSIZE", NULL), 0);
}

/* A key of the wrong type is the server's error, not an outage: the
 * connection stays usable. */
static void
test_error_reply_names_key_and_keeps_connection(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "wrongtype", RL2_ALGO_SLIDING_LOG, 5, MINUTE);
    rl2_layer_t l, ok;
    rl2_err_t   err;
    char        key[64];

    (void)state;
    mk_layer(&l, lim, "10.0.0.5");
    key_of(&l, 's', key, sizeof(key));
    freeReplyObject(admin_cmd(admin, "SET %s x", key));
    assert_int_equal(apply_now(store, &l, 1, &err), RL2_ERR_STORE);
    printf("  %s\n", err.msg);
    assert_non_null(strstr(err.msg, key));
    assert_non_null(strstr(err.msg, "WRONGTYPE"));
    mk_layer(&ok, lim, "10.0.0.6");
    must_apply(store, &ok, 1);
}

static void
test_parameters_beyond_exact_lua_are_refused(void **state)
{
    rl2_limit_t *lim = limit_of(pol, "huge window", RL2_ALGO_FIXED_WINDOW, 1,
                                60 * RL2_US_PER_S);
    rl2_limit_t  bad = *lim;
    rl2_layer_t  l;
    rl2_err_t    err;

    (void)state;
    /* Loading refuses such a limit for every store (configtest fails)... */
    bad.algo.window_us = INT64_C(1) << 51;
    assert_int_equal(rl2_limit_finish(pol, &bad, 0, &err), RL2_ERR_RANGE);
    assert_non_null(strstr(err.msg, "beyond what every store computes "
                                    "exactly (2^50)"));
    /* ...and the Redis store still refuses one that was not loaded. */
    bad = *lim;
    bad.algo.window_us = INT64_C(1) << 51;
    mk_layer(&l, &bad, "10.0.0.7");
    assert_int_equal(apply_now(store, &l, 1, &err), RL2_ERR_INVALID);
    assert_non_null(strstr(err.msg, "huge window"));
}

/* ---- exact under concurrency ---- */

#define WORKER_TRIES 60
#define THREADS      8
#define PROCS        4

typedef struct {
    const rl2_limit_t *limit;
    int                go; /* read end: EOF means start */
    int                admitted;
    int                errors;
} worker_t;

static void
worker_run(worker_t *w)
{
    char c;

    /* everyone blocks here until the test closes the write end */
    while (read(w->go, &c, 1) < 0 && errno == EINTR) {
    }
    for (int i = 0; i < WORKER_TRIES; i++) {
        rl2_layer_t l;
        rl2_err_t   err;

        mk_layer(&l, w->limit, "one key for all");
        if (apply_now(store, &l, 1, &err) != RL2_OK) {
            if (w->errors++ == 0) {
                fprintf(stderr, "  worker %d: %s\n", (int)getpid(), err.msg);
            }
            continue;
        }
        w->admitted += l.committed;
    }
}

static void *
worker_thread(void *arg)
{
    worker_run(arg);
    return NULL;
}

/* Forks first (no thread is running yet), then starts the threads; all
 * wait on one pipe, so processes and threads hammer the key together. */
static int
hammer(const rl2_limit_t *limit)
{
    int       go[2], res[2], total = 0, errors = 0;
    pid_t     pids[PROCS];
    pthread_t th[THREADS];
    worker_t  w[THREADS];

    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(res), 0);
    for (int p = 0; p < PROCS; p++) {
        if ((pids[p] = fork()) == 0) {
            worker_t me = { limit, go[0], 0, 0 };
            int      out[2];

            close(go[1]);
            worker_run(&me);
            /* one write (atomic below PIPE_BUF): children do not mix */
            out[0] = me.admitted;
            out[1] = me.errors;
            _exit(write(res[1], out, sizeof(out)) == sizeof(out) ? 0 : 1);
        }
        assert_true(pids[p] > 0);
    }
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker_t){ limit, go[0], 0, 0 };
        assert_int_equal(pthread_create(&th[t], NULL, worker_thread, &w[t]), 0);
    }
    close(go[1]);
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        total += w[t].admitted;
        errors += w[t].errors;
    }
    for (int p = 0; p < PROCS; p++) {
        int in[2], status;

        assert_int_equal(read(res[0], in, sizeof(in)), sizeof(in));
        total += in[0];
        errors += in[1];
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    close(go[0]);
    close(res[0]);
    close(res[1]);
    assert_int_equal(errors, 0);
    return total;
}

/* Each round starts without the function library: every worker that
 * meets "Function not found" loads it, all but the first are told it
 * already exists, and none may fail or miscount. */
static void
test_threads_and_processes_admit_exactly_the_limit(void **state)
{
    rl2_algo_t algos[] = { RL2_ALGO_FIXED_WINDOW, RL2_ALGO_SLIDING_LOG,
                           RL2_ALGO_TOKEN_BUCKET, RL2_ALGO_LEAKY_BUCKET };

    (void)state;
    for (int i = 0; i < 4; i++) {
        char         name[48];
        rl2_limit_t *lim;
        int64_t      t0 = mono_us();
        long long    loads = cmd_calls(admin, "function|load");
        int          admitted;

        snprintf(name, sizeof(name), "hammer %s", rl2_algo_name(algos[i]));
        lim = limit_of(pol, name, algos[i], 100, HOUR);
        freeReplyObject(admin_cmd(admin, "FUNCTION FLUSH"));
        admitted = hammer(lim);
        loads = cmd_calls(admin, "function|load") - loads;
        printf("  %-14s %d threads + %d processes, %d tries: %d admitted "
               "(%.0f ms), %lld FUNCTION LOAD\n",
               rl2_algo_name(algos[i]), THREADS, PROCS,
               (THREADS + PROCS) * WORKER_TRIES, admitted,
               (double)(mono_us() - t0) / 1000, loads);
        assert_int_equal(admitted, 100);
        assert_true(loads >= 1);
        /* the losers of the race took "already exists" for success */
        assert_int_equal(cmd_calls(admin, "evalsha"), 0);
    }
}

/* ---- the function library ---- */

static long long
libraries(void)
{
    redisReply *r = admin_cmd(admin, "FUNCTION LIST LIBRARYNAME rl2_*");
    long long   n = (long long)r->elements;

    freeReplyObject(r);
    return n;
}

/* A server that lost the library (restart, failover, FUNCTION FLUSH) is
 * given it again by the first call that misses it, and that call counts. */
static void
test_flushed_functions_are_loaded_again(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "noscript", RL2_ALGO_TOKEN_BUCKET, 5, MINUTE);
    rl2_layer_t l;
    long long   fcall, loads;

    (void)state;
    mk_layer(&l, lim, "10.0.0.8");
    must_apply(store, &l, 1);
    assert_int_equal(libraries(), 1);
    freeReplyObject(admin_cmd(admin, "FUNCTION FLUSH"));
    assert_int_equal(libraries(), 0);
    fcall = cmd_calls(admin, "fcall");
    loads = cmd_calls(admin, "function|load");
    must_apply(store, &l, 1);
    assert_true(l.committed);
    /* "Function not found", FUNCTION LOAD, then the call itself */
    assert_int_equal(cmd_calls(admin, "fcall"), fcall + 2);
    assert_int_equal(cmd_calls(admin, "function|load"), loads + 1);
    assert_int_equal(libraries(), 1);
    must_apply(store, &l, 1);
    assert_int_equal(cmd_calls(admin, "fcall"), fcall + 3);
    assert_int_equal(cmd_calls(admin, "function|load"), loads + 1);
    assert_int_equal(remaining(&l), 2);
    assert_int_equal(cmd_calls(admin, "evalsha"), 0);
}

/* ---- scripts: the fallback when functions are refused ---- */

/* A store as `user` on s (admin connection a), whose server or ACL
 * refuses it functions: its first call completes as a script and switches
 * the process to scripts, so the second is EVALSHA too.  Then back to
 * functions, as a new process would be. */
static void
expect_scripts(const srv_t *s, redisContext *a, const char *user,
               const char *password, const char *why)
{
    rl2_limit_t *lim = limit_of(pol, why, RL2_ALGO_TOKEN_BUCKET, 5, MINUTE);
    rl2_store_t *st = mk_store_as(s, 0, user, password);
    long long    evalsha = cmd_calls(a, "evalsha");
    rl2_layer_t  l;

    mk_layer(&l, lim, "10.0.0.8");
    must_apply(st, &l, 1);
    assert_true(l.committed);
    must_apply(st, &l, 1);
    assert_true(l.committed);
    printf("  %s: %lld EVALSHA\n", why, cmd_calls(a, "evalsha") - evalsha);
    assert_int_equal(cmd_calls(a, "evalsha"), evalsha + 2);
    rl2_store_destroy(st);
    rl2_redis_functions_reset();
}

/* Each way a server says no: an ACL without FCALL (NOPERM), an ACL with
 * FCALL but without FUNCTION LOAD and no library yet (NOPERM to the load),
 * a server without FCALL at all (Redis 6: unknown command). */
static void
test_refused_functions_fall_back_to_scripts(void **state)
{
    static const char *const no_fcall[] = { "--rename-command", "FCALL", "",
                                            NULL };
    redisContext            *a;
    srv_t                    old;

    (void)state;
    acl_user_without_functions(admin);
    expect_scripts(&srv, admin, NOFN_USER, NOFN_PASS, "no +fcall");
    freeReplyObject(admin_cmd(admin, "ACL SETUSER fcall-only on >f0nly ~* "
                                     "+@all -function"));
    freeReplyObject(admin_cmd(admin, "FUNCTION FLUSH"));
    expect_scripts(&srv, admin, "fcall-only", "f0nly", "no +function|load");
    assert_int_equal(libraries(), 0);
    srv_start(&old, no_fcall);
    a = srv_admin(&old);
    expect_scripts(&old, a, NULL, NULL, "no FCALL command");
    redisFree(a);
    srv_stop(&old);
}

/* The ACL user of docs/operations.md (keep the two in step): the calls of
 * the Lua and every command the Lua runs, which Redis checks against the
 * user too.  Without +fcall +function|load: scripts. */
#define DOC_ACL_SCRIPTS \
    "~rl2:* +evalsha +eval +script|load +ping +select " \
    "+time +get +set +del +zadd +zcard +zcount +zrange +zrem " \
    "+zremrangebyscore +pexpireat"
#define DOC_ACL "+fcall +function|load " DOC_ACL_SCRIPTS

/* Every entry (apply until refused, peek, refund) of every algorithm, and
 * an overflow allowance, as the user that acl describes; `counted`: the
 * command that must carry them. */
static void
every_entry_as(const char *setuser, const char *counted)
{
    rl2_algo_t algos[] = { RL2_ALGO_TOKEN_BUCKET,   RL2_ALGO_SLIDING_LOG,
                           RL2_ALGO_SLIDING_WINDOW, RL2_ALGO_FIXED_WINDOW,
                           RL2_ALGO_LEAKY_BUCKET,   RL2_ALGO_CONCURRENCY,
                           RL2_ALGO_QUOTA };
    spec_t    ov = { "doc acl fw+ov", RL2_ALGO_FIXED_WINDOW, 1, MINUTE, 0, 0, 1,
                     MINUTE };
    long long before = cmd_calls(admin, counted);
    rl2_store_t *s;
    rl2_layer_t  l[8];
    rl2_clock_t  now;
    rl2_err_t    err;

    freeReplyObject(admin_cmd(admin, setuser));
    s = mk_store_as(&srv, 0, "ratelimit2", "secret");
    for (int i = 0; i < 7; i++) {
        char name[48];

        snprintf(name, sizeof(name), "doc acl %s", rl2_algo_name(algos[i]));
        mk_layer(&l[i],
                 limit_of(pol, name, algos[i], 1,
                          algos[i] == RL2_ALGO_QUOTA ? DAY : MINUTE),
                 counted);
    }
    mk_layer(&l[7], mk_limit(pol, &ov), counted);
    for (int k = 0; k < 3; k++) {
        rl2_layer_t c[8];

        memcpy(c, l, sizeof(c));
        must_apply(s, c, 8);
        /* the first is refunded: the second fits again */
        assert_true(k < 2 ? c[0].committed : c[0].refused);
        rl2_clock_now(&now);
        if (s->ops->peek(s, c, 8, &now, &err) != RL2_OK
            || (k == 0 && s->ops->refund(s, c, 8, &now, &err) != RL2_OK)) {
            fail_msg("%s: %s", counted, err.msg);
        }
    }
    /* 3 applies, 3 peeks, 1 refund (and FCALL's first miss) */
    assert_true(cmd_calls(admin, counted) >= before + 7);
    rl2_store_destroy(s);
    rl2_redis_functions_reset();
}

static void
test_documented_acl_user_runs_every_entry(void **state)
{
    (void)state;
    freeReplyObject(admin_cmd(admin, "FUNCTION FLUSH"));
    every_entry_as("ACL SETUSER ratelimit2 reset on >secret " DOC_ACL, "fcall");
    every_entry_as("ACL SETUSER ratelimit2 reset on >secret " DOC_ACL_SCRIPTS,
                   "evalsha");
}

/* Under scripts, a server that lost its script cache answers NOSCRIPT,
 * and the call goes again as EVAL, which caches the script again. */
static void
test_flushed_script_cache_falls_back_to_eval(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "noscript", RL2_ALGO_TOKEN_BUCKET, 5, MINUTE);
    rl2_store_t *s;
    rl2_layer_t  l;
    long long    eval, evalsha;

    (void)state;
    acl_user_without_functions(admin);
    s = mk_store_as(&srv, 0, NOFN_USER, NOFN_PASS);
    mk_layer(&l, lim, "10.0.0.8");
    must_apply(s, &l, 1);
    freeReplyObject(admin_cmd(admin, "SCRIPT FLUSH"));
    eval = cmd_calls(admin, "eval");
    evalsha = cmd_calls(admin, "evalsha");
    must_apply(s, &l, 1);
    assert_true(l.committed);
    assert_int_equal(cmd_calls(admin, "eval"), eval + 1);
    /* EVAL cached it again: back to EVALSHA */
    must_apply(s, &l, 1);
    assert_int_equal(cmd_calls(admin, "eval"), eval + 1);
    assert_int_equal(cmd_calls(admin, "evalsha"), evalsha + 2);
    assert_int_equal(remaining(&l), 2);
    rl2_store_destroy(s);
    rl2_redis_functions_reset();
}

/* ---- expiry and memory ---- */

typedef struct {
    rl2_layer_t layer;
    int64_t     main_us; /* longest TTL the state key may have */
    int64_t     ov_us;   /* same for the overflow key */
} ttl_case_t;

static int64_t
bucket_cap_us(const rl2_algo_params_t *p)
{
    int64_t t = p->window_us / p->limit + (p->window_us % p->limit != 0);

    return (p->burst > 0 ? p->burst : p->limit) * t;
}

static int64_t
ttl_bound(const rl2_algo_params_t *p)
{
    switch (p->algo) {
    case RL2_ALGO_TOKEN_BUCKET:
    case RL2_ALGO_LEAKY_BUCKET:
        return bucket_cap_us(p);
    case RL2_ALGO_SLIDING_WINDOW:
        return 2 * p->window_us; /* this window's units weigh on the next */
    case RL2_ALGO_CONCURRENCY:
        return HOUR;
    case RL2_ALGO_QUOTA:
        return p->period == RL2_PERIOD_DAY ? DAY : 31 * DAY;
    default:
        return p->window_us;
    }
}

/* The case whose state key is `key`, or -1. */
static long
state_case(const ttl_case_t *tc, size_t n, const char *key)
{
    char k[64];

    for (size_t i = 0; i < n; i++) {
        key_of(&tc[i].layer, 's', k, sizeof(k));
        if (strcmp(k, key) == 0) {
            return (long)i;
        }
    }
    return -1;
}

/* May case c's state key be gone at t1_us when it was made from t0_us on?
 * A fixed window's or a quota's key ends with its aligned span, which the
 * scripts reckon on Redis TIME (on one host, this wall clock): the span
 * can end while the case runs, whatever instant the test starts at. */
static int
span_ended(const ttl_case_t *c, int64_t t0_us, int64_t t1_us)
{
    const rl2_algo_params_t *p = &c->layer.limit->algo;
    int64_t                  start_us, end_us;

    if (p->algo != RL2_ALGO_FIXED_WINDOW && p->algo != RL2_ALGO_QUOTA) {
        return 0;
    }
    rl2_span_bounds(p, t0_us, &start_us, &end_us);
    return t1_us >= end_us;
}

/* The longest TTL of key, the state key of case c (state_case) or, c -1,
 * an overflow key. */
static int64_t
key_ttl_bound(const ttl_case_t *tc, size_t n, long c, const char *key)
{
    char k[64];

    if (c >= 0) {
        return tc[c].main_us;
    }
    for (size_t i = 0; i < n; i++) {
        key_of(&tc[i].layer, 'o', k, sizeof(k));
        if (strcmp(k, key) == 0 && tc[i].ov_us > 0) {
            return tc[i].ov_us;
        }
    }
    fail_msg("key %s was not made by any layer", key);
    return 0;
}

static void
ttl_cases(ttl_case_t *tc, size_t *n)
{
    static const spec_t specs[] = {
        { "ttl tb", RL2_ALGO_TOKEN_BUCKET, 4, 10 * SEC, 6, 0, 0, 0 },
        { "ttl lb", RL2_ALGO_LEAKY_BUCKET, 4, 10 * SEC, 0, 0, 0, 0 },
        { "ttl fw", RL2_ALGO_FIXED_WINDOW, 4, 10 * SEC, 0, 0, 2, MINUTE },
        { "ttl sw", RL2_ALGO_SLIDING_WINDOW, 4, 10 * SEC, 0, 0, 0, 0 },
        { "ttl sl", RL2_ALGO_SLIDING_LOG, 4, 10 * SEC, 0, 0, 1, 20 * SEC },
        { "ttl cc", RL2_ALGO_CONCURRENCY, 4, 0, 0, 0, 0, 0 },
        { "ttl day", RL2_ALGO_QUOTA, 4, DAY, 0, RL2_PERIOD_DAY, 0, 0 },
        { "ttl month", RL2_ALGO_QUOTA, 4, 0, 0, RL2_PERIOD_MONTH, 0, 0 },
    };

    *n = sizeof(specs) / sizeof(specs[0]);
    for (size_t i = 0; i < *n; i++) {
        rl2_limit_t *lim = mk_limit(pol, &specs[i]);

        mk_layer(&tc[i].layer, lim, "10.0.0.9");
        tc[i].main_us = ttl_bound(&lim->algo);
        tc[i].ov_us = lim->overflow.limit ? ttl_bound(&lim->overflow) : 0;
    }
}

/* Full, over the overflow, refused, refunded: every key any of that made
 * must expire within what its window needs. */
static void
test_every_key_expires_within_its_window(void **state)
{
    ttl_case_t  tc[8];
    int         state_seen[8] = { 0 };
    size_t      n, seen = 0, gone = 0;
    char        cursor[32] = "0";
    redisReply *r;
    int64_t     t0_us, t1_us;

    (void)state;
    ttl_cases(tc, &n);
    /* "ttl fw" fills its 10 s window and its overflow in one span */
    window_room(10 * SEC);
    t0_us = wall_us();
    for (size_t i = 0; i < n; i++) {
        rl2_layer_t l, held;

        for (int k = 0; k < 7; k++) {
            l = tc[i].layer;
            must_apply(store, &l, 1);
            if (l.committed) {
                held = l;
            }
        }
        must_refund(&held, 1);
    }
    /* a state refunded back to "full" expires within the millisecond */
    usleep(3000);
    do {
        r = admin_cmd(admin, "SCAN %s COUNT 1000", cursor);
        for (size_t j = 0; j < r->element[1]->elements; j++) {
            const char *key = r->element[1]->element[j]->str;
            long        c = state_case(tc, n, key);
            int64_t     bound = key_ttl_bound(tc, n, c, key);
            long long   pttl = admin_int(admin, "PTTL %s", key);

            printf("  %s PTTL %lld ms (window needs %" PRId64 ")\n", key, pttl,
                   bound / 1000);
            /* PXAT rounds up to the next ms */
            assert_true(pttl > 0);
            assert_true(pttl <= bound / 1000 + 1);
            if (c >= 0) {
                state_seen[c] = 1;
            }
            seen++;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    t1_us = wall_us();
    /* A state key may be missing only where its span ended meanwhile: a
     * fixed window's 10 s spans end at every multiple of 10 s, which can
     * fall between the applies and the scan. */
    for (size_t i = 0; i < n; i++) {
        if (!state_seen[i]) {
            int ended = span_ended(&tc[i], t0_us, t1_us);

            printf("  %s: no state key (its span ended: %d)\n",
                   tc[i].layer.limit->name, ended);
            assert_true(ended);
            gone++;
        }
    }
    /* every state key and the fixed window's overflow key; the sliding
     * log's one-unit overflow was refunded back to full, which is the
     * same as no key: it is gone */
    assert_int_equal(seen, n + 1 - gone);
    {
        char key[64];

        key_of(&tc[4].layer, 'o', key, sizeof(key));
        assert_int_equal(admin_int(admin, "EXISTS %s", key), 0);
    }
}

static long long
memory_usage(const rl2_layer_t *l)
{
    char key[64];

    key_of(l, 's', key, sizeof(key));
    return admin_int(admin, "MEMORY USAGE %s SAMPLES 0", key);
}

static void
test_memory_per_key(void **state)
{
    rl2_algo_t  algos[] = { RL2_ALGO_TOKEN_BUCKET,   RL2_ALGO_SLIDING_LOG,
                            RL2_ALGO_SLIDING_WINDOW, RL2_ALGO_FIXED_WINDOW,
                            RL2_ALGO_LEAKY_BUCKET,   RL2_ALGO_CONCURRENCY,
                            RL2_ALGO_QUOTA };
    long long   bytes[7];
    rl2_layer_t l;

    (void)state;
    for (int i = 0; i < 7; i++) {
        char name[48];

        snprintf(name, sizeof(name), "mem %s", rl2_algo_name(algos[i]));
        mk_layer(&l,
                 limit_of(pol, name, algos[i], 1000,
                          algos[i] == RL2_ALGO_QUOTA ? DAY : HOUR),
                 "2001:db8::/64");
        must_apply(store, &l, 1);
        bytes[i] = memory_usage(&l);
        printf("  MEMORY USAGE %-14s %4lld bytes per key\n",
               rl2_algo_name(algos[i]), bytes[i]);
        if (algos[i] == RL2_ALGO_SLIDING_LOG) {
            for (int k = 1; k < 100; k++) {
                must_apply(store, &l, 1);
            }
            printf("  MEMORY USAGE %-14s %4lld bytes with 100 entries\n",
                   "sliding_log", memory_usage(&l));
        }
    }
    assert_true(bytes[0] <= 150); /* token_bucket */
    assert_true(bytes[3] <= 150); /* fixed_window */
}

#define T(f) \
    cmocka_unit_test_setup_teardown(f, flushed_setup, watchdog_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_request_refused_by_one_layer_is_counted_by_none),
        T(test_dry_run_and_unlimited_layers_never_refuse),
        T(test_refund_gives_back_main_and_overflow),
        T(test_peek_writes_nothing),
        T(test_error_reply_names_key_and_keeps_connection),
        T(test_parameters_beyond_exact_lua_are_refused),
        T(test_threads_and_processes_admit_exactly_the_limit),
        T(test_flushed_functions_are_loaded_again),
        T(test_refused_functions_fall_back_to_scripts),
        T(test_flushed_script_cache_falls_back_to_eval),
        T(test_documented_acl_user_runs_every_entry),
        T(test_every_key_expires_within_its_window),
        T(test_memory_per_key),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, store_group_setup,
                                  store_group_teardown);
}
