/*
 * override_list.c -- ratelimit2ctl overrides: the runtime overrides in
 * force on this host, by kind and target, with what each has left.
 *
 * Read as a request reads the table: without its lock, so a listing
 * never waits for a writer (nor a writer for it).  An entry past its end
 * is not listed, whether or not a write has removed it yet.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/audit.h"
#include "ratelimit2/overrides.h"

#include "ctl.h"

/* Every active entry, sorted, into *out (free() it); their number, or
 * -1 when out of memory. */
long
rl2_ctl_ovr_all(rl2_overrides_t *t, const rl2_clock_t *now,
                rl2_override_t **out)
{
    size_t          room = 0, n;
    rl2_override_t *all = NULL, *more;

    /* A writer may add entries between the count and the copy: copy
     * again with room for what is there now. */
    while ((n = rl2_overrides_list(t, 0, now, all, room)) > room) {
        if ((more = realloc(all, (n + 16) * sizeof(*all))) == NULL) {
            free(all);
            return -1;
        }
        all = more;
        room = n + 16;
    }
    if (n > 1) {
        qsort(all, n, sizeof(*all), rl2_override_cmp);
    }
    *out = all;
    return (long)n;
}

static void
rl2_ctl_ovr_text(const rl2_override_t *all, long n, int64_t now_us)
{
    char value[RL2_OVR_NAME_MAX + 16], left[32], end[28];

    if (n == 0) {
        printf("no override is set\n");
        return;
    }
    printf("%-10s %-32s %-16s %-8s %-27s %-12s %s\n", "KIND", "TARGET", "VALUE",
           "LEFT", "EXPIRES", "AUTHOR", "REASON");
    for (long i = 0; i < n; i++) {
        const rl2_override_t *o = &all[i];

        rl2_ovr_value_text(o, value, sizeof(value));
        snprintf(left, sizeof(left), "-");
        snprintf(end, sizeof(end), "never");
        if (o->expires_us != 0) {
            rl2_ctl_left(o->expires_us - now_us, left, sizeof(left));
            rl2_audit_time_format(o->expires_us, end);
        }
        printf("%-10s %-32s %-16s %-8s %-27s %-12s %s\n",
               rl2_ovr_kind_name(o->kind), o->target, value, left, end,
               o->author, o->reason);
    }
}

static void
rl2_ctl_ovr_json(const rl2_override_t *all, long n, int64_t now_us)
{
    char value[RL2_OVR_NAME_MAX + 16], t[28];

    printf("[");
    for (long i = 0; i < n; i++) {
        const rl2_override_t *o = &all[i];

        rl2_ovr_value_text(o, value, sizeof(value));
        printf("%s\n{", i > 0 ? "," : "");
        rl2_ctl_json_str(stdout, "", "kind", rl2_ovr_kind_name(o->kind));
        rl2_ctl_json_str(stdout, ",", "target", o->target);
        rl2_ctl_json_str(stdout, ",", "value", value);
        if (o->expires_us != 0) {
            rl2_audit_time_format(o->expires_us, t);
            int64_t left = o->expires_us - now_us;

            printf(",\"expires\":\"%s\",\"seconds_left\":%" PRId64 ",", t,
                   (left + RL2_US_PER_S - 1) / RL2_US_PER_S);
        }
        else {
            printf(",\"expires\":null,\"seconds_left\":null,");
        }
        rl2_audit_time_format(o->created_us, t);
        rl2_ctl_json_str(stdout, "", "created", t);
        rl2_ctl_json_str(stdout, ",", "author", o->author);
        rl2_ctl_json_str(stdout, ",", "reason", o->reason);
        printf("}");
    }
    printf("%s]\n", n > 0 ? "\n" : "");
}

int
rl2_ctl_overrides(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    char             state[4096], audit[4096];
    rl2_overrides_t *t;
    rl2_override_t  *all = NULL;
    rl2_clock_t      now;
    rl2_err_t        err;
    long             n;
    int              rc;

    (void)argv;
    if (argc != 0) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: overrides [--json]");
    }
    if ((rc = rl2_ctl_takes(o, "overrides", RL2_CTL_TAKES_JSON))
        != RL2_CTL_OK) {
        return rc;
    }
    rl2_ctl_ovr_paths(o, state, audit, sizeof(state));
    if (rl2_overrides_open(o->zone, state, o->backend.shm_mode, &t, &err)
        != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    rl2_clock_now(&now);
    /* With Redis, what the fleet holds: the table synced first.  Redis
     * out of reach: this host's last copy, said so on stderr. */
    if (o->backend.redis_enabled
        && (rl2_overrides_redis_attach(t, &o->backend.redis, &err) != RL2_OK
            || rl2_overrides_redis_sync(t, &now, &err) != RL2_OK)) {
        fprintf(stderr,
                "ratelimit2ctl: overrides: %s: listing this host's last "
                "copy\n",
                err.msg);
    }
    n = rl2_ctl_ovr_all(t, &now, &all);
    rl2_overrides_close(t);
    if (n < 0) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "overrides: out of memory");
    }
    if (o->format == RL2_CTL_JSON) {
        rl2_ctl_ovr_json(all, n, now.wall_us);
    }
    else {
        rl2_ctl_ovr_text(all, n, now.wall_us);
    }
    free(all);
    return RL2_CTL_OK;
}
