/*
 * failover.c -- the failover store: Redis while the circuit is
 * closed, the failover mode while it is open (see failover.h).
 *
 * Owns routing each call through the circuit, the alerts on the
 * transitions this process makes, the local_share scaling, the mark
 * in rl2_layer_t.committed that sends a refund to the store that counted,
 * and when the refunds owed to Redis (refund_queue.c) are queued and
 * replayed.  A closed circuit's admissions never look at that queue: it
 * is replayed by a successful probe and by refunds Redis answers.
 *
 * Scaling costs no allocation: for the local store's call each layer's
 * limit pointer is swapped for a scaled copy on the stack, and its key for
 * a key derived from local_share, then both are put back.  The derived key
 * keeps scaled counters apart from counters written under other limits
 * (another local_share, or the zone used directly before Redis was
 * configured): a sliding_log's ring and an overflow's offset depend on the
 * limit, so state written under one must not be read under another.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/failover.h"
#include "base/base_internal.h"
#include "algo/algo_internal.h"
#include "store/store_internal.h"

typedef struct {
    rl2_store_t         base;
    rl2_store_t        *primary;
    rl2_store_t        *local;
    rl2_circuit_t      *circuit;
    rl2_failover_conf_t conf;
    rl2_hash_key_t      share_key; /* derives the keys of scaled counters */
} rl2_failover_t;

typedef rl2_status_t (*layer_op_t)(rl2_store_t *store, rl2_layer_t *layers,
                                   size_t n, const rl2_clock_t *now,
                                   rl2_err_t *err);

/* ---- alerts on the transitions this process made --------------------- */

/* local_share for people: 500000 -> "0.5", 1000000 -> "1". */
static void
rl2_failover_share_text(uint32_t ppm, char *buf, size_t len)
{
    char frac[16];
    int  places = 6;

    snprintf(frac, sizeof(frac), "%06u", ppm % RL2_SHARE_ONE);
    while (places > 0 && frac[places - 1] == '0') {
        frac[--places] = '\0';
    }
    if (places == 0) {
        snprintf(buf, len, "%u", ppm / RL2_SHARE_ONE);
    }
    else {
        snprintf(buf, len, "%u.%s", ppm / RL2_SHARE_ONE, frac);
    }
}

/* A failed alert is counted by alert.c; the request goes on regardless. */
static void
rl2_failover_alert_opened(rl2_failover_t *f, const char *why)
{
    const rl2_circuit_conf_t *cc = rl2_circuit_conf(f->circuit);
    char                      share[32], probe[24];
    rl2_alert_field_t         down[] = { { "store", f->primary->ops->name },
                                         { "error", why } };
    rl2_alert_field_t         enter[] = { { "mode",
                                            rl2_failover_mode_name(f->conf.mode) },
                                          { "local_share", share },
                                          { "probe_interval_ms", probe } };

    rl2_failover_share_text(f->conf.local_share_ppm, share, sizeof(share));
    snprintf(probe, sizeof(probe), "%" PRId64, cc->probe_interval_ms);
    rl2_alert_send(f->conf.alert, RL2_ALERT_REDIS_DOWN, down, 2, NULL, NULL);
    rl2_alert_send(f->conf.alert, RL2_ALERT_FAILOVER_ENTER, enter,
                   f->conf.mode == RL2_FAILOVER_LOCAL ? 3 : 1, NULL, NULL);
}

static void
rl2_failover_alert_closed(rl2_failover_t *f, int64_t down_us)
{
    char              ms[24];
    rl2_alert_field_t up[] = { { "store", f->primary->ops->name },
                               { "down_ms", ms } };
    rl2_alert_field_t leave[] = {
        { "mode", rl2_failover_mode_name(f->conf.mode) }, { "down_ms", ms }
    };

    snprintf(ms, sizeof(ms), "%" PRId64, down_us > 0 ? down_us / 1000 : 0);
    rl2_alert_send(f->conf.alert, RL2_ALERT_REDIS_UP, up, 2, NULL, NULL);
    rl2_alert_send(f->conf.alert, RL2_ALERT_FAILOVER_LEAVE, leave, 2, NULL,
                   NULL);
}

static void
rl2_failover_report(rl2_failover_t *f, rl2_route_t route, int64_t t,
                    const char *why)
{
    int64_t down_us = 0;

    if (why != NULL) {
        if (rl2_circuit_failure(f->circuit, route, t)) {
            rl2_failover_alert_opened(f, why);
        }
    }
    else if (rl2_circuit_success(f->circuit, route, t, &down_us)) {
        rl2_failover_alert_closed(f, down_us);
    }
}

/* ---- Redis through the circuit ---------------------------------------- */

static void rl2_failover_replay(rl2_failover_t *f, const rl2_clock_t *now);

/* Ask Redis if the circuit lets this call through.  *answered says
 * whether its answer stands; when it does not, the caller answers from
 * the fallback.  Errors other than RL2_ERR_STORE are the caller's (a
 * malformed request), not Redis failing: returned, not counted. */
static rl2_status_t
rl2_failover_try_primary(rl2_failover_t *f, layer_op_t op, rl2_layer_t *layers,
                         size_t n, const rl2_clock_t *now, int *answered,
                         rl2_err_t *err)
{
    int64_t      t0 = f->conf.clock_us(), t1, slow_us;
    rl2_route_t  route = rl2_circuit_route(f->circuit, t0);
    rl2_err_t    perr = { "" };
    rl2_status_t st;
    char         why[64];

    *answered = 0;
    if (route == RL2_ROUTE_FALLBACK) {
        return RL2_OK;
    }
    st = op(f->primary, layers, n, now, &perr);
    t1 = f->conf.clock_us();
    if (st == RL2_ERR_STORE) {
        for (size_t i = 0; i < n; i++) {
            layers[i].committed = 0; /* answered afresh by the fallback */
        }
        rl2_failover_report(f, route, t1, perr.msg);
        return RL2_OK;
    }
    *answered = 1;
    if (st != RL2_OK) {
        return rl2_err_set(err, st, "%s", perr.msg);
    }
    for (size_t i = 0; i < n; i++) {
        if (layers[i].committed) {
            layers[i].committed = RL2_COMMITTED_PRIMARY;
        }
    }
    slow_us = rl2_circuit_conf(f->circuit)->slow_ms * 1000;
    if (slow_us > 0 && t1 - t0 > slow_us) {
        snprintf(why, sizeof(why),
                 "answer took %" PRId64 " ms (slow_ms %" PRId64 ")",
                 (t1 - t0) / 1000, slow_us / 1000);
        rl2_failover_report(f, route, t1, why);
    }
    else {
        rl2_failover_report(f, route, t1, NULL);
        if (route == RL2_ROUTE_PROBE) {
            rl2_failover_replay(f, now); /* Redis is back */
        }
    }
    return RL2_OK;
}

/* ---- the fallbacks ----------------------------------------------------- */

static int64_t
rl2_failover_scale(int64_t count, uint32_t ppm, int64_t cost)
{
    int64_t v = rl2_failover_local_count(count, ppm);
    int64_t floor = count < cost ? count : cost;

    return v > floor ? v : floor;
}

/* Every count of the limit scaled, none below one request's cost (or the
 * request could never pass), none above what it was. */
static void
rl2_failover_scale_limit(const rl2_failover_t *f, const rl2_limit_t *in,
                         rl2_limit_t *out)
{
    uint32_t ppm = f->conf.local_share_ppm;

    *out = *in;
    out->ttl_us = 0; /* other parameters: worked out again */
    out->algo.limit = rl2_failover_scale(in->algo.limit, ppm, in->cost);
    if (in->algo.burst > 0) {
        out->algo.burst = rl2_failover_scale(in->algo.burst, ppm, in->cost);
    }
    out->state_size = rl2_algo_state_size(&out->algo);
    if (in->overflow.limit > 0) {
        out->overflow.limit =
            rl2_failover_scale(in->overflow.limit, ppm, in->cost);
        if (in->overflow.burst > 0) {
            out->overflow.burst =
                rl2_failover_scale(in->overflow.burst, ppm, in->cost);
        }
        out->state_size += rl2_algo_state_size(&out->overflow);
    }
}

static rl2_digest_t
rl2_failover_local_key(const rl2_failover_t *f, rl2_digest_t key)
{
    return rl2_digest_keyed(&f->share_key, &key, sizeof(key));
}

/* The local store answers with every limit scaled by local_share. */
static rl2_status_t
rl2_failover_answer_local(rl2_failover_t *f, layer_op_t op, rl2_layer_t *layers,
                          size_t n, const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_limit_t        scaled[RL2_MAX_LAYERS];
    const rl2_limit_t *limits[RL2_MAX_LAYERS];
    rl2_digest_t       keys[RL2_MAX_LAYERS];
    rl2_status_t       st;

    for (size_t i = 0; i < n; i++) {
        limits[i] = layers[i].limit;
        keys[i] = layers[i].key;
        rl2_failover_scale_limit(f, limits[i], &scaled[i]);
        layers[i].limit = &scaled[i];
        layers[i].key = rl2_failover_local_key(f, keys[i]);
    }
    st = op(f->local, layers, n, now, err);
    for (size_t i = 0; i < n; i++) {
        layers[i].limit = limits[i];
        layers[i].key = keys[i];
        if (layers[i].committed) {
            layers[i].committed = RL2_COMMITTED_FALLBACK;
        }
    }
    return st;
}

/* `open`: everything passes and nothing is counted. */
static void
rl2_failover_answer_open(rl2_layer_t *layers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        rl2_layer_t *l = &layers[i];

        memset(&l->result, 0, sizeof(l->result));
        l->result.allowed = 1;
        l->result.limit = l->limit->algo.limit;
        l->result.remaining = l->limit->algo.limit;
        l->refused = 0;
        l->overflow_used = 0;
        l->committed = 0;
        l->committed_us = 0;
    }
}

static rl2_status_t
rl2_failover_answer_fallback(rl2_failover_t *f, layer_op_t op,
                             rl2_layer_t *layers, size_t n,
                             const rl2_clock_t *now, rl2_err_t *err)
{
    switch (f->conf.mode) {
    case RL2_FAILOVER_OPEN:
        rl2_failover_answer_open(layers, n);
        return RL2_OK;
    case RL2_FAILOVER_CLOSED:
        return rl2_err_set(err, RL2_ERR_STORE,
                           "store %s unavailable and "
                           "failover mode is closed: refusing",
                           f->primary->ops->name);
    default:
        return rl2_failover_answer_local(f, op, layers, n, now, err);
    }
}

/* ---- the store interface ----------------------------------------------- */

static rl2_status_t
rl2_failover_route_call(rl2_failover_t *f, int peek, rl2_layer_t *layers,
                        size_t n, const rl2_clock_t *now, rl2_err_t *err)
{
    layer_op_t primary_op =
        peek ? f->primary->ops->peek : f->primary->ops->apply;
    layer_op_t   local_op = NULL;
    int          answered;
    rl2_status_t st;

    if (n > RL2_MAX_LAYERS) {
        return rl2_err_set(err, RL2_ERR_INVALID, "%zu layers, at most %d", n,
                           RL2_MAX_LAYERS);
    }
    st =
        rl2_failover_try_primary(f, primary_op, layers, n, now, &answered, err);
    if (st != RL2_OK || answered) {
        return st;
    }
    if (f->local != NULL) {
        local_op = peek ? f->local->ops->peek : f->local->ops->apply;
    }
    return rl2_failover_answer_fallback(f, local_op, layers, n, now, err);
}

static rl2_status_t
rl2_failover_apply(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                   const rl2_clock_t *now, rl2_err_t *err)
{
    return rl2_failover_route_call((rl2_failover_t *)store, 0, layers, n, now,
                                   err);
}

static rl2_status_t
rl2_failover_peek(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                  const rl2_clock_t *now, rl2_err_t *err)
{
    return rl2_failover_route_call((rl2_failover_t *)store, 1, layers, n, now,
                                   err);
}

/* ---- refunds owed to Redis ---------------------------------------------- */

/* Send what the queue holds, RL2_MAX_LAYERS layers a call, while the
 * circuit stays closed; at most RL2_REFUND_SLOTS / RL2_MAX_LAYERS calls
 * (64), once per outage in the common case.  A call that fails is
 * reported to the circuit (which may open it again) and ends the replay;
 * its layers are not sent again (see failover.h).  Another process
 * replaying at the same time claims other slots. */
static void
rl2_failover_replay(rl2_failover_t *f, const rl2_clock_t *now)
{
    rl2_refund_queue_t *q = rl2_circuit_refunds(f->circuit);
    rl2_layer_t         layers[RL2_MAX_LAYERS];
    rl2_limit_t         limits[RL2_MAX_LAYERS];
    uint32_t            slots[RL2_MAX_LAYERS];
    size_t              pos = 0, n;
    rl2_status_t        st;

    if (rl2_refunds_pending(q) == 0) {
        return;
    }
    while (rl2_circuit_state(f->circuit) == RL2_CIRCUIT_CLOSED
           && (n = rl2_refunds_claim(q, &pos, layers, limits, slots,
                                     RL2_MAX_LAYERS, f->conf.clock_us()))
                  > 0) {
        rl2_err_t perr = { "" };

        st = f->primary->ops->refund(f->primary, layers, n, now, &perr);
        rl2_refunds_finish(q, slots, n,
                           st == RL2_OK          ? RL2_REFUND_REPLAYED
                           : st == RL2_ERR_STORE ? RL2_REFUND_FAILED
                                                 : RL2_REFUND_DROPPED);
        if (st == RL2_ERR_STORE) {
            rl2_failover_report(f, RL2_ROUTE_PRIMARY, f->conf.clock_us(),
                                perr.msg);
            return;
        }
    }
}

/* While the circuit is not closed no request touches Redis: queue.  A
 * probe may have closed it and replayed between the test and the push:
 * then nobody would replay this until the next outage, so look again. */
static void
rl2_failover_defer(rl2_failover_t *f, const rl2_layer_t *layers, size_t n,
                   const rl2_clock_t *now)
{
    rl2_refunds_push(rl2_circuit_refunds(f->circuit), layers, n,
                     f->conf.clock_us());
    if (rl2_circuit_state(f->circuit) == RL2_CIRCUIT_CLOSED) {
        rl2_failover_replay(f, now);
    }
}

/* Layers Redis counted go back to Redis while the circuit is closed,
 * else to the queue.  Redis answering is also the moment to send what
 * the queue holds (a process whose own probe did not close the circuit
 * may have queued some). */
static rl2_status_t
rl2_failover_refund_primary(rl2_failover_t *f, rl2_layer_t *layers, size_t n,
                            const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_err_t    perr = { "" };
    rl2_status_t st;

    if (rl2_circuit_state(f->circuit) != RL2_CIRCUIT_CLOSED) {
        rl2_failover_defer(f, layers, n, now);
        return RL2_OK;
    }
    st = f->primary->ops->refund(f->primary, layers, n, now, &perr);
    if (st == RL2_OK) {
        rl2_failover_replay(f, now);
        return RL2_OK;
    }
    if (st == RL2_ERR_STORE) {
        rl2_refunds_failed(rl2_circuit_refunds(f->circuit), n);
        rl2_failover_report(f, RL2_ROUTE_PRIMARY, f->conf.clock_us(), perr.msg);
    }
    return rl2_err_set(err, st, "%s", perr.msg);
}

/* Split the committed layers by the mark: fallback ones to the front of
 * `sel`, Redis ones to the back, each copy marked plain 1 again. */
static rl2_status_t
rl2_failover_refund(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                    const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_failover_t *f = (rl2_failover_t *)store;
    rl2_layer_t     sel[RL2_MAX_LAYERS];
    rl2_limit_t     scaled[RL2_MAX_LAYERS];
    size_t          nl = 0, np = 0;
    rl2_status_t    st = RL2_OK, st2 = RL2_OK;

    if (n > RL2_MAX_LAYERS) {
        return rl2_err_set(err, RL2_ERR_INVALID, "%zu layers, at most %d", n,
                           RL2_MAX_LAYERS);
    }
    for (size_t i = 0; i < n; i++) {
        rl2_layer_t *l;

        if (!layers[i].committed) {
            continue;
        }
        if (layers[i].committed == RL2_COMMITTED_FALLBACK) {
            l = &sel[nl++];
            *l = layers[i];
            rl2_failover_scale_limit(f, layers[i].limit, &scaled[nl - 1]);
            l->limit = &scaled[nl - 1];
            l->key = rl2_failover_local_key(f, l->key);
        }
        else {
            l = &sel[RL2_MAX_LAYERS - ++np];
            *l = layers[i];
        }
        l->committed = 1;
    }
    if (nl > 0 && f->local != NULL) {
        st = f->local->ops->refund(f->local, sel, nl, now, err);
    }
    if (np > 0) {
        st2 = rl2_failover_refund_primary(f, sel + RL2_MAX_LAYERS - np, np, now,
                                          st == RL2_OK ? err : NULL);
    }
    return st != RL2_OK ? st : st2;
}

/* Both stores, whatever the circuit says (an operator's reset must not
 * wait for Redis to come back, nor move the circuit): Redis, then the
 * local zone's scaled counters of failover mode local. */
static rl2_status_t
rl2_failover_reset(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                   const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_failover_t *f = (rl2_failover_t *)store;
    rl2_status_t    st, st2 = RL2_OK;

    if (n > RL2_MAX_LAYERS) {
        return rl2_err_set(err, RL2_ERR_INVALID, "%zu layers, at most %d", n,
                           RL2_MAX_LAYERS);
    }
    st = f->primary->ops->reset(f->primary, layers, n, now, err);
    if (f->local != NULL) {
        st2 = rl2_failover_answer_local(f, f->local->ops->reset, layers, n, now,
                                        st == RL2_OK ? err : NULL);
    }
    return st != RL2_OK ? st : st2;
}

static void
rl2_failover_destroy(rl2_store_t *store)
{
    free(store);
}

static const rl2_store_ops_t failover_ops = {
    "failover",        rl2_failover_apply,   rl2_failover_refund,
    rl2_failover_peek, rl2_failover_destroy, rl2_failover_reset
};

void
rl2_failover_conf_default(rl2_failover_conf_t *conf)
{
    conf->mode = RL2_FAILOVER_LOCAL;
    conf->local_share_ppm = RL2_SHARE_ONE;
    conf->alert = NULL;
    conf->clock_us = NULL;
}

rl2_status_t
rl2_store_failover_create(rl2_store_t *primary, rl2_store_t *local,
                          rl2_circuit_t             *circuit,
                          const rl2_failover_conf_t *conf, rl2_store_t **out,
                          rl2_err_t *err)
{
    rl2_failover_t *f;
    char            secret[64];

    *out = NULL;
    if (primary == NULL || circuit == NULL || (unsigned)conf->mode > 2
        || (conf->mode == RL2_FAILOVER_LOCAL && local == NULL)) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "failover store needs a "
                           "primary store, a circuit, a mode, and a local "
                           "store in mode local");
    }
    if (conf->local_share_ppm < RL2_SHARE_MIN
        || conf->local_share_ppm > RL2_SHARE_ONE) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "local_share %u ppm "
                           "outside %u..%u",
                           conf->local_share_ppm, RL2_SHARE_MIN, RL2_SHARE_ONE);
    }
    if ((f = calloc(1, sizeof(*f))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    f->base.ops = &failover_ops;
    f->primary = primary;
    f->local = local;
    f->circuit = circuit;
    f->conf = *conf;
    if (f->conf.clock_us == NULL) {
        f->conf.clock_us = rl2_mono_us;
    }
    snprintf(secret, sizeof(secret), "ratelimit2 failover local_share=%u",
             conf->local_share_ppm);
    rl2_hash_key_from_secret(secret, &f->share_key);
    *out = &f->base;
    return RL2_OK;
}

int
rl2_failover_refusing(const rl2_store_t *store, int64_t *retry_after_s)
{
    const rl2_failover_t *f = (const rl2_failover_t *)store;
    rl2_circuit_stats_t   cs;

    if (store == NULL || store->ops != &failover_ops
        || f->conf.mode != RL2_FAILOVER_CLOSED) {
        return 0;
    }
    rl2_circuit_stats(f->circuit, &cs);
    if (cs.state == RL2_CIRCUIT_CLOSED && cs.failures == 0) {
        return 0;
    }
    if (retry_after_s != NULL) {
        int64_t ms = rl2_circuit_conf(f->circuit)->probe_interval_ms;

        *retry_after_s = ms > 0 ? (ms + 999) / 1000 : 1;
    }
    return 1;
}
