/*
 * fuzz_http.c -- libFuzzer target: ratelimit2-fcgi's HTTP listener
 * (fcgi/http.c).  Any bytes are read as what a connection received, as
 * http_conn.c reads it: heads one after another while they are whole.
 * The reader must never crash or read past the bytes, and:
 *   - RL2_HTTP_MORE only while no blank line ends a head and fewer than
 *     RL2_HTTP_HEAD_MAX bytes are there;
 *   - RL2_HTTP_OK takes 1 to RL2_HTTP_HEAD_MAX bytes ending in a blank
 *     line; with status 0 the params start with FCGI_ROLE=RESPONDER,
 *     each is NAME=VALUE with no NUL, CR or LF in it, at most
 *     RL2_HTTP_ENV_MAX of them, inside env; with a status (400, 500)
 *     there are none;
 *     No header becomes a param the web server alone gives: after
 *     FCGI_ROLE come the identity params, each at most once, then only
 *     HTTP_* and CONTENT_TYPE;
 *   - RL2_HTTP_BAD says 400 or 431 and why, and never keeps the
 *     connection.
 * The same bytes, received in reads of 1 to 8 bytes (their sizes taken
 * from the bytes), are looked at as http_conn.c does (rl2_http_head_in):
 * after each read it says a head is in exactly when a reading of all
 * that came from the start would.
 * The same bytes are also written back as an answer (rl2_http_answer):
 * no crash, a length within the buffer, and an answer whose head ends
 * in one blank line and has no body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../fcgi/http.c"

static rl2_http_req_t req;

/* The params the identity fields give, in their order, and where the
 * header fields' begin: 0 when e is neither. */
static int
is_identity(const char *e, int *next)
{
    for (int i = *next; i < RL2_HTTP_IDS; i++) {
        size_t n = strlen(rl2_http_ids[i].param);

        if (strncmp(e, rl2_http_ids[i].param, n) == 0 && e[n] == '=') {
            *next = i + 1;
            return 1;
        }
    }
    return 0;
}

static void
check_params(const rl2_http_req_t *r)
{
    size_t n = 0;
    int    next_id = 0, in_fields = 0;

    if (r->status != 0) {
        if ((r->status != 400 && r->status != 500) || r->why == NULL
            || r->envp[0] != NULL) {
            abort();
        }
        return;
    }
    if (r->envp[0] == NULL || strcmp(r->envp[0], "FCGI_ROLE=RESPONDER") != 0) {
        abort();
    }
    for (char *const *e = r->envp; *e != NULL; e++, n++) {
        if (*e < r->env || *e >= r->env + sizeof(r->env)
            || strchr(*e, '=') == NULL || strpbrk(*e, "\r\n") != NULL) {
            abort();
        }
        if (n == 0) {
            continue;
        }
        if (!in_fields && is_identity(*e, &next_id)) {
            continue;
        }
        in_fields = 1;
        if (strncmp(*e, "HTTP_", 5) != 0
            && strncmp(*e, "CONTENT_TYPE=", 13) != 0) {
            abort();
        }
    }
    if (n > RL2_HTTP_ENV_MAX) {
        abort();
    }
}

static void
check_answer(const uint8_t *data, size_t size)
{
    char   out[2048];
    size_t n = rl2_http_answer((const char *)data, size, size & 1, size & 2,
                               out, sizeof(out));

    if (n > sizeof(out)) {
        abort();
    }
    if (n > 0
        && (n < 4 || memcmp(out, "HTTP/1.1 ", 9) != 0
            || memcmp(out + n - 4, "\r\n\r\n", 4) != 0
            || rl2_http_head_end(out, n) != n)) {
        abort();
    }
}

static void
check_head_in(const char *buf, size_t size)
{
    size_t len = 0, scanned = 0;

    while (len < size) {
        size_t upto, whole;

        len += (size_t)(buf[len] & 7) + 1;
        len = len < size ? len : size;
        upto = len < RL2_HTTP_HEAD_MAX ? len : RL2_HTTP_HEAD_MAX;
        whole = len >= RL2_HTTP_HEAD_MAX || rl2_http_head_end(buf, upto) != 0;
        if (rl2_http_head_in(buf, len, &scanned) != (int)whole) {
            abort();
        }
        if (whole) {
            return;
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes: ASan catches a read past them. */
    char  *buf = malloc(size > 0 ? size : 1);
    size_t at = 0;
    int    rc;

    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);
    check_head_in(buf, size);
    while (at < size) {
        rc = rl2_http_parse(&req, buf + at, size - at);
        if (rc == RL2_HTTP_MORE) {
            if (size - at >= RL2_HTTP_HEAD_MAX
                || rl2_http_head_end(buf + at, size - at) != 0) {
                abort();
            }
            break;
        }
        if (rc == RL2_HTTP_BAD) {
            if ((req.status != 400 && req.status != 431) || req.why == NULL
                || req.keep) {
                abort();
            }
            break;
        }
        if (req.head_len == 0 || req.head_len > size - at
            || req.head_len > RL2_HTTP_HEAD_MAX
            || memcmp(buf + at + req.head_len - 4, "\r\n\r\n", 4) != 0) {
            abort();
        }
        check_params(&req);
        at += req.head_len;
    }
    free(buf);
    check_answer(data, size);
    return 0;
}
