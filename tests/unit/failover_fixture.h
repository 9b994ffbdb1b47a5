/*
 * failover_fixture.h -- what test_circuit.c and test_failover.c share: a
 * fake monotonic clock, a fake primary store, and a fixture with a real
 * local zone, a circuit, alert state and a syslog socket of its own.
 *
 * The fake primary is a test double implementing the store vtable that
 * fails on demand; the clock is faked, so probe intervals pass when a test
 * says so.  Alerts go to a unix datagram socket the fixture binds in a
 * temporary directory.  Shared objects get names with this process' id
 * and are unlinked by teardown.  Included by one test program each, so
 * everything here is static.
 */
#ifndef RL2_FAILOVER_FIXTURE_H
#define RL2_FAILOVER_FIXTURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit2/failover.h"
#include "ratelimit2/policy.h"
#include "ratelimit2/store.h"
#include "ratelimit2/store_local.h"
#include "base/base_internal.h"
#include "store/store_internal.h"

#define WATCHDOG_S 30
#define T0_US      1000000000LL /* an arbitrary monotonic time */
#define WALL_US    1704164645000000LL
#define SEC_US     1000000LL
#define MIN_US     (60 * SEC_US)
#define PROBE_US   SEC_US /* the default probe interval */

/* Not every program that includes this uses every helper. */
#define HELPER static __attribute__((unused))

/* ---- the fake clock and the fake primary ------------------------------ */

static int64_t fake_us;

static int64_t
fake_clock_us(void)
{
    return fake_us;
}

static void
fake_clock(rl2_clock_t *now)
{
    now->mono_us = fake_us;
    now->wall_us = WALL_US;
}

typedef struct {
    rl2_store_t  base;
    int          fail;         /* every call: RL2_ERR_STORE */
    rl2_status_t other;        /* else this status when not RL2_OK */
    int64_t      delay_us;     /* the fake clock moves this much per call */
    int          fail_refunds; /* refunds only: RL2_ERR_STORE */
    int          applies, peeks, refunds;
    size_t       refunded; /* layers handed to refund */
    struct {               /* the last layer handed to refund */
        rl2_digest_t key;
        int64_t      committed_us;
        rl2_algo_t   limit_algo;
        int64_t      limit_count;
    } last_refund;
} fake_t;

static rl2_status_t
fake_call(rl2_store_t *store, int *calls, rl2_layer_t *layers, size_t n,
          int commit, rl2_err_t *err)
{
    fake_t *f = (fake_t *)store;

    (*calls)++;
    fake_us += f->delay_us;
    if (f->fail) {
        /* As a Cluster store failing on its second slot might: counted
         * one layer, then failed. */
        layers[0].committed = commit;
        return rl2_err_set(err, RL2_ERR_STORE, "fake: connection refused");
    }
    if (f->other != RL2_OK) {
        return rl2_err_set(err, f->other, "fake: malformed");
    }
    for (size_t i = 0; i < n; i++) {
        int64_t q = layers[i].limit->algo.limit;

        layers[i].result = (rl2_algo_result_t){ 1, q, q - 1, 0, 0 };
        layers[i].refused = 0;
        layers[i].committed = commit;
        layers[i].committed_us = commit ? fake_us : 0;
    }
    return RL2_OK;
}

static rl2_status_t
fake_apply(rl2_store_t *s, rl2_layer_t *l, size_t n, const rl2_clock_t *now,
           rl2_err_t *err)
{
    (void)now;
    return fake_call(s, &((fake_t *)s)->applies, l, n, 1, err);
}

static rl2_status_t
fake_peek(rl2_store_t *s, rl2_layer_t *l, size_t n, const rl2_clock_t *now,
          rl2_err_t *err)
{
    (void)now;
    return fake_call(s, &((fake_t *)s)->peeks, l, n, 0, err);
}

static rl2_status_t
fake_refund(rl2_store_t *s, rl2_layer_t *l, size_t n, const rl2_clock_t *now,
            rl2_err_t *err)
{
    fake_t *f = (fake_t *)s;

    (void)now;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(l[i].committed, 1); /* the mark is ours */
    }
    f->refunds++;
    f->refunded += n;
    if (n > 0) {
        f->last_refund.key = l[n - 1].key;
        f->last_refund.committed_us = l[n - 1].committed_us;
        f->last_refund.limit_algo = l[n - 1].limit->algo.algo;
        f->last_refund.limit_count = l[n - 1].limit->algo.limit;
    }
    return f->fail || f->fail_refunds
               ? rl2_err_set(err, RL2_ERR_STORE, "fake: refund failed")
               : RL2_OK;
}

static void
fake_destroy(rl2_store_t *s)
{
    (void)s;
}

static rl2_status_t
fake_reset(rl2_store_t *s, rl2_layer_t *layers, size_t n,
           const rl2_clock_t *now, rl2_err_t *err)
{
    fake_t *f = (fake_t *)s;

    (void)layers;
    (void)n;
    (void)now;
    return f->fail ? rl2_err_set(err, RL2_ERR_STORE, "fake: reset failed")
                   : RL2_OK;
}

static const rl2_store_ops_t fake_ops = { "fake",    fake_apply,   fake_refund,
                                          fake_peek, fake_destroy, fake_reset };

/* ---- fixture ----------------------------------------------------------- */

static struct {
    char           dir[64], sock_path[128];
    char           zone_name[64], circuit_name[64], alert_name[64];
    int            sock;
    rl2_policy_t  *policy;
    rl2_zone_t    *zone;
    rl2_store_t   *local;
    rl2_circuit_t *circuit;
    rl2_alert_t   *alert;
    fake_t         primary;
    rl2_store_t   *store; /* the failover store under test */
} fx;

static rl2_alert_t *
alert_open(void)
{
    rl2_alert_conf_t conf;
    rl2_alert_t     *a = NULL;

    rl2_alert_conf_default(&conf);
    conf.socket_path = fx.sock_path;
    conf.shm_name = fx.alert_name;
    conf.clock = fake_clock;
    return rl2_alert_open(&conf, &a, NULL) == RL2_OK ? a : NULL;
}

static rl2_circuit_t *
circuit_open(uint32_t failures, int64_t probe_ms, int64_t slow_ms)
{
    rl2_circuit_conf_t conf;
    rl2_circuit_t     *c = NULL;

    rl2_circuit_conf_default(&conf);
    conf.failures_to_open = failures;
    conf.probe_interval_ms = probe_ms;
    conf.slow_ms = slow_ms;
    return rl2_circuit_open(fx.circuit_name, &conf, 0600, &c, NULL) == RL2_OK
               ? c
               : NULL;
}

static int
setup(void **state)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    long               pid = (long)getpid();

    (void)state;
    alarm(WATCHDOG_S);
    memset(&fx, 0, sizeof(fx));
    fake_us = T0_US;
    fx.primary.base.ops = &fake_ops;
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/rl2fo.XXXXXX");
    assert_non_null(mkdtemp(fx.dir));
    snprintf(fx.sock_path, sizeof(fx.sock_path), "%s/log", fx.dir);
    snprintf(fx.zone_name, sizeof(fx.zone_name), "/rl2test-%ld-fz", pid);
    snprintf(fx.circuit_name, sizeof(fx.circuit_name),
             "/rl2test-%ld-fz.circuit", pid);
    snprintf(fx.alert_name, sizeof(fx.alert_name), "/rl2test-%ld-fz.alert",
             pid);
    strcpy(sa.sun_path, fx.sock_path);
    fx.sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(fx.sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(rl2_policy_create("test", &fx.policy, NULL), RL2_OK);
    assert_int_equal(
        rl2_zone_open(fx.zone_name, 64, 1024, 0600, &fx.zone, NULL), RL2_OK);
    assert_int_equal(rl2_store_local_create(fx.zone, &fx.local, NULL), RL2_OK);
    assert_non_null(fx.circuit = circuit_open(1, 1000, 0));
    assert_non_null(fx.alert = alert_open());
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    alarm(0);
    rl2_store_destroy(fx.store);
    rl2_store_destroy(fx.local);
    rl2_zone_close(fx.zone);
    rl2_circuit_close(fx.circuit);
    rl2_alert_close(fx.alert);
    rl2_policy_free(fx.policy);
    rl2_zone_unlink(fx.zone_name, NULL);
    rl2_circuit_unlink(fx.circuit_name, NULL);
    rl2_alert_unlink(fx.alert_name, NULL);
    close(fx.sock);
    unlink(fx.sock_path);
    rmdir(fx.dir);
    return 0;
}

HELPER void
make_store(rl2_failover_mode_t mode, uint32_t share_ppm)
{
    rl2_failover_conf_t conf;
    rl2_err_t           err = { "" };

    rl2_store_destroy(fx.store);
    fx.store = NULL;
    rl2_failover_conf_default(&conf);
    conf.mode = mode;
    conf.local_share_ppm = share_ppm;
    conf.alert = fx.alert;
    conf.clock_us = fake_clock_us;
    if (rl2_store_failover_create(&fx.primary.base, fx.local, fx.circuit, &conf,
                                  &fx.store, &err)
        != RL2_OK) {
        fail_msg("%s", err.msg);
    }
}

HELPER void
make_limit(rl2_limit_t *l, rl2_algo_t algo, int64_t count, int64_t cost)
{
    rl2_err_t err = { "" };

    memset(l, 0, sizeof(*l));
    l->name = "t";
    l->file = "test";
    l->line = 1;
    l->algo.algo = algo;
    l->algo.limit = count;
    l->algo.window_us = algo == RL2_ALGO_CONCURRENCY ? 0 : MIN_US;
    l->key = RL2_KEY_IP;
    l->cost = cost;
    if (rl2_limit_finish(fx.policy, l, 0, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
}

HELPER void
make_layer(rl2_layer_t *layer, const rl2_limit_t *limit, const char *key)
{
    memset(layer, 0, sizeof(*layer));
    layer->limit = limit;
    layer->key = rl2_digest(key, strlen(key));
}

HELPER rl2_status_t
apply(rl2_store_t *store, rl2_layer_t *layers, size_t n)
{
    rl2_clock_t now = { fake_us, WALL_US };

    return store->ops->apply(store, layers, n, &now, NULL);
}

HELPER rl2_status_t
refund(rl2_store_t *store, rl2_layer_t *layers, size_t n)
{
    rl2_clock_t now = { fake_us, WALL_US };

    return store->ops->refund(store, layers, n, &now, NULL);
}

/* How many of `tries` single-layer requests pass. */
HELPER int
admitted(const rl2_limit_t *limit, const char *key, int tries)
{
    rl2_layer_t l;
    int         n = 0;

    for (int i = 0; i < tries; i++) {
        make_layer(&l, limit, key);
        assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
        n += !l.refused;
    }
    return n;
}

/* The message part of every alert received, joined by '|'. */
HELPER void
alerts(char *out, size_t len)
{
    char          buf[RL2_ALERT_LINE_MAX + 1];
    struct pollfd p = { .fd = fx.sock, .events = POLLIN };
    size_t        used = 0;

    out[0] = '\0';
    while (poll(&p, 1, 100) == 1) {
        ssize_t     n = recv(fx.sock, buf, sizeof(buf) - 1, 0);
        const char *msg;

        assert_true(n >= 0);
        buf[n] = '\0';
        msg = strstr(buf, "ratelimit2: event=");
        assert_non_null(msg);
        used += (size_t)snprintf(out + used, len - used, "%s%s",
                                 used ? "|" : "", msg);
        assert_true(used < len);
    }
}

/* Open the circuit through the store: one failing request. */
HELPER void
outage(void)
{
    rl2_limit_t lim;
    rl2_layer_t l;

    make_limit(&lim, RL2_ALGO_FIXED_WINDOW, 1000, 1);
    make_layer(&l, &lim, "outage");
    fx.primary.fail = 1;
    assert_int_equal(apply(fx.store, &l, 1), RL2_OK);
    assert_int_equal(rl2_circuit_state(fx.circuit), RL2_CIRCUIT_OPEN);
}

#endif /* RL2_FAILOVER_FIXTURE_H */
