/*
 * test_redis_pipe.c -- pipelining (redis_pipe.c): the threads of a
 * process share one connection and their concurrent commands are written
 * together, against real redis-server processes on loopback.
 *
 * Many threads applying at once each get their own replies (distinct
 * limits, so a reply handed to the wrong thread shows) and every call is
 * counted once; one connection serves them all; a stopped server fails
 * every waiting thread within its timeout and the next calls reconnect;
 * replies of commands whose callers gave up are read and dropped, so no
 * later caller gets another's reply; a child after fork() opens its own
 * connection; an answered thread that goes to sleep for its answer just
 * before the leader marks it handed still wakes; a command queued while
 * the leader yields joins its batch, and a lone thread yields once after
 * a batch of many, not on every call; a leader whose time runs out while
 * it yields writes nothing and fails with the timeout error, and the
 * lead passes on; a fork while a leader yields leaves the child a pipe
 * of its own; the option parses.
 * Threads record what went wrong and the main thread asserts (cmocka's
 * checks belong to the main thread).
 *
 * redis_pipe.c is built into this program with its test seams defined, so
 * that a test can hold the leader and a waiter at chosen points of the
 * wake-up protocol, or hold a leader in its yield as long as a busy CPU
 * might, and run an interleaving that timing alone makes rare
 * (the library's copy is then not linked in).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define WATCHDOG_S 60

#include "ratelimit2/store_opts.h"
#include "rl2_redis_test.h"
#include "redis/redis_internal.h"

struct rl2_pipe_waiter;
static void pipe_seam(int point, const struct rl2_pipe_waiter *w);
#define RL2_PIPE_SEAM(point, w) pipe_seam((point), (w))
#include "../../common/redis/redis_pipe.c"

#define THREADS 32
#define CALLS   40

static srv_t own; /* a test's own server, stopped by teardown */

static rl2_store_t *
pipe_store(const srv_t *s, int timeout_ms)
{
    rl2_redis_conf_t conf;
    rl2_store_t     *st;
    rl2_err_t        err;

    rl2_redis_conf_init(&conf);
    assert_int_equal(conf.pipeline, 1); /* the default */
    conf.pipeline = 1;
    conf.port = s->port;
    conf.connect_timeout_ms = timeout_ms;
    conf.command_timeout_ms = timeout_ms;
    if (rl2_store_redis_create(&conf, &st, &err) != RL2_OK) {
        fail_msg("store: %s", err.msg);
    }
    return st;
}

static rl2_redis_pipe_stats_t
pipe_stats(rl2_store_t *s)
{
    rl2_redis_pipe_stats_t ps;

    assert_true(rl2_redis_pool_pipe_stats(rl2_store_redis_pool(s), &ps));
    printf("  %" PRIu64 " commands in %" PRIu64 " batches, at most %" PRIu64
           " in one; %" PRIu64 " gave up, %" PRIu64 " replies dropped\n",
           ps.commands, ps.batches, ps.max_batch, ps.gave_up, ps.dropped);
    return ps;
}

static long long
connected_clients(void)
{
    redisReply *r = admin_cmd(admin, "INFO clients");
    const char *p = strstr(r->str, "connected_clients:");
    long long   n;

    assert_non_null(p);
    n = strtoll(p + 18, NULL, 10);
    freeReplyObject(r);
    return n;
}

/* ---- every thread its own replies, every call counted once ---- */

typedef struct {
    rl2_store_t       *s;
    const rl2_limit_t *own;    /* this thread's, of its own size */
    const rl2_limit_t *shared; /* every thread's */
    int                i;
    pthread_barrier_t *go;
    char               bad[RL2_ERR_MAX + 64]; /* "" when all went well */
} apply_arg_t;

static void *
apply_thread(void *arg)
{
    apply_arg_t *a = arg;
    rl2_layer_t  l[2];
    rl2_err_t    err;
    char         client[32];

    snprintf(client, sizeof(client), "10.1.0.%d", a->i);
    mk_layer(&l[0], a->own, client);
    mk_layer(&l[1], a->shared, "everyone");
    pthread_barrier_wait(a->go);
    for (int k = 0; k < CALLS && a->bad[0] == '\0'; k++) {
        if (apply_now(a->s, l, 2, &err) != RL2_OK) {
            snprintf(a->bad, sizeof(a->bad), "call %d: %s", k, err.msg);
        }
        else if (l[0].result.limit != a->own->algo.limit
                 || l[0].result.remaining != a->own->algo.limit - k - 1
                 || !l[0].committed || !l[1].committed) {
            snprintf(a->bad, sizeof(a->bad),
                     "call %d: limit %" PRId64 " remaining %" PRId64
                     ", expected %" PRId64 " and %" PRId64,
                     k, l[0].result.limit, l[0].result.remaining,
                     a->own->algo.limit, a->own->algo.limit - k - 1);
        }
    }
    return NULL;
}

static void
test_threads_get_their_own_replies_and_every_call_counts(void **state)
{
    pthread_t              th[THREADS];
    apply_arg_t            args[THREADS];
    pthread_barrier_t      go;
    const rl2_limit_t     *shared;
    rl2_store_t           *s;
    rl2_layer_t            l;
    rl2_redis_pipe_stats_t ps;
    rl2_clock_t            now;
    rl2_err_t              err;
    char                   name[32];

    (void)state;
    s = pipe_store(&srv, 2000);
    /* token buckets of a day: no refill worth a unit during the test */
    shared = limit_of(pol, "shared", RL2_ALGO_TOKEN_BUCKET, 2000, DAY);
    pthread_barrier_init(&go, NULL, THREADS);
    for (int i = 0; i < THREADS; i++) {
        snprintf(name, sizeof(name), "own-%d", i);
        args[i] = (apply_arg_t){ s, NULL, shared, i, &go, "" };
        args[i].own =
            limit_of(pol, name, RL2_ALGO_TOKEN_BUCKET, 100 + 7 * i, DAY);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_create(&th[i], NULL, apply_thread, &args[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        if (args[i].bad[0] != '\0') {
            fail_msg("thread %d: %s", i, args[i].bad);
        }
    }
    pthread_barrier_destroy(&go);
    /* the shared key counted every call once: one more leaves this */
    mk_layer(&l, shared, "everyone");
    rl2_clock_now(&now);
    assert_int_equal(s->ops->apply(s, &l, 1, &now, &err), RL2_OK);
    assert_int_equal(l.result.remaining, 2000 - THREADS * CALLS - 1);
    ps = pipe_stats(s);
    assert_true(ps.commands >= THREADS * CALLS);
    assert_true(ps.batches < ps.commands);
    assert_true(ps.max_batch > 1 && ps.max_batch <= RL2_PIPE_BATCH_MAX);
    assert_int_equal(ps.gave_up, 0);
    /* one connection for the 32 threads, beside the admin's */
    assert_int_equal(connected_clients(), 2);
    rl2_store_destroy(s);
}

/* ---- a stopped server ---- */

typedef struct {
    rl2_store_t       *s;
    const rl2_limit_t *limit;
    int                i;
    pthread_barrier_t *go;
    rl2_status_t       st;
    int64_t            ms;
    char               msg[RL2_ERR_MAX];
} stop_arg_t;

static void *
stop_thread(void *arg)
{
    stop_arg_t *a = arg;
    rl2_layer_t l;
    rl2_err_t   err;
    char        client[32];
    int64_t     t0;

    snprintf(client, sizeof(client), "10.2.0.%d", a->i);
    mk_layer(&l, a->limit, client);
    err.msg[0] = '\0';
    pthread_barrier_wait(a->go);
    t0 = mono_us();
    a->st = apply_now(a->s, &l, 1, &err);
    a->ms = (mono_us() - t0) / 1000;
    snprintf(a->msg, sizeof(a->msg), "%s", err.msg);
    return NULL;
}

/* All threads at once; returns how many succeeded. */
static int
stop_round(stop_arg_t *args, int n)
{
    pthread_t         th[THREADS];
    pthread_barrier_t go;
    int               ok = 0;

    pthread_barrier_init(&go, NULL, (unsigned)n);
    for (int i = 0; i < n; i++) {
        args[i].go = &go;
        pthread_create(&th[i], NULL, stop_thread, &args[i]);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].st == RL2_OK;
    }
    pthread_barrier_destroy(&go);
    return ok;
}

static void
test_stopped_server_fails_every_waiter_within_its_timeout(void **state)
{
    stop_arg_t         args[16];
    const rl2_limit_t *limit;
    rl2_store_t       *s;
    char               name[32];

    (void)state;
    srv_start(&own, NULL);
    s = pipe_store(&own, 200);
    limit = limit_of(pol, "stop", RL2_ALGO_TOKEN_BUCKET, 100, DAY);
    for (int i = 0; i < 16; i++) {
        args[i] = (stop_arg_t){ s, limit, i, NULL, RL2_OK, 0, "" };
    }
    assert_int_equal(stop_round(args, 16), 16); /* connected, loaded */
    snprintf(name, sizeof(name), "127.0.0.1:%d", own.port);
    kill(own.pid, SIGSTOP);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(stop_round(args, 16), 0);
        for (int i = 0; i < 16; i++) {
            if (i == 0) {
                printf("  after %" PRId64 " ms: %s\n", args[i].ms, args[i].msg);
            }
            assert_int_equal(args[i].st, RL2_ERR_STORE);
            assert_non_null(strstr(args[i].msg, name));
            assert_non_null(strstr(args[i].msg, "no answer within 200 ms"));
            assert_true(args[i].ms <= 200 + 150);
        }
    }
    kill(own.pid, SIGCONT);
    /* the next calls reconnect */
    assert_int_equal(stop_round(args, 16), 16);
    pipe_stats(s);
    rl2_store_destroy(s);
}

/* ---- replies dropped, the stream in step ---- */

typedef struct {
    rl2_redis_pool_t *pool;
    int               i;
    int               ok;
    int               timeouts;
    char              bad[RL2_ERR_MAX + 64];
} echo_arg_t;

static void *
echo_thread(void *arg)
{
    echo_arg_t       *a = arg;
    rl2_redis_conn_t *c;
    redisReply       *r;
    rl2_err_t         err;
    char              token[48];
    const char       *argv[2] = { "ECHO", token };

    for (int k = 0; k < 40 && a->bad[0] == '\0'; k++) {
        snprintf(token, sizeof(token), "thread %d call %d", a->i, k);
        if (rl2_redis_pool_get(a->pool, &c, &err) != RL2_OK
            || rl2_redis_command(c, 2, argv, NULL, "ECHO", &r, &err)
                   != RL2_OK) {
            if (strstr(err.msg, "no answer within 40 ms") == NULL) {
                snprintf(a->bad, sizeof(a->bad), "%s", err.msg);
            }
            a->timeouts++;
            continue;
        }
        if (r->type != REDIS_REPLY_STRING || strcmp(r->str, token) != 0) {
            snprintf(a->bad, sizeof(a->bad), "sent \"%s\", got \"%.60s\"",
                     token, r->type == REDIS_REPLY_STRING ? r->str : "?");
        }
        a->ok++;
        rl2_redis_reply_free(r);
    }
    return NULL;
}

static atomic_int stalling;

/* DEBUG SLEEP, again and again: a server that answers late, about the
 * command timeout.  Two of these threads, each on a connection of its
 * own, with no pause: while one sleeps the other's next sleep is already
 * waiting in the server, so the sleeps follow each other and a batch gets
 * through between two of them only when the server happens to read it
 * first.  A batch is then often held by a second sleep while the older
 * commands in it run out of time.  One thread with a 0.5 ms pause was
 * not enough once the pipe handed a batch on quickly (its answers woken
 * outside the lock): every batch went through in the pause, and the test
 * could go 20 s without a reply to drop. */
static void *
stall_thread(void *arg)
{
    redisContext *c = arg;

    while (atomic_load(&stalling)) {
        freeReplyObject(redisCommand(c, "DEBUG SLEEP 0.035"));
    }
    return NULL;
}

static void
test_replies_of_those_who_gave_up_are_dropped_in_step(void **state)
{
    static const char *const extra[] = { "--enable-debug-command", "yes",
                                         NULL };
    rl2_redis_conf_t         conf;
    rl2_redis_pool_t        *pool;
    redisContext            *stall[2];
    pthread_t                th[32], st[2];
    echo_arg_t               args[32];
    rl2_redis_pipe_stats_t   ps;
    rl2_err_t                err;
    int64_t                  deadline;
    int                      ok = 0, timeouts = 0;

    (void)state;
    srv_start(&own, extra);
    rl2_redis_conf_init(&conf);
    conf.pipeline = 1;
    conf.port = own.port;
    conf.command_timeout_ms = 40;
    conf.connect_timeout_ms = 200;
    assert_int_equal(rl2_redis_pool_create(&conf, &pool, &err), RL2_OK);
    atomic_store(&stalling, 1);
    for (int i = 0; i < 2; i++) {
        stall[i] = srv_admin(&own);
        pthread_create(&st[i], NULL, stall_thread, stall[i]);
    }
    /* Rounds until a reply was dropped: a batch's leader reads with a
     * whole command timeout while it has half of its own left, so the
     * older commands in its batch run out of time first when a sleep
     * holds it.  32 threads: batches of many. */
    deadline = mono_us() + 20 * SEC;
    do {
        for (int i = 0; i < 32; i++) {
            args[i] = (echo_arg_t){ pool, i, 0, 0, "" };
            pthread_create(&th[i], NULL, echo_thread, &args[i]);
        }
        for (int i = 0; i < 32; i++) {
            pthread_join(th[i], NULL);
            if (args[i].bad[0] != '\0') {
                atomic_store(&stalling, 0);
                fail_msg("thread %d: %s", i, args[i].bad);
            }
            ok += args[i].ok;
            timeouts += args[i].timeouts;
        }
        rl2_redis_pool_pipe_stats(pool, &ps);
    } while ((ps.dropped == 0 || ok == 0) && mono_us() < deadline);
    atomic_store(&stalling, 0);
    for (int i = 0; i < 2; i++) {
        pthread_join(st[i], NULL);
        redisFree(stall[i]);
    }
    printf("  %d answered, %d timed out; %" PRIu64 " commands in %" PRIu64
           " batches, %" PRIu64 " gave up, %" PRIu64 " replies dropped\n",
           ok, timeouts, ps.commands, ps.batches, ps.gave_up, ps.dropped);
    assert_true(ps.dropped > 0);
    assert_true(ok > 0);
    rl2_redis_pool_destroy(pool);
}

/* ---- a waiter answered while it wakes for its deadline ---- */

#define HELD_WHAT    "PING (held)"
#define SEAM_WAIT_US (5 * SEC)

/* The seams' state: armed only by the test that uses them. */
static struct {
    atomic_int      armed;
    pthread_mutex_t lock;
    pthread_cond_t  moved;
    const void     *held; /* the waiter held, compared but never read once
                             it was woken */
    int sleeping;         /* it is about to sleep for its answer */
    int woken;            /* the leader has written it and woken it */
    int yields;           /* leaders back from a yield */
    int yielded;          /* the held leader is back from its yield */
    int go_on;            /* the test lets it take the lock again */
    int late;             /* a seam gave up waiting for the other */
} seam = { .lock = PTHREAD_MUTEX_INITIALIZER,
           .moved = PTHREAD_COND_INITIALIZER };

/* Wait (seam.lock held) until *flag is set, at most SEAM_WAIT_US. */
static void
seam_wait(const int *flag)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += SEAM_WAIT_US / SEC;
    while (!*flag) {
        if (pthread_cond_timedwait(&seam.moved, &seam.lock, &until) != 0) {
            seam.late = 1;
            return;
        }
    }
}

static int
seam_is_held(const struct rl2_pipe_waiter *w)
{
    return w->what != NULL && strcmp(w->what, HELD_WHAT) == 0;
}

#define YIELDING_WHAT "yielding leader"

static int
seam_is_yielding(const struct rl2_pipe_waiter *w)
{
    return w->what != NULL && strcmp(w->what, YIELDING_WHAT) == 0;
}

/* The leader about to write the held waiter's answer as handed waits
 * until that waiter has decided to sleep for it; the waiter then sleeps
 * only once the leader has written it and woken it. */
static void
pipe_seam(int point, const struct rl2_pipe_waiter *w)
{
    if (!atomic_load(&seam.armed)) {
        return;
    }
    pthread_mutex_lock(&seam.lock);
    switch (point) {
    case RL2_PIPE_SEAM_HANDING:
        if (seam_is_held(w)) {
            seam.held = w;
            seam_wait(&seam.sleeping);
        }
        break;
    case RL2_PIPE_SEAM_SLEEP_HANDED:
        if (seam_is_held(w)) {
            seam.sleeping = 1;
            pthread_cond_broadcast(&seam.moved);
            seam_wait(&seam.woken);
        }
        break;
    case RL2_PIPE_SEAM_HANDED:
        if ((const void *)w == seam.held) {
            seam.woken = 1;
            pthread_cond_broadcast(&seam.moved);
        }
        break;
    case RL2_PIPE_SEAM_YIELDED:
        seam.yields++;
        /* a yield that lasts until the test says: a busy CPU's */
        if (seam_is_yielding(w)) {
            seam.yielded = 1;
            pthread_cond_broadcast(&seam.moved);
            seam_wait(&seam.go_on);
        }
        break;
    }
    pthread_mutex_unlock(&seam.lock);
}

typedef struct {
    rl2_redis_pipe_t *p;
    int               argc;
    const char       *argv[3];
    const char       *what;
    rl2_status_t      st;
    redisReply       *reply;
    rl2_err_t         err;
    atomic_int        finished;
} call_arg_t;

static void *
call_thread(void *arg)
{
    call_arg_t *a = arg;

    a->st = rl2_redis_pipe_command(a->p, a->argc, a->argv, NULL, a->what,
                                   &a->reply, &a->err);
    atomic_store(&a->finished, 1);
    return NULL;
}

/* Commands queued behind a batch in flight (-1 when none is). */
static int
queued_behind_batch(rl2_redis_pipe_t *p)
{
    int n = -1;

    pthread_mutex_lock(&p->lock);
    if (p->leading) {
        n = 0;
        for (const rl2_pipe_waiter_t *w = p->head; w != NULL; w = w->next) {
            n++;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* Poll until a batch is in flight with n commands queued behind it, at
 * most SEAM_WAIT_US. */
static int
await_queued(rl2_redis_pipe_t *p, int n)
{
    int64_t until = mono_us() + SEAM_WAIT_US;

    while (queued_behind_batch(p) < n) {
        if (mono_us() > until) {
            return 0;
        }
        sched_yield();
    }
    return 1;
}

static int
await_finished(call_arg_t *a)
{
    int64_t until = mono_us() + SEAM_WAIT_US;

    while (!atomic_load(&a->finished)) {
        if (mono_us() > until) {
            return 0;
        }
        usleep(1000);
    }
    return 1;
}

/* The sleep in flight, X that leads the next batch, H the waiter held. */
static const struct {
    int         argc;
    const char *argv[3];
    const char *what;
} held_calls[3] = {
    { 3, { "DEBUG", "SLEEP", "0.5" }, "sleep" },
    { 2, { "PING", "x" }, "PING x" },
    { 2, { "PING", "held" }, HELD_WHAT },
};

/* X leads a batch of X and H; H's deadline passes while X is between
 * handing H its answer and writing it as handed, so H, found answered
 * under the lock, goes to sleep for `handed`.  Held there until X has
 * written and woken it, H must still see that it was answered: the last
 * write the leader makes must change the word H sleeps on. */
static void
test_an_answered_waiter_that_sleeps_late_for_handed_wakes(void **state)
{
    static const char *const extra[] = { "--enable-debug-command", "yes",
                                         NULL };
    rl2_redis_conf_t         conf;
    rl2_redis_pipe_t        *p;
    pthread_t                th[3];
    call_arg_t               call[3];
    redisReply              *r;
    rl2_err_t                err;

    (void)state;
    memset(call, 0, sizeof(call));
    for (int i = 0; i < 3; i++) {
        call[i].argc = held_calls[i].argc;
        memcpy(call[i].argv, held_calls[i].argv, sizeof(call[i].argv));
        call[i].what = held_calls[i].what;
    }
    srv_start(&own, extra);
    rl2_redis_conf_init(&conf);
    conf.port = own.port;
    conf.connect_timeout_ms = 1000;
    conf.command_timeout_ms = 1000; /* the sleep's 500, and some */
    assert_int_equal(rl2_redis_pipe_create(&conf, "held", &p, &err), RL2_OK);
    /* connected before the test, so that the sleep's batch only sleeps */
    call[1].p = p;
    call_thread(&call[1]);
    if (call[1].st != RL2_OK) {
        fail_msg("connecting: %s", call[1].err.msg);
    }
    rl2_redis_reply_free(call[1].reply);
    call[1].reply = NULL;
    atomic_store(&call[1].finished, 0);
    atomic_store(&seam.armed, 1);
    /* one batch in flight (the sleep); X, then H, queued behind it */
    for (int i = 0; i < 3; i++) {
        call[i].p = p;
        pthread_create(&th[i], NULL, call_thread, &call[i]);
        if (!await_queued(p, i)) {
            fail_msg("the sleep not in flight with %d commands queued "
                     "behind it within 5 s",
                     i);
        }
    }
    if (!await_finished(&call[2])) {
        /* its thread sleeps for good: leave it and its pipe */
        pthread_detach(th[2]);
        fail_msg("answered, the held waiter still sleeps after 5 s "
                 "(the seams %s)",
                 seam.late ? "gave up waiting" : "ran as planned");
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
    }
    atomic_store(&seam.armed, 0);
    assert_false(seam.late);
    assert_true(seam.sleeping && seam.woken);
    for (int i = 0; i < 3; i++) {
        if (call[i].st != RL2_OK) {
            fail_msg("call %d: %s", i, call[i].err.msg);
        }
    }
    /* the scenario's premise: the batch in flight did sleep */
    assert_int_equal(call[0].reply->type, REDIS_REPLY_STATUS);
    r = call[2].reply;
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "held");
    for (int i = 0; i < 3; i++) {
        rl2_redis_reply_free(call[i].reply);
    }
    rl2_redis_pipe_destroy(p);
}

/* ---- the leader's yield ---- */

/* The seam's wait, from the test's side (seam.lock not held). */
static int
seam_await(const int *flag)
{
    int ok;

    pthread_mutex_lock(&seam.lock);
    seam_wait(flag);
    ok = *flag;
    pthread_mutex_unlock(&seam.lock);
    return ok;
}

static void
seam_set(int *flag)
{
    pthread_mutex_lock(&seam.lock);
    *flag = 1;
    pthread_cond_broadcast(&seam.moved);
    pthread_mutex_unlock(&seam.lock);
}

/* Armed for the yield tests, from a clean slate. */
static void
seam_arm_yield(void)
{
    pthread_mutex_lock(&seam.lock);
    seam.yields = 0;
    seam.yielded = 0;
    seam.go_on = 0;
    seam.late = 0;
    pthread_mutex_unlock(&seam.lock);
    atomic_store(&seam.armed, 1);
}

static void
call_init(call_arg_t *a, rl2_redis_pipe_t *p, int argc, const char *arg0,
          const char *arg1, const char *what)
{
    memset(a, 0, sizeof(*a));
    a->p = p;
    a->argc = argc;
    a->argv[0] = arg0;
    a->argv[1] = arg1;
    a->what = what;
}

static void
call_check(const call_arg_t *a, const char *expect)
{
    if (a->st != RL2_OK) {
        fail_msg("%s: %s", a->what, a->err.msg);
    }
    assert_non_null(a->reply);
    if (a->reply->type != REDIS_REPLY_STRING
        || strcmp(a->reply->str, expect) != 0) {
        fail_msg("%s: expected \"%s\", got type %d \"%.60s\"", a->what, expect,
                 a->reply->type,
                 a->reply->type == REDIS_REPLY_STRING ? a->reply->str : "");
    }
}

/* The yield tests' pipe's conf (borrowed by the pipe for its life) and
 * the CLIENT ID of its connection. */
static rl2_redis_conf_t yield_conf;
static long long        yield_client_id;

/* A pipe to own (started with DEBUG) with the given command timeout,
 * connected, whose last batch carried two commands, so that its next
 * leader yields: a sleep in flight with two PINGs queued behind it, which
 * then go together. */
static rl2_redis_pipe_t *
pipe_after_batch_of_two(int timeout_ms)
{
    static const char *const extra[] = { "--enable-debug-command", "yes",
                                         NULL };
    rl2_redis_pipe_stats_t   ps;
    rl2_redis_pipe_t        *p;
    pthread_t                th[3];
    call_arg_t               call[3];
    rl2_err_t                err;

    srv_start(&own, extra);
    rl2_redis_conf_init(&yield_conf);
    yield_conf.port = own.port;
    yield_conf.connect_timeout_ms = timeout_ms;
    yield_conf.command_timeout_ms = timeout_ms;
    assert_int_equal(rl2_redis_pipe_create(&yield_conf, "yield", &p, &err),
                     RL2_OK);
    call_init(&call[0], p, 2, "CLIENT", "ID", "CLIENT ID");
    call_thread(&call[0]);
    if (call[0].st != RL2_OK) {
        fail_msg("connecting: %s", call[0].err.msg);
    }
    assert_int_equal(call[0].reply->type, REDIS_REPLY_INTEGER);
    yield_client_id = call[0].reply->integer;
    rl2_redis_reply_free(call[0].reply);
    call_init(&call[0], p, 3, "DEBUG", "SLEEP", "sleep");
    call[0].argv[2] = "0.2";
    call_init(&call[1], p, 2, "PING", "a", "PING a");
    call_init(&call[2], p, 2, "PING", "b", "PING b");
    for (int i = 0; i < 3; i++) {
        pthread_create(&th[i], NULL, call_thread, &call[i]);
        if (!await_queued(p, i)) {
            fail_msg("the sleep not in flight with %d commands queued "
                     "behind it within 5 s",
                     i);
        }
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
    }
    if (call[0].st != RL2_OK) {
        fail_msg("sleep: %s", call[0].err.msg);
    }
    call_check(&call[1], "a");
    call_check(&call[2], "b");
    for (int i = 0; i < 3; i++) {
        rl2_redis_reply_free(call[i].reply);
    }
    rl2_redis_pipe_stats(p, &ps);
    assert_int_equal(ps.max_batch, 2); /* the premise: a batch of two */
    return p;
}

/* The yield's purpose: a command queued while the leader yields goes in
 * the leader's batch, and each of the two gets its own answer. */
static void
test_a_command_queued_while_the_leader_yields_joins_its_batch(void **state)
{
    rl2_redis_pipe_stats_t before, after;
    rl2_redis_pipe_t      *p;
    pthread_t              th[2];
    call_arg_t             call[2];

    (void)state;
    p = pipe_after_batch_of_two(1000);
    rl2_redis_pipe_stats(p, &before);
    call_init(&call[0], p, 2, "PING", "leader", YIELDING_WHAT);
    call_init(&call[1], p, 2, "PING", "joined", "PING joined");
    seam_arm_yield();
    pthread_create(&th[0], NULL, call_thread, &call[0]);
    if (!seam_await(&seam.yielded)) {
        fail_msg("the leader did not yield within 5 s");
    }
    pthread_create(&th[1], NULL, call_thread, &call[1]);
    /* the leader's own command and the one that joined */
    if (!await_queued(p, 2)) {
        fail_msg("the second command not queued within 5 s");
    }
    seam_set(&seam.go_on);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    atomic_store(&seam.armed, 0);
    assert_false(seam.late);
    call_check(&call[0], "leader");
    call_check(&call[1], "joined");
    rl2_redis_pipe_stats(p, &after);
    assert_int_equal(after.batches - before.batches, 1);
    assert_int_equal(after.commands - before.commands, 2);
    for (int i = 0; i < 2; i++) {
        rl2_redis_reply_free(call[i].reply);
    }
    rl2_redis_pipe_destroy(p);
}

/* The yield costs a lone thread once: its first batch carries one
 * command, and the next leader does not yield. */
static void
test_a_lone_thread_yields_once_after_a_batch_of_many(void **state)
{
    rl2_redis_pipe_t *p;
    call_arg_t        call;
    char              token[24];

    (void)state;
    p = pipe_after_batch_of_two(1000);
    seam_arm_yield();
    for (int k = 0; k < 4; k++) {
        snprintf(token, sizeof(token), "alone %d", k);
        call_init(&call, p, 2, "PING", token, "PING alone");
        call_thread(&call);
        call_check(&call, token);
        rl2_redis_reply_free(call.reply);
    }
    atomic_store(&seam.armed, 0);
    assert_int_equal(seam.yields, 1);
    rl2_redis_pipe_destroy(p);
}

/* Let time pass until `until` (mono_us()): the scenario is a yield that
 * outlasts a deadline, and only the clock says when it has. */
static void
pass_time_until(int64_t until)
{
    struct timespec ts = { (time_t)(until / SEC), (long)(until % SEC) * 1000 };

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

#define YIELD_TIMEOUT_MS 400

/* The leader's time runs out while it yields (a busy CPU gives the
 * yielding thread back late): its command must not be written, and it
 * must fail with the timeout error, as a queued command whose time ran
 * out does.  A command queued meanwhile is then led by its own thread,
 * at once, not after its own deadline. */
static void
test_a_leader_whose_time_ran_out_in_its_yield_writes_nothing(void **state)
{
    rl2_redis_pipe_stats_t before, after;
    rl2_redis_pipe_t      *p;
    redisContext          *c;
    redisReply            *r;
    pthread_t              th[2];
    call_arg_t             call[2];
    int64_t                started_us, late_us;

    (void)state;
    p = pipe_after_batch_of_two(YIELD_TIMEOUT_MS);
    rl2_redis_pipe_stats(p, &before);
    call_init(&call[0], p, 2, "INCR", "yielded", YIELDING_WHAT);
    call_init(&call[1], p, 2, "PING", "next", "PING next");
    seam_arm_yield();
    started_us = mono_us();
    pthread_create(&th[0], NULL, call_thread, &call[0]);
    if (!seam_await(&seam.yielded)) {
        fail_msg("the leader did not yield within 5 s");
    }
    /* its deadline was set after started_us: passed by this */
    pass_time_until(started_us + (YIELD_TIMEOUT_MS + 50) * (SEC / 1000));
    pthread_create(&th[1], NULL, call_thread, &call[1]);
    if (!await_queued(p, 2)) {
        fail_msg("the next command not queued within 5 s");
    }
    late_us = mono_us();
    seam_set(&seam.go_on);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
    }
    atomic_store(&seam.armed, 0);
    assert_false(seam.late);
    printf("  the leader, %" PRId64 " ms after it queued: %s\n",
           (late_us - started_us) / 1000,
           call[0].st == RL2_OK ? "answered" : call[0].err.msg);
    if (call[0].st == RL2_OK) {
        fail_msg("the leader's time ran out in its yield, yet its command "
                 "was written and answered");
    }
    assert_int_equal(call[0].st, RL2_ERR_STORE);
    assert_non_null(strstr(call[0].err.msg, "no answer within 400 ms"));
    assert_null(call[0].reply);
    /* the other one, queued behind, led at once */
    call_check(&call[1], "next");
    rl2_redis_reply_free(call[1].reply);
    rl2_redis_pipe_stats(p, &after);
    assert_int_equal(after.gave_up - before.gave_up, 1);
    assert_int_equal(after.commands - before.commands, 1);
    /* the server never saw the INCR */
    c = srv_admin(&own);
    r = admin_cmd(c, "EXISTS yielded");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);
    rl2_redis_pipe_destroy(p);
}

/* fork() while a leader yields, its lock let go: the child's only thread
 * leads its own batches on a connection of its own, and the parent's
 * leader goes on when its yield ends. */
static void
test_a_fork_while_the_leader_yields(void **state)
{
    rl2_redis_pipe_t *p;
    pthread_t         th;
    call_arg_t        leader, id;
    int64_t           until;
    int               status = 0;
    pid_t             pid;

    (void)state;
    p = pipe_after_batch_of_two(1000);
    call_init(&id, p, 2, "CLIENT", "ID", "CLIENT ID");
    call_init(&leader, p, 2, "PING", "parent", YIELDING_WHAT);
    seam_arm_yield();
    pthread_create(&th, NULL, call_thread, &leader);
    if (!seam_await(&seam.yielded)) {
        fail_msg("the leader did not yield within 5 s");
    }
    if ((pid = fork()) == 0) {
        /* the seams are the parent's business (their lock may have been
         * held by the parent's leader at the fork) */
        atomic_store(&seam.armed, 0);
        call_thread(&id);
        _exit(id.st == RL2_OK && id.reply->type == REDIS_REPLY_INTEGER
                      && id.reply->integer != yield_client_id
                  ? 0
                  : 1);
    }
    assert_true(pid > 0);
    until = mono_us() + 5 * SEC;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (mono_us() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            seam_set(&seam.go_on);
            pthread_join(th, NULL);
            fail_msg("the child's command did not finish within 5 s");
        }
        usleep(1000);
    }
    seam_set(&seam.go_on);
    pthread_join(th, NULL);
    atomic_store(&seam.armed, 0);
    assert_false(seam.late);
    /* 0: the child's own connection answered it */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    call_check(&leader, "parent");
    rl2_redis_reply_free(leader.reply);
    rl2_redis_pipe_destroy(p);
}

/* ---- fork ---- */

static long long
client_id(rl2_redis_pool_t *pool)
{
    static const char *const argv[2] = { "CLIENT", "ID" };
    rl2_redis_conn_t        *c;
    redisReply              *r;
    rl2_err_t                err;
    long long                id = -1;

    if (rl2_redis_pool_get(pool, &c, &err) == RL2_OK
        && rl2_redis_command(c, 2, (const char **)argv, NULL, "CLIENT ID", &r,
                             &err)
               == RL2_OK) {
        id = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        rl2_redis_reply_free(r);
    }
    return id;
}

static void
test_a_child_after_fork_opens_its_own_connection(void **state)
{
    rl2_redis_conf_t  conf;
    rl2_redis_pool_t *pool;
    rl2_redis_conn_t *c;
    rl2_err_t         err;
    long long         mine;
    int               status;
    pid_t             pid;

    (void)state;
    rl2_redis_conf_init(&conf);
    conf.pipeline = 1;
    conf.port = srv.port;
    assert_int_equal(rl2_redis_pool_create(&conf, &pool, &err), RL2_OK);
    assert_false(rl2_redis_pool_cached(pool, &c)); /* nothing opened yet */
    mine = client_id(pool);
    assert_true(mine > 0);
    assert_true(rl2_redis_pool_cached(pool, &c));
    if ((pid = fork()) == 0) {
        long long theirs = client_id(pool);

        _exit(theirs > 0 && theirs != mine ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(client_id(pool), mine);
    /* closed by the server: the next command opens another */
    freeReplyObject(admin_cmd(admin, "CLIENT KILL ID %lld", mine));
    {
        long long again = client_id(pool);

        assert_true(again > 0 && again != mine);
    }
    rl2_redis_pool_destroy(pool);
}

/* ---- the option ---- */

static void
test_pipeline_option_parses(void **state)
{
    rl2_backend_conf_t bc;
    rl2_err_t          err;

    (void)state;
    rl2_backend_conf_init(&bc);
    assert_int_equal(bc.redis.pipeline, 1); /* the default */
    assert_int_equal(rl2_store_opt_redis_item(&bc, "pipeline=off", &err),
                     RL2_OK);
    assert_int_equal(bc.redis.pipeline, 0);
    assert_int_equal(rl2_store_opt_redis_item(&bc, "pipeline=on", &err),
                     RL2_OK);
    assert_int_equal(bc.redis.pipeline, 1);
    assert_int_equal(rl2_store_opt_redis_item(&bc, "pipeline=maybe", &err),
                     RL2_ERR_CONFIG);
    printf("  %s\n", err.msg);
    assert_non_null(strstr(err.msg, "pipeline"));
}

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
        T(test_threads_get_their_own_replies_and_every_call_counts),
        T(test_stopped_server_fails_every_waiter_within_its_timeout),
        T(test_replies_of_those_who_gave_up_are_dropped_in_step),
        T(test_an_answered_waiter_that_sleeps_late_for_handed_wakes),
        T(test_a_command_queued_while_the_leader_yields_joins_its_batch),
        T(test_a_lone_thread_yields_once_after_a_batch_of_many),
        T(test_a_leader_whose_time_ran_out_in_its_yield_writes_nothing),
        T(test_a_fork_while_the_leader_yields),
        T(test_a_child_after_fork_opens_its_own_connection),
        T(test_pipeline_option_parses),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, srv_group_setup, srv_group_teardown);
}
