/*
 * worker.c -- one worker thread: wait for a connection (or the stop
 * pipe), vet its request, answer it (fast.c, or libfcgi), repeat.
 *
 * The worker accepts connections itself instead of letting
 * FCGX_Accept_r do it, so that every request is vetted (vet.c) before
 * libfcgi reads it.  The vetted connection is handed to libfcgi the way
 * libfcgi keeps a connection between two requests of a server that asked
 * for FCGI_KEEP_CONN: in the request's ipcFd, with keepConnection set,
 * so that FCGX_Accept_r reads the request from it rather than accepting.
 * The FCGX_Request is given no listening socket (-1), so libfcgi can
 * never accept an unvetted connection on its own.  Those two fields are
 * libfcgi's internals, unchanged since 2.4.0 (2002); Debian 12 ships
 * 2.4.2.
 *
 * A request that fast.c can answer never reaches libfcgi; one it
 * cannot is handed over untouched (vet.c and fast.c only peek until
 * they answer).
 *
 * Under -H the socket speaks HTTP/1.1 (http.c, http_conn.c): nothing is
 * vetted or handed to libfcgi; every connection, new or kept, waits in
 * the listener's set between its requests and while a request is still
 * arriving, so no worker waits on a client.
 *
 * Every signal is blocked here (main.c): a worker only ever waits in
 * poll() or epoll_wait() (or for the listener's lock), and stops by
 * finding the stop pipe readable when it has no request in hand.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <fastcgi.h>
#include <fcgiapp.h>

#include "fcgi.h"

/* A connection that stalls while sending its request or stops reading
 * the answer frees its worker after this. */
#define RL2_IO_TIMEOUT_S 10

/* How long the listener waits for the rest of a request before passing
 * the listener on (rl2_vet_conn). */
#define RL2_LISTENER_WAIT_MS 1

/* -H: the longest the listener sleeps between two looks for idle
 * connections (rl2_http_sweep). */
#define RL2_HTTP_WAKE_MS 250

/* 0 when fd is readable, -1 when the worker must stop. */
static int
rl2_wait(int fd, int stop_fd)
{
    struct pollfd pfd[2] = { { fd, POLLIN, 0 }, { stop_fd, POLLIN, 0 } };

    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            rl2_log(LOG_ERR, "poll: %s", strerror(errno));
            return -1;
        }
        if (pfd[1].revents != 0 || (pfd[0].revents & POLLNVAL)) {
            return -1;
        }
        if (pfd[0].revents != 0) {
            return 0;
        }
    }
}

int
rl2_workers_set(int listen_fd, int stop_fd)
{
    struct epoll_event ev = { 0 };
    int                ep = epoll_create1(EPOLL_CLOEXEC);

    if (ep < 0) {
        return -1;
    }
    ev.events = EPOLLIN;
    ev.data.fd = listen_fd;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) == 0) {
        ev.data.fd = stop_fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &ev) == 0) {
            return ep;
        }
    }
    close(ep);
    return -1;
}

/* The listener's wait: the listening socket or a kept connection that is
 * readable (taken out of the set until put back), or -1 when the worker
 * must stop.  Under -H it wakes now and then to close the connections
 * past their idle limit, busy or not. */
static int
rl2_wait_set(const rl2_worker_t *w)
{
    struct epoll_event ev;
    int                n;

    if (w->epoll_fd < 0) {
        return rl2_wait(w->listen_fd, w->stop_fd) == 0 ? w->listen_fd : -1;
    }
    for (;;) {
        if (w->http != NULL) {
            rl2_http_sweep(w->http);
        }
        n = epoll_wait(w->epoll_fd, &ev, 1,
                       w->http != NULL ? RL2_HTTP_WAKE_MS : -1);
        if (n < 0 && errno != EINTR) {
            rl2_log(LOG_ERR, "epoll_wait: %s", strerror(errno));
            return -1;
        }
        if (n == 1) {
            return ev.data.fd == w->stop_fd ? -1 : ev.data.fd;
        }
    }
}

int
rl2_worker_keep(const rl2_worker_t *w, int fd)
{
    struct epoll_event ev = { 0 };

    if (w->epoll_fd < 0) {
        return -1;
    }
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.fd = fd;
    if (epoll_ctl(w->epoll_fd, EPOLL_CTL_MOD, fd, &ev) == 0) {
        return 0;
    }
    return errno == ENOENT ? epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, fd, &ev)
                           : -1;
}

/* What libfcgi's blocking reads and writes need: a stalled server must
 * not hold the worker for ever. */
static void
rl2_set_timeouts(int fd)
{
    struct timeval tv = { RL2_IO_TIMEOUT_S, 0 };

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static int
rl2_is_tcp(int fd)
{
    struct sockaddr_storage ss;
    socklen_t               len = sizeof(ss);

    return getsockname(fd, (struct sockaddr *)&ss, &len) == 0
           && ss.ss_family != AF_UNIX;
}

/* Losing the race for a connection is routine; running out of file
 * descriptors is not, and must not spin while the socket stays ready. */
static void
rl2_accept_failed(int err)
{
    struct timespec pause = { 0, 50 * 1000 * 1000 };

    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR
        || err == ECONNABORTED || err == EPROTO) {
        return;
    }
    rl2_log_request(RL2_LOG_ERROR, LOG_ERR, "accept: %s", strerror(err));
    nanosleep(&pause, NULL);
}

/* A new connection or a kept one with its next request, or -1 when
 * stopping. */
static int
rl2_accept(const rl2_worker_t *w)
{
    int fd, on = 1;

    for (;;) {
        fd = rl2_wait_set(w);
        if (fd != w->listen_fd) {
            return fd;
        }
        fd = accept4(w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0 && w->http != NULL && rl2_http_open(w->http, fd) != 0) {
            continue;
        }
        if (fd >= 0) {
            /* An answer is written whole; on a kept TCP connection Nagle
             * would hold it back.  Meaningless on a unix socket. */
            if (w->tcp) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
            }
            return fd;
        }
        rl2_accept_failed(errno);
    }
}

/* The listener: the one worker that waits for and takes new connections
 * (leader/followers).  The others wait for this lock, not on the socket,
 * so a connection wakes nobody but the worker already listening, which
 * answers it on the spot when nothing in it can wait: the request is all
 * there and the store is the local zone.  Before anything that can wait
 * (a request still arriving, Redis, libfcgi's blocking reads and the
 * connections libfcgi keeps), the listener passes the lock on and
 * becomes a follower.  So on a busy server one worker answers a run of
 * connections without a single thread switch between them; with a
 * second CPU to use and connections still queued, it passes the lock on
 * at once, so that another worker takes the next one in parallel. */
static pthread_mutex_t rl2_listener = PTHREAD_MUTEX_INITIALIZER;

static void
rl2_listener_take(rl2_worker_t *w)
{
    if (!w->listening) {
        pthread_mutex_lock(&rl2_listener);
        w->listening = 1;
    }
}

static void
rl2_listener_pass(rl2_worker_t *w)
{
    if (w->listening) {
        w->listening = 0;
        pthread_mutex_unlock(&rl2_listener);
    }
}

/* More connections queued behind the one just taken (fd: the listening
 * socket), or more connections with requests (fd: the epoll set). */
static int
rl2_queued(int fd)
{
    struct pollfd pfd = { fd, POLLIN, 0 };

    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN);
}

/* The next connection with a request waiting: the one the server kept
 * open (FCGI_KEEP_CONN), or a new one; -1 when stopping. */
static int
rl2_next(rl2_worker_t *w, const FCGX_Request *req)
{
    int fd;

    if (req->ipcFd >= 0) {
        rl2_listener_pass(w);
        return rl2_wait(req->ipcFd, w->stop_fd) == 0 ? req->ipcFd : -1;
    }
    rl2_listener_take(w);
    fd = rl2_accept(w);
    if (fd >= 0 && w->cpus > 1 && rl2_queued(w->listen_fd)) {
        rl2_listener_pass(w);
    }
    return fd;
}

/* The request on fd vetted.  The listener gives a request that is not
 * all there yet a moment: on one CPU it has usually taken the
 * connection between the server's connect() and its write().  Any longer
 * wait happens after passing the listener on. */
static int
rl2_vet_conn(rl2_worker_t *w, int fd)
{
    struct pollfd pfd = { fd, POLLIN, 0 };
    int           vet = RL2_VET_AGAIN;

    if (w->listening) {
        vet = rl2_vet(w->vet, fd, 0);
        if (vet == RL2_VET_AGAIN && poll(&pfd, 1, RL2_LISTENER_WAIT_MS) == 1) {
            vet = rl2_vet(w->vet, fd, 0);
        }
    }
    if (vet == RL2_VET_AGAIN) {
        rl2_listener_pass(w);
        vet = rl2_vet(w->vet, fd, RL2_IO_TIMEOUT_S * 1000);
    }
    return vet;
}

static int
rl2_cpus(void)
{
    cpu_set_t set;

    return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
}

static void
rl2_drop(FCGX_Request *req, int fd)
{
    if (fd == req->ipcFd) {
        FCGX_Free(req, 1);
    }
    else {
        close(fd);
    }
}

/* Answer a vetted request without libfcgi (fast.c); then the connection
 * is closed, or kept for the server's next request (in the listener's
 * set, or in req->ipcFd when there is no set).  -1 when it is libfcgi's
 * to read: nothing of it was consumed. */
static int
rl2_fast(rl2_worker_t *w, FCGX_Request *req, int fd)
{
    rl2_fcgi_io_t io = { .envp = w->vet->envp,
                         .fd = fd,
                         .request_id = w->vet->request_id,
                         .timeout_ms = RL2_IO_TIMEOUT_S * 1000 };

    if (rl2_fast_env(w->vet) != 0) {
        return -1;
    }
    /* With Redis a decision waits on the network. */
    if (w->srv->gens.backend.redis_enabled) {
        rl2_listener_pass(w);
    }
    if (rl2_fcgi_handle(w->srv, &io) == RL2_FCGI_SLOW) {
        return -1;
    }
    if (io.failed || rl2_fast_consume(w->vet, fd) != 0
        || (w->vet->flags & FCGI_KEEP_CONN) == 0) {
        rl2_drop(req, fd);
        return 0;
    }
    /* Kept: the listener watches it with the listening socket, so an
     * idle kept connection holds no worker. */
    if (fd == req->ipcFd) {
        req->ipcFd = -1;
    }
    if (rl2_worker_keep(w, fd) != 0) {
        req->ipcFd = fd;
    }
    return 0;
}

/* A request libfcgi reads: the vetted connection handed over as one it
 * kept. */
static void
rl2_slow(rl2_worker_t *w, FCGX_Request *req, int fd)
{
    rl2_fcgi_io_t io = { .fcgx = req, .fd = -1 };

    rl2_listener_pass(w);
    rl2_set_timeouts(fd);
    req->ipcFd = fd;
    req->keepConnection = 1;
    /* On failure (a role libfcgi does not know) it has closed the
     * connection itself. */
    if (FCGX_Accept_r(req) < 0) {
        return;
    }
    io.envp = req->envp;
    rl2_fcgi_handle(w->srv, &io);
    /* Finished here, not by the next accept: the answer is flushed
     * before this worker can notice a stop. */
    FCGX_Finish_r(req);
}

/* -H: every connection, new or kept, comes through the listener's set
 * (http_conn.c parks each between its requests), and every request is
 * answered without waiting: its bytes are already here.  So the
 * listener answers on the spot, as with FastCGI, and passes the
 * listener on first when another CPU could take what is also ready,
 * or when the decision waits on Redis. */
static void
rl2_http_worker(rl2_worker_t *w)
{
    rl2_http_conn_t *c;
    int              fd;

    for (;;) {
        rl2_listener_take(w);
        if ((fd = rl2_accept(w)) < 0) {
            break;
        }
        /* Taken while still the listener: the next one sweeps idle
         * connections, and must not close this one under us. */
        if ((c = rl2_http_take(w->http, fd)) == NULL) {
            continue;
        }
        if ((w->cpus > 1 && rl2_queued(w->epoll_fd))
            || w->srv->gens.backend.redis_enabled) {
            rl2_listener_pass(w);
        }
        w->http_served += rl2_http_serve(w, c);
    }
    rl2_listener_pass(w);
}

void *
rl2_worker_main(void *arg)
{
    rl2_worker_t *w = arg;
    FCGX_Request  req;
    int           fd, vet;

    w->tcp = rl2_is_tcp(w->listen_fd);
    w->cpus = rl2_cpus();
    if (w->http != NULL) {
        rl2_http_worker(w);
        return NULL;
    }
    FCGX_InitRequest(&req, -1, FCGI_FAIL_ACCEPT_ON_INTR);
    while ((fd = rl2_next(w, &req)) >= 0) {
        vet = rl2_vet_conn(w, fd);
        if (vet != RL2_VET_OK) {
            if (vet == RL2_VET_BAD) {
                rl2_log_request(RL2_LOG_INPUT, LOG_WARNING,
                                "dropped a "
                                "FastCGI connection: %s",
                                w->vet->why);
            }
            rl2_drop(&req, fd);
            continue;
        }
        if (rl2_fast(w, &req, fd) != 0) {
            rl2_slow(w, &req, fd);
        }
    }
    rl2_listener_pass(w);
    FCGX_Free(&req, 1);
    return NULL;
}
