/*
 * test_redis_resp.c -- the protocol both ways.  Our RESP writer
 * (redis_resp.c) against hiredis' own formatting: the same bytes for
 * empty, binary, long and many arguments, and for C strings given
 * without lengths; 0, never an overrun, when the buffer is too small.
 * The reading of a script's answer (redis_scripts.c): exact integers,
 * and a refusal of anything malformed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>

#include "redis/redis_resp.h"
#include "redis/redis_scripts.h"

/* Ours and hiredis' formatting of one command must be the same bytes. */
static void
assert_same_as_hiredis(int argc, const char **argv, const size_t *len)
{
    char   ours[RL2_RESP_BUF];
    char  *theirs = NULL;
    int    n_theirs = redisFormatCommandArgv(&theirs, argc, argv, len);
    size_t n_ours = rl2_resp_format(ours, sizeof(ours), argc, argv, len);

    assert_true(n_theirs > 0);
    assert_int_equal(n_ours, (size_t)n_theirs);
    assert_memory_equal(ours, theirs, n_ours);
    redisFreeCommand(theirs);
}

static void
test_simple_commands(void **state)
{
    const char *ping[] = { "PING" };
    size_t      ping_len[] = { 4 };
    const char *set[] = { "SET", "rl2:{k}:s", "" };
    size_t      set_len[] = { 3, 9, 0 };

    (void)state;
    assert_same_as_hiredis(1, ping, ping_len);
    assert_same_as_hiredis(3, set, set_len);
    /* no lengths: C strings, as hiredis takes them */
    assert_same_as_hiredis(3, set, NULL);
}

static void
test_binary_arguments(void **state)
{
    const char  bin[] = { 'a', '\0', '\r', '\n', '$', '*', (char)0xff };
    const char *argv[] = { "SET", "k", bin };
    size_t      len[] = { 3, 1, sizeof(bin) };

    (void)state;
    assert_same_as_hiredis(3, argv, len);
}

/* A script call's shape: forty arguments, lengths across digit counts. */
static void
test_many_and_long_arguments(void **state)
{
    static char big[1000];
    const char *argv[40];
    size_t      len[40];

    (void)state;
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 40; i++) {
        argv[i] = big;
        len[i] = (size_t)(i * i * i) % sizeof(big) / 10;
    }
    len[39] = 999;
    assert_same_as_hiredis(40, argv, len);
}

/* Every buffer size short of the command's length answers 0; the exact
 * length fits, and nothing past cap is written. */
static void
test_too_small_buffer(void **state)
{
    const char *argv[] = { "EVALSHA", "0123456789abcdef", "2", "a", "b" };
    size_t      len[] = { 7, 16, 1, 1, 1 };
    char        full[RL2_RESP_BUF];
    size_t      need = rl2_resp_format(full, sizeof(full), 5, argv, len);

    (void)state;
    assert_true(need > 0);
    for (size_t cap = 0; cap < need; cap++) {
        char *out = malloc(cap ? cap : 1);

        assert_non_null(out);
        assert_int_equal(rl2_resp_format(out, cap, 5, argv, len), 0);
        free(out);
    }
    {
        char *out = malloc(need);

        assert_non_null(out);
        assert_int_equal(rl2_resp_format(out, need, 5, argv, len), need);
        assert_memory_equal(out, full, need);
        free(out);
    }
}

static void
test_negative_count_is_refused(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(rl2_resp_format(out, sizeof(out), -1, NULL, NULL), 0);
}

/* A script's answer as redis_scripts.c reads it. */
static int
parse(const char *text, int64_t *vals, size_t n)
{
    redisReply r;

    memset(&r, 0, sizeof(r));
    r.type = REDIS_REPLY_STRING;
    r.str = (char *)text;
    r.len = strlen(text);
    return rl2_redis_answer_parse(&r, vals, n);
}

static void
test_answer_parsed(void **state)
{
    int64_t v[4];

    (void)state;
    assert_true(parse("1700000000000000 0 -5 9223372036854775807", v, 4));
    assert_int_equal(v[0], 1700000000000000LL);
    assert_int_equal(v[1], 0);
    assert_int_equal(v[2], -5);
    assert_int_equal(v[3], INT64_MAX);
    assert_true(parse("7", v, 1));
    assert_int_equal(v[0], 7);
}

/* Anything but exactly n integers separated by single spaces is refused:
 * the store then reports an unexpected reply instead of guessing. */
static void
test_malformed_answers_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "1 2",
        "1 2 3 4",
        "1  2 3",
        " 1 2 3",
        "1 2 3 ",
        "1 2 x",
        "1 2 3x",
        "1 - 3",
        "1 2 9223372036854775808",
        "1 2 99999999999999999999",
        "1,2,3",
        "-",
    };
    int64_t    v[3];
    redisReply r;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], v, 3)) {
            fail_msg("accepted \"%s\"", bad[i]);
        }
    }
    memset(&r, 0, sizeof(r));
    r.type = REDIS_REPLY_INTEGER;
    r.integer = 1;
    assert_false(rl2_redis_answer_parse(&r, v, 1));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_commands),
        cmocka_unit_test(test_binary_arguments),
        cmocka_unit_test(test_many_and_long_arguments),
        cmocka_unit_test(test_too_small_buffer),
        cmocka_unit_test(test_negative_count_is_refused),
        cmocka_unit_test(test_answer_parsed),
        cmocka_unit_test(test_malformed_answers_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
