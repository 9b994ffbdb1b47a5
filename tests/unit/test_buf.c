/*
 * test_buf.c -- the decimal writer every response uses (base/buf.h):
 * rl2_i64_text against snprintf at every length boundary, both signs,
 * the 32-bit and the 64-bit division paths, and a million values drawn at
 * random.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/buf.h"

static void
check_one(int64_t v)
{
    char want[32], got[32];
    int  n = snprintf(want, sizeof(want), "%lld", (long long)v);
    /* Fill with a byte the writer never writes: a write past the length
     * it returns shows. */
    memset(got, '#', sizeof(got));
    size_t len = rl2_i64_text(got, v);

    if (len != (size_t)n || memcmp(got, want, len) != 0 || got[len] != '#') {
        got[len < sizeof(got) ? len : sizeof(got) - 1] = '\0';
        fail_msg("%lld: got \"%s\" (%zu bytes), want \"%s\"", (long long)v, got,
                 len, want);
    }
}

/* Every power of ten and of two, each with its neighbours, both signs. */
static void
test_boundaries(void **state)
{
    (void)state;
    for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
        for (int64_t d = -2; d <= 2; d++) {
            check_one(p + d);
            check_one(-(p + d));
        }
    }
    for (int b = 0; b < 63; b++) {
        int64_t p = (int64_t)1 << b;

        for (int64_t d = -2; d <= 2; d++) {
            check_one(p + d);
            check_one(-(p + d));
        }
    }
    check_one(INT64_MAX);
    check_one(INT64_MIN);
    check_one(INT64_MIN + 1);
    check_one((int64_t)UINT32_MAX);
    check_one((int64_t)UINT32_MAX + 1);
    check_one(999999999);
    check_one(9999999999LL);
}

/* Every value below 100,000, where the lengths change most often. */
static void
test_small(void **state)
{
    (void)state;
    for (int64_t v = -1000; v < 100000; v++) {
        check_one(v);
    }
}

/* A million values of every length, from a fixed seed. */
static void
test_random(void **state)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL;

    (void)state;
    for (int i = 0; i < 1000000; i++) {
        /* xorshift64*, shifted so that every length is drawn */
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t r = x * 0x2545f4914f6cdd1dULL;

        check_one((int64_t)(r >> (r & 63)));
        check_one((int64_t)(uint32_t)(r >> 17));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_small),
        cmocka_unit_test(test_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
