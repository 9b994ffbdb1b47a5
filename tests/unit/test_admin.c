/*
 * test_admin.c -- the verbs of the runtime overrides and their HTTP form
 * (common/control/admin.c, admin_json.c): every verb through
 * rl2_admin_http() on a real table, what it set and what the audit file
 * says of it; every bad input answered 400 with nothing changed and no
 * audit line; 405 and 415; the list; the JSON reader's strictness.
 *
 * Every test has a zone name of its own ("/rl2test-PID-admN") and a
 * temporary directory for the state and audit files; both are removed
 * afterwards.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/admin.h"
#include "ratelimit2/config.h"
#include "control/control_internal.h"
#include "base/shm_obj_internal.h"
#include "redis/redis_internal.h"

#define WATCHDOG_S 60
/* A wall-clock time far ahead, so that what a test sets has not expired
 * by the real clock, which decides what a state file brings back. */
#define T0_US INT64_C(4102444800000000) /* 2100-01-01 */
#define S     RL2_US_PER_S
#define JSON  "application/json"

static const char policy_text[] =
    "hash_secret = \"test-secret\";\n"
    "tiers = [ \"free\", \"pro\", \"gold\" ];\n"
    "default_tier = \"free\";\n"
    "rules = (\n"
    "  { name = \"login\"; methods = \"POST\"; paths = [ \"/login\" ];\n"
    "    limits = ( { rate = \"5/min\"; } ); },\n"
    "  { name = \"api\"; paths = [ \"/api/**\" ];\n"
    "    limits = ( { rate = \"100/min\"; } ); }\n"
    ");\n"
    "default = { key = \"ip\"; limits = ( { rate = \"600/min\"; } ); };\n";

static rl2_policy_t    *policy;
static char             zone[64];
static char             shm_name[80];
static char             dir[64];
static char             state_path[128];
static char             audit_path[128];
static int              test_no;
static rl2_overrides_t *table;
static rl2_audit_t     *audit;
static rl2_admin_t      admin;
static char             answer[64 * 1024];

/* ---- fixtures ------------------------------------------------------------
 */

static int
group_setup(void **state)
{
    rl2_err_t err = { "" };

    (void)state;
    if (rl2_config_load_string(policy_text, "test.conf", NULL, &policy, &err)
        != RL2_OK) {
        fprintf(stderr, "policy: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    rl2_policy_free(policy);
    return 0;
}

static int
setup(void **state)
{
    rl2_audit_conf_t conf;
    rl2_err_t        err = { "" };

    (void)state;
    alarm(WATCHDOG_S);
    test_no++;
    snprintf(zone, sizeof(zone), "/rl2test-%ld-adm%d", (long)getpid(), test_no);
    snprintf(shm_name, sizeof(shm_name), "%s.overrides", zone);
    snprintf(dir, sizeof(dir), "/tmp/rl2adm.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(state_path, sizeof(state_path), "%s/state", dir);
    snprintf(audit_path, sizeof(audit_path), "%s/audit", dir);
    if (rl2_overrides_open(zone, state_path, 0600, &table, &err) != RL2_OK) {
        fail_msg("open %s: %s", zone, err.msg);
    }
    rl2_audit_conf_default(&conf);
    conf.path = audit_path;
    conf.syslog_socket = NULL;
    if (rl2_audit_open(&conf, &audit, &err) != RL2_OK) {
        fail_msg("audit: %s", err.msg);
    }
    admin.policy = policy;
    admin.table = table;
    admin.audit = audit;
    admin.author = "alice";
    admin.origin = RL2_AUDIT_ADMIN;
    return 0;
}

/* Remove dir and the files a test left in it. */
static void
remove_dir(const char *path)
{
    DIR           *d = opendir(path);
    struct dirent *e;
    char           sub[512];

    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            unlink(sub);
        }
    }
    closedir(d);
    rmdir(path);
}

static int
teardown(void **state)
{
    (void)state;
    alarm(0);
    rl2_audit_close(audit);
    rl2_overrides_close(table);
    rl2_shm_obj_unlink(shm_name, NULL);
    remove_dir(dir);
    return 0;
}

/* ---- helpers -------------------------------------------------------------
 */

static rl2_clock_t
at(int64_t wall_us)
{
    rl2_clock_t c = { .mono_us = wall_us - T0_US + 1000 * S,
                      .wall_us = wall_us };

    return c;
}

/* POST body as JSON at T0; the status. */
static int
post(const char *body)
{
    rl2_clock_t now = at(T0_US);

    return rl2_admin_http(&admin, "POST", JSON, body, strlen(body), &now,
                          answer, sizeof(answer));
}

/* POST body and expect status, and every one of the NULL-ended strings in
 * the answer. */
static void
expect(const char *body, int status, ...)
{
    va_list     ap;
    const char *want;
    int         got = post(body);

    if (got != status) {
        fail_msg("%s: %d, not %d: %s", body, got, status, answer);
    }
    va_start(ap, status);
    while ((want = va_arg(ap, const char *)) != NULL) {
        if (strstr(answer, want) == NULL) {
            va_end(ap);
            fail_msg("%s: no %s in %s", body, want, answer);
        }
    }
    va_end(ap);
}

static size_t
entries(void)
{
    rl2_clock_t now = at(T0_US);

    return rl2_overrides_list(table, 0, &now, NULL, 0);
}

/* The one entry of kind and target, or fail. */
static rl2_override_t
entry(rl2_ovr_kind_t kind, const char *target)
{
    rl2_override_t all[32];
    rl2_clock_t    now = at(T0_US);
    size_t         n = rl2_overrides_list(table, kind, &now, all, 32);

    for (size_t i = 0; i < n && i < 32; i++) {
        if (strcmp(all[i].target, target) == 0) {
            return all[i];
        }
    }
    fail_msg("no %s %s", rl2_ovr_kind_name(kind), target);
    return all[0];
}

static int
each_entry(const rl2_audit_entry_t *e, void *ctx)
{
    rl2_audit_entry_t *last = ctx;

    *last = *e;
    return 0;
}

/* How many lines the audit file holds; *last gets the last one. */
static size_t
audit_lines(rl2_audit_entry_t *last)
{
    rl2_audit_entry_t e;
    rl2_err_t         err = { "" };
    size_t            n = 0;

    memset(&e, 0, sizeof(e));
    if (rl2_audit_read(audit_path, each_entry, &e, &n, &err) != RL2_OK) {
        fail_msg("audit: %s", err.msg);
    }
    if (last != NULL) {
        *last = e;
    }
    return n;
}

static off_t
audit_size(void)
{
    struct stat st;

    assert_int_equal(stat(audit_path, &st), 0);
    return st.st_size;
}

/* ---- every verb ----------------------------------------------------------
 */

static void
test_ban_and_unban(void **state)
{
    rl2_audit_entry_t e;
    rl2_override_t    o;

    (void)state;
    expect("{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":\"10min\","
           "\"reason\":\"INC-1\"}",
           200, "\"ok\":true", "\"verb\":\"ban\"", "\"target\":\"192.0.2.9\"",
           "\"changed\":true", "\"before\":null",
           "\"after\":{\"value\":\"banned\",\"expires\":\"2100-01-01T00:10:00."
           "000000Z\",\"reason\":\"INC-1\",\"author\":\"alice\"}",
           NULL);
    o = entry(RL2_OVR_BAN, "192.0.2.9");
    assert_int_equal(o.expires_us, T0_US + 600 * S);
    assert_string_equal(o.author, "alice");
    assert_string_equal(o.reason, "INC-1");
    /* A network, written canonical. */
    expect("{\"verb\":\"ban\",\"target\":\"2001:db8::1/48\"}", 200,
           "\"target\":\"2001:db8::/48\"", "\"expires\":null", NULL);
    assert_int_equal(audit_lines(NULL), 2);
    expect("{\"verb\":\"unban\",\"target\":\"192.0.2.9\",\"reason\":\"ok\"}",
           200, "\"verb\":\"unban\"", "\"changed\":true",
           "\"before\":{\"value\":\"banned\"", "\"after\":null", NULL);
    assert_int_equal(audit_lines(&e), 3);
    assert_string_equal(e.verb, "unban");
    assert_int_equal(e.after.kind, 0);
    assert_int_equal(e.before.kind, RL2_OVR_BAN);
    /* Again: nothing to remove, no change, no line. */
    expect("{\"verb\":\"unban\",\"target\":\"192.0.2.9\"}", 200,
           "\"changed\":false", "\"before\":null", "\"after\":null", NULL);
    assert_int_equal(audit_lines(NULL), 3);
    assert_int_equal(entries(), 1);
}

static void
test_allow_and_disallow(void **state)
{
    (void)state;
    expect("{\"verb\":\"allow\",\"target\":\"user:alice\",\"ttl\":\"4h\"}", 200,
           "\"verb\":\"allow\"", "\"target\":\"user:alice\"",
           "\"value\":\"allowed\"", NULL);
    assert_int_equal(entry(RL2_OVR_ALLOW, "user:alice").expires_us,
                     T0_US + 4 * 3600 * S);
    /* An API key: its hash is what is kept. */
    expect("{\"verb\":\"allow\",\"target\":\"key:K-123\"}", 200,
           "\"target\":\"key#", NULL);
    expect("{\"verb\":\"disallow\",\"target\":\"user:alice\"}", 200,
           "\"verb\":\"disallow\"", "\"changed\":true", NULL);
    assert_int_equal(entries(), 1);
    assert_int_equal(audit_lines(NULL), 3);
}

static void
test_tier_and_untier(void **state)
{
    rl2_override_t o;

    (void)state;
    expect("{\"verb\":\"tier\",\"target\":\"user:bob\",\"tier\":\"gold\","
           "\"ttl\":\"7d\"}",
           200, "\"verb\":\"tier\"", "\"value\":\"gold\"", NULL);
    o = entry(RL2_OVR_TIER, "user:bob");
    assert_string_equal(o.tier, "gold");
    assert_int_equal(o.expires_us, T0_US + 7 * 86400 * S);
    expect("{\"verb\":\"untier\",\"target\":\"user:bob\"}", 200,
           "\"verb\":\"untier\"", "\"before\":{\"value\":\"gold\"", NULL);
    assert_int_equal(entries(), 0);
    assert_int_equal(audit_lines(NULL), 2);
}

static void
test_boost_and_unboost(void **state)
{
    (void)state;
    /* The factor as a JSON number and as a string. */
    expect("{\"verb\":\"boost\",\"target\":\"rule:api\",\"factor\":2}", 200,
           "\"value\":\"x2\"", NULL);
    assert_int_equal(entry(RL2_OVR_BOOST, "rule:api").factor_ppm, 2000000);
    expect("{\"verb\":\"boost\",\"target\":\"tier:free\",\"factor\":\"0.5\"}",
           200, "\"value\":\"x0.5\"", NULL);
    expect("{\"verb\":\"boost\",\"target\":\"*\",\"factor\":1.25}", 200,
           "\"target\":\"*\"", NULL);
    assert_int_equal(entry(RL2_OVR_BOOST, "*").factor_ppm, 1250000);
    expect("{\"verb\":\"unboost\",\"target\":\"rule:api\"}", 200,
           "\"verb\":\"unboost\"", "\"changed\":true", NULL);
    assert_int_equal(entries(), 2);
    assert_int_equal(audit_lines(NULL), 4);
}

static void
test_mode_and_clear(void **state)
{
    rl2_audit_entry_t e;

    (void)state;
    expect("{\"verb\":\"mode\",\"rule\":\"api\",\"mode\":\"dry_run\"}", 200,
           "\"verb\":\"mode\"", "\"target\":\"rule:api\"",
           "\"value\":\"dry_run\"", NULL);
    assert_int_equal(entry(RL2_OVR_MODE, "rule:api").mode, RL2_MODE_DRY_RUN);
    /* "rule:NAME" is taken as well; clear removes. */
    expect("{\"verb\":\"mode\",\"rule\":\"rule:api\",\"clear\":true}", 200,
           "\"verb\":\"mode-clear\"", "\"changed\":true", NULL);
    assert_int_equal(entries(), 0);
    assert_int_equal(audit_lines(&e), 2);
    assert_string_equal(e.verb, "mode-clear");
}

static void
test_emergency_on_and_off(void **state)
{
    rl2_audit_entry_t e;

    (void)state;
    expect("{\"verb\":\"emergency\",\"state\":\"on\",\"factor\":\"0.5\","
           "\"ttl\":\"1h\",\"reason\":\"flood\"}",
           200, "\"verb\":\"emergency-on\"", "\"target\":\"*\"",
           "\"value\":\"x0.5\"", NULL);
    assert_int_equal(entry(RL2_OVR_EMERGENCY, "*").factor_ppm, 500000);
    expect("{\"verb\":\"emergency\",\"state\":\"on\","
           "\"allow_list_only\":true}",
           200, "\"value\":\"allow-list-only\"",
           "\"before\":{\"value\":"
           "\"x0.5\"",
           NULL);
    assert_int_equal(entry(RL2_OVR_EMERGENCY, "*").factor_ppm, 0);
    expect("{\"verb\":\"emergency\",\"state\":\"off\"}", 200,
           "\"verb\":\"emergency-off\"", "\"after\":null", NULL);
    assert_int_equal(entries(), 0);
    assert_int_equal(audit_lines(&e), 3);
    assert_string_equal(e.verb, "emergency-off");
}

/* ---- who ------------------------------------------------------------------
 */

static void
test_author_and_origin_are_recorded(void **state)
{
    rl2_audit_entry_t e;

    (void)state;
    admin.author = "address 198.51.100.7";
    expect("{\"verb\":\"ban\",\"target\":\"203.0.113.0/24\",\"reason\":"
           "\"caf\\u00e9 \\ud83d\\ude00\"}",
           200, "\"author\":\"address 198.51.100.7\"", NULL);
    assert_int_equal(audit_lines(&e), 1);
    assert_string_equal(e.author, "address 198.51.100.7");
    assert_int_equal(e.origin, RL2_AUDIT_ADMIN);
    assert_string_equal(e.verb, "ban");
    assert_string_equal(e.target, "203.0.113.0/24");
    /* \u escapes and a surrogate pair, decoded to UTF-8. */
    assert_string_equal(e.reason, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    assert_string_equal(entry(RL2_OVR_BAN, "203.0.113.0/24").author,
                        "address 198.51.100.7");
}

/* ---- what is refused -----------------------------------------------------
 */

static void
test_bad_inputs_are_400_and_change_nothing(void **state)
{
    static const struct {
        const char *body;
        const char *says;
    } bad[] = {
        { "{\"verb\":\"bann\",\"target\":\"192.0.2.9\"}", "unknown verb" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":\"10 parsecs\"}",
          "ttl" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":\"0s\"}", "ttl" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.0/33\"}", "192.0.2.0/33" },
        { "{\"verb\":\"ban\",\"target\":\"300.1.2.3\"}", "300.1.2.3" },
        { "{\"verb\":\"boost\",\"target\":\"rule:nope\",\"factor\":2}",
          "nope" },
        { "{\"verb\":\"mode\",\"rule\":\"nope\",\"mode\":\"off\"}", "nope" },
        { "{\"verb\":\"tier\",\"target\":\"user:bob\",\"tier\":\"platinum\"}",
          "no tier \\\"platinum\\\"" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":\"x\"}", "" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":5000}", "" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":1e2}", "" },
        { "{\"verb\":\"emergency\",\"state\":\"on\",\"factor\":0}", "" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"target\":\"192.0.2."
          "8\"}",
          "twice" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"tier\":\"gold\"}",
          "ban takes no \\\"tier\\\"" },
        { "{\"verb\":\"unban\",\"target\":\"192.0.2.9\",\"ttl\":\"1h\"}",
          "unban takes no \\\"ttl\\\"" },
        { "{\"verb\":\"mode\",\"rule\":\"api\",\"clear\":true,\"ttl\":\"1h\"}",
          "mode with clear takes no \\\"ttl\\\"" },
        { "{\"verb\":\"emergency\",\"state\":\"off\",\"factor\":2}",
          "emergency off takes no \\\"factor\\\"" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"color\":\"red\"}",
          "unknown member" },
        { "{\"verb\":\"ban\",\"target\":192}", "must be a string" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":60}",
          "must be a string" },
        { "{\"verb\":\"mode\",\"rule\":\"api\",\"clear\":\"yes\"}",
          "true or false" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":true}",
          "a string or a number" },
        { "{\"verb\":[\"ban\"]}", "no object or array" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\"} x", "after the object" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\"}{}", "after the object" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",}", "a member's name" },
        { "{\"verb\" \"ban\",\"target\":\"192.0.2.9\"}", "':'" },
        { "{\"verb\":\"ban\" \"target\":\"192.0.2.9\"}", "',' or '}'" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\"", "',' or '}'" },
        { "[\"ban\"]", "one JSON object" },
        { "", "one JSON object" },
        { "{\"verb\":\"ban\",\"target\":\"\xc0\xaf\"}", "UTF-8" },
        { "{\"verb\":\"ban\",\"target\":\"\xed\xa0\x80\"}", "UTF-8" },
        { "{\"verb\":\"ban\",\"target\":\"\xe2\x82\"}", "UTF-8" },
        { "{\"verb\":\"ban\",\"target\":\"a\tb\"}", "control byte" },
        { "{\"verb\":\"ban\",\"target\":\"\\x41\"}", "escape" },
        { "{\"verb\":\"ban\",\"target\":\"\\ud800\"}", "surrogate" },
        { "{\"verb\":\"ban\",\"target\":\"\\udc00\\ud800\"}", "surrogate" },
        { "{\"verb\":\"ban\",\"target\":\"\\u12\"}", "four hex" },
        { "{\"verb\":\"ban\",\"target\":\"\\u0000\"}", "u0000" },
        /* A name given twice in two spellings is one name twice. */
        { "{\"verb\":\"unban\",\"ver\\u0062\":\"ban\",\"target\":\"192."
          "0.2.9\"}",
          "twice" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":1e400}", "" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":-0}", "" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":-2}", "" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":\"0x10\"}", "" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":2.0000001}", "" },
        { "{\"verb\":\"boost\",\"target\":\"*\",\"factor\":"
          "99999999999999999999999}",
          "" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":\"-1h\"}",
          "ttl" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":"
          "\"99999999999999999999s\"}",
          "ttl" },
        /* Within 64-bit µs, but now + ttl would not be. */
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":"
          "\"15250000w\"}",
          "ttl" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":"
          "\"36501d\"}",
          "ttl" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"reason\":"
          "\"a\\u001b[2Jb\"}",
          "control characters" },
        { "{\"verb\":\"ban\",\"target\":\"user:a\\tb\"}", "" },
        { "{\"verb\":\"ban\",\"target\":\"user:a\\u007fb\"}", "" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"reason\":\"a\\nb\"}",
          "control characters" },
        { "{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":01}", "" },
        { "{\"verb\":\"ban\",\"target\":tru}", "a value must be" },
        { "{\"verb\":\"ban\"}", "needs a target" },
        { "{\"target\":\"192.0.2.9\"}", "needs \\\"verb\\\"" },
        { "{\"verb\":\"tier\",\"target\":\"user:bob\"}", "tier name" },
        { "{\"verb\":\"emergency\",\"state\":\"maybe\"}", "\\\"on\\\"" },
        { "{\"verb\":\"emergency\",\"state\":\"on\"}", "one of them" },
        { "{\"verb\":\"emergency\",\"state\":\"on\",\"factor\":2,"
          "\"allow_list_only\":true}",
          "one of them" },
        { "{\"verb\":\"mode\",\"rule\":\"api\",\"mode\":\"off\","
          "\"clear\":true}",
          "not both" },
        { "{\"verb\":\"mode\",\"rule\":\"api\",\"mode\":\"loud\"}", "loud" },
        { "{\"verb\":\"overrides\",\"target\":\"*\"}", "no other member" },
        { "{\"verb\":\"ban\",\"target\":\"rule:api\"}", "" },
    };
    char *big;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        expect(bad[i].body, 400, "{\"ok\":false,\"error\":\"", bad[i].says,
               NULL);
    }
    /* One byte over the bound, whatever it holds. */
    big = malloc(RL2_ADMIN_BODY_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', RL2_ADMIN_BODY_MAX + 1);
    memcpy(big, "{\"verb\":\"ban\",\"target\":\"192.0.2.9\"}", 35);
    big[RL2_ADMIN_BODY_MAX + 1] = '\0';
    expect(big, 400, "over 8192 bytes", NULL);
    /* ... and at the bound, white space after the object is taken. */
    big[RL2_ADMIN_BODY_MAX] = '\0';
    expect(big, 200, "\"changed\":true", NULL);
    free(big);
    /* Only that last one changed anything. */
    assert_int_equal(entries(), 1);
    assert_int_equal(audit_lines(NULL), 1);
}

static void
test_a_400_writes_no_audit_line(void **state)
{
    (void)state;
    expect("{\"verb\":\"ban\",\"target\":\"192.0.2.9\"}", 200, NULL);
    off_t size = audit_size();

    expect("{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":\"forever\"}",
           400, NULL);
    expect("{\"verb\":\"unban\",\"target\":\"192.0.2.9\",\"bogus\":1}", 400,
           NULL);
    assert_int_equal(audit_size(), size);
    assert_int_equal(entries(), 1);
    assert_int_equal(entry(RL2_OVR_BAN, "192.0.2.9").expires_us, 0);
}

static void
test_method_and_media_type(void **state)
{
    static const char body[] = "{\"verb\":\"ban\",\"target\":\"192.0.2.9\"}";
    static const char *const refused[] = { NULL,
                                           "text/plain",
                                           "application/jsonx",
                                           "application/json; charset=latin1",
                                           "application/x-www-form-urlencoded",
                                           "" };
    static const char *const taken[] = {
        "application/json; charset=utf-8", "Application/JSON",
        " application/json ;charset=\"UTF-8\""
    };
    rl2_clock_t now = at(T0_US);

    (void)state;
    assert_int_equal(rl2_admin_http(&admin, "GET", JSON, body, strlen(body),
                                    &now, answer, sizeof(answer)),
                     405);
    assert_non_null(strstr(answer, "\"ok\":false"));
    assert_int_equal(rl2_admin_http(&admin, "post", JSON, body, strlen(body),
                                    &now, answer, sizeof(answer)),
                     405);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        assert_int_equal(rl2_admin_http(&admin, "POST", refused[i], body,
                                        strlen(body), &now, answer,
                                        sizeof(answer)),
                         415);
    }
    assert_int_equal(entries(), 0);
    assert_int_equal(audit_size(), 0);
    for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
        assert_int_equal(rl2_admin_http(&admin, "POST", taken[i], body,
                                        strlen(body), &now, answer,
                                        sizeof(answer)),
                         200);
    }
    /* Each one set the ban again: a change, recorded. */
    assert_int_equal(audit_lines(NULL), 3);
}

/* Without an audit file or a table, nothing is changed. */
static void
test_no_audit_refuses_changes(void **state)
{
    (void)state;
    admin.audit = NULL;
    expect("{\"verb\":\"ban\",\"target\":\"192.0.2.9\"}", 500, "audit file",
           "nothing was changed", NULL);
    assert_int_equal(entries(), 0);
    admin.audit = audit;
}

/* With a Redis side that cannot be reached: 503, and nothing anywhere. */
static void
test_redis_down_is_503_and_changes_nothing(void **state)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t          len = sizeof(sa);
    rl2_redis_conf_t   conf;
    rl2_err_t          err = { "" };
    int                fd = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    /* A loopback port nothing listens on: bound, then let go. */
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    rl2_redis_conf_init(&conf);
    snprintf(conf.host, sizeof(conf.host), "127.0.0.1");
    conf.port = ntohs(sa.sin_port);
    conf.connect_timeout_ms = 200;
    conf.command_timeout_ms = 200;
    if (rl2_overrides_redis_attach(table, &conf, &err) != RL2_OK) {
        fail_msg("attach: %s", err.msg);
    }
    expect("{\"verb\":\"ban\",\"target\":\"192.0.2.9\"}", 503,
           "{\"ok\":false,\"error\":\"", "nothing was changed", NULL);
    expect("{\"verb\":\"emergency\",\"state\":\"off\"}", 503, NULL);
    assert_int_equal(entries(), 0);
    assert_int_equal(audit_size(), 0);
}

/* ---- the list ------------------------------------------------------------
 */

static void
test_list(void **state)
{
    static const char list[] = "{\"verb\":\"overrides\"}";
    rl2_clock_t       now = at(T0_US);
    char              small[RL2_ADMIN_ANSWER_MIN];
    char              body[128];

    (void)state;
    expect("{\"verb\":\"overrides\"}", 200,
           "{\"ok\":true,\"verb\":\"overrides\",\"overrides\":[]}", NULL);
    expect("{\"verb\":\"ban\",\"target\":\"192.0.2.9\",\"ttl\":\"90s\"}", 200,
           NULL);
    expect("{\"verb\":\"tier\",\"target\":\"user:bob\",\"tier\":\"pro\","
           "\"reason\":\"paid\"}",
           200, NULL);
    expect("{\"verb\":\"overrides\"}", 200,
           "\"overrides\":[{\"kind\":\"ban\",\"target\":\"192.0.2.9\","
           "\"value\":\"banned\",\"expires\":\"2100-01-01T00:01:30.000000Z\","
           "\"seconds_left\":90,\"created\":\"2100-01-01T00:00:00.000000Z\","
           "\"author\":\"alice\",\"reason\":\"\"},{\"kind\":\"tier\","
           "\"target\":\"user:bob\",\"value\":\"pro\",\"expires\":null,"
           "\"seconds_left\":null",
           "\"reason\":\"paid\"}]}", NULL);
    assert_null(strstr(answer, "truncated"));
    /* The list changes nothing and records nothing. */
    assert_int_equal(audit_lines(NULL), 2);
    /* More than fits: cut at a whole entry, and said so. */
    for (int i = 0; i < 40; i++) {
        snprintf(body, sizeof(body),
                 "{\"verb\":\"ban\",\"target\":\"198.51.100.%d\"}", i);
        expect(body, 200, NULL);
    }
    assert_int_equal(rl2_admin_http(&admin, "POST", JSON, list, strlen(list),
                                    &now, small, sizeof(small)),
                     200);
    assert_true(strlen(small) < sizeof(small));
    assert_non_null(strstr(small, "},{\"kind\""));
    assert_non_null(strstr(small, "}],\"truncated\":true}\n"));
}

/* ---- the reader ----------------------------------------------------------
 */

static void
test_json_reader(void **state)
{
    rl2_json_object_t       *o = malloc(sizeof(*o));
    const rl2_json_member_t *m;
    rl2_err_t                err = { "" };
    static const char        text[] =
        " {\"s\" : \"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20ac\\uD83D\\uDE00\","
        "\"n\":-0.5e+3,\"t\":true,\"f\":false,\"z\":null,\"e\":\"\"}\r\n";

    (void)state;
    assert_non_null(o);
    assert_int_equal(rl2_json_object_read(text, strlen(text), o, &err), RL2_OK);
    assert_int_equal(o->n, 6);
    m = rl2_json_object_get(o, "s");
    assert_non_null(m);
    assert_int_equal(m->type, RL2_JSON_STRING);
    assert_string_equal(m->value, "a\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac"
                                  "\xf0\x9f\x98\x80");
    m = rl2_json_object_get(o, "n");
    assert_int_equal(m->type, RL2_JSON_NUMBER);
    assert_string_equal(m->value, "-0.5e+3");
    assert_int_equal(rl2_json_object_get(o, "t")->type, RL2_JSON_TRUE);
    assert_int_equal(rl2_json_object_get(o, "f")->type, RL2_JSON_FALSE);
    assert_int_equal(rl2_json_object_get(o, "z")->type, RL2_JSON_NULL);
    assert_string_equal(rl2_json_object_get(o, "e")->value, "");
    assert_null(rl2_json_object_get(o, "x"));
    assert_int_equal(rl2_json_object_read("{}", 2, o, &err), RL2_OK);
    assert_int_equal(o->n, 0);
    /* A NUL byte inside the text is a control byte like any other. */
    assert_int_equal(rl2_json_object_read("{\"a\":\"\0\"}", 8, o, &err),
                     RL2_ERR_INVALID);
    /* Numbers: RFC 8259's grammar only. */
    assert_int_equal(rl2_json_object_read("{\"a\":-}", 7, o, &err),
                     RL2_ERR_INVALID);
    assert_int_equal(rl2_json_object_read("{\"a\":1.}", 8, o, &err),
                     RL2_ERR_INVALID);
    assert_int_equal(rl2_json_object_read("{\"a\":.5}", 8, o, &err),
                     RL2_ERR_INVALID);
    assert_int_equal(rl2_json_object_read("{\"a\":1e}", 8, o, &err),
                     RL2_ERR_INVALID);
    assert_int_equal(rl2_json_object_read("{\"a\":+1}", 8, o, &err),
                     RL2_ERR_INVALID);
    /* Members: 16 at most. */
    char many[512];
    int  len = snprintf(many, sizeof(many), "{");

    for (int i = 0; i < RL2_JSON_MEMBERS_MAX + 1; i++) {
        len += snprintf(many + len, sizeof(many) - (size_t)len, "%s\"m%d\":%d",
                        i > 0 ? "," : "", i, i);
    }
    many[len++] = '}';
    assert_int_equal(rl2_json_object_read(many, (size_t)len, o, &err),
                     RL2_ERR_INVALID);
    assert_non_null(strstr(err.msg, "too many"));
    /* The worst case for the buffer: 8192 bytes of one string. */
    char *big = malloc(RL2_JSON_TEXT_MAX);

    assert_non_null(big);
    memset(big, 'a', RL2_JSON_TEXT_MAX);
    memcpy(big, "{\"a\":\"", 6);
    memcpy(big + RL2_JSON_TEXT_MAX - 2, "\"}", 2);
    assert_int_equal(rl2_json_object_read(big, RL2_JSON_TEXT_MAX, o, &err),
                     RL2_OK);
    assert_int_equal(strlen(rl2_json_object_get(o, "a")->value),
                     RL2_JSON_TEXT_MAX - 8);
    assert_int_equal(rl2_json_object_read(big, RL2_JSON_TEXT_MAX + 1, o, &err),
                     RL2_ERR_INVALID);
    free(big);
    free(o);
}

/* ---- the reading ratelimit2ctl shares ------------------------------------
 */

static void
test_read_without_policy(void **state)
{
    rl2_admin_args_t   a = { .verb = "ban", .target = "192.0.2.9" };
    rl2_admin_change_t ch;
    rl2_err_t          err = { "" };

    (void)state;
    assert_int_equal(rl2_admin_read(NULL, &a, &ch, &err), RL2_OK);
    assert_string_equal(ch.o.target, "192.0.2.9");
    a.target = "rule:api";
    assert_int_equal(rl2_admin_read(NULL, &a, &ch, &err), RL2_ERR_INVALID);
    assert_non_null(strstr(err.msg, "needs the policy"));
    a.verb = "tier";
    a.target = "user:bob";
    a.tier = "pro";
    assert_int_equal(rl2_admin_read(NULL, &a, &ch, &err), RL2_ERR_INVALID);
    assert_int_equal(rl2_admin_read(policy, &a, &ch, &err), RL2_OK);
    assert_string_equal(ch.o.tier, "pro");
    a.verb = "mode";
    a.target = "api";
    a.tier = NULL;
    a.clear = 1;
    assert_int_equal(rl2_admin_takes(&a),
                     RL2_ADMIN_TAKES_REASON | RL2_ADMIN_TAKES_CLEAR);
    assert_int_equal(rl2_admin_read(policy, &a, &ch, &err), RL2_OK);
    assert_true(ch.remove);
    assert_string_equal(ch.verb, "mode-clear");
}

/* The author is the front end's (Apache's r->user, which an auth module
 * may have taken as the client typed it): one with a control byte would
 * forge a line in ratelimit2ctl overrides and audit, which print it as
 * it is; one named as the automatic bans are would be listed as theirs.
 * Refused, 400, nothing set and nothing in the audit file; a name of printable
 * UTF-8 is taken. */
static void
test_author_with_control_bytes_refused(void **state)
{
    static const char *const bad[] = {
        "mallory\n2100-01-01T00:00:00.000000Z bob (admin) unban 192.0.2.9",
        "eve\r",
        "tab\tuser",
        "esc\x1b[2J",
        "del\x7f",
        /* the automatic bans' name: an entry would pass for theirs */
        RL2_OVR_AUTO_AUTHOR,
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        admin.author = bad[i];
        expect("{\"verb\":\"ban\",\"target\":\"192.0.2.9\"}", 400,
               "\"ok\":false", "author", NULL);
    }
    assert_int_equal(entries(), 0);
    assert_int_equal(audit_size(), 0);
    admin.author = "j\xc3\xbcrgen";
    expect("{\"verb\":\"ban\",\"target\":\"192.0.2.9\"}", 200, NULL);
    assert_string_equal(entry(RL2_OVR_BAN, "192.0.2.9").author,
                        "j\xc3\xbcrgen");
    assert_int_equal(audit_lines(NULL), 1);
}

/* An entry whose every text is at its longest and escapes to six bytes
 * a byte ("\\ufffd" for bytes that are not UTF-8, which ratelimit2ctl's
 * arguments and an auth module's user name may hold): it is listed
 * whole, not taken for a list over the answer's size, which would hide
 * it and every entry after it. */
static void
test_list_longest_entry(void **state)
{
    rl2_override_t o, before;
    rl2_clock_t    now = at(T0_US);
    rl2_err_t      err = { "" };
    char           target[RL2_OVR_TARGET_MAX];

    (void)state;
    memset(&o, 0, sizeof(o));
    memcpy(target, "user:", 5);
    memset(target + 5, 0xff, sizeof(target) - 6);
    target[sizeof(target) - 1] = '\0';
    assert_int_equal(rl2_override_target(policy, RL2_OVR_BAN, target, &o, &err),
                     RL2_OK);
    memset(o.reason, 0xff, sizeof(o.reason) - 1);
    memset(o.author, 0xff, sizeof(o.author) - 1);
    o.created_us = T0_US;
    o.expires_us = T0_US + 3600 * S;
    assert_int_equal(rl2_overrides_set(table, &o, &now, &before, &err), RL2_OK);
    expect("{\"verb\":\"ban\",\"target\":\"192.0.2.9\"}", 200, NULL);
    expect("{\"verb\":\"overrides\"}", 200, "\"target\":\"192.0.2.9\"",
           "\"target\":\"user:\\ufffd", NULL);
    assert_null(strstr(answer, "truncated"));
}

/* ---- one process, two threads ---------------------------------------- */

#define RACE_N 100

/* RACE_N automatic bans of 198.51.100.0..99 (the abuse policy's path). */
static void *
race_auto(void *arg)
{
    rl2_clock_t now = at(T0_US);
    rl2_err_t   err = { "" };

    (void)arg;
    for (int i = 0; i < RACE_N; i++) {
        rl2_override_t o;
        char           target[32];
        int            made;

        memset(&o, 0, sizeof(o));
        snprintf(target, sizeof(target), "198.51.100.%d", i);
        if (rl2_override_target(policy, RL2_OVR_BAN, target, &o, &err)
            != RL2_OK) {
            return (void *)1;
        }
        snprintf(o.author, sizeof(o.author), "%s", RL2_OVR_AUTO_AUTHOR);
        snprintf(o.reason, sizeof(o.reason), "rule login");
        o.created_us = now.wall_us;
        o.expires_us = now.wall_us + 600 * S;
        /* A ban never waits for the writers' lock: while an admin change
         * holds it, "busy", and the next offence bans (here: again). */
        for (int tries = 0;; tries++) {
            rl2_status_t st =
                rl2_overrides_ban_auto(table, &o, &now, &made, &err);

            if (st == RL2_OK && made) {
                break;
            }
            if (st != RL2_ERR_STORE || strstr(err.msg, "busy") == NULL
                || tries == 100000) {
                fprintf(stderr, "automatic ban %d: %s\n", i, err.msg);
                return (void *)1;
            }
            usleep(100);
        }
    }
    return NULL;
}

/* An Apache child's threads: automatic bans in one, admin changes in
 * another, one table, one audit file (two descriptors, O_APPEND).  Every
 * change is in the table and is one whole line of the file (a ban that
 * found the lock taken said "busy" and was made again). */
static void
test_admin_beside_automatic_bans(void **state)
{
    rl2_audit_conf_t ac;
    rl2_err_t        err = { "" };
    pthread_t        th;
    void            *failed;
    char             body[96];
    size_t           n = 0;

    (void)state;
    rl2_audit_conf_default(&ac);
    ac.path = audit_path;
    ac.syslog_socket = NULL;
    assert_int_equal(rl2_overrides_audit_attach(table, &ac, &err), RL2_OK);
    assert_int_equal(pthread_create(&th, NULL, race_auto, NULL), 0);
    for (int i = 0; i < RACE_N; i++) {
        snprintf(body, sizeof(body),
                 "{\"verb\":\"ban\",\"target\":\"203.0.113.%d\"}", i);
        expect(body, 200, NULL);
    }
    assert_int_equal(pthread_join(th, &failed), 0);
    assert_null(failed);
    assert_int_equal(entries(), 2 * RACE_N);
    /* rl2_audit_read refuses a line that is not one whole entry. */
    assert_int_equal(rl2_audit_read(audit_path, NULL, NULL, &n, &err), RL2_OK);
    assert_int_equal(n, 2 * RACE_N);
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_ban_and_unban),
        T(test_author_with_control_bytes_refused),
        T(test_allow_and_disallow),
        T(test_tier_and_untier),
        T(test_boost_and_unboost),
        T(test_mode_and_clear),
        T(test_emergency_on_and_off),
        T(test_author_and_origin_are_recorded),
        T(test_bad_inputs_are_400_and_change_nothing),
        T(test_a_400_writes_no_audit_line),
        T(test_method_and_media_type),
        T(test_no_audit_refuses_changes),
        T(test_redis_down_is_503_and_changes_nothing),
        T(test_list),
        T(test_list_longest_entry),
        T(test_admin_beside_automatic_bans),
        T(test_json_reader),
        T(test_read_without_policy),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
