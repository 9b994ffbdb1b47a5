/*
 * store_opts.c -- where ratelimit2-fcgi (-R, -O, -F, -A) and
 * ratelimit2-cgi (RATELIMIT2_REDIS, RATELIMIT2_REDIS_OPTIONS,
 * RATELIMIT2_FAILOVER, RATELIMIT2_ALERTS) count: the text of those options
 * into an rl2_backend_conf_t.  The syntax mirrors the Apache directives
 * RateLimit2Redis, RateLimit2Failover and RateLimit2Alerts, with commas
 * where a directive has spaces:
 *
 *   redis     HOST:PORT | /path/to/socket | sentinel:NAME@HOST:PORT,...
 *             | cluster:HOST:PORT,...
 *   options   db=N,user=U,password=P,connect_timeout=MS,timeout=MS
 *   failover  local|open|closed[,share=F][,probe=MS][,failures=N]
 *   alerts    off | on[,socket=PATH][,ident=NAME][,facility=F]
 *             [,interval=S]  ("on," may be left out)
 *
 * Values are checked by the core's parsers (failover mode and share,
 * syslog facility) and rl2_redis_conf_check().  A value may not contain
 * a comma.  Each option marks its group given (bc->given): it replaces
 * the policy file's redis, failover or alerts group as a whole.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fcgi.h"

/* A whole decimal number in [lo, hi]; 0, or -1. */
static int
rl2_so_number(const char *text, long lo, long hi, long *out)
{
    char *end;

    errno = 0;
    *out = strtol(text, &end, 10);
    return errno == 0 && end != text && *end == '\0' && *out >= lo
           && *out <= hi ? 0 : -1;
}

/* Copy text into dst of len bytes; -1 when it does not fit. */
static int
rl2_so_copy(char *dst, size_t len, const char *text)
{
    if (strlen(text) >= len) {
        return -1;
    }
    memcpy(dst, text, strlen(text) + 1);
    return 0;
}

/* Split the next "name=value" item off *list (which it modifies); NULL at
 * the end of the list. */
static char *
rl2_so_next(char **list, char **value)
{
    char *item = *list, *comma, *eq;

    if (item == NULL || *item == '\0') {
        return NULL;
    }
    comma = strchr(item, ',');
    *list = comma != NULL ? comma + 1 : NULL;
    if (comma != NULL) {
        *comma = '\0';
    }
    eq = strchr(item, '=');
    *value = NULL;
    if (eq != NULL) {
        *eq = '\0';
        *value = eq + 1;
    }
    return item;
}

int
rl2_store_opt_redis(rl2_backend_conf_t *bc, const char *addr,
                    rl2_err_t *err)
{
    rl2_redis_conf_t *rc = &bc->redis;
    const char *colon = strrchr(addr, ':');
    long port;

    if (strncmp(addr, "sentinel:", 9) == 0) {
        /* The same syntax as RateLimit2Redis: sentinel:NAME@H:P,... */
        if (rl2_redis_sentinel_parse(rc, addr + 9, err) != RL2_OK) {
            return -1;
        }
    }
    else if (strncmp(addr, "cluster:", 8) == 0) {
        /* Seed nodes, as RateLimit2Redis cluster:H:P,... */
        if (rl2_redis_cluster_parse(rc, addr + 8, err) != RL2_OK) {
            return -1;
        }
    }
    else if (addr[0] == '/') {
        if (rl2_so_copy(rc->unix_path, sizeof(rc->unix_path), addr) != 0) {
            rl2_err_set(err, RL2_ERR_CONFIG, "redis socket path too long");
            return -1;
        }
    }
    else if (colon == NULL || colon == addr
             || (size_t)(colon - addr) >= sizeof(rc->host)
             || rl2_so_number(colon + 1, 1, 65535, &port) != 0) {
        rl2_err_set(err, RL2_ERR_CONFIG, "redis: expected HOST:PORT, "
                    "/path/to/socket, sentinel:NAME@HOST:PORT,... or "
                    "cluster:HOST:PORT,..., got \"%.200s\"", addr);
        return -1;
    }
    else {
        memcpy(rc->host, addr, (size_t)(colon - addr));
        rc->host[colon - addr] = '\0';
        rc->port = (int)port;
        rc->unix_path[0] = '\0';
    }
    bc->redis_enabled = 1;
    bc->given |= RL2_BACKEND_GIVEN_REDIS;
    return 0;
}

static int
rl2_so_redis_item(rl2_redis_conf_t *rc, const char *name, const char *val)
{
    long n;

    if (val == NULL) {
        return -1;
    }
    if (strcmp(name, "db") == 0 && rl2_so_number(val, 0, 15, &n) == 0) {
        rc->db = (int)n;
        return 0;
    }
    if (strcmp(name, "user") == 0) {
        return rl2_so_copy(rc->username, sizeof(rc->username), val);
    }
    if (strcmp(name, "password") == 0) {
        return rl2_so_copy(rc->password, sizeof(rc->password), val);
    }
    if (strcmp(name, "connect_timeout") == 0
        && rl2_so_number(val, 1, 60000, &n) == 0) {
        rc->connect_timeout_ms = (int)n;
        return 0;
    }
    if (strcmp(name, "timeout") == 0
        && rl2_so_number(val, 1, 60000, &n) == 0) {
        rc->command_timeout_ms = (int)n;
        return 0;
    }
    return -1;
}

int
rl2_store_opt_redis_options(rl2_backend_conf_t *bc, const char *text,
                            rl2_err_t *err)
{
    char buf[1024], *list = buf, *name, *val;

    bc->given |= RL2_BACKEND_GIVEN_REDIS;
    if (rl2_so_copy(buf, sizeof(buf), text) != 0) {
        rl2_err_set(err, RL2_ERR_CONFIG, "redis options too long");
        return -1;
    }
    while ((name = rl2_so_next(&list, &val)) != NULL) {
        if (rl2_so_redis_item(&bc->redis, name, val) != 0) {
            rl2_err_set(err, RL2_ERR_CONFIG, "bad redis option \"%.100s\" "
                        "(expected db=0..15, user=, password=, "
                        "connect_timeout=MS, timeout=MS)", name);
            return -1;
        }
    }
    return 0;
}

int
rl2_store_opt_failover(rl2_backend_conf_t *bc, const char *text,
                       rl2_err_t *err)
{
    char buf[256], *list = buf, *name, *val;
    long n;

    bc->given |= RL2_BACKEND_GIVEN_FAILOVER;
    if (rl2_so_copy(buf, sizeof(buf), text) != 0) {
        rl2_err_set(err, RL2_ERR_CONFIG, "failover: too long");
        return -1;
    }
    name = rl2_so_next(&list, &val);
    if (name == NULL || val != NULL
        || rl2_failover_mode_parse(name, &bc->failover_mode, err)
           != RL2_OK) {
        rl2_err_set(err, RL2_ERR_CONFIG, "failover: expected local, open "
                    "or closed first, got \"%.100s\"", text);
        return -1;
    }
    while ((name = rl2_so_next(&list, &val)) != NULL) {
        if (val != NULL && strcmp(name, "share") == 0) {
            if (rl2_failover_share_parse(val, &bc->local_share_ppm, err)
                != RL2_OK) {
                return -1;
            }
        }
        else if (val != NULL && strcmp(name, "probe") == 0
                 && rl2_so_number(val, 1, 3600000, &n) == 0) {
            bc->circuit.probe_interval_ms = n;
        }
        else if (val != NULL && strcmp(name, "failures") == 0
                 && rl2_so_number(val, 1, 1000, &n) == 0) {
            bc->circuit.failures_to_open = (uint32_t)n;
        }
        else {
            rl2_err_set(err, RL2_ERR_CONFIG, "failover: bad option "
                        "\"%.100s\" (expected share=0.001..1, probe=MS, "
                        "failures=N)", name);
            return -1;
        }
    }
    return 0;
}

static int
rl2_so_alert_item(rl2_backend_conf_t *bc, const char *name, const char *val,
                  rl2_err_t *err)
{
    long n;

    if (strcmp(name, "socket") == 0 && val[0] == '/') {
        return rl2_so_copy(bc->alert_socket, sizeof(bc->alert_socket), val);
    }
    if (strcmp(name, "ident") == 0 && val[0] != '\0') {
        return rl2_so_copy(bc->alert_ident, sizeof(bc->alert_ident), val);
    }
    if (strcmp(name, "facility") == 0) {
        return rl2_alert_facility_parse(val, &bc->alert_facility, err)
               == RL2_OK ? 0 : -1;
    }
    if (strcmp(name, "interval") == 0
        && rl2_so_number(val, 1, 86400, &n) == 0) {
        bc->alert_interval_ms = n * 1000;
        return 0;
    }
    return -1;
}

int
rl2_store_opt_alerts(rl2_backend_conf_t *bc, const char *text,
                     rl2_err_t *err)
{
    char buf[512], *list = buf, *name, *val;

    bc->given |= RL2_BACKEND_GIVEN_ALERTS;
    if (strcmp(text, "off") == 0) {
        bc->alerts_enabled = 0;
        return 0;
    }
    if (rl2_so_copy(buf, sizeof(buf), text) != 0) {
        rl2_err_set(err, RL2_ERR_CONFIG, "alerts: too long");
        return -1;
    }
    bc->alerts_enabled = 1;
    if (strcmp(text, "on") == 0 || strncmp(text, "on,", 3) == 0) {
        list += 2 + (text[2] == ',');
    }
    while ((name = rl2_so_next(&list, &val)) != NULL) {
        err->msg[0] = '\0';
        if (val == NULL || rl2_so_alert_item(bc, name, val, err) != 0) {
            if (err->msg[0] == '\0') {
                rl2_err_set(err, RL2_ERR_CONFIG, "alerts: bad option "
                            "\"%.100s\" (expected off, or socket=/PATH, "
                            "ident=NAME, facility=daemon|local0.., "
                            "interval=S)", name);
            }
            return -1;
        }
    }
    return 0;
}

/* Options that mean nothing without Redis (alerts do: they also report
 * the local zone and limited clients). */
int
rl2_store_opt_needs_redis(const rl2_backend_conf_t *bc)
{
    return (bc->given & (RL2_BACKEND_GIVEN_REDIS | RL2_BACKEND_GIVEN_FAILOVER))
           != 0;
}

int
rl2_store_opt_check(const rl2_backend_conf_t *bc, int redis_options,
                    rl2_err_t *err)
{
    if (!bc->redis_enabled) {
        if (redis_options) {
            rl2_err_set(err, RL2_ERR_CONFIG, "Redis options or failover "
                        "given without a Redis server");
            return -1;
        }
        return 0;
    }
    return rl2_redis_conf_check(&bc->redis, err) == RL2_OK ? 0 : -1;
}

const char *
rl2_store_circuit_name(rl2_backend_t *backend)
{
    rl2_circuit_state_t state;

    if (!rl2_backend_circuit_state(backend, &state)) {
        return "none";
    }
    switch (state) {
    case RL2_CIRCUIT_CLOSED:
        return "closed";
    case RL2_CIRCUIT_OPEN:
        return "open";
    default:
        return "half_open";
    }
}
