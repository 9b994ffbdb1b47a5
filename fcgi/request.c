/*
 * request.c -- CGI meta-variables (FastCGI params or a CGI environment)
 * -> the request description the core decides on.
 *
 * Everything the core reads more than once is copied into bounded
 * buffers: FastCGI params die at the next accept, and a bound refuses
 * oversized input with a clear status instead of passing it on.  Header
 * values are looked up on demand, while the request is being decided,
 * and never kept.
 */
#include <string.h>
#include <strings.h>

#include "fcgi.h"

/* Copy src into dst[len]; -1 when it does not fit. */
static int
rl2_cgi_copy(char *dst, size_t len, const char *src)
{
    size_t n = strnlen(src, len);

    if (n == len) {
        return -1;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

static int
rl2_cgi_fail(rl2_cgi_error_t *e, int status, const char *reason)
{
    e->status = status;
    e->reason = reason;
    return -1;
}

/* "X-API-Key" -> "HTTP_X_API_KEY"; Content-Type and Content-Length are
 * the two headers CGI passes without the prefix. */
static const char *
rl2_cgi_header(void *ctx, const char *name)
{
    rl2_cgi_req_t *r = ctx;
    size_t         n = strlen(name), off = 5;

    if (strcasecmp(name, "Content-Type") == 0) {
        return r->param(r->param_ctx, "CONTENT_TYPE");
    }
    if (strcasecmp(name, "Content-Length") == 0) {
        return r->param(r->param_ctx, "CONTENT_LENGTH");
    }
    if (n == 0 || n + off >= sizeof(r->hname)) {
        return NULL;
    }
    memcpy(r->hname, "HTTP_", off);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];

        r->hname[off + i] = c == '-'                 ? '_'
                            : (c >= 'a' && c <= 'z') ? (char)(c - 32)
                                                     : (char)c;
    }
    r->hname[off + n] = '\0';
    return r->param(r->param_ctx, r->hname);
}

/* An absolute-form target ("http://api.example.com/h?x", which Apache
 * passes on as the request line wrote it in REQUEST_URI) is served as its
 * path on the host its authority names, whatever Host says: uri becomes
 * that path and query ("/" when it has none) and r->host that host.  An
 * origin-form target is left as it is.  -1 when the host is too long. */
static int
rl2_cgi_absolute_form(rl2_cgi_req_t *r, rl2_cgi_error_t *e)
{
    char       *uri = r->uri, *rest;
    const char *auth;
    size_t      n = 0;

    /* The scheme's characters (RFC 3986 3.1), by hand: strspn builds its
     * table of 66 characters on every call, some 800 instructions for a
     * target that starts with '/'. */
    while ((uri[n] >= 'a' && uri[n] <= 'z') || (uri[n] >= 'A' && uri[n] <= 'Z')
           || (uri[n] >= '0' && uri[n] <= '9') || uri[n] == '+' || uri[n] == '-'
           || uri[n] == '.') {
        n++;
    }
    if (n == 0 || strncmp(uri + n, "://", 3) != 0) {
        return 0;
    }
    auth = uri + n + 3;
    rest = uri + n + 3 + strcspn(auth, "/?");
    /* user:password@ is no part of the host. */
    for (const char *c = auth; c < rest; c++) {
        if (*c == '@') {
            auth = c + 1;
        }
    }
    n = (size_t)(rest - auth);
    if (n >= sizeof(r->host)) {
        return rl2_cgi_fail(e, 400, "the request line's host is too long");
    }
    memcpy(r->host, auth, n);
    r->host[n] = '\0';
    r->req.host = n > 0 ? r->host : NULL;
    n = strlen(rest);
    if (rest[0] == '/') {
        memmove(uri, rest, n + 1);
    }
    else {
        memmove(uri + 1, rest, n + 1);
        uri[0] = '/';
    }
    return 0;
}

/* REQUEST_URI when the server gives one (FastCGI servers do); otherwise
 * the CGI parts SCRIPT_NAME + PATH_INFO and QUERY_STRING. */
static int
rl2_cgi_uri(rl2_cgi_req_t *r, rl2_cgi_error_t *e)
{
    const char *uri = r->param(r->param_ctx, "REQUEST_URI");
    const char *sn, *pi, *qs;
    char       *q;
    size_t      a, b;

    if (uri != NULL && uri[0] != '\0') {
        if (rl2_cgi_copy(r->uri, sizeof(r->uri), uri) != 0) {
            return rl2_cgi_fail(e, 414, "REQUEST_URI too long");
        }
        /* A fragment is no part of the request: nginx ends the query
         * there (PHP never sees it), so it must not end a key. */
        q = strchr(r->uri, '#');
        if (q != NULL) {
            *q = '\0';
        }
        if (rl2_cgi_absolute_form(r, e) != 0) {
            return -1;
        }
        q = strchr(r->uri, '?');
        if (q != NULL) {
            *q = '\0';
            r->req.query = q + 1;
        }
    }
    else {
        sn = r->param(r->param_ctx, "SCRIPT_NAME");
        pi = r->param(r->param_ctx, "PATH_INFO");
        qs = r->param(r->param_ctx, "QUERY_STRING");
        a = sn ? strnlen(sn, sizeof(r->uri)) : 0;
        b = pi ? strnlen(pi, sizeof(r->uri)) : 0;
        if (a + b + 1 > RL2_CGI_PATH_MAX) {
            return rl2_cgi_fail(e, 414, "SCRIPT_NAME + PATH_INFO too long");
        }
        memcpy(r->uri, sn ? sn : "", a);
        memcpy(r->uri + a, pi ? pi : "", b);
        r->uri[a + b] = '\0';
        /* CGI's SCRIPT_NAME and PATH_INFO come decoded by the server. */
        r->req.path_decoded = 1;
        if (qs != NULL && qs[0] != '\0') {
            if (rl2_cgi_copy(r->uri + a + b + 1, sizeof(r->uri) - (a + b + 1),
                             qs)
                != 0) {
                return rl2_cgi_fail(e, 414, "QUERY_STRING too long");
            }
            r->req.query = r->uri + a + b + 1;
        }
    }
    if (r->uri[0] != '/') {
        return rl2_cgi_fail(e, 400, "the request path is not absolute");
    }
    if (strlen(r->uri) >= RL2_CGI_PATH_MAX) {
        return rl2_cgi_fail(e, 414, "request path too long");
    }
    r->req.path = r->uri;
    return 0;
}

/* An optional variable into a bounded buffer; absent gives NULL. */
static int
rl2_cgi_optional(rl2_cgi_req_t *r, const char *name, char *buf, size_t len,
                 const char **out)
{
    const char *v = r->param(r->param_ctx, name);

    *out = NULL;
    if (v == NULL || v[0] == '\0') {
        return 0;
    }
    if (rl2_cgi_copy(buf, len, v) != 0) {
        return -1;
    }
    *out = buf;
    return 0;
}

int
rl2_cgi_describe(const rl2_policy_t *policy, rl2_param_fn param,
                 void *param_ctx, rl2_cgi_req_t *r, rl2_cgi_error_t *e)
{
    const char *v;

    memset(&r->req, 0, sizeof(r->req));
    r->param = param;
    r->param_ctx = param_ctx;
    r->req.header = rl2_cgi_header;
    r->req.header_ctx = r;

    /* Without the client's address every client would share one key:
     * that is the web server's configuration at fault, hence a 500. */
    v = param(param_ctx, "REMOTE_ADDR");
    if (v == NULL || v[0] == '\0') {
        return rl2_cgi_fail(e, 500, "no REMOTE_ADDR from the web server");
    }
    if (rl2_cgi_copy(r->addr, sizeof(r->addr), v) != 0) {
        return rl2_cgi_fail(e, 500, "REMOTE_ADDR is not an address");
    }
    r->req.peer_ip = r->addr;

    v = param(param_ctx, "REQUEST_METHOD");
    if (v == NULL || v[0] == '\0') {
        return rl2_cgi_fail(e, 500, "no REQUEST_METHOD from the web server");
    }
    if (rl2_cgi_copy(r->method, sizeof(r->method), v) != 0) {
        return rl2_cgi_fail(e, 400, "REQUEST_METHOD too long");
    }
    r->req.method = r->method;

    if (rl2_cgi_uri(r, e) != 0) {
        return -1;
    }
    if (r->req.host == NULL
        && rl2_cgi_optional(r, "HTTP_HOST", r->host, sizeof(r->host),
                            &r->req.host)
               != 0) {
        return rl2_cgi_fail(e, 400, "Host header too long");
    }
    if (rl2_cgi_optional(r, "REMOTE_USER", r->user, sizeof(r->user),
                         &r->req.user)
        != 0) {
        return rl2_cgi_fail(e, 400, "REMOTE_USER too long");
    }
    /* A value longer than any tier name names no tier: ignored, as an
     * unknown tier name is. */
    if (policy->tier_variable != NULL) {
        (void)rl2_cgi_optional(r, policy->tier_variable, r->tier,
                               sizeof(r->tier), &r->req.tier_var);
    }
    /* factors.geo: the country the server's GeoIP module put in a
     * parameter (nginx fastcgi_param, lighttpd mod_maxminddb); a longer
     * value names no country, as a malformed one does. */
    if (policy->geo.variable != NULL) {
        (void)rl2_cgi_optional(r, policy->geo.variable, r->country,
                               sizeof(r->country), &r->req.country_var);
    }
    /* whitelist.internal: a variable only the server's configuration sets
     * (nginx fastcgi_param, lighttpd setenv.add-environment, Apache
     * SetEnvIf).  A client cannot write one of that name: nginx, lighttpd
     * and Apache (mod_authnz_fcgi, mod_cgi) pass every request header as
     * HTTP_<NAME>, Content-Type and Content-Length as CONTENT_TYPE and
     * CONTENT_LENGTH, and the loader refuses those names. */
    if (policy->wl_internal) {
        r->req.internal =
            rl2_internal_value(param(param_ctx, policy->wl_internal_var));
    }
    return 0;
}
