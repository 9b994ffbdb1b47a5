/*
 * test_config_store.c -- the policy file's store settings and tier lookup
 * (config_store.c), and how they combine with a front end's directives
 * and options (rl2_backend_conf_policy in backend.c).
 *
 * Valid groups are loaded and every field checked; a table of bad values
 * must each fail with the exact "file:line: " prefix; then the merge: a
 * group set by a directive or option is kept whole, the others come from
 * the file.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include <cmocka.h>

#include "ratelimit2/backend.h"
#include "ratelimit2/config.h"
#include "ratelimit2/tier_source.h"

#define TEST_CONF_FILE "s.conf"
#include "rl2_config_test.h"

/* ---- valid groups ---- */

static const char *const full =
    "redis = {\n"
    "  server = \"10.1.2.3:6380\";\n"
    "  db = 3; user = \"rl\"; password = \"s3cret\";\n"
    "  connect_timeout = 250; timeout = 40;\n"
    "  overrides_key = \"site1:overrides\";\n"
    "};\n"
    "failover = { mode = \"closed\"; share = 0.25; probe = 500;\n"
    "             failures = 4; };\n"
    "alerts = { enabled = true; socket = \"/run/x.sock\";\n"
    "           ident = \"rl2test\"; facility = \"local3\";\n"
    "           interval = 30; };\n";

static void
test_every_store_key_is_read(void **state)
{
    rl2_policy_t             *p = load_ok(full);
    const rl2_backend_conf_t *c;

    (void)state;
    assert_non_null(p->store);
    assert_int_equal(p->store->given, RL2_BACKEND_GIVEN_REDIS
                                          | RL2_BACKEND_GIVEN_FAILOVER
                                          | RL2_BACKEND_GIVEN_ALERTS);
    c = &p->store->conf;
    assert_int_equal(c->redis_enabled, 1);
    assert_string_equal(c->redis.host, "10.1.2.3");
    assert_int_equal(c->redis.port, 6380);
    assert_int_equal(c->redis.db, 3);
    assert_string_equal(c->redis.username, "rl");
    assert_string_equal(c->redis.password, "s3cret");
    assert_int_equal(c->redis.connect_timeout_ms, 250);
    assert_int_equal(c->redis.command_timeout_ms, 40);
    assert_string_equal(c->redis.overrides_key, "site1:overrides");
    assert_int_equal(c->failover_mode, RL2_FAILOVER_CLOSED);
    assert_int_equal(c->local_share_ppm, 250000);
    assert_int_equal(c->circuit.probe_interval_ms, 500);
    assert_int_equal(c->circuit.failures_to_open, 4);
    assert_int_equal(c->alerts_enabled, 1);
    assert_string_equal(c->alert_socket, "/run/x.sock");
    assert_string_equal(c->alert_ident, "rl2test");
    assert_int_equal(c->alert_facility, LOG_LOCAL3);
    assert_int_equal(c->alert_interval_ms, 30000);
    rl2_policy_free(p);
}

static void
test_server_forms(void **state)
{
    rl2_policy_t *p;

    (void)state;
    p = load_ok("redis = { server = \"/run/redis/redis.sock\"; };");
    assert_string_equal(p->store->conf.redis.unix_path,
                        "/run/redis/redis.sock");
    /* Only the redis group: failover and alerts keep their defaults and
     * are not marked given. */
    assert_int_equal(p->store->given, RL2_BACKEND_GIVEN_REDIS);
    assert_int_equal(p->store->conf.failover_mode, RL2_FAILOVER_LOCAL);
    rl2_policy_free(p);

    p = load_ok("redis = { server = \"sentinel:mymaster@127.0.0.1:26379,"
                "127.0.0.1:26380\"; };");
    assert_int_equal(p->store->conf.redis.n_sentinels, 2);
    assert_string_equal(p->store->conf.redis.master_name, "mymaster");
    assert_string_equal(p->store->conf.redis.sentinels[1], "127.0.0.1:26380");
    rl2_policy_free(p);

    p = load_ok("redis = { server = \"cluster:127.0.0.1:7000,"
                "127.0.0.1:7001\"; timeout = 50; };");
    assert_int_equal(p->store->conf.redis.n_seeds, 2);
    assert_string_equal(p->store->conf.redis.seeds[0], "127.0.0.1:7000");
    assert_int_equal(p->store->conf.redis.command_timeout_ms, 50);
    rl2_policy_free(p);

    p = load_ok("redis = { server = \"[::1]:7000\"; };\n"
                "failover = { share = \"0.5\"; };\n"
                "alerts = { enabled = false; };");
    assert_string_equal(p->store->conf.redis.host, "::1");
    assert_int_equal(p->store->conf.redis.port, 7000);
    assert_int_equal(p->store->conf.local_share_ppm, 500000);
    assert_int_equal(p->store->conf.alerts_enabled, 0);
    rl2_policy_free(p);

    p = load_ok("mode = \"enforce\";");
    assert_null(p->store);
    assert_null(p->tier_redis);
    rl2_policy_free(p);
}

static void
test_tier_redis_keys(void **state)
{
    rl2_policy_t           *p;
    const rl2_tier_redis_t *tr;

    (void)state;
    p = load_ok("tier_from = { redis = { key = \"billing:user:%s\"; }; };");
    tr = p->tier_redis;
    assert_non_null(tr);
    assert_string_equal(tr->key, "billing:user:%s");
    assert_string_equal(tr->field, "tier");
    assert_int_equal(tr->n_by, 1);
    assert_int_equal(tr->by[0], RL2_TIER_BY_USER);
    assert_int_equal(tr->cache_us, 60 * INT64_C(1000000));
    assert_int_equal(tr->cache_entries, 10000);
    assert_int_equal(tr->line, 1);
    rl2_policy_free(p);

    p = load_ok("api_key = { header = \"X-API-Key\"; };\n"
                "tier_from = {\n"
                "  variable = \"TIER\";\n"
                "  redis = { key = \"billing:tiers\"; field = \"%s\";\n"
                "            by = [ \"api_key\", \"user\" ]; cache = 0;\n"
                "            cache_entries = 64; };\n"
                "};");
    tr = p->tier_redis;
    assert_string_equal(tr->key, "billing:tiers");
    assert_string_equal(tr->field, "%s");
    assert_int_equal(tr->n_by, 2);
    assert_int_equal(tr->by[0], RL2_TIER_BY_APIKEY);
    assert_int_equal(tr->by[1], RL2_TIER_BY_USER);
    assert_int_equal(tr->cache_us, 0);
    assert_int_equal(tr->cache_entries, 64);
    assert_int_equal(tr->line, 4);
    assert_string_equal(p->tier_variable, "TIER");
    rl2_policy_free(p);
}

/* ---- bad values ---- */

static void
test_bad_values_name_file_and_line(void **state)
{
    static const struct {
        const char *text;
        int         line;
        const char *sub;
    } cases[] = {
        { "redis = 1;", 1, "'redis' must be a group" },
        { "redis = {\n db = 1; };", 1, "needs 'server'" },
        { "redis = {\n server = \"nocolon\"; };", 2, "HOST:PORT" },
        { "redis = {\n server = \"h:0\"; };", 2, "from 1 to 65535" },
        { "redis = {\n server = \"h:70000\"; };", 2, "from 1 to 65535" },
        { "redis = {\n server = \"h:12x\"; };", 2, "from 1 to 65535" },
        { "redis = {\n server = 6379; };", 2, "must be a string" },
        { "redis = {\n server = \"sentinel:@h:1\"; };", 2, "sentinel" },
        { "redis = {\n server = \"cluster:h\"; };", 2, "cluster" },
        { "redis = {\n server = \"cluster:h:1\"; db = 1; };", 1,
          "only database 0" },
        { "redis = { server = \"h:1\";\n db = 16; };", 2,
          "redis: db=16: expected a number from 0 to 15" },
        { "redis = { server = \"h:1\";\n timeout = 0; };", 2,
          "redis: timeout=0: expected a number from 1 to 60000" },
        { "redis = { server = \"h:1\";\n connect_timeout = 60001; };", 2,
          "redis: connect_timeout=60001: expected" },
        { "redis = {\n server = \"h:1\"; user = \"u\"; };", 1,
          "needs a password" },
        { "redis = { server = \"h:1\";\n overrides_key = \"a{b}\"; };", 2,
          "overrides_key" },
        { "redis = { server = \"h:1\";\n tls = true; };", 2,
          "unknown key 'tls'" },
        { "redis = { server = \"h:1\";\n lease = \"maybe\"; };", 2,
          "redis: lease=maybe: expected on or off" },
        { "redis = { server = \"h:1\";\n lease_max = 0; };", 2,
          "redis: lease_max=0: expected a number from 1 to 1000000" },
        { "redis = { server = \"h:1\";\n lease_time = 60001; };", 2,
          "redis: lease_time=60001: expected" },
        { "redis = { server = \"h:1\";\n db = true; };", 2,
          "'db' must be a number or a string" },
        { "failover = {\n mode = \"sideways\"; };", 2, "sideways" },
        { "failover = {\n share = 0.0001; };", 2, "share" },
        { "failover = {\n share = 2; };", 2, "share" },
        { "failover = {\n share = true; };", 2,
          "'share' must be a number or a string" },
        { "failover = {\n probe = 0; };", 2,
          "failover: probe=0: expected a number" },
        { "failover = {\n failures = 1001; };", 2,
          "failover: failures=1001: expected" },
        { "alerts = {\n socket = \"dev/log\"; };", 2, "absolute path" },
        { "alerts = {\n ident = \"0123456789012345678901234567890123\"; };", 2,
          "alerts: ident= needs 1 to 32 characters" },
        { "alerts = {\n facility = \"kern2\"; };", 2, "kern2" },
        { "alerts = {\n interval = 0; };", 2, "alerts: interval=0: expected" },
        { "alerts = {\n enabled = \"yes\"; };", 2, "true or false" },
        { "tier_from = {\n redis = { field = \"tier\"; }; };", 2,
          "needs 'key'" },
        { "tier_from = {\n redis = { key = \"billing\"; }; };", 2,
          "exactly one of 'key' and 'field' must hold '%s'" },
        { "tier_from = {\n redis = { key = \"b:%s\"; field = \"%s\"; }; };", 2,
          "found 2" },
        { "tier_from = {\n redis = { key = \"b:%d\"; }; };", 2,
          "no other '%'" },
        { "tier_from = { redis = { key = \"b:%s\";\n by = \"ip\"; }; };", 2,
          "'by' must be" },
        { "tier_from = { redis = { key = \"b:%s\";\n"
          " by = [\"user\", \"user\"]; }; };",
          2, "each once" },
        { "tier_from = { redis = { key = \"b:%s\";\n by = \"api_key\"; }; };",
          2, "reads no API key" },
        { "tier_from = { redis = { key = \"b:%s\";\n cache = -1; }; };", 2,
          "'cache' must be between 0 and 86400" },
        { "tier_from = { redis = { key = \"b:%s\";\n"
          " cache_entries = 8; }; };",
          2, "'cache_entries' must be between" },
        { "tier_from = { redis = { key = \"b:%s\";\n ttl = 5; }; };", 2,
          "unknown key 'ttl'" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_fail(cases[i].text, "s.conf", cases[i].line, cases[i].sub);
    }
}

/* ---- the file and the front end's own settings ---- */

static void
test_a_directive_replaces_the_whole_group(void **state)
{
    rl2_policy_t      *p = load_ok(full);
    rl2_backend_conf_t bc;
    rl2_err_t          err;

    (void)state;
    /* Nothing given by the front end: everything from the file. */
    rl2_backend_conf_init(&bc);
    assert_int_equal(rl2_backend_conf_policy(&bc, p, &err), RL2_OK);
    assert_int_equal(bc.redis_enabled, 1);
    assert_int_equal(bc.redis.port, 6380);
    assert_int_equal(bc.failover_mode, RL2_FAILOVER_CLOSED);
    assert_string_equal(bc.alert_ident, "rl2test");
    assert_int_equal(bc.tier_cache_entries, 0);

    /* RateLimit2Redis (or -R) given: the file's redis group is not used
     * at all, not even its password; failover and alerts still are. */
    rl2_backend_conf_init(&bc);
    snprintf(bc.redis.unix_path, sizeof(bc.redis.unix_path), "/tmp/r.sock");
    bc.redis_enabled = 1;
    bc.given = RL2_BACKEND_GIVEN_REDIS;
    assert_int_equal(rl2_backend_conf_policy(&bc, p, &err), RL2_OK);
    assert_string_equal(bc.redis.unix_path, "/tmp/r.sock");
    assert_string_equal(bc.redis.password, "");
    assert_int_equal(bc.redis.db, 0);
    assert_int_equal(bc.failover_mode, RL2_FAILOVER_CLOSED);
    assert_int_equal(bc.circuit.failures_to_open, 4);
    assert_int_equal(bc.alert_facility, LOG_LOCAL3);

    /* Failover and alerts given: only redis from the file. */
    rl2_backend_conf_init(&bc);
    bc.failover_mode = RL2_FAILOVER_OPEN;
    bc.alerts_enabled = 0;
    bc.given = RL2_BACKEND_GIVEN_FAILOVER | RL2_BACKEND_GIVEN_ALERTS;
    assert_int_equal(rl2_backend_conf_policy(&bc, p, &err), RL2_OK);
    assert_int_equal(bc.redis.port, 6380);
    assert_int_equal(bc.failover_mode, RL2_FAILOVER_OPEN);
    assert_int_equal(bc.local_share_ppm, RL2_SHARE_ONE);
    assert_int_equal(bc.alerts_enabled, 0);
    assert_string_equal(bc.alert_ident, "ratelimit2");
    rl2_policy_free(p);

    /* No policy: nothing changes. */
    rl2_backend_conf_init(&bc);
    assert_int_equal(rl2_backend_conf_policy(&bc, NULL, &err), RL2_OK);
    assert_int_equal(bc.redis_enabled, 0);
}

static void
test_tier_lookup_needs_a_redis_server(void **state)
{
    rl2_policy_t      *p = load_ok("mode = \"enforce\";\n"
                                        "tier_from = {\n"
                                        "  redis = { key = \"u:%s\";\n"
                                        "            cache_entries = 100; };\n"
                                        "};");
    rl2_backend_conf_t bc;
    rl2_err_t          err;

    (void)state;
    rl2_backend_conf_init(&bc);
    assert_int_equal(rl2_backend_conf_policy(&bc, p, &err), RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "s.conf:3: tier_from.redis needs a "
                                    "Redis server"));
    /* From a directive ... */
    bc.redis_enabled = 1;
    bc.given = RL2_BACKEND_GIVEN_REDIS;
    assert_int_equal(rl2_backend_conf_policy(&bc, p, &err), RL2_OK);
    assert_int_equal(bc.tier_cache_entries, 100);
    rl2_policy_free(p);

    /* ... or from the same file. */
    p = load_ok("redis = { server = \"127.0.0.1:1\"; };\n"
                "tier_from = { redis = { key = \"u:%s\"; }; };");
    rl2_backend_conf_init(&bc);
    assert_int_equal(rl2_backend_conf_policy(&bc, p, &err), RL2_OK);
    assert_int_equal(bc.tier_cache_entries, 10000);
    rl2_policy_free(p);
}

/* ---- conf/examples: one policy per Redis topology ---- */

static rl2_policy_t *
load_example(const char *name)
{
    char          path[256];
    rl2_policy_t *p = NULL;
    rl2_err_t     err;

    snprintf(path, sizeof(path), "conf/examples/%s", name);
    if (rl2_config_load(path, &p, &err) != RL2_OK) {
        fail_msg("%s: %s", path, err.msg);
    }
    assert_non_null(p->store);
    assert_non_null(p->tier_redis);
    assert_int_equal(p->n_tiers, 3);
    assert_int_equal(p->tier_redis->n_by, 2);
    return p;
}

static void
test_redis_examples_load(void **state)
{
    rl2_policy_t      *p;
    rl2_backend_conf_t bc;
    rl2_err_t          err;

    (void)state;
    p = load_example("policy-redis-standalone.conf");
    rl2_backend_conf_init(&bc);
    assert_int_equal(rl2_backend_conf_policy(&bc, p, &err), RL2_OK);
    assert_string_equal(bc.redis.host, "127.0.0.1");
    assert_int_equal(bc.redis.port, 6379);
    assert_int_equal(bc.local_share_ppm, 500000);
    assert_int_equal(bc.tier_cache_entries, 20000);
    rl2_policy_free(p);

    p = load_example("policy-redis-unix.conf");
    assert_string_equal(p->store->conf.redis.unix_path,
                        "/run/redis/redis-server.sock");
    assert_int_equal(p->store->conf.redis.db, 1);
    assert_int_equal(p->store->conf.alert_facility, LOG_LOCAL0);
    rl2_policy_free(p);

    p = load_example("policy-redis-sentinel.conf");
    assert_int_equal(p->store->conf.redis.n_sentinels, 3);
    assert_string_equal(p->store->conf.redis.master_name, "ratelimit");
    assert_int_equal(p->store->conf.local_share_ppm, 340000);
    rl2_policy_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_store_key_is_read),
        cmocka_unit_test(test_server_forms),
        cmocka_unit_test(test_tier_redis_keys),
        cmocka_unit_test(test_bad_values_name_file_and_line),
        cmocka_unit_test(test_a_directive_replaces_the_whole_group),
        cmocka_unit_test(test_tier_lookup_needs_a_redis_server),
        cmocka_unit_test(test_redis_examples_load),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
