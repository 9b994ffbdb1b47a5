/*
 * test_zone_usage.c -- what a local zone reports of its memory: live
 * keys (not the entries that once held a key), keys per limit, bytes in
 * use and reserved, and the expired entries taken back, by the scrape's
 * walk (rl2_zone_usage) and by the upkeep's bounded sweep
 * (rl2_zone_sweep).  The local store runs on a test clock: time moves
 * only when a test moves it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/policy.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"
#include "base/base_internal.h"
#include "store/store_internal.h"

#define WATCHDOG_S 30
#define T0_US      960000000LL /* a minute's start, monotonic */
#define WALL_US    1704164645000000LL
#define SEC_US     1000000LL
#define MIN_US     (60 * SEC_US)
#define HOUR_US    (60 * MIN_US)
#define ZE         64u /* the smallest zone */

static struct {
    rl2_policy_t *policy;
    rl2_zone_t   *zone;
    rl2_store_t  *store;
    char          name[64];
    int64_t       now_us;
    rl2_limit_t   login; /* fixed window, 10 a minute */
    rl2_limit_t   api;   /* token bucket, 100 an hour */
} fx;

static void
make_limit(rl2_limit_t *l, const char *name, rl2_algo_t algo, int64_t count,
           int64_t window_us)
{
    rl2_err_t err = { "" };

    memset(l, 0, sizeof(*l));
    l->name = name;
    l->file = "test";
    l->line = 1;
    l->algo.algo = algo;
    l->algo.limit = count;
    l->algo.window_us = window_us;
    l->key = RL2_KEY_IP;
    l->cost = 1;
    if (rl2_limit_finish(fx.policy, l, 0, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
}

static int
setup(void **state)
{
    (void)state;
    alarm(WATCHDOG_S);
    memset(&fx, 0, sizeof(fx));
    fx.now_us = T0_US;
    snprintf(fx.name, sizeof(fx.name), "/rl2test-%ld-usage", (long)getpid());
    rl2_zone_unlink(fx.name, NULL);
    assert_int_equal(rl2_policy_create("test", &fx.policy, NULL), RL2_OK);
    assert_int_equal(rl2_zone_open(fx.name, ZE, 256, 0600, &fx.zone, NULL),
                     RL2_OK);
    assert_int_equal(rl2_store_local_create(fx.zone, &fx.store, NULL), RL2_OK);
    make_limit(&fx.login, "login", RL2_ALGO_FIXED_WINDOW, 10, MIN_US);
    make_limit(&fx.api, "api", RL2_ALGO_TOKEN_BUCKET, 100, HOUR_US);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    alarm(0);
    rl2_store_destroy(fx.store);
    rl2_zone_close(fx.zone);
    rl2_policy_free(fx.policy);
    rl2_zone_unlink(fx.name, NULL);
    return 0;
}

/* One admitted request of client `who` (a number) under limit. */
static void
request(const rl2_limit_t *limit, unsigned who)
{
    rl2_clock_t now = { fx.now_us, WALL_US };
    rl2_layer_t l;
    char        key[32];

    memset(&l, 0, sizeof(l));
    l.limit = limit;
    snprintf(key, sizeof(key), "%s/%u", limit->name, who);
    l.key = rl2_digest(key, strlen(key));
    assert_int_equal(fx.store->ops->apply(fx.store, &l, 1, &now, NULL), RL2_OK);
    assert_false(l.refused);
}

static void
usage(rl2_zone_usage_t *u, rl2_zone_stats_t *s)
{
    assert_int_equal(rl2_zone_usage(fx.zone, fx.now_us, u, s, NULL), RL2_OK);
}

/* The live keys of the limit called name, -1 when it has no line. */
static int64_t
keys_of(const rl2_zone_usage_t *u, const char *name)
{
    for (size_t i = 0; i < u->n_limits; i++) {
        if (strcmp(u->limits[i].name, name) == 0) {
            return (int64_t)u->limits[i].keys;
        }
    }
    return -1;
}

/* Twice the zone's entries of distinct clients come within a minute and
 * go: the zone reports what is live, not 100%; per limit; and counts the
 * entries it took back. */
static void
test_expired_clients_are_not_live(void **state)
{
    rl2_zone_usage_t u;
    rl2_zone_stats_t s;

    (void)state;
    for (unsigned i = 0; i < 2 * ZE; i++) {
        fx.now_us = T0_US + i * 1000;
        request(&fx.login, i);
    }
    fx.now_us = T0_US + SEC_US;
    usage(&u, &s);
    assert_int_equal(u.live, ZE);
    assert_int_equal(s.used, ZE);
    assert_int_equal(s.evictions, ZE); /* live keys made room */
    assert_int_equal(u.reclaimed, 0);
    assert_int_equal(u.n_limits, 1);
    assert_int_equal(keys_of(&u, "login"), ZE);
    assert_int_equal(u.unnamed, 0);
    assert_int_equal(u.bytes_used, s.fixed_bytes + ZE * s.entry_bytes);
    assert_int_equal(u.bytes_reserved, s.bytes);
    assert_true(s.entry_bytes >= sizeof(zone_entry_t) + s.state_size);

    /* The minute is over: every login key's window ended. */
    fx.now_us = T0_US + 61 * SEC_US;
    usage(&u, &s);
    assert_int_equal(u.live, 0);
    assert_int_equal(s.used, 0);
    assert_int_equal(u.reclaimed, ZE);
    assert_int_equal(u.n_limits, 0);
    assert_int_equal(u.bytes_used, s.fixed_bytes);

    /* A few clients of each limit: both named, none taken back. */
    for (unsigned i = 0; i < 5; i++) {
        request(&fx.api, i);
    }
    for (unsigned i = 0; i < 3; i++) {
        request(&fx.login, 1000 + i);
    }
    usage(&u, &s);
    assert_int_equal(u.live, 8);
    assert_int_equal(keys_of(&u, "api"), 5);
    assert_int_equal(keys_of(&u, "login"), 3);
    assert_int_equal(u.reclaimed, ZE);

    /* The next minute ends: the login keys go, the hour's bucket stays. */
    fx.now_us = T0_US + 125 * SEC_US;
    usage(&u, &s);
    assert_int_equal(u.live, 5);
    assert_int_equal(s.used, 5);
    assert_int_equal(keys_of(&u, "api"), 5);
    assert_int_equal(keys_of(&u, "login"), -1);
    assert_int_equal(u.reclaimed, ZE + 3);
    assert_int_equal(u.bytes_used, s.fixed_bytes + 5 * s.entry_bytes);
}

/* The upkeep's sweep visits at most what it is given, from where the
 * last one stopped, and takes back only expired entries. */
static void
test_the_sweep_is_bounded_and_goes_round(void **state)
{
    rl2_zone_stats_t s;
    uint64_t         r, total = 0;

    (void)state;
    for (unsigned i = 0; i < 3; i++) {
        request(&fx.api, i);
    }
    for (unsigned i = 0; i < ZE - 3; i++) {
        request(&fx.login, i);
    }
    fx.now_us = T0_US + 61 * SEC_US;
    for (int round = 0; round < 4; round++) {
        assert_int_equal(rl2_zone_sweep(fx.zone, fx.now_us, ZE / 4, &r, NULL),
                         RL2_OK);
        assert_true(r <= ZE / 4);
        total += r;
        assert_int_equal(rl2_zone_stats(fx.zone, &s, NULL), RL2_OK);
        assert_int_equal(s.used, ZE - total);
    }
    assert_int_equal(total, ZE - 3);
    assert_int_equal(s.reclaimed, ZE - 3);
    /* Round again: nothing left to take back. */
    assert_int_equal(rl2_zone_sweep(fx.zone, fx.now_us, ZE, &r, NULL), RL2_OK);
    assert_int_equal(r, 0);
    /* The keys left are intact: a second request counts on the first. */
    request(&fx.api, 0);
    assert_int_equal(rl2_zone_stats(fx.zone, &s, NULL), RL2_OK);
    assert_int_equal(s.used, 3);
}

/* Names in the zone are read as untrusted, and limits sharing a name are
 * one line. */
static void
test_names_are_cut_and_shared_names_are_one(void **state)
{
    rl2_zone_usage_t u;
    rl2_limit_t      login2;
    zone_hdr_t      *h = fx.zone->hdr;
    unsigned         slot;

    (void)state;
    make_limit(&login2, "login", RL2_ALGO_FIXED_WINDOW, 10, 2 * MIN_US);
    assert_int_not_equal(rl2_zone_limit_tag(&login2.key_seed),
                         rl2_zone_limit_tag(&fx.login.key_seed));
    request(&fx.login, 1);
    request(&login2, 2);
    request(&fx.api, 3);
    usage(&u, NULL);
    assert_int_equal(u.n_limits, 2);
    assert_int_equal(keys_of(&u, "login"), 2);
    /* Another process scribbled on the api slot's name. */
    for (slot = 0; slot < ZONE_TAGS; slot++) {
        if (h->tags[slot].tag == rl2_zone_limit_tag(&fx.api.key_seed)) {
            break;
        }
    }
    assert_true(slot < ZONE_TAGS);
    memset(h->tags[slot].name, 'x', sizeof(h->tags[slot].name));
    memcpy(h->tags[slot].name, "a<\"b\n", 5);
    usage(&u, NULL);
    assert_int_equal(u.live, 3);
    assert_int_equal(strlen(u.limits[0].name) + strlen(u.limits[1].name),
                     strlen("login") + RL2_ZONE_LIMIT_NAME_MAX);
    assert_int_equal(keys_of(&u, "login"), 2);
    for (size_t i = 0; i < u.n_limits; i++) {
        if (strcmp(u.limits[i].name, "login") != 0) {
            assert_memory_equal(u.limits[i].name, "a__b_x", 6);
            assert_int_equal(u.limits[i].keys, 1);
        }
    }
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_expired_clients_are_not_live),
        T(test_the_sweep_is_bounded_and_goes_round),
        T(test_names_are_cut_and_shared_names_are_one),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
