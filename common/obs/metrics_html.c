/*
 * metrics_html.c -- the status page: one self-contained HTML document
 * (inline CSS, charts drawn here as inline SVG, no script, no external
 * reference), in the spirit of mod_status.  Shows the store, circuit and
 * zone, then per rule the allowed and denied requests of each minute of
 * the last hour as a stacked bar chart, then the top limited and
 * near-limit clients.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ratelimit2/failover.h"
#include "ratelimit2/metrics.h"
#include "metrics_internal.h"
#include "store/store_internal.h"

#define CHART_W 600
#define CHART_H 120
#define BAR_W   (CHART_W / RL2_METRICS_MINUTES)

typedef mx_out_t page_t;

static const char *
rl2_html_escape(const char *s, char *buf, size_t len)
{
    size_t o = 0;

    for (; *s != '\0' && o + 7 < len; s++) {
        const char *e = *s == '<'   ? "&lt;"
                        : *s == '>' ? "&gt;"
                        : *s == '&' ? "&amp;"
                        : *s == '"' ? "&quot;"
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
        uint64_t pct =
            e->zone.entries ? e->zone.used * 100 / e->zone.entries : 0;

        rl2_mx_put(p,
                   "<tr><th>zone</th><td class=\"%s\">%" PRIu64 " of %" PRIu64
                   " entries (%" PRIu64 "%%), %" PRIu64
                   " evictions</td></tr>\n",
                   pct >= 80 ? "bad" : "", e->zone.used, e->zone.entries, pct,
                   e->zone.evictions);
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

        if (!rl2_metrics_minutes(m, s, now_wall_s, min, name)) {
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
                   now_wall_s - t[i].last_wall_s);
    }
    rl2_mx_put(p, "</table>\n");
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

        if (s == RL2_METRICS_SLOT_BYPASS
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
    rl2_mx_put(&p, "</body></html>\n");
}
