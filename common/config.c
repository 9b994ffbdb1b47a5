/*
 * config.c -- the libconfig policy loader: one policy file, and the files
 * it @includes, into one rl2_policy_t.
 *
 * libconfig checks the syntax; this file checks the meaning.  Each kind of
 * group has one function and a list of the keys it may hold: a key not on
 * the list is an error naming file and line, never a setting silently
 * ignored.  Every string kept is copied into the policy arena, because
 * libconfig's strings die at config_destroy().
 *
 * Top-level keys are read in dependency order, not file order: tiers
 * before rules (rules name tiers), rules before clients (clients name
 * rules).  The first error stops the load.
 */
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "ratelimit2/config.h"

/* Bigger policies are a mistake (a log file passed by accident). */
#define RL2_CFG_MAX_BYTES (16L * 1024 * 1024)
/* libconfig 1.5 refuses deeper nesting of @include itself. */
#define RL2_CFG_MAX_DEPTH 10

/* Stop at the first failure: its message is the one the sysadmin needs. */
#define RL2_TRY(expr)                      \
    do {                                   \
        rl2_status_t rl2_try_ = (expr);    \
        if (rl2_try_ != RL2_OK) {          \
            return rl2_try_;               \
        }                                  \
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
    rl2_err_t     *err;
} rl2_cfg_t;

/* Where a limit set belongs and what its limits default to. */
typedef struct {
    const char    *rule;      /* default limit names derive from it */
    rl2_cfg_key_t  key;
    int            in_tier;   /* depends on identity: decided late */
} rl2_cfg_set_t;

static const char *const rl2_top_keys[] = {
    "mode", "match", "algorithm", "hash_secret", "ipv6_prefix",
    "trusted_proxies", "api_key", "tier_from", "tiers", "default_tier",
    "headers", "whitelist", "clients", "rules", "default", NULL
};
static const char *const rl2_rule_keys[] = {
    "name", "methods", "paths", "hosts", "mode", "continue", "exempt",
    "key", "limits", "tiers", NULL
};
static const char *const rl2_default_keys[] = {
    "key", "mode", "limits", "tiers", NULL
};
static const char *const rl2_limit_keys[] = {
    "name", "rate", "algorithm", "burst", "cost", "key", "overflow",
    "limit", NULL
};
static const char *const rl2_client_keys[] = {
    "user", "api_key", "address", "tier", "rules", NULL
};
static const char *const rl2_tier_keys[] = { "name", "upgrade_url", NULL };
static const char *const rl2_apikey_keys[] = { "header", "query", NULL };
static const char *const rl2_tierfrom_keys[] = { "variable", "header",
                                                 NULL };
static const char *const rl2_headers_keys[] = { "reset", "scope",
                                                "algorithm", NULL };
static const char *const rl2_whitelist_keys[] = {
    "addresses", "users", "api_keys", "internal", NULL
};
static const char *const rl2_match_values[] = { "first", "all", NULL };
static const char *const rl2_reset_values[] = { "epoch", "delta", NULL };

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

static rl2_status_t
rl2_cfg_fail(const rl2_cfg_t *cfg, const config_setting_t *s,
             rl2_status_t st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "file:line: message" for the setting s. */
static rl2_status_t
rl2_cfg_fail(const rl2_cfg_t *cfg, const config_setting_t *s,
             rl2_status_t st, const char *fmt, ...)
{
    char file[512], msg[RL2_ERR_MAX];
    va_list ap;

    rl2_cfg_file(cfg, config_setting_source_file(s), file, sizeof(file));
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return rl2_err_set(cfg->err, st, "%s:%u: %s", file,
                       config_setting_source_line(s), msg);
}

static rl2_status_t
rl2_cfg_nomem(const rl2_cfg_t *cfg)
{
    return rl2_err_set(cfg->err, RL2_ERR_NOMEM, "out of memory");
}

/* Append s to the list in buf, cutting it short rather than overflowing. */
static void
rl2_cfg_append(char *buf, size_t size, const char *s)
{
    size_t len = strlen(buf);

    if (len + 1 < size) {
        snprintf(buf + len, size - len, "%s%s", len ? ", " : "", s);
    }
}

static void
rl2_cfg_join(const char *const *list, char *buf, size_t size)
{
    buf[0] = '\0';
    for (; *list != NULL; list++) {
        rl2_cfg_append(buf, size, *list);
    }
}

static void
rl2_cfg_tier_list(const rl2_policy_t *p, char *buf, size_t size)
{
    snprintf(buf, size, "%s", p->n_tiers ? "" : "none");
    for (size_t i = 0; i < p->n_tiers; i++) {
        rl2_cfg_append(buf, size, p->tiers[i].name);
    }
}

/* The arena copy of a setting's display file name, for rules, limits and
 * clients.  Consecutive settings share a file, so one copy serves many. */
static const char *
rl2_cfg_source(rl2_cfg_t *cfg, const config_setting_t *s)
{
    const char *src = config_setting_source_file(s);
    char buf[512];

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

/* ---- typed access to one member of a group ---- */

static config_setting_t *
rl2_cfg_at(const config_setting_t *group, const char *key)
{
    return config_setting_get_member(group, key);
}

static int
rl2_cfg_in(const char *name, const char *const *list)
{
    for (; *list != NULL; list++) {
        if (strcmp(name, *list) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Reject any key the group may not hold: a misspelt key must not turn
 * into a limit silently missing. */
static rl2_status_t
rl2_cfg_keys(const rl2_cfg_t *cfg, const config_setting_t *group,
             const char *what, const char *const *allowed)
{
    unsigned n = (unsigned)config_setting_length(group);
    char list[200];

    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(group, i);

        if (!rl2_cfg_in(config_setting_name(m), allowed)) {
            rl2_cfg_join(allowed, list, sizeof(list));
            return rl2_cfg_fail(cfg, m, RL2_ERR_CONFIG, "unknown key '%s' "
                                "in %s; expected one of: %s",
                                config_setting_name(m), what, list);
        }
    }
    return RL2_OK;
}

/* A non-empty string, or *out NULL when the key is absent. */
static rl2_status_t
rl2_cfg_string(const rl2_cfg_t *cfg, const config_setting_t *group,
               const char *key, const char **out)
{
    const config_setting_t *s = rl2_cfg_at(group, key);

    *out = NULL;
    if (s == NULL) {
        return RL2_OK;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'%s' must be a string", key);
    }
    *out = config_setting_get_string(s);
    if (**out == '\0') {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'%s' must not be empty", key);
    }
    return RL2_OK;
}

/* The same, copied into the arena. */
static rl2_status_t
rl2_cfg_copy(const rl2_cfg_t *cfg, const config_setting_t *group,
             const char *key, const char **out)
{
    const char *text;

    RL2_TRY(rl2_cfg_string(cfg, group, key, &text));
    *out = NULL;
    if (text != NULL) {
        *out = rl2_policy_strdup(cfg->policy, text);
        if (*out == NULL) {
            return rl2_cfg_nomem(cfg);
        }
    }
    return RL2_OK;
}

/* An integer of either libconfig width; *out untouched when absent.
 * libconfig 1.5 truncates literals above 2^31-1 unless written with an
 * L suffix, so the documentation asks for 10000000000L. */
static rl2_status_t
rl2_cfg_int(const rl2_cfg_t *cfg, const config_setting_t *group,
            const char *key, int64_t *out)
{
    const config_setting_t *s = rl2_cfg_at(group, key);

    if (s == NULL) {
        return RL2_OK;
    }
    if (config_setting_type(s) != CONFIG_TYPE_INT
        && config_setting_type(s) != CONFIG_TYPE_INT64) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'%s' must be an integer", key);
    }
    *out = config_setting_get_int64(s);
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_bool(const rl2_cfg_t *cfg, const config_setting_t *group,
             const char *key, int *out)
{
    const config_setting_t *s = rl2_cfg_at(group, key);

    if (s == NULL) {
        return RL2_OK;
    }
    if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'%s' must be true or false", key);
    }
    *out = config_setting_get_bool(s);
    return RL2_OK;
}

/* One of a fixed set of words, as its index; *out untouched when absent. */
static rl2_status_t
rl2_cfg_choice(const rl2_cfg_t *cfg, const config_setting_t *group,
               const char *key, const char *const *values, int *out)
{
    const char *text;
    char list[100];

    RL2_TRY(rl2_cfg_string(cfg, group, key, &text));
    if (text == NULL) {
        return RL2_OK;
    }
    for (int i = 0; values[i] != NULL; i++) {
        if (strcmp(text, values[i]) == 0) {
            *out = i;
            return RL2_OK;
        }
    }
    rl2_cfg_join(values, list, sizeof(list));
    return rl2_cfg_fail(cfg, rl2_cfg_at(group, key), RL2_ERR_CONFIG,
                        "unknown value \"%s\" for '%s'; expected one of: %s",
                        text, key, list);
}

static rl2_status_t
rl2_cfg_mode(const rl2_cfg_t *cfg, const config_setting_t *group,
             rl2_mode_t *out)
{
    const char *text;
    rl2_err_t e;
    rl2_status_t st;

    RL2_TRY(rl2_cfg_string(cfg, group, "mode", &text));
    if (text != NULL && (st = rl2_mode_parse(text, out, &e)) != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(group, "mode"), st, "%s",
                            e.msg);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_algo(const rl2_cfg_t *cfg, const config_setting_t *group,
             rl2_algo_t *out)
{
    const char *text;
    char list[160] = "";

    RL2_TRY(rl2_cfg_string(cfg, group, "algorithm", &text));
    if (text == NULL) {
        return RL2_OK;
    }
    *out = rl2_algo_from_name(text);
    if (*out != RL2_ALGO_COUNT) {
        return RL2_OK;
    }
    for (int a = 0; a < RL2_ALGO_COUNT; a++) {
        rl2_cfg_append(list, sizeof(list), rl2_algo_name((rl2_algo_t)a));
    }
    return rl2_cfg_fail(cfg, rl2_cfg_at(group, "algorithm"),
                        RL2_ERR_CONFIG, "unknown algorithm \"%s\"; "
                        "expected one of: %s", text, list);
}

static rl2_status_t
rl2_cfg_key(const rl2_cfg_t *cfg, const config_setting_t *group,
            rl2_cfg_key_t *out)
{
    const char *text;
    rl2_err_t e;
    rl2_status_t st;

    RL2_TRY(rl2_cfg_string(cfg, group, "key", &text));
    if (text != NULL) {
        st = rl2_key_parse(cfg->policy, text, &out->kind, &out->header, &e);
        if (st != RL2_OK) {
            return rl2_cfg_fail(cfg, rl2_cfg_at(group, "key"), st, "%s",
                                e.msg);
        }
    }
    return RL2_OK;
}

/* Names show in headers, storage keys and logs: short, no separators. */
static rl2_status_t
rl2_cfg_name(const rl2_cfg_t *cfg, const config_setting_t *s,
             const char *what, const char *name)
{
    size_t len = strlen(name);
    int ok = len >= 1 && len <= RL2_NAME_MAX;

    for (const char *c = name; ok && *c != '\0'; c++) {
        ok = isalnum((unsigned char)*c) || strchr("_.-", *c) != NULL;
    }
    if (!ok) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "invalid %s name \"%s\": "
                            "use 1 to %d letters, digits, '_', '.' or '-'",
                            what, name, RL2_NAME_MAX);
    }
    return RL2_OK;
}

/* ---- lists ---- */

/* A list of groups, ( { ... }, ... ), or an empty [ ]: its length. */
static rl2_status_t
rl2_cfg_list(const rl2_cfg_t *cfg, const config_setting_t *s,
             const char *key, unsigned *n)
{
    int type = config_setting_type(s);

    *n = (unsigned)config_setting_length(s);
    if (type == CONFIG_TYPE_LIST || (type == CONFIG_TYPE_ARRAY && *n == 0)) {
        return RL2_OK;
    }
    return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'%s' must be a list of "
                        "groups: ( { ... }, { ... } )", key);
}

static const config_setting_t *
rl2_cfg_item(const config_setting_t *list, size_t i)
{
    if (config_setting_type(list) == CONFIG_TYPE_STRING) {
        return list;
    }
    return config_setting_get_elem(list, (unsigned)i);
}

/* A string or a non-empty list of non-empty strings.  *list is NULL when
 * the key is absent; items are read with rl2_cfg_item(). */
static rl2_status_t
rl2_cfg_strlist(const rl2_cfg_t *cfg, const config_setting_t *group,
                const char *key, const config_setting_t **list, size_t *n)
{
    const config_setting_t *s = rl2_cfg_at(group, key);
    int type;

    *list = NULL;
    *n = 0;
    if (s == NULL) {
        return RL2_OK;
    }
    type = config_setting_type(s);
    if (type != CONFIG_TYPE_STRING && type != CONFIG_TYPE_ARRAY
        && type != CONFIG_TYPE_LIST) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'%s' must be a string "
                            "or a list of strings", key);
    }
    *n = type == CONFIG_TYPE_STRING ? 1 : (size_t)config_setting_length(s);
    if (*n == 0) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'%s' must not be empty", key);
    }
    for (size_t i = 0; i < *n; i++) {
        const config_setting_t *item = rl2_cfg_item(s, i);

        if (config_setting_type(item) != CONFIG_TYPE_STRING) {
            return rl2_cfg_fail(cfg, item, RL2_ERR_CONFIG, "'%s' must be a "
                                "string or a list of strings", key);
        }
        if (config_setting_get_string(item)[0] == '\0') {
            return rl2_cfg_fail(cfg, item, RL2_ERR_CONFIG,
                                "'%s' holds an empty string", key);
        }
    }
    *list = s;
    return RL2_OK;
}

/* Copy a string list into the arena, each item passing check (if any),
 * lower-cased when asked (host names). */
static rl2_status_t
rl2_cfg_strings(const rl2_cfg_t *cfg, const config_setting_t *group,
                const char *key, rl2_status_t (*check)(const char *,
                                                       rl2_err_t *),
                int lower, const char ***out, size_t *n)
{
    const config_setting_t *list;
    const char **v;
    rl2_err_t e;
    rl2_status_t st;

    RL2_TRY(rl2_cfg_strlist(cfg, group, key, &list, n));
    if (list == NULL) {
        return RL2_OK;
    }
    v = rl2_policy_alloc(cfg->policy, *n * sizeof(*v));
    if (v == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (size_t i = 0; i < *n; i++) {
        const config_setting_t *item = rl2_cfg_item(list, i);
        const char *text = config_setting_get_string(item);
        char *copy;

        if (check != NULL && (st = check(text, &e)) != RL2_OK) {
            return rl2_cfg_fail(cfg, item, st, "%s", e.msg);
        }
        if ((copy = rl2_policy_strdup(cfg->policy, text)) == NULL) {
            return rl2_cfg_nomem(cfg);
        }
        for (char *c = copy; lower && *c != '\0'; c++) {
            *c = (char)tolower((unsigned char)*c);
        }
        v[i] = copy;
    }
    *out = v;
    return RL2_OK;
}

/* A list of addresses or CIDR ranges. */
static rl2_status_t
rl2_cfg_nets(const rl2_cfg_t *cfg, const config_setting_t *group,
             const char *key, rl2_cidr_t **out, size_t *n)
{
    const config_setting_t *list;
    rl2_err_t e;
    rl2_status_t st;

    RL2_TRY(rl2_cfg_strlist(cfg, group, key, &list, n));
    if (list == NULL) {
        return RL2_OK;
    }
    *out = rl2_policy_alloc(cfg->policy, *n * sizeof(**out));
    if (*out == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (size_t i = 0; i < *n; i++) {
        const config_setting_t *item = rl2_cfg_item(list, i);

        st = rl2_cidr_parse(config_setting_get_string(item), &(*out)[i], &e);
        if (st != RL2_OK) {
            return rl2_cfg_fail(cfg, item, st, "%s", e.msg);
        }
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_methods(const rl2_cfg_t *cfg, const config_setting_t *group,
                unsigned *bits)
{
    const config_setting_t *list;
    size_t n;

    RL2_TRY(rl2_cfg_strlist(cfg, group, "methods", &list, &n));
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *item = rl2_cfg_item(list, i);
        unsigned bit = rl2_method_bit(config_setting_get_string(item));

        if (bit == 0) {
            return rl2_cfg_fail(cfg, item, RL2_ERR_CONFIG, "unknown method "
                                "\"%s\"; expected one of: GET, HEAD, POST, "
                                "PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE",
                                config_setting_get_string(item));
        }
        *bits |= bit;
    }
    return RL2_OK;
}

/* An optional group, checked against its keys; *out NULL when absent. */
static rl2_status_t
rl2_cfg_group(const rl2_cfg_t *cfg, const config_setting_t *parent,
              const char *key, const char *const *allowed,
              const config_setting_t **out)
{
    const config_setting_t *s = rl2_cfg_at(parent, key);

    *out = NULL;
    if (s == NULL) {
        return RL2_OK;
    }
    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'%s' must be a group "
                            "{ ... }", key);
    }
    RL2_TRY(rl2_cfg_keys(cfg, s, key, allowed));
    *out = s;
    return RL2_OK;
}

/* ---- limits ---- */

/* rate, or limit for concurrency; a quota's rate names its period. */
static rl2_status_t
rl2_cfg_limit_rate(const rl2_cfg_t *cfg, const config_setting_t *g,
                   rl2_algo_params_t *a)
{
    const config_setting_t *rs = rl2_cfg_at(g, "rate");
    const char *rate;
    rl2_err_t e;
    rl2_status_t st;

    if (a->algo == RL2_ALGO_CONCURRENCY) {
        if (rs != NULL) {
            return rl2_cfg_fail(cfg, rs, RL2_ERR_CONFIG, "a concurrency "
                                "limit takes 'limit' (requests in flight), "
                                "not 'rate'");
        }
        if (rl2_cfg_at(g, "limit") == NULL) {
            return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "a concurrency limit "
                                "needs 'limit' (requests in flight)");
        }
        return rl2_cfg_int(cfg, g, "limit", &a->limit);
    }
    if (rl2_cfg_at(g, "limit") != NULL) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "limit"), RL2_ERR_CONFIG,
                            "'limit' is only for algorithm concurrency; "
                            "use 'rate' (e.g. \"100/hour\")");
    }
    RL2_TRY(rl2_cfg_string(cfg, g, "rate", &rate));
    if (rate == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "limit without 'rate' "
                            "(e.g. rate = \"100/hour\")");
    }
    st = rl2_rate_parse(rate, &a->limit, &a->window_us, &a->period, &e);
    if (st != RL2_OK) {
        return rl2_cfg_fail(cfg, rs, st, "%s", e.msg);
    }
    if (a->algo == RL2_ALGO_QUOTA && a->period == RL2_PERIOD_NONE) {
        return rl2_cfg_fail(cfg, rs, RL2_ERR_CONFIG, "algorithm quota needs "
                            "a rate per day or per month (e.g. \"20/day\", "
                            "\"1000/month\"), not \"%s\"", rate);
    }
    if (a->algo != RL2_ALGO_QUOTA && a->period == RL2_PERIOD_MONTH) {
        return rl2_cfg_fail(cfg, rs, RL2_ERR_CONFIG, "a rate per month "
                            "needs algorithm = \"quota\"");
    }
    if (a->algo != RL2_ALGO_QUOTA) {
        a->period = RL2_PERIOD_NONE;   /* "/day" is a plain 24h window */
    }
    return RL2_OK;
}

/* burst, cost, key and overflow. */
static rl2_status_t
rl2_cfg_limit_opts(const rl2_cfg_t *cfg, const config_setting_t *g,
                   rl2_limit_t *lim)
{
    const config_setting_t *bs = rl2_cfg_at(g, "burst");
    const config_setting_t *os = rl2_cfg_at(g, "overflow");
    rl2_algo_t algo = lim->algo.algo;
    rl2_cfg_key_t key = { lim->key, lim->key_header };
    const char *text;
    rl2_period_t period;
    rl2_err_t e;
    rl2_status_t st;

    if (bs != NULL && algo != RL2_ALGO_TOKEN_BUCKET
        && algo != RL2_ALGO_LEAKY_BUCKET) {
        return rl2_cfg_fail(cfg, bs, RL2_ERR_CONFIG, "'burst' is only for "
                            "token_bucket and leaky_bucket; with %s add a "
                            "second, shorter limit", rl2_algo_name(algo));
    }
    RL2_TRY(rl2_cfg_int(cfg, g, "burst", &lim->algo.burst));
    if (bs != NULL && lim->algo.burst < 1) {
        return rl2_cfg_fail(cfg, bs, RL2_ERR_CONFIG, "'burst' must be at "
                            "least 1 (leave it out for a burst equal to the "
                            "limit)");
    }
    RL2_TRY(rl2_cfg_int(cfg, g, "cost", &lim->cost));
    if (lim->cost < 1) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "cost"), RL2_ERR_CONFIG,
                            "'cost' must be at least 1");
    }
    RL2_TRY(rl2_cfg_key(cfg, g, &key));
    lim->key = key.kind;
    lim->key_header = key.header;
    RL2_TRY(rl2_cfg_string(cfg, g, "overflow", &text));
    if (text == NULL) {
        return RL2_OK;
    }
    if (algo == RL2_ALGO_CONCURRENCY) {
        return rl2_cfg_fail(cfg, os, RL2_ERR_CONFIG, "'overflow' is not "
                            "allowed with concurrency");
    }
    st = rl2_rate_parse(text, &lim->overflow.limit, &lim->overflow.window_us,
                        &period, &e);
    if (st != RL2_OK) {
        return rl2_cfg_fail(cfg, os, st, "'overflow': %s", e.msg);
    }
    if (period == RL2_PERIOD_MONTH) {
        return rl2_cfg_fail(cfg, os, RL2_ERR_CONFIG, "'overflow' needs a "
                            "window in time units (e.g. \"2/5min\"), not "
                            "a month");
    }
    return RL2_OK;     /* rl2_limit_finish() picks its algorithm */
}

/* One limit group; idx is its place in the set, for its default name. */
static rl2_status_t
rl2_cfg_limit(rl2_cfg_t *cfg, const config_setting_t *g,
              const rl2_cfg_set_t *sc, size_t idx, rl2_limit_t *lim)
{
    const char *name;
    char buf[RL2_NAME_MAX + 24];
    rl2_err_t e;
    rl2_status_t st;

    RL2_TRY(rl2_cfg_keys(cfg, g, "limit", rl2_limit_keys));
    RL2_TRY(rl2_cfg_string(cfg, g, "name", &name));
    if (name != NULL) {
        RL2_TRY(rl2_cfg_name(cfg, rl2_cfg_at(g, "name"), "limit", name));
    }
    else if (idx > 0) {
        snprintf(buf, sizeof(buf), "%s.%zu", sc->rule, idx + 1);
        name = buf;
    }
    else {
        name = sc->rule;
    }
    lim->name = rl2_policy_strdup(cfg->policy, name);
    lim->file = rl2_cfg_source(cfg, g);
    if (lim->name == NULL || lim->file == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    lim->line = (int)config_setting_source_line(g);
    lim->algo.algo = cfg->algo;
    lim->key = sc->key.kind;
    lim->key_header = sc->key.header;
    lim->cost = 1;
    RL2_TRY(rl2_cfg_algo(cfg, g, &lim->algo.algo));
    RL2_TRY(rl2_cfg_limit_rate(cfg, g, &lim->algo));
    RL2_TRY(rl2_cfg_limit_opts(cfg, g, lim));
    st = rl2_limit_finish(cfg->policy, lim, sc->in_tier, &e);
    if (st != RL2_OK) {
        return rl2_cfg_fail(cfg, g, st, "%s", e.msg);
    }
    return RL2_OK;
}

/* "unlimited": counted, never denied. */
static rl2_status_t
rl2_cfg_unlimited(rl2_cfg_t *cfg, const config_setting_t *s,
                  const rl2_cfg_set_t *sc, rl2_limit_set_t *set)
{
    rl2_err_t e;
    rl2_status_t st;

    st = rl2_limit_set_unlimited(cfg->policy, set, sc->rule, sc->key.kind,
                                 &e);
    if (st != RL2_OK) {
        return rl2_cfg_fail(cfg, s, st, "%s", e.msg);
    }
    /* rl2_limit_set_unlimited knows neither the header of a header key
     * nor where the set was written. */
    set->limits[0].key_header = sc->key.header;
    set->limits[0].line = (int)config_setting_source_line(s);
    set->limits[0].file = rl2_cfg_source(cfg, s);
    return set->limits[0].file ? RL2_OK : rl2_cfg_nomem(cfg);
}

/* A limit set: a list of limit groups, or "unlimited". */
static rl2_status_t
rl2_cfg_set(rl2_cfg_t *cfg, const config_setting_t *s,
            const rl2_cfg_set_t *sc, rl2_limit_set_t *set)
{
    const char *key = config_setting_name(s);
    unsigned n;

    if (config_setting_type(s) == CONFIG_TYPE_STRING
        && strcmp(config_setting_get_string(s), "unlimited") == 0) {
        return rl2_cfg_unlimited(cfg, s, sc, set);
    }
    if (config_setting_type(s) == CONFIG_TYPE_STRING
        || config_setting_type(s) == CONFIG_TYPE_GROUP) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'%s' must be a list "
                            "of limits ( { rate = ...; }, ... ) or "
                            "\"unlimited\"", key);
    }
    RL2_TRY(rl2_cfg_list(cfg, s, key, &n));
    if (n > RL2_MAX_LAYERS) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "too many limits in "
                            "'%s' (%u); at most %d", key, n, RL2_MAX_LAYERS);
    }
    set->defined = 1;
    if (n == 0) {
        return RL2_OK;
    }
    set->limits = rl2_policy_alloc(cfg->policy, n * sizeof(rl2_limit_t));
    if (set->limits == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(s, i);

        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "each limit in '%s' "
                                "must be a group { rate = ...; }", key);
        }
        RL2_TRY(rl2_cfg_limit(cfg, g, sc, i, &set->limits[i]));
        /* Names tell layers apart in headers and storage keys. */
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(set->limits[j].name, set->limits[i].name) == 0) {
                return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "duplicate "
                                    "limit name '%s' in '%s'",
                                    set->limits[i].name, key);
            }
        }
        set->n = i + 1;
    }
    return RL2_OK;
}

/* ---- rules ---- */

static int
rl2_cfg_tier_find(const rl2_policy_t *p, const char *name)
{
    for (size_t i = 0; i < p->n_tiers; i++) {
        if (strcmp(p->tiers[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* tiers = { free = (...); pro = "unlimited"; } */
static rl2_status_t
rl2_cfg_rule_tiers(rl2_cfg_t *cfg, const config_setting_t *s,
                   const rl2_cfg_set_t *sc, rl2_rule_t *rule)
{
    const rl2_policy_t *p = cfg->policy;
    unsigned n = (unsigned)config_setting_length(s);
    char list[160];

    if (p->n_tiers == 0) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'tiers' in rule '%s' "
                            "but no tiers are declared (tiers = [ ... ] at "
                            "the top level)", rule->name);
    }
    if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'tiers' must be a "
                            "group { free = ( ... ); pro = \"unlimited\"; }");
    }
    rule->tiers = rl2_policy_alloc(cfg->policy,
                                   p->n_tiers * sizeof(*rule->tiers));
    if (rule->tiers == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(s, i);
        int t = rl2_cfg_tier_find(p, config_setting_name(m));

        if (t < 0) {
            rl2_cfg_tier_list(p, list, sizeof(list));
            return rl2_cfg_fail(cfg, m, RL2_ERR_CONFIG, "unknown tier '%s' "
                                "in rule '%s'; declared tiers: %s",
                                config_setting_name(m), rule->name, list);
        }
        RL2_TRY(rl2_cfg_set(cfg, m, sc, &rule->tiers[t]));
    }
    return RL2_OK;
}

/* What a rule and the default rule share: mode, flags, key, limits. */
static rl2_status_t
rl2_cfg_rule_body(rl2_cfg_t *cfg, const config_setting_t *g,
                  rl2_rule_t *rule, rl2_cfg_key_t *key)
{
    const config_setting_t *limits = rl2_cfg_at(g, "limits");
    const config_setting_t *tiers = rl2_cfg_at(g, "tiers");
    /* With per-tier sets, even the common set depends on the client's
     * tier, which is known only after authentication. */
    rl2_cfg_set_t sc = { rule->name, { RL2_KEY_IP, NULL }, tiers != NULL };

    RL2_TRY(rl2_cfg_mode(cfg, g, &rule->mode));
    RL2_TRY(rl2_cfg_bool(cfg, g, "continue", &rule->is_continue));
    if (rule->is_continue && cfg->policy->match_all) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "continue"), RL2_ERR_CONFIG,
                            "'continue' means nothing with match = \"all\" "
                            "(every matching rule applies already)");
    }
    RL2_TRY(rl2_cfg_bool(cfg, g, "exempt", &rule->exempt));
    RL2_TRY(rl2_cfg_key(cfg, g, &sc.key));
    *key = sc.key;
    if (rule->exempt && (limits != NULL || tiers != NULL)) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "exempt"), RL2_ERR_CONFIG,
                            "an exempt rule takes no 'limits' or 'tiers'");
    }
    if (!rule->exempt && limits == NULL && tiers == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "rule '%s' has no "
                            "'limits', 'tiers' or 'exempt'", rule->name);
    }
    if (limits != NULL) {
        RL2_TRY(rl2_cfg_set(cfg, limits, &sc, &rule->limits));
    }
    sc.in_tier = 1;
    if (tiers != NULL) {
        RL2_TRY(rl2_cfg_rule_tiers(cfg, tiers, &sc, rule));
    }
    return RL2_OK;
}

/* Requests are matched on the host name without its port. */
static rl2_status_t
rl2_cfg_host_check(const char *host, rl2_err_t *err)
{
    if (strpbrk(host, ":/[]") != NULL) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "invalid host \"%s\": "
                           "write a host name or glob, without port or "
                           "path", host);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_rule(rl2_cfg_t *cfg, const config_setting_t *g, rl2_rule_t *rule,
             rl2_cfg_key_t *key)
{
    const char *name;

    RL2_TRY(rl2_cfg_keys(cfg, g, "rule", rl2_rule_keys));
    RL2_TRY(rl2_cfg_string(cfg, g, "name", &name));
    if (name == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "rule without 'name'");
    }
    RL2_TRY(rl2_cfg_name(cfg, rl2_cfg_at(g, "name"), "rule", name));
    if (strcmp(name, "default") == 0) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "name"), RL2_ERR_CONFIG,
                            "rule name 'default' is reserved; write the "
                            "default rule as default = { ... }");
    }
    rule->name = rl2_policy_strdup(cfg->policy, name);
    rule->file = rl2_cfg_source(cfg, g);
    if (rule->name == NULL || rule->file == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    rule->line = (int)config_setting_source_line(g);
    RL2_TRY(rl2_cfg_methods(cfg, g, &rule->methods));
    RL2_TRY(rl2_cfg_strings(cfg, g, "paths", rl2_glob_check, 0,
                            &rule->paths, &rule->n_paths));
    RL2_TRY(rl2_cfg_strings(cfg, g, "hosts", rl2_cfg_host_check, 1,
                            &rule->hosts,
                            &rule->n_hosts));
    return rl2_cfg_rule_body(cfg, g, rule, key);
}

static rl2_status_t
rl2_cfg_rules(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t *p = cfg->policy;
    const config_setting_t *s = rl2_cfg_at(root, "rules");
    unsigned n = 0;

    if (s != NULL) {
        RL2_TRY(rl2_cfg_list(cfg, s, "rules", &n));
    }
    /* One more key slot for the default rule. */
    cfg->rule_keys = rl2_policy_alloc(p, (n + 1) * sizeof(rl2_cfg_key_t));
    p->rules = rl2_policy_alloc(p, n * sizeof(rl2_rule_t));
    if (cfg->rule_keys == NULL || p->rules == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(s, i);

        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "each entry of "
                                "'rules' must be a group { name = ...; }");
        }
        RL2_TRY(rl2_cfg_rule(cfg, g, &p->rules[i], &cfg->rule_keys[i]));
        for (unsigned j = 0; j < i; j++) {
            if (strcmp(p->rules[j].name, p->rules[i].name) == 0) {
                return rl2_cfg_fail(cfg, rl2_cfg_at(g, "name"),
                                    RL2_ERR_CONFIG, "duplicate rule name "
                                    "'%s' (first at %s:%d)",
                                    p->rules[i].name, p->rules[j].file,
                                    p->rules[j].line);
            }
        }
        p->n_rules = i + 1;
    }
    return RL2_OK;
}

/* default = { ... }: the rule named "default", with no match keys. */
static rl2_status_t
rl2_cfg_default_rule(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t *p = cfg->policy;
    const config_setting_t *g;
    rl2_rule_t *rule;

    RL2_TRY(rl2_cfg_group(cfg, root, "default", rl2_default_keys, &g));
    if (g == NULL) {
        return RL2_OK;
    }
    rule = rl2_policy_alloc(p, sizeof(*rule));
    if (rule == NULL || (rule->file = rl2_cfg_source(cfg, g)) == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    rule->name = "default";
    rule->line = (int)config_setting_source_line(g);
    RL2_TRY(rl2_cfg_rule_body(cfg, g, rule, &cfg->rule_keys[p->n_rules]));
    p->default_rule = rule;
    return RL2_OK;
}

/* ---- tiers ---- */

/* A tier name is also a key in a rule's tiers = { name = ...; }, so it
 * must be a libconfig setting name. */
static rl2_status_t
rl2_cfg_tier(rl2_cfg_t *cfg, const config_setting_t *s, rl2_tier_t *t)
{
    const config_setting_t *at = s;
    const char *name = NULL;
    int ok;

    if (config_setting_type(s) == CONFIG_TYPE_STRING) {
        name = config_setting_get_string(s);
    }
    else if (config_setting_type(s) == CONFIG_TYPE_GROUP) {
        RL2_TRY(rl2_cfg_keys(cfg, s, "tier", rl2_tier_keys));
        RL2_TRY(rl2_cfg_copy(cfg, s, "upgrade_url", &t->upgrade_url));
        RL2_TRY(rl2_cfg_string(cfg, s, "name", &name));
        if (name == NULL) {
            return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "tier without "
                                "'name'");
        }
        at = rl2_cfg_at(s, "name");
    }
    else {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "each tier must be a "
                            "name or a group { name = ...; }");
    }
    ok = isalpha((unsigned char)name[0]) && strlen(name) <= RL2_NAME_MAX;
    for (const char *c = name; ok && *c != '\0'; c++) {
        ok = isalnum((unsigned char)*c) || *c == '_' || *c == '-';
    }
    if (!ok) {
        return rl2_cfg_fail(cfg, at, RL2_ERR_CONFIG, "invalid tier name "
                            "\"%s\": use a letter, then up to %d letters, "
                            "digits, '_' or '-'", name, RL2_NAME_MAX - 1);
    }
    t->name = rl2_policy_strdup(cfg->policy, name);
    return t->name ? RL2_OK : rl2_cfg_nomem(cfg);
}

static rl2_status_t
rl2_cfg_default_tier(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t *p = cfg->policy;
    const char *name;
    char list[160];

    p->default_tier = p->n_tiers > 0 ? 0 : -1;
    RL2_TRY(rl2_cfg_string(cfg, root, "default_tier", &name));
    if (name == NULL) {
        return RL2_OK;
    }
    p->default_tier = rl2_cfg_tier_find(p, name);
    if (p->default_tier < 0) {
        rl2_cfg_tier_list(p, list, sizeof(list));
        return rl2_cfg_fail(cfg, rl2_cfg_at(root, "default_tier"),
                            RL2_ERR_CONFIG, "default_tier \"%s\" is not a "
                            "declared tier; declared tiers: %s", name, list);
    }
    return RL2_OK;
}

/* tiers = ( { name = ...; upgrade_url = ...; }, ... ) or [ "free", ... ] */
static rl2_status_t
rl2_cfg_tiers(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t *p = cfg->policy;
    const config_setting_t *s = rl2_cfg_at(root, "tiers");
    unsigned n;

    if (s == NULL) {
        return rl2_cfg_default_tier(cfg, root);
    }
    n = (unsigned)config_setting_length(s);
    if ((config_setting_type(s) != CONFIG_TYPE_LIST
         && config_setting_type(s) != CONFIG_TYPE_ARRAY) || n == 0) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'tiers' must be a "
                            "non-empty list: [ \"free\", \"pro\" ] or "
                            "( { name = \"free\"; }, ... )");
    }
    p->tiers = rl2_policy_alloc(p, n * sizeof(*p->tiers));
    if (p->tiers == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *t = config_setting_get_elem(s, i);

        RL2_TRY(rl2_cfg_tier(cfg, t, &p->tiers[i]));
        /* A tier named by a header or variable is found without case. */
        for (unsigned j = 0; j < i; j++) {
            if (strcasecmp(p->tiers[j].name, p->tiers[i].name) == 0) {
                return rl2_cfg_fail(cfg, t, RL2_ERR_CONFIG, "duplicate "
                                    "tier name '%s'", p->tiers[i].name);
            }
        }
        p->n_tiers = i + 1;
    }
    return rl2_cfg_default_tier(cfg, root);
}

/* ---- clients ---- */

/* rules = { ai_generation = ( ... ); default = "unlimited"; } */
static rl2_status_t
rl2_cfg_client_rules(rl2_cfg_t *cfg, const config_setting_t *s,
                     rl2_client_t *c)
{
    rl2_policy_t *p = cfg->policy;
    unsigned n = (unsigned)config_setting_length(s);
    rl2_cfg_set_t sc;

    c->rules = rl2_policy_alloc(p, (n ? n : 1) * sizeof(*c->rules));
    if (c->rules == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(s, i);
        const char *name = config_setting_name(m);
        rl2_rule_override_t *o = &c->rules[i];
        rl2_rule_t *rule = NULL;

        for (o->rule = 0; o->rule < p->n_rules; o->rule++) {
            if (strcmp(p->rules[o->rule].name, name) == 0) {
                rule = &p->rules[o->rule];
                break;
            }
        }
        if (rule == NULL && strcmp(name, "default") == 0) {
            rule = p->default_rule;
        }
        if (rule == NULL) {
            return rl2_cfg_fail(cfg, m, RL2_ERR_CONFIG, "client override "
                                "names unknown rule '%s'", name);
        }
        sc.rule = rule->name;
        sc.key = cfg->rule_keys[o->rule];
        sc.in_tier = c->by != RL2_KEY_IP;
        RL2_TRY(rl2_cfg_set(cfg, m, &sc, &o->set));
        c->n_rules = i + 1;
    }
    return RL2_OK;
}

/* Exactly one identity: user, api_key or address. */
static rl2_status_t
rl2_cfg_client_id(rl2_cfg_t *cfg, const config_setting_t *g,
                  rl2_client_t *c)
{
    const char *address;
    rl2_err_t e;
    rl2_status_t st;
    int ids = (rl2_cfg_at(g, "user") != NULL)
              + (rl2_cfg_at(g, "api_key") != NULL)
              + (rl2_cfg_at(g, "address") != NULL);

    if (ids != 1) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "a client needs exactly "
                            "one of 'user', 'api_key' or 'address'");
    }
    c->by = rl2_cfg_at(g, "user") ? RL2_KEY_USER
            : rl2_cfg_at(g, "api_key") ? RL2_KEY_APIKEY : RL2_KEY_IP;
    RL2_TRY(rl2_cfg_copy(cfg, g, "user", &c->id));
    if (c->id == NULL) {
        RL2_TRY(rl2_cfg_copy(cfg, g, "api_key", &c->id));
    }
    RL2_TRY(rl2_cfg_string(cfg, g, "address", &address));
    if (address != NULL
        && (st = rl2_cidr_parse(address, &c->net, &e)) != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "address"), st, "%s", e.msg);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_client(rl2_cfg_t *cfg, const config_setting_t *g, rl2_client_t *c)
{
    const rl2_policy_t *p = cfg->policy;
    const config_setting_t *rules = rl2_cfg_at(g, "rules");
    const char *tier;
    char list[160];

    RL2_TRY(rl2_cfg_keys(cfg, g, "client", rl2_client_keys));
    RL2_TRY(rl2_cfg_client_id(cfg, g, c));
    c->file = rl2_cfg_source(cfg, g);
    if (c->file == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    c->line = (int)config_setting_source_line(g);
    c->tier = -1;
    RL2_TRY(rl2_cfg_string(cfg, g, "tier", &tier));
    if (tier != NULL && (c->tier = rl2_cfg_tier_find(p, tier)) < 0) {
        rl2_cfg_tier_list(p, list, sizeof(list));
        return rl2_cfg_fail(cfg, rl2_cfg_at(g, "tier"), RL2_ERR_CONFIG,
                            "unknown tier '%s' for client; declared tiers: "
                            "%s", tier, list);
    }
    if (tier == NULL && rules == NULL) {
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "a client override "
                            "needs 'tier' or 'rules'");
    }
    if (rules == NULL) {
        return RL2_OK;
    }
    if (config_setting_type(rules) != CONFIG_TYPE_GROUP) {
        return rl2_cfg_fail(cfg, rules, RL2_ERR_CONFIG, "'rules' of a client "
                            "must be a group { rule_name = ( ... ); }");
    }
    return rl2_cfg_client_rules(cfg, rules, c);
}

/* A rule a user or API key overrides has a set that depends on identity,
 * known only after authentication: all its limits are decided late. */
static void
rl2_cfg_make_late(rl2_policy_t *p, size_t r)
{
    rl2_rule_t *rule = r < p->n_rules ? &p->rules[r] : p->default_rule;

    for (size_t i = 0; i < rule->limits.n; i++) {
        rule->limits.limits[i].phase = RL2_PHASE_LATE;
    }
    for (size_t t = 0; rule->tiers != NULL && t < p->n_tiers; t++) {
        for (size_t i = 0; i < rule->tiers[t].n; i++) {
            rule->tiers[t].limits[i].phase = RL2_PHASE_LATE;
        }
    }
}

/* Only the first client that matches is used: a second entry for the
 * same identity would be ignored, so it is an error.  (Overlapping
 * address ranges are fine: the more specific one is written first.) */
static rl2_status_t
rl2_cfg_client_dup(const rl2_cfg_t *cfg, const config_setting_t *g,
                   const rl2_client_t *c)
{
    const rl2_policy_t *p = cfg->policy;

    for (const rl2_client_t *o = p->clients; o < c; o++) {
        if (o->by != c->by || (c->by == RL2_KEY_IP
                               ? memcmp(&o->net, &c->net, sizeof(c->net))
                               : strcmp(o->id, c->id)) != 0) {
            continue;
        }
        /* API keys are secrets: not repeated in a message. */
        return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "duplicate client: "
                            "the same %s as at %s:%d",
                            c->by == RL2_KEY_USER ? "user"
                            : c->by == RL2_KEY_APIKEY ? "api_key" : "address",
                            o->file, o->line);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_clients(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t *p = cfg->policy;
    const config_setting_t *s = rl2_cfg_at(root, "clients");
    unsigned n;

    if (s == NULL) {
        return RL2_OK;
    }
    RL2_TRY(rl2_cfg_list(cfg, s, "clients", &n));
    p->clients = rl2_policy_alloc(p, (n ? n : 1) * sizeof(*p->clients));
    if (p->clients == NULL) {
        return rl2_cfg_nomem(cfg);
    }
    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *g = config_setting_get_elem(s, i);
        rl2_client_t *c = &p->clients[i];

        if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
            return rl2_cfg_fail(cfg, g, RL2_ERR_CONFIG, "each entry of "
                                "'clients' must be a group { user = ...; }");
        }
        RL2_TRY(rl2_cfg_client(cfg, g, c));
        RL2_TRY(rl2_cfg_client_dup(cfg, g, c));
        for (size_t r = 0; c->by != RL2_KEY_IP && r < c->n_rules; r++) {
            rl2_cfg_make_late(p, c->rules[r].rule);
        }
        p->n_clients = i + 1;
    }
    return RL2_OK;
}

/* ---- top level ---- */

static rl2_status_t
rl2_cfg_scalars(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t *p = cfg->policy;
    const char *secret;
    int64_t prefix = p->ipv6_prefix;

    RL2_TRY(rl2_cfg_mode(cfg, root, &p->mode));
    RL2_TRY(rl2_cfg_choice(cfg, root, "match", rl2_match_values,
                           &p->match_all));
    RL2_TRY(rl2_cfg_algo(cfg, root, &cfg->algo));
    RL2_TRY(rl2_cfg_string(cfg, root, "hash_secret", &secret));
    if (secret != NULL) {
        rl2_hash_key_from_secret(secret, &p->hash_key);
    }
    RL2_TRY(rl2_cfg_int(cfg, root, "ipv6_prefix", &prefix));
    if (prefix < 1 || prefix > 128) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(root, "ipv6_prefix"),
                            RL2_ERR_CONFIG, "'ipv6_prefix' must be between "
                            "1 and 128");
    }
    p->ipv6_prefix = (unsigned)prefix;
    return rl2_cfg_nets(cfg, root, "trusted_proxies", &p->trusted,
                        &p->n_trusted);
}

/* api_key, tier_from, headers, whitelist. */
static rl2_status_t
rl2_cfg_groups(rl2_cfg_t *cfg, const config_setting_t *root)
{
    rl2_policy_t *p = cfg->policy;
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
    }
    RL2_TRY(rl2_cfg_group(cfg, root, "headers", rl2_headers_keys, &g));
    if (g != NULL) {
        RL2_TRY(rl2_cfg_choice(cfg, g, "reset", rl2_reset_values,
                               &p->reset_delta));
        RL2_TRY(rl2_cfg_bool(cfg, g, "scope", &p->header_scope));
        RL2_TRY(rl2_cfg_bool(cfg, g, "algorithm", &p->header_algorithm));
    }
    RL2_TRY(rl2_cfg_group(cfg, root, "whitelist", rl2_whitelist_keys, &g));
    if (g != NULL) {
        RL2_TRY(rl2_cfg_nets(cfg, g, "addresses", &p->wl_nets,
                             &p->n_wl_nets));
        RL2_TRY(rl2_cfg_strings(cfg, g, "users", NULL, 0, &p->wl_users,
                                &p->n_wl_users));
        RL2_TRY(rl2_cfg_strings(cfg, g, "api_keys", NULL, 0, &p->wl_keys,
                                &p->n_wl_keys));
        RL2_TRY(rl2_cfg_bool(cfg, g, "internal", &p->wl_internal));
    }
    return RL2_OK;
}

static rl2_status_t
rl2_cfg_root(rl2_cfg_t *cfg, const config_setting_t *root)
{
    RL2_TRY(rl2_cfg_keys(cfg, root, "the policy", rl2_top_keys));
    RL2_TRY(rl2_cfg_scalars(cfg, root));
    RL2_TRY(rl2_cfg_groups(cfg, root));
    RL2_TRY(rl2_cfg_tiers(cfg, root));
    RL2_TRY(rl2_cfg_rules(cfg, root));
    RL2_TRY(rl2_cfg_default_rule(cfg, root));
    return rl2_cfg_clients(cfg, root);
}

/* ---- reading ---- */

/* A whole file as a NUL-terminated string, to be freed by the caller. */
static rl2_status_t
rl2_cfg_slurp(const char *path, char **out, rl2_err_t *err)
{
    FILE *fp = fopen(path, "r");
    struct stat st;
    size_t got;

    *out = NULL;
    if (fp == NULL) {
        return rl2_err_set(err, RL2_ERR_SYS, "%s: cannot open: %s", path,
                           strerror(errno));
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return rl2_err_set(err, RL2_ERR_CONFIG, "%s: not a regular file",
                           path);
    }
    if (st.st_size > RL2_CFG_MAX_BYTES) {
        fclose(fp);
        return rl2_err_set(err, RL2_ERR_CONFIG, "%s: larger than %ld "
                           "bytes", path, RL2_CFG_MAX_BYTES);
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
    char path[1024], *text;
    struct stat sb;
    rl2_err_t scratch;
    rl2_status_t st;

    rl2_cfg_file(cfg, name, path, sizeof(path));
    if (stat(path, &sb) != 0) {
        return RL2_OK;
    }
    if (!S_ISREG(sb.st_mode)) {
        return rl2_err_set(cfg->err, RL2_ERR_CONFIG, "%s:%d: @include "
                           "\"%s\": %s is not a regular file", src, line,
                           name, path);
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
    int line = 1;

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
    rl2_cfg_t cfg = { .name = name, .dir = dir, .err = err,
                      .algo = RL2_ALGO_FIXED_WINDOW };
    config_t c;
    char file[512];
    rl2_status_t st;

    *out = NULL;
    RL2_TRY(rl2_cfg_includes(&cfg, text, name, 0));
    config_init(&c);
    if (dir != NULL) {
        config_set_include_dir(&c, dir);
    }
    if (!config_read_string(&c, text)) {
        rl2_cfg_file(&cfg, config_error_file(&c), file, sizeof(file));
        st = rl2_err_set(err, RL2_ERR_CONFIG, "%s:%d: %s", file,
                         config_error_line(&c),
                         config_error_text(&c) ? config_error_text(&c)
                                               : "cannot be read");
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
    char dir[1024];
    const char *slash = strrchr(path, '/');
    char *text;
    rl2_status_t st;

    *out = NULL;
    if (strlen(path) >= sizeof(dir)) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "policy file name longer "
                           "than %zu bytes", sizeof(dir) - 1);
    }
    /* @include is relative to the main file, not to the working
     * directory (which for Apache is "/"). */
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    }
    else {
        snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1
                 : (int)(slash - path), path);
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
