/*
 * admin.c -- the verbs that change the runtime override table, read and
 * made in one place for every interface (admin.h): ratelimit2ctl's
 * command line and the HTTP admin interface of the Apache module and of
 * ratelimit2-fcgi.
 *
 * rl2_admin_read() is the one reading of a verb: which value it needs,
 * which of TTL, reason, factor, allow-list-only and clear it takes, and
 * every check against the policy, all before anything is opened or
 * written.  rl2_admin_apply() makes the change in the table and records
 * it in the audit trail.  rl2_admin_http() is the HTTP form around
 * them: the method, the media type, the body as one JSON object
 * (admin_json.c), and the answer as JSON written with the audit line's
 * own escaper (audit.c).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ratelimit2/admin.h"
#include "control_internal.h"
#include "policy/policy_internal.h"

/* What a verb needs as its value (the members of the HTTP form; the
 * arguments of ratelimit2ctl).  Beside them, what it takes is in
 * RL2_ADMIN_TAKES_* bits. */
enum {
    RL2_ADMIN_NEEDS_TARGET = 1u << 0,
    RL2_ADMIN_NEEDS_RULE = 1u << 1,
    RL2_ADMIN_NEEDS_TIER = 1u << 2,
    RL2_ADMIN_NEEDS_FACTOR = 1u << 3,
    RL2_ADMIN_NEEDS_MODE = 1u << 4,
    RL2_ADMIN_NEEDS_STATE = 1u << 5
};

typedef struct {
    const char    *name;
    rl2_ovr_kind_t kind;
    int            remove;
    unsigned       needs; /* RL2_ADMIN_NEEDS_* */
    unsigned       takes; /* RL2_ADMIN_TAKES_*, as given in full */
} rl2_admin_verb_t;

#define TTL_REASON (RL2_ADMIN_TAKES_TTL | RL2_ADMIN_TAKES_REASON)

static const rl2_admin_verb_t rl2_admin_verbs[] = {
    { "ban", RL2_OVR_BAN, 0, RL2_ADMIN_NEEDS_TARGET, TTL_REASON },
    { "unban", RL2_OVR_BAN, 1, RL2_ADMIN_NEEDS_TARGET, RL2_ADMIN_TAKES_REASON },
    { "allow", RL2_OVR_ALLOW, 0, RL2_ADMIN_NEEDS_TARGET, TTL_REASON },
    { "disallow", RL2_OVR_ALLOW, 1, RL2_ADMIN_NEEDS_TARGET,
      RL2_ADMIN_TAKES_REASON },
    { "tier", RL2_OVR_TIER, 0, RL2_ADMIN_NEEDS_TARGET | RL2_ADMIN_NEEDS_TIER,
      TTL_REASON },
    { "untier", RL2_OVR_TIER, 1, RL2_ADMIN_NEEDS_TARGET,
      RL2_ADMIN_TAKES_REASON },
    { "boost", RL2_OVR_BOOST, 0,
      RL2_ADMIN_NEEDS_TARGET | RL2_ADMIN_NEEDS_FACTOR, TTL_REASON },
    { "unboost", RL2_OVR_BOOST, 1, RL2_ADMIN_NEEDS_TARGET,
      RL2_ADMIN_TAKES_REASON },
    /* mode RULE MODE, or mode RULE --clear: needs and takes by clear. */
    { "mode", RL2_OVR_MODE, 0, RL2_ADMIN_NEEDS_RULE | RL2_ADMIN_NEEDS_MODE,
      TTL_REASON | RL2_ADMIN_TAKES_CLEAR },
    /* emergency on (a factor or allow-list only), emergency off. */
    { "emergency", RL2_OVR_EMERGENCY, 0, RL2_ADMIN_NEEDS_STATE,
      TTL_REASON | RL2_ADMIN_TAKES_FACTOR | RL2_ADMIN_TAKES_ALLOW_LIST_ONLY },
};

static const rl2_admin_verb_t *
rl2_admin_verb(const char *name)
{
    for (size_t i = 0;
         name != NULL
         && i < sizeof(rl2_admin_verbs) / sizeof(rl2_admin_verbs[0]);
         i++) {
        if (strcmp(rl2_admin_verbs[i].name, name) == 0) {
            return &rl2_admin_verbs[i];
        }
    }
    return NULL;
}

static int
rl2_admin_on(const rl2_admin_args_t *a)
{
    return a->state != NULL && strcmp(a->state, "on") == 0;
}

/* " with clear", " off": the form of a verb that takes less, for
 * messages. */
static const char *
rl2_admin_variant(const rl2_admin_verb_t *v, const rl2_admin_args_t *a)
{
    if (v->kind == RL2_OVR_MODE && a->clear) {
        return " with clear";
    }
    return v->kind == RL2_OVR_EMERGENCY && !rl2_admin_on(a) ? " off" : "";
}

unsigned
rl2_admin_takes(const rl2_admin_args_t *a)
{
    const rl2_admin_verb_t *v = rl2_admin_verb(a->verb);

    if (v == NULL) {
        return 0;
    }
    if (v->kind == RL2_OVR_MODE && a->clear) {
        return RL2_ADMIN_TAKES_REASON | RL2_ADMIN_TAKES_CLEAR;
    }
    if (v->kind == RL2_OVR_EMERGENCY && !rl2_admin_on(a)) {
        return RL2_ADMIN_TAKES_REASON;
    }
    return v->takes;
}

/* ---- reading a change ---------------------------------------------------
 */

rl2_status_t
rl2_admin_ttl_parse(const char *text, int64_t *us, rl2_err_t *err)
{
    if (rl2_duration_parse(text, us, err) != RL2_OK) {
        return RL2_ERR_INVALID;
    }
    if (*us < RL2_US_PER_S) {
        return rl2_err_set(err, RL2_ERR_INVALID, "at least 1s, not \"%.40s\"",
                           text);
    }
    if (*us / RL2_US_PER_S > RL2_ADMIN_TTL_MAX_S) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "at most 36500d (100 years), not \"%.40s\"; "
                           "without a ttl it has no end",
                           text);
    }
    return RL2_OK;
}

rl2_status_t
rl2_admin_reason_check(const char *text, rl2_err_t *err)
{
    if (strlen(text) >= RL2_OVR_REASON_MAX) {
        return rl2_err_set(err, RL2_ERR_INVALID, "at most %d bytes",
                           RL2_OVR_REASON_MAX - 1);
    }
    for (const char *p = text; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "no control characters (tab, newline, ...)");
        }
    }
    return RL2_OK;
}

/* What a is given beyond what its verb takes: RL2_ERR_INVALID naming the
 * first. */
static rl2_status_t
rl2_admin_given(const rl2_admin_verb_t *v, const rl2_admin_args_t *a,
                rl2_err_t *err)
{
    static const struct {
        unsigned    bit;
        const char *name;
    } opts[] = { { RL2_ADMIN_TAKES_TTL, "ttl" },
                 { RL2_ADMIN_TAKES_REASON, "reason" },
                 { RL2_ADMIN_TAKES_FACTOR, "factor" },
                 { RL2_ADMIN_TAKES_ALLOW_LIST_ONLY, "allow_list_only" },
                 { RL2_ADMIN_TAKES_CLEAR, "clear" } };
    const unsigned takes = rl2_admin_takes(a);
    /* boost's factor is its value, not an option. */
    const int factor_opt =
        a->factor != NULL && !(v->needs & RL2_ADMIN_NEEDS_FACTOR);
    const unsigned given =
        (a->ttl_us != 0 ? RL2_ADMIN_TAKES_TTL : 0)
        | (a->reason != NULL ? RL2_ADMIN_TAKES_REASON : 0)
        | (factor_opt ? RL2_ADMIN_TAKES_FACTOR : 0)
        | (a->allow_list_only ? RL2_ADMIN_TAKES_ALLOW_LIST_ONLY : 0)
        | (a->clear ? RL2_ADMIN_TAKES_CLEAR : 0);

    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if ((given & opts[i].bit) && !(takes & opts[i].bit)) {
            return rl2_err_set(err, RL2_ERR_INVALID, "%s%s takes no %s",
                               v->name, rl2_admin_variant(v, a), opts[i].name);
        }
    }
    return RL2_OK;
}

/* The target of v, canonical in ch->o: TARGET, "rule:"RULE, or "*". */
static rl2_status_t
rl2_admin_target(const rl2_policy_t *policy, const rl2_admin_verb_t *v,
                 const rl2_admin_args_t *a, rl2_admin_change_t *ch,
                 rl2_err_t *err)
{
    char        text[RL2_OVR_TARGET_MAX + 8];
    const char *t = a->target;

    if (v->kind == RL2_OVR_EMERGENCY) {
        t = "*";
    }
    else if (t == NULL || t[0] == '\0') {
        return rl2_err_set(err, RL2_ERR_INVALID, "%s needs a %s", v->name,
                           v->kind == RL2_OVR_MODE ? "rule" : "target");
    }
    else if (v->kind == RL2_OVR_MODE) {
        /* Whole or refused: a name cut short could be another rule's. */
        if ((size_t)snprintf(text, sizeof(text), "%s%s",
                             strncmp(t, "rule:", 5) == 0 ? "" : "rule:", t)
            >= sizeof(text)) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "mode: the rule \"%.40s...\" has a name too "
                               "long to be the policy's",
                               t);
        }
        t = text;
    }
    if (policy == NULL
        && (strncmp(t, "rule:", 5) == 0 || strncmp(t, "tier:", 5) == 0
            || strncmp(t, "key:", 4) == 0)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "%.40s: needs the policy, which says what the "
                           "rules, tiers and the key's hash are",
                           t);
    }
    return rl2_override_target(policy, v->kind, t, &ch->o, err);
}

/* TIER of tier: one of the policy's. */
static rl2_status_t
rl2_admin_tier(const rl2_policy_t *policy, const char *name,
               rl2_admin_change_t *ch, rl2_err_t *err)
{
    if (name == NULL || name[0] == '\0') {
        return rl2_err_set(err, RL2_ERR_INVALID, "tier needs a tier name");
    }
    if (policy == NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "tier %.40s: needs the policy, which names the "
                           "tiers",
                           name);
    }
    if (rl2_ovr_value_parse_text(&ch->o, name, err) != RL2_OK) {
        return RL2_ERR_INVALID;
    }
    for (size_t i = 0; i < policy->n_tiers; i++) {
        if (strcmp(policy->tiers[i].name, name) == 0) {
            return RL2_OK;
        }
    }
    return rl2_err_set(err, RL2_ERR_INVALID, "the policy has no tier \"%s\"%s",
                       ch->o.tier,
                       policy->n_tiers == 0 ? " (it has no tiers)" : "");
}

/* The value of v: a tier, a factor, a mode, an emergency's factor. */
static rl2_status_t
rl2_admin_value(const rl2_policy_t *policy, const rl2_admin_verb_t *v,
                const rl2_admin_args_t *a, rl2_admin_change_t *ch,
                rl2_err_t *err)
{
    if (v->remove || ch->remove) {
        return RL2_OK;
    }
    switch (v->kind) {
    case RL2_OVR_TIER:
        return rl2_admin_tier(policy, a->tier, ch, err);
    case RL2_OVR_BOOST:
        if (a->factor == NULL) {
            return rl2_err_set(err, RL2_ERR_INVALID, "boost needs a factor");
        }
        return rl2_ovr_factor_parse(a->factor, &ch->o.factor_ppm, err);
    case RL2_OVR_MODE:
        if (a->mode == NULL) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "mode needs a mode (enforce, dry_run or off) "
                               "or clear");
        }
        return rl2_ovr_value_parse_text(&ch->o, a->mode, err);
    case RL2_OVR_EMERGENCY:
        if ((a->factor != NULL) == (a->allow_list_only != 0)) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "emergency on takes a factor or "
                               "allow_list_only, one of them");
        }
        /* Without a factor: 0, allow-list only. */
        return a->factor == NULL
                   ? RL2_OK
                   : rl2_ovr_factor_parse(a->factor, &ch->o.factor_ppm, err);
    default:
        return RL2_OK;
    }
}

rl2_status_t
rl2_admin_read(const rl2_policy_t *policy, const rl2_admin_args_t *a,
               rl2_admin_change_t *ch, rl2_err_t *err)
{
    const rl2_admin_verb_t *v = rl2_admin_verb(a->verb);
    rl2_status_t            st;

    memset(ch, 0, sizeof(*ch));
    if (v == NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID, "unknown verb \"%.40s\"",
                           a->verb != NULL ? a->verb : "");
    }
    if (v->kind == RL2_OVR_EMERGENCY
        && (a->state == NULL
            || (strcmp(a->state, "on") != 0 && strcmp(a->state, "off") != 0))) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "emergency needs a state, \"on\" or \"off\"");
    }
    if (v->kind == RL2_OVR_MODE && a->clear && a->mode != NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "mode takes a mode or clear, not both");
    }
    if ((st = rl2_admin_given(v, a, err)) != RL2_OK) {
        return st;
    }
    if (a->ttl_us != 0 && a->ttl_us < RL2_US_PER_S) {
        return rl2_err_set(err, RL2_ERR_INVALID, "ttl: at least 1s");
    }
    if (a->ttl_us / RL2_US_PER_S > RL2_ADMIN_TTL_MAX_S) {
        return rl2_err_set(err, RL2_ERR_INVALID, "ttl: at most 36500d");
    }
    if (a->reason != NULL && rl2_admin_reason_check(a->reason, err) != RL2_OK) {
        char why[RL2_ERR_MAX];

        snprintf(why, sizeof(why), "%s", err->msg);
        return rl2_err_set(err, RL2_ERR_INVALID, "reason: %s", why);
    }
    ch->remove = v->remove || (v->kind == RL2_OVR_MODE && a->clear)
                 || (v->kind == RL2_OVR_EMERGENCY && !rl2_admin_on(a));
    snprintf(ch->verb, sizeof(ch->verb), "%s%s", v->name,
             v->kind == RL2_OVR_MODE && a->clear ? "-clear"
             : v->kind != RL2_OVR_EMERGENCY      ? ""
             : ch->remove                        ? "-off"
                                                 : "-on");
    if ((st = rl2_admin_target(policy, v, a, ch, err)) != RL2_OK
        || (st = rl2_admin_value(policy, v, a, ch, err)) != RL2_OK) {
        return RL2_ERR_INVALID;
    }
    ch->ttl_us = ch->remove ? 0 : a->ttl_us;
    snprintf(ch->o.reason, sizeof(ch->o.reason), "%s",
             a->reason != NULL ? a->reason : "");
    return RL2_OK;
}

/* ---- making it ----------------------------------------------------------
 */

static rl2_status_t
rl2_admin_record(const rl2_admin_t *a, const rl2_admin_change_t *ch,
                 const rl2_override_t *before, const rl2_clock_t *now,
                 rl2_err_t *err)
{
    rl2_audit_entry_t e;
    rl2_err_t         why;

    memset(&e, 0, sizeof(e));
    e.time_us = now->wall_us;
    snprintf(e.author, sizeof(e.author), "%s", ch->o.author);
    e.origin = a->origin;
    snprintf(e.verb, sizeof(e.verb), "%s", ch->verb);
    e.kind = ch->o.kind;
    snprintf(e.target, sizeof(e.target), "%s", ch->o.target);
    e.before = *before;
    if (!ch->remove) {
        e.after = ch->o;
    }
    snprintf(e.reason, sizeof(e.reason), "%s", ch->o.reason);
    /* The stream beside the table's Redis hash, as for automatic bans:
     * the front ends open their audit with a file and syslog only, and
     * the fleet's trail must have their changes too.  Without a Redis
     * side, the audit's own stream (ratelimit2ctl's conf.redis), if any. */
    if (rl2_audit_record_to(a->audit, &e, a->table->redis, NULL, &why)
        != RL2_OK) {
        return rl2_err_set(err, RL2_ERR_SYS,
                           "%s: the change WAS made but is not in the whole "
                           "audit trail",
                           why.msg);
    }
    return RL2_OK;
}

rl2_status_t
rl2_admin_apply(const rl2_admin_t *a, rl2_admin_change_t *ch,
                const rl2_clock_t *now, rl2_override_t *before, int *made,
                rl2_err_t *err)
{
    rl2_status_t st;
    rl2_err_t    why;

    *made = 0;
    memset(before, 0, sizeof(*before));
    /* A change nobody could account for is not made. */
    if (a->table == NULL || a->audit == NULL || a->author == NULL
        || a->author[0] == '\0') {
        return rl2_err_set(err, RL2_ERR_SYS, "no %s (nothing was changed)",
                           a->table == NULL   ? "override table"
                           : a->audit == NULL ? "audit file"
                                              : "author");
    }
    /* The front end's name for who asks (Apache's r->user, as an auth
     * module took it from the client): ratelimit2ctl overrides and audit
     * print it as it is, where a newline would forge a line. */
    for (const char *p = a->author; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "the author (the authenticated user) has "
                               "control characters (nothing was changed)");
        }
    }
    /* The automatic bans' name: an operator's entry under it would be
     * listed, counted and audited as the limiter's own. */
    if (strcmp(a->author, RL2_OVR_AUTO_AUTHOR) == 0) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "the author \"%s\" is the name of the automatic "
                           "bans (nothing was changed)",
                           RL2_OVR_AUTO_AUTHOR);
    }
    ch->o.created_us = now->wall_us;
    ch->o.expires_us = ch->ttl_us != 0 ? now->wall_us + ch->ttl_us : 0;
    snprintf(ch->o.author, sizeof(ch->o.author), "%s", a->author);
    st = ch->remove
             ? rl2_overrides_remove(a->table, ch->o.kind, ch->o.target_kind,
                                    ch->o.target, now, before, &why)
             : rl2_overrides_set(a->table, &ch->o, now, before, &why);
    if (st != RL2_OK) {
        return rl2_err_set(err, st, "%s (nothing was changed)", why.msg);
    }
    if (ch->remove && before->kind == 0) {
        return RL2_OK;
    }
    *made = 1;
    return rl2_admin_record(a, ch, before, now, err);
}

/* ---- the HTTP form ------------------------------------------------------
 */

/* The members of the HTTP form, and what each is of a verb. */
typedef enum {
    RL2_AM_STRING, /* a string, into a const char * of the args */
    RL2_AM_FACTOR, /* a string or a number's text, likewise */
    RL2_AM_BOOL,   /* true or false, into an int */
    RL2_AM_TTL     /* a duration string, into ttl_us */
} rl2_am_type_t;

typedef struct {
    const char   *name;
    rl2_am_type_t type;
    size_t        at;    /* where in rl2_admin_args_t */
    unsigned      needs; /* a RL2_ADMIN_NEEDS_* bit, or 0 */
    unsigned      takes; /* a RL2_ADMIN_TAKES_* bit, or 0 */
} rl2_admin_member_t;

#define AT(field) offsetof(rl2_admin_args_t, field)

static const rl2_admin_member_t rl2_admin_members[] = {
    { "target", RL2_AM_STRING, AT(target), RL2_ADMIN_NEEDS_TARGET, 0 },
    { "rule", RL2_AM_STRING, AT(target), RL2_ADMIN_NEEDS_RULE, 0 },
    { "tier", RL2_AM_STRING, AT(tier), RL2_ADMIN_NEEDS_TIER, 0 },
    { "factor", RL2_AM_FACTOR, AT(factor), RL2_ADMIN_NEEDS_FACTOR,
      RL2_ADMIN_TAKES_FACTOR },
    { "mode", RL2_AM_STRING, AT(mode), RL2_ADMIN_NEEDS_MODE, 0 },
    { "state", RL2_AM_STRING, AT(state), RL2_ADMIN_NEEDS_STATE, 0 },
    { "clear", RL2_AM_BOOL, AT(clear), 0, RL2_ADMIN_TAKES_CLEAR },
    { "allow_list_only", RL2_AM_BOOL, AT(allow_list_only), 0,
      RL2_ADMIN_TAKES_ALLOW_LIST_ONLY },
    { "ttl", RL2_AM_TTL, AT(ttl_us), 0, RL2_ADMIN_TAKES_TTL },
    { "reason", RL2_AM_STRING, AT(reason), 0, RL2_ADMIN_TAKES_REASON },
};

#define RL2_ADMIN_N_MEMBERS \
    (sizeof(rl2_admin_members) / sizeof(rl2_admin_members[0]))

static const rl2_admin_member_t *
rl2_admin_member(const char *name)
{
    for (size_t i = 0; i < RL2_ADMIN_N_MEMBERS; i++) {
        if (strcmp(rl2_admin_members[i].name, name) == 0) {
            return &rl2_admin_members[i];
        }
    }
    return NULL;
}

/* One member's value into a, its type checked. */
static rl2_status_t
rl2_admin_member_value(const rl2_admin_member_t *d, const rl2_json_member_t *m,
                       rl2_admin_args_t *a, rl2_err_t *err)
{
    char     *field = (char *)a + d->at;
    rl2_err_t why;

    switch (d->type) {
    case RL2_AM_BOOL:
        if (m->type != RL2_JSON_TRUE && m->type != RL2_JSON_FALSE) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "\"%s\" must be true or false", d->name);
        }
        *(int *)(void *)field = m->type == RL2_JSON_TRUE;
        return RL2_OK;
    case RL2_AM_FACTOR:
        if (m->type != RL2_JSON_STRING && m->type != RL2_JSON_NUMBER) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "\"%s\" must be a string or a number", d->name);
        }
        break;
    default:
        if (m->type != RL2_JSON_STRING) {
            return rl2_err_set(err, RL2_ERR_INVALID, "\"%s\" must be a string",
                               d->name);
        }
        break;
    }
    if (d->type == RL2_AM_TTL) {
        if (rl2_admin_ttl_parse(m->value, (int64_t *)(void *)field, &why)
            != RL2_OK) {
            return rl2_err_set(err, RL2_ERR_INVALID, "ttl: %s", why.msg);
        }
        return RL2_OK;
    }
    *(const char **)(void *)field = m->value;
    return RL2_OK;
}

/* The object's members into a: each one known, of its type, and one
 * that the verb takes. */
static rl2_status_t
rl2_admin_args_json(const rl2_json_object_t *obj, rl2_admin_args_t *a,
                    rl2_err_t *err)
{
    const rl2_admin_verb_t   *v = rl2_admin_verb(a->verb);
    const rl2_admin_member_t *d;
    unsigned                  takes;
    rl2_status_t              st;

    if (v == NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID, "unknown verb \"%.40s\"",
                           a->verb);
    }
    for (size_t i = 0; i < obj->n; i++) {
        if (strcmp(obj->m[i].name, "verb") == 0) {
            continue;
        }
        if ((d = rl2_admin_member(obj->m[i].name)) == NULL) {
            return rl2_err_set(err, RL2_ERR_INVALID, "unknown member \"%.40s\"",
                               obj->m[i].name);
        }
        if ((st = rl2_admin_member_value(d, &obj->m[i], a, err)) != RL2_OK) {
            return st;
        }
    }
    /* What it takes depends on clear and state, known now. */
    takes = rl2_admin_takes(a);
    for (size_t i = 0; i < obj->n; i++) {
        if (strcmp(obj->m[i].name, "verb") == 0) {
            continue;
        }
        d = rl2_admin_member(obj->m[i].name);
        if (!(d->needs & v->needs) && !(d->takes & takes)) {
            return rl2_err_set(err, RL2_ERR_INVALID, "%s%s takes no \"%s\"",
                               v->name, rl2_admin_variant(v, a), d->name);
        }
    }
    return RL2_OK;
}

/* ---- answers ---- */

static int
rl2_admin_error(char *out, size_t size, int status, const char *msg)
{
    rl2_buf_t b;

    rl2_buf_init(&b, out, size);
    rl2_buf_str(&b, "{\"ok\":false,\"error\":");
    rl2_json_string(&b, msg);
    rl2_buf_str(&b, "}\n");
    if (b.full) {
        /* RL2_ADMIN_ANSWER_MIN holds any message of ours escaped; a
         * caller's smaller buffer still gets valid JSON. */
        snprintf(out, size, "{\"ok\":false}\n");
    }
    return status;
}

static void
rl2_admin_head(rl2_buf_t *b, const char *verb)
{
    rl2_buf_str(b, "{\"ok\":true,\"verb\":");
    rl2_json_string(b, verb);
}

static int
rl2_admin_changed(char *out, size_t size, const rl2_admin_change_t *ch,
                  const rl2_override_t *before)
{
    rl2_override_t none;
    rl2_buf_t      b;
    int            changed = !(ch->remove && before->kind == 0);

    memset(&none, 0, sizeof(none));
    for (int sides = 1; sides >= 0; sides--) {
        rl2_buf_init(&b, out, size);
        rl2_admin_head(&b, ch->verb);
        rl2_buf_str(&b, ",\"target\":");
        rl2_json_string(&b, ch->o.target);
        rl2_buf_str(&b, changed ? ",\"changed\":true" : ",\"changed\":false");
        /* Sides that do not fit are left out: they are in the audit. */
        if (sides) {
            rl2_buf_str(&b, ",\"before\":");
            rl2_json_side(&b, before);
            rl2_buf_str(&b, ",\"after\":");
            rl2_json_side(&b, ch->remove ? &none : &ch->o);
        }
        rl2_buf_str(&b, "}\n");
        if (!b.full) {
            break;
        }
    }
    return 200;
}

/* One entry as ratelimit2ctl overrides --json lists it. */
static void
rl2_admin_entry(rl2_buf_t *b, const rl2_override_t *o, int64_t now_us)
{
    char value[RL2_OVR_NAME_MAX + 16], t[28];

    rl2_ovr_value_text(o, value, sizeof(value));
    rl2_buf_str(b, "{\"kind\":");
    rl2_json_string(b, rl2_ovr_kind_name(o->kind));
    rl2_buf_str(b, ",\"target\":");
    rl2_json_string(b, o->target);
    rl2_buf_str(b, ",\"value\":");
    rl2_json_string(b, value);
    if (o->expires_us != 0) {
        int64_t left = o->expires_us - now_us;

        rl2_audit_time_format(o->expires_us, t);
        rl2_buf_str(b, ",\"expires\":");
        rl2_json_string(b, t);
        rl2_buf_str(b, ",\"seconds_left\":");
        rl2_buf_i64(b,
                    left <= 0 ? 0 : (left + RL2_US_PER_S - 1) / RL2_US_PER_S);
    }
    else {
        rl2_buf_str(b, ",\"expires\":null,\"seconds_left\":null");
    }
    rl2_audit_time_format(o->created_us, t);
    rl2_buf_str(b, ",\"created\":");
    rl2_json_string(b, t);
    rl2_buf_str(b, ",\"author\":");
    rl2_json_string(b, o->author);
    rl2_buf_str(b, ",\"reason\":");
    rl2_json_string(b, o->reason);
    rl2_buf_char(b, '}');
}

/* The list, sorted by kind and target, cut at a whole entry when out is
 * too small. */
static int
rl2_admin_list(const rl2_admin_t *a, const rl2_clock_t *now, char *out,
               size_t size)
{
    /* What the end needs: "],\"truncated\":true}\n". */
    static const char tail[] = "],\"truncated\":true}\n";
    rl2_override_t   *all = NULL, *more;
    size_t            room = 0, n, i;
    rl2_buf_t         b;
    char              one[2048];
    int               truncated = 0;

    if (a->table == NULL) {
        return rl2_admin_error(out, size, 500, "no override table");
    }
    /* A writer may add entries between the count and the copy. */
    while ((n = rl2_overrides_list(a->table, 0, now, all, room)) > room) {
        if ((more = realloc(all, (n + 16) * sizeof(*all))) == NULL) {
            free(all);
            return rl2_admin_error(out, size, 500, "out of memory");
        }
        all = more;
        room = n + 16;
    }
    if (n > 1) {
        qsort(all, n, sizeof(*all), rl2_override_cmp);
    }
    rl2_buf_init(&b, out, size);
    rl2_admin_head(&b, "overrides");
    rl2_buf_str(&b, ",\"overrides\":[");
    for (i = 0; i < n; i++) {
        rl2_buf_t e;

        rl2_buf_init(&e, one, sizeof(one));
        if (i > 0) {
            rl2_buf_char(&e, ',');
        }
        rl2_admin_entry(&e, &all[i], now->wall_us);
        if (e.full || b.len + e.len + sizeof(tail) > size) {
            truncated = 1;
            break;
        }
        rl2_buf_mem(&b, one, e.len);
    }
    free(all);
    rl2_buf_str(&b, truncated ? tail : "]}\n");
    return 200;
}

/* "application/json", any case, with parameters; a charset, if given,
 * must be UTF-8 (RFC 8259 has JSON in UTF-8 only). */
static int
rl2_admin_is_json(const char *ct)
{
    const char *p = ct, *name, *value;
    size_t      nlen, vlen;

    if (p == NULL) {
        return 0;
    }
    p += strspn(p, " \t");
    if (strncasecmp(p, "application/json", 16) != 0) {
        return 0;
    }
    p += 16;
    for (;;) {
        p += strspn(p, " \t");
        if (*p == '\0') {
            return 1;
        }
        if (*p++ != ';') {
            return 0;
        }
        p += strspn(p, " \t");
        name = p;
        nlen = strcspn(p, "=;");
        p += nlen;
        if (*p != '=') {
            continue;
        }
        value = ++p;
        vlen = strcspn(p, ";");
        p += vlen;
        while (nlen > 0 && (name[nlen - 1] == ' ' || name[nlen - 1] == '\t')) {
            nlen--;
        }
        while (vlen > 0
               && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) {
            vlen--;
        }
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value++;
            vlen -= 2;
        }
        if (nlen == 7 && strncasecmp(name, "charset", 7) == 0
            && !(vlen == 5 && strncasecmp(value, "utf-8", 5) == 0)) {
            return 0;
        }
    }
}

/* A change's error as its status: the table could not take it now (503:
 * Redis, a full table), the input (400), the rest (500). */
static int
rl2_admin_status_of(rl2_status_t st, int made)
{
    if (made) {
        return 500;
    }
    return st == RL2_ERR_STORE ? 503 : st == RL2_ERR_INVALID ? 400 : 500;
}

int
rl2_admin_http(const rl2_admin_t *a, const char *method,
               const char *content_type, const char *body, size_t body_len,
               const rl2_clock_t *now, char *out, size_t out_size)
{
    rl2_json_object_t       *obj;
    const rl2_json_member_t *verb;
    rl2_admin_args_t         args;
    rl2_admin_change_t       ch;
    rl2_override_t           before;
    rl2_err_t                err;
    rl2_status_t             st;
    int                      made, status;

    if (method == NULL || strcmp(method, "POST") != 0) {
        return rl2_admin_error(out, out_size, 405, "only POST is taken");
    }
    if (!rl2_admin_is_json(content_type)) {
        return rl2_admin_error(out, out_size, 415,
                               "the body must be application/json");
    }
    if (body_len > RL2_ADMIN_BODY_MAX) {
        snprintf(err.msg, sizeof(err.msg), "the body is over %d bytes",
                 RL2_ADMIN_BODY_MAX);
        return rl2_admin_error(out, out_size, 400, err.msg);
    }
    /* 8 KiB and more: off the stack of a server's thread. */
    if ((obj = malloc(sizeof(*obj))) == NULL) {
        return rl2_admin_error(out, out_size, 500, "out of memory");
    }
    memset(&args, 0, sizeof(args));
    if (rl2_json_object_read(body, body_len, obj, &err) != RL2_OK) {
        status = rl2_admin_error(out, out_size, 400, err.msg);
    }
    else if ((verb = rl2_json_object_get(obj, "verb")) == NULL
             || verb->type != RL2_JSON_STRING) {
        status = rl2_admin_error(out, out_size, 400,
                                 "the object needs \"verb\", a string");
    }
    else if (strcmp(verb->value, "overrides") == 0) {
        status = obj->n == 1 ? rl2_admin_list(a, now, out, out_size)
                             : rl2_admin_error(out, out_size, 400,
                                               "overrides takes no other "
                                               "member");
    }
    else if ((args.verb = verb->value,
              rl2_admin_args_json(obj, &args, &err) != RL2_OK)
             || rl2_admin_read(a->policy, &args, &ch, &err) != RL2_OK) {
        status = rl2_admin_error(out, out_size, 400, err.msg);
    }
    else if ((st = rl2_admin_apply(a, &ch, now, &before, &made, &err))
             != RL2_OK) {
        status = rl2_admin_error(out, out_size, rl2_admin_status_of(st, made),
                                 err.msg);
    }
    else {
        status = rl2_admin_changed(out, out_size, &ch, &before);
    }
    free(obj);
    return status;
}
