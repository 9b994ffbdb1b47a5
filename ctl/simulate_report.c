/*
 * simulate_report.c -- what ratelimit2ctl simulate found, as text (the
 * clients most refused, -n of them) and as JSON (every client refused,
 * for scripts and tests).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/audit.h"

#include "ctl.h"

/* The time of a refusal, as the audit trail writes times. */
static const char *
rl2_sim_time(int64_t us, char buf[28])
{
    rl2_audit_time_format(us, buf);
    return buf;
}

/* A name from the log as a JSON string: the log's bytes are not always
 * UTF-8, so a byte past ASCII is written as the code point of its value
 * (the Latin-1 reading), and the text stays valid JSON. */
static void
rl2_sim_js(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        }
        else if (c < 0x20 || c >= 0x7f) {
            fprintf(f, "\\u%04x", c);
        }
        else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

/* "rule/limit", or what refused before any limit. */
static void
rl2_sim_rule_name(const rl2_sim_rule_t *r, char *buf, size_t size)
{
    if (r->rule == NULL) {
        snprintf(buf, size, "(ban or emergency)");
    }
    else {
        snprintf(buf, size, "%s/%s", r->rule->name,
                 r->limit != NULL ? r->limit->name : "-");
    }
}

/* Clients sorted for run `run`: most refused first; for the difference
 * (run 2): most requests decided differently first; then by name. */
typedef struct {
    const rl2_sim_t *s;
    int              run;
} rl2_sim_order_t;

static rl2_sim_order_t rl2_sim_order;

static uint64_t
rl2_sim_weight(const rl2_sim_client_t *c, int run)
{
    return run < 2 ? c->run[run].refused : c->run[0].only + c->run[1].only;
}

static int
rl2_sim_cmp(const void *a, const void *b)
{
    const rl2_sim_client_t *x = &rl2_sim_order.s->clients[*(const size_t *)a];
    const rl2_sim_client_t *y = &rl2_sim_order.s->clients[*(const size_t *)b];
    uint64_t                wx = rl2_sim_weight(x, rl2_sim_order.run);
    uint64_t                wy = rl2_sim_weight(y, rl2_sim_order.run);

    if (wx != wy) {
        return wx > wy ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

/* The indexes of the clients with a weight for `run`, sorted; their
 * number in *n; NULL when out of memory (and *n 0). */
static size_t *
rl2_sim_sorted(const rl2_sim_t *s, int run, size_t *n)
{
    size_t *idx = malloc((s->n_clients + 1) * sizeof(*idx));

    *n = 0;
    if (idx == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < s->n_clients; i++) {
        if (rl2_sim_weight(&s->clients[i], run) > 0) {
            idx[(*n)++] = i;
        }
    }
    rl2_sim_order = (rl2_sim_order_t){ .s = s, .run = run };
    qsort(idx, *n, sizeof(*idx), rl2_sim_cmp);
    return idx;
}

/* ---- text ---- */

static void
rl2_sim_text_head(FILE *f, const rl2_sim_t *s)
{
    char t0[28], t1[28];

    fprintf(f,
            "log       %" PRIu64 " lines, %" PRIu64
            " requests replayed, %" PRIu64 " skipped",
            s->lines, s->entries, s->skipped);
    if (s->first_skip_file != NULL) {
        fprintf(f, " (the first: %s line %" PRIu64 ": %s)", s->first_skip_file,
                s->first_skip_line, s->first_skip_why);
    }
    fputc('\n', f);
    if (s->entries > 0) {
        fprintf(f, "period    %s to %s\n", rl2_sim_time(s->first_us, t0),
                rl2_sim_time(s->last_us, t1));
    }
    fprintf(f, "logged    %" PRIu64 " answered 429 in the log\n",
            s->logged_429);
    if (s->unaddressed > 0) {
        fprintf(f,
                "note      %" PRIu64 " requests from a host name, not an "
                "address (HostnameLookups), not decided\n",
                s->unaddressed);
    }
    if (s->over_clients > 0) {
        fprintf(f,
                "note      %" PRIu64 " requests of clients past the %zu "
                "listed: decided, not listed\n",
                s->over_clients, s->n_clients);
    }
}

static void
rl2_sim_text_run(FILE *f, const rl2_sim_t *s, int r, long top)
{
    const rl2_sim_run_t *run = &s->run[r];
    uint64_t             decided = run->admitted + run->refused;
    char                 name[RL2_NAME_MAX * 2 + 4], t0[28], t1[28];
    size_t               n, *idx;

    fprintf(f, "\npolicy    %s%s\n", run->path,
            s->n_runs == 2 ? (r == 0 ? " (A)" : " (B, --against)") : "");
    fprintf(f,
            "requests  %" PRIu64 " decided: %" PRIu64 " admitted, %" PRIu64
            " refused (%.2f%%)",
            decided, run->admitted, run->refused,
            decided > 0 ? 100.0 * (double)run->refused / (double)decided : 0.0);
    if (run->malformed > 0) {
        fprintf(f, "; %" PRIu64 " ambiguous (the servers answer 400)",
                run->malformed);
    }
    fputc('\n', f);
    for (size_t i = 0; i < run->n_rules; i++) {
        rl2_sim_rule_name(&run->rules[i], name, sizeof(name));
        fprintf(f, "%-9s %-40s %10" PRIu64 " refused\n", i ? "" : "by rule",
                name, run->rules[i].refused);
    }
    for (size_t i = 0, shown = 0; i < run->policy->n_tiers; i++) {
        if (run->by_tier[i] > 0) {
            fprintf(f, "%-9s %-40s %10" PRIu64 " refused\n",
                    shown++ ? "" : "by tier", run->policy->tiers[i].name,
                    run->by_tier[i]);
        }
    }
    if ((idx = rl2_sim_sorted(s, r, &n)) == NULL) {
        fprintf(f, "clients   (out of memory)\n");
        return;
    }
    fprintf(f, "clients   %zu refused%s\n", n,
            n > (size_t)top ? ", the most refused:" : "");
    if (n > 0) {
        fprintf(f, "  %-40s %10s %10s  %-27s  %s\n", "CLIENT", "REQUESTS",
                "REFUSED", "FIRST REFUSAL", "LAST REFUSAL");
    }
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        const rl2_sim_client_t *c = &s->clients[idx[i]];

        fprintf(f, "  %-40s %10" PRIu64 " %10" PRIu64 "  %-27s  %s\n", c->name,
                c->requests, c->run[r].refused,
                rl2_sim_time(c->run[r].first_us, t0),
                rl2_sim_time(c->run[r].last_us, t1));
    }
    free(idx);
}

static void
rl2_sim_text_differ(FILE *f, const rl2_sim_t *s, long top)
{
    size_t n, *idx = rl2_sim_sorted(s, 2, &n);

    if (idx == NULL) {
        fprintf(f, "differ    (out of memory)\n");
        return;
    }
    fprintf(f,
            "\ndiffer    %zu clients have requests one policy refuses and "
            "the other admits%s\n",
            n, n > (size_t)top ? ", the most:" : "");
    if (n > 0) {
        fprintf(f, "  %-40s %10s %10s\n", "CLIENT", "A ONLY", "B ONLY");
    }
    for (size_t i = 0; i < n && i < (size_t)top; i++) {
        const rl2_sim_client_t *c = &s->clients[idx[i]];

        fprintf(f, "  %-40s %10" PRIu64 " %10" PRIu64 "\n", c->name,
                c->run[0].only, c->run[1].only);
    }
    free(idx);
}

void
rl2_ctl_sim_text(FILE *f, const rl2_sim_t *s, long top)
{
    rl2_sim_text_head(f, s);
    for (size_t r = 0; r < s->n_runs; r++) {
        rl2_sim_text_run(f, s, (int)r, top);
    }
    if (s->n_runs == 2) {
        rl2_sim_text_differ(f, s, top);
    }
}

/* ---- JSON: every client ---- */

static void
rl2_sim_json_run(FILE *f, const rl2_sim_t *s, int r)
{
    const rl2_sim_run_t *run = &s->run[r];
    char                 name[RL2_NAME_MAX * 2 + 4], t0[28], t1[28];
    size_t               n, *idx = rl2_sim_sorted(s, r, &n);

    fprintf(f, "%s{\"policy\":", r ? "," : "");
    rl2_sim_js(f, run->path);
    fprintf(f,
            ",\"admitted\":%" PRIu64 ",\"refused\":%" PRIu64
            ",\"ambiguous\":%" PRIu64 ",\"rules\":[",
            run->admitted, run->refused, run->malformed);
    for (size_t i = 0; i < run->n_rules; i++) {
        rl2_sim_rule_name(&run->rules[i], name, sizeof(name));
        fprintf(f, "%s{\"rule\":", i ? "," : "");
        rl2_sim_js(f, name);
        fprintf(f, ",\"refused\":%" PRIu64 "}", run->rules[i].refused);
    }
    fprintf(f, "],\"tiers\":[");
    for (size_t i = 0, k = 0; i < run->policy->n_tiers; i++) {
        if (run->by_tier[i] > 0) {
            fprintf(f, "%s{\"tier\":", k++ ? "," : "");
            rl2_sim_js(f, run->policy->tiers[i].name);
            fprintf(f, ",\"refused\":%" PRIu64 "}", run->by_tier[i]);
        }
    }
    fprintf(f, "],\"tierless\":%" PRIu64 ",\"clients\":[", run->tierless);
    for (size_t i = 0; i < n; i++) {
        const rl2_sim_client_t *c = &s->clients[idx[i]];

        fprintf(f, "%s{\"client\":", i ? "," : "");
        rl2_sim_js(f, c->name);
        fprintf(f,
                ",\"requests\":%" PRIu64 ",\"refused\":%" PRIu64
                ",\"first\":\"%s\",\"last\":\"%s\"}",
                c->requests, c->run[r].refused,
                rl2_sim_time(c->run[r].first_us, t0),
                rl2_sim_time(c->run[r].last_us, t1));
    }
    fprintf(f, "]%s}",
            idx == NULL ? ",\"clients_error\":\"out of memory\"" : "");
    free(idx);
}

void
rl2_ctl_sim_json(FILE *f, const rl2_sim_t *s)
{
    char   t0[28], t1[28];
    size_t n, *idx;

    fprintf(f,
            "{\"lines\":%" PRIu64 ",\"requests\":%" PRIu64
            ",\"skipped\":%" PRIu64 ",\"logged_429\":%" PRIu64
            ",\"unaddressed\":%" PRIu64 ",\"unlisted\":%" PRIu64,
            s->lines, s->entries, s->skipped, s->logged_429, s->unaddressed,
            s->over_clients);
    if (s->entries > 0) {
        fprintf(f, ",\"first\":\"%s\",\"last\":\"%s\"",
                rl2_sim_time(s->first_us, t0), rl2_sim_time(s->last_us, t1));
    }
    fprintf(f, ",\"policies\":[");
    for (size_t r = 0; r < s->n_runs; r++) {
        rl2_sim_json_run(f, s, (int)r);
    }
    fputc(']', f);
    if (s->n_runs != 2) {
        fprintf(f, "}\n");
        return;
    }
    if ((idx = rl2_sim_sorted(s, 2, &n)) == NULL) {
        fprintf(f, ",\"differ_error\":\"out of memory\"");
    }
    else {
        fprintf(f, ",\"differ\":[");
        for (size_t i = 0; i < n; i++) {
            const rl2_sim_client_t *c = &s->clients[idx[i]];

            fprintf(f, "%s{\"client\":", i ? "," : "");
            rl2_sim_js(f, c->name);
            fprintf(f, ",\"a_only\":%" PRIu64 ",\"b_only\":%" PRIu64 "}",
                    c->run[0].only, c->run[1].only);
        }
        fputc(']', f);
        free(idx);
    }
    fprintf(f, "}\n");
}
