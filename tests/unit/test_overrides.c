/*
 * test_overrides.c -- the runtime override table (common/control/):
 * targets as operators write them and their canonical form; set, replace,
 * remove and list with what each change replaced; expiry; the state file
 * (round trip, a damaged line, a save that fails and leaves the table as
 * it was); address lookups by longest prefix, 10,000 bans included;
 * factors, rule modes, and the two counters a request reads first; what
 * the status page and the metrics read: bans by origin, the newest
 * entries of one origin, an automatic ban's rule.
 *
 * Every test has a zone name of its own ("/rl2test-PID-ovrN") and a
 * temporary directory for its state file; both are removed afterwards.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

#include "ratelimit2/config.h"
#include "ratelimit2/overrides.h"
#include "control/control_internal.h"
#include "base/base_internal.h"
#include "base/shm_obj_internal.h"

#define WATCHDOG_S 120
/* A wall-clock time far ahead, so that what a test sets has not expired
 * by the real clock, which decides what a state file brings back. */
#define T0_US INT64_C(4102444800000000) /* 2100-01-01 */
#define S     RL2_US_PER_S

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

static rl2_policy_t *policy;
static char          zone[64];
static char          shm_name[80];
static char          dir[64];
static char          state_path[128];
static int           test_no;

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
    (void)state;
    alarm(WATCHDOG_S);
    test_no++;
    snprintf(zone, sizeof(zone), "/rl2test-%ld-ovr%d", (long)getpid(), test_no);
    snprintf(shm_name, sizeof(shm_name), "%s.overrides", zone);
    snprintf(dir, sizeof(dir), "/tmp/rl2ovr.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(state_path, sizeof(state_path), "%s/state", dir);
    return 0;
}

/* Remove dir and what a test left in it (files and empty folders). */
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
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        if (unlink(sub) != 0) {
            remove_dir(sub);
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

static rl2_overrides_t *
open_table(const char *state_file)
{
    rl2_overrides_t *t = NULL;
    rl2_err_t        err = { "" };

    if (rl2_overrides_open(zone, state_file, 0600, &t, &err) != RL2_OK) {
        fail_msg("open %s: %s", zone, err.msg);
    }
    assert_non_null(t);
    return t;
}

/* An override of kind on target (parsed with the test policy), made at
 * T0, without an end. */
static rl2_override_t
ovr(rl2_ovr_kind_t kind, const char *target)
{
    rl2_override_t o;
    rl2_err_t      err = { "" };

    memset(&o, 0, sizeof(o));
    if (rl2_override_target(policy, kind, target, &o, &err) != RL2_OK) {
        fail_msg("target %s: %s", target, err.msg);
    }
    o.created_us = T0_US;
    snprintf(o.author, sizeof(o.author), "tester");
    return o;
}

static rl2_override_t
tier_ovr(const char *target, const char *tier)
{
    rl2_override_t o = ovr(RL2_OVR_TIER, target);

    snprintf(o.tier, sizeof(o.tier), "%s", tier);
    return o;
}

static rl2_override_t
boost_ovr(const char *target, uint32_t ppm)
{
    rl2_override_t o = ovr(RL2_OVR_BOOST, target);

    o.factor_ppm = ppm;
    return o;
}

static void
set_ok(rl2_overrides_t *t, const rl2_override_t *o, int64_t now_us,
       rl2_override_t *before)
{
    rl2_clock_t    now = at(now_us);
    rl2_override_t ignored;
    rl2_err_t      err = { "" };

    if (rl2_overrides_set(t, o, &now, before ? before : &ignored, &err)
        != RL2_OK) {
        fail_msg("set %s %s: %s", rl2_ovr_kind_name(o->kind), o->target,
                 err.msg);
    }
}

static rl2_override_t
remove_ok(rl2_overrides_t *t, rl2_ovr_kind_t kind, const char *target_text,
          int64_t now_us)
{
    rl2_override_t o = ovr(kind, target_text), before;
    rl2_clock_t    now = at(now_us);
    rl2_err_t      err = { "" };

    if (rl2_overrides_remove(t, kind, o.target_kind, o.target, &now, &before,
                             &err)
        != RL2_OK) {
        fail_msg("remove %s: %s", target_text, err.msg);
    }
    return before;
}

static size_t
count(rl2_overrides_t *t, rl2_ovr_kind_t kind, int64_t now_us)
{
    rl2_clock_t now = at(now_us);

    return rl2_overrides_list(t, kind, &now, NULL, 0);
}

/* The entry of kind on target as listed, or NULL. */
static const rl2_override_t *
listed(rl2_overrides_t *t, rl2_ovr_kind_t kind, const char *target,
       int64_t now_us)
{
    static rl2_override_t all[64];
    rl2_clock_t           now = at(now_us);
    size_t                n = rl2_overrides_list(t, kind, &now, all, 64);

    for (size_t i = 0; i < n && i < 64; i++) {
        if (strcmp(all[i].target, target) == 0) {
            return &all[i];
        }
    }
    return NULL;
}

/* Who a request from `address` (and user, key hash) is, into w and
 * addr (16 bytes). */
static void
who(const char *address, const char *user, const char *key_hash,
    rl2_ovr_who_t *w, uint8_t *addr)
{
    memset(w, 0, sizeof(*w));
    memset(addr, 0, 16);
    if (address != NULL) {
        if (inet_pton(AF_INET, address, addr) == 1) {
            w->family = AF_INET;
        }
        else {
            assert_int_equal(inet_pton(AF_INET6, address, addr), 1);
            w->family = AF_INET6;
        }
    }
    w->addr = addr;
    w->user = user;
    w->key_hash = key_hash;
}

static rl2_ovr_client_t
client(rl2_overrides_t *t, const char *address, const char *user,
       const char *key_hash, int64_t now_us)
{
    rl2_ovr_who_t    w;
    uint8_t          addr[16];
    rl2_ovr_client_t out;

    who(address, user, key_hash, &w, addr);
    rl2_overrides_client(t, policy, &w, now_us, &out);
    return out;
}

static int
banned(rl2_overrides_t *t, const char *address, int64_t now_us)
{
    return client(t, address, NULL, NULL, now_us).banned;
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static char *
read_all(const char *path)
{
    static char buf[65536];
    FILE       *f = fopen(path, "r");
    size_t      n;

    if (f == NULL) {
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- targets -------------------------------------------------------------
 */

static void
target_is(rl2_ovr_kind_t kind, const char *text, rl2_ovr_target_t tk,
          const char *canonical)
{
    rl2_override_t o;
    rl2_err_t      err = { "" };

    memset(&o, 0, sizeof(o));
    if (rl2_override_target(policy, kind, text, &o, &err) != RL2_OK) {
        fail_msg("\"%s\" refused: %s", text, err.msg);
    }
    assert_int_equal(o.kind, kind);
    assert_int_equal(o.target_kind, tk);
    assert_string_equal(o.target, canonical);
}

/* Refused, with a message that contains `says`. */
static void
target_refused(const rl2_policy_t *p, rl2_ovr_kind_t kind, const char *text,
               const char *says)
{
    rl2_override_t o;
    rl2_err_t      err = { "" };

    memset(&o, 0, sizeof(o));
    if (rl2_override_target(p, kind, text, &o, &err) != RL2_ERR_INVALID) {
        fail_msg("\"%s\" should be refused for %s", text ? text : "(null)",
                 rl2_ovr_kind_name(kind) ? rl2_ovr_kind_name(kind) : "?");
    }
    if (strstr(err.msg, says) == NULL) {
        fail_msg("\"%s\": expected \"%s\" in \"%s\"", text ? text : "(null)",
                 says, err.msg);
    }
}

static void
test_target_addresses_are_canonical(void **state)
{
    (void)state;
    target_is(RL2_OVR_BAN, "192.0.2.9", RL2_OVT_ADDR, "192.0.2.9");
    target_is(RL2_OVR_BAN, "192.0.2.9/32", RL2_OVT_ADDR, "192.0.2.9");
    /* Host bits cleared. */
    target_is(RL2_OVR_BAN, "192.0.2.77/24", RL2_OVT_ADDR, "192.0.2.0/24");
    target_is(RL2_OVR_BAN, "10.200.3.4/9", RL2_OVT_ADDR, "10.128.0.0/9");
    target_is(RL2_OVR_BAN, "203.0.113.5/0", RL2_OVT_ADDR, "0.0.0.0/0");
    /* IPv6: one spelling, lower case, zeros compressed. */
    target_is(RL2_OVR_BAN, "2001:DB8:0:0::1", RL2_OVT_ADDR, "2001:db8::1");
    target_is(RL2_OVR_BAN, "2001:0db8:0001:ffff::/48", RL2_OVT_ADDR,
              "2001:db8:1::/48");
    target_is(RL2_OVR_ALLOW, "2001:db8:0:0:0:0:0:1/128", RL2_OVT_ADDR,
              "2001:db8::1");
    target_is(RL2_OVR_TIER, "2001:db8::abcd/64", RL2_OVT_ADDR, "2001:db8::/64");
    target_is(RL2_OVR_BAN, "::/0", RL2_OVT_ADDR, "::/0");

    target_refused(policy, RL2_OVR_BAN, "192.0.2.256", "not an address");
    target_refused(policy, RL2_OVR_BAN, "192.0.2.0/33", "not an address");
    target_refused(policy, RL2_OVR_BAN, "192.0.2.0/", "not an address");
    target_refused(policy, RL2_OVR_BAN, "192.0.2.0/24x", "not an address");
    target_refused(policy, RL2_OVR_BAN, "192.0.2.0/-1", "not an address");
    target_refused(policy, RL2_OVR_BAN, "2001:db8::/129", "not an address");
    target_refused(policy, RL2_OVR_BAN, "2001:db8:::1", "not an address");
    target_refused(policy, RL2_OVR_BAN, "example.com", "not an address");
    target_refused(policy, RL2_OVR_BAN, "", "no target");
    target_refused(policy, RL2_OVR_BAN, NULL, "no target");
}

static void
test_target_users_and_keys(void **state)
{
    char           h[17], other[17], k[32];
    rl2_hash_key_t key2;

    (void)state;
    target_is(RL2_OVR_BAN, "user:alice", RL2_OVT_USER, "user:alice");
    target_is(RL2_OVR_TIER, "user:Bob.O'Neil", RL2_OVT_USER, "user:Bob.O'Neil");
    target_refused(policy, RL2_OVR_BAN, "user:", "the name after ':'");
    /* A user name may hold spaces and any byte but a control character
     * (test_runtime has "Mallory X"). */
    target_is(RL2_OVR_BAN, "user:a b", RL2_OVT_USER, "user:a b");
    target_refused(policy, RL2_OVR_BAN, "user:a\tb", "the name after ':'");

    /* key:KEY is hashed with the policy's secret, as a request's key is
     * (identity.c), and never kept as written. */
    rl2_hash_id(&policy->hash_key, "sk_live_123", h);
    snprintf(k, sizeof(k), "key#%s", h);
    target_is(RL2_OVR_BAN, "key:sk_live_123", RL2_OVT_KEY, k);
    rl2_hash_key_from_secret("another-secret", &key2);
    rl2_hash_id(&key2, "sk_live_123", other);
    assert_string_not_equal(h, other);
    /* As listed, the hash names the same entry. */
    target_is(RL2_OVR_ALLOW, k, RL2_OVT_KEY, k);
    target_is(RL2_OVR_BAN, "key#0123456789abcdef", RL2_OVT_KEY,
              "key#0123456789abcdef");
    target_refused(policy, RL2_OVR_BAN, "key#0123456789ABCDEF", "16 hex");
    target_refused(policy, RL2_OVR_BAN, "key#0123456789abcde", "16 hex");
    target_refused(policy, RL2_OVR_BAN, "key#0123456789abcdef0", "16 hex");
    target_refused(policy, RL2_OVR_BAN, "key#sk_live_123", "16 hex");
    target_refused(policy, RL2_OVR_BAN, "key:", "the name after ':'");
    /* Without the policy there is no secret to hash with. */
    target_refused(NULL, RL2_OVR_BAN, "key:sk_live_123", "need the policy");
}

static void
test_target_rules_and_tiers_are_checked_against_the_policy(void **state)
{
    (void)state;
    target_is(RL2_OVR_BOOST, "rule:login", RL2_OVT_RULE, "rule:login");
    target_is(RL2_OVR_BOOST, "rule:default", RL2_OVT_RULE, "rule:default");
    target_is(RL2_OVR_MODE, "rule:api", RL2_OVT_RULE, "rule:api");
    target_is(RL2_OVR_BOOST, "tier:gold", RL2_OVT_TIER, "tier:gold");
    target_is(RL2_OVR_BOOST, "*", RL2_OVT_ALL, "*");
    target_is(RL2_OVR_EMERGENCY, "*", RL2_OVT_ALL, "*");
    target_refused(policy, RL2_OVR_BOOST, "rule:nope", "no rule \"nope\"");
    target_refused(policy, RL2_OVR_MODE, "rule:Login", "no rule \"Login\"");
    target_refused(policy, RL2_OVR_BOOST, "tier:platinum",
                   "no tier \"platinum\"");
    target_refused(policy, RL2_OVR_BOOST, "group:x", "not an address");
    /* Without a policy, names are taken as written. */
    {
        rl2_override_t o;
        rl2_err_t      err = { "" };

        memset(&o, 0, sizeof(o));
        assert_int_equal(
            rl2_override_target(NULL, RL2_OVR_BOOST, "rule:any", &o, &err),
            RL2_OK);
        assert_string_equal(o.target, "rule:any");
    }
}

static void
test_target_wrong_for_the_kind_is_refused(void **state)
{
    static const char *const client_targets[] = { "192.0.2.1", "user:alice",
                                                  "key#0123456789abcdef" };
    static const char *const scope_targets[] = { "rule:login", "tier:pro",
                                                 "*" };

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        target_refused(policy, RL2_OVR_BOOST, client_targets[i],
                       "boost does not take");
        target_refused(policy, RL2_OVR_MODE, client_targets[i],
                       "mode does not take");
        target_refused(policy, RL2_OVR_EMERGENCY, client_targets[i],
                       "emergency does not take");
        target_refused(policy, RL2_OVR_BAN, scope_targets[i],
                       "ban does not take");
        target_refused(policy, RL2_OVR_ALLOW, scope_targets[i],
                       "allow does not take");
        target_refused(policy, RL2_OVR_TIER, scope_targets[i],
                       "tier does not take");
    }
    target_refused(policy, RL2_OVR_MODE, "tier:pro", "mode does not take");
    target_refused(policy, RL2_OVR_MODE, "*", "mode does not take");
    target_refused(policy, RL2_OVR_EMERGENCY, "rule:login",
                   "emergency does not take");
    target_refused(policy, 0, "192.0.2.1", "does not take");
    target_refused(policy, RL2_OVR_KINDS, "192.0.2.1", "does not take");
}

static void
test_kind_names(void **state)
{
    (void)state;
    for (int k = 1; k < RL2_OVR_KINDS; k++) {
        const char *name = rl2_ovr_kind_name((rl2_ovr_kind_t)k);

        assert_non_null(name);
        assert_int_equal(rl2_ovr_kind_from_name(name), k);
    }
    assert_string_equal(rl2_ovr_kind_name(RL2_OVR_EMERGENCY), "emergency");
    assert_null(rl2_ovr_kind_name(0));
    assert_null(rl2_ovr_kind_name(RL2_OVR_KINDS));
    assert_int_equal(rl2_ovr_kind_from_name("Ban"), 0);
    assert_int_equal(rl2_ovr_kind_from_name(NULL), 0);
}

/* ---- set, replace, remove, list ------------------------------------------
 */

static void
test_set_replace_remove_list(void **state)
{
    rl2_overrides_t      *t = open_table(NULL);
    rl2_override_t        a = ovr(RL2_OVR_BAN, "192.0.2.7"), before;
    const rl2_override_t *l;
    uint64_t              v0 = rl2_overrides_version(t);

    (void)state;
    assert_int_equal(count(t, 0, T0_US), 0);
    snprintf(a.reason, sizeof(a.reason), "first");
    set_ok(t, &a, T0_US, &before);
    assert_int_equal(before.kind, 0);
    assert_int_equal(count(t, 0, T0_US), 1);
    assert_true(rl2_overrides_version(t) > v0);

    /* The same kind and target replaces, and says what it replaced. */
    snprintf(a.reason, sizeof(a.reason), "second");
    a.expires_us = T0_US + 3600 * S;
    set_ok(t, &a, T0_US + S, &before);
    assert_int_equal(before.kind, RL2_OVR_BAN);
    assert_string_equal(before.target, "192.0.2.7");
    assert_string_equal(before.reason, "first");
    assert_int_equal(before.expires_us, 0);
    assert_int_equal(count(t, 0, T0_US), 1);
    l = listed(t, RL2_OVR_BAN, "192.0.2.7", T0_US);
    assert_non_null(l);
    assert_string_equal(l->reason, "second");
    assert_int_equal(l->expires_us, T0_US + 3600 * S);
    assert_string_equal(l->author, "tester");

    /* Another kind on the same target is another entry. */
    set_ok(t,
           &(rl2_override_t){ .kind = RL2_OVR_ALLOW,
                              .target_kind = RL2_OVT_ADDR,
                              .target = "192.0.2.7" },
           T0_US + 2 * S, &before);
    assert_int_equal(before.kind, 0);
    assert_int_equal(count(t, 0, T0_US + 2 * S), 2);
    assert_int_equal(count(t, RL2_OVR_BAN, T0_US + 2 * S), 1);
    assert_int_equal(count(t, RL2_OVR_ALLOW, T0_US + 2 * S), 1);
    assert_int_equal(count(t, RL2_OVR_TIER, T0_US + 2 * S), 0);

    /* Remove says what went; removing nothing is no error. */
    before = remove_ok(t, RL2_OVR_BAN, "192.0.2.7", T0_US + 3 * S);
    assert_int_equal(before.kind, RL2_OVR_BAN);
    assert_string_equal(before.reason, "second");
    before = remove_ok(t, RL2_OVR_BAN, "192.0.2.7", T0_US + 3 * S);
    assert_int_equal(before.kind, 0);
    assert_int_equal(count(t, 0, T0_US + 3 * S), 1);
    assert_non_null(listed(t, RL2_OVR_ALLOW, "192.0.2.7", T0_US + 3 * S));
    assert_false(banned(t, "192.0.2.7", T0_US + 3 * S));
    rl2_overrides_close(t);
}

/* A list longer than the room given is counted in full, and copies only
 * what fits. */
static void
test_list_counts_past_its_room(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   out[3];
    rl2_clock_t      now = at(T0_US);
    char             addr[32];

    (void)state;
    memset(out, 0, sizeof(out));
    for (int i = 0; i < 5; i++) {
        snprintf(addr, sizeof(addr), "198.51.100.%d", i + 1);
        rl2_override_t o = ovr(RL2_OVR_BAN, addr);

        set_ok(t, &o, T0_US, NULL);
    }
    assert_int_equal(rl2_overrides_list(t, 0, &now, out, 2), 5);
    assert_int_equal(out[2].kind, 0); /* untouched */
    assert_int_equal(strncmp(out[0].target, "198.51.100.", 11), 0);
    rl2_overrides_close(t);
}

static void
test_bad_values_are_refused_and_change_nothing(void **state)
{
    rl2_overrides_t      *t = open_table(state_path);
    rl2_override_t        o, before;
    rl2_clock_t           now = at(T0_US);
    uint64_t              v;
    static const uint32_t bad_factors[] = { 0, 1, RL2_OVR_FACTOR_MIN - 1,
                                            RL2_OVR_FACTOR_MAX + 1,
                                            UINT32_MAX };

    (void)state;
    v = rl2_overrides_version(t);
    for (size_t i = 0; i < sizeof(bad_factors) / sizeof(bad_factors[0]); i++) {
        rl2_err_t err = { "" };

        o = boost_ovr("rule:login", bad_factors[i]);
        assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err),
                         RL2_ERR_INVALID);
        assert_non_null(strstr(err.msg, "factor out of range"));
        if (bad_factors[i] != 0) {
            o = ovr(RL2_OVR_EMERGENCY, "*");
            o.factor_ppm = bad_factors[i];
            assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err),
                             RL2_ERR_INVALID);
        }
    }
    {
        rl2_err_t err = { "" };

        o = ovr(RL2_OVR_MODE, "rule:login");
        o.mode = RL2_MODE_INHERIT;
        assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err),
                         RL2_ERR_INVALID);
        o = tier_ovr("192.0.2.1", "");
        assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err),
                         RL2_ERR_INVALID);
        assert_non_null(strstr(err.msg, "no tier"));
        o = ovr(RL2_OVR_BAN, "192.0.2.1");
        o.kind = 0;
        assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err),
                         RL2_ERR_INVALID);
        /* An end in the past, or now, is no override. */
        o = ovr(RL2_OVR_BAN, "192.0.2.1");
        o.expires_us = T0_US;
        assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err),
                         RL2_ERR_INVALID);
        assert_non_null(strstr(err.msg, "already expired"));
    }
    assert_int_equal(rl2_overrides_version(t), v);
    assert_int_equal(count(t, 0, T0_US), 0);
    assert_true(rl2_overrides_idle(t));
    /* Nothing was written either. */
    assert_int_equal(access(state_path, F_OK), -1);
    /* The extremes themselves are taken; so is an emergency without a
     * factor (allow-list only). */
    o = boost_ovr("rule:login", RL2_OVR_FACTOR_MIN);
    set_ok(t, &o, T0_US, NULL);
    o = boost_ovr("tier:pro", RL2_OVR_FACTOR_MAX);
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_EMERGENCY, "*");
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(count(t, 0, T0_US), 3);
    rl2_overrides_close(t);
}

/* ---- expiry ----------------------------------------------------------------
 */

static void
test_expired_entries_are_ignored_at_once_and_purged_by_the_next_write(
    void **state)
{
    rl2_overrides_t *t = open_table(state_path);
    rl2_override_t   o = ovr(RL2_OVR_BAN, "192.0.2.5");
    rl2_override_t   keep = ovr(RL2_OVR_BAN, "192.0.2.6");
    rl2_ovr_client_t c;
    uint64_t         v;

    (void)state;
    o.expires_us = T0_US + 10 * S;
    set_ok(t, &o, T0_US, NULL);
    set_ok(t, &keep, T0_US, NULL);
    c = client(t, "192.0.2.5", NULL, NULL, T0_US + 10 * S - 1);
    assert_true(c.banned);
    assert_int_equal(c.ban_until_us, T0_US + 10 * S);
    assert_int_equal(count(t, 0, T0_US + 10 * S - 1), 2);

    /* At its end it is gone for readers, with no write in between. */
    v = rl2_overrides_version(t);
    assert_false(banned(t, "192.0.2.5", T0_US + 10 * S));
    assert_int_equal(count(t, 0, T0_US + 10 * S), 1);
    assert_null(listed(t, RL2_OVR_BAN, "192.0.2.5", T0_US + 10 * S));
    assert_true(banned(t, "192.0.2.6", T0_US + 10 * S));
    assert_int_equal(rl2_overrides_version(t), v);
    /* ... but it still holds its slot: the table is not idle. */
    assert_non_null(strstr(read_all(state_path), "192.0.2.5"));

    /* The next write, of anything, removes it, from the file too. */
    o = ovr(RL2_OVR_ALLOW, "user:carol");
    set_ok(t, &o, T0_US + 11 * S, NULL);
    assert_int_equal(count(t, 0, T0_US), 2); /* even seen from before */
    assert_null(listed(t, RL2_OVR_BAN, "192.0.2.5", T0_US));
    assert_null(strstr(read_all(state_path), "192.0.2.5"));
    assert_non_null(strstr(read_all(state_path), "192.0.2.6"));

    /* A removal purges too; an expired entry removed by name was already
     * gone. */
    o = ovr(RL2_OVR_BAN, "192.0.2.8");
    o.expires_us = T0_US + 20 * S;
    set_ok(t, &o, T0_US + 11 * S, NULL);
    assert_int_equal(
        remove_ok(t, RL2_OVR_BAN, "192.0.2.8", T0_US + 21 * S).kind, 0);
    assert_int_equal(count(t, 0, T0_US), 2);
    rl2_overrides_close(t);
}

static void
test_expired_entries_count_until_purged(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   o = ovr(RL2_OVR_BAN, "user:dave");

    (void)state;
    o.expires_us = T0_US + S;
    set_ok(t, &o, T0_US, NULL);
    assert_false(rl2_overrides_idle(t));
    assert_true(rl2_overrides_name_identities(t));
    /* Past its end, the counters still say "look": a request then finds
     * nothing, which is the right answer, only slower. */
    assert_false(client(t, NULL, "dave", NULL, T0_US + 2 * S).banned);
    assert_false(rl2_overrides_idle(t));
    /* A removal of something else purges it. */
    remove_ok(t, RL2_OVR_BAN, "192.0.2.1", T0_US + 2 * S);
    assert_true(rl2_overrides_idle(t));
    assert_false(rl2_overrides_name_identities(t));
    rl2_overrides_close(t);
}

/* ---- the state file --------------------------------------------------------
 */

/* Every field of every entry of a and b, by kind and target. */
static void
assert_same_entries(rl2_overrides_t *a, rl2_overrides_t *b, int64_t now_us)
{
    static rl2_override_t la[64], lb[64];
    rl2_clock_t           now = at(now_us);
    size_t                na = rl2_overrides_list(a, 0, &now, la, 64);
    size_t                nb = rl2_overrides_list(b, 0, &now, lb, 64);

    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        size_t j = 0;

        while (j < nb
               && !(la[i].kind == lb[j].kind
                    && strcmp(la[i].target, lb[j].target) == 0)) {
            j++;
        }
        if (j == nb) {
            fail_msg("%s %s is missing", rl2_ovr_kind_name(la[i].kind),
                     la[i].target);
        }
        assert_int_equal(la[i].target_kind, lb[j].target_kind);
        assert_string_equal(la[i].tier, lb[j].tier);
        assert_int_equal(la[i].factor_ppm, lb[j].factor_ppm);
        assert_int_equal(la[i].mode, lb[j].mode);
        assert_int_equal(la[i].expires_us, lb[j].expires_us);
        assert_int_equal(la[i].created_us, lb[j].created_us);
        assert_string_equal(la[i].reason, lb[j].reason);
        assert_string_equal(la[i].author, lb[j].author);
    }
}

/* One of each kind, with reasons that need escaping. */
static void
set_one_of_each(rl2_overrides_t *t)
{
    rl2_override_t o;

    o = ovr(RL2_OVR_BAN, "203.0.113.0/24");
    snprintf(o.reason, sizeof(o.reason), "INC-1\tscraping\nline two \\ end");
    o.expires_us = T0_US + 7 * 86400 * S;
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_BAN, "2001:db8:1::/48");
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_ALLOW, "user:partner-bot");
    snprintf(o.author, sizeof(o.author), "ops\\alice");
    snprintf(o.reason, sizeof(o.reason), "carriage\rreturn");
    set_ok(t, &o, T0_US, NULL);
    o = tier_ovr("key:sk_live_123", "gold");
    set_ok(t, &o, T0_US, NULL);
    o = boost_ovr("rule:login", 2500000);
    o.expires_us = T0_US + 3600 * S;
    set_ok(t, &o, T0_US, NULL);
    o = boost_ovr("*", 500000);
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_MODE, "rule:api");
    o.mode = RL2_MODE_DRY_RUN;
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_EMERGENCY, "*"); /* allow-list only */
    set_ok(t, &o, T0_US, NULL);
}

static void
test_state_file_round_trip(void **state)
{
    rl2_overrides_t *t = open_table(state_path), *again;
    rl2_err_t        err = { "" };
    struct stat      st;

    (void)state;
    set_one_of_each(t);
    assert_int_equal(count(t, 0, T0_US), 8);
    assert_int_equal(
        strncmp(read_all(state_path), "# ratelimit2 overrides 1\n", 25), 0);
    /* Not readable by others: it names clients. */
    assert_int_equal(stat(state_path, &st), 0);
    assert_int_equal(st.st_mode & 0007, 0);

    /* A reboot: the shared memory goes, the file stays. */
    assert_int_equal(rl2_shm_obj_unlink(shm_name, &err), RL2_OK);
    again = open_table(state_path);
    assert_same_entries(t, again, T0_US);
    assert_true(client(again, "203.0.113.77", NULL, NULL, T0_US).banned);
    rl2_overrides_close(again);
    rl2_overrides_close(t);
}

/* Two handles on one zone, as two processes have: what one sets the
 * other sees, with or without a state file. */
static void
test_handles_share_the_table(void **state)
{
    rl2_overrides_t *a = open_table(NULL), *b = open_table(NULL), *c;
    rl2_override_t   o = ovr(RL2_OVR_BAN, "192.0.2.44");

    (void)state;
    set_ok(a, &o, T0_US, NULL);
    assert_true(banned(b, "192.0.2.44", T0_US));
    assert_int_equal(rl2_overrides_version(a), rl2_overrides_version(b));
    c = open_table(NULL);
    assert_true(banned(c, "192.0.2.44", T0_US));
    remove_ok(c, RL2_OVR_BAN, "192.0.2.44", T0_US);
    assert_false(banned(a, "192.0.2.44", T0_US));
    rl2_overrides_close(c);
    /* Closed and opened again: the object outlives its handles. */
    rl2_overrides_close(b);
    set_ok(a, &o, T0_US, NULL);
    rl2_overrides_close(a);
    a = open_table(NULL);
    assert_true(banned(a, "192.0.2.44", T0_US));
    rl2_overrides_close(a);
}

/* The file is read only into a new table: an existing one is already
 * what the file says, and maybe more recent. */
static void
test_state_file_fills_only_a_new_table(void **state)
{
    rl2_overrides_t *t = open_table(state_path), *again;
    rl2_override_t   o = ovr(RL2_OVR_BAN, "192.0.2.1");

    (void)state;
    set_ok(t, &o, T0_US, NULL);
    write_file(state_path, "# ratelimit2 overrides 1\n");
    again = open_table(state_path);
    assert_true(banned(again, "192.0.2.1", T0_US));
    rl2_overrides_close(again);
    rl2_overrides_close(t);
}

static void
test_state_file_entries_already_expired_are_skipped(void **state)
{
    rl2_overrides_t *t;
    char             text[512];

    (void)state;
    snprintf(text, sizeof(text),
             "# ratelimit2 overrides 1\n"
             "ban\t192.0.2.1\t-\t%lld\t0\ta\tgone\n"
             "\n"
             "# a comment\n"
             "ban\t192.0.2.2\t-\t0\t0\ta\tstays\n",
             (long long)(INT64_C(1000000))); /* 1970 */
    write_file(state_path, text);
    t = open_table(state_path);
    assert_int_equal(count(t, 0, 0), 1);
    assert_true(banned(t, "192.0.2.2", T0_US));
    assert_false(banned(t, "192.0.2.1", 0));
    rl2_overrides_close(t);
}

/* A line that does not read stops the open, naming file:line. */
static void
damaged_line(const char *line, int lineno)
{
    rl2_overrides_t *t = (rl2_overrides_t *)&t;
    rl2_err_t        err = { "" };
    char             text[1024], want[256];

    snprintf(text, sizeof(text),
             "# ratelimit2 overrides 1\n"
             "ban\t192.0.2.2\t-\t0\t0\ta\tgood\n"
             "%s",
             line);
    write_file(state_path, text);
    rl2_shm_obj_unlink(shm_name, NULL);
    if (rl2_overrides_open(zone, state_path, 0600, &t, &err)
        != RL2_ERR_INVALID) {
        fail_msg("a damaged line opened: %s", line);
    }
    assert_null(t);
    snprintf(want, sizeof(want), "%s:%d: ", state_path, lineno);
    if (strncmp(err.msg, want, strlen(want)) != 0) {
        fail_msg("expected \"%s...\", got \"%s\" for %s", want, err.msg, line);
    }
}

static void
test_state_file_damaged_line_names_file_and_line(void **state)
{
    (void)state;
    damaged_line("nuke\t192.0.2.3\t-\t0\t0\ta\tr\n", 3);
    damaged_line("ban\t192.0.2.3/24\t-\t0\t0\ta\tr\n", 3); /* not canonical */
    damaged_line("ban\t2001:DB8::1\t-\t0\t0\ta\tr\n", 3);
    damaged_line("ban\tuser:x\x01y\t-\t0\t0\ta\tr\n", 3);
    damaged_line("ban\trule:login\t-\t0\t0\ta\tr\n", 3); /* wrong kind */
    damaged_line("ban\t192.0.2.3\tx\t0\t0\ta\tr\n", 3);
    damaged_line("ban\t192.0.2.3\t-\t0\t0\ta\n", 3); /* a field short */
    damaged_line("ban\t192.0.2.3\t-\t-5\t0\ta\tr\n", 3);
    damaged_line("ban\t192.0.2.3\t-\tsoon\t0\ta\tr\n", 3);
    damaged_line("ban\t192.0.2.3\t-\t0\t0\ta\tbad \\q escape\n", 3);
    damaged_line("boost\trule:login\tlots\t0\t0\ta\tr\n", 3);
    damaged_line("boost\trule:login\t1000000001\t0\t0\ta\tr\n", 3);
    damaged_line("mode\trule:login\tfast\t0\t0\ta\tr\n", 3);
    damaged_line("boost\trule:login\t0\t0\t0\ta\tr\n", 3);
    damaged_line("tier\tuser:x\t\t0\t0\ta\tr\n", 3);  /* no tier */
    damaged_line("ban\t192.0.2.3\t-\t0\t0\ta\tr", 3); /* not ended */
    damaged_line("\n\nban\t192.0.2.3\t-\t0\t0\ta\tr\tmore\n", 5);
}

/* A change the state file cannot keep is not made: the table is left as
 * it was, entry for entry (overrides.c takes it back). */
static void
test_unwritable_state_file_fails_and_changes_nothing(void **state)
{
    rl2_overrides_t *t = open_table(state_path), *copy;
    rl2_override_t   o = ovr(RL2_OVR_BAN, "192.0.2.1"), before;
    rl2_clock_t      now = at(T0_US + S);
    rl2_err_t        err = { "" };
    char             tmp[160], *saved;
    uint64_t         used_before;

    (void)state;
    snprintf(o.reason, sizeof(o.reason), "kept");
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_ALLOW, "user:alice");
    set_ok(t, &o, T0_US, NULL);
    saved = strdup(read_all(state_path));
    assert_non_null(saved);
    used_before = atomic_load(((const rl2_overrides_head_t *)t)->used);

    /* Root may write anywhere: a directory in the temporary file's place
     * makes the save fail whoever runs the test. */
    snprintf(tmp, sizeof(tmp), "%s.tmp", state_path);
    assert_int_equal(mkdir(tmp, 0700), 0);

    /* A new entry: refused, not there. */
    o = ovr(RL2_OVR_BAN, "192.0.2.99");
    assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err),
                     RL2_ERR_SYS);
    assert_non_null(strstr(err.msg, "state file"));
    assert_false(banned(t, "192.0.2.99", T0_US + S));
    /* A replacement: refused, the old one stays as it was. */
    o = ovr(RL2_OVR_BAN, "192.0.2.1");
    snprintf(o.reason, sizeof(o.reason), "changed");
    o.expires_us = T0_US + 60 * S;
    assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err),
                     RL2_ERR_SYS);
    assert_string_equal(listed(t, RL2_OVR_BAN, "192.0.2.1", T0_US)->reason,
                        "kept");
    assert_int_equal(listed(t, RL2_OVR_BAN, "192.0.2.1", T0_US)->expires_us, 0);
    /* A removal: refused, the entry stays. */
    o = ovr(RL2_OVR_ALLOW, "user:alice");
    assert_int_equal(rl2_overrides_remove(t, RL2_OVR_ALLOW, o.target_kind,
                                          o.target, &now, &before, &err),
                     RL2_ERR_SYS);
    assert_non_null(listed(t, RL2_OVR_ALLOW, "user:alice", T0_US));
    assert_true(rl2_overrides_name_identities(t));
    assert_int_equal(count(t, 0, T0_US), 2);
    assert_int_equal(atomic_load(((const rl2_overrides_head_t *)t)->used),
                     used_before);
    assert_string_equal(read_all(state_path), saved);
    free(saved);

    /* What the table holds is what a restart would bring back. */
    rmdir(tmp);
    rl2_shm_obj_unlink(shm_name, NULL);
    copy = open_table(state_path);
    assert_same_entries(t, copy, T0_US);
    rl2_overrides_close(copy);
    rl2_overrides_close(t);
}

/* A state file in a folder that does not exist: every change fails,
 * the table stays empty. */
static void
test_missing_state_folder_fails_every_change(void **state)
{
    char             path[160];
    rl2_overrides_t *t;
    rl2_override_t   o = ovr(RL2_OVR_BAN, "192.0.2.1"), before;
    rl2_clock_t      now = at(T0_US);
    rl2_err_t        err = { "" };

    (void)state;
    snprintf(path, sizeof(path), "%s/missing/state", dir);
    t = open_table(path);
    assert_int_equal(rl2_overrides_set(t, &o, &now, &before, &err),
                     RL2_ERR_SYS);
    assert_non_null(strstr(err.msg, "missing/state"));
    assert_true(rl2_overrides_idle(t));
    assert_int_equal(count(t, 0, T0_US), 0);
    rl2_overrides_close(t);
}

/* ---- lookups ---------------------------------------------------------------
 */

static int
tier_of(rl2_overrides_t *t, const char *address)
{
    return client(t, address, NULL, NULL, T0_US).tier;
}

static void
test_longest_prefix_wins(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   o;

    (void)state;
    o = tier_ovr("10.0.0.0/8", "free");
    set_ok(t, &o, T0_US, NULL);
    o = tier_ovr("10.1.0.0/16", "pro");
    set_ok(t, &o, T0_US, NULL);
    o = tier_ovr("10.1.2.3", "gold");
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(tier_of(t, "10.1.2.3"), 2);
    assert_int_equal(tier_of(t, "10.1.2.4"), 1);
    assert_int_equal(tier_of(t, "10.1.255.255"), 1);
    assert_int_equal(tier_of(t, "10.2.0.1"), 0);
    assert_int_equal(tier_of(t, "10.255.255.255"), 0);
    assert_int_equal(tier_of(t, "11.0.0.1"), -1);
    assert_int_equal(tier_of(t, "2001:db8::1"), -1);
    /* The longest prefix wins in whichever order they were set. */
    remove_ok(t, RL2_OVR_TIER, "10.1.0.0/16", T0_US);
    assert_int_equal(tier_of(t, "10.1.2.4"), 0);
    o = tier_ovr("10.1.2.0/24", "pro");
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(tier_of(t, "10.1.2.3"), 2);
    assert_int_equal(tier_of(t, "10.1.2.4"), 1);
    assert_int_equal(tier_of(t, "10.1.3.4"), 0);
    /* A tier the policy no longer has is no tier. */
    o = tier_ovr("10.1.2.3", "platinum");
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(tier_of(t, "10.1.2.3"), -1);
    rl2_overrides_close(t);
}

/* IPv6 lengths on each side of the 64-bit words the lengths in use are
 * kept in (63, 64, 65, 127, 128): the walk from the longest finds each. */
static void
test_longest_ipv6_prefix_across_words(void **state)
{
    static const char *const nets[] = { "2001:db8::/32",  "2001:db8::/63",
                                        "2001:db8::/64",  "2001:db8::/65",
                                        "2001:db8::/127", "2001:db8::/128" };
    static const char *const tiers[] = { "free", "pro", "gold" };
    rl2_overrides_t         *t = open_table(NULL);
    rl2_override_t           o;

    (void)state;
    for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++) {
        o = tier_ovr(nets[i], tiers[i % 3]);
        set_ok(t, &o, T0_US, NULL);
    }
    assert_int_equal(tier_of(t, "2001:db8::"), 2);          /* /128 */
    assert_int_equal(tier_of(t, "2001:db8::1"), 1);         /* /127 */
    assert_int_equal(tier_of(t, "2001:db8::2"), 0);         /* /65 */
    assert_int_equal(tier_of(t, "2001:db8:0:0:8000::"), 2); /* /64 */
    assert_int_equal(tier_of(t, "2001:db8:0:1::"), 1);      /* /63 */
    assert_int_equal(tier_of(t, "2001:db8:0:2::"), 0);      /* /32 */
    assert_int_equal(tier_of(t, "2001:db9::"), -1);
    remove_ok(t, RL2_OVR_TIER, "2001:db8::/65", T0_US);
    assert_int_equal(tier_of(t, "2001:db8::2"), 2); /* now /64 */
    rl2_overrides_close(t);
}

static void
test_prefix_zero_and_ipv6_networks(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   o;

    (void)state;
    o = ovr(RL2_OVR_BAN, "2001:db8:1::/48");
    set_ok(t, &o, T0_US, NULL);
    assert_true(banned(t, "2001:db8:1::1", T0_US));
    assert_true(banned(t, "2001:db8:1:ffff:ffff:ffff:ffff:ffff", T0_US));
    assert_false(banned(t, "2001:db8:2::1", T0_US));
    assert_false(banned(t, "2001:db8::1", T0_US));
    assert_false(banned(t, "32.1.13.184", T0_US)); /* 2001:0db8 as IPv4 */
    assert_false(banned(t, NULL, T0_US));

    o = ovr(RL2_OVR_BAN, "0.0.0.0/0");
    set_ok(t, &o, T0_US, NULL);
    assert_true(banned(t, "1.2.3.4", T0_US));
    assert_true(banned(t, "255.255.255.255", T0_US));
    assert_false(banned(t, "2001:db8:2::1", T0_US));
    o = ovr(RL2_OVR_BAN, "::/0");
    set_ok(t, &o, T0_US, NULL);
    assert_true(banned(t, "2001:db8:2::1", T0_US));
    assert_true(banned(t, "::1", T0_US));
    o = ovr(RL2_OVR_BAN, "2001:db8:2::1/128");
    set_ok(t, &o, T0_US, NULL);
    remove_ok(t, RL2_OVR_BAN, "::/0", T0_US);
    assert_true(banned(t, "2001:db8:2::1", T0_US));
    assert_false(banned(t, "2001:db8:2::2", T0_US));
    rl2_overrides_close(t);
}

static void
addr_of(int i, char *buf, size_t size)
{
    snprintf(buf, size, "10.%d.%d.%d", i / 65536, (i / 256) % 256, i % 256);
}

static void
test_ten_thousand_bans(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    char             a[32];
    rl2_override_t   o;
    int              found = 0, missed = 0;

    (void)state;
    for (int i = 0; i < 20000; i += 2) {
        addr_of(i, a, sizeof(a));
        o = ovr(RL2_OVR_BAN, a);
        set_ok(t, &o, T0_US, NULL);
    }
    assert_int_equal(count(t, RL2_OVR_BAN, T0_US), 10000);
    for (int i = 0; i < 20000; i++) {
        addr_of(i, a, sizeof(a));
        if (banned(t, a, T0_US)) {
            found += i % 2 == 0;
            missed += i % 2 != 0;
        }
    }
    assert_int_equal(found, 10000);
    assert_int_equal(missed, 0);
    /* A network on top of them is found for its other addresses. */
    o = ovr(RL2_OVR_BAN, "10.0.1.0/24");
    set_ok(t, &o, T0_US, NULL);
    assert_true(banned(t, "10.0.1.1", T0_US));
    assert_false(banned(t, "10.0.2.1", T0_US));
    rl2_overrides_close(t);
}

static void
test_full_table_is_refused(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    char             a[32];
    rl2_override_t   o, before;
    rl2_clock_t      now = at(T0_US);
    rl2_err_t        err = { "" };
    int              n = 0;
    rl2_status_t     st = RL2_OK;

    (void)state;
    while (n < 20000) {
        addr_of(n, a, sizeof(a));
        o = ovr(RL2_OVR_BAN, a);
        if ((st = rl2_overrides_set(t, &o, &now, &before, &err)) != RL2_OK) {
            break;
        }
        n++;
    }
    assert_int_equal(st, RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "full"));
    assert_true(n >= 10000);
    assert_int_equal(count(t, 0, T0_US), (size_t)n);
    /* What is there can still be replaced, and room made. */
    addr_of(0, a, sizeof(a));
    o = ovr(RL2_OVR_BAN, a);
    set_ok(t, &o, T0_US, NULL);
    remove_ok(t, RL2_OVR_BAN, a, T0_US);
    addr_of(n, a, sizeof(a));
    o = ovr(RL2_OVR_BAN, a);
    set_ok(t, &o, T0_US, NULL);
    assert_true(banned(t, a, T0_US));
    rl2_overrides_close(t);
}

static void
test_users_keys_allows_and_the_emergency(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   o;
    rl2_ovr_client_t c;
    char             h[17];

    (void)state;
    rl2_hash_id(&policy->hash_key, "sk_live_123", h);
    o = ovr(RL2_OVR_BAN, "key:sk_live_123");
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_ALLOW, "user:partner");
    set_ok(t, &o, T0_US, NULL);
    o = tier_ovr("user:alice", "pro");
    set_ok(t, &o, T0_US, NULL);

    c = client(t, "192.0.2.1", NULL, h, T0_US);
    assert_true(c.banned);
    assert_false(c.allowed);
    assert_int_equal(c.tier, -1);
    c = client(t, "192.0.2.1", "partner", NULL, T0_US);
    assert_false(c.banned);
    assert_true(c.allowed);
    c = client(t, "192.0.2.1", "alice", NULL, T0_US);
    assert_int_equal(c.tier, 1);
    assert_false(c.emergency);
    c = client(t, "192.0.2.1", "Alice", "0123456789abcdef", T0_US);
    assert_false(c.banned);
    assert_int_equal(c.tier, -1);
    /* Both a ban and an allow: both are reported (runtime.c refuses). */
    o = ovr(RL2_OVR_ALLOW, "key:sk_live_123");
    set_ok(t, &o, T0_US, NULL);
    c = client(t, NULL, NULL, h, T0_US);
    assert_true(c.banned);
    assert_true(c.allowed);

    o = ovr(RL2_OVR_EMERGENCY, "*");
    o.factor_ppm = 250000;
    o.expires_us = T0_US + 60 * S;
    set_ok(t, &o, T0_US, NULL);
    c = client(t, "198.51.100.1", NULL, NULL, T0_US);
    assert_true(c.emergency);
    assert_int_equal(c.emergency_ppm, 250000);
    assert_int_equal(c.emergency_until_us, T0_US + 60 * S);
    assert_false(client(t, NULL, NULL, NULL, T0_US + 60 * S).emergency);
    rl2_overrides_close(t);
}

/* ---- factors and modes -----------------------------------------------------
 */

static void
test_factors_multiply_within_bounds(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   o;

    (void)state;
    assert_int_equal(rl2_overrides_factor(t, "login", "pro", T0_US),
                     RL2_OVR_FACTOR_ONE);
    o = boost_ovr("rule:login", 2000000);
    set_ok(t, &o, T0_US, NULL);
    o = boost_ovr("tier:pro", 3000000);
    set_ok(t, &o, T0_US, NULL);
    o = boost_ovr("*", 500000);
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(rl2_overrides_factor(t, "login", "pro", T0_US), 3000000);
    assert_int_equal(rl2_overrides_factor(t, "login", NULL, T0_US), 1000000);
    assert_int_equal(rl2_overrides_factor(t, "login", "free", T0_US), 1000000);
    assert_int_equal(rl2_overrides_factor(t, "api", NULL, T0_US), 500000);
    assert_int_equal(rl2_overrides_factor(t, NULL, "pro", T0_US), 1500000);

    /* The emergency factor multiplies too; allow-list only does not. */
    o = ovr(RL2_OVR_EMERGENCY, "*");
    o.factor_ppm = 100000;
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(rl2_overrides_factor(t, "login", "pro", T0_US), 300000);
    o.factor_ppm = 0;
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(rl2_overrides_factor(t, "login", "pro", T0_US), 3000000);

    /* Bounds: x1000 times x1000 is x1000; x0.001 times x0.001 is
     * x0.001. */
    o = boost_ovr("rule:login", RL2_OVR_FACTOR_MAX);
    set_ok(t, &o, T0_US, NULL);
    o = boost_ovr("tier:pro", RL2_OVR_FACTOR_MAX);
    set_ok(t, &o, T0_US, NULL);
    remove_ok(t, RL2_OVR_BOOST, "*", T0_US);
    assert_int_equal(rl2_overrides_factor(t, "login", "pro", T0_US),
                     RL2_OVR_FACTOR_MAX);
    o = boost_ovr("rule:login", RL2_OVR_FACTOR_MIN);
    set_ok(t, &o, T0_US, NULL);
    o = boost_ovr("tier:pro", RL2_OVR_FACTOR_MIN);
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(rl2_overrides_factor(t, "login", "pro", T0_US),
                     RL2_OVR_FACTOR_MIN);

    /* Expired boosts count for nothing. */
    o = boost_ovr("rule:api", 4000000);
    o.expires_us = T0_US + S;
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(rl2_overrides_factor(t, "api", NULL, T0_US), 4000000);
    assert_int_equal(rl2_overrides_factor(t, "api", NULL, T0_US + S),
                     RL2_OVR_FACTOR_ONE);
    rl2_overrides_close(t);
}

static void
test_rule_modes(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   o;

    (void)state;
    assert_int_equal(rl2_overrides_mode(t, "login", RL2_MODE_ENFORCE, T0_US),
                     RL2_MODE_ENFORCE);
    o = ovr(RL2_OVR_MODE, "rule:login");
    o.mode = RL2_MODE_DRY_RUN;
    o.expires_us = T0_US + 60 * S;
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_MODE, "rule:api");
    o.mode = RL2_MODE_ENFORCE;
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(rl2_overrides_mode(t, "login", RL2_MODE_ENFORCE, T0_US),
                     RL2_MODE_DRY_RUN);
    assert_int_equal(rl2_overrides_mode(t, "api", RL2_MODE_OFF, T0_US),
                     RL2_MODE_ENFORCE);
    assert_int_equal(rl2_overrides_mode(t, "default", RL2_MODE_OFF, T0_US),
                     RL2_MODE_OFF);
    assert_int_equal(rl2_overrides_mode(t, NULL, RL2_MODE_OFF, T0_US),
                     RL2_MODE_OFF);
    assert_int_equal(
        rl2_overrides_mode(t, "login", RL2_MODE_ENFORCE, T0_US + 60 * S),
        RL2_MODE_ENFORCE);
    o = ovr(RL2_OVR_MODE, "rule:api");
    o.mode = RL2_MODE_OFF;
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(rl2_overrides_mode(t, "api", RL2_MODE_ENFORCE, T0_US),
                     RL2_MODE_OFF);
    remove_ok(t, RL2_OVR_MODE, "rule:api", T0_US);
    assert_int_equal(rl2_overrides_mode(t, "api", RL2_MODE_DRY_RUN, T0_US),
                     RL2_MODE_DRY_RUN);
    rl2_overrides_close(t);
}

/* ---- the counters a request reads first ----------------------------------
 */

static void
test_idle_and_identity_counters(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   o;

    (void)state;
    assert_true(rl2_overrides_idle(NULL));
    assert_false(rl2_overrides_name_identities(NULL));
    assert_true(rl2_overrides_idle(t));
    assert_false(rl2_overrides_name_identities(t));

    o = ovr(RL2_OVR_BAN, "192.0.2.1");
    set_ok(t, &o, T0_US, NULL);
    assert_false(rl2_overrides_idle(t));
    assert_false(rl2_overrides_name_identities(t));
    o = boost_ovr("rule:login", 2000000);
    set_ok(t, &o, T0_US, NULL);
    assert_false(rl2_overrides_name_identities(t));
    o = ovr(RL2_OVR_BAN, "user:mallory");
    set_ok(t, &o, T0_US, NULL);
    assert_true(rl2_overrides_name_identities(t));
    o = tier_ovr("key:sk_live_123", "pro");
    set_ok(t, &o, T0_US, NULL);
    /* Replacing keeps the count. */
    o = tier_ovr("key:sk_live_123", "gold");
    set_ok(t, &o, T0_US, NULL);
    assert_int_equal(atomic_load(((const rl2_overrides_head_t *)t)->n_identity),
                     2);
    assert_int_equal(atomic_load(((const rl2_overrides_head_t *)t)->used), 4);
    remove_ok(t, RL2_OVR_BAN, "user:mallory", T0_US);
    assert_true(rl2_overrides_name_identities(t));
    remove_ok(t, RL2_OVR_TIER, "key:sk_live_123", T0_US);
    assert_false(rl2_overrides_name_identities(t));
    assert_false(rl2_overrides_idle(t));
    remove_ok(t, RL2_OVR_BAN, "192.0.2.1", T0_US);
    remove_ok(t, RL2_OVR_BOOST, "rule:login", T0_US);
    assert_true(rl2_overrides_idle(t));
    rl2_overrides_close(t);
}

/* ---- what the status page and the metrics read (override_view.c) ---- */

/* An automatic ban of target, made at made_us for ttl_s, as
 * decide/runtime.c makes one. */
static void
auto_ban(rl2_overrides_t *t, const char *target, int64_t made_us, int64_t ttl_s)
{
    rl2_override_t o = ovr(RL2_OVR_BAN, target);
    rl2_clock_t    now = at(made_us);
    rl2_err_t      err = { "" };
    int            made = 0;

    o.created_us = made_us;
    o.expires_us = made_us + ttl_s * S;
    snprintf(o.author, sizeof(o.author), "%s", RL2_OVR_AUTO_AUTHOR);
    snprintf(o.reason, sizeof(o.reason),
             "more than 5 refusals in 60s (rule login, limit login)");
    if (rl2_overrides_ban_auto(t, &o, &now, &made, &err) != RL2_OK) {
        fail_msg("automatic ban %s: %s", target, err.msg);
    }
    assert_int_equal(made, 1);
}

static void
test_bans_counted_by_origin(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   o;
    rl2_clock_t      now = at(T0_US);
    size_t           op = 99, au = 99;

    (void)state;
    rl2_overrides_count_bans(t, &now, &op, &au);
    assert_int_equal(op, 0);
    assert_int_equal(au, 0);
    o = ovr(RL2_OVR_BAN, "192.0.2.1");
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_BAN, "user:mallory");
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_BAN, "198.51.100.0/24");
    o.expires_us = T0_US + 10 * S;
    set_ok(t, &o, T0_US, NULL);
    o = ovr(RL2_OVR_ALLOW, "192.0.2.2"); /* not a ban */
    set_ok(t, &o, T0_US, NULL);
    auto_ban(t, "203.0.113.1", T0_US, 60);
    auto_ban(t, "203.0.113.2", T0_US, 60);
    auto_ban(t, "203.0.113.3", T0_US, 5);
    rl2_overrides_count_bans(t, &now, &op, &au);
    assert_int_equal(op, 3);
    assert_int_equal(au, 3);
    /* Expired entries count no more, before any write purges them. */
    now = at(T0_US + 10 * S);
    rl2_overrides_count_bans(t, &now, &op, &au);
    assert_int_equal(op, 2);
    assert_int_equal(au, 2);
    /* An operator's ban of the same target replaces the automatic one,
     * and counts as the operator's. */
    o = ovr(RL2_OVR_BAN, "203.0.113.1");
    set_ok(t, &o, T0_US + 10 * S, NULL);
    rl2_overrides_count_bans(t, &now, &op, &au);
    assert_int_equal(op, 3);
    assert_int_equal(au, 1);
    rl2_overrides_close(t);
}

static void
test_newest_entries_of_one_origin(void **state)
{
    rl2_overrides_t *t = open_table(NULL);
    rl2_override_t   o, out[RL2_OVR_NEWEST_MAX + 1];
    rl2_clock_t      now = at(T0_US + 100 * S);
    char             a[32];
    size_t           shown = 99;

    (void)state;
    assert_int_equal(rl2_overrides_newest(t, 1, &now, out, 50, &shown), 0);
    assert_int_equal(shown, 0);
    /* 60 automatic bans, one a second, in an order unlike their slots'. */
    for (int i = 0; i < 60; i++) {
        int k = (i * 37) % 60;

        addr_of(k, a, sizeof(a));
        auto_ban(t, a, T0_US + k * S, 3600);
    }
    o = ovr(RL2_OVR_TIER, "user:alice");
    snprintf(o.tier, sizeof(o.tier), "pro");
    o.created_us = T0_US + 30 * S;
    set_ok(t, &o, T0_US + 30 * S, NULL);
    o = ovr(RL2_OVR_BAN, "user:<script>");
    o.created_us = T0_US + 40 * S;
    set_ok(t, &o, T0_US + 40 * S, NULL);

    assert_int_equal(rl2_overrides_newest(t, 1, &now, out, 50, &shown), 60);
    assert_int_equal(shown, 50);
    for (size_t i = 0; i < shown; i++) {
        assert_true(rl2_override_is_auto(&out[i]));
        assert_int_equal(out[i].created_us, T0_US + (int64_t)(59 - i) * S);
    }
    addr_of(59, a, sizeof(a));
    assert_string_equal(out[0].target, a);

    /* The operators' entries: every other one, newest first. */
    assert_int_equal(rl2_overrides_newest(t, 0, &now, out, 50, &shown), 2);
    assert_int_equal(shown, 2);
    assert_string_equal(out[0].target, "user:<script>");
    assert_int_equal(out[0].kind, RL2_OVR_BAN);
    assert_false(rl2_override_is_auto(&out[0]));
    assert_string_equal(out[1].target, "user:alice");

    /* Never more than RL2_OVR_NEWEST_MAX, whatever max says. */
    assert_int_equal(
        rl2_overrides_newest(t, 1, &now, out, RL2_OVR_NEWEST_MAX + 1, &shown),
        60);
    assert_int_equal(shown, 60);
    assert_int_equal(rl2_overrides_newest(t, 1, &now, out, 0, &shown), 60);
    assert_int_equal(shown, 0);
    rl2_overrides_close(t);
}

static void
test_newest_is_bounded(void **state)
{
    rl2_overrides_t      *t = open_table(NULL);
    static rl2_override_t out[RL2_OVR_NEWEST_MAX];
    rl2_clock_t           now = at(T0_US + 1000 * S);
    char                  a[32];
    size_t                shown = 0;

    (void)state;
    for (int i = 0; i < RL2_OVR_NEWEST_MAX + 20; i++) {
        rl2_override_t o;

        addr_of(i, a, sizeof(a));
        o = ovr(RL2_OVR_BAN, a);
        o.created_us = T0_US + i * 1000;
        set_ok(t, &o, T0_US, NULL);
    }
    assert_int_equal(
        rl2_overrides_newest(t, 0, &now, out, RL2_OVR_NEWEST_MAX + 100, &shown),
        RL2_OVR_NEWEST_MAX + 20);
    assert_int_equal(shown, RL2_OVR_NEWEST_MAX);
    assert_int_equal(out[0].created_us,
                     T0_US + (RL2_OVR_NEWEST_MAX + 19) * 1000);
    assert_int_equal(out[RL2_OVR_NEWEST_MAX - 1].created_us, T0_US + 20 * 1000);
    rl2_overrides_close(t);
}

static void
test_auto_ban_rule_from_its_reason(void **state)
{
    rl2_override_t o = ovr(RL2_OVR_BAN, "192.0.2.1");
    char           rule[8];

    (void)state;
    snprintf(o.author, sizeof(o.author), "%s", RL2_OVR_AUTO_AUTHOR);
    snprintf(o.reason, sizeof(o.reason),
             "more than 5 refusals in 60s (rule login, limit login)");
    assert_true(rl2_override_is_auto(&o));
    rl2_ovr_auto_rule(&o, rule, sizeof(rule));
    assert_string_equal(rule, "login");
    /* Cut to the buffer. */
    snprintf(o.reason, sizeof(o.reason), "x (rule a-very-long-rule, limit l)");
    rl2_ovr_auto_rule(&o, rule, sizeof(rule));
    assert_string_equal(rule, "a-very-");
    /* A reason that names no rule. */
    snprintf(o.reason, sizeof(o.reason), "by hand");
    rl2_ovr_auto_rule(&o, rule, sizeof(rule));
    assert_string_equal(rule, "");
    /* An operator's ban, whatever its reason says, is not automatic. */
    snprintf(o.author, sizeof(o.author), "root");
    snprintf(o.reason, sizeof(o.reason), "(rule login, limit login)");
    assert_false(rl2_override_is_auto(&o));
    rl2_ovr_auto_rule(&o, rule, sizeof(rule));
    assert_string_equal(rule, "");
    /* Nor an allow with the automatic author. */
    o = ovr(RL2_OVR_ALLOW, "192.0.2.1");
    snprintf(o.author, sizeof(o.author), "%s", RL2_OVR_AUTO_AUTHOR);
    assert_false(rl2_override_is_auto(&o));
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_target_addresses_are_canonical),
        T(test_target_users_and_keys),
        T(test_target_rules_and_tiers_are_checked_against_the_policy),
        T(test_target_wrong_for_the_kind_is_refused),
        T(test_kind_names),
        T(test_set_replace_remove_list),
        T(test_list_counts_past_its_room),
        T(test_bad_values_are_refused_and_change_nothing),
        T(test_expired_entries_are_ignored_at_once_and_purged_by_the_next_write),
        T(test_expired_entries_count_until_purged),
        T(test_state_file_round_trip),
        T(test_handles_share_the_table),
        T(test_state_file_fills_only_a_new_table),
        T(test_state_file_entries_already_expired_are_skipped),
        T(test_state_file_damaged_line_names_file_and_line),
        T(test_unwritable_state_file_fails_and_changes_nothing),
        T(test_missing_state_folder_fails_every_change),
        T(test_longest_prefix_wins),
        T(test_longest_ipv6_prefix_across_words),
        T(test_prefix_zero_and_ipv6_networks),
        T(test_ten_thousand_bans),
        T(test_full_table_is_refused),
        T(test_users_keys_allows_and_the_emergency),
        T(test_factors_multiply_within_bounds),
        T(test_rule_modes),
        T(test_idle_and_identity_counters),
        T(test_bans_counted_by_origin),
        T(test_newest_entries_of_one_origin),
        T(test_newest_is_bounded),
        T(test_auto_ban_rule_from_its_reason),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
