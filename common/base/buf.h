/*
 * buf.h -- a bounded string builder for the hot path (private to the
 * core).  snprintf costs hundreds of instructions per call; building keys
 * and header values from pieces with these costs a few per byte.  A buffer
 * that fills up truncates and remembers it (full), never overruns.
 */
#ifndef RL2_BUF_H
#define RL2_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    char  *p;
    size_t len;  /* bytes written, excluding the NUL */
    size_t cap;  /* size of p, including room for the NUL */
    int    full; /* something did not fit */
} rl2_buf_t;

static inline void
rl2_buf_init(rl2_buf_t *b, char *p, size_t cap)
{
    b->p = p;
    b->len = 0;
    b->cap = cap;
    b->full = 0;
    p[0] = '\0';
}

static inline void
rl2_buf_mem(rl2_buf_t *b, const char *s, size_t n)
{
    if (n >= b->cap - b->len) {
        n = b->cap - b->len - 1;
        b->full = 1;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static inline void
rl2_buf_str(rl2_buf_t *b, const char *s)
{
    rl2_buf_mem(b, s, strlen(s));
}

static inline void
rl2_buf_char(rl2_buf_t *b, char c)
{
    rl2_buf_mem(b, &c, 1);
}

/* Two decimal digits per step: "00" "01" ... "99". */
static const char rl2_digit_pairs[201] __attribute__((unused)) =
    "0001020304050607080910111213141516171819"
    "2021222324252627282930313233343536373839"
    "4041424344454647484950515253545556575859"
    "6061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static const uint64_t rl2_pow10[20]
    __attribute__((unused)) = { 1ULL,
                                10ULL,
                                100ULL,
                                1000ULL,
                                10000ULL,
                                100000ULL,
                                1000000ULL,
                                10000000ULL,
                                100000000ULL,
                                1000000000ULL,
                                10000000000ULL,
                                100000000000ULL,
                                1000000000000ULL,
                                10000000000000ULL,
                                100000000000000ULL,
                                1000000000000000ULL,
                                10000000000000000ULL,
                                100000000000000000ULL,
                                1000000000000000000ULL,
                                10000000000000000000ULL };

/* Decimal digits of u: log10 from the bit length (1233/4096 is just
 * above log10(2)), then one comparison.  u | 1 has as many digits as u
 * and at least one bit. */
static inline unsigned
rl2_digits(uint64_t u)
{
    uint64_t x = u | 1;
    unsigned t = ((64 - (unsigned)__builtin_clzll(x)) * 1233) >> 12;

    return t + 1 - (x < rl2_pow10[t]);
}

/* Write v in decimal at w (at most 20 bytes, no NUL); returns the
 * length.  The length is known first, so digits go straight to their
 * place, two per division: snprintf costs hundreds of instructions. */
static inline size_t
rl2_i64_text(char *out, int64_t v)
{
    char    *w = out;
    uint64_t u = (uint64_t)v;
    unsigned d;
    char    *end;

    if (v < 0) {
        *w++ = '-';
        u = (uint64_t)0 - u;
    }
    end = w + rl2_digits(u);
    w = end;
    while (u >= 100 && u > UINT32_MAX) {
        d = (unsigned)(u % 100) * 2;
        u /= 100;
        *--w = rl2_digit_pairs[d + 1];
        *--w = rl2_digit_pairs[d];
    }
    /* The rest in 32 bits: cheaper divisions for the usual numbers. */
    for (uint32_t s = (uint32_t)u;;) {
        if (s < 100) {
            u = s;
            break;
        }
        d = (s % 100) * 2;
        s /= 100;
        *--w = rl2_digit_pairs[d + 1];
        *--w = rl2_digit_pairs[d];
    }
    if (u >= 10) {
        d = (unsigned)u * 2;
        *--w = rl2_digit_pairs[d + 1];
        *--w = rl2_digit_pairs[d];
    }
    else {
        *--w = (char)('0' + u);
    }
    return (size_t)(end - out);
}

static inline void
rl2_buf_i64(rl2_buf_t *b, int64_t v)
{
    char tmp[24];

    rl2_buf_mem(b, tmp, rl2_i64_text(tmp, v));
}

/* A Structured Field string (defined in policy.c). */
void rl2_sf_string(rl2_buf_t *b, const char *s);

#endif /* RL2_BUF_H */
