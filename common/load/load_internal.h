/*
 * load_internal.h -- what the files of the policy loader share (private
 * to the core, not public API): the load's context, the typed accessors
 * and the file:line error helpers, and each file's entry points.
 *
 *   config.c          entry points, reading, @include check, messages,
 *                     the top level in dependency order
 *   config_value.c    typed access to one member of a group, and lists
 *   config_limits.c   limit groups and limit sets
 *   config_rules.c    tiers, rules and the default rule
 *   config_clients.c  client overrides and the whitelist
 *   config_store.c    redis, failover, alerts and tier_from.redis
 *   config_overrides.c the runtime override table's group
 *   config_factors.c  adaptive factors (the host's load)
 *   config_reputation.c  the reputation factor
 *   config_geo.c      factors.geo: the client's country
 *   config_variants.c experiments in a rule: variants, a challenger
 *
 * Every function taking a config_setting_t reports a failure as
 * "file:line: message" in cfg->err and returns its status; the first
 * failure stops the load.
 */
#ifndef RL2_CONFIG_INTERNAL_H
#define RL2_CONFIG_INTERNAL_H

#include <libconfig.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/config.h"

/* Stop at the first failure: its message is the one the sysadmin needs. */
#define RL2_TRY(expr) \
    do { \
        rl2_status_t rl2_try_ = (expr); \
        if (rl2_try_ != RL2_OK) { \
            return rl2_try_; \
        } \
    } while (0)

/* A rule's own default key.  rl2_rule_t does not record it, yet the
 * limits of a client override default to the key of the rule they
 * replace, so the loader keeps it aside. */
typedef struct {
    rl2_key_kind_t kind;
    const char    *header;
} rl2_cfg_key_t;

/* What one load carries from group to group. */
typedef struct {
    rl2_policy_t  *policy;
    const char    *name;      /* the main file in messages */
    const char    *dir;       /* where @include looks, or NULL */
    rl2_algo_t     algo;      /* top-level default algorithm */
    rl2_cfg_key_t *rule_keys; /* [n_rules + 1]: each rule's, then default */
    const char    *last_src;  /* libconfig's name of the last source ... */
    const char    *last_copy; /* ... and its display name in the arena */
    const char    *experiment_seed; /* the policy's, or NULL (libconfig's
                                       string, for the load only) */
    rl2_err_t *err;
} rl2_cfg_t;

/* Where a limit set belongs and what its limits default to. */
typedef struct {
    const char   *rule; /* default limit names derive from it */
    rl2_cfg_key_t key;
    int           in_tier; /* depends on identity: decided late */
} rl2_cfg_set_t;

/* ---- messages (config.c) ---- */

rl2_status_t rl2_cfg_fail(const rl2_cfg_t *cfg, const config_setting_t *s,
                          rl2_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
rl2_status_t rl2_cfg_nomem(const rl2_cfg_t *cfg);
const char  *rl2_cfg_source(rl2_cfg_t *cfg, const config_setting_t *s);

/* ---- typed access (config_value.c) ---- */

void              rl2_cfg_append(char *buf, size_t size, const char *s);
config_setting_t *rl2_cfg_at(const config_setting_t *group, const char *key);
rl2_status_t rl2_cfg_keys(const rl2_cfg_t *cfg, const config_setting_t *group,
                          const char *what, const char *const *allowed);
rl2_status_t rl2_cfg_string(const rl2_cfg_t *cfg, const config_setting_t *group,
                            const char *key, const char **out);
rl2_status_t rl2_cfg_copy(const rl2_cfg_t *cfg, const config_setting_t *group,
                          const char *key, const char **out);
rl2_status_t rl2_cfg_int(const rl2_cfg_t *cfg, const config_setting_t *group,
                         const char *key, int64_t *out);
rl2_status_t rl2_cfg_bool(const rl2_cfg_t *cfg, const config_setting_t *group,
                          const char *key, int *out);
rl2_status_t rl2_cfg_choice(const rl2_cfg_t *cfg, const config_setting_t *group,
                            const char *key, const char *const *values,
                            int *out);
rl2_status_t rl2_cfg_mode(const rl2_cfg_t *cfg, const config_setting_t *group,
                          rl2_mode_t *out);
rl2_status_t rl2_cfg_algo(const rl2_cfg_t *cfg, const config_setting_t *group,
                          rl2_algo_t *out);
rl2_status_t rl2_cfg_key(const rl2_cfg_t *cfg, const config_setting_t *group,
                         rl2_cfg_key_t *out);
rl2_status_t rl2_cfg_name(const rl2_cfg_t *cfg, const config_setting_t *s,
                          const char *what, const char *name);
rl2_status_t rl2_cfg_list(const rl2_cfg_t *cfg, const config_setting_t *s,
                          const char *key, unsigned *n);
/* Item i of a list of strings, or the setting itself when it is one
 * string (a list of one). */
const config_setting_t *rl2_cfg_item(const config_setting_t *list, size_t i);
rl2_status_t            rl2_cfg_strings(const rl2_cfg_t        *cfg,
                                        const config_setting_t *group, const char *key,
                                        rl2_status_t (*check)(const char *, rl2_err_t *),
                                        int lower, const char ***out, size_t *n);
rl2_status_t rl2_cfg_nets(const rl2_cfg_t *cfg, const config_setting_t *group,
                          const char *key, rl2_cidr_t **out, size_t *n);
rl2_status_t rl2_cfg_methods(const rl2_cfg_t        *cfg,
                             const config_setting_t *group, unsigned *bits);
rl2_status_t rl2_cfg_group(const rl2_cfg_t *cfg, const config_setting_t *parent,
                           const char *key, const char *const *allowed,
                           const config_setting_t **out);

/* ---- adaptive factors (config_factors.c) ---- */

/* A factor group's `min` and `max` (its bounds, default 0.001 and
 * 1000) and its scope, `rules` and `tiers` (names of the policy's
 * rules and tiers, which are loaded first), into u; every value
 * checked with file:line. */
rl2_status_t rl2_cfg_factor_use(rl2_cfg_t *cfg, const config_setting_t *g,
                                rl2_factor_t which, rl2_factor_use_t *u);

/* f, a factor of group `which` given at s (`what` names it in the
 * message), within the group's min..max (rl2_cfg_factor_use first). */
rl2_status_t rl2_cfg_factor_bounded(rl2_cfg_t *cfg, const config_setting_t *s,
                                    rl2_factor_t which, const char *what,
                                    uint32_t f);

/* Factor `which` is complete: decisions apply it from now on. */
void rl2_cfg_factor_on(rl2_cfg_t *cfg, rl2_factor_t which);

/* A factor (x0.001 .. x1000) in ppm; `group` names it in messages. */
rl2_status_t rl2_cfg_factor_in(const rl2_cfg_t *cfg, const config_setting_t *s,
                               const char *group, const char *what,
                               uint32_t *out);

/* The group `reputation` of `factors` (config_reputation.c), when it is
 * there. */
rl2_status_t rl2_cfg_reputation(rl2_cfg_t              *cfg,
                                const config_setting_t *factors);
/* factors.geo, when the `factors` group g has it (config_geo.c). */
rl2_status_t rl2_cfg_geo(rl2_cfg_t *cfg, const config_setting_t *g);

/* config_abuse.c: a fixed-window limit of n per window_us named name,
 * keyed by the client's address, finished as the loader finishes any
 * limit (its key, digest seed and state size): the counters the
 * automatic bans and the reputation factor keep beside the rules'.
 * Errors name `group`. */
rl2_status_t rl2_cfg_counter(rl2_cfg_t *cfg, const config_setting_t *g,
                             const char *group, const char *name, int64_t n,
                             int64_t window_us, rl2_limit_t **out);

/* ---- limit sets (config_limits.c) ---- */

rl2_status_t rl2_cfg_set(rl2_cfg_t *cfg, const config_setting_t *s,
                         const rl2_cfg_set_t *sc, rl2_limit_set_t *set);

/* ---- tiers and rules (config_rules.c) ---- */

int          rl2_cfg_tier_find(const rl2_policy_t *p, const char *name);
void         rl2_cfg_tier_list(const rl2_policy_t *p, char *buf, size_t size);
rl2_status_t rl2_cfg_tiers(rl2_cfg_t *cfg, const config_setting_t *root);
rl2_status_t rl2_cfg_rules(rl2_cfg_t *cfg, const config_setting_t *root);
rl2_status_t rl2_cfg_default_rule(rl2_cfg_t *cfg, const config_setting_t *root);

/* ---- experiments: variants and a challenger (config_variants.c) ---- */

/* The policy's experiment_seed into cfg (read before the rules). */
rl2_status_t rl2_cfg_experiment_seed(rl2_cfg_t              *cfg,
                                     const config_setting_t *root);
/* The rule group g's variants and variant_by into rule (its limits are
 * read with sc, whose in_tier this may set for them and clears after). */
rl2_status_t rl2_cfg_variants(rl2_cfg_t *cfg, const config_setting_t *g,
                              rl2_cfg_set_t *sc, rl2_rule_t *rule);
/* The rule group g's challenger into rule->challenger. */
rl2_status_t rl2_cfg_challenger(rl2_cfg_t *cfg, const config_setting_t *g,
                                const rl2_cfg_set_t *sc, rl2_rule_t *rule);

/* ---- clients and whitelist (config_clients.c) ---- */

rl2_status_t rl2_cfg_clients(rl2_cfg_t *cfg, const config_setting_t *root);
rl2_status_t rl2_cfg_whitelist(rl2_cfg_t *cfg, const config_setting_t *root);

/* Could a client give a request variable of this name a value (HTTP_*,
 * CONTENT_TYPE, CONTENT_LENGTH)? */
int rl2_cfg_client_var(const char *name);

/* Letters, digits and '_', not starting with a digit? */
int rl2_cfg_var_name_ok(const char *name);

/* ---- the violation log (config_vlog.c) ---- */

rl2_status_t rl2_cfg_vlog(rl2_cfg_t *cfg, const config_setting_t *root);

/* ---- automatic bans (config_abuse.c) ---- */

rl2_status_t rl2_cfg_abuse(rl2_cfg_t *cfg, const config_setting_t *root);

/* ---- the runtime override table (config_overrides.c) ---- */

rl2_status_t rl2_cfg_overrides(rl2_cfg_t *cfg, const config_setting_t *root);

/* ---- adaptive factors (config_factors.c) ---- */

rl2_status_t rl2_cfg_factors(rl2_cfg_t *cfg, const config_setting_t *root);

/* A schedule window's "when" ("Mon-Fri 09:00-18:00", "Sat,Sun",
 * "* 22:00-06:00") into w's days and times; 0 when malformed. */
int rl2_sched_when_parse(const char *when, rl2_sched_window_t *w);

/* ---- store settings and the tier lookup (config_store.c) ---- */

rl2_status_t rl2_cfg_store(rl2_cfg_t *cfg, const config_setting_t *root);
rl2_status_t rl2_cfg_tier_redis(rl2_cfg_t              *cfg,
                                const config_setting_t *tier_from);

#endif /* RL2_CONFIG_INTERNAL_H */
