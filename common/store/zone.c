/*
 * zone.c -- the table of a local zone: per-key state found through a
 * hash index, kept on two LRU lists, evicted when the zone is full.
 *
 * Owns the hash index, the probation and protected lists, the free list,
 * the rebuild of all of them from the entries (also the repair of a zone
 * found unsound), and the per-key entry points (get, lookup, touch,
 * keep_until, remove) and statistics of store_local.h.  The layout is in
 * store_internal.h; creating, attaching and locking the shm object are in
 * zone_shm.c.  Nothing here allocates: every entry was reserved when the
 * zone was created.
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
 * A refused request promotes only the counters that refused it, and a
 * request has one layer per key (decide.c merges a shared limit), so an
 * entry is promoted only by a second admitted request for its key or by
 * refusing.  To evict a
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

/* What a probe returns when the index cannot be sound (see below). */
#define ZONE_BAD UINT32_MAX

/* Trusting the zone.  Every process sharing it can write all of it, and
 * an image left by a crash, a bug or a hostile process of the owner's
 * user must not make us touch memory outside the mapping, nor loop.  So
 * the geometry is the handle's copy, checked at attach (zone_shm.c), and
 * every reference read from the zone (an index slot, an LRU or free link,
 * a list head or tail, an entry's list) is read once and checked before
 * it is used; every walk is bounded by the size of what it walks.  A
 * check that fails means a zone that is not sound: the operation stops,
 * the zone is rebuilt from its entries (rl2_zone_repair) and the
 * operation runs once more.  Unsound again right after a rebuild, the
 * zone is being written by someone who ignores its lock: the operation
 * gives up rather than loop (a lookup finds nothing, a get counts in the
 * handle's private state).  On the hot path this costs a compare per
 * probe step and a probe count. */

/* ---- entries, index, lists (all under the lock) ----------------------- */

/* One read of a word others may write: the value checked is the value
 * used (a plain load on every target we build for). */
static inline uint32_t
rl2_zone_read(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* ref names an entry (not ZONE_NIL). */
static inline bool
rl2_zone_ref_ok(const rl2_zone_t *z, uint32_t ref)
{
    return ref - 1 < z->geom.entries; /* ZONE_NIL wraps round */
}

/* ref names an entry or is ZONE_NIL (a link at the end of its list). */
static inline bool
rl2_zone_link_ok(const rl2_zone_t *z, uint32_t ref)
{
    return ref <= z->geom.entries;
}

/* ref must satisfy rl2_zone_ref_ok. */
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

/* The entry holding key, its slot in *pos; ZONE_NIL when there is none;
 * ZONE_BAD for a reference out of range, or a probe that went round the
 * whole index, which a sound zone never has: at most half its slots are
 * taken.  Always inlined, so that the hot caller, rl2_zone_index_find,
 * keeps key and hash in registers and repairs through a tail call. */
__attribute__((always_inline)) static inline uint32_t
rl2_zone_index_probe(const rl2_zone_t *z, rl2_digest_t key, uint32_t hash,
                     uint32_t *pos)
{
    uint32_t i = hash & z->mask;
    uint32_t left = z->mask;
    uint32_t ref;

    while ((ref = rl2_zone_read(&z->index[i])) != ZONE_NIL) {
        if (!rl2_zone_link_ok(z, ref)) {
            return ZONE_BAD;
        }
        zone_entry_t *e = rl2_zone_entry_at(z, ref);

        if (e->hash == hash && rl2_zone_key_equal(e->key, key)) {
            *pos = i;
            return ref;
        }
        if (left-- == 0) {
            return ZONE_BAD;
        }
        i = (i + 1) & z->mask;
    }
    return ZONE_NIL;
}

/* False when no slot is free, which a sound zone never has. */
static bool
rl2_zone_index_insert(rl2_zone_t *z, uint32_t ref, uint32_t hash)
{
    uint32_t i = hash & z->mask;
    uint32_t left = z->mask;

    while (rl2_zone_read(&z->index[i]) != ZONE_NIL) {
        if (left-- == 0) {
            return false;
        }
        i = (i + 1) & z->mask;
    }
    z->index[i] = ref;
    return true;
}

/* The slot of ref (an entry on an LRU list), or false when its probe run
 * ends without it: then the index and the lists disagree. */
static bool
rl2_zone_index_pos_of(const rl2_zone_t *z, uint32_t ref, uint32_t *pos)
{
    uint32_t i = rl2_zone_entry_at(z, ref)->hash & z->mask;
    uint32_t left = z->mask;
    uint32_t found;

    while ((found = rl2_zone_read(&z->index[i])) != ref) {
        if (found == ZONE_NIL || left-- == 0) {
            return false;
        }
        i = (i + 1) & z->mask;
    }
    *pos = i;
    return true;
}

/* Backward-shift deletion: empty the slot, then walk the rest of the probe
 * run and move back every member whose home is not cyclically within
 * (hole, member], so that no lookup ever stops early at the new hole.
 * False when the run holds a bad reference or never ends. */
static bool
rl2_zone_index_delete(rl2_zone_t *z, uint32_t hole)
{
    uint32_t j = hole;
    uint32_t left = z->mask;
    uint32_t ref, home;

    z->index[hole] = ZONE_NIL;
    while (left-- != 0) {
        j = (j + 1) & z->mask;
        ref = rl2_zone_read(&z->index[j]);
        if (ref == ZONE_NIL) {
            return true;
        }
        if (!rl2_zone_link_ok(z, ref)) {
            return false;
        }
        home = rl2_zone_entry_at(z, ref)->hash & z->mask;
        if (((j - home) & z->mask) >= ((j - hole) & z->mask)) {
            z->index[hole] = ref;
            z->index[j] = ZONE_NIL;
            hole = j;
        }
    }
    return false;
}

/* Off its LRU list (probation or protected, as e->list says).  False,
 * with nothing changed, when the entry is on neither or a link is out of
 * range. */
static bool
rl2_zone_lru_unlink(rl2_zone_t *z, uint32_t ref)
{
    zone_hdr_t   *h = z->hdr;
    zone_entry_t *e = rl2_zone_entry_at(z, ref);
    uint32_t      list = rl2_zone_read(&e->list);
    uint32_t      prev = rl2_zone_read(&e->prev);
    uint32_t      next = rl2_zone_read(&e->next);

    if ((list != ZONE_PROBATION && list != ZONE_PROTECTED)
        || !rl2_zone_link_ok(z, prev) || !rl2_zone_link_ok(z, next)) {
        return false;
    }
    if (prev != ZONE_NIL) {
        rl2_zone_entry_at(z, prev)->next = next;
    }
    else {
        h->lru_head[list - 1] = next;
    }
    if (next != ZONE_NIL) {
        rl2_zone_entry_at(z, next)->prev = prev;
    }
    else {
        h->lru_tail[list - 1] = prev;
    }
    e->prev = e->next = ZONE_NIL;
    h->protected_used -= list == ZONE_PROTECTED;
    return true;
}

/* Onto the head of `list` (ZONE_PROBATION or ZONE_PROTECTED).  False, with
 * nothing changed, when the list's head is out of range. */
static bool
rl2_zone_lru_push_head(rl2_zone_t *z, uint32_t ref, uint32_t list)
{
    zone_hdr_t   *h = z->hdr;
    zone_entry_t *e = rl2_zone_entry_at(z, ref);
    uint32_t      head = rl2_zone_read(&h->lru_head[list - 1]);

    if (!rl2_zone_link_ok(z, head)) {
        return false;
    }
    e->list = list;
    e->prev = ZONE_NIL;
    e->next = head;
    if (head != ZONE_NIL) {
        rl2_zone_entry_at(z, head)->prev = ref;
    }
    else {
        h->lru_tail[list - 1] = ref;
    }
    h->lru_head[list - 1] = ref;
    h->protected_used += list == ZONE_PROTECTED;
    return true;
}

/* Make ref the most recent protected entry; past half the zone, the least
 * recent protected entry goes back to the head of probation.  That one is
 * never ref, nor any entry a request holds: protected then holds more
 * than RL2_MAX_LAYERS entries newer than it (RL2_ZONE_MIN_ENTRIES). */
static bool
rl2_zone_promote(rl2_zone_t *z, uint32_t ref)
{
    zone_hdr_t *h = z->hdr;
    uint32_t    demoted;

    if (!rl2_zone_lru_unlink(z, ref)
        || !rl2_zone_lru_push_head(z, ref, ZONE_PROTECTED)) {
        return false;
    }
    if (h->protected_used <= z->geom.entries / 2) {
        return true;
    }
    demoted = rl2_zone_read(&h->lru_tail[ZONE_PROTECTED - 1]);
    return rl2_zone_ref_ok(z, demoted) && rl2_zone_lru_unlink(z, demoted)
           && rl2_zone_lru_push_head(z, demoted, ZONE_PROBATION);
}

static void
rl2_zone_free_push(rl2_zone_t *z, uint32_t ref)
{
    zone_entry_t *e = rl2_zone_entry_at(z, ref);

    e->list = ZONE_FREE;
    e->prev = ZONE_NIL;
    e->next = z->hdr->free_head; /* checked when it is popped */
    z->hdr->free_head = ref;
}

/* Rebuild the index and the lists from the entries' list fields and
 * keys.  Used to initialise a new zone, after a process died mid-change,
 * and to repair a zone found unsound; recency is lost then (array order),
 * which only shifts who is evicted next, while a half-linked list could
 * loop forever.  An entry keeps its list unless protected would pass half
 * the zone.  Nothing it reads can lead it astray: it walks the entries by
 * position, starts from an empty index, and checks a list field before
 * believing it. */
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

        list = rl2_zone_read(&e->list);
        if (list != ZONE_PROBATION && list != ZONE_PROTECTED) {
            rl2_zone_free_push(z, ref);
            continue;
        }
        e->hash = rl2_zone_key_hash(z, e->key);
        /* A duplicate cannot be trusted; the other two fail only while
         * someone writes the zone without its lock. */
        if (rl2_zone_index_probe(z, e->key, e->hash, &pos) != ZONE_NIL
            || !rl2_zone_index_insert(z, ref, e->hash)) {
            rl2_zone_free_push(z, ref);
            continue;
        }
        list = list == ZONE_PROTECTED && h->protected_used < z->geom.entries / 2
                   ? ZONE_PROTECTED
                   : ZONE_PROBATION;
        if (!rl2_zone_lru_push_head(z, ref, list)) {
            continue;
        }
        h->used++;
    }
}

/* Under the lock: rebuild a zone found unsound.  Cold: a sound zone never
 * gets here. */
__attribute__((cold, noinline)) static void
rl2_zone_repair(rl2_zone_t *z)
{
    rl2_zone_mark_dirty(z);
    rl2_zone_rebuild(z);
    rl2_zone_mark_clean(z);
}

/* rl2_zone_index_find on a zone its probe found unsound: repair, look
 * again.  Still unsound right after a rebuild, the zone is being written
 * without its lock: the key is not found. */
__attribute__((cold, noinline)) static uint32_t
rl2_zone_find_repaired(rl2_zone_t *z, rl2_digest_t key, uint32_t hash,
                       uint32_t *pos)
{
    uint32_t ref;

    rl2_zone_repair(z);
    ref = rl2_zone_index_probe(z, key, hash, pos);
    return ref == ZONE_BAD ? ZONE_NIL : ref;
}

/* The entry holding key, its slot in *pos, or ZONE_NIL; a zone found
 * unsound on the way is repaired first. */
static uint32_t
rl2_zone_index_find(rl2_zone_t *z, rl2_digest_t key, uint32_t hash,
                    uint32_t *pos)
{
    uint32_t ref = rl2_zone_index_probe(z, key, hash, pos);

    if (ref == ZONE_BAD) {
        return rl2_zone_find_repaired(z, key, hash, pos);
    }
    return ref;
}

/* An expired entry among the ZONE_EXPIRE_SCAN least recent of list into
 * *out, or ZONE_NIL.  False on a link out of range. */
static bool
rl2_zone_expired_near_tail(const rl2_zone_t *z, uint32_t list, int64_t now_us,
                           uint32_t *out)
{
    uint32_t ref = rl2_zone_read(&z->hdr->lru_tail[list - 1]);
    int      i;

    *out = ZONE_NIL;
    for (i = 0; ref != ZONE_NIL && i < ZONE_EXPIRE_SCAN; i++) {
        if (!rl2_zone_link_ok(z, ref)) {
            return false;
        }
        const zone_entry_t *e = rl2_zone_entry_at(z, ref);

        if (e->expires_us < now_us) {
            *out = ref;
            return true;
        }
        ref = rl2_zone_read(&e->prev);
    }
    return true;
}

/* A free entry off the free list into *out, or ZONE_NIL when the list is
 * empty.  False when its head is out of range or not free. */
static bool
rl2_zone_free_pop(rl2_zone_t *z, uint32_t *out)
{
    zone_hdr_t   *h = z->hdr;
    uint32_t      ref = rl2_zone_read(&h->free_head);
    zone_entry_t *e;
    uint32_t      next;

    *out = ZONE_NIL;
    if (ref == ZONE_NIL) {
        return true;
    }
    if (!rl2_zone_link_ok(z, ref)) {
        return false;
    }
    e = rl2_zone_entry_at(z, ref);
    next = rl2_zone_read(&e->next);
    if (rl2_zone_read(&e->list) != ZONE_FREE || !rl2_zone_link_ok(z, next)) {
        return false;
    }
    h->free_head = next;
    e->next = ZONE_NIL;
    h->used++;
    *out = ref;
    return true;
}

/* An entry for a new key into *out, off every list and out of the index:
 * a free one, else an expired one, else the least recent on probation (an
 * eviction).  Probation is never empty when no entry is free: protected
 * holds at most half the zone.  False when the zone is found unsound. */
static bool
rl2_zone_reclaim(rl2_zone_t *z, int64_t now_us, uint32_t *out)
{
    zone_hdr_t *h = z->hdr;
    uint32_t    ref, pos;
    bool        evicted = false;

    if (!rl2_zone_free_pop(z, out)) {
        return false;
    }
    if (*out != ZONE_NIL) {
        return true;
    }
    if (!rl2_zone_expired_near_tail(z, ZONE_PROBATION, now_us, &ref)
        || (ref == ZONE_NIL
            && !rl2_zone_expired_near_tail(z, ZONE_PROTECTED, now_us, &ref))) {
        return false;
    }
    if (ref == ZONE_NIL) {
        ref = rl2_zone_read(&h->lru_tail[ZONE_PROBATION - 1]);
        evicted = true;
    }
    if (!rl2_zone_ref_ok(z, ref) || !rl2_zone_index_pos_of(z, ref, &pos)
        || !rl2_zone_index_delete(z, pos) || !rl2_zone_lru_unlink(z, ref)) {
        return false;
    }
    h->evictions += evicted;
    h->reclaimed += !evicted;
    *out = ref;
    return true;
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

/* rl2_zone_get, or false, part done, on a zone found unsound. */
static bool
rl2_zone_get_once(rl2_zone_t *z, rl2_digest_t key, uint32_t hash,
                  int64_t now_us, void **state)
{
    uint32_t      pos;
    uint32_t      ref = rl2_zone_index_find(z, key, hash, &pos);
    zone_entry_t *e;

    if (ref != ZONE_NIL && rl2_zone_is_hot(z, ref)
        && rl2_zone_entry_at(z, ref)->expires_us >= now_us) {
        /* A live key that is already the most recent (a busy client
         * asking again): nothing moves, so no dirty mark either. */
        *state = rl2_zone_entry_state(rl2_zone_entry_at(z, ref));
        return true;
    }
    rl2_zone_mark_dirty(z);
    if (ref != ZONE_NIL && rl2_zone_entry_at(z, ref)->expires_us >= now_us) {
        e = rl2_zone_entry_at(z, ref);
        if (!rl2_zone_promote(z, ref)) {
            return false;
        }
    }
    else if (ref != ZONE_NIL) {
        /* Expired: the key starts again, as a new one would. */
        e = rl2_zone_entry_at(z, ref);
        if (!rl2_zone_lru_unlink(z, ref)
            || !rl2_zone_lru_push_head(z, ref, ZONE_PROBATION)) {
            return false;
        }
        rl2_zone_entry_reset(z, e, now_us);
    }
    else {
        if (!rl2_zone_reclaim(z, now_us, &ref)) {
            return false;
        }
        e = rl2_zone_entry_at(z, ref);
        /* State first: a process killed between the two leaves the old
         * key with fresh state (as if evicted), never the new key with
         * the old key's count, for the rebuild to keep. */
        rl2_zone_entry_reset(z, e, now_us);
        e->key = key;
        e->hash = hash;
        e->tag = 0; /* rl2_zone_tag says whose it is */
        if (!rl2_zone_index_insert(z, ref, hash)
            || !rl2_zone_lru_push_head(z, ref, ZONE_PROBATION)) {
            return false;
        }
    }
    rl2_zone_mark_clean(z);
    *state = rl2_zone_entry_state(e);
    return true;
}

void *
rl2_zone_get(rl2_zone_t *z, rl2_digest_t key, int64_t now_us)
{
    uint32_t hash = rl2_zone_key_hash(z, key);
    void    *state;

    if (rl2_zone_get_once(z, key, hash, now_us, &state)) {
        return state;
    }
    rl2_zone_repair(z);
    if (rl2_zone_get_once(z, key, hash, now_us, &state)) {
        return state;
    }
    /* Unsound again right after a rebuild: someone writes the zone
     * without its lock.  This request counts alone, in the handle's own
     * state, which no other request shares. */
    rl2_zone_repair(z);
    memset(z->scratch, 0, z->geom.state_size);
    return z->scratch;
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
    if (!rl2_zone_promote(z, ref)) {
        /* Recency is all a touch changes, and a rebuild has reset it. */
        rl2_zone_repair(z);
    }
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

/* rl2_zone_remove, or false, part done, on a zone found unsound. */
static bool
rl2_zone_remove_once(rl2_zone_t *z, rl2_digest_t key, uint32_t hash)
{
    uint32_t pos;
    uint32_t ref = rl2_zone_index_find(z, key, hash, &pos);

    if (ref == ZONE_NIL) {
        return true;
    }
    rl2_zone_mark_dirty(z);
    if (!rl2_zone_index_delete(z, pos) || !rl2_zone_lru_unlink(z, ref)) {
        return false;
    }
    rl2_zone_free_push(z, ref);
    z->hdr->used--;
    rl2_zone_mark_clean(z);
    return true;
}

void
rl2_zone_remove(rl2_zone_t *z, rl2_digest_t key)
{
    uint32_t hash = rl2_zone_key_hash(z, key);

    if (!rl2_zone_remove_once(z, key, hash)) {
        rl2_zone_repair(z);
        if (!rl2_zone_remove_once(z, key, hash)) {
            rl2_zone_repair(z); /* written without the lock: give up */
        }
    }
}

rl2_status_t
rl2_zone_forget(rl2_zone_t *z, const rl2_layer_t *layers, size_t n,
                rl2_err_t *err)
{
    rl2_status_t st = rl2_zone_lock(z, err);

    if (st != RL2_OK) {
        return st;
    }
    for (size_t i = 0; i < n; i++) {
        rl2_zone_remove(z, layers[i].key);
    }
    rl2_zone_unlock(z);
    return RL2_OK;
}

/* ---- keys per limit ---------------------------------------------------- */

/* The limit names live in the zone header, written by any process that
 * shares the zone: a tag is looked for in every slot (a freed slot may
 * sit in the middle of a probe run, so no probe stops early), and a name
 * is believed only once copied and cut to what a policy name may hold
 * (load/config_value.c: letters, digits, '_', '.', '-'). */

uint32_t
rl2_zone_limit_tag(const rl2_hash_key_t *key_seed)
{
    uint32_t tag;

    memcpy(&tag, key_seed->k, sizeof(tag));
    return tag != 0 ? tag : 1;
}

/* The slot of tag, or ZONE_TAGS when the table has none. */
static unsigned
rl2_zone_tag_slot(const zone_hdr_t *h, uint32_t tag)
{
    for (unsigned i = 0; i < ZONE_TAGS; i++) {
        unsigned s = (tag + i) & (ZONE_TAGS - 1);

        if (rl2_zone_read(&h->tags[s].tag) == tag) {
            return s;
        }
    }
    return ZONE_TAGS;
}

void
rl2_zone_tag(rl2_zone_t *z, void *state, uint32_t tag, const char *name)
{
    zone_entry_t *e = rl2_zone_entry_of(z, state);
    zone_hdr_t   *h = z->hdr;
    size_t        n;

    if (e == NULL || tag == 0) {
        return;
    }
    e->tag = tag;
    if (rl2_zone_tag_slot(h, tag) != ZONE_TAGS) {
        return;
    }
    for (unsigned i = 0; i < ZONE_TAGS; i++) {
        zone_tag_t *t = &h->tags[(tag + i) & (ZONE_TAGS - 1)];

        if (rl2_zone_read(&t->tag) == 0) {
            /* Name first: a reader under the lock never sees the tag
             * without it. */
            n = strnlen(name, RL2_ZONE_LIMIT_NAME_MAX);
            memset(t->name, 0, sizeof(t->name));
            memcpy(t->name, name, n);
            t->tag = tag;
            return;
        }
    }
    /* Every slot taken: its keys are counted as unnamed. */
}

/* A name read from the zone into out, cut to a policy name's bytes;
 * false when nothing is left of it. */
static bool
rl2_zone_name_copy(const zone_tag_t *t, char out[RL2_ZONE_LIMIT_NAME_MAX + 1])
{
    size_t i;

    for (i = 0; i < RL2_ZONE_LIMIT_NAME_MAX; i++) {
        char c = t->name[i];

        if (c == '\0') {
            break;
        }
        out[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                         || (c >= '0' && c <= '9') || c == '_' || c == '.'
                         || c == '-'
                     ? c
                     : '_';
    }
    out[i] = '\0';
    return i > 0;
}

/* ---- the sweep --------------------------------------------------------- */

/* Expiry is silent: an entry whose key expired stays on its list, and in
 * `used`, until a new key takes it (rl2_zone_reclaim), its own key comes
 * back (rl2_zone_get), or a sweep takes it back.  A sweep walks entries
 * by position from where the last one stopped, a chunk per lock hold,
 * and puts the expired ones on the free list: the metrics upkeep sweeps
 * RL2_ZONE_SWEEP_PER_UPKEEP entries a second (while zone_full has a
 * level to decide, metrics_clients.c), so `used` exceeds the live keys
 * by the entries expired in the last ceil(entries / that) seconds at
 * most; rl2_zone_usage() sweeps the whole table.  Requests never
 * sweep: the decision path does not change. */

#define ZONE_SWEEP_CHUNK \
    4096u /* entries per lock hold: tens of µs, \
             the most a request waits for a sweep */

/* What a walk found. */
typedef struct {
    uint64_t live;
    uint64_t reclaimed;
    uint64_t unnamed;
    uint64_t by_slot[ZONE_TAGS];
} zone_count_t;

/* Take back ref, an entry on an LRU list whose key expired: out of the
 * index and off its list, onto the free list.  False when the zone is
 * found unsound. */
static bool
rl2_zone_take_back(rl2_zone_t *z, uint32_t ref)
{
    uint32_t pos;

    if (!rl2_zone_index_pos_of(z, ref, &pos) || !rl2_zone_index_delete(z, pos)
        || !rl2_zone_lru_unlink(z, ref)) {
        return false;
    }
    rl2_zone_free_push(z, ref);
    z->hdr->used--;
    z->hdr->reclaimed++;
    return true;
}

static void
rl2_zone_count_live(const rl2_zone_t *z, const zone_entry_t *e, zone_count_t *c)
{
    uint32_t tag = rl2_zone_read(&e->tag);
    unsigned s = tag != 0 ? rl2_zone_tag_slot(z->hdr, tag) : ZONE_TAGS;

    c->live++;
    if (s == ZONE_TAGS) {
        c->unnamed++;
    }
    else {
        c->by_slot[s]++;
    }
}

/* Under the lock: the entries at positions [from, from + n), n <= the
 * entries after from; the expired ones taken back, the live ones counted
 * into c.  A zone found unsound is rebuilt and the rest of the range
 * left to the next walk. */
static void
rl2_zone_sweep_range(rl2_zone_t *z, uint32_t from, uint32_t n, int64_t now_us,
                     zone_count_t *c)
{
    rl2_zone_mark_dirty(z);
    for (uint32_t ref = from + 1; ref <= from + n; ref++) {
        const zone_entry_t *e = rl2_zone_entry_at(z, ref);
        uint32_t            list = rl2_zone_read(&e->list);

        if (list != ZONE_PROBATION && list != ZONE_PROTECTED) {
            continue;
        }
        if (e->expires_us >= now_us) {
            rl2_zone_count_live(z, e, c);
            continue;
        }
        if (!rl2_zone_take_back(z, ref)) {
            rl2_zone_repair(z);
            return;
        }
        c->reclaimed++;
    }
    rl2_zone_mark_clean(z);
}

rl2_status_t
rl2_zone_sweep(rl2_zone_t *z, int64_t now_us, uint32_t max, uint64_t *reclaimed,
               rl2_err_t *err)
{
    uint32_t     left = max < z->geom.entries ? max : z->geom.entries;
    uint32_t     at, n;
    zone_count_t c;
    rl2_status_t st;

    memset(&c, 0, sizeof(c));
    while (left > 0) {
        if ((st = rl2_zone_lock(z, err)) != RL2_OK) {
            return st;
        }
        at = z->hdr->sweep_next;
        at = at < z->geom.entries ? at : 0; /* read once, checked */
        n = z->geom.entries - at;
        n = n < ZONE_SWEEP_CHUNK ? n : ZONE_SWEEP_CHUNK;
        n = n < left ? n : left;
        rl2_zone_sweep_range(z, at, n, now_us, &c);
        z->hdr->sweep_next = at + n < z->geom.entries ? at + n : 0;
        rl2_zone_unlock(z);
        left -= n;
    }
    if (reclaimed != NULL) {
        *reclaimed = c.reclaimed;
    }
    return RL2_OK;
}

/* ---- statistics -------------------------------------------------------- */

/* Under the lock. */
static void
rl2_zone_stats_locked(const rl2_zone_t *z, rl2_zone_stats_t *out)
{
    out->entries = z->geom.entries;
    out->used = z->hdr->used;
    out->evictions = z->hdr->evictions;
    out->lock_recoveries = z->hdr->lock_recoveries;
    out->state_size = z->geom.state_size;
    out->bytes = z->geom.bytes;
    out->reclaimed = z->hdr->reclaimed;
    out->entry_bytes = z->geom.stride;
    out->fixed_bytes = z->geom.entries_off;
}

rl2_status_t
rl2_zone_stats(rl2_zone_t *z, rl2_zone_stats_t *out, rl2_err_t *err)
{
    rl2_status_t st = rl2_zone_lock(z, err);

    if (st != RL2_OK) {
        return st;
    }
    rl2_zone_stats_locked(z, out);
    rl2_zone_unlock(z);
    return RL2_OK;
}

/* Add a named slot's count to out, one line per name: limits that share
 * a name under other algorithms or windows (other tags) are one. */
static void
rl2_zone_usage_add(rl2_zone_usage_t *out, const char *name, uint64_t keys)
{
    for (size_t i = 0; i < out->n_limits; i++) {
        if (strcmp(out->limits[i].name, name) == 0) {
            out->limits[i].keys += keys;
            return;
        }
    }
    /* n_limits < RL2_ZONE_LIMITS: one line per slot at most. */
    memcpy(out->limits[out->n_limits].name, name, sizeof(out->limits[0].name));
    out->limits[out->n_limits++].keys = keys;
}

/* Under the lock, after a walk: the named counts into out; a slot whose
 * limit had no live key is given up (a policy reload may have dropped
 * the limit; a key of it met later names it again). */
static void
rl2_zone_usage_names(rl2_zone_t *z, const zone_count_t *c,
                     rl2_zone_usage_t *out)
{
    char name[RL2_ZONE_LIMIT_NAME_MAX + 1];

    out->unnamed = c->unnamed;
    for (unsigned s = 0; s < ZONE_TAGS; s++) {
        zone_tag_t *t = &z->hdr->tags[s];

        if (rl2_zone_read(&t->tag) == 0) {
            continue;
        }
        if (c->by_slot[s] == 0) {
            t->tag = 0;
        }
        else if (rl2_zone_name_copy(t, name)) {
            rl2_zone_usage_add(out, name, c->by_slot[s]);
        }
        else {
            out->unnamed += c->by_slot[s];
        }
    }
}

rl2_status_t
rl2_zone_usage(rl2_zone_t *z, int64_t now_us, rl2_zone_usage_t *out,
               rl2_zone_stats_t *stats, rl2_err_t *err)
{
    zone_count_t     c;
    rl2_zone_stats_t s;
    rl2_status_t     st;
    uint32_t         n;

    memset(&c, 0, sizeof(c));
    memset(out, 0, sizeof(*out));
    for (uint32_t at = 0; at < z->geom.entries; at += n) {
        n = z->geom.entries - at;
        n = n < ZONE_SWEEP_CHUNK ? n : ZONE_SWEEP_CHUNK;
        if ((st = rl2_zone_lock(z, err)) != RL2_OK) {
            return st;
        }
        rl2_zone_sweep_range(z, at, n, now_us, &c);
        rl2_zone_unlock(z);
    }
    if ((st = rl2_zone_lock(z, err)) != RL2_OK) {
        return st;
    }
    rl2_zone_usage_names(z, &c, out);
    rl2_zone_stats_locked(z, &s);
    rl2_zone_unlock(z);
    out->live = c.live;
    out->bytes_used = s.fixed_bytes + c.live * s.entry_bytes;
    out->bytes_reserved = s.bytes;
    out->reclaimed = s.reclaimed;
    if (stats != NULL) {
        *stats = s;
    }
    return RL2_OK;
}

size_t
rl2_zone_state_size(const rl2_zone_t *z)
{
    return (size_t)z->geom.state_size;
}
