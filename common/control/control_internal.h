/*
 * control_internal.h -- the runtime override table's private parts.
 *
 *   overrides.c       the table in shared memory: slots, the writers' lock,
 *                     the readers' sequence counter, set/remove/list
 *   override_target.c targets as operators write them, and their keys
 *   override_file.c   the state file that outlives the shared memory
 *   override_read.c   what one request sees: bans, allows, tiers, modes,
 *                     factors
 */
#ifndef RL2_CONTROL_INTERNAL_H
#define RL2_CONTROL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ratelimit2/hash.h"
#include "ratelimit2/overrides.h"

/* Slots of a table: 10,000 bans fill 61% of it, where linear probing
 * still finds an entry in under two probes on average. */
#define OVR_SLOTS 16384u
#define OVR_MASK  (OVR_SLOTS - 1)

/* How many entries a table may hold, so that a miss stays short. */
#define OVR_MAX_ENTRIES 12288u

/* Of them, how many automatic bans may never take: a flood of offenders
 * must leave operators room to ban, allow and switch the emergency on. */
#define OVR_RESERVED 2048u

/* Automatic bans rewrite the state file at most this often. */
#define OVR_AUTO_SAVE_US 1000000

enum { OVR_EMPTY = 0, OVR_USED = 1, OVR_GONE = 2 };

typedef struct {
    _Atomic uint32_t state; /* OVR_EMPTY, OVR_USED, OVR_GONE */
    uint32_t         prefix;
    rl2_digest_t     key; /* override_key() */
    rl2_override_t   o;
} ovr_slot_t;

/* The shared object.  All zero is an empty table that has not read its
 * state file yet. */
typedef struct {
    /* Odd while a writer changes slots: a reader that saw it odd, or saw
     * it change across its read, reads again. */
    _Atomic uint64_t seq;
    _Atomic uint64_t version;
    _Atomic uint32_t used;   /* slots OVR_USED, expired ones included */
    _Atomic uint32_t loaded; /* the state file was read into it */
    uint32_t         gone;   /* slots OVR_GONE */
    uint32_t         n_kind[RL2_OVR_KINDS];
    _Atomic uint32_t n_identity; /* entries naming a user or an API key */
    /* Prefix lengths of address entries in use, so that a request probes
     * only those: bit p of v4 for /p, bits of v6[p / 64]. */
    uint64_t   v4_prefixes;
    uint64_t   v6_prefixes[3];
    int64_t    next_expiry_us; /* earliest expiry among used slots; 0: none */
    ovr_slot_t slots[OVR_SLOTS];
    /* When the state file was last written (wall clock; writers only). */
    int64_t saved_us;
    /* Set while a writer changes slots, under the writers' lock: found
     * set by the next writer, the one before died half-way (a reader may
     * have mended the counter since, but not the slots). */
    uint32_t writing;
} ovr_shm_t;

struct rl2_overrides {
    rl2_overrides_head_t head; /* first: read inline (overrides.h) */
    ovr_shm_t           *shm;
    char                 name[256];   /* "<zone>.overrides" */
    char                *state_file;  /* NULL: none */
    int                  lock_fd;     /* the object mapped: record lock */
    pthread_mutex_t      thread_lock; /* which excludes no thread */
};

/* overrides.c, for decide/runtime.c (no front end calls it): an
 * automatic ban (policy `abuse`), set from the request path, as
 * rl2_overrides_set except that it
 *  - never waits for another writer: RL2_ERR_STORE ("busy") at once, and
 *    the client's next refusal tries again;
 *  - only adds: an entry already there (an operator's ban, or this one
 *    set by a request in flight) stays as it is, *made 0;
 *  - never takes the table's last entries, which are left to operators
 *    (RL2_ERR_STORE, "full");
 *  - rewrites the state file at most once a second, so that a flood of
 *    offenders costs one file write a second, not one per ban, each of
 *    the whole table, synced, under the writers' lock.  A ban not yet in
 *    the file goes into it with the next change that writes it (an
 *    automatic ban a second later, an operator's change); a reboot
 *    before that forgets it, as it forgets the counters that made it.
 * *made: the ban was added. */
rl2_status_t rl2_overrides_ban_auto(rl2_overrides_t *t, const rl2_override_t *o,
                                    const rl2_clock_t *now, int *made,
                                    rl2_err_t *err);

/* override_target.c: the key of an entry of `kind` with this target. */
rl2_digest_t rl2_ovr_key(rl2_ovr_kind_t kind, rl2_ovr_target_t target_kind,
                         const char *target);
/* ... and of an address target, from its binary form (what a request
 * has): family, prefix and the masked address. */
rl2_digest_t rl2_ovr_addr_key(rl2_ovr_kind_t kind, int family,
                              const uint8_t addr[16], unsigned prefix);
/* Parse a canonical address target back ("192.0.2.0/24"). */
int rl2_ovr_addr_parse(const char *target, int *family, uint8_t addr[16],
                       unsigned *prefix);

/* overrides.c: under the writer's lock.  Find the slot of key; -1. */
long rl2_ovr_find(const ovr_shm_t *s, rl2_digest_t key);

/* override_file.c: the table's active entries, written whole to path
 * (a temporary file renamed over it); and read back into an empty
 * table (entries already expired are skipped). */
rl2_status_t rl2_ovr_file_save(const rl2_overrides_t *t, const char *path,
                               const rl2_clock_t *now, rl2_err_t *err);
rl2_status_t rl2_ovr_file_load(rl2_overrides_t *t, const char *path,
                               const rl2_clock_t *now, rl2_err_t *err);

/* overrides.c: add or replace an entry without saving (the loader). */
rl2_status_t rl2_ovr_put(rl2_overrides_t *t, const rl2_override_t *o,
                         rl2_override_t *before, rl2_err_t *err);

#endif /* RL2_CONTROL_INTERNAL_H */
