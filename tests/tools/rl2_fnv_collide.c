/*
 * rl2_fnv_collide.c -- a test tool: an Apache access log whose N x N
 * routes ("/A/B", GET, one rule set) all agree in the low 18 bits of
 * the hash coverage's route table had before its basis was drawn at
 * random (FNV-1a from the fixed basis over "GET", 0xff and the route):
 * every A leads from the fixed start to one state of those bits, every
 * B from there to another.  With that hash each new route walked all
 * the routes before it.  The segments are letters g..z: no id.
 *
 * usage: rl2_fnv_collide N
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FNV_PRIME 1099511628211ull
#define FNV_BASIS 14695981039346656037ull
#define LOW_MASK  ((1u << 18) - 1)
#define WORD_LEN  8
#define N_MAX     1000

static uint64_t
fnv(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h = (h ^ (unsigned char)*s) * FNV_PRIME;
    }
    return h;
}

/* The x-th word of WORD_LEN letters g..z. */
static void
word(uint64_t x, char *w)
{
    for (int i = 0; i < WORD_LEN; i++, x /= 20) {
        w[i] = (char)('g' + x % 20);
    }
    w[WORD_LEN] = '\0';
}

/* n words that take `from` (after `prefix`) to one low state; *to. */
static void
words(uint64_t from, const char *prefix, int n, char out[][WORD_LEN + 1],
      uint64_t *to)
{
    uint64_t x = 0, at = fnv(from, prefix);

    for (int k = 0; k < n; x++) {
        uint64_t low;

        word(x, out[k]);
        low = fnv(at, out[k]) & LOW_MASK;
        if (k == 0) {
            *to = low;
        }
        k += low == *to;
    }
}

int
main(int argc, char **argv)
{
    static char a[N_MAX][WORD_LEN + 1], b[N_MAX][WORD_LEN + 1];
    int         n = argc == 2 ? atoi(argv[1]) : 0;
    uint64_t    start, mid, end;

    if (n < 1 || n > N_MAX) {
        fprintf(stderr, "usage: rl2_fnv_collide N (1 to %d)\n", N_MAX);
        return 2;
    }
    start = (fnv(FNV_BASIS, "GET") ^ 0xff) * FNV_PRIME;
    words(start, "/", n, a, &mid);
    /* Only the low bits matter from here on: they depend on no other. */
    words(mid, "/", n, b, &end);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            printf("192.0.2.1 - - [06/Dec/2026:12:00:00 +0000] \"GET /%s/%s "
                   "HTTP/1.1\" 200 5 \"-\" \"c\"\n",
                   a[i], b[j]);
        }
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
