/*
 * store_local.c -- the bounded local store: a fixed table of per-key state
 * in one named POSIX shared memory object.
 *
 * Owns the shm object's layout, its creation and validation, the robust
 * process-shared lock, the hash index, the LRU list and the free list.  All
 * memory is reserved when the zone is created; nothing here allocates after
 * rl2_zone_open() / rl2_zone_attach() return.
 *
 * Layout (offsets from the start of the object, never pointers, so every
 * process may map it at a different address):
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
 * none.  Every entry is on exactly one of the LRU list (in use) and the
 * free list (not).  Index positions come from SipHash of the digest under
 * a random per-zone seed, so nobody outside can aim keys at one slot.
 *
 * Creation: shm_open(O_CREAT | O_EXCL) elects one creator, which holds an
 * exclusive flock on the object while it sizes, reserves and initialises
 * it, and stores the magic last (release).  Everyone else takes a shared
 * flock and reads the magic (acquire); an object whose header does not
 * describe exactly itself is stale and replaced.
 *
 * Crashes: a dirty flag brackets every change to the index and lists.  A
 * process killed while holding the lock leaves the robust mutex to the
 * next locker, which rebuilds the index and lists from the entries if the
 * flag is set.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit2/store_local.h"

#define ZONE_MAGIC 0x5a324c52u        /* "RL2Z" read little-endian */
#define ZONE_VERSION 1u
#define ZONE_STATE_MAX 65536u         /* bytes of state per entry */
#define ZONE_NIL 0u                   /* no entry */
#define ZONE_EXPIRE_SCAN 4            /* LRU tail entries checked for an
                                         expired one before evicting */
#define ZONE_OPEN_ATTEMPTS 8
#define ZONE_WAIT_MS 1000             /* how long an attacher polls for a
                                         creator to take its flock */

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

/* ---- geometry ---------------------------------------------------------- */

static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b != 0 && a > UINT64_MAX / b) {
        return false;
    }
    *out = a * b;
    return true;
}

static bool add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a > UINT64_MAX - b) {
        return false;
    }
    *out = a + b;
    return true;
}

static uint64_t align64(uint64_t v)
{
    return (v + 63) & ~(uint64_t)63;
}

static rl2_status_t geom_compute(const char *name, uint64_t entries,
                                 uint64_t state_size, zone_geom_t *g,
                                 rl2_err_t *err)
{
    uint64_t slots = 1, index_bytes, table_bytes, total;

    if (entries < RL2_ZONE_MIN_ENTRIES || entries > RL2_ZONE_MAX_ENTRIES) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "zone %s: entries %llu outside %u..%u", name,
                           (unsigned long long)entries,
                           RL2_ZONE_MIN_ENTRIES, RL2_ZONE_MAX_ENTRIES);
    }
    if (state_size > ZONE_STATE_MAX) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "zone %s: state_size %llu above %u bytes", name,
                           (unsigned long long)state_size, ZONE_STATE_MAX);
    }
    while (slots < 2 * entries) {
        slots <<= 1;
    }
    g->entries = (uint32_t)entries;
    g->index_slots = (uint32_t)slots;
    g->state_size = (state_size + 7) & ~(uint64_t)7;
    g->stride = sizeof(zone_entry_t) + g->state_size;
    g->index_off = align64(sizeof(zone_hdr_t));
    /* The bounds above keep this far from 2^64, but a 32-bit size_t is
     * easily exceeded, so every step is checked. */
    if (!mul_u64(slots, sizeof(uint32_t), &index_bytes)
        || !add_u64(g->index_off, index_bytes, &total)
        || (g->entries_off = align64(total)) < total
        || !mul_u64(entries, g->stride, &table_bytes)
        || !add_u64(g->entries_off, table_bytes, &total)
        || total > (uint64_t)SIZE_MAX || total > (uint64_t)INT64_MAX) {
        return rl2_err_set(err, RL2_ERR_RANGE,
                           "zone %s: %llu entries of %llu bytes do not fit "
                           "in memory", name, (unsigned long long)entries,
                           (unsigned long long)g->state_size);
    }
    g->bytes = total;
    return RL2_OK;
}

static bool geom_equal(const zone_geom_t *a, const zone_geom_t *b)
{
    return a->entries == b->entries && a->index_slots == b->index_slots
           && a->state_size == b->state_size && a->stride == b->stride
           && a->index_off == b->index_off
           && a->entries_off == b->entries_off && a->bytes == b->bytes;
}

/* ---- entries, index, lists (all under the lock) ----------------------- */

static zone_entry_t *entry_at(const rl2_zone_t *z, uint32_t ref)
{
    return (zone_entry_t *)(z->table + (uint64_t)(ref - 1) * z->geom.stride);
}

static void *entry_state(zone_entry_t *e)
{
    return e + 1;
}

static uint32_t key_hash(const rl2_zone_t *z, rl2_digest_t key)
{
    /* Keyed with a per-zone random seed: the digest keys are public, so
     * an attacker could otherwise choose keys that pile into one probe run
     * and make every lookup walk it under the lock.  The digest is already
     * a uniform 128-bit value, so a keyed multiply-xorshift mix of both
     * halves is enough (a second SipHash would cost ~250 instructions a
     * lookup): to aim keys at one slot an attacker would have to match
     * digests on ~64 bits by brute force, without knowing the seed. */
    uint64_t s0, s1, h;

    memcpy(&s0, z->seed.k, sizeof(s0));
    memcpy(&s1, z->seed.k + 8, sizeof(s1));
    h = (key.hi ^ s0) * UINT64_C(0x9e3779b97f4a7c15);
    h ^= h >> 32;
    h = (h ^ key.lo ^ s1) * UINT64_C(0xbf58476d1ce4e5b9);
    h ^= h >> 31;
    return (uint32_t)h;
}

static bool key_equal(rl2_digest_t a, rl2_digest_t b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static uint32_t index_find(const rl2_zone_t *z, rl2_digest_t key,
                           uint32_t hash, uint32_t *pos)
{
    uint32_t i = hash & z->mask;
    uint32_t ref;

    /* Terminates: at most half the slots are ever occupied. */
    while ((ref = z->index[i]) != ZONE_NIL) {
        zone_entry_t *e = entry_at(z, ref);

        if (e->hash == hash && key_equal(e->key, key)) {
            *pos = i;
            return ref;
        }
        i = (i + 1) & z->mask;
    }
    return ZONE_NIL;
}

static void index_insert(rl2_zone_t *z, uint32_t ref, uint32_t hash)
{
    uint32_t i = hash & z->mask;

    while (z->index[i] != ZONE_NIL) {
        i = (i + 1) & z->mask;
    }
    z->index[i] = ref;
}

static uint32_t index_pos_of(const rl2_zone_t *z, uint32_t ref)
{
    uint32_t i = entry_at(z, ref)->hash & z->mask;

    while (z->index[i] != ref) {
        i = (i + 1) & z->mask;
    }
    return i;
}

/* Backward-shift deletion: empty the slot, then walk the rest of the probe
 * run and move back every member whose home is not cyclically within
 * (hole, member], so that no lookup ever stops early at the new hole. */
static void index_delete(rl2_zone_t *z, uint32_t hole)
{
    uint32_t j = hole;
    uint32_t ref;

    z->index[hole] = ZONE_NIL;
    for (;;) {
        j = (j + 1) & z->mask;
        ref = z->index[j];
        if (ref == ZONE_NIL) {
            return;
        }
        uint32_t home = entry_at(z, ref)->hash & z->mask;
        if (((j - home) & z->mask) >= ((j - hole) & z->mask)) {
            z->index[hole] = ref;
            z->index[j] = ZONE_NIL;
            hole = j;
        }
    }
}

static void lru_unlink(rl2_zone_t *z, uint32_t ref)
{
    zone_hdr_t *h = z->hdr;
    zone_entry_t *e = entry_at(z, ref);

    if (e->prev != ZONE_NIL) {
        entry_at(z, e->prev)->next = e->next;
    }
    else {
        h->lru_head = e->next;
    }
    if (e->next != ZONE_NIL) {
        entry_at(z, e->next)->prev = e->prev;
    }
    else {
        h->lru_tail = e->prev;
    }
    e->prev = e->next = ZONE_NIL;
}

static void lru_push_head(rl2_zone_t *z, uint32_t ref)
{
    zone_hdr_t *h = z->hdr;
    zone_entry_t *e = entry_at(z, ref);

    e->prev = ZONE_NIL;
    e->next = h->lru_head;
    if (h->lru_head != ZONE_NIL) {
        entry_at(z, h->lru_head)->prev = ref;
    }
    else {
        h->lru_tail = ref;
    }
    h->lru_head = ref;
}

static void free_push(rl2_zone_t *z, uint32_t ref)
{
    zone_entry_t *e = entry_at(z, ref);

    e->in_use = 0;
    e->prev = ZONE_NIL;
    e->next = z->hdr->free_head;
    z->hdr->free_head = ref;
}

/* The dirty flag brackets every change to the index and lists: a process
 * killed inside one leaves it set, and the next locker rebuilds.  The
 * signal fences stop the compiler moving those changes across it; the
 * mutex hand-over orders them for the next locker. */
static void zone_mark_dirty(rl2_zone_t *z)
{
    atomic_store_explicit(&z->hdr->dirty, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
}

static void zone_mark_clean(rl2_zone_t *z)
{
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&z->hdr->dirty, 0, memory_order_relaxed);
}

/* Rebuild the index and both lists from the entries' in_use flags and
 * keys.  Used to initialise a new zone and after a process died mid-change;
 * recency is lost then (array order), which only shifts who is evicted
 * next, while a half-linked list could loop forever. */
static void zone_rebuild(rl2_zone_t *z)
{
    zone_hdr_t *h = z->hdr;
    uint32_t ref, pos;

    memset(z->index, 0, (size_t)z->geom.index_slots * sizeof(uint32_t));
    h->lru_head = h->lru_tail = h->free_head = ZONE_NIL;
    h->used = 0;
    for (ref = z->geom.entries; ref != ZONE_NIL; ref--) {
        zone_entry_t *e = entry_at(z, ref);

        if (e->in_use != 1) {
            free_push(z, ref);
            continue;
        }
        e->hash = key_hash(z, e->key);
        if (index_find(z, e->key, e->hash, &pos) != ZONE_NIL) {
            free_push(z, ref);      /* a duplicate cannot be trusted */
            continue;
        }
        index_insert(z, ref, e->hash);
        lru_push_head(z, ref);
        h->used++;
    }
}

/* An entry for a new key: a free one, else an expired one near the LRU
 * tail, else the tail itself, which counts as an eviction. */
static uint32_t zone_reclaim(rl2_zone_t *z, int64_t now_us)
{
    zone_hdr_t *h = z->hdr;
    uint32_t ref = h->free_head;
    uint32_t victim = h->lru_tail;
    int i;

    if (ref != ZONE_NIL) {
        h->free_head = entry_at(z, ref)->next;
        entry_at(z, ref)->next = ZONE_NIL;
        h->used++;
        return ref;
    }
    for (ref = h->lru_tail, i = 0; ref != ZONE_NIL && i < ZONE_EXPIRE_SCAN;
         ref = entry_at(z, ref)->prev, i++) {
        if (entry_at(z, ref)->expires_us < now_us) {
            victim = ref;
            break;
        }
    }
    if (ref == ZONE_NIL || i == ZONE_EXPIRE_SCAN) {
        h->evictions++;
    }
    index_delete(z, index_pos_of(z, victim));
    lru_unlink(z, victim);
    return victim;
}

static void entry_reset(rl2_zone_t *z, zone_entry_t *e, int64_t now_us)
{
    /* expires_us = now: an entry nobody keeps is reclaimable from the next
     * microsecond on, and never counted as an eviction. */
    e->expires_us = now_us;
    memset(entry_state(e), 0, z->geom.state_size);
}

/* ---- the hot path ------------------------------------------------------ */

void *rl2_zone_get(rl2_zone_t *z, rl2_digest_t key, int64_t now_us)
{
    uint32_t hash = key_hash(z, key);
    uint32_t pos;
    uint32_t ref = index_find(z, key, hash, &pos);
    zone_entry_t *e;

    zone_mark_dirty(z);
    if (ref != ZONE_NIL) {
        e = entry_at(z, ref);
        if (e->expires_us < now_us) {
            entry_reset(z, e, now_us);
        }
        lru_unlink(z, ref);
    }
    else {
        ref = zone_reclaim(z, now_us);
        e = entry_at(z, ref);
        e->key = key;
        e->hash = hash;
        e->in_use = 1;
        entry_reset(z, e, now_us);
        index_insert(z, ref, hash);
    }
    lru_push_head(z, ref);
    zone_mark_clean(z);
    return entry_state(e);
}

void *rl2_zone_peek(rl2_zone_t *z, rl2_digest_t key, int64_t now_us)
{
    uint32_t pos;
    uint32_t ref = index_find(z, key, key_hash(z, key), &pos);

    if (ref == ZONE_NIL || entry_at(z, ref)->expires_us < now_us) {
        return NULL;
    }
    return entry_state(entry_at(z, ref));
}

void rl2_zone_keep_until(rl2_zone_t *z, void *state, int64_t until_us)
{
    uintptr_t p = (uintptr_t)state - sizeof(zone_entry_t);
    uintptr_t base = (uintptr_t)z->table;
    zone_entry_t *e;

    /* Only a pointer rl2_zone_get returned is accepted; anything else
     * would let a caller scribble over the shared table. */
    if (p < base || (p - base) % z->geom.stride != 0
        || (p - base) / z->geom.stride >= z->geom.entries) {
        return;
    }
    e = (zone_entry_t *)p;
    if (until_us > e->expires_us) {
        e->expires_us = until_us;
    }
}

void rl2_zone_remove(rl2_zone_t *z, rl2_digest_t key)
{
    uint32_t pos;
    uint32_t ref = index_find(z, key, key_hash(z, key), &pos);

    if (ref == ZONE_NIL) {
        return;
    }
    zone_mark_dirty(z);
    index_delete(z, pos);
    lru_unlink(z, ref);
    free_push(z, ref);
    z->hdr->used--;
    zone_mark_clean(z);
}

/* ---- locking ----------------------------------------------------------- */

static rl2_status_t zone_recover(rl2_zone_t *z, rl2_err_t *err)
{
    int rc = pthread_mutex_consistent(&z->hdr->lock);

    if (rc != 0) {
        pthread_mutex_unlock(&z->hdr->lock);
        return rl2_err_set(err, RL2_ERR_SYS,
                           "zone %s: recovering the lock of a dead process: "
                           "%s", z->name, strerror(rc));
    }
    if (atomic_load_explicit(&z->hdr->dirty, memory_order_relaxed)) {
        zone_rebuild(z);
        zone_mark_clean(z);
    }
    z->hdr->lock_recoveries++;
    return RL2_OK;
}

rl2_status_t rl2_zone_lock(rl2_zone_t *z, rl2_err_t *err)
{
    int rc = pthread_mutex_lock(&z->hdr->lock);

    if (rc == 0) {
        return RL2_OK;
    }
    if (rc == EOWNERDEAD) {
        return zone_recover(z, err);
    }
    return rl2_err_set(err, RL2_ERR_SYS, "zone %s: lock: %s", z->name,
                       strerror(rc));
}

void rl2_zone_unlock(rl2_zone_t *z)
{
    pthread_mutex_unlock(&z->hdr->lock);
}

rl2_status_t rl2_zone_stats(rl2_zone_t *z, rl2_zone_stats_t *out,
                            rl2_err_t *err)
{
    rl2_status_t st = rl2_zone_lock(z, err);

    if (st != RL2_OK) {
        return st;
    }
    out->entries = z->geom.entries;
    out->used = z->hdr->used;
    out->evictions = z->hdr->evictions;
    out->lock_recoveries = z->hdr->lock_recoveries;
    out->state_size = z->geom.state_size;
    out->bytes = z->geom.bytes;
    rl2_zone_unlock(z);
    return RL2_OK;
}

size_t rl2_zone_state_size(const rl2_zone_t *z)
{
    return (size_t)z->geom.state_size;
}

/* ---- creating and attaching -------------------------------------------- */

static rl2_status_t sys_err(rl2_err_t *err, const char *name,
                            const char *what, int errnum)
{
    return rl2_err_set(err, RL2_ERR_SYS, "zone %s: %s: %s", name, what,
                       strerror(errnum));
}

static rl2_status_t name_check(const char *name, rl2_err_t *err)
{
    size_t len;

    if (name == NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID, "zone name is NULL");
    }
    len = strlen(name);
    /* POSIX leaves names with a second slash implementation-defined. */
    if (len < 2 || len > RL2_ZONE_NAME_MAX || name[0] != '/'
        || strchr(name + 1, '/') != NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "zone %.*s: a name is '/' then 1..%d characters "
                           "without '/'", RL2_ZONE_NAME_MAX, name,
                           RL2_ZONE_NAME_MAX - 1);
    }
    return RL2_OK;
}

/* Unlink name only while it still names the object open on fd: between
 * judging a zone stale and unlinking it, another process may already have
 * replaced it with a good one, which must not be unlinked in turn.  The
 * flock on the stale object makes "check, then unlink" one step among all
 * processes judging that same object, so only the first one unlinks. */
static void unlink_if_same(const char *name, int fd)
{
    struct stat a, b;
    int fd2;

    if (flock(fd, LOCK_EX) != 0) {
        return;
    }
    fd2 = shm_open(name, O_RDONLY, 0);
    if (fd2 >= 0) {
        if (fstat(fd, &a) == 0 && fstat(fd2, &b) == 0
            && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            shm_unlink(name);
        }
        close(fd2);
    }
    flock(fd, LOCK_UN);
}

static rl2_status_t handle_new(const char *name, zone_hdr_t *hdr,
                               const zone_geom_t *g, rl2_zone_t **out,
                               rl2_err_t *err)
{
    rl2_zone_t *z = calloc(1, sizeof(*z));

    if (z == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "zone %s: out of memory",
                           name);
    }
    z->hdr = hdr;
    z->geom = *g;
    z->index = (uint32_t *)((unsigned char *)hdr + g->index_off);
    z->table = (unsigned char *)hdr + g->entries_off;
    z->mask = g->index_slots - 1;
    z->seed = hdr->seed;
    strcpy(z->name, name);          /* length checked by name_check */
    *out = z;
    return RL2_OK;
}

/* The header of a published zone is valid when it describes exactly the
 * object it sits in: the geometry recomputed from its entries and
 * state_size must match every stored offset, and the object's size too. */
static bool hdr_valid(const zone_hdr_t *h, uint64_t st_size, zone_geom_t *g)
{
    zone_geom_t stored = {
        h->entries, h->index_slots, h->state_size, h->stride,
        h->index_off, h->entries_off, h->bytes
    };

    if (h->version != ZONE_VERSION || h->hdr_size != sizeof(zone_hdr_t)
        || geom_compute("", h->entries, h->state_size, g, NULL) != RL2_OK) {
        return false;
    }
    return geom_equal(g, &stored) && g->bytes == st_size;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* One look at an existing object.  *magic is what the header holds (0
 * while a creator is at work); *hdr is set only for a valid zone. */
static rl2_status_t map_try(const char *name, int fd, zone_hdr_t **hdr,
                            zone_geom_t *g, uint32_t *magic, rl2_err_t *err)
{
    struct stat st;
    void *base;

    *magic = 0;
    if (fstat(fd, &st) != 0) {
        return sys_err(err, name, "fstat", errno);
    }
    if ((uint64_t)st.st_size < sizeof(zone_hdr_t)) {
        return RL2_OK;
    }
    base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                fd, 0);
    if (base == MAP_FAILED) {
        return sys_err(err, name, "mmap", errno);
    }
    *magic = atomic_load_explicit(&((zone_hdr_t *)base)->magic,
                                  memory_order_acquire);
    if (*magic == ZONE_MAGIC && hdr_valid(base, (uint64_t)st.st_size, g)) {
        *hdr = base;
    }
    else {
        munmap(base, (size_t)st.st_size);
    }
    return RL2_OK;
}

/* Map an existing object once its creator has published the header.
 * OK with *hdr set: a valid zone, geometry in *g.  OK with *hdr NULL: the
 * object is stale (foreign, another version, wrong size, or a creator that
 * died).  A creator holds an exclusive flock until it publishes, so a
 * shared flock waits for a slow creation however long it takes; the
 * bounded polling only covers the instant before the creator's flock. */
static rl2_status_t map_existing(const char *name, int fd, zone_hdr_t **hdr,
                                 zone_geom_t *g, rl2_err_t *err)
{
    rl2_status_t st;
    uint32_t magic;
    int waited;

    *hdr = NULL;
    for (waited = 0; waited <= ZONE_WAIT_MS; waited++) {
        bool locked = flock(fd, LOCK_SH) == 0;

        st = map_try(name, fd, hdr, g, &magic, err);
        if (locked) {
            flock(fd, LOCK_UN);
        }
        if (st != RL2_OK || *hdr != NULL || magic != 0) {
            return st;                  /* an error, ours, or foreign */
        }
        sleep_ms(1);
    }
    return RL2_OK;
}

static rl2_status_t mutex_init(const char *name, pthread_mutex_t *m,
                               rl2_err_t *err)
{
    pthread_mutexattr_t attr;
    int rc = pthread_mutexattr_init(&attr);

    if (rc == 0) {
        rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        if (rc == 0) {
            rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        }
        if (rc == 0) {
            rc = pthread_mutex_init(m, &attr);
        }
        pthread_mutexattr_destroy(&attr);
    }
    return rc == 0 ? RL2_OK : sys_err(err, name, "mutex init", rc);
}

/* Reserve the memory now, so that a full /dev/shm fails here with a
 * message rather than with SIGBUS on some later request. */
static rl2_status_t reserve(const char *name, int fd, uint64_t bytes,
                            rl2_err_t *err)
{
    struct statvfs vfs;
    uint64_t avail;
    int rc;

    if (fstatvfs(fd, &vfs) == 0 && vfs.f_frsize != 0
        && mul_u64(vfs.f_bavail, vfs.f_frsize, &avail) && bytes > avail) {
        return rl2_err_set(err, RL2_ERR_NOMEM,
                           "zone %s: needs %llu bytes, shared memory has "
                           "%llu free", name, (unsigned long long)bytes,
                           (unsigned long long)avail);
    }
    if (ftruncate(fd, (off_t)bytes) != 0) {
        return sys_err(err, name, "ftruncate", errno);
    }
    rc = posix_fallocate(fd, 0, (off_t)bytes);
    return rc == 0 ? RL2_OK : sys_err(err, name, "posix_fallocate", rc);
}

static void seed_init(rl2_hash_key_t *seed)
{
    struct timespec ts;
    uint64_t mix[2];

    if (getrandom(seed->k, sizeof(seed->k), GRND_NONBLOCK)
        == (ssize_t)sizeof(seed->k)) {
        return;
    }
    /* No entropy yet (early boot): weaker, but still not public. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    mix[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    mix[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)seed;
    memcpy(seed->k, mix, sizeof(seed->k));
}

/* The creator owns the new object exclusively (O_EXCL) until it publishes
 * the magic; attachers wait for that release store. */
static rl2_status_t zone_create(const char *name, int fd, unsigned mode,
                                const zone_geom_t *g, rl2_zone_t **out,
                                rl2_err_t *err)
{
    zone_hdr_t *h;
    rl2_status_t st;

    /* Held until the magic is published (or this process dies). */
    if (flock(fd, LOCK_EX) != 0) {
        return sys_err(err, name, "flock", errno);
    }
    if (fchmod(fd, mode) != 0) {        /* shm_open applied the umask */
        return sys_err(err, name, "fchmod", errno);
    }
    if ((st = reserve(name, fd, g->bytes, err)) != RL2_OK) {
        return st;
    }
    h = mmap(NULL, (size_t)g->bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
             fd, 0);
    if (h == MAP_FAILED) {
        return sys_err(err, name, "mmap", errno);
    }
    h->version = ZONE_VERSION;
    h->hdr_size = sizeof(zone_hdr_t);
    h->entries = g->entries;
    h->index_slots = g->index_slots;
    h->state_size = g->state_size;
    h->stride = g->stride;
    h->index_off = g->index_off;
    h->entries_off = g->entries_off;
    h->bytes = g->bytes;
    seed_init(&h->seed);
    if ((st = mutex_init(name, &h->lock, err)) != RL2_OK
        || (st = handle_new(name, h, g, out, err)) != RL2_OK) {
        munmap(h, (size_t)g->bytes);
        return st;
    }
    zone_rebuild(*out);                 /* all entries onto the free list */
    atomic_store_explicit(&h->magic, ZONE_MAGIC, memory_order_release);
    /* Explicitly: the mapping keeps the open file, and so the flock, alive
     * after close(fd). */
    flock(fd, LOCK_UN);
    return RL2_OK;
}

/* One round of open: create exclusively, else attach.  *again is set when
 * the name must be tried once more (it vanished or was stale). */
static rl2_status_t open_once(const char *name, const zone_geom_t *g,
                              unsigned mode, rl2_zone_t **out, bool *again,
                              rl2_err_t *err)
{
    zone_geom_t found;
    zone_hdr_t *h;
    rl2_status_t st;
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, (mode_t)mode);

    *again = false;
    if (fd >= 0) {
        st = zone_create(name, fd, mode, g, out, err);
        if (st != RL2_OK) {
            unlink_if_same(name, fd);
        }
        close(fd);
        return st;
    }
    if (errno != EEXIST) {
        return sys_err(err, name, "shm_open", errno);
    }
    if ((fd = shm_open(name, O_RDWR, 0)) < 0) {
        *again = errno == ENOENT;       /* unlinked in between */
        return *again ? RL2_OK : sys_err(err, name, "shm_open", errno);
    }
    st = map_existing(name, fd, &h, &found, err);
    if (st == RL2_OK && h != NULL && geom_equal(&found, g)) {
        if ((st = handle_new(name, h, g, out, err)) != RL2_OK) {
            munmap(h, (size_t)found.bytes);
        }
    }
    else if (st == RL2_OK) {
        /* Another geometry or a stale object: replace it.  Processes that
         * still map the old one keep it until they close. */
        if (h != NULL) {
            munmap(h, (size_t)found.bytes);
        }
        unlink_if_same(name, fd);
        *again = true;
    }
    close(fd);
    return st;
}

rl2_status_t rl2_zone_open(const char *name, uint32_t entries,
                           size_t state_size, unsigned mode,
                           rl2_zone_t **out, rl2_err_t *err)
{
    zone_geom_t g;
    rl2_status_t st;
    bool again = true;
    int attempt;

    *out = NULL;
    if ((st = name_check(name, err)) != RL2_OK
        || (st = geom_compute(name, entries, state_size, &g, err))
               != RL2_OK) {
        return st;
    }
    if (mode > 0777) {
        return rl2_err_set(err, RL2_ERR_INVALID, "zone %s: mode %o is not "
                           "a permission", name, mode);
    }
    for (attempt = 0; again && attempt < ZONE_OPEN_ATTEMPTS; attempt++) {
        st = open_once(name, &g, mode, out, &again, err);
        if (st != RL2_OK) {
            return st;
        }
    }
    if (*out == NULL) {
        return rl2_err_set(err, RL2_ERR_STORE, "zone %s: still replaced by "
                           "other processes after %d attempts (do they ask "
                           "for another geometry?)", name, attempt);
    }
    return RL2_OK;
}

rl2_status_t rl2_zone_attach(const char *name, rl2_zone_t **out,
                             rl2_err_t *err)
{
    zone_geom_t g;
    zone_hdr_t *h;
    rl2_status_t st;
    int fd;

    *out = NULL;
    if ((st = name_check(name, err)) != RL2_OK) {
        return st;
    }
    if ((fd = shm_open(name, O_RDWR, 0)) < 0) {
        return sys_err(err, name, "shm_open", errno);
    }
    st = map_existing(name, fd, &h, &g, err);
    close(fd);
    if (st != RL2_OK) {
        return st;
    }
    if (h == NULL) {
        return rl2_err_set(err, RL2_ERR_STORE, "zone %s: not a valid "
                           "ratelimit2 zone of layout version %u", name,
                           ZONE_VERSION);
    }
    st = handle_new(name, h, &g, out, err);
    if (st != RL2_OK) {
        munmap(h, (size_t)g.bytes);
    }
    return st;
}

void rl2_zone_close(rl2_zone_t *z)
{
    if (z == NULL) {
        return;
    }
    munmap(z->hdr, (size_t)z->geom.bytes);
    free(z);
}

rl2_status_t rl2_zone_unlink(const char *name, rl2_err_t *err)
{
    rl2_status_t st = name_check(name, err);

    if (st != RL2_OK) {
        return st;
    }
    if (shm_unlink(name) != 0) {
        return sys_err(err, name, "shm_unlink", errno);
    }
    return RL2_OK;
}
