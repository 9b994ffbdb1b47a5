/*
 * store_opts.c -- the store options from text into a backend conf
 * (store_opts.h): the one parser behind the Apache directives,
 * ratelimit2-fcgi's and ratelimit2ctl's options, ratelimit2-cgi's
 * environment and the policy file's store groups, so they agree on what
 * they accept and on the words of every refusal.
 *
 * Numbers are plain decimal digits (no sign, space or suffix: "6379x" is
 * an error, not 6379); strings must fit their field whole (never cut).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ratelimit2/store_local.h"
#include "ratelimit2/store_opts.h"

#include "backend_internal.h"
#include "base/base_internal.h"
#include "base/shm_obj_internal.h"
#include "redis/redis_internal.h"
#include "store/store_internal.h"

#define RL2_SO_LIST_MAX 1024 /* one comma-separated list */

/* The first refusal is the one the caller reports. */
#define RL2_SO_TRY(expr) \
    do { \
        rl2_status_t rl2_so_st_ = (expr); \
        if (rl2_so_st_ != RL2_OK) { \
            return rl2_so_st_; \
        } \
    } while (0)

/* A number of digits only, in [lo, hi]; 0, or -1. */
static int
rl2_so_number(const char *text, long lo, long hi, long *out)
{
    long        n = 0;
    const char *p;

    if (text[0] == '\0' || strlen(text) > 9) {
        return -1;
    }
    for (p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        n = n * 10 + (*p - '0');
    }
    *out = n;
    return n >= lo && n <= hi ? 0 : -1;
}

/* name=value, a number in [lo, hi], or the error naming both. */
static rl2_status_t
rl2_so_range(const char *group, const char *name, const char *value, long lo,
             long hi, long *out, rl2_err_t *err)
{
    if (rl2_so_number(value, lo, hi, out) != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s: %s=%.40s: expected a "
                           "number from %ld to %ld",
                           group, name, value, lo, hi);
    }
    return RL2_OK;
}

/* Copy a non-empty value whole into dst[size]; the error names the
 * option, never the value (it may be a password). */
static rl2_status_t
rl2_so_copy(const char *group, const char *name, const char *value, char *dst,
            size_t size, rl2_err_t *err)
{
    size_t len = strlen(value);

    if (len == 0 || len >= size) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s: %s= needs 1 to %zu "
                           "characters",
                           group, name, size - 1);
    }
    memcpy(dst, value, len + 1);
    return RL2_OK;
}

/* name=on or name=off (any case) into *out, 1 or 0. */
static rl2_status_t
rl2_so_onoff(const char *group, const char *name, const char *value, int *out,
             rl2_err_t *err)
{
    if (strcasecmp(value, "on") != 0 && strcasecmp(value, "off") != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s: %s=%.40s: expected on or off", group, name,
                           value);
    }
    *out = strcasecmp(value, "on") == 0;
    return RL2_OK;
}

/* ---- the Redis server ---- */

static rl2_status_t
rl2_so_addr_error(const char *addr, rl2_err_t *err)
{
    return rl2_err_set(err, RL2_ERR_CONFIG,
                       "redis: expected HOST:PORT, "
                       "[IPv6]:PORT, /path/to/socket, sentinel:NAME@HOST:"
                       "PORT,... or cluster:HOST:PORT,..., not \"%.200s\"",
                       addr);
}

/* "host:port" or "[v6]:port" into host[size] (without brackets) and
 * *port; a bare IPv6 address is refused: its last group would pass for
 * the port. */
static rl2_status_t
rl2_so_hostport(const char *addr, char *host, size_t size, int *port,
                rl2_err_t *err)
{
    const char *colon = strrchr(addr, ':'), *start = addr, *end = colon;
    long        p;

    if (colon == NULL) {
        return rl2_so_addr_error(addr, err);
    }
    if (addr[0] == '[') {
        if (colon[-1] != ']' || colon - addr < 2) {
            return rl2_so_addr_error(addr, err);
        }
        start = addr + 1;
        end = colon - 1;
    }
    else if (memchr(addr, ':', (size_t)(colon - addr)) != NULL) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: \"%.200s\": an IPv6 "
                           "address takes brackets, as [::1]:6379",
                           addr);
    }
    if (end == start) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: \"%.200s\" has no "
                           "host",
                           addr);
    }
    if (rl2_so_number(colon + 1, 1, 65535, &p) != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: \"%.200s\": the port "
                           "must be a number from 1 to 65535",
                           addr);
    }
    if ((size_t)(end - start) >= size) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: \"%.40s...\": the "
                           "host is longer than %zu bytes",
                           addr, size - 1);
    }
    memcpy(host, start, (size_t)(end - start));
    host[end - start] = '\0';
    *port = (int)p;
    return RL2_OK;
}

/* The sentinel or seed list the core's parser took, held to the same
 * address rules as a single server. */
static rl2_status_t
rl2_so_list_check(char (*list)[RL2_REDIS_HOST_MAX], int n, rl2_err_t *err)
{
    char host[RL2_REDIS_HOST_MAX];
    int  port;

    for (int i = 0; i < n; i++) {
        RL2_SO_TRY(rl2_so_hostport(list[i], host, sizeof(host), &port, err));
    }
    return RL2_OK;
}

static rl2_status_t
rl2_so_redis_addr(rl2_redis_conf_t *rc, const char *addr, rl2_err_t *err)
{
    if (strncmp(addr, "sentinel:", 9) == 0) {
        RL2_SO_TRY(rl2_redis_sentinel_parse(rc, addr + 9, err));
        return rl2_so_list_check(rc->sentinels, rc->n_sentinels, err);
    }
    if (strncmp(addr, "cluster:", 8) == 0) {
        RL2_SO_TRY(rl2_redis_cluster_parse(rc, addr + 8, err));
        return rl2_so_list_check(rc->seeds, rc->n_seeds, err);
    }
    if (addr[0] == '/') {
        return rl2_so_copy("redis", "socket", addr, rc->unix_path,
                           sizeof(rc->unix_path), err);
    }
    return rl2_so_hostport(addr, rc->host, sizeof(rc->host), &rc->port, err);
}

rl2_status_t
rl2_store_opt_redis(rl2_backend_conf_t *bc, const char *addr, rl2_err_t *err)
{
    rl2_redis_conf_t *rc = &bc->redis;

    /* A later server replaces an earlier one of another form whole. */
    rc->unix_path[0] = '\0';
    rc->n_sentinels = 0;
    rc->n_seeds = 0;
    RL2_SO_TRY(rl2_so_redis_addr(rc, addr, err));
    bc->redis_enabled = 1;
    bc->given |= RL2_BACKEND_GIVEN_REDIS;
    return RL2_OK;
}

rl2_status_t
rl2_store_opt_redis_set(rl2_backend_conf_t *bc, const char *name,
                        const char *value, rl2_err_t *err)
{
    rl2_redis_conf_t *rc = &bc->redis;
    long              n;

    bc->given |= RL2_BACKEND_GIVEN_REDIS;
    if (strcmp(name, "db") == 0) {
        RL2_SO_TRY(rl2_so_range("redis", name, value, 0, 15, &n, err));
        rc->db = (int)n;
    }
    else if (strcmp(name, "user") == 0) {
        return rl2_so_copy("redis", name, value, rc->username,
                           sizeof(rc->username), err);
    }
    else if (strcmp(name, "password") == 0) {
        return rl2_so_copy("redis", name, value, rc->password,
                           sizeof(rc->password), err);
    }
    else if (strcmp(name, "connect_timeout") == 0) {
        RL2_SO_TRY(rl2_so_range("redis", name, value, 1, 60000, &n, err));
        rc->connect_timeout_ms = (int)n;
    }
    else if (strcmp(name, "timeout") == 0) {
        RL2_SO_TRY(rl2_so_range("redis", name, value, 1, 60000, &n, err));
        rc->command_timeout_ms = (int)n;
    }
    else if (strcmp(name, "overrides_key") == 0) {
        /* Checked here too, not only with the whole connection, so that a
         * policy file's error names the key's own line. */
        if (value[0] == '\0' || strpbrk(value, "{} \t\r\n") != NULL) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "redis: overrides_key=\"%.60s\": expected a "
                               "name without '{', '}' or white space (it is "
                               "put in a hash tag)",
                               value);
        }
        return rl2_so_copy("redis", name, value, rc->overrides_key,
                           sizeof(rc->overrides_key), err);
    }
    else if (strcmp(name, "lease") == 0) {
        return rl2_so_onoff("redis", name, value, &rc->lease, err);
    }
    else if (strcmp(name, "lease_time") == 0) {
        RL2_SO_TRY(rl2_so_range("redis", name, value, 1, 60000, &n, err));
        rc->lease_time_ms = (int)n;
    }
    else if (strcmp(name, "lease_max") == 0) {
        RL2_SO_TRY(rl2_so_range("redis", name, value, 1, 1000000, &n, err));
        rc->lease_max = (int)n;
    }
    else if (strcmp(name, "pipeline") == 0) {
        return rl2_so_onoff("redis", name, value, &rc->pipeline, err);
    }
    else if (strcmp(name, "overlimit") == 0) {
        return rl2_so_onoff("redis", name, value, &bc->overlimit, err);
    }
    else if (strcmp(name, "overlimit_entries") == 0) {
        RL2_SO_TRY(rl2_so_range("redis", name, value, RL2_ZONE_MIN_ENTRIES,
                                RL2_ZONE_MAX_ENTRIES, &n, err));
        bc->overlimit_entries = (uint32_t)n;
    }
    else {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: unknown option "
                           "\"%.60s\" (expected db=0..15, user=U, "
                           "password=P, connect_timeout=MS, timeout=MS, "
                           "overrides_key=NAME, lease=on|off, "
                           "lease_time=MS, lease_max=N, pipeline=on|off, "
                           "overlimit=on|off, overlimit_entries=N)",
                           name);
    }
    return RL2_OK;
}

/* ---- name=value items and comma-separated lists ---- */

typedef rl2_status_t (*rl2_so_set_fn)(rl2_backend_conf_t *bc, const char *name,
                                      const char *value, rl2_err_t *err);

/* "name=value" split and handed to set; group names the options. */
static rl2_status_t
rl2_so_item(rl2_backend_conf_t *bc, const char *group, const char *item,
            rl2_so_set_fn set, rl2_err_t *err)
{
    const char *eq = strchr(item, '=');
    char        name[64];

    if (eq == NULL || eq == item || (size_t)(eq - item) >= sizeof(name)) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s: expected name=value, "
                           "not \"%.60s\"",
                           group, item);
    }
    memcpy(name, item, (size_t)(eq - item));
    name[eq - item] = '\0';
    return set(bc, name, eq + 1, err);
}

/* Each comma-separated item of list, from skip items on. */
static rl2_status_t
rl2_so_list(rl2_backend_conf_t *bc, const char *group, const char *list,
            int skip, rl2_so_set_fn set, rl2_err_t *err)
{
    char buf[RL2_SO_LIST_MAX], *item, *save = NULL;

    if (strlen(list) >= sizeof(buf)) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s: the option list is "
                           "longer than %zu bytes",
                           group, sizeof(buf) - 1);
    }
    memcpy(buf, list, strlen(list) + 1);
    for (item = strtok_r(buf, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save)) {
        if (skip > 0) {
            skip--;
            continue;
        }
        RL2_SO_TRY(rl2_so_item(bc, group, item, set, err));
    }
    return RL2_OK;
}

rl2_status_t
rl2_store_opt_redis_item(rl2_backend_conf_t *bc, const char *item,
                         rl2_err_t *err)
{
    return rl2_so_item(bc, "redis", item, rl2_store_opt_redis_set, err);
}

rl2_status_t
rl2_store_opt_redis_options(rl2_backend_conf_t *bc, const char *list,
                            rl2_err_t *err)
{
    bc->given |= RL2_BACKEND_GIVEN_REDIS;
    return rl2_so_list(bc, "redis", list, 0, rl2_store_opt_redis_set, err);
}

/* ---- the zone ---- */

rl2_status_t
rl2_store_opt_zone_name(rl2_backend_conf_t *bc, const char *name,
                        rl2_err_t *err)
{
    if (rl2_shm_name_check("zone", name, sizeof(bc->zone_name) - 1, err)
        != RL2_OK) {
        return RL2_ERR_CONFIG;
    }
    memcpy(bc->zone_name, name, strlen(name) + 1);
    return RL2_OK;
}

rl2_status_t
rl2_store_opt_zone_entries(rl2_backend_conf_t *bc, const char *text,
                           rl2_err_t *err)
{
    long n;

    if (rl2_so_number(text, RL2_ZONE_MIN_ENTRIES, RL2_ZONE_MAX_ENTRIES, &n)
        != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "zone: entries \"%.40s\": "
                           "expected a number from %u to %u",
                           text, RL2_ZONE_MIN_ENTRIES, RL2_ZONE_MAX_ENTRIES);
    }
    bc->zone_entries = (uint32_t)n;
    return RL2_OK;
}

/* ---- failover ---- */

rl2_status_t
rl2_store_opt_failover_mode(rl2_backend_conf_t *bc, const char *mode,
                            rl2_err_t *err)
{
    bc->given |= RL2_BACKEND_GIVEN_FAILOVER;
    if (rl2_failover_mode_parse(mode, &bc->failover_mode, err) != RL2_OK) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "failover: expected local, "
                           "open or closed, not \"%.60s\"",
                           mode);
    }
    return RL2_OK;
}

rl2_status_t
rl2_store_opt_failover_set(rl2_backend_conf_t *bc, const char *name,
                           const char *value, rl2_err_t *err)
{
    rl2_err_t e;
    long      n;

    bc->given |= RL2_BACKEND_GIVEN_FAILOVER;
    if (strcmp(name, "share") == 0) {
        if (rl2_failover_share_parse(value, &bc->local_share_ppm, &e)
            != RL2_OK) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "failover: share=%.40s: "
                               "expected a number from 0.001 to 1",
                               value);
        }
    }
    else if (strcmp(name, "probe") == 0) {
        RL2_SO_TRY(rl2_so_range("failover", name, value, 1, 3600000, &n, err));
        bc->circuit.probe_interval_ms = n;
    }
    else if (strcmp(name, "failures") == 0) {
        RL2_SO_TRY(rl2_so_range("failover", name, value, 1, 1000, &n, err));
        bc->circuit.failures_to_open = (uint32_t)n;
    }
    else {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "failover: unknown option "
                           "\"%.60s\" (expected share=0.001..1, probe=MS, "
                           "failures=N)",
                           name);
    }
    return RL2_OK;
}

rl2_status_t
rl2_store_opt_failover_item(rl2_backend_conf_t *bc, const char *item,
                            rl2_err_t *err)
{
    return rl2_so_item(bc, "failover", item, rl2_store_opt_failover_set, err);
}

rl2_status_t
rl2_store_opt_failover(rl2_backend_conf_t *bc, const char *text, rl2_err_t *err)
{
    char   mode[16];
    size_t len = strcspn(text, ",");

    snprintf(mode, sizeof(mode), "%.*s", (int)len, text);
    RL2_SO_TRY(
        rl2_store_opt_failover_mode(bc, len < sizeof(mode) ? mode : text, err));
    return rl2_so_list(bc, "failover", text, 1, rl2_store_opt_failover_set,
                       err);
}

/* ---- alerts ---- */

rl2_status_t
rl2_store_opt_alerts_switch(rl2_backend_conf_t *bc, const char *onoff,
                            rl2_err_t *err)
{
    bc->given |= RL2_BACKEND_GIVEN_ALERTS;
    if (strcasecmp(onoff, "on") != 0 && strcasecmp(onoff, "off") != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "alerts: expected on or "
                           "off, not \"%.60s\"",
                           onoff);
    }
    bc->alerts_enabled = strcasecmp(onoff, "on") == 0;
    return RL2_OK;
}

rl2_status_t
rl2_store_opt_alerts_set(rl2_backend_conf_t *bc, const char *name,
                         const char *value, rl2_err_t *err)
{
    rl2_err_t e;
    long      n;

    bc->given |= RL2_BACKEND_GIVEN_ALERTS;
    if (strcmp(name, "socket") == 0) {
        if (value[0] != '/') {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "alerts: socket= must "
                               "be an absolute path");
        }
        return rl2_so_copy("alerts", name, value, bc->alert_socket,
                           sizeof(bc->alert_socket), err);
    }
    if (strcmp(name, "ident") == 0) {
        return rl2_so_copy("alerts", name, value, bc->alert_ident,
                           sizeof(bc->alert_ident), err);
    }
    if (strcmp(name, "facility") == 0) {
        if (rl2_alert_facility_parse(value, &bc->alert_facility, &e)
            != RL2_OK) {
            return rl2_err_set(err, RL2_ERR_CONFIG, "alerts: %s", e.msg);
        }
        return RL2_OK;
    }
    if (strcmp(name, "interval") == 0) {
        RL2_SO_TRY(rl2_so_range("alerts", name, value, 1, 86400, &n, err));
        bc->alert_interval_ms = n * 1000;
        return RL2_OK;
    }
    return rl2_err_set(err, RL2_ERR_CONFIG,
                       "alerts: unknown option "
                       "\"%.60s\" (expected socket=/PATH, ident=NAME, "
                       "facility=daemon|local0.., interval=S)",
                       name);
}

rl2_status_t
rl2_store_opt_alerts_item(rl2_backend_conf_t *bc, const char *item,
                          rl2_err_t *err)
{
    return rl2_so_item(bc, "alerts", item, rl2_store_opt_alerts_set, err);
}

rl2_status_t
rl2_store_opt_alerts(rl2_backend_conf_t *bc, const char *text, rl2_err_t *err)
{
    size_t len = strcspn(text, ",");
    int    skip = 0;

    /* "on," may be left out: a list of options turns alerts on. */
    bc->alerts_enabled = 1;
    bc->given |= RL2_BACKEND_GIVEN_ALERTS;
    if (memchr(text, '=', len) == NULL) {
        char word[8];

        snprintf(word, sizeof(word), "%.*s", (int)len, text);
        RL2_SO_TRY(rl2_store_opt_alerts_switch(
            bc, len < sizeof(word) ? word : text, err));
        skip = 1;
    }
    return rl2_so_list(bc, "alerts", text, skip, rl2_store_opt_alerts_set, err);
}

/* ---- the whole ---- */

int
rl2_store_opt_needs_redis(const rl2_backend_conf_t *bc)
{
    return (bc->given & (RL2_BACKEND_GIVEN_REDIS | RL2_BACKEND_GIVEN_FAILOVER))
           != 0;
}

rl2_status_t
rl2_store_opt_check(const rl2_backend_conf_t *bc, int redis_options,
                    rl2_err_t *err)
{
    if (!bc->redis_enabled) {
        if (redis_options) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "Redis options or "
                               "failover given without a Redis server");
        }
        return RL2_OK;
    }
    return rl2_redis_conf_check(&bc->redis, err);
}

void
rl2_store_opt_describe(const rl2_backend_conf_t *bc, char *buf, size_t size)
{
    const rl2_redis_conf_t *rc = &bc->redis;
    int n = snprintf(buf, size, "zone=%s entries=%u", bc->zone_name,
                     bc->zone_entries);

    if (n < 0 || (size_t)n >= size || !bc->redis_enabled) {
        return;
    }
    if (rc->n_sentinels > 0) {
        n += snprintf(buf + n, size - (size_t)n, " sentinel=%s@%s (%d)",
                      rc->master_name, rc->sentinels[0], rc->n_sentinels);
    }
    else if (rc->n_seeds > 0) {
        n += snprintf(buf + n, size - (size_t)n, " cluster=%s (%d)",
                      rc->seeds[0], rc->n_seeds);
    }
    else if (rc->unix_path[0] != '\0') {
        n += snprintf(buf + n, size - (size_t)n, " socket=%s", rc->unix_path);
    }
    else {
        n += snprintf(buf + n, size - (size_t)n, " host=%s port=%d", rc->host,
                      rc->port);
    }
    if (n >= 0 && (size_t)n < size) {
        snprintf(buf + n, size - (size_t)n,
                 " db=%d user=%s timeout=%d/%d "
                 "failover=%s overlimit=%s",
                 rc->db, rc->username[0] ? rc->username : "-",
                 rc->connect_timeout_ms, rc->command_timeout_ms,
                 rl2_failover_mode_name(bc->failover_mode),
                 bc->overlimit ? "on" : "off");
    }
}
