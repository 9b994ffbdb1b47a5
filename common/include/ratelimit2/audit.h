/*
 * audit.h -- the audit trail of the runtime overrides (overrides.h): who
 * changed what, from where, when, from which value to which, and why.
 *
 * Every change is one line appended to a local file, as JSON Lines:
 *
 *   {"time":"2026-12-06T10:00:00.123456Z","author":"root","origin":"ctl",
 *    "verb":"ban","kind":"ban","target":"203.0.113.0/24",
 *    "before":null,
 *    "after":{"value":"banned","expires":"2026-12-06T11:00:00.123456Z",
 *             "reason":"INC-1234","author":"root"},
 *    "ttl_s":3600,"reason":"INC-1234"}
 *
 * (one line in the file).  time is the wall clock of the change, UTC,
 * to the microsecond; before and after are the entry the change replaced
 * or removed and the one it set (null: none), with the value as
 * rl2_ovr_value_text() writes it and expires null for no end; ttl_s is
 * what after had left when it was set (null: no end, or a removal).
 * Strings are JSON-escaped (\" \\ \n \r \t, \u00XX for other control
 * bytes; a byte that is not part of valid UTF-8 becomes \ufffd), so one
 * change is always one line.  A line is written with one write() on a
 * file opened with O_APPEND, so lines of processes writing at once never
 * mix.  The file is made with mode 0660, whatever the umask: it names
 * clients, so others may not read it, and both ratelimit2ctl (root) and
 * the web server's HTTP admin interface (the group of the setgid state
 * directory, /var/lib/ratelimit2, root:www-data 2770) append to it.
 *
 * The same change goes to syslog as one line, facility authpriv (the
 * conf may say otherwise), severity notice, in the format of the alerts
 * (alert.h):
 *
 *   ratelimit2: event=override target=203.0.113.0/24 kind=ban verb=ban
 *     origin=ctl author=root before=- after=banned
 *     expires=2026-12-06T11:00:00.123456Z reason=INC-1234
 *
 * Syslog is a copy: a line it does not take is no error of the change
 * (rl2_audit_syslog_error says why), while a line the file does not take
 * is.
 *
 * With Redis (conf.redis, or a table's Redis side for its automatic
 * bans), every entry is first added to a stream beside the override
 * hash, "{NAME}:audit" where NAME is the redis option overrides_key
 * (default "{rl2:overrides}:audit"): the hash's tag, so the same Cluster
 * slot.  Each stream entry has one field, "entry", the line above
 * without its newline.  The stream is the fleet's one trail; it is
 * never trimmed (an entry takes about 500 bytes of Redis's memory; a
 * million changes, about 500 MB: XTRIM what has been archived).  The file, when
 * a path is given, is still written: the host's copy of the changes made from
 * that host.  A part that does not take an entry (the stream, the file) does
 * not keep it from the others; the record of a change returns the first
 * failure, saying where the entry is, and the syslog line gets
 * audit_error=WHY.
 *
 * An entry that expires is not a change and writes no line; nor does a
 * removal of what was not there.
 */
#ifndef RL2_AUDIT_H
#define RL2_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/overrides.h"
#include "ratelimit2/status.h"

/* Where a change came from. */
typedef enum {
    RL2_AUDIT_CTL = 1, /* "ctl": ratelimit2ctl */
    RL2_AUDIT_ADMIN,   /* "admin": the HTTP admin interface */
    RL2_AUDIT_AUTO,    /* "auto": an automatic ban */
    RL2_AUDIT_ORIGINS
} rl2_audit_origin_t;

#define RL2_AUDIT_VERB_MAX 24 /* [a-z_-], NUL included */
#define RL2_AUDIT_LINE_MAX 8192

typedef struct {
    int64_t            time_us; /* wall clock, µs since the epoch */
    char               author[RL2_OVR_AUTHOR_MAX];
    rl2_audit_origin_t origin;
    char               verb[RL2_AUDIT_VERB_MAX]; /* "ban", "unban", ... */
    rl2_ovr_kind_t     kind;
    char               target[RL2_OVR_TARGET_MAX]; /* canonical */
    rl2_override_t     before;                     /* kind 0: nothing was set */
    rl2_override_t     after;                      /* kind 0: removed */
    char               reason[RL2_OVR_REASON_MAX];
} rl2_audit_entry_t;

typedef struct {
    const char *path;          /* the JSON Lines file; NULL: none */
    const char *syslog_socket; /* "/dev/log"; NULL: no syslog */
    const char *ident;         /* "ratelimit2" */
    int         facility;      /* LOG_AUTHPRIV */
    /* The stream's server (its overrides_key names the stream); NULL:
     * no stream.  Connections of the audit's own, made at the first
     * entry; kept by the caller until rl2_audit_close. */
    const rl2_redis_conf_t *redis;
} rl2_audit_conf_t;

typedef struct rl2_audit rl2_audit_t;

/* "ctl", "admin", "auto"; NULL for unknown. */
const char *rl2_audit_origin_name(rl2_audit_origin_t origin);

void rl2_audit_conf_default(rl2_audit_conf_t *conf);

/* Open (create, mode 0660) the file for appending now, so that a file
 * that cannot be written is known before any change is made.  *out is
 * freed by rl2_audit_close(). */
rl2_status_t rl2_audit_open(const rl2_audit_conf_t *conf, rl2_audit_t **out,
                            rl2_err_t *err);
void         rl2_audit_close(rl2_audit_t *a);

/* Why syslog did not take the last line, or NULL when it did. */
const char *rl2_audit_syslog_error(const rl2_audit_t *a);

/* e as its line, newline included, into buf; its length, or 0 when it
 * does not fit (RL2_AUDIT_LINE_MAX always does). */
size_t rl2_audit_format(const rl2_audit_entry_t *e, char *buf, size_t size);

/* Every entry of the file, oldest first, handed to each(); a non-zero
 * return from it stops the walk (RL2_OK).  A missing file has none.  A
 * last line without its newline (a writer that stopped half-way) is left
 * out; any other line that does not read stops the walk with
 * RL2_ERR_INVALID, "FILE:LINE: what" (entries before it were handed
 * over).  *n (may be NULL) gets how many were. */
typedef int (*rl2_audit_each_fn)(const rl2_audit_entry_t *e, void *ctx);

rl2_status_t rl2_audit_read(const char *path, rl2_audit_each_fn each, void *ctx,
                            size_t *n, rl2_err_t *err);

/* Every entry of the stream of conf's server (see above), oldest
 * first, from the stream id since_ms (Redis's clock, ms since the
 * epoch; 0: all), as rl2_audit_read does with the file: read in batches
 * of 1,000 (XRANGE), an entry that does not read stopping the walk with
 * RL2_ERR_INVALID "STREAM ID: what"; no stream has none. */
rl2_status_t rl2_audit_read_redis(const rl2_redis_conf_t *conf,
                                  int64_t since_ms, rl2_audit_each_fn each,
                                  void *ctx, size_t *n, rl2_err_t *err);

/* "2026-12-06T10:00:00.123456Z" (27 bytes and a NUL). */
void rl2_audit_time_format(int64_t wall_us, char buf[28]);

#endif /* RL2_AUDIT_H */
