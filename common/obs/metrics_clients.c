/*
 * metrics_clients.c -- who is refused and who is close to a limit: the
 * two top-client tables of the status page, the event=limited and
 * ban_candidate alerts per client address, and the once-a-second upkeep
 * that sweeps the zone's expired entries, raises zone_full and evictions
 * alerts and snapshots the totals for the per-minute charts.
 *
 * The top tables are space-saving top-K summaries: a client not in a
 * full table replaces the one with the smallest count and inherits that
 * count plus one, so a heavy client is never missed and a count is at
 * most the evicted count too high.  The alert table is a small open
 * addressing table keyed by address; an entry is reused only once its
 * client has been quiet for longer than both the line interval and the
 * ban window, so a flooding client keeps its entry and can never get a
 * second line within one interval.  When no entry can be reused the
 * refusal is held back (counted, no line).
 *
 * Both are touched only for refused or near-limit requests, under one
 * spin lock held for a few hundred instructions; lines are sent after it
 * is released.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ratelimit2/headers.h"

#include "metrics_internal.h"
#include "base/base_internal.h"
#include "store/store_internal.h"

#define LOCK_SPINS \
    (1u << 16) /* give up (skip the update) after this: \
                  the holder is stopped, not slow */
#define CLIENT_PROBES 8

/* ---- the lock ---------------------------------------------------------- */

int
rl2_mx_lock(mx_shm_t *s)
{
    uint32_t me = (uint32_t)getpid(), holder;

    for (unsigned spins = 1; spins < LOCK_SPINS; spins++) {
        uint32_t free_word = 0;

        if (atomic_compare_exchange_weak_explicit(&s->lock, &free_word, me,
                                                  memory_order_acquire,
                                                  memory_order_relaxed)) {
            return 1;
        }
        if ((spins & 1023) == 0) {
            holder = atomic_load_explicit(&s->lock, memory_order_relaxed);
            /* The holder died inside the lock: take the word back. */
            if (holder != 0 && kill((pid_t)holder, 0) != 0 && errno == ESRCH) {
                atomic_compare_exchange_strong(&s->lock, &holder, 0);
            }
            sched_yield();
        }
    }
    return 0;
}

void
rl2_mx_unlock(mx_shm_t *s)
{
    atomic_store_explicit(&s->lock, 0, memory_order_release);
}

/* ---- top tables -------------------------------------------------------- */

static void
rl2_mx_top_add(mx_top_t *t, const char *client, unsigned rule, int64_t wall_s)
{
    size_t min = 0, n;

    for (size_t i = 0; i < RL2_METRICS_TOP; i++) {
        if (strncmp(t[i].client, client, RL2_METRICS_CLIENT_MAX - 1) == 0
            && t[i].client[0] != '\0') {
            t[i].count++;
            t[i].rule = rule;
            t[i].last_wall_s = wall_s;
            return;
        }
        if (t[i].client[0] == '\0'
            || (t[min].client[0] != '\0' && t[i].count < t[min].count)) {
            min = i;
        }
    }
    if (t[min].client[0] == '\0') {
        t[min].count = 0;
    }
    n = strnlen(client, RL2_METRICS_CLIENT_MAX - 1);
    memcpy(t[min].client, client, n);
    t[min].client[n] = '\0';
    t[min].count++;
    t[min].rule = rule;
    t[min].last_wall_s = wall_s;
}

void
rl2_mx_near(rl2_metrics_t *m, const char *client, unsigned rule_slot,
            const rl2_clock_t *now)
{
    if (rl2_mx_lock(m->shm)) {
        rl2_mx_top_add(m->shm->top_near, client, rule_slot,
                       now->wall_us / RL2_US_PER_S);
        rl2_mx_unlock(m->shm);
    }
}

/* ---- per-client alerts ------------------------------------------------- */

static uint32_t
rl2_mx_addr_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 16777619u;
    }
    return h;
}

/* The client's entry, a free one, or one whose client went quiet; NULL
 * when every probed entry belongs to an active client. */
static mx_client_t *
rl2_mx_client_entry(rl2_metrics_t *m, const char *addr, int64_t now_ms)
{
    mx_client_t *t = m->shm->clients, *reuse = NULL;
    int64_t      quiet = m->conf.limited_interval_ms > m->conf.ban_window_ms
                             ? m->conf.limited_interval_ms
                             : m->conf.ban_window_ms;
    uint32_t     h = rl2_mx_addr_hash(addr);

    for (unsigned i = 0; i < CLIENT_PROBES; i++) {
        mx_client_t *e = &t[(h + i) % RL2_METRICS_ALERT_CLIENTS];

        if (strncmp(e->client, addr, RL2_METRICS_CLIENT_MAX - 1) == 0) {
            return e;
        }
        if (reuse == NULL
            && (e->client[0] == '\0' || now_ms - e->seen_ms >= quiet
                || now_ms < e->seen_ms)) {
            reuse = e;
        }
    }
    if (reuse != NULL) {
        size_t n = strnlen(addr, RL2_METRICS_CLIENT_MAX - 1);

        memset(reuse, 0, sizeof(*reuse));
        memcpy(reuse->client, addr, n);
    }
    return reuse;
}

typedef struct {
    int      line; /* send event=limited */
    uint64_t suppressed;
    int      ban; /* send ban_candidate */
    uint32_t ban_count;
} mx_due_t;

static void
rl2_mx_client_refused(rl2_metrics_t *m, mx_client_t *e, int64_t now_ms,
                      mx_due_t *due)
{
    const rl2_metrics_conf_t *c = &m->conf;

    e->seen_ms = now_ms;
    if (c->limited_interval_ms > 0) {
        if (e->line_ms == 0 || now_ms - e->line_ms >= c->limited_interval_ms
            || now_ms < e->line_ms) {
            due->line = 1;
            due->suppressed = e->held;
            e->line_ms = now_ms > 0 ? now_ms : 1;
            e->held = 0;
        }
        else {
            e->held++;
            atomic_fetch_add_explicit(&m->shm->limited_held, 1,
                                      memory_order_relaxed);
        }
    }
    if (c->ban_count > 0) {
        if (e->win_ms == 0 || now_ms - e->win_ms >= c->ban_window_ms
            || now_ms < e->win_ms) {
            e->win_ms = now_ms > 0 ? now_ms : 1;
            e->win_count = 0;
            e->ban_sent = 0;
        }
        e->win_count++;
        if (e->win_count > c->ban_count && !e->ban_sent) {
            e->ban_sent = 1;
            due->ban = 1;
            due->ban_count = e->win_count;
        }
    }
}

/* The lines, sent once the lock is released.  The address comes first
 * after "event=limited" (fail2ban's <HOST>); every other value is a name
 * from the policy or a number. */
static void
rl2_mx_send_lines(rl2_metrics_t *m, const rl2_verdict_t *v, unsigned tier,
                  const mx_due_t *due)
{
    const rl2_layer_t *l = v->shown >= 0 ? &v->layers[v->shown] : NULL;
    char               retry[24], count[24], window[24];
    const char        *tier_name = m->shm->tiers[tier].name;
    rl2_alert_field_t  f[6] = {
         { "client", v->client_ip },
         { "rule", l != NULL ? l->rule->name : "-" },
         { "limit", l != NULL ? l->limit->name : "-" },
         { "tier", tier_name },
         { "retry_after", retry },
         { "key", l != NULL ? l->client : "-" },
    };
    size_t    n = l != NULL && strcmp(l->client, v->client_ip) != 0 ? 6 : 5;
    rl2_err_t err;

    snprintf(retry, sizeof(retry), "%lld", (long long)rl2_retry_after_s(v));
    if (due->line
        && rl2_alert_emit(m->alert, RL2_ALERT_LIMITED, f, n, due->suppressed,
                          &err)
               == RL2_OK) {
        atomic_fetch_add_explicit(&m->shm->limited_lines, 1,
                                  memory_order_relaxed);
    }
    if (due->ban) {
        rl2_alert_field_t b[4] = {
            { "client", v->client_ip },
            { "rule", f[1].value },
            { "count", count },
            { "window", window },
        };

        snprintf(count, sizeof(count), "%" PRIu32, due->ban_count);
        snprintf(window, sizeof(window), "%llds",
                 (long long)(m->conf.ban_window_ms / 1000));
        atomic_fetch_add_explicit(&m->shm->ban_candidates, 1,
                                  memory_order_relaxed);
        rl2_alert_emit(m->alert, RL2_ALERT_BAN_CANDIDATE, b, 4, 0, &err);
    }
}

void
rl2_mx_limited(rl2_metrics_t *m, const rl2_verdict_t *v, unsigned rule_slot,
               unsigned tier, const rl2_clock_t *now)
{
    const rl2_layer_t *l = v->shown >= 0 ? &v->layers[v->shown] : NULL;
    int64_t            now_ms = now->mono_us / 1000;
    mx_due_t           due = { 0, 0, 0, 0 };
    mx_client_t       *e;

    if (!rl2_mx_lock(m->shm)) {
        return;
    }
    rl2_mx_top_add(m->shm->top_limited, l != NULL ? l->client : v->client_ip,
                   rule_slot, now->wall_us / RL2_US_PER_S);
    if (m->alert != NULL && v->client_ip[0] != '\0'
        && (m->conf.limited_interval_ms > 0 || m->conf.ban_count > 0)) {
        e = rl2_mx_client_entry(m, v->client_ip, now_ms);
        if (e != NULL) {
            rl2_mx_client_refused(m, e, now_ms, &due);
        }
        else {
            atomic_fetch_add_explicit(&m->shm->limited_held, 1,
                                      memory_order_relaxed);
        }
    }
    rl2_mx_unlock(m->shm);
    if (due.line || due.ban) {
        rl2_mx_send_lines(m, v, tier, &due);
    }
}

/* ---- upkeep: the zone ------------------------------------------------- */

/* zone_full fires on the zone's live keys: its `used` right after the
 * upkeep's sweep, which is above the live keys by the keys expired in the
 * last ceil(entries / RL2_ZONE_SWEEP_PER_UPKEEP) seconds at most
 * (zone.c); the upkeep sweeps only while `used` is at a level or a level
 * waits to be re-armed (rl2_mx_zone_sweep_due).  Two levels, warning and
 * critical, each a share of the entries or bytes in use; a level fires once
 * when the zone climbs to it, and is re-armed when the zone falls below 7/8 of
 * it (80% re-arms below 70%, 40M below 35M), so a zone that hovers at a
 * threshold sends one line, not one a second. */

enum { MX_ZONE_CLEAR = 0, MX_ZONE_WARNING = 1, MX_ZONE_CRITICAL = 2 };

/* Is the zone at or above t, or (rearm) at or above 7/8 of it? */
static int
rl2_mx_zone_at(const rl2_zone_threshold_t *t, const rl2_zone_stats_t *z,
               int rearm)
{
    uint64_t live = z->used;
    uint64_t bytes = z->fixed_bytes + live * z->entry_bytes;

    if (t->share_ppm != 0) {
        /* live / entries >= share, in integers: at most 2^26 entries */
        uint64_t lhs = live * 1000000 * (rearm ? 8 : 1);
        uint64_t rhs = (uint64_t)t->share_ppm * z->entries * (rearm ? 7 : 1);

        return lhs >= rhs;
    }
    if (t->bytes != 0) {
        return rearm ? bytes * 8 >= t->bytes * 7 : bytes >= t->bytes;
    }
    return 0;
}

static void
rl2_mx_zone_threshold_text(const rl2_zone_threshold_t *t, char *buf, size_t len)
{
    if (t->share_ppm != 0) {
        snprintf(buf, len, "%" PRIu32 "%%", t->share_ppm / 10000);
    }
    else {
        snprintf(buf, len, "%" PRIu64, t->bytes);
    }
}

static void
rl2_mx_zone_alert(rl2_metrics_t *m, const rl2_zone_stats_t *z, uint32_t level)
{
    const rl2_zone_threshold_t *t = level == MX_ZONE_CRITICAL
                                        ? &m->conf.zone_critical
                                        : &m->conf.zone_warning;
    char                        pct[24], live[24], entries[24], bytes[24];
    char                        threshold[24];
    rl2_alert_field_t           f[6] = {
                  { "level", level == MX_ZONE_CRITICAL ? "critical" : "warning" },
                  { "live", live },
                  { "entries", entries },
                  { "percent", pct },
                  { "bytes", bytes },
                  { "threshold", threshold },
    };
    rl2_err_t err;

    snprintf(pct, sizeof(pct), "%" PRIu64, z->used * 100 / z->entries);
    snprintf(live, sizeof(live), "%" PRIu64, z->used);
    snprintf(entries, sizeof(entries), "%" PRIu64, z->entries);
    snprintf(bytes, sizeof(bytes), "%" PRIu64,
             z->fixed_bytes + z->used * z->entry_bytes);
    rl2_mx_zone_threshold_text(t, threshold, sizeof(threshold));
    /* A warning is rate-limited like any kind; a critical line always
     * goes (the re-arming already limits it). */
    if (level == MX_ZONE_CRITICAL) {
        rl2_alert_emit(m->alert, RL2_ALERT_ZONE_FULL, f, 6, 0, &err);
    }
    else {
        rl2_alert_send(m->alert, RL2_ALERT_ZONE_FULL, f, 6, NULL, &err);
    }
}

/* Does zone_full need the live keys?  Entries holding a key are never
 * fewer than the live keys, so while they are below every level and no
 * level waits to be re-armed the answer is known without a sweep: a zone
 * far from full (most of them, and the instruction budget's bench, whose
 * upkeep runs with every second of a request under callgrind) pays
 * nothing for it. */
static int
rl2_mx_zone_sweep_due(const rl2_metrics_t *m, const rl2_zone_stats_t *z)
{
    return atomic_load(&m->shm->zone_level) != MX_ZONE_CLEAR
           || rl2_mx_zone_at(&m->conf.zone_warning, z, 0)
           || rl2_mx_zone_at(&m->conf.zone_critical, z, 0);
}

static void
rl2_mx_upkeep_zone(rl2_metrics_t *m, const rl2_zone_stats_t *z)
{
    uint32_t was = atomic_load(&m->shm->zone_level), armed = was, level;

    if (z->entries == 0) {
        return;
    }
    /* Re-arm each level the zone fell below 7/8 of. */
    if (armed == MX_ZONE_CRITICAL
        && !rl2_mx_zone_at(&m->conf.zone_critical, z, 1)) {
        armed = MX_ZONE_WARNING;
    }
    if (armed == MX_ZONE_WARNING
        && !rl2_mx_zone_at(&m->conf.zone_warning, z, 1)) {
        armed = MX_ZONE_CLEAR;
    }
    level = rl2_mx_zone_at(&m->conf.zone_critical, z, 0)  ? MX_ZONE_CRITICAL
            : rl2_mx_zone_at(&m->conf.zone_warning, z, 0) ? MX_ZONE_WARNING
                                                          : MX_ZONE_CLEAR;
    level = level > armed ? level : armed;
    if (level != was
        && atomic_compare_exchange_strong(&m->shm->zone_level, &was, level)
        && level > armed) {
        rl2_mx_zone_alert(m, z, level);
    }
}

static void
rl2_mx_upkeep_evictions(rl2_metrics_t *m, const rl2_zone_stats_t *z,
                        int64_t now_ms)
{
    int64_t   mark_ms = atomic_load(&m->shm->evict_mark_ms);
    uint64_t  delta;
    char      n[24], per[24];
    rl2_err_t err;

    if (mark_ms != 0 && now_ms - mark_ms < 60000 && now_ms >= mark_ms) {
        return;
    }
    if (!atomic_compare_exchange_strong(&m->shm->evict_mark_ms, &mark_ms,
                                        now_ms)) {
        return;
    }
    delta = z->evictions - atomic_exchange(&m->shm->evict_mark, z->evictions);
    if (mark_ms != 0 && m->conf.eviction_alert > 0
        && delta >= m->conf.eviction_alert && delta <= z->evictions) {
        rl2_alert_field_t f[2] = { { "evictions", n }, { "per", per } };

        snprintf(n, sizeof(n), "%" PRIu64, delta);
        snprintf(per, sizeof(per), "%llds",
                 (long long)((now_ms - mark_ms) / 1000));
        rl2_alert_send(m->alert, RL2_ALERT_EVICTIONS, f, 2, NULL, &err);
    }
}

void
rl2_mx_upkeep(rl2_metrics_t *m, const rl2_clock_t *now)
{
    int64_t          now_ms = now->mono_us / 1000;
    int64_t          next = atomic_load(&m->shm->next_check_us);
    rl2_zone_stats_t z;
    rl2_err_t        err;

    /* One process a second does it; the others go on. */
    if (now->mono_us < next
        || !atomic_compare_exchange_strong(&m->shm->next_check_us, &next,
                                           now->mono_us + RL2_US_PER_S)) {
        return;
    }
    if (rl2_mx_snapshot(m, now->wall_us) && m->alert != NULL
        && m->conf.anomaly_min > 0) {
        rl2_mx_upkeep_anomaly(m, now->wall_us);
    }
    rl2_mx_use_upkeep(m->shm);
    if (m->zone == NULL || m->alert == NULL
        || rl2_zone_stats(m->zone, &z, &err) != RL2_OK) {
        return;
    }
    /* Swept first when zone_full has something to decide, so that it
     * sees live keys, not entries whose keys expired since (the local
     * store's expiry is on the monotonic clock). */
    if (rl2_mx_zone_sweep_due(m, &z)
        && (rl2_zone_sweep(m->zone, now->mono_us, RL2_ZONE_SWEEP_PER_UPKEEP,
                           NULL, &err)
                != RL2_OK
            || rl2_zone_stats(m->zone, &z, &err) != RL2_OK)) {
        return;
    }
    rl2_mx_upkeep_zone(m, &z);
    rl2_mx_upkeep_evictions(m, &z, now_ms);
}

/* One line per ban, the address first after the event (fail2ban's
 * <HOST>), then what was banned (an address, a network, user:NAME or
 * key#HASH) and for how long. */
void
rl2_mx_banned(rl2_metrics_t *m, const rl2_verdict_t *v)
{
    const rl2_layer_t *l = v->shown >= 0 ? &v->layers[v->shown] : NULL;
    char               secs[24];
    rl2_alert_field_t  f[4] = {
         { "client", v->client_ip },
         { "target", v->banned_target },
         { "seconds", secs },
         { "rule", l != NULL ? l->rule->name : "-" },
    };
    rl2_err_t err;

    snprintf(secs, sizeof(secs), "%lld", (long long)v->banned_for_s);
    atomic_fetch_add_explicit(&m->shm->bans, 1, memory_order_relaxed);
    rl2_alert_emit(m->alert, RL2_ALERT_BANNED, f, 4, 0, &err);
}
