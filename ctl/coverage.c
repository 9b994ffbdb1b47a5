/*
 * coverage.c -- ratelimit2ctl coverage ACCESS_LOG...: which of the
 * routes the logs show are under a limit, and which are not.
 *
 * Each request of the logs is put to the core as a front end puts it
 * (rl2_decide_explain_rules: the path normalised as every front end's
 * is, the rules selected as rl2_decide selects them), so the answer is
 * the limiter's own, never a second reading of the globs.  Requests are
 * grouped into routes: the method, the normalised path with its
 * identifiers (numbers, UUIDs, long hex strings) written as "*", and
 * the rules that took them; a route whose requests fall under different
 * rules (a glob that names one id) is listed once per answer.
 *
 * A route is protected when a limit applies to it: a rule of its own or
 * the default rule, in enforce or dry_run mode.  Unprotected: no rule
 * (and no default rule), an exempt rule, or rules all in mode off (the
 * policy's modes; runtime overrides are not read).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/explain.h"

#include "accesslog.h"
#include "ctl.h"

/* The most routes kept: a log of scanners' random paths must not take
 * all memory; the requests of routes past it are counted, not listed. */
#define RL2_COV_ROUTES_MAX 100000
/* A route as shown: each byte of the normalised path at most "%XX". */
#define RL2_COV_ROUTE_MAX (3 * RL2_EXPLAIN_PATH_MAX + 1)
#define RL2_COV_RULES_MAX 512

typedef enum {
    RL2_COV_NONE = 0, /* no rule, no default rule */
    RL2_COV_OFF,      /* every rule that applies is in mode off */
    RL2_COV_EXEMPT,   /* an exempt rule applies */
    RL2_COV_DEFAULT,  /* only the default rule: protected */
    RL2_COV_RULE,     /* a rule of its own: protected */
    RL2_COV_N
} rl2_cov_class_t;

static const char *const rl2_cov_class_names[RL2_COV_N] = { "none", "off",
                                                            "exempt", "default",
                                                            "rule" };

#define RL2_COV_PROTECTED(c) ((c) >= RL2_COV_DEFAULT)

typedef struct {
    char           *method; /* one allocation: method, route, rules */
    const char     *route;
    const char     *rules; /* "login,api"; "" for none */
    rl2_cov_class_t cls;
    uint64_t        requests;
    uint64_t        hash;
} rl2_cov_row_t;

typedef struct {
    const char      *path;
    rl2_alog_stats_t st;
} rl2_cov_file_t;

typedef struct {
    rl2_cov_row_t  *rows;
    size_t          n, cap;
    size_t         *slots; /* row index + 1; 0: empty */
    size_t          n_slots;
    uint64_t        requests; /* grouped into routes */
    uint64_t        refused;  /* the limiter refuses them as malformed */
    uint64_t        unlisted; /* past RL2_COV_ROUTES_MAX routes */
    uint64_t        cls_routes[RL2_COV_N], cls_requests[RL2_COV_N];
    rl2_cov_file_t *files;
    size_t          n_files;
} rl2_cov_t;

/* ---- routes ---- */

static int
rl2_cov_hexdigit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
           || (c >= 'A' && c <= 'F');
}

/* Does a path segment name one thing among many: a number, a UUID, or
 * 16 hex digits or more (a hash, an object id)? */
static int
rl2_cov_is_id(const char *s, size_t n)
{
    size_t digits = 0, hex = 0;

    for (size_t i = 0; i < n; i++) {
        digits += s[i] >= '0' && s[i] <= '9';
        hex += rl2_cov_hexdigit(s[i]);
    }
    if (n > 0 && digits == n) {
        return 1;
    }
    if (n >= 16 && hex == n) {
        return 1;
    }
    if (n != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-'
        || s[23] != '-') {
        return 0;
    }
    return hex == 32;
}

/* The route of a normalised path: ids as "*", and every byte that is
 * not printable ASCII, and '%', as %XX, so a route is one printable line
 * whatever the client sent. */
static void
rl2_cov_route(const char *path, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t            o = 0;

    while (*path != '\0') {
        size_t n = strcspn(path + 1, "/") + 1; /* the '/' and a segment */

        out[o++] = '/';
        if (n > 1 && rl2_cov_is_id(path + 1, n - 1)) {
            out[o++] = '*';
        }
        else {
            for (size_t i = 1; i < n; i++) {
                unsigned char b = (unsigned char)path[i];

                if (b <= 0x20 || b >= 0x7f || b == '%') {
                    out[o++] = '%';
                    out[o++] = hex[b >> 4];
                    out[o++] = hex[b & 15];
                }
                else {
                    out[o++] = (char)b;
                }
            }
        }
        path += n;
    }
    if (o == 0) {
        out[o++] = '/';
    }
    out[o] = '\0';
}

/* Which kind of answer the rules of x are; their names into names. */
static rl2_cov_class_t
rl2_cov_class(const rl2_policy_t *p, const rl2_explain_t *x, char *names,
              size_t size)
{
    size_t len = 0;
    int    off = 1, own = 0;

    names[0] = '\0';
    for (size_t i = 0; i < x->n_rules; i++) {
        const rl2_rule_t *r = x->rules[i].rule;

        if (len < size) {
            len += (size_t)snprintf(names + len, size - len, "%s%s",
                                    i ? "," : "", r->name);
        }
        off &= x->rules[i].mode == RL2_MODE_OFF;
        own |= r != p->default_rule;
    }
    return x->n_rules == 0 ? RL2_COV_NONE
           : x->exempt     ? RL2_COV_EXEMPT
           : off           ? RL2_COV_OFF
           : own           ? RL2_COV_RULE
                           : RL2_COV_DEFAULT;
}

static uint64_t
rl2_cov_hash(const char *method, const char *route, const char *rules)
{
    const char *parts[3] = { method, route, rules };
    uint64_t    h = rl2_alog_hash_begin();

    for (size_t i = 0; i < 3; i++) {
        h = rl2_alog_hash_add(h, parts[i]);
        h = rl2_alog_hash_add(h, "\xff"); /* no byte of a part */
    }
    return rl2_alog_hash_end(h);
}

/* Twice the slots when the table is half full. */
static int
rl2_cov_grow(rl2_cov_t *cv)
{
    size_t  n = cv->n_slots ? cv->n_slots * 2 : 1024;
    size_t *slots = calloc(n, sizeof(*slots));

    if (slots == NULL) {
        return -1;
    }
    for (size_t i = 0; i < cv->n; i++) {
        size_t s = cv->rows[i].hash & (n - 1);

        while (slots[s] != 0) {
            s = (s + 1) & (n - 1);
        }
        slots[s] = i + 1;
    }
    free(cv->slots);
    cv->slots = slots;
    cv->n_slots = n;
    return 0;
}

static int
rl2_cov_new_row(rl2_cov_t *cv, const char *method, const char *route,
                const char *rules, rl2_cov_class_t cls, uint64_t h)
{
    size_t         lm = strlen(method) + 1, lr = strlen(route) + 1;
    rl2_cov_row_t *row;

    if (cv->n == cv->cap) {
        size_t         cap = cv->cap ? cv->cap * 2 : 256;
        rl2_cov_row_t *rows = realloc(cv->rows, cap * sizeof(*rows));

        if (rows == NULL) {
            return -1;
        }
        cv->rows = rows;
        cv->cap = cap;
    }
    row = &cv->rows[cv->n];
    if ((row->method = malloc(lm + lr + strlen(rules) + 1)) == NULL) {
        return -1;
    }
    memcpy(row->method, method, lm);
    memcpy(row->method + lm, route, lr);
    strcpy(row->method + lm + lr, rules);
    row->route = row->method + lm;
    row->rules = row->method + lm + lr;
    row->cls = cls;
    row->requests = 0;
    row->hash = h;
    cv->cls_routes[cls]++;
    cv->n++;
    return 0;
}

/* Count one request on its route; -1 when out of memory. */
static int
rl2_cov_count(rl2_cov_t *cv, const char *method, const char *route,
              const char *rules, rl2_cov_class_t cls)
{
    uint64_t h = rl2_cov_hash(method, route, rules);
    size_t   s;

    if (cv->n * 2 >= cv->n_slots && rl2_cov_grow(cv) != 0) {
        return -1;
    }
    for (s = h & (cv->n_slots - 1); cv->slots[s] != 0;
         s = (s + 1) & (cv->n_slots - 1)) {
        rl2_cov_row_t *row = &cv->rows[cv->slots[s] - 1];

        if (row->hash == h && strcmp(row->method, method) == 0
            && strcmp(row->route, route) == 0
            && strcmp(row->rules, rules) == 0) {
            row->requests++;
            cv->requests++;
            cv->cls_requests[row->cls]++;
            return 0;
        }
    }
    if (cv->n == RL2_COV_ROUTES_MAX) {
        cv->unlisted++;
        return 0;
    }
    if (rl2_cov_new_row(cv, method, route, rules, cls, h) != 0) {
        return -1;
    }
    cv->slots[s] = cv->n;
    cv->rows[cv->n - 1].requests = 1;
    cv->requests++;
    cv->cls_requests[cls]++;
    return 0;
}

/* ---- reading the logs ---- */

typedef struct {
    const rl2_policy_t *policy;
    rl2_explain_t      *x;
    char                route[RL2_COV_ROUTE_MAX];
    char                names[RL2_COV_RULES_MAX];
} rl2_cov_work_t;

/* One request of a log: RL2_CTL_OK, or RL2_CTL_FAIL (said). */
static int
rl2_cov_entry(rl2_cov_t *cv, rl2_cov_work_t *w, const rl2_alog_entry_t *e)
{
    rl2_request_t   req;
    rl2_err_t       err;
    rl2_status_t    st;
    rl2_cov_class_t cls;

    memset(&req, 0, sizeof(req));
    req.method = e->method;
    req.path = e->target; /* as received: decoded once, by the core */
    req.host = e->host;
    /* Rules do not look at the address; a log may hold host names. */
    req.peer_ip = rl2_ctl_is_address(e->client) ? e->client : "127.0.0.1";
    /* Nor at the user: left out, its hash is not worked out. */
    req.user = NULL;
    st = rl2_decide_explain_rules(w->policy, &req, w->x, &err);
    if (st == RL2_ERR_REQUEST) {
        cv->refused++;
        return RL2_CTL_OK;
    }
    if (st != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "coverage: %s", err.msg);
    }
    cls = rl2_cov_class(w->policy, w->x, w->names, sizeof(w->names));
    /* The rules were matched on the whole path (the core's own buffer);
     * only the copy shown did not fit. */
    if (w->x->path[0] == '\0') {
        snprintf(w->route, sizeof(w->route), "(a path past %d bytes)",
                 RL2_EXPLAIN_PATH_MAX - 1);
    }
    else {
        rl2_cov_route(w->x->path, w->route);
    }
    if (rl2_cov_count(cv, e->method, w->route, w->names, cls) != 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "coverage: out of memory");
    }
    return RL2_CTL_OK;
}

static int
rl2_cov_file(rl2_cov_t *cv, rl2_cov_work_t *w, const char *path,
             rl2_alog_format_t format)
{
    rl2_alog_t      *r;
    rl2_alog_entry_t e;
    char             errbuf[512];
    int              rc = RL2_CTL_OK, n;

    if (rl2_alog_open(path, format, &r, errbuf, sizeof(errbuf)) != 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "coverage: %s", errbuf);
    }
    while ((n = rl2_alog_next(r, &e, errbuf, sizeof(errbuf))) == 1) {
        if ((rc = rl2_cov_entry(cv, w, &e)) != RL2_CTL_OK) {
            break;
        }
    }
    if (n < 0) {
        rc = rl2_ctl_fail(RL2_CTL_FAIL, "coverage: %s", errbuf);
    }
    cv->files[cv->n_files].path = strcmp(path, "-") == 0 ? "(stdin)" : path;
    cv->files[cv->n_files++].st = *rl2_alog_stats(r);
    rl2_alog_close(r);
    return rc;
}

/* Unprotected routes first, then by requests, most first. */
static int
rl2_cov_cmp(const void *a, const void *b)
{
    const rl2_cov_row_t *x = a, *y = b;
    int                  c;

    if (RL2_COV_PROTECTED(x->cls) != RL2_COV_PROTECTED(y->cls)) {
        return RL2_COV_PROTECTED(x->cls) ? 1 : -1;
    }
    if (x->requests != y->requests) {
        return x->requests > y->requests ? -1 : 1;
    }
    if ((c = strcmp(x->route, y->route)) != 0) {
        return c;
    }
    return (c = strcmp(x->method, y->method)) != 0 ? c
                                                   : strcmp(x->rules, y->rules);
}

/* ---- the answer ---- */

static uint64_t
rl2_cov_protected(const uint64_t *by_class)
{
    return by_class[RL2_COV_DEFAULT] + by_class[RL2_COV_RULE];
}

static double
rl2_cov_pct(uint64_t part, uint64_t whole)
{
    return whole == 0 ? 0.0 : 100.0 * (double)part / (double)whole;
}

static uint64_t
rl2_cov_skipped(const rl2_cov_t *cv)
{
    uint64_t n = 0;

    for (size_t i = 0; i < cv->n_files; i++) {
        n += cv->files[i].st.skipped;
    }
    return n;
}

static void
rl2_cov_text(FILE *f, const rl2_cov_t *cv, const char *policy)
{
    uint64_t pr = rl2_cov_protected(cv->cls_routes);
    uint64_t pq = rl2_cov_protected(cv->cls_requests);

    fprintf(f, "policy    %s\n", policy);
    for (size_t i = 0; i < cv->n_files; i++) {
        const rl2_alog_stats_t *s = &cv->files[i].st;

        fprintf(f,
                "log       %s  format %s  lines %" PRIu64 "  read %" PRIu64
                "  skipped %" PRIu64 " (too long %" PRIu64 ")",
                cv->files[i].path, rl2_alog_format_names[s->format], s->lines,
                s->entries, s->skipped, s->too_long);
        for (size_t k = 0; k < s->n_bad; k++) {
            fprintf(f, "%s%" PRIu64 " (%s)", k ? ", " : ": line ",
                    s->bad_line[k], s->bad_why[k]);
        }
        fputc('\n', f);
    }
    fprintf(f,
            "routes    %zu  protected %" PRIu64 " (%.2f%%)  rule %" PRIu64
            "  default %" PRIu64 "  exempt %" PRIu64 "  off %" PRIu64
            "  none %" PRIu64 "\n",
            cv->n, pr, rl2_cov_pct(pr, cv->n), cv->cls_routes[RL2_COV_RULE],
            cv->cls_routes[RL2_COV_DEFAULT], cv->cls_routes[RL2_COV_EXEMPT],
            cv->cls_routes[RL2_COV_OFF], cv->cls_routes[RL2_COV_NONE]);
    fprintf(f,
            "requests  %" PRIu64 "  protected %" PRIu64 " (%.2f%%)  refused "
            "as malformed %" PRIu64 "  unlisted %" PRIu64 "\n",
            cv->requests, pq, rl2_cov_pct(pq, cv->requests), cv->refused,
            cv->unlisted);
    fprintf(f, "\n%-8s %-8s %10s  %-40s %s\n", "CLASS", "METHOD", "REQUESTS",
            "ROUTE", "RULES");
    for (size_t i = 0; i < cv->n; i++) {
        const rl2_cov_row_t *r = &cv->rows[i];

        fprintf(f, "%-8s %-8s %10" PRIu64 "  %-40s %s\n",
                rl2_cov_class_names[r->cls], r->method, r->requests, r->route,
                r->rules[0] ? r->rules : "-");
    }
}

static void
rl2_cov_json_str(FILE *f, const char *key, const char *value, int comma)
{
    fprintf(f, "%s\"%s\":\"", comma ? "," : "", key);
    rl2_ctl_escape(f, value, 1);
    fputc('"', f);
}

/* ,"KEY":{"total":..,"protected":..,"protected_pct":..,CLASS:..., left
 * open: the caller may add members before the closing brace. */
static void
rl2_cov_json_totals(FILE *f, const char *key, uint64_t total,
                    uint64_t protected, const uint64_t counts[RL2_COV_N])
{
    fprintf(f,
            ",\"%s\":{\"total\":%" PRIu64 ",\"protected\":%" PRIu64
            ",\"protected_pct\":%.2f",
            key, total, protected, rl2_cov_pct(protected, total));
    for (int c = 0; c < RL2_COV_N; c++) {
        fprintf(f, ",\"%s\":%" PRIu64, rl2_cov_class_names[c], counts[c]);
    }
}

static void
rl2_cov_json_min(FILE *f, const char *key, double min, int comma)
{
    fprintf(f, "%s\"%s\":", comma ? "," : "", key);
    if (min < 0) {
        fputs("null", f);
    }
    else {
        fprintf(f, "%g", min);
    }
}

static void
rl2_cov_json(FILE *f, const rl2_cov_t *cv, const rl2_ctl_opts_t *o)
{
    uint64_t pr = rl2_cov_protected(cv->cls_routes);
    uint64_t pq = rl2_cov_protected(cv->cls_requests);

    fputc('{', f);
    rl2_cov_json_str(f, "policy", o->policy, 0);
    fputs(",\"logs\":[", f);
    for (size_t i = 0; i < cv->n_files; i++) {
        const rl2_alog_stats_t *s = &cv->files[i].st;

        fprintf(f, "%s{", i ? "," : "");
        rl2_cov_json_str(f, "file", cv->files[i].path, 0);
        rl2_cov_json_str(f, "format", rl2_alog_format_names[s->format], 1);
        fprintf(f,
                ",\"lines\":%" PRIu64 ",\"read\":%" PRIu64
                ",\"skipped\":%" PRIu64 ",\"too_long\":%" PRIu64
                ",\"first_skipped\":[",
                s->lines, s->entries, s->skipped, s->too_long);
        for (size_t k = 0; k < s->n_bad; k++) {
            fprintf(f, "%s{\"line\":%" PRIu64, k ? "," : "", s->bad_line[k]);
            rl2_cov_json_str(f, "why", s->bad_why[k], 1);
            fputc('}', f);
        }
        fputs("]}", f);
    }
    fputc(']', f);
    rl2_cov_json_totals(f, "routes", cv->n, pr, cv->cls_routes);
    fputc('}', f);
    rl2_cov_json_totals(f, "requests", cv->requests, pq, cv->cls_requests);
    fprintf(f,
            ",\"refused_malformed\":%" PRIu64 ",\"unlisted\":%" PRIu64
            "},\"min\":{",
            cv->refused, cv->unlisted);
    rl2_cov_json_min(f, "routes", o->cov_min_routes, 0);
    rl2_cov_json_min(f, "requests", o->cov_min_requests, 1);
    fputs("},\"table\":[", f);
    for (size_t i = 0; i < cv->n; i++) {
        const rl2_cov_row_t *r = &cv->rows[i];

        fprintf(f, "%s{", i ? "," : "");
        rl2_cov_json_str(f, "method", r->method, 0);
        rl2_cov_json_str(f, "route", r->route, 1);
        rl2_cov_json_str(f, "class", rl2_cov_class_names[r->cls], 1);
        fprintf(f, ",\"protected\":%s,\"requests\":%" PRIu64 ",\"rules\":[",
                RL2_COV_PROTECTED(r->cls) ? "true" : "false", r->requests);
        for (const char *s = r->rules; *s != '\0';) {
            size_t n = strcspn(s, ",");

            fprintf(f, "%s\"", s != r->rules ? "," : "");
            for (size_t k = 0; k < n; k++) {
                char one[2] = { s[k], '\0' };

                rl2_ctl_escape(f, one, 1);
            }
            fputc('"', f);
            s += n + (s[n] == ',');
        }
        fputs("]}", f);
    }
    fputs("]}\n", f);
}

static void
rl2_cov_html(FILE *f, const rl2_cov_t *cv, const char *policy)
{
    uint64_t pr = rl2_cov_protected(cv->cls_routes);
    uint64_t pq = rl2_cov_protected(cv->cls_requests);

    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" "
          "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
          "<title>ratelimit2 coverage</title>\n<style>\n"
          "body{font:14px sans-serif;margin:2em}"
          "table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
          "td.n{text-align:right}tr.u td{background:#fdd}\n"
          "</style></head><body>\n<h1>Rate-limit coverage</h1>\n<p>Policy ",
          f);
    rl2_ctl_escape(f, policy, 0);
    fprintf(f,
            "</p>\n<p>Routes: %zu, protected %" PRIu64 " (%.2f%%). "
            "Requests: %" PRIu64 ", protected %" PRIu64 " (%.2f%%); refused "
            "as malformed %" PRIu64 ", unlisted %" PRIu64 ".</p>\n<ul>\n",
            cv->n, pr, rl2_cov_pct(pr, cv->n), cv->requests, pq,
            rl2_cov_pct(pq, cv->requests), cv->refused, cv->unlisted);
    for (size_t i = 0; i < cv->n_files; i++) {
        const rl2_alog_stats_t *s = &cv->files[i].st;

        fputs("<li>", f);
        rl2_ctl_escape(f, cv->files[i].path, 0);
        fprintf(f,
                ": format %s, %" PRIu64 " lines, %" PRIu64 " read, %" PRIu64
                " skipped",
                rl2_alog_format_names[s->format], s->lines, s->entries,
                s->skipped);
        for (size_t k = 0; k < s->n_bad; k++) {
            fprintf(f, "%s%" PRIu64 " (", k ? ", " : ": line ", s->bad_line[k]);
            rl2_ctl_escape(f, s->bad_why[k], 0);
            fputc(')', f);
        }
        fputs("</li>\n", f);
    }
    fputs("</ul>\n<table>\n<tr><th>class</th><th>method</th>"
          "<th>requests</th><th>route</th><th>rules</th></tr>\n",
          f);
    for (size_t i = 0; i < cv->n; i++) {
        const rl2_cov_row_t *r = &cv->rows[i];

        fprintf(f, "<tr%s><td>%s</td><td>",
                RL2_COV_PROTECTED(r->cls) ? "" : " class=\"u\"",
                rl2_cov_class_names[r->cls]);
        rl2_ctl_escape(f, r->method, 0);
        fprintf(f, "</td><td class=\"n\">%" PRIu64 "</td><td>", r->requests);
        rl2_ctl_escape(f, r->route, 0);
        fputs("</td><td>", f);
        rl2_ctl_escape(f, r->rules[0] ? r->rules : "-", 0);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n</body></html>\n", f);
}

/* --min, --min-requests: RL2_CTL_OK, or RL2_CTL_BELOW (said). */
static int
rl2_cov_check(const rl2_cov_t *cv, const rl2_ctl_opts_t *o)
{
    uint64_t pr = rl2_cov_protected(cv->cls_routes);
    uint64_t pq = rl2_cov_protected(cv->cls_requests);
    int      rc = RL2_CTL_OK;

    /* protected / total < min / 100, without rounding the share. */
    if (o->cov_min_routes >= 0
        && (double)pr * 100.0 < o->cov_min_routes * (double)cv->n) {
        rc = rl2_ctl_fail(RL2_CTL_BELOW,
                          "coverage: %" PRIu64 " of %zu routes protected "
                          "(%.2f%%), below --min %g",
                          pr, cv->n, rl2_cov_pct(pr, cv->n), o->cov_min_routes);
    }
    if (o->cov_min_requests >= 0
        && (double)pq * 100.0 < o->cov_min_requests * (double)cv->requests) {
        rc = rl2_ctl_fail(RL2_CTL_BELOW,
                          "coverage: %" PRIu64 " of %" PRIu64
                          " requests protected (%.2f%%), below "
                          "--min-requests %g",
                          pq, cv->requests, rl2_cov_pct(pq, cv->requests),
                          o->cov_min_requests);
    }
    return rc;
}

static int
rl2_cov_write(const rl2_cov_t *cv, const rl2_ctl_opts_t *o)
{
    FILE *f = stdout;
    int   bad;

    if (o->output != NULL && (f = fopen(o->output, "w")) == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s: cannot write", o->output);
    }
    if (o->format == RL2_CTL_JSON) {
        rl2_cov_json(f, cv, o);
    }
    else if (o->format == RL2_CTL_HTML) {
        rl2_cov_html(f, cv, o->policy);
    }
    else {
        rl2_cov_text(f, cv, o->policy);
    }
    bad = fflush(f) != 0 || ferror(f);
    if (f != stdout) {
        bad |= fclose(f) != 0;
    }
    return bad ? rl2_ctl_fail(RL2_CTL_FAIL, "%s: write failed",
                              o->output != NULL ? o->output : "stdout")
               : RL2_CTL_OK;
}

static void
rl2_cov_free(rl2_cov_t *cv)
{
    for (size_t i = 0; i < cv->n; i++) {
        free(cv->rows[i].method);
    }
    free(cv->rows);
    free(cv->slots);
    free(cv->files);
}

static int
rl2_cov_run(const rl2_ctl_opts_t *o, int argc, char **argv, rl2_cov_t *cv)
{
    rl2_cov_work_t *w;
    int             rc = RL2_CTL_OK;

    if ((cv->files = calloc((size_t)argc, sizeof(*cv->files))) == NULL
        || (w = malloc(sizeof(*w))) == NULL) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "coverage: out of memory");
    }
    w->policy = o->policy_loaded;
    if ((w->x = malloc(sizeof(*w->x))) == NULL) {
        free(w);
        return rl2_ctl_fail(RL2_CTL_FAIL, "coverage: out of memory");
    }
    for (int i = 0; i < argc && rc == RL2_CTL_OK; i++) {
        rc = rl2_cov_file(cv, w, argv[i],
                          o->log_format < 0 ? RL2_ALOG_AUTO
                                            : (rl2_alog_format_t)o->log_format);
    }
    free(w->x);
    free(w);
    if (rc == RL2_CTL_OK && cv->requests == 0) {
        rc = rl2_ctl_fail(RL2_CTL_FAIL,
                          "coverage: no request read (%" PRIu64
                          " lines skipped, %" PRIu64
                          " requests refused as malformed)",
                          rl2_cov_skipped(cv), cv->refused);
    }
    return rc;
}

int
rl2_ctl_coverage(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_ctl_opts_t t = *o;
    rl2_cov_t      cv;
    int            rc, stdin_seen = 0;

    if (argc < 1) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "usage: coverage [-c POLICY] [--min PCT] "
                            "[--min-requests PCT] [--format F] [--json | "
                            "--html] [-o FILE] ACCESS_LOG...");
    }
    /* --json and --html are coverage's; every other option of the
     * overrides is refused. */
    t.format = RL2_CTL_TEXT;
    if ((rc = rl2_ctl_takes(&t, "coverage", 0)) != RL2_CTL_OK) {
        return rc;
    }
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-") == 0 && stdin_seen++) {
            return rl2_ctl_fail(RL2_CTL_USAGE, "coverage: standard input "
                                               "(-) named twice");
        }
    }
    memset(&cv, 0, sizeof(cv));
    if ((rc = rl2_cov_run(o, argc, argv, &cv)) == RL2_CTL_OK) {
        qsort(cv.rows, cv.n, sizeof(*cv.rows), rl2_cov_cmp);
        if ((rc = rl2_cov_write(&cv, o)) == RL2_CTL_OK) {
            rc = rl2_cov_check(&cv, o);
        }
    }
    rl2_cov_free(&cv);
    return rc;
}
