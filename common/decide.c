/*
 * decide.c -- from a request description to one verdict.
 *
 * Order of work for one phase: resolve the client (address behind trusted
 * proxies, whitelist, API key, tier), select the rules that apply, turn
 * each applicable limit into a layer (limit + storage key), ask the store
 * to check-then-commit all layers at once, fold the answers into the
 * verdict.  Allocation-free: everything lives in the caller's verdict and
 * on the stack.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "ratelimit2/decide.h"

#include "buf.h"

#define RL2_PATH_MAX 2048
#define RL2_KEY_VALUE_MAX 96

/* Everything known about the client and request while deciding. */
typedef struct {
    const rl2_policy_t  *policy;
    const rl2_request_t *req;
    rl2_verdict_t       *v;
    unsigned             phase;
    unsigned             method_bit;
    int                  path_ready;      /* path normalised yet? */
    char                 path[RL2_PATH_MAX];
    const char          *apikey;          /* plain, from header or query */
    char                 user_hash[17];
    char                 apikey_hash[17];
    char                 group_ip[48];    /* address masked for keys */
} rl2_ctx_t;

/* Copy src into dst, truncating: log forms of keys are bounded. */
static void
rl2_copy(char *dst, size_t len, const char *src)
{
    size_t n = strnlen(src, len - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Only the head: layers are written as they are added (the full verdict
 * is kilobytes, and this runs for every request). */
void
rl2_verdict_init(rl2_verdict_t *v)
{
    memset(v, 0, offsetof(rl2_verdict_t, layers));
    v->shown = -1;
    v->tier = -1;
}

/* ---- the client address ---- */

static int
rl2_addr_parse(const char *text, int *family, uint8_t addr[16])
{
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, text, addr) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, addr) == 1) {
        *family = AF_INET6;
        return 0;
    }
    return -1;
}

static int
rl2_addr_in(const rl2_cidr_t *nets, size_t n, int family,
            const uint8_t *addr)
{
    for (size_t i = 0; i < n; i++) {
        if (rl2_cidr_match(&nets[i], family, addr)) {
            return 1;
        }
    }
    return 0;
}

/* Copy the last comma-separated element of list[0..len) into out,
 * trimmed; returns the length of the list before it (or -1 if none). */
static long
rl2_list_pop(const char *list, long len, char *out, size_t outlen)
{
    long end = len, start;

    while (end > 0 && (list[end - 1] == ' ' || list[end - 1] == '\t')) {
        end--;
    }
    start = end;
    while (start > 0 && list[start - 1] != ',') {
        start--;
    }
    long s = start;

    while (s < end && (list[s] == ' ' || list[s] == '\t')) {
        s++;
    }
    if ((size_t)(end - s) >= outlen) {
        out[0] = '\0';
    }
    else {
        memcpy(out, list + s, (size_t)(end - s));
        out[end - s] = '\0';
    }
    return start > 0 ? start - 1 : -1;
}

/* Walk X-Forwarded-For right to left while the hop we stand on is a
 * trusted proxy: the client is the right-most untrusted address.  An
 * unparsable hop stops the walk at the last good address. */
static void
rl2_resolve_forwarded(rl2_ctx_t *c)
{
    const rl2_policy_t *p = c->policy;
    rl2_verdict_t *v = c->v;
    const char *xff;
    char hop[48];
    int family;
    uint8_t addr[16];

    if (p->n_trusted == 0 || c->req->header == NULL
        || !rl2_addr_in(p->trusted, p->n_trusted, v->addr_family, v->addr)) {
        return;
    }
    xff = c->req->header(c->req->header_ctx, "X-Forwarded-For");
    if (xff == NULL) {
        return;
    }
    long len = (long)strlen(xff);

    while (len >= 0) {
        len = rl2_list_pop(xff, len, hop, sizeof(hop));
        if (rl2_addr_parse(hop, &family, addr) != 0) {
            return;
        }
        v->addr_family = family;
        memcpy(v->addr, addr, 16);
        rl2_copy(v->client_ip, sizeof(v->client_ip), hop);
        if (!rl2_addr_in(p->trusted, p->n_trusted, family, addr)) {
            return;
        }
    }
}

/* The address as it appears in keys: IPv6 grouped by prefix. */
static void
rl2_group_ip(rl2_ctx_t *c)
{
    rl2_verdict_t *v = c->v;
    uint8_t masked[16];
    unsigned bits = c->policy->ipv6_prefix;

    if (v->addr_family != AF_INET6 || bits >= 128) {
        rl2_copy(c->group_ip, sizeof(c->group_ip), v->client_ip);
        return;
    }
    memset(masked, 0, sizeof(masked));
    memcpy(masked, v->addr, bits / 8);
    if (bits % 8) {
        masked[bits / 8] = v->addr[bits / 8]
                           & (uint8_t)(0xff << (8 - bits % 8));
    }
    inet_ntop(AF_INET6, masked, c->group_ip, sizeof(c->group_ip));
    rl2_buf_t b = { c->group_ip, strlen(c->group_ip), sizeof(c->group_ip),
                    0 };

    rl2_buf_char(&b, '/');
    rl2_buf_i64(&b, bits);
}

static void
rl2_resolve_address(rl2_ctx_t *c)
{
    rl2_verdict_t *v = c->v;

    if (v->client_ip[0] == '\0') {
        const char *peer = c->req->peer_ip ? c->req->peer_ip : "";

        const rl2_policy_t *p = c->policy;

        rl2_copy(v->client_ip, sizeof(v->client_ip), peer);
        /* Parsing is needed only to compare with networks or to group
         * IPv6; a plain IPv4 key is its text. */
        if ((p->n_trusted || p->n_wl_nets || p->n_clients
             || strchr(peer, ':') != NULL)
            && rl2_addr_parse(peer, &v->addr_family, v->addr) == 0) {
            rl2_resolve_forwarded(c);
        }
    }
    rl2_group_ip(c);
}

/* ---- identity: API key, tier, whitelist ---- */

/* Find name=value in a query string; copies nothing: returns a pointer
 * into the query and the value's length. */
static const char *
rl2_query_param(const char *query, const char *name, size_t *len)
{
    size_t nlen = strlen(name);

    for (const char *p = query; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '&');
        size_t plen = end ? (size_t)(end - p) : strlen(p);

        if (plen > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            *len = plen - nlen - 1;
            return p + nlen + 1;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

static void
rl2_resolve_apikey(rl2_ctx_t *c)
{
    const rl2_policy_t *p = c->policy;
    const rl2_request_t *r = c->req;
    char buf[256];
    size_t len;

    c->apikey = NULL;
    if (p->apikey_header != NULL && r->header != NULL) {
        c->apikey = r->header(r->header_ctx, p->apikey_header);
    }
    if (c->apikey == NULL && p->apikey_query != NULL && r->query != NULL) {
        const char *val = rl2_query_param(r->query, p->apikey_query, &len);

        if (val != NULL && len > 0 && len < sizeof(buf)) {
            memcpy(buf, val, len);
            buf[len] = '\0';
            rl2_hash_id(&p->hash_key, buf, c->apikey_hash);
            c->apikey = "";  /* present; only its hash is used below */
            return;
        }
    }
    if (c->apikey != NULL && c->apikey[0] != '\0') {
        rl2_hash_id(&p->hash_key, c->apikey, c->apikey_hash);
    }
    else {
        c->apikey = NULL;
    }
}

static int
rl2_id_in(const char *const *list, size_t n, const char *id)
{
    for (size_t i = 0; id != NULL && i < n; i++) {
        if (strcmp(list[i], id) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Whitelisted API keys are compared by hash, so a query-string key and a
 * header key are treated alike. */
static int
rl2_apikey_listed(const rl2_ctx_t *c, const char *const *list, size_t n)
{
    char h[17];

    for (size_t i = 0; c->apikey != NULL && i < n; i++) {
        rl2_hash_id(&c->policy->hash_key, list[i], h);
        if (strcmp(h, c->apikey_hash) == 0) {
            return 1;
        }
    }
    return 0;
}

static const rl2_client_t *
rl2_client_find(const rl2_ctx_t *c)
{
    const rl2_policy_t *p = c->policy;
    const rl2_verdict_t *v = c->v;

    for (size_t i = 0; i < p->n_clients; i++) {
        const rl2_client_t *cl = &p->clients[i];

        if ((cl->by == RL2_KEY_USER && c->req->user != NULL
             && strcmp(cl->id, c->req->user) == 0)
            || (cl->by == RL2_KEY_APIKEY
                && rl2_apikey_listed(c, &cl->id, 1))
            || (cl->by == RL2_KEY_IP
                && rl2_cidr_match(&cl->net, v->addr_family, v->addr))) {
            return cl;
        }
    }
    return NULL;
}

static int
rl2_tier_find(const rl2_policy_t *p, const char *name)
{
    for (size_t i = 0; name != NULL && i < p->n_tiers; i++) {
        if (strcasecmp(p->tiers[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* DESIGN §3: client override, then a trusted variable or header, then
 * the default (anonymous) tier. */
static int
rl2_resolve_tier(const rl2_ctx_t *c, const rl2_client_t *client)
{
    const rl2_policy_t *p = c->policy;
    const rl2_request_t *r = c->req;
    int tier;

    if (p->n_tiers == 0) {
        return -1;
    }
    if (client != NULL && client->tier >= 0) {
        return client->tier;
    }
    if ((tier = rl2_tier_find(p, r->tier_var)) >= 0) {
        return tier;
    }
    if (p->tier_header != NULL && r->header != NULL && r->peer_ip != NULL) {
        int family;
        uint8_t addr[16];

        if (rl2_addr_parse(r->peer_ip, &family, addr) == 0
            && rl2_addr_in(p->trusted, p->n_trusted, family, addr)) {
            tier = rl2_tier_find(p, r->header(r->header_ctx,
                                              p->tier_header));
            if (tier >= 0) {
                return tier;
            }
        }
    }
    return p->default_tier;
}

static int
rl2_whitelisted(const rl2_ctx_t *c)
{
    const rl2_policy_t *p = c->policy;
    const rl2_verdict_t *v = c->v;

    if (p->wl_internal && c->req->internal) {
        return 1;
    }
    if (rl2_addr_in(p->wl_nets, p->n_wl_nets, v->addr_family, v->addr)
        || rl2_apikey_listed(c, p->wl_keys, p->n_wl_keys)) {
        return 1;
    }
    /* Users are known only after authentication. */
    return (c->phase & RL2_PHASE_LATE)
           && rl2_id_in(p->wl_users, p->n_wl_users, c->req->user);
}

/* ---- rules and layers ---- */

#define RL2_MAX_RULES (2 * RL2_MAX_LAYERS)

typedef struct {
    const rl2_rule_t *rule;
    size_t            index;   /* in policy->rules; n_rules: default;
                                  SIZE_MAX: an extra (inline) rule */
} rl2_applied_t;

/* The normalised path, computed on first use: policies whose rules all
 * match any path never pay for it. */
static const char *
rl2_ctx_path(rl2_ctx_t *c)
{
    if (!c->path_ready) {
        c->path_ready = 1;
        if (rl2_path_normalise(c->req->path ? c->req->path : "/", c->path,
                               sizeof(c->path)) != 0) {
            /* An unparsable path still meets the default rule. */
            memcpy(c->path, "/", 2);
        }
    }
    return c->path;
}

/* Select the rules that apply (DESIGN §3 "Rules"); returns how many, or
 * -1 when more apply than a request may be checked against. */
static int
rl2_select_rules(rl2_ctx_t *c, const rl2_rule_t *extra,
                 size_t n_extra, rl2_applied_t *out)
{
    const rl2_policy_t *p = c->policy;
    const char *host = c->req->host;
    int n = 0, terminal = 0;

    for (size_t i = 0; i < p->n_rules && !terminal; i++) {
        if (!rl2_rule_match(&p->rules[i], c->method_bit,
                            p->rules[i].n_paths ? rl2_ctx_path(c) : "/",
                            host)) {
            continue;
        }
        if (n == RL2_MAX_RULES) {
            return -1;
        }
        out[n++] = (rl2_applied_t){ &p->rules[i], i };
        terminal = !p->match_all && !p->rules[i].is_continue;
    }
    if (!terminal && p->default_rule != NULL
        && (!p->match_all || n == 0)) {
        if (n == RL2_MAX_RULES) {
            return -1;
        }
        out[n++] = (rl2_applied_t){ p->default_rule, p->n_rules };
    }
    for (size_t i = 0; i < n_extra; i++) {
        if (n == RL2_MAX_RULES) {
            return -1;
        }
        out[n++] = (rl2_applied_t){ &extra[i], SIZE_MAX };
    }
    return n;
}

/* The limit set a client gets from a rule; *identity says whether it
 * depends on who the client is (override or tier: decided late). */
static const rl2_limit_set_t *
rl2_rule_set(const rl2_ctx_t *c, const rl2_applied_t *a,
             const rl2_client_t *client, int *identity)
{
    const rl2_rule_t *rule = a->rule;

    *identity = 1;
    for (size_t i = 0; client != NULL && i < client->n_rules; i++) {
        if (client->rules[i].rule == a->index) {
            return &client->rules[i].set;
        }
    }
    if (rule->tiers != NULL && c->v->tier >= 0
        && rule->tiers[c->v->tier].defined) {
        return &rule->tiers[c->v->tier];
    }
    *identity = 0;
    return &rule->limits;
}

/* The client part of a storage key: "ip:ADDR", "user:HASH", ...  Keys
 * fall back to the address when their identity is absent. */
static void
rl2_key_value(const rl2_ctx_t *c, const rl2_rule_t *rule,
              const rl2_limit_t *limit, rl2_buf_t *b)
{
    const char *hv;
    char h[17];

    switch (limit->key) {
    case RL2_KEY_USER:
        if (c->req->user != NULL && c->req->user[0] != '\0') {
            rl2_buf_str(b, "user:");
            rl2_buf_str(b, c->user_hash);
            return;
        }
        break;
    case RL2_KEY_APIKEY:
        if (c->apikey != NULL) {
            rl2_buf_str(b, "key:");
            rl2_buf_str(b, c->apikey_hash);
            return;
        }
        break;
    case RL2_KEY_HEADER:
        hv = (limit->key_header && c->req->header)
             ? c->req->header(c->req->header_ctx, limit->key_header) : NULL;
        if (hv != NULL && hv[0] != '\0') {
            /* Long or odd values are hashed: keys stay bounded. */
            rl2_hash_id(&c->policy->hash_key, hv, h);
            rl2_buf_str(b, "hdr:");
            rl2_buf_str(b, h);
            return;
        }
        break;
    case RL2_KEY_ROUTE:
        rl2_buf_str(b, "route:");
        rl2_buf_str(b, rule->name);
        return;
    case RL2_KEY_GLOBAL:
        rl2_buf_str(b, "global");
        return;
    case RL2_KEY_IP:
        break;
    }
    rl2_buf_str(b, "ip:");
    rl2_buf_str(b, c->group_ip);
}

/* The storage key of one limit for this client (digested under the
 * limit's own key, see rl2_limit_t.key_seed), and its log form. */
static void
rl2_layer_key(const rl2_ctx_t *c, const rl2_rule_t *rule,
              const rl2_limit_t *limit, rl2_layer_t *layer)
{
    char value[RL2_KEY_VALUE_MAX];
    rl2_buf_t b;

    rl2_buf_init(&b, value, sizeof(value));
    rl2_key_value(c, rule, limit, &b);
    layer->key = rl2_digest_keyed(&limit->key_seed, value, b.len);
    /* Logs show the address bare, identities with their kind. */
    rl2_copy(layer->client, sizeof(layer->client),
             strncmp(value, "ip:", 3) == 0 ? value + 3 : value);
}

/* Append this phase's layers of one applied rule. */
static int
rl2_add_rule(rl2_ctx_t *c, const rl2_applied_t *a,
             const rl2_client_t *client, rl2_mode_t mode)
{
    rl2_verdict_t *v = c->v;
    int identity;
    const rl2_limit_set_t *set = rl2_rule_set(c, a, client, &identity);

    for (size_t i = 0; i < set->n; i++) {
        const rl2_limit_t *limit = &set->limits[i];
        unsigned phase = identity ? RL2_PHASE_LATE : limit->phase;

        if ((phase & c->phase) == 0) {
            continue;
        }
        if (v->n_layers == RL2_MAX_LAYERS) {
            return -1;
        }
        rl2_layer_t *layer = &v->layers[v->n_layers++];

        memset(layer, 0, sizeof(*layer));
        layer->limit = limit;
        layer->rule = a->rule;
        layer->dry_run = (mode == RL2_MODE_DRY_RUN);
        rl2_layer_key(c, a->rule, limit, layer);
    }
    return 0;
}

/* ---- folding answers into the verdict ---- */

static int
rl2_layer_denies(const rl2_layer_t *l)
{
    return l->refused && !l->dry_run && !l->limit->unlimited;
}

/* The layer the headers report: the refusing layer that waits longest,
 * else the visible layer with the least room left (then the latest
 * reset). */
static int
rl2_pick_shown(const rl2_verdict_t *v)
{
    int best = -1;

    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i], *b;

        if (l->limit->unlimited) {
            continue;
        }
        if (best < 0) {
            best = (int)i;
            continue;
        }
        b = &v->layers[best];
        if (v->outcome == RL2_OUTCOME_DENY) {
            if (rl2_layer_denies(l) && (!rl2_layer_denies(b)
                || l->result.retry_after_us > b->result.retry_after_us)) {
                best = (int)i;
            }
        }
        else if (l->result.remaining < b->result.remaining
                 || (l->result.remaining == b->result.remaining
                     && l->result.reset_us > b->result.reset_us)) {
            best = (int)i;
        }
    }
    return best;
}

static rl2_status_t
rl2_refund_committed(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                     const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_status_t st = store->ops->refund(store, layers, n, now, err);

    for (size_t i = 0; i < n; i++) {
        layers[i].committed = 0;
    }
    return st;
}

static rl2_status_t
rl2_fold(rl2_ctx_t *c, rl2_store_t *store, size_t first,
         const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_verdict_t *v = c->v;
    int denied = 0;

    for (size_t i = first; i < v->n_layers; i++) {
        const rl2_layer_t *l = &v->layers[i];

        denied |= rl2_layer_denies(l);
        v->dry_run_denied |= (l->refused && l->dry_run);
        v->overflow_used |= l->overflow_used;
    }
    if (denied) {
        v->outcome = RL2_OUTCOME_DENY;
        /* Refused now: what an earlier phase counted is taken back. */
        if (first > 0) {
            rl2_status_t st = rl2_refund_committed(store, v->layers, first,
                                                   now, err);
            if (st != RL2_OK) {
                return st;
            }
        }
    }
    else if (v->n_layers > 0 && v->outcome != RL2_OUTCOME_DENY) {
        v->outcome = RL2_OUTCOME_ALLOW;
    }
    v->shown = rl2_pick_shown(v);
    return RL2_OK;
}

static rl2_status_t
rl2_ctx_init(rl2_ctx_t *c, const rl2_policy_t *policy,
             const rl2_request_t *req, unsigned phase, rl2_verdict_t *v,
             rl2_err_t *err)
{
    /* Field by field: the context holds a path buffer of kilobytes that
     * is filled only when a rule needs it. */
    c->path_ready = 0;
    c->apikey = NULL;
    c->user_hash[0] = '\0';
    c->apikey_hash[0] = '\0';
    c->group_ip[0] = '\0';
    c->policy = policy;
    c->req = req;
    c->v = v;
    c->phase = phase;
    c->method_bit = req->method ? rl2_method_bit(req->method) : 0;
    if (c->method_bit == 0) {
        c->method_bit = RL2_METHOD_OTHER;
    }
    rl2_resolve_address(c);
    rl2_resolve_apikey(c);
    if (req->user != NULL && req->user[0] != '\0') {
        rl2_hash_id(&policy->hash_key, req->user, c->user_hash);
    }
    (void)err;
    return RL2_OK;
}

/* Layers for every applied rule, in the current phase. */
static rl2_status_t
rl2_build_layers(rl2_ctx_t *c, const rl2_rule_t *extra, size_t n_extra,
                 int *bypass, rl2_err_t *err)
{
    rl2_applied_t applied[RL2_MAX_RULES];
    const rl2_client_t *client = rl2_client_find(c);
    int n = rl2_select_rules(c, extra, n_extra, applied);

    *bypass = 0;
    if (n < 0) {
        return rl2_err_set(err, RL2_ERR_INVALID, "more than %d rules apply "
                           "to %s", RL2_MAX_RULES, rl2_ctx_path(c));
    }
    for (int i = 0; i < n; i++) {
        if (applied[i].rule->exempt) {
            *bypass = 1;
            return RL2_OK;
        }
    }
    if (c->phase & RL2_PHASE_LATE) {
        c->v->tier = rl2_resolve_tier(c, client);
    }
    for (int i = 0; i < n; i++) {
        rl2_mode_t mode = applied[i].rule->mode == RL2_MODE_INHERIT
                          ? c->policy->mode : applied[i].rule->mode;

        if (mode == RL2_MODE_OFF) {
            continue;
        }
        if (rl2_add_rule(c, &applied[i], client, mode) != 0) {
            return rl2_err_set(err, RL2_ERR_INVALID, "more than %d limits "
                               "apply to %s", RL2_MAX_LAYERS,
                               rl2_ctx_path(c));
        }
    }
    return RL2_OK;
}

rl2_status_t
rl2_decide(const rl2_policy_t *policy, const rl2_rule_t *extra,
           size_t n_extra, rl2_store_t *store, const rl2_request_t *req,
           unsigned phase, const rl2_clock_t *now, rl2_verdict_t *v,
           rl2_err_t *err)
{
    rl2_ctx_t c;
    size_t first = v->n_layers;
    int bypass;
    rl2_status_t st;

    phase &= ~v->phases;
    if (phase == 0 || v->outcome == RL2_OUTCOME_DENY
        || v->outcome == RL2_OUTCOME_BYPASS
        || policy->mode == RL2_MODE_OFF) {
        return RL2_OK;
    }
    rl2_ctx_init(&c, policy, req, phase, v, err);
    v->phases |= phase;
    if (rl2_whitelisted(&c)) {
        v->outcome = RL2_OUTCOME_BYPASS;
        return rl2_refund_committed(store, v->layers, first, now, err);
    }
    st = rl2_build_layers(&c, extra, n_extra, &bypass, err);
    if (st != RL2_OK || bypass) {
        v->n_layers = first;
        if (bypass) {
            v->outcome = RL2_OUTCOME_BYPASS;
        }
        return st;
    }
    if (v->n_layers == first) {
        return RL2_OK;
    }
    st = store->ops->apply(store, v->layers + first, v->n_layers - first,
                           now, err);
    if (st != RL2_OK) {
        v->n_layers = first;
        return st;
    }
    return rl2_fold(&c, store, first, now, err);
}

rl2_status_t
rl2_decide_peek(const rl2_policy_t *policy, const rl2_rule_t *extra,
                size_t n_extra, rl2_store_t *store, const rl2_request_t *req,
                const rl2_clock_t *now, rl2_verdict_t *v, rl2_err_t *err)
{
    rl2_ctx_t c;
    int bypass;
    rl2_status_t st;

    rl2_verdict_init(v);
    rl2_ctx_init(&c, policy, req, RL2_PHASE_ALL, v, err);
    v->phases = RL2_PHASE_ALL;
    if (rl2_whitelisted(&c)) {
        v->outcome = RL2_OUTCOME_BYPASS;
        return RL2_OK;
    }
    st = rl2_build_layers(&c, extra, n_extra, &bypass, err);
    if (st != RL2_OK || bypass || v->n_layers == 0) {
        v->n_layers = bypass ? 0 : v->n_layers;
        v->outcome = bypass ? RL2_OUTCOME_BYPASS : RL2_OUTCOME_NONE;
        return st;
    }
    st = store->ops->peek(store, v->layers, v->n_layers, now, err);
    if (st != RL2_OK) {
        return st;
    }
    v->outcome = RL2_OUTCOME_ALLOW;
    for (size_t i = 0; i < v->n_layers; i++) {
        if (rl2_layer_denies(&v->layers[i])) {
            v->outcome = RL2_OUTCOME_DENY;
        }
    }
    v->shown = rl2_pick_shown(v);
    return RL2_OK;
}

int
rl2_decide_holds(const rl2_verdict_t *v)
{
    for (size_t i = 0; i < v->n_layers; i++) {
        if (v->layers[i].committed
            && v->layers[i].limit->algo.algo == RL2_ALGO_CONCURRENCY) {
            return 1;
        }
    }
    return 0;
}

rl2_status_t
rl2_decide_end(rl2_store_t *store, rl2_verdict_t *v, const rl2_clock_t *now,
               rl2_err_t *err)
{
    rl2_layer_t held[RL2_MAX_LAYERS];
    size_t n = 0;

    for (size_t i = 0; i < v->n_layers; i++) {
        rl2_layer_t *l = &v->layers[i];

        if (l->committed && l->limit->algo.algo == RL2_ALGO_CONCURRENCY) {
            held[n++] = *l;
            l->committed = 0;
        }
    }
    return n ? store->ops->refund(store, held, n, now, err) : RL2_OK;
}

static int
rl2_set_has_phase(const rl2_limit_set_t *set, int identity, unsigned phase)
{
    for (size_t i = 0; i < set->n; i++) {
        unsigned p = identity ? RL2_PHASE_LATE : set->limits[i].phase;

        if (p & phase) {
            return 1;
        }
    }
    return 0;
}

static int
rl2_rule_has_phase(const rl2_policy_t *policy, const rl2_rule_t *rule,
                   unsigned phase)
{
    if (rl2_set_has_phase(&rule->limits, 0, phase)) {
        return 1;
    }
    for (size_t t = 0; rule->tiers != NULL && t < policy->n_tiers; t++) {
        if (rl2_set_has_phase(&rule->tiers[t], 1, phase)) {
            return 1;
        }
    }
    return 0;
}

int
rl2_policy_has_phase(const rl2_policy_t *policy, const rl2_rule_t *extra,
                     size_t n_extra, unsigned phase)
{
    /* Client overrides and tiers are identity: always late. */
    if ((phase & RL2_PHASE_LATE) && (policy->n_clients > 0
                                     || policy->n_wl_users > 0)) {
        return 1;
    }
    for (size_t i = 0; i < policy->n_rules; i++) {
        if (rl2_rule_has_phase(policy, &policy->rules[i], phase)) {
            return 1;
        }
    }
    if (policy->default_rule != NULL
        && rl2_rule_has_phase(policy, policy->default_rule, phase)) {
        return 1;
    }
    for (size_t i = 0; i < n_extra; i++) {
        if (rl2_rule_has_phase(policy, &extra[i], phase)) {
            return 1;
        }
    }
    return 0;
}
