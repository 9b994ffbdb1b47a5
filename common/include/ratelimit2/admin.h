/*
 * admin.h -- the verbs that change the runtime overrides (overrides.h),
 * in one place for every interface: ratelimit2ctl's command line and the
 * HTTP admin interface of the Apache module (SetHandler
 * ratelimit2-admin) and of ratelimit2-fcgi (its admin path).
 *
 * A change is read whole (verb, target in canonical form, value, TTL,
 * reason) and checked against the policy before anything is opened or
 * written, so a bad input changes nothing.  Then it is made in the
 * table (Redis first when the table has a Redis side: refused, and
 * nothing changed, when Redis cannot be reached) and recorded in the
 * audit trail.  A removal of what is not there is no change: nothing is
 * recorded.
 *
 * The HTTP form.  One request is one change (or the list of what is in
 * force), as a JSON object in the body of a POST with Content-Type
 * application/json (parameters such as "; charset=utf-8" allowed), at
 * most RL2_ADMIN_BODY_MAX bytes:
 *
 *   {"verb":"ban","target":"192.0.2.9","ttl":"10min","reason":"INC-1"}
 *   {"verb":"unban","target":"192.0.2.9"}
 *   {"verb":"allow"|"disallow","target":"user:alice","ttl":"4h"}
 *   {"verb":"tier","target":"user:alice","tier":"business","ttl":"7d"}
 *   {"verb":"untier","target":"user:alice"}
 *   {"verb":"boost","target":"rule:api"|"tier:free"|"*","factor":2}
 *   {"verb":"unboost","target":"rule:api"}
 *   {"verb":"mode","rule":"api","mode":"dry_run"}
 *   {"verb":"mode","rule":"api","clear":true}
 *   {"verb":"emergency","state":"on","factor":"0.5"}
 *   {"verb":"emergency","state":"on","allow_list_only":true}
 *   {"verb":"emergency","state":"off"}
 *   {"verb":"overrides"}                       the list, changes nothing
 *
 * "factor" is a JSON number or a string as ratelimit2ctl takes it;
 * "ttl" a duration string ("30s", "10min", "2h", "7d"); "reason" free
 * text.  A member a verb does not take, a member given twice, a value of
 * the wrong JSON type, anything after the object: each is a 400, as are
 * an unknown verb, a bad duration, a bad address or CIDR, a rule or tier
 * the policy does not have, a bad factor, and a body over
 * RL2_ADMIN_BODY_MAX.  Every answer is a JSON object:
 *
 *   200 {"ok":true,"verb":"ban","target":"192.0.2.9","changed":true,
 *        "before":null,"after":{"value":"banned","expires":"...Z",
 *        "reason":"INC-1","author":"alice"}}
 *   200 {"ok":true,"verb":"overrides","overrides":[{...}, ...]}
 *   400 {"ok":false,"error":"what is wrong"}
 *   405 (not POST; the front end adds "Allow: POST")
 *   415 (Content-Type is not application/json)
 *   503 {"ok":false,"error":"... (nothing was changed)"}  Redis down
 *   500 {"ok":false,"error":"..."}  the table or the audit file failed
 *
 * The front end authenticates (Apache's Require and its auth modules;
 * ratelimit2-fcgi's bearer token file) and says who: that name is the
 * change's author in the table and in the audit trail.
 */
#ifndef RL2_ADMIN_H
#define RL2_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/audit.h"
#include "ratelimit2/clock.h"
#include "ratelimit2/overrides.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/status.h"

#define RL2_ADMIN_BODY_MAX 8192

/* Where a change is made, and by whom.  Borrowed, not owned. */
typedef struct {
    const rl2_policy_t *policy; /* rules and tiers; the API key secret */
    rl2_overrides_t    *table;  /* with its Redis side when there is one */
    rl2_audit_t        *audit;  /* open; NULL: changes are refused */
    const char         *author; /* the authenticated user or token name */
    rl2_audit_origin_t  origin; /* RL2_AUDIT_ADMIN from the HTTP form */
} rl2_admin_t;

/* One HTTP admin request: method, Content-Type (NULL: none), body of
 * body_len bytes (not NUL-terminated; the front end reads at most
 * RL2_ADMIN_BODY_MAX + 1 bytes, so that an oversized body is seen as
 * such).  Writes the JSON answer, NUL-terminated, into out (size >=
 * RL2_ADMIN_ANSWER_MIN; a list that does not fit is cut at a whole
 * entry and says "truncated":true) and returns the HTTP status. */
#define RL2_ADMIN_ANSWER_MIN 1024
int rl2_admin_http(const rl2_admin_t *a, const char *method,
                   const char *content_type, const char *body, size_t body_len,
                   const rl2_clock_t *now, char *out, size_t out_size);

/* ---- one change, read and made in one place -------------------------
 *
 * Each front end gathers what a verb is given as text (ratelimit2ctl
 * from its arguments and options, the HTTP form from the members of the
 * object), and rl2_admin_read() reads it the one way there is:
 * rl2_admin_apply() then makes it and records it. */

/* What a verb is given; NULL, 0: not given. */
typedef struct {
    const char *verb;            /* "ban", ..., "mode", "emergency" */
    const char *target;          /* TARGET; mode's RULE ("api", "rule:api") */
    const char *tier;            /* tier's TIER */
    const char *factor;          /* boost's FACTOR; emergency on's */
    const char *mode;            /* mode's enforce|dry_run|off */
    const char *state;           /* emergency's "on" or "off" */
    int         clear;           /* mode: remove the rule's mode */
    int         allow_list_only; /* emergency on */
    int64_t     ttl_us;          /* the change ends by itself; 0: never */
    const char *reason;          /* why; NULL: "" */
} rl2_admin_args_t;

/* What a verb takes besides its target and value, by what it is given
 * (mode --clear, emergency off take less): rl2_admin_takes(). */
enum {
    RL2_ADMIN_TAKES_TTL = 1u << 0,
    RL2_ADMIN_TAKES_REASON = 1u << 1,
    RL2_ADMIN_TAKES_FACTOR = 1u << 2,
    RL2_ADMIN_TAKES_ALLOW_LIST_ONLY = 1u << 3,
    RL2_ADMIN_TAKES_CLEAR = 1u << 4
};

/* One change, read whole. */
typedef struct {
    char verb[RL2_AUDIT_VERB_MAX]; /* for the audit trail: "ban",
                                      "mode-clear", "emergency-on" */
    rl2_override_t o;              /* kind, target, value */
    int64_t        ttl_us;         /* 0: no end */
    int            remove;
} rl2_admin_change_t;

/* The RL2_ADMIN_TAKES_* bits of a->verb given a->clear and a->state; 0
 * for a verb that changes nothing or is unknown. */
unsigned rl2_admin_takes(const rl2_admin_args_t *a);

/* The longest TTL: 100 years, so that now + TTL is a time (a TTL near
 * 64-bit µs would wrap it into the past).  No TTL: no end. */
#define RL2_ADMIN_TTL_MAX_S (36500LL * 86400)

/* A TTL as people write it ("30s", "10min", "7d") into µs: at least a
 * second, so that it is not over by the time it is written, at most
 * RL2_ADMIN_TTL_MAX_S.  A reason:
 * at most RL2_OVR_REASON_MAX - 1 bytes, no control byte (one line of
 * the logs).  RL2_ERR_INVALID saying why, without the option's name. */
rl2_status_t rl2_admin_ttl_parse(const char *text, int64_t *us, rl2_err_t *err);
rl2_status_t rl2_admin_reason_check(const char *text, rl2_err_t *err);

/* a read into *ch, checked against policy (NULL: only what needs none;
 * a target or a tier that needs the policy is then refused):
 * RL2_ERR_INVALID saying what is wrong (an unknown verb, a bad target,
 * a rule or tier the policy does not have, a bad factor or mode, a
 * missing value, emergency on with neither or both of factor and
 * allow_list_only, a TTL or reason a verb does not take). */
rl2_status_t rl2_admin_read(const rl2_policy_t     *policy,
                            const rl2_admin_args_t *a, rl2_admin_change_t *ch,
                            rl2_err_t *err);

/* Make ch in a->table (now: its start and end), then record it in
 * a->audit as a->author (its first RL2_OVR_AUTHOR_MAX - 1 bytes; one
 * with a control byte is refused, RL2_ERR_INVALID) from a->origin.  *before
 * gets what the change replaced or removed (kind 0: nothing; a removal of
 * nothing is no change and records nothing).  Errors, in err's message: the
 * table's
 * ("... (nothing was changed)": RL2_ERR_INVALID, RL2_ERR_STORE when
 * Redis cannot be reached or the table is full, RL2_ERR_SYS), *made 0;
 * the audit's ("...: the change WAS made but is not in the audit
 * file"), *made 1.  The caller says whether syslog took the line
 * (rl2_audit_syslog_error). */
rl2_status_t rl2_admin_apply(const rl2_admin_t *a, rl2_admin_change_t *ch,
                             const rl2_clock_t *now, rl2_override_t *before,
                             int *made, rl2_err_t *err);

#endif /* RL2_ADMIN_H */
