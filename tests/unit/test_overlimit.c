/*
 * test_overlimit.c -- the over-limit cache (overlimit.c) over an inner
 * store that counts its calls and answers with a real local store over a
 * zone of its own: a refusal keeps later requests from the inner store
 * until its retry has passed, and no longer; a smaller cost, another
 * limit, a dry-run or concurrency layer, a new generation and a reset
 * all go to the inner store; a forked process shares the table; the
 * table stays within its entries.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/policy.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"
#include "base/base_internal.h"
#include "store/store_internal.h"

#define WATCHDOG_S    30
#define T0_US         960000000LL /* a minute's start, monotonic */
#define WALL_US       1704164645000000LL
#define SEC_US        1000000LL
#define MIN_US        (60 * SEC_US)
#define CACHE_ENTRIES 64u /* the smallest zone */

/* The inner store: the local store over a zone, with its calls counted
 * (a unit test of the wrapper: the refusals are the algorithms' own). */
typedef struct {
    rl2_store_t  base;
    rl2_store_t *local;
    int          applies, peeks, refunds, resets;
} counting_t;

static struct {
    char             zone_name[64], cache_name[64];
    rl2_policy_t    *policy;
    rl2_zone_t      *zone, *cache;
    counting_t       inner;
    rl2_store_t     *store; /* the cache under test */
    _Atomic uint64_t generation;
    int              hits;
    int64_t          now_us;
} fx;

static rl2_status_t
counting_apply(rl2_store_t *s, rl2_layer_t *l, size_t n, const rl2_clock_t *now,
               rl2_err_t *err)
{
    counting_t *c = (counting_t *)s;

    c->applies++;
    return c->local->ops->apply(c->local, l, n, now, err);
}

static rl2_status_t
counting_peek(rl2_store_t *s, rl2_layer_t *l, size_t n, const rl2_clock_t *now,
              rl2_err_t *err)
{
    counting_t *c = (counting_t *)s;

    c->peeks++;
    return c->local->ops->peek(c->local, l, n, now, err);
}

static rl2_status_t
counting_refund(rl2_store_t *s, rl2_layer_t *l, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    counting_t *c = (counting_t *)s;

    c->refunds++;
    return c->local->ops->refund(c->local, l, n, now, err);
}

static rl2_status_t
counting_reset(rl2_store_t *s, rl2_layer_t *l, size_t n, const rl2_clock_t *now,
               rl2_err_t *err)
{
    counting_t *c = (counting_t *)s;

    c->resets++;
    return c->local->ops->reset(c->local, l, n, now, err);
}

static void
counting_destroy(rl2_store_t *s)
{
    (void)s;
}

static const rl2_store_ops_t counting_ops = {
    "counting",    counting_apply,   counting_refund,
    counting_peek, counting_destroy, counting_reset
};

static void
count_hit(void *ctx)
{
    (*(int *)ctx)++;
}

static int
setup(void **state)
{
    long pid = (long)getpid();

    (void)state;
    alarm(WATCHDOG_S);
    memset(&fx, 0, sizeof(fx));
    fx.now_us = T0_US;
    snprintf(fx.zone_name, sizeof(fx.zone_name), "/rl2test-%ld-oz", pid);
    snprintf(fx.cache_name, sizeof(fx.cache_name), "/rl2test-%ld-oz.overlimit",
             pid);
    assert_int_equal(rl2_policy_create("test", &fx.policy, NULL), RL2_OK);
    assert_int_equal(
        rl2_zone_open(fx.zone_name, 256, 1024, 0600, &fx.zone, NULL), RL2_OK);
    assert_int_equal(rl2_zone_open(fx.cache_name, CACHE_ENTRIES,
                                   RL2_OVERLIMIT_STATE_SIZE, 0600, &fx.cache,
                                   NULL),
                     RL2_OK);
    fx.inner.base.ops = &counting_ops;
    assert_int_equal(rl2_store_local_create(fx.zone, &fx.inner.local, NULL),
                     RL2_OK);
    assert_int_equal(
        rl2_store_overlimit_create(&fx.inner.base, fx.cache, &fx.store, NULL),
        RL2_OK);
    rl2_overlimit_watch(fx.store, &fx.generation);
    rl2_overlimit_on_hit(fx.store, count_hit, &fx.hits);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    alarm(0);
    rl2_store_destroy(fx.store);
    rl2_store_destroy(fx.inner.local);
    rl2_zone_close(fx.cache);
    rl2_zone_close(fx.zone);
    rl2_policy_free(fx.policy);
    rl2_zone_unlink(fx.zone_name, NULL);
    rl2_zone_unlink(fx.cache_name, NULL);
    return 0;
}

static void
make_limit(rl2_limit_t *l, rl2_algo_t algo, int64_t count, int64_t cost)
{
    rl2_err_t err = { "" };

    memset(l, 0, sizeof(*l));
    l->name = "t";
    l->file = "test";
    l->line = 1;
    l->algo.algo = algo;
    l->algo.limit = count;
    l->algo.window_us = algo == RL2_ALGO_CONCURRENCY ? 0 : MIN_US;
    l->key = RL2_KEY_IP;
    l->cost = cost;
    if (rl2_limit_finish(fx.policy, l, 0, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
}

static void
make_layer(rl2_layer_t *layer, const rl2_limit_t *limit, const char *key)
{
    memset(layer, 0, sizeof(*layer));
    layer->limit = limit;
    layer->key = rl2_digest(key, strlen(key));
}

static rl2_status_t
apply(rl2_layer_t *layers, size_t n)
{
    rl2_clock_t now = { fx.now_us, WALL_US };

    return fx.store->ops->apply(fx.store, layers, n, &now, NULL);
}

/* One request of one layer: 1 admitted, 0 refused. */
static int
one(const rl2_limit_t *limit, const char *key)
{
    rl2_layer_t l;

    make_layer(&l, limit, key);
    assert_int_equal(apply(&l, 1), RL2_OK);
    return !l.refused;
}

/* A fixed window of 3 a minute for key, used up at T0 and refused once:
 * the refusal's retry is the rest of the window. */
static void
use_up(const rl2_limit_t *lim, const char *key)
{
    for (int i = 0; i < 3; i++) {
        assert_true(one(lim, key));
    }
    assert_false(one(lim, key));
}

/* ---- the cache answers, and stops answering at the retry ---------------- */

static void
test_refusal_is_answered_without_inner_until_its_retry(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;
    int         applies;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 3, 1);
    use_up(&lim, "a");
    applies = fx.inner.applies;
    assert_int_equal(applies, 4);
    /* Ten more before the window ends: none reaches the inner store, and
     * each answer is the refusal the inner store gave, retry counted down
     * from the same end. */
    for (int i = 0; i < 10; i++) {
        fx.now_us = T0_US + i * SEC_US;
        make_layer(&l, &lim, "a");
        assert_int_equal(apply(&l, 1), RL2_OK);
        assert_true(l.refused);
        assert_false(l.result.allowed);
        assert_false(l.committed);
        assert_int_equal(l.result.remaining, 0);
        assert_int_equal(l.result.limit, 3);
        assert_int_equal(l.result.retry_after_us, MIN_US - i * SEC_US);
        assert_true(l.result.reset_us >= l.result.retry_after_us);
    }
    assert_int_equal(fx.inner.applies, applies);
    assert_int_equal(fx.hits, 10);
    /* One microsecond before the end: still the cache's. */
    fx.now_us = T0_US + MIN_US - 1;
    assert_false(one(&lim, "a"));
    assert_int_equal(fx.inner.applies, applies);
    /* At the end the inner store is asked again, and admits. */
    fx.now_us = T0_US + MIN_US;
    assert_true(one(&lim, "a"));
    assert_int_equal(fx.inner.applies, applies + 1);
    assert_int_equal(fx.hits, 11);
}

static void
test_another_client_and_a_smaller_cost_go_to_inner(void **state)
{
    rl2_limit_t big, small;
    int         applies;

    (void)state;
    /* One key, two costs: 5 of 6 used by cost 1, then cost 2 refused
     * (retry to the window's end), cost 1 still fits. */
    make_limit(&small, RL2_ALGO_FIXED_WINDOW, 6, 1);
    big = small;
    big.cost = 2;
    for (int i = 0; i < 5; i++) {
        assert_true(one(&small, "c"));
    }
    assert_false(one(&big, "c"));
    applies = fx.inner.applies;
    assert_false(one(&big, "c")); /* the cache's */
    assert_int_equal(fx.inner.applies, applies);
    assert_true(one(&small, "c")); /* a smaller cost: the inner store's */
    assert_int_equal(fx.inner.applies, applies + 1);
    assert_false(one(&small, "c")); /* now full for cost 1 too */
    assert_int_equal(fx.inner.applies, applies + 2);
    assert_false(one(&small, "c")); /* ... and cached for it */
    assert_false(one(&big, "c"));   /* a larger cost than cached: too */
    assert_int_equal(fx.inner.applies, applies + 2);
    /* Another client is nothing to the cache. */
    assert_true(one(&small, "d"));
    assert_int_equal(fx.inner.applies, applies + 3);
}

/* A boost (or any other limit under the same key): the entry was for
 * another limit, and the inner store answers. */
static void
test_another_limit_under_the_same_key_goes_to_inner(void **state)
{
    rl2_limit_t lim, boosted;
    int         applies;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 3, 1);
    make_limit(&boosted, RL2_ALGO_FIXED_WINDOW, 6, 1);
    use_up(&lim, "b");
    applies = fx.inner.applies;
    assert_true(one(&boosted, "b"));
    assert_int_equal(fx.inner.applies, applies + 1);
}

/* ---- what is never cached ------------------------------------------------ */

static void
test_dry_run_concurrency_and_overflow_layers_are_never_cached(void **state)
{
    rl2_limit_t lim, cc, ov;
    rl2_layer_t l;
    int         applies;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 1, 1);
    assert_true(one(&lim, "dry"));
    for (int i = 0; i < 3; i++) {
        make_layer(&l, &lim, "dry");
        l.dry_run = 1;
        applies = fx.inner.applies;
        assert_int_equal(apply(&l, 1), RL2_OK);
        assert_true(l.refused);
        assert_int_equal(fx.inner.applies, applies + 1);
    }
    /* Concurrency: the slot comes back by release, its retry is a
     * guess. */
    make_limit(&cc, RL2_ALGO_CONCURRENCY, 1, 1);
    assert_true(one(&cc, "cc"));
    assert_false(one(&cc, "cc"));
    applies = fx.inner.applies;
    assert_false(one(&cc, "cc"));
    assert_int_equal(fx.inner.applies, applies + 1);
    /* An overflow allowance may admit before the main limit's retry. */
    memset(&ov, 0, sizeof(ov));
    ov.name = "t";
    ov.file = "test";
    ov.line = 1;
    ov.algo.algo = RL2_ALGO_FIXED_WINDOW;
    ov.algo.limit = 1;
    ov.algo.window_us = MIN_US;
    ov.overflow.algo = RL2_ALGO_TOKEN_BUCKET;
    ov.overflow.limit = 1;
    ov.overflow.window_us = 10 * MIN_US;
    ov.key = RL2_KEY_IP;
    ov.cost = 1;
    assert_int_equal(rl2_limit_finish(fx.policy, &ov, 0, NULL), RL2_OK);
    assert_true(one(&ov, "ov"));  /* the limit */
    assert_true(one(&ov, "ov"));  /* the overflow */
    assert_false(one(&ov, "ov")); /* both full */
    applies = fx.inner.applies;
    assert_false(one(&ov, "ov"));
    assert_int_equal(fx.inner.applies, applies + 1);
    assert_int_equal(fx.hits, 0);
}

/* ---- invalidation ---------------------------------------------------------
 */

static void
test_a_new_generation_drops_the_entry(void **state)
{
    rl2_limit_t      lim;
    rl2_zone_stats_t zs;
    int              applies;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 3, 1);
    use_up(&lim, "g");
    applies = fx.inner.applies;
    assert_false(one(&lim, "g"));
    assert_int_equal(fx.inner.applies, applies);
    assert_int_equal(rl2_zone_stats(fx.cache, &zs, NULL), RL2_OK);
    assert_int_equal(zs.used, 1);
    /* An override changed somewhere in the fleet. */
    atomic_fetch_add(&fx.generation, 1);
    assert_false(one(&lim, "g")); /* asked again: still refused */
    assert_int_equal(fx.inner.applies, applies + 1);
    /* ... and cached again, under the new generation. */
    assert_false(one(&lim, "g"));
    assert_int_equal(fx.inner.applies, applies + 1);
}

static void
test_reset_forgets_the_key_and_resets_inner(void **state)
{
    rl2_limit_t      lim;
    rl2_layer_t      l;
    rl2_clock_t      now;
    rl2_zone_stats_t zs;
    int              applies;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 3, 1);
    use_up(&lim, "r");
    use_up(&lim, "keep");
    make_layer(&l, &lim, "r");
    now = (rl2_clock_t){ fx.now_us, WALL_US };
    assert_int_equal(fx.store->ops->reset(fx.store, &l, 1, &now, NULL), RL2_OK);
    assert_int_equal(fx.inner.resets, 1);
    applies = fx.inner.applies;
    assert_true(one(&lim, "r")); /* at once, no wait */
    assert_int_equal(fx.inner.applies, applies + 1);
    assert_false(one(&lim, "keep")); /* the other client: still cached */
    assert_int_equal(fx.inner.applies, applies + 1);
    /* What ratelimit2ctl does on the zone it attached. */
    make_layer(&l, &lim, "keep");
    assert_int_equal(rl2_zone_forget(fx.cache, &l, 1, NULL), RL2_OK);
    assert_int_equal(rl2_zone_stats(fx.cache, &zs, NULL), RL2_OK);
    assert_false(one(&lim, "keep")); /* the inner store's own refusal */
    assert_int_equal(fx.inner.applies, applies + 2);
}

/* ---- peek ------------------------------------------------------------------
 */

static void
test_peek_answers_from_the_cache_and_records_nothing(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;
    rl2_clock_t now;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 3, 1);
    use_up(&lim, "p");
    make_layer(&l, &lim, "p");
    now = (rl2_clock_t){ fx.now_us, WALL_US };
    assert_int_equal(fx.store->ops->peek(fx.store, &l, 1, &now, NULL), RL2_OK);
    assert_true(l.refused);
    assert_int_equal(fx.inner.peeks, 0);
    /* A peek that finds nothing cached asks and keeps nothing. */
    make_layer(&l, &lim, "q");
    assert_int_equal(fx.store->ops->peek(fx.store, &l, 1, &now, NULL), RL2_OK);
    assert_false(l.refused);
    assert_int_equal(fx.inner.peeks, 1);
}

/* Two layers, one cached: the cached one refuses, the other is not
 * counted (and the inner store is not asked). */
static void
test_other_layers_of_a_cached_refusal_are_not_counted(void **state)
{
    rl2_limit_t lim, other;
    rl2_layer_t l[2];
    int         applies;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 3, 1);
    make_limit(&other, RL2_ALGO_FIXED_WINDOW, 100, 1);
    use_up(&lim, "m");
    applies = fx.inner.applies;
    make_layer(&l[0], &other, "m-other");
    make_layer(&l[1], &lim, "m");
    assert_int_equal(apply(l, 2), RL2_OK);
    assert_int_equal(fx.inner.applies, applies);
    assert_false(l[0].refused);
    assert_false(l[0].committed);
    assert_true(l[1].refused);
    /* m-other counted nothing: 100 still fit. */
    for (int i = 0; i < 100; i++) {
        assert_true(one(&other, "m-other"));
    }
    assert_false(one(&other, "m-other"));
}

/* ---- shared and bounded
 * ------------------------------------------------------ */

static void
test_a_forked_process_sees_the_cached_refusal(void **state)
{
    rl2_limit_t lim;
    pid_t       pid;
    int         status;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 3, 1);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child records the refusal. */
        for (int i = 0; i < 3; i++) {
            one(&lim, "f");
        }
        _exit(one(&lim, "f") ? 1 : 0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The parent's inner store was never asked about "f", yet: */
    assert_int_equal(fx.inner.applies, 0);
    assert_false(one(&lim, "f"));
    assert_int_equal(fx.inner.applies, 0);
    assert_int_equal(fx.hits, 1);
}

static void
test_more_clients_than_entries_evict_and_stay_bounded(void **state)
{
    rl2_limit_t      lim;
    rl2_zone_stats_t zs;
    char             key[32];
    int              applies;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 1, 1);
    for (unsigned i = 0; i < 4 * CACHE_ENTRIES; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        assert_true(one(&lim, key));
        assert_false(one(&lim, key));
    }
    assert_int_equal(rl2_zone_stats(fx.cache, &zs, NULL), RL2_OK);
    assert_int_equal(zs.entries, CACHE_ENTRIES);
    assert_int_equal(zs.used, CACHE_ENTRIES);
    assert_true(zs.evictions >= 3 * CACHE_ENTRIES);
    /* The newest is still cached; the oldest was evicted and is the inner
     * store's again (which still refuses it). */
    applies = fx.inner.applies;
    snprintf(key, sizeof(key), "k%u", 4 * CACHE_ENTRIES - 1);
    assert_false(one(&lim, key));
    assert_int_equal(fx.inner.applies, applies);
    assert_false(one(&lim, "k0"));
    assert_int_equal(fx.inner.applies, applies + 1);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_refusal_is_answered_without_inner_until_its_retry),
        T(test_another_client_and_a_smaller_cost_go_to_inner),
        T(test_another_limit_under_the_same_key_goes_to_inner),
        T(test_dry_run_concurrency_and_overflow_layers_are_never_cached),
        T(test_a_new_generation_drops_the_entry),
        T(test_reset_forgets_the_key_and_resets_inner),
        T(test_peek_answers_from_the_cache_and_records_nothing),
        T(test_other_layers_of_a_cached_refusal_are_not_counted),
        T(test_a_forked_process_sees_the_cached_refusal),
        T(test_more_clients_than_entries_evict_and_stay_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
