/*
 * alert.c -- syslog alerts: the line format, the per-kind rate limit in
 * shared memory, and the datagram to the syslog socket (see alert.h).
 *
 * Owns the kinds' names and severities, the escaping that keeps one alert
 * on one line, and the shared rate-limit words.  Nothing here locks: the
 * rate limit is a compare-and-swap on one word per kind, and the send is
 * one non-blocking sendto() on a socket opened for it, so a worker never
 * waits on syslog and a fork or a restarted syslog daemon leaves nothing
 * stale behind.  Alerts are rare (at most one per kind per interval), so a
 * socket per line costs nothing that matters.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit2/alert.h"
#include "buf.h"
#include "shm_obj_internal.h"
#include "base_internal.h"

#define ALERT_MAGIC   0x41324c52u /* "RL2A" read little-endian */
#define ALERT_VERSION 2u

/* One word per kind: bits 63..24 hold the monotonic time of the kind's
 * last line in ms plus one (0: never sent), bits 23..0 the lines held
 * back since (saturating).  One word, so that "take the count and start a
 * new interval" is a single compare-and-swap: a count can be neither lost
 * nor reported twice.  40 bits of ms is 34 years of uptime. */
#define SLOT_COUNT_BITS 24
#define SLOT_COUNT_MAX  ((UINT64_C(1) << SLOT_COUNT_BITS) - 1)
#define SLOT_TIME_MAX   ((UINT64_C(1) << (64 - SLOT_COUNT_BITS)) - 1)

/* The bytes kept free after the fields for " truncated=1" and
 * " suppressed=" with 20 digits. */
#define ALERT_TAIL_RESERVE 44
#define ALERT_KEY_MAX      32

typedef struct {
    rl2_shm_hdr_t    hdr;
    _Atomic uint64_t failures; /* lines the socket refused */
    _Atomic uint64_t slot[RL2_ALERT_KIND_COUNT];
} alert_shm_t;

static const struct {
    const char *name;
    int         severity;
} alert_kinds[RL2_ALERT_KIND_COUNT] = {
    [RL2_ALERT_REDIS_DOWN] = { "redis_down", LOG_ERR },
    [RL2_ALERT_REDIS_UP] = { "redis_up", LOG_NOTICE },
    [RL2_ALERT_FAILOVER_ENTER] = { "failover_enter", LOG_WARNING },
    [RL2_ALERT_FAILOVER_LEAVE] = { "failover_leave", LOG_NOTICE },
    [RL2_ALERT_CONFIG_ERROR] = { "config_error", LOG_ERR },
    [RL2_ALERT_LIMITED] = { "limited", LOG_WARNING },
    [RL2_ALERT_BAN_CANDIDATE] = { "ban_candidate", LOG_WARNING },
    [RL2_ALERT_BANNED] = { "banned", LOG_WARNING },
    [RL2_ALERT_ZONE_FULL] = { "zone_full", LOG_WARNING },
    [RL2_ALERT_EVICTIONS] = { "evictions", LOG_WARNING },
    [RL2_ALERT_OVERRIDE] = { "override", LOG_NOTICE },
    [RL2_ALERT_OVR_RESTORED] = { "overrides_restored", LOG_WARNING },
    [RL2_ALERT_FACTOR] = { "factor", LOG_NOTICE },
    [RL2_ALERT_ANOMALY] = { "anomaly", LOG_WARNING },
};

struct rl2_alert {
    struct sockaddr_un addr;
    socklen_t          addr_len;
    char               ident[RL2_ALERT_IDENT_MAX + 1];
    int                facility;
    int64_t            interval_ms;
    void (*clock)(rl2_clock_t *now);
    _Atomic uint64_t *slots;    /* shm->slot, or private_slots */
    _Atomic uint64_t *failures; /* shm->failures, or private_failures */
    alert_shm_t      *shm;      /* NULL: state private to the process */
    _Atomic uint64_t  private_slots[RL2_ALERT_KIND_COUNT];
    _Atomic uint64_t  private_failures;
};

/* ---- the line ---------------------------------------------------------- */

const char *
rl2_alert_kind_name(rl2_alert_kind_t kind)
{
    return (unsigned)kind < RL2_ALERT_KIND_COUNT ? alert_kinds[kind].name
                                                 : NULL;
}

static int
rl2_alert_key_ok(const char *key)
{
    size_t i;

    if (key == NULL || key[0] == '\0') {
        return 0;
    }
    for (i = 0; key[i] != '\0'; i++) {
        char c = key[i];

        if (i >= ALERT_KEY_MAX
            || !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                 || c == '_')) {
            return 0;
        }
    }
    return 1;
}

/* The two-character escapes; NULL for every other byte. */
static const char *
rl2_alert_short_escape(unsigned char c)
{
    switch (c) {
    case '\\':
        return "\\\\";
    case '"':
        return "\\\"";
    case '\r':
        return "\\r";
    case '\n':
        return "\\n";
    case '\t':
        return "\\t";
    default:
        return NULL;
    }
}

static void
rl2_alert_put_escaped(rl2_buf_t *b, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    const char       *s = rl2_alert_short_escape(c);

    if (s != NULL) {
        rl2_buf_str(b, s);
    }
    else if (c < 0x20 || c >= 0x7f) {
        char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };

        rl2_buf_mem(b, esc, sizeof(esc));
    }
    else {
        rl2_buf_char(b, (char)c);
    }
}

/* Escape so that nothing a client sends can end the line, forge a field
 * or look like one: see alert.h for the rules. */
static void
rl2_alert_put_value(rl2_buf_t *b, const char *v)
{
    size_t n = v != NULL ? strlen(v) : 0, cut, i;
    int    quote;

    cut = n > RL2_ALERT_VALUE_MAX ? RL2_ALERT_VALUE_MAX : n;
    quote = cut == 0 || memchr(v, ' ', cut) != NULL
            || memchr(v, '"', cut) != NULL || memchr(v, '=', cut) != NULL;
    if (quote) {
        rl2_buf_char(b, '"');
    }
    for (i = 0; i < cut; i++) {
        rl2_alert_put_escaped(b, (unsigned char)v[i]);
    }
    if (cut < n) {
        rl2_buf_str(b, "...");
    }
    if (quote) {
        rl2_buf_char(b, '"');
    }
}

size_t
rl2_alert_format(char *buf, size_t len, rl2_alert_kind_t kind,
                 const rl2_alert_field_t *fields, size_t n, uint64_t suppressed)
{
    /* One field at most: a key, '=', quotes, 4 bytes per value byte. */
    char        tmp[ALERT_KEY_MAX + 8 + 4 * RL2_ALERT_VALUE_MAX];
    const char *name = rl2_alert_kind_name(kind);
    rl2_buf_t   b, f;
    int         truncated = 0;

    if (len == 0) {
        return 0;
    }
    rl2_buf_init(&b, buf, len);
    rl2_buf_str(&b, "ratelimit2: event=");
    rl2_buf_str(&b, name != NULL ? name : "unknown");
    for (size_t i = 0; i < n; i++) {
        if (!rl2_alert_key_ok(fields[i].key)) {
            continue; /* rl2_alert_send refuses these */
        }
        rl2_buf_init(&f, tmp, sizeof(tmp));
        rl2_buf_char(&f, ' ');
        rl2_buf_str(&f, fields[i].key);
        rl2_buf_char(&f, '=');
        rl2_alert_put_value(&f, fields[i].value);
        if (b.len + f.len + ALERT_TAIL_RESERVE >= b.cap) {
            truncated = 1;
            break;
        }
        rl2_buf_mem(&b, f.p, f.len);
    }
    if (truncated) {
        rl2_buf_str(&b, " truncated=1");
    }
    if (suppressed > 0) {
        rl2_buf_str(&b, " suppressed=");
        rl2_buf_i64(&b,
                    suppressed > INT64_MAX ? INT64_MAX : (int64_t)suppressed);
    }
    return b.len;
}

/* "<PRI>Mmm dd hh:mm:ss IDENT[PID]: " as syslog(3) writes it to
 * /dev/log.  Month names are spelled here, not by strftime, so that the
 * server's locale cannot change them. */
static size_t
rl2_alert_put_header(char *buf, size_t len, const rl2_alert_t *a, int severity,
                     int64_t wall_us)
{
    static const char mon[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t            t = (time_t)(wall_us / RL2_US_PER_S);
    struct tm         tm;
    int               w;

    if (localtime_r(&t, &tm) == NULL) {
        memset(&tm, 0, sizeof(tm));
    }
    w = snprintf(buf, len,
                 "<%d>%s %2d %02d:%02d:%02d %s[%ld]: ", a->facility | severity,
                 mon[tm.tm_mon % 12], tm.tm_mday, tm.tm_hour, tm.tm_min,
                 tm.tm_sec, a->ident, (long)getpid());
    return w < 0 ? 0 : ((size_t)w < len ? (size_t)w : len - 1);
}

/* ---- the datagram ------------------------------------------------------ */

static rl2_status_t
rl2_alert_deliver(rl2_alert_t *a, rl2_alert_kind_t kind,
                  const rl2_alert_field_t *fields, size_t n,
                  uint64_t suppressed, const rl2_clock_t *now, rl2_err_t *err)
{
    char    line[RL2_ALERT_LINE_MAX + 1];
    size_t  len;
    ssize_t sent;
    int     fd, e;

    len = rl2_alert_put_header(line, sizeof(line), a,
                               alert_kinds[kind].severity, now->wall_us);
    len += rl2_alert_format(line + len, sizeof(line) - len, kind, fields, n,
                            suppressed);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        atomic_fetch_add_explicit(a->failures, 1, memory_order_relaxed);
        return rl2_err_set(err, RL2_ERR_SYS, "alert %s: socket: %s",
                           alert_kinds[kind].name, strerror(errno));
    }
    /* Never wait for a slow syslog daemon: a full queue loses the line,
     * which the caller counts. */
    sent = sendto(fd, line, len, MSG_DONTWAIT | MSG_NOSIGNAL,
                  (const struct sockaddr *)&a->addr, a->addr_len);
    e = errno;
    close(fd);
    if (sent != (ssize_t)len) {
        atomic_fetch_add_explicit(a->failures, 1, memory_order_relaxed);
        return rl2_err_set(err, RL2_ERR_SYS, "alert %s: send to %s: %s",
                           alert_kinds[kind].name, a->addr.sun_path,
                           sent < 0 ? strerror(e) : "short write");
    }
    return RL2_OK;
}

/* ---- the rate limit ---------------------------------------------------- */

/* Is a line of this kind due now?  If so the word restarts its interval
 * at now and *suppressed gets the count it held; if not the word counts
 * one more line held back. */
static int
rl2_alert_slot_take(_Atomic uint64_t *slot, int64_t now_ms, int64_t interval_ms,
                    uint64_t *suppressed)
{
    uint64_t stamp = ((uint64_t)now_ms + 1) & SLOT_TIME_MAX;
    uint64_t old = atomic_load_explicit(slot, memory_order_relaxed), new;
    int      due;

    do {
        uint64_t last = old >> SLOT_COUNT_BITS;
        uint64_t count = old & SLOT_COUNT_MAX;
        int64_t  since = (int64_t)stamp - (int64_t)last;

        /* A stamp more than an interval ahead of now was not written by
         * this clock (the state outlived a reboot): start afresh rather
         * than stay silent. */
        due = last == 0 || since >= interval_ms || since < -interval_ms;
        if (due) {
            *suppressed = count;
            new = stamp << SLOT_COUNT_BITS;
        }
        else {
            new = count < SLOT_COUNT_MAX ? old + 1 : old;
        }
    } while (!atomic_compare_exchange_weak_explicit(
        slot, &old, new, memory_order_acq_rel, memory_order_relaxed));
    return due;
}

/* A line that could not be sent: its count, and itself, go to the next. */
static void
rl2_alert_slot_give_back(_Atomic uint64_t *slot, uint64_t lines)
{
    uint64_t old = atomic_load_explicit(slot, memory_order_relaxed), new;

    do {
        uint64_t room = SLOT_COUNT_MAX - (old & SLOT_COUNT_MAX);

        new = old + (lines < room ? lines : room);
    } while (!atomic_compare_exchange_weak_explicit(
        slot, &old, new, memory_order_acq_rel, memory_order_relaxed));
}

static rl2_status_t
rl2_alert_check_call(rl2_alert_kind_t kind, const rl2_alert_field_t *fields,
                     size_t n, rl2_err_t *err)
{
    if ((unsigned)kind >= RL2_ALERT_KIND_COUNT) {
        return rl2_err_set(err, RL2_ERR_INVALID, "alert: unknown kind %d",
                           (int)kind);
    }
    for (size_t i = 0; i < n; i++) {
        if (!rl2_alert_key_ok(fields[i].key)) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "alert %s: field %zu: "
                               "a key is 1..%d of [a-z0-9_]",
                               alert_kinds[kind].name, i, ALERT_KEY_MAX);
        }
    }
    return RL2_OK;
}

rl2_status_t
rl2_alert_send(rl2_alert_t *a, rl2_alert_kind_t kind,
               const rl2_alert_field_t *fields, size_t n, int *sent,
               rl2_err_t *err)
{
    rl2_clock_t  now;
    uint64_t     suppressed = 0;
    rl2_status_t st;
    int64_t      now_ms;

    if (sent != NULL) {
        *sent = 0;
    }
    if (a == NULL) {
        return RL2_OK;
    }
    if ((st = rl2_alert_check_call(kind, fields, n, err)) != RL2_OK) {
        return st;
    }
    a->clock(&now);
    now_ms = now.mono_us > 0 ? now.mono_us / 1000 : 0;
    if (a->interval_ms > 0
        && !rl2_alert_slot_take(&a->slots[kind], now_ms, a->interval_ms,
                                &suppressed)) {
        return RL2_OK;
    }
    st = rl2_alert_deliver(a, kind, fields, n, suppressed, &now, err);
    if (st != RL2_OK) {
        if (a->interval_ms > 0) {
            rl2_alert_slot_give_back(&a->slots[kind], suppressed + 1);
        }
        return st;
    }
    if (sent != NULL) {
        *sent = 1;
    }
    return RL2_OK;
}

rl2_status_t
rl2_alert_emit(rl2_alert_t *a, rl2_alert_kind_t kind,
               const rl2_alert_field_t *fields, size_t n, uint64_t suppressed,
               rl2_err_t *err)
{
    rl2_clock_t  now;
    rl2_status_t st;

    if (a == NULL) {
        return RL2_OK;
    }
    if ((st = rl2_alert_check_call(kind, fields, n, err)) != RL2_OK) {
        return st;
    }
    a->clock(&now);
    return rl2_alert_deliver(a, kind, fields, n, suppressed, &now, err);
}

/* ---- configuration and lifetime ---------------------------------------- */

void
rl2_alert_conf_default(rl2_alert_conf_t *conf)
{
    conf->socket_path = "/dev/log";
    conf->ident = "ratelimit2";
    conf->facility = LOG_DAEMON;
    conf->interval_ms = 60000;
    conf->shm_name = NULL;
    conf->mode = 0600;
    conf->clock = rl2_clock_now;
}

static const struct {
    const char *name;
    int         facility;
} alert_facilities[] = {
    { "auth", LOG_AUTH },     { "authpriv", LOG_AUTHPRIV },
    { "daemon", LOG_DAEMON }, { "user", LOG_USER },
    { "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
    { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
    { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
    { "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

rl2_status_t
rl2_alert_facility_parse(const char *text, int *facility, rl2_err_t *err)
{
    for (size_t i = 0;
         i < sizeof(alert_facilities) / sizeof(alert_facilities[0]); i++) {
        if (text != NULL && strcmp(text, alert_facilities[i].name) == 0) {
            *facility = alert_facilities[i].facility;
            return RL2_OK;
        }
    }
    return rl2_err_set(err, RL2_ERR_CONFIG,
                       "unknown syslog facility "
                       "\"%.40s\" (daemon, user, auth, authpriv, "
                       "local0..local7)",
                       text != NULL ? text : "");
}

static rl2_status_t
rl2_alert_conf_check(const rl2_alert_conf_t *c, rl2_err_t *err)
{
    size_t i, n;

    if (c->socket_path == NULL || c->socket_path[0] == '\0'
        || strlen(c->socket_path)
               >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "alert socket path must "
                           "be 1..%zu bytes",
                           sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    }
    n = c->ident != NULL ? strlen(c->ident) : 0;
    for (i = 0; i < n; i++) {
        char ch = c->ident[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.'
              || ch == '-')) {
            break;
        }
    }
    if (n == 0 || n > RL2_ALERT_IDENT_MAX || i < n) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "alert ident must be "
                           "1..%d of [A-Za-z0-9_.-]",
                           RL2_ALERT_IDENT_MAX);
    }
    if (c->facility < 0 || c->facility > LOG_LOCAL7
        || (c->facility & LOG_PRIMASK) != 0) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "alert facility %d is not "
                           "a LOG_* facility",
                           c->facility);
    }
    if (c->interval_ms < 0 || c->interval_ms > (int64_t)(SLOT_TIME_MAX / 2)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "alert interval %" PRId64 " ms out of range",
                           c->interval_ms);
    }
    return RL2_OK;
}

rl2_status_t
rl2_alert_open(const rl2_alert_conf_t *conf, rl2_alert_t **out, rl2_err_t *err)
{
    rl2_alert_t *a;
    rl2_status_t st;
    void        *map;

    *out = NULL;
    if ((st = rl2_alert_conf_check(conf, err)) != RL2_OK) {
        return st;
    }
    if ((a = calloc(1, sizeof(*a))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "alert: out of memory");
    }
    a->addr.sun_family = AF_UNIX;
    strcpy(a->addr.sun_path, conf->socket_path); /* length checked */
    a->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path)
                              + strlen(conf->socket_path) + 1);
    strcpy(a->ident, conf->ident); /* length checked */
    a->facility = conf->facility;
    a->interval_ms = conf->interval_ms;
    a->clock = conf->clock != NULL ? conf->clock : rl2_clock_now;
    a->slots = a->private_slots;
    a->failures = &a->private_failures;
    if (conf->shm_name != NULL) {
        st = rl2_shm_obj_open(conf->shm_name, sizeof(alert_shm_t), ALERT_MAGIC,
                              ALERT_VERSION, conf->mode, &map, err);
        if (st != RL2_OK) {
            free(a);
            return st;
        }
        a->shm = map;
        a->slots = a->shm->slot;
        a->failures = &a->shm->failures;
    }
    *out = a;
    return RL2_OK;
}

void
rl2_alert_close(rl2_alert_t *a)
{
    if (a == NULL) {
        return;
    }
    rl2_shm_obj_close(a->shm, sizeof(alert_shm_t));
    free(a);
}

uint64_t
rl2_alert_failures(const rl2_alert_t *a)
{
    return a != NULL ? atomic_load(a->failures) : 0;
}

rl2_status_t
rl2_alert_unlink(const char *shm_name, rl2_err_t *err)
{
    return rl2_shm_obj_unlink(shm_name, err);
}
