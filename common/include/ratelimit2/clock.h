/*
 * clock.h -- the monotonic and wall clocks, in integer microseconds.
 */
#ifndef RL2_CLOCK_H
#define RL2_CLOCK_H

#include <stdint.h>

#define RL2_US_PER_MS INT64_C(1000)    /* microseconds in a millisecond */
#define RL2_US_PER_S  INT64_C(1000000) /* microseconds in a second */

/* Both clocks, read once per request by the front end (rl2_clock_now):
 * algorithms get mono_us, except calendar quotas which get wall_us. */
typedef struct {
    int64_t mono_us; /* CLOCK_MONOTONIC, µs: shared by processes of a host */
    int64_t wall_us; /* CLOCK_REALTIME, µs since the epoch (UTC) */
} rl2_clock_t;

void rl2_clock_now(rl2_clock_t *now);

/* CLOCK_MONOTONIC in µs: for timeouts and intervals. */
int64_t rl2_mono_us(void);

#endif /* RL2_CLOCK_H */
