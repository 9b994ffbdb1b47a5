/*
 * store_internal.h -- the layout of a local zone (private to the
 * core), shared by the two files that implement store_local.h:
 *
 *   store_local.c      the table: hash index, LRU and free lists, the
 *                      per-key entry points, statistics
 *   store_local_shm.c  the shm object: geometry, create / attach / validate
 *                      and the race between them, unlink, the robust lock
 *                      and its recovery after a crash
 *
 * Owns the shm object's layout and the per-process handle.  Layout
 * (offsets from the start of the object, never pointers, so every process
 * may map it at a different address):
 *
 *   0            zone_hdr_t: magic, version, geometry, counters, LRU head
 *                and tail, free list head, robust mutex
 *   index_off    uint32_t index[index_slots]: open addressing with linear
 *                probing; 0 = empty slot, else an entry reference.
 *                index_slots is a power of two >= 2 * entries, so the load
 *                factor never exceeds 1/2.  Deletion shifts later members
 *                of the probe run back (no tombstones).
 *   entries_off  entries x { zone_entry_t, state_size bytes of state }:
 *                the state follows its 40-byte entry header and is
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

#include "ratelimit2/store_local.h"

#define ZONE_MAGIC 0x5a324c52u        /* "RL2Z" read little-endian */
#define ZONE_VERSION 1u
#define ZONE_NIL 0u                   /* no entry */

_Static_assert(ATOMIC_INT_LOCK_FREE == 2,
               "shared memory needs address-free 32-bit atomics");

typedef struct {
    rl2_digest_t key;
    int64_t expires_us;               /* state is fresh when before now */
    uint32_t prev;                    /* LRU: towards the head (newer) */
    uint32_t next;                    /* LRU: towards the tail; free list */
    uint32_t hash;                    /* index hash; home = hash & mask */
    uint32_t in_use;                  /* 1 on the LRU list, 0 free */
} zone_entry_t;

_Static_assert(sizeof(zone_entry_t) % 8 == 0, "state must stay 8-aligned");

typedef struct {
    _Atomic uint32_t magic;           /* ZONE_MAGIC, stored last */
    uint32_t version;                 /* ZONE_VERSION */
    uint32_t hdr_size;                /* sizeof(zone_hdr_t): ABI check */
    uint32_t entries;                 /* capacity in keys */
    uint32_t index_slots;             /* power of two >= 2 * entries */
    uint32_t pad;
    uint64_t state_size;              /* bytes, multiple of 8 */
    uint64_t stride;                  /* bytes per entry with its state */
    uint64_t index_off;               /* bytes from the object's start */
    uint64_t entries_off;
    uint64_t bytes;                   /* size of the whole object */
    rl2_hash_key_t seed;              /* per-zone index key (anti-flood) */
    uint64_t used;                    /* entries on the LRU list */
    uint64_t evictions;
    uint64_t lock_recoveries;
    uint32_t lru_head;                /* most recently used */
    uint32_t lru_tail;                /* least recently used */
    uint32_t free_head;
    _Atomic uint32_t dirty;           /* 1 while the index or lists change */
    pthread_mutex_t lock;
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
    zone_hdr_t *hdr;
    uint32_t *index;
    unsigned char *table;
    zone_geom_t geom;
    uint32_t mask;
    rl2_hash_key_t seed;
    char name[RL2_ZONE_NAME_MAX + 1];
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

/* Under the lock (or before the zone is published): rebuild the index and
 * both lists from the entries (store_local.c). */
void rl2_zone_rebuild(rl2_zone_t *z);

#endif
