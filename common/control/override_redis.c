/*
 * override_redis.c -- the runtime override table of a whole fleet,
 * through Redis (overrides.h, "one table for the fleet").
 *
 * Owns the Redis side of a table: its keys, the three scripts (a change,
 * a read of the whole hash, a write-back), the election of the host's
 * syncing process, and the mirror's health.
 *
 * Why an epoch beside the version counter: a Redis that restarted empty
 * starts its counter again, and once it has taken as many changes as a
 * host's mirror had seen, the counters agree while the contents do not.
 * The epoch, set by the first change an empty Redis takes, tells them
 * apart whatever the counter says.
 *
 * Why Redis first and the table after: a change that only this host's
 * table had would be undone by the next sync, so a change Redis did not
 * take is refused, and nothing changes anywhere ("changes made while
 * Redis is down are refused rather than lost").
 *
 * Why the requests sync: nothing else runs in a web server's children.
 * A request pays one load and a compare until the host's next sync is
 * due; then the one process whose compare-and-swap moves the due time a
 * second on asks Redis the epoch and the version (one MGET), and reads
 * the hash only when they changed.  While the circuit in front of Redis is open
 * the sync does not ask at all: a request never waits for a Redis the
 * store already knows is down.
 *
 * Connections: a front end's table borrows its Redis store's (the
 * per-thread connection the request thread already holds, or the
 * store's Cluster router), so the mirror adds no connection to Redis;
 * a table given a server of its own (ratelimit2ctl) makes its own, per
 * thread, on first use.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/base_internal.h"
#include "store/store_internal.h"
#include "control_internal.h"

/* A host syncs at most this often. */
#define RL2_OVR_SYNC_US RL2_US_PER_S

/* "KIND<TAB>TARGET", the field of an entry in the hash. */
#define RL2_OVR_FIELD_MAX (16 + RL2_OVR_TARGET_MAX)

struct rl2_ovr_redis {
    rl2_redis_pool_t    *pool;    /* a server, or Sentinel's master */
    rl2_redis_cluster_t *cluster; /* or a Cluster, routed by slot */
    int                  owned;   /* pool or cluster made here */
    const rl2_circuit_t *circuit; /* NULL: always ask */
    rl2_alert_t         *alert;   /* NULL: no syslog line */
    char                 key[RL2_REDIS_OVR_KEY_MAX + 2]; /* "{NAME}" */
    char                 version_key[RL2_REDIS_OVR_KEY_MAX + 10];
    char                 epoch_key[RL2_REDIS_OVR_KEY_MAX + 8];
    char                 audit_key[RL2_REDIS_OVR_KEY_MAX + 8]; /* stream */
    unsigned             slot; /* of the four keys: one hash tag */
    const char          *name; /* the server, for messages */
};

/* Which state of the hash: its epoch and version (0, 0: none). */
typedef struct {
    uint64_t epoch;
    uint64_t version;
} rl2_ovr_at_t;

/* ---- the scripts --------------------------------------------------------
 *
 * KEYS[1] is the hash, KEYS[2] its version counter, KEYS[3] its epoch.
 * Times are the writer's wall clock in µs (entries expire on it on
 * every host), which Lua's doubles hold exactly until the year 2255.
 */

/* A change: the epoch set if Redis has none (ARGV[1], now); expired
 * entries out; then ARGV[4] set as field ARGV[3] (no ARGV[4]: the field
 * removed); the counter incremented when anything changed.  ARGV[2]:
 * the most entries a table holds.  Answers {epoch, version, the field's
 * old value or nil, changed 0/1}. */
static const char rl2_ovr_lua_change[] =
    "local now, max = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local epoch = redis.call('GET', KEYS[3])\n"
    "if not epoch then\n"
    "  epoch = ARGV[1]\n"
    "  redis.call('SET', KEYS[3], epoch)\n"
    "end\n"
    "local changed = false\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  local e = tonumber(string.match(all[i + 1],\n"
    "    '^[^\\t]*\\t[^\\t]*\\t[^\\t]*\\t(%d+)\\t'))\n"
    "  if e ~= nil and e ~= 0 and e <= now then\n"
    "    redis.call('HDEL', KEYS[1], all[i])\n"
    "    changed = true\n"
    "  end\n"
    "end\n"
    "local old = redis.call('HGET', KEYS[1], ARGV[3])\n"
    "if ARGV[4] then\n"
    "  if not old and redis.call('HLEN', KEYS[1]) >= max then\n"
    "    if changed then redis.call('INCR', KEYS[2]) end\n"
    "    return redis.error_reply('RL2FULL the table is full')\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])\n"
    "  changed = true\n"
    "elseif old then\n"
    "  redis.call('HDEL', KEYS[1], ARGV[3])\n"
    "  changed = true\n"
    "end\n"
    "local v\n"
    "if changed then\n"
    "  v = redis.call('INCR', KEYS[2])\n"
    "else\n"
    "  v = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "end\n"
    "return {epoch, v, old, changed and 1 or 0}\n";

/* The epoch, the version and the whole hash, in one atomic read. */
static const char rl2_ovr_lua_read[] =
    "return {redis.call('GET', KEYS[3]) or '0',\n"
    "        redis.call('GET', KEYS[2]) or '0',\n"
    "        redis.call('HGETALL', KEYS[1])}\n";

/* A mirror written back.  ARGV[1], ARGV[2]: the epoch and version it
 * mirrors (0 0: it never saw Redis); ARGV[3]: now, the epoch if Redis
 * has none; ARGV[4]: the most entries; then field and value pairs, each
 * set only where Redis has no such field (what Redis holds is newer, or
 * another host's write-back).  Skipped when Redis has caught up with the
 * mirror meanwhile (another host wrote back first); the counter then
 * moves on, past the mirror's in the same epoch.  Answers {epoch,
 * version, fields written, written back 0/1}. */
static const char rl2_ovr_lua_restore[] =
    "local epoch = redis.call('GET', KEYS[3])\n"
    "local v = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "local me, mv = ARGV[1], tonumber(ARGV[2])\n"
    "local max = tonumber(ARGV[4])\n"
    "if epoch and epoch == me and v >= mv then\n"
    "  return {epoch, v, 0, 0}\n"
    "end\n"
    "if not epoch then\n"
    "  epoch = ARGV[3]\n"
    "  redis.call('SET', KEYS[3], epoch)\n"
    "end\n"
    "local n = 0\n"
    "for i = 5, #ARGV, 2 do\n"
    "  if redis.call('HLEN', KEYS[1]) < max then\n"
    "    n = n + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])\n"
    "  end\n"
    "end\n"
    "if epoch == me then v = math.max(v, mv) end\n"
    "v = v + 1\n"
    "redis.call('SET', KEYS[2], string.format('%d', v))\n"
    "return {epoch, v, n, 1}\n";

/* The counter moved on with no change to the hash (a reset of counters
 * the table's mirrors must hear of: rl2_overrides_redis_bump); the
 * epoch set if Redis has none (ARGV[1], now), as a change would.
 * Answers {epoch, version}. */
static const char rl2_ovr_lua_bump[] =
    "local epoch = redis.call('GET', KEYS[3])\n"
    "if not epoch then\n"
    "  epoch = ARGV[1]\n"
    "  redis.call('SET', KEYS[3], epoch)\n"
    "end\n"
    "return {epoch, redis.call('INCR', KEYS[2])}\n";

/* Arguments every EVAL starts with: EVAL script 3 KEYS[1..3]. */
#define RL2_OVR_EVAL_ARGS 6

/* ---- talking to Redis --------------------------------------------------- */

/* One command to the side's slot (one server: this thread's
 * connection). */
static rl2_status_t
rl2_ovr_command(rl2_ovr_redis_t *r, int argc, const char **argv,
                const size_t *len, const char *what, redisReply **reply,
                rl2_err_t *err)
{
    rl2_redis_conn_t *conn;
    rl2_status_t      st;

    if (r->cluster != NULL) {
        return rl2_redis_cluster_command(r->cluster, r->slot, argc, argv, len,
                                         what, reply, NULL, err);
    }
    if ((st = rl2_redis_pool_get(r->pool, &conn, err)) != RL2_OK) {
        return st;
    }
    return rl2_redis_command(conn, argc, argv, len, what, reply, err);
}

/* EVAL script on the side's three keys, with the script's own arguments
 * already in argv[RL2_OVR_EVAL_ARGS..argc) (the first ones and their
 * lengths are filled here).  An error reply is RL2_ERR_STORE naming the
 * server, unless it starts with `allowed` (the caller's to read). */
static rl2_status_t
rl2_ovr_eval(rl2_ovr_redis_t *r, const char *script, int argc,
             const char **argv, size_t *len, const char *what,
             const char *allowed, redisReply **reply, rl2_err_t *err)
{
    rl2_status_t st;

    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = "3";
    argv[3] = r->key;
    argv[4] = r->version_key;
    argv[5] = r->epoch_key;
    for (int i = 0; i < RL2_OVR_EVAL_ARGS; i++) {
        len[i] = strlen(argv[i]);
    }
    st = rl2_ovr_command(r, argc, argv, len, what, reply, err);
    if (st == RL2_OK && (*reply)->type == REDIS_REPLY_ERROR
        && (allowed == NULL
            || strncmp((*reply)->str, allowed, strlen(allowed)) != 0)) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis %s: %s: %.160s", r->name,
                         what, (*reply)->str);
        rl2_redis_reply_free(*reply);
        *reply = NULL;
    }
    return st;
}

/* A number as Redis gives it (an integer, a decimal string; nil: 0);
 * -1 for anything else. */
static int
rl2_ovr_number_of(const redisReply *e, uint64_t *v)
{
    char *end;

    *v = 0;
    if (e->type == REDIS_REPLY_NIL) {
        return 0;
    }
    if (e->type == REDIS_REPLY_INTEGER && e->integer >= 0) {
        *v = (uint64_t)e->integer;
        return 0;
    }
    if (e->type == REDIS_REPLY_STRING && e->len > 0 && e->len < 21) {
        *v = strtoull(e->str, &end, 10);
        return end == e->str + e->len ? 0 : -1;
    }
    return -1;
}

/* The epoch and version at the head of a script's answer (or of the
 * MGET). */
static int
rl2_ovr_at_of(const redisReply *r, size_t elements, rl2_ovr_at_t *at)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == elements
                   && rl2_ovr_number_of(r->element[0], &at->epoch) == 0
                   && rl2_ovr_number_of(r->element[1], &at->version) == 0
               ? 0
               : -1;
}

static rl2_status_t
rl2_ovr_unexpected(const rl2_ovr_redis_t *r, const char *what, rl2_err_t *err)
{
    return rl2_err_set(err, RL2_ERR_STORE, "redis %s: %s: unexpected reply",
                       r->name, what);
}

/* MGET of the epoch and the version counter (absent: 0): one round
 * trip, what a due sync costs when nothing changed. */
static rl2_status_t
rl2_ovr_get_at(rl2_ovr_redis_t *r, rl2_ovr_at_t *at, rl2_err_t *err)
{
    const char  *argv[3] = { "MGET", r->epoch_key, r->version_key };
    size_t       len[3] = { 4, strlen(r->epoch_key), strlen(r->version_key) };
    redisReply  *reply;
    rl2_status_t st;

    st = rl2_ovr_command(r, 3, argv, len, "overrides version", &reply, err);
    if (st != RL2_OK) {
        return st;
    }
    if (rl2_ovr_at_of(reply, 2, at) != 0) {
        st = reply->type == REDIS_REPLY_ERROR
                 ? rl2_err_set(err, RL2_ERR_STORE,
                               "redis %s: overrides version: %.160s", r->name,
                               reply->str)
                 : rl2_ovr_unexpected(r, "overrides version", err);
    }
    rl2_redis_reply_free(reply);
    return st;
}

/* What this table mirrors. */
static rl2_ovr_at_t
rl2_ovr_mirrored(const rl2_overrides_t *t)
{
    rl2_ovr_at_t at = {
        atomic_load_explicit(&t->shm->redis_epoch, memory_order_relaxed),
        atomic_load_explicit(&t->shm->redis_version, memory_order_relaxed)
    };

    return at;
}

static void
rl2_ovr_mirror_at(rl2_overrides_t *t, rl2_ovr_at_t at)
{
    atomic_store_explicit(&t->shm->redis_epoch, at.epoch, memory_order_relaxed);
    atomic_store_explicit(&t->shm->redis_version, at.version,
                          memory_order_relaxed);
}

static int
rl2_ovr_at_eq(rl2_ovr_at_t a, rl2_ovr_at_t b)
{
    return a.epoch == b.epoch && a.version == b.version;
}

/* ---- the health the mirror shows --------------------------------------- */

/* The last failure's text ("" after a success), under the writers'
 * lock; a failure to lock leaves the text as it was. */
static void
rl2_ovr_note_error(rl2_overrides_t *t, const char *text)
{
    ovr_shm_t *s = t->shm;
    rl2_err_t  ignored;

    /* The usual case, nothing to write: no lock.  A byte a writer may be
     * changing, read as such. */
    if (text[0] == '\0'
        && __atomic_load_n(&s->error[0], __ATOMIC_RELAXED) == 0) {
        return;
    }
    if (rl2_ovr_lock(t, &ignored) != RL2_OK) {
        return;
    }
    atomic_fetch_add_explicit(&s->error_seq, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    snprintf(s->error, sizeof(s->error), "%s", text);
    atomic_fetch_add_explicit(&s->error_seq, 1, memory_order_release);
    rl2_ovr_unlock(t);
}

/* After a sync that ended with st (err's text when not RL2_OK). */
static void
rl2_ovr_note(rl2_overrides_t *t, const rl2_clock_t *now, rl2_status_t st,
             const rl2_err_t *err)
{
    ovr_shm_t *s = t->shm;
    int        reached = st == RL2_OK || st == RL2_ERR_SYS;

    atomic_store_explicit(&s->tried_us, now->wall_us, memory_order_relaxed);
    atomic_store_explicit(&s->reachable, (uint32_t)reached,
                          memory_order_relaxed);
    if (reached) {
        atomic_store_explicit(&s->synced_us, now->wall_us,
                              memory_order_relaxed);
    }
    rl2_ovr_note_error(t, st == RL2_OK ? "" : err->msg);
}

void
rl2_overrides_sync_status(const rl2_overrides_t *t, rl2_overrides_sync_t *out)
{
    const ovr_shm_t *s = t->shm;
    uint32_t         seq;

    memset(out, 0, sizeof(*out));
    out->redis = t->redis != NULL;
    out->reachable = (int)atomic_load(&s->reachable);
    out->tried_us = atomic_load(&s->tried_us);
    out->synced_us = atomic_load(&s->synced_us);
    out->redis_epoch = atomic_load(&s->redis_epoch);
    out->redis_version = atomic_load(&s->redis_version);
    out->restores = atomic_load(&s->restores);
    out->unreadable = atomic_load(&s->unreadable);
    /* As the slots are read: again when a writer came in between. */
    for (int tries = 0; tries < 100; tries++) {
        seq = atomic_load_explicit(&s->error_seq, memory_order_acquire);
        if (seq & 1) {
            continue;
        }
        memcpy(out->error, s->error, sizeof(out->error));
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->error_seq, memory_order_relaxed) == seq) {
            break;
        }
    }
    out->error[sizeof(out->error) - 1] = '\0';
}

/* ---- entries in and out of the hash ------------------------------------- */

static int
rl2_ovr_field(const rl2_override_t *o, char *buf, size_t size)
{
    int n =
        snprintf(buf, size, "%s\t%s", rl2_ovr_kind_name(o->kind), o->target);

    return n < 0 || (size_t)n >= size ? -1 : n;
}

/* A value of the hash into *o; -1 when it is not a line this version
 * reads. */
static int
rl2_ovr_value_of(const redisReply *value, rl2_override_t *o)
{
    char line[RL2_OVR_LINE_MAX];

    if (value->type != REDIS_REPLY_STRING || value->len >= sizeof(line)
        || memchr(value->str, '\0', value->len) != NULL
        || memchr(value->str, '\n', value->len) != NULL) {
        return -1;
    }
    memcpy(line, value->str, value->len);
    line[value->len] = '\0';
    return rl2_ovr_line_parse(line, o);
}

/* One field and value of the hash into *o; -1 when the value does not
 * read, or does not belong under its field. */
static int
rl2_ovr_entry_of(const redisReply *field, const redisReply *value,
                 rl2_override_t *o)
{
    char want[RL2_OVR_FIELD_MAX];
    int  n;

    return field->type == REDIS_REPLY_STRING && rl2_ovr_value_of(value, o) == 0
                   && (n = rl2_ovr_field(o, want, sizeof(want))) >= 0
                   && (size_t)n == field->len
                   && memcmp(want, field->str, field->len) == 0
               ? 0
               : -1;
}

/* Every live entry of the hash's HGETALL reply h into a malloc()ed
 * array (*out, *n); *unreadable counts the fields skipped. */
static rl2_status_t
rl2_ovr_entries_of(const redisReply *h, int64_t now_us, rl2_override_t **out,
                   size_t *n, uint32_t *unreadable, rl2_err_t *err)
{
    size_t pairs = h->elements / 2;

    *n = 0;
    *unreadable = 0;
    if ((*out = malloc((pairs > 0 ? pairs : 1) * sizeof(**out))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "overrides: out of memory");
    }
    for (size_t i = 0; i < pairs; i++) {
        rl2_override_t *o = &(*out)[*n];

        if (rl2_ovr_entry_of(h->element[2 * i], h->element[2 * i + 1], o)
            != 0) {
            (*unreadable)++;
        }
        else if (o->expires_us == 0 || o->expires_us > now_us) {
            (*n)++;
        }
    }
    return RL2_OK;
}

/* ---- the sync ------------------------------------------------------------ */

/* The table made to match the hash at `at`, and the state file written,
 * unless another writer of this host moved the mirror on since this sync
 * read `seen` (its change is newer than this read; the next sync
 * compares again). */
static rl2_status_t
rl2_ovr_apply_read(rl2_overrides_t *t, rl2_ovr_at_t seen, rl2_ovr_at_t at,
                   const rl2_override_t *o, size_t n, uint32_t unreadable,
                   const rl2_clock_t *now, rl2_err_t *err)
{
    uint32_t     dropped = 0;
    rl2_status_t st;

    if ((st = rl2_ovr_lock(t, err)) != RL2_OK) {
        return st;
    }
    if (rl2_ovr_at_eq(rl2_ovr_mirrored(t), seen)) {
        rl2_ovr_mirror(t, o, n, &dropped);
        rl2_ovr_mirror_at(t, at);
        atomic_store_explicit(&t->shm->unreadable, unreadable + dropped,
                              memory_order_relaxed);
        st = rl2_ovr_save(t, now, err);
    }
    rl2_ovr_unlock(t);
    return st;
}

/* Read the whole hash and make the table match it. */
static rl2_status_t
rl2_ovr_fetch(rl2_overrides_t *t, rl2_ovr_at_t seen, const rl2_clock_t *now,
              rl2_err_t *err)
{
    const char     *argv[RL2_OVR_EVAL_ARGS];
    size_t          len[RL2_OVR_EVAL_ARGS];
    redisReply     *reply;
    rl2_override_t *o = NULL;
    size_t          n = 0;
    uint32_t        unreadable = 0;
    rl2_ovr_at_t    at;
    rl2_status_t    st;

    st = rl2_ovr_eval(t->redis, rl2_ovr_lua_read, RL2_OVR_EVAL_ARGS, argv, len,
                      "overrides read", NULL, &reply, err);
    if (st != RL2_OK) {
        return st;
    }
    if (rl2_ovr_at_of(reply, 3, &at) != 0
        || reply->element[2]->type != REDIS_REPLY_ARRAY) {
        st = rl2_ovr_unexpected(t->redis, "overrides read", err);
    }
    else {
        st = rl2_ovr_entries_of(reply->element[2], now->wall_us, &o, &n,
                                &unreadable, err);
    }
    rl2_redis_reply_free(reply);
    if (st == RL2_OK) {
        st = rl2_ovr_apply_read(t, seen, at, o, n, unreadable, now, err);
    }
    free(o);
    return st;
}

/* A write-back's arguments: `first` fixed ones, then each live entry of
 * the table as field and value, in malloc()ed arrays (the caller frees
 * them) whose strings are in *lines. */
typedef struct {
    const char **argv;
    size_t      *len;
    char        *lines;
    int          argc;
} rl2_ovr_args_t;

static rl2_status_t
rl2_ovr_restore_args(rl2_overrides_t *t, const rl2_clock_t *now, int first,
                     rl2_ovr_args_t *a, rl2_err_t *err)
{
    size_t          n = rl2_overrides_list(t, 0, now, NULL, 0), k;
    rl2_override_t *o = malloc((n > 0 ? n : 1) * sizeof(*o));
    const size_t    w = RL2_OVR_FIELD_MAX + RL2_OVR_LINE_MAX;
    size_t          slots = (size_t)first + 2 * n;

    a->argv = malloc(slots * sizeof(*a->argv));
    a->len = malloc(slots * sizeof(*a->len));
    a->lines = malloc(n * w + 1);
    if (o == NULL || a->argv == NULL || a->len == NULL || a->lines == NULL) {
        free(o);
        return rl2_err_set(err, RL2_ERR_NOMEM, "overrides: out of memory");
    }
    /* Fewer when some expired or went meanwhile. */
    if ((k = rl2_overrides_list(t, 0, now, o, n)) < n) {
        n = k;
    }
    a->argc = first;
    for (k = 0; k < n; k++) {
        char *f = a->lines + k * w, *v = f + RL2_OVR_FIELD_MAX;
        int   fl = rl2_ovr_field(&o[k], f, RL2_OVR_FIELD_MAX);
        int   vl = rl2_ovr_line_format(&o[k], v, RL2_OVR_LINE_MAX);

        if (fl >= 0 && vl >= 0) {
            a->argv[a->argc] = f;
            a->len[a->argc++] = (size_t)fl;
            a->argv[a->argc] = v;
            a->len[a->argc++] = (size_t)vl;
        }
    }
    free(o);
    return RL2_OK;
}

static void
rl2_ovr_restored_alert(rl2_overrides_t *t, rl2_ovr_at_t redis,
                       rl2_ovr_at_t mirror, long long written)
{
    char              rv[48], mv[48], w[24];
    rl2_alert_field_t f[4] = { { "key", t->redis->key },
                               { "redis", rv },
                               { "mirror", mv },
                               { "written", w } };
    rl2_err_t         ignored;

    /* EPOCH/VERSION of each side */
    snprintf(rv, sizeof(rv), "%" PRIu64 "/%" PRIu64, redis.epoch,
             redis.version);
    snprintf(mv, sizeof(mv), "%" PRIu64 "/%" PRIu64, mirror.epoch,
             mirror.version);
    snprintf(w, sizeof(w), "%lld", written);
    (void)rl2_alert_send(t->redis->alert, RL2_ALERT_OVR_RESTORED, f, 4, NULL,
                         &ignored);
}

/* Redis has lost what the mirror holds (seen in Redis: `redis`), or the
 * table never saw Redis: write the table's entries back (idempotent:
 * only fields Redis lacks) and move the counter on. */
static rl2_status_t
rl2_ovr_restore(rl2_overrides_t *t, rl2_ovr_at_t redis, rl2_ovr_at_t mirror,
                const rl2_clock_t *now, rl2_err_t *err)
{
    const int      first = RL2_OVR_EVAL_ARGS + 4;
    rl2_ovr_args_t a = { NULL, NULL, NULL, 0 };
    char           nums[4][24];
    redisReply    *reply = NULL;
    rl2_status_t   st;

    st = rl2_ovr_restore_args(t, now, first, &a, err);
    if (st == RL2_OK) {
        snprintf(nums[0], sizeof(nums[0]), "%" PRIu64, mirror.epoch);
        snprintf(nums[1], sizeof(nums[1]), "%" PRIu64, mirror.version);
        snprintf(nums[2], sizeof(nums[2]), "%" PRId64, now->wall_us);
        snprintf(nums[3], sizeof(nums[3]), "%u", OVR_MAX_ENTRIES);
        for (int i = 0; i < 4; i++) {
            a.argv[RL2_OVR_EVAL_ARGS + i] = nums[i];
            a.len[RL2_OVR_EVAL_ARGS + i] = strlen(nums[i]);
        }
        st = rl2_ovr_eval(t->redis, rl2_ovr_lua_restore, a.argc, a.argv, a.len,
                          "overrides write-back", NULL, &reply, err);
    }
    if (st == RL2_OK
        && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4
            || reply->element[2]->type != REDIS_REPLY_INTEGER
            || reply->element[3]->type != REDIS_REPLY_INTEGER)) {
        st = rl2_ovr_unexpected(t->redis, "overrides write-back", err);
    }
    if (st == RL2_OK && reply->element[3]->integer == 1) {
        atomic_fetch_add_explicit(&t->shm->restores, 1, memory_order_relaxed);
        /* A host whose mirror Redis held already says nothing: one line
         * from the hosts that brought something back. */
        if (reply->element[2]->integer > 0) {
            rl2_ovr_restored_alert(t, redis, mirror,
                                   reply->element[2]->integer);
        }
    }
    rl2_redis_reply_free(reply);
    free(a.argv);
    free(a.len);
    free(a.lines);
    return st;
}

/* Does the mirror hold what Redis may not: Redis in another epoch or in
 * none, or behind in the same one; or entries of a table that never saw
 * Redis (its state file from before)? */
static int
rl2_ovr_redis_lost(rl2_overrides_t *t, rl2_ovr_at_t redis, rl2_ovr_at_t mirror,
                   const rl2_clock_t *now)
{
    if (mirror.epoch == 0 && mirror.version == 0) {
        return atomic_load_explicit(&t->shm->used, memory_order_relaxed) > 0
               && rl2_overrides_list(t, 0, now, NULL, 0) > 0;
    }
    return redis.epoch != mirror.epoch || redis.version < mirror.version;
}

static rl2_status_t
rl2_ovr_follow(rl2_overrides_t *t, const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_ovr_redis_t *r = t->redis;
    rl2_ovr_at_t     redis, mirror;
    rl2_status_t     st;

    if (r->circuit != NULL
        && rl2_circuit_state(r->circuit) != RL2_CIRCUIT_CLOSED) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "redis %s: not asked while the circuit is open; "
                           "the overrides stay as last seen",
                           r->name);
    }
    if ((st = rl2_ovr_get_at(r, &redis, err)) != RL2_OK) {
        return st;
    }
    mirror = rl2_ovr_mirrored(t);
    if (rl2_ovr_redis_lost(t, redis, mirror, now)) {
        if ((st = rl2_ovr_restore(t, redis, mirror, now, err)) != RL2_OK) {
            return st;
        }
    }
    else if (rl2_ovr_at_eq(redis, mirror)) {
        return RL2_OK;
    }
    return rl2_ovr_fetch(t, mirror, now, err);
}

rl2_status_t
rl2_overrides_redis_sync(rl2_overrides_t *t, const rl2_clock_t *now,
                         rl2_err_t *err)
{
    rl2_status_t st;
    rl2_err_t    e;

    if (t->redis == NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID, "overrides %s: no Redis side",
                           t->name);
    }
    st = rl2_ovr_follow(t, now, &e);
    rl2_ovr_note(t, now, st, &e);
    return st == RL2_OK ? RL2_OK : rl2_err_set(err, st, "%s", e.msg);
}

void
rl2_overrides_sync_due(rl2_overrides_t *t, const rl2_clock_t *now)
{
    _Atomic int64_t *due = &t->shm->next_sync_us;
    int64_t          at = atomic_load_explicit(due, memory_order_relaxed);
    rl2_err_t        err;

    /* The process that moves the due time on is the one that syncs; the
     * others go on with the table as it is. */
    if (t->redis == NULL || at > now->mono_us
        || !atomic_compare_exchange_strong_explicit(
            due, &at, now->mono_us + RL2_OVR_SYNC_US, memory_order_acq_rel,
            memory_order_relaxed)) {
        return;
    }
    (void)rl2_overrides_redis_sync(t, now, &err);
}

/* ---- changes: Redis first ----------------------------------------------- */

/* What rl2_ovr_change's script answered. */
typedef struct {
    rl2_ovr_at_t   at;      /* Redis's, after the change */
    int            changed; /* the change (or a purge) changed the hash */
    rl2_override_t old;     /* the field's value before; kind 0: none */
} rl2_ovr_changed_t;

/* Why a change was not made: Redis could not take it. */
static rl2_status_t
rl2_ovr_refused(rl2_status_t st, const char *what, const char *why,
                rl2_err_t *err)
{
    return rl2_err_set(err, st == RL2_ERR_NOMEM ? st : RL2_ERR_STORE,
                       "overrides: not %s: %s (changes are refused while "
                       "Redis cannot take them, rather than lost)",
                       what, why);
}

/* The change script's answer into *out; -1 when it does not read. */
static int
rl2_ovr_changed_of(const redisReply *r, rl2_ovr_changed_t *out)
{
    if (rl2_ovr_at_of(r, 4, &out->at) != 0
        || r->element[3]->type != REDIS_REPLY_INTEGER) {
        return -1;
    }
    out->changed = r->element[3]->integer == 1;
    if (rl2_ovr_value_of(r->element[2], &out->old) != 0) {
        out->old.kind = 0; /* none, or not a line this version reads */
    }
    return 0;
}

/* The change script on field, with value (NULL: remove); `what` ("set",
 * "removed") for the message when Redis does not take it. */
static rl2_status_t
rl2_ovr_change(rl2_overrides_t *t, const char *field, const char *value,
               const rl2_clock_t *now, const char *what, rl2_ovr_changed_t *out,
               rl2_err_t *err)
{
    const int    n = RL2_OVR_EVAL_ARGS;
    const char  *argv[RL2_OVR_EVAL_ARGS + 4];
    size_t       len[RL2_OVR_EVAL_ARGS + 4];
    char         nums[2][24];
    redisReply  *reply;
    rl2_err_t    why;
    rl2_status_t st;

    snprintf(nums[0], sizeof(nums[0]), "%" PRId64, now->wall_us);
    snprintf(nums[1], sizeof(nums[1]), "%u", OVR_MAX_ENTRIES);
    argv[n] = nums[0];
    argv[n + 1] = nums[1];
    argv[n + 2] = field;
    argv[n + 3] = value != NULL ? value : "";
    for (int i = n; i < n + 4; i++) {
        len[i] = strlen(argv[i]);
    }
    st = rl2_ovr_eval(t->redis, rl2_ovr_lua_change,
                      value != NULL ? n + 4 : n + 3, argv, len,
                      "overrides change", "RL2FULL", &reply, &why);
    if (st != RL2_OK) {
        return rl2_ovr_refused(st, what, why.msg, err);
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        st = rl2_err_set(err, RL2_ERR_STORE,
                         "overrides %s: full (%u entries): remove some first",
                         t->redis->key, OVR_MAX_ENTRIES);
    }
    else if (rl2_ovr_changed_of(reply, out) != 0) {
        st = rl2_ovr_refused(RL2_ERR_STORE, what,
                             "an answer this version does not read", err);
    }
    rl2_redis_reply_free(reply);
    return st;
}

/* After Redis took a change to out->at: the same change on this table
 * (apply: the local half, called under the lock) when the table mirrors
 * the state just before it; else a sync.  A state file that cannot keep
 * it is RL2_ERR_SYS, the change standing. */
typedef rl2_status_t (*rl2_ovr_apply_fn)(rl2_overrides_t *t, const void *arg,
                                         const rl2_clock_t *now,
                                         rl2_err_t         *err);

static rl2_status_t
rl2_ovr_follow_change(rl2_overrides_t *t, const rl2_ovr_changed_t *c,
                      rl2_ovr_apply_fn apply, const void *arg,
                      const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_ovr_at_t before = { c->at.epoch, c->at.version - 1 };
    rl2_status_t st;
    rl2_err_t    e;
    int          sync = 0;

    if ((st = rl2_ovr_lock(t, &e)) == RL2_OK) {
        rl2_ovr_at_t mirror = rl2_ovr_mirrored(t);

        if (c->changed && rl2_ovr_at_eq(mirror, before)
            && apply(t, arg, now, &e) == RL2_OK) {
            rl2_ovr_mirror_at(t, c->at);
            st = rl2_ovr_save(t, now, &e);
        }
        else {
            /* Behind, or another writer's change came first. */
            sync = c->changed || !rl2_ovr_at_eq(mirror, c->at);
        }
        rl2_ovr_unlock(t);
    }
    if (sync) {
        rl2_err_t later;

        /* Redis has it; a sync that fails now leaves it to the next. */
        (void)rl2_overrides_redis_sync(t, now, &later);
    }
    return st == RL2_OK ? RL2_OK
                        : rl2_err_set(err, st,
                                      "changed in Redis, but not kept on this "
                                      "host: %s",
                                      e.msg);
}

static rl2_status_t
rl2_ovr_apply_set_fn(rl2_overrides_t *t, const void *arg,
                     const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_override_t was;

    return rl2_ovr_apply_set(t, arg, now->wall_us, &was, err);
}

rl2_status_t
rl2_ovr_redis_set(rl2_overrides_t *t, const rl2_override_t *o,
                  const rl2_clock_t *now, rl2_override_t *before, int *taken,
                  rl2_err_t *err)
{
    char              field[RL2_OVR_FIELD_MAX], line[RL2_OVR_LINE_MAX];
    rl2_ovr_changed_t c;
    rl2_status_t      st;

    if (taken != NULL) {
        *taken = 0;
    }
    if (rl2_ovr_field(o, field, sizeof(field)) < 0
        || rl2_ovr_line_format(o, line, sizeof(line)) < 0) {
        return rl2_err_set(err, RL2_ERR_INVALID, "overrides: entry too long");
    }
    if ((st = rl2_ovr_change(t, field, line, now, "set", &c, err)) != RL2_OK) {
        return st;
    }
    if (before != NULL) {
        *before = c.old;
    }
    if (taken != NULL) {
        *taken = 1;
    }
    return rl2_ovr_follow_change(t, &c, rl2_ovr_apply_set_fn, o, now, err);
}

typedef struct {
    rl2_ovr_kind_t   kind;
    rl2_ovr_target_t target_kind;
    const char      *target;
} rl2_ovr_which_t;

static rl2_status_t
rl2_ovr_apply_remove_fn(rl2_overrides_t *t, const void *arg,
                        const rl2_clock_t *now, rl2_err_t *err)
{
    const rl2_ovr_which_t *w = arg;
    rl2_override_t         was;

    (void)err;
    rl2_ovr_apply_remove(t, w->kind, w->target_kind, w->target, now->wall_us,
                         &was);
    return RL2_OK;
}

rl2_status_t
rl2_ovr_redis_remove(rl2_overrides_t *t, rl2_ovr_kind_t kind,
                     rl2_ovr_target_t target_kind, const char *target,
                     const rl2_clock_t *now, rl2_override_t *before,
                     rl2_err_t *err)
{
    rl2_ovr_which_t   w = { kind, target_kind, target };
    const char       *name = rl2_ovr_kind_name(kind);
    char              field[RL2_OVR_FIELD_MAX];
    rl2_ovr_changed_t c;
    rl2_status_t      st;
    int               n;

    n = snprintf(field, sizeof(field), "%s\t%s", name ? name : "", target);
    if (name == NULL || n < 0 || (size_t)n >= sizeof(field)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "overrides: unknown kind, or target too long");
    }
    st = rl2_ovr_change(t, field, NULL, now, "removed", &c, err);
    if (st != RL2_OK) {
        return st;
    }
    if (before != NULL) {
        *before = c.old;
    }
    return rl2_ovr_follow_change(t, &c, rl2_ovr_apply_remove_fn, &w, now, err);
}

/* ---- the audit stream (audit.c, audit_read.c) --------------------------- */

const char *
rl2_ovr_redis_audit_key(const rl2_ovr_redis_t *r)
{
    return r->audit_key;
}

const char *
rl2_ovr_redis_name(const rl2_ovr_redis_t *r)
{
    return r->name;
}

rl2_status_t
rl2_ovr_redis_audit_add(rl2_ovr_redis_t *r, const char *line, size_t len,
                        rl2_err_t *err)
{
    /* No MAXLEN: N changes are N entries for as long as the stream is
     * kept (audit.h). */
    const char  *argv[5] = { "XADD", r->audit_key, "*", "entry", line };
    size_t       lens[5] = { 4, strlen(r->audit_key), 1, 5, len };
    redisReply  *reply;
    rl2_status_t st;

    st = rl2_ovr_command(r, 5, argv, lens, "audit XADD", &reply, err);
    if (st != RL2_OK) {
        return st;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis %s: XADD %s: %.160s",
                         r->name, r->audit_key,
                         reply->type == REDIS_REPLY_ERROR ? reply->str
                                                          : "unexpected reply");
    }
    rl2_redis_reply_free(reply);
    return st;
}

rl2_status_t
rl2_ovr_redis_audit_range(rl2_ovr_redis_t *r, const char *start, unsigned count,
                          redisReply **reply, rl2_err_t *err)
{
    char         n[16];
    const char  *argv[6] = { "XRANGE", r->audit_key, start, "+", "COUNT", n };
    size_t       lens[6];
    rl2_status_t st;

    snprintf(n, sizeof(n), "%u", count);
    for (int i = 0; i < 6; i++) {
        lens[i] = strlen(argv[i]);
    }
    st = rl2_ovr_command(r, 6, argv, lens, "audit XRANGE", reply, err);
    if (st == RL2_OK && (*reply)->type != REDIS_REPLY_ARRAY) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis %s: XRANGE %s: %.160s",
                         r->name, r->audit_key,
                         (*reply)->type == REDIS_REPLY_ERROR
                             ? (*reply)->str
                             : "unexpected reply");
        rl2_redis_reply_free(*reply);
        *reply = NULL;
    }
    return st;
}

/* ---- attaching -------------------------------------------------------- */

/* "{NAME}", "{NAME}:version", "{NAME}:epoch" and the audit stream
 * "{NAME}:audit", the slot of all four. */
static rl2_status_t
rl2_ovr_keys(rl2_ovr_redis_t *r, const char *name, rl2_err_t *err)
{
    if (name == NULL || name[0] == '\0') {
        name = RL2_REDIS_OVERRIDES_KEY_DEFAULT;
    }
    if (strlen(name) >= RL2_REDIS_OVR_KEY_MAX || strpbrk(name, "{}") != NULL) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "overrides: key \"%.60s\": at most %d bytes, "
                           "without '{' or '}'",
                           name, RL2_REDIS_OVR_KEY_MAX - 1);
    }
    snprintf(r->key, sizeof(r->key), "{%s}", name);
    snprintf(r->version_key, sizeof(r->version_key), "{%s}:version", name);
    snprintf(r->epoch_key, sizeof(r->epoch_key), "{%s}:epoch", name);
    snprintf(r->audit_key, sizeof(r->audit_key), "{%s}:audit", name);
    r->slot = rl2_redis_key_slot(r->key, strlen(r->key));
    return RL2_OK;
}

/* Connections of its own to rc->conf's server. */
static rl2_status_t
rl2_ovr_connections(rl2_ovr_redis_t *r, const rl2_redis_conf_t *conf,
                    rl2_err_t *err)
{
    rl2_status_t st;

    if (conf == NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "overrides: a Redis side needs a server");
    }
    st = conf->n_seeds > 0 ? rl2_redis_cluster_create(conf, &r->cluster, err)
                           : rl2_redis_pool_create(conf, &r->pool, err);
    r->owned = st == RL2_OK;
    return st;
}

rl2_status_t
rl2_ovr_redis_new(const rl2_ovr_redis_conf_t *rc, rl2_ovr_redis_t **out,
                  rl2_err_t *err)
{
    rl2_ovr_redis_t *r;
    rl2_status_t     st;

    *out = NULL;
    if ((r = calloc(1, sizeof(*r))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "overrides: out of memory");
    }
    r->pool = rc->pool;
    r->cluster = rc->cluster;
    r->circuit = rc->circuit;
    r->alert = rc->alert;
    st = rl2_ovr_keys(r, rc->key, err);
    if (st == RL2_OK && r->pool == NULL && r->cluster == NULL) {
        st = rl2_ovr_connections(r, rc->conf, err);
    }
    if (st != RL2_OK) {
        rl2_ovr_redis_free(r);
        return st;
    }
    r->name = r->cluster != NULL ? rl2_redis_cluster_name(r->cluster)
                                 : rl2_redis_pool_name(r->pool);
    *out = r;
    return RL2_OK;
}

rl2_status_t
rl2_ovr_redis_attach(rl2_overrides_t *t, const rl2_ovr_redis_conf_t *rc,
                     rl2_err_t *err)
{
    rl2_ovr_redis_t *r;
    rl2_status_t     st;

    if (t->redis != NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "overrides %s: already has a Redis side", t->name);
    }
    if ((st = rl2_ovr_redis_new(rc, &r, err)) != RL2_OK) {
        return st;
    }
    t->redis = r;
    t->sync_due_us = &t->shm->next_sync_us;
    return RL2_OK;
}

rl2_status_t
rl2_overrides_redis_attach(rl2_overrides_t *t, const rl2_redis_conf_t *conf,
                           rl2_err_t *err)
{
    rl2_ovr_redis_conf_t rc = { .key = conf->overrides_key, .conf = conf };

    return rl2_ovr_redis_attach(t, &rc, err);
}

rl2_status_t
rl2_overrides_redis_bump(const rl2_redis_conf_t *conf, const rl2_clock_t *now,
                         rl2_err_t *err)
{
    rl2_ovr_redis_conf_t rc = { .key = conf->overrides_key, .conf = conf };
    const char          *argv[RL2_OVR_EVAL_ARGS + 1];
    size_t               len[RL2_OVR_EVAL_ARGS + 1];
    char                 num[24];
    rl2_ovr_redis_t     *r;
    redisReply          *reply;
    rl2_ovr_at_t         at;
    rl2_status_t         st;

    if ((st = rl2_ovr_redis_new(&rc, &r, err)) != RL2_OK) {
        return st;
    }
    snprintf(num, sizeof(num), "%" PRId64, now->wall_us);
    argv[RL2_OVR_EVAL_ARGS] = num;
    len[RL2_OVR_EVAL_ARGS] = strlen(num);
    st = rl2_ovr_eval(r, rl2_ovr_lua_bump, RL2_OVR_EVAL_ARGS + 1, argv, len,
                      "overrides bump", NULL, &reply, err);
    if (st == RL2_OK) {
        if (rl2_ovr_at_of(reply, 2, &at) != 0) {
            st = rl2_ovr_unexpected(r, "overrides bump", err);
        }
        rl2_redis_reply_free(reply);
    }
    rl2_ovr_redis_free(r);
    return st;
}

void
rl2_ovr_redis_free(rl2_ovr_redis_t *r)
{
    if (r == NULL) {
        return;
    }
    if (r->owned) {
        rl2_redis_cluster_destroy(r->cluster);
        rl2_redis_pool_destroy(r->pool);
    }
    free(r);
}
