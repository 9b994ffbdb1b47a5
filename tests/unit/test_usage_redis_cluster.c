/*
 * test_usage_redis_cluster.c -- the fleet's usage series over a real
 * Redis Cluster of three masters on loopback (formed by the group setup):
 * minutes of several hours, each hour's keys in the slot of its hash tag
 * (so on different masters), pushed by two hosts through the store's
 * router and read back through it: counts added, distinct clients the
 * union's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rl2_redis_test.h"
#include "rl2_cluster_test.h"
#include "rl2_hll_test.h"
#include "redis/redis_internal.h"
#include "obs/hll.h"
#include "obs/usage_redis.h"

/* 2024-01-02 03:00:00 UTC, and the hours read: this one and the next
 * three. */
#define T0_S  1704164400LL
#define HOURS 4

static void
hours_land_on_their_slots_and_read_back(void **state)
{
    rl2_redis_conf_t  conf;
    rl2_usage_push_t *push;
    rl2_hll_t        *a = sketch_of(0, 3000), *b = sketch_of(2000, 3000);
    rl2_usage_t      *u;
    rl2_usage_cell_t  cells[4];
    rl2_usage_point_t pts[RL2_USAGE_HOURS];
    int               owners = 0;
    int64_t           first = 0;
    rl2_err_t         err;

    (void)state;
    assert_int_equal(rl2_usage_push_create(NULL, rl2_store_redis_cluster(store),
                                           NULL, &push, &err),
                     RL2_OK);
    for (int h = 0; h < HOURS; h++) {
        int64_t                 start_s = T0_S + h * 3600 + 60;
        rl2_usage_minute_cell_t ca = { "api", "free", 10, 9, 1, 500000, a };
        rl2_usage_minute_cell_t cb = { "api", "free", 20, 20, 0, 250000, b };
        char                    tag[RL2_USAGE_REDIS_TAG_MAX];
        size_t                  len;

        /* Two hosts, one minute. */
        assert_int_equal(rl2_usage_push_send(push, start_s, &ca, 1, &err),
                         RL2_OK);
        assert_int_equal(rl2_usage_push_send(push, start_s, &cb, 1, &err),
                         RL2_OK);
        len = rl2_usage_key_hour_tag(tag, sizeof(tag), start_s);
        owners |= 1 << owner_of(rl2_redis_key_slot(tag, len));
    }
    /* The hours' keys live on more than one master. */
    assert_true((owners & (owners - 1)) != 0);

    cluster_up_conf(&conf);
    assert_int_equal(
        rl2_usage_open_redis(&conf, T0_S + HOURS * 3600 - 1, &u, &err), RL2_OK);
    assert_int_equal(rl2_usage_cells(u, cells, 4), 1);
    assert_int_equal(cells[0].requests, HOURS * 30);
    assert_int_equal(cells[0].refused, HOURS * 1);
    assert_int_equal(rl2_usage_series(u, 0, RL2_USAGE_STEP_HOUR,
                                      T0_S + HOURS * 3600 - 1, pts,
                                      RL2_USAGE_HOURS, &first),
                     RL2_USAGE_HOURS);
    for (int h = 0; h < HOURS; h++) {
        const rl2_usage_point_t *p = &pts[RL2_USAGE_HOURS - HOURS + h];

        assert_int_equal(p->requests, 30);
        assert_int_equal(p->admitted, 29);
        assert_int_equal(p->peak_ppm, 500000);
        /* 5,000 distinct: 0..4999. */
        assert_true(p->clients >= 4900 && p->clients <= 5100);
    }
    rl2_usage_close(u);
    rl2_usage_push_destroy(push);
    free(a);
    free(b);
}

int
main(void)
{
#define T(f) \
    cmocka_unit_test_setup_teardown(f, watchdog_setup, watchdog_teardown)
    const struct CMUnitTest tests[] = {
        T(hours_land_on_their_slots_and_read_back),
    };
#undef T
    return cmocka_run_group_tests(tests, cluster_group_setup,
                                  cluster_group_teardown);
}
