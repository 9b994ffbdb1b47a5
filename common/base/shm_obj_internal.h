/*
 * shm_obj_internal.h -- small fixed-size named shared memory objects
 * (private to the core): the circuit breaker's state (failover.c) and the
 * alert rate limits (alert.c).
 *
 * Owns creating, attaching to, validating and replacing such an object.
 * Unlike a local zone (zone_shm.c) these objects are a few hundred
 * bytes whose payload starts as all zero bytes, which is a valid initial
 * state (circuit closed, no alert sent yet): the creator only writes the
 * header, so creation takes microseconds and attachers can poll for it.
 *
 * Every object starts with rl2_shm_hdr_t.  An object whose header does not
 * match what the opener asks for (another build, another layout, a creator
 * that died before publishing) is stale: it is unlinked and created anew.
 * Processes that still map the stale one keep it until they close it.
 */
#ifndef RL2_SHM_OBJ_INTERNAL_H
#define RL2_SHM_OBJ_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/status.h"

/* State shared between processes is only ever touched through lock-free,
 * and so address-free, atomics. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2,
               "shared memory needs address-free 32- and 64-bit atomics");

typedef struct {
    _Atomic uint32_t magic;   /* stored last by the creator (release) */
    uint32_t         version; /* layout version of the payload */
    uint64_t         size;    /* bytes of the whole object, header included */
} rl2_shm_hdr_t;

/* Longest object name, as for zones: '/' then up to 199 characters. */
#define RL2_SHM_NAME_MAX 200

/* Create or attach to the object `name` of `size` bytes (header included)
 * with this magic and version.  mode is the permission of a new object.
 * On success *out is the mapping, released by rl2_shm_obj_close(). */
rl2_status_t rl2_shm_obj_open(const char *name, size_t size, uint32_t magic,
                              uint32_t version, unsigned mode, void **out,
                              rl2_err_t *err);

/* As rl2_shm_obj_open, and *fd an open file (O_RDWR, close-on-exec) of
 * the very object mapped, for a caller that locks it: one opened again
 * by name could be another object by then. */
rl2_status_t rl2_shm_obj_open_fd(const char *name, size_t size, uint32_t magic,
                                 uint32_t version, unsigned mode, void **out,
                                 int *fd, rl2_err_t *err);

void rl2_shm_obj_close(void *base, size_t size);

/* Remove the name; mappings stay valid until closed. */
rl2_status_t rl2_shm_obj_unlink(const char *name, rl2_err_t *err);

/* ---- shared with the local zone (zone_shm.c) ---- */

/* "KIND NAME: WHAT: strerror(errnum)" as an RL2_ERR_SYS. */
rl2_status_t rl2_shm_sys_err(rl2_err_t *err, const char *kind, const char *name,
                             const char *what, int errnum);

/* A POSIX shared memory name: '/' then 1..max-1 characters without '/'
 * (RL2_ERR_INVALID naming KIND otherwise). */
rl2_status_t rl2_shm_name_check(const char *kind, const char *name, size_t max,
                                rl2_err_t *err);

/* Where glibc keeps named shared memory, for messages. */
#define RL2_SHM_DIR "/dev/shm"

/* Open the existing object `name` (O_RDWR) and vet it before anything is
 * read from it: it must be a regular file owned by this process's
 * effective user or by root, with no permission bit beyond `mode`.
 * Anyone may create names in /dev/shm, so an object someone else made
 * (or may write) could feed us a hostile image or watch and steer the
 * state; it is refused, never unlinked, with a message that says how to
 * clear it.  RL2_OK with *fd >= 0 (the caller closes it), or with *fd ==
 * -1 when the name does not exist (ENOENT); else an error naming KIND
 * and the object. */
rl2_status_t rl2_shm_open_vetted(const char *kind, const char *name,
                                 unsigned mode, int *fd, rl2_err_t *err);

/* Unlink name only while it still names the object open on fd: another
 * process may already have replaced the stale object with a good one,
 * which must not be unlinked in turn.  The flock on fd makes "check, then
 * unlink" one step among the processes judging the same stale object, so
 * only the first one unlinks. */
void rl2_shm_unlink_if_same(const char *name, int fd);

#endif /* RL2_SHM_OBJ_INTERNAL_H */
