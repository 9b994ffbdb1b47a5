/*
 * zone_shm.c -- the shared memory object of a local zone: creating
 * it, attaching to it, validating it, replacing it when stale, unlinking
 * it, and the robust process-shared lock.
 *
 * Owns the zone's geometry (sizes and offsets computed from entries and
 * state_size, every step checked for overflow), the race between processes
 * that open one name at once, and the recovery of a lock whose owner died.
 * All memory is reserved here when the zone is created; the layout is in
 * store_internal.h, the table in zone.c.
 *
 * Creation: shm_open(O_CREAT | O_EXCL) elects one creator, which holds an
 * exclusive flock on the object while it sizes, reserves and initialises
 * it, and stores the magic last (release).  Everyone else takes a shared
 * flock and reads the magic (acquire); an object whose header does not
 * describe exactly itself is stale and replaced.
 *
 * Trust: anyone may create a name in /dev/shm, so an existing object is
 * vetted before a byte of it is read (rl2_shm_open_vetted): it must
 * belong to this process's user or to root and grant no permission beyond
 * the mode asked for; otherwise the open fails, naming the object, and
 * the object is left alone.  What a vetted zone holds is still only
 * believed once checked: the header here, every reference in zone.c.
 *
 * Crashes: a dirty flag brackets every change to the index and lists.  A
 * process killed while holding the lock leaves the robust mutex to the
 * next locker, which rebuilds the index and lists from the entries if the
 * flag is set.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit2/store.h"
#include "base/shm_obj_internal.h"
#include "store_internal.h"
#include "base/base_internal.h"

#define ZONE_STATE_MAX     65536u /* bytes of state per entry */
#define ZONE_OPEN_ATTEMPTS 8
#define ZONE_ATTACH_MODE   0600u /* what every front end creates */
#define ZONE_WAIT_MS \
    1000 /* how long an attacher polls for a \
            creator to take its flock */

/* ---- geometry ---------------------------------------------------------- */

static bool
rl2_zone_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b != 0 && a > UINT64_MAX / b) {
        return false;
    }
    *out = a * b;
    return true;
}

static bool
rl2_zone_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a > UINT64_MAX - b) {
        return false;
    }
    *out = a + b;
    return true;
}

static uint64_t
rl2_zone_align64(uint64_t v)
{
    return (v + 63) & ~(uint64_t)63;
}

static rl2_status_t
rl2_zone_geom_compute(const char *name, uint64_t entries, uint64_t state_size,
                      zone_geom_t *g, rl2_err_t *err)
{
    uint64_t slots = 1, index_bytes, table_bytes, total;

    if (entries < RL2_ZONE_MIN_ENTRIES || entries > RL2_ZONE_MAX_ENTRIES) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "zone %s: entries %llu outside %u..%u", name,
                           (unsigned long long)entries, RL2_ZONE_MIN_ENTRIES,
                           RL2_ZONE_MAX_ENTRIES);
    }
    if (state_size > ZONE_STATE_MAX) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "zone %s: state_size %llu above %u bytes", name,
                           (unsigned long long)state_size, ZONE_STATE_MAX);
    }
    while (slots < 2 * entries) {
        slots <<= 1;
    }
    g->entries = (uint32_t)entries;
    g->index_slots = (uint32_t)slots;
    g->state_size = (state_size + 7) & ~(uint64_t)7;
    g->stride = sizeof(zone_entry_t) + g->state_size;
    g->index_off = rl2_zone_align64(sizeof(zone_hdr_t));
    /* The bounds above keep this far from 2^64, but a 32-bit size_t is
     * easily exceeded, so every step is checked. */
    if (!rl2_zone_mul_u64(slots, sizeof(uint32_t), &index_bytes)
        || !rl2_zone_add_u64(g->index_off, index_bytes, &total)
        || (g->entries_off = rl2_zone_align64(total)) < total
        || !rl2_zone_mul_u64(entries, g->stride, &table_bytes)
        || !rl2_zone_add_u64(g->entries_off, table_bytes, &total)
        || total > (uint64_t)SIZE_MAX || total > (uint64_t)INT64_MAX) {
        return rl2_err_set(err, RL2_ERR_RANGE,
                           "zone %s: %llu entries of %llu bytes do not fit "
                           "in memory",
                           name, (unsigned long long)entries,
                           (unsigned long long)g->state_size);
    }
    g->bytes = total;
    return RL2_OK;
}

static bool
rl2_zone_geom_equal(const zone_geom_t *a, const zone_geom_t *b)
{
    return a->entries == b->entries && a->index_slots == b->index_slots
           && a->state_size == b->state_size && a->stride == b->stride
           && a->index_off == b->index_off && a->entries_off == b->entries_off
           && a->bytes == b->bytes;
}

/* ---- locking ----------------------------------------------------------- */

static rl2_status_t
rl2_zone_recover(rl2_zone_t *z, rl2_err_t *err)
{
    int rc = pthread_mutex_consistent(&z->hdr->lock);

    if (rc != 0) {
        pthread_mutex_unlock(&z->hdr->lock);
        return rl2_err_set(err, RL2_ERR_SYS,
                           "zone %s: recovering the lock of a dead process: "
                           "%s",
                           z->name, strerror(rc));
    }
    if (atomic_load_explicit(&z->hdr->dirty, memory_order_relaxed)) {
        rl2_zone_rebuild(z);
        rl2_zone_mark_clean(z);
    }
    z->hdr->lock_recoveries++;
    return RL2_OK;
}

rl2_status_t
rl2_zone_lock(rl2_zone_t *z, rl2_err_t *err)
{
    int rc = pthread_mutex_lock(&z->hdr->lock);

    if (rc == 0) {
        return RL2_OK;
    }
    if (rc == EOWNERDEAD) {
        return rl2_zone_recover(z, err);
    }
    return rl2_err_set(err, RL2_ERR_SYS, "zone %s: lock: %s", z->name,
                       strerror(rc));
}

void
rl2_zone_unlock(rl2_zone_t *z)
{
    pthread_mutex_unlock(&z->hdr->lock);
}

/* ---- creating and attaching -------------------------------------------- */

static rl2_status_t
rl2_zone_sys_err(rl2_err_t *err, const char *name, const char *what, int errnum)
{
    return rl2_shm_sys_err(err, "zone", name, what, errnum);
}

static rl2_status_t
rl2_zone_name_check(const char *name, rl2_err_t *err)
{
    return rl2_shm_name_check("zone", name, RL2_ZONE_NAME_MAX, err);
}

static rl2_status_t
rl2_zone_handle_new(const char *name, zone_hdr_t *hdr, const zone_geom_t *g,
                    rl2_zone_t **out, rl2_err_t *err)
{
    rl2_zone_t *z = calloc(1, sizeof(*z) + (size_t)g->state_size);

    if (z == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "zone %s: out of memory", name);
    }
    z->hdr = hdr;
    z->geom = *g;
    z->index = (uint32_t *)((unsigned char *)hdr + g->index_off);
    z->table = (unsigned char *)hdr + g->entries_off;
    z->mask = g->index_slots - 1;
    z->seed = hdr->seed;
    strcpy(z->name, name); /* length checked by rl2_zone_name_check */
    *out = z;
    return RL2_OK;
}

/* The header of a published zone is valid when it describes exactly the
 * object it sits in: the geometry recomputed from its entries and
 * state_size must match every stored offset, and the object's size too. */
static bool
rl2_zone_hdr_valid(const zone_hdr_t *h, uint64_t st_size, zone_geom_t *g)
{
    zone_geom_t stored = { h->entries, h->index_slots, h->state_size,
                           h->stride,  h->index_off,   h->entries_off,
                           h->bytes };

    if (h->version != ZONE_VERSION || h->hdr_size != sizeof(zone_hdr_t)
        || rl2_zone_geom_compute("", h->entries, h->state_size, g, NULL)
               != RL2_OK) {
        return false;
    }
    return rl2_zone_geom_equal(g, &stored) && g->bytes == st_size;
}

/* One look at an existing object.  *magic is what the header holds (0
 * while a creator is at work); *hdr is set only for a valid zone. */
static rl2_status_t
rl2_zone_map_try(const char *name, int fd, zone_hdr_t **hdr, zone_geom_t *g,
                 uint32_t *magic, rl2_err_t *err)
{
    struct stat st;
    void       *base;

    *magic = 0;
    if (fstat(fd, &st) != 0) {
        return rl2_zone_sys_err(err, name, "fstat", errno);
    }
    if ((uint64_t)st.st_size < sizeof(zone_hdr_t)) {
        return RL2_OK;
    }
    base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                fd, 0);
    if (base == MAP_FAILED) {
        return rl2_zone_sys_err(err, name, "mmap", errno);
    }
    *magic = atomic_load_explicit(&((zone_hdr_t *)base)->magic,
                                  memory_order_acquire);
    if (*magic == ZONE_MAGIC
        && rl2_zone_hdr_valid(base, (uint64_t)st.st_size, g)) {
        *hdr = base;
    }
    else {
        munmap(base, (size_t)st.st_size);
    }
    return RL2_OK;
}

/* Map an existing object once its creator has published the header.
 * OK with *hdr set: a valid zone, geometry in *g.  OK with *hdr NULL: the
 * object is stale (foreign, another version, wrong size, or a creator that
 * died).  A creator holds an exclusive flock until it publishes, so a
 * shared flock waits for a slow creation however long it takes; the
 * bounded polling only covers the instant before the creator's flock. */
static rl2_status_t
rl2_zone_map_existing(const char *name, int fd, zone_hdr_t **hdr,
                      zone_geom_t *g, rl2_err_t *err)
{
    rl2_status_t st;
    uint32_t     magic;
    int          waited;

    *hdr = NULL;
    for (waited = 0; waited <= ZONE_WAIT_MS; waited++) {
        bool locked = flock(fd, LOCK_SH) == 0;

        st = rl2_zone_map_try(name, fd, hdr, g, &magic, err);
        if (locked) {
            flock(fd, LOCK_UN);
        }
        if (st != RL2_OK || *hdr != NULL || magic != 0) {
            return st; /* an error, ours, or foreign */
        }
        rl2_sleep_ms(1);
    }
    return RL2_OK;
}

static rl2_status_t
rl2_zone_mutex_init(const char *name, pthread_mutex_t *m, rl2_err_t *err)
{
    pthread_mutexattr_t attr;
    int                 rc = pthread_mutexattr_init(&attr);

    if (rc == 0) {
        rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
        if (rc == 0) {
            rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
        }
        if (rc == 0) {
            rc = pthread_mutex_init(m, &attr);
        }
        pthread_mutexattr_destroy(&attr);
    }
    return rc == 0 ? RL2_OK : rl2_zone_sys_err(err, name, "mutex init", rc);
}

/* Reserve the memory now, so that a full /dev/shm fails here with a
 * message rather than with SIGBUS on some later request. */
static rl2_status_t
rl2_zone_reserve(const char *name, int fd, uint64_t bytes, rl2_err_t *err)
{
    struct statvfs vfs;
    uint64_t       avail;
    int            rc;

    if (fstatvfs(fd, &vfs) == 0 && vfs.f_frsize != 0
        && rl2_zone_mul_u64(vfs.f_bavail, vfs.f_frsize, &avail)
        && bytes > avail) {
        return rl2_err_set(err, RL2_ERR_NOMEM,
                           "zone %s: needs %llu bytes, shared memory has "
                           "%llu free",
                           name, (unsigned long long)bytes,
                           (unsigned long long)avail);
    }
    if (ftruncate(fd, (off_t)bytes) != 0) {
        return rl2_zone_sys_err(err, name, "ftruncate", errno);
    }
    rc = posix_fallocate(fd, 0, (off_t)bytes);
    return rc == 0 ? RL2_OK
                   : rl2_zone_sys_err(err, name, "posix_fallocate", rc);
}

static void
rl2_zone_seed_init(rl2_hash_key_t *seed)
{
    struct timespec ts;
    uint64_t        mix[2];

    if (getrandom(seed->k, sizeof(seed->k), GRND_NONBLOCK)
        == (ssize_t)sizeof(seed->k)) {
        return;
    }
    /* No entropy yet (early boot): weaker, but still not public. */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    mix[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
    mix[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)seed;
    memcpy(seed->k, mix, sizeof(seed->k));
}

/* The creator owns the new object exclusively (O_EXCL) until it publishes
 * the magic; attachers wait for that release store. */
static rl2_status_t
rl2_zone_create_new(const char *name, int fd, unsigned mode,
                    const zone_geom_t *g, rl2_zone_t **out, rl2_err_t *err)
{
    zone_hdr_t  *h;
    rl2_status_t st;

    /* Held until the magic is published (or this process dies). */
    if (flock(fd, LOCK_EX) != 0) {
        return rl2_zone_sys_err(err, name, "flock", errno);
    }
    if (fchmod(fd, mode) != 0) { /* shm_open applied the umask */
        return rl2_zone_sys_err(err, name, "fchmod", errno);
    }
    if ((st = rl2_zone_reserve(name, fd, g->bytes, err)) != RL2_OK) {
        return st;
    }
    h = mmap(NULL, (size_t)g->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        return rl2_zone_sys_err(err, name, "mmap", errno);
    }
    h->version = ZONE_VERSION;
    h->hdr_size = sizeof(zone_hdr_t);
    h->entries = g->entries;
    h->index_slots = g->index_slots;
    h->state_size = g->state_size;
    h->stride = g->stride;
    h->index_off = g->index_off;
    h->entries_off = g->entries_off;
    h->bytes = g->bytes;
    rl2_zone_seed_init(&h->seed);
    if ((st = rl2_zone_mutex_init(name, &h->lock, err)) != RL2_OK
        || (st = rl2_zone_handle_new(name, h, g, out, err)) != RL2_OK) {
        munmap(h, (size_t)g->bytes);
        return st;
    }
    rl2_zone_rebuild(*out); /* all entries onto the free list */
    atomic_store_explicit(&h->magic, ZONE_MAGIC, memory_order_release);
    /* Explicitly: the mapping keeps the open file, and so the flock, alive
     * after close(fd). */
    flock(fd, LOCK_UN);
    return RL2_OK;
}

/* One round of open: create exclusively, else attach.  *again is set when
 * the name must be tried once more (it vanished or was stale). */
static rl2_status_t
rl2_zone_open_once(const char *name, const zone_geom_t *g, unsigned mode,
                   rl2_zone_t **out, bool *again, rl2_err_t *err)
{
    zone_geom_t  found;
    zone_hdr_t  *h;
    rl2_status_t st;
    int          fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, (mode_t)mode);

    *again = false;
    if (fd >= 0) {
        st = rl2_zone_create_new(name, fd, mode, g, out, err);
        if (st != RL2_OK) {
            rl2_shm_unlink_if_same(name, fd);
        }
        close(fd);
        return st;
    }
    if (errno != EEXIST) {
        return rl2_zone_sys_err(err, name, "shm_open", errno);
    }
    /* Vetted before it is read, and before a stale one is unlinked: a
     * stranger's object is refused, not judged by its contents. */
    if ((st = rl2_shm_open_vetted("zone", name, mode, &fd, err)) != RL2_OK) {
        return st;
    }
    if (fd < 0) {
        *again = true; /* unlinked in between */
        return RL2_OK;
    }
    st = rl2_zone_map_existing(name, fd, &h, &found, err);
    if (st == RL2_OK && h != NULL && rl2_zone_geom_equal(&found, g)) {
        if ((st = rl2_zone_handle_new(name, h, g, out, err)) != RL2_OK) {
            munmap(h, (size_t)found.bytes);
        }
    }
    else if (st == RL2_OK) {
        /* Another geometry or a stale object: replace it.  Processes that
         * still map the old one keep it until they close. */
        if (h != NULL) {
            munmap(h, (size_t)found.bytes);
        }
        rl2_shm_unlink_if_same(name, fd);
        *again = true;
    }
    close(fd);
    return st;
}

rl2_status_t
rl2_zone_open(const char *name, uint32_t entries, size_t state_size,
              unsigned mode, rl2_zone_t **out, rl2_err_t *err)
{
    zone_geom_t  g;
    rl2_status_t st;
    bool         again = true;
    int          attempt;

    *out = NULL;
    if ((st = rl2_zone_name_check(name, err)) != RL2_OK
        || (st = rl2_zone_geom_compute(name, entries, state_size, &g, err))
               != RL2_OK) {
        return st;
    }
    if (mode > 0777) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "zone %s: mode %o is not "
                           "a permission",
                           name, mode);
    }
    for (attempt = 0; again && attempt < ZONE_OPEN_ATTEMPTS; attempt++) {
        st = rl2_zone_open_once(name, &g, mode, out, &again, err);
        if (st != RL2_OK) {
            return st;
        }
    }
    if (*out == NULL) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "zone %s: still replaced by "
                           "other processes after %d attempts (do they ask "
                           "for another geometry?)",
                           name, attempt);
    }
    return RL2_OK;
}

rl2_status_t
rl2_zone_attach(const char *name, rl2_zone_t **out, rl2_err_t *err)
{
    zone_geom_t  g;
    zone_hdr_t  *h;
    rl2_status_t st;
    int          fd;

    *out = NULL;
    if ((st = rl2_zone_name_check(name, err)) != RL2_OK) {
        return st;
    }
    if ((st = rl2_shm_open_vetted("zone", name, ZONE_ATTACH_MODE, &fd, err))
        != RL2_OK) {
        return st;
    }
    if (fd < 0) {
        return rl2_zone_sys_err(err, name, "shm_open", ENOENT);
    }
    st = rl2_zone_map_existing(name, fd, &h, &g, err);
    close(fd);
    if (st != RL2_OK) {
        return st;
    }
    if (h == NULL) {
        return rl2_err_set(err, RL2_ERR_STORE,
                           "zone %s: not a valid "
                           "ratelimit2 zone of layout version %u",
                           name, ZONE_VERSION);
    }
    st = rl2_zone_handle_new(name, h, &g, out, err);
    if (st != RL2_OK) {
        munmap(h, (size_t)g.bytes);
    }
    return st;
}

void
rl2_zone_close(rl2_zone_t *z)
{
    if (z == NULL) {
        return;
    }
    munmap(z->hdr, (size_t)z->geom.bytes);
    free(z);
}

rl2_status_t
rl2_zone_unlink(const char *name, rl2_err_t *err)
{
    rl2_status_t st = rl2_zone_name_check(name, err);

    if (st != RL2_OK) {
        return st;
    }
    if (shm_unlink(name) != 0) {
        return rl2_zone_sys_err(err, name, "shm_unlink", errno);
    }
    return RL2_OK;
}
