/*
 * override_file.c -- the state file that keeps overrides across restarts
 * and reboots.
 *
 * Shared memory goes with a reboot (and with `ratelimit2ctl` removing a
 * zone); the state file does not.  Every change rewrites it whole: the
 * active entries go to "<file>.tmp", which is flushed to disk and renamed
 * over the file, so a crash leaves the old file or the new one, never
 * half of one.  Writers hold the table's lock, so two never write it at
 * once.
 *
 * One line per entry, tab-separated:
 *   KIND TARGET VALUE EXPIRES_US CREATED_US AUTHOR REASON
 * VALUE is the tier name (tier), the factor in ppm (boost, emergency;
 * 0: allow-list only), the mode (mode), "-" otherwise.  AUTHOR and REASON
 * have tab, newline, carriage return and backslash escaped as \t \n \r
 * \\.  Lines starting with '#' are comments.  A line that does not read
 * is an error naming the file and line: the file is ours, and a damaged
 * one must be looked at, not half-trusted.  The same line is the value
 * of an entry's field in the Redis hash (override_redis.c): one writer
 * and one parser for both.
 *
 * A table that mirrors Redis also keeps which state of the hash it
 * mirrors, as the comment line "# redis_mirror EPOCH VERSION" (older
 * readers skip it): after a reboot the host knows whether Redis has
 * changed since, or has lost what the file holds.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base_internal.h"
#include "base/buf.h"
#include "control_internal.h"

#define OVR_FILE_HEAD   "# ratelimit2 overrides 1"
#define OVR_FILE_MIRROR "# redis_mirror "

static const char *const mode_names[] = { [RL2_MODE_ENFORCE] = "enforce",
                                          [RL2_MODE_DRY_RUN] = "dry_run",
                                          [RL2_MODE_OFF] = "off" };

static void
rl2_ovr_put_escaped(rl2_buf_t *b, const char *s)
{
    for (; *s != '\0'; s++) {
        switch (*s) {
        case '\t':
            rl2_buf_str(b, "\\t");
            break;
        case '\n':
            rl2_buf_str(b, "\\n");
            break;
        case '\r':
            rl2_buf_str(b, "\\r");
            break;
        case '\\':
            rl2_buf_str(b, "\\\\");
            break;
        default:
            rl2_buf_char(b, *s);
        }
    }
}

/* Undo rl2_ovr_put_escaped into out[max]; -1 on a bad escape or no room. */
static int
rl2_ovr_unescape(const char *s, char *out, size_t max)
{
    size_t n = 0;

    for (; *s != '\0'; s++) {
        char c = *s;

        if (c == '\\') {
            switch (*++s) {
            case 't':
                c = '\t';
                break;
            case 'n':
                c = '\n';
                break;
            case 'r':
                c = '\r';
                break;
            case '\\':
                c = '\\';
                break;
            default:
                return -1;
            }
        }
        if (n + 1 >= max) {
            return -1;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

int
rl2_ovr_line_format(const rl2_override_t *o, char *buf, size_t size)
{
    char      num[48];
    rl2_buf_t b;

    rl2_buf_init(&b, buf, size);
    rl2_buf_str(&b, rl2_ovr_kind_name(o->kind));
    rl2_buf_char(&b, '\t');
    rl2_buf_str(&b, o->target);
    rl2_buf_char(&b, '\t');
    switch (o->kind) {
    case RL2_OVR_TIER:
        rl2_buf_str(&b, o->tier);
        break;
    case RL2_OVR_BOOST:
    case RL2_OVR_EMERGENCY:
        snprintf(num, sizeof(num), "%" PRIu32, o->factor_ppm);
        rl2_buf_str(&b, num);
        break;
    case RL2_OVR_MODE:
        rl2_buf_str(&b, mode_names[o->mode]);
        break;
    default:
        rl2_buf_char(&b, '-');
    }
    snprintf(num, sizeof(num), "\t%" PRId64 "\t%" PRId64 "\t", o->expires_us,
             o->created_us);
    rl2_buf_str(&b, num);
    rl2_ovr_put_escaped(&b, o->author);
    rl2_buf_char(&b, '\t');
    rl2_ovr_put_escaped(&b, o->reason);
    return b.full ? -1 : (int)b.len;
}

rl2_status_t
rl2_ovr_file_save(const rl2_overrides_t *t, const char *path,
                  const rl2_clock_t *now, rl2_err_t *err)
{
    char  tmp[4096];
    FILE *f;
    int   fd, ok;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
        return rl2_err_set(err, RL2_ERR_INVALID, "state file name too long");
    }
    /* Made anew (O_EXCL): one found there, whoever left it with whatever
     * mode, would be renamed over the state file and stay theirs. */
    if (unlink(tmp) != 0 && errno != ENOENT) {
        return rl2_err_set(err, RL2_ERR_SYS, "overrides state file %s: %s", tmp,
                           strerror(errno));
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        int e = errno;

        if (fd >= 0) {
            close(fd);
        }
        return rl2_err_set(err, RL2_ERR_SYS, "overrides state file %s: %s", tmp,
                           strerror(e));
    }
    fprintf(f, "%s\n", OVR_FILE_HEAD);
    if (t->shm->redis_epoch != 0 || t->shm->redis_version != 0) {
        fprintf(f, "%s%" PRIu64 " %" PRIu64 "\n", OVR_FILE_MIRROR,
                (uint64_t)t->shm->redis_epoch, (uint64_t)t->shm->redis_version);
    }
    for (uint32_t i = 0; i < OVR_SLOTS; i++) {
        const ovr_slot_t *slot = &t->shm->slots[i];
        char              line[RL2_OVR_LINE_MAX];

        if (atomic_load_explicit(&slot->state, memory_order_relaxed) == OVR_USED
            && (slot->o.expires_us == 0 || slot->o.expires_us > now->wall_us)
            && rl2_ovr_line_format(&slot->o, line, sizeof(line)) >= 0) {
            fprintf(f, "%s\n", line);
        }
    }
    ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;

        unlink(tmp);
        return rl2_err_set(err, RL2_ERR_SYS, "overrides state file %s: %s",
                           path, strerror(e));
    }
    return RL2_OK;
}

/* Split line at tabs into at most max fields; returns how many. */
static int
rl2_ovr_split(char *line, char **field, int max)
{
    int n = 0;

    field[n++] = line;
    for (char *p = line; *p != '\0' && n < max; p++) {
        if (*p == '\t') {
            *p = '\0';
            field[n++] = p + 1;
        }
    }
    return n;
}

static int
rl2_ovr_value_parse(rl2_override_t *o, const char *value)
{
    char *end;

    switch (o->kind) {
    case RL2_OVR_TIER:
        return snprintf(o->tier, sizeof(o->tier), "%s", value)
                       < (int)sizeof(o->tier)
                   ? 0
                   : -1;
    case RL2_OVR_BOOST:
    case RL2_OVR_EMERGENCY: {
        unsigned long v = strtoul(value, &end, 10);

        if (*end != '\0' || end == value || v > RL2_OVR_FACTOR_MAX) {
            return -1;
        }
        o->factor_ppm = (uint32_t)v;
        return 0;
    }
    case RL2_OVR_MODE:
        for (int m = RL2_MODE_ENFORCE; m <= RL2_MODE_OFF; m++) {
            if (strcmp(value, mode_names[m]) == 0) {
                o->mode = (rl2_mode_t)m;
                return 0;
            }
        }
        return -1;
    default:
        return strcmp(value, "-") == 0 ? 0 : -1;
    }
}

int
rl2_ovr_line_parse(char *line, rl2_override_t *o)
{
    char     *f[8], *end;
    rl2_err_t err;

    memset(o, 0, sizeof(*o));
    /* Split into one field more than a line has, so that an eighth (a
     * tab the writer would have escaped) is seen, not left in REASON. */
    if (rl2_ovr_split(line, f, 8) != 7
        || (o->kind = rl2_ovr_kind_from_name(f[0])) == 0
        || rl2_override_target(NULL, o->kind, f[1], o, &err) != RL2_OK
        || strcmp(o->target, f[1]) != 0 || rl2_ovr_value_parse(o, f[2]) != 0
        || !rl2_ovr_value_ok(o, &err)) {
        return -1;
    }
    o->expires_us = strtoll(f[3], &end, 10);
    if (*end != '\0' || end == f[3] || o->expires_us < 0) {
        return -1;
    }
    o->created_us = strtoll(f[4], &end, 10);
    if (*end != '\0' || end == f[4]) {
        return -1;
    }
    return rl2_ovr_unescape(f[5], o->author, sizeof(o->author)) == 0
                   && rl2_ovr_unescape(f[6], o->reason, sizeof(o->reason)) == 0
               ? 0
               : -1;
}

/* Open the state file to read, if it is the writers' own: a regular file
 * (not a FIFO, which would block the first process of the host, nor a
 * symbolic link, which may name any file) that no other user may write,
 * and in a directory others may write (/tmp), owned by this user or
 * root.  What it says is trusted: "allow 0.0.0.0/0" lets everyone by.
 * NULL with *st RL2_OK when there is none. */
static FILE *
rl2_ovr_file_open(const char *path, rl2_status_t *st, rl2_err_t *err)
{
    char        dir[4096];
    char       *slash;
    struct stat fs, ds;
    int         fd;
    FILE       *f;
    const char *bad = NULL;

    *st = RL2_OK;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) {
        if (errno != ENOENT) {
            *st = rl2_err_set(err, RL2_ERR_SYS, "overrides state file %s: %s",
                              path, strerror(errno));
        }
        return NULL;
    }
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash != NULL) {
        *(slash == dir ? slash + 1 : slash) = '\0';
    }
    if (fstat(fd, &fs) != 0 || stat(slash != NULL ? dir : ".", &ds) != 0) {
        bad = strerror(errno);
    }
    else if (!S_ISREG(fs.st_mode)) {
        bad = "not a regular file";
    }
    else if (fs.st_mode & S_IWOTH) {
        bad = "any user may write it";
    }
    else if ((ds.st_mode & S_IWOTH) && fs.st_uid != geteuid()
             && fs.st_uid != 0) {
        bad = "another user's, in a directory any user may write";
    }
    if (bad != NULL || (f = fdopen(fd, "r")) == NULL) {
        *st = rl2_err_set(err, RL2_ERR_STORE,
                          "overrides state file %s: refused: %s", path,
                          bad != NULL ? bad : strerror(errno));
        close(fd);
        return NULL;
    }
    return f;
}

/* "# redis_mirror EPOCH VERSION": which state of the Redis hash the
 * entries mirror.  Numbers that do not read are taken as none: the next
 * sync then offers the entries back to Redis, as those of a table that
 * never saw it. */
static void
rl2_ovr_file_mirror(rl2_overrides_t *t, const char *text)
{
    unsigned long long e, v;
    int                end = 0;

    if (sscanf(text, "%llu %llu%n", &e, &v, &end) != 2 || text[end] != '\0') {
        e = v = 0;
    }
    atomic_store_explicit(&t->shm->redis_epoch, (uint64_t)e,
                          memory_order_relaxed);
    atomic_store_explicit(&t->shm->redis_version, (uint64_t)v,
                          memory_order_relaxed);
}

rl2_status_t
rl2_ovr_file_load(rl2_overrides_t *t, const char *path, const rl2_clock_t *now,
                  rl2_err_t *err)
{
    char           line[RL2_OVR_LINE_MAX];
    int            lineno = 0;
    rl2_override_t o, before;
    rl2_status_t   st = RL2_OK;
    FILE          *f = rl2_ovr_file_open(path, &st, err);

    if (f == NULL) {
        return st;
    }
    while (st == RL2_OK && fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);

        lineno++;
        if (len == 0 || line[len - 1] != '\n') {
            st = rl2_err_set(err, RL2_ERR_INVALID,
                             "%s:%d: line too long or not ended", path, lineno);
            break;
        }
        line[len - 1] = '\0';
        if (strncmp(line, OVR_FILE_MIRROR, strlen(OVR_FILE_MIRROR)) == 0) {
            rl2_ovr_file_mirror(t, line + strlen(OVR_FILE_MIRROR));
            continue;
        }
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }
        if (rl2_ovr_line_parse(line, &o) != 0) {
            st = rl2_err_set(err, RL2_ERR_INVALID,
                             "%s:%d: not an override this version reads; "
                             "fix or remove the line (the file is "
                             "rewritten on every change)",
                             path, lineno);
            break;
        }
        if (o.expires_us == 0 || o.expires_us > now->wall_us) {
            st = rl2_ovr_put(t, &o, &before, err);
        }
    }
    fclose(f);
    return st;
}
