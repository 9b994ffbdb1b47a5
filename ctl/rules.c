/*
 * rules.c -- the effective rules of a loaded policy, for people: as
 * indented text (check) and as Markdown tables for API documentation
 * (docs).  Both walk the policy the same way: rules in order, then the
 * default rule; for each, the limits every tier gets, then each tier's
 * own set; then per-client overrides.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

static const char *const rl2_method_names[] = { "GET",     "HEAD",    "POST",
                                                "PUT",     "DELETE",  "PATCH",
                                                "OPTIONS", "CONNECT", "TRACE",
                                                "other" };

void
rl2_ctl_rate(const rl2_limit_t *l, char *buf, size_t size)
{
    static const struct {
        int64_t     us;
        const char *unit;
    } units[] = { { INT64_C(86400000000), "d" },
                  { INT64_C(3600000000), "h" },
                  { 60 * RL2_US_PER_S, "min" },
                  { RL2_US_PER_S, "s" } };
    const rl2_algo_params_t *p = &l->algo;

    if (p->algo == RL2_ALGO_CONCURRENCY) {
        snprintf(buf, size, "%" PRId64 " in flight", p->limit);
        return;
    }
    if (p->algo == RL2_ALGO_QUOTA) {
        snprintf(buf, size, "%" PRId64 "/%s", p->limit,
                 p->period == RL2_PERIOD_MONTH ? "month" : "day");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (p->window_us % units[i].us == 0) {
            int64_t k = p->window_us / units[i].us;

            if (k == 1) {
                snprintf(buf, size, "%" PRId64 "/%s", p->limit, units[i].unit);
            }
            else {
                snprintf(buf, size, "%" PRId64 "/%" PRId64 "%s", p->limit, k,
                         units[i].unit);
            }
            return;
        }
    }
    snprintf(buf, size, "%" PRId64 "/%" PRId64 "us", p->limit, p->window_us);
}

const char *
rl2_ctl_key_name(const rl2_limit_t *l)
{
    static const char *const names[] = { "ip",     "user",  "api_key",
                                         "header", "route", "global" };

    return (size_t)l->key < sizeof(names) / sizeof(names[0]) ? names[l->key]
                                                             : "?";
}

static void
rl2_ctl_methods(unsigned bits, char *buf, size_t size)
{
    size_t o = 0;

    buf[0] = '\0';
    if (bits == 0) {
        snprintf(buf, size, "any");
        return;
    }
    for (size_t i = 0; i < sizeof(rl2_method_names) / sizeof(char *); i++) {
        if ((bits & (1u << i)) && o < size) {
            o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? "," : "",
                                  rl2_method_names[i]);
        }
    }
}

static void
rl2_ctl_paths(const rl2_rule_t *r, char *buf, size_t size, int md)
{
    size_t o = 0;

    buf[0] = '\0';
    if (r->n_paths == 0) {
        snprintf(buf, size, md ? "any path" : "*");
    }
    for (size_t i = 0; i < r->n_paths && o < size; i++) {
        o += (size_t)snprintf(buf + o, size - o, md ? "%s`%s`" : "%s%s",
                              i ? (md ? ", " : " ") : "", r->paths[i]);
    }
}

/* "burst 10, overflow 2/5min, cost 3" (the parts that apply). */
static void
rl2_ctl_extras(const rl2_limit_t *l, char *burst, char *over, size_t size)
{
    snprintf(burst, size, "-");
    snprintf(over, size, "-");
    if (l->algo.burst > 0) {
        snprintf(burst, size, "%" PRId64, l->algo.burst);
    }
    if (l->overflow.limit > 0) {
        rl2_limit_t ov = *l;

        ov.algo = l->overflow;
        ov.algo.algo = RL2_ALGO_FIXED_WINDOW;
        rl2_ctl_rate(&ov, over, size);
    }
}

static void
rl2_ctl_set_text(FILE *f, const char *who, const rl2_limit_set_t *set)
{
    char rate[64], burst[32], over[64];

    if (set->unlimited) {
        fprintf(f, "    %-12s unlimited (counted, never refused)\n", who);
        return;
    }
    if (set->n == 0) {
        fprintf(f, "    %-12s no limit\n", who);
    }
    for (size_t i = 0; i < set->n; i++) {
        const rl2_limit_t *l = &set->limits[i];

        rl2_ctl_rate(l, rate, sizeof(rate));
        rl2_ctl_extras(l, burst, over, sizeof(burst));
        fprintf(f,
                "    %-12s %-28s %-14s %-15s key=%s%s%s burst=%s "
                "overflow=%s cost=%" PRId64 "\n",
                i == 0 ? who : "", l->name, rate, rl2_algo_name(l->algo.algo),
                rl2_ctl_key_name(l), l->key_header ? ":" : "",
                l->key_header ? l->key_header : "", burst, over, l->cost);
    }
}

static const char *
rl2_ctl_mode(const rl2_policy_t *p, rl2_mode_t m)
{
    m = m == RL2_MODE_INHERIT ? p->mode : m;
    return m == RL2_MODE_DRY_RUN ? "dry_run"
           : m == RL2_MODE_OFF   ? "off"
                                 : "enforce";
}

/* A rule's variants: how clients are dealt, then each one's limits. */
static void
rl2_ctl_variants_text(FILE *f, const rl2_rule_t *r)
{
    static const char *const by[] = { "auto (API key, else user, else ip)",
                                      "ip", "user", "api_key" };
    char                     who[32];

    if (r->n_variants == 0) {
        return;
    }
    fprintf(f, "    variants by %s, of %u:", by[r->variant_by],
            r->variant_total);
    for (size_t i = 0; i < r->n_variants; i++) {
        fprintf(f, " %s=%u", r->variants[i].name, r->variants[i].weight);
    }
    fputc('\n', f);
    for (size_t i = 0; i < r->n_variants; i++) {
        snprintf(who, sizeof(who), "variant %s", r->variants[i].name);
        rl2_ctl_set_text(f, who, &r->variants[i].limits);
    }
}

static void
rl2_ctl_rule_text(FILE *f, const rl2_policy_t *p, const rl2_rule_t *r)
{
    char methods[96], paths[1024];

    rl2_ctl_methods(r->methods, methods, sizeof(methods));
    rl2_ctl_paths(r, paths, sizeof(paths), 0);
    fprintf(f, "rule %s (%s:%d)\n    match %s %s%s%s  mode %s%s%s\n", r->name,
            r->file ? r->file : "-", r->line, methods, paths,
            r->n_hosts ? "  host " : "", r->n_hosts ? r->hosts[0] : "",
            rl2_ctl_mode(p, r->mode), r->is_continue ? "  continue" : "",
            r->exempt ? "  exempt" : "");
    if (r->exempt) {
        return;
    }
    if (r->n_variants == 0) {
        rl2_ctl_set_text(f, "every tier", &r->limits);
    }
    for (size_t t = 0; r->tiers != NULL && t < p->n_tiers; t++) {
        if (r->tiers[t].defined) {
            rl2_ctl_set_text(f, p->tiers[t].name, &r->tiers[t]);
        }
    }
    rl2_ctl_variants_text(f, r);
    if (r->challenger.n > 0) {
        rl2_ctl_set_text(f, "challenger", &r->challenger);
    }
}

static void
rl2_ctl_vlog_text(FILE *f, const rl2_policy_t *p)
{
    rl2_vlog_conf_t vc;
    rl2_err_t       err;

    if (rl2_vlog_conf_resolve(&p->vlog, &vc, &err) != RL2_OK) {
        fprintf(f, "violation log: %s\n", err.msg);
    }
    else if (vc.disabled) {
        fprintf(f, "violation log: off\n");
    }
    else {
        fprintf(f,
                "violation log: at most %u entries/s per host, %u kept, "
                "Redis stream \"%s\"\n",
                vc.rate, vc.capacity, vc.stream);
    }
}

void
rl2_ctl_rules_text(FILE *f, const rl2_policy_t *p)
{
    fprintf(f, "policy %s: mode %s, match %s, %zu rules%s, %zu tiers",
            p->source, rl2_ctl_mode(p, p->mode), p->match_all ? "all" : "first",
            p->n_rules, p->default_rule ? " + default" : "", p->n_tiers);
    for (size_t t = 0; t < p->n_tiers; t++) {
        fprintf(f, "%s%s%s", t ? ", " : " (", p->tiers[t].name,
                (int)t == p->default_tier ? " [default]" : "");
    }
    fprintf(f, "%s\n", p->n_tiers ? ")" : "");
    for (size_t i = 0; i < p->n_rules; i++) {
        rl2_ctl_rule_text(f, p, &p->rules[i]);
    }
    if (p->default_rule != NULL) {
        rl2_ctl_rule_text(f, p, p->default_rule);
    }
    for (size_t c = 0; c < p->n_clients; c++) {
        const rl2_client_t *cl = &p->clients[c];

        fprintf(f, "client %s%s (%s:%d): tier %s, %zu rule overrides\n",
                cl->by == RL2_KEY_USER     ? "user "
                : cl->by == RL2_KEY_APIKEY ? "api key "
                                           : "network ",
                cl->by == RL2_KEY_IP ? "(cidr)" : cl->id,
                cl->file ? cl->file : "-", cl->line,
                cl->tier >= 0 ? p->tiers[cl->tier].name : "-", cl->n_rules);
        for (size_t r = 0; r < cl->n_rules; r++) {
            const rl2_rule_t *rule = cl->rules[r].rule < p->n_rules
                                         ? &p->rules[cl->rules[r].rule]
                                         : p->default_rule;

            rl2_ctl_set_text(f, rule ? rule->name : "-", &cl->rules[r].set);
        }
    }
    rl2_ctl_vlog_text(f, p);
    fprintf(f, "valid\n");
}

/* ---- Markdown ---- */

static void
rl2_ctl_md_rows(FILE *f, const char *rule, const char *req, const char *tier,
                const rl2_limit_set_t *set)
{
    char rate[64], burst[32], over[64];

    if (set->unlimited) {
        fprintf(f, "| %s | %s | %s | - | unlimited | - | - | - | - |\n", rule,
                req, tier);
        return;
    }
    for (size_t i = 0; i < set->n; i++) {
        const rl2_limit_t *l = &set->limits[i];

        rl2_ctl_rate(l, rate, sizeof(rate));
        rl2_ctl_extras(l, burst, over, sizeof(burst));
        fprintf(f, "| %s | %s | %s | `%s` | %s | %s | %s | %s | %s |\n", rule,
                req, tier, l->name, rate, burst, over, rl2_ctl_key_name(l),
                rl2_algo_name(l->algo.algo));
    }
}

static void
rl2_ctl_rule_md(FILE *f, const rl2_policy_t *p, const rl2_rule_t *r)
{
    char methods[96], paths[1024], req[1200], name[96];

    rl2_ctl_methods(r->methods, methods, sizeof(methods));
    rl2_ctl_paths(r, paths, sizeof(paths), 1);
    if (r->methods == 0 && r->n_paths == 0) {
        snprintf(req, sizeof(req), "any request");
    }
    else {
        snprintf(req, sizeof(req), "%s %s", methods, paths);
    }
    snprintf(name, sizeof(name), "**%s**", r->name);
    if (r->exempt) {
        fprintf(f,
                "| %s | %s | every tier | - | not limited | - | - | - | "
                "- |\n",
                name, req);
        return;
    }
    if (r->limits.n > 0 || r->limits.unlimited) {
        rl2_ctl_md_rows(f, name, req, "every tier", &r->limits);
    }
    for (size_t t = 0; r->tiers != NULL && t < p->n_tiers; t++) {
        if (r->tiers[t].defined) {
            rl2_ctl_md_rows(f, name, req, p->tiers[t].name, &r->tiers[t]);
        }
    }
    for (size_t i = 0; i < r->n_variants; i++) {
        char who[64];

        snprintf(who, sizeof(who), "variant %s (%u of %u clients)",
                 r->variants[i].name, r->variants[i].weight, r->variant_total);
        rl2_ctl_md_rows(f, name, req, who, &r->variants[i].limits);
    }
}

void
rl2_ctl_rules_markdown(FILE *f, const rl2_policy_t *p)
{
    fprintf(f, "# Rate limits\n\n");
    if (p->n_tiers > 0) {
        fprintf(f, "Plans (tiers):");
        for (size_t t = 0; t < p->n_tiers; t++) {
            fprintf(f, "%s `%s`%s", t ? "," : "", p->tiers[t].name,
                    (int)t == p->default_tier ? " (anonymous clients)" : "");
        }
        fprintf(f, ".\n\n");
    }
    fprintf(f,
            "A request must pass every limit listed for the rules it "
            "%s.  A refused request gets `429 Too Many Requests` with "
            "`Retry-After` and `RateLimit` headers.\n\n",
            p->match_all ? "matches"
                         : "matches first (and those marked "
                           "continue)");
    fprintf(f, "| Rule | Requests | Tier | Limit | Rate | Burst | "
               "Overflow | Counted per | Algorithm |\n"
               "|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < p->n_rules; i++) {
        rl2_ctl_rule_md(f, p, &p->rules[i]);
    }
    if (p->default_rule != NULL) {
        rl2_ctl_rule_md(f, p, p->default_rule);
    }
    if (p->n_clients > 0) {
        fprintf(f, "\n%zu client%s have their own plan or limits.\n",
                p->n_clients, p->n_clients > 1 ? "s" : "");
    }
}
