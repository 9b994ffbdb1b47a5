/*
 * test_store_opts.c -- the store option parser (store_opts.h): every
 * Redis address form, and the refusals every front end shares.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimit2/store_opts.h"

static void
test_address_forms(void **state)
{
    rl2_backend_conf_t bc;
    rl2_err_t          err;

    (void)state;
    rl2_backend_conf_init(&bc);
    assert_int_equal(rl2_store_opt_redis(&bc, "10.0.0.1:6380", &err), RL2_OK);
    assert_string_equal(bc.redis.host, "10.0.0.1");
    assert_int_equal(bc.redis.port, 6380);
    assert_true(bc.redis_enabled);
    assert_int_equal(rl2_store_opt_redis(&bc, "[::1]:6379", &err), RL2_OK);
    assert_string_equal(bc.redis.host, "::1");
    assert_int_equal(rl2_store_opt_redis(&bc, "/run/r.sock", &err), RL2_OK);
    assert_string_equal(bc.redis.unix_path, "/run/r.sock");
    assert_int_equal(rl2_store_opt_redis(&bc, "sentinel:m@h:1,[::1]:2", &err),
                     RL2_OK);
    assert_int_equal(bc.redis.n_sentinels, 2);
    assert_int_equal(rl2_store_opt_redis(&bc, "cluster:h:1", &err), RL2_OK);
    assert_int_equal(bc.redis.n_seeds, 1);
    assert_int_equal(bc.redis.n_sentinels, 0);
}

static void
test_bad_addresses(void **state)
{
    static const char *const bad[] = {
        "::1:6379",
        "h:6379x",
        ":6379",
        "h:0",
        "h:65536",
        "h:+1",
        "h",
        "[::1:6379",
        "sentinel:m@h:1,h:2,h:3,h:4,h:5,h:6,h:7,h:8,h:9",
        "sentinel:m@::1:1",
        "cluster:",
        NULL
    };
    rl2_backend_conf_t bc;
    rl2_err_t          err;

    (void)state;
    for (int i = 0; bad[i] != NULL; i++) {
        rl2_backend_conf_init(&bc);
        assert_int_equal(rl2_store_opt_redis(&bc, bad[i], &err),
                         RL2_ERR_CONFIG);
    }
}

static void
test_options_and_check(void **state)
{
    rl2_backend_conf_t bc;
    rl2_err_t          err;

    (void)state;
    rl2_backend_conf_init(&bc);
    assert_int_equal(rl2_store_opt_redis(&bc, "cluster:h:1", &err), RL2_OK);
    assert_int_equal(rl2_store_opt_redis_options(&bc, "db=2,timeout=50", &err),
                     RL2_OK);
    assert_int_equal(bc.redis.command_timeout_ms, 50);
    assert_int_equal(rl2_store_opt_check(&bc, 0, &err), RL2_ERR_CONFIG);
    assert_string_equal(err.msg, "redis: Redis Cluster has only database 0 "
                                 "(db=2 given)");
    assert_int_equal(rl2_store_opt_redis_item(&bc, "db=16", &err),
                     RL2_ERR_CONFIG);
    assert_string_equal(err.msg, "redis: db=16: expected a number from 0 "
                                 "to 15");
    assert_int_equal(rl2_store_opt_redis_item(&bc, "tls=1", &err),
                     RL2_ERR_CONFIG);
}

/* The over-limit cache: on by default, off by overlimit=off (any case),
 * its entries within the zone's bounds; anything else is refused with
 * the option named. */
static void
test_overlimit_options(void **state)
{
    rl2_backend_conf_t bc;
    rl2_err_t          err;

    (void)state;
    rl2_backend_conf_init(&bc);
    assert_int_equal(bc.overlimit, 1);
    assert_int_equal(bc.overlimit_entries, 0);
    assert_int_equal(rl2_store_opt_redis(&bc, "127.0.0.1:6379", &err), RL2_OK);
    assert_int_equal(rl2_store_opt_redis_options(
                         &bc, "overlimit=OFF,overlimit_entries=64", &err),
                     RL2_OK);
    assert_int_equal(bc.overlimit, 0);
    assert_int_equal(bc.overlimit_entries, 64);
    assert_int_equal(rl2_store_opt_redis_item(&bc, "overlimit=on", &err),
                     RL2_OK);
    assert_int_equal(bc.overlimit, 1);
    assert_int_equal(rl2_store_opt_redis_item(&bc, "overlimit=1", &err),
                     RL2_ERR_CONFIG);
    assert_string_equal(err.msg, "redis: overlimit=1: expected on or off");
    assert_int_equal(rl2_store_opt_redis_item(&bc, "overlimit=", &err),
                     RL2_ERR_CONFIG);
    assert_int_equal(
        rl2_store_opt_redis_item(&bc, "overlimit_entries=63", &err),
        RL2_ERR_CONFIG);
    assert_string_equal(err.msg, "redis: overlimit_entries=63: expected a "
                                 "number from 64 to 67108864");
    assert_int_equal(
        rl2_store_opt_redis_item(&bc, "overlimit_entries=67108865", &err),
        RL2_ERR_CONFIG);
    assert_int_equal(
        rl2_store_opt_redis_item(&bc, "overlimit_entries=-5", &err),
        RL2_ERR_CONFIG);
    assert_int_equal(bc.overlimit_entries, 64);
}

static void
test_zone_failover_alerts(void **state)
{
    rl2_backend_conf_t bc;
    rl2_err_t          err;

    (void)state;
    rl2_backend_conf_init(&bc);
    assert_int_equal(rl2_store_opt_zone_name(&bc, "/z1", &err), RL2_OK);
    assert_string_equal(bc.zone_name, "/z1");
    assert_int_equal(rl2_store_opt_zone_name(&bc, "z1", &err), RL2_ERR_CONFIG);
    assert_int_equal(rl2_store_opt_zone_name(&bc, "/a/b", &err),
                     RL2_ERR_CONFIG);
    assert_int_equal(rl2_store_opt_zone_entries(&bc, "63", &err),
                     RL2_ERR_CONFIG);
    assert_int_equal(rl2_store_opt_zone_entries(&bc, "5000", &err), RL2_OK);
    assert_int_equal(bc.zone_entries, 5000);
    assert_int_equal(rl2_store_opt_failover(&bc, "closed,probe=50", &err),
                     RL2_OK);
    assert_int_equal(bc.failover_mode, RL2_FAILOVER_CLOSED);
    assert_int_equal(bc.circuit.probe_interval_ms, 50);
    assert_int_equal(rl2_store_opt_failover(&bc, "sideways", &err),
                     RL2_ERR_CONFIG);
    assert_int_equal(rl2_store_opt_alerts(&bc, "off", &err), RL2_OK);
    assert_false(bc.alerts_enabled);
    assert_int_equal(rl2_store_opt_alerts(&bc, "ident=x,interval=5", &err),
                     RL2_OK);
    assert_true(bc.alerts_enabled);
    assert_int_equal(bc.alert_interval_ms, 5000);
    assert_int_equal(rl2_store_opt_alerts(&bc, "socket=rel", &err),
                     RL2_ERR_CONFIG);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_address_forms),
        cmocka_unit_test(test_bad_addresses),
        cmocka_unit_test(test_options_and_check),
        cmocka_unit_test(test_overlimit_options),
        cmocka_unit_test(test_zone_failover_alerts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
