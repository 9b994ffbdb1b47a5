/*
 * test_factor_geo.c -- the geo factor (policy factors.geo,
 * load/config_geo.c, decide/geo.c): country codes, the loader's errors
 * with file:line, the mapping of countries and regions, the order of the
 * sources (variable, then the header from a listed sender, then the
 * database), an untrusted header ignored, malformed countries unknown,
 * lookups in a MaxMind DB file this test builds (tests/tools/
 * make_mmdb.pl) for IPv4 and IPv6, damaged files, and a decision that
 * admits exactly the scaled limit without any runtime override table;
 * and rl2_policy_on_free, which closes the database with the policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <cmocka.h>

#define TEST_CONF_FILE "g.conf"
#include "rl2_config_test.h"
#include "rl2_decide_test.h"
#include "decide/decide_internal.h"
#include "policy/policy_internal.h"

/* The test's directory and its database: 192.0.2.0/24 DE,
 * 198.51.100.0/24 "cn" (lower case in the file), 2001:db8::/32 FR,
 * 203.0.113.0/25 "USA" and 203.0.113.128/25 "1" (no country either). */
static char dir[64];
static char mmdb[96];

static int
make_mmdb(const char *path, const char *lines)
{
    char  cmd[256];
    FILE *p;

    snprintf(cmd, sizeof(cmd), "perl tests/tools/make_mmdb.pl %s", path);
    if ((p = popen(cmd, "w")) == NULL) {
        return -1;
    }
    fputs(lines, p);
    return pclose(p) == 0 ? 0 : -1;
}

static int
cc(const char *code)
{
    return rl2_geo_index(code, strlen(code));
}

/* Two ASCII letters, either case; nothing else. */
static void
test_index(void **state)
{
    (void)state;
    assert_int_equal(cc("AA"), 0);
    assert_int_equal(cc("ZZ"), 26 * 26 - 1);
    assert_int_equal(cc("DE"), ('D' - 'A') * 26 + ('E' - 'A'));
    assert_int_equal(cc("de"), cc("DE"));
    assert_int_equal(cc("dE"), cc("DE"));
    assert_int_equal(cc("D"), -1);
    assert_int_equal(cc("DEU"), -1);
    assert_int_equal(cc(""), -1);
    assert_int_equal(cc("D1"), -1);
    assert_int_equal(cc("-D"), -1);
    assert_int_equal(cc("@A"), -1);       /* 'A' - 1 */
    assert_int_equal(cc("[A"), -1);       /* 'Z' + 1 */
    assert_int_equal(cc("`a"), -1);       /* 'a' - 1 */
    assert_int_equal(cc("{a"), -1);       /* 'z' + 1 */
    assert_int_equal(cc("\xc4\xe4"), -1); /* Latin-1 letters */
    assert_int_equal(cc("\xc3\x84"), -1); /* UTF-8 */
    assert_int_equal(rl2_geo_index("D\0", 2), -1);
    assert_int_equal(rl2_geo_index(NULL, 2), -1);
}

static void
test_config_errors(void **state)
{
    char text[1024];

    (void)state;
    expect_fail("factors = {\n geo = { countries = { DE = 0.5; }; }; };\n",
                "e.conf", 2, "needs 'variable', 'header' or 'database'");
    expect_fail("factors = {\n geo = { variable = \"C\"; }; };\n", "e.conf", 2,
                "needs 'countries' or 'regions'");
    expect_fail("factors = { geo = {\n variable = \"HTTP_CF_IPCOUNTRY\";\n"
                " countries = { DE = 0.5; }; }; };\n",
                "e.conf", 2, "is a variable a client sets");
    expect_fail("factors = { geo = {\n variable = \"content_length\";\n"
                " countries = { DE = 0.5; }; }; };\n",
                "e.conf", 2, "is a variable a client sets");
    expect_fail("factors = { geo = {\n variable = \"GEO-CC\";\n"
                " countries = { DE = 0.5; }; }; };\n",
                "e.conf", 2, "letters, digits and '_' only");
    expect_fail("factors = { geo = {\n header = \"CF-IPCountry\";\n"
                " countries = { DE = 0.5; }; }; };\n",
                "e.conf", 2, "'header' needs 'header_from'");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " header_from = [ \"10.0.0.0/8\" ];\n"
                " countries = { DE = 0.5; }; }; };\n",
                "e.conf", 2, "'header_from' means nothing without 'header'");
    expect_fail("factors = { geo = { header = \"H\";\n"
                " header_from = [ \"10.0.0.0/33\" ];\n"
                " countries = { DE = 0.5; }; }; };\n",
                "e.conf", 2, "10.0.0.0/33");
    expect_fail("factors = { geo = {\n database = \"geo.mmdb\";\n"
                " countries = { DE = 0.5; }; }; };\n",
                "e.conf", 2, "'database' must be an absolute path");
    snprintf(text, sizeof(text),
             "factors = { geo = {\n database = \"%s/none.mmdb\";\n"
             " countries = { DE = 0.5; }; }; };\n",
             dir);
    expect_fail(text, "e.conf", 2, "none.mmdb\": Error opening the specified");
    /* Not a MaxMind DB file: the policy itself. */
    snprintf(text, sizeof(text),
             "factors = { geo = {\n database = \"%s/text.mmdb\";\n"
             " countries = { DE = 0.5; }; }; };\n",
             dir);
    expect_fail(text, "e.conf", 2, "text.mmdb\": ");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " countries = { DEU = 0.5; }; }; };\n",
                "e.conf", 2, "a country is two letters (\"DE\"), not \"DEU\"");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " countries = { DE = 0; }; }; };\n",
                "e.conf", 2, "'DE' must be from 0.001 to 1000");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " countries = { DE = \"x\"; }; }; };\n",
                "e.conf", 2, "'DE' must be a number");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " countries = { DE = 0.5;\n de = 0.6; }; }; };\n",
                "e.conf", 3, "country DE is listed twice (first at line 2)");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " countries = { DE = 0.5; };\n regions = ( { name = \"eu\"; "
                "factor = 1;\n countries = [ \"FR\",\n \"DE\" ]; } ); }; };\n",
                "e.conf", 5, "country DE is listed twice (first at line 2)");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " regions = ( { name = \"a\"; factor = 1;\n"
                " countries = [ \"FR\" ]; },\n { name = \"b\"; factor = 2; "
                "countries = [ \"IT\",\n \"fr\" ]; } ); }; };\n",
                "e.conf", 5, "country FR is listed twice (first at line 3)");
    /* A region's countries may be one string, as any list of strings. */
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " regions = ( { name = \"a\"; factor = 1;\n"
                " countries = \"FR\"; },\n { name = \"b\"; factor = 2; "
                "countries = \"fr\"; } ); }; };\n",
                "e.conf", 4, "country FR is listed twice (first at line 3)");
    expect_fail("factors = { geo = { variable = \"C\"; min = 0.5;\n"
                " regions = ( { name = \"a\"; factor = 0.1;\n"
                " countries = \"FR\"; } ); }; };\n",
                "e.conf", 3, "within 'min' and 'max'");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " regions = ( { name = \"eu\"; factor = 1;\n"
                " countries = [ \"F\" ]; } ); }; };\n",
                "e.conf", 3, "not \"F\"");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " regions = (\n { name = \"eu\"; factor = 1; } ); }; };\n",
                "e.conf", 3, "a region needs 'name', 'countries' and 'factor'");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " regions = ( { name = \"eu\"; factor = 1;\n"
                " countries = [ ]; } ); }; };\n",
                "e.conf", 3, "'countries' must not be empty");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " regions = ( { name = \"eu\"; factor = 1; countries = "
                "[ \"FR\" ];\n size = 3; } ); }; };\n",
                "e.conf", 3, "unknown key 'size'");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " countries = [ \"DE\" ]; }; };\n",
                "e.conf", 2, "'countries' must be a group");
    expect_fail("factors = { geo = { variable = \"C\"; max = 2;\n"
                " countries = { DE = 3; }; }; };\n",
                "e.conf", 2, "within 'min' and 'max'");
    expect_fail("factors = { geo = { variable = \"C\"; min = 0.5;\n"
                " regions = ( { name = \"x\";\n factor = 0.25;\n countries = "
                "[ \"CN\" ]; } ); }; };\n",
                "e.conf", 4, "within 'min' and 'max'");
    expect_fail("factors = { geo = { variable = \"C\"; min = 0.5;\n"
                " default = 0.2;\n countries = { DE = 1; }; }; };\n",
                "e.conf", 2, "'default' must be within 'min' and 'max'");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " countries = { DE = 1; };\n rules = [ \"nope\" ]; }; };\n",
                "e.conf", 3, "'nope' names no rule of the policy");
    expect_fail("factors = { geo = { variable = \"C\";\n"
                " country = { DE = 1; }; }; };\n",
                "e.conf", 2, "unknown key 'country'");
}

/* Countries and regions into the 26x26 table; the default for the rest;
 * no override table needed. */
static void
test_mapping(void **state)
{
    rl2_policy_t         *p;
    const rl2_geo_conf_t *g;

    (void)state;
    p = load_ok("overrides = { enabled = false; };\n"
                "factors = { geo = { variable = \"GEOIP_COUNTRY_CODE\";\n"
                " countries = { US = 1.0; de = 2; CN = 0.8; };\n"
                " regions = ( { name = \"eu\"; countries = [ \"FR\", \"it\" "
                "]; factor = 1.5; },\n"
                " { name = \"x\"; countries = [ \"ZZ\" ]; factor = 0.001; "
                "} );\n default = 0.6; }; };\n");
    g = &p->geo;
    assert_true(p->factors[RL2_FACTOR_GEO].on);
    assert_int_equal(p->factors_on, 1u << RL2_FACTOR_GEO);
    assert_string_equal(g->variable, "GEOIP_COUNTRY_CODE");
    assert_null(g->header);
    assert_null(g->db);
    assert_int_equal(g->default_ppm, 600000);
    assert_int_equal(g->factor_ppm[cc("US")], 1000000);
    assert_int_equal(g->factor_ppm[cc("DE")], 2000000);
    assert_int_equal(g->factor_ppm[cc("CN")], 800000);
    assert_int_equal(g->factor_ppm[cc("FR")], 1500000);
    assert_int_equal(g->factor_ppm[cc("IT")], 1500000);
    assert_int_equal(g->factor_ppm[cc("ZZ")], 1000);
    assert_int_equal(g->factor_ppm[cc("GB")], 0);
    {
        int listed = 0;

        for (int i = 0; i < RL2_GEO_COUNTRIES; i++) {
            listed += g->factor_ppm[i] != 0;
        }
        assert_int_equal(listed, 6);
    }
    rl2_policy_free(p);

    /* Without `default`: x1. */
    p = load_ok("factors = { geo = { variable = \"C\"; "
                "countries = { DE = 0.5; }; }; };\n");
    assert_int_equal(p->geo.default_ppm, 1000000);
    rl2_policy_free(p);
}

/* The lookups in the built file: IPv4 (in the IPv6 tree) and IPv6, a
 * lower-case code upper-cased, malformed codes and misses unknown. */
static void
test_mmdb_lookup(void **state)
{
    rl2_policy_t *p;
    char          text[512];
    uint8_t       a[16];

    (void)state;
    snprintf(text, sizeof(text),
             "factors = { geo = { database = \"%s\"; "
             "countries = { DE = 0.5; }; }; };\n",
             mmdb);
    p = load_ok(text);
    assert_non_null(p->geo.db);
    assert_int_equal(inet_pton(AF_INET, "192.0.2.77", a), 1);
    assert_int_equal(rl2_geo_lookup(p->geo.db, AF_INET, a), cc("DE"));
    assert_int_equal(inet_pton(AF_INET, "198.51.100.1", a), 1);
    assert_int_equal(rl2_geo_lookup(p->geo.db, AF_INET, a), cc("CN"));
    assert_int_equal(inet_pton(AF_INET6, "2001:db8:1::5", a), 1);
    assert_int_equal(rl2_geo_lookup(p->geo.db, AF_INET6, a), cc("FR"));
    /* IPv4-mapped: the alias of the IPv4 tree. */
    assert_int_equal(inet_pton(AF_INET6, "::ffff:192.0.2.1", a), 1);
    assert_int_equal(rl2_geo_lookup(p->geo.db, AF_INET6, a), cc("DE"));
    /* "USA" and "1" in the file: no country. */
    assert_int_equal(inet_pton(AF_INET, "203.0.113.1", a), 1);
    assert_int_equal(rl2_geo_lookup(p->geo.db, AF_INET, a), -1);
    assert_int_equal(inet_pton(AF_INET, "203.0.113.200", a), 1);
    assert_int_equal(rl2_geo_lookup(p->geo.db, AF_INET, a), -1);
    /* Not in the file. */
    assert_int_equal(inet_pton(AF_INET, "10.1.2.3", a), 1);
    assert_int_equal(rl2_geo_lookup(p->geo.db, AF_INET, a), -1);
    assert_int_equal(inet_pton(AF_INET6, "2001:db9::1", a), 1);
    assert_int_equal(rl2_geo_lookup(p->geo.db, AF_INET6, a), -1);
    assert_int_equal(rl2_geo_lookup(p->geo.db, 0, a), -1);
    rl2_policy_free(p);
}

/* A file damaged after its metadata: every lookup either finds a
 * country or none, never reads out of the file (the unit tests run
 * under ASan with SAN=1). */
static void
test_mmdb_damaged(void **state)
{
    char          path[128], text[512];
    unsigned char buf[4096];
    size_t        n;
    FILE         *f;
    rl2_policy_t *p;
    uint8_t       a[16] = { 0 };
    const char    marker[] = "\xab\xcd\xefMaxMind.com";
    size_t        meta = 0;
    rl2_err_t     err;
    int           opened = 0;

    (void)state;
    f = fopen(mmdb, "rb");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_true(n > 512 && n < sizeof(buf));
    for (size_t i = 0; i + sizeof(marker) - 1 <= n; i++) {
        if (memcmp(buf + i, marker, sizeof(marker) - 1) == 0) {
            meta = i;
        }
    }
    assert_true(meta > 256);
    snprintf(path, sizeof(path), "%s/damaged.mmdb", dir);
    snprintf(text, sizeof(text),
             "factors = { geo = { database = \"%s\"; "
             "countries = { DE = 0.5; }; }; };\n",
             path);
    /* Each pass overwrites a different stretch before the metadata (the
     * search tree, then the data section) with a different byte. */
    for (size_t at = 0; at + 64 <= meta; at += 24) {
        unsigned char copy[4096];

        memcpy(copy, buf, n);
        memset(copy + at, (int)(0x5a + at) & 0xff, 64);
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(copy, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
        /* Damage libmaxminddb sees at open is a load error; what it
         * does not see must be no crash at lookup. */
        p = NULL;
        if (rl2_config_load_string(text, "g.conf", NULL, &p, &err) != RL2_OK) {
            assert_null(p);
            assert_non_null(strstr(err.msg, "damaged.mmdb"));
            continue;
        }
        opened++;
        for (int i = 0; i < 256; i++) {
            int r;

            a[0] = (uint8_t)(i * 37);
            a[1] = (uint8_t)i;
            r = rl2_geo_lookup(p->geo.db, AF_INET, a);
            assert_true(r >= -1 && r < RL2_GEO_COUNTRIES);
            a[0] = 0x20;
            a[1] = 0x01;
            a[2] = 0x0d;
            a[3] = (uint8_t)i;
            r = rl2_geo_lookup(p->geo.db, AF_INET6, a);
            assert_true(r >= -1 && r < RL2_GEO_COUNTRIES);
        }
        rl2_policy_free(p);
    }
    assert_true(opened > 0);
    /* Cut short: refused at load, with file:line. */
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, n / 2, f), n / 2);
    assert_int_equal(fclose(f), 0);
    expect_fail(text, "g.conf", 1, "damaged.mmdb\": ");
}

/* rl2_policy_on_free: each registered call once, the last first, before
 * the arena goes (the data lives in it here). */
static char freed[8];

static void
note_free(void *data)
{
    size_t n = strlen(freed);

    if (n + 1 < sizeof(freed)) {
        freed[n] = *(const char *)data;
    }
}

static void
test_on_free(void **state)
{
    rl2_policy_t *p = load_ok("rules = ();\n");
    rl2_err_t     err;
    char         *a = rl2_policy_strdup(p, "a");
    char         *b = rl2_policy_strdup(p, "b");

    (void)state;
    memset(freed, 0, sizeof(freed));
    assert_int_equal(rl2_policy_on_free(p, note_free, a, &err), RL2_OK);
    assert_int_equal(rl2_policy_on_free(p, note_free, b, &err), RL2_OK);
    assert_string_equal(freed, "");
    rl2_policy_free(p);
    assert_string_equal(freed, "ba");
}

/* ---- decisions ---- */

typedef struct {
    const char *country; /* the header's value */
    const char *xff;
} hdrs_t;

static const char *
header(void *ctx, const char *name)
{
    hdrs_t *h = ctx;

    if (strcasecmp(name, "X-Country") == 0) {
        return h->country;
    }
    if (strcasecmp(name, "X-Forwarded-For") == 0) {
        return h->xff;
    }
    return NULL;
}

static int
setup(void **state)
{
    char text[1024];

    snprintf(text, sizeof(text),
             "overrides = { enabled = false; };\n"
             "trusted_proxies = [ \"192.168.0.0/16\" ];\n"
             "rules = ( { name = \"api\"; paths = [ \"/**\" ]; "
             "limits = ( { rate = \"10/1h\"; key = \"ip\"; } ); } );\n"
             "factors = { geo = { variable = \"GEOIP_COUNTRY_CODE\";\n"
             " header = \"X-Country\"; header_from = [ \"10.0.0.0/8\" ];\n"
             " database = \"%s\";\n"
             " countries = { DE = 0.5; FR = 0.3; US = 2; };\n"
             " regions = ( { name = \"asia\"; countries = [ \"CN\", \"JP\" "
             "]; factor = 0.2; } );\n default = 0.6; }; };\n",
             mmdb);
    return setup_sized(state, text, 256, "geo");
}

/* One decision: the geo factor it applied (ppm), and the scaled limit
 * into *limit. */
static uint32_t
geo_of(fixture_t *f, const char *peer, const char *conn, const char *var,
       const char *hdr, const char *xff, int64_t *limit)
{
    hdrs_t        h = { hdr, xff };
    rl2_request_t req = { .method = "GET", .path = "/x" };
    rl2_verdict_t v;
    rl2_clock_t   now = { 1000000, 1700000000000000 };
    rl2_err_t     err;

    req.peer_ip = peer;
    req.conn_ip = conn;
    req.country_var = var;
    req.header = header;
    req.header_ctx = &h;
    rl2_verdict_init(&v);
    assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                RL2_PHASE_ALL, &now, &v, &err),
                     RL2_OK);
    assert_int_equal(v.n_layers, 1);
    *limit = v.layers[0].limit->algo.limit;
    return v.factor_ppm[RL2_FACTOR_GEO];
}

/* variable > header from a listed sender > database > default. */
static void
test_precedence(void **state)
{
    fixture_t *f = *state;
    int64_t    limit;

    assert_null(f->policy->overrides);
    /* All three: the variable. */
    assert_int_equal(geo_of(f, "10.0.0.1", NULL, "FR", "US", NULL, &limit),
                     300000);
    assert_int_equal(limit, 3);
    /* The header from 10/8, lower case. */
    assert_int_equal(geo_of(f, "10.0.0.1", NULL, NULL, "us", NULL, &limit),
                     2000000);
    assert_int_equal(limit, 20);
    /* The database, the client being the peer. */
    assert_int_equal(geo_of(f, "192.0.2.9", NULL, NULL, NULL, NULL, &limit),
                     500000);
    assert_int_equal(limit, 5);
    assert_int_equal(geo_of(f, "2001:db8::9", NULL, NULL, NULL, NULL, &limit),
                     300000);
    /* "cn" in the file: a region. */
    assert_int_equal(geo_of(f, "198.51.100.4", NULL, NULL, NULL, NULL, &limit),
                     200000);
    assert_int_equal(limit, 2);
    /* The database, the client behind a trusted proxy. */
    assert_int_equal(
        geo_of(f, "192.168.1.1", NULL, NULL, NULL, "198.51.100.4", &limit),
        200000);
    /* Nothing anywhere: the default. */
    assert_int_equal(geo_of(f, "10.9.9.9", NULL, NULL, NULL, NULL, &limit),
                     600000);
    assert_int_equal(limit, 6);
    /* Listed nowhere (GB): the default. */
    assert_int_equal(geo_of(f, "10.9.9.9", NULL, "GB", NULL, NULL, &limit),
                     600000);
}

/* The client's address in any of its written forms is the one country:
 * an IPv4-mapped peer (a dual-stack listener), a mapped or zoned hop in
 * X-Forwarded-For, a hop with a port. */
static void
test_address_forms(void **state)
{
    fixture_t *f = *state;
    int64_t    limit;

    assert_int_equal(
        geo_of(f, "::ffff:192.0.2.9", NULL, NULL, NULL, NULL, &limit), 500000);
    assert_int_equal(
        geo_of(f, "::FFFF:c000:0209", NULL, NULL, NULL, NULL, &limit), 500000);
    assert_int_equal(geo_of(f, "192.168.1.1", NULL, NULL, NULL,
                            "::ffff:198.51.100.4", &limit),
                     200000);
    assert_int_equal(
        geo_of(f, "192.168.1.1", NULL, NULL, NULL, "198.51.100.4:4711", &limit),
        200000);
    assert_int_equal(
        geo_of(f, "192.168.1.1", NULL, NULL, NULL, "[2001:db8::9]:443", &limit),
        300000);
    /* A mapped sender of the header is that IPv4 sender. */
    assert_int_equal(
        geo_of(f, "::ffff:10.0.0.1", NULL, NULL, "US", NULL, &limit), 2000000);
    /* A hop that is no address: no country, the default. */
    assert_int_equal(
        geo_of(f, "192.168.1.1", NULL, NULL, NULL, "unknown", &limit), 600000);
}

/* The header from anyone else is not believed: the database answers for
 * the client's address.  The sender is the address that connected, not
 * the client a proxy (mod_remoteip) names. */
static void
test_untrusted_header(void **state)
{
    fixture_t *f = *state;
    int64_t    limit;

    assert_int_equal(geo_of(f, "192.0.2.9", NULL, NULL, "US", NULL, &limit),
                     500000);
    assert_int_equal(geo_of(f, "203.0.113.9", NULL, NULL, "US", NULL, &limit),
                     600000);
    /* mod_remoteip put a 10/8 client in peer_ip; 192.0.2.1 connected. */
    assert_int_equal(
        geo_of(f, "10.0.0.5", "192.0.2.1", NULL, "US", NULL, &limit), 600000);
    /* And the other way round: the gateway connected itself. */
    assert_int_equal(
        geo_of(f, "192.0.2.1", "10.0.0.5", NULL, "US", NULL, &limit), 2000000);
    /* A trusted proxy of trusted_proxies is no sender of the header. */
    assert_int_equal(
        geo_of(f, "192.168.1.1", NULL, NULL, "US", "192.0.2.3", &limit),
        500000);
}

/* A malformed value names no country: the next source answers. */
static void
test_bad_countries(void **state)
{
    static const char *const bad[] = {
        "",
        "D",
        "DEU",
        "D1",
        "1D",
        "??",
        "--",
        " DE",
        "DE ",
        "D E",
        "\xc3\x84\xc3\x84",
        "US, DE",
        "de\n",
        "xx\x01",
    };
    fixture_t *f = *state;
    int64_t    limit;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* A bad variable: the header. */
        assert_int_equal(
            geo_of(f, "10.0.0.1", NULL, bad[i], "FR", NULL, &limit), 300000);
        /* A bad header from its sender: the database (192.0.2.1, the
         * client mod_remoteip named, is DE; 10.0.0.1 is in no range). */
        assert_int_equal(
            geo_of(f, "192.0.2.1", "10.0.0.1", NULL, bad[i], NULL, &limit),
            500000);
        assert_int_equal(
            geo_of(f, "10.0.0.1", NULL, NULL, bad[i], NULL, &limit), 600000);
        assert_int_equal(
            geo_of(f, "10.0.0.1", NULL, bad[i], bad[i], NULL, &limit), 600000);
    }
    /* The database's "USA" and "1": the default. */
    assert_int_equal(geo_of(f, "203.0.113.1", NULL, NULL, NULL, NULL, &limit),
                     600000);
    assert_int_equal(geo_of(f, "203.0.113.201", NULL, NULL, NULL, NULL, &limit),
                     600000);
}

/* Limit 10 an hour, x0.5 for DE: exactly 5 admitted, then refusals. */
static void
test_admits_half(void **state)
{
    fixture_t    *f = *state;
    hdrs_t        h = { NULL, NULL };
    rl2_request_t req = { .method = "GET",
                          .path = "/x",
                          .peer_ip = "192.0.2.50" };
    rl2_clock_t   now = { 1000000, 1700000000000000 };
    rl2_verdict_t v;
    rl2_err_t     err;
    int           admitted = 0;

    req.header = header;
    req.header_ctx = &h;
    for (int i = 0; i < 12; i++) {
        rl2_verdict_init(&v);
        assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                    RL2_PHASE_ALL, &now, &v, &err),
                         RL2_OK);
        if (v.outcome == RL2_OUTCOME_ALLOW) {
            assert_int_equal(i, admitted); /* none after the first refusal */
            admitted++;
        }
        else {
            assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
        }
        now.mono_us += 1000;
        now.wall_us += 1000;
    }
    assert_int_equal(admitted, 5);
}

/* The factor applies to the rules it names only. */
static void
test_scope(void **state)
{
    fixture_t    *f;
    rl2_request_t req = { .method = "GET", .country_var = "DE" };
    rl2_clock_t   now = { 1000000, 1700000000000000 };
    rl2_verdict_t v;
    rl2_err_t     err;

    setup_sized(state,
                "rules = ( { name = \"a\"; paths = [ \"/a\" ]; "
                "limits = ( { rate = \"10/1h\"; } ); },\n"
                " { name = \"b\"; paths = [ \"/b\" ]; "
                "limits = ( { rate = \"10/1h\"; } ); } );\n"
                "factors = { geo = { variable = \"C\"; rules = [ \"a\" ];\n"
                " countries = { DE = 0.5; }; }; };\n",
                64, "geoscope");
    f = *state;
    req.peer_ip = "192.0.2.1";
    req.path = "/a";
    rl2_verdict_init(&v);
    assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                RL2_PHASE_ALL, &now, &v, &err),
                     RL2_OK);
    assert_int_equal(v.layers[0].limit->algo.limit, 5);
    req.path = "/b";
    rl2_verdict_init(&v);
    assert_int_equal(rl2_decide(f->policy, NULL, 0, f->store, &req,
                                RL2_PHASE_ALL, &now, &v, &err),
                     RL2_OK);
    assert_int_equal(v.layers[0].limit->algo.limit, 10);
    assert_int_equal(v.factor_ppm[RL2_FACTOR_GEO], 500000);
    teardown(state);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_mapping),
        cmocka_unit_test(test_mmdb_lookup),
        cmocka_unit_test(test_mmdb_damaged),
        cmocka_unit_test(test_on_free),
        cmocka_unit_test_setup_teardown(test_precedence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_address_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untrusted_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_countries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_admits_half, setup, teardown),
        cmocka_unit_test(test_scope),
    };
    char  path[128];
    FILE *f;
    int   rc;

    snprintf(dir, sizeof(dir), "/tmp/rl2test-%d-geo", (int)getpid());
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        return 1;
    }
    snprintf(mmdb, sizeof(mmdb), "%s/test.mmdb", dir);
    if (make_mmdb(mmdb, "192.0.2.0/24 DE\n"
                        "198.51.100.0/24 cn\n"
                        "2001:db8::/32 FR\n"
                        "203.0.113.0/25 USA\n"
                        "203.0.113.128/25 1\n")
        != 0) {
        fprintf(stderr, "tests/tools/make_mmdb.pl failed\n");
        return 1;
    }
    snprintf(path, sizeof(path), "%s/text.mmdb", dir);
    if ((f = fopen(path, "w")) == NULL || fputs("rules = ();\n", f) < 0
        || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    if (system(path) != 0) {
        rc = 1;
    }
    return rc;
}
