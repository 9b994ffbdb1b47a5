/*
 * config_vlog.c -- the policy's `violation_log` group (violation_log.h):
 *
 *   violation_log = {
 *       enabled  = true;             # false: record nothing
 *       rate     = 100;              # entries per second per host, then
 *                                    # sampled (the rest counted)
 *       capacity = 10000;            # ring entries; Redis MAXLEN ~
 *       stream   = "rl2:violations"; # the Redis stream's key
 *   };
 *
 * Every value is checked here, with file:line, so that a front end never
 * meets a bad one when it opens the log.
 */
#include <string.h>

#include "ratelimit2/violation_log.h"
#include "load_internal.h"

static const char *const rl2_vlog_keys[] = { "enabled", "rate", "capacity",
                                             "stream", NULL };

static rl2_status_t
rl2_cfg_vlog_range(rl2_cfg_t *cfg, const config_setting_t *g, const char *key,
                   int64_t lo, int64_t hi, uint32_t *out)
{
    int64_t v = *out;

    RL2_TRY(rl2_cfg_int(cfg, g, key, &v));
    if (rl2_cfg_at(g, key) != NULL && (v < lo || v > hi)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, key), RL2_ERR_CONFIG,
                            "violation_log: '%s' must be from %lld to %lld",
                            key, (long long)lo, (long long)hi);
    }
    *out = (uint32_t)v;
    return RL2_OK;
}

rl2_status_t
rl2_cfg_vlog(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_vlog_conf_t        *vc = &cfg->policy->vlog;
    const config_setting_t *g;
    int                     enabled = 1;

    RL2_TRY(rl2_cfg_group(cfg, root, "violation_log", rl2_vlog_keys, &g));
    if (g == NULL) {
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_bool(cfg, g, "enabled", &enabled));
    vc->disabled = !enabled;
    RL2_TRY(
        rl2_cfg_vlog_range(cfg, g, "rate", 1, RL2_VLOG_RATE_MAX, &vc->rate));
    RL2_TRY(rl2_cfg_vlog_range(cfg, g, "capacity", RL2_VLOG_CAPACITY_MIN,
                               RL2_VLOG_CAPACITY_MAX, &vc->capacity));
    RL2_TRY(rl2_cfg_copy(cfg, g, "stream", &vc->stream));
    if (vc->stream != NULL
        && (vc->stream[0] == '\0'
            || strlen(vc->stream) >= RL2_VLOG_STREAM_MAX)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "stream"), RL2_ERR_CONFIG,
                            "violation_log: 'stream' must be 1 to %d bytes",
                            RL2_VLOG_STREAM_MAX - 1);
    }
    return RL2_OK;
}
