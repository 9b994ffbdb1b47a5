/*
 * futex.c -- sleeping on a 32-bit word until another thread changes it
 * and wakes its sleepers: the Redis pipe's waiters (a word each, in the
 * process) and the lease table's (a word per key, in memory shared by a
 * server's processes).
 *
 * glibc has no wrapper for futex(2).  The deadline is absolute, on the
 * clock of rl2_mono_us (FUTEX_WAIT_BITSET; FUTEX_WAIT would take a
 * relative time), so that a caller's loop over early returns never
 * stretches it.
 */
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/base_internal.h"

/* A private futex is hashed by address in the process only (cheaper);
 * one in shared memory must be woken from another process. */
static int
rl2_futex_op(int op, int shared)
{
    return shared ? op : op | FUTEX_PRIVATE_FLAG;
}

int
rl2_futex_wait(_Atomic uint32_t *word, uint32_t seen, int64_t deadline_us,
               int shared)
{
    struct timespec until, *at = NULL;

    if (deadline_us >= 0) {
        until.tv_sec = (time_t)(deadline_us / RL2_US_PER_S);
        until.tv_nsec = (long)(deadline_us % RL2_US_PER_S) * 1000;
        at = &until;
    }
    if (syscall(SYS_futex, (void *)word,
                rl2_futex_op(FUTEX_WAIT_BITSET, shared), seen, at, NULL,
                FUTEX_BITSET_MATCH_ANY)
            == 0
        || errno == EAGAIN) {
        return 0; /* woken, or the word had moved on */
    }
    if (errno == ETIMEDOUT) {
        return ETIMEDOUT;
    }
    /* A signal, or a word the kernel would not sleep on (EFAULT, EINVAL,
     * ENOSYS or EPERM under a sandbox's filter): the deadline holds all
     * the same, or a caller looping until ETIMEDOUT (the lease's wait)
     * would spin until the word moved, for ever if its waker died. */
    return deadline_us >= 0 && rl2_mono_us() >= deadline_us ? ETIMEDOUT : 0;
}

void
rl2_futex_wake(_Atomic uint32_t *word, int n, int shared)
{
    syscall(SYS_futex, (void *)word, rl2_futex_op(FUTEX_WAKE, shared), n, NULL,
            NULL, 0);
}
