/*
 * hash.c -- SipHash and the digests built on it.
 *
 * Owns the hash functions behind storage keys (rl2_digest: SipHash-1-3,
 * 128-bit output), identifier hashing (rl2_hash_id) and secret-to-key
 * derivation (SipHash-2-4, 64-bit).  SipHash is written from Aumasson and
 * Bernstein's description: c compression rounds per 8-byte little-endian
 * word, d finalisation rounds; one code path serves every variant, and the
 * 2-4 variants are checked against the reference vectors.  The result does
 * not depend on host byte order or alignment.
 */
#include <endian.h>
#include <string.h>

#include "ratelimit2/hash.h"
#include "base/base_internal.h"

/* Fixed, public key: a storage digest is an index, not a secret (the
 * local zone's index rehashes it under a per-zone random seed). */
static const rl2_hash_key_t digest_key_hi = {
    { 0x72, 0x6c, 0x32, 0x2d, 0x64, 0x69, 0x67, 0x65, 0x73, 0x74, 0x2d, 0x68,
      0x69, 0x21, 0x9e, 0x37 }
};

/* Keys for deriving a hash key from a secret string. */
static const rl2_hash_key_t derive_key_a = {
    { 0x72, 0x6c, 0x32, 0x2d, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x2d, 0x61,
      0x85, 0xeb, 0xca, 0x6b }
};
static const rl2_hash_key_t derive_key_b = {
    { 0x72, 0x6c, 0x32, 0x2d, 0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x2d, 0x62,
      0xc2, 0xb2, 0xae, 0x35 }
};

static inline uint64_t
rl2_rotl64(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

/* memcpy + le64toh: unaligned input and big-endian hosts give the same
 * answer as the reference implementation, in one load on x86. */
static uint64_t
rl2_load_le64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

static void
rl2_store_le64(uint8_t *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

/* One SipRound on four local words, so that the compiler keeps them in
 * registers (every storage key is hashed once per request). */
#define SIP_ROUND(v0, v1, v2, v3) \
    do { \
        v0 += v1; \
        v1 = rl2_rotl64(v1, 13); \
        v1 ^= v0; \
        v0 = rl2_rotl64(v0, 32); \
        v2 += v3; \
        v3 = rl2_rotl64(v3, 16); \
        v3 ^= v2; \
        v0 += v3; \
        v3 = rl2_rotl64(v3, 21); \
        v3 ^= v0; \
        v2 += v1; \
        v1 = rl2_rotl64(v1, 17); \
        v1 ^= v2; \
        v2 = rl2_rotl64(v2, 32); \
    } while (0)

/* The last word: the remaining bytes (little-endian) and, in the top
 * byte, the message length mod 256. */
static uint64_t
rl2_sip_tail(const uint8_t *in, size_t len)
{
    uint64_t b = (uint64_t)len << 56;

    switch (len & 7) {
    case 7:
        b |= (uint64_t)in[6] << 48; /* fall through */
    case 6:
        b |= (uint64_t)in[5] << 40; /* fall through */
    case 5:
        b |= (uint64_t)in[4] << 32; /* fall through */
    case 4:
        b |= (uint64_t)in[3] << 24; /* fall through */
    case 3:
        b |= (uint64_t)in[2] << 16; /* fall through */
    case 2:
        b |= (uint64_t)in[1] << 8; /* fall through */
    case 1:
        b |= (uint64_t)in[0];
        break;
    default:
        break;
    }
    return b;
}

/* SipHash-c-d over data: c rounds per 8-byte word, d finalisation
 * rounds; with out128 != NULL, the 128-bit variant (the reference's
 * 0xee/0xdd finalisation) writes both halves there.  Inlined into each
 * caller with constant c and d, so every variant is straight-line. */
static inline __attribute__((always_inline)) uint64_t
rl2_sip_hash(const rl2_hash_key_t *key, const void *data, size_t len,
             uint64_t *out128, int c, int d)
{
    const uint8_t *in = data;
    uint64_t       k0 = rl2_load_le64(key->k);
    uint64_t       k1 = rl2_load_le64(key->k + 8);
    /* "somepseudorandomlygeneratedbytes", the paper's initialisation. */
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL;
    uint64_t v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL;
    uint64_t v3 = k1 ^ 0x7465646279746573ULL;
    size_t   whole = len - len % 8;
    uint64_t m;
    int      i;

    if (out128 != NULL) {
        v1 ^= 0xee;
    }
    for (size_t off = 0; off <= whole; off += 8) {
        m = off < whole ? rl2_load_le64(in + off)
                        : rl2_sip_tail(in + whole, len);
        v3 ^= m;
#pragma GCC unroll 2
        for (i = 0; i < c; i++) {
            SIP_ROUND(v0, v1, v2, v3);
        }
        v0 ^= m;
    }
    v2 ^= out128 != NULL ? 0xee : 0xff;
#pragma GCC unroll 4
    for (i = 0; i < d; i++) {
        SIP_ROUND(v0, v1, v2, v3);
    }
    if (out128 == NULL) {
        return v0 ^ v1 ^ v2 ^ v3;
    }
    out128[0] = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
#pragma GCC unroll 4
    for (i = 0; i < d; i++) {
        SIP_ROUND(v0, v1, v2, v3);
    }
    out128[1] = v0 ^ v1 ^ v2 ^ v3;
    return out128[0];
}

uint64_t
rl2_siphash(const rl2_hash_key_t *key, const void *data, size_t len)
{
    return rl2_sip_hash(key, data, len, NULL, 2, 4);
}

/* Tests only: the 128-bit SipHash-2-4, to check the shared code against
 * the reference vectors. */
void
rl2_siphash128_24(const rl2_hash_key_t *key, const void *data, size_t len,
                  uint64_t out[2])
{
    rl2_sip_hash(key, data, len, out, 2, 4);
}

/* Storage digests use SipHash-1-3-128 (the rounds Python's and Rust's
 * hash tables use against flooding): every key is hashed once per
 * request, and the digest is an identity, not a secret.  Ids and key
 * derivation keep SipHash-2-4. */
rl2_digest_t
rl2_digest(const void *data, size_t len)
{
    uint64_t     out[2];
    rl2_digest_t d;

    rl2_sip_hash(&digest_key_hi, data, len, out, 1, 3);
    d.hi = out[0];
    d.lo = out[1];
    return d;
}

rl2_digest_t
rl2_digest_keyed(const rl2_hash_key_t *key, const void *data, size_t len)
{
    uint64_t     out[2];
    rl2_digest_t d;

    rl2_sip_hash(key, data, len, out, 1, 3);
    d.hi = out[0];
    d.lo = out[1];
    return d;
}

void
rl2_hash_id(const rl2_hash_key_t *key, const char *id, char out[17])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t          h = rl2_siphash(key, id, strlen(id));
    int               i;

    /* Most significant digit first, so the text reads as the number. */
    for (i = 15; i >= 0; i--) {
        out[i] = hex[h & 0xf];
        h >>= 4;
    }
    out[16] = '\0';
}

void
rl2_hash_key_from_secret(const char *secret, rl2_hash_key_t *key)
{
    size_t      len = secret != NULL ? strlen(secret) : 0;
    const char *s = secret != NULL ? secret : "";

    /* Two independent 64-bit hashes make the 128-bit key; every byte of
     * the secret affects every byte of the key. */
    rl2_store_le64(key->k, rl2_siphash(&derive_key_a, s, len));
    rl2_store_le64(key->k + 8, rl2_siphash(&derive_key_b, s, len));
}
