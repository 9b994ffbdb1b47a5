/*
 * hash.h -- keyed hashing for storage keys and for identifiers.
 *
 * Storage keys are reduced to a 128-bit digest, so a zone entry has a fixed
 * size whatever the key's length.  User ids and API keys are hashed with a
 * site secret (SipHash-2-4) before they become part of a storage key or
 * reach a log, so neither the zone, Redis nor syslog ever holds them.
 */
#ifndef RL2_HASH_H
#define RL2_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t hi;
    uint64_t lo;
} rl2_digest_t;

/* 16-byte SipHash key. */
typedef struct {
    uint8_t k[16];
} rl2_hash_key_t;

uint64_t rl2_siphash(const rl2_hash_key_t *key, const void *data, size_t len);

/* SipHash-2-4 with 128-bit output, for tests against the reference
 * vectors (storage digests run the same code with 1-3 rounds). */
void rl2_siphash128_24(const rl2_hash_key_t *key, const void *data,
                       size_t len, uint64_t out[2]);

/* 128-bit digest of a storage key (fixed, public hash keys: a digest is an
 * index, not a secret). */
rl2_digest_t rl2_digest(const void *data, size_t len);

/* 128-bit digest of data under a key: storage keys are digested as
 * (limit's key, client part), with the limit's key derived once at load
 * time from its identity, so a request hashes only its client part. */
rl2_digest_t rl2_digest_keyed(const rl2_hash_key_t *key, const void *data,
                              size_t len);

/* Write the hex form of the keyed hash of id (16 hex digits + NUL) into
 * out[17]: the form an identifier takes in keys and logs. */
void rl2_hash_id(const rl2_hash_key_t *key, const char *id, char out[17]);

/* Derive a hash key from an arbitrary secret string. */
void rl2_hash_key_from_secret(const char *secret, rl2_hash_key_t *key);

#endif /* RL2_HASH_H */
