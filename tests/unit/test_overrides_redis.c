/*
 * test_overrides_redis.c -- the runtime override table made the fleet's
 * through Redis (override_redis.c), on a real redis-server (and a
 * sentinel in front of it); test_overrides_redis_cluster.c does the same
 * over a Cluster.
 *
 * Two tables of different zone names on one Redis stand for two hosts:
 * what is set or removed on one reaches the other at its next sync; a
 * change Redis cannot take is refused and changes nothing; a Redis that
 * comes back empty gets the mirror written back, with a syslog line.
 * The health answer says whether a mirror is in sync.
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

#include "ratelimit2/backend.h"
#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/metrics.h"
#include "ratelimit2/store_local.h"
#include "ratelimit2/store_opts.h"

#include "store/store_internal.h"
#include "control/control_internal.h"

/* ---- what Redis holds ------------------------------------------------ */

static long long
redis_version(redisContext *c)
{
    redisReply *r = admin_cmd(c, "GET %s", VERSION);
    long long   v = r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;

    freeReplyObject(r);
    return v;
}

static long long
redis_hlen(redisContext *c)
{
    return admin_int(c, "HLEN %s", HASH);
}

/* An entry written into the hash as another writer would, and the
 * version counter moved on. */
static void
redis_put(rl2_override_t o)
{
    char line[RL2_OVR_LINE_MAX], field[128];

    assert_true(rl2_ovr_line_format(&o, line, sizeof(line)) > 0);
    snprintf(field, sizeof(field), "%s\t%s", rl2_ovr_kind_name(o.kind),
             o.target);
    freeReplyObject(admin_cmd(admin, "HSET %s %s %s", HASH, field, line));
    freeReplyObject(admin_cmd(admin, "INCR %s", VERSION));
}

/* Connections the server has now, the admin's included. */
static long long
connected_clients(void)
{
    redisReply *r = admin_cmd(admin, "INFO clients");
    const char *p = strstr(r->str, "connected_clients:");
    long long   n = p != NULL ? atoll(p + 18) : -1;

    freeReplyObject(r);
    return n;
}

/* ---- fixtures: one server, emptied before each test ------------------ */

static void
conf_of(rl2_redis_conf_t *conf, const srv_t *s)
{
    rl2_redis_conf_init(conf);
    conf->port = s->port;
    conf->connect_timeout_ms = 1000;
    conf->command_timeout_ms = 1000;
}

static int
group_setup(void **state)
{
    (void)state;
    srv_up();
    pol_create();
    conf_of(&rconf, &srv);
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

/* Kill srv and start it again on its port, empty (no persistence). */
static void
srv_restart_empty(srv_t *s)
{
    int64_t deadline = mono_us() + 10 * SEC;

    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    if ((s->pid = fork()) == 0) {
        srv_exec(s, NULL);
    }
    while (!srv_answers(s)) {
        if (mono_us() > deadline) {
            fail_msg("redis-server did not come back on port %d", s->port);
        }
        usleep(10000);
    }
    redisFree(admin);
    admin = srv_admin(s);
}

/* ---- one server --------------------------------------------------------- */

static void
test_set_on_one_host_reaches_another(void **state)
{
    rl2_overrides_t      *a = table("a"), *b = table("b");
    rl2_override_t        o = ban("192.0.2.9", 0, "scraper\tat night");
    const rl2_override_t *seen;
    redisReply           *r;

    (void)state;
    must_sync(b); /* an empty fleet: nothing */
    assert_int_equal(count(b), 0);
    must_set(a, &o);
    assert_non_null(banned(a, "192.0.2.9"));
    /* In Redis: one field, KIND<TAB>TARGET, its value the state file's
     * line; the version counter went up once. */
    r = admin_cmd(admin, "HGET %s %s", HASH, "ban\t192.0.2.9");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_non_null(strstr(r->str, "ban\t192.0.2.9\t-\t0\t"));
    assert_non_null(strstr(r->str, "\ttest\tscraper\\tat night"));
    freeReplyObject(r);
    assert_int_equal(redis_version(admin), 1);
    /* b has it after its sync, reason and all, and keeps it in its
     * state file with the version it mirrors. */
    assert_null(banned(b, "192.0.2.9"));
    must_sync(b);
    assert_non_null(seen = banned(b, "192.0.2.9"));
    assert_string_equal(seen->reason, "scraper\tat night");
    assert_string_equal(seen->author, "test");
    assert_non_null(strstr(state_text("b"), "# redis_mirror "));
    assert_non_null(strstr(state_text("b"), " 1\nban\t192.0.2.9\t"));
}

static void
test_remove_on_one_host_reaches_another(void **state)
{
    rl2_overrides_t *a = table("a"), *b = table("b");
    rl2_override_t   o = ban("2001:db8::/48", 0, "net"), before;
    rl2_clock_t      now = now_plus(0);
    rl2_err_t        err;

    (void)state;
    must_set(a, &o);
    must_sync(b);
    assert_non_null(banned(b, "2001:db8::/48"));
    /* removed on b this time: a follows */
    assert_int_equal(rl2_overrides_remove(b, RL2_OVR_BAN, RL2_OVT_ADDR,
                                          "2001:db8::/48", &now, &before, &err),
                     RL2_OK);
    assert_int_equal(before.kind, RL2_OVR_BAN);
    assert_string_equal(before.reason, "net");
    assert_null(banned(b, "2001:db8::/48"));
    assert_int_equal(redis_hlen(admin), 0);
    assert_int_equal(redis_version(admin), 2);
    assert_non_null(banned(a, "2001:db8::/48"));
    must_sync(a);
    assert_null(banned(a, "2001:db8::/48"));
    /* nothing to remove: not an error, no new version */
    assert_int_equal(rl2_overrides_remove(a, RL2_OVR_BAN, RL2_OVT_ADDR,
                                          "2001:db8::/48", &now, &before, &err),
                     RL2_OK);
    assert_int_equal(before.kind, 0);
    assert_int_equal(redis_version(admin), 2);
}

static void
test_replace_gives_what_redis_held(void **state)
{
    rl2_overrides_t *a = table("a"), *b = table("b");
    rl2_override_t   first = ban("198.51.100.7", 0, "first");
    rl2_override_t   second = ban("198.51.100.7", 0, "second"), before;
    rl2_clock_t      now = now_plus(0);
    rl2_err_t        err;

    (void)state;
    must_set(a, &first);
    /* b never synced: what it replaced is what Redis held, a's */
    assert_int_equal(rl2_overrides_set(b, &second, &now, &before, &err),
                     RL2_OK);
    assert_int_equal(before.kind, RL2_OVR_BAN);
    assert_string_equal(before.reason, "first");
    assert_string_equal(banned(b, "198.51.100.7")->reason, "second");
    must_sync(a);
    assert_string_equal(banned(a, "198.51.100.7")->reason, "second");
    assert_int_equal(redis_hlen(admin), 1);
}

/* The request path's call: due at most once a second per host, and a
 * second handle of the same host's table (another process) does not
 * ask Redis again within that second. */
static void
test_sync_due_once_a_second_per_host(void **state)
{
    rl2_overrides_t *a = table("a"), *b = table("b");
    rl2_overrides_t *b2 = table("b"); /* same host, another process */
    rl2_override_t   o1 = ban("203.0.113.1", 0, "1");
    rl2_override_t   o2 = ban("203.0.113.2", 0, "2");
    rl2_clock_t      t0 = now_plus(0), t;
    long long        gets;

    (void)state;
    must_set(a, &o1);
    rl2_overrides_sync(b, &t0); /* a fresh table is due at once */
    assert_non_null(banned(b, "203.0.113.1"));
    must_set(a, &o2);
    gets = cmd_calls(admin, "mget");
    t = t0;
    t.mono_us += SEC / 2;
    rl2_overrides_sync(b, &t);
    rl2_overrides_sync(b2, &t);
    assert_int_equal(cmd_calls(admin, "mget"), gets); /* not due */
    assert_null(banned(b2, "203.0.113.2"));
    t.mono_us = t0.mono_us + SEC;
    rl2_overrides_sync(b2, &t); /* due: b2 is elected */
    rl2_overrides_sync(b, &t);  /* b lost the election */
    assert_int_equal(cmd_calls(admin, "mget"), gets + 1);
    assert_non_null(banned(b, "203.0.113.2"));
    /* with nothing new, a due sync is one MGET: no read of the hash */
    gets = cmd_calls(admin, "eval");
    t.mono_us += SEC;
    rl2_overrides_sync(b, &t);
    assert_int_equal(cmd_calls(admin, "eval"), gets);
}

static void
test_expiry(void **state)
{
    rl2_overrides_t *a = table("a"), *b = table("b");
    rl2_override_t   soon = ban("192.0.2.50", wall_us() + 2 * SEC, "soon");
    rl2_override_t   later = ban("192.0.2.51", 0, "later");
    rl2_clock_t      then = now_plus(3 * SEC);
    rl2_err_t        err;
    redisReply      *r;

    (void)state;
    must_set(a, &soon);
    must_sync(b);
    assert_non_null(banned(b, "192.0.2.50"));
    /* ignored everywhere once past, without a sync */
    assert_null(entry_at(b, RL2_OVR_BAN, "192.0.2.50", &then));
    /* the next writer HDELs it from Redis, and b's sync leaves it out
     * of b's table and state file */
    assert_int_equal(rl2_overrides_set(a, &later, &then, NULL, &err), RL2_OK);
    r = admin_cmd(admin, "HEXISTS %s %s", HASH, "ban\t192.0.2.50");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    assert_int_equal(rl2_overrides_redis_sync(b, &then, &err), RL2_OK);
    assert_int_equal(rl2_overrides_list(b, 0, &then, NULL, 0), 1);
    assert_null(strstr(state_text("b"), "192.0.2.50"));
    /* an expired entry still in the hash (a writer whose clock was
     * behind) is not mirrored */
    redis_put(ban("192.0.2.52", then.wall_us - SEC, "gone"));
    assert_int_equal(rl2_overrides_redis_sync(b, &then, &err), RL2_OK);
    assert_null(entry_at(b, RL2_OVR_BAN, "192.0.2.52", &then));
    assert_int_equal(rl2_overrides_list(b, 0, &then, NULL, 0), 1);
}

/* A target the line format cannot carry is refused before Redis is
 * asked: no host could read it back. */
static void
test_target_with_a_tab_is_refused(void **state)
{
    rl2_overrides_t *a = table("a");
    rl2_override_t   o = ban("user:eve", 0, "tab");
    rl2_clock_t      now = now_plus(0);
    rl2_err_t        err;

    (void)state;
    snprintf(o.target, sizeof(o.target), "user:eve\tx");
    assert_int_equal(rl2_overrides_set(a, &o, &now, NULL, &err),
                     RL2_ERR_INVALID);
    assert_non_null(strstr(err.msg, "tab"));
    assert_int_equal(redis_hlen(admin), 0);
    assert_int_equal(redis_version(admin), -1); /* never written */
}

/* Redis down: a change is refused and changes nothing, on the host that
 * tried or anywhere; the other host keeps its mirror and says Redis is
 * unreachable. */
static void
test_redis_down_refuses_changes_mirror_stays(void **state)
{
    rl2_overrides_t     *a = table("a"), *b = table("b");
    rl2_override_t       o1 = ban("192.0.2.77", 0, "kept");
    rl2_override_t       o2 = ban("192.0.2.78", 0, "refused"), before;
    rl2_overrides_sync_t st;
    rl2_clock_t          now;
    rl2_err_t            err;
    char                 file_before[8192], health[1024];
    int64_t              synced;
    rl2_metrics_env_t    env = { 0 };

    (void)state;
    must_set(a, &o1);
    must_sync(b);
    rl2_overrides_sync_status(b, &st);
    assert_true(st.redis && st.reachable && st.error[0] == '\0');
    /* What health says of b's mirror: in sync (the check syncs when a
     * sync is due by the real clock, which may move synced_us on). */
    env.circuit = -1;
    env.overrides = b;
    assert_int_equal(rl2_metrics_health(&env, health, sizeof(health)), 200);
    assert_non_null(strstr(health, "{\"status\":\"ok\","));
    assert_non_null(strstr(health, ",\"overrides\":{\"source\":\"redis\","
                                   "\"in_sync\":true,\"last_sync\":\""));
    assert_non_null(strstr(health, "\",\"entries\":1}"));
    rl2_overrides_sync_status(b, &st);
    synced = st.synced_us;
    snprintf(file_before, sizeof(file_before), "%s", state_text("a"));
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);

    now = now_plus(0);
    assert_int_equal(rl2_overrides_set(a, &o2, &now, &before, &err),
                     RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "not set"));
    assert_non_null(strstr(err.msg, "refused"));
    assert_int_equal(rl2_overrides_remove(a, RL2_OVR_BAN, RL2_OVT_ADDR,
                                          "192.0.2.77", &now, &before, &err),
                     RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "not removed"));
    /* nothing changed on a: table and state file */
    assert_int_equal(count(a), 1);
    assert_non_null(banned(a, "192.0.2.77"));
    assert_string_equal(state_text("a"), file_before);

    /* b keeps what it saw, and says why it could not sync */
    assert_int_equal(rl2_overrides_redis_sync(b, &now, &err), RL2_ERR_STORE);
    assert_non_null(banned(b, "192.0.2.77"));
    rl2_overrides_sync_status(b, &st);
    assert_false(st.reachable);
    assert_non_null(strstr(st.error, "redis 127.0.0.1:"));
    assert_int_equal(st.synced_us, synced);
    assert_true(st.tried_us >= synced);
    /* ... and health: not in sync, since the last sync; degraded. */
    assert_int_equal(rl2_metrics_health(&env, health, sizeof(health)), 200);
    assert_non_null(strstr(health, "{\"status\":\"degraded\","));
    assert_non_null(strstr(health, ",\"overrides\":{\"source\":\"redis\","
                                   "\"in_sync\":false,\"last_sync\":\""));

    srv_restart_empty(&srv); /* for the tests after this one */
}

/* Redis restarted empty: the first host to sync writes its mirror back,
 * says so in syslog, and every host ends up with the same table. */
static void
test_restarted_empty_gets_the_mirror_back(void **state)
{
    rl2_overrides_t     *a = table("a"), *b = table_alerting("b");
    rl2_override_t       o1 = ban("192.0.2.1", 0, "one");
    rl2_override_t       o2 = ban("192.0.2.2", 0, "two");
    rl2_overrides_sync_t st;
    const char          *line;

    (void)state;
    must_set(a, &o1);
    must_set(a, &o2);
    must_sync(b);
    assert_int_equal(count(b), 2);

    srv_restart_empty(&srv);
    assert_int_equal(redis_hlen(admin), 0);
    must_sync(b);
    /* back in Redis, in a new epoch */
    assert_int_equal(redis_hlen(admin), 2);
    assert_true(redis_version(admin) >= 1);
    rl2_overrides_sync_status(b, &st);
    assert_int_equal(st.restores, 1);
    assert_int_equal(count(b), 2);
    line = alert_line(1000);
    assert_non_null(strstr(line, "ratelimit2: event=overrides_restored "));
    assert_non_null(strstr(line, "key={rl2:overrides} redis=0/0 mirror="));
    assert_non_null(strstr(line, "/2 written=2"));

    /* a follows, with nothing of its own to write back */
    must_sync(a);
    assert_int_equal(count(a), 2);
    assert_int_equal(redis_hlen(admin), 2);
    assert_string_equal(banned(a, "192.0.2.2")->reason, "two");
    /* and a second sync of b finds nothing to do */
    must_sync(b);
    rl2_overrides_sync_status(b, &st);
    assert_int_equal(st.restores, 1);
    assert_string_equal(alert_line(100), "");
}

/* A young fleet: after the restart, a change comes before any sync and
 * brings Redis's counter to where the mirrors were.  The epoch still
 * tells: nothing is lost, on either side. */
static void
test_change_after_restart_before_any_sync(void **state)
{
    rl2_overrides_t *a = table("a"), *b = table("b");
    rl2_override_t   o1 = ban("192.0.2.11", 0, "before");
    rl2_override_t   o2 = ban("192.0.2.12", 0, "after");

    (void)state;
    must_set(a, &o1);
    must_sync(b);
    srv_restart_empty(&srv);
    must_set(b, &o2); /* Redis's counter is 1 again, as the mirrors' */
    assert_int_equal(count(b), 2);
    assert_non_null(banned(b, "192.0.2.11"));
    assert_non_null(banned(b, "192.0.2.12"));
    assert_int_equal(redis_hlen(admin), 2);
    must_sync(a);
    assert_int_equal(count(a), 2);
    assert_non_null(banned(a, "192.0.2.12"));
}

/* A table that had entries before it had a Redis side (a state file
 * from a single host) offers them to the fleet on its first sync. */
static void
test_table_from_before_redis_offers_its_entries(void **state)
{
    rl2_overrides_t     *c = table_local("c"), *b = table("b");
    rl2_override_t       o = ban("198.51.100.0/24", 0, "local");
    rl2_override_t       other = ban("198.51.100.200", 0, "fleet");
    rl2_ovr_redis_conf_t rc = { .conf = &rconf, .alert = alert };
    rl2_err_t            err;

    (void)state;
    must_set(b, &other);
    must_set(c, &o); /* c's own table, no Redis yet */
    assert_int_equal(redis_hlen(admin), 1);
    assert_int_equal(rl2_ovr_redis_attach(c, &rc, &err), RL2_OK);
    must_sync(c);
    assert_int_equal(redis_hlen(admin), 2);
    assert_int_equal(count(c), 2); /* and it has the fleet's */
    assert_non_null(strstr(alert_line(1000), "written=1"));
    must_sync(b);
    assert_non_null(banned(b, "198.51.100.0/24"));
}

/* After a reboot the state file says which state of Redis the table
 * mirrors: an unchanged Redis is not read again, and nothing is written
 * back. */
static void
test_state_file_remembers_the_mirror(void **state)
{
    rl2_overrides_t     *a = table("a"), *b = table("b");
    rl2_override_t       o = ban("192.0.2.99", 0, "kept");
    rl2_overrides_sync_t before, after;
    char                 name[96], path[128];
    long long            evals;
    rl2_err_t            err;

    (void)state;
    must_set(a, &o);
    must_sync(b);
    rl2_overrides_sync_status(b, &before);
    assert_true(before.redis_epoch > 0);
    assert_int_equal(before.redis_version, 1);
    /* the shared memory goes, as with a reboot; the state file stays */
    snprintf(name, sizeof(name), "%s.overrides", zones[1]);
    shm_unlink(name);
    rl2_overrides_close(b);
    state_of("b", path, sizeof(path));
    assert_int_equal(rl2_overrides_open(zones[1], path, 0600, &b, &err),
                     RL2_OK);
    tabs[1] = b;
    assert_int_equal(rl2_overrides_redis_attach(b, &rconf, &err), RL2_OK);
    rl2_overrides_sync_status(b, &after);
    assert_int_equal(after.redis_epoch, before.redis_epoch);
    assert_int_equal(after.redis_version, before.redis_version);
    assert_non_null(banned(b, "192.0.2.99"));
    evals = cmd_calls(admin, "eval");
    must_sync(b);
    assert_int_equal(cmd_calls(admin, "eval"), evals);
}

/* Fields another version (or a person) wrote that this one does not
 * read are skipped and counted; the rest is mirrored. */
static void
test_unreadable_entries_are_skipped_and_counted(void **state)
{
    rl2_overrides_t     *a = table("a"), *b = table("b");
    rl2_override_t       o = ban("192.0.2.5", 0, "fine");
    rl2_overrides_sync_t st;
    char                 line[RL2_OVR_LINE_MAX];

    (void)state;
    must_set(a, &o);
    freeReplyObject(admin_cmd(admin, "HSET %s %s %s", HASH, "ban\t192.0.2.6",
                              "not a line"));
    /* a good line under another entry's field */
    assert_true(rl2_ovr_line_format(&o, line, sizeof(line)) > 0);
    freeReplyObject(
        admin_cmd(admin, "HSET %s %s %s", HASH, "ban\t192.0.2.8", line));
    redis_put(ban("192.0.2.7", 0, "fine too"));
    must_sync(b);
    assert_int_equal(count(b), 2);
    assert_non_null(banned(b, "192.0.2.5"));
    assert_non_null(banned(b, "192.0.2.7"));
    rl2_overrides_sync_status(b, &st);
    assert_int_equal(st.unreadable, 2);
}

/* A decision syncs before it tests the table: a host whose table is
 * empty refuses a client another host has just banned, once due. */
static void
test_decision_sees_a_ban_from_another_host(void **state)
{
    static const char *text =
        "rules = ( { name = \"all\"; paths = [ \"/\" ];\n"
        "            limits = ( { rate = \"100/min\"; key = \"ip\"; } ); }"
        " );\n";
    rl2_overrides_t *a = table("a"), *b = table("b");
    rl2_override_t   o = ban("192.0.2.66", 0, "abuse");
    rl2_policy_t    *p;
    rl2_zone_t      *zone;
    rl2_store_t     *local;
    rl2_request_t    req = { .method = "GET",
                             .path = "/",
                             .peer_ip = "192.0.2.66" };
    rl2_verdict_t    v;
    rl2_clock_t      now = now_plus(0);
    rl2_err_t        err;
    char             zname[64];

    (void)state;
    zone_of("decide", zname, sizeof(zname));
    assert_int_equal(rl2_config_load_string(text, "t.conf", NULL, &p, &err),
                     RL2_OK);
    assert_int_equal(
        rl2_zone_open(zname, 1000, p->max_state_size, 0600, &zone, &err),
        RL2_OK);
    assert_int_equal(rl2_store_local_create(zone, &local, &err), RL2_OK);
    p->overrides = b;

    rl2_verdict_init(&v);
    assert_int_equal(
        rl2_decide(p, NULL, 0, local, &req, RL2_PHASE_ALL, &now, &v, &err),
        RL2_OK);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    must_set(a, &o);
    assert_true(rl2_overrides_idle(b)); /* nothing here yet */
    now.mono_us += SEC;                 /* due */
    rl2_verdict_init(&v);
    assert_int_equal(
        rl2_decide(p, NULL, 0, local, &req, RL2_PHASE_ALL, &now, &v, &err),
        RL2_OK);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);

    p->overrides = NULL;
    rl2_store_destroy(local);
    rl2_zone_close(zone);
    rl2_zone_unlink(zname, &err);
    rl2_policy_free(p);
}

/* An automatic ban made on one host holds on another: it goes to Redis
 * first, as an operator's does (made only in the host's own table, the
 * next sync would take it away again). */
static void
test_automatic_ban_holds_on_another_host(void **state)
{
    static const char *text =
        "abuse = { denials = \"1/1min\"; ban = \"10min\"; };\n"
        "rules = ( { name = \"login\"; paths = [ \"/\" ];\n"
        "            limits = ( { rate = \"1/1h\"; key = \"ip\"; } ); }"
        " );\n";
    rl2_overrides_t *a = table("a"), *b = table("b");
    rl2_policy_t    *p;
    rl2_zone_t      *zone;
    rl2_store_t     *local;
    rl2_request_t    req = { .method = "POST",
                             .path = "/",
                             .peer_ip = "192.0.2.77" };
    rl2_verdict_t    v;
    rl2_clock_t      now = now_plus(0);
    rl2_err_t        err;
    char             zname[64];

    (void)state;
    zone_of("auto", zname, sizeof(zname));
    assert_int_equal(rl2_config_load_string(text, "t.conf", NULL, &p, &err),
                     RL2_OK);
    assert_int_equal(
        rl2_zone_open(zname, 1000, p->max_state_size, 0600, &zone, &err),
        RL2_OK);
    assert_int_equal(rl2_store_local_create(zone, &local, &err), RL2_OK);
    p->overrides = a;
    /* One admitted, then refusals until the second crosses "1/1min". */
    for (int i = 0; i < 3; i++) {
        rl2_verdict_init(&v);
        assert_int_equal(
            rl2_decide(p, NULL, 0, local, &req, RL2_PHASE_ALL, &now, &v, &err),
            RL2_OK);
        now.mono_us += 1000;
    }
    assert_int_equal(v.banned, 1);
    assert_string_equal(v.banned_target, "192.0.2.77");
    /* In Redis, and so, at its next sync, on the other host. */
    {
        redisReply *r =
            admin_cmd(admin, "HEXISTS %s %s", HASH, "ban\t192.0.2.77");

        assert_int_equal(r->integer, 1);
        freeReplyObject(r);
    }
    now.mono_us += SEC;
    assert_int_equal(rl2_overrides_redis_sync(b, &now, &err), RL2_OK);
    p->overrides = b;
    req.path = "/elsewhere";
    rl2_verdict_init(&v);
    assert_int_equal(
        rl2_decide(p, NULL, 0, local, &req, RL2_PHASE_ALL, &now, &v, &err),
        RL2_OK);
    assert_int_equal(v.refusal, RL2_REFUSAL_BAN);

    /* Its ban over (both tables still hold the ended entry), the client
     * offends again on host b: banned again, for twice as long, and in
     * Redis.  An ended entry once passed there for a ban in force. */
    now.wall_us += 11 * 60 * SEC;
    now.mono_us += 11 * 60 * SEC;
    req.path = "/";
    v.banned = 0;
    for (int i = 0; i < 3 && !v.banned; i++) {
        rl2_verdict_init(&v);
        assert_int_equal(
            rl2_decide(p, NULL, 0, local, &req, RL2_PHASE_ALL, &now, &v, &err),
            RL2_OK);
        now.mono_us += 1000;
    }
    assert_int_equal(v.banned, 1);
    assert_int_equal(v.banned_for_s, 20 * 60);
    {
        redisReply *r = admin_cmd(admin, "HGET %s %s", HASH, "ban\t192.0.2.77");
        char        want[64];

        snprintf(want, sizeof(want), "ban\t192.0.2.77\t-\t");
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_int_equal(strncmp(r->str, want, strlen(want)), 0);
        /* Its end: 20 minutes from the offence. */
        assert_true(strtoll(r->str + strlen(want), NULL, 10)
                    > now.wall_us + 19 * 60 * SEC);
        freeReplyObject(r);
    }

    p->overrides = NULL;
    rl2_store_destroy(local);
    rl2_zone_close(zone);
    rl2_zone_unlink(zname, &err);
    rl2_policy_free(p);
}

/* With Redis, an automatic ban this host cannot write to its state file
 * (a read-only /var/lib, as the packaged ratelimit2-fcgi sees it) is
 * made all the same: Redis and this host's table hold it, so it counts as
 * made (its alert, ratelimit2_bans_total).  It once counted as not made,
 * though every server refused the client. */
static void
test_automatic_ban_made_without_state_file(void **state)
{
    rl2_overrides_t *t = table("nosave");
    rl2_clock_t      now = now_plus(0);
    rl2_override_t   o = ban("192.0.2.88", now.wall_us + 600 * SEC, "auto");
    rl2_override_t   other, was;
    rl2_err_t        err;
    char             path[128], tmp[140];
    int              made = 0;

    (void)state;
    /* The table mirrors Redis as it is, one change made (a table behind
     * it, or an empty Redis's first change, which sets its epoch, is
     * followed by a sync, which leaves a failed save to the next). */
    other = ban("192.0.2.89", 0, "first");
    assert_int_equal(rl2_overrides_set(t, &other, &now, &was, &err), RL2_OK);
    assert_int_equal(rl2_overrides_redis_sync(t, &now, &err), RL2_OK);
    /* A directory where the state file's temporary copy goes: every
     * save fails. */
    state_of("nosave", path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_int_not_equal(rl2_overrides_ban_auto(t, &o, &now, &made, &err),
                         RL2_OK);
    assert_int_equal(made, 1);
    {
        redisReply *r =
            admin_cmd(admin, "HEXISTS %s %s", HASH, "ban\t192.0.2.88");

        assert_int_equal(r->integer, 1);
        freeReplyObject(r);
    }
    /* Not made: a ban the table already holds. */
    o.created_us += 1;
    assert_int_equal(rl2_overrides_ban_auto(t, &o, &now, &made, &err), RL2_OK);
    assert_int_equal(made, 0);
    assert_int_equal(rmdir(tmp), 0);
}

/* Through the backend: the table uses the Redis store's connection of
 * this thread (no connection of its own) and its circuit (no sync while
 * it is open). */
static void
test_backend_lends_connections_and_circuit(void **state)
{
    rl2_backend_conf_t bc;
    rl2_backend_t     *be;
    rl2_overrides_t   *t = table_local("be"), *b = table("b");
    rl2_override_t     o = ban("203.0.113.50", 0, "via backend");
    rl2_circuit_t     *circuit;
    rl2_layer_t        layer;
    rl2_limit_t *limit = limit_of(pol, "l", RL2_ALGO_FIXED_WINDOW, 10, MINUTE);
    rl2_clock_t  now = now_plus(0);
    rl2_err_t    err;
    char         name[96];
    long long    clients, mgets;
    const char  *suffix[] = { "", ".circuit", ".vlog", ".metrics", ".alert" };

    (void)state;
    rl2_backend_conf_init(&bc);
    snprintf(bc.zone_name, sizeof(bc.zone_name), "%s", zones[0]);
    bc.zone_entries = 1000;
    bc.redis_enabled = 1;
    bc.redis = rconf;
    bc.alerts_enabled = 0;
    bc.metrics_enabled = 0;
    bc.vlog.disabled = 1;
    assert_int_equal(rl2_backend_open(&bc, &be, &err), RL2_OK);
    assert_int_equal(rl2_backend_overrides_attach(be, t, &err), RL2_OK);
    /* the store's connection on this thread, then the table's calls */
    mk_layer(&layer, limit, "203.0.113.1");
    must_apply(rl2_backend_store(be), &layer, 1);
    clients = connected_clients();
    assert_int_equal(rl2_overrides_set(t, &o, &now, NULL, &err), RL2_OK);
    must_sync(t);
    assert_int_equal(connected_clients(), clients);
    must_sync(b);
    assert_non_null(banned(b, "203.0.113.50"));

    /* the circuit opens: the sync does not ask Redis */
    snprintf(name, sizeof(name), "%s.circuit", zones[0]);
    assert_int_equal(rl2_circuit_open(name, &bc.circuit, 0600, &circuit, &err),
                     RL2_OK);
    rl2_circuit_failure(circuit, RL2_ROUTE_PRIMARY, mono_us());
    assert_int_equal(rl2_circuit_state(circuit), RL2_CIRCUIT_OPEN);
    mgets = cmd_calls(admin, "mget");
    assert_int_equal(rl2_overrides_redis_sync(t, &now, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "circuit is open"));
    assert_int_equal(cmd_calls(admin, "mget"), mgets);
    assert_non_null(banned(t, "203.0.113.50"));
    rl2_circuit_close(circuit);

    /* the table goes before the backend whose connections it borrows */
    tables_close();
    rl2_backend_close(be);
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        snprintf(name, sizeof(name), "%s%s", zones[0], suffix[i]);
        shm_unlink(name);
    }
}

/* The key's name is the redis option overrides_key: two fleets on one
 * Redis keep two tables.  A name that would break the hash tag is
 * refused. */
static void
test_overrides_key_option(void **state)
{
    rl2_backend_conf_t bc;
    rl2_redis_conf_t   other;
    rl2_overrides_t   *a, *b, *c;
    rl2_override_t     o = ban("192.0.2.200", 0, "app2 only");
    rl2_err_t          err;
    redisReply        *r;

    (void)state;
    rl2_backend_conf_init(&bc);
    bc.redis = rconf;
    bc.redis_enabled = 1;
    assert_int_equal(
        rl2_store_opt_redis_item(&bc, "overrides_key=app2:ovr", &err), RL2_OK);
    other = bc.redis;
    a = table_on("a", &other);
    b = table_on("b", &other);
    c = table("c"); /* the default key */
    must_set(a, &o);
    r = admin_cmd(admin, "HLEN {app2:ovr}");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    assert_int_equal(redis_hlen(admin), 0);
    must_sync(b);
    must_sync(c);
    assert_non_null(banned(b, "192.0.2.200"));
    assert_null(banned(c, "192.0.2.200"));

    /* Refused as an option, before the whole connection is checked. */
    assert_int_equal(rl2_store_opt_redis_item(&bc, "overrides_key=a{b}", &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "overrides_key"));
}

/* ---- Sentinel ---------------------------------------------------------- */

/* A sentinel on a free port watching srv as master "m". */
static pid_t
sentinel_start(int *port)
{
    char    conf[128], portarg[16];
    FILE   *f;
    pid_t   pid;
    srv_t   probe;
    int64_t deadline = mono_us() + 10 * SEC;

    *port = free_port();
    snprintf(conf, sizeof(conf), "%s/sentinel.conf", dir);
    assert_non_null(f = fopen(conf, "w"));
    fprintf(f,
            "port %d\nbind 127.0.0.1\ndir %s\n"
            "sentinel monitor m 127.0.0.1 %d 1\n",
            *port, dir, srv.port);
    fclose(f);
    snprintf(portarg, sizeof(portarg), "%d", *port);
    if ((pid = fork()) == 0) {
        int fd = open("/dev/null", O_WRONLY);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("redis-server", "redis-server", conf, "--sentinel", NULL);
        _exit(127);
    }
    memset(&probe, 0, sizeof(probe));
    probe.port = *port;
    while (!srv_answers(&probe)) {
        if (mono_us() > deadline) {
            kill(pid, SIGKILL);
            fail_msg("redis-sentinel did not start on port %d", *port);
        }
        usleep(10000);
    }
    return pid;
}

static void
test_sentinel_master_shared_with_a_direct_host(void **state)
{
    rl2_redis_conf_t sc = rconf;
    rl2_overrides_t *a, *b;
    rl2_override_t   o = ban("192.0.2.123", 0, "through sentinel");
    rl2_clock_t      now = now_plus(0);
    char             spec[64];
    rl2_err_t        err;
    int              port;
    pid_t            pid = sentinel_start(&port);

    (void)state;
    snprintf(spec, sizeof(spec), "m@127.0.0.1:%d", port);
    assert_int_equal(rl2_redis_sentinel_parse(&sc, spec, &err), RL2_OK);
    a = table_on("a", &sc);
    b = table("b");
    must_set(a, &o);
    must_sync(b);
    assert_non_null(banned(b, "192.0.2.123"));
    assert_int_equal(rl2_overrides_remove(b, RL2_OVR_BAN, RL2_OVT_ADDR,
                                          "192.0.2.123", &now, NULL, &err),
                     RL2_OK);
    must_sync(a);
    assert_null(banned(a, "192.0.2.123"));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, tables_teardown)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_set_on_one_host_reaches_another),
        T(test_remove_on_one_host_reaches_another),
        T(test_replace_gives_what_redis_held),
        T(test_sync_due_once_a_second_per_host),
        T(test_expiry),
        T(test_target_with_a_tab_is_refused),
        T(test_redis_down_refuses_changes_mirror_stays),
        T(test_restarted_empty_gets_the_mirror_back),
        T(test_change_after_restart_before_any_sync),
        T(test_table_from_before_redis_offers_its_entries),
        T(test_state_file_remembers_the_mirror),
        T(test_unreadable_entries_are_skipped_and_counted),
        T(test_decision_sees_a_ban_from_another_host),
        T(test_automatic_ban_holds_on_another_host),
        T(test_automatic_ban_made_without_state_file),
        T(test_backend_lends_connections_and_circuit),
        T(test_overrides_key_option),
        T(test_sentinel_master_shared_with_a_direct_host),
    };

    setvbuf(stdout, NULL, _IOLBF, 0);
    return cmocka_run_group_tests(tests, group_setup, srv_group_teardown);
}
