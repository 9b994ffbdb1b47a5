/*
 * doctor_redis.c -- ratelimit2ctl doctor: the Redis server the store uses
 * (-R, or the policy's redis group).  One connection with the store's
 * timeouts, then commands that write nothing: INFO server (the version),
 * FUNCTION LIST for a library that cannot exist and EVAL of `return 1`
 * (whether the store may use functions, and else scripts), five PINGs (the
 * round trip, their median), CONFIG GET maxmemory-policy and maxmemory.
 *
 * What the store needs: it calls its function library (FCALL, loaded by
 * FUNCTION LOAD: Redis 7 or later), and falls back for good to scripts
 * (EVALSHA, EVAL) on a server that has no functions or forbids them
 * (rename-command, an ACL without them); a server that forbids scripts
 * too cannot decide anything: an error.  CONFIG is often renamed away on
 * managed servers: then the eviction policy is "unknown", no error.
 * Sentinel and Cluster are not followed: their nodes are named for -R.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "ratelimit2/clock.h"

#include "ctl.h"

enum {
    RL2_DOC_PINGS = 5,
    RL2_DOC_RTT_WARN_US = 1000 /* a request waits this long per call */
};

/* The server's name for messages: HOST:PORT or the socket's path. */
static void
rl2_doc_redis_name(const rl2_redis_conf_t *rc, char *buf, size_t size)
{
    if (rc->unix_path[0] != '\0') {
        snprintf(buf, size, "%s", rc->unix_path);
    }
    else if (strchr(rc->host, ':') != NULL) {
        snprintf(buf, size, "[%s]:%d", rc->host, rc->port);
    }
    else {
        snprintf(buf, size, "%s:%d", rc->host, rc->port);
    }
}

/* A command's reply; NULL with why when there is none (I/O). */
static redisReply *
rl2_doc_cmd(redisContext *c, int argc, const char **argv, char *why,
            size_t size)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);

    if (r == NULL) {
        snprintf(why, size, "%s",
                 c->errstr[0] != '\0' ? c->errstr : "no reply");
    }
    return r;
}

/* Connect, AUTH and SELECT as the store does: the context, or NULL after
 * an error finding. */
static redisContext *
rl2_doc_connect(const rl2_redis_conf_t *rc, const char *name, rl2_doc_t *d)
{
    struct timeval ct = { rc->connect_timeout_ms / 1000,
                          (rc->connect_timeout_ms % 1000) * 1000 };
    struct timeval tt = { rc->command_timeout_ms / 1000,
                          (rc->command_timeout_ms % 1000) * 1000 };
    redisContext  *c;
    redisReply    *r;
    char           why[256], db[16];
    const char    *auth[3] = { "AUTH", rc->username, rc->password };
    const char    *sel[2] = { "SELECT", db };
    int            n_auth = 3;

    c = rc->unix_path[0] != '\0'
            ? redisConnectUnixWithTimeout(rc->unix_path, ct)
            : redisConnectWithTimeout(rc->host, rc->port, ct);
    if (c == NULL || c->err) {
        rl2_doc_add(d, "redis", RL2_DOC_ERROR,
                    "start redis-server there, or name the right server "
                    "(-R, the policy's redis.server)",
                    "%s unreachable: %s", name,
                    c != NULL ? c->errstr : strerror(ENOMEM));
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tt);
    if (rc->password[0] != '\0') {
        /* AUTH pass, or AUTH user pass (Redis 6 ACL) */
        if (rc->username[0] == '\0') {
            auth[1] = rc->password;
            n_auth = 2;
        }
        r = rl2_doc_cmd(c, n_auth, auth, why, sizeof(why));
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            rl2_doc_add(d, "redis", RL2_DOC_ERROR,
                        "give the password the server expects (-O "
                        "user=U,password=P, the policy's redis group)",
                        "%s: AUTH refused: %s", name, r != NULL ? r->str : why);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (rc->db != 0) {
        snprintf(db, sizeof(db), "%d", rc->db);
        r = rl2_doc_cmd(c, 2, sel, why, sizeof(why));
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            rl2_doc_add(d, "redis", RL2_DOC_ERROR,
                        "name a database the server has (-O db=N)",
                        "%s: SELECT %d refused: %s", name, rc->db,
                        r != NULL ? r->str : why);
            freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}

/* INFO server's redis_version, into major; 0 when unknown. */
static int
rl2_doc_version(redisContext *c, const char *name, rl2_doc_t *d)
{
    const char *argv[2] = { "INFO", "server" };
    redisReply *r;
    const char *p;
    char        why[256], version[32] = "";
    int         major = 0;

    r = rl2_doc_cmd(c, 2, argv, why, sizeof(why));
    if (r != NULL && r->type == REDIS_REPLY_STRING
        && (p = strstr(r->str, "redis_version:")) != NULL) {
        p += 14;
        snprintf(version, sizeof(version), "%.*s", (int)strcspn(p, "\r\n"), p);
        major = atoi(version);
    }
    freeReplyObject(r);
    if (major == 0) {
        rl2_doc_add(d, "redis", RL2_DOC_OK, NULL,
                    "%s: version unknown (INFO refused)", name);
    }
    else if (major < 7) {
        rl2_doc_add(d, "redis", RL2_DOC_WARNING,
                    "Redis 7 or later (Debian 12's redis-server is 7.0)",
                    "%s is Redis %s: no functions, the store runs its "
                    "scripts with EVALSHA and EVAL (more Redis CPU per "
                    "request)",
                    name, version);
    }
    else {
        rl2_doc_add(d, "redis", RL2_DOC_OK, NULL, "%s is Redis %s", name,
                    version);
    }
    return major;
}

/* Functions, else scripts: what the store will run. */
static void
rl2_doc_scripts(redisContext *c, const char *name, int major, rl2_doc_t *d)
{
    const char *list[3] = { "FUNCTION", "LIST", "LIBRARYNAME" };
    const char *list4[4] = { list[0], list[1], list[2],
                             "ratelimit2-doctor-none" };
    const char *eval[3] = { "EVAL", "return 1", "0" };
    redisReply *f, *e;
    char        why[256], fwhy[256] = "";

    f = rl2_doc_cmd(c, 4, list4, why, sizeof(why));
    if (f != NULL && f->type != REDIS_REPLY_ERROR) {
        rl2_doc_add(d, "redis", RL2_DOC_OK, NULL,
                    "%s allows functions: the store calls its library "
                    "(FCALL)",
                    name);
        freeReplyObject(f);
        return;
    }
    snprintf(fwhy, sizeof(fwhy), "%s", f != NULL ? f->str : why);
    freeReplyObject(f);
    e = rl2_doc_cmd(c, 3, eval, why, sizeof(why));
    if (e != NULL && e->type == REDIS_REPLY_INTEGER && e->integer == 1) {
        if (major >= 7 || major == 0) {
            rl2_doc_add(d, "redis", RL2_DOC_WARNING,
                        "allow FUNCTION and FCALL (remove their "
                        "rename-command; ACL SETUSER USER +function +fcall "
                        "+fcall_ro)",
                        "%s refuses functions (%s): the store falls back to "
                        "scripts (EVALSHA, EVAL: more Redis CPU per request)",
                        name, fwhy);
        }
    }
    else {
        rl2_doc_add(d, "redis", RL2_DOC_ERROR,
                    "allow FUNCTION and FCALL, or EVAL, EVALSHA and SCRIPT "
                    "(remove their rename-command; ACL SETUSER USER "
                    "+function +fcall +eval +evalsha +script)",
                    "%s refuses functions (%s) and scripts (%s): the store "
                    "cannot count anything there",
                    name, fwhy, e != NULL && e->str != NULL ? e->str : why);
    }
    freeReplyObject(e);
}

static int
rl2_doc_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

/* The median round trip of RL2_DOC_PINGS PINGs. */
static void
rl2_doc_rtt(redisContext *c, const char *name, rl2_doc_t *d)
{
    const char *ping[1] = { "PING" };
    int64_t     rtt_us[RL2_DOC_PINGS];
    char        why[256];

    for (int i = 0; i < RL2_DOC_PINGS; i++) {
        int64_t     t0 = rl2_mono_us();
        redisReply *r = rl2_doc_cmd(c, 1, ping, why, sizeof(why));

        rtt_us[i] = rl2_mono_us() - t0;
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            rl2_doc_add(d, "redis", RL2_DOC_ERROR, NULL, "%s: PING: %s", name,
                        r != NULL ? r->str : why);
            freeReplyObject(r);
            return;
        }
        freeReplyObject(r);
    }
    qsort(rtt_us, RL2_DOC_PINGS, sizeof(rtt_us[0]), rl2_doc_cmp_i64);
    if (rtt_us[RL2_DOC_PINGS / 2] > RL2_DOC_RTT_WARN_US) {
        rl2_doc_add(d, "redis", RL2_DOC_WARNING,
                    "put Redis near the servers (the same host or network), "
                    "or count in lease mode (the policy's redis lease = "
                    "true)",
                    "%s: round trip %.2f ms (median of %d PINGs): every "
                    "request waits that long",
                    name, rtt_us[RL2_DOC_PINGS / 2] / 1000.0, RL2_DOC_PINGS);
        return;
    }
    rl2_doc_add(d, "redis", RL2_DOC_OK, NULL,
                "%s: round trip %.3f ms (median of %d PINGs)", name,
                rtt_us[RL2_DOC_PINGS / 2] / 1000.0, RL2_DOC_PINGS);
}

/* CONFIG GET NAME's value into buf; 0, or -1 with why. */
static int
rl2_doc_config(redisContext *c, const char *key, char *buf, size_t size,
               char *why, size_t why_size)
{
    const char *argv[3] = { "CONFIG", "GET", key };
    redisReply *r = rl2_doc_cmd(c, 3, argv, why, why_size);
    int         rc = -1;

    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        snprintf(why, why_size, "%s", r->str);
    }
    else if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2
             && r->element[1]->type == REDIS_REPLY_STRING) {
        snprintf(buf, size, "%s", r->element[1]->str);
        rc = 0;
    }
    else if (r != NULL) {
        snprintf(why, why_size, "no such setting");
    }
    freeReplyObject(r);
    return rc;
}

/* maxmemory-policy: the policies that may evict live counters (each has
 * an expiry) warn, but volatile-ttl, which takes those nearest their end
 * first, and noeviction. */
static void
rl2_doc_eviction(redisContext *c, const char *name, rl2_doc_t *d)
{
    char policy[64], maxmem[32] = "?", why[256];

    if (rl2_doc_config(c, "maxmemory-policy", policy, sizeof(policy), why,
                       sizeof(why))
        != 0) {
        rl2_doc_add(d, "redis", RL2_DOC_OK, NULL,
                    "%s: maxmemory-policy unknown (CONFIG GET: %s)", name, why);
        return;
    }
    (void)rl2_doc_config(c, "maxmemory", maxmem, sizeof(maxmem), why,
                         sizeof(why));
    if (strcmp(policy, "noeviction") == 0
        || strcmp(policy, "volatile-ttl") == 0) {
        rl2_doc_add(d, "redis", RL2_DOC_OK, NULL,
                    "%s: maxmemory-policy %s (maxmemory %s)", name, policy,
                    maxmem);
        return;
    }
    rl2_doc_add(d, "redis", RL2_DOC_WARNING,
                "CONFIG SET maxmemory-policy volatile-ttl (or noeviction "
                "with enough maxmemory), and the same in redis.conf",
                "%s: maxmemory-policy %s (maxmemory %s%s): Redis may evict "
                "live counters and let clients past their limits",
                name, policy, maxmem,
                strcmp(maxmem, "0") == 0 ? ": none yet, but the policy "
                                           "applies once one is set"
                                         : "");
}

void
rl2_doc_redis(const rl2_backend_conf_t *conf, rl2_doc_t *d)
{
    const rl2_redis_conf_t *rc = &conf->redis;
    redisContext           *c;
    char                    name[RL2_REDIS_HOST_MAX + 16];
    int                     major;

    if (!conf->redis_enabled) {
        rl2_doc_add(d, "redis", RL2_DOC_OK, NULL,
                    "none configured: the local zone alone counts");
        return;
    }
    if (rc->n_sentinels > 0 || rc->n_seeds > 0) {
        rl2_doc_add(d, "redis", RL2_DOC_OK,
                    "ratelimit2ctl doctor -R HOST:PORT for each server",
                    "a %s: its servers are not inspected one by one",
                    rc->n_seeds > 0 ? "Redis Cluster" : "Sentinel setup");
        return;
    }
    /* A server that closes the connection must not kill the tool on
     * its next write (redis.h): an error, then. */
    signal(SIGPIPE, SIG_IGN);
    rl2_doc_redis_name(rc, name, sizeof(name));
    if ((c = rl2_doc_connect(rc, name, d)) == NULL) {
        return;
    }
    major = rl2_doc_version(c, name, d);
    rl2_doc_scripts(c, name, major, d);
    rl2_doc_rtt(c, name, d);
    rl2_doc_eviction(c, name, d);
    redisFree(c);
}
