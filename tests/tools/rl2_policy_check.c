/*
 * rl2_policy_check.c -- a test tool: load policy files with the core's
 * loader, as Apache and ratelimit2-fcgi do, and say what came of it.
 *
 * usage: rl2_policy_check POLICY...
 * Prints "POLICY: ok: N rules, default rule yes|no, T tiers, C clients"
 * per file, or the loader's "file:line: message" on standard error.
 * Exit status: 0 when every file loads, 1 otherwise.
 */
#include <stdio.h>

#include "ratelimit2/config.h"

int
main(int argc, char **argv)
{
    rl2_policy_t *p;
    rl2_err_t     err;
    int           rc = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: rl2_policy_check POLICY...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (rl2_config_load(argv[i], &p, &err) != RL2_OK) {
            fprintf(stderr, "%s\n", err.msg);
            rc = 1;
            continue;
        }
        printf("%s: ok: %zu rules, default rule %s, %zu tiers, %zu "
               "clients\n",
               argv[i], p->n_rules, p->default_rule != NULL ? "yes" : "no",
               p->n_tiers, p->n_clients);
        rl2_policy_free(p);
    }
    return rc;
}
