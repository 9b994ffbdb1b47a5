/*
 * test_hll.c -- the distinct-client sketch of the usage series
 * (obs/hll.h): 10, 1,000 and 100,000 distinct digests (SipHash of a
 * counter, as the layers' keys are) estimated within what the usage
 * docs promise, duplicates not counted twice, a clear that empties it;
 * the sums the sketch keeps as registers rise equal a scan of the
 * registers, also when four threads add at once.  The digests come from
 * a fixed key: the figures are the same on every run.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/base_internal.h"
#include "obs/hll.h"

static const rl2_hash_key_t key = { { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                      14, 15, 16 } };

/* Digests of first .. first + n - 1, each added `times` times. */
static void
add_range(rl2_hll_t *h, uint64_t first, uint64_t n, unsigned times)
{
    for (unsigned t = 0; t < times; t++) {
        for (uint64_t i = first; i < first + n; i++) {
            rl2_digest_t d = rl2_digest_keyed(&key, &i, sizeof(i));

            rl2_hll_add(h, &d);
        }
    }
}

static rl2_hll_t *
new_sketch(void)
{
    rl2_hll_t *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    return h;
}

/* |got - want| <= want * ppm / 10^6 */
static void
assert_within(uint32_t got, uint64_t want, uint64_t ppm)
{
    uint64_t diff = got > want ? got - want : want - got;

    if (diff * 1000000 > want * ppm) {
        fail_msg("estimate %u for %llu distinct: off by %llu, more than "
                 "%llu ppm",
                 got, (unsigned long long)want, (unsigned long long)diff,
                 (unsigned long long)ppm);
    }
}

static void
test_empty_is_zero(void **state)
{
    rl2_hll_t *h = new_sketch();

    (void)state;
    assert_int_equal(rl2_hll_estimate(h), 0);
    free(h);
}

/* Linear counting: ten clients in 16,384 registers are ten. */
static void
test_ten_exact(void **state)
{
    rl2_hll_t *h = new_sketch();

    (void)state;
    add_range(h, 0, 10, 1);
    assert_int_equal(rl2_hll_estimate(h), 10);
    free(h);
}

static void
test_thousand_within_half_percent(void **state)
{
    rl2_hll_t *h = new_sketch();

    (void)state;
    add_range(h, 1000000, 1000, 1);
    assert_within(rl2_hll_estimate(h), 1000, 5000);
    free(h);
}

/* The acceptance figure: within 2% at 100,000 distinct clients, each
 * seen three times (a repeat changes nothing). */
static void
test_hundred_thousand_within_two_percent(void **state)
{
    rl2_hll_t *h = new_sketch();
    uint32_t   once;

    (void)state;
    add_range(h, 0, 100000, 1);
    once = rl2_hll_estimate(h);
    assert_within(once, 100000, 20000);
    add_range(h, 0, 100000, 2);
    assert_int_equal(rl2_hll_estimate(h), once);
    free(h);
}

/* Ten different sets of 100,000: each within 2% (not one lucky key). */
static void
test_many_sets_within_two_percent(void **state)
{
    rl2_hll_t *h = new_sketch();

    (void)state;
    for (uint64_t s = 1; s <= 10; s++) {
        rl2_hll_clear(h);
        add_range(h, s * 10000000, 100000, 1);
        assert_within(rl2_hll_estimate(h), 100000, 20000);
    }
    free(h);
}

static void
test_clear_empties(void **state)
{
    rl2_hll_t *h = new_sketch();

    (void)state;
    add_range(h, 0, 5000, 1);
    assert_true(rl2_hll_estimate(h) > 4000);
    rl2_hll_clear(h);
    assert_int_equal(rl2_hll_estimate(h), 0);
    add_range(h, 0, 10, 1);
    assert_int_equal(rl2_hll_estimate(h), 10);
    free(h);
}

/* The sums a scan of the registers gives. */
static void
scan(const rl2_hll_t *h, uint64_t *deficit, uint32_t *nonzero)
{
    *deficit = 0;
    *nonzero = 0;
    for (unsigned i = 0; i < RL2_HLL_REGS; i++) {
        uint8_t r = atomic_load(&((rl2_hll_t *)h)->reg[i]);

        *deficit += (UINT64_C(1) << RL2_HLL_Q)
                    - (r >= RL2_HLL_Q ? 0 : UINT64_C(1) << (RL2_HLL_Q - r));
        *nonzero += r != 0;
    }
}

static void
assert_sums_scan(const rl2_hll_t *h)
{
    uint64_t deficit;
    uint32_t nonzero;

    scan(h, &deficit, &nonzero);
    assert_int_equal(atomic_load(&((rl2_hll_t *)h)->deficit), deficit);
    assert_int_equal(atomic_load(&((rl2_hll_t *)h)->nonzero), nonzero);
}

static void
test_sums_follow_registers(void **state)
{
    rl2_hll_t *h = new_sketch();

    (void)state;
    assert_sums_scan(h);
    add_range(h, 0, 10, 1);
    assert_sums_scan(h);
    add_range(h, 0, 300000, 2);
    assert_sums_scan(h);
    rl2_hll_clear(h);
    assert_sums_scan(h);
    free(h);
}

typedef struct {
    rl2_hll_t *h;
    uint64_t   first;
} adder_t;

static void *
adder(void *arg)
{
    const adder_t *a = arg;

    add_range(a->h, a->first, 200000, 1);
    return NULL;
}

/* Four threads, half of each one's digests shared with the next: every
 * raise is counted in the sums exactly once. */
static void
test_sums_with_threads(void **state)
{
    rl2_hll_t *h = new_sketch();
    pthread_t  t[4];
    adder_t    a[4];

    (void)state;
    for (int i = 0; i < 4; i++) {
        a[i] = (adder_t){ h, (uint64_t)i * 100000 };
        assert_int_equal(pthread_create(&t[i], NULL, adder, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
    }
    assert_sums_scan(h);
    assert_within(rl2_hll_estimate(h), 500000, 20000);
    free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_is_zero),
        cmocka_unit_test(test_ten_exact),
        cmocka_unit_test(test_thousand_within_half_percent),
        cmocka_unit_test(test_hundred_thousand_within_two_percent),
        cmocka_unit_test(test_many_sets_within_two_percent),
        cmocka_unit_test(test_clear_empties),
        cmocka_unit_test(test_sums_follow_registers),
        cmocka_unit_test(test_sums_with_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
