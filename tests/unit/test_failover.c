/*
 * test_failover.c -- the failover store (store_failover.c) over a fake
 * primary store and a real local zone: routing through the circuit, the
 * alerts of one outage, the modes local (with local_share), open and
 * closed, refunds to the store that counted and the queue of refunds
 * owed to Redis, slow answers, peeks.  The
 * fixture is failover_fixture.h; the circuit alone is in test_circuit.c.
 */
#include <signal.h>
#include <stdatomic.h>

#include "failover_fixture.h"
#include "store/store_internal.h"

/* ---- the failover store ------------------------------------------------ */

static void
test_closed_circuit_goes_to_primary_and_marks_commits(void **state)
{
    rl2_limit_t      lim;
    rl2_layer_t      l;
    rl2_zone_stats_t zs = { 0 };

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 10, 1);
    make_layer(&l, &lim, "a");
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    assert_int_equal(fx.primary.applies, 1);
    assert_int_equal(l.committed, RL2_COMMITTED_PRIMARY);
    assert_int_equal(rl2_zone_stats(fx.zone, &zs, NULL), RL2_OK);
    assert_int_equal(zs.used, 0);
    assert_ptr_equal(l.limit, &lim);
}

/* One failure opens the circuit, the same request is answered locally,
 * and no later request touches the primary until the probe. */
static void
test_failure_answers_locally_and_spares_the_primary(void **state)
{
    rl2_limit_t  lim;
    rl2_layer_t  l;
    rl2_digest_t key;
    char         got[2048];

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 3, 1);
    make_layer(&l, &lim, "a");
    key = l.key;
    fx.primary.fail = 1;
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    assert_int_equal(fx.primary.applies, 1);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_OPEN);
    assert_int_equal(l.committed, RL2_COMMITTED_FALLBACK);
    assert_int_equal(l.result.remaining, 2);
    /* Put back as they were: the caller's limit and key. */
    assert_ptr_equal(l.limit, &lim);
    assert_memory_equal(&l.key, &key, sizeof(key));
    assert_int_equal(admitted(&lim, "a", 5), 2);
    assert_int_equal(fx.primary.applies, 1);
    alerts(got, sizeof(got));
    assert_string_equal(
        got, "ratelimit2: event=redis_down store=fake "
             "error=\"fake: connection refused\"|"
             "ratelimit2: event=failover_enter mode=local local_share=1 "
             "probe_interval_ms=1000");
    /* The probe: still failing, so one call, still open, no alert. */
    fake_us += PROBE_US;
    assert_int_equal(admitted(&lim, "b", 3), 3);
    assert_int_equal(fx.primary.applies, 2);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_OPEN);
    alerts(got, sizeof(got));
    assert_string_equal(got, "");
}

static void
test_successful_probe_closes_and_alerts_once(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;
    char        got[2048];

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    outage();
    alerts(got, sizeof(got));
    fx.primary.fail = 0;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 10, 1);
    fake_us += PROBE_US / 2;
    assert_int_equal(admitted(&lim, "a", 1), 1);
    assert_int_equal(fx.primary.applies, 1); /* not yet */
    fake_us += PROBE_US / 2;
    make_layer(&l, &lim, "a");
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    assert_int_equal(fx.primary.applies, 2); /* the probe */
    assert_int_equal(l.committed, RL2_COMMITTED_PRIMARY);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_CLOSED);
    assert_int_equal(admitted(&lim, "a", 3), 3);
    assert_int_equal(fx.primary.applies, 5);
    alerts(got, sizeof(got));
    assert_string_equal(
        got, "ratelimit2: event=redis_up store=fake down_ms=1000|"
             "ratelimit2: event=failover_leave mode=local down_ms=1000");
}

static void
test_local_share_half_admits_floor_half(void **state)
{
    static const int64_t counts[] = { 1, 2, 3, 7, 10, 11, 100 };
    rl2_limit_t          lim;
    char                 key[16];

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, 500000);
    outage();
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        int64_t want = counts[i] / 2 > 0 ? counts[i] / 2 : 1;

        snprintf(key, sizeof(key), "fw%zu", i);
        make_limit(&lim, RL2_ALGO_FIXED_WINDOW, counts[i], 1);
        assert_int_equal(admitted(&lim, key, (int)counts[i] + 5), want);
        snprintf(key, sizeof(key), "tb%zu", i);
        make_limit(&lim, RL2_ALGO_TOKEN_BUCKET, counts[i], 1);
        assert_int_equal(admitted(&lim, key, (int)counts[i] + 5), want);
        snprintf(key, sizeof(key), "sl%zu", i);
        make_limit(&lim, RL2_ALGO_SLIDING_LOG, counts[i], 1);
        assert_int_equal(admitted(&lim, key, (int)counts[i] + 5), want);
    }
    assert_int_equal(fx.primary.applies, 1);
}

/* A share that would leave less than one request's cost keeps the cost,
 * or the request could never pass. */
static void
test_scaled_limit_never_below_one_request(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, 100000);
    outage();
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 10, 4);
    assert_int_equal(admitted(&lim, "c", 5), 1);
    make_layer(&l, &lim, "d");
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    assert_int_equal(l.result.limit, 4);
}

/* Counters of the scaled limits are kept apart from counters the zone
 * holds for the same key under the unscaled limit. */
static void
test_failover_counters_are_apart_from_direct_zone_use(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, 500000);
    make_limit(&lim, RL2_ALGO_SLIDING_LOG, 8, 1);
    for (int i = 0; i < 8; i++) {
        make_layer(&l, &lim, "k");
        assert_int_equal(apply(fx.local, &l, 1), RL2_OK);
        assert_false(l.refused);
    }
    outage();
    assert_int_equal(admitted(&lim, "k", 10), 4);
}

static void
test_mode_open_passes_everything_uncounted(void **state)
{
    rl2_limit_t      lim;
    rl2_layer_t      l;
    rl2_zone_stats_t zs = { 0 };
    char             got[2048];

    (void)state;
    make_store(RL2_FAILOVER_OPEN, RL2_SHARE_ONE);
    outage();
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 2, 1);
    for (int i = 0; i < 10; i++) {
        make_layer(&l, &lim, "a");
        assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
        assert_false(l.refused);
        assert_true(l.result.allowed);
        assert_int_equal(l.result.remaining, 2);
        assert_int_equal(l.result.limit, 2);
        assert_int_equal(l.committed, 0);
    }
    assert_int_equal(refund(fx.store, &l, 1), RL2_OK);
    assert_int_equal(rl2_zone_stats(fx.zone, &zs, NULL), RL2_OK);
    assert_int_equal(zs.used, 0);
    assert_int_equal(fx.primary.applies, 1);
    assert_int_equal(fx.primary.refunds, 0);
    alerts(got, sizeof(got));
    assert_string_equal(got, "ratelimit2: event=redis_down store=fake "
                             "error=\"fake: connection refused\"|"
                             "ratelimit2: event=failover_enter mode=open");
    assert_false(rl2_failover_refusing(fx.store, NULL));
}

static void
test_mode_closed_refuses_with_retry_after(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;
    rl2_clock_t now = { 0, WALL_US };
    rl2_err_t   err = { "" };
    int64_t     retry = 0;

    (void)state;
    make_store(RL2_FAILOVER_CLOSED, RL2_SHARE_ONE);
    assert_false(rl2_failover_refusing(fx.store, &retry));
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 2, 1);
    make_layer(&l, &lim, "a");
    fx.primary.fail = 1;
    now.mono_us = fake_us;
    assert_int_equal(fx.store->ops->apply(fx.store, &l, 1, &now, &err),
                     RL2_ERR_STORE);
    assert_non_null(strstr(err.msg, "closed"));
    assert_int_equal(l.committed, 0);
    assert_true(rl2_failover_refusing(fx.store, &retry));
    assert_int_equal(retry, 1);
    assert_false(rl2_failover_refusing(fx.local, &retry)); /* not ours */
    /* Back: the probe answers, nothing refused any more. */
    fx.primary.fail = 0;
    fake_us += PROBE_US;
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    assert_false(rl2_failover_refusing(fx.store, &retry));
    /* Retry-After is the probe interval rounded up to seconds. */
    rl2_store_destroy(fx.store);
    fx.store = NULL;
    rl2_circuit_close(fx.circuit);
    fx.circuit = circuit_open(1, 1500, 0);
    make_store(RL2_FAILOVER_CLOSED, RL2_SHARE_ONE);
    assert_int_equal(
        rl2_circuit_failure(fx.circuit, RL2_ROUTE_PRIMARY, fake_us), 1);
    assert_true(rl2_failover_refusing(fx.store, &retry));
    assert_int_equal(retry, 2);
}

/* Refunds go to the store that counted, whatever the circuit does
 * between the commit and the refund. */
static void
test_refund_goes_to_the_store_that_counted(void **state)
{
    rl2_limit_t         conc, fw;
    rl2_layer_t         a, b, mixed[2];
    rl2_circuit_stats_t cs;

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(&conc, RL2_ALGO_CONCURRENCY, 1, 1);
    make_limit(&fw, RL2_ALGO_FIXED_WINDOW, 10, 1);
    /* Counted by Redis, refunded while closed: Redis. */
    make_layer(&a, &fw, "r");
    assert_int_equal(apply(fx.store, &a, 1), RL2_OK);
    mixed[0] = a; /* Redis counted it */
    assert_int_equal(refund(fx.store, &a, 1), RL2_OK);
    assert_int_equal(fx.primary.refunded, 1);
    /* Counted locally while open: refunded locally, and a copy of the
     * layer (as rl2_decide_end makes) finds it too. */
    outage();
    make_layer(&a, &conc, "slot");
    assert_int_equal(apply(fx.store, &a, 1), RL2_OK);
    assert_int_equal(a.committed, RL2_COMMITTED_FALLBACK);
    make_layer(&b, &conc, "slot");
    assert_int_equal(apply(fx.store, &b, 1), RL2_OK);
    assert_true(b.refused);
    b = a;
    assert_int_equal(refund(fx.store, &b, 1), RL2_OK);
    assert_int_equal(admitted(&conc, "slot", 2), 1);
    /* Counted by Redis, refunded while open: queued, not sent. */
    assert_int_equal(refund(fx.store, &mixed[0], 1), RL2_OK);
    assert_int_equal(fx.primary.refunded, 1);
    rl2_circuit_stats(fx.circuit, &cs);
    assert_int_equal(cs.refunds_queued, 1);
    assert_int_equal(cs.refunds_pending, 1);
    /* Counted locally, refunded after the circuit closed: still local. */
    make_layer(&mixed[1], &conc, "slot2");
    assert_int_equal(apply(fx.store, &mixed[1], 1), RL2_OK);
    assert_int_equal(mixed[1].committed, RL2_COMMITTED_FALLBACK);
    fx.primary.fail = 0;
    fake_us += PROBE_US;
    assert_int_equal(admitted(&fw, "probe", 1), 1);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_CLOSED);
    assert_int_equal(fx.primary.refunded, 2); /* the probe replayed it */
    /* One call with both: one layer to each store. */
    assert_int_equal(refund(fx.store, mixed, 2), RL2_OK);
    assert_int_equal(fx.primary.refunds, 3);
    assert_int_equal(fx.primary.refunded, 3);
    fx.primary.fail = 1;
    fake_us += PROBE_US;
    outage();
    assert_int_equal(admitted(&conc, "slot2", 2), 1); /* it was freed */
}

/* A refund Redis fails counts as a failure of the circuit. */
static void
test_failed_redis_refund_opens_the_circuit(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 10, 1);
    make_layer(&l, &lim, "a");
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    fx.primary.fail = 1;
    assert_int_equal(refund(fx.store, &l, 1), RL2_ERR_STORE);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_OPEN);
}

/* ---- refunds owed to Redis ---------------------------------------------- */

static void
stats(rl2_circuit_stats_t *cs)
{
    rl2_circuit_stats(fx.circuit, cs);
}

/* A probe, one interval on: the fake primary answers it when ok. */
static void
probe(int ok)
{
    rl2_limit_t lim;
    rl2_layer_t l;

    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 1000, 1);
    make_layer(&l, &lim, "probe");
    fx.primary.fail = !ok;
    fake_us += PROBE_US;
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
}

/* A concurrency slot Redis counted, released while the circuit is open:
 * queued with what the refund script needs, sent by the probe that
 * closes the circuit, and only once. */
static void
test_release_while_open_is_queued_and_replayed_once(void **state)
{
    rl2_limit_t         conc;
    rl2_layer_t         l, other;
    rl2_circuit_stats_t cs;

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(&conc, RL2_ALGO_CONCURRENCY, 1, 1);
    make_layer(&l, &conc, "stream");
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    assert_int_equal(l.committed, RL2_COMMITTED_PRIMARY);
    outage();
    assert_int_equal(refund(fx.store, &l, 1), RL2_OK);
    assert_int_equal(fx.primary.refunds, 0);
    stats(&cs);
    assert_int_equal(cs.refunds_queued, 1);
    assert_int_equal(cs.refunds_pending, 1);
    assert_int_equal(cs.refunds_dropped, 0);
    /* Still open (a failed probe): nothing sent. */
    probe(0);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_OPEN);
    assert_int_equal(fx.primary.refunds, 0);
    probe(1);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_CLOSED);
    assert_int_equal(fx.primary.refunds, 1);
    assert_int_equal(fx.primary.refunded, 1);
    assert_memory_equal(&fx.primary.last_refund.key, &l.key, sizeof(l.key));
    assert_int_equal(fx.primary.last_refund.committed_us, l.committed_us);
    assert_int_equal(fx.primary.last_refund.limit_algo, RL2_ALGO_CONCURRENCY);
    assert_int_equal(fx.primary.last_refund.limit_count, 1);
    stats(&cs);
    assert_int_equal(cs.refunds_replayed, 1);
    assert_int_equal(cs.refunds_pending, 0);
    /* Later probes and refunds Redis answers send nothing again. */
    make_layer(&other, &conc, "other");
    assert_int_equal(apply(fx.store, &other, 1), RL2_OK);
    assert_int_equal(refund(fx.store, &other, 1), RL2_OK);
    assert_int_equal(fx.primary.refunded, 2);
    fx.primary.fail = 1;
    outage();
    probe(1);
    assert_int_equal(fx.primary.refunded, 2);
    stats(&cs);
    assert_int_equal(cs.refunds_replayed, 1);
}

/* The queue holds RL2_REFUND_SLOTS layers; past that a refund is counted
 * dropped at once, without waiting or touching Redis.  The replay sends
 * RL2_MAX_LAYERS layers a call. */
static void
test_full_queue_drops_and_counts(void **state)
{
    enum { EXTRA = 5 };
    rl2_limit_t         conc;
    rl2_layer_t         l;
    rl2_circuit_stats_t cs;
    char                key[32];

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(&conc, RL2_ALGO_CONCURRENCY, 1, 1);
    outage();
    fx.primary.fail = 0;
    for (int i = 0; i < RL2_REFUND_SLOTS + EXTRA; i++) {
        snprintf(key, sizeof(key), "c%d", i);
        make_layer(&l, &conc, key);
        l.committed = RL2_COMMITTED_PRIMARY;
        l.committed_us = fake_us;
        assert_int_equal(refund(fx.store, &l, 1), RL2_OK);
    }
    assert_int_equal(fx.primary.refunds, 0);
    stats(&cs);
    assert_int_equal(cs.refunds_queued, RL2_REFUND_SLOTS);
    assert_int_equal(cs.refunds_pending, RL2_REFUND_SLOTS);
    assert_int_equal(cs.refunds_dropped, EXTRA);
    probe(1);
    assert_int_equal(fx.primary.refunds, RL2_REFUND_SLOTS / RL2_MAX_LAYERS);
    assert_int_equal(fx.primary.refunded, RL2_REFUND_SLOTS);
    stats(&cs);
    assert_int_equal(cs.refunds_replayed, RL2_REFUND_SLOTS);
    assert_int_equal(cs.refunds_pending, 0);
}

/* A failover store whose Redis holds one slot of a concurrency limit of
 * one for the layer l. */
static void
hold_one_slot(rl2_limit_t *conc, rl2_layer_t *l)
{
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(conc, RL2_ALGO_CONCURRENCY, 1, 1);
    make_layer(l, conc, "s");
    assert_int_equal(apply(fx.store, l, 1), RL2_OK);
}

/* hold_one_slot, then Redis goes away and the slot's release is queued
 * for it. */
static void
queue_one_release(rl2_limit_t *conc, rl2_layer_t *l)
{
    hold_one_slot(conc, l);
    outage();
    assert_int_equal(refund(fx.store, l, 1), RL2_OK);
}

/* A replay Redis does not answer was sent: it is counted failed and not
 * sent again (Redis may still run it), and it opens the circuit again. */
static void
test_failed_replay_is_not_sent_again(void **state)
{
    rl2_limit_t         conc;
    rl2_layer_t         l;
    rl2_circuit_stats_t cs;

    (void)state;
    queue_one_release(&conc, &l);
    fx.primary.fail_refunds = 1;
    probe(1);
    assert_int_equal(fx.primary.refunds, 1);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_OPEN);
    stats(&cs);
    assert_int_equal(cs.refunds_failed, 1);
    assert_int_equal(cs.refunds_pending, 0);
    fx.primary.fail_refunds = 0;
    probe(1);
    assert_int_equal(fx.primary.refunds, 1);
}

/* A refund sent to Redis while the circuit is closed that gets no
 * answer is counted failed and not queued. */
static void
test_unanswered_refund_is_counted_not_queued(void **state)
{
    rl2_limit_t         conc;
    rl2_layer_t         l;
    rl2_circuit_stats_t cs;

    (void)state;
    hold_one_slot(&conc, &l);
    fx.primary.fail = 1;
    assert_int_equal(refund(fx.store, &l, 1), RL2_ERR_STORE);
    stats(&cs);
    assert_int_equal(cs.refunds_failed, 1);
    assert_int_equal(cs.refunds_queued, 0);
    assert_int_equal(cs.refunds_pending, 0);
    probe(1);
    assert_int_equal(fx.primary.refunds, 1);
}

/* A refund that waited longer than RL2_REFUND_MAX_AGE_US is not sent: the
 * key that counted it may be gone and another in its place. */
static void
test_refund_too_old_is_dropped(void **state)
{
    rl2_limit_t         conc;
    rl2_layer_t         l;
    rl2_circuit_stats_t cs;

    (void)state;
    queue_one_release(&conc, &l);
    fake_us += RL2_REFUND_MAX_AGE_US;
    probe(1);
    assert_int_equal(fx.primary.refunds, 0);
    stats(&cs);
    assert_int_equal(cs.refunds_dropped, 1);
    assert_int_equal(cs.refunds_pending, 0);
}

/* A process that dies holding a slot (claimed, not finished) does not
 * keep it: the next replay takes it back and counts it failed, since it
 * may have been sent. */
static void
test_slot_of_a_dead_process_is_taken_back(void **state)
{
    rl2_limit_t         conc, limits[1];
    rl2_layer_t         l, claimed[1];
    rl2_circuit_stats_t cs;
    uint32_t            slots[1];
    size_t              pos = 0;
    pid_t               pid;
    int                 status;

    (void)state;
    queue_one_release(&conc, &l);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rl2_circuit_t *c = circuit_open(1, 1000, 0);

        _exit(c != NULL
                      && rl2_refunds_claim(rl2_circuit_refunds(c), &pos,
                                           claimed, limits, slots, 1, fake_us)
                             == 1
                  ? 0
                  : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    stats(&cs);
    assert_int_equal(cs.refunds_pending, 0);
    /* The next replay with something to send takes the slot back. */
    assert_int_equal(refund(fx.store, &l, 1), RL2_OK);
    probe(1);
    stats(&cs);
    assert_int_equal(cs.refunds_failed, 1);
    assert_int_equal(cs.refunds_replayed, 1);
    assert_int_equal(fx.primary.refunds, 1);
    assert_int_equal(fx.primary.refunded, 1);
}

/* Owner words as refund_queue.c writes them: state << 32 | pid. */
enum { QSLOT_FILLING = 1, QSLOT_SENDING = 3 };

static uint64_t
qword(uint32_t state, pid_t pid)
{
    return (uint64_t)state << 32 | (uint32_t)pid;
}

/* A process id nobody has any more. */
static pid_t
gone_pid(void)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(0);
    }
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return pid;
}

/* A pusher killed between counting its record pending and publishing it
 * (the two stores at the end of rl2_refund_push_one) leaves its slot
 * FILLING and pending one up.  The replay takes the slot back and counts
 * it dropped, so pending must come back down: else it never reaches 0
 * again, and every refund Redis answers on a closed circuit, the hot
 * path's, scans all RL2_REFUND_SLOTS slots for nothing, for the life of
 * the circuit's shm object. */
static void
test_writer_killed_after_counting_leaves_nothing_pending(void **state)
{
    rl2_limit_t         conc;
    rl2_layer_t         l;
    rl2_refund_queue_t *q;
    rl2_circuit_stats_t cs;

    (void)state;
    hold_one_slot(&conc, &l);
    outage();
    q = rl2_circuit_refunds(fx.circuit);
    /* The queue as the killed pusher left it. */
    atomic_fetch_add(&q->pending, 1);
    atomic_store(&q->slot[7].owner, qword(QSLOT_FILLING, gone_pid()));
    probe(1);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_CLOSED);
    assert_int_equal(atomic_load(&q->slot[7].owner), 0);
    stats(&cs);
    assert_int_equal(cs.refunds_dropped, 1);
    assert_int_equal(cs.refunds_pending, 0);
}

/* A replayer that dies while sending leaves its slot SENDING under its
 * pid; once that pid belongs to another process (reused, or a process
 * of another user: kill() says EPERM), kill(pid, 0) succeeds and the
 * slot is never taken back: one slot fewer for as long as that process
 * lives, and a record counted neither replayed, failed, dropped nor
 * pending.  A record is claimed at most RL2_REFUND_MAX_AGE_US after it
 * was queued and its send is over within RL2_REFUND_SEND_GRACE_US, so
 * past both the slot must be free and counted. */
static void
test_slot_of_a_reused_pid_is_taken_back_in_time(void **state)
{
    rl2_limit_t         conc, limits[1];
    rl2_layer_t         l, claimed[1], other;
    rl2_refund_queue_t *q;
    rl2_circuit_stats_t cs;
    uint32_t            slots[1];
    size_t              pos = 0;
    pid_t               reused;

    (void)state;
    queue_one_release(&conc, &l);
    q = rl2_circuit_refunds(fx.circuit);
    assert_int_equal(
        rl2_refunds_claim(q, &pos, claimed, limits, slots, 1, fake_us), 1);
    /* The claimer died; its pid now names a live process. */
    reused = fork();
    assert_true(reused >= 0);
    if (reused == 0) {
        pause();
        _exit(0);
    }
    atomic_store(&q->slot[slots[0]].owner, qword(QSLOT_SENDING, reused));
    fake_us += RL2_REFUND_MAX_AGE_US + RL2_REFUND_SEND_GRACE_US + SEC_US;
    /* Replays with something to send, well past the age limit. */
    make_layer(&other, &conc, "other");
    other.committed = RL2_COMMITTED_PRIMARY;
    other.committed_us = fake_us;
    assert_int_equal(refund(fx.store, &other, 1), RL2_OK);
    probe(1);
    kill(reused, SIGKILL);
    waitpid(reused, NULL, 0);
    stats(&cs);
    assert_int_equal(atomic_load(&q->slot[slots[0]].owner), 0);
    assert_int_equal(cs.refunds_queued, cs.refunds_replayed + cs.refunds_failed
                                            + cs.refunds_dropped
                                            + cs.refunds_pending);
}

static void
test_slow_answer_opens_the_circuit_but_is_used(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;
    char        got[2048];

    (void)state;
    rl2_circuit_close(fx.circuit);
    fx.circuit = circuit_open(1, 1000, 200);
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 10, 1);
    make_layer(&l, &lim, "a");
    fx.primary.delay_us = 200000; /* not more than slow_ms */
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_CLOSED);
    fx.primary.delay_us = 300000;
    make_layer(&l, &lim, "a");
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    assert_int_equal(l.committed, RL2_COMMITTED_PRIMARY);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_OPEN);
    alerts(got, sizeof(got));
    assert_non_null(strstr(got, "event=redis_down store=fake "
                                "error=\"answer took 300 ms (slow_ms 200)\""));
}

/* A malformed request is the caller's error, not Redis failing. */
static void
test_other_errors_pass_through_without_a_failure(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;
    rl2_clock_t now = { T0_US, WALL_US };
    rl2_err_t   err = { "" };

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 10, 1);
    make_layer(&l, &lim, "a");
    fx.primary.other = RL2_ERR_INVALID;
    assert_int_equal(fx.store->ops->apply(fx.store, &l, 1, &now, &err),
                     RL2_ERR_INVALID);
    assert_string_equal(err.msg, "fake: malformed");
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_CLOSED);
    assert_int_equal(apply(fx.store, &l, RL2_MAX_LAYERS + 1), RL2_ERR_INVALID);
}

static void
test_peek_follows_the_circuit_and_counts_nothing(void **state)
{
    rl2_limit_t lim;
    rl2_layer_t l;
    rl2_clock_t now = { 0, WALL_US };

    (void)state;
    make_store(RL2_FAILOVER_LOCAL, RL2_SHARE_ONE);
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 3, 1);
    make_layer(&l, &lim, "a");
    now.mono_us = fake_us;
    assert_int_equal(fx.store->ops->peek(fx.store, &l, 1, &now, NULL), RL2_OK);
    assert_int_equal(fx.primary.peeks, 1);
    outage();
    assert_int_equal(admitted(&lim, "a", 1), 1);
    make_layer(&l, &lim, "a");
    assert_int_equal(fx.store->ops->peek(fx.store, &l, 1, &now, NULL), RL2_OK);
    assert_int_equal(fx.primary.peeks, 1);
    assert_int_equal(l.result.remaining, 1); /* after this one, if made */
    assert_int_equal(l.committed, 0);
    assert_int_equal(admitted(&lim, "a", 5), 2);
}

/* 8 processes, each with its own failover store over the shared circuit
 * and alert state, all see Redis fail at once: one outage, one
 * redis_down line and one failover_enter line. */
static void
test_one_outage_seen_by_8_processes_gives_one_alert(void **state)
{
    enum { PROCS = 8 };
    pid_t pids[PROCS];
    int   go[2], status;
    char  c, got[4096];

    rl2_limit_t lim;

    (void)state;
    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 10, 1);
    fx.primary.fail = 1;
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            rl2_circuit_t      *circuit = circuit_open(1, 1000, 0);
            rl2_alert_t        *alert = alert_open();
            rl2_failover_conf_t conf;
            rl2_store_t        *store = NULL;
            rl2_layer_t         l;

            /* No cmocka assertions in a child: exit statuses. */
            close(go[1]);
            rl2_failover_conf_default(&conf);
            conf.alert = alert;
            conf.clock_us = fake_clock_us;
            make_layer(&l, &lim, "x");
            if (circuit == NULL || alert == NULL
                || rl2_store_failover_create(&fx.primary.base, fx.local,
                                             circuit, &conf, &store, NULL)
                       != RL2_OK) {
                _exit(2);
            }
            (void)!read(go[0], &c, 1); /* EOF: everyone starts */
            _exit(apply(store, &l, 1) == RL2_OK && !l.refused ? 0 : 3);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < PROCS; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_OPEN);
    alerts(got, sizeof(got));
    assert_string_equal(
        got, "ratelimit2: event=redis_down store=fake "
             "error=\"fake: connection refused\"|"
             "ratelimit2: event=failover_enter mode=local local_share=1 "
             "probe_interval_ms=1000");
}

int
main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_closed_circuit_goes_to_primary_and_marks_commits),
        T(test_failure_answers_locally_and_spares_the_primary),
        T(test_successful_probe_closes_and_alerts_once),
        T(test_local_share_half_admits_floor_half),
        T(test_scaled_limit_never_below_one_request),
        T(test_failover_counters_are_apart_from_direct_zone_use),
        T(test_mode_open_passes_everything_uncounted),
        T(test_mode_closed_refuses_with_retry_after),
        T(test_refund_goes_to_the_store_that_counted),
        T(test_failed_redis_refund_opens_the_circuit),
        T(test_release_while_open_is_queued_and_replayed_once),
        T(test_full_queue_drops_and_counts),
        T(test_failed_replay_is_not_sent_again),
        T(test_unanswered_refund_is_counted_not_queued),
        T(test_refund_too_old_is_dropped),
        T(test_slot_of_a_dead_process_is_taken_back),
        T(test_writer_killed_after_counting_leaves_nothing_pending),
        T(test_slot_of_a_reused_pid_is_taken_back_in_time),
        T(test_slow_answer_opens_the_circuit_but_is_used),
        T(test_other_errors_pass_through_without_a_failure),
        T(test_peek_follows_the_circuit_and_counts_nothing),
        T(test_one_outage_seen_by_8_processes_gives_one_alert),
    };

    /* Local time in the syslog header: UTC, so lines are exact. */
    setenv("TZ", "UTC", 1);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
