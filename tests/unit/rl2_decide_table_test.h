/*
 * rl2_decide_table_test.h -- a decision fixture (rl2_decide_test.h)
 * whose policy has a runtime override table of its own, beside its zone:
 * what the tests of runtime overrides and of the adaptive factors share.
 *
 * Included once per test program, after rl2_decide_test.h (static
 * functions).
 */
#ifndef RL2_DECIDE_TABLE_TEST_H
#define RL2_DECIDE_TABLE_TEST_H

#include "ratelimit2/overrides.h"

#include "base/shm_obj_internal.h"

typedef struct {
    fixture_t        base;
    rl2_overrides_t *table;
} table_fixture_t;

/* setup_sized with policy text, then the table "<zone>.overrides". */
static int
setup_table(void **state, const char *policy, const char *tag)
{
    table_fixture_t *a;
    rl2_err_t        err;

    setup_sized(state, policy, 1024, tag);
    a = realloc(*state, sizeof(*a));
    assert_non_null(a);
    assert_int_equal(
        rl2_overrides_open(a->base.zname, NULL, 0600, &a->table, &err), RL2_OK);
    a->base.policy->overrides = a->table;
    *state = a;
    return 0;
}

/* The table closed and its object removed, then the fixture's teardown. */
static int
teardown_table(void **state)
{
    table_fixture_t *a = *state;
    char             name[128];
    rl2_err_t        err;

    rl2_overrides_close(a->table);
    snprintf(name, sizeof(name), "%s.overrides", a->base.zname);
    rl2_shm_obj_unlink(name, &err);
    return teardown(state);
}

/* How many of n requests req, every phase at once, are admitted, the
 * wall clock stepped by step_us after each; *v is the last verdict.
 * Inline: not every test program calls it. */
static inline int
table_admitted(table_fixture_t *a, const rl2_request_t *req, int n,
               rl2_clock_t *now, int64_t step_us, rl2_verdict_t *v)
{
    rl2_err_t err;
    int       admitted = 0;

    for (int i = 0; i < n; i++) {
        rl2_verdict_init(v);
        assert_int_equal(rl2_decide(a->base.policy, NULL, 0, a->base.store, req,
                                    RL2_PHASE_ALL, now, v, &err),
                         RL2_OK);
        admitted += v->outcome == RL2_OUTCOME_ALLOW;
        now->wall_us += step_us;
    }
    return admitted;
}

#endif /* RL2_DECIDE_TABLE_TEST_H */
