/*
 * check.c -- ratelimit2ctl check CONFIG and docs CONFIG: load a policy
 * file as the servers would, then print its effective rules (check) or
 * render them as Markdown (docs).  A policy that does not load is
 * reported as "FILE:LINE: message" on stderr with exit status 1, so
 * `ratelimit2ctl check FILE && apachectl graceful` is safe.
 */
#include <stdio.h>

#include "ratelimit2/config.h"

#include "ctl.h"

static int
rl2_ctl_load(int argc, char **argv, const char *what, rl2_policy_t **out)
{
    rl2_err_t err;

    if (argc != 1) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "usage: %s CONFIG", what);
    }
    if (rl2_config_load(argv[0], out, &err) != RL2_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return RL2_CTL_INVALID;
    }
    return RL2_CTL_OK;
}

int
rl2_ctl_check(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_policy_t *policy;
    int           rc;

    (void)o;
    if ((rc = rl2_ctl_load(argc, argv, "check", &policy)) != RL2_CTL_OK) {
        return rc;
    }
    rl2_ctl_rules_text(stdout, policy);
    rl2_policy_free(policy);
    return RL2_CTL_OK;
}

int
rl2_ctl_docs(const rl2_ctl_opts_t *o, int argc, char **argv)
{
    rl2_policy_t *policy;
    int           rc;

    (void)o;
    if ((rc = rl2_ctl_load(argc, argv, "docs", &policy)) != RL2_CTL_OK) {
        return rc;
    }
    rl2_ctl_rules_markdown(stdout, policy);
    rl2_policy_free(policy);
    return RL2_CTL_OK;
}
