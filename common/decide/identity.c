/*
 * identity.c -- who the client is: its address behind trusted proxies, its
 * API key, its per-client override, its tier, and whether it is
 * whitelisted.  Everything a storage key or a tier needs to know about
 * the client, resolved once per phase and allocation-free.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "ratelimit2/tier_source.h"

#include "base/buf.h"
#include "base/sha256.h"
#include "decide_internal.h"
#include "forwarded.h"
#include "base/base_internal.h"
#include "policy/policy_internal.h"
#include "redis/redis_internal.h"

/* ---- the client address ---- */

/* The usual dotted quad ("192.0.2.9": four decimal numbers 0..255, no
 * leading zero) into addr[0..3]: what inet_pton(AF_INET) reads, in a
 * quarter of its instructions, as every request of a table with entries
 * reads its client's address.  -1 for anything else, which inet_pton
 * then reads (or refuses) as before (decide_internal.h). */
int
rl2_ipv4_parse(const char *text, uint8_t addr[4])
{
    for (int part = 0; part < 4; part++) {
        unsigned v = 0, digits = 0;

        while (*text >= '0' && *text <= '9' && digits < 4) {
            v = v * 10 + (unsigned)(*text++ - '0');
            digits++;
        }
        if (digits == 0 || digits > 3 || v > 255
            || (digits > 1 && text[-(int)digits] == '0')
            || *text != (part < 3 ? '.' : '\0')) {
            return -1;
        }
        addr[part] = (uint8_t)v;
        text++;
    }
    return 0;
}

/* An IPv6 zone id ("fe80::1%eth0") names an interface of the host that
 * wrote it, not a client: it is dropped.  An IPv4-mapped IPv6 address
 * (::ffff:192.0.2.1, as dual-stack proxies write) is that IPv4 address:
 * same key, same whitelist and proxy ranges.  *canon is set when text is
 * not the address's usual spelling (then rl2_addr_text gives it). */
static int
rl2_addr_parse_canon(const char *text, int *family, uint8_t addr[16],
                     int *canon)
{
    char        nozone[48];
    const char *pct;

    memset(addr, 0, 16);
    *canon = 0;
    if (rl2_ipv4_parse(text, addr) == 0
        || inet_pton(AF_INET, text, addr) == 1) {
        *family = AF_INET;
        return 0;
    }
    if ((pct = strchr(text, '%')) != NULL) {
        if ((size_t)(pct - text) >= sizeof(nozone)) {
            return -1;
        }
        memcpy(nozone, text, (size_t)(pct - text));
        nozone[pct - text] = '\0';
        text = nozone;
        *canon = 1;
    }
    if (inet_pton(AF_INET6, text, addr) != 1) {
        return -1;
    }
    *family = AF_INET6;
    if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr)) {
        memmove(addr, addr + 12, 4);
        memset(addr + 4, 0, 12);
        *family = AF_INET;
        *canon = 1;
    }
    return 0;
}

static int
rl2_addr_parse(const char *text, int *family, uint8_t addr[16])
{
    int canon;

    return rl2_addr_parse_canon(text, family, addr, &canon);
}

/* The parsed address's text into the verdict: the usual spelling when
 * the given one was mapped or zoned, else the text as given. */
static void
rl2_addr_text(rl2_verdict_t *v, const char *text, int canon)
{
    if (!canon
        || inet_ntop(v->addr_family, v->addr, v->client_ip,
                     sizeof(v->client_ip))
               == NULL) {
        rl2_copy(v->client_ip, sizeof(v->client_ip), text);
    }
}

static int
rl2_addr_in(const rl2_cidr_t *nets, size_t n, int family, const uint8_t *addr)
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

/* The client, when the hop a trusted proxy wrote for it is no address
 * ("unknown", an obfuscated "_node", a port we cannot read): that text,
 * as the proxy gave it, without an address.  Never the proxy's own
 * address: it may be whitelisted, and every such client would share its
 * count. */
static void
rl2_unknown_client(rl2_verdict_t *v, const char *hop)
{
    size_t n = 0;

    v->addr_family = 0;
    memset(v->addr, 0, sizeof(v->addr));
    if (hop[0] == '\0') {
        memcpy(v->client_ip, "unknown", sizeof("unknown"));
        return;
    }
    memcpy(v->client_ip, "unknown:", 8);
    for (const char *s = hop; *s != '\0' && n + 9 < sizeof(v->client_ip); s++) {
        /* Printable, no space: the text reaches logs and keys. */
        if (*s > ' ' && *s < 0x7f) {
            v->client_ip[8 + n++] = *s;
        }
    }
    v->client_ip[8 + n] = '\0';
}

/* Step from the hop we stand on (a trusted proxy) to the one before it,
 * "ip", "ip:port" or "[v6]:port" (as Azure's gateway writes them):
 * returns 1 when that is a trusted proxy too (walk on), 0 when it is the
 * client, or no address (then the client is its text). */
static int
rl2_take_hop(rl2_ctx_t *c, const char *hop)
{
    const rl2_policy_t *p = c->policy;
    rl2_verdict_t      *v = c->v;
    int                 family, canon;
    uint8_t             addr[16];
    char                node[48];

    node[0] = '\0';

    if (rl2_forwarded_node(hop, node, sizeof(node)) != 0
        || rl2_addr_parse_canon(node, &family, addr, &canon) != 0) {
        rl2_unknown_client(v, node[0] != '\0' ? node : hop);
        return 0;
    }
    v->addr_family = family;
    memcpy(v->addr, addr, 16);
    rl2_addr_text(v, node, canon);
    return rl2_addr_in(p->trusted, p->n_trusted, family, addr);
}

/* Walk X-Forwarded-For (or, when a proxy sent none, the for= nodes of
 * Forwarded) right to left while the hop we stand on is a trusted proxy:
 * the client is the right-most untrusted address.  An unparsable hop
 * stops the walk at the last good address. */
static void
rl2_resolve_forwarded(rl2_ctx_t *c)
{
    const rl2_policy_t *p = c->policy;
    rl2_verdict_t      *v = c->v;
    const char         *xff;
    char                hop[48];

    if (p->n_trusted == 0 || c->req->header == NULL
        || !rl2_addr_in(p->trusted, p->n_trusted, v->addr_family, v->addr)) {
        return;
    }
    xff = c->req->header(c->req->header_ctx, "X-Forwarded-For");
    if (xff == NULL) {
        rl2_fwd_hops_t hops;

        rl2_forwarded_parse(c->req->header(c->req->header_ctx, "Forwarded"),
                            &hops);
        for (size_t i = hops.n; i > 0 && rl2_take_hop(c, hops.hop[i - 1]);
             i--) {
        }
        return;
    }
    long len = (long)strlen(xff);

    while (len >= 0) {
        len = rl2_list_pop(xff, len, hop, sizeof(hop));
        if (!rl2_take_hop(c, hop)) {
            return;
        }
    }
}

/* The address as it appears in keys: IPv6 grouped by prefix. */
static void
rl2_group_ip(rl2_ctx_t *c, size_t client_len)
{
    rl2_verdict_t *v = c->v;
    uint8_t        masked[16];
    unsigned       bits = c->policy->ipv6_prefix;

    if (v->addr_family != AF_INET6) {
        c->group_ip = v->client_ip;
        c->group_len = client_len;
        return;
    }
    if (bits >= 128) {
        /* The usual spelling, not the one a header used: "2001:DB8::1"
         * and "2001:db8:0::1" are one client. */
        inet_ntop(AF_INET6, v->addr, c->group_buf, sizeof(c->group_buf));
        c->group_ip = c->group_buf;
        c->group_len = strlen(c->group_buf);
        return;
    }
    memset(masked, 0, sizeof(masked));
    memcpy(masked, v->addr, bits / 8);
    if (bits % 8) {
        masked[bits / 8] =
            v->addr[bits / 8] & (uint8_t)(0xff << (8 - bits % 8));
    }
    inet_ntop(AF_INET6, masked, c->group_buf, sizeof(c->group_buf));
    rl2_buf_t b = { c->group_buf, strlen(c->group_buf), sizeof(c->group_buf),
                    0 };

    rl2_buf_char(&b, '/');
    rl2_buf_i64(&b, bits);
    c->group_ip = c->group_buf;
    c->group_len = b.len;
}

static void
rl2_resolve_address(rl2_ctx_t *c)
{
    rl2_verdict_t *v = c->v;

    if (v->client_ip[0] == '\0') {
        const char         *peer = c->req->peer_ip ? c->req->peer_ip : "";
        const rl2_policy_t *p = c->policy;
        size_t              n = strnlen(peer, sizeof(v->client_ip) - 1);

        memcpy(v->client_ip, peer, n);
        v->client_ip[n] = '\0';
        /* Parsing is needed only to compare with networks or to group
         * IPv6; a plain IPv4 key is its text. */
        int canon;

        if ((p->n_trusted || p->n_wl_nets || p->n_clients
             || memchr(peer, ':', n) != NULL)
            && rl2_addr_parse_canon(peer, &v->addr_family, v->addr, &canon) == 0
            && (canon || p->n_trusted > 0)) {
            rl2_addr_text(v, peer, canon);
            rl2_resolve_forwarded(c);
            n = strlen(v->client_ip);
        }
        rl2_group_ip(c, n);
        return;
    }
    rl2_group_ip(c, strlen(v->client_ip));
}

/* ---- identity: API key, tier, whitelist ---- */

/* Does the query parameter name n[0..len) name `want`, as frameworks
 * read names?  Percent-decoded, '+' a space; PHP drops leading spaces,
 * reads ' ', '.' and an unclosed '[' as '_' and "name[...]" as name (so
 * "api.key" and "api_key[]" are its api_key); ASP.NET compares without
 * case. */
static int
rl2_query_name_is(const char *n, size_t len, const char *want)
{
    char   name[128];
    size_t k = 0;

    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)n[i], d;

        if (ch == '+') {
            ch = ' ';
        }
        else if ((d = rl2_pct_byte(n + i, len - i)) >= 0) {
            ch = d;
            i += 2;
        }
        if (ch == '\0') {
            break; /* PHP reads the decoded name up to its first NUL */
        }
        if (ch == ' ' && k == 0) {
            continue;
        }
        if (ch == '[' && k > 0 && memchr(n + i + 1, ']', len - i - 1)) {
            break;
        }
        if (ch == ' ' || ch == '.' || ch == '[') {
            ch = '_';
        }
        if (k + 1 >= sizeof(name)) {
            return 0;
        }
        name[k++] = (char)ch;
    }
    name[k] = '\0';
    return strcasecmp(name, want) == 0;
}

/* Call fn(ctx, value, length) for every parameter of query that a
 * framework may read as `name` (rl2_query_name_is), in order; values are
 * raw (not decoded).  Rack before 3 also splits on ';', so both separate
 * parameters.  Returns the OR of fn's results. */
static int
rl2_query_each(const char *query, const char                           *name,
               int (*fn)(void *ctx, const char *val, size_t len), void *ctx)
{
    int r = 0;

    for (const char *p = query; p != NULL && *p != '\0';) {
        size_t      plen = strcspn(p, "&;");
        const char *eq = memchr(p, '=', plen);

        if (eq != NULL && rl2_query_name_is(p, (size_t)(eq - p), name)) {
            r |= fn(ctx, eq + 1, plen - (size_t)(eq - p) - 1);
        }
        p = p[plen] != '\0' ? p + plen + 1 : NULL;
    }
    return r;
}

/* A method name from text[0..len), percent-decoded as a framework
 * decodes a query parameter; 0 when it is no method we know. */
static unsigned
rl2_method_bit_n(const char *text, size_t len)
{
    char   name[16];
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)text[i];

        int d = rl2_pct_byte(text + i, len - i);

        if (d >= 0) {
            c = d;
            i += 2;
        }
        /* Letters only: "GET%00" is no method to a framework. */
        if (n + 1 >= sizeof(name) || !isalpha(c)) {
            return 0;
        }
        name[n++] = (char)c;
    }
    name[n] = '\0';
    return n > 0 ? rl2_method_bit(name) : 0;
}

static int
rl2_method_take(void *ctx, const char *val, size_t len)
{
    *(unsigned *)ctx |= rl2_method_bit_n(val, len);
    return 0;
}

/* The methods an override asks for: the header and every _method
 * parameter a framework may read (rl2_query_each), since a framework may
 * read either and frameworks differ on which occurrence they take. */
static unsigned
rl2_method_override(const rl2_request_t *req)
{
    unsigned    bits = 0;
    const char *val;

    if (req->header != NULL
        && (val = req->header(req->header_ctx, "X-HTTP-Method-Override"))
               != NULL) {
        bits |= rl2_method_bit_n(val, strlen(val));
    }
    if (req->query != NULL) {
        rl2_query_each(req->query, "_method", rl2_method_take, &bits);
    }
    return bits;
}

/* The methods a request may be served as, one bit each: a rule matches
 * when it names any of them.  HEAD is GET without the body to every
 * server and framework, so it meets the rules for GET (a client must not
 * step around them with curl -I).  With method_override, a POST is also
 * what X-HTTP-Method-Override or ?_method= says it is, as Rails and
 * Laravel route it. */
static unsigned
rl2_method_readings(const rl2_policy_t *p, const rl2_request_t *req)
{
    unsigned bits = req->method_bit;

    if (bits == 0 && req->method != NULL) {
        bits = rl2_method_bit(req->method);
    }
    if (bits == 0) {
        return RL2_METHOD_OTHER;
    }
    if (p->method_override && bits == RL2_METHOD_POST) {
        bits |= rl2_method_override(req);
    }
    if (bits & RL2_METHOD_HEAD) {
        bits |= RL2_METHOD_GET;
    }
    return bits;
}

/* The identity a billing system's tier is looked up by (tier_source.h),
 * by the first kind the request has: the user name, or the hex SHA-256
 * of the API key (as the request's reading found it), so the key itself
 * never reaches Redis.  buf holds at least 65 bytes.  NULL when
 * the request has none. */
const char *
rl2_tier_identity(const rl2_policy_t *p, const rl2_request_t *req,
                  const char *apikey, char *buf)
{
    const rl2_tier_redis_t *tr = p->tier_redis;

    for (size_t i = 0; tr != NULL && i < tr->n_by; i++) {
        if (tr->by[i] == RL2_TIER_BY_USER && req->user != NULL
            && req->user[0] != '\0' && strlen(req->user) <= RL2_TIER_ID_MAX) {
            return req->user;
        }
        if (tr->by[i] == RL2_TIER_BY_APIKEY && apikey != NULL
            && apikey[0] != '\0') {
            rl2_sha256_hex(apikey, strlen(apikey), buf);
            return buf;
        }
    }
    return NULL;
}

/* One value of the API key, percent-decoded as frameworks decode a
 * query parameter ('+' is a space, %00 is left as it is) when `form`, as
 * is when it came from a header; trimmed of spaces.  Into c->apikey_buf
 * when it is the first, else compared with it.  0: taken or equal; 1:
 * another key than the one before; -1: longer than max bytes, no key. */
static int
rl2_apikey_value(rl2_ctx_t *c, const char *v, size_t len, int form, size_t max,
                 int *seen)
{
    char   key[RL2_APIKEY_MAX + 1];
    char  *out = *seen ? key : c->apikey_buf;
    size_t n = 0;

    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++, len--;
    }
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
        len--;
    }
    for (size_t i = 0; i < len; i++) {
        int ch = (unsigned char)v[i], d;

        if (form && ch == '+') {
            ch = ' ';
        }
        else if (form && (d = rl2_pct_byte(v + i, len - i)) > 0) {
            ch = d; /* %00 is left as it is */
            i += 2;
        }
        if (n == max) {
            return -1;
        }
        out[n++] = (char)ch;
    }
    out[n] = '\0';
    if (n == 0) {
        return 0;
    }
    if (!*seen) {
        *seen = 1;
        return 0;
    }
    return strcmp(c->apikey_buf, key) != 0;
}

/* What one value does to the reading: 1 when it names another key than
 * the one before, and *unread set when it was too long to compare. */
static int
rl2_apikey_take(rl2_ctx_t *c, const char *v, size_t len, int form, size_t max,
                int *seen, int *unread)
{
    int r = rl2_apikey_value(c, v, len, form, max, seen);

    if (r < 0) {
        *unread = 1;
    }
    return r > 0;
}

/* The next element of a header list at *pos, trimmed of spaces and tabs
 * (it may be empty), its length in *len; *pos moves past it, to NULL
 * after the last.  A repeated header reaches the core as one such list
 * ("junk, REAL": Apache and lighttpd join them so, and ratelimit2-fcgi
 * joins nginx's repeated params the same way). */
static const char *
rl2_list_next(const char **pos, size_t *len)
{
    const char *e = *pos;
    const char *comma = strchr(e, ',');
    size_t      n = comma ? (size_t)(comma - e) : strlen(e);

    *pos = comma ? comma + 1 : NULL;
    while (n > 0 && (*e == ' ' || *e == '\t')) {
        e++, n--;
    }
    while (n > 0 && (e[n - 1] == ' ' || e[n - 1] == '\t')) {
        n--;
    }
    *len = n;
    return e;
}

/* Every value the header carries (rl2_list_next). */
static int
rl2_apikey_header(rl2_ctx_t *c, const char *v, int *seen, int *unread)
{
    int differ = 0;

    for (const char *pos = v; pos != NULL;) {
        size_t      len;
        const char *e = rl2_list_next(&pos, &len);

        differ |= rl2_apikey_take(c, e, len, 0, RL2_APIKEY_MAX, seen, unread);
    }
    return differ;
}

typedef struct {
    rl2_ctx_t *c;
    int       *seen;
    int       *unread;
} rl2_apikey_walk_t;

static int
rl2_apikey_query_take(void *ctx, const char *val, size_t len)
{
    rl2_apikey_walk_t *w = ctx;

    return rl2_apikey_take(w->c, val, len, 1, RL2_APIKEY_QUERY_MAX, w->seen,
                           w->unread);
}

/* Every parameter that a framework may read as the key: PHP and Rails
 * take the last, others the first, so the core takes the key only when
 * all agree. */
static int
rl2_apikey_query(rl2_ctx_t *c, const char *query, const char *name, int *seen,
                 int *unread)
{
    rl2_apikey_walk_t w = { c, seen, unread };

    return rl2_query_each(query, name, rl2_apikey_query_take, &w);
}

/* The request's API key, from the header and the query parameter the
 * policy names.  A request that names two different keys (the header
 * twice, the parameter twice, or one in each), or a key too long to
 * compare beside another, is refused: the limiter cannot know which one
 * the application will take, and counting it under either would let a
 * client choose whose counter it spends.  Returns 0, or -1 for such a
 * request. */
static int
rl2_resolve_apikey(rl2_ctx_t *c)
{
    const rl2_policy_t  *p = c->policy;
    const rl2_request_t *r = c->req;
    const char          *hv;
    int                  seen = 0, differ = 0, unread = 0;

    c->apikey = NULL;
    if (p->apikey_header == NULL && p->apikey_query == NULL) {
        return 0;
    }
    if (p->apikey_header != NULL && r->header != NULL
        && (hv = r->header(r->header_ctx, p->apikey_header)) != NULL) {
        differ |= rl2_apikey_header(c, hv, &seen, &unread);
    }
    if (p->apikey_query != NULL && r->query != NULL) {
        differ |=
            rl2_apikey_query(c, r->query, p->apikey_query, &seen, &unread);
    }
    if (differ || (unread && seen)) {
        return -1;
    }
    if (seen) {
        c->apikey = c->apikey_buf;
        rl2_hash_id(&p->hash_key, c->apikey, c->apikey_hash);
    }
    return 0;
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

const rl2_client_t *
rl2_client_find(const rl2_ctx_t *c)
{
    const rl2_policy_t  *p = c->policy;
    const rl2_verdict_t *v = c->v;

    for (size_t i = 0; i < p->n_clients; i++) {
        const rl2_client_t *cl = &p->clients[i];

        if ((cl->by == RL2_KEY_USER && c->req->user != NULL
             && strcmp(cl->id, c->req->user) == 0)
            || (cl->by == RL2_KEY_APIKEY && rl2_apikey_listed(c, &cl->id, 1))
            || (cl->by == RL2_KEY_IP
                && rl2_cidr_match(&cl->net, v->addr_family, v->addr))) {
            return cl;
        }
    }
    return NULL;
}

/* Did the request come from one of nets, itself?  The sender of a header
 * that raises a client's standing (its tier, a bypass) is the address
 * that connected (conn_ip: before mod_remoteip put the client a proxy
 * names in its place), else the peer.  Only an upstream that sets the
 * header is listed, never a load balancer in trusted_proxies: that one
 * passes its clients' own headers through. */
int
rl2_sent_by(const rl2_request_t *r, const rl2_cidr_t *nets, size_t n)
{
    const char *sender = r->conn_ip != NULL ? r->conn_ip : r->peer_ip;
    int         family;
    uint8_t     addr[16];

    return n > 0 && sender != NULL && rl2_addr_parse(sender, &family, addr) == 0
           && rl2_addr_in(nets, n, family, addr);
}

/* The tier named name[0..len), compared without case, or -1. */
static int
rl2_tier_find_n(const rl2_policy_t *p, const char *name, size_t len)
{
    for (size_t i = 0; name != NULL && i < p->n_tiers; i++) {
        if (strlen(p->tiers[i].name) == len
            && strncasecmp(p->tiers[i].name, name, len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int
rl2_tier_find(const rl2_policy_t *p, const char *name)
{
    return name != NULL ? rl2_tier_find_n(p, name, strlen(name)) : -1;
}

/* The tier a header names, every element of its list (rl2_list_next)
 * alike: the tier when every element names the same one, -1 when none
 * names a tier, and RL2_TIER_CONFLICT when two differ, since the limiter
 * cannot know which one the application reads. */
static int
rl2_tier_from_header(const rl2_policy_t *p, const char *value)
{
    int tier = -1, seen = 0;

    for (const char *pos = value; pos != NULL;) {
        size_t      len;
        const char *e = rl2_list_next(&pos, &len);

        if (len > 0) {
            int t = rl2_tier_find_n(p, e, len);

            if (seen && t != tier) {
                return RL2_TIER_CONFLICT;
            }
            tier = t;
            seen = 1;
        }
    }
    return tier;
}

/* The tier the billing system's Redis hash names (tier_source.h), or -1:
 * one lookup, only for the late phase, only when configured. */
static int
rl2_tier_from_source(const rl2_ctx_t *c)
{
    char        name[RL2_NAME_MAX + 1], idbuf[65];
    const char *id;
    rl2_clock_t now;

    id = rl2_tier_identity(c->policy, c->req, c->apikey, idbuf);
    if (id == NULL) {
        return -1;
    }
    rl2_clock_now(&now);
    return rl2_tier_source_get(c->req->tier_source, c->policy->tier_redis, id,
                               now.mono_us, name)
               ? rl2_tier_find(c->policy, name)
               : -1;
}

/* The tier sources in order (docs/tiers.md): the client's override in the
 * policy, then the billing system's Redis hash, then a trusted variable
 * or header, then the default (anonymous) tier. */
/* Inline in both: with from NULL (the request's path), the stores to it
 * go to a local nobody reads, which the compiler drops. */
static inline __attribute__((always_inline)) int
rl2_tier_resolve(const rl2_ctx_t *c, const rl2_client_t *client,
                 rl2_tier_from_t *from)
{
    const rl2_policy_t  *p = c->policy;
    const rl2_request_t *r = c->req;
    rl2_tier_from_t      unread;
    int                  tier;

    from = from != NULL ? from : &unread;
    *from = RL2_TIER_FROM_NONE;
    if (p->n_tiers == 0) {
        return -1;
    }
    /* The operator's decision of the moment comes first. */
    if (c->ovr_read && c->ovr.tier >= 0) {
        *from = RL2_TIER_FROM_OVERRIDE;
        return c->ovr.tier;
    }
    if (client != NULL && client->tier >= 0) {
        *from = RL2_TIER_FROM_CLIENT;
        return client->tier;
    }
    if (r->tier_source != NULL && (tier = rl2_tier_from_source(c)) >= 0) {
        *from = RL2_TIER_FROM_REDIS;
        return tier;
    }
    if ((tier = rl2_tier_find(p, r->tier_var)) >= 0) {
        *from = RL2_TIER_FROM_VARIABLE;
        return tier;
    }
    if (p->tier_header != NULL && r->header != NULL
        && rl2_sent_by(r, p->tier_nets, p->n_tier_nets)) {
        tier =
            rl2_tier_from_header(p, r->header(r->header_ctx, p->tier_header));
        if (tier >= 0 || tier == RL2_TIER_CONFLICT) {
            *from = RL2_TIER_FROM_HEADER;
            return tier;
        }
    }
    *from = RL2_TIER_FROM_DEFAULT;
    return p->default_tier;
}

int
rl2_resolve_tier(const rl2_ctx_t *c, const rl2_client_t *client)
{
    /* Most policies have no tiers: out before the registers are saved. */
    if (c->policy->n_tiers == 0) {
        return -1;
    }
    return rl2_tier_resolve(c, client, NULL);
}

int
rl2_resolve_tier_from(const rl2_ctx_t *c, const rl2_client_t *client,
                      rl2_tier_from_t *from)
{
    return rl2_tier_resolve(c, client, from);
}

/* The internal header, every element of its list (rl2_list_next): the
 * request is internal only when each element says so.  A sender that
 * appended its value to a client's own ("1, 0") or an empty element
 * ("1,") is never read in the client's favour: the application may read
 * either value.  Believed only from the upstreams that set it
 * (rl2_sent_by). */
static int
rl2_internal_header(const rl2_ctx_t *c)
{
    const rl2_policy_t  *p = c->policy;
    const rl2_request_t *r = c->req;
    const char          *value;

    if (p->wl_internal_header == NULL || r->header == NULL
        || (value = r->header(r->header_ctx, p->wl_internal_header)) == NULL
        || !rl2_sent_by(r, p->wl_internal_nets, p->n_wl_internal_nets)) {
        return 0;
    }
    for (const char *pos = value; pos != NULL;) {
        size_t      len;
        const char *e = rl2_list_next(&pos, &len);

        /* rl2_internal_value's rule: empty and "0" say no. */
        if (len == 0 || (len == 1 && e[0] == '0')) {
            return 0;
        }
    }
    return 1;
}

int
rl2_whitelisted(const rl2_ctx_t *c)
{
    const rl2_policy_t  *p = c->policy;
    const rl2_verdict_t *v = c->v;

    if (!rl2_has_whitelist(p)) {
        return 0;
    }
    if (p->wl_internal && (c->req->internal || rl2_internal_header(c))) {
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

int
rl2_ctx_init(rl2_ctx_t *c, const rl2_policy_t *policy, const rl2_request_t *req,
             unsigned phase, rl2_verdict_t *v)
{
    /* Field by field: the context holds a path buffer of kilobytes that
     * is filled only when a rule needs it. */
    c->path_ready = 0;
    c->path_ambiguous = 0;
    c->path = c->path_buf;
    c->path_heap = NULL;
    c->apikey = NULL;
    c->user_hash[0] = '\0';
    c->apikey_hash[0] = '\0';
    c->group_ip = "";
    c->group_len = 0;
    c->policy = policy;
    c->req = req;
    c->v = v;
    c->phase = phase;
    c->ovr_read = 0;
    c->method_bit = rl2_method_readings(policy, req);
    rl2_resolve_address(c);
    if (req->user != NULL && req->user[0] != '\0') {
        rl2_hash_id(&policy->hash_key, req->user, c->user_hash);
    }
    return rl2_resolve_apikey(c);
}

void
rl2_ctx_who(rl2_ctx_t *c, rl2_ovr_who_t *who)
{
    rl2_verdict_t *v = c->v;

    if (v->addr_family == 0
        && rl2_addr_parse(v->client_ip, &v->addr_family, v->addr) != 0) {
        v->addr_family = 0;
    }
    who->family = v->addr_family;
    who->addr = v->addr;
    who->user = c->req->user;
    who->key_hash = c->apikey != NULL ? c->apikey_hash : NULL;
}

void
rl2_ctx_fini(rl2_ctx_t *c)
{
    free(c->path_heap);
    c->path_heap = NULL;
}
