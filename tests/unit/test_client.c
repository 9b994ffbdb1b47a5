/*
 * test_client.c -- who the client is behind proxies: X-Forwarded-For and
 * Forwarded believed only from trusted proxies, the Forwarded parser, and
 * addresses spelled in more than one way (IPv4-mapped IPv6, zone ids)
 * meeting one key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <cmocka.h>

#include <arpa/inet.h>

#include "decide/decide_internal.h"
#include "decide/forwarded.h"
#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/store_local.h"

#include "rl2_decide_test.h"

static const char *const policy_text =
    "trusted_proxies = [ \"127.0.0.1\", \"::1\" ];\n"
    "whitelist = { addresses = [ \"192.0.2.128/25\" ]; };\n"
    "rules = ( { name = \"one\"; paths = [ \"/**\" ];\n"
    "  limits = ( { rate = \"1/hour\";\n"
    "               algorithm = \"sliding_log\"; } ); } );\n";

/* Every IPv6 address its own key. */
static const char *const policy128_text =
    "trusted_proxies = [ \"127.0.0.1\" ];\n"
    "ipv6_prefix = 128;\n"
    "rules = ( { name = \"one\"; paths = [ \"/**\" ];\n"
    "  limits = ( { rate = \"1/hour\";\n"
    "               algorithm = \"sliding_log\"; } ); } );\n";

typedef struct {
    const char *xff;
    const char *fwd;
} hdrs_t;

static const char *
header(void *ctx, const char *name)
{
    hdrs_t *h = ctx;

    if (strcasecmp(name, "X-Forwarded-For") == 0) {
        return h->xff;
    }
    if (strcasecmp(name, "Forwarded") == 0) {
        return h->fwd;
    }
    return NULL;
}

static int
setup_with(void **state, const char *text)
{
    return setup_sized(state, text, 64, "client");
}

static int
setup(void **state)
{
    return setup_with(state, policy_text);
}

static int
setup128(void **state)
{
    return setup_with(state, policy128_text);
}

/* Decide one request; returns its outcome, the client into ip. */
static rl2_outcome_t
decide(fixture_t *f, const char *peer, const char *xff, const char *fwd,
       char ip[48])
{
    hdrs_t        h = { xff, fwd };
    rl2_request_t req = { 0 };
    rl2_verdict_t v;
    rl2_clock_t   now = { 1000000, 1700000000000000 };
    rl2_err_t     err;

    req.method = "GET";
    req.path = "/x";
    req.peer_ip = peer;
    req.header = header;
    req.header_ctx = &h;
    rl2_verdict_init(&v);
    assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                RL2_PHASE_ALL, &now, &v, &err),
                     RL2_OK);
    strcpy(ip, v.client_ip);
    return v.outcome;
}

static const char *
client(fixture_t *f, const char *peer, const char *xff, const char *fwd)
{
    static char ip[48];

    decide(f, peer, xff, fwd, ip);
    return ip;
}

static void
test_forwarded_from_trusted_proxy(void **state)
{
    fixture_t *f = *state;

    assert_string_equal(client(f, "127.0.0.1", NULL, "for=198.51.100.1"),
                        "198.51.100.1");
    assert_string_equal(
        client(f, "127.0.0.1", NULL, "for=\"[2001:db8::7]:4711\";proto=https"),
        "2001:db8::7");
    assert_string_equal(client(f, "127.0.0.1", NULL, "For=\"198.51.100.2:80\""),
                        "198.51.100.2");
    /* Right to left over trusted hops. */
    assert_string_equal(client(f, "127.0.0.1", NULL,
                               "for=203.0.113.9, for=\"[::1]\";by=x, "
                               "for=127.0.0.1"),
                        "203.0.113.9");
    /* X-Forwarded-For, when a proxy sent one, is what counts. */
    assert_string_equal(
        client(f, "127.0.0.1", "203.0.113.5", "for=198.51.100.1"),
        "203.0.113.5");
}

static void
test_forwarded_stops_at_what_it_cannot_read(void **state)
{
    fixture_t *f = *state;

    /* Obfuscated, unknown or missing nodes: the client is the text the
     * proxy gave, never the proxy itself (whose address may be
     * whitelisted, and whose count every such client would share). */
    assert_string_equal(client(f, "127.0.0.1", NULL, "for=_hidden"),
                        "unknown:_hidden");
    assert_string_equal(
        client(f, "127.0.0.1", NULL, "for=198.51.100.1, for=unknown"),
        "unknown:unknown");
    assert_string_equal(client(f, "127.0.0.1", NULL, "by=198.51.100.1"),
                        "unknown");
    assert_string_equal(
        client(f, "127.0.0.1", NULL, "for=198.51.100.1;for=198.51.100.2"),
        "unknown");
}

/* A client's own unclosed quote before the element its proxy appends
 * does not swallow it; "ip:port" and "[v6]:port" (Azure's gateway) are
 * addresses. */
static void
test_forwarded_hostile_and_ported(void **state)
{
    fixture_t *f = *state;

    assert_string_equal(
        client(f, "127.0.0.1", NULL, "for=\"x, for=198.51.100.7"),
        "198.51.100.7");
    assert_string_equal(client(f, "127.0.0.1", "198.51.100.8:4711", NULL),
                        "198.51.100.8");
    assert_string_equal(
        client(f, "127.0.0.1", "203.0.113.1, [2001:db8::9]:443", NULL),
        "2001:db8::9");
    assert_string_equal(client(f, "127.0.0.1", "garbage", NULL),
                        "unknown:garbage");
}

static void
test_forwarded_untrusted_peer_ignored(void **state)
{
    fixture_t *f = *state;

    assert_string_equal(client(f, "192.0.2.9", NULL, "for=198.51.100.1"),
                        "192.0.2.9");
    assert_string_equal(client(f, "192.0.2.9", "198.51.100.1", NULL),
                        "192.0.2.9");
}

/* ::ffff:a.b.c.d is a.b.c.d: one key, the IPv4 whitelist applies.
 * Before, every mapped address fell into the IPv6 prefix "::/64". */
static void
test_mapped_ipv4_is_ipv4(void **state)
{
    fixture_t *f = *state;
    char       ip[48];

    assert_int_equal(decide(f, "::ffff:192.0.2.1", NULL, NULL, ip),
                     RL2_OUTCOME_ALLOW);
    assert_string_equal(ip, "192.0.2.1");
    assert_int_equal(decide(f, "192.0.2.1", NULL, NULL, ip), RL2_OUTCOME_DENY);
    /* Two mapped clients are two clients. */
    assert_int_equal(decide(f, "::ffff:192.0.2.2", NULL, NULL, ip),
                     RL2_OUTCOME_ALLOW);
    assert_int_equal(decide(f, "127.0.0.1", "::ffff:198.51.100.1", NULL, ip),
                     RL2_OUTCOME_ALLOW);
    assert_string_equal(ip, "198.51.100.1");
    assert_int_equal(decide(f, "::ffff:192.0.2.200", NULL, NULL, ip),
                     RL2_OUTCOME_BYPASS);
    /* A mapped trusted proxy is trusted. */
    assert_string_equal(client(f, "::ffff:127.0.0.1", "203.0.113.77", NULL),
                        "203.0.113.77");
}

static void
test_zone_id_dropped(void **state)
{
    fixture_t *f = *state;

    assert_string_equal(client(f, "127.0.0.1", "fe80::1%eth0", NULL),
                        "fe80::1");
    assert_string_equal(
        client(f, "127.0.0.1", NULL, "for=\"[fe80::2%25eth0]\""), "fe80::2");
    /* Not an address with a zone: the client is that text. */
    assert_string_equal(client(f, "127.0.0.1", "198.51.100.1%eth0", NULL),
                        "unknown:198.51.100.1%eth0");
}

/* With ipv6_prefix 128 the key is the whole address: in its usual
 * spelling, whatever spelling a proxy's header used (found by
 * fuzz_forwarded: "2001:DB8::1" was a key of its own). */
static void
test_ipv6_128_one_spelling(void **state)
{
    fixture_t *f = *state;
    char       ip[48];

    assert_int_equal(decide(f, "127.0.0.1", "2001:DB8::1", NULL, ip),
                     RL2_OUTCOME_ALLOW);
    assert_int_equal(decide(f, "127.0.0.1", "2001:db8:0::1", NULL, ip),
                     RL2_OUTCOME_DENY);
    assert_int_equal(decide(f, "127.0.0.1", "2001:0db8::0:1", NULL, ip),
                     RL2_OUTCOME_DENY);
    assert_int_equal(decide(f, "127.0.0.1", "2001:db8::2", NULL, ip),
                     RL2_OUTCOME_ALLOW);
}

static void
test_forwarded_parse(void **state)
{
    rl2_fwd_hops_t h;
    char           big[4096] = "";

    (void)state;
    rl2_forwarded_parse("for=\"a,b\";x=\"q\\\"\", for=192.0.2.1 ,,"
                        "for=\"[v6]:1",
                        &h);
    /* A comma ends a quoted value too (no node holds one): "a,b" is two
     * bad elements, and no open quote can swallow the elements after. */
    assert_int_equal(h.n, 5);
    assert_string_equal(h.hop[0], "");
    assert_string_equal(h.hop[1], "");
    assert_string_equal(h.hop[2], "192.0.2.1");
    assert_string_equal(h.hop[3], "");
    assert_string_equal(h.hop[4], ""); /* quote never closed */
    rl2_forwarded_parse("", &h);
    assert_int_equal(h.n, 0);
    rl2_forwarded_parse(NULL, &h);
    assert_int_equal(h.n, 0);
    /* A long chain keeps the right-most hops, in order. */
    for (int i = 0; i < 40; i++) {
        char e[32];

        snprintf(e, sizeof(e), "%sfor=10.0.0.%d", i ? ", " : "", i);
        strcat(big, e);
    }
    rl2_forwarded_parse(big, &h);
    assert_int_equal(h.n, RL2_FWD_HOPS_MAX);
    assert_string_equal(h.hop[0], "10.0.0.24");
    assert_string_equal(h.hop[RL2_FWD_HOPS_MAX - 1], "10.0.0.39");
}

/* The dotted-quad reader accepts exactly what inet_pton(AF_INET) does,
 * with the same bytes: edge cases, then a million strings of digits and
 * dots. */
static int
ipv4_same(const char *text)
{
    uint8_t mine[4] = { 0 }, libc[4] = { 0 };
    int     ok_mine = rl2_ipv4_parse(text, mine) == 0;
    int     ok_libc = inet_pton(AF_INET, text, libc) == 1;

    if (ok_mine && (!ok_libc || memcmp(mine, libc, 4) != 0)) {
        print_error("rl2_ipv4_parse(\"%s\") differs from inet_pton\n", text);
        return 0;
    }
    return 1;
}

static void
test_ipv4_parse_as_inet_pton(void **state)
{
    static const char *const edge[] = {
        "0.0.0.0",    "255.255.255.255", "192.0.2.9",
        "1.2.3.4",    "01.2.3.4",        "1.2.3.04",
        "00.0.0.0",   "256.1.1.1",       "1.2.3.256",
        "1.2.3",      "1.2.3.4.",        "1.2.3.4.5",
        ".1.2.3",     "1..2.3",          "1.2.3.4 ",
        " 1.2.3.4",   "1.2.3.-4",        "1.2.3.+4",
        "1.2.3.1000", "1.2.3.0x1",       "",
        ".",          "1.2.3.4%eth",     "::ffff:1.2.3.4",
        "999.0.0.0",  "1.2.3.4\n",       "1.2.3.255x",
        "0000.0.0.0"
    };
    unsigned seed = 12345;
    char     text[24];
    uint8_t  addr[4];

    (void)state;
    for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++) {
        assert_true(ipv4_same(edge[i]));
    }
    /* Every accepted well-formed quad is accepted by both. */
    assert_int_equal(rl2_ipv4_parse("203.0.113.255", addr), 0);
    assert_memory_equal(addr, "\xcb\x00\x71\xff", 4);
    for (int n = 0; n < 1000000; n++) {
        size_t len = 0, want;

        seed = seed * 1103515245u + 12345u;
        want = 7 + (seed >> 16) % 10;
        while (len < want) {
            seed = seed * 1103515245u + 12345u;
            text[len++] = "0123456789.0125."[(seed >> 16) % 16];
        }
        text[len] = '\0';
        assert_true(ipv4_same(text));
        if (rl2_ipv4_parse(text, addr) != 0
            && inet_pton(AF_INET, text, addr) == 1) {
            /* Refused here, read by inet_pton: only forms it alone
             * takes would be; it takes none that this does not. */
            fail_msg("\"%s\": inet_pton reads a quad this refuses", text);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_forwarded_from_trusted_proxy,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_forwarded_stops_at_what_it_cannot_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forwarded_hostile_and_ported,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_forwarded_untrusted_peer_ignored,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_mapped_ipv4_is_ipv4, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_zone_id_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_128_one_spelling, setup128,
                                        teardown),
        cmocka_unit_test(test_forwarded_parse),
        cmocka_unit_test(test_ipv4_parse_as_inet_pton),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
