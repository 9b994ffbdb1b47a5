/*
 * test_metrics.c -- the metrics object (metrics.c, metrics_clients.c,
 * metrics_read.c, metrics_prom.c): rule and tier slots by name across
 * rebinding, the outcome of each kind of verdict, the minute ring, the
 * top-client table, event=limited and ban_candidate lines per client,
 * exact counts from several processes at once, the exposition and the
 * health answer; the runtime overrides in the exposition, the health
 * answer and the status page (escaped), and a mirror that cannot reach
 * Redis shown as such.
 *
 * Verdicts are built by hand from a policy loaded from text, so each test
 * says exactly which layers refused, ran dry or used an overflow.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/config.h"
#include "ratelimit2/metrics.h"
#include "base/base_internal.h"
#include "store/store_internal.h"
#include "obs/metrics_internal.h"
#include "control/control_internal.h"
#include "base/shm_obj_internal.h"

#define WATCHDOG_S 60
#define T0_WALL_US 1704164645000000LL /* 2024-01-02 03:04:05 UTC */
#define T0_MONO_US 5000000000LL

static const char policy_text[] =
    "tiers = [ \"free\", \"pro\" ];\n"
    "rules = (\n"
    "  { name = \"login\"; paths = \"/login\";\n"
    "    limits = ( { rate = \"10/1h\"; }, { rate = \"100/1d\"; } ); },\n"
    "  { name = \"api\"; paths = \"/api\";\n"
    "    limits = ( { rate = \"10/1h\"; } ); }\n"
    ");\n"
    "default = { limits = ( { rate = \"10/1h\"; } ); };\n";

static char                shm_name[64];
static char                dir[64];
static char                sock_path[128];
static int                 sock = -1;
static rl2_policy_t       *policy;
static rl2_metrics_t      *m;
static rl2_metrics_bind_t *b;
static rl2_alert_t        *alert;
static rl2_clock_t         now;

static int
setup(void **state)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    rl2_metrics_conf_t mc;
    rl2_alert_conf_t   ac;
    rl2_err_t          err;

    (void)state;
    alarm(WATCHDOG_S);
    now.mono_us = T0_MONO_US;
    now.wall_us = T0_WALL_US;
    snprintf(shm_name, sizeof(shm_name), "/rl2test-%ld-metrics",
             (long)getpid());
    rl2_metrics_unlink(shm_name, NULL);
    snprintf(dir, sizeof(dir), "/tmp/rl2metrics.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock_path, sizeof(sock_path), "%s/log", dir);
    strcpy(sa.sun_path, sock_path);
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(sock >= 0);
    assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    rl2_alert_conf_default(&ac);
    ac.socket_path = sock_path;
    assert_int_equal(rl2_alert_open(&ac, &alert, &err), RL2_OK);
    assert_int_equal(
        rl2_config_load_string(policy_text, "t.conf", NULL, &policy, &err),
        RL2_OK);
    rl2_metrics_conf_default(&mc);
    mc.limited_interval_ms = 10000;
    mc.ban_count = 3;
    mc.ban_window_ms = 60000;
    assert_int_equal(
        rl2_metrics_open(shm_name, 0600, &mc, alert, NULL, &m, &err), RL2_OK);
    assert_int_equal(rl2_metrics_bind(m, policy, NULL, 0, &b, NULL, &err),
                     RL2_OK);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    alarm(0);
    rl2_metrics_unbind(b);
    rl2_metrics_close(m);
    rl2_metrics_unlink(shm_name, NULL);
    rl2_policy_free(policy);
    rl2_alert_close(alert);
    close(sock);
    unlink(sock_path);
    rmdir(dir);
    return 0;
}

/* ---- helpers ---------------------------------------------------------- */

typedef struct {
    const char *rule;
    const char *tier;
    uint64_t    n[RL2_METRIC_KINDS];
} want_t;

static want_t found;

static void
find_cell(void *ctx, const rl2_metrics_cell_t *c)
{
    const want_t *w = ctx;

    if (strcmp(c->rule, w->rule) == 0 && strcmp(c->tier, w->tier) == 0) {
        memcpy(found.n, c->n, sizeof(found.n));
    }
}

/* The counts of one cell (all zero when it has none). */
static uint64_t
cell(const char *rule, const char *tier, rl2_metric_kind_t k)
{
    want_t w = { rule, tier, { 0 } };

    memset(&found, 0, sizeof(found));
    rl2_metrics_cells(m, find_cell, &w);
    return found.n[k];
}

/* A verdict with one layer per (rule, limit) pair given. */
static void
verdict(rl2_verdict_t *v, rl2_outcome_t outcome, int tier)
{
    rl2_verdict_init(v);
    v->outcome = outcome;
    v->tier = tier;
    strcpy(v->client_ip, "192.0.2.7");
}

static rl2_layer_t *
layer(rl2_verdict_t *v, const rl2_rule_t *rule, size_t limit, int64_t remaining)
{
    rl2_layer_t *l = &v->layers[v->n_layers++];

    memset(l, 0, sizeof(*l));
    l->rule = rule;
    l->limit = &rule->limits.limits[limit];
    l->result.limit = l->limit->algo.limit;
    l->result.remaining = remaining;
    l->result.allowed = 1;
    l->committed = 1;
    strcpy(l->client, v->client_ip);
    v->shown = 0;
    return l;
}

static int
recv_lines(char lines[][RL2_ALERT_LINE_MAX + 1], int max)
{
    struct pollfd p = { .fd = sock, .events = POLLIN };
    int           n = 0;

    while (n < max && poll(&p, 1, 100) == 1) {
        ssize_t r = recv(sock, lines[n], RL2_ALERT_LINE_MAX, 0);

        assert_true(r > 0);
        lines[n++][r] = '\0';
    }
    return n;
}

/* ---- tests ------------------------------------------------------------ */

static void
test_outcomes(void **state)
{
    const rl2_rule_t *login = &policy->rules[0], *api = &policy->rules[1];
    rl2_verdict_t     v;

    (void)state;
    /* Allowed, two layers of one rule: counted once, near (1 of 10 left
     * is 90% used). */
    verdict(&v, RL2_OUTCOME_ALLOW, 0);
    layer(&v, login, 0, 1);
    layer(&v, login, 1, 50);
    rl2_metrics_record(b, &v, &now);
    assert_int_equal(cell("login", "free", RL2_METRIC_ALLOWED), 1);
    assert_int_equal(cell("login", "free", RL2_METRIC_NEAR), 1);
    /* 3 of 10 left: 70% used, not near. */
    verdict(&v, RL2_OUTCOME_ALLOW, 1);
    layer(&v, api, 0, 3);
    rl2_metrics_record(b, &v, &now);
    assert_int_equal(cell("api", "pro", RL2_METRIC_ALLOWED), 1);
    assert_int_equal(cell("api", "pro", RL2_METRIC_NEAR), 0);
    /* Denied by api: login, which passed, counts nothing. */
    verdict(&v, RL2_OUTCOME_DENY, -1);
    layer(&v, login, 0, 5);
    layer(&v, api, 0, 0)->refused = 1;
    v.shown = 1;
    rl2_metrics_record(b, &v, &now);
    assert_int_equal(cell("api", "(none)", RL2_METRIC_DENIED), 1);
    assert_int_equal(cell("login", "(none)", RL2_METRIC_ALLOWED), 0);
    assert_int_equal(cell("login", "(none)", RL2_METRIC_DENIED), 0);
    /* Dry run that would refuse, and an overflow. */
    verdict(&v, RL2_OUTCOME_ALLOW, 0);
    layer(&v, api, 0, 0)->dry_run = 1;
    v.layers[0].refused = 1;
    layer(&v, login, 0, 0)->overflow_used = 1;
    rl2_metrics_record(b, &v, &now);
    assert_int_equal(cell("api", "free", RL2_METRIC_DRY_RUN), 1);
    assert_int_equal(cell("api", "free", RL2_METRIC_ALLOWED), 0);
    assert_int_equal(cell("login", "free", RL2_METRIC_OVERFLOW), 1);
    assert_int_equal(cell("login", "free", RL2_METRIC_ALLOWED), 2);
    /* Bypass and nothing applied. */
    verdict(&v, RL2_OUTCOME_BYPASS, -1);
    rl2_metrics_record(b, &v, &now);
    verdict(&v, RL2_OUTCOME_NONE, -1);
    rl2_metrics_record(b, &v, &now);
    assert_int_equal(cell("(bypass)", "(none)", RL2_METRIC_BYPASSED), 1);
    /* The default rule, by pointer. */
    verdict(&v, RL2_OUTCOME_ALLOW, 0);
    layer(&v, policy->default_rule, 0, 9);
    rl2_metrics_record(b, &v, &now);
    assert_int_equal(cell("default", "free", RL2_METRIC_ALLOWED), 1);
}

/* A rule copied elsewhere (a merged <Location>) is found by name; a new
 * policy keeps the slots of the names it shares with the old one. */
static void
test_names_survive_rebind(void **state)
{
    static const char text2[] =
        "tiers = [ \"pro\", \"gold\" ];\n"
        "rules = ( { name = \"new\"; limits = ( { rate = \"1/1h\"; } ); },\n"
        "  { name = \"api\"; limits = ( { rate = \"10/1h\"; } ); } );\n";
    rl2_policy_t       *p2;
    rl2_metrics_bind_t *b2;
    rl2_rule_t          copy = policy->rules[1];
    rl2_verdict_t       v;
    rl2_err_t           err;

    (void)state;
    verdict(&v, RL2_OUTCOME_ALLOW, 1);
    layer(&v, &copy, 0, 9);
    rl2_metrics_record(b, &v, &now);
    assert_int_equal(cell("api", "pro", RL2_METRIC_ALLOWED), 1);
    assert_int_equal(rl2_config_load_string(text2, "t2.conf", NULL, &p2, &err),
                     RL2_OK);
    assert_int_equal(rl2_metrics_bind(m, p2, NULL, 0, &b2, NULL, &err), RL2_OK);
    verdict(&v, RL2_OUTCOME_ALLOW, 0); /* "pro" is first now */
    layer(&v, &p2->rules[1], 0, 9);
    rl2_metrics_record(b2, &v, &now);
    verdict(&v, RL2_OUTCOME_ALLOW, 1);
    layer(&v, &p2->rules[0], 0, 0);
    rl2_metrics_record(b2, &v, &now);
    assert_int_equal(cell("api", "pro", RL2_METRIC_ALLOWED), 2);
    assert_int_equal(cell("new", "gold", RL2_METRIC_ALLOWED), 1);
    rl2_metrics_unbind(b2);
    rl2_policy_free(p2);
}

static void
test_too_many_names(void **state)
{
    char                text[16384];
    size_t              len = 0, lost = 0;
    rl2_policy_t       *p;
    rl2_metrics_bind_t *b2;
    rl2_err_t           err;

    (void)state;
    len += (size_t)snprintf(text + len, sizeof(text) - len, "rules = (");
    for (int i = 0; i < RL2_METRICS_RULES; i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len,
                                "%s{ name = \"r%d\"; limits = ( { rate = "
                                "\"1/1h\"; } ); }",
                                i ? "," : "", i);
    }
    snprintf(text + len, sizeof(text) - len, ");\n");
    assert_int_equal(rl2_config_load_string(text, "big.conf", NULL, &p, &err),
                     RL2_OK);
    assert_int_equal(rl2_metrics_bind(m, p, NULL, 0, &b2, &lost, &err), RL2_OK);
    /* 3 reserved slots ("(bypass)", "(other)", "(unmatched)"), and
     * login, api and default hold 3 more. */
    assert_int_equal(lost, 6);
    rl2_metrics_unbind(b2);
    rl2_policy_free(p);
}

/* The charts' minutes come from the totals snapshotted by the first
 * upkeep of each minute. */
static void
test_minute_ring(void **state)
{
    uint64_t      min[RL2_METRICS_MINUTES][2];
    char          name[RL2_NAME_MAX + 1];
    rl2_verdict_t v;
    int64_t       t0 = now.wall_us / 1000000;
    unsigned      api = 0;

    (void)state;
    for (int i = 0; i < 3; i++) {
        verdict(&v, RL2_OUTCOME_ALLOW, 0);
        layer(&v, &policy->rules[1], 0, 9);
        rl2_metrics_record(b, &v, &now);
    }
    for (unsigned s = 2; s < RL2_METRICS_RULES && api == 0; s++) {
        if (rl2_metrics_minutes(m, s, t0, min, name)
            && strcmp(name, "api") == 0) {
            api = s;
        }
    }
    assert_int_not_equal(api, 0);
    rl2_metrics_minutes(m, api, t0, min, name);
    assert_int_equal(min[RL2_METRICS_MINUTES - 1][0], 3);
    assert_int_equal(min[RL2_METRICS_MINUTES - 1][1], 0);
    /* An hour and a minute on: t0 is out of the window, and its slot of
     * the ring (reused) is not read as the new minute's. */
    now.wall_us += 61LL * 60 * 1000000;
    now.mono_us += 61LL * 60 * 1000000;
    for (int i = 0; i < 2; i++) {
        verdict(&v, RL2_OUTCOME_DENY, 0);
        layer(&v, &policy->rules[1], 0, 0)->refused = 1;
        rl2_metrics_record(b, &v, &now);
    }
    rl2_metrics_minutes(m, api, now.wall_us / 1000000, min, name);
    assert_int_equal(min[RL2_METRICS_MINUTES - 1][0], 0);
    assert_int_equal(min[RL2_METRICS_MINUTES - 1][1], 2);
    for (unsigned i = 0; i + 1 < RL2_METRICS_MINUTES; i++) {
        assert_int_equal(min[i][0] + min[i][1], 0);
    }
}

static void
test_top_clients(void **state)
{
    rl2_metrics_top_t top[RL2_METRICS_TOP];
    rl2_verdict_t     v;
    size_t            n;

    (void)state;
    /* 40 clients refused once, one refused 30 times in between. */
    for (int i = 0; i < 70; i++) {
        verdict(&v, RL2_OUTCOME_DENY, 0);
        if (i % 7 == 3 || i >= 40) {
            strcpy(v.client_ip, "198.51.100.1");
        }
        else {
            snprintf(v.client_ip, sizeof(v.client_ip), "203.0.113.%d", i);
        }
        layer(&v, &policy->rules[0], 0, 0)->refused = 1;
        rl2_metrics_record(b, &v, &now);
    }
    n = rl2_metrics_top_limited(m, top);
    assert_int_equal(n, RL2_METRICS_TOP);
    assert_string_equal(top[0].client, "198.51.100.1");
    assert_int_equal(top[0].count, 36);
    assert_string_equal(top[0].rule, "login");
    for (size_t i = 1; i < n; i++) {
        assert_true(top[i].count <= top[i - 1].count);
    }
}

/* One flooding client: one limited line per interval with the held
 * count, one ban candidate per window; another client has its own. */
static void
test_limited_lines(void **state)
{
    char                 lines[16][RL2_ALERT_LINE_MAX + 1];
    rl2_metrics_global_t g;
    rl2_verdict_t        v;
    int                  n;

    (void)state;
    for (int i = 0; i < 50; i++) {
        verdict(&v, RL2_OUTCOME_DENY, 0);
        layer(&v, &policy->rules[0], 0, 0)->refused = 1;
        rl2_metrics_record(b, &v, &now);
        now.mono_us += 100000; /* 50 x 0.1 s: 5 s < 10 s */
    }
    n = recv_lines(lines, 16);
    assert_int_equal(n, 2);
    assert_non_null(strstr(lines[0], ": ratelimit2: event=limited "
                                     "client=192.0.2.7 rule=login limit=login "
                                     "tier=free retry_after="));
    assert_non_null(strstr(lines[1], ": ratelimit2: event=ban_candidate "
                                     "client=192.0.2.7 rule=login count=4 "
                                     "window=60s"));
    now.mono_us += 5000000; /* the interval has passed */
    verdict(&v, RL2_OUTCOME_DENY, 0);
    layer(&v, &policy->rules[0], 0, 0)->refused = 1;
    rl2_metrics_record(b, &v, &now);
    strcpy(v.client_ip, "2001:db8::1");
    strcpy(v.layers[0].client, "user:0123456789abcdef");
    rl2_metrics_record(b, &v, &now);
    n = recv_lines(lines, 16);
    assert_int_equal(n, 2);
    assert_non_null(strstr(lines[0], "client=192.0.2.7 "));
    assert_non_null(strstr(lines[0], " suppressed=49"));
    assert_non_null(strstr(lines[1], "event=limited client=2001:db8::1 "
                                     "rule=login"));
    assert_non_null(strstr(lines[1], " key=user:0123456789abcdef"));
    rl2_metrics_global(m, &g);
    assert_int_equal(g.limited_lines, 3);
    assert_int_equal(g.limited_held, 49);
    assert_int_equal(g.ban_candidates, 1);
}

/* The upkeep: zone_full on live keys, a warning by share (50%) and a
 * critical level by bytes (those of 60 live keys), each firing once when
 * the zone climbs to it and re-armed when the zone's keys expire and it
 * falls below 7/8 of it; then evictions above the rate, once.  The
 * alerts are not rate-limited here (interval 0), so that every line the
 * levels let through is seen. */
static void
test_zone_alerts(void **state)
{
    char                lines[16][RL2_ALERT_LINE_MAX + 1], zname[64];
    char                want[256];
    rl2_metrics_conf_t  mc;
    rl2_alert_conf_t    ac;
    rl2_alert_t        *al;
    rl2_metrics_t      *mz;
    rl2_metrics_bind_t *bz;
    rl2_zone_t         *zone;
    rl2_zone_stats_t    zs;
    rl2_verdict_t       v;
    rl2_err_t           err;
    int                 key = 0, n;

    (void)state;
    snprintf(zname, sizeof(zname), "/rl2test-%ld-mzone", (long)getpid());
    rl2_zone_unlink(zname, NULL);
    assert_int_equal(rl2_zone_open(zname, 64, 8, 0600, &zone, &err), RL2_OK);
    assert_int_equal(rl2_zone_stats(zone, &zs, &err), RL2_OK);
    rl2_alert_conf_default(&ac);
    ac.socket_path = sock_path;
    ac.interval_ms = 0;
    assert_int_equal(rl2_alert_open(&ac, &al, &err), RL2_OK);
    rl2_metrics_unlink(shm_name, NULL);
    rl2_metrics_conf_default(&mc);
    mc.eviction_alert = 10;
    assert_int_equal(rl2_metrics_zone_full_parse("50%", &mc, &err), RL2_OK);
    mc.zone_critical.bytes = zs.fixed_bytes + 60 * zs.entry_bytes;
    assert_int_equal(rl2_metrics_open(shm_name, 0600, &mc, al, zone, &mz, &err),
                     RL2_OK);
    assert_int_equal(rl2_metrics_bind(mz, policy, NULL, 0, &bz, NULL, &err),
                     RL2_OK);
    verdict(&v, RL2_OUTCOME_ALLOW, 0);
    layer(&v, &policy->rules[1], 0, 9);
    /* ADD more keys that live LIFE seconds, then SECS on and one
     * request (the upkeep) */
#define FILL(add, life, secs) \
    do { \
        assert_int_equal(rl2_zone_lock(zone, &err), RL2_OK); \
        for (int i = 0; i < (add); i++, key++) { \
            rl2_zone_keep_until(zone, \
                                rl2_zone_get(zone, \
                                             rl2_digest(&key, sizeof(key)), \
                                             now.mono_us), \
                                now.mono_us + (life)*1000000LL); \
        } \
        rl2_zone_unlock(zone); \
        now.mono_us += (secs)*1000000LL; \
        rl2_metrics_record(bz, &v, &now); \
    } while (0)
    FILL(0, 0, 0);   /* the first upkeep: marks, no line */
    FILL(30, 20, 1); /* 47% */
    assert_int_equal(recv_lines(lines, 16), 0);
    FILL(4, 19, 1); /* 53%: the warning */
    n = recv_lines(lines, 16);
    assert_int_equal(n, 1);
    snprintf(want, sizeof(want),
             "ratelimit2: event=zone_full level=warning live=34 entries=64 "
             "percent=53 bytes=%" PRIu64 " threshold=50%%",
             zs.fixed_bytes + 34 * zs.entry_bytes);
    assert_non_null(strstr(lines[0], want));
    FILL(30, 5, 1); /* full, above 60 keys' bytes: critical */
    n = recv_lines(lines, 16);
    assert_int_equal(n, 1);
    snprintf(want, sizeof(want),
             "event=zone_full level=critical live=64 entries=64 percent=100 "
             "bytes=%" PRIu64 " threshold=%" PRIu64,
             zs.fixed_bytes + 64 * zs.entry_bytes, mc.zone_critical.bytes);
    assert_non_null(strstr(lines[0], want));
    FILL(0, 0, 1); /* still full: nothing */
    assert_int_equal(recv_lines(lines, 16), 0);
    /* The 30 short keys expire: 34 live, below 7/8 of the critical
     * level (re-armed), not of the warning (held): no line. */
    FILL(0, 0, 5);
    assert_int_equal(recv_lines(lines, 16), 0);
    assert_int_equal(rl2_zone_stats(zone, &zs, &err), RL2_OK);
    assert_int_equal(zs.used, 34);
    assert_int_equal(zs.reclaimed, 30);
    FILL(30, 5, 1); /* full again: critical again, once */
    n = recv_lines(lines, 16);
    assert_int_equal(n, 1);
    assert_non_null(strstr(lines[0], "level=critical live=64 "));
    /* Everything expires: both levels re-armed, no line; then 40 keys:
     * the warning again. */
    FILL(0, 0, 20);
    assert_int_equal(recv_lines(lines, 16), 0);
    FILL(40, 3600, 1);
    n = recv_lines(lines, 16);
    assert_int_equal(n, 1);
    assert_non_null(strstr(lines[0], "level=warning live=40 entries=64 "));
    FILL(24, 3600, 1); /* full of live keys: critical */
    n = recv_lines(lines, 16);
    assert_int_equal(n, 1);
    assert_non_null(strstr(lines[0], "level=critical live=64 "));
    FILL(20, 3600, 60); /* 20 evictions within the minute */
    n = recv_lines(lines, 16);
    assert_int_equal(n, 1);
    assert_non_null(strstr(lines[0], "ratelimit2: event=evictions "
                                     "evictions=20 per="));
#undef FILL
    rl2_metrics_unbind(bz);
    rl2_metrics_close(mz);
    rl2_alert_close(al);
    rl2_zone_close(zone);
    rl2_zone_unlink(zname, NULL);
}

/* zone_full=: shares, sizes, off, and what is refused. */
static void
test_zone_full_parse(void **state)
{
    static const char *const bad[] = {
        "",        "0%",      "101%", "80K%", "80%/", "x",
        "80%/70%", "50M/40M", "5Q",   "-1%",  "80%%", "99999999999999G"
    };
    rl2_metrics_conf_t mc;
    rl2_err_t          err;

    (void)state;
    rl2_metrics_conf_default(&mc);
    assert_int_equal(mc.zone_warning.share_ppm, 800000);
    assert_int_equal(mc.zone_critical.share_ppm, 1000000);
    assert_int_equal(rl2_metrics_zone_full_parse("40M/50M", &mc, &err), RL2_OK);
    assert_int_equal(mc.zone_warning.share_ppm, 0);
    assert_int_equal(mc.zone_warning.bytes, 40 << 20);
    assert_int_equal(mc.zone_critical.bytes, 50 << 20);
    assert_int_equal(rl2_metrics_zone_full_parse("90%", &mc, &err), RL2_OK);
    assert_int_equal(mc.zone_warning.share_ppm, 900000);
    assert_int_equal(mc.zone_critical.share_ppm + mc.zone_critical.bytes, 0);
    assert_int_equal(rl2_metrics_zone_full_parse("off/2G", &mc, &err), RL2_OK);
    assert_int_equal(mc.zone_warning.share_ppm + mc.zone_warning.bytes, 0);
    assert_int_equal(mc.zone_critical.bytes, UINT64_C(2) << 30);
    assert_int_equal(rl2_metrics_zone_full_parse("80%/100", &mc, &err), RL2_OK);
    assert_int_equal(mc.zone_critical.bytes, 100);
    assert_int_equal(rl2_metrics_zone_full_parse("off", &mc, &err), RL2_OK);
    assert_int_equal(mc.zone_critical.share_ppm + mc.zone_critical.bytes
                         + mc.zone_warning.share_ppm + mc.zone_warning.bytes,
                     0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rl2_metrics_conf_default(&mc);
        if (rl2_metrics_zone_full_parse(bad[i], &mc, &err) == RL2_OK) {
            fail_msg("zone_full=%s accepted", bad[i]);
        }
        assert_non_null(strstr(err.msg, "zone_full="));
        assert_int_equal(mc.zone_warning.share_ppm, 800000); /* untouched */
    }
}

/* refuse N requests of rule `r` this minute, one upkeep first. */
static void
refuse(rl2_metrics_bind_t *bz, const rl2_rule_t *r, int n)
{
    rl2_verdict_t v;

    for (int i = 0; i < n; i++) {
        verdict(&v, RL2_OUTCOME_DENY, 0);
        layer(&v, r, 0, 0)->refused = 1;
        rl2_metrics_record(bz, &v, &now);
    }
}

static void
next_minute(void)
{
    now.wall_us += 60000000;
    now.mono_us += 60000000;
}

/* event=anomaly: a rule's refusals in the minute that ended against its
 * own last hour: far above it (one line, naming the rule), above four
 * deviations but not twice the mean (none), a quiet rule below the floor
 * (none), a second anomaly within the alert interval (held back). */
static void
test_anomaly(void **state)
{
    const rl2_rule_t   *login = &policy->rules[0], *api = &policy->rules[1];
    char                lines[16][RL2_ALERT_LINE_MAX + 1], name[64];
    rl2_metrics_conf_t  mc;
    rl2_metrics_t      *ma;
    rl2_metrics_bind_t *ba;
    rl2_err_t           err;
    int                 n;

    (void)state;
    snprintf(name, sizeof(name), "/rl2test-%ld-manomaly", (long)getpid());
    rl2_metrics_unlink(name, NULL);
    rl2_metrics_conf_default(&mc);
    assert_int_equal(mc.anomaly_min, 60);
    mc.limited_interval_ms = 0; /* only anomaly lines on the socket */
    assert_int_equal(rl2_metrics_open(name, 0600, &mc, alert, NULL, &ma, &err),
                     RL2_OK);
    assert_int_equal(rl2_metrics_bind(ma, policy, NULL, 0, &ba, NULL, &err),
                     RL2_OK);
    recv_lines(lines, 16);
    now.wall_us = (now.wall_us / 60000000 + 1) * 60000000;
    /* An hour and more of 8 and 12 refusals a minute: mean 10, sd 2. */
    for (int k = 0; k < 62; k++) {
        refuse(ba, login, k % 2 ? 12 : 8);
        next_minute();
    }
    assert_int_equal(recv_lines(lines, 16), 0);
    /* 19: over mean + 4 sd (18), under twice the mean (20); and a rule
     * with no refusal in its hour refusing 59, under the floor. */
    refuse(ba, login, 19);
    refuse(ba, api, 59);
    next_minute();
    refuse(ba, login, 1);
    assert_int_equal(recv_lines(lines, 16), 0);
    /* 200 refusals, and api's 60 (at the floor, from nothing): one line,
     * for the rule furthest above its hour, saying two were. */
    refuse(ba, login, 199);
    refuse(ba, api, 60);
    next_minute();
    refuse(ba, login, 1);
    n = recv_lines(lines, 16);
    assert_int_equal(n, 1);
    assert_non_null(strstr(lines[0], "ratelimit2: event=anomaly rule=login "
                                     "denied=200 per=60s mean=10."));
    assert_non_null(strstr(lines[0], " stddev=2."));
    assert_non_null(strstr(lines[0], " rules=2"));
    /* Another at once: held back by the kind's interval. */
    refuse(ba, login, 999);
    next_minute();
    refuse(ba, login, 1);
    assert_int_equal(recv_lines(lines, 16), 0);
    rl2_metrics_unbind(ba);
    rl2_metrics_close(ma);
    rl2_metrics_unlink(name, NULL);
}

/* Several processes at once: no count lost. */
static void
test_processes(void **state)
{
    enum { PROCS = 4, EACH = 20000 };
    pid_t pids[PROCS];
    int   status;

    (void)state;
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            rl2_verdict_t v;

            for (int i = 0; i < EACH; i++) {
                verdict(&v, RL2_OUTCOME_ALLOW, 1);
                layer(&v, &policy->rules[1], 0, 9);
                rl2_metrics_record(b, &v, &now);
            }
            _exit(0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
        assert_int_equal(status, 0);
    }
    assert_int_equal(cell("api", "pro", RL2_METRIC_ALLOWED), PROCS * EACH);
}

static char   prom[65536];
static size_t prom_len;

static void
collect(void *ctx, const char *s, size_t n)
{
    (void)ctx;
    assert_true(prom_len + n < sizeof(prom));
    memcpy(prom + prom_len, s, n);
    prom_len += n;
    prom[prom_len] = '\0';
}

static void
test_prometheus(void **state)
{
    rl2_metrics_env_t env = { 0 };
    rl2_verdict_t     v;

    (void)state;
    verdict(&v, RL2_OUTCOME_ALLOW, 0);
    layer(&v, &policy->rules[0], 0, 5);
    rl2_metrics_record(b, &v, &now);
    rl2_metrics_store_call(m, 80, 1);      /* <= 100 µs */
    rl2_metrics_store_call(m, 3000, 1);    /* <= 5 ms */
    rl2_metrics_store_call(m, 2000000, 0); /* +Inf, an error */
    env.circuit = -1;
    env.generation = 3;
    prom_len = 0;
    rl2_metrics_prom(m, &env, collect, NULL);
    assert_non_null(strstr(prom, "# HELP ratelimit2_requests_total "));
    assert_non_null(strstr(prom, "# TYPE ratelimit2_requests_total "
                                 "counter\n"));
    assert_non_null(strstr(prom, "\nratelimit2_requests_total{rule=\"login\""
                                 ",tier=\"free\",outcome=\"allowed\"} 1\n"));
    assert_non_null(strstr(prom, "\nratelimit2_store_duration_seconds_bucket"
                                 "{le=\"0.000100\"} 1\n"));
    assert_non_null(strstr(prom, "{le=\"0.005000\"} 2\n"));
    assert_non_null(strstr(prom, "{le=\"1.000000\"} 2\n"));
    assert_non_null(strstr(prom, "{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(prom, "\nratelimit2_store_duration_seconds_sum "
                                 "2.003080\n"));
    assert_non_null(strstr(prom, "\nratelimit2_redis_errors_total 1\n"));
    assert_non_null(strstr(prom, "\nratelimit2_policy_generation 3\n"));
    assert_null(strstr(prom, "circuit")); /* no Redis */
}

/* ---- decision time ---------------------------------------------------- */

/* Recordings land in the buckets of their time (an edge is in the bucket
 * it bounds), and _sum and _count are theirs. */
static void
test_decide_time_buckets(void **state)
{
    rl2_metrics_env_t    env = { 0 };
    rl2_metrics_global_t g;

    (void)state;
    rl2_metrics_decide_time(m, 800);       /* <= 1 µs */
    rl2_metrics_decide_time(m, 1000);      /* <= 1 µs: the edge */
    rl2_metrics_decide_time(m, 1001);      /* <= 2.5 µs */
    rl2_metrics_decide_time(m, 300000);    /* <= 500 µs */
    rl2_metrics_decide_time(m, 200000000); /* +Inf */
    rl2_metrics_decide_time(m, -5);        /* a clock step: 0, <= 1 µs */
    rl2_metrics_global(m, &g);
    assert_int_equal(g.decide_bucket[0], 3);
    assert_int_equal(g.decide_bucket[1], 1);
    assert_int_equal(g.decide_bucket[8], 1);
    assert_int_equal(g.decide_bucket[RL2_METRICS_DECIDE_BUCKETS], 1);
    assert_int_equal(g.decide_ns_sum, 800 + 1000 + 1001 + 300000 + 200000000);
    env.circuit = -1;
    prom_len = 0;
    rl2_metrics_prom(m, &env, collect, NULL);
    assert_non_null(strstr(prom, "# TYPE ratelimit2_decision_seconds "
                                 "histogram\n"));
    assert_non_null(strstr(prom, "\nratelimit2_decision_seconds_bucket"
                                 "{le=\"0.000001000\"} 3\n"));
    assert_non_null(strstr(prom, "\nratelimit2_decision_seconds_bucket"
                                 "{le=\"0.000002500\"} 4\n"));
    assert_non_null(strstr(prom, "\nratelimit2_decision_seconds_bucket"
                                 "{le=\"0.000250000\"} 4\n"));
    assert_non_null(strstr(prom, "\nratelimit2_decision_seconds_bucket"
                                 "{le=\"0.000500000\"} 5\n"));
    assert_non_null(strstr(prom, "\nratelimit2_decision_seconds_bucket"
                                 "{le=\"0.100000000\"} 5\n"));
    assert_non_null(strstr(prom, "\nratelimit2_decision_seconds_bucket"
                                 "{le=\"+Inf\"} 6\n"));
    assert_non_null(strstr(prom, "\nratelimit2_decision_seconds_sum "
                                 "0.200302801\n"));
    assert_non_null(strstr(prom, "\nratelimit2_decision_seconds_count 6\n"));
}

/* Any 64 consecutive calls of the sampling helper on one thread choose
 * exactly one, whatever the counter held before; rl2_metrics_decide()
 * decides every request and times the chosen ones. */
static void
test_decide_sampled(void **state)
{
    rl2_zone_t          *zone;
    rl2_store_t         *store;
    rl2_request_t        req = { .method = "GET",
                                 .path = "/x",
                                 .peer_ip = "192.0.2.1" };
    rl2_verdict_t        v;
    rl2_err_t            err;
    rl2_metrics_global_t g;
    unsigned             chosen = 0;
    uint64_t             timed = 0;
    char                 zname[64];

    (void)state;
    for (unsigned i = 0; i < 64 * 10; i++) {
        chosen += (unsigned)rl2_metrics_decide_sampled();
    }
    assert_int_equal(chosen, 10);
    snprintf(zname, sizeof(zname), "/rl2test-%ld-mxzone", (long)getpid());
    rl2_zone_unlink(zname, NULL);
    assert_int_equal(
        rl2_zone_open(zname, 64, policy->max_state_size, 0600, &zone, &err),
        RL2_OK);
    assert_int_equal(rl2_store_local_create(zone, &store, &err), RL2_OK);
    for (unsigned i = 0; i < 64 * 3; i++) {
        rl2_verdict_init(&v);
        assert_int_equal(rl2_metrics_decide(b, policy, NULL, 0, store, &req,
                                            RL2_PHASE_ALL, &now, &v, &err),
                         RL2_OK);
    }
    rl2_metrics_global(m, &g);
    for (unsigned i = 0; i <= RL2_METRICS_DECIDE_BUCKETS; i++) {
        timed += g.decide_bucket[i];
    }
    assert_int_equal(timed, 3);
    /* Metrics off (no binding): decided, nothing timed. */
    for (unsigned i = 0; i < 64; i++) {
        rl2_verdict_init(&v);
        assert_int_equal(rl2_metrics_decide(NULL, policy, NULL, 0, store, &req,
                                            RL2_PHASE_ALL, &now, &v, &err),
                         RL2_OK);
    }
    rl2_metrics_global(m, &g);
    timed = 0;
    for (unsigned i = 0; i <= RL2_METRICS_DECIDE_BUCKETS; i++) {
        timed += g.decide_bucket[i];
    }
    assert_int_equal(timed, 3);
    rl2_store_destroy(store);
    rl2_zone_close(zone);
    rl2_zone_unlink(zname, NULL);
}

static void
test_health(void **state)
{
    rl2_metrics_env_t env = { 0 };
    char              buf[512];

    (void)state;
    env.circuit = -1;
    env.generation = 2;
    env.uptime_s = 7;
    env.have_zone = 1;
    env.zone.entries = 100;
    env.zone.used = 25;
    env.zone_usage.live = 20;
    env.zone_usage.bytes_used = 4096 + 20 * 48;
    env.zone_usage.bytes_reserved = 4096 + 100 * 48;
    env.zone_usage.reclaimed = 7;
    assert_int_equal(rl2_metrics_health(&env, buf, sizeof(buf)), 200);
    assert_string_equal(buf, "{\"status\":\"ok\",\"generation\":2,\"store\":"
                             "\"local\",\"zone\":{\"entries\":100,\"used\":25,"
                             "\"evictions\":0,\"occupancy\":0.2000,"
                             "\"live\":20,\"bytes_used\":5056,"
                             "\"bytes_reserved\":8896,\"reclaimed\":7},"
                             "\"uptime\":7}\n");
    env.redis = 1;
    env.circuit = 1;
    env.failover_mode = 2;
    env.refusing = 1;
    assert_int_equal(rl2_metrics_health(&env, buf, sizeof(buf)), 503);
    assert_non_null(strstr(buf, "{\"status\":\"unavailable\",\"generation\":"
                                "2,\"store\":\"redis\",\"circuit\":\"open\","
                                "\"failover\":\"closed\","));
}

/* ---- the runtime overrides shown ---- */

static char ovr_zone[64], ovr_shm[80];

static rl2_overrides_t *
ovr_table(void)
{
    rl2_overrides_t *t = NULL;
    rl2_err_t        err;

    snprintf(ovr_zone, sizeof(ovr_zone), "/rl2test-%ld-mxovr", (long)getpid());
    snprintf(ovr_shm, sizeof(ovr_shm), "%s.overrides", ovr_zone);
    rl2_shm_obj_unlink(ovr_shm, NULL);
    assert_int_equal(rl2_overrides_open(ovr_zone, NULL, 0600, &t, &err),
                     RL2_OK);
    return t;
}

static void
ovr_close(rl2_overrides_t *t)
{
    rl2_overrides_close(t);
    rl2_shm_obj_unlink(ovr_shm, NULL);
}

/* An operator's ban of a user whose name is markup, with a reason that
 * is too, and an automatic ban as decide/runtime.c makes one. */
static void
ovr_fill(rl2_overrides_t *t, const rl2_clock_t *at)
{
    rl2_override_t o, before;
    rl2_err_t      err;
    int            made = 0;

    memset(&o, 0, sizeof(o));
    assert_int_equal(rl2_override_target(policy, RL2_OVR_BAN,
                                         "user:<script>alert(1)</script>", &o,
                                         &err),
                     RL2_OK);
    o.created_us = at->wall_us;
    snprintf(o.reason, sizeof(o.reason), "spam \"<b>\" & 'more'");
    snprintf(o.author, sizeof(o.author), "<i>root</i>");
    assert_int_equal(rl2_overrides_set(t, &o, at, &before, &err), RL2_OK);
    memset(&o, 0, sizeof(o));
    assert_int_equal(
        rl2_override_target(policy, RL2_OVR_BAN, "203.0.113.9", &o, &err),
        RL2_OK);
    o.created_us = at->wall_us;
    o.expires_us = at->wall_us + 600 * RL2_US_PER_S;
    snprintf(o.author, sizeof(o.author), "%s", RL2_OVR_AUTO_AUTHOR);
    snprintf(o.reason, sizeof(o.reason),
             "more than 5 refusals in 60s (rule login, limit login)");
    assert_int_equal(rl2_overrides_ban_auto(t, &o, at, &made, &err), RL2_OK);
    assert_int_equal(made, 1);
}

static void
test_overrides_shown(void **state)
{
    rl2_overrides_t  *t = ovr_table();
    rl2_metrics_env_t env = { 0 };
    rl2_clock_t       real;
    char              buf[1024];

    (void)state;
    env.circuit = -1;
    prom_len = 0;
    rl2_metrics_prom(m, &env, collect, NULL);
    assert_non_null(strstr(prom, "# TYPE ratelimit2_bans_active gauge\n"
                                 "ratelimit2_bans_active{origin=\"operator\"} "
                                 "0\nratelimit2_bans_active{origin=\"auto\"} "
                                 "0\n"));
    prom_len = 0;
    rl2_metrics_html(m, &env, T0_WALL_US / RL2_US_PER_S, collect, NULL);
    assert_non_null(strstr(prom, "<h2>Runtime overrides</h2>\n<p>off</p>"));

    rl2_clock_now(&real);
    ovr_fill(t, &real);
    env.overrides = t;
    prom_len = 0;
    rl2_metrics_prom(m, &env, collect, NULL);
    assert_non_null(strstr(prom, "\nratelimit2_bans_active{origin=\"operator\"}"
                                 " 1\nratelimit2_bans_active{origin=\"auto\"} "
                                 "1\n"));
    assert_int_equal(rl2_metrics_health(&env, buf, sizeof(buf)), 200);
    assert_string_equal(buf, "{\"status\":\"ok\",\"generation\":0,\"store\":"
                             "\"local\",\"overrides\":{\"source\":\"local\","
                             "\"entries\":2},\"uptime\":0}\n");

    prom_len = 0;
    rl2_metrics_html(m, &env, real.wall_us / RL2_US_PER_S, collect, NULL);
    /* Nothing a client or an operator wrote comes out as markup. */
    assert_null(strstr(prom, "<script"));
    assert_null(strstr(prom, "<b>"));
    assert_null(strstr(prom, "<i>"));
    assert_non_null(strstr(prom, "<p>This host's table (no Redis side).</p>"));
    assert_non_null(strstr(prom, "<h3>Set by operators (1)</h3>"));
    assert_non_null(strstr(prom,
                           "<tr><td>ban</td><td>user:&lt;script&gt;alert(1)"
                           "&lt;/script&gt;</td><td>banned</td>"
                           "<td>no end</td><td>spam &quot;&lt;b&gt;&quot; "
                           "&amp; &#39;more&#39;</td>"
                           "<td>&lt;i&gt;root&lt;/i&gt;</td></tr>"));
    assert_non_null(strstr(prom, "<h3>Automatic bans (1)</h3>"));
    assert_non_null(strstr(prom, "<tr><td>203.0.113.9</td><td>login</td>"
                                 "<td>600 s</td><td>0 s ago</td></tr>"));
    ovr_close(t);
}

/* A table whose Redis side cannot be reached: the health check's sync
 * fails, and the answer says the mirror is stale (200, "degraded"). */
static void
test_overrides_mirror_unreachable(void **state)
{
    rl2_overrides_t  *t = ovr_table();
    rl2_metrics_env_t env = { 0 };
    rl2_redis_conf_t  rc;
    rl2_err_t         err;
    char              buf[1024];

    (void)state;
    rl2_redis_conf_init(&rc);
    snprintf(rc.host, sizeof(rc.host), "127.0.0.1");
    rc.port = 1; /* nothing listens */
    rc.connect_timeout_ms = 200;
    assert_int_equal(rl2_overrides_redis_attach(t, &rc, &err), RL2_OK);
    env.circuit = -1;
    env.overrides = t;
    assert_int_equal(rl2_metrics_health(&env, buf, sizeof(buf)), 200);
    assert_string_equal(buf, "{\"status\":\"degraded\",\"generation\":0,"
                             "\"store\":\"local\",\"overrides\":{\"source\":"
                             "\"redis\",\"in_sync\":false,\"last_sync\":null,"
                             "\"entries\":0},\"uptime\":0}\n");
    /* The store refusing every request says more: 503. */
    env.refusing = 1;
    assert_int_equal(rl2_metrics_health(&env, buf, sizeof(buf)), 503);
    assert_non_null(strstr(buf, "{\"status\":\"unavailable\","));
    prom_len = 0;
    rl2_metrics_html(m, &env, T0_WALL_US / RL2_US_PER_S, collect, NULL);
    assert_non_null(strstr(prom, "<p class=\"bad\">Mirror of the fleet's table "
                                 "in Redis: never synced: redis 127.0.0.1:1"));
    ovr_close(t);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_outcomes),        T(test_names_survive_rebind),
        T(test_too_many_names),  T(test_minute_ring),
        T(test_top_clients),     T(test_limited_lines),
        T(test_zone_alerts),     T(test_anomaly),
        T(test_zone_full_parse), T(test_processes),
        T(test_prometheus),      T(test_decide_time_buckets),
        T(test_decide_sampled),  T(test_health),
        T(test_overrides_shown), T(test_overrides_mirror_unreachable),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
