/*
 * zone.c -- the table of a local zone: per-key state found through a
 * hash index, kept in LRU order, evicted when the zone is full.
 *
 * Owns the hash index, the LRU list and the free list, the rebuild of all
 * three from the entries, and the per-key entry points (get, peek,
 * keep_until, remove) and statistics of store_local.h.  The layout is in
 * store_internal.h; creating, attaching and locking the shm object
 * are in zone_shm.c.  Nothing here allocates: every entry was
 * reserved when the zone was created.
 *
 * Every entry is on exactly one of the LRU list (in use) and the free list
 * (not).  Index positions come from a keyed mix of the digest under a
 * random per-zone seed, so nobody outside can aim keys at one slot.
 */
#include <stdbool.h>
#include <string.h>

#include "store_internal.h"

#define ZONE_EXPIRE_SCAN \
    4 /* LRU tail entries checked for an \
         expired one before evicting */

/* ---- entries, index, lists (all under the lock) ----------------------- */

static zone_entry_t *
rl2_zone_entry_at(const rl2_zone_t *z, uint32_t ref)
{
    return (zone_entry_t *)(z->table + (uint64_t)(ref - 1) * z->geom.stride);
}

static void *
rl2_zone_entry_state(zone_entry_t *e)
{
    return e + 1;
}

static uint32_t
rl2_zone_key_hash(const rl2_zone_t *z, rl2_digest_t key)
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

static bool
rl2_zone_key_equal(rl2_digest_t a, rl2_digest_t b)
{
    return a.hi == b.hi && a.lo == b.lo;
}

static uint32_t
rl2_zone_index_find(const rl2_zone_t *z, rl2_digest_t key, uint32_t hash,
                    uint32_t *pos)
{
    uint32_t i = hash & z->mask;
    uint32_t ref;

    /* Terminates: at most half the slots are ever occupied. */
    while ((ref = z->index[i]) != ZONE_NIL) {
        zone_entry_t *e = rl2_zone_entry_at(z, ref);

        if (e->hash == hash && rl2_zone_key_equal(e->key, key)) {
            *pos = i;
            return ref;
        }
        i = (i + 1) & z->mask;
    }
    return ZONE_NIL;
}

static void
rl2_zone_index_insert(rl2_zone_t *z, uint32_t ref, uint32_t hash)
{
    uint32_t i = hash & z->mask;

    while (z->index[i] != ZONE_NIL) {
        i = (i + 1) & z->mask;
    }
    z->index[i] = ref;
}

static uint32_t
rl2_zone_index_pos_of(const rl2_zone_t *z, uint32_t ref)
{
    uint32_t i = rl2_zone_entry_at(z, ref)->hash & z->mask;

    while (z->index[i] != ref) {
        i = (i + 1) & z->mask;
    }
    return i;
}

/* Backward-shift deletion: empty the slot, then walk the rest of the probe
 * run and move back every member whose home is not cyclically within
 * (hole, member], so that no lookup ever stops early at the new hole. */
static void
rl2_zone_index_delete(rl2_zone_t *z, uint32_t hole)
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
        uint32_t home = rl2_zone_entry_at(z, ref)->hash & z->mask;
        if (((j - home) & z->mask) >= ((j - hole) & z->mask)) {
            z->index[hole] = ref;
            z->index[j] = ZONE_NIL;
            hole = j;
        }
    }
}

static void
rl2_zone_lru_unlink(rl2_zone_t *z, uint32_t ref)
{
    zone_hdr_t   *h = z->hdr;
    zone_entry_t *e = rl2_zone_entry_at(z, ref);

    if (e->prev != ZONE_NIL) {
        rl2_zone_entry_at(z, e->prev)->next = e->next;
    }
    else {
        h->lru_head = e->next;
    }
    if (e->next != ZONE_NIL) {
        rl2_zone_entry_at(z, e->next)->prev = e->prev;
    }
    else {
        h->lru_tail = e->prev;
    }
    e->prev = e->next = ZONE_NIL;
}

static void
rl2_zone_lru_push_head(rl2_zone_t *z, uint32_t ref)
{
    zone_hdr_t   *h = z->hdr;
    zone_entry_t *e = rl2_zone_entry_at(z, ref);

    e->prev = ZONE_NIL;
    e->next = h->lru_head;
    if (h->lru_head != ZONE_NIL) {
        rl2_zone_entry_at(z, h->lru_head)->prev = ref;
    }
    else {
        h->lru_tail = ref;
    }
    h->lru_head = ref;
}

static void
rl2_zone_free_push(rl2_zone_t *z, uint32_t ref)
{
    zone_entry_t *e = rl2_zone_entry_at(z, ref);

    e->in_use = 0;
    e->prev = ZONE_NIL;
    e->next = z->hdr->free_head;
    z->hdr->free_head = ref;
}

/* Rebuild the index and both lists from the entries' in_use flags and
 * keys.  Used to initialise a new zone and after a process died mid-change;
 * recency is lost then (array order), which only shifts who is evicted
 * next, while a half-linked list could loop forever. */
void
rl2_zone_rebuild(rl2_zone_t *z)
{
    zone_hdr_t *h = z->hdr;
    uint32_t    ref, pos;

    memset(z->index, 0, (size_t)z->geom.index_slots * sizeof(uint32_t));
    h->lru_head = h->lru_tail = h->free_head = ZONE_NIL;
    h->used = 0;
    for (ref = z->geom.entries; ref != ZONE_NIL; ref--) {
        zone_entry_t *e = rl2_zone_entry_at(z, ref);

        if (e->in_use != 1) {
            rl2_zone_free_push(z, ref);
            continue;
        }
        e->hash = rl2_zone_key_hash(z, e->key);
        if (rl2_zone_index_find(z, e->key, e->hash, &pos) != ZONE_NIL) {
            rl2_zone_free_push(z, ref); /* a duplicate cannot be trusted */
            continue;
        }
        rl2_zone_index_insert(z, ref, e->hash);
        rl2_zone_lru_push_head(z, ref);
        h->used++;
    }
}

/* An entry for a new key: a free one, else an expired one near the LRU
 * tail, else the tail itself, which counts as an eviction. */
static uint32_t
rl2_zone_reclaim(rl2_zone_t *z, int64_t now_us)
{
    zone_hdr_t *h = z->hdr;
    uint32_t    ref = h->free_head;
    uint32_t    victim = h->lru_tail;
    int         i;

    if (ref != ZONE_NIL) {
        h->free_head = rl2_zone_entry_at(z, ref)->next;
        rl2_zone_entry_at(z, ref)->next = ZONE_NIL;
        h->used++;
        return ref;
    }
    for (ref = h->lru_tail, i = 0; ref != ZONE_NIL && i < ZONE_EXPIRE_SCAN;
         ref = rl2_zone_entry_at(z, ref)->prev, i++) {
        if (rl2_zone_entry_at(z, ref)->expires_us < now_us) {
            victim = ref;
            break;
        }
    }
    if (ref == ZONE_NIL || i == ZONE_EXPIRE_SCAN) {
        h->evictions++;
    }
    rl2_zone_index_delete(z, rl2_zone_index_pos_of(z, victim));
    rl2_zone_lru_unlink(z, victim);
    return victim;
}

static void
rl2_zone_entry_reset(rl2_zone_t *z, zone_entry_t *e, int64_t now_us)
{
    /* expires_us = now: an entry nobody keeps is reclaimable from the next
     * microsecond on, and never counted as an eviction. */
    e->expires_us = now_us;
    memset(rl2_zone_entry_state(e), 0, z->geom.state_size);
}

/* ---- the hot path ------------------------------------------------------ */

void *
rl2_zone_get(rl2_zone_t *z, rl2_digest_t key, int64_t now_us)
{
    uint32_t      hash = rl2_zone_key_hash(z, key);
    uint32_t      pos;
    uint32_t      ref = rl2_zone_index_find(z, key, hash, &pos);
    zone_entry_t *e;

    if (ref != ZONE_NIL && ref == z->hdr->lru_head
        && rl2_zone_entry_at(z, ref)->expires_us >= now_us) {
        /* A live key that is already the most recent (a busy client
         * asking again): nothing moves, so no dirty mark either. */
        return rl2_zone_entry_state(rl2_zone_entry_at(z, ref));
    }
    rl2_zone_mark_dirty(z);
    if (ref != ZONE_NIL) {
        e = rl2_zone_entry_at(z, ref);
        if (e->expires_us < now_us) {
            rl2_zone_entry_reset(z, e, now_us);
        }
        rl2_zone_lru_unlink(z, ref);
    }
    else {
        ref = rl2_zone_reclaim(z, now_us);
        e = rl2_zone_entry_at(z, ref);
        e->key = key;
        e->hash = hash;
        e->in_use = 1;
        rl2_zone_entry_reset(z, e, now_us);
        rl2_zone_index_insert(z, ref, hash);
    }
    rl2_zone_lru_push_head(z, ref);
    rl2_zone_mark_clean(z);
    return rl2_zone_entry_state(e);
}

void *
rl2_zone_lookup(rl2_zone_t *z, rl2_digest_t key, int64_t now_us,
                uint32_t *ref_out)
{
    uint32_t pos;
    uint32_t ref = rl2_zone_index_find(z, key, rl2_zone_key_hash(z, key), &pos);

    if (ref == ZONE_NIL || rl2_zone_entry_at(z, ref)->expires_us < now_us) {
        return NULL;
    }
    *ref_out = ref;
    return rl2_zone_entry_state(rl2_zone_entry_at(z, ref));
}

void *
rl2_zone_peek(rl2_zone_t *z, rl2_digest_t key, int64_t now_us)
{
    uint32_t ref;

    return rl2_zone_lookup(z, key, now_us, &ref);
}

void
rl2_zone_touch(rl2_zone_t *z, uint32_t ref)
{
    if (ref == z->hdr->lru_head) {
        return;
    }
    rl2_zone_mark_dirty(z);
    rl2_zone_lru_unlink(z, ref);
    rl2_zone_lru_push_head(z, ref);
    rl2_zone_mark_clean(z);
}

/* The entry whose state is at `state`, or NULL for any pointer that is
 * not the state of one of the zone's entries: a caller's mistake must
 * not let it scribble over the shared table. */
static zone_entry_t *
rl2_zone_entry_of(const rl2_zone_t *z, void *state)
{
    uintptr_t p = (uintptr_t)state - sizeof(zone_entry_t);
    uintptr_t base = (uintptr_t)z->table;

    if (state == NULL || p < base || (p - base) % z->geom.stride != 0
        || (p - base) / z->geom.stride >= z->geom.entries) {
        return NULL;
    }
    return (zone_entry_t *)p;
}

void
rl2_zone_keep_until(rl2_zone_t *z, void *state, int64_t until_us)
{
    zone_entry_t *e = rl2_zone_entry_of(z, state);

    if (e != NULL && until_us > e->expires_us) {
        e->expires_us = until_us;
    }
}

void
rl2_zone_remove(rl2_zone_t *z, rl2_digest_t key)
{
    uint32_t pos;
    uint32_t ref = rl2_zone_index_find(z, key, rl2_zone_key_hash(z, key), &pos);

    if (ref == ZONE_NIL) {
        return;
    }
    rl2_zone_mark_dirty(z);
    rl2_zone_index_delete(z, pos);
    rl2_zone_lru_unlink(z, ref);
    rl2_zone_free_push(z, ref);
    z->hdr->used--;
    rl2_zone_mark_clean(z);
}

/* ---- statistics -------------------------------------------------------- */

rl2_status_t
rl2_zone_stats(rl2_zone_t *z, rl2_zone_stats_t *out, rl2_err_t *err)
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

size_t
rl2_zone_state_size(const rl2_zone_t *z)
{
    return (size_t)z->geom.state_size;
}
