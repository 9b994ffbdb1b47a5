/*
 * report_out.c -- the report as text (for a terminal) and as JSON (for
 * scripts and dashboards).  Both print the same figures, computed once
 * by report.c.  Entry text is already free of control bytes (the log
 * escapes it); it is escaped again here for JSON and HTML.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "ctl.h"

/* The ring's counters: "ring: capacity 1, written 2, ..." as text, or
 * ,"ring":{"capacity":1,"written":2,...} as JSON. */
static void
rl2_ctl_ring_out(FILE *f, const rl2_vlog_stats_t *ring, int json)
{
    static const char *const text[] = { "capacity", "written", "to redis",
                                        "redis errors", "sampled out" };
    static const char *const key[] = { "capacity", "written", "to_redis",
                                       "redis_errors", "sampled_out" };
    const uint64_t v[] = { ring->capacity, ring->written, ring->to_redis,
                           ring->redis_errors, ring->skipped };

    fputs(json ? ",\"ring\":{" : "ring: ", f);
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (json) {
            fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", key[i], v[i]);
        }
        else {
            fprintf(f, "%s%s %" PRIu64, i ? ", " : "", text[i], v[i]);
        }
    }
    fputs(json ? "}" : "\n", f);
}

size_t
rl2_ctl_latest_from(const rl2_ctl_report_t *r, long top)
{
    return r->n > (size_t)top ? r->n - (size_t)top : 0;
}

static void
rl2_ctl_time(int64_t us, char *buf, size_t size)
{
    time_t    t = (time_t)(us / RL2_US_PER_S);
    struct tm tm;

    if (us <= 0 || gmtime_r(&t, &tm) == NULL) {
        snprintf(buf, size, "-");
        return;
    }
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
rl2_ctl_rows_text(FILE *f, const char *title, const rl2_ctl_row_t *rows,
                  size_t n, long top, int room)
{
    fprintf(f, "\n%s\n", title);
    for (size_t i = 0; i < n && (long)i < top; i++) {
        fprintf(f, "  %-40s %8" PRIu64, rows[i].name, rows[i].denials);
        if (room && rl2_ctl_room(&rows[i]) > 0) {
            fprintf(f,
                    "   limit %" PRId64 "  peak +%" PRIu64
                    " in one window  breathing room %.2f",
                    rows[i].limit, rows[i].peak, rl2_ctl_room(&rows[i]));
        }
        fputc('\n', f);
    }
    if (n == 0) {
        fprintf(f, "  (none)\n");
    }
}

void
rl2_ctl_report_text(FILE *f, const rl2_ctl_report_t *r, long top)
{
    char from[32], to[32];

    rl2_ctl_time(r->first_us, from, sizeof(from));
    rl2_ctl_time(r->last_us, to, sizeof(to));
    fprintf(f,
            "violation log: %zu entries, %" PRIu64 " denials (%" PRIu64
            " sampled out), from %s to %s\n",
            r->n, rl2_ctl_total(r), r->skipped, from, to);
    fprintf(f, "sources: %s%s%s\n", r->have_ring ? "local ring" : "",
            r->have_ring && r->have_stream ? " + " : "",
            r->have_stream ? "redis stream" : "");
    if (r->have_ring) {
        rl2_ctl_ring_out(f, &r->ring, 0);
    }
    fprintf(f, "hit rate: %.2f denials/min\n",
            rl2_ctl_per_minute(r, rl2_ctl_total(r)));
    rl2_ctl_rows_text(f, "denials by rule/limit", r->by_limit, r->n_limit, 1000,
                      1);
    rl2_ctl_rows_text(f, "denials by tier", r->by_tier, r->n_tier, 1000, 0);
    if (r->n_variant > 0) {
        rl2_ctl_rows_text(f, "denials by rule/variant (challenger: would deny)",
                          r->by_variant, r->n_variant, 1000, 0);
    }
    rl2_ctl_rows_text(f, "top clients", r->by_client, r->n_client, top, 0);
    fprintf(f, "\nlatest denials\n");
    for (size_t i = rl2_ctl_latest_from(r, top); i < r->n; i++) {
        const rl2_vlog_entry_t *e = &r->entries[i];

        rl2_ctl_time(e->time_us, from, sizeof(from));
        fprintf(f, "  %s %s/%s tier=%s client=%s %s %s%s%s%s%s", from, e->rule,
                e->limit_name, e->tier, e->client, e->method, e->path,
                e->factors[0] != '\0' ? " factors=" : "", e->factors,
                e->variant[0] != '\0' ? " variant=" : "", e->variant);
        /* Entries written before count and ua have neither. */
        if (e->count >= 0) {
            fprintf(f, " count=%" PRId64, e->count);
        }
        /* Quoted: a user agent has spaces; its quotes are escaped. */
        if (e->user_agent[0] != '\0') {
            fprintf(f, " ua=\"%s\"", e->user_agent);
        }
        fputc('\n', f);
    }
}

static void
rl2_ctl_rows_json(FILE *f, const char *name, const rl2_ctl_row_t *rows,
                  size_t n, long top, int room)
{
    fprintf(f, ",\"%s\":[", name);
    for (size_t i = 0; i < n && (long)i < top; i++) {
        fprintf(f, "%s{\"name\":\"", i ? "," : "");
        rl2_ctl_escape(f, rows[i].name, 1);
        fprintf(f, "\",\"denials\":%" PRIu64, rows[i].denials);
        if (room) {
            fprintf(f,
                    ",\"limit\":%" PRId64 ",\"window_s\":%" PRId64
                    ",\"peak_in_window\":%" PRIu64 ",\"breathing_room\":%.3f",
                    rows[i].limit, rows[i].window_us / RL2_US_PER_S,
                    rows[i].peak, rl2_ctl_room(&rows[i]));
        }
        fprintf(f, ",\"first\":%" PRId64 ",\"last\":%" PRId64 "}",
                rows[i].first_us / RL2_US_PER_S,
                rows[i].last_us / RL2_US_PER_S);
    }
    fputc(']', f);
}

/* One entry; last: no comma after it. */
static void
rl2_ctl_entry_json(FILE *f, const rl2_vlog_entry_t *e, int last)
{
    fprintf(f, "{\"time_us\":%" PRId64, e->time_us);
    rl2_ctl_json_str(f, ",", "rule", e->rule);
    rl2_ctl_json_str(f, ",", "limit", e->limit_name);
    rl2_ctl_json_str(f, ",", "tier", e->tier);
    rl2_ctl_json_str(f, ",", "client", e->client);
    rl2_ctl_json_str(f, ",", "method", e->method);
    rl2_ctl_json_str(f, ",", "path", e->path);
    rl2_ctl_json_str(f, ",", "factors", e->factors);
    if (e->variant[0] != '\0') {
        rl2_ctl_json_str(f, ",", "variant", e->variant);
    }
    rl2_ctl_json_str(f, ",", "user_agent", e->user_agent);
    /* null: an entry written before the log recorded the count */
    if (e->count >= 0) {
        fprintf(f, ",\"count\":%" PRId64, e->count);
    }
    else {
        fputs(",\"count\":null", f);
    }
    fprintf(f, ",\"skipped\":%" PRIu64 "}%s", e->skipped, last ? "" : ",");
}

void
rl2_ctl_report_json(FILE *f, const rl2_ctl_report_t *r, long top)
{
    fprintf(f,
            "{\"entries\":%zu,\"denials\":%" PRIu64 ",\"sampled_out\":%" PRIu64
            ",\"first\":%" PRId64 ",\"last\":%" PRId64
            ",\"hit_rate_per_min\":%.3f,\"sources\":{\"ring\":%s,"
            "\"redis\":%s}",
            r->n, rl2_ctl_total(r), r->skipped, r->first_us / RL2_US_PER_S,
            r->last_us / RL2_US_PER_S, rl2_ctl_per_minute(r, rl2_ctl_total(r)),
            r->have_ring ? "true" : "false", r->have_stream ? "true" : "false");
    if (r->have_ring) {
        rl2_ctl_ring_out(f, &r->ring, 1);
    }
    rl2_ctl_rows_json(f, "by_limit", r->by_limit, r->n_limit, 1000, 1);
    rl2_ctl_rows_json(f, "by_tier", r->by_tier, r->n_tier, 1000, 0);
    rl2_ctl_rows_json(f, "by_variant", r->by_variant, r->n_variant, 1000, 0);
    rl2_ctl_rows_json(f, "top_clients", r->by_client, r->n_client, top, 0);
    fputs(",\"latest\":[", f);
    for (size_t i = rl2_ctl_latest_from(r, top); i < r->n; i++) {
        rl2_ctl_entry_json(f, &r->entries[i], i + 1 == r->n);
    }
    fputs("]", f);
    fputs(",\"per_minute\":[", f);
    for (int i = 0; i < 60; i++) {
        fprintf(f, "%s%" PRIu64, i ? "," : "", r->per_minute[i]);
    }
    fputs("]}\n", f);
}
