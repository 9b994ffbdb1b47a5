/*
 * test_explain_rules.c -- rl2_decide_explain_rules, the rules of a
 * request without a store (ratelimit2ctl coverage asks it for each line
 * of a log): the same rules, in the same order, as rl2_decide_explain
 * finds; the path normalised as every front end's is (dot segments,
 * double slashes, escapes decoded once, ;parameters); a dot segment with
 * a ;parameter refused as rl2_decide refuses it; hosts, methods, an
 * exempt rule, a rule in mode off, the default rule; and one rl2_explain_t
 * reused from request to request keeps nothing of the one before.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ratelimit2/explain.h"

#include "rl2_decide_test.h"

static const char *const policy_text =
    "rules = (\n"
    " { name = \"login\"; methods = [ \"POST\" ];\n"
    "   paths = [ \"/auth/login\" ]; continue = true;\n"
    "   limits = ( { rate = \"5/min\"; } ); },\n"
    " { name = \"auth\"; methods = [ \"POST\" ]; paths = [ \"/auth/**\" ];\n"
    "   limits = ( { rate = \"10/min\"; } ); },\n"
    " { name = \"static\"; paths = [ \"/static/**\" ]; exempt = true; },\n"
    " { name = \"legacy\"; paths = [ \"/legacy/**\" ]; mode = \"off\";\n"
    "   limits = ( { rate = \"1/min\"; } ); },\n"
    " { name = \"api\"; hosts = [ \"api.example.com\" ];\n"
    "   paths = [ \"/v1/**\" ];\n"
    "   limits = ( { rate = \"100/min\"; } ); }\n"
    ");\n"
    "default = { limits = ( { rate = \"1000/hour\"; } ); };\n";

typedef struct {
    const char *method;
    const char *path;
    const char *host;
    const char *want_path;  /* normalised */
    const char *want_rules; /* names, comma-separated */
    int         exempt;
} case_t;

static const case_t cases[] = {
    { "POST", "/auth/login", NULL, "/auth/login", "login,auth", 0 },
    { "POST", "/x/../auth//./login?next=/", NULL, "/auth/login", "login,auth",
      0 },
    { "POST", "/auth/%6cogin;jsessionid=1", NULL, "/auth/login", "login,auth",
      0 },
    { "POST", "/auth%2Fregister", NULL, "/auth/register", "auth", 0 },
    { "GET", "/auth/login", NULL, "/auth/login", "default", 0 },
    { "GET", "/static/app.js", NULL, "/static/app.js", "static", 1 },
    { "DELETE", "/legacy/x", NULL, "/legacy/x", "legacy", 0 },
    { "GET", "/v1/items/7", "api.example.com", "/v1/items/7", "api", 0 },
    { "GET", "/v1/items/7", "www.example.com", "/v1/items/7", "default", 0 },
    { "GET", "/v1/items/7", NULL, "/v1/items/7", "default", 0 },
};

static int
setup(void **state)
{
    return setup_sized(state, policy_text, 1024, "xrules");
}

static void
names(const rl2_explain_t *x, char *buf, size_t size)
{
    size_t n = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < x->n_rules && n < size; i++) {
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? "," : "",
                              x->rules[i].rule->name);
    }
}

static void
test_rules_as_explain_finds_them(void **state)
{
    fixture_t     *f = *state;
    rl2_policy_t  *p = f->policy;
    rl2_explain_t *x = malloc(sizeof(*x)), *full = malloc(sizeof(*full));
    rl2_clock_t    now;
    rl2_err_t      err;
    char           got[256], want[256];

    assert_non_null(x);
    assert_non_null(full);
    rl2_clock_now(&now);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const case_t *c = &cases[i];
        rl2_request_t req = { .method = c->method,
                              .path = c->path,
                              .host = c->host,
                              .peer_ip = "192.0.2.1" };

        assert_int_equal(rl2_decide_explain_rules(p, &req, x, &err), RL2_OK);
        assert_string_equal(x->path, c->want_path);
        names(x, got, sizeof(got));
        if (strcmp(got, c->want_rules) != 0) {
            fail_msg("%s %s: rules %s, not %s", c->method, c->path, got,
                     c->want_rules);
        }
        assert_int_equal(x->exempt, c->exempt);
        for (size_t k = 0; k < x->n_rules; k++) {
            assert_int_equal(x->rules[k].mode, x->rules[k].rule == p->rules + 3
                                                   ? RL2_MODE_OFF
                                                   : RL2_MODE_ENFORCE);
        }
        /* rl2_decide_explain, which reads the store, finds the same. */
        assert_int_equal(
            rl2_decide_explain(p, f->store, &req, &now, full, &err), RL2_OK);
        names(full, want, sizeof(want));
        assert_string_equal(got, want);
        assert_string_equal(x->path, full->path);
    }
    free(full);
    free(x);
}

/* "..;x" is ".." to a servlet container and a name to nginx: rl2_decide
 * refuses the request, and so does this. */
static void
test_ambiguous_dot_segment(void **state)
{
    fixture_t     *f = *state;
    rl2_explain_t *x = malloc(sizeof(*x));
    rl2_request_t  req = { .method = "POST",
                           .path = "/x/..;/auth/login",
                           .peer_ip = "192.0.2.1" };
    rl2_err_t      err;

    assert_non_null(x);
    assert_int_equal(rl2_decide_explain_rules(f->policy, &req, x, &err),
                     RL2_ERR_REQUEST);
    assert_non_null(strstr(err.msg, ";parameter"));
    free(x);
}

/* Without a default rule, a path no rule names has none. */
static void
test_no_rule(void **state)
{
    rl2_policy_t  *p = NULL;
    rl2_explain_t *x = malloc(sizeof(*x));
    rl2_request_t  one = { .method = "GET", .path = "/one", .peer_ip = "::1" };
    rl2_request_t  two = { .method = "GET", .path = "/two", .peer_ip = "::1" };
    rl2_err_t      err;

    (void)state;
    assert_int_equal(rl2_config_load_string("rules = ( { name = \"one\"; "
                                            "paths = [ \"/one\" ];\n"
                                            "  limits = ( { rate = "
                                            "\"1/min\"; } ); } );\n",
                                            "t.conf", NULL, &p, &err),
                     RL2_OK);
    assert_non_null(x);
    assert_int_equal(rl2_decide_explain_rules(p, &one, x, &err), RL2_OK);
    assert_int_equal(x->n_rules, 1);
    assert_int_equal(rl2_decide_explain_rules(p, &two, x, &err), RL2_OK);
    assert_int_equal(x->n_rules, 0);
    assert_int_equal(x->exempt, 0);
    assert_string_equal(x->path, "/two");
    free(x);
    rl2_policy_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rules_as_explain_finds_them, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ambiguous_dot_segment, setup,
                                        teardown),
        cmocka_unit_test(test_no_rule),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
