/*
 * test_vlog.c -- the violation log (violation_log.c, violation_log_read.c,
 * config_vlog.c) and the store's reset op (store.c).
 *
 * Requests are decided for real (policy text -> rl2_decide over a local
 * zone), so the entries hold what the front ends would record: rule,
 * limit, tier, the hashed user, the count reached, the user agent.  Each
 * test's shm objects carry this process' id and are unlinked by teardown.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/store.h"
#include "ratelimit2/violation_log.h"
#include "obs/violation_log_internal.h"
#include "base/shm_obj_internal.h"

#define SEC 1000000LL
#define T0  (1700000000LL * SEC) /* a wall time, µs */

static const char policy_text[] =
    "tiers = ( { name = \"free\"; }, { name = \"pro\"; } );\n"
    "default_tier = \"free\";\n"
    "tier_from = { variable = \"TIER\"; };\n"
    "rules = ( { name = \"api\"; paths = [ \"/api/**\" ];\n"
    "  limits = ( { name = \"api_user\"; rate = \"1/hour\";"
    " key = \"user\"; } ); } );\n";

typedef struct {
    char          zone_name[64];
    rl2_policy_t *policy;
    rl2_zone_t   *zone;
    rl2_store_t  *store;
} fx_t;

static int
setup(void **state)
{
    fx_t     *fx = calloc(1, sizeof(*fx));
    rl2_err_t err;

    snprintf(fx->zone_name, sizeof(fx->zone_name), "/rl2test-%ld-vlog",
             (long)getpid());
    if (rl2_config_load_string(policy_text, "t.conf", NULL, &fx->policy, &err)
        != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    assert_int_equal(
        rl2_zone_open(fx->zone_name, 64, 64, 0600, &fx->zone, &err), RL2_OK);
    assert_int_equal(rl2_store_local_create(fx->zone, &fx->store, &err),
                     RL2_OK);
    *state = fx;
    alarm(30);
    return 0;
}

static int
teardown(void **state)
{
    fx_t *fx = *state;
    char  name[96];

    alarm(0);
    rl2_store_destroy(fx->store);
    rl2_zone_close(fx->zone);
    rl2_zone_unlink(fx->zone_name, NULL);
    rl2_vlog_ring_name(fx->zone_name, name, sizeof(name));
    shm_unlink(name);
    rl2_policy_free(fx->policy);
    free(fx);
    return 0;
}

static rl2_vlog_t *
open_log(fx_t *fx, uint32_t rate, uint32_t capacity)
{
    rl2_vlog_conf_t c = { 0, rate, capacity, NULL };
    rl2_vlog_t     *log;
    rl2_err_t       err;

    if (rl2_vlog_open(&c, fx->zone_name, 0600, NULL, NULL, &log, &err)
        != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    assert_non_null(log);
    return log;
}

/* Decide one request of `user` on `path` at wall time `wall`. */
static void
decide(fx_t *fx, const char *user, const char *path, int64_t wall,
       rl2_verdict_t *v)
{
    rl2_request_t req = { 0 };
    rl2_clock_t   now = { wall - T0 + SEC, wall };
    rl2_err_t     err;

    req.method = "GET";
    req.path = path;
    req.peer_ip = "192.0.2.7";
    req.user = user;
    rl2_verdict_init(v);
    assert_int_equal(rl2_decide(fx->policy, NULL, 0, fx->store, &req,
                                RL2_PHASE_ALL, &now, v, &err),
                     RL2_OK);
}

/* Refuse `user` (its first request passes) and record the refusal. */
static void
refuse(fx_t *fx, rl2_vlog_t *log, const char *user, const char *path,
       int64_t wall)
{
    rl2_verdict_t v;
    rl2_clock_t   now = { wall - T0 + SEC, wall };

    decide(fx, user, path, wall, &v);
    if (v.outcome != RL2_OUTCOME_DENY) {
        decide(fx, user, path, wall, &v);
    }
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    rl2_vlog_record(log, fx->policy, &v, "GET", path, NULL, &now);
}

/* Is s printable ASCII, with no double quote? (escaped text) */
static int
printable(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f
            || *s == '"') {
            return 0;
        }
    }
    return 1;
}

static size_t
read_ring(fx_t *fx, rl2_vlog_entry_t **e, rl2_vlog_stats_t *st)
{
    size_t    n;
    rl2_err_t err;

    if (rl2_vlog_ring_read(fx->zone_name, e, &n, st, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    return n;
}

static void
each_denial_becomes_one_entry_with_a_hashed_user(void **state)
{
    fx_t             *fx = *state;
    rl2_vlog_t       *log = open_log(fx, 100, 64);
    rl2_vlog_entry_t *e;
    rl2_vlog_stats_t  st;
    size_t            n;

    for (int i = 0; i < 5; i++) {
        refuse(fx, log, "alice", "/api/x", T0 + i);
    }
    n = read_ring(fx, &e, &st);
    assert_int_equal(n, 5);
    assert_int_equal(st.written, 5);
    assert_int_equal(st.skipped, 0);
    assert_string_equal(e[0].rule, "api");
    assert_string_equal(e[0].limit_name, "api_user");
    assert_string_equal(e[0].tier, "free");
    assert_string_equal(e[0].method, "GET");
    assert_string_equal(e[0].path, "/api/x");
    assert_int_equal(e[0].limit, 1);
    assert_int_equal(e[0].window_us, 3600 * SEC);
    assert_int_equal(e[4].time_us, T0 + 4);
    assert_int_equal(strncmp(e[0].client, "user:", 5), 0);
    assert_int_equal(strlen(e[0].client), 5 + 16);
    assert_null(strstr(e[0].client, "alice"));
    free(e);
    rl2_vlog_close(log);
}

static void
above_the_rate_denials_are_counted_not_written(void **state)
{
    fx_t             *fx = *state;
    rl2_vlog_t       *log = open_log(fx, 3, 64);
    rl2_vlog_entry_t *e;
    rl2_vlog_stats_t  st;
    size_t            n;

    for (int i = 0; i < 10; i++) {
        refuse(fx, log, "bob", "/api/y", T0 + 10 * SEC + i);
    }
    refuse(fx, log, "bob", "/api/y", T0 + 11 * SEC);
    n = read_ring(fx, &e, &st);
    assert_int_equal(n, 4);
    assert_int_equal(st.skipped, 7);
    assert_int_equal(e[0].skipped + e[1].skipped + e[2].skipped, 0);
    assert_int_equal(e[3].skipped, 7);
    free(e);
    rl2_vlog_close(log);
}

static void
a_full_ring_keeps_the_newest_in_order(void **state)
{
    fx_t             *fx = *state;
    rl2_vlog_t       *log = open_log(fx, 1000, 16);
    rl2_vlog_entry_t *e;
    rl2_vlog_stats_t  st;
    size_t            n;

    for (int i = 0; i < 40; i++) {
        refuse(fx, log, "carol", "/api/z", T0 + i);
    }
    n = read_ring(fx, &e, &st);
    assert_int_equal(n, 16);
    assert_int_equal(st.capacity, 16);
    assert_int_equal(st.written, 40);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(e[i].time_us, T0 + 24 + (int64_t)i);
    }
    free(e);
    rl2_vlog_close(log);
}

static void
entries_outlive_every_process_that_wrote_them(void **state)
{
    fx_t             *fx = *state;
    rl2_vlog_t       *log = open_log(fx, 100, 32);
    rl2_vlog_entry_t *e;
    rl2_vlog_stats_t  st;

    refuse(fx, log, "dave", "/api/a", T0);
    refuse(fx, log, "dave", "/api/b", T0 + 1);
    rl2_vlog_close(log);
    log = open_log(fx, 100, 32); /* a restarted server */
    refuse(fx, log, "dave", "/api/c", T0 + 2);
    rl2_vlog_close(log);
    assert_int_equal(read_ring(fx, &e, &st), 3);
    assert_string_equal(e[0].path, "/api/a");
    assert_string_equal(e[2].path, "/api/c");
    free(e);
}

static void
paths_are_bounded_and_escaped(void **state)
{
    char out[32], big[600];

    (void)state;
    rl2_vlog_escape(out, sizeof(out), "/a\r\nb\x01\"\\c?q=1", 1);
    assert_string_equal(out, "/a\\x0d\\x0ab\\x01\\x22\\x5cc");
    rl2_vlog_escape(out, sizeof(out), "x?y", 0);
    assert_string_equal(out, "x?y");
    rl2_vlog_escape(out, sizeof(out), "/caf\xc3\xa9\x7f", 1);
    assert_string_equal(out, "/caf\\xc3\\xa9\\x7f");
    /* An escape never is cut in half. */
    rl2_vlog_escape(out, 8, "abcd\n", 1);
    assert_string_equal(out, "abcd");
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[0] = '/';
    rl2_vlog_escape(out, sizeof(out), big, 1);
    assert_int_equal(strlen(out), sizeof(out) - 1);
}

/* The count the limit had reached, and the user agent: a hostile one,
 * with quotes, CR LF, control bytes and invalid UTF-8, stays one bounded
 * field of printable text: it cannot end the entry's line nor start a
 * field of its own. */
static void
a_hostile_user_agent_stays_one_bounded_field(void **state)
{
    fx_t             *fx = *state;
    rl2_vlog_t       *log = open_log(fx, 100, 16);
    rl2_vlog_entry_t *e;
    rl2_vlog_stats_t  st;
    rl2_verdict_t     v;
    rl2_clock_t       now = { SEC, T0 };
    char              ua[1200];
    size_t            n;

    decide(fx, "judy", "/api/u", T0, &v);
    decide(fx, "judy", "/api/u", T0, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    rl2_vlog_record(log, fx->policy, &v, "GET", "/api/u",
                    "x\" client=\"forged\r\n2026 api/x\x01\x1b[31m\xff\xc3(",
                    &now);
    memset(ua, 'A', sizeof(ua) - 1);
    ua[sizeof(ua) - 1] = '\0';
    ua[300] = '\n';
    rl2_vlog_record(log, fx->policy, &v, "GET", "/api/u", ua, &now);
    rl2_vlog_record(log, fx->policy, &v, "GET", "/api/u", NULL, &now);
    n = read_ring(fx, &e, &st);
    assert_int_equal(n, 3);
    assert_string_equal(e[0].user_agent,
                        "x\\x22 client=\\x22forged\\x0d\\x0a2026 "
                        "api/x\\x01\\x1b[31m\\xff\\xc3(");
    assert_true(printable(e[0].user_agent));
    /* Cut at the field's bound, before the newline far beyond it. */
    assert_int_equal(strlen(e[1].user_agent), RL2_VLOG_UA_MAX - 1);
    assert_true(printable(e[1].user_agent));
    /* No user agent: an empty field. */
    assert_string_equal(e[2].user_agent, "");
    /* The limit is 1 an hour: one counted when the second was refused. */
    assert_int_equal(e[0].count, 1);
    assert_int_equal(e[2].count, 1);
    assert_string_equal(e[0].client, e[2].client);
    free(e);
    rl2_vlog_close(log);
}

typedef struct {
    _Atomic uint64_t    stamp;
    rl2_vlog_entry_v2_t entry;
} slot_v2_t;

/* A ring a server of version 2 wrote (not restarted since the upgrade)
 * is still read: its entries, without count (-1) or user agent. */
static void
a_ring_of_version_2_is_still_read(void **state)
{
    fx_t             *fx = *state;
    size_t            size = sizeof(rl2_vlog_ring_t) + 4 * sizeof(slot_v2_t);
    rl2_vlog_ring_t  *ring;
    slot_v2_t        *slots;
    rl2_vlog_entry_t *e;
    rl2_vlog_stats_t  st;
    void             *base;
    char              name[96];
    rl2_err_t         err;

    rl2_vlog_ring_name(fx->zone_name, name, sizeof(name));
    assert_int_equal(
        rl2_shm_obj_open(name, size, RL2_VLOG_MAGIC, 2, 0600, &base, &err),
        RL2_OK);
    ring = base;
    slots = (slot_v2_t *)(void *)ring->slots;
    for (int i = 0; i < 2; i++) {
        slots[i].entry.time_us = T0 + i;
        slots[i].entry.limit = 7;
        snprintf(slots[i].entry.rule, sizeof(slots[i].entry.rule), "old");
        snprintf(slots[i].entry.client, sizeof(slots[i].entry.client),
                 "192.0.2.%d", i);
        snprintf(slots[i].entry.path, sizeof(slots[i].entry.path), "/v2");
        atomic_store(&slots[i].stamp, 2 * (uint64_t)i + 2);
    }
    atomic_store(&ring->head, 2);
    rl2_shm_obj_close(base, size);
    assert_int_equal(read_ring(fx, &e, &st), 2);
    assert_int_equal(st.capacity, 4);
    assert_string_equal(e[1].rule, "old");
    assert_string_equal(e[1].client, "192.0.2.1");
    assert_string_equal(e[1].path, "/v2");
    assert_int_equal(e[1].time_us, T0 + 1);
    assert_int_equal(e[1].limit, 7);
    assert_int_equal(e[1].count, -1);
    assert_string_equal(e[1].user_agent, "");
    free(e);
    /* A server of this version replaces it, and its entries read whole. */
    rl2_vlog_close(open_log(fx, 100, 16));
    assert_int_equal(read_ring(fx, &e, &st), 0);
    assert_int_equal(st.capacity, 16);
    free(e);
}

/* A ring is only as honest as the processes that map it (anyone running
 * as the server's user): raw control bytes, quotes and bytes above ASCII
 * written into it by hand reach the reader escaped, as the writer would
 * have escaped them, never raw into a terminal or a report. */
static void
a_hostile_ring_is_read_escaped(void **state)
{
    fx_t  *fx = *state;
    size_t size = sizeof(rl2_vlog_ring_t) + 2 * sizeof(rl2_vlog_slot_t);
    rl2_vlog_ring_t  *ring;
    rl2_vlog_slot_t  *slots;
    rl2_vlog_entry_t *e;
    rl2_vlog_stats_t  st;
    void             *base;
    char              name[96];
    rl2_err_t         err;

    rl2_vlog_ring_name(fx->zone_name, name, sizeof(name));
    assert_int_equal(rl2_shm_obj_open(name, size, RL2_VLOG_MAGIC,
                                      RL2_VLOG_VERSION, 0600, &base, &err),
                     RL2_OK);
    ring = base;
    slots = (rl2_vlog_slot_t *)(void *)ring->slots;
    slots[0].entry.time_us = T0;
    snprintf(slots[0].entry.rule, sizeof(slots[0].entry.rule), "r\x1b[2J");
    snprintf(slots[0].entry.client, sizeof(slots[0].entry.client),
             "a\"b\x1b]0;x\x07");
    snprintf(slots[0].entry.user_agent, sizeof(slots[0].entry.user_agent),
             "ua\xff\n\\x41");
    snprintf(slots[0].entry.path, sizeof(slots[0].entry.path), "/p\r");
    atomic_store(&slots[0].stamp, 2);
    atomic_store(&ring->head, 1);
    rl2_shm_obj_close(base, size);
    assert_int_equal(read_ring(fx, &e, &st), 1);
    assert_string_equal(e[0].rule, "r\\x1b[2J");
    assert_string_equal(e[0].client, "a\\x22b\\x1b]0;x\\x07");
    /* A backslash is kept (the writer's own escapes are not doubled). */
    assert_string_equal(e[0].user_agent, "ua\\xff\\x0a\\x41");
    assert_string_equal(e[0].path, "/p\\x0d");
    free(e);
}

static void
disabled_log_records_nothing(void **state)
{
    fx_t           *fx = *state;
    static char     sentinel;
    rl2_vlog_conf_t c = { 1, 0, 0, NULL };
    rl2_vlog_t     *log = (rl2_vlog_t *)&sentinel; /* must become NULL */
    rl2_err_t       err;

    assert_int_equal(
        rl2_vlog_open(&c, fx->zone_name, 0600, NULL, NULL, &log, &err), RL2_OK);
    assert_null(log);
    refuse(fx, NULL, "erin", "/api/q", T0); /* NULL: a no-op */
}

static void
policy_group_sets_the_log_and_names_bad_lines(void **state)
{
    rl2_policy_t *p;
    rl2_err_t     err;

    (void)state;
    assert_int_equal(
        rl2_config_load_string(
            "violation_log = { rate = 5; capacity = 200; stream = \"v\"; };\n",
            "v.conf", NULL, &p, &err),
        RL2_OK);
    assert_int_equal(p->vlog.rate, 5);
    assert_int_equal(p->vlog.capacity, 200);
    assert_string_equal(p->vlog.stream, "v");
    assert_int_equal(p->vlog.disabled, 0);
    rl2_policy_free(p);
    assert_int_equal(
        rl2_config_load_string(
            "mode = \"enforce\";\nviolation_log = {\n  rate = 0;\n};\n",
            "v.conf", NULL, &p, &err),
        RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "v.conf:3:"));
    assert_int_equal(
        rl2_config_load_string("violation_log = { capacity = 3; };\n", "v.conf",
                               NULL, &p, &err),
        RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "v.conf:1:"));
    assert_int_equal(rl2_config_load_string("violation_log = { rates = 3; };\n",
                                            "v.conf", NULL, &p, &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "rates"));
    assert_int_equal(
        rl2_config_load_string("violation_log = { enabled = false; };\n",
                               "v.conf", NULL, &p, &err),
        RL2_OK);
    assert_int_equal(p->vlog.disabled, 1);
    rl2_policy_free(p);
}

/* A ring slot's text without its NUL (a damaged or hostile shm object):
 * the reader ends every field inside it, the factors too. */
static void
a_slot_without_terminators_is_read_within_its_fields(void **state)
{
    fx_t             *fx = *state;
    rl2_vlog_t       *log = open_log(fx, 100, 16);
    rl2_vlog_entry_t *e, *slot;
    rl2_vlog_ring_t  *ring;
    rl2_vlog_stats_t  st;
    struct stat       sb;
    char              name[96];
    int               fd;

    refuse(fx, log, "ivan", "/api/t", T0);
    rl2_vlog_close(log);
    rl2_vlog_ring_name(fx->zone_name, name, sizeof(name));
    fd = shm_open(name, O_RDWR, 0);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &sb), 0);
    ring = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                fd, 0);
    close(fd);
    assert_true(ring != MAP_FAILED);
    slot = &ring->slots[0].entry;
    memset(slot->rule, 'A', sizeof(slot->rule));
    memset(slot->limit_name, 'A', sizeof(slot->limit_name));
    memset(slot->tier, 'A', sizeof(slot->tier));
    memset(slot->client, 'A', sizeof(slot->client));
    memset(slot->method, 'A', sizeof(slot->method));
    memset(slot->path, 'A', sizeof(slot->path));
    memset(slot->factors, 'A', sizeof(slot->factors));
    memset(slot->user_agent, 'A', sizeof(slot->user_agent));
    munmap(ring, (size_t)sb.st_size);
    assert_int_equal(read_ring(fx, &e, &st), 1);
    assert_true(strnlen(e[0].rule, sizeof(e[0].rule)) < sizeof(e[0].rule));
    assert_true(strnlen(e[0].path, sizeof(e[0].path)) < sizeof(e[0].path));
    assert_true(strnlen(e[0].factors, sizeof(e[0].factors))
                < sizeof(e[0].factors));
    assert_true(strnlen(e[0].user_agent, sizeof(e[0].user_agent))
                < sizeof(e[0].user_agent));
    free(e);
}

static void
reset_lets_a_refused_client_through_and_no_other(void **state)
{
    fx_t         *fx = *state;
    rl2_verdict_t v, w;
    rl2_clock_t   now = { SEC, T0 };
    rl2_err_t     err;

    decide(fx, "frank", "/api/r", T0, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    decide(fx, "frank", "/api/r", T0, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    decide(fx, "grace", "/api/r", T0, &w);
    assert_int_equal(w.outcome, RL2_OUTCOME_ALLOW);
    assert_int_equal(
        fx->store->ops->reset(fx->store, v.layers, v.n_layers, &now, &err),
        RL2_OK);
    decide(fx, "frank", "/api/r", T0, &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    decide(fx, "grace", "/api/r", T0, &w);
    assert_int_equal(w.outcome, RL2_OUTCOME_DENY);
    /* A key the zone does not hold: nothing to do, no error. */
    decide(fx, "heidi", "/api/r", T0, &w);
    assert_int_equal(
        fx->store->ops->reset(fx->store, w.layers, w.n_layers, &now, &err),
        RL2_OK);
    assert_int_equal(
        fx->store->ops->reset(fx->store, w.layers, w.n_layers, &now, &err),
        RL2_OK);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(each_denial_becomes_one_entry_with_a_hashed_user),
        T(above_the_rate_denials_are_counted_not_written),
        T(a_full_ring_keeps_the_newest_in_order),
        T(entries_outlive_every_process_that_wrote_them),
        T(paths_are_bounded_and_escaped),
        T(disabled_log_records_nothing),
        T(policy_group_sets_the_log_and_names_bad_lines),
        T(reset_lets_a_refused_client_through_and_no_other),
        T(a_slot_without_terminators_is_read_within_its_fields),
        T(a_hostile_user_agent_stays_one_bounded_field),
        T(a_ring_of_version_2_is_still_read),
        T(a_hostile_ring_is_read_escaped),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
