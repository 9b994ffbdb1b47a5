/*
 * store_internal.h -- what the store folder keeps from libratelimit2-dev
 * (private to the core): the circuit breaker's and the zone's entry
 * points the rest of the core calls, and the layout of a local zone.
 *
 *   circuit.c          the circuit breaker in shared memory, the failover
 *                      modes' names and parsers
 *   failover.c         the failover store: Redis while the circuit is
 *                      closed, the local zone (or a refusal) otherwise
 *   refund_queue.c     the refunds Redis is owed while the circuit is
 *                      not closed, kept in the circuit's shm object
 *   overlimit.c        the over-limit cache: a store over another that
 *                      answers what it refused, until the refusal ends,
 *                      from a zone of its own ("<zone>.overlimit")
 *   local_store.c      the store interface over a local zone
 *   zone.c             the table: hash index, the probation and
 *                      protected LRU lists, the free list, the per-key
 *                      entry points, statistics
 *   zone_shm.c         the shm object: geometry, create / attach / validate
 *                      and the race between them, unlink, the robust lock
 *                      and its recovery after a crash
 *   store_internal.h   this file
 *
 * Owns the shm object's layout and the per-process handle.  Layout
 * (offsets from the start of the object, never pointers, so every process
 * may map it at a different address):
 *
 *   0            zone_hdr_t: magic, version, geometry, counters, the heads
 *                and tails of the two LRU lists, free list head, robust
 *                mutex
 *   index_off    uint32_t index[index_slots]: open addressing with linear
 *                probing; 0 = empty slot, else an entry reference.
 *                index_slots is a power of two >= 2 * entries, so the load
 *                factor never exceeds 1/2.  Deletion shifts later members
 *                of the probe run back (no tombstones).
 *   entries_off  entries x { zone_entry_t, state_size bytes of state }:
 *                the state follows its 48-byte entry header and is
 *                8-aligned.
 *
 * An entry reference is 1 + the entry's position in the array; 0 means
 * none.  Any change to these structures must bump ZONE_VERSION, so that a
 * zone left by an older build is replaced rather than misread.
 */
#ifndef RL2_STORE_LOCAL_INTERNAL_H
#define RL2_STORE_LOCAL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ratelimit2/failover.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"

/* ---- beside ratelimit2/failover.h (not installed) ---- */

const char *rl2_failover_mode_name(rl2_failover_mode_t mode);

/* The count one instance admits on its own while the circuit is open:
 * max(floor(count x share_ppm / 10^6), 1).  count >= 1; share_ppm is
 * clamped to [RL2_SHARE_MIN, RL2_SHARE_ONE]. */
int64_t rl2_failover_local_count(int64_t count, uint32_t share_ppm);

void rl2_circuit_conf_default(rl2_circuit_conf_t *conf);

rl2_status_t rl2_circuit_unlink(const char *name, rl2_err_t *err);

/* The next three take the monotonic clock in µs (tests pass their own).
 * Route one request; a closed circuit costs one atomic load. */
rl2_route_t rl2_circuit_route(rl2_circuit_t *circuit, int64_t now_us);

/* Report how a request routed to Redis went.  Returns 1 when this call
 * made the transition (success: closed the circuit, *down_us, which may
 * be NULL, set to how long it was open; failure: opened it), so that the
 * caller, and only it, sends the alerts. */
int rl2_circuit_success(rl2_circuit_t *circuit, rl2_route_t route,
                        int64_t now_us, int64_t *down_us);
int rl2_circuit_failure(rl2_circuit_t *circuit, rl2_route_t route,
                        int64_t now_us);

/* The queue of refunds owed to Redis, in the circuit's shared memory
 * (refund_queue.c); valid until rl2_circuit_close(circuit). */
typedef struct rl2_refund_queue rl2_refund_queue_t;

rl2_refund_queue_t *rl2_circuit_refunds(rl2_circuit_t *circuit);

rl2_circuit_state_t rl2_circuit_state(const rl2_circuit_t *circuit);
void rl2_circuit_stats(const rl2_circuit_t *circuit, rl2_circuit_stats_t *out);
const rl2_circuit_conf_t *rl2_circuit_conf(const rl2_circuit_t *circuit);

/* After rl2_decide() failed: should the front end answer 503?  True for a
 * failover store in `closed` mode whose circuit is open or half-open, or
 * whose last Redis call failed; *retry_after_s (may be NULL) is then the
 * probe interval in whole seconds, rounded up.  False for any other
 * store: the front end applies its usual store-error policy. */
int rl2_failover_refusing(const rl2_store_t *store, int64_t *retry_after_s);

/* ---- the refund queue (refund_queue.c) ----
 *
 * Refunds of layers Redis counted, issued while the circuit is not closed
 * (no request touches Redis then), wait here until Redis answers again
 * and are then sent once.  The queue lives in the circuit's shm object,
 * so it is one per host, like the circuit: any process that finds Redis
 * back replays what every process queued, and a child that exits leaves
 * its refunds to the others.  A fixed array of RL2_REFUND_SLOTS
 * one-layer records; no lock: each slot has an owner word that a
 * compare-and-swap moves
 *
 *     FREE -> FILLING(pid) -> READY -> SENDING(pid) -> FREE
 *
 * so a record is written by one process and sent by one process, once.
 * A slot left FILLING or SENDING by a process that died is taken back
 * by the next replay (the record is counted dropped, or failed: it may
 * have been sent).  Never blocks and never allocates: when every slot is
 * taken the refund is counted dropped.  A record older than
 * RL2_REFUND_MAX_AGE_US is not sent (counted dropped): a concurrency
 * slot's key lives an hour after its last admission, and a release must
 * reach the key that counted it, not a later one of the same client. */

#define RL2_REFUND_SLOTS      1024
#define RL2_REFUND_MAX_AGE_US (600 * INT64_C(1000000)) /* 10 minutes */
/* Longer than any Redis call of a replay takes to be answered or to time
 * out (connect and command timeouts are at most 60 s each): a slot
 * SENDING for longer than RL2_REFUND_MAX_AGE_US plus this is taken back
 * whatever its owner's pid says (refund_queue.c). */
#define RL2_REFUND_SEND_GRACE_US (600 * INT64_C(1000000))

/* What the Redis refund script needs of a layer, copied out of it: the
 * limit's parameters, never a pointer (another process replays it). */
typedef struct {
    rl2_digest_t      key;
    rl2_algo_params_t algo;
    rl2_algo_params_t overflow;
    int64_t           cost;
    int64_t           committed_us; /* Redis' clock at the commit */
    int64_t           queued_us;    /* monotonic, when queued */
    uint32_t          flags;        /* RL2_REFUND_F_* */
    uint32_t          pad;
} rl2_refund_rec_t;

#define RL2_REFUND_F_DRY_RUN   1u
#define RL2_REFUND_F_UNLIMITED 2u
#define RL2_REFUND_F_OVERFLOW  4u /* the overflow allowance counted it */

typedef struct {
    _Atomic uint64_t owner; /* state << 32 | pid (refund_queue.c) */
    rl2_refund_rec_t rec;
} rl2_refund_slot_t;

/* Part of the circuit's shm object: all zero bytes is an empty queue. */
struct rl2_refund_queue {
    _Atomic uint64_t  queued;   /* records put in */
    _Atomic uint64_t  replayed; /* sent, and Redis answered */
    _Atomic uint64_t  dropped;  /* never sent: full, too old, writer died */
    _Atomic uint64_t  failed;   /* sent without an answer (also direct) */
    _Atomic uint32_t  pending;  /* slots FILLING or READY */
    _Atomic uint32_t  cursor;   /* where the next push starts looking */
    rl2_refund_slot_t slot[RL2_REFUND_SLOTS];
};

/* How one claimed batch went. */
typedef enum {
    RL2_REFUND_REPLAYED = 0, /* Redis answered: applied */
    RL2_REFUND_FAILED,       /* sent, no answer: Redis may still apply
                                it, so it is not sent again */
    RL2_REFUND_DROPPED       /* never applied (a malformed record) */
} rl2_refund_outcome_t;

/* Queue the layers (Redis counted each of them; the limit and key of
 * each are copied, the layers are not kept).  now_us is the monotonic
 * clock.  Returns how many were queued; the others are counted dropped. */
size_t rl2_refunds_push(rl2_refund_queue_t *q, const rl2_layer_t *layers,
                        size_t n, int64_t now_us);

/* Slots READY now: 0 says that there is nothing to replay (one load). */
uint32_t rl2_refunds_pending(const rl2_refund_queue_t *q);

/* Claim up to max READY records, scanning from *pos (0 on the first
 * call; moved past what was scanned), into layers[] with their limits in
 * limits[] (both max long, owned by the caller) and their slots in
 * slots[].  Records past RL2_REFUND_MAX_AGE_US are freed and counted
 * dropped; slots a dead process left are taken back.  Returns how many
 * were claimed: the caller sends them, then hands them back with
 * rl2_refunds_finish(). */
size_t rl2_refunds_claim(rl2_refund_queue_t *q, size_t *pos,
                         rl2_layer_t *layers, rl2_limit_t *limits,
                         uint32_t *slots, size_t max, int64_t now_us);

/* Free claimed slots, counting them as `outcome` says. */
void rl2_refunds_finish(rl2_refund_queue_t *q, const uint32_t *slots, size_t n,
                        rl2_refund_outcome_t outcome);

/* Count refunds sent straight to Redis that got no answer. */
void rl2_refunds_failed(rl2_refund_queue_t *q, size_t n);

/* The counters, into the refund part of *out. */
void rl2_refunds_stats(const rl2_refund_queue_t *q, rl2_circuit_stats_t *out);

/* ---- the over-limit cache (overlimit.c) ----
 *
 * A store over `inner` (Redis behind the failover store, in the stack
 * backend.c builds) that keeps, in a zone shared by the host's
 * processes, each enforcing layer the inner store refused, until the
 * refusal's end (now + its retry): a request that meets such a layer
 * before then, for a cost no smaller and under the same limit, is
 * refused without an inner call.  Exact in one direction: it never
 * admits what the inner store would refuse; it may refuse longer than
 * needed where capacity came back early (a refund).  Concurrency limits,
 * limits with an overflow allowance, dry-run and unlimited layers are
 * never cached (overlimit.c says why).
 *
 * An entry counts only under the generation it was recorded under: any
 * change to the runtime override table (on any host, through the
 * mirror; ratelimit2ctl reset moves the fleet's counter on too) makes
 * every entry stale. */

/* One zone entry's state.  Times are the monotonic clock (µs), which the
 * host's processes share. */
typedef struct {
    int64_t      until_us;   /* refused before this */
    int64_t      reset_us;   /* the full limit back (headers) */
    int64_t      cost;       /* the cost refused: a smaller one may fit */
    int64_t      limit;      /* result.limit (headers) */
    uint64_t     generation; /* of the table when the inner store refused */
    rl2_digest_t params;     /* rl2_overlimit_params() of the limit */
} rl2_overlimit_entry_t;

#define RL2_OVERLIMIT_STATE_SIZE sizeof(rl2_overlimit_entry_t)

/* The cache's zone defaults to a quarter of the counters' entries, at
 * least this many. */
#define RL2_OVERLIMIT_MIN_ENTRIES 1024u

/* Called once per request the cache answered (metrics). */
typedef void (*rl2_overlimit_hit_fn)(void *ctx);

/* inner and zone (of RL2_OVERLIMIT_STATE_SIZE bytes or more per entry)
 * are borrowed: the caller keeps them until after rl2_store_destroy()
 * of this store. */
rl2_status_t rl2_store_overlimit_create(rl2_store_t *inner, rl2_zone_t *zone,
                                        rl2_store_t **out, rl2_err_t *err);

/* Before requests use the store: the word whose value is the current
 * generation (NULL: always 0), and what counts an answer (NULL: none).
 * Both do nothing to a store that is not an over-limit cache. */
void rl2_overlimit_watch(rl2_store_t            *store,
                         const _Atomic uint64_t *generation);
void rl2_overlimit_on_hit(rl2_store_t *store, rl2_overlimit_hit_fn fn,
                          void *ctx);

/* Whether the host holds units of key that a request may take or that
 * must still go back (lease mode, redis_lease.c): a cached refusal of
 * that key does not stand then, or the cache would strand them.  Set
 * before requests use the store; does nothing to another store. */
typedef int (*rl2_overlimit_held_fn)(void *ctx, rl2_digest_t key,
                                     int64_t now_us);
void rl2_overlimit_on_held(rl2_store_t *store, rl2_overlimit_held_fn fn,
                           void *ctx);

/* What an entry records of a limit: its algorithm's parameters. */
rl2_digest_t rl2_overlimit_params(const rl2_limit_t *limit);

/* ---- beside ratelimit2/store_local.h (not installed) ---- */

/* Take and release the zone lock.  Lock returns RL2_OK, recovering a lock
 * whose owner died, or RL2_ERR_SYS with a message. */
rl2_status_t rl2_zone_lock(rl2_zone_t *zone, rl2_err_t *err);
void         rl2_zone_unlock(rl2_zone_t *zone);

/* Under the lock: the state of `key`, state_size bytes, 8-aligned.  A key
 * that is absent, or whose expiry is before now_us, gets zeroed state in
 * an entry at the head of probation (taken as zone.c's rule says when
 * the zone is full); a live key is promoted, as by rl2_zone_touch.  Never
 * returns NULL.  The pointer is valid until the lock is released. */
void *rl2_zone_get(rl2_zone_t *zone, rl2_digest_t key, int64_t now_us);

/* Under the lock: the state of key if present and not expired at now_us,
 * else NULL.  Does not insert or change recency (for inspection). */
void *rl2_zone_peek(rl2_zone_t *zone, rl2_digest_t key, int64_t now_us);

/* Under the lock: rl2_zone_peek, and the entry's reference in *ref for
 * rl2_zone_touch when the state is returned. */
void *rl2_zone_lookup(rl2_zone_t *zone, rl2_digest_t key, int64_t now_us,
                      uint32_t *ref);

/* Under the lock: promote the entry rl2_zone_lookup found (it counts a
 * second request, or it refuses one): it becomes the most recently used
 * protected entry, as rl2_zone_get would make it, without a second
 * lookup. */
void rl2_zone_touch(rl2_zone_t *zone, uint32_t ref);

/* Under the lock: keep the entry whose state pointer rl2_zone_get returned
 * until at least until_us (expiry never moves earlier). */
void rl2_zone_keep_until(rl2_zone_t *zone, void *state, int64_t until_us);

/* Under the lock: forget key (its next get returns fresh state). */
void rl2_zone_remove(rl2_zone_t *zone, rl2_digest_t key);

/* Takes the lock: forget every layer's key (a reset: of the local
 * store's counters, of the over-limit cache, of the lease table). */
rl2_status_t rl2_zone_forget(rl2_zone_t *zone, const rl2_layer_t *layers,
                             size_t n, rl2_err_t *err);

/* For the metrics' upkeep and scrapes (backend.c): count the live keys at
 * now_us (the clock the zone's users keep expiry in: the monotonic clock of
 * rl2_clock_now() for the local store), taking back every expired entry on the
 * way.  The table is walked in chunks, the lock taken for each (a few thousand
 * entries), so requests wait at most one chunk: the figures are exact for each
 * chunk when it was read. *stats (may be NULL) gets rl2_zone_stats() taken
 * after the walk. */
rl2_status_t rl2_zone_usage(rl2_zone_t *zone, int64_t now_us,
                            rl2_zone_usage_t *out, rl2_zone_stats_t *stats,
                            rl2_err_t *err);

/* Under the lock: the entry whose state pointer rl2_zone_get returned
 * holds a key of the limit tagged `tag` (not 0), called `name`; the
 * zone's table of limit names learns the name the first time it meets
 * the tag (zone.c: keys per limit).  Called for a new key only, never on
 * the path of a key the zone holds. */
void rl2_zone_tag(rl2_zone_t *zone, void *state, uint32_t tag,
                  const char *name);

/* The tag of a limit's keys: a word of its counters' digest key, which
 * limits sharing counters share (never 0). */
uint32_t rl2_zone_limit_tag(const rl2_hash_key_t *key_seed);

/* Takes the lock: take back the expired entries among the next `max`
 * entries of the table, from where the last sweep stopped (zone.c: the
 * sweep).  Returns how many it took back in *reclaimed (may be NULL). */
rl2_status_t rl2_zone_sweep(rl2_zone_t *zone, int64_t now_us, uint32_t max,
                            uint64_t *reclaimed, rl2_err_t *err);

/* Entries the once-a-second upkeep sweeps while zone_full has a level to
 * decide (metrics_clients.c): a zone of E entries then holds an expired
 * entry at most ceil(E / this) seconds. */
#define RL2_ZONE_SWEEP_PER_UPKEEP 16384u

#define ZONE_MAGIC   0x5a324c52u /* "RL2Z" read little-endian */
#define ZONE_VERSION 3u          /* 3: tags, the sweep, reclaimed */
#define ZONE_NIL     0u          /* no entry */

/* Which list an entry is on (zone_entry_t.list).  Probation holds keys
 * that have counted one admitted request; protected holds keys that have
 * counted a second one or refused a request (zone.c says why). */
#define ZONE_FREE      0u
#define ZONE_PROBATION 1u
#define ZONE_PROTECTED 2u

_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
               "shared memory needs address-free 32-bit atomics");

typedef struct {
    rl2_digest_t key;
    int64_t      expires_us; /* state is fresh when before now */
    uint32_t     prev;       /* LRU: towards the head (newer) */
    uint32_t     next;       /* LRU: towards the tail; free list */
    uint32_t     hash;       /* index hash; home = hash & mask */
    uint32_t     list;       /* ZONE_FREE, _PROBATION or _PROTECTED */
    uint32_t     tag;        /* the limit of the key (rl2_zone_tag), 0:
                                none said */
    uint32_t pad;
} zone_entry_t;

_Static_assert(sizeof(zone_entry_t) % 8 == 0, "state must stay 8-aligned");

/* The zone's table of limit names, for its live keys per limit: open
 * addressing on the tag, a slot free while its tag is 0.  Written under
 * the lock; read as untrusted (zone.c). */
#define ZONE_TAGS RL2_ZONE_LIMITS
_Static_assert((ZONE_TAGS & (ZONE_TAGS - 1)) == 0, "a power of two");

typedef struct {
    uint32_t tag;
    char     name[RL2_ZONE_LIMIT_NAME_MAX + 1];
} zone_tag_t;

typedef struct {
    _Atomic uint32_t magic;       /* ZONE_MAGIC, stored last */
    uint32_t         version;     /* ZONE_VERSION */
    uint32_t         hdr_size;    /* sizeof(zone_hdr_t): ABI check */
    uint32_t         entries;     /* capacity in keys */
    uint32_t         index_slots; /* power of two >= 2 * entries */
    uint32_t         pad;
    uint64_t         state_size; /* bytes, multiple of 8 */
    uint64_t         stride;     /* bytes per entry with its state */
    uint64_t         index_off;  /* bytes from the object's start */
    uint64_t         entries_off;
    uint64_t         bytes; /* size of the whole object */
    rl2_hash_key_t   seed;  /* per-zone index key (anti-flood) */
    uint64_t         used;  /* entries on either LRU list */
    uint64_t         evictions;
    uint64_t         lock_recoveries;
    uint32_t         lru_head[2];    /* [list - 1]: most recently used */
    uint32_t         lru_tail[2];    /* [list - 1]: least recently used */
    uint32_t         protected_used; /* entries on the protected list */
    uint32_t         free_head;
    _Atomic uint32_t dirty;      /* 1 while the index or lists change */
    uint32_t         sweep_next; /* position the next sweep starts at */
    uint64_t         reclaimed;  /* expired entries taken back */
    zone_tag_t       tags[ZONE_TAGS];
    pthread_mutex_t  lock;
} zone_hdr_t;

typedef struct {
    uint32_t entries;
    uint32_t index_slots;
    uint64_t state_size;
    uint64_t stride;
    uint64_t index_off;
    uint64_t entries_off;
    uint64_t bytes;
} zone_geom_t;

/* The per-process handle.  Geometry is copied out of the validated header
 * so that bounds never depend on what another process writes later. */
struct rl2_zone {
    zone_hdr_t    *hdr;
    uint32_t      *index;
    unsigned char *table;
    zone_geom_t    geom;
    uint32_t       mask;
    rl2_hash_key_t seed;
    char           name[RL2_ZONE_NAME_MAX + 1];
    /* geom.state_size bytes of state private to this handle, for a request
     * that finds the zone written without its lock (zone.c). */
    uint64_t scratch[];
};

/* The dirty flag brackets every change to the index and lists: a process
 * killed inside one leaves it set, and the next locker rebuilds.  The
 * signal fences stop the compiler moving those changes across it; the
 * mutex hand-over orders them for the next locker.  Inline: both run on
 * every rl2_zone_get(). */
static inline void
rl2_zone_mark_dirty(rl2_zone_t *z)
{
    atomic_store_explicit(&z->hdr->dirty, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
}

static inline void
rl2_zone_mark_clean(rl2_zone_t *z)
{
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&z->hdr->dirty, 0, memory_order_relaxed);
}

/* Under the lock: is ref the most recent protected entry?  Then a touch
 * has nothing to move (a busy client asking again).  Inline: it runs for
 * every layer of every admitted request. */
static inline int
rl2_zone_is_hot(const rl2_zone_t *z, uint32_t ref)
{
    return ref == z->hdr->lru_head[ZONE_PROTECTED - 1];
}

/* Under the lock (or before the zone is published): rebuild the index and
 * both lists from the entries (zone.c). */
void rl2_zone_rebuild(rl2_zone_t *z);

/* "local", "open", "closed". */
rl2_status_t rl2_failover_mode_parse(const char *text, rl2_failover_mode_t *out,
                                     rl2_err_t *err);

/* A decimal fraction in [0.001, 1] ("0.5", "1", "0.125") to parts per
 * million; at most 6 decimal places.  No floating point. */
rl2_status_t rl2_failover_share_parse(const char *text, uint32_t *ppm,
                                      rl2_err_t *err);

#endif
