/*
 * policy_internal.h -- what the policy folder gives the rest of the core
 * and not libratelimit2-dev (private to the core): the rule index, the
 * matchers, and the small parsers only the config loader uses.
 *
 *   match.c               path normalisation, globs, CIDR and rule
 *                         matching
 *   policy.c              the policy object and its arena, the small
 *                         parsers shared with the front ends
 *   rule_index.c          the rules a path may match, by first segment
 *   policy_internal.h     this file
 */
#ifndef RL2_POLICY_INTERNAL_H
#define RL2_POLICY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/policy.h"

/* ---- beside ratelimit2/policy.h (not installed) ---- */

/* The rules a path may match (rule_index.c): rule numbers, ascending, in
 * two lists to be merged (those filed under the path's first segment,
 * and those tried for every path). */
typedef struct {
    const uint32_t *seg;
    size_t          n_seg;
    const uint32_t *any;
    size_t          n_any;
} rl2_rule_candidates_t;

/* Build policy->rule_index from policy->rules (left NULL when the policy
 * has few rules); in the policy's arena.  RL2_ERR_NOMEM. */
rl2_status_t rl2_rule_index_build(rl2_policy_t *policy, rl2_err_t *err);

/* The candidates for a normalised path (starting with '/'). */
void rl2_rule_index_lookup(const rl2_rule_index_t *index, const char *path,
                           rl2_rule_candidates_t *out);

/* One method name to its bit; 0 when unknown. */
unsigned rl2_method_bit(const char *method);

/* Validate a path glob written in a policy: must start with '/'. */
rl2_status_t rl2_glob_check(const char *glob, rl2_err_t *err);

/* Turn a limit set into "unlimited": one counting limit named
 * "<rule>.unlimited", keyed like `key`, never denying. */
rl2_status_t rl2_limit_set_unlimited(rl2_policy_t *policy, rl2_limit_set_t *set,
                                     const char *rule_name, rl2_key_kind_t key,
                                     rl2_err_t *err);

/* Does cidr contain the address (family, 4 or 16 bytes)? */
int rl2_cidr_match(const rl2_cidr_t *net, int family, const uint8_t *addr);

/* Glob match: '*' matches within one path segment (no '/'), '**' matches
 * across segments, '?' one character; everything else literally but for
 * ASCII case, and one trailing '/' on either side is optional ("/a/"
 * matches "/a" and the reverse). */
int rl2_glob_match(const char *glob, const char *text);

/* Normalise a request path into out (size outlen): strip the query,
 * decode every %XX but %00 once when `decode` (a path as received; 0 for
 * one the server decoded already), with "%2F" a separator, leave out
 * ";parameters", collapse "//", resolve "." and "..", never above "/".
 * The result never needs more than strlen(path) + 2 bytes.  Returns 0 on
 * success, -1 when the path does not fit or is not absolute, -2 when a
 * dot segment carries a ";parameter" ("..;x": servers read it two ways). */
int rl2_path_normalise(const char *path, char *out, size_t outlen, int decode);

/* Does the rule match this method (bit), normalised path and host? */
int rl2_rule_match(const rl2_rule_t *rule, unsigned method_bit,
                   const char *path, const char *host);

/* May one request match both rules, as far as hosts and paths tell?
 * 0 only when no host name or normalised path matches both: two literal
 * hosts or paths that differ (case and trailing slashes aside), a glob
 * that matches neither spelling of a literal, two globs whose literal
 * heads or tails disagree; a script path's PATH_INFO counted.  Methods
 * are left to the caller (decide/bound.c). */
int rl2_rules_may_meet(const rl2_rule_t *a, const rl2_rule_t *b);

/* The one normalised path a path glob of `rule` matches, trailing
 * slashes aside: 1 and its length without them in *len, or 0 when the
 * glob has a wildcard or also meets a PATH_INFO after it.  Every path
 * the glob matches is glob[0..*len), with or without a '/' after it. */
int rl2_rule_path_literal(const rl2_rule_t *rule, const char *glob,
                          size_t *len);

/* The literal first segment of a path glob ("api" of "/api/v1/x?"), or 0
 * when it has none (a wildcard in it): every path the glob matches has
 * that first segment, ASCII case aside (rule_index.c). */
int rl2_glob_first(const char *glob, const char **seg, size_t *len);

/* ASCII case folding: "/API/login" is "/api/login" to a backend that
 * routes without case, so it must meet the same rule (match.c) and be
 * filed under the same segment (rule_index.c). */
static inline int
rl2_ascii_fold(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* "30s", "10min", "2h", "7d", "1w": a count of one of the rate's units
 * but month (which has no fixed length), at least 1, into µs (the
 * loader's abuse group; admin.h's TTLs). */
rl2_status_t rl2_duration_parse(const char *text, int64_t *us, rl2_err_t *err);

/* Call fn(data) when the policy is freed, before its arena goes: for what
 * the policy holds outside it (an opened file, a mapping).  The last
 * registered runs first.  RL2_ERR_NOMEM, and fn not registered, when
 * memory is exhausted: the caller releases data itself then. */
rl2_status_t rl2_policy_on_free(rl2_policy_t *policy, void (*fn)(void *),
                                void *data, rl2_err_t *err);

#endif /* RL2_POLICY_INTERNAL_H */
