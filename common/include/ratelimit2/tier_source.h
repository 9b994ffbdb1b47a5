/*
 * tier_source.h -- a client's tier from a Redis hash a billing system
 * writes (docs/tiers.md: the second source after a per-client override
 * in the policy).
 *
 * The policy says where to look (tier_from.redis: a hash key and a field,
 * one of them holding "%s" for the client's identity, and which identity:
 * the user name as authenticated, or the hex SHA-256 of the API key, so
 * the key itself never reaches Redis).  A tier source does the looking:
 * HGET on its own per-thread Redis connections, with a bounded cache per
 * process in front (positive and negative answers kept for the policy's
 * `cache` seconds; when full, the oldest entry of a small set is
 * replaced).  A lock guards only the cache lookup and update, never the
 * Redis I/O.
 *
 * When the circuit in front of Redis is not closed, or Redis fails or
 * times out (one command timeout at most), the lookup answers "no tier"
 * and nothing is cached: the request goes on to the next source.
 */
#ifndef RL2_TIER_SOURCE_H
#define RL2_TIER_SOURCE_H

#include <stdint.h>

#include "ratelimit2/failover.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/redis.h"
#include "ratelimit2/status.h"

/* Identities a tier may be looked up by (tier_from.redis.by). */
#define RL2_TIER_BY_USER   1u
#define RL2_TIER_BY_APIKEY 2u
#define RL2_TIER_BY_MAX    2

#define RL2_TIER_ID_MAX 256 /* longest user name looked up, bytes */

/* tier_from.redis in the policy (config_store.c). */
typedef struct rl2_tier_redis {
    const char *key;                 /* hash key, maybe with one "%s" */
    const char *field;               /* field, maybe with one "%s" ("tier") */
    unsigned    by[RL2_TIER_BY_MAX]; /* identities in order of preference */
    size_t      n_by;
    int64_t     cache_us;      /* how long an answer is kept, 0..1 day */
    uint32_t    cache_entries; /* per process, >= 16 */
    const char *file;          /* where it was written */
    int         line;
} rl2_tier_redis_t;

typedef struct rl2_tier_source rl2_tier_source_t;

/* Counters since creation, for tests and status pages. */
typedef struct {
    uint64_t hits;     /* answered from the cache */
    uint64_t lookups;  /* HGETs answered by Redis */
    uint64_t failures; /* HGETs that failed (nothing cached) */
    uint64_t skipped;  /* no HGET: the circuit was not closed */
} rl2_tier_source_stats_t;

#endif /* RL2_TIER_SOURCE_H */
