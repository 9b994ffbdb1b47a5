/*
 * clock.c -- the two clocks a request is decided on, and the core's
 * short waits.
 *
 * Algorithms never read a clock: the front end reads both once per
 * request (rl2_clock_now) and passes them down, so a decision is a pure
 * function of state and time, and tests and the Lua scripts can be given
 * any clock.
 */
#include <time.h>

#include "ratelimit2/clock.h"
#include "base/base_internal.h"

int64_t
rl2_mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * RL2_US_PER_S + ts.tv_nsec / 1000;
}

void
rl2_sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

void
rl2_clock_now(rl2_clock_t *now)
{
    struct timespec ts;

    now->mono_us = rl2_mono_us();
    clock_gettime(CLOCK_REALTIME, &ts);
    now->wall_us = (int64_t)ts.tv_sec * RL2_US_PER_S + ts.tv_nsec / 1000;
}
