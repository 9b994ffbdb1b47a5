/*
 * store_local.h -- the bounded local store: a fixed-size table of per-key
 * algorithm state in named POSIX shared memory.
 *
 * One zone is shared by every thread and process of one host that opens it
 * by name (Apache children inherit it; FastCGI workers and the CGI wrapper
 * attach by name).  Memory is fixed when the zone is created: `entries`
 * slots of `state_size` bytes plus a fixed header and index.  A new key's
 * entry is on probation; one that counts a second request or refuses one
 * is protected (at most half the zone).  When the table is full, a new key
 * takes an expired entry (not counted as an eviction), else evicts the
 * least recently used entry on probation: a flood of new keys cannot
 * evict a protected counter.  The local store inserts a key only when a
 * request that every enforcing layer admits commits to it: a refused
 * request never creates nor evicts an entry.
 *
 * Locking: one robust, process-shared mutex in the zone.  A process killed
 * while holding it never wedges the others: the next locker recovers the
 * mutex (EOWNERDEAD -> pthread_mutex_consistent) and counts a recovery.
 * No function here allocates after rl2_zone_open().
 */
#ifndef RL2_STORE_LOCAL_H
#define RL2_STORE_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/hash.h"
#include "ratelimit2/status.h"

typedef struct rl2_zone rl2_zone_t;

#define RL2_ZONE_MIN_ENTRIES 64u
#define RL2_ZONE_MAX_ENTRIES (1u << 26)
#define RL2_ZONE_NAME_MAX    200

typedef struct {
    uint64_t entries;         /* capacity in keys */
    uint64_t used;            /* entries holding a key: the live ones and
                                 the expired ones no sweep or new key
                                 has taken back yet */
    uint64_t evictions;       /* live entries evicted to make room */
    uint64_t lock_recoveries; /* locks recovered from a dead owner */
    uint64_t state_size;      /* bytes of algorithm state per entry */
    uint64_t bytes;           /* total size of the shared mapping */
    uint64_t reclaimed;       /* expired entries taken back (a sweep, or
                                 a new key) */
    uint64_t entry_bytes;     /* bytes per entry, its state included */
    uint64_t fixed_bytes;     /* header and index: in use however empty */
} rl2_zone_stats_t;

/* Keys per limit: a zone names at most RL2_ZONE_LIMITS limits (the first
 * it meets; one that has no live key left gives its slot up at the next
 * rl2_zone_usage()); keys of others are counted as unnamed. */
#define RL2_ZONE_LIMITS         64
#define RL2_ZONE_LIMIT_NAME_MAX 63

typedef struct {
    char     name[RL2_ZONE_LIMIT_NAME_MAX + 1];
    uint64_t keys;
} rl2_zone_limit_keys_t;

/* What the zone holds now.  A key is live until its state would decide
 * as a key the zone does not hold (its expiry: the algorithm's time for
 * the state to come back to fresh after its last admission, docs
 * operations.md); an expired key is not live even before it is taken
 * back. */
typedef struct {
    uint64_t              live;           /* live keys */
    uint64_t              bytes_used;     /* fixed_bytes + live entries */
    uint64_t              bytes_reserved; /* the mapping (stats.bytes) */
    uint64_t              reclaimed;      /* as in rl2_zone_stats_t */
    uint64_t              unnamed;        /* live keys of no named limit */
    size_t                n_limits;
    rl2_zone_limit_keys_t limits[RL2_ZONE_LIMITS]; /* [n_limits], named */
} rl2_zone_usage_t;

/* Create the zone `name` (a POSIX shm name such as "/ratelimit2"), or
 * attach to it when it exists with the same geometry (entries, state_size)
 * and a valid header: that is how counters survive a graceful restart.  An
 * existing zone of another geometry or version is unlinked and created anew
 * (processes still mapping the old one keep it until they close it).
 * state_size is rounded up to a multiple of 8.  mode is the permission of a
 * new shm object (e.g. 0600).  An existing object is used only when it
 * belongs to the caller's effective user or to root and grants no
 * permission beyond mode: otherwise RL2_ERR_STORE, with a message that
 * names it, and it is left in place (someone else could read or steer
 * the counters in it).  On success *out is a handle owned by the caller,
 * freed by rl2_zone_close(). */
rl2_status_t rl2_zone_open(const char *name, uint32_t entries,
                           size_t state_size, unsigned mode, rl2_zone_t **out,
                           rl2_err_t *err);

/* Attach to an existing zone whatever its geometry (for tools that
 * inspect a zone).  Fails if it does not exist, its header is invalid, or
 * it is not vetted as by rl2_zone_open() with mode 0600. */
rl2_status_t rl2_zone_attach(const char *name, rl2_zone_t **out,
                             rl2_err_t *err);

/* Unmap and free the handle; the shared object stays (see unlink). */
void rl2_zone_close(rl2_zone_t *zone);

/* Remove the named object; mappings stay valid until closed. */
rl2_status_t rl2_zone_unlink(const char *name, rl2_err_t *err);

size_t rl2_zone_state_size(const rl2_zone_t *zone);

/* A consistent snapshot of the zone's counters (takes the zone's lock
 * for a moment; reads only): for tools that judge a zone's size. */
rl2_status_t rl2_zone_stats(rl2_zone_t *zone, rl2_zone_stats_t *out,
                            rl2_err_t *err);

#endif /* RL2_STORE_LOCAL_H */
