/*
 * policy.c -- the policy object: its arena, and the small parsers and
 * validators that the config loader and the front ends' inline directives
 * share (rates, CIDRs, key scopes, modes, methods, limits).
 *
 * All policy memory comes from one arena of malloc'd blocks, freed at once
 * by rl2_policy_free(): a policy is built at load time and read-only after.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "ratelimit2/policy.h"

#include "base/buf.h"
#include "base/base_internal.h"
#include "algo/algo_internal.h"
#include "policy/policy_internal.h"

const char *const rl2_factor_names[RL2_FACTOR_N] = { "load", "schedule", "geo",
                                                     "reputation" };

#define RL2_ARENA_BLOCK 8192

typedef struct rl2_arena_block {
    struct rl2_arena_block *next;
    size_t                  used;
    size_t                  size;
    _Alignas(16) unsigned char data[];
} rl2_arena_block_t;

/* What rl2_policy_free() calls before it frees the blocks. */
typedef struct rl2_arena_cleanup {
    struct rl2_arena_cleanup *next;
    void (*fn)(void *);
    void *data;
} rl2_arena_cleanup_t;

struct rl2_arena {
    rl2_arena_block_t   *head;
    rl2_arena_cleanup_t *cleanups; /* the last registered first */
};

void *
rl2_policy_alloc(rl2_policy_t *policy, size_t size)
{
    rl2_arena_t       *arena = policy->arena;
    rl2_arena_block_t *b = arena->head;

    size = (size + 15) & ~(size_t)15;
    if (size == 0) {
        size = 16;
    }
    if (b == NULL || b->size - b->used < size) {
        size_t bsize = size > RL2_ARENA_BLOCK ? size : RL2_ARENA_BLOCK;

        b = malloc(sizeof(*b) + bsize);
        if (b == NULL) {
            return NULL;
        }
        b->used = 0;
        b->size = bsize;
        b->next = arena->head;
        arena->head = b;
    }
    void *p = b->data + b->used;

    b->used += size;
    memset(p, 0, size);
    return p;
}

char *
rl2_policy_strdup(rl2_policy_t *policy, const char *s)
{
    size_t len = strlen(s);
    char  *copy = rl2_policy_alloc(policy, len + 1);

    if (copy != NULL) {
        memcpy(copy, s, len + 1);
    }
    return copy;
}

rl2_status_t
rl2_policy_on_free(rl2_policy_t *policy, void (*fn)(void *), void *data,
                   rl2_err_t *err)
{
    rl2_arena_cleanup_t *c = rl2_policy_alloc(policy, sizeof(*c));

    if (c == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    c->fn = fn;
    c->data = data;
    c->next = policy->arena->cleanups;
    policy->arena->cleanups = c;
    return RL2_OK;
}

rl2_status_t
rl2_policy_create(const char *source, rl2_policy_t **out, rl2_err_t *err)
{
    rl2_arena_t  *arena = calloc(1, sizeof(*arena));
    rl2_policy_t *policy;

    *out = NULL;
    if (arena == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    /* The policy struct itself lives in its own arena. */
    rl2_policy_t bootstrap = { .arena = arena };

    policy = rl2_policy_alloc(&bootstrap, sizeof(*policy));
    if (policy == NULL) {
        free(arena);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    policy->arena = arena;
    policy->source = rl2_policy_strdup(policy, source ? source : "inline");
    policy->mode = RL2_MODE_ENFORCE;
    policy->default_tier = -1;
    policy->ipv6_prefix = 64;
    policy->ban_status = 429;
    rl2_hash_key_from_secret("", &policy->hash_key);
    if (policy->source == NULL) {
        rl2_policy_free(policy);
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    *out = policy;
    return RL2_OK;
}

void
rl2_policy_free(rl2_policy_t *policy)
{
    if (policy == NULL) {
        return;
    }
    rl2_arena_t       *arena = policy->arena;
    rl2_arena_block_t *b;

    /* The cleanups live in the blocks: each is read before they go. */
    for (rl2_arena_cleanup_t *c = arena->cleanups; c != NULL; c = c->next) {
        c->fn(c->data);
    }
    b = arena->head;
    while (b != NULL) {
        rl2_arena_block_t *next = b->next;

        free(b);
        b = next;
    }
    free(arena);
}

int
rl2_policy_overrides_state(const rl2_policy_t *policy, const char *zone,
                           char *buf, size_t size)
{
    int n;

    if (policy != NULL && policy->overrides_state != NULL) {
        n = snprintf(buf, size, "%s", policy->overrides_state);
    }
    else {
        /* One file per zone: processes sharing a zone share its table. */
        n = snprintf(buf, size, RL2_STATE_DIR "/%s.overrides",
                     zone[0] == '/' ? zone + 1 : zone);
    }
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

int
rl2_policy_overrides_audit(const rl2_policy_t *policy, const char *zone,
                           char *buf, size_t size)
{
    const char *state = policy != NULL ? policy->overrides_state : NULL;
    const char *slash = state != NULL ? strrchr(state, '/') : NULL;
    int         n;

    if (policy != NULL && policy->overrides_audit != NULL) {
        n = snprintf(buf, size, "%s", policy->overrides_audit);
    }
    else if (slash != NULL) {
        /* Beside a state file of the policy's own: a site that keeps its
         * overrides elsewhere keeps their trail with them. */
        n = snprintf(buf, size, "%.*s%s.audit", (int)(slash - state + 1), state,
                     zone[0] == '/' ? zone + 1 : zone);
    }
    else {
        n = snprintf(buf, size, RL2_STATE_DIR "/%s.audit",
                     zone[0] == '/' ? zone + 1 : zone);
    }
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* ---- rates ---- */

typedef struct {
    const char  *name;
    int64_t      us;
    rl2_period_t period;
} rl2_unit_t;

static const rl2_unit_t rl2_units[] = {
    { "s", RL2_US_PER_S, RL2_PERIOD_NONE },
    { "sec", RL2_US_PER_S, RL2_PERIOD_NONE },
    { "second", RL2_US_PER_S, RL2_PERIOD_NONE },
    { "seconds", RL2_US_PER_S, RL2_PERIOD_NONE },
    { "m", 60 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "min", 60 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "minute", 60 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "minutes", 60 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "h", 3600 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "hour", 3600 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "hours", 3600 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "d", 86400 * RL2_US_PER_S, RL2_PERIOD_DAY },
    { "day", 86400 * RL2_US_PER_S, RL2_PERIOD_DAY },
    { "days", 86400 * RL2_US_PER_S, RL2_PERIOD_DAY },
    { "w", 7 * 86400 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "week", 7 * 86400 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "weeks", 7 * 86400 * RL2_US_PER_S, RL2_PERIOD_NONE },
    { "month", 0, RL2_PERIOD_MONTH },
    { "months", 0, RL2_PERIOD_MONTH },
};

/* Parse a decimal int64 at *p, advancing it; -1 when absent or too big. */
static int
rl2_parse_count(const char **p, int64_t *out)
{
    const char *s = *p;
    int64_t     v = 0;

    if (!isdigit((unsigned char)*s)) {
        return -1;
    }
    while (isdigit((unsigned char)*s)) {
        if (__builtin_mul_overflow(v, 10, &v)
            || __builtin_add_overflow(v, *s - '0', &v)) {
            return -1;
        }
        s++;
    }
    *p = s;
    *out = v;
    return 0;
}

static const rl2_unit_t *
rl2_unit_find(const char *name)
{
    for (size_t i = 0; i < sizeof(rl2_units) / sizeof(rl2_units[0]); i++) {
        if (strcmp(rl2_units[i].name, name) == 0) {
            return &rl2_units[i];
        }
    }
    return NULL;
}

rl2_status_t
rl2_rate_parse(const char *text, int64_t *count, int64_t *window_us,
               rl2_period_t *period, rl2_err_t *err)
{
    const char       *p = text;
    int64_t           n, mult = 1;
    const rl2_unit_t *unit;

    /* rl2_parse_count fails on digits only when they overflow. */
    if (isdigit((unsigned char)*p) && rl2_parse_count(&p, &n) != 0) {
        return rl2_err_set(err, RL2_ERR_RANGE,
                           "invalid rate \"%s\": "
                           "count too large",
                           text);
    }
    if (p == text || *p != '/') {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid rate \"%s\": "
                           "expected COUNT/WINDOW such as 100/60s or "
                           "5/hour",
                           text);
    }
    p++;
    if (isdigit((unsigned char)*p) && rl2_parse_count(&p, &mult) != 0) {
        return rl2_err_set(err, RL2_ERR_RANGE,
                           "invalid rate \"%s\": "
                           "window multiplier too large",
                           text);
    }
    unit = rl2_unit_find(p);
    if (unit == NULL) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid rate \"%s\": "
                           "unknown unit \"%s\" (use s, min, hour, day, "
                           "week or month)",
                           text, p);
    }
    if (n < 1 || mult < 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid rate \"%s\": "
                           "count and window must be at least 1",
                           text);
    }
    *period = mult == 1 ? unit->period : RL2_PERIOD_NONE;
    if (unit->period == RL2_PERIOD_MONTH && mult != 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid rate \"%s\": "
                           "a month window cannot be multiplied",
                           text);
    }
    if (__builtin_mul_overflow(unit->us, mult, window_us)) {
        return rl2_err_set(err, RL2_ERR_RANGE,
                           "invalid rate \"%s\": "
                           "window overflows 64-bit microseconds",
                           text);
    }
    *count = n;
    return RL2_OK;
}

rl2_status_t
rl2_duration_parse(const char *text, int64_t *us, rl2_err_t *err)
{
    const char       *p = text;
    int64_t           n;
    const rl2_unit_t *unit;

    if (!isdigit((unsigned char)*p) || rl2_parse_count(&p, &n) != 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid duration \"%s\": expected a count and "
                           "a unit such as 30s, 10min, 2h or 7d",
                           text);
    }
    if (*p == '\0') {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid duration \"%s\": a count needs a unit "
                           "(%ss, %smin, %sh, %sd)",
                           text, text, text, text, text);
    }
    /* A month has no fixed length: a duration is a count of µs. */
    unit = rl2_unit_find(p);
    if (unit == NULL || unit->us == 0) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid duration \"%s\": unknown unit \"%s\" "
                           "(use s, min, h, d or w)",
                           text, p);
    }
    if (n < 1) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid duration \"%s\": must be at least 1", text);
    }
    if (__builtin_mul_overflow(unit->us, n, us)) {
        return rl2_err_set(err, RL2_ERR_RANGE,
                           "invalid duration \"%s\": too long", text);
    }
    return RL2_OK;
}

/* ---- addresses ---- */

rl2_status_t
rl2_cidr_parse(const char *text, rl2_cidr_t *out, rl2_err_t *err)
{
    char        buf[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(text, '/');
    size_t      alen = slash ? (size_t)(slash - text) : strlen(text);
    unsigned    max;

    memset(out, 0, sizeof(*out));
    if (alen == 0 || alen >= sizeof(buf)) {
        return rl2_err_set(err, RL2_ERR_CONFIG, "invalid address \"%s\"", text);
    }
    memcpy(buf, text, alen);
    buf[alen] = '\0';
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    }
    else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    }
    else {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid address \"%s\": "
                           "expected IPv4 or IPv6, optionally /prefix",
                           text);
    }
    out->prefix = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        int64_t     bits;

        if (rl2_parse_count(&p, &bits) != 0 || *p != '\0' || bits > max) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "invalid prefix in "
                               "\"%s\": expected 0 to %u",
                               text, max);
        }
        out->prefix = (unsigned)bits;
    }
    return RL2_OK;
}

int
rl2_cidr_match(const rl2_cidr_t *net, int family, const uint8_t *addr)
{
    unsigned full = net->prefix / 8, rest = net->prefix % 8;

    if (net->family != family) {
        return 0;
    }
    if (memcmp(net->addr, addr, full) != 0) {
        return 0;
    }
    if (rest != 0) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));

        return (net->addr[full] & mask) == (addr[full] & mask);
    }
    return 1;
}

/* ---- scopes, modes, methods, globs ---- */

rl2_status_t
rl2_key_parse(rl2_policy_t *policy, const char *text, rl2_key_kind_t *kind,
              const char **header, rl2_err_t *err)
{
    static const struct {
        const char    *name;
        rl2_key_kind_t kind;
    } keys[] = {
        { "ip", RL2_KEY_IP },          { "user", RL2_KEY_USER },
        { "api_key", RL2_KEY_APIKEY }, { "route", RL2_KEY_ROUTE },
        { "global", RL2_KEY_GLOBAL },
    };

    *header = NULL;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(text, keys[i].name) == 0) {
            *kind = keys[i].kind;
            return RL2_OK;
        }
    }
    if (strncmp(text, "header:", 7) == 0 && text[7] != '\0') {
        for (const char *p = text + 7; *p; p++) {
            if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
                return rl2_err_set(err, RL2_ERR_CONFIG,
                                   "invalid header "
                                   "name in key \"%s\"",
                                   text);
            }
        }
        *kind = RL2_KEY_HEADER;
        *header = rl2_policy_strdup(policy, text + 7);
        if (*header == NULL) {
            return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
        }
        return RL2_OK;
    }
    return rl2_err_set(err, RL2_ERR_CONFIG,
                       "unknown key \"%s\": expected "
                       "ip, user, api_key, route, global or header:NAME",
                       text);
}

rl2_status_t
rl2_mode_parse(const char *text, rl2_mode_t *out, rl2_err_t *err)
{
    if (strcmp(text, "enforce") == 0) {
        *out = RL2_MODE_ENFORCE;
    }
    else if (strcmp(text, "dry_run") == 0) {
        *out = RL2_MODE_DRY_RUN;
    }
    else if (strcmp(text, "off") == 0) {
        *out = RL2_MODE_OFF;
    }
    else {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "unknown mode \"%s\": "
                           "expected enforce, dry_run or off",
                           text);
    }
    return RL2_OK;
}

/* Every request asks this: the first letter picks the one candidate, so
 * a method costs one string comparison.  Without case: Apache and the
 * applications behind it accept "post" as POST, so a rule for POST must
 * see it as POST too. */
unsigned
rl2_method_bit(const char *method)
{
    const char *name;
    unsigned    bit;

    switch (method[0] & ~0x20) {
    case 'G':
        name = "GET";
        bit = RL2_METHOD_GET;
        break;
    case 'H':
        name = "HEAD";
        bit = RL2_METHOD_HEAD;
        break;
    case 'D':
        name = "DELETE";
        bit = RL2_METHOD_DELETE;
        break;
    case 'O':
        name = "OPTIONS";
        bit = RL2_METHOD_OPTIONS;
        break;
    case 'C':
        name = "CONNECT";
        bit = RL2_METHOD_CONNECT;
        break;
    case 'T':
        name = "TRACE";
        bit = RL2_METHOD_TRACE;
        break;
    case 'P':
        switch (method[1] & ~0x20) {
        case 'O':
            name = "POST";
            bit = RL2_METHOD_POST;
            break;
        case 'U':
            name = "PUT";
            bit = RL2_METHOD_PUT;
            break;
        case 'A':
            name = "PATCH";
            bit = RL2_METHOD_PATCH;
            break;
        default:
            return 0;
        }
        break;
    default:
        return 0;
    }
    return strcasecmp(method, name) == 0 ? bit : 0;
}

rl2_status_t
rl2_glob_check(const char *glob, rl2_err_t *err)
{
    if (glob[0] != '/') {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "invalid path \"%s\": "
                           "must start with '/'",
                           glob);
    }
    if (strlen(glob) > 1024) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "path \"%.40s...\" is "
                           "longer than 1024 bytes",
                           glob);
    }
    return RL2_OK;
}

/* ---- limits ---- */

/* Append a Structured Field string: "..." with \ and " escaped and
 * control characters dropped. */
void
rl2_sf_string(rl2_buf_t *b, const char *s)
{
    rl2_buf_char(b, '"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            rl2_buf_char(b, '\\');
        }
        if ((unsigned char)*s >= 0x20 && *s != 0x7f) {
            rl2_buf_char(b, *s);
        }
    }
    rl2_buf_char(b, '"');
}

/* The header strings of a limit, rendered once at load time so that
 * answering a request only copies them. */
static rl2_status_t
rl2_limit_render(rl2_policy_t *policy, rl2_limit_t *limit, rl2_err_t *err)
{
    char      tmp[3 * RL2_NAME_MAX + 64];
    rl2_buf_t b;

    rl2_buf_init(&b, tmp, sizeof(tmp));
    rl2_sf_string(&b, limit->name);
    limit->sf_name = rl2_policy_strdup(policy, tmp);
    limit->sf_name_len = b.len;
    rl2_buf_str(&b, ";q=");
    rl2_buf_i64(&b, limit->algo.limit);
    if (limit->algo.algo == RL2_ALGO_QUOTA
        && limit->algo.period == RL2_PERIOD_DAY) {
        rl2_buf_str(&b, ";w=86400");
    }
    else if (limit->algo.algo != RL2_ALGO_QUOTA
             && limit->algo.algo != RL2_ALGO_CONCURRENCY) {
        rl2_buf_str(&b, ";w=");
        rl2_buf_i64(&b,
                    (limit->algo.window_us + RL2_US_PER_S - 1) / RL2_US_PER_S);
    }
    limit->sf_policy = rl2_policy_strdup(policy, tmp);
    limit->sf_policy_len = b.len;
    if (limit->sf_name == NULL || limit->sf_policy == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    return RL2_OK;
}

static void
rl2_limit_seed(rl2_limit_t *limit)
{
    char      tmp[RL2_NAME_MAX + 64];
    rl2_buf_t b;

    rl2_buf_init(&b, tmp, sizeof(tmp));
    rl2_buf_str(&b, limit->name);
    rl2_buf_char(&b, '|');
    rl2_buf_i64(&b, (int64_t)limit->algo.algo);
    rl2_buf_char(&b, '|');
    rl2_buf_i64(&b, limit->algo.window_us);
    rl2_buf_char(&b, '|');
    rl2_buf_i64(&b, (int64_t)limit->algo.period);
    rl2_hash_key_from_secret(tmp, &limit->key_seed);
}

rl2_status_t
rl2_limit_finish(rl2_policy_t *policy, rl2_limit_t *limit, int in_tier,
                 rl2_err_t *err)
{
    rl2_status_t st = rl2_algo_params_check(&limit->algo, err);
    rl2_err_t    oerr;

    if (st != RL2_OK) {
        return st;
    }
    if (limit->cost < 1 || limit->cost > limit->algo.limit) {
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "cost %" PRId64 " must be "
                           "between 1 and the limit (%" PRId64 ")",
                           limit->cost, limit->algo.limit);
    }
    if (limit->lease == RL2_LEASE_ON
        && (!rl2_algo_leasable(&limit->algo) || limit->overflow.limit != 0)) {
        /* Leased units are counted when taken and used later: a sliding
         * log would date them wrong, a concurrency slot is not a count
         * of a window, and an overflow allowance is asked for per
         * request. */
        return rl2_err_set(err, RL2_ERR_CONFIG,
                           "lease is for token_bucket, leaky_bucket, "
                           "fixed_window, sliding_window and quota limits "
                           "without an overflow allowance, not %s%s",
                           rl2_algo_name(limit->algo.algo),
                           limit->overflow.limit != 0 ? " with an overflow"
                                                      : "");
    }
    limit->state_size = rl2_algo_state_size(&limit->algo);
    if (limit->overflow.limit != 0) {
        if (limit->algo.algo == RL2_ALGO_CONCURRENCY) {
            return rl2_err_set(err, RL2_ERR_CONFIG,
                               "a concurrency limit "
                               "cannot have an overflow allowance");
        }
        /* A bucket of K refilling over W: "K more per W" without the
         * doubling a fixed window allows at its boundary. */
        limit->overflow.algo = RL2_ALGO_TOKEN_BUCKET;
        st = rl2_algo_params_check(&limit->overflow, &oerr);
        if (st != RL2_OK) {
            /* The message names a token_bucket rate the sysadmin never
             * wrote: say it is the overflow allowance. */
            return rl2_err_set(err, st, "overflow: %s", oerr.msg);
        }
        limit->state_size += rl2_algo_state_size(&limit->overflow);
    }
    limit->phase =
        (in_tier || limit->key == RL2_KEY_USER || limit->key == RL2_KEY_APIKEY)
            ? RL2_PHASE_LATE
            : RL2_PHASE_EARLY;
    if (limit->state_size > policy->max_state_size) {
        policy->max_state_size = limit->state_size;
    }
    if (limit->algo.algo == RL2_ALGO_CONCURRENCY) {
        policy->has_concurrency = 1;
    }
    limit->ttl_us = 0;
    if (limit->overflow.limit == 0
        && (limit->algo.algo == RL2_ALGO_TOKEN_BUCKET
            || limit->algo.algo == RL2_ALGO_LEAKY_BUCKET
            || limit->algo.algo == RL2_ALGO_SLIDING_LOG
            || limit->algo.algo == RL2_ALGO_CONCURRENCY)) {
        /* These algorithms' key lifetime is fixed by their parameters:
         * worked out once, not on every commit. */
        limit->ttl_us = rl2_algo_ttl_us(&limit->algo, 0);
    }
    rl2_limit_seed(limit);
    return rl2_limit_render(policy, limit, err);
}

/* An unlimited set still counts: one fixed window per hour with a limit
 * no client reaches, flagged so that it never denies nor shows. */
#define RL2_UNLIMITED_COUNT INT64_C(1000000000000)

rl2_status_t
rl2_limit_set_unlimited(rl2_policy_t *policy, rl2_limit_set_t *set,
                        const char *rule_name, rl2_key_kind_t key,
                        rl2_err_t *err)
{
    char         name[RL2_NAME_MAX + 16];
    rl2_limit_t *limit = rl2_policy_alloc(policy, sizeof(*limit));

    if (limit == NULL) {
        return rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
    }
    snprintf(name, sizeof(name), "%s.unlimited", rule_name);
    limit->name = rl2_policy_strdup(policy, name);
    limit->file = policy->source;
    limit->algo.algo = RL2_ALGO_FIXED_WINDOW;
    limit->algo.limit = RL2_UNLIMITED_COUNT;
    limit->algo.window_us = 3600 * RL2_US_PER_S;
    limit->key = key;
    limit->cost = 1;
    limit->unlimited = 1;
    set->limits = limit;
    set->n = 1;
    set->defined = 1;
    set->unlimited = 1;
    return limit->name ? rl2_limit_finish(policy, limit, 1, err)
                       : rl2_err_set(err, RL2_ERR_NOMEM, "out of memory");
}

void
rl2_policy_load_measure(rl2_policy_t *policy, rl2_load_fn fn, void *ctx)
{
    policy->load.measure = fn;
    policy->load.measure_ctx = ctx;
}
