/*
 * redis_lease.c -- lease mode: a leased limit's requests are admitted from
 * slices of its allowance, taken from Redis in one atomic call and held in
 * a shared-memory table, so that a busy key costs a Redis call per slice
 * instead of per request.
 *
 * Redis counts a slice as admitted when it grants it (grant.c and its Lua
 * twin), so the slices never sum to more than what the limit has left and
 * the fleet never admits more than N.  What a server did not use goes back
 * with its next call for the key, as a refund of what was committed at the
 * grant.  A slice is used until it is spent or its lease ends: the lease
 * time, cut at the span's or window's end for the windowed algorithms
 * (their units belong to the window that counted them).  The lease's end is
 * measured on this host's monotonic clock from before the call was sent,
 * so it always falls before the end Redis reckoned with.
 *
 * The table is one per host (a zone of its own, "<zone>.lease"), so every
 * process of a server shares one slice per key: a killed process loses
 * nothing, and a server that dies, or stops seeing a key, strands at most
 * its last slice of it (docs/configuration.md states the bound).
 *
 * How much to ask for: one request's cost the first time a key is seen
 * (so a key seen once a minute is counted exactly, one call per request);
 * then the units the key used at its last slice's rate over one lease
 * time, at most twice the last slice, at most lease_max.  Redis gives
 * less near the end of a window (a quarter of what is left).
 *
 * A layer not leased goes to the inner store, with the leased ones: the
 * request is admitted only if every enforcing layer admits it, and the
 * units a lease gave a refused request are put back in its slice.
 *
 * Locking: the table's lock is held only around reading and writing the
 * table, never across a Redis call.  While a call for a slice is out, the
 * key is marked, and every other request that finds its slice spent asks
 * only for its own cost; only the call that set the mark clears it, when
 * it ends (a follower's grant, which comes back first as often as not,
 * must not: the next request would then ask for a slice of its own while
 * the first is still out, and a server killed then would strand both,
 * beyond the bound docs/configuration.md states).  A mark outlives a
 * process killed in the middle of its call by the call's timeouts; a
 * grant that lands after another (a call slower than its mark) is added
 * to the first (the earlier end and the earlier grant time kept, both
 * cautious).
 *
 * A request that finds the slice spent while a call is out waits for
 * that call to end (a futex on the entry, woken by the call's maker), at
 * most RL2_LEASE_WAIT_MAX_US, and is then served from the new slice; only
 * if there is none does it ask for its own cost.  Without the wait, every
 * request in a call's round trip would be a Redis call of its own.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "algo/algo_internal.h"
#include "base/base_internal.h"
#include "redis/redis_internal.h"
#include "redis_scripts.h"
#include "store/store_internal.h"

/* The longest a request waits for a call out for its key to end (a round
 * trip to a healthy Redis takes well under a millisecond): past that it
 * asks for its own cost, as it would have without waiting. */
#define RL2_LEASE_WAIT_MAX_US 5000

/* A key's entry outlives its last slice by this many lease times, so that
 * its unused units still go back when the key is seen again a while
 * later; a key not seen again by then leaves them (within the bound
 * docs/configuration.md states). */
#define RL2_LEASE_KEEP 10

/* The units of one grant. */
typedef struct {
    int64_t units;
    int64_t expires_us;    /* monotonic: none is used at or after */
    int64_t granted_at_us; /* Redis' clock at the grant: what a return
                              refunds, and what a refund must match */
    int64_t limit, burst;  /* the limit's count and burst at the grant
                              (its algorithm and window are in the key):
                              a return under others would refund by
                              another arithmetic; limit -1: never goes
                              back */
} rl2_slice_t;

/* One key's lease, in the table.  All zero is "no lease yet". */
typedef struct {
    rl2_slice_t cur;     /* what requests take from */
    rl2_slice_t next;    /* asked for ahead, taken when cur is done */
    rl2_slice_t back[2]; /* unused units of slices that are done, to go
                            back with the next ask (expires_us unused) */
    int64_t slice;       /* units of the last grant */
    int64_t used;        /* units admitted since the last ask */
    int64_t since_us;    /* monotonic: the last ask */
    int64_t asking_us;   /* monotonic: when the call out for it was
                            planned, its mark; 0: none out */
    int64_t limit;       /* for the headers: the limit */
    int64_t remaining;   /* the fleet's, after the last grant */
    int64_t reset_at_us; /* monotonic: the limit full again */
    int64_t writing;     /* 1 while a process changes it (under the lock):
                            found so, its writer was killed in the middle */
    _Atomic uint32_t calls_ended; /* one more at each mark cleared: the word
                                     waiting requests sleep on (futex) */
    uint32_t unused;
} rl2_lease_t;

typedef struct {
    rl2_store_t      base;
    rl2_lease_conf_t conf;
    int64_t          asking_max_us; /* how long a mark holds */
} rl2_lease_store_t;

typedef rl2_status_t (*rl2_store_call_fn)(rl2_store_t *, rl2_layer_t *, size_t,
                                          const rl2_clock_t *, rl2_err_t *);

size_t
rl2_lease_state_size(void)
{
    return sizeof(rl2_lease_t);
}

int
rl2_lease_applies(const rl2_limit_t *limit, int all)
{
    if (limit->lease == RL2_LEASE_OFF
        || (limit->lease != RL2_LEASE_ON && !all)) {
        return 0;
    }
    return rl2_algo_leasable(&limit->algo) && limit->overflow.limit == 0;
}

/* ---- one key's lease ---- */

/* Under the lock: l is about to change.  A process killed in the middle
 * of a change (the lock is recovered, the entry is not) may leave a unit
 * in two places: moved from cur to next's place or to back and not yet
 * cleared where it was.  Such an entry is found still marked, and all
 * its units are dropped: never used, never given back (lost, within the
 * bound of a server that stops).  The signal fences keep the compiler
 * from moving the changes out of the marked stretch; the mutex hand-over
 * orders them for the next locker. */
static void
rl2_lease_open(rl2_lease_t *l)
{
    if (l->writing) {
        /* The mark and the waiters' word survive: each is one aligned
         * word, whole whatever the killed writer did, and a call may be
         * out (its mark cleared by its maker, or ending with its time). */
        int64_t  asking_us = l->asking_us;
        uint32_t ended =
            atomic_load_explicit(&l->calls_ended, memory_order_relaxed);

        memset(l, 0, sizeof(*l));
        l->asking_us = asking_us;
        atomic_store_explicit(&l->calls_ended, ended, memory_order_relaxed);
    }
    l->writing = 1;
    atomic_signal_fence(memory_order_seq_cst);
}

static void
rl2_lease_close(rl2_lease_t *l)
{
    atomic_signal_fence(memory_order_seq_cst);
    l->writing = 0;
}

static int
rl2_slice_live(const rl2_slice_t *sl, int64_t now_us)
{
    return sl->units > 0 && now_us < sl->expires_us;
}

/* Two grants whose units can go back as one refund. */
static int
rl2_slice_same(const rl2_slice_t *a, const rl2_slice_t *b)
{
    return a->granted_at_us == b->granted_at_us && a->limit == b->limit
           && a->burst == b->burst;
}

/* A slice that is done leaves its unused units to go back, each grant's
 * as a refund of its own (cur and next can both end unused).  A third
 * grant's units before any went back drop the smallest part: never used
 * again, so never admitted twice. */
static void
rl2_lease_stash(rl2_lease_t *l, rl2_slice_t *sl)
{
    rl2_slice_t *b = NULL;

    for (int k = 0; k < 2 && b == NULL && sl->units > 0; k++) {
        if (l->back[k].units == 0 || rl2_slice_same(&l->back[k], sl)) {
            b = &l->back[k];
        }
    }
    if (b != NULL) {
        b->units += sl->units;
        b->granted_at_us = sl->granted_at_us;
        b->limit = sl->limit;
        b->burst = sl->burst;
    }
    else if (sl->units > 0) {
        b = l->back[0].units < l->back[1].units ? &l->back[0] : &l->back[1];
        if (sl->units > b->units) {
            *b = *sl;
        }
    }
    memset(sl, 0, sizeof(*sl));
}

/* Make cur a slice that can serve a request of cost, from next if cur
 * is spent, over or too small. */
static void
rl2_lease_settle(rl2_lease_t *l, int64_t cost, int64_t now_us)
{
    for (int k = 0; k < 2; k++) {
        if (rl2_slice_live(&l->cur, now_us) && l->cur.units >= cost) {
            return;
        }
        rl2_lease_stash(l, &l->cur);
        l->cur = l->next;
        memset(&l->next, 0, sizeof(l->next));
    }
}

/* A call out for the key: marked, and not older than a call can be (its
 * maker was killed during it). */
static int
rl2_lease_asking(const rl2_lease_store_t *s, const rl2_lease_t *l,
                 int64_t now_us)
{
    return l->asking_us != 0 && now_us - l->asking_us < s->asking_max_us;
}

/* The units to ask for (see the head of the file). */
static int64_t
rl2_lease_want(const rl2_lease_store_t *s, const rl2_lease_t *l, int64_t cost,
               int64_t now_us)
{
    int64_t elapsed_us, need, most;

    if (l->slice == 0 || rl2_lease_asking(s, l, now_us)) {
        return cost;
    }
    elapsed_us = rl2_max64(now_us - l->since_us, 1);
    /* used is at most a few slices, lease_us at most 60 s: the product
     * stays far below 2^63. */
    need = l->used * s->conf.lease_us / elapsed_us;
    most = rl2_min64(2 * l->slice, s->conf.lease_max);
    return rl2_max64(rl2_min64(need, most), cost);
}

/* Ask ahead when half of a slice of four or more is left, so that a
 * busy key's requests rarely find it spent and wait for Redis.  Half, not
 * a quarter: on a loaded host a call took up to 4 ms (165 us at best),
 * longer than a quarter of a busy key's slice lasted, and its requests
 * waited 1.6 to 2.0 times a call; 0.2 to 0.5 times asking at half (event
 * MPM, 16 connections, one CPU shared with Redis, load average 5 to 7). */
static int
rl2_lease_low(const rl2_lease_store_t *s, const rl2_lease_t *l, int64_t now_us)
{
    return l->slice >= 4 && l->cur.units <= l->slice / 2 && l->next.units == 0
           && !rl2_lease_asking(s, l, now_us);
}

static void
rl2_lease_result(const rl2_lease_t *l, int64_t now_us, rl2_algo_result_t *out)
{
    out->allowed = 1;
    out->limit = l->limit;
    out->remaining = rl2_max64(l->remaining, 0) + l->cur.units + l->next.units;
    out->reset_us = rl2_max64(l->reset_at_us - now_us, 0);
    out->retry_after_us = 0;
}

/* The request takes its cost from sl. */
static void
rl2_lease_take(rl2_lease_t *l, rl2_slice_t *sl, rl2_layer_t *layer,
               int64_t now_us)
{
    sl->units -= layer->limit->cost;
    l->used += layer->limit->cost;
    rl2_lease_result(l, now_us, &layer->result);
    layer->committed = 1;
    layer->committed_us = sl->granted_at_us;
}

/* A new slice into cur, or next, or (another process's grant landed
 * first) added to next, cautiously: the earlier end, the earlier grant
 * time (a return then refunds no more than it should). */
static void
rl2_lease_place(rl2_lease_t *l, const rl2_slice_t *ns, int64_t cost,
                int64_t now_us)
{
    rl2_lease_settle(l, cost, now_us);
    if (l->cur.units == 0) {
        l->cur = *ns;
    }
    else if (l->next.units == 0) {
        l->next = *ns;
    }
    else {
        l->next.units += ns->units;
        l->next.expires_us = rl2_min64(l->next.expires_us, ns->expires_us);
        l->next.granted_at_us =
            rl2_min64(l->next.granted_at_us, ns->granted_at_us);
        if (l->next.limit != ns->limit || l->next.burst != ns->burst) {
            l->next.limit = -1; /* a limit changed between the two */
        }
    }
}

/* A copy of key's entry, taken under the lock; 0 if there is none (or
 * none whole: its writer was killed in the middle). */
static int
rl2_lease_read(rl2_zone_t *zone, rl2_digest_t key, int64_t now_us,
               rl2_lease_t *out)
{
    const rl2_lease_t *l;
    int                found = 0;
    rl2_err_t          err;

    if (rl2_zone_lock(zone, &err) != RL2_OK) {
        return 0;
    }
    if ((l = rl2_zone_peek(zone, key, now_us)) != NULL && !l->writing) {
        memcpy(out, l, sizeof(*out));
        found = 1;
    }
    rl2_zone_unlock(zone);
    return found;
}

int64_t
rl2_lease_held(rl2_zone_t *zone, rl2_digest_t key, int64_t now_us)
{
    rl2_lease_t l;

    if (!rl2_lease_read(zone, key, now_us, &l)) {
        return 0;
    }
    return l.cur.units + l.next.units + l.back[0].units + l.back[1].units;
}

int
rl2_lease_holds(void *zone, rl2_digest_t key, int64_t now_us)
{
    return rl2_lease_held(zone, key, now_us) > 0;
}

int
rl2_lease_asking_now(rl2_zone_t *zone, rl2_digest_t key, int64_t now_us)
{
    rl2_lease_t l;

    return rl2_lease_read(zone, key, now_us, &l) && l.asking_us != 0;
}

/* ---- the request ---- */

typedef struct {
    size_t leased[RL2_MAX_LAYERS]; /* layers leased, by index */
    size_t n_leased;
    size_t exact[RL2_MAX_LAYERS]; /* the others */
    size_t n_exact;
    /* at most two asks per layer: a slice, and a second grant's return */
    rl2_lease_ask_t ask[2 * RL2_MAX_LAYERS];
    size_t          ask_of[2 * RL2_MAX_LAYERS]; /* layer of ask[k] */
    int             ahead[2 * RL2_MAX_LAYERS];  /* ask[k] is for later: its
                                                   layer is served already */
    int64_t marked_us[2 * RL2_MAX_LAYERS];      /* the mark ask[k] set on its
                                                   key; 0: it set none */
    size_t n_ask;
    /* layers that found a call out for their key, and wait for it to end
     * (the first pass only): the word to sleep on, and its value then */
    size_t            wait[RL2_MAX_LAYERS];
    _Atomic uint32_t *wait_word[RL2_MAX_LAYERS];
    uint32_t          wait_seen[RL2_MAX_LAYERS];
    size_t            n_wait;
    _Atomic uint32_t *wake[2 * RL2_MAX_LAYERS]; /* marks this request
                                                   cleared */
    size_t n_wake;
} rl2_lease_plan_t;

static void
rl2_lease_split(const rl2_lease_store_t *s, rl2_layer_t *layers, size_t n,
                rl2_lease_plan_t *p)
{
    p->n_leased = p->n_exact = p->n_ask = p->n_wait = p->n_wake = 0;
    for (size_t i = 0; i < n; i++) {
        if (rl2_lease_applies(layers[i].limit, s->conf.all)) {
            p->leased[p->n_leased++] = i;
        }
        else {
            p->exact[p->n_exact++] = i;
        }
    }
}

static void
rl2_layer_clear(rl2_layer_t *l)
{
    memset(&l->result, 0, sizeof(l->result));
    l->refused = 0;
    l->overflow_used = 0;
    l->committed = 0;
    l->committed_us = 0;
}

/* Under the lock: the units to go back that were granted under another
 * count or burst of the limit (a factor, a boost, a tier, a reload) are
 * dropped, never used again: refunded under the limit as it is now they
 * could forgive more than their grant took (a bucket's interval is
 * longer, a window's count is clamped to a lower limit before the
 * subtraction). */
static void
rl2_lease_returnable(rl2_lease_t *l, const rl2_limit_t *limit)
{
    for (int k = 0; k < 2; k++) {
        if (l->back[k].limit != limit->algo.limit
            || l->back[k].burst != limit->algo.burst) {
            memset(&l->back[k], 0, sizeof(l->back[k]));
        }
    }
    if (l->back[0].units == 0) {
        l->back[0] = l->back[1];
        memset(&l->back[1], 0, sizeof(l->back[1]));
    }
}

/* Under the lock: an ask for layers[i], with what is to go back.  While
 * another process's call is out, this one asks for its own cost only and
 * leaves the rate being measured alone. */
static void
rl2_lease_plan_ask(rl2_lease_store_t *s, rl2_lease_t *l, rl2_layer_t *layers,
                   size_t i, int ahead, rl2_lease_plan_t *p, int64_t now_us)
{
    rl2_lease_ask_t *a = &p->ask[p->n_ask];
    int64_t          cost = layers[i].limit->cost;

    memset(a, 0, sizeof(*a));
    a->layer = &layers[i];
    a->want = rl2_lease_want(s, l, cost, now_us);
    rl2_lease_returnable(l, layers[i].limit);
    a->back = l->back[0].units;
    a->back_at_us = l->back[0].granted_at_us;
    p->marked_us[p->n_ask] = 0;
    if (!rl2_lease_asking(s, l, now_us)) {
        l->asking_us = now_us;
        p->marked_us[p->n_ask] = now_us;
        /* the entry holds the mark: kept at least as long as the mark */
        rl2_zone_keep_until(s->conf.zone, l, now_us + s->asking_max_us);
        l->used = 0;
        l->since_us = now_us;
    }
    p->ask_of[p->n_ask] = i;
    p->ahead[p->n_ask++] = ahead;
    if (l->back[1].units > 0) {
        /* the second grant's units: an ask that only gives back */
        a = &p->ask[p->n_ask];
        memset(a, 0, sizeof(*a));
        a->layer = &layers[i];
        a->back = l->back[1].units;
        a->back_at_us = l->back[1].granted_at_us;
        p->ask_of[p->n_ask] = i;
        p->marked_us[p->n_ask] = 0;
        p->ahead[p->n_ask++] = 1;
    }
    memset(l->back, 0, sizeof(l->back));
}

/* Under the lock: take every leased layer's cost from its slice, or plan
 * an ask; a slice running low plans one ahead.  A probe of the failover's
 * circuit takes nothing from a slice: it asks, so that the circuit closes
 * only on an answer from Redis. */
static void
rl2_lease_layer(rl2_lease_store_t *s, rl2_layer_t *layers, size_t i,
                rl2_lease_plan_t *p, int probe, int may_wait, int64_t now_us)
{
    int64_t      cost = layers[i].limit->cost;
    rl2_lease_t *l = rl2_zone_get(s->conf.zone, layers[i].key, now_us);
    int          ask = 1;

    rl2_lease_open(l);
    rl2_lease_settle(l, cost, now_us);
    if (l->cur.units >= cost && !probe) {
        rl2_lease_take(l, &l->cur, &layers[i], now_us);
        if ((ask = rl2_lease_low(s, l, now_us))) {
            rl2_lease_plan_ask(s, l, layers, i, 1, p, now_us);
        }
    }
    else if (may_wait && !probe && rl2_lease_asking(s, l, now_us)) {
        p->wait[p->n_wait] = i;
        p->wait_word[p->n_wait] = &l->calls_ended;
        p->wait_seen[p->n_wait++] =
            atomic_load_explicit(&l->calls_ended, memory_order_relaxed);
        ask = 0;
    }
    else {
        rl2_lease_plan_ask(s, l, layers, i, 0, p, now_us);
    }
    rl2_lease_close(l);
    if (ask) {
        rl2_zone_keep_until(s->conf.zone, l,
                            now_us + RL2_LEASE_KEEP * s->conf.lease_us);
    }
}

static void
rl2_lease_from_table(rl2_lease_store_t *s, rl2_layer_t *layers,
                     rl2_lease_plan_t *p, int probe, int64_t now_us)
{
    for (size_t k = 0; k < p->n_leased; k++) {
        rl2_lease_layer(s, layers, p->leased[k], p, probe, 1, now_us);
    }
}

/* ---- waiting for a call out ---- */

/* Not under the lock: sleep until each waited-for key's call has ended
 * (its word moved on), RL2_LEASE_WAIT_MAX_US at most in all.  The word
 * stays mapped whatever becomes of the entry: an entry reused for
 * another key only wakes its sleeper early.  Returns the µs waited. */
static int64_t
rl2_lease_wait(const rl2_lease_plan_t *p)
{
    int64_t start_us = rl2_mono_us();
    int64_t deadline_us = start_us + RL2_LEASE_WAIT_MAX_US;

    for (size_t j = 0; j < p->n_wait; j++) {
        while (atomic_load_explicit(p->wait_word[j], memory_order_acquire)
               == p->wait_seen[j]) {
            /* shared: the waker may be another process; an early return
             * (a wake, a signal) only means "look again" */
            if (rl2_futex_wait(p->wait_word[j], p->wait_seen[j], deadline_us, 1)
                == ETIMEDOUT) {
                return rl2_mono_us() - start_us;
            }
        }
    }
    return rl2_mono_us() - start_us;
}

/* Not under the lock: wake whoever sleeps on the marks this request
 * cleared. */
static void
rl2_lease_wake(const rl2_lease_plan_t *p)
{
    for (size_t k = 0; k < p->n_wake; k++) {
        rl2_futex_wake(p->wake[k], INT_MAX, 1);
    }
}

/* Under the lock: ask k's call has ended; the mark goes if it is the one
 * that ask set (not a later call's, after this one outlived it). */
static void
rl2_lease_unmark(rl2_lease_t *l, rl2_lease_plan_t *p, size_t k)
{
    if (p->marked_us[k] != 0 && l->asking_us == p->marked_us[k]) {
        l->asking_us = 0;
        atomic_fetch_add_explicit(&l->calls_ended, 1, memory_order_release);
        p->wake[p->n_wake++] = &l->calls_ended;
    }
}

/* Under the lock: the marks of the asks from k on, whose calls failed
 * (no grant came back): the next request asks again at once. */
static void
rl2_lease_unmark_failed(rl2_lease_store_t *s, rl2_lease_plan_t *p, size_t k,
                        int64_t now_us)
{
    for (; k < p->n_ask; k++) {
        rl2_lease_t *l;

        if (p->marked_us[k] == 0
            || (l = rl2_zone_peek(s->conf.zone, p->ask[k].layer->key, now_us))
                   == NULL) {
            continue;
        }
        rl2_lease_open(l);
        rl2_lease_unmark(l, p, k);
        rl2_lease_close(l);
    }
}

/* Under the lock: the grants of the first n_answered asks into the
 * table, the layers that waited for them served from them; a refusal
 * into its layer. */
static void
rl2_lease_grants(rl2_lease_store_t *s, rl2_layer_t *layers, rl2_lease_plan_t *p,
                 size_t n_answered, int64_t now_us)
{
    for (size_t k = 0; k < n_answered; k++) {
        rl2_lease_ask_t *a = &p->ask[k];
        rl2_layer_t     *layer = &layers[p->ask_of[k]];
        int64_t          cost = layer->limit->cost;
        rl2_lease_t     *l;
        rl2_slice_t      ns;

        if (a->want == 0) {
            continue; /* only gave back */
        }
        l = rl2_zone_get(s->conf.zone, layer->key, now_us);
        rl2_lease_open(l);
        rl2_lease_unmark(l, p, k);
        if (a->granted < cost) {
            rl2_lease_close(l);
            if (!p->ahead[k]) {
                layer->result = a->result;
                layer->refused = 1;
            }
            continue;
        }
        ns.units = a->granted;
        ns.expires_us = now_us + s->conf.lease_us;
        if (a->horizon_us >= 0) {
            ns.expires_us = rl2_min64(ns.expires_us, now_us + a->horizon_us);
        }
        ns.granted_at_us = a->granted_at_us;
        ns.limit = layer->limit->algo.limit;
        ns.burst = layer->limit->algo.burst;
        if (a->want > cost || l->slice == 0) {
            l->slice = a->granted; /* not a follower's own cost */
        }
        l->limit = a->result.limit;
        l->remaining = a->result.remaining;
        l->reset_at_us = now_us + a->result.reset_us;
        if (!p->ahead[k]) {
            rl2_lease_take(l, &ns, layer, now_us);
        }
        rl2_lease_place(l, &ns, cost, now_us);
        rl2_lease_close(l);
        rl2_zone_keep_until(s->conf.zone, l,
                            ns.expires_us + RL2_LEASE_KEEP * s->conf.lease_us);
    }
}

/* Under the lock: a committed leased layer's cost back into the slice it
 * came from, if that is still held. */
static void
rl2_lease_give_back(rl2_lease_store_t *s, rl2_layer_t *layer, int64_t now_us)
{
    rl2_lease_t *l = rl2_zone_peek(s->conf.zone, layer->key, now_us);

    if (l != NULL) {
        rl2_slice_t *sl;

        rl2_lease_open(l);
        sl = l->cur.granted_at_us == layer->committed_us    ? &l->cur
             : l->next.granted_at_us == layer->committed_us ? &l->next
                                                            : NULL;
        if (sl != NULL && now_us < sl->expires_us) {
            sl->units += layer->limit->cost;
            l->used -= layer->limit->cost;
        }
        rl2_lease_close(l);
    }
    layer->committed = 0;
    layer->committed_us = 0;
}

static int
rl2_layer_blocks(const rl2_layer_t *l)
{
    return l->refused && !l->dry_run && !l->limit->unlimited;
}

/* The inner store over the layers idx[0..n): copied out and back, since
 * the stores take an array. */
static rl2_status_t
rl2_lease_inner(rl2_lease_store_t *s, rl2_store_call_fn fn, rl2_layer_t *layers,
                const size_t *idx, size_t n, const rl2_clock_t *now,
                rl2_err_t *err)
{
    rl2_layer_t  sub[RL2_MAX_LAYERS];
    rl2_status_t st;

    for (size_t k = 0; k < n; k++) {
        sub[k] = layers[idx[k]];
    }
    st = fn(s->conf.inner, sub, n, now, err);
    for (size_t k = 0; k < n; k++) {
        layers[idx[k]] = sub[k];
    }
    return st;
}

static rl2_status_t
rl2_lease_lock(rl2_lease_store_t *s, rl2_err_t *err)
{
    return rl2_zone_lock(s->conf.zone, err);
}

/* Undo what the leases gave a request that is not admitted. */
static rl2_status_t
rl2_lease_undo(rl2_lease_store_t *s, rl2_layer_t *layers,
               const rl2_lease_plan_t *p, int64_t now_us, rl2_err_t *err)
{
    rl2_status_t st = rl2_lease_lock(s, err);

    if (st != RL2_OK) {
        return st;
    }
    for (size_t k = 0; k < p->n_leased; k++) {
        if (layers[p->leased[k]].committed) {
            rl2_lease_give_back(s, &layers[p->leased[k]], now_us);
        }
    }
    rl2_zone_unlock(s->conf.zone);
    return RL2_OK;
}

/* Does a layer wait for one of the asks from k on? */
static int
rl2_lease_waiting(const rl2_lease_plan_t *p, size_t k)
{
    for (; k < p->n_ask; k++) {
        if (!p->ahead[k]) {
            return 1;
        }
    }
    return 0;
}

/* The asks go to Redis, the grants into the table.  A call carries at
 * most RL2_MAX_LAYERS asks, and a request may make twice as many (a
 * slice and a second return per layer): they go in as many calls, and
 * the grants of the calls that were answered are kept even if a later
 * one fails.  A failed call that only asked ahead does not fail the
 * request, which its slice served: the next request that finds the slice
 * spent asks again (and, if Redis is down, fails over).  Units that were
 * going back with a failed call may or may not have reached Redis: they
 * are not used again. */
static rl2_status_t
rl2_lease_ask(rl2_lease_store_t *s, rl2_layer_t *layers, rl2_lease_plan_t *p,
              const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_status_t st = RL2_OK, lst;
    rl2_err_t    e;
    size_t       done = 0, m;

    while (done < p->n_ask && st == RL2_OK) {
        m = (size_t)rl2_min64((int64_t)(p->n_ask - done), RL2_MAX_LAYERS);
        st = rl2_store_redis_lease(s->conf.redis, p->ask + done, m, now, err);
        done += st == RL2_OK ? m : 0;
    }
    if ((lst = rl2_lease_lock(s, &e)) != RL2_OK) {
        /* no grant written, no mark cleared (it ends with its time):
         * every waiting layer is unserved */
        if (st == RL2_OK) {
            *err = e;
            st = lst;
        }
        return rl2_lease_waiting(p, 0) ? st : RL2_OK;
    }
    rl2_lease_grants(s, layers, p, done, now->mono_us);
    rl2_lease_unmark_failed(s, p, done, now->mono_us);
    rl2_zone_unlock(s->conf.zone);
    rl2_lease_wake(p);
    return rl2_lease_waiting(p, done) ? st : RL2_OK;
}

/* The layers that found a call out for their key: served from what it
 * brought, or an ask each (no second wait), on the request's clock moved
 * on by the wait (a slice's end is not to be passed by waiting).  Only a
 * request with no call of its own waits. */
static rl2_status_t
rl2_lease_after_wait(rl2_lease_store_t *s, rl2_layer_t *layers,
                     rl2_lease_plan_t *p, const rl2_clock_t *now,
                     rl2_err_t *err)
{
    /* A request with calls of its own to make (a mark it set, or a
     * return) does not sleep first: its marks would stand with no call
     * out, and hold up every request of those keys. */
    int64_t now_us = now->mono_us + (p->n_ask == 0 ? rl2_lease_wait(p) : 0);
    rl2_status_t st;

    if ((st = rl2_lease_lock(s, err)) != RL2_OK) {
        return st;
    }
    for (size_t j = 0; j < p->n_wait; j++) {
        rl2_lease_layer(s, layers, p->wait[j], p, 0, 0, now_us);
    }
    rl2_zone_unlock(s->conf.zone);
    return RL2_OK;
}

/* Is this request the failover's probe?  The failover store sends a
 * request here only while its circuit is closed, or as the probe. */
static int
rl2_lease_probe(const rl2_lease_store_t *s)
{
    return s->conf.circuit != NULL
           && rl2_circuit_state(s->conf.circuit) != RL2_CIRCUIT_CLOSED;
}

static rl2_status_t
rl2_lease_apply(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_lease_store_t *s = (rl2_lease_store_t *)store;
    rl2_lease_plan_t   p;
    rl2_status_t       st;
    rl2_err_t          e;
    int                blocked = 0;

    rl2_lease_split(s, layers, n, &p);
    if (p.n_leased == 0) {
        return s->conf.inner->ops->apply(s->conf.inner, layers, n, now, err);
    }
    for (size_t i = 0; i < n; i++) {
        rl2_layer_clear(&layers[i]);
    }
    if ((st = rl2_lease_lock(s, err)) != RL2_OK) {
        return st;
    }
    rl2_lease_from_table(s, layers, &p, rl2_lease_probe(s), now->mono_us);
    rl2_zone_unlock(s->conf.zone);
    if (p.n_wait > 0
        && (st = rl2_lease_after_wait(s, layers, &p, now, err)) != RL2_OK) {
        rl2_lease_undo(s, layers, &p, now->mono_us, &e);
        return st;
    }
    if (p.n_ask > 0
        && (st = rl2_lease_ask(s, layers, &p, now, err)) != RL2_OK) {
        rl2_lease_undo(s, layers, &p, now->mono_us, &e);
        return st;
    }
    for (size_t k = 0; k < p.n_leased; k++) {
        blocked |= rl2_layer_blocks(&layers[p.leased[k]]);
    }
    if (p.n_exact > 0) {
        st = rl2_lease_inner(
            s, blocked ? s->conf.inner->ops->peek : s->conf.inner->ops->apply,
            layers, p.exact, p.n_exact, now, err);
        if (st != RL2_OK) {
            rl2_lease_undo(s, layers, &p, now->mono_us, &e);
            return st;
        }
        for (size_t k = 0; k < p.n_exact; k++) {
            blocked |= rl2_layer_blocks(&layers[p.exact[k]]);
        }
    }
    if (blocked) {
        return rl2_lease_undo(s, layers, &p, now->mono_us, err);
    }
    return RL2_OK;
}

/* A leased layer's units go back into its slice (if it is still the one
 * they came from; otherwise they are not used again); the others to the
 * inner store. */
static rl2_status_t
rl2_lease_refund(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                 const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_lease_store_t *s = (rl2_lease_store_t *)store;
    rl2_lease_plan_t   p;
    rl2_status_t       st;

    rl2_lease_split(s, layers, n, &p);
    if (p.n_leased > 0) {
        if ((st = rl2_lease_lock(s, err)) != RL2_OK) {
            return st;
        }
        for (size_t k = 0; k < p.n_leased; k++) {
            if (layers[p.leased[k]].committed) {
                rl2_lease_give_back(s, &layers[p.leased[k]], now->mono_us);
            }
        }
        rl2_zone_unlock(s->conf.zone);
    }
    if (p.n_exact == 0) {
        return RL2_OK;
    }
    return rl2_lease_inner(s, s->conf.inner->ops->refund, layers, p.exact,
                           p.n_exact, now, err);
}

/* What Redis holds: slices out are counted there as used. */
static rl2_status_t
rl2_lease_peek(rl2_store_t *store, rl2_layer_t *layers, size_t n,
               const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_lease_store_t *s = (rl2_lease_store_t *)store;

    return s->conf.inner->ops->peek(s->conf.inner, layers, n, now, err);
}

/* This host's slices of the keys are dropped with their counts (other
 * hosts keep theirs until spent or over: they were counted before the
 * reset). */
static rl2_status_t
rl2_lease_reset(rl2_store_t *store, rl2_layer_t *layers, size_t n,
                const rl2_clock_t *now, rl2_err_t *err)
{
    rl2_lease_store_t *s = (rl2_lease_store_t *)store;
    rl2_status_t       st;

    if ((st = rl2_zone_forget(s->conf.zone, layers, n, err)) != RL2_OK) {
        return st;
    }
    return s->conf.inner->ops->reset(s->conf.inner, layers, n, now, err);
}

static void
rl2_lease_destroy(rl2_store_t *store)
{
    free(store);
}

static const rl2_store_ops_t rl2_lease_ops = {
    "redis",        rl2_lease_apply,   rl2_lease_refund,
    rl2_lease_peek, rl2_lease_destroy, rl2_lease_reset
};

rl2_status_t
rl2_store_lease_create(const rl2_lease_conf_t *conf, rl2_store_t **out,
                       rl2_err_t *err)
{
    rl2_lease_store_t *s;

    *out = NULL;
    if (conf->lease_us < 1 || conf->lease_max < 1) {
        return rl2_err_set(err, RL2_ERR_INVALID,
                           "lease: time and largest slice must be positive");
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    s->base.ops = &rl2_lease_ops;
    s->conf = *conf;
    s->asking_max_us = rl2_max64(conf->call_max_us, RL2_LEASE_ASKING_MIN_US);
    *out = &s->base;
    return RL2_OK;
}
