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

#endif /* RL2_HASH_H */
