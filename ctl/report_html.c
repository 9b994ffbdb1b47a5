/*
 * report_html.c -- the report as one self-contained HTML page: inline CSS
 * and inline SVG charts, no script, no external asset.  A Content
 * Security Policy of default-src 'none' makes any accidental reference to
 * an outside resource fail loudly (a console error) rather than leak a
 * request.
 *
 * Charts: horizontal bars for denials by limit, by tier and top clients;
 * vertical bars for denials per minute over the last hour of the log.
 * Then a table of the latest entries (-n of them).
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "ctl.h"

#define RL2_BAR_W 420 /* px of the longest bar */
#define RL2_ROW_H 22

static void
rl2_html_head(FILE *f)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "\n<meta http-equiv=\"Content-Security-Policy\" content=\""
          "default-src 'none'; style-src 'unsafe-inline'\">\n"
          "<title>ratelimit2 violation report</title>\n<style>\n"
          "body{font:14px/1.4 sans-serif;margin:2em;color:#222}\n"
          "h1{font-size:20px}h2{font-size:16px;margin-top:2em}\n"
          "table{border-collapse:collapse}td,th{padding:2px 10px;"
          "text-align:left;border-bottom:1px solid #ddd}\n"
          "td.n{text-align:right}svg text{font:12px sans-serif}\n"
          "</style></head><body>\n",
          f);
}

static uint64_t
rl2_html_max(const rl2_ctl_row_t *rows, size_t n)
{
    uint64_t m = 1;

    for (size_t i = 0; i < n; i++) {
        m = rows[i].denials > m ? rows[i].denials : m;
    }
    return m;
}

/* Horizontal bars, one per row, labelled. */
static void
rl2_html_bars(FILE *f, const char *id, const rl2_ctl_row_t *rows, size_t n)
{
    uint64_t max = rl2_html_max(rows, n);
    size_t   h = n * RL2_ROW_H + 4;

    fprintf(f,
            "<svg id=\"%s\" "
            "width=\"%d\" height=\"%zu\" role=\"img\">\n",
            id, 260 + RL2_BAR_W + 80, h);
    for (size_t i = 0; i < n; i++) {
        uint64_t w = rows[i].denials * RL2_BAR_W / max;
        size_t   y = i * RL2_ROW_H;

        fprintf(f, "<text x=\"250\" y=\"%zu\" text-anchor=\"end\">", y + 15);
        rl2_ctl_escape(f, rows[i].name, 0);
        fprintf(f,
                "</text><rect x=\"260\" y=\"%zu\" width=\"%" PRIu64
                "\" height=\"%d\" fill=\"#c0392b\"/><text x=\"%" PRIu64
                "\" y=\"%zu\">%" PRIu64 "</text>\n",
                y + 3, w ? w : 1, RL2_ROW_H - 6, 266 + w, y + 15,
                rows[i].denials);
    }
    fputs("</svg>\n", f);
}

static void
rl2_html_minutes(FILE *f, const rl2_ctl_report_t *r)
{
    uint64_t max = 1;

    for (int i = 0; i < 60; i++) {
        max = r->per_minute[i] > max ? r->per_minute[i] : max;
    }
    fputs("<svg id=\"per-minute\" "
          "width=\"640\" height=\"170\" role=\"img\">\n"
          "<line x1=\"30\" y1=\"140\" x2=\"630\" y2=\"140\" "
          "stroke=\"#888\"/>\n",
          f);
    for (int i = 0; i < 60; i++) {
        uint64_t h = r->per_minute[i] * 130 / max;

        if (r->per_minute[i] > 0) {
            fprintf(f,
                    "<rect x=\"%d\" y=\"%" PRIu64 "\" width=\"8\" "
                    "height=\"%" PRIu64 "\" fill=\"#2c7fb8\"><title>%" PRIu64
                    " denials, %d min before the last entry"
                    "</title></rect>\n",
                    31 + i * 10, 140 - (h ? h : 1), h ? h : 1, r->per_minute[i],
                    59 - i);
        }
    }
    fprintf(f,
            "<text x=\"30\" y=\"160\">-60 min</text><text x=\"590\" "
            "y=\"160\">last</text><text x=\"0\" y=\"12\">%" PRIu64
            "</text>\n</svg>\n",
            max);
}

static void
rl2_html_limits(FILE *f, const rl2_ctl_report_t *r)
{
    fputs("<table id=\"limits\"><tr><th>rule/limit</th><th>denials</th>"
          "<th>limit</th><th>window (s)</th><th>peak in one window</th>"
          "<th>breathing room</th></tr>\n",
          f);
    for (size_t i = 0; i < r->n_limit; i++) {
        const rl2_ctl_row_t *row = &r->by_limit[i];

        fputs("<tr><td>", f);
        rl2_ctl_escape(f, row->name, 0);
        fprintf(f,
                "</td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRId64
                "</td><td class=\"n\">%" PRId64 "</td><td class="
                "\"n\">+%" PRIu64 "</td><td class=\"n\">",
                row->denials, row->limit, row->window_us / RL2_US_PER_S,
                row->peak);
        if (rl2_ctl_room(row) > 0) {
            fprintf(f, "%.2f", rl2_ctl_room(row));
        }
        else {
            fputs("-", f);
        }
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n", f);
}

static void
rl2_html_cell(FILE *f, const char *text)
{
    fputs("<td>", f);
    rl2_ctl_escape(f, text, 0);
    fputs("</td>", f);
}

/* The latest entries, newest last, as the log holds them. */
static void
rl2_html_latest(FILE *f, const rl2_ctl_report_t *r, long top)
{
    char when[32], count[24];

    fputs("<table id=\"latest\"><tr><th>time (UTC)</th><th>rule</th>"
          "<th>limit</th><th>tier</th><th>client</th><th>method</th>"
          "<th>path</th><th>factors</th><th>count</th><th>user agent</th>"
          "</tr>\n",
          f);
    for (size_t i = rl2_ctl_latest_from(r, top); i < r->n; i++) {
        const rl2_vlog_entry_t *e = &r->entries[i];
        time_t                  t = (time_t)(e->time_us / RL2_US_PER_S);
        struct tm               tm;

        when[0] = '\0';
        if (gmtime_r(&t, &tm) != NULL) {
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
        }
        fputs("<tr>", f);
        rl2_html_cell(f, when);
        rl2_html_cell(f, e->rule);
        rl2_html_cell(f, e->limit_name);
        rl2_html_cell(f, e->tier);
        rl2_html_cell(f, e->client);
        rl2_html_cell(f, e->method);
        rl2_html_cell(f, e->path);
        rl2_html_cell(f, e->factors);
        snprintf(count, sizeof(count), "%" PRId64, e->count);
        rl2_html_cell(f, e->count >= 0 ? count : "-");
        rl2_html_cell(f, e->user_agent);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
}

void
rl2_ctl_report_html(FILE *f, const rl2_ctl_report_t *r, long top)
{
    size_t n_top = r->n_client < (size_t)top ? r->n_client : (size_t)top;

    rl2_html_head(f);
    fprintf(f,
            "<h1>ratelimit2 violation report</h1>\n<p id=\"summary\">"
            "%zu entries, %" PRIu64 " denials (%" PRIu64 " sampled out); "
            "hit rate %.2f denials/min; sources: %s%s%s.</p>\n",
            r->n, rl2_ctl_total(r), r->skipped,
            rl2_ctl_per_minute(r, rl2_ctl_total(r)),
            r->have_ring ? "local ring" : "",
            r->have_ring && r->have_stream ? " + " : "",
            r->have_stream ? "redis stream" : "");
    fputs("<h2>Denials per minute, last hour of the log</h2>\n", f);
    rl2_html_minutes(f, r);
    fputs("<h2>Denials by rule/limit</h2>\n", f);
    rl2_html_bars(f, "by-limit", r->by_limit, r->n_limit);
    rl2_html_limits(f, r);
    fputs("<p>Breathing room: the limit plus the most denials one client "
          "met in one window, divided by the limit.</p>\n",
          f);
    fputs("<h2>Denials by tier</h2>\n", f);
    rl2_html_bars(f, "by-tier", r->by_tier, r->n_tier);
    if (r->n_variant > 0) {
        fputs("<h2>Denials by rule/variant</h2>\n<p>A rule's "
              "(challenger) row counts what its challenger would have "
              "refused.</p>\n",
              f);
        rl2_html_bars(f, "by-variant", r->by_variant, r->n_variant);
    }
    fputs("<h2>Top clients</h2>\n", f);
    rl2_html_bars(f, "top-clients", r->by_client, n_top);
    fputs("<h2>Latest denials</h2>\n", f);
    rl2_html_latest(f, r, top);
    fputs("</body></html>\n", f);
}
