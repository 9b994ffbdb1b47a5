/*
 * test_abuse.c -- automatic bans (policy `abuse`, decide/runtime.c): a
 * client refused more than `denials` times in the window is banned, as
 * the runtime override table bans; a second offence within max_ban is
 * banned `escalate` times as long; the ban names what the refusing limit
 * counted (an address, a user); refusals in dry run, by a ban or by a
 * limit shared with other clients do not count; one crossing is one
 * offence; a flood of offenders neither fills the table nor makes
 * requests wait on its writers; and the loader checks the group with
 * file:line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratelimit2/audit.h"
#include "ratelimit2/overrides.h"
#include "base/shm_obj_internal.h"

#include "rl2_decide_test.h"
#include "control/control_internal.h"

#define POLICY \
    "abuse = { denials = \"3/1min\"; ban = \"10s\"; escalate = 2; " \
    "max_ban = \"1h\"; };\n" \
    "rules = ( { name = \"login\"; paths = [ \"/login\" ]; " \
    "limits = ( { rate = \"1/1h\"; key = \"ip\"; } ); }, " \
    "{ name = \"acct\"; paths = [ \"/acct\" ]; " \
    "limits = ( { rate = \"1/1h\"; key = \"user\"; } ); }, " \
    "{ name = \"try\"; paths = [ \"/try\" ]; mode = \"dry_run\"; " \
    "limits = ( { rate = \"1/1h\"; key = \"ip\"; } ); }, " \
    "{ name = \"search\"; paths = [ \"/search\" ]; " \
    "limits = ( { rate = \"1/1h\"; key = \"global\"; } ); }, " \
    "{ name = \"feed\"; paths = [ \"/feed\" ]; " \
    "limits = ( { rate = \"1/1h\"; key = \"route\"; } ); } );\n"

typedef struct {
    fixture_t        base;
    rl2_overrides_t *table;
    char             state_file[128];
} abuse_fixture_t;

static int
setup(void **state)
{
    abuse_fixture_t *a;
    rl2_err_t        err;
    fixture_t       *f;

    setup_sized(state, POLICY, 1024, "abuse");
    f = *state;
    a = realloc(f, sizeof(*a));
    assert_non_null(a);
    snprintf(a->state_file, sizeof(a->state_file), "/tmp/rl2-abuse-%d.state",
             (int)getpid());
    unlink(a->state_file);
    assert_int_equal(
        rl2_overrides_open(a->base.zname, a->state_file, 0600, &a->table, &err),
        RL2_OK);
    a->base.policy->overrides = a->table;
    *state = a;
    return 0;
}

static int
teardown_abuse(void **state)
{
    abuse_fixture_t *a = *state;
    char             name[128];
    rl2_err_t        err;

    rl2_overrides_close(a->table);
    snprintf(name, sizeof(name), "%s.overrides", a->base.zname);
    rl2_shm_obj_unlink(name, &err);
    unlink(a->state_file);
    return teardown(state);
}

/* The trail of the table's automatic bans (no Redis: the audit file). */
static void
audit_path(char *out, size_t size)
{
    snprintf(out, size, "/tmp/rl2-abuse-%d.audit", (int)getpid());
}

typedef struct {
    rl2_audit_entry_t e[4];
    size_t            n;
} audited_t;

static int
audited_keep(const rl2_audit_entry_t *e, void *ctx)
{
    audited_t *r = ctx;

    if (r->n < 4) {
        r->e[r->n] = *e;
    }
    r->n++;
    return 0;
}

/* A flood of distinct offenders: banned at the second refusal, in a zone
 * that holds every counter, with a table that keeps no state file (so
 * that filling it is quick whatever each ban costs). */
#define POLICY_FLOOD \
    "abuse = { denials = \"1/1min\"; ban = \"10min\"; };\n" \
    "rules = ( { name = \"login\"; paths = [ \"/login\" ]; " \
    "limits = ( { rate = \"1/1h\"; key = \"ip\"; } ); } );\n"

static int
setup_flood_as(void **state, int with_file)
{
    abuse_fixture_t *a;
    rl2_err_t        err;

    setup_sized(state, POLICY_FLOOD, 65536, "abuseflood");
    a = realloc(*state, sizeof(*a));
    assert_non_null(a);
    snprintf(a->state_file, sizeof(a->state_file), "/tmp/rl2-abuse-%d.state",
             (int)getpid());
    unlink(a->state_file);
    assert_int_equal(rl2_overrides_open(a->base.zname,
                                        with_file ? a->state_file : NULL, 0600,
                                        &a->table, &err),
                     RL2_OK);
    a->base.policy->overrides = a->table;
    *state = a;
    return 0;
}

static int
setup_flood(void **state)
{
    return setup_flood_as(state, 0);
}

static int
setup_flood_file(void **state)
{
    return setup_flood_as(state, 1);
}

/* One request at `at_s` seconds on both clocks. */
static void
request(abuse_fixture_t *a, const char *path, const char *ip, const char *user,
        int64_t at_s, rl2_verdict_t *v)
{
    rl2_request_t req = {
        .method = "POST", .path = path, .peer_ip = ip, .user = user
    };
    rl2_clock_t now = { .mono_us = (1000 + at_s) * RL2_US_PER_S,
                        .wall_us = (1700000000 + at_s) * RL2_US_PER_S };
    rl2_err_t   err;

    rl2_verdict_init(v);
    assert_int_equal(rl2_decide(a->base.policy, NULL, 0, a->base.store, &req,
                                RL2_PHASE_ALL, &now, v, &err),
                     RL2_OK);
}

static int64_t
ban_left_s(abuse_fixture_t *a, const char *target, int64_t at_s)
{
    rl2_override_t o[8];
    rl2_clock_t    now = { .wall_us = (1700000000 + at_s) * RL2_US_PER_S };
    size_t         n = rl2_overrides_list(a->table, RL2_OVR_BAN, &now, o, 8);

    for (size_t i = 0; i < n && i < 8; i++) {
        if (strcmp(o[i].target, target) == 0) {
            return (o[i].expires_us - now.wall_us) / RL2_US_PER_S;
        }
    }
    return -1;
}

/* Without Redis, each automatic ban is one line of the audit file
 * (origin auto, the ban's author, the rule in the reason), the first and
 * its escalation alike; the refusals of a ban in force write none. */
static void
test_each_ban_one_audit_line(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_audit_conf_t ac;
    audited_t        r;
    rl2_verdict_t    v;
    rl2_err_t        err;
    char             path[128];
    size_t           n;

    audit_path(path, sizeof(path));
    unlink(path);
    rl2_audit_conf_default(&ac);
    ac.path = path;
    ac.syslog_socket = NULL;
    assert_int_equal(rl2_overrides_audit_attach(a->table, &ac, &err), RL2_OK);
    for (int i = 0; i <= 4; i++) {
        request(a, "/login", "192.0.2.1", NULL, i, &v);
    }
    assert_int_equal(v.banned, 1);
    for (int i = 5; i < 10; i++) {
        request(a, "/login", "192.0.2.1", NULL, i, &v);
        assert_int_equal(v.refusal, RL2_REFUSAL_BAN);
    }
    assert_int_equal(rl2_audit_read(path, NULL, NULL, &n, &err), RL2_OK);
    assert_int_equal(n, 1);
    for (int i = 0; i < 4; i++) {
        request(a, "/login", "192.0.2.1", NULL, 70 + i, &v);
    }
    assert_int_equal(v.banned, 1);
    assert_int_equal(v.banned_for_s, 20);

    memset(&r, 0, sizeof(r));
    assert_int_equal(rl2_audit_read(path, audited_keep, &r, &n, &err), RL2_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(r.e[i].origin, RL2_AUDIT_AUTO);
        assert_string_equal(r.e[i].author, "abuse");
        assert_string_equal(r.e[i].verb, "ban");
        assert_string_equal(r.e[i].target, "192.0.2.1");
        assert_non_null(strstr(r.e[i].reason, "(rule login, limit"));
        assert_int_equal(r.e[i].before.kind, 0);
        assert_int_equal(r.e[i].after.kind, RL2_OVR_BAN);
    }
    assert_int_equal(r.e[0].after.expires_us - r.e[0].time_us,
                     10 * RL2_US_PER_S);
    assert_int_equal(r.e[1].after.expires_us - r.e[1].time_us,
                     20 * RL2_US_PER_S);
    unlink(path);
}

/* 1 admitted, 3 refusals are tolerated, the 4th bans for 10 s; the ban
 * refuses before any rule; it ends by itself; the next offence within
 * the hour is banned for 20 s. */
static void
test_ban_then_escalate(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_verdict_t    v;

    request(a, "/login", "192.0.2.1", NULL, 0, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    for (int i = 1; i <= 3; i++) {
        request(a, "/login", "192.0.2.1", NULL, i, &v);
        assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
        assert_int_equal(v.refusal, RL2_REFUSAL_LIMIT);
        assert_int_equal(v.banned, 0);
    }
    assert_int_equal(ban_left_s(a, "192.0.2.1", 3), -1);
    request(a, "/login", "192.0.2.1", NULL, 4, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    assert_int_equal(v.banned, 1);
    assert_int_equal(v.banned_for_s, 10);
    assert_string_equal(v.banned_target, "192.0.2.1");
    assert_int_equal(ban_left_s(a, "192.0.2.1", 4), 10);

    /* Banned: refused before any rule, even on a path with no limit. */
    request(a, "/elsewhere", "192.0.2.1", NULL, 5, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);
    assert_int_equal(v.refusal_retry_s, 9);
    /* Another client is not. */
    request(a, "/login", "192.0.2.2", NULL, 5, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);

    /* The ban ends by itself; the login limit still refuses, and four
     * more refusals in a new minute ban again, twice as long. */
    request(a, "/elsewhere", "192.0.2.1", NULL, 15, &v);
    assert_int_not_equal(v.refusal, RL2_REFUSAL_BAN);
    for (int i = 0; i < 3; i++) {
        request(a, "/login", "192.0.2.1", NULL, 70 + i, &v);
        assert_int_equal(v.refusal, RL2_REFUSAL_LIMIT);
        assert_int_equal(v.banned, 0);
    }
    request(a, "/login", "192.0.2.1", NULL, 73, &v);
    assert_int_equal(v.banned, 1);
    assert_int_equal(v.banned_for_s, 20);
    assert_int_equal(ban_left_s(a, "192.0.2.1", 73), 20);
}

/* A limit keyed by user bans the user, not the address. */
static void
test_ban_names_the_user(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_verdict_t    v;

    for (int i = 0; i <= 4; i++) {
        request(a, "/acct", "192.0.2.9", "mallory", i, &v);
    }
    assert_int_equal(v.banned, 1);
    assert_int_equal(v.banned_for_s, 10);
    assert_string_equal(v.banned_target, "user:mallory");
    /* The user is banned from another address; the address is not. */
    request(a, "/elsewhere", "198.51.100.1", "mallory", 5, &v);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);
    request(a, "/elsewhere", "192.0.2.9", "alice", 5, &v);
    assert_int_not_equal(v.outcome, RL2_OUTCOME_DENY);
}

/* A user name is what the web server authenticated: a single sign-on's
 * "Mallory X", "josé", a long e-mail address.  A target took printable
 * ASCII without spaces only, so such a user was never banned at all (the
 * ban failed silently) and could go on for ever.  Names with a space or
 * beyond ASCII are targets; one no target can hold (too long, control
 * bytes) bans the address that sent it. */
static void
test_any_user_is_banned(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_verdict_t    v;
    char             longname[128];

    for (int i = 0; i <= 4; i++) {
        request(a, "/acct", "192.0.2.9", "Mallory X", i, &v);
    }
    assert_int_equal(v.banned_for_s, 10);
    assert_string_equal(v.banned_target, "user:Mallory X");
    request(a, "/elsewhere", "198.51.100.1", "Mallory X", 5, &v);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);

    for (int i = 0; i <= 4; i++) {
        request(a, "/acct", "192.0.2.10", "jos\xc3\xa9", i, &v);
    }
    assert_int_equal(v.banned_for_s, 10);
    request(a, "/elsewhere", "198.51.100.2", "jos\xc3\xa9", 5, &v);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);

    memset(longname, 'm', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    for (int i = 0; i <= 4; i++) {
        request(a, "/acct", "192.0.2.11", longname, i, &v);
    }
    assert_int_equal(v.banned_for_s, 10);
    assert_string_equal(v.banned_target, "192.0.2.11");
}

/* Dry-run refusals refuse nobody: they never count towards a ban. */
static void
test_dry_run_never_bans(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_verdict_t    v;

    for (int i = 0; i < 10; i++) {
        request(a, "/try", "192.0.2.5", NULL, i, &v);
        assert_int_not_equal(v.outcome, RL2_OUTCOME_DENY);
        assert_int_equal(v.banned, 0);
    }
    assert_int_equal(ban_left_s(a, "192.0.2.5", 10), -1);
}

/* A limit every client shares (global, route) refuses a client for what
 * others did: an attacker who spends it would get every client that
 * retries banned, escalating to max_ban.  Only a limit that counts the
 * client itself bans it. */
static void
test_shared_limit_bans_nobody(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_verdict_t    v;

    request(a, "/search", "192.0.2.66", NULL, 0, &v);
    request(a, "/feed", "192.0.2.66", NULL, 0, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    for (int i = 1; i <= 6; i++) {
        request(a, i % 2 ? "/search" : "/feed", "192.0.2.7", NULL, i, &v);
        assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
        assert_int_equal(v.banned, 0);
    }
    assert_int_equal(ban_left_s(a, "192.0.2.7", 7), -1);
    request(a, "/elsewhere", "192.0.2.7", NULL, 7, &v);
    assert_int_not_equal(v.outcome, RL2_OUTCOME_DENY);
}

/* One crossing of `denials` is one offence.  Refusals that come after it
 * in the same window (requests already in flight, or the client on
 * another server of a fleet that shares the counters but not the table,
 * modelled here by lifting the ban) ban it again for as long, not
 * `escalate` times longer each: a browser's six parallel requests made a
 * first offender's ban 2^5 times as long. */
static void
test_one_offence_per_crossing(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_clock_t      now = { .wall_us = (1700000000 + 4) * RL2_US_PER_S };
    rl2_override_t   before;
    rl2_verdict_t    v;
    rl2_err_t        err;

    for (int i = 0; i <= 4; i++) {
        request(a, "/login", "192.0.2.3", NULL, i, &v);
    }
    assert_int_equal(v.banned_for_s, 10);
    for (int i = 5; i <= 7; i++) {
        assert_int_equal(rl2_overrides_remove(a->table, RL2_OVR_BAN,
                                              RL2_OVT_ADDR, "192.0.2.3", &now,
                                              &before, &err),
                         RL2_OK);
        assert_int_equal(before.kind, RL2_OVR_BAN);
        request(a, "/login", "192.0.2.3", NULL, i, &v);
        assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
        assert_int_equal(v.banned_for_s, 10);
    }
    /* The next minute's crossing is the second offence: twice as long. */
    for (int i = 0; i < 3; i++) {
        request(a, "/login", "192.0.2.3", NULL, 70 + i, &v);
        assert_int_equal(v.refusal, RL2_REFUSAL_LIMIT);
        assert_int_equal(v.banned, 0);
    }
    request(a, "/login", "192.0.2.3", NULL, 73, &v);
    assert_int_equal(v.banned_for_s, 20);
}

/* Offender i's address, one of 65536. */
static const char *
offender(unsigned i, char *buf)
{
    snprintf(buf, 32, "10.%u.%u.%u", (i >> 16) & 0xff, (i >> 8) & 0xff,
             i & 0xff);
    return buf;
}

/* Three requests of one address: admitted, refused, refused and banned
 * (POLICY_FLOOD); the last verdict in v. */
static void
offend(abuse_fixture_t *a, const char *ip, int64_t at_s, rl2_verdict_t *v)
{
    for (int i = 0; i < 3; i++) {
        request(a, "/login", ip, NULL, at_s, v);
    }
}

/* Automatic bans are made by whoever is refused: a flood of distinct
 * offenders (a botnet, or one host with an IPv6 /48 and ipv6_prefix 64)
 * filled the whole table, and then no operator could ban, allow or
 * switch the emergency on ("full: remove some first").  They stop short
 * of the last entries. */
static void
test_flood_leaves_operators_room(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_clock_t      now = { .wall_us = (1700000000 + 1) * RL2_US_PER_S };
    rl2_override_t   o, before;
    rl2_verdict_t    v;
    rl2_err_t        err;
    char             ip[32];
    unsigned         i, banned = 0;

    for (i = 0; i < 13000; i++) {
        offend(a, offender(i, ip), 1, &v);
        assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
        banned += v.banned;
    }
    assert_true(banned >= 10000);
    assert_true(banned < 12288);
    memset(&o, 0, sizeof(o));
    assert_int_equal(
        rl2_override_target(a->base.policy, RL2_OVR_EMERGENCY, "*", &o, &err),
        RL2_OK);
    if (rl2_overrides_set(a->table, &o, &now, &before, &err) != RL2_OK) {
        fail_msg("the emergency switch: %s", err.msg);
    }
    assert_int_equal(rl2_override_target(a->base.policy, RL2_OVR_BAN,
                                         "198.51.100.0/24", &o, &err),
                     RL2_OK);
    assert_int_equal(rl2_overrides_set(a->table, &o, &now, &before, &err),
                     RL2_OK);
}

static double
seconds_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A ban is made on the request path.  While another writer holds the
 * table (ratelimit2ctl writing the state file, another child's ban), the
 * request that would ban does not queue behind it: a flood of offenders
 * had every worker waiting on the lock, each in turn rewriting the file.
 * It is refused as it would be, and a later refusal bans. */
static void
test_ban_never_waits(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_verdict_t    v;
    int              ready[2];
    char             c;
    pid_t            pid;
    double           t0;

    assert_int_equal(pipe(ready), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
        char         name[128];
        int          fd;

        /* Another process's writer, holding the writers' lock (a record
         * lock on the table's object). */
        snprintf(name, sizeof(name), "%s.overrides", a->base.zname);
        if ((fd = shm_open(name, O_RDWR, 0)) < 0 || fcntl(fd, F_SETLK, &l) != 0
            || write(ready[1], "x", 1) != 1) {
            _exit(1);
        }
        sleep(4);
        _exit(0);
    }
    assert_int_equal(read(ready[0], &c, 1), 1);
    t0 = seconds_now();
    offend(a, "192.0.2.40", 1, &v);
    assert_true(seconds_now() - t0 < 2.0);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    assert_int_equal(v.banned, 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(ready[0]);
    close(ready[1]);
    /* The writer is gone: the next refusal bans. */
    request(a, "/login", "192.0.2.40", NULL, 2, &v);
    assert_int_equal(v.banned_for_s, 600);
}

/* Each automatic ban rewrote and synced the whole state file (up to
 * 12,288 lines) under the writers' lock.  A flood of bans now writes it
 * at most once a second; what a second banned is in the next write. */
static void
test_flood_writes_file_once_a_second(void **state)
{
    abuse_fixture_t *a = *state;
    struct stat      st0, st;
    rl2_verdict_t    v;
    char             ip[32], line[256];
    FILE            *f;
    int              n = 0;

    offend(a, offender(0, ip), 1, &v);
    assert_int_equal(v.banned_for_s, 600);
    assert_int_equal(stat(a->state_file, &st0), 0);
    for (unsigned i = 1; i < 50; i++) {
        offend(a, offender(i, ip), 1, &v);
        assert_int_equal(v.banned_for_s, 600);
    }
    assert_int_equal(stat(a->state_file, &st), 0);
    assert_true(st.st_ino == st0.st_ino); /* not written again */
    offend(a, offender(50, ip), 3, &v);
    assert_int_equal(v.banned_for_s, 600);
    assert_non_null(f = fopen(a->state_file, "r"));
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strncmp(line, "ban\t", 4) == 0;
    }
    fclose(f);
    assert_int_equal(n, 51);
}

/* Without an override table the policy loads and nothing is banned. */
static void
test_no_table_no_ban(void **state)
{
    abuse_fixture_t *a = *state;
    rl2_verdict_t    v;

    a->base.policy->overrides = NULL;
    for (int i = 0; i < 10; i++) {
        request(a, "/login", "192.0.2.7", NULL, i, &v);
        assert_int_equal(v.banned, 0);
    }
    a->base.policy->overrides = a->table;
    assert_int_equal(ban_left_s(a, "192.0.2.7", 10), -1);
}

static void
expect_refused(const char *text, const char *msg)
{
    rl2_policy_t *p = NULL;
    rl2_err_t     err;

    assert_int_equal(rl2_config_load_string(text, "t.conf", NULL, &p, &err),
                     RL2_ERR_CONFIG);
    if (strstr(err.msg, msg) == NULL) {
        fail_msg("\"%s\" not in \"%s\"", msg, err.msg);
    }
}

static void
test_loader(void **state)
{
    rl2_policy_t *p = NULL;
    rl2_err_t     err;

    (void)state;
    expect_refused("abuse = { ban = \"10s\"; };\n",
                   "t.conf:1: abuse: 'denials' is required");
    expect_refused("abuse = { denials = \"3/1month\"; };\n",
                   "t.conf:1: abuse: 'denials': a calendar window");
    expect_refused("abuse = { denials = \"3/1min\"; ban = \"ten\"; };\n",
                   "t.conf:1: abuse: 'ban': invalid duration");
    expect_refused("abuse = { denials = \"3/1min\"; escalate = 0; };\n",
                   "t.conf:1: abuse: 'escalate' must be from 1 to 100");
    expect_refused("abuse = { denials = \"3/1min\"; ban = \"2h\"; "
                   "max_ban = \"1h\"; };\n",
                   "t.conf:1: abuse: 'max_ban' is shorter than 'ban'");
    expect_refused("abuse = { denials = \"3/1min\"; bans = 2; };\n", "bans");
    assert_int_equal(rl2_config_load_string("abuse = { denials = \"20/1min\"; "
                                            "};\n",
                                            "t.conf", NULL, &p, &err),
                     RL2_OK);
    assert_int_equal(p->abuse.denials, 20);
    assert_int_equal(p->abuse.window_us, 60 * RL2_US_PER_S);
    assert_int_equal(p->abuse.ban_us, 600 * RL2_US_PER_S);
    assert_int_equal(p->abuse.escalate, 2);
    assert_int_equal(p->abuse.max_ban_us, 86400 * RL2_US_PER_S);
    rl2_policy_free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ban_then_escalate, setup,
                                        teardown_abuse),
        cmocka_unit_test_setup_teardown(test_each_ban_one_audit_line, setup,
                                        teardown_abuse),
        cmocka_unit_test_setup_teardown(test_ban_names_the_user, setup,
                                        teardown_abuse),
        cmocka_unit_test_setup_teardown(test_any_user_is_banned, setup,
                                        teardown_abuse),
        cmocka_unit_test_setup_teardown(test_dry_run_never_bans, setup,
                                        teardown_abuse),
        cmocka_unit_test_setup_teardown(test_no_table_no_ban, setup,
                                        teardown_abuse),
        cmocka_unit_test_setup_teardown(test_shared_limit_bans_nobody, setup,
                                        teardown_abuse),
        cmocka_unit_test_setup_teardown(test_one_offence_per_crossing, setup,
                                        teardown_abuse),
        cmocka_unit_test_setup_teardown(test_flood_leaves_operators_room,
                                        setup_flood, teardown_abuse),
        cmocka_unit_test_setup_teardown(test_ban_never_waits, setup_flood,
                                        teardown_abuse),
        cmocka_unit_test_setup_teardown(test_flood_writes_file_once_a_second,
                                        setup_flood_file, teardown_abuse),
        cmocka_unit_test(test_loader),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
