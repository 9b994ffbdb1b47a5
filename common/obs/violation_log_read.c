/*
 * violation_log_read.c -- reading the violation log back, for operators'
 * tools: the ring (attached read-only, whatever its capacity) and the
 * Redis stream (XRANGE).  Nothing here runs in a web server.
 *
 * Stream entries have the fields t (µs since the epoch), rule, limit,
 * tier, client, method, path, lim (the limit's count), win (its window,
 * µs), skipped, variant (the rule's variant, or empty) and challenger
 * ("1": a challenger's would-refuse), count (the units in use under the
 * refusing limit) and ua (the User-Agent), written by rl2_vlog_record().
 * An entry written before count and ua were has neither: it is read with
 * count -1 and an empty user agent, as an entry of a ring of version 2.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "violation_log_internal.h"
#include "redis/redis_internal.h"

typedef struct {
    _Atomic uint64_t    stamp;
    rl2_vlog_entry_v2_t entry;
} rl2_vlog_slot_v2_t;

/* A ring's slot size by its version; 0: a version not read here. */
static size_t
rl2_ring_slot_size(uint32_t version)
{
    return version == RL2_VLOG_VERSION ? sizeof(rl2_vlog_slot_t)
           : version == 2              ? sizeof(rl2_vlog_slot_v2_t)
                                       : 0;
}

/* A version 2 entry as the current layout: no count, no user agent. */
static void
rl2_entry_from_v2(rl2_vlog_entry_t *e, const rl2_vlog_entry_v2_t *o)
{
    memset(e, 0, sizeof(*e));
    e->time_us = o->time_us;
    e->limit = o->limit;
    e->window_us = o->window_us;
    e->skipped = o->skipped;
    memcpy(e->rule, o->rule, sizeof(e->rule));
    memcpy(e->limit_name, o->limit_name, sizeof(e->limit_name));
    memcpy(e->tier, o->tier, sizeof(e->tier));
    memcpy(e->client, o->client, sizeof(e->client));
    memcpy(e->method, o->method, sizeof(e->method));
    memcpy(e->path, o->path, sizeof(e->path));
    memcpy(e->factors, o->factors, sizeof(e->factors));
    memcpy(e->variant, o->variant, sizeof(e->variant));
    e->challenger = o->challenger;
    e->count = -1;
}

/* One text field of a ring entry, terminated and checked again as a
 * stream's are: the ring is only as honest as the processes mapping it
 * (anyone running as the server's user), so a raw control byte, quote or
 * byte above ASCII written into it reaches the reports escaped, and the
 * writer's own escapes are not doubled. */
static void
rl2_entry_text(char *field, size_t size, int flags)
{
    char copy[sizeof(rl2_vlog_entry_t)]; /* larger than any field */

    field[size - 1] = '\0';
    memcpy(copy, field, size);
    rl2_vlog_escape(field, size, copy, flags | RL2_VLOG_ESC_READ);
}

static void
rl2_entry_vet(rl2_vlog_entry_t *e)
{
    rl2_entry_text(e->rule, sizeof(e->rule), 0);
    rl2_entry_text(e->limit_name, sizeof(e->limit_name), 0);
    rl2_entry_text(e->tier, sizeof(e->tier), 0);
    rl2_entry_text(e->client, sizeof(e->client), 0);
    rl2_entry_text(e->method, sizeof(e->method), 0);
    rl2_entry_text(e->path, sizeof(e->path), RL2_VLOG_ESC_PATH);
    rl2_entry_text(e->variant, sizeof(e->variant), 0);
    rl2_entry_text(e->factors, sizeof(e->factors), 0);
    rl2_entry_text(e->user_agent, sizeof(e->user_agent), 0);
}

/* Copy the complete entries, oldest first; a slot being rewritten while
 * we look is left out.  Slots are `slot_size` bytes: a ring of version 2
 * has smaller ones, converted. */
static size_t
rl2_ring_copy(const rl2_vlog_ring_t *ring, uint64_t capacity, size_t slot_size,
              rl2_vlog_entry_t *out)
{
    const char *slots = (const char *)ring->slots;
    uint64_t    head = atomic_load_explicit(&ring->head, memory_order_acquire);
    uint64_t    seq = head > capacity ? head - capacity : 0;
    size_t      n = 0;

    for (; seq < head; seq++) {
        const void             *at = slots + (seq % capacity) * slot_size;
        const _Atomic uint64_t *stamp = at;
        uint64_t                want = 2 * seq + 2;
        rl2_vlog_entry_v2_t     old;

        if (atomic_load_explicit(stamp, memory_order_acquire) != want) {
            continue;
        }
        if (slot_size == sizeof(rl2_vlog_slot_t)) {
            memcpy(&out[n], &((const rl2_vlog_slot_t *)at)->entry,
                   sizeof(out[n]));
        }
        else {
            memcpy(&old, &((const rl2_vlog_slot_v2_t *)at)->entry, sizeof(old));
        }
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(stamp, memory_order_relaxed) != want) {
            continue;
        }
        if (slot_size != sizeof(rl2_vlog_slot_t)) {
            rl2_entry_from_v2(&out[n], &old);
        }
        rl2_entry_vet(&out[n]);
        n++;
    }
    return n;
}

/* Map the ring read-only; *slot_size is its version's. */
static rl2_status_t
rl2_ring_map(const char *name, const rl2_vlog_ring_t **ring, size_t *size,
             size_t *slot_size, rl2_err_t *err)
{
    struct stat st;
    int         fd = shm_open(name, O_RDONLY, 0);
    void       *p;

    if (fd < 0) {
        return rl2_err_set(err, RL2_ERR_SYS, "violation log %s: %s", name,
                           strerror(errno));
    }
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < sizeof(rl2_vlog_ring_t)) {
        close(fd);
        return rl2_err_set(err, RL2_ERR_SYS,
                           "violation log %s: not a ring "
                           "of a known version",
                           name);
    }
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        return rl2_err_set(err, RL2_ERR_SYS, "violation log %s: mmap: %s", name,
                           strerror(errno));
    }
    *ring = p;
    *size = (size_t)st.st_size;
    *slot_size = rl2_ring_slot_size((*ring)->hdr.version);
    if (atomic_load_explicit(&(*ring)->hdr.magic, memory_order_acquire)
            != RL2_VLOG_MAGIC
        || *slot_size == 0 || (*ring)->hdr.size != *size
        || (*size - sizeof(rl2_vlog_ring_t)) % *slot_size != 0) {
        munmap(p, *size);
        return rl2_err_set(err, RL2_ERR_SYS,
                           "violation log %s: not a ring "
                           "of a known version",
                           name);
    }
    return RL2_OK;
}

rl2_status_t
rl2_vlog_ring_read(const char *zone_name, rl2_vlog_entry_t **out, size_t *n,
                   rl2_vlog_stats_t *stats, rl2_err_t *err)
{
    char                   name[RL2_SHM_NAME_MAX + 8];
    const rl2_vlog_ring_t *ring = NULL;
    uint64_t               capacity;
    rl2_status_t           st;
    size_t                 size = 0, slot_size = 0;

    *out = NULL;
    *n = 0;
    if (rl2_vlog_ring_name(zone_name, name, sizeof(name)) != 0) {
        return rl2_err_set(err, RL2_ERR_INVALID, "zone name too long");
    }
    if ((st = rl2_ring_map(name, &ring, &size, &slot_size, err)) != RL2_OK) {
        return st;
    }
    capacity = (size - sizeof(rl2_vlog_ring_t)) / slot_size;
    if (capacity > 0 && (*out = malloc(capacity * sizeof(**out))) == NULL) {
        munmap((void *)ring, size);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    *n = capacity > 0 ? rl2_ring_copy(ring, capacity, slot_size, *out) : 0;
    stats->capacity = capacity;
    stats->written = atomic_load(&ring->head);
    stats->to_redis = atomic_load(&ring->to_redis);
    stats->skipped = atomic_load(&ring->skipped);
    stats->redis_errors = atomic_load(&ring->redis_errors);
    munmap((void *)ring, size);
    return RL2_OK;
}

/* ---- the stream ---- */

/* A text field of the stream: escaped by its writer, so checked again
 * without doubling its escapes (anyone with the stream's key can add
 * entries). */
static void
rl2_field_text(char *dst, size_t size, const redisReply *v)
{
    rl2_vlog_escape(dst, size, v->type == REDIS_REPLY_STRING ? v->str : "-",
                    RL2_VLOG_ESC_READ);
}

static int64_t
rl2_field_num(const redisReply *v)
{
    return v->type == REDIS_REPLY_STRING ? strtoll(v->str, NULL, 10) : 0;
}

static void
rl2_stream_field(rl2_vlog_entry_t *e, const char *name, const redisReply *v)
{
    if (strcmp(name, "t") == 0) {
        e->time_us = rl2_field_num(v);
    }
    else if (strcmp(name, "lim") == 0) {
        e->limit = rl2_field_num(v);
    }
    else if (strcmp(name, "win") == 0) {
        e->window_us = rl2_field_num(v);
    }
    else if (strcmp(name, "skipped") == 0) {
        e->skipped = (uint64_t)rl2_field_num(v);
    }
    else if (strcmp(name, "rule") == 0) {
        rl2_field_text(e->rule, sizeof(e->rule), v);
    }
    else if (strcmp(name, "limit") == 0) {
        rl2_field_text(e->limit_name, sizeof(e->limit_name), v);
    }
    else if (strcmp(name, "tier") == 0) {
        rl2_field_text(e->tier, sizeof(e->tier), v);
    }
    else if (strcmp(name, "client") == 0) {
        rl2_field_text(e->client, sizeof(e->client), v);
    }
    else if (strcmp(name, "factors") == 0 && v->type == REDIS_REPLY_STRING) {
        rl2_vlog_escape(e->factors, sizeof(e->factors), v->str,
                        RL2_VLOG_ESC_READ);
    }
    else if (strcmp(name, "method") == 0) {
        rl2_field_text(e->method, sizeof(e->method), v);
    }
    else if (strcmp(name, "variant") == 0) {
        rl2_field_text(e->variant, sizeof(e->variant), v);
    }
    else if (strcmp(name, "challenger") == 0) {
        e->challenger = rl2_field_num(v) != 0;
    }
    else if (strcmp(name, "count") == 0) {
        e->count = v->type == REDIS_REPLY_STRING ? rl2_field_num(v) : -1;
    }
    else if (strcmp(name, "ua") == 0 && v->type == REDIS_REPLY_STRING) {
        rl2_vlog_escape(e->user_agent, sizeof(e->user_agent), v->str,
                        RL2_VLOG_ESC_READ);
    }
    else if (strcmp(name, "path") == 0) {
        rl2_vlog_escape(e->path, sizeof(e->path),
                        v->type == REDIS_REPLY_STRING ? v->str : "-",
                        RL2_VLOG_ESC_PATH | RL2_VLOG_ESC_READ);
    }
}

/* One XRANGE item: [id, [field, value, ...]]; 0 when malformed. */
static int
rl2_stream_entry(const redisReply *item, rl2_vlog_entry_t *e)
{
    const redisReply *fv;

    if (item->type != REDIS_REPLY_ARRAY || item->elements != 2
        || item->element[1]->type != REDIS_REPLY_ARRAY) {
        return 0;
    }
    fv = item->element[1];
    memset(e, 0, sizeof(*e));
    e->count = -1; /* an entry written before count was */
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        if (fv->element[i]->type == REDIS_REPLY_STRING) {
            rl2_stream_field(e, fv->element[i]->str, fv->element[i + 1]);
        }
    }
    return 1;
}

rl2_status_t
rl2_vlog_stream_read(const rl2_redis_conf_t *redis, const char *stream,
                     size_t max, rl2_vlog_entry_t **out, size_t *n,
                     rl2_err_t *err)
{
    char              count[24];
    const char       *argv[6] = { "XRANGE", stream, "-", "+", "COUNT", count };
    size_t            len[6];
    rl2_redis_conn_t *conn;
    redisReply       *r;
    rl2_status_t      st;

    *out = NULL;
    *n = 0;
    snprintf(count, sizeof(count), "%zu", max);
    for (int i = 0; i < 6; i++) {
        len[i] = strlen(argv[i]);
    }
    if ((st = rl2_redis_conn_open(redis, &conn, err)) != RL2_OK) {
        return st;
    }
    st = rl2_redis_command(conn, 6, argv, len, "XRANGE", &r, err);
    rl2_redis_conn_close(conn);
    if (st != RL2_OK) {
        return st;
    }
    if (r->type != REDIS_REPLY_ARRAY) {
        st = rl2_err_set(err, RL2_ERR_STORE, "redis XRANGE %s: %.100s", stream,
                         r->type == REDIS_REPLY_ERROR ? r->str
                                                      : "unexpected reply");
    }
    else if (r->elements > 0
             && (*out = calloc(r->elements, sizeof(**out))) == NULL) {
        st = rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; st == RL2_OK && i < r->elements; i++) {
        *n += (size_t)rl2_stream_entry(r->element[i], &(*out)[*n]);
    }
    rl2_redis_reply_free(r);
    if (st != RL2_OK) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return st;
}
