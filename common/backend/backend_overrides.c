/*
 * backend_overrides.c -- the runtime override table (overrides.h) as the
 * front ends attach it: beside their zone, with the shm mode of the
 * zone's other companions and the state file the policy names (or the
 * zone's default, RL2_STATE_DIR/<zone>.overrides).
 *
 * The table is an operator's tool, not something a request needs: when
 * it cannot be opened the front ends say why and serve without it.  A
 * missing state directory is only noted: the table works, and changes
 * (ratelimit2ctl) are refused by the table itself, since it keeps no
 * change it could not save.
 *
 * The table's automatic bans are audited (audit.h) into the zone's
 * audit file, "<zone>.audit" in the state file's directory (with the
 * default state file, RL2_STATE_DIR/<zone>.audit, the one ratelimit2ctl
 * writes by default), and syslog where the alerts go; with a Redis
 * side, into the fleet's stream as well.  The file is opened by the
 * first ban of each process, not here.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ratelimit2/audit.h"
#include "ratelimit2/backend.h"
#include "control/control_internal.h"

/* The trail of t's automatic bans: the policy's audit file, where
 * ratelimit2ctl and the admin interface write theirs; syslog as the
 * alerts. */
static rl2_status_t
rl2_backend_overrides_audit(const rl2_backend_conf_t *conf,
                            const rl2_policy_t *policy, rl2_overrides_t *t,
                            rl2_err_t *err)
{
    char             path[4096];
    rl2_audit_conf_t ac;

    if (rl2_policy_overrides_audit(policy, conf->zone_name, path, sizeof(path))
        != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "overrides: the audit file name for zone %s is "
                           "too long",
                           conf->zone_name);
    }
    rl2_audit_conf_default(&ac);
    ac.path = path;
    ac.syslog_socket = conf->alert_socket;
    ac.ident = conf->alert_ident;
    return rl2_overrides_audit_attach(t, &ac, err);
}

rl2_status_t
rl2_backend_overrides_open(const rl2_backend_conf_t *conf,
                           const rl2_policy_t *policy, rl2_overrides_t **out,
                           rl2_err_t *note, rl2_err_t *err)
{
    char         path[4096], dir[4096];
    char        *slash;
    rl2_status_t st;

    *out = NULL;
    note->msg[0] = '\0';
    if (policy->overrides_disabled) {
        return RL2_OK;
    }
    if (rl2_policy_overrides_state(policy, conf->zone_name, path, sizeof(path))
        != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "overrides: the state file name for zone %s is "
                           "too long",
                           conf->zone_name);
    }
    st = rl2_overrides_open(conf->zone_name, path, conf->shm_mode, out, err);
    if (st == RL2_OK
        && (st = rl2_backend_overrides_audit(conf, policy, *out, err))
               != RL2_OK) {
        rl2_overrides_close(*out);
        *out = NULL;
    }
    if (st != RL2_OK) {
        return st;
    }
    memcpy(dir, path, sizeof(dir));
    slash = strrchr(dir, '/');
    *(slash == dir ? slash + 1 : slash) = '\0';
    if (access(dir, F_OK) != 0 && errno == ENOENT) {
        rl2_err_set(note, RL2_ERR_SYS,
                    "overrides: %s does not exist: runtime overrides "
                    "cannot be kept in %s, so changes will be refused "
                    "until it is created",
                    dir, path);
    }
    return RL2_OK;
}
