/*
 * test_headers.c -- the verdict as HTTP fields (headers.c): every value
 * byte for byte, numbers at their digit boundaries, the one-layer
 * RateLimit-Policy served from the load-time string, several layers, a
 * monthly quota's w, reset as epoch or delta, Retry-After, and the size
 * bound that rl2_headers_render() relies on; X-RateLimit-Scope names the
 * key a layer counted; the 429 body in both formats, byte for byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ratelimit2/config.h"
#include "ratelimit2/headers.h"
#include "decide/decide_internal.h"

#define FIELDS_MAX 16

typedef struct {
    size_t      n;
    const char *name[FIELDS_MAX];
    char        value[FIELDS_MAX][RL2_HEADERS_MAX];
} fields_t;

static void
collect(void *ctx, const char *name, const char *value)
{
    fields_t *f = ctx;

    assert_true(f->n < FIELDS_MAX);
    f->name[f->n] = name;
    snprintf(f->value[f->n], sizeof(f->value[0]), "%s", value);
    f->n++;
}

static const char *
field(const fields_t *f, const char *name)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->name[i], name) == 0) {
            return f->value[i];
        }
    }
    return NULL;
}

static rl2_policy_t *
load(const char *text)
{
    rl2_policy_t *p = NULL;
    rl2_err_t     err;

    if (rl2_config_load_string(text, "test.conf", NULL, &p, &err) != RL2_OK) {
        fail_msg("%s", err.msg);
    }
    return p;
}

/* A verdict of the default rule's layers with given results. */
static void
verdict_of(const rl2_policy_t *p, rl2_verdict_t *v, size_t n,
           const int64_t *remaining, const int64_t *reset_us)
{
    rl2_verdict_init(v);
    assert_true(n <= p->default_rule->limits.n);
    for (size_t i = 0; i < n; i++) {
        rl2_layer_t *l = &v->layers[i];

        memset(l, 0, sizeof(*l));
        l->limit = &p->default_rule->limits.limits[i];
        l->rule = p->default_rule;
        l->result.allowed = 1;
        l->result.limit = l->limit->algo.limit;
        l->result.remaining = remaining[i];
        l->result.reset_us = reset_us[i];
    }
    v->n_layers = n;
    v->outcome = RL2_OUTCOME_ALLOW;
    v->shown = 0;
}

static void
render(const rl2_policy_t *p, const rl2_verdict_t *v, int64_t wall_s,
       fields_t *f)
{
    rl2_clock_t now = { 5000000, wall_s * 1000000 };
    size_t      len = rl2_headers_size(v);
    char       *buf = malloc(len);

    assert_non_null(buf);
    memset(f, 0, sizeof(*f));
    /* One byte short renders nothing, and writes nothing. */
    memset(buf, 'x', len);
    rl2_headers_render(p, v, &now, buf, len - 1, collect, f);
    assert_int_equal(f->n, 0);
    assert_true(buf[len - 1] == 'x');
    rl2_headers_render(p, v, &now, buf, len, collect, f);
    free(buf);
}

static void
test_one_layer_every_field(void **state)
{
    rl2_policy_t *p = load("headers = { legacy = true; };"
                           "default = { limits = ( { name = \"api\"; "
                           "rate = \"100/60s\"; } ); };");
    int64_t       rem[] = { 42 }, reset[] = { 30000001 };
    rl2_verdict_t v;
    fields_t      f;

    (void)state;
    verdict_of(p, &v, 1, rem, reset);
    render(p, &v, 1700000000, &f);
    assert_int_equal(f.n, 5);
    assert_string_equal(field(&f, "RateLimit-Policy"), "\"api\";q=100;w=60");
    /* the load-time string itself, not a copy */
    assert_string_equal(f.name[0], "RateLimit-Policy");
    assert_string_equal(field(&f, "RateLimit"), "\"api\";r=42;t=31");
    assert_string_equal(field(&f, "X-RateLimit-Limit"), "100");
    assert_string_equal(field(&f, "X-RateLimit-Remaining"), "42");
    assert_string_equal(field(&f, "X-RateLimit-Reset"), "1700000031");
    assert_null(field(&f, "Retry-After"));
    rl2_policy_free(p);
}

/* By default only the IETF fields: the legacy ones cost Apache about 300
 * instructions each to check and write. */
static void
test_default_is_the_ietf_pair(void **state)
{
    rl2_policy_t *p = load("default = { limits = ( { name = \"api\"; "
                           "rate = \"100/60s\"; } ); };");
    int64_t       rem[] = { 7 }, reset[] = { 1 }, limit, remaining, at;
    rl2_verdict_t v;
    rl2_clock_t   now = { 0, 1700000000LL * 1000000 };
    fields_t      f;

    (void)state;
    verdict_of(p, &v, 1, rem, reset);
    render(p, &v, 1700000000, &f);
    assert_int_equal(f.n, 2);
    assert_string_equal(field(&f, "RateLimit"), "\"api\";r=7;t=1");
    assert_non_null(field(&f, "RateLimit-Policy"));
    /* the numbers stay available to front ends that pass them on */
    rl2_headers_legacy(p, &v, &now, &limit, &remaining, &at);
    assert_int_equal(limit, 100);
    assert_int_equal(remaining, 7);
    assert_int_equal(at, 1700000001);
    rl2_policy_free(p);
}

/* Every digit boundary of the number writer, through Remaining. */
static void
test_numbers_at_digit_boundaries(void **state)
{
    rl2_policy_t *p = load("headers = { legacy = true; };"
                           "default = { limits = ( { name = \"n\"; "
                           "rate = \"1000000000000/1h\"; } ); };");
    int64_t       reset[] = { 0 };
    char          want[32];
    rl2_verdict_t v;
    fields_t      f;
    uint64_t      pow = 1;

    (void)state;
    for (int digits = 1; digits <= 19; digits++) {
        int64_t cases[3] = { (int64_t)pow - 1, (int64_t)pow, (int64_t)pow + 7 };

        for (int i = 0; i < 3; i++) {
            int64_t rem[] = { cases[i] };

            verdict_of(p, &v, 1, rem, reset);
            render(p, &v, 0, &f);
            snprintf(want, sizeof(want), "%lld", (long long)cases[i]);
            assert_string_equal(field(&f, "X-RateLimit-Remaining"), want);
        }
        pow *= 10;
    }
    int64_t extremes[] = { INT64_MAX, INT64_MIN, -1, 0 };

    for (size_t i = 0; i < 4; i++) {
        int64_t rem[] = { extremes[i] };

        verdict_of(p, &v, 1, rem, reset);
        render(p, &v, 0, &f);
        snprintf(want, sizeof(want), "%lld", (long long)extremes[i]);
        assert_string_equal(field(&f, "X-RateLimit-Remaining"), want);
    }
    rl2_policy_free(p);
}

static void
test_layers_listed_and_least_room_shown(void **state)
{
    rl2_policy_t *p = load(
        "default = { limits = ( { name = \"a\"; rate = \"10/1s\"; },"
        " { name = \"b\"; rate = \"5/day\"; algorithm = \"quota\"; },"
        " { name = \"m\"; rate = \"7/month\"; algorithm = \"quota\"; } ); };");
    int64_t       rem[] = { 9, 4, 6 }, reset[] = { 100000, 3600000000LL, 1 };
    rl2_verdict_t v;
    fields_t      f;

    (void)state;
    verdict_of(p, &v, 3, rem, reset);
    v.shown = 1;
    /* 2024-02-10: February of a leap year has 29 days. */
    render(p, &v, 1707523200, &f);
    assert_string_equal(field(&f, "RateLimit-Policy"),
                        "\"a\";q=10;w=1, \"b\";q=5;w=86400, "
                        "\"m\";q=7;w=2505600");
    assert_string_equal(field(&f, "RateLimit"), "\"b\";r=4;t=3600");
    rl2_policy_free(p);
}

static void
test_delta_reset_and_retry_after(void **state)
{
    rl2_policy_t *p = load("headers = { reset = \"delta\"; scope = true; "
                           "legacy = true; "
                           "algorithm = true; };"
                           "default = { limits = ( { name = \"x\"; "
                           "rate = \"3/10s\"; } ); };");
    int64_t       rem[] = { 0 }, reset[] = { 0 };
    rl2_verdict_t v;
    fields_t      f;

    (void)state;
    verdict_of(p, &v, 1, rem, reset);
    v.outcome = RL2_OUTCOME_DENY;
    v.layers[0].refused = 1;
    v.layers[0].result.allowed = 0;
    v.layers[0].result.retry_after_us = 2000001; /* rounds up to 3 */
    render(p, &v, 1700000000, &f);
    assert_string_equal(field(&f, "RateLimit"), "\"x\";r=0;t=3");
    assert_string_equal(field(&f, "X-RateLimit-Reset"), "3");
    assert_string_equal(field(&f, "Retry-After"), "3");
    assert_string_equal(field(&f, "X-RateLimit-Scope"), "ip");
    assert_string_equal(field(&f, "X-RateLimit-Algorithm"), "fixed_window");
    rl2_policy_free(p);
}

/* Sixteen layers with the longest names that need escaping fit in the
 * size the renderer asks for, and in RL2_HEADERS_MAX. */
static void
test_size_bound_with_long_names(void **state)
{
    char          text[16384], name[64];
    size_t        pos;
    rl2_policy_t *p;
    int64_t       rem[16], reset[16];
    rl2_verdict_t v;
    fields_t      f;

    (void)state;
    pos = (size_t)snprintf(text, sizeof(text), "default = { limits = (");
    for (int i = 0; i < 16; i++) {
        memset(name, 'n', 63);
        name[63] = '\0';
        name[0] = (char)('a' + i);
        pos += (size_t)snprintf(text + pos, sizeof(text) - pos,
                                "%s{ name = \"%s\"; rate = "
                                "\"1125899906842623/1125899906s\"; }",
                                i ? "," : "", name);
        rem[i] = INT64_MIN;
        reset[i] = INT64_MAX;
    }
    snprintf(text + pos, sizeof(text) - pos,
             "); }; headers = { legacy = true; };");
    p = load(text);
    verdict_of(p, &v, 16, rem, reset);
    assert_true(rl2_headers_size(&v) <= RL2_HEADERS_MAX);
    render(p, &v, 1700000000, &f);
    assert_int_equal(f.n, 5);
    assert_non_null(strstr(field(&f, "RateLimit-Policy"), "\"pnnn"));
    rl2_policy_free(p);
}

/* The scope is the key the refusing layer counted: a user limit that
 * counted a user says user, one that fell back to the address says ip. */
static void
test_scope_is_the_key_counted(void **state)
{
    rl2_policy_t *p = load("headers = { scope = true; };"
                           "default = { limits = ( { name = \"u\"; "
                           "rate = \"3/10s\"; key = \"user\"; } ); };");
    int64_t       rem[] = { 0 }, reset[] = { 0 };
    rl2_verdict_t v;
    fields_t      f;

    (void)state;
    verdict_of(p, &v, 1, rem, reset);
    snprintf(v.layers[0].client, sizeof(v.layers[0].client),
             "user:0123456789abcdef");
    render(p, &v, 1700000000, &f);
    assert_string_equal(field(&f, "X-RateLimit-Scope"), "user");
    snprintf(v.layers[0].client, sizeof(v.layers[0].client), "192.0.2.7");
    render(p, &v, 1700000000, &f);
    assert_string_equal(field(&f, "X-RateLimit-Scope"), "ip");
    snprintf(v.layers[0].client, sizeof(v.layers[0].client), "unknown:_x");
    render(p, &v, 1700000000, &f);
    assert_string_equal(field(&f, "X-RateLimit-Scope"), "ip");
    snprintf(v.layers[0].client, sizeof(v.layers[0].client),
             "key:0123456789abcdef");
    render(p, &v, 1700000000, &f);
    assert_string_equal(field(&f, "X-RateLimit-Scope"), "api_key");
    rl2_policy_free(p);
}

/* A refused verdict of the default rule's first `n` layers at
 * 2026-12-06T12:00:00Z: every layer refused, waits of retry_us. */
static void
refused_of(const rl2_policy_t *p, rl2_verdict_t *v, size_t n,
           const int64_t *remaining, int64_t retry_us)
{
    int64_t reset[RL2_MAX_LAYERS] = { 0 };

    verdict_of(p, v, n, remaining, reset);
    v->outcome = RL2_OUTCOME_DENY;
    for (size_t i = 0; i < n; i++) {
        v->layers[i].refused = 1;
        v->layers[i].result.allowed = 0;
        v->layers[i].result.retry_after_us = retry_us;
    }
}

#define BODY_NOW_S 1796558400 /* 2026-12-06T12:00:00Z */

static void
body_of(const rl2_policy_t *p, const rl2_verdict_t *v, char *body, size_t len)
{
    rl2_clock_t now = { 5000000, (int64_t)BODY_NOW_S * 1000000 };
    size_t      need = rl2_body_render(p, v, &now, body, len);

    assert_true(need < len);
    assert_int_equal(strlen(body), need);
}

static void
test_body_json_fields(void **state)
{
    rl2_policy_t *p = load(
        "tiers = ( { name = \"free\"; upgrade_url = "
        "\"https://example.com/pricing?a=\\\"1\\\"&b=\\\\\"; } );"
        "default_tier = \"free\";"
        "default = { limits = ( { name = \"api\"; rate = \"5/10s\"; } ); };");
    int64_t       rem[] = { 0 };
    rl2_verdict_t v;
    char          body[RL2_BODY_MAX];

    (void)state;
    refused_of(p, &v, 1, rem, 4200000); /* 4.2 s: 5 */
    v.tier = 0;
    body_of(p, &v, body, sizeof(body));
    assert_string_equal(
        body, "{\"error\":\"too_many_requests\",\"message\":\"Too many "
              "requests: the limit \\\"api\\\" is used up. Retry in 5 "
              "seconds.\",\"rule\":\"default\",\"limit\":5,\"remaining\":0,"
              "\"current_usage\":5,\"reset\":1796558405,"
              "\"reset_time\":\"2026-12-06T12:00:05Z\",\"retry_after\":5,"
              "\"upgrade_url\":\"https://example.com/pricing?a=\\\"1\\\"&b="
              "\\\\\"}\n");
    assert_string_equal(rl2_body_type(p), "application/json");
    rl2_policy_free(p);
}

/* current_usage is what the client used of the quota it sees: a larger
 * remaining (a token bucket refusing a cost of several) says so. */
static void
test_body_usage_and_delta(void **state)
{
    rl2_policy_t *p = load("headers = { reset = \"delta\"; };"
                           "default = { limits = ( { name = \"b\"; "
                           "rate = \"10/1s\"; algorithm = \"token_bucket\"; "
                           "} ); };");
    int64_t       rem[] = { 3 };
    rl2_verdict_t v;
    char          body[RL2_BODY_MAX];

    (void)state;
    refused_of(p, &v, 1, rem, 1);
    body_of(p, &v, body, sizeof(body));
    assert_non_null(strstr(body, ",\"remaining\":3,\"current_usage\":7,"
                                 "\"reset\":1,\"reset_time\":\"2026-12-06T"
                                 "12:00:01Z\",\"retry_after\":1}\n"));
    rl2_policy_free(p);
}

/* The draft's problem: exactly type, title, status, detail and
 * violated-policies; the policies that refused, not a dry-run's nor
 * one that passed. */
static void
test_body_problem(void **state)
{
    rl2_policy_t *p = load(
        "headers = { body = \"problem+json\"; };"
        "default = { limits = ( { name = \"burst\"; rate = \"5/1s\"; },"
        " { name = \"daily\"; rate = \"100/day\"; algorithm = \"quota\"; },"
        " { name = \"hourly\"; rate = \"50/1h\"; } ); };");
    int64_t       rem[] = { 0, 0, 7 };
    rl2_verdict_t v;
    char          body[RL2_BODY_MAX];

    (void)state;
    refused_of(p, &v, 3, rem, 1000000);
    v.layers[2].refused = 0;
    body_of(p, &v, body, sizeof(body));
    assert_string_equal(
        body, "{\"type\":\"https://iana.org/assignments/http-problem-types"
              "#quota-exceeded\",\"title\":\"Quota Exceeded\",\"status\":429,"
              "\"detail\":\"Too many requests: the limit \\\"burst\\\" is "
              "used up. Retry in 1 second.\",\"violated-policies\":[\"burst\","
              "\"daily\"]}\n");
    assert_string_equal(rl2_body_type(p), "application/problem+json");

    /* A ban: abnormal usage, the policy's ban_status, no policy. */
    v.refusal = RL2_REFUSAL_BAN;
    v.refusal_retry_s = 60;
    body_of(p, &v, body, sizeof(body));
    assert_string_equal(
        body, "{\"type\":\"https://iana.org/assignments/http-problem-types"
              "#abnormal-usage-detected\",\"title\":\"Abnormal Usage "
              "Detected\",\"status\":429,\"detail\":\"This client is banned. "
              "Retry in 60 seconds.\",\"violated-policies\":[]}\n");
    /* The emergency switch: reduced capacity, 503. */
    v.refusal = RL2_REFUSAL_EMERGENCY;
    body_of(p, &v, body, sizeof(body));
    assert_non_null(strstr(body, "#temporary-reduced-capacity\",\"title\":"
                                 "\"Temporary Reduced Capacity\",\"status\":"
                                 "503,"));
    rl2_policy_free(p);
}

/* Too small a buffer: a NUL-terminated prefix, and the length needed. */
static void
test_body_truncated(void **state)
{
    rl2_policy_t *p = load("default = { limits = ( { name = \"api\"; "
                           "rate = \"5/10s\"; } ); };");
    int64_t       rem[] = { 0 };
    rl2_verdict_t v;
    rl2_clock_t   now = { 5000000, (int64_t)BODY_NOW_S * 1000000 };
    char          body[RL2_BODY_MAX], small[16];
    size_t        need;

    (void)state;
    refused_of(p, &v, 1, rem, 1000000);
    body_of(p, &v, body, sizeof(body));
    need = rl2_body_render(p, &v, &now, small, sizeof(small));
    assert_int_equal(need, strlen(body));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_memory_equal(small, body, sizeof(small) - 1);
    rl2_policy_free(p);
}

/* An upgrade_url that could not fit the body, or holds a control byte,
 * is refused at load. */
static void
test_upgrade_url_bounded(void **state)
{
    char          text[1024], url[RL2_UPGRADE_URL_MAX + 2];
    rl2_policy_t *p = NULL;
    rl2_err_t     err;

    (void)state;
    memset(url, 'u', sizeof(url) - 1);
    url[sizeof(url) - 1] = '\0';
    snprintf(text, sizeof(text),
             "tiers = ( { name = \"free\"; upgrade_url = \"%s\"; } );", url);
    assert_int_equal(rl2_config_load_string(text, "t.conf", NULL, &p, &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "upgrade_url"));
    assert_int_equal(
        rl2_config_load_string("tiers = ( { name = \"free\"; upgrade_url = "
                               "\"https://x/\\n\"; } );",
                               "t.conf", NULL, &p, &err),
        RL2_ERR_CONFIG);
    assert_int_equal(rl2_config_load_string("headers = { body = \"xml\"; };",
                                            "t.conf", NULL, &p, &err),
                     RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "problem+json"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_layer_every_field),
        cmocka_unit_test(test_default_is_the_ietf_pair),
        cmocka_unit_test(test_numbers_at_digit_boundaries),
        cmocka_unit_test(test_layers_listed_and_least_room_shown),
        cmocka_unit_test(test_delta_reset_and_retry_after),
        cmocka_unit_test(test_size_bound_with_long_names),
        cmocka_unit_test(test_scope_is_the_key_counted),
        cmocka_unit_test(test_body_json_fields),
        cmocka_unit_test(test_body_usage_and_delta),
        cmocka_unit_test(test_body_problem),
        cmocka_unit_test(test_body_truncated),
        cmocka_unit_test(test_upgrade_url_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
