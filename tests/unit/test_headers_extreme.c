/*
 * test_headers_extreme.c -- the renderer with results at the edge of
 * int64 (a store's answer is not ours to trust): whole seconds rounded
 * up without overflow (found by fuzz_headers).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ratelimit2/config.h"
#include "ratelimit2/headers.h"

static const char *const policy_text =
    "rules = ( { name = \"r\"; paths = [ \"/**\" ];\n"
    "  limits = ( { name = \"l\"; rate = \"10/min\"; } ); } );\n";

typedef struct {
    char retry[32];
    char ratelimit[128];
} seen_t;

static void
sink(void *ctx, const char *name, const char *value)
{
    seen_t *s = ctx;

    if (strcmp(name, "Retry-After") == 0) {
        snprintf(s->retry, sizeof(s->retry), "%s", value);
    }
    else if (strcmp(name, "RateLimit") == 0) {
        snprintf(s->ratelimit, sizeof(s->ratelimit), "%s", value);
    }
}

static void
test_retry_after_near_int64_max(void **state)
{
    rl2_policy_t *policy;
    rl2_verdict_t v;
    rl2_clock_t   now = { 1, 1700000000000000 };
    rl2_err_t     err;
    char          buf[RL2_HEADERS_MAX], body[RL2_BODY_MAX];
    seen_t        seen = { "", "" };

    (void)state;
    assert_int_equal(
        rl2_config_load_string(policy_text, "t.conf", NULL, &policy, &err),
        RL2_OK);
    rl2_verdict_init(&v);
    v.outcome = RL2_OUTCOME_DENY;
    v.n_layers = 1;
    v.shown = 0;
    v.layers[0].limit = &policy->rules[0].limits.limits[0];
    v.layers[0].rule = &policy->rules[0];
    v.layers[0].result.limit = 10;
    v.layers[0].result.remaining = 0;
    v.layers[0].result.reset_us = INT64_MAX;
    v.layers[0].result.retry_after_us = INT64_MAX;
    /* ceil(9223372036854775807 / 10^6) */
    assert_int_equal(rl2_retry_after_s(&v), 9223372036855LL);
    rl2_headers_render(policy, &v, &now, buf, sizeof(buf), sink, &seen);
    assert_string_equal(seen.retry, "9223372036855");
    assert_string_equal(seen.ratelimit, "\"l\";r=0;t=9223372036855");
    assert_true(rl2_body_render(policy, &v, &now, body, sizeof(body))
                < sizeof(body));
    assert_non_null(strstr(body, "\"retry_after\":9223372036855}"));
    v.layers[0].result.retry_after_us = 1000001;
    assert_int_equal(rl2_retry_after_s(&v), 2);
    v.layers[0].result.retry_after_us = 1000000;
    assert_int_equal(rl2_retry_after_s(&v), 1);
    rl2_policy_free(policy);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_near_int64_max),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
