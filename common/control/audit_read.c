/*
 * audit_read.c -- the audit file read back (audit.h): one JSON line into
 * an entry, and the file line by line.
 *
 * The parser reads the one shape audit.c writes, and nothing looser: an
 * object of the ten keys, each once, in any order; before and after null
 * or an object of their four keys.  The file is ours; a line that does not
 * read is damage someone must look at, so it is an error naming the file
 * and line, except a last line without its newline, which is what a writer
 * stopped half-way leaves.  The stream (with Redis) is read the same
 * way, an entry at a time, each its own line.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "ratelimit2/audit.h"
#include "base/base_internal.h"
#include "control_internal.h"

typedef struct {
    const char *p;
    rl2_err_t  *err;
    int         failed;
} rl2_jcur_t;

/* One side as read, its value kept as text until the kind is known. */
typedef struct {
    int     present;
    char    value[RL2_OVR_NAME_MAX + 16];
    int64_t expires_us;
    char    reason[RL2_OVR_REASON_MAX];
    char    author[RL2_OVR_AUTHOR_MAX];
} rl2_jside_t;

static int
rl2_jfail(rl2_jcur_t *c, const char *what)
{
    if (!c->failed) {
        rl2_err_set(c->err, RL2_ERR_INVALID, "%s", what);
        c->failed = 1;
    }
    return -1;
}

static void
rl2_jws(rl2_jcur_t *c)
{
    while (*c->p == ' ' || *c->p == '\t') {
        c->p++;
    }
}

static int
rl2_jexpect(rl2_jcur_t *c, char ch, const char *what)
{
    rl2_jws(c);
    if (*c->p != ch) {
        return rl2_jfail(c, what);
    }
    c->p++;
    return 0;
}

/* The code point of "\uXXXX" at c->p (past the "\u"); -1. */
static long
rl2_jhex4(rl2_jcur_t *c)
{
    long v = 0;

    for (int i = 0; i < 4; i++) {
        int d = rl2_hex_digit((unsigned char)c->p[i]);

        if (d < 0) {
            return -1;
        }
        v = v * 16 + d;
    }
    c->p += 4;
    return v;
}

static int
rl2_jput(char *out, size_t max, size_t *n, const char *bytes, size_t len)
{
    if (*n + len >= max) {
        return -1;
    }
    memcpy(out + *n, bytes, len);
    *n += len;
    return 0;
}

/* A \u escape (a surrogate pair in two) as UTF-8 into out. */
static int
rl2_jescape_u(rl2_jcur_t *c, char *out, size_t max, size_t *n)
{
    long   cp = rl2_jhex4(c), lo;
    char   u[4];
    size_t len;

    if (cp >= 0xd800 && cp <= 0xdbff && c->p[0] == '\\' && c->p[1] == 'u') {
        c->p += 2;
        lo = rl2_jhex4(c);
        cp = lo >= 0xdc00 && lo <= 0xdfff
                 ? 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00)
                 : -1;
    }
    if (cp < 0 || (cp >= 0xd800 && cp <= 0xdfff)) {
        return rl2_jfail(c, "a bad \\u escape");
    }
    if (cp < 0x80) {
        u[0] = (char)cp;
        len = 1;
    }
    else if (cp < 0x800) {
        u[0] = (char)(0xc0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3f));
        len = 2;
    }
    else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        len = 3;
    }
    else {
        u[0] = (char)(0xf0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        len = 4;
    }
    return cp == 0 || rl2_jput(out, max, n, u, len) != 0
               ? rl2_jfail(c, "a string too long, or holding \\u0000")
               : 0;
}

static int
rl2_jescape(rl2_jcur_t *c, char *out, size_t max, size_t *n)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char       *at = *c->p != '\0' ? strchr(from, *c->p) : NULL;

    if (*c->p == 'u') {
        c->p++;
        return rl2_jescape_u(c, out, max, n);
    }
    if (at == NULL) {
        return rl2_jfail(c, "a bad escape in a string");
    }
    c->p++;
    return rl2_jput(out, max, n, &to[at - from], 1) != 0
               ? rl2_jfail(c, "a string too long")
               : 0;
}

/* n less the bytes of a UTF-8 sequence that out[0..n) ends before its
 * end. */
static size_t
rl2_utf8_whole(const char *out, size_t n)
{
    size_t at = n, need;

    while (at > 0 && n - at < 4
           && ((unsigned char)out[at - 1] & 0xc0) == 0x80) {
        at--;
    }
    if (at == 0 || ((unsigned char)out[at - 1] & 0x80) == 0) {
        return n;
    }
    need = (unsigned char)out[at - 1] >= 0xf0   ? 4
           : (unsigned char)out[at - 1] >= 0xe0 ? 3
                                                : 2;
    return n - (at - 1) >= need ? n : at - 1;
}

/* A string into out[max].  With cut, one longer than out is cut at a
 * whole character rather than refused: the writer puts each byte of a
 * text that is not UTF-8 as \ufffd, three bytes once read, so that a
 * reason, author or user: target at its longest reads back longer than
 * its field (and one such entry would stop every reading of the
 * trail). */
static int
rl2_jstring_in(rl2_jcur_t *c, char *out, size_t max, int cut)
{
    size_t n = 0, k;
    char   one[8];
    int    full = 0;

    if (rl2_jexpect(c, '"', "expected a string") != 0) {
        return -1;
    }
    while (*c->p != '"') {
        if ((unsigned char)*c->p < 0x20) {
            return rl2_jfail(c, "a string not ended, or with a control "
                                "character");
        }
        k = 0;
        if (*c->p == '\\') {
            c->p++;
            if (rl2_jescape(c, one, sizeof(one), &k) != 0) {
                return -1;
            }
        }
        else {
            one[k++] = *c->p++;
        }
        /* Once full, nothing more: a shorter character after a longer
         * one that did not fit would join what is not next to it. */
        if (!full && rl2_jput(out, max, &n, one, k) != 0) {
            if (!cut) {
                return rl2_jfail(c, "a string too long");
            }
            full = 1;
        }
    }
    c->p++;
    if (full) {
        n = rl2_utf8_whole(out, n);
    }
    out[n] = '\0';
    return 0;
}

static int
rl2_jstring(rl2_jcur_t *c, char *out, size_t max)
{
    return rl2_jstring_in(c, out, max, 0);
}

/* Free text (a reason, an author, a target), cut to out if longer. */
static int
rl2_jtext(rl2_jcur_t *c, char *out, size_t max)
{
    return rl2_jstring_in(c, out, max, 1);
}

/* "null": 1; something else: 0 (nothing read). */
static int
rl2_jnull(rl2_jcur_t *c)
{
    rl2_jws(c);
    if (strncmp(c->p, "null", 4) == 0) {
        c->p += 4;
        return 1;
    }
    return 0;
}

/* A time string, or null (0) when null_ok. */
static int
rl2_jtime(rl2_jcur_t *c, int64_t *us, int null_ok)
{
    char t[32];

    if (null_ok && rl2_jnull(c)) {
        *us = 0;
        return 0;
    }
    if (rl2_jstring(c, t, sizeof(t)) != 0) {
        return -1;
    }
    return rl2_audit_time_parse(t, us) == 0
               ? 0
               : rl2_jfail(c, "a time not of the form "
                              "2026-12-06T10:00:00.123456Z");
}

/* An integer >= 0, or null (-1). */
static int
rl2_jcount(rl2_jcur_t *c, int64_t *v)
{
    int64_t n = 0;

    if (rl2_jnull(c)) {
        *v = -1;
        return 0;
    }
    if (!isdigit((unsigned char)*c->p)) {
        return rl2_jfail(c, "expected a number or null");
    }
    while (isdigit((unsigned char)*c->p)) {
        if (__builtin_mul_overflow(n, 10, &n)
            || __builtin_add_overflow(n, *c->p - '0', &n)) {
            return rl2_jfail(c, "a number too large");
        }
        c->p++;
    }
    *v = n;
    return 0;
}

/* Walk an object: for each key, its index in keys[] goes to value(),
 * which reads the value.  Each key must appear once; all of them if
 * all_keys. */
typedef int (*rl2_jvalue_fn)(rl2_jcur_t *c, int key, void *ctx);

static int
rl2_jobject(rl2_jcur_t *c, const char *const *keys, int n_keys,
            rl2_jvalue_fn value, void *ctx)
{
    unsigned seen = 0;
    char     key[32];
    int      k;

    if (rl2_jexpect(c, '{', "expected an object") != 0) {
        return -1;
    }
    for (;;) {
        if (rl2_jstring(c, key, sizeof(key)) != 0) {
            return -1;
        }
        for (k = 0; k < n_keys && strcmp(key, keys[k]) != 0; k++) {
        }
        if (k == n_keys || (seen & (1u << k))) {
            rl2_err_set(c->err, RL2_ERR_INVALID, "%s key \"%s\"",
                        k == n_keys ? "unknown" : "repeated", key);
            c->failed = 1;
            return -1;
        }
        seen |= 1u << k;
        if (rl2_jexpect(c, ':', "expected ':' after a key") != 0
            || value(c, k, ctx) != 0) {
            return -1;
        }
        rl2_jws(c);
        if (*c->p != ',') {
            break;
        }
        c->p++;
    }
    if (rl2_jexpect(c, '}', "expected ',' or '}'") != 0) {
        return -1;
    }
    return seen == (1u << n_keys) - 1 ? 0 : rl2_jfail(c, "a key is missing");
}

/* ---- a side, an entry ------------------------------------------------------
 */

static const char *const side_keys[] = { "value", "expires", "reason",
                                         "author" };

static int
rl2_jside_value(rl2_jcur_t *c, int key, void *ctx)
{
    rl2_jside_t *s = ctx;

    switch (key) {
    case 0:
        return rl2_jstring(c, s->value, sizeof(s->value));
    case 1:
        return rl2_jtime(c, &s->expires_us, 1);
    case 2:
        return rl2_jtext(c, s->reason, sizeof(s->reason));
    default:
        return rl2_jtext(c, s->author, sizeof(s->author));
    }
}

static int
rl2_jside(rl2_jcur_t *c, rl2_jside_t *s)
{
    memset(s, 0, sizeof(*s));
    if (rl2_jnull(c)) {
        return 0;
    }
    s->present = 1;
    return rl2_jobject(c, side_keys, 4, rl2_jside_value, s);
}

enum {
    K_TIME,
    K_AUTHOR,
    K_ORIGIN,
    K_VERB,
    K_KIND,
    K_TARGET,
    K_BEFORE,
    K_AFTER,
    K_TTL,
    K_REASON,
    K_COUNT
};

static const char *const entry_keys[K_COUNT] = {
    [K_TIME] = "time",     [K_AUTHOR] = "author", [K_ORIGIN] = "origin",
    [K_VERB] = "verb",     [K_KIND] = "kind",     [K_TARGET] = "target",
    [K_BEFORE] = "before", [K_AFTER] = "after",   [K_TTL] = "ttl_s",
    [K_REASON] = "reason",
};

typedef struct {
    rl2_audit_entry_t *e;
    char               origin[16];
    char               kind[16];
    rl2_jside_t        before, after;
    int64_t            ttl_s;
} rl2_jentry_t;

static int
rl2_jentry_value(rl2_jcur_t *c, int key, void *ctx)
{
    rl2_jentry_t      *j = ctx;
    rl2_audit_entry_t *e = j->e;

    switch (key) {
    case K_TIME:
        return rl2_jtime(c, &e->time_us, 0);
    case K_AUTHOR:
        return rl2_jtext(c, e->author, sizeof(e->author));
    case K_ORIGIN:
        return rl2_jstring(c, j->origin, sizeof(j->origin));
    case K_VERB:
        return rl2_jstring(c, e->verb, sizeof(e->verb));
    case K_KIND:
        return rl2_jstring(c, j->kind, sizeof(j->kind));
    case K_TARGET:
        return rl2_jtext(c, e->target, sizeof(e->target));
    case K_BEFORE:
        return rl2_jside(c, &j->before);
    case K_AFTER:
        return rl2_jside(c, &j->after);
    case K_TTL:
        return rl2_jcount(c, &j->ttl_s);
    default:
        return rl2_jtext(c, e->reason, sizeof(e->reason));
    }
}

/* A side into the override it describes, of the entry's kind and
 * target. */
static rl2_status_t
rl2_jside_apply(const rl2_jside_t *s, const rl2_override_t *target,
                rl2_override_t *o, rl2_err_t *err)
{
    memset(o, 0, sizeof(*o));
    if (!s->present) {
        return RL2_OK;
    }
    *o = *target;
    o->expires_us = s->expires_us;
    snprintf(o->reason, sizeof(o->reason), "%s", s->reason);
    snprintf(o->author, sizeof(o->author), "%s", s->author);
    return rl2_ovr_value_parse_text(o, s->value, err);
}

/* What the JSON said, checked as an entry. */
static rl2_status_t
rl2_jentry_check(rl2_jentry_t *j, rl2_err_t *err)
{
    rl2_audit_entry_t *e = j->e;
    rl2_override_t     t;

    memset(&t, 0, sizeof(t));
    if ((e->origin = rl2_audit_origin_from_name(j->origin)) == 0) {
        return rl2_err_set(err, RL2_ERR_INVALID, "unknown origin \"%s\"",
                           j->origin);
    }
    if ((e->kind = rl2_ovr_kind_from_name(j->kind)) == 0) {
        return rl2_err_set(err, RL2_ERR_INVALID, "unknown kind \"%s\"",
                           j->kind);
    }
    if (e->verb[0] == '\0'
        || strspn(e->verb, "abcdefghijklmnopqrstuvwxyz_-") != strlen(e->verb)) {
        return rl2_err_set(err, RL2_ERR_INVALID, "a verb not of [a-z_-]");
    }
    if (rl2_override_target(NULL, e->kind, e->target, &t, err) != RL2_OK
        || strcmp(t.target, e->target) != 0) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "target \"%.100s\" is not one %s takes, as "
                           "written",
                           e->target, j->kind);
    }
    if (!j->before.present && !j->after.present) {
        return rl2_err_set(err, RL2_ERR_INVALID, "no value before nor after");
    }
    if (rl2_jside_apply(&j->before, &t, &e->before, err) != RL2_OK
        || rl2_jside_apply(&j->after, &t, &e->after, err) != RL2_OK) {
        return RL2_ERR_INVALID;
    }
    if (j->ttl_s != rl2_audit_ttl_s(e)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "ttl_s does not match the time and expires");
    }
    return RL2_OK;
}

rl2_status_t
rl2_audit_parse(const char *line, rl2_audit_entry_t *e, rl2_err_t *err)
{
    rl2_jcur_t   c = { .p = line, .err = err };
    rl2_jentry_t j;

    memset(e, 0, sizeof(*e));
    memset(&j, 0, sizeof(j));
    j.e = e;
    if (rl2_jobject(&c, entry_keys, K_COUNT, rl2_jentry_value, &j) != 0) {
        return RL2_ERR_INVALID;
    }
    rl2_jws(&c);
    if (*c.p != '\0') {
        return rl2_err_set(err, RL2_ERR_INVALID, "text after the object");
    }
    return rl2_jentry_check(&j, err);
}

/* ---- time ------------------------------------------------------------------
 */

/* n digits at s as a number; -1 if any is not a digit. */
static int
rl2_digits_at(const char *s, int n)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int
rl2_audit_time_parse(const char *text, int64_t *wall_us)
{
    /* "2026-12-06T10:00:00.123456Z": the separators, then the fields. */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    struct tm         tm;
    time_t            t;
    int               us;
    int64_t           v;
    char              back[28];

    if (strlen(text) != sizeof(shape) - 1) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] != 'd' ? text[i] != shape[i]
                            : !isdigit((unsigned char)text[i])) {
            return -1;
        }
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = rl2_digits_at(text, 4) - 1900;
    tm.tm_mon = rl2_digits_at(text + 5, 2) - 1;
    tm.tm_mday = rl2_digits_at(text + 8, 2);
    tm.tm_hour = rl2_digits_at(text + 11, 2);
    tm.tm_min = rl2_digits_at(text + 14, 2);
    tm.tm_sec = rl2_digits_at(text + 17, 2);
    us = rl2_digits_at(text + 20, 6);
    t = timegm(&tm);
    v = (int64_t)t * RL2_US_PER_S + us;
    /* timegm() takes the 31st of February for the 3rd of March: only a
     * time written back the same is one that exists. */
    rl2_audit_time_format(v, back);
    if (strcmp(back, text) != 0) {
        return -1;
    }
    *wall_us = v;
    return 0;
}

/* ---- the file --------------------------------------------------------------
 */

rl2_status_t
rl2_audit_read(const char *path, rl2_audit_each_fn each, void *ctx, size_t *n,
               rl2_err_t *err)
{
    FILE             *f = fopen(path, "re");
    char             *line = NULL;
    size_t            cap = 0, count = 0;
    ssize_t           len;
    long              lineno = 0;
    rl2_audit_entry_t e;
    rl2_err_t         why;
    rl2_status_t      st = RL2_OK;

    if (n != NULL) {
        *n = 0;
    }
    if (f == NULL) {
        return errno == ENOENT
                   ? RL2_OK
                   : rl2_err_set(err, RL2_ERR_SYS, "audit file %s: %s", path,
                                 strerror(errno));
    }
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (line[len - 1] != '\n') {
            break; /* torn: its writer stopped half-way */
        }
        line[len - 1] = '\0';
        if ((size_t)len > RL2_AUDIT_LINE_MAX
            || rl2_audit_parse(line, &e, &why) != RL2_OK) {
            st = rl2_err_set(err, RL2_ERR_INVALID, "%s:%ld: %s", path, lineno,
                             (size_t)len > RL2_AUDIT_LINE_MAX ? "line too long"
                                                              : why.msg);
            break;
        }
        count++;
        if (each != NULL && each(&e, ctx) != 0) {
            break;
        }
    }
    if (st == RL2_OK && ferror(f)) {
        st = rl2_err_set(err, RL2_ERR_SYS, "audit file %s: %s", path,
                         strerror(errno));
    }
    free(line);
    fclose(f);
    if (n != NULL) {
        *n = count;
    }
    return st;
}

/* ---- the stream ------------------------------------------------------------
 */

/* XRANGE's batch: bounded memory however long the stream. */
#define RL2_AUDIT_BATCH 1000

/* The id after "MS-SEQ" (XRANGE's start is inclusive); -1 when id is
 * not one. */
static int
rl2_audit_next_id(const char *id, size_t len, char *out, size_t size)
{
    unsigned long long ms, seq;
    char               text[48];
    int                end = 0;

    if (len >= sizeof(text)) {
        return -1;
    }
    memcpy(text, id, len);
    text[len] = '\0';
    if (sscanf(text, "%llu-%llu%n", &ms, &seq, &end) != 2
        || (size_t)end != len) {
        return -1;
    }
    if (seq == ~0ULL) {
        snprintf(out, size, "%llu-0", ms + 1);
    }
    else {
        snprintf(out, size, "%llu-%llu", ms, seq + 1);
    }
    return 0;
}

/* One stream entry, [id, [field, value, ...]], into e: its field
 * "entry", a line as the file holds it. */
static rl2_status_t
rl2_audit_stream_entry(const redisReply *r, rl2_audit_entry_t *e,
                       rl2_err_t *err)
{
    const redisReply *f = r->element[1];
    char              line[RL2_AUDIT_LINE_MAX];

    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements;
         i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || k->len != 5
            || memcmp(k->str, "entry", 5) != 0) {
            continue;
        }
        if (v->type != REDIS_REPLY_STRING || v->len >= sizeof(line)
            || memchr(v->str, '\0', v->len) != NULL) {
            return rl2_err_set(err, RL2_ERR_INVALID,
                               "entry too long, or "
                               "not text");
        }
        memcpy(line, v->str, v->len);
        line[v->len] = '\0';
        return rl2_audit_parse(line, e, err);
    }
    return rl2_err_set(err, RL2_ERR_INVALID, "no field \"entry\"");
}

/* One batch from start: each entry handed over; *next the id after the
 * last; *more 0 when the stream has no more (or each() stopped). */
static rl2_status_t
rl2_audit_batch(rl2_ovr_redis_t *r, const char *start, rl2_audit_each_fn each,
                void *ctx, size_t *count, char *next, size_t size, int *more,
                rl2_err_t *err)
{
    redisReply       *reply;
    rl2_audit_entry_t e;
    rl2_err_t         why;
    rl2_status_t      st;

    *more = 0;
    st = rl2_ovr_redis_audit_range(r, start, RL2_AUDIT_BATCH, &reply, err);
    if (st != RL2_OK) {
        return st;
    }
    for (size_t i = 0; st == RL2_OK && i < reply->elements; i++) {
        const redisReply *x = reply->element[i];

        if (x->type != REDIS_REPLY_ARRAY || x->elements != 2
            || x->element[0]->type != REDIS_REPLY_STRING
            || rl2_audit_next_id(x->element[0]->str, x->element[0]->len, next,
                                 size)
                   != 0) {
            st = rl2_err_set(err, RL2_ERR_STORE,
                             "redis %s: XRANGE %s: unexpected reply",
                             rl2_ovr_redis_name(r), rl2_ovr_redis_audit_key(r));
            break;
        }
        if (rl2_audit_stream_entry(x, &e, &why) != RL2_OK) {
            st = rl2_err_set(
                err, RL2_ERR_INVALID, "%s %.*s: %s", rl2_ovr_redis_audit_key(r),
                (int)x->element[0]->len, x->element[0]->str, why.msg);
            break;
        }
        (*count)++;
        if (each != NULL && each(&e, ctx) != 0) {
            rl2_redis_reply_free(reply);
            return RL2_OK;
        }
    }
    *more = st == RL2_OK && reply->elements == RL2_AUDIT_BATCH;
    rl2_redis_reply_free(reply);
    return st;
}

rl2_status_t
rl2_audit_read_redis(const rl2_redis_conf_t *conf, int64_t since_ms,
                     rl2_audit_each_fn each, void *ctx, size_t *n,
                     rl2_err_t *err)
{
    rl2_ovr_redis_conf_t rc = { .key = conf->overrides_key, .conf = conf };
    rl2_ovr_redis_t     *r;
    char                 start[48];
    size_t               count = 0;
    rl2_status_t         st;
    int                  more = 1;

    if (n != NULL) {
        *n = 0;
    }
    if ((st = rl2_ovr_redis_new(&rc, &r, err)) != RL2_OK) {
        return st;
    }
    snprintf(start, sizeof(start), "%lld",
             (long long)(since_ms > 0 ? since_ms : 0));
    while (st == RL2_OK && more) {
        st = rl2_audit_batch(r, start, each, ctx, &count, start, sizeof(start),
                             &more, err);
    }
    rl2_ovr_redis_free(r);
    if (n != NULL) {
        *n = count;
    }
    return st;
}
