/*
 * explain.c -- ratelimit2ctl explain PATH: why a request would be let
 * through or refused, step by step (rl2_decide_explain): the rules that
 * apply and what matched them, the tier and where it came from, each
 * adaptive factor and runtime override that touches the client, and per
 * limit the count as written, as scaled, and what the store holds of it.
 *
 * Nothing is counted: the store is peeked, the override table read, and
 * the load factor taken from the servers' last reading (or the load file
 * itself when none has read it yet), so asking never changes an answer.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ratelimit2/explain.h"
#include "ratelimit2/headers.h"
#include "ratelimit2/overrides.h"

#include "ctl.h"

/* The request as the options describe it (o->explain): its headers are
 * what rl2_request_t's header function answers. */
typedef struct {
    const rl2_ctl_opts_t *o;
    const rl2_policy_t   *policy;
    rl2_request_t         req;
    char                  query[1024];
} rl2_ctl_xreq_t;

/* The value of a --header line "Name: value" when it names `name`. */
static const char *
rl2_ctl_xheader_of(const char *line, const char *name)
{
    size_t n = strlen(name);

    if (strncasecmp(line, name, n) != 0 || line[n] != ':') {
        return NULL;
    }
    line += n + 1;
    while (*line == ' ' || *line == '\t') {
        line++;
    }
    return line;
}

static const char *
rl2_ctl_xheader(void *ctx, const char *name)
{
    const rl2_ctl_xreq_t *x = ctx;
    const rl2_ctl_opts_t *o = x->o;
    const char           *v;

    if (o->x_apikey != NULL && x->policy->apikey_header != NULL
        && strcasecmp(name, x->policy->apikey_header) == 0) {
        return o->x_apikey;
    }
    if (o->tier != NULL && x->policy->tier_variable == NULL
        && x->policy->tier_header != NULL
        && strcasecmp(name, x->policy->tier_header) == 0) {
        return o->tier;
    }
    for (size_t i = 0; i < o->x_n_headers; i++) {
        if ((v = rl2_ctl_xheader_of(o->x_headers[i], name)) != NULL) {
            return v;
        }
    }
    return NULL;
}

/* --header: a token, a colon, a value of printable bytes (tabs allowed),
 * as a server would have received it. */
static int
rl2_ctl_xheader_ok(const char *line)
{
    const char *p = line;

    while (*p != '\0' && *p != ':'
           && (isalnum((unsigned char)*p) || strchr("!#$%&'*+-.^_`|~", *p))) {
        p++;
    }
    if (p == line || *p != ':') {
        return 0;
    }
    for (p++; *p != '\0'; p++) {
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f) {
            return 0;
        }
    }
    return 1;
}

/* The request, checked: every option that does not read is refused. */
static int
rl2_ctl_xrequest(const rl2_ctl_opts_t *o, const rl2_policy_t *policy,
                 const char *path, rl2_ctl_xreq_t *x)
{
    memset(x, 0, sizeof(*x));
    x->o = o;
    x->policy = policy;
    if (path[0] != '/') {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "explain: PATH \"%s\" does not "
                            "start with /",
                            path);
    }
    if (o->x_client != NULL && !rl2_ctl_is_address(o->x_client)) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "--client \"%s\": not an address",
                            o->x_client);
    }
    for (size_t i = 0; i < o->x_n_headers; i++) {
        if (!rl2_ctl_xheader_ok(o->x_headers[i])) {
            return rl2_ctl_fail(RL2_CTL_USAGE,
                                "--header \"%s\": expected 'Name: value'",
                                o->x_headers[i]);
        }
    }
    if (o->x_apikey != NULL && policy->apikey_header == NULL
        && policy->apikey_query == NULL) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "--api-key: the policy reads no "
                                           "API key (api_key)");
    }
    if (o->tier != NULL && policy->tier_variable == NULL
        && policy->tier_header == NULL) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "--tier: the policy takes no tier "
                                           "from a variable or a header "
                                           "(tier_from)");
    }
    x->req.method = o->method;
    x->req.path = path;
    x->req.host = o->x_host;
    x->req.peer_ip = o->x_client != NULL ? o->x_client : "127.0.0.1";
    x->req.user = o->x_user;
    x->req.tier_var = policy->tier_variable != NULL ? o->tier : NULL;
    /* The geo factor takes it before its own sources (explain.c). */
    x->req.country_var = o->x_country;
    x->req.header = rl2_ctl_xheader;
    x->req.header_ctx = x;
    if (o->x_apikey != NULL && policy->apikey_header == NULL) {
        if ((size_t)snprintf(x->query, sizeof(x->query), "%s=%s",
                             policy->apikey_query, o->x_apikey)
            >= sizeof(x->query)) {
            return rl2_ctl_fail(RL2_CTL_USAGE, "--api-key: too long");
        }
        x->req.query = x->query;
    }
    return RL2_CTL_OK;
}

/* ---- the parts of the answer, as text and JSON ---- */

static const char *
rl2_ctl_xmode(rl2_mode_t m)
{
    return m == RL2_MODE_DRY_RUN ? "dry_run"
           : m == RL2_MODE_OFF   ? "off"
                                 : "enforce";
}

/* Length of the valid UTF-8 sequence of 2 to 4 bytes at s, or 0 (an
 * overlong form, a surrogate, past U+10FFFF, cut short). */
static size_t
rl2_ctl_xutf8(const unsigned char *s)
{
    size_t   n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    uint32_t c = s[0] & (0x7f >> n);

    if (n == 0 || s[0] > 0xf4) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        c = c << 6 | (s[i] & 0x3f);
    }
    return (n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10ffff
                   || (c >= 0xd800 && c <= 0xdfff)
               ? 0
               : n;
}

/* s as the inside of a JSON string: what the operator typed may be
 * anything, and the object must still parse (a byte that is not UTF-8
 * becomes U+FFFD). */
static void
rl2_ctl_xescape(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0') {
        size_t n = *p >= 0x80 ? rl2_ctl_xutf8(p) : 0;

        if (*p < 0x80) {
            char c[2] = { (char)*p++, '\0' };

            rl2_ctl_escape(stdout, c, 1);
        }
        else if (n > 0) {
            fwrite(p, 1, n, stdout);
            p += n;
        }
        else {
            fputs("\\ufffd", stdout);
            p++;
        }
    }
}

/* A JSON string member: "key":"value", or "key":null for NULL. */
static void
rl2_ctl_xjs(const char *key, const char *value, int comma)
{
    printf("%s\"%s\":", comma ? "," : "", key);
    if (value == NULL) {
        printf("null");
        return;
    }
    putchar('"');
    rl2_ctl_xescape(value);
    putchar('"');
}

static void
rl2_ctl_xjson_request(const rl2_ctl_xreq_t *q)
{
    const rl2_ctl_opts_t *o = q->o;

    printf("\"request\":{");
    rl2_ctl_xjs("method", q->req.method, 0);
    rl2_ctl_xjs("path", q->req.path, 1);
    rl2_ctl_xjs("host", q->req.host, 1);
    rl2_ctl_xjs("client", q->req.peer_ip, 1);
    rl2_ctl_xjs("user", q->req.user, 1);
    printf(",\"api_key\":%s", o->x_apikey != NULL ? "true" : "false");
    rl2_ctl_xjs("tier", o->tier, 1);
    rl2_ctl_xjs("country", o->x_country, 1);
    printf(",\"headers\":[");
    for (size_t i = 0; i < o->x_n_headers; i++) {
        printf("%s\"", i ? "," : "");
        rl2_ctl_xescape(o->x_headers[i]);
        putchar('"');
    }
    printf("]}");
}

static void
rl2_ctl_xtext_request(const rl2_ctl_xreq_t *q, const rl2_explain_t *x)
{
    const rl2_ctl_opts_t *o = q->o;

    printf("request   %s %s  host %s  client %s  user %s  api_key %s  "
           "country %s\n",
           q->req.method, q->req.path, q->req.host ? q->req.host : "-",
           q->req.peer_ip, q->req.user ? q->req.user : "-",
           o->x_apikey != NULL ? "given" : "-",
           o->x_country != NULL ? o->x_country : "-");
    if (x->path[0] != '\0' && strcmp(x->path, q->req.path) != 0) {
        printf("path      %s (normalised)\n", x->path);
    }
}

/* Why a rule applies: the glob that matched, its methods and mode. */
static void
rl2_ctl_xrule_why(const rl2_explain_rule_t *e, char *buf, size_t size)
{
    static const char *const names[] = { "GET",     "HEAD",    "POST",
                                         "PUT",     "DELETE",  "PATCH",
                                         "OPTIONS", "CONNECT", "TRACE",
                                         "other" };
    const rl2_rule_t        *r = e->rule;
    size_t                   n;

    n = (size_t)snprintf(buf, size, "path %s, methods ",
                         r->n_paths == 0 ? "any"
                         : e->path       ? e->path
                                         : "?");
    if (r->methods == 0 && n < size) {
        n += (size_t)snprintf(buf + n, size - n, "any");
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && n < size; i++) {
        if (r->methods & (1u << i)) {
            n += (size_t)snprintf(
                buf + n, size - n, "%s%s",
                (r->methods & ((1u << i) - 1)) != 0 ? "," : "", names[i]);
        }
    }
    if (n < size) {
        snprintf(buf + n, size - n, ", host %s",
                 r->n_hosts == 0 ? "any"
                 : e->host       ? e->host
                                 : "?");
    }
}

static void
rl2_ctl_xrules(const rl2_ctl_xreq_t *q, const rl2_explain_t *x, int json)
{
    char why[512];

    if (json) {
        printf(",\"rules\":[");
    }
    else if (x->n_rules == 0) {
        printf("rule      none: no rule matches %s %s and the policy has no "
               "default rule\n",
               q->req.method, x->path[0] ? x->path : q->req.path);
    }
    for (size_t i = 0; i < x->n_rules; i++) {
        const rl2_explain_rule_t *e = &x->rules[i];
        const rl2_rule_t         *r = e->rule;
        int                       dflt = r == q->policy->default_rule;

        rl2_ctl_xrule_why(e, why, sizeof(why));
        if (json) {
            printf("%s{", i ? "," : "");
            rl2_ctl_xjs("name", r->name, 0);
            printf(",\"default\":%s", dflt ? "true" : "false");
            rl2_ctl_xjs("file", r->file, 1);
            printf(",\"line\":%d", r->line);
            rl2_ctl_xjs("matched", why, 1);
            rl2_ctl_xjs("mode", rl2_ctl_xmode(e->mode), 1);
            printf(",\"mode_runtime\":%s,\"exempt\":%s,\"continue\":%s}",
                   e->runtime ? "true" : "false", r->exempt ? "true" : "false",
                   r->is_continue ? "true" : "false");
            continue;
        }
        printf("rule      %s%s: %s, mode %s%s%s%s\n", r->name,
               dflt ? " (the default rule)" : "",
               dflt ? "no rule matched" : why, rl2_ctl_xmode(e->mode),
               e->runtime ? " (runtime override)" : "",
               r->exempt ? ", exempt" : "", r->is_continue ? ", continue" : "");
    }
    if (json) {
        printf("],\"exempt\":%s,\"whitelisted\":%s",
               x->exempt ? "true" : "false", x->whitelisted ? "true" : "false");
    }
}

/* The clients entry, as the policy names it: "user alice",
 * "api key", "network 192.0.2.0/24". */
static void
rl2_ctl_xclient(const rl2_client_t *cl, char *buf, size_t size)
{
    char addr[INET6_ADDRSTRLEN];

    if (cl->by == RL2_KEY_USER) {
        snprintf(buf, size, "user %s", cl->id);
    }
    else if (cl->by == RL2_KEY_APIKEY) {
        snprintf(buf, size, "api key (line %d)", cl->line);
    }
    else if (inet_ntop(cl->net.family, cl->net.addr, addr, sizeof(addr))
             != NULL) {
        snprintf(buf, size, "network %s/%u", addr, cl->net.prefix);
    }
    else {
        snprintf(buf, size, "network (line %d)", cl->line);
    }
}

static void
rl2_ctl_xtier(const rl2_ctl_xreq_t *q, const rl2_explain_t *x, int json)
{
    const rl2_policy_t *p = q->policy;
    char                why[256], cl[96];

    switch (x->tier_from) {
    case RL2_TIER_FROM_OVERRIDE:
        snprintf(why, sizeof(why), "a runtime override (ratelimit2ctl tier)");
        break;
    case RL2_TIER_FROM_CLIENT:
        rl2_ctl_xclient(&p->clients[x->client], cl, sizeof(cl));
        snprintf(why, sizeof(why), "the clients entry for %s", cl);
        break;
    case RL2_TIER_FROM_REDIS:
        snprintf(why, sizeof(why), "tier_from.redis");
        break;
    case RL2_TIER_FROM_VARIABLE:
        snprintf(why, sizeof(why), "tier_from.variable %s", p->tier_variable);
        break;
    case RL2_TIER_FROM_HEADER:
        snprintf(why, sizeof(why),
                 "tier_from.header %s, sent by a trusted "
                 "upstream",
                 p->tier_header);
        break;
    default:
        snprintf(why, sizeof(why), "default_tier: nothing else names one");
    }
    if (json) {
        printf(",\"tier\":");
        if (x->v.tier < 0) {
            printf("null");
            return;
        }
        printf("{");
        rl2_ctl_xjs("name", p->tiers[x->v.tier].name, 0);
        rl2_ctl_xjs("from", rl2_tier_from_names[x->tier_from], 1);
        rl2_ctl_xjs("why", why, 1);
        printf(",\"redis_not_asked\":%s}",
               p->tier_redis != NULL ? "true" : "false");
        return;
    }
    if (x->v.tier < 0) {
        return;
    }
    printf("tier      %s, from %s\n", p->tiers[x->v.tier].name, why);
    if (p->tier_redis != NULL && x->tier_from > RL2_TIER_FROM_REDIS) {
        printf("note      tier_from.redis is not asked by ratelimit2ctl: a "
               "tier the billing system names comes before this one\n");
    }
}

/* Why an adaptive factor has its value. */
static void
rl2_ctl_xfactor_why(const rl2_policy_t *p, const rl2_explain_t *x, size_t f,
                    char *buf, size_t size)
{
    char m[32], g[32];

    if (f == RL2_FACTOR_LOAD) {
        if (x->load_milli < 0) {
            snprintf(buf, size, "the load file %s does not read: x1",
                     p->load.source);
            return;
        }
        snprintf(m, sizeof(m), "%g", (double)x->load_milli / 1000);
        if (x->load_step < 0) {
            snprintf(buf, size, "load %s (%s), in no step", m,
                     x->load_read ? "the servers' last reading"
                                  : "the load file now; no server has read it");
            return;
        }
        const rl2_load_step_t *s = &p->load.steps[x->load_step];

        snprintf(g, sizeof(g), "%g", (double)s->threshold_milli / 1000);
        snprintf(buf, size, "load %s (%s), step %s %s", m,
                 x->load_read ? "the servers' last reading"
                              : "the load file now; no server has read it",
                 s->above ? "above" : "below", g);
        return;
    }
    if (f == RL2_FACTOR_SCHEDULE) {
        if (x->sched_window < 0) {
            snprintf(buf, size, "no window of %s holds now", p->schedule.zone);
            return;
        }
        const rl2_sched_window_t *w = &p->schedule.windows[x->sched_window];
        static const char *const  day[] = { "Mon", "Tue", "Wed", "Thu",
                                            "Fri", "Sat", "Sun" };
        char                      days[32] = "";
        size_t                    n = 0;

        for (int d = 0; d < 7 && w->days != 0x7f; d++) {
            if (w->days & (1u << d)) {
                n += (size_t)snprintf(days + n, sizeof(days) - n, "%s%s",
                                      n ? "," : "", day[d]);
            }
        }
        /* to_s past a day: the window crossed midnight. */
        snprintf(buf, size,
                 "window %d (%s %02d:%02d to %02d:%02d%s in %s) holds now",
                 x->sched_window + 1, w->days == 0x7f ? "every day" : days,
                 w->from_s / 3600, w->from_s / 60 % 60,
                 w->to_s > 86400 ? (w->to_s - 86400) / 3600 : w->to_s / 3600,
                 w->to_s / 60 % 60, w->to_s > 86400 ? " the next day" : "",
                 p->schedule.zone);
        return;
    }
    if (f == RL2_FACTOR_GEO) {
        snprintf(buf, size, "%s%s%s",
                 x->country[0] != '\0' ? "country " : "no country known: ",
                 x->country[0] != '\0' ? x->country : "the default",
                 x->country[0] == '\0' ? ""
                 : x->country_given    ? " (--country)"
                 : p->geo.factor_ppm[(x->country[0] - 'A') * 26
                                     + (x->country[1] - 'A')]
                         == 0
                     ? " (from the policy's sources; not listed: the default)"
                     : " (from the policy's sources)");
        return;
    }
    if (x->rep_read) {
        snprintf(buf, size,
                 "%" PRId64 " requests, %" PRId64 " refused, %" PRId64
                 " automatic bans in the last window of %llds",
                 x->rep_counts[0], x->rep_counts[1], x->rep_counts[2],
                 (long long)(p->reputation.window_us / RL2_US_PER_S));
        return;
    }
    snprintf(buf, size, "no history read (no address, or no store): high");
}

/* A factor's scope: "every rule, any tier", "rules search; tiers free". */
static void
rl2_ctl_xscope(const rl2_factor_use_t *u, char *buf, size_t size)
{
    size_t n = 0;

    n += (size_t)snprintf(buf, size, u->n_rules ? "rules" : "every rule");
    for (size_t i = 0; i < u->n_rules && n < size; i++) {
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? "," : " ",
                              u->rules[i]);
    }
    if (n < size) {
        n += (size_t)snprintf(buf + n, size - n,
                              u->n_tiers ? "; tiers" : "; any tier");
    }
    for (size_t i = 0; i < u->n_tiers && n < size; i++) {
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? "," : " ",
                              u->tiers[i]);
    }
}

static void
rl2_ctl_xfactors(const rl2_ctl_xreq_t *q, const rl2_explain_t *x, int json)
{
    const rl2_policy_t *p = q->policy;
    char                why[256], scope[512], v[32];
    int                 any = 0;

    if (json) {
        printf(",\"factors\":[");
    }
    for (size_t f = 0; f < RL2_FACTOR_N; f++) {
        if (x->v.factor_ppm[f] == 0) {
            continue;
        }
        rl2_ovr_factor_format(x->v.factor_ppm[f], v, sizeof(v));
        rl2_ctl_xfactor_why(p, x, f, why, sizeof(why));
        rl2_ctl_xscope(&p->factors[f], scope, sizeof(scope));
        if (!json) {
            printf("factor    %s=%s: %s; scope %s\n", rl2_factor_names[f], v,
                   why, scope);
            continue;
        }
        printf("%s{", any ? "," : "");
        rl2_ctl_xjs("name", rl2_factor_names[f], 0);
        printf(",\"value\":%s", v);
        rl2_ctl_xjs("why", why, 1);
        rl2_ctl_xjs("scope", scope, 1);
        if (f == RL2_FACTOR_LOAD && x->load_milli >= 0) {
            printf(",\"load\":%g,\"read_by_servers\":%s,\"step\":%d",
                   (double)x->load_milli / 1000,
                   x->load_read ? "true" : "false", x->load_step);
        }
        else if (f == RL2_FACTOR_LOAD) {
            printf(",\"load\":null,\"read_by_servers\":%s,\"step\":-1",
                   x->load_read ? "true" : "false");
        }
        if (f == RL2_FACTOR_SCHEDULE) {
            printf(",\"window\":%d", x->sched_window);
        }
        printf("}");
        any = 1;
    }
    if (json) {
        printf("]");
    }
}

/* Does an override of the table touch this request: a boost of one of
 * its rules, of its tier or of all, a mode of one of its rules, the
 * emergency switch?  (Bans, allows and tiers are the client's own: the
 * decision says which apply.) */
static int
rl2_ctl_xtouches(const rl2_override_t *ov, const rl2_explain_t *x,
                 const char *tier)
{
    if (ov->kind == RL2_OVR_EMERGENCY
        || (ov->kind == RL2_OVR_BOOST && strcmp(ov->target, "*") == 0)) {
        return 1;
    }
    if (ov->kind == RL2_OVR_BOOST && tier != NULL
        && strncmp(ov->target, "tier:", 5) == 0
        && strcmp(ov->target + 5, tier) == 0) {
        return 1;
    }
    if (ov->kind != RL2_OVR_BOOST && ov->kind != RL2_OVR_MODE) {
        return 0;
    }
    for (size_t i = 0; i < x->n_rules; i++) {
        if (strncmp(ov->target, "rule:", 5) == 0
            && strcmp(ov->target + 5, x->rules[i].rule->name) == 0) {
            return 1;
        }
    }
    return 0;
}

static void
rl2_ctl_xoverride(const rl2_override_t *ov, int64_t now_us, int json, int comma)
{
    char value[RL2_OVR_NAME_MAX + 16], left[32];

    rl2_ovr_value_text(ov, value, sizeof(value));
    snprintf(left, sizeof(left), "no end");
    if (ov->expires_us != 0) {
        rl2_ctl_left(ov->expires_us - now_us, left, sizeof(left));
    }
    if (!json) {
        printf("override  %s %s %s, %s%s\n", rl2_ovr_kind_name(ov->kind),
               ov->target, value, left, ov->expires_us != 0 ? " left" : "");
        return;
    }
    printf("%s{", comma ? "," : "");
    rl2_ctl_xjs("kind", rl2_ovr_kind_name(ov->kind), 0);
    rl2_ctl_xjs("target", ov->target, 1);
    rl2_ctl_xjs("value", value, 1);
    if (ov->expires_us != 0) {
        printf(",\"seconds_left\":%" PRId64,
               (ov->expires_us - now_us + RL2_US_PER_S - 1) / RL2_US_PER_S);
    }
    else {
        printf(",\"seconds_left\":null");
    }
    printf("}");
}

/* The client's own entries (from the decision) and the table's entries
 * that touch its rules. */
static void
rl2_ctl_xoverrides(const rl2_ctl_xreq_t *q, const rl2_explain_t *x,
                   const rl2_override_t *all, long n, int64_t now_us, int json)
{
    const char *tier = x->v.tier >= 0 ? q->policy->tiers[x->v.tier].name : NULL;
    int         k = 0;

    if (json) {
        printf(",\"overrides\":{\"table\":%s,\"banned\":%s,\"allowed\":%s",
               x->table ? "true" : "false", x->banned ? "true" : "false",
               x->allowed ? "true" : "false");
        rl2_ctl_xjs("tier",
                    x->tier_override >= 0
                        ? q->policy->tiers[x->tier_override].name
                        : NULL,
                    1);
        printf(",\"entries\":[");
    }
    else if (!x->table) {
        printf("override  none read: the policy's overrides group is off\n");
    }
    else {
        if (x->banned) {
            printf("override  the client is banned\n");
        }
        if (x->allowed) {
            printf("override  the client is allowed past every limit\n");
        }
        if (x->tier_override >= 0) {
            printf("override  the client is given tier %s\n",
                   q->policy->tiers[x->tier_override].name);
        }
    }
    for (long i = 0; i < n; i++) {
        if (rl2_ctl_xtouches(&all[i], x, tier)) {
            rl2_ctl_xoverride(&all[i], now_us, json, k++ > 0);
        }
    }
    if (json) {
        printf("]}");
    }
}

/* What scaled a layer: "boost x2, load x0.7"; then the factors on whose
 * scope leaves it out ("out of scope: load"), and, for a limit no factor
 * may scale, why not; "" when none of these. */
static void
rl2_ctl_xscaled_by(const rl2_explain_t *x, size_t i, char *buf, size_t size)
{
    const rl2_explain_layer_t *e = &x->layers[i];
    const rl2_limit_t         *l = x->v.layers[i].limit;
    char                       v[32];
    size_t                     n = 0;
    int                        out = 0;

    buf[0] = '\0';
    if (e->boost_ppm != RL2_OVR_FACTOR_ONE) {
        rl2_ovr_factor_format(e->boost_ppm, v, sizeof(v));
        n += (size_t)snprintf(buf, size, "boost x%s", v);
    }
    for (size_t f = 0; f < RL2_FACTOR_N && n < size; f++) {
        if (e->factors & (1u << f)) {
            rl2_ovr_factor_format(x->v.factor_ppm[f], v, sizeof(v));
            n += (size_t)snprintf(buf + n, size - n, "%s%s x%s", n ? ", " : "",
                                  rl2_factor_names[f], v);
        }
    }
    for (size_t f = 0; f < RL2_FACTOR_N && n < size; f++) {
        if (x->v.factor_ppm[f] != 0 && !(e->factors & (1u << f))) {
            n += (size_t)snprintf(buf + n, size - n, "%s%s",
                                  out++ ? ","
                                  : n   ? "; out of scope: "
                                        : "out of scope: ",
                                  rl2_factor_names[f]);
        }
    }
    if (l == e->limit && n < size
        && (e->boost_ppm != RL2_OVR_FACTOR_ONE || e->factors != 0)) {
        snprintf(buf + n, size - n, "; not scaled: %s",
                 l->unlimited ? "unlimited"
                 : l->algo.algo == RL2_ALGO_SLIDING_LOG
                     ? "a sliding_log keeps its count"
                     : "x1 in all");
    }
}

static const char *
rl2_ctl_xstate(const rl2_layer_t *l)
{
    return l->limit->unlimited ? "unlimited"
           : !l->refused       ? "allowed"
           : l->dry_run        ? "refused (dry_run: not enforced)"
                               : "refused";
}

static void
rl2_ctl_xlimits(const rl2_explain_t *x, int json)
{
    char st[64], ef[64], by[256], key[96];

    if (json) {
        printf(",\"limits\":[");
    }
    for (size_t i = 0; i < x->v.n_layers; i++) {
        const rl2_layer_t *l = &x->v.layers[i];
        const rl2_limit_t *w = x->layers[i].limit;
        int64_t            left, limit = l->limit->algo.limit;
        const char        *variant =
            l->variant > 0 && l->variant <= l->rule->n_variants
                       ? l->rule->variants[l->variant - 1].name
                       : NULL;

        /* A peek answers as if the request were counted (status.c). */
        left = l->result.allowed ? l->result.remaining + l->limit->cost
                                 : l->result.remaining;
        left = left > limit ? limit : left < 0 ? 0 : left;
        rl2_ctl_rate(w, st, sizeof(st));
        rl2_ctl_rate(l->limit, ef, sizeof(ef));
        rl2_ctl_xscaled_by(x, i, by, sizeof(by));
        snprintf(key, sizeof(key), "%s%s%s", rl2_ctl_key_name(w),
                 w->key_header ? ":" : "", w->key_header ? w->key_header : "");
        if (!json) {
            printf("limit     %s%s%s%s/%s  %s  key %s %s  static %s  effective "
                   "%s%s%s%s  used %" PRId64 "  left %" PRId64 "  %s\n",
                   l->rule->name, variant != NULL ? "[variant " : "",
                   variant != NULL ? variant : "",
                   variant != NULL ? "]"
                   : l->challenger ? "[challenger]"
                                   : "",
                   w->name, rl2_algo_name(w->algo.algo), key, l->client, st, ef,
                   by[0] ? " (" : "", by, by[0] ? ")" : "", limit - left, left,
                   rl2_ctl_xstate(l));
            continue;
        }
        printf("%s{", i ? "," : "");
        rl2_ctl_xjs("rule", l->rule->name, 0);
        rl2_ctl_xjs("limit", w->name, 1);
        rl2_ctl_xjs("variant", variant, 1);
        printf(",\"challenger\":%s", l->challenger ? "true" : "false");
        rl2_ctl_xjs("algorithm", rl2_algo_name(w->algo.algo), 1);
        rl2_ctl_xjs("key", key, 1);
        rl2_ctl_xjs("client", l->client, 1);
        rl2_ctl_xjs("static", st, 1);
        printf(",\"static_count\":%" PRId64, w->algo.limit);
        rl2_ctl_xjs("effective", ef, 1);
        printf(",\"effective_count\":%" PRId64, limit);
        rl2_ctl_xjs("scaled_by", by[0] ? by : NULL, 1);
        printf(",\"used\":%" PRId64 ",\"left\":%" PRId64, limit - left, left);
        rl2_ctl_xjs("state", rl2_ctl_xstate(l), 1);
        printf("}");
    }
    if (json) {
        printf("]");
    }
}

/* The answer, and why it is that one. */
static void
rl2_ctl_xverdict(const rl2_ctl_xreq_t *q, const rl2_explain_t *x, int json)
{
    const rl2_verdict_t *v = &x->v;
    const rl2_layer_t   *shown = v->shown >= 0 ? &v->layers[v->shown] : NULL;
    char                 why[256];
    int                  status = 0;

    if (v->outcome == RL2_OUTCOME_DENY) {
        status = v->refusal == RL2_REFUSAL_BAN         ? q->policy->ban_status
                 : v->refusal == RL2_REFUSAL_EMERGENCY ? 503
                                                       : 429;
        snprintf(
            why, sizeof(why), "%s%s%s%s",
            v->refusal == RL2_REFUSAL_BAN         ? "banned at run time"
            : v->refusal == RL2_REFUSAL_EMERGENCY ? "the emergency "
                                                    "switch admits the "
                                                    "allowed only"
                                                  : "refused by ",
            v->refusal == RL2_REFUSAL_LIMIT && shown ? shown->rule->name : "",
            v->refusal == RL2_REFUSAL_LIMIT && shown ? "/" : "",
            v->refusal == RL2_REFUSAL_LIMIT && shown ? shown->limit->name : "");
    }
    else {
        snprintf(why, sizeof(why), "%s",
                 x->banned                        ? "banned"
                 : x->allowed                     ? "allowed at run time"
                 : x->whitelisted                 ? "whitelisted"
                 : x->exempt                      ? "an exempt rule applies"
                 : v->outcome == RL2_OUTCOME_NONE ? "no limit applies"
                 : v->dry_run_denied ? "every enforced limit has room (a "
                                       "dry_run limit would refuse)"
                                     : "every limit has room");
    }
    if (json) {
        printf(",\"verdict\":{");
        rl2_ctl_xjs("answer", status ? "deny" : "allow", 0);
        if (status) {
            printf(",\"status\":%d,\"retry_after\":%lld", status,
                   rl2_retry_after_s(v));
        }
        else {
            printf(",\"status\":null,\"retry_after\":null");
        }
        rl2_ctl_xjs("why", why, 1);
        printf("}");
        return;
    }
    if (status) {
        printf("verdict   deny %d, Retry-After %lld: %s\n", status,
               rl2_retry_after_s(v), why);
    }
    else {
        printf("verdict   allow: %s\n", why);
    }
}

static void
rl2_ctl_xprint(const rl2_ctl_xreq_t *q, const rl2_explain_t *x,
               const rl2_override_t *all, long n, const char *store,
               int64_t now_us)
{
    int json = q->o->format == RL2_CTL_JSON;

    if (json) {
        printf("{");
        rl2_ctl_xjson_request(q);
        rl2_ctl_xjs("store", store, 1);
        rl2_ctl_xjs("path", x->path, 1);
    }
    else {
        rl2_ctl_xtext_request(q, x);
    }
    rl2_ctl_xrules(q, x, json);
    rl2_ctl_xtier(q, x, json);
    rl2_ctl_xfactors(q, x, json);
    rl2_ctl_xoverrides(q, x, all, n, now_us, json);
    rl2_ctl_xlimits(x, json);
    rl2_ctl_xverdict(q, x, json);
    if (json) {
        printf("}\n");
    }
}

/* The override table the servers sharing the zone read, synced first
 * with the fleet's when there is Redis; NULL when the policy turns the
 * table off.  RL2_CTL_FAIL when it cannot be opened. */
static int
rl2_ctl_xtable(const rl2_ctl_opts_t *o, const rl2_clock_t *now,
               rl2_overrides_t **t)
{
    char      state[4096], audit[4096];
    rl2_err_t err;

    *t = NULL;
    if (o->policy_loaded->overrides_disabled) {
        return RL2_CTL_OK;
    }
    rl2_ctl_ovr_paths(o, state, audit, sizeof(state));
    if (rl2_overrides_open(o->zone, state, o->backend.shm_mode, t, &err)
        != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    if (o->backend.redis_enabled
        && (rl2_overrides_redis_attach(*t, &o->backend.redis, &err) != RL2_OK
            || rl2_overrides_redis_sync(*t, now, &err) != RL2_OK)) {
        fprintf(stderr,
                "ratelimit2ctl: explain: %s: this host's last copy of the "
                "overrides\n",
                err.msg);
    }
    return RL2_CTL_OK;
}

static int
rl2_ctl_xrun(const rl2_ctl_opts_t *o, const rl2_ctl_xreq_t *q,
             rl2_store_t *store, rl2_explain_t *x)
{
    rl2_policy_t    *policy = o->policy_loaded;
    rl2_overrides_t *t;
    rl2_override_t  *all = NULL;
    rl2_clock_t      now;
    rl2_err_t        err;
    rl2_status_t     st;
    long             n = 0;
    int              rc;

    rl2_clock_now(&now);
    if ((rc = rl2_ctl_xtable(o, &now, &t)) != RL2_CTL_OK) {
        return rc;
    }
    if (t != NULL && (n = rl2_ctl_ovr_all(t, &now, &all)) < 0) {
        rl2_overrides_close(t);
        return rl2_ctl_fail(RL2_CTL_FAIL, "explain: out of memory");
    }
    /* The table is the policy's for this one decision, as a front end
     * attaches it. */
    policy->overrides = t;
    if ((st = rl2_decide_explain(policy, store, &q->req, &now, x, &err))
        != RL2_OK) {
        /* A request the servers would refuse as malformed is a bad
         * command line here. */
        rc = rl2_ctl_fail(st == RL2_ERR_REQUEST ? RL2_CTL_USAGE : RL2_CTL_FAIL,
                          "explain: %s", err.msg);
    }
    else {
        rl2_ctl_xprint(q, x, all, n, store->ops->name, now.wall_us);
    }
    policy->overrides = NULL;
    rl2_overrides_close(t);
    free(all);
    return rc;
}

int
rl2_ctl_explain(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_ctl_xreq_t   q;
    rl2_ctl_stores_t s;
    rl2_explain_t   *x;
    int              rc;

    if (argc != 1) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: explain [--method M] "
                                           "[--host H] [--client ADDR] "
                                           "[--user U] [--api-key K] "
                                           "[--header 'Name: value']... "
                                           "[--tier T] [--country CC] "
                                           "[--json] PATH");
    }
    if ((rc = rl2_ctl_takes(o, "explain", RL2_CTL_TAKES_JSON)) != RL2_CTL_OK
        || (rc = rl2_ctl_xrequest(o, o->policy_loaded, argv[0], &q))
               != RL2_CTL_OK) {
        return rc;
    }
    /* Kilobytes (a verdict and its scaled limits): not on the stack. */
    if ((x = malloc(sizeof(*x))) == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "explain: out of memory");
    }
    if ((rc = rl2_ctl_stores_open(o, 0, &s)) == RL2_CTL_OK) {
        rc = rl2_ctl_xrun(o, &q, s.redis != NULL ? s.redis : s.local, x);
        rl2_ctl_stores_close(&s);
    }
    free(x);
    return rc;
}
