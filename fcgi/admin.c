/*
 * admin.c -- ratelimit2-fcgi's admin path (-a PATH): the runtime
 * overrides changed over HTTP (admin.h), behind bearer tokens read from
 * a file (-K FILE).
 *
 * The admin path is answered in the responder role only: an authorizer
 * request carries no body, and its answer is the client's only when it
 * refuses.  It is never counted by the limiter, in either role (nor the
 * check nginx's auth_request makes for it): a ban or the emergency
 * allow-list must not lock out the operator lifting it.  Whom the web
 * server lets reach the path is its own configuration's business
 * (docs/fastcgi.md); the daemon's is the token.
 *
 * A request's token is compared with every token of the file, each over
 * RL2_ADMIN_TOKEN_MAX bytes, with no early exit: the time depends on how
 * many tokens there are, not on which one matched or where a guess went
 * wrong.  Tokens are never logged.
 *
 * The body is read from FastCGI stdin, at most RL2_ADMIN_BODY_MAX + 1
 * bytes; whatever is left of it (a refused request's body, one over the
 * bound) is read and dropped before the request is finished, since
 * libfcgi's FCGX_Finish_r leaves unread stdin on the connection, where
 * a server that keeps it open (FCGI_KEEP_CONN) would have the next
 * request refused by vet.c.  More than RL2_ADMIN_DRAIN_MAX of it closes
 * the connection instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "ratelimit2/admin.h"

#include "fcgi.h"

/* What a worker reads and drops of a body it does not use. */
#define RL2_ADMIN_DRAIN_MAX (1024 * 1024)
#define RL2_ADMIN_STR_(x)   #x
#define RL2_ADMIN_STR(x)    RL2_ADMIN_STR_(x)
/* The answer: a list of overrides is cut to fit (admin.h). */
#define RL2_ADMIN_ANSWER_MAX (64 * 1024)

/* ---- the token file ------------------------------------------------- */

/* The file's bytes, after checking what it is and who may read it; a
 * NUL-terminated heap copy in *buf. */
static int
rl2_admin_file_load(const char *path, char **buf, size_t *len, rl2_err_t *err)
{
    struct stat st;
    ssize_t     n;
    size_t      got = 0;
    int         fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0) {
        rl2_err_set(err, RL2_ERR_SYS, "%s: cannot open: %s", path,
                    strerror(errno));
        return -1;
    }
    /* The file opened, not the name: nothing can be swapped in between. */
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rl2_err_set(err, RL2_ERR_CONFIG, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((st.st_mode & 007) != 0) {
        rl2_err_set(err, RL2_ERR_CONFIG,
                    "%s: mode %04o lets others read or write the tokens: "
                    "chmod o-rwx %s",
                    path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return -1;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        rl2_err_set(err, RL2_ERR_CONFIG,
                    "%s: owned by uid %lu, neither this daemon's user (uid "
                    "%lu) nor root: chown it to one of them",
                    path, (unsigned long)st.st_uid, (unsigned long)geteuid());
        close(fd);
        return -1;
    }
    if (st.st_size > RL2_ADMIN_TOKEN_FILE_MAX) {
        rl2_err_set(err, RL2_ERR_CONFIG, "%s: larger than %d bytes", path,
                    RL2_ADMIN_TOKEN_FILE_MAX);
        close(fd);
        return -1;
    }
    if ((*buf = malloc(RL2_ADMIN_TOKEN_FILE_MAX + 1)) == NULL) {
        rl2_err_set(err, RL2_ERR_NOMEM, "%s: out of memory", path);
        close(fd);
        return -1;
    }
    /* Bounded by the buffer, not by st_size: the file may grow. */
    while (got < RL2_ADMIN_TOKEN_FILE_MAX
           && (n = read(fd, *buf + got, RL2_ADMIN_TOKEN_FILE_MAX - got)) != 0) {
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rl2_err_set(err, RL2_ERR_SYS, "%s: cannot read: %s", path,
                        strerror(errno));
            explicit_bzero(*buf, got);
            free(*buf);
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    (*buf)[got] = '\0';
    *len = got;
    return 0;
}

static int
rl2_admin_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* One line (no newline), for ts; its number for the messages.  Blank
 * lines and '#' comments add nothing. */
static int
rl2_admin_line(const char *path, unsigned line, const char *p, size_t len,
               rl2_admin_tokens_t *ts, rl2_err_t *err)
{
    size_t             at = 0, name_at, name_len, tok_at, tok_len;
    rl2_admin_token_t *t;

    while (at < len && (p[at] == ' ' || p[at] == '\t')) {
        at++;
    }
    /* Trailing blanks, and the '\r' of a file written on Windows. */
    while (len > at
           && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r')) {
        len--;
    }
    if (at == len || p[at] == '#') {
        return 0;
    }
    for (name_at = at; at < len && rl2_admin_name_char(p[at]); at++) {
    }
    name_len = at - name_at;
    if (name_len == 0 || name_len > RL2_ADMIN_NAME_MAX
        || (at < len && p[at] != ' ' && p[at] != '\t')) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s:%u: a line is NAME TOKEN, NAME of 1 to %d "
                           "letters, digits, '.', '_' or '-'",
                           path, line, RL2_ADMIN_NAME_MAX),
               -1;
    }
    while (at < len && (p[at] == ' ' || p[at] == '\t')) {
        at++;
    }
    for (tok_at = at; at < len && p[at] > ' ' && p[at] < 0x7f; at++) {
    }
    tok_len = at - tok_at;
    if (at < len && tok_len > 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s:%u: something follows the token of %.*s "
                           "(a token has no spaces)",
                           path, line, (int)name_len, p + name_at),
               -1;
    }
    if (tok_len < RL2_ADMIN_TOKEN_MIN || tok_len > RL2_ADMIN_TOKEN_MAX
        || at < len) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "%s:%u: the token of %.*s must be %d to %d "
                           "bytes of printable ASCII without spaces",
                           path, line, (int)name_len, p + name_at,
                           RL2_ADMIN_TOKEN_MIN, RL2_ADMIN_TOKEN_MAX),
               -1;
    }
    for (size_t i = 0; i < ts->n; i++) {
        if (strlen(ts->t[i].name) == name_len
            && memcmp(ts->t[i].name, p + name_at, name_len) == 0) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "%s:%u: %.*s is named twice", path, line,
                               (int)name_len, p + name_at),
                   -1;
        }
        /* Two names, one token: which of them made a change? */
        if (ts->t[i].len == tok_len
            && memcmp(ts->t[i].token, p + tok_at, tok_len) == 0) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "%s:%u: %.*s has the token of %s: each name "
                               "needs its own",
                               path, line, (int)name_len, p + name_at,
                               ts->t[i].name),
                   -1;
        }
    }
    if (ts->n == RL2_ADMIN_TOKENS_MAX) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "%s:%u: more than %d tokens",
                           path, line, RL2_ADMIN_TOKENS_MAX),
               -1;
    }
    t = &ts->t[ts->n++];
    memcpy(t->name, p + name_at, name_len);
    t->name[name_len] = '\0';
    memcpy(t->token, p + tok_at, tok_len);
    t->len = tok_len;
    return 0;
}

static int
rl2_admin_parse(const char *path, const char *buf, size_t len,
                rl2_admin_tokens_t *ts, rl2_err_t *err)
{
    const char *p = buf, *end = buf + len, *nl;
    unsigned    line = 1;

    if (memchr(buf, '\0', len) != NULL) {
        rl2_err_set(err, RL2_ERR_CONFIG, "%s: holds a NUL byte", path);
        return -1;
    }
    for (; p < end; p = nl + 1, line++) {
        if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
            nl = end;
        }
        if (rl2_admin_line(path, line, p, (size_t)(nl - p), ts, err) != 0) {
            return -1;
        }
    }
    if (ts->n == 0) {
        rl2_err_set(err, RL2_ERR_CONFIG,
                    "%s: no token in it (lines of NAME TOKEN)", path);
        return -1;
    }
    return 0;
}

int
rl2_admin_tokens_read(const char *path, rl2_admin_tokens_t **out,
                      rl2_err_t *err)
{
    rl2_admin_tokens_t *ts;
    char               *buf;
    size_t              len;
    int                 rc;

    *out = NULL;
    if (rl2_admin_file_load(path, &buf, &len, err) != 0) {
        return -1;
    }
    if ((ts = calloc(1, sizeof(*ts))) == NULL) {
        explicit_bzero(buf, len);
        free(buf);
        rl2_err_set(err, RL2_ERR_NOMEM, "%s: out of memory", path);
        return -1;
    }
    rc = rl2_admin_parse(path, buf, len, ts, err);
    explicit_bzero(buf, len);
    free(buf);
    if (rc != 0) {
        rl2_admin_tokens_free(ts);
        return -1;
    }
    *out = ts;
    return 0;
}

void
rl2_admin_tokens_free(rl2_admin_tokens_t *ts)
{
    if (ts != NULL) {
        explicit_bzero(ts, sizeof(*ts));
        free(ts);
    }
}

int
rl2_fcgi_admin_init(rl2_server_t *srv, rl2_err_t *err)
{
    pthread_mutex_init(&srv->admin_lock, NULL);
    if (srv->admin_file == NULL) {
        return 0;
    }
    if (rl2_admin_tokens_read(srv->admin_file, &srv->admin_tokens, err) != 0) {
        return -1;
    }
    rl2_log(LOG_INFO, "admin path %s: %zu tokens from %s", srv->admin_path,
            srv->admin_tokens->n, srv->admin_file);
    return 0;
}

void
rl2_fcgi_admin_reload(rl2_server_t *srv)
{
    rl2_admin_tokens_t *ts, *old;
    rl2_err_t           err;

    if (srv->admin_file == NULL) {
        return;
    }
    if (rl2_admin_tokens_read(srv->admin_file, &ts, &err) != 0) {
        rl2_log(LOG_ERR,
                "admin tokens not reloaded, the previous ones stay: %s",
                err.msg);
        return;
    }
    pthread_mutex_lock(&srv->admin_lock);
    old = srv->admin_tokens;
    srv->admin_tokens = ts;
    pthread_mutex_unlock(&srv->admin_lock);
    rl2_admin_tokens_free(old);
    rl2_log(LOG_INFO, "admin path %s: %zu tokens from %s", srv->admin_path,
            ts->n, srv->admin_file);
}

void
rl2_fcgi_admin_destroy(rl2_server_t *srv)
{
    rl2_admin_tokens_free(srv->admin_tokens);
    srv->admin_tokens = NULL;
    pthread_mutex_destroy(&srv->admin_lock);
}

/* ---- one request ---------------------------------------------------- */

/* Which token `given` is, in constant time: every token is compared over
 * all RL2_ADMIN_TOKEN_MAX bytes, and a match only selects its name.
 * Copies the name into name[]; 0 when none matched. */
static int
rl2_admin_match(const rl2_admin_tokens_t *ts, const char *given,
                char name[RL2_ADMIN_NAME_MAX + 1])
{
    unsigned char cand[RL2_ADMIN_TOKEN_MAX];
    size_t        glen = strnlen(given, RL2_ADMIN_TOKEN_MAX + 1), found = 0;

    memset(cand, 0, sizeof(cand));
    memcpy(cand, given, glen > RL2_ADMIN_TOKEN_MAX ? 0 : glen);
    for (size_t i = 0; i < ts->n; i++) {
        /* At most 0x1ff: the lengths are at most RL2_ADMIN_TOKEN_MAX + 1. */
        unsigned d = (unsigned)(ts->t[i].len ^ glen);

        for (size_t j = 0; j < RL2_ADMIN_TOKEN_MAX; j++) {
            d |= (unsigned)(ts->t[i].token[j] ^ cand[j]);
        }
        /* 1 when d is 0, without a branch on it. */
        found |= (size_t)((d - 1u) >> 31) * (i + 1);
    }
    explicit_bzero(cand, sizeof(cand));
    if (found == 0) {
        return 0;
    }
    memcpy(name, ts->t[found - 1].name, RL2_ADMIN_NAME_MAX + 1);
    return 1;
}

/* The token of "Authorization: Bearer TOKEN" (the scheme's case is
 * free, RFC 7235), or NULL.  Two Authorization headers are no token:
 * which would the web server's other modules have read? */
static const char *
rl2_admin_bearer(FCGX_Request *req)
{
    static const char name[] = "HTTP_AUTHORIZATION=";
    const char       *auth = NULL;
    int               n = 0;

    for (char **e = req->envp; *e != NULL; e++) {
        if (strncmp(*e, name, sizeof(name) - 1) == 0) {
            auth = *e + sizeof(name) - 1;
            n++;
        }
    }
    if (n != 1 || strncasecmp(auth, "Bearer ", 7) != 0) {
        return NULL;
    }
    for (auth += 7; *auth == ' '; auth++) {
    }
    return auth;
}

/* The author "token:NAME" of a request, or -1 when no token matched. */
static int
rl2_fcgi_admin_author(rl2_server_t *srv, FCGX_Request *req, char *author,
                      size_t size)
{
    char        name[RL2_ADMIN_NAME_MAX + 1];
    const char *given = rl2_admin_bearer(req);
    int         ok = 0;

    if (given == NULL) {
        return -1;
    }
    pthread_mutex_lock(&srv->admin_lock);
    if (srv->admin_tokens != NULL) {
        ok = rl2_admin_match(srv->admin_tokens, given, name);
    }
    pthread_mutex_unlock(&srv->admin_lock);
    if (!ok) {
        return -1;
    }
    snprintf(author, size, "token:%s", name);
    return 0;
}

static const char *
rl2_admin_reason(int status)
{
    switch (status) {
    case 200:
        return "200 OK";
    case 400:
        return "400 Bad Request";
    case 401:
        return "401 Unauthorized";
    case 404:
        return "404 Not Found";
    case 405:
        return "405 Method Not Allowed";
    case 415:
        return "415 Unsupported Media Type";
    case 503:
        return "503 Service Unavailable";
    default:
        return "500 Internal Server Error";
    }
}

/* Status, headers and the JSON body. */
static void
rl2_fcgi_admin_send(FCGX_Request *req, int status, const char *body)
{
    char head[512];
    int  n;

    n = snprintf(head, sizeof(head),
                 "Status: %s\r\n"
                 "Content-Type: application/json; charset=utf-8\r\n"
                 "Cache-Control: no-store\r\n"
                 "%s%s\r\n",
                 rl2_admin_reason(status),
                 status == 405 ? "Allow: POST\r\n" : "",
                 status == 401
                     ? "WWW-Authenticate: Bearer realm=\"ratelimit2-admin\"\r\n"
                     : "");
    if (FCGX_PutStr(head, n, req->out) < 0
        || FCGX_PutStr(body, (int)strlen(body), req->out) < 0
        || FCGX_PutStr("\n", 1, req->out) < 0) {
        rl2_log_request(RL2_LOG_ERROR, LOG_WARNING,
                        "admin path: could not send an answer: the web "
                        "server closed the connection");
    }
}

/* An error of the front end's own: text is ours, nothing to escape. */
static void
rl2_admin_fail(FCGX_Request *req, int status, const char *text)
{
    char body[512];

    snprintf(body, sizeof(body), "{\"ok\":false,\"error\":\"%s\"}", text);
    rl2_fcgi_admin_send(req, status, body);
}

/* Read and drop what is left of the body; when there is too much of it,
 * have FCGX_Finish_r close the connection rather than leave it there. */
static void
rl2_admin_drain(FCGX_Request *req)
{
    char   buf[4096];
    size_t dropped = 0;
    int    n;

    while (dropped < RL2_ADMIN_DRAIN_MAX
           && (n = FCGX_GetStr(buf, sizeof(buf), req->in)) > 0) {
        dropped += (size_t)n;
    }
    if (!FCGX_HasSeenEOF(req->in) || FCGX_GetError(req->in) != 0) {
        req->keepConnection = 0;
    }
}

/* The body, at most RL2_ADMIN_BODY_MAX + 1 bytes of it (admin.h): an
 * oversized one is seen as such.  -1 when the stream failed. */
static int
rl2_fcgi_admin_body(FCGX_Request *req, char *body, size_t *len)
{
    int n;

    *len = 0;
    while (*len < RL2_ADMIN_BODY_MAX + 1
           && (n = FCGX_GetStr(body + *len,
                               (int)(RL2_ADMIN_BODY_MAX + 1 - *len), req->in))
                  > 0) {
        *len += (size_t)n;
    }
    return FCGX_GetError(req->in) == 0 ? 0 : -1;
}

/* CONTENT_LENGTH: -1 when it is absent or empty, -2 when it is not a
 * number, else its value (capped: only "over the bound" matters). */
static long long
rl2_admin_content_length(FCGX_Request *req)
{
    const char *cl = FCGX_GetParam("CONTENT_LENGTH", req->envp);
    long long   n = 0;

    if (cl == NULL || cl[0] == '\0') {
        return -1;
    }
    for (; *cl >= '0' && *cl <= '9'; cl++) {
        n = n > RL2_ADMIN_BODY_MAX ? n : n * 10 + (*cl - '0');
    }
    return *cl == '\0' ? n : -2;
}

/* The audit trail, opened for this request (admin requests are rare);
 * NULL when it cannot be, which the core answers by refusing changes
 * (listing still works). */
static rl2_audit_t *
rl2_fcgi_admin_audit(const rl2_gens_t *g, const rl2_policy_t *policy,
                     char *err_out, size_t size)
{
    char             path[4096];
    rl2_audit_conf_t conf;
    rl2_audit_t     *audit;
    rl2_err_t        err;

    /* overrides.audit_file, else beside the state file, where
     * ratelimit2ctl writes too. */
    if (rl2_policy_overrides_audit(policy, g->zone_name, path, sizeof(path))
        != 0) {
        snprintf(err_out, size, "the audit file's path is too long");
        return NULL;
    }
    rl2_audit_conf_default(&conf);
    conf.path = path;
    /* Syslog where the policy sends its alerts (alerts.socket, ident),
     * as ratelimit2ctl does. */
    conf.syslog_socket = g->backend.alert_socket;
    conf.ident = g->backend.alert_ident;
    if (rl2_audit_open(&conf, &audit, &err) != RL2_OK) {
        snprintf(err_out, size, "%s", err.msg);
        return NULL;
    }
    return audit;
}

/* An authenticated request with its body read: the core's answer. */
static void
rl2_admin_change(rl2_server_t *srv, rl2_gen_t *gen, FCGX_Request *req,
                 const char *author, const char *body, size_t len)
{
    char        why[RL2_ERR_MAX], *out;
    const char *peer = FCGX_GetParam("REMOTE_ADDR", req->envp);
    rl2_admin_t a;
    rl2_clock_t now;
    int         status;

    if (gen->policy->overrides_disabled) {
        /* As Apache's ratelimit2-admin answers it. */
        rl2_admin_fail(req, 404,
                       "runtime overrides are off in the policy "
                       "(overrides.enabled = false)");
        return;
    }
    if (srv->gens.overrides == NULL || gen->policy->overrides == NULL) {
        rl2_log_request(RL2_LOG_ERROR, LOG_ERR,
                        "admin path: %s: the runtime override table is not "
                        "open (see the log at start or reload)",
                        author);
        rl2_admin_fail(req, 500,
                       "the runtime override table is not open: see "
                       "ratelimit2-fcgi's log");
        return;
    }
    if ((out = malloc(RL2_ADMIN_ANSWER_MAX)) == NULL) {
        rl2_admin_fail(req, 500, "out of memory");
        return;
    }
    a.policy = gen->policy;
    a.table = srv->gens.overrides;
    a.audit = rl2_fcgi_admin_audit(&srv->gens, gen->policy, why, sizeof(why));
    a.author = author;
    a.origin = RL2_AUDIT_ADMIN;
    if (a.audit == NULL) {
        rl2_log_request(RL2_LOG_ERROR, LOG_ERR,
                        "admin path: the audit file cannot be opened, "
                        "changes are refused: %s",
                        why);
    }
    rl2_clock_now(&now);
    status = rl2_admin_http(&a, FCGX_GetParam("REQUEST_METHOD", req->envp),
                            FCGX_GetParam("CONTENT_TYPE", req->envp), body, len,
                            &now, out, RL2_ADMIN_ANSWER_MAX);
    rl2_audit_close(a.audit);
    /* Only a token's holder gets here: no flood to bound. */
    rl2_log(status == 200 ? LOG_INFO : LOG_WARNING,
            "admin path: %s from %.47s: %d", author, peer != NULL ? peer : "-",
            status);
    rl2_fcgi_admin_send(req, status, out);
    free(out);
}

void
rl2_fcgi_admin(rl2_server_t *srv, rl2_gen_t *gen, FCGX_Request *req,
               int responder)
{
    char        author[RL2_OVR_AUTHOR_MAX], body[RL2_ADMIN_BODY_MAX + 1];
    const char *peer = FCGX_GetParam("REMOTE_ADDR", req->envp);
    size_t      len;
    long long   cl;

    peer = peer != NULL ? peer : "-";
    if (!responder) {
        rl2_log_request(RL2_LOG_INPUT, LOG_ERR,
                        "admin path %s reached in the authorizer role: "
                        "map it to ratelimit2-fcgi in the responder role",
                        srv->admin_path);
        rl2_admin_fail(req, 500,
                       "the admin path is answered in the FastCGI responder "
                       "role only: the web server passes it to the "
                       "authorizer");
        return;
    }
    if (FCGX_GetParam("RATELIMIT2_REQUEST_ID", req->envp) != NULL) {
        /* nginx's auth_request check of the admin path (the shipped
         * snippet names the request): let it on, uncounted; the admin
         * request itself follows, with its body. */
        rl2_fcgi_admin_send(req, 200, "{\"ok\":true}");
        return;
    }
    if (rl2_fcgi_admin_author(srv, req, author, sizeof(author)) != 0) {
        rl2_log_request(RL2_LOG_INPUT, LOG_WARNING,
                        "admin path: refused a request from %.47s without "
                        "a valid bearer token",
                        peer);
        rl2_admin_fail(req, 401,
                       "a valid bearer token is required (Authorization: "
                       "Bearer TOKEN)");
        rl2_admin_drain(req);
        return;
    }
    cl = rl2_admin_content_length(req);
    if (cl == -2 || cl > RL2_ADMIN_BODY_MAX) {
        /* Answered from the length alone: the body is dropped unread. */
        rl2_admin_fail(req, 400,
                       cl == -2 ? "CONTENT_LENGTH is not a number"
                                : "the body is over " RL2_ADMIN_STR(
                                    RL2_ADMIN_BODY_MAX) " bytes");
        rl2_admin_drain(req);
        return;
    }
    if (rl2_fcgi_admin_body(req, body, &len) != 0) {
        rl2_log_request(RL2_LOG_ERROR, LOG_WARNING,
                        "admin path: the body from %.47s could not be read",
                        peer);
        rl2_admin_fail(req, 400, "the body could not be read");
        req->keepConnection = 0;
        return;
    }
    rl2_admin_change(srv, gen, req, author, body, len);
    rl2_admin_drain(req);
}
