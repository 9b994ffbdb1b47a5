/*
 * override.c -- the verbs that change the runtime override table: ban,
 * unban, allow, disallow, tier, untier, boost, unboost, mode, emergency.
 *
 * The command line around the core's verbs (admin.h), which the HTTP
 * admin interface shares: each verb checks its arguments' number and
 * options and hands them to rl2_admin_read(), which reads them into one
 * change (a kind, a target in the table's canonical form, a value)
 * before anything is opened, so a bad input changes nothing; then the
 * audit file is opened (a file that cannot be written stops the change
 * before it is made), and the table, and rl2_admin_apply() makes the
 * change (which the core keeps in the state file, or does not make) and
 * records it.  A removal of what is not there is no change: nothing is
 * recorded, and the exit status is 0, so that scripts may repeat one.
 */
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ratelimit2/admin.h"
#include "ratelimit2/audit.h"
#include "ratelimit2/overrides.h"

#include "ctl.h"

/* ---- what the verbs share with override_list.c and audit.c -------------- */

int
rl2_ctl_takes(const rl2_ctl_opts_t *o, const char *cmd, unsigned takes)
{
    static const struct {
        unsigned    bit;
        const char *name;
    } opts[] = { { RL2_CTL_TAKES_TTL, "--ttl" },
                 { RL2_CTL_TAKES_REASON, "--reason" },
                 { RL2_CTL_TAKES_FACTOR, "--factor or --allow-list-only" },
                 { RL2_CTL_TAKES_SINCE, "--since" },
                 { RL2_CTL_TAKES_CLEAR, "--clear" },
                 { RL2_CTL_TAKES_JSON, "--json or --html" } };
    const unsigned given =
        (o->ttl_us != 0 ? RL2_CTL_TAKES_TTL : 0)
        | (o->reason != NULL ? RL2_CTL_TAKES_REASON : 0)
        | (o->factor != NULL || o->allow_list_only ? RL2_CTL_TAKES_FACTOR : 0)
        | (o->since_us != 0 ? RL2_CTL_TAKES_SINCE : 0)
        | (o->clear ? RL2_CTL_TAKES_CLEAR : 0)
        | (o->format != RL2_CTL_TEXT ? RL2_CTL_TAKES_JSON : 0);

    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if ((given & opts[i].bit) && !(takes & opts[i].bit)) {
            return rl2_ctl_fail(RL2_CTL_USAGE, "%s takes no %s", cmd,
                                opts[i].name);
        }
    }
    if (o->format == RL2_CTL_HTML) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s takes no --html", cmd);
    }
    return RL2_CTL_OK;
}

void
rl2_ctl_ovr_paths(const rl2_ctl_opts_t *o, char *state, char *audit,
                  size_t size)
{
    const char *zone = o->zone[0] == '/' ? o->zone + 1 : o->zone;

    if (o->state_file != NULL) {
        snprintf(state, size, "%s", o->state_file);
    }
    else {
        snprintf(state, size, "%s/%s.overrides", RL2_CTL_STATE_DIR, zone);
    }
    if (o->audit_file != NULL) {
        snprintf(audit, size, "%s", o->audit_file);
    }
    else if (o->policy_loaded != NULL
             && o->policy_loaded->overrides_audit != NULL) {
        /* Where the servers' admin interface appends too. */
        snprintf(audit, size, "%s", o->policy_loaded->overrides_audit);
    }
    else {
        snprintf(audit, size, "%s/%s.audit", RL2_CTL_STATE_DIR, zone);
    }
}

void
rl2_ctl_left(int64_t left_us, char *buf, size_t size)
{
    int64_t s = left_us <= 0 ? 0 : (left_us + RL2_US_PER_S - 1) / RL2_US_PER_S;

    if (s >= 86400) {
        snprintf(buf, size, "%" PRId64 "d%02" PRId64 "h", s / 86400,
                 s % 86400 / 3600);
    }
    else if (s >= 3600) {
        snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m", s / 3600,
                 s % 3600 / 60);
    }
    else if (s >= 60) {
        snprintf(buf, size, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    }
    else {
        snprintf(buf, size, "%" PRId64 "s", s);
    }
}

/* ---- reading the command line -------------------------------------------- */

/* What the verb is given besides its arguments: the options. */
static rl2_admin_args_t
rl2_ctl_args(const rl2_ctl_opts_t *o, const char *verb)
{
    rl2_admin_args_t a = { .verb = verb,
                           .factor = o->factor,
                           .clear = o->clear,
                           .allow_list_only = o->allow_list_only,
                           .ttl_us = o->ttl_us,
                           .reason = o->reason };

    return a;
}

/* The options that give what the core says the verb takes. */
static unsigned
rl2_ctl_takes_of(const rl2_admin_args_t *a)
{
    const unsigned t = rl2_admin_takes(a);

    return (t & RL2_ADMIN_TAKES_TTL ? RL2_CTL_TAKES_TTL : 0)
           | (t & RL2_ADMIN_TAKES_REASON ? RL2_CTL_TAKES_REASON : 0)
           | (t & (RL2_ADMIN_TAKES_FACTOR | RL2_ADMIN_TAKES_ALLOW_LIST_ONLY)
                  ? RL2_CTL_TAKES_FACTOR
                  : 0)
           | (t & RL2_ADMIN_TAKES_CLEAR ? RL2_CTL_TAKES_CLEAR : 0);
}

/* rule:, tier: and key: targets need the policy, which is only read
 * when its file exists: say which file. */
static int
rl2_ctl_needs_policy(const rl2_ctl_opts_t *o, const char *text)
{
    if (o->policy_loaded == NULL
        && (strncmp(text, "rule:", 5) == 0 || strncmp(text, "tier:", 5) == 0
            || strncmp(text, "key:", 4) == 0)) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "%s: needs the policy, which says what the "
                            "rules, tiers and the key's hash are (-c; %s "
                            "does not exist)",
                            text, o->policy);
    }
    return RL2_CTL_OK;
}

/* ---- making the change ----------------------------------------------------
 */

static void
rl2_ctl_author(char *out, size_t size)
{
    const struct passwd *pw = getpwuid(geteuid());

    if (pw != NULL && pw->pw_name != NULL) {
        snprintf(out, size, "%s", pw->pw_name);
    }
    else {
        snprintf(out, size, "uid %lu", (unsigned long)geteuid());
    }
}

/* "banned until 2026-...Z (59m58s left)", "x2, no end", "nothing". */
static void
rl2_ctl_describe(const rl2_override_t *ov, int64_t now_us, char *buf,
                 size_t size)
{
    char value[RL2_OVR_NAME_MAX + 16], end[28], left[32];

    if (ov->kind == 0) {
        snprintf(buf, size, "nothing");
        return;
    }
    rl2_ovr_value_text(ov, value, sizeof(value));
    if (ov->expires_us == 0) {
        snprintf(buf, size, "%s, no end", value);
        return;
    }
    rl2_audit_time_format(ov->expires_us, end);
    rl2_ctl_left(ov->expires_us - now_us, left, sizeof(left));
    snprintf(buf, size, "%s until %s (%s left)", value, end, left);
}

static int
rl2_ctl_open_audit(const rl2_ctl_opts_t *o, const char *path,
                   rl2_audit_t **audit)
{
    rl2_audit_conf_t conf;
    rl2_err_t        err;

    rl2_audit_conf_default(&conf);
    conf.path = path;
    /* Syslog where the policy sends its alerts (alerts.socket, ident). */
    conf.syslog_socket = o->backend.alert_socket;
    conf.ident = o->backend.alert_ident;
    if (rl2_audit_open(&conf, audit, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s (nothing was changed)", err.msg);
    }
    return RL2_CTL_OK;
}

static int
rl2_ctl_open_table(const rl2_ctl_opts_t *o, const char *state,
                   rl2_overrides_t **t)
{
    rl2_err_t err;

    if (rl2_overrides_open(o->zone, state, o->backend.shm_mode, t, &err)
        != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    /* With Redis (-R, or the policy's redis group), the fleet's table:
     * the change goes to Redis first, or is refused. */
    if (o->backend.redis_enabled
        && rl2_overrides_redis_attach(*t, &o->backend.redis, &err) != RL2_OK) {
        rl2_overrides_close(*t);
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s (nothing was changed)", err.msg);
    }
    return RL2_CTL_OK;
}

/* What was made, on stdout; and a syslog line that was not sent. */
static void
rl2_ctl_said(const rl2_admin_change_t *ch, const rl2_override_t *before,
             const rl2_clock_t *now)
{
    char was[256], now_is[256];

    rl2_ctl_describe(before, now->wall_us, was, sizeof(was));
    snprintf(now_is, sizeof(now_is), "removed");
    if (!ch->remove) {
        rl2_ctl_describe(&ch->o, now->wall_us, now_is, sizeof(now_is));
    }
    printf("%s %s: %s (was: %s)\n", ch->verb, ch->o.target, now_is, was);
}

/* Read the change (the core's reading: admin.h), open the audit file (a
 * file that cannot be written stops the change before it is made) and
 * the table, make it, record it. */
static int
rl2_ctl_apply(const rl2_ctl_opts_t *o, const rl2_admin_args_t *args)
{
    char               state[4096], path[4096], author[RL2_OVR_AUTHOR_MAX];
    rl2_admin_t        admin = { .policy = o->policy_loaded,
                                 .author = author,
                                 .origin = RL2_AUDIT_CTL };
    rl2_admin_change_t ch;
    rl2_override_t     before;
    rl2_clock_t        now;
    rl2_err_t          err;
    rl2_status_t       st;
    const char        *why;
    int                rc, made;

    if (rl2_admin_read(o->policy_loaded, args, &ch, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s", err.msg);
    }
    rl2_ctl_ovr_paths(o, state, path, sizeof(state));
    if ((rc = rl2_ctl_open_audit(o, path, &admin.audit)) != RL2_CTL_OK) {
        return rc;
    }
    if ((rc = rl2_ctl_open_table(o, state, &admin.table)) != RL2_CTL_OK) {
        rl2_audit_close(admin.audit);
        return rc;
    }
    rl2_ctl_author(author, sizeof(author));
    rl2_clock_now(&now);
    st = rl2_admin_apply(&admin, &ch, &now, &before, &made, &err);
    rl2_overrides_close(admin.table);
    if (st != RL2_OK) {
        rc = rl2_ctl_fail(st == RL2_ERR_INVALID && !made ? RL2_CTL_USAGE
                                                         : RL2_CTL_FAIL,
                          "%s", err.msg);
    }
    else if (ch.remove && before.kind == 0) {
        printf("%s %s: no %s was set; nothing changed\n", ch.verb, ch.o.target,
               rl2_ovr_kind_name(ch.o.kind));
    }
    else if ((why = rl2_audit_syslog_error(admin.audit)) != NULL) {
        fprintf(stderr,
                "ratelimit2ctl: warning: the change is in the audit file "
                "but not in syslog: %s\n",
                why);
    }
    if (made) {
        rl2_ctl_said(&ch, &before, &now);
    }
    rl2_audit_close(admin.audit);
    return rc;
}

/* ---- the verbs ------------------------------------------------------------
 */

/* ban, allow, unban, disallow, untier, unboost: TARGET. */
static int
rl2_ctl_client_verb(const rl2_ctl_opts_t *o, int argc, char **argv,
                    const char *verb)
{
    rl2_admin_args_t a = rl2_ctl_args(o, verb);
    const unsigned   takes = rl2_ctl_takes_of(&a);
    int              rc;

    if (argc != 1) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: %s TARGET%s", verb,
                            takes & RL2_CTL_TAKES_TTL
                                ? " [--ttl D] [--reason T]"
                                : " [--reason T]");
    }
    if ((rc = rl2_ctl_takes(o, verb, takes)) != RL2_CTL_OK
        || (rc = rl2_ctl_needs_policy(o, argv[0])) != RL2_CTL_OK) {
        return rc;
    }
    a.target = argv[0];
    return rl2_ctl_apply(o, &a);
}

int
rl2_ctl_ban(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "ban");
}

int
rl2_ctl_unban(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "unban");
}

int
rl2_ctl_allow(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "allow");
}

int
rl2_ctl_disallow(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "disallow");
}

int
rl2_ctl_untier(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "untier");
}

int
rl2_ctl_unboost(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "unboost");
}

int
rl2_ctl_tier(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_admin_args_t a = rl2_ctl_args(o, "tier");
    int              rc;

    if (argc != 2) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: tier TARGET TIER [--ttl D] "
                                           "[--reason T]");
    }
    if ((rc = rl2_ctl_takes(o, "tier", rl2_ctl_takes_of(&a))) != RL2_CTL_OK
        || (rc = rl2_ctl_needs_policy(o, argv[0])) != RL2_CTL_OK) {
        return rc;
    }
    if (o->policy_loaded == NULL) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "tier %s: needs the policy, which names the "
                            "tiers (-c; %s does not exist)",
                            argv[1], o->policy);
    }
    a.target = argv[0];
    a.tier = argv[1];
    return rl2_ctl_apply(o, &a);
}

int
rl2_ctl_boost(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_admin_args_t a = rl2_ctl_args(o, "boost");
    int              rc;

    if (argc != 2) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "usage: boost rule:NAME|tier:NAME|'*' FACTOR "
                            "[--ttl D] [--reason T]");
    }
    /* FACTOR is an argument here, never --factor. */
    if ((rc = rl2_ctl_takes(o, "boost", rl2_ctl_takes_of(&a))) != RL2_CTL_OK
        || (rc = rl2_ctl_needs_policy(o, argv[0])) != RL2_CTL_OK) {
        return rc;
    }
    a.target = argv[0];
    a.factor = argv[1];
    return rl2_ctl_apply(o, &a);
}

int
rl2_ctl_rule_mode(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_admin_args_t a = rl2_ctl_args(o, "mode");
    char             rule[RL2_OVR_TARGET_MAX + 8];
    int              rc;

    if (argc != (o->clear ? 1 : 2)) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "usage: mode RULE enforce|dry_run|off [--ttl D] "
                            "[--reason T], or mode RULE --clear");
    }
    /* RULE as "login" or "rule:login". */
    snprintf(rule, sizeof(rule), "%s%s",
             strncmp(argv[0], "rule:", 5) == 0 ? "" : "rule:", argv[0]);
    if ((rc = rl2_ctl_takes(o, o->clear ? "mode --clear" : "mode",
                            rl2_ctl_takes_of(&a)))
            != RL2_CTL_OK
        || (rc = rl2_ctl_needs_policy(o, rule)) != RL2_CTL_OK) {
        return rc;
    }
    a.target = rule;
    a.mode = o->clear ? NULL : argv[1];
    return rl2_ctl_apply(o, &a);
}

int
rl2_ctl_emergency(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    int              on = argc == 1 && strcmp(argv[0], "on") == 0;
    rl2_admin_args_t a = rl2_ctl_args(o, "emergency");
    int              rc;

    if (argc != 1 || (!on && strcmp(argv[0], "off") != 0)
        || (on && (o->factor != NULL) == o->allow_list_only)) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "usage: emergency on --factor F | "
                            "--allow-list-only [--ttl D] [--reason T], or "
                            "emergency off [--reason T]");
    }
    a.state = argv[0];
    if ((rc = rl2_ctl_takes(o, on ? "emergency on" : "emergency off",
                            rl2_ctl_takes_of(&a)))
        != RL2_CTL_OK) {
        return rc;
    }
    return rl2_ctl_apply(o, &a);
}
