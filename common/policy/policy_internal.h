/*
 * policy_internal.h -- what the policy files share (private to the core).
 *
 *   policy.c       the policy object, its arena, the small parsers
 *   match.c        which rules a request falls under: paths, hosts, methods
 *   rule_index.c   the rules a path may match, filed by first segment
 */
#ifndef RL2_POLICY_INTERNAL_H
#define RL2_POLICY_INTERNAL_H

/* ASCII case folding: "/API/login" is "/api/login" to a backend that
 * routes without case, so it must meet the same rule (match.c) and be
 * filed under the same segment (rule_index.c). */
static inline int
rl2_ascii_fold(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

#endif
