/*
 * accesslog.h -- web servers' access logs read back, one request a line
 * (ratelimit2ctl coverage; any subcommand that replays traffic).
 *
 * The formats read are the ones servers write unless told otherwise:
 *
 *   common    Apache's "%h %l %u %t \"%r\" %>s %b"
 *   combined  the same plus "\"%{Referer}i\" \"%{User-Agent}i\"": Apache's
 *             combined and nginx's default (log_format combined)
 *   lighttpd  lighttpd's default, combined with the Host (%V) in place of
 *             the identd field: "%h %V %u %t \"%r\" %>s %b ..."
 *
 * Every byte of a log came from a client: a line is parsed in place
 * within its length, its escapes (\" \\ \xHH, as Apache and nginx write
 * them) decoded, and a line that does not read is skipped and counted
 * with its number, never guessed at.  Files are read through zlib, so a
 * rotated "access.log.2.gz" is read as it is; "-" is standard input.
 */
#ifndef RL2_CTL_ACCESSLOG_H
#define RL2_CTL_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    RL2_ALOG_AUTO = 0, /* each file's first valid line decides */
    RL2_ALOG_COMMON,
    RL2_ALOG_COMBINED, /* Apache combined, nginx combined */
    RL2_ALOG_LIGHTTPD,
    RL2_ALOG_N
} rl2_alog_format_t;

/* "auto", "common", "combined", "lighttpd" */
extern const char *const rl2_alog_format_names[RL2_ALOG_N];

/* --format NAME: one of the names above, or "apache" (combined) and
 * "nginx" (combined); -1 when none. */
int rl2_alog_format_parse(const char *name);

/* The longest line read (a longer one is skipped, counted as too long):
 * a request line past the 8 KiB most servers accept, and long Referer and
 * User-Agent values, fit. */
#define RL2_ALOG_LINE_MAX (64 * 1024)
/* How many skipped lines' numbers are kept for the report. */
#define RL2_ALOG_BAD_KEPT 5

/* One request.  The strings point into the reader's line buffer (or the
 * line rl2_alog_parse was given) and live until the next line is read.
 * A field the log wrote as "-" is NULL. */
typedef struct {
    int64_t     time_us;  /* since the epoch, the log's UTC offset applied */
    const char *client;   /* %h: an address, or a name (HostnameLookups) */
    const char *user;     /* %u, or NULL */
    const char *method;   /* "GET" */
    const char *target;   /* the request target as logged: path and
                             query, escapes of the request not decoded */
    const char *protocol; /* "HTTP/1.1", or NULL (HTTP/0.9) */
    int         status;   /* 100 to 999 */
    int64_t     bytes;    /* -1: "-" */
    const char *referer;  /* combined and lighttpd, or NULL */
    const char *agent;    /* combined and lighttpd, or NULL */
    const char *host;     /* lighttpd's %V, or NULL */
} rl2_alog_entry_t;

/* Parse one line (without its newline; line[len] must be writable: a
 * NUL goes there) of `format` in place: line is changed (escapes decoded,
 * fields cut).  A format of RL2_ALOG_AUTO reads the line as whichever format it
 * is in and says which in *found. Returns 0, or -1 with *why saying what did
 * not read. */
int rl2_alog_parse(char *line, size_t len, rl2_alog_format_t format,
                   rl2_alog_entry_t *e, rl2_alog_format_t *found,
                   const char **why);

/* What reading a file met. */
typedef struct {
    uint64_t          lines;    /* every line, read or skipped */
    uint64_t          entries;  /* read */
    uint64_t          skipped;  /* malformed, too long, other format */
    uint64_t          too_long; /* of skipped: past RL2_ALOG_LINE_MAX */
    uint64_t          bad_line[RL2_ALOG_BAD_KEPT]; /* first skipped */
    const char       *bad_why[RL2_ALOG_BAD_KEPT];
    size_t            n_bad;
    rl2_alog_format_t format; /* as given or found; AUTO: no valid line */
} rl2_alog_stats_t;

typedef struct rl2_alog_s rl2_alog_t;

/* Open path ("-": standard input), plain or gzip.  Returns 0, or -1 with
 * errbuf saying why. */
int rl2_alog_open(const char *path, rl2_alog_format_t format, rl2_alog_t **r,
                  char *errbuf, size_t errlen);

/* The next request: 1, 0 at the end of the file, -1 on a read error
 * (errbuf says which: a gzip file cut short, an I/O error). */
int rl2_alog_next(rl2_alog_t *r, rl2_alog_entry_t *e, char *errbuf,
                  size_t errlen);

const rl2_alog_stats_t *rl2_alog_stats(const rl2_alog_t *r);

/* Close, and free r (NULL is fine); standard input is not closed. */
void rl2_alog_close(rl2_alog_t *r);

/* The hash of the tables that hold names read from logs (coverage's
 * routes, simulate's clients): FNV-1a from a basis drawn at random once
 * per process, then mixed, so a log cannot be written whose names all
 * fall in one run of slots (with a fixed basis, names that agree in a
 * hash's low bits are cheap to make, and each lookup then walks them
 * all).  Begin, add each part, end. */
uint64_t rl2_alog_hash_begin(void);
uint64_t rl2_alog_hash_add(uint64_t h, const char *s);
uint64_t rl2_alog_hash_end(uint64_t h);

#endif /* RL2_CTL_ACCESSLOG_H */
