/*
 * http_conn.c -- the connections of the HTTP/1.1 listener (-H): what
 * each has received, its requests answered one at a time, and its
 * parking in the listener's epoll set between requests.
 *
 * nginx keeps an upstream connection open across auth_request
 * subrequests (upstream keepalive, HTTP/1.1, an answer without a body),
 * so one connection carries request after request; each costs one read
 * and one write here, as fast.c's FastCGI requests do.  A request may
 * arrive in pieces; never several at once, since nginx does not
 * pipeline (bytes behind a head close the connection after its answer).
 * Each connection keeps the bytes it has received (at most one head,
 * RL2_HTTP_HEAD_MAX) in its own buffer, so that between two pieces it
 * waits in the listener's set and holds no worker: a client that sends
 * slowly (slowloris) pins nothing but its descriptor, and one that does
 * not read its answers is closed, not waited for.  It has idle_us from
 * its accept or its last answer to complete a request; the listener
 * closes it past that (rl2_http_sweep), which bounds a slow head and an
 * idle connection alike.
 *
 * Ownership: a connection is held by the one worker answering it (taken
 * from the set by epoll's EPOLLONESHOT, or just accepted, by the
 * listener, before it passes the listening on), or parked in the set.
 * h->lock orders parking and taking against the sweep, which the
 * listener runs and which closes parked connections only; the worker
 * holding a connection closes it itself.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "fcgi.h"

/* An answer is sent without waiting for room: nginx reads each answer
 * before it sends the next request, so its socket is empty when the
 * daemon answers, and a peer whose socket is full is not reading its
 * answers.  Waiting for it would hold a worker; it is closed instead. */
#define RL2_HTTP_SEND_TIMEOUT_MS 0
/* How often the listener looks for connections past the idle limit. */
#define RL2_HTTP_SWEEP_US (250 * 1000)
/* The table's bound, whatever RLIMIT_NOFILE says. */
#define RL2_HTTP_CONNS_MAX (1u << 20)

struct rl2_http_conn {
    int     fd;
    int     parked;   /* in the listener's set; under rl2_http_t.lock */
    int64_t since_us; /* monotonic: accepted, or its last answer sent */
    size_t  len;      /* bytes received in buf, not yet answered */
    size_t  scanned;  /* of them, looked at for a head's end: none */
    char    buf[RL2_HTTP_HEAD_MAX];
};

int
rl2_http_init(rl2_http_t *h, int64_t idle_s, rl2_err_t *err)
{
    struct rlimit lim;
    size_t        n = 1024;

    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
        n = lim.rlim_cur < RL2_HTTP_CONNS_MAX ? (size_t)lim.rlim_cur
                                              : RL2_HTTP_CONNS_MAX;
    }
    else {
        n = RL2_HTTP_CONNS_MAX;
    }
    memset(h, 0, sizeof(*h));
    h->conns = calloc(n, sizeof(h->conns[0]));
    if (h->conns == NULL || pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h->conns);
        h->conns = NULL;
        rl2_err_set(err, RL2_ERR_SYS, "-H: no memory for %zu connections", n);
        return -1;
    }
    h->n_conns = n;
    h->idle_us = idle_s * RL2_US_PER_S;
    return 0;
}

void
rl2_http_destroy(rl2_http_t *h)
{
    if (h->conns == NULL) {
        return;
    }
    for (size_t fd = 0; fd < h->n_conns; fd++) {
        if (h->conns[fd] != NULL) {
            close((int)fd);
            free(h->conns[fd]);
        }
    }
    free(h->conns);
    h->conns = NULL;
    pthread_mutex_destroy(&h->lock);
}

int
rl2_http_open(rl2_http_t *h, int fd)
{
    rl2_http_conn_t *c;

    if ((size_t)fd >= h->n_conns || (c = malloc(sizeof(*c))) == NULL) {
        rl2_log_request(RL2_LOG_ERROR, LOG_ERR,
                        "HTTP: no room for connection %d: closed", fd);
        close(fd);
        return -1;
    }
    c->fd = fd;
    c->parked = 0;
    c->since_us = rl2_mono_us();
    c->len = 0;
    c->scanned = 0;
    pthread_mutex_lock(&h->lock);
    h->conns[fd] = c;
    h->accepted++;
    if ((size_t)fd >= h->high) {
        h->high = (size_t)fd + 1;
    }
    pthread_mutex_unlock(&h->lock);
    return 0;
}

/* Out of the table first, then closed: once closed, the descriptor may
 * be accepted again and given a new connection in the same slot. */
static void
rl2_http_close(rl2_http_t *h, rl2_http_conn_t *c)
{
    pthread_mutex_lock(&h->lock);
    h->conns[c->fd] = NULL;
    pthread_mutex_unlock(&h->lock);
    close(c->fd);
    free(c);
}

/* Back in the listener's set until more arrives; closed when it cannot
 * be.  Parked under the lock, so that the listener, which may take it
 * the moment it is in the set, sees it parked only after this. */
static void
rl2_http_park(rl2_worker_t *w, rl2_http_conn_t *c)
{
    rl2_http_t *h = w->http;
    int         rc;

    pthread_mutex_lock(&h->lock);
    rc = rl2_worker_keep(w, c->fd);
    c->parked = rc == 0;
    pthread_mutex_unlock(&h->lock);
    if (rc != 0) {
        rl2_http_close(h, c);
    }
}

int
rl2_http_reply(const rl2_fcgi_io_t *io, const char *buf, size_t len)
{
    static const char failed[] = "HTTP/1.1 500 Internal Server Error\r\n"
                                 "Content-Length: 0\r\n"
                                 "Connection: close\r\n\r\n";
    char              out[RL2_CGI_RESPONSE_MAX];
    size_t            n;

    n = rl2_http_answer(buf, len, io->keep, io->http10, out, sizeof(out));
    if (n == 0) {
        /* Not an answer authorizer.c writes: closed after a 500. */
        (void)rl2_fast_send(io->fd, failed, sizeof(failed) - 1, io->timeout_ms);
        return -1;
    }
    return rl2_fast_send(io->fd, out, n, io->timeout_ms);
}

/* A request answered without a decision: a status and a line of text,
 * the way authorizer.c answers a request it cannot describe. */
static int
rl2_http_refuse(const rl2_fcgi_io_t *io, int status, const char *why)
{
    char out[1024];

    rl2_log_request(RL2_LOG_INPUT, LOG_WARNING, "HTTP: answered %d: %s", status,
                    why);
    return rl2_http_reply(io, out,
                          rl2_cgi_error(out, sizeof(out), status, why));
}

/* Answer the request whose head r has read; behind tells whether more
 * bytes came after it.  0 when the connection may serve another, -1
 * when it must be closed. */
static int
rl2_http_answer_one(rl2_worker_t *w, rl2_http_conn_t *c, rl2_http_req_t *r,
                    int parsed, int behind)
{
    rl2_fcgi_io_t io = { .envp = r->envp,
                         .fd = c->fd,
                         .timeout_ms = RL2_HTTP_SEND_TIMEOUT_MS,
                         .http = 1,
                         .http10 = r->http10 };

    /* nginx never pipelines: it sends a request once it has read the
     * answer to the last.  Bytes already behind a head are someone
     * else's (a value nginx wrote raw that held CR LF, or a client on a
     * socket it should not reach); answered, they would be read as the
     * answers to nginx's next requests.  The head is answered, the rest
     * dropped with the connection. */
    io.keep = parsed == RL2_HTTP_OK && r->keep && !behind;
    if (parsed == RL2_HTTP_OK && r->keep && behind) {
        rl2_log_request(RL2_LOG_INPUT, LOG_WARNING,
                        "HTTP: bytes after a request head (pipelined): "
                        "answered it, then closed");
    }
    if (parsed != RL2_HTTP_OK || r->status != 0) {
        io.failed = rl2_http_refuse(&io, r->status, r->why) != 0;
    }
    else if (rl2_fcgi_handle(w->srv, &io) == RL2_FCGI_SLOW) {
        /* A path only libfcgi's streams serve: main.c turns them off
         * under -H, so this is a bug, not a client's doing. */
        io.failed = rl2_http_refuse(&io, 500, "path not served over HTTP") != 0;
    }
    return io.failed || !io.keep ? -1 : 0;
}

rl2_http_conn_t *
rl2_http_take(rl2_http_t *h, int fd)
{
    rl2_http_conn_t *c;

    pthread_mutex_lock(&h->lock);
    c = (size_t)fd < h->n_conns ? h->conns[fd] : NULL;
    if (c != NULL) {
        c->parked = 0;
    }
    pthread_mutex_unlock(&h->lock);
    if (c == NULL) {
        close(fd); /* not one of ours: cannot happen */
    }
    return c;
}

unsigned long
rl2_http_serve(rl2_worker_t *w, rl2_http_conn_t *c)
{
    rl2_http_t     *h = w->http;
    rl2_http_req_t *r = w->http_req;
    int             fd = c->fd;
    ssize_t         n;
    int             parsed;

    do {
        n = recv(fd, c->buf + c->len, sizeof(c->buf) - c->len, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        rl2_http_close(h, c);
        return 0;
    }
    c->len += n > 0 ? (size_t)n : 0;
    /* A whole head is answered, and is all there is: nothing is kept
     * behind it (rl2_http_answer_one). */
    parsed = rl2_http_head_in(c->buf, c->len, &c->scanned)
                 ? rl2_http_parse(r, c->buf, c->len)
                 : RL2_HTTP_MORE;
    if (parsed == RL2_HTTP_MORE) {
        rl2_http_park(w, c);
        return 0;
    }
    if (parsed == RL2_HTTP_BAD) {
        rl2_http_answer_one(w, c, r, parsed, 0);
        rl2_http_close(h, c);
        return 0;
    }
    if (rl2_http_answer_one(w, c, r, parsed, c->len > r->head_len) != 0) {
        rl2_http_close(h, c);
        return 1;
    }
    c->len = 0;
    c->scanned = 0;
    c->since_us = rl2_mono_us();
    rl2_http_park(w, c);
    return 1;
}

void
rl2_http_sweep(rl2_http_t *h)
{
    int64_t now_us = rl2_mono_us();

    if (now_us < h->next_sweep_us) {
        return;
    }
    h->next_sweep_us = now_us + RL2_HTTP_SWEEP_US;
    pthread_mutex_lock(&h->lock);
    for (size_t fd = 0; fd < h->high; fd++) {
        rl2_http_conn_t *c = h->conns[fd];

        /* Closing takes it out of the set too; only the listener waits
         * there, and it is here, so no worker can be given it now. */
        if (c != NULL && c->parked && now_us - c->since_us > h->idle_us) {
            h->conns[fd] = NULL;
            close(c->fd);
            free(c);
        }
    }
    pthread_mutex_unlock(&h->lock);
}
