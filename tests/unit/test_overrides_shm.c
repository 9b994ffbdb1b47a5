/*
 * test_overrides_shm.c -- the override table as two processes see it:
 * every process that opens "<zone>.overrides" by name must map the one
 * object the others map, after any number of changes, and a table opened
 * again after its object was removed comes back from the state file.
 * (The front ends open the table once and keep it; ratelimit2ctl opens
 * it for each change: a table that a second open took for stale, and
 * replaced, would leave the servers reading an object nobody writes.)
 * A writer that dies half-way through a change does not stop the
 * readers (every request of every server), and one still at work is
 * waited for.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit2/overrides.h"
#include "control/control_internal.h"

typedef struct {
    char zone[64];
    char state[256];
    char dir[128];
} fixture_t;

static int
setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    snprintf(f->zone, sizeof(f->zone), "/rl2-ovr-test-%d", (int)getpid());
    snprintf(f->dir, sizeof(f->dir), "/tmp/rl2-ovr-test-%d", (int)getpid());
    mkdir(f->dir, 0700);
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    fixture_t *f = *state;
    char       name[128];

    snprintf(name, sizeof(name), "%s.overrides", f->zone);
    shm_unlink(name);
    unlink(f->state);
    rmdir(f->dir);
    free(f);
    return 0;
}

static rl2_override_t
ban_of(const char *target)
{
    rl2_override_t o;
    rl2_err_t      err;

    memset(&o, 0, sizeof(o));
    assert_int_equal(rl2_override_target(NULL, RL2_OVR_BAN, target, &o, &err),
                     RL2_OK);
    return o;
}

static int
banned(const rl2_overrides_t *t, const char *v4)
{
    uint8_t          addr[16] = { 0 };
    rl2_ovr_who_t    who = { AF_INET, addr, NULL, NULL };
    rl2_ovr_client_t c;
    rl2_clock_t      now;
    unsigned         a, b, cc, d;

    assert_int_equal(sscanf(v4, "%u.%u.%u.%u", &a, &b, &cc, &d), 4);
    addr[0] = (uint8_t)a;
    addr[1] = (uint8_t)b;
    addr[2] = (uint8_t)cc;
    addr[3] = (uint8_t)d;
    rl2_clock_now(&now);
    rl2_overrides_client(t, NULL, &who, now.wall_us, &c);
    return c.banned;
}

/* A change made through one handle is seen by a handle opened before it
 * and by one opened after it: all three map one object. */
static void
test_handles_opened_by_name_share_one_table(void **state)
{
    fixture_t       *f = *state;
    rl2_overrides_t *server, *ctl, *later;
    rl2_override_t   o = ban_of("192.0.2.9"), before;
    rl2_clock_t      now;
    rl2_err_t        err;

    rl2_clock_now(&now);
    assert_int_equal(rl2_overrides_open(f->zone, f->state, 0600, &server, &err),
                     RL2_OK);
    assert_int_equal(rl2_overrides_open(f->zone, f->state, 0600, &ctl, &err),
                     RL2_OK);
    assert_int_equal(rl2_overrides_set(ctl, &o, &now, &before, &err), RL2_OK);
    assert_true(banned(server, "192.0.2.9"));
    assert_int_equal(rl2_overrides_open(f->zone, f->state, 0600, &later, &err),
                     RL2_OK);
    assert_true(banned(later, "192.0.2.9"));
    assert_int_equal(rl2_overrides_remove(later, RL2_OVR_BAN, o.target_kind,
                                          o.target, &now, &before, &err),
                     RL2_OK);
    assert_false(banned(server, "192.0.2.9"));
    assert_int_equal(rl2_overrides_version(server),
                     rl2_overrides_version(later));
    rl2_overrides_close(later);
    rl2_overrides_close(ctl);
    rl2_overrides_close(server);
}

/* The same across processes: a child sets, the parent (which opened
 * first, as a web server does) sees it. */
static void
test_a_change_from_another_process_is_seen(void **state)
{
    fixture_t       *f = *state;
    rl2_overrides_t *server;
    rl2_err_t        err;
    pid_t            pid;
    int              status;

    assert_int_equal(rl2_overrides_open(f->zone, f->state, 0600, &server, &err),
                     RL2_OK);
    for (int round = 0; round < 3; round++) {
        char target[32];

        snprintf(target, sizeof(target), "198.51.100.%d", round + 1);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            rl2_overrides_t *ctl;
            rl2_override_t   o = ban_of(target), before;
            rl2_clock_t      now;

            rl2_clock_now(&now);
            _exit(rl2_overrides_open(f->zone, f->state, 0600, &ctl, &err)
                      != RL2_OK
                  || rl2_overrides_set(ctl, &o, &now, &before, &err) != RL2_OK);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_true(banned(server, target));
    }
    rl2_overrides_close(server);
}

/* With the object removed (a reboot), the next open fills a new one
 * from the state file. */
static void
test_a_new_object_is_filled_from_the_state_file(void **state)
{
    fixture_t       *f = *state;
    rl2_overrides_t *t;
    rl2_override_t   o = ban_of("203.0.113.0/24"), before;
    rl2_clock_t      now;
    rl2_err_t        err;
    char             name[128];

    rl2_clock_now(&now);
    assert_int_equal(rl2_overrides_open(f->zone, f->state, 0600, &t, &err),
                     RL2_OK);
    assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err), RL2_OK);
    rl2_overrides_close(t);
    snprintf(name, sizeof(name), "%s.overrides", f->zone);
    assert_int_equal(shm_unlink(name), 0);
    assert_int_equal(rl2_overrides_open(f->zone, f->state, 0600, &t, &err),
                     RL2_OK);
    assert_true(banned(t, "203.0.113.77"));
    assert_false(banned(t, "203.0.114.1"));
    rl2_overrides_close(t);
}

/* A writer process that takes the table's lock and starts a change
 * (the sequence counter odd), then either dies there or, after
 * hold_ms, finishes it. */
static pid_t
writer(const fixture_t *f, int hold_ms, int dies)
{
    int   ready[2];
    pid_t pid;
    char  c;

    assert_int_equal(pipe(ready), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rl2_overrides_t *t;
        rl2_err_t        err;
        /* The writers' lock: a record lock on the whole object. */
        struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

        if (rl2_overrides_open(f->zone, f->state, 0600, &t, &err) != RL2_OK
            || fcntl(t->lock_fd, F_SETLKW, &l) != 0) {
            _exit(1);
        }
        atomic_fetch_add(&t->shm->seq, 1);
        (void)write(ready[1], "x", 1);
        if (dies) {
            _exit(0); /* as a ratelimit2ctl killed half-way */
        }
        usleep((useconds_t)hold_ms * 1000);
        atomic_fetch_add(&t->shm->seq, 1);
        _exit(0);
    }
    close(ready[1]);
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    return pid;
}

/* Is 198.51.100.1 banned?  In a child process, so that a reader that
 * never returns fails the test instead of hanging it: 1 or 0, or -1
 * when it did not answer within 5 s. */
static int
banned_within_5s(const rl2_overrides_t *t)
{
    pid_t pid = fork();
    int   status;

    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(banned(t, "198.51.100.1"));
    }
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            return WEXITSTATUS(status);
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* A writer killed half-way leaves the counter odd: requests read on,
 * without waiting for the next writer to mend it. */
static void
test_a_writer_that_died_does_not_stop_readers(void **state)
{
    fixture_t       *f = *state;
    rl2_overrides_t *t;
    rl2_override_t   o = ban_of("198.51.100.1"), before;
    rl2_clock_t      now;
    rl2_err_t        err;
    int              status;
    pid_t            pid;

    rl2_clock_now(&now);
    assert_int_equal(rl2_overrides_open(f->zone, f->state, 0600, &t, &err),
                     RL2_OK);
    assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err), RL2_OK);
    pid = writer(f, 0, 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(atomic_load(&t->shm->seq) & 1);
    assert_int_equal(banned_within_5s(t), 1);
    assert_false(atomic_load(&t->shm->seq) & 1);
    rl2_overrides_close(t);
}

/* A writer still at work is waited for, not overtaken: the counter ends
 * as it left it. */
static void
test_a_live_writer_is_waited_for(void **state)
{
    fixture_t       *f = *state;
    rl2_overrides_t *t;
    rl2_err_t        err;
    uint64_t         seq;
    struct timespec  a, b;
    int              status;
    pid_t            pid;

    assert_int_equal(rl2_overrides_open(f->zone, f->state, 0600, &t, &err),
                     RL2_OK);
    seq = atomic_load(&t->shm->seq);
    pid = writer(f, 300, 0);
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(banned(t, "198.51.100.1"), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000
                >= 250);
    assert_int_equal(atomic_load(&t->shm->seq), seq + 2);
    rl2_overrides_close(t);
}

/* Children of the process that opened the table write through the handle
 * they inherited, as Apache's children do for automatic bans: a flock on
 * the inherited open file would be every child's at once; the writers'
 * lock is a record lock, which is each process's own.  Four children add 150
 * bans each at the same time; every one of the 600 is in the table and in the
 * state file afterwards. */
static void
test_forked_writers_exclude_each_other(void **state)
{
    fixture_t       *f = *state;
    rl2_overrides_t *t;
    rl2_override_t   out[700];
    rl2_clock_t      now;
    rl2_err_t        err;
    pid_t            kids[4];
    char             line[256];
    FILE            *fp;
    int              lines = 0;

    assert_int_equal(rl2_overrides_open(f->zone, f->state, 0600, &t, &err),
                     RL2_OK);
    for (int k = 0; k < 4; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            for (int i = 0; i < 150; i++) {
                char           ip[32];
                rl2_override_t o, before;

                snprintf(ip, sizeof(ip), "10.%d.%d.%d", k, i / 250, i % 250);
                o = ban_of(ip);
                rl2_clock_now(&now);
                o.created_us = now.wall_us;
                if (rl2_overrides_set(t, &o, &now, &before, &err) != RL2_OK) {
                    _exit(1);
                }
            }
            _exit(0);
        }
    }
    for (int k = 0; k < 4; k++) {
        int status;

        assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    rl2_clock_now(&now);
    assert_int_equal(rl2_overrides_list(t, RL2_OVR_BAN, &now, out, 700), 600);
    assert_true(banned(t, "10.3.0.149"));
    fp = fopen(f->state, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp) != NULL) {
        lines += strncmp(line, "ban\t", 4) == 0;
    }
    fclose(fp);
    assert_int_equal(lines, 600);
    rl2_overrides_close(t);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_handles_opened_by_name_share_one_table),
        T(test_a_change_from_another_process_is_seen),
        T(test_a_new_object_is_filled_from_the_state_file),
        T(test_a_writer_that_died_does_not_stop_readers),
        T(test_a_live_writer_is_waited_for),
        T(test_forked_writers_exclude_each_other),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
