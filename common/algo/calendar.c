/*
 * calendar.c -- UTC calendar periods of quota: rl2_period_bounds() and the
 * civil-day arithmetic behind it.
 *
 * Owns the conversion between days since 1970-01-01 (and before) and civil
 * dates, proleptic Gregorian, after Howard Hinnant's "chrono-compatible
 * low-level date algorithms": eras of 400 years (146097 days) starting on
 * March 1st, so the leap day ends a year.  Pure integers: no time zone, no
 * libc time functions, no clock reads; the caller passes wall time.
 */
#include "algo_internal.h"

static int64_t
rl2_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = rl2_floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
rl2_civil_from_days(int64_t z, int64_t *y, int64_t *m)
{
    int64_t era, doe, yoe, doy, mp;

    z += 719468;
    era = rl2_floor_div(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

/* now_us is clamped to +-NOW_MAX (year 2255) first.  RL2_PERIOD_NONE is an
 * empty span at now_us. */
void
rl2_period_bounds(rl2_period_t period, int64_t now_us, int64_t *start_us,
                  int64_t *end_us)
{
    int64_t now = rl2_clamp64(now_us, -NOW_MAX, NOW_MAX);
    int64_t days = rl2_floor_div(now, US_PER_DAY);
    int64_t y, m;

    if (period == RL2_PERIOD_DAY) {
        *start_us = days * US_PER_DAY;
        *end_us = *start_us + US_PER_DAY;
    }
    else if (period == RL2_PERIOD_MONTH) {
        rl2_civil_from_days(days, &y, &m);
        *start_us = rl2_days_from_civil(y, m, 1) * US_PER_DAY;
        *end_us = (m == 12 ? rl2_days_from_civil(y + 1, 1, 1)
                           : rl2_days_from_civil(y, m + 1, 1))
                  * US_PER_DAY;
    }
    else {
        *start_us = now;
        *end_us = now;
    }
}
