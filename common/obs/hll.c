/*
 * hll.c -- estimating and clearing a HyperLogLog sketch (hll.h).  Called
 * by the metrics upkeep once a minute per cell in use and by readers,
 * never by a request: floating point is fine here.  No libm: the one
 * logarithm needed is a short series, so the front ends link as before.
 */
#include <stddef.h>

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
