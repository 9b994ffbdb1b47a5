/*
 * decide_internal.h -- what decide.c and identity.c share (private to the
 * core): the per-request context and the client-identity steps; and
 * rl2_headers_size, which libratelimit2-dev does not export.
 *
 *   decide.c              from a request description to one verdict
 *   forwarded.c, .h       the Forwarded header (RFC 7239)
 *   headers.c             a verdict as header fields and a 429 JSON body
 *   identity.c            who the client is: address behind trusted
 *                         proxies, user, API key, tier
 *   bound.c               the most rules and limits one request of a
 *                         policy can meet (for the loader)
 *   explain.c             one request's decision traced, read only
 *                         (explain.h)
 *   decide_internal.h     this file
 */
#ifndef RL2_DECIDE_INTERNAL_H
#define RL2_DECIDE_INTERNAL_H

#include <string.h>

#include "ratelimit2/decide.h"
#include "ratelimit2/explain.h"
#include "ratelimit2/overrides.h"
#include "control/control_internal.h"

/* The longest API key in a header, bytes (Apache's longest header line);
 * a longer value is no key.  One in the query string is no key beyond
 * RL2_APIKEY_QUERY_MAX. */
#define RL2_APIKEY_MAX       8192
#define RL2_APIKEY_QUERY_MAX 255
#include "ratelimit2/headers.h"

/* ---- beside ratelimit2/headers.h (not installed) ---- */

/* Bytes rl2_headers_render needs for this verdict (an upper bound). */
size_t rl2_headers_size(const rl2_verdict_t *v);

#define RL2_PATH_MAX 2048

/* The most rules one request is selected under, the default rule and a
 * front end's inline rules included (and RL2_MAX_LAYERS limits). */
#define RL2_MAX_RULES (2 * RL2_MAX_LAYERS)

/* Refuse, with RL2_ERR_CONFIG and "file:line: message" naming the rule
 * that tips it over, a policy one of whose requests could match more
 * than RL2_MAX_RULES rules or be checked against more than
 * RL2_MAX_LAYERS limits (bound.c; docs/configuration.md, "Rules and
 * limits per request").  Called by the loader once the policy is
 * complete; RL2_ERR_NOMEM when memory runs out. */
rl2_status_t rl2_bound_check(const rl2_policy_t *policy, rl2_err_t *err);

/* Everything known about the client and request while deciding. */
typedef struct {
    const rl2_policy_t  *policy;
    const rl2_request_t *req;
    rl2_verdict_t       *v;
    unsigned             phase;
    unsigned             method_bit;
    int                  path_ready; /* path normalised yet? */
    int   path_ambiguous; /* "..;x" in it: servers read it two ways */
    char *path;           /* path_buf, or path_heap */
    char *path_heap;      /* for paths longer than the
                             buffer; freed by
                             rl2_ctx_fini */
    char        path_buf[RL2_PATH_MAX];
    const char *apikey; /* apikey_buf when the request has a key */
    char        apikey_buf[RL2_APIKEY_MAX + 1]; /* the key, decoded */
    char        user_hash[17];
    char        apikey_hash[17];
    const char *group_ip; /* address as keys use it:
                             v->client_ip, or group_buf
                             for a grouped IPv6 client */
    size_t group_len;
    char   group_buf[48];
    /* The runtime override table's answer for this client (runtime.c),
     * when ovr_read. */
    int                ovr_read;
    rl2_ovr_client_t   ovr;
    const rl2_clock_t *now; /* set with ovr, as v->factor_ppm is */
} rl2_ctx_t;

/* Copy src into dst, truncating: log forms of keys are bounded. */
static inline void
rl2_copy(char *dst, size_t len, const char *src)
{
    size_t n = strnlen(src, len - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Fill the context: method, client address (behind trusted proxies), API
 * key, user hash.  The path is normalised later, on first need.  -1 when
 * the request names two different API keys (refused as malformed). */
int rl2_ctx_init(rl2_ctx_t *c, const rl2_policy_t *policy,
                 const rl2_request_t *req, unsigned phase, rl2_verdict_t *v);

/* Release what the context allocated (a long path's buffer). */
void rl2_ctx_fini(rl2_ctx_t *c);

/* The per-client override that applies to this request, or NULL. */
const rl2_client_t *rl2_client_find(const rl2_ctx_t *c);

/* The client's tier index (the order of docs/tiers.md), or -1 without
 * tiers, or RL2_TIER_CONFLICT when the trusted tier header names two
 * different tiers (the request is refused with 400). */
#define RL2_TIER_CONFLICT (-2)
int rl2_resolve_tier(const rl2_ctx_t *c, const rl2_client_t *client);

/* ... and where it came from into *from (may be NULL; explain.c). */
int rl2_resolve_tier_from(const rl2_ctx_t *c, const rl2_client_t *client,
                          rl2_tier_from_t *from);

/* The identity a billing system's tier is looked up by: the user name,
 * or the hex SHA-256 of the API key into buf[65]; NULL when none. */
const char *rl2_tier_identity(const rl2_policy_t *p, const rl2_request_t *req,
                              const char *apikey, char *buf);

/* Who the client is, as the override table matches it: the address
 * (parsed now if the fast path left it as text), user, API key hash. */
void rl2_ctx_who(rl2_ctx_t *c, rl2_ovr_who_t *who);

/* ---- decide.c's steps, which explain.c takes one by one ---- */

typedef struct {
    const rl2_rule_t *rule;
    size_t            index; /* in policy->rules; n_rules: default;
                                SIZE_MAX: an extra (inline) rule */
} rl2_applied_t;

/* The rules that apply to the request, in policy order, then the extra
 * ones, into out[RL2_MAX_RULES]; how many, or -1 when more apply. */
int rl2_decide_select_rules(rl2_ctx_t *c, const rl2_rule_t *extra,
                            size_t n_extra, rl2_applied_t *out);

/* The layers of this phase for every rule that applies (the client's
 * tier resolved, rule modes as set at run time when c->ovr_read); *bypass
 * set when an exempt rule applies. */
rl2_status_t rl2_decide_build_layers(rl2_ctx_t *c, const rl2_rule_t *extra,
                                     size_t n_extra, int *bypass,
                                     rl2_err_t *err);

/* The layer the headers report, or -1. */
int rl2_decide_pick_shown(const rl2_verdict_t *v);

/* ---- runtime overrides (runtime.c) ---- */

enum {
    RL2_RUNTIME_DECIDE = 0, /* go on with the rules */
    RL2_RUNTIME_BYPASS,     /* allowed at run time */
    RL2_RUNTIME_REFUSE,     /* banned, or the emergency allow-list: the
                               verdict's refusal says which */
    RL2_RUNTIME_LATER       /* nothing to decide before the user is known:
                               the late phase decides it all */
};

/* Read the table for this client into c->ovr; one of the above. */
int rl2_runtime_client(rl2_ctx_t *c);

/* A rule's mode as the table sets it, else mode. */
rl2_mode_t rl2_runtime_mode(const rl2_ctx_t *c, const rl2_rule_t *rule,
                            rl2_mode_t mode);

/* Layers first.. of the verdict with their limits as boosts and the
 * emergency factor scale them for this client: a scaled copy in the
 * verdict where a factor applies (keys stay those of the limits). */
void rl2_runtime_layers(rl2_ctx_t *c, size_t first);

/* After a refusal by the limits: count it against the policy's `abuse`
 * denials and, past them, ban the client (an override with an expiry),
 * setting v->banned_for_s and v->banned_target.  Needs policy->abuse
 * and an override table. */
void rl2_runtime_abuse(rl2_ctx_t *c, rl2_store_t *store,
                       const rl2_clock_t *now);

/* Does the policy whitelist anything?  (Most do not: no call then.) */
static inline int
rl2_has_whitelist(const rl2_policy_t *p)
{
    return p->wl_internal || p->n_wl_nets || p->n_wl_keys || p->n_wl_users;
}

/* Whitelisted by address, API key, or (late phase) user? */
int rl2_whitelisted(const rl2_ctx_t *c);

/* identity.c: a dotted quad, as inet_pton(AF_INET) reads it, into
 * addr[0..3]; -1 when text is not one (test_client compares the two). */
int rl2_ipv4_parse(const char *text, uint8_t addr[4]);

#endif /* RL2_DECIDE_INTERNAL_H */
