/*
 * test_overrides_lock.c -- the override table's writers' lock across
 * processes, as the front ends use it: Apache opens the table in its
 * parent and every child inherits the handle, and any child may write
 * (an automatic ban) while others do; and a writer may be killed half
 * way through a change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "ratelimit2/overrides.h"
#include "base/shm_obj_internal.h"
#include "control/control_internal.h"

#define CHILDREN 4
#define BANS     60 /* per child */

typedef struct {
    char             zone[64];
    char             name[80];
    char             state_file[96];
    rl2_overrides_t *table;
} lock_fixture_t;

static int
setup(void **state)
{
    lock_fixture_t *f = calloc(1, sizeof(*f));
    rl2_err_t       err;

    assert_non_null(f);
    snprintf(f->zone, sizeof(f->zone), "/rl2test-%d-ovrlock", (int)getpid());
    snprintf(f->name, sizeof(f->name), "%s.overrides", f->zone);
    snprintf(f->state_file, sizeof(f->state_file), "/tmp/rl2-ovrlock-%d.state",
             (int)getpid());
    unlink(f->state_file);
    rl2_shm_obj_unlink(f->name, &err);
    assert_int_equal(
        rl2_overrides_open(f->zone, f->state_file, 0600, &f->table, &err),
        RL2_OK);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    lock_fixture_t *f = *state;
    rl2_err_t       err;

    rl2_overrides_close(f->table);
    rl2_shm_obj_unlink(f->name, &err);
    unlink(f->state_file);
    free(f);
    return 0;
}

/* Child k's bans through the handle it inherited; exits with how many
 * failed. */
static void
child_writes(lock_fixture_t *f, int k)
{
    rl2_clock_t now = { .wall_us = 1700000000 * RL2_US_PER_S };
    int         failed = 0;

    for (int i = 0; i < BANS; i++) {
        rl2_override_t o, before;
        rl2_err_t      err;
        char           ip[32];

        snprintf(ip, sizeof(ip), "10.%d.0.%d", k, i);
        memset(&o, 0, sizeof(o));
        if (rl2_override_target(NULL, RL2_OVR_BAN, ip, &o, &err) != RL2_OK
            || rl2_overrides_set(f->table, &o, &now, &before, &err) != RL2_OK) {
            failed++;
        }
    }
    _exit(failed > 100 ? 100 : failed);
}

/* The writers' lock was a flock on the handle's file: a flock belongs to
 * the open file, which children share with the parent that opened it, so
 * it excluded none of them.  Writers in two children changed slots at
 * once (the sequence counter then reads even in the middle of a write)
 * and wrote the one temporary state file at once, one renaming it away
 * under the other.  Every change must be made, and kept, once. */
static void
test_children_exclude_each_other(void **state)
{
    lock_fixture_t  *f = *state;
    rl2_clock_t      now = { .wall_us = 1700000000 * RL2_US_PER_S };
    rl2_overrides_t *again;
    rl2_err_t        err;
    pid_t            pid[CHILDREN];
    int              failed = 0, status;

    for (int k = 0; k < CHILDREN; k++) {
        pid[k] = fork();
        assert_true(pid[k] >= 0);
        if (pid[k] == 0) {
            child_writes(f, k);
        }
    }
    for (int k = 0; k < CHILDREN; k++) {
        assert_int_equal(waitpid(pid[k], &status, 0), pid[k]);
        assert_true(WIFEXITED(status));
        failed += WEXITSTATUS(status);
    }
    assert_int_equal(failed, 0);
    assert_int_equal(rl2_overrides_list(f->table, RL2_OVR_BAN, &now, NULL, 0),
                     CHILDREN * BANS);
    /* The state file holds every one: a table made from it has them. */
    rl2_overrides_close(f->table);
    f->table = NULL;
    rl2_shm_obj_unlink(f->name, &err);
    assert_int_equal(
        rl2_overrides_open(f->zone, f->state_file, 0600, &again, &err), RL2_OK);
    f->table = again;
    assert_int_equal(rl2_overrides_list(f->table, RL2_OVR_BAN, &now, NULL, 0),
                     CHILDREN * BANS);
}

static void
ban(rl2_overrides_t *t, const char *target)
{
    rl2_clock_t    now = { .wall_us = 1700000000 * RL2_US_PER_S };
    rl2_override_t o, before;
    rl2_err_t      err;

    memset(&o, 0, sizeof(o));
    assert_int_equal(rl2_override_target(NULL, RL2_OVR_BAN, target, &o, &err),
                     RL2_OK);
    if (rl2_overrides_set(t, &o, &now, &before, &err) != RL2_OK) {
        fail_msg("%s: %s", target, err.msg);
    }
}

/* A writer killed half-way through a change (ratelimit2ctl, a child
 * banning) leaves its slots as they were at that moment: a compaction
 * empties every slot before it puts the entries back.  The next writer
 * mended the counter only, and the bans the dead one had not put back
 * were gone until the next restart; the table is made again from the
 * state file, which has every change made before the dead one. */
static void
test_dead_writer_slots_mended(void **state)
{
    lock_fixture_t *f = *state;
    rl2_clock_t     now = { .wall_us = 1700000000 * RL2_US_PER_S };
    ovr_shm_t      *s = f->table->shm;
    rl2_override_t  o[4];

    ban(f->table, "192.0.2.1");
    ban(f->table, "2001:db8::/48");
    /* What a compaction killed after its first pass leaves. */
    atomic_fetch_add(&s->seq, 1);
    for (uint32_t i = 0; i < OVR_SLOTS; i++) {
        atomic_store(&s->slots[i].state, OVR_EMPTY);
    }
    ban(f->table, "198.51.100.7");
    assert_int_equal(rl2_overrides_list(f->table, RL2_OVR_BAN, &now, o, 4), 3);
    assert_int_equal(atomic_load(&s->seq) & 1, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_children_exclude_each_other, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_dead_writer_slots_mended, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
