/*
 * tier_source.c -- tiers from a billing system's Redis hash, behind a
 * bounded per-process cache (tier_source.h).
 *
 * The cache is set-associative: an answer's tag (a SipHash of the Redis
 * key and field asked) picks a set of RL2_TIER_WAYS entries; a new answer
 * replaces an expired or the oldest entry of its set.  Memory is fixed at
 * creation whatever the number of distinct clients, and a flood of new
 * identities only pushes out old answers.  Sets are guarded by striped
 * mutexes, held for a scan of one set; Redis is asked with no lock held,
 * so two threads missing on the same client may both ask (harmless).
 * In a Redis Cluster the HGET goes to the master of the hash key's slot,
 * redirections followed by the router (redis_cluster.c).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "ratelimit2/tier_source.h"

#include "base/sha256.h"
#include "base/base_internal.h"
#include "store/store_internal.h"
#include "redis/redis_internal.h"

#define RL2_TIER_WAYS    4
#define RL2_TIER_LOCKS   16
#define RL2_TIER_ARG_MAX (RL2_TIER_ID_MAX + 512)

typedef struct {
    uint64_t tag;                    /* 0: empty */
    int64_t  stored_us;              /* monotonic */
    char     tier[RL2_NAME_MAX + 1]; /* "": Redis has none */
} rl2_tier_entry_t;

struct rl2_tier_source {
    rl2_redis_pool_t       *pool;    /* one server (or Sentinel's master) */
    rl2_redis_cluster_t    *cluster; /* or a Cluster, routed by slot */
    const rl2_circuit_t    *circuit;
    size_t                  n_sets;
    rl2_tier_entry_t       *entries; /* n_sets * RL2_TIER_WAYS */
    pthread_mutex_t         locks[RL2_TIER_LOCKS];
    rl2_tier_source_stats_t stats; /* updated atomically */
};

static const rl2_hash_key_t rl2_tier_tag_key = { { 't', 'i', 'e', 'r', '-', 's',
                                                   'o', 'u', 'r', 'c', 'e', '-',
                                                   't', 'a', 'g', '1' } };

rl2_status_t
rl2_tier_source_create(const rl2_redis_conf_t *conf,
                       const rl2_circuit_t *circuit, uint32_t entries,
                       rl2_tier_source_t **out, rl2_err_t *err)
{
    rl2_tier_source_t *src = calloc(1, sizeof(*src));
    rl2_status_t       st;

    *out = NULL;
    if (src == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    src->n_sets = (entries + RL2_TIER_WAYS - 1) / RL2_TIER_WAYS;
    src->n_sets = src->n_sets > 0 ? src->n_sets : 1;
    src->entries = calloc(src->n_sets * RL2_TIER_WAYS, sizeof(*src->entries));
    if (src->entries == NULL) {
        free(src);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    st = conf->n_seeds > 0 ? rl2_redis_cluster_create(conf, &src->cluster, err)
                           : rl2_redis_pool_create(conf, &src->pool, err);
    if (st != RL2_OK) {
        free(src->entries);
        free(src);
        return st;
    }
    for (int i = 0; i < RL2_TIER_LOCKS; i++) {
        pthread_mutex_init(&src->locks[i], NULL);
    }
    src->circuit = circuit;
    *out = src;
    return RL2_OK;
}

void
rl2_tier_source_destroy(rl2_tier_source_t *src)
{
    if (src == NULL) {
        return;
    }
    if (src->cluster != NULL) {
        rl2_redis_cluster_destroy(src->cluster);
    }
    else {
        rl2_redis_pool_destroy(src->pool);
    }
    for (int i = 0; i < RL2_TIER_LOCKS; i++) {
        pthread_mutex_destroy(&src->locks[i]);
    }
    free(src->entries);
    free(src);
}

void
rl2_tier_source_stats(const rl2_tier_source_t *src,
                      rl2_tier_source_stats_t *out)
{
    out->hits = __atomic_load_n(&src->stats.hits, __ATOMIC_RELAXED);
    out->lookups = __atomic_load_n(&src->stats.lookups, __ATOMIC_RELAXED);
    out->failures = __atomic_load_n(&src->stats.failures, __ATOMIC_RELAXED);
    out->skipped = __atomic_load_n(&src->stats.skipped, __ATOMIC_RELAXED);
}

static void
rl2_tier_count(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* ---- the cache ---- */

/* 1 with the cached answer in tier (maybe ""), 0 on a miss. */
static int
rl2_tier_cached(rl2_tier_source_t *src, uint64_t tag, int64_t now_us,
                int64_t ttl_us, char *tier)
{
    size_t            set = tag % src->n_sets;
    rl2_tier_entry_t *e = &src->entries[set * RL2_TIER_WAYS];
    pthread_mutex_t  *lock = &src->locks[set % RL2_TIER_LOCKS];
    int               found = 0;

    pthread_mutex_lock(lock);
    for (int w = 0; w < RL2_TIER_WAYS; w++) {
        if (e[w].tag == tag && now_us - e[w].stored_us < ttl_us
            && now_us >= e[w].stored_us) {
            memcpy(tier, e[w].tier, sizeof(e[w].tier));
            found = 1;
            break;
        }
    }
    pthread_mutex_unlock(lock);
    return found;
}

static void
rl2_tier_store(rl2_tier_source_t *src, uint64_t tag, int64_t now_us,
               const char *tier)
{
    size_t            set = tag % src->n_sets;
    rl2_tier_entry_t *e = &src->entries[set * RL2_TIER_WAYS];
    pthread_mutex_t  *lock = &src->locks[set % RL2_TIER_LOCKS];
    int               victim = 0;

    pthread_mutex_lock(lock);
    for (int w = 0; w < RL2_TIER_WAYS; w++) {
        if (e[w].tag == tag || e[w].tag == 0) {
            victim = w;
            break;
        }
        if (e[w].stored_us < e[victim].stored_us) {
            victim = w;
        }
    }
    e[victim].tag = tag;
    e[victim].stored_us = now_us;
    snprintf(e[victim].tier, sizeof(e[victim].tier), "%s", tier);
    pthread_mutex_unlock(lock);
}

/* ---- the question ---- */

/* pattern with its "%s" (if any) replaced by id; -1 when too long. */
static int
rl2_tier_fill(const char *pattern, const char *id, char *out, size_t size)
{
    const char *pct = strstr(pattern, "%s");
    int         n;

    n = pct == NULL ? snprintf(out, size, "%s", pattern)
                    : snprintf(out, size, "%.*s%s%s", (int)(pct - pattern),
                               pattern, id, pct + 2);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

/* HGET key field: 1 with the answer in tier ("" for none), 0 when Redis
 * could not answer. */
static int
rl2_tier_ask(rl2_tier_source_t *src, const char *key, size_t klen,
             const char *field, size_t flen, char *tier)
{
    const char       *argv[3] = { "HGET", key, field };
    size_t            argvlen[3] = { 4, klen, flen };
    rl2_redis_conn_t *conn;
    redisReply       *reply;
    rl2_err_t         err;

    if (src->cluster != NULL) {
        if (rl2_redis_cluster_command(
                src->cluster, rl2_redis_key_slot(key, klen), 3, argv, argvlen,
                "tier lookup", &reply, NULL, &err)
            != RL2_OK) {
            return 0;
        }
    }
    else if (rl2_redis_pool_get(src->pool, &conn, &err) != RL2_OK
             || rl2_redis_command(conn, 3, argv, argvlen, "tier lookup", &reply,
                                  &err)
                    != RL2_OK) {
        return 0;
    }
    tier[0] = '\0';
    /* WRONGTYPE (the key is not a hash) is an answer: the billing system
     * wrote nothing we can use, as is a name too long for a tier.  Other
     * error replies (NOPERM, NOAUTH, a Cluster's MOVED) say nothing about
     * the client: not answers, so not cached. */
    if (reply->type == REDIS_REPLY_ERROR
        && strncmp(reply->str, "WRONGTYPE", 9) != 0) {
        rl2_redis_reply_free(reply);
        return 0;
    }
    if (reply->type == REDIS_REPLY_STRING && reply->len > 0
        && reply->len <= RL2_NAME_MAX) {
        memcpy(tier, reply->str, reply->len);
        tier[reply->len] = '\0';
    }
    rl2_redis_reply_free(reply);
    return 1;
}

int
rl2_tier_source_get(rl2_tier_source_t *src, const rl2_tier_redis_t *tr,
                    const char *id, int64_t now_us, char *name)
{
    char     key[RL2_TIER_ARG_MAX], field[RL2_TIER_ARG_MAX];
    int      klen, flen;
    uint64_t tag;

    name[0] = '\0';
    if (tr == NULL || id == NULL
        || (klen = rl2_tier_fill(tr->key, id, key, sizeof(key))) < 0
        || (flen = rl2_tier_fill(tr->field, id, field, sizeof(field))) < 0) {
        return 0;
    }
    /* Tagged by what is asked, so a reloaded policy with another key or
     * field never reads an answer to a different question. */
    key[klen] = '\n';
    tag = rl2_siphash(&rl2_tier_tag_key, key, (size_t)klen + 1);
    tag ^= rl2_siphash(&rl2_tier_tag_key, field, (size_t)flen) * 31;
    tag = tag != 0 ? tag : 1;
    key[klen] = '\0';
    if (rl2_tier_cached(src, tag, now_us, tr->cache_us, name)) {
        rl2_tier_count(&src->stats.hits);
        return name[0] != '\0';
    }
    if (src->circuit != NULL
        && rl2_circuit_state(src->circuit) != RL2_CIRCUIT_CLOSED) {
        rl2_tier_count(&src->stats.skipped);
        return 0;
    }
    if (!rl2_tier_ask(src, key, (size_t)klen, field, (size_t)flen, name)) {
        rl2_tier_count(&src->stats.failures);
        return 0;
    }
    rl2_tier_count(&src->stats.lookups);
    if (tr->cache_us > 0) {
        rl2_tier_store(src, tag, now_us, name);
    }
    return name[0] != '\0';
}
