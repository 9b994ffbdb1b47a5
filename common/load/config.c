/*
 * config.c -- the libconfig policy loader: one policy file, and the files
 * it @includes, into one rl2_policy_t.
 *
 * libconfig checks the syntax; the loader checks the meaning.  Each kind
 * of group has one function and a list of the keys it may hold: a key not
 * on the list is an error naming file and line, never a setting silently
 * ignored.  Every string kept is copied into the policy arena, because
 * libconfig's strings die at config_destroy().
 *
 * Top-level keys are read in dependency order, not file order: tiers
 * before rules (rules name tiers), rules before clients (clients name
 * rules).  The first error stops the load.  A complete policy is last
 * checked against what the core takes of one request: no request may
 * match more rules or limits than rl2_decide checks at once
 * (decide/bound.c).
 *
 * This file owns the entry points, reading the file, the @include
 * pre-check, the "file:line: message" errors and the top level.  The
 * rest of the loader, sharing load_internal.h:
 *   config_value.c    typed access to one member of a group, and lists
 *   config_limits.c   limit groups and limit sets
 *   config_rules.c    tiers, rules and the default rule
 *   config_clients.c  client overrides and the whitelist
 *   config_store.c    redis, failover, alerts and tier_from.redis
 *   config_overrides.c the runtime override table's group
 */
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ratelimit2/config.h"

#include "load_internal.h"
#include "base/base_internal.h"
#include "decide/decide_internal.h"
#include "policy/policy_internal.h"

/* Bigger policies are a mistake (a log file passed by accident). */
#define RL2_CFG_MAX_BYTES (16L * 1024 * 1024)
/* libconfig 1.5 refuses deeper nesting of @include itself. */
#define RL2_CFG_MAX_DEPTH 10

static const char *const rl2_top_keys[] = {
    "mode",        "match",           "algorithm", "hash_secret",
    "ipv6_prefix", "trusted_proxies", "api_key",   "tier_from",
    "tiers",       "default_tier",    "headers",   "whitelist",
    "clients",     "rules",           "default",   "violation_log",
    "redis",       "failover",        "alerts",    "method_override",
    "overrides",   "abuse",           "factors",   "experiment_seed",
    NULL,
};
static const char *const rl2_apikey_keys[] = { "header", "query", NULL };
static const char *const rl2_tierfrom_keys[] = { "variable", "header",
                                                 "header_from", "redis", NULL };
static const char *const rl2_headers_keys[] = {
    "reset", "body", "legacy", "scope", "algorithm", "factors", "variant", NULL
};
static const char *const rl2_match_values[] = { "first", "all", NULL };
static const char *const rl2_reset_values[] = { "epoch", "delta", NULL };
/* The 429 body: the index is policy->body_problem. */
static const char *const rl2_body_values[] = { "json", "problem+json", NULL };

/* ---- messages ---- */

/* The name a source goes by in messages.  libconfig 1.5 records the main
 * text as NULL and an @included file as written, always opened relative
 * to the include directory. */
static void
rl2_cfg_file(const rl2_cfg_t *cfg, const char *src, char *buf, size_t size)
{
    if (src == NULL) {
        snprintf(buf, size, "%s", cfg->name);
    }
    else if (cfg->dir != NULL && strcmp(cfg->dir, ".") != 0) {
        snprintf(buf, size, "%s/%s", cfg->dir, src);
    }
    else {
        snprintf(buf, size, "%s", src);
    }
}

/* "file:line: message" for the setting s. */
rl2_status_t
rl2_cfg_fail(const rl2_cfg_t *cfg, const config_setting_t *s, rl2_status_t st,
             const char *fmt, ...)
{
    char    file[512], msg[RL2_ERR_MAX];
    va_list ap;

    rl2_cfg_file(cfg, config_setting_source_file(s), file, sizeof(file));
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return rl2_err_set(cfg->err, st, "%s:%u: %s", file,
                       config_setting_source_line(s), msg);
}

rl2_status_t
rl2_cfg_nomem(const rl2_cfg_t *cfg)
{
    return rl2_err_set(cfg->err, RL2_ERR_NOMEM, "out of memory");
}

/* The arena copy of a setting's display file name, for rules, limits and
 * clients.  Consecutive settings share a file, so one copy serves many. */
const char *
rl2_cfg_source(rl2_cfg_t *cfg, const config_setting_t *s)
{
    const char *src = config_setting_source_file(s);
    char        buf[512];

    if (src == NULL) {
        return cfg->policy->source;
    }
    if (src != cfg->last_src) {
        rl2_cfg_file(cfg, src, buf, sizeof(buf));
        cfg->last_copy = rl2_policy_strdup(cfg->policy, buf);
        cfg->last_src = src;
    }
    return cfg->last_copy;
}

/* ---- top level ---- */

static rl2_status_t
rl2_cfg_scalars(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t *p = cfg->policy;
    const char   *secret;
    int64_t       prefix = p->ipv6_prefix;

    RL2_TRY(rl2_cfg_mode(cfg, root, &p->mode));
    RL2_TRY(
        rl2_cfg_choice(cfg, root, "match", rl2_match_values, &p->match_all));
    RL2_TRY(rl2_cfg_algo(cfg, root, &cfg->algo));
    RL2_TRY(rl2_cfg_bool(cfg, root, "method_override", &p->method_override));
    RL2_TRY(rl2_cfg_string(cfg, root, "hash_secret", &secret));
    if (secret != NULL) {
        rl2_hash_key_from_secret(secret, &p->hash_key);
    }
    RL2_TRY(rl2_cfg_int(cfg, root, "ipv6_prefix", &prefix));
    if (prefix < 1 || prefix > 128) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(root, "ipv6_prefix"),
                            RL2_ERR_CONFIG,
                            "'ipv6_prefix' must be between "
                            "1 and 128");
    }
    p->ipv6_prefix = (unsigned)prefix;
    return rl2_cfg_nets(cfg, root, "trusted_proxies", &p->trusted,
                        &p->n_trusted);
}

/* api_key, tier_from, headers, whitelist (config_clients.c). */
static rl2_status_t
rl2_cfg_groups(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t           *p = cfg->policy;
    const config_setting_t *g;

    RL2_TRY(rl2_cfg_group(cfg, root, "api_key", rl2_apikey_keys, &g));
    if (g != NULL) {
        RL2_TRY(rl2_cfg_copy(cfg, g, "header", &p->apikey_header));
        RL2_TRY(rl2_cfg_copy(cfg, g, "query", &p->apikey_query));
    }
    RL2_TRY(rl2_cfg_group(cfg, root, "tier_from", rl2_tierfrom_keys, &g));
    if (g != NULL) {
        RL2_TRY(rl2_cfg_copy(cfg, g, "variable", &p->tier_variable));
        RL2_TRY(rl2_cfg_copy(cfg, g, "header", &p->tier_header));
        RL2_TRY(rl2_cfg_nets(cfg, g, "header_from", &p->tier_nets,
                             &p->n_tier_nets));
        /* Load balancers pass their clients' own headers through: a
         * trusted proxy is no reason to believe a tier header.  Only the
         * upstream that sets it (an auth gateway) is. */
        if (p->tier_header != NULL && p->n_tier_nets == 0) {
            return rl2_cfg_fail(cfg, rl2_cfg_at(g, "header"), RL2_ERR_CONFIG,
                                "tier_from.header needs 'header_from': the "
                                "addresses of the upstreams that set it (a "
                                "proxy passes its clients' own headers "
                                "through)");
        }
        RL2_TRY(rl2_cfg_tier_redis(cfg, g));
    }
    RL2_TRY(rl2_cfg_group(cfg, root, "headers", rl2_headers_keys, &g));
    if (g != NULL) {
        RL2_TRY(
            rl2_cfg_choice(cfg, g, "reset", rl2_reset_values, &p->reset_delta));
        RL2_TRY(
            rl2_cfg_choice(cfg, g, "body", rl2_body_values, &p->body_problem));
        RL2_TRY(rl2_cfg_bool(cfg, g, "legacy", &p->header_legacy));
        RL2_TRY(rl2_cfg_bool(cfg, g, "scope", &p->header_scope));
        RL2_TRY(rl2_cfg_bool(cfg, g, "algorithm", &p->header_algorithm));
        RL2_TRY(rl2_cfg_bool(cfg, g, "factors", &p->header_factors));
        RL2_TRY(rl2_cfg_bool(cfg, g, "variant", &p->header_variant));
        p->header_optional = p->header_scope || p->header_algorithm
                             || p->header_factors || p->header_variant;
    }
    return rl2_cfg_whitelist(cfg, root);
}

static rl2_status_t
rl2_cfg_root(rl2_cfg_t *cfg, const config_setting_t *root)
{
    RL2_TRY(rl2_cfg_keys(cfg, root, "the policy", rl2_top_keys));
    RL2_TRY(rl2_cfg_scalars(cfg, root));
    RL2_TRY(rl2_cfg_groups(cfg, root));
    RL2_TRY(rl2_cfg_tiers(cfg, root));
    RL2_TRY(rl2_cfg_experiment_seed(cfg, root));
    RL2_TRY(rl2_cfg_rules(cfg, root));
    RL2_TRY(rl2_cfg_default_rule(cfg, root));
    RL2_TRY(rl2_cfg_vlog(cfg, root));
    RL2_TRY(rl2_cfg_abuse(cfg, root));
    RL2_TRY(rl2_cfg_store(cfg, root));
    RL2_TRY(rl2_cfg_overrides(cfg, root));
    RL2_TRY(rl2_cfg_factors(cfg, root));
    RL2_TRY(rl2_cfg_clients(cfg, root));
    RL2_TRY(rl2_rule_index_build(cfg->policy, cfg->err));
    /* Last: a rule's limits include its tiers' and clients' sets. */
    return rl2_bound_check(cfg->policy, cfg->err);
}

/* ---- reading ---- */

/* A whole file as a NUL-terminated string, to be freed by the caller. */
static rl2_status_t
rl2_cfg_slurp(const char *path, char **out, rl2_err_t *err)
{
    FILE       *fp = fopen(path, "r");
    struct stat st;
    size_t      got;

    *out = NULL;
    if (fp == NULL) {
        return rl2_err_set(err, RL2_ERR_SYS, "%s: cannot open: %s", path,
                           strerror(errno));
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return rl2_err_set(err, RL2_ERR_CONFIG, "%s: not a regular file", path);
    }
    if (st.st_size > RL2_CFG_MAX_BYTES) {
        fclose(fp);
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s: larger than %ld "
                           "bytes",
                           path, RL2_CFG_MAX_BYTES);
    }
    *out = malloc((size_t)st.st_size + 1);
    if (*out == NULL) {
        fclose(fp);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    got = fread(*out, 1, (size_t)st.st_size, fp);
    (*out)[got] = '\0';
    fclose(fp);
    return RL2_OK;
}

static rl2_status_t rl2_cfg_includes(const rl2_cfg_t *cfg, const char *text,
                                     const char *src, int depth);

/* One @include line: a regular file, whose own @includes are checked in
 * turn.  A missing or unreadable file is left to libconfig, whose
 * message has the line. */
static rl2_status_t
rl2_cfg_include(const rl2_cfg_t *cfg, const char *src, int line,
                const char *name, int depth)
{
    char         path[1024], *text;
    struct stat  sb;
    rl2_err_t    scratch;
    rl2_status_t st;

    rl2_cfg_file(cfg, name, path, sizeof(path));
    if (stat(path, &sb) != 0) {
        return RL2_OK;
    }
    if (!S_ISREG(sb.st_mode)) {
        return rl2_err_set(cfg->err, RL2_ERR_CONFIG,
                           "%s:%d: @include "
                           "\"%s\": %s is not a regular file",
                           src, line, name, path);
    }
    if (depth + 1 >= RL2_CFG_MAX_DEPTH
        || rl2_cfg_slurp(path, &text, &scratch) != RL2_OK) {
        return RL2_OK;
    }
    st = rl2_cfg_includes(cfg, text, path, depth + 1);
    free(text);
    return st;
}

/* libconfig 1.5's scanner calls exit() when an @include names a
 * directory: look at every @include line before libconfig does. */
static rl2_status_t
rl2_cfg_includes(const rl2_cfg_t *cfg, const char *text, const char *src,
                 int depth)
{
    char name[512];
    int  line = 1;

    for (const char *p = text; *p != '\0'; line++) {
        const char *q = p + strspn(p, " \t");

        if (strncmp(q, "@include", 8) == 0
            && sscanf(q + 8, " \"%511[^\"\n]\"", name) == 1) {
            RL2_TRY(rl2_cfg_include(cfg, src, line, name, depth));
        }
        p = strchr(p, '\n');
        p = p != NULL ? p + 1 : "";
    }
    return RL2_OK;
}

/* Parse text and build the policy; name and dir as in messages. */
static rl2_status_t
rl2_cfg_run(const char *text, const char *name, const char *dir,
            rl2_policy_t **out, rl2_err_t *err)
{
    rl2_cfg_t cfg = {
        .name = name, .dir = dir, .err = err, .algo = RL2_ALGO_FIXED_WINDOW
    };
    config_t     c;
    char         file[512];
    rl2_status_t st;

    *out = NULL;
    RL2_TRY(rl2_cfg_includes(&cfg, text, name, 0));
    config_init(&c);
    if (dir != NULL) {
        config_set_include_dir(&c, dir);
    }
    if (!config_read_string(&c, text)) {
        rl2_cfg_file(&cfg, config_error_file(&c), file, sizeof(file));
        st = rl2_err_set(
            err, RL2_ERR_CONFIG, "%s:%d: %s", file, config_error_line(&c),
            config_error_text(&c) ? config_error_text(&c) : "cannot be read");
    }
    else if ((st = rl2_policy_create(name, &cfg.policy, err)) == RL2_OK) {
        st = rl2_cfg_root(&cfg, config_root_setting(&c));
        if (st != RL2_OK) {
            rl2_policy_free(cfg.policy);
        }
        else {
            *out = cfg.policy;
        }
    }
    config_destroy(&c);
    return st;
}

rl2_status_t
rl2_config_load(const char *path, rl2_policy_t **out, rl2_err_t *err)
{
    char         dir[1024];
    const char  *slash = strrchr(path, '/');
    char        *text;
    rl2_status_t st;

    *out = NULL;
    if (strlen(path) >= sizeof(dir)) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "policy file name longer "
                           "than %zu bytes",
                           sizeof(dir) - 1);
    }
    /* @include is relative to the main file, not to the working
     * directory (which for Apache is "/"). */
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    }
    else {
        snprintf(dir, sizeof(dir), "%.*s",
                 slash == path ? 1 : (int)(slash - path), path);
    }
    RL2_TRY(rl2_cfg_slurp(path, &text, err));
    st = rl2_cfg_run(text, path, dir, out, err);
    free(text);
    return st;
}

rl2_status_t
rl2_config_load_string(const char *text, const char *name,
                       const char *include_dir, rl2_policy_t **out,
                       rl2_err_t *err)
{
    return rl2_cfg_run(text, name ? name : "inline", include_dir, out, err);
}
