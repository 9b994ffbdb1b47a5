/*
 * fast.c -- the common request answered without libfcgi.
 *
 * lighttpd opens a connection for every request it asks an authorizer
 * about and writes the whole request at once: BEGIN_REQUEST, the params,
 * an empty STDIN.  Through libfcgi that costs a dozen system calls
 * (its reads, a write per stream, a shutdown and a wait for the server
 * to close first) and an allocation per param.  vet.c has already
 * walked every record and pair of such a request (rl2_vet only peeks),
 * so the params are taken from there: one read consumes the request,
 * one write carries the whole answer, and the connection is closed or,
 * under FCGI_KEEP_CONN, kept for the next request.
 *
 * Anything else (a body, a request not all received yet, another role,
 * more params than RL2_FAST_PARAMS_MAX, the admin, health and metrics
 * paths, which read and write libfcgi's streams) is left where it is
 * for libfcgi to read, exactly as before.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "fcgi.h"

#define FCGI_VERSION_1        1
#define FCGI_END_REQUEST      3
#define FCGI_STDOUT           6
#define FCGI_HEADER_LEN       8
#define FCGI_RESPONDER        1
#define FCGI_AUTHORIZER       2
#define FCGI_REQUEST_COMPLETE 0

/* A pair's length at p[*at], one byte or four with the top bit set; the
 * pairs were checked by rl2_vet, so it lies within the params. */
static size_t
rl2_fast_len(const unsigned char *p, size_t *at)
{
    size_t n;

    if ((p[*at] & 0x80) == 0) {
        return p[(*at)++];
    }
    n = (size_t)(p[*at] & 0x7f) << 24 | (size_t)p[*at + 1] << 16
        | (size_t)p[*at + 2] << 8 | p[*at + 3];
    *at += 4;
    return n;
}

int
rl2_fast_env(rl2_vet_t *v)
{
    const char *role;
    size_t      at = 0, out, n_env = 0, nlen, vlen;

    if (v->request_len == 0
        || (v->role != FCGI_RESPONDER && v->role != FCGI_AUTHORIZER)) {
        return -1;
    }
    /* libfcgi puts the role first, before the server's params. */
    role = v->role == FCGI_RESPONDER ? "FCGI_ROLE=RESPONDER"
                                     : "FCGI_ROLE=AUTHORIZER";
    out = strlen(role) + 1;
    memcpy(v->env, role, out);
    v->envp[n_env++] = v->env;
    /* Each pair gives up at least two bytes of lengths for its '=' and
     * NUL: the strings never take more room than the params did. */
    while (at < v->params_len) {
        if (n_env > RL2_FAST_PARAMS_MAX) {
            return -1;
        }
        nlen = rl2_fast_len(v->params, &at);
        vlen = rl2_fast_len(v->params, &at);
        v->envp[n_env++] = v->env + out;
        memcpy(v->env + out, v->params + at, nlen);
        v->env[out + nlen] = '=';
        memcpy(v->env + out + nlen + 1, v->params + at + nlen, vlen);
        v->env[out + nlen + 1 + vlen] = '\0';
        out += nlen + vlen + 2;
        at += nlen + vlen;
    }
    v->envp[n_env] = NULL;
    return 0;
}

static void
rl2_fast_header(unsigned char *h, int type, unsigned id, size_t len)
{
    h[0] = FCGI_VERSION_1;
    h[1] = (unsigned char)type;
    h[2] = (unsigned char)(id >> 8);
    h[3] = (unsigned char)id;
    h[4] = (unsigned char)(len >> 8);
    h[5] = (unsigned char)len;
    h[6] = 0; /* no padding */
    h[7] = 0;
}

int
rl2_fast_send(int fd, const void *data, size_t len, int timeout_ms)
{
    const unsigned char *buf = data;
    int64_t              deadline = rl2_mono_us() / 1000 + timeout_ms;
    struct pollfd        pfd = { fd, POLLOUT, 0 };
    ssize_t              n;
    int                  wait;

    while (len > 0) {
        n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            return -1;
        }
        wait = (int)(deadline - rl2_mono_us() / 1000);
        if (wait <= 0 || poll(&pfd, 1, wait) <= 0) {
            return -1;
        }
    }
    return 0;
}

int
rl2_fast_reply(const rl2_fcgi_io_t *io, const char *buf, size_t len)
{
    /* RL2_CGI_RESPONSE_MAX fits one STDOUT record (65535 bytes). */
    unsigned char
           out[FCGI_HEADER_LEN + RL2_CGI_RESPONSE_MAX + 3 * FCGI_HEADER_LEN];
    size_t at = FCGI_HEADER_LEN;

    if (len > RL2_CGI_RESPONSE_MAX) {
        return -1;
    }
    rl2_fast_header(out, FCGI_STDOUT, io->request_id, len);
    memcpy(out + at, buf, len);
    at += len;
    /* The end of STDOUT, then END_REQUEST: appStatus 0, complete. */
    rl2_fast_header(out + at, FCGI_STDOUT, io->request_id, 0);
    at += FCGI_HEADER_LEN;
    rl2_fast_header(out + at, FCGI_END_REQUEST, io->request_id,
                    FCGI_HEADER_LEN);
    at += FCGI_HEADER_LEN;
    memset(out + at, 0, FCGI_HEADER_LEN);
    out[at + 4] = FCGI_REQUEST_COMPLETE;
    at += FCGI_HEADER_LEN;
    return rl2_fast_send(io->fd, out, at, io->timeout_ms);
}

int
rl2_fast_consume(rl2_vet_t *v, int fd)
{
    ssize_t n;

    /* Queued whole when peeked, and nobody else reads fd. */
    do {
        n = recv(fd, v->peek, v->request_len, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)v->request_len ? 0 : -1;
}
