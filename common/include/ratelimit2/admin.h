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
                   const char *content_type, const char *body,
                   size_t body_len, const rl2_clock_t *now, char *out,
                   size_t out_size);

#endif /* RL2_ADMIN_H */
