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
 *   geo.c                 the geo factor: the client's country (a
 *                         variable, a trusted header, a MaxMind DB file)
 *   variant.c             which variant of a rule a client is assigned
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
    int ovr_read;
    int ovr_idle; /* the table held nothing: read for the
                     adaptive factors only */
    rl2_ovr_client_t ovr;
    /* The reputation counters' layers (reputation.c) this call keyed
     * when it read them, for the count after the decision. */
    int                rep_keyed;
    rl2_layer_t        rep[3];
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

/* Did the request come from one of nets[0..n), itself: the address that
 * connected (conn_ip, else peer_ip), as the sender of a header that
 * raises a client's standing must (identity.c)? */
int rl2_sent_by(const rl2_request_t *r, const rl2_cidr_t *nets, size_t n);

/* ---- the geo factor (geo.c) ---- */

/* The country code text[0..len) as an index of rl2_geo_conf_t's
 * factor_ppm: two ASCII letters, either case; -1 for anything else. */
int rl2_geo_index(const char *text, size_t len);

/* Open the MaxMind DB file at path (memory-mapped) for the policy's
 * geo factor, closed when the policy is freed; RL2_ERR_CONFIG with
 * libmaxminddb's reason when it is no such file, and RL2_ERR_NOMEM. */
rl2_status_t rl2_geo_open(rl2_policy_t *p, const char *path,
                          struct rl2_geo_db **out, rl2_err_t *err);

/* The country of the address (family AF_INET or AF_INET6, addr in
 * network order) in db, as rl2_geo_index gives it; -1 when the database
 * has none for it, or fails. */
int rl2_geo_lookup(const struct rl2_geo_db *db, int family,
                   const uint8_t *addr);

/* The client's country: the policy's variable, else its header from a
 * listed sender, else the database's answer for the client's address;
 * the first that names a country.  An index, or -1: unknown. */
int rl2_geo_country(rl2_ctx_t *c);

/* The geo factor of this client (ppm): its country's, else the
 * default. */
uint32_t rl2_geo_factor(rl2_ctx_t *c);

/* The name of the variant the verdict shows (X-RateLimit-Variant): the
 * shown layer's, else the first layer's that has one; NULL: none. */
const char *rl2_verdict_variant(const rl2_verdict_t *v);

/* The variant (0-based) of `rule` (which has variants) for a client
 * whose identity, in its key form ("1.2.3.4", "user:HASH",
 * "key:HASH"), is id[0..len): a keyed hash of it, under the rule's
 * variant_key, into [0, variant_total), then the variant whose weights
 * cover it. */
size_t rl2_variant_of(const rl2_rule_t *rule, const char *id, size_t len);

/* The variant (0-based) of `rule`, which has variants, this client is
 * assigned by the rule's variant_by (variant.c). */
size_t rl2_variant_pick(const rl2_ctx_t *c, const rl2_rule_t *rule);

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

/* Retry-After of a ban and of the emergency switch without an end. */
#define RL2_BAN_RETRY_S       86400
#define RL2_EMERGENCY_RETRY_S 60

/* Retry-After (s) of a refusal that lasts until until_us (wall clock; 0:
 * no end, dflt_s): rounded up, at least 1. */
int64_t rl2_runtime_retry_s(int64_t until_us, int64_t now_us, int64_t dflt_s);

/* f within factor u's bounds. */
uint32_t rl2_runtime_bound(const rl2_factor_use_t *u, uint32_t f);

/* Does factor u scale a limit of `rule` for a client of `tier` (NULL:
 * none): the rule listed (none listed: any), and the tier listed (none
 * listed: any tier, or none)? */
int rl2_runtime_scoped(const rl2_factor_use_t *u, const rl2_rule_t *rule,
                       const char *tier);

/* Does layer l count this client itself: an enforced limit keyed by its
 * address, its user or its API key, never a global, route or header
 * limit (which any client may spend for another)?  What an automatic
 * ban and the reputation factor hold against a client. */
static inline int
rl2_layer_own(const rl2_layer_t *l)
{
    return !l->dry_run && !l->limit->unlimited
           && (l->limit->key == RL2_KEY_IP || l->limit->key == RL2_KEY_USER
               || l->limit->key == RL2_KEY_APIKEY);
}

/* The refusing layer of v that counted this client itself (an address,
 * a user, an API key), the shown one first; NULL when only limits it
 * shares with others (global, route, a header) refused it.  v refused
 * with a shown layer. */
const rl2_layer_t *rl2_abuse_layer(const rl2_verdict_t *v);

/* ---- the reputation factor (reputation.c) ---- */

/* The factor (ppm) of a history of `requests`, `refusals` and automatic
 * `bans` in one window, as docs/configuration.md says. */
uint32_t rl2_reputation_of(const rl2_reputation_conf_t *rc, int64_t requests,
                           int64_t refusals, int64_t bans);

/* Before the first phase with limits: the client's history read from
 * the store into v->factor_ppm[RL2_FACTOR_REPUTATION]; 1 when read now,
 * 0 when an earlier phase did. */
int rl2_reputation_read(rl2_ctx_t *c, rl2_store_t *store,
                        const rl2_clock_t *now);

/* The client's history peeked into counts[3]: its requests, refusals
 * and automatic bans in the window; -1 when it has no address or the
 * store did not answer. */
int rl2_reputation_peek(rl2_ctx_t *c, rl2_store_t *store,
                        const rl2_clock_t *now, int64_t *counts);

/* After the decision of the phase whose layers start at `first`: the
 * request counted when a limit that counts this client judged it in
 * this phase and in none before, its refusal when such a limit refused
 * it, the automatic ban it made.  One store call. */
void rl2_reputation_count(rl2_ctx_t *c, rl2_store_t *store,
                          const rl2_clock_t *now, size_t first);

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
