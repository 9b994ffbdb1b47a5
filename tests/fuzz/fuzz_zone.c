/*
 * fuzz_zone.c -- libFuzzer target: a local zone's shared memory image
 * from anywhere.  The input becomes the bytes of a shm object, which
 * rl2_zone_attach() vets and validates as it would a zone another process
 * left; a zone it takes is then driven through lookups, gets, touches,
 * removals and rebuilds.  No image may make that code read or write
 * outside the mapping (ASan), or loop (libFuzzer's timeout); and:
 *   - after a rebuild, any image is a sound zone: the index and the three
 *     lists agree, every entry is on exactly one list, protected holds at
 *     most half the zone (check_sound);
 *   - the operations keep a sound zone sound.
 *
 * Input: byte 0 picks the mode, the next OPS bytes are the operations,
 * the rest makes the image.
 *   even mode, raw: the rest is the whole object, header included: the
 *        header validation's case (seed: a real zone's image);
 *   odd mode, shaped: a valid header for 64..127 entries of 0..24 bytes of
 *        state, picked by the first two bytes of the rest; each further
 *        byte becomes one field of the header's lists, of an index slot or
 *        of an entry (prev, next, list, key, expiry), so that the fuzzer
 *        steers every reference the table code reads, in range and not.
 * Objects of size 0, shorter than a header, or with magic 0 are skipped:
 * for those attach waits up to a second for a creator to finish (the
 * unit tests cover that wait).  The lock's bytes are pthread's and are
 * not validated by the zone: whatever the image holds there is replaced
 * by a fresh robust mutex (only the owner's user can write a vetted
 * zone, and a process of that user can wedge its lock anyway).
 *
 * FUZZ_ZONE_SEEDS=DIR makes the target write its seed images into DIR and
 * exit (tests/fuzz/corpus/zone/ was made so).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ratelimit2/hash.h"
#include "ratelimit2/store_local.h"
#include "base/base_internal.h"
#include "store/store_internal.h"

#define OPS        16
#define FILL_KEYS  40 /* new keys of a fill: four overflow any zone */
#define NOW_START  1000000000LL
#define KEEP_US    1000000LL
#define STEP_US    10000000LL
#define SHAPED_MAX 1024  /* bytes of a shaped image's fields */
#define IMAGE_MAX  16384 /* bytes of an image: shaped ones, or -max_len */

static char name[64];
static int  object_fd = -1;
/* Static rather than allocated per input: libFuzzer's speed here is that
 * of the allocator's fresh pages. */
static unsigned char image[IMAGE_MAX] __attribute__((aligned(64)));
static unsigned char seen[IMAGE_MAX / sizeof(zone_entry_t) + 1];

__attribute__((noreturn)) static void
die(const char *what)
{
    fprintf(stderr, "fuzz_zone: %s\n", what);
    abort();
}

static void
unlink_object(void)
{
    shm_unlink(name);
}

static rl2_digest_t
key_of(uint64_t n)
{
    return rl2_digest(&n, sizeof(n));
}

/* ---- the oracle --------------------------------------------------------- */

/* The oracle's own branches are no news to the fuzzer: tracing them
 * would only slow every input down. */
#define ORACLE __attribute__((no_sanitize("coverage")))

ORACLE static zone_entry_t *
entry(const rl2_zone_t *z, uint32_t ref)
{
    return (zone_entry_t *)(z->table + (uint64_t)(ref - 1) * z->geom.stride);
}

/* Walk one list from its head: every link in range and on this list, the
 * back links right, the tail last; returns its length. */
ORACLE static uint32_t
walk_lru(const rl2_zone_t *z, uint32_t list)
{
    uint32_t ref = z->hdr->lru_head[list - 1], prev = ZONE_NIL, n = 0;

    while (ref != ZONE_NIL) {
        if (ref > z->geom.entries || ++n > z->geom.entries) {
            die("an LRU list leaves the zone or loops");
        }
        if (entry(z, ref)->list != list || entry(z, ref)->prev != prev) {
            die("an LRU entry's list or back link is wrong");
        }
        prev = ref;
        ref = entry(z, ref)->next;
    }
    if (z->hdr->lru_tail[list - 1] != prev) {
        die("an LRU tail is not the list's last entry");
    }
    return n;
}

ORACLE static uint32_t
walk_free(const rl2_zone_t *z)
{
    uint32_t ref = z->hdr->free_head, n = 0;

    while (ref != ZONE_NIL) {
        if (ref > z->geom.entries || ++n > z->geom.entries) {
            die("the free list leaves the zone or loops");
        }
        if (entry(z, ref)->list != ZONE_FREE) {
            die("a free entry is on an LRU list");
        }
        ref = entry(z, ref)->next;
    }
    return n;
}

/* Every index slot names a listed entry, each one once, reachable from
 * its home slot without an empty slot on the way; returns how many. */
ORACLE static uint32_t
walk_index(const rl2_zone_t *z)
{
    uint32_t i, j, ref, n = 0;

    memset(seen, 0, z->geom.entries + 1); /* the object fits in image */
    for (i = 0; i < z->geom.index_slots; i++) {
        if ((ref = z->index[i]) == ZONE_NIL) {
            continue;
        }
        if (ref > z->geom.entries || entry(z, ref)->list == ZONE_FREE
            || seen[ref]++) {
            die("an index slot names no listed entry, or a second time");
        }
        for (j = entry(z, ref)->hash & z->mask; j != i; j = (j + 1) & z->mask) {
            if (z->index[j] == ZONE_NIL) {
                die("an indexed entry is unreachable from its home");
            }
        }
        n++;
    }
    return n;
}

/* Each listed entry is what a lookup of its key finds (so no key is
 * listed twice). */
ORACLE static void
find_each(rl2_zone_t *z)
{
    uint32_t ref, found;

    for (ref = 1; ref <= z->geom.entries; ref++) {
        if (entry(z, ref)->list != ZONE_FREE
            && (rl2_zone_lookup(z, entry(z, ref)->key, INT64_MIN, &found)
                    == NULL
                || found != ref)) {
            die("a listed entry is not what a lookup of its key finds");
        }
    }
}

ORACLE static void
check_sound(rl2_zone_t *z)
{
    const zone_hdr_t *h = z->hdr;
    uint32_t          prob = walk_lru(z, ZONE_PROBATION);
    uint32_t          prot = walk_lru(z, ZONE_PROTECTED);
    uint32_t          free_n = walk_free(z);

    if (prob + prot + free_n != z->geom.entries) {
        die("an entry is on no list, or on two");
    }
    if (walk_index(z) != prob + prot || h->used != prob + prot) {
        die("the index, the lists and the used count disagree");
    }
    if (h->protected_used != prot || prot > z->geom.entries / 2) {
        die("protected is miscounted or holds more than half the zone");
    }
    if (atomic_load(&h->dirty) != 0) {
        die("the zone is left dirty");
    }
    find_each(z);
}

/* ---- the operations ----------------------------------------------------- */

/* As the zone rebuilds itself: between the dirty marks. */
static void
rebuild(rl2_zone_t *z)
{
    rl2_zone_mark_dirty(z);
    rl2_zone_rebuild(z);
    rl2_zone_mark_clean(z);
}

/* Key selector arg (0..31): the key of one of the image's first sixteen
 * entries, or one of the first sixteen keys a shaped image's entries may
 * hold. */
static rl2_digest_t
pick_key(const rl2_zone_t *z, unsigned arg)
{
    return (arg & 16) != 0 ? entry(z, (arg & 15) + 1)->key : key_of(arg & 15);
}

static void
run_op(rl2_zone_t *z, uint8_t op, int64_t *now, uint64_t *fresh)
{
    rl2_digest_t     key = pick_key(z, op >> 3);
    rl2_zone_stats_t st;
    rl2_zone_usage_t usage;
    uint32_t         ref;
    void            *s;

    switch (op & 7) {
    case 0:
        if (rl2_zone_lookup(z, key, *now, &ref) != NULL) {
            rl2_zone_touch(z, ref);
        }
        break;
    case 1:
        s = rl2_zone_get(z, key, *now);
        memset(s, 0xa5, rl2_zone_state_size(z));
        rl2_zone_keep_until(z, s, *now + KEEP_US);
        break;
    case 2:
        rl2_zone_remove(z, key);
        break;
    case 3:
        rl2_zone_peek(z, key, *now);
        break;
    case 4:
        rebuild(z);
        check_sound(z);
        break;
    case 5:
        for (int i = 0; i < FILL_KEYS; i++) {
            s = rl2_zone_get(z, key_of(1000 + (*fresh)++), *now);
            rl2_zone_keep_until(z, s, *now + KEEP_US * (i % 3));
            rl2_zone_tag(z, s, (uint32_t)(i % 5) + 1, i % 2 ? "a" : "b.c");
        }
        break;
    case 6:
        *now += STEP_US;
        break;
    default:
        /* Outside the lock: it takes the lock itself. */
        rl2_zone_unlock(z);
        if (rl2_zone_stats(z, &st, NULL) != RL2_OK) {
            die("stats failed on a fresh lock");
        }
        /* The sweep and the scrape's walk read every entry and the
         * limit names of an image someone else wrote. */
        if (rl2_zone_sweep(z, *now, (uint32_t)(op >> 3) * 8, NULL, NULL)
                != RL2_OK
            || rl2_zone_usage(z, *now, &usage, NULL, NULL) != RL2_OK) {
            die("a sweep failed on a fresh lock");
        }
        if (usage.n_limits > RL2_ZONE_LIMITS) {
            die("more limits than the zone names");
        }
        if (rl2_zone_lock(z, NULL) != RL2_OK) {
            die("lock failed");
        }
        break;
    }
}

static void
run_ops(rl2_zone_t *z, const uint8_t *ops)
{
    int64_t  now = NOW_START;
    uint64_t fresh = 0;

    if (rl2_zone_lock(z, NULL) != RL2_OK) {
        die("lock failed");
    }
    for (int i = 0; i < OPS; i++) {
        run_op(z, ops[i], &now, &fresh);
    }
    rl2_zone_unlock(z);
}

/* ---- images ------------------------------------------------------------ */

static uint64_t
align64(uint64_t v)
{
    return (v + 63) & ~(uint64_t)63;
}

/* The geometry zone_shm.c computes (the target checks at start that
 * attach agrees). */
static void
shaped_geom(uint32_t entries, uint64_t state, zone_hdr_t *h)
{
    uint32_t slots = 1;

    while (slots < 2 * entries) {
        slots <<= 1;
    }
    h->entries = entries;
    h->index_slots = slots;
    h->state_size = state;
    h->stride = sizeof(zone_entry_t) + state;
    h->index_off = align64(sizeof(zone_hdr_t));
    h->entries_off = align64(h->index_off + (uint64_t)slots * 4);
    h->bytes = h->entries_off + (uint64_t)entries * h->stride;
}

/* Next field byte of a shaped image; 0 past the input's end. */
typedef struct {
    const uint8_t *p;
    size_t         left;
} bytes_t;

static uint8_t
next_byte(bytes_t *b)
{
    if (b->left == 0) {
        return 0;
    }
    b->left--;
    return *b->p++;
}

/* A byte as a reference: 0..255 against 64..127 entries, so some are
 * out of range. */
static void
shaped_fields(unsigned char *img, const zone_hdr_t *g, bytes_t *in)
{
    zone_hdr_t *h = (zone_hdr_t *)img;
    uint32_t   *index = (uint32_t *)(img + g->index_off);

    h->lru_head[0] = next_byte(in);
    h->lru_head[1] = next_byte(in);
    h->lru_tail[0] = next_byte(in);
    h->lru_tail[1] = next_byte(in);
    h->free_head = next_byte(in);
    h->protected_used = next_byte(in);
    h->used = next_byte(in);
    atomic_store(&h->dirty, next_byte(in) & 1);
    for (uint32_t i = 0; i < g->index_slots; i++) {
        index[i] = next_byte(in);
    }
    for (uint32_t r = 1; r <= g->entries; r++) {
        zone_entry_t *e =
            (zone_entry_t *)(img + g->entries_off + (r - 1) * g->stride);

        e->prev = next_byte(in);
        e->next = next_byte(in);
        e->list = next_byte(in) % 4; /* 3: on no list */
        e->key = key_of(next_byte(in) % 32);
        e->expires_us = NOW_START + ((int64_t)next_byte(in) - 128) * STEP_US;
    }
}

/* A shaped image into image[] from entries/state selector bytes and
 * fields; returns its size. */
static size_t
shaped_image(const uint8_t *data, size_t size)
{
    zone_hdr_t  g = { 0 };
    bytes_t     in = { data, size };
    zone_hdr_t *h = (zone_hdr_t *)image;

    shaped_geom(64 + (next_byte(&in) & 63), 8 * (next_byte(&in) & 3), &g);
    _Static_assert(sizeof(zone_hdr_t) + 256 * 4
                           + 127 * (sizeof(zone_entry_t) + 24) + 128
                       <= IMAGE_MAX,
                   "the largest shaped image fits in image[]");
    memset(image, 0, (size_t)g.bytes);
    memcpy(image, &g, sizeof(g));
    h->version = ZONE_VERSION;
    h->hdr_size = sizeof(zone_hdr_t);
    atomic_store(&h->magic, ZONE_MAGIC);
    shaped_fields(image, &g, &in);
    return (size_t)g.bytes;
}

static void
fresh_lock(unsigned char *img)
{
    pthread_mutexattr_t attr;

    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (pthread_mutex_init(&((zone_hdr_t *)img)->lock, &attr) != 0) {
        die("mutex init");
    }
    pthread_mutexattr_destroy(&attr);
}

/* The object holds exactly the first len bytes of image[]; attach it
 * (NULL when refused). */
static rl2_zone_t *
attach_image(size_t len)
{
    static size_t size;
    rl2_zone_t   *z = NULL;

    fresh_lock(image);
    if ((len != size && ftruncate(object_fd, (off_t)len) != 0)
        || pwrite(object_fd, image, len, 0) != (ssize_t)len) {
        die("cannot write the object");
    }
    size = len;
    return rl2_zone_attach(name, &z, NULL) == RL2_OK ? z : NULL;
}

static void
drive(rl2_zone_t *z, const uint8_t *ops)
{
    run_ops(z, ops); /* on the image as it came */
    rebuild(z);
    check_sound(z);
    run_ops(z, ops); /* on a sound zone, which must stay sound */
    check_sound(z);
}

/* ---- seeds --------------------------------------------------------------- */

static void
write_seed(const char *dir, const char *file, const void *p, size_t n)
{
    char  path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    if ((f = fopen(path, "wb")) == NULL || fwrite(p, 1, n, f) != n
        || fclose(f) != 0) {
        die("cannot write a seed");
    }
}

static const uint8_t seed_ops[OPS] = { 0x00, 0x88, 0x01, 0x19, 0x05, 0x06,
                                       0x02, 0x90, 0x04, 0x07, 0x03, 0x11,
                                       0x81, 0x05, 0x00, 0x0a };

/* Raw: the image of a real zone of 64 entries holding keys 0..7, 4..7
 * protected. */
static void
write_raw_seed(const char *dir)
{
    char           tmp[64];
    rl2_zone_t    *z;
    struct stat    st;
    unsigned char *buf;
    int            fd;

    snprintf(tmp, sizeof(tmp), "/rl2-fuzz-seed-%d", (int)getpid());
    if (rl2_zone_open(tmp, 64, 8, 0600, &z, NULL) != RL2_OK
        || rl2_zone_lock(z, NULL) != RL2_OK) {
        die("cannot make the raw seed's zone");
    }
    for (uint64_t k = 0; k < 8; k++) {
        rl2_zone_keep_until(z, rl2_zone_get(z, key_of(k), NOW_START),
                            NOW_START + KEEP_US);
        if (k >= 4) {
            rl2_zone_get(z, key_of(k), NOW_START);
        }
    }
    rl2_zone_unlock(z);
    rl2_zone_close(z);
    if ((fd = shm_open(tmp, O_RDONLY, 0)) < 0 || fstat(fd, &st) != 0
        || (buf = malloc(1 + OPS + (size_t)st.st_size)) == NULL
        || pread(fd, buf + 1 + OPS, (size_t)st.st_size, 0) != st.st_size) {
        die("cannot read the raw seed's zone");
    }
    close(fd);
    shm_unlink(tmp);
    buf[0] = 0;
    memcpy(buf + 1, seed_ops, OPS);
    write_seed(dir, "raw_64", buf, 1 + OPS + (size_t)st.st_size);
    free(buf);
}

/* Shaped, 64 entries of 8 bytes over an empty index: 1..3 on probation,
 * 4..5 protected, 6..64 free; then the same with every field that is not
 * 0 set to 65, one past the end. */
static void
write_shaped_seeds(const char *dir)
{
    static const uint8_t hdr[8] = { 1, 4, 3, 5, 6, 2, 0, 0 };
    uint8_t              in[SHAPED_MAX] = { 0 };
    size_t               n = 0;

    in[n++] = 1; /* shaped */
    memcpy(in + n, seed_ops, OPS);
    n += OPS;
    in[n++] = 0;                      /* 64 entries */
    in[n++] = 1;                      /* of 8 bytes */
    memcpy(in + n, hdr, sizeof(hdr)); /* heads, tails, free, counts */
    n += sizeof(hdr) + 128;           /* an empty index */
    for (unsigned r = 1; r <= 64; r++) {
        unsigned list = r <= 3 ? 1 : r <= 5 ? 2 : 0;
        unsigned prev = list == 0 || r == 1 || r == 4 ? 0 : r - 1;
        unsigned next = r == 3 || r == 5 || r == 64 ? 0 : r + 1;

        in[n++] = (uint8_t)prev;
        in[n++] = (uint8_t)next;
        in[n++] = (uint8_t)list;
        in[n++] = (uint8_t)r;             /* key */
        in[n++] = (uint8_t)(128 + r % 3); /* expiry */
    }
    write_seed(dir, "shaped_64", in, n);
    for (size_t i = 1 + OPS + 2; i < n; i++) {
        in[i] = in[i] == 0 ? 0 : 65;
    }
    write_seed(dir, "shaped_bad_refs", in, n);
}

/* ---- libFuzzer --------------------------------------------------------- */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seeds = getenv("FUZZ_ZONE_SEEDS");
    uint8_t     none[2] = { 0, 0 };
    rl2_zone_t *z;

    (void)argc;
    (void)argv;
    if (seeds != NULL) {
        write_raw_seed(seeds);
        write_shaped_seeds(seeds);
        exit(0);
    }
    snprintf(name, sizeof(name), "/rl2-fuzz-zone-%d", (int)getpid());
    shm_unlink(name);
    object_fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (object_fd < 0 || fchmod(object_fd, 0600) != 0) {
        die("cannot create the object");
    }
    atexit(unlink_object);
    /* The shaped header must be one attach takes, or the shaped mode
     * would only ever test refusals. */
    if ((z = attach_image(shaped_image(none, sizeof(none)))) == NULL) {
        die("attach refuses a shaped image: shaped_geom is out of date");
    }
    rl2_zone_close(z);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *rest = data + 1 + OPS;
    size_t         len, rest_len;
    rl2_zone_t    *z;

    if (size < 1 + OPS) {
        return 0;
    }
    rest_len = size - 1 - OPS;
    if (data[0] & 1) {
        len = shaped_image(rest, rest_len > SHAPED_MAX ? SHAPED_MAX : rest_len);
    }
    else {
        uint32_t magic = 0;

        if (rest_len >= sizeof(magic)) {
            memcpy(&magic, rest, sizeof(magic));
        }
        if (rest_len < sizeof(zone_hdr_t) || magic == 0) {
            return 0; /* a creator at work: attach would wait */
        }
        if (rest_len > IMAGE_MAX) {
            return 0; /* never with run.sh's -max_len */
        }
        len = rest_len;
        memcpy(image, rest, len);
    }
    z = attach_image(len);
    if (z != NULL) {
        drive(z, data + 1);
        rl2_zone_close(z);
    }
    return 0;
}
