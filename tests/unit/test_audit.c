/*
 * test_audit.c -- the audit trail of the runtime overrides (audit.c,
 * audit_read.c), and the value parsers the operator's tool shares with it:
 * the exact JSON line; escaping that keeps one change on one line; every
 * line read back into the entry it came from; lines that must not read;
 * N changes are N lines, from processes writing at once too; a torn last
 * line; the syslog datagram; factors, values and durations as written.
 *
 * Each test works in a temporary directory of its own, where a unix
 * datagram socket stands in for /dev/log.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/audit.h"
#include "ratelimit2/overrides.h"
#include "ratelimit2/policy.h"
#include "control/control_internal.h"
#include "policy/policy_internal.h"

#define WATCHDOG_S 60
#define S          RL2_US_PER_S
/* 2026-12-06T10:00:00.123456Z */
#define T0_US INT64_C(1796551200123456)

static char dir[64];
static char file[128];
static char sock_path[128];
static int  sock = -1;

static int
setup(void **state)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    (void)state;
    alarm(WATCHDOG_S);
    snprintf(dir, sizeof(dir), "/tmp/rl2audit.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/audit", dir);
    snprintf(sock_path, sizeof(sock_path), "%s/log", dir);
    strcpy(sa.sun_path, sock_path);
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(sock >= 0);
    assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return 0;
}

static int
teardown(void **state)
{
    DIR           *d = opendir(dir);
    struct dirent *e;
    char           p[384];

    (void)state;
    alarm(0);
    close(sock);
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    rmdir(dir);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------
 */

static rl2_override_t
ovr(rl2_ovr_kind_t kind, const char *target)
{
    rl2_override_t o;
    rl2_err_t      err = { "" };

    memset(&o, 0, sizeof(o));
    if (rl2_override_target(NULL, kind, target, &o, &err) != RL2_OK) {
        fail_msg("%s: %s", target, err.msg);
    }
    return o;
}

/* An entry of verb on o (after; kind 0: a removal of before). */
static rl2_audit_entry_t
entry(const char *verb, const rl2_override_t *before,
      const rl2_override_t *after, const char *reason)
{
    rl2_audit_entry_t     e;
    const rl2_override_t *o = after->kind != 0 ? after : before;

    memset(&e, 0, sizeof(e));
    e.time_us = T0_US;
    snprintf(e.author, sizeof(e.author), "root");
    e.origin = RL2_AUDIT_CTL;
    snprintf(e.verb, sizeof(e.verb), "%s", verb);
    e.kind = o->kind;
    snprintf(e.target, sizeof(e.target), "%s", o->target);
    e.before = *before;
    e.after = *after;
    snprintf(e.reason, sizeof(e.reason), "%s", reason);
    return e;
}

static rl2_audit_t *
open_audit(const char *path, const char *socket_path)
{
    rl2_audit_conf_t conf;
    rl2_audit_t     *a = NULL;
    rl2_err_t        err = { "" };

    rl2_audit_conf_default(&conf);
    conf.path = path;
    conf.syslog_socket = socket_path;
    if (rl2_audit_open(&conf, &a, &err) != RL2_OK) {
        fail_msg("audit open: %s", err.msg);
    }
    return a;
}

static void
record_ok(rl2_audit_t *a, const rl2_audit_entry_t *e)
{
    rl2_err_t err = { "" };

    if (rl2_audit_record(a, e, &err) != RL2_OK) {
        fail_msg("record: %s", err.msg);
    }
}

/* The next datagram on the socket, or "" after timeout_ms. */
static const char *
datagram(int timeout_ms)
{
    static char   buf[2048];
    struct pollfd p = { .fd = sock, .events = POLLIN };
    ssize_t       n;

    buf[0] = '\0';
    if (poll(&p, 1, timeout_ms) == 1
        && (n = recv(sock, buf, sizeof(buf) - 1, 0)) >= 0) {
        buf[n] = '\0';
    }
    return buf;
}

static void
assert_same_override(const rl2_override_t *a, const rl2_override_t *b)
{
    assert_int_equal(a->kind, b->kind);
    if (a->kind == 0) {
        return;
    }
    assert_int_equal(a->target_kind, b->target_kind);
    assert_string_equal(a->target, b->target);
    assert_string_equal(a->tier, b->tier);
    assert_int_equal(a->factor_ppm, b->factor_ppm);
    assert_int_equal(a->mode, b->mode);
    assert_int_equal(a->expires_us, b->expires_us);
    assert_string_equal(a->reason, b->reason);
    assert_string_equal(a->author, b->author);
}

static void
assert_same_entry(const rl2_audit_entry_t *a, const rl2_audit_entry_t *b)
{
    assert_int_equal(a->time_us, b->time_us);
    assert_string_equal(a->author, b->author);
    assert_int_equal(a->origin, b->origin);
    assert_string_equal(a->verb, b->verb);
    assert_int_equal(a->kind, b->kind);
    assert_string_equal(a->target, b->target);
    assert_same_override(&a->before, &b->before);
    assert_same_override(&a->after, &b->after);
    assert_string_equal(a->reason, b->reason);
}

/* e formatted and parsed back is e. */
static void
round_trip(const rl2_audit_entry_t *e)
{
    char              line[RL2_AUDIT_LINE_MAX];
    size_t            n = rl2_audit_format(e, line, sizeof(line));
    rl2_audit_entry_t back;
    rl2_err_t         err = { "" };

    assert_true(n > 0);
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1));
    line[n - 1] = '\0';
    if (rl2_audit_parse(line, &back, &err) != RL2_OK) {
        fail_msg("%s\ndoes not read back: %s", line, err.msg);
    }
    assert_same_entry(e, &back);
}

/* ---- the line --------------------------------------------------------------
 */

static void
test_line_is_exact(void **state)
{
    rl2_override_t    none = { 0 }, ban = ovr(RL2_OVR_BAN, "203.0.113.0/24");
    rl2_audit_entry_t e;
    char              line[RL2_AUDIT_LINE_MAX];

    (void)state;
    ban.expires_us = T0_US + 3600 * S;
    snprintf(ban.reason, sizeof(ban.reason), "INC-1234");
    snprintf(ban.author, sizeof(ban.author), "root");
    e = entry("ban", &none, &ban, "INC-1234");
    assert_true(rl2_audit_format(&e, line, sizeof(line)) > 0);
    assert_string_equal(
        line, "{\"time\":\"2026-12-06T10:00:00.123456Z\",\"author\":\"root\","
              "\"origin\":\"ctl\",\"verb\":\"ban\",\"kind\":\"ban\","
              "\"target\":\"203.0.113.0/24\",\"before\":null,"
              "\"after\":{\"value\":\"banned\","
              "\"expires\":\"2026-12-06T11:00:00.123456Z\","
              "\"reason\":\"INC-1234\",\"author\":\"root\"},"
              "\"ttl_s\":3600,\"reason\":\"INC-1234\"}\n");

    /* A removal: after is null, and so is ttl_s. */
    e = entry("unban", &ban, &none, "");
    assert_true(rl2_audit_format(&e, line, sizeof(line)) > 0);
    assert_non_null(strstr(line, "\"before\":{\"value\":\"banned\","));
    assert_non_null(strstr(line, "\"after\":null,\"ttl_s\":null,"
                                 "\"reason\":\"\"}\n"));
    /* Too small a buffer: nothing, not half a line. */
    assert_int_equal(rl2_audit_format(&e, line, 40), 0);
}

static void
test_strings_are_escaped_onto_one_line(void **state)
{
    rl2_override_t    none = { 0 }, o = ovr(RL2_OVR_BAN, "user:x");
    rl2_audit_entry_t e;
    char              line[RL2_AUDIT_LINE_MAX];

    (void)state;
    snprintf(o.reason, sizeof(o.reason),
             "say \"hi\"\\ now\nnext\ttab\r\x01\x7f caf\xc3\xa9 \xff\xfe end");
    e = entry("ban", &none, &o, o.reason);
    assert_true(rl2_audit_format(&e, line, sizeof(line)) > 0);
    assert_non_null(strstr(
        line, "\"reason\":\"say \\\"hi\\\"\\\\ now\\nnext\\ttab\\r\\u0001"
              "\\u007f caf\xc3\xa9 \\ufffd\\ufffd end\"}\n"));
    /* Read back, the bytes that were text are the same; the two that
     * were not are U+FFFD. */
    {
        rl2_audit_entry_t back;
        rl2_err_t         err = { "" };

        line[strlen(line) - 1] = '\0';
        assert_int_equal(rl2_audit_parse(line, &back, &err), RL2_OK);
        assert_string_equal(back.reason,
                            "say \"hi\"\\ now\nnext\ttab\r\x01\x7f "
                            "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd end");
    }
}

/* Strings at their longest, of bytes that are not UTF-8: a user: target
 * an automatic ban took from a client's user name (any bytes but
 * control ones), an author, a reason.  Each byte is written U+FFFD,
 * three bytes once read: the entry still reads, each string cut at a
 * whole character to its field, so that one such entry does not make
 * the whole trail unreadable (ratelimit2ctl audit stops at an entry
 * that does not read). */
static void
test_longest_strings_not_text_read_back(void **state)
{
    rl2_override_t    none = { 0 }, o;
    rl2_audit_entry_t e, back;
    rl2_err_t         err = { "" };
    char              target[RL2_OVR_TARGET_MAX], line[RL2_AUDIT_LINE_MAX];
    size_t            n;

    (void)state;
    memcpy(target, "user:", 5);
    memset(target + 5, 0xff, sizeof(target) - 6);
    target[sizeof(target) - 1] = '\0';
    o = ovr(RL2_OVR_BAN, target);
    memset(o.reason, 0xfe, sizeof(o.reason) - 1);
    memset(o.author, 0xfd, sizeof(o.author) - 1);
    e = entry("ban", &none, &o, o.reason);
    snprintf(e.author, sizeof(e.author), "%s", o.author);
    n = rl2_audit_format(&e, line, sizeof(line));
    assert_true(n > 0);
    line[n - 1] = '\0';
    if (rl2_audit_parse(line, &back, &err) != RL2_OK) {
        fail_msg("does not read back: %s", err.msg);
    }
    /* "user:" and as many U+FFFD as fit whole. */
    assert_int_equal(strlen(back.target), 5 + (sizeof(target) - 6) / 3 * 3);
    assert_int_equal(memcmp(back.target, "user:\xef\xbf\xbd", 8), 0);
    assert_int_equal(strlen(back.reason), (RL2_OVR_REASON_MAX - 1) / 3 * 3);
    assert_int_equal(strlen(back.author), (RL2_OVR_AUTHOR_MAX - 1) / 3 * 3);
    assert_int_equal(strlen(back.after.reason),
                     (RL2_OVR_REASON_MAX - 1) / 3 * 3);
}

static void
test_every_kind_reads_back(void **state)
{
    rl2_override_t    none = { 0 }, a, b;
    rl2_audit_entry_t e;

    (void)state;
    a = ovr(RL2_OVR_BAN, "2001:db8::/48");
    snprintf(a.author, sizeof(a.author), "alice");
    e = entry("ban", &none, &a, "");
    round_trip(&e);
    e = entry("unban", &a, &none, "false alarm");
    e.origin = RL2_AUDIT_ADMIN;
    round_trip(&e);

    a = ovr(RL2_OVR_ALLOW, "key#0123456789abcdef");
    a.expires_us = T0_US + 1;
    e = entry("allow", &none, &a, "");
    e.origin = RL2_AUDIT_AUTO;
    round_trip(&e);

    a = ovr(RL2_OVR_TIER, "user:bob");
    snprintf(a.tier, sizeof(a.tier), "pro");
    b = a;
    snprintf(b.tier, sizeof(b.tier), "gold");
    b.expires_us = T0_US + 7 * 86400 * S;
    e = entry("tier", &a, &b, "upgrade");
    round_trip(&e);

    a = ovr(RL2_OVR_BOOST, "rule:login");
    a.factor_ppm = 2500000;
    b = a;
    b.factor_ppm = 1000; /* x0.001 */
    e = entry("boost", &a, &b, "");
    round_trip(&e);

    a = ovr(RL2_OVR_EMERGENCY, "*");
    b = a;
    b.factor_ppm = 500000;
    e = entry("emergency", &a, &b, "from allow-list only to x0.5");
    round_trip(&e);
    e = entry("emergency", &none, &a, "");
    round_trip(&e);

    a = ovr(RL2_OVR_MODE, "rule:api");
    a.mode = RL2_MODE_DRY_RUN;
    e = entry("mode", &none, &a, "");
    round_trip(&e);
    a.mode = RL2_MODE_OFF;
    round_trip(&e);
    e = entry("mode-clear", &a, &none, "");
    round_trip(&e);

    /* Authors and reasons at their longest. */
    a = ovr(RL2_OVR_BAN, "192.0.2.1");
    memset(a.reason, '"', sizeof(a.reason) - 1);
    memset(a.author, '\\', sizeof(a.author) - 1);
    e = entry("ban", &none, &a, a.reason);
    memset(e.author, '\n', sizeof(e.author) - 1);
    round_trip(&e);
}

/* parse(line) is refused, with `says` in the message. */
static void
refused(const char *line, const char *says)
{
    rl2_audit_entry_t e;
    rl2_err_t         err = { "" };

    if (rl2_audit_parse(line, &e, &err) != RL2_ERR_INVALID) {
        fail_msg("read: %s", line);
    }
    if (strstr(err.msg, says) == NULL) {
        fail_msg("expected \"%s\" in \"%s\" for %s", says, err.msg, line);
    }
}

#define L_HEAD "{\"time\":\"2026-12-06T10:00:00.123456Z\",\"author\":\"root\","
#define L_SIDE \
    "{\"value\":\"banned\",\"expires\":null,\"reason\":\"\",\"author\":\"\"}"

static void
test_lines_that_do_not_read(void **state)
{
    (void)state;
    refused("", "expected an object");
    refused("[]", "expected an object");
    refused("{}", "expected a string");
    refused(L_HEAD "\"origin\":\"ctl\"}", "missing");
    refused(L_HEAD "\"author\":\"x\"", "repeated key \"author\"");
    refused(L_HEAD "\"who\":\"x\"", "unknown key \"who\"");
    refused(L_HEAD "\"origin\":\"ctl\",\"verb\":\"ban\",\"kind\":\"ban\","
                   "\"target\":\"192.0.2.1\",\"before\":null,\"after\":" L_SIDE
                   ",\"ttl_s\":null,\"reason\":\"\"} x",
            "text after");
    refused(L_HEAD "\"origin\":\"cron\",\"verb\":\"ban\",\"kind\":\"ban\","
                   "\"target\":\"192.0.2.1\",\"before\":null,\"after\":" L_SIDE
                   ",\"ttl_s\":null,\"reason\":\"\"}",
            "unknown origin");
    refused(L_HEAD "\"origin\":\"ctl\",\"verb\":\"Ban\",\"kind\":\"ban\","
                   "\"target\":\"192.0.2.1\",\"before\":null,\"after\":" L_SIDE
                   ",\"ttl_s\":null,\"reason\":\"\"}",
            "verb");
    refused(L_HEAD "\"origin\":\"ctl\",\"verb\":\"ban\",\"kind\":\"nuke\","
                   "\"target\":\"192.0.2.1\",\"before\":null,\"after\":" L_SIDE
                   ",\"ttl_s\":null,\"reason\":\"\"}",
            "unknown kind");
    refused(L_HEAD
            "\"origin\":\"ctl\",\"verb\":\"ban\",\"kind\":\"ban\","
            "\"target\":\"192.0.2.1/24\",\"before\":null,\"after\":" L_SIDE
            ",\"ttl_s\":null,\"reason\":\"\"}",
            "target");
    refused(L_HEAD "\"origin\":\"ctl\",\"verb\":\"ban\",\"kind\":\"ban\","
                   "\"target\":\"192.0.2.1\",\"before\":null,\"after\":null,"
                   "\"ttl_s\":null,\"reason\":\"\"}",
            "no value before nor after");
    refused(L_HEAD "\"origin\":\"ctl\",\"verb\":\"ban\",\"kind\":\"ban\","
                   "\"target\":\"192.0.2.1\",\"before\":null,\"after\":" L_SIDE
                   ",\"ttl_s\":60,\"reason\":\"\"}",
            "ttl_s");
    refused(L_HEAD "\"origin\":\"ctl\",\"verb\":\"boost\",\"kind\":\"boost\","
                   "\"target\":\"*\",\"before\":null,\"after\":{\"value\":"
                   "\"x0\",\"expires\":null,\"reason\":\"\",\"author\":\"\"},"
                   "\"ttl_s\":null,\"reason\":\"\"}",
            "out of range");
    refused(L_HEAD "\"origin\":\"ctl\",\"verb\":\"ban\",\"kind\":\"ban\","
                   "\"target\":\"192.0.2.1\",\"before\":null,\"after\":{"
                   "\"value\":\"banned\",\"expires\":\"tomorrow\",\"reason\":"
                   "\"\",\"author\":\"\"},\"ttl_s\":null,\"reason\":\"\"}",
            "a time not of the form");
    refused("{\"time\":\"2026-13-06T10:00:00.123456Z\"}",
            "a time not of the form");
    refused("{\"time\":\"2026-12-06 10:00:00.123456Z\"}",
            "a time not of the form");
    refused("{\"author\":\"a\\qb\"}", "bad escape");
    refused("{\"author\":\"a\\ud800b\"}", "bad \\u escape");
    refused("{\"author\":\"a\\u0000b\"}", "\\u0000");
    refused("{\"author\":\"a\tb\"}", "control character");
    refused("{\"author\":\"not ended", "not ended");
}

/* ---- the file --------------------------------------------------------------
 */

static int
count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int   n = 0, c;

    if (f == NULL) {
        return -1;
    }
    while ((c = fgetc(f)) != EOF) {
        n += c == '\n';
    }
    fclose(f);
    return n;
}

typedef struct {
    rl2_audit_entry_t got[16];
    size_t            n;
    size_t            stop_after;
} collect_t;

static int
collect(const rl2_audit_entry_t *e, void *ctx)
{
    collect_t *c = ctx;

    if (c->n < 16) {
        c->got[c->n] = *e;
    }
    c->n++;
    return c->stop_after != 0 && c->n >= c->stop_after;
}

static void
test_n_changes_are_n_lines_read_back_in_order(void **state)
{
    rl2_audit_t      *a = open_audit(file, NULL);
    rl2_override_t    none = { 0 }, o;
    rl2_audit_entry_t e[5];
    collect_t         c = { .n = 0 };
    rl2_err_t         err = { "" };
    size_t            n;
    struct stat       st;

    (void)state;
    assert_int_equal(stat(file, &st), 0); /* made at open */
    /* Group-writable, whatever the umask: root's ratelimit2ctl and the
     * web server's admin interface share it. */
    assert_int_equal(st.st_mode & 0777, 0660);
    assert_int_equal(st.st_size, 0);
    for (int i = 0; i < 5; i++) {
        char t[32];

        snprintf(t, sizeof(t), "192.0.2.%d", i + 1);
        o = ovr(RL2_OVR_BAN, t);
        e[i] = entry("ban", &none, &o, "");
        e[i].time_us += i;
        record_ok(a, &e[i]);
    }
    assert_null(rl2_audit_syslog_error(a));
    rl2_audit_close(a);
    assert_int_equal(count_lines(file), 5);
    assert_int_equal(rl2_audit_read(file, collect, &c, &n, &err), RL2_OK);
    assert_int_equal(n, 5);
    assert_int_equal(c.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_same_entry(&e[i], &c.got[i]);
    }
    /* A walk the callback stops. */
    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    assert_int_equal(rl2_audit_read(file, collect, &c, &n, &err), RL2_OK);
    assert_int_equal(c.n, 2);
    /* Opened again, it appends. */
    a = open_audit(file, NULL);
    record_ok(a, &e[0]);
    rl2_audit_close(a);
    assert_int_equal(count_lines(file), 6);
}

static void
test_entries_that_cannot_be_written_are_refused(void **state)
{
    rl2_audit_t      *a = open_audit(file, NULL);
    rl2_override_t    none = { 0 }, o = ovr(RL2_OVR_BAN, "192.0.2.1");
    rl2_audit_entry_t e = entry("ban", &none, &o, "");
    rl2_err_t         err = { "" };

    (void)state;
    e.origin = 0;
    assert_int_equal(rl2_audit_record(a, &e, &err), RL2_ERR_INVALID);
    e = entry("Ban!", &none, &o, "");
    assert_int_equal(rl2_audit_record(a, &e, &err), RL2_ERR_INVALID);
    e = entry("", &none, &o, "");
    assert_int_equal(rl2_audit_record(a, &e, &err), RL2_ERR_INVALID);
    e = entry("ban", &none, &none, "");
    e.kind = RL2_OVR_BAN;
    assert_int_equal(rl2_audit_record(a, &e, &err), RL2_ERR_INVALID);
    rl2_audit_close(a);
    assert_int_equal(count_lines(file), 0);
}

/* Processes appending at once: every line whole, none lost. */
static void
test_concurrent_writers_never_interleave(void **state)
{
    enum { WRITERS = 4, EACH = 250 };
    pid_t     pids[WRITERS];
    rl2_err_t err = { "" };
    size_t    n;
    int       status;

    (void)state;
    for (int w = 0; w < WRITERS; w++) {
        if ((pids[w] = fork()) == 0) {
            rl2_audit_t      *a = open_audit(file, NULL);
            rl2_override_t    none = { 0 }, o = ovr(RL2_OVR_BAN, "user:x");
            rl2_audit_entry_t e;

            /* Long lines: a torn or mixed one would not read. */
            memset(o.reason, 'a' + w, sizeof(o.reason) - 1);
            e = entry("ban", &none, &o, o.reason);
            for (int i = 0; i < EACH; i++) {
                if (rl2_audit_record(a, &e, &err) != RL2_OK) {
                    _exit(1);
                }
            }
            rl2_audit_close(a);
            _exit(0);
        }
        assert_true(pids[w] > 0);
    }
    for (int w = 0; w < WRITERS; w++) {
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(count_lines(file), WRITERS * EACH);
    assert_int_equal(rl2_audit_read(file, NULL, NULL, &n, &err), RL2_OK);
    assert_int_equal(n, WRITERS * EACH);
}

static void
write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void
test_torn_last_line_is_left_out_other_damage_is_an_error(void **state)
{
    rl2_override_t    none = { 0 }, o = ovr(RL2_OVR_BAN, "192.0.2.1");
    rl2_audit_entry_t e = entry("ban", &none, &o, "");
    char              line[RL2_AUDIT_LINE_MAX], text[3 * RL2_AUDIT_LINE_MAX];
    char              want[200];
    rl2_err_t         err = { "" };
    size_t            n, len = rl2_audit_format(&e, line, sizeof(line));

    (void)state;
    /* Two whole lines and half of a third. */
    snprintf(text, sizeof(text), "%s%s%.*s", line, line, (int)(len / 2), line);
    write_text(file, text);
    assert_int_equal(rl2_audit_read(file, NULL, NULL, &n, &err), RL2_OK);
    assert_int_equal(n, 2);

    /* The same half line in the middle is damage. */
    snprintf(text, sizeof(text), "%s%.*s\n%s", line, (int)(len / 2), line,
             line);
    write_text(file, text);
    assert_int_equal(rl2_audit_read(file, NULL, NULL, &n, &err),
                     RL2_ERR_INVALID);
    assert_int_equal(n, 1);
    snprintf(want, sizeof(want), "%s:2: ", file);
    assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);

    /* So is an empty line. */
    snprintf(text, sizeof(text), "%s\n%s", line, line);
    write_text(file, text);
    assert_int_equal(rl2_audit_read(file, NULL, NULL, &n, &err),
                     RL2_ERR_INVALID);
    assert_int_equal(strncmp(err.msg, want, strlen(want)), 0);

    /* No file: no entry, no error. */
    unlink(file);
    assert_int_equal(rl2_audit_read(file, NULL, NULL, &n, &err), RL2_OK);
    assert_int_equal(n, 0);
}

static void
test_a_file_that_cannot_be_opened_is_known_at_open(void **state)
{
    rl2_audit_conf_t conf;
    rl2_audit_t     *a = (rl2_audit_t *)&a;
    rl2_err_t        err = { "" };
    char             path[160], link[160];

    (void)state;
    rl2_audit_conf_default(&conf);
    snprintf(path, sizeof(path), "%s/missing/audit", dir);
    conf.path = path;
    assert_int_equal(rl2_audit_open(&conf, &a, &err), RL2_ERR_SYS);
    assert_null(a);
    assert_non_null(strstr(err.msg, "missing/audit"));
    /* Not through a symbolic link someone put in its place. */
    snprintf(link, sizeof(link), "%s/link", dir);
    assert_int_equal(symlink(file, link), 0);
    conf.path = link;
    assert_int_equal(rl2_audit_open(&conf, &a, &err), RL2_ERR_SYS);
    assert_int_equal(access(file, F_OK), -1);
}

/* ---- syslog ----------------------------------------------------------------
 */

static void
test_each_change_is_one_syslog_line(void **state)
{
    rl2_audit_t      *a = open_audit(file, sock_path);
    rl2_override_t    none = { 0 }, o = ovr(RL2_OVR_BAN, "203.0.113.0/24");
    rl2_audit_entry_t e;
    const char       *d;
    char              want[512];

    (void)state;
    o.expires_us = T0_US + 3600 * S;
    e = entry("ban", &none, &o, "INC-1 \"scraping\"");
    record_ok(a, &e);
    d = datagram(2000);
    /* authpriv (10 << 3) | notice (5) = 85 */
    assert_int_equal(strncmp(d, "<85>", 4), 0);
    snprintf(want, sizeof(want),
             "ratelimit2[%ld]: ratelimit2: event=override "
             "target=203.0.113.0/24 kind=ban verb=ban origin=ctl "
             "author=root before=- after=banned "
             "expires=2026-12-06T11:00:00.123456Z "
             "reason=\"INC-1 \\\"scraping\\\"\"",
             (long)getpid());
    if (strstr(d, want) == NULL) {
        fail_msg("expected \"%s\" in \"%s\"", want, d);
    }
    e = entry("unban", &o, &none, "");
    record_ok(a, &e);
    assert_non_null(strstr(datagram(2000), "before=banned after=- "
                                           "expires=- reason=\"\""));
    /* Every change, none held back. */
    for (int i = 0; i < 5; i++) {
        record_ok(a, &e);
        assert_non_null(strstr(datagram(2000), "verb=unban"));
    }
    assert_null(rl2_audit_syslog_error(a));
    rl2_audit_close(a);
    assert_int_equal(count_lines(file), 7);
}

/* No syslog daemon: the line is in the file all the same, and the
 * caller can say what syslog did not take. */
static void
test_syslog_down_is_no_error_of_the_change(void **state)
{
    char              missing[160];
    rl2_audit_t      *a;
    rl2_override_t    none = { 0 }, o = ovr(RL2_OVR_BAN, "192.0.2.1");
    rl2_audit_entry_t e = entry("ban", &none, &o, "");

    (void)state;
    snprintf(missing, sizeof(missing), "%s/nolog", dir);
    a = open_audit(file, missing);
    record_ok(a, &e);
    assert_non_null(rl2_audit_syslog_error(a));
    assert_non_null(strstr(rl2_audit_syslog_error(a), "nolog"));
    rl2_audit_close(a);
    assert_int_equal(count_lines(file), 1);
}

/* ---- values as written -----------------------------------------------------
 */

static void
test_times(void **state)
{
    char    t[28];
    int64_t us;

    (void)state;
    rl2_audit_time_format(T0_US, t);
    assert_string_equal(t, "2026-12-06T10:00:00.123456Z");
    assert_int_equal(rl2_audit_time_parse(t, &us), 0);
    assert_int_equal(us, T0_US);
    rl2_audit_time_format(0, t);
    assert_string_equal(t, "1970-01-01T00:00:00.000000Z");
    rl2_audit_time_format(INT64_C(4102444799999999), t);
    assert_string_equal(t, "2099-12-31T23:59:59.999999Z");
    assert_int_equal(rl2_audit_time_parse(t, &us), 0);
    assert_int_equal(us, INT64_C(4102444799999999));
    assert_int_equal(rl2_audit_time_parse("2026-12-06T10:00:00Z", &us), -1);
    assert_int_equal(
        rl2_audit_time_parse("2026-12-06T10:00:00.123456+01:00", &us), -1);
    assert_int_equal(rl2_audit_time_parse("2026-12-06T24:00:00.000000Z", &us),
                     -1);
    assert_int_equal(rl2_audit_time_parse("2026-00-06T10:00:00.000000Z", &us),
                     -1);
    assert_int_equal(rl2_audit_time_parse("2026-02-31T10:00:00.000000Z", &us),
                     -1);
    assert_int_equal(rl2_audit_time_parse("2026-12-06T10:00:60.000000Z", &us),
                     -1);
}

static void
factor_is(const char *text, uint32_t ppm)
{
    uint32_t  got = 0;
    rl2_err_t err = { "" };

    if (rl2_ovr_factor_parse(text, &got, &err) != RL2_OK) {
        fail_msg("factor %s: %s", text, err.msg);
    }
    assert_int_equal(got, ppm);
}

static void
factor_refused(const char *text, const char *says)
{
    uint32_t  got = 7;
    rl2_err_t err = { "" };

    assert_int_equal(rl2_ovr_factor_parse(text, &got, &err), RL2_ERR_INVALID);
    assert_int_equal(got, 7);
    if (strstr(err.msg, says) == NULL) {
        fail_msg("factor %s: expected \"%s\" in \"%s\"", text ? text : "-",
                 says, err.msg);
    }
}

static void
test_factors_as_written(void **state)
{
    char buf[32];

    (void)state;
    factor_is("2", 2000000);
    factor_is("x2", 2000000);
    factor_is("0.5", 500000);
    factor_is("1.25", 1250000);
    factor_is("0.001", 1000);
    factor_is("1000", 1000000000);
    factor_is("1000.000000", 1000000000);
    factor_is("007", 7000000);
    factor_refused("0", "out of range");
    factor_refused("0.0009", "out of range");
    factor_refused("1000.000001", "out of range");
    factor_refused("5000", "out of range");
    factor_refused("99999999999999999999", "out of range");
    factor_refused("1.0000001", "at most 6 decimals");
    factor_refused("", "expected a number");
    factor_refused(NULL, "expected a number");
    factor_refused("-2", "expected a number");
    factor_refused("2.", "expected a number");
    factor_refused(".5", "expected a number");
    factor_refused("1e3", "expected a number");
    factor_refused("2x", "expected a number");
    factor_refused(" 2", "expected a number");
    rl2_ovr_factor_format(2500000, buf, sizeof(buf));
    assert_string_equal(buf, "2.5");
    rl2_ovr_factor_format(2000000, buf, sizeof(buf));
    assert_string_equal(buf, "2");
    rl2_ovr_factor_format(1000, buf, sizeof(buf));
    assert_string_equal(buf, "0.001");
    rl2_ovr_factor_format(1000000000, buf, sizeof(buf));
    assert_string_equal(buf, "1000");
    rl2_ovr_factor_format(123456789, buf, sizeof(buf));
    assert_string_equal(buf, "123.456789");
}

static void
test_values_as_written(void **state)
{
    rl2_override_t o;
    rl2_err_t      err = { "" };
    char           buf[80];

    (void)state;
    o = ovr(RL2_OVR_MODE, "rule:x");
    assert_int_equal(rl2_ovr_value_parse_text(&o, "dry_run", &err), RL2_OK);
    assert_int_equal(o.mode, RL2_MODE_DRY_RUN);
    rl2_ovr_value_text(&o, buf, sizeof(buf));
    assert_string_equal(buf, "dry_run");
    assert_int_equal(rl2_ovr_value_parse_text(&o, "inherit", &err),
                     RL2_ERR_INVALID);
    o = ovr(RL2_OVR_EMERGENCY, "*");
    assert_int_equal(rl2_ovr_value_parse_text(&o, "allow-list-only", &err),
                     RL2_OK);
    assert_int_equal(o.factor_ppm, 0);
    rl2_ovr_value_text(&o, buf, sizeof(buf));
    assert_string_equal(buf, "allow-list-only");
    o = ovr(RL2_OVR_BOOST, "*");
    assert_int_equal(rl2_ovr_value_parse_text(&o, "allow-list-only", &err),
                     RL2_ERR_INVALID);
    assert_int_equal(rl2_ovr_value_parse_text(&o, "x3", &err), RL2_OK);
    rl2_ovr_value_text(&o, buf, sizeof(buf));
    assert_string_equal(buf, "x3");
    o = ovr(RL2_OVR_TIER, "user:x");
    assert_int_equal(rl2_ovr_value_parse_text(&o, "gold", &err), RL2_OK);
    assert_string_equal(o.tier, "gold");
    assert_int_equal(rl2_ovr_value_parse_text(&o, "", &err), RL2_ERR_INVALID);
    assert_int_equal(rl2_ovr_value_parse_text(&o, "go ld", &err),
                     RL2_ERR_INVALID);
    o = ovr(RL2_OVR_BAN, "user:x");
    assert_int_equal(rl2_ovr_value_parse_text(&o, "banned", &err), RL2_OK);
    assert_int_equal(rl2_ovr_value_parse_text(&o, "allowed", &err),
                     RL2_ERR_INVALID);
}

static void
duration_is(const char *text, int64_t us)
{
    int64_t   got = 0;
    rl2_err_t err = { "" };

    if (rl2_duration_parse(text, &got, &err) != RL2_OK) {
        fail_msg("duration %s: %s", text, err.msg);
    }
    assert_int_equal(got, us);
}

static void
duration_refused(const char *text)
{
    int64_t   got = 0;
    rl2_err_t err = { "" };

    if (rl2_duration_parse(text, &got, &err) == RL2_OK) {
        fail_msg("duration %s read as %lld us", text, (long long)got);
    }
    assert_non_null(strstr(err.msg, "invalid duration"));
}

static void
test_durations(void **state)
{
    (void)state;
    duration_is("30s", 30 * S);
    duration_is("1sec", S);
    duration_is("10min", 600 * S);
    duration_is("10m", 600 * S);
    duration_is("2h", 7200 * S);
    duration_is("7d", 7 * 86400 * S);
    duration_is("1w", 7 * 86400 * S);
    duration_is("3days", 3 * 86400 * S);
    duration_refused("");
    duration_refused("30");
    duration_refused("s");
    duration_refused("0s");
    duration_refused("-5s");
    duration_refused("1.5h");
    duration_refused("2 h");
    duration_refused("1month");
    duration_refused("5y");
    duration_refused("99999999999999999999s");
    duration_refused("9999999999999w");
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_line_is_exact),
        T(test_strings_are_escaped_onto_one_line),
        T(test_longest_strings_not_text_read_back),
        T(test_every_kind_reads_back),
        T(test_lines_that_do_not_read),
        T(test_n_changes_are_n_lines_read_back_in_order),
        T(test_entries_that_cannot_be_written_are_refused),
        T(test_concurrent_writers_never_interleave),
        T(test_torn_last_line_is_left_out_other_damage_is_an_error),
        T(test_a_file_that_cannot_be_opened_is_known_at_open),
        T(test_each_change_is_one_syslog_line),
        T(test_syslog_down_is_no_error_of_the_change),
        T(test_times),
        T(test_factors_as_written),
        T(test_values_as_written),
        T(test_durations),
    };

    /* The syslog header's local time: the same wherever the test runs. */
    setenv("TZ", "UTC", 1);
    /* Root's usual umask, which would take the group's write from a
     * file made 0660 by open() alone. */
    umask(022);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
