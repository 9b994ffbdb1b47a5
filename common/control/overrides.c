/*
 * overrides.c -- the runtime override table in shared memory.
 *
 * Owns the table's slots (open addressing, linear probing, keyed by
 * override_target.c's digest of kind and target), the writers' lock and
 * the readers' sequence counter.
 *
 * Writers (ratelimit2ctl, the admin interface, automatic bans) are rare:
 * they take a record lock on the object (a process's own, released by
 * the kernel if the writer dies, so a killed ratelimit2ctl never wedges
 * the table) and, within a process, a mutex (a record lock does not
 * exclude the process's own threads).  A writer makes the sequence
 * counter odd, changes slots, and makes it even again.  Readers (every
 * request, override_read.c) take no lock: they read the counter, copy
 * what they need, and read it again; a change in between sends them
 * round once more.  A writer that died half-way left the counter odd
 * and its slots half-changed: the next writer makes the table again
 * from the state file (rl2_ovr_repair).
 *
 * Expired entries are ignored by readers at once; a writer removes them
 * (purge) and saves the state file without them.
 *
 * With a Redis side (override_redis.c) a set or a remove goes to Redis
 * first, and the slots follow; the mirror's sync rewrites only the slots
 * that differ from the Redis hash (rl2_ovr_mirror).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/base_internal.h"
#include "base/shm_obj_internal.h"
#include "control_internal.h"

#define OVR_MAGIC 0x4f565231u /* "OVR1" */
/* 3: the shm_obj header of its own, and the Redis mirror's fields */
#define OVR_VERSION 5u

static int
rl2_ovr_expired(const rl2_override_t *o, int64_t now_us)
{
    return o->expires_us != 0 && o->expires_us <= now_us;
}

long
rl2_ovr_find(const ovr_shm_t *s, rl2_digest_t key)
{
    for (uint32_t i = 0, at = (uint32_t)key.lo & OVR_MASK; i < OVR_SLOTS;
         i++, at = (at + 1) & OVR_MASK) {
        uint32_t state =
            atomic_load_explicit(&s->slots[at].state, memory_order_relaxed);

        if (state == OVR_EMPTY) {
            return -1;
        }
        if (state == OVR_USED && s->slots[at].key.hi == key.hi
            && s->slots[at].key.lo == key.lo) {
            return (long)at;
        }
    }
    return -1;
}

/* ---- the writers' lock -------------------------------------------------- */

/* The writers' lock between processes: a POSIX record lock on the whole
 * object (F_WRLCK, or F_UNLCK).  Not flock: a flock belongs to the open
 * file, which every child shares with the parent that opened the table
 * (Apache), so it would exclude none of them; a record lock belongs to
 * the process, is not inherited, and goes when the process dies. */
static int
rl2_ovr_record_lock(int fd, short type, int wait)
{
    struct flock l = { .l_type = type, .l_whence = SEEK_SET };

    return fcntl(fd, wait ? F_SETLKW : F_SETLK, &l);
}

static void rl2_ovr_repair(rl2_overrides_t *t, uint64_t seq);

/* Take the writers' lock; without `wait`, RL2_ERR_STORE at once when
 * another writer holds it. */
static rl2_status_t
rl2_ovr_lock_as(rl2_overrides_t *t, int wait, rl2_err_t *err)
{
    uint64_t seq;

    if (!wait && pthread_mutex_trylock(&t->thread_lock) != 0) {
        return rl2_err_set(err, RL2_ERR_STORE, "overrides %s: busy", t->name);
    }
    if (wait) {
        pthread_mutex_lock(&t->thread_lock);
    }
    while (rl2_ovr_record_lock(t->lock_fd, F_WRLCK, wait) != 0) {
        if (errno != EINTR) {
            int e = errno;

            pthread_mutex_unlock(&t->thread_lock);
            return e == EAGAIN || e == EACCES
                       ? rl2_err_set(err, RL2_ERR_STORE, "overrides %s: busy",
                                     t->name)
                       : rl2_err_set(err, RL2_ERR_SYS, "overrides %s: lock: %s",
                                     t->name, strerror(e));
        }
    }
    /* A writer that died between the two increments left it odd. */
    seq = atomic_load_explicit(&t->shm->seq, memory_order_relaxed);
    if ((seq & 1) || t->shm->writing) {
        rl2_ovr_repair(t, seq);
    }
    return RL2_OK;
}

rl2_status_t
rl2_ovr_lock(rl2_overrides_t *t, rl2_err_t *err)
{
    return rl2_ovr_lock_as(t, 1, err);
}

void
rl2_ovr_unlock(rl2_overrides_t *t)
{
    rl2_ovr_record_lock(t->lock_fd, F_UNLCK, 0);
    pthread_mutex_unlock(&t->thread_lock);
}

uint64_t
rl2_ovr_wait_even(const rl2_overrides_t *t)
{
    /* Readers take no lock, but the mending below must not overtake a
     * writer of this process (a record lock does not exclude the
     * process's own threads): its mutex is tried first. */
    pthread_mutex_t *mutex = (pthread_mutex_t *)&t->thread_lock;
    unsigned         spins = 0;
    uint64_t         seq;

    while ((seq = atomic_load_explicit(&t->shm->seq, memory_order_acquire))
           & 1) {
        if (++spins % OVR_MEND_SPINS == 0
            && pthread_mutex_trylock(mutex) == 0) {
            if (rl2_ovr_record_lock(t->lock_fd, F_WRLCK, 0) == 0) {
                /* No writer holds the lock: the one that made it odd
                 * died.  Of several readers mending it, one does (the
                 * slots it left are the next writer's to mend:
                 * rl2_ovr_repair). */
                atomic_compare_exchange_strong_explicit(
                    &t->shm->seq, &seq, seq + 1, memory_order_release,
                    memory_order_relaxed);
                rl2_ovr_record_lock(t->lock_fd, F_UNLCK, 0);
            }
            pthread_mutex_unlock(mutex);
        }
        sched_yield();
    }
    return seq;
}

static void
rl2_ovr_write_begin(ovr_shm_t *s)
{
    s->writing = 1;
    atomic_fetch_add_explicit(&s->seq, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void
rl2_ovr_write_end(ovr_shm_t *s)
{
    atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
    atomic_fetch_add_explicit(&s->version, 1, memory_order_relaxed);
    s->writing = 0;
}

/* ---- slots --------------------------------------------------------------- */

static void
rl2_ovr_prefix_mark(ovr_shm_t *s, const ovr_slot_t *slot)
{
    int      family;
    uint8_t  addr[16];
    unsigned prefix;

    if (slot->o.target_kind != RL2_OVT_ADDR
        || rl2_ovr_addr_parse(slot->o.target, &family, addr, &prefix) != 0) {
        return;
    }
    if (family == AF_INET) {
        s->v4_prefixes |= 1ULL << prefix;
    }
    else {
        s->v6_prefixes[prefix / 64] |= 1ULL << (prefix % 64);
    }
}

/* Counts, prefixes in use and the next expiry, worked out again from the
 * slots after a removal (writers only; a few thousand slots at most). */
static void
rl2_ovr_recount(ovr_shm_t *s)
{
    uint32_t used = 0, identity = 0;

    memset(s->n_kind, 0, sizeof(s->n_kind));
    s->v4_prefixes = 0;
    memset(s->v6_prefixes, 0, sizeof(s->v6_prefixes));
    s->next_expiry_us = 0;
    for (uint32_t i = 0; i < OVR_SLOTS; i++) {
        const ovr_slot_t *slot = &s->slots[i];

        if (atomic_load_explicit(&slot->state, memory_order_relaxed)
            != OVR_USED) {
            continue;
        }
        used++;
        s->n_kind[slot->o.kind]++;
        identity += slot->o.target_kind == RL2_OVT_USER
                    || slot->o.target_kind == RL2_OVT_KEY;
        rl2_ovr_prefix_mark(s, slot);
        if (slot->o.expires_us != 0
            && (s->next_expiry_us == 0
                || slot->o.expires_us < s->next_expiry_us)) {
            s->next_expiry_us = slot->o.expires_us;
        }
    }
    atomic_store_explicit(&s->used, used, memory_order_relaxed);
    atomic_store_explicit(&s->n_identity, identity, memory_order_relaxed);
}

/* Rewrite the slots without tombstones, so that misses stay short.
 * Without memory for the copy the tombstones stay: slower misses, the
 * same answers. */
static void
rl2_ovr_compact(ovr_shm_t *s)
{
    uint32_t n = 0, used = atomic_load_explicit(&s->used, memory_order_relaxed);
    ovr_slot_t *keep = malloc((used > 0 ? used : 1) * sizeof(*keep));

    if (keep == NULL) {
        return;
    }
    for (uint32_t i = 0; i < OVR_SLOTS; i++) {
        uint32_t state =
            atomic_load_explicit(&s->slots[i].state, memory_order_relaxed);

        if (state == OVR_USED && n < used) {
            keep[n++] = s->slots[i];
        }
        atomic_store_explicit(&s->slots[i].state, OVR_EMPTY,
                              memory_order_relaxed);
    }
    for (uint32_t k = 0; k < n; k++) {
        uint32_t at = (uint32_t)keep[k].key.lo & OVR_MASK;

        while (atomic_load_explicit(&s->slots[at].state, memory_order_relaxed)
               != OVR_EMPTY) {
            at = (at + 1) & OVR_MASK;
        }
        s->slots[at] = keep[k];
    }
    s->gone = 0;
    free(keep);
}

/* Remove expired entries; 1 if any went. */
/* Slot at leaves the table: a tombstone, so that probes for the keys
 * after it go on; the next compaction reclaims it (gone counts them). */
static void
rl2_ovr_slot_drop(ovr_shm_t *s, uint32_t at)
{
    atomic_store_explicit(&s->slots[at].state, OVR_GONE, memory_order_relaxed);
    s->gone++;
}

static int
rl2_ovr_purge(ovr_shm_t *s, int64_t now_us)
{
    int any = 0;

    if (s->next_expiry_us == 0 || s->next_expiry_us > now_us) {
        return 0;
    }
    for (uint32_t i = 0; i < OVR_SLOTS; i++) {
        const ovr_slot_t *slot = &s->slots[i];

        if (atomic_load_explicit(&slot->state, memory_order_relaxed) == OVR_USED
            && rl2_ovr_expired(&slot->o, now_us)) {
            rl2_ovr_slot_drop(s, i);
            any = 1;
        }
    }
    rl2_ovr_recount(s);
    return any;
}

/* Under the writers' lock, after a writer died half-way through a change
 * (seq as found): its slots may be half-moved (a compaction empties
 * every slot before it puts the entries back) or half-copied, and
 * readers would take what is left for the table.  The state file has
 * every change made before it (a change is saved after its slots are
 * done, and the dead one was not): the table is made again from it.
 * Without a state file the slots are all there is; they are recounted. */
static void
rl2_ovr_repair(rl2_overrides_t *t, uint64_t seq)
{
    ovr_shm_t  *s = t->shm;
    rl2_clock_t now;
    rl2_err_t   lost;

    if (!(seq & 1)) {
        atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    }
    atomic_thread_fence(memory_order_release);
    s->writing = 1;
    if (t->state_file != NULL
        && atomic_load_explicit(&s->loaded, memory_order_relaxed)) {
        for (uint32_t i = 0; i < OVR_SLOTS; i++) {
            atomic_store_explicit(&s->slots[i].state, OVR_EMPTY,
                                  memory_order_relaxed);
        }
        s->gone = 0;
        rl2_ovr_recount(s);
        rl2_clock_now(&now);
        (void)rl2_ovr_file_load(t, t->state_file, &now, &lost);
    }
    rl2_ovr_recount(s);
    rl2_ovr_write_end(s);
}

/* Writers: o under key in the first slot its probe finds free (the
 * caller checked there is room and that key is not there). */
static uint32_t
rl2_ovr_slot_insert(ovr_shm_t *s, rl2_digest_t key, const rl2_override_t *o)
{
    uint32_t at = (uint32_t)key.lo & OVR_MASK;

    while (atomic_load_explicit(&s->slots[at].state, memory_order_relaxed)
           == OVR_USED) {
        at = (at + 1) & OVR_MASK;
    }
    if (atomic_load_explicit(&s->slots[at].state, memory_order_relaxed)
        == OVR_GONE) {
        s->gone--;
    }
    s->slots[at].key = key;
    s->slots[at].o = *o;
    atomic_store_explicit(&s->slots[at].state, OVR_USED, memory_order_relaxed);
    return at;
}

/* What rl2_ovr_recount would find once slot is added: the counts of one
 * entry more, without walking every slot (a state file of 10,000 entries
 * walked the 7 MB of slots 10,000 times when it was loaded: seconds for
 * every server's start, minutes under valgrind). */
static void
rl2_ovr_count_one(ovr_shm_t *s, const ovr_slot_t *slot)
{
    atomic_fetch_add_explicit(&s->used, 1, memory_order_relaxed);
    s->n_kind[slot->o.kind]++;
    if (slot->o.target_kind == RL2_OVT_USER
        || slot->o.target_kind == RL2_OVT_KEY) {
        atomic_fetch_add_explicit(&s->n_identity, 1, memory_order_relaxed);
    }
    rl2_ovr_prefix_mark(s, slot);
    if (slot->o.expires_us != 0
        && (s->next_expiry_us == 0 || slot->o.expires_us < s->next_expiry_us)) {
        s->next_expiry_us = slot->o.expires_us;
    }
}

rl2_status_t
rl2_ovr_put(rl2_overrides_t *t, const rl2_override_t *o, rl2_override_t *before,
            rl2_err_t *err)
{
    ovr_shm_t   *s = t->shm;
    rl2_digest_t key = rl2_ovr_key(o->kind, o->target_kind, o->target);
    long         at = rl2_ovr_find(s, key);

    if (at >= 0) {
        *before = s->slots[at].o;
        s->slots[at].o = *o;
        rl2_ovr_recount(s);
        return RL2_OK;
    }
    before->kind = 0;
    if (atomic_load_explicit(&s->used, memory_order_relaxed)
        >= OVR_MAX_ENTRIES) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "overrides %s: full (%u entries): remove some "
                           "first",
                           t->name, OVR_MAX_ENTRIES);
    }
    if (s->gone > OVR_SLOTS / 4) {
        rl2_ovr_compact(s);
    }
    rl2_ovr_count_one(s, &s->slots[rl2_ovr_slot_insert(s, key, o)]);
    return RL2_OK;
}

/* ---- the mirror of the Redis hash ----------------------------------------
 */

/* Mark in keep[] the slots whose entries o[0..n) holds. */
static void
rl2_ovr_mirror_mark(const ovr_shm_t *s, const rl2_override_t *o, size_t n,
                    uint8_t *keep)
{
    for (size_t i = 0; i < n; i++) {
        long at = rl2_ovr_find(
            s, rl2_ovr_key(o[i].kind, o[i].target_kind, o[i].target));

        if (at >= 0) {
            keep[at] = 1;
        }
    }
}

/* The slots keep[] does not mark go (tombstones, as a remove leaves). */
static void
rl2_ovr_mirror_drop(ovr_shm_t *s, const uint8_t *keep)
{
    for (uint32_t i = 0; i < OVR_SLOTS; i++) {
        if (!keep[i]
            && atomic_load_explicit(&s->slots[i].state, memory_order_relaxed)
                   == OVR_USED) {
            rl2_ovr_slot_drop(s, i);
        }
    }
}

/* o in: its slot rewritten only when it differs; 0, or -1 when the
 * table has no room for a new entry. */
static int
rl2_ovr_mirror_one(ovr_shm_t *s, const rl2_override_t *o, uint32_t *used)
{
    rl2_digest_t key = rl2_ovr_key(o->kind, o->target_kind, o->target);
    long         at = rl2_ovr_find(s, key);

    if (at >= 0) {
        if (memcmp(&s->slots[at].o, o, sizeof(*o)) != 0) {
            s->slots[at].o = *o;
        }
        return 0;
    }
    if (*used >= OVR_MAX_ENTRIES) {
        return -1;
    }
    rl2_ovr_slot_insert(s, key, o);
    (*used)++;
    return 0;
}

void
rl2_ovr_mirror(rl2_overrides_t *t, const rl2_override_t *o, size_t n,
               uint32_t *dropped)
{
    ovr_shm_t *s = t->shm;
    uint8_t    keep[OVR_SLOTS];
    uint32_t   used;

    *dropped = 0;
    memset(keep, 0, sizeof(keep));
    rl2_ovr_write_begin(s);
    /* What goes first, so that the entries that replace it have room. */
    rl2_ovr_mirror_mark(s, o, n, keep);
    rl2_ovr_mirror_drop(s, keep);
    rl2_ovr_recount(s);
    if (s->gone > OVR_SLOTS / 4) {
        rl2_ovr_compact(s);
    }
    used = atomic_load_explicit(&s->used, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        if (rl2_ovr_mirror_one(s, &o[i], &used) != 0) {
            (*dropped)++;
        }
    }
    rl2_ovr_recount(s);
    rl2_ovr_write_end(s);
}

/* ---- the interface --------------------------------------------------------
 */

/* Take back a change the state file could not keep: `made` goes, `was`
 * (kind 0: nothing) comes back. */
static void
rl2_ovr_undo(rl2_overrides_t *t, const rl2_override_t *made,
             const rl2_override_t *was)
{
    rl2_override_t ignored;
    rl2_err_t      lost;
    long           at;

    rl2_ovr_write_begin(t->shm);
    if (was->kind != 0) {
        (void)rl2_ovr_put(t, was, &ignored, &lost);
    }
    else if ((at = rl2_ovr_find(
                  t->shm,
                  rl2_ovr_key(made->kind, made->target_kind, made->target)))
             >= 0) {
        rl2_ovr_slot_drop(t->shm, (uint32_t)at);
        rl2_ovr_recount(t->shm);
    }
    rl2_ovr_write_end(t->shm);
}

rl2_status_t
rl2_ovr_save(rl2_overrides_t *t, const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_status_t st = t->state_file != NULL
                          ? rl2_ovr_file_save(t, t->state_file, now, err)
                          : RL2_OK;

    if (st == RL2_OK) {
        t->shm->saved_us = now->wall_us;
    }
    return st;
}

int
rl2_ovr_value_ok(const rl2_override_t *o, rl2_err_t *err)
{
    if (o->kind <= 0 || o->kind >= RL2_OVR_KINDS) {
        rl2_err_set(err, RL2_ERR_INVALID, "unknown override kind");
        return 0;
    }
    if ((o->kind == RL2_OVR_BOOST
         || (o->kind == RL2_OVR_EMERGENCY && o->factor_ppm != 0))
        && (o->factor_ppm < RL2_OVR_FACTOR_MIN
            || o->factor_ppm > RL2_OVR_FACTOR_MAX)) {
        rl2_err_set(err, RL2_ERR_INVALID, "factor out of range: 0.001 to 1000");
        return 0;
    }
    if (o->kind == RL2_OVR_MODE && o->mode != RL2_MODE_ENFORCE
        && o->mode != RL2_MODE_DRY_RUN && o->mode != RL2_MODE_OFF) {
        rl2_err_set(err, RL2_ERR_INVALID,
                    "mode must be enforce, dry_run or off");
        return 0;
    }
    if (o->kind == RL2_OVR_TIER && o->tier[0] == '\0') {
        rl2_err_set(err, RL2_ERR_INVALID, "no tier named");
        return 0;
    }
    /* The state file's line (and the Redis hash's field and value) is
     * tab-separated and does not escape these two. */
    if (strpbrk(o->target, "\t\r\n") != NULL
        || strpbrk(o->tier, "\t\r\n") != NULL) {
        rl2_err_set(err, RL2_ERR_INVALID,
                    "a target or a tier name may not hold a tab or a line "
                    "break");
        return 0;
    }
    return 1;
}

rl2_status_t
rl2_ovr_apply_set(rl2_overrides_t *t, const rl2_override_t *o, int64_t now_us,
                  rl2_override_t *was, rl2_err_t *err)
{
    rl2_status_t st;

    rl2_ovr_write_begin(t->shm);
    rl2_ovr_purge(t->shm, now_us);
    st = rl2_ovr_put(t, o, was, err);
    rl2_ovr_write_end(t->shm);
    return st;
}

void
rl2_ovr_apply_remove(rl2_overrides_t *t, rl2_ovr_kind_t kind,
                     rl2_ovr_target_t target_kind, const char *target,
                     int64_t now_us, rl2_override_t *was)
{
    long at;

    rl2_ovr_write_begin(t->shm);
    rl2_ovr_purge(t->shm, now_us);
    was->kind = 0;
    if ((at = rl2_ovr_find(t->shm, rl2_ovr_key(kind, target_kind, target)))
        >= 0) {
        *was = t->shm->slots[at].o;
        rl2_ovr_slot_drop(t->shm, (uint32_t)at);
        rl2_ovr_recount(t->shm);
    }
    rl2_ovr_write_end(t->shm);
}

rl2_status_t
rl2_overrides_set(rl2_overrides_t *t, const rl2_override_t *o,
                  const rl2_clock_t *now, rl2_override_t *before,
                  rl2_err_t *err)
{
    rl2_override_t was;
    rl2_status_t   st;

    if (!rl2_ovr_value_ok(o, err)) {
        return RL2_ERR_INVALID;
    }
    if (rl2_ovr_expired(o, now->wall_us)) {
        return rl2_err_set(err, RL2_ERR_INVALID, "already expired");
    }
    if (t->redis != NULL) {
        return rl2_ovr_redis_set(t, o, now, before, NULL, err);
    }
    if ((st = rl2_ovr_lock(t, err)) != RL2_OK) {
        return st;
    }
    st = rl2_ovr_apply_set(t, o, now->wall_us, &was, err);
    if (st == RL2_OK && (st = rl2_ovr_save(t, now, err)) != RL2_OK) {
        /* Not kept, so not made: a change that a restart would undo is
         * refused rather than half made. */
        rl2_ovr_undo(t, o, &was);
    }
    rl2_ovr_unlock(t);
    if (before != NULL) {
        *before = was;
    }
    return st;
}

/* May an automatic ban add o?  Not when the table has it already (*st
 * RL2_OK: the ban stands as it is) nor when only the room left to
 * operators remains (*st RL2_ERR_STORE).  An entry past its end is no
 * ban: the Redis path purges nothing first, and every mirror keeps an
 * ended ban until the next change, so a client whose ban had ended was
 * never banned again there (nor its ban escalated). */
static int
rl2_ovr_auto_room(const rl2_overrides_t *t, const rl2_override_t *o,
                  int64_t now_us, rl2_status_t *st, rl2_err_t *err)
{
    const ovr_shm_t *s = t->shm;
    long at = rl2_ovr_find(s, rl2_ovr_key(o->kind, o->target_kind, o->target));

    *st = RL2_OK;
    if (at >= 0 && !rl2_ovr_expired(&s->slots[at].o, now_us)) {
        return 0;
    }
    if (atomic_load_explicit(&s->used, memory_order_relaxed)
        >= OVR_MAX_ENTRIES - OVR_RESERVED) {
        *st = rl2_err_set(err, RL2_ERR_STORE,
                          "overrides %s: full for automatic bans (%u "
                          "entries; the rest is left to operators)",
                          t->name, OVR_MAX_ENTRIES - OVR_RESERVED);
        return 0;
    }
    return 1;
}

/* Does the table hold o itself (the entry this ban wrote, not an older
 * one of the same target)? */
static int
rl2_ovr_auto_held(const rl2_overrides_t *t, const rl2_override_t *o)
{
    long at =
        rl2_ovr_find(t->shm, rl2_ovr_key(o->kind, o->target_kind, o->target));

    return at >= 0 && t->shm->slots[at].o.created_us == o->created_us
           && t->shm->slots[at].o.expires_us == o->expires_us;
}

rl2_status_t
rl2_overrides_ban_auto(rl2_overrides_t *t, const rl2_override_t *o,
                       const rl2_clock_t *now, int *made, rl2_err_t *err)
{
    ovr_shm_t     *s = t->shm;
    rl2_override_t was;
    rl2_status_t   st = RL2_OK;

    *made = 0;
    if (o->kind != RL2_OVR_BAN || !rl2_ovr_value_ok(o, err)
        || rl2_ovr_expired(o, now->wall_us)) {
        return rl2_err_set(err, RL2_ERR_INVALID, "not a ban to set");
    }
    /* The fleet's table: the ban goes to Redis first, as an operator's
     * does, so that every server refuses the client (a ban made here
     * only would go at this host's next sync).  A ban already there, or
     * a table left to operators, stays as it is. */
    if (t->redis != NULL) {
        rl2_override_t before;
        int            taken;

        if (!rl2_ovr_auto_room(t, o, now->wall_us, &st, err)) {
            return st;
        }
        st = rl2_ovr_redis_set(t, o, now, &before, &taken, err);
        /* Redis took it and this host's table has it, though its state
         * file may not (a read-only /var/lib): the ban is in force on
         * every server, and counted and alerted as one. */
        *made = st == RL2_OK || rl2_ovr_auto_held(t, o);
        /* Redis has it (whatever this host made of it): one entry. */
        if (taken) {
            rl2_ovr_audit_auto(t, &before, o, now);
        }
        return st;
    }
    /* A request never queues behind another writer's file write. */
    if ((st = rl2_ovr_lock_as(t, 0, err)) != RL2_OK) {
        return st;
    }
    rl2_ovr_write_begin(s);
    rl2_ovr_purge(s, now->wall_us);
    if (rl2_ovr_auto_room(t, o, now->wall_us, &st, err)
        && (st = rl2_ovr_put(t, o, &was, err)) == RL2_OK) {
        *made = 1;
    }
    rl2_ovr_write_end(s);
    /* Within a second of the last write the file waits for the next. */
    if (*made
        && !(now->wall_us >= s->saved_us
             && now->wall_us - s->saved_us < OVR_AUTO_SAVE_US)
        && (st = rl2_ovr_save(t, now, err)) != RL2_OK) {
        rl2_ovr_undo(t, o, &was);
        *made = 0;
    }
    rl2_ovr_unlock(t);
    /* Out of the writers' lock: the trail's write waits for no one's
     * change, nor a change for it. */
    if (*made) {
        rl2_ovr_audit_auto(t, &was, o, now);
    }
    return st;
}

rl2_status_t
rl2_overrides_remove(rl2_overrides_t *t, rl2_ovr_kind_t kind,
                     rl2_ovr_target_t target_kind, const char *target,
                     const rl2_clock_t *now, rl2_override_t *before,
                     rl2_err_t *err)
{
    rl2_status_t   st;
    rl2_override_t was;

    if (before != NULL) {
        before->kind = 0;
    }
    if (t->redis != NULL) {
        return rl2_ovr_redis_remove(t, kind, target_kind, target, now, before,
                                    err);
    }
    if ((st = rl2_ovr_lock(t, err)) != RL2_OK) {
        return st;
    }
    rl2_ovr_apply_remove(t, kind, target_kind, target, now->wall_us, &was);
    if (was.kind != 0 && (st = rl2_ovr_save(t, now, err)) != RL2_OK) {
        rl2_ovr_undo(t, &was, &was); /* the removed entry comes back */
    }
    rl2_ovr_unlock(t);
    if (before != NULL) {
        *before = was;
    }
    return st;
}

size_t
rl2_overrides_list(rl2_overrides_t *t, rl2_ovr_kind_t kind,
                   const rl2_clock_t *now, rl2_override_t *out, size_t max)
{
    size_t   n = 0;
    uint64_t seq;

    /* Read like a request does: a listing never waits for a writer. */
    do {
        n = 0;
        seq = rl2_ovr_wait_even(t);
        for (uint32_t i = 0; i < OVR_SLOTS; i++) {
            const ovr_slot_t *slot = &t->shm->slots[i];

            if (atomic_load_explicit(&slot->state, memory_order_relaxed)
                    != OVR_USED
                || (kind != 0 && slot->o.kind != kind)
                || rl2_ovr_expired(&slot->o, now->wall_us)) {
                continue;
            }
            if (n < max) {
                out[n] = slot->o;
            }
            n++;
        }
        atomic_thread_fence(memory_order_acquire);
    } while (atomic_load_explicit(&t->shm->seq, memory_order_relaxed) != seq);
    return n;
}

uint64_t
rl2_overrides_version(const rl2_overrides_t *t)
{
    return atomic_load_explicit(&t->shm->version, memory_order_acquire);
}

const _Atomic uint64_t *
rl2_overrides_version_word(const rl2_overrides_t *t)
{
    return &t->shm->version;
}

/* ---- opening --------------------------------------------------------------
 */

static rl2_status_t
rl2_ovr_fill(rl2_overrides_t *t, rl2_err_t *err)
{
    rl2_clock_t  now;
    rl2_status_t st;

    if (atomic_load_explicit(&t->shm->loaded, memory_order_acquire)) {
        return RL2_OK;
    }
    rl2_clock_now(&now);
    if ((st = rl2_ovr_lock(t, err)) != RL2_OK) {
        return st;
    }
    /* Another process may have filled it while this one waited. */
    if (!atomic_load_explicit(&t->shm->loaded, memory_order_relaxed)) {
        rl2_ovr_write_begin(t->shm);
        st = t->state_file != NULL
                 ? rl2_ovr_file_load(t, t->state_file, &now, err)
                 : RL2_OK;
        rl2_ovr_write_end(t->shm);
        if (st == RL2_OK) {
            atomic_store_explicit(&t->shm->loaded, 1, memory_order_release);
        }
    }
    rl2_ovr_unlock(t);
    return st;
}

rl2_status_t
rl2_overrides_open(const char *zone, const char *state_file, unsigned mode,
                   rl2_overrides_t **out, rl2_err_t *err)
{
    rl2_overrides_t *t = calloc(1, sizeof(*t));
    void            *base = NULL;
    rl2_status_t     st;

    *out = NULL;
    if (t == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "overrides: out of memory");
    }
    t->lock_fd = -1;
    pthread_mutex_init(&t->thread_lock, NULL);
    if ((size_t)snprintf(t->name, sizeof(t->name), "%s.overrides", zone)
        >= sizeof(t->name)) {
        free(t);
        return rl2_err_set(err, RL2_ERR_INVALID, "zone name too long: %s",
                           zone);
    }
    if (state_file != NULL && (t->state_file = strdup(state_file)) == NULL) {
        free(t);
        return rl2_err_set(err, RL2_ERR_NOMEM, "overrides: out of memory");
    }
    /* The lock is taken on the object mapped, not on whatever the name
     * names by the time it would be opened again. */
    st = rl2_shm_obj_open_fd(t->name, sizeof(ovr_shm_t), OVR_MAGIC, OVR_VERSION,
                             mode, &base, &t->lock_fd, err);
    if (st == RL2_OK) {
        t->shm = base;
        t->head.used = &t->shm->used;
        t->head.n_identity = &t->shm->n_identity;
    }
    if (st == RL2_OK) {
        st = rl2_ovr_fill(t, err);
    }
    if (st != RL2_OK) {
        rl2_overrides_close(t);
        return st;
    }
    *out = t;
    return RL2_OK;
}

void
rl2_overrides_close(rl2_overrides_t *t)
{
    if (t == NULL) {
        return;
    }
    rl2_ovr_redis_free(t->redis);
    rl2_ovr_audit_free(t->audit);
    if (t->shm != NULL) {
        rl2_shm_obj_close(t->shm, sizeof(ovr_shm_t));
    }
    if (t->lock_fd >= 0) {
        close(t->lock_fd);
    }
    pthread_mutex_destroy(&t->thread_lock);
    free(t->state_file);
    free(t);
}
