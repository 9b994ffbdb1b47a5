/*
 * test_bound.c -- the loader's bound on what one request can meet
 * (decide/bound.c): a policy one of whose requests could match more than
 * RL2_MAX_RULES rules or RL2_MAX_LAYERS limits is refused with the
 * file:line of the rule that tips it over; rules that cannot meet one
 * request (other methods, hosts, paths; a first-match rule that ends the
 * selection) do not add up; the shipped policies load; and rl2_decide,
 * handed more than it takes by a front end's inline rules, refuses the
 * request rather than let it through with limits unchecked.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/policy.h"

#define TEST_CONF_FILE "t.conf"
#include "rl2_config_test.h"
#include "rl2_decide_test.h"

/* ---- helpers ----------------------------------------------------------- */

/* n limits: "( { name = "PREFIX0"; rate = "1/min"; }, ... )". */
static void
limits_of(char *buf, size_t size, const char *prefix, unsigned n)
{
    size_t len = (size_t)snprintf(buf, size, "(");

    for (unsigned i = 0; i < n && len < size; i++) {
        len += (size_t)snprintf(buf + len, size - len,
                                "%s{ name = \"%s%u\"; rate = \"%u/min\"; }",
                                i ? ", " : " ", prefix, i, i + 1);
    }
    assert_true(len + 3 <= size);
    snprintf(buf + len, size - len, " )");
}

/* A policy: `head` on line 1, "rules = (" on line 2, then one rule a
 * line (rule i on line 3 + i), each the text `rule[i]` gives with its
 * name; ");" after them and `tail` last.  Freed by the caller. */
static char *
policy_of(const char *head, const char *const *rule, unsigned n,
          const char *tail)
{
    size_t size = 4096, len;
    char  *text;

    for (unsigned i = 0; i < n; i++) {
        size += strlen(rule[i]) + 64;
    }
    text = malloc(size);
    assert_non_null(text);
    len = (size_t)snprintf(text, size, "%s\nrules = (\n", head);
    for (unsigned i = 0; i < n; i++) {
        len += (size_t)snprintf(text + len, size - len,
                                "%s{ name = \"r%u\"; %s }\n", i ? "," : " ", i,
                                rule[i]);
    }
    snprintf(text + len, size - len, ");\n%s\n", tail);
    return text;
}

static void
loads(const char *head, const char *const *rule, unsigned n, const char *tail)
{
    char *text = policy_of(head, rule, n, tail);

    rl2_policy_free(load_ok(text));
    free(text);
}

/* Refused, naming rule `at` (its line) and `sub`. */
static void
refused(const char *head, const char *const *rule, unsigned n, const char *tail,
        unsigned at, const char *sub)
{
    char *text = policy_of(head, rule, n, tail);

    expect_fail(text, "t.conf", 3 + (int)at, sub);
    free(text);
}

/* n copies of one rule text. */
static const char **
copies(const char *rule, unsigned n)
{
    const char **r = malloc(n * sizeof(*r));

    assert_non_null(r);
    for (unsigned i = 0; i < n; i++) {
        r[i] = rule;
    }
    return r;
}

/* Two rules of `n` limits each, matching as `a` and `b` say. */
static void
pair(const char *head, const char *a, const char *b, unsigned n, int ok)
{
    char        la[1024], lb[1024], ra[1536], rb[1536];
    const char *rules[2] = { ra, rb };

    limits_of(la, sizeof(la), "a", n);
    limits_of(lb, sizeof(lb), "b", n);
    snprintf(ra, sizeof(ra), "%s limits = %s;", a, la);
    snprintf(rb, sizeof(rb), "%s limits = %s;", b, lb);
    if (ok) {
        loads(head, rules, 2, "");
    }
    else {
        refused(head, rules, 2, "", 1, "more than the 16 one request may have");
    }
}

#define ALL "match = \"all\";"

/* ---- at and over the bound --------------------------------------------- */

static void
test_at_the_bound_loads(void **state)
{
    const char **one = copies("limits = ( { rate = \"5/min\"; } );", 32);
    const char **two = copies("limits = ( { rate = \"5/min\"; }, "
                              "{ name = \"x\"; rate = \"50/hour\"; } );",
                              8);
    const char **exempt = copies("exempt = true;", 32);
    const char **cont = copies("continue = true; "
                               "limits = ( { rate = \"5/min\"; } );",
                               15);

    (void)state;
    /* Sixteen limits, on every request: the most a request takes. */
    loads(ALL, one, 16, "");
    loads(ALL, two, 8, "");
    loads("", cont, 15, "default = { limits = ( { rate = \"9/min\"; } ); };");
    /* Thirty-two rules, every one matching (exempt: no limit). */
    loads(ALL, exempt, 32, "");
    free(one);
    free(two);
    free(exempt);
    free(cont);
}

static void
test_over_the_bound_names_file_line_and_numbers(void **state)
{
    const char **one = copies("limits = ( { rate = \"5/min\"; } );", 17);
    const char **exempt = copies("exempt = true;", 33);
    const char **cont = copies("continue = true; "
                               "limits = ( { rate = \"5/min\"; } );",
                               16);

    (void)state;
    refused(ALL, one, 17, "", 16,
            "rule 'r16' can bring one request to 17 limits, more than the 16 "
            "one request may have (with rules 'r0', 'r1', 'r2' and 13 "
            "others)");
    refused(ALL, exempt, 33, "", 32,
            "rule 'r32' can bring one request to 33 rules, more than the 32");
    /* The default rule tips it over: its line is named (line 20). */
    {
        char *text = policy_of("", cont, 16,
                               "default = { limits = ( { rate = \"9/min\"; } "
                               "); };");

        expect_fail(text, "t.conf", 20,
                    "rule 'default' can bring one request to 17 limits");
        free(text);
    }
    free(one);
    free(exempt);
    free(cont);
}

static void
test_off_and_exempt_rules_add_no_limits(void **state)
{
    const char **r = copies("limits = ( { rate = \"5/min\"; } );", 20);

    (void)state;
    for (unsigned i = 16; i < 20; i++) {
        r[i] = "mode = \"off\"; limits = ( { rate = \"5/min\"; } );";
    }
    loads(ALL, r, 20, "");
    r[19] = "mode = \"dry_run\"; limits = ( { rate = \"5/min\"; } );";
    refused(ALL, r, 20, "", 19, "17 limits");
    free(r);
}

/* ---- what cannot meet one request --------------------------------------- */

static void
test_methods(void **state)
{
    (void)state;
    pair(ALL, "methods = \"GET\";", "methods = \"POST\";", 10, 1);
    pair(ALL, "methods = \"PUT\";", "methods = [ \"DELETE\", \"PATCH\" ];", 10,
         1);
    /* HEAD is read as GET too. */
    pair(ALL, "methods = \"GET\";", "methods = \"HEAD\";", 10, 0);
    pair(ALL, "methods = \"GET\";", "", 10, 0);
    /* A POST with ?_method=DELETE is both. */
    pair(ALL " method_override = true;", "methods = \"PUT\";",
         "methods = \"DELETE\";", 10, 0);
}

static void
test_hosts(void **state)
{
    (void)state;
    pair(ALL, "hosts = \"a.example.com\";", "hosts = \"b.example.com\";", 10,
         1);
    pair(ALL, "hosts = \"*.example.com\";", "hosts = \"*.example.org\";", 10,
         1);
    pair(ALL, "hosts = \"*.example.com\";", "hosts = \"a.example.org\";", 10,
         1);
    pair(ALL, "hosts = \"*.example.com\";", "hosts = \"a.example.com\";", 10,
         0);
    pair(ALL, "hosts = \"A.Example.com\";", "hosts = \"a.example.com\";", 10,
         0);
    pair(ALL, "hosts = [ \"x.org\", \"a.example.com\" ];",
         "hosts = \"a.example.com\";", 10, 0);
    pair(ALL, "hosts = \"a.example.com\";", "", 10, 0);
}

static void
test_paths(void **state)
{
    (void)state;
    pair(ALL, "paths = \"/api/users\";", "paths = \"/api/orders\";", 10, 1);
    pair(ALL, "paths = \"/api/**\";", "paths = \"/admin/**\";", 10, 1);
    pair(ALL, "paths = \"/api/*.json\";", "paths = \"/api/*.xml\";", 10, 1);
    pair(ALL, "paths = \"/api/*/x\";", "paths = \"/api/v1/y\";", 10, 1);
    pair(ALL, "paths = \"/api/**\";", "paths = \"/api/v1/*\";", 10, 0);
    pair(ALL, "paths = \"/api/*/x\";", "paths = \"/api/v1/x\";", 10, 0);
    /* Case and one trailing slash aside, as rules match. */
    pair(ALL, "paths = \"/Api/Users/\";", "paths = \"/api/users\";", 10, 0);
    /* A script path meets its PATH_INFO, unless exact. */
    pair(ALL, "paths = \"/app.php\";", "paths = \"/app.php/admin\";", 10, 0);
    pair(ALL, "paths = \"/app.php\";", "paths = \"/app.php/*\";", 10, 0);
    pair(ALL, "paths = \"/app.php\"; exact = true;",
         "paths = \"/app.php/admin\";", 10, 1);
    pair(ALL, "paths = \"/api/x\";", "", 10, 0);
    /* Each pair of the two rules' lists is tried. */
    pair(ALL, "paths = [ \"/a\", \"/b\" ];", "paths = [ \"/c\", \"/B\" ];", 10,
         0);
}

static void
test_first_match_ends_the_selection(void **state)
{
    (void)state;
    /* The first rule takes every request the second would. */
    pair("", "paths = \"/x\";", "paths = \"/x\";", 10, 1);
    pair("", "", "", 10, 1);
    pair("", "continue = true; paths = \"/x\";", "paths = \"/x\";", 10, 0);
    /* A HEAD /x: GET /x for the first rule, HEAD /x for the second. */
    pair("", "methods = \"GET\"; paths = \"/x\";", "paths = \"/x\";", 10, 0);
    pair("", "methods = [ \"GET\", \"HEAD\" ];", "", 10, 1);
    /* A POST ?_method=GET: the first rule for GET, the second for POST. */
    pair("method_override = true;", "methods = [ \"GET\", \"HEAD\" ];", "", 10,
         0);
}

static void
test_default_rule(void **state)
{
    char        l[1024];
    char        rule[2048], tail[2048];
    const char *rules[1] = { rule };

    (void)state;
    limits_of(l, sizeof(l), "a", 10);
    snprintf(tail, sizeof(tail), "default = { limits = %s; };", l);
    /* match = "all": the default rule only when no rule matched. */
    snprintf(rule, sizeof(rule), "limits = %s;", l);
    loads(ALL, rules, 1, tail);
    /* ... which a HEAD request can be for one reading only. */
    snprintf(rule, sizeof(rule), "methods = \"GET\"; limits = %s;", l);
    {
        char *text = policy_of(ALL, rules, 1, tail);

        expect_fail(text, "t.conf", 5,
                    "rule 'default' can bring one "
                    "request to 20 limits");
        free(text);
    }
    /* match = "first": after a continue rule, the default applies too. */
    snprintf(rule, sizeof(rule), "paths = \"/x\"; limits = %s;", l);
    loads("", rules, 1, tail);
    snprintf(rule, sizeof(rule), "continue = true; limits = %s;", l);
    {
        char *text = policy_of("", rules, 1, tail);

        expect_fail(text, "t.conf", 5, "to 20 limits");
        free(text);
    }
}

/* ---- what one rule adds ------------------------------------------------- */

static void
test_tiers_and_clients_count_their_largest_set(void **state)
{
    char        a[3072], b[2048], t[1024], l[1024], tail[2048];
    const char *rules[2] = { a, b };

    (void)state;
    /* A tier's 12 limits, not the rule's own 8. */
    limits_of(l, sizeof(l), "a", 8);
    limits_of(t, sizeof(t), "t", 12);
    snprintf(a, sizeof(a), "limits = %s; tiers = { pro = %s; };", l, t);
    limits_of(l, sizeof(l), "b", 4);
    snprintf(b, sizeof(b), "limits = %s;", l);
    loads(ALL " tiers = [ \"free\", \"pro\" ];", rules, 2, "");
    limits_of(l, sizeof(l), "b", 5);
    snprintf(b, sizeof(b), "limits = %s;", l);
    refused(ALL " tiers = [ \"free\", \"pro\" ];", rules, 2, "", 1,
            "to 17 limits");

    /* A client's set or the rule's own, never both: an address's
     * override is found in both phases alike, a user's makes the whole
     * rule wait for authentication. */
    limits_of(l, sizeof(l), "a", 10);
    snprintf(a, sizeof(a), "limits = %s;", l);
    limits_of(l, sizeof(l), "b", 5);
    snprintf(b, sizeof(b), "limits = %s;", l);
    limits_of(t, sizeof(t), "c", 11);
    snprintf(tail, sizeof(tail),
             "clients = ( { address = \"10.0.0.0/8\"; rules = { r0 = %s; }; "
             "} );",
             t);
    loads(ALL, rules, 2, tail);
    limits_of(t, sizeof(t), "c", 12);
    snprintf(tail, sizeof(tail),
             "clients = ( { user = \"alice\"; rules = { r0 = %s; }; } );", t);
    refused(ALL, rules, 2, tail, 1,
            "rule 'r1' can bring one request to 17 limits, more than the 16 "
            "one request may have (with rule 'r0')");
}

/* ---- policies of many rules --------------------------------------------- */

/* n rules written by fmt (given i twice), then `last` in the list, then
 * `tail`; loaded, or refused as too many to compare. */
static void
many(const char *head, const char *fmt, unsigned n, const char *last,
     const char *tail, int ok)
{
    size_t size = (size_t)n * 160 + 1024, len;
    char  *text = malloc(size);

    assert_non_null(text);
    len = (size_t)snprintf(text, size, "%s\nrules = (\n", head);
    for (unsigned i = 0; i < n; i++) {
        len += (size_t)snprintf(text + len, size - len, i ? "," : " ");
        len += (size_t)snprintf(text + len, size - len, fmt, i, i);
        len += (size_t)snprintf(text + len, size - len, "\n");
    }
    snprintf(text + len, size - len, "%s);\n%s\n", last, tail);
    if (ok) {
        rl2_policy_free(load_ok(text));
    }
    else {
        expect_fail(text, "t.conf", 3, "cannot bound the rules and limits");
    }
    free(text);
}

static void
test_many_rules(void **state)
{
    const char *catch_all =
        "default = { limits = ( { rate = \"1000/hour\"; } ); };";

    (void)state;
    /* One rule per endpoint under one first segment, one per host, one
     * per first segment, with a rule for every request beside them. */
    many(ALL,
         "{ name = \"e%u\"; paths = \"/api/v1/e%u\"; "
         "limits = ( { rate = \"5/min\"; }, { name = \"x\"; "
         "rate = \"9/hour\"; } ); }",
         3000, ", { name = \"all\"; limits = ( { rate = \"99/min\"; } ); }", "",
         1);
    many(ALL,
         "{ name = \"e%u\"; hosts = \"h%u.example.com\"; "
         "limits = ( { rate = \"5/min\"; } ); }",
         3000, "", catch_all, 1);
    many(ALL,
         "{ name = \"e%u\"; paths = \"/e%u/**\"; "
         "limits = ( { rate = \"5/min\"; } ); }",
         3000, "", catch_all, 1);
    /* First match: one rule of these per request (two for a HEAD). */
    many("",
         "{ name = \"e%u\"; paths = \"/api/*/e%u\"; "
         "limits = ( { rate = \"5/min\"; } ); }",
         5000, "", catch_all, 1);
    /* More rules that may meet the same requests than the loader
     * compares at once: refused, not guessed. */
    many(ALL, "{ name = \"e%u\"; paths = \"/api/*/x%u\"; exempt = true; }",
         4097, "", "", 0);
}

/* ---- the policies this tree ships --------------------------------------- */

static void
test_shipped_policies_load(void **state)
{
    static const char *const files[] = {
        "conf/ratelimit2.conf",
        "conf/demo.conf",
        "conf/examples/saas-api.conf",
        "conf/examples/policy-redis-standalone.conf",
        "conf/examples/policy-redis-unix.conf",
        "conf/examples/policy-redis-sentinel.conf",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        rl2_policy_t *p = NULL;
        rl2_err_t     err = { "" };

        if (rl2_config_load(files[i], &p, &err) != RL2_OK) {
            fail_msg("%s: %s", files[i], err.msg);
        }
        rl2_policy_free(p);
    }
}

/* ---- rl2_decide over the bound: refused, nothing counted ---------------- */

static rl2_status_t
decide(fixture_t *f, const rl2_rule_t *extra, size_t n_extra, unsigned phase,
       rl2_verdict_t *v)
{
    rl2_clock_t   now = { 1000000, 1700000000000000 };
    rl2_request_t req = {
        .method = "GET", .path = "/x", .peer_ip = "192.0.2.1", .user = "alice"
    };
    rl2_err_t err;

    return rl2_decide(f->policy, extra, n_extra, f->store, &req, phase, &now, v,
                      &err);
}

/* The policy's rule: one limit by address of one request a minute
 * (decided early), and fifteen by user (late). */
static int
setup_sixteen(void **state)
{
    char   text[4096];
    size_t len = (size_t)snprintf(
        text, sizeof(text),
        "match = \"all\";\nrules = ( { name = \"r\"; key = \"user\"; "
        "limits = ( { name = \"ip\"; key = \"ip\"; rate = \"1/min\"; }");

    for (unsigned i = 0; i < 15 && len < sizeof(text); i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                ", { name = \"u%u\"; rate = \"5/min\"; }", i);
    }
    assert_true(len + 16 < sizeof(text));
    strcat(text, " ); } );\n");
    return setup_sized(state, text, 256, "bound");
}

static void
test_decide_refuses_over_the_bound(void **state)
{
    fixture_t    *f = *state;
    rl2_policy_t *inline_rules =
        load_ok("rules = ( { name = \"inline\"; key = \"user\"; "
                "limits = ( { name = \"in\"; rate = \"5/min\"; } ); } );");
    rl2_verdict_t v;

    assert_int_equal(f->policy->rules[0].limits.n, 16);
    /* Early: the address limit, counted; late: fifteen plus one inline. */
    rl2_verdict_init(&v);
    assert_int_equal(decide(f, inline_rules->rules, 1, RL2_PHASE_EARLY, &v),
                     RL2_OK);
    assert_int_equal(v.n_layers, 1);
    assert_true(v.layers[0].committed);
    assert_int_equal(decide(f, inline_rules->rules, 1, RL2_PHASE_LATE, &v),
                     RL2_ERR_BOUND);
    assert_false(v.layers[0].committed);
    /* Nothing stays counted: without the inline rule the same request
     * passes, the address limit of one a minute included. */
    rl2_verdict_init(&v);
    assert_int_equal(decide(f, NULL, 0, RL2_PHASE_ALL, &v), RL2_OK);
    assert_int_equal(v.n_layers, 16);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    rl2_policy_free(inline_rules);
}

static void
test_decide_refuses_too_many_rules(void **state)
{
    fixture_t    *f = *state;
    const char  **r = copies("limits = ( );", 32);
    char         *text = policy_of("", r, 32, "");
    rl2_policy_t *inline_rules = load_ok(text);
    rl2_verdict_t v;

    /* The policy's rule and 32 inline ones: 33. */
    rl2_verdict_init(&v);
    assert_int_equal(decide(f, inline_rules->rules, 32, RL2_PHASE_ALL, &v),
                     RL2_ERR_BOUND);
    assert_int_equal(v.n_layers, 0);
    rl2_verdict_init(&v);
    assert_int_equal(decide(f, inline_rules->rules, 31, RL2_PHASE_ALL, &v),
                     RL2_OK);
    rl2_policy_free(inline_rules);
    free(text);
    free(r);
}

/* ---- random policies: what loads never exceeds at run time ----------- */

static uint32_t
rnd(uint64_t *seed, uint32_t n)
{
    *seed = *seed * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(*seed >> 33) % n;
}

static const char *
pick(uint64_t *seed, const char *const *pool, size_t n)
{
    return pool[rnd(seed, (uint32_t)n)];
}

#define NPOOL(a) (sizeof(a) / sizeof((a)[0]))

/* One to two strings of pool as a libconfig list, into buf. */
static size_t
random_list(uint64_t *seed, const char *key, const char *const *pool, size_t n,
            char *buf, size_t size)
{
    unsigned k = 1 + rnd(seed, 2);
    size_t   len = (size_t)snprintf(buf, size, "%s = [", key);

    for (unsigned i = 0; i < k; i++) {
        len += (size_t)snprintf(buf + len, size - len, "%s\"%s\"",
                                i ? ", " : " ", pick(seed, pool, n));
    }
    return len + (size_t)snprintf(buf + len, size - len, " ]; ");
}

/* Up to six limits of a rate never reached, by address or by user (so
 * early, late or both). */
static size_t
random_limits(uint64_t *seed, const char *name, char *buf, size_t size)
{
    unsigned n = rnd(seed, 7);
    size_t   len = (size_t)snprintf(buf, size, "%s = (", name);

    for (unsigned i = 0; i < n; i++) {
        len += (size_t)snprintf(buf + len, size - len,
                                "%s{ name = \"%s%u\"; rate = \"1000000/min\"; "
                                "key = \"%s\"; }",
                                i ? ", " : " ", name, i,
                                rnd(seed, 2) ? "ip" : "user");
    }
    return len + (size_t)snprintf(buf + len, size - len, " ); ");
}

static const char *const rnd_methods[] = { "GET", "HEAD", "POST", "PUT",
                                           "DELETE" };
static const char *const rnd_hosts[] = { "a.test", "b.test", "*.test",
                                         "a.*",    "*",      "A.test" };
static const char *const rnd_paths[] = {
    "/x",     "/x/",        "/X",       "/x/*",       "/x/**", "/y",
    "/y/z",   "/*/z",       "/app.php", "/**",        "/x*",   "/?",
    "/*.php", "/app.php/q", "/",        "/app.php/q*"
};

/* A client `who` overriding one of the n rules. */
static size_t
random_client(uint64_t *seed, unsigned n, const char *who, char *buf,
              size_t size)
{
    char   name[16];
    size_t len;

    snprintf(name, sizeof(name), "r%u", rnd(seed, n));
    len = (size_t)snprintf(buf, size, " { %s; rules = { ", who);
    len += random_limits(seed, name, buf + len, size - len);
    return len + (size_t)snprintf(buf + len, size - len, "}; }");
}

static char *
random_policy(uint64_t *seed)
{
    size_t   size = 16384, len;
    char    *t = malloc(size);
    int      all = (int)rnd(seed, 2);
    unsigned n = 1 + rnd(seed, 12);

    assert_non_null(t);
    len = (size_t)snprintf(t, size,
                           "mode = \"dry_run\"; match = \"%s\"; "
                           "method_override = %s;\nrules = (\n",
                           all ? "all" : "first",
                           rnd(seed, 4) == 0 ? "true" : "false");
    for (unsigned i = 0; i < n; i++) {
        len += (size_t)snprintf(t + len, size - len, "%s{ name = \"r%u\"; ",
                                i ? "," : " ", i);
        if (rnd(seed, 5) < 3) {
            len += random_list(seed, "methods", rnd_methods, NPOOL(rnd_methods),
                               t + len, size - len);
        }
        if (rnd(seed, 5) < 2) {
            len += random_list(seed, "hosts", rnd_hosts, NPOOL(rnd_hosts),
                               t + len, size - len);
        }
        if (rnd(seed, 10) < 7) {
            len += random_list(seed, "paths", rnd_paths, NPOOL(rnd_paths),
                               t + len, size - len);
        }
        if (rnd(seed, 5) == 0) {
            len += (size_t)snprintf(t + len, size - len, "exact = true; ");
        }
        if (!all && rnd(seed, 3) == 0) {
            len += (size_t)snprintf(t + len, size - len, "continue = true; ");
        }
        if (rnd(seed, 20) == 0) {
            len += (size_t)snprintf(t + len, size - len, "exempt = true; }\n");
            continue;
        }
        if (rnd(seed, 20) == 0) {
            len += (size_t)snprintf(t + len, size - len, "mode = \"off\"; ");
        }
        len += random_limits(seed, "limits", t + len, size - len);
        len += (size_t)snprintf(t + len, size - len, "}\n");
    }
    len += (size_t)snprintf(t + len, size - len, ");\n");
    if (rnd(seed, 2)) {
        len += (size_t)snprintf(t + len, size - len, "default = { ");
        len += random_limits(seed, "limits", t + len, size - len);
        len += (size_t)snprintf(t + len, size - len, "};\n");
    }
    if (rnd(seed, 3) == 0) {
        /* A user's entry first: the late phase may find it where the
         * early one found the address's. */
        len += (size_t)snprintf(t + len, size - len, "clients = (");
        len += random_client(seed, n, "user = \"alice\"", t + len, size - len);
        len += (size_t)snprintf(t + len, size - len, ",");
        len += random_client(seed, n, "address = \"10.0.0.0/8\"", t + len,
                             size - len);
        len += (size_t)snprintf(t + len, size - len, ");\n");
    }
    assert_true(len < size);
    return t;
}

static const char *
req_header(void *ctx, const char *name)
{
    return strcasecmp(name, "X-HTTP-Method-Override") == 0 ? ctx : NULL;
}

/* A request from pools of methods, overrides, hosts and paths that meet
 * the policies' globs in every way they can; decided in two phases or
 * one.  Returns rl2_decide's worst answer. */
static rl2_status_t
random_request(fixture_t *f, const rl2_policy_t *p, uint64_t *seed)
{
    static const char *const methods[] = { "GET",    "HEAD",    "POST", "PUT",
                                           "DELETE", "OPTIONS", "BREW" };
    static const char *const overrides[] = { NULL, "GET", "HEAD", "PUT",
                                             "DELETE" };
    static const char *const queries[] = { NULL, "_method=PUT",
                                           "_method=HEAD&_method=DELETE" };
    static const char *const hosts[] = { NULL,        "a.test", "A.TEST.",
                                         "b.test",    "c.test", "a.x",
                                         "a.test:80", "zz" };
    static const char *const paths[] = {
        "/",      "/x",   "/x/",  "/X",         "/x/a",       "/x/a/b",
        "/y",     "/y/z", "/q/z", "/app.php",   "/app.php/q", "/app.php/q/r",
        "/x.php", "/xa",  "/a",   "/APP.PHP/Q/"
    };
    rl2_clock_t   now = { 1000000, 1700000000000000 };
    rl2_request_t req = {
        .method = pick(seed, methods, NPOOL(methods)),
        .query = pick(seed, queries, NPOOL(queries)),
        .host = pick(seed, hosts, NPOOL(hosts)),
        .path = pick(seed, paths, NPOOL(paths)),
        .peer_ip = rnd(seed, 2) ? "10.1.2.3" : "192.0.2.1",
        .user = rnd(seed, 2) ? "alice" : NULL,
        .header = req_header,
        .header_ctx = (void *)pick(seed, overrides, NPOOL(overrides)),
    };
    rl2_verdict_t v;
    rl2_err_t     err;
    rl2_status_t  st;
    const char   *user;

    rl2_verdict_init(&v);
    if (rnd(seed, 2)) {
        return rl2_decide(p, NULL, 0, f->store, &req, RL2_PHASE_ALL, &now, &v,
                          &err);
    }
    /* As Apache decides: the user is known after authentication only. */
    user = req.user;
    req.user = NULL;
    st =
        rl2_decide(p, NULL, 0, f->store, &req, RL2_PHASE_EARLY, &now, &v, &err);
    req.user = user;
    return st != RL2_OK ? st
                        : rl2_decide(p, NULL, 0, f->store, &req, RL2_PHASE_LATE,
                                     &now, &v, &err);
}

/* Many random policies: every one the loader takes is decided for many
 * requests, none of which may go over a bound; some must be refused
 * (the generator reaches the bounds), and most must load. */
static void
test_random_policies_never_exceed(void **state)
{
    fixture_t *f = *state;
    uint64_t   seed = 1;
    unsigned   loaded = 0, refused_n = 0;

    for (unsigned i = 0; i < 600; i++) {
        char         *text = random_policy(&seed);
        rl2_policy_t *p = NULL;
        rl2_err_t     err = { "" };

        if (rl2_config_load_string(text, "t.conf", NULL, &p, &err) != RL2_OK) {
            if (strstr(err.msg, "one request may have") == NULL) {
                fail_msg("unexpected refusal: %s\n%s", err.msg, text);
            }
            refused_n++;
            free(text);
            continue;
        }
        loaded++;
        for (unsigned r = 0; r < 300; r++) {
            rl2_status_t st = random_request(f, p, &seed);

            if (st != RL2_OK) {
                fail_msg("status %d for a loaded policy:\n%s", (int)st, text);
            }
        }
        rl2_policy_free(p);
        free(text);
    }
    print_message("%u random policies loaded, %u refused\n", loaded, refused_n);
    assert_true(refused_n > 0);
    assert_true(loaded > refused_n);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_the_bound_loads),
        cmocka_unit_test(test_over_the_bound_names_file_line_and_numbers),
        cmocka_unit_test(test_off_and_exempt_rules_add_no_limits),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_hosts),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_first_match_ends_the_selection),
        cmocka_unit_test(test_default_rule),
        cmocka_unit_test(test_tiers_and_clients_count_their_largest_set),
        cmocka_unit_test(test_many_rules),
        cmocka_unit_test(test_shipped_policies_load),
        cmocka_unit_test_setup_teardown(test_decide_refuses_over_the_bound,
                                        setup_sixteen, teardown),
        cmocka_unit_test_setup_teardown(test_decide_refuses_too_many_rules,
                                        setup_sixteen, teardown),
        cmocka_unit_test_setup_teardown(test_random_policies_never_exceed,
                                        setup_sixteen, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
