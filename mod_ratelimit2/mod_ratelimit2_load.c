/*
 * mod_ratelimit2_load.c -- the load Apache measures itself for the
 * policy's factors.load with source "scoreboard": the share of its
 * workers busy with a connection, from the scoreboard every child
 * shares.
 *
 * A worker is busy in every state but dead, starting, ready and being
 * killed for idleness, as mod_status counts; the whole is
 * MaxRequestWorkers (the most workers the MPM will run).  The core asks
 * at most once a second per host (common/control/factor_load.c), and the
 * walk reads ServerLimit x ThreadLimit slots: a few thousand loads.
 */
#include "httpd.h"
#include "ap_mpm.h"
#include "scoreboard.h"

#include "mod_ratelimit2.h"

static int
rl2_ap_worker_busy(int status)
{
    return status != SERVER_DEAD && status != SERVER_STARTING
           && status != SERVER_READY && status != SERVER_IDLE_KILL;
}

/* rl2_load_fn: busy workers per MaxRequestWorkers, in thousandths; -1
 * without a scoreboard (configuration time). */
static int64_t
rl2_ap_busy_milli(void *ctx)
{
    int     server_limit = 0, thread_limit = 0, daemons = 0, threads = 0;
    int64_t busy = 0, whole;

    (void)ctx;
    if (ap_scoreboard_image == NULL
        || ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &server_limit)
               != APR_SUCCESS
        || ap_mpm_query(AP_MPMQ_HARD_LIMIT_THREADS, &thread_limit)
               != APR_SUCCESS
        || ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &daemons) != APR_SUCCESS
        || ap_mpm_query(AP_MPMQ_MAX_THREADS, &threads) != APR_SUCCESS) {
        return -1;
    }
    /* prefork answers 0 threads: one worker per process. */
    whole = (int64_t)daemons * (threads > 0 ? threads : 1);
    if (whole <= 0) {
        return -1;
    }
    for (int i = 0; i < server_limit; i++) {
        for (int j = 0; j < thread_limit; j++) {
            worker_score *ws = ap_get_scoreboard_worker_from_indexes(i, j);

            busy += ws != NULL && rl2_ap_worker_busy(ws->status);
        }
    }
    return busy >= whole ? 1000 : busy * 1000 / whole;
}

void
rl2_ap_load_measure(rl2_policy_t *policy)
{
    if (policy != NULL && policy->load.scoreboard) {
        rl2_policy_load_measure(policy, rl2_ap_busy_milli, NULL);
    }
}
