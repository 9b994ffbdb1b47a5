/*
 * usage.h -- what `ratelimit2ctl usage` reads (usage.c) and writes
 * (usage_out.c, usage_html.c) share: the usage of one metrics object over
 * a period, per rule x tier cell, with the period's figures folded from
 * the cell's series once, so that every format prints the same numbers.
 *
 * The series are the core's (obs/usage.h); this header is private to
 * ctl/ and built with the core's include path.
 */
#ifndef RL2_CTL_USAGE_H
#define RL2_CTL_USAGE_H

#include <stdint.h>
#include <stdio.h>

#include "obs/usage.h"
#include "ratelimit2/backend.h"

/* One rule x tier cell over the period. */
typedef struct {
    rl2_usage_cell_t   cell;   /* names; totals since the object was made */
    rl2_usage_point_t *points; /* owned: the period's n_points intervals,
                                  oldest first, the current one last */
    /* Folded from points by rl2_ctl_usage_fold(): */
    uint64_t requests, admitted, refused; /* over the period */
    uint32_t clients_max; /* the most distinct clients of one interval:
                             the estimate is per interval, and intervals
                             do not add up (a client is in several) */
    size_t   clients_at;  /* that interval's index in points */
    uint32_t peak_ppm;    /* the largest share of a limit (of 10^6) one
                             client used in one window, in the period */
    size_t peak_at;       /* that interval's index in points */
} rl2_ctl_usage_row_t;

typedef struct {
    char             metrics[RL2_BACKEND_NAME_MAX + 16]; /* "<zone>.metrics" */
    int64_t          now_s;         /* wall clock of the reading */
    int64_t          since_s;       /* --since */
    rl2_usage_step_t step;          /* --step */
    int64_t          first_start_s; /* start of every row's points[0] */
    size_t           n_points;      /* intervals of the period */
    rl2_ctl_usage_row_t *rows;      /* owned; the core's cell order */
    size_t               n_rows;
    rl2_usage_client_t  *top; /* owned; most requests first */
    size_t               n_top;
    const char          *rule; /* --rule, or NULL */
} rl2_ctl_usage_t;

/* Fold a row's points into its period figures. */
void rl2_ctl_usage_fold(rl2_ctl_usage_row_t *row, size_t n_points);

/* part / whole, 0 when whole is 0. */
double rl2_ctl_usage_share(uint64_t part, uint64_t whole);

/* The start of interval i, in seconds since the epoch. */
int64_t rl2_ctl_usage_start(const rl2_ctl_usage_t *u, size_t i);

/* "2026-12-06 14:05" (UTC) of a wall-clock second. */
void rl2_ctl_usage_time(int64_t s, char *buf, size_t size);

/* "24h", "90m", "7d", "45s": a period as --since reads it. */
void rl2_ctl_usage_span(int64_t s, char *buf, size_t size);

/* The formats: text lists `top` clients, HTML too; JSON lists them all
 * and every series; CSV is one row per cell per interval. */
void rl2_ctl_usage_text(FILE *f, const rl2_ctl_usage_t *u, long top);
void rl2_ctl_usage_json(FILE *f, const rl2_ctl_usage_t *u);
void rl2_ctl_usage_csv(FILE *f, const rl2_ctl_usage_t *u);
void rl2_ctl_usage_html(FILE *f, const rl2_ctl_usage_t *u, long top);

#endif /* RL2_CTL_USAGE_H */
