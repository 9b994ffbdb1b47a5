/*
 * vet.c -- a connection's next request looked at (MSG_PEEK, nothing
 * consumed) before libfcgi reads it.
 *
 * libfcgi trusts the lengths in FCGI_PARAMS: for each name-value pair it
 * allocates nameLen + valueLen + 2 bytes in an int, and aborts the whole
 * process (an assert in its Malloc) when that fails.  One record claiming
 * two 1 GiB lengths stops every worker; Debian's fix for CVE-2025-23016
 * does not cover the sum.  So every request is walked here first, record
 * by record up to the end of its params, exactly as libfcgi will walk
 * it: a BEGIN_REQUEST, then PARAMS records of that request, every pair
 * lying within the params actually sent, all of them within
 * RL2_PARAMS_MAX.  Anything else (another record type, a management
 * record, another version) is refused before libfcgi sees a byte of it.
 * Past the end of the params libfcgi reads nothing: this daemon never
 * reads FCGI_STDIN, and FCGX_Finish_r does not drain it.  fast.c, which
 * answers a request without libfcgi, takes it only when an empty STDIN
 * record follows the params and has been received whole
 * (v->request_len), and then reads exactly that far.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "fcgi.h"

#define FCGI_VERSION_1     1
#define FCGI_BEGIN_REQUEST 1
#define FCGI_END_REQUEST   3
#define FCGI_PARAMS        4
#define FCGI_STDIN         5
#define FCGI_STDOUT        6
#define FCGI_HEADER_LEN    8

enum { RL2_SCAN_DONE, RL2_SCAN_MORE, RL2_SCAN_BAD, RL2_SCAN_LARGE };

/* Every pair of the params stream within it; lengths in one byte, or
 * four with the top bit set (FastCGI spec 3.4). */
static int
rl2_pairs_ok(const unsigned char *p, size_t len)
{
    size_t at = 0, n[2];

    while (at < len) {
        for (int i = 0; i < 2; i++) {
            if (at < len && (p[at] & 0x80) == 0) {
                n[i] = p[at++];
            }
            else if (len - at >= 4) {
                n[i] = (size_t)(p[at] & 0x7f) << 24 | (size_t)p[at + 1] << 16
                       | (size_t)p[at + 2] << 8 | p[at + 3];
                at += 4;
            }
            else {
                return 0;
            }
        }
        if (n[0] > len - at || n[1] > len - at - n[0]) {
            return 0;
        }
        at += n[0] + n[1];
    }
    return 1;
}

/* The end of the request that follows the params at buf[at..n): when it
 * is an empty STDIN record of the request, already received whole, the
 * request ends there and v->request_len says so; otherwise (a body, or
 * its records not yet here) 0, and only libfcgi may read on. */
static void
rl2_stdin_end(rl2_vet_t *v, const unsigned char *buf, size_t at, size_t n)
{
    const unsigned char *h = buf + at;

    v->request_len = 0;
    if (n - at >= FCGI_HEADER_LEN && h[0] == FCGI_VERSION_1
        && h[1] == FCGI_STDIN && ((unsigned)h[2] << 8 | h[3]) == v->request_id
        && h[4] == 0 && h[5] == 0 && n - at - FCGI_HEADER_LEN >= h[6]) {
        v->request_len = at + FCGI_HEADER_LEN + h[6];
    }
}

/* Walk the records peeked so far (buf[0..n)), gathering the params
 * stream into v->params. */
static int
rl2_scan(rl2_vet_t *v, const unsigned char *buf, size_t n)
{
    size_t at = 0, plen = 0;
    int    began = 0;

    for (;;) {
        const unsigned char *h = buf + at;
        size_t               clen, rlen;
        unsigned             id;

        if (n - at < FCGI_HEADER_LEN) {
            return RL2_SCAN_MORE;
        }
        id = (unsigned)h[2] << 8 | h[3];
        clen = (size_t)h[4] << 8 | h[5];
        rlen = FCGI_HEADER_LEN + clen + h[6];
        if (h[0] != FCGI_VERSION_1) {
            v->why = "not FastCGI version 1";
            return RL2_SCAN_BAD;
        }
        /* Judged on the header alone, before its content arrives. */
        if (!began && (h[1] != FCGI_BEGIN_REQUEST || clen != 8 || id == 0)) {
            v->why = "the first record is not a BEGIN_REQUEST";
            return RL2_SCAN_BAD;
        }
        if (began && (h[1] != FCGI_PARAMS || id != v->request_id)) {
            v->why = "a record other than PARAMS before the end of the "
                     "params";
            return RL2_SCAN_BAD;
        }
        if (began && plen + clen > RL2_PARAMS_MAX) {
            return RL2_SCAN_LARGE;
        }
        if (n - at < rlen) {
            return RL2_SCAN_MORE;
        }
        if (!began) {
            v->request_id = id;
            v->role = (unsigned)h[8] << 8 | h[9];
            v->flags = h[10];
            began = 1;
        }
        else if (clen == 0) {
            v->why = "a parameter's length runs past the params";
            if (!rl2_pairs_ok(v->params, plen)) {
                return RL2_SCAN_BAD;
            }
            v->params_len = plen;
            rl2_stdin_end(v, buf, at + rlen, n);
            return RL2_SCAN_DONE;
        }
        else {
            memcpy(v->params + plen, h + FCGI_HEADER_LEN, clen);
            plen += clen;
        }
        at += rlen;
    }
}

/* A request too large to pass on gets a real answer, which the server
 * sends to the client, rather than a dropped connection. */
static void
rl2_vet_answer_large(int fd, unsigned id)
{
    static const char   text[] = "Status: 431 Request Header Fields Too "
                                 "Large\r\nContent-Type: text/plain\r\n\r\n"
                                 "ratelimit2-fcgi: request too large\n";
    unsigned char       out[256];
    size_t              len = sizeof(text) - 1, at;
    unsigned char       hi = (unsigned char)(id >> 8), lo = (unsigned char)id;
    const unsigned char hdrs[3][8] = {
        { 1, FCGI_STDOUT, hi, lo, 0, (unsigned char)len, 0, 0 },
        { 1, FCGI_STDOUT, hi, lo, 0, 0, 0, 0 },
        { 1, FCGI_END_REQUEST, hi, lo, 0, 8, 0, 0 }
    };
    static const unsigned char end_body[8] = { 0 };

    memcpy(out, hdrs[0], 8);
    memcpy(out + 8, text, len);
    at = 8 + len;
    memcpy(out + at, hdrs[1], 8);
    memcpy(out + at + 8, hdrs[2], 8);
    memcpy(out + at + 16, end_body, 8);
    /* Best effort: the connection is closed next either way. */
    (void)send(fd, out, at + 24, MSG_NOSIGNAL);
}

int
rl2_vet(rl2_vet_t *v, int fd, int timeout_ms)
{
    int64_t         deadline = (rl2_mono_us() / 1000) + timeout_ms;
    ssize_t         n, last = -1;
    struct pollfd   pfd = { fd, POLLIN | POLLRDHUP, 0 };
    struct timespec nap = { 0, 1000 * 1000 };
    int             rc;

    /* Read first, wait only when nothing is there: a web server writes
     * its whole request as it connects, so it is usually queued before
     * a worker takes the connection, and a poll() would be wasted. */
    for (;;) {
        int wait;

        n = recv(fd, v->peek, sizeof(v->peek), MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            v->why = "the connection closed before the request was "
                     "complete";
            return last <= 0 ? RL2_VET_CLOSED : RL2_VET_BAD;
        }
        if (n > 0 && n == last) {
            /* Nothing new yet; a peer that stopped sending is caught by
             * POLLRDHUP or the deadline. */
            if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) {
                v->why = "the connection closed before the request was "
                         "complete";
                return RL2_VET_BAD;
            }
            /* poll() cannot wait for "more than what is queued": nap,
             * longer each time, up to 32 ms. */
            nanosleep(&nap, NULL);
            if (nap.tv_nsec < 32 * 1000 * 1000) {
                nap.tv_nsec *= 2;
            }
        }
        if (n < 0 && timeout_ms == 0) {
            return RL2_VET_AGAIN;
        }
        if (n < 0 || n == last) {
            wait = (int)(deadline - (rl2_mono_us() / 1000));
            if (wait <= 0 || poll(&pfd, 1, wait) == 0) {
                v->why = "timed out before the request was complete";
                return RL2_VET_BAD;
            }
            continue;
        }
        last = n;
        rc = rl2_scan(v, v->peek, (size_t)n);
        if (rc == RL2_SCAN_MORE && (size_t)n == sizeof(v->peek)) {
            rc = RL2_SCAN_LARGE;
        }
        switch (rc) {
        case RL2_SCAN_DONE:
            return RL2_VET_OK;
        case RL2_SCAN_BAD:
            return RL2_VET_BAD;
        case RL2_SCAN_LARGE:
            v->why = "its params exceed the limit";
            rl2_vet_answer_large(fd, v->request_id);
            return RL2_VET_BAD;
        default:
            if (timeout_ms == 0) {
                return RL2_VET_AGAIN;
            }
            break;
        }
    }
}
