/*
 * test_override_file.c -- the override table's state file as an attacker
 * with a shell on the host sees it: a FIFO, a symbolic link or a file
 * anyone may write in its place, and a temporary file left for the
 * writer to fill.  What the file says is trusted (it can allow every
 * client): it must be the writers' own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratelimit2/overrides.h"
#include "base/shm_obj_internal.h"
#include "control/control_internal.h"

typedef struct {
    char zone[64];
    char name[80];
    char dir[64];
    char state_file[96];
    char tmp[104];
} file_fixture_t;

static int
setup(void **state)
{
    file_fixture_t *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->zone, sizeof(f->zone), "/rl2test-%d-ovrfile", (int)getpid());
    snprintf(f->name, sizeof(f->name), "%s.overrides", f->zone);
    snprintf(f->dir, sizeof(f->dir), "/tmp/rl2-ovrfile-%d", (int)getpid());
    assert_int_equal(mkdir(f->dir, 0700), 0);
    snprintf(f->state_file, sizeof(f->state_file), "%s/state", f->dir);
    snprintf(f->tmp, sizeof(f->tmp), "%s.tmp", f->state_file);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    file_fixture_t *f = *state;
    rl2_err_t       err;

    rl2_shm_obj_unlink(f->name, &err);
    unlink(f->state_file);
    unlink(f->tmp);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* rl2_overrides_open in a child given `seconds`: its status, or -1 when
 * it had not returned by then. */
static int
open_within(file_fixture_t *f, unsigned seconds)
{
    pid_t pid = fork();
    int   status;

    assert_true(pid >= 0);
    if (pid == 0) {
        rl2_overrides_t *t;
        rl2_err_t        err;

        alarm(seconds);
        _exit(rl2_overrides_open(f->zone, f->state_file, 0600, &t, &err)
                      == RL2_OK
                  ? 0
                  : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A FIFO in the state file's place: the open blocked until someone wrote
 * to it, and the first process of a host (Apache's parent) with it. */
static void
test_fifo_refused_at_once(void **state)
{
    file_fixture_t *f = *state;

    assert_int_equal(mkfifo(f->state_file, 0600), 0);
    assert_int_equal(open_within(f, 5), 1);
}

static void
write_state(const char *path, const char *line, mode_t mode)
{
    FILE *w = fopen(path, "w");

    assert_non_null(w);
    fprintf(w, "# ratelimit2 overrides 1\n%s", line);
    fclose(w);
    assert_int_equal(chmod(path, mode), 0);
}

/* A state file anyone may write says what anyone wants: "allow every
 * address".  A symbolic link in its place may name any file.  Neither is
 * read. */
static void
test_foreign_file_refused(void **state)
{
    file_fixture_t *f = *state;
    char            other[128];

    write_state(f->state_file, "allow\t0.0.0.0/0\t-\t0\t0\tx\tx\n", 0666);
    assert_int_equal(open_within(f, 5), 1);
    assert_int_equal(chmod(f->state_file, 0640), 0);
    assert_int_equal(open_within(f, 5), 0);

    rl2_err_t err;

    rl2_shm_obj_unlink(f->name, &err);
    snprintf(other, sizeof(other), "%s/other", f->dir);
    assert_int_equal(rename(f->state_file, other), 0);
    assert_int_equal(symlink(other, f->state_file), 0);
    assert_int_equal(open_within(f, 5), 1);
    unlink(other);
}

/* The temporary file is made anew by the writer, never one found there:
 * a "<state>.tmp" someone left (writable by all) was filled and renamed
 * over the state file, which then stayed theirs to write. */
static void
test_tmp_made_anew(void **state)
{
    file_fixture_t  *f = *state;
    rl2_clock_t      now = { .wall_us = 1700000000 * RL2_US_PER_S };
    rl2_overrides_t *t;
    rl2_override_t   o, before;
    rl2_err_t        err;
    struct stat      st;

    write_state(f->tmp, "", 0666);
    assert_int_equal(rl2_overrides_open(f->zone, f->state_file, 0600, &t, &err),
                     RL2_OK);
    memset(&o, 0, sizeof(o));
    assert_int_equal(
        rl2_override_target(NULL, RL2_OVR_BAN, "192.0.2.1", &o, &err), RL2_OK);
    assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err), RL2_OK);
    rl2_overrides_close(t);
    assert_int_equal(stat(f->state_file, &st), 0);
    assert_int_equal(st.st_mode & 0077 & ~0040, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fifo_refused_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_foreign_file_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tmp_made_anew, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
