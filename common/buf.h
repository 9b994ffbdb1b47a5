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
    size_t len;   /* bytes written, excluding the NUL */
    size_t cap;   /* size of p, including room for the NUL */
    int    full;  /* something did not fit */
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

static inline void
rl2_buf_i64(rl2_buf_t *b, int64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0) {
        tmp[--i] = '-';
    }
    rl2_buf_mem(b, tmp + i, sizeof(tmp) - i);
}

/* A Structured Field string (defined in policy.c). */
void rl2_sf_string(rl2_buf_t *b, const char *s);

#endif /* RL2_BUF_H */
