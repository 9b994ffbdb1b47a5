/*
 * test_tier_source_cluster.c -- the tier source (tier_source.c) over a
 * Redis Cluster of three masters on loopback: each user's hash is read
 * from the master of its slot, whichever master that is, and a slot moved
 * to another master is followed (-MOVED) without a wrong answer cached.
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

#include "ratelimit2/config.h"
#include "ratelimit2/tier_source.h"

#include "decide/decide_internal.h"
#include "redis/redis_internal.h"

#define USERS 30

static rl2_tier_source_t *src;

static const char *
tier_of(const char *user, int64_t now_us)
{
    static char   name[RL2_NAME_MAX + 1];
    char          idbuf[65];
    rl2_request_t req;

    memset(&req, 0, sizeof(req));
    req.user = user;
    rl2_tier_source_get(src, pol->tier_redis,
                        rl2_tier_identity(pol, &req, NULL, idbuf), now_us,
                        name);
    return name;
}

/* HSET on the master that serves the key's slot. */
static void
hset_tier(const char *user, const char *tier)
{
    char key[64];

    snprintf(key, sizeof(key), "billing:user:%s", user);
    freeReplyObject(
        admin_cmd(adm[owner_of(rl2_redis_key_slot(key, strlen(key)))],
                  "HSET %s tier %s", key, tier));
}

static void
test_each_hash_from_the_master_of_its_slot(void **state)
{
    int  on[NODES] = { 0 };
    char user[16], key[64];

    (void)state;
    for (int i = 0; i < USERS; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        snprintf(key, sizeof(key), "billing:user:%s", user);
        hset_tier(user, i % 2 ? "pro" : "business");
        on[owner_of(rl2_redis_key_slot(key, strlen(key)))]++;
    }
    for (int n = 0; n < NODES; n++) {
        assert_true(on[n] > 0); /* the users are spread over all three */
    }
    for (int i = 0; i < USERS; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        assert_string_equal(tier_of(user, SEC), i % 2 ? "pro" : "business");
    }
    assert_string_equal(tier_of("nobody", SEC), "");
}

static void
test_a_moved_slot_is_followed(void **state)
{
    const char *key = "billing:user:mover";
    unsigned    slot = rl2_redis_key_slot(key, strlen(key));
    int         from, to;

    (void)state;
    hset_tier("mover", "pro");
    assert_string_equal(tier_of("mover", SEC), "pro");
    from = owner_of(slot);
    to = (from + 1) % NODES;
    move_slot(slot, from, to, 1);
    assert_int_equal(owner_of(slot), to);
    /* cache = 0: every lookup asks; the first meets -MOVED. */
    assert_string_equal(tier_of("mover", 2 * SEC), "pro");
    assert_string_equal(tier_of("mover", 3 * SEC), "pro");
}

static int
group_setup(void **state)
{
    rl2_redis_conf_t conf;
    rl2_err_t        err;

    (void)state;
    cluster_up(&conf);
    if (rl2_config_load_string("tier_from = { redis = {\n"
                               "  key = \"billing:user:%s\"; cache = 0; };"
                               " };",
                               "c.conf", NULL, &pol, &err)
        != RL2_OK) {
        fail_msg("policy: %s", err.msg);
    }
    if (rl2_tier_source_create(&conf, NULL, 100, &src, &err) != RL2_OK) {
        fail_msg("tier source: %s", err.msg);
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    rl2_tier_source_destroy(src);
    rl2_policy_free(pol);
    cluster_stop();
    return 0;
}

#define T(f) \
    cmocka_unit_test_setup_teardown(f, watchdog_setup, watchdog_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_each_hash_from_the_master_of_its_slot),
        T(test_a_moved_slot_is_followed),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
