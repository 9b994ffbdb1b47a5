/*
 * hll.c -- estimating and clearing a HyperLogLog sketch (hll.h).  Called
 * by the metrics upkeep once a minute per cell in use and by readers,
 * never by a request: floating point is fine here.  No libm: the one
 * logarithm needed is a short series, so the front ends link as before.
 * Also the sketch written as Redis stores a HyperLogLog, for the fleet's
 * series (usage_redis.h).
 */
#include <stddef.h>
#include <string.h>

#include "obs/hll.h"

/* ln(x) for x >= 1: x = 2^k * f with f in [1, 2), and ln f as
 * 2 atanh((f - 1) / (f + 1)), whose series converges fast for
 * |y| <= 1/3 (30 terms: far below a double's precision). */
static double
rl2_hll_ln(double x)
{
    const double ln2 = 0.69314718055994530942;
    double       y, y2, term, sum = 0.0;
    int          k = 0;

    while (x >= 2.0) {
        x /= 2.0;
        k++;
    }
    y = (x - 1.0) / (x + 1.0);
    y2 = y * y;
    term = y;
    for (int n = 1; n < 60; n += 2) {
        sum += term / n;
        term *= y2;
    }
    return k * ln2 + 2.0 * sum;
}

static uint8_t
rl2_hll_reg(const rl2_hll_t *h, unsigned i)
{
    return atomic_load_explicit(&((rl2_hll_t *)h)->reg[i],
                                memory_order_relaxed);
}

/* The estimate of the union of a and b (b NULL: of a alone). */
static uint32_t
rl2_hll_estimate2(const rl2_hll_t *a, const rl2_hll_t *b)
{
    const double m = (double)RL2_HLL_REGS;
    /* alpha_m of Flajolet et al. for m >= 128. */
    const double alpha = 0.7213 / (1.0 + 1.079 / m);
    double       pow2[65], sum = 0.0, e;
    unsigned     zeros = 0;

    /* 2^-r for every rank a register can hold (at most 64; a larger
     * byte, written by no one, is read as 64). */
    pow2[0] = 1.0;
    for (unsigned r = 1; r < 65; r++) {
        pow2[r] = pow2[r - 1] / 2.0;
    }
    for (unsigned i = 0; i < RL2_HLL_REGS; i++) {
        uint8_t r = rl2_hll_reg(a, i), rb = b != NULL ? rl2_hll_reg(b, i) : 0;

        r = rb > r ? rb : r;
        sum += pow2[r < 65 ? r : 64];
        zeros += r == 0;
    }
    e = alpha * m * m / sum;
    /* Small range: linear counting on the empty registers is the better
     * estimate while many are left. */
    if (e <= 2.5 * m && zeros > 0) {
        e = m * rl2_hll_ln(m / (double)zeros);
    }
    return e >= 4294967295.0 ? UINT32_MAX : (uint32_t)(e + 0.5);
}

uint32_t
rl2_hll_estimate(const rl2_hll_t *h)
{
    return rl2_hll_estimate2(h, NULL);
}

uint32_t
rl2_hll_estimate_union(const rl2_hll_t *a, const rl2_hll_t *b)
{
    return rl2_hll_estimate2(a, b);
}

void
rl2_hll_merge(rl2_hll_t *into, const rl2_hll_t *from)
{
    for (unsigned i = 0; i < RL2_HLL_REGS; i++) {
        uint8_t r = rl2_hll_reg(from, i);

        if (r > rl2_hll_reg(into, i)) {
            atomic_store_explicit(&into->reg[i], r, memory_order_relaxed);
        }
    }
}

void
rl2_hll_clear(rl2_hll_t *h)
{
    for (unsigned i = 0; i < RL2_HLL_REGS; i++) {
        atomic_store_explicit(&h->reg[i], 0, memory_order_relaxed);
    }
}

/* ---- as a Redis HyperLogLog ---------------------------------------- */

static uint8_t
rl2_hll_redis_rank(const rl2_hll_t *h, unsigned i)
{
    uint8_t r = rl2_hll_reg(h, i);

    return r > RL2_HLL_REDIS_RANK ? RL2_HLL_REDIS_RANK : r;
}

/* "HYLL", the encoding, 3 unused bytes, the cached cardinality marked
 * stale (top bit of its last byte) so that PFCOUNT computes it. */
static void
rl2_hll_redis_header(uint8_t *out, uint8_t encoding)
{
    memset(out, 0, RL2_HLL_REDIS_HDR);
    memcpy(out, "HYLL", 4);
    out[4] = encoding;
    out[15] = 0x80;
}

void
rl2_hll_redis_dense(const rl2_hll_t *h, uint8_t *out)
{
    uint8_t *reg = out + RL2_HLL_REDIS_HDR;

    rl2_hll_redis_header(out, 0);
    memset(reg, 0, RL2_HLL_REDIS_DENSE - RL2_HLL_REDIS_HDR);
    for (unsigned i = 0; i < RL2_HLL_REGS; i++) {
        unsigned bit = i * 6, byte = bit / 8, shift = bit % 8;
        unsigned v = rl2_hll_redis_rank(h, i);

        reg[byte] |= (uint8_t)(v << shift);
        /* A register that straddles two bytes; the last one ends
         * inside the last byte (shift 2). */
        if (shift > 2) {
            reg[byte + 1] |= (uint8_t)(v >> (8 - shift));
        }
    }
}

/* One opcode into out at *len, if it fits in cap. */
static int
rl2_hll_sparse_put(uint8_t *out, size_t cap, size_t *len, const uint8_t *op,
                   size_t n)
{
    if (cap - *len < n) {
        return 0;
    }
    memcpy(out + *len, op, n);
    *len += n;
    return 1;
}

/* A run of `run` zero registers: XZERO (01xxxxxx yyyyyyyy, 1..16384) for
 * long runs, ZERO (00xxxxxx, 1..64) for short ones. */
static int
rl2_hll_sparse_zeros(uint8_t *out, size_t cap, size_t *len, unsigned run)
{
    uint8_t op[2];

    if (run > 64) {
        op[0] = (uint8_t)(0x40 | ((run - 1) >> 8));
        op[1] = (uint8_t)((run - 1) & 0xff);
        return rl2_hll_sparse_put(out, cap, len, op, 2);
    }
    op[0] = (uint8_t)(run - 1);
    return rl2_hll_sparse_put(out, cap, len, op, 1);
}

size_t
rl2_hll_redis_sparse(const rl2_hll_t *h, uint8_t *out, size_t cap)
{
    size_t   len = RL2_HLL_REDIS_HDR;
    unsigned i = 0;

    if (cap < RL2_HLL_REDIS_HDR) {
        return 0;
    }
    rl2_hll_redis_header(out, 1);
    while (i < RL2_HLL_REGS) {
        uint8_t  v = rl2_hll_redis_rank(h, i);
        unsigned run = 1;

        while (i + run < RL2_HLL_REGS && rl2_hll_redis_rank(h, i + run) == v) {
            run++;
        }
        if (v == 0) {
            if (!rl2_hll_sparse_zeros(out, cap, &len, run)) {
                return 0;
            }
            i += run;
            continue;
        }
        if (v > 32) {
            return 0; /* VAL holds ranks 1..32 only */
        }
        /* VAL (1vvvvvxx): rank v, a run of up to 4. */
        run = run > 4 ? 4 : run;
        {
            uint8_t op = (uint8_t)(0x80 | ((v - 1) << 2) | (run - 1));

            if (!rl2_hll_sparse_put(out, cap, &len, &op, 1)) {
                return 0;
            }
        }
        i += run;
    }
    return len;
}
