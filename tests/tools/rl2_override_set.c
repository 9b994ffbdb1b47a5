/*
 * rl2_override_set.c -- a test tool: set or remove one runtime override
 * in the table beside a zone, as ratelimit2ctl's verbs do, so that the
 * integration suites can drive the servers' table without depending on
 * that tool.
 *
 * usage: rl2_override_set ZONE STATE_FILE set KIND TARGET [VALUE] [TTL_S]
 *        rl2_override_set ZONE STATE_FILE remove KIND TARGET
 *
 * KIND is ban, allow, tier, boost, mode or emergency; TARGET as
 * overrides.h spells it (an address or network, user:NAME, rule:NAME,
 * tier:NAME, "*").  VALUE: the tier's name (tier), the factor (boost,
 * emergency: "2", "0.5"; emergency 0 admits allowed clients only), the
 * mode (mode: enforce, dry_run, off); "-" or nothing for the others.
 * TTL_S: seconds until the override expires (0 or nothing: never).
 * Exit 0, or 1 with the table's message on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/overrides.h"
#include "control/control_internal.h"

/* "2", "0.5", "1.25" in ppm; -1 when it does not read. */
static long long
factor_ppm(const char *text)
{
    long long whole = 0, frac = 0, scale = 1000000;
    char     *end;

    whole = strtoll(text, &end, 10);
    if (end == text || whole < 0) {
        return -1;
    }
    if (*end == '.') {
        for (end++; *end >= '0' && *end <= '9' && scale > 1; end++) {
            scale /= 10;
            frac += (*end - '0') * scale;
        }
    }
    return *end == '\0' ? whole * 1000000 + frac : -1;
}

/* VALUE into o, by kind; -1 when it does not read. */
static int
value_of(rl2_override_t *o, const char *value)
{
    rl2_err_t err;
    long long ppm;

    switch (o->kind) {
    case RL2_OVR_TIER:
        snprintf(o->tier, sizeof(o->tier), "%s", value);
        return 0;
    case RL2_OVR_BOOST:
    case RL2_OVR_EMERGENCY:
        ppm = factor_ppm(value);
        o->factor_ppm = (uint32_t)ppm;
        return ppm < 0 || ppm > RL2_OVR_FACTOR_MAX ? -1 : 0;
    case RL2_OVR_MODE:
        return rl2_mode_parse(value, &o->mode, &err) == RL2_OK ? 0 : -1;
    default:
        return 0;
    }
}

static int
usage(void)
{
    fprintf(stderr, "usage: rl2_override_set ZONE STATE_FILE set KIND TARGET "
                    "[VALUE] [TTL_S]\n"
                    "       rl2_override_set ZONE STATE_FILE remove KIND "
                    "TARGET\n");
    return 2;
}

int
main(int argc, char **argv)
{
    rl2_overrides_t *t;
    rl2_override_t   o, before;
    rl2_clock_t      now;
    rl2_err_t        err;
    rl2_status_t     st;
    long             ttl;

    if (argc < 6 || argc > 8
        || (strcmp(argv[3], "set") != 0 && strcmp(argv[3], "remove") != 0)) {
        return usage();
    }
    memset(&o, 0, sizeof(o));
    rl2_clock_now(&now);
    if (rl2_override_target(NULL, rl2_ovr_kind_from_name(argv[4]), argv[5], &o,
                            &err)
        != RL2_OK) {
        fprintf(stderr, "rl2_override_set: %s\n", err.msg);
        return 1;
    }
    if (argc > 6 && value_of(&o, argv[6]) != 0) {
        fprintf(stderr, "rl2_override_set: bad value %s\n", argv[6]);
        return 1;
    }
    ttl = argc > 7 ? strtol(argv[7], NULL, 10) : 0;
    o.created_us = now.wall_us;
    o.expires_us = ttl > 0 ? now.wall_us + ttl * 1000000LL : 0;
    snprintf(o.author, sizeof(o.author), "rl2_override_set");
    snprintf(o.reason, sizeof(o.reason), "test");
    if (rl2_overrides_open(argv[1], argv[2], 0600, &t, &err) != RL2_OK) {
        fprintf(stderr, "rl2_override_set: %s\n", err.msg);
        return 1;
    }
    st = strcmp(argv[3], "set") == 0
             ? rl2_overrides_set(t, &o, &now, &before, &err)
             : rl2_overrides_remove(t, o.kind, o.target_kind, o.target, &now,
                                    &before, &err);
    rl2_overrides_close(t);
    if (st != RL2_OK) {
        fprintf(stderr, "rl2_override_set: %s\n", err.msg);
        return 1;
    }
    return 0;
}
