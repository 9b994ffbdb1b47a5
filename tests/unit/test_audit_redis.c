/*
 * test_audit_redis.c -- the audit trail's Redis stream (audit.h), on a
 * real redis-server: the entries ratelimit2ctl records (rl2_audit_record
 * with conf.redis) and those of automatic bans (a table's trail, through
 * its Redis side), read back with rl2_audit_read_redis.
 *
 * N changes are N entries, in order, however many (the reader's batches
 * of 1,000); --since is a bound on the ids; a stream Redis does not take
 * leaves the entry in the file and says so; an entry that does not read
 * is an error naming its id; one automatic ban is one entry, and so is
 * each escalation.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rl2_redis_test.h"
#include "rl2_overrides_test.h"

#include "ratelimit2/admin.h"
#include "ratelimit2/audit.h"
#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/store_local.h"
#include "control/control_internal.h"

#define STREAM "{rl2:overrides}:audit"

/* ---- fixtures: one server, emptied before each test ------------------ */

static int
group_setup(void **state)
{
    (void)state;
    srv_up();
    rl2_redis_conf_init(&rconf);
    rconf.port = srv.port;
    rconf.connect_timeout_ms = 1000;
    rconf.command_timeout_ms = 1000;
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    srv_down();
    return 0;
}

static int
setup(void **state)
{
    flushed_setup(state);
    dir_make();
    alert_up();
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* An audit on the test's Redis, with the file dir/NAME (NULL: none) and
 * syslog to the test's socket. */
static rl2_audit_t *
audit_on(const char *name)
{
    rl2_audit_conf_t conf;
    rl2_audit_t     *a;
    rl2_err_t        err;
    char             path[128];

    rl2_audit_conf_default(&conf);
    snprintf(path, sizeof(path), "%s/%s", dir, name ? name : "");
    conf.path = name != NULL ? path : NULL;
    conf.syslog_socket = sock_path;
    conf.ident = "rl2test";
    conf.redis = &rconf;
    if (rl2_audit_open(&conf, &a, &err) != RL2_OK) {
        fail_msg("audit open: %s", err.msg);
    }
    return a;
}

/* The entry of a ban of 192.0.2.N by "test", as ratelimit2ctl writes. */
static rl2_audit_entry_t
ban_entry(int n)
{
    rl2_audit_entry_t e;
    char              target[32];

    memset(&e, 0, sizeof(e));
    snprintf(target, sizeof(target), "192.0.2.%d", n);
    e.time_us = wall_us();
    snprintf(e.author, sizeof(e.author), "test");
    e.origin = RL2_AUDIT_CTL;
    snprintf(e.verb, sizeof(e.verb), "ban");
    e.kind = RL2_OVR_BAN;
    snprintf(e.target, sizeof(e.target), "%s", target);
    e.after = ban(target, 0, "audit test");
    snprintf(e.reason, sizeof(e.reason), "change %d", n);
    return e;
}

static void
must_record(rl2_audit_t *a, int n)
{
    rl2_audit_entry_t e = ban_entry(n);
    rl2_err_t         err;

    if (rl2_audit_record(a, &e, &err) != RL2_OK) {
        fail_msg("record %d: %s", n, err.msg);
    }
}

/* What the reader handed over. */
#define READ_MAX 3000

typedef struct {
    rl2_audit_entry_t e[16]; /* the first ones, kept whole */
    char              target[READ_MAX][RL2_OVR_TARGET_MAX];
    size_t            n;
} read_t;

static int
keep(const rl2_audit_entry_t *e, void *ctx)
{
    read_t *r = ctx;

    assert_true(r->n < READ_MAX);
    if (r->n < 16) {
        r->e[r->n] = *e;
    }
    snprintf(r->target[r->n], sizeof(r->target[0]), "%s", e->target);
    r->n++;
    return 0;
}

static read_t *
read_stream(int64_t since_ms)
{
    static read_t r;
    size_t        n;
    rl2_err_t     err;

    memset(&r, 0, sizeof(r));
    if (rl2_audit_read_redis(&rconf, since_ms, keep, &r, &n, &err) != RL2_OK) {
        fail_msg("read: %s", err.msg);
    }
    assert_int_equal(n, r.n);
    return &r;
}

static long long
stream_len(void)
{
    return admin_int(admin, "XLEN %s", STREAM);
}

/* Redis's clock, ms. */
static int64_t
redis_ms(void)
{
    redisReply *r = admin_cmd(admin, "TIME");
    int64_t     ms =
        atoll(r->element[0]->str) * 1000 + atoll(r->element[1]->str) / 1000;

    freeReplyObject(r);
    return ms;
}

/* ---- what ratelimit2ctl records ---------------------------------------- */

/* N changes, N entries in the stream and N lines in the file, read back
 * in the order they were made; the syslog line of each. */
static void
test_n_changes_n_entries_in_order(void **state)
{
    rl2_audit_t *a = audit_on("ctl.audit");
    read_t      *r;
    char         path[128];
    size_t       n;
    rl2_err_t    err;

    (void)state;
    for (int i = 1; i <= 25; i++) {
        must_record(a, i);
        assert_non_null(strstr(alert_line(1000), "event=override"));
    }
    rl2_audit_close(a);
    assert_int_equal(stream_len(), 25);
    r = read_stream(0);
    assert_int_equal(r->n, 25);
    for (int i = 1; i <= 25; i++) {
        char want[32];

        snprintf(want, sizeof(want), "192.0.2.%d", i);
        assert_string_equal(r->target[i - 1], want);
    }
    assert_int_equal(r->e[0].origin, RL2_AUDIT_CTL);
    assert_string_equal(r->e[0].author, "test");
    assert_string_equal(r->e[0].reason, "change 1");
    assert_int_equal(r->e[0].after.kind, RL2_OVR_BAN);
    assert_int_equal(r->e[0].before.kind, 0);
    /* The host's copy has the same. */
    snprintf(path, sizeof(path), "%s/ctl.audit", dir);
    assert_int_equal(rl2_audit_read(path, NULL, NULL, &n, &err), RL2_OK);
    assert_int_equal(n, 25);
}

/* More than a batch: 2,500 entries, every one, in order. */
static void
test_many_entries_in_batches(void **state)
{
    rl2_audit_t *a = audit_on(NULL);
    read_t      *r;

    (void)state;
    alert_down(); /* 2,500 syslog lines nobody reads */
    for (int i = 0; i < 2500; i++) {
        must_record(a, i % 250);
    }
    rl2_audit_close(a);
    assert_int_equal(stream_len(), 2500);
    r = read_stream(0);
    assert_int_equal(r->n, 2500);
    for (int i = 0; i < 2500; i++) {
        char want[32];

        snprintf(want, sizeof(want), "192.0.2.%d", i % 250);
        assert_string_equal(r->target[i], want);
    }
}

/* --since: the entries from an id on, on Redis's clock. */
static void
test_since_is_a_stream_id_bound(void **state)
{
    rl2_audit_t *a = audit_on(NULL);
    read_t      *r;
    int64_t      since;

    (void)state;
    must_record(a, 1);
    must_record(a, 2);
    /* The next entries in a later millisecond than the first ones. */
    since = redis_ms() + 2;
    while (redis_ms() < since) {
        usleep(500);
    }
    must_record(a, 3);
    must_record(a, 4);
    must_record(a, 5);
    rl2_audit_close(a);
    r = read_stream(since);
    assert_int_equal(r->n, 3);
    assert_string_equal(r->target[0], "192.0.2.3");
    assert_string_equal(r->target[2], "192.0.2.5");
    assert_int_equal(read_stream(0)->n, 5);
    assert_int_equal(read_stream(redis_ms() + 1000)->n, 0);
}

/* A stream Redis does not take (a key of another type): the change's
 * entry is in the file, the error says so, and syslog's line says what
 * the stream said. */
static void
test_stream_refused_file_has_it(void **state)
{
    rl2_audit_t      *a = audit_on("ctl.audit");
    rl2_audit_entry_t e = ban_entry(7);
    rl2_err_t         err;
    char              path[128];
    size_t            n;

    (void)state;
    freeReplyObject(admin_cmd(admin, "SET %s not-a-stream", STREAM));
    assert_int_equal(rl2_audit_record(a, &e, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "audit stream"));
    assert_non_null(strstr(err.msg, "WRONGTYPE"));
    assert_non_null(strstr(err.msg, "the entry is in the audit file"));
    assert_non_null(strstr(alert_line(1000), "audit_error="));
    rl2_audit_close(a);
    snprintf(path, sizeof(path), "%s/ctl.audit", dir);
    assert_int_equal(rl2_audit_read(path, NULL, NULL, &n, &err), RL2_OK);
    assert_int_equal(n, 1);
}

/* An entry that does not read stops the walk, naming its id; the ones
 * before it were handed over. */
static void
test_damaged_entry_names_its_id(void **state)
{
    rl2_audit_t *a = audit_on(NULL);
    read_t       r;
    rl2_err_t    err;
    size_t       n;

    (void)state;
    must_record(a, 1);
    rl2_audit_close(a);
    freeReplyObject(
        admin_cmd(admin, "XADD %s 9999999999999-1 entry {\"x\":1}", STREAM));
    memset(&r, 0, sizeof(r));
    assert_int_equal(rl2_audit_read_redis(&rconf, 0, keep, &r, &n, &err),
                     RL2_ERR_INVALID);
    assert_non_null(strstr(err.msg, STREAM " 9999999999999-1: "));
    assert_int_equal(n, 1);
    assert_int_equal(r.n, 1);
}

/* The stream follows the redis option overrides_key: two fleets on one
 * Redis keep two trails.  No stream has no entries. */
static void
test_stream_named_by_overrides_key(void **state)
{
    rl2_redis_conf_t saved = rconf;
    rl2_audit_t     *a;

    (void)state;
    assert_int_equal(read_stream(0)->n, 0);
    snprintf(rconf.overrides_key, sizeof(rconf.overrides_key), "app2");
    a = audit_on(NULL);
    must_record(a, 1);
    rl2_audit_close(a);
    assert_int_equal(admin_int(admin, "XLEN %s", "{app2}:audit"), 1);
    assert_int_equal(read_stream(0)->n, 1);
    rconf = saved;
    assert_int_equal(stream_len(), 0);
    assert_int_equal(read_stream(0)->n, 0);
}

/* ---- automatic bans ----------------------------------------------------- */

#define ABUSE_POLICY \
    "abuse = { denials = \"1/1min\"; ban = \"10s\"; escalate = 2; " \
    "max_ban = \"1h\"; };\n" \
    "rules = ( { name = \"login\"; paths = [ \"/login\" ]; " \
    "limits = ( { rate = \"1/1h\"; key = \"ip\"; } ); } );\n"

/* One request to /login from 192.0.2.77 at now. */
static void
login(rl2_policy_t *p, rl2_store_t *local, const rl2_clock_t *now,
      rl2_verdict_t *v)
{
    rl2_request_t req = { .method = "POST",
                          .path = "/login",
                          .peer_ip = "192.0.2.77" };
    rl2_err_t     err;

    rl2_verdict_init(v);
    assert_int_equal(
        rl2_decide(p, NULL, 0, local, &req, RL2_PHASE_ALL, now, v, &err),
        RL2_OK);
}

/* A host whose table has a Redis side and the trail of its automatic
 * bans: the first ban is one entry in the stream (origin auto, the ban's
 * author and reason, the rule named) and one in the host's file; the
 * refusals it makes write none; the ban ends, and the next offence's
 * ban, twice as long, is one more. */
static void
test_automatic_ban_one_entry_each(void **state)
{
    rl2_overrides_t *t = table("auto");
    rl2_policy_t    *p;
    rl2_zone_t      *zone;
    rl2_store_t     *local;
    rl2_audit_conf_t ac;
    rl2_verdict_t    v;
    rl2_clock_t      now = now_plus(0);
    rl2_err_t        err;
    read_t          *r;
    char             zname[64], path[128];
    const char      *line;
    size_t           n;

    (void)state;
    /* The limit (1/1h) and the bans' count (over max_ban, 1h) are fixed
     * windows, aligned hours of the monotonic clock: the test's 70 s
     * must not straddle one, or the second offence finds the limit full
     * again and is not refused.  The test's clock starts 1 s into the
     * next aligned hour. */
    now.mono_us = (now.mono_us / HOUR + 1) * HOUR + SEC;
    zone_of("autozone", zname, sizeof(zname));
    assert_int_equal(
        rl2_config_load_string(ABUSE_POLICY, "t.conf", NULL, &p, &err), RL2_OK);
    assert_int_equal(
        rl2_zone_open(zname, 1000, p->max_state_size, 0600, &zone, &err),
        RL2_OK);
    assert_int_equal(rl2_store_local_create(zone, &local, &err), RL2_OK);
    snprintf(path, sizeof(path), "%s/auto.audit", dir);
    rl2_audit_conf_default(&ac);
    ac.path = path;
    ac.syslog_socket = sock_path;
    ac.ident = "rl2test";
    assert_int_equal(rl2_overrides_audit_attach(t, &ac, &err), RL2_OK);
    assert_int_equal(rl2_overrides_audit_attach(t, &ac, &err), RL2_ERR_INVALID);
    p->overrides = t;

    /* One admitted, a refusal, and the second refusal bans. */
    for (int i = 0; i < 3; i++) {
        login(p, local, &now, &v);
        now.mono_us += 1000;
        now.wall_us += 1000;
    }
    assert_int_equal(v.banned, 1);
    assert_int_equal(stream_len(), 1);
    line = alert_line(1000);
    assert_non_null(strstr(line, "origin=auto"));
    assert_null(strstr(line, "audit_error"));
    /* Refused while banned: no change, no entry. */
    for (int i = 0; i < 3; i++) {
        login(p, local, &now, &v);
        assert_int_equal(v.refusal, RL2_REFUSAL_BAN);
    }
    assert_int_equal(stream_len(), 1);

    /* The ban has ended; in a new minute two refusals ban again. */
    now.mono_us += 70 * SEC;
    now.wall_us += 70 * SEC;
    for (int i = 0; i < 2; i++) {
        login(p, local, &now, &v);
        now.mono_us += 1000;
        now.wall_us += 1000;
    }
    assert_int_equal(v.banned, 1);
    assert_int_equal(v.banned_for_s, 20);
    assert_int_equal(stream_len(), 2);

    r = read_stream(0);
    assert_int_equal(r->n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(r->e[i].origin, RL2_AUDIT_AUTO);
        assert_string_equal(r->e[i].author, "abuse");
        assert_string_equal(r->e[i].verb, "ban");
        assert_int_equal(r->e[i].kind, RL2_OVR_BAN);
        assert_string_equal(r->e[i].target, "192.0.2.77");
        assert_non_null(strstr(r->e[i].reason, "rule login"));
        assert_string_equal(r->e[i].reason, r->e[i].after.reason);
        assert_int_equal(r->e[i].after.kind, RL2_OVR_BAN);
        assert_int_equal(r->e[i].before.kind, 0); /* the first had ended */
    }
    /* The JSON side has no creation time: the change's time is it. */
    assert_int_equal(r->e[0].after.expires_us - r->e[0].time_us, 10 * SEC);
    assert_int_equal(r->e[1].after.expires_us - r->e[1].time_us, 20 * SEC);
    /* The host's copy: the same two. */
    assert_int_equal(rl2_audit_read(path, NULL, NULL, &n, &err), RL2_OK);
    assert_int_equal(n, 2);

    p->overrides = NULL;
    rl2_store_destroy(local);
    rl2_zone_close(zone);
    rl2_zone_unlink(zname, &err);
    rl2_policy_free(p);
}

/* A trail whose file cannot be made (its directory does not exist): the
 * ban stands, the entry is in the stream, and its syslog line says what
 * the file said. */
static void
test_automatic_ban_without_its_file(void **state)
{
    rl2_overrides_t *t = table("nofile");
    rl2_override_t   o = ban("192.0.2.88", wall_us() + MINUTE, "abuse");
    rl2_audit_conf_t ac;
    rl2_clock_t      now = now_plus(0);
    rl2_err_t        err;
    const char      *line;
    char             path[128];
    int              made;

    (void)state;
    snprintf(path, sizeof(path), "%s/missing/auto.audit", dir);
    rl2_audit_conf_default(&ac);
    ac.path = path;
    ac.syslog_socket = sock_path;
    assert_int_equal(rl2_overrides_audit_attach(t, &ac, &err), RL2_OK);
    assert_int_equal(rl2_overrides_ban_auto(t, &o, &now, &made, &err), RL2_OK);
    assert_int_equal(made, 1);
    assert_int_equal(stream_len(), 1);
    line = alert_line(1000);
    assert_non_null(strstr(line, "origin=auto"));
    assert_non_null(strstr(line, "audit_error="));
    assert_non_null(strstr(line, "No such file or directory"));
    /* Already banned: nothing made, nothing recorded. */
    assert_int_equal(rl2_overrides_ban_auto(t, &o, &now, &made, &err), RL2_OK);
    assert_int_equal(made, 0);
    assert_int_equal(stream_len(), 1);
}

/* ---- what the HTTP admin interface records ---------------------------- */

/* The admin interfaces (Apache's ratelimit2-admin, ratelimit2-fcgi's
 * admin path) open the audit with the policy's file and syslog only, as
 * their request's own: on a table with a Redis side, a change made
 * through rl2_admin_http is still one entry of the fleet's stream (origin
 * admin, the request's author), beside the line in the host's file. */
static void
test_admin_change_in_the_stream(void **state)
{
    rl2_overrides_t  *t = table("admin");
    rl2_audit_conf_t  ac;
    rl2_admin_t       a;
    rl2_clock_t       now = now_plus(0);
    rl2_err_t         err;
    read_t           *r;
    char              path[128], out[4096];
    size_t            n;
    static const char body[] =
        "{\"verb\":\"ban\",\"target\":\"192.0.2.66\",\"reason\":\"web\"}";

    (void)state;
    snprintf(path, sizeof(path), "%s/admin.audit", dir);
    rl2_audit_conf_default(&ac);
    ac.path = path;
    ac.syslog_socket = sock_path;
    ac.ident = "rl2test";
    memset(&a, 0, sizeof(a));
    a.table = t;
    a.author = "token:ops";
    a.origin = RL2_AUDIT_ADMIN;
    assert_int_equal(rl2_audit_open(&ac, &a.audit, &err), RL2_OK);
    assert_int_equal(rl2_admin_http(&a, "POST", "application/json", body,
                                    sizeof(body) - 1, &now, out, sizeof(out)),
                     200);
    rl2_audit_close(a.audit);
    assert_null(strstr(alert_line(1000), "audit_error"));
    assert_int_equal(stream_len(), 1);
    r = read_stream(0);
    assert_int_equal(r->n, 1);
    assert_int_equal(r->e[0].origin, RL2_AUDIT_ADMIN);
    assert_string_equal(r->e[0].author, "token:ops");
    assert_string_equal(r->e[0].target, "192.0.2.66");
    assert_int_equal(rl2_audit_read(path, NULL, NULL, &n, &err), RL2_OK);
    assert_int_equal(n, 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, tables_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_n_changes_n_entries_in_order),
        T(test_many_entries_in_batches),
        T(test_since_is_a_stream_id_bound),
        T(test_stream_refused_file_has_it),
        T(test_damaged_entry_names_its_id),
        T(test_stream_named_by_overrides_key),
        T(test_automatic_ban_one_entry_each),
        T(test_automatic_ban_without_its_file),
        T(test_admin_change_in_the_stream),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
