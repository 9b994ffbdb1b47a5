/*
 * violation_log.c -- writing the violation log (violation_log.h): the
 * settings, the ring in shared memory, sampling, and XADD to Redis.
 *
 * The ring is a small-object layout (shm_obj_internal.h): a header with
 * the sampling window and counters, then `capacity` slots.  A writer
 * claims entry number `seq` with one atomic add on `head`, marks its slot
 * busy (stamp 2*seq+1), fills it and publishes it (stamp 2*seq+2,
 * release).  A reader takes a slot only when its stamp says "entry seq,
 * complete" before and after copying it, so a slot being rewritten is
 * skipped rather than read torn.  No lock: writers in every process of
 * the host proceed at once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "ratelimit2/violation_log.h"
#include "base/shm_obj_internal.h"
#include "violation_log_internal.h"
#include "store/store_internal.h"
#include "redis/redis_internal.h"
#include "control/control_internal.h"

_Static_assert(RL2_FACTORS_TEXT_MAX <= RL2_VLOG_FACTORS_MAX,
               "an entry holds every factor");

struct rl2_vlog {
    rl2_vlog_ring_t  *ring;
    size_t            ring_size; /* bytes mapped */
    uint64_t          capacity;
    uint32_t          rate;
    char              stream[RL2_VLOG_STREAM_MAX];
    char              maxlen[24];
    rl2_redis_pool_t *pool;    /* borrowed; NULL: local ring only */
    rl2_circuit_t    *circuit; /* borrowed, may be NULL */
};

rl2_status_t
rl2_vlog_conf_resolve(const rl2_vlog_conf_t *conf, rl2_vlog_conf_t *out,
                      rl2_err_t *err)
{
    *out = *conf;
    if (out->rate == 0) {
        out->rate = RL2_VLOG_RATE_DEFAULT;
    }
    if (out->capacity == 0) {
        out->capacity = RL2_VLOG_CAPACITY_DEFAULT;
    }
    if (out->stream == NULL) {
        out->stream = RL2_VLOG_STREAM_DEFAULT;
    }
    if (out->rate > RL2_VLOG_RATE_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "violation_log: rate must "
                           "be from 1 to %u",
                           RL2_VLOG_RATE_MAX);
    }
    if (out->capacity < RL2_VLOG_CAPACITY_MIN
        || out->capacity > RL2_VLOG_CAPACITY_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "violation_log: capacity "
                           "must be from %u to %u",
                           RL2_VLOG_CAPACITY_MIN, RL2_VLOG_CAPACITY_MAX);
    }
    if (out->stream[0] == '\0' || strlen(out->stream) >= RL2_VLOG_STREAM_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "violation_log: stream "
                           "must be 1 to %d bytes",
                           RL2_VLOG_STREAM_MAX - 1);
    }
    return RL2_OK;
}

int
rl2_vlog_ring_name(const char *zone_name, char *out, size_t size)
{
    int n = snprintf(out, size, "%s%s", zone_name, RL2_VLOG_SUFFIX);

    return n < 0 || (size_t)n >= size || n > RL2_SHM_NAME_MAX ? -1 : 0;
}

rl2_status_t
rl2_vlog_open(const rl2_vlog_conf_t *conf, const char *zone_name, unsigned mode,
              rl2_redis_pool_t *redis, rl2_circuit_t *circuit, rl2_vlog_t **out,
              rl2_err_t *err)
{
    char            name[RL2_SHM_NAME_MAX + 8];
    rl2_vlog_conf_t c;
    rl2_vlog_t     *log;
    rl2_status_t    st;
    void           *base = NULL;

    *out = NULL;
    if ((st = rl2_vlog_conf_resolve(conf, &c, err)) != RL2_OK || c.disabled) {
        return st;
    }
    if (rl2_vlog_ring_name(zone_name, name, sizeof(name)) != 0) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "violation log: zone name "
                           "too long for \"%s\"",
                           RL2_VLOG_SUFFIX);
    }
    if ((log = calloc(1, sizeof(*log))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    log->capacity = c.capacity;
    log->rate = c.rate;
    log->ring_size = rl2_vlog_ring_bytes(c.capacity);
    snprintf(log->stream, sizeof(log->stream), "%s", c.stream);
    snprintf(log->maxlen, sizeof(log->maxlen), "%u", c.capacity);
    log->circuit = circuit;
    log->pool = redis;
    st = rl2_shm_obj_open(name, log->ring_size, RL2_VLOG_MAGIC,
                          RL2_VLOG_VERSION, mode, &base, err);
    if (st != RL2_OK) {
        free(log);
        return st;
    }
    log->ring = base;
    *out = log;
    return RL2_OK;
}

void
rl2_vlog_close(rl2_vlog_t *log)
{
    if (log == NULL) {
        return;
    }
    rl2_shm_obj_close(log->ring, log->ring_size);
    free(log);
}

static void
rl2_hex_byte(char *out, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";

    out[0] = '\\';
    out[1] = 'x';
    out[2] = hex[c >> 4];
    out[3] = hex[c & 15];
}

void
rl2_vlog_escape(char *dst, size_t size, const char *src, int flags)
{
    int    path = flags & RL2_VLOG_ESC_PATH;
    int    keep_bs = flags & RL2_VLOG_ESC_READ;
    size_t o = 0;

    if (size == 0) {
        return;
    }
    for (const unsigned char *s = (const unsigned char *)src;
         s != NULL && *s != '\0' && !(path && *s == '?'); s++) {
        int esc =
            *s < 0x20 || *s >= 0x7f || (*s == '\\' && !keep_bs) || *s == '"';
        size_t need = esc ? 4 : 1;

        if (o + need >= size) {
            break;
        }
        if (esc) {
            rl2_hex_byte(dst + o, *s);
        }
        else {
            dst[o] = (char)*s;
        }
        o += need;
    }
    dst[o] = '\0';
}

/* ---- sampling ---- */

/* May one more entry be written in second `sec`?  The window word holds
 * the second in its high bits and the entries written in it below. */
static int
rl2_vlog_admit(rl2_vlog_ring_t *ring, uint64_t sec, uint32_t rate)
{
    uint64_t w = atomic_load_explicit(&ring->window, memory_order_relaxed);
    uint64_t nw;

    for (;;) {
        if ((w >> RL2_VLOG_WINDOW_BITS) != sec) {
            nw = (sec << RL2_VLOG_WINDOW_BITS) | 1;
        }
        else if ((w & RL2_VLOG_WINDOW_MASK) < rate) {
            nw = w + 1;
        }
        else {
            return 0;
        }
        if (atomic_compare_exchange_weak_explicit(&ring->window, &w, nw,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            return 1;
        }
    }
}

/* ---- the entry ---- */

/* The layer an entry tells of: the shown one, or for a challenger's
 * entry its first refusing layer. */
static const rl2_layer_t *
rl2_vlog_layer(const rl2_verdict_t *v, int challenger)
{
    if (!challenger) {
        return v->shown >= 0 ? &v->layers[v->shown] : NULL;
    }
    for (size_t i = 0; i < v->n_layers; i++) {
        if (v->layers[i].challenger && v->layers[i].refused) {
            return &v->layers[i];
        }
    }
    return NULL;
}

/* What a request tells of itself: a hostile client's bytes, escaped
 * into the entry's bounded fields. */
typedef struct {
    const char *method;
    const char *path;
    const char *user_agent;
} rl2_vlog_req_t;

/* The units in use under the layer's limit: as the 429 body's
 * current_usage (headers.c). */
static int64_t
rl2_vlog_count(const rl2_layer_t *l)
{
    int64_t used = l->result.limit - l->result.remaining;

    return used > 0 ? used : 0;
}

static void
rl2_vlog_fill(rl2_vlog_entry_t *e, const rl2_policy_t *policy,
              const rl2_verdict_t *v, int challenger, const rl2_vlog_req_t *q,
              const rl2_clock_t *now)
{
    const rl2_layer_t *l = rl2_vlog_layer(v, challenger);

    memset(e, 0, sizeof(*e));
    e->challenger = (uint8_t)challenger;
    e->count = l != NULL ? rl2_vlog_count(l) : -1;
    if (l != NULL && l->variant != 0) {
        rl2_vlog_escape(e->variant, sizeof(e->variant),
                        l->rule->variants[l->variant - 1].name, 0);
    }
    e->time_us = now->wall_us;
    if (l != NULL) {
        e->limit = l->limit->algo.limit;
        e->window_us = l->limit->algo.window_us;
        rl2_vlog_escape(e->rule, sizeof(e->rule),
                        l->rule != NULL ? l->rule->name : "-", 0);
        rl2_vlog_escape(e->limit_name, sizeof(e->limit_name), l->limit->name,
                        0);
        rl2_vlog_escape(e->client, sizeof(e->client), l->client, 0);
    }
    else {
        snprintf(e->rule, sizeof(e->rule), "-");
        snprintf(e->limit_name, sizeof(e->limit_name), "-");
        rl2_vlog_escape(e->client, sizeof(e->client), v->client_ip, 0);
    }
    rl2_vlog_escape(e->tier, sizeof(e->tier),
                    v->tier >= 0 && (size_t)v->tier < policy->n_tiers
                        ? policy->tiers[v->tier].name
                        : "-",
                    0);
    rl2_vlog_escape(e->method, sizeof(e->method),
                    q->method != NULL ? q->method : "-", 0);
    rl2_vlog_escape(e->path, sizeof(e->path), q->path != NULL ? q->path : "-",
                    1);
    rl2_vlog_escape(e->user_agent, sizeof(e->user_agent), q->user_agent, 0);
    if (v->factors_set) {
        rl2_factors_format(v->factor_ppm, e->factors, sizeof(e->factors));
    }
}

static void
rl2_vlog_ring_put(rl2_vlog_t *log, const rl2_vlog_entry_t *e)
{
    rl2_vlog_ring_t *ring = log->ring;
    uint64_t         seq =
        atomic_fetch_add_explicit(&ring->head, 1, memory_order_relaxed);
    rl2_vlog_slot_t *slot = &ring->slots[seq % log->capacity];

    atomic_store_explicit(&slot->stamp, 2 * seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(&slot->entry, e, sizeof(*e));
    atomic_store_explicit(&slot->stamp, 2 * seq + 2, memory_order_release);
}

/* XADD stream MAXLEN ~ capacity * t .. rule .. (see violation_log_read.c
 * for the fields) on this thread's connection.  The decision has
 * usually opened it; a thread whose refusals the over-limit cache
 * answered (no Redis call) opens it here, once, while the circuit is
 * closed: else a flood refused on the host would be missing from the
 * fleet's stream.  RL2_OK only when Redis answered with an id. */
static rl2_status_t
rl2_vlog_xadd(rl2_vlog_t *log, const rl2_vlog_entry_t *e, rl2_err_t *err)
{
    char        t[24], lim[24], win[24], skip[24], count[24];
    const char *args[36] = {
        "XADD",      log->stream, "MAXLEN",     "~",
        log->maxlen, "*",         "t",          t,
        "rule",      e->rule,     "limit",      e->limit_name,
        "tier",      e->tier,     "client",     e->client,
        "method",    e->method,   "path",       e->path,
        "lim",       lim,         "win",        win,
        "skipped",   skip,        "factors",    e->factors,
        "variant",   e->variant,  "challenger", e->challenger ? "1" : "0",
        "count",     count,       "ua",         e->user_agent
    };
    size_t            len[36];
    rl2_redis_conn_t *conn;
    redisReply       *reply;
    rl2_status_t      st;
    int               ok;

    snprintf(t, sizeof(t), "%" PRId64, e->time_us);
    snprintf(lim, sizeof(lim), "%" PRId64, e->limit);
    snprintf(win, sizeof(win), "%" PRId64, e->window_us);
    snprintf(skip, sizeof(skip), "%" PRIu64, e->skipped);
    snprintf(count, sizeof(count), "%" PRId64, e->count);
    for (int i = 0; i < 36; i++) {
        len[i] = strlen(args[i]);
    }
    if (!rl2_redis_pool_cached(log->pool, &conn)
        && (st = rl2_redis_pool_get(log->pool, &conn, err)) != RL2_OK) {
        return st;
    }
    if ((st = rl2_redis_command(conn, 36, args, len, "XADD", &reply, err))
        != RL2_OK) {
        return st;
    }
    ok = reply->type == REDIS_REPLY_STRING;
    if (!ok) {
        rl2_err_set(err, RL2_ERR_STORE, "redis XADD %s: %.100s", log->stream,
                    reply->type == REDIS_REPLY_ERROR ? reply->str
                                                     : "unexpected reply");
    }
    rl2_redis_reply_free(reply);
    return ok ? RL2_OK : RL2_ERR_STORE;
}

/* One entry: the refusal, or (challenger) what a challenger would have
 * refused. */
static void
rl2_vlog_put(rl2_vlog_t *log, const rl2_policy_t *policy,
             const rl2_verdict_t *v, int challenger, const rl2_vlog_req_t *q,
             const rl2_clock_t *now)
{
    rl2_vlog_ring_t *ring = log->ring;
    rl2_vlog_entry_t e;
    rl2_err_t        err;

    if (!rl2_vlog_admit(ring, (uint64_t)(now->wall_us / RL2_US_PER_S),
                        log->rate)) {
        atomic_fetch_add_explicit(&ring->pending, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&ring->skipped, 1, memory_order_relaxed);
        return;
    }
    rl2_vlog_fill(&e, policy, v, challenger, q, now);
    e.skipped =
        atomic_exchange_explicit(&ring->pending, 0, memory_order_relaxed);
    if (log->pool != NULL
        && (log->circuit == NULL
            || rl2_circuit_state(log->circuit) == RL2_CIRCUIT_CLOSED)) {
        if (rl2_vlog_xadd(log, &e, &err) == RL2_OK) {
            atomic_fetch_add_explicit(&ring->to_redis, 1, memory_order_relaxed);
            return;
        }
        atomic_fetch_add_explicit(&ring->redis_errors, 1, memory_order_relaxed);
    }
    rl2_vlog_ring_put(log, &e);
}

void
rl2_vlog_record(rl2_vlog_t *log, const rl2_policy_t *policy,
                const rl2_verdict_t *v, const char *method, const char *path,
                const char *user_agent, const rl2_clock_t *now)
{
    rl2_vlog_req_t q = { method, path, user_agent };

    if (log == NULL) {
        return;
    }
    if (v->outcome == RL2_OUTCOME_DENY) {
        rl2_vlog_put(log, policy, v, 0, &q, now);
    }
    if (v->challenger_denied) {
        rl2_vlog_put(log, policy, v, 1, &q, now);
    }
}
