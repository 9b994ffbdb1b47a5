/*
 * test_bypass.c -- a client must not step around a rule by how it spells
 * its request: each test sends the same request in two spellings and
 * expects the second to meet the counter the first used up.  And a
 * client must not pass for the server's own request (whitelist.internal).
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

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/store_local.h"

#include "store/store_internal.h"

#include "rl2_decide_test.h"

/* One request a rule may meet in one hour, per rule. */
#define RL2_T_RULES \
    "rules = ( { name = \"read\"; methods = [ \"GET\" ];\n" \
    "            paths = [ \"/r\" ];\n" \
    "            limits = ( { rate = \"1/hour\"; key = \"global\"; } ); },\n" \
    "          { name = \"edit\"; methods = [ \"PUT\", \"DELETE\" ];\n" \
    "            paths = [ \"/e\" ];\n" \
    "            limits = ( { rate = \"1/hour\"; key = \"global\"; } ); } " \
    ");\n"

static const char *const plain_text = RL2_T_RULES;

/* First match: a lax rule for one method before a strict one for
 * another, on the same path. */
static const char *const order_text =
    "method_override = true;\n"
    "rules = ( { name = \"lax\"; methods = [ \"GET\" ]; paths = \"/x\";\n"
    "            limits = ( { rate = \"1000/hour\"; } ); },\n"
    "          { name = \"head\"; methods = [ \"HEAD\" ]; paths = \"/x\";\n"
    "            limits = ( { rate = \"1/hour\"; } ); },\n"
    "          { name = \"post\"; methods = [ \"POST\" ]; paths = \"/x\";\n"
    "            limits = ( { rate = \"1/hour\"; } ); } );\n";

/* A script, once an hour; the same with exact; /health exempt, the rest
 * once an hour. */
static const char *const path_text =
    "rules = ( { name = \"login\"; paths = \"/wp-login.php\";\n"
    "            limits = ( { rate = \"1/hour\"; } ); },\n"
    "          { name = \"exact\"; paths = \"/x.cgi\"; exact = true;\n"
    "            limits = ( { rate = \"1/hour\"; } ); },\n"
    "          { name = \"health\"; paths = \"/health\"; exempt = true; } );\n"
    "default = { limits = ( { rate = \"1/hour\"; key = \"global\"; } ); };\n";

/* Plans from a header, believed from the auth gateway only, behind a
 * trusted load balancer. */
static const char *const tierhdr_text =
    "trusted_proxies = [ \"127.0.0.1\" ];\n"
    "tiers = [ \"free\", \"pro\" ];\n"
    "tier_from = { header = \"X-Tier\"; header_from = [ \"10.0.0.5\" ]; };\n"
    "rules = ( { name = \"r\"; paths = \"/**\";\n"
    "  tiers = { free = ( { name = \"f\"; rate = \"1/hour\"; } );\n"
    "            pro = ( { name = \"p\"; rate = \"5/hour\"; } ); }; } );\n";

/* Internal requests: flagged by the server's variable, or by a header
 * believed from the gateway that sets it only, behind a trusted load
 * balancer.  Everything else is counted (and allowed: the limit is far
 * away, so a bypass and an allowed request differ in outcome only). */
static const char *const internal_text =
    "trusted_proxies = [ \"127.0.0.1\" ];\n"
    "whitelist = { internal = true; internal_header = \"X-Internal\";\n"
    "              internal_header_from = [ \"10.0.0.5\" ]; };\n"
    "rules = ( { name = \"r\"; paths = \"/**\";\n"
    "  limits = ( { rate = \"1000/hour\"; key = \"global\"; } ); } );\n";

/* One request an hour to the API host, whatever else the host says. */
static const char *const host_text =
    "rules = ( { name = \"api\"; hosts = [ \"api.example.com\" ];\n"
    "  limits = ( { rate = \"1/hour\"; key = \"global\"; } ); } );\n";

/* One request an hour per API key, from a header or the query. */
static const char *const apikey_text =
    "api_key = { header = \"X-API-Key\"; query = \"api_key\"; };\n"
    "rules = ( { name = \"api\"; paths = [ \"/api/**\" ];\n"
    "  limits = ( { rate = \"1/hour\"; key = \"api_key\"; } ); } );\n";

/* A site-wide budget, spent, in front of a per-key one. */
static const char *const flood_text =
    "api_key = { header = \"X-API-Key\"; };\n"
    "rules = ( { name = \"api\"; paths = [ \"/api/**\" ];\n"
    "  limits = ( { name = \"site\"; rate = \"1/hour\"; key = \"global\"; },\n"
    "             { name = \"per_key\"; rate = \"5/hour\";\n"
    "               key = \"api_key\"; } ); } );\n";
/* A login limit per address, and per API key a rate and a monthly
 * quota, in a zone of 100,000 entries. */
static const char *const quota_text =
    "api_key = { header = \"X-API-Key\"; };\n"
    "rules = ( { name = \"login\"; paths = [ \"/login\" ];\n"
    "  limits = ( { rate = \"5/15min\"; key = \"ip\"; } ); },\n"
    "  { name = \"api\"; paths = [ \"/api/**\" ];\n"
    "  limits = ( { name = \"per_key\"; rate = \"100/min\";\n"
    "               key = \"api_key\"; },\n"
    "             { name = \"monthly\"; rate = \"50/month\";\n"
    "               algorithm = \"quota\"; key = \"api_key\"; } ); } );\n";
/* Two rules that match /api/upload share the limit "per_key" (same name,
 * algorithm and window: one budget, as configuration.md allows), and a
 * login limit per address, in a zone of 1,000 entries. */
static const char *const shared_text =
    "match = \"all\";\n"
    "api_key = { header = \"X-API-Key\"; };\n"
    "rules = ( { name = \"login\"; paths = [ \"/login\" ];\n"
    "  limits = ( { rate = \"5/15min\"; key = \"ip\"; } ); },\n"
    "  { name = \"api\"; paths = [ \"/api/**\" ];\n"
    "  limits = ( { name = \"per_key\"; rate = \"100/min\";\n"
    "               key = \"api_key\"; } ); },\n"
    "  { name = \"upload\"; paths = [ \"/api/upload\" ];\n"
    "  limits = ( { name = \"per_key\"; rate = \"100/min\";\n"
    "               key = \"api_key\"; } ); } );\n";
/* A spent per-address limit in front of a per-key one, in the smallest
 * zone. */
static const char *const promote_text =
    "api_key = { header = \"X-API-Key\"; };\n"
    "rules = ( { name = \"api\"; paths = [ \"/api/**\" ];\n"
    "  limits = ( { name = \"per_ip\"; rate = \"1/hour\"; key = \"ip\"; },\n"
    "             { name = \"per_key\"; rate = \"100/hour\";\n"
    "               key = \"api_key\"; } ); } );\n";
static const char *const override_text =
    "method_override = true;\n" RL2_T_RULES;

static int
setup_with(void **state, const char *text)
{
    return setup_sized(state, text, 64, "bypass");
}

/* Two rules share a per-address limit; the second adds a site-wide one
 * before it, in the smallest zone there is. */
static const char *const small_text =
    "rules = ( { name = \"a\"; paths = [ \"/a\" ];\n"
    "  limits = ( { name = \"ipl\"; rate = \"3/hour\"; key = \"ip\"; } ); },\n"
    "  { name = \"b\"; paths = [ \"/b\" ];\n"
    "  limits = ( { name = \"site\"; rate = \"100/hour\"; key = \"global\"; "
    "},\n"
    "             { name = \"ipl\"; rate = \"3/hour\"; key = \"ip\"; } ); } "
    ");\n";

static int
setup_small(void **state)
{
    return setup_sized(state, small_text, RL2_ZONE_MIN_ENTRIES, "bypass");
}

static int
setup_plain(void **state)
{
    return setup_with(state, plain_text);
}

static int
setup_override(void **state)
{
    return setup_with(state, override_text);
}

static int
setup_order(void **state)
{
    return setup_with(state, order_text);
}

static int
setup_path(void **state)
{
    return setup_with(state, path_text);
}

static int
setup_tierhdr(void **state)
{
    return setup_with(state, tierhdr_text);
}

static int
setup_internal(void **state)
{
    return setup_with(state, internal_text);
}

/* The headers a request of test_internal_* carries. */
typedef struct {
    const char *internal; /* X-Internal */
    const char *xff;      /* X-Forwarded-For */
} internal_hdrs_t;

static const char *
internal_header(void *ctx, const char *name)
{
    const internal_hdrs_t *h = ctx;

    if (strcasecmp(name, "X-Internal") == 0) {
        return h->internal;
    }
    return strcasecmp(name, "X-Forwarded-For") == 0 ? h->xff : NULL;
}

static const char *
tier_header(void *ctx, const char *name)
{
    return strcasecmp(name, "X-Tier") == 0 ? ctx : NULL;
}

static int
setup_host(void **state)
{
    return setup_with(state, host_text);
}

static int
setup_apikey(void **state)
{
    return setup_with(state, apikey_text);
}

static int
setup_flood(void **state)
{
    return setup_with(state, flood_text);
}

static int
setup_quota(void **state)
{
    return setup_sized(state, quota_text, 100000, "bypass");
}

static int
setup_shared(void **state)
{
    return setup_sized(state, shared_text, 1000, "bypass");
}

static int
setup_promote(void **state)
{
    return setup_sized(state, promote_text, RL2_ZONE_MIN_ENTRIES, "bypass");
}

static const char *
override_header(void *ctx, const char *name)
{
    return strcasecmp(name, "X-HTTP-Method-Override") == 0 ? ctx : NULL;
}

static const char *
apikey_header(void *ctx, const char *name)
{
    return strcasecmp(name, "X-API-Key") == 0 ? ctx : NULL;
}

/* Decide req on every phase at the suite's fixed time; the status, the
 * verdict in *v, and in rule[64] the name of the rule that decided. */
static rl2_status_t
decide_one(fixture_t *f, rl2_request_t *req, rl2_verdict_t *v, char rule[64])
{
    rl2_clock_t  now = { 1000000, 1700000000000000 };
    rl2_err_t    err;
    rl2_status_t st;

    if (req->method == NULL) {
        req->method = "GET";
    }
    if (req->peer_ip == NULL) {
        req->peer_ip = "192.0.2.1";
    }
    rl2_verdict_init(v);
    st = rl2_decide(f->policy, NULL, 0, f->store, req, RL2_PHASE_ALL, &now, v,
                    &err);
    if (rule != NULL) {
        snprintf(rule, 64, "%s",
                 v->n_layers > 0 && v->shown >= 0
                     ? v->layers[v->shown].rule->name
                     : "");
    }
    return st;
}

/* Decide method path?query (with an X-HTTP-Method-Override when
 * override is not NULL); the outcome and the rule that decided. */
static rl2_outcome_t
send_req(fixture_t *f, const char *method, const char *path, const char *query,
         const char *override, char rule[64])
{
    rl2_request_t req = { .method = method, .path = path, .query = query };
    rl2_verdict_t v;

    req.header = override_header;
    req.header_ctx = (void *) override;
    assert_int_equal(decide_one(f, &req, &v, rule), RL2_OK);
    return v.outcome;
}

/* curl -I is a GET to every server: HEAD meets the GET rule's counter. */
static void
test_head_is_get(void **state)
{
    fixture_t *f = *state;
    char       rule[64];

    assert_int_equal(send_req(f, "GET", "/r", NULL, NULL, rule),
                     RL2_OUTCOME_ALLOW);
    assert_int_equal(send_req(f, "HEAD", "/r", NULL, NULL, rule),
                     RL2_OUTCOME_DENY);
    assert_string_equal(rule, "read");
}

/* Apache serves "get" and "post" as GET and POST. */
static void
test_method_case(void **state)
{
    fixture_t *f = *state;
    char       rule[64];

    assert_int_equal(send_req(f, "head", "/r", NULL, NULL, rule),
                     RL2_OUTCOME_ALLOW);
    assert_int_equal(send_req(f, "Get", "/r", NULL, NULL, rule),
                     RL2_OUTCOME_DENY);
    assert_int_equal(send_req(f, "put", "/e", NULL, NULL, rule),
                     RL2_OUTCOME_ALLOW);
    assert_int_equal(send_req(f, "DELETE", "/e", NULL, NULL, rule),
                     RL2_OUTCOME_DENY);
}

/* With method_override, a POST the framework routes as PUT or DELETE
 * meets the PUT rule: by header, or by ?_method= in any spelling. */
static void
test_override_considered(void **state)
{
    fixture_t *f = *state;
    char       rule[64];

    assert_int_equal(send_req(f, "POST", "/e", NULL, "PUT", rule),
                     RL2_OUTCOME_ALLOW);
    assert_string_equal(rule, "edit");
    assert_int_equal(send_req(f, "POST", "/e", "_method=%64elete", NULL, rule),
                     RL2_OUTCOME_DENY);
    assert_int_equal(send_req(f, "POST", "/e", "a=1&_method=put", "junk", rule),
                     RL2_OUTCOME_DENY);
    /* A GET is never overridden: frameworks override POST only. */
    assert_int_equal(send_req(f, "GET", "/e", "_method=PUT", NULL, rule),
                     RL2_OUTCOME_NONE);
}

/* Without it, the override is the application's business: a POST stays
 * a POST (the policy must say it wants the override read). */
static void
test_override_off(void **state)
{
    fixture_t *f = *state;
    char       rule[64];

    assert_int_equal(send_req(f, "POST", "/e", "_method=PUT", "PUT", rule),
                     RL2_OUTCOME_NONE);
}

/* A reading that meets a first-match rule does not end the selection of
 * the request's other readings: HEAD still meets the rule for HEAD after
 * a rule for GET, and a POST that says it is a GET still meets the
 * rule for POST. */
static void
test_readings_do_not_shadow(void **state)
{
    fixture_t *f = *state;
    char       rule[64];

    assert_int_equal(send_req(f, "HEAD", "/x", NULL, NULL, rule),
                     RL2_OUTCOME_ALLOW);
    assert_int_equal(send_req(f, "HEAD", "/x", NULL, NULL, rule),
                     RL2_OUTCOME_DENY);
    assert_string_equal(rule, "head");
    assert_int_equal(send_req(f, "POST", "/x", "_method=GET", NULL, rule),
                     RL2_OUTCOME_ALLOW);
    assert_int_equal(send_req(f, "POST", "/x", NULL, "GET", rule),
                     RL2_OUTCOME_DENY);
    assert_string_equal(rule, "post");
}

/* An override is a method only when it spells one in letters, and an
 * override to HEAD is a GET too. */
static void
test_override_spellings(void **state)
{
    fixture_t *f = *state;
    char       rule[64];

    /* "GET\0" is no method: the POST is a POST only (the rule "read" is
     * not met, "edit" neither). */
    assert_int_equal(send_req(f, "POST", "/r", "_method=GET%00", NULL, rule),
                     RL2_OUTCOME_NONE);
    assert_int_equal(send_req(f, "POST", "/r", "_method=HEAD", NULL, rule),
                     RL2_OUTCOME_ALLOW);
    assert_string_equal(rule, "read");
    /* Every occurrence counts: the second names PUT. */
    assert_int_equal(
        send_req(f, "POST", "/e", "_method=GET&_method=PUT", NULL, rule),
        RL2_OUTCOME_ALLOW);
    assert_string_equal(rule, "edit");
    /* The name is read as the API key's is: PHP decodes "_me%74hod" and
     * Rack splits on ';'.  Either names DELETE: "edit" is spent. */
    assert_int_equal(send_req(f, "POST", "/e", "_me%74hod=DELETE", NULL, rule),
                     RL2_OUTCOME_DENY);
    assert_string_equal(rule, "edit");
    assert_int_equal(
        send_req(f, "POST", "/e", "x=1;_method=delete", NULL, rule),
        RL2_OUTCOME_DENY);
    assert_string_equal(rule, "edit");
}

/* Decide GET path, as received (decoded 0) or decoded by the server. */
static rl2_outcome_t
send_path(fixture_t *f, const char *path, int decoded, char rule[64])
{
    rl2_request_t req = { .path = path, .path_decoded = decoded };
    rl2_verdict_t v;

    assert_int_equal(decide_one(f, &req, &v, rule), RL2_OK);
    return v.outcome;
}

/* The script with a PATH_INFO is the script; "exact" says it is not. */
static void
test_path_info(void **state)
{
    fixture_t *f = *state;
    char       rule[64];

    assert_int_equal(send_path(f, "/wp-login.php", 0, rule), RL2_OUTCOME_ALLOW);
    assert_int_equal(send_path(f, "/WP-LOGIN.php/x/y", 0, rule),
                     RL2_OUTCOME_DENY);
    assert_string_equal(rule, "login");
    assert_int_equal(send_path(f, "/x.cgi/y", 0, rule), RL2_OUTCOME_ALLOW);
    assert_string_equal(rule, "default");
    assert_int_equal(send_path(f, "/x.cgi", 0, rule), RL2_OUTCOME_ALLOW);
    assert_string_equal(rule, "exact");
}

/* A path is decoded once: what Apache decoded is not decoded again, so
 * "%252e%252e" sent to Apache is not ".." to the limiter; as received by
 * a FastCGI server, "..%2F" climbs like "../". */
static void
test_path_decoded_once(void **state)
{
    fixture_t *f = *state;
    char       rule[64];

    assert_int_equal(send_path(f, "/app.php/%2e%2e/health", 1, rule),
                     RL2_OUTCOME_ALLOW);
    assert_string_equal(rule, "default");
    assert_int_equal(send_path(f, "/docs/..%2Fwp-login.php", 0, rule),
                     RL2_OUTCOME_ALLOW);
    assert_string_equal(rule, "login");
    assert_int_equal(send_path(f, "/a/b/../wp-login.php;x", 0, rule),
                     RL2_OUTCOME_DENY);
    /* A dot segment with a ;parameter is ".." to Tomcat and a name to
     * nginx: refused as malformed, counted nowhere. */
    {
        rl2_request_t req = { .path = "/wp-login.php/..;/health" };
        rl2_verdict_t v;

        assert_int_equal(decide_one(f, &req, &v, rule), RL2_ERR_REQUEST);
    }
    assert_int_equal(send_path(f, "/x/%2e%2e/health", 0, rule),
                     RL2_OUTCOME_BYPASS);
}

/* Decide GET / on host. */
static rl2_outcome_t
send_host(fixture_t *f, const char *host)
{
    rl2_request_t req = { .path = "/", .host = host };
    rl2_verdict_t v;

    assert_int_equal(decide_one(f, &req, &v, NULL), RL2_OK);
    return v.outcome;
}

/* Every server routes these to api.example.com: its case, its port and
 * a trailing dot are spellings, and all meet the one counter. */
static void
test_host_spellings(void **state)
{
    fixture_t               *f = *state;
    static const char *const spellings[] = {
        "API.Example.COM.",
        "api.example.com:8443",
        "api.example.com..:80",
        "api.example.com",
    };
    char longhost[400];

    assert_int_equal(send_host(f, "api.example.com"), RL2_OUTCOME_ALLOW);
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
        assert_int_equal(send_host(f, spellings[i]), RL2_OUTCOME_DENY);
    }
    /* Other names are other hosts, however long. */
    assert_int_equal(send_host(f, "api.example.com.evil"), RL2_OUTCOME_NONE);
    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    memcpy(longhost + sizeof(longhost) - 1 - 16, ".api.example.com", 16);
    assert_int_equal(send_host(f, longhost), RL2_OUTCOME_NONE);
    memcpy(longhost, "api.example.com", 15);
    assert_int_equal(send_host(f, longhost), RL2_OUTCOME_NONE);
    assert_int_equal(send_host(f, "[2001:db8::1]:443"), RL2_OUTCOME_NONE);
}

/* Decide GET /api/x with an X-API-Key header (NULL: none) and a query;
 * the status, and the outcome in *out. */
static rl2_status_t
send_key(fixture_t *f, const char *header, const char *query,
         rl2_outcome_t *out)
{
    rl2_request_t req = { .path = "/api/x", .query = query };
    rl2_verdict_t v;
    rl2_status_t  st;

    req.header = apikey_header;
    req.header_ctx = (void *)header;
    st = decide_one(f, &req, &v, NULL);
    *out = v.outcome;
    return st;
}

/* A key is one key however it is spelled: percent-encoded in the query
 * ("%41BC" is "ABC" to every framework), in the header, or both. */
static void
test_apikey_spellings(void **state)
{
    fixture_t    *f = *state;
    rl2_outcome_t o;

    assert_int_equal(send_key(f, NULL, "api_key=%41BC", &o), RL2_OK);
    assert_int_equal(o, RL2_OUTCOME_ALLOW);
    assert_int_equal(send_key(f, NULL, "api_key=ABC", &o), RL2_OK);
    assert_int_equal(o, RL2_OUTCOME_DENY);
    assert_int_equal(send_key(f, "ABC", NULL, &o), RL2_OK);
    assert_int_equal(o, RL2_OUTCOME_DENY);
    assert_int_equal(send_key(f, "ABC", "x=1&api_key=ABC&api_key=A%42C", &o),
                     RL2_OK);
    assert_int_equal(o, RL2_OUTCOME_DENY);
    /* An empty header hides nothing: the query's key counts. */
    assert_int_equal(send_key(f, "", "api_key=ABC", &o), RL2_OK);
    assert_int_equal(o, RL2_OUTCOME_DENY);
    assert_int_equal(send_key(f, "ABC, ABC", NULL, &o), RL2_OK);
    assert_int_equal(o, RL2_OUTCOME_DENY);
    /* PHP's, Rack's and ASP.NET's spellings of the name are the key. */
    assert_int_equal(send_key(f, NULL, "API.Key=ABC", &o), RL2_OK);
    assert_int_equal(o, RL2_OUTCOME_DENY);
    assert_int_equal(send_key(f, NULL, "x=1;%20api_key=ABC", &o), RL2_OK);
    assert_int_equal(o, RL2_OUTCOME_DENY);
}

/* Two different keys in one request: the application takes one of them
 * (PHP the last parameter, others the first), so the limiter must not
 * pick: the request is refused as malformed, and counts nowhere. */
static void
test_apikey_twice_refused(void **state)
{
    fixture_t    *f = *state;
    rl2_outcome_t o;

    assert_int_equal(send_key(f, "junk, REAL", NULL, &o), RL2_ERR_REQUEST);
    assert_int_equal(send_key(f, NULL, "api_key=junk&api_key=REAL", &o),
                     RL2_ERR_REQUEST);
    assert_int_equal(send_key(f, "junk", "api_key=REAL", &o), RL2_ERR_REQUEST);
    /* However the parameter's name is spelled for PHP, Rack or ASP.NET,
     * and a key too long to compare beside another. */
    assert_int_equal(send_key(f, NULL, "api_key=RANDOM&api.key=REAL", &o),
                     RL2_ERR_REQUEST);
    assert_int_equal(send_key(f, NULL, "api_key=RANDOM&api%5Fkey=REAL", &o),
                     RL2_ERR_REQUEST);
    assert_int_equal(send_key(f, NULL, "api_key[]=REAL&api_key=RANDOM", &o),
                     RL2_ERR_REQUEST);
    assert_int_equal(send_key(f, NULL, "x=1;api_key=REAL&API_KEY=RANDOM", &o),
                     RL2_ERR_REQUEST);
    {
        char q[400] = "api_key=";

        memset(q + 8, 'L', 300);
        q[308] = '\0';
        strcat(q, "&api_key=RANDOM");
        assert_int_equal(send_key(f, NULL, q, &o), RL2_ERR_REQUEST);
    }
    /* None of them spent REAL's request. */
    assert_int_equal(send_key(f, "REAL", NULL, &o), RL2_OK);
    assert_int_equal(o, RL2_OUTCOME_ALLOW);
}

/* Decide GET path from peer; the verdict into *v. */
static void
send_from(fixture_t *f, const char *path, const char *peer, rl2_verdict_t *v)
{
    rl2_request_t req = { .path = path, .peer_ip = peer };

    assert_int_equal(decide_one(f, &req, v, NULL), RL2_OK);
}

/* A full zone whose least recently used entry is the one a layer of the
 * request found: the request's new entry for its other layer must not
 * take it (each layer counts into its own key's state). */
static void
test_new_entry_never_takes_a_found_one(void **state)
{
    fixture_t    *f = *state;
    rl2_verdict_t v;
    char          ip[32];

    send_from(f, "/a", "192.0.2.1", &v);
    send_from(f, "/a", "192.0.2.1", &v); /* its entry: 2 of 3 used */
    for (int i = 0; i < (int)RL2_ZONE_MIN_ENTRIES - 1; i++) {
        snprintf(ip, sizeof(ip), "198.51.100.%d", i + 1);
        send_from(f, "/a", ip, &v); /* the zone is full, 192.0.2.1 last */
    }
    send_from(f, "/b", "192.0.2.1", &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    assert_int_equal(v.n_layers, 2);
    assert_int_equal(v.layers[0].result.remaining, 99); /* site */
    assert_int_equal(v.layers[1].result.remaining, 0);  /* ipl: 3 of 3 */
    send_from(f, "/b", "192.0.2.2", &v);
    assert_int_equal(v.layers[0].result.remaining, 98); /* one site count */
    send_from(f, "/a", "192.0.2.1", &v);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY); /* its 3 were kept */
}

/* A client being refused keeps its counter under a flood of new keys:
 * its refused requests keep the entry recent, as its admitted ones do. */
static void
test_refused_client_stays_counted(void **state)
{
    fixture_t    *f = *state;
    rl2_verdict_t v;
    char          ip[32];

    for (int i = 0; i < 3; i++) {
        send_from(f, "/a", "192.0.2.1", &v);
    }
    for (int i = 0; i < 200; i++) {
        snprintf(ip, sizeof(ip), "198.51.%d.%d", i / 250, i % 250 + 1);
        send_from(f, "/a", ip, &v);
        assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
        if (i % 4 == 3) {
            send_from(f, "/a", "192.0.2.1", &v);
            assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
        }
    }
}

/* A load balancer passes its clients' own headers through: the tier
 * header is believed from the upstreams named in header_from only, and
 * a policy that names none is refused at load. */
static void
test_tier_header_senders(void **state)
{
    fixture_t    *f = *state;
    rl2_request_t lb = { .path = "/x", .peer_ip = "127.0.0.1" };
    rl2_request_t gw = { .path = "/x", .peer_ip = "10.0.0.5" };
    rl2_verdict_t v;
    rl2_policy_t *p;
    rl2_err_t     err;
    char          rule[64];

    lb.header = gw.header = tier_header;
    lb.header_ctx = gw.header_ctx = (void *)"pro";
    assert_int_equal(decide_one(f, &lb, &v, rule), RL2_OK);
    assert_string_equal(v.layers[v.shown].limit->name, "f");
    assert_int_equal(decide_one(f, &gw, &v, rule), RL2_OK);
    assert_string_equal(v.layers[v.shown].limit->name, "p");
    /* Behind mod_remoteip: the sender is who connected, not the client
     * a proxy named, whichever address that client claims. */
    gw.peer_ip = "203.0.113.9";
    gw.conn_ip = "10.0.0.5";
    assert_int_equal(decide_one(f, &gw, &v, rule), RL2_OK);
    assert_string_equal(v.layers[v.shown].limit->name, "p");
    lb.peer_ip = "10.0.0.5";
    lb.conn_ip = "127.0.0.1";
    assert_int_equal(decide_one(f, &lb, &v, rule), RL2_OK);
    assert_string_equal(v.layers[v.shown].limit->name, "f");
    /* A repeated header, joined: one tier twice is that tier; two tiers
     * from the gateway are refused (400); from anyone else, ignored. */
    gw.header_ctx = (void *)"pro, PRO ";
    assert_int_equal(decide_one(f, &gw, &v, rule), RL2_OK);
    assert_string_equal(v.layers[v.shown].limit->name, "p");
    gw.header_ctx = (void *)"free, pro";
    assert_int_equal(decide_one(f, &gw, &v, rule), RL2_ERR_REQUEST);
    gw.header_ctx = (void *)"pro, gold";
    assert_int_equal(decide_one(f, &gw, &v, rule), RL2_ERR_REQUEST);
    lb.header_ctx = (void *)"free, pro";
    assert_int_equal(decide_one(f, &lb, &v, rule), RL2_OK);
    assert_string_equal(v.layers[v.shown].limit->name, "f");
    assert_int_equal(
        rl2_config_load_string("tiers = [ \"free\" ];\n"
                               "tier_from = { header = \"X-Tier\"; };\n",
                               "t.conf", NULL, &p, &err),
        RL2_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "t.conf:2: tier_from.header needs "
                                    "'header_from'"));
}

/* The outcome of GET /x from peer (conn: who connected, NULL for the
 * peer) with the X-Internal value internal (NULL: none), the variable's
 * flag var, and X-Forwarded-For xff (NULL: none). */
static rl2_outcome_t
internal_outcome(fixture_t *f, const char *peer, const char *conn,
                 const char *internal, int var, const char *xff)
{
    internal_hdrs_t h = { internal, xff };
    rl2_request_t   req = { .path = "/x", .peer_ip = peer, .conn_ip = conn };
    rl2_verdict_t   v;

    req.internal = var;
    req.header = internal_header;
    req.header_ctx = &h;
    assert_int_equal(decide_one(f, &req, &v, NULL), RL2_OK);
    return v.outcome;
}

/* The internal header is believed from the gateway in
 * internal_header_from alone, the one that connected: never from the
 * load balancer (a trusted proxy, which passes its clients' headers on),
 * nor from a client that names the gateway's address in X-Forwarded-For
 * or through mod_remoteip. */
static void
test_internal_header_senders(void **state)
{
    fixture_t *f = *state;

    assert_int_equal(internal_outcome(f, "10.0.0.5", NULL, "1", 0, NULL),
                     RL2_OUTCOME_BYPASS);
    assert_int_equal(internal_outcome(f, "127.0.0.1", NULL, "1", 0, NULL),
                     RL2_OUTCOME_ALLOW);
    assert_int_equal(internal_outcome(f, "192.0.2.7", NULL, "1", 0, NULL),
                     RL2_OUTCOME_ALLOW);
    /* Behind the load balancer, a client naming the gateway. */
    assert_int_equal(internal_outcome(f, "127.0.0.1", NULL, "1", 0, "10.0.0.5"),
                     RL2_OUTCOME_ALLOW);
    /* Behind mod_remoteip: the one that connected, not the client a
     * proxy named. */
    assert_int_equal(
        internal_outcome(f, "203.0.113.9", "10.0.0.5", "1", 0, NULL),
        RL2_OUTCOME_BYPASS);
    assert_int_equal(internal_outcome(f, "10.0.0.5", "127.0.0.1", "1", 0, NULL),
                     RL2_OUTCOME_ALLOW);
    /* From the gateway, without the header: counted. */
    assert_int_equal(internal_outcome(f, "10.0.0.5", NULL, NULL, 0, NULL),
                     RL2_OUTCOME_ALLOW);
}

/* Each element of the header must say internal: a value appended to a
 * client's own, or an empty element, is never read in the client's
 * favour.  Empty and "0" say no, anything else yes. */
static void
test_internal_header_values(void **state)
{
    fixture_t        *f = *state;
    const char *const no[] = {
        "0", "", " ", "1, 0", "0, 1", "1,", ",1", "1,,1"
    };
    const char *const yes[] = { "1", " 1 ", "yes", "1, 1", "1,true" };

    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        print_message("  no: \"%s\"\n", no[i]);
        assert_int_equal(internal_outcome(f, "10.0.0.5", NULL, no[i], 0, NULL),
                         RL2_OUTCOME_ALLOW);
    }
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        print_message("  yes: \"%s\"\n", yes[i]);
        assert_int_equal(internal_outcome(f, "10.0.0.5", NULL, yes[i], 0, NULL),
                         RL2_OUTCOME_BYPASS);
    }
}

/* The front end's flag (the server's variable) bypasses from any peer
 * when the policy says whitelist.internal, and nothing otherwise; the
 * variable's values read as the header's. */
static void
test_internal_variable(void **state)
{
    fixture_t    *f = *state;
    rl2_policy_t *p;
    rl2_err_t     err;

    assert_int_equal(internal_outcome(f, "192.0.2.7", NULL, NULL, 1, NULL),
                     RL2_OUTCOME_BYPASS);
    assert_int_equal(internal_outcome(f, "192.0.2.7", NULL, "0", 1, NULL),
                     RL2_OUTCOME_BYPASS);
    assert_false(rl2_internal_value(NULL));
    assert_false(rl2_internal_value(""));
    assert_false(rl2_internal_value("0"));
    assert_true(rl2_internal_value("1"));
    assert_true(rl2_internal_value("yes"));
    assert_true(rl2_internal_value("00"));
    /* Without whitelist.internal neither the flag nor the header does
     * anything. */
    assert_int_equal(rl2_config_load_string(
                         "rules = ( { name = \"r\"; paths = \"/**\";\n"
                         "  limits = ( { rate = \"1000/hour\"; } ); } );\n",
                         "t.conf", NULL, &p, &err),
                     RL2_OK);
    rl2_policy_free(f->policy);
    f->policy = p;
    assert_int_equal(internal_outcome(f, "10.0.0.5", NULL, "1", 1, NULL),
                     RL2_OUTCOME_ALLOW);
}

/* A request one layer refuses takes no entry in the zone: a flood of
 * refused requests with made-up keys creates none and evicts none, so
 * the zone's live counters stay as they were. */
static void
test_refused_creates_no_entry(void **state)
{
    fixture_t       *f = *state;
    rl2_zone_stats_t before, after;
    rl2_err_t        err;
    char             key[32];

    for (int i = 0; i < 2 + 200; i++) {
        rl2_outcome_t o;

        snprintf(key, sizeof(key), "made-up-%d", i);
        assert_int_equal(send_key(f, key, NULL, &o), RL2_OK);
        assert_int_equal(o, i == 0 ? RL2_OUTCOME_ALLOW : RL2_OUTCOME_DENY);
        if (i == 1) {
            assert_int_equal(rl2_zone_stats(f->zone, &before, &err), RL2_OK);
        }
    }
    assert_int_equal(rl2_zone_stats(f->zone, &after, &err), RL2_OK);
    assert_int_equal(before.used, 2); /* the site and the first key */
    assert_int_equal(after.used, before.used);
    assert_int_equal(after.evictions, 0);
}

/* Decide path for peer with API key `key`; the outcome. */
static rl2_outcome_t
send_api(fixture_t *f, const char *path, const char *peer, const char *key)
{
    rl2_request_t req = { .path = path, .peer_ip = peer };
    rl2_verdict_t v;

    req.header = apikey_header;
    req.header_ctx = (void *)key;
    assert_int_equal(decide_one(f, &req, &v, NULL), RL2_OK);
    return v.outcome;
}

/* Half a million admitted requests, each with a new API key (two new
 * entries each, live for the rest of the month), through a zone of
 * 100,000 entries: the victim's spent login limit and spent monthly
 * quota are protected counters, which new keys never evict. */
static void
test_flood_of_new_keys_keeps_spent_counters(void **state)
{
    fixture_t       *f = *state;
    rl2_zone_stats_t zs;
    rl2_err_t        err;
    char             key[32];
    int              i;

    for (i = 0; i < 5; i++) {
        assert_int_equal(send_api(f, "/login", "192.0.2.1", NULL),
                         RL2_OUTCOME_ALLOW);
    }
    for (i = 0; i < 50; i++) {
        assert_int_equal(send_api(f, "/api/x", "192.0.2.1", "VICTIM"),
                         RL2_OUTCOME_ALLOW);
    }
    assert_int_equal(send_api(f, "/login", "192.0.2.1", NULL),
                     RL2_OUTCOME_DENY);
    assert_int_equal(send_api(f, "/api/x", "192.0.2.1", "VICTIM"),
                     RL2_OUTCOME_DENY);
    for (i = 0; i < 500000; i++) {
        snprintf(key, sizeof(key), "flood-%d", i);
        if (send_api(f, "/api/x", "198.51.100.7", key) != RL2_OUTCOME_ALLOW) {
            fail_msg("flood request %d refused", i);
        }
    }
    assert_int_equal(rl2_zone_stats(f->zone, &zs, &err), RL2_OK);
    assert_true(zs.evictions >= 2 * 500000 - 100000);
    assert_int_equal(send_api(f, "/login", "192.0.2.1", NULL),
                     RL2_OUTCOME_DENY);
    assert_int_equal(send_api(f, "/api/x", "192.0.2.1", "VICTIM"),
                     RL2_OUTCOME_DENY);
}

/* PHP truncates a parameter name at its first NUL byte (strlen() in
 * php_register_variable_ex): "api_key%00<anything>" is api_key to it,
 * however long <anything> is.  The core reads a short tail so, but a
 * name of 128 bytes or more is no name at all to it: PHP takes REAL
 * (the last), the core counts RANDOM only. */
static void
test_apikey_nul_truncated_long_name(void **state)
{
    fixture_t    *f = *state;
    rl2_outcome_t o;
    char          q[400] = "api_key=RANDOM&api_key%00";

    assert_int_equal(send_key(f, NULL, "api_key=RANDOM&api_key%00x=REAL", &o),
                     RL2_ERR_REQUEST);
    memset(q + strlen(q), 'x', 130);
    strcat(q, "=REAL");
    assert_int_equal(send_key(f, NULL, q, &o), RL2_ERR_REQUEST);
}

/* The same for _method: Laravel (Symfony) routes this POST as a DELETE. */
static void
test_override_nul_truncated_long_name(void **state)
{
    fixture_t *f = *state;
    char       rule[64];
    char       q[400] = "_method%00";

    memset(q + strlen(q), 'x', 130);
    strcat(q, "=DELETE");
    assert_int_equal(send_req(f, "POST", "/e", q, NULL, rule),
                     RL2_OUTCOME_ALLOW);
    assert_string_equal(rule, "edit");
    assert_int_equal(send_req(f, "POST", "/e", q, NULL, rule),
                     RL2_OUTCOME_DENY);
}

/* Two layers of one request with the same storage key (a budget two
 * matching rules share): the second get() finds the entry the first just
 * created, live (expires_us == now), and promotes it.  So every new key
 * that makes one request lands in protected, and a flood of them evicts
 * a spent counter after about one zone of requests. */
static void
test_shared_budget_new_keys_keep_spent_counters(void **state)
{
    fixture_t *f = *state;
    char       key[32];
    int        i;

    for (i = 0; i < 5; i++) {
        assert_int_equal(send_api(f, "/login", "192.0.2.1", NULL),
                         RL2_OUTCOME_ALLOW);
    }
    assert_int_equal(send_api(f, "/login", "192.0.2.1", NULL),
                     RL2_OUTCOME_DENY);
    for (i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "flood-%d", i);
        if (send_api(f, "/api/upload", "198.51.100.7", key)
            != RL2_OUTCOME_ALLOW) {
            fail_msg("flood request %d refused", i);
        }
    }
    assert_int_equal(send_api(f, "/login", "192.0.2.1", NULL),
                     RL2_OUTCOME_DENY);
}

/* Two matching rules that share a limit (one name, algorithm and
 * window) share one budget: a request meeting both counts once. */
static void
test_shared_budget_counts_a_request_once(void **state)
{
    fixture_t    *f = *state;
    rl2_verdict_t v;
    rl2_request_t req = { .path = "/api/upload", .peer_ip = "192.0.2.1" };

    req.header = apikey_header;
    req.header_ctx = (void *)"ONE";
    assert_int_equal(decide_one(f, &req, &v, NULL), RL2_OK);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    assert_int_equal(v.n_layers, 1);
    assert_int_equal(v.layers[0].result.remaining, 99);
    req.path = "/api/x";
    assert_int_equal(decide_one(f, &req, &v, NULL), RL2_OK);
    assert_int_equal(v.layers[0].result.remaining, 98);
}

/* A request refused by its address's counter promotes that counter
 * only: the key it carried, counted once, stays on probation, where new
 * keys evict it.  Else one admitted and one refused request would
 * protect any key a client chose. */
static void
test_refusal_promotes_only_the_refusing_counter(void **state)
{
    fixture_t    *f = *state;
    rl2_verdict_t v;
    rl2_request_t req = { .path = "/api/x", .peer_ip = "192.0.2.1" };
    char          ip[32], key[32];

    req.header = apikey_header;
    req.header_ctx = (void *)"CHOSEN";
    assert_int_equal(decide_one(f, &req, &v, NULL), RL2_OK);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    assert_int_equal(decide_one(f, &req, &v, NULL), RL2_OK);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY); /* per_ip spent */
    for (int i = 0; i < (int)RL2_ZONE_MIN_ENTRIES; i++) {
        snprintf(ip, sizeof(ip), "198.51.100.%d", i + 1);
        snprintf(key, sizeof(key), "new-%d", i);
        assert_int_equal(send_api(f, "/api/x", ip, key), RL2_OUTCOME_ALLOW);
    }
    /* The refusing counter was kept; CHOSEN's count of one was not. */
    assert_int_equal(decide_one(f, &req, &v, NULL), RL2_OK);
    assert_int_equal(v.outcome, RL2_OUTCOME_DENY);
    req.peer_ip = "203.0.113.1";
    assert_int_equal(decide_one(f, &req, &v, NULL), RL2_OK);
    assert_int_equal(v.outcome, RL2_OUTCOME_ALLOW);
    assert_int_equal(v.layers[1].result.remaining, 99);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_head_is_get, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_method_case, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_override_considered,
                                        setup_override, teardown),
        cmocka_unit_test_setup_teardown(test_override_off, setup_plain,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_readings_do_not_shadow,
                                        setup_order, teardown),
        cmocka_unit_test_setup_teardown(test_override_spellings, setup_override,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_path_info, setup_path, teardown),
        cmocka_unit_test_setup_teardown(test_path_decoded_once, setup_path,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_internal_header_senders,
                                        setup_internal, teardown),
        cmocka_unit_test_setup_teardown(test_internal_header_values,
                                        setup_internal, teardown),
        cmocka_unit_test_setup_teardown(test_internal_variable, setup_internal,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tier_header_senders, setup_tierhdr,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_host_spellings, setup_host,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_apikey_spellings, setup_apikey,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_apikey_twice_refused, setup_apikey,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_new_entry_never_takes_a_found_one,
                                        setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_refused_client_stays_counted,
                                        setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_refused_creates_no_entry,
                                        setup_flood, teardown),
        cmocka_unit_test_setup_teardown(
            test_flood_of_new_keys_keeps_spent_counters, setup_quota, teardown),
        cmocka_unit_test_setup_teardown(
            test_refusal_promotes_only_the_refusing_counter, setup_promote,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_budget_counts_a_request_once, setup_shared, teardown),
        cmocka_unit_test_setup_teardown(test_apikey_nul_truncated_long_name,
                                        setup_apikey, teardown),
        cmocka_unit_test_setup_teardown(test_override_nul_truncated_long_name,
                                        setup_override, teardown),
        cmocka_unit_test_setup_teardown(
            test_shared_budget_new_keys_keep_spent_counters, setup_shared,
            teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
