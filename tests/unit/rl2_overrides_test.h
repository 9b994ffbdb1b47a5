/*
 * rl2_overrides_test.h -- what the programs testing the override table's
 * Redis side share: tables standing for hosts (a zone name and a state
 * file each, closed and removed by the teardown), bans, what a table
 * holds, and a syslog socket that catches the alerts.
 *
 * Included once per test program, after rl2_redis_test.h (static
 * functions and the fixture's statics).
 */
#ifndef RL2_OVERRIDES_TEST_H
#define RL2_OVERRIDES_TEST_H

#include <dirent.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/un.h>

#include "ratelimit2/overrides.h"

#include "control/control_internal.h"

#define TABLES_MAX 8
#define HASH       "{rl2:overrides}"
#define VERSION    "{rl2:overrides}:version"
#define EPOCH      "{rl2:overrides}:epoch"

/* ---- tables, one per "host" -------------------------------------------- */

static char             dir[64]; /* state files, the alert socket */
static rl2_overrides_t *tabs[TABLES_MAX];
static char             zones[TABLES_MAX][64];
static int              n_tabs;
static rl2_redis_conf_t rconf; /* the Redis of the running group */

/* The zone name of host `name` in this run. */
TEST_FN void
zone_of(const char *name, char *out, size_t size)
{
    snprintf(out, size, "/rl2t-%d-ovr-%s", (int)getpid(), name);
}

TEST_FN void
state_of(const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s.state", dir, name);
}

/* Host `name`'s table (kept for the teardown), without a Redis side. */
TEST_FN rl2_overrides_t *
table_local(const char *name)
{
    char             state[128];
    rl2_overrides_t *t;
    rl2_err_t        err;

    assert_true(n_tabs < TABLES_MAX);
    zone_of(name, zones[n_tabs], sizeof(zones[0]));
    state_of(name, state, sizeof(state));
    if (rl2_overrides_open(zones[n_tabs], state, 0600, &t, &err) != RL2_OK) {
        fail_msg("open %s: %s", name, err.msg);
    }
    tabs[n_tabs++] = t;
    return t;
}

/* ... with a Redis side of its own on conf's server. */
TEST_FN rl2_overrides_t *
table_on(const char *name, const rl2_redis_conf_t *conf)
{
    rl2_overrides_t *t = table_local(name);
    rl2_err_t        err;

    if (rl2_overrides_redis_attach(t, conf, &err) != RL2_OK) {
        fail_msg("attach %s: %s", name, err.msg);
    }
    return t;
}

TEST_FN rl2_overrides_t *
table(const char *name)
{
    return table_on(name, &rconf);
}

TEST_FN void
tables_close(void)
{
    char name[96];

    for (int i = 0; i < n_tabs; i++) {
        rl2_overrides_close(tabs[i]);
        snprintf(name, sizeof(name), "%s.overrides", zones[i]);
        shm_unlink(name);
    }
    n_tabs = 0;
}

TEST_FN rl2_clock_t
now_plus(int64_t us)
{
    rl2_clock_t now;

    rl2_clock_now(&now);
    now.mono_us += us;
    now.wall_us += us;
    return now;
}

/* A ban of target until expires_us (0: none). */
TEST_FN rl2_override_t
ban(const char *target, int64_t expires_us, const char *reason)
{
    rl2_override_t o;
    rl2_err_t      err;

    memset(&o, 0, sizeof(o));
    if (rl2_override_target(NULL, RL2_OVR_BAN, target, &o, &err) != RL2_OK) {
        fail_msg("target %s: %s", target, err.msg);
    }
    o.kind = RL2_OVR_BAN;
    o.expires_us = expires_us;
    o.created_us = wall_us();
    snprintf(o.author, sizeof(o.author), "test");
    snprintf(o.reason, sizeof(o.reason), "%s", reason);
    return o;
}

TEST_FN void
must_set(rl2_overrides_t *t, const rl2_override_t *o)
{
    rl2_clock_t now = now_plus(0);
    rl2_err_t   err;

    if (rl2_overrides_set(t, o, &now, NULL, &err) != RL2_OK) {
        fail_msg("set %s: %s", o->target, err.msg);
    }
}

TEST_FN void
must_sync(rl2_overrides_t *t)
{
    rl2_clock_t now = now_plus(0);
    rl2_err_t   err;

    if (rl2_overrides_redis_sync(t, &now, &err) != RL2_OK) {
        fail_msg("sync: %s", err.msg);
    }
}

/* The active entry of kind for target in t at now, or NULL. */
TEST_FN const rl2_override_t *
entry_at(rl2_overrides_t *t, rl2_ovr_kind_t kind, const char *target,
         const rl2_clock_t *now)
{
    static rl2_override_t out[64];
    size_t                n = rl2_overrides_list(t, kind, now, out, 64);

    for (size_t i = 0; i < n && i < 64; i++) {
        if (strcmp(out[i].target, target) == 0) {
            return &out[i];
        }
    }
    return NULL;
}

TEST_FN const rl2_override_t *
banned(rl2_overrides_t *t, const char *target)
{
    rl2_clock_t now = now_plus(0);

    return entry_at(t, RL2_OVR_BAN, target, &now);
}

TEST_FN size_t
count(rl2_overrides_t *t)
{
    rl2_clock_t now = now_plus(0);

    return rl2_overrides_list(t, 0, &now, NULL, 0);
}

/* The whole state file of host `name`. */
TEST_FN char *
state_text(const char *name)
{
    static char text[8192];
    char        path[128];
    FILE       *f;
    size_t      n;

    state_of(name, path, sizeof(path));
    assert_non_null(f = fopen(path, "r"));
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

/* ---- the alert socket ------------------------------------------------- */

static int          sock = -1;
static char         sock_path[96];
static rl2_alert_t *alert;

TEST_FN void
alert_up(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    rl2_alert_conf_t   ac;
    rl2_err_t          err;

    snprintf(sock_path, sizeof(sock_path), "%s/log", dir);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(sock >= 0);
    assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    rl2_alert_conf_default(&ac);
    ac.socket_path = sock_path;
    ac.ident = "rl2test";
    ac.interval_ms = 0; /* every line */
    ac.shm_name = NULL;
    if (rl2_alert_open(&ac, &alert, &err) != RL2_OK) {
        fail_msg("alert: %s", err.msg);
    }
}

TEST_FN void
alert_down(void)
{
    rl2_alert_close(alert);
    alert = NULL;
    if (sock >= 0) {
        close(sock);
        sock = -1;
    }
    unlink(sock_path);
}

/* The next syslog line (waits up to timeout_ms), or "" for none. */
TEST_FN const char *
alert_line(int timeout_ms)
{
    static char   buf[RL2_ALERT_LINE_MAX + 8];
    struct pollfd p = { .fd = sock, .events = POLLIN };
    ssize_t       n;

    buf[0] = '\0';
    if (poll(&p, 1, timeout_ms) == 1
        && (n = recv(sock, buf, sizeof(buf) - 1, 0)) >= 0) {
        buf[n] = '\0';
    }
    return buf;
}

/* Host `name`'s table with a Redis side that sends its alerts to the
 * test's socket. */
TEST_FN rl2_overrides_t *
table_alerting(const char *name)
{
    rl2_overrides_t     *t = table_local(name);
    rl2_ovr_redis_conf_t rc = { .conf = &rconf, .alert = alert };
    rl2_err_t            err;

    if (rl2_ovr_redis_attach(t, &rc, &err) != RL2_OK) {
        fail_msg("attach %s: %s", name, err.msg);
    }
    return t;
}

/* ---- fixtures --------------------------------------------------------- */

TEST_FN void
dir_make(void)
{
    snprintf(dir, sizeof(dir), "/tmp/rl2-ovr-XXXXXX");
    assert_non_null(mkdtemp(dir));
}

TEST_FN void
dir_remove(void)
{
    DIR           *d = opendir(dir);
    struct dirent *e;
    char           path[sizeof(dir) + 256];

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(dir);
}

TEST_FN int
tables_teardown(void **state)
{
    tables_close();
    alert_down();
    dir_remove();
    watchdog_teardown(state);
    return 0;
}

#endif /* RL2_OVERRIDES_TEST_H */
