/*
 * hll.c -- raising a register of a HyperLogLog sketch, estimating and
 * clearing it (hll.h).  The estimate is called by the metrics upkeep
 * once a minute per cell in use and by readers, never by a request:
 * floating point is fine there.  No libm: the one logarithm needed is a
 * short series, so the front ends link as before.  Also the sketch
 * written as Redis stores a HyperLogLog, for the fleet's series
 * (usage_redis.h).
 */
#include <stddef.h>
#include <string.h>

#include "obs/hll.h"

/* A register's share of the deficit: 2^40 - 2^(40 - rank). */
static uint64_t
rl2_hll_share(uint8_t rank)
{
    return rank >= RL2_HLL_Q ? UINT64_C(1) << RL2_HLL_Q
                             : (UINT64_C(1) << RL2_HLL_Q)
                                   - (UINT64_C(1) << (RL2_HLL_Q - rank));
}

/* A compare-and-swap, so that the sums follow exactly the values the
 * register took: a writer that loses to a larger rank writes nothing. */
void
rl2_hll_raise(rl2_hll_t *h, unsigned i, uint8_t rank)
{
    uint8_t was = atomic_load_explicit(&h->reg[i], memory_order_relaxed);

    while (rank > was) {
        if (atomic_compare_exchange_weak_explicit(&h->reg[i], &was, rank,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            atomic_fetch_add_explicit(&h->deficit,
                                      rl2_hll_share(rank) - rl2_hll_share(was),
                                      memory_order_relaxed);
            if (was == 0) {
                atomic_fetch_add_explicit(&h->nonzero, 1, memory_order_relaxed);
            }
            return;
        }
    }
}

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

uint32_t
rl2_hll_estimate(const rl2_hll_t *h)
{
    const double m = (double)RL2_HLL_REGS;
    /* alpha_m of Flajolet et al. for m >= 128. */
    const double alpha = 0.7213 / (1.0 + 1.079 / m);
    uint64_t     deficit =
        atomic_load_explicit(&((rl2_hll_t *)h)->deficit, memory_order_relaxed);
    uint32_t nonzero =
        atomic_load_explicit(&((rl2_hll_t *)h)->nonzero, memory_order_relaxed);
    double   sum, e;
    unsigned zeros = nonzero < RL2_HLL_REGS ? RL2_HLL_REGS - nonzero : 0;

    /* A clear racing a raise can leave the sums a step apart: never let
     * the sum fall to zero or below. */
    sum = m - (double)deficit / (double)(UINT64_C(1) << RL2_HLL_Q);
    if (zeros == RL2_HLL_REGS) {
        return 0;
    }
    if (sum < m / (double)(UINT64_C(1) << RL2_HLL_Q)) {
        sum = m / (double)(UINT64_C(1) << RL2_HLL_Q);
    }
    e = alpha * m * m / sum;
    /* Small range: linear counting on the empty registers is the better
     * estimate while many are left. */
    if (e <= 2.5 * m && zeros > 0) {
        e = m * rl2_hll_ln(m / (double)zeros);
    }
    return e >= 4294967295.0 ? UINT32_MAX : (uint32_t)(e + 0.5);
}

/* Eight stores a turn (the compiler keeps a loop of atomic stores as
 * written). */
void
rl2_hll_clear_part(rl2_hll_t *h, unsigned from, unsigned n)
{
    _Atomic uint8_t *end = h->reg + from + n;

    for (_Atomic uint8_t *r = h->reg + from; r < end; r += 8) {
        atomic_store_explicit(&r[0], 0, memory_order_relaxed);
        atomic_store_explicit(&r[1], 0, memory_order_relaxed);
        atomic_store_explicit(&r[2], 0, memory_order_relaxed);
        atomic_store_explicit(&r[3], 0, memory_order_relaxed);
        atomic_store_explicit(&r[4], 0, memory_order_relaxed);
        atomic_store_explicit(&r[5], 0, memory_order_relaxed);
        atomic_store_explicit(&r[6], 0, memory_order_relaxed);
        atomic_store_explicit(&r[7], 0, memory_order_relaxed);
    }
}

void
rl2_hll_clear_sums(rl2_hll_t *h)
{
    atomic_store_explicit(&h->deficit, 0, memory_order_relaxed);
    atomic_store_explicit(&h->nonzero, 0, memory_order_relaxed);
}

void
rl2_hll_clear(rl2_hll_t *h)
{
    rl2_hll_clear_part(h, 0, RL2_HLL_REGS);
    rl2_hll_clear_sums(h);
}

/* ---- as a Redis HyperLogLog ---------------------------------------- */

/* From the registers themselves, not the kept sums: Redis recomputes its
 * own estimate from what it is given (the header marks it stale). */
static uint8_t
rl2_hll_redis_rank(const rl2_hll_t *h, unsigned i)
{
    uint8_t r =
        atomic_load_explicit(&((rl2_hll_t *)h)->reg[i], memory_order_relaxed);

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
