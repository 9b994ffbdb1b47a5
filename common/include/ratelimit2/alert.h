/*
 * alert.h -- syslog alerts for the operator and for fail2ban, each kind
 * rate-limited across all processes of a host.
 *
 * Transport: RFC 3164-style datagrams written straight to a unix datagram
 * socket (default /dev/log), never through openlog()/syslog(): openlog()
 * sets a process-global ident, and inside Apache that would rename
 * httpd's own log lines.  Facility and ident travel in each datagram:
 *
 *   <PRI>Mmm dd hh:mm:ss IDENT[PID]: ratelimit2: event=KIND k=v ...
 *
 * PRI is facility | severity (each kind has a fixed severity), the time is
 * local time as syslog(3) writes it, and no hostname is sent (the local
 * syslog daemon adds it, as it does for syslog(3)).  A datagram holds at
 * most RL2_ALERT_LINE_MAX bytes.
 *
 * The message (everything after "IDENT[PID]: ") has one format, for
 * fail2ban and for people:
 *
 *   ratelimit2: event=<kind> <key>=<value> ... [suppressed=<n>]
 *
 * - "ratelimit2: event=<kind> " is fixed whatever the ident, so a filter
 *   can anchor on it; fields follow in the order the caller passes them,
 *   so a kind that names a client puts it first (event=limited
 *   client=<address> ...) and nothing a client controls comes before it.
 * - keys are [a-z0-9_]+, fixed by the code, never by input.
 * - values: a backslash becomes \\ and a double quote \", CR, LF and TAB
 *   become \r, \n, \t, every other byte below 0x20, 0x7f and every byte
 *   above 0x7f becomes \xHH, so one alert is always one line of ASCII.
 *   A value that is empty or contains a space, '"' or '=' is written in
 *   double quotes.  A value longer than RL2_ALERT_VALUE_MAX bytes is cut
 *   and ends in "..."; when a field no longer fits in the line, it and
 *   the fields after it are left out and truncated=1 follows the rest.
 * - suppressed=<n>, last, when n lines of this kind were held back by the
 *   rate limit since the previous line of this kind.
 *
 * Rate limit: rl2_alert_send() emits at most one line per kind per
 * interval (default 60 s) across every process that opens the same
 * shared state; the others are counted, and the count is reported by the
 * next line of that kind.  The state is one 64-bit word per kind updated
 * by compare-and-swap, so nothing is locked and nothing waits, and taking
 * the count and starting a new interval are one atomic step.
 *
 * Adding a kind: one enumerator below and one row (name, severity) in
 * alert.c; the shared state grows by one word, and an object of the old
 * size is replaced on the next open.
 */
#ifndef RL2_ALERT_H
#define RL2_ALERT_H

#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "ratelimit2/status.h"
#include "ratelimit2/clock.h"

typedef enum {
    RL2_ALERT_REDIS_DOWN = 0, /* the shared store stopped answering */
    RL2_ALERT_REDIS_UP,       /* it answers again */
    RL2_ALERT_FAILOVER_ENTER, /* requests now answered per failover mode */
    RL2_ALERT_FAILOVER_LEAVE, /* back to the shared store */
    RL2_ALERT_CONFIG_ERROR,   /* a policy or directive was refused */
    RL2_ALERT_LIMITED,        /* a client was refused (fail2ban); one
                                 line per client per interval, limited
                                 by metrics_clients.c */
    RL2_ALERT_BAN_CANDIDATE,  /* a client refused too often */
    RL2_ALERT_BANNED,         /* ... and banned (policy `abuse`) */
    RL2_ALERT_ZONE_FULL,      /* the local zone passed 80% or 100% */
    RL2_ALERT_EVICTIONS,      /* live keys evicted faster than allowed */
    RL2_ALERT_OVERRIDE,       /* a runtime override changed (audit.h);
                                 every change, never rate-limited */
    RL2_ALERT_OVR_RESTORED,   /* a host wrote its override table back
                                 to a Redis that had lost it */
    RL2_ALERT_FACTOR,         /* an adaptive factor changed (policy
                                 factors); every change, never
                                 rate-limited */
    RL2_ALERT_ANOMALY,        /* a rule's refusals in the last minute
                                 far above its own last hour */
    RL2_ALERT_KIND_COUNT
} rl2_alert_kind_t;

#define RL2_ALERT_LINE_MAX  1024 /* bytes per datagram (RFC 3164) */
#define RL2_ALERT_VALUE_MAX 256  /* bytes of one value before escaping */
#define RL2_ALERT_IDENT_MAX 32   /* RFC 3164 TAG length */

typedef struct {
    const char *socket_path; /* unix datagram socket; "/dev/log" */
    const char *ident;       /* "ratelimit2"; 1..32 of [A-Za-z0-9_.-] */
    int         facility;    /* LOG_DAEMON: a LOG_* facility value */
    int64_t     interval_ms; /* per kind, ms; 60000; 0: no rate limit */
    const char *shm_name;    /* shared rate-limit state ("/ratelimit2.alert");
                                NULL: private to this process (tools,
                                configtest) */
    unsigned mode;           /* permission of a new shm object: 0600 */
    void (*clock)(rl2_clock_t *now); /* rl2_clock_now; tests fake it */
} rl2_alert_conf_t;

typedef struct {
    const char *key;   /* [a-z0-9_]+ */
    const char *value; /* any bytes, NUL-terminated; NULL reads "" */
} rl2_alert_field_t;

typedef struct rl2_alert rl2_alert_t;

#endif /* RL2_ALERT_H */
