/*
 * rl2_hll_test.h -- a fixture of the usage series' tests: a HyperLogLog
 * sketch of a known set of clients, as a host's would be.  Include after
 * cmocka.h and rl2_redis_test.h (TEST_FN).
 */
#ifndef RL2_HLL_TEST_H
#define RL2_HLL_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "ratelimit2/hash.h"
#include "obs/hll.h"

/* A sketch of clients "client-<from>" .. "client-<from + n - 1>", their
 * ids digested as a request's key is (a fixed key: the same clients give
 * the same registers on every "host").  free() it. */
TEST_FN rl2_hll_t *
sketch_of(int from, int n)
{
    static const rl2_hash_key_t k = { { 7 } };
    rl2_hll_t                  *h = calloc(1, sizeof(*h));
    char                        id[64];

    assert_non_null(h);
    for (int i = from; i < from + n; i++) {
        int          len = snprintf(id, sizeof(id), "client-%d", i);
        rl2_digest_t d = rl2_digest_keyed(&k, id, (size_t)len);

        rl2_hll_add(h, &d);
    }
    return h;
}

#endif /* RL2_HLL_TEST_H */
