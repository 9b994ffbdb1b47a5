/*
 * test_usage.c -- the usage series (obs/usage.h, metrics_usage.c):
 * verdicts of known rules, tiers and outcomes recorded through
 * rl2_metrics_record with a clock the test moves, read back with
 * rl2_usage_*: exact counts per cell and minute, requests no rule
 * applied to under "(unmatched)", distinct clients (exact when few,
 * within 2% at 100,000), the peak share of a limit, an hour's points
 * and its distinct clients across its minutes, intervals that age out
 * of the rings, the sampled top clients, a read-only view by name, the
 * series kept when the object is opened again (a graceful restart), the
 * status page, cells beyond the table's 256 counted without series, and
 * four processes claiming the same new cells at once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/config.h"
#include "ratelimit2/metrics.h"
#include "base/base_internal.h"
#include "obs/metrics_internal.h"
#include "obs/usage.h"

#define WATCHDOG_S 120
/* 2024-01-02 03:00:05 UTC: five seconds into an hour (and a minute). */
#define T0_WALL_US 1704164405000000LL
#define T0_MONO_US 5000000000LL

static const char policy_text[] =
    "tiers = [ \"free\", \"pro\" ];\n"
    "rules = (\n"
    "  { name = \"login\"; paths = \"/login\";\n"
    "    limits = ( { rate = \"10/1h\"; }, { rate = \"100/1d\"; } ); },\n"
    "  { name = \"api\"; paths = \"/api\";\n"
    "    limits = ( { rate = \"10/1h\"; } ); }\n"
    ");\n";

static char                shm_name[64];
static rl2_policy_t       *policy;
static rl2_metrics_t      *m;
static rl2_metrics_bind_t *b;
static rl2_clock_t         now;
static rl2_usage_t         view;

static int
open_metrics(void)
{
    rl2_metrics_conf_t mc;
    rl2_err_t          err;

    rl2_metrics_conf_default(&mc);
    assert_int_equal(
        rl2_metrics_open(shm_name, 0600, &mc, NULL, NULL, &m, &err), RL2_OK);
    assert_int_equal(rl2_metrics_bind(m, policy, NULL, 0, &b, NULL, &err),
                     RL2_OK);
    rl2_usage_view(m, &view);
    return 0;
}

static void
close_metrics(void)
{
    rl2_metrics_unbind(b);
    rl2_metrics_close(m);
}

static int
setup(void **state)
{
    rl2_err_t err;

    (void)state;
    alarm(WATCHDOG_S);
    now.mono_us = T0_MONO_US;
    now.wall_us = T0_WALL_US;
    snprintf(shm_name, sizeof(shm_name), "/rl2test-%ld-usage", (long)getpid());
    rl2_metrics_unlink(shm_name, NULL);
    assert_int_equal(
        rl2_config_load_string(policy_text, "t.conf", NULL, &policy, &err),
        RL2_OK);
    return open_metrics();
}

static int
teardown(void **state)
{
    (void)state;
    alarm(0);
    close_metrics();
    rl2_metrics_unlink(shm_name, NULL);
    rl2_policy_free(policy);
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

static void
advance_s(int64_t s)
{
    now.wall_us += s * RL2_US_PER_S;
    now.mono_us += s * RL2_US_PER_S;
}

static const rl2_rule_t *
rule(const char *name)
{
    for (size_t i = 0; i < policy->n_rules; i++) {
        if (strcmp(policy->rules[i].name, name) == 0) {
            return &policy->rules[i];
        }
    }
    fail_msg("no rule %s", name);
    return NULL;
}

static void
verdict(rl2_verdict_t *v, rl2_outcome_t outcome, int tier, const char *client)
{
    rl2_verdict_init(v);
    v->outcome = outcome;
    v->tier = tier;
    snprintf(v->client_ip, sizeof(v->client_ip), "%s", client);
}

/* A layer of limit `limit` of r for v's client, `remaining` left: its
 * key the digest of client and limit, as decide.c's is. */
static rl2_layer_t *
layer(rl2_verdict_t *v, const rl2_rule_t *r, size_t limit, int64_t remaining)
{
    static const rl2_hash_key_t k = { { 7 } };
    rl2_layer_t                *l = &v->layers[v->n_layers++];
    char                        id[128];
    int                         n;

    memset(l, 0, sizeof(*l));
    l->rule = r;
    l->limit = &r->limits.limits[limit];
    l->result.limit = l->limit->algo.limit;
    l->result.remaining = remaining;
    l->result.allowed = 1;
    l->committed = 1;
    snprintf(l->client, sizeof(l->client), "%s", v->client_ip);
    n = snprintf(id, sizeof(id), "%s|%s|%zu", v->client_ip, r->name, limit);
    l->key = rl2_digest_keyed(&k, id, (size_t)n);
    v->shown = 0;
    return l;
}

typedef enum { ALLOW, DENY, DRY } how_t;

/* One request of client to rule `r` (NULL: no rule applied) in tier
 * (-1: none), how it ended, `remaining` left of the first limit. */
static void
req(const char *r, int tier, const char *client, how_t how, int64_t remaining)
{
    rl2_verdict_t v;
    rl2_layer_t  *l;

    if (r == NULL) {
        verdict(&v, RL2_OUTCOME_NONE, tier, client);
        rl2_metrics_record(b, &v, &now);
        return;
    }
    verdict(&v, how == DENY ? RL2_OUTCOME_DENY : RL2_OUTCOME_ALLOW, tier,
            client);
    l = layer(&v, rule(r), 0, remaining);
    if (how == DENY) {
        l->refused = 1;
        l->result.allowed = 0;
    }
    if (how == DRY) {
        l->refused = 1;
        l->dry_run = 1;
        v.dry_run_denied = 1;
    }
    if (strcmp(r, "login") == 0) {
        layer(&v, rule(r), 1, 90); /* the day's limit: 10% used */
    }
    rl2_metrics_record(b, &v, &now);
}

static void
bypass(int tier, const char *client)
{
    rl2_verdict_t v;

    verdict(&v, RL2_OUTCOME_BYPASS, tier, client);
    rl2_metrics_record(b, &v, &now);
}

/* The index of cell (rule, tier); -1 when it has none. */
static int
cell_of(const char *r, const char *tier, rl2_usage_cell_t *out)
{
    rl2_usage_cell_t cells[RL2_USAGE_CELLS];
    size_t           n = rl2_usage_cells(&view, cells, RL2_USAGE_CELLS);

    for (size_t i = 0; i < n; i++) {
        if (strcmp(cells[i].rule, r) == 0 && strcmp(cells[i].tier, tier) == 0) {
            if (out != NULL) {
                *out = cells[i];
            }
            return (int)i;
        }
    }
    return -1;
}

static rl2_usage_point_t minutes[RL2_USAGE_MINUTES];
static rl2_usage_point_t hours[RL2_USAGE_HOURS];

/* The last `back` + 1 points of a cell at step (into minutes[] or
 * hours[]): p[0] is `back` intervals ago, p[back] the current one. */
static rl2_usage_point_t *
last_points(const char *r, const char *tier, rl2_usage_step_t step, size_t back)
{
    rl2_usage_point_t *pts = step == RL2_USAGE_STEP_MINUTE ? minutes : hours;
    size_t             max =
        step == RL2_USAGE_STEP_MINUTE ? RL2_USAGE_MINUTES : RL2_USAGE_HOURS;
    int     i = cell_of(r, tier, NULL);
    int64_t first = 0, now_s = now.wall_us / RL2_US_PER_S;

    assert_true(i >= 0);
    assert_int_equal(
        rl2_usage_series(&view, (size_t)i, step, now_s, pts, max, &first), max);
    assert_int_equal(first, (now_s / step - (int64_t)(max - 1)) * step);
    return &pts[max - 1 - back];
}

static rl2_usage_point_t *
last_minutes(const char *r, const char *tier, size_t back)
{
    return last_points(r, tier, RL2_USAGE_STEP_MINUTE, back);
}

static rl2_usage_point_t *
last_hours(const char *r, const char *tier, size_t back)
{
    return last_points(r, tier, RL2_USAGE_STEP_HOUR, back);
}

static void
assert_point(const rl2_usage_point_t *p, uint64_t requests, uint64_t admitted,
             uint64_t refused, uint32_t clients, uint32_t peak_ppm)
{
    if (p->requests != requests || p->admitted != admitted
        || p->refused != refused || p->clients != clients
        || p->peak_ppm != peak_ppm) {
        fail_msg("point: requests %llu admitted %llu refused %llu clients %u "
                 "peak %u; want %llu %llu %llu %u %u",
                 (unsigned long long)p->requests,
                 (unsigned long long)p->admitted,
                 (unsigned long long)p->refused, p->clients, p->peak_ppm,
                 (unsigned long long)requests, (unsigned long long)admitted,
                 (unsigned long long)refused, clients, peak_ppm);
    }
}

/* Every point of a series summed. */
static uint64_t
sum_requests(const rl2_usage_point_t *p, size_t n)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < n; i++) {
        sum += p[i].requests;
    }
    return sum;
}

/* The known mix of one minute: api (10/1h) free: 5 allowed from 3
 * clients (3 left at most: 70% used), 2 refused (from a 4th client);
 * api pro: 1 dry run that would refuse (0 left: 100%); no rule: 3 from 2
 * clients; bypass: 2. */
static void
minute_mix(void)
{
    req("api", 0, "10.0.0.1", ALLOW, 9);
    req("api", 0, "10.0.0.1", ALLOW, 8);
    req("api", 0, "10.0.0.2", ALLOW, 9);
    req("api", 0, "10.0.0.3", ALLOW, 3);
    req("api", 0, "10.0.0.3", ALLOW, 5);
    req("api", 0, "10.0.0.4", DENY, 0);
    req("api", 0, "10.0.0.4", DENY, 0);
    req("api", 1, "10.0.0.5", DRY, 0);
    req(NULL, -1, "10.0.0.6", ALLOW, 0);
    req(NULL, -1, "10.0.0.6", ALLOW, 0);
    req(NULL, -1, "10.0.0.7", ALLOW, 0);
    bypass(-1, "10.0.0.8");
    bypass(-1, "10.0.0.8");
}

/* ---- tests ------------------------------------------------------------ */

static void
test_counts_per_cell_and_minute(void **state)
{
    rl2_usage_cell_t c;

    (void)state;
    minute_mix();
    /* The open minute, read before it ends. */
    assert_point(last_minutes("api", "free", 0), 7, 5, 2, 4, 700000);
    advance_s(60);
    req("login", 1, "10.0.0.9", ALLOW, 4); /* 60% of the hour's limit */
    req("login", 1, "10.0.0.9", ALLOW, 2); /* 80% */
    /* The minute that ended, and the one open now. */
    assert_point(last_minutes("api", "free", 1), 7, 5, 2, 4, 700000);
    assert_point(last_minutes("api", "free", 0), 0, 0, 0, 0, 0);
    assert_point(last_minutes("api", "pro", 1), 1, 1, 0, 1, 1000000);
    assert_point(last_minutes(RL2_USAGE_UNMATCHED, "(none)", 1), 3, 3, 0, 2, 0);
    assert_point(last_minutes("(bypass)", "(none)", 1), 2, 2, 0, 1, 0);
    /* login: the larger share of its two limits. */
    assert_point(last_minutes("login", "pro", 0), 2, 2, 0, 1, 800000);
    assert_point(last_minutes("login", "pro", 1), 0, 0, 0, 0, 0);
    /* Totals since the object was made. */
    assert_int_equal(cell_of("api", "free", &c), cell_of("api", "free", NULL));
    assert_int_equal(c.requests, 7);
    assert_int_equal(c.admitted, 5);
    assert_int_equal(c.refused, 2);
    assert_true(cell_of(RL2_USAGE_UNMATCHED, "(none)", &c) >= 0);
    assert_int_equal(c.requests, 3);
    assert_int_equal(cell_of("login", "free", NULL), -1);
    /* Minutes with no request in between are zero points, and the last
     * counted minute keeps its counts. */
    advance_s(5 * 60);
    req("api", 0, "10.0.0.1", ALLOW, 9);
    assert_point(last_minutes("api", "free", 6), 7, 5, 2, 4, 700000);
    for (size_t back = 1; back <= 5; back++) {
        assert_point(last_minutes("api", "free", back), 0, 0, 0, 0, 0);
    }
    assert_point(last_minutes("api", "free", 0), 1, 1, 0, 1, 100000);
    assert_int_equal(sum_requests(minutes, RL2_USAGE_MINUTES), 8);
}

/* An hour's point: its requests, and its distinct clients across its
 * minutes (a client in two minutes is one); the next hour's separate. */
static void
test_hour_rollover(void **state)
{
    (void)state;
    /* Hour H: two minutes with the same client, a third client later. */
    req("api", 0, "10.1.0.1", ALLOW, 9);
    req("api", 0, "10.1.0.2", ALLOW, 4);
    advance_s(60);
    req("api", 0, "10.1.0.1", ALLOW, 8);
    advance_s(30 * 60);
    req("api", 0, "10.1.0.3", DENY, 0);
    /* Open hour: ended minutes and the open one, 3 clients, 60% peak. */
    assert_point(last_hours("api", "free", 0), 4, 3, 1, 3, 600000);
    /* Into hour H + 1 (T0 is 5 s into an hour). */
    advance_s(29 * 60);
    req("api", 0, "10.1.0.1", ALLOW, 7);
    assert_point(last_hours("api", "free", 1), 4, 3, 1, 3, 600000);
    assert_point(last_hours("api", "free", 0), 1, 1, 0, 1, 300000);
    /* Hour H + 1 ends in turn. */
    advance_s(3600);
    req("api", 0, "10.1.0.4", ALLOW, 9);
    assert_point(last_hours("api", "free", 2), 4, 3, 1, 3, 600000);
    assert_point(last_hours("api", "free", 1), 1, 1, 0, 1, 300000);
    assert_point(last_hours("api", "free", 0), 1, 1, 0, 1, 100000);
    assert_int_equal(sum_requests(hours, RL2_USAGE_HOURS), 6);
}

/* A minute older than 24 h leaves the minute series (its slot reused),
 * an hour older than 31 days the hour series. */
static void
test_old_intervals_age_out(void **state)
{
    (void)state;
    req("api", 0, "10.2.0.1", ALLOW, 9);
    req("api", 0, "10.2.0.1", ALLOW, 9);
    advance_s(60);
    req("api", 0, "10.2.0.1", ALLOW, 9);
    /* 23 h 58 min later: the first minute is still the series' oldest. */
    advance_s(RL2_USAGE_MINUTES * 60 - 120);
    req("api", 0, "10.2.0.2", ALLOW, 9);
    assert_point(last_minutes("api", "free", RL2_USAGE_MINUTES - 1), 2, 2, 0, 1,
                 100000);
    assert_int_equal(sum_requests(minutes, RL2_USAGE_MINUTES), 4);
    /* Two minutes on: it has left, its successor with it next. */
    advance_s(120);
    req("api", 0, "10.2.0.2", ALLOW, 9);
    assert_int_equal(
        sum_requests(last_minutes("api", "free", 0) - (RL2_USAGE_MINUTES - 1),
                     RL2_USAGE_MINUTES),
        2);
    /* The hours keep all five. */
    (void)last_hours("api", "free", 0);
    assert_int_equal(sum_requests(hours, RL2_USAGE_HOURS), 5);
    /* 31 days on, only the last request's hour is left. */
    advance_s((int64_t)RL2_USAGE_HOURS * 3600);
    req("api", 0, "10.2.0.3", ALLOW, 9);
    (void)last_hours("api", "free", 0);
    assert_int_equal(sum_requests(hours, RL2_USAGE_HOURS), 1);
    (void)last_minutes("api", "free", 0);
    assert_int_equal(sum_requests(minutes, RL2_USAGE_MINUTES), 1);
}

/* The acceptance figure through the hot path: 100,000 distinct clients
 * in one minute, each twice, estimated within 2%. */
static void
test_distinct_clients_at_scale(void **state)
{
    char     ip[48];
    uint32_t got;

    (void)state;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 100000; i++) {
            snprintf(ip, sizeof(ip), "10.%d.%d.%d", i >> 16, (i >> 8) & 255,
                     i & 255);
            req("api", 1, ip, ALLOW, 9);
        }
    }
    got = last_minutes("api", "pro", 0)->clients;
    assert_true(got >= 98000 && got <= 102000);
    assert_int_equal(minutes[RL2_USAGE_MINUTES - 1].requests, 200000);
    /* Ended, the minute keeps its estimate; the hour has it too. */
    advance_s(60);
    req("api", 1, "10.0.0.1", ALLOW, 9);
    assert_int_equal(last_minutes("api", "pro", 1)->clients, got);
    got = last_hours("api", "pro", 0)->clients;
    assert_true(got >= 98000 && got <= 102000);
}

/* Blocks of RL2_USAGE_TOP_SAMPLE requests of one client: whatever the
 * thread's sampling phase, each block has exactly one sampled request,
 * so the counts are exact. */
static void
block(const char *r, const char *client, how_t how, int64_t remaining,
      int blocks)
{
    for (int i = 0; i < blocks * RL2_USAGE_TOP_SAMPLE; i++) {
        req(r, 0, client, how, remaining);
    }
}

static void
test_top_clients(void **state)
{
    rl2_usage_client_t top[RL2_USAGE_TOP];
    char               ip[48];
    size_t             n;

    (void)state;
    block("api", "10.3.0.1", ALLOW, 2, 10); /* 80% */
    block("api", "10.3.0.2", ALLOW, 9, 3);  /* 10% */
    block("api", "10.3.0.3", DENY, 0, 1);   /* refused: no share */
    n = rl2_usage_top(&view, top, RL2_USAGE_TOP);
    assert_int_equal(n, 3);
    assert_string_equal(top[0].client, "10.3.0.1");
    assert_string_equal(top[0].rule, "api");
    assert_int_equal(top[0].requests, 10 * RL2_USAGE_TOP_SAMPLE);
    assert_int_equal(top[0].error, 0);
    assert_int_equal(top[0].peak_ppm, 800000);
    assert_int_equal(top[0].last_wall_s, now.wall_us / RL2_US_PER_S);
    assert_string_equal(top[1].client, "10.3.0.2");
    assert_int_equal(top[1].requests, 3 * RL2_USAGE_TOP_SAMPLE);
    assert_int_equal(top[1].peak_ppm, 100000);
    assert_string_equal(top[2].client, "10.3.0.3");
    assert_int_equal(top[2].peak_ppm, 0);
    /* max caps the answer, largest first. */
    assert_int_equal(rl2_usage_top(&view, top, 1), 1);
    assert_string_equal(top[0].client, "10.3.0.1");
    /* A full table: a new client takes the smallest entry and its count
     * as its error (space-saving). */
    for (int i = 0; i < RL2_USAGE_TOP - 3; i++) {
        snprintf(ip, sizeof(ip), "10.4.0.%d", i);
        block("api", ip, ALLOW, 9, 1);
    }
    block("api", "10.5.0.1", ALLOW, 9, 2);
    n = rl2_usage_top(&view, top, RL2_USAGE_TOP);
    assert_int_equal(n, RL2_USAGE_TOP);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(top[i].client, "10.5.0.1") == 0) {
            assert_int_equal(top[i].requests, 3 * RL2_USAGE_TOP_SAMPLE);
            assert_int_equal(top[i].error, RL2_USAGE_TOP_SAMPLE);
            return;
        }
    }
    fail_msg("10.5.0.1 is not in the table");
}

/* ratelimit2ctl's way in: the object by name, read-only, the same
 * numbers; a name nobody made: RL2_ERR_NOT_FOUND. */
static void
test_open_by_name(void **state)
{
    rl2_usage_t      *u;
    rl2_usage_cell_t  cells[4];
    rl2_usage_point_t p[2];
    int64_t           first;
    rl2_err_t         err;

    (void)state;
    minute_mix();
    assert_int_equal(rl2_usage_open(shm_name, &u, &err), RL2_OK);
    assert_int_equal(rl2_usage_cells(u, cells, 4), 4);
    assert_int_equal(cell_of("api", "free", NULL), 0);
    assert_string_equal(cells[0].rule, "api");
    assert_string_equal(cells[0].tier, "free");
    assert_int_equal(cells[0].requests, 7);
    assert_int_equal(rl2_usage_series(u, 0, RL2_USAGE_STEP_MINUTE,
                                      now.wall_us / RL2_US_PER_S, p, 2, &first),
                     2);
    assert_int_equal(first, (now.wall_us / RL2_US_PER_S / 60 - 1) * 60);
    assert_point(&p[1], 7, 5, 2, 4, 700000);
    /* A cell index out of range, an unknown step: nothing. */
    assert_int_equal(rl2_usage_series(u, 99, RL2_USAGE_STEP_MINUTE,
                                      now.wall_us / RL2_US_PER_S, p, 2, &first),
                     0);
    assert_int_equal(rl2_usage_series(u, 0, (rl2_usage_step_t)7,
                                      now.wall_us / RL2_US_PER_S, p, 2, &first),
                     0);
    rl2_usage_close(u);
    assert_int_equal(
        rl2_usage_open("/rl2test-nobody-made-this.metrics", &u, &err),
        RL2_ERR_NOT_FOUND);
    assert_null(u);
    assert_non_null(strstr(err.msg, "no such object"));
}

/* A graceful restart closes and opens the object again (the module is
 * unloaded): the series and totals are still there, and go on. */
static void
test_reopen_keeps_series(void **state)
{
    (void)state;
    minute_mix();
    advance_s(60);
    req("api", 0, "10.0.0.1", ALLOW, 9);
    close_metrics();
    open_metrics();
    req("api", 0, "10.0.0.2", ALLOW, 9);
    assert_point(last_minutes("api", "free", 1), 7, 5, 2, 4, 700000);
    assert_point(last_minutes("api", "free", 0), 2, 2, 0, 2, 100000);
    advance_s(60);
    req("api", 0, "10.0.0.2", ALLOW, 9);
    assert_point(last_minutes("api", "free", 1), 2, 2, 0, 2, 100000);
}

/* More cells than RL2_USAGE_CELLS: the first 256 get series, the rest
 * are counted (the exposition has them all) without. */
static uint64_t n_cells;

static void
count_cell(void *ctx, const rl2_metrics_cell_t *c)
{
    (void)ctx;
    (void)c;
    n_cells++;
}

static void
test_cells_beyond_the_table(void **state)
{
    /* 264 cells: 12 tiers, as the fixture holds 2 of the 14 names. */
    enum { RULES = 22, TIERS = 12 };
    static char         text[8192];
    size_t              len = 0;
    rl2_policy_t       *p;
    rl2_metrics_bind_t *b2;
    rl2_verdict_t       v;
    rl2_usage_cell_t    c;
    rl2_err_t           err;

    (void)state;
    len += (size_t)snprintf(text + len, sizeof(text) - len, "tiers = [");
    for (int t = 0; t < TIERS; t++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "%s\"t%d\"",
                                t ? "," : "", t);
    }
    len += (size_t)snprintf(text + len, sizeof(text) - len, "];\nrules = (");
    for (int r = 0; r < RULES; r++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                "%s{ name = \"r%d\"; limits = ( { rate = "
                                "\"10/1h\"; } ); }",
                                r ? "," : "", r);
    }
    snprintf(text + len, sizeof(text) - len, ");\n");
    assert_int_equal(rl2_config_load_string(text, "big.conf", NULL, &p, &err),
                     RL2_OK);
    assert_int_equal(rl2_metrics_bind(m, p, NULL, 0, &b2, NULL, &err), RL2_OK);
    for (int round = 0; round < 2; round++) {
        for (int r = 0; r < RULES; r++) {
            for (int t = 0; t < TIERS; t++) {
                verdict(&v, RL2_OUTCOME_ALLOW, t, "10.6.0.1");
                layer(&v, &p->rules[r], 0, 9);
                rl2_metrics_record(b2, &v, &now);
            }
        }
    }
    assert_int_equal(rl2_usage_cells(&view, NULL, 0), 0);
    {
        static rl2_usage_cell_t all[RL2_USAGE_CELLS + 8];

        assert_int_equal(rl2_usage_cells(&view, all, RL2_USAGE_CELLS + 8),
                         RL2_USAGE_CELLS);
    }
    /* The first cells have their series; every cell is counted. */
    assert_true(cell_of("r0", "t0", &c) >= 0);
    assert_int_equal(c.requests, 2);
    assert_point(last_minutes("r0", "t0", 0), 2, 2, 0, 1, 100000);
    assert_int_equal(cell_of("r21", "t11", NULL), -1);
    n_cells = 0;
    rl2_metrics_cells(m, count_cell, NULL);
    assert_int_equal(n_cells, RULES * TIERS);
    rl2_metrics_unbind(b2);
    rl2_policy_free(p);
}

/* Four processes at once on cells none has claimed yet (each claims
 * them as its first request finds them): one usage cell per (rule,
 * tier), exact counts, every client of every process in the sketch. */
static void
test_processes(void **state)
{
    enum { PROCS = 4, EACH = 5000 };
    pid_t            pids[PROCS];
    int              status;
    rl2_usage_cell_t c;
    uint32_t         got;

    (void)state;
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            char ip[48];

            for (int i = 0; i < EACH; i++) {
                snprintf(ip, sizeof(ip), "10.7.%d.%d", p, i % 2500);
                req(i & 1 ? "api" : "login", 1, ip, ALLOW, 9);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_int_equal(status, 0);
    }
    /* Two cells, claimed once each. */
    {
        rl2_usage_cell_t all[4];

        assert_int_equal(rl2_usage_cells(&view, all, 4), 2);
        assert_int_not_equal(strcmp(all[0].rule, all[1].rule), 0);
    }
    assert_true(cell_of("api", "pro", &c) >= 0);
    assert_int_equal(c.requests, PROCS * EACH / 2);
    assert_true(cell_of("login", "pro", &c) >= 0);
    assert_int_equal(c.requests, PROCS * EACH / 2);
    /* 1,250 addresses per process and rule, 5,000 in all. */
    got = last_minutes("api", "pro", 0)->clients;
    assert_true(got >= 4900 && got <= 5100);
    assert_int_equal(minutes[RL2_USAGE_MINUTES - 1].requests, PROCS * EACH / 2);
}

/* Prometheus: requests no rule applied to, as outcome="unmatched". */
static char   prom[1 << 20];
static size_t prom_len;

static void
collect(void *ctx, const char *s, size_t n)
{
    (void)ctx;
    if (prom_len + n < sizeof(prom)) {
        memcpy(prom + prom_len, s, n);
        prom_len += n;
        prom[prom_len] = '\0';
    }
}

static void
test_prometheus_unmatched(void **state)
{
    rl2_metrics_env_t env;

    (void)state;
    minute_mix();
    memset(&env, 0, sizeof(env));
    env.circuit = -1;
    prom_len = 0;
    rl2_metrics_prom(m, &env, collect, NULL);
    assert_non_null(strstr(prom, "ratelimit2_requests_total{rule=\"(unmatched)"
                                 "\",tier=\"(none)\",outcome=\"unmatched\"} "
                                 "3\n"));
    assert_null(strstr(prom, "rule=\"(unmatched)\",tier=\"(none)\","
                             "outcome=\"allowed\""));
    assert_null(strstr(prom, "ratelimit2_near_limit_total{rule=\"(unmatched)"));
    assert_non_null(strstr(prom, "ratelimit2_requests_total{rule=\"api\","
                                 "tier=\"free\",outcome=\"allowed\"} 5\n"));
}

/* The status page draws the same series: each cell's 24 hours with its
 * totals, and the top clients with their peak share (a client's text
 * escaped). */
static void
test_status_page(void **state)
{
    rl2_metrics_env_t env;

    (void)state;
    minute_mix();
    block("api", "<b>x</b>", ALLOW, 2, 1);
    memset(&env, 0, sizeof(env));
    env.circuit = -1;
    prom_len = 0;
    rl2_metrics_html(m, &env, now.wall_us / RL2_US_PER_S, collect, NULL);
    assert_non_null(strstr(prom, "<h2>Usage, last 24 hours</h2>"));
    assert_non_null(
        strstr(prom, "<h3>api &middot; free: 71 requests, 2 refused (2.8%); "
                     "up to 5 clients and 71 requests a minute; peak share "
                     "of a limit 80.0%</h3>"));
    assert_non_null(strstr(prom, "<h3>(unmatched) &middot; (none): 3 "
                                 "requests, 0 refused (0.0%)"));
    assert_non_null(strstr(prom, "<polyline class=\"ur\" points=\"0,100 "));
    assert_non_null(strstr(prom, "<tr><td>&lt;b&gt;x&lt;/b&gt;</td><td>api</td>"
                                 "<td>64</td><td>0</td><td>80.0%</td>"));
    assert_null(strstr(prom, "<b>x"));
}

/* A lock word held by a live process that does not let go (stopped, or
 * a dead holder's pid reused): a request that finds its cell unclaimed
 * gives up the claim after the lock's spins, counted without a series,
 * and returns; the next request once the lock is free claims the cell. */
static void
test_claim_with_lock_held(void **state)
{
    mx_shm_t        *s = m->shm;
    rl2_usage_cell_t c;
    pid_t            pid;
    int              status;

    (void)state;
    /* This process is alive: no takeover. */
    atomic_store(&s->lock, (uint32_t)getpid());
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(10);
        req("api", 0, "10.8.0.1", ALLOW, 9);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    atomic_store(&s->lock, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_msg("a request with the lock held did not return (status %#x)",
                 status);
    }
    assert_int_equal(cell_of("api", "free", NULL), -1);
    req("api", 0, "10.8.0.2", ALLOW, 9);
    assert_true(cell_of("api", "free", &c) >= 0);
    assert_int_equal(c.requests, 2);
}

/* A usage cell whose rule or tier slot is out of range (the object is
 * writable by every process of the server's user; ratelimit2ctl maps it
 * read-only, often as root): no count from outside the counters' table,
 * the name "-". */
static void
test_hostile_cell_slots(void **state)
{
    mx_shm_t         *s = m->shm;
    rl2_usage_t      *u;
    rl2_usage_cell_t  cells[4];
    rl2_usage_point_t p[2];
    int64_t           first;
    rl2_err_t         err;

    (void)state;
    minute_mix();
    assert_int_equal(cell_of("api", "free", NULL), 0);
    /* Just past the counters: the per-minute ring of rule slot 0. */
    s->use_cells[0].rule = RL2_METRICS_RULES;
    s->use_cells[0].tier = 0;
    atomic_store(&s->minutes[0][0][0], UINT64_C(12345));
    /* Tier slot 16 of rule slot 0 would be tier slot 0 of rule slot 1. */
    s->use_cells[1].rule = 0;
    s->use_cells[1].tier = RL2_METRICS_TIERS;
    atomic_store(&s->cells[1][0].n[RL2_METRIC_ALLOWED], UINT64_C(777));
    assert_int_equal(rl2_usage_open(shm_name, &u, &err), RL2_OK);
    assert_int_equal(rl2_usage_cells(u, cells, 4), 4);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(cells[i].rule, i == 0 ? "-" : "(bypass)");
        assert_int_equal(cells[i].requests, 0);
        assert_int_equal(cells[i].admitted, 0);
        assert_int_equal(cells[i].refused, 0);
        assert_int_equal(rl2_usage_series(u, (size_t)i, RL2_USAGE_STEP_MINUTE,
                                          now.wall_us / RL2_US_PER_S, p, 2,
                                          &first),
                         2);
        assert_int_equal(p[1].requests, 0);
    }
    rl2_usage_close(u);
}

/* A rule name with no terminating NUL in the object (written by a
 * hostile process): read as "-", as an unterminated client of the top
 * table is dropped, not read on into what follows it. */
static void
test_hostile_unterminated_name(void **state)
{
    mx_shm_t        *s = m->shm;
    rl2_usage_t     *u;
    rl2_usage_cell_t cells[4];
    unsigned         slot;
    rl2_err_t        err;

    (void)state;
    minute_mix();
    assert_int_equal(cell_of("api", "free", NULL), 0);
    slot = s->use_cells[0].rule;
    memset(s->rules[slot].name, 'A', sizeof(s->rules[slot].name));
    assert_int_equal(rl2_usage_open(shm_name, &u, &err), RL2_OK);
    assert_int_equal(rl2_usage_cells(u, cells, 4), 4);
    assert_string_equal(cells[0].rule, "-");
    assert_int_equal(cells[0].requests, 7);
    rl2_usage_close(u);
}

/* The upkeep's words in the object written by a hostile process: a
 * count of cells above the table and clearing positions above a
 * sketch's registers.  The upkeeps and the minute's snapshot stay in
 * the table (they would write far outside it otherwise), and the cells
 * go on counting. */
static void
test_hostile_upkeep_words(void **state)
{
    mx_shm_t        *s = m->shm;
    rl2_usage_cell_t c;

    (void)state;
    minute_mix();
    atomic_store(&s->use_n, UINT32_MAX);
    atomic_store(&s->use_min_left, UINT32_MAX);
    atomic_store(&s->use_hour_left, UINT32_MAX);
    for (int i = 0; i < 3; i++) {
        advance_s(1);
        req("api", 0, "10.9.0.1", ALLOW, 9);
    }
    advance_s(60);
    req("api", 0, "10.9.0.1", ALLOW, 9);
    assert_true(cell_of("api", "free", &c) >= 0);
    assert_int_equal(c.requests, 11);
}

/* The object cut short after ratelimit2ctl opened it (ftruncate by any
 * process of the server's user): a mapping would fault (SIGBUS) on the
 * pages past the new end; the reader's view is its own, whole. */
static void
test_hostile_truncate_after_open(void **state)
{
    rl2_usage_t     *u;
    rl2_usage_cell_t cells[4];
    rl2_err_t        err;
    int              fd;

    (void)state;
    minute_mix();
    assert_int_equal(rl2_usage_open(shm_name, &u, &err), RL2_OK);
    fd = shm_open(shm_name, O_RDWR, 0);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 0), 0);
    close(fd);
    assert_int_equal(rl2_usage_cells(u, cells, 4), 4);
    assert_int_equal(cells[0].requests, 7);
    rl2_usage_close(u);
}

/* Every cell's usage slot written out of range by a hostile process: a
 * request writes the sink's sketches, not memory past the table, and is
 * still counted. */
static void
test_hostile_use_slots(void **state)
{
    mx_shm_t        *s = m->shm;
    rl2_usage_cell_t all[4];

    (void)state;
    for (size_t i = 0; i < RL2_METRICS_RULES * RL2_METRICS_TIERS; i++) {
        atomic_store(&s->use_slot[i], UINT16_MAX);
    }
    minute_mix();
    req("login", 1, "10.10.0.1", ALLOW, 9);
    req("login", 1, "10.10.0.1", DENY, 0);
    assert_int_equal(rl2_usage_cells(&view, all, 4), 0);
    n_cells = 0;
    rl2_metrics_cells(m, count_cell, NULL);
    /* api free and pro, login pro, (unmatched) and (bypass). */
    assert_int_equal(n_cells, 5);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_counts_per_cell_and_minute),
        T(test_hour_rollover),
        T(test_old_intervals_age_out),
        T(test_distinct_clients_at_scale),
        T(test_top_clients),
        T(test_open_by_name),
        T(test_reopen_keeps_series),
        T(test_prometheus_unmatched),
        T(test_status_page),
        T(test_cells_beyond_the_table),
        T(test_processes),
        T(test_claim_with_lock_held),
        T(test_hostile_cell_slots),
        T(test_hostile_unterminated_name),
        T(test_hostile_upkeep_words),
        T(test_hostile_truncate_after_open),
        T(test_hostile_use_slots),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
