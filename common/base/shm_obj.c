/*
 * shm_obj.c -- small named shared memory objects: create, attach,
 * validate, replace when stale (see shm_obj_internal.h).
 *
 * Creation: shm_open(O_CREAT | O_EXCL) elects one creator, which sizes the
 * object (ftruncate zero-fills it), writes the header and stores the magic
 * last (release).  An attacher polls, for at most SHM_WAIT_MS, until the
 * object has its size and its magic (acquire); one that never gets there,
 * or whose header describes another layout, is stale and replaced.  The
 * wait is short because a creator does no more than those few steps.
 *
 * An object that already exists is vetted before it is read, here and
 * for the local zone (rl2_shm_open_vetted): anyone may create a name in
 * /dev/shm, and an object another user made or may write is refused.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ratelimit2/clock.h"
#include "shm_obj_internal.h"
#include "base_internal.h"

#define SHM_OPEN_ATTEMPTS 8
#define SHM_WAIT_MS \
    1000 /* how long an attacher waits for a \
            creator to publish */

rl2_status_t
rl2_shm_sys_err(rl2_err_t *err, const char *kind, const char *name,
                const char *what, int errnum)
{
    return rl2_err_set(err, RL2_ERR_SYS, "%s %s: %s: %s", kind, name, what,
                       strerror(errnum));
}

rl2_status_t
rl2_shm_name_check(const char *kind, const char *name, size_t max,
                   rl2_err_t *err)
{
    size_t len;

    if (name == NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID, "%s name is NULL", kind);
    }
    len = strlen(name);
    /* POSIX leaves names with a second slash implementation-defined. */
    if (len < 2 || len > max || name[0] != '/'
        || strchr(name + 1, '/') != NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "%s %.*s: a name is '/' then 1..%d characters "
                           "without '/'",
                           kind, (int)max, name, (int)max - 1);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_shm_obj_err(rl2_err_t *err, const char *name, const char *what, int errnum)
{
    return rl2_shm_sys_err(err, "shm", name, what, errnum);
}

/* Root is trusted as well as ourselves: Apache makes its objects as root
 * before its children drop to their user, and an object only root could
 * have made is not an attacker's.  Any other owner could have planted the
 * object before we started, and keeps the right to chmod it later. */
static rl2_status_t
rl2_shm_vet(const char *kind, const char *name, int fd, unsigned mode,
            rl2_err_t *err)
{
    struct stat st;
    uid_t       self = geteuid();

    if (fstat(fd, &st) != 0) {
        return rl2_shm_sys_err(err, kind, name, "fstat", errno);
    }
    if (!S_ISREG(st.st_mode)) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "%s %s: refusing " RL2_SHM_DIR "%s: not a "
                           "regular file; remove it",
                           kind, name, name);
    }
    if (st.st_uid != self && st.st_uid != 0) {
        char mine[32] = "";

        if (self != 0) {
            snprintf(mine, sizeof(mine), "uid %lu or ", (unsigned long)self);
        }
        return rl2_err_set(err, RL2_ERR_STORE,
                           "%s %s: refusing " RL2_SHM_DIR "%s, owned by uid "
                           "%lu, not by %sroot: remove it (rm " RL2_SHM_DIR
                           "%s), and open it only from processes of one "
                           "user",
                           kind, name, name, (unsigned long)st.st_uid, mine,
                           name);
    }
    if ((st.st_mode & 07777 & ~(mode_t)mode) != 0) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "%s %s: refusing " RL2_SHM_DIR "%s, mode %04o "
                           "(at most %04o: other users could read or change "
                           "it): remove it (rm " RL2_SHM_DIR "%s)",
                           kind, name, name, (unsigned)(st.st_mode & 07777),
                           mode, name);
    }
    return RL2_OK;
}

rl2_status_t
rl2_shm_open_vetted(const char *kind, const char *name, unsigned mode, int *fd,
                    rl2_err_t *err)
{
    rl2_status_t st;

    *fd = shm_open(name, O_RDWR, 0);
    if (*fd < 0) {
        if (errno == ENOENT) {
            return RL2_OK;
        }
        if (errno == EACCES) {
            return rl2_err_set(err, RL2_ERR_SYS,
                               "%s %s: " RL2_SHM_DIR "%s: %s (another "
                               "user's: every process sharing it must run "
                               "as its owner)",
                               kind, name, name, strerror(EACCES));
        }
        if (errno == ELOOP || errno == EISDIR || errno == EINVAL) {
            /* glibc opens with O_NOFOLLOW: a symbolic link, or a
             * directory, someone put in the name's place. */
            return rl2_err_set(
                err, RL2_ERR_STORE,
                "%s %s: refusing " RL2_SHM_DIR "%s, which "
                "is no regular file (%s): remove it (rm " RL2_SHM_DIR "%s)",
                kind, name, name, strerror(errno), name);
        }
        return rl2_shm_sys_err(err, kind, name, "shm_open", errno);
    }
    if ((st = rl2_shm_vet(kind, name, *fd, mode, err)) != RL2_OK) {
        close(*fd);
        *fd = -1;
    }
    return st;
}

void
rl2_shm_unlink_if_same(const char *name, int fd)
{
    struct stat a, b;
    int         fd2;

    if (flock(fd, LOCK_EX) != 0) {
        return;
    }
    /* Non-blocking: a FIFO put in the name's place meanwhile must not
     * hang the start. */
    fd2 = shm_open(name, O_RDONLY | O_NONBLOCK, 0);
    if (fd2 >= 0) {
        if (fstat(fd, &a) == 0 && fstat(fd2, &b) == 0 && a.st_dev == b.st_dev
            && a.st_ino == b.st_ino) {
            shm_unlink(name);
        }
        close(fd2);
    }
    flock(fd, LOCK_UN);
}

static rl2_status_t
rl2_shm_obj_create(const char *name, int fd, size_t size, uint32_t magic,
                   uint32_t version, unsigned mode, void **out, rl2_err_t *err)
{
    rl2_shm_hdr_t *h;

    if (fchmod(fd, (mode_t)mode) != 0) { /* shm_open applied the umask */
        return rl2_shm_obj_err(err, name, "fchmod", errno);
    }
    if (ftruncate(fd, (off_t)size) != 0) {
        return rl2_shm_obj_err(err, name, "ftruncate", errno);
    }
    h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        return rl2_shm_obj_err(err, name, "mmap", errno);
    }
    h->version = version;
    h->size = size;
    atomic_store_explicit(&h->magic, magic, memory_order_release);
    *out = h;
    return RL2_OK;
}

/* One look at an existing object: *out set when it is published and
 * valid, *stale set when it is published but describes something else. */
static rl2_status_t
rl2_shm_obj_look(const char *name, int fd, size_t size, uint32_t magic,
                 uint32_t version, void **out, bool *stale, rl2_err_t *err)
{
    struct stat    st;
    rl2_shm_hdr_t *h;
    uint32_t       m;

    if (fstat(fd, &st) != 0) {
        return rl2_shm_obj_err(err, name, "fstat", errno);
    }
    if (st.st_size == 0) {
        return RL2_OK; /* the creator has not sized it */
    }
    if ((uint64_t)st.st_size != (uint64_t)size) {
        *stale = true;
        return RL2_OK;
    }
    h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        return rl2_shm_obj_err(err, name, "mmap", errno);
    }
    m = atomic_load_explicit(&h->magic, memory_order_acquire);
    if (m == magic && h->version == version && h->size == size) {
        *out = h;
        return RL2_OK;
    }
    *stale = m != 0;
    munmap(h, size);
    return RL2_OK;
}

/* Attach to an existing object, waiting for its creator to publish. */
static rl2_status_t
rl2_shm_obj_attach(const char *name, int fd, size_t size, uint32_t magic,
                   uint32_t version, void **out, bool *stale, rl2_err_t *err)
{
    rl2_status_t st;
    int          waited;

    for (waited = 0; waited <= SHM_WAIT_MS; waited++) {
        st = rl2_shm_obj_look(name, fd, size, magic, version, out, stale, err);
        if (st != RL2_OK || *out != NULL || *stale) {
            return st;
        }
        rl2_sleep_ms(1);
    }
    *stale = true; /* a creator that died */
    return RL2_OK;
}

/* One round: create exclusively, else attach.  *again is set when the
 * name must be tried once more (it vanished, or was stale). */
/* The object's fd, for a caller that asked for it (keep != NULL): a
 * duplicate of the one it was mapped from, so the very object mapped
 * even if the name is replaced meanwhile. */
static rl2_status_t
rl2_shm_obj_keep_fd(const char *name, int fd, void **out, size_t size,
                    int *keep, rl2_err_t *err)
{
    if (keep == NULL || *out == NULL) {
        return RL2_OK;
    }
    if ((*keep = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        int e = errno;

        munmap(*out, size);
        *out = NULL;
        return rl2_shm_obj_err(err, name, "dup", e);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_shm_obj_open_once(const char *name, size_t size, uint32_t magic,
                      uint32_t version, unsigned mode, void **out, bool *again,
                      int *keep, rl2_err_t *err)
{
    rl2_status_t st;
    bool         stale = false;
    int          fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, (mode_t)mode);

    *again = false;
    if (fd >= 0) {
        st = rl2_shm_obj_create(name, fd, size, magic, version, mode, out, err);
        if (st == RL2_OK) {
            st = rl2_shm_obj_keep_fd(name, fd, out, size, keep, err);
        }
        if (st != RL2_OK) {
            rl2_shm_unlink_if_same(name, fd);
        }
        close(fd);
        return st;
    }
    if (errno != EEXIST) {
        return rl2_shm_obj_err(err, name, "shm_open", errno);
    }
    if ((st = rl2_shm_open_vetted("shm", name, mode, &fd, err)) != RL2_OK) {
        return st;
    }
    if (fd < 0) {
        *again = true; /* unlinked in between */
        return RL2_OK;
    }
    st = rl2_shm_obj_attach(name, fd, size, magic, version, out, &stale, err);
    if (st == RL2_OK && stale) {
        rl2_shm_unlink_if_same(name, fd);
        *again = true;
    }
    if (st == RL2_OK) {
        st = rl2_shm_obj_keep_fd(name, fd, out, size, keep, err);
    }
    close(fd);
    return st;
}

rl2_status_t
rl2_shm_obj_open(const char *name, size_t size, uint32_t magic,
                 uint32_t version, unsigned mode, void **out, rl2_err_t *err)
{
    return rl2_shm_obj_open_fd(name, size, magic, version, mode, out, NULL,
                               err);
}

rl2_status_t
rl2_shm_obj_open_fd(const char *name, size_t size, uint32_t magic,
                    uint32_t version, unsigned mode, void **out, int *fd,
                    rl2_err_t *err)
{
    rl2_status_t st;
    bool         again = true;
    int          attempt;

    *out = NULL;
    if (fd != NULL) {
        *fd = -1;
    }
    st = rl2_shm_name_check("shm", name, RL2_SHM_NAME_MAX, err);
    if (st != RL2_OK) {
        return st;
    }
    if (mode > 0777 || size < sizeof(rl2_shm_hdr_t) || magic == 0) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "shm %s: bad mode %o, "
                           "size %zu or magic",
                           name, mode, size);
    }
    for (attempt = 0; again && attempt < SHM_OPEN_ATTEMPTS; attempt++) {
        st = rl2_shm_obj_open_once(name, size, magic, version, mode, out,
                                   &again, fd, err);
        if (st != RL2_OK) {
            return st;
        }
    }
    if (*out == NULL) {
        return rl2_err_set(err, RL2_ERR_SYS,
                           "shm %s: still replaced by "
                           "other processes after %d attempts (do they run "
                           "another version?)",
                           name, attempt);
    }
    return RL2_OK;
}

void
rl2_shm_obj_close(void *base, size_t size)
{
    if (base != NULL) {
        munmap(base, size);
    }
}

rl2_status_t
rl2_shm_obj_unlink(const char *name, rl2_err_t *err)
{
    rl2_status_t st = rl2_shm_name_check("shm", name, RL2_SHM_NAME_MAX, err);

    if (st != RL2_OK) {
        return st;
    }
    if (shm_unlink(name) != 0) {
        return rl2_shm_obj_err(err, name, "shm_unlink", errno);
    }
    return RL2_OK;
}
