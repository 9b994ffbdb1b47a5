/*
 * usage_out.c -- `ratelimit2ctl usage` as text (for a terminal), JSON
 * (for scripts: the text's figures plus every interval) and CSV (one row
 * per rule x tier cell per interval, for a spreadsheet), and the figures
 * they and the HTML page share, folded once per cell from its series.
 *
 * Names come from a shared-memory object any process of the server's
 * user can write: each is escaped for the format it goes into.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "ctl.h"
#include "usage.h"

void
rl2_ctl_usage_fold(rl2_ctl_usage_row_t *row, size_t n_points)
{
    row->requests = row->admitted = row->refused = 0;
    row->clients_max = row->peak_ppm = 0;
    row->clients_at = row->peak_at = 0;
    for (size_t i = 0; i < n_points; i++) {
        const rl2_usage_point_t *p = &row->points[i];

        row->requests += p->requests;
        row->admitted += p->admitted;
        row->refused += p->refused;
        /* Ties go to the latest interval: the one an operator looks at
         * first. */
        if (p->clients > 0 && p->clients >= row->clients_max) {
            row->clients_max = p->clients;
            row->clients_at = i;
        }
        if (p->peak_ppm > 0 && p->peak_ppm >= row->peak_ppm) {
            row->peak_ppm = p->peak_ppm;
            row->peak_at = i;
        }
    }
}

double
rl2_ctl_usage_share(uint64_t part, uint64_t whole)
{
    return whole == 0 ? 0 : (double)part / (double)whole;
}

int64_t
rl2_ctl_usage_start(const rl2_ctl_usage_t *u, size_t i)
{
    return u->first_start_s + (int64_t)i * u->step;
}

void
rl2_ctl_usage_time(int64_t s, char *buf, size_t size)
{
    time_t    t = (time_t)s;
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL
        || strftime(buf, size, "%Y-%m-%d %H:%M", &tm) == 0) {
        snprintf(buf, size, "-");
    }
}

void
rl2_ctl_usage_span(int64_t s, char *buf, size_t size)
{
    /* A day or two reads better in hours (the default is 24h). */
    if (s % 86400 == 0 && s > 2 * 86400) {
        snprintf(buf, size, "%" PRId64 "d", s / 86400);
    }
    else if (s % 3600 == 0) {
        snprintf(buf, size, "%" PRId64 "h", s / 3600);
    }
    else if (s % 60 == 0) {
        snprintf(buf, size, "%" PRId64 "m", s / 60);
    }
    else {
        snprintf(buf, size, "%" PRId64 "s", s);
    }
}

/* "2026-12-06T14:05:00Z": the CSV's and JSON's time of a second. */
static void
rl2_ctl_usage_iso(int64_t s, char *buf, size_t size)
{
    time_t    t = (time_t)s;
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL
        || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        snprintf(buf, size, "-");
    }
}

static const char *
rl2_ctl_usage_step_name(const rl2_ctl_usage_t *u)
{
    return u->step == RL2_USAGE_STEP_MINUTE ? "minute" : "hour";
}

/* A name for a text column, padded to width, then a space. */
static void
rl2_ctl_usage_col(FILE *f, const char *name, int width)
{
    rl2_ctl_text_safe(f, name);
    for (size_t n = rl2_ctl_text_safe_len(name); n < (size_t)width; n++) {
        fputc(' ', f);
    }
    fputc(' ', f);
}

/* The width of the rule (or tier) column: its longest name, at most 40
 * (a longer one pushes its line's other columns right). */
static int
rl2_ctl_usage_width(const rl2_ctl_usage_t *u, int tier)
{
    int w = 4; /* "rule", "tier" */

    for (size_t i = 0; i < u->n_rows; i++) {
        const char *s = tier ? u->rows[i].cell.tier : u->rows[i].cell.rule;
        int         n = (int)rl2_ctl_text_safe_len(s);

        w = n > w ? n : w;
    }
    return w > 40 ? 40 : w;
}

static void
rl2_ctl_usage_text_row(FILE *f, const rl2_ctl_usage_t *u,
                       const rl2_ctl_usage_row_t *row, int wr, int wt)
{
    char when[32];

    rl2_ctl_usage_col(f, row->cell.rule, wr);
    rl2_ctl_usage_col(f, row->cell.tier, wt);
    fprintf(f, "%10" PRIu64 " %10" PRIu64 " %10" PRIu64 " %7.1f%%",
            row->requests, row->admitted, row->refused,
            100 * rl2_ctl_usage_share(row->refused, row->requests));
    if (row->clients_max > 0) {
        rl2_ctl_usage_time(rl2_ctl_usage_start(u, row->clients_at), when,
                           sizeof(when));
        fprintf(f, " %8" PRIu32 " %-16s", row->clients_max, when);
    }
    else {
        fprintf(f, " %8s %-16s", "0", "-");
    }
    if (row->peak_ppm > 0) {
        fprintf(f, " %6.1f%% %6.1f%%\n", row->peak_ppm / 1e4,
                100 - row->peak_ppm / 1e4);
    }
    else {
        fprintf(f, " %7s %7s\n", "-", "-");
    }
}

static void
rl2_ctl_usage_text_top(FILE *f, const rl2_ctl_usage_t *u, long top)
{
    char when[32];

    fprintf(f,
            "\ntop clients by use, since the metrics object was made (one "
            "request in %d sampled: requests are estimates)\n",
            RL2_USAGE_TOP_SAMPLE);
    if (u->n_top == 0) {
        fputs("  (none)\n", f);
        return;
    }
    fprintf(f, "  %-40s %-24s %10s %8s %7s  %s\n", "client", "rule", "requests",
            "+-error", "peak", "last seen (UTC)");
    for (size_t i = 0; i < u->n_top && (long)i < top; i++) {
        const rl2_usage_client_t *c = &u->top[i];

        fputs("  ", f);
        rl2_ctl_usage_col(f, c->client, 40);
        rl2_ctl_usage_col(f, c->rule, 24);
        rl2_ctl_usage_time(c->last_wall_s, when, sizeof(when));
        fprintf(f, "%10" PRIu64 " %8" PRIu64, c->requests, c->error);
        /* 0: none of its sampled requests was admitted. */
        if (c->peak_ppm > 0) {
            fprintf(f, " %6.1f%%  %s\n", c->peak_ppm / 1e4, when);
        }
        else {
            fprintf(f, " %7s  %s\n", "-", when);
        }
    }
}

void
rl2_ctl_usage_text(FILE *f, const rl2_ctl_usage_t *u, long top)
{
    int  wr = rl2_ctl_usage_width(u, 0), wt = rl2_ctl_usage_width(u, 1);
    char from[32], to[32], span[32];

    rl2_ctl_usage_time(rl2_ctl_usage_start(u, 0), from, sizeof(from));
    rl2_ctl_usage_time(u->now_s, to, sizeof(to));
    rl2_ctl_usage_span(u->since_s, span, sizeof(span));
    fputs("usage of ", f);
    rl2_ctl_text_safe(f, u->metrics);
    fprintf(f, " over the last %s, by %s: %s to %s UTC", span,
            rl2_ctl_usage_step_name(u), from, to);
    if (u->rule != NULL) {
        fputs(", rule ", f);
        rl2_ctl_text_safe(f, u->rule);
    }
    fputs("\n\n", f);
    if (u->n_rows == 0) {
        fputs("no request counted\n", f);
    }
    else {
        rl2_ctl_usage_col(f, "rule", wr);
        rl2_ctl_usage_col(f, "tier", wt);
        fprintf(f, "%10s %10s %10s %8s %8s %-16s %7s %7s\n", "requests",
                "admitted", "refused", "refused", "clients", "in interval",
                "peak", "room");
        for (size_t i = 0; i < u->n_rows; i++) {
            rl2_ctl_usage_text_row(f, u, &u->rows[i], wr, wt);
        }
        fprintf(f,
                "\nclients: distinct clients of the busiest %s (estimated "
                "per interval; intervals do not add up)\n"
                "peak: the largest share of its limit one client used in "
                "one window; room: 100%% - peak\n",
                rl2_ctl_usage_step_name(u));
    }
    rl2_ctl_usage_text_top(f, u, top);
}

/* ,"name":[a,b,...] of one field of every point. */
static void
rl2_ctl_usage_json_series(FILE *f, const char *name,
                          const rl2_ctl_usage_row_t *row, size_t n, int field)
{
    fprintf(f, "%s\"%s\":[", field == 0 ? "" : ",", name);
    for (size_t i = 0; i < n; i++) {
        const rl2_usage_point_t *p = &row->points[i];
        const uint64_t v[] = { p->requests, p->admitted, p->refused, p->clients,
                               p->peak_ppm };

        fprintf(f, "%s%" PRIu64, i ? "," : "", v[field]);
    }
    fputc(']', f);
}

static void
rl2_ctl_usage_json_row(FILE *f, const rl2_ctl_usage_t *u,
                       const rl2_ctl_usage_row_t *row)
{
    static const char *const fields[] = { "requests", "admitted", "refused",
                                          "clients", "peak_ppm" };

    fputc('{', f);
    rl2_ctl_json_str(f, "", "rule", row->cell.rule);
    rl2_ctl_json_str(f, ",", "tier", row->cell.tier);
    fprintf(f,
            ",\"requests\":%" PRIu64 ",\"admitted\":%" PRIu64
            ",\"refused\":%" PRIu64 ",\"refused_share\":%.6f"
            ",\"clients_max\":%" PRIu32 ",\"clients_max_start\":%" PRId64
            ",\"peak_ppm\":%" PRIu32 ",\"peak_start\":%" PRId64
            ",\"peak_share\":%.6f,\"room\":%.6f",
            row->requests, row->admitted, row->refused,
            rl2_ctl_usage_share(row->refused, row->requests), row->clients_max,
            row->clients_max > 0 ? rl2_ctl_usage_start(u, row->clients_at) : 0,
            row->peak_ppm,
            row->peak_ppm > 0 ? rl2_ctl_usage_start(u, row->peak_at) : 0,
            row->peak_ppm / 1e6, 1 - row->peak_ppm / 1e6);
    fprintf(f,
            ",\"total\":{\"requests\":%" PRIu64 ",\"admitted\":%" PRIu64
            ",\"refused\":%" PRIu64 "},\"series\":{",
            row->cell.requests, row->cell.admitted, row->cell.refused);
    for (int k = 0; k < 5; k++) {
        rl2_ctl_usage_json_series(f, fields[k], row, u->n_points, k);
    }
    fputs("}}", f);
}

static void
rl2_ctl_usage_json_client(FILE *f, const rl2_usage_client_t *c)
{
    fputc('{', f);
    rl2_ctl_json_str(f, "", "client", c->client);
    rl2_ctl_json_str(f, ",", "rule", c->rule);
    fprintf(f,
            ",\"requests\":%" PRIu64 ",\"error\":%" PRIu64
            ",\"peak_ppm\":%" PRIu32 ",\"peak_share\":%.6f"
            ",\"last_seen\":%" PRId64 "}",
            c->requests, c->error, c->peak_ppm, c->peak_ppm / 1e6,
            c->last_wall_s);
}

void
rl2_ctl_usage_json(FILE *f, const rl2_ctl_usage_t *u)
{
    char first[32];

    rl2_ctl_usage_iso(rl2_ctl_usage_start(u, 0), first, sizeof(first));
    fputc('{', f);
    rl2_ctl_json_str(f, "", "metrics", u->metrics);
    fprintf(f,
            ",\"now\":%" PRId64 ",\"since_s\":%" PRId64 ",\"step_s\":%d"
            ",\"intervals\":%zu,\"first_start\":%" PRId64
            ",\"first_start_utc\":\"%s\",\"top_sample\":%d,",
            u->now_s, u->since_s, (int)u->step, u->n_points,
            rl2_ctl_usage_start(u, 0), first, RL2_USAGE_TOP_SAMPLE);
    if (u->rule != NULL) {
        rl2_ctl_json_str(f, "", "rule", u->rule);
        fputc(',', f);
    }
    fputs("\"cells\":[", f);
    for (size_t i = 0; i < u->n_rows; i++) {
        fputs(i ? "," : "", f);
        rl2_ctl_usage_json_row(f, u, &u->rows[i]);
    }
    fputs("],\"top_clients\":[", f);
    for (size_t i = 0; i < u->n_top; i++) {
        fputs(i ? "," : "", f);
        rl2_ctl_usage_json_client(f, &u->top[i]);
    }
    fputs("]}\n", f);
}

void
rl2_ctl_usage_csv(FILE *f, const rl2_ctl_usage_t *u)
{
    char when[32];

    /* RFC 4180: CRLF ends every record, the header's too. */
    fputs("interval_start,step_s,rule,tier,requests,admitted,refused,"
          "clients,peak_ppm\r\n",
          f);
    for (size_t r = 0; r < u->n_rows; r++) {
        const rl2_ctl_usage_row_t *row = &u->rows[r];

        for (size_t i = 0; i < u->n_points; i++) {
            const rl2_usage_point_t *p = &row->points[i];

            rl2_ctl_usage_iso(rl2_ctl_usage_start(u, i), when, sizeof(when));
            fprintf(f, "%s,%d,", when, (int)u->step);
            rl2_ctl_csv_field(f, row->cell.rule);
            fputc(',', f);
            rl2_ctl_csv_field(f, row->cell.tier);
            fprintf(f,
                    ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu32 ",%" PRIu32
                    "\r\n",
                    p->requests, p->admitted, p->refused, p->clients,
                    p->peak_ppm);
        }
    }
}
