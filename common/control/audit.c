/*
 * audit.c -- the audit trail of the runtime overrides: each change as one
 * JSON line appended to a local file, and as one syslog line (audit.h).
 *
 * The file is opened once, before the change is made, with O_APPEND: a
 * file that cannot be written stops the change before it happens, and
 * every line is one write() at the end of the file, which the kernel does
 * not interleave with another process's.  Syslog goes through the alert
 * facility (base/alert.c): its own datagram per line, never openlog(),
 * so an audit from inside a web server leaves the server's own log ident
 * alone; not rate-limited, since every change must be seen.
 *
 * With Redis the entry goes first to the stream beside the override
 * hash (override_redis.c writes it), the fleet's one trail; the file is
 * then the host's copy.  A part that does not take the entry does not
 * keep it from the others, and its syslog line says what it misses.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit2/audit.h"
#include "base/base_internal.h"
#include "base/buf.h"
#include "control_internal.h"

struct rl2_audit {
    int              fd;    /* the file, O_APPEND; -1: none */
    char            *path;  /* for messages */
    rl2_alert_t     *alert; /* syslog; NULL: none */
    rl2_ovr_redis_t *redis; /* the stream, connections of its own; NULL */
    rl2_err_t        syslog_err;
    int              syslog_failed;
};

/* The trail of a table's automatic bans: what to open, opened by the
 * first ban of the process (rl2_ovr_audit_auto), under lock. */
struct rl2_ovr_audit {
    pthread_mutex_t lock;
    char           *path; /* NULL: no file */
    char           *syslog_socket;
    char           *ident;
    int             facility;
    rl2_audit_t    *a; /* NULL until the first ban */
};

static const char *const origin_names[RL2_AUDIT_ORIGINS] = {
    [RL2_AUDIT_CTL] = "ctl",
    [RL2_AUDIT_ADMIN] = "admin",
    [RL2_AUDIT_AUTO] = "auto",
};

const char *
rl2_audit_origin_name(rl2_audit_origin_t origin)
{
    return origin > 0 && origin < RL2_AUDIT_ORIGINS ? origin_names[origin]
                                                    : NULL;
}

rl2_audit_origin_t
rl2_audit_origin_from_name(const char *name)
{
    for (int o = 1; name != NULL && o < RL2_AUDIT_ORIGINS; o++) {
        if (strcmp(name, origin_names[o]) == 0) {
            return (rl2_audit_origin_t)o;
        }
    }
    return 0;
}

/* ---- time ------------------------------------------------------------------
 */

void
rl2_audit_time_format(int64_t wall_us, char buf[28])
{
    /* Floor division, so that a time before the epoch still has its
     * microseconds in 0..999999. */
    int64_t   s = wall_us / RL2_US_PER_S - (wall_us % RL2_US_PER_S < 0);
    int64_t   us = wall_us - s * RL2_US_PER_S;
    time_t    t = (time_t)s;
    struct tm tm;
    char      wide[64]; /* what the compiler cannot bound, then cut */

    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999
        || tm.tm_year + 1900 < 0) {
        snprintf(buf, 28, "0000-00-00T00:00:00.000000Z");
        return;
    }
    snprintf(wide, sizeof(wide), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)us);
    snprintf(buf, 28, "%.27s", wide);
}

/* ---- the JSON line ---------------------------------------------------------
 */

size_t
rl2_utf8_len(const unsigned char *s, size_t room)
{
    unsigned c = s[0];
    size_t   n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    unsigned cp;

    if (n == 0 || c > 0xf4 || n > room) {
        return 0;
    }
    cp = c & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
        || (n == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
        return 0;
    }
    return n;
}

void
rl2_json_string(rl2_buf_t *b, const char *str)
{
    static const char    hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    size_t               n;

    rl2_buf_char(b, '"');
    while (*s != '\0') {
        if (*s == '"' || *s == '\\') {
            rl2_buf_char(b, '\\');
            rl2_buf_char(b, (char)*s++);
        }
        else if (*s == '\n' || *s == '\r' || *s == '\t') {
            rl2_buf_str(b, *s == '\n' ? "\\n" : *s == '\r' ? "\\r" : "\\t");
            s++;
        }
        else if (*s < 0x20 || *s == 0x7f) {
            char u[6] = { '\\', 'u', '0', '0', hex[*s >> 4], hex[*s & 15] };

            rl2_buf_mem(b, u, sizeof(u));
            s++;
        }
        else if (*s < 0x80) {
            rl2_buf_char(b, (char)*s++);
        }
        else if ((n = rl2_utf8_len(s, SIZE_MAX)) > 0) {
            rl2_buf_mem(b, (const char *)s, n);
            s += n;
        }
        else {
            /* Not text: the line stays valid JSON, the byte is lost. */
            rl2_buf_str(b, "\\ufffd");
            s++;
        }
    }
    rl2_buf_char(b, '"');
}

static void
rl2_json_key(rl2_buf_t *b, const char *key, int first)
{
    if (!first) {
        rl2_buf_char(b, ',');
    }
    rl2_buf_char(b, '"');
    rl2_buf_str(b, key);
    rl2_buf_str(b, "\":");
}

static void
rl2_json_time_or_null(rl2_buf_t *b, int64_t wall_us)
{
    char t[28];

    if (wall_us == 0) {
        rl2_buf_str(b, "null");
        return;
    }
    rl2_audit_time_format(wall_us, t);
    rl2_buf_char(b, '"');
    rl2_buf_str(b, t);
    rl2_buf_char(b, '"');
}

/* One side of a change: null, or the entry's value, end, reason and
 * author. */
void
rl2_json_side(rl2_buf_t *b, const rl2_override_t *o)
{
    char value[RL2_OVR_NAME_MAX + 16];

    if (o->kind == 0) {
        rl2_buf_str(b, "null");
        return;
    }
    rl2_ovr_value_text(o, value, sizeof(value));
    rl2_buf_char(b, '{');
    rl2_json_key(b, "value", 1);
    rl2_json_string(b, value);
    rl2_json_key(b, "expires", 0);
    rl2_json_time_or_null(b, o->expires_us);
    rl2_json_key(b, "reason", 0);
    rl2_json_string(b, o->reason);
    rl2_json_key(b, "author", 0);
    rl2_json_string(b, o->author);
    rl2_buf_char(b, '}');
}

/* What the set entry had left when it was set, in whole seconds rounded
 * up; -1: no end, or nothing set. */
int64_t
rl2_audit_ttl_s(const rl2_audit_entry_t *e)
{
    if (e->after.kind == 0 || e->after.expires_us == 0) {
        return -1;
    }
    int64_t left = e->after.expires_us - e->time_us;

    return left <= 0 ? 0 : (left + RL2_US_PER_S - 1) / RL2_US_PER_S;
}

size_t
rl2_audit_format(const rl2_audit_entry_t *e, char *buf, size_t size)
{
    rl2_buf_t b;
    int64_t   ttl = rl2_audit_ttl_s(e);
    char      t[28];

    if (size == 0) {
        return 0;
    }
    rl2_audit_time_format(e->time_us, t);
    rl2_buf_init(&b, buf, size);
    rl2_buf_char(&b, '{');
    rl2_json_key(&b, "time", 1);
    rl2_json_string(&b, t);
    rl2_json_key(&b, "author", 0);
    rl2_json_string(&b, e->author);
    rl2_json_key(&b, "origin", 0);
    rl2_json_string(&b, rl2_audit_origin_name(e->origin)
                            ? rl2_audit_origin_name(e->origin)
                            : "?");
    rl2_json_key(&b, "verb", 0);
    rl2_json_string(&b, e->verb);
    rl2_json_key(&b, "kind", 0);
    rl2_json_string(&b, rl2_ovr_kind_name(e->kind) ? rl2_ovr_kind_name(e->kind)
                                                   : "?");
    rl2_json_key(&b, "target", 0);
    rl2_json_string(&b, e->target);
    rl2_json_key(&b, "before", 0);
    rl2_json_side(&b, &e->before);
    rl2_json_key(&b, "after", 0);
    rl2_json_side(&b, &e->after);
    rl2_json_key(&b, "ttl_s", 0);
    if (ttl < 0) {
        rl2_buf_str(&b, "null");
    }
    else {
        rl2_buf_i64(&b, ttl);
    }
    rl2_json_key(&b, "reason", 0);
    rl2_json_string(&b, e->reason);
    rl2_buf_str(&b, "}\n");
    return b.full ? 0 : b.len;
}

/* ---- syslog ----------------------------------------------------------------
 */

static void
rl2_audit_syslog(rl2_audit_t *a, const rl2_audit_entry_t *e,
                 const char *missing)
{
    char before[RL2_OVR_NAME_MAX + 16] = "-", after[sizeof(before)] = "-";
    char expires[28] = "-";

    if (a->alert == NULL) {
        return;
    }
    if (e->before.kind != 0) {
        rl2_ovr_value_text(&e->before, before, sizeof(before));
    }
    if (e->after.kind != 0) {
        rl2_ovr_value_text(&e->after, after, sizeof(after));
        if (e->after.expires_us != 0) {
            rl2_audit_time_format(e->after.expires_us, expires);
        }
        else {
            snprintf(expires, sizeof(expires), "never");
        }
    }
    /* The target first: as in every alert, what names a client comes
     * before anything else. */
    const rl2_alert_field_t f[] = {
        { "target", e->target }, { "kind", rl2_ovr_kind_name(e->kind) },
        { "verb", e->verb },     { "origin", rl2_audit_origin_name(e->origin) },
        { "author", e->author }, { "before", before },
        { "after", after },      { "expires", expires },
        { "reason", e->reason }, { "audit_error", missing },
    };

    /* audit_error only when a part of the trail did not take the
     * entry. */
    a->syslog_failed =
        rl2_alert_emit(a->alert, RL2_ALERT_OVERRIDE, f,
                       sizeof(f) / sizeof(f[0]) - (missing == NULL), 0,
                       &a->syslog_err)
        != RL2_OK;
}

const char *
rl2_audit_syslog_error(const rl2_audit_t *a)
{
    return a != NULL && a->syslog_failed ? a->syslog_err.msg : NULL;
}

/* ---- the file --------------------------------------------------------------
 */

static int
rl2_audit_verb_ok(const char *verb)
{
    size_t n = strnlen(verb, RL2_AUDIT_VERB_MAX);

    return n > 0 && n < RL2_AUDIT_VERB_MAX
           && strspn(verb, "abcdefghijklmnopqrstuvwxyz_-") == n;
}

/* One write() of the line: a signal may not cut a regular file's write,
 * and anything short of the whole line is an error to report. */
static rl2_status_t
rl2_audit_append(rl2_audit_t *a, const char *line, size_t len, rl2_err_t *err)
{
    ssize_t w;

    do {
        w = write(a->fd, line, len);
    } while (w < 0 && errno == EINTR);
    if (w != (ssize_t)len) {
        return rl2_err_set(err, RL2_ERR_SYS, "audit file %s: %s", a->path,
                           w < 0 ? strerror(errno) : "short write");
    }
    return RL2_OK;
}

rl2_status_t
rl2_audit_record_to(rl2_audit_t *a, const rl2_audit_entry_t *e,
                    rl2_ovr_redis_t *stream, const char *note, rl2_err_t *err)
{
    char         line[RL2_AUDIT_LINE_MAX], missing[2 * RL2_ERR_MAX + 64];
    size_t       len;
    rl2_err_t    s_err, f_err;
    rl2_status_t s_st = RL2_OK, f_st = RL2_OK;

    if (rl2_ovr_kind_name(e->kind) == NULL
        || rl2_audit_origin_name(e->origin) == NULL
        || !rl2_audit_verb_ok(e->verb)
        || (e->before.kind == 0 && e->after.kind == 0)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "audit: an entry needs a kind, an origin, a verb "
                           "of [a-z_-] and a value before or after");
    }
    if ((len = rl2_audit_format(e, line, sizeof(line))) == 0) {
        return rl2_err_set(err, RL2_ERR_INVALID, "audit: entry too long");
    }
    if (stream == NULL) {
        stream = a->redis;
    }
    /* The stream first: with Redis it is the trail the fleet reads. */
    if (stream != NULL) {
        s_st = rl2_ovr_redis_audit_add(stream, line, len - 1, &s_err);
    }
    if (a->fd >= 0) {
        f_st = rl2_audit_append(a, line, len, &f_err);
    }
    /* The change was made: syslog has it whatever the rest took. */
    snprintf(missing, sizeof(missing), "%s%s%s%s%s", note != NULL ? note : "",
             note != NULL && s_st != RL2_OK ? "; " : "",
             s_st != RL2_OK ? s_err.msg : "",
             (note != NULL || s_st != RL2_OK) && f_st != RL2_OK ? "; " : "",
             f_st != RL2_OK ? f_err.msg : "");
    rl2_audit_syslog(a, e, missing[0] != '\0' ? missing : NULL);
    if (s_st != RL2_OK) {
        return rl2_err_set(err, s_st, "audit stream: %s (%s)", s_err.msg,
                           a->fd >= 0 && f_st == RL2_OK
                               ? "the entry is in the audit file"
                               : "the entry is in no audit file");
    }
    if (f_st != RL2_OK) {
        return rl2_err_set(err, f_st, "%s%s", f_err.msg,
                           stream != NULL ? " (the entry is in the audit "
                                            "stream)"
                                          : "");
    }
    return RL2_OK;
}

rl2_status_t
rl2_audit_record(rl2_audit_t *a, const rl2_audit_entry_t *e, rl2_err_t *err)
{
    return rl2_audit_record_to(a, e, NULL, NULL, err);
}

void
rl2_audit_conf_default(rl2_audit_conf_t *conf)
{
    conf->path = NULL;
    conf->syslog_socket = "/dev/log";
    conf->ident = "ratelimit2";
    conf->facility = LOG_AUTHPRIV;
    conf->redis = NULL;
}

static rl2_status_t
rl2_audit_open_syslog(const rl2_audit_conf_t *conf, rl2_audit_t *a,
                      rl2_err_t *err)
{
    rl2_alert_conf_t ac;

    if (conf->syslog_socket == NULL) {
        return RL2_OK;
    }
    rl2_alert_conf_default(&ac);
    ac.socket_path = conf->syslog_socket;
    ac.ident = conf->ident != NULL ? conf->ident : "ratelimit2";
    ac.facility = conf->facility;
    ac.interval_ms = 0; /* every change */
    ac.shm_name = NULL; /* nothing to share without a rate limit */
    return rl2_alert_open(&ac, &a->alert, err);
}

/* The file for appending; -1 with errno.  One this call makes is
 * group-writable (0660) whatever the umask (root's 022 would leave
 * 0640): ratelimit2ctl (root) and the web server's HTTP admin interface
 * (its group, which the setgid state directory gives the file) append
 * to the same file, whichever of them made it. */
static int
rl2_audit_open_file(const char *path)
{
    const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW;
    int       fd = open(path, flags | O_CREAT | O_EXCL, 0660);

    if (fd < 0) {
        return errno == EEXIST ? open(path, flags) : -1;
    }
    if (fchmod(fd, 0660) != 0) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

rl2_status_t
rl2_audit_open(const rl2_audit_conf_t *conf, rl2_audit_t **out, rl2_err_t *err)
{
    rl2_audit_t *a = calloc(1, sizeof(*a));
    rl2_status_t st;

    *out = NULL;
    if (a == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "audit: out of memory");
    }
    a->fd = -1;
    if (conf->path != NULL) {
        if ((a->path = strdup(conf->path)) == NULL) {
            rl2_audit_close(a);
            return rl2_err_set(err, RL2_ERR_NOMEM, "audit: out of memory");
        }
        a->fd = rl2_audit_open_file(conf->path);
        if (a->fd < 0) {
            st = rl2_err_set(err, RL2_ERR_SYS, "audit file %s: %s", conf->path,
                             strerror(errno));
            rl2_audit_close(a);
            return st;
        }
    }
    if ((st = rl2_audit_open_syslog(conf, a, err)) != RL2_OK) {
        rl2_audit_close(a);
        return st;
    }
    if (conf->redis != NULL) {
        /* Connections of its own, made at the first entry. */
        rl2_ovr_redis_conf_t rc = { .key = conf->redis->overrides_key,
                                    .conf = conf->redis };

        if ((st = rl2_ovr_redis_new(&rc, &a->redis, err)) != RL2_OK) {
            rl2_audit_close(a);
            return st;
        }
    }
    *out = a;
    return RL2_OK;
}

void
rl2_audit_close(rl2_audit_t *a)
{
    if (a == NULL) {
        return;
    }
    if (a->fd >= 0) {
        close(a->fd);
    }
    rl2_alert_close(a->alert);
    rl2_ovr_redis_free(a->redis);
    free(a->path);
    free(a);
}

/* ---- a table's automatic bans ---------------------------------------------
 */

static char *
rl2_strdup_or_null(const char *s, int *failed)
{
    char *d = s != NULL ? strdup(s) : NULL;

    *failed |= s != NULL && d == NULL;
    return d;
}

rl2_status_t
rl2_overrides_audit_attach(rl2_overrides_t *t, const rl2_audit_conf_t *conf,
                           rl2_err_t *err)
{
    rl2_ovr_audit_t *au;
    int              failed = 0;

    if (t->audit != NULL) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "overrides %s: already has an audit trail", t->name);
    }
    if ((au = calloc(1, sizeof(*au))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "audit: out of memory");
    }
    pthread_mutex_init(&au->lock, NULL);
    au->path = rl2_strdup_or_null(conf->path, &failed);
    au->syslog_socket = rl2_strdup_or_null(conf->syslog_socket, &failed);
    au->ident = rl2_strdup_or_null(conf->ident, &failed);
    au->facility = conf->facility;
    if (failed) {
        rl2_ovr_audit_free(au);
        return rl2_err_set(err, RL2_ERR_NOMEM, "audit: out of memory");
    }
    t->audit = au;
    return RL2_OK;
}

void
rl2_ovr_audit_free(rl2_ovr_audit_t *au)
{
    if (au == NULL) {
        return;
    }
    rl2_audit_close(au->a);
    pthread_mutex_destroy(&au->lock);
    free(au->path);
    free(au->syslog_socket);
    free(au->ident);
    free(au);
}

/* Under au->lock: the trail opened, or, when its file cannot be, one
 * without the file for this entry only (*once, the caller's to close),
 * *why saying what the file said. */
static rl2_audit_t *
rl2_ovr_audit_get(rl2_ovr_audit_t *au, rl2_audit_t **once, rl2_err_t *why)
{
    rl2_audit_conf_t conf;
    rl2_err_t        ignored;

    *once = NULL;
    if (au->a != NULL) {
        return au->a;
    }
    rl2_audit_conf_default(&conf);
    conf.path = au->path;
    conf.syslog_socket = au->syslog_socket;
    conf.ident = au->ident;
    conf.facility = au->facility;
    if (rl2_audit_open(&conf, &au->a, why) == RL2_OK) {
        return au->a;
    }
    /* Tried again at the next ban: the file may be made writable. */
    conf.path = NULL;
    return rl2_audit_open(&conf, once, &ignored) == RL2_OK ? *once : NULL;
}

void
rl2_ovr_audit_auto(rl2_overrides_t *t, const rl2_override_t *before,
                   const rl2_override_t *after, const rl2_clock_t *now)
{
    rl2_ovr_audit_t  *au = t->audit;
    rl2_audit_entry_t e;
    rl2_audit_t      *a, *once;
    rl2_err_t         why, err;

    if (au == NULL) {
        return;
    }
    memset(&e, 0, sizeof(e));
    e.time_us = now->wall_us;
    snprintf(e.author, sizeof(e.author), "%s", after->author);
    e.origin = RL2_AUDIT_AUTO;
    snprintf(e.verb, sizeof(e.verb), "ban");
    e.kind = after->kind;
    snprintf(e.target, sizeof(e.target), "%s", after->target);
    e.before = *before;
    e.after = *after;
    snprintf(e.reason, sizeof(e.reason), "%s", after->reason);
    why.msg[0] = '\0';
    /* Bans are rare: the lock orders the lazy open and the writes of
     * this process's threads; a request that bans nothing never comes
     * here. */
    pthread_mutex_lock(&au->lock);
    if ((a = rl2_ovr_audit_get(au, &once, &why)) != NULL) {
        (void)rl2_audit_record_to(a, &e, t->redis,
                                  once != NULL ? why.msg : NULL, &err);
    }
    pthread_mutex_unlock(&au->lock);
    rl2_audit_close(once);
}

void
rl2_ovr_audit_line(rl2_overrides_t *t, rl2_alert_kind_t kind,
                   const rl2_alert_field_t *fields, size_t n)
{
    rl2_ovr_audit_t *au = t->audit;
    rl2_audit_t     *a, *once;
    rl2_err_t        why, err;

    if (au == NULL) {
        return;
    }
    why.msg[0] = '\0';
    /* As for a ban: rare, and the lock orders the lazy open. */
    pthread_mutex_lock(&au->lock);
    if ((a = rl2_ovr_audit_get(au, &once, &why)) != NULL && a->alert != NULL) {
        (void)rl2_alert_emit(a->alert, kind, fields, n, 0, &err);
    }
    pthread_mutex_unlock(&au->lock);
    rl2_audit_close(once);
}
