/*
 * admin_json.c -- the one JSON document the HTTP admin interface takes
 * (admin.h): a single flat object whose values are strings, numbers,
 * true, false or null.
 *
 * The body comes from a client, so the reader is strict and bounded:
 * nothing but that object (no nested object or array, nothing after it
 * but white space), at most RL2_JSON_MEMBERS_MAX members, no name given
 * twice, strings of valid UTF-8 without control bytes, escapes as RFC
 * 8259 has them (\uXXXX decoded to UTF-8, a surrogate pair to one code
 * point, a lone surrogate refused), numbers in RFC 8259's grammar.  No
 * recursion: a flat object needs none.  Strings are decoded into the
 * object's own buffer, which a text of RL2_JSON_TEXT_MAX bytes cannot
 * overflow (a decoded string is never longer than its JSON form).
 */
#include <stdio.h>
#include <string.h>

#include "control_internal.h"

typedef struct {
    const unsigned char *p;   /* the text */
    size_t               len; /* its length */
    size_t               at;  /* the next byte to read */
    rl2_json_object_t   *obj;
    size_t               used; /* bytes of obj->buf taken */
    rl2_err_t           *err;
} rl2_json_reader_t;

static rl2_status_t
rl2_json_fail(rl2_json_reader_t *r, const char *what)
{
    return rl2_err_set(r->err, RL2_ERR_INVALID, "invalid JSON at byte %zu: %s",
                       r->at, what);
}

static void
rl2_json_space(rl2_json_reader_t *r)
{
    while (r->at < r->len
           && (r->p[r->at] == ' ' || r->p[r->at] == '\t' || r->p[r->at] == '\n'
               || r->p[r->at] == '\r')) {
        r->at++;
    }
}

/* One byte into the object's buffer (room is certain: see above). */
static void
rl2_json_put(rl2_json_reader_t *r, unsigned char c)
{
    r->obj->buf[r->used++] = (char)c;
}

/* Code point cp as UTF-8 into the buffer. */
static void
rl2_json_put_cp(rl2_json_reader_t *r, unsigned long cp)
{
    if (cp < 0x80) {
        rl2_json_put(r, (unsigned char)cp);
    }
    else if (cp < 0x800) {
        rl2_json_put(r, (unsigned char)(0xc0 | (cp >> 6)));
        rl2_json_put(r, (unsigned char)(0x80 | (cp & 0x3f)));
    }
    else if (cp < 0x10000) {
        rl2_json_put(r, (unsigned char)(0xe0 | (cp >> 12)));
        rl2_json_put(r, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
        rl2_json_put(r, (unsigned char)(0x80 | (cp & 0x3f)));
    }
    else {
        rl2_json_put(r, (unsigned char)(0xf0 | (cp >> 18)));
        rl2_json_put(r, (unsigned char)(0x80 | ((cp >> 12) & 0x3f)));
        rl2_json_put(r, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
        rl2_json_put(r, (unsigned char)(0x80 | (cp & 0x3f)));
    }
}

/* The four hex digits of a \u escape at r->at; -1 when they are not. */
static long
rl2_json_hex4(rl2_json_reader_t *r)
{
    long v = 0;

    if (r->len - r->at < 4) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        unsigned char c = r->p[r->at + (size_t)i];

        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        }
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v |= (c | 0x20) - 'a' + 10;
        }
        else {
            return -1;
        }
    }
    r->at += 4;
    return v;
}

/* After "\u": one code point, a surrogate pair read whole. */
static rl2_status_t
rl2_json_unicode(rl2_json_reader_t *r)
{
    long hi = rl2_json_hex4(r), lo;

    if (hi < 0) {
        return rl2_json_fail(r, "\\u needs four hex digits");
    }
    if (hi >= 0xdc00 && hi <= 0xdfff) {
        return rl2_json_fail(r, "a low surrogate without its high one");
    }
    if (hi >= 0xd800 && hi <= 0xdbff) {
        if (r->len - r->at < 2 || r->p[r->at] != '\\'
            || r->p[r->at + 1] != 'u') {
            return rl2_json_fail(r, "a high surrogate without its low one");
        }
        r->at += 2;
        lo = rl2_json_hex4(r);
        if (lo < 0xdc00 || lo > 0xdfff) {
            return rl2_json_fail(r, "a high surrogate without its low one");
        }
        rl2_json_put_cp(r, 0x10000 + (((unsigned long)hi - 0xd800) << 10)
                               + ((unsigned long)lo - 0xdc00));
        return RL2_OK;
    }
    if (hi == 0) {
        /* The values are C strings: a NUL would cut one short. */
        return rl2_json_fail(r, "\\u0000 is not taken");
    }
    rl2_json_put_cp(r, (unsigned long)hi);
    return RL2_OK;
}

static rl2_status_t
rl2_json_read_escape(rl2_json_reader_t *r)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char       *e;
    unsigned char     c;

    if (r->at >= r->len) {
        return rl2_json_fail(r, "the text ends inside a string");
    }
    c = r->p[r->at++];
    if (c == 'u') {
        return rl2_json_unicode(r);
    }
    if (c == '\0' || (e = strchr(from, c)) == NULL) {
        r->at--;
        return rl2_json_fail(r, "an escape JSON does not have");
    }
    rl2_json_put(r, (unsigned char)to[e - from]);
    return RL2_OK;
}

/* A string at r->at (its opening quote), decoded and NUL-terminated
 * into the buffer; *out points to it. */
static rl2_status_t
rl2_json_string_read(rl2_json_reader_t *r, const char **out)
{
    size_t       start = r->used, n;
    rl2_status_t st;

    r->at++;
    for (;;) {
        if (r->at >= r->len) {
            return rl2_json_fail(r, "the text ends inside a string");
        }
        unsigned char c = r->p[r->at];

        if (c == '"') {
            r->at++;
            break;
        }
        if (c == '\\') {
            r->at++;
            if ((st = rl2_json_read_escape(r)) != RL2_OK) {
                return st;
            }
        }
        else if (c < 0x20 || c == 0x7f) {
            return rl2_json_fail(r, "a control byte in a string");
        }
        else if (c < 0x80) {
            rl2_json_put(r, c);
            r->at++;
        }
        else if ((n = rl2_utf8_len(r->p + r->at, r->len - r->at)) > 0) {
            for (size_t i = 0; i < n; i++) {
                rl2_json_put(r, r->p[r->at++]);
            }
        }
        else {
            return rl2_json_fail(r, "a string that is not valid UTF-8");
        }
    }
    rl2_json_put(r, '\0');
    *out = r->obj->buf + start;
    return RL2_OK;
}

/* Digits at r->at: how many. */
static size_t
rl2_json_digits(rl2_json_reader_t *r)
{
    size_t n = 0;

    while (r->at < r->len && r->p[r->at] >= '0' && r->p[r->at] <= '9') {
        r->at++;
        n++;
    }
    return n;
}

/* A number in RFC 8259's grammar, kept as its text. */
static rl2_status_t
rl2_json_number(rl2_json_reader_t *r, const char **out)
{
    size_t start = r->at;

    if (r->p[r->at] == '-') {
        r->at++;
    }
    if (r->at < r->len && r->p[r->at] == '0') {
        r->at++;
    }
    else if (rl2_json_digits(r) == 0) {
        return rl2_json_fail(r, "a number needs a digit");
    }
    if (r->at < r->len && r->p[r->at] == '.') {
        r->at++;
        if (rl2_json_digits(r) == 0) {
            return rl2_json_fail(r, "a digit must follow the point");
        }
    }
    if (r->at < r->len && (r->p[r->at] == 'e' || r->p[r->at] == 'E')) {
        r->at++;
        if (r->at < r->len && (r->p[r->at] == '+' || r->p[r->at] == '-')) {
            r->at++;
        }
        if (rl2_json_digits(r) == 0) {
            return rl2_json_fail(r, "an exponent needs a digit");
        }
    }
    *out = r->obj->buf + r->used;
    for (size_t i = start; i < r->at; i++) {
        rl2_json_put(r, r->p[i]);
    }
    rl2_json_put(r, '\0');
    return RL2_OK;
}

/* true, false or null. */
static rl2_status_t
rl2_json_word(rl2_json_reader_t *r, rl2_json_member_t *m)
{
    static const struct {
        const char     *word;
        rl2_json_type_t type;
    } words[] = { { "true", RL2_JSON_TRUE },
                  { "false", RL2_JSON_FALSE },
                  { "null", RL2_JSON_NULL } };

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t n = strlen(words[i].word);

        if (r->len - r->at >= n
            && memcmp(r->p + r->at, words[i].word, n) == 0) {
            r->at += n;
            m->type = words[i].type;
            m->value = words[i].word;
            return RL2_OK;
        }
    }
    return rl2_json_fail(r, "a value must be a string, a number, true, "
                            "false or null");
}

static rl2_status_t
rl2_json_value(rl2_json_reader_t *r, rl2_json_member_t *m)
{
    unsigned char c;

    if (r->at >= r->len) {
        return rl2_json_fail(r, "the text ends before a value");
    }
    c = r->p[r->at];
    if (c == '"') {
        m->type = RL2_JSON_STRING;
        return rl2_json_string_read(r, &m->value);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        m->type = RL2_JSON_NUMBER;
        return rl2_json_number(r, &m->value);
    }
    if (c == '{' || c == '[') {
        return rl2_json_fail(r, "no object or array is taken as a value");
    }
    return rl2_json_word(r, m);
}

/* One "name": value; refused when the name came before. */
static rl2_status_t
rl2_json_member(rl2_json_reader_t *r)
{
    rl2_json_object_t *o = r->obj;
    rl2_json_member_t *m;
    size_t             name_at = r->at;
    rl2_status_t       st;

    if (o->n == RL2_JSON_MEMBERS_MAX) {
        return rl2_json_fail(r, "too many members");
    }
    m = &o->m[o->n];
    if (r->at >= r->len || r->p[r->at] != '"') {
        return rl2_json_fail(r, "a member's name must be a string");
    }
    if ((st = rl2_json_string_read(r, &m->name)) != RL2_OK) {
        return st;
    }
    for (size_t i = 0; i < o->n; i++) {
        if (strcmp(o->m[i].name, m->name) == 0) {
            r->at = name_at;
            return rl2_err_set(r->err, RL2_ERR_INVALID,
                               "invalid JSON at byte %zu: \"%.40s\" is given "
                               "twice",
                               name_at, m->name);
        }
    }
    rl2_json_space(r);
    if (r->at >= r->len || r->p[r->at] != ':') {
        return rl2_json_fail(r, "a ':' must follow a member's name");
    }
    r->at++;
    rl2_json_space(r);
    if ((st = rl2_json_value(r, m)) != RL2_OK) {
        return st;
    }
    o->n++;
    return RL2_OK;
}

rl2_status_t
rl2_json_object_read(const char *text, size_t len, rl2_json_object_t *obj,
                     rl2_err_t *err)
{
    rl2_json_reader_t r = { (const unsigned char *)text, len, 0, obj, 0, err };
    rl2_status_t      st;

    obj->n = 0;
    if (len > RL2_JSON_TEXT_MAX) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "the JSON text is over %d bytes", RL2_JSON_TEXT_MAX);
    }
    rl2_json_space(&r);
    if (r.at >= len || r.p[r.at] != '{') {
        return rl2_json_fail(&r, "the text must be one JSON object");
    }
    r.at++;
    rl2_json_space(&r);
    if (r.at < len && r.p[r.at] == '}') {
        r.at++;
    }
    else {
        for (;;) {
            if ((st = rl2_json_member(&r)) != RL2_OK) {
                return st;
            }
            rl2_json_space(&r);
            if (r.at < len && r.p[r.at] == ',') {
                r.at++;
                rl2_json_space(&r);
                continue;
            }
            if (r.at < len && r.p[r.at] == '}') {
                r.at++;
                break;
            }
            return rl2_json_fail(&r, "',' or '}' must follow a member");
        }
    }
    rl2_json_space(&r);
    if (r.at != len) {
        return rl2_json_fail(&r, "anything after the object");
    }
    return RL2_OK;
}

const rl2_json_member_t *
rl2_json_object_get(const rl2_json_object_t *obj, const char *name)
{
    for (size_t i = 0; i < obj->n; i++) {
        if (strcmp(obj->m[i].name, name) == 0) {
            return &obj->m[i];
        }
    }
    return NULL;
}
