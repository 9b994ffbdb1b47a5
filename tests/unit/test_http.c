/*
 * test_http.c -- the HTTP/1.1 listener's reading (fcgi/http.c): a head
 * as nginx's proxy module sends it read into the params the FastCGI
 * path builds (identity fields first, HTTP_<NAME>, CONTENT_TYPE); a
 * head not all there yet; pipelined heads one at a time; the connection
 * kept or not (HTTP/1.0, Connection); every hostile head refused with
 * its status (bodies, bad request lines, bad names, NUL/CR/LF,
 * obs-fold, too many fields, too large); an identity field missing or
 * twice answered without a decision; and the CGI answer written back as
 * a bodiless HTTP response.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* The reader is ratelimit2-fcgi's, not the core's: compiled in here. */
#include "../../fcgi/http.c"

#define IDS \
    "X-RateLimit2-Method: POST\r\n" \
    "X-RateLimit2-URI: /api/x?a=1\r\n" \
    "X-RateLimit2-Addr: 192.0.2.7\r\n" \
    "X-RateLimit2-Request-Id: abc\r\n"

static rl2_http_req_t req;

static int
parse(const char *text)
{
    return rl2_http_parse(&req, text, strlen(text));
}

/* The value of param name in req.envp, or NULL; *count how many. */
static const char *
param(const char *name, int *count)
{
    size_t      n = strlen(name);
    const char *found = NULL;

    *count = 0;
    for (char **e = req.envp; *e != NULL; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') {
            found = found != NULL ? found : *e + n + 1;
            (*count)++;
        }
    }
    return found;
}

static void
assert_param(const char *name, const char *want)
{
    int count;

    assert_string_equal(param(name, &count), want);
    assert_int_equal(count, 1);
}

static void
test_nginx_head(void **state)
{
    static const char head[] =
        "GET /.ratelimit2 HTTP/1.1\r\n"
        "Host: api.example.com\r\n" IDS "X-RateLimit2-User: alice\r\n"
        "User-Agent: curl/8\r\n"
        "x-api-key:   k1  \r\n"
        "Content-Type: application/json\r\n"
        "Accept:\r\n"
        "\r\n";
    int count;

    (void)state;
    assert_int_equal(parse(head), RL2_HTTP_OK);
    assert_int_equal(req.status, 0);
    assert_int_equal(req.head_len, sizeof(head) - 1);
    assert_true(req.keep);
    assert_false(req.http10);
    /* The role first, then the identities, in the table's order. */
    assert_string_equal(req.envp[0], "FCGI_ROLE=RESPONDER");
    assert_string_equal(req.envp[1], "REQUEST_METHOD=POST");
    assert_string_equal(req.envp[2], "REQUEST_URI=/api/x?a=1");
    assert_string_equal(req.envp[3], "REMOTE_ADDR=192.0.2.7");
    assert_string_equal(req.envp[4], "RATELIMIT2_REQUEST_ID=abc");
    assert_string_equal(req.envp[5], "REMOTE_USER=alice");
    assert_param("HTTP_HOST", "api.example.com");
    assert_param("HTTP_USER_AGENT", "curl/8");
    assert_param("HTTP_X_API_KEY", "k1");
    assert_param("CONTENT_TYPE", "application/json");
    assert_param("HTTP_ACCEPT", "");
    assert_null(param("HTTP_CONTENT_TYPE", &count));
    assert_null(param("HTTP_X_RATELIMIT2_ADDR", &count));
    assert_memory_equal(req.target, "/.ratelimit2", req.target_len);
}

/* A repeated header is two params of one name, as nginx passes it to
 * FastCGI: authorizer.c joins them the same way for both. */
static void
test_repeated_header(void **state)
{
    int count;

    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\n" IDS "X-Api-Key: a\r\n"
                           "X-Api-Key: b\r\n\r\n"),
                     RL2_HTTP_OK);
    assert_string_equal(param("HTTP_X_API_KEY", &count), "a");
    assert_int_equal(count, 2);
}

/* nginx's $content_type, the CONTENT_TYPE fastcgi_params gives, is the
 * first Content-Type line: a second must not make the limiter's key
 * differ from the FastCGI path's. */
static void
test_content_type_twice(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\n" IDS
                           "Content-Type: application/json\r\n"
                           "Content-Type: text/plain\r\n\r\n"),
                     RL2_HTTP_OK);
    assert_int_equal(req.status, 0);
    assert_param("CONTENT_TYPE", "application/json");
}

static void
test_partial(void **state)
{
    static const char head[] = "GET / HTTP/1.1\r\n" IDS "\r\n";

    (void)state;
    for (size_t n = 0; n < sizeof(head) - 1; n++) {
        assert_int_equal(rl2_http_parse(&req, head, n), RL2_HTTP_MORE);
    }
    assert_int_equal(rl2_http_parse(&req, head, sizeof(head) - 1), RL2_HTTP_OK);
}

/* A head is found at its last byte however it is split, and each look
 * at a head that is not all there covers only what came since the last
 * (all of it then looked at: linear time for a head sent a byte at a
 * time, even one of bare LFs). */
static void
test_head_in_looks_once(void **state)
{
    static const char head[] = "GET / HTTP/1.1\r\n" IDS "\r\n";
    size_t            n = sizeof(head) - 1, scanned;
    char             *lfs = malloc(RL2_HTTP_HEAD_MAX);

    (void)state;
    for (size_t cut = 0; cut < n; cut++) { /* two reads, split at cut */
        scanned = 0;
        assert_int_equal(rl2_http_head_in(head, cut, &scanned), 0);
        assert_int_equal(scanned, cut);
        assert_int_equal(rl2_http_head_in(head, n, &scanned), 1);
    }
    scanned = 0;
    for (size_t len = 1; len < n; len++) { /* a byte at a time */
        assert_int_equal(rl2_http_head_in(head, len, &scanned), 0);
        assert_int_equal(scanned, len);
    }
    assert_int_equal(rl2_http_head_in(head, n, &scanned), 1);
    /* what was looked at is not looked at again: a blank line ending
     * three bytes or more before *scanned is taken as not there */
    assert_non_null(lfs);
    memcpy(lfs, head, n);
    memcpy(lfs + n, "xy", 2);
    scanned = n + 2;
    assert_int_equal(rl2_http_head_in(lfs, n + 2, &scanned), 0);
    memset(lfs, '\n', RL2_HTTP_HEAD_MAX);
    scanned = 0;
    for (size_t len = 1; len < RL2_HTTP_HEAD_MAX; len++) {
        assert_int_equal(rl2_http_head_in(lfs, len, &scanned), 0);
        assert_int_equal(scanned, len);
    }
    /* the bound: rl2_http_parse refuses it */
    assert_int_equal(rl2_http_head_in(lfs, RL2_HTTP_HEAD_MAX, &scanned), 1);
    assert_int_equal(rl2_http_parse(&req, lfs, RL2_HTTP_HEAD_MAX),
                     RL2_HTTP_BAD);
    assert_int_equal(req.status, 431);
    free(lfs);
}

static void
test_pipelined(void **state)
{
    static const char two[] = "GET / HTTP/1.1\r\n" IDS "\r\n"
                              "GET / HTTP/1.1\r\n" IDS "Connection: close\r\n"
                              "\r\nGET";
    size_t            first;

    (void)state;
    assert_int_equal(parse(two), RL2_HTTP_OK);
    assert_true(req.keep);
    first = req.head_len;
    assert_int_equal(rl2_http_parse(&req, two + first, sizeof(two) - 1 - first),
                     RL2_HTTP_OK);
    assert_false(req.keep);
    first += req.head_len;
    assert_int_equal(rl2_http_parse(&req, two + first, sizeof(two) - 1 - first),
                     RL2_HTTP_MORE);
}

static void
test_keep(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.0\r\n" IDS "\r\n"), RL2_HTTP_OK);
    assert_true(req.http10);
    assert_false(req.keep);
    assert_int_equal(
        parse("GET / HTTP/1.0\r\n" IDS "Connection: Keep-Alive\r\n\r\n"),
        RL2_HTTP_OK);
    assert_true(req.keep);
    assert_int_equal(
        parse("GET / HTTP/1.1\r\n" IDS "Connection: TE, close\r\n\r\n"),
        RL2_HTTP_OK);
    assert_false(req.keep);
    assert_int_equal(parse("GET / HTTP/1.1\r\n" IDS "Content-Length: 0\r\n"
                           "Connection: upgrade\r\n\r\n"),
                     RL2_HTTP_OK);
    assert_true(req.keep);
}

static void
assert_bad(const char *head, int status)
{
    assert_int_equal(parse(head), RL2_HTTP_BAD);
    assert_int_equal(req.status, status);
    assert_non_null(req.why);
    assert_false(req.keep);
}

static void
test_body_refused(void **state)
{
    (void)state;
    assert_bad("GET / HTTP/1.1\r\n" IDS "Content-Length: 5\r\n\r\nhello", 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "Content-Length: 00001\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "Content-Length: -0\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "Content-Length:\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "Content-Length: 0\r\n"
               "Content-Length: 0\r\n\r\n",
               400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "Transfer-Encoding: chunked\r\n\r\n",
               400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "transfer-encoding: identity\r\n\r\n",
               400);
}

static void
test_bad_request_line(void **state)
{
    (void)state;
    assert_bad("GET /\r\n\r\n", 400);
    assert_bad("GET  / HTTP/1.1\r\n\r\n", 400);
    assert_bad(" GET / HTTP/1.1\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1 \r\n\r\n", 400);
    assert_bad("GET / HTTP/2.0\r\n\r\n", 400);
    assert_bad("GET / http/1.1\r\n\r\n", 400);
    assert_bad("G(T / HTTP/1.1\r\n\r\n", 400);
    assert_bad("GET /a\x7f HTTP/1.1\r\n\r\n", 400);
    assert_bad("\r\nGET / HTTP/1.1\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1\n\r\n\r\n", 400);
    assert_bad("GET /\r HTTP/1.1\r\n\r\n", 400);
}

static void
test_bad_fields(void **state)
{
    static const char nul[] = "GET / HTTP/1.1\r\n" IDS "X-A: a\0b\r\n\r\n";

    (void)state;
    /* obs-fold */
    assert_bad("GET / HTTP/1.1\r\n" IDS "X-A: a\r\n b\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "X-A: a\r\n\tb\r\n\r\n", 400);
    /* names */
    assert_bad("GET / HTTP/1.1\r\n" IDS "X-A : a\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS ": a\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "X(A): a\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "no colon\r\n\r\n", 400);
    /* NUL, a lone CR, a lone LF */
    assert_int_equal(rl2_http_parse(&req, nul, sizeof(nul) - 1), RL2_HTTP_BAD);
    assert_int_equal(req.status, 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "X-A: a\rb\r\n\r\n", 400);
    assert_bad("GET / HTTP/1.1\r\n" IDS "X-A: a\nX-B: b\r\n\r\n", 400);
}

static void
test_limits(void **state)
{
    char  *big = malloc(RL2_HTTP_HEAD_MAX + 64);
    size_t n = 0;

    (void)state;
    assert_non_null(big);
    n += (size_t)sprintf(big, "GET / HTTP/1.1\r\n" IDS);
    for (int i = 0; i <= RL2_HTTP_FIELDS_MAX; i++) {
        n += (size_t)sprintf(big + n, "X-F%d: v\r\n", i);
    }
    strcpy(big + n, "\r\n");
    assert_bad(big, 431);
    /* Exactly the most fields: taken (four identities among them). */
    n = (size_t)sprintf(big, "GET / HTTP/1.1\r\n" IDS);
    for (int i = 4; i < RL2_HTTP_FIELDS_MAX; i++) {
        n += (size_t)sprintf(big + n, "X-F%d: v\r\n", i);
    }
    strcpy(big + n, "\r\n");
    assert_int_equal(parse(big), RL2_HTTP_OK);
    /* A head past the bound, whole or not yet ended: 431. */
    n = (size_t)sprintf(big, "GET / HTTP/1.1\r\n" IDS "X-Big: ");
    memset(big + n, 'a', RL2_HTTP_HEAD_MAX + 8 - n);
    assert_int_equal(rl2_http_parse(&req, big, RL2_HTTP_HEAD_MAX + 8),
                     RL2_HTTP_BAD);
    assert_int_equal(req.status, 431);
    assert_int_equal(rl2_http_parse(&req, big, RL2_HTTP_HEAD_MAX - 1),
                     RL2_HTTP_MORE);
    /* A head of exactly the bound is taken. */
    memcpy(big + RL2_HTTP_HEAD_MAX - 4, "\r\n\r\n", 4);
    assert_int_equal(rl2_http_parse(&req, big, RL2_HTTP_HEAD_MAX), RL2_HTTP_OK);
    assert_int_equal(req.head_len, RL2_HTTP_HEAD_MAX);
    free(big);
}

/* Missing or twice: a status to answer, no params, the connection
 * kept (the head itself was fine). */
static void
test_identity(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\n"
                           "X-RateLimit2-Method: GET\r\n"
                           "X-RateLimit2-URI: /\r\n"
                           "X-RateLimit2-Request-Id: a\r\n\r\n"),
                     RL2_HTTP_OK);
    assert_int_equal(req.status, 500);
    assert_string_equal(req.why,
                        "no X-RateLimit2-Addr header from the web server");
    assert_null(req.envp[0]);
    assert_true(req.keep);
    assert_int_equal(
        parse("GET / HTTP/1.1\r\n" IDS "x-ratelimit2-addr: 10.0.0.1\r\n\r\n"),
        RL2_HTTP_OK);
    assert_int_equal(req.status, 400);
    assert_string_equal(req.why, "X-RateLimit2-Addr given twice");
    assert_null(req.envp[0]);
    assert_int_equal(parse("GET / HTTP/1.1\r\n" IDS "X-RateLimit2-User: a\r\n"
                           "X-RateLimit2-User: b\r\n\r\n"),
                     RL2_HTTP_OK);
    assert_int_equal(req.status, 400);
    assert_string_equal(req.why, "X-RateLimit2-User given twice");
    /* The user is optional. */
    assert_int_equal(parse("GET / HTTP/1.1\r\n" IDS "\r\n"), RL2_HTTP_OK);
    assert_int_equal(req.status, 0);
}

static size_t
answer(const char *cgi, int keep, int http10, char *out, size_t cap)
{
    return rl2_http_answer(cgi, strlen(cgi), keep, http10, out, cap);
}

static void
test_answer(void **state)
{
    char   out[1024];
    size_t n;

    (void)state;
    n = answer("Status: 200 OK\r\nRateLimit: \"s\";r=1;t=9\r\n\r\n", 1, 0, out,
               sizeof(out));
    assert_int_equal(n, strlen("HTTP/1.1 204 No Content\r\n"
                               "RateLimit: \"s\";r=1;t=9\r\n\r\n"));
    assert_memory_equal(out,
                        "HTTP/1.1 204 No Content\r\n"
                        "RateLimit: \"s\";r=1;t=9\r\n\r\n",
                        n);
    n = answer("Status: 403 Forbidden\r\nRetry-After: 5\r\n"
               "X-RateLimit2-Status: 429 Too Many Requests\r\n"
               "Content-Type: application/json\r\n\r\n{\"a\":1}\n",
               1, 0, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "HTTP/1.1 403 Forbidden\r\n"
                             "Content-Length: 0\r\n"
                             "Retry-After: 5\r\n"
                             "X-RateLimit2-Status: 429 Too Many Requests\r\n"
                             "\r\n");
    n = answer("Status: 500 Internal Server Error\r\n"
               "Content-Type: text/plain\r\n\r\nno\n",
               0, 0, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "HTTP/1.1 500 Internal Server Error\r\n"
                             "Content-Length: 0\r\n"
                             "Connection: close\r\n\r\n");
    n = answer("Status: 200 OK\r\n\r\n", 1, 1, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "HTTP/1.1 204 No Content\r\n"
                             "Connection: keep-alive\r\n\r\n");
    /* Not an answer, or no room: 0. */
    assert_int_equal(answer("HTTP/1.1 200 OK\r\n\r\n", 1, 0, out, sizeof(out)),
                     0);
    assert_int_equal(answer("Status: 200 OK\nX: y\n\n", 1, 0, out, sizeof(out)),
                     0);
    assert_int_equal(answer("Status: 200 OK\r\nX: y", 1, 0, out, sizeof(out)),
                     0);
    assert_int_equal(answer("Status: 200 OK\r\n\r\n", 1, 0, out, 10), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nginx_head),
        cmocka_unit_test(test_repeated_header),
        cmocka_unit_test(test_content_type_twice),
        cmocka_unit_test(test_partial),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_keep),
        cmocka_unit_test(test_body_refused),
        cmocka_unit_test(test_bad_request_line),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_head_in_looks_once),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_answer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
