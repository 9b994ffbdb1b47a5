/*
 * test_tier_source.c -- tiers from a billing system's Redis hash
 * (tier_source.c) against a real redis-server on loopback, and the order
 * of tier sources in a decision (client.c).
 *
 * The cache is driven with explicit monotonic times, so expiry is tested
 * exactly without sleeping; Redis being down and hung is tested with a
 * killed and a SIGSTOPped server and a wall clock bound.
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

#include "rl2_redis_test.h"

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/store_local.h"
#include "ratelimit2/tier_source.h"

#include "decide/decide_internal.h"
#include "store/store_internal.h"
#include "redis/redis_internal.h"

/* ---- helpers ---- */

static rl2_policy_t *
policy(const char *text)
{
    rl2_policy_t *p;
    rl2_err_t     err;

    if (rl2_config_load_string(text, "tier.conf", NULL, &p, &err) != RL2_OK) {
        fail_msg("policy: %s", err.msg);
    }
    return p;
}

static rl2_tier_source_t *
mk_source(const srv_t *s, const rl2_circuit_t *circuit, uint32_t entries,
          int timeout_ms)
{
    rl2_redis_conf_t   conf;
    rl2_tier_source_t *src;
    rl2_err_t          err;

    rl2_redis_conf_init(&conf);
    conf.port = s->port;
    conf.connect_timeout_ms = timeout_ms;
    conf.command_timeout_ms = timeout_ms;
    if (rl2_tier_source_create(&conf, circuit, entries, &src, &err) != RL2_OK) {
        fail_msg("tier source: %s", err.msg);
    }
    return src;
}

/* The tier name for user (and API key), "" for none. */
static const char *
tier_of(rl2_tier_source_t *src, const rl2_policy_t *p, const char *user,
        const char *apikey, const char *query, int64_t now_us)
{
    static char   name[RL2_NAME_MAX + 1];
    char          idbuf[65];
    rl2_request_t req;
    int           found;

    memset(&req, 0, sizeof(req));
    req.user = user;
    req.query = query;
    found = rl2_tier_source_get(src, p->tier_redis,
                                rl2_tier_identity(p, &req, apikey, idbuf),
                                now_us, name);
    assert_int_equal(found, name[0] != '\0');
    return name;
}

static rl2_tier_source_stats_t
stats_of(const rl2_tier_source_t *src)
{
    rl2_tier_source_stats_t st;

    rl2_tier_source_stats(src, &st);
    return st;
}

static int
setup(void **state)
{
    (void)state;
    srv_up();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    srv_down();
    return 0;
}

static void
hset(const char *key, const char *field, const char *value)
{
    freeReplyObject(admin_cmd(admin, "HSET %s %s %s", key, field, value));
}

/* ---- the lookup and its cache ---- */

static void
test_user_hash_and_cache_expiry(void **state)
{
    rl2_policy_t      *p = policy("tier_from = { redis = {\n"
                                       "  key = \"billing:user:%s\"; cache = 60; }; };");
    rl2_tier_source_t *src = mk_source(&srv, NULL, 1000, 1000);
    int64_t            t0 = 1000 * SEC;

    (void)state;
    hset("billing:user:alice", "tier", "pro");
    assert_string_equal(tier_of(src, p, "alice", NULL, NULL, t0), "pro");
    assert_int_equal(stats_of(src).lookups, 1);
    /* The billing system upgrades alice: the cached answer holds for the
     * configured 60 s, then the new one is read. */
    hset("billing:user:alice", "tier", "business");
    assert_string_equal(tier_of(src, p, "alice", NULL, NULL, t0 + 59 * SEC),
                        "pro");
    assert_int_equal(stats_of(src).hits, 1);
    assert_int_equal(stats_of(src).lookups, 1);
    assert_string_equal(tier_of(src, p, "alice", NULL, NULL, t0 + 60 * SEC),
                        "business");
    assert_int_equal(stats_of(src).lookups, 2);
    /* Unknown users have no tier, and that answer is cached too. */
    assert_string_equal(tier_of(src, p, "bob", NULL, NULL, t0), "");
    assert_string_equal(tier_of(src, p, "bob", NULL, NULL, t0 + SEC), "");
    assert_int_equal(stats_of(src).lookups, 3);
    assert_int_equal(stats_of(src).hits, 2);
    /* No user, no lookup. */
    assert_string_equal(tier_of(src, p, NULL, NULL, NULL, t0), "");
    assert_string_equal(tier_of(src, p, "", NULL, NULL, t0), "");
    assert_int_equal(stats_of(src).lookups, 3);
    rl2_tier_source_destroy(src);
    rl2_policy_free(p);
}

static void
test_cache_zero_asks_every_time(void **state)
{
    rl2_policy_t      *p = policy("tier_from = { redis = {\n"
                                       "  key = \"billing:user:%s\"; cache = 0; }; };");
    rl2_tier_source_t *src = mk_source(&srv, NULL, 1000, 1000);

    (void)state;
    hset("billing:user:carol", "tier", "pro");
    assert_string_equal(tier_of(src, p, "carol", NULL, NULL, SEC), "pro");
    hset("billing:user:carol", "tier", "free");
    assert_string_equal(tier_of(src, p, "carol", NULL, NULL, SEC), "free");
    assert_int_equal(stats_of(src).lookups, 2);
    assert_int_equal(stats_of(src).hits, 0);
    rl2_tier_source_destroy(src);
    rl2_policy_free(p);
}

/* A billing system writes one hash keyed by the SHA-256 of each API key:
 *   HSET billing:tiers $(printf %s "$KEY" | sha256sum | cut -c1-64) pro */
static void
test_api_key_by_sha256_in_one_hash(void **state)
{
    rl2_policy_t      *p = policy("api_key = { header = \"X-API-Key\";"
                                       " query = \"api_key\"; };\n"
                                       "tier_from = { redis = {\n"
                                       "  key = \"billing:tiers\"; field = \"%s\";\n"
                                       "  by = [ \"user\", \"api_key\" ]; }; };");
    rl2_tier_source_t *src = mk_source(&srv, NULL, 1000, 1000);

    (void)state;
    /* sha256("k-123") */
    hset("billing:tiers",
         "3605a9e4358da4302f8acea41f0f52cef85d0e3f727c7b020fc7305aec8d56b4",
         "business");
    hset("billing:tiers", "dave", "pro");
    assert_string_equal(tier_of(src, p, NULL, "k-123", NULL, SEC), "business");
    /* The key as the request's reading gives it, wherever it came from
     * (the header or the decoded query): the same identity. */
    assert_string_equal(
        tier_of(src, p, NULL, "k-123", "a=1&api_key=k-12%33", SEC), "business");
    /* No key, no identity: nothing is asked. */
    assert_string_equal(tier_of(src, p, NULL, "", NULL, SEC), "");
    assert_int_equal(stats_of(src).hits, 1);
    /* The user comes first when the request has both. */
    assert_string_equal(tier_of(src, p, "dave", "k-123", NULL, SEC), "pro");
    /* The plain key never reaches Redis. */
    assert_int_equal(admin_int(admin, "HEXISTS billing:tiers %s", "k-123"), 0);
    rl2_tier_source_destroy(src);
    rl2_policy_free(p);
}

/* A flood of distinct users fills a fixed cache and pushes out old
 * answers; the recent ones stay. */
static void
test_cache_is_bounded(void **state)
{
    rl2_policy_t      *p = policy("tier_from = { redis = {\n"
                                       "  key = \"flood:%s\"; cache = 3600; }; };");
    rl2_tier_source_t *src = mk_source(&srv, NULL, 64, 1000);
    char               user[32];

    (void)state;
    for (int i = 0; i < 2000; i++) {
        snprintf(user, sizeof(user), "u%d", i);
        assert_string_equal(tier_of(src, p, user, NULL, NULL, SEC + i), "");
    }
    assert_int_equal(stats_of(src).lookups, 2000);
    /* The first user was evicted: asked again. */
    assert_string_equal(tier_of(src, p, "u0", NULL, NULL, 3000 * SEC), "");
    assert_int_equal(stats_of(src).lookups, 2001);
    /* The last one is still cached. */
    assert_string_equal(tier_of(src, p, "u1999", NULL, NULL, 3000 * SEC), "");
    assert_int_equal(stats_of(src).hits, 1);
    rl2_tier_source_destroy(src);
    rl2_policy_free(p);
}

static void
test_wrong_type_and_long_values_are_no_tier(void **state)
{
    rl2_policy_t      *p = policy("tier_from = { redis = {\n"
                                       "  key = \"odd:%s\"; }; };");
    rl2_tier_source_t *src = mk_source(&srv, NULL, 100, 1000);
    char               longname[100];

    (void)state;
    freeReplyObject(admin_cmd(admin, "SET odd:str pro"));
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    hset("odd:long", "tier", longname);
    assert_string_equal(tier_of(src, p, "str", NULL, NULL, SEC), "");
    assert_string_equal(tier_of(src, p, "long", NULL, NULL, SEC), "");
    assert_int_equal(stats_of(src).lookups, 2);
    assert_int_equal(stats_of(src).failures, 0);
    rl2_tier_source_destroy(src);
    rl2_policy_free(p);
}

/* An error reply that says nothing about the client (here NOPERM: an ACL
 * user without +hget) is a failure, not an answer: nothing is cached, and
 * the lookup works as soon as the permission is granted. */
static void
test_other_error_replies_are_not_cached(void **state)
{
    rl2_policy_t      *p = policy("tier_from = { redis = {\n"
                                       "  key = \"acl:%s\"; cache = 3600; }; };");
    rl2_redis_conf_t   conf;
    rl2_tier_source_t *src;
    rl2_err_t          err;

    (void)state;
    hset("acl:kim", "tier", "pro");
    freeReplyObject(admin_cmd(admin, "ACL SETUSER tiers on >pw ~* +ping"));
    rl2_redis_conf_init(&conf);
    conf.port = srv.port;
    snprintf(conf.username, sizeof(conf.username), "tiers");
    snprintf(conf.password, sizeof(conf.password), "pw");
    if (rl2_tier_source_create(&conf, NULL, 100, &src, &err) != RL2_OK) {
        fail_msg("tier source: %s", err.msg);
    }
    assert_string_equal(tier_of(src, p, "kim", NULL, NULL, SEC), "");
    assert_int_equal(stats_of(src).failures, 1);
    freeReplyObject(admin_cmd(admin, "ACL SETUSER tiers +hget"));
    assert_string_equal(tier_of(src, p, "kim", NULL, NULL, 2 * SEC), "pro");
    assert_int_equal(stats_of(src).lookups, 1);
    freeReplyObject(admin_cmd(admin, "ACL DELUSER tiers"));
    rl2_tier_source_destroy(src);
    rl2_policy_free(p);
}

/* ---- Redis away ---- */

static void
test_open_circuit_skips_redis(void **state)
{
    rl2_policy_t      *p = policy("tier_from = { redis = {\n"
                                       "  key = \"billing:user:%s\"; }; };");
    rl2_circuit_conf_t cc;
    rl2_circuit_t     *circuit;
    rl2_tier_source_t *src;
    rl2_err_t          err;
    char               name[64];

    (void)state;
    snprintf(name, sizeof(name), "/rl2-tier-test-%d.circuit", (int)getpid());
    rl2_circuit_conf_default(&cc);
    cc.probe_interval_ms = 3600000;
    if (rl2_circuit_open(name, &cc, 0600, &circuit, &err) != RL2_OK) {
        fail_msg("circuit: %s", err.msg);
    }
    src = mk_source(&srv, circuit, 100, 1000);
    hset("billing:user:erin", "tier", "pro");
    rl2_circuit_failure(circuit, rl2_circuit_route(circuit, mono_us()),
                        mono_us());
    assert_int_equal(rl2_circuit_state(circuit), RL2_CIRCUIT_OPEN);
    assert_string_equal(tier_of(src, p, "erin", NULL, NULL, SEC), "");
    assert_int_equal(stats_of(src).skipped, 1);
    assert_int_equal(stats_of(src).lookups, 0);
    /* Nothing was cached while skipping: closed again, Redis answers. */
    rl2_circuit_success(circuit, RL2_ROUTE_PROBE, mono_us(), NULL);
    assert_int_equal(rl2_circuit_state(circuit), RL2_CIRCUIT_CLOSED);
    assert_string_equal(tier_of(src, p, "erin", NULL, NULL, SEC), "pro");
    rl2_tier_source_destroy(src);
    rl2_circuit_close(circuit);
    rl2_circuit_unlink(name, &err);
    rl2_policy_free(p);
}

static void
test_hung_and_dead_redis_cost_one_timeout(void **state)
{
    rl2_policy_t      *p = policy("tier_from = { redis = {\n"
                                       "  key = \"billing:user:%s\"; }; };");
    srv_t              own;
    rl2_tier_source_t *src;
    redisContext      *c;
    int64_t            t;

    (void)state;
    srv_start(&own, NULL);
    c = srv_admin(&own);
    freeReplyObject(admin_cmd(c, "HSET billing:user:frank tier pro"));
    redisFree(c);
    src = mk_source(&own, NULL, 100, 100);
    assert_string_equal(tier_of(src, p, "frank", NULL, NULL, SEC), "pro");
    /* Hung: one command timeout (100 ms), then no tier; not cached. */
    kill(own.pid, SIGSTOP);
    t = mono_us();
    assert_string_equal(tier_of(src, p, "gina", NULL, NULL, SEC), "");
    assert_true(mono_us() - t < 1000000);
    assert_int_equal(stats_of(src).failures, 1);
    /* Dead: refused at once, no tier, the request goes on. */
    srv_stop(&own);
    t = mono_us();
    assert_string_equal(tier_of(src, p, "gina", NULL, NULL, SEC), "");
    assert_true(mono_us() - t < 1000000);
    assert_int_equal(stats_of(src).failures, 2);
    /* What was cached before the outage is still answered. */
    assert_string_equal(tier_of(src, p, "frank", NULL, NULL, 2 * SEC), "pro");
    rl2_tier_source_destroy(src);
    rl2_policy_free(p);
}

/* ---- the order of sources in a decision (client.c) ---- */

static const char *const tiered =
    "tiers = ( { name = \"free\"; }, { name = \"pro\"; },\n"
    "          { name = \"business\"; } );\n"
    "default_tier = \"free\";\n"
    "tier_from = { variable = \"TIER\";\n"
    "              redis = { key = \"billing:user:%s\"; }; };\n"
    "rules = ( { name = \"api\"; paths = [ \"/api/*\" ]; key = \"user\";\n"
    "            tiers = { free = ( { rate = \"5/min\"; } );\n"
    "                      pro = ( { rate = \"50/min\"; } );\n"
    "                      business = ( { rate = \"500/min\"; } ); }; } );\n"
    "clients = ( { user = \"vip\"; tier = \"business\"; } );\n";

static int
decided_tier(const rl2_policy_t *p, rl2_store_t *store, rl2_tier_source_t *src,
             const char *user, const char *var)
{
    rl2_request_t req;
    rl2_verdict_t v;
    rl2_clock_t   now;
    rl2_err_t     err;

    memset(&req, 0, sizeof(req));
    req.method = "GET";
    req.path = "/api/x";
    req.peer_ip = "192.0.2.1";
    req.user = user;
    req.tier_var = var;
    req.tier_source = src;
    rl2_verdict_init(&v);
    rl2_clock_now(&now);
    if (rl2_decide(p, NULL, 0, store, &req, RL2_PHASE_ALL, &now, &v, &err)
        != RL2_OK) {
        fail_msg("decide: %s", err.msg);
    }
    return v.tier;
}

static void
test_override_then_redis_then_variable_then_default(void **state)
{
    rl2_policy_t      *p = policy(tiered);
    rl2_tier_source_t *src = mk_source(&srv, NULL, 100, 1000);
    rl2_zone_t        *zone;
    rl2_store_t       *store;
    rl2_err_t          err;
    char               name[64];

    (void)state;
    snprintf(name, sizeof(name), "/rl2-tier-test-%d", (int)getpid());
    if (rl2_zone_open(name, 1024, p->max_state_size, 0600, &zone, &err)
            != RL2_OK
        || rl2_store_local_create(zone, &store, &err) != RL2_OK) {
        fail_msg("zone: %s", err.msg);
    }
    hset("billing:user:vip", "tier", "pro");
    hset("billing:user:hank", "tier", "pro");
    hset("billing:user:ivy", "tier", "no-such-tier");
    /* The policy's own override wins over Redis. */
    assert_int_equal(decided_tier(p, store, src, "vip", "pro"), 2);
    /* Redis wins over the upstream's variable. */
    assert_int_equal(decided_tier(p, store, src, "hank", "business"), 1);
    /* A tier the policy does not declare, or no entry: the variable. */
    assert_int_equal(decided_tier(p, store, src, "ivy", "business"), 2);
    assert_int_equal(decided_tier(p, store, src, "jack", "business"), 2);
    /* Nothing anywhere: the default (anonymous) tier. */
    assert_int_equal(decided_tier(p, store, src, "jack", NULL), 0);
    assert_int_equal(decided_tier(p, store, src, NULL, NULL), 0);
    /* No tier source given: Redis is not asked at all. */
    assert_int_equal(decided_tier(p, store, NULL, "hank", NULL), 0);
    rl2_store_destroy(store);
    rl2_zone_close(zone);
    rl2_zone_unlink(name, &err);
    rl2_tier_source_destroy(src);
    rl2_policy_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_hash_and_cache_expiry),
        cmocka_unit_test(test_cache_zero_asks_every_time),
        cmocka_unit_test(test_api_key_by_sha256_in_one_hash),
        cmocka_unit_test(test_cache_is_bounded),
        cmocka_unit_test(test_wrong_type_and_long_values_are_no_tier),
        cmocka_unit_test(test_other_error_replies_are_not_cached),
        cmocka_unit_test(test_open_circuit_skips_redis),
        cmocka_unit_test(test_hung_and_dead_redis_cost_one_timeout),
        cmocka_unit_test(test_override_then_redis_then_variable_then_default),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
