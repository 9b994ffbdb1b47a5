/*
 * test_store_local.c -- the bounded local store (store_local.c), and the
 * hashing (hash.c) and status (status.c) it is built on.
 *
 * Each test is named after the behaviour it proves.  Every zone gets a
 * name with this process' id and is unlinked at the end of its test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/hash.h"
#include "ratelimit2/status.h"
#include "ratelimit2/store_local.h"
#include "base/base_internal.h"
#include "store/store_internal.h"

#define NOW        1000000LL /* an arbitrary monotonic time, us */
#define HOUR_US    3600000000LL
#define WATCHDOG_S 30                          /* a hung test kills the run */
#define ZE         ((int)RL2_ZONE_MIN_ENTRIES) /* the smallest zone */

/* ---- helpers ----------------------------------------------------------- */

/* Names handed out in the running test; teardown unlinks them even when
 * an assertion ended the test early. */
static char made_names[8][64];
static int  made_count;

static void
zone_name(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "/rl2test-%ld-%s", (long)getpid(), tag);
    if (made_count < 8) {
        snprintf(made_names[made_count++], sizeof(made_names[0]), "%s", buf);
    }
}

/* A wedged lock or a looping table must fail the run, not hang it:
 * SIGALRM's default action ends the process. */
static int
setup(void **state)
{
    (void)state;
    made_count = 0;
    alarm(WATCHDOG_S);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    alarm(0);
    while (made_count > 0) {
        rl2_zone_unlink(made_names[--made_count], NULL);
    }
    return 0;
}

static rl2_zone_t *
must_open(const char *name, uint32_t entries, size_t state_size)
{
    rl2_zone_t  *z = NULL;
    rl2_err_t    err = { "" };
    rl2_status_t st = rl2_zone_open(name, entries, state_size, 0600, &z, &err);

    if (st != RL2_OK) {
        fail_msg("open %s: %s", name, err.msg);
    }
    return z;
}

static void
drop(rl2_zone_t *z, const char *name)
{
    rl2_zone_close(z);
    rl2_zone_unlink(name, NULL);
}

static rl2_digest_t
key_of(uint64_t i)
{
    return rl2_digest(&i, sizeof(i));
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Lock, add one to key's counter, keep it until keep_us, unlock; returns
 * the new count, or 0 when the lock failed. */
static uint64_t
bump(rl2_zone_t *z, rl2_digest_t key, int64_t now_us, int64_t keep_us)
{
    uint64_t *c, v;

    if (rl2_zone_lock(z, NULL) != RL2_OK) {
        return 0;
    }
    c = rl2_zone_get(z, key, now_us);
    v = ++*c;
    rl2_zone_keep_until(z, c, keep_us);
    rl2_zone_unlock(z);
    return v;
}

/* The counter of key at now_us, or -1 if absent or expired. */
static int64_t
peek(rl2_zone_t *z, rl2_digest_t key, int64_t now_us)
{
    uint64_t *c;
    int64_t   v;

    assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
    c = rl2_zone_peek(z, key, now_us);
    v = c != NULL ? (int64_t)*c : -1;
    rl2_zone_unlock(z);
    return v;
}

static rl2_zone_stats_t
stats_of(rl2_zone_t *z)
{
    rl2_zone_stats_t s = { 0 };

    assert_int_equal(rl2_zone_stats(z, &s, NULL), RL2_OK);
    return s;
}

static off_t
shm_size(const char *name)
{
    char        path[256];
    struct stat st;

    snprintf(path, sizeof(path), "/dev/shm%s", name);
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ---- hash.c and status.c ----------------------------------------------- */

static void
test_siphash_matches_reference_vectors(void **state)
{
    /* Key 00..0f, message 00..(len-1): the paper's vectors. */
    static const struct {
        size_t   len;
        uint64_t want;
    } v[] = {
        { 0, 0x726fdb47dd0e0e31ULL },  { 1, 0x74f839c593dc67fdULL },
        { 7, 0xab0200f58b01d137ULL },  { 8, 0x93f5f5799a932462ULL },
        { 15, 0xa129ca6149be45e5ULL },
    };
    rl2_hash_key_t key;
    uint8_t        msg[16];
    size_t         i;

    (void)state;
    for (i = 0; i < 16; i++) {
        key.k[i] = (uint8_t)i;
        msg[i] = (uint8_t)i;
    }
    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_int_equal(rl2_siphash(&key, msg, v[i].len), v[i].want);
    }
    /* Unaligned input hashes the same as aligned input. */
    {
        uint8_t buf[32];

        memcpy(buf + 3, msg, 15);
        assert_int_equal(rl2_siphash(&key, buf + 3, 15), 0xa129ca6149be45e5ULL);
    }
}

/* The reference's 128-bit vector for the empty message under key
 * 00..0f: the code path storage digests share (with 1-3 rounds). */
static void
test_siphash128_matches_reference(void **state)
{
    rl2_hash_key_t key;
    uint64_t       out[2];

    (void)state;
    for (int i = 0; i < 16; i++) {
        key.k[i] = (uint8_t)i;
    }
    rl2_siphash128_24(&key, "", 0, out);
    assert_int_equal(out[0], 0xe6a825ba047f81a3ULL);
    assert_int_equal(out[1], 0x930255c71472f66dULL);
}

/* Digests of inputs of every length up to three words differ from one
 * another and from the 2-4 variant's (the round counts are in use). */
static void
test_digest_lengths_distinct(void **state)
{
    rl2_hash_key_t key;
    uint8_t        msg[24];
    rl2_digest_t   d[25];
    uint64_t       ref[2];

    (void)state;
    for (int i = 0; i < 16; i++) {
        key.k[i] = (uint8_t)i;
    }
    for (int i = 0; i < 24; i++) {
        msg[i] = (uint8_t)i;
    }
    for (size_t n = 0; n <= 24; n++) {
        d[n] = rl2_digest_keyed(&key, msg, n);
        rl2_siphash128_24(&key, msg, n, ref);
        assert_false(d[n].hi == ref[0] && d[n].lo == ref[1]);
        for (size_t m = 0; m < n; m++) {
            assert_false(d[n].hi == d[m].hi && d[n].lo == d[m].lo);
        }
    }
}

static void
test_digest_is_stable_with_independent_halves(void **state)
{
    rl2_digest_t a = rl2_digest("client:10.0.0.1", 15);
    rl2_digest_t b = rl2_digest("client:10.0.0.1", 15);
    rl2_digest_t c = rl2_digest("client:10.0.0.2", 15);

    (void)state;
    assert_true(a.hi == b.hi && a.lo == b.lo);
    assert_true(a.hi != a.lo);
    assert_true(a.hi != c.hi && a.lo != c.lo);
}

static void
test_hash_id_is_16_lowercase_hex_and_keyed(void **state)
{
    rl2_hash_key_t k1, k2;
    char           a[17], b[17], c[17];
    uint64_t       back;
    int            i;

    (void)state;
    rl2_hash_key_from_secret("site secret one", &k1);
    rl2_hash_key_from_secret("site secret two", &k2);
    assert_memory_not_equal(k1.k, k2.k, 16);
    rl2_hash_id(&k1, "alice", a);
    rl2_hash_id(&k1, "alice", b);
    rl2_hash_id(&k2, "alice", c);
    assert_int_equal(strlen(a), 16);
    for (i = 0; i < 16; i++) {
        assert_true((a[i] >= '0' && a[i] <= '9')
                    || (a[i] >= 'a' && a[i] <= 'f'));
    }
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    back = strtoull(a, NULL, 16);
    assert_int_equal(back, rl2_siphash(&k1, "alice", 5));
}

static void
test_err_set_formats_truncates_and_accepts_null(void **state)
{
    rl2_err_t err;
    char      big[400];

    (void)state;
    assert_int_equal(rl2_err_set(NULL, RL2_ERR_STORE, "x %d", 1),
                     RL2_ERR_STORE);
    assert_int_equal(rl2_err_set(&err, RL2_ERR_CONFIG, "%s:%d: bad", "f", 3),
                     RL2_ERR_CONFIG);
    assert_string_equal(err.msg, "f:3: bad");
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    rl2_err_set(&err, RL2_ERR_SYS, "%s", big);
    assert_int_equal(strlen(err.msg), RL2_ERR_MAX - 1);
    assert_string_equal(rl2_status_str(RL2_OK), "ok");
    assert_string_equal(rl2_status_str(RL2_ERR_SYS), "system error");
}

/* ---- opening, attaching, geometry --------------------------------------- */

static void
test_open_rejects_bad_arguments_with_message(void **state)
{
    char        name[64];
    rl2_zone_t *z = (rl2_zone_t *)&z;
    rl2_err_t   err;

    (void)state;
    zone_name(name, sizeof(name), "bad");
    assert_int_equal(
        rl2_zone_open(name, RL2_ZONE_MIN_ENTRIES - 1, 8, 0600, &z, &err),
        RL2_ERR_INVALID);
    assert_null(z);
    assert_non_null(strstr(err.msg, name));
    assert_int_equal(
        rl2_zone_open(name, RL2_ZONE_MAX_ENTRIES + 1, 8, 0600, &z, &err),
        RL2_ERR_INVALID);
    assert_int_equal(rl2_zone_open(name, 64, 65537, 0600, &z, &err),
                     RL2_ERR_INVALID);
    assert_non_null(strstr(err.msg, "state_size"));
    assert_non_null(strstr(err.msg, name));
    assert_int_equal(rl2_zone_open("noslash", 64, 8, 0600, &z, &err),
                     RL2_ERR_INVALID);
    assert_int_equal(rl2_zone_open("/a/b", 64, 8, 0600, &z, &err),
                     RL2_ERR_INVALID);
    assert_int_equal(rl2_zone_open(name, 64, 8, 01777, &z, &err),
                     RL2_ERR_INVALID);
    assert_int_equal(rl2_zone_attach(name, &z, &err), RL2_ERR_SYS);
    assert_non_null(strstr(err.msg, name));
    assert_non_null(strstr(err.msg, strerror(ENOENT)));
    assert_int_equal(shm_size(name), -1); /* nothing was created */
}

static void
test_state_is_rounded_to_8_and_aligned(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    void       *p;

    (void)state;
    zone_name(name, sizeof(name), "align");
    z = must_open(name, ZE, 13);
    assert_int_equal(rl2_zone_state_size(z), 16);
    assert_int_equal(stats_of(z).state_size, 16);
    assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
    p = rl2_zone_get(z, key_of(1), NOW);
    assert_int_equal((uintptr_t)p % 8, 0);
    rl2_zone_unlock(z);
    drop(z, name);
}

static void
test_reopen_same_geometry_keeps_counters(void **state)
{
    char             name[64];
    rl2_zone_t      *z;
    rl2_zone_stats_t s = { 0 };
    int              i;

    (void)state;
    zone_name(name, sizeof(name), "reopen");
    z = must_open(name, ZE, 8);
    for (i = 0; i < ZE + 4; i++) { /* 4 evictions */
        bump(z, key_of((uint64_t)i), NOW, NOW + HOUR_US);
    }
    bump(z, key_of(ZE + 3), NOW, NOW + HOUR_US);
    rl2_zone_close(z);
    z = must_open(name, ZE, 8);
    s = stats_of(z);
    assert_int_equal(s.evictions, 4);
    assert_int_equal(s.used, ZE);
    assert_int_equal(peek(z, key_of(ZE + 3), NOW), 2);
    assert_int_equal(peek(z, key_of(0), NOW), -1);
    drop(z, name);
}

static void
test_reopen_other_geometry_recreates(void **state)
{
    char             name[64];
    rl2_zone_t      *z, *old;
    rl2_zone_stats_t s = { 0 };

    (void)state;
    zone_name(name, sizeof(name), "regeom");
    old = must_open(name, ZE, 8);
    bump(old, key_of(1), NOW, NOW + HOUR_US);
    z = must_open(name, 2 * ZE, 8); /* another capacity */
    s = stats_of(z);
    assert_int_equal(s.entries, 2 * ZE);
    assert_int_equal(s.used, 0);
    assert_int_equal(peek(z, key_of(1), NOW), -1);
    /* The old mapping still works for its holder. */
    assert_int_equal(bump(old, key_of(1), NOW, NOW + HOUR_US), 2);
    rl2_zone_close(z);
    z = must_open(name, 2 * ZE, 24); /* another state size */
    assert_int_equal(stats_of(z).state_size, 24);
    assert_int_equal(shm_size(name), (off_t)stats_of(z).bytes);
    rl2_zone_close(old);
    drop(z, name);
}

static void
test_attach_takes_any_geometry(void **state)
{
    char        name[64];
    rl2_zone_t *z, *a;
    rl2_err_t   err;

    (void)state;
    zone_name(name, sizeof(name), "attach");
    z = must_open(name, 3 * ZE, 40);
    bump(z, key_of(7), NOW, NOW + HOUR_US);
    assert_int_equal(rl2_zone_attach(name, &a, &err), RL2_OK);
    assert_int_equal(stats_of(a).entries, 3 * ZE);
    assert_int_equal(rl2_zone_state_size(a), 40);
    assert_int_equal(peek(a, key_of(7), NOW), 1);
    rl2_zone_close(a);
    drop(z, name);
}

/* Write raw bytes into a new shm object, as a foreign program would. */
static void
make_foreign(const char *name, size_t size, unsigned char fill)
{
    int           fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    unsigned char buf[4096];
    size_t        done;

    assert_true(fd >= 0);
    memset(buf, fill, sizeof(buf));
    for (done = 0; done < size; done += sizeof(buf)) {
        size_t n = size - done < sizeof(buf) ? size - done : sizeof(buf);
        assert_int_equal(write(fd, buf, n), (ssize_t)n);
    }
    close(fd);
}

static void
test_invalid_object_is_refused_by_attach_replaced_by_open(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    rl2_err_t   err;

    (void)state;
    zone_name(name, sizeof(name), "foreign");
    make_foreign(name, 8192, 0xab); /* garbage magic */
    assert_int_equal(rl2_zone_attach(name, &z, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, name));
    z = must_open(name, ZE, 8);
    assert_int_equal(stats_of(z).used, 0);
    drop(z, name);
}

static void
test_object_size_must_match_header(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    rl2_err_t   err;
    int         fd;

    (void)state;
    zone_name(name, sizeof(name), "size");
    z = must_open(name, ZE, 8);
    bump(z, key_of(1), NOW, NOW + HOUR_US);
    rl2_zone_close(z);
    fd = shm_open(name, O_RDWR, 0);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, shm_size(name) + 4096), 0);
    close(fd);
    assert_int_equal(rl2_zone_attach(name, &z, &err), RL2_ERR_STORE);
    z = must_open(name, ZE, 8); /* recreated, not trusted */
    assert_int_equal(peek(z, key_of(1), NOW), -1);
    assert_int_equal(shm_size(name), (off_t)stats_of(z).bytes);
    drop(z, name);
}

static void
test_half_created_zone_is_replaced_after_a_bounded_wait(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    double      t0;

    (void)state;
    zone_name(name, sizeof(name), "halfmade");
    make_foreign(name, 8192, 0); /* magic never published */
    t0 = now_s();
    z = must_open(name, ZE, 8);
    assert_true(now_s() - t0 < 3.0);
    assert_int_equal(stats_of(z).used, 0);
    assert_int_equal(shm_size(name), (off_t)stats_of(z).bytes);
    drop(z, name);
}

/* The bytes of a valid zone holding key 5 with count 1. */
static unsigned char *
zone_image(size_t *len)
{
    char           tmpl[64];
    rl2_zone_t    *z;
    unsigned char *buf;
    struct stat    st;
    int            fd;

    zone_name(tmpl, sizeof(tmpl), "template");
    z = must_open(tmpl, ZE, 8);
    bump(z, key_of(5), NOW, NOW + HOUR_US);
    rl2_zone_close(z);
    fd = shm_open(tmpl, O_RDONLY, 0);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    *len = (size_t)st.st_size;
    buf = malloc(*len);
    assert_non_null(buf);
    assert_int_equal(read(fd, buf, *len), (ssize_t)*len);
    close(fd);
    rl2_zone_unlink(tmpl, NULL);
    return buf;
}

/* A creator that takes long (a big zone being reserved) is waited for,
 * not replaced: a child holds the creator's flock for 1.5 s before it
 * writes a valid zone. */
static void
test_slow_creator_is_waited_for_not_replaced(void **state)
{
    char           name[64], c;
    size_t         len;
    unsigned char *image = zone_image(&len);
    rl2_zone_t    *z;
    int            fds[2], fd, status;
    double         t0;
    pid_t          pid;

    (void)state;
    zone_name(name, sizeof(name), "slow");
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || flock(fd, LOCK_EX) != 0 || write(fds[1], "C", 1) != 1) {
            _exit(1);
        }
        usleep(1500000);
        status = write(fd, image, len) == (ssize_t)len ? 0 : 1;
        free(image); /* for valgrind in the child */
        _exit(status);
    }
    assert_int_equal(read(fds[0], &c, 1), 1);
    t0 = now_s();
    z = must_open(name, ZE, 8);
    assert_true(now_s() - t0 > 1.2);
    assert_int_equal(peek(z, key_of(5), NOW), 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(image);
    close(fds[0]);
    close(fds[1]);
    drop(z, name);
}

static void
test_mode_bits_are_applied_despite_umask(void **state)
{
    char        name[64], path[128];
    rl2_zone_t *z = NULL;
    struct stat st;
    mode_t      old = umask(077);

    (void)state;
    zone_name(name, sizeof(name), "mode");
    assert_int_equal(rl2_zone_open(name, ZE, 8, 0640, &z, NULL), RL2_OK);
    umask(old);
    snprintf(path, sizeof(path), "/dev/shm%s", name);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    drop(z, name);
}

/* ---- objects this process did not make ---------------------------------- */

/* An object as another user would plant it: the image of a valid zone
 * holding key 5 at count 1, owned by uid (and gid) with mode. */
static void
plant(const char *name, uid_t uid, mode_t mode)
{
    size_t         len;
    unsigned char *image = zone_image(&len);
    int            fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, image, len), (ssize_t)len);
    assert_int_equal(fchown(fd, uid, (gid_t)uid), 0);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    free(image);
}

static void
shm_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/dev/shm%s", name);
}

/* The threat: a local user creates the name before the server starts, and
 * the server (Apache's parent, as root) would map it and let the owner
 * read and steer every counter.  Refused, left in place, and the message
 * says how to clear it; the same bytes owned by us are a zone again. */
static void
test_object_of_another_user_is_refused_and_left(void **state)
{
    char        name[64], path[128], want[160];
    rl2_zone_t *z = NULL;
    rl2_err_t   err;
    struct stat st;

    (void)state;
    if (geteuid() != 0) {
        skip(); /* giving an object away needs root */
    }
    zone_name(name, sizeof(name), "planted");
    shm_path(path, sizeof(path), name);
    plant(name, 65534, 0600);
    assert_int_equal(rl2_zone_open(name, ZE, 8, 0600, &z, &err), RL2_ERR_STORE);
    assert_null(z);
    assert_non_null(strstr(err.msg, "owned by uid 65534"));
    snprintf(want, sizeof(want), "rm %s", path);
    assert_non_null(strstr(err.msg, want));
    assert_int_equal(rl2_zone_attach(name, &z, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "owned by uid 65534"));
    assert_int_equal(stat(path, &st), 0); /* neither unlinked nor resized */
    assert_int_equal(st.st_uid, 65534);
    assert_int_equal(chown(path, 0, 0), 0);
    z = must_open(name, ZE, 8);
    assert_int_equal(peek(z, key_of(5), NOW), 1);
    drop(z, name);
}

/* Run as another user, the zone root made cannot be opened at all; the
 * message says why. */
static void
test_zone_of_root_is_closed_to_other_users(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    int         status;
    pid_t       pid;

    (void)state;
    if (geteuid() != 0) {
        skip();
    }
    zone_name(name, sizeof(name), "rootzone");
    z = must_open(name, ZE, 8);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rl2_zone_t *mine = NULL;
        rl2_err_t   err;

        if (setgid(65534) != 0 || setuid(65534) != 0) {
            _exit(2);
        }
        _exit(rl2_zone_open(name, ZE, 8, 0600, &mine, &err) == RL2_ERR_SYS
                      && strstr(err.msg, "another user's") != NULL
                  ? 0
                  : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    drop(z, name);
}

/* Our own object with permissions wider than asked: others could read or
 * write it.  Refused by open and attach; a mode the opener asks for is
 * taken. */
static void
test_object_open_to_others_is_refused(void **state)
{
    char        name[64], path[128];
    rl2_zone_t *z;
    rl2_err_t   err;

    (void)state;
    zone_name(name, sizeof(name), "wide");
    shm_path(path, sizeof(path), name);
    z = must_open(name, ZE, 8);
    bump(z, key_of(5), NOW, NOW + HOUR_US);
    rl2_zone_close(z);
    assert_int_equal(chmod(path, 0666), 0);
    assert_int_equal(rl2_zone_open(name, ZE, 8, 0600, &z, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "mode 0666"));
    assert_non_null(strstr(err.msg, "at most 0600"));
    assert_int_equal(rl2_zone_attach(name, &z, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "mode 0666"));
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(rl2_zone_open(name, ZE, 8, 0600, &z, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "mode 0640"));
    assert_int_equal(rl2_zone_open(name, ZE, 8, 0640, &z, &err), RL2_OK);
    assert_int_equal(peek(z, key_of(5), NOW), 1); /* the same zone */
    drop(z, name);
}

static void
test_object_that_is_no_file_is_refused(void **state)
{
    char        name[64], path[128];
    rl2_zone_t *z;
    rl2_err_t   err;

    (void)state;
    zone_name(name, sizeof(name), "fifo");
    shm_path(path, sizeof(path), name);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(rl2_zone_open(name, ZE, 8, 0600, &z, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_int_equal(unlink(path), 0);
    /* A symbolic link or a directory in the name's place: the message
     * says what to remove, not only the C library's word for it. */
    assert_int_equal(symlink("/etc/passwd", path), 0);
    assert_int_equal(rl2_zone_open(name, ZE, 8, 0600, &z, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "is no regular file"));
    assert_non_null(strstr(err.msg, "remove it"));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(rl2_zone_open(name, ZE, 8, 0600, &z, &err), RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "remove it"));
    assert_int_equal(rmdir(path), 0);
}

/* ---- entries: fresh state, expiry, removal ------------------------------ */

static void
test_new_and_expired_keys_get_zeroed_state(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    uint64_t   *c;

    (void)state;
    zone_name(name, sizeof(name), "zero");
    z = must_open(name, ZE, 32);
    assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
    c = rl2_zone_get(z, key_of(1), 100);
    assert_true(c[0] == 0 && c[1] == 0 && c[2] == 0 && c[3] == 0);
    memset(c, 0xff, 32);
    rl2_zone_keep_until(z, c, 200);
    c = rl2_zone_get(z, key_of(1), 200); /* expiry not before now */
    assert_true(c[3] == UINT64_MAX);
    c = rl2_zone_get(z, key_of(1), 201); /* expired: fresh */
    assert_true(c[0] == 0 && c[1] == 0 && c[2] == 0 && c[3] == 0);
    c[0] = 7; /* never kept */
    assert_int_equal(*(uint64_t *)rl2_zone_get(z, key_of(1), 201), 7);
    assert_int_equal(*(uint64_t *)rl2_zone_get(z, key_of(1), 202), 0);
    rl2_zone_unlock(z);
    assert_int_equal(stats_of(z).used, 1);
    drop(z, name);
}

static void
test_keep_until_never_moves_expiry_earlier(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    uint64_t   *c;

    (void)state;
    zone_name(name, sizeof(name), "keep");
    z = must_open(name, ZE, 8);
    assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
    c = rl2_zone_get(z, key_of(1), 100);
    *c = 5;
    rl2_zone_keep_until(z, c, 300);
    rl2_zone_keep_until(z, c, 200);
    rl2_zone_keep_until(z, (char *)c + 1, 900); /* not a state pointer */
    rl2_zone_unlock(z);
    assert_int_equal(peek(z, key_of(1), 250), 5);
    assert_int_equal(peek(z, key_of(1), 300), 5);
    assert_int_equal(peek(z, key_of(1), 301), -1);
    drop(z, name);
}

static void
test_peek_neither_inserts_nor_touches(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    int         i;

    (void)state;
    zone_name(name, sizeof(name), "peek");
    z = must_open(name, ZE, 8);
    assert_int_equal(peek(z, key_of(99), NOW), -1);
    assert_int_equal(stats_of(z).used, 0);
    for (i = 0; i < ZE; i++) {
        bump(z, key_of((uint64_t)i), NOW, NOW + HOUR_US);
    }
    assert_int_equal(peek(z, key_of(0), NOW), 1); /* oldest, peeked */
    bump(z, key_of(ZE), NOW, NOW + HOUR_US);
    assert_int_equal(peek(z, key_of(0), NOW), -1); /* still evicted */
    assert_int_equal(peek(z, key_of(1), NOW), 1);
    drop(z, name);
}

static void
test_remove_forgets_key_and_frees_its_entry(void **state)
{
    char             name[64];
    rl2_zone_t      *z;
    rl2_zone_stats_t s = { 0 };
    int              i;

    (void)state;
    zone_name(name, sizeof(name), "remove");
    z = must_open(name, ZE, 8);
    for (i = 0; i < ZE; i++) {
        bump(z, key_of((uint64_t)i), NOW, NOW + HOUR_US);
    }
    assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
    rl2_zone_remove(z, key_of(5));
    rl2_zone_remove(z, key_of(5)); /* absent: no effect */
    rl2_zone_remove(z, key_of(1000));
    rl2_zone_unlock(z);
    assert_int_equal(stats_of(z).used, ZE - 1);
    assert_int_equal(peek(z, key_of(5), NOW), -1);
    assert_int_equal(bump(z, key_of(5), NOW, NOW + HOUR_US), 1);
    bump(z, key_of(5), NOW, NOW + HOUR_US);
    s = stats_of(z);
    assert_int_equal(s.used, ZE);
    assert_int_equal(s.evictions, 0); /* the freed entry was reused */
    for (i = 0; i < ZE; i++) {
        assert_int_equal(peek(z, key_of((uint64_t)i), NOW), i == 5 ? 2 : 1);
    }
    drop(z, name);
}

/* ---- eviction ----------------------------------------------------------- */

/* Lock, find key, promote it as a refused request does; returns whether
 * the zone held it. */
static int
touch(rl2_zone_t *z, rl2_digest_t key, int64_t now_us)
{
    uint32_t ref;
    int      found;

    if (rl2_zone_lock(z, NULL) != RL2_OK) {
        return 0;
    }
    found = rl2_zone_lookup(z, key, now_us, &ref) != NULL;
    if (found) {
        rl2_zone_touch(z, ref);
    }
    rl2_zone_unlock(z);
    return found;
}

static void
test_new_keys_evict_probation_oldest_first(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    int         i;

    (void)state;
    zone_name(name, sizeof(name), "lru");
    z = must_open(name, ZE, 8);
    for (i = 0; i < ZE; i++) {
        bump(z, key_of((uint64_t)i), NOW + i, NOW + HOUR_US);
    }
    bump(z, key_of(100), NOW + 100, NOW + HOUR_US); /* evicts 0 */
    bump(z, key_of(101), NOW + 101, NOW + HOUR_US); /* evicts 1 */
    assert_int_equal(peek(z, key_of(0), NOW + 101), -1);
    assert_int_equal(peek(z, key_of(1), NOW + 101), -1);
    assert_int_equal(peek(z, key_of(2), NOW + 101), 1);
    assert_int_equal(stats_of(z).evictions, 2);
    assert_int_equal(stats_of(z).used, ZE);
    drop(z, name);
}

/* The rule of zone.c: a key that counted twice, or refused a request, is
 * protected from any number of keys that each count once; it goes back
 * to probation only when half a zone of keys is promoted after it, and is
 * evicted only after half a zone of new keys more. */
static void
test_flood_of_new_keys_never_evicts_a_protected_entry(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    uint64_t    flood = 1000000;
    int         i;

    (void)state;
    zone_name(name, sizeof(name), "slru");
    z = must_open(name, ZE, 8);
    for (i = 0; i < ZE; i++) {
        bump(z, key_of((uint64_t)i), NOW, NOW + HOUR_US);
    }
    bump(z, key_of(0), NOW, NOW + HOUR_US); /* counted twice */
    assert_true(touch(z, key_of(1), NOW));  /* refused a request */
    for (i = 0; i < 100 * ZE; i++) {
        bump(z, key_of(flood++), NOW, NOW + HOUR_US);
    }
    assert_int_equal(peek(z, key_of(0), NOW), 2);
    assert_int_equal(peek(z, key_of(1), NOW), 1);
    assert_int_equal(peek(z, key_of(2), NOW), -1);
    assert_int_equal(stats_of(z).evictions, 100 * ZE);
    /* Half a zone of promotions, less the two: both still protected. */
    for (i = 0; i < ZE / 2 - 2; i++) {
        bump(z, key_of(flood), NOW, NOW + HOUR_US);
        bump(z, key_of(flood++), NOW, NOW + HOUR_US);
    }
    for (i = 0; i < 10 * ZE; i++) {
        bump(z, key_of(flood++), NOW, NOW + HOUR_US);
    }
    assert_int_equal(peek(z, key_of(0), NOW), 2);
    assert_int_equal(peek(z, key_of(1), NOW), 1);
    /* One more promotion demotes key 0, the least recent protected, to
     * the head of probation: it lasts ZE / 2 - 1 new keys, not ZE / 2. */
    bump(z, key_of(flood), NOW, NOW + HOUR_US);
    bump(z, key_of(flood++), NOW, NOW + HOUR_US);
    for (i = 0; i < ZE / 2 - 1; i++) {
        bump(z, key_of(flood++), NOW, NOW + HOUR_US);
    }
    assert_int_equal(peek(z, key_of(0), NOW), 2);
    bump(z, key_of(flood++), NOW, NOW + HOUR_US);
    assert_int_equal(peek(z, key_of(0), NOW), -1);
    assert_int_equal(peek(z, key_of(1), NOW), 1);
    drop(z, name);
}

static void
test_expired_reuse_is_not_an_eviction(void **state)
{
    char             name[64];
    rl2_zone_t      *z;
    rl2_zone_stats_t s = { 0 };
    int              i;

    (void)state;
    zone_name(name, sizeof(name), "expreuse");
    z = must_open(name, ZE, 8);
    for (i = 0; i < ZE; i++) { /* kept 10 us only */
        bump(z, key_of((uint64_t)i), NOW, NOW + 10);
    }
    for (i = 0; i < ZE; i++) { /* 1 s later: all expired */
        bump(z, key_of((uint64_t)(100 + i)), NOW + 1000000, NOW + HOUR_US);
    }
    s = stats_of(z);
    assert_int_equal(s.evictions, 0);
    assert_int_equal(s.used, ZE);
    /* Entries never kept expire as soon as time moves. */
    for (i = 0; i < ZE; i++) {
        assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
        rl2_zone_get(z, key_of((uint64_t)(200 + i)), NOW + 2000000);
        rl2_zone_unlock(z);
    }
    assert_int_equal(stats_of(z).evictions, ZE); /* the kept ones */
    for (i = 0; i < ZE; i++) {
        assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
        rl2_zone_get(z, key_of((uint64_t)(300 + i)), NOW + 2000001);
        rl2_zone_unlock(z);
    }
    assert_int_equal(stats_of(z).evictions, ZE); /* unkept: free */
    drop(z, name);
}

/* An expired entry near the tail of probation, then of protected, is
 * taken before a live one is evicted. */
static void
test_expired_entry_near_tail_beats_live_tail(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    int         i;

    (void)state;
    zone_name(name, sizeof(name), "neartail");
    z = must_open(name, ZE, 8);
    bump(z, key_of(0), NOW, NOW + HOUR_US); /* tail, live */
    bump(z, key_of(1), NOW, NOW + 5);       /* next, expires */
    bump(z, key_of(2), NOW, NOW + 5);       /* protected, expires */
    bump(z, key_of(2), NOW, NOW + 5);
    for (i = 3; i < ZE; i++) {
        bump(z, key_of((uint64_t)i), NOW, NOW + HOUR_US);
    }
    bump(z, key_of(1000), NOW + 10, NOW + HOUR_US); /* takes 1 */
    bump(z, key_of(1001), NOW + 10, NOW + HOUR_US); /* takes 2 */
    assert_int_equal(stats_of(z).evictions, 0);
    assert_int_equal(peek(z, key_of(0), NOW + 10), 1);
    assert_int_equal(peek(z, key_of(1), NOW + 10), -1);
    assert_int_equal(peek(z, key_of(2), NOW + 10), -1);
    bump(z, key_of(1002), NOW + 10, NOW + HOUR_US); /* evicts 0 */
    assert_int_equal(stats_of(z).evictions, 1);
    assert_int_equal(peek(z, key_of(0), NOW + 10), -1);
    drop(z, name);
}

/* The index and both lists against a small model: many collisions in a
 * small index exercise probing and backward-shift deletion; more keys
 * than entries exercise promotion, demotion and eviction. */
enum { MODEL_KEYS = 3 * ZE / 2 };

typedef struct {
    int      prob[ZE]; /* probation: key ids, most recent first */
    int      prot[ZE]; /* protected */
    int      nprob, nprot;
    uint64_t val[MODEL_KEYS];
    uint64_t evictions;
} model_t;

static int
model_find(const int *list, int n, int k)
{
    for (int i = 0; i < n; i++) {
        if (list[i] == k) {
            return i;
        }
    }
    return -1;
}

static void
model_cut(int *list, int *n, int p)
{
    memmove(&list[p], &list[p + 1], (size_t)(*n - p - 1) * sizeof(int));
    (*n)--;
}

static void
model_push(int *list, int *n, int k)
{
    memmove(&list[1], &list[0], (size_t)*n * sizeof(int));
    list[0] = k;
    (*n)++;
}

static void
model_get(model_t *m, int k)
{
    int p;

    if ((p = model_find(m->prot, m->nprot, k)) >= 0) {
        model_cut(m->prot, &m->nprot, p);
    }
    else if ((p = model_find(m->prob, m->nprob, k)) >= 0) {
        model_cut(m->prob, &m->nprob, p);
    }
    else {
        if (m->nprob + m->nprot == ZE) {
            m->nprob--; /* the least recent on probation */
            m->evictions++;
        }
        m->val[k] = 1;
        model_push(m->prob, &m->nprob, k);
        return;
    }
    m->val[k]++;
    model_push(m->prot, &m->nprot, k);
    if (m->nprot > ZE / 2) {
        model_push(m->prob, &m->nprob, m->prot[--m->nprot]);
    }
}

static void
model_remove(model_t *m, int k)
{
    int p;

    if ((p = model_find(m->prot, m->nprot, k)) >= 0) {
        model_cut(m->prot, &m->nprot, p);
    }
    else if ((p = model_find(m->prob, m->nprob, k)) >= 0) {
        model_cut(m->prob, &m->nprob, p);
    }
}

static int
model_holds(const model_t *m, int k)
{
    return model_find(m->prot, m->nprot, k) >= 0
           || model_find(m->prob, m->nprob, k) >= 0;
}

static void
test_index_and_lists_match_a_model(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    model_t     m = { .nprob = 0 };
    uint64_t    rng = 88172645463325252ULL;
    int         op, k;

    (void)state;
    zone_name(name, sizeof(name), "model");
    z = must_open(name, ZE, 8);
    for (op = 0; op < 100000; op++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        k = (int)(rng % MODEL_KEYS);
        if ((rng >> 32) % 8 == 0) {
            assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
            rl2_zone_remove(z, key_of((uint64_t)k));
            rl2_zone_unlock(z);
            model_remove(&m, k);
        }
        else {
            bump(z, key_of((uint64_t)k), NOW, NOW + HOUR_US);
            model_get(&m, k);
        }
        if (op % 97 == 0) {
            for (k = 0; k < MODEL_KEYS; k++) {
                int64_t want = model_holds(&m, k) ? (int64_t)m.val[k] : -1;
                assert_int_equal(peek(z, key_of((uint64_t)k), NOW), want);
            }
            assert_int_equal(stats_of(z).used, m.nprob + m.nprot);
            assert_int_equal(stats_of(z).evictions, m.evictions);
        }
    }
    drop(z, name);
}

/* ---- bounded memory under a flood of keys ----------------------------- */

static void
test_million_keys_keep_memory_fixed_and_hot_key_exact(void **state)
{
    enum { ENTRIES = 10000, KEYS = 1000000, WARMUP = 10000, HOT_EVERY = 100 };
    char             name[64];
    rl2_zone_t      *z;
    rl2_zone_stats_t s = { 0 };
    rl2_digest_t     hot = rl2_digest("hot", 3);
    struct mallinfo2 before = { 0 }, after;
    uint64_t         hot_count = 0, hot_seen = 0, size_changes = 0;
    uint64_t         bytes;
    off_t            st_size;
    double           t0 = now_s();
    int              i;

    (void)state;
    zone_name(name, sizeof(name), "million");
    z = must_open(name, ENTRIES, 8);
    bytes = stats_of(z).bytes;
    st_size = shm_size(name);
    assert_int_equal(st_size, (off_t)bytes);
    hot_seen = bump(z, hot, NOW, NOW + HOUR_US);
    hot_count = 1;
    for (i = 0; i < KEYS; i++) {
        if (i == WARMUP) {
            before = mallinfo2();
        }
        bump(z, key_of((uint64_t)i + 1000), NOW, NOW + HOUR_US);
        if (i % HOT_EVERY == HOT_EVERY - 1) {
            hot_seen = bump(z, hot, NOW, NOW + HOUR_US);
            hot_count++;
        }
        if (i % 50000 == 0) {
            rl2_zone_stats(z, &s, NULL);
            size_changes += s.bytes != bytes || shm_size(name) != st_size;
        }
    }
    after = mallinfo2();
    s = stats_of(z);
    assert_int_equal(size_changes, 0);
    assert_int_equal(s.bytes, bytes);
    assert_int_equal(shm_size(name), st_size);
    assert_int_equal(after.uordblks, before.uordblks);
    assert_int_equal(after.arena, before.arena);
    assert_int_equal(hot_seen, hot_count);
    assert_int_equal(peek(z, hot, NOW), (int64_t)hot_count);
    /* The first ENTRIES - 1 cold keys filled the free entries (the hot key
     * holds one); every later one evicted exactly one. */
    assert_int_equal(s.evictions, KEYS - (ENTRIES - 1));
    assert_int_equal(s.used, ENTRIES);
    print_message("    1e6 keys through %d entries: %.2f s, %" PRIu64
                  " bytes\n",
                  ENTRIES, now_s() - t0, bytes);
    drop(z, name);
}

/* ---- the robust lock ---------------------------------------------------- */

static void
test_killed_lock_holder_does_not_block(void **state)
{
    char        name[64], c;
    rl2_zone_t *z;
    int         fds[2];
    pid_t       pid;
    double      t0;

    (void)state;
    zone_name(name, sizeof(name), "robust");
    z = must_open(name, ZE, 8);
    bump(z, key_of(1), NOW, NOW + HOUR_US);
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (rl2_zone_lock(z, NULL) == RL2_OK) {
            c = 'L';
            (void)!write(fds[1], &c, 1);
        }
        pause(); /* hold it until killed */
        _exit(1);
    }
    assert_int_equal(read(fds[0], &c, 1), 1);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    alarm(5); /* a wedged lock fails fast */
    t0 = now_s();
    assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
    rl2_zone_unlock(z);
    alarm(WATCHDOG_S);
    assert_true(now_s() - t0 < 1.0);
    assert_int_equal(stats_of(z).lock_recoveries, 1);
    assert_int_equal(bump(z, key_of(1), NOW, NOW + HOUR_US), 2);
    assert_int_equal(bump(z, key_of(2), NOW, NOW + HOUR_US), 1);
    assert_int_equal(stats_of(z).lock_recoveries, 1);
    close(fds[0]);
    close(fds[1]);
    drop(z, name);
}

/* Insert and remove under the lock forever, until killed. */
static _Noreturn void
churn_until_killed(rl2_zone_t *z, int fd, int round)
{
    uint64_t k = (uint64_t)round << 40;
    char     c = 'S';
    int      i;

    (void)!write(fd, &c, 1);
    for (;;) {
        if (rl2_zone_lock(z, NULL) != RL2_OK) {
            _exit(1);
        }
        for (i = 0; i < 100; i++) {
            uint64_t *v = rl2_zone_get(z, key_of(k++), NOW);

            *v += 1;
            rl2_zone_keep_until(z, v, NOW + HOUR_US);
            rl2_zone_remove(z, key_of(k - 50));
        }
        rl2_zone_unlock(z);
    }
}

/* Through the API only: every entry holds a findable key with its exact
 * count, removal frees every entry, and nothing is lost or duplicated. */
static void
assert_table_consistent(rl2_zone_t *z, int entries)
{
    uint64_t base = 1ULL << 60, evictions;
    int      i;

    for (i = 0; i < entries; i++) {
        bump(z, key_of(base + (uint64_t)i), NOW, NOW + HOUR_US);
        bump(z, key_of(base + (uint64_t)i), NOW, NOW + HOUR_US);
    }
    for (i = 0; i < entries; i++) {
        assert_int_equal(peek(z, key_of(base + (uint64_t)i), NOW), 2);
    }
    assert_int_equal(stats_of(z).used, entries);
    assert_int_equal(rl2_zone_lock(z, NULL), RL2_OK);
    for (i = 0; i < entries; i++) {
        rl2_zone_remove(z, key_of(base + (uint64_t)i));
    }
    rl2_zone_unlock(z);
    assert_int_equal(stats_of(z).used, 0);
    evictions = stats_of(z).evictions;
    for (i = 0; i < entries; i++) { /* every entry is free again */
        bump(z, key_of((uint64_t)i), NOW, NOW + HOUR_US);
    }
    assert_int_equal(stats_of(z).evictions, evictions);
}

/* Children killed at random points while changing the table under the
 * lock, some of them mid-change: the table must come back consistent. */
static void
test_killed_mid_update_leaves_table_consistent(void **state)
{
    enum { ENTRIES = 64, ROUNDS = 60 };
    char             name[64], c;
    rl2_zone_t      *z;
    rl2_zone_stats_t s = { 0 };
    int              fds[2], r;
    pid_t            pid;

    (void)state;
    zone_name(name, sizeof(name), "midupdate");
    z = must_open(name, ENTRIES, 8);
    assert_int_equal(pipe(fds), 0);
    for (r = 0; r < ROUNDS; r++) {
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            churn_until_killed(z, fds[1], r);
        }
        assert_int_equal(read(fds[0], &c, 1), 1);
        usleep(300 + (useconds_t)(r * 397 % 3000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    s = stats_of(z);
    assert_true(s.lock_recoveries >= 1 && s.lock_recoveries <= ROUNDS);
    assert_true(s.used <= ENTRIES);
    assert_table_consistent(z, ENTRIES);
    close(fds[0]);
    close(fds[1]);
    drop(z, name);
}

/* ---- a corrupt zone ------------------------------------------------------ */

static zone_entry_t *
entry_at(rl2_zone_t *z, uint32_t ref)
{
    return (zone_entry_t *)(z->table + (uint64_t)(ref - 1) * z->geom.stride);
}

/* The reference of the listed entry holding key (0 if none). */
static uint32_t
ref_of(rl2_zone_t *z, uint64_t k)
{
    rl2_digest_t key = key_of(k);

    for (uint32_t ref = 1; ref <= z->geom.entries; ref++) {
        zone_entry_t *e = entry_at(z, ref);

        if (e->list != ZONE_FREE && e->key.hi == key.hi
            && e->key.lo == key.lo) {
            return ref;
        }
    }
    return 0;
}

static uint32_t
slot_of(rl2_zone_t *z, uint32_t ref)
{
    for (uint32_t i = 0; i < z->geom.index_slots; i++) {
        if (z->index[i] == ref) {
            return i;
        }
    }
    fail_msg("entry %u is not indexed", ref);
    return 0;
}

/* Each reference the table reads from the zone, made bad in turn: the
 * operation that meets it stops, the zone is rebuilt from its entries and
 * the operation runs again, so that every key keeps its count; only an
 * entry whose own list field names no list is dropped, because a rebuild
 * trusts nothing else about it.  The watchdog fails a loop. */
static void
test_corrupt_references_are_repaired_not_followed(void **state)
{
    static const int64_t want[10] = { 2, 2, 2, 2, 2, 1, -1, 1, 2, 1 };
    char                 name[64];
    rl2_zone_t          *z;
    uint64_t             k;

    (void)state;
    zone_name(name, sizeof(name), "corrupt");
    z = must_open(name, ZE, 8);
    for (k = 0; k < 10; k++) {
        bump(z, key_of(k), NOW, NOW + HOUR_US);
    }
    for (k = 0; k < 5; k++) { /* 0..4 protected */
        bump(z, key_of(k), NOW, NOW + HOUR_US);
    }
    /* An index slot out of range. */
    z->index[slot_of(z, ref_of(z, 7))] = ZE + 1000;
    assert_int_equal(peek(z, key_of(7), NOW), 1);
    /* An index with no empty slot: the probe for an absent key ends. */
    for (uint32_t i = 0; i < z->geom.index_slots; i++) {
        z->index[i] = ref_of(z, 3);
    }
    assert_int_equal(peek(z, key_of(1000), NOW), -1);
    assert_int_equal(peek(z, key_of(7), NOW), 1);
    /* LRU links out of range, met by a promotion and by a touch. */
    entry_at(z, ref_of(z, 8))->next = ZE + 1;
    assert_int_equal(bump(z, key_of(8), NOW, NOW + HOUR_US), 2);
    entry_at(z, ref_of(z, 2))->prev = UINT32_MAX - 15;
    assert_true(touch(z, key_of(2), NOW));
    /* The free list's head and a list head out of range, met by a new
     * key. */
    z->hdr->free_head = ZE + 5;
    z->hdr->lru_head[ZONE_PROTECTED - 1] = UINT32_MAX;
    assert_int_equal(bump(z, key_of(20), NOW, NOW + HOUR_US), 1);
    /* An entry on no list: dropped when the touch meets it. */
    entry_at(z, ref_of(z, 6))->list = 7;
    touch(z, key_of(6), NOW);
    for (k = 0; k < 10; k++) {
        assert_int_equal(peek(z, key_of(k), NOW), want[k]);
    }
    assert_int_equal(peek(z, key_of(20), NOW), 1);
    assert_int_equal(stats_of(z).used, 10);
    assert_table_consistent(z, ZE);
    drop(z, name);
}

/* ---- concurrency -------------------------------------------------------- */

enum { THREADS = 4, PER_THREAD = 100000 };

static void *
count_thread(void *arg)
{
    rl2_zone_t *z = arg;
    int         i;

    for (i = 0; i < PER_THREAD; i++) {
        if (bump(z, key_of(42), NOW, NOW + HOUR_US) == 0) {
            return (void *)1;
        }
    }
    return NULL;
}

static void
test_threads_count_exactly(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    pthread_t   t[THREADS];
    void       *ret;
    int         i;

    (void)state;
    zone_name(name, sizeof(name), "threads");
    z = must_open(name, ZE, 8);
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&t[i], NULL, count_thread, z), 0);
    }
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], &ret), 0);
        assert_null(ret);
    }
    assert_int_equal(peek(z, key_of(42), NOW), THREADS * PER_THREAD);
    drop(z, name);
}

static void
test_processes_count_exactly(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    pid_t       pid;
    int         status;

    (void)state;
    zone_name(name, sizeof(name), "procs");
    z = must_open(name, ZE, 8);
    pid = fork();
    assert_true(pid >= 0);
    if (count_thread(z) != NULL) {
        if (pid == 0) {
            _exit(1);
        }
        fail_msg("lock failed in the parent");
    }
    if (pid == 0) {
        rl2_zone_close(z);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(peek(z, key_of(42), NOW), 2 * PER_THREAD);
    drop(z, name);
}

/* Processes started at once, each opening by name (the FastCGI case). */
static void
open_race(const char *name, uint32_t entries)
{
    enum { PROCS = 4 };
    int   go[2], i, status;
    pid_t pids[PROCS];
    char  c;

    assert_int_equal(pipe(go), 0);
    for (i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            rl2_zone_t *z = NULL;
            rl2_err_t   err = { "" };

            close(go[1]);
            (void)!read(go[0], &c, 1); /* EOF: everyone starts */
            if (rl2_zone_open(name, entries, 8, 0600, &z, &err) != RL2_OK
                || bump(z, key_of(9), NOW, NOW + HOUR_US) == 0) {
                fprintf(stderr, "child %d: %s\n", i, err.msg);
                _exit(1);
            }
            rl2_zone_close(z);
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]);
    for (i = 0; i < PROCS; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
}

static void
test_processes_opening_at_once_share_one_zone(void **state)
{
    char        name[64];
    rl2_zone_t *z;
    int         round;

    (void)state;
    zone_name(name, sizeof(name), "race");
    for (round = 0; round < 5; round++) {
        open_race(name, 2 * ZE); /* nothing there yet */
        z = must_open(name, 2 * ZE, 8);
        assert_int_equal(peek(z, key_of(9), NOW), 4);
        drop(z, name);
        z = must_open(name, ZE, 8); /* a zone of another geometry */
        rl2_zone_close(z);
        open_race(name, 2 * ZE);
        z = must_open(name, 2 * ZE, 8);
        assert_int_equal(peek(z, key_of(9), NOW), 4);
        drop(z, name);
    }
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_siphash_matches_reference_vectors),
        T(test_siphash128_matches_reference),
        T(test_digest_lengths_distinct),
        T(test_digest_is_stable_with_independent_halves),
        T(test_hash_id_is_16_lowercase_hex_and_keyed),
        T(test_err_set_formats_truncates_and_accepts_null),
        T(test_open_rejects_bad_arguments_with_message),
        T(test_state_is_rounded_to_8_and_aligned),
        T(test_reopen_same_geometry_keeps_counters),
        T(test_reopen_other_geometry_recreates),
        T(test_attach_takes_any_geometry),
        T(test_invalid_object_is_refused_by_attach_replaced_by_open),
        T(test_object_size_must_match_header),
        T(test_half_created_zone_is_replaced_after_a_bounded_wait),
        T(test_slow_creator_is_waited_for_not_replaced),
        T(test_mode_bits_are_applied_despite_umask),
        T(test_object_of_another_user_is_refused_and_left),
        T(test_zone_of_root_is_closed_to_other_users),
        T(test_object_open_to_others_is_refused),
        T(test_object_that_is_no_file_is_refused),
        T(test_new_and_expired_keys_get_zeroed_state),
        T(test_keep_until_never_moves_expiry_earlier),
        T(test_peek_neither_inserts_nor_touches),
        T(test_remove_forgets_key_and_frees_its_entry),
        T(test_new_keys_evict_probation_oldest_first),
        T(test_flood_of_new_keys_never_evicts_a_protected_entry),
        T(test_expired_reuse_is_not_an_eviction),
        T(test_expired_entry_near_tail_beats_live_tail),
        T(test_index_and_lists_match_a_model),
        T(test_million_keys_keep_memory_fixed_and_hot_key_exact),
        T(test_killed_lock_holder_does_not_block),
        T(test_killed_mid_update_leaves_table_consistent),
        T(test_corrupt_references_are_repaired_not_followed),
        T(test_threads_count_exactly),
        T(test_processes_count_exactly),
        T(test_processes_opening_at_once_share_one_zone),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
