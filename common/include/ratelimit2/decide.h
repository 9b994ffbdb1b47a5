/*
 * decide.h -- one request -> every matching limit -> one verdict.
 *
 * The front end describes the request (rl2_request_t), then calls
 * rl2_decide() once per phase: RL2_PHASE_EARLY before authentication
 * (address-keyed limits), RL2_PHASE_LATE after it (user, API key and
 * tier limits), or RL2_PHASE_ALL when it sees the request only once (the
 * FastCGI authorizer).  The verdict accumulates across phases; a request
 * refused in the late phase has its early commits refunded, so a refused
 * request is counted by none.  When the request ends, rl2_decide_end()
 * releases concurrency slots.
 */
#ifndef RL2_DECIDE_H
#define RL2_DECIDE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ratelimit2/overrides.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/status.h"
#include "ratelimit2/store.h"

/* Look up a request header (case-insensitive); NULL when absent. */
typedef const char *(*rl2_header_fn)(void *ctx, const char *name);

typedef struct {
    const char *method;       /* "GET" */
    unsigned    method_bit;   /* its RL2_METHOD_* bit when the front end
                                 knows it already; 0: from method */
    const char *path;         /* request path as received, query allowed */
    int         path_decoded; /* 1: the server decoded path once already
                                 (Apache's r->uri): not decoded again;
                                 0: as received, decoded once */
    const char *query;        /* query string without '?', or NULL */
    const char *host;         /* Host header, or NULL */
    const char *peer_ip;      /* address of the direct peer (after
                                 mod_remoteip), textual */
    const char *conn_ip;      /* the address that connected, before
                                 mod_remoteip replaced it; NULL: peer_ip.
                                 The senders of the tier and internal
                                 headers are compared with it: they
                                 connect themselves */
    const char *user;         /* authenticated user, or NULL */
    const char *tier_var;     /* value of policy->tier_variable, or NULL */
    const char *country_var;  /* value of policy->geo.variable (the
                                 factors.geo group), or NULL */
    int internal;             /* flagged internal by the server's own
                                 configuration: policy->wl_internal_var
                                 set (rl2_internal_value), read only
                                 when policy->wl_internal */
    rl2_header_fn           header; /* may be NULL: no headers readable */
    void                   *header_ctx;
    struct rl2_tier_source *tier_source; /* tiers from Redis
                                            (tier_source.h), or NULL */
} rl2_request_t;

/* Does a value of the internal variable or header flag the request?
 * Set and anything but empty or "0" ("1", "yes"). */
static inline int
rl2_internal_value(const char *v)
{
    return v != NULL && v[0] != '\0' && !(v[0] == '0' && v[1] == '\0');
}

typedef enum {
    RL2_OUTCOME_NONE = 0, /* no limit applied */
    RL2_OUTCOME_ALLOW,    /* every layer passed */
    RL2_OUTCOME_DENY,     /* an enforcing layer refused */
    RL2_OUTCOME_BYPASS    /* whitelisted or exempt */
} rl2_outcome_t;

typedef enum {
    RL2_REFUSAL_LIMIT = 0, /* a limit refused (or nothing refused) */
    RL2_REFUSAL_BAN,       /* banned at run time */
    RL2_REFUSAL_EMERGENCY  /* the emergency switch admits allowed clients
                              only */
} rl2_refusal_t;

typedef struct {
    rl2_outcome_t outcome;
    int           dry_run_denied; /* a dry-run layer would have refused */
    int           overflow_used;  /* some layer admitted by overflow */
    int           shown;          /* layer the headers report, or -1 */
    int           tier;           /* resolved tier index, or -1 */
    unsigned      phases;         /* phases already decided */
    int           addr_family;    /* resolved client address */
    uint8_t       addr[16];
    char          client_ip[48]; /* its text (after trusted proxies) */
    /* Bytes, so that the head every request clears stays small: */
    uint8_t refusal;     /* rl2_refusal_t: why a refusal came before any
                            limit was checked (refusal_retry_s) */
    uint8_t banned;      /* this refusal made the client's automatic ban
                            (policy `abuse`): banned_for_s, banned_target */
    uint8_t needs_late;  /* a decision without the late phase met an
                            override table that names users or API keys:
                            a front end that decides in two phases must
                            ask again after authentication */
    uint8_t n_scaled;    /* of scaled[] */
    uint8_t factors_set; /* factor_ppm holds this client's factors */
    uint8_t experiment;  /* a layer is a variant's or a
                            challenger's (metrics) */
    uint8_t     challenger_denied; /* a challenger layer would refuse */
    size_t      n_layers;
    rl2_layer_t layers[RL2_MAX_LAYERS];
    /* Not cleared by rl2_verdict_init: valid when the head says so. */
    int64_t refusal_retry_s; /* when refusal: when to come back */
    int64_t banned_for_s;    /* when banned: for how long, */
    char    banned_target[RL2_OVR_TARGET_MAX]; /* and whom */
    /* When factors_set: each adaptive factor's value for this client
     * (rl2_factor_t; 0: the factor is off), as X-RateLimit-Factors and
     * the violation log show it; a limit its scope leaves out is not
     * scaled by it.  Outside the head: a request without factors never
     * clears it. */
    uint32_t factor_ppm[RL2_FACTOR_N];
    /* Limits a runtime factor scaled for this request: layers point
     * here (rl2_verdict_copy keeps them pointing at the copy's). */
    rl2_limit_t scaled[RL2_MAX_LAYERS];
} rl2_verdict_t;

/* An empty verdict.  Only the head is cleared (layers are written as they
 * are added; the whole verdict is kilobytes and this runs for every
 * request), inline for the same reason. */
static inline void
rl2_verdict_init(rl2_verdict_t *v)
{
    memset(v, 0, offsetof(rl2_verdict_t, layers));
    v->shown = -1;
    v->tier = -1;
}

/* Copy src's head, its layers and the limits scaled for them into dst
 * (which outlives src: a front end keeps a verdict for a later phase);
 * dst's layers then point at dst's scaled limits. */
void rl2_verdict_copy(rl2_verdict_t *dst, const rl2_verdict_t *src);

/* Decide `phase` of the request against the policy's rules plus `extra`
 * rules (inline limits a front end attached to this location; each extra
 * rule always applies).  `policy` also supplies identity settings
 * (trusted proxies, API key source, tiers, whitelists).  On a store
 * error returns non-OK with err set; the verdict is then unchanged for
 * this phase and the caller applies its failure mode. */
rl2_status_t rl2_decide(const rl2_policy_t *policy, const rl2_rule_t *extra,
                        size_t n_extra, rl2_store_t *store,
                        const rl2_request_t *req, unsigned phase,
                        const rl2_clock_t *now, rl2_verdict_t *v,
                        rl2_err_t *err);

/* Every phase of the request, checked but not counted: what the client
 * has left under each limit that applies (operators' tools). */
rl2_status_t rl2_decide_peek(const rl2_policy_t *policy,
                             const rl2_rule_t *extra, size_t n_extra,
                             rl2_store_t *store, const rl2_request_t *req,
                             const rl2_clock_t *now, rl2_verdict_t *v,
                             rl2_err_t *err);

/* Does the verdict hold anything to release at the end of the request? */
int rl2_decide_holds(const rl2_verdict_t *v);

/* The request ended: release its concurrency slots. */
rl2_status_t rl2_decide_end(rl2_store_t *store, rl2_verdict_t *v,
                            const rl2_clock_t *now, rl2_err_t *err);

/* Would any limit of these rules be decided in `phase`?  Lets a front end
 * skip a phase cheaply. */
int rl2_policy_has_phase(const rl2_policy_t *policy, const rl2_rule_t *extra,
                         size_t n_extra, unsigned phase);

#endif /* RL2_DECIDE_H */
