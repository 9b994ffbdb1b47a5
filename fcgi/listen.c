/*
 * listen.c -- the socket the web server connects to: handed over by
 * systemd (socket activation, LISTEN_FDS) or by spawn-fcgi and lighttpd's
 * bin-path (fd 0, the FastCGI convention), or opened from -s.
 *
 * Whatever its origin, the workers use it the same way: they wait in
 * poll() for a connection or the stop pipe, then accept.  So the socket
 * is made non-blocking: a worker that loses the race for a connection
 * gets EAGAIN instead of sleeping in accept(), where it could not see
 * the stop pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fcgi.h"

#define RL2_LISTEN_BACKLOG      1024
#define RL2_SD_LISTEN_FDS_START 3

static int
rl2_is_listening(int fd)
{
    int       on = 0;
    socklen_t len = sizeof(on);

    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

int
rl2_listen_inherited(rl2_err_t *err)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");

    if (pid != NULL && fds != NULL && strtol(pid, NULL, 10) == getpid()) {
        long n = strtol(fds, NULL, 10);

        /* Consumed: nothing we might start should believe them. */
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
        if (n != 1) {
            rl2_err_set(err, RL2_ERR_INVALID,
                        "systemd passed %ld sockets "
                        "(LISTEN_FDS); ratelimit2-fcgi listens on exactly "
                        "one",
                        n);
            return -2;
        }
        if (!rl2_is_listening(RL2_SD_LISTEN_FDS_START)) {
            rl2_err_set(err, RL2_ERR_INVALID,
                        "the socket systemd passed is "
                        "not a listening stream socket");
            return -2;
        }
        fcntl(RL2_SD_LISTEN_FDS_START, F_SETFD, FD_CLOEXEC);
        return RL2_SD_LISTEN_FDS_START;
    }
    return rl2_is_listening(0) ? 0 : -1;
}

int
rl2_listen_is_unix(const char *addr)
{
    return addr[0] == '/' || addr[0] == '.';
}

/* A socket file left by a daemon that died is removed; one that still
 * answers belongs to a running daemon and is left alone. */
static int
rl2_unix_stale(const struct sockaddr_un *sun, rl2_err_t *err)
{
    struct stat st;
    int         fd, live;

    if (stat(sun->sun_path, &st) != 0) {
        return 0;
    }
    if (!S_ISSOCK(st.st_mode)) {
        rl2_err_set(err, RL2_ERR_SYS, "%s exists and is not a socket",
                    sun->sun_path);
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    live =
        fd >= 0 && connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    if (live) {
        rl2_err_set(err, RL2_ERR_SYS, "%s is in use by a running server",
                    sun->sun_path);
        return -1;
    }
    unlink(sun->sun_path);
    return 0;
}

static int
rl2_listen_unix(const char *path, rl2_err_t *err)
{
    struct sockaddr_un sun;
    int                fd;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        rl2_err_set(err, RL2_ERR_INVALID, "socket path too long: %s", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    if (rl2_unix_stale(&sun, err) != 0) {
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0
        || listen(fd, RL2_LISTEN_BACKLOG) != 0) {
        rl2_err_set(err, RL2_ERR_SYS, "cannot listen on %s: %s", path,
                    strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

/* "host:port", "[v6]:port", ":port" or "*:port" (every address). */
static int
rl2_split_hostport(const char *addr, char *host, size_t hlen, const char **port)
{
    const char *colon = strrchr(addr, ':');
    size_t      n;

    if (colon == NULL || colon[1] == '\0') {
        return -1;
    }
    *port = colon + 1;
    n = (size_t)(colon - addr);
    if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
        addr++;
        n -= 2;
    }
    if (n >= hlen) {
        return -1;
    }
    memcpy(host, addr, n);
    host[n] = '\0';
    if (strcmp(host, "*") == 0) {
        host[0] = '\0';
    }
    return 0;
}

static int
rl2_listen_tcp(const char *addr, rl2_err_t *err)
{
    struct addrinfo hints, *res, *ai;
    char            host[256];
    const char     *port;
    int             fd = -1, rc, on = 1, saved = 0;

    if (rl2_split_hostport(addr, host, sizeof(host), &port) != 0) {
        rl2_err_set(err, RL2_ERR_INVALID,
                    "invalid listen address \"%s\": "
                    "expected host:port or a unix socket path",
                    addr);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        rl2_err_set(err, RL2_ERR_INVALID, "listen address \"%s\": %s", addr,
                    gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0
            || listen(fd, RL2_LISTEN_BACKLOG) != 0) {
            saved = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        rl2_err_set(err, RL2_ERR_SYS, "cannot listen on %s: %s", addr,
                    strerror(saved));
    }
    return fd;
}

int
rl2_listen_open(const char *addr, rl2_err_t *err)
{
    return rl2_listen_is_unix(addr) ? rl2_listen_unix(addr, err)
                                    : rl2_listen_tcp(addr, err);
}

int
rl2_listen_prepare(int fd, rl2_err_t *err)
{
    int flags = fcntl(fd, F_GETFL);

    if (!rl2_is_listening(fd)) {
        rl2_err_set(err, RL2_ERR_INVALID, "fd %d is not a listening socket",
                    fd);
        return -1;
    }
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
        rl2_err_set(err, RL2_ERR_SYS,
                    "cannot make the socket non-blocking: "
                    "%s",
                    strerror(errno));
        return -1;
    }
    return 0;
}
