/*
 * rl2_decide_test.h -- what the decision's test programs share: a policy
 * loaded from text, decided against a fresh local zone of its own.
 *
 * Included once per test program, after cmocka.h (static functions).
 */
#ifndef RL2_DECIDE_TEST_H
#define RL2_DECIDE_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/store_local.h"

typedef struct {
    rl2_policy_t *policy;
    rl2_zone_t   *zone;
    rl2_store_t  *store;
    char          zname[64];
} fixture_t;

/* The policy `text` (named t.conf) over a zone of `entries` entries named
 * after the program (`tag`) and its pid. */
static int
setup_sized(void **state, const char *text, uint32_t entries, const char *tag)
{
    fixture_t *f = calloc(1, sizeof(*f));
    rl2_err_t  err;

    assert_non_null(f);
    assert_int_equal(
        rl2_config_load_string(text, "t.conf", NULL, &f->policy, &err), RL2_OK);
    snprintf(f->zname, sizeof(f->zname), "/rl2test-%d-%s", (int)getpid(), tag);
    assert_int_equal(rl2_zone_open(f->zname, entries, f->policy->max_state_size,
                                   0600, &f->zone, &err),
                     RL2_OK);
    assert_int_equal(rl2_store_local_create(f->zone, &f->store, &err), RL2_OK);
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
    rl2_zone_unlink(f->zname, &err);
    rl2_policy_free(f->policy);
    free(f);
    return 0;
}

#endif /* RL2_DECIDE_TEST_H */
