/*
 * test_variants.c -- experiments in a rule (config_variants.c,
 * decide/variant.c): the loader's errors with file:line (a challenger
 * counted in the bound of limits per request); 10,000 clients
 * split 90/10 and 50/30/20 within two points of the weights; a client's
 * variant the same under two separately loaded policies (two servers, a
 * restart) and another seed moving some; variants counting on keys of
 * their own; the X-RateLimit-Variant header; and a challenger whose
 * would-deny count (verdicts and metric) equals exactly the refusals of
 * a policy that enforces its limits, while refusing nothing itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#define TEST_CONF_FILE "v.conf"
#include "rl2_config_test.h"
#include "rl2_decide_test.h"
#include "ratelimit2/headers.h"
#include "ratelimit2/metrics.h"
#include "obs/metrics_internal.h"
#include "decide/decide_internal.h"

static const rl2_clock_t now = { .mono_us = 1000 * RL2_US_PER_S,
                                 .wall_us = 1700000000 * RL2_US_PER_S };

#define SPLIT_90_10 \
    "rules = ( { name = \"api\"; paths = [ \"/api/*\" ]; variant_by = " \
    "\"ip\";\n" \
    "  variants = ( { name = \"A\"; weight = 90; limits = ( { rate = " \
    "\"100/m\"; } ); },\n" \
    "               { name = \"B\"; weight = 10; limits = ( { rate = " \
    "\"150/m\"; } ); } ); } );\n"

/* ---- the loader ---- */

static void
test_loader_errors(void **state)
{
    (void)state;
    expect_fail("rules = ( { name = \"a\"; limits = ( { rate = \"1/m\"; } );\n"
                "  variants = ( { name = \"A\"; weight = 1; limits = ( { rate "
                "= \"1/m\"; } ); },\n"
                "    { name = \"B\"; weight = 1; limits = ( { rate = "
                "\"1/m\"; } ); } ); } );\n",
                "v.conf", 2, "both 'variants' and 'limits'");
    expect_fail("rules = ( { name = \"a\";\n"
                "  variants = ( { name = \"A\"; weight = 1; limits = ( { rate "
                "= \"1/m\"; } ); } ); } );\n",
                "v.conf", 2, "it needs 2 to 16");
    expect_fail("rules = ( { name = \"a\"; variants = (\n"
                "  { name = \"A\"; weight = 1; limits = ( { rate = \"1/m\"; } "
                "); },\n"
                "  { name = \"B\"; weight = 0; limits = ( { rate = \"1/m\"; } "
                "); } ); } );\n",
                "v.conf", 3, "'weight' must be from 1 to 10000");
    expect_fail("rules = ( { name = \"a\"; variants = (\n"
                "  { name = \"A\"; weight = 10001; limits = ( { rate = "
                "\"1/m\"; } ); },\n"
                "  { name = \"B\"; weight = 1; limits = ( { rate = \"1/m\"; } "
                "); } ); } );\n",
                "v.conf", 2, "'weight' must be from 1 to 10000");
    expect_fail("rules = ( { name = \"a\"; variants = (\n"
                "  { name = \"A\"; weight = 1; limits = ( { rate = \"1/m\"; } "
                "); },\n"
                "  { name = \"A\"; weight = 1; limits = ( { rate = \"1/m\"; } "
                "); } ); } );\n",
                "v.conf", 3, "duplicate variant name 'A'");
    expect_fail("rules = ( { name = \"a\"; variants = (\n"
                "  { name = \"A B\"; weight = 1; limits = ( { rate = \"1/m\"; "
                "} ); },\n"
                "  { name = \"B\"; weight = 1; limits = ( { rate = \"1/m\"; } "
                "); } ); } );\n",
                "v.conf", 2, "invalid variant name \"A B\"");
    expect_fail("rules = ( { name = \"a\"; variants = (\n"
                "  { name = \"abcdefghijklmnop\"; weight = 1; limits = ( { "
                "rate = \"1/m\"; } ); },\n"
                "  { name = \"B\"; weight = 1; limits = ( { rate = \"1/m\"; } "
                "); } ); } );\n",
                "v.conf", 2, "invalid variant name");
    expect_fail("rules = ( { name = \"a\"; variants = (\n"
                "  { name = \"A\"; weight = 1; },\n"
                "  { name = \"B\"; weight = 1; limits = ( { rate = \"1/m\"; } "
                "); } ); } );\n",
                "v.conf", 2, "variant 'A' without 'limits'");
    expect_fail("rules = ( { name = \"a\"; variant_by = \"cookie\";\n"
                "  variants = ( { name = \"A\"; weight = 1; limits = ( { rate "
                "= \"1/m\"; } ); },\n"
                "    { name = \"B\"; weight = 1; limits = ( { rate = "
                "\"1/m\"; } ); } ); } );\n",
                "v.conf", 1, "unknown value \"cookie\" for 'variant_by'");
    expect_fail("rules = ( { name = \"a\"; limits = ( { rate = \"1/m\"; } );\n"
                "  variant_by = \"ip\"; } );\n",
                "v.conf", 2, "'variant_by' without 'variants'");
    expect_fail("tiers = [ \"free\" ];\n"
                "rules = ( { name = \"a\"; tiers = { free = ( { rate = "
                "\"1/m\"; } ); };\n"
                "  variants = ( { name = \"A\"; weight = 1; limits = ( { rate "
                "= \"1/m\"; } ); },\n"
                "    { name = \"B\"; weight = 1; limits = ( { rate = "
                "\"1/m\"; } ); } ); } );\n",
                "v.conf", 3, "both 'variants' and 'tiers'");
    expect_fail("rules = ( { name = \"a\"; limits = ( { rate = \"1/m\"; } );\n"
                "  challenger = { }; } );\n",
                "v.conf", 2, "'challenger' without 'limits'");
    expect_fail("rules = ( { name = \"a\"; limits = ( { rate = \"1/m\"; } );\n"
                "  challenger = { limits = ( { rate = \"1/m\"; weight = 2; } "
                "); }; } );\n",
                "v.conf", 2, "weight");
    /* A challenger's limits come beside the enforced ones. */
    expect_fail("rules = ( { name = \"a\"; limits = (\n"
                "  { name = \"l1\"; rate = \"1/m\"; }, { name = \"l2\"; rate "
                "= \"2/m\"; },\n"
                "  { name = \"l3\"; rate = \"3/m\"; }, { name = \"l4\"; rate "
                "= \"4/m\"; },\n"
                "  { name = \"l5\"; rate = \"5/m\"; }, { name = \"l6\"; rate "
                "= \"6/m\"; },\n"
                "  { name = \"l7\"; rate = \"7/m\"; }, { name = \"l8\"; rate "
                "= \"8/m\"; },\n"
                "  { name = \"l9\"; rate = \"9/m\"; }, { name = \"l10\"; rate "
                "= \"10/m\"; },\n"
                "  { name = \"l11\"; rate = \"11/m\"; }, { name = \"l12\"; "
                "rate = \"12/m\"; },\n"
                "  { name = \"l13\"; rate = \"13/m\"; }, { name = \"l14\"; "
                "rate = \"14/m\"; },\n"
                "  { name = \"l15\"; rate = \"15/m\"; }, { name = \"l16\"; "
                "rate = \"16/m\"; } );\n"
                "  challenger = { limits = ( { rate = \"1/s\"; } ); }; } );\n",
                "v.conf", 1, "to 17 limits, more than the 16");
    expect_fail("rules = ( { name = \"a\"; exempt = true;\n"
                "  challenger = { limits = ( { rate = \"1/m\"; } ); }; } );\n",
                "v.conf", 1, "an exempt rule takes no");
}

/* What loads: the default rule may hold variants and a challenger; the
 * weights add up; an unnamed limit of a variant keeps the rule's name
 * (what the headers show) on keys of its own. */
static void
test_loads(void **state)
{
    rl2_policy_t     *p;
    const rl2_rule_t *d;

    (void)state;
    p = load_ok("experiment_seed = \"spring\";\n"
                "default = { variant_by = \"api_key\"; variants = (\n"
                "  { name = \"ctl\"; weight = 7; limits = ( { rate = \"1/s\"; "
                "} ); },\n"
                "  { name = \"x-2\"; weight = 3; limits = ( { rate = "
                "\"1/s\"; } ); } );\n"
                "  challenger = { limits = ( { rate = \"1/m\"; } ); }; };\n");
    d = p->default_rule;
    assert_non_null(d);
    assert_int_equal(d->n_variants, 2);
    assert_int_equal(d->variant_total, 10);
    assert_int_equal(d->variants[0].upto, 7);
    assert_int_equal(d->variant_by, RL2_VARIANT_BY_APIKEY);
    assert_int_equal(d->challenger.n, 1);
    assert_string_equal(d->variants[1].limits.limits[0].name, "default");
    assert_memory_not_equal(&d->variants[0].limits.limits[0].key_seed,
                            &d->challenger.limits[0].key_seed,
                            sizeof(rl2_hash_key_t));
    rl2_policy_free(p);
}

/* ---- the split ---- */

static void
request(const char *ip, const char *user, rl2_request_t *req)
{
    *req = (rl2_request_t){
        .method = "GET", .path = "/api/x", .peer_ip = ip, .user = user
    };
}

static void
client_ip(unsigned i, char *buf, size_t size)
{
    snprintf(buf, size, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255,
             i & 255);
}

/* The variant rl2_decide gives client i (an address) under f's policy. */
static const char *
decided_variant(fixture_t *f, unsigned i)
{
    static rl2_verdict_t v;
    rl2_request_t        req;
    rl2_err_t            err;
    char                 ip[32];

    client_ip(i, ip, sizeof(ip));
    request(ip, NULL, &req);
    rl2_verdict_init(&v);
    assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                RL2_PHASE_ALL, &now, &v, &err),
                     RL2_OK);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    assert_non_null(rl2_verdict_variant(&v));
    return rl2_verdict_variant(&v);
}

/* 10,000 clients: each variant's share within 2 points of its weight. */
static void
split(const char *text, const char *const *names, const unsigned *pct, size_t n)
{
    void      *state;
    unsigned   count[8] = { 0 };
    fixture_t *f;

    setup_sized(&state, text, 32768, "split");
    f = state;
    for (unsigned i = 0; i < 10000; i++) {
        const char *name = decided_variant(f, i);
        size_t      k = 0;

        while (k < n && strcmp(names[k], name) != 0) {
            k++;
        }
        assert_true(k < n);
        count[k]++;
    }
    for (size_t k = 0; k < n; k++) {
        /* Within 2 points: |count - pct * 100| <= 200 of 10,000. */
        int diff = (int)count[k] - (int)pct[k] * 100;

        printf("  variant %s: %u of 10000 (weight %u%%)\n", names[k], count[k],
               pct[k]);

        if (diff > 200 || diff < -200) {
            fail_msg("variant %s: %u of 10000, weight %u%%", names[k], count[k],
                     pct[k]);
        }
    }
    teardown(&state);
}

static void
test_split_90_10(void **state)
{
    static const char *const names[] = { "A", "B" };
    static const unsigned    pct[] = { 90, 10 };

    (void)state;
    split(SPLIT_90_10, names, pct, 2);
}

static void
test_split_three_ways(void **state)
{
    static const char *const names[] = { "one", "two", "three" };
    static const unsigned    pct[] = { 50, 30, 20 };

    (void)state;
    split("rules = ( { name = \"api\"; variant_by = \"ip\"; variants = (\n"
          "  { name = \"one\"; weight = 5; limits = ( { rate = \"9/m\"; } ); "
          "},\n"
          "  { name = \"two\"; weight = 3; limits = ( { rate = \"9/m\"; } ); "
          "},\n"
          "  { name = \"three\"; weight = 2; limits = ( { rate = \"9/m\"; } "
          "); } ); } );\n",
          names, pct, 3);
}

/* Two policies loaded apart (two servers, or one before and after a
 * restart) assign every client alike; another experiment_seed does
 * not. */
static void
test_stable_across_loads(void **state)
{
    void      *s1, *s2, *s3;
    fixture_t *a, *b, *c;
    unsigned   moved = 0;

    (void)state;
    setup_sized(&s1, SPLIT_90_10, 4096, "load1");
    setup_sized(&s2, "hash_secret = \"x\";\n" SPLIT_90_10, 4096, "load2");
    setup_sized(&s3, "experiment_seed = \"2nd run\";\n" SPLIT_90_10, 4096,
                "load3");
    a = s1;
    b = s2;
    c = s3;
    for (unsigned i = 0; i < 1000; i++) {
        const char *va = decided_variant(a, i);

        assert_string_equal(va, decided_variant(b, i));
        moved += strcmp(va, decided_variant(c, i)) != 0;
    }
    /* A new seed re-deals the clients: about 18% change variant. */
    assert_true(moved > 50);
    teardown(&s1);
    teardown(&s2);
    teardown(&s3);
}

/* By user: a user keeps the variant whatever address it comes from. */
static void
test_by_user(void **state)
{
    void         *st;
    fixture_t    *f;
    rl2_request_t req;
    rl2_verdict_t v;
    rl2_err_t     err;
    char          first[RL2_VARIANT_NAME_MAX + 1];

    (void)state;
    setup_sized(&st,
                "rules = ( { name = \"api\"; variants = (\n"
                "  { name = \"A\"; weight = 1; limits = ( { rate = \"99/m\"; "
                "key = \"user\"; } ); },\n"
                "  { name = \"B\"; weight = 1; limits = ( { rate = \"99/m\"; "
                "key = \"user\"; } ); } ); } );\n",
                1024, "user");
    f = st;
    /* The variant's limits wait for the user. */
    assert_false(rl2_policy_has_phase(f->policy, NULL, 0, RL2_PHASE_EARLY));
    for (unsigned u = 0; u < 20; u++) {
        char user[16], ip[32];

        snprintf(user, sizeof(user), "user%u", u);
        for (unsigned i = 0; i < 5; i++) {
            client_ip(u * 5 + i, ip, sizeof(ip));
            request(ip, user, &req);
            rl2_verdict_init(&v);
            assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                        RL2_PHASE_ALL, &now, &v, &err),
                             RL2_OK);
            assert_non_null(rl2_verdict_variant(&v));
            if (i == 0) {
                snprintf(first, sizeof(first), "%s", rl2_verdict_variant(&v));
            }
            assert_string_equal(first, rl2_verdict_variant(&v));
        }
    }
    teardown(&st);
}

/* Two variants whose limits have the same name, rate and key ("route":
 * one counter for everyone) still count apart. */
static void
test_separate_keys(void **state)
{
    void             *st;
    fixture_t        *f;
    const rl2_rule_t *rule;
    unsigned          in[2] = { 0, 0 }, found = 0;
    char              ip[2][32];

    (void)state;
    setup_sized(
        &st,
        "rules = ( { name = \"api\"; variant_by = \"ip\"; variants = (\n"
        "  { name = \"A\"; weight = 1; limits = ( { name = \"l\"; "
        "rate = \"3/m\"; key = \"route\"; } ); },\n"
        "  { name = \"B\"; weight = 1; limits = ( { name = \"l\"; "
        "rate = \"3/m\"; key = \"route\"; } ); } ); } );\n",
        1024, "keys");
    f = st;
    rule = &f->policy->rules[0];
    assert_memory_not_equal(&rule->variants[0].limits.limits[0].key_seed,
                            &rule->variants[1].limits.limits[0].key_seed,
                            sizeof(rl2_hash_key_t));
    /* One client of each variant. */
    for (unsigned i = 0; found != 3 && i < 1000; i++) {
        char   t[32];
        size_t k;

        client_ip(i, t, sizeof(t));
        k = rl2_variant_of(rule, t, strlen(t));
        if ((found & (1u << k)) == 0) {
            found |= 1u << k;
            snprintf(ip[k], sizeof(ip[k]), "%s", t);
        }
    }
    assert_int_equal(found, 3);
    /* Three each are admitted, the fourth of each refused. */
    for (unsigned round = 0; round < 4; round++) {
        for (unsigned k = 0; k < 2; k++) {
            rl2_request_t req;
            rl2_verdict_t v;
            rl2_err_t     err;

            request(ip[k], NULL, &req);
            rl2_verdict_init(&v);
            assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                        RL2_PHASE_ALL, &now, &v, &err),
                             RL2_OK);
            assert_string_equal(rl2_verdict_variant(&v), k ? "B" : "A");
            in[k] += v.outcome == RL2_OUTCOME_ALLOW;
        }
    }
    assert_int_equal(in[0], 3);
    assert_int_equal(in[1], 3);
    teardown(&st);
}

/* ---- headers ---- */

typedef struct {
    char variant[32];
    char policy[256];
} seen_t;

static void
collect(void *ctx, const char *name, const char *value)
{
    seen_t *s = ctx;

    if (strcmp(name, "X-RateLimit-Variant") == 0) {
        snprintf(s->variant, sizeof(s->variant), "%s", value);
    }
    if (strcmp(name, "RateLimit-Policy") == 0) {
        snprintf(s->policy, sizeof(s->policy), "%s", value);
    }
}

static void
test_variant_header(void **state)
{
    void         *st;
    fixture_t    *f;
    rl2_request_t req;
    rl2_verdict_t v;
    rl2_err_t     err;
    seen_t        seen;
    char          buf[RL2_HEADERS_MAX];
    const char   *name;

    (void)state;
    setup_sized(&st, "headers = { variant = true; };\n" SPLIT_90_10, 1024,
                "hdr");
    f = st;
    request("192.0.2.7", NULL, &req);
    rl2_verdict_init(&v);
    assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                RL2_PHASE_ALL, &now, &v, &err),
                     RL2_OK);
    name = rl2_verdict_variant(&v);
    assert_non_null(name);
    memset(&seen, 0, sizeof(seen));
    assert_true(rl2_headers_render(f->policy, &v, &now, buf, sizeof(buf),
                                   collect, &seen)
                > 0);
    assert_string_equal(seen.variant, name);
    /* The variant's own limit is the one announced. */
    assert_non_null(
        strstr(seen.policy, strcmp(name, "A") == 0 ? "q=100" : "q=150"));
    teardown(&st);
}

/* ---- the challenger ---- */

#define CHALLENGER_A \
    "headers = { variant = true; };\n" \
    "rules = ( { name = \"api\"; limits = ( { rate = \"100/m\"; } );\n" \
    "  challenger = { limits = ( { name = \"tight\"; rate = \"3/m\"; } ); " \
    "}; } );\n"
#define CHALLENGER_B \
    "rules = ( { name = \"api\"; limits = ( { rate = \"100/m\"; },\n" \
    "  { name = \"tight\"; rate = \"3/m\"; } ); } );\n"

typedef struct {
    uint64_t allow, deny;
} chal_t;

static void
chal_count(void *ctx, const rl2_metrics_exp_t *e)
{
    chal_t *c = ctx;

    if (strcmp(e->rule, "api") == 0 && e->variant[0] == '\0') {
        c->allow = e->allowed;
        c->deny = e->denied;
    }
}

static void
test_challenger_matches_enforced(void **state)
{
    void               *sa, *sb;
    fixture_t          *a, *b;
    rl2_metrics_t      *m;
    rl2_metrics_bind_t *bind;
    rl2_metrics_conf_t  conf;
    rl2_err_t           err;
    char                mname[64];
    unsigned            refused_a = 0, refused_b = 0, would = 0, total = 0;
    chal_t              c = { 0, 0 };

    (void)state;
    setup_sized(&sa, CHALLENGER_A, 1024, "chala");
    setup_sized(&sb, CHALLENGER_B, 1024, "chalb");
    a = sa;
    b = sb;
    snprintf(mname, sizeof(mname), "/rl2test-%d-chal.metrics", (int)getpid());
    rl2_metrics_conf_default(&conf);
    assert_int_equal(rl2_metrics_open(mname, 0600, &conf, NULL, NULL, &m, &err),
                     RL2_OK);
    assert_int_equal(rl2_metrics_bind(m, a->policy, NULL, 0, &bind, NULL, &err),
                     RL2_OK);
    /* Client i sends i + 1 requests, over 8 clients, interleaved. */
    for (unsigned round = 0; round < 8; round++) {
        for (unsigned i = round; i < 8; i++) {
            rl2_request_t req;
            rl2_verdict_t va, vb;
            seen_t        seen;
            char          ip[32], buf[RL2_HEADERS_MAX];

            client_ip(i, ip, sizeof(ip));
            request(ip, NULL, &req);
            rl2_verdict_init(&va);
            rl2_verdict_init(&vb);
            assert_int_equal(rl2_decide(a->policy, NULL, 0, a->store, &req,
                                        RL2_PHASE_ALL, &now, &va, &err),
                             RL2_OK);
            assert_int_equal(rl2_decide(b->policy, NULL, 0, b->store, &req,
                                        RL2_PHASE_ALL, &now, &vb, &err),
                             RL2_OK);
            rl2_metrics_record(bind, &va, &now);
            refused_a += va.outcome == RL2_OUTCOME_DENY;
            refused_b += vb.outcome == RL2_OUTCOME_DENY;
            would += va.challenger_denied;
            total++;
            /* Neither the dry-run flag nor the headers tell of it. */
            assert_false(va.dry_run_denied);
            memset(&seen, 0, sizeof(seen));
            rl2_headers_render(a->policy, &va, &now, buf, sizeof(buf), collect,
                               &seen);
            assert_null(strstr(seen.policy, "tight"));
            assert_string_equal(seen.variant, "");
        }
    }
    /* Clients 3..7 send 4..8: 1+2+3+4+5 refusals of 36 requests. */
    assert_int_equal(total, 36);
    assert_int_equal(refused_b, 15);
    assert_int_equal(would, refused_b);
    assert_int_equal(refused_a, 0);
    rl2_metrics_experiments(m, chal_count, &c);
    assert_int_equal(c.deny, refused_b);
    assert_int_equal(c.allow, total - refused_b);
    rl2_metrics_unbind(bind);
    rl2_metrics_close(m);
    rl2_metrics_unlink(mname, &err);
    teardown(&sa);
    teardown(&sb);
}

/* The variants' metric: each request counted under its variant. */
typedef struct {
    uint64_t a, b;
} var_t;

static void
var_count(void *ctx, const rl2_metrics_exp_t *e)
{
    var_t *c = ctx;

    if (strcmp(e->rule, "api") == 0 && strcmp(e->variant, "A") == 0) {
        c->a = e->allowed + e->denied;
    }
    if (strcmp(e->rule, "api") == 0 && strcmp(e->variant, "B") == 0) {
        c->b = e->allowed + e->denied;
    }
}

static void
test_variant_metric(void **state)
{
    void               *st;
    fixture_t          *f;
    rl2_metrics_t      *m;
    rl2_metrics_bind_t *bind;
    rl2_metrics_conf_t  conf;
    rl2_err_t           err;
    char                mname[64];
    unsigned            a = 0;
    var_t               c = { 0, 0 };

    (void)state;
    setup_sized(&st, SPLIT_90_10, 4096, "vmx");
    f = st;
    snprintf(mname, sizeof(mname), "/rl2test-%d-var.metrics", (int)getpid());
    rl2_metrics_conf_default(&conf);
    assert_int_equal(rl2_metrics_open(mname, 0600, &conf, NULL, NULL, &m, &err),
                     RL2_OK);
    assert_int_equal(rl2_metrics_bind(m, f->policy, NULL, 0, &bind, NULL, &err),
                     RL2_OK);
    for (unsigned i = 0; i < 500; i++) {
        rl2_request_t req;
        rl2_verdict_t v;
        char          ip[32];

        client_ip(i, ip, sizeof(ip));
        request(ip, NULL, &req);
        rl2_verdict_init(&v);
        assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                    RL2_PHASE_ALL, &now, &v, &err),
                         RL2_OK);
        rl2_metrics_record(bind, &v, &now);
        a += strcmp(rl2_verdict_variant(&v), "A") == 0;
    }
    rl2_metrics_experiments(m, var_count, &c);
    assert_int_equal(c.a, a);
    assert_int_equal(c.b, 500 - a);
    rl2_metrics_unbind(bind);
    rl2_metrics_close(m);
    rl2_metrics_unlink(mname, &err);
    teardown(&st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loader_errors),
        cmocka_unit_test(test_loads),
        cmocka_unit_test(test_split_90_10),
        cmocka_unit_test(test_split_three_ways),
        cmocka_unit_test(test_stable_across_loads),
        cmocka_unit_test(test_by_user),
        cmocka_unit_test(test_separate_keys),
        cmocka_unit_test(test_variant_header),
        cmocka_unit_test(test_challenger_matches_enforced),
        cmocka_unit_test(test_variant_metric),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
