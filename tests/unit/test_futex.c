/*
 * test_futex.c -- base/futex.c, the one sleeper of the core: a word that
 * moved on returns at once, the deadline is absolute on rl2_mono_us's
 * clock and is kept even when the kernel refuses the word, and a word in
 * shared memory is woken from another process (the lease table's case).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/base_internal.h"

#define MS INT64_C(1000)

/* A word that no longer holds what the caller saw: nothing to sleep on. */
static void
test_a_word_that_moved_on_returns_at_once(void **state)
{
    _Atomic uint32_t word = 1;
    int64_t          start_us = rl2_mono_us();

    (void)state;
    assert_int_equal(rl2_futex_wait(&word, 0, start_us + 10000 * MS, 0), 0);
    assert_int_equal(rl2_futex_wait(&word, 0, start_us + 10000 * MS, 1), 0);
    assert_true(rl2_mono_us() - start_us < 5000 * MS);
}

/* The deadline is an instant on rl2_mono_us's clock: one already passed
 * times out at once, one ahead is slept to and not before. */
static void
test_the_deadline_is_absolute_and_monotonic(void **state)
{
    _Atomic uint32_t word = 0;
    int64_t          deadline_us;

    (void)state;
    assert_int_equal(rl2_futex_wait(&word, 0, rl2_mono_us() - 1, 0), ETIMEDOUT);
    assert_int_equal(rl2_futex_wait(&word, 0, rl2_mono_us() - 1, 1), ETIMEDOUT);
    deadline_us = rl2_mono_us() + 20 * MS;
    /* a signal may return early: the caller's loop looks again */
    while (rl2_futex_wait(&word, 0, deadline_us, 0) != ETIMEDOUT) {
    }
    assert_true(rl2_mono_us() >= deadline_us);
    assert_true(rl2_mono_us() < deadline_us + 5000 * MS);
}

/* A word the kernel will not sleep on (here EFAULT: a page that cannot
 * be read; EINVAL or ENOSYS under a sandbox alike) returns at once, but
 * the deadline still holds: a caller that loops until ETIMEDOUT, as the
 * lease's wait does, ends when it passes instead of spinning for ever. */
static void
test_a_word_the_kernel_refuses_keeps_its_deadline(void **state)
{
    long  page = sysconf(_SC_PAGESIZE);
    void *none =
        mmap(NULL, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    _Atomic uint32_t *word = none;
    int64_t           deadline_us = rl2_mono_us() + 20 * MS;
    long              tries = 0;

    (void)state;
    assert_true(none != MAP_FAILED);
    assert_int_equal(rl2_futex_wait(word, 0, rl2_mono_us() - 1, 1), ETIMEDOUT);
    while (rl2_futex_wait(word, 0, deadline_us, 1) != ETIMEDOUT) {
        tries++;
        if (rl2_mono_us() > deadline_us + 2000 * MS) {
            fail_msg("past its deadline by 2 s: %ld early returns", tries);
        }
    }
    assert_true(rl2_mono_us() >= deadline_us);
    munmap(none, (size_t)page);
}

/* Is pid asleep?  The child below runs nothing that sleeps but its
 * futex(2), so asleep is asleep in it (/proc/<pid>/stat, readable under
 * any ptrace policy, unlike /proc/<pid>/syscall). */
static int
asleep(pid_t pid)
{
    char        path[64], text[512];
    const char *end;
    FILE       *f;
    size_t      n = 0;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if ((f = fopen(path, "r")) != NULL) {
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
    }
    text[n] = '\0';
    /* "pid (comm) S ...": comm may hold spaces and parentheses */
    end = strrchr(text, ')');
    return end != NULL && end[1] == ' ' && end[2] == 'S';
}

/* The lease table's case: a word in memory shared between processes,
 * slept on in one and woken from the other.  The child is seen asleep in
 * futex(2) before the word moves, so the wake, not the word, ends its
 * sleep. */
static void
test_a_shared_word_is_woken_from_another_process(void **state)
{
    _Atomic uint32_t *word = mmap(NULL, sizeof(*word), PROT_READ | PROT_WRITE,
                                  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int64_t           start_us = rl2_mono_us();
    pid_t             pid;
    int               status;

    (void)state;
    assert_true(word != MAP_FAILED);
    atomic_store(word, 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int64_t deadline_us = rl2_mono_us() + 10000 * MS;

        while (atomic_load(word) == 0) {
            if (rl2_futex_wait(word, 0, deadline_us, 1) == ETIMEDOUT) {
                _exit(1);
            }
        }
        _exit(0);
    }
    while (!asleep(pid)) {
        if (rl2_mono_us() - start_us > 5000 * MS) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("the child never slept in futex(2)");
        }
        sched_yield();
    }
    atomic_store(word, 1);
    rl2_futex_wake(word, INT_MAX, 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(rl2_mono_us() - start_us < 9000 * MS);
    munmap((void *)word, sizeof(*word));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_word_that_moved_on_returns_at_once),
        cmocka_unit_test(test_the_deadline_is_absolute_and_monotonic),
        cmocka_unit_test(test_a_word_the_kernel_refuses_keeps_its_deadline),
        cmocka_unit_test(test_a_shared_word_is_woken_from_another_process),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
