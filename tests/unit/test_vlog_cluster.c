/*
 * test_vlog_cluster.c -- ratelimit2ctl's reset and the violation log over
 * a real Redis Cluster of three masters on loopback (formed by the group
 * setup, as in test_redis_cluster.c):
 *   - reset removes every layer's keys from whichever master holds them,
 *     each layer in its own slot, and the clients are let through again;
 *   - the log of a Cluster deployment stays in the local ring.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include <cmocka.h>

#include "rl2_redis_test.h"
#include "rl2_cluster_test.h"
#include "ratelimit2/violation_log.h"
#include "redis/redis_internal.h"
#include "obs/violation_log_internal.h"

#define LAYERS 6

static char zone[64];

static void
reset_deletes_each_layer_on_its_master(void **state)
{
    spec_t       sp = { "c", RL2_ALGO_FIXED_WINDOW, 1, HOUR, 0, 0, 1, HOUR };
    rl2_limit_t *limit = mk_limit(pol, &sp);
    rl2_layer_t  ly[LAYERS];
    int          owners[NODES] = { 0 };
    char         key[64], client[32];
    rl2_clock_t  now;
    rl2_err_t    err;

    (void)state;
    for (int i = 0; i < LAYERS; i++) {
        snprintf(client, sizeof(client), "192.0.2.%d", i + 1);
        mk_layer(&ly[i], limit, client);
        for (int k = 0; k < 3; k++) { /* main, overflow, refused */
            must_apply(store, &ly[i], 1);
        }
        assert_int_equal(ly[i].refused, 1);
        key_of(&ly[i], 's', key, sizeof(key));
        owners[owner_of(rl2_redis_key_slot(key, strlen(key)))]++;
    }
    /* The layers are spread: more than one master holds some. */
    assert_true((owners[0] > 0) + (owners[1] > 0) + (owners[2] > 0) >= 2);
    rl2_clock_now(&now);
    if (store->ops->reset(store, ly, LAYERS, &now, &err) != RL2_OK) {
        fail_msg("reset: %s", err.msg);
    }
    for (int i = 0; i < LAYERS; i++) {
        int n;

        key_of(&ly[i], 's', key, sizeof(key));
        n = owner_of(rl2_redis_key_slot(key, strlen(key)));
        assert_false(exists_on(n, key));
        key_of(&ly[i], 'o', key, sizeof(key));
        assert_false(exists_on(n, key));
        must_apply(store, &ly[i], 1);
        assert_int_equal(ly[i].refused, 0);
        assert_int_equal(ly[i].overflow_used, 0);
    }
}

static void
a_cluster_deployment_logs_to_the_ring(void **state)
{
    rl2_vlog_conf_t c = { 0, 100, 32, NULL };
    rl2_limit_t    *limit = limit_of(pol, "x", RL2_ALGO_FIXED_WINDOW, 1, HOUR);
    rl2_vlog_entry_t *e;
    rl2_vlog_stats_t  st;
    rl2_verdict_t     v;
    rl2_vlog_t       *log;
    rl2_clock_t       now;
    rl2_err_t         err;
    size_t            n;

    (void)state;
    assert_null(rl2_store_redis_pool(store));
    if (rl2_vlog_open(&c, zone, 0600, rl2_store_redis_pool(store), NULL, &log,
                      &err)
        != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    rl2_verdict_init(&v);
    v.outcome = RL2_OUTCOME_DENY;
    v.n_layers = 1;
    v.shown = 0;
    mk_layer(&v.layers[0], limit, "192.0.2.9");
    rl2_clock_now(&now);
    rl2_vlog_record(log, pol, &v, "GET", "/x", NULL, &now);
    rl2_vlog_close(log);
    if (rl2_vlog_ring_read(zone, &e, &n, &st, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    assert_int_equal(n, 1);
    assert_string_equal(e[0].client, "192.0.2.9");
    assert_int_equal(st.to_redis, 0);
    assert_int_equal(st.redis_errors, 0);
    free(e);
}

static int
group_setup(void **state)
{
    snprintf(zone, sizeof(zone), "/rl2test-%ld-vlogc", (long)getpid());
    return cluster_group_setup(state);
}

static int
group_teardown(void **state)
{
    char name[96];

    cluster_group_teardown(state);
    rl2_vlog_ring_name(zone, name, sizeof(name));
    shm_unlink(name);
    return 0;
}

int
main(void)
{
#define T(f) \
    cmocka_unit_test_setup_teardown(f, watchdog_setup, watchdog_teardown)
    const struct CMUnitTest tests[] = {
        T(reset_deletes_each_layer_on_its_master),
        T(a_cluster_deployment_logs_to_the_ring),
    };
#undef T
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
