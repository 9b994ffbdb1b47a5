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
 * The sketch keeps the estimator's two sums as it goes (the sum of
 * 2^-rank over its registers, as a deficit from all-zero, and how many
 * registers are above zero), updated by the rare write that raises a
 * register: an estimate reads two words instead of 16 KiB, so the
 * upkeep that ends a minute in every cell stays cheap.  All-zero bytes
 * are an empty sketch.
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
#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/hash.h"

#define RL2_HLL_P    14                /* index bits */
#define RL2_HLL_REGS (1u << RL2_HLL_P) /* registers, one byte each */

/* The sum's fixed point: a register of rank r adds 2^(40 - r) to
 * 2^-r's sum (ranks above 40 add nothing: at most 2^-27 of it). */
#define RL2_HLL_Q 40

typedef struct {
    _Atomic uint64_t deficit; /* sum over registers of 2^40 - 2^(40 - rank):
                                 sum(2^-rank) = regs - deficit / 2^40 */
    _Atomic uint32_t nonzero; /* registers above zero */
    uint32_t         unused;
    _Atomic uint8_t  reg[RL2_HLL_REGS];
} rl2_hll_t;

/* Raise register i to rank (out of line: rare). */
void rl2_hll_raise(rl2_hll_t *h, unsigned i, uint8_t rank);

/* The register and rank of a digest. */
static inline unsigned
rl2_hll_index(const rl2_digest_t *d)
{
    return (unsigned)(d->lo & (RL2_HLL_REGS - 1));
}

static inline uint8_t
rl2_hll_rank(const rl2_digest_t *d)
{
    /* Leading zeros + 1, at most 64 (| 1: no test for a zero half, which
     * has odds of 2^-64). */
    return (uint8_t)(__builtin_clzll(d->hi | 1) + 1);
}

/* Count digest d into h (any number of processes at once). */
static inline void
rl2_hll_add(rl2_hll_t *h, const rl2_digest_t *d)
{
    unsigned i = rl2_hll_index(d);
    uint8_t  rank = rl2_hll_rank(d);

    if (rank > atomic_load_explicit(&h->reg[i], memory_order_relaxed)) {
        rl2_hll_raise(h, i, rank);
    }
}

/* The estimated number of distinct digests added since the last clear:
 * the standard estimator, linear counting below 2.5 x the registers. */
uint32_t rl2_hll_estimate(const rl2_hll_t *h);

/* Every register to zero (writers may go on meanwhile: what they add
 * during the clear may stay or go, and the sums be off by as much). */
void rl2_hll_clear(rl2_hll_t *h);

/* The sums to those of an empty sketch, the registers left as they are:
 * for a sketch no one writes whose registers are cleared later, a part
 * at a time (rl2_hll_clear_part). */
void rl2_hll_clear_sums(rl2_hll_t *h);

/* Registers [from, from + n) to zero; from and n multiples of 8. */
void rl2_hll_clear_part(rl2_hll_t *h, unsigned from, unsigned n);

/* ---- as a Redis HyperLogLog (the fleet's series, usage_redis.h) ----
 *
 * Redis keeps the same 2^14 registers (6 bits each, ranks up to 51: the
 * 50 bits its hash leaves, + 1), behind a 16-byte header: "HYLL", the
 * encoding (0 dense, 1 sparse), 3 unused bytes, and 8 bytes of cached
 * cardinality whose top bit set means "not computed".  A sketch written
 * this way is a string PFMERGE and PFCOUNT accept; ranks above 51 (odds
 * of 2^-51 per client) are written as 51.  Both encodings read the
 * registers, never the kept sums (Redis computes its own estimate), so
 * a sketch whose sums were reset before its registers
 * (rl2_hll_clear_sums) must be written before any part is cleared. */
#define RL2_HLL_REDIS_HDR   16
#define RL2_HLL_REDIS_RANK  51
#define RL2_HLL_REDIS_DENSE (RL2_HLL_REDIS_HDR + RL2_HLL_REGS * 6 / 8)

/* The dense encoding: RL2_HLL_REDIS_DENSE bytes into out; the registers
 * packed little-endian, 6 bits each, register i at bit 6 i. */
void rl2_hll_redis_dense(const rl2_hll_t *h, uint8_t *out);

/* The sparse encoding (runs of zeros and of equal small ranks, as Redis
 * stores a sketch with few clients) into out (cap bytes): its length, or
 * 0 when it needs more than cap or a rank above 32 (then use the
 * dense one). */
size_t rl2_hll_redis_sparse(const rl2_hll_t *h, uint8_t *out, size_t cap);

#endif /* RL2_HLL_H */
