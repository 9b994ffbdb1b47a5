/*
 * headers.c -- a verdict as HTTP header fields and a 429 JSON body.
 *
 * RateLimit-Policy lists every visible limit that applied; RateLimit and
 * the X-RateLimit-* fields report the most restrictive one (the verdict's
 * "shown" layer).  On a refusal, RateLimit's t, Retry-After and
 * X-RateLimit-Reset all point at the same moment: when the refused request
 * would fit, rounded up to whole seconds so a client that obeys is never
 * early.
 */
#include <stdio.h>
#include <string.h>

#include "ratelimit2/headers.h"

#include "base/buf.h"
#include "algo/algo_internal.h"
#include "decide/decide_internal.h"
#include "control/control_internal.h"

static long long
rl2_ceil_s(int64_t us)
{
    /* Divided first: no overflow whatever the algorithm reported. */
    return us <= 0 ? 0
                   : (long long)(us / RL2_US_PER_S + (us % RL2_US_PER_S != 0));
}

long long
rl2_retry_after_s(const rl2_verdict_t *v)
{
    if (v->outcome == RL2_OUTCOME_DENY && v->refusal != RL2_REFUSAL_LIMIT) {
        return v->refusal_retry_s > 0 ? v->refusal_retry_s : 1;
    }
    if (v->outcome != RL2_OUTCOME_DENY || v->shown < 0) {
        return 0;
    }
    long long s = rl2_ceil_s(v->layers[v->shown].result.retry_after_us);

    return s < 1 ? 1 : s;
}

/* Seconds until the shown limit's quota is back (t of RateLimit). */
static long long
rl2_reset_s(const rl2_verdict_t *v)
{
    if (v->outcome == RL2_OUTCOME_DENY) {
        return rl2_retry_after_s(v);
    }
    return rl2_ceil_s(v->layers[v->shown].result.reset_us);
}

/* The window a client sees (w of RateLimit-Policy); 0 when none. */
static long long
rl2_window_s(const rl2_limit_t *limit, const rl2_clock_t *now)
{
    int64_t start, end;

    switch (limit->algo.algo) {
    case RL2_ALGO_CONCURRENCY:
        return 0;
    case RL2_ALGO_QUOTA:
        rl2_period_bounds(limit->algo.period, now->wall_us, &start, &end);
        return rl2_ceil_s(end - start);
    default:
        return rl2_ceil_s(limit->algo.window_us);
    }
}

/* Write v in decimal at w (at most 20 bytes); returns the end. */
static char *
rl2_put_i64(char *w, int64_t v)
{
    return w + rl2_i64_text(w, v);
}

static char *
rl2_put_mem(char *w, const char *s, size_t n)
{
    memcpy(w, s, n);
    return w + n;
}

/* Is the limit's item the load-time string?  Not for a monthly quota
 * (a month's length varies) nor for a limit a runtime factor scaled (its
 * q is another: runtime.c leaves sf_policy NULL). */
static int
rl2_item_fixed(const rl2_limit_t *limit)
{
    return limit->sf_policy != NULL
           && !(limit->algo.algo == RL2_ALGO_QUOTA
                && limit->algo.period == RL2_PERIOD_MONTH);
}

/* The item of a limit whose item is not fixed, rendered now. */
static char *
rl2_put_item(char *p, const rl2_limit_t *limit, const rl2_clock_t *now)
{
    if (limit->sf_policy != NULL) {
        /* A monthly quota: the fixed part, then this month's w. */
        p = rl2_put_mem(p, limit->sf_policy, limit->sf_policy_len);
        p = rl2_put_mem(p, ";w=", 3);
        return rl2_put_i64(p, rl2_window_s(limit, now));
    }
    p = rl2_put_mem(p, limit->sf_name, limit->sf_name_len);
    p = rl2_put_mem(p, ";q=", 3);
    p = rl2_put_i64(p, limit->algo.limit);
    if (limit->algo.algo != RL2_ALGO_CONCURRENCY) {
        p = rl2_put_mem(p, ";w=", 3);
        p = rl2_put_i64(p, rl2_window_s(limit, now));
    }
    return p;
}

/* RateLimit-Policy: every visible layer's item, comma-separated.  The
 * common case, one layer whose item is fixed, is the load-time string
 * itself (no copy). */
static const char *
rl2_policy_value(const rl2_verdict_t *v, const rl2_clock_t *now, char **w)
{
    const rl2_limit_t *only = NULL;
    char              *start = *w, *p = start;
    size_t             visible = 0;

    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_limit_t *limit = v->layers[i].limit;

        if (!limit->unlimited && !v->layers[i].challenger) {
            visible++;
            only = limit;
        }
    }
    if (visible == 1 && rl2_item_fixed(only)) {
        return only->sf_policy;
    }
    for (size_t i = 0; i < v->n_layers; i++) {
        const rl2_limit_t *limit = v->layers[i].limit;

        /* A challenger's limits are never announced. */
        if (limit->unlimited || v->layers[i].challenger) {
            continue;
        }
        if (p != start) {
            p = rl2_put_mem(p, ", ", 2);
        }
        p = rl2_item_fixed(limit)
                ? rl2_put_mem(p, limit->sf_policy, limit->sf_policy_len)
                : rl2_put_item(p, limit, now);
    }
    *p++ = '\0';
    *w = p;
    return start;
}

static const char *const rl2_key_names[] = { "ip",     "user",  "api_key",
                                             "header", "route", "global" };

void
rl2_headers_legacy(const rl2_policy_t *policy, const rl2_verdict_t *v,
                   const rl2_clock_t *now, int64_t *limit, int64_t *remaining,
                   int64_t *reset)
{
    const rl2_layer_t *l = &v->layers[v->shown];
    long long          t = rl2_reset_s(v);

    *limit = l->result.limit;
    *remaining = l->result.remaining;
    *reset = policy->reset_delta ? t : now->wall_us / RL2_US_PER_S + t;
}

/* Each number takes at most 20 bytes and its NUL; a monthly w as many. */
#define RL2_NUM_ROOM 21

size_t
rl2_headers_size(const rl2_verdict_t *v)
{
    /* The numbers, then X-RateLimit-Variant's room (rl2_headers_variant). */
    size_t need = 6 * RL2_NUM_ROOM + 16 + RL2_VARIANT_NAME_MAX + 1;

    /* Each item: its load-time length, a separator, and room for a w
     * rendered now (a month) or a q rendered now (a scaled copy keeps the
     * length of the item it was copied from). */
    for (size_t i = 0; i < v->n_layers; i++) {
        need += v->layers[i].limit->sf_policy_len + 2 + 3 + 2 * RL2_NUM_ROOM;
    }
    if (v->shown >= 0) {
        need += v->layers[v->shown].limit->sf_name_len;
    }
    if (v->factors_set) {
        need += RL2_FACTORS_TEXT_MAX;
    }
    return need;
}

/* X-RateLimit-Variant, when the policy's headers.variant asks for it
 * and a layer of the verdict is a variant's (variant.c). */
static char *
rl2_headers_variant(const rl2_verdict_t *v, char *w, rl2_header_set_fn set,
                    void *ctx)
{
    const char *name = rl2_verdict_variant(v);
    char       *value = w;

    if (name == NULL) {
        return w;
    }
    w = rl2_put_mem(w, name, strnlen(name, RL2_VARIANT_NAME_MAX));
    *w++ = '\0';
    set(ctx, "X-RateLimit-Variant", value);
    return w;
}

/* X-RateLimit-Factors, when the policy asks (headers.factors) and some
 * factor is on: each factor's value for this client.  A debugging aid an
 * operator turns on, so its snprintf is not on every response's path. */
static char *
rl2_headers_factors(const rl2_policy_t *policy, const rl2_verdict_t *v, char *w,
                    rl2_header_set_fn set, void *ctx)
{
    size_t n;

    if (!policy->header_factors || !v->factors_set) {
        return w;
    }
    n = rl2_factors_format(v->factor_ppm, w, RL2_FACTORS_TEXT_MAX);
    if (n == 0) {
        return w;
    }
    set(ctx, "X-RateLimit-Factors", w);
    return w + n + 1;
}

/* The fields the policy's headers group turns on (header_optional):
 * X-RateLimit-Scope, -Algorithm, -Factors, -Variant.  Out of line and
 * behind one test: most policies send none. */
static __attribute__((noinline)) char *
rl2_headers_optional(const rl2_policy_t *policy, const rl2_verdict_t *v,
                     char *w, rl2_header_set_fn set, void *ctx)
{
    const rl2_layer_t *l = &v->layers[v->shown];

    if (policy->header_scope) {
        set(ctx, "X-RateLimit-Scope", rl2_key_names[l->limit->key]);
    }
    if (policy->header_algorithm) {
        set(ctx, "X-RateLimit-Algorithm", rl2_algo_name(l->limit->algo.algo));
    }
    w = rl2_headers_factors(policy, v, w, set, ctx);
    if (policy->header_variant) {
        w = rl2_headers_variant(v, w, set, ctx);
    }
    return w;
}

/* Refused before any limit (a ban, the emergency switch): when to come
 * back is all there is to say.  Nothing for a verdict that shows no
 * layer otherwise. */
static size_t
rl2_headers_refusal(const rl2_verdict_t *v, char *buf, size_t len,
                    rl2_header_set_fn set, void *ctx)
{
    if (v->outcome != RL2_OUTCOME_DENY || v->refusal == RL2_REFUSAL_LIMIT) {
        return 0;
    }
    if (len < RL2_NUM_ROOM) {
        return RL2_NUM_ROOM;
    }
    *rl2_put_i64(buf, rl2_retry_after_s(v)) = '\0';
    set(ctx, "Retry-After", buf);
    return RL2_NUM_ROOM;
}

/* One value after another in buf, each NUL-terminated; the room was
 * checked against rl2_headers_size() first, so nothing here can run past
 * the end.  This runs on every response: no snprintf, no strlen. */
size_t
rl2_headers_render(const rl2_policy_t *policy, const rl2_verdict_t *v,
                   const rl2_clock_t *now, char *buf, size_t len,
                   rl2_header_set_fn set, void *ctx)
{
    const rl2_layer_t *l;
    char              *w = buf, *value;
    size_t             need;
    long long          t;

    if (v->shown < 0) {
        return rl2_headers_refusal(v, buf, len, set, ctx);
    }
    if (len < (need = rl2_headers_size(v))) {
        return need;
    }
    l = &v->layers[v->shown];
    t = rl2_reset_s(v);
    set(ctx, "RateLimit-Policy", rl2_policy_value(v, now, &w));

    value = w;
    w = rl2_put_mem(w, l->limit->sf_name, l->limit->sf_name_len);
    w = rl2_put_mem(w, ";r=", 3);
    w = rl2_put_i64(w, l->result.remaining);
    w = rl2_put_mem(w, ";t=", 3);
    w = rl2_put_i64(w, t);
    *w++ = '\0';
    set(ctx, "RateLimit", value);

    if (policy->header_legacy) {
        int64_t limit, remaining, reset;

        rl2_headers_legacy(policy, v, now, &limit, &remaining, &reset);
        value = w;
        w = rl2_put_i64(w, limit);
        *w++ = '\0';
        set(ctx, "X-RateLimit-Limit", value);
        value = w;
        w = rl2_put_i64(w, remaining);
        *w++ = '\0';
        set(ctx, "X-RateLimit-Remaining", value);
        value = w;
        w = rl2_put_i64(w, reset);
        *w++ = '\0';
        set(ctx, "X-RateLimit-Reset", value);
    }
    if (__builtin_expect(policy->header_optional, 0)) {
        w = rl2_headers_optional(policy, v, w, set, ctx);
    }
    if (v->outcome == RL2_OUTCOME_DENY) {
        value = w;
        w = rl2_put_i64(w, rl2_retry_after_s(v));
        *w = '\0';
        set(ctx, "Retry-After", value);
    }
    return need;
}

/* Append s to buf as the inside of a JSON string. */
static size_t
rl2_json_escape(char *buf, size_t len, size_t pos, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char          tmp[8];
        int           n;

        if (ch == '"' || ch == '\\') {
            n = snprintf(tmp, sizeof(tmp), "\\%c", ch);
        }
        else if (ch < 0x20) {
            n = snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
        }
        else {
            tmp[0] = (char)ch;
            n = 1;
        }
        for (int i = 0; i < n; i++, pos++) {
            if (pos < len) {
                buf[pos] = tmp[i];
            }
        }
    }
    return pos;
}

static size_t
rl2_json_field(char *buf, size_t len, size_t pos, const char *name,
               const char *value)
{
    pos += (size_t)snprintf(pos < len ? buf + pos : NULL,
                            pos < len ? len - pos : 0, ",\"%s\":\"", name);
    pos = rl2_json_escape(buf, len, pos, value);
    if (pos < len) {
        buf[pos] = '"';
    }
    return pos + 1;
}

/* The body of a refusal that came before any limit. */
static size_t
rl2_body_refusal(const rl2_verdict_t *v, long long retry, char *buf, size_t len)
{
    int ban = v->refusal == RL2_REFUSAL_BAN;
    int n =
        snprintf(buf, len,
                 "{\"error\":\"%s\",\"message\":\"%s Retry in %lld second%s.\","
                 "\"retry_after\":%lld}\n",
                 ban ? "banned" : "unavailable",
                 ban ? "This client is banned."
                     : "The service admits listed clients "
                       "only for now.",
                 retry, retry == 1 ? "" : "s", retry);

    return n < 0 ? 0 : (size_t)n;
}

size_t
rl2_body_render(const rl2_policy_t *policy, const rl2_verdict_t *v,
                const rl2_clock_t *now, char *buf, size_t len)
{
    const rl2_layer_t *l = v->shown >= 0 ? &v->layers[v->shown] : NULL;
    long long          retry = rl2_retry_after_s(v), t = l ? rl2_reset_s(v) : 0;
    char               msg[256];
    size_t             pos;

    if (len == 0) {
        return 0;
    }
    if (v->refusal != RL2_REFUSAL_LIMIT) {
        return rl2_body_refusal(v, retry, buf, len);
    }
    snprintf(msg, sizeof(msg),
             "Too many requests: the limit \"%s\" is "
             "used up. Retry in %lld second%s.",
             l ? l->limit->name : "", retry, retry == 1 ? "" : "s");
    pos = (size_t)snprintf(buf, len, "{\"error\":\"too_many_requests\"");
    pos = rl2_json_field(buf, len, pos, "message", msg);
    pos = rl2_json_field(buf, len, pos, "rule", l ? l->rule->name : "");
    pos += (size_t)snprintf(
        pos < len ? buf + pos : NULL, pos < len ? len - pos : 0,
        ",\"limit\":%lld,\"remaining\":%lld,"
        "\"reset\":%lld,\"retry_after\":%lld",
        l ? (long long)l->result.limit : 0LL,
        l ? (long long)l->result.remaining : 0LL,
        policy->reset_delta ? t : (long long)(now->wall_us / RL2_US_PER_S) + t,
        retry);
    if (v->tier >= 0 && (size_t)v->tier < policy->n_tiers
        && policy->tiers[v->tier].upgrade_url != NULL) {
        pos = rl2_json_field(buf, len, pos, "upgrade_url",
                             policy->tiers[v->tier].upgrade_url);
    }
    pos += (size_t)snprintf(pos < len ? buf + pos : NULL,
                            pos < len ? len - pos : 0, "}\n");
    buf[pos < len ? pos : len - 1] = '\0';
    return pos;
}
