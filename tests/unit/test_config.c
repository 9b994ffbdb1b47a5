/*
 * test_config.c -- the libconfig policy loader (config.c).
 *
 * One valid policy that uses every key is loaded and each field checked;
 * @include is tried from real files in a mkdtemp directory; then a table
 * of malformed policies, each of which must fail with the exact
 * "file:line: " prefix and a message a sysadmin understands, never crash
 * and never hand back a policy.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/config.h"
#include "ratelimit2/policy.h"

#define TEST_CONF_FILE "t.conf"
#include "rl2_config_test.h"
#include "base/base_internal.h"
#include "policy/policy_internal.h"
#include "control/control_internal.h"

#define S_US    INT64_C(1000000)
#define MIN_US  (60 * S_US)
#define HOUR_US (3600 * S_US)
#define DAY_US  (86400 * S_US)

/* ---- helpers ----------------------------------------------------------- */

static const rl2_rule_t *
rule_named(const rl2_policy_t *p, const char *name)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        if (strcmp(p->rules[i].name, name) == 0) {
            return &p->rules[i];
        }
    }
    fail_msg("no rule %s", name);
    return NULL;
}

static void
write_file(const char *dir, const char *name, const char *text)
{
    char  path[512];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void
remove_file(const char *dir, const char *name)
{
    char path[512];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

/* ---- the valid policy -------------------------------------------------- */

static const char full_policy[] =
    "mode = \"dry_run\";\n" /* 1 */
    "match = \"first\";\n"
    "algorithm = \"token_bucket\";\n"
    "hash_secret = \"s3cret\";\n"
    "ipv6_prefix = 56;\n" /* 5 */
    "trusted_proxies = [ \"127.0.0.1\", \"10.0.0.0/8\", \"::1\" ];\n"
    "api_key = { header = \"X-API-Key\"; query = \"api_key\"; };\n"
    "tier_from = { variable = \"RL2_TIER\";"
    " header = \"X-RateLimit-Tier\"; header_from = \"10.0.0.5\"; };\n"
    "tiers = ( { name = \"free\"; upgrade_url = \"https://e.com/p\"; },\n"
    "          { name = \"pro\"; }, { name = \"business\"; },"
    " \"enterprise\" );\n"
    "default_tier = \"pro\";\n" /* 11 */
    "headers = { reset = \"delta\"; scope = true; algorithm = true;"
    " legacy = true; };\n"
    "whitelist = { addresses = [ \"10.0.0.0/8\", \"2001:db8::/32\" ];\n"
    "              users = [ \"ops\" ]; api_keys = \"k1\";"
    " internal = true; internal_variable = \"RL2_INTERNAL\";"
    " internal_header = \"X-Internal\";"
    " internal_header_from = [ \"10.0.0.6\", \"2001:db8::/48\" ]; };\n"
    "rules = (\n"                                                  /* 15 */
    "  { name = \"health\"; paths = [ \"/health\", \"/docs\" ];\n" /* 16 */
    "    exempt = true; },\n"
    "  { name = \"login\"; methods = \"POST\"; paths = \"/auth/login\";\n"
    "    hosts = [ \"API.Example.com\" ]; mode = \"enforce\";\n"
    "    continue = true; key = \"ip\";\n" /* 20 */
    "    limits = ( { rate = \"5/min\"; algorithm = \"fixed_window\"; },\n"
    "               { rate = \"100/hour\"; burst = 10; cost = 2;\n"
    "                 overflow = \"2/5min\"; },\n"
    "               { name = \"login_global\"; rate = \"1000/hour\";\n"
    "                 key = \"global\"; algorithm = \"sliding_window\"; } );\n"
    "  },\n"
    "  { name = \"ai\"; methods = [ \"POST\", \"PUT\" ];\n" /* 27 */
    "    paths = [ \"/ai/*\" ]; key = \"user\";\n"
    "    limits = ( { rate = \"5/hour\"; algorithm = \"sliding_log\"; },\n"
    "               { rate = \"20/day\"; algorithm = \"quota\"; } );\n"
    "    tiers = { pro = ( { rate = \"50/hour\"; },\n"
    "                      { rate = \"1000/month\";"
    " algorithm = \"quota\"; } );\n"
    "              enterprise = \"unlimited\"; };\n"
    "  },\n"
    "  { name = \"stream\"; paths = \"/stream/**\";\n" /* 35 */
    "    limits = ( { algorithm = \"concurrency\"; limit = 3;\n"
    "                 key = \"header:X-Session\"; } ); },\n"
    "  { name = \"big\"; paths = \"/big\"; key = \"header:X-Tenant\";\n"
    "    limits = ( { rate = \"10000000000/week\";\n"
    "                 algorithm = \"leaky_bucket\"; burst = 5000000000L;\n"
    "                 cost = 3000000000L; } );\n"
    "    tiers = { free = \"unlimited\"; }; }\n"
    ");\n"
    "default = { key = \"ip\"; mode = \"off\";\n" /* 44 */
    "            limits = ( { rate = \"1000/hour\"; } );\n"
    "            tiers = { free = ( { rate = \"100/hour\"; } ); }; };\n"
    "clients = (\n"
    "  { user = \"premium_user_123\"; tier = \"business\";\n" /* 48 */
    "    rules = { ai = ( { rate = \"100/hour\"; overflow = \"25/5min\"; },\n"
    "                     { rate = \"2000/day\"; algorithm = \"quota\"; } );\n"
    "            }; },\n"
    "  { api_key = \"abc\"; tier = \"pro\"; },\n"
    "  { address = \"192.0.2.0/24\"; tier = \"enterprise\";\n"
    "    rules = { default = \"unlimited\"; }; }\n"
    ");\n";

static void
test_full_policy_top_level_fields(void **state)
{
    rl2_policy_t  *p = load_ok(full_policy);
    rl2_hash_key_t key;
    uint8_t        v4[4];

    (void)state;
    assert_string_equal(p->source, "t.conf");
    assert_int_equal(p->mode, RL2_MODE_DRY_RUN);
    assert_int_equal(p->match_all, 0);
    assert_int_equal(p->ipv6_prefix, 56);
    rl2_hash_key_from_secret("s3cret", &key);
    assert_memory_equal(&p->hash_key, &key, sizeof(key));

    assert_int_equal(p->n_trusted, 3);
    assert_int_equal(p->trusted[0].family, AF_INET);
    assert_int_equal(p->trusted[0].prefix, 32);
    assert_int_equal(p->trusted[1].prefix, 8);
    assert_int_equal(p->trusted[2].family, AF_INET6);
    assert_int_equal(p->trusted[2].prefix, 128);

    assert_string_equal(p->apikey_header, "X-API-Key");
    assert_string_equal(p->apikey_query, "api_key");
    assert_string_equal(p->tier_variable, "RL2_TIER");
    assert_string_equal(p->tier_header, "X-RateLimit-Tier");

    assert_int_equal(p->header_scope, 1);
    assert_int_equal(p->header_legacy, 1);
    assert_int_equal(p->header_scope, 1);
    assert_int_equal(p->header_algorithm, 1);

    assert_int_equal(p->n_wl_nets, 2);
    inet_pton(AF_INET, "10.9.8.7", v4);
    assert_true(rl2_cidr_match(&p->wl_nets[0], AF_INET, v4));
    assert_int_equal(p->wl_nets[1].family, AF_INET6);
    assert_int_equal(p->wl_nets[1].prefix, 32);
    assert_int_equal(p->n_wl_users, 1);
    assert_string_equal(p->wl_users[0], "ops");
    assert_int_equal(p->n_wl_keys, 1);
    assert_string_equal(p->wl_keys[0], "k1");
    assert_int_equal(p->wl_internal, 1);
    assert_string_equal(p->wl_internal_var, "RL2_INTERNAL");
    assert_string_equal(p->wl_internal_header, "X-Internal");
    assert_int_equal(p->n_wl_internal_nets, 2);
    inet_pton(AF_INET, "10.0.0.6", v4);
    assert_true(rl2_cidr_match(&p->wl_internal_nets[0], AF_INET, v4));
    assert_int_equal(p->wl_internal_nets[0].prefix, 32);
    assert_int_equal(p->wl_internal_nets[1].family, AF_INET6);
    assert_int_equal(p->wl_internal_nets[1].prefix, 48);
    rl2_policy_free(p);
}

static void
test_full_policy_tiers(void **state)
{
    rl2_policy_t *p = load_ok(full_policy);

    (void)state;
    assert_int_equal(p->n_tiers, 4);
    assert_string_equal(p->tiers[0].name, "free");
    assert_string_equal(p->tiers[0].upgrade_url, "https://e.com/p");
    assert_string_equal(p->tiers[1].name, "pro");
    assert_null(p->tiers[1].upgrade_url);
    assert_string_equal(p->tiers[2].name, "business");
    assert_string_equal(p->tiers[3].name, "enterprise");
    assert_int_equal(p->default_tier, 1);
    rl2_policy_free(p);
}

static void
test_full_policy_exempt_and_match_keys(void **state)
{
    rl2_policy_t     *p = load_ok(full_policy);
    const rl2_rule_t *h, *r;

    (void)state;
    assert_int_equal(p->n_rules, 5);
    h = &p->rules[0];
    assert_string_equal(h->name, "health");
    assert_string_equal(h->file, "t.conf");
    assert_int_equal(h->line, 16);
    assert_int_equal(h->exempt, 1);
    assert_int_equal(h->limits.defined, 0);
    assert_null(h->tiers);
    assert_int_equal(h->methods, 0);
    assert_int_equal(h->n_paths, 2);
    assert_string_equal(h->paths[1], "/docs");
    assert_int_equal(h->mode, RL2_MODE_INHERIT);

    r = rule_named(p, "login");
    assert_int_equal(r->methods, RL2_METHOD_POST);
    assert_int_equal(r->n_paths, 1);
    assert_string_equal(r->paths[0], "/auth/login");
    assert_int_equal(r->n_hosts, 1);
    assert_string_equal(r->hosts[0], "api.example.com");
    assert_int_equal(r->mode, RL2_MODE_ENFORCE);
    assert_int_equal(r->is_continue, 1);
    assert_int_equal(r->exempt, 0);
    r = rule_named(p, "ai");
    assert_int_equal(r->methods, RL2_METHOD_POST | RL2_METHOD_PUT);
    assert_int_equal(r->line, 27);
    rl2_policy_free(p);
}

static void
test_full_policy_limits_and_default_names(void **state)
{
    rl2_policy_t      *p = load_ok(full_policy);
    const rl2_rule_t  *r = rule_named(p, "login");
    const rl2_limit_t *l = r->limits.limits;

    (void)state;
    assert_int_equal(r->limits.defined, 1);
    assert_int_equal(r->limits.n, 3);
    /* first of a set: the rule's name; later ones "<rule>.<n>" */
    assert_string_equal(l[0].name, "login");
    assert_string_equal(l[1].name, "login.2");
    assert_string_equal(l[2].name, "login_global");
    assert_string_equal(l[0].file, "t.conf");
    assert_int_equal(l[0].line, 21);

    assert_int_equal(l[0].algo.algo, RL2_ALGO_FIXED_WINDOW);
    assert_int_equal(l[0].algo.limit, 5);
    assert_int_equal(l[0].algo.window_us, MIN_US);
    assert_int_equal(l[0].key, RL2_KEY_IP);
    assert_int_equal(l[0].cost, 1);
    assert_int_equal(l[0].overflow.limit, 0);
    assert_int_equal(l[0].phase, RL2_PHASE_EARLY);

    /* the top-level algorithm is the default */
    assert_int_equal(l[1].algo.algo, RL2_ALGO_TOKEN_BUCKET);
    assert_int_equal(l[1].algo.limit, 100);
    assert_int_equal(l[1].algo.window_us, HOUR_US);
    assert_int_equal(l[1].algo.burst, 10);
    assert_int_equal(l[1].cost, 2);
    assert_int_equal(l[1].overflow.limit, 2);
    assert_int_equal(l[1].overflow.window_us, 5 * MIN_US);
    assert_true(l[1].state_size > 0);

    assert_int_equal(l[2].algo.algo, RL2_ALGO_SLIDING_WINDOW);
    assert_int_equal(l[2].key, RL2_KEY_GLOBAL);
    rl2_policy_free(p);
}

static void
test_full_policy_tier_sets_and_quota(void **state)
{
    rl2_policy_t          *p = load_ok(full_policy);
    const rl2_rule_t      *r = rule_named(p, "ai");
    const rl2_limit_set_t *pro, *ent;

    (void)state;
    assert_int_equal(r->limits.n, 2);
    assert_int_equal(r->limits.limits[0].algo.algo, RL2_ALGO_SLIDING_LOG);
    assert_int_equal(r->limits.limits[0].key, RL2_KEY_USER);
    assert_int_equal(r->limits.limits[0].phase, RL2_PHASE_LATE);
    assert_int_equal(r->limits.limits[1].algo.algo, RL2_ALGO_QUOTA);
    assert_int_equal(r->limits.limits[1].algo.period, RL2_PERIOD_DAY);
    assert_int_equal(r->limits.limits[1].algo.limit, 20);
    assert_string_equal(r->limits.limits[1].name, "ai.2");

    assert_non_null(r->tiers);
    assert_int_equal(r->tiers[0].defined, 0); /* free: uses limits */
    assert_int_equal(r->tiers[2].defined, 0); /* business: likewise */
    pro = &r->tiers[1];
    assert_int_equal(pro->defined, 1);
    assert_int_equal(pro->n, 2);
    assert_string_equal(pro->limits[0].name, "ai");
    assert_int_equal(pro->limits[0].algo.limit, 50);
    assert_int_equal(pro->limits[0].key, RL2_KEY_USER);
    assert_int_equal(pro->limits[0].phase, RL2_PHASE_LATE);
    assert_int_equal(pro->limits[1].algo.period, RL2_PERIOD_MONTH);
    assert_int_equal(pro->limits[1].algo.limit, 1000);
    ent = &r->tiers[3];
    assert_int_equal(ent->defined, 1);
    assert_int_equal(ent->unlimited, 1);
    assert_int_equal(ent->n, 1);
    assert_int_equal(ent->limits[0].unlimited, 1);
    assert_string_equal(ent->limits[0].name, "ai.unlimited");
    assert_int_equal(ent->limits[0].key, RL2_KEY_USER);
    assert_int_equal(ent->limits[0].line, 33);
    rl2_policy_free(p);
}

static void
test_full_policy_scopes_int64_and_concurrency(void **state)
{
    rl2_policy_t      *p = load_ok(full_policy);
    const rl2_rule_t  *s = rule_named(p, "stream"), *b = rule_named(p, "big");
    const rl2_limit_t *l = &s->limits.limits[0];

    (void)state;
    assert_int_equal(l->algo.algo, RL2_ALGO_CONCURRENCY);
    assert_int_equal(l->algo.limit, 3);
    assert_int_equal(l->key, RL2_KEY_HEADER);
    assert_string_equal(l->key_header, "X-Session");
    assert_int_equal(p->has_concurrency, 1);

    l = &b->limits.limits[0];
    assert_int_equal(l->algo.limit, INT64_C(10000000000));
    assert_int_equal(l->algo.burst, INT64_C(5000000000));
    assert_int_equal(l->cost, INT64_C(3000000000));
    assert_int_equal(l->key, RL2_KEY_HEADER);
    assert_string_equal(l->key_header, "X-Tenant");
    /* "unlimited" keeps the rule's header key */
    assert_int_equal(b->tiers[0].unlimited, 1);
    assert_int_equal(b->tiers[0].limits[0].key, RL2_KEY_HEADER);
    assert_string_equal(b->tiers[0].limits[0].key_header, "X-Tenant");
    rl2_policy_free(p);
}

static void
test_full_policy_default_rule(void **state)
{
    rl2_policy_t     *p = load_ok(full_policy);
    const rl2_rule_t *d = p->default_rule;

    (void)state;
    assert_non_null(d);
    assert_string_equal(d->name, "default");
    assert_int_equal(d->line, 44);
    assert_int_equal(d->mode, RL2_MODE_OFF);
    assert_int_equal(d->methods, 0);
    assert_int_equal(d->n_paths, 0);
    assert_int_equal(d->limits.n, 1);
    assert_string_equal(d->limits.limits[0].name, "default");
    assert_int_equal(d->limits.limits[0].algo.limit, 1000);
    assert_int_equal(d->tiers[0].n, 1);
    assert_int_equal(d->tiers[0].limits[0].algo.limit, 100);
    assert_int_equal(d->tiers[1].defined, 0);
    rl2_policy_free(p);
}

static void
test_full_policy_clients(void **state)
{
    rl2_policy_t       *p = load_ok(full_policy);
    const rl2_client_t *c = p->clients;
    const rl2_rule_t   *ai = rule_named(p, "ai");
    uint8_t             v4[4];

    (void)state;
    assert_int_equal(p->n_clients, 3);
    assert_int_equal(c[0].by, RL2_KEY_USER);
    assert_string_equal(c[0].id, "premium_user_123");
    assert_int_equal(c[0].tier, 2);
    assert_int_equal(c[0].line, 48);
    assert_string_equal(c[0].file, "t.conf");
    assert_int_equal(c[0].n_rules, 1);
    assert_ptr_equal(&p->rules[c[0].rules[0].rule], ai);
    assert_int_equal(c[0].rules[0].set.n, 2);
    assert_string_equal(c[0].rules[0].set.limits[0].name, "ai");
    assert_string_equal(c[0].rules[0].set.limits[1].name, "ai.2");
    assert_int_equal(c[0].rules[0].set.limits[0].overflow.limit, 25);
    /* limits of an override default to the overridden rule's key */
    assert_int_equal(c[0].rules[0].set.limits[0].key, RL2_KEY_USER);
    assert_int_equal(c[0].rules[0].set.limits[1].algo.period, RL2_PERIOD_DAY);

    assert_int_equal(c[1].by, RL2_KEY_APIKEY);
    assert_string_equal(c[1].id, "abc");
    assert_int_equal(c[1].tier, 1);
    assert_int_equal(c[1].n_rules, 0);

    assert_int_equal(c[2].by, RL2_KEY_IP);
    assert_null(c[2].id);
    assert_int_equal(c[2].tier, 3);
    inet_pton(AF_INET, "192.0.2.77", v4);
    assert_true(rl2_cidr_match(&c[2].net, AF_INET, v4));
    assert_int_equal(c[2].n_rules, 1);
    assert_int_equal(c[2].rules[0].rule, p->n_rules); /* default rule */
    assert_int_equal(c[2].rules[0].set.unlimited, 1);
    rl2_policy_free(p);
}

static void
test_full_policy_max_state_size(void **state)
{
    rl2_policy_t *p = load_ok(full_policy);
    size_t        max = 0;

    (void)state;
    for (size_t i = 0; i <= p->n_rules; i++) {
        const rl2_rule_t *r = i < p->n_rules ? &p->rules[i] : p->default_rule;

        for (size_t j = 0; j < r->limits.n; j++) {
            if (r->limits.limits[j].state_size > max) {
                max = r->limits.limits[j].state_size;
            }
        }
        for (size_t t = 0; r->tiers && t < p->n_tiers; t++) {
            for (size_t j = 0; j < r->tiers[t].n; j++) {
                if (r->tiers[t].limits[j].state_size > max) {
                    max = r->tiers[t].limits[j].state_size;
                }
            }
        }
    }
    assert_true(max > 0);
    assert_int_equal(p->max_state_size, max);
    rl2_policy_free(p);
}

/* ---- smaller valid policies -------------------------------------------- */

static void
test_empty_policy_has_defaults(void **state)
{
    rl2_policy_t *p = load_ok("# nothing but a comment\n");

    (void)state;
    assert_int_equal(p->mode, RL2_MODE_ENFORCE);
    assert_int_equal(p->match_all, 0);
    assert_int_equal(p->ipv6_prefix, 64);
    assert_int_equal(p->n_rules, 0);
    assert_null(p->default_rule);
    assert_int_equal(p->n_tiers, 0);
    assert_int_equal(p->default_tier, -1);
    assert_int_equal(p->reset_delta, 0);
    assert_int_equal(p->header_legacy, 0);
    assert_null(p->apikey_header);
    assert_int_equal(p->has_concurrency, 0);
    assert_int_equal(p->wl_internal, 0);
    assert_null(p->wl_internal_var);
    assert_null(p->wl_internal_header);
    rl2_policy_free(p);
}

/* whitelist.internal alone reads the default variable and no header;
 * internal = false reads nothing, so no front end looks for either. */
static void
test_internal_defaults(void **state)
{
    rl2_policy_t *p = load_ok("whitelist = { internal = true; };\n");

    (void)state;
    assert_int_equal(p->wl_internal, 1);
    assert_string_equal(p->wl_internal_var, "RATELIMIT2_INTERNAL");
    assert_string_equal(p->wl_internal_var, RL2_INTERNAL_VARIABLE);
    assert_null(p->wl_internal_header);
    assert_int_equal(p->n_wl_internal_nets, 0);
    rl2_policy_free(p);
    p = load_ok("whitelist = { internal = false; };\n");
    assert_int_equal(p->wl_internal, 0);
    assert_null(p->wl_internal_var);
    rl2_policy_free(p);
}

static void
test_tier_array_and_first_is_default(void **state)
{
    rl2_policy_t *p =
        load_ok("tiers = [ \"free\", \"pro\" ];\n"
                "match = \"all\";\n"
                "rules = ( { name = \"a.b-c_1\"; paths = \"/x\";\n"
                "            limits = \"unlimited\";\n"
                "            tiers = { pro = ( ); }; } );\n");
    const rl2_rule_t *r = &p->rules[0];

    (void)state;
    assert_int_equal(p->match_all, 1);
    assert_int_equal(p->n_tiers, 2);
    assert_int_equal(p->default_tier, 0);
    assert_string_equal(r->name, "a.b-c_1");
    assert_int_equal(r->limits.unlimited, 1);
    assert_string_equal(r->limits.limits[0].name, "a.b-c_1.unlimited");
    assert_int_equal(r->limits.limits[0].line, 4);
    /* an empty set is defined and holds nothing: pro is not limited */
    assert_int_equal(r->tiers[1].defined, 1);
    assert_int_equal(r->tiers[1].n, 0);
    assert_int_equal(r->tiers[0].defined, 0);
    rl2_policy_free(p);
}

/* A user's override makes the whole rule depend on identity, so even its
 * address-keyed limits must wait until after authentication. */
static void
test_user_override_makes_rule_late(void **state)
{
    rl2_policy_t *p = load_ok(
        "rules = ( { name = \"a\"; paths = \"/a\";\n"
        "            limits = ( { rate = \"5/min\"; } ); },\n"
        "          { name = \"b\"; paths = \"/b\";\n"
        "            limits = ( { rate = \"5/min\"; } ); } );\n"
        "clients = ( { user = \"u\"; rules = { a = \"unlimited\"; }; },\n"
        "            { address = \"::1\"; rules = { b = ( ); }; } );\n");

    (void)state;
    assert_int_equal(p->rules[0].limits.limits[0].phase, RL2_PHASE_LATE);
    assert_int_equal(p->rules[1].limits.limits[0].phase, RL2_PHASE_EARLY);
    assert_int_equal(p->clients[1].net.family, AF_INET6);
    assert_int_equal(p->clients[1].tier, -1);
    rl2_policy_free(p);
}

/* The runtime override table: on by default, kept in a state file named
 * after the zone, a ban answered 429; the group changes each. */
static void
test_overrides_group(void **state)
{
    rl2_policy_t *p = load_ok("");
    char          path[256];

    (void)state;
    assert_int_equal(p->overrides_disabled, 0);
    assert_null(p->overrides_state);
    assert_int_equal(p->ban_status, 429);
    assert_null(p->overrides);
    assert_int_equal(
        rl2_policy_overrides_state(p, "/ratelimit2", path, sizeof(path)), 0);
    assert_string_equal(path, RL2_STATE_DIR "/ratelimit2.overrides");
    assert_int_equal(rl2_policy_overrides_state(p, "/ratelimit2", path, 10),
                     -1);
    assert_null(p->overrides_audit);
    assert_int_equal(
        rl2_policy_overrides_audit(p, "/ratelimit2", path, sizeof(path)), 0);
    assert_string_equal(path, RL2_STATE_DIR "/ratelimit2.audit");
    assert_int_equal(
        rl2_policy_overrides_audit(NULL, "/site", path, sizeof(path)), 0);
    assert_string_equal(path, RL2_STATE_DIR "/site.audit");
    assert_int_equal(rl2_policy_overrides_audit(p, "/ratelimit2", path, 10),
                     -1);
    rl2_policy_free(p);
    p = load_ok("overrides = { enabled = false; ban_status = 403;\n"
                "  state_file = \"/srv/rl2/site.overrides\";\n"
                "  audit_file = \"/srv/rl2/site.audit\"; };\n");
    assert_int_equal(p->overrides_disabled, 1);
    assert_int_equal(p->ban_status, 403);
    assert_int_equal(
        rl2_policy_overrides_state(p, "/ratelimit2", path, sizeof(path)), 0);
    assert_string_equal(path, "/srv/rl2/site.overrides");
    assert_int_equal(
        rl2_policy_overrides_audit(p, "/ratelimit2", path, sizeof(path)), 0);
    assert_string_equal(path, "/srv/rl2/site.audit");
    rl2_policy_free(p);
}

/* The loader reads in dependency order: a match = "all" written after
 * the rules still makes a continue rule an error. */
static void
test_keys_are_read_in_dependency_order(void **state)
{
    (void)state;
    expect_fail("rules = ( { name = \"a\"; continue = true;\n"
                "            limits = ( ); } );\n"
                "match = \"all\";\n",
                "o.conf", 1, "'continue' means nothing");
    rl2_policy_free(load_ok(
        "clients = ( { user = \"u\"; tier = \"pro\";\n"
        "              rules = { r = \"unlimited\"; }; } );\n"
        "rules = ( { name = \"r\"; limits = ( { rate = \"1/s\"; } ); } );\n"
        "tiers = [ \"free\", \"pro\" ];\n"));
}

/* ---- files and @include ------------------------------------------------ */

static void
test_include_is_relative_to_the_main_file(void **state)
{
    char          tmpl[] = "/tmp/rl2-config-XXXXXX", path[512], want[512];
    char         *dir = mkdtemp(tmpl);
    rl2_policy_t *p = NULL;
    rl2_err_t     err = { "" };

    (void)state;
    assert_non_null(dir);
    write_file(dir, "main.conf",
               "mode = \"enforce\";\n"
               "@include \"rules.conf\"\n"
               "default = { limits = ( { rate = \"10/s\"; } ); };\n");
    write_file(dir, "rules.conf",
               "# rules live here\n"
               "rules = ( { name = \"inc\"; paths = \"/inc\";\n"
               "            limits = ( { rate = \"1/s\"; } ); } );\n");
    assert_int_equal(chdir("/"), 0); /* as Apache does */
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    if (rl2_config_load(path, &p, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    assert_int_equal(p->n_rules, 1);
    snprintf(want, sizeof(want), "%s/rules.conf", dir);
    assert_string_equal(p->rules[0].file, want);
    assert_int_equal(p->rules[0].line, 2);
    assert_string_equal(p->rules[0].limits.limits[0].file, want);
    assert_string_equal(p->default_rule->file, path);
    assert_int_equal(p->default_rule->line, 3);
    assert_string_equal(p->source, path);
    rl2_policy_free(p);

    /* an error inside the included file names that file and line */
    write_file(dir, "rules.conf",
               "\nrules = ( { name = \"x\"; burst = 1; } );\n");
    assert_int_not_equal(rl2_config_load(path, &p, &err), RL2_OK);
    snprintf(want, sizeof(want),
             "%s/rules.conf:2: unknown key 'burst' in "
             "rule",
             dir);
    assert_null(p);
    assert_non_null(strstr(err.msg, want));

    /* a syntax error inside it too */
    write_file(dir, "rules.conf", "\n\nrules = ( { name = } );\n");
    assert_int_not_equal(rl2_config_load(path, &p, &err), RL2_OK);
    snprintf(want, sizeof(want), "%s/rules.conf:3: syntax error", dir);
    assert_string_equal(err.msg, want);

    /* the string loader takes the include directory as an argument */
    write_file(dir, "rules.conf",
               "rules = ( { name = \"s\"; exempt = true; } );\n");
    assert_int_equal(rl2_config_load_string("@include \"rules.conf\"\n", "str",
                                            dir, &p, &err),
                     RL2_OK);
    assert_string_equal(p->rules[0].name, "s");
    rl2_policy_free(p);

    remove_file(dir, "main.conf");
    remove_file(dir, "rules.conf");
    rmdir(dir);
}

static void
test_missing_and_bad_files_are_errors(void **state)
{
    char          tmpl[] = "/tmp/rl2-config-XXXXXX", path[512], want[600];
    char         *dir = mkdtemp(tmpl);
    rl2_policy_t *p = NULL;
    rl2_err_t     err = { "" };

    (void)state;
    assert_non_null(dir);
    snprintf(path, sizeof(path), "%s/none.conf", dir);
    assert_int_not_equal(rl2_config_load(path, &p, &err), RL2_OK);
    assert_null(p);
    assert_non_null(strstr(err.msg, "none.conf: cannot open: No such file"));

    /* a directory where a file is expected: libconfig 1.5's scanner would
     * call exit() on it, so the loader refuses it first */
    assert_int_not_equal(rl2_config_load(dir, &p, &err), RL2_OK);
    assert_non_null(strstr(err.msg, "not a regular file"));
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    write_file(dir, "main.conf", "\n  @include \"none.conf\"\n");
    assert_int_not_equal(rl2_config_load(path, &p, &err), RL2_OK);
    snprintf(want, sizeof(want),
             "%s:2: @include \"none.conf\": %s/none.conf "
             "is not a regular file",
             path, dir);
    assert_string_equal(err.msg, want);
    snprintf(want, sizeof(want), "%s/none.conf", dir);
    rmdir(want);

    /* and in a nested include */
    write_file(dir, "main.conf", "@include \"a.conf\"\n");
    write_file(dir, "a.conf", "x = 1;\n@include \"sub\"\n");
    snprintf(want, sizeof(want), "%s/sub", dir);
    mkdir(want, 0700);
    assert_int_not_equal(rl2_config_load(path, &p, &err), RL2_OK);
    assert_non_null(strstr(err.msg, "/a.conf:2: @include \"sub\""));
    rmdir(want);

    /* an include that includes itself stops at libconfig's depth limit */
    write_file(dir, "a.conf", "@include \"a.conf\"\n");
    assert_int_not_equal(rl2_config_load(path, &p, &err), RL2_OK);
    assert_null(p);

    remove_file(dir, "main.conf");
    remove_file(dir, "a.conf");
    rmdir(dir);
}

/* ---- malformed policies ------------------------------------------------ */

typedef struct {
    const char *what;
    const char *text;
    int         line;
    const char *message;
} bad_case_t;

#define LIM(body) "rules = ( { name = \"r\"; limits = ( { " body " } ); } );\n"

static const bad_case_t bad_cases[] = {
    { "syntax error", "mode = \"enforce\";\nmatch = ;\n", 2, "syntax error" },
    { "unknown top-level key", "\nmodes = \"enforce\";\n", 2,
      "unknown key 'modes' in the policy; expected one of: mode, match," },
    { "unknown key in limit", LIM("rate = \"5/min\"; burts = 3;"), 1,
      "unknown key 'burts' in limit; expected one of: name, rate, "
      "algorithm, burst, cost, key, overflow, limit" },
    { "wrong type",
      LIM("rate = \"5/min\"; algorithm = \"token_bucket\"; "
          "burst = \"10\";"),
      1, "'burst' must be an integer" },
    { "rate not a string", LIM("rate = 5;"), 1, "'rate' must be a string" },
    { "bad rate unit", LIM("rate = \"5/fortnight\";"), 1,
      "invalid rate \"5/fortnight\": unknown unit" },
    { "zero rate", LIM("rate = \"0/min\";"), 1, "must be at least 1" },
    { "count overflowing 64-bit arithmetic",
      LIM("rate = \"9223372036854775807/1s\"; algorithm = \"fixed_window\";"),
      1, "rate 9223372036854775807/1s overflows 64-bit arithmetic" },
    { "window overflowing 64 bits", LIM("rate = \"5/9223372036854775807s\";"),
      1, "window overflows 64-bit microseconds" },
    { "count too large for 64 bits", LIM("rate = \"99999999999999999999/s\";"),
      1, "invalid rate \"99999999999999999999/s\": count too large" },
    { "bucket finer than a microsecond",
      LIM("rate = \"9223372036854775807/1s\"; algorithm = \"token_bucket\";"),
      1, "more than one unit per microsecond" },
    { "burst on fixed_window",
      LIM("rate = \"5/min\"; algorithm = \"fixed_window\"; burst = 2;"), 1,
      "'burst' is only for token_bucket and leaky_bucket" },
    { "concurrency without limit", LIM("algorithm = \"concurrency\";"), 1,
      "a concurrency limit needs 'limit'" },
    { "rate on concurrency",
      LIM("algorithm = \"concurrency\"; limit = 2; rate = \"2/s\";"), 1,
      "a concurrency limit takes 'limit' (requests in flight), not 'rate'" },
    { "burst zero",
      LIM("rate = \"5/min\"; algorithm = \"leaky_bucket\"; burst = 0;"), 1,
      "'burst' must be at least 1" },
    { "overflow per month", LIM("rate = \"5/min\"; overflow = \"5/month\";"), 1,
      "'overflow' needs a window in time units" },
    { "limit on a rate algorithm", LIM("rate = \"5/min\"; limit = 5;"), 1,
      "'limit' is only for algorithm concurrency" },
    { "overflow with concurrency",
      LIM("algorithm = \"concurrency\"; limit = 2; overflow = \"2/5min\";"), 1,
      "'overflow' is not allowed with concurrency" },
    { "quota per hour", LIM("rate = \"5/hour\"; algorithm = \"quota\";"), 1,
      "quota needs a rate per day or per month" },
    { "quota per two days", LIM("rate = \"20/2day\"; algorithm = \"quota\";"),
      1, "not \"20/2day\"" },
    { "month without quota", LIM("rate = \"20/month\";"), 1,
      "a rate per month needs algorithm = \"quota\"" },
    { "unknown algorithm", LIM("rate = \"5/min\"; algorithm = \"fast\";"), 1,
      "unknown algorithm \"fast\"; expected one of: token_bucket," },
    { "unknown key scope", LIM("rate = \"5/min\"; key = \"cookie\";"), 1,
      "unknown key \"cookie\"" },
    { "cost zero", LIM("rate = \"5/min\"; cost = 0;"), 1,
      "'cost' must be at least 1" },
    { "cost above the limit", LIM("rate = \"5/min\"; cost = 6;"), 1,
      "between 1 and the limit" },
    { "missing rate", LIM("cost = 1;"), 1, "limit without 'rate'" },
    { "bad overflow", LIM("rate = \"5/min\"; overflow = \"2/5parsecs\";"), 1,
      "'overflow': invalid rate" },
    { "overflow allowance finer than a bucket can drain",
      LIM("rate = \"5/min\"; overflow = \"2000000/1s\";"), 1,
      "bad.conf:1: overflow: token_bucket rate 2000000/1s is more than one "
      "unit per microsecond" },
    { "sliding log too large",
      LIM("rate = \"5000/hour\"; algorithm = \"sliding_log\";"), 1, "4096" },
    { "bad CIDR in trusted_proxies",
      "trusted_proxies = [ \"10.0.0.0/8\",\n \"10.0.0.0/33\" ];\n", 2,
      "invalid prefix in \"10.0.0.0/33\"" },
    { "bad address in whitelist",
      "whitelist = { addresses = \"10.0.0.300\"; };\n", 1,
      "invalid address \"10.0.0.300\"" },
    { "unknown tier in a rule",
      "tiers = [ \"free\" ];\nrules = ( { name = \"r\";\n"
      "  tiers = { gold = \"unlimited\"; }; } );\n",
      3, "unknown tier 'gold' in rule 'r'; declared tiers: free" },
    { "rule tiers without declared tiers",
      "rules = ( { name = \"r\"; tiers = { free = ( ); }; } );\n", 1,
      "no tiers are declared" },
    { "duplicate tier", "tiers = [ \"free\", \"pro\",\n \"free\" ];\n", 2,
      "duplicate tier name 'free'" },
    { "bad tier name", "tiers = [ \"9lives\" ];\n", 1,
      "invalid tier name \"9lives\"" },
    { "unknown default_tier",
      "tiers = [ \"free\" ];\ndefault_tier = \"gold\";\n", 2,
      "default_tier \"gold\" is not a declared tier" },
    { "duplicate rule name",
      "rules = ( { name = \"a\"; exempt = true; },\n"
      "          { name = \"a\"; exempt = true; } );\n",
      2, "duplicate rule name 'a' (first at bad.conf:1)" },
    { "rule without name",
      "rules = (\n { paths = \"/x\"; exempt = true; } );\n", 2,
      "rule without 'name'" },
    { "invalid rule name", "rules = ( { name = \"a b\"; exempt = true; } );\n",
      1, "invalid rule name \"a b\"" },
    { "rule named default",
      "rules = ( { name = \"default\"; exempt = true; } );\n", 1,
      "'default' is reserved" },
    { "exempt with limits",
      "rules = ( { name = \"a\";\n exempt = true; limits = ( ); } );\n", 2,
      "an exempt rule takes no 'limits' or 'tiers'" },
    { "rule without limits", "rules = ( { name = \"a\"; paths = \"/a\"; } );\n",
      1, "rule 'a' has no 'limits', 'tiers' or 'exempt'" },
    { "continue with match all",
      "match = \"all\";\nrules = ( { name = \"a\"; limits = ( );\n"
      "  continue = true; } );\n",
      3, "'continue' means nothing with match" },
    { "continue not a bool",
      "rules = ( { name = \"a\"; continue = \"yes\"; exempt = true; } );\n", 1,
      "'continue' must be true or false" },
    { "bad method",
      "rules = ( { name = \"a\"; exempt = true;\n"
      "  methods = [ \"GET\", \"FETCH\" ]; } );\n",
      2, "unknown method \"FETCH\"" },
    { "empty methods",
      "rules = ( { name = \"a\"; exempt = true; methods = [ ]; } );\n", 1,
      "'methods' must not be empty" },
    { "empty paths",
      "rules = ( { name = \"a\"; exempt = true; paths = [ ]; } );\n", 1,
      "'paths' must not be empty" },
    { "relative path",
      "rules = ( { name = \"a\"; exempt = true;\n"
      "  paths = [ \"/ok\",\n \"api/*\" ]; } );\n",
      3, "invalid path \"api/*\": must start with '/'" },
    { "paths not strings",
      "rules = ( { name = \"a\"; exempt = true; paths = 5; } );\n", 1,
      "'paths' must be a string or a list of strings" },
    { "limits neither list nor unlimited",
      "rules = ( { name = \"a\"; limits = \"lots\"; } );\n", 1,
      "'limits' must be a list of limits" },
    { "too many limits",
      "rules = ( { name = \"a\"; limits = (\n"
      "{rate=\"1/s\";},{rate=\"1/s\";},{rate=\"1/s\";},{rate=\"1/s\";},"
      "{rate=\"1/s\";},{rate=\"1/s\";},{rate=\"1/s\";},{rate=\"1/s\";},"
      "{rate=\"1/s\";},{rate=\"1/s\";},{rate=\"1/s\";},{rate=\"1/s\";},"
      "{rate=\"1/s\";},{rate=\"1/s\";},{rate=\"1/s\";},{rate=\"1/s\";},"
      "{rate=\"1/s\";} ); } );\n",
      1,
      "too many limits in 'limits' (17); at "
      "most 16" },
    { "duplicate limit name",
      LIM("rate = \"1/s\"; }, { name = \"r\"; rate = \"2/s\";"), 1,
      "duplicate limit name 'r'" },
    { "match key in the default rule",
      "default = { paths = \"/x\"; limits = ( ); };\n", 1,
      "unknown key 'paths' in default; expected one of: key, mode, limits" },
    { "ipv6_prefix 0", "ipv6_prefix = 0;\n", 1,
      "'ipv6_prefix' must be between 1 and 128" },
    { "ipv6_prefix 129", "\n\nipv6_prefix = 129;\n", 3,
      "'ipv6_prefix' must be between 1 and 128" },
    { "unknown mode", "mode = \"enforcing\";\n", 1,
      "unknown mode \"enforcing\"" },
    { "unknown rule mode",
      "rules = ( { name = \"a\"; exempt = true; mode = \"on\"; } );\n", 1,
      "unknown mode \"on\"" },
    { "unknown match", "match = \"any\";\n", 1,
      "unknown value \"any\" for 'match'; expected one of: first, all" },
    { "unknown reset", "headers = { reset = \"iso\"; };\n", 1,
      "unknown value \"iso\" for 'reset'; expected one of: epoch, delta" },
    { "unknown key in headers", "headers = { retry = true; };\n", 1,
      "unknown key 'retry' in headers" },
    { "group given a string", "api_key = \"X-API-Key\";\n", 1,
      "'api_key' must be a group" },
    { "unknown key in whitelist", "whitelist = { ips = [ ]; };\n", 1,
      "unknown key 'ips' in whitelist" },
    { "internal variable a client sets (a header)",
      "whitelist = { internal = true;\n"
      "  internal_variable = \"HTTP_X_INTERNAL\"; };\n",
      2,
      "whitelist.internal_variable \"HTTP_X_INTERNAL\" is a variable a "
      "client sets" },
    { "internal variable a client sets, in lower case",
      "whitelist = { internal = true; internal_variable = \"http_x\"; };\n", 1,
      "\"http_x\" is a variable a client sets" },
    { "internal variable a client sets (Content-Length)",
      "whitelist = { internal = true;\n\n"
      "  internal_variable = \"CONTENT_LENGTH\"; };\n",
      3, "\"CONTENT_LENGTH\" is a variable a client sets" },
    { "internal variable with a dash",
      "whitelist = { internal = true; internal_variable = \"RL2-INT\"; };\n", 1,
      "whitelist.internal_variable \"RL2-INT\": letters, digits and '_' "
      "only" },
    { "internal variable starting with a digit",
      "whitelist = { internal = true; internal_variable = \"2X\"; };\n", 1,
      "not starting with a digit" },
    { "empty internal variable",
      "whitelist = { internal = true; internal_variable = \"\"; };\n", 1,
      "'internal_variable' must not be empty" },
    { "internal header without its senders",
      "whitelist = { internal = true;\n"
      "  internal_header = \"X-Internal\"; };\n",
      2,
      "whitelist.internal_header needs 'internal_header_from': the "
      "addresses of the upstreams that set it" },
    { "internal header with no sender",
      "whitelist = { internal = true; internal_header = \"X-Internal\";\n"
      "  internal_header_from = [ ]; };\n",
      2, "'internal_header_from' must not be empty" },
    { "internal header senders without the header",
      "whitelist = { internal = true;\n"
      "  internal_header_from = \"10.0.0.5\"; };\n",
      2,
      "whitelist.internal_header_from means nothing without "
      "internal_header" },
    { "internal header sender not an address",
      "whitelist = { internal = true; internal_header = \"X-I\";\n"
      "  internal_header_from = [ \"10.0.0.5\", \"gateway\" ]; };\n",
      2, "invalid address \"gateway\"" },
    { "internal variable without internal",
      "whitelist = { addresses = \"10.0.0.0/8\";\n"
      "  internal_variable = \"RL2_INTERNAL\"; };\n",
      2, "whitelist.internal_variable means nothing without internal = true" },
    { "internal header with internal = false",
      "whitelist = { internal = false;\n"
      "  internal_header = \"X-Internal\";\n"
      "  internal_header_from = \"10.0.0.5\"; };\n",
      2, "whitelist.internal_header means nothing without internal = true" },
    { "internal not a bool", "whitelist = { internal = \"yes\"; };\n", 1,
      "'internal' must be true or false" },
    { "empty string", "api_key = { header = \"\"; };\n", 1,
      "'header' must not be empty" },
    { "client with two identities",
      "clients = (\n { user = \"u\"; api_key = \"k\"; tier = \"t\"; } );\n", 2,
      "a client needs exactly one of 'user', 'api_key' or 'address'" },
    { "client with no identity", "clients = ( { tier = \"t\"; } );\n", 1,
      "exactly one of" },
    { "client naming unknown rule",
      "rules = ( { name = \"a\"; exempt = true; } );\n"
      "clients = ( { user = \"u\";\n"
      "  rules = { nope = \"unlimited\"; }; } );\n",
      3, "client override names unknown rule 'nope'" },
    { "client naming absent default rule",
      "clients = ( { user = \"u\"; rules = { default = ( ); }; } );\n", 1,
      "unknown rule 'default'" },
    { "client naming unknown tier",
      "tiers = [ \"free\" ];\n"
      "clients = ( { user = \"u\"; tier = \"gold\"; } );\n",
      2, "unknown tier 'gold' for client; declared tiers: free" },
    { "client tier without tiers",
      "clients = ( { api_key = \"k\"; tier = \"pro\"; } );\n", 1,
      "declared tiers: none" },
    { "client with nothing to override",
      "clients = ( { address = \"10.1.2.3\"; } );\n", 1,
      "a client override needs 'tier' or 'rules'" },
    { "client with bad address",
      "clients = ( { address = \"10.1.2.3/40\"; tier = \"x\"; } );\n", 1,
      "invalid prefix" },
    { "unknown key in client",
      "clients = ( { usr = \"u\"; tier = \"x\"; } );\n", 1,
      "unknown key 'usr' in client" },
    { "duplicate client",
      "clients = ( { user = \"u\"; tier = \"t\"; },\n"
      "            { user = \"u\"; tier = \"t\"; } );\ntiers = [ \"t\" ];\n",
      2, "duplicate client: the same user as at bad.conf:1" },
    { "duplicate tier differing in case", "tiers = [ \"pro\", \"Pro\" ];\n", 1,
      "duplicate tier name 'Pro'" },
    { "host with a port",
      "rules = ( { name = \"a\"; exempt = true;\n"
      "  hosts = \"api.example.com:8080\"; } );\n",
      2, "invalid host \"api.example.com:8080\"" },
    { "duplicate setting", "mode = \"off\";\nmode = \"off\";\n", 2,
      "duplicate setting name" },
    { "missing @include", "\n@include \"/nonexistent/rl2-none.conf\"\n", 2,
      "cannot open include file" },
    { "rules not a list", "rules = { name = \"a\"; };\n", 1,
      "'rules' must be a list of groups" },
    { "limit not a group",
      "rules = ( { name = \"a\"; limits = ( \"5/min\" ); } );\n", 1,
      "each limit in 'limits' must be a group" },
    { "overrides: ban_status other than 429 or 403",
      "overrides = {\n  ban_status = 503;\n};\n", 2,
      "overrides: 'ban_status' must be 429 or 403" },
    { "overrides: a relative state_file",
      "overrides = { enabled = true;\n state_file = \"state/x\"; };\n", 2,
      "overrides: 'state_file' must be the absolute path of a file" },
    { "overrides: a directory as state_file",
      "\noverrides = { state_file = \"/var/lib/\"; };\n", 2,
      "overrides: 'state_file' must be the absolute path of a file" },
    { "overrides: enabled not a bool", "overrides = { enabled = 1; };\n", 1,
      "'enabled' must be true or false" },
    { "overrides: unknown key", "overrides = { ban_stauts = 403; };\n", 1,
      "unknown key 'ban_stauts' in overrides; expected one of: enabled, "
      "state_file, audit_file, ban_status" },
    { "overrides: a relative audit_file",
      "overrides = {\n audit_file = \"audit\"; };\n", 2,
      "overrides: 'audit_file' must be the absolute path of a file" },
};

static void
test_malformed_policies_are_refused_with_file_line(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        print_message("  [%02zu] %s\n", i, bad_cases[i].what);
        expect_fail(bad_cases[i].text, "bad.conf", bad_cases[i].line,
                    bad_cases[i].message);
    }
}

/* Every prefix of the valid policy is either valid or refused with a
 * message: truncated files never crash the loader. */
static void
test_truncated_policies_never_crash(void **state)
{
    size_t len = strlen(full_policy);
    char  *buf = malloc(len + 1);

    (void)state;
    assert_non_null(buf);
    for (size_t n = 0; n <= len; n += 7) {
        rl2_policy_t *p = NULL;
        rl2_err_t     err = { "" };

        memcpy(buf, full_policy, n);
        buf[n] = '\0';
        if (rl2_config_load_string(buf, "cut.conf", NULL, &p, &err) == RL2_OK) {
            rl2_policy_free(p);
        }
        else {
            assert_null(p);
            assert_int_equal(strncmp(err.msg, "cut.conf:", 9), 0);
        }
    }
    free(buf);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_policy_top_level_fields),
        cmocka_unit_test(test_full_policy_tiers),
        cmocka_unit_test(test_full_policy_exempt_and_match_keys),
        cmocka_unit_test(test_full_policy_limits_and_default_names),
        cmocka_unit_test(test_full_policy_tier_sets_and_quota),
        cmocka_unit_test(test_full_policy_scopes_int64_and_concurrency),
        cmocka_unit_test(test_full_policy_default_rule),
        cmocka_unit_test(test_full_policy_clients),
        cmocka_unit_test(test_full_policy_max_state_size),
        cmocka_unit_test(test_empty_policy_has_defaults),
        cmocka_unit_test(test_internal_defaults),
        cmocka_unit_test(test_tier_array_and_first_is_default),
        cmocka_unit_test(test_user_override_makes_rule_late),
        cmocka_unit_test(test_overrides_group),
        cmocka_unit_test(test_keys_are_read_in_dependency_order),
        cmocka_unit_test(test_include_is_relative_to_the_main_file),
        cmocka_unit_test(test_missing_and_bad_files_are_errors),
        cmocka_unit_test(test_malformed_policies_are_refused_with_file_line),
        cmocka_unit_test(test_truncated_policies_never_crash),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
