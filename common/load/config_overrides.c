/*
 * config_overrides.c -- the policy's `overrides` group: how the front
 * ends attach the runtime override table (overrides.h) and answer a
 * client it bans.
 *
 *   overrides = {
 *       enabled    = true;   # false: this policy's decisions never
 *                            # read the table
 *       state_file = "/var/lib/ratelimit2/ratelimit2.overrides";
 *                            # default: RL2_STATE_DIR/<zone>.overrides
 *       audit_file = "/var/lib/ratelimit2/ratelimit2.audit";
 *                            # default: RL2_STATE_DIR/<zone>.audit
 *       ban_status = 429;    # a banned client's answer: 429 or 403
 *   };
 *
 * The table itself is opened by the front ends beside their zone
 * (backend.h, rl2_backend_overrides_open), never by the loader: a policy
 * is also loaded by tools that serve nothing.
 */
#include <string.h>

#include "load_internal.h"

/* The state file's temporary twin ("<file>.tmp") must fit a path. */
#define RL2_CFG_STATE_MAX 4000

static const char *const rl2_overrides_keys[] = { "enabled", "state_file",
                                                  "audit_file", "ban_status",
                                                  NULL };

/* state_file, audit_file: *out stays NULL when the key is not there. */
static rl2_status_t
rl2_cfg_overrides_file(rl2_cfg_t *cfg, const config_setting_t *g,
                       const char *key, const char **out)
{
    const char *path;
    size_t      len;

    RL2_TRY(rl2_cfg_copy(cfg, g, key, &path));
    if (path == NULL) {
        return RL2_OK;
    }
    len = strlen(path);
    /* Apache runs from "/": a relative name would depend on who reads
     * it, and the servers and ratelimit2ctl must agree on the file. */
    if (path[0] != '/' || path[len - 1] == '/' || len > RL2_CFG_STATE_MAX) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, key), RL2_ERR_CONFIG,
                            "overrides: '%s' must be the absolute path of "
                            "a file, at most %d bytes",
                            key, RL2_CFG_STATE_MAX);
    }
    *out = path;
    return RL2_OK;
}

rl2_status_t
rl2_cfg_overrides(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t           *p = cfg->policy;
    const config_setting_t *g;
    int                     enabled = 1;
    int64_t                 status = p->ban_status;

    RL2_TRY(rl2_cfg_group(cfg, root, "overrides", rl2_overrides_keys, &g));
    if (g == NULL) {
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_bool(cfg, g, "enabled", &enabled));
    p->overrides_disabled = !enabled;
    RL2_TRY(rl2_cfg_overrides_file(cfg, g, "state_file", &p->overrides_state));
    RL2_TRY(rl2_cfg_overrides_file(cfg, g, "audit_file", &p->overrides_audit));
    RL2_TRY(rl2_cfg_int(cfg, g, "ban_status", &status));
    /* 429 says "come back later" (Retry-After holds); 403 says "no". */
    if (status != 429 && status != 403) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "ban_status"), RL2_ERR_CONFIG,
                            "overrides: 'ban_status' must be 429 or 403");
    }
    p->ban_status = (int)status;
    return RL2_OK;
}
