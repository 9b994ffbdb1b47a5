/*
 * config_value.c -- typed access to one member of a libconfig group, for
 * the policy loader (config.c).
 *
 * Owns the checks every kind of group shares: the list of keys a group
 * may hold, strings, integers, booleans, fixed choices, modes,
 * algorithms, key scopes, names, lists of groups, string and address
 * lists, methods and sub-groups.  Each one either yields the value, or
 * fails with "file:line: message" naming the key; an absent key is not
 * an error here, but left for the caller to judge.
 */
#include <ctype.h>
#include <libconfig.h>
#include <stdio.h>
#include <string.h>

#include "load_internal.h"
#include "policy/policy_internal.h"

/* ---- lists in messages ---- */

/* Append s to the list in buf, cutting it short rather than overflowing. */
void
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

/* ---- typed access to one member of a group ---- */

config_setting_t *
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
rl2_status_t
rl2_cfg_keys(const rl2_cfg_t *cfg, const config_setting_t *group,
             const char *what, const char *const *allowed)
{
    unsigned n = (unsigned)config_setting_length(group);
    char     list[200];

    for (unsigned i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(group, i);

        if (!rl2_cfg_in(config_setting_name(m), allowed)) {
            rl2_cfg_join(allowed, list, sizeof(list));
            return rl2_cfg_fail(cfg, m, RL2_ERR_CONFIG,
                                "unknown key '%s' "
                                "in %s; expected one of: %s",
                                config_setting_name(m), what, list);
        }
    }
    return RL2_OK;
}

/* A non-empty string, or *out NULL when the key is absent. */
rl2_status_t
rl2_cfg_string(const rl2_cfg_t *cfg, const config_setting_t *group,
               const char *key, const char **out)
{
    const config_setting_t *s = rl2_cfg_at(group, key);

    *out = NULL;
    if (s == NULL) {
        return RL2_OK;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'%s' must be a string",
                            key);
    }
    *out = config_setting_get_string(s);
    if (**out == '\0') {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'%s' must not be empty",
                            key);
    }
    return RL2_OK;
}

/* The same, copied into the arena. */
rl2_status_t
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
rl2_status_t
rl2_cfg_int(const rl2_cfg_t *cfg, const config_setting_t *group,
            const char *key, int64_t *out)
{
    const config_setting_t *s = rl2_cfg_at(group, key);

    if (s == NULL) {
        return RL2_OK;
    }
    if (config_setting_type(s) != CONFIG_TYPE_INT
        && config_setting_type(s) != CONFIG_TYPE_INT64) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'%s' must be an integer",
                            key);
    }
    *out = config_setting_get_int64(s);
    return RL2_OK;
}

rl2_status_t
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
rl2_status_t
rl2_cfg_choice(const rl2_cfg_t *cfg, const config_setting_t *group,
               const char *key, const char *const *values, int *out)
{
    const char *text;
    char        list[100];

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

rl2_status_t
rl2_cfg_mode(const rl2_cfg_t *cfg, const config_setting_t *group,
             rl2_mode_t *out)
{
    const char  *text;
    rl2_err_t    e;
    rl2_status_t st;

    RL2_TRY(rl2_cfg_string(cfg, group, "mode", &text));
    if (text != NULL && (st = rl2_mode_parse(text, out, &e)) != RL2_OK) {
        return rl2_cfg_fail(cfg, rl2_cfg_at(group, "mode"), st, "%s", e.msg);
    }
    return RL2_OK;
}

rl2_status_t
rl2_cfg_algo(const rl2_cfg_t *cfg, const config_setting_t *group,
             rl2_algo_t *out)
{
    const char *text;
    char        list[160] = "";

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
    return rl2_cfg_fail(cfg, rl2_cfg_at(group, "algorithm"), RL2_ERR_CONFIG,
                        "unknown algorithm \"%s\"; "
                        "expected one of: %s",
                        text, list);
}

rl2_status_t
rl2_cfg_key(const rl2_cfg_t *cfg, const config_setting_t *group,
            rl2_cfg_key_t *out)
{
    const char  *text;
    rl2_err_t    e;
    rl2_status_t st;

    RL2_TRY(rl2_cfg_string(cfg, group, "key", &text));
    if (text != NULL) {
        st = rl2_key_parse(cfg->policy, text, &out->kind, &out->header, &e);
        if (st != RL2_OK) {
            return rl2_cfg_fail(cfg, rl2_cfg_at(group, "key"), st, "%s", e.msg);
        }
    }
    return RL2_OK;
}

/* Names show in headers, storage keys and logs: short, no separators. */
rl2_status_t
rl2_cfg_name(const rl2_cfg_t *cfg, const config_setting_t *s, const char *what,
             const char *name)
{
    size_t len = strlen(name);
    int    ok = len >= 1 && len <= RL2_NAME_MAX;

    for (const char *c = name; ok && *c != '\0'; c++) {
        ok = isalnum((unsigned char)*c) || strchr("_.-", *c) != NULL;
    }
    if (!ok) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "invalid %s name \"%s\": "
                            "use 1 to %d letters, digits, '_', '.' or '-'",
                            what, name, RL2_NAME_MAX);
    }
    return RL2_OK;
}

/* ---- lists ---- */

/* A list of groups, ( { ... }, ... ), or an empty [ ]: its length. */
rl2_status_t
rl2_cfg_list(const rl2_cfg_t *cfg, const config_setting_t *s, const char *key,
             unsigned *n)
{
    int type = config_setting_type(s);

    *n = (unsigned)config_setting_length(s);
    if (type == CONFIG_TYPE_LIST || (type == CONFIG_TYPE_ARRAY && *n == 0)) {
        return RL2_OK;
    }
    return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                        "'%s' must be a list of "
                        "groups: ( { ... }, { ... } )",
                        key);
}

const config_setting_t *
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
    int                     type;

    *list = NULL;
    *n = 0;
    if (s == NULL) {
        return RL2_OK;
    }
    type = config_setting_type(s);
    if (type != CONFIG_TYPE_STRING && type != CONFIG_TYPE_ARRAY
        && type != CONFIG_TYPE_LIST) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'%s' must be a string "
                            "or a list of strings",
                            key);
    }
    *n = type == CONFIG_TYPE_STRING ? 1 : (size_t)config_setting_length(s);
    if (*n == 0) {
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG, "'%s' must not be empty",
                            key);
    }
    for (size_t i = 0; i < *n; i++) {
        const config_setting_t *item = rl2_cfg_item(s, i);

        if (config_setting_type(item) != CONFIG_TYPE_STRING) {
            return rl2_cfg_fail(cfg, item, RL2_ERR_CONFIG,
                                "'%s' must be a "
                                "string or a list of strings",
                                key);
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
rl2_status_t
rl2_cfg_strings(const rl2_cfg_t *cfg, const config_setting_t *group,
                const char *key,
                rl2_status_t (*check)(const char *, rl2_err_t *), int lower,
                const char ***out, size_t *n)
{
    const config_setting_t *list;
    const char            **v;
    rl2_err_t               e;
    rl2_status_t            st;

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
        const char             *text = config_setting_get_string(item);
        char                   *copy;

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
rl2_status_t
rl2_cfg_nets(const rl2_cfg_t *cfg, const config_setting_t *group,
             const char *key, rl2_cidr_t **out, size_t *n)
{
    const config_setting_t *list;
    rl2_err_t               e;
    rl2_status_t            st;

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

rl2_status_t
rl2_cfg_methods(const rl2_cfg_t *cfg, const config_setting_t *group,
                unsigned *bits)
{
    const config_setting_t *list;
    size_t                  n;

    RL2_TRY(rl2_cfg_strlist(cfg, group, "methods", &list, &n));
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *item = rl2_cfg_item(list, i);
        unsigned bit = rl2_method_bit(config_setting_get_string(item));

        if (bit == 0) {
            return rl2_cfg_fail(cfg, item, RL2_ERR_CONFIG,
                                "unknown method "
                                "\"%s\"; expected one of: GET, HEAD, POST, "
                                "PUT, DELETE, PATCH, OPTIONS, CONNECT, TRACE",
                                config_setting_get_string(item));
        }
        *bits |= bit;
    }
    return RL2_OK;
}

/* An optional group, checked against its keys; *out NULL when absent. */
rl2_status_t
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
        return rl2_cfg_fail(cfg, s, RL2_ERR_CONFIG,
                            "'%s' must be a group "
                            "{ ... }",
                            key);
    }
    RL2_TRY(rl2_cfg_keys(cfg, s, key, allowed));
    *out = s;
    return RL2_OK;
}
