/*
 * hll.h -- a HyperLogLog sketch of distinct clients, in shared memory
 * (private to the core): the usage series' distinct-client counts
 * (usage.h).
 *
 * 2^14 one-byte registers (16 KiB): the standard error of the estimate
 * is 1.04 / sqrt(2^14), about 0.8%, so 2% is two and a half of them.
 * The registers are relaxed atomics written by every process of the
 * host at once; an addition reads one register and writes it only when
 * the new rank is larger (rare once the sketch has warmed up), so a
 * sketch costs a request a load and a compare.
 *
 * The bits come from a digest the request already has (the layer's key,
 * SipHash): no hashing is added for the sketch.  The index takes the low
 * bits of one half, the rank the leading zeros of the other half, so the
 * rank never runs out of bits (no large-range correction needed: ranks
 * go up to 64).
 */
#ifndef RL2_HLL_H
#define RL2_HLL_H

#include <stdatomic.h>
#include <stdint.h>

#include "ratelimit2/hash.h"

#define RL2_HLL_P    14                /* index bits */
#define RL2_HLL_REGS (1u << RL2_HLL_P) /* registers, one byte each */

typedef struct {
    _Atomic uint8_t reg[RL2_HLL_REGS];
} rl2_hll_t;

/* Count digest d into h (any number of processes at once).  A lost race
 * between two writers of one register keeps the smaller of two new
 * ranks: the estimate can only be a hair low, never high. */
static inline void
rl2_hll_add(rl2_hll_t *h, const rl2_digest_t *d)
{
    _Atomic uint8_t *r = &h->reg[d->lo & (RL2_HLL_REGS - 1)];
    /* The rank: leading zeros + 1, at most 64 (| 1: no test for a zero
     * half, which has odds of 2^-64). */
    uint8_t rank = (uint8_t)(__builtin_clzll(d->hi | 1) + 1);

    if (rank > atomic_load_explicit(r, memory_order_relaxed)) {
        atomic_store_explicit(r, rank, memory_order_relaxed);
    }
}

/* The estimated number of distinct digests added since the last clear:
 * the standard estimator, linear counting below 2.5 x the registers. */
uint32_t rl2_hll_estimate(const rl2_hll_t *h);

/* The estimate of the union of a and b (each register's larger rank),
 * neither changed. */
uint32_t rl2_hll_estimate_union(const rl2_hll_t *a, const rl2_hll_t *b);

/* from's registers into into (the larger rank of each). */
void rl2_hll_merge(rl2_hll_t *into, const rl2_hll_t *from);

/* Every register to zero (writers may go on meanwhile: what they add
 * during the clear may stay or go). */
void rl2_hll_clear(rl2_hll_t *h);

#endif /* RL2_HLL_H */
