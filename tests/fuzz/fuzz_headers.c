/*
 * fuzz_headers.c -- libFuzzer target: the header and body renderer of
 * common/decide/headers.c driven with arbitrary verdicts.  Any bytes choose the
 * outcome, the layers (each one of a policy's limits, of every
 * algorithm, with arbitrary 64-bit results), the shown layer, the tier,
 * the header switches (legacy, scope, algorithm, delta reset) and the
 * wall clock (up to year 2200, the range the
 * algorithms promise).  The renderer must never crash or overflow, and:
 *   - asked with no room, it emits nothing and says how much it needs
 *     (at most RL2_HEADERS_MAX); given exactly that, it emits every
 *     field, the same as with 64 KiB;
 *   - every value is one line of printable text; Retry-After is a whole
 *     number >= 1, sent exactly when the verdict is a denial;
 *   - the body is NUL-terminated in any buffer size, and a JSON object
 *     when it fits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/config.h"
#include "ratelimit2/headers.h"

static const char *const policy_text =
    "tiers = ( { name = \"free\"; upgrade_url = \"https://x/\\\"up\\\"\"; },"
    " { name = \"pro\"; } );\n"
    "headers = { scope = true; algorithm = true; };\n"
    "rules = (\n"
    " { name = \"all\"; paths = [ \"/**\" ]; limits = (\n"
    "   { name = \"tb\"; rate = \"100/min\"; burst = 7;"
    " algorithm = \"token_bucket\"; },\n"
    "   { name = \"sl\"; rate = \"3/s\"; algorithm = \"sliding_log\"; },\n"
    "   { name = \"sw\"; rate = \"92233/1w\";"
    " algorithm = \"sliding_window\"; },\n"
    "   { name = \"fw\"; rate = \"1/1d\"; algorithm = \"fixed_window\"; },\n"
    "   { name = \"lb\"; rate = \"5/h\"; algorithm = \"leaky_bucket\"; },\n"
    "   { name = \"cc\"; limit = 2; algorithm = \"concurrency\"; },\n"
    "   { name = \"qd\"; rate = \"20/day\"; algorithm = \"quota\"; },\n"
    "   { name = \"qm\"; rate = \"1000/month\"; algorithm = \"quota\"; },\n"
    "   { name = \"ov\"; rate = \"5/hour\"; overflow = \"2/5min\"; },\n"
    "   { name = \"a_name_of_sixty_three_bytes_which_is_the_longest_allowed_"
    "xyzw\"; rate = \"1/s\"; key = \"header:X-Client\"; }\n"
    " ); tiers = { pro = \"unlimited\"; }; }\n"
    ");\n";

#define MAX_LIMITS 32

static rl2_policy_t      *policy;
static const rl2_limit_t *limits[MAX_LIMITS];
static const rl2_rule_t  *rules[MAX_LIMITS];
static size_t             n_limits;

static void
add_set(const rl2_rule_t *rule, const rl2_limit_set_t *set)
{
    for (size_t i = 0; i < set->n && n_limits < MAX_LIMITS; i++) {
        rules[n_limits] = rule;
        limits[n_limits++] = &set->limits[i];
    }
}

static void
setup(void)
{
    rl2_err_t err;

    if (rl2_config_load_string(policy_text, "fuzz-policy", NULL, &policy, &err)
        != RL2_OK) {
        fprintf(stderr, "fuzz setup: %s\n", err.msg);
        abort();
    }
    for (size_t r = 0; r < policy->n_rules; r++) {
        const rl2_rule_t *rule = &policy->rules[r];

        add_set(rule, &rule->limits);
        for (size_t t = 0; rule->tiers != NULL && t < policy->n_tiers; t++) {
            add_set(rule, &rule->tiers[t]);
        }
    }
    if (n_limits < 10) {
        abort();
    }
}

/* The input, read front to back; zeros once it runs out. */
typedef struct {
    const uint8_t *p;
    size_t         left;
} reader_t;

static uint64_t
take(reader_t *r, size_t bytes)
{
    uint64_t v = 0;

    for (size_t i = 0; i < bytes; i++) {
        v = v << 8 | (r->left ? (r->left--, *r->p++) : 0);
    }
    return v;
}

typedef struct {
    char   seen[4096]; /* "name: value\n" of every header, in order */
    size_t len;
    int    retry_after;
} capture_t;

static void
sink(void *ctx, const char *name, const char *value)
{
    capture_t *c = ctx;

    if (name == NULL || name[0] == '\0' || value == NULL) {
        abort();
    }
    for (const char *s = value; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            abort();
        }
    }
    if (strcmp(name, "Retry-After") == 0) {
        if (value[0] == '\0' || value[0] == '0'
            || strspn(value, "0123456789") != strlen(value)) {
            abort();
        }
        c->retry_after++;
    }
    c->len += (size_t)snprintf(
        c->seen + c->len,
        c->len < sizeof(c->seen) ? sizeof(c->seen) - c->len : 0, "%s: %s\n",
        name, value);
    if (c->len >= sizeof(c->seen)) {
        c->len = sizeof(c->seen) - 1;
    }
}

static void
build(reader_t *r, rl2_verdict_t *v)
{
    rl2_verdict_init(v);
    v->outcome = (rl2_outcome_t)(take(r, 1) % 4);
    v->n_layers = take(r, 1) % (RL2_MAX_LAYERS + 1);
    v->shown = (int)(take(r, 1) % (v->n_layers + 1)) - 1;
    v->tier = (int)(take(r, 1) % (policy->n_tiers + 2)) - 1;
    for (size_t i = 0; i < v->n_layers; i++) {
        rl2_layer_t *l = &v->layers[i];
        size_t       k = take(r, 1) % n_limits;

        l->limit = limits[k];
        l->rule = rules[k];
        l->dry_run = (int)(take(r, 1) & 1);
        l->result.allowed = (int)(take(r, 1) & 1);
        l->result.limit = (int64_t)take(r, 8);
        l->result.remaining = (int64_t)take(r, 8);
        l->result.reset_us = (int64_t)take(r, 8);
        l->result.retry_after_us = (int64_t)take(r, 8);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int    ready;
    reader_t      r = { data, size };
    rl2_verdict_t v;
    rl2_clock_t   now;
    capture_t     exact = { .len = 0 }, roomy = { .len = 0 };
    static char   big[65536];
    char          body[RL2_BODY_MAX];
    unsigned      switches;
    size_t        need, n, small;

    if (!ready) {
        setup();
        ready = 1;
    }
    switches = (unsigned)take(&r, 1);
    policy->reset_delta = switches & 1;
    policy->header_scope = (switches >> 1) & 1;
    policy->header_algorithm = (switches >> 2) & 1;
    policy->header_optional = policy->header_scope || policy->header_algorithm;
    policy->header_legacy = (switches >> 3) & 1;
    now.mono_us = (int64_t)take(&r, 8);
    now.wall_us = (int64_t)(take(&r, 8) % 7258118400000000ULL);
    small = take(&r, 1) % 80;
    build(&r, &v);

    /* Too small a buffer: nothing emitted, the size needed returned. */
    need = rl2_headers_render(policy, &v, &now, NULL, 0, sink, &exact);
    if (exact.len != 0 || need > RL2_HEADERS_MAX
        || (v.shown >= 0) != (need > 0)) {
        abort();
    }
    char *buf = malloc(need ? need : 1);

    if (rl2_headers_render(policy, &v, &now, buf, need, sink, &exact) != need
        || rl2_headers_render(policy, &v, &now, big, sizeof(big), sink, &roomy)
               != need
        || exact.len != roomy.len || memcmp(exact.seen, roomy.seen, exact.len)
        || exact.retry_after
               != (v.outcome == RL2_OUTCOME_DENY && v.shown >= 0)) {
        abort();
    }
    free(buf);

    n = rl2_body_render(policy, &v, &now, body, sizeof(body));
    if (strnlen(body, sizeof(body)) >= sizeof(body)
        || (n < sizeof(body)
            && (body[0] != '{' || n < 3 || strcmp(body + n - 2, "}\n")))) {
        abort();
    }
    /* Any buffer size, even a tiny one: cut, but terminated. */
    char *tiny = malloc(small ? small : 1);

    rl2_body_render(policy, &v, &now, tiny, small);
    if (small > 0 && strnlen(tiny, small) >= small) {
        abort();
    }
    free(tiny);
    return 0;
}
