/*
 * test_lease.c -- lease mode (redis/redis_lease.c) over a real
 * redis-server, with test clocks: two "servers" (two lease tables in front
 * of one Redis) never admit more than the limit, and every unit is always
 * in exactly one place: admitted, held in a server's table, or free in
 * Redis; a server that stops strands only what it holds; a request
 * another limit refuses gives its units back; slices grow for a busy key
 * and a key seen rarely costs one call per request; a slice is not used
 * past its window.
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

#include <pthread.h>
#include <ucontext.h>

#include "rl2_redis_test.h"
#include "ratelimit2/failover.h"
#include "ratelimit2/store_local.h"
#include "redis/redis_internal.h"
#include "store/store_internal.h"

#define LEASE_US  SEC
#define LEASE_MAX 20

typedef struct {
    rl2_zone_t    *zone;
    rl2_store_t   *lease;
    rl2_circuit_t *circuit; /* the failover's, or NULL */
    char           name[64];
} server_t;

static server_t servers[2];

static void
server_open(server_t *sv, int idx)
{
    rl2_lease_conf_t lc;
    rl2_err_t        err;

    snprintf(sv->name, sizeof(sv->name), "/rl2-test-lease-%d-%d", (int)getpid(),
             idx);
    rl2_zone_unlink(sv->name, NULL);
    if (rl2_zone_open(sv->name, 1024, rl2_lease_state_size(), 0600, &sv->zone,
                      &err)
        != RL2_OK) {
        fail_msg("zone: %s", err.msg);
    }
    lc.zone = sv->zone;
    lc.circuit = sv->circuit;
    lc.redis = store;
    lc.inner = store;
    lc.all = 1;
    lc.lease_us = LEASE_US;
    lc.lease_max = LEASE_MAX;
    lc.call_max_us = 0;
    if (rl2_store_lease_create(&lc, &sv->lease, &err) != RL2_OK) {
        fail_msg("lease store: %s", err.msg);
    }
}

static void
server_close(server_t *sv)
{
    if (sv->lease != NULL) {
        rl2_store_destroy(sv->lease);
        rl2_zone_close(sv->zone);
        rl2_zone_unlink(sv->name, NULL);
        sv->lease = NULL;
    }
}

/* One request through sv at t: 1 admitted, 0 refused. */
static int
ask(server_t *sv, rl2_layer_t *layer, int64_t t)
{
    rl2_clock_t clk = clock_at(t);
    rl2_err_t   err;
    rl2_layer_t l = *layer;

    if (sv->lease->ops->apply(sv->lease, &l, 1, &clk, &err) != RL2_OK) {
        fail_msg("apply: %s", err.msg);
    }
    assert_int_equal(l.committed != 0, !l.refused);
    *layer = l;
    return l.committed != 0;
}

/* What Redis has free for the layer's key at t (a peek of cost 1). */
static int64_t
free_in_redis(rl2_layer_t *layer, int64_t t)
{
    rl2_clock_t clk = clock_at(t);
    rl2_err_t   err;
    rl2_layer_t l = *layer;

    if (store->ops->peek(store, &l, 1, &clk, &err) != RL2_OK) {
        fail_msg("peek: %s", err.msg);
    }
    return l.result.allowed ? l.result.remaining + 1 : l.result.remaining;
}

static int64_t
held(server_t *sv, const rl2_layer_t *layer, int64_t t)
{
    return sv->lease != NULL ? rl2_lease_held(sv->zone, layer->key, t) : 0;
}

/* The start of an hour, a minute into it: a history of under an hour
 * stays in one fixed window. */
static int64_t
hour_start(void)
{
    return (wall_us() / HOUR + 1) * HOUR + MINUTE;
}

/* Random requests at two servers, the clock stepping 0..1.5 lease times:
 * after every step, admitted + held by both + free in Redis is the limit,
 * and no more than the limit is ever admitted. */
static void
test_every_unit_is_in_one_place(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "conserve", RL2_ALGO_FIXED_WINDOW, 300, HOUR);
    rl2_layer_t layer;
    int64_t     t = hour_start();
    int         admitted = 0;
    uint64_t    r = 88172645463325252ull;

    (void)state;
    mk_layer(&layer, lim, "10.0.0.1");
    for (int step = 0; step < 900; step++) {
        r ^= r << 13;
        r ^= r >> 7;
        r ^= r << 17;
        admitted += ask(&servers[r % 2], &layer, t);
        assert_true(admitted <= 300);
        assert_int_equal(admitted + held(&servers[0], &layer, t)
                             + held(&servers[1], &layer, t)
                             + free_in_redis(&layer, t),
                         300);
        t += (int64_t)((r >> 8) % (3 * LEASE_US / 2));
    }
    printf("  900 requests at two servers: %d admitted of 300\n", admitted);
    assert_int_equal(admitted, 300);
}

/* A server that stops asking strands what it holds, and only that. */
static void
test_a_dead_server_strands_only_its_slices(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "strand", RL2_ALGO_FIXED_WINDOW, 200, HOUR);
    rl2_layer_t layer;
    int64_t     t = hour_start(), lost;
    int         admitted = 0, i;

    (void)state;
    mk_layer(&layer, lim, "10.0.0.2");
    for (i = 0; i < 80; i++) {
        admitted += ask(&servers[i % 2], &layer, t);
        t += 1000;
    }
    lost = held(&servers[0], &layer, t);
    printf("  server 0 stops holding %" PRId64 " units\n", lost);
    assert_true(lost > 0);
    assert_true(lost <= 2 * LEASE_MAX); /* a slice and one asked ahead */
    server_close(&servers[0]);
    while (ask(&servers[1], &layer, t)) {
        admitted++;
        t += 1000;
    }
    printf("  the fleet admitted %d of 200\n", admitted);
    assert_int_equal(admitted, 200 - lost);
    server_open(&servers[0], 0);
}

/* A busy key grows its slices (few calls); a key seen once per lease
 * time is asked for one unit at a time. */
static void
test_slices_follow_the_rate(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "busy", RL2_ALGO_TOKEN_BUCKET, 1000000, HOUR);
    rl2_layer_t layer;
    int64_t     t = wall_us();
    long long   before, busy, rare;

    (void)state;
    mk_layer(&layer, lim, "10.0.0.3");
    before = cmd_calls(admin, "fcall");
    for (int i = 0; i < 400; i++) {
        assert_true(ask(&servers[0], &layer, t));
        t += 100; /* 10,000 a second */
    }
    busy = cmd_calls(admin, "fcall") - before;
    mk_layer(&layer, lim, "10.0.0.4");
    before = cmd_calls(admin, "fcall");
    for (int i = 0; i < 20; i++) {
        assert_true(ask(&servers[0], &layer, t));
        assert_true(held(&servers[0], &layer, t) <= 1);
        t += 2 * LEASE_US;
    }
    rare = cmd_calls(admin, "fcall") - before;
    printf("  400 busy requests: %lld calls; 20 rare ones: %lld\n", busy, rare);
    assert_true(busy <= 400 / LEASE_MAX + 10);
    assert_int_equal(rare, 20);
}

/* A busy key's next slice is asked for when half of its slice is left
 * (a quarter left too little time for the call on a loaded host): each
 * call of a busy key's steady state is made by the request that leaves
 * half of a full slice, served from it. */
static void
test_the_next_slice_is_asked_for_at_half(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "busy", RL2_ALGO_TOKEN_BUCKET, 1000000, HOUR);
    rl2_layer_t layer;
    int64_t     t = wall_us(), before;
    long long   calls, asks = 0;

    (void)state;
    mk_layer(&layer, lim, "10.0.0.5");
    for (int i = 0; i < 100; i++) { /* the slices grow to LEASE_MAX */
        assert_true(ask(&servers[0], &layer, t));
        t += 100;
    }
    for (int i = 0; i < 200; i++) {
        before = held(&servers[0], &layer, t);
        calls = cmd_calls(admin, "fcall");
        assert_true(ask(&servers[0], &layer, t));
        if (cmd_calls(admin, "fcall") > calls) {
            /* served from the slice, then asked: it left half of it */
            assert_int_equal(before - 1, LEASE_MAX / 2);
            assert_int_equal(held(&servers[0], &layer, t),
                             LEASE_MAX / 2 + LEASE_MAX);
            asks++;
        }
        t += 100;
    }
    printf("  200 busy requests: %lld calls, each at half a slice\n", asks);
    assert_true(asks >= 200 / LEASE_MAX - 1);
}

/* A lease store over servers[0]'s table and `redis`, with a lease time
 * and a call's longest time of its own. */
static rl2_store_t *
lease_store(rl2_store_t *redis, int64_t lease_us, int64_t call_max_us)
{
    rl2_lease_conf_t lc;
    rl2_store_t     *s;
    rl2_err_t        err;

    lc.zone = servers[0].zone;
    lc.circuit = NULL;
    lc.redis = lc.inner = redis;
    lc.all = 1;
    lc.lease_us = lease_us;
    lc.lease_max = LEASE_MAX;
    lc.call_max_us = call_max_us;
    assert_int_equal(rl2_store_lease_create(&lc, &s, &err), RL2_OK);
    return s;
}

/* The leader's request, through a store of its own over a second Redis
 * (stopped, so that its call stays out), in a thread. */
typedef struct {
    rl2_store_t *lease;
    rl2_layer_t  layer;
    int64_t      t;
} leader_t;

static void *
leader_request(void *arg)
{
    leader_t   *ld = arg;
    rl2_clock_t clk = clock_at(ld->t);
    rl2_err_t   err;

    ld->lease->ops->apply(ld->lease, &ld->layer, 1, &clk, &err);
    return NULL;
}

/* One request through the lease store s at t: 1 admitted. */
static int
ask_through(rl2_store_t *s, rl2_layer_t *layer, int64_t t)
{
    rl2_clock_t clk = clock_at(t);
    rl2_err_t   err;
    rl2_layer_t l = *layer;

    assert_int_equal(s->ops->apply(s, &l, 1, &clk, &err), RL2_OK);
    return l.committed != 0;
}

/* ld's key made busy through s (its slices grow to LEASE_MAX), those
 * slices left to end; then ld's request through its own store, whose
 * Redis (srv2) is stopped: once the key is marked, its call is out and
 * stays out until leader_end().  ld->t is the leader's time. */
static void
leader_out(leader_t *ld, rl2_store_t *s, int64_t lease_us, srv_t *srv2,
           pthread_t *th, int64_t t)
{
    for (int i = 0; i < 100; i++) {
        assert_true(ask_through(s, &ld->layer, t));
        t += 100;
    }
    ld->t = t + 2 * lease_us;
    assert_int_equal(kill(srv2->pid, SIGSTOP), 0);
    assert_int_equal(pthread_create(th, NULL, leader_request, ld), 0);
    while (!rl2_lease_asking_now(servers[0].zone, ld->layer.key, ld->t)) {
        sched_yield(); /* the leader's plan is made under the lock */
    }
}

/* The leader's call may end: srv2 runs again, the thread is joined. */
static void
leader_end(srv_t *srv2, pthread_t th)
{
    assert_int_equal(kill(srv2->pid, SIGCONT), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
}

/* While a call for a slice is out, the others ask for their own cost;
 * a follower's grant, which comes back first, must leave the mark to the
 * call that set it: else the next request asks for a slice of its own
 * while the first is out, and a server killed then strands both (found
 * by t_lease_fleet: 133 units lost where at most 132 may be). */
static void
test_a_follower_grant_keeps_the_mark(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "marked", RL2_ALGO_TOKEN_BUCKET, 1000000, HOUR);
    rl2_store_t *redis2;
    srv_t        srv2;
    leader_t     ld;
    pthread_t    th;
    int64_t      t = wall_us(), own[3];
    int          admitted[3], kept[3];

    (void)state;
    srv_start(&srv2, NULL);
    redis2 = mk_store(&srv2, 1);
    ld.lease = lease_store(redis2, LEASE_US, 0);
    mk_layer(&ld.layer, lim, "10.0.0.9");
    leader_out(&ld, servers[0].lease, LEASE_US, &srv2, &th, t);
    t = ld.t;
    /* Recorded, asserted once the leader's call has ended: a failed
     * assertion here would leave redis2 stopped and the thread running. */
    for (int i = 0; i < 3; i++) {
        rl2_layer_t l = ld.layer;

        admitted[i] = ask(&servers[0], &l, t + (i + 1) * 100);
        own[i] = held(&servers[0], &l, t + (i + 1) * 100);
        kept[i] =
            rl2_lease_asking_now(servers[0].zone, l.key, t + (i + 1) * 100);
    }
    leader_end(&srv2, th);
    for (int i = 0; i < 3; i++) {
        /* a follower's unit, taken: nothing held, and the mark stays */
        assert_true(admitted[i]);
        assert_int_equal(own[i], 0);
        assert_true(kept[i]);
    }
    /* the leader's call ended (granted, or timed out): no mark */
    assert_false(rl2_lease_asking_now(servers[0].zone, ld.layer.key, t + 400));
    rl2_store_destroy(ld.lease);
    rl2_store_destroy(redis2);
    srv_stop(&srv2);
}

/* A call's mark lasts its timeouts (connect_timeout + 4 timeouts: 600 ms
 * with the defaults), but the entry that holds the mark is kept only ten
 * lease times from the ask (500 ms with lease_time = 50): a call out for
 * 550 ms, well within its timeouts, loses its mark with its entry, and the
 * next requests ask for slices of their own while it is out (found by the
 * review of d55481c). */
static void
test_a_mark_outlives_its_entry_keep(void **state)
{
    const int64_t lease_us = 50 * 1000, call_max_us = 600 * 1000;
    rl2_limit_t  *lim =
        limit_of(pol, "keepmark", RL2_ALGO_TOKEN_BUCKET, 1000000, HOUR);
    rl2_store_t *redis2, *fs;
    srv_t        srv2;
    leader_t     ld;
    pthread_t    th;
    int64_t      t = wall_us(), own[3];
    int          marked[3], kept[3], admitted[3];

    (void)state;
    srv_start(&srv2, NULL);
    redis2 = mk_store(&srv2, 1);
    ld.lease = lease_store(redis2, lease_us, call_max_us);
    fs = lease_store(store, lease_us, call_max_us);
    mk_layer(&ld.layer, lim, "10.0.0.12");
    leader_out(&ld, fs, lease_us, &srv2, &th, t);
    t = ld.t;
    /* 550 ms into the leader's call (which may take 600): the followers
     * find the mark, ask for their own cost and leave the mark alone */
    t += 550 * 1000;
    for (int i = 0; i < 3; i++) {
        rl2_layer_t l = ld.layer;

        marked[i] = rl2_lease_asking_now(servers[0].zone, l.key, t + i * 100);
        admitted[i] = ask_through(fs, &l, t + i * 100);
        kept[i] = rl2_lease_asking_now(servers[0].zone, l.key, t + i * 100);
        own[i] = held(&servers[0], &l, t + i * 100);
    }
    /* the leader's call is still out (redis2 stopped): only now may it end */
    leader_end(&srv2, th);
    rl2_store_destroy(fs);
    rl2_store_destroy(ld.lease);
    rl2_store_destroy(redis2);
    srv_stop(&srv2);
    for (int i = 0; i < 3; i++) {
        printf("  follower %d, 550 ms into the leader's call: mark found %d, "
               "kept %d, units held after %lld\n",
               i + 1, marked[i], kept[i], (long long)own[i]);
    }
    for (int i = 0; i < 3; i++) {
        /* a mark gone while the call is out: >0 held is a slice of a
         * follower's own, asked for while the leader's was out */
        assert_true(marked[i]);
        assert_true(admitted[i]);
        assert_true(kept[i]);
        assert_int_equal(own[i], 0);
    }
}

/* A request another layer refuses leaves its slice as it was. */
static void
test_a_refused_request_gives_its_units_back(void **state)
{
    rl2_limit_t *leased =
        limit_of(pol, "give", RL2_ALGO_FIXED_WINDOW, 100, HOUR);
    rl2_limit_t *exact = limit_of(pol, "gate", RL2_ALGO_FIXED_WINDOW, 3, HOUR);
    rl2_layer_t  two[2];
    rl2_clock_t  clk;
    rl2_err_t    err;
    int64_t      t = hour_start(), before;
    int          admitted = 0;

    (void)state;
    exact->lease = RL2_LEASE_OFF;
    mk_layer(&two[0], leased, "10.0.0.5");
    mk_layer(&two[1], exact, "10.0.0.5");
    for (int i = 0; i < 10; i++) {
        rl2_layer_t l[2] = { two[0], two[1] };

        before = held(&servers[0], &two[0], t) + free_in_redis(&two[0], t);
        clk = clock_at(t);
        if (servers[0].lease->ops->apply(servers[0].lease, l, 2, &clk, &err)
            != RL2_OK) {
            fail_msg("apply: %s", err.msg);
        }
        if (l[1].refused) {
            /* a slice it asked for may stay, but its unit is not taken */
            assert_false(l[0].committed);
            assert_int_equal(held(&servers[0], &two[0], t)
                                 + free_in_redis(&two[0], t),
                             before);
        }
        else {
            admitted++;
        }
        t += 1000;
    }
    assert_int_equal(admitted, 3);
    assert_int_equal(held(&servers[0], &two[0], t) + free_in_redis(&two[0], t),
                     100 - 3);
}

/* A fixed window's slice is not used in the next window. */
static void
test_a_slice_ends_with_its_window(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "edge", RL2_ALGO_FIXED_WINDOW, 1000, MINUTE);
    rl2_layer_t layer;
    int64_t     t = (wall_us() / MINUTE + 1) * MINUTE + MINUTE - 50000;
    long long   before;

    (void)state;
    mk_layer(&layer, lim, "10.0.0.6");
    for (int i = 0; i < 40; i++) {
        assert_true(ask(&servers[0], &layer, t));
        t += 100;
    }
    assert_true(held(&servers[0], &layer, t) > 0);
    t += 50000; /* into the next minute */
    before = cmd_calls(admin, "fcall");
    assert_true(ask(&servers[0], &layer, t));
    assert_int_equal(cmd_calls(admin, "fcall") - before, 1);
    /* the new window counts only what it granted */
    assert_int_equal(
        free_in_redis(&layer, t) + held(&servers[0], &layer, t) + 1, 1000);
}

/* A limit lowered while a slice is held (a factor: the same key, another
 * count): the slice's unused units must not go back under the new limit,
 * whose refund would forgive what the old one committed.  Had they never
 * been granted, the 40 admitted would already be over the new limit of 10,
 * and nothing more would be admitted in this window. */
static void
test_a_changed_limit_takes_nothing_back(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "shrink", RL2_ALGO_FIXED_WINDOW, 100, HOUR);
    rl2_limit_t low;
    rl2_layer_t layer;
    int64_t     t = hour_start(), h;

    (void)state;
    mk_layer(&layer, lim, "10.0.0.7");
    for (int i = 0; i < 40; i++) {
        assert_true(ask(&servers[0], &layer, t));
        t += 1000;
    }
    h = held(&servers[0], &layer, t);
    printf("  40 admitted, %" PRId64 " held when the limit falls to 10\n", h);
    assert_true(h > 0);
    low = *lim;
    low.algo.limit = 10;
    layer.limit = &low;
    t += 2 * LEASE_US; /* the slice is over: its units are to go back */
    assert_false(ask(&servers[0], &layer, t));
    assert_false(ask(&servers[1], &layer, t));
}

/* One request in exact mode (the store under the leases) at t. */
static int
ask_exact(rl2_layer_t *layer, int64_t t)
{
    rl2_clock_t clk = clock_at(t);
    rl2_err_t   err;
    rl2_layer_t l = *layer;

    if (store->ops->apply(store, &l, 1, &clk, &err) != RL2_OK) {
        fail_msg("apply: %s", err.msg);
    }
    return l.committed != 0;
}

/* A token bucket's rate lowered while a slice is held: a return would
 * refund each unit at the new, longer interval, more than the grant took.
 * The same history in exact mode says what may be admitted after it. */
static void
test_a_slower_bucket_takes_nothing_back(void **state)
{
    rl2_limit_t *lim = limit_of(pol, "slow", RL2_ALGO_TOKEN_BUCKET, 100, HOUR);
    rl2_limit_t  low;
    rl2_layer_t  layer, exact;
    int64_t      t = wall_us();
    int          leased = 0, exactly = 0;

    (void)state;
    mk_layer(&layer, lim, "10.0.0.8");
    mk_layer(&exact, lim, "10.0.0.9");
    for (int i = 0; i < 40; i++) {
        assert_true(ask(&servers[0], &layer, t));
        assert_true(ask_exact(&exact, t));
        t += 1000;
    }
    assert_true(held(&servers[0], &layer, t) > 0);
    low = *lim;
    low.algo.limit = 10; /* an interval of 6 minutes, a burst of 10 */
    layer.limit = exact.limit = &low;
    t += 2 * LEASE_US;
    for (int i = 0; i < 20; i++) {
        leased += ask(&servers[i % 2], &layer, t);
        exactly += ask_exact(&exact, t);
    }
    printf("  after the change: %d admitted leased, %d exactly\n", leased,
           exactly);
    assert_true(leased <= exactly);
}

/* A request of RL2_MAX_LAYERS leased layers whose slices all ended
 * unused (the one in use and the one asked ahead: two returns each) makes
 * twice as many asks as one call carries: every history of a few
 * requests, a pause of two lease times, and one more is admitted. */
static void
test_many_layers_with_two_returns_each(void **state)
{
    rl2_layer_t layers[RL2_MAX_LAYERS];
    int64_t     t = hour_start();
    rl2_err_t   err;

    (void)state;
    for (int i = 0; i < RL2_MAX_LAYERS; i++) {
        char name[16];

        snprintf(name, sizeof(name), "many%d", i);
        mk_layer(&layers[i],
                 limit_of(pol, name, RL2_ALGO_FIXED_WINDOW, 100000, HOUR),
                 "10.0.0.10");
    }
    for (int k = 1; k <= 24; k++) {
        for (int j = 0; j <= k; j++) {
            rl2_layer_t l[RL2_MAX_LAYERS];
            rl2_clock_t clk = clock_at(t);

            memcpy(l, layers, sizeof(l));
            if (servers[0].lease->ops->apply(servers[0].lease, l,
                                             RL2_MAX_LAYERS, &clk, &err)
                != RL2_OK) {
                fail_msg("after %d requests and a pause: %s", k, err.msg);
            }
            for (int i = 0; i < RL2_MAX_LAYERS; i++) {
                assert_true(l[i].committed);
            }
            t += j < k ? 1000 : 0;
        }
        t += 2 * LEASE_US;
    }
}

/* ---- a process killed inside the table's lock ----
 *
 * A child makes one request single-stepped (the x86-64 trap flag), and
 * kills itself with SIGKILL after its n-th instruction under the lease
 * table's lock, for every n until one runs through: at each point the
 * table it leaves, once the next locker has recovered the lock, must hold
 * no unit twice (admitted + held + free in Redis never above the limit).
 * The history: five requests a millisecond apart (slices of 1, 2 and 4,
 * one of 8 asked ahead), then one two lease times later, whose table
 * stretch moves the unused units of both slices to go back. */
#if defined(__x86_64__)
static pthread_mutex_t *step_lock;
static pid_t            step_tid;
static long             step_n, step_at;

static void
on_step(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    if (step_lock->__data.__owner == step_tid) {
        if (++step_n >= step_at) {
            raise(SIGKILL);
        }
    }
    else if (step_n > 0) {
        /* the first stretch under the lock is over: run on */
        ((ucontext_t *)uc)->uc_mcontext.gregs[REG_EFL] &= ~0x100LL;
    }
}

/* In a child: the request through a store of its own (the parent's
 * connection is the parent's), killed at instruction `at` under the
 * lock.  Exits 0 if the request ran through. */
static void
child_request(rl2_layer_t *layer, int64_t t, long at)
{
    struct sigaction sa;
    rl2_lease_conf_t lc;
    rl2_store_t     *redis = mk_store(&srv, 1), *lease;
    rl2_clock_t      clk = clock_at(t);
    rl2_layer_t      l = *layer;
    rl2_err_t        err;

    lc.zone = servers[0].zone;
    lc.circuit = NULL;
    lc.redis = lc.inner = redis;
    lc.all = 1;
    lc.lease_us = LEASE_US;
    lc.lease_max = LEASE_MAX;
    lc.call_max_us = 0;
    if (rl2_store_lease_create(&lc, &lease, &err) != RL2_OK) {
        _exit(2);
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_step;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGTRAP, &sa, NULL);
    step_lock = &servers[0].zone->hdr->lock;
    step_tid = gettid();
    step_at = at;
    __asm__ volatile("pushfq\n\torq $0x100, (%%rsp)\n\tpopfq" ::
                         : "cc", "memory");
    lease->ops->apply(lease, &l, 1, &clk, &err);
    _exit(0);
}
#endif

/* Every instruction under the lock is a kill point; under the
 * sanitizers (several times the instructions, each single-stepped, and
 * the whole stretch again for each point) every seventh, so that the
 * run stays within its watchdog. */
#if defined(__SANITIZE_ADDRESS__)
#define KILL_STRIDE 7
#else
#define KILL_STRIDE 1
#endif

static void
test_a_kill_inside_the_lock_uses_no_unit_twice(void **state)
{
#if defined(__x86_64__)
    rl2_limit_t *lim =
        limit_of(pol, "killed", RL2_ALGO_FIXED_WINDOW, 100000, HOUR);
    int64_t t0 = hour_start();
    long    points = 0;

    (void)state;
    for (long at = 1;; at += KILL_STRIDE) {
        rl2_layer_t layer;
        char        client[48];
        int64_t     t = t0;
        int         admitted = 0, status;
        pid_t       pid;

        snprintf(client, sizeof(client), "10.1.0.%ld", at);
        mk_layer(&layer, lim, client);
        for (int i = 0; i < 5; i++) {
            admitted += ask(&servers[0], &layer, t);
            t += 1000;
        }
        t += 2 * LEASE_US; /* the slices are over: back they go */
        if ((pid = fork()) == 0) {
            child_request(&layer, t, at);
        }
        assert_true(pid > 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(held(&servers[0], &layer, t) + free_in_redis(&layer, t)
                        + admitted
                    <= 100000);
        if (WIFEXITED(status)) {
            assert_int_equal(WEXITSTATUS(status), 0);
            break; /* ran through: every point of this history done */
        }
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        points++;
    }
    printf("  %ld kills inside the lock\n", points);
#else
    (void)state;
    skip();
#endif
}

/* A probe of an open circuit must reach Redis: served from a slice still
 * held, it closed the circuit while Redis was stopped. */
static void
test_a_probe_is_not_served_from_a_slice(void **state)
{
    rl2_limit_t *lim =
        limit_of(pol, "probe", RL2_ALGO_FIXED_WINDOW, 1000, HOUR);
    rl2_circuit_conf_t  cc = { 1, 1, 0 }; /* opens at once, probes at 1 ms */
    rl2_circuit_t      *c = NULL;
    rl2_failover_conf_t fc;
    rl2_store_t        *fo = NULL;
    rl2_layer_t         layer, l;
    rl2_clock_t         clk;
    rl2_err_t           err;
    int64_t             t = hour_start();
    char                name[64];

    (void)state;
    snprintf(name, sizeof(name), "/rl2test-%ld-lp.circuit", (long)getpid());
    assert_int_equal(rl2_circuit_open(name, &cc, 0600, &c, &err), RL2_OK);
    rl2_failover_conf_default(&fc);
    fc.mode = RL2_FAILOVER_OPEN; /* needs no local zone */
    servers[0].circuit = c;
    server_close(&servers[0]);
    server_open(&servers[0], 0);
    assert_int_equal(
        rl2_store_failover_create(servers[0].lease, NULL, c, &fc, &fo, &err),
        RL2_OK);
    mk_layer(&layer, lim, "10.0.0.11");
    for (int i = 0; i < 10; i++) {
        clk = clock_at(t);
        l = layer;
        assert_int_equal(fo->ops->apply(fo, &l, 1, &clk, &err), RL2_OK);
        t += 1000;
    }
    assert_true(held(&servers[0], &layer, t) > 0);
    assert_int_equal(kill(srv.pid, SIGSTOP), 0);
    assert_int_equal(rl2_circuit_failure(c, RL2_ROUTE_PRIMARY, mono_us()), 1);
    usleep(5000); /* past the probe interval */
    clk = clock_at(t);
    l = layer;
    assert_int_equal(fo->ops->apply(fo, &l, 1, &clk, &err), RL2_OK);
    assert_int_equal(kill(srv.pid, SIGCONT), 0);
    assert_int_not_equal(rl2_circuit_state(c), RL2_CIRCUIT_CLOSED);
    rl2_store_destroy(fo);
    servers[0].circuit = NULL;
    server_close(&servers[0]);
    server_open(&servers[0], 0);
    rl2_circuit_close(c);
    rl2_circuit_unlink(name, NULL);
}

static int
lease_group_setup(void **state)
{
    store_group_setup(state);
    rl2_store_destroy(store);
    store = mk_store(&srv, 1); /* the scripts on the test clocks */
    server_open(&servers[0], 0);
    server_open(&servers[1], 1);
    return 0;
}

static int
lease_group_teardown(void **state)
{
    server_close(&servers[0]);
    server_close(&servers[1]);
    return store_group_teardown(state);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_unit_is_in_one_place,
                                        flushed_setup, watchdog_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_dead_server_strands_only_its_slices, flushed_setup,
            watchdog_teardown),
        cmocka_unit_test_setup_teardown(
            test_the_next_slice_is_asked_for_at_half, flushed_setup,
            watchdog_teardown),
        cmocka_unit_test_setup_teardown(test_slices_follow_the_rate,
                                        flushed_setup, watchdog_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_refused_request_gives_its_units_back, flushed_setup,
            watchdog_teardown),
        cmocka_unit_test_setup_teardown(test_a_slice_ends_with_its_window,
                                        flushed_setup, watchdog_teardown),
        cmocka_unit_test_setup_teardown(test_a_changed_limit_takes_nothing_back,
                                        flushed_setup, watchdog_teardown),
        cmocka_unit_test_setup_teardown(test_a_slower_bucket_takes_nothing_back,
                                        flushed_setup, watchdog_teardown),
        cmocka_unit_test_setup_teardown(test_many_layers_with_two_returns_each,
                                        flushed_setup, watchdog_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_kill_inside_the_lock_uses_no_unit_twice, flushed_setup,
            watchdog_teardown),
        cmocka_unit_test_setup_teardown(test_a_probe_is_not_served_from_a_slice,
                                        flushed_setup, watchdog_teardown),
        cmocka_unit_test_setup_teardown(test_a_follower_grant_keeps_the_mark,
                                        flushed_setup, watchdog_teardown),
        cmocka_unit_test_setup_teardown(test_a_mark_outlives_its_entry_keep,
                                        flushed_setup, watchdog_teardown),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests_name("lease mode", tests, lease_group_setup,
                                       lease_group_teardown);
}
