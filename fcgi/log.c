/*
 * log.c -- messages to syslog and to stderr.
 *
 * Both: syslog for the operator, stderr for whoever started us (spawn-fcgi
 * and systemd keep it; lighttpd writes a bin-path child's stderr to its
 * error log).  openlog() is ours to call here: this is our own process,
 * not a module inside someone else's.
 *
 * Complaints about single requests are bounded at the source: a client
 * sending malformed requests must not flood syslog (rsyslog would drop
 * the flood anyway, and with it the lines that matter).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

#include "fcgi.h"

#define RL2_LOG_BURST    20 /* request lines per window and kind */
#define RL2_LOG_WINDOW_S 10

static const char     *rl2_log_ident = "ratelimit2";
static pthread_mutex_t rl2_log_lock = PTHREAD_MUTEX_INITIALIZER;

/* Each kind has its own budget: a flood of refusals must not hide the
 * one line that says a request was malformed. */
static struct {
    time_t        window; /* start of the current window */
    unsigned      count;  /* lines in it */
    unsigned long suppressed;
} rl2_log_kinds[RL2_LOG_KINDS];

static const char *const rl2_log_kind_names[RL2_LOG_KINDS] = {
    "refusal", "malformed request", "error"
};

void
rl2_log_open(const char *ident)
{
    rl2_log_ident = ident;
    openlog(ident, LOG_PID, LOG_DAEMON);
}

static void
rl2_log_va(int prio, const char *fmt, va_list ap)
{
    char msg[1024];

    vsnprintf(msg, sizeof(msg), fmt, ap);
    syslog(prio, "%s", msg);
    fprintf(stderr, "%s: %s\n", rl2_log_ident, msg);
}

void
rl2_log(int prio, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rl2_log_va(prio, fmt, ap);
    va_end(ap);
}

void
rl2_log_request(int kind, int prio, const char *fmt, ...)
{
    struct timespec ts;
    unsigned long   suppressed = 0;
    int             emit;
    va_list         ap;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    pthread_mutex_lock(&rl2_log_lock);
    if (ts.tv_sec - rl2_log_kinds[kind].window >= RL2_LOG_WINDOW_S) {
        rl2_log_kinds[kind].window = ts.tv_sec;
        rl2_log_kinds[kind].count = 0;
        suppressed = rl2_log_kinds[kind].suppressed;
        rl2_log_kinds[kind].suppressed = 0;
    }
    emit = rl2_log_kinds[kind].count < RL2_LOG_BURST;
    if (emit) {
        rl2_log_kinds[kind].count++;
    }
    else {
        rl2_log_kinds[kind].suppressed++;
    }
    pthread_mutex_unlock(&rl2_log_lock);
    if (suppressed > 0) {
        rl2_log(prio,
                "suppressed %lu %s messages (more than %d in %d "
                "seconds)",
                suppressed, rl2_log_kind_names[kind], RL2_LOG_BURST,
                RL2_LOG_WINDOW_S);
    }
    if (emit) {
        va_start(ap, fmt);
        rl2_log_va(prio, fmt, ap);
        va_end(ap);
    }
}
