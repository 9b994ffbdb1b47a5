/*
 * sha256.c -- SHA-256 of a short message, in hex (sha256.h).
 *
 * Straight from the FIPS 180-4 description: pad to a multiple of 64
 * bytes with 0x80, zeros and the bit length, then 64 rounds per block.
 * Called at most once per request, on a cache miss of the tier source.
 */
#include <string.h>

#include "sha256.h"

static const uint32_t rl2_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
    0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
    0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
    0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
    0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

static uint32_t
rl2_ror(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

static void
rl2_sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], s[8];

    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16
               | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 =
            rl2_ror(w[i - 15], 7) ^ rl2_ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 =
            rl2_ror(w[i - 2], 17) ^ rl2_ror(w[i - 2], 19) ^ (w[i - 2] >> 10);

        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    memcpy(s, h, sizeof(s));
    for (int i = 0; i < 64; i++) {
        uint32_t e1 = rl2_ror(s[4], 6) ^ rl2_ror(s[4], 11) ^ rl2_ror(s[4], 25);
        uint32_t ch = (s[4] & s[5]) ^ (~s[4] & s[6]);
        uint32_t t1 = s[7] + e1 + ch + rl2_k[i] + w[i];
        uint32_t a0 = rl2_ror(s[0], 2) ^ rl2_ror(s[0], 13) ^ rl2_ror(s[0], 22);
        uint32_t maj = (s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]);

        memmove(s + 1, s, 7 * sizeof(s[0]));
        s[4] += t1;
        s[0] = t1 + a0 + maj;
    }
    for (int i = 0; i < 8; i++) {
        h[i] += s[i];
    }
}

void
rl2_sha256_hex(const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    uint32_t          h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    const uint8_t    *p = data;
    uint8_t           tail[128];
    size_t            rest = len % 64, n_tail = rest < 56 ? 64 : 128;
    uint64_t          bits = (uint64_t)len * 8;

    for (size_t off = 0; off + 64 <= len; off += 64) {
        rl2_sha256_block(h, p + off);
    }
    memset(tail, 0, sizeof(tail));
    if (rest > 0) {
        memcpy(tail, p + len - rest, rest);
    }
    tail[rest] = 0x80;
    for (int i = 0; i < 8; i++) {
        tail[n_tail - 1 - i] = (uint8_t)(bits >> (8 * i));
    }
    for (size_t off = 0; off < n_tail; off += 64) {
        rl2_sha256_block(h, tail + off);
    }
    for (int i = 0; i < 32; i++) {
        uint8_t b = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));

        out[2 * i] = hex[b >> 4];
        out[2 * i + 1] = hex[b & 15];
    }
    out[64] = '\0';
}
