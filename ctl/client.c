/*
 * client.c -- what status and reset share: the policy, the client KEY
 * turned into the request the core peeks (so the tool derives exactly the
 * servers' keys, hashes included), and the stores.
 *
 * The zone is attached, never created: creating it here with another
 * geometry would make the servers replace it.  For a user or API key
 * without -a, the request carries a placeholder address, and layers keyed
 * by address are left out (they would be some other client's).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ratelimit2/config.h"

#include "ctl.h"

#define RL2_CTL_NO_ADDRESS "0.0.0.0"

int
rl2_ctl_policy_store(rl2_ctl_opts_t *o, int required)
{
    rl2_err_t err;

    if (!required && access(o->policy, F_OK) != 0) {
        return RL2_CTL_OK;
    }
    if (rl2_config_load(o->policy, &o->policy_loaded, &err) != RL2_OK
        || rl2_backend_conf_policy(&o->backend, o->policy_loaded, &err)
               != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    return RL2_CTL_OK;
}

void
rl2_ctl_policy_free(rl2_ctl_opts_t *o)
{
    rl2_policy_free(o->policy_loaded);
    o->policy_loaded = NULL;
}

static const char *
rl2_ctl_header(void *ctx, const char *name)
{
    const rl2_ctl_client_t *c = ctx;

    if (c->apikey != NULL && c->apikey_header != NULL
        && strcasecmp(name, c->apikey_header) == 0) {
        return c->apikey;
    }
    return NULL;
}

int
rl2_ctl_is_address(const char *text)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, text, buf) == 1
           || inet_pton(AF_INET6, text, buf) == 1;
}

int
rl2_ctl_client(const rl2_ctl_opts_t *o, const rl2_policy_t *policy,
               const char *key, rl2_ctl_client_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->label, sizeof(c->label), "%s", key);
    c->req.method = o->method;
    c->req.path = o->path;
    c->req.peer_ip = o->address != NULL ? o->address : RL2_CTL_NO_ADDRESS;
    c->req.tier_var = o->tier;
    c->req.header = rl2_ctl_header;
    c->req.header_ctx = c;
    if (strncmp(key, "user:", 5) == 0 && key[5] != '\0') {
        c->req.user = key + 5;
        c->by_identity = 1;
    }
    else if (strncmp(key, "key:", 4) == 0 && key[4] != '\0') {
        if (policy->apikey_header == NULL && policy->apikey_query == NULL) {
            return rl2_ctl_fail(RL2_CTL_USAGE,
                                "%s: the policy reads no API "
                                "key (api_key)",
                                key);
        }
        c->apikey = key + 4;
        c->apikey_header = policy->apikey_header;
        if (c->apikey_header == NULL) {
            snprintf(c->query, sizeof(c->query), "%s=%s", policy->apikey_query,
                     c->apikey);
            c->req.query = c->query;
        }
        c->by_identity = 1;
    }
    else if (!rl2_ctl_is_address(key)) {
        return rl2_ctl_fail(RL2_CTL_USAGE,
                            "KEY \"%s\": expected an address, "
                            "user:NAME or key:APIKEY",
                            key);
    }
    else {
        c->req.peer_ip = key;
    }
    if (o->address != NULL && !rl2_ctl_is_address(o->address)) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "-a \"%s\": not an address",
                            o->address);
    }
    if (policy->tier_variable == NULL && o->tier != NULL) {
        return rl2_ctl_fail(RL2_CTL_USAGE, "-t: the policy takes no tier "
                                           "from a variable (tier_from)");
    }
    return RL2_CTL_OK;
}

int
rl2_ctl_layer_mine(const rl2_ctl_client_t *c, const rl2_layer_t *l)
{
    /* Address keys are logged bare; identities carry their kind. */
    return !(c->by_identity && c->req.peer_ip != NULL
             && strcmp(c->req.peer_ip, RL2_CTL_NO_ADDRESS) == 0
             && strcmp(l->client, RL2_CTL_NO_ADDRESS) == 0);
}

static int
rl2_ctl_redis(const rl2_ctl_opts_t *o, int for_reset, rl2_ctl_stores_t *s)
{
    char                name[RL2_BACKEND_NAME_MAX + 16];
    rl2_failover_conf_t fc;
    rl2_err_t           err;

    if (rl2_store_redis_create(&o->backend.redis, &s->redis, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "redis: %s", err.msg);
    }
    if (!for_reset || s->local == NULL) {
        return RL2_CTL_OK;
    }
    /* The failover store resets Redis and the local zone's scaled
     * counters of failover mode local, which only it can name. */
    snprintf(name, sizeof(name), "%s.circuit", o->zone);
    if (rl2_circuit_open(name, &o->backend.circuit, o->backend.shm_mode,
                         &s->circuit, &err)
        != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    rl2_failover_conf_default(&fc);
    if (rl2_store_failover_create(s->redis, s->local, s->circuit, &fc, &s->both,
                                  &err)
        != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    return RL2_CTL_OK;
}

static int
rl2_ctl_stores_try(const rl2_ctl_opts_t *o, int for_reset, rl2_ctl_stores_t *s)
{
    rl2_err_t err;

    if (rl2_zone_attach(o->zone, &s->zone, &err) != RL2_OK) {
        s->zone = NULL;
        if (!o->backend.redis_enabled) {
            return rl2_ctl_fail(RL2_CTL_FAIL,
                                "zone %s: %s (has a server "
                                "created it? -z names another)",
                                o->zone, err.msg);
        }
    }
    else if (rl2_store_local_create(s->zone, &s->local, &err) != RL2_OK) {
        return rl2_ctl_fail(RL2_CTL_FAIL, "%s", err.msg);
    }
    if (o->backend.redis_enabled) {
        return rl2_ctl_redis(o, for_reset, s);
    }
    return RL2_CTL_OK;
}

int
rl2_ctl_stores_open(const rl2_ctl_opts_t *o, int for_reset, rl2_ctl_stores_t *s)
{
    int rc;

    memset(s, 0, sizeof(*s));
    if ((rc = rl2_ctl_stores_try(o, for_reset, s)) != RL2_CTL_OK) {
        rl2_ctl_stores_close(s);
    }
    return rc;
}

void
rl2_ctl_stores_close(rl2_ctl_stores_t *s)
{
    rl2_store_destroy(s->both);
    rl2_store_destroy(s->redis);
    rl2_circuit_close(s->circuit);
    rl2_store_destroy(s->local);
    rl2_zone_close(s->zone);
}
