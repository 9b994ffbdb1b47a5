/*
 * rl2_zone_stats.c -- a test tool: the counters of a live zone, on one
 * line: entries=N used=N evictions=N lock_recoveries=N bytes=N
 *
 * usage: rl2_zone_stats ZONE
 */
#include <inttypes.h>
#include <stdio.h>

#include "ratelimit2/store_local.h"
#include "store/store_internal.h"

int
main(int argc, char **argv)
{
    rl2_zone_t      *zone;
    rl2_zone_stats_t st;
    rl2_err_t        err;

    if (argc != 2) {
        fprintf(stderr, "usage: rl2_zone_stats ZONE\n");
        return 2;
    }
    if (rl2_zone_attach(argv[1], &zone, &err) != RL2_OK
        || rl2_zone_stats(zone, &st, &err) != RL2_OK) {
        fprintf(stderr, "rl2_zone_stats: %s\n", err.msg);
        return 2;
    }
    printf("entries=%" PRIu64 " used=%" PRIu64 " evictions=%" PRIu64
           " lock_recoveries=%" PRIu64 " bytes=%" PRIu64 "\n",
           st.entries, st.used, st.evictions, st.lock_recoveries, st.bytes);
    rl2_zone_close(zone);
    return 0;
}
