/*
 * accesslog.c -- access logs read back (accesslog.h): the line parser,
 * the detection of a file's format, and the reader of plain and gzip
 * files.
 *
 * The parser works in place on one line of known length: each field is
 * cut with a NUL where its delimiter was, and a quoted field's escapes
 * are decoded into the bytes it occupies (a decoded field is never
 * longer than its escaped form).  It trusts nothing: every field has a
 * shape it must have, and the first that does not read rejects the line
 * with the reason, which the reader counts with the line's number.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "accesslog.h"

const char *const rl2_alog_format_names[RL2_ALOG_N] = { "auto", "common",
                                                        "combined",
                                                        "lighttpd" };

int
rl2_alog_format_parse(const char *name)
{
    for (int i = 0; i < RL2_ALOG_N; i++) {
        if (strcmp(name, rl2_alog_format_names[i]) == 0) {
            return i;
        }
    }
    if (strcmp(name, "apache") == 0 || strcmp(name, "nginx") == 0) {
        return RL2_ALOG_COMBINED;
    }
    return -1;
}

/* ---- the parser ---- */

typedef struct {
    char       *p;   /* next byte */
    char       *end; /* past the line */
    const char *why; /* the first thing that did not read */
} rl2_alog_cur_t;

static int
rl2_alog_bad(rl2_alog_cur_t *c, const char *why)
{
    c->why = why;
    return -1;
}

/* A space between two fields: exactly one, as the servers write them
 * (or the NUL that cut the word before it: the line held none of its
 * own). */
static int
rl2_alog_space(rl2_alog_cur_t *c, const char *why)
{
    if (c->p >= c->end || (*c->p != ' ' && *c->p != '\0')) {
        return rl2_alog_bad(c, why);
    }
    c->p++;
    return 0;
}

/* A field up to the next space (or the end): non-empty, printable. */
static char *
rl2_alog_word(rl2_alog_cur_t *c, const char *why)
{
    char *start = c->p;

    while (c->p < c->end && *c->p != ' ') {
        unsigned char b = (unsigned char)*c->p;

        if (b < 0x21 || b == 0x7f) {
            rl2_alog_bad(c, why);
            return NULL;
        }
        c->p++;
    }
    if (c->p == start) {
        rl2_alog_bad(c, why);
        return NULL;
    }
    if (c->p < c->end) {
        *c->p = '\0'; /* the space: rl2_alog_space steps over it */
    }
    return start;
}

static int
rl2_alog_hex(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

/* One escape after a backslash at s (s < end): the byte it stands for,
 * with *n its length; -1 when it is none Apache or nginx writes. */
static int
rl2_alog_escape(const char *s, const char *end, size_t *n)
{
    static const char from[] = "\"\\nrtbvf", to[] = "\"\\\n\r\t\b\v\f";
    const char       *k;
    int               hi, lo;

    if (s + 1 >= end) {
        return -1;
    }
    if (s[1] == 'x') {
        if (s + 3 >= end || (hi = rl2_alog_hex(s[2])) < 0
            || (lo = rl2_alog_hex(s[3])) < 0) {
            return -1;
        }
        *n = 4;
        return hi << 4 | lo;
    }
    if (s[1] == '\0' || (k = strchr(from, s[1])) == NULL) {
        return -1;
    }
    *n = 2;
    return (unsigned char)to[k - from];
}

/* A quoted field, its escapes decoded in place; NULL for "-". */
static int
rl2_alog_quoted(rl2_alog_cur_t *c, char **out, const char *why)
{
    char *w, *start;

    if (c->p >= c->end || *c->p != '"') {
        return rl2_alog_bad(c, why);
    }
    start = w = ++c->p;
    while (c->p < c->end && *c->p != '"') {
        int    b = (unsigned char)*c->p;
        size_t n = 1;

        if (b == '\\' && (b = rl2_alog_escape(c->p, c->end, &n)) < 0) {
            return rl2_alog_bad(c, "an escape neither Apache nor nginx "
                                   "writes");
        }
        if (b == 0) {
            return rl2_alog_bad(c, "a NUL byte in a quoted field");
        }
        *w++ = (char)b;
        c->p += n;
    }
    if (c->p >= c->end) {
        return rl2_alog_bad(c, "a quoted field is not closed");
    }
    c->p++;
    *w = '\0';
    *out = (w - start == 1 && start[0] == '-') ? NULL : start;
    return 0;
}

/* n decimal digits at s into *v. */
static int
rl2_alog_digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        *v = *v * 10 + (s[i] - '0');
    }
    return 0;
}

/* Days since 1970-01-01 of a date of the proleptic Gregorian calendar
 * (no time zone is consulted: the log says its offset). */
static int64_t
rl2_alog_days(int y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "[10/Oct/2000:13:55:36 -0700]": Apache's %t, nginx's $time_local,
 * lighttpd's %t. */
static int
rl2_alog_time(rl2_alog_cur_t *c, int64_t *us)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const int  mdays[] = {
         31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };
    const char *s = c->p, *m;
    int         d, y, h, mi, sec, oh, om, mon, leap;
    int64_t     t;

    /* 28 bytes: [dd/Mon/yyyy:hh:mm:ss +hhmm] */
    if (c->end - s < 28 || s[0] != '[' || s[3] != '/' || s[7] != '/'
        || s[12] != ':' || s[15] != ':' || s[18] != ':' || s[21] != ' '
        || (s[22] != '+' && s[22] != '-') || s[27] != ']'
        || rl2_alog_digits(s + 1, 2, &d) || rl2_alog_digits(s + 8, 4, &y)
        || rl2_alog_digits(s + 13, 2, &h) || rl2_alog_digits(s + 16, 2, &mi)
        || rl2_alog_digits(s + 19, 2, &sec) || rl2_alog_digits(s + 23, 2, &oh)
        || rl2_alog_digits(s + 25, 2, &om)) {
        return rl2_alog_bad(c, "the time is not [dd/Mon/yyyy:hh:mm:ss "
                               "+hhmm]");
    }
    for (m = months; *m != '\0' && strncmp(m, s + 4, 3) != 0; m += 3) {
    }
    mon = (int)(m - months) / 3 + 1;
    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (*m == '\0' || d < 1 || d > mdays[mon - 1]
        || (mon == 2 && !leap && d > 28) || h > 23 || mi > 59 || sec > 60
        || oh > 23 || om > 59) {
        return rl2_alog_bad(c, "the time is not a date");
    }
    t = ((rl2_alog_days(y, mon, d) * 24 + h) * 60 + mi) * 60 + sec;
    /* Local time minus its offset east of UTC is UTC. */
    t -= (s[22] == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
    *us = t * 1000000;
    c->p += 28;
    return 0;
}

static int
rl2_alog_token_byte(unsigned char b)
{
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')
           || (b >= '0' && b <= '9')
           || (b != '\0' && strchr("!#$%&'*+-.^_`|~", b));
}

/* "METHOD TARGET PROTOCOL" or (HTTP/0.9) "METHOD TARGET", decoded: the
 * method a token, the target a path as a server would take it (from
 * '/', no space or control byte), the protocol "HTTP/" and digits. */
static int
rl2_alog_request(rl2_alog_cur_t *c, char *r, rl2_alog_entry_t *e)
{
    char *sp = strchr(r, ' '), *last;

    if (sp == NULL || sp == r || sp - r > 32) {
        return rl2_alog_bad(c, "the request line has no method");
    }
    *sp = '\0';
    for (char *p = r; *p != '\0'; p++) {
        if (!rl2_alog_token_byte((unsigned char)*p)) {
            return rl2_alog_bad(c, "the method is not a token");
        }
    }
    e->method = r;
    e->target = sp + 1;
    e->protocol = NULL;
    if ((last = strrchr(sp + 1, ' ')) != NULL) {
        *last = '\0';
        e->protocol = last + 1;
        if (strncmp(e->protocol, "HTTP/", 5) != 0 || e->protocol[5] == '\0'
            || strlen(e->protocol) > 12
            || strspn(e->protocol + 5, "0123456789.")
                   != strlen(e->protocol + 5)) {
            return rl2_alog_bad(c, "the protocol is not HTTP/n");
        }
    }
    if (e->target[0] != '/') {
        return rl2_alog_bad(c, "the request target is not a path");
    }
    for (const char *p = e->target; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            return rl2_alog_bad(c, "a space or control byte in the "
                                   "request target");
        }
    }
    return 0;
}

/* %>s and %b: "200 1234" or "200 -". */
static int
rl2_alog_status_bytes(rl2_alog_cur_t *c, rl2_alog_entry_t *e)
{
    char *b;

    if (c->end - c->p < 4 || rl2_alog_digits(c->p, 3, &e->status)
        || e->status < 100 || c->p[3] != ' ') {
        return rl2_alog_bad(c, "the status is not three digits");
    }
    c->p += 4;
    if ((b = rl2_alog_word(c, "no byte count")) == NULL) {
        return -1;
    }
    if (strcmp(b, "-") == 0) {
        e->bytes = -1;
        return 0;
    }
    if (strlen(b) > 18 || strspn(b, "0123456789") != strlen(b)) {
        return rl2_alog_bad(c, "the byte count is not a number");
    }
    e->bytes = strtoll(b, NULL, 10);
    return 0;
}

/* What comes after the byte count: nothing (common), or the Referer and
 * User-Agent (combined, lighttpd). */
static int
rl2_alog_tail(rl2_alog_cur_t *c, rl2_alog_entry_t *e, int *quoted)
{
    char *referer, *agent;

    *quoted = c->p < c->end;
    if (!*quoted) {
        return 0;
    }
    if (rl2_alog_space(c, "text after the byte count") != 0
        || rl2_alog_quoted(c, &referer, "no quoted Referer") != 0
        || rl2_alog_space(c, "no User-Agent after the Referer") != 0
        || rl2_alog_quoted(c, &agent, "no quoted User-Agent") != 0) {
        return -1;
    }
    e->referer = referer;
    e->agent = agent;
    return c->p == c->end ? 0 : rl2_alog_bad(c, "text after the User-Agent");
}

int
rl2_alog_parse(char *line, size_t len, rl2_alog_format_t format,
               rl2_alog_entry_t *e, rl2_alog_format_t *found, const char **why)
{
    rl2_alog_cur_t c = { line, line + len, NULL };
    char          *f2, *user, *req;
    int            quoted;

    memset(e, 0, sizeof(*e));
    if (len > 0 && line[len - 1] == '\r') {
        c.end--;
    }
    *c.end = '\0';
    if (memchr(line, '\0', (size_t)(c.end - line)) != NULL) {
        *why = "a NUL byte";
        return -1;
    }
    if ((e->client = rl2_alog_word(&c, "no client address")) == NULL
        || rl2_alog_space(&c, "one field only") != 0
        || (f2 = rl2_alog_word(&c, "no second field")) == NULL
        || rl2_alog_space(&c, "two fields only") != 0
        || (user = rl2_alog_word(&c, "no user field")) == NULL
        || rl2_alog_space(&c, "no time") != 0
        || rl2_alog_time(&c, &e->time_us) != 0
        || rl2_alog_space(&c, "no request line after the time") != 0
        || rl2_alog_quoted(&c, &req, "no quoted request line") != 0
        || rl2_alog_space(&c, "no status after the request line") != 0
        || rl2_alog_status_bytes(&c, e) != 0 || rl2_alog_tail(&c, e, &quoted)) {
        *why = c.why;
        return -1;
    }
    if (req == NULL) {
        *why = "no request line (\"-\")";
        return -1;
    }
    if (rl2_alog_request(&c, req, e) != 0) {
        *why = c.why;
        return -1;
    }
    e->user = strcmp(user, "-") == 0 ? NULL : user;
    if (format == RL2_ALOG_COMMON && quoted) {
        *why = "text after the byte count (not the common format)";
        return -1;
    }
    if (format > RL2_ALOG_COMMON && !quoted) {
        *why = "no Referer and User-Agent (not the combined format)";
        return -1;
    }
    /* Auto: the second field is lighttpd's Host unless it is "-" (the
     * identd field Apache and nginx write as "-"). */
    if (format == RL2_ALOG_LIGHTTPD
        || (format == RL2_ALOG_AUTO && quoted && strcmp(f2, "-") != 0)) {
        e->host = strcmp(f2, "-") == 0 ? NULL : f2;
    }
    *found = !quoted                   ? RL2_ALOG_COMMON
             : e->host != NULL         ? RL2_ALOG_LIGHTTPD
             : format != RL2_ALOG_AUTO ? format
                                       : RL2_ALOG_COMBINED;
    return 0;
}

/* ---- the reader ---- */

struct rl2_alog_s {
    gzFile            gz;
    const char       *path;
    rl2_alog_format_t format; /* as given; AUTO until a line decides */
    int               quoted; /* AUTO: the first line's shape, -1 none */
    rl2_alog_stats_t  st;
    size_t            pos, len; /* of chunk */
    int               eof;
    char              chunk[64 * 1024];
    char              line[RL2_ALOG_LINE_MAX + 1];
};

int
rl2_alog_open(const char *path, rl2_alog_format_t format, rl2_alog_t **out,
              char *errbuf, size_t errlen)
{
    rl2_alog_t *r;
    int         fd = -1;

    *out = NULL;
    /* Not calloc: the buffers (128 KiB) are written before they are
     * read; the rest is set here. */
    if ((r = malloc(sizeof(*r))) == NULL) {
        snprintf(errbuf, errlen, "%s: out of memory", path);
        return -1;
    }
    memset(&r->st, 0, sizeof(r->st));
    r->pos = r->len = 0;
    r->eof = 0;
    r->path = path;
    r->format = format;
    r->quoted = -1;
    r->st.format = format;
    /* gzdopen takes the descriptor it is given: standard input is
     * read through a copy of it, which rl2_alog_close closes. */
    if (strcmp(path, "-") == 0) {
        fd = dup(STDIN_FILENO);
        r->gz = fd >= 0 ? gzdopen(fd, "rb") : NULL;
    }
    else {
        r->gz = gzopen(path, "rb");
    }
    if (r->gz == NULL) {
        snprintf(errbuf, errlen, "%s: %s", path,
                 errno != 0 ? strerror(errno) : "out of memory");
        if (fd >= 0) {
            close(fd);
        }
        free(r);
        return -1;
    }
    *out = r;
    return 0;
}

/* Refill the chunk: 1, 0 at the end, -1 on an error. */
static int
rl2_alog_fill(rl2_alog_t *r, char *errbuf, size_t errlen)
{
    int n, zerr;

    if (r->eof) {
        return 0;
    }
    n = gzread(r->gz, r->chunk, sizeof(r->chunk));
    if (n < 0 || (n == 0 && !gzeof(r->gz))) {
        const char *m = gzerror(r->gz, &zerr);

        snprintf(errbuf, errlen, "%s: %s", r->path,
                 zerr == Z_ERRNO ? strerror(errno) : m);
        return -1;
    }
    /* A gzip file cut short reads to its end, then says so. */
    if (n == 0 || gzeof(r->gz)) {
        const char *m = gzerror(r->gz, &zerr);

        if (zerr != Z_OK && zerr != Z_STREAM_END) {
            snprintf(errbuf, errlen, "%s: %s", r->path, m);
            return -1;
        }
    }
    r->pos = 0;
    r->len = (size_t)n;
    r->eof = n == 0;
    return n > 0;
}

/* The next line into r->line: its length, -2 at the end, -3 on an
 * error; a line past RL2_ALOG_LINE_MAX is read through and reported as
 * -1. */
static long
rl2_alog_line(rl2_alog_t *r, char *errbuf, size_t errlen)
{
    size_t n = 0;
    int    any = 0, over = 0, rc;

    for (;;) {
        if (r->pos == r->len) {
            if ((rc = rl2_alog_fill(r, errbuf, errlen)) < 0) {
                return -3;
            }
            if (rc == 0) {
                /* The last line may lack its newline. */
                return !any ? -2 : over ? -1 : (long)n;
            }
        }
        char  *s = r->chunk + r->pos;
        size_t avail = r->len - r->pos;
        char  *nl = memchr(s, '\n', avail);
        size_t take = nl != NULL ? (size_t)(nl - s) : avail;

        any = 1;
        if (!over && n + take <= RL2_ALOG_LINE_MAX) {
            memcpy(r->line + n, s, take);
            n += take;
        }
        else {
            over = 1;
        }
        r->pos += take + (nl != NULL);
        if (nl != NULL) {
            return over ? -1 : (long)n;
        }
    }
}

static void
rl2_alog_skip(rl2_alog_t *r, const char *why)
{
    r->st.skipped++;
    if (r->st.n_bad < RL2_ALOG_BAD_KEPT) {
        r->st.bad_line[r->st.n_bad] = r->st.lines;
        r->st.bad_why[r->st.n_bad++] = why;
    }
}

int
rl2_alog_next(rl2_alog_t *r, rl2_alog_entry_t *e, char *errbuf, size_t errlen)
{
    rl2_alog_format_t found;
    const char       *why;
    long              n;

    while ((n = rl2_alog_line(r, errbuf, errlen)) > -2) {
        r->st.lines++;
        if (n == -1) {
            r->st.too_long++;
            rl2_alog_skip(r, "longer than 64 KiB");
            continue;
        }
        if (rl2_alog_parse(r->line, (size_t)n, r->format, e, &found, &why)
            != 0) {
            rl2_alog_skip(r, why);
            continue;
        }
        /* Auto: the first valid line's shape is the file's. */
        if (r->format == RL2_ALOG_AUTO) {
            int quoted = found != RL2_ALOG_COMMON;

            if (r->quoted >= 0 && quoted != r->quoted) {
                rl2_alog_skip(r, quoted ? "Referer and User-Agent in a "
                                          "common log"
                                        : "no Referer and User-Agent in "
                                          "a combined log");
                continue;
            }
            r->quoted = quoted;
            if (r->st.format == RL2_ALOG_AUTO || found == RL2_ALOG_LIGHTTPD) {
                r->st.format = found;
            }
        }
        r->st.entries++;
        return 1;
    }
    return n == -2 ? 0 : -1;
}

const rl2_alog_stats_t *
rl2_alog_stats(const rl2_alog_t *r)
{
    return &r->st;
}

void
rl2_alog_close(rl2_alog_t *r)
{
    if (r == NULL) {
        return;
    }
    gzclose(r->gz);
    free(r);
}

/* ---- the tables' hash ---- */

uint64_t
rl2_alog_hash_begin(void)
{
    static uint64_t basis;
    static int      drawn;

    if (!drawn) {
        struct timespec ts;

        if (getrandom(&basis, sizeof(basis), GRND_NONBLOCK)
            != (ssize_t)sizeof(basis)) {
            /* No entropy yet: weaker, still not known in advance. */
            clock_gettime(CLOCK_MONOTONIC, &ts);
            basis = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20
                    ^ (uint64_t)getpid() << 40;
        }
        drawn = 1;
    }
    return 14695981039346656037ull ^ basis;
}

uint64_t
rl2_alog_hash_add(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    }
    return h;
}

/* MurmurHash3's finaliser: every bit of h reaches the low bits a table
 * takes its slot from. */
uint64_t
rl2_alog_hash_end(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ h >> 33;
}
