/*
 * control_internal.h -- the runtime override table's private parts.
 *
 *   overrides.c       the table in shared memory: slots, the writers' lock,
 *                     the readers' sequence counter, set/remove/list
 *   override_target.c targets as operators write them, and their keys
 *   override_file.c   the state file that outlives the shared memory, and
 *                     the one line format of an entry (the file's, and
 *                     the value of a field of the Redis hash)
 *   override_read.c   what one request sees: bans, allows, tiers, modes,
 *                     factors
 *   audit.c           the audit trail: a change as a JSON line appended
 *                     to a file, and as a syslog line
 *   audit_read.c      the audit file read back
 *   override_redis.c  the fleet-wide table: writes through Redis first,
 *                     each host's table a mirror of the Redis hash
 *   override_view.c   what the status page, metrics and health read: bans
 *                     by origin, the newest entries
 *   admin.c           the verbs that change the table, read and made in
 *                     one place for ratelimit2ctl and the HTTP admin
 *                     interface (admin.h)
 *   admin_json.c      the HTTP admin interface's JSON body: one flat
 *                     object, read strictly
 *
 * decide/ takes the request path's sync from here, and backend/ the
 * Redis side it lends its store's connections to.
 */
#ifndef RL2_CONTROL_INTERNAL_H
#define RL2_CONTROL_INTERNAL_H

#include <pthread.h>
#include <sys/types.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ratelimit2/alert.h"
#include "ratelimit2/audit.h"
#include "ratelimit2/failover.h"
#include "ratelimit2/hash.h"
#include "ratelimit2/overrides.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/redis.h"
#include "base/buf.h"
#include "base/shm_obj_internal.h"
#include "redis/redis_internal.h"

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

/* The shared object.  All zero after the header is an empty table that
 * has not read its state file yet. */
typedef struct {
    /* shm_obj.c's: the creator writes it and an opener checks it, so it
     * must be the table's own, not overlaid on the counters below (a
     * writer's sequence counter in its place is a stale object to the
     * next opener, which replaces it). */
    rl2_shm_hdr_t hdr;
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
    uint64_t v4_prefixes;
    uint64_t v6_prefixes[3];
    int64_t  next_expiry_us; /* earliest expiry among used slots; 0: none */
    /* The Redis mirror (override_redis.c).  The next sync is due at
     * next_sync_us (monotonic, shared by the host's processes): the one
     * process whose compare-and-swap moves it on syncs. */
    _Atomic int64_t next_sync_us;
    /* Which state of the Redis hash the slots mirror: the epoch (set
     * when an empty Redis first takes a change, so that one that lost
     * everything is told apart from one that did not, whatever its
     * counter says) and the version counter; 0, 0: none yet.  Written
     * under the writers' lock, kept in the state file. */
    _Atomic uint64_t redis_epoch;
    _Atomic uint64_t redis_version;
    /* What the health output shows of the last sync: */
    _Atomic int64_t  tried_us;   /* wall clock of the last attempt */
    _Atomic int64_t  synced_us;  /* ... of the last that reached Redis */
    _Atomic uint32_t reachable;  /* the last attempt reached Redis */
    _Atomic uint32_t unreadable; /* entries it could not read */
    _Atomic uint64_t restores;   /* mirrors written back to Redis */
    /* The last failure's text, "" after a success: written under the
     * writers' lock between two increments of error_seq, read without
     * a lock (as the slots are, by seq). */
    _Atomic uint32_t error_seq;
    char             error[RL2_ERR_MAX];
    /* When the state file was last written (wall clock; writers only). */
    int64_t saved_us;
    /* Set while a writer changes slots, under the writers' lock: found
     * set by the next writer, the one before died half-way (a reader may
     * have mended the counter since, but not the slots). */
    uint32_t writing;
    /* The load factor (factor_load.c), shared by the host's processes:
     * the one whose compare-and-swap moves load_next_us (monotonic) on
     * reads the load file; the others use what it stored. */
    _Atomic int64_t  load_next_us;    /* 0: never read */
    _Atomic int64_t  load_milli;      /* the last reading */
    _Atomic int64_t  load_changed_us; /* monotonic; 0: never changed */
    _Atomic int32_t  load_step;       /* the step it is in; -1, 0: none */
    _Atomic uint32_t load_ppm;        /* the factor; 0: x1 */
    /* The schedule factor (factor_schedule.c) the host's processes last
     * worked out; 0: none yet.  Who exchanges a new one in logs it. */
    _Atomic uint32_t sched_ppm;
    ovr_slot_t       slots[OVR_SLOTS];
} ovr_shm_t;

typedef struct rl2_ovr_redis rl2_ovr_redis_t;
typedef struct rl2_ovr_audit rl2_ovr_audit_t;

struct rl2_overrides {
    rl2_overrides_head_t head; /* first: read inline (overrides.h) */
    ovr_shm_t           *shm;
    char                 name[256];   /* "<zone>.overrides" */
    char                *state_file;  /* NULL: none */
    int                  lock_fd;     /* the object mapped: record lock */
    pthread_mutex_t      thread_lock; /* which excludes no thread */
    rl2_ovr_redis_t     *redis;       /* NULL: this host's table only */
    rl2_ovr_audit_t     *audit;       /* automatic bans' trail; NULL: none */
    /* When the host's next Redis sync is due (monotonic µs), read by
     * every request; NULL without a Redis side. */
    const _Atomic int64_t *sync_due_us;
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
 * A ban Redis or the table took is one entry of the table's audit trail
 * (rl2_overrides_audit_attach; none attached: none), written after the
 * writers' lock is released.
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

/* How many turns a reader waits on an odd counter before it looks
 * whether the writer is still there (a non-blocking flock). */
#define OVR_MEND_SPINS 256

/* overrides.c: the sequence counter once even, for a reader to start
 * at; one left odd by a writer that died is mended on the way. */
uint64_t rl2_ovr_wait_even(const rl2_overrides_t *t);

/* overrides.c: under the writer's lock.  Find the slot of key; -1. */
long rl2_ovr_find(const ovr_shm_t *s, rl2_digest_t key);

/* override_file.c: the table's active entries, written whole to path
 * (a temporary file renamed over it), with the Redis version they
 * mirror; and read back into an empty table (entries already expired
 * are skipped). */
rl2_status_t rl2_ovr_file_save(const rl2_overrides_t *t, const char *path,
                               const rl2_clock_t *now, rl2_err_t *err);
rl2_status_t rl2_ovr_file_load(rl2_overrides_t *t, const char *path,
                               const rl2_clock_t *now, rl2_err_t *err);

/* override_file.c: one entry as one line, without its newline (the
 * state file's line; the value of the entry's field in the Redis hash):
 *   KIND TARGET VALUE EXPIRES_US CREATED_US AUTHOR REASON
 * Returns its length, or -1 when it does not fit in size bytes. */
#define RL2_OVR_LINE_MAX 1024
int rl2_ovr_line_format(const rl2_override_t *o, char *buf, size_t size);

/* ... and back: line (changed in place) into *o; -1 when it does not
 * read, or holds a value no writer may set (rl2_ovr_value_ok). */
int rl2_ovr_line_parse(char *line, rl2_override_t *o);

/* overrides.c: is o's value one a writer may set (kind known, factor in
 * bounds, a mode, a tier named)?  The setter and the state file's reader
 * both ask, so a file cannot bring back what no writer could set. */
int rl2_ovr_value_ok(const rl2_override_t *o, rl2_err_t *err);

/* overrides.c: add or replace an entry without saving (the loader). */
rl2_status_t rl2_ovr_put(rl2_overrides_t *t, const rl2_override_t *o,
                         rl2_override_t *before, rl2_err_t *err);

/* override_target.c: the adaptive factors on in ppm[RL2_FACTOR_N] (a
 * verdict's factor_ppm; 0: off) as "load=0.7;geo=0.8", in rl2_factor_t
 * order, into buf (whole items only; size > 0); its length.
 * RL2_FACTORS_TEXT_MAX holds every factor. */
#define RL2_FACTORS_TEXT_MAX (RL2_FACTOR_N * sizeof("reputation=1000.000001;"))
size_t rl2_factors_format(const uint32_t *ppm, char *buf, size_t size);

/* ---- beside ratelimit2/audit.h ---- */

/* audit.c: the origin named ("ctl", "admin", "auto"); 0 for unknown. */
rl2_audit_origin_t rl2_audit_origin_from_name(const char *name);

/* audit_read.c: one line (without its newline) back into e;
 * RL2_ERR_INVALID saying what does not read.  Keys may come in any order;
 * unknown keys are refused, as is anything rl2_audit_format would not
 * write. */
rl2_status_t rl2_audit_parse(const char *line, rl2_audit_entry_t *e,
                             rl2_err_t *err);

/* audit_read.c: "2026-12-06T10:00:00.123456Z" back into µs; -1 for
 * anything else, a day that does not exist included. */
int rl2_audit_time_parse(const char *text, int64_t *wall_us);

/* audit.c: what the entry set had left when it was set, in seconds
 * rounded up; -1 when it has no end or nothing was set (ttl_s). */
int64_t rl2_audit_ttl_s(const rl2_audit_entry_t *e);

/* audit.c, for admin.c's answers (one escaper for every JSON the
 * control layer writes): str as a JSON string (control bytes escaped, a
 * byte that is not valid UTF-8 as \ufffd); and one side of a change as
 * the audit line has it: null, or {"value","expires","reason","author"}. */
void rl2_json_string(rl2_buf_t *b, const char *str);

/* Length of the valid UTF-8 sequence of 2 to 4 bytes at s, within room
 * bytes, or 0: no overlong form, no surrogate, nothing past U+10FFFF,
 * not cut short (a NUL ends a sequence: room may be SIZE_MAX for a
 * string).  The one reading for the audit's writer and the admin
 * interface's JSON reader. */
size_t rl2_utf8_len(const unsigned char *s, size_t room);
void   rl2_json_side(rl2_buf_t *b, const rl2_override_t *o);

/* ---- admin_json.c: the HTTP admin interface's body ---- */

#define RL2_JSON_TEXT_MAX    8192 /* RL2_ADMIN_BODY_MAX */
#define RL2_JSON_MEMBERS_MAX 16

typedef enum {
    RL2_JSON_STRING = 1,
    RL2_JSON_NUMBER,
    RL2_JSON_TRUE,
    RL2_JSON_FALSE,
    RL2_JSON_NULL
} rl2_json_type_t;

typedef struct {
    const char *name;  /* decoded, in the object's buf */
    const char *value; /* a string decoded to UTF-8; a number's text;
                          "true", "false", "null" */
    rl2_json_type_t type;
} rl2_json_member_t;

/* One flat object.  A decoded string (and its NUL) is never longer than
 * its JSON form, quotes included; a number takes one byte more than its
 * text: buf cannot overflow. */
typedef struct {
    rl2_json_member_t m[RL2_JSON_MEMBERS_MAX];
    size_t            n;
    char              buf[RL2_JSON_TEXT_MAX + RL2_JSON_MEMBERS_MAX];
} rl2_json_object_t;

/* text (len bytes, at most RL2_JSON_TEXT_MAX, not NUL-terminated) as one
 * JSON object of strings, numbers, true, false and null, and nothing
 * else around it but white space.  RL2_ERR_INVALID saying what and at
 * which byte: anything else, a name given twice, a string that is not
 * UTF-8 or holds a control byte or \u0000, a bad escape or number. */
rl2_status_t rl2_json_object_read(const char *text, size_t len,
                                  rl2_json_object_t *obj, rl2_err_t *err);

/* The member called name, or NULL. */
const rl2_json_member_t *rl2_json_object_get(const rl2_json_object_t *obj,
                                             const char              *name);
/* audit.c: rl2_audit_record, the entry going to `stream` (NULL: the
 * audit's own, if it has one) rather than to a's.  note (may be NULL):
 * why the entry misses a part of the trail already, said in its syslog
 * line as the other failures are. */
rl2_status_t rl2_audit_record_to(rl2_audit_t *a, const rl2_audit_entry_t *e,
                                 rl2_ovr_redis_t *stream, const char *note,
                                 rl2_err_t *err);

/* audit.c, for overrides.c: the one entry of an automatic ban Redis or
 * the table took (after; before: what it replaced, kind 0: nothing),
 * origin "auto", into t's trail (none attached: nothing), through t's
 * Redis side when it has one.  Opens the trail the first time, in the
 * process that bans.  Never fails the ban: a part of the trail that does
 * not take the entry is said in its syslog line. */
void rl2_ovr_audit_auto(rl2_overrides_t *t, const rl2_override_t *before,
                        const rl2_override_t *after, const rl2_clock_t *now);
void rl2_ovr_audit_free(rl2_ovr_audit_t *au);

/* ---- for override_redis.c (overrides.c) ---- */

/* The writers' lock: flock on the object and a mutex within the
 * process. */
rl2_status_t rl2_ovr_lock(rl2_overrides_t *t, rl2_err_t *err);
void         rl2_ovr_unlock(rl2_overrides_t *t);

/* Under the lock: expired entries out, then o in (*was: what it
 * replaced, kind 0 when nothing); or the entry of this kind and target
 * out (*was: it, kind 0 when there was none).  The state file is not
 * written. */
rl2_status_t rl2_ovr_apply_set(rl2_overrides_t *t, const rl2_override_t *o,
                               int64_t now_us, rl2_override_t *was,
                               rl2_err_t *err);
void         rl2_ovr_apply_remove(rl2_overrides_t *t, rl2_ovr_kind_t kind,
                                  rl2_ovr_target_t target_kind, const char *target,
                                  int64_t now_us, rl2_override_t *was);

/* Under the lock: make the slots hold exactly o[0..n) (the Redis hash,
 * read whole), changing only the slots that differ, so readers retry
 * little.  Entries past the table's room are left out: *dropped says
 * how many. */
void rl2_ovr_mirror(rl2_overrides_t *t, const rl2_override_t *o, size_t n,
                    uint32_t *dropped);

/* Under the lock: the state file written again (none: RL2_OK). */
rl2_status_t rl2_ovr_save(rl2_overrides_t *t, const rl2_clock_t *now,
                          rl2_err_t *err);

/* ---- override_redis.c, for overrides.c ---- */

/* rl2_overrides_set / remove with a Redis side: Redis first, then this
 * host's table and state file.  *taken (may be NULL): Redis took the
 * change, which then stands whatever this host made of it. */
rl2_status_t rl2_ovr_redis_set(rl2_overrides_t *t, const rl2_override_t *o,
                               const rl2_clock_t *now, rl2_override_t *before,
                               int *taken, rl2_err_t *err);
rl2_status_t rl2_ovr_redis_remove(rl2_overrides_t *t, rl2_ovr_kind_t kind,
                                  rl2_ovr_target_t target_kind,
                                  const char *target, const rl2_clock_t *now,
                                  rl2_override_t *before, rl2_err_t *err);

/* Free the Redis side (rl2_overrides_close). */
void rl2_ovr_redis_free(rl2_ovr_redis_t *r);

/* ---- override_redis.c, for audit.c and audit_read.c ---- */

/* A Redis side on its own, not attached to a table (an audit's stream):
 * as rl2_ovr_redis_attach makes one; rl2_ovr_redis_free frees it. */
typedef struct rl2_ovr_redis_conf rl2_ovr_redis_conf_t;
rl2_status_t rl2_ovr_redis_new(const rl2_ovr_redis_conf_t *rc,
                               rl2_ovr_redis_t **out, rl2_err_t *err);

/* The audit stream's key, "{NAME}:audit" (the hash's tag, so its slot),
 * and the server, for messages. */
const char *rl2_ovr_redis_audit_key(const rl2_ovr_redis_t *r);
const char *rl2_ovr_redis_name(const rl2_ovr_redis_t *r);

/* XADD {NAME}:audit * entry LINE (len bytes, no newline), untrimmed;
 * RL2_OK only when Redis answered with the entry's id. */
rl2_status_t rl2_ovr_redis_audit_add(rl2_ovr_redis_t *r, const char *line,
                                     size_t len, rl2_err_t *err);

/* XRANGE {NAME}:audit START + COUNT count: *reply an array (the
 * caller's to free with rl2_redis_reply_free), else an error. */
rl2_status_t rl2_ovr_redis_audit_range(rl2_ovr_redis_t *r, const char *start,
                                       unsigned            count,
                                       struct redisReply **reply,
                                       rl2_err_t          *err);

/* ---- beside ratelimit2/overrides.h, for decide/ (not installed) ---- */

/* The out-of-line part of rl2_overrides_sync(): elect this process
 * (one compare-and-swap on the host's next due time) and sync. */
void rl2_overrides_sync_due(rl2_overrides_t *t, const rl2_clock_t *now);

/* Every decision, before rl2_overrides_idle() (a table idle here may
 * have entries in Redis): sync when due, at most once a second per
 * host, by one process.  Without a Redis side (t may be NULL) it costs
 * a test or two; with one, one load and a compare until it is due. */
static inline void
rl2_overrides_sync(rl2_overrides_t *t, const rl2_clock_t *now)
{
    if (t != NULL && t->sync_due_us != NULL
        && atomic_load_explicit(t->sync_due_us, memory_order_relaxed)
               <= now->mono_us) {
        rl2_overrides_sync_due(t, now);
    }
}

/* ---- beside ratelimit2/overrides.h, for backend/ (not installed) ---- */

/* What a Redis side talks to.  pool or cluster (one of them) are lent
 * by the caller, which keeps them, and circuit and alert, until the
 * table is closed; with neither, the side makes connections of its own
 * to conf's server. */
struct rl2_ovr_redis_conf {
    const char             *key;  /* NAME of the keys; NULL, "": default */
    const rl2_redis_conf_t *conf; /* the server, for connections of its own */
    rl2_redis_pool_t       *pool; /* lent: a server, Sentinel's master */
    rl2_redis_cluster_t    *cluster; /* lent: a Cluster */
    const rl2_circuit_t    *circuit; /* NULL: always ask Redis */
    rl2_alert_t            *alert;   /* NULL: no syslog line */
};

/* Give t its Redis side (before any request uses t; once). */
rl2_status_t rl2_ovr_redis_attach(rl2_overrides_t            *t,
                                  const rl2_ovr_redis_conf_t *rc,
                                  rl2_err_t                  *err);

/* ---- beside ratelimit2/overrides.h, for decide/ and the tests: what
 * the request path and the health output read (not installed) ---- */

/* A kind's name back ("ban" ...); 0 for unknown. */
rl2_ovr_kind_t rl2_ovr_kind_from_name(const char *name);

/* Changes so far (every set and remove, and every purge of expired
 * entries, adds one): caches of the table compare it. */
uint64_t rl2_overrides_version(const rl2_overrides_t *t);

/* ... and the word itself, in the table's shared memory, for a cache
 * that compares it on every request (backend/: the over-limit cache);
 * valid while t is open. */
const _Atomic uint64_t *rl2_overrides_version_word(const rl2_overrides_t *t);

/* What the health output shows of the mirror, for the whole host. */
typedef struct {
    int      redis;          /* a Redis side is attached */
    int      reachable;      /* the last attempt reached Redis */
    int64_t  tried_us;       /* wall clock of the last attempt; 0: none */
    int64_t  synced_us;      /* ... of the last that reached Redis */
    uint64_t redis_epoch;    /* which life of the hash the table holds */
    uint64_t redis_version;  /* ... and which version of it */
    uint64_t restores;       /* times a host's mirror went back to Redis */
    uint32_t unreadable;     /* entries of Redis the last read skipped: not
                                lines this version reads, or no room */
    char error[RL2_ERR_MAX]; /* the last failure; "" after a success */
} rl2_overrides_sync_t;

void rl2_overrides_sync_status(const rl2_overrides_t *t,
                               rl2_overrides_sync_t  *out);

/* ---- override_view.c: for the status page and the metrics (obs/) ---- */

/* The author of every automatic ban (decide/runtime.c), which marks it
 * so: its reason ends "(rule RULE, limit LIMIT)". */
#define RL2_OVR_AUTO_AUTHOR "abuse"

/* Is o an automatic ban? */
int rl2_override_is_auto(const rl2_override_t *o);

/* The rule an automatic ban names in its reason into buf ("" when o is
 * not one, or names none); cut to size. */
void rl2_ovr_auto_rule(const rl2_override_t *o, char *buf, size_t size);

/* Bans in force now: those of operators (every author but the
 * automatic one) and the automatic ones. */
void rl2_overrides_count_bans(rl2_overrides_t *t, const rl2_clock_t *now,
                              size_t *operator_n, size_t *auto_n);

/* The newest active entries of one origin (automatic: the automatic
 * bans; else every other entry), newest first: at most max of them, and
 * at most RL2_OVR_NEWEST_MAX, into out (*shown: how many).  Returns how
 * many there are in all. */
#define RL2_OVR_NEWEST_MAX 500
size_t rl2_overrides_newest(rl2_overrides_t *t, int automatic,
                            const rl2_clock_t *now, rl2_override_t *out,
                            size_t max, size_t *shown);

/* ---- what a request sees (decide.c) ---------------------------------- */

/* Who a request comes from, as the table can match it. */
typedef struct {
    int            family;   /* AF_INET, AF_INET6; 0: no address */
    const uint8_t *addr;     /* 16 bytes, IPv4 in the first 4 */
    const char    *user;     /* authenticated user, or NULL */
    const char    *key_hash; /* the API key's rl2_hash_id, or NULL */
} rl2_ovr_who_t;

/* The table's answer for one client, read once per request. */
typedef struct {
    int      banned;             /* refuse before any rule */
    int64_t  ban_until_us;       /* wall clock; 0: no end */
    int      allowed;            /* bypass every rule */
    int      tier;               /* policy tier index, or -1: none */
    int      emergency;          /* the switch is on */
    uint32_t emergency_ppm;      /* its factor; 0: allow-list only */
    int64_t  emergency_until_us; /* wall clock; 0: until switched off */
} rl2_ovr_client_t;

/* ---- the load factor (factor_load.c) ---- */

/* The step a load of `milli` thousandths is in, from step `cur` (-1:
 * none): a step is entered once the load is past its threshold, the
 * furthest one passed; it is left once the load is back by more than
 * the margin, or for a step further on, or one the other way. */
int rl2_load_step_pick(const rl2_load_conf_t *c, int cur, int64_t milli);

/* The load of file `path` (its first field), per online CPU when
 * per_cpu, in thousandths; -1 when it cannot be read. */
int64_t rl2_load_read(const char *path, int per_cpu);

/* The load factor in ppm now, read again from the file at most once a
 * second per host, by the request that finds the reading due. */
uint32_t rl2_overrides_load(rl2_overrides_t *t, const rl2_load_conf_t *c,
                            const rl2_clock_t *now);

/* What the last reading left (for metrics): 0 before any; else 1, and
 * *ppm the factor. */
int rl2_overrides_load_factor(const rl2_overrides_t *t, uint32_t *ppm);

/* ... and the reading it came from (decide/explain.c): 0 before any;
 * else 1, *milli the load in thousandths and *step the step it is in
 * (-1: none). */
int rl2_overrides_load_state(const rl2_overrides_t *t, int64_t *milli,
                             int *step);

/* ---- the schedule factor (factor_schedule.c) ---- */

/* Is `zone` a zone name to look up under /usr/share/zoneinfo: 1 to 64
 * bytes of [A-Za-z0-9_+-/], no leading '/', no "..", no empty part? */
int rl2_tz_name_ok(const char *zone);

/* Read TZif data (version 2 or later, its 64-bit part; `len` bytes) into
 * tz, in policy's arena; *footer_rule set when the footer's TZ string
 * has a daylight rule.  RL2_ERR_CONFIG with err->msg when the data is
 * not a valid TZif file. */
rl2_status_t rl2_tz_parse(rl2_policy_t *policy, const unsigned char *buf,
                          size_t len, rl2_tz_t *tz, int *footer_rule,
                          rl2_err_t *err);

/* The zone's file under `dir` (/usr/share/zoneinfo), read (at most
 * 256 KiB) and parsed as rl2_tz_parse; refused when the zone changes
 * its offset by a rule past the table's end and that end is less than
 * a year after now_s. */
rl2_status_t rl2_tz_load(rl2_policy_t *policy, const char *dir,
                         const char *zone, int64_t now_s, rl2_tz_t *tz,
                         rl2_err_t *err);

/* The local time of UTC second t: seconds since the epoch as the zone's
 * wall clock reads them. */
int64_t rl2_tz_local(const rl2_tz_t *tz, int64_t t);

/* The factor the schedule gives at UTC second t: the first window that
 * holds t's local time, else x1. */
uint32_t rl2_schedule_at(const rl2_schedule_conf_t *c, int64_t t);

/* ... and which window gives it: its index, or -1 when none holds t
 * (decide/explain.c). */
int rl2_schedule_window(const rl2_schedule_conf_t *c, int64_t t);

/* The schedule factor in ppm now, worked out at most once a second per
 * process: every window boundary and every offset change is on a whole
 * second, so the result holds to the end of the second.  A change the
 * host had not seen goes to the table t (may be NULL): one syslog line
 * event=factor, and the gauge. */
uint32_t rl2_schedule_factor(rl2_overrides_t *t, const rl2_schedule_conf_t *c,
                             const rl2_clock_t *now);

/* The schedule factor the host last worked out (for metrics): 0 before
 * any; else 1, and *ppm the factor. */
int rl2_overrides_schedule_factor(const rl2_overrides_t *t, uint32_t *ppm);

/* One event=factor line: factor `name` went from `from` to `to` ppm,
 * with one more field (key, value) when key is not NULL. */
void rl2_factor_alert(rl2_overrides_t *t, const char *name, uint32_t from,
                      uint32_t to, const char *key, const char *value);

/* A process's last result (in the policy's arena). */
struct rl2_sched_cache {
    /* The second it is for (wall clock, s) << 30 | the factor in ppm,
     * one word so that no thread reads one's second with another's
     * factor; 0: none yet. */
    _Atomic uint64_t second_ppm;
};

/* f * g in ppm, kept within the factor bounds (override_read.c). */
uint32_t rl2_ovr_factor_mul(uint32_t f, uint32_t g);

/* One syslog line of `kind` through the table's audit side, not
 * rate-limited (audit.c); nothing without one. */
void rl2_ovr_audit_line(rl2_overrides_t *t, rl2_alert_kind_t kind,
                        const rl2_alert_field_t *fields, size_t n);

/* Nothing set (t may be NULL): the one test a request pays then. */
static inline int
rl2_overrides_idle(const rl2_overrides_t *t)
{
    const rl2_overrides_head_t *h = (const rl2_overrides_head_t *)t;

    return h == NULL
           || atomic_load_explicit(h->used, memory_order_relaxed) == 0;
}

/* Does some entry name a user or an API key (which a front end knows
 * only after authentication)? */
static inline int
rl2_overrides_name_identities(const rl2_overrides_t *t)
{
    const rl2_overrides_head_t *h = (const rl2_overrides_head_t *)t;

    return h != NULL
           && atomic_load_explicit(h->n_identity, memory_order_relaxed) > 0;
}

void rl2_overrides_client(const rl2_overrides_t *t, const rl2_policy_t *p,
                          const rl2_ovr_who_t *who, int64_t now_us,
                          rl2_ovr_client_t *out);

/* The factor (ppm) on the limits of `rule` for a client of `tier` (NULL:
 * none): the boosts of the rule, of the tier and of "*", and the
 * emergency factor, multiplied. */
uint32_t rl2_overrides_factor(const rl2_overrides_t *t, const char *rule,
                              const char *tier, int64_t now_us);

/* A rule's mode as set at run time, else `mode`. */
rl2_mode_t rl2_overrides_mode(const rl2_overrides_t *t, const char *rule,
                              rl2_mode_t mode, int64_t now_us);

/* ---- the core's own writers of the table and the trail: ratelimit2ctl
 * and the admin interfaces go through admin.h, requests through
 * decide/ ---- */

/* Parse a target as an operator writes it ("192.0.2.0/24", "user:alice",
 * "key:APIKEY" or, as listed, "key#HASH", "rule:login", "tier:free",
 * "*") for `kind`, into
 * o->target_kind and o->target (canonical: a network masked and in its
 * usual spelling; an API key replaced by its hash under `policy`'s
 * secret).  RL2_ERR_INVALID with a message saying what is wrong: a bad
 * address or prefix, a target this kind does not take, a rule or tier
 * the policy does not have (policy may be NULL: then not checked). */
rl2_status_t rl2_override_target(const rl2_policy_t *policy,
                                 rl2_ovr_kind_t kind, const char *text,
                                 rl2_override_t *o, rl2_err_t *err);

/* A factor as people write it ("2", "0.5", "x1.25": at most 6 decimals,
 * an optional leading 'x') to ppm; RL2_ERR_INVALID, saying why, for
 * anything else or outside RL2_OVR_FACTOR_MIN..MAX. */
rl2_status_t rl2_ovr_factor_parse(const char *text, uint32_t *ppm,
                                  rl2_err_t *err);

/* Set (add or replace) the override with o's kind and target; *before
 * gets what it replaced (kind 0 when nothing).  Saved to the state file
 * before it returns.  RL2_ERR_STORE when the table has no room.
 * With a Redis side: written to Redis first (*before is what Redis
 * held), then to this table; when Redis cannot be reached,
 * RL2_ERR_STORE and nothing changes anywhere.  Once Redis has it, a
 * state file that cannot keep it is RL2_ERR_SYS saying so, and the
 * change stands (every host's mirror follows Redis). */
rl2_status_t rl2_overrides_set(rl2_overrides_t *t, const rl2_override_t *o,
                               const rl2_clock_t *now, rl2_override_t *before,
                               rl2_err_t *err);

/* Remove the override of this kind and target; *before gets it (kind 0
 * when there was none: not an error).  With a Redis side, as for a set:
 * Redis first, and nothing removed when it cannot be reached. */
rl2_status_t rl2_overrides_remove(rl2_overrides_t *t, rl2_ovr_kind_t kind,
                                  rl2_ovr_target_t target_kind,
                                  const char *target, const rl2_clock_t *now,
                                  rl2_override_t *before, rl2_err_t *err);

/* Append e's line to the file (one write()) and send it to syslog.
 * RL2_ERR_INVALID for an entry that cannot be written (no kind, an
 * unknown origin, a verb not of [a-z_-]); RL2_ERR_SYS when the file did
 * not take the whole line. */
rl2_status_t rl2_audit_record(rl2_audit_t *a, const rl2_audit_entry_t *e,
                              rl2_err_t *err);

/* Make conf (path, syslog; its redis is not used) the trail of t's
 * automatic bans (rl2_overrides_ban_auto, policy `abuse`): each ban it
 * makes writes one entry, origin "auto", author and reason the ban's,
 * verb "ban", to the stream through t's Redis side when it has one
 * (attached before or after this), to the file and to syslog.  Nothing
 * is opened here: the first ban of each process opens the file, so a
 * process that bans nothing pays nothing; a file it cannot open (tried
 * again at the next ban) leaves the entry to the stream and syslog,
 * whose line then says audit_error=WHY.  The strings are copied; t owns
 * the trail until rl2_overrides_close. */
rl2_status_t rl2_overrides_audit_attach(rl2_overrides_t        *t,
                                        const rl2_audit_conf_t *conf,
                                        rl2_err_t              *err);

/* rl2_ovr_value_text() back, by o->kind, into o's value fields
 * (RL2_ERR_INVALID when it does not read). */
rl2_status_t rl2_ovr_value_parse_text(rl2_override_t *o, const char *text,
                                      rl2_err_t *err);

#endif /* RL2_CONTROL_INTERNAL_H */
