/*
 * test_rule_index.c -- the rule index (rule_index.c) selects exactly the
 * rules a plain scan selects, in the same order, for first-match and
 * all-match policies, whatever the globs (literal first segments,
 * wildcards in the first segment, several paths, no paths, the root) and
 * whatever the path; short policies get no index.
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

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/store_local.h"
#include "policy/policy_internal.h"

static const char *const globs[] = {
    "/api/v1/*",  "/api/**",           "/a*/x", "/ap?/y", "/",
    "/projects/", "/projects/*/files", "/b/**", "/c",     "/c/",
    "/**",        "/d/*/e/**",         "/api",  "/x/y/z", "/*/z",
    "/q/**",
};
static const char *const paths[] = {
    "/",
    "/api",
    "/api/",
    "/api/v1/a",
    "/api/v1/a/b",
    "/apx/y",
    "/ab/x",
    "/app/y",
    "/projects/",
    "/projects",
    "/projects/7/files",
    "/b",
    "/b/c/d",
    "/c",
    "/c/",
    "/d/1/e/f",
    "/x/y/z",
    "/k/z",
    "/q",
    "/q/r",
    "/nothing/here",
    "/api//v1/./a",
    "/API/v1/a",
};

typedef struct {
    rl2_zone_t  *zone;
    rl2_store_t *store;
    char         name[64];
} fixture_t;

static int
setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    rl2_err_t  err;

    snprintf(f->name, sizeof(f->name), "/rl2test-%d-rix", (int)getpid());
    if (f == NULL
        || rl2_zone_open(f->name, 1000, 64, 0600, &f->zone, &err) != RL2_OK
        || rl2_store_local_create(f->zone, &f->store, &err) != RL2_OK) {
        return -1;
    }
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture_t *f = *state;
    rl2_err_t  err;

    rl2_store_destroy(f->store);
    rl2_zone_close(f->zone);
    rl2_zone_unlink(f->name, &err);
    free(f);
    return 0;
}

/* A policy of n rules drawn from the globs with a fixed seed: each rule
 * one to three paths (or none), some methods, some "continue". */
static rl2_policy_t *
policy_of(unsigned n, int match_all, unsigned seed)
{
    size_t        cap = 256 + n * 256, pos;
    char         *text = malloc(cap);
    rl2_policy_t *p = NULL;
    rl2_err_t     err;

    pos = (size_t)snprintf(text, cap, "match = \"%s\";\nrules = (\n",
                           match_all ? "all" : "first");
    for (unsigned i = 0; i < n; i++) {
        unsigned k = (seed = seed * 1103515245u + 12345u) >> 16;
        unsigned np = k % 4;

        pos += (size_t)snprintf(text + pos, cap - pos, "%s{ name = \"r%u\";",
                                i ? "," : "", i);
        if (np > 0) {
            pos += (size_t)snprintf(text + pos, cap - pos, " paths = [");
            for (unsigned j = 0; j < np; j++) {
                pos += (size_t)snprintf(text + pos, cap - pos, "%s\"%s\"",
                                        j ? ", " : "",
                                        globs[(k / 4 + j * 5) % 16]);
            }
            pos += (size_t)snprintf(text + pos, cap - pos, " ];");
        }
        if (k % 5 == 0) {
            pos += (size_t)snprintf(text + pos, cap - pos,
                                    " methods = [ \"POST\" ];");
        }
        if (!match_all && k % 3 == 0) {
            pos += (size_t)snprintf(text + pos, cap - pos, " continue = true;");
        }
        pos += (size_t)snprintf(text + pos, cap - pos,
                                " limits = ( { name = \"l%u\"; "
                                "rate = \"1000/1h\"; } ); }\n",
                                i);
    }
    snprintf(text + pos, cap - pos, ");\n");
    if (rl2_config_load_string(text, "rix.conf", NULL, &p, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    free(text);
    return p;
}

/* The rules a request is checked against, as "r3 r7 ..." (or the error). */
static void
selected(fixture_t *f, const rl2_policy_t *p, const char *method,
         const char *path, char *out, size_t len)
{
    rl2_request_t req = { .method = method,
                          .path = path,
                          .peer_ip = "192.0.2.1" };
    rl2_clock_t   now = { 1000000, 1700000000LL * 1000000 };
    rl2_verdict_t v;
    rl2_err_t     err;
    size_t        pos = 0;

    out[0] = '\0';
    if (rl2_decide_peek(p, NULL, 0, f->store, &req, &now, &v, &err) != RL2_OK) {
        snprintf(out, len, "error: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < v.n_layers && pos < len; i++) {
        pos += (size_t)snprintf(out + pos, len - pos, "%s ",
                                v.layers[i].rule->name);
    }
}

static void
compare(fixture_t *f, rl2_policy_t *p)
{
    static const char *const methods[] = { "GET", "POST" };
    rl2_rule_index_t        *ix = p->rule_index;
    char                     with[2048], without[2048];

    assert_non_null(ix);
    for (size_t m = 0; m < 2; m++) {
        for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
            p->rule_index = ix;
            selected(f, p, methods[m], paths[i], with, sizeof(with));
            p->rule_index = NULL;
            selected(f, p, methods[m], paths[i], without, sizeof(without));
            p->rule_index = ix;
            if (strcmp(with, without) != 0) {
                fail_msg("%s %s: index [%s], scan [%s]", methods[m], paths[i],
                         with, without);
            }
        }
    }
}

static void
test_first_match_same_as_scan(void **state)
{
    for (unsigned seed = 1; seed <= 20; seed++) {
        rl2_policy_t *p = policy_of(40, 0, seed);

        compare(*state, p);
        rl2_policy_free(p);
    }
}

/* All-match: at most 16 layers, so 14 rules (more than the index's
 * threshold, fewer than the layer bound). */
static void
test_all_match_same_as_scan(void **state)
{
    for (unsigned seed = 1; seed <= 20; seed++) {
        rl2_policy_t *p = policy_of(16, 1, seed);

        compare(*state, p);
        rl2_policy_free(p);
    }
}

static void
test_short_policy_has_no_index(void **state)
{
    rl2_policy_t *p = policy_of(15, 0, 7);

    (void)state;
    assert_null(p->rule_index);
    rl2_policy_free(p);
}

/* Ten thousand endpoints: a path's candidates are its own rules and the
 * segment-less ones, not the whole list. */
static void
test_candidates_stay_few(void **state)
{
    size_t                cap = 10000 * 96 + 64, pos;
    char                 *text = malloc(cap);
    rl2_policy_t         *p = NULL;
    rl2_rule_candidates_t k;
    rl2_err_t             err;

    (void)state;
    pos = (size_t)snprintf(text, cap, "rules = (\n");
    for (unsigned i = 0; i < 10000; i++) {
        pos += (size_t)snprintf(text + pos, cap - pos,
                                "%s{ name = \"e%u\"; paths = \"/e%u/**\"; "
                                "limits = ( { rate = \"5/min\"; } ); }\n",
                                i ? "," : "", i, i);
    }
    snprintf(text + pos, cap - pos, ");\n");
    assert_int_equal(rl2_config_load_string(text, "big.conf", NULL, &p, &err),
                     RL2_OK);
    free(text);
    rl2_rule_index_lookup(p->rule_index, "/e4242/x", &k);
    assert_int_equal(k.n_seg, 1);
    assert_int_equal(k.seg[0], 4242);
    assert_int_equal(k.n_any, 0);
    rl2_rule_index_lookup(p->rule_index, "/nope", &k);
    assert_int_equal(k.n_seg, 0);
    rl2_policy_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_match_same_as_scan),
        cmocka_unit_test(test_all_match_same_as_scan),
        cmocka_unit_test(test_short_policy_has_no_index),
        cmocka_unit_test(test_candidates_stay_few),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
