/*
 * base_internal.h -- what the base folder gives the rest of the core and
 * not libratelimit2-dev (private to the core): alert state and sending,
 * the short sleep, SipHash and digests, status names, percent-decoding.
 *
 *   alert.c               syslog alerts: line format, per-kind rate limit
 *                         in shared memory, sending
 *   buf.h                 a bounded string builder for the hot path
 *   clock.c               the two clocks of a request, rl2_mono_us,
 *                         rl2_sleep_ms
 *   futex.c               sleeping on a word until it changes (futex)
 *   hash.c                SipHash and the digests built on it
 *   sha256.c, sha256.h    SHA-256 of a short message, in hex
 *   shm_obj.c,            small named shared memory objects: create,
 *   shm_obj_internal.h    attach, validate, unlink
 *   status.c              the error buffer and the names of status codes
 *   base_internal.h       this file
 */
#ifndef RL2_BASE_INTERNAL_H
#define RL2_BASE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit2/alert.h"
#include "ratelimit2/clock.h"
#include "ratelimit2/hash.h"
#include "ratelimit2/status.h"

/* ---- percent-decoding: one reading for paths, queries, keys ---- */

static inline int
rl2_hex_digit(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20; /* ASCII lower case */
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The byte "%XY" at p stands for (0..255), or -1 when p does not start
 * one within its `left` bytes.  On a NUL-terminated string `left` may be
 * 3: a NUL ends the test before the byte after it is read.  Callers
 * decide what %00 means to them (a path or key keeps it as it is). */
static inline int
rl2_pct_byte(const char *p, size_t left)
{
    int hi, lo;

    if (left < 3 || p[0] != '%' || (hi = rl2_hex_digit((unsigned char)p[1])) < 0
        || (lo = rl2_hex_digit((unsigned char)p[2])) < 0) {
        return -1;
    }
    return hi * 16 + lo;
}

/* ---- beside ratelimit2/alert.h (not installed) ---- */

void rl2_alert_conf_default(rl2_alert_conf_t *conf);

/* Validate conf, copy what it points to, and open (or create) the shared
 * state.  On success *out is owned by the caller, freed by
 * rl2_alert_close().  Opens no socket and never calls openlog(). */
rl2_status_t rl2_alert_open(const rl2_alert_conf_t *conf, rl2_alert_t **out,
                            rl2_err_t *err);
void         rl2_alert_close(rl2_alert_t *alert);
rl2_status_t rl2_alert_unlink(const char *shm_name, rl2_err_t *err);

/* Rate-limited: send this kind's line if the kind's interval has passed
 * since its last line (in any process), else count it as suppressed.
 * *sent (may be NULL) says which.  alert may be NULL (alerts off): a
 * no-op.  Safe from any thread; never blocks (a full socket queue is a
 * send failure).  A line that could not be sent is counted as suppressed
 * too, and RL2_ERR_SYS says why. */
rl2_status_t rl2_alert_send(rl2_alert_t *alert, rl2_alert_kind_t kind,
                            const rl2_alert_field_t *fields, size_t n,
                            int *sent, rl2_err_t *err);

/* Not rate-limited: for kinds whose caller limits them itself (such as
 * one line per client per interval), with the caller's suppressed count
 * (0: none). */
rl2_status_t rl2_alert_emit(rl2_alert_t *alert, rl2_alert_kind_t kind,
                            const rl2_alert_field_t *fields, size_t n,
                            uint64_t suppressed, rl2_err_t *err);

/* The message part only ("ratelimit2: event=..."), into buf of len bytes
 * (NUL-terminated); returns its length.  For front ends that also write
 * the line to their own log, and for tests. */
size_t rl2_alert_format(char *buf, size_t len, rl2_alert_kind_t kind,
                        const rl2_alert_field_t *fields, size_t n,
                        uint64_t suppressed);

/* Lines the socket refused (no syslog daemon, queue full), across the
 * processes sharing the state: callers that cannot report a failed alert
 * anywhere else leave it to this count (for metrics). */
uint64_t rl2_alert_failures(const rl2_alert_t *alert);

/* "redis_down", ...; NULL for an unknown kind. */
const char *rl2_alert_kind_name(rl2_alert_kind_t kind);

/* ---- beside ratelimit2/clock.h (not installed) ---- */

/* Sleep ms milliseconds (a signal only cuts the wait short): for the
 * core's short waits, never to delay a request as a way of limiting. */
void rl2_sleep_ms(int64_t ms);

/* ---- futex.c: sleeping on a word until another thread changes it ---- */

/* Sleep while *word holds seen, until woken, a signal, or deadline_us (on
 * rl2_mono_us's clock; negative: none).  ETIMEDOUT once the deadline has
 * passed (a word the kernel refuses too: it is then not slept on),
 * otherwise 0: the caller looks at the word again either way.
 * shared: the word is in memory shared between processes, and may be
 * woken from another. */
int rl2_futex_wait(_Atomic uint32_t *word, uint32_t seen, int64_t deadline_us,
                   int shared);
/* Wake up to n sleepers on word (INT_MAX: all).  Names only the address:
 * the word may be gone by then (a waiter that left meanwhile), and a word
 * reused since only wakes its new sleeper early. */
void rl2_futex_wake(_Atomic uint32_t *word, int n, int shared);

/* ---- beside ratelimit2/hash.h (not installed) ---- */

uint64_t rl2_siphash(const rl2_hash_key_t *key, const void *data, size_t len);

/* SipHash-2-4 with 128-bit output, for tests against the reference
 * vectors (storage digests run the same code with 1-3 rounds). */
void rl2_siphash128_24(const rl2_hash_key_t *key, const void *data, size_t len,
                       uint64_t out[2]);

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

/* ---- beside ratelimit2/status.h (not installed) ---- */

const char *rl2_status_str(rl2_status_t status);

/* "daemon", "user", "local0".."local7", "auth", "authpriv" -> LOG_*. */
rl2_status_t rl2_alert_facility_parse(const char *text, int *facility,
                                      rl2_err_t *err);

#endif /* RL2_BASE_INTERNAL_H */
