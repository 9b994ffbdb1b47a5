/*
 * fuzz_match.c -- libFuzzer target: the request matcher.  Any bytes
 * become a request (method, path, host, client address, headers) decided
 * against a fixed policy with globs, hosts, tiers and forwarded-for
 * handling, over a small private zone that evicts constantly.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ratelimit2/config.h"
#include "ratelimit2/decide.h"
#include "ratelimit2/headers.h"

static const char *const policy_text =
    "match = \"first\";\n"
    "trusted_proxies = [ \"127.0.0.1\", \"::1\" ];\n"
    "api_key = { header = \"X-API-Key\"; query = \"api_key\"; };\n"
    "tier_from = { header = \"X-Tier\"; header_from = \"127.0.0.1\"; };\n"
    "tiers = [ \"free\", \"pro\" ];\n"
    "whitelist = { addresses = [ \"10.0.0.0/8\" ]; };\n"
    "rules = (\n"
    " { name = \"ex\"; paths = [ \"/health\" ]; exempt = true; },\n"
    " { name = \"a\"; methods = [ \"POST\", \"GET\" ];\n"
    "   paths = [ \"/api/*/export\", \"/files/**\", \"/x?y\" ];\n"
    "   hosts = [ \"*.example.org\" ]; continue = true;\n"
    "   limits = ( { rate = \"3/min\"; key = \"header:X-Client\"; } ); },\n"
    " { name = \"b\"; paths = [ \"/**\" ]; key = \"user\";\n"
    "   tiers = { free = ( { rate = \"5/hour\"; overflow = \"2/5min\"; },\n"
    "                      { rate = \"20/day\"; algorithm = \"quota\"; } );\n"
    "             pro = ( { rate = \"10/s\"; algorithm = \"sliding_log\"; }"
    " ); }; }\n"
    ");\n"
    "default = { limits = ( { rate = \"100/min\"; "
    "algorithm = \"sliding_window\"; } ); };\n";

static rl2_policy_t *policy;
static rl2_store_t  *store;
static rl2_zone_t   *zone;

/* Split the input into NUL-separated fields (missing ones are empty). */
typedef struct {
    char *f[8];
} fields_t;

static void
split(char *text, size_t size, fields_t *out)
{
    size_t k = 0;

    out->f[k++] = text;
    for (size_t i = 0; i < size && k < 8; i++) {
        if (text[i] == '\0') {
            out->f[k++] = text + i + 1;
        }
    }
    while (k < 8) {
        out->f[k++] = text + size;
    }
}

static const char *
header(void *ctx, const char *name)
{
    fields_t *f = ctx;

    if (strcasecmp(name, "X-Forwarded-For") == 0) {
        return f->f[5];
    }
    if (strcasecmp(name, "X-API-Key") == 0) {
        return f->f[6];
    }
    return f->f[7];
}

static void
sink(void *ctx, const char *name, const char *value)
{
    (void)ctx;
    if (name[0] == '\0' || value == NULL) {
        abort();
    }
}

static int
setup(void)
{
    char      name[64];
    rl2_err_t err;

    snprintf(name, sizeof(name), "/rl2-fuzz-%d", (int)getpid());
    if (rl2_config_load_string(policy_text, "fuzz-policy", NULL, &policy, &err)
            != RL2_OK
        || rl2_zone_open(name, 64, policy->max_state_size, 0600, &zone, &err)
               != RL2_OK
        || rl2_store_local_create(zone, &store, &err) != RL2_OK) {
        fprintf(stderr, "fuzz setup: %s\n", err.msg);
        abort();
    }
    rl2_zone_unlink(name, &err);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int    ready;
    char         *text = malloc(size + 1);
    fields_t      f;
    rl2_request_t req = { 0 };
    rl2_verdict_t v;
    rl2_clock_t   now = { 1000000000, 1700000000000000 };
    rl2_err_t     err;
    char          body[RL2_BODY_MAX];

    if (!ready) {
        ready = !setup();
    }
    memcpy(text, data, size);
    text[size] = '\0';
    split(text, size, &f);
    req.method = f.f[0];
    req.path = f.f[1];
    req.query = f.f[2];
    req.host = f.f[3];
    req.peer_ip = f.f[4];
    req.user = f.f[6][0] ? f.f[6] : NULL;
    req.header = header;
    req.header_ctx = &f;
    rl2_verdict_init(&v);
    if (rl2_decide(policy, NULL, 0, store, &req, RL2_PHASE_ALL, &now, &v, &err)
        == RL2_OK) {
        char hdrs[RL2_HEADERS_MAX];

        rl2_headers_render(policy, &v, &now, hdrs, sizeof(hdrs), sink, NULL);
        rl2_body_render(policy, &v, &now, body, sizeof(body));
        rl2_decide_end(store, &v, &now, &err);
    }
    free(text);
    return 0;
}
