/*
 * test_overrides_redis_cluster.c -- the runtime override table's Redis
 * side (override_redis.c) over a Redis Cluster of three masters on
 * loopback: the hash, its version and its epoch live on the master of
 * their one slot, a moved slot is followed, and a master that lost its
 * data gets the mirror written back; the audit stream is on the same
 * master.
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
#include "rl2_cluster_test.h"
#include "rl2_overrides_test.h"

#include "ratelimit2/audit.h"
#include "control/control_internal.h"

static unsigned
hash_slot(void)
{
    return rl2_redis_key_slot(HASH, strlen(HASH));
}

static long long
node_hlen(int n)
{
    return admin_int(adm[n], "HLEN %s", HASH);
}

/* The three keys are on the master of their one slot. */
static void
test_cluster_set_and_remove_reach_another_host(void **state)
{
    rl2_overrides_t *a = table("a"), *b = table("b");
    rl2_override_t   o = ban("192.0.2.31", 0, "cluster");
    rl2_clock_t      now = now_plus(0);
    rl2_err_t        err;
    int              owner = owner_of(hash_slot());

    (void)state;
    must_set(a, &o);
    assert_true(exists_on(owner, HASH));
    assert_true(exists_on(owner, VERSION));
    assert_true(exists_on(owner, EPOCH));
    must_sync(b);
    assert_non_null(banned(b, "192.0.2.31"));
    assert_int_equal(rl2_overrides_remove(b, RL2_OVR_BAN, RL2_OVT_ADDR,
                                          "192.0.2.31", &now, NULL, &err),
                     RL2_OK);
    assert_int_equal(node_hlen(owner), 0);
    must_sync(a);
    assert_null(banned(a, "192.0.2.31"));
}

/* The slot moves to another master: changes and syncs follow -MOVED. */
static void
test_cluster_follows_a_moved_slot(void **state)
{
    rl2_overrides_t *a = table("a"), *b = table("b");
    rl2_override_t   o1 = ban("192.0.2.41", 0, "before the move");
    rl2_override_t   o2 = ban("192.0.2.42", 0, "after the move");
    int              from, to;

    (void)state;
    must_set(a, &o1);
    must_sync(b);
    from = owner_of(hash_slot());
    to = (from + 1) % NODES;
    move_slot(hash_slot(), from, to, 1);
    assert_int_equal(owner_of(hash_slot()), to);
    must_set(a, &o2);
    assert_int_equal(node_hlen(to), 2);
    must_sync(b);
    assert_non_null(banned(b, "192.0.2.41"));
    assert_non_null(banned(b, "192.0.2.42"));
}

/* The master of the slot loses its data (a restart without
 * persistence): the next host to sync writes its mirror back. */
static void
test_cluster_owner_lost_its_data(void **state)
{
    rl2_overrides_t     *a = table("a"), *b = table_alerting("b");
    rl2_override_t       o1 = ban("192.0.2.51", 0, "one");
    rl2_override_t       o2 = ban("192.0.2.52", 0, "two");
    rl2_overrides_sync_t st;
    int                  owner = owner_of(hash_slot());

    (void)state;
    must_set(a, &o1);
    must_set(a, &o2);
    must_sync(b);
    freeReplyObject(admin_cmd(adm[owner], "FLUSHALL"));
    assert_int_equal(node_hlen(owner), 0);
    must_sync(b);
    assert_int_equal(node_hlen(owner), 2);
    rl2_overrides_sync_status(b, &st);
    assert_int_equal(st.restores, 1);
    assert_non_null(strstr(alert_line(1000), "event=overrides_restored"));
    must_sync(a);
    assert_int_equal(count(a), 2);
}

static int
audit_count(const rl2_audit_entry_t *e, void *ctx)
{
    size_t *autos = ctx;

    *autos += e->origin == RL2_AUDIT_AUTO;
    return 0;
}

/* The audit stream lives beside the hash, on the master of its slot:
 * what ratelimit2ctl records there (connections of the audit's own) and
 * an automatic ban's entry (through the table's Redis side) are read
 * back, from the slot's master, in one walk. */
static void
test_cluster_audit_stream_beside_the_hash(void **state)
{
    rl2_overrides_t  *a = table("a");
    rl2_override_t    o = ban("192.0.2.61", wall_us() + MINUTE, "auto");
    rl2_audit_conf_t  conf;
    rl2_audit_t      *audit;
    rl2_audit_entry_t e;
    rl2_clock_t       now = now_plus(0);
    rl2_err_t         err;
    size_t            n, autos = 0;
    int               made, owner = owner_of(hash_slot());

    (void)state;
    rl2_audit_conf_default(&conf);
    conf.syslog_socket = NULL;
    conf.redis = &rconf;
    assert_int_equal(rl2_audit_open(&conf, &audit, &err), RL2_OK);
    for (int i = 0; i < 3; i++) {
        memset(&e, 0, sizeof(e));
        e.time_us = wall_us();
        snprintf(e.author, sizeof(e.author), "test");
        e.origin = RL2_AUDIT_CTL;
        snprintf(e.verb, sizeof(e.verb), "ban");
        e.kind = RL2_OVR_BAN;
        e.after = ban("192.0.2.60", 0, "ctl");
        snprintf(e.target, sizeof(e.target), "%s", e.after.target);
        if (rl2_audit_record(audit, &e, &err) != RL2_OK) {
            fail_msg("record: %s", err.msg);
        }
    }
    rl2_audit_close(audit);
    assert_int_equal(rl2_overrides_audit_attach(a, &conf, &err), RL2_OK);
    assert_int_equal(rl2_overrides_ban_auto(a, &o, &now, &made, &err), RL2_OK);
    assert_int_equal(made, 1);
    assert_int_equal(admin_int(adm[owner], "XLEN %s", HASH ":audit"), 4);
    assert_int_equal(
        rl2_audit_read_redis(&rconf, 0, audit_count, &autos, &n, &err), RL2_OK);
    assert_int_equal(n, 4);
    assert_int_equal(autos, 1);
}

static int
cluster_setup(void **state)
{
    (void)state;
    cluster_up(&rconf);
    pol_create();
    return 0;
}

static int
cluster_teardown(void **state)
{
    (void)state;
    rl2_policy_free(pol);
    cluster_stop();
    return 0;
}

static int
cluster_test_setup(void **state)
{
    watchdog_setup(state);
    for (int n = 0; n < NODES; n++) {
        freeReplyObject(admin_cmd(adm[n], "FLUSHALL"));
    }
    dir_make();
    alert_up();
    return 0;
}

#define C(f) \
    cmocka_unit_test_setup_teardown(f, cluster_test_setup, tables_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        C(test_cluster_set_and_remove_reach_another_host),
        C(test_cluster_follows_a_moved_slot),
        C(test_cluster_owner_lost_its_data),
        C(test_cluster_audit_stream_beside_the_hash),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, cluster_setup, cluster_teardown);
}
