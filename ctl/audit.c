/*
 * audit.c -- ratelimit2ctl audit: the changes to the runtime overrides,
 * oldest first, from the audit file (--audit, else the policy's
 * overrides.audit_file, else the zone's default).
 *
 * The file is read whole before anything is printed, so that a damaged
 * line gives an error and no half listing (nor half a JSON array).
 * --json prints the entries as the file has them, in one array.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratelimit2/audit.h"
#include "ratelimit2/config.h"
#include "ratelimit2/overrides.h"

#include "ctl.h"

typedef struct {
    rl2_audit_entry_t *e;
    size_t             n, room;
    int64_t            since_us; /* wall clock; 0: all */
    int                nomem;
} rl2_ctl_audit_t;

static int
rl2_ctl_audit_keep(const rl2_audit_entry_t *e, void *ctx)
{
    rl2_ctl_audit_t   *a = ctx;
    rl2_audit_entry_t *more;

    if (e->time_us < a->since_us) {
        return 0;
    }
    if (a->n == a->room) {
        size_t room = a->room > 0 ? a->room * 2 : 64;

        if ((more = realloc(a->e, room * sizeof(*more))) == NULL) {
            a->nomem = 1;
            return 1;
        }
        a->e = more;
        a->room = room;
    }
    a->e[a->n++] = *e;
    return 0;
}

/* One side of a change for people: "banned until ...", "-". */
static void
rl2_ctl_audit_side(const rl2_override_t *o, char *buf, size_t size)
{
    char value[RL2_OVR_NAME_MAX + 16], end[28];

    if (o->kind == 0) {
        snprintf(buf, size, "-");
        return;
    }
    rl2_ovr_value_text(o, value, sizeof(value));
    if (o->expires_us == 0) {
        snprintf(buf, size, "%s", value);
        return;
    }
    rl2_audit_time_format(o->expires_us, end);
    snprintf(buf, size, "%s until %s", value, end);
}

static void
rl2_ctl_audit_text(const rl2_ctl_audit_t *a)
{
    char t[28], before[128], after[128];

    if (a->n == 0) {
        printf("no change recorded\n");
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        const rl2_audit_entry_t *e = &a->e[i];

        rl2_audit_time_format(e->time_us, t);
        rl2_ctl_audit_side(&e->before, before, sizeof(before));
        rl2_ctl_audit_side(&e->after, after, sizeof(after));
        printf("%s %s (%s) %s %s: %s -> %s%s%s%s\n", t, e->author,
               rl2_audit_origin_name(e->origin), e->verb, e->target, before,
               after, e->reason[0] != '\0' ? " \"" : "", e->reason,
               e->reason[0] != '\0' ? "\"" : "");
    }
}

static void
rl2_ctl_audit_json(const rl2_ctl_audit_t *a)
{
    char   line[RL2_AUDIT_LINE_MAX];
    size_t len;

    printf("[");
    for (size_t i = 0; i < a->n; i++) {
        /* The line as the file holds it, without its newline. */
        len = rl2_audit_format(&a->e[i], line, sizeof(line));
        printf("%s\n%.*s", i > 0 ? "," : "", len > 0 ? (int)len - 1 : 0, line);
    }
    printf("%s]\n", a->n > 0 ? "\n" : "");
}

/* The audit file the changes went to: --audit, else the policy's
 * audit_file.  The policy is read here for that key only: one that does
 * not load must not keep the trail from being read (the default file is
 * read then, and stderr says so). */
static void
rl2_ctl_audit_path(const rl2_ctl_opts_t *o, char *path, size_t size)
{
    rl2_ctl_opts_t with = *o;
    char           state[4096];
    rl2_err_t      err;

    with.policy_loaded = NULL;
    if (o->audit_file == NULL && access(o->policy, F_OK) == 0
        && rl2_config_load(o->policy, &with.policy_loaded, &err) != RL2_OK) {
        with.policy_loaded = NULL;
        fprintf(stderr,
                "ratelimit2ctl: warning: %s: reading the default audit "
                "file\n",
                err.msg);
    }
    rl2_ctl_ovr_paths(&with, state, path,
                      size < sizeof(state) ? size : sizeof(state));
    rl2_policy_free(with.policy_loaded);
}

int
rl2_ctl_audit(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    char            path[4096];
    rl2_ctl_audit_t a;
    rl2_clock_t     now;
    rl2_err_t       err;
    int             rc;

    (void)argv;
    if (argc != 0) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: audit [--json] [--since D]");
    }
    if ((rc = rl2_ctl_takes(o, "audit",
                            RL2_CTL_TAKES_JSON | RL2_CTL_TAKES_SINCE))
        != RL2_CTL_OK) {
        return rc;
    }
    rl2_ctl_audit_path(o, path, sizeof(path));
    memset(&a, 0, sizeof(a));
    rl2_clock_now(&now);
    a.since_us = o->since_us != 0 ? now.wall_us - o->since_us : 0;
    if (rl2_audit_read(path, rl2_ctl_audit_keep, &a, NULL, &err) != RL2_OK) {
        rc = rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    else if (a.nomem) {
        rc = rl2_ctl_fail(RL2_CTL_FAIL, "audit: out of memory");
    }
    else if (o->format == RL2_CTL_JSON) {
        rl2_ctl_audit_json(&a);
    }
    else {
        rl2_ctl_audit_text(&a);
    }
    free(a.e);
    return rc;
}
