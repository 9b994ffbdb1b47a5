/*
 * rl2_flood.c -- a test tool: a flood of distinct client addresses behind
 * a proxy.  Sends COUNT requests, each with its own X-Forwarded-For
 * address, over THREADS keep-alive connections to 127.0.0.1:PORT, and
 * interleaves STEADY_N requests from one steady address evenly among
 * them.  Prints one line of counts:
 *
 *   flood_ok=N flood_other=N steady_ok=N steady_429=N steady_other=N
 *   status_5xx=N errors=N max_ms=N
 *
 * usage: rl2_flood PORT PATH COUNT THREADS [START [STEADY_IP STEADY_N]]
 *
 * Flood address k (k counts from START) is 100.64.0.0 + k, or, for every
 * fourth k, 2001:db8:H:L::1 with H:L the bits of k, so that IPv6 clients
 * fall in distinct /64 prefixes.  Exit status 0 when every request got an
 * answer.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RL2_FLOOD_THREADS_MAX 64

typedef struct {
    int         port;
    const char *path;
    long        start;
    long        total; /* flood + steady requests */
    long        steady_n;
    const char *steady_ip;
    atomic_long next;
    atomic_long flood_ok, flood_other, steady_ok, steady_429;
    atomic_long steady_other, status_5xx, errors, max_us;
} flood_t;

static long
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static int
dial(int port)
{
    struct sockaddr_in sa;
    int                one = 1;
    int                fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0) {
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Is request i one of the steady client's?  Exactly steady_n of the
 * total indices are, spread evenly. */
static int
is_steady(const flood_t *f, long i)
{
    return f->steady_n > 0
           && (i + 1) * f->steady_n / f->total > i * f->steady_n / f->total;
}

static void
address(long k, char *out, size_t len)
{
    if (k % 4 == 3) {
        snprintf(out, len, "2001:db8:%lx:%lx::1", (k >> 16) & 0xffff,
                 k & 0xffff);
    }
    else {
        unsigned long a = 0x64400000UL + (unsigned long)k;

        snprintf(out, len, "%lu.%lu.%lu.%lu", a >> 24, (a >> 16) & 255,
                 (a >> 8) & 255, a & 255);
    }
}

/* Send one request and read its answer on *fd; returns the status, 0
 * when the connection closed before any answer (retry on a new one), -1
 * on an error.  *fd is closed and set to -1 when the server closes. */
static int
exchange(int *fd, const char *req, size_t reqlen)
{
    char   buf[8192];
    size_t have = 0;
    char  *end = NULL;
    long   clen = 0;
    int    status, keep = 1;

    if (send(*fd, req, reqlen, MSG_NOSIGNAL) != (ssize_t)reqlen) {
        return 0;
    }
    while (end == NULL) {
        ssize_t n = recv(*fd, buf + have, sizeof(buf) - 1 - have, 0);

        if (n <= 0) {
            return have == 0 ? 0 : -1;
        }
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end == NULL && have == sizeof(buf) - 1) {
            return -1;
        }
    }
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        return -1;
    }
    for (char *h = strstr(buf, "\r\n"); h != NULL && h < end;
         h = strstr(h + 2, "\r\n")) {
        if (strncasecmp(h + 2, "Content-Length:", 15) == 0) {
            clen = atol(h + 17);
        }
        else if (strncasecmp(h + 2, "Connection: close", 17) == 0) {
            keep = 0;
        }
    }
    long body = (long)(have - (size_t)(end + 4 - buf));

    while (body < clen) {
        ssize_t n = recv(*fd, buf, sizeof(buf), 0);

        if (n <= 0) {
            return -1;
        }
        body += n;
    }
    if (!keep) {
        close(*fd);
        *fd = -1;
    }
    return status;
}

static void
count(flood_t *f, int steady, int status, long us)
{
    long m = atomic_load(&f->max_us);

    while (us > m && !atomic_compare_exchange_weak(&f->max_us, &m, us)) {
    }
    if (status >= 500) {
        atomic_fetch_add(&f->status_5xx, 1);
    }
    if (steady) {
        atomic_fetch_add(status / 100 == 2 ? &f->steady_ok
                         : status == 429   ? &f->steady_429
                                           : &f->steady_other,
                         1);
    }
    else {
        atomic_fetch_add(status / 100 == 2 ? &f->flood_ok : &f->flood_other, 1);
    }
}

static void *
worker(void *arg)
{
    flood_t *f = arg;
    int      fd = -1;
    char     addr[64], req[512];

    for (;;) {
        long i = atomic_fetch_add(&f->next, 1);
        int  steady, status = 0, len;

        if (i >= f->total) {
            break;
        }
        steady = is_steady(f, i);
        if (!steady) {
            address(f->start + i, addr, sizeof(addr));
        }
        len = snprintf(req, sizeof(req),
                       "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "X-Forwarded-For: %s\r\n\r\n",
                       f->path, steady ? f->steady_ip : addr);
        long t0 = now_us();

        /* A keep-alive connection the server closed between requests
         * never saw this one: send it again on a new connection. */
        for (int attempt = 0; attempt < 3 && status == 0; attempt++) {
            if (fd < 0 && (fd = dial(f->port)) < 0) {
                break;
            }
            status = exchange(&fd, req, (size_t)len);
            if (status <= 0 && fd >= 0) {
                close(fd);
                fd = -1;
            }
        }
        if (status <= 0) {
            atomic_fetch_add(&f->errors, 1);
            continue;
        }
        count(f, steady, status, now_us() - t0);
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

int
main(int argc, char **argv)
{
    static flood_t f;
    pthread_t      tid[RL2_FLOOD_THREADS_MAX];
    long           threads;

    if (argc != 5 && argc != 6 && argc != 8) {
        fprintf(stderr, "usage: rl2_flood PORT PATH COUNT THREADS "
                        "[START [STEADY_IP STEADY_N]]\n");
        return 2;
    }
    f.port = atoi(argv[1]);
    f.path = argv[2];
    f.total = atol(argv[3]);
    threads = atol(argv[4]);
    f.start = argc > 5 ? atol(argv[5]) : 0;
    if (argc == 8) {
        f.steady_ip = argv[6];
        f.steady_n = atol(argv[7]);
        f.total += f.steady_n;
    }
    if (threads < 1 || threads > RL2_FLOOD_THREADS_MAX || f.total < 1
        || f.start < 0 || f.start + f.total > (1L << 22)) {
        fprintf(stderr, "rl2_flood: bad count, start or threads\n");
        return 2;
    }
    for (long t = 0; t < threads; t++) {
        pthread_create(&tid[t], NULL, worker, &f);
    }
    for (long t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
    }
    printf("flood_ok=%ld flood_other=%ld steady_ok=%ld steady_429=%ld "
           "steady_other=%ld status_5xx=%ld errors=%ld max_ms=%ld\n",
           atomic_load(&f.flood_ok), atomic_load(&f.flood_other),
           atomic_load(&f.steady_ok), atomic_load(&f.steady_429),
           atomic_load(&f.steady_other), atomic_load(&f.status_5xx),
           atomic_load(&f.errors), atomic_load(&f.max_us) / 1000);
    return atomic_load(&f.errors) == 0 ? 0 : 1;
}
