/*
 * usage_html.c -- `ratelimit2ctl usage --html`: one self-contained page,
 * inline CSS and inline SVG, no script and no outside resource (a Content
 * Security Policy of default-src 'none' makes an accidental reference
 * fail in the browser instead of leaking a request).
 *
 * The table of the text output, then per rule x tier cell a chart of the
 * period: requests and refused as two lines on one scale, distinct
 * clients as a third on a scale of its own (right), then the top
 * clients.  Every name is HTML-escaped: they come from shared memory.
 */
#include <inttypes.h>
#include <stdio.h>

#include "ctl.h"
#include "usage.h"

/* The chart's plot area, in px. */
#define RL2_CHART_W    800
#define RL2_CHART_H    190
#define RL2_PLOT_LEFT  60
#define RL2_PLOT_RIGHT 700
#define RL2_PLOT_TOP   24
#define RL2_PLOT_BASE  160

static void
rl2_ctl_usage_html_head(FILE *f)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "\n<meta http-equiv=\"Content-Security-Policy\" content=\""
          "default-src 'none'; style-src 'unsafe-inline'\">\n"
          "<title>ratelimit2 usage</title>\n<style>\n"
          "body{font:14px/1.4 sans-serif;margin:2em;color:#222}\n"
          "h1{font-size:20px}h2{font-size:16px;margin-top:2em}"
          "h3{font-size:14px;margin:1.5em 0 .3em}\n"
          "table{border-collapse:collapse}td,th{padding:2px 10px;"
          "text-align:left;border-bottom:1px solid #ddd}\n"
          "td.n{text-align:right}svg text{font:12px sans-serif}\n"
          ".req{stroke:#2c7fb8}.ref{stroke:#c0392b}.cli{stroke:#27ae60;"
          "stroke-dasharray:4 3}\npolyline{fill:none;stroke-width:1.5}\n"
          "</style></head><body>\n",
          f);
}

static void
rl2_ctl_usage_html_text(FILE *f, const char *s)
{
    rl2_ctl_escape(f, s, 0);
}

/* The x of interval i of n, in the plot area. */
static double
rl2_ctl_usage_html_x(size_t i, size_t n)
{
    double w = RL2_PLOT_RIGHT - RL2_PLOT_LEFT;

    return n <= 1 ? RL2_PLOT_LEFT + w / 2
                  : RL2_PLOT_LEFT + w * (double)i / (double)(n - 1);
}

/* The y of v on a scale whose top is max (at least 1). */
static double
rl2_ctl_usage_html_y(uint64_t v, uint64_t max)
{
    return RL2_PLOT_BASE
           - (double)(RL2_PLOT_BASE - RL2_PLOT_TOP) * (double)v / (double)max;
}

/* One series as a polyline: field 0 requests, 1 refused, 2 clients. */
static void
rl2_ctl_usage_html_line(FILE *f, const rl2_ctl_usage_row_t *row, size_t n,
                        int field, uint64_t max, const char *cls)
{
    fprintf(f, "<polyline class=\"%s\" points=\"", cls);
    for (size_t i = 0; i < n; i++) {
        const rl2_usage_point_t *p = &row->points[i];
        uint64_t                 v = field == 0   ? p->requests
                                     : field == 1 ? p->refused
                                                  : p->clients;

        fprintf(f, "%s%.1f,%.1f", i ? " " : "", rl2_ctl_usage_html_x(i, n),
                rl2_ctl_usage_html_y(v, max));
    }
    fputs("\"/>\n", f);
}

static void
rl2_ctl_usage_html_chart(FILE *f, const rl2_ctl_usage_t *u,
                         const rl2_ctl_usage_row_t *row, size_t index)
{
    uint64_t max_req = 1, max_cli = 1;
    char     from[32], to[32];

    for (size_t i = 0; i < u->n_points; i++) {
        const rl2_usage_point_t *p = &row->points[i];

        max_req = p->requests > max_req ? p->requests : max_req;
        max_cli = p->clients > max_cli ? p->clients : max_cli;
    }
    rl2_ctl_usage_time(rl2_ctl_usage_start(u, 0), from, sizeof(from));
    rl2_ctl_usage_time(rl2_ctl_usage_start(u, u->n_points - 1), to, sizeof(to));
    fputs("<h3>", f);
    rl2_ctl_usage_html_text(f, row->cell.rule);
    fputs(" / ", f);
    rl2_ctl_usage_html_text(f, row->cell.tier);
    fprintf(f,
            "</h3>\n<svg class=\"chart\" id=\"cell-%zu\" width=\"%d\" "
            "height=\"%d\" role=\"img\"><title>",
            index, RL2_CHART_W, RL2_CHART_H);
    rl2_ctl_usage_html_text(f, row->cell.rule);
    fputs(" / ", f);
    rl2_ctl_usage_html_text(f, row->cell.tier);
    fprintf(f,
            ": requests, refused and distinct clients per %s</title>\n"
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n",
            u->step == RL2_USAGE_STEP_MINUTE ? "minute" : "hour", RL2_PLOT_LEFT,
            RL2_PLOT_BASE, RL2_PLOT_RIGHT, RL2_PLOT_BASE);
    rl2_ctl_usage_html_line(f, row, u->n_points, 0, max_req, "req");
    rl2_ctl_usage_html_line(f, row, u->n_points, 1, max_req, "ref");
    rl2_ctl_usage_html_line(f, row, u->n_points, 2, max_cli, "cli");
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%" PRIu64 "</text>"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>"
            "<text x=\"%d\" y=\"%d\" fill=\"#27ae60\">%" PRIu64
            "</text>\n<text x=\"%d\" y=\"%d\">%s</text>"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s UTC</text>\n"
            "<text x=\"%d\" y=\"14\" fill=\"#2c7fb8\">requests</text>"
            "<text x=\"%d\" y=\"14\" fill=\"#c0392b\">refused</text>"
            "<text x=\"%d\" y=\"14\" fill=\"#27ae60\">distinct clients "
            "(right scale)</text>\n</svg>\n",
            RL2_PLOT_LEFT - 6, RL2_PLOT_TOP + 4, max_req, RL2_PLOT_LEFT - 6,
            RL2_PLOT_BASE + 4, RL2_PLOT_RIGHT + 6, RL2_PLOT_TOP + 4, max_cli,
            RL2_PLOT_LEFT, RL2_PLOT_BASE + 20, from, RL2_PLOT_RIGHT,
            RL2_PLOT_BASE + 20, to, RL2_PLOT_LEFT, RL2_PLOT_LEFT + 90,
            RL2_PLOT_LEFT + 170);
}

static void
rl2_ctl_usage_html_cell(FILE *f, const char *text)
{
    fputs("<td>", f);
    rl2_ctl_usage_html_text(f, text);
    fputs("</td>", f);
}

static void
rl2_ctl_usage_html_table(FILE *f, const rl2_ctl_usage_t *u)
{
    char when[32];

    fputs("<table id=\"cells\"><tr><th>rule</th><th>tier</th>"
          "<th>requests</th><th>admitted</th><th>refused</th>"
          "<th>refused share</th><th>distinct clients</th>"
          "<th>in interval (UTC)</th><th>peak use of the limit</th>"
          "<th>room</th></tr>\n",
          f);
    for (size_t i = 0; i < u->n_rows; i++) {
        const rl2_ctl_usage_row_t *row = &u->rows[i];

        fputs("<tr>", f);
        rl2_ctl_usage_html_cell(f, row->cell.rule);
        rl2_ctl_usage_html_cell(f, row->cell.tier);
        fprintf(f,
                "<td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64
                "</td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">"
                "%.1f%%</td><td class=\"n\">%" PRIu32 "</td>",
                row->requests, row->admitted, row->refused,
                100 * rl2_ctl_usage_share(row->refused, row->requests),
                row->clients_max);
        if (row->clients_max > 0) {
            rl2_ctl_usage_time(rl2_ctl_usage_start(u, row->clients_at), when,
                               sizeof(when));
        }
        rl2_ctl_usage_html_cell(f, row->clients_max > 0 ? when : "-");
        if (row->peak_ppm > 0) {
            fprintf(f, "<td class=\"n\">%.1f%%</td><td class=\"n\">%.1f%%</td>",
                    row->peak_ppm / 1e4, 100 - row->peak_ppm / 1e4);
        }
        else {
            fputs("<td class=\"n\">-</td><td class=\"n\">-</td>", f);
        }
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void
rl2_ctl_usage_html_top(FILE *f, const rl2_ctl_usage_t *u, long top)
{
    char when[32];

    fprintf(f,
            "<h2>Top clients by use</h2>\n<p>Since the metrics object was "
            "made; one request in %d is sampled, so requests are estimates "
            "(at most <em>error</em> too high besides).</p>\n"
            "<table id=\"top\"><tr><th>client</th><th>rule</th>"
            "<th>requests</th><th>error</th><th>peak use of the limit</th>"
            "<th>last seen (UTC)</th></tr>\n",
            RL2_USAGE_TOP_SAMPLE);
    if (u->n_top == 0) {
        fputs("<tr><td colspan=\"6\">None yet.</td></tr>\n", f);
    }
    for (size_t i = 0; i < u->n_top && (long)i < top; i++) {
        const rl2_usage_client_t *c = &u->top[i];

        fputs("<tr>", f);
        rl2_ctl_usage_html_cell(f, c->client);
        rl2_ctl_usage_html_cell(f, c->rule);
        rl2_ctl_usage_time(c->last_wall_s, when, sizeof(when));
        fprintf(f,
                "<td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64
                "</td>",
                c->requests, c->error);
        /* 0: none of its sampled requests was admitted. */
        if (c->peak_ppm > 0) {
            fprintf(f, "<td class=\"n\">%.1f%%</td>", c->peak_ppm / 1e4);
        }
        else {
            fputs("<td class=\"n\">-</td>", f);
        }
        rl2_ctl_usage_html_cell(f, when);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

void
rl2_ctl_usage_html(FILE *f, const rl2_ctl_usage_t *u, long top)
{
    char from[32], to[32], span[32];

    rl2_ctl_usage_time(rl2_ctl_usage_start(u, 0), from, sizeof(from));
    rl2_ctl_usage_time(u->now_s, to, sizeof(to));
    rl2_ctl_usage_html_head(f);
    fputs("<h1>ratelimit2 usage</h1>\n<p id=\"summary\">", f);
    rl2_ctl_usage_html_text(f, u->metrics);
    rl2_ctl_usage_span(u->since_s, span, sizeof(span));
    fprintf(f, ", the last %s by %s: %s to %s UTC", span,
            u->step == RL2_USAGE_STEP_MINUTE ? "minute" : "hour", from, to);
    if (u->rule != NULL) {
        fputs(", rule ", f);
        rl2_ctl_usage_html_text(f, u->rule);
    }
    fputs(".</p>\n<h2>By rule and tier</h2>\n", f);
    if (u->n_rows == 0) {
        fputs("<p>No request counted.</p>\n", f);
    }
    else {
        rl2_ctl_usage_html_table(f, u);
        fputs("<p>Distinct clients: those of the busiest interval (an "
              "estimate per interval; intervals do not add up).  Peak: the "
              "largest share of its limit one client used in one window; "
              "room: 100% &minus; peak.</p>\n",
              f);
    }
    for (size_t i = 0; i < u->n_rows; i++) {
        rl2_ctl_usage_html_chart(f, u, &u->rows[i], i);
    }
    rl2_ctl_usage_html_top(f, u, top);
    fputs("</body></html>\n", f);
}
