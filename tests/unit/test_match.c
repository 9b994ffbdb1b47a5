/*
 * test_match.c -- path normalisation, globs, and that no spelling or
 * length of a path lets a request escape the rule written for it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/policy.h"
#include "policy/policy_internal.h"

static void
expect_norm(const char *in, const char *want)
{
    char out[256];

    assert_int_equal(rl2_path_normalise(in, out, sizeof(out), 1), 0);
    assert_string_equal(out, want);
}

static void
test_normalise_spellings(void **state)
{
    (void)state;
    expect_norm("/", "/");
    expect_norm("/api//v2/./x", "/api/v2/x");
    expect_norm("/api/v2/y/../x", "/api/v2/x");
    expect_norm("/%61pi/%76%32/x", "/api/v2/x");
    expect_norm("/../../etc", "/etc");
    expect_norm("/projects/", "/projects/");
    expect_norm("/a/b/..", "/a/");
    expect_norm("/a?x=1", "/a");
    /* Decoded once, as nginx and the frameworks behind it route: %2F
     * separates segments, and ".." that way is resolved too. */
    expect_norm("/a%2Fb", "/a/b");
    expect_norm("/x/..%2Fauth/login", "/auth/login");
    expect_norm("/docs/..%2Fapi/v2/generation/generate",
                "/api/v2/generation/generate");
    expect_norm("/%2e%2e/%2E%2E/admin", "/admin");
    expect_norm("/a/%252e%252e/b", "/a/%2e%2e/b"); /* once, not twice */
    expect_norm("/a%00b", "/a%00b");               /* no NUL */
    /* ";parameters" are left out, as servlet containers route. */
    expect_norm("/login;jsessionid=1", "/login");
    expect_norm("/x/..a;/admin", "/x/..a/admin");
    expect_norm("/a;b/c;d/", "/a/c/");
}

/* A path the server decoded already (Apache's r->uri) is not decoded
 * again: "%2e%2e" in it is what "%252e%252e" was on the wire. */
static void
test_normalise_decoded_once(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(
        rl2_path_normalise("/app.php/%2e%2e/health", out, sizeof(out), 0), 0);
    assert_string_equal(out, "/app.php/%2e%2e/health");
    assert_int_equal(rl2_path_normalise("/a/%2F/b;x", out, sizeof(out), 0), 0);
    assert_string_equal(out, "/a/%2F/b");
    /* "..;x" is ".." to Tomcat, a name to nginx: no one reading. */
    assert_int_equal(rl2_path_normalise("/x/..;/admin", out, sizeof(out), 0),
                     -2);
    assert_int_equal(rl2_path_normalise("/x/.;j=1/a", out, sizeof(out), 1), -2);
}

static void
test_normalise_refuses_relative(void **state)
{
    char out[16];

    (void)state;
    assert_int_equal(rl2_path_normalise("api", out, sizeof(out), 1), -1);
    assert_int_equal(rl2_path_normalise("*", out, sizeof(out), 1), -1);
}

/* The result fits in strlen(input) + 2 bytes, whatever the input. */
static void
test_normalise_fits_input_plus_two(void **state)
{
    static const char *const inputs[] = {
        "/", "//", "/a/", "/./", "/../", "/a/b/../", "/%41/", "/x//y//"
    };

    (void)state;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t cap = strlen(inputs[i]) + 2;
        char  *out = malloc(cap);

        assert_non_null(out);
        assert_int_equal(rl2_path_normalise(inputs[i], out, cap, 1), 0);
        free(out);
    }
}

static void
test_glob(void **state)
{
    (void)state;
    assert_true(rl2_glob_match("/api/*/export", "/api/v1/export"));
    assert_false(rl2_glob_match("/api/*/export", "/api/v1/x/export"));
    assert_true(rl2_glob_match("/files/**", "/files/a/b/c"));
    assert_true(rl2_glob_match("/x?y", "/xay"));
    assert_false(rl2_glob_match("/x?y", "/x/y"));
    assert_false(rl2_glob_match("/health", "/healthz"));
}

/* ---- a request with a very long path still meets its rule ---- */

static const char *const policy_text =
    "rules = (\n"
    "  { name = \"export\"; methods = [ \"POST\" ];\n"
    "    paths = [ \"/generations/*/export\" ];\n"
    "    limits = ( { rate = \"5/hour\"; } ); },\n"
    "  { name = \"files\"; paths = [ \"/files/**\" ];\n"
    "    limits = ( { rate = \"5/hour\"; } ); }\n"
    ");\n"
    "default = { limits = ( { rate = \"1000/hour\"; } ); };\n";

/* The name of the limit a request meets, peeking at a private zone. */
static const char *
rule_of(const char *method, const char *path)
{
    static char   name[64];
    char          zname[64];
    rl2_policy_t *policy;
    rl2_zone_t   *zone;
    rl2_store_t  *store;
    rl2_request_t req = { 0 };
    rl2_verdict_t v;
    rl2_clock_t   now = { 1000000, 1700000000000000 };
    rl2_err_t     err;

    assert_int_equal(
        rl2_config_load_string(policy_text, "t.conf", NULL, &policy, &err),
        RL2_OK);
    snprintf(zname, sizeof(zname), "/rl2test-%d-match", (int)getpid());
    assert_int_equal(
        rl2_zone_open(zname, 64, policy->max_state_size, 0600, &zone, &err),
        RL2_OK);
    assert_int_equal(rl2_store_local_create(zone, &store, &err), RL2_OK);
    req.method = method;
    req.path = path;
    req.peer_ip = "192.0.2.1";
    assert_int_equal(
        rl2_decide_peek(policy, NULL, 0, store, &req, &now, &v, &err), RL2_OK);
    assert_int_equal(v.n_layers, 1);
    snprintf(name, sizeof(name), "%s", v.layers[0].limit->name);
    rl2_store_destroy(store);
    rl2_zone_close(zone);
    rl2_zone_unlink(zname, &err);
    rl2_policy_free(policy);
    return name;
}

/* Path of n bytes: prefix + a long segment (or "/./" padding) + suffix. */
static char *
long_path(const char *prefix, const char *fill, size_t times,
          const char *suffix)
{
    size_t len = strlen(prefix) + strlen(fill) * times + strlen(suffix);
    char  *p = malloc(len + 1);

    assert_non_null(p);
    strcpy(p, prefix);
    for (size_t i = 0; i < times; i++) {
        strcat(p, fill);
    }
    strcat(p, suffix);
    return p;
}

static void
test_long_segment_still_matches(void **state)
{
    char *p = long_path("/generations/", "a", 20000, "/export");

    (void)state;
    assert_string_equal(rule_of("POST", p), "export");
    free(p);
}

static void
test_dot_padding_still_matches(void **state)
{
    char *p = long_path("/files", "/.", 5000, "/x");

    (void)state;
    assert_string_equal(rule_of("GET", p), "files");
    free(p);
}

static void
test_short_paths_match(void **state)
{
    (void)state;
    assert_string_equal(rule_of("POST", "/generations/g1/export"), "export");
    assert_string_equal(rule_of("GET", "/files//a/../b"), "files");
    assert_string_equal(rule_of("GET", "/other"), "default");
}

/* Method names to bits: exact and case-sensitive (RFC 9110), unknown
 * and near-misses give 0 (the rule's "other"). */
static void
test_method_bits(void **state)
{
    static const struct {
        const char *name;
        unsigned    bit;
    } cases[] = {
        { "GET", RL2_METHOD_GET },
        { "HEAD", RL2_METHOD_HEAD },
        { "POST", RL2_METHOD_POST },
        { "PUT", RL2_METHOD_PUT },
        { "DELETE", RL2_METHOD_DELETE },
        { "PATCH", RL2_METHOD_PATCH },
        { "OPTIONS", RL2_METHOD_OPTIONS },
        { "CONNECT", RL2_METHOD_CONNECT },
        { "TRACE", RL2_METHOD_TRACE },
        { "get", RL2_METHOD_GET },
        { "pOsT", RL2_METHOD_POST },
        { "GETS", 0 },
        { "GE", 0 },
        { "P", 0 },
        { "PO", 0 },
        { "PROPFIND", 0 },
        { "", 0 },
        { "HEADER", 0 },
        { "PATC", 0 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(rl2_method_bit(cases[i].name), cases[i].bit);
    }
}

/* Case and a trailing slash are spellings too: a backend that routes
 * without them must not see a request that stepped around its rule. */
static void
test_case_and_trailing_slash(void **state)
{
    (void)state;
    assert_true(rl2_glob_match("/api/*/export", "/API/v1/Export"));
    assert_true(rl2_glob_match("/auth/login", "/auth/login/"));
    assert_true(rl2_glob_match("/projects/", "/projects"));
    assert_true(rl2_glob_match("/api/*", "/api/x/"));
    assert_true(rl2_glob_match("/files/**", "/FILES/a"));
    assert_false(rl2_glob_match("/auth/login", "/auth/login//"));
    assert_false(rl2_glob_match("/auth/login", "/auth/loginx"));
    assert_false(rl2_glob_match("/api/*", "/api/x/y"));
    assert_string_equal(rule_of("POST", "/Generations/g1/EXPORT/"), "export");
    assert_string_equal(rule_of("GET", "/x/%2e%2e/FILES/./a"), "files");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_bits),
        cmocka_unit_test(test_normalise_spellings),
        cmocka_unit_test(test_normalise_decoded_once),
        cmocka_unit_test(test_normalise_refuses_relative),
        cmocka_unit_test(test_normalise_fits_input_plus_two),
        cmocka_unit_test(test_glob),
        cmocka_unit_test(test_short_paths_match),
        cmocka_unit_test(test_long_segment_still_matches),
        cmocka_unit_test(test_dot_padding_still_matches),
        cmocka_unit_test(test_case_and_trailing_slash),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
