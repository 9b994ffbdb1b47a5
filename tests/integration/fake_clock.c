/*
 * fake_clock.c -- preloaded (LD_PRELOAD) into the servers of a suite that
 * sets the time itself (fake_clock_on in lib.sh): clock_gettime of
 * CLOCK_MONOTONIC, the clock of every limit but the calendar quotas,
 * answers the microseconds written in the file named by $RL2_TEST_CLOCK,
 * read at every call, so the suite moves the limiter's time by rewriting
 * that file (renamed into place: a reader sees the old value or the new,
 * never half of one).  Every other clock is the real one.
 *
 * A clock that cannot be read aborts the process: falling back to the
 * real clock would bring back the timing the suite removed, silently.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static char clock_path[4096];

__attribute__((constructor)) static void
fake_clock_init(void)
{
    const char *p = getenv("RL2_TEST_CLOCK");

    real_clock_gettime = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
    if (p != NULL && strlen(p) < sizeof(clock_path)) {
        strcpy(clock_path, p);
    }
}

static void
fake_clock_fail(const char *what)
{
    char msg[4200];
    int n = snprintf(msg, sizeof(msg), "fake_clock: %s %s: %s\n", what,
                     clock_path[0] != '\0' ? clock_path
                                           : "($RL2_TEST_CLOCK unset)",
                     strerror(errno));

    if (n > 0) {
        ssize_t w = write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n
                                                           : sizeof(msg) - 1);
        (void)w;
    }
    abort();
}

/* The suite's time, µs. */
static long long
fake_clock_us(void)
{
    char buf[32];
    char *end;
    ssize_t n;
    long long us;
    int fd;

    fd = clock_path[0] != '\0' ? open(clock_path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        fake_clock_fail("cannot open");
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        fake_clock_fail("cannot read");
    }
    buf[n] = '\0';
    errno = 0;
    us = strtoll(buf, &end, 10);
    if (errno != 0 || end == buf || us < 0 || (*end != '\n' && *end != '\0')) {
        errno = EINVAL;
        fake_clock_fail("no microseconds in");
    }
    return us;
}

int
clock_gettime(clockid_t id, struct timespec *ts)
{
    if (id == CLOCK_MONOTONIC) {
        if (clock_path[0] == '\0') {
            fake_clock_init();
        }
        long long us = fake_clock_us();

        ts->tv_sec = (time_t)(us / 1000000);
        ts->tv_nsec = (long)(us % 1000000) * 1000;
        return 0;
    }
    if (real_clock_gettime == NULL) {
        /* called by a constructor that ran before this library's */
        fake_clock_init();
    }
    return real_clock_gettime(id, ts);
}
