/*
 * circuit.c -- the circuit breaker in shared memory, the failover modes
 * and local_share (see failover.h for the behaviour and its edge cases;
 * the store that uses them is store_failover.c).
 *
 * Owns the circuit's shared state and its transitions, the election of
 * the probe, and the parsing and arithmetic of local_share.  The same
 * shm object holds the queue of refunds owed to Redis (refund_queue.c
 * works on it).  The circuit
 * is lock-free: every transition is one compare-and-swap on the state
 * word, so it happens once however many processes race for it, and no
 * lock is ever held while Redis is asked anything.  A closed circuit,
 * the case of every request while Redis is healthy, costs one atomic
 * load.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ratelimit2/failover.h"
#include "base/shm_obj_internal.h"
#include "store/store_internal.h"

#define CIRCUIT_MAGIC   0x43324c52u /* "RL2C" read little-endian */
#define CIRCUIT_VERSION 2u          /* 2: the refund queue */

/* The shared part; all zero bytes is a closed circuit with no history. */
typedef struct {
    rl2_shm_hdr_t      hdr;
    _Atomic uint32_t   state;         /* rl2_circuit_state_t */
    _Atomic uint32_t   failures;      /* consecutive, while closed */
    _Atomic int64_t    next_probe_us; /* monotonic µs */
    _Atomic int64_t    opened_us;     /* monotonic µs */
    _Atomic uint64_t   opens;
    _Atomic uint64_t   probes;
    _Atomic uint64_t   probe_failures;
    rl2_refund_queue_t refunds;
} circuit_shm_t;

struct rl2_circuit {
    circuit_shm_t     *shm;
    rl2_circuit_conf_t conf;
    int64_t            probe_interval_us;
    int64_t            slow_us; /* 0: off */
};

/* ---- modes and local_share ------------------------------------------- */

static const char *const mode_names[] = { "local", "open", "closed" };

const char *
rl2_failover_mode_name(rl2_failover_mode_t mode)
{
    return (unsigned)mode < 3 ? mode_names[mode] : "unknown";
}

rl2_status_t
rl2_failover_mode_parse(const char *text, rl2_failover_mode_t *out,
                        rl2_err_t *err)
{
    for (unsigned i = 0; i < 3; i++) {
        if (text != NULL && strcmp(text, mode_names[i]) == 0) {
            *out = (rl2_failover_mode_t)i;
            return RL2_OK;
        }
    }
    return rl2_err_set(err, RL2_ERR_CONFIG,
                       "unknown failover mode "
                       "\"%.40s\" (local, open or closed)",
                       text != NULL ? text : "");
}

rl2_status_t
rl2_failover_share_parse(const char *text, uint32_t *ppm, rl2_err_t *err)
{
    const char *p = text != NULL ? text : "";
    uint64_t    whole = 0, frac = 0;
    int         digits = 0, places = 0;

    for (; *p >= '0' && *p <= '9' && whole <= 1; p++, digits++) {
        whole = whole * 10 + (uint64_t)(*p - '0');
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++, digits++) {
            if (places == 6 && *p != '0') {
                return rl2_err_set(err, RL2_ERR_CONFIG,
                                   "local_share "
                                   "\"%.40s\": at most 6 decimal places",
                                   text);
            }
            if (places < 6) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                places++;
            }
        }
    }
    for (; places < 6; places++) {
        frac *= 10;
    }
    if (*p != '\0' || digits == 0 || whole > 1
        || whole * RL2_SHARE_ONE + frac > RL2_SHARE_ONE
        || whole * RL2_SHARE_ONE + frac < RL2_SHARE_MIN) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "local_share \"%.40s\" "
                           "must be a decimal number from 0.001 to 1",
                           text != NULL ? text : "");
    }
    *ppm = (uint32_t)(whole * RL2_SHARE_ONE + frac);
    return RL2_OK;
}

int64_t
rl2_failover_local_count(int64_t count, uint32_t share_ppm)
{
    int64_t q, r, v;

    share_ppm = share_ppm < RL2_SHARE_MIN   ? RL2_SHARE_MIN
                : share_ppm > RL2_SHARE_ONE ? RL2_SHARE_ONE
                                            : share_ppm;
    if (count < 1) {
        return 1;
    }
    /* floor(count x ppm / 10^6) without a 64-bit overflow: with
     * count = q x 10^6 + r, q x ppm <= count and r x ppm < 10^12. */
    q = count / RL2_SHARE_ONE;
    r = count % RL2_SHARE_ONE;
    v = q * share_ppm + r * share_ppm / RL2_SHARE_ONE;
    return v < 1 ? 1 : v;
}

/* ---- the circuit ----------------------------------------------------- */

void
rl2_circuit_conf_default(rl2_circuit_conf_t *conf)
{
    conf->failures_to_open = 1;
    conf->probe_interval_ms = 1000;
    conf->slow_ms = 0;
}

rl2_status_t
rl2_circuit_open(const char *name, const rl2_circuit_conf_t *conf,
                 unsigned mode, rl2_circuit_t **out, rl2_err_t *err)
{
    /* A day bounds both: an interval longer than that is a typo. */
    const int64_t  day_ms = 86400000;
    rl2_circuit_t *c;
    rl2_status_t   st;
    void          *map;

    *out = NULL;
    if (conf->failures_to_open < 1 || conf->failures_to_open > 1000000
        || conf->probe_interval_ms < 1 || conf->probe_interval_ms > day_ms
        || conf->slow_ms < 0 || conf->slow_ms > day_ms) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "circuit %s: failures "
                           "1..1000000, probe interval 1..%lld ms and slow "
                           "0..%lld ms",
                           name != NULL ? name : "", (long long)day_ms,
                           (long long)day_ms);
    }
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "circuit: out of memory");
    }
    st = rl2_shm_obj_open(name, sizeof(circuit_shm_t), CIRCUIT_MAGIC,
                          CIRCUIT_VERSION, mode, &map, err);
    if (st != RL2_OK) {
        free(c);
        return st;
    }
    c->shm = map;
    c->conf = *conf;
    c->probe_interval_us = conf->probe_interval_ms * 1000;
    c->slow_us = conf->slow_ms * 1000;
    *out = c;
    return RL2_OK;
}

void
rl2_circuit_close(rl2_circuit_t *c)
{
    if (c != NULL) {
        rl2_shm_obj_close(c->shm, sizeof(circuit_shm_t));
        free(c);
    }
}

rl2_status_t
rl2_circuit_unlink(const char *name, rl2_err_t *err)
{
    return rl2_shm_obj_unlink(name, err);
}

static int
rl2_circuit_state_cas(circuit_shm_t *s, uint32_t from, uint32_t to)
{
    return atomic_compare_exchange_strong_explicit(
        &s->state, &from, to, memory_order_acq_rel, memory_order_acquire);
}

rl2_route_t
rl2_circuit_route(rl2_circuit_t *c, int64_t now_us)
{
    circuit_shm_t *s = c->shm;
    int64_t        next;

    if (atomic_load_explicit(&s->state, memory_order_acquire)
        == RL2_CIRCUIT_CLOSED) {
        return RL2_ROUTE_PRIMARY;
    }
    next = atomic_load_explicit(&s->next_probe_us, memory_order_acquire);
    if (now_us < next) {
        return RL2_ROUTE_FALLBACK;
    }
    /* The election: of all processes that saw this `next`, exactly one
     * moves it forward, and that one probes.  No lock is held while it
     * does, and one that dies probing only costs an interval. */
    if (!atomic_compare_exchange_strong_explicit(
            &s->next_probe_us, &next, now_us + c->probe_interval_us,
            memory_order_acq_rel, memory_order_relaxed)) {
        return RL2_ROUTE_FALLBACK;
    }
    rl2_circuit_state_cas(s, RL2_CIRCUIT_OPEN, RL2_CIRCUIT_HALF_OPEN);
    atomic_fetch_add_explicit(&s->probes, 1, memory_order_relaxed);
    return RL2_ROUTE_PROBE;
}

int
rl2_circuit_success(rl2_circuit_t *c, rl2_route_t route, int64_t now_us,
                    int64_t *down_us)
{
    circuit_shm_t *s = c->shm;

    if (route == RL2_ROUTE_PROBE) {
        atomic_store_explicit(&s->failures, 0, memory_order_relaxed);
        /* OPEN too: a slow probe may answer after a later probe failed. */
        if (rl2_circuit_state_cas(s, RL2_CIRCUIT_HALF_OPEN, RL2_CIRCUIT_CLOSED)
            || rl2_circuit_state_cas(s, RL2_CIRCUIT_OPEN, RL2_CIRCUIT_CLOSED)) {
            if (down_us != NULL) {
                *down_us =
                    now_us
                    - atomic_load_explicit(&s->opened_us, memory_order_relaxed);
            }
            return 1;
        }
        return 0;
    }
    /* Read before writing: a healthy server's requests must not all
     * write to one shared cache line. */
    if (route == RL2_ROUTE_PRIMARY
        && atomic_load_explicit(&s->failures, memory_order_relaxed) != 0
        && atomic_load_explicit(&s->state, memory_order_relaxed)
               == RL2_CIRCUIT_CLOSED) {
        atomic_store_explicit(&s->failures, 0, memory_order_relaxed);
    }
    return 0;
}

int
rl2_circuit_failure(rl2_circuit_t *c, rl2_route_t route, int64_t now_us)
{
    circuit_shm_t *s = c->shm;
    uint32_t       n;

    if (route == RL2_ROUTE_PROBE) {
        atomic_fetch_add_explicit(&s->probe_failures, 1, memory_order_relaxed);
        /* The next probe time was set when this one was elected. */
        if (rl2_circuit_state_cas(s, RL2_CIRCUIT_HALF_OPEN, RL2_CIRCUIT_OPEN)
            || atomic_load_explicit(&s->state, memory_order_acquire)
                   != RL2_CIRCUIT_CLOSED) {
            return 0;
        }
        /* Closed meanwhile by another probe: an ordinary failure. */
    }
    if (atomic_load_explicit(&s->state, memory_order_acquire)
        != RL2_CIRCUIT_CLOSED) {
        return 0; /* a request sent before the circuit opened */
    }
    n = atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed) + 1;
    if (n < c->conf.failures_to_open) {
        return 0;
    }
    /* Before the state, so that no process sees the circuit open with the
     * probe time of an earlier outage and probes at once. */
    atomic_store_explicit(&s->next_probe_us, now_us + c->probe_interval_us,
                          memory_order_release);
    if (!rl2_circuit_state_cas(s, RL2_CIRCUIT_CLOSED, RL2_CIRCUIT_OPEN)) {
        return 0;
    }
    atomic_store_explicit(&s->opened_us, now_us, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->opens, 1, memory_order_relaxed);
    return 1;
}

rl2_refund_queue_t *
rl2_circuit_refunds(rl2_circuit_t *c)
{
    return &c->shm->refunds;
}

rl2_circuit_state_t
rl2_circuit_state(const rl2_circuit_t *c)
{
    return (rl2_circuit_state_t)atomic_load_explicit(&c->shm->state,
                                                     memory_order_acquire);
}

const rl2_circuit_conf_t *
rl2_circuit_conf(const rl2_circuit_t *c)
{
    return &c->conf;
}

void
rl2_circuit_stats(const rl2_circuit_t *c, rl2_circuit_stats_t *out)
{
    circuit_shm_t *s = c->shm;

    out->state = rl2_circuit_state(c);
    out->failures = atomic_load(&s->failures);
    out->opens = atomic_load(&s->opens);
    out->probes = atomic_load(&s->probes);
    out->probe_failures = atomic_load(&s->probe_failures);
    rl2_refunds_stats(&s->refunds, out);
    out->opened_us = atomic_load(&s->opened_us);
    out->next_probe_us = atomic_load(&s->next_probe_us);
}
