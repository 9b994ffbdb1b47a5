/*
 * report.c -- ratelimit2ctl report: gather the violation log (the zone's
 * ring, and with -R the Redis stream the policy names), and fold it into
 * the rows the three formats print: by limit (with the peak one client
 * met in one window, for the breathing room), by tier, by client, by
 * rule and variant (with what each rule's challenger would have
 * refused), and denials per minute over the last hour of the log.
 *
 * Each entry counts for itself plus the denials sampled out just before
 * it (its `skipped`), so totals stay right above the sampling rate; the
 * peak and the per-minute chart count recorded entries only.
 */
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

#define RL2_MINUTE_US INT64_C(60000000)

/* One entry's place in a grouping. */
typedef struct {
    const rl2_vlog_entry_t *e;
    char                    key[RL2_NAME_MAX * 2 + RL2_VLOG_CLIENT_MAX];
} rl2_ctl_item_t;

static int
rl2_ctl_by_time(const void *a, const void *b)
{
    const rl2_vlog_entry_t *x = a, *y = b;

    return (x->time_us > y->time_us) - (x->time_us < y->time_us);
}

static int
rl2_ctl_by_key(const void *a, const void *b)
{
    const rl2_ctl_item_t *x = a, *y = b;
    int                   c = strcmp(x->key, y->key);

    if (c == 0) {
        c = strcmp(x->e->client, y->e->client);
    }
    if (c == 0) {
        c = (x->e->time_us > y->e->time_us) - (x->e->time_us < y->e->time_us);
    }
    return c;
}

static int
rl2_ctl_by_denials(const void *a, const void *b)
{
    const rl2_ctl_row_t *x = a, *y = b;

    if (x->denials != y->denials) {
        return x->denials < y->denials ? 1 : -1;
    }
    return strcmp(x->name, y->name);
}

/* The most entries of one client within `window` of each other, in a run
 * of items sorted by client then time. */
static uint64_t
rl2_ctl_peak(const rl2_ctl_item_t *it, size_t n, int64_t window)
{
    uint64_t best = 0;
    size_t   lo = 0;

    if (window <= 0) {
        return 0;
    }
    for (size_t hi = 0; hi < n; hi++) {
        while (strcmp(it[lo].e->client, it[hi].e->client) != 0
               || it[hi].e->time_us - it[lo].e->time_us >= window) {
            lo++;
        }
        if (hi - lo + 1 > best) {
            best = hi - lo + 1;
        }
    }
    return best;
}

/* Group the entries by what `which` names; rows in *out, sorted by
 * denials (most first). */
/* Group entries[0..n) by rule/limit (which 0), tier (1), client (2) or
 * rule/variant (3: entries of a variant, and a challenger's as
 * rule/(challenger)). */
static int
rl2_ctl_group(const rl2_vlog_entry_t *entries, size_t n_in, int which,
              rl2_ctl_row_t **out, size_t *n_out)
{
    rl2_ctl_item_t *it = calloc(n_in ? n_in : 1, sizeof(*it));
    rl2_ctl_row_t  *rows = calloc(n_in ? n_in : 1, sizeof(*rows));
    size_t          n = 0, m = 0;

    if (it == NULL || rows == NULL) {
        free(it);
        free(rows);
        return -1;
    }
    for (size_t i = 0; i < n_in; i++) {
        const rl2_vlog_entry_t *e = &entries[i];

        if (which == 3 && e->variant[0] == '\0' && !e->challenger) {
            continue;
        }
        it[m].e = e;
        snprintf(it[m++].key, sizeof(it[0].key), "%s%s%s",
                 which == 0 || which == 3 ? e->rule
                 : which == 1             ? e->tier
                                          : e->client,
                 which == 0 || which == 3 ? "/" : "",
                 which == 0      ? e->limit_name
                 : which != 3    ? ""
                 : e->challenger ? "(challenger)"
                                 : e->variant);
    }
    qsort(it, m, sizeof(*it), rl2_ctl_by_key);
    for (size_t i = 0, j; i < m; i = j) {
        rl2_ctl_row_t *row = &rows[n++];

        snprintf(row->name, sizeof(row->name), "%s", it[i].key);
        row->limit = it[i].e->limit;
        row->window_us = it[i].e->window_us;
        row->first_us = it[i].e->time_us;
        for (j = i; j < m && strcmp(it[j].key, it[i].key) == 0; j++) {
            row->denials += 1 + it[j].e->skipped;
            row->first_us = it[j].e->time_us < row->first_us ? it[j].e->time_us
                                                             : row->first_us;
            row->last_us = it[j].e->time_us > row->last_us ? it[j].e->time_us
                                                           : row->last_us;
        }
        if (which == 0) {
            row->peak = rl2_ctl_peak(it + i, j - i, row->window_us);
        }
    }
    free(it);
    qsort(rows, n, sizeof(*rows), rl2_ctl_by_denials);
    *out = rows;
    *n_out = n;
    return 0;
}

static void
rl2_ctl_minutes(rl2_ctl_report_t *r)
{
    if (r->n == 0) {
        return;
    }
    r->hour_end_us = (r->last_us / RL2_MINUTE_US + 1) * RL2_MINUTE_US;
    for (size_t i = 0; i < r->n; i++) {
        int64_t ago =
            (r->hour_end_us - 1 - r->entries[i].time_us) / RL2_MINUTE_US;

        if (ago >= 0 && ago < 60) {
            r->per_minute[59 - ago]++;
        }
    }
}

/* Append src[0..n) to the report's entries. */
static int
rl2_ctl_append(rl2_ctl_report_t *r, rl2_vlog_entry_t *src, size_t n)
{
    rl2_vlog_entry_t *all;

    if (n == 0) {
        free(src);
        return 0;
    }
    all = realloc(r->entries, (r->n + n) * sizeof(*all));
    if (all == NULL) {
        free(src);
        return -1;
    }
    memcpy(all + r->n, src, n * sizeof(*all));
    r->entries = all;
    r->n += n;
    free(src);
    return 0;
}

static int
rl2_ctl_gather(const rl2_ctl_opts_t *o, rl2_ctl_report_t *r)
{
    rl2_vlog_entry_t *got;
    rl2_vlog_conf_t   vc;
    rl2_err_t         err;
    size_t            n;
    int               rc;

    /* With a Cluster the servers keep the log in their rings. */
    int stream = o->backend.redis_enabled && o->backend.redis.n_seeds == 0;

    if (rl2_vlog_ring_read(o->zone, &got, &n, &r->ring, &err) == RL2_OK) {
        r->have_ring = 1;
        if (rl2_ctl_append(r, got, n) != 0) {
            return rl2_ctl_fail(RL2_CTL_FAIL, "out of memory");
        }
    }
    else if (!stream) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    if (!stream) {
        return RL2_CTL_OK;
    }
    /* The stream's name and length come from the policy: main loaded it,
     * since Redis is named by -R (which makes the file required) or by
     * the file itself. */
    rc = rl2_vlog_conf_resolve(&o->policy_loaded->vlog, &vc, &err);
    if (rc == RL2_OK) {
        rc = rl2_vlog_stream_read(&o->backend.redis, vc.stream,
                                  (size_t)vc.capacity * 2, &got, &n, &err);
    }
    if (rc != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    r->have_stream = 1;
    return rl2_ctl_append(r, got, n) == 0
               ? RL2_CTL_OK
               : rl2_ctl_fail(RL2_CTL_FAIL, "out of memory");
}

/* A challenger's entries are would-refuse records of admitted requests:
 * moved aside, so that totals, charts and the other groupings count
 * refusals only. */
static void
rl2_ctl_shadow_split(rl2_ctl_report_t *r)
{
    size_t kept = 0, shadow = 0;

    for (size_t i = 0; i < r->n; i++) {
        if (!r->entries[i].challenger) {
            r->entries[kept++] = r->entries[i];
        }
        else {
            r->shadow[shadow++] = r->entries[i];
        }
    }
    r->n = kept;
    r->n_shadow = shadow;
}

/* By rule/variant: the variants' refusals, then the challengers'. */
static int
rl2_ctl_variants(rl2_ctl_report_t *r)
{
    rl2_ctl_row_t *a, *b, *all;
    size_t         na, nb;

    if (rl2_ctl_group(r->entries, r->n, 3, &a, &na) != 0) {
        return -1;
    }
    if (rl2_ctl_group(r->shadow, r->n_shadow, 3, &b, &nb) != 0
        || (all = calloc(na + nb ? na + nb : 1, sizeof(*all))) == NULL) {
        free(a);
        return -1;
    }
    memcpy(all, a, na * sizeof(*all));
    memcpy(all + na, b, nb * sizeof(*all));
    free(a);
    free(b);
    r->by_variant = all;
    r->n_variant = na + nb;
    return 0;
}

static int
rl2_ctl_fold(rl2_ctl_report_t *r)
{
    if ((r->shadow = calloc(r->n ? r->n : 1, sizeof(*r->shadow))) == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "out of memory");
    }
    rl2_ctl_shadow_split(r);
    qsort(r->entries, r->n, sizeof(*r->entries), rl2_ctl_by_time);
    for (size_t i = 0; i < r->n; i++) {
        r->skipped += r->entries[i].skipped;
    }
    if (r->n > 0) {
        r->first_us = r->entries[0].time_us;
        r->last_us = r->entries[r->n - 1].time_us;
    }
    rl2_ctl_minutes(r);
    if (rl2_ctl_group(r->entries, r->n, 0, &r->by_limit, &r->n_limit) != 0
        || rl2_ctl_group(r->entries, r->n, 1, &r->by_tier, &r->n_tier) != 0
        || rl2_ctl_group(r->entries, r->n, 2, &r->by_client, &r->n_client) != 0
        || rl2_ctl_variants(r) != 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "out of memory");
    }
    return RL2_CTL_OK;
}

uint64_t
rl2_ctl_total(const rl2_ctl_report_t *r)
{
    return r->n + r->skipped;
}

double
rl2_ctl_room(const rl2_ctl_row_t *row)
{
    if (row->window_us <= 0 || row->limit <= 0) {
        return 0;
    }
    return (double)(row->limit + (int64_t)row->peak) / (double)row->limit;
}

double
rl2_ctl_per_minute(const rl2_ctl_report_t *r, uint64_t denials)
{
    int64_t span = r->last_us - r->first_us;

    return (double)denials * 60e6
           / (double)(span > RL2_MINUTE_US ? span : RL2_MINUTE_US);
}

static void
rl2_ctl_report_free(rl2_ctl_report_t *r)
{
    free(r->entries);
    free(r->shadow);
    free(r->by_limit);
    free(r->by_tier);
    free(r->by_client);
    free(r->by_variant);
}

int
rl2_ctl_report(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_ctl_report_t r;
    FILE            *f = stdout;
    int              rc;

    (void)argv;
    if (argc != 0) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: report [--json | --html] "
                                           "[-o FILE]");
    }
    memset(&r, 0, sizeof(r));
    if ((rc = rl2_ctl_gather(o, &r)) == RL2_CTL_OK
        && (rc = rl2_ctl_fold(&r)) == RL2_CTL_OK) {
        if (o->output != NULL && (f = fopen(o->output, "w")) == NULL) {
            rc = rl2_ctl_fail(RL2_CTL_FAIL, "%s: cannot write", o->output);
        }
        else if (o->format == RL2_CTL_JSON) {
            rl2_ctl_report_json(f, &r, o->top);
        }
        else if (o->format == RL2_CTL_HTML) {
            rl2_ctl_report_html(f, &r, o->top);
        }
        else {
            rl2_ctl_report_text(f, &r, o->top);
        }
        if (f != NULL && f != stdout && fclose(f) != 0) {
            rc = rl2_ctl_fail(RL2_CTL_FAIL, "%s: write failed", o->output);
        }
    }
    rl2_ctl_report_free(&r);
    return rc;
}
