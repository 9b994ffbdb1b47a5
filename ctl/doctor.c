/*
 * doctor.c -- ratelimit2ctl doctor: look at a site before limiting it.
 * Each area (the Apache that runs, the policy, the zone, the Redis server)
 * adds findings: ok, warning or error, what is wrong and the fix (the
 * command or directive to use).  They are printed once all are made, as
 * text (one line each) or as a JSON array.  The exit status is 0 unless a
 * finding is an error (RL2_CTL_INVALID): warnings are listed, and do not
 * fail a script that runs doctor before a deployment.
 *
 * Nothing is changed: the policy is loaded as `check` loads it, the zone
 * is attached read-only as `status` attaches it (never created), and Redis
 * is asked only commands that write nothing.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit2/config.h"
#include "ratelimit2/store_local.h"

#include "ctl.h"

/* A zone this full (percent of its entries) is as good as too small: the
 * next burst of new clients evicts. */
#define RL2_DOC_ZONE_FULL_PCT 90

void
rl2_doc_add(rl2_doc_t *d, const char *area, rl2_doc_level_t level,
            const char *fix, const char *fmt, ...)
{
    rl2_doc_finding_t *f;
    va_list            ap;

    if (level == RL2_DOC_ERROR) {
        d->errors++;
    }
    if (d->n == RL2_DOC_FINDINGS_MAX) {
        d->dropped++;
        return;
    }
    f = &d->f[d->n++];
    f->area = area;
    f->level = level;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
    snprintf(f->fix, sizeof(f->fix), "%s", fix != NULL ? fix : "");
}

void
rl2_doc_proxies(const rl2_policy_t *policy, char *buf, size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < policy->n_trusted && len + 1 < size; i++) {
        const rl2_cidr_t *c = &policy->trusted[i];
        char              addr[INET6_ADDRSTRLEN];
        unsigned          full = c->family == AF_INET ? 32 : 128;
        int               n;

        if (inet_ntop(c->family, c->addr, addr, sizeof(addr)) == NULL) {
            continue;
        }
        n = c->prefix == full
                ? snprintf(buf + len, size - len, "%s%s", len ? " " : "", addr)
                : snprintf(buf + len, size - len, "%s%s/%u", len ? " " : "",
                           addr, c->prefix);
        if (n < 0 || (size_t)n >= size - len) {
            buf[len] = '\0'; /* a proxy that does not fit is left out */
            return;
        }
        len += (size_t)n;
    }
}

/* The policy: it loads, and what it holds. */
static rl2_policy_t *
rl2_doc_policy(const rl2_ctl_opts_t *o, rl2_backend_conf_t *backend,
               rl2_doc_t *d)
{
    rl2_policy_t *policy;
    rl2_err_t     err;
    char          fix[RL2_DOC_TEXT_MAX];

    snprintf(fix, sizeof(fix), "correct the file, then ratelimit2ctl check %s",
             o->policy);
    if (rl2_config_load(o->policy, &policy, &err) != RL2_OK) {
        rl2_doc_add(d, "policy", RL2_DOC_ERROR, fix, "%s", err.msg);
        return NULL;
    }
    if (rl2_backend_conf_policy(backend, policy, &err) != RL2_OK) {
        rl2_doc_add(d, "policy", RL2_DOC_ERROR, fix, "%s", err.msg);
        rl2_policy_free(policy);
        return NULL;
    }
    rl2_doc_add(d, "policy", RL2_DOC_OK, NULL,
                "%s loads: %zu rules%s, %zu tiers, %zu trusted proxies, "
                "store %s",
                o->policy, policy->n_rules,
                policy->default_rule != NULL ? " and a default rule" : "",
                policy->n_tiers, policy->n_trusted,
                backend->redis_enabled ? "Redis (local zone on failover)"
                                       : "the local zone");
    return policy;
}

/* The zone: attached (never created), its size against the clients seen.
 * "used" counts expired entries until they are reused, so a nearly full
 * zone may be the trace of one burst; evictions are the sure sign. */
static void
rl2_doc_zone(const rl2_ctl_opts_t *o, rl2_doc_t *d)
{
    rl2_zone_t      *zone;
    rl2_zone_stats_t st;
    rl2_err_t        err;
    char             fix[RL2_DOC_TEXT_MAX];
    uint64_t         want;

    if (rl2_zone_attach(o->zone, &zone, &err) != RL2_OK) {
        snprintf(fix, sizeof(fix),
                 "start the server that creates it, or name it with -z as "
                 "RateLimit2Zone (ratelimit2-fcgi -z) does");
        rl2_doc_add(d, "zone", RL2_DOC_WARNING, fix,
                    "%s: %s: its size is not checked", o->zone, err.msg);
        return;
    }
    if (rl2_zone_stats(zone, &st, &err) != RL2_OK) {
        rl2_doc_add(d, "zone", RL2_DOC_ERROR, NULL, "%s: %s", o->zone, err.msg);
        rl2_zone_close(zone);
        return;
    }
    rl2_zone_close(zone);
    if (st.evictions == 0
        && st.used * 100 < st.entries * RL2_DOC_ZONE_FULL_PCT) {
        rl2_doc_add(d, "zone", RL2_DOC_OK, NULL,
                    "%s: %" PRIu64 " of %" PRIu64 " entries used, no eviction",
                    o->zone, st.used, st.entries);
        return;
    }
    /* Twice the keys seen: those in the zone and those it lost. */
    want = 2 * (st.used + st.evictions);
    want = want < 2 * st.entries ? 2 * st.entries : want;
    want = want > RL2_ZONE_MAX_ENTRIES ? RL2_ZONE_MAX_ENTRIES : want;
    snprintf(fix, sizeof(fix),
             "RateLimit2Zone %s %" PRIu64 " (ratelimit2-fcgi -n %" PRIu64 ")",
             o->zone, want, want);
    rl2_doc_add(d, "zone", RL2_DOC_WARNING, fix,
                "%s: a zone smaller than the clients seen: %" PRIu64
                " of %" PRIu64 " entries used, %" PRIu64
                " evictions (an evicted client's count starts afresh)",
                o->zone, st.used, st.entries, st.evictions);
}

static const char *
rl2_doc_level_name(rl2_doc_level_t level)
{
    return level == RL2_DOC_ERROR     ? "error"
           : level == RL2_DOC_WARNING ? "warning"
                                      : "ok";
}

/* A finding's text for a terminal: it quotes what others wrote (a
 * directive's argument, a Redis reply, a file name), so a control byte
 * is shown as \xHH, never sent raw (an escape sequence, a line of its
 * own that would pass for another finding). */
static void
rl2_doc_put_text(FILE *f, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;

        if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\x%02x", c);
        }
        else {
            fputc(c, f);
        }
    }
}

static void
rl2_doc_print_text(FILE *f, const rl2_doc_t *d)
{
    for (size_t i = 0; i < d->n; i++) {
        const rl2_doc_finding_t *x = &d->f[i];

        fprintf(f, "%-7s %-6s ", rl2_doc_level_name(x->level), x->area);
        rl2_doc_put_text(f, x->message);
        if (x->fix[0] != '\0') {
            fputs("; fix: ", f);
            rl2_doc_put_text(f, x->fix);
        }
        fputc('\n', f);
    }
    if (d->dropped > 0) {
        fprintf(f, "(%zu more findings not shown)\n", d->dropped);
    }
}

static void
rl2_doc_print_json(FILE *f, const rl2_doc_t *d)
{
    fputc('[', f);
    for (size_t i = 0; i < d->n; i++) {
        const rl2_doc_finding_t *x = &d->f[i];

        fprintf(f, "%s\n {\"area\": \"%s\", \"level\": \"%s\", \"message\": \"",
                i > 0 ? "," : "", x->area, rl2_doc_level_name(x->level));
        rl2_ctl_escape(f, x->message, 1);
        fputs("\", \"fix\": \"", f);
        rl2_ctl_escape(f, x->fix, 1);
        fputs("\"}", f);
    }
    fputs(d->n > 0 ? "\n]\n" : "]\n", f);
}

int
rl2_ctl_doctor(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    static rl2_doc_t   d; /* 60 KB: off the stack */
    rl2_backend_conf_t backend = o->backend;
    rl2_policy_t      *policy;

    (void)argv;
    if (argc != 0) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: doctor (no argument)");
    }
    if (o->format == RL2_CTL_HTML) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "doctor takes --json, not --html");
    }
    memset(&d, 0, sizeof(d));
    policy = rl2_doc_policy(o, &backend, &d);
    rl2_doc_apache(o, policy, &d);
    rl2_doc_zone(o, &d);
    if (policy != NULL || backend.redis_enabled) {
        rl2_doc_redis(&backend, &d);
    }
    if (o->format == RL2_CTL_JSON) {
        rl2_doc_print_json(stdout, &d);
    }
    else {
        rl2_doc_print_text(stdout, &d);
    }
    rl2_policy_free(policy);
    if (fflush(stdout) != 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "standard output: write failed");
    }
    return d.errors > 0 ? RL2_CTL_INVALID : RL2_CTL_OK;
}
