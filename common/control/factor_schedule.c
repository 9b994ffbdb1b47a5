/*
 * factor_schedule.c -- the schedule factor (policy factors.schedule):
 * windows of local time in a named zone scale every limit.
 *
 * The zone is read from its TZif file at policy load, never through the
 * C library's TZ: setting TZ in a server changes every thread's clock.
 * The file's 64-bit part (version 2 or later) becomes a table of
 * transitions in the policy; a request finds its offset by binary
 * search.  Past the table's end the last offset holds: the loader
 * refuses a zone whose footer rule would move the offset within a year
 * of the load while its table has ended (a "slim" TZif file), so the
 * last offset is right until the table's end (2037 in a full file).
 *
 * The result is cached per process for the current second: window
 * boundaries and offsets are whole seconds, so it cannot change within
 * one.  A change is shared through the override table: who exchanges a
 * new factor there logs it (event=factor) and the gauge shows it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control_internal.h"

#define RL2_TZ_FILE_MAX  (256 * 1024)
#define RL2_TZ_NAME_MAX  64
#define RL2_TZ_HEAD      44
#define RL2_TZ_TYPES_MAX 256
/* No zone is more than a day from UTC. */
#define RL2_TZ_OFF_MAX_S (26 * 3600)
#define RL2_DAY_S        86400

int
rl2_tz_name_ok(const char *zone)
{
    size_t n = strlen(zone);

    if (n == 0 || n > RL2_TZ_NAME_MAX || zone[0] == '/' || zone[n - 1] == '/'
        || strstr(zone, "..") != NULL || strstr(zone, "//") != NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = zone[i];

        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')
              || (ch >= '0' && ch <= '9') || ch == '_' || ch == '+' || ch == '-'
              || ch == '/')) {
            return 0;
        }
    }
    return 1;
}

static uint32_t
rl2_tz_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8
           | p[3];
}

static int64_t
rl2_tz_be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)rl2_tz_be32(p) << 32 | rl2_tz_be32(p + 4));
}

static rl2_status_t
rl2_tz_bad(rl2_err_t *err, const char *why)
{
    return rl2_err_set(err, RL2_ERR_CONFIG, "not a valid TZif file: %s", why);
}

/* The six counts of a header at p: isut, isstd, leap, time, type, char. */
static void
rl2_tz_counts(const unsigned char *p, uint32_t cnt[6])
{
    for (int i = 0; i < 6; i++) {
        cnt[i] = rl2_tz_be32(p + 20 + 4 * i);
    }
}

/* Bytes of the data block after a header with these counts; `tsize` the
 * size of a time (4 in version 1, 8 later). */
static size_t
rl2_tz_block(const uint32_t cnt[6], size_t tsize)
{
    return (size_t)cnt[3] * (tsize + 1) + (size_t)cnt[4] * 6 + cnt[5]
           + (size_t)cnt[2] * (tsize + 4) + cnt[1] + cnt[0];
}

static int
rl2_tz_counts_ok(const uint32_t cnt[6])
{
    return cnt[4] >= 1 && cnt[4] <= RL2_TZ_TYPES_MAX && cnt[5] >= 1
           && cnt[5] <= 1024 && cnt[3] <= RL2_TZ_TRANS_MAX && cnt[2] == 0
           && (cnt[1] == 0 || cnt[1] == cnt[4])
           && (cnt[0] == 0 || cnt[0] == cnt[4]);
}

/* The types' offsets, checked. */
static rl2_status_t
rl2_tz_types(const unsigned char *p, uint32_t n, int32_t *off, rl2_err_t *err)
{
    for (uint32_t i = 0; i < n; i++) {
        int32_t o = (int32_t)rl2_tz_be32(p + 6 * i);

        if (o < -RL2_TZ_OFF_MAX_S || o > RL2_TZ_OFF_MAX_S || p[6 * i + 4] > 1) {
            return rl2_tz_bad(err, "a local time type out of range");
        }
        off[i] = o;
    }
    return RL2_OK;
}

/* The footer "\n<TZ string>\n": has its rule a daylight part (',')? */
static rl2_status_t
rl2_tz_footer(const unsigned char *p, size_t len, int *rule, rl2_err_t *err)
{
    const unsigned char *end;

    if (len < 2 || p[0] != '\n') {
        return rl2_tz_bad(err, "no footer");
    }
    end = memchr(p + 1, '\n', len - 1);
    if (end == NULL) {
        return rl2_tz_bad(err, "the footer does not end");
    }
    *rule = memchr(p + 1, ',', (size_t)(end - p - 1)) != NULL;
    return RL2_OK;
}

rl2_status_t
rl2_tz_parse(rl2_policy_t *policy, const unsigned char *buf, size_t len,
             rl2_tz_t *tz, int *footer_rule, rl2_err_t *err)
{
    uint32_t             cnt[6];
    const unsigned char *p, *idx;
    int32_t              off[RL2_TZ_TYPES_MAX];
    size_t               v1;

    if (len < RL2_TZ_HEAD || memcmp(buf, "TZif", 4) != 0) {
        return rl2_tz_bad(err, "no TZif header");
    }
    if (buf[4] < '2') {
        return rl2_tz_bad(err, "version 1 has no 64-bit times");
    }
    rl2_tz_counts(buf, cnt);
    if (!rl2_tz_counts_ok(cnt)) {
        return rl2_tz_bad(err, "counts out of range (or leap seconds)");
    }
    v1 = RL2_TZ_HEAD + rl2_tz_block(cnt, 4);
    if (v1 + RL2_TZ_HEAD > len || memcmp(buf + v1, "TZif", 4) != 0) {
        return rl2_tz_bad(err, "no second header");
    }
    p = buf + v1;
    rl2_tz_counts(p, cnt);
    if (!rl2_tz_counts_ok(cnt)) {
        return rl2_tz_bad(err, "counts out of range (or leap seconds)");
    }
    if (rl2_tz_block(cnt, 8) > len - v1 - RL2_TZ_HEAD) {
        return rl2_tz_bad(err, "truncated");
    }
    p += RL2_TZ_HEAD;
    idx = p + (size_t)cnt[3] * 8;
    if (rl2_tz_types(idx + cnt[3], cnt[4], off, err) != RL2_OK) {
        return RL2_ERR_CONFIG;
    }
    tz->n = cnt[3];
    tz->first_off_s = off[0]; /* RFC 8536: type 0 before the first */
    tz->at_s = rl2_policy_alloc(policy, (cnt[3] + 1) * sizeof(int64_t));
    tz->off_s = rl2_policy_alloc(policy, (cnt[3] + 1) * sizeof(int32_t));
    if (tz->at_s == NULL || tz->off_s == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < cnt[3]; i++) {
        tz->at_s[i] = rl2_tz_be64(p + 8 * (size_t)i);
        if (idx[i] >= cnt[4] || (i > 0 && tz->at_s[i] <= tz->at_s[i - 1])) {
            return rl2_tz_bad(err, "transitions out of order or range");
        }
        tz->off_s[i] = off[idx[i]];
    }
    p += rl2_tz_block(cnt, 8);
    return rl2_tz_footer(p, (size_t)(buf + len - p), footer_rule, err);
}

/* The file, at most RL2_TZ_FILE_MAX bytes, into buf. */
static rl2_status_t
rl2_tz_read(const char *path, unsigned char *buf, size_t *len, rl2_err_t *err)
{
    int     fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    size_t  got = 0;
    ssize_t n;

    if (fd < 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "cannot open %s: %s", path,
                           strerror(errno));
    }
    while (got < RL2_TZ_FILE_MAX
           && (n = read(fd, buf + got, RL2_TZ_FILE_MAX - got)) != 0) {
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            close(fd);
            return rl2_err_set(err, RL2_ERR_CONFIG, "cannot read %s: %s", path,
                               strerror(errno));
        }
        got += (size_t)n;
    }
    close(fd);
    if (got == RL2_TZ_FILE_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "%s: larger than %d bytes",
                           path, RL2_TZ_FILE_MAX);
    }
    *len = got;
    return RL2_OK;
}

rl2_status_t
rl2_tz_load(rl2_policy_t *policy, const char *dir, const char *zone,
            int64_t now_s, rl2_tz_t *tz, rl2_err_t *err)
{
    char           path[512];
    unsigned char *buf;
    size_t         len = 0;
    int            rule = 0;
    rl2_status_t   st;

    if (!rl2_tz_name_ok(zone)) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "'%s' is not a zone name (like Europe/Berlin)",
                           zone);
    }
    snprintf(path, sizeof(path), "%s/%s", dir, zone);
    buf = malloc(RL2_TZ_FILE_MAX);
    if (buf == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    st = rl2_tz_read(path, buf, &len, err);
    if (st == RL2_OK) {
        st = rl2_tz_parse(policy, buf, len, tz, &rule, err);
    }
    free(buf);
    if (st == RL2_OK && rule
        && (tz->n == 0 || tz->at_s[tz->n - 1] < now_s + 366 * RL2_DAY_S)) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s: its transitions end within a year (a slim "
                           "TZif file); the rule after them is not read",
                           path);
    }
    return st;
}

int64_t
rl2_tz_local(const rl2_tz_t *tz, int64_t t)
{
    size_t lo = 0, hi = tz->n; /* the first transition after t: in lo..hi */

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (tz->at_s[mid] <= t) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return t + (lo == 0 ? tz->first_off_s : tz->off_s[lo - 1]);
}

/* Does window w hold the local day `day` (0 Monday) at second sod? */
static int
rl2_sched_holds(const rl2_sched_window_t *w, int day, int32_t sod)
{
    int prev = (day + 6) % 7;

    if ((w->days & (1u << day)) && sod >= w->from_s && sod < w->to_s) {
        return 1;
    }
    /* The part after midnight of a window that started the day before. */
    return (w->days & (1u << prev)) && sod + RL2_DAY_S >= w->from_s
           && sod + RL2_DAY_S < w->to_s;
}

int
rl2_schedule_window(const rl2_schedule_conf_t *c, int64_t t)
{
    int64_t local = rl2_tz_local(&c->tz, t);
    int64_t days = local >= 0 ? local / RL2_DAY_S
                              : -((-local + RL2_DAY_S - 1) / RL2_DAY_S);
    int32_t sod = (int32_t)(local - days * RL2_DAY_S);
    int     day = (int)(((days + 3) % 7 + 7) % 7); /* 1970-01-01: Thu */

    for (size_t i = 0; i < c->n_windows; i++) {
        if (rl2_sched_holds(&c->windows[i], day, sod)) {
            return (int)i;
        }
    }
    return -1;
}

uint32_t
rl2_schedule_at(const rl2_schedule_conf_t *c, int64_t t)
{
    int w = rl2_schedule_window(c, t);

    return w >= 0 ? c->windows[w].factor_ppm : RL2_OVR_FACTOR_ONE;
}

/* A new factor for the host: who exchanges it in logs the change. */
static void
rl2_sched_share(rl2_overrides_t *t, const rl2_schedule_conf_t *c, uint32_t to)
{
    uint32_t from;

    if (t == NULL) {
        return;
    }
    from = atomic_load_explicit(&t->shm->sched_ppm, memory_order_relaxed);
    if (from == to) {
        return;
    }
    from =
        atomic_exchange_explicit(&t->shm->sched_ppm, to, memory_order_acq_rel);
    if (from != to) {
        rl2_factor_alert(t, "schedule", from == 0 ? RL2_OVR_FACTOR_ONE : from,
                         to, "zone", c->zone);
    }
}

uint32_t
rl2_schedule_factor(rl2_overrides_t *t, const rl2_schedule_conf_t *c,
                    const rl2_clock_t *now)
{
    int64_t  sec = now->wall_us / RL2_US_PER_S;
    uint64_t cached =
        atomic_load_explicit(&c->cache->second_ppm, memory_order_relaxed);
    uint32_t ppm;

    if (cached != 0 && (int64_t)(cached >> 30) == sec) {
        return (uint32_t)(cached & ((1u << 30) - 1));
    }
    ppm = rl2_schedule_at(c, sec);
    if (sec >= 0 && sec < ((int64_t)1 << 33)) {
        atomic_store_explicit(&c->cache->second_ppm, (uint64_t)sec << 30 | ppm,
                              memory_order_relaxed);
    }
    rl2_sched_share(t, c, ppm);
    return ppm;
}

int
rl2_overrides_schedule_factor(const rl2_overrides_t *t, uint32_t *ppm)
{
    *ppm = atomic_load_explicit(&t->shm->sched_ppm, memory_order_acquire);
    return *ppm != 0;
}
