/*
 * rl2_fcgi_client.c -- a test tool: a raw FastCGI client, to ask
 * ratelimit2-fcgi things no web server would send.
 *
 * usage: rl2_fcgi_client [-r ROLE] [-b SIZE:NAME] [-d MS] [-x FAULT]
 *                        [-k N [-P] [-w MS]] [-i BODY] [-p] [-n N]
 *                        ADDRESS [NAME=VALUE ...]
 *   ADDRESS   host:port or a unix socket path
 *   -r ROLE   authorizer (default), responder or filter
 *   -b S:N    add param N with a value of S bytes ("aaa...")
 *   -d MS     send the first half of the request, wait MS milliseconds,
 *             then the rest (a request in flight across a signal)
 *   -k N      send the request N times on one connection, with
 *             FCGI_KEEP_CONN and request ids 1..N, each after the answer
 *             to the one before; -P: all of them at once (pipelined);
 *             -w MS: MS milliseconds between an answer and the next
 *             request (the connection idle)
 *   -i BODY   send BODY as the request's FCGI_STDIN
 *   -p        pad every record to a multiple of 8 bytes (up to 7 bytes
 *             of padding, as the specification recommends)
 *   -n N      add N params X_PARAM_<i>=1
 *   -x FAULT  send a broken request, then close:
 *             truncated  a PARAMS record cut short
 *             huge       a param whose name and value claim 2 GiB each
 *             version    a record of FastCGI version 9
 * Prints what the application wrote to FCGI_STDOUT (with -k, each
 * answer after a line "== ID").  Exit status: 0 when the application
 * ended the request (every one of them), 1 when the connection closed (or
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

static unsigned rl2_id = 1; /* of the records being built */
static int      rl2_pad;    /* -p */

static void
record(buf_t *out, int type, const void *data, size_t len)
{
    static const unsigned char zeros[8] = { 0 };
    unsigned char              pad = rl2_pad ? (unsigned char)(-len & 7) : 0;
    unsigned char              h[8] = { 1,
                                        (unsigned char)type,
                                        (unsigned char)(rl2_id >> 8),
                                        (unsigned char)rl2_id,
                                        (unsigned char)(len >> 8),
                                        (unsigned char)len,
                                        pad,
                                        0 };

    put(out, h, 8);
    put(out, data, len);
    put(out, zeros, pad);
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
        if (((unsigned)h[2] << 8 | h[3]) != rl2_id) {
            fprintf(stderr, "a record of request %u, not %u\n",
                    (unsigned)h[2] << 8 | h[3], rl2_id);
            break;
        }
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

typedef struct {
    unsigned char role;
    const char   *fault;
    long          delay_ms;
    long          keep;     /* -k: requests on the connection, or 0 */
    int           pipeline; /* -P */
    long          idle_ms;  /* -w */
    const char   *body;     /* -i */
} opts_t;

/* Options and NAME=VALUE arguments; returns the index of ADDRESS. */
static int
options(int argc, char **argv, opts_t *o, buf_t *params)
{
    int c;

    while ((c = getopt(argc, argv, "r:b:d:x:k:Pi:pn:w:")) != -1) {
        if (c == 'w') {
            o->idle_ms = strtol(optarg, NULL, 10);
            continue;
        }
        if (c == 'k') {
            o->keep = strtol(optarg, NULL, 10);
            if (o->keep < 1 || o->keep > 1000) {
                exit(2);
            }
            continue;
        }
        if (c == 'n') {
            char name[32];

            for (long i = strtol(optarg, NULL, 10); i > 0; i--) {
                snprintf(name, sizeof(name), "X_PARAM_%ld", i);
                add_param(params, name, "1", 1);
            }
            continue;
        }
        if (c == 'P' || c == 'p') {
            *(c == 'P' ? &o->pipeline : &rl2_pad) = 1;
            continue;
        }
        if (c == 'i') {
            o->body = optarg;
            continue;
        }
        if (c == 'r') {
            o->role = strcmp(optarg, "responder") == 0 ? 1
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
            o->fault = optarg;
        }
        else if (c == 'd') {
            o->delay_ms = strtol(optarg, NULL, 10);
        }
        else {
            exit(2);
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: rl2_fcgi_client [-r ROLE] [-b SIZE:NAME] "
                        "[-d MS] [-x FAULT] [-k N [-P] [-w MS]] [-i BODY] [-p] "
                        "[-n N] ADDRESS [NAME=VALUE ...]\n");
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

/* One whole request, id rl2_id, onto out. */
static void
request(buf_t *out, const opts_t *o, const buf_t *params)
{
    unsigned char begin[8] = { 0, o->role, o->keep > 0, 0, 0, 0, 0, 0 };
    buf_t         in = { (unsigned char *)o->body,
                 o->body != NULL ? strlen(o->body) : 0, 0 };

    record(out, FCGI_BEGIN_REQUEST, begin, sizeof(begin));
    if (o->fault != NULL) {
        broken(out, o->fault);
        return;
    }
    stream(out, FCGI_PARAMS, params);
    stream(out, FCGI_STDIN, &in);
}

/* -k: the request o->keep times on one connection, each answer after a
 * line "== ID". */
static int
keep(int fd, const opts_t *o, const buf_t *params)
{
    buf_t out = { 0 };
    int   rc = 0;

    for (long i = 1; o->pipeline && i <= o->keep; i++) {
        rl2_id = (unsigned)i;
        request(&out, o, params);
    }
    send_all(fd, out.p, out.len, 0);
    for (long i = 1; rc == 0 && i <= o->keep; i++) {
        rl2_id = (unsigned)i;
        if (!o->pipeline) {
            struct timespec idle = { o->idle_ms / 1000,
                                     o->idle_ms % 1000 * 1000000 };

            if (i > 1 && o->idle_ms > 0) {
                nanosleep(&idle, NULL);
            }
            out.len = 0;
            request(&out, o, params);
            send_all(fd, out.p, out.len, 0);
        }
        printf("== %ld\n", i);
        rc = answer(fd);
    }
    fflush(stdout);
    free(out.p);
    return rc;
}

int
main(int argc, char **argv)
{
    buf_t  out = { 0 }, params = { 0 };
    opts_t o = { 2, NULL, 0, 0, 0, 0, NULL };
    int    at = options(argc, argv, &o, &params);
    int    fd, rc;

    fd = dial(argv[at]);
    if (o.keep > 0) {
        rc = keep(fd, &o, &params);
        close(fd);
        free(params.p);
        return rc;
    }
    request(&out, &o, &params);
    send_all(fd, out.p, out.len, o.delay_ms);
    if (o.fault != NULL) {
        /* The daemon must give up on us, not the other way round. */
        shutdown(fd, SHUT_WR);
    }
    rc = answer(fd);
    close(fd);
    free(out.p);
    free(params.p);
    return rc;
}
