/*
 * http.c -- a request head of the HTTP/1.1 listener (-H) read into the
 * CGI environment the FastCGI path builds, and a CGI-style answer
 * written back as an HTTP/1.1 response without a body.
 *
 * nginx's auth_request over proxy_pass keeps an upstream connection only
 * when the answer has no body (204, or Content-Length: 0), which a
 * FastCGI answer never lets it do; over HTTP the daemon's connection
 * serves request after request.  Everything after the reading is the
 * FastCGI path's own: the environment here is what nginx's
 * fastcgi_params would give (REQUEST_METHOD, REQUEST_URI, REMOTE_ADDR,
 * HTTP_<NAME> for each header, CONTENT_TYPE, RATELIMIT2_REQUEST_ID), it
 * goes through rl2_fcgi_handle (the same joining of repeated params, the
 * same decision, the same headers), and its CGI answer is translated
 * here, so no header is rendered twice.
 *
 * The original request's method, target, client address and id are not
 * this request's: nginx sends them in X-RateLimit2-Method, -URI, -Addr,
 * -Request-Id (and -User, $remote_user, when there is one), which the
 * shipped snippet sets with proxy_set_header; nginx drops a client's own
 * header of a name proxy_set_header sets, so a client cannot choose
 * them.  A request without one of the four, or with one of the five
 * twice, is refused rather than counted under a key nginx did not give.
 *
 * The socket should be reachable by nginx alone, but every byte is read
 * as hostile: the head is bounded (RL2_HTTP_HEAD_MAX, then 431), so is
 * the number of fields, a body (Content-Length above 0, any
 * Transfer-Encoding) is refused, and so are a malformed request line,
 * a field name that is not a token, NUL or a lone CR or LF in a field,
 * and obs-fold.  Pure functions: the connection is http_conn.c's.
 */
#include <string.h>

#include "fcgi.h"

/* The identity fields the snippet sets, by the index of their slot. */
enum {
    RL2_HTTP_ID_METHOD,
    RL2_HTTP_ID_URI,
    RL2_HTTP_ID_ADDR,
    RL2_HTTP_ID_REQUEST_ID,
    RL2_HTTP_ID_USER, /* optional: $remote_user is often empty */
    RL2_HTTP_IDS
};

static const struct {
    const char *header; /* as the snippet spells it; matched case-blind */
    const char *param;  /* the FastCGI param it stands for */
    int         required;
    const char *missing; /* why, when it is required and absent */
    const char *twice;   /* why, when it is given twice */
} rl2_http_ids[RL2_HTTP_IDS] = {
    { "X-RateLimit2-Method", "REQUEST_METHOD", 1,
      "no X-RateLimit2-Method header from the web server",
      "X-RateLimit2-Method given twice" },
    { "X-RateLimit2-URI", "REQUEST_URI", 1,
      "no X-RateLimit2-URI header from the web server",
      "X-RateLimit2-URI given twice" },
    { "X-RateLimit2-Addr", "REMOTE_ADDR", 1,
      "no X-RateLimit2-Addr header from the web server",
      "X-RateLimit2-Addr given twice" },
    { "X-RateLimit2-Request-Id", "RATELIMIT2_REQUEST_ID", 1,
      "no X-RateLimit2-Request-Id header from the web server",
      "X-RateLimit2-Request-Id given twice" },
    { "X-RateLimit2-User", "REMOTE_USER", 0, NULL,
      "X-RateLimit2-User given twice" },
};

static const char rl2_http_role[] = "FCGI_ROLE=RESPONDER";

/* One field of the head, pointing into the caller's buffer. */
typedef struct {
    const char *p;
    size_t      len;
} rl2_http_span_t;

typedef struct {
    rl2_http_req_t *r;
    size_t          env_used;
    size_t          n_env;
    rl2_http_span_t ids[RL2_HTTP_IDS];
    int             seen[RL2_HTTP_IDS];
    int             conn_close;
    int             conn_keep_alive;
    int             has_length;
    int             has_type; /* a Content-Type taken */
} rl2_http_parse_t;

/* RFC 9110 5.6.2 tchar. */
static int
rl2_http_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9')) {
        return 1;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int
rl2_http_fail(rl2_http_req_t *r, int status, const char *why)
{
    r->status = status;
    r->why = why;
    r->keep = 0;
    r->envp[0] = NULL;
    return RL2_HTTP_BAD;
}

/* A head read well whose request is answered without a decision: no
 * params, the connection kept as the head says. */
static int
rl2_http_undecided(rl2_http_req_t *r, int status, const char *why)
{
    r->status = status;
    r->why = why;
    r->envp[0] = NULL;
    return RL2_HTTP_OK;
}

/* Case-blind equality of a span and a NUL-terminated name. */
static int
rl2_http_is(rl2_http_span_t s, const char *name)
{
    return strlen(name) == s.len && strncasecmp(s.p, name, s.len) == 0;
}

/* "NAME=VALUE" into the environment, in envp[slot]; prefix is put
 * before the name, which is upper-cased with '-' made '_' when map is
 * set.  -1 when the environment is full. */
static int
rl2_http_env_put(rl2_http_parse_t *ps, size_t slot, const char *prefix,
                 const char *name, size_t nlen, int map, const char *value,
                 size_t vlen)
{
    rl2_http_req_t *r = ps->r;
    size_t          plen = strlen(prefix);
    char           *out = r->env + ps->env_used;

    if (slot >= RL2_HTTP_ENV_MAX
        || plen + nlen + vlen + 2 > sizeof(r->env) - ps->env_used) {
        return -1;
    }
    memcpy(out, prefix, plen);
    for (size_t i = 0; i < nlen; i++) {
        unsigned char c = (unsigned char)name[i];

        out[plen + i] = !map                     ? (char)c
                        : c == '-'               ? '_'
                        : (c >= 'a' && c <= 'z') ? (char)(c - 32)
                                                 : (char)c;
    }
    out[plen + nlen] = '=';
    memcpy(out + plen + nlen + 1, value, vlen);
    out[plen + nlen + 1 + vlen] = '\0';
    r->envp[slot] = out;
    ps->env_used += plen + nlen + vlen + 2;
    return 0;
}

/* A field into the next free slot of the environment. */
static int
rl2_http_env_add(rl2_http_parse_t *ps, const char *prefix, const char *name,
                 size_t nlen, int map, const char *value, size_t vlen)
{
    if (rl2_http_env_put(ps, ps->n_env, prefix, name, nlen, map, value, vlen)
        != 0) {
        return -1;
    }
    ps->n_env++;
    return 0;
}

/* The tokens of a Connection field that matter here. */
static void
rl2_http_connection(rl2_http_parse_t *ps, rl2_http_span_t v)
{
    size_t at = 0;

    while (at < v.len) {
        rl2_http_span_t t;

        while (at < v.len
               && (v.p[at] == ',' || v.p[at] == ' ' || v.p[at] == '\t')) {
            at++;
        }
        t.p = v.p + at;
        while (at < v.len && v.p[at] != ',' && v.p[at] != ' '
               && v.p[at] != '\t') {
            at++;
        }
        t.len = (size_t)(v.p + at - t.p);
        ps->conn_close |= rl2_http_is(t, "close");
        ps->conn_keep_alive |= rl2_http_is(t, "keep-alive");
    }
}

/* Content-Length: only 0 is taken (no body is ever read), once. */
static int
rl2_http_length(rl2_http_parse_t *ps, rl2_http_span_t v)
{
    if (ps->has_length) {
        return rl2_http_fail(ps->r, 400, "Content-Length given twice");
    }
    ps->has_length = 1;
    if (v.len == 0) {
        return rl2_http_fail(ps->r, 400, "an empty Content-Length");
    }
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9') {
            return rl2_http_fail(ps->r, 400, "Content-Length is not a number");
        }
        if (v.p[i] != '0') {
            return rl2_http_fail(ps->r, 400, "a request body is not accepted");
        }
    }
    return RL2_HTTP_OK;
}

/* One field, its name and value checked: the identity slots, the
 * fields about the connection and the body, or the environment. */
static int
rl2_http_field(rl2_http_parse_t *ps, rl2_http_span_t name,
               rl2_http_span_t value)
{
    for (int i = 0; i < RL2_HTTP_IDS; i++) {
        if (rl2_http_is(name, rl2_http_ids[i].header)) {
            ps->seen[i]++;
            ps->ids[i] = value;
            return RL2_HTTP_OK;
        }
    }
    if (rl2_http_is(name, "Connection")) {
        rl2_http_connection(ps, value);
        return RL2_HTTP_OK;
    }
    if (rl2_http_is(name, "Content-Length")) {
        return rl2_http_length(ps, value);
    }
    if (rl2_http_is(name, "Transfer-Encoding")) {
        return rl2_http_fail(ps->r, 400, "a request body is not accepted");
    }
    /* CGI's two fields without the HTTP_ prefix (RFC 3875 4.1).  The
     * first Content-Type only: nginx's $content_type, which
     * fastcgi_params passes, is the first line's, and a server's param
     * given twice is read as its last (authorizer.c). */
    if (rl2_http_is(name, "Content-Type")) {
        if (ps->has_type) {
            return RL2_HTTP_OK;
        }
        ps->has_type = 1;
        return rl2_http_env_add(ps, "", "CONTENT_TYPE", 12, 0, value.p,
                                value.len)
                       == 0
                   ? RL2_HTTP_OK
                   : rl2_http_fail(ps->r, 431, "too many header fields");
    }
    return rl2_http_env_add(ps, "HTTP_", name.p, name.len, 1, value.p,
                            value.len)
                   == 0
               ? RL2_HTTP_OK
               : rl2_http_fail(ps->r, 431, "too many header fields");
}

/* One field line, line[0..len) without its CRLF. */
static int
rl2_http_line(rl2_http_parse_t *ps, const char *line, size_t len)
{
    rl2_http_span_t name = { line, 0 }, value;
    size_t          at = 0, end;

    if (line[0] == ' ' || line[0] == '\t') {
        return rl2_http_fail(ps->r, 400, "a folded header line (obs-fold)");
    }
    while (at < len && rl2_http_tchar((unsigned char)line[at])) {
        at++;
    }
    if (at == 0 || at == len || line[at] != ':') {
        return rl2_http_fail(ps->r, 400, "a header name that is not a token");
    }
    name.len = at++;
    /* nginx passes any other byte of a value on: so does the FastCGI
     * path, and so does this one.  NUL, CR and LF end a value nowhere
     * else. */
    for (size_t i = at; i < len; i++) {
        if (line[i] == '\0' || line[i] == '\r' || line[i] == '\n') {
            return rl2_http_fail(ps->r, 400, "NUL, CR or LF in a header value");
        }
    }
    while (at < len && (line[at] == ' ' || line[at] == '\t')) {
        at++;
    }
    end = len;
    while (end > at && (line[end - 1] == ' ' || line[end - 1] == '\t')) {
        end--;
    }
    value.p = line + at;
    value.len = end - at;
    return rl2_http_field(ps, name, value);
}

/* "METHOD SP TARGET SP HTTP/1.x", line[0..len) without its CRLF. */
static int
rl2_http_request_line(rl2_http_parse_t *ps, const char *line, size_t len)
{
    rl2_http_req_t *r = ps->r;
    size_t          at = 0, start;

    while (at < len && rl2_http_tchar((unsigned char)line[at])) {
        at++;
    }
    if (at == 0 || at >= len || line[at] != ' ') {
        return rl2_http_fail(r, 400, "a malformed request line");
    }
    start = ++at;
    while (at < len && (unsigned char)line[at] > ' '
           && (unsigned char)line[at] != 0x7f) {
        at++;
    }
    if (at == start || at >= len || line[at] != ' ') {
        return rl2_http_fail(r, 400, "a malformed request line");
    }
    r->target = line + start;
    r->target_len = at - start;
    at++;
    if (len - at != 8 || memcmp(line + at, "HTTP/1.", 7) != 0
        || (line[at + 7] != '1' && line[at + 7] != '0')) {
        return rl2_http_fail(r, 400, "not an HTTP/1.0 or HTTP/1.1 request");
    }
    r->http10 = line[at + 7] == '0';
    return RL2_HTTP_OK;
}

/* The end of the head in buf[0..len): the length up to and with its
 * blank line, or 0 when it is not all there. */
static size_t
rl2_http_head_end(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;

    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (p - buf >= 3 && p[-1] == '\r' && p[-2] == '\n' && p[-3] == '\r') {
            return (size_t)(p + 1 - buf);
        }
        p++;
    }
    return 0;
}

int
rl2_http_head_in(const char *buf, size_t len, size_t *scanned)
{
    size_t upto = len < RL2_HTTP_HEAD_MAX ? len : RL2_HTTP_HEAD_MAX;
    size_t from = *scanned > 3 ? *scanned - 3 : 0;

    if (from > upto) { /* not a caller's doing: *scanned <= len */
        from = upto;
    }
    if (len >= RL2_HTTP_HEAD_MAX
        || rl2_http_head_end(buf + from, upto - from)) {
        return 1;
    }
    *scanned = upto;
    return 0;
}

/* After the fields: the identity fields into the slots kept for them
 * before the fields (as nginx's fastcgi_params come before the
 * headers), after FCGI_ROLE; the slots of those absent closed up. */
static int
rl2_http_finish(rl2_http_parse_t *ps)
{
    rl2_http_req_t *r = ps->r;
    size_t          slot = 1, first_field = 1 + RL2_HTTP_IDS;

    for (int i = 0; i < RL2_HTTP_IDS; i++) {
        /* Answered, not counted: the key would not be nginx's. */
        if (ps->seen[i] > 1) {
            return rl2_http_undecided(r, 400, rl2_http_ids[i].twice);
        }
        if (ps->seen[i] == 0 && rl2_http_ids[i].required) {
            return rl2_http_undecided(r, 500, rl2_http_ids[i].missing);
        }
    }
    for (int i = 0; i < RL2_HTTP_IDS; i++) {
        if (ps->seen[i] == 0) {
            continue;
        }
        if (rl2_http_env_put(ps, slot++, "", rl2_http_ids[i].param,
                             strlen(rl2_http_ids[i].param), 0, ps->ids[i].p,
                             ps->ids[i].len)
            != 0) {
            return rl2_http_fail(r, 431, "too many header fields");
        }
    }
    memmove(&r->envp[slot], &r->envp[first_field],
            (ps->n_env - first_field) * sizeof(r->envp[0]));
    r->envp[slot + ps->n_env - first_field] = NULL;
    return RL2_HTTP_OK;
}

int
rl2_http_parse(rl2_http_req_t *r, const char *buf, size_t len)
{
    rl2_http_parse_t ps;
    size_t           head, at, eol, n_fields = 0;
    int              rc;

    memset(&ps, 0, sizeof(ps));
    ps.r = r;
    r->status = 0;
    r->why = NULL;
    r->keep = 0;
    r->target = NULL;
    r->target_len = 0;
    r->envp[0] = NULL;
    head = rl2_http_head_end(buf,
                             len < RL2_HTTP_HEAD_MAX ? len : RL2_HTTP_HEAD_MAX);
    if (head == 0) {
        return len >= RL2_HTTP_HEAD_MAX
                   ? rl2_http_fail(r, 431, "request head larger than 64 KiB")
                   : RL2_HTTP_MORE;
    }
    r->head_len = head;
    /* Each line ends in CRLF; a lone LF inside one is refused. */
    eol = (size_t)((const char *)memchr(buf, '\n', head) - buf);
    if (eol == 0 || buf[eol - 1] != '\r' || memchr(buf, '\r', eol - 1)) {
        return rl2_http_fail(r, 400, "a malformed request line");
    }
    if ((rc = rl2_http_request_line(&ps, buf, eol - 1)) != RL2_HTTP_OK) {
        return rc;
    }
    /* The responder role first, as libfcgi puts it: nginx's
     * auth_request takes 2xx, 401 and 403, so a refusal is a 403
     * (authorizer.c).  The identities' slots are kept after it. */
    memcpy(r->env, rl2_http_role, sizeof(rl2_http_role));
    r->envp[0] = r->env;
    ps.env_used = sizeof(rl2_http_role);
    ps.n_env = 1 + RL2_HTTP_IDS;
    for (at = eol + 1; at < head - 2; at = eol + 1) {
        eol = (size_t)((const char *)memchr(buf + at, '\n', head - at) - buf);
        if (buf[eol - 1] != '\r' || eol - 1 == at
            || memchr(buf + at, '\r', eol - 1 - at) != NULL) {
            return rl2_http_fail(r, 400, "a lone CR or LF in the head");
        }
        if (++n_fields > RL2_HTTP_FIELDS_MAX) {
            return rl2_http_fail(r, 431, "too many header fields");
        }
        if ((rc = rl2_http_line(&ps, buf + at, eol - 1 - at)) != RL2_HTTP_OK) {
            return rc;
        }
    }
    r->keep = r->http10 ? ps.conn_keep_alive && !ps.conn_close : !ps.conn_close;
    return rl2_http_finish(&ps);
}

/* Appends s[0..n) at out[*at] when it fits; *at past cap means it did
 * not. */
static void
rl2_http_put(char *out, size_t cap, size_t *at, const char *s, size_t n)
{
    if (*at <= cap && n <= cap - *at) {
        memcpy(out + *at, s, n);
    }
    *at += n;
}

/* The header lines of a CGI answer an HTTP response carries: not
 * Status (the status line says it), not the body's Content-Type (there
 * is no body), not Variable-* (an authorizer's, never a responder's). */
static int
rl2_http_keeps(const char *line, size_t len)
{
    static const char *const dropped[] = { "Status:", "Content-Type:",
                                           "Variable-" };

    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
        size_t n = strlen(dropped[i]);

        if (len >= n && strncasecmp(line, dropped[i], n) == 0) {
            return 0;
        }
    }
    return 1;
}

size_t
rl2_http_answer(const char *cgi, size_t len, int keep, int http10, char *out,
                size_t cap)
{
    static const char status[] = "Status: ";
    const char       *line = cgi, *end = cgi + len, *eol;
    size_t            at = 0;

    if (len < sizeof(status) - 1 + 3
        || memcmp(cgi, status, sizeof(status) - 1) != 0
        || (eol = memchr(cgi, '\n', len)) == NULL || eol[-1] != '\r') {
        return 0;
    }
    /* Allowed: 204, which nginx takes as a response without a body and
     * so keeps the connection; anything else says Content-Length: 0. */
    if (memcmp(cgi + sizeof(status) - 1, "200", 3) == 0) {
        rl2_http_put(out, cap, &at, "HTTP/1.1 204 No Content\r\n", 25);
    }
    else {
        rl2_http_put(out, cap, &at, "HTTP/1.1 ", 9);
        rl2_http_put(out, cap, &at, cgi + sizeof(status) - 1,
                     (size_t)(eol + 1 - cgi) - (sizeof(status) - 1));
        rl2_http_put(out, cap, &at, "Content-Length: 0\r\n", 19);
    }
    for (line = eol + 1; line < end; line = eol + 1) {
        eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL || eol == line || eol[-1] != '\r') {
            return 0;
        }
        if (eol - line == 1) {
            break; /* the blank line: the body after it is dropped */
        }
        if (rl2_http_keeps(line, (size_t)(eol - line))) {
            rl2_http_put(out, cap, &at, line, (size_t)(eol + 1 - line));
        }
    }
    if (!keep) {
        rl2_http_put(out, cap, &at, "Connection: close\r\n", 19);
    }
    else if (http10) {
        rl2_http_put(out, cap, &at, "Connection: keep-alive\r\n", 24);
    }
    rl2_http_put(out, cap, &at, "\r\n", 2);
    return at <= cap ? at : 0;
}
