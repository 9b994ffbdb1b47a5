/*
 * rl2_fcgi_client.c -- a test tool: a raw FastCGI client, to ask
 * ratelimit2-fcgi things no web server would send.
 *
 * usage: rl2_fcgi_client [-r ROLE] [-b SIZE:NAME] [-d MS] [-x FAULT]
 *                        ADDRESS [NAME=VALUE ...]
 *   ADDRESS   host:port or a unix socket path
 *   -r ROLE   authorizer (default), responder or filter
 *   -b S:N    add param N with a value of S bytes ("aaa...")
 *   -d MS     send the first half of the request, wait MS milliseconds,
 *             then the rest (a request in flight across a signal)
 *   -x FAULT  send a broken request, then close:
 *             truncated  a PARAMS record cut short
 *             huge       a param whose name and value claim 2 GiB each
 *             version    a record of FastCGI version 9
 * Prints what the application wrote to FCGI_STDOUT.  Exit status: 0 when
 * the application ended the request, 1 when the connection closed (or
 * timed out) first, 2 on a usage or connection error.
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FCGI_BEGIN_REQUEST 1
#define FCGI_END_REQUEST   3
#define FCGI_PARAMS        4
#define FCGI_STDIN         5
#define FCGI_STDOUT        6
#define MAX_PARAMS         64
#define CHUNK              65535

typedef struct {
    unsigned char *p;
    size_t         len;
    size_t         cap;
} buf_t;

static void
put(buf_t *b, const void *data, size_t len)
{
    if (len == 0) {
        return;
    }
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL) {
            perror("realloc");
            exit(2);
        }
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void
put_len(buf_t *b, size_t n)
{
    unsigned char l[4] = { (unsigned char)(0x80 | (n >> 24)),
                           (unsigned char)(n >> 16), (unsigned char)(n >> 8),
                           (unsigned char)n };

    if (n < 128) {
        put(b, l + 3, 1);
    }
    else {
        put(b, l, 4);
    }
}

static void
record(buf_t *out, int type, const void *data, size_t len)
{
    unsigned char h[8] = { 1,
                           (unsigned char)type,
                           0,
                           1,
                           (unsigned char)(len >> 8),
                           (unsigned char)len,
                           0,
                           0 };

    put(out, h, 8);
    put(out, data, len);
}

/* A stream (params or stdin) as records of at most 64 KiB, then the
 * empty record that ends it. */
static void
stream(buf_t *out, int type, const buf_t *s)
{
    for (size_t off = 0; off < s->len; off += CHUNK) {
        size_t n = s->len - off < CHUNK ? s->len - off : CHUNK;

        record(out, type, s->p + off, n);
    }
    record(out, type, NULL, 0);
}

static int
dial(const char *addr)
{
    struct addrinfo hints = { 0 }, *res;
    struct timeval  tv = { 10, 0 };
    char            host[256];
    const char     *colon = strrchr(addr, ':');
    int             fd;

    if (addr[0] == '/') {
        struct sockaddr_un sun = { 0 };

        sun.sun_family = AF_UNIX;
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", addr);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun))) {
            perror(addr);
            exit(2);
        }
    }
    else {
        if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
            fprintf(stderr, "bad address %s\n", addr);
            exit(2);
        }
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
            fprintf(stderr, "cannot resolve %s\n", addr);
            exit(2);
        }
        fd = socket(res->ai_family, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
            perror(addr);
            exit(2);
        }
        freeaddrinfo(res);
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static int
read_full(int fd, unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, p, len);

        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Copy FCGI_STDOUT to stdout until FCGI_END_REQUEST: 0, or 1 if the
 * connection ended first. */
static int
answer(int fd)
{
    unsigned char h[8], *body = malloc(CHUNK + 255);

    while (body != NULL && read_full(fd, h, 8) == 0) {
        size_t len = ((size_t)h[4] << 8 | h[5]) + h[6];

        if (read_full(fd, body, len) != 0) {
            break;
        }
        if (h[1] == FCGI_STDOUT) {
            fwrite(body, 1, len - h[6], stdout);
        }
        if (h[1] == FCGI_END_REQUEST) {
            free(body);
            return 0;
        }
    }
    free(body);
    return 1;
}

static void
broken(buf_t *out, const char *fault)
{
    static const unsigned char huge[] = { 0xff, 0xff, 0xff, 0xfe, 0xff,
                                          0xff, 0xff, 0xfe, 'A' };
    unsigned char h[8] = { 1, FCGI_PARAMS, 0, 1, 0x03, 0xe8, 0, 0 };

    if (strcmp(fault, "truncated") == 0) {
        /* Claims 1000 bytes, sends 11. */
        put(out, h, 8);
        put(out, "\x0b\x05REMOTE_ADDR", 13);
    }
    else if (strcmp(fault, "huge") == 0) {
        /* Complete, so only the lengths are wrong. */
        record(out, FCGI_PARAMS, huge, sizeof(huge));
        record(out, FCGI_PARAMS, NULL, 0);
    }
    else if (strcmp(fault, "version") == 0) {
        h[0] = 9;
        h[4] = 0;
        h[5] = 0;
        put(out, h, 8);
    }
    else {
        fprintf(stderr, "unknown fault %s\n", fault);
        exit(2);
    }
}

static void
add_param(buf_t *params, const char *name, const char *value, size_t vlen)
{
    put_len(params, strlen(name));
    put_len(params, vlen);
    put(params, name, strlen(name));
    put(params, value, vlen);
}

/* Options and NAME=VALUE arguments; returns the index of ADDRESS. */
static int
options(int argc, char **argv, unsigned char *role, const char **fault,
        long *delay_ms, buf_t *params)
{
    int c;

    while ((c = getopt(argc, argv, "r:b:d:x:")) != -1) {
        if (c == 'r') {
            *role = strcmp(optarg, "responder") == 0 ? 1
                    : strcmp(optarg, "filter") == 0  ? 3
                                                     : 2;
        }
        else if (c == 'b') {
            size_t n = strtoul(optarg, NULL, 10);
            char  *v = malloc(n + 1), *name = strchr(optarg, ':');

            if (v == NULL || name == NULL) {
                exit(2);
            }
            memset(v, 'a', n);
            add_param(params, name + 1, v, n);
            free(v);
        }
        else if (c == 'x') {
            *fault = optarg;
        }
        else if (c == 'd') {
            *delay_ms = strtol(optarg, NULL, 10);
        }
        else {
            exit(2);
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: rl2_fcgi_client [-r ROLE] [-b SIZE:NAME] "
                        "[-d MS] [-x FAULT] ADDRESS [NAME=VALUE ...]\n");
        exit(2);
    }
    for (int i = optind + 1; i < argc; i++) {
        char *eq = strchr(argv[i], '=');

        if (eq == NULL) {
            exit(2);
        }
        *eq = '\0';
        add_param(params, argv[i], eq + 1, strlen(eq + 1));
    }
    return optind;
}

/* Write all of p[0..len); with a delay, in two halves. */
static void
send_all(int fd, const unsigned char *p, size_t len, long delay_ms)
{
    struct timespec pause = { delay_ms / 1000, delay_ms % 1000 * 1000000 };
    size_t          half = delay_ms > 0 ? len / 2 : len;

    for (size_t off = 0; off < len;) {
        size_t  end = off < half ? half : len;
        ssize_t n = write(fd, p + off, end - off);

        if (n <= 0) {
            return;
        }
        off += (size_t)n;
        if (off == half && half < len) {
            nanosleep(&pause, NULL);
        }
    }
}

int
main(int argc, char **argv)
{
    buf_t         out = { 0 }, params = { 0 };
    unsigned char begin[8] = { 0, 2, 0, 0, 0, 0, 0, 0 };
    const char   *fault = NULL;
    long          delay_ms = 0;
    int at = options(argc, argv, &begin[1], &fault, &delay_ms, &params);
    int fd, rc;

    record(&out, FCGI_BEGIN_REQUEST, begin, sizeof(begin));
    if (fault != NULL) {
        broken(&out, fault);
    }
    else {
        buf_t none = { 0 };

        stream(&out, FCGI_PARAMS, &params);
        stream(&out, FCGI_STDIN, &none);
    }
    fd = dial(argv[at]);
    send_all(fd, out.p, out.len, delay_ms);
    if (fault != NULL) {
        /* The daemon must give up on us, not the other way round. */
        shutdown(fd, SHUT_WR);
    }
    rc = answer(fd);
    close(fd);
    free(out.p);
    free(params.p);
    return rc;
}
