/*
 * overrides.h -- runtime overrides: bans, allows, tier assignments, boosts,
 * rule modes and the emergency switch, changed while the servers run.
 *
 * An override table is a fixed-size object in named shared memory beside
 * the zone ("<zone>.overrides"), shared by every process of a host: the
 * web server's children, ratelimit2-fcgi, ratelimit2ctl.  Readers (every
 * request) never lock: a sequence counter tells them a write overlapped
 * their read, and they read again.  Writers take an exclusive record lock
 * on the object, which the kernel releases if a writer dies.  Every change
 * is also written to a state file (rewritten whole, atomically), from
 * which a new object is filled: overrides survive a restart and a reboot.
 *
 * An entry is keyed by what it targets; an address target may be a
 * network (CIDR).  Entries carry an expiry in wall-clock time; an expired
 * entry is ignored at once and removed by the next write.
 *
 * With a Redis side (rl2_overrides_redis_attach, or a front end's
 * rl2_backend_overrides_attach) the table is the fleet's: a change goes
 * to a hash in Redis first, then to this host's table; every host's
 * table is a mirror of that hash, brought up to date by the requests
 * themselves at most once a second per host (decide.c).
 */
#ifndef RL2_OVERRIDES_H
#define RL2_OVERRIDES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/clock.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/redis.h"
#include "ratelimit2/status.h"

typedef enum {
    RL2_OVR_BAN = 1,   /* refuse the client before any rule */
    RL2_OVR_ALLOW,     /* the runtime whitelist */
    RL2_OVR_TIER,      /* the client's tier */
    RL2_OVR_BOOST,     /* scale the limits of a rule, a tier, or all */
    RL2_OVR_MODE,      /* a rule's mode: enforce, dry_run, off */
    RL2_OVR_EMERGENCY, /* everything: a factor, or allow-list only */
    RL2_OVR_KINDS
} rl2_ovr_kind_t;

/* What an entry names. */
typedef enum {
    RL2_OVT_ADDR =
        1,        /* an address or a network: "192.0.2.9", "2001:db8::/48" */
    RL2_OVT_USER, /* "user:NAME", the authenticated user */
    RL2_OVT_KEY,  /* "key#HASH", an API key's hash under the policy's
                     secret (rl2_hash_id): keys are never stored */
    RL2_OVT_RULE, /* "rule:NAME" */
    RL2_OVT_TIER, /* "tier:NAME" */
    RL2_OVT_ALL   /* "*": every limit (boost), the site (emergency) */
} rl2_ovr_target_t;

#define RL2_OVR_TARGET_MAX 96 /* canonical target text, NUL included */
#define RL2_OVR_REASON_MAX 160
#define RL2_OVR_AUTHOR_MAX 64
#define RL2_OVR_NAME_MAX   64 /* tier name of a tier override */

/* Factors in parts per million: 2000000 is x2.  Bounded so that a limit
 * scaled by every factor at once stays a 63-bit count. */
#define RL2_OVR_FACTOR_ONE 1000000u
#define RL2_OVR_FACTOR_MIN 1000u       /* x0.001 */
#define RL2_OVR_FACTOR_MAX 1000000000u /* x1000 */

/* One override as written and listed. */
typedef struct {
    rl2_ovr_kind_t   kind;
    rl2_ovr_target_t target_kind;
    char             target[RL2_OVR_TARGET_MAX]; /* canonical text */
    /* the value, by kind */
    char     tier[RL2_OVR_NAME_MAX]; /* TIER */
    uint32_t factor_ppm;             /* BOOST; EMERGENCY (0: allow-list
                                        only) */
    rl2_mode_t mode;                 /* MODE */
    int64_t    expires_us;           /* wall clock; 0: never */
    int64_t    created_us;           /* wall clock */
    char       reason[RL2_OVR_REASON_MAX];
    char       author[RL2_OVR_AUTHOR_MAX];
} rl2_override_t;

typedef struct rl2_overrides rl2_overrides_t;

/* The start of every table handle: the two counters a request reads
 * before anything else, so that the test is inline (overrides.c). */
typedef struct {
    const _Atomic uint32_t *used;       /* entries set, expired included */
    const _Atomic uint32_t *n_identity; /* of them, naming a user or key */
} rl2_overrides_head_t;

/* An override's value for people and logs: "banned", "allowed", the tier
 * name, "x2.5" (boost, emergency), "allow-list-only" (emergency without
 * a factor), "dry_run" (mode). */
void rl2_ovr_value_text(const rl2_override_t *o, char *buf, size_t size);

/* A factor in ppm as the shortest exact decimal: 2500000 is "2.5",
 * 2000000 is "2", 1153846 is "1.153846" (rl2_ovr_value_text's factors,
 * X-RateLimit-Factors, the event=factor lines, ratelimit2ctl explain:
 * one spelling of a factor everywhere). */
void rl2_ovr_factor_format(uint32_t ppm, char *buf, size_t size);

/* qsort order of overrides as they are listed (ratelimit2ctl overrides,
 * the admin interface's list): by kind, then by target. */
int rl2_override_cmp(const void *a, const void *b);

/* "ban", "allow", ...; NULL for unknown. */
const char *rl2_ovr_kind_name(rl2_ovr_kind_t kind);

/* Attach to the override table "<zone>.overrides" (created if missing,
 * with `mode` permissions) and remember `state_file` (NULL: none) as
 * where changes are kept.  A table created now is filled from the state
 * file, so what was set before a restart or a reboot is back.
 * *out is released by rl2_overrides_close(). */
rl2_status_t rl2_overrides_open(const char *zone, const char *state_file,
                                unsigned mode, rl2_overrides_t **out,
                                rl2_err_t *err);
void         rl2_overrides_close(rl2_overrides_t *o);

/* Copy up to `max` active entries into out (kind 0: every kind), in no
 * particular order; returns how many there are in all. */
size_t rl2_overrides_list(rl2_overrides_t *t, rl2_ovr_kind_t kind,
                          const rl2_clock_t *now, rl2_override_t *out,
                          size_t max);

/* ---- one table for the fleet, through Redis (override_redis.c) -------
 *
 * In Redis: a hash "{NAME}" (NAME: conf->overrides_key, default
 * "rl2:overrides"), one field per entry, "KIND<TAB>TARGET" ("ban\t
 * 192.0.2.9"), whose value is the entry as a line of the state file; a
 * counter "{NAME}:version" that every change increments; and
 * "{NAME}:epoch", set by the first change an empty Redis takes (the
 * writer's clock in µs).  One hash tag: in a Cluster all three live on
 * one node, and a change is one atomic script (HSET or HDEL, expired
 * entries out, INCR).
 *
 * Each host's table mirrors the hash: when Redis's epoch or counter
 * differs from those the table mirrors, the hash is read whole and the
 * table made to match it (under the writers' lock; readers never
 * wait), then the state file is written.  While Redis cannot be reached
 * the table keeps what it last saw (expiries still apply) and changes
 * are refused.
 *
 * When Redis has lost what the table mirrors -- another epoch, or none
 * (restarted empty, whether or not it took changes since), or the same
 * epoch with a lower counter (restarted from an older snapshot, a
 * replica behind its master took over) -- or a table that never saw
 * Redis holds entries, the host writes its entries back (each one Redis
 * lacks; what Redis holds wins), moves the counter on and says so in
 * syslog (event=overrides_restored): no override is lost silently.  An
 * entry removed during the changes Redis lost comes back, as the mirror
 * still holds it. */

/* Give t a Redis side with connections of its own to conf's server
 * (standalone, Sentinel or Cluster; conf is copied), opened per thread
 * on first use.  For ratelimit2ctl and programs of one's own; a front
 * end's table borrows its backend's (rl2_backend_overrides_attach).
 * Call it once, before requests use t.  Connects to nothing. */
rl2_status_t rl2_overrides_redis_attach(rl2_overrides_t        *t,
                                        const rl2_redis_conf_t *conf,
                                        rl2_err_t              *err);

/* Sync now, due or not (ratelimit2ctl, tests): RL2_OK when the table
 * mirrors Redis; RL2_ERR_STORE when Redis could not be reached (the
 * table keeps what it had); RL2_ERR_SYS when the table follows Redis
 * but the state file could not be written.  RL2_ERR_INVALID without a
 * Redis side. */
rl2_status_t rl2_overrides_redis_sync(rl2_overrides_t   *t,
                                      const rl2_clock_t *now, rl2_err_t *err);

/* Move the fleet's counter ("{NAME}:version") on without changing the
 * hash, so that every host's mirror reads the hash again at its next
 * sync (within about a second) and moves its table's version on: what
 * the hosts' over-limit caches hold (backend.h) is dropped.  For
 * ratelimit2ctl reset, whose counters changed behind every cache's back.
 * Connects to conf's server (NAME: its overrides_key) with connections
 * of its own, closed before it returns.  RL2_ERR_STORE when Redis could
 * not be reached. */
rl2_status_t rl2_overrides_redis_bump(const rl2_redis_conf_t *conf,
                                      const rl2_clock_t *now, rl2_err_t *err);

#endif /* RL2_OVERRIDES_H */
