/*
 * violation_log_internal.h -- the layout of the violation log's ring in
 * shared memory (private to violation_log.c and violation_log_read.c).
 *
 * The object is rl2_vlog_ring_t followed by `capacity` slots; the
 * capacity is implied by the object's size, which the small-object header
 * records and checks on attach.  A slot's stamp is 0 (never written),
 * 2*seq+1 (entry seq being written) or 2*seq+2 (entry seq complete).
 */
#ifndef RL2_VIOLATION_LOG_INTERNAL_H
#define RL2_VIOLATION_LOG_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/violation_log.h"
#include "base/shm_obj_internal.h"

#define RL2_VLOG_MAGIC   0x524c3256u    /* "RL2V" */
#define RL2_VLOG_VERSION 1u

/* The sampling window word: second << BITS | entries in that second. */
#define RL2_VLOG_WINDOW_BITS 20
#define RL2_VLOG_WINDOW_MASK ((UINT64_C(1) << RL2_VLOG_WINDOW_BITS) - 1)
_Static_assert(RL2_VLOG_RATE_MAX <= RL2_VLOG_WINDOW_MASK,
               "the rate must fit the window word");

typedef struct {
    _Atomic uint64_t stamp;
    rl2_vlog_entry_t entry;
} rl2_vlog_slot_t;

typedef struct {
    rl2_shm_hdr_t    hdr;
    _Atomic uint64_t head;          /* entries ever claimed */
    _Atomic uint64_t window;        /* sampling, see above */
    _Atomic uint64_t pending;       /* skipped since the last entry */
    _Atomic uint64_t skipped;       /* skipped in all */
    _Atomic uint64_t to_redis;
    _Atomic uint64_t redis_errors;
    rl2_vlog_slot_t  slots[];
} rl2_vlog_ring_t;

static inline size_t
rl2_vlog_ring_bytes(uint64_t capacity)
{
    return sizeof(rl2_vlog_ring_t) + (size_t)capacity
                                     * sizeof(rl2_vlog_slot_t);
}

#endif /* RL2_VIOLATION_LOG_INTERNAL_H */
