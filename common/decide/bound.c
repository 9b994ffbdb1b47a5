/*
 * bound.c -- the most rules and limits one request of a policy can meet,
 * worked out when the policy is loaded.
 *
 * rl2_decide selects at most RL2_MAX_RULES rules for one request and
 * checks it against at most RL2_MAX_LAYERS limits (its arrays are on the
 * stack, and one Redis script takes every layer of a request at once).
 * A request that needs more is refused (RL2_ERR_BOUND), so a policy that
 * allows one must not load: the loader calls rl2_bound_check, and
 * configtest names the rule that tips the sum over.
 *
 * What is counted (docs/configuration.md, "Rules and limits per
 * request"):
 *   - every rule, the default rule too, is one rule; its limits are the
 *     most a request can take of it: the largest of its own set and the
 *     sets a tier or a client override gives it.  An exempt rule and a
 *     rule in mode "off" add none;
 *   - two rules can apply to one request unless the policy shows they
 *     cannot: no reading of one request's method takes both (a request
 *     is read as its method; a HEAD as GET too; with method_override, a
 *     POST as any method), or their hosts or paths share no text
 *     (rl2_rules_may_meet), or an earlier rule keeps the later one out of
 *     every reading it applies in (with match = "first", an earlier rule
 *     without `continue`; with match = "all", any rule keeps the default
 *     rule out);
 *   - the rules that apply to one request pairwise can; the policy is
 *     refused when some rules that pairwise can number more than
 *     RL2_MAX_RULES or add more than RL2_MAX_LAYERS limits.
 *
 * The work: first sums.  With match = "all" a request takes at most
 * every rule; with match = "first", every continue rule and one other
 * rule, or the default rule, per method it is read as (two for a HEAD,
 * nine with method_override).  A request has one first path segment, one
 * host name and one path, so rules filed under different literal ones
 * never apply to it together: while a group's sum is over a bound it is
 * split that way, one after the other, and a group still over after the
 * three splits is searched for such rules, pair by pair.  A policy whose
 * sums stay within the bounds (most) costs one pass.  The work is
 * bounded: a policy that would take longer is refused as one the loader
 * cannot bound.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decide_internal.h"
#include "policy/policy_internal.h"

/* Rules compared pair by pair at once (their table: 2 MiB). */
#define RL2_BOUND_LEAF_MAX 4096
/* Steps (rules in a group, pairs compared, sets tried) before the
 * loader gives up: a second or so.  Twice the pairs of the largest group
 * compared at once. */
#define RL2_BOUND_WORK (UINT64_C(1) << 24)
#define RL2_BOUND_SLOW "too many and too alike to compare in the time allowed"

#define RL2_METHODS_ALL   ((RL2_METHOD_OTHER << 1) - 1)
#define RL2_BOUND_READING 9

enum { RL2_SPLIT_SEGMENT, RL2_SPLIT_HOST, RL2_SPLIT_PATH, RL2_SPLITS };

/* Vertices are the rules, numbered in policy order, then (number
 * n_rules) the default rule. */
typedef struct {
    const rl2_policy_t *policy;
    size_t              n;
    uint32_t           *layers; /* per vertex */
    unsigned            readings[RL2_BOUND_READING];
    size_t              per;  /* most methods one request is read as */
    uint64_t            work; /* steps left */
    rl2_err_t          *err;
} rl2_bound_t;

/* What is counted: rules (one each) or limits (each vertex's layers). */
typedef struct {
    const char *what;
    uint32_t    max;
    int         layers;
} rl2_bound_metric_t;

static const rl2_bound_metric_t rl2_bound_metrics[] = {
    { "rules", RL2_MAX_RULES, 0 },
    { "limits", RL2_MAX_LAYERS, 1 },
};

/* One pattern's key for a split, and its vertex. */
typedef struct {
    const char *text;
    size_t      len;
    uint32_t    v;
} rl2_bound_key_t;

/* A search for rules that pairwise can meet and add up to more than
 * max, among the members of one group (indexes into it). */
typedef struct {
    const uint64_t *adj;    /* a row of `words` words per member */
    const uint32_t *w;      /* weight per member, >= 1 in any set */
    size_t          words;  /* per set of members */
    uint32_t        max;    /* the bound */
    uint64_t       *sets;   /* the candidates at each depth */
    uint32_t       *chosen; /* the members taken, ascending */
    size_t          found;  /* how many when over the bound */
    uint64_t       *work;
} rl2_clique_t;

static rl2_status_t rl2_bound_group(rl2_bound_t *b, const uint32_t *g, size_t m,
                                    int split);

static rl2_status_t
rl2_bound_nomem(const rl2_bound_t *b)
{
    return rl2_err_set(b->err, RL2_ERR_NOMEM, "out of memory");
}

static const rl2_rule_t *
rl2_bound_rule(const rl2_bound_t *b, uint32_t v)
{
    return v < b->policy->n_rules ? &b->policy->rules[v]
                                  : b->policy->default_rule;
}

static unsigned
rl2_bound_methods(const rl2_rule_t *rule)
{
    return rule->methods != 0 ? rule->methods : RL2_METHODS_ALL;
}

/* ---- what one rule adds ---- */

static void
rl2_bound_grow(uint32_t *at, size_t n)
{
    if (n > *at) {
        *at = (uint32_t)n;
    }
}

/* Each vertex's layers: the largest of its own set and the sets a tier
 * or a client override gives it.  One request takes one of them whole,
 * though over two phases: a set that depends on identity is decided
 * after authentication, and the loader makes every limit of a rule with
 * tiers, or with a user's or an API key's override, wait for it too
 * (config_rules.c, config_clients.c).  Only an address's override leaves
 * the rule's own limits early, and an address is the same in both
 * phases: the early phase takes that override as the late one does (and
 * decides none of it), unless a user's entry comes first in the late
 * one, which then takes fewer. */
static rl2_status_t
rl2_bound_layers(rl2_bound_t *b)
{
    const rl2_policy_t *p = b->policy;
    uint32_t           *most = calloc(b->n, sizeof(*most));

    if (most == NULL) {
        return rl2_bound_nomem(b);
    }
    for (size_t c = 0; c < p->n_clients; c++) {
        for (size_t i = 0; i < p->clients[c].n_rules; i++) {
            const rl2_rule_override_t *o = &p->clients[c].rules[i];

            if (o->rule < b->n) {
                rl2_bound_grow(&most[o->rule], o->set.n);
            }
        }
    }
    for (uint32_t v = 0; v < b->n; v++) {
        const rl2_rule_t *r = rl2_bound_rule(b, v);

        for (size_t t = 0; r->tiers != NULL && t < p->n_tiers; t++) {
            if (r->tiers[t].defined) {
                rl2_bound_grow(&most[v], r->tiers[t].n);
            }
        }
        rl2_bound_grow(&most[v], r->limits.n);
        for (size_t i = 0; i < r->n_variants; i++) {
            rl2_bound_grow(&most[v], r->variants[i].limits.n);
        }
        /* A challenger's layers come beside whichever set applies. */
        most[v] += (uint32_t)r->challenger.n;
        if (r->exempt || r->mode == RL2_MODE_OFF) {
            most[v] = 0;
        }
    }
    b->layers = most;
    return RL2_OK;
}

/* ---- which two rules can apply together ---- */

/* The largest sets of methods one request is read as
 * (rl2_method_readings, identity.c); a smaller set takes fewer rules. */
static void
rl2_bound_readings(rl2_bound_t *b)
{
    static const unsigned one[RL2_BOUND_READING] = {
        RL2_METHOD_GET | RL2_METHOD_HEAD,
        RL2_METHOD_POST,
        RL2_METHOD_PUT,
        RL2_METHOD_DELETE,
        RL2_METHOD_PATCH,
        RL2_METHOD_OPTIONS,
        RL2_METHOD_CONNECT,
        RL2_METHOD_TRACE,
        RL2_METHOD_OTHER,
    };

    memcpy(b->readings, one, sizeof(one));
    if (b->policy->method_override) {
        /* X-HTTP-Method-Override and every ?_method= name a method we
         * know, never an other one. */
        b->readings[1] = RL2_METHODS_ALL & ~RL2_METHOD_OTHER;
    }
    b->per = 0;
    for (size_t i = 0; i < RL2_BOUND_READING; i++) {
        size_t n = (size_t)__builtin_popcount(b->readings[i]);

        b->per = n > b->per ? n : b->per;
    }
}

/* Is there a reading in which a rule of methods ma applies and a rule of
 * methods mb too: in any of its methods, or (ends: the first rule ends
 * the selection wherever it applies) in one ma does not name? */
static int
rl2_bound_readings_take(const rl2_bound_t *b, unsigned ma, unsigned mb,
                        int ends)
{
    unsigned later = ends ? mb & ~ma : mb;

    for (size_t i = 0; i < RL2_BOUND_READING; i++) {
        if ((b->readings[i] & ma) != 0 && (b->readings[i] & later) != 0) {
            return 1;
        }
    }
    return 0;
}

/* Can vertices u < v apply to one request together? */
static int
rl2_bound_pair(const rl2_bound_t *b, uint32_t u, uint32_t v)
{
    const rl2_policy_t *p = b->policy;
    const rl2_rule_t   *ru = rl2_bound_rule(b, u), *rv = rl2_bound_rule(b, v);
    /* An earlier rule keeps a later one out of every reading it applies
     * in: with match = "first" when it has no continue; with match =
     * "all" none does, but any rule keeps the default rule out. */
    int ends = v == p->n_rules ? (p->match_all || !ru->is_continue)
                               : (!p->match_all && !ru->is_continue);

    return rl2_bound_readings_take(b, rl2_bound_methods(ru),
                                   rl2_bound_methods(rv), ends)
           && rl2_rules_may_meet(ru, rv);
}

/* ---- refusals ---- */

/* " (with rules 'a', 'b', 'c' and 4 others)" for the members but the
 * last; "" for none. */
static void
rl2_bound_names(const rl2_bound_t *b, const uint32_t *g, const rl2_clique_t *c,
                char *buf, size_t size)
{
    size_t n = c->found - 1, shown = n < 3 ? n : 3, len;

    buf[0] = '\0';
    if (n == 0) {
        return;
    }
    len = (size_t)snprintf(buf, size, " (with rule%s", n > 1 ? "s" : "");
    for (size_t i = 0; i < shown && len < size; i++) {
        len += (size_t)snprintf(buf + len, size - len, "%s'%s'",
                                i == 0                         ? " "
                                : i + 1 == shown && n == shown ? " and "
                                                               : ", ",
                                rl2_bound_rule(b, g[c->chosen[i]])->name);
    }
    if (n > shown && len < size) {
        len += (size_t)snprintf(buf + len, size - len, " and %zu others",
                                n - shown);
    }
    if (len < size) {
        snprintf(buf + len, size - len, ")");
    }
}

static rl2_status_t
rl2_bound_refuse(const rl2_bound_t *b, const uint32_t *g, const rl2_clique_t *c,
                 const rl2_bound_metric_t *metric)
{
    const rl2_rule_t *last = rl2_bound_rule(b, g[c->chosen[c->found - 1]]);
    uint32_t          total = 0;
    char              with[200];

    for (size_t i = 0; i < c->found; i++) {
        total += c->w[c->chosen[i]];
    }
    rl2_bound_names(b, g, c, with, sizeof(with));
    return rl2_err_set(b->err, RL2_ERR_CONFIG,
                       "%s:%d: rule '%s' can bring one request to %u %s, "
                       "more than the %u one request may have%s",
                       last->file, last->line, last->name, total, metric->what,
                       metric->max, with);
}

/* The loader's own limits: a policy it cannot bound does not load. */
static rl2_status_t
rl2_bound_give_up(const rl2_bound_t *b, uint32_t first, size_t m,
                  const char *why)
{
    const rl2_rule_t *r = rl2_bound_rule(b, first);

    return rl2_err_set(b->err, RL2_ERR_CONFIG,
                       "%s:%d: cannot bound the rules and limits one "
                       "request may have: rule '%s' and %zu more may match "
                       "the same requests, %s; give them methods, hosts or "
                       "paths of their own",
                       r->file, r->line, r->name, m - 1, why);
}

/* ---- the search, pair by pair ---- */

/* The weight of set s, counted no further than past `enough`. */
static uint32_t
rl2_clique_weight(const rl2_clique_t *c, const uint64_t *s, uint32_t enough)
{
    uint32_t sum = 0;

    for (size_t k = 0; k < c->words && sum <= enough; k++) {
        for (uint64_t bits = s[k]; bits != 0 && sum <= enough;
             bits &= bits - 1) {
            sum += c->w[k * 64 + (size_t)__builtin_ctzll(bits)];
        }
    }
    return sum;
}

/* Extend the members chosen[0..d), of weight cw <= max, with members of
 * sets[d], lowest first: 1 when the weight goes over max (found set),
 * 0 when it cannot, -1 when the work runs out.  Every member has weight
 * 1 or more, so d never passes max. */
static int
rl2_clique_over(rl2_clique_t *c, size_t d, uint32_t cw)
{
    uint64_t *s = c->sets + d * c->words, *next = s + c->words;

    for (;;) {
        size_t k = 0, v;
        int    r;

        while (k < c->words && s[k] == 0) {
            k++;
        }
        if (k == c->words
            || cw + rl2_clique_weight(c, s, c->max - cw) <= c->max) {
            return 0;
        }
        if (*c->work == 0) {
            return -1;
        }
        (*c->work)--;
        v = k * 64 + (size_t)__builtin_ctzll(s[k]);
        s[k] &= s[k] - 1;
        c->chosen[d] = (uint32_t)v;
        if (cw + c->w[v] > c->max) {
            c->found = d + 1;
            return 1;
        }
        for (size_t i = 0; i < c->words; i++) {
            next[i] = s[i] & c->adj[v * c->words + i];
        }
        if ((r = rl2_clique_over(c, d + 1, cw + c->w[v])) != 0) {
            return r;
        }
    }
}

/* Search group g, its table of pairs built, for one metric. */
static rl2_status_t
rl2_bound_clique(rl2_bound_t *b, const uint32_t *g, size_t m,
                 const uint64_t *adj, size_t words,
                 const rl2_bound_metric_t *metric)
{
    rl2_clique_t c = { adj, NULL, words, metric->max, NULL, NULL, 0, &b->work };
    uint32_t    *w = malloc(m * sizeof(*w));
    rl2_status_t st;
    int          r;

    c.sets = calloc((metric->max + 2) * words, sizeof(*c.sets));
    c.chosen = malloc((metric->max + 1) * sizeof(*c.chosen));
    if (w == NULL || c.sets == NULL || c.chosen == NULL) {
        st = rl2_bound_nomem(b);
        goto done;
    }
    for (size_t i = 0; i < m; i++) {
        w[i] = metric->layers ? b->layers[g[i]] : 1;
        if (w[i] > 0) {
            c.sets[i / 64] |= UINT64_C(1) << (i % 64);
        }
    }
    c.w = w;
    r = rl2_clique_over(&c, 0, 0);
    st = r == 0  ? RL2_OK
         : r > 0 ? rl2_bound_refuse(b, g, &c, metric)
                 : rl2_bound_give_up(b, g[0], m, RL2_BOUND_SLOW);
done:
    free(w);
    free(c.sets);
    free(c.chosen);
    return st;
}

/* A group still over a bound after every split: which of its rules can
 * apply together, then a search for too many of them. */
static rl2_status_t
rl2_bound_search(rl2_bound_t *b, const uint32_t *g, size_t m, unsigned over)
{
    size_t       words = (m + 63) / 64;
    uint64_t    *adj;
    rl2_status_t st = RL2_OK;

    if (m > RL2_BOUND_LEAF_MAX) {
        return rl2_bound_give_up(b, g[0], m,
                                 "more than the loader compares at once");
    }
    if ((adj = calloc(m * words, sizeof(*adj))) == NULL) {
        return rl2_bound_nomem(b);
    }
    for (size_t i = 0; i < m && st == RL2_OK; i++) {
        if (b->work < m) {
            st = rl2_bound_give_up(b, g[0], m, RL2_BOUND_SLOW);
            break;
        }
        b->work -= m;
        for (size_t j = i + 1; j < m; j++) {
            if (rl2_bound_pair(b, g[i], g[j])) {
                adj[i * words + j / 64] |= UINT64_C(1) << (j % 64);
                adj[j * words + i / 64] |= UINT64_C(1) << (i % 64);
            }
        }
    }
    for (size_t k = 0; k < 2 && st == RL2_OK; k++) {
        if (over & (1u << k)) {
            st = rl2_bound_clique(b, g, m, adj, words, &rl2_bound_metrics[k]);
        }
    }
    free(adj);
    return st;
}

/* ---- splits ---- */

static size_t
rl2_bound_patterns(const rl2_rule_t *r, int split)
{
    return split == RL2_SPLIT_HOST ? r->n_hosts : r->n_paths;
}

/* The key of pattern i of rule r for a split: a request's first path
 * segment, host name (a host glob has no '/': a name matches one literal
 * host only) or normalised path (rl2_rule_path_literal) is one key, and
 * the pattern matches no request of another.  0 when it has none. */
static int
rl2_bound_key(const rl2_rule_t *r, int split, size_t i, rl2_bound_key_t *k)
{
    switch (split) {
    case RL2_SPLIT_SEGMENT:
        return rl2_glob_first(r->paths[i], &k->text, &k->len);
    case RL2_SPLIT_HOST:
        k->text = r->hosts[i];
        k->len = strlen(k->text);
        return strpbrk(k->text, "*?") == NULL;
    default:
        k->text = r->paths[i];
        return rl2_rule_path_literal(r, k->text, &k->len);
    }
}

/* Vertex v's keys, one per pattern; 0 when it has no pattern or one
 * without a key: it may apply to requests of every key. */
static size_t
rl2_bound_keys(const rl2_bound_t *b, int split, uint32_t v,
               rl2_bound_key_t *keys)
{
    const rl2_rule_t *r = rl2_bound_rule(b, v);
    size_t            n = rl2_bound_patterns(r, split);

    for (size_t i = 0; i < n; i++) {
        keys[i].v = v;
        if (!rl2_bound_key(r, split, i, &keys[i])) {
            return 0;
        }
    }
    return n;
}

/* Keys by text (ASCII case aside), then vertex. */
static int
rl2_bound_key_cmp(const void *x, const void *y)
{
    const rl2_bound_key_t *a = x, *b = y;
    size_t                 n = a->len < b->len ? a->len : b->len;

    for (size_t i = 0; i < n; i++) {
        int d = rl2_ascii_fold((unsigned char)a->text[i])
                - rl2_ascii_fold((unsigned char)b->text[i]);

        if (d != 0) {
            return d;
        }
    }
    if (a->len != b->len) {
        return a->len < b->len ? -1 : 1;
    }
    return (a->v > b->v) - (a->v < b->v);
}

static int
rl2_bound_key_same(const rl2_bound_key_t *a, const rl2_bound_key_t *b)
{
    rl2_bound_key_t one = *b;

    one.v = a->v;
    return rl2_bound_key_cmp(a, &one) == 0;
}

/* any[0..na) and the vertices of keys[0..nk) (one key's, ascending, a
 * vertex with two patterns of the key twice) into out in policy order;
 * returns how many. */
static size_t
rl2_bound_merge(const uint32_t *any, size_t na, const rl2_bound_key_t *keys,
                size_t nk, uint32_t *out)
{
    size_t i = 0, j = 0, n = 0;

    while (i < na || j < nk) {
        if (j < nk && j > 0 && keys[j].v == keys[j - 1].v) {
            j++;
        }
        else if (j == nk || (i < na && any[i] < keys[j].v)) {
            out[n++] = any[i++];
        }
        else {
            out[n++] = keys[j++].v;
        }
    }
    return n;
}

/* Split group g by one key: each key's rules with those of no key, in
 * turn, at the next split. */
static rl2_status_t
rl2_bound_split(rl2_bound_t *b, const uint32_t *g, size_t m, int split)
{
    size_t           cap = 1, nk = 0, na = 0;
    rl2_bound_key_t *keys;
    uint32_t        *any, *sub;
    rl2_status_t     st = RL2_OK;

    for (size_t i = 0; i < m; i++) {
        cap += rl2_bound_patterns(rl2_bound_rule(b, g[i]), split);
    }
    keys = malloc(cap * sizeof(*keys));
    any = malloc(m * sizeof(*any));
    sub = malloc(m * sizeof(*sub));
    if (keys == NULL || any == NULL || sub == NULL) {
        st = rl2_bound_nomem(b);
        goto done;
    }
    for (size_t i = 0; i < m; i++) {
        size_t k = rl2_bound_keys(b, split, g[i], keys + nk);

        if (k == 0) {
            any[na++] = g[i];
        }
        nk += k;
    }
    if (nk == 0) {
        st = rl2_bound_group(b, g, m, split + 1);
        goto done;
    }
    qsort(keys, nk, sizeof(*keys), rl2_bound_key_cmp);
    for (size_t i = 0, j; i < nk && st == RL2_OK; i = j) {
        for (j = i + 1; j < nk && rl2_bound_key_same(&keys[i], &keys[j]); j++) {
        }
        st = rl2_bound_group(
            b, sub, rl2_bound_merge(any, na, keys + i, j - i, sub), split + 1);
    }
done:
    free(keys);
    free(any);
    free(sub);
    return st;
}

/* Keep the largest weights seen in top[0..k), largest first. */
static void
rl2_bound_top(uint32_t *top, size_t k, uint32_t w)
{
    for (size_t i = 0; i < k; i++) {
        if (w > top[i]) {
            uint32_t was = top[i];

            top[i] = w;
            w = was;
        }
    }
}

/* The most one request can take of group g, by sums alone: with match =
 * "all", every rule; with match = "first", every continue rule and, per
 * method the request is read as, one other rule or the default rule
 * (the largest `per` of those). */
static uint64_t
rl2_bound_sum(const rl2_bound_t *b, const uint32_t *g, size_t m, int layers)
{
    uint32_t top[RL2_BOUND_READING] = { 0 };
    uint64_t sum = 0;

    for (size_t i = 0; i < m; i++) {
        uint32_t w = layers ? b->layers[g[i]] : 1;

        if (b->policy->match_all || rl2_bound_rule(b, g[i])->is_continue) {
            sum += w;
        }
        else {
            rl2_bound_top(top, b->per, w);
        }
    }
    for (size_t k = 0; k < b->per; k++) {
        sum += top[k];
    }
    return sum;
}

/* Which bounds the sums of group g go over (bit k: metric k). */
static unsigned
rl2_bound_over(const rl2_bound_t *b, const uint32_t *g, size_t m)
{
    return (rl2_bound_sum(b, g, m, 0) > RL2_MAX_RULES ? 1u : 0u)
           | (rl2_bound_sum(b, g, m, 1) > RL2_MAX_LAYERS ? 2u : 0u);
}

static rl2_status_t
rl2_bound_group(rl2_bound_t *b, const uint32_t *g, size_t m, int split)
{
    unsigned over = rl2_bound_over(b, g, m);

    if (over == 0) {
        return RL2_OK;
    }
    if (b->work < m) {
        return rl2_bound_give_up(b, g[0], m, RL2_BOUND_SLOW);
    }
    b->work -= m;
    return split < RL2_SPLITS ? rl2_bound_split(b, g, m, split)
                              : rl2_bound_search(b, g, m, over);
}

rl2_status_t
rl2_bound_check(const rl2_policy_t *policy, rl2_err_t *err)
{
    rl2_bound_t  b = { .policy = policy,
                       .n = policy->n_rules + (policy->default_rule != NULL),
                       .work = RL2_BOUND_WORK,
                       .err = err };
    uint32_t    *all;
    rl2_status_t st;

    if (b.n == 0) {
        return RL2_OK;
    }
    /* Vertices are numbered in 32 bits: a policy file (16 MiB at most)
     * holds far fewer rules. */
    if (b.n > UINT32_MAX) {
        return rl2_bound_give_up(&b, 0, b.n, "too many to number");
    }
    rl2_bound_readings(&b);
    if ((st = rl2_bound_layers(&b)) != RL2_OK) {
        return st;
    }
    if ((all = malloc(b.n * sizeof(*all))) == NULL) {
        free(b.layers);
        return rl2_bound_nomem(&b);
    }
    for (uint32_t v = 0; v < b.n; v++) {
        all[v] = v;
    }
    st = rl2_bound_group(&b, all, b.n, RL2_SPLIT_SEGMENT);
    free(all);
    free(b.layers);
    return st;
}
