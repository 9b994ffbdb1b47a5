/*
 * test_redis_cluster.c -- Redis Cluster routing (redis_cluster.c) and the
 * store over a Cluster (store_redis.c).
 *
 * Key slots against fixed vectors and against the servers' own CLUSTER
 * KEYSLOT; the seed syntax and its checks; then, against a real cluster of
 * three masters on loopback that the group setup forms with
 * `redis-cli --cluster create`: keys spread over every master, exact
 * counts under threads, a request refused in one slot counted in no
 * other, -MOVED after a slot moved, -ASK while it moves (also to a node
 * without the function library), -TRYAGAIN sent
 * again while a migration splits a command's keys, a timeout that makes
 * the map stale, the function library lost on every node, under an ACL
 * without functions the script cache lost on every node, and AUTH on
 * every node.
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
#include "rl2_cluster_test.h"
/* white box: rl2_redis_functions_reset() */
#include "redis/redis_scripts.h"
#include "redis/redis_internal.h"

#define THREADS 8

/* ---- slots, without a server ---- */

static void
test_crc16_and_key_slot_vectors(void **state)
{
    (void)state;
    /* the CRC16/XMODEM check value */
    assert_int_equal(rl2_redis_crc16("123456789", 9), 0x31C3);
    assert_int_equal(rl2_redis_crc16("", 0), 0);
    assert_int_equal(rl2_redis_key_slot("123456789", 9), 0x31C3);
    assert_int_equal(rl2_redis_key_slot("foo", 3), 12182);
    /* the tag is hashed alone */
    assert_int_equal(rl2_redis_key_slot("{123456789}.a", 13), 0x31C3);
    assert_int_equal(rl2_redis_key_slot("x{foo}y", 7), 12182);
    /* the first '{' and the first '}' after it */
    assert_int_equal(rl2_redis_key_slot("a{foo}{bar}", 11), 12182);
    assert_int_equal(rl2_redis_key_slot("a{{foo}}", 8),
                     rl2_redis_key_slot("{foo", 4));
    /* "{}" or a '{' never closed: the whole key */
    assert_int_equal(rl2_redis_key_slot("{}foo", 5),
                     rl2_redis_crc16("{}foo", 5) & 16383);
    assert_int_equal(rl2_redis_key_slot("foo{bar", 7),
                     rl2_redis_crc16("foo{bar", 7) & 16383);
    assert_int_equal(rl2_redis_key_slot("foo}{", 5),
                     rl2_redis_crc16("foo}{", 5) & 16383);
}

static void
test_seed_syntax_and_checks(void **state)
{
    rl2_redis_conf_t  conf;
    rl2_redis_conn_t *c;
    rl2_err_t         err;

    (void)state;
    rl2_redis_conf_init(&conf);
    assert_int_equal(rl2_redis_cluster_parse(&conf,
                                             "10.0.0.1:7000,"
                                             "[::1]:7001,h:7002",
                                             &err),
                     RL2_OK);
    assert_int_equal(conf.n_seeds, 3);
    assert_string_equal(conf.seeds[1], "[::1]:7001");
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_OK);
    conf.db = 1;
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "only database 0"));
    conf.db = 0;
    /* a Cluster is not one connection */
    assert_int_equal(rl2_redis_conn_open(&conf, &c, &err), RL2_ERR_CONFIG);
    assert_int_equal(rl2_redis_sentinel_parse(&conf, "m@h:1", &err), RL2_OK);
    assert_int_equal(rl2_redis_conf_check(&conf, &err), RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "neither sentinels"));

    rl2_redis_conf_init(&conf);
    assert_int_equal(rl2_redis_cluster_parse(&conf, "", &err), RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "cluster:HOST:PORT"));
    assert_int_equal(rl2_redis_cluster_parse(&conf, "h", &err), RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "cluster seed \"h\" is not HOST:PORT"));
    assert_int_equal(rl2_redis_cluster_parse(&conf, "h:1,", &err),
                     RL2_ERR_CONFIG);
    assert_int_equal(rl2_redis_cluster_parse(&conf, "h:0", &err),
                     RL2_ERR_CONFIG);
    assert_int_equal(rl2_redis_cluster_parse(&conf,
                                             "a:1,a:2,a:3,a:4,a:5,"
                                             "a:6,a:7,a:8,a:9",
                                             &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "more than 8 cluster seeds"));
}

/* ---- the cluster ---- */

static unsigned
layer_slot(const rl2_layer_t *l)
{
    char key[64];

    key_of(l, 's', key, sizeof(key));
    return rl2_redis_key_slot(key, strlen(key));
}

/* Admitted of `tries` applies of layers l[0..n) (fresh copies). */
static int
admit_n(rl2_layer_t *l, size_t n, int tries)
{
    rl2_layer_t c[4];
    int         ok = 0;

    for (int t = 0; t < tries; t++) {
        int denied = 0;

        memcpy(c, l, n * sizeof(*l));
        must_apply(store, c, n);
        for (size_t i = 0; i < n; i++) {
            denied |= c[i].refused;
        }
        ok += !denied;
    }
    return ok;
}

/* What one layer has left (peek on a copy). */
static int64_t
left(const rl2_layer_t *l)
{
    rl2_layer_t p = *l;
    rl2_clock_t now;
    rl2_err_t   err;

    rl2_clock_now(&now);
    if (store->ops->peek(store, &p, 1, &now, &err) != RL2_OK) {
        fail_msg("peek: %s", err.msg);
    }
    return p.result.allowed ? p.result.remaining + 1 : 0;
}

static void
test_slots_match_the_servers_and_keys_spread(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "spread 5/min", RL2_ALGO_FIXED_WINDOW, 5, MINUTE);
    rl2_layer_t l;
    char        client[32], key[64];
    int         total = 0;

    (void)state;
    for (int i = 0; i < 60; i++) {
        snprintf(client, sizeof(client), "198.51.100.%d", i);
        mk_layer(&l, lim, client);
        key_of(&l, 's', key, sizeof(key));
        assert_int_equal(layer_slot(&l),
                         admin_int(adm[i % NODES], "CLUSTER KEYSLOT %s", key));
        total += admit_n(&l, 1, 7);
    }
    assert_int_equal(total, 60 * 5);
    for (int n = 0; n < NODES; n++) {
        long long keys = admin_int(adm[n], "DBSIZE", NULL);

        if (keys < 1) {
            fail_msg("node %d holds no key", n);
        }
    }
}

/* Two layers whose keys are in different slots (and on different nodes
 * when the map allows): the refusing layer first, then last. */
static void
test_refused_in_one_slot_is_counted_in_none(void **state)
{
    rl2_limit_t *ip =
        limit_of(pol, "ip 3/min", RL2_ALGO_FIXED_WINDOW, 3, MINUTE);
    rl2_limit_t *user =
        limit_of(pol, "user 2/min", RL2_ALGO_SLIDING_LOG, 2, MINUTE);
    rl2_layer_t l[2];

    (void)state;
    mk_layer(&l[0], ip, "203.0.113.1");
    mk_layer(&l[1], user, "alice");
    assert_int_not_equal(layer_slot(&l[0]), layer_slot(&l[1]));
    /* user refuses in the second group: the first (ip) is refunded */
    assert_int_equal(admit_n(l, 2, 5), 2);
    assert_int_equal(left(&l[0]), 1);
    assert_int_equal(left(&l[1]), 0);

    /* ip refuses in the first group: user (another user) never counted */
    mk_layer(&l[1], user, "bob");
    assert_int_not_equal(layer_slot(&l[0]), layer_slot(&l[1]));
    {
        rl2_layer_t rev[2] = { l[0], l[1] };

        assert_int_equal(admit_n(rev, 2, 3), 1);
        assert_int_equal(left(&l[0]), 0);
        assert_int_equal(left(&l[1]), 1);
        /* and the other way round: ip second, refusing, user refunded */
        rev[0] = l[1];
        rev[1] = l[0];
        assert_int_equal(admit_n(rev, 2, 3), 0);
        assert_int_equal(left(&l[1]), 1);
    }
}

typedef struct {
    rl2_layer_t l[2];
    int         go;
    int         admitted;
    int         errors;
} worker_t;

static void *
worker(void *arg)
{
    worker_t *w = arg;
    char      b;

    if (read(w->go, &b, 1) < 0) {
        w->errors++;
    }
    for (int i = 0; i < 50; i++) {
        rl2_layer_t c[2] = { w->l[0], w->l[1] };
        rl2_err_t   err;

        if (apply_now(store, c, 2, &err) != RL2_OK) {
            w->errors++;
        }
        else if (!c[0].refused && !c[1].refused) {
            w->admitted++;
        }
    }
    return NULL;
}

/* 8 threads, 400 requests; the wide layer goes first so every refusal by
 * the tight one is a refund of the wide one: both end exact. */
static void
test_threads_admit_exactly_across_slots(void **state)
{
    rl2_algo_t   algos[] = { RL2_ALGO_FIXED_WINDOW, RL2_ALGO_SLIDING_LOG,
                             RL2_ALGO_TOKEN_BUCKET, RL2_ALGO_LEAKY_BUCKET };
    rl2_limit_t *wide =
        limit_of(pol, "wide", RL2_ALGO_FIXED_WINDOW, 1000, HOUR);
    int go[2];

    (void)state;
    for (size_t a = 0; a < sizeof(algos) / sizeof(algos[0]); a++) {
        rl2_limit_t *tight = limit_of(pol, "tight", algos[a], 100, HOUR);
        pthread_t    th[THREADS];
        worker_t     w[THREADS];
        char         client[32];
        int          total = 0, errors = 0;

        snprintf(client, sizeof(client), "algo-%zu", a);
        assert_int_equal(pipe(go), 0);
        for (int t = 0; t < THREADS; t++) {
            memset(&w[t], 0, sizeof(w[t]));
            mk_layer(&w[t].l[0], wide, client);
            mk_layer(&w[t].l[1], tight, client);
            w[t].go = go[0];
            assert_int_equal(pthread_create(&th[t], NULL, worker, &w[t]), 0);
        }
        assert_int_not_equal(layer_slot(&w[0].l[0]), layer_slot(&w[0].l[1]));
        close(go[1]);
        for (int t = 0; t < THREADS; t++) {
            pthread_join(th[t], NULL);
            total += w[t].admitted;
            errors += w[t].errors;
        }
        close(go[0]);
        assert_int_equal(errors, 0);
        assert_int_equal(total, 100);
        assert_int_equal(left(&w[0].l[0]), 1000 - 100);
    }
}

/* The slot of a layer moves to another master between requests: the
 * store's router gets -MOVED, follows it, and the count goes on. */
static void
test_moved_slot_is_followed(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "moving 5/min", RL2_ALGO_SLIDING_LOG, 5, MINUTE);
    rl2_layer_t l;
    char        key[64];
    unsigned    slot;
    int         from, to;

    (void)state;
    mk_layer(&l, lim, "mover");
    key_of(&l, 's', key, sizeof(key));
    slot = layer_slot(&l);
    from = owner_of(slot);
    to = (from + 1) % NODES;
    assert_int_equal(admit_n(&l, 1, 3), 3);
    move_slot(slot, from, to, 1);
    assert_int_equal(owner_of(slot), to);
    assert_int_equal(exists_on(to, key), 1);
    assert_int_equal(admit_n(&l, 1, 4), 2);
    assert_int_equal(exists_on(from, key), 0);
    assert_int_equal(left(&l), 0);
}

/* Through a router of its own, so its counters can be read: a slot half
 * moved (MIGRATING / IMPORTING, key already carried over) sends -ASK,
 * which is followed each time without changing the map; once the move is
 * finished, -MOVED changes it. */
static void
test_ask_during_migration_then_moved(void **state)
{
    const char               *argv[2] = { "INCR", "{ask-test}.n" };
    size_t                    len[2] = { 4, strlen(argv[1]) };
    unsigned                  slot = rl2_redis_key_slot(argv[1], len[1]);
    rl2_redis_cluster_stats_t st;
    rl2_redis_cluster_t      *cl;
    rl2_redis_conf_t          conf;
    redisReply               *r;
    rl2_err_t                 err;
    int                       from, to;

    (void)state;
    cluster_conf(&conf, 2);
    conf.command_timeout_ms = 2000;
    assert_int_equal(rl2_redis_cluster_create(&conf, &cl, &err), RL2_OK);
    from = owner_of(slot);
    to = (from + 2) % NODES;
    for (int i = 1; i <= 4; i++) {
        if (i == 2) {
            move_slot(slot, from, to, 0);
        }
        if (i == 4) {
            slot_give(slot, from, to);
        }
        if (rl2_redis_cluster_command(cl, slot, 2, argv, len, "INCR", &r, NULL,
                                      &err)
            != RL2_OK) {
            fail_msg("INCR %d: %s", i, err.msg);
        }
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        assert_int_equal(r->integer, i);
        rl2_redis_reply_free(r);
    }
    rl2_redis_cluster_stats(cl, &st);
    assert_int_equal(st.asked, 2); /* requests 2 and 3 */
    assert_int_equal(st.moved, 1); /* request 4 */
    assert_true(st.refreshes >= 1);
    assert_int_equal(exists_on(to, argv[1]), 1);
    assert_int_equal(exists_on(from, argv[1]), 0);
    rl2_redis_cluster_destroy(cl);
}

/* ---- -TRYAGAIN ---- */

/* Two keys of one {hash tag}, as a layer's state and overflow keys, read
 * by one script: the store's EVALSHA as the nodes see it. */
static const char *ta_argv[5] = { "EVAL",
                                  "return redis.call('MGET', KEYS[1], KEYS[2])",
                                  "2", "{tryagain}.s", "{tryagain}.o" };

/* The script's reply through router cl (a store error fails the test);
 * *ms the time it took. */
static redisReply *
tryagain_eval(rl2_redis_cluster_t *cl, int64_t *ms)
{
    size_t      len[5];
    unsigned    slot = rl2_redis_key_slot(ta_argv[3], strlen(ta_argv[3]));
    int64_t     t0 = mono_us();
    redisReply *r;
    rl2_err_t   err;

    for (int i = 0; i < 5; i++) {
        len[i] = strlen(ta_argv[i]);
    }
    if (rl2_redis_cluster_command(cl, slot, 5, ta_argv, len, "EVAL", &r, NULL,
                                  &err)
        != RL2_OK) {
        fail_msg("EVAL: %s", err.msg);
    }
    *ms = (mono_us() - t0) / 1000;
    return r;
}

typedef struct {
    unsigned slot;
    int      from, to;
    int      errors; /* admin commands that failed (no cmocka here) */
} finisher_t;

static void
finisher_cmd(finisher_t *f, int n, const char *fmt, const char *arg)
{
    redisReply *r = redisCommand(adm[n], fmt, f->slot, arg);

    f->errors += r == NULL || r->type == REDIS_REPLY_ERROR;
    freeReplyObject(r);
}

/* The end of a reshard, 30 ms after the command started: the last key
 * carried over, then the slot given to `to` (importing node first, as
 * slot_give).  The main thread is waiting in the router meanwhile and
 * touches no admin connection. */
static void *
finisher(void *arg)
{
    finisher_t     *f = arg;
    struct timespec ts = { 0, 30 * 1000000L };
    int             order[NODES] = { f->to, f->from, 3 - f->to - f->from };
    redisReply     *r;

    nanosleep(&ts, NULL);
    r = redisCommand(adm[f->from], "MIGRATE 127.0.0.1 %d %s 0 5000",
                     node[f->to].port, ta_argv[4]);
    f->errors += r == NULL || r->type == REDIS_REPLY_ERROR;
    freeReplyObject(r);
    for (int n = 0; n < NODES; n++) {
        finisher_cmd(f, order[n], "CLUSTER SETSLOT %u NODE %s", node_id[f->to]);
    }
    return NULL;
}

/* A slot half moved with one of the script's keys carried over and the
 * other not: the nodes answer -TRYAGAIN until the move ends.  With nothing
 * ending it, the router sends the script 5 more times (10 + 20 + 40 + 80 +
 * 160 ms apart), or fewer when the command timeout is shorter than that,
 * and then hands back the -TRYAGAIN reply; with the move ended 30 ms in,
 * a resend gets the values. */
static void
test_tryagain_is_sent_again_until_the_move_ends(void **state)
{
    unsigned   slot = rl2_redis_key_slot(ta_argv[3], strlen(ta_argv[3]));
    int        from = owner_of(slot), to = (from + 1) % NODES;
    finisher_t f = { slot, from, to, 0 };
    rl2_redis_cluster_stats_t st;
    rl2_redis_cluster_t      *cl, *quick;
    rl2_redis_conf_t          conf;
    pthread_t                 th;
    redisReply               *r;
    rl2_err_t                 err;
    int64_t                   ms;

    (void)state;
    freeReplyObject(
        admin_cmd(adm[from], "MSET %s 1 %s 2", ta_argv[3], ta_argv[4]));
    freeReplyObject(admin_cmd(adm[to], "CLUSTER SETSLOT %u IMPORTING %s", slot,
                              node_id[from]));
    freeReplyObject(admin_cmd(adm[from], "CLUSTER SETSLOT %u MIGRATING %s",
                              slot, node_id[to]));
    freeReplyObject(admin_cmd(adm[from], "MIGRATE 127.0.0.1 %d %s 0 5000",
                              node[to].port, ta_argv[3]));
    cluster_conf(&conf, from);
    conf.command_timeout_ms = 2000;
    assert_int_equal(rl2_redis_cluster_create(&conf, &cl, &err), RL2_OK);
    conf.command_timeout_ms = 120;
    assert_int_equal(rl2_redis_cluster_create(&conf, &quick, &err), RL2_OK);

    /* the condition: every resend answered -TRYAGAIN */
    r = tryagain_eval(cl, &ms);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "TRYAGAIN"));
    rl2_redis_reply_free(r);
    rl2_redis_cluster_stats(cl, &st);
    assert_int_equal(st.tryagain, RL2_REDIS_TRYAGAIN_MAX);
    assert_in_range(ms, 310, 1500);
    /* 120 ms of command timeout: 10 + 20 + 40 + 50 ms, 4 resends */
    r = tryagain_eval(quick, &ms);
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "TRYAGAIN"));
    rl2_redis_reply_free(r);
    rl2_redis_cluster_stats(quick, &st);
    assert_int_equal(st.tryagain, 4);
    assert_in_range(ms, 120, 1000);

    /* the move ends while the router waits */
    assert_int_equal(pthread_create(&th, NULL, finisher, &f), 0);
    r = tryagain_eval(cl, &ms);
    pthread_join(th, NULL);
    assert_int_equal(f.errors, 0);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_string_equal(r->element[0]->str, "1");
    assert_string_equal(r->element[1]->str, "2");
    rl2_redis_reply_free(r);
    rl2_redis_cluster_stats(cl, &st);
    assert_true(st.tryagain > RL2_REDIS_TRYAGAIN_MAX);
    assert_in_range(ms, 30, 1500);
    assert_int_equal(owner_of(slot), to);
    rl2_redis_cluster_destroy(quick);
    rl2_redis_cluster_destroy(cl);
}

/* A master that stops answering: the command times out (a store error,
 * not retried), the map is marked stale, and the next command, once the
 * master is back, loads the map again. */
static void
test_timeout_marks_the_map_stale(void **state)
{
    const char               *argv[2] = { "INCR", "{stale-test}.n" };
    size_t                    len[2] = { 4, strlen(argv[1]) };
    unsigned                  slot = rl2_redis_key_slot(argv[1], len[1]);
    rl2_redis_cluster_stats_t st;
    rl2_redis_cluster_t      *cl;
    rl2_redis_conf_t          conf;
    redisReply               *r;
    rl2_err_t                 err;
    int                       o = owner_of(slot);

    (void)state;
    cluster_conf(&conf, (o + 1) % NODES);
    conf.command_timeout_ms = 500;
    assert_int_equal(rl2_redis_cluster_create(&conf, &cl, &err), RL2_OK);
    assert_int_equal(rl2_redis_cluster_command(cl, slot, 2, argv, len, "INCR",
                                               &r, NULL, &err),
                     RL2_OK);
    rl2_redis_reply_free(r);
    kill(node[o].pid, SIGSTOP);
    assert_int_equal(rl2_redis_cluster_command(cl, slot, 2, argv, len, "INCR",
                                               &r, NULL, &err),
                     RL2_ERR_STORE);
    kill(node[o].pid, SIGCONT);
    assert_non_null(strstr(err.msg, "no answer within 500 ms"));
    rl2_redis_cluster_stats(cl, &st);
    assert_int_equal(st.refreshes, 1);
    assert_int_equal(rl2_redis_cluster_command(cl, slot, 2, argv, len, "INCR",
                                               &r, NULL, &err),
                     RL2_OK);
    /* the timed-out INCR ran when the master woke up */
    assert_int_equal(r->integer, 3);
    rl2_redis_reply_free(r);
    rl2_redis_cluster_stats(cl, &st);
    assert_int_equal(st.refreshes, 2);
    rl2_redis_cluster_destroy(cl);
}

/* INCR a key on every master through a router with this user and
 * password; RL2_OK or the first error. */
static rl2_status_t
incr_everywhere(const char *user, const char *password, rl2_err_t *err)
{
    rl2_redis_cluster_t *cl;
    rl2_redis_conf_t     conf;
    rl2_status_t         st = RL2_OK;
    int                  seen = 0;

    cluster_conf(&conf, 1);
    snprintf(conf.username, sizeof(conf.username), "%s", user);
    snprintf(conf.password, sizeof(conf.password), "%s", password);
    assert_int_equal(rl2_redis_cluster_create(&conf, &cl, err), RL2_OK);
    for (int i = 0; st == RL2_OK && seen != (1 << NODES) - 1; i++) {
        char        key[32];
        const char *argv[2] = { "INCR", key };
        size_t      len[2] = { 4, 0 };
        unsigned    slot;
        redisReply *r;

        len[1] = (size_t)snprintf(key, sizeof(key), "{auth-%d}", i);
        slot = rl2_redis_key_slot(key, len[1]);
        st = rl2_redis_cluster_command(cl, slot, 2, argv, len, "INCR", &r, NULL,
                                       err);
        if (st == RL2_OK) {
            assert_int_equal(r->type, REDIS_REPLY_INTEGER);
            rl2_redis_reply_free(r);
            seen |= 1 << owner_of(slot);
        }
    }
    rl2_redis_cluster_destroy(cl);
    return st;
}

/* AUTH with a password or an ACL user reaches every master the map names,
 * not only the seed. */
static void
test_auth_reaches_every_node(void **state)
{
    rl2_err_t err;

    (void)state;
    for (int n = 0; n < NODES; n++) {
        freeReplyObject(admin_cmd(adm[n], "CONFIG SET requirepass pw1"));
        /* the router needs CLUSTER SLOTS (and ASKING) beyond the
         * commands it carries */
        freeReplyObject(admin_cmd(adm[n], "ACL SETUSER rl2 on >pw2 ~* "
                                          "+incr +cluster|slots +asking"));
    }
    assert_int_equal(incr_everywhere("", "", &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "NOAUTH"));
    if (incr_everywhere("", "pw1", &err) != RL2_OK
        || incr_everywhere("rl2", "pw2", &err) != RL2_OK) {
        fail_msg("with AUTH: %s", err.msg);
    }
    /* the admin connections stay authenticated */
    for (int n = 0; n < NODES; n++) {
        freeReplyObject(admin_cmd(adm[n], "CONFIG SET requirepass %s", ""));
        freeReplyObject(admin_cmd(adm[n], "ACL DELUSER rl2"));
    }
}

/* l[n]: a layer of lim whose keys node n serves. */
static void
layer_per_node(const rl2_limit_t *lim, const char *prefix, rl2_layer_t *l)
{
    int have = 0;

    for (int i = 0; have != (1 << NODES) - 1; i++) {
        char        client[32];
        rl2_layer_t x;
        int         n;

        snprintf(client, sizeof(client), "%s%d", prefix, i);
        mk_layer(&x, lim, client);
        n = owner_of(layer_slot(&x));
        if (!(have & 1 << n)) {
            l[n] = x;
            have |= 1 << n;
        }
    }
}

/* Each node that lost the library gets it again from the first call for
 * its slots, and that call counts. */
static void
test_lost_functions_are_loaded_per_node(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "flush 4/min", RL2_ALGO_TOKEN_BUCKET, 4, MINUTE);
    rl2_layer_t l[NODES];
    long long   loads[NODES], evalsha[NODES];

    (void)state;
    layer_per_node(lim, "f", l);
    for (int n = 0; n < NODES; n++) {
        assert_int_equal(admit_n(&l[n], 1, 1), 1);
    }
    for (int n = 0; n < NODES; n++) {
        freeReplyObject(admin_cmd(adm[n], "FUNCTION FLUSH"));
        loads[n] = cmd_calls(adm[n], "function|load");
        evalsha[n] = cmd_calls(adm[n], "evalsha");
    }
    for (int n = 0; n < NODES; n++) {
        assert_int_equal(admit_n(&l[n], 1, 5), 3);
        assert_int_equal(left(&l[n]), 0);
        assert_int_equal(cmd_calls(adm[n], "function|load"), loads[n] + 1);
        assert_int_equal(cmd_calls(adm[n], "evalsha"), evalsha[n]);
    }
}

/* Under an ACL without functions the store calls scripts (the whole
 * process, until the reset at the end); a node that lost its script cache
 * answers NOSCRIPT, and gets the script again by EVAL, node by node. */
static void
test_without_functions_lost_script_cache_falls_back_per_node(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "scripts 4/min", RL2_ALGO_TOKEN_BUCKET, 4, MINUTE);
    rl2_redis_conf_t conf;
    rl2_store_t     *saved = store;
    rl2_layer_t      l[NODES];
    long long        evals[NODES];
    rl2_err_t        err;

    (void)state;
    for (int n = 0; n < NODES; n++) {
        acl_user_without_functions(adm[n]);
    }
    cluster_up_conf(&conf);
    snprintf(conf.username, sizeof(conf.username), NOFN_USER);
    snprintf(conf.password, sizeof(conf.password), NOFN_PASS);
    if (rl2_store_redis_create(&conf, &store, &err) != RL2_OK) {
        fail_msg("store: %s", err.msg);
    }
    layer_per_node(lim, "s", l);
    for (int n = 0; n < NODES; n++) {
        assert_int_equal(admit_n(&l[n], 1, 1), 1);
    }
    for (int n = 0; n < NODES; n++) {
        freeReplyObject(admin_cmd(adm[n], "SCRIPT FLUSH"));
        evals[n] = cmd_calls(adm[n], "eval");
    }
    for (int n = 0; n < NODES; n++) {
        /* apply: NOSCRIPT once, then EVALSHA again */
        assert_int_equal(admit_n(&l[n], 1, 5), 3);
        assert_int_equal(cmd_calls(adm[n], "eval"), evals[n] + 1);
        assert_true(cmd_calls(adm[n], "evalsha") > 0);
        assert_int_equal(left(&l[n]), 0);
    }
    rl2_store_destroy(store);
    store = saved;
    rl2_redis_functions_reset();
}

/* -ASK takes a call to a node that may not have the library yet, while
 * FUNCTION LOAD (no key) goes by the map to the slot's old master, which
 * has it: the call is then completed as a script (-ASK followed again),
 * and counts exactly. */
static void
test_ask_to_a_node_without_the_library(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "ask 5/min", RL2_ALGO_FIXED_WINDOW, 5, MINUTE);
    rl2_layer_t l;
    unsigned    slot;
    int         from, to;

    (void)state;
    mk_layer(&l, lim, "ask-fn");
    slot = layer_slot(&l);
    from = owner_of(slot);
    to = (from + 1) % NODES;
    assert_int_equal(admit_n(&l, 1, 1), 1);
    freeReplyObject(admin_cmd(adm[to], "FUNCTION FLUSH"));
    move_slot(slot, from, to, 0);
    assert_int_equal(admit_n(&l, 1, 2), 2);
    slot_give(slot, from, to);
    assert_int_equal(admit_n(&l, 1, 3), 2);
    assert_int_equal(left(&l), 0);
    /* after -MOVED the map names the new master: it gets the library */
    assert_true(cmd_calls(adm[to], "function|load") >= 1);
}

#define T(f) \
    cmocka_unit_test_setup_teardown(f, watchdog_setup, watchdog_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_crc16_and_key_slot_vectors),
        T(test_seed_syntax_and_checks),
        T(test_slots_match_the_servers_and_keys_spread),
        T(test_refused_in_one_slot_is_counted_in_none),
        T(test_threads_admit_exactly_across_slots),
        T(test_moved_slot_is_followed),
        T(test_ask_during_migration_then_moved),
        T(test_ask_to_a_node_without_the_library),
        T(test_tryagain_is_sent_again_until_the_move_ends),
        T(test_timeout_marks_the_map_stale),
        T(test_lost_functions_are_loaded_per_node),
        T(test_without_functions_lost_script_cache_falls_back_per_node),
        T(test_auth_reaches_every_node),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, cluster_group_setup,
                                  cluster_group_teardown);
}
