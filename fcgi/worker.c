/*
 * worker.c -- one worker thread: wait for a connection (or the stop
 * pipe), vet its request, let libfcgi parse it, answer, repeat.
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
 * Every signal is blocked here (main.c): a worker only ever waits in
 * poll(), and stops by finding the stop pipe readable when it has no
 * request in hand.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "fcgi.h"

/* A connection that stalls while sending its request or stops reading
 * the answer frees its worker after this. */
#define RL2_IO_TIMEOUT_S 10

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

static void
rl2_set_socket_opts(int fd)
{
    struct timeval tv = { RL2_IO_TIMEOUT_S, 0 };
    int            on = 1;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    /* An answer is written whole; on a kept TCP connection Nagle would
     * hold it back.  Fails harmlessly on a unix socket. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
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

/* A new connection, or -1 when stopping. */
static int
rl2_accept(const rl2_worker_t *w)
{
    int fd;

    for (;;) {
        if (rl2_wait(w->listen_fd, w->stop_fd) != 0) {
            return -1;
        }
        fd = accept4(w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            rl2_set_socket_opts(fd);
            return fd;
        }
        rl2_accept_failed(errno);
    }
}

/* The next connection with a request waiting: the one the server kept
 * open (FCGI_KEEP_CONN), or a new one; -1 when stopping. */
static int
rl2_next(const rl2_worker_t *w, const FCGX_Request *req)
{
    if (req->ipcFd >= 0) {
        return rl2_wait(req->ipcFd, w->stop_fd) == 0 ? req->ipcFd : -1;
    }
    return rl2_accept(w);
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

void *
rl2_worker_main(void *arg)
{
    rl2_worker_t *w = arg;
    FCGX_Request  req;
    int           fd, vet;

    FCGX_InitRequest(&req, -1, FCGI_FAIL_ACCEPT_ON_INTR);
    while ((fd = rl2_next(w, &req)) >= 0) {
        vet = rl2_vet(w->vet, fd, RL2_IO_TIMEOUT_S * 1000);
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
        req.ipcFd = fd;
        req.keepConnection = 1;
        /* On failure (a role libfcgi does not know) it has closed the
         * connection itself. */
        if (FCGX_Accept_r(&req) < 0) {
            continue;
        }
        rl2_fcgi_handle(w->srv, &req);
        /* Finished here, not by the next accept: the answer is flushed
         * before this worker can notice a stop. */
        FCGX_Finish_r(&req);
    }
    FCGX_Free(&req, 1);
    return NULL;
}
