/*
 * sha256.h -- SHA-256 (FIPS 180-4), private to the core.
 *
 * Only for identifiers a third party must compute too: the tier source
 * looks API keys up by the hex SHA-256 a billing system can produce with
 * any standard library (`printf %s KEY | sha256sum`).  Storage keys use
 * SipHash (hash.h), which is faster and keyed.
 */
#ifndef RL2_SHA256_H
#define RL2_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* The digest of data[0..len) as 64 lower-case hex digits and a NUL. */
void rl2_sha256_hex(const void *data, size_t len, char out[65]);

#endif /* RL2_SHA256_H */
