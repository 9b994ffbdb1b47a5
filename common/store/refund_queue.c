/*
 * refund_queue.c -- the refunds Redis is owed while the circuit is not
 * closed (see store_internal.h for the queue's rules and failover.h for
 * what a client of the store sees).
 *
 * Owns the slots' owner words and the queue's counters.  The queue sits
 * in the circuit's shm object, shared by every process of the host, and
 * takes no lock: a slot changes hands only by a compare-and-swap of its
 * owner word, so exactly one process writes a record and exactly one
 * sends it.  Pushes run only while Redis is down and replays only once it
 * answers again: a healthy server's requests never come here.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "store/store_internal.h"

enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_READY, SLOT_SENDING };

static uint64_t
rl2_refund_word(uint32_t state, pid_t pid)
{
    return (uint64_t)state << 32 | (uint32_t)pid;
}

static uint32_t
rl2_refund_word_state(uint64_t word)
{
    return (uint32_t)(word >> 32);
}

static int
rl2_refund_take(rl2_refund_slot_t *s, uint64_t from, uint64_t to)
{
    return atomic_compare_exchange_strong_explicit(
        &s->owner, &from, to, memory_order_acq_rel, memory_order_relaxed);
}

static void
rl2_refund_release(rl2_refund_slot_t *s)
{
    atomic_store_explicit(&s->owner, rl2_refund_word(SLOT_FREE, 0),
                          memory_order_release);
}

static void
rl2_refund_count(_Atomic uint64_t *counter, size_t n)
{
    if (n > 0) {
        atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
    }
}

static void
rl2_refund_rec_fill(rl2_refund_rec_t *r, const rl2_layer_t *l, int64_t now_us)
{
    memset(r, 0, sizeof(*r));
    r->key = l->key;
    r->algo = l->limit->algo;
    r->overflow = l->limit->overflow;
    r->cost = l->limit->cost;
    r->committed_us = l->committed_us;
    r->queued_us = now_us;
    r->flags = (l->dry_run ? RL2_REFUND_F_DRY_RUN : 0)
               | (l->limit->unlimited ? RL2_REFUND_F_UNLIMITED : 0)
               | (l->overflow_used ? RL2_REFUND_F_OVERFLOW : 0);
}

/* One layer into the first free slot from the cursor on; 0 when every
 * slot is taken.  The cursor spreads concurrent pushers over the array. */
static int
rl2_refund_push_one(rl2_refund_queue_t *q, const rl2_layer_t *l, pid_t self,
                    int64_t now_us)
{
    uint32_t start =
        atomic_fetch_add_explicit(&q->cursor, 1, memory_order_relaxed);

    for (uint32_t k = 0; k < RL2_REFUND_SLOTS; k++) {
        rl2_refund_slot_t *s = &q->slot[(start + k) % RL2_REFUND_SLOTS];

        if (atomic_load_explicit(&s->owner, memory_order_relaxed)
                != rl2_refund_word(SLOT_FREE, 0)
            || !rl2_refund_take(s, rl2_refund_word(SLOT_FREE, 0),
                                rl2_refund_word(SLOT_FILLING, self))) {
            continue;
        }
        /* Pending counts FILLING and READY slots: counted as the slot is
         * taken, before it can be claimed (pending never drops below
         * zero), and taken off again by whoever takes back a FILLING slot
         * whose writer died, wherever in FILLING it died. */
        atomic_fetch_add_explicit(&q->pending, 1, memory_order_relaxed);
        rl2_refund_rec_fill(&s->rec, l, now_us);
        /* Release: a claimer sees the whole record. */
        atomic_store_explicit(&s->owner, rl2_refund_word(SLOT_READY, 0),
                              memory_order_release);
        return 1;
    }
    return 0;
}

size_t
rl2_refunds_push(rl2_refund_queue_t *q, const rl2_layer_t *layers, size_t n,
                 int64_t now_us)
{
    pid_t  self = getpid();
    size_t queued = 0;

    for (size_t i = 0; i < n; i++) {
        queued += (size_t)rl2_refund_push_one(q, &layers[i], self, now_us);
    }
    rl2_refund_count(&q->queued, queued);
    rl2_refund_count(&q->dropped, n - queued);
    return queued;
}

uint32_t
rl2_refunds_pending(const rl2_refund_queue_t *q)
{
    return atomic_load_explicit(&q->pending, memory_order_relaxed);
}

/* A slot some other process holds, FILLING or SENDING: taken back when
 * that process is gone (kill(pid, 0) fails with ESRCH), and counted as
 * what it may have been (SENDING: possibly sent).  A pid outlives its
 * process (reused, or another user's: EPERM), so a SENDING slot is also
 * taken back once its record is past any send: claimed at most
 * RL2_REFUND_MAX_AGE_US after it was queued, answered or timed out within
 * RL2_REFUND_SEND_GRACE_US; its sender, should it still finish, finds the
 * slot no longer its own (rl2_refunds_finish). */
static void
rl2_refund_reclaim(rl2_refund_queue_t *q, rl2_refund_slot_t *s, uint64_t word,
                   pid_t self, int64_t now_us)
{
    pid_t    owner = (pid_t)(uint32_t)word;
    uint32_t state = rl2_refund_word_state(word);
    int      stale = state == SLOT_SENDING
                && now_us - s->rec.queued_us
                       > RL2_REFUND_MAX_AGE_US + RL2_REFUND_SEND_GRACE_US;

    if (!stale
        && (owner == self || owner <= 0 || kill(owner, 0) == 0
            || errno != ESRCH)) {
        return;
    }
    if (!rl2_refund_take(s, word, rl2_refund_word(SLOT_FREE, 0))) {
        return;
    }
    if (state == SLOT_FILLING) {
        atomic_fetch_sub_explicit(&q->pending, 1, memory_order_relaxed);
    }
    rl2_refund_count(state == SLOT_SENDING ? &q->failed : &q->dropped, 1);
}

/* The record as a layer the Redis store's refund takes, its limit in
 * *limit: only the fields the refund script reads are set. */
static void
rl2_refund_rec_layer(const rl2_refund_rec_t *r, rl2_layer_t *l,
                     rl2_limit_t *limit)
{
    memset(limit, 0, sizeof(*limit));
    limit->name = "(queued refund)";
    limit->algo = r->algo;
    limit->overflow = r->overflow;
    limit->cost = r->cost;
    limit->unlimited = (r->flags & RL2_REFUND_F_UNLIMITED) != 0;
    memset(l, 0, sizeof(*l));
    l->limit = limit;
    l->key = r->key;
    l->dry_run = (r->flags & RL2_REFUND_F_DRY_RUN) != 0;
    l->overflow_used = (r->flags & RL2_REFUND_F_OVERFLOW) != 0;
    l->committed = 1;
    l->committed_us = r->committed_us;
}

size_t
rl2_refunds_claim(rl2_refund_queue_t *q, size_t *pos, rl2_layer_t *layers,
                  rl2_limit_t *limits, uint32_t *slots, size_t max,
                  int64_t now_us)
{
    pid_t  self = getpid();
    size_t n = 0;

    for (; *pos < RL2_REFUND_SLOTS && n < max; (*pos)++) {
        rl2_refund_slot_t *s = &q->slot[*pos];
        uint64_t w = atomic_load_explicit(&s->owner, memory_order_acquire);

        if (rl2_refund_word_state(w) == SLOT_FILLING
            || rl2_refund_word_state(w) == SLOT_SENDING) {
            rl2_refund_reclaim(q, s, w, self, now_us);
            continue;
        }
        if (w != rl2_refund_word(SLOT_READY, 0)
            || !rl2_refund_take(s, w, rl2_refund_word(SLOT_SENDING, self))) {
            continue;
        }
        atomic_fetch_sub_explicit(&q->pending, 1, memory_order_relaxed);
        if (now_us - s->rec.queued_us > RL2_REFUND_MAX_AGE_US) {
            rl2_refund_release(s);
            rl2_refund_count(&q->dropped, 1);
            continue;
        }
        rl2_refund_rec_layer(&s->rec, &layers[n], &limits[n]);
        slots[n++] = (uint32_t)*pos;
    }
    return n;
}

/* Only a slot still this process's SENDING is freed and counted: one
 * taken back meanwhile (rl2_refund_reclaim) was counted by who took it,
 * and may already hold another record. */
void
rl2_refunds_finish(rl2_refund_queue_t *q, const uint32_t *slots, size_t n,
                   rl2_refund_outcome_t outcome)
{
    uint64_t mine = rl2_refund_word(SLOT_SENDING, getpid());
    size_t   freed = 0;

    for (size_t i = 0; i < n; i++) {
        freed += (size_t)rl2_refund_take(&q->slot[slots[i] % RL2_REFUND_SLOTS],
                                         mine, rl2_refund_word(SLOT_FREE, 0));
    }
    rl2_refund_count(outcome == RL2_REFUND_REPLAYED ? &q->replayed
                     : outcome == RL2_REFUND_FAILED ? &q->failed
                                                    : &q->dropped,
                     freed);
}

void
rl2_refunds_failed(rl2_refund_queue_t *q, size_t n)
{
    rl2_refund_count(&q->failed, n);
}

void
rl2_refunds_stats(const rl2_refund_queue_t *q, rl2_circuit_stats_t *out)
{
    out->refunds_queued = atomic_load(&q->queued);
    out->refunds_replayed = atomic_load(&q->replayed);
    out->refunds_dropped = atomic_load(&q->dropped);
    out->refunds_failed = atomic_load(&q->failed);
    out->refunds_pending = atomic_load(&q->pending);
}
