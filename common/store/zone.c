/*
 * zone.c -- the table of a local zone: per-key state found through a
 * hash index, kept on two LRU lists, evicted when the zone is full.
 *
 * Owns the hash index, the probation and protected lists, the free list,
 * the rebuild of all of them from the entries, and the per-key entry
 * points (get, lookup, touch, keep_until, remove) and statistics of
 * store_local.h.  The layout is in store_internal.h; creating, attaching
 * and locking the shm object are in zone_shm.c.  Nothing here allocates:
 * every entry was reserved when the zone was created.
 *
 * Every entry is on exactly one of three lists: free, probation or
 * protected.  Index positions come from a keyed mix of the digest under a
 * random per-zone seed, so nobody outside can aim keys at one slot.
 *
 * Eviction (a segmented LRU).  A plain LRU lets anyone with a supply of
 * new keys (made-up API keys, fresh IPv6 /64s) flush every counter: a
 * zone of E entries forgets a used-up login limit or monthly quota after
 * E admitted requests with new keys.  So:
 *
 *   - A new key's entry starts at the head of probation.  An entry moves
 *     to the head of protected when it counts a second admitted request
 *     or refuses one (rl2_zone_touch, or rl2_zone_get of a live key).
 *   - Protected holds at most half the zone: a promotion beyond that
 *     moves the least recently used protected entry to the head of
 *     probation (a demotion, not an eviction).
 *   - A new key takes, in this order: a free entry; an expired entry
 *     among the ZONE_EXPIRE_SCAN least recent of probation, then of
 *     protected (not an eviction); the least recently used entry on
 *     probation (an eviction).  A protected entry is never evicted
 *     directly: when the zone is full, probation holds at least half of
 *     it.
 *
 * Hence the rule: keys that each make one request evict only entries on
 * probation, however many they are, so a live counter that has counted
 * two admitted requests, or refused one, outlives any flood of new keys.
 * A refused request promotes only the counters that refused it, and two
 * layers of one key share one entry, so an entry is promoted only by a
 * second admitted request for its key or by refusing.  To evict a
 * protected counter, an attacker must first promote half a zone of
 * entries of its own (each needs a second admitted request for a key it
 * chose, or a counter of its own spent), which demotes the counter to
 * probation, then bring ceil(E/2) - 1 new keys more: about 1.5 times the
 * zone in entries, fewer requests when each request counts several keys
 * of the attacker's choosing.  A new client's entry survives
 * ceil(E/2) - 1 other new keys before its second request.
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

/* Off its LRU list (probation or protected, as e->list says). */
static void
rl2_zone_lru_unlink(rl2_zone_t *z, uint32_t ref)
{
    zone_hdr_t   *h = z->hdr;
    zone_entry_t *e = rl2_zone_entry_at(z, ref);
    uint32_t      l = e->list - 1;

    if (e->prev != ZONE_NIL) {
        rl2_zone_entry_at(z, e->prev)->next = e->next;
    }
    else {
        h->lru_head[l] = e->next;
    }
    if (e->next != ZONE_NIL) {
        rl2_zone_entry_at(z, e->next)->prev = e->prev;
    }
    else {
        h->lru_tail[l] = e->prev;
    }
    e->prev = e->next = ZONE_NIL;
    h->protected_used -= e->list == ZONE_PROTECTED;
}

/* Onto the head of `list` (ZONE_PROBATION or ZONE_PROTECTED). */
static void
rl2_zone_lru_push_head(rl2_zone_t *z, uint32_t ref, uint32_t list)
{
    zone_hdr_t   *h = z->hdr;
    zone_entry_t *e = rl2_zone_entry_at(z, ref);
    uint32_t      l = list - 1;

    e->list = list;
    e->prev = ZONE_NIL;
    e->next = h->lru_head[l];
    if (h->lru_head[l] != ZONE_NIL) {
        rl2_zone_entry_at(z, h->lru_head[l])->prev = ref;
    }
    else {
        h->lru_tail[l] = ref;
    }
    h->lru_head[l] = ref;
    h->protected_used += list == ZONE_PROTECTED;
}

/* Make ref the most recent protected entry; past half the zone, the least
 * recent protected entry goes back to the head of probation.  That one is
 * never ref, nor any entry a request holds: protected then holds more
 * than RL2_MAX_LAYERS entries newer than it (RL2_ZONE_MIN_ENTRIES). */
static void
rl2_zone_promote(rl2_zone_t *z, uint32_t ref)
{
    zone_hdr_t *h = z->hdr;
    uint32_t    demoted;

    rl2_zone_lru_unlink(z, ref);
    rl2_zone_lru_push_head(z, ref, ZONE_PROTECTED);
    if (h->protected_used > z->geom.entries / 2) {
        demoted = h->lru_tail[ZONE_PROTECTED - 1];
        rl2_zone_lru_unlink(z, demoted);
        rl2_zone_lru_push_head(z, demoted, ZONE_PROBATION);
    }
}

static void
rl2_zone_free_push(rl2_zone_t *z, uint32_t ref)
{
    zone_entry_t *e = rl2_zone_entry_at(z, ref);

    e->list = ZONE_FREE;
    e->prev = ZONE_NIL;
    e->next = z->hdr->free_head;
    z->hdr->free_head = ref;
}

/* Rebuild the index and the lists from the entries' list fields and
 * keys.  Used to initialise a new zone and after a process died
 * mid-change; recency is lost then (array order), which only shifts who
 * is evicted next, while a half-linked list could loop forever.  An entry
 * keeps its list unless protected would pass half the zone. */
void
rl2_zone_rebuild(rl2_zone_t *z)
{
    zone_hdr_t *h = z->hdr;
    uint32_t    ref, pos, list;

    memset(z->index, 0, (size_t)z->geom.index_slots * sizeof(uint32_t));
    memset(h->lru_head, 0, sizeof(h->lru_head));
    memset(h->lru_tail, 0, sizeof(h->lru_tail));
    h->free_head = ZONE_NIL;
    h->protected_used = 0;
    h->used = 0;
    for (ref = z->geom.entries; ref != ZONE_NIL; ref--) {
        zone_entry_t *e = rl2_zone_entry_at(z, ref);

        if (e->list != ZONE_PROBATION && e->list != ZONE_PROTECTED) {
            rl2_zone_free_push(z, ref);
            continue;
        }
        e->hash = rl2_zone_key_hash(z, e->key);
        if (rl2_zone_index_find(z, e->key, e->hash, &pos) != ZONE_NIL) {
            rl2_zone_free_push(z, ref); /* a duplicate cannot be trusted */
            continue;
        }
        list =
            e->list == ZONE_PROTECTED && h->protected_used < z->geom.entries / 2
                ? ZONE_PROTECTED
                : ZONE_PROBATION;
        rl2_zone_index_insert(z, ref, e->hash);
        rl2_zone_lru_push_head(z, ref, list);
        h->used++;
    }
}

/* An expired entry among the ZONE_EXPIRE_SCAN least recent of list, or
 * ZONE_NIL. */
static uint32_t
rl2_zone_expired_near_tail(const rl2_zone_t *z, uint32_t list, int64_t now_us)
{
    uint32_t ref = z->hdr->lru_tail[list - 1];
    int      i;

    for (i = 0; ref != ZONE_NIL && i < ZONE_EXPIRE_SCAN; i++) {
        const zone_entry_t *e = rl2_zone_entry_at(z, ref);

        if (e->expires_us < now_us) {
            return ref;
        }
        ref = e->prev;
    }
    return ZONE_NIL;
}

/* An entry for a new key, off every list and out of the index: a free
 * one, else an expired one, else the least recent on probation (an
 * eviction).  Probation is never empty when no entry is free: protected
 * holds at most half the zone. */
static uint32_t
rl2_zone_reclaim(rl2_zone_t *z, int64_t now_us)
{
    zone_hdr_t *h = z->hdr;
    uint32_t    ref = h->free_head;

    if (ref != ZONE_NIL) {
        h->free_head = rl2_zone_entry_at(z, ref)->next;
        rl2_zone_entry_at(z, ref)->next = ZONE_NIL;
        h->used++;
        return ref;
    }
    ref = rl2_zone_expired_near_tail(z, ZONE_PROBATION, now_us);
    if (ref == ZONE_NIL) {
        ref = rl2_zone_expired_near_tail(z, ZONE_PROTECTED, now_us);
    }
    if (ref == ZONE_NIL) {
        ref = h->lru_tail[ZONE_PROBATION - 1];
        h->evictions++;
    }
    rl2_zone_index_delete(z, rl2_zone_index_pos_of(z, ref));
    rl2_zone_lru_unlink(z, ref);
    return ref;
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

    if (ref != ZONE_NIL && rl2_zone_is_hot(z, ref)
        && rl2_zone_entry_at(z, ref)->expires_us >= now_us) {
        /* A live key that is already the most recent (a busy client
         * asking again): nothing moves, so no dirty mark either. */
        return rl2_zone_entry_state(rl2_zone_entry_at(z, ref));
    }
    rl2_zone_mark_dirty(z);
    if (ref != ZONE_NIL && rl2_zone_entry_at(z, ref)->expires_us >= now_us) {
        e = rl2_zone_entry_at(z, ref);
        rl2_zone_promote(z, ref);
    }
    else if (ref != ZONE_NIL) {
        /* Expired: the key starts again, as a new one would. */
        e = rl2_zone_entry_at(z, ref);
        rl2_zone_entry_reset(z, e, now_us);
        rl2_zone_lru_unlink(z, ref);
        rl2_zone_lru_push_head(z, ref, ZONE_PROBATION);
    }
    else {
        ref = rl2_zone_reclaim(z, now_us);
        e = rl2_zone_entry_at(z, ref);
        /* State first: a process killed between the two leaves the old
         * key with fresh state (as if evicted), never the new key with
         * the old key's count, for the rebuild to keep. */
        rl2_zone_entry_reset(z, e, now_us);
        e->key = key;
        e->hash = hash;
        rl2_zone_index_insert(z, ref, hash);
        rl2_zone_lru_push_head(z, ref, ZONE_PROBATION);
    }
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
    if (rl2_zone_is_hot(z, ref)) {
        return;
    }
    rl2_zone_mark_dirty(z);
    rl2_zone_promote(z, ref);
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
