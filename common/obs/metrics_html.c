/*
 * metrics_html.c -- the status page: one self-contained HTML document
 * (inline CSS, charts drawn here as inline SVG, no script, no external
 * reference), in the spirit of mod_status.  Shows the store, circuit and
 * zone, then per rule the allowed and denied requests of each minute of
 * the last hour as a stacked bar chart, then the top limited and
 * near-limit clients, then the usage series of each rule x tier cell over
 * the last 24 hours (requests, refused and distinct clients per minute)
 * and the top clients by use, then the runtime overrides in force and
 * the newest automatic bans.  Whatever a client or an operator wrote (a user
 * name in a target, a reason) is escaped.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ratelimit2/failover.h"
#include "ratelimit2/metrics.h"
#include "metrics_internal.h"
#include "control/control_internal.h"
#include "store/store_internal.h"

#define CHART_W 600
#define CHART_H 120
#define BAR_W   (CHART_W / RL2_METRICS_MINUTES)

/* The usage charts: a point per minute of the last 24 hours, drawn in a
 * viewBox one unit wide per minute and shown half as wide. */
#define USE_W    RL2_USAGE_MINUTES
#define USE_H    100
#define USE_SHOW (RL2_USAGE_MINUTES / 2)
/* Cells charted; the rest are listed with their totals (ratelimit2ctl
 * usage shows them all). */
#define PAGE_USE_CHARTS 32

/* Entries the page lists: operators' overrides and automatic bans, the
 * newest first; ratelimit2ctl lists them all. */
#define PAGE_OVERRIDES 200
#define PAGE_AUTO_BANS 50

/* A text escaped, at most 6 bytes for one ("&quot;"), and its NUL. */
#define ESCAPED(n) (6 * (n) + 8)

typedef mx_out_t page_t;

/* Seconds from then_s to now_s, 0 if then is later or the difference
 * does not fit: a time read from the metrics object, which any process
 * of the server's user can write. */
static int64_t
rl2_html_age_s(int64_t now_s, int64_t then_s)
{
    int64_t age_s;

    if (__builtin_sub_overflow(now_s, then_s, &age_s) || age_s < 0) {
        return 0;
    }
    return age_s;
}

static const char *
rl2_html_escape(const char *s, char *buf, size_t len)
{
    size_t o = 0;

    for (; *s != '\0' && o + 7 < len; s++) {
        const char *e = *s == '<'    ? "&lt;"
                        : *s == '>'  ? "&gt;"
                        : *s == '&'  ? "&amp;"
                        : *s == '"'  ? "&quot;"
                        : *s == '\'' ? "&#39;"
                                     : NULL;

        if (e != NULL) {
            memcpy(buf + o, e, strlen(e));
            o += strlen(e);
        }
        else {
            buf[o++] = *s;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* The zone's rows: live keys against its entries, bytes, keys per limit
 * (escaped like every name, though zone.c passes only a policy name's
 * characters). */
static void
rl2_page_zone(page_t *p, const rl2_metrics_env_t *e)
{
    const rl2_zone_usage_t *u = &e->zone_usage;
    char                    h[ESCAPED(RL2_ZONE_LIMIT_NAME_MAX)];
    uint64_t pct = e->zone.entries ? u->live * 100 / e->zone.entries : 0;

    rl2_mx_put(p,
               "<tr><th>zone</th><td class=\"%s\">%" PRIu64
               " live keys of %" PRIu64 " entries (%" PRIu64 "%%), %" PRIu64
               " of %" PRIu64 " bytes in use, %" PRIu64
               " expired taken back, %" PRIu64 " evictions</td></tr>\n",
               pct >= 80 ? "bad" : "", u->live, e->zone.entries, pct,
               u->bytes_used, u->bytes_reserved, u->reclaimed,
               e->zone.evictions);
    if (u->n_limits == 0 && u->unnamed == 0) {
        return;
    }
    rl2_mx_put(p, "<tr><th>live keys per limit</th><td>");
    for (size_t i = 0; i < u->n_limits; i++) {
        rl2_mx_put(p, "%s%s %" PRIu64, i > 0 ? ", " : "",
                   rl2_html_escape(u->limits[i].name, h, sizeof(h)),
                   u->limits[i].keys);
    }
    if (u->unnamed > 0) {
        rl2_mx_put(p, "%s(other) %" PRIu64, u->n_limits > 0 ? ", " : "",
                   u->unnamed);
    }
    rl2_mx_put(p, "</td></tr>\n");
}

static void
rl2_page_head(page_t *p, const rl2_metrics_env_t *e, int64_t now_wall_s)
{
    static const char *const states[] = { "closed", "open", "half_open" };
    time_t                   t = (time_t)now_wall_s;
    struct tm                tm;
    char                     when[32] = "";

    if (gmtime_r(&t, &tm) != NULL) {
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
    }
    rl2_mx_put(p,
               "<!DOCTYPE html>\n<html lang=\"en\"><head>"
               "<meta charset=\"utf-8\">"
               "<title>ratelimit2 status</title><style>"
               "body{font:14px sans-serif;margin:1em 2em;color:#222}"
               "table{border-collapse:collapse;margin:.5em 0}"
               "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
               "svg{background:#fafafa;border:1px solid #ddd}"
               ".axis{width:%dpx;display:flex;justify-content:space-between;"
               "font-size:11px;color:#666}"
               ".a{fill:#3a7}.d{fill:#c33}.bad{color:#c33;font-weight:bold}"
               "polyline{fill:none;stroke-width:1;vector-effect:"
               "non-scaling-stroke}.ur{stroke:#3a7}.ud{stroke:#c33}"
               ".uc{stroke:#36c}"
               "</style></head><body>\n<h1>ratelimit2 status</h1>\n"
               "<p>%s &middot; up %" PRId64
               " s &middot; policy generation %lu</p>"
               "\n<table>\n",
               CHART_W, when, e->uptime_s, e->generation);
    if (e->redis) {
        rl2_mx_put(
            p,
            "<tr><th>store</th><td>redis (failover %s)</td></tr>\n"
            "<tr><th>circuit</th><td class=\"%s\">%s</td></tr>\n"
            "<tr><th>circuit opens</th><td>%" PRIu64 "</td></tr>\n"
            "<tr><th>refunds for redis</th><td class=\"%s\">%" PRIu64
            " queued now; %" PRIu64 " queued, %" PRIu64 " replayed, %" PRIu64
            " dropped, %" PRIu64 " failed</td></tr>\n",
            rl2_failover_mode_name((rl2_failover_mode_t)e->failover_mode),
            e->circuit == 0 ? "" : "bad",
            e->circuit >= 0 && e->circuit < 3 ? states[e->circuit] : "none",
            e->circuit_opens, e->refunds_dropped > 0 ? "bad" : "",
            e->refunds_pending, e->refunds_queued, e->refunds_replayed,
            e->refunds_dropped, e->refunds_failed);
    }
    else {
        rl2_mx_put(p, "<tr><th>store</th><td>local zone</td></tr>\n");
    }
    if (e->have_zone) {
        rl2_page_zone(p, e);
    }
    rl2_mx_put(p, "</table>\n");
}

/* One rule's last hour: a bar per minute, allowed below denied. */
static void
rl2_page_chart(page_t *p, const char *name,
               const uint64_t min[RL2_METRICS_MINUTES][2])
{
    uint64_t max = 0, sa = 0, sd = 0;
    char     n[4 * RL2_NAME_MAX + 8];

    for (unsigned i = 0; i < RL2_METRICS_MINUTES; i++) {
        max = min[i][0] + min[i][1] > max ? min[i][0] + min[i][1] : max;
        sa += min[i][0];
        sd += min[i][1];
    }
    rl2_html_escape(name, n, sizeof(n));
    rl2_mx_put(p,
               "<h3>%s: %" PRIu64 " allowed, %" PRIu64 " denied</h3>\n"
               "<svg class=\"chart\" role=\"img\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\">"
               "<title>%s per minute, last hour (peak %" PRIu64 ")</title>\n",
               n, sa, sd, CHART_W, CHART_H, CHART_W, CHART_H, n, max);
    for (unsigned i = 0; max > 0 && i < RL2_METRICS_MINUTES; i++) {
        int ha = (int)(min[i][0] * (CHART_H - 4) / max);
        int hd = (int)(min[i][1] * (CHART_H - 4) / max);
        int x = (int)i * BAR_W;

        if (ha > 0) {
            rl2_mx_put(p,
                       "<rect class=\"a\" x=\"%d\" y=\"%d\" width=\"%d\" "
                       "height=\"%d\"/>",
                       x, CHART_H - ha, BAR_W - 1, ha);
        }
        if (hd > 0) {
            rl2_mx_put(p,
                       "<rect class=\"d\" x=\"%d\" y=\"%d\" width=\"%d\" "
                       "height=\"%d\"/>",
                       x, CHART_H - ha - hd, BAR_W - 1, hd);
        }
    }
    rl2_mx_put(p,
               "\n</svg>\n<div class=\"axis\"><span>60 min ago</span>"
               "<span>peak %" PRIu64 "/min</span><span>now</span></div>\n",
               max);
}

/* Rules known to the metrics with no request in the last hour. */
static void
rl2_page_quiet(page_t *p, const rl2_metrics_t *m, int64_t now_wall_s)
{
    uint64_t    min[RL2_METRICS_MINUTES][2];
    char        name[RL2_NAME_MAX + 1], h[4 * RL2_NAME_MAX + 8];
    const char *sep = "";

    rl2_mx_put(p, "<p>No request in the last hour: ");
    for (unsigned s = 2; s < RL2_METRICS_RULES; s++) {
        uint64_t any = 0;

        if (s == RL2_METRICS_SLOT_UNMATCHED
            || !rl2_metrics_minutes(m, s, now_wall_s, min, name)) {
            continue;
        }
        for (unsigned i = 0; i < RL2_METRICS_MINUTES; i++) {
            any |= min[i][0] | min[i][1];
        }
        if (any == 0) {
            rl2_mx_put(p, "%s%s", sep, rl2_html_escape(name, h, sizeof(h)));
            sep = ", ";
        }
    }
    rl2_mx_put(p, "</p>\n");
}

static void
rl2_page_top(page_t *p, const char *title, const rl2_metrics_top_t *t, size_t n,
             int64_t now_wall_s)
{
    char c[4 * RL2_METRICS_CLIENT_MAX], r[4 * RL2_NAME_MAX + 8];

    rl2_mx_put(p, "<h2>%s</h2>\n", title);
    if (n == 0) {
        rl2_mx_put(p, "<p>none</p>\n");
        return;
    }
    rl2_mx_put(p, "<table><tr><th>client</th><th>rule</th><th>count</th>"
                  "<th>last seen</th></tr>\n");
    for (size_t i = 0; i < n; i++) {
        rl2_mx_put(p,
                   "<tr><td>%s</td><td>%s</td><td>%" PRIu64 "</td>"
                   "<td>%" PRId64 " s ago</td></tr>\n",
                   rl2_html_escape(t[i].client, c, sizeof(c)),
                   rl2_html_escape(t[i].rule, r, sizeof(r)), t[i].count,
                   rl2_html_age_s(now_wall_s, t[i].last_wall_s));
    }
    rl2_mx_put(p, "</table>\n");
}

/* ---- usage series ---- */

static uint64_t
rl2_page_value(const rl2_usage_point_t *pt, int which)
{
    return which == 0 ? pt->requests : which == 1 ? pt->refused : pt->clients;
}

/* One series of a cell as a polyline, a point per minute scaled to max;
 * a point level with both its neighbours adds nothing to the line and
 * is left out (a quiet night costs a few bytes).  Written in pieces of
 * rl2_mx_put's size. */
static void
rl2_page_line(page_t *p, const char *cls, const rl2_usage_point_t *pt, size_t n,
              int which, uint64_t max)
{
    char   buf[960];
    size_t o = 0;

    rl2_mx_put(p, "<polyline class=\"%s\" points=\"", cls);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = rl2_page_value(&pt[i], which);
        int      y = USE_H - (int)(v * (USE_H - 2) / max);

        if (i > 0 && i + 1 < n && v == rl2_page_value(&pt[i - 1], which)
            && v == rl2_page_value(&pt[i + 1], which)) {
            continue;
        }
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%zu,%d ", i, y);
        if (o > sizeof(buf) - 24) {
            rl2_mx_put(p, "%s", buf);
            o = 0;
        }
    }
    if (o > 0) {
        rl2_mx_put(p, "%s", buf);
    }
    rl2_mx_put(p, "\"/>");
}

/* One cell's last 24 hours: totals, then requests, refused and distinct
 * clients per minute on one scale. */
static void
rl2_page_use_cell(page_t *p, const rl2_usage_cell_t *c,
                  const rl2_usage_point_t *pt, size_t n)
{
    uint64_t req = 0, ref = 0, max = 0;
    uint32_t clients = 0, peak = 0;
    char     r[ESCAPED(RL2_NAME_MAX)], t[ESCAPED(RL2_NAME_MAX)];

    for (size_t i = 0; i < n; i++) {
        req += pt[i].requests;
        ref += pt[i].refused;
        max = pt[i].requests > max ? pt[i].requests : max;
        clients = pt[i].clients > clients ? pt[i].clients : clients;
        peak = pt[i].peak_ppm > peak ? pt[i].peak_ppm : peak;
    }
    max = clients > max ? clients : max;
    rl2_mx_put(p,
               "<h3>%s &middot; %s: %" PRIu64 " requests, %" PRIu64
               " refused (%" PRIu64 ".%" PRIu64 "%%); up to %" PRIu32
               " clients and %" PRIu64 " requests a minute; peak share of a "
               "limit %" PRIu32 ".%" PRIu32 "%%</h3>\n",
               rl2_html_escape(c->rule, r, sizeof(r)),
               rl2_html_escape(c->tier, t, sizeof(t)), req, ref,
               req ? ref * 1000 / req / 10 : 0, req ? ref * 1000 / req % 10 : 0,
               clients, max, peak / 10000, peak / 1000 % 10);
    if (max == 0) {
        rl2_mx_put(p, "<p>no request in the last 24 hours</p>\n");
        return;
    }
    rl2_mx_put(p,
               "<svg class=\"usage\" role=\"img\" width=\"%d\" "
               "height=\"%d\" viewBox=\"0 0 %d %d\" "
               "preserveAspectRatio=\"none\"><title>%s &middot; %s per "
               "minute, last 24 hours (peak %" PRIu64 ")</title>",
               USE_SHOW, USE_H, USE_W, USE_H, r, t, max);
    rl2_page_line(p, "ur", pt, n, 0, max);
    rl2_page_line(p, "ud", pt, n, 1, max);
    rl2_page_line(p, "uc", pt, n, 2, max);
    rl2_mx_put(p,
               "</svg>\n<div class=\"axis\" style=\"width:%dpx\">"
               "<span>24 h ago</span><span>peak %" PRIu64
               "/min</span><span>now</span></div>\n",
               USE_SHOW, max);
}

/* The top clients by use, with the largest share of a limit each had
 * in one of its windows. */
static void
rl2_page_use_top(page_t *p, const rl2_usage_t *u, int64_t now_wall_s)
{
    rl2_usage_client_t top[RL2_USAGE_TOP];
    size_t             n = rl2_usage_top(u, top, RL2_USAGE_TOP);
    char               c[ESCAPED(RL2_METRICS_CLIENT_MAX)];
    char               r[ESCAPED(RL2_NAME_MAX)];

    rl2_mx_put(p,
               "<h2>Top clients by use</h2>\n<p>One request in %d counted "
               "(counts are estimates, at most <em>error</em> too high "
               "besides sampling).</p>\n",
               RL2_USAGE_TOP_SAMPLE);
    if (n == 0) {
        rl2_mx_put(p, "<p>none</p>\n");
        return;
    }
    rl2_mx_put(p, "<table class=\"top-use\"><tr><th>client</th>"
                  "<th>rule</th><th>requests</th><th>error</th>"
                  "<th>peak share</th><th>last seen</th></tr>\n");
    for (size_t i = 0; i < n; i++) {
        rl2_mx_put(p,
                   "<tr><td>%s</td><td>%s</td><td>%" PRIu64 "</td><td>%" PRIu64
                   "</td><td>%" PRIu32 ".%" PRIu32 "%%</td><td>%" PRId64
                   " s ago</td></tr>\n",
                   rl2_html_escape(top[i].client, c, sizeof(c)),
                   rl2_html_escape(top[i].rule, r, sizeof(r)), top[i].requests,
                   top[i].error, top[i].peak_ppm / 10000,
                   top[i].peak_ppm / 1000 % 10,
                   rl2_html_age_s(now_wall_s, top[i].last_wall_s));
    }
    rl2_mx_put(p, "</table>\n");
}

static void
rl2_page_usage(page_t *p, const rl2_metrics_t *m, int64_t now_wall_s)
{
    rl2_usage_t        u;
    rl2_usage_cell_t  *cells;
    rl2_usage_point_t *pt;
    size_t             n;
    int64_t            first;

    rl2_mx_put(p, "<h2>Usage, last 24 hours</h2>\n<p>Per rule and tier, per "
                  "minute: <span style=\"color:#3a7\">requests</span>, "
                  "<span style=\"color:#c33\">refused</span>, "
                  "<span style=\"color:#36c\">distinct clients</span> "
                  "(estimated, about 1%% error).</p>\n");
    if (m == NULL) {
        rl2_mx_put(p, "<p>off</p>\n");
        return;
    }
    rl2_usage_view(m, &u);
    /* About 50 KiB and 64 KiB: not on a thread's stack. */
    cells = malloc(RL2_USAGE_CELLS * sizeof(*cells));
    pt = malloc(RL2_USAGE_MINUTES * sizeof(*pt));
    if (cells == NULL || pt == NULL) {
        rl2_mx_put(p, "<p class=\"bad\">not shown: out of memory</p>\n");
        free(cells);
        free(pt);
        return;
    }
    n = rl2_usage_cells(&u, cells, RL2_USAGE_CELLS);
    if (n == 0) {
        rl2_mx_put(p, "<p>no request counted yet</p>\n");
    }
    for (size_t i = 0; i < n && i < PAGE_USE_CHARTS; i++) {
        size_t k = rl2_usage_series(&u, i, RL2_USAGE_STEP_MINUTE, now_wall_s,
                                    pt, RL2_USAGE_MINUTES, &first);

        rl2_page_use_cell(p, &cells[i], pt, k);
    }
    if (n > PAGE_USE_CHARTS) {
        rl2_mx_put(p,
                   "<p>%zu more cells not charted; <code>ratelimit2ctl "
                   "usage</code> shows them all.</p>\n",
                   n - PAGE_USE_CHARTS);
    }
    free(cells);
    free(pt);
    rl2_page_use_top(p, &u, now_wall_s);
}

/* ---- runtime overrides ---- */

/* What an entry has left: "no end", or "N s". */
static const char *
rl2_page_left(const rl2_override_t *o, int64_t now_us, char *buf, size_t len)
{
    if (o->expires_us == 0) {
        return "no end";
    }
    snprintf(buf, len, "%" PRId64 " s",
             (o->expires_us - now_us + RL2_US_PER_S - 1) / RL2_US_PER_S);
    return buf;
}

/* One table cell holding text escaped (a piece of its own: the longest,
 * a reason, is under rl2_mx_put's 1023 bytes once escaped). */
static void
rl2_page_cell(page_t *p, const char *text)
{
    char h[ESCAPED(RL2_OVR_REASON_MAX)];

    rl2_mx_put(p, "<td>%s</td>", rl2_html_escape(text, h, sizeof(h)));
}

/* The mirror of the fleet's table: in sync, or stale since when. */
static void
rl2_page_mirror(page_t *p, rl2_overrides_t *t, int64_t now_wall_s)
{
    rl2_overrides_sync_t st;
    char                 cut[150], h[ESCAPED(sizeof(cut))];

    rl2_overrides_sync_status(t, &st);
    if (!st.redis) {
        rl2_mx_put(p, "<p>This host's table (no Redis side).</p>\n");
        return;
    }
    if (st.reachable && st.synced_us != 0) {
        rl2_mx_put(p,
                   "<p>Mirror of the fleet's table in Redis: in sync "
                   "(last sync %" PRId64 " s ago).</p>\n",
                   now_wall_s - st.synced_us / RL2_US_PER_S);
        return;
    }
    if (st.synced_us != 0) {
        rl2_mx_put(p,
                   "<p class=\"bad\">Mirror of the fleet's table in Redis: "
                   "stale since %" PRId64 " s ago",
                   now_wall_s - st.synced_us / RL2_US_PER_S);
    }
    else {
        rl2_mx_put(p, "<p class=\"bad\">Mirror of the fleet's table in "
                      "Redis: never synced");
    }
    /* Cut before it is escaped, to stay one piece of rl2_mx_put. */
    snprintf(cut, sizeof(cut), "%.*s", (int)sizeof(cut) - 1, st.error);
    rl2_mx_put(p, "%s%s.</p>\n", cut[0] != '\0' ? ": " : "",
               rl2_html_escape(cut, h, sizeof(h)));
}

static void
rl2_page_more(page_t *p, size_t all, size_t shown)
{
    if (all > shown) {
        rl2_mx_put(p,
                   "<p>%zu more not shown (the newest %zu are); "
                   "<code>ratelimit2ctl overrides</code> lists them "
                   "all.</p>\n",
                   all - shown, shown);
    }
}

/* Operators' overrides: kind, target, value, time left, reason,
 * author. */
static void
rl2_page_set(page_t *p, rl2_overrides_t *t, const rl2_clock_t *now,
             rl2_override_t *o)
{
    size_t shown,
        all = rl2_overrides_newest(t, 0, now, o, PAGE_OVERRIDES, &shown);
    char value[RL2_OVR_NAME_MAX + 16], left[32];

    rl2_mx_put(p, "<h3>Set by operators (%zu)</h3>\n", all);
    if (all == 0) {
        rl2_mx_put(p, "<p>none</p>\n");
        return;
    }
    rl2_mx_put(p, "<table class=\"overrides\"><tr><th>kind</th>"
                  "<th>target</th><th>value</th><th>time left</th>"
                  "<th>reason</th><th>author</th></tr>\n");
    for (size_t i = 0; i < shown; i++) {
        const char *kind = rl2_ovr_kind_name(o[i].kind);

        rl2_ovr_value_text(&o[i], value, sizeof(value));
        rl2_mx_put(p, "<tr>");
        rl2_page_cell(p, kind != NULL ? kind : "?");
        rl2_page_cell(p, o[i].target);
        rl2_page_cell(p, value);
        rl2_page_cell(p,
                      rl2_page_left(&o[i], now->wall_us, left, sizeof(left)));
        rl2_page_cell(p, o[i].reason);
        rl2_page_cell(p, o[i].author);
        rl2_mx_put(p, "</tr>\n");
    }
    rl2_mx_put(p, "</table>\n");
    rl2_page_more(p, all, shown);
}

/* Automatic bans: target, rule, time left, when made. */
static void
rl2_page_auto(page_t *p, rl2_overrides_t *t, const rl2_clock_t *now,
              rl2_override_t *o)
{
    size_t shown,
        all = rl2_overrides_newest(t, 1, now, o, PAGE_AUTO_BANS, &shown);
    char rule[RL2_NAME_MAX + 1], left[32];

    rl2_mx_put(p, "<h3>Automatic bans (%zu)</h3>\n", all);
    if (all == 0) {
        rl2_mx_put(p, "<p>none</p>\n");
        return;
    }
    rl2_mx_put(p, "<table class=\"auto-bans\"><tr><th>target</th>"
                  "<th>rule</th><th>time left</th><th>banned</th></tr>\n");
    for (size_t i = 0; i < shown; i++) {
        rl2_ovr_auto_rule(&o[i], rule, sizeof(rule));
        rl2_mx_put(p, "<tr>");
        rl2_page_cell(p, o[i].target);
        rl2_page_cell(p, rule);
        rl2_page_cell(p,
                      rl2_page_left(&o[i], now->wall_us, left, sizeof(left)));
        rl2_mx_put(p, "<td>%" PRId64 " s ago</td></tr>\n",
                   (now->wall_us - o[i].created_us) / RL2_US_PER_S);
    }
    rl2_mx_put(p, "</table>\n");
    rl2_page_more(p, all, shown);
}

static void
rl2_page_overrides(page_t *p, rl2_overrides_t *t)
{
    rl2_clock_t     now;
    rl2_override_t *o;

    rl2_mx_put(p, "<h2>Runtime overrides</h2>\n");
    if (t == NULL) {
        rl2_mx_put(p, "<p>off</p>\n");
        return;
    }
    /* About 80 KiB: not on a thread's stack. */
    o = malloc(PAGE_OVERRIDES * sizeof(*o));
    if (o == NULL) {
        rl2_mx_put(p, "<p class=\"bad\">not shown: out of memory</p>\n");
        return;
    }
    rl2_clock_now(&now);
    rl2_page_mirror(p, t, now.wall_us / RL2_US_PER_S);
    rl2_page_set(p, t, &now, o);
    rl2_page_auto(p, t, &now, o);
    free(o);
}

void
rl2_metrics_html(const rl2_metrics_t *m, const rl2_metrics_env_t *env,
                 int64_t now_wall_s, rl2_out_fn out, void *ctx)
{
    page_t            p = { out, ctx };
    uint64_t          min[RL2_METRICS_MINUTES][2];
    rl2_metrics_top_t top[RL2_METRICS_TOP];
    char              name[RL2_NAME_MAX + 1];
    int               charts = 0, quiet = 0;

    rl2_page_head(&p, env, now_wall_s);
    rl2_mx_put(&p,
               "<h2>Requests per minute, last hour</h2>\n<p>"
               "<svg width=\"10\" height=\"10\"><rect class=\"a\" width=\"10\" "
               "height=\"10\"/></svg> allowed "
               "<svg width=\"10\" height=\"10\"><rect class=\"d\" width=\"10\" "
               "height=\"10\"/></svg> denied</p>\n");
    for (unsigned s = 0; m != NULL && s < RL2_METRICS_RULES; s++) {
        uint64_t any = 0;

        /* Bypasses and requests no rule applied to are neither allowed
         * nor denied: the usage charts show them. */
        if (s == RL2_METRICS_SLOT_BYPASS || s == RL2_METRICS_SLOT_UNMATCHED
            || !rl2_metrics_minutes(m, s, now_wall_s, min, name)) {
            continue;
        }
        for (unsigned i = 0; i < RL2_METRICS_MINUTES; i++) {
            any |= min[i][0] | min[i][1];
        }
        if (any == 0) {
            quiet++; /* listed, not charted */
            continue;
        }
        rl2_page_chart(&p, name, (const uint64_t(*)[2])min);
        charts++;
    }
    if (charts == 0) {
        rl2_mx_put(&p,
                   "<p>no request counted by a rule in the last hour</p>\n");
    }
    if (quiet > 0) {
        rl2_page_quiet(&p, m, now_wall_s);
    }
    rl2_page_top(&p, "Top limited clients", top,
                 m != NULL ? rl2_metrics_top_limited(m, top) : 0, now_wall_s);
    rl2_page_top(&p, "Clients near a limit (80% or more used)", top,
                 m != NULL ? rl2_metrics_top_near(m, top) : 0, now_wall_s);
    rl2_page_usage(&p, m, now_wall_s);
    rl2_page_overrides(&p, env->overrides);
    rl2_mx_put(&p, "</body></html>\n");
}
