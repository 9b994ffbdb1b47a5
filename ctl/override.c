/*
 * override.c -- the verbs that change the runtime override table: ban,
 * unban, allow, disallow, tier, untier, boost, unboost, mode, emergency.
 *
 * Each verb reads its arguments into one change (a kind, a target in the
 * table's canonical form, a value) before anything is opened, so a bad
 * input changes nothing; then it opens the audit file (a file that cannot
 * be written stops the change before it is made), the table, makes the
 * change (which the core keeps in the state file, or does not make), and
 * records it.  A removal of what is not there is no change: nothing is
 * recorded, and the exit status is 0, so that scripts may repeat one.
 */
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ratelimit2/audit.h"
#include "ratelimit2/overrides.h"

#include "ctl.h"

/* One change, as the command line asks for it. */
typedef struct {
    const char    *verb; /* the subcommand, for the audit trail */
    rl2_override_t o;    /* kind, target, value */
    int            remove;
} rl2_ctl_change_t;

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
                 { RL2_CTL_TAKES_JSON, "--json or --html" },
                 { RL2_CTL_TAKES_LOCAL, "--local" } };
    const unsigned given =
        (o->ttl_us != 0 ? RL2_CTL_TAKES_TTL : 0)
        | (o->reason != NULL ? RL2_CTL_TAKES_REASON : 0)
        | (o->factor != NULL || o->allow_list_only ? RL2_CTL_TAKES_FACTOR : 0)
        | (o->since_us != 0 ? RL2_CTL_TAKES_SINCE : 0)
        | (o->clear ? RL2_CTL_TAKES_CLEAR : 0)
        | (o->format != RL2_CTL_TEXT ? RL2_CTL_TAKES_JSON : 0)
        | (o->audit_local ? RL2_CTL_TAKES_LOCAL : 0);

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

/* A target for kind, canonical; rule:, tier: and key: need the policy,
 * which is only read when its file exists. */
static int
rl2_ctl_target(const rl2_ctl_opts_t *o, rl2_ovr_kind_t kind, const char *text,
               rl2_override_t *ov)
{
    rl2_err_t err;

    memset(ov, 0, sizeof(*ov));
    if (o->policy_loaded == NULL
        && (strncmp(text, "rule:", 5) == 0 || strncmp(text, "tier:", 5) == 0
            || strncmp(text, "key:", 4) == 0)) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "%s: needs the policy, which says what the "
                            "rules, tiers and the key's hash are (-c; %s "
                            "does not exist)",
                            text, o->policy);
    }
    if (rl2_override_target(o->policy_loaded, kind, text, ov, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s", err.msg);
    }
    return RL2_CTL_OK;
}

/* TIER of `tier TARGET TIER`: one of the policy's. */
static int
rl2_ctl_tier_name(const rl2_ctl_opts_t *o, const char *name, rl2_override_t *ov)
{
    const rl2_policy_t *p = o->policy_loaded;
    rl2_err_t           err;

    if (p == NULL) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "tier %s: needs the policy, which names the "
                            "tiers (-c; %s does not exist)",
                            name, o->policy);
    }
    if (rl2_ovr_value_parse_text(ov, name, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s", err.msg);
    }
    for (size_t i = 0; i < p->n_tiers; i++) {
        if (strcmp(p->tiers[i].name, name) == 0) {
            return RL2_CTL_OK;
        }
    }
    return rl2_ctl_fail(RL2_CTL_USAGE, "the policy has no tier \"%s\"%s", name,
                        p->n_tiers == 0 ? " (it has no tiers)" : "");
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
    conf.redis = o->backend.redis_enabled ? &o->backend.redis : NULL;
    if (rl2_audit_open(&conf, audit, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s (nothing was changed)", err.msg);
    }
    return RL2_CTL_OK;
}

/* Set or remove in the table; *before gets what was there. */
static int
rl2_ctl_change_table(const rl2_ctl_opts_t *o, const char *state,
                     const rl2_ctl_change_t *ch, const rl2_clock_t *now,
                     rl2_override_t *before)
{
    rl2_overrides_t *t;
    rl2_err_t        err;
    rl2_status_t     st;

    if (rl2_overrides_open(o->zone, state, o->backend.shm_mode, &t, &err)
        != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    /* With Redis (-R, or the policy's redis group), the fleet's table:
     * the change goes to Redis first, or is refused. */
    if (o->backend.redis_enabled
        && rl2_overrides_redis_attach(t, &o->backend.redis, &err) != RL2_OK) {
        rl2_overrides_close(t);
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s (nothing was changed)", err.msg);
    }
    st = ch->remove ? rl2_overrides_remove(t, ch->o.kind, ch->o.target_kind,
                                           ch->o.target, now, before, &err)
                    : rl2_overrides_set(t, &ch->o, now, before, &err);
    rl2_overrides_close(t);
    if (st != RL2_OK) {
        return rl2_ctl_fail(st == RL2_ERR_INVALID ? RL2_CTL_USAGE
                                                  : RL2_CTL_FAIL,
                            "%s (nothing was changed)", err.msg);
    }
    return RL2_CTL_OK;
}

static int
rl2_ctl_record(const rl2_ctl_opts_t *o, rl2_audit_t *audit,
               const rl2_ctl_change_t *ch, const rl2_override_t *before,
               const rl2_clock_t *now)
{
    rl2_audit_entry_t e;
    rl2_err_t         err;
    const char       *why;

    memset(&e, 0, sizeof(e));
    e.time_us = now->wall_us;
    rl2_ctl_author(e.author, sizeof(e.author));
    e.origin = RL2_AUDIT_CTL;
    snprintf(e.verb, sizeof(e.verb), "%s", ch->verb);
    e.kind = ch->o.kind;
    snprintf(e.target, sizeof(e.target), "%s", ch->o.target);
    e.before = *before;
    if (!ch->remove) {
        e.after = ch->o;
    }
    snprintf(e.reason, sizeof(e.reason), "%s", o->reason ? o->reason : "");
    if (rl2_audit_record(audit, &e, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL,
                            "%s: the change WAS made but is not in the "
                            "whole audit trail",
                            err.msg);
    }
    if ((why = rl2_audit_syslog_error(audit)) != NULL) {
        fprintf(stderr,
                "ratelimit2ctl: warning: the change is in the audit file "
                "but not in syslog: %s\n",
                why);
    }
    return RL2_CTL_OK;
}

static int
rl2_ctl_apply(const rl2_ctl_opts_t *o, rl2_ctl_change_t *ch)
{
    char           state[4096], path[4096], was[256], now_is[256];
    rl2_audit_t   *audit;
    rl2_override_t before;
    rl2_clock_t    now;
    int            rc;

    rl2_ctl_ovr_paths(o, state, path, sizeof(state));
    if ((rc = rl2_ctl_open_audit(o, path, &audit)) != RL2_CTL_OK) {
        return rc;
    }
    rl2_clock_now(&now);
    ch->o.created_us = now.wall_us;
    ch->o.expires_us = o->ttl_us != 0 ? now.wall_us + o->ttl_us : 0;
    snprintf(ch->o.reason, sizeof(ch->o.reason), "%s",
             o->reason ? o->reason : "");
    rl2_ctl_author(ch->o.author, sizeof(ch->o.author));
    rc = rl2_ctl_change_table(o, state, ch, &now, &before);
    if (rc == RL2_CTL_OK && ch->remove && before.kind == 0) {
        printf("%s %s: no %s was set; nothing changed\n", ch->verb,
               ch->o.target, rl2_ovr_kind_name(ch->o.kind));
    }
    else if (rc == RL2_CTL_OK) {
        rc = rl2_ctl_record(o, audit, ch, &before, &now);
        rl2_ctl_describe(&before, now.wall_us, was, sizeof(was));
        snprintf(now_is, sizeof(now_is), "removed");
        if (!ch->remove) {
            rl2_ctl_describe(&ch->o, now.wall_us, now_is, sizeof(now_is));
        }
        printf("%s %s: %s (was: %s)\n", ch->verb, ch->o.target, now_is, was);
    }
    rl2_audit_close(audit);
    return rc;
}

/* ---- the verbs ------------------------------------------------------------
 */

/* ban, allow: TARGET; unban, disallow, untier: TARGET, removed. */
static int
rl2_ctl_client_verb(const rl2_ctl_opts_t *o, int argc, char **argv,
                    const char *verb, rl2_ovr_kind_t kind, int remove)
{
    rl2_ctl_change_t ch = { .verb = verb, .remove = remove };
    int              rc;

    if (argc != 1) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: %s TARGET%s", verb,
                            remove ? " [--reason T]"
                                   : " [--ttl D] [--reason T]");
    }
    if ((rc = rl2_ctl_takes(
             o, verb, RL2_CTL_TAKES_REASON | (remove ? 0 : RL2_CTL_TAKES_TTL)))
            != RL2_CTL_OK
        || (rc = rl2_ctl_target(o, kind, argv[0], &ch.o)) != RL2_CTL_OK) {
        return rc;
    }
    return rl2_ctl_apply(o, &ch);
}

int
rl2_ctl_ban(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "ban", RL2_OVR_BAN, 0);
}

int
rl2_ctl_unban(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "unban", RL2_OVR_BAN, 1);
}

int
rl2_ctl_allow(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "allow", RL2_OVR_ALLOW, 0);
}

int
rl2_ctl_disallow(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "disallow", RL2_OVR_ALLOW, 1);
}

int
rl2_ctl_untier(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "untier", RL2_OVR_TIER, 1);
}

int
rl2_ctl_tier(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_ctl_change_t ch = { .verb = "tier" };
    int              rc;

    if (argc != 2) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: tier TARGET TIER [--ttl D] "
                                           "[--reason T]");
    }
    if ((rc =
             rl2_ctl_takes(o, "tier", RL2_CTL_TAKES_TTL | RL2_CTL_TAKES_REASON))
            != RL2_CTL_OK
        || (rc = rl2_ctl_target(o, RL2_OVR_TIER, argv[0], &ch.o)) != RL2_CTL_OK
        || (rc = rl2_ctl_tier_name(o, argv[1], &ch.o)) != RL2_CTL_OK) {
        return rc;
    }
    return rl2_ctl_apply(o, &ch);
}

int
rl2_ctl_boost(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_ctl_change_t ch = { .verb = "boost" };
    rl2_err_t        err;
    int              rc;

    if (argc != 2) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "usage: boost rule:NAME|tier:NAME|'*' FACTOR "
                            "[--ttl D] [--reason T]");
    }
    if ((rc = rl2_ctl_takes(o, "boost",
                            RL2_CTL_TAKES_TTL | RL2_CTL_TAKES_REASON))
            != RL2_CTL_OK
        || (rc = rl2_ctl_target(o, RL2_OVR_BOOST, argv[0], &ch.o))
               != RL2_CTL_OK) {
        return rc;
    }
    if (rl2_ovr_factor_parse(argv[1], &ch.o.factor_ppm, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s", err.msg);
    }
    return rl2_ctl_apply(o, &ch);
}

int
rl2_ctl_unboost(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    return rl2_ctl_client_verb(o, argc, argv, "unboost", RL2_OVR_BOOST, 1);
}

/* RULE as "login" or "rule:login". */
static int
rl2_ctl_rule_target(const rl2_ctl_opts_t *o, const char *rule,
                    rl2_override_t *ov)
{
    char text[RL2_OVR_TARGET_MAX + 8];

    snprintf(text, sizeof(text), "%s%s",
             strncmp(rule, "rule:", 5) == 0 ? "" : "rule:", rule);
    return rl2_ctl_target(o, RL2_OVR_MODE, text, ov);
}

int
rl2_ctl_rule_mode(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_ctl_change_t ch = { .verb = o->clear ? "mode-clear" : "mode",
                            .remove = o->clear };
    rl2_err_t        err;
    int              rc;

    if (argc != (o->clear ? 1 : 2)) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "usage: mode RULE enforce|dry_run|off [--ttl D] "
                            "[--reason T], or mode RULE --clear");
    }
    if ((rc = rl2_ctl_takes(o, o->clear ? "mode --clear" : "mode",
                            RL2_CTL_TAKES_REASON | RL2_CTL_TAKES_CLEAR
                                | (o->clear ? 0 : RL2_CTL_TAKES_TTL)))
            != RL2_CTL_OK
        || (rc = rl2_ctl_rule_target(o, argv[0], &ch.o)) != RL2_CTL_OK) {
        return rc;
    }
    if (!o->clear && rl2_ovr_value_parse_text(&ch.o, argv[1], &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s", err.msg);
    }
    return rl2_ctl_apply(o, &ch);
}

int
rl2_ctl_emergency(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    int              on = argc == 1 && strcmp(argv[0], "on") == 0;
    rl2_ctl_change_t ch = { .verb = on ? "emergency-on" : "emergency-off",
                            .remove = !on };
    rl2_err_t        err;
    int              rc;

    if (argc != 1 || (!on && strcmp(argv[0], "off") != 0)
        || (on && (o->factor != NULL) == o->allow_list_only)) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "usage: emergency on --factor F | "
                            "--allow-list-only [--ttl D] [--reason T], or "
                            "emergency off [--reason T]");
    }
    if ((rc = rl2_ctl_takes(
             o, on ? "emergency on" : "emergency off",
             RL2_CTL_TAKES_REASON
                 | (on ? RL2_CTL_TAKES_TTL | RL2_CTL_TAKES_FACTOR : 0)))
            != RL2_CTL_OK
        || (rc = rl2_ctl_target(o, RL2_OVR_EMERGENCY, "*", &ch.o))
               != RL2_CTL_OK) {
        return rc;
    }
    if (o->factor != NULL
        && rl2_ovr_factor_parse(o->factor, &ch.o.factor_ppm, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "%s", err.msg);
    }
    return rl2_ctl_apply(o, &ch);
}
