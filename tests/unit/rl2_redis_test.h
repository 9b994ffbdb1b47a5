/*
 * rl2_redis_test.h -- what the Redis test programs share: a real
 * redis-server on a free loopback port in a temp dir, an admin connection
 * to it, limits built through the policy code, and layers.
 *
 * Included once per test program (static functions and the fixture's
 * statics; define WATCHDOG_S first for a watchdog other than 60 s).  A
 * redis-server that is missing or does not start fails the run: these
 * tests never skip.
 * Servers die with the test process (PR_SET_PDEATHSIG) even when it
 * crashes, and are stopped by the teardowns on every other path.
 */
#ifndef RL2_REDIS_TEST_H
#define RL2_REDIS_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ratelimit2/policy.h"
#include "ratelimit2/redis.h"
#include "ratelimit2/store.h"
#include "base/base_internal.h"
#include "redis/redis_internal.h"

/* Each program uses some of these helpers. */
#define TEST_FN static __attribute__((unused))

#define SEC    INT64_C(1000000)
#define MINUTE (60 * SEC)
#define HOUR   (3600 * SEC)
#define DAY    (86400 * SEC)

typedef struct {
    pid_t pid;
    int   port;
    char  dir[64];
    char  sock[96];
    char  password[32]; /* for the admin connection, "" when none */
} srv_t;

TEST_FN int64_t
mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec / 1000;
}

TEST_FN int64_t
wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec / 1000;
}

/* A port nobody listens on now (bind to port 0 and let the kernel pick). */
TEST_FN int
free_port(void)
{
    struct sockaddr_in a;
    socklen_t          len = sizeof(a);
    int                fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0
        || getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        fail_msg("free_port: %s", strerror(errno));
    }
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

TEST_FN void
srv_log_tail(const srv_t *s)
{
    char  path[128], line[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/redis.log", s->dir);
    if ((f = fopen(path, "r")) != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) {
            fprintf(stderr, "  redis.log: %s", line);
        }
        fclose(f);
    }
}

TEST_FN redisContext *
srv_admin(const srv_t *s)
{
    struct timeval tv = { 2, 0 };
    redisContext  *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    redisReply    *r;

    if (c == NULL || c->err) {
        fail_msg("admin connect to port %d: %s", s->port,
                 c ? c->errstr : "out of memory");
    }
    redisSetTimeout(c, tv);
    if (s->password[0] != '\0') {
        r = redisCommand(c, "AUTH %s", s->password);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            fail_msg("admin AUTH failed");
        }
        freeReplyObject(r);
    }
    return c;
}

/* A command on the admin connection; fails the test on an error. */
TEST_FN redisReply *
admin_cmd(redisContext *c, const char *fmt, ...)
{
    va_list     ap;
    redisReply *r;

    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL) {
        fail_msg("admin command \"%s\": %s", fmt, c->errstr);
    }
    if (r->type == REDIS_REPLY_ERROR) {
        fail_msg("admin command \"%s\": %s", fmt, r->str);
    }
    return r;
}

TEST_FN int
srv_answers(const srv_t *s)
{
    struct timeval tv = { 0, 200000 };
    redisContext  *c = redisConnectWithTimeout("127.0.0.1", s->port, tv);
    redisReply    *r = NULL;
    int            ok = 0;

    if (c != NULL && !c->err) {
        redisSetTimeout(c, tv);
        r = redisCommand(c, "PING");
        /* PONG, or NOAUTH from a server that wants a password */
        ok = r != NULL
             && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR);
    }
    if (r != NULL) {
        freeReplyObject(r);
    }
    if (c != NULL) {
        redisFree(c);
    }
    return ok;
}

TEST_FN void
srv_exec(const srv_t *s, const char *const *extra)
{
    const char *argv[32];
    char        port[16], log[128];
    int         n = 0, fd;

    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(log, sizeof(log), "%s/redis.log", s->dir);
    argv[n++] = "redis-server";
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = s->dir;
    argv[n++] = "--unixsocket";
    argv[n++] = s->sock;
    argv[n++] = "--unixsocketperm";
    argv[n++] = "700";
    while (extra != NULL && *extra != NULL && n < 31) {
        argv[n++] = *extra++;
    }
    argv[n] = NULL;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if ((fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    execvp("redis-server", (char *const *)argv);
    fprintf(stderr, "exec redis-server: %s\n", strerror(errno));
    _exit(127);
}

/* Start redis-server with extra arguments (NULL-terminated, may be NULL)
 * and wait until it answers PING. */
TEST_FN void
srv_start(srv_t *s, const char *const *extra)
{
    int64_t deadline;
    int     status;

    memset(s, 0, sizeof(*s));
    snprintf(s->dir, sizeof(s->dir), "/tmp/rl2-redis-XXXXXX");
    if (mkdtemp(s->dir) == NULL) {
        fail_msg("mkdtemp: %s", strerror(errno));
    }
    snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
    s->port = free_port();
    if ((s->pid = fork()) == 0) {
        srv_exec(s, extra);
    }
    deadline = mono_us() + 10 * SEC;
    while (!srv_answers(s)) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            srv_log_tail(s);
            s->pid = 0;
            fail_msg("redis-server did not start (%s %d): it is needed, "
                     "scripts/deps.sh installs it",
                     WIFEXITED(status) ? "exit" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status)
                                       : WTERMSIG(status));
        }
        if (mono_us() > deadline) {
            srv_log_tail(s);
            fail_msg("redis-server on port %d did not answer in 10 s", s->port);
        }
        usleep(10000);
    }
}

TEST_FN void
srv_stop(srv_t *s)
{
    char path[160];

    if (s->pid > 0) {
        kill(s->pid, SIGCONT);
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if (s->dir[0] != '\0') {
        snprintf(path, sizeof(path), "%s/redis.log", s->dir);
        unlink(path);
        unlink(s->sock);
        rmdir(s->dir);
        s->dir[0] = '\0';
    }
}

/* ---- limits and layers ---- */

typedef struct {
    const char  *name;
    rl2_algo_t   algo;
    int64_t      limit;
    int64_t      window_us;
    int64_t      burst;
    rl2_period_t period;
    int64_t      ov_limit; /* overflow allowance, 0: none */
    int64_t      ov_window_us;
} spec_t;

/* A limit finished by the policy code, as a policy file would give. */
TEST_FN rl2_limit_t *
mk_limit(rl2_policy_t *pol, const spec_t *sp)
{
    rl2_limit_t *l = rl2_policy_alloc(pol, sizeof(*l));
    rl2_err_t    err;

    assert_non_null(l);
    l->name = rl2_policy_strdup(pol, sp->name);
    l->file = "test";
    l->algo.algo = sp->algo;
    l->algo.limit = sp->limit;
    l->algo.window_us = sp->window_us;
    l->algo.burst = sp->burst;
    l->algo.period = sp->period;
    l->overflow.limit = sp->ov_limit;
    l->overflow.window_us = sp->ov_window_us;
    l->key = RL2_KEY_IP;
    l->cost = 1;
    if (rl2_limit_finish(pol, l, 0, &err) != RL2_OK) {
        fail_msg("limit %s: %s", sp->name, err.msg);
    }
    return l;
}

TEST_FN void
mk_layer(rl2_layer_t *ly, const rl2_limit_t *limit, const char *client)
{
    char buf[160];
    int  n = snprintf(buf, sizeof(buf), "%s|%s", limit->name, client);

    memset(ly, 0, sizeof(*ly));
    ly->limit = limit;
    ly->key = rl2_digest(buf, (size_t)n);
    snprintf(ly->client, sizeof(ly->client), "%s", client);
}

/* A limit of `limit` per `window` (a quota: DAY for a day, else a
 * month). */
TEST_FN rl2_limit_t *
limit_of(rl2_policy_t *pol, const char *name, rl2_algo_t algo, int64_t limit,
         int64_t window)
{
    spec_t sp = { name, algo, limit, window, 0, 0, 0, 0 };

    if (algo == RL2_ALGO_QUOTA) {
        sp.period = window == DAY ? RL2_PERIOD_DAY : RL2_PERIOD_MONTH;
        sp.window_us = window == DAY ? DAY : 0;
    }
    return mk_limit(pol, &sp);
}

/* apply on the real clocks (the scripts use Redis TIME) */
TEST_FN rl2_status_t
apply_now(rl2_store_t *s, rl2_layer_t *l, size_t n, rl2_err_t *err)
{
    rl2_clock_t now;

    rl2_clock_now(&now);
    return s->ops->apply(s, l, n, &now, err);
}

TEST_FN void
must_apply(rl2_store_t *s, rl2_layer_t *l, size_t n)
{
    rl2_err_t err;

    if (apply_now(s, l, n, &err) != RL2_OK) {
        fail_msg("apply: %s", err.msg);
    }
}

/* The documented key of a layer's state ('s') or overflow ('o'). */
TEST_FN void
key_of(const rl2_layer_t *l, char suffix, char *buf, size_t size)
{
    snprintf(buf, size, "rl2:{%016" PRIx64 "%016" PRIx64 "}:%c", l->key.hi,
             l->key.lo, suffix);
}

TEST_FN long long
admin_int(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = admin_cmd(c, fmt, arg);
    long long   v = r->integer;

    freeReplyObject(r);
    return v;
}

/* A store on s, as an ACL user when user is not NULL. */
TEST_FN rl2_store_t *
mk_store_as(const srv_t *s, int test_clock, const char *user,
            const char *password)
{
    rl2_redis_conf_t conf;
    rl2_store_t     *store;
    rl2_err_t        err;

    rl2_redis_conf_init(&conf);
    if (user != NULL) {
        snprintf(conf.username, sizeof(conf.username), "%s", user);
        snprintf(conf.password, sizeof(conf.password), "%s", password);
    }
    conf.port = s->port;
    conf.connect_timeout_ms = 1000;
    conf.command_timeout_ms = 1000;
    conf.test_clock = test_clock;
    if (rl2_store_redis_create(&conf, &store, &err) != RL2_OK) {
        fail_msg("store: %s", err.msg);
    }
    return store;
}

TEST_FN rl2_store_t *
mk_store(const srv_t *s, int test_clock)
{
    return mk_store_as(s, test_clock, NULL, NULL);
}

/* Calls of one command in INFO commandstats ("fcall", "evalsha",
 * "function|load"), 0 when it never ran.  Calls refused by an ACL are not
 * calls (rejected_calls). */
TEST_FN long long
cmd_calls(redisContext *c, const char *cmd)
{
    char        pat[64];
    redisReply *r = admin_cmd(c, "INFO commandstats");
    const char *p;
    long long   n;

    snprintf(pat, sizeof(pat), "cmdstat_%s:calls=", cmd);
    p = strstr(r->str, pat);
    n = p ? strtoll(p + strlen(pat), NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

/* An ACL user who may run anything but functions.  The first call of a
 * store connected as it switches the whole process to scripts (EVALSHA,
 * EVAL), for good: the tests that use it run after those that expect
 * functions. */
#define NOFN_USER "scripts-only"
#define NOFN_PASS "s3cr1pts"

TEST_FN void
acl_user_without_functions(redisContext *c)
{
    freeReplyObject(admin_cmd(c,
                              "ACL SETUSER %s on >%s ~* +@all -fcall "
                              "-fcall_ro -function",
                              NOFN_USER, NOFN_PASS));
}

TEST_FN rl2_clock_t
clock_at(int64_t t)
{
    rl2_clock_t c = { t, t };

    return c;
}

/* ---- the window a test counts in ---- */

/* What a test needs of its window: more than any test that counts in one
 * takes (a few ms; tens under the sanitizers or on a loaded machine). */
#define WINDOW_ROOM_US SEC

/* Return once the current span of window_us, aligned on the epoch of
 * Redis TIME, has WINDOW_ROOM_US left.  The scripts align fixed and
 * sliding windows on multiples of their length, and the calendar's days
 * and months on midnight UTC: a test that fills a window and then expects
 * a refusal, or reads a count back, sees a fresh window if its span ends
 * in the middle, and fails on the clock alone.  The windows the tests
 * count in on Redis TIME are minutes, hours, days and months, whose spans
 * all end on a minute: the fixtures ask for a minute's room, and the one
 * test with 10 s windows asks for its own.  redis-server runs on this
 * host: its TIME is our CLOCK_REALTIME.  The wait ends when the span
 * does (a condition on the clock); the room is a bound on what one test
 * takes, and a test that can outlast it checks the span itself
 * (test_every_key_expires_within_its_window). */
TEST_FN void
window_room(int64_t window_us)
{
    int64_t left_us;

    while ((left_us = window_us - wall_us() % window_us) < WINDOW_ROOM_US) {
        usleep((useconds_t)left_us + 1000);
    }
}

/* ---- fixtures ---- */

#ifndef WATCHDOG_S
#define WATCHDOG_S 60 /* a hung test kills the run */
#endif

/* What a program's tests share (each uses some): the server, an admin
 * connection to it, the policy the limits live in, the store under test. */
static srv_t         srv __attribute__((unused));
static redisContext *admin __attribute__((unused));
static rl2_policy_t *pol __attribute__((unused));
static rl2_store_t  *store __attribute__((unused));

/* Start srv and its admin connection. */
TEST_FN void
srv_up(void)
{
    /* hiredis writes with write(2): a closed socket must not kill us */
    signal(SIGPIPE, SIG_IGN);
    srv_start(&srv, NULL);
    admin = srv_admin(&srv);
}

TEST_FN void
srv_down(void)
{
    if (admin != NULL) {
        redisFree(admin);
        admin = NULL;
    }
    srv_stop(&srv);
}

/* An empty policy in pol, for mk_limit and limit_of. */
TEST_FN void
pol_create(void)
{
    rl2_err_t err;

    if (rl2_policy_create("test", &pol, &err) != RL2_OK) {
        fail_msg("policy: %s", err.msg);
    }
}

/* Group fixture: srv, admin and pol, for suites that make their own
 * stores or connections. */
TEST_FN int
srv_group_setup(void **state)
{
    (void)state;
    srv_up();
    pol_create();
    return 0;
}

TEST_FN int
srv_group_teardown(void **state)
{
    (void)state;
    rl2_policy_free(pol);
    srv_down();
    return 0;
}

/* Group fixture: srv, admin, pol, and store on srv with Redis TIME. */
TEST_FN int
store_group_setup(void **state)
{
    (void)state;
    srv_up();
    pol_create();
    store = mk_store(&srv, 0);
    return 0;
}

TEST_FN int
store_group_teardown(void **state)
{
    (void)state;
    rl2_store_destroy(store);
    rl2_policy_free(pol);
    srv_down();
    return 0;
}

/* Per test: the watchdog (SIGALRM ends a hung run), and a start with
 * room left in the minute of Redis TIME (window_room). */
TEST_FN int
watchdog_setup(void **state)
{
    (void)state;
    alarm(WATCHDOG_S);
    window_room(MINUTE);
    return 0;
}

TEST_FN int
watchdog_teardown(void **state)
{
    (void)state;
    alarm(0);
    return 0;
}

/* Per test: the watchdog, and an empty server to start from. */
TEST_FN int
flushed_setup(void **state)
{
    watchdog_setup(state);
    freeReplyObject(admin_cmd(admin, "FLUSHALL"));
    return 0;
}

#endif /* RL2_REDIS_TEST_H */
