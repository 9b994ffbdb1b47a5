/*
 * rl2_config_test.h -- what the policy loader's test programs share: a
 * policy that must load, and one that must be refused with the exact
 * "file:line: " prefix and without handing back a policy.
 *
 * Included once per test program, after cmocka.h (static functions).
 * load_ok names its text TEST_CONF_FILE, which the program defines first.
 */
#ifndef RL2_CONFIG_TEST_H
#define RL2_CONFIG_TEST_H

#include <stdio.h>
#include <string.h>

#include "ratelimit2/config.h"
#include "ratelimit2/policy.h"

static rl2_policy_t *
load_ok(const char *text)
{
    rl2_policy_t *p = NULL;
    rl2_err_t     err = { "" };

    if (rl2_config_load_string(text, TEST_CONF_FILE, NULL, &p, &err)
        != RL2_OK) {
        fail_msg("policy should load, got: %s", err.msg);
    }
    assert_non_null(p);
    return p;
}

/* Load must fail, leave *out NULL, and say "<file>:<line>: ...sub...". */
static void
expect_fail(const char *text, const char *file, int line, const char *sub)
{
    rl2_policy_t *p = (rl2_policy_t *)&p; /* must be reset to NULL */
    rl2_err_t     err = { "" };
    char          prefix[256];
    rl2_status_t  st = rl2_config_load_string(text, file, NULL, &p, &err);

    snprintf(prefix, sizeof(prefix), "%s:%d: ", file, line);
    if (st == RL2_OK) {
        rl2_policy_free(p);
        fail_msg("policy should be refused (%s):\n%s", sub, text);
    }
    assert_null(p);
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0
        || strstr(err.msg, sub) == NULL) {
        fail_msg("expected \"%s...%s...\", got \"%s\"", prefix, sub, err.msg);
    }
}

#endif /* RL2_CONFIG_TEST_H */
