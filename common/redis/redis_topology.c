/*
 * redis_topology.c -- where the Redis master is: Sentinel discovery, and
 * the address lists of Sentinel and Cluster configurations (redis.h).
 *
 * hiredis 0.14 knows nothing of Sentinel: a sentinel is asked here, over a
 * short-lived plain connection with the configured connect and command
 * timeouts, "SENTINEL get-master-addr-by-name NAME", and answers the
 * master's host and port.  The sentinels are asked in turn until one
 * answers.  redis_conn.c asks at every open, so a connection that broke
 * (the master died, or a failover demoted it and it answered -READONLY) is
 * replaced by one to the master the sentinels name now.
 *
 * A Cluster's seed list is parsed and checked here too, with the same
 * address rules; the slot routing itself is redis_cluster.c's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "ratelimit2/redis.h"
#include "redis/redis_internal.h"

int
rl2_redis_addr_split(const char *addr, char *host, size_t size, int *port)
{
    const char *colon = strrchr(addr, ':');
    const char *start = addr, *end = colon;
    char       *stop;
    long        p;

    if (colon == NULL || colon == addr || colon[1] == '\0') {
        return -1;
    }
    if (addr[0] == '[') {
        if (colon[-1] != ']') {
            return -1;
        }
        start = addr + 1;
        end = colon - 1;
    }
    errno = 0;
    p = strtol(colon + 1, &stop, 10);
    if (*stop != '\0' || errno != 0 || p < 1 || p > 65535 || end <= start
        || (size_t)(end - start) >= size) {
        return -1;
    }
    memcpy(host, start, (size_t)(end - start));
    host[end - start] = '\0';
    *port = (int)p;
    return 0;
}

/* One "host:port" of a list, copied into the next of list's max entries
 * (*count of them used); what names the list in messages. */
static rl2_status_t
rl2_addr_add(char (*list)[RL2_REDIS_HOST_MAX], int *count, int max,
             const char *what, const char *addr, size_t len, rl2_err_t *err)
{
    char host[RL2_REDIS_HOST_MAX], *slot;
    int  port;

    if (*count >= max) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "redis: more than %d %ss", max,
                           what);
    }
    slot = list[*count];
    if (len >= RL2_REDIS_HOST_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: %s address "
                           "\"%.40s...\" is too long",
                           what, addr);
    }
    memcpy(slot, addr, len);
    slot[len] = '\0';
    if (rl2_redis_addr_split(slot, host, sizeof(host), &port) != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: %s \"%s\" is "
                           "not HOST:PORT",
                           what, slot);
    }
    (*count)++;
    return RL2_OK;
}

/* "h1:p1,h2:p2,..." into list; what names the list in messages. */
static rl2_status_t
rl2_addr_list(char (*list)[RL2_REDIS_HOST_MAX], int *count, int max,
              const char *what, const char *spec, rl2_err_t *err)
{
    const char  *p, *comma;
    rl2_status_t st;

    *count = 0;
    for (p = spec;; p = comma + 1) {
        comma = strchr(p, ',');
        st = rl2_addr_add(list, count, max, what, p,
                          comma != NULL ? (size_t)(comma - p) : strlen(p), err);
        if (st != RL2_OK || comma == NULL) {
            return st;
        }
    }
}

rl2_status_t
rl2_redis_sentinel_parse(rl2_redis_conf_t *conf, const char *spec,
                         rl2_err_t *err)
{
    const char *at = strchr(spec, '@');

    if (at == NULL || at == spec
        || (size_t)(at - spec) >= sizeof(conf->master_name)) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: expected "
                           "sentinel:NAME@HOST:PORT[,HOST:PORT...] (a "
                           "master name of 1 to %d characters)",
                           (int)sizeof(conf->master_name) - 1);
    }
    memcpy(conf->master_name, spec, (size_t)(at - spec));
    conf->master_name[at - spec] = '\0';
    return rl2_addr_list(conf->sentinels, &conf->n_sentinels,
                         RL2_REDIS_SENTINELS_MAX, "sentinel", at + 1, err);
}

rl2_status_t
rl2_redis_sentinel_check(const rl2_redis_conf_t *conf, rl2_err_t *err)
{
    char host[RL2_REDIS_HOST_MAX];
    int  port;

    if (conf->n_sentinels < 0 || conf->n_sentinels > RL2_REDIS_SENTINELS_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: %d sentinels, not "
                           "0 to %d",
                           conf->n_sentinels, RL2_REDIS_SENTINELS_MAX);
    }
    if (conf->n_sentinels == 0) {
        return RL2_OK;
    }
    if (memchr(conf->master_name, '\0', sizeof(conf->master_name)) == NULL
        || conf->master_name[0] == '\0' || conf->unix_path[0] != '\0') {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: sentinels need a "
                           "master name, and no unix socket");
    }
    for (int i = 0; i < conf->n_sentinels; i++) {
        if (memchr(conf->sentinels[i], '\0', RL2_REDIS_HOST_MAX) == NULL
            || rl2_redis_addr_split(conf->sentinels[i], host, sizeof(host),
                                    &port)
                   != 0) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "redis: sentinel %d is "
                               "not HOST:PORT",
                               i + 1);
        }
    }
    return RL2_OK;
}

rl2_status_t
rl2_redis_cluster_parse(rl2_redis_conf_t *conf, const char *spec,
                        rl2_err_t *err)
{
    if (spec[0] == '\0') {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: expected "
                           "cluster:HOST:PORT[,HOST:PORT...] (1 to %d seed "
                           "nodes)",
                           RL2_REDIS_SEEDS_MAX);
    }
    return rl2_addr_list(conf->seeds, &conf->n_seeds, RL2_REDIS_SEEDS_MAX,
                         "cluster seed", spec, err);
}

rl2_status_t
rl2_redis_cluster_check(const rl2_redis_conf_t *conf, rl2_err_t *err)
{
    char host[RL2_REDIS_HOST_MAX];
    int  port;

    if (conf->n_seeds < 0 || conf->n_seeds > RL2_REDIS_SEEDS_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: %d cluster seeds, "
                           "not 0 to %d",
                           conf->n_seeds, RL2_REDIS_SEEDS_MAX);
    }
    if (conf->n_seeds == 0) {
        return RL2_OK;
    }
    if (conf->n_sentinels > 0 || conf->unix_path[0] != '\0') {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: a Cluster takes "
                           "neither sentinels nor a unix socket");
    }
    /* Cluster nodes have only database 0 and refuse SELECT: say so now
     * rather than at the first request. */
    if (conf->db != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis: Redis Cluster has "
                           "only database 0 (db=%d given)",
                           conf->db);
    }
    for (int i = 0; i < conf->n_seeds; i++) {
        if (memchr(conf->seeds[i], '\0', RL2_REDIS_HOST_MAX) == NULL
            || rl2_redis_addr_split(conf->seeds[i], host, sizeof(host), &port)
                   != 0) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "redis: cluster seed %d "
                               "is not HOST:PORT",
                               i + 1);
        }
    }
    return RL2_OK;
}

/* The reply [host, port] -> host, port; else a message in err. */
static rl2_status_t
rl2_sentinel_reply(const rl2_redis_conf_t *conf, const char *addr,
                   const redisReply *r, char *host, size_t size, int *port,
                   rl2_err_t *err)
{
    long p;

    if (r->type == REDIS_REPLY_ERROR) {
        return rl2_err_set(err, RL2_ERR_STORE, "redis sentinel %s: %.120s",
                           addr, r->str);
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_STRING
        || r->element[1]->type != REDIS_REPLY_STRING) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "redis sentinel %s: knows no "
                           "master \"%s\"",
                           addr, conf->master_name);
    }
    p = strtol(r->element[1]->str, NULL, 10);
    if (r->element[0]->len == 0 || r->element[0]->len >= size || p < 1
        || p > 65535) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "redis sentinel %s: bad "
                           "address for master \"%s\"",
                           addr, conf->master_name);
    }
    memcpy(host, r->element[0]->str, r->element[0]->len);
    host[r->element[0]->len] = '\0';
    *port = (int)p;
    return RL2_OK;
}

/* Ask one sentinel. */
static rl2_status_t
rl2_sentinel_ask(const rl2_redis_conf_t *conf, const char *addr, char *host,
                 size_t size, int *port, rl2_err_t *err)
{
    const char   *argv[3] = { "SENTINEL", "get-master-addr-by-name",
                              conf->master_name };
    size_t        argvlen[3] = { 8, 23, strlen(conf->master_name) };
    char          shost[RL2_REDIS_HOST_MAX];
    int           sport;
    redisContext *ctx;
    redisReply   *r = NULL;
    rl2_status_t  st;

    if (rl2_redis_addr_split(addr, shost, sizeof(shost), &sport) != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "redis sentinel \"%s\" is "
                           "not HOST:PORT",
                           addr);
    }
    ctx = redisConnectWithTimeout(shost, sport,
                                  rl2_ms_timeval(conf->connect_timeout_ms));
    if (ctx == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    if (ctx->err == 0
        && redisSetTimeout(ctx, rl2_ms_timeval(conf->command_timeout_ms))
               == REDIS_OK) {
        r = redisCommandArgv(ctx, 3, argv, argvlen);
    }
    if (r == NULL) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis sentinel %s: %s", addr,
                         ctx->errstr[0] ? ctx->errstr : "no answer");
    }
    else {
        st = rl2_sentinel_reply(conf, addr, r, host, size, port, err);
        freeReplyObject(r);
    }
    redisFree(ctx);
    return st;
}

rl2_status_t
rl2_redis_sentinel_master(const rl2_redis_conf_t *conf, char *host, size_t size,
                          int *port, rl2_err_t *err)
{
    rl2_status_t st = RL2_ERR_STORE;

    if (conf->n_sentinels < 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "redis: no sentinels");
    }
    for (int i = 0; i < conf->n_sentinels; i++) {
        st = rl2_sentinel_ask(conf, conf->sentinels[i], host, size, port, err);
        if (st == RL2_OK || st == RL2_ERR_NOMEM) {
            return st;
        }
    }
    return st;
}

int
rl2_redis_reply_readonly(const struct redisReply *reply)
{
    /* Redis 7 keeps the error code of a call inside a script. */
    return reply != NULL && reply->type == REDIS_REPLY_ERROR
           && reply->str != NULL
           && (strncmp(reply->str, "READONLY", 8) == 0
               || strstr(reply->str, "-READONLY") != NULL
               || strstr(reply->str, "READONLY You can't write") != NULL);
}
