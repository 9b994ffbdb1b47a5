/*
 * test_alert.c -- syslog alerts (alert.c): the exact datagram, escaping,
 * truncation, the per-kind rate limit within one process and across
 * processes, and that openlog()/syslog() are never called.
 *
 * Each test binds its own unix datagram socket in a temporary directory
 * and reads what alert.c sends there; the clock is faked, so the rate
 * limit's interval passes when a test says so.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/alert.h"
#include "base/base_internal.h"

#define WATCHDOG_S  30
#define T0_WALL_US  1704164645000000LL /* 2024-01-02 03:04:05 UTC */
#define T0_MONO_US  5000000000LL       /* an arbitrary monotonic time */
#define INTERVAL_MS 60000

/* ---- openlog() and syslog() must never be called ---------------------- */

/* Defined here, these replace libc's for every call from the test
 * binary, the library linked into it included. */
static int libc_syslog_calls;

void
openlog(const char *ident, int option, int facility)
{
    (void)ident;
    (void)option;
    (void)facility;
    libc_syslog_calls++;
}

void
syslog(int priority, const char *format, ...)
{
    (void)priority;
    (void)format;
    libc_syslog_calls++;
}

void
vsyslog(int priority, const char *format, va_list ap)
{
    (void)priority;
    (void)format;
    (void)ap;
    libc_syslog_calls++;
}

/* ---- helpers ----------------------------------------------------------- */

static rl2_clock_t fake_now;

static void
fake_clock(rl2_clock_t *now)
{
    *now = fake_now;
}

static char dir[64];
static char sock_path[128];
static char shm_name[64];
static int  sock = -1;

static int
setup(void **state)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };

    (void)state;
    alarm(WATCHDOG_S);
    fake_now.mono_us = T0_MONO_US;
    fake_now.wall_us = T0_WALL_US;
    snprintf(dir, sizeof(dir), "/tmp/rl2alert.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(sock_path, sizeof(sock_path), "%s/log", dir);
    snprintf(shm_name, sizeof(shm_name), "/rl2test-%ld-alert", (long)getpid());
    strcpy(sa.sun_path, sock_path);
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(sock >= 0);
    assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    alarm(0);
    close(sock);
    unlink(sock_path);
    rmdir(dir);
    rl2_alert_unlink(shm_name, NULL);
    return 0;
}

/* The next datagram (waits up to timeout_ms); its length, or -1. */
static int
recv_line(char *buf, size_t len, int timeout_ms)
{
    struct pollfd p = { .fd = sock, .events = POLLIN };
    ssize_t       n;

    if (poll(&p, 1, timeout_ms) != 1) {
        return -1;
    }
    n = recv(sock, buf, len - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    return (int)n;
}

static int
count_lines(void)
{
    char buf[RL2_ALERT_LINE_MAX + 8];
    int  n = 0;

    while (recv_line(buf, sizeof(buf), 100) >= 0) {
        n++;
    }
    return n;
}

static rl2_alert_t *
must_open(const char *shm)
{
    rl2_alert_conf_t conf;
    rl2_alert_t     *a = NULL;
    rl2_err_t        err = { "" };

    rl2_alert_conf_default(&conf);
    conf.socket_path = sock_path;
    conf.shm_name = shm;
    conf.clock = fake_clock;
    if (rl2_alert_open(&conf, &a, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    return a;
}

/* What the line must be, after "<PRI>Jan  2 03:04:05 ratelimit2[PID]: ". */
static void
expect_line(int pri, const char *msg)
{
    char buf[RL2_ALERT_LINE_MAX + 8], want[RL2_ALERT_LINE_MAX + 128];

    snprintf(want, sizeof(want), "<%d>Jan  2 03:04:05 ratelimit2[%ld]: %s", pri,
             (long)getpid(), msg);
    assert_true(recv_line(buf, sizeof(buf), 1000) >= 0);
    assert_string_equal(buf, want);
}

static void
send_ok(rl2_alert_t *a, rl2_alert_kind_t kind, const rl2_alert_field_t *f,
        size_t n, int want_sent)
{
    rl2_err_t err = { "" };
    int       sent = -1;

    assert_int_equal(rl2_alert_send(a, kind, f, n, &sent, &err), RL2_OK);
    assert_int_equal(sent, want_sent);
}

/* ---- the line ---------------------------------------------------------- */

static void
test_line_is_exact_rfc3164_datagram_with_fixed_prefix(void **state)
{
    rl2_alert_field_t f[] = { { "store", "redis" },
                              { "error", "connection refused" } };
    rl2_alert_t      *a = must_open(NULL);

    (void)state;
    send_ok(a, RL2_ALERT_REDIS_DOWN, f, 2, 1);
    /* daemon.err = 3 * 8 + 3 */
    expect_line(27, "ratelimit2: event=redis_down store=redis "
                    "error=\"connection refused\"");
    send_ok(a, RL2_ALERT_REDIS_UP, f, 1, 1);
    expect_line(29, "ratelimit2: event=redis_up store=redis"); /* notice */
    send_ok(a, RL2_ALERT_FAILOVER_ENTER, NULL, 0, 1);
    expect_line(28, "ratelimit2: event=failover_enter"); /* warning */
    assert_int_equal(libc_syslog_calls, 0);
    rl2_alert_close(a);
}

static void
test_facility_and_ident_are_configurable(void **state)
{
    rl2_alert_conf_t conf;
    rl2_alert_t     *a = NULL;
    char             buf[RL2_ALERT_LINE_MAX + 8], want[256];
    int              facility = -1;

    (void)state;
    assert_int_equal(rl2_alert_facility_parse("local3", &facility, NULL),
                     RL2_OK);
    assert_int_equal(facility, LOG_LOCAL3);
    assert_int_equal(rl2_alert_facility_parse("kern", &facility, NULL),
                     RL2_ERR_CONFIG);
    rl2_alert_conf_default(&conf);
    conf.socket_path = sock_path;
    conf.ident = "apache2";
    conf.facility = LOG_LOCAL3;
    conf.clock = fake_clock;
    assert_int_equal(rl2_alert_open(&conf, &a, NULL), RL2_OK);
    send_ok(a, RL2_ALERT_CONFIG_ERROR, NULL, 0, 1);
    snprintf(want, sizeof(want),
             "<155>Jan  2 03:04:05 apache2[%ld]: "
             "ratelimit2: event=config_error",
             (long)getpid());
    assert_true(recv_line(buf, sizeof(buf), 1000) >= 0);
    assert_string_equal(buf, want);
    rl2_alert_close(a);
}

static void
test_values_are_escaped_and_quoted(void **state)
{
    char              buf[RL2_ALERT_LINE_MAX];
    rl2_alert_field_t f[] = {
        { "path", "/a\r\nevent=limited client=6.6.6.6" },
        { "q", "say \"hi\"\\" },
        { "ctl", "\x01\x7f\xff\tx" },
        { "empty", "" },
        { "null", NULL },
        { "plain", "/api/v2" },
    };

    (void)state;
    rl2_alert_format(buf, sizeof(buf), RL2_ALERT_CONFIG_ERROR, f, 6, 0);
    assert_string_equal(buf, "ratelimit2: event=config_error "
                             "path=\"/a\\r\\nevent=limited client=6.6.6.6\" "
                             "q=\"say \\\"hi\\\"\\\\\" "
                             "ctl=\\x01\\x7f\\xff\\tx "
                             "empty=\"\" null=\"\" plain=/api/v2");
    assert_null(strchr(buf, '\n'));
    assert_null(strchr(buf, '\r'));
}

static void
test_long_values_and_lines_are_cut_visibly(void **state)
{
    char              big[600], buf[RL2_ALERT_LINE_MAX + 8], want[400];
    rl2_alert_field_t f[8];
    rl2_alert_t      *a = must_open(NULL);
    int               len;

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 8; i++) {
        f[i].key = "v";
        f[i].value = big;
    }
    rl2_alert_format(buf, sizeof(buf), RL2_ALERT_CONFIG_ERROR, f, 1, 0);
    snprintf(want, sizeof(want), "ratelimit2: event=config_error v=%.*s...",
             RL2_ALERT_VALUE_MAX, big);
    assert_string_equal(buf, want);
    /* Eight such fields do not fit in one datagram. */
    send_ok(a, RL2_ALERT_CONFIG_ERROR, f, 8, 1);
    len = recv_line(buf, sizeof(buf), 1000);
    assert_true(len > 0 && len <= RL2_ALERT_LINE_MAX);
    assert_true(len > 12);
    assert_string_equal(buf + len - 15, "... truncated=1");
    rl2_alert_close(a);
}

static void
test_bad_keys_kinds_and_conf_are_refused(void **state)
{
    rl2_alert_field_t bad[] = { { "Client-IP", "1.2.3.4" } };
    rl2_alert_conf_t  conf;
    rl2_alert_t      *a = must_open(NULL);
    rl2_err_t         err = { "" };
    char              longpath[200];

    (void)state;
    assert_int_equal(
        rl2_alert_send(a, RL2_ALERT_REDIS_DOWN, bad, 1, NULL, &err),
        RL2_ERR_INVALID);
    assert_non_null(strstr(err.msg, "[a-z0-9_]"));
    assert_int_equal(
        rl2_alert_send(a, RL2_ALERT_KIND_COUNT, NULL, 0, NULL, NULL),
        RL2_ERR_INVALID);
    assert_int_equal(count_lines(), 0);
    rl2_alert_close(a);

    rl2_alert_conf_default(&conf);
    conf.ident = "bad ident";
    assert_int_equal(rl2_alert_open(&conf, &a, NULL), RL2_ERR_INVALID);
    conf.ident = "ratelimit2";
    conf.facility = LOG_DAEMON | LOG_ERR;
    assert_int_equal(rl2_alert_open(&conf, &a, NULL), RL2_ERR_INVALID);
    conf.facility = LOG_DAEMON;
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = '\0';
    conf.socket_path = longpath;
    assert_int_equal(rl2_alert_open(&conf, &a, NULL), RL2_ERR_INVALID);
    assert_null(a);
    /* Alerts switched off: a NULL handle is a no-op. */
    send_ok(NULL, RL2_ALERT_REDIS_DOWN, NULL, 0, 0);
}

/* ---- the rate limit ---------------------------------------------------- */

static void
test_one_line_per_kind_per_interval_then_suppressed_count(void **state)
{
    rl2_alert_t *a = must_open(NULL);

    (void)state;
    send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 1);
    expect_line(27, "ratelimit2: event=redis_down");
    for (int i = 0; i < 5; i++) {
        fake_now.mono_us += 1000000;
        send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 0);
    }
    /* Another kind has its own interval. */
    send_ok(a, RL2_ALERT_REDIS_UP, NULL, 0, 1);
    expect_line(29, "ratelimit2: event=redis_up");
    assert_int_equal(count_lines(), 0);
    fake_now.mono_us = T0_MONO_US + INTERVAL_MS * 1000LL - 1;
    send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 0);
    fake_now.mono_us = T0_MONO_US + INTERVAL_MS * 1000LL;
    send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 1);
    expect_line(27, "ratelimit2: event=redis_down suppressed=6");
    fake_now.mono_us += INTERVAL_MS * 1000LL;
    send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 1);
    expect_line(27, "ratelimit2: event=redis_down");
    rl2_alert_close(a);
}

static void
test_a_line_that_could_not_be_sent_is_counted(void **state)
{
    rl2_alert_conf_t conf;
    rl2_alert_t     *a = NULL;
    rl2_err_t        err = { "" };
    char             nowhere[160];
    int              sent = -1;

    (void)state;
    rl2_alert_conf_default(&conf);
    snprintf(nowhere, sizeof(nowhere), "%s/nobody-listens", dir);
    conf.socket_path = nowhere;
    conf.clock = fake_clock;
    conf.shm_name = shm_name;
    assert_int_equal(rl2_alert_open(&conf, &a, NULL), RL2_OK);
    assert_int_equal(
        rl2_alert_send(a, RL2_ALERT_REDIS_DOWN, NULL, 0, &sent, &err),
        RL2_ERR_SYS);
    assert_int_equal(sent, 0);
    assert_non_null(strstr(err.msg, "nobody-listens"));
    assert_int_equal(rl2_alert_failures(a), 1);
    rl2_alert_close(a);
    /* The same shared state, now with a listener: the lost line and the
     * one suppressed after it are reported by the next. */
    a = must_open(shm_name);
    send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 0);
    fake_now.mono_us += INTERVAL_MS * 1000LL;
    send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 1);
    expect_line(27, "ratelimit2: event=redis_down suppressed=2");
    assert_int_equal(rl2_alert_failures(a), 1);
    rl2_alert_close(a);
}

static void
test_interval_zero_sends_every_line(void **state)
{
    rl2_alert_conf_t conf;
    rl2_alert_t     *a = NULL;

    (void)state;
    rl2_alert_conf_default(&conf);
    conf.socket_path = sock_path;
    conf.interval_ms = 0;
    conf.clock = fake_clock;
    assert_int_equal(rl2_alert_open(&conf, &a, NULL), RL2_OK);
    for (int i = 0; i < 3; i++) {
        send_ok(a, RL2_ALERT_CONFIG_ERROR, NULL, 0, 1);
    }
    assert_int_equal(count_lines(), 3);
    rl2_alert_close(a);
}

/* 8 processes, each with its own handle on the shared state, each send
 * redis_down 100 times at once: one line.  After the interval, one line
 * reports the other 799. */
static void
test_processes_share_the_rate_limit(void **state)
{
    enum { PROCS = 8, EACH = 100 };
    pid_t        pids[PROCS];
    int          go[2], status, lines_sent = 0;
    rl2_alert_t *a;
    char         c;

    (void)state;
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            rl2_alert_conf_t conf;
            int              sent, total = 0;

            /* No cmocka assertions in a child: it would go on to run the
             * remaining tests.  Exit statuses say what happened. */
            close(go[1]);
            rl2_alert_conf_default(&conf);
            conf.socket_path = sock_path;
            conf.shm_name = shm_name;
            conf.clock = fake_clock;
            if (rl2_alert_open(&conf, &a, NULL) != RL2_OK) {
                _exit(101);
            }
            (void)!read(go[0], &c, 1); /* EOF: everyone starts */
            for (int k = 0; k < EACH; k++) {
                if (rl2_alert_send(a, RL2_ALERT_REDIS_DOWN, NULL, 0, &sent,
                                   NULL)
                    != RL2_OK) {
                    _exit(100);
                }
                total += sent;
            }
            rl2_alert_close(a);
            _exit(total);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < PROCS; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) <= 1);
        lines_sent += WEXITSTATUS(status);
    }
    assert_int_equal(lines_sent, 1);
    assert_int_equal(count_lines(), 1);
    a = must_open(shm_name);
    fake_now.mono_us += INTERVAL_MS * 1000LL;
    send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 1);
    expect_line(27, "ratelimit2: event=redis_down suppressed=799");
    assert_int_equal(count_lines(), 0);
    assert_int_equal(libc_syslog_calls, 0);
    rl2_alert_close(a);
}

/* A shared object of another layout (an older build) is replaced. */
static void
test_stale_shared_state_is_replaced(void **state)
{
    int          fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    rl2_alert_t *a;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 24), 0);
    close(fd);
    a = must_open(shm_name);
    send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 1);
    send_ok(a, RL2_ALERT_REDIS_DOWN, NULL, 0, 0);
    assert_int_equal(count_lines(), 1);
    rl2_alert_close(a);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_line_is_exact_rfc3164_datagram_with_fixed_prefix),
        T(test_facility_and_ident_are_configurable),
        T(test_values_are_escaped_and_quoted),
        T(test_long_values_and_lines_are_cut_visibly),
        T(test_bad_keys_kinds_and_conf_are_refused),
        T(test_one_line_per_kind_per_interval_then_suppressed_count),
        T(test_a_line_that_could_not_be_sent_is_counted),
        T(test_interval_zero_sends_every_line),
        T(test_processes_share_the_rate_limit),
        T(test_stale_shared_state_is_replaced),
    };

    /* Local time in the syslog header: make it UTC for exact lines. */
    setenv("TZ", "UTC", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
